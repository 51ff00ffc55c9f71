//! The record of an injection: the original container's full inspect (so `--revert` recreates
//! it exactly; a label would be far too small) and a journal of the recreate in progress, so a
//! rerun or `--revert` after the process was killed at any step converges.
//!
//! One JSON file per container name under the state directory:
//! `$OBS_STACK_STATE_DIR`, else `/var/lib/obs-stack/inject` as root, else
//! `$XDG_STATE_HOME/obs-stack/inject` (default `~/.local/state/obs-stack/inject`).
//! Writes are atomic (temp file, fsync, rename).
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bollard::models::ContainerInspectResponse;
use serde::{Deserialize, Serialize};

use super::plan::CreateSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A recreate is in progress (or was interrupted): see `journal`.
    InProgress,
    /// The container carrying the name is the instrumented one.
    Injected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Planned,
    Stopped,
    Renamed,
    Created,
    Started,
    Proven,
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Planned => "planned",
            Step::Stopped => "stopped",
            Step::Renamed => "renamed",
            Step::Created => "created",
            Step::Started => "started",
            Step::Proven => "proven",
            Step::Done => "done",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Inject,
    Revert,
}

/// A replacement of one container by a new spec, step by step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub op: OpKind,
    pub step: Step,
    /// The container being replaced (kept, renamed and stopped, until the new one is proven).
    pub old_id: String,
    pub old_was_running: bool,
    pub temp_name: String,
    pub new_id: Option<String>,
    pub spec: CreateSpec,
    /// Status to return to if this replacement is rolled back.
    pub prev_status: Option<Status>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub name: String,
    pub status: Status,
    /// The original container, before any obs-stack change: `--revert` recreates this.
    pub original: ContainerInspectResponse,
    pub original_id: String,
    /// The container carrying the name after the last successful step.
    pub current_id: Option<String>,
    pub runtime: Option<String>,
    pub digest: Option<String>,
    pub journal: Option<Journal>,
    pub updated_unix: u64,
}

/// Where records live.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OBS_STACK_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return PathBuf::from("/var/lib/obs-stack/inject");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("obs-stack/inject")
}

/// The file for a container name (names are [a-zA-Z0-9][a-zA-Z0-9_.-]*, safe as file names).
pub fn record_path(dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}.json"))
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    pub fn default_location() -> Store {
        Store::new(state_dir())
    }

    pub fn load(&self, name: &str) -> Result<Option<Record>> {
        let path = record_path(&self.dir, name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let r: Record =
                    serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
                Ok(Some(r))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes atomically: a crash leaves either the old or the new record, never half of one.
    pub fn save(&self, rec: &mut Record) -> Result<()> {
        rec.updated_unix = now_unix();
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating the state directory {}", self.dir.display()))?;
        let path = record_path(&self.dir, &rec.name);
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        let data = serde_json::to_vec_pretty(rec)?;
        {
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(&data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let path = record_path(&self.dir, name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Every record (for `--revert --all`).
    pub fn list(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json")
                && let Ok(bytes) = std::fs::read(&p)
                && let Ok(r) = serde_json::from_slice::<Record>(&bytes)
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_paths_are_confined_to_the_state_dir() {
        let p = record_path(Path::new("/s"), "../etc/passwd");
        assert_eq!(p, PathBuf::from("/s/.._etc_passwd.json"));
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_path_buf());
        let mut rec = Record {
            format: 1,
            name: "web".into(),
            status: Status::Injected,
            original: ContainerInspectResponse::default(),
            original_id: "abc".into(),
            current_id: Some("def".into()),
            runtime: Some("python".into()),
            digest: None,
            journal: None,
            updated_unix: 0,
        };
        store.save(&mut rec).unwrap();
        let back = store.load("web").unwrap().unwrap();
        assert_eq!(back.original_id, "abc");
        assert_eq!(back.status, Status::Injected);
        assert_eq!(store.list().unwrap().len(), 1);
        store.remove("web").unwrap();
        assert!(store.load("web").unwrap().is_none());
    }
}
