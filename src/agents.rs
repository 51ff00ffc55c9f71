//! `templates/agents.yaml`: the one per-runtime description of the agent image, where its
//! payload lives, where it is mounted and how the environment changes. Shared by `init`
//! (compose overrides from the image env) and `inject` (a container's effective env): this
//! module reads the file, turns its env rules into ordered operations and applies them to a
//! baseline environment ([`apply_env_ops`]), so both produce the same variables. Pure.
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::assets::{Assets, TEMPLATES};

pub const AGENTS_FILE: &str = "agents.yaml";

/// `--profile` of init and inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Dev,
    Prod,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::Prod => "prod",
        }
    }
}

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
    volume: String,
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
    /// The compose volume init mounts the agent from.
    pub volume: String,
    /// The list separator of this runtime's variables (unless `separators` names another).
    pub separator: String,
    pub check_file: String,
    pub musl_check_file: Option<String>,
    pub guard_dir: Option<String>,
    pub min_runtime: Option<String>,
    pub python_abi: Option<String>,
    /// The env init and inject apply: the file's `env` with `inject_env` over it.
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

/// Rules → operations in the file's order (prepend, append, set_if_unset, set). `sep` None
/// (the common rules): the runtime's separator, filled in by [`layered_ops`].
fn ops(rules: &EnvRules, sep: Option<&str>, seps: &BTreeMap<String, String>) -> Vec<EnvOp> {
    let mk = |op: Op, m: &BTreeMap<String, String>| -> Vec<EnvOp> {
        m.iter()
            .map(|(k, v)| EnvOp {
                name: k.clone(),
                op,
                value: v.clone(),
                sep: seps.get(k).cloned().or_else(|| sep.map(str::to_string)),
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

/// `v` with every character a Docker volume name cannot hold replaced by `replacement`.
pub fn volume_safe(v: &str, replacement: char) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                replacement
            }
        })
        .collect()
}

/// The tag of an image reference (`repo/name:tag[@digest]`), if it has one.
pub fn image_tag(image: &str) -> Option<String> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split_once('@').map(|(n, _)| n).unwrap_or(last);
    last.split_once(':').map(|(_, t)| t.to_string())
}

impl AgentSpec {
    /// Paths in the agent image to copy from (the musl build's when the app uses musl libc
    /// and the image has one), the first that exists wins.
    pub fn sources_for(&self, musl: bool) -> &[String] {
        if musl && !self.musl_sources.is_empty() {
            &self.musl_sources
        } else {
            &self.sources
        }
    }
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
            let sep = Some(r.separator.as_str());
            let mut env = ops(&r.env, sep, seps);
            overlay(&mut env, ops(&r.inject_env, sep, seps));
            for m in ops(&r.env_musl, sep, seps) {
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
                            env: ops(rules, sep, seps),
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
                    volume: r.volume,
                    separator: r.separator,
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
                        env: ops(&p.env, None, seps),
                    },
                )
            })
            .collect();
        Ok(Catalog {
            endpoint: f.defaults.endpoint,
            metric_export_interval: f.defaults.metric_export_interval,
            common: Common {
                env: ops(&f.common, None, seps),
                profiles,
            },
            runtimes,
            fallback: f.fallback,
        })
    }

    /// The embedded catalog, or the one in `overlay` (a templates directory) when given.
    pub fn load(overlay: Option<&std::path::Path>) -> Result<Catalog> {
        Catalog::from_assets(&Assets::load(&TEMPLATES, overlay)?)
    }

    pub fn from_assets(assets: &Assets) -> Result<Catalog> {
        let text = assets
            .get(AGENTS_FILE)
            .ok_or_else(|| anyhow::anyhow!("templates/{AGENTS_FILE} is missing from this build"))?;
        Catalog::parse(text)
    }

    /// The env operations for `agent` at `profile`, in the one order init and inject both use:
    /// the runtime's profile operations, its `base` operations and `extra`, then the common
    /// profile's and the common ones (see `layered_ops`).
    pub fn env_ops(&self, agent: &AgentSpec, base: &[EnvOp], extra: Vec<EnvOp>, profile: &str) -> Vec<EnvOp> {
        let mut specific: Vec<EnvOp> = Vec::new();
        if let Some(p) = agent.profiles.get(profile) {
            specific.extend(p.env.iter().cloned());
        }
        specific.extend(base.iter().cloned());
        specific.extend(extra);
        let common = self
            .common
            .profiles
            .get(profile)
            .map(|p| p.env.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(self.common.env.iter().cloned());
        layered_ops(specific, common, &agent.separator)
    }

    pub fn builtin() -> Result<Catalog> {
        Catalog::load(None)
    }
}

/// Values substituted into `{placeholders}` of agents.yaml.
#[derive(Debug, Clone, Default)]
pub struct EnvVars {
    pub mount: String,
    pub service_name: String,
    pub endpoint: String,
    pub sampler_arg: String,
    pub metric_export_interval: String,
    pub resource_attributes: String,
    pub python_abi: String,
}

impl EnvVars {
    pub fn expand(&self, template: &str) -> String {
        template
            .replace("{mount}", &self.mount)
            .replace("{service_name}", &self.service_name)
            .replace("{endpoint}", &self.endpoint)
            .replace("{sampler_arg}", &self.sampler_arg)
            .replace("{metric_export_interval}", &self.metric_export_interval)
            .replace("{resource_attributes}", &self.resource_attributes)
            .replace("{python_abi}", &self.python_abi)
    }
}

/// The order both init and inject apply env operations in: the runtime's (most specific)
/// first, so for set-if-unset the first value wins (profile over runtime over common); then
/// the common ones, minus any the runtime restates. Common operations without a separator of
/// their own take the runtime's.
pub fn layered_ops(
    mut specific: Vec<EnvOp>,
    common: impl IntoIterator<Item = EnvOp>,
    separator: &str,
) -> Vec<EnvOp> {
    let restated: Vec<(Op, String)> = specific.iter().map(|o| (o.op, o.name.clone())).collect();
    specific.extend(
        common
            .into_iter()
            .filter(|o| !restated.contains(&(o.op, o.name.clone())))
            .map(|mut o| {
                o.sep.get_or_insert_with(|| separator.to_string());
                o
            }),
    );
    specific
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnvChange {
    pub name: String,
    pub before: Option<String>,
    pub after: String,
}

/// Applies env operations to an ordered env, recording what changed. Idempotent: an append or
/// prepend whose value is already present, or a set-if-unset on a present variable, is a no-op.
pub fn apply_env_ops(
    env: &mut Vec<(String, String)>,
    ops: &[EnvOp],
    musl: bool,
    vars: &dyn Fn(&str) -> String,
) -> Vec<EnvChange> {
    let mut changes: Vec<EnvChange> = Vec::new();
    for op in ops {
        let template = if musl {
            op.musl_value.as_ref().unwrap_or(&op.value)
        } else {
            &op.value
        };
        let value = vars(template);
        if value.is_empty() {
            continue;
        }
        let sep = op.sep.clone().unwrap_or_else(|| " ".into());
        let pos = env.iter().position(|(k, _)| *k == op.name);
        let before = pos.map(|p| env[p].1.clone());
        let after = match (op.op, before.as_deref()) {
            (Op::Set, Some(cur)) if cur == value => continue,
            (Op::Set, _) => value,
            (Op::SetIfUnset, Some(_)) => continue,
            (Op::SetIfUnset, None) => value,
            (_, None) | (_, Some("")) => value,
            (_, Some(cur)) if contains_tokens(cur, &value, &sep) => continue,
            (Op::Append, Some(cur)) => format!("{cur}{sep}{value}"),
            (Op::Prepend, Some(cur)) => format!("{value}{sep}{cur}"),
        };
        match pos {
            Some(p) => env[p].1 = after.clone(),
            None => env.push((op.name.clone(), after.clone())),
        }
        // Several ops on one variable (PYTHONPATH) report as one change.
        if let Some(c) = changes.iter_mut().find(|c| c.name == op.name) {
            c.after = after;
        } else {
            changes.push(EnvChange {
                name: op.name.clone(),
                before,
                after,
            });
        }
    }
    changes
}

/// Whether `value`'s `sep`-separated tokens appear, in order and adjacent, in `cur`.
fn contains_tokens(cur: &str, value: &str, sep: &str) -> bool {
    let split = |s: &str| -> Vec<String> {
        if sep.trim().is_empty() {
            s.split_whitespace().map(str::to_string).collect()
        } else {
            s.split(sep).map(str::to_string).collect()
        }
    };
    let (c, v) = (split(cur), split(value));
    !v.is_empty() && c.windows(v.len()).any(|w| w == v.as_slice())
}

/// Who a service is, for every part of obs-stack: init's overrides, inject's recreate, the
/// generated rules and dashboards and the `serve` backend all key a service by this.
/// `service.name` is the compose service (else the container name), `service.namespace` the
/// compose project; the collector's Prometheus exporter turns them into
/// `job="<namespace>/<name>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub service: String,
    pub project: Option<String>,
}

impl Identity {
    /// The Prometheus `job` label of the service's metrics.
    pub fn job(&self) -> String {
        match &self.project {
            Some(p) => format!("{p}/{}", self.service),
            None => self.service.clone(),
        }
    }

    /// `OTEL_RESOURCE_ATTRIBUTES` entries obs-stack adds (appended to the user's).
    pub fn resource_attributes(&self, profile: &str) -> String {
        let mut attrs = Vec::new();
        if let Some(p) = &self.project {
            attrs.push(format!("service.namespace={p}"));
        }
        attrs.push(format!("deployment.environment.name={profile}"));
        attrs.join(",")
    }
}

/// Everything that decides a service's agent environment besides the agent itself.
#[derive(Debug, Clone)]
pub struct EnvRequest<'a> {
    pub identity: &'a Identity,
    pub profile: Profile,
    pub endpoint: &'a str,
    /// Trace sampling ratio (init's per-service objective; else the profile's).
    pub sampler_arg: Option<String>,
    /// Metric export interval in ms (else the profile's, else the file's default).
    pub metric_export_interval: Option<String>,
    /// Extra `OTEL_EXPORTER_OTLP_HEADERS` entries (the backend's ingest key).
    pub headers: Option<String>,
    pub musl: bool,
    pub extra: Vec<EnvOp>,
}

/// The agent image for a runtime: an explicit choice (`--agent-image python=REF` for inject,
/// `--image agent-python=REF` for init), else `OBS_STACK_AGENT_IMAGE_<RUNTIME>` (also
/// `…_NODEJS` for node), else None (agents.yaml's). One rule for init and inject.
pub fn agent_image_override(runtime: &str, explicit: &[(String, String)]) -> Option<String> {
    if let Some((_, image)) = explicit.iter().find(|(rt, _)| runtime_key(rt) == Some(runtime)) {
        return Some(image.clone());
    }
    let mut vars = vec![format!("OBS_STACK_AGENT_IMAGE_{}", runtime.to_ascii_uppercase())];
    if runtime == "node" {
        vars.push("OBS_STACK_AGENT_IMAGE_NODEJS".into());
    }
    vars.iter()
        .find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty()))
}

/// What every agent volume's name starts with (see [`agent_volume_name`]).
pub const AGENT_VOLUME_PREFIX: &str = "obs-agent-";

/// The machine-wide volume holding one build of an agent: `obs-agent-<runtime>[-musl]-<tag>`.
/// Shared by every project and by inject, so it is never owned by a compose project.
pub fn agent_volume_name(runtime: &str, image: &str, default_version: &str, musl: bool) -> String {
    let version = image_tag(image).unwrap_or_else(|| default_version.to_string());
    format!(
        "{AGENT_VOLUME_PREFIX}{runtime}{}-{}",
        if musl { "-musl" } else { "" },
        volume_safe(&version, '_')
    )
}

impl Catalog {
    /// The one computation of a service's agent environment, for init and inject alike:
    /// applies the runtime's and the common operations at the profile to `env` (the
    /// container's or the image's plus compose's), returning what changed.
    pub fn service_env(
        &self,
        agent: &AgentSpec,
        req: &EnvRequest,
        env: &mut Vec<(String, String)>,
    ) -> Vec<EnvChange> {
        let profile = self.common.profiles.get(req.profile.as_str());
        let sampler_arg = req.sampler_arg.clone().unwrap_or_else(|| {
            profile.map(|p| p.sampler_arg.clone()).unwrap_or_else(|| {
                if req.profile == Profile::Prod {
                    "0.1".into()
                } else {
                    "1.0".into()
                }
            })
        });
        let metric_export_interval = req.metric_export_interval.clone().unwrap_or_else(|| {
            profile
                .and_then(|p| p.metric_export_interval.clone())
                .unwrap_or_else(|| self.metric_export_interval.clone())
        });
        let vars = EnvVars {
            mount: agent.mount.clone(),
            service_name: req.identity.service.clone(),
            endpoint: req.endpoint.to_string(),
            sampler_arg: sampler_arg.clone(),
            metric_export_interval,
            // The trace sampling ratio travels with the data, so a backend deriving RED from
            // sampled spans (`obs-stack serve`) can correct the counts.
            resource_attributes: format!(
                "{},obs_stack.sampling_ratio={sampler_arg}",
                req.identity.resource_attributes(req.profile.as_str())
            ),
            python_abi: agent.python_abi.clone().unwrap_or_default(),
        };
        let mut extra = req.extra.clone();
        if let Some(h) = &req.headers {
            extra.push(EnvOp {
                name: "OTEL_EXPORTER_OTLP_HEADERS".into(),
                op: Op::Append,
                value: h.clone(),
                sep: Some(",".into()),
                musl_value: None,
            });
        }
        let ops = self.env_ops(agent, &agent.env, extra, req.profile.as_str());
        apply_env_ops(env, &ops, req.musl, &|t| vars.expand(t))
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

    // The one env computation both init and inject use.
    fn agents() -> Catalog {
        Catalog::builtin().unwrap()
    }

    fn web() -> Identity {
        Identity {
            service: "web".into(),
            project: None,
        }
    }

    fn env_at(
        c: &Catalog,
        runtime: &str,
        profile: Profile,
        id: &Identity,
        existing: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let req = EnvRequest {
            identity: id,
            profile,
            endpoint: "http://otel-collector:4318",
            sampler_arg: None,
            metric_export_interval: None,
            headers: None,
            musl: false,
            extra: Vec::new(),
        };
        let mut env: Vec<(String, String)> = existing.clone().into_iter().collect();
        c.service_env(&c.runtimes[runtime], &req, &mut env)
            .into_iter()
            .map(|c| (c.name, c.after))
            .collect()
    }

    fn agent_env(
        c: &Catalog,
        runtime: &str,
        existing: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        env_at(c, runtime, Profile::Dev, &web(), existing)
    }

    #[test]
    fn python_pythonpath_is_guard_then_existing_then_root() {
        let existing = BTreeMap::from([("PYTHONPATH".to_string(), "/app".to_string())]);
        let env = agent_env(&agents(), "python", &existing);
        assert_eq!(
            env["PYTHONPATH"],
            "/otel-auto-instrumentation-python/obs-stack-guard:/app:/otel-auto-instrumentation-python"
        );
        assert_eq!(env["OTEL_SERVICE_NAME"], "web");
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel-collector:4318");
        assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
        assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
        assert_eq!(
            env["OTEL_RESOURCE_ATTRIBUTES"],
            "deployment.environment.name=dev,obs_stack.sampling_ratio=1.0"
        );
    }

    #[test]
    fn identity_gives_one_job_and_namespace() {
        let id = Identity {
            service: "orders".into(),
            project: Some("shop".into()),
        };
        assert_eq!(id.job(), "shop/orders");
        assert_eq!(web().job(), "web");
        let env = env_at(&agents(), "node", Profile::Prod, &id, &BTreeMap::new());
        assert_eq!(
            env["OTEL_RESOURCE_ATTRIBUTES"],
            "service.namespace=shop,deployment.environment.name=prod,obs_stack.sampling_ratio=0.1"
        );
        assert_eq!(env["OTEL_SERVICE_NAME"], "orders");
        assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.1");
    }

    #[test]
    fn ingest_headers_are_appended() {
        let c = agents();
        let req = EnvRequest {
            identity: &web(),
            profile: Profile::Dev,
            endpoint: "http://obs-stack:4318",
            sampler_arg: None,
            metric_export_interval: None,
            headers: Some("x-obs-stack-key=abc".into()),
            musl: false,
            extra: Vec::new(),
        };
        let mut env = vec![("OTEL_EXPORTER_OTLP_HEADERS".to_string(), "x-team=a".to_string())];
        c.service_env(&c.runtimes["java"], &req, &mut env);
        let h = env
            .iter()
            .find(|(k, _)| k == "OTEL_EXPORTER_OTLP_HEADERS")
            .unwrap();
        assert_eq!(h.1, "x-team=a,x-obs-stack-key=abc");
    }

    #[test]
    fn agent_images_and_volumes_are_named_once() {
        let explicit = vec![("nodejs".to_string(), "lab/node:1".to_string())];
        assert_eq!(
            agent_image_override("node", &explicit).as_deref(),
            Some("lab/node:1")
        );
        assert_eq!(
            agent_volume_name(
                "python",
                "ghcr.io/x/autoinstrumentation-python:0.65b0",
                "0",
                false
            ),
            "obs-agent-python-0.65b0"
        );
        assert_eq!(
            agent_volume_name("python", "ghcr.io/x/p:0.65b0", "0", true),
            "obs-agent-python-musl-0.65b0"
        );
        assert_eq!(
            agent_volume_name("java", "lab/java", "2.31.0", false),
            "obs-agent-java-2.31.0"
        );
    }

    #[test]
    fn no_exemplars_leave_the_agents() {
        // Exemplars copy raw attributes (url.query) past every redaction processor.
        for rt in ["python", "node", "java"] {
            let env = agent_env(&agents(), rt, &BTreeMap::new());
            assert_eq!(env["OTEL_METRICS_EXEMPLAR_FILTER"], "always_off", "{rt}");
        }
    }

    #[test]
    fn resource_attributes_are_appended_with_commas() {
        let existing = BTreeMap::from([("OTEL_RESOURCE_ATTRIBUTES".to_string(), "team=a".to_string())]);
        let env = agent_env(&agents(), "node", &existing);
        assert_eq!(
            env["OTEL_RESOURCE_ATTRIBUTES"],
            "team=a,deployment.environment.name=dev,obs_stack.sampling_ratio=1.0"
        );
        let mut after = existing.clone();
        after.extend(env);
        assert!(!agent_env(&agents(), "node", &after).contains_key("OTEL_RESOURCE_ATTRIBUTES"));
    }

    #[test]
    fn applying_twice_is_a_no_op() {
        let a = agents();
        for rt in ["python", "node", "java"] {
            let existing = BTreeMap::from([
                ("NODE_OPTIONS".to_string(), "--max-old-space-size=256".to_string()),
                ("JAVA_TOOL_OPTIONS".to_string(), "-Xmx256m".to_string()),
            ]);
            let first = agent_env(&a, rt, &existing);
            let mut after = existing.clone();
            after.extend(first.clone());
            let second = agent_env(&a, rt, &after);
            assert!(second.is_empty(), "{rt}: second pass changed {second:?}");
        }
    }

    #[test]
    fn node_and_java_append_and_keep_user_values() {
        let a = agents();
        let existing = BTreeMap::from([
            ("NODE_OPTIONS".to_string(), "--max-old-space-size=256".to_string()),
            ("OTEL_TRACES_SAMPLER".to_string(), "always_on".to_string()),
        ]);
        let env = agent_env(&a, "node", &existing);
        assert_eq!(
            env["NODE_OPTIONS"],
            "--max-old-space-size=256 --require /otel-auto-instrumentation-nodejs/obs-stack-guard/register.js"
        );
        assert!(!env.contains_key("OTEL_TRACES_SAMPLER"), "user's sampler is kept");
        assert_eq!(
            env["OTEL_NODE_RESOURCE_DETECTORS"],
            "env,host,os,process,serviceinstance,container"
        );
        let env = agent_env(&a, "java", &BTreeMap::new());
        assert_eq!(
            env["JAVA_TOOL_OPTIONS"],
            "-javaagent:/otel-auto-instrumentation-java/javaagent.jar"
        );
        assert_eq!(env["OTEL_RESOURCE_PROVIDERS_AWS_ENABLED"], "false");
    }

    #[test]
    fn prod_profile_turns_off_the_noisy_instrumentations() {
        let c = agents();
        let prod = env_at(&c, "python", Profile::Prod, &web(), &BTreeMap::new());
        let dev = env_at(&c, "python", Profile::Dev, &web(), &BTreeMap::new());
        assert!(prod.contains_key("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"));
        assert!(!dev.contains_key("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"));
    }

    #[test]
    fn prod_turns_layer_spans_off_through_obs_stacks_hooks() {
        let c = agents();
        for rt in ["python", "node"] {
            let prod = env_at(&c, rt, Profile::Prod, &web(), &BTreeMap::new());
            let dev = env_at(&c, rt, Profile::Dev, &web(), &BTreeMap::new());
            assert_eq!(prod["OBS_STACK_LAYER_SPANS"], "off", "{rt}");
            assert!(!dev.contains_key("OBS_STACK_LAYER_SPANS"), "{rt}");
        }
        // A user's own choice wins.
        let mine = BTreeMap::from([("OBS_STACK_LAYER_SPANS".to_string(), "on".to_string())]);
        let prod = env_at(&c, "node", Profile::Prod, &web(), &mine);
        assert!(!prod.contains_key("OBS_STACK_LAYER_SPANS"), "unchanged: {prod:?}");
        // Node.js loads obs-stack's hook (which runs the image's own entry point) ...
        let node = env_at(&c, "node", Profile::Dev, &web(), &BTreeMap::new());
        assert_eq!(
            node["NODE_OPTIONS"],
            "--require /otel-auto-instrumentation-nodejs/obs-stack-guard/register.js"
        );
        // ... which the volume gets, next to the Python guard.
        assert_eq!(crate::inject::agent_hook("node").unwrap().0, "register.js");
        assert!(crate::inject::NODE_HOOK.contains("autoinstrumentation.js"));
        assert_eq!(crate::inject::agent_hook("python").unwrap().0, "sitecustomize.py");
        assert!(crate::inject::agent_hook("java").is_none());
    }
}
