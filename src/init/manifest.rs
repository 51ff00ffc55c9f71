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
    /// The flags of the run that wrote the files, reused by the next run for every flag it
    /// does not give (`--fresh` forgets them).
    #[serde(default)]
    pub options: SavedOptions,
}

/// init's own flags, as recorded in the manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedOptions {
    pub profile: Option<String>,
    pub lite: bool,
    pub disable: Vec<String>,
    pub image: Vec<String>,
    pub assume: Vec<String>,
    pub webhook: Option<String>,
    pub injector: bool,
    pub debug_output: bool,
    pub slo: Vec<String>,
    pub latency: Vec<String>,
    pub set: Vec<String>,
}

impl SavedOptions {
    /// The options of this run: what it gives, else what the last run recorded.
    pub fn merged(given: &SavedOptions, saved: &SavedOptions) -> SavedOptions {
        let pick = |g: &Vec<String>, s: &Vec<String>| if g.is_empty() { s.clone() } else { g.clone() };
        SavedOptions {
            profile: given.profile.clone().or_else(|| saved.profile.clone()),
            lite: given.lite || saved.lite,
            disable: pick(&given.disable, &saved.disable),
            image: pick(&given.image, &saved.image),
            assume: pick(&given.assume, &saved.assume),
            webhook: given.webhook.clone().or_else(|| saved.webhook.clone()),
            injector: given.injector || saved.injector,
            debug_output: given.debug_output || saved.debug_output,
            slo: pick(&given.slo, &saved.slo),
            latency: pick(&given.latency, &saved.latency),
            set: pick(&given.set, &saved.set),
        }
    }
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
    fn saved_options_fill_what_a_run_does_not_give() {
        let saved = SavedOptions {
            profile: Some("prod".into()),
            disable: vec!["grafana".into()],
            lite: true,
            ..Default::default()
        };
        let given = SavedOptions {
            assume: vec!["web=python".into()],
            ..Default::default()
        };
        let m = SavedOptions::merged(&given, &saved);
        assert_eq!(m.profile.as_deref(), Some("prod"));
        assert_eq!(m.disable, vec!["grafana".to_string()]);
        assert_eq!(m.assume, vec!["web=python".to_string()]);
        assert!(m.lite);
        let given = SavedOptions {
            disable: vec!["loki".into()],
            ..Default::default()
        };
        assert_eq!(
            SavedOptions::merged(&given, &saved).disable,
            vec!["loki".to_string()]
        );
    }

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
