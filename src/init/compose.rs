//! Reading the user's compose file: only what init needs (services, their images, build
//! contexts, environment, networks and labels). The file is never written.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_yaml_ng::Value;

/// Compose file names tried in order when `-f` is not given (Compose's own order).
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Label that opts a service out of instrumentation (`"false"`); also honoured by the
/// obs-injector service and by `obs-stack inject --all`.
pub const OPT_OUT_LABEL: &str = "io.obs-stack.instrument";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ComposeService {
    pub name: String,
    pub image: Option<String>,
    /// Build context, resolved against the compose file's directory.
    pub build_context: Option<PathBuf>,
    pub environment: BTreeMap<String, String>,
    /// Networks the service lists explicitly; empty means the project's `default` network.
    pub networks: Vec<String>,
    pub network_mode: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Container ports it publishes or exposes (first is the main one).
    pub ports: Vec<u16>,
}

impl ComposeService {
    pub fn opted_out(&self) -> bool {
        self.labels.get(OPT_OUT_LABEL).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "off"
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComposeProject {
    pub file: PathBuf,
    pub dir: PathBuf,
    /// Compose's project name: top-level `name:`, else the directory name normalised.
    pub name: String,
    pub services: Vec<ComposeService>,
}

/// Finds the compose file: `explicit`, else the first of [`DEFAULT_FILES`] in `cwd`.
pub fn locate(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("compose file {} does not exist", p.display());
        }
        return Ok(p.to_path_buf());
    }
    for f in DEFAULT_FILES {
        let p = cwd.join(f);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "no compose file in {} (looked for {})\n  hint: pass one with -f PATH",
        cwd.display(),
        DEFAULT_FILES.join(", ")
    )
}

/// Compose's normalisation of a project name: lower-case, only [a-z0-9_-].
pub fn normalize_project_name(raw: &str) -> String {
    raw.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

pub fn load(file: &Path, schema: Option<&str>) -> Result<ComposeProject> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse_with(&text, &abs, &dir, schema)
}

/// Checks a compose document against the official Compose JSON schema (embedded from
/// templates/schemas/compose-spec.json): a typo (`imag:`) or a wrong shape (`ports: 5000`) is
/// an error before init writes anything, as `docker compose` itself would refuse the file.
pub fn validate(doc: &Value, schema: &str, file: &Path) -> Result<()> {
    let schema: serde_json::Value =
        serde_json::from_str(schema).context("the embedded Compose schema is not JSON")?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| anyhow::anyhow!("the embedded Compose schema does not compile: {e}"))?;
    let instance = serde_json::to_value(doc)
        .with_context(|| format!("{} cannot be read as JSON data", file.display()))?;
    let mut problems: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("  {}: {e}", if at.is_empty() { "/".to_string() } else { at })
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    problems.dedup();
    problems.truncate(10);
    anyhow::bail!(
        "{} is not a valid Compose file:\n{}\n  hint: fix it (`docker compose config` shows the same), then run init again",
        file.display(),
        problems.join("\n")
    )
}

pub fn parse(text: &str, file: &Path, dir: &Path) -> Result<ComposeProject> {
    parse_with(text, file, dir, None)
}

/// `parse`, validating against `schema` first when given.
pub fn parse_with(text: &str, file: &Path, dir: &Path, schema: Option<&str>) -> Result<ComposeProject> {
    let mut doc: Value =
        serde_yaml_ng::from_str(text).with_context(|| format!("{} is not valid YAML", file.display()))?;
    doc.apply_merge().ok();
    if let Some(schema) = schema {
        validate(&doc, schema, file)?;
    }
    let services_v = doc
        .get("services")
        .and_then(Value::as_mapping)
        .with_context(|| format!("{} has no `services:` mapping", file.display()))?;
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .map(normalize_project_name)
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::env::var("COMPOSE_PROJECT_NAME")
                .ok()
                .map(|n| normalize_project_name(&n))
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            normalize_project_name(
                &dir.file_name()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default(),
            )
        });
    let mut services = Vec::new();
    for (k, v) in services_v {
        let Some(sname) = k.as_str() else { continue };
        services.push(parse_service(sname, v, dir));
    }
    Ok(ComposeProject {
        file: file.to_path_buf(),
        dir: dir.to_path_buf(),
        name: if name.is_empty() { "default".into() } else { name },
        services,
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `environment:` / `labels:` as a map or a list of `K=V` (a bare `K` means "from the shell";
/// we cannot know its value, so it is skipped).
fn kv(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Some(Value::Mapping(m)) => {
            for (k, val) in m {
                if let (Some(k), Some(val)) = (k.as_str(), scalar(val)) {
                    out.insert(k.to_string(), val);
                }
            }
        }
        Some(Value::Sequence(items)) => {
            for item in items {
                if let Some(s) = item.as_str()
                    && let Some((k, val)) = s.split_once('=')
                {
                    out.insert(k.to_string(), val.to_string());
                }
            }
        }
        _ => {}
    }
    out
}

fn parse_service(name: &str, v: &Value, dir: &Path) -> ComposeService {
    let build_context = match v.get("build") {
        Some(Value::String(ctx)) => Some(dir.join(ctx)),
        Some(b @ Value::Mapping(_)) => {
            Some(dir.join(b.get("context").and_then(Value::as_str).unwrap_or(".")))
        }
        _ => None,
    };
    let networks = match v.get("networks") {
        Some(Value::Sequence(s)) => s.iter().filter_map(|n| n.as_str().map(String::from)).collect(),
        Some(Value::Mapping(m)) => m.keys().filter_map(|n| n.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    };
    let mut ports = Vec::new();
    for key in ["ports", "expose"] {
        if let Some(Value::Sequence(items)) = v.get(key) {
            for p in items {
                let port = match p {
                    Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                    Value::String(s) => container_port(s),
                    Value::Mapping(_) => p
                        .get("target")
                        .and_then(Value::as_u64)
                        .and_then(|n| u16::try_from(n).ok()),
                    _ => None,
                };
                if let Some(port) = port
                    && !ports.contains(&port)
                {
                    ports.push(port);
                }
            }
        }
    }
    ComposeService {
        name: name.to_string(),
        image: v.get("image").and_then(scalar),
        build_context,
        environment: kv(v.get("environment")),
        networks,
        network_mode: v.get("network_mode").and_then(scalar),
        labels: kv(v.get("labels")),
        ports,
    }
}

/// The container side of a short port spec: `8080`, `127.0.0.1:80:8080/tcp`, `3000-3001`.
fn container_port(spec: &str) -> Option<u16> {
    let spec = spec.split('/').next()?;
    let last = spec.rsplit(':').next()?;
    last.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_services_env_networks_and_ports() {
        let text = r#"
name: My_Shop
x-env: &env
  LOG_LEVEL: info
services:
  web:
    build: ./web
    environment:
      <<: *env
      PYTHONPATH: /app
    ports: ["127.0.0.1:8080:5000", "9000"]
    labels: ["io.obs-stack.instrument=false"]
  api:
    image: node:20
    environment: ["NODE_OPTIONS=--max-old-space-size=256", "FROM_SHELL"]
    networks: [front, back]
    expose: [3000]
  db:
    image: postgres:16
    network_mode: host
"#;
        let p = parse(text, Path::new("/p/compose.yaml"), Path::new("/p")).unwrap();
        assert_eq!(p.name, "my_shop");
        let web = &p.services[0];
        assert_eq!(web.build_context.as_deref(), Some(Path::new("/p/./web")));
        assert_eq!(web.environment["PYTHONPATH"], "/app");
        assert_eq!(web.environment["LOG_LEVEL"], "info");
        assert_eq!(web.ports, vec![5000, 9000]);
        assert!(web.opted_out());
        let api = &p.services[1];
        assert_eq!(api.environment.len(), 1);
        assert_eq!(api.networks, vec!["front", "back"]);
        assert_eq!(api.ports, vec![3000]);
        assert_eq!(p.services[2].network_mode.as_deref(), Some("host"));
    }

    #[test]
    fn project_name_defaults_to_directory() {
        let p = parse(
            "services: {a: {image: x}}",
            Path::new("/x/Lab.Project/c.yml"),
            Path::new("/x/Lab.Project"),
        );
        if std::env::var("COMPOSE_PROJECT_NAME").is_err() {
            assert_eq!(p.unwrap().name, "labproject");
        }
    }

    #[test]
    fn rejects_files_without_services() {
        assert!(parse("version: '3'", Path::new("c.yml"), Path::new(".")).is_err());
        assert!(parse(": : :", Path::new("c.yml"), Path::new(".")).is_err());
    }
}
