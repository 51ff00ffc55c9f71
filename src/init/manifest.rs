//! Idempotent, non-clobbering writes. The manifest (`.obs-stack/manifest.json` next to
//! obs-stack.yml) records the SHA-256 of every file init wrote and the host ports it chose.
//! A file on disk whose hash differs from the manifest was edited by the user: it is not
//! overwritten (unless --force); the new version is written alongside as `<file>.new`.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MANIFEST_PATH: &str = ".obs-stack/manifest.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub generator: String,
    /// Relative path -> sha256 hex of the content init wrote.
    pub files: BTreeMap<String, String>,
    /// Host ports chosen for the published services, reused on the next run.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// New file.
    Create,
    /// Ours and untouched since: replaced with the new content.
    Update,
    /// Same content already on disk.
    Unchanged,
    /// Edited by the user (or not ours): new content goes to `<file>.new`.
    Conflict,
    /// Edited by the user, replaced because of --force.
    Overwrite,
}

/// What to do with one output file. `on_disk` is the current content (None = absent).
pub fn decide(path: &str, new: &str, on_disk: Option<&[u8]>, manifest: &Manifest, force: bool) -> Action {
    let Some(disk) = on_disk else {
        return Action::Create;
    };
    let disk_hash = sha256_hex(disk);
    if disk_hash == sha256_hex(new.as_bytes()) {
        return Action::Unchanged;
    }
    match manifest.files.get(path) {
        Some(recorded) if *recorded == disk_hash => Action::Update,
        _ if force => Action::Overwrite,
        _ => Action::Conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let mut m = Manifest::default();
        assert_eq!(decide("a", "x", None, &m, false), Action::Create);
        assert_eq!(decide("a", "x", Some(b"x"), &m, false), Action::Unchanged);
        assert_eq!(
            decide("a", "y", Some(b"x"), &m, false),
            Action::Conflict,
            "not ours"
        );
        m.files.insert("a".into(), sha256_hex(b"x"));
        assert_eq!(
            decide("a", "y", Some(b"x"), &m, false),
            Action::Update,
            "ours, untouched"
        );
        assert_eq!(decide("a", "y", Some(b"edited"), &m, false), Action::Conflict);
        assert_eq!(decide("a", "y", Some(b"edited"), &m, true), Action::Overwrite);
    }
}
