//! From the user's compose project, what was detected about each service and the options, to
//! the [`Plan`]: plain data that the templates render (it is their whole context).
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use serde::Serialize;

use super::compose::ComposeProject;
use super::data::{Data, ResolvedSlo};
pub use crate::agents::Profile;
use crate::agents::{EnvRequest, Identity, agent_volume_name, image_tag, volume_safe};

/// What init knows about one compose service (from detection, or `--assume`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    /// "app" | "infra" | "unknown"
    pub kind: String,
    pub language: Option<String>,
    pub framework: Option<String>,
    /// "glibc" | "musl" | "static"
    pub libc: Option<String>,
    pub confidence: f64,
    /// "live" (running container), "static" (build context), "assumed" (--assume) or "none"
    pub source: String,
    /// OpenTelemetry/other agents already present (then init leaves the service alone).
    pub existing_agents: Vec<String>,
}

impl ServiceInfo {
    pub fn unknown(name: &str) -> ServiceInfo {
        ServiceInfo {
            name: name.to_string(),
            kind: "unknown".into(),
            language: None,
            framework: None,
            libc: None,
            confidence: 0.0,
            source: "none".into(),
            existing_agents: Vec::new(),
        }
    }

    /// `--assume web=python:flask` (framework optional; `web=infra` marks infrastructure,
    /// `web=none` excludes the service).
    pub fn parse_assumption(spec: &str) -> Result<ServiceInfo> {
        let Some((name, what)) = spec.split_once('=') else {
            bail!("--assume expects SERVICE=LANGUAGE[:FRAMEWORK], got {spec:?}");
        };
        let name = name.trim();
        if name.is_empty() {
            bail!("--assume {spec:?}: empty service name");
        }
        let (lang, fw) = match what.split_once(':') {
            Some((l, f)) => (l.trim().to_ascii_lowercase(), Some(f.trim().to_ascii_lowercase())),
            None => (what.trim().to_ascii_lowercase(), None),
        };
        let mut s = ServiceInfo::unknown(name);
        s.source = "assumed".into();
        s.confidence = 1.0;
        match lang.as_str() {
            "infra" => s.kind = "infra".into(),
            "none" | "unknown" => s.kind = "unknown".into(),
            "" => bail!("--assume {spec:?}: empty language"),
            _ => {
                s.kind = "app".into();
                s.language = Some(if lang == "nodejs" { "node".into() } else { lang });
                s.framework = fw.filter(|f| !f.is_empty() && f != "unknown");
            }
        }
        Ok(s)
    }
}

/// Stack components that can be switched off (`--disable`).
pub const OPTIONAL_COMPONENTS: &[&str] = &[
    "grafana",
    "tempo",
    "loki",
    "alertmanager",
    "container-logs",
    "container-metrics",
];

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub profile: Profile,
    pub lite: bool,
    pub disabled: BTreeSet<String>,
    /// Image overrides by component (collector, prometheus, …, agent-python, agent-node, agent-java).
    pub images: BTreeMap<String, String>,
    /// Host ports already resolved (free or kept from the last run).
    pub ports: BTreeMap<String, u16>,
    pub injector: bool,
    /// Add the collector's file exporter (traces/metrics/logs as JSON lines in a volume).
    pub debug_output: bool,
    pub webhook: Option<String>,
    /// Profile setting overrides (`--set alert_for_fast=10s`).
    pub settings: BTreeMap<String, String>,
    pub slo: BTreeMap<String, f64>,
    pub latency: BTreeMap<String, f64>,
    /// Docker API version for the collector's docker_stats receiver.
    pub docker_api_version: String,
    /// The user's project network to join as external (only when it exists already).
    pub user_network: Option<String>,
    /// Component type names the collector image really has (from `otelcol components`);
    /// None = the pinned contrib distribution (deprecated aliases, accepted by all versions).
    pub collector_components: Option<BTreeSet<String>>,
    /// Directory for the config files, relative to where obs-stack.yml is written.
    pub config_dir: String,
    pub version: String,
    /// `docker compose` or `docker-compose` for the printed commands.
    pub compose_cmd: String,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            profile: Profile::Dev,
            lite: false,
            disabled: BTreeSet::new(),
            images: BTreeMap::new(),
            ports: BTreeMap::new(),
            injector: false,
            debug_output: false,
            webhook: None,
            settings: BTreeMap::new(),
            slo: BTreeMap::new(),
            latency: BTreeMap::new(),
            docker_api_version: "1.44".into(),
            user_network: None,
            collector_components: None,
            config_dir: "obs-stack".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            compose_cmd: "docker compose".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppPlan {
    pub name: String,
    pub language: Option<String>,
    pub framework: Option<String>,
    /// Key of agents.yaml `runtimes` when an agent is injected.
    pub runtime: Option<String>,
    pub instrumented: bool,
    /// Why (not) instrumented, for the summary.
    pub reason: String,
    /// The variables written into the override, values already `$`-escaped for compose.
    pub env: Vec<(String, String)>,
    /// service.name / service.namespace, as inject gives them.
    pub identity: Identity,
    /// The Prometheus job of its metrics (`<project>/<service>`): what rules filter on.
    pub job: String,
    pub agent_volume: Option<String>,
    pub mount_path: Option<String>,
    /// Networks to list in the override (user's, or `default`) plus `obs`; empty when the
    /// service uses a network_mode we must not touch.
    pub networks: Vec<String>,
    pub slo: ResolvedSlo,
    pub alerts: SloAlerts,
}

/// Numbers for one service's alert rules, formatted for PromQL.
#[derive(Debug, Clone, Serialize)]
pub struct SloAlerts {
    pub objective: String,
    pub budget: String,
    /// Sloth/Google SRE multiwindow thresholds: 14.4x (1h/5m), 6x (6h/30m), 3x (1d/2h), 1x (3d/6h).
    pub page_1h: String,
    pub page_6h: String,
    pub ticket_1d: String,
    pub ticket_3d: String,
    pub error_rate: String,
    pub latency_p95: String,
}

/// One agent volume the apps mount. It is external to every compose project: init fills it
/// (like inject, once per agent build, never while in use) before compose runs, so no
/// `down -v` can delete it and no compose service ever writes into it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentPlan {
    pub runtime: String,
    pub image: String,
    /// The compose volume key (what app overrides mount).
    pub volume: String,
    /// The Docker volume name, `obs-agent-<runtime>[-musl]-<version>` like `obs-stack
    /// inject`'s ([`agent_volume_name`]): one copy per agent build, shared machine-wide.
    pub volume_name: String,
    pub mount_path: String,
    /// Holds the musl build of the agent.
    pub musl: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub version: String,
    pub project: String,
    pub profile: String,
    pub lite: bool,
    pub config_dir: String,
    pub components: BTreeMap<String, bool>,
    pub images: BTreeMap<String, String>,
    pub ports: BTreeMap<String, u16>,
    pub memory: BTreeMap<String, String>,
    pub gomemlimit: String,
    pub settings: BTreeMap<String, String>,
    pub docker_api_version: String,
    pub user_network: Option<String>,
    pub webhook: Option<String>,
    /// The stack's own compose project (`<project>-obs`): never the app's.
    pub stack_project: String,
    /// The stack's network, by its fixed name (your services join it from their project).
    pub obs_network: String,
    /// `docker compose` or `docker-compose`, whichever this machine has.
    pub compose_cmd: String,
    pub agents: Vec<AgentPlan>,
    pub apps: Vec<AppPlan>,
    /// Every service of the user's project with what was detected (for the summary/README).
    pub services: Vec<ServiceInfo>,
    pub redaction: super::data::Redaction,
    /// Collector component type names to write (canonical where the collector has them).
    pub otel: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// The compose project the stack runs as: the user's project name with `-obs`, so that
/// compose never mixes the stack's containers with the user's (orphans, `--remove-orphans`).
pub fn stack_project(project: &str) -> String {
    format!("{project}-obs")
}

/// Logical collector components and their type names, newest first. Without a components
/// list the last (oldest) name is used: every collector version accepts it, newer ones as a
/// deprecated alias.
const COLLECTOR_TYPES: &[(&str, &[&str])] = &[
    ("otlp_receiver", &["otlp"]),
    ("docker_stats", &["docker_stats"]),
    ("file_log", &["file_log", "filelog"]),
    ("memory_limiter", &["memory_limiter"]),
    ("resource_detection", &["resource_detection", "resourcedetection"]),
    ("redaction", &["redaction"]),
    ("transform", &["transform"]),
    ("batch", &["batch"]),
    ("span_metrics", &["span_metrics", "spanmetrics"]),
    ("otlp_grpc", &["otlp_grpc", "otlp"]),
    ("otlp_http", &["otlp_http", "otlphttp"]),
    ("prometheus_exporter", &["prometheus"]),
    ("file_exporter", &["file"]),
    ("debug_exporter", &["debug"]),
    ("health_check", &["health_check"]),
];

/// Essential components: without them there is no pipeline worth generating.
const ESSENTIAL: &[&str] = &[
    "otlp_receiver",
    "memory_limiter",
    "prometheus_exporter",
    "health_check",
];

pub fn collector_types(
    components: Option<&BTreeSet<String>>,
) -> (BTreeMap<String, Option<String>>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for (logical, names) in COLLECTOR_TYPES {
        let chosen = match components {
            None => names.last().map(|s| s.to_string()),
            Some(set) => names.iter().find(|n| set.contains(**n)).map(|s| s.to_string()),
        };
        if chosen.is_none() {
            missing.push(logical.to_string());
        }
        out.insert(logical.to_string(), chosen);
    }
    (out, missing)
}

/// Parses `otelcol components` output (YAML with receivers/processors/… lists of {name}) or a
/// plain list of type names, one per line.
pub fn parse_components(text: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    if let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
        && let Some(m) = v.as_mapping()
    {
        for kind in ["receivers", "processors", "exporters", "connectors", "extensions"] {
            if let Some(list) = m.get(kind).and_then(|l| l.as_sequence()) {
                for item in list {
                    if let Some(n) = item
                        .get("name")
                        .and_then(|n| n.as_str())
                        .or_else(|| item.as_str())
                    {
                        set.insert(n.to_string());
                    }
                }
            }
        }
        if !set.is_empty() {
            return set;
        }
    }
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        // "receiver otlp", "receivers/otlp", "otlp"
        let last = line
            .rsplit([' ', '/', '\t', ':'])
            .find(|s| !s.is_empty())
            .unwrap_or(line);
        set.insert(last.trim_start_matches("- ").to_string());
    }
    set
}

/// Bytes of a compose memory string (`400m`, `1g`, `512MiB`, `1073741824`).
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let digits: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let unit = s[digits.len()..]
        .trim()
        .trim_end_matches("ib")
        .trim_end_matches('b');
    let n: f64 = digits.parse().ok()?;
    let mult = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((n * mult) as u64)
}

/// A float for PromQL/YAML without float noise: 0.07200000000000001 -> 0.072.
pub fn fmt_num(x: f64) -> String {
    let s = format!("{:.6}", x);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The tag of an image reference (`repo:tag`, `repo@sha256:…` gives the digest prefix),
/// reduced to what a volume name may contain.
pub fn image_version(image: &str) -> String {
    let raw = if let Some((_, digest)) = image.split_once('@') {
        digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>()
    } else {
        image_tag(image).unwrap_or_else(|| "latest".into())
    };
    let v = volume_safe(&raw, '-');
    if v.is_empty() { "latest".into() } else { v }
}

fn escape_compose(v: &str) -> String {
    v.replace('$', "$$")
}

pub fn plan(
    project: &ComposeProject,
    detections: &[ServiceInfo],
    existing_env: &BTreeMap<String, BTreeMap<String, String>>,
    opts: &InitOptions,
    data: &Data,
) -> Result<Plan> {
    let profile = opts.profile.as_str();
    let prof = data
        .stack
        .profiles
        .get(profile)
        .ok_or_else(|| anyhow::anyhow!("profile {profile} missing from the stack data file"))?;
    let mut warnings = Vec::new();

    for d in &opts.disabled {
        if !OPTIONAL_COMPONENTS.contains(&d.as_str()) {
            bail!(
                "--disable {d}: unknown component (one of {})",
                OPTIONAL_COMPONENTS.join(", ")
            );
        }
    }
    let (types, missing) = collector_types(opts.collector_components.as_ref());
    let essential_missing: Vec<_> = missing
        .iter()
        .filter(|m| ESSENTIAL.contains(&m.as_str()))
        .collect();
    if !essential_missing.is_empty() {
        bail!(
            "the collector image lacks essential components: {}",
            essential_missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let has = |c: &str| types.get(c).is_some_and(Option::is_some);
    let on = |c: &str| !opts.disabled.contains(c);

    let mut components = BTreeMap::new();
    components.insert("grafana".to_string(), on("grafana"));
    components.insert("tempo".to_string(), on("tempo") && has("otlp_grpc"));
    if !components["tempo"] {
        warnings.push(format!(
            "Tempo is off: traces are not stored, only turned into RED metrics{}; to keep them, \
             add --debug-output (every span as JSON lines in the otel-debug volume) or send them \
             to `obs-stack serve`, the embedded trace store",
            if has("span_metrics") {
                " (span metrics)"
            } else {
                ""
            }
        ));
    }
    components.insert("loki".to_string(), on("loki") && !opts.lite && has("otlp_http"));
    components.insert("alertmanager".to_string(), on("alertmanager"));
    components.insert("injector".to_string(), opts.injector);
    components.insert(
        "debug_output".to_string(),
        opts.debug_output && has("file_exporter"),
    );
    let logs = on("container-logs") && components["loki"] && has("file_log");
    components.insert("container_logs".to_string(), logs);
    let cmetrics = on("container-metrics") && has("docker_stats");
    components.insert("container_metrics".to_string(), cmetrics);
    components.insert("redaction".to_string(), has("redaction"));
    components.insert("transform".to_string(), has("transform"));
    components.insert("resource_detection".to_string(), has("resource_detection"));
    components.insert("span_metrics".to_string(), has("span_metrics"));
    for (c, what) in [
        ("docker_stats", "container metrics"),
        ("file_log", "container log collection"),
        ("redaction", "PII redaction"),
        ("span_metrics", "span metrics"),
        ("resource_detection", "resource detection"),
    ] {
        if !has(c) {
            warnings.push(format!(
                "the collector image has no `{c}` component: {what} left out"
            ));
        }
    }
    if opts.debug_output && !has("file_exporter") {
        warnings.push("the collector image has no `file` exporter: --debug-output ignored".into());
    }

    let mut images = data.stack.images.clone();
    for (rt, r) in &data.agents.runtimes {
        // OBS_STACK_AGENT_IMAGE_<RUNTIME>, as for inject; --image agent-<rt>= below wins.
        let image = crate::agents::agent_image_override(rt, &[]).unwrap_or_else(|| r.image.clone());
        images.insert(format!("agent-{rt}"), image);
    }
    for (k, v) in &opts.images {
        let key = match k.as_str() {
            "otelcol" | "otel-collector" => "collector".to_string(),
            "agent-nodejs" => "agent-node".to_string(),
            other => other.to_string(),
        };
        if !images.contains_key(&key) {
            bail!(
                "--image {k}: unknown component (one of {})",
                images.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        images.insert(key, v.clone());
    }

    let mut memory = prof.memory.clone();
    let mut settings: BTreeMap<String, String> = BTreeMap::from([
        ("prometheus_retention".into(), prof.prometheus_retention.clone()),
        (
            "prometheus_retention_size".into(),
            prof.prometheus_retention_size.clone(),
        ),
        ("tempo_retention".into(), prof.tempo_retention.clone()),
        ("loki_retention".into(), prof.loki_retention.clone()),
        ("scrape_interval".into(), prof.scrape_interval.clone()),
        ("evaluation_interval".into(), prof.evaluation_interval.clone()),
        ("alert_for_fast".into(), prof.alert_for_fast.clone()),
        ("alert_for_slow".into(), prof.alert_for_slow.clone()),
        (
            "metric_export_interval".into(),
            data.agents.metric_export_interval.clone(),
        ),
        (
            "group_wait".into(),
            if profile == "dev" { "10s" } else { "30s" }.into(),
        ),
        (
            "group_interval".into(),
            if profile == "dev" { "1m" } else { "5m" }.into(),
        ),
        ("repeat_interval".into(), "4h".into()),
    ]);
    if opts.lite {
        settings.insert(
            "prometheus_retention".into(),
            data.stack.lite.prometheus_retention.clone(),
        );
        settings.insert(
            "prometheus_retention_size".into(),
            data.stack.lite.prometheus_retention_size.clone(),
        );
        settings.insert("tempo_retention".into(), data.stack.lite.tempo_retention.clone());
        memory.extend(data.stack.lite.memory.clone());
    }
    for (k, v) in &opts.settings {
        if let Some(mem) = k.strip_prefix("memory.") {
            if parse_memory(v).is_none() {
                bail!("--set {k}={v}: not a memory size");
            }
            memory.insert(mem.to_string(), v.clone());
            continue;
        }
        if !settings.contains_key(k) {
            bail!(
                "--set {k}: unknown setting (one of {}, memory.<service>)",
                settings.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        if v.is_empty() || v.contains(['\n', '"', '\'', '{', '}']) {
            bail!("--set {k}: invalid value {v:?}");
        }
        settings.insert(k.clone(), v.clone());
    }
    let collector_mem = memory
        .get("collector")
        .and_then(|m| parse_memory(m))
        .unwrap_or(400 << 20);
    let gomemlimit = format!("{}MiB", collector_mem * 8 / 10 / (1 << 20));

    // Per service.
    let by_name: BTreeMap<&str, &ServiceInfo> = detections.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut apps = Vec::new();
    let mut services = Vec::new();
    let mut used_agents: BTreeMap<String, AgentPlan> = BTreeMap::new();
    let stack_names: BTreeSet<&str> = [
        "otel-collector",
        "prometheus",
        "alertmanager",
        "grafana",
        "tempo",
        "loki",
        "obs-injector",
    ]
    .into_iter()
    .collect();
    for svc in &project.services {
        if stack_names.contains(svc.name.as_str()) || svc.name.starts_with("otel-agent-") {
            warnings.push(format!(
                "service `{}` has the name of an obs-stack service; it is left alone (rename one to merge the files)",
                svc.name
            ));
            continue;
        }
        let info = by_name
            .get(svc.name.as_str())
            .map(|d| (*d).clone())
            .unwrap_or_else(|| ServiceInfo::unknown(&svc.name));
        services.push(info.clone());
        if info.kind != "app" {
            continue;
        }
        let slo_defaults = data.slo_for(info.language.as_deref(), info.framework.as_deref(), profile);
        let mut slo = slo_defaults;
        if let Some(v) = opts.slo.get(&svc.name) {
            if !(50.0..100.0).contains(v) {
                bail!(
                    "--slo {}={v}: the objective is a percentage in [50, 100)",
                    svc.name
                );
            }
            slo.slo = *v;
        }
        if let Some(v) = opts.latency.get(&svc.name) {
            slo.latency_p95 = *v;
        }
        let budget = (100.0 - slo.slo) / 100.0;
        let alerts = SloAlerts {
            objective: fmt_num(slo.slo / 100.0),
            budget: fmt_num(budget),
            page_1h: fmt_num(14.4 * budget),
            page_6h: fmt_num(6.0 * budget),
            ticket_1d: fmt_num(3.0 * budget),
            ticket_3d: fmt_num(budget),
            error_rate: fmt_num(slo.error_rate),
            latency_p95: fmt_num(slo.latency_p95),
        };
        let runtime = info
            .language
            .as_deref()
            .filter(|l| data.agents.runtimes.contains_key(*l))
            .map(String::from);
        let (instrumented, reason) = if svc.opted_out() {
            (
                false,
                format!("opted out ({}=false)", super::compose::OPT_OUT_LABEL),
            )
        } else if info.existing_agents.iter().any(|a| !a.is_empty()) {
            (
                false,
                format!("already has an agent ({})", info.existing_agents.join(", ")),
            )
        } else if info.libc.as_deref() == Some("musl")
            && runtime.as_deref() != Some("python")
            && runtime.is_some()
        {
            // Node and Java agents are pure JS/bytecode: musl is fine for them.
            (true, "auto-instrumented".to_string())
        } else if runtime.is_some() {
            (true, "auto-instrumented".to_string())
        } else {
            (
                false,
                format!(
                    "no auto-instrumentation agent for {}: container metrics and logs only",
                    info.language.as_deref().unwrap_or("this language")
                ),
            )
        };
        let mut app = AppPlan {
            name: svc.name.clone(),
            language: info.language.clone(),
            framework: info.framework.clone(),
            runtime: None,
            instrumented,
            reason,
            env: Vec::new(),
            identity: Identity {
                service: svc.name.clone(),
                project: Some(project.name.clone()),
            },
            job: String::new(),
            agent_volume: None,
            mount_path: None,
            networks: Vec::new(),
            slo,
            alerts,
        };
        app.job = app.identity.job();
        if instrumented && let Some(rt) = runtime {
            let r = &data.agents.runtimes[&rt];
            let host_mode = svc.network_mode.as_deref() == Some("host");
            let endpoint = if host_mode {
                format!(
                    "http://127.0.0.1:{}",
                    opts.ports.get("otlp_http").copied().unwrap_or(4318)
                )
            } else {
                data.agents.endpoint.clone()
            };
            let mut existing = existing_env.get(&svc.name).cloned().unwrap_or_default();
            existing.extend(svc.environment.clone());
            let musl = info.libc.as_deref() == Some("musl");
            // The one environment computation inject uses too (crate::agents::service_env).
            let req = EnvRequest {
                identity: &app.identity,
                profile: opts.profile,
                endpoint: &endpoint,
                sampler_arg: Some(fmt_num(slo.sampling)),
                metric_export_interval: Some(settings["metric_export_interval"].clone()),
                headers: None,
                musl,
                extra: Vec::new(),
            };
            let mut env: Vec<(String, String)> = existing.into_iter().collect();
            app.env = data
                .agents
                .service_env(r, &req, &mut env)
                .into_iter()
                .map(|c| (c.name, escape_compose(&c.after)))
                .collect();
            let musl_build = musl && !r.musl_sources.is_empty();
            let image = images[&format!("agent-{rt}")].clone();
            let volume_name = agent_volume_name(&rt, &image, &r.version, musl_build);
            let key = format!("{}{}", r.volume, if musl_build { "-musl" } else { "" });
            app.agent_volume = Some(key.clone());
            app.mount_path = Some(r.mount.clone());
            app.networks = match svc.network_mode.as_deref() {
                Some(_) => Vec::new(),
                None => {
                    let mut n = if svc.networks.is_empty() {
                        vec!["default".to_string()]
                    } else {
                        svc.networks.clone()
                    };
                    n.push("obs".into());
                    n
                }
            };
            used_agents.insert(
                key.clone(),
                AgentPlan {
                    runtime: rt.clone(),
                    image,
                    volume: key,
                    volume_name,
                    mount_path: r.mount.clone(),
                    musl: musl_build,
                },
            );
            app.runtime = Some(rt);
        }
        apps.push(app);
    }
    let agents: Vec<AgentPlan> = used_agents.into_values().collect();

    let mut ports = data.stack.ports.clone();
    ports.extend(opts.ports.clone());

    if let Some(w) = &opts.webhook
        && !(w.starts_with("http://") || w.starts_with("https://"))
    {
        bail!("--webhook {w}: expected an http:// or https:// URL");
    }

    Ok(Plan {
        version: opts.version.clone(),
        project: project.name.clone(),
        profile: profile.to_string(),
        lite: opts.lite,
        config_dir: opts.config_dir.clone(),
        components,
        images,
        ports,
        memory,
        gomemlimit,
        settings,
        docker_api_version: opts.docker_api_version.clone(),
        user_network: opts.user_network.clone(),
        webhook: opts.webhook.clone(),
        stack_project: stack_project(&project.name),
        obs_network: format!("{}_obs", stack_project(&project.name)),
        compose_cmd: opts.compose_cmd.clone(),
        agents,
        apps,
        services,
        redaction: data.redaction.clone(),
        otel: types
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assumptions_parse() {
        let s = ServiceInfo::parse_assumption("web=python:flask").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.language.as_deref(), s.framework.as_deref()),
            ("app", Some("python"), Some("flask"))
        );
        let s = ServiceInfo::parse_assumption("api=nodejs").unwrap();
        assert_eq!(s.language.as_deref(), Some("node"));
        assert_eq!(ServiceInfo::parse_assumption("db=infra").unwrap().kind, "infra");
        assert!(ServiceInfo::parse_assumption("nonsense").is_err());
        assert!(ServiceInfo::parse_assumption("=python").is_err());
    }

    #[test]
    fn agent_volume_versions() {
        assert_eq!(
            image_version("ghcr.io/x/autoinstrumentation-python:0.65b0"),
            "0.65b0"
        );
        assert_eq!(image_version("localhost:5000/agent"), "latest");
        assert_eq!(image_version("a/b@sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn memory_and_numbers() {
        assert_eq!(parse_memory("400m"), Some(400 << 20));
        assert_eq!(parse_memory("1g"), Some(1 << 30));
        assert_eq!(parse_memory("512MiB"), Some(512 << 20));
        assert_eq!(parse_memory("lots"), None);
        assert_eq!(fmt_num(14.4 * 0.005), "0.072");
        assert_eq!(fmt_num(1.0), "1");
        assert_eq!(fmt_num(0.1), "0.1");
    }

    #[test]
    fn components_lists_parse_and_pick_canonical_names() {
        let yaml = "receivers:\n  - name: otlp\n  - name: file_log\nexporters:\n  - name: otlp_grpc\n  - name: prometheus\n";
        let set = parse_components(yaml);
        assert!(set.contains("file_log") && set.contains("otlp_grpc"));
        let (types, missing) = collector_types(Some(&set));
        assert_eq!(types["file_log"].as_deref(), Some("file_log"));
        assert_eq!(types["otlp_grpc"].as_deref(), Some("otlp_grpc"));
        assert!(missing.contains(&"docker_stats".to_string()));
        let (types, missing) = collector_types(None);
        assert_eq!(types["otlp_http"].as_deref(), Some("otlphttp"));
        assert!(missing.is_empty());
        let plain = parse_components("receiver otlp\nexporter/debug\n# comment\nspan_metrics\n");
        assert!(plain.contains("otlp") && plain.contains("debug") && plain.contains("span_metrics"));
    }
}
