//! The OpenTelemetry environment an agent needs, computed from `templates/agents.yaml` and the
//! container's existing environment. Pure; shared by init (compose overrides) and inject
//! (container recreate), so both produce exactly the same variables.
use std::collections::BTreeMap;

use super::data::{AgentsFile, EnvRules};

/// Values substituted into `{placeholders}` of agents.yaml.
#[derive(Debug, Clone, Default)]
pub struct EnvVars {
    pub service_name: String,
    pub endpoint: String,
    pub sampler_arg: String,
    pub resource_attributes: String,
    pub metric_export_interval: String,
}

fn fill(template: &str, v: &EnvVars) -> String {
    template
        .replace("{service_name}", &v.service_name)
        .replace("{endpoint}", &v.endpoint)
        .replace("{sampler_arg}", &v.sampler_arg)
        .replace("{resource_attributes}", &v.resource_attributes)
        .replace("{metric_export_interval}", &v.metric_export_interval)
}

/// The variables to set on the container (only those that change or must be pinned), given
/// its `existing` environment. `runtime` is a key of `agents.runtimes` ("python", "node",
/// "java"); an unknown runtime gets the common variables only.
pub fn agent_env(
    agents: &AgentsFile,
    runtime: &str,
    existing: &BTreeMap<String, String>,
    vars: &EnvVars,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let rt = agents.runtimes.get(runtime);
    let sep = rt.map(|r| r.separator.as_str()).unwrap_or(" ");
    let rules: Vec<&EnvRules> = std::iter::once(&agents.common)
        .chain(rt.map(|r| &r.env))
        .collect();
    // The current value of a variable: what we already decided, else what the container has.
    let current = |out: &BTreeMap<String, String>, k: &str| -> Option<String> {
        out.get(k).cloned().or_else(|| existing.get(k).cloned())
    };
    for r in &rules {
        for (k, v) in &r.set {
            out.insert(k.clone(), fill(v, vars));
        }
        for (k, v) in &r.set_if_unset {
            let v = fill(v, vars);
            if v.is_empty() {
                continue; // e.g. no resource attributes: leave the variable alone
            }
            if !existing.contains_key(k) {
                out.insert(k.clone(), v);
            }
        }
        for (k, v) in &r.prepend {
            let v = fill(v, vars);
            if v.is_empty() {
                continue;
            }
            let sep = agents.separators.get(k).map(String::as_str).unwrap_or(sep);
            let merged = match current(&out, k).filter(|c| !c.is_empty()) {
                Some(c) if split(&c, sep).any(|p| p == v) => c,
                Some(c) => format!("{v}{sep}{c}"),
                None => v,
            };
            out.insert(k.clone(), merged);
        }
        for (k, v) in &r.append {
            let v = fill(v, vars);
            if v.is_empty() {
                continue;
            }
            let sep = agents.separators.get(k).map(String::as_str).unwrap_or(sep);
            let merged = match current(&out, k).filter(|c| !c.is_empty()) {
                Some(c) if contains_item(&c, &v, sep) => c,
                Some(c) => format!("{c}{sep}{v}"),
                None => v,
            };
            out.insert(k.clone(), merged);
        }
    }
    // Drop no-ops: a variable whose final value equals what the container already has.
    out.retain(|k, v| existing.get(k) != Some(v));
    out
}

fn split<'a>(s: &'a str, sep: &'a str) -> impl Iterator<Item = &'a str> {
    s.split(sep).map(str::trim).filter(|p| !p.is_empty())
}

/// Whether `item` (possibly several words, e.g. `--require /x.js`) already occurs in `list`.
fn contains_item(list: &str, item: &str, sep: &str) -> bool {
    if sep.trim().is_empty() {
        let words: Vec<&str> = list.split_whitespace().collect();
        let needle: Vec<&str> = item.split_whitespace().collect();
        !needle.is_empty() && words.windows(needle.len()).any(|w| w == needle.as_slice())
    } else {
        split(list, sep).any(|p| p == item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::{Assets, TEMPLATES};
    use crate::init::data::Data;

    fn agents() -> AgentsFile {
        Data::load(&Assets::load(&TEMPLATES, None).unwrap())
            .unwrap()
            .agents
    }

    fn vars() -> EnvVars {
        EnvVars {
            service_name: "web".into(),
            endpoint: "http://otel-collector:4318".into(),
            sampler_arg: "1".into(),
            resource_attributes: String::new(),
            metric_export_interval: "15000".into(),
        }
    }

    #[test]
    fn python_pythonpath_is_hook_then_existing_then_root() {
        let existing = BTreeMap::from([("PYTHONPATH".to_string(), "/app".to_string())]);
        let env = agent_env(&agents(), "python", &existing, &vars());
        assert_eq!(
            env["PYTHONPATH"],
            "/otel-auto-instrumentation-python/opentelemetry/instrumentation/auto_instrumentation:/app:/otel-auto-instrumentation-python"
        );
        assert_eq!(env["OTEL_SERVICE_NAME"], "web");
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel-collector:4318");
        assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
        assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
        assert!(!env.contains_key("OTEL_RESOURCE_ATTRIBUTES"));
    }

    #[test]
    fn resource_attributes_are_appended_with_commas() {
        let existing = BTreeMap::from([("OTEL_RESOURCE_ATTRIBUTES".to_string(), "team=a".to_string())]);
        let v = EnvVars {
            resource_attributes: "deployment.environment.name=dev".into(),
            ..vars()
        };
        let env = agent_env(&agents(), "node", &existing, &v);
        assert_eq!(
            env["OTEL_RESOURCE_ATTRIBUTES"],
            "team=a,deployment.environment.name=dev"
        );
        let mut after = existing.clone();
        after.extend(env);
        assert!(!agent_env(&agents(), "node", &after, &v).contains_key("OTEL_RESOURCE_ATTRIBUTES"));
    }

    #[test]
    fn applying_twice_is_a_no_op() {
        let a = agents();
        for rt in ["python", "node", "java"] {
            let existing = BTreeMap::from([
                ("NODE_OPTIONS".to_string(), "--max-old-space-size=256".to_string()),
                ("JAVA_TOOL_OPTIONS".to_string(), "-Xmx256m".to_string()),
            ]);
            let first = agent_env(&a, rt, &existing, &vars());
            let mut after = existing.clone();
            after.extend(first.clone());
            let second = agent_env(&a, rt, &after, &vars());
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
        let env = agent_env(&a, "node", &existing, &vars());
        assert_eq!(
            env["NODE_OPTIONS"],
            "--max-old-space-size=256 --require /otel-auto-instrumentation-nodejs/autoinstrumentation.js"
        );
        assert!(!env.contains_key("OTEL_TRACES_SAMPLER"), "user's sampler is kept");
        assert_eq!(
            env["OTEL_NODE_RESOURCE_DETECTORS"],
            "env,host,os,process,serviceinstance,container"
        );
        let env = agent_env(&a, "java", &BTreeMap::new(), &vars());
        assert_eq!(
            env["JAVA_TOOL_OPTIONS"],
            "-javaagent:/otel-auto-instrumentation-java/javaagent.jar"
        );
        assert_eq!(env["OTEL_RESOURCE_PROVIDERS_AWS_ENABLED"], "false");
    }
}
