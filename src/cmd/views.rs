//! `obs-stack status | top | traces | errors`: terminal views, clients of the backend's API
//! (docs/serve.md) only. Rendering is pure (`crate::views`).
use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use crate::assets::{Assets, TEMPLATES};
use crate::cli::GlobalArgs;
use crate::client::{self, Client};
use crate::exit::Outcome;
use crate::output::print_json;
use crate::views::{self, ServiceView};

/// Where the backend is and which project to show (the same for every view).
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The project (default: the compose project of this directory, else the only one)
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
    /// The backend's API (default: the `obs-stack` container `up` started)
    #[arg(long, env = "OBS_STACK_API", value_name = "URL")]
    pub api: Option<String>,
    /// The API token (default: read from the backend's data volume)
    #[arg(long, env = "OBS_STACK_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Minutes back from now
    #[arg(long, default_value_t = 15, value_name = "MIN")]
    pub minutes: u64,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// One service only
    pub service: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Seconds between refreshes
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, Args)]
pub struct TracesArgs {
    /// A service, or a trace id (32 hex digits) to show as a waterfall
    pub service_or_id: Option<String>,
    /// Only this route
    #[arg(long)]
    pub route: Option<String>,
    /// Only traces with an error
    #[arg(long)]
    pub errors: bool,
    /// Only traces slower than the service's p95 (or 500 ms)
    #[arg(long)]
    pub slow: bool,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, Args)]
pub struct ErrorsArgs {
    /// A service, or an error group id to show with its stack trace
    pub service_or_id: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Ctx {
    client: Client,
    project: String,
    from: i64,
    to: i64,
}

impl Ctx {
    fn q(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("project", self.project.clone()),
            ("from", self.from.to_string()),
            ("to", self.to.to_string()),
        ];
        q.extend(extra.iter().cloned());
        q
    }
}

async fn connect(t: &Target) -> Result<Ctx> {
    let client = client::discover(t.api.as_deref(), t.token.as_deref()).await?;
    let project = match &t.project {
        Some(p) => p.clone(),
        None => {
            let here = std::env::current_dir()
                .ok()
                .and_then(|d| crate::init::compose::locate(None, &d).ok())
                .and_then(|f| crate::init::compose::load(&f, None).ok())
                .map(|p| p.name);
            let known = client.get("/api/v1/projects", &[]).await?;
            let live: Vec<String> = crate::up::UpState::load(&crate::up::UpState::path())
                .map(|s| s.projects.into_keys().collect())
                .unwrap_or_default();
            views::pick_project(&known, here.as_deref(), &live)?
        }
    };
    let to = now_ms();
    Ok(Ctx {
        client,
        project,
        from: to - (t.minutes.max(1) as i64) * 60_000,
        to,
    })
}

async fn gather(ctx: &Ctx, only: Option<&str>) -> Result<(Value, Vec<ServiceView>)> {
    let services = ctx.client.get("/api/v1/services", &ctx.q(&[])).await?;
    let mut views = Vec::new();
    for s in services["services"].as_array().cloned().unwrap_or_default() {
        let name = s["name"].as_str().unwrap_or("").to_string();
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let svc = [("service", name.clone())];
        let routes = ctx.client.get("/api/v1/routes", &ctx.q(&svc)).await?;
        let errors = ctx.client.get("/api/v1/errors", &ctx.q(&svc)).await?;
        let runtime = ctx.client.get("/api/v1/runtime", &ctx.q(&svc)).await?;
        views.push(ServiceView {
            service: s,
            routes,
            errors,
            runtime,
        });
    }
    Ok((services, views))
}

fn thresholds() -> std::collections::BTreeMap<String, views::Thresholds> {
    Assets::load(&TEMPLATES, None)
        .ok()
        .and_then(|a| a.get("defaults/frameworks.yaml").map(views::thresholds))
        .unwrap_or_default()
}

fn width() -> usize {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .or_else(|| {
            tty.then(|| crossterm::terminal::size().ok().map(|(w, _)| w as usize))
                .flatten()
        })
        .unwrap_or(120)
}

pub async fn status(global: &GlobalArgs, args: StatusArgs) -> Result<Outcome> {
    let style = global.style();
    let ctx = connect(&args.target).await?;
    let (_, views) = gather(&ctx, args.service.as_deref()).await?;
    if let Some(s) = &args.service
        && views.is_empty()
    {
        anyhow::bail!("no service {s:?} in project {} (yet)", ctx.project);
    }
    if style.json {
        let services: Vec<Value> = views
            .iter()
            .map(|v| {
                serde_json::json!({
                    "service": v.service, "routes": v.routes["routes"], "errors": v.errors["errors"],
                    "runtime": v.runtime["series"],
                })
            })
            .collect();
        print_json(
            &serde_json::json!({"project": ctx.project, "from": ctx.from, "to": ctx.to, "services": services}),
        )?;
    } else {
        print!(
            "{}",
            views::render_status(&style, &ctx.project, &views, &thresholds(), now_ms(), width())
        );
    }
    Ok(Outcome::Success)
}

/// `top`: status refreshing in place; q, Esc or Ctrl-C quits. Not a terminal: one frame.
pub async fn top(global: &GlobalArgs, args: TopArgs) -> Result<Outcome> {
    use crossterm::event::{self, Event, KeyCode, KeyModifiers};
    use crossterm::{cursor, execute, terminal};
    use std::io::IsTerminal;
    let style = global.style();
    let th = thresholds();
    if style.json || !std::io::stdout().is_terminal() {
        let ctx = connect(&args.target).await?;
        let (_, views) = gather(&ctx, None).await?;
        print!(
            "{}",
            views::render_status(&style, &ctx.project, &views, &th, now_ms(), width())
        );
        return Ok(Outcome::Success);
    }
    let mut out = std::io::stdout();
    terminal::enable_raw_mode()?;
    execute!(out, terminal::EnterAlternateScreen, cursor::Hide)?;
    let result: Result<()> = async {
        loop {
            let frame = match connect(&args.target).await {
                Ok(ctx) => match gather(&ctx, None).await {
                    Ok((_, views)) => {
                        views::render_status(&style, &ctx.project, &views, &th, now_ms(), width())
                    }
                    Err(e) => format!("{e:#}\n"),
                },
                Err(e) => format!("{e:#}\n"),
            };
            let (w, h) = terminal::size().unwrap_or((80, 24));
            execute!(
                out,
                cursor::MoveTo(0, 0),
                terminal::Clear(terminal::ClearType::All)
            )?;
            for line in frame.lines().take(h.saturating_sub(1) as usize) {
                let line: String = line.chars().take(w as usize + 16).collect();
                write!(out, "{line}\r\n")?;
            }
            write!(out, "obs-stack top — every {}s — q quits", args.interval)?;
            out.flush()?;
            let until = std::time::Instant::now() + Duration::from_secs(args.interval.max(1));
            while std::time::Instant::now() < until {
                if event::poll(Duration::from_millis(100))?
                    && let Event::Key(k) = event::read()?
                    && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
                {
                    return Ok(());
                }
            }
        }
    }
    .await;
    execute!(out, cursor::Show, terminal::LeaveAlternateScreen)?;
    terminal::disable_raw_mode()?;
    result.map(|_| Outcome::Success)
}

fn is_trace_id(s: &str) -> bool {
    s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit())
}

pub async fn traces(global: &GlobalArgs, args: TracesArgs) -> Result<Outcome> {
    let style = global.style();
    let ctx = connect(&args.target).await?;
    if let Some(id) = args.service_or_id.as_deref().filter(|s| is_trace_id(s)) {
        let t = ctx
            .client
            .get(
                &format!("/api/v1/traces/{id}"),
                &[("project", ctx.project.clone())],
            )
            .await?;
        if style.json {
            print_json(&t)?;
        } else {
            print!("{}", views::render_waterfall(&t, width()));
        }
        return Ok(Outcome::Success);
    }
    let mut extra = vec![("limit", args.limit.to_string())];
    if let Some(s) = &args.service_or_id {
        extra.push(("service", s.clone()));
    }
    if let Some(r) = &args.route {
        extra.push(("route", r.clone()));
    }
    if args.errors {
        extra.push(("error", "true".into()));
    }
    if args.slow {
        let mut min = 500.0;
        if let Some(s) = &args.service_or_id {
            let svc = ctx.client.get("/api/v1/services", &ctx.q(&[])).await?;
            if let Some(p95) = svc["services"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == s.as_str())
                .and_then(|x| x["p95_ms"].as_f64())
            {
                min = p95;
            }
        }
        extra.push(("min_duration_ms", format!("{min:.0}")));
        extra.push(("order", "slowest".into()));
    }
    let t = ctx.client.get("/api/v1/traces", &ctx.q(&extra)).await?;
    if style.json {
        print_json(&t)?;
        return Ok(Outcome::Success);
    }
    let none = t["traces"].as_array().is_none_or(|a| a.is_empty());
    if let (true, Some(route), Some(svc)) = (none, &args.route, &args.service_or_id) {
        // an empty answer for a route: say which routes there are rather than nothing
        let routes = ctx
            .client
            .get("/api/v1/routes", &ctx.q(&[("service", svc.clone())]))
            .await?;
        print!("{}", views::render_unknown_route(route, &routes));
        return Ok(Outcome::Success);
    }
    print!("{}", views::render_traces(&t, now_ms()));
    Ok(Outcome::Success)
}

pub async fn errors(global: &GlobalArgs, args: ErrorsArgs) -> Result<Outcome> {
    let style = global.style();
    let ctx = connect(&args.target).await?;
    let services = ctx.client.get("/api/v1/services", &ctx.q(&[])).await?;
    let is_service = args.service_or_id.as_deref().is_some_and(|s| {
        services["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == s)
    });
    if let Some(id) = args.service_or_id.as_deref().filter(|_| !is_service) {
        let g = ctx
            .client
            .get(
                &format!("/api/v1/errors/{id}"),
                &[("project", ctx.project.clone())],
            )
            .await?;
        if style.json {
            print_json(&g)?;
        } else {
            print!("{}", views::render_error_group(&g, now_ms()));
        }
        return Ok(Outcome::Success);
    }
    let mut extra = Vec::new();
    if let Some(s) = &args.service_or_id {
        extra.push(("service", s.clone()));
    }
    let e = ctx.client.get("/api/v1/errors", &ctx.q(&extra)).await?;
    if style.json {
        print_json(&e)?;
    } else {
        print!("{}", views::render_errors(&e, now_ms()));
    }
    Ok(Outcome::Success)
}

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// The service to analyze (it must run in a container obs-stack instrumented)
    pub service: String,
    /// Requests in the burst, all routes together
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Upper bound on the burst, in seconds
    #[arg(long, default_value_t = 30)]
    pub max_seconds: u64,
    #[command(flatten)]
    pub target: Target,
}

/// One replayed request's outcome.
struct Shot {
    route: String,
    ms: f64,
    status: Option<u16>,
}

/// `obs-stack analyze SERVICE`: replays concrete GET URLs taken from the service's stored
/// traces (never invented, never anything but GET) in a bounded burst, only to a container
/// obs-stack instrumented, through its published 127.0.0.1 port; then reports per route
/// p50/p95 and errors, and what the burst's traces show (N+1 queries, the slowest child span
/// and its share, a blocked Node.js event loop).
pub async fn analyze(global: &GlobalArgs, args: AnalyzeArgs) -> Result<Outcome> {
    use futures_util::StreamExt;
    let style = global.style();
    let ctx = connect(&args.target).await?;
    let svc = [("service", args.service.clone())];
    // 1. Concrete URLs per GET route, from stored traces.
    let routes = ctx.client.get("/api/v1/routes", &ctx.q(&svc)).await?;
    let mut urls: Vec<(String, String)> = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    for r in routes["routes"].as_array().into_iter().flatten() {
        if r["method"].as_str() != Some("GET") {
            continue;
        }
        let route = r["route"].as_str().unwrap_or("").to_string();
        let list = ctx
            .client
            .get(
                "/api/v1/traces",
                &ctx.q(&[
                    ("service", args.service.clone()),
                    ("route", route.clone()),
                    ("limit", "10".into()),
                ]),
            )
            .await?;
        let mut seen = Vec::new();
        for t in list["traces"].as_array().into_iter().flatten().take(10) {
            let Some(id) = t["trace_id"].as_str() else {
                continue;
            };
            let trace = ctx
                .client
                .get(
                    &format!("/api/v1/traces/{id}"),
                    &[("project", ctx.project.clone())],
                )
                .await?;
            for s in trace["spans"].as_array().into_iter().flatten() {
                if s["service"] != args.service.as_str() || s["route"].as_str() != Some(route.as_str()) {
                    continue;
                }
                let a = &s["attributes"];
                let path = a["url.path"]
                    .as_str()
                    .map(|p| match a["url.query"].as_str() {
                        Some(q) if !q.is_empty() => format!("{p}?{q}"),
                        _ => p.to_string(),
                    })
                    .or_else(|| a["http.target"].as_str().map(String::from));
                if let Some(p) = a["server.port"].as_i64().or(a["net.host.port"].as_i64()) {
                    ports.push(p as u16);
                }
                if let Some(p) = path.filter(|p| p.starts_with('/') && !p.contains("****"))
                    && !seen.contains(&p)
                {
                    seen.push(p);
                }
            }
            if seen.len() >= 5 {
                break;
            }
        }
        urls.extend(seen.into_iter().map(|p| (format!("GET {route}"), p)));
    }
    if urls.is_empty() {
        anyhow::bail!(
            "no GET request of {} is stored yet: the analysis replays real traffic only\n  hint: send some requests first",
            args.service
        );
    }
    // 2. Where: a container obs-stack instrumented, through its published 127.0.0.1 port.
    let engine = crate::docker::Engine::connect().await?;
    let mut labels = vec![crate::inject::plan::LABEL_INJECTED.to_string()];
    if ctx.project != "default" {
        labels.push(format!(
            "{}={}",
            crate::inject::plan::COMPOSE_PROJECT,
            ctx.project
        ));
        labels.push(format!(
            "{}={}",
            crate::inject::plan::COMPOSE_SERVICE,
            args.service
        ));
    }
    let containers = engine.list(false, &labels).await?;
    let container = containers
        .iter()
        .find(|c| {
            ctx.project != "default"
                || c.names.iter().flatten().any(|n| n.trim_start_matches('/') == args.service)
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no running container of {} instrumented by obs-stack: the analysis only sends requests to those",
                args.service
            )
        })?;
    ports.sort_unstable();
    ports.dedup();
    let host_port = container
        .ports
        .iter()
        .flatten()
        .filter(|p| matches!(p.ip.as_deref(), Some("127.0.0.1" | "0.0.0.0")))
        .filter(|p| ports.is_empty() || ports.contains(&p.private_port))
        .find_map(|p| p.public_port)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} publishes no port on 127.0.0.1: the analysis reaches containers only through their published 127.0.0.1 port",
                args.service
            )
        })?;
    // 3. The burst: bounded in count, concurrency and time.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let started_ms = now_ms();
    let deadline = std::time::Instant::now() + Duration::from_secs(args.max_seconds.max(1));
    let plan: Vec<(String, String)> = (0..args.requests.max(1))
        .map(|i| urls[i % urls.len()].clone())
        .collect();
    let shots: Vec<Shot> = futures_util::stream::iter(plan)
        .map(|(route, path)| {
            let http = http.clone();
            async move {
                if std::time::Instant::now() > deadline {
                    return None;
                }
                let t = std::time::Instant::now();
                let status = http
                    .get(format!("http://127.0.0.1:{host_port}{path}"))
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                Some(Shot {
                    route,
                    ms: t.elapsed().as_secs_f64() * 1000.0,
                    status,
                })
            }
        })
        .buffer_unordered(args.concurrency.clamp(1, 16))
        .filter_map(|s| async move { s })
        .collect()
        .await;
    let burst_s = (now_ms() - started_ms) as f64 / 1000.0;
    // 4. The burst's traces (exported within a few seconds by the batch span processor).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let since = [("from", started_ms.to_string()), ("to", now_ms().to_string())];
    let mut q = vec![
        ("project", ctx.project.clone()),
        ("service", args.service.clone()),
        ("limit", "40".into()),
    ];
    q.extend(since.iter().cloned());
    let list = ctx.client.get("/api/v1/traces", &q).await?;
    let mut traces = Vec::new();
    for t in list["traces"].as_array().into_iter().flatten() {
        if let Some(id) = t["trace_id"].as_str() {
            traces.push(
                ctx.client
                    .get(
                        &format!("/api/v1/traces/{id}"),
                        &[("project", ctx.project.clone())],
                    )
                    .await?,
            );
        }
    }
    let findings = crate::analysis::analyze_traces(&traces);
    let mut rq = vec![
        ("project", ctx.project.clone()),
        ("service", args.service.clone()),
    ];
    rq.extend(since.iter().cloned());
    let runtime = ctx.client.get("/api/v1/runtime", &rq).await?;
    let loop_ms = runtime["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"].as_str().is_some_and(|n| n.contains("eventloop.delay")))
        .flat_map(|s| {
            let scale = match s["unit"].as_str() {
                Some("s") => 1000.0,
                Some("ns") => 1e-6,
                _ => 1.0,
            };
            s["points"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |p| p.get(1)?.as_f64().map(|v| v * scale))
        })
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    // 5. The report.
    let mut per_route: std::collections::BTreeMap<String, Vec<&Shot>> = std::collections::BTreeMap::new();
    for s in &shots {
        per_route.entry(s.route.clone()).or_default().push(s);
    }
    let rows: Vec<Value> = per_route
        .iter()
        .map(|(route, v)| {
            let mut ms: Vec<f64> = v.iter().map(|s| s.ms).collect();
            ms.sort_by(f64::total_cmp);
            let pct = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
            let errors = v.iter().filter(|s| s.status.is_none_or(|c| c >= 500)).count();
            serde_json::json!({"route": route, "requests": v.len(), "p50_ms": pct(0.5), "p95_ms": pct(0.95), "errors": errors})
        })
        .collect();
    let blocked = loop_ms.filter(|m| *m > 50.0);
    let report = serde_json::json!({
        "service": args.service, "project": ctx.project, "port": host_port, "urls": urls.len(),
        "requests": shots.len(), "seconds": burst_s, "routes": rows,
        "n_plus_one": findings.n_plus_one, "slowest_children": findings.slowest_children,
        "event_loop_delay_max_ms": loop_ms, "event_loop_blocked": blocked.is_some(),
        "traces_analyzed": traces.len(),
    });
    if style.json {
        print_json(&report)?;
        return Ok(Outcome::Success);
    }
    println!(
        "analysis of {} ({} requests over {} real URLs to 127.0.0.1:{host_port} in {burst_s:.1}s; {} traces)",
        args.service,
        shots.len(),
        urls.len(),
        traces.len()
    );
    for r in &rows {
        println!(
            "  {:<36} {:>4} req  p50 {:>7.1}ms  p95 {:>7.1}ms  {} errors",
            r["route"].as_str().unwrap_or("?"),
            r["requests"],
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p95_ms"].as_f64().unwrap_or(0.0),
            r["errors"]
        );
    }
    for n in &findings.n_plus_one {
        println!(
            "  N+1: {} runs `{}` {} times per request (trace {})",
            n.route, n.statement, n.times, n.trace_id
        );
    }
    for c in &findings.slowest_children {
        println!(
            "  slowest part of {}: {} ({:.0}% of the request)",
            c.route,
            c.span,
            c.share * 100.0
        );
    }
    if let Some(m) = blocked {
        println!("  the Node.js event loop was blocked: delay up to {m:.0}ms during the burst");
    }
    if findings.n_plus_one.is_empty() && findings.slowest_children.is_empty() && blocked.is_none() {
        println!("  no findings: no repeated queries, no dominant child span, no blocked event loop");
    }
    Ok(Outcome::Success)
}
