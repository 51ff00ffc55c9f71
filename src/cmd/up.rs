//! `obs-stack up` / `down`: from nothing to answers in one command. `up` starts the embedded
//! backend (`obs-stack serve`) in a container made from this very binary, instruments the
//! selected containers with `inject` (the backend as endpoint, the project's ingest key),
//! and starts `obs-stack watch` for what gets no agent. `down` undoes exactly that.
//! Also the hidden helpers the containers run: `watch` and `healthcheck`.
//!
//! Every step is idempotent and the state (`up.state` next to inject's records) is written
//! before the change it describes, so a rerun after a SIGKILL converges; inject's own journal
//! covers each recreate.
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, Mount, MountType, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use clap::Args;
use futures_util::StreamExt;
use serde::Serialize;

use crate::agents::{AGENT_VOLUME_PREFIX, Catalog, Profile};
use crate::cli::GlobalArgs;
use crate::client::{self, Client};
use crate::cmd::inject::{self, InjectArgs, InjectOptions, Metrics, OPT_OUT_LABEL};
use crate::docker::{Engine, docker_host};
use crate::exit::Outcome;
use crate::inject::plan::{COMPOSE_PROJECT, COMPOSE_SERVICE, LABEL_INJECTED};
use crate::inject::state::Store;
use crate::output::{Paint, Style, print_json};
use crate::up::{
    self, API_PORT, BACKEND, COMPONENT_LABEL, Candidate, Decision, IMAGE_REPO, NETWORK, OTLP_GRPC_PORT,
    OTLP_HTTP_PORT, UpState, VOLUME, WATCHER, WatchTarget,
};

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Containers to instrument (default: the running containers of the compose project in
    /// this directory, else every running container)
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Every running container of this compose project
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub project: Option<String>,
    /// Every running container
    #[arg(long)]
    pub all: bool,
    /// Host port of the backend's API and UI (127.0.0.1 only)
    #[arg(long, default_value_t = API_PORT, value_name = "PORT")]
    pub port: u16,
    /// dev: every trace kept; prod: 10% and the noisy instrumentations off
    #[arg(long, value_enum, default_value_t = Profile::Dev)]
    pub profile: Profile,
    /// Seconds an instrumented container must run without restarting before it counts
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub grace: f64,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Also delete the backend's data (the obs-stack-data volume)
    #[arg(long)]
    pub purge: bool,
    /// Seconds a reverted container must run before it counts
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub grace: f64,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The backend's API
    #[arg(long, default_value = "http://obs-stack:4319")]
    pub api: String,
    /// PROJECT:SERVICE:CONTAINER[:PORT,…] (repeat): container stats, and HTTP checks on PORTs
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Seconds between rounds
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// One round, then exit (tests)
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// URL that must answer 2xx
    pub url: String,
}

/// One selected container, with what `up` decided about it.
#[derive(Debug, Clone, Serialize)]
struct Row {
    container: String,
    project: String,
    service: String,
    language: Option<String>,
    framework: Option<String>,
    #[serde(flatten)]
    decision: Decision,
    /// What happened: instrumented, already instrumented, rolled back, failed …
    outcome: String,
}

#[derive(Debug, Serialize)]
struct UpReport {
    api: String,
    ui: String,
    token: String,
    backend_image: String,
    backend_reused: bool,
    containers: Vec<Row>,
    warnings: Vec<String>,
}

fn state_path() -> std::path::PathBuf {
    UpState::path()
}

pub async fn up(global: &GlobalArgs, args: UpArgs) -> Result<Outcome> {
    let style = global.style();
    let started = Instant::now();
    // 1. The engine, as doctor checks it.
    let engine = Engine::connect().await?;
    let version = engine.version().await?;
    if let Some(v) = version
        .api_version
        .as_deref()
        .and_then(crate::doctor::parse_api_version)
        && v < crate::doctor::MIN_API_VERSION
    {
        bail!(
            "the Docker engine speaks API {}.{}; obs-stack needs {}.{} or newer\n  hint: `obs-stack doctor` explains",
            v.0,
            v.1,
            crate::doctor::MIN_API_VERSION.0,
            crate::doctor::MIN_API_VERSION.1
        );
    }
    inject::clean_leftovers(&engine, &style).await;
    let pb = style.progress(5, "starting the backend");

    // 2. The backend.
    let (image, reused) = ensure_backend(&engine, args.port).await?;
    let client = wait_backend(&engine, Duration::from_secs(60)).await?;
    pb.inc(1);

    // 3. Which containers, and what each gets.
    pb.set_message("detecting");
    let default_project = args
        .project
        .clone()
        .or_else(cwd_project)
        .unwrap_or_else(|| "default".to_string());
    let names = select(&engine, &args, &default_project).await?;
    if names.is_empty() {
        bail!(
            "no running containers to observe{}\n  hint: start your app (`docker compose up -d`), or name containers: `obs-stack up web api`",
            args.project
                .as_ref()
                .map(|p| format!(" in project {p}"))
                .unwrap_or_default()
        );
    }
    let catalog = Catalog::builtin()?;
    let mut rows = detect_all(&engine, &names, &default_project, &catalog).await;
    pb.inc(1);

    // 4. Record the intent before changing anything (down / a rerun converge from it).
    let path = state_path();
    let mut state = UpState::load(&path)?;
    state.format = 1;
    for r in &rows {
        let p = state.projects.entry(r.project.clone()).or_default();
        if matches!(r.decision, Decision::Agent { .. }) && !p.instrumented.contains(&r.container) {
            p.instrumented.push(r.container.clone());
        }
        let t = WatchTarget {
            project: r.project.clone(),
            service: r.service.clone(),
            container: r.container.clone(),
            http_ports: match &r.decision {
                Decision::Fallback { http_ports, .. } => http_ports.clone(),
                _ => Vec::new(),
            },
            // an agent's SDK names its language itself; the others have only detection
            language: r
                .language
                .clone()
                .filter(|l| !l.is_empty() && !l.contains(':'))
                .filter(|_| !matches!(r.decision, Decision::Agent { .. })),
        };
        p.watched.retain(|w| w.container != t.container);
        p.watched.push(t);
    }
    state.save(&path)?;

    // 5. Inject, per project (each with its own ingest key).
    pb.set_message("instrumenting");
    let mut by_project: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        if matches!(r.decision, Decision::Agent { .. }) {
            by_project
                .entry(r.project.clone())
                .or_default()
                .push(r.container.clone());
        }
    }
    let store = Store::default_location();
    let quiet = Style::new(false, crate::output::ColorChoice::Never, 0, true);
    let mut outcomes: HashMap<String, String> = HashMap::new();
    for (project, containers) in &by_project {
        let key = client.project_key(project).await?;
        let iargs = inject_args(containers.clone(), &key, args.profile, args.grace);
        for (name, r) in inject::execute(&engine, &store, &iargs, containers, &quiet).await? {
            let text = match r {
                Ok(rep) => match rep.result {
                    "injected" => "instrumented".to_string(),
                    "noop" => "already instrumented".to_string(),
                    "rolled_back" => format!(
                        "rolled back: {} (the original runs again)",
                        rep.detail.unwrap_or_default()
                    ),
                    other => format!("{other}: {}", rep.detail.unwrap_or_default()),
                },
                Err(e) => format!("failed: {e:#}"),
            };
            outcomes.insert(name, text);
        }
    }
    for p in state.projects.keys() {
        // Projects that only have watched containers still need a key for their data.
        client.project_key(p).await?;
    }
    pb.inc(1);

    // 6. The watcher, for everything selected so far (stats for all, HTTP checks for the
    //    containers without an agent).
    pb.set_message("starting the watcher");
    let token = client.token.clone();
    ensure_watcher(&engine, &image, &state.all_watched(), &token).await?;
    pb.inc(1);
    pb.finish_and_clear();

    for r in rows.iter_mut() {
        r.outcome = match &r.decision {
            Decision::Agent { .. } => outcomes
                .remove(&r.container)
                .unwrap_or_else(|| "not attempted".into()),
            Decision::Fallback { http_ports, .. } if !http_ports.is_empty() => {
                format!(
                    "watched: container stats, HTTP checks on :{}",
                    join_ports(http_ports)
                )
            }
            Decision::Fallback { .. } => "watched: container stats (no TCP port to check)".into(),
            Decision::LeftAlone { .. } => "left alone; container stats recorded".into(),
        };
    }
    let report = UpReport {
        api: client.base.clone(),
        ui: client.ui_url(),
        token: client.token.clone(),
        backend_image: image,
        backend_reused: reused,
        containers: rows,
        warnings: Vec::new(),
    };
    if style.json {
        print_json(&report)?;
    } else {
        print_up(&style, &report, started.elapsed());
    }
    let failed = report
        .containers
        .iter()
        .any(|r| r.outcome.starts_with("failed") || r.outcome.starts_with("rolled back"));
    Ok(if failed {
        Outcome::Negative
    } else {
        Outcome::Success
    })
}

fn join_ports(p: &[u16]) -> String {
    p.iter().map(u16::to_string).collect::<Vec<_>>().join(", :")
}

fn print_up(style: &Style, r: &UpReport, took: Duration) {
    println!(
        "{} backend {} ({}), {} containers in {:.1}s",
        style.paint(Paint::Bold, "obs-stack up:"),
        if r.backend_reused { "reused" } else { "started" },
        r.backend_image,
        r.containers.len(),
        took.as_secs_f64()
    );
    for c in &r.containers {
        let what = match (&c.language, &c.framework, &c.decision) {
            (Some(l), Some(f), _) => format!("{l}/{f}"),
            (Some(l), None, _) => l.clone(),
            (None, _, Decision::LeftAlone { reason }) if reason.starts_with("infrastructure") => {
                "infrastructure".into()
            }
            _ => "unknown".into(),
        };
        let (label, detail) = match &c.decision {
            Decision::Agent { runtime } => (
                style.paint(Paint::Green, &format!("{runtime} agent")),
                String::new(),
            ),
            Decision::Fallback { reason, .. } => {
                (style.paint(Paint::Yellow, "fallback"), format!(" — {reason}"))
            }
            Decision::LeftAlone { reason } => (style.paint(Paint::Dim, "left alone"), format!(" — {reason}")),
        };
        println!(
            "  {:<28} {:<22} {:<16} {}{}",
            c.container,
            format!("{}/{}", c.project, c.service),
            what,
            label,
            detail
        );
        println!("  {:<28} {}", "", style.paint(Paint::Dim, &c.outcome));
    }
    println!("UI:   {}", r.ui);
    println!(
        "API:  {} (token in the UI link; `obs-stack status` finds it)",
        r.api
    );
    println!(
        "next: send a few requests, then `obs-stack status` (or `top`, `traces`, `errors`); `obs-stack down` undoes all of it"
    );
}

/// The compose project of the current directory, when there is a compose file.
fn cwd_project() -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    let file = crate::init::compose::locate(None, &cwd).ok()?;
    crate::init::compose::load(&file, None).ok().map(|p| p.name)
}

async fn select(engine: &Engine, args: &UpArgs, default_project: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for c in &args.containers {
        // A container name or id, else a service of the project (`obs-stack up web api`).
        if let Some(i) = engine.try_inspect(c).await? {
            names.push(crate::inject::plan::container_name(&i));
            continue;
        }
        let labels = [
            format!("{COMPOSE_PROJECT}={default_project}"),
            format!("{COMPOSE_SERVICE}={c}"),
        ];
        let found: Vec<String> = engine
            .list(false, &labels)
            .await?
            .into_iter()
            .filter_map(|x| x.names?.first().map(|n| n.trim_start_matches('/').to_string()))
            .collect();
        if found.is_empty() {
            return Err(crate::docker::DockerError::NoSuchContainer(c.clone()).into());
        }
        names.extend(found);
    }
    if !args.containers.is_empty() {
        return Ok(names);
    }
    let by_project = if args.all {
        Vec::new()
    } else {
        vec![format!("{COMPOSE_PROJECT}={default_project}")]
    };
    let mut list = engine.list(false, &by_project).await?;
    if list.is_empty() && args.project.is_none() && !args.all {
        // No compose project here: every running container.
        list = engine.list(false, &[]).await?;
    }
    for c in list {
        let labels = c.labels.clone().unwrap_or_default();
        let Some(name) = c.names.as_ref().and_then(|n| n.first()) else {
            continue;
        };
        let name = name.trim_start_matches('/').to_string();
        if labels.contains_key(COMPONENT_LABEL)
            || labels.contains_key(crate::inject::apply::HELPER_LABEL)
            || labels.contains_key("io.obs-stack.test-infra")
            || name.ends_with(".obs-orig")
            || name.ends_with(".obs-injected")
        {
            continue;
        }
        names.push(name);
    }
    names.sort();
    names.dedup();
    Ok(names)
}

async fn detect_all(engine: &Engine, names: &[String], default_project: &str, catalog: &Catalog) -> Vec<Row> {
    let sigs = crate::detect::signature::SignatureSet::builtin().ok();
    futures_util::stream::iter(names.iter().cloned())
        .map(|name| {
            let sigs = sigs.as_ref();
            async move {
                let inspect = engine.inspect(&name).await.ok();
                let labels = inspect
                    .as_ref()
                    .and_then(|i| i.config.as_ref())
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default();
                let project = labels
                    .get(COMPOSE_PROJECT)
                    .cloned()
                    .unwrap_or_else(|| default_project.to_string());
                let service = labels
                    .get(COMPOSE_SERVICE)
                    .cloned()
                    .unwrap_or_else(|| name.clone());
                let det = match sigs {
                    Some(s) => crate::detect::detect_container(engine, &name, s, &Default::default())
                        .await
                        .ok(),
                    None => None,
                };
                let ours = labels.contains_key(LABEL_INJECTED);
                let mut cand = Candidate {
                    opted_out: labels.get(OPT_OUT_LABEL).is_some_and(|v| v == "false"),
                    tcp_ports: inspect.as_ref().map(tcp_ports).unwrap_or_default(),
                    ..Default::default()
                };
                if let Some(d) = &det {
                    cand.language = d.language.clone();
                    cand.framework = d.framework.clone();
                    if d.kind == crate::detect::Kind::Infrastructure {
                        cand.infrastructure =
                            d.infrastructure.clone().or_else(|| Some("infrastructure".into()));
                    }
                    cand.existing_agents = d
                        .existing_agents
                        .iter()
                        .filter(|a| !(ours && *a == "opentelemetry"))
                        .cloned()
                        .collect();
                }
                let decision = up::decide(&cand, |lang| {
                    catalog
                        .fallback
                        .get(lang)
                        .or_else(|| catalog.fallback.get("unknown"))
                        .cloned()
                        .unwrap_or_else(|| format!("no in-process agent for {lang}"))
                });
                Row {
                    container: name,
                    project,
                    service,
                    language: cand.language,
                    framework: cand.framework,
                    decision,
                    outcome: String::new(),
                }
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<Row>>()
        .await
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl PartialEq for Row {
    fn eq(&self, o: &Self) -> bool {
        self.container == o.container
    }
}
impl Eq for Row {}
impl PartialOrd for Row {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Row {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.container.cmp(&o.container)
    }
}

/// TCP ports a container exposes (image EXPOSE, `--expose`, published ports).
fn tcp_ports(i: &bollard::models::ContainerInspectResponse) -> Vec<u16> {
    let mut out: Vec<u16> = i
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.strip_suffix("/tcp")?.parse().ok())
        .collect();
    if let Some(ports) = i.network_settings.as_ref().and_then(|n| n.ports.as_ref()) {
        out.extend(
            ports
                .keys()
                .filter_map(|p| p.strip_suffix("/tcp")?.parse::<u16>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn inject_args(containers: Vec<String>, key: &str, profile: Profile, grace: f64) -> InjectArgs {
    InjectArgs {
        containers,
        all: false,
        project: None,
        revert: false,
        dry_run: false,
        opts: Box::new(InjectOptions {
            runtime: None,
            endpoint: up::ENDPOINT.to_string(),
            profile,
            service_name: None,
            metrics: Metrics::Otlp,
            force: false,
            agent_image: Vec::new(),
            network: vec![NETWORK.to_string()],
            grace,
            health_timeout: 120.0,
            stop_timeout: None,
            templates: None,
            otlp_headers: Some(format!("x-obs-stack-key={key}")),
            env_if_unset: up::AGENT_ENV
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                // dev: RED in the views within seconds of the requests (prod keeps the profile's).
                .chain((profile == Profile::Dev).then(|| "OTEL_METRIC_EXPORT_INTERVAL=5000".to_string()))
                .collect(),
        }),
    }
}

/// The backend image (made from this binary when missing), its network, volume and
/// container. Returns the image and whether a running backend of this build was reused.
async fn ensure_backend(engine: &Engine, api_port: u16) -> Result<(String, bool)> {
    let exe = std::fs::read("/proc/self/exe").context("reading obs-stack's own binary")?;
    let tag = up::binary_tag(&exe);
    let image = format!("{IMAGE_REPO}:{tag}");
    if !engine.image_exists(&image).await? {
        let maps = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
        let mut libs = Vec::new();
        for l in up::loaded_libraries(&maps) {
            let data = std::fs::read(&l).with_context(|| format!("reading {l}"))?;
            libs.push((l, data));
        }
        // The dynamic loader is found at its canonical path.
        for canonical in ["/lib64/ld-linux-x86-64.so.2"] {
            if !libs.iter().any(|(p, _)| p == canonical)
                && let Ok(data) = std::fs::read(canonical)
            {
                libs.push((canonical.to_string(), data));
            }
        }
        let rootfs = up::rootfs_tar(&exe, &libs)?;
        engine
            .import_rootfs(
                IMAGE_REPO,
                &tag,
                rootfs,
                vec![
                    "ENTRYPOINT [\"/obs-stack\"]".into(),
                    "WORKDIR /data".into(),
                    format!("LABEL {COMPONENT_LABEL}=backend {OPT_OUT_LABEL}=false"),
                ],
            )
            .await
            .context("making the backend image from this binary")?;
    }
    if !engine.network_exists(NETWORK).await? {
        let labels = HashMap::from([(COMPONENT_LABEL.to_string(), "network".to_string())]);
        if let Err(e) = engine.create_network(NETWORK, labels).await
            && !engine.network_exists(NETWORK).await?
        {
            return Err(e.into());
        }
    }
    engine
        .create_volume(
            VOLUME,
            HashMap::from([(COMPONENT_LABEL.to_string(), "data".to_string())]),
        )
        .await?;
    if let Some(c) = engine.try_inspect(BACKEND).await? {
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let same = c.config.as_ref().and_then(|c| c.image.as_deref()) == Some(image.as_str());
        let same_port = client::published_api_port(&c) == Some(api_port);
        if running && same && same_port {
            return Ok((image, true));
        }
        // Another build, another port, or stopped: replace the container (the data stays in
        // its volume).
        engine.remove(BACKEND, false).await?;
    }
    let mut ports = HashMap::new();
    let bind = |p: u16| {
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(if p == 0 { String::new() } else { p.to_string() }),
        }])
    };
    ports.insert(format!("{API_PORT}/tcp"), bind(api_port));
    // OTLP for processes on the host too (an app outside Docker), on 127.0.0.1 only.
    ports.insert(format!("{OTLP_HTTP_PORT}/tcp"), bind(0));
    ports.insert(format!("{OTLP_GRPC_PORT}/tcp"), bind(0));
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: Some(
            [
                "serve",
                "--data-dir",
                "/data",
                "--otlp-grpc",
                "0.0.0.0:4317",
                "--otlp-http",
                "0.0.0.0:4318",
                "--api",
                "0.0.0.0:4319",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
        // Inside its own network namespace: 0.0.0.0 is the container's, reachable only on the
        // obs-stack network and through the 127.0.0.1 ports published here.
        env: Some(vec!["OBS_STACK_IN_CONTAINER=1".into()]),
        exposed_ports: Some(vec![
            format!("{API_PORT}/tcp"),
            format!("{OTLP_HTTP_PORT}/tcp"),
            format!("{OTLP_GRPC_PORT}/tcp"),
        ]),
        labels: Some(HashMap::from([
            (COMPONENT_LABEL.to_string(), "backend".to_string()),
            (OPT_OUT_LABEL.to_string(), "false".to_string()),
        ])),
        healthcheck: Some(HealthConfig {
            test: Some(vec![
                "CMD".into(),
                "/obs-stack".into(),
                "healthcheck".into(),
                format!("http://127.0.0.1:{API_PORT}/healthz"),
            ]),
            interval: Some(5_000_000_000),
            timeout: Some(3_000_000_000),
            retries: Some(3),
            start_period: Some(10_000_000_000),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                target: Some("/data".into()),
                source: Some(VOLUME.into()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            port_bindings: Some(ports),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: Some(512 << 20),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                NETWORK.to_string(),
                EndpointSettings {
                    aliases: Some(vec![BACKEND.to_string()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    engine
        .create_container(BACKEND, body)
        .await
        .context("creating the backend container")?;
    engine.start(BACKEND).await.with_context(|| {
        format!("starting the backend (is 127.0.0.1:{api_port} taken? `obs-stack up --port N` picks another)")
    })?;
    Ok((image, false))
}

/// Waits until the backend answers, and connects to it.
async fn wait_backend(engine: &Engine, timeout: Duration) -> Result<Client> {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < timeout {
        match client::discover(None, None).await {
            Ok(c) => match c.get("/api/v1/projects", &[]).await {
                Ok(_) => return Ok(c),
                Err(e) => last = format!("{e:#}"),
            },
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let logs = engine.logs_tail(BACKEND, 20).await.unwrap_or_default();
    bail!(
        "the backend did not answer within {}s: {last}\n{logs}",
        timeout.as_secs()
    )
}

/// (Re)creates the watcher for `targets`; nothing to watch: no watcher.
async fn ensure_watcher(engine: &Engine, image: &str, targets: &[WatchTarget], token: &str) -> Result<()> {
    let mut cmd = vec![
        "watch".to_string(),
        "--api".into(),
        format!("http://{BACKEND}:{API_PORT}"),
    ];
    for t in targets {
        cmd.push("--target".into());
        cmd.push(t.arg());
    }
    if let Some(c) = engine.try_inspect(WATCHER).await? {
        let same = c.config.as_ref().and_then(|c| c.cmd.clone()) == Some(cmd.clone())
            && c.config.as_ref().and_then(|c| c.image.as_deref()) == Some(image);
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if same && running {
            return Ok(());
        }
        engine.remove(WATCHER, false).await?;
    }
    if targets.is_empty() {
        return Ok(());
    }
    let socket = docker_host()
        .strip_prefix("unix://")
        .map(String::from)
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        env: Some(vec![
            format!("OBS_STACK_TOKEN={token}"),
            "DOCKER_HOST=unix:///var/run/docker.sock".into(),
        ]),
        labels: Some(HashMap::from([
            (COMPONENT_LABEL.to_string(), "watch".to_string()),
            (OPT_OUT_LABEL.to_string(), "false".to_string()),
        ])),
        host_config: Some(HostConfig {
            // Read-only: the watcher only reads stats and inspects.
            mounts: Some(vec![Mount {
                target: Some("/var/run/docker.sock".into()),
                source: Some(socket),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            }]),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: Some(128 << 20),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                NETWORK.to_string(),
                EndpointSettings::default(),
            )])),
        }),
        ..Default::default()
    };
    let id = engine
        .create_container(WATCHER, body)
        .await
        .context("creating the watcher")?;
    // The watcher joins the watched containers' networks to reach their HTTP ports (the
    // apps are not changed for it).
    let mut nets: Vec<String> = Vec::new();
    for t in targets.iter().filter(|t| !t.http_ports.is_empty()) {
        if let Ok(Some(c)) = engine.try_inspect(&t.container).await {
            let mode = c
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.clone())
                .unwrap_or_default();
            if mode == "host" || mode == "none" || mode.starts_with("container:") {
                continue;
            }
            nets.extend(
                c.network_settings
                    .and_then(|n| n.networks)
                    .unwrap_or_default()
                    .into_keys(),
            );
        }
    }
    nets.sort();
    nets.dedup();
    for n in nets.iter().filter(|n| n.as_str() != NETWORK) {
        if let Err(e) = engine.connect_network(n, &id, EndpointSettings::default()).await {
            tracing::warn!("the watcher cannot join network {n}: {e}");
        }
    }
    engine.start(&id).await.context("starting the watcher")?;
    Ok(())
}

pub async fn down(global: &GlobalArgs, args: DownArgs) -> Result<Outcome> {
    let style = global.style();
    let engine = Engine::connect().await?;
    let path = state_path();
    let state = UpState::load(&path)?;
    let store = Store::default_location();
    let quiet = Style::new(false, crate::output::ColorChoice::Never, 0, true);
    let mut lines = Vec::new();
    let mut failed = false;
    // 1. Revert what up instrumented (inject's revert: exact, refuses a container compose
    //    recreated since).
    let names: Vec<String> = state
        .projects
        .values()
        .flat_map(|p| p.instrumented.clone())
        .filter(|n| store.load(n).ok().flatten().is_some())
        .collect();
    if !names.is_empty() {
        let mut iargs = inject_args(names.clone(), "", Profile::Dev, args.grace);
        iargs.revert = true;
        for (name, r) in inject::execute(&engine, &store, &iargs, &names, &quiet).await? {
            match r {
                Ok(rep) if matches!(rep.result, "reverted" | "noop") => {
                    lines.push(serde_json::json!({"container": name, "result": "reverted"}))
                }
                Ok(rep) => {
                    failed = true;
                    lines.push(
                        serde_json::json!({"container": name, "result": rep.result, "detail": rep.detail}),
                    )
                }
                Err(e) => {
                    failed = true;
                    lines.push(
                        serde_json::json!({"container": name, "result": "error", "detail": format!("{e:#}")}),
                    )
                }
            }
        }
    }
    // 2. The watcher and the backend (its data stays unless --purge).
    for c in [WATCHER, BACKEND] {
        if engine.try_inspect(c).await?.is_some() {
            engine.remove(c, false).await?;
            lines.push(serde_json::json!({"container": c, "result": "removed"}));
        }
    }
    // 3. The network: whatever is still attached (a container whose revert was refused)
    //    is disconnected first.
    if engine.network_exists(NETWORK).await? {
        for n in engine.network_dns_names(NETWORK).await.unwrap_or_default() {
            let _ = engine.disconnect_network(NETWORK, &n).await;
        }
        if let Err(e) = engine.remove_network(NETWORK).await {
            tracing::warn!("removing network {NETWORK}: {e}");
        }
    }
    if args.purge && engine.volume_exists(VOLUME).await? {
        engine.remove_volume(VOLUME).await?;
        lines.push(serde_json::json!({"volume": VOLUME, "result": "removed"}));
    }
    // 4. What stays on the machine, said rather than left behind unsaid: the backend's images
    //    (--purge removes them with the data) and the agent volumes, which are the machine's,
    //    shared with every `obs-inject` (removing one another injection is about to mount
    //    would leave that app without its agent), so they are named with the command.
    let agent_volumes = engine
        .volumes_with_prefix(AGENT_VOLUME_PREFIX)
        .await
        .unwrap_or_default();
    let images = engine.image_tags_of(IMAGE_REPO).await.unwrap_or_default();
    let mut kept: Vec<String> = Vec::new();
    for i in images {
        if !args.purge {
            kept.push(format!("image {i}"));
            continue;
        }
        match engine.remove_image(&i).await {
            Ok(()) => lines.push(serde_json::json!({"image": i, "result": "removed"})),
            Err(e) => lines.push(serde_json::json!({"image": i, "result": "kept", "detail": e.to_string()})),
        }
    }
    if !failed {
        let _ = std::fs::remove_file(&path);
    }
    if style.json {
        print_json(&lines)?;
    } else if !style.quiet {
        for l in &lines {
            let what = l["container"]
                .as_str()
                .or(l["volume"].as_str())
                .or(l["image"].as_str())
                .unwrap_or("?");
            let detail = l["detail"].as_str().map(|d| format!(": {d}")).unwrap_or_default();
            println!("{what}: {}{detail}", l["result"].as_str().unwrap_or("?"));
        }
        if !args.purge && engine.volume_exists(VOLUME).await.unwrap_or(false) {
            println!("data kept in volume {VOLUME} (`obs-stack down --purge` deletes it)");
        }
        if !kept.is_empty() {
            println!(
                "kept for the next `up`: {} (`obs-stack down --purge` removes them with the data)",
                kept.join(", ")
            );
        }
        if !agent_volumes.is_empty() {
            println!(
                "agent volumes kept (shared with obs-inject; remove them once nothing is injected): docker volume rm {}",
                agent_volumes.join(" ")
            );
        }
    }
    Ok(if failed {
        Outcome::Negative
    } else {
        Outcome::Success
    })
}

/// `obs-stack healthcheck URL`: the backend image's healthcheck (it has no shell or curl).
pub async fn healthcheck(args: HealthArgs) -> Result<Outcome> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let ok = c
        .get(&args.url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    Ok(if ok { Outcome::Success } else { Outcome::Negative })
}

/// `obs-stack watch`: the fallback made real. Every round, for each target: its container
/// stats (CPU, memory, restarts, OOM kills), and for targets with ports an HTTP check
/// (status, latency) through the container's network; pushed to the backend's
/// `POST /api/v1/checks`. Runs in the `obs-stack-watch` container that `up` starts.
pub async fn watch(args: WatchArgs) -> Result<Outcome> {
    let token = std::env::var("OBS_STACK_TOKEN").context("OBS_STACK_TOKEN is not set")?;
    let targets: Vec<WatchTarget> = args
        .targets
        .iter()
        .map(|t| WatchTarget::parse(t))
        .collect::<Result<_>>()?;
    let client = Client::new(&args.api, &token)?;
    let engine = Engine::connect().await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    // the path checked per container start and port, chosen once (see `pick_check_path`)
    let mut paths: HashMap<String, &'static str> = HashMap::new();
    loop {
        let mut items = Vec::new();
        for t in &targets {
            items.extend(observe(&engine, &http, t, &mut paths).await);
        }
        if !items.is_empty()
            && let Err(e) = client
                .post("/api/v1/checks", &serde_json::Value::Array(items))
                .await
        {
            eprintln!("obs-stack watch: {e:#}");
        }
        if args.once {
            return Ok(Outcome::Success);
        }
        tokio::time::sleep(Duration::from_secs(args.interval.max(1))).await;
    }
}

async fn observe(
    engine: &Engine,
    http: &reqwest::Client,
    t: &WatchTarget,
    paths: &mut HashMap<String, &'static str>,
) -> Vec<serde_json::Value> {
    let now = crate::up::now_ms();
    let mut out = Vec::new();
    let Ok(Some(i)) = engine.try_inspect(&t.container).await else {
        out.push(serde_json::json!({"project": t.project, "service": t.service, "kind": "container_stats", "ts_ms": now, "running": false}));
        return out;
    };
    let st = i.state.clone().unwrap_or_default();
    let running = st.running.unwrap_or(false);
    let mut stats = serde_json::json!({
        "project": t.project, "service": t.service, "kind": "container_stats", "ts_ms": now,
        "running": running,
        "restarts": i.restart_count.unwrap_or(0),
        "oom_killed": st.oom_killed.unwrap_or(false),
    });
    if let Some(l) = &t.language {
        stats["language"] = serde_json::json!(l);
    }
    if running && let Ok(s) = engine.stats_once(&t.container).await {
        if let Some(pct) = crate::up::cpu_percent(&s) {
            stats["cpu_percent"] = serde_json::json!(pct);
        }
        if let Some(m) = s.memory_stats.as_ref() {
            if let Some(u) = m.usage {
                let cache = m
                    .stats
                    .as_ref()
                    .and_then(|s| s.get("inactive_file").or(s.get("total_inactive_file")).copied())
                    .unwrap_or(0);
                stats["memory_bytes"] = serde_json::json!(u.saturating_sub(cache));
            }
            // Without a limit Docker reports the host's memory: no limit to be near.
            let limited = i.host_config.as_ref().and_then(|h| h.memory).unwrap_or(0) > 0;
            if let (Some(l), true) = (m.limit, limited) {
                stats["memory_limit_bytes"] = serde_json::json!(l);
            }
        }
    }
    out.push(stats);
    if running && !t.http_ports.is_empty() {
        let ips: Vec<String> = i
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_values()
            .filter_map(|e| e.ip_address.filter(|ip| !ip.is_empty()))
            .collect();
        let mut check = serde_json::json!({"project": t.project, "service": t.service, "kind": "http_check", "ts_ms": now, "up": false});
        let started_at = st.started_at.clone().unwrap_or_default();
        'found: for port in &t.http_ports {
            for ip in &ips {
                let key = format!("{}@{started_at}:{port}", t.container);
                let path = match paths.get(&key) {
                    Some(p) => *p,
                    None => {
                        // once per container start: which path is worth checking
                        let mut answers = Vec::new();
                        for p in crate::up::CHECK_PATHS {
                            let st = http.get(format!("http://{ip}:{port}{p}")).send().await.ok();
                            let st = st.map(|r| r.status().as_u16());
                            answers.push((*p, st));
                            if st.is_some_and(|s| s < 400) {
                                break;
                            }
                        }
                        if answers.iter().all(|(_, s)| s.is_none()) {
                            continue; // no answer at all on this address: not chosen yet
                        }
                        let p = crate::up::pick_check_path(&answers);
                        paths.insert(key, p);
                        p
                    }
                };
                let started = Instant::now();
                if let Ok(r) = http.get(format!("http://{ip}:{port}{path}")).send().await {
                    check["up"] = serde_json::json!(true);
                    check["status"] = serde_json::json!(r.status().as_u16());
                    check["latency_ms"] = serde_json::json!(started.elapsed().as_secs_f64() * 1000.0);
                    check["path"] = serde_json::json!(path);
                    break 'found;
                }
            }
        }
        out.push(check);
    }
    out
}
