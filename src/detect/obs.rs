//! Observations: the plain data the probes produce and the scorer reads. `None` means the
//! probe did not run or could not read its target, which matters: absence of an indicator
//! only counts as negative evidence when the probe actually read what it looks at.
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::signature::Probe;

/// How trustworthy a version is: an installed/linked package beats a lockfile, which beats a
/// manifest pin, which beats a range, which beats a header or banner.
pub mod rank {
    pub const INSTALLED: u8 = 5;
    pub const LOCK: u8 = 4;
    pub const PIN: u8 = 3;
    pub const RANGE: u8 = 2;
    pub const OTHER: u8 = 1;
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Observations {
    pub env: Option<Vec<(String, String)>>,
    pub ports: Option<Vec<PortObs>>,
    /// The container's listening sockets were read (so "nothing listens" is known).
    pub listen_read: bool,
    /// The container started moments ago: "nothing listens yet" says little about a server.
    pub starting: bool,
    pub files: Option<FileObs>,
    /// Dependencies from manifests, lockfiles, installed packages and binaries.
    pub deps: Vec<Dep>,
    /// Ecosystems whose dependency list was read completely (absence counts there).
    pub deps_read: BTreeSet<String>,
    pub processes: Option<Vec<ProcObs>>,
    pub binaries: Vec<ElfObs>,
    pub http: Option<Vec<HttpObs>>,
    /// Runtime versions found outside signatures (e.g. a JDK `release` file): (language, version).
    pub runtime_versions: Vec<(String, String, u8)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortObs {
    pub port: u16,
    /// "exposed", "published" or "listening"
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileObs {
    /// App directories that were read.
    pub dirs: Vec<String>,
    /// Absolute paths seen, with their (capped, lossy UTF-8) content when it was read.
    pub files: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dep {
    pub ecosystem: String,
    /// normalised name (see `signature::normalize_dep`); maven: `group:artifact` or `:artifact`
    pub name: String,
    pub version: Option<String>,
    pub rank: u8,
    /// declared directly by the app (manifest, binary) rather than only locked or installed
    pub direct: bool,
    pub source: String,
    pub probe: Probe,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcObs {
    pub pid: u32,
    pub cmdline: String,
    /// executable path as the container sees it (from /proc/<pid>/exe), else argv[0]
    pub exe: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ElfObs {
    pub path: String,
    pub needed: Vec<String>,
    pub interp: Option<String>,
    pub go_version: Option<String>,
    /// facts for `binary:` indicators: `go1.22.3`, `rust`, `static`, `go-http-server`
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpObs {
    pub port: u16,
    pub request: String,
    pub status: u16,
    /// lower-case names
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Observations {
    pub fn http_answered(&self) -> bool {
        self.http.as_ref().is_some_and(|h| !h.is_empty())
    }
}

/// Splits `NAME=value` strings.
pub fn split_env(vars: &[String]) -> Vec<(String, String)> {
    vars.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}
