//! `obs-stack init`: write obs-stack.yml (collector, Prometheus, Alertmanager, Grafana, Tempo,
//! Loki, agent volumes), obs-stack.apps.yml (instrumentation of the user's services) and the
//! config folder, from the user's compose file and what is detected about each service.
//!
//! I/O lives here (compose file, Docker, ports, secrets, writes); planning and rendering are
//! pure (`crate::init`). The user's files are never modified; re-running is idempotent, and a
//! generated file the user edited is kept (the new version is written next to it as `.new`)
//! unless `--force`.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use crate::assets::{Assets, TEMPLATES};
use crate::cli::GlobalArgs;
use crate::docker::Engine;
use crate::exit::Outcome;
use crate::init::compose::{self, ComposeProject};
use crate::init::data::Data;
use crate::init::manifest::{self, Action, MANIFEST_PATH, Manifest, SavedOptions};
use crate::init::plan::AgentPlan;
use crate::init::plan::{self, InitOptions, Profile, ServiceInfo};
use crate::init::render;
use crate::inject::apply;
use crate::inject::plan::AgentStep;
use crate::output::{Paint, Style};

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The compose file of your project (default: compose.yaml, compose.yml,
    /// docker-compose.yml or docker-compose.yaml in the current directory)
    #[arg(short = 'f', long = "file", value_name = "COMPOSE_FILE")]
    pub file: Option<PathBuf>,
    /// Where to write obs-stack.yml and the obs-stack/ folder (default: next to the compose
    /// file, so relative paths work when the files are merged)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// dev: 100% trace sampling, short retention, alerts fire fast; prod: 10% sampling,
    /// longer retention, larger limits
    /// (default: the last run's, else dev)
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// Small single-machine variant: no Loki/log collection, smaller limits and retention
    #[arg(long)]
    pub lite: bool,
    /// A folder whose files replace or extend the embedded templates and data files
    #[arg(long, value_name = "DIR", env = "OBS_STACK_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// Overwrite generated files even when you edited them
    #[arg(long)]
    pub force: bool,
    /// Show what would be written; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Forget the options the last run recorded (by default a re-run reuses every flag it is
    /// not given: --disable, --assume, --image, --profile, …)
    #[arg(long)]
    pub fresh: bool,
    /// Skip detection for a service: SERVICE=LANGUAGE[:FRAMEWORK], or SERVICE=infra / =none
    #[arg(long, value_name = "SERVICE=LANG[:FW]")]
    pub assume: Vec<String>,
    /// Replace an image: NAME=REF for collector, prometheus, alertmanager, grafana, tempo,
    /// loki, injector, agent-python, agent-node, agent-java (also OBS_STACK_IMAGE_<NAME>)
    #[arg(long, value_name = "NAME=REF")]
    pub image: Vec<String>,
    /// Leave a component out: grafana, tempo, loki, alertmanager, container-logs,
    /// container-metrics (repeat or comma-separate)
    #[arg(long, value_name = "COMPONENT", value_delimiter = ',')]
    pub disable: Vec<String>,
    /// Host port for a published service: NAME=PORT (grafana, prometheus, alertmanager,
    /// otlp_grpc, otlp_http); by default the usual port, or the next free one
    #[arg(long, value_name = "NAME=PORT")]
    pub port: Vec<String>,
    /// Send alerts to this webhook URL (Alertmanager webhook_configs)
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Add the obs-injector service (instruments the project's containers on start)
    #[arg(long)]
    pub injector: bool,
    /// Also write every signal as JSON lines into the otel-debug volume (collector file exporter)
    #[arg(long)]
    pub debug_output: bool,
    /// Availability objective for a service in percent: SERVICE=99.9
    #[arg(long, value_name = "SERVICE=PCT")]
    pub slo: Vec<String>,
    /// p95 latency objective for a service in seconds: SERVICE=0.3
    #[arg(long, value_name = "SERVICE=SECONDS")]
    pub latency: Vec<String>,
    /// Do not look at running containers; detect from build contexts only
    #[arg(long = "static")]
    pub static_only: bool,
    /// Override a profile setting (KEY=VALUE, e.g. alert_for_fast=30s, memory.collector=256m)
    #[arg(long = "set", value_name = "KEY=VALUE", hide = true)]
    pub set: Vec<String>,
    /// `otelcol components` output of the collector image, to write its canonical names
    #[arg(
        long,
        value_name = "FILE",
        hide = true,
        env = "OBS_STACK_COLLECTOR_COMPONENTS"
    )]
    pub collector_components: Option<PathBuf>,
}

fn pairs(flag: &str, items: &[String]) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => bail!("--{flag} expects KEY=VALUE, got {s:?}"),
        })
        .collect()
}

fn numbers(flag: &str, items: &[String]) -> Result<BTreeMap<String, f64>> {
    pairs(flag, items)?
        .into_iter()
        .map(|(k, v)| {
            let n: f64 = v
                .trim_end_matches('s')
                .parse()
                .with_context(|| format!("--{flag} {k}={v}: not a number"))?;
            if !n.is_finite() || n <= 0.0 {
                bail!("--{flag} {k}={v}: must be positive");
            }
            Ok((k, n))
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct FileReport {
    path: String,
    action: Action,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    project: &'a str,
    compose_file: String,
    out_dir: String,
    profile: &'a str,
    lite: bool,
    dry_run: bool,
    services: Vec<ServiceReport<'a>>,
    files: Vec<FileReport>,
    ports: &'a BTreeMap<String, u16>,
    warnings: &'a [String],
    commands: Vec<String>,
    /// The external agent volumes init filled (or found ready).
    agent_volumes: Vec<String>,
    /// The compose project the stack runs as.
    stack_project: &'a str,
}

#[derive(Debug, Serialize)]
struct ServiceReport<'a> {
    #[serde(flatten)]
    info: &'a ServiceInfo,
    instrumented: bool,
    reason: String,
}

impl InitArgs {
    fn options(&self) -> SavedOptions {
        SavedOptions {
            profile: self.profile.map(|p| p.as_str().to_string()),
            lite: self.lite,
            disable: self.disable.clone(),
            image: self.image.clone(),
            assume: self.assume.clone(),
            webhook: self.webhook.clone(),
            injector: self.injector,
            debug_output: self.debug_output,
            slo: self.slo.clone(),
            latency: self.latency.clone(),
            set: self.set.clone(),
        }
    }
}

pub async fn run(global: &GlobalArgs, args: InitArgs) -> Result<Outcome> {
    let style = global.style();
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let file = compose::locate(args.file.as_deref(), &cwd)?;
    let assets = Assets::load(&TEMPLATES, args.templates.as_deref())?;
    // The user's file must be a valid Compose file before anything else happens.
    let project = compose::load(&file, assets.get(COMPOSE_SCHEMA))?;
    // Detection, the agent volumes and the ports all need the engine: without it, init stops
    // here (exit 3) rather than write worse files over good ones.
    let engine = Engine::connect().await?;
    let out_dir = match &args.out {
        Some(d) => std::path::absolute(d).unwrap_or_else(|_| d.clone()),
        None => project.dir.clone(),
    };
    let data = Data::load(&assets)?;
    let old_manifest = read_manifest(&out_dir)?;
    // Flags this run does not give are the last run's (recorded in the manifest).
    let options = if args.fresh {
        args.options()
    } else {
        SavedOptions::merged(&args.options(), &old_manifest.options)
    };
    let profile = match options.profile.as_deref() {
        None | Some("dev") => Profile::Dev,
        Some("prod") => Profile::Prod,
        Some(other) => bail!("the recorded profile {other:?} is unknown; pass --profile"),
    };
    let mut warnings = Vec::new();
    if out_dir != project.dir {
        warnings.push(format!(
            "obs-stack.yml goes to {} but the compose file is in {}: Compose resolves relative paths \
             from the first file's directory, so merge them with --project-directory {}",
            out_dir.display(),
            project.dir.display(),
            out_dir.display()
        ));
    }

    // Options from flags and environment.
    let mut images: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in std::env::vars() {
        if let Some(name) = k.strip_prefix("OBS_STACK_IMAGE_")
            && !v.is_empty()
        {
            images.insert(name.to_ascii_lowercase().replace('_', "-"), v);
        }
    }
    images.extend(pairs("image", &options.image)?);
    let mut explicit_ports = BTreeMap::new();
    for (k, v) in pairs("port", &args.port)? {
        let p: u16 = v
            .parse()
            .with_context(|| format!("--port {k}={v}: not a port number"))?;
        explicit_ports.insert(k, p);
    }
    let assumed: Vec<ServiceInfo> = options
        .assume
        .iter()
        .map(|s| ServiceInfo::parse_assumption(s))
        .collect::<Result<_>>()?;
    for a in &assumed {
        if !project.services.iter().any(|s| s.name == a.name) {
            bail!("--assume {}: no such service in {}", a.name, file.display());
        }
    }
    let collector_components = match &args.collector_components {
        Some(p) => Some(plan::parse_components(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )),
        None => None,
    };

    // Live containers of the project, the API version, the user network.
    let facts = gather(&engine, &project, &assumed, args.static_only, &mut warnings).await;

    let mut disabled: BTreeSet<String> = options.disable.iter().map(|s| s.trim().to_string()).collect();
    disabled.retain(|s| !s.is_empty());
    let mut opts = InitOptions {
        profile,
        lite: options.lite,
        disabled,
        images,
        ports: BTreeMap::new(),
        injector: options.injector,
        debug_output: options.debug_output,
        webhook: options.webhook.clone(),
        settings: pairs("set", &options.set)?.into_iter().collect(),
        slo: numbers("slo", &options.slo)?,
        latency: numbers("latency", &options.latency)?,
        docker_api_version: facts.api_version.clone().unwrap_or_else(|| "1.44".into()),
        user_network: facts.user_network.clone(),
        collector_components,
        compose_cmd: crate::cmd::doctor::compose_command().await,
        ..InitOptions::default()
    };
    // Ports: explicit, else last run's, else the default; moved when taken by someone else
    // (only the stack's own containers count as ours).
    let wanted = published_ports(&opts, &data);
    opts.ports = choose_ports(&wanted, &explicit_ports, &old_manifest.ports, &facts.our_ports)?;

    let p = plan::plan(&project, &facts.detections, &facts.env, &opts, &data)?;
    warnings.extend(p.warnings.iter().cloned());
    let mut files = render::render(&assets, &p)?;
    let env_rel = format!("{}/.env", p.config_dir);
    files.insert(env_rel.clone(), secrets_env(&out_dir.join(&env_rel))?);

    // The agent volumes the apps mount: filled now, by the same code as inject (once per
    // agent build, never while a container mounts them), before any file refers to them.
    let mut volumes = Vec::new();
    if !args.dry_run {
        for a in &p.agents {
            let step = agent_step(&data, a)?;
            apply::prepare_agent_for(&engine, &step)
                .await
                .with_context(|| format!("preparing the agent volume {} from {}", a.volume_name, a.image))?;
            volumes.push(a.volume_name.clone());
        }
    }

    // Decide and write.
    let mut reports = Vec::new();
    let mut new_manifest = Manifest {
        version: 1,
        generator: format!("obs-stack {}", env!("CARGO_PKG_VERSION")),
        files: old_manifest.files.clone(),
        ports: opts.ports.clone(),
        options: options.clone(),
    };
    for (rel, content) in &files {
        let path = out_dir.join(rel);
        let on_disk = std::fs::read(&path).ok();
        let mut action = manifest::decide(rel, content, on_disk.as_deref(), &old_manifest, args.force);
        // Never replace good output with worse: a service the last run instrumented that
        // detection now knows nothing about (container stopped, detection failed) keeps the
        // old overrides; the new version goes next to them.
        if rel == APPS_FILE
            && matches!(action, Action::Update)
            && let Some(old) = on_disk.as_deref()
        {
            let lost = lost_services(old, &p);
            if !lost.is_empty() {
                action = Action::Conflict;
                warnings.push(format!(
                    "detection found nothing for {} (instrumented by the last run): kept {APPS_FILE}; \
                     the new version is {APPS_FILE}.new (start the project so init can inspect it, \
                     pass --assume SERVICE=LANGUAGE, or --force)",
                    lost.join(", ")
                ));
            }
        }
        if !args.dry_run {
            let secret = rel == &env_rel;
            match action {
                Action::Create | Action::Update | Action::Overwrite => write_file(&path, content, secret)?,
                Action::Conflict => {
                    write_file(&PathBuf::from(format!("{}.new", path.display())), content, secret)?
                }
                Action::Unchanged => {}
            }
        }
        if action != Action::Conflict {
            new_manifest
                .files
                .insert(rel.clone(), manifest::sha256_hex(content.as_bytes()));
        }
        reports.push(FileReport {
            path: rel.clone(),
            action,
        });
    }
    if !args.dry_run {
        let text = serde_json::to_string_pretty(&new_manifest)? + "\n";
        write_file(&out_dir.join(MANIFEST_PATH), &text, false)?;
    }

    let conflicts: Vec<&FileReport> = reports.iter().filter(|r| r.action == Action::Conflict).collect();
    for c in &conflicts {
        warnings.push(format!(
            "{} was edited since obs-stack wrote it: kept; the new version is {}.new (--force overwrites)",
            c.path, c.path
        ));
    }
    let compose_name = file
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let commands = vec![
        format!("{} -p {} -f obs-stack.yml up -d", p.compose_cmd, p.stack_project),
        format!("{} -f {compose_name} -f obs-stack.apps.yml up -d", p.compose_cmd),
    ];
    let instrumented: BTreeMap<&str, (&bool, &String)> = p
        .apps
        .iter()
        .map(|a| (a.name.as_str(), (&a.instrumented, &a.reason)))
        .collect();
    let services: Vec<ServiceReport> = p
        .services
        .iter()
        .map(|s| {
            let (inst, reason) = instrumented
                .get(s.name.as_str())
                .map(|(i, r)| (**i, (*r).clone()))
                .unwrap_or((false, describe_non_app(s)));
            ServiceReport {
                info: s,
                instrumented: inst,
                reason,
            }
        })
        .collect();
    let report = Report {
        project: &project.name,
        compose_file: file.display().to_string(),
        out_dir: out_dir.display().to_string(),
        profile: profile.as_str(),
        lite: options.lite,
        dry_run: args.dry_run,
        services,
        files: reports,
        ports: &p.ports,
        warnings: &warnings,
        commands,
        agent_volumes: volumes,
        stack_project: &p.stack_project,
    };
    if style.json {
        crate::output::print_json(&report)?;
    } else {
        print_human(&style, &report, &p);
    }
    Ok(Outcome::Success)
}

fn describe_non_app(s: &ServiceInfo) -> String {
    match s.kind.as_str() {
        "infra" => "infrastructure: container metrics and logs".into(),
        _ if s.source == "none" => {
            "not detected: container metrics and logs (use --assume to instrument)".into()
        }
        _ => "unknown: container metrics and logs".into(),
    }
}

fn print_human(style: &Style, r: &Report, p: &plan::Plan) {
    if style.quiet {
        for w in r.warnings {
            eprintln!("warning: {w}");
        }
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{} project {} ({}, profile {}{})",
        style.paint(Paint::Bold, "obs-stack init:"),
        r.project,
        r.compose_file,
        r.profile,
        if r.lite { ", lite" } else { "" }
    );
    for s in &r.services {
        let what = match (&s.info.language, &s.info.framework) {
            (Some(l), Some(f)) => format!("{l}/{f}"),
            (Some(l), None) => l.clone(),
            _ => s.info.kind.clone(),
        };
        let mark = if s.instrumented {
            style.paint(Paint::Green, "instrumented")
        } else {
            style.paint(Paint::Dim, "not instrumented")
        };
        let _ = writeln!(
            out,
            "  {:<20} {:<22} {}  ({}; {})",
            s.info.name, what, mark, s.reason, s.info.source
        );
    }
    let _ = writeln!(out, "{}", if r.dry_run { "would write:" } else { "files:" });
    for f in &r.files {
        let a = match f.action {
            Action::Create => style.paint(Paint::Green, "create"),
            Action::Update => style.paint(Paint::Green, "update"),
            Action::Unchanged => style.paint(Paint::Dim, "unchanged"),
            Action::Overwrite => style.paint(Paint::Yellow, "overwrite"),
            Action::Conflict => style.paint(Paint::Yellow, "kept (edited); new version in .new"),
        };
        let _ = writeln!(out, "  {:<10} {}", a, f.path);
    }
    for w in r.warnings {
        let _ = writeln!(out, "{} {w}", style.paint(Paint::Yellow, "warning:"));
    }
    let _ = writeln!(out, "next (in {}):", r.out_dir);
    for c in &r.commands {
        let _ = writeln!(out, "  {c}");
    }
    let mut urls = vec![format!("Prometheus http://127.0.0.1:{}", p.ports["prometheus"])];
    if p.components["grafana"] {
        urls.insert(
            0,
            format!(
                "Grafana http://127.0.0.1:{} (admin, password in {}/.env)",
                p.ports["grafana"], p.config_dir
            ),
        );
    }
    if p.components["alertmanager"] {
        urls.push(format!(
            "Alertmanager http://127.0.0.1:{}",
            p.ports["alertmanager"]
        ));
    }
    urls.push(format!(
        "OTLP 127.0.0.1:{} (gRPC), :{} (HTTP)",
        p.ports["otlp_grpc"], p.ports["otlp_http"]
    ));
    let _ = writeln!(out, "then: {}", urls.join(", "));
}

/// What Docker tells us, all optional.
#[derive(Default)]
struct Facts {
    detections: Vec<ServiceInfo>,
    /// Environment of each service's image (the compose file's is added by the plan).
    env: BTreeMap<String, BTreeMap<String, String>>,
    api_version: Option<String>,
    user_network: Option<String>,
    /// Host ports published by this project's containers (ours to keep on re-runs).
    our_ports: BTreeSet<u16>,
    /// Services whose running container carries our agent already.
    ours: BTreeSet<String>,
}

async fn gather(
    engine: &Engine,
    project: &ComposeProject,
    assumed: &[ServiceInfo],
    static_only: bool,
    warnings: &mut Vec<String>,
) -> Facts {
    let engine = Some(engine);
    let mut facts = Facts::default();
    let assumed_names: BTreeSet<&str> = assumed.iter().map(|a| a.name.as_str()).collect();
    facts.detections.extend(assumed.iter().cloned());
    let mut live: BTreeMap<String, String> = BTreeMap::new(); // service -> container id
    if let Some(engine) = engine {
        if let Ok(v) = engine.version().await {
            facts.api_version = v.api_version;
        }
        let label = format!("com.docker.compose.project={}", project.name);
        match engine.list(false, &[label]).await {
            Ok(containers) => {
                for c in containers {
                    let labels = c.labels.clone().unwrap_or_default();
                    // A stack an older init ran inside the user's project is ours too.
                    let ours = labels.contains_key("io.obs-stack.component");
                    for p in c.ports.clone().unwrap_or_default() {
                        if let (Some(pp), true) = (p.public_port, ours) {
                            facts.our_ports.insert(pp);
                        }
                    }
                    if let (Some(svc), Some(id), false) = (
                        labels.get("com.docker.compose.service"),
                        c.id.clone(),
                        ours || static_only,
                    ) {
                        live.entry(svc.clone()).or_insert(id);
                    }
                }
            }
            Err(e) => warnings.push(format!("listing the project's containers: {e}")),
        }
        // The stack's own project: its published ports stay ours on a re-run.
        let stack = format!(
            "com.docker.compose.project={}",
            plan::stack_project(&project.name)
        );
        for c in engine.list(false, &[stack]).await.unwrap_or_default() {
            for p in c.ports.clone().unwrap_or_default() {
                if let Some(pp) = p.public_port {
                    facts.our_ports.insert(pp);
                }
            }
        }
        let net = format!("{}_default", project.name);
        let uses_default = project
            .services
            .iter()
            .any(|s| s.networks.is_empty() && s.network_mode.is_none());
        if uses_default && engine.network_exists(&net).await.unwrap_or(false) {
            facts.user_network = Some(net);
        }
        // The baseline the override is computed against: the image's environment (plus the
        // compose file's, added in the plan). Not the running container's environment: once
        // instrumented it already holds our variables, and a re-run must produce the same file.
        let mut images: BTreeMap<String, String> = BTreeMap::new();
        for (svc, id) in &live {
            if let Ok(info) = engine.inspect(id).await {
                // Instrumented by an earlier `obs-stack init`/`inject`: its OpenTelemetry agent
                // is ours, not a reason to leave the service alone.
                let env = info
                    .config
                    .as_ref()
                    .and_then(|c| c.env.clone())
                    .unwrap_or_default();
                if env.iter().any(|e| e.contains("/otel-auto-instrumentation-")) {
                    facts.ours.insert(svc.clone());
                }
                if let Some(image) = info.image {
                    images.insert(svc.clone(), image);
                }
            }
        }
        for s in &project.services {
            if !images.contains_key(&s.name)
                && let Some(img) = &s.image
            {
                images.insert(s.name.clone(), img.clone());
            }
        }
        for (svc, image) in &images {
            if let Ok(i) = engine.inspect_image(image).await {
                let env = i.config.and_then(|c| c.env).unwrap_or_default();
                facts.env.insert(svc.clone(), env_map(&env));
            }
        }
    }
    for s in &project.services {
        if assumed_names.contains(s.name.as_str()) {
            continue;
        }
        let mut info = detect::service(engine, s, live.get(&s.name).map(String::as_str), warnings).await;
        if facts.ours.contains(&s.name) {
            info.existing_agents.retain(|a| a != "opentelemetry");
        }
        facts.detections.push(info);
    }
    facts
}

fn env_map(env: &[String]) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// The one call site of the detector (`crate::detect`): live containers first, the build
/// context (static mode) otherwise; `--assume` overrides it per service.
mod detect {
    use super::*;
    use crate::init::compose::ComposeService;

    pub async fn service(
        engine: Option<&Engine>,
        s: &ComposeService,
        container: Option<&str>,
        warnings: &mut Vec<String>,
    ) -> ServiceInfo {
        use crate::detect::{DetectOptions, Kind, SignatureSet, detect_container, detect_path};
        let sigs = match SignatureSet::builtin() {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("signatures: {e:#}"));
                return ServiceInfo::unknown(&s.name);
            }
        };
        let (result, source) = match (engine, container) {
            (Some(engine), Some(c)) => (
                detect_container(engine, c, &sigs, &DetectOptions::default()).await,
                "live",
            ),
            _ => match &s.build_context {
                Some(ctx) => (detect_path(ctx, &sigs), "static"),
                None => return ServiceInfo::unknown(&s.name),
            },
        };
        match result {
            Ok(d) => ServiceInfo {
                name: s.name.clone(),
                kind: match d.kind {
                    Kind::App => "app",
                    Kind::Infrastructure => "infra",
                    Kind::Unknown => "unknown",
                }
                .into(),
                language: d.language,
                framework: d.framework,
                libc: d.libc,
                confidence: d.confidence,
                source: source.into(),
                existing_agents: d.existing_agents,
            },
            Err(e) => {
                warnings.push(format!("detecting {}: {e:#}", s.name));
                ServiceInfo::unknown(&s.name)
            }
        }
    }
}

/// The per-service overrides init writes.
const APPS_FILE: &str = "obs-stack.apps.yml";

/// Services the apps overrides on disk instrument that the new plan leaves out only because
/// detection knows nothing about them now (not because they were opted out or changed).
fn lost_services(old_apps_file: &[u8], p: &plan::Plan) -> Vec<String> {
    let Ok(doc) = serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(old_apps_file) else {
        return Vec::new();
    };
    let Some(old) = doc.get("services").and_then(|s| s.as_mapping()) else {
        return Vec::new();
    };
    old.keys()
        .filter_map(|k| k.as_str())
        .filter(|name| {
            p.services
                .iter()
                .any(|s| s.name == *name && s.source == "none" && s.language.is_none())
                && !p.apps.iter().any(|a| a.name == *name && a.instrumented)
        })
        .map(String::from)
        .collect()
}

/// Where the embedded Compose JSON schema lives among the template assets.
const COMPOSE_SCHEMA: &str = "schemas/compose-spec.json";

/// The agent volume fill for one planned agent volume, described as inject describes it.
fn agent_step(data: &Data, a: &AgentPlan) -> Result<AgentStep> {
    let r = data
        .agents
        .runtimes
        .get(&a.runtime)
        .with_context(|| format!("agents.yaml has no runtime {}", a.runtime))?;
    let check_file = match (&r.musl_check_file, a.musl) {
        (Some(f), true) => f.clone(),
        _ => r.check_file.clone(),
    };
    Ok(AgentStep {
        runtime: a.runtime.clone(),
        image: a.image.clone(),
        volume: a.volume_name.clone(),
        sources: r.sources_for(a.musl).to_vec(),
        mount: r.mount.clone(),
        check_file,
        guard_dir: r.guard_dir.clone(),
    })
}

/// The host ports the enabled services publish, with their defaults.
fn published_ports(opts: &InitOptions, data: &Data) -> BTreeMap<String, u16> {
    let mut out = BTreeMap::new();
    for (k, v) in &data.stack.ports {
        let off = match k.as_str() {
            "grafana" => opts.disabled.contains("grafana"),
            "alertmanager" => opts.disabled.contains("alertmanager"),
            _ => false,
        };
        if !off {
            out.insert(k.clone(), *v);
        }
    }
    out
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn choose_ports(
    wanted: &BTreeMap<String, u16>,
    explicit: &BTreeMap<String, u16>,
    previous: &BTreeMap<String, u16>,
    ours: &BTreeSet<u16>,
) -> Result<BTreeMap<String, u16>> {
    for k in explicit.keys() {
        if !wanted.contains_key(k) {
            bail!(
                "--port {k}: unknown (one of {})",
                wanted.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    let mut out = BTreeMap::new();
    // Explicit first, so automatic choices avoid them.
    for (k, p) in explicit {
        taken.insert(*p);
        out.insert(k.clone(), *p);
    }
    for (k, default) in wanted {
        if out.contains_key(k) {
            continue;
        }
        if let Some(prev) = previous.get(k)
            && !taken.contains(prev)
            && (ours.contains(prev) || port_free(*prev))
        {
            taken.insert(*prev);
            out.insert(k.clone(), *prev);
            continue;
        }
        let mut p = *default;
        let mut tries = 0;
        while taken.contains(&p) || !(ours.contains(&p) || port_free(p)) {
            p = p.checked_add(1).context("no free port")?;
            tries += 1;
            if tries > 200 {
                bail!("no free port near {default} for {k}; pass --port {k}=PORT");
            }
        }
        taken.insert(p);
        out.insert(k.clone(), p);
    }
    Ok(out)
}

fn read_manifest(out_dir: &Path) -> Result<Manifest> {
    let path = out_dir.join(MANIFEST_PATH);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is corrupt; delete it to start over (files are then treated as yours)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The secrets file: existing values are kept (so re-running changes nothing), missing ones
/// are generated from the OS random source.
fn secrets_env(path: &Path) -> Result<String> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let mut values: BTreeMap<String, String> = existing
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    for key in ["GF_SECURITY_ADMIN_PASSWORD", "GF_SECURITY_SECRET_KEY"] {
        if !values.contains_key(key) {
            values.insert(key.to_string(), random_secret()?);
        }
    }
    let mut out = String::from(
        "# Secrets generated by obs-stack init (mode 0600). Kept across re-runs; delete a line to\n\
         # get a new value. Grafana: user admin, password GF_SECURITY_ADMIN_PASSWORD.\n",
    );
    for (k, v) in values {
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}

fn random_secret() -> Result<String> {
    let mut buf = [0u8; 24];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("reading the OS random source: {e}"))?;
    Ok(hex::encode(buf))
}

fn write_file(path: &Path, content: &str, secret: bool) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Write to a temporary file and rename: a crash never leaves half a file.
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension()
            .map(|e| e.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(if secret { 0o600 } else { 0o644 });
        }
        let mut f = o
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(content.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_kept_moved_and_explicit() {
        let wanted = BTreeMap::from([("a".to_string(), 1u16), ("b".to_string(), 1u16)]);
        // Port 1 is privileged/unbindable for non-root or free for root; use high ports instead.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = l.local_addr().unwrap().port();
        let wanted2 = BTreeMap::from([("x".to_string(), busy)]);
        let got = choose_ports(&wanted2, &BTreeMap::new(), &BTreeMap::new(), &BTreeSet::new()).unwrap();
        assert_ne!(got["x"], busy, "a taken port is moved");
        let got = choose_ports(
            &wanted2,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeSet::from([busy]),
        )
        .unwrap();
        assert_eq!(got["x"], busy, "our own stack's port is kept");
        let explicit = BTreeMap::from([("a".to_string(), 40001u16)]);
        let got = choose_ports(&wanted, &explicit, &BTreeMap::new(), &BTreeSet::new()).unwrap();
        assert_eq!(got["a"], 40001);
        assert!(
            choose_ports(
                &wanted,
                &BTreeMap::from([("zz".to_string(), 1)]),
                &BTreeMap::new(),
                &BTreeSet::new()
            )
            .is_err()
        );
    }

    #[test]
    fn secrets_are_random_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        let a = secrets_env(&p).unwrap();
        let b = secrets_env(&p).unwrap();
        assert_ne!(a, b, "fresh secrets each time when none exist");
        assert!(!a.contains("=admin\n"));
        std::fs::write(&p, &a).unwrap();
        assert_eq!(secrets_env(&p).unwrap(), a, "existing secrets are kept");
    }
}
