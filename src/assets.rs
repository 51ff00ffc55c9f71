//! Data that lives outside `src/` (signatures, templates) but is embedded in the binary, so
//! obs-stack works from any directory; a folder on disk can add files or replace embedded
//! ones with the same relative path.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use include_dir::{Dir, include_dir};

pub static SIGNATURES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/signatures");
pub static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Text files keyed by their path relative to the asset root (always with `/`).
#[derive(Debug, Clone, Default)]
pub struct Assets {
    pub files: BTreeMap<String, String>,
}

impl Assets {
    /// The embedded files, then every file under `overlay` (if given) on top of them.
    pub fn load(embedded: &Dir<'static>, overlay: Option<&Path>) -> Result<Assets> {
        let mut files = BTreeMap::new();
        collect_embedded(embedded, &mut files);
        if let Some(dir) = overlay {
            if !dir.is_dir() {
                anyhow::bail!("{} is not a directory", dir.display());
            }
            collect_disk(dir, dir, &mut files, 0)?;
        }
        Ok(Assets { files })
    }

    pub fn get(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// Files whose relative path ends with one of `suffixes`.
    pub fn with_suffix<'a>(&'a self, suffixes: &'a [&str]) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.files
            .iter()
            .filter(move |(k, _)| suffixes.iter().any(|s| k.ends_with(s)))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn collect_embedded(dir: &Dir<'static>, out: &mut BTreeMap<String, String>) {
    for f in dir.files() {
        if let Some(text) = f.contents_utf8() {
            out.insert(f.path().to_string_lossy().replace('\\', "/"), text.to_string());
        }
    }
    for d in dir.dirs() {
        collect_embedded(d, out);
    }
}

fn collect_disk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>, depth: usize) -> Result<()> {
    if depth > 16 {
        return Ok(()); // a symlink loop or an absurdly deep tree: stop quietly
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            collect_disk(root, &path, out, depth + 1)?;
        } else if path.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            out.insert(rel, text);
        }
    }
    Ok(())
}
