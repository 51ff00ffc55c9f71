//! `obs-stack serve`: an embedded OpenTelemetry backend in the same binary.
//!
//! Runtime wiring: OTLP receivers (gRPC in `grpc`, HTTP in `http`) authenticate the project by
//! its ingest key, take a share of a fixed memory budget (the hard cap: no share, no work —
//! the request is refused with OTLP's retryable answers), decode, redact and derive
//! (`receive`), then hand a plain [`receive::Batch`] to one writer thread that owns the SQLite
//! connection (`store`). The writer commits batches in group transactions and only then are
//! the OTLP requests answered, so an acknowledged request is on disk. The JSON API (`api`)
//! reads through its own connections. Nothing here touches Docker or the other commands.
pub mod api;
pub mod auth;
pub mod derive;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod net;
pub mod receive;
pub mod redact;
pub mod store;
pub mod ui;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::Connection;
use std::sync::mpsc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use receive::{Batch, Deriver};
use store::Counters;

/// Largest request body accepted, after decompression (OTLP/HTTP and gRPC).
pub const MAX_BODY: usize = 16 << 20;
/// Memory the process needs besides ingest buffers and answers (runtime, SQLite caches).
const BASE_MEMORY: u64 = 64 << 20;
/// How long an API call waits for a share of the query memory before it answers 503.
const QUERY_WAIT: Duration = Duration::from_secs(10);
/// Longest the integrity check at start may take (it reads the whole database).
const INTEGRITY_BUDGET: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub api: SocketAddr,
    pub retention_ms: i64,
    pub max_size: i64,
    pub max_memory: u64,
    /// Start over when the database is empty (0 bytes) or damaged (`store::reset`).
    pub reset: bool,
}

/// A batch on its way to the writer, with the memory share it holds until it is committed.
pub struct Job {
    pub batch: Batch,
    pub reply: oneshot::Sender<std::result::Result<(), String>>,
    pub permit: OwnedSemaphorePermit,
}

/// Why an ingest request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Auth,
    Overload,
    Malformed(String),
    TooLarge,
    /// The body stalled (counted as malformed).
    Timeout,
    Unsupported(String),
    Internal(String),
}

struct Keys {
    /// project by the SHA-256 of its ingest key (see `auth::key_digest`)
    by_key: HashMap<[u8; 32], String>,
    loaded: Instant,
}

pub struct Shared {
    pub counters: Counters,
    /// Whether the store can be written (`/healthz`, `/api/v1/stats`).
    pub health: store::Health,
    /// Derivation state; it locks its parts briefly, so requests derive concurrently.
    pub deriver: Deriver,
    keys: RwLock<Keys>,
    budget: Arc<Semaphore>,
    budget_kib: usize,
    /// The API's part of the memory cap: every answer holds a share of it until it is sent,
    /// so queries are bounded like ingest, and a flood of ingest cannot starve them.
    queries: Arc<Semaphore>,
    queries_kib: usize,
    queue: mpsc::SyncSender<Job>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    pub token: String,
    pub config: Config,
    pub started: Instant,
    /// Set once the receivers stopped: the writer finishes what is queued and exits.
    stopping: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// A memory share of `bytes` for one request, or an overload refusal (counted).
    pub fn admit(&self, bytes: usize) -> std::result::Result<OwnedSemaphorePermit, Refusal> {
        let kib = (bytes / 1024).clamp(1, self.budget_kib) as u32;
        match self.budget.clone().try_acquire_many_owned(kib) {
            Ok(p) => Ok(p),
            Err(_) => {
                self.counters.refused_overload.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Overload)
            }
        }
    }

    /// A share of the API's memory for an answer of up to `bytes`, waiting a little for one;
    /// `None` (the caller answers 503) when queries hold it all for that long.
    pub async fn query_share(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = (bytes / 1024).clamp(1, self.queries_kib) as u32;
        let permit = tokio::time::timeout(QUERY_WAIT, self.queries.clone().acquire_many_owned(kib)).await;
        match permit {
            Ok(Ok(p)) => Some(p),
            _ => {
                self.counters.api_busy.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Grows a share to cover `bytes` in total.
    pub fn grow(&self, permit: &mut OwnedSemaphorePermit, bytes: usize) -> std::result::Result<(), Refusal> {
        let want = (bytes / 1024).clamp(1, self.budget_kib);
        if want <= permit.num_permits() {
            return Ok(());
        }
        let more = self.admit((want - permit.num_permits()) * 1024)?;
        permit.merge(more);
        Ok(())
    }

    /// The project of an ingest key; an unknown key re-reads the keys at most once a second,
    /// so `serve project add` works against a running server. Anything but a well-formed key
    /// is refused before any lookup.
    pub fn project_for_key(&self, key: Option<&str>) -> Option<String> {
        let key = key?.trim();
        if !auth::key_ok(key) {
            return None;
        }
        let digest = auth::key_digest(key);
        if let Some(p) = self.keys.read().ok()?.by_key.get(&digest) {
            return Some(p.clone());
        }
        let stale = self.keys.read().ok()?.loaded.elapsed() >= Duration::from_secs(1);
        if stale {
            self.reload_keys();
            return self.keys.read().ok()?.by_key.get(&digest).cloned();
        }
        None
    }

    pub fn reload_keys(&self) {
        let projects = self.with_reader(store::projects).unwrap_or_default();
        let mut by_key = HashMap::new();
        for (_, name, key) in projects {
            if auth::key_ok(&key) {
                by_key.insert(auth::key_digest(&key), name);
            } else {
                tracing::warn!(
                    "project {name:?} has a malformed ingest key in the database; it is not accepted"
                );
            }
        }
        if let Ok(mut k) = self.keys.write() {
            k.by_key = by_key;
            k.loaded = Instant::now();
        }
    }

    pub fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = self.readers[i]
            .lock()
            .map_err(|_| anyhow::anyhow!("reader poisoned"))?;
        f(&conn)
    }

    /// Hands a batch to the writer and waits until it is committed.
    pub async fn commit(
        &self,
        batch: Batch,
        permit: OwnedSemaphorePermit,
    ) -> std::result::Result<(), Refusal> {
        let (tx, rx) = oneshot::channel();
        if self
            .queue
            .try_send(Job {
                batch,
                reply: tx,
                permit,
            })
            .is_err()
        {
            self.counters.refused_overload.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Overload);
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Refusal::Internal(e)),
            Err(_) => Err(Refusal::Internal("the writer stopped".into())),
        }
    }

    pub fn count_refusal(&self, r: &Refusal) {
        let c = match r {
            Refusal::Auth => &self.counters.refused_auth,
            Refusal::Malformed(_) | Refusal::Timeout => &self.counters.refused_malformed,
            Refusal::TooLarge => &self.counters.refused_too_large,
            Refusal::Unsupported(_) => &self.counters.refused_unsupported,
            // overload is counted where it is decided; internal errors are logged
            Refusal::Overload | Refusal::Internal(_) => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

fn warn_bind(what: &str, addr: &SocketAddr) {
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: {what} listens on {addr}, reachable from other machines; anyone who can reach it {}",
            if what == "API" {
                "still needs the access token"
            } else {
                "and has an ingest key can send data"
            }
        );
    }
}

/// Runs the backend until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    limit_malloc_arenas();
    let nofile = net::raise_open_files_limit();
    let (http_conns, grpc_conns, api_conns) = net::conn_limits(nofile);
    let dir = config.data_dir.clone();
    store::secure_dir(&dir)?;
    if let Some(why) = store::damage(&dir, INTEGRITY_BUDGET)? {
        if !config.reset {
            anyhow::bail!(
                "{why}.\nRefusing to start: ingest would fail or every agent would get 401. To recover, \
                 start once with --reset (moves the file aside as serve.db.broken-<time> and starts a \
                 new database, keeping the projects' ingest keys when they can still be read), or stop \
                 and move {} aside yourself.",
                store::db_path(&dir).display()
            );
        }
        let (aside, kept) = store::reset(&dir)?;
        eprintln!(
            "obs-stack serve: {why}; --reset moved it to {} and started a new database ({kept} project(s) and their ingest keys kept)",
            aside.display()
        );
    }
    let conn = store::open(&dir)?;
    let token = store::token(&dir)?;
    let counters = Counters::default();
    counters.load(&conn)?;
    let extra = match std::fs::read_to_string(dir.join("redaction.yaml")) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("reading redaction.yaml in the data directory"),
    };
    let redactor = redact::Redactor::new(extra.as_deref())?;
    let mut writer = store::Writer::new(conn, config.retention_ms, config.max_size)?;
    let mut deriver = Deriver::new(redactor, config.retention_ms);
    for (p, s, r) in writer.known_routes()? {
        deriver.seed(&p, &s, &r);
    }
    let readers = (0..2).map(|_| store::open(&dir)).collect::<Result<Vec<_>>>()?;
    // what is left after the base is split: a quarter for answers, the rest for ingest
    let left = config.max_memory.saturating_sub(BASE_MEMORY).max(8 << 20);
    let queries_kib = (left / 4 / 1024) as usize;
    let budget_kib = (left / 1024) as usize - queries_kib;
    let (tx, rx) = mpsc::sync_channel::<Job>(1024);
    let shared = Arc::new(Shared {
        counters,
        health: store::Health::default(),
        deriver,
        keys: RwLock::new(Keys {
            by_key: HashMap::new(),
            loaded: Instant::now(),
        }),
        budget: Arc::new(Semaphore::new(budget_kib)),
        budget_kib,
        queries: Arc::new(Semaphore::new(queries_kib)),
        queries_kib,
        queue: tx,
        readers: readers.into_iter().map(Mutex::new).collect(),
        next_reader: Default::default(),
        token,
        config: config.clone(),
        started: Instant::now(),
        stopping: Default::default(),
    });
    shared.reload_keys();
    writer.enforce_retention(&shared.counters, store::now_ms())?;

    let wshared = shared.clone();
    let writer_thread = std::thread::Builder::new()
        .name("obs-serve-writer".into())
        .spawn(move || writer_loop(writer, rx, wshared))
        .context("cannot start the writer thread")?;

    warn_bind("OTLP/gRPC", &config.otlp_grpc);
    warn_bind("OTLP/HTTP", &config.otlp_http);
    warn_bind("API", &config.api);
    let grpc_l = tokio::net::TcpListener::bind(config.otlp_grpc)
        .await
        .with_context(|| format!("cannot listen on {} (OTLP/gRPC)", config.otlp_grpc))?;
    let http_l = tokio::net::TcpListener::bind(config.otlp_http)
        .await
        .with_context(|| format!("cannot listen on {} (OTLP/HTTP)", config.otlp_http))?;
    let api_l = tokio::net::TcpListener::bind(config.api)
        .await
        .with_context(|| format!("cannot listen on {} (API)", config.api))?;
    eprintln!(
        "obs-stack serve: OTLP gRPC {} HTTP {}, API http://{} (token in {}), data {}",
        grpc_l.local_addr()?,
        http_l.local_addr()?,
        api_l.local_addr()?,
        dir.join(store::TOKEN_FILE).display(),
        dir.display()
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    // each listener has its own connection limit: a flood on one never starves the others
    let g = tokio::spawn(net::serve(
        grpc_l,
        grpc::router(shared.clone()),
        net::Limits {
            max_conns: grpc_conns,
            max_streams: 16,
            http2_only: true,
        },
        stopped(stop_rx.clone()),
    ));
    let h = tokio::spawn(net::serve(
        http_l,
        http::router(shared.clone()),
        net::Limits {
            max_conns: http_conns,
            max_streams: 16,
            http2_only: false,
        },
        stopped(stop_rx.clone()),
    ));
    let a = tokio::spawn(net::serve(
        api_l,
        api::router(shared.clone()),
        net::Limits {
            max_conns: api_conns,
            max_streams: 32,
            http2_only: false,
        },
        stopped(stop_rx.clone()),
    ));

    shutdown_signal().await;
    eprintln!("obs-stack serve: stopping");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = g.await;
        let _ = h.await;
        let _ = a.await;
    })
    .await;
    shared.stopping.store(true, Ordering::Relaxed);
    drop(shared);
    // a client holding a connection open can outlive the grace period; the writer stops anyway
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || writer_thread.join()),
    )
    .await;
    Ok(())
}

/// glibc keeps one malloc arena per thread that ever allocated (up to 8 per core), and
/// freed memory in them is rarely returned; two arenas keep RSS close to what is in use.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The writer: group commits, then answers; retention every 10 s and when over the size cap.
fn writer_loop(mut writer: store::Writer, rx: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let mut last_maintenance = Instant::now();
    let weak = Arc::downgrade(&shared);
    drop(shared);
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(j) => j,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if weak.upgrade().is_none_or(|s| s.stopping.load(Ordering::Relaxed)) {
                    break;
                }
                if last_maintenance.elapsed() >= Duration::from_secs(10) {
                    let Some(shared) = weak.upgrade() else { break };
                    if let Err(e) = writer.enforce_retention(&shared.counters, store::now_ms()) {
                        tracing::error!("retention failed: {e:#}");
                        shared.health.note(&e);
                    }
                    writer.checkpoint();
                    last_maintenance = Instant::now();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = vec![first];
        let mut spans: usize = jobs[0].batch.spans.len();
        while jobs.len() < 256 && spans < 20_000 {
            match rx.try_recv() {
                Ok(j) => {
                    spans += j.batch.spans.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let Some(shared) = weak.upgrade() else {
            for j in jobs {
                let _ = j.reply.send(Err("shutting down".into()));
            }
            break;
        };
        let batches: Vec<&Batch> = jobs.iter().map(|j| &j.batch).collect();
        match writer.write(&batches, &shared.counters) {
            Ok(results) => {
                shared.health.ok();
                for (j, r) in jobs.into_iter().zip(results) {
                    if let Err(e) = &r {
                        shared.health.note(e);
                    }
                    let _ = j.reply.send(r.map_err(|e| format!("{e:#}")));
                }
            }
            Err(e) => {
                tracing::error!("write failed: {e:#}");
                shared.health.note(&e);
                for j in jobs {
                    let _ = j.reply.send(Err(format!("{e:#}")));
                }
            }
        }
        let over = store::db_size(writer.conn())
            .map(|s| s > writer.max_size)
            .unwrap_or(false);
        if over || last_maintenance.elapsed() >= Duration::from_secs(10) {
            if let Err(e) = writer.enforce_retention(&shared.counters, store::now_ms()) {
                tracing::error!("retention failed: {e:#}");
                shared.health.note(&e);
            }
            last_maintenance = Instant::now();
        }
        drop(shared);
    }
    writer.checkpoint();
}
