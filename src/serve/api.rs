//! The JSON API (`/api/v1`), `/metrics` (Prometheus text) and `/healthz`. Everything but
//! `/healthz` needs the access token: `Authorization: Bearer`, the `obs_stack_token` cookie,
//! or `?token=` (which also sets the cookie, for the UI's login link). Queries are scoped by
//! `project=`; time ranges are `from`/`to` in unix ms (default: the last 15 minutes).
//! Documented in docs/serve.md.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::receive::{Batch, RuntimePoint, ServiceInfo};
use super::{Refusal, Shared, auth, store};

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/v1/projects", get(list_projects).post(add_project))
        .route("/api/v1/services", get(services))
        .route("/api/v1/routes", get(routes))
        .route("/api/v1/series", get(series))
        .route("/api/v1/traces", get(traces))
        .route("/api/v1/traces/{trace_id}", get(trace))
        .route("/api/v1/errors", get(errors))
        .route("/api/v1/errors/{id}", get(error_group))
        .route("/api/v1/runtime", get(runtime))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/checks", post(checks))
        .route("/api/v1/analysis", get(analysis))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(shared.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .merge(super::ui::router()) // the web UI (src/serve/ui.rs)
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .with_state(shared)
}

/// 200 `ok`, or 503 with the reason when the store cannot be written (corrupt, disk full …).
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.health.error() {
        None => "ok\n".into_response(),
        Some(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store broken: {e}\n")).into_response(),
    }
}

/// How a request proved it holds the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Bearer,
    Cookie,
    Query,
}

/// The token a request carries, and how.
fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<(String, Via)> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))
    {
        return Some((t.trim().to_string(), Via::Bearer));
    }
    for c in headers.get_all(header::COOKIE) {
        if let Ok(c) = c.to_str() {
            for part in c.split(';') {
                if let Some(t) = part.trim().strip_prefix("obs_stack_token=") {
                    return Some((t.to_string(), Via::Cookie));
                }
            }
        }
    }
    if let Some(q) = query {
        for part in q.split('&') {
            if let Some(t) = part.strip_prefix("token=") {
                return Some((t.to_string(), Via::Query));
            }
        }
    }
    None
}

/// Token check on everything but /healthz, and the same-origin rule for state-changing calls
/// that ride the cookie (or a token in the URL, which a page elsewhere could have copied into a
/// form): a page on another origin cannot make the browser create a project or post checks.
async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let presented = presented(req.headers(), req.uri().query());
    let Some((t, via)) = presented.filter(|(t, _)| auth::token_ok(t) && auth::same(t, &shared.token)) else {
        return err(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (see `obs-stack serve token`)",
        );
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && via != Via::Bearer {
        let h = |n: header::HeaderName| req.headers().get(n).and_then(|v| v.to_str().ok());
        if !auth::same_origin(h(header::HOST), h(header::ORIGIN), h(header::REFERER)) {
            return err(
                StatusCode::FORBIDDEN,
                "cross-origin request refused: a state-changing call with the cookie must come from this server's own pages (scripts: use Authorization: Bearer)",
            );
        }
    }
    let mut resp = next.run(req).await;
    if via == Via::Query {
        let cookie = format!("obs_stack_token={t}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn err(code: StatusCode, msg: &str) -> Response {
    (code, axum::Json(json!({"error": msg}))).into_response()
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

#[derive(Debug, Deserialize, Default)]
pub struct Params {
    project: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    service: Option<String>,
    route: Option<String>,
    step: Option<i64>,
    status: Option<i64>,
    error: Option<bool>,
    min_duration_ms: Option<f64>,
    limit: Option<usize>,
    after: Option<String>,
    order: Option<String>,
}

/// `route=` as a route, or as "METHOD /route" the way every view prints it.
fn split_method(r: &str) -> (Option<String>, String) {
    let r = r.trim();
    match r.split_once(' ') {
        Some((m, rest))
            if !m.is_empty()
                && m.bytes().all(|b| b.is_ascii_uppercase())
                && rest.trim_start().starts_with('/') =>
        {
            (Some(m.to_string()), rest.trim_start().to_string())
        }
        _ => (None, r.to_string()),
    }
}

struct Scope {
    pid: i64,
    project: String,
    from: i64,
    to: i64,
}

fn scope(shared: &Shared, p: &Params) -> Result<Scope, Box<Response>> {
    let Some(project) = p.project.as_deref().filter(|s| !s.is_empty()) else {
        return Err(Box::new(err(StatusCode::BAD_REQUEST, "project= is required")));
    };
    let projects = shared
        .with_reader(store::projects)
        .map_err(|e| Box::new(err(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))))?;
    let Some((pid, _, _)) = projects.into_iter().find(|(_, n, _)| n == project) else {
        return Err(Box::new(err(StatusCode::NOT_FOUND, "no such project")));
    };
    // clamped to times whose nanoseconds fit an i64, so no conversion below can wrap
    let to =
        p.to.unwrap_or_else(|| store::now_ms() + 1)
            .clamp(1, store::MAX_TIME_MS);
    let from = p
        .from
        .unwrap_or(to.saturating_sub(15 * 60 * 1000))
        .clamp(0, store::MAX_TIME_MS);
    if from >= to {
        return Err(Box::new(err(StatusCode::BAD_REQUEST, "from must be before to")));
    }
    Ok(Scope {
        pid,
        project: project.to_string(),
        from,
        to,
    })
}

/// What an answer may hold, and the share of the query memory it takes while it is built
/// and sent (the bytes, and the decoded rows and JSON values behind them).
const SMALL: usize = 2 << 20;
const LARGE: usize = 12 << 20;
/// A trace page's answer budget (the spans' text; see `store::trace_page`).
const TRACE_PAGE_BYTES: usize = 2 << 20;
const TRACE_PAGE_SPANS: usize = 1_000;
const TRACE_PAGE_MAX_SPANS: usize = 10_000;

/// A read that found nothing: 404 with this message.
#[derive(Debug)]
struct NotFound(&'static str);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NotFound {}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "2")],
        axum::Json(json!({"error": "the server is answering other queries at the limit of its memory; retry shortly"})),
    )
        .into_response()
}

/// Runs a read on a reader connection, off the async threads, under a share of the query
/// memory of `reserve` bytes, and answers its JSON. The share is held until the last byte of
/// the answer has been taken by the connection, so a client that does not read cannot pile
/// answers up outside the cap.
async fn blocking<T: serde::Serialize + Send + 'static>(
    shared: Arc<Shared>,
    reserve: usize,
    f: impl FnOnce(&rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
) -> Response {
    let Some(permit) = shared.query_share(reserve).await else {
        return busy();
    };
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let v = shared.with_reader(f)?;
        Ok(serde_json::to_vec(&v)?)
    })
    .await;
    match r {
        Ok(Ok(bytes)) => json_body(bytes, permit),
        Ok(Err(e)) => match e.downcast_ref::<NotFound>() {
            Some(nf) => err(StatusCode::NOT_FOUND, nf.0),
            None => err(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        },
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A JSON answer sent in 64 KiB pieces; `permit` goes with the last one.
fn json_body(bytes: Vec<u8>, permit: tokio::sync::OwnedSemaphorePermit) -> Response {
    let mut rest = axum::body::Bytes::from(bytes);
    let mut permit = Some(permit);
    let chunks = futures_util::stream::poll_fn(move |_| {
        if rest.is_empty() {
            permit.take();
            return std::task::Poll::Ready(None);
        }
        let n = rest.len().min(64 << 10);
        std::task::Poll::Ready(Some(Ok::<_, std::convert::Infallible>(rest.split_to(n))))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

macro_rules! scoped {
    ($shared:expr, $p:expr) => {
        match scope(&$shared, &$p) {
            Ok(s) => s,
            Err(r) => return *r,
        }
    };
}

async fn list_projects(State(shared): State<Arc<Shared>>) -> Response {
    blocking(shared, SMALL, |c| {
        Ok(store::projects(c)?
            .into_iter()
            .map(|(_, name, key)| json!({"project": name, "ingest_key": key}))
            .collect::<Vec<_>>())
    })
    .await
}

#[derive(Deserialize)]
struct NewProject {
    name: String,
}

async fn add_project(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let Ok(p) = serde_json::from_slice::<NewProject>(&body) else {
        return err(StatusCode::BAD_REQUEST, "expected {\"name\": \"...\"}");
    };
    let dir = shared.config.data_dir.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let conn = store::open(&dir)?;
        store::project_add(&conn, &p.name)
    })
    .await;
    match r {
        Ok(Ok(key)) => {
            shared.reload_keys();
            let name = serde_json::from_slice::<NewProject>(&body)
                .map(|p| p.name.trim().to_string())
                .unwrap_or_default();
            ok(json!({"project": name, "ingest_key": key}))
        }
        Ok(Err(e)) => err(StatusCode::BAD_REQUEST, &format!("{e:#}")),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn services(State(shared): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let s = scoped!(shared, p);
    blocking(shared.clone(), SMALL, move |c| {
        Ok(json!({"project": s.project, "from": s.from, "to": s.to, "services": store::services(c, s.pid, s.from, s.to)?}))
    })
    .await
}

async fn routes(State(shared): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let s = scoped!(shared, p);
    let Some(service) = p.service.clone() else {
        return err(StatusCode::BAD_REQUEST, "service= is required");
    };
    blocking(shared.clone(), SMALL, move |c| {
        Ok(
            json!({"project": s.project, "service": service, "from": s.from, "to": s.to,
                  "routes": store::routes(c, s.pid, &service, s.from, s.to)?}),
        )
    })
    .await
}

async fn series(State(shared): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let s = scoped!(shared, p);
    let Some(service) = p.service.clone() else {
        return err(StatusCode::BAD_REQUEST, "service= is required");
    };
    let step = store::series_step(s.from, s.to, p.step.unwrap_or(((s.to - s.from) / 60).max(10_000)));
    let route = p.route.clone();
    blocking(shared.clone(), SMALL, move |c| {
        let pts = store::series(c, s.pid, &service, route.as_deref(), s.from, s.to, step)?;
        Ok(json!({"project": s.project, "service": service, "route": route, "step": step, "points": pts}))
    })
    .await
}

async fn traces(State(shared): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let s = scoped!(shared, p);
    let (method, route) = match p.route.as_deref().map(split_method) {
        Some((m, r)) => (m, Some(r)),
        None => (None, None),
    };
    let slowest = match p.order.as_deref() {
        None | Some("") | Some("newest") => false,
        Some("slowest") => true,
        Some(_) => return err(StatusCode::BAD_REQUEST, "order= is newest or slowest"),
    };
    let f = store::TraceFilter {
        service: p.service.clone(),
        route,
        status: p.status,
        error: p.error,
        min_duration_ms: p.min_duration_ms,
        method,
        slowest,
        limit: p.limit.unwrap_or(50),
    };
    blocking(shared.clone(), SMALL, move |c| {
        Ok(json!({"project": s.project, "traces": store::traces(c, s.pid, s.from, s.to, &f)?}))
    })
    .await
}

/// `GET /api/v1/traces/{id}`: one page of the trace (`limit` spans, 1,000 by default and
/// 10,000 at most, and about 2 MB), in start order; `truncated` and `next` (pass it back as
/// `after=`) when the trace has more.
async fn trace(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let s = scoped!(shared, p);
    let Ok(tid) = hex::decode(id.trim()) else {
        return err(StatusCode::BAD_REQUEST, "trace id must be 32 hex characters");
    };
    if tid.len() != 16 {
        return err(StatusCode::BAD_REQUEST, "trace id must be 32 hex characters");
    }
    let after = match p.after.as_deref().map(store::SpanCursor::parse) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => {
            return err(
                StatusCode::BAD_REQUEST,
                "after= must be the `next` value of the previous page",
            );
        }
    };
    let limit = p.limit.unwrap_or(TRACE_PAGE_SPANS).clamp(1, TRACE_PAGE_MAX_SPANS);
    let id = id.trim().to_ascii_lowercase();
    blocking(shared.clone(), LARGE, move |c| {
        let page = store::trace_page(c, s.pid, &tid, after.as_ref(), limit, TRACE_PAGE_BYTES)?;
        if page.span_count == 0 {
            anyhow::bail!(NotFound("no such trace"));
        }
        Ok(
            json!({"trace_id": id, "span_count": page.span_count, "returned": page.spans.len(),
                  "truncated": page.truncated, "next": page.next, "spans": page.spans}),
        )
    })
    .await
}

async fn errors(State(shared): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let s = scoped!(shared, p);
    let service = p.service.clone();
    blocking(shared.clone(), SMALL, move |c| {
        Ok(json!({"project": s.project, "errors": store::error_groups(c, s.pid, service.as_deref(), s.from, None)?}))
    })
    .await
}

async fn error_group(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let s = scoped!(shared, p);
    blocking(shared.clone(), SMALL, move |c| {
        let mut g = store::error_groups(c, s.pid, None, 0, Some(&id))?;
        if g.is_empty() {
            anyhow::bail!(NotFound("no such error group"));
        }
        Ok(g.remove(0))
    })
    .await
}

async fn runtime(State(shared): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let s = scoped!(shared, p);
    let service = p.service.clone();
    let step = p.step.unwrap_or(10_000);
    blocking(shared.clone(), LARGE, move |c| {
        let r = store::runtime(c, s.pid, service.as_deref(), s.from, s.to, step)?;
        Ok(json!({"project": s.project, "step": r.step, "truncated": r.truncated, "series": r.series}))
    })
    .await
}

fn stats_value(shared: &Shared, c: &rusqlite::Connection) -> anyhow::Result<Value> {
    let n = shared.counters.snapshot();
    let parts = store::partitions(c)?;
    Ok(json!({
        "received": {"spans": n["received_spans"], "points": n["received_points"], "logs": n["received_logs"]},
        "refused": {
            "auth": n["refused_auth"], "overload": n["refused_overload"], "malformed": n["refused_malformed"],
            "too_large": n["refused_too_large"], "unsupported": n["refused_unsupported"],
        },
        "dropped": {"retention": n["dropped_retention"], "out_of_window": n["dropped_out_of_window"]},
        "requests": n["requests"],
        "api_busy": n["api_busy"],
        "db_size_bytes": store::db_size(c)?,
        "max_size_bytes": shared.config.max_size,
        "retention_ms": shared.config.retention_ms,
        "max_memory_bytes": shared.config.max_memory,
        "oldest_data_ms": store::oldest_ms(c)?,
        "partitions": parts.iter().map(|(h, n)| json!({"hour_start_ms": h * 3_600_000, "spans": n})).collect::<Vec<_>>(),
        "uptime_s": shared.started.elapsed().as_secs(),
        "store": shared.health.json(),
        "rss_bytes": rss_bytes(),
    }))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let r = tokio::task::spawn_blocking({
        let shared = shared.clone();
        move || shared.with_reader(|c| stats_value(&shared, c))
    })
    .await;
    match r {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Resident memory from /proc (Linux), for the stats and /metrics.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Externally observed data (`up` pushes it for containers without an agent) becomes
/// runtime series: `{"project","service","kind":"http_check"|"container_stats","ts_ms", …}`;
/// every other numeric field is a series `<kind>.<field>`.
async fn checks(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::BAD_REQUEST, "expected a JSON object");
    };
    let items: Vec<Value> = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => {
            return err(
                StatusCode::BAD_REQUEST,
                "expected a JSON object or an array of them",
            );
        }
    };
    let mut by_project: BTreeMap<String, Batch> = BTreeMap::new();
    let now = store::now_ms();
    for it in items.iter().take(10_000) {
        let (Some(project), Some(service), Some(kind)) = (
            it["project"].as_str(),
            it["service"].as_str(),
            it["kind"].as_str(),
        ) else {
            return err(
                StatusCode::BAD_REQUEST,
                "each check needs project, service and kind",
            );
        };
        if kind != "http_check" && kind != "container_stats" {
            return err(
                StatusCode::BAD_REQUEST,
                "kind must be http_check or container_stats",
            );
        }
        let ts = it["ts_ms"].as_i64().unwrap_or(now);
        let b = by_project.entry(project.to_string()).or_insert_with(|| Batch {
            project: project.to_string(),
            ..Default::default()
        });
        // what detection found, for a service with no SDK to say it
        let language = it["language"]
            .as_str()
            .filter(|l| {
                l.len() <= 32
                    && l.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
            })
            .unwrap_or("")
            .to_string();
        let info = b
            .services
            .entry(service.to_string())
            .or_insert_with(|| ServiceInfo {
                name: service.to_string(),
                ..Default::default()
            });
        info.last_seen_ms = info.last_seen_ms.max(ts);
        if !language.is_empty() {
            info.language = language;
        }
        // an HTTP check's path names its series: `http_check.status{path=/health}`
        let path = it["path"]
            .as_str()
            .filter(|p| p.starts_with('/') && p.len() <= 64 && !p.contains(['{', '}', '\n']))
            .map(|p| format!("{{path={p}}}"))
            .unwrap_or_default();
        if let Some(o) = it.as_object() {
            for (k, val) in o {
                if matches!(
                    k.as_str(),
                    "project" | "service" | "kind" | "ts_ms" | "language" | "path"
                ) {
                    continue;
                }
                let value = match val {
                    Value::Number(n) => n.as_f64(),
                    Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                    _ => None,
                };
                if let Some(value) = value {
                    let unit = if k.ends_with("_ms") {
                        "ms"
                    } else if k.ends_with("_bytes") {
                        "By"
                    } else {
                        "1"
                    };
                    b.runtime.push(RuntimePoint {
                        service: service.to_string(),
                        name: format!("{kind}.{k}{path}"),
                        unit: unit.into(),
                        ts_ms: ts,
                        value,
                    });
                }
            }
        }
        b.n_points += 1;
    }
    let mut stored = 0;
    for (_, b) in by_project {
        let permit = match shared.admit(64 << 10) {
            Ok(p) => p,
            Err(_) => {
                return err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "over the memory cap; retry later",
                );
            }
        };
        let n = b.runtime.len();
        match shared.commit(b, permit).await {
            Ok(()) => stored += n,
            Err(Refusal::Internal(e)) => return err(StatusCode::BAD_REQUEST, &e),
            Err(_) => {
                return err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "over the memory cap; retry later",
                );
            }
        }
    }
    ok(json!({"stored_points": stored}))
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let Some(_share) = shared.query_share(LARGE).await else {
        return busy();
    };
    let r = tokio::task::spawn_blocking({
        let shared = shared.clone();
        move || {
            shared.with_reader(|c| {
                let since = store::now_ms() - shared.config.retention_ms;
                let recent = store::now_ms() - 5 * 60 * 1000;
                let totals = store::red_totals(c, since)?;
                let recent_totals = store::red_totals(c, recent)?;
                let db = store::db_size(c)?;
                Ok((totals, recent_totals, db))
            })
        }
    })
    .await;
    let (totals, recent, db) = match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return err(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut out = String::new();
    out.push_str("# HELP obs_stack_http_requests_total HTTP server requests over the retained window, from the agents' metrics (or server spans).\n# TYPE obs_stack_http_requests_total counter\n");
    for (p, s, r, m, c, n, _) in &totals {
        let _ = writeln!(
            out,
            "obs_stack_http_requests_total{{project=\"{}\",service=\"{}\",route=\"{}\",method=\"{}\",status_class=\"{}\"}} {}",
            label(p),
            label(s),
            label(r),
            label(m),
            label(c),
            n.round()
        );
    }
    out.push_str("# HELP obs_stack_http_request_duration_ms Request latency quantiles over the last 5 minutes.\n# TYPE obs_stack_http_request_duration_ms gauge\n");
    for (p, s, r, m, c, _, h) in &recent {
        for q in [0.5, 0.95, 0.99] {
            if let Some(v) = h.quantile(q) {
                let _ = writeln!(
                    out,
                    "obs_stack_http_request_duration_ms{{project=\"{}\",service=\"{}\",route=\"{}\",method=\"{}\",status_class=\"{}\",quantile=\"{q}\"}} {v:.3}",
                    label(p),
                    label(s),
                    label(r),
                    label(m),
                    label(c)
                );
            }
        }
    }
    for (k, v) in shared.counters.snapshot() {
        let _ = writeln!(
            out,
            "# TYPE obs_stack_ingest_{k}_total counter\nobs_stack_ingest_{k}_total {v}"
        );
    }
    let _ = writeln!(
        out,
        "# TYPE obs_stack_db_size_bytes gauge\nobs_stack_db_size_bytes {db}"
    );
    if let Some(rss) = rss_bytes() {
        let _ = writeln!(
            out,
            "# TYPE obs_stack_resident_memory_bytes gauge\nobs_stack_resident_memory_bytes {rss}"
        );
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

/// `GET /api/v1/analysis?service=`: findings over the service's most recent stored traces in
/// the range (up to 50): N+1 queries and the slowest child span per route (the UI's "Run
/// analysis"; `obs-stack analyze` adds a replay burst first). The same pure code as the CLI
/// (`crate::analysis`).
async fn analysis(State(shared): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    let s = scoped!(shared, p);
    let Some(service) = p.service.clone() else {
        return err(StatusCode::BAD_REQUEST, "service= is required");
    };
    blocking(shared.clone(), 2 * LARGE, move |c| {
        let f = store::TraceFilter {
            service: Some(service.clone()),
            route: None,
            status: None,
            error: None,
            min_duration_ms: None,
            method: None,
            slowest: false,
            limit: 50,
        };
        let mut traces = Vec::new();
        for row in store::traces(c, s.pid, s.from, s.to, &f)? {
            let Ok(tid) = hex::decode(&row.trace_id) else {
                continue;
            };
            // the first spans of each trace: enough for N+1 and the slowest child, bounded
            let page = store::trace_page(c, s.pid, &tid, None, 200, 128 << 10)?;
            traces.push(json!({"trace_id": row.trace_id, "spans": page.spans}));
        }
        let findings = crate::analysis::analyze_traces(&traces);
        Ok(
            json!({"project": s.project, "service": service, "from": s.from, "to": s.to,
                  "traces_analyzed": traces.len(), "n_plus_one": findings.n_plus_one,
                  "slowest_children": findings.slowest_children}),
        )
    })
    .await
}
