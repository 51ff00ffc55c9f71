//! `templates/agents.yaml`: the one per-runtime description of the agent image, where its
//! payload lives, where it is mounted and how the environment changes — shared with `init`
//! (which reads the same file with its own types; inject-only keys are optional and ignored
//! there). This module reads the file and turns its env rules into ordered operations.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::assets::{Assets, TEMPLATES};

pub const AGENTS_FILE: &str = "agents.yaml";

// ---- the file, as written -------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
struct EnvRules {
    #[serde(default)]
    prepend: BTreeMap<String, String>,
    #[serde(default)]
    append: BTreeMap<String, String>,
    #[serde(default)]
    set_if_unset: BTreeMap<String, String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
struct FileDefaults {
    endpoint: String,
    #[serde(default = "default_interval")]
    metric_export_interval: String,
}

fn default_interval() -> String {
    "15000".into()
}

#[derive(Debug, Clone, Deserialize)]
struct FileProfile {
    sampler_arg: String,
    #[serde(default)]
    metric_export_interval: Option<String>,
    #[serde(default)]
    env: EnvRules,
}

#[derive(Debug, Clone, Deserialize)]
struct FileRuntime {
    #[serde(default)]
    version: Option<String>,
    image: String,
    copy_from: String,
    #[serde(default)]
    copy_from_fallback: Vec<String>,
    #[serde(default)]
    copy_from_musl: Option<String>,
    mount_path: String,
    #[serde(default = "default_separator")]
    separator: String,
    #[serde(default)]
    env: EnvRules,
    #[serde(default)]
    env_musl: EnvRules,
    #[serde(default)]
    inject_env: EnvRules,
    check_file: Option<String>,
    #[serde(default)]
    musl_check_file: Option<String>,
    #[serde(default)]
    guard_dir: Option<String>,
    #[serde(default)]
    min_runtime: Option<String>,
    #[serde(default)]
    python_abi: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, EnvRules>,
}

fn default_separator() -> String {
    " ".into()
}

#[derive(Debug, Clone, Deserialize)]
struct File {
    version: u32,
    defaults: FileDefaults,
    #[serde(default)]
    separators: BTreeMap<String, String>,
    #[serde(default)]
    common: EnvRules,
    #[serde(default)]
    profiles: BTreeMap<String, FileProfile>,
    runtimes: BTreeMap<String, FileRuntime>,
    #[serde(default)]
    fallback: BTreeMap<String, String>,
}

// ---- what inject works with -------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub endpoint: String,
    pub metric_export_interval: String,
    pub common: Common,
    pub runtimes: BTreeMap<String, AgentSpec>,
    pub fallback: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Common {
    pub env: Vec<EnvOp>,
    pub profiles: BTreeMap<String, CommonProfile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommonProfile {
    pub sampler_arg: String,
    pub metric_export_interval: Option<String>,
    pub env: Vec<EnvOp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentSpec {
    pub version: String,
    pub image: String,
    /// Paths in the image to copy from, the first that exists wins.
    pub sources: Vec<String>,
    pub musl_sources: Vec<String>,
    pub mount: String,
    pub check_file: String,
    pub musl_check_file: Option<String>,
    pub guard_dir: Option<String>,
    pub min_runtime: Option<String>,
    pub python_abi: Option<String>,
    pub env: Vec<EnvOp>,
    pub profiles: BTreeMap<String, RuntimeProfile>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RuntimeProfile {
    pub env: Vec<EnvOp>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Prepend,
    Append,
    SetIfUnset,
    Set,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvOp {
    pub name: String,
    pub op: Op,
    pub value: String,
    pub sep: Option<String>,
    pub musl_value: Option<String>,
}

/// Rules → operations in the file's order (prepend, append, set_if_unset, set).
fn ops(rules: &EnvRules, sep: &str, seps: &BTreeMap<String, String>) -> Vec<EnvOp> {
    let mk = |op: Op, m: &BTreeMap<String, String>| -> Vec<EnvOp> {
        m.iter()
            .map(|(k, v)| EnvOp {
                name: k.clone(),
                op,
                value: v.clone(),
                sep: Some(seps.get(k).cloned().unwrap_or_else(|| sep.to_string())),
                musl_value: None,
            })
            .collect()
    };
    let mut out = mk(Op::Prepend, &rules.prepend);
    out.extend(mk(Op::Append, &rules.append));
    out.extend(mk(Op::SetIfUnset, &rules.set_if_unset));
    out.extend(mk(Op::Set, &rules.set));
    out
}

/// `over` replaces entries of `base` with the same (operation, variable); the rest is added.
fn overlay(base: &mut Vec<EnvOp>, over: Vec<EnvOp>) {
    for o in over {
        match base.iter_mut().find(|b| b.op == o.op && b.name == o.name) {
            Some(b) => *b = o,
            None => base.push(o),
        }
    }
}

fn image_tag(image: &str) -> Option<String> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split_once('@').map(|(n, _)| n).unwrap_or(last);
    last.split_once(':').map(|(_, t)| t.to_string())
}

impl Catalog {
    pub fn parse(text: &str) -> Result<Catalog> {
        let f: File = serde_yaml_ng::from_str(text).context("parsing agents.yaml")?;
        if f.version != 1 {
            anyhow::bail!("agents.yaml version {} is not supported (expected 1)", f.version);
        }
        let seps = &f.separators;
        let mut runtimes = BTreeMap::new();
        for (key, r) in f.runtimes {
            let mut env = ops(&r.env, &r.separator, seps);
            overlay(&mut env, ops(&r.inject_env, &r.separator, seps));
            for m in ops(&r.env_musl, &r.separator, seps) {
                if let Some(e) = env.iter_mut().find(|e| e.op == m.op && e.name == m.name) {
                    e.musl_value = Some(m.value);
                }
            }
            let Some(check_file) = r.check_file.clone() else {
                anyhow::bail!("agents.yaml: runtime {key} has no check_file");
            };
            let mut sources = vec![r.copy_from.clone()];
            sources.extend(r.copy_from_fallback.iter().cloned());
            let profiles = r
                .profiles
                .iter()
                .map(|(p, rules)| {
                    (
                        p.clone(),
                        RuntimeProfile {
                            env: ops(rules, &r.separator, seps),
                        },
                    )
                })
                .collect();
            let version = r
                .version
                .clone()
                .or_else(|| image_tag(&r.image))
                .unwrap_or_else(|| "latest".into());
            runtimes.insert(
                key,
                AgentSpec {
                    version,
                    image: r.image,
                    sources,
                    musl_sources: r.copy_from_musl.into_iter().collect(),
                    mount: r.mount_path,
                    check_file,
                    musl_check_file: r.musl_check_file,
                    guard_dir: r.guard_dir,
                    min_runtime: r.min_runtime,
                    python_abi: r.python_abi,
                    env,
                    profiles,
                },
            );
        }
        let profiles = f
            .profiles
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    CommonProfile {
                        sampler_arg: p.sampler_arg.clone(),
                        metric_export_interval: p.metric_export_interval.clone(),
                        env: ops(&p.env, " ", seps),
                    },
                )
            })
            .collect();
        Ok(Catalog {
            endpoint: f.defaults.endpoint,
            metric_export_interval: f.defaults.metric_export_interval,
            common: Common {
                env: ops(&f.common, " ", seps),
                profiles,
            },
            runtimes,
            fallback: f.fallback,
        })
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
        "node" | "nodejs" | "node.js" | "js" | "javascript" | "typescript" => Some("node"),
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
        for k in ["python", "node", "java", "dotnet"] {
            let a = &c.runtimes[k];
            assert!(a.mount.starts_with('/'), "{k}");
            assert!(!a.sources.is_empty(), "{k}");
        }
        assert_eq!(c.common.profiles["dev"].sampler_arg, "1.0");
        assert_eq!(c.common.profiles["prod"].sampler_arg, "0.1");
    }

    #[test]
    fn inject_env_replaces_the_python_hook_with_the_guard() {
        let c = Catalog::builtin().unwrap();
        let py = &c.runtimes["python"];
        let pre: Vec<&EnvOp> = py.env.iter().filter(|e| e.op == Op::Prepend).collect();
        assert_eq!(pre.len(), 1);
        assert_eq!(pre[0].value, "/otel-auto-instrumentation-python/obs-stack-guard");
        assert_eq!(pre[0].sep.as_deref(), Some(":"));
        let attrs = c
            .common
            .env
            .iter()
            .find(|e| e.name == "OTEL_RESOURCE_ATTRIBUTES")
            .unwrap();
        assert_eq!(attrs.sep.as_deref(), Some(","));
    }

    #[test]
    fn runtime_names_map_to_catalog_keys() {
        assert_eq!(runtime_key("nodejs"), Some("node"));
        assert_eq!(runtime_key("Python"), Some("python"));
        assert_eq!(runtime_key("go"), None);
    }
}
