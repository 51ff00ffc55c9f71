//! `templates/agents.yaml`: the one per-runtime description of the agent image, where its
//! payload lives, where it is mounted and how the environment changes (shared with `init`).
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::assets::{Assets, TEMPLATES};

pub const AGENTS_FILE: &str = "agents.yaml";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Catalog {
    pub version: u32,
    pub common: Common,
    pub runtimes: BTreeMap<String, AgentSpec>,
    #[serde(default)]
    pub fallback: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Common {
    pub env: Vec<EnvOp>,
    #[serde(default)]
    pub profiles: BTreeMap<String, CommonProfile>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CommonProfile {
    pub sampler_arg: String,
    #[serde(default)]
    pub env: Vec<EnvOp>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AgentSpec {
    pub version: String,
    pub image: String,
    pub sources: Vec<String>,
    #[serde(default)]
    pub musl_sources: Vec<String>,
    pub mount: String,
    pub check_file: String,
    #[serde(default)]
    pub musl_check_file: Option<String>,
    #[serde(default)]
    pub guard_dir: Option<String>,
    #[serde(default)]
    pub min_runtime: Option<String>,
    #[serde(default)]
    pub python_abi: Option<String>,
    pub env: Vec<EnvOp>,
    #[serde(default)]
    pub profiles: BTreeMap<String, RuntimeProfile>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct RuntimeProfile {
    #[serde(default)]
    pub env: Vec<EnvOp>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    SetIfUnset,
    Append,
    Prepend,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EnvOp {
    pub name: String,
    pub op: Op,
    pub value: String,
    #[serde(default)]
    pub sep: Option<String>,
    #[serde(default)]
    pub musl_value: Option<String>,
}

impl Catalog {
    pub fn parse(text: &str) -> Result<Catalog> {
        let c: Catalog = serde_yaml_ng::from_str(text).context("parsing agents.yaml")?;
        if c.version != 1 {
            anyhow::bail!("agents.yaml version {} is not supported (expected 1)", c.version);
        }
        Ok(c)
    }

    /// The embedded catalog, or the one in `overlay` (a templates directory) when given.
    pub fn load(overlay: Option<&std::path::Path>) -> Result<Catalog> {
        let assets = Assets::load(&TEMPLATES, overlay)?;
        let text = assets
            .get(AGENTS_FILE)
            .ok_or_else(|| anyhow::anyhow!("templates/{AGENTS_FILE} is missing from this build"))?;
        Catalog::parse(text)
    }

    pub fn builtin() -> Result<Catalog> {
        Catalog::load(None)
    }
}

/// The catalog key for a runtime/language name as detect or a user spells it.
pub fn runtime_key(language: &str) -> Option<&'static str> {
    match language.to_ascii_lowercase().as_str() {
        "python" | "py" => Some("python"),
        "node" | "nodejs" | "node.js" | "js" | "javascript" | "typescript" => Some("nodejs"),
        "java" | "jvm" | "kotlin" | "scala" => Some("java"),
        "dotnet" | ".net" | "csharp" | "c#" => Some("dotnet"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_has_every_runtime() {
        let c = Catalog::builtin().unwrap();
        for k in ["python", "nodejs", "java", "dotnet"] {
            let a = &c.runtimes[k];
            assert!(a.mount.starts_with('/'), "{k}");
            assert!(!a.sources.is_empty(), "{k}");
        }
        assert_eq!(c.common.profiles["dev"].sampler_arg, "1.0");
        assert_eq!(c.common.profiles["prod"].sampler_arg, "0.1");
    }

    #[test]
    fn runtime_names_map_to_catalog_keys() {
        assert_eq!(runtime_key("node"), Some("nodejs"));
        assert_eq!(runtime_key("Python"), Some("python"));
        assert_eq!(runtime_key("go"), None);
    }
}
