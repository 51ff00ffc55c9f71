//! `obs-stack inject` (also `obs-inject`): recreate containers with OpenTelemetry
//! auto-instrumentation, keep the original until the new one is proven, roll back otherwise;
//! `--revert` recreates the original exactly; `--dry-run` shows the plan and changes nothing.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use serde::Serialize;

use crate::agents::{Catalog, runtime_key};
use crate::cli::GlobalArgs;
use crate::docker::Engine;
use crate::exit::Outcome;
use crate::inject::apply::{self, GateOptions, Recovered, Replaced};
use crate::inject::plan::{
    self, Action, COMPOSE_PROJECT, LABEL_DIGEST, LABEL_INJECTED, Plan, PlanOptions, Profile, RuntimeInfo,
};
use crate::inject::state::{OpKind, Record, Status, Store};
use crate::output::{Paint, Style, print_json};

/// `io.obs-stack.instrument=false` opts a container out (the stack's own containers carry it).
pub const OPT_OUT_LABEL: &str = "io.obs-stack.instrument";

/// Label marking the observability network the collector is on; inject attaches to it.
pub const OBS_NETWORK_LABEL: &str = "io.obs-stack.network=observability";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Metrics {
    /// Push metrics to the collector over OTLP (default)
    Otlp,
    /// Serve /metrics on a published 127.0.0.1 port (container port 9464)
    Prometheus,
}

#[derive(Debug, Clone, Args)]
pub struct InjectArgs {
    /// Containers (names or IDs)
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Every running container (obs-stack's own excluded)
    #[arg(long, conflicts_with = "project")]
    pub all: bool,
    /// Every running container of this compose project
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
    /// Put the original containers back exactly as they were
    #[arg(long)]
    pub revert: bool,
    /// Print the plan (env diff, mounts, networks) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub opts: Box<InjectOptions>,
}

/// How to instrument (boxed: keeps the CLI enum small).
#[derive(Debug, Clone, Args)]
pub struct InjectOptions {
    /// The runtime, when detection cannot tell or should be overridden
    #[arg(long, value_name = "python|node|java|dotnet")]
    pub runtime: Option<String>,
    /// OTLP/HTTP endpoint of the collector
    #[arg(long, default_value = "http://otel-collector:4318")]
    pub endpoint: String,
    /// dev: sample every trace; prod: 10% and the noisy instrumentations off
    #[arg(long, value_enum, default_value_t = Profile::Dev)]
    pub profile: Profile,
    /// Service name (default: the compose service, else the container name)
    #[arg(long)]
    pub service_name: Option<String>,
    /// How the app exposes its metrics
    #[arg(long, value_enum, default_value_t = Metrics::Otlp)]
    pub metrics: Metrics,
    /// Inject even when another agent is already present
    #[arg(long)]
    pub force: bool,
    /// Agent image for a runtime, e.g. python=obs-lab/autoinstrumentation-python:0.65b0
    /// (also OBS_STACK_AGENT_IMAGE_<RUNTIME>)
    #[arg(long, value_name = "RUNTIME=IMAGE")]
    pub agent_image: Vec<String>,
    /// Also attach this network (default: networks labelled io.obs-stack.network=observability)
    #[arg(long, value_name = "NAME")]
    pub network: Vec<String>,
    /// Seconds the new container must run without restarting before the old one is removed
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub grace: f64,
    /// Seconds to wait for `healthy` when the container has a healthcheck
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub health_timeout: f64,
    /// Seconds to wait for the old container to stop before it is killed
    #[arg(long, value_name = "SECS")]
    pub stop_timeout: Option<i32>,
    /// A templates directory overriding the built-in agents.yaml
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Extra OTEL_EXPORTER_OTLP_HEADERS entries (k=v,k2=v2), e.g. a backend's ingest key
    #[arg(long, value_name = "HEADERS", hide = true)]
    pub otlp_headers: Option<String>,
    /// NAME=VALUE set in the app's environment where unset (repeat)
    #[arg(long, value_name = "NAME=VALUE", hide = true)]
    pub env_if_unset: Vec<String>,
}

/// How many containers are recreated at once.
const CONCURRENCY: usize = 4;

/// What every container's run shares.
struct Ctx<'a> {
    engine: &'a Engine,
    store: &'a Store,
    args: &'a InjectArgs,
    catalog: &'a Catalog,
    extra_networks: &'a [String],
    gate: &'a GateOptions,
    style: &'a Style,
    /// Print the plan before acting (one container; with several, the lines would interleave).
    show_plan: bool,
    /// One agent volume fill at a time: two runs filling the same volume would race.
    agent_lock: tokio::sync::Mutex<()>,
}

/// What happened to one container (`--json` prints a list of these).
#[derive(Debug, Serialize)]
pub struct Report {
    pub container: String,
    /// injected | noop | skipped | fallback | infrastructure | reverted | rolled_back |
    /// dry_run | error
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

impl Report {
    pub fn new(container: &str, result: &'static str) -> Report {
        Report {
            container: container.to_string(),
            result,
            detail: None,
            recovered: None,
            new_id: None,
            seconds: None,
            plan: None,
        }
    }
}

pub async fn run(global: &GlobalArgs, args: InjectArgs) -> Result<Outcome> {
    let style = global.style();
    if args.containers.is_empty() && !args.all && args.project.is_none() {
        anyhow::bail!("name the containers to instrument, or use --all or --project NAME");
    }
    if args.opts.service_name.is_some() && (args.containers.len() != 1 || args.all || args.project.is_some())
    {
        anyhow::bail!("--service-name applies to exactly one container");
    }
    let engine = Engine::connect().await?;
    clean_leftovers(&engine, &style).await;
    let store = Store::default_location();
    let targets = select(&engine, &store, &args).await?;
    if targets.is_empty() {
        if args.revert {
            // Reverting what was already reverted is not an error: the originals run.
            if style.json {
                print_json(&Vec::<Report>::new())?;
            } else if !style.quiet {
                println!("nothing to revert: no container of this selection is instrumented by obs-stack");
            }
            return Ok(Outcome::Success);
        }
        anyhow::bail!("no containers matched");
    }
    let single = targets.len() == 1;
    let results = execute(&engine, &store, &args, &targets, &style).await?;
    let mut reports = Vec::new();
    let mut first_error: Option<anyhow::Error> = None;
    for (name, r) in results {
        match r {
            Ok(rep) => reports.push(rep),
            Err(e) => {
                if single {
                    return Err(e);
                }
                eprintln!("error: {name}: {e:#}");
                let mut rep = Report::new(&name, "error");
                rep.detail = Some(format!("{e:#}"));
                reports.push(rep);
                first_error.get_or_insert(e);
            }
        }
    }
    reports.sort_by(|a, b| a.container.cmp(&b.container));
    if style.json {
        print_json(&reports)?;
    }
    if reports.iter().any(|r| r.result == "rolled_back") {
        return Ok(Outcome::RolledBack);
    }
    if let Some(e) = first_error {
        return Err(e.context("some containers failed (see above)"));
    }
    let acted = reports.iter().any(|r| {
        matches!(
            r.result,
            "injected" | "noop" | "reverted" | "dry_run" | "infrastructure"
        )
    });
    Ok(if acted {
        Outcome::Success
    } else {
        Outcome::Negative
    })
}

/// Injects (or reverts) `targets` concurrently and returns each one's outcome; prints each
/// report as it completes unless `style` is JSON or quiet. The one engine `obs-stack up`
/// drives too.
pub async fn execute(
    engine: &Engine,
    store: &Store,
    args: &InjectArgs,
    targets: &[String],
    style: &Style,
) -> Result<Vec<(String, Result<Report>)>> {
    let catalog = Catalog::load(args.opts.templates.as_deref())?;
    let gate = GateOptions {
        grace: Duration::from_secs_f64(args.opts.grace.max(0.0)),
        health_timeout: Duration::from_secs_f64(args.opts.health_timeout.max(1.0)),
        stop_timeout: args.opts.stop_timeout,
    };
    let mut extra_networks = args.opts.network.clone();
    if extra_networks.is_empty() {
        extra_networks = engine
            .networks_with_label(OBS_NETWORK_LABEL)
            .await
            .unwrap_or_default();
    }

    // Several containers are recreated concurrently (bounded: each recreate stops an app and
    // waits out its grace period, which is idle time); agent volumes are filled one at a time.
    let ctx = Ctx {
        engine,
        store,
        args,
        catalog: &catalog,
        extra_networks: &extra_networks,
        gate: &gate,
        style,
        show_plan: targets.len() == 1,
        agent_lock: tokio::sync::Mutex::new(()),
    };
    let results: Vec<(String, Result<Report>)> = futures_util::stream::iter(targets.iter())
        .map(|name| {
            let ctx = &ctx;
            async move {
                let r = if ctx.args.revert {
                    revert_one(ctx.engine, ctx.store, name, ctx.args, ctx.gate).await
                } else {
                    inject_one(ctx, name).await
                };
                if let Ok(rep) = &r
                    && !ctx.style.json
                    && !ctx.style.quiet
                {
                    print_report(ctx.style, rep);
                }
                (name.clone(), r)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    Ok(results)
}

/// Removes what an earlier, killed run left (helper containers); a failure here only warns.
pub async fn clean_leftovers(engine: &Engine, style: &Style) {
    match apply::clean_stale_helpers(engine).await {
        Ok(removed) if !removed.is_empty() && !style.quiet => eprintln!(
            "obs-stack: removed {} helper container(s) an interrupted run left: {}",
            removed.len(),
            removed.join(", ")
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cleaning up helper containers: {e:#}"),
    }
}

/// The container names to work on.
async fn select(engine: &Engine, store: &Store, args: &InjectArgs) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for c in &args.containers {
        // Resolve IDs to names; a record may exist for a name no container holds right now
        // (an interrupted run renamed it): recovery takes it from there.
        match engine.try_inspect(c).await? {
            Some(i) => names.push(plan::container_name(&i)),
            None if store.load(c)?.is_some() => names.push(c.clone()),
            None => return Err(crate::docker::DockerError::NoSuchContainer(c.clone()).into()),
        }
    }
    if args.revert && (args.all || args.project.is_some()) {
        // Revert selects from the records (the containers inject changed), the same way
        // inject selects from the live containers: every record, or the project's.
        for r in store.list()? {
            let project = r
                .original
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(COMPOSE_PROJECT));
            if args.all || project == args.project.as_ref() {
                names.push(r.name);
            }
        }
    }
    if args.all || args.project.is_some() {
        let labels: Vec<String> = args
            .project
            .iter()
            .map(|p| format!("{COMPOSE_PROJECT}={p}"))
            .collect();
        let list = engine.list(false, &labels).await?;
        for c in list {
            let Some(name) = c.names.as_ref().and_then(|n| n.first()) else {
                continue;
            };
            let name = name.trim_start_matches('/').to_string();
            let labels = c.labels.unwrap_or_default();
            // obs-stack's own containers (the stack, agent init steps) and opted-out ones.
            let excluded = labels.get(OPT_OUT_LABEL).is_some_and(|v| v == "false")
                || labels.contains_key("io.obs-stack.component")
                || labels.contains_key("io.obs-stack.agent-init");
            if excluded || name.ends_with(".obs-orig") || name.ends_with(".obs-injected") {
                continue;
            }
            if args.revert && !labels.contains_key(LABEL_INJECTED) {
                continue;
            }
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// What is known about the container's runtime. This is the ONE place that asks detection
/// (src/detect); `--runtime` overrides it. If detection fails or finds no language, the
/// process-name stand-in in `plan::runtime_from_config` is asked.
async fn runtime_info(
    engine: &Engine,
    inspect: &bollard::models::ContainerInspectResponse,
    args: &InjectArgs,
) -> RuntimeInfo {
    if let Some(r) = &args.opts.runtime {
        return RuntimeInfo {
            language: Some(r.clone()),
            source: "--runtime".into(),
            ..Default::default()
        };
    }
    let name = plan::container_name(inspect);
    let ours = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .is_some_and(|l| l.contains_key(LABEL_INJECTED));
    let detected = match crate::detect::signature::SignatureSet::builtin() {
        Ok(sigs) => crate::detect::detect_container(engine, &name, &sigs, &Default::default())
            .await
            .map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("{e:#}")),
    };
    match detected {
        Ok(d) if d.kind == crate::detect::Kind::Infrastructure && d.infrastructure.is_some() => RuntimeInfo {
            source: format!("detect: infrastructure ({:.0}%)", d.confidence * 100.0),
            infrastructure: Some(
                [d.infrastructure.clone(), d.infrastructure_version.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            language: d.language,
            ..Default::default()
        },
        Ok(d) if d.language.is_some() => {
            let mut agents = d.existing_agents.clone();
            if ours {
                // The OpenTelemetry agent detect sees is the one obs-stack put there.
                agents.retain(|a| a != "opentelemetry");
            }
            RuntimeInfo {
                source: format!(
                    "detect: {}{} ({:.0}%)",
                    d.language.clone().unwrap_or_default(),
                    d.framework.as_ref().map(|f| format!("/{f}")).unwrap_or_default(),
                    d.confidence * 100.0
                ),
                language: d.language,
                runtime_version: d.runtime_version,
                libc: d.libc,
                existing_agents: agents,
                infrastructure: None,
            }
        }
        other => {
            if let Err(e) = &other {
                tracing::warn!("detection failed for {name}: {e}; using process names");
            }
            let procs: Vec<String> = engine
                .top(&name)
                .await
                .map(|p| p.into_iter().map(|p| p.command).collect())
                .unwrap_or_default();
            plan::runtime_from_config(inspect, &procs)
        }
    }
}

fn agent_image_for(args: &InjectArgs, runtime: &str) -> Result<Option<String>> {
    let mut explicit = Vec::new();
    for a in &args.opts.agent_image {
        let Some((rt, image)) = a.split_once('=') else {
            anyhow::bail!("--agent-image wants RUNTIME=IMAGE, got {a:?}");
        };
        explicit.push((rt.to_string(), image.to_string()));
    }
    Ok(crate::agents::agent_image_override(runtime, &explicit))
}

async fn inject_one(ctx: &Ctx<'_>, name: &str) -> Result<Report> {
    let Ctx {
        engine,
        store,
        args,
        catalog,
        extra_networks,
        gate,
        style,
        ..
    } = *ctx;
    let mut recovered = None;
    let mut rec = store.load(name)?;
    if let Some(r) = rec.as_mut()
        && r.journal.is_some()
    {
        if args.dry_run {
            anyhow::bail!("{name}: an interrupted injection needs recovery; run without --dry-run first");
        }
        recovered = Some(match apply::recover(engine, store, r).await? {
            Recovered::Finished { .. } => {
                "finished an interrupted run: the instrumented container was proven".into()
            }
            Recovered::RolledBack { detail } => format!("converged an interrupted run: {detail}"),
        });
        rec = store.load(name)?;
    }
    let current = engine.inspect(name).await?;
    let current_id = current.id.clone().unwrap_or_default();
    let current_labels = current
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let (original, current_digest) = match &rec {
        Some(r) if r.status == Status::Injected && current_labels.contains_key(LABEL_INJECTED) => {
            (r.original.clone(), current_labels.get(LABEL_DIGEST).cloned())
        }
        Some(_) | None if current_labels.contains_key(LABEL_INJECTED) => {
            let mut rep = Report::new(name, "skipped");
            rep.detail = Some(format!(
                "instrumented by obs-stack, but its record is missing from {}; nothing to compare against",
                store.dir.display()
            ));
            rep.recovered = recovered;
            return Ok(rep);
        }
        _ => (current.clone(), None),
    };

    if current_labels.get(OPT_OUT_LABEL).is_some_and(|v| v == "false") && !args.opts.force {
        let mut rep = Report::new(name, "skipped");
        rep.detail = Some(format!(
            "labelled {OPT_OUT_LABEL}=false (opted out); --force to inject anyway"
        ));
        rep.recovered = recovered;
        return Ok(rep);
    }
    let rt = runtime_info(engine, &current, args).await;
    let key = rt.language.as_deref().and_then(runtime_key);
    let agent_image = match key {
        Some(k) => agent_image_for(args, k)?,
        None => None,
    };
    let opts = PlanOptions {
        endpoint: args.opts.endpoint.clone(),
        profile: args.opts.profile,
        service_name: args.opts.service_name.clone(),
        metrics_prometheus: args.opts.metrics == Metrics::Prometheus,
        force: args.opts.force,
        agent_image,
        extra_networks: extra_networks.to_vec(),
        image_name_current: apply::image_name_current(engine, &original).await,
        headers: args.opts.otlp_headers.clone(),
        extra_env: args
            .opts
            .env_if_unset
            .iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
    };
    let mut p = plan::plan(&original, &rt, catalog, &opts, current_digest.as_deref());
    if let (Action::Inject, Some(spec)) = (&p.action, &p.create) {
        let mode = spec
            .body
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default();
        let mut names = std::collections::BTreeMap::new();
        for n in spec.networks() {
            // The default bridge has no embedded DNS: nothing resolves there by name.
            let found = if n == "bridge" {
                Vec::new()
            } else {
                engine.network_dns_names(&n).await.unwrap_or_default()
            };
            names.insert(n, found);
        }
        if let Some(w) = plan::endpoint_unresolvable(&args.opts.endpoint, &mode, &names) {
            p.warnings.push(w);
        }
    }
    if !ctx.show_plan && !style.json && !style.quiet && !args.dry_run {
        for w in &p.warnings {
            eprintln!("{name}: {} {w}", style.paint(Paint::Yellow, "warning:"));
        }
    }
    let mut rep = Report::new(name, "dry_run");
    rep.recovered = recovered;
    match &p.action {
        Action::NoOp { reason } => {
            rep.result = "noop";
            rep.detail = Some(reason.clone());
        }
        Action::Skip { reason } => {
            rep.result = "skipped";
            rep.detail = Some(reason.clone());
        }
        Action::Fallback { reason } => {
            rep.result = "fallback";
            rep.detail = Some(reason.clone());
        }
        Action::Infrastructure { reason } => {
            rep.result = "infrastructure";
            rep.detail = Some(reason.clone());
        }
        Action::Inject if args.dry_run => {}
        Action::Inject => {
            let (Some(spec), Some(agent)) = (p.create.clone(), p.agent.clone()) else {
                anyhow::bail!("internal: an inject plan without a create spec");
            };
            if !style.json && !style.quiet && ctx.show_plan {
                print_plan(style, &p, false);
            }
            {
                let _one_at_a_time = ctx.agent_lock.lock().await;
                apply::prepare_agent_for(engine, &agent)
                    .await
                    .with_context(|| format!("preparing the {} agent", agent.runtime))?;
            }
            let mut record = match rec {
                Some(r) if r.status == Status::Injected => r,
                _ => Record {
                    format: 1,
                    name: name.to_string(),
                    status: Status::InProgress,
                    original: original.clone(),
                    original_id: original.id.clone().unwrap_or_default(),
                    current_id: Some(current_id.clone()),
                    runtime: Some(agent.runtime.clone()),
                    digest: None,
                    journal: None,
                    updated_unix: 0,
                },
            };
            let started = Instant::now();
            match apply::replace(
                engine,
                store,
                &mut record,
                OpKind::Inject,
                &current_id,
                spec,
                gate,
            )
            .await?
            {
                Replaced::Done { new_id } => {
                    rep.result = "injected";
                    rep.new_id = Some(new_id);
                    rep.seconds = Some(started.elapsed().as_secs_f64());
                }
                Replaced::RolledBack { reason } => {
                    rep.result = "rolled_back";
                    rep.detail = Some(reason);
                }
            }
        }
    }
    rep.plan = Some(p);
    Ok(rep)
}

async fn revert_one(
    engine: &Engine,
    store: &Store,
    name: &str,
    args: &InjectArgs,
    gate: &GateOptions,
) -> Result<Report> {
    let Some(mut rec) = store.load(name)? else {
        // Reverting twice is not an error: the original is what runs.
        if let Some(c) = engine.try_inspect(name).await?
            && !c
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .is_some_and(|l| l.contains_key(LABEL_INJECTED))
        {
            let mut rep = Report::new(name, "noop");
            rep.detail = Some("not instrumented by obs-stack (already reverted?): nothing to revert".into());
            return Ok(rep);
        }
        anyhow::bail!(
            "no injection record for {name} in {}: nothing to revert",
            store.dir.display()
        );
    };
    let mut rep = Report::new(name, "reverted");
    if rec.journal.is_some() {
        if args.dry_run {
            anyhow::bail!("{name}: an interrupted run needs recovery; run without --dry-run first");
        }
        let r = apply::recover(engine, store, &mut rec).await?;
        rep.recovered = Some(match r {
            Recovered::Finished { .. } => "finished an interrupted run".into(),
            Recovered::RolledBack { detail } => format!("converged an interrupted run: {detail}"),
        });
        match store.load(name)? {
            Some(r) => rec = r,
            None => {
                rep.detail = Some("the original is in place; nothing left to revert".into());
                return Ok(rep);
            }
        }
    }
    let Some(current) = engine.try_inspect(name).await? else {
        anyhow::bail!(
            "{name}: no container carries this name; the record is kept in {}",
            store.dir.display()
        );
    };
    let current_id = current.id.clone().unwrap_or_default();
    if let Some(reason) = not_ours(&rec, &current)
        && !args.opts.force
    {
        anyhow::bail!(
            "{name}: {reason}; reverting would replace it with the spec saved before the inject \
             and lose what changed since\n  hint: `obs-inject --revert --force {name}` reverts anyway; \
             `docker compose up -d` puts back a compose service's own definition"
        );
    }
    let image_current = apply::image_name_current(engine, &rec.original).await;
    let spec = plan::spec_from_inspect(&rec.original, image_current);
    if args.dry_run {
        rep.result = "dry_run";
        rep.detail = Some(format!(
            "would recreate {name} from the saved original spec (image {}, {} env entries)",
            spec.body.image.clone().unwrap_or_default(),
            spec.body.env.as_ref().map(|e| e.len()).unwrap_or(0)
        ));
        return Ok(rep);
    }
    let started = Instant::now();
    match apply::replace(engine, store, &mut rec, OpKind::Revert, &current_id, spec, gate).await? {
        Replaced::Done { new_id } => {
            rep.new_id = Some(new_id);
            rep.seconds = Some(started.elapsed().as_secs_f64());
        }
        Replaced::RolledBack { reason } => {
            rep.result = "rolled_back";
            rep.detail = Some(format!(
                "the original did not come back healthy, instrumented one kept: {reason}"
            ));
        }
    }
    Ok(rep)
}

/// Why the container carrying the name is not the one inject created (None: it is). Compose
/// (`up` with obs-stack.apps.yml, or a plain `up` after a config change) or a user may have
/// recreated it since: then the saved original is no longer the way back.
fn not_ours(rec: &Record, current: &bollard::models::ContainerInspectResponse) -> Option<String> {
    let id = current.id.clone().unwrap_or_default();
    let short = |s: &str| s.chars().take(12).collect::<String>();
    match rec.current_id.as_deref() {
        Some(ours) if rec.status == Status::Injected && ours != id => Some(format!(
            "the container is {} but obs-inject created {}: it was recreated since",
            short(&id),
            short(ours)
        )),
        _ => None,
    }
}

fn print_plan(style: &Style, p: &Plan, to_stdout: bool) {
    let out = |line: String| {
        if to_stdout {
            println!("{line}")
        } else {
            eprintln!("{line}")
        }
    };
    if let Some(a) = &p.agent {
        out(format!(
            "{} {}: {} agent from {} (volume {} → {} read-only); runtime from {}",
            style.paint(Paint::Bold, "plan"),
            p.container,
            a.runtime,
            a.image,
            a.volume,
            a.mount,
            p.runtime_source
        ));
    }
    for c in &p.env {
        match &c.before {
            None => out(format!("  + {}={}", c.name, c.after)),
            Some(b) => out(format!("  ~ {}: {} → {}", c.name, b, c.after)),
        }
    }
    for m in &p.mounts_added {
        out(format!(
            "  mount: volume {} at {} (read-only)",
            m.source.clone().unwrap_or_default(),
            m.target.clone().unwrap_or_default()
        ));
    }
    if !p.ports_added.is_empty() {
        out(format!("  ports: {}", p.ports_added.join(", ")));
    }
    if !p.networks.is_empty() {
        out(format!(
            "  networks (connected before start): {}",
            p.networks.join(", ")
        ));
    }
    for w in &p.warnings {
        out(format!("  {} {w}", style.paint(Paint::Yellow, "warning:")));
    }
}

fn print_report(style: &Style, r: &Report) {
    if let Some(rec) = &r.recovered {
        eprintln!("{}: {rec}", r.container);
    }
    match r.result {
        "dry_run" => {
            if let Some(p) = &r.plan {
                print_plan(style, p, true);
                println!("{}: dry run, nothing changed", r.container);
            } else {
                println!(
                    "{}: dry run: {}",
                    r.container,
                    r.detail.clone().unwrap_or_default()
                );
            }
        }
        "injected" => println!(
            "{}: {} ({} agent; proven in {:.1}s; revert with `obs-inject --revert {}`)",
            r.container,
            style.paint(Paint::Green, "instrumented"),
            r.plan
                .as_ref()
                .and_then(|p| p.runtime.clone())
                .unwrap_or_default(),
            r.seconds.unwrap_or(0.0),
            r.container
        ),
        "reverted" => println!(
            "{}: {}{}",
            r.container,
            style.paint(Paint::Green, "reverted to the original"),
            r.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        "rolled_back" => println!(
            "{}: {} — {}",
            r.container,
            style.paint(Paint::Red, "rolled back"),
            r.detail.clone().unwrap_or_default()
        ),
        "infrastructure" => println!(
            "{}: left alone: {}",
            r.container,
            r.detail.clone().unwrap_or_default()
        ),
        other => println!(
            "{}: {}: {}",
            r.container,
            other.replace('_', " "),
            r.detail.clone().unwrap_or_default()
        ),
    }
}
