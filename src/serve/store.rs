//! The embedded store: one SQLite database (`<data-dir>/serve.db`, WAL mode) written by one
//! writer thread and read by the API through its own connections.
//!
//! Layout. Spans live in hourly partition tables `spans_<unix hour>` (listed in `partitions`)
//! so retention drops whole tables: cheap, no long DELETE. Derived data is small and lives in
//! single tables keyed by time: `red` (10 s buckets of calls + a canonical histogram per
//! service × route × method × status class × source), `runtime` (10 s buckets of named
//! series), `error_groups` (one row per fingerprint), `services`, `projects` (ingest keys) and
//! `counters` (ingest statistics, saved in every write transaction).
//!
//! Durability. `journal_mode=WAL` with `synchronous=NORMAL`: a transaction is durable against
//! a crash or SIGKILL of this process as soon as COMMIT returns (the WAL is in the OS page
//! cache); only a power loss or kernel crash can lose the last transactions. OTLP requests are
//! answered only after the batch holding them committed, so what was acknowledged survives a
//! kill -9. `auto_vacuum=INCREMENTAL` lets dropped partitions give their pages back to the
//! file system.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::derive::Hist;
use super::receive::Batch;

pub const DB_FILE: &str = "serve.db";
pub const TOKEN_FILE: &str = "token";
const HOUR_MS: i64 = 3_600_000;

/// Ingest statistics, in memory and saved with every write transaction.
#[derive(Debug, Default)]
pub struct Counters {
    pub received_spans: AtomicU64,
    pub received_points: AtomicU64,
    pub received_logs: AtomicU64,
    pub refused_auth: AtomicU64,
    pub refused_overload: AtomicU64,
    pub refused_malformed: AtomicU64,
    pub refused_too_large: AtomicU64,
    pub refused_unsupported: AtomicU64,
    pub dropped_retention: AtomicU64,
    pub dropped_out_of_window: AtomicU64,
    pub requests: AtomicU64,
}

impl Counters {
    fn fields(&self) -> [(&'static str, &AtomicU64); 11] {
        [
            ("received_spans", &self.received_spans),
            ("received_points", &self.received_points),
            ("received_logs", &self.received_logs),
            ("refused_auth", &self.refused_auth),
            ("refused_overload", &self.refused_overload),
            ("refused_malformed", &self.refused_malformed),
            ("refused_too_large", &self.refused_too_large),
            ("refused_unsupported", &self.refused_unsupported),
            ("dropped_retention", &self.dropped_retention),
            ("dropped_out_of_window", &self.dropped_out_of_window),
            ("requests", &self.requests),
        ]
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.fields()
            .iter()
            .map(|(k, v)| (*k, v.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn load(&self, conn: &Connection) -> Result<()> {
        let mut st = conn.prepare("SELECT k, v FROM counters")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let saved: HashMap<String, i64> = rows.collect::<std::result::Result<_, _>>()?;
        for (k, a) in self.fields() {
            if let Some(v) = saved.get(k) {
                a.store(*v as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn save(&self, conn: &Connection) -> Result<()> {
        let mut st = conn.prepare_cached("INSERT OR REPLACE INTO counters(k, v) VALUES (?1, ?2)")?;
        for (k, a) in self.fields() {
            st.execute(params![k, a.load(Ordering::Relaxed) as i64])?;
        }
        Ok(())
    }
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join(DB_FILE)
}

/// Opens (creating when needed) the database with the pragmas every connection uses.
pub fn open(dir: &Path) -> Result<Connection> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let path = db_path(dir);
    let conn = Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA auto_vacuum=INCREMENTAL;
         PRAGMA journal_mode=WAL;
         PRAGMA synchronous=NORMAL;
         PRAGMA cache_size=-4096;
         PRAGMA temp_store=MEMORY;
         PRAGMA mmap_size=0;",
    )
    .with_context(|| format!("{} is not a usable SQLite database", path.display()))?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS projects(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
            ingest_key TEXT UNIQUE NOT NULL, created_ms INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS partitions(hour INTEGER PRIMARY KEY, spans INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE IF NOT EXISTS counters(k TEXT PRIMARY KEY, v INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS services(pid INTEGER NOT NULL, name TEXT NOT NULL, language TEXT,
            sdk TEXT, sdk_version TEXT, agent TEXT, agent_version TEXT, last_seen_ms INTEGER,
            PRIMARY KEY(pid, name)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS red(pid INTEGER NOT NULL, service TEXT NOT NULL, route TEXT NOT NULL,
            method TEXT NOT NULL, class TEXT NOT NULL, bucket_ms INTEGER NOT NULL, source TEXT NOT NULL,
            count REAL NOT NULL, hist BLOB NOT NULL,
            PRIMARY KEY(pid, service, route, method, class, bucket_ms, source)) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS red_time ON red(pid, bucket_ms);
         CREATE INDEX IF NOT EXISTS red_age ON red(bucket_ms);
         CREATE TABLE IF NOT EXISTS runtime(pid INTEGER NOT NULL, service TEXT NOT NULL, name TEXT NOT NULL,
            unit TEXT NOT NULL, bucket_ms INTEGER NOT NULL, value REAL NOT NULL,
            PRIMARY KEY(pid, service, name, bucket_ms)) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS runtime_time ON runtime(bucket_ms);
         CREATE TABLE IF NOT EXISTS error_groups(pid INTEGER NOT NULL, id TEXT NOT NULL, type TEXT, message TEXT,
            count INTEGER NOT NULL, first_ms INTEGER, last_ms INTEGER, services TEXT, routes TEXT,
            stack TEXT, traces TEXT, PRIMARY KEY(pid, id)) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS error_groups_last ON error_groups(pid, last_ms);",
    )?;
    Ok(conn)
}

/// The ingest key of `name`, made on first use (idempotent).
pub fn project_add(conn: &Connection, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        anyhow::bail!("invalid project name {name:?}: 1-128 printable characters");
    }
    if let Some(k) = conn
        .query_row("SELECT ingest_key FROM projects WHERE name=?1", [name], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
    {
        return Ok(k);
    }
    let key = format!("osk_{}", random_hex(24)?);
    conn.execute(
        "INSERT OR IGNORE INTO projects(name, ingest_key, created_ms) VALUES (?1, ?2, ?3)",
        params![name, key, now_ms()],
    )?;
    Ok(
        conn.query_row("SELECT ingest_key FROM projects WHERE name=?1", [name], |r| {
            r.get(0)
        })?,
    )
}

/// Every project: (id, name, ingest key).
pub fn projects(conn: &Connection) -> Result<Vec<(i64, String, String)>> {
    let mut st = conn.prepare("SELECT id, name, ingest_key FROM projects ORDER BY name")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

pub fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(b))
}

/// The API token, made at first start into `<dir>/token` (mode 0600).
pub fn token(dir: &Path) -> Result<String> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let t = random_hex(32)?;
    let tmp = dir.join(".token.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(t.as_bytes())?;
        f.sync_all()?;
    }
    // another process may have won the race: keep whichever landed first
    if std::fs::hard_link(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return Ok(std::fs::read_to_string(&path)?.trim().to_string());
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(t)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn part_table(hour: i64) -> String {
    format!("spans_{hour}")
}

/// Partitions (unix hours) that exist.
pub fn partitions(conn: &Connection) -> Result<Vec<(i64, i64)>> {
    let mut st = conn.prepare_cached("SELECT hour, spans FROM partitions ORDER BY hour")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Bytes the database uses (pages in use, not counting the free list).
pub fn db_size(conn: &Connection) -> Result<i64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok((pages - free) * size)
}

/// The writer's side: owns the one connection that writes.
pub struct Writer {
    conn: Connection,
    parts: BTreeSet<i64>,
    pids: HashMap<String, i64>,
    pub retention_ms: i64,
    pub max_size: i64,
}

impl Writer {
    pub fn new(conn: Connection, retention_ms: i64, max_size: i64) -> Result<Writer> {
        let parts = partitions(&conn)?.into_iter().map(|(h, _)| h).collect();
        Ok(Writer {
            conn,
            parts,
            pids: HashMap::new(),
            retention_ms,
            max_size,
        })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn pid(&mut self, project: &str) -> Result<i64> {
        if let Some(p) = self.pids.get(project) {
            return Ok(*p);
        }
        let id: i64 = self
            .conn
            .query_row("SELECT id FROM projects WHERE name=?1", [project], |r| r.get(0))
            .with_context(|| format!("unknown project {project}"))?;
        self.pids.insert(project.to_string(), id);
        Ok(id)
    }

    fn ensure_partition(&mut self, hour: i64) -> Result<()> {
        if self.parts.contains(&hour) {
            return Ok(());
        }
        let t = part_table(hour);
        self.conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {t}(pid INTEGER NOT NULL, trace_id BLOB NOT NULL, span_id BLOB,
                parent_id BLOB, service TEXT, name TEXT, kind INTEGER, start_ns INTEGER, dur_ns INTEGER,
                status INTEGER, status_message TEXT, http_status INTEGER, route TEXT, method TEXT,
                error INTEGER, entry INTEGER, attrs TEXT, events TEXT);
             CREATE INDEX IF NOT EXISTS {t}_trace ON {t}(trace_id);
             CREATE INDEX IF NOT EXISTS {t}_entry ON {t}(pid, entry, start_ns);
             CREATE INDEX IF NOT EXISTS {t}_svc ON {t}(pid, service, start_ns) WHERE entry > 0;
             INSERT OR IGNORE INTO partitions(hour, spans) VALUES ({hour}, 0);"
        ))?;
        self.parts.insert(hour);
        Ok(())
    }

    /// Writes several batches in one transaction. Each batch is its own savepoint, so one
    /// that fails (an unknown project …) does not sink the others; the result per batch.
    pub fn write(&mut self, batches: &[&Batch], counters: &Counters) -> Result<Vec<Result<()>>> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            self.conn.execute_batch("SAVEPOINT b")?;
            match self.write_one(b) {
                Ok(()) => {
                    self.conn.execute_batch("RELEASE b")?;
                    counters.received_spans.fetch_add(b.n_spans, Ordering::Relaxed);
                    counters.received_points.fetch_add(b.n_points, Ordering::Relaxed);
                    counters.received_logs.fetch_add(b.n_logs, Ordering::Relaxed);
                    counters
                        .dropped_out_of_window
                        .fetch_add(b.n_dropped, Ordering::Relaxed);
                    out.push(Ok(()));
                }
                Err(e) => {
                    self.conn.execute_batch("ROLLBACK TO b; RELEASE b")?;
                    out.push(Err(e));
                }
            }
        }
        counters.save(&self.conn)?;
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(out)
    }

    fn write_one(&mut self, b: &Batch) -> Result<()> {
        let pid = self.pid(&b.project)?;
        // spans, by partition: one statement per partition, not a cache lookup per span
        let hour_of = |s: &super::receive::SpanRow| (s.start_ns / 1_000_000).div_euclid(HOUR_MS);
        let hours: BTreeSet<i64> = b.spans.iter().map(hour_of).collect();
        for h in hours {
            self.ensure_partition(h)?;
        }
        let mut per_part: BTreeMap<i64, i64> = BTreeMap::new();
        let mut insert: Option<(i64, rusqlite::CachedStatement<'_>)> = None;
        for s in &b.spans {
            let hour = hour_of(s);
            let entry = if s.parent_id.is_empty() {
                2
            } else if s.kind == 2 || s.kind == 5 {
                1
            } else {
                0
            };
            let st = match &mut insert {
                Some((h, st)) if *h == hour => st,
                _ => {
                    // the previous statement goes back to the cache before the next is taken
                    insert = None;
                    let st = self.conn.prepare_cached(&format!(
                        "INSERT INTO {} VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
                        part_table(hour)
                    ))?;
                    &mut insert.insert((hour, st)).1
                }
            };
            st.execute(params![
                pid,
                s.trace_id,
                s.span_id,
                s.parent_id,
                s.service,
                s.name,
                s.kind,
                s.start_ns,
                s.dur_ns,
                s.status,
                s.status_message,
                s.http_status,
                s.route,
                s.method,
                s.error,
                entry,
                s.attrs,
                s.events
            ])?;
            *per_part.entry(hour).or_default() += 1;
        }
        drop(insert);
        for (hour, n) in per_part {
            self.conn
                .prepare_cached("UPDATE partitions SET spans = spans + ?1 WHERE hour = ?2")?
                .execute(params![n, hour])?;
        }
        // RED: merge into the stored bucket
        for (k, v) in &b.red {
            let existing: Option<(f64, Vec<u8>)> = self
                .conn
                .prepare_cached(
                    "SELECT count, hist FROM red WHERE pid=?1 AND service=?2 AND route=?3 AND method=?4
                     AND class=?5 AND bucket_ms=?6 AND source=?7",
                )?
                .query_row(
                    params![
                        pid,
                        k.service,
                        k.route,
                        k.method,
                        k.class,
                        k.bucket_ms,
                        k.source.to_string()
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (count, hist) = match existing {
                Some((c, h)) => {
                    let mut h = Hist::decode(&h);
                    h.merge(&v.hist);
                    (c + v.count, h)
                }
                None => (v.count, v.hist.clone()),
            };
            self.conn
                .prepare_cached("INSERT OR REPLACE INTO red VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)")?
                .execute(params![
                    pid,
                    k.service,
                    k.route,
                    k.method,
                    k.class,
                    k.bucket_ms,
                    k.source.to_string(),
                    count,
                    hist.encode()
                ])?;
        }
        for p in &b.runtime {
            self.conn
                .prepare_cached("INSERT OR REPLACE INTO runtime VALUES (?1,?2,?3,?4,?5,?6)")?
                .execute(params![
                    pid,
                    p.service,
                    p.name,
                    p.unit,
                    super::derive::bucket_of(p.ts_ms),
                    p.value
                ])?;
        }
        for s in b.services.values() {
            self.conn
                .prepare_cached(
                    "INSERT INTO services VALUES (?1,?2,?3,?4,?5,?6,?7,?8)
                     ON CONFLICT(pid, name) DO UPDATE SET
                       language = CASE WHEN excluded.language <> '' THEN excluded.language ELSE language END,
                       sdk = CASE WHEN excluded.sdk <> '' THEN excluded.sdk ELSE sdk END,
                       sdk_version = CASE WHEN excluded.sdk_version <> '' THEN excluded.sdk_version ELSE sdk_version END,
                       agent = CASE WHEN excluded.agent <> '' THEN excluded.agent ELSE agent END,
                       agent_version = CASE WHEN excluded.agent_version <> '' THEN excluded.agent_version ELSE agent_version END,
                       last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
                )?
                .execute(params![
                    pid,
                    s.name,
                    s.language,
                    s.sdk,
                    s.sdk_version,
                    s.agent,
                    s.agent_version,
                    s.last_seen_ms
                ])?;
        }
        // error groups
        let mut groups: BTreeMap<&str, Vec<&super::receive::ErrorEvent>> = BTreeMap::new();
        for e in &b.errors {
            groups.entry(e.fingerprint.as_str()).or_default().push(e);
        }
        for (id, evs) in groups {
            let row: Option<(i64, i64, i64, String, String, String)> = self
                .conn
                .prepare_cached(
                    "SELECT count, first_ms, last_ms, services, routes, traces FROM error_groups WHERE pid=?1 AND id=?2",
                )?
                .query_row(params![pid, id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })
                .optional()?;
            let (mut count, mut first, mut last, services, routes, traces) =
                row.unwrap_or((0, i64::MAX, i64::MIN, "[]".into(), "[]".into(), "[]".into()));
            let mut services: Vec<String> = serde_json::from_str(&services).unwrap_or_default();
            let mut routes: Vec<String> = serde_json::from_str(&routes).unwrap_or_default();
            let mut traces: Vec<String> = serde_json::from_str(&traces).unwrap_or_default();
            let latest = evs.iter().max_by_key(|e| e.ts_ms).copied();
            for e in &evs {
                count += 1;
                first = first.min(e.ts_ms);
                last = last.max(e.ts_ms);
                push_bounded(&mut services, &e.service, 20);
                if let Some(r) = &e.route {
                    push_bounded(&mut routes, r, 20);
                }
                if let Some(t) = &e.trace_id
                    && !traces.contains(t)
                {
                    traces.push(t.clone());
                    if traces.len() > 10 {
                        traces.remove(0);
                    }
                }
            }
            let Some(latest) = latest else { continue };
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO error_groups VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                )?
                .execute(params![
                    pid,
                    id,
                    latest.kind,
                    latest.message,
                    count,
                    first,
                    last,
                    serde_json::to_string(&services)?,
                    serde_json::to_string(&routes)?,
                    latest.stack,
                    serde_json::to_string(&traces)?
                ])?;
        }
        Ok(())
    }

    /// Retention: whole partitions older than the retention, then the oldest ones while the
    /// database is larger than the size cap (the newest partition is kept; if it alone is over
    /// the cap its oldest quarter is deleted). Derived rows older than what remains go too.
    /// Returns the spans dropped.
    pub fn enforce_retention(&mut self, counters: &Counters, now_ms: i64) -> Result<u64> {
        let mut dropped = 0u64;
        let cutoff = now_ms - self.retention_ms;
        let parts = partitions(&self.conn)?;
        let mut remaining: Vec<(i64, i64)> = Vec::new();
        for (h, n) in parts {
            if (h + 1) * HOUR_MS <= cutoff {
                self.drop_partition(h)?;
                dropped += n as u64;
            } else {
                remaining.push((h, n));
            }
        }
        let mut size = db_size(&self.conn)?;
        while size > self.max_size && remaining.len() > 1 {
            let (h, n) = remaining.remove(0);
            self.drop_partition(h)?;
            dropped += n as u64;
            size = db_size(&self.conn)?;
        }
        if size > self.max_size
            && let Some((h, _)) = remaining.first().copied()
        {
            {
                let t = part_table(h);
                let n: i64 = self
                    .conn
                    .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))?;
                let cut = (n / 4).max(1);
                let deleted = self.conn.execute(
                    &format!(
                        "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} ORDER BY rowid LIMIT ?1)"
                    ),
                    [cut],
                )?;
                self.conn.execute(
                    "UPDATE partitions SET spans = max(0, spans - ?1) WHERE hour = ?2",
                    params![deleted as i64, h],
                )?;
                dropped += deleted as u64;
            }
        }
        if size > self.max_size && remaining.len() <= 1 {
            // derived data alone over the cap (metrics, no spans): drop its oldest hour
            let oldest: Option<i64> = self
                .conn
                .query_row("SELECT min(bucket_ms) FROM red", [], |r| r.get(0))?;
            if let Some(o) = oldest {
                self.conn
                    .execute("DELETE FROM red WHERE bucket_ms < ?1", [o + HOUR_MS])?;
                self.conn
                    .execute("DELETE FROM runtime WHERE bucket_ms < ?1", [o + HOUR_MS])?;
            }
        }
        let oldest_kept = remaining
            .first()
            .map(|(h, _)| h * HOUR_MS)
            .unwrap_or(cutoff)
            .max(cutoff);
        let derived_cutoff = if size > self.max_size || dropped > 0 {
            oldest_kept
        } else {
            cutoff
        };
        self.conn
            .execute("DELETE FROM red WHERE bucket_ms < ?1", [derived_cutoff])?;
        self.conn
            .execute("DELETE FROM runtime WHERE bucket_ms < ?1", [derived_cutoff])?;
        self.conn
            .execute("DELETE FROM error_groups WHERE last_ms < ?1", [cutoff])?;
        if dropped > 0 {
            counters.dropped_retention.fetch_add(dropped, Ordering::Relaxed);
            counters.save(&self.conn)?;
        }
        self.conn.execute_batch("PRAGMA incremental_vacuum")?;
        Ok(dropped)
    }

    fn drop_partition(&mut self, hour: i64) -> Result<()> {
        let t = part_table(hour);
        self.conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; DROP TABLE IF EXISTS {t}; DELETE FROM partitions WHERE hour={hour}; COMMIT;"
        ))?;
        self.parts.remove(&hour);
        Ok(())
    }

    /// (project, service, route) of every stored RED row, to seed the cardinality caps.
    pub fn known_routes(&self) -> Result<Vec<(String, String, String)>> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT p.name, r.service, r.route FROM red r JOIN projects p ON p.id = r.pid",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn checkpoint(&self) {
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
    }
}

fn push_bounded(v: &mut Vec<String>, s: &str, cap: usize) {
    if !v.iter().any(|x| x == s) && v.len() < cap {
        v.push(s.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Queries (API side). Each takes a read connection and returns plain serialisable data.

#[derive(Debug, Serialize)]
pub struct ServiceRow {
    pub name: String,
    pub rps: f64,
    pub calls: f64,
    pub errors: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub last_seen: Option<i64>,
    pub language: String,
    pub sdk: String,
    pub sdk_version: String,
    pub agent: String,
    pub agent_version: String,
    pub source: Option<&'static str>,
}

struct RedRow {
    service: String,
    route: String,
    method: String,
    class: String,
    bucket_ms: i64,
    source: String,
    count: f64,
    hist: Hist,
}

fn red_rows(
    conn: &Connection,
    pid: i64,
    from: i64,
    to: i64,
    service: Option<&str>,
    route: Option<&str>,
) -> Result<Vec<RedRow>> {
    let mut st = conn.prepare_cached(
        "SELECT service, route, method, class, bucket_ms, source, count, hist FROM red
         WHERE pid=?1 AND bucket_ms >= ?2 AND bucket_ms < ?3
           AND (?4 IS NULL OR service = ?4) AND (?5 IS NULL OR route = ?5)",
    )?;
    let rows = st.query_map(
        params![pid, from - from.rem_euclid(10_000), to, service, route],
        |r| {
            Ok(RedRow {
                service: r.get(0)?,
                route: r.get(1)?,
                method: r.get(2)?,
                class: r.get(3)?,
                bucket_ms: r.get(4)?,
                source: r.get(5)?,
                count: r.get(6)?,
                hist: Hist::decode(&r.get::<_, Vec<u8>>(7)?),
            })
        },
    )?;
    let rows: Vec<RedRow> = rows.collect::<std::result::Result<_, _>>()?;
    // per service, metrics win over spans: agents' metrics count every request
    let with_metrics: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.source == "m")
        .map(|r| r.service.clone())
        .collect();
    Ok(rows
        .into_iter()
        .filter(|r| r.source == "m" || !with_metrics.contains(&r.service))
        .collect())
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn q(h: &Hist, p: f64) -> Option<f64> {
    h.quantile(p).map(round)
}

pub fn services(conn: &Connection, pid: i64, from: i64, to: i64) -> Result<Vec<ServiceRow>> {
    let secs = ((to - from) as f64 / 1000.0).max(1.0);
    let mut agg: BTreeMap<String, (f64, f64, Hist, &'static str)> = BTreeMap::new();
    for r in red_rows(conn, pid, from, to, None, None)? {
        let e = agg
            .entry(r.service.clone())
            .or_insert_with(|| (0.0, 0.0, Hist::default(), "spans"));
        e.0 += r.count;
        if r.class == "5xx" {
            e.1 += r.count;
        }
        e.2.merge(&r.hist);
        if r.source == "m" {
            e.3 = "metrics";
        }
    }
    let mut st = conn.prepare_cached(
        "SELECT name, language, sdk, sdk_version, agent, agent_version, last_seen_ms FROM services WHERE pid=?1 ORDER BY name",
    )?;
    let mut out = Vec::new();
    let rows = st.query_map([pid], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<i64>>(6)?,
        ))
    })?;
    let mut seen = BTreeSet::new();
    for row in rows {
        let (name, language, sdk, sdk_version, agent, agent_version, last_seen) = row?;
        let red = agg.remove(&name);
        if red.is_none() && last_seen.unwrap_or(0) < from {
            continue;
        }
        seen.insert(name.clone());
        let (calls, errors, hist, source) = red.unwrap_or((0.0, 0.0, Hist::default(), ""));
        out.push(ServiceRow {
            name,
            rps: round(calls / secs),
            calls: round(calls),
            errors: round(errors),
            error_rate: if calls > 0.0 { round(errors / calls) } else { 0.0 },
            p50_ms: q(&hist, 0.5),
            p95_ms: q(&hist, 0.95),
            p99_ms: q(&hist, 0.99),
            last_seen,
            language: language.unwrap_or_default(),
            sdk: sdk.unwrap_or_default(),
            sdk_version: sdk_version.unwrap_or_default(),
            agent: agent.unwrap_or_default(),
            agent_version: agent_version.unwrap_or_default(),
            source: (!source.is_empty()).then_some(source),
        });
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct RouteRow {
    pub route: String,
    pub method: String,
    pub calls: f64,
    pub errors: f64,
    pub rps: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub status_classes: BTreeMap<String, f64>,
}

/// calls, errors, merged histogram, calls per status class
type Agg = (f64, f64, Hist, BTreeMap<String, f64>);

pub fn routes(conn: &Connection, pid: i64, service: &str, from: i64, to: i64) -> Result<Vec<RouteRow>> {
    let secs = ((to - from) as f64 / 1000.0).max(1.0);
    let mut agg: BTreeMap<(String, String), Agg> = BTreeMap::new();
    for r in red_rows(conn, pid, from, to, Some(service), None)? {
        let e = agg.entry((r.route, r.method)).or_default();
        e.0 += r.count;
        if r.class == "5xx" {
            e.1 += r.count;
        }
        e.2.merge(&r.hist);
        *e.3.entry(r.class).or_default() += r.count;
    }
    let mut out: Vec<RouteRow> = agg
        .into_iter()
        .map(|((route, method), (calls, errors, hist, classes))| RouteRow {
            route,
            method,
            calls: round(calls),
            errors: round(errors),
            rps: round(calls / secs),
            p50_ms: q(&hist, 0.5),
            p95_ms: q(&hist, 0.95),
            p99_ms: q(&hist, 0.99),
            status_classes: classes.into_iter().map(|(k, v)| (k, round(v))).collect(),
        })
        .collect();
    out.sort_by(|a, b| b.calls.total_cmp(&a.calls));
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct SeriesPoint {
    pub ts: i64,
    pub calls: f64,
    pub errors: f64,
    pub by_class: BTreeMap<String, f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

pub fn series(
    conn: &Connection,
    pid: i64,
    service: &str,
    route: Option<&str>,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<SeriesPoint>> {
    let step = step.max(10_000) / 10_000 * 10_000;
    let mut agg: BTreeMap<i64, (f64, f64, Hist, BTreeMap<String, f64>)> = BTreeMap::new();
    for r in red_rows(conn, pid, from, to, Some(service), route)? {
        let ts = r.bucket_ms.div_euclid(step) * step;
        let e = agg.entry(ts).or_default();
        e.0 += r.count;
        if r.class == "5xx" {
            e.1 += r.count;
        }
        e.2.merge(&r.hist);
        *e.3.entry(r.class).or_default() += r.count;
    }
    Ok(agg
        .into_iter()
        .map(|(ts, (calls, errors, hist, by_class))| SeriesPoint {
            ts,
            calls: round(calls),
            errors: round(errors),
            by_class,
            p50_ms: q(&hist, 0.5),
            p95_ms: q(&hist, 0.95),
            p99_ms: q(&hist, 0.99),
        })
        .collect())
}

#[derive(Debug, Default)]
pub struct TraceFilter {
    pub service: Option<String>,
    pub route: Option<String>,
    pub status: Option<i64>,
    pub error: Option<bool>,
    pub min_duration_ms: Option<f64>,
    pub limit: usize,
}

#[derive(Debug, Serialize)]
pub struct TraceRow {
    pub trace_id: String,
    pub service: String,
    pub name: String,
    pub route: String,
    pub method: String,
    pub start_ms: f64,
    pub duration_ms: f64,
    pub span_count: i64,
    pub error: bool,
    pub http_status: i64,
}

fn hours_in(conn: &Connection, from: i64, to: i64) -> Result<Vec<i64>> {
    Ok(partitions(conn)?
        .into_iter()
        .map(|(h, _)| h)
        .filter(|h| (h + 1) * HOUR_MS > from && h * HOUR_MS <= to)
        .rev()
        .collect())
}

pub fn traces(conn: &Connection, pid: i64, from: i64, to: i64, f: &TraceFilter) -> Result<Vec<TraceRow>> {
    let mut out: Vec<TraceRow> = Vec::new();
    let limit = f.limit.clamp(1, 1000);
    let all_parts = partitions(conn)?;
    for h in hours_in(conn, from, to)? {
        let t = part_table(h);
        let (entry_cond, svc_cond) = if f.service.is_some() {
            ("entry > 0", "AND service = ?4")
        } else {
            ("entry = 2", "AND (?4 IS NULL)")
        };
        let sql = format!(
            "SELECT trace_id, service, name, route, method, start_ns, dur_ns, error, http_status FROM {t}
             WHERE pid = ?1 AND {entry_cond} AND start_ns >= ?2 AND start_ns < ?3 {svc_cond}
               AND (?5 IS NULL OR route = ?5) AND (?6 IS NULL OR http_status = ?6)
               AND (?7 IS NULL OR error = ?7) AND (?8 IS NULL OR dur_ns >= ?8)
             ORDER BY start_ns DESC LIMIT ?9"
        );
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![
                pid,
                from * 1_000_000,
                to * 1_000_000,
                f.service,
                f.route,
                f.status,
                f.error,
                f.min_duration_ms.map(|m| (m * 1e6) as i64),
                (limit - out.len()) as i64
            ],
            |r| {
                Ok(TraceRow {
                    trace_id: hex::encode(r.get::<_, Vec<u8>>(0)?),
                    service: r.get(1)?,
                    name: r.get(2)?,
                    route: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    method: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    start_ms: r.get::<_, i64>(5)? as f64 / 1e6,
                    duration_ms: r.get::<_, i64>(6)? as f64 / 1e6,
                    span_count: 0,
                    error: r.get(7)?,
                    http_status: r.get::<_, Option<i64>>(8)?.unwrap_or(0),
                })
            },
        )?;
        for r in rows {
            out.push(r?);
        }
        if out.len() >= limit {
            break;
        }
    }
    for row in &mut out {
        let id = hex::decode(&row.trace_id).unwrap_or_default();
        let h = (row.start_ms as i64).div_euclid(HOUR_MS);
        let mut n = 0i64;
        for (ph, _) in all_parts.iter().filter(|(ph, _)| *ph >= h - 1 && *ph <= h + 1) {
            n += conn
                .prepare_cached(&format!(
                    "SELECT count(*) FROM {} WHERE trace_id = ?1 AND +pid = ?2",
                    part_table(*ph)
                ))?
                .query_row(params![id, pid], |r| r.get::<_, i64>(0))?;
        }
        row.span_count = n;
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct SpanOut {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    pub start_unix_nano: String,
    pub end_unix_nano: String,
    pub start_ms: f64,
    pub duration_ms: f64,
    pub status: &'static str,
    pub status_message: String,
    pub http_status: i64,
    pub route: String,
    pub method: String,
    pub error: bool,
    pub attributes: serde_json::Value,
    pub events: serde_json::Value,
}

fn kind_name(k: i64) -> &'static str {
    match k {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

pub fn trace(conn: &Connection, pid: i64, trace_id: &[u8]) -> Result<Vec<SpanOut>> {
    let mut out = Vec::new();
    for (h, _) in partitions(conn)? {
        let mut st = conn.prepare_cached(&format!(
            "SELECT span_id, parent_id, service, name, kind, start_ns, dur_ns, status, status_message,
                    http_status, route, method, error, attrs, events
             FROM {} WHERE trace_id = ?1 AND +pid = ?2",
            part_table(h)
        ))?;
        let rows = st.query_map(params![trace_id, pid], |r| {
            let start: i64 = r.get(5)?;
            let dur: i64 = r.get(6)?;
            Ok(SpanOut {
                trace_id: hex::encode(trace_id),
                span_id: hex::encode(r.get::<_, Vec<u8>>(0)?),
                parent_span_id: hex::encode(r.get::<_, Vec<u8>>(1)?),
                service: r.get(2)?,
                name: r.get(3)?,
                kind: kind_name(r.get(4)?),
                start_unix_nano: start.to_string(),
                end_unix_nano: (start + dur).to_string(),
                start_ms: start as f64 / 1e6,
                duration_ms: dur as f64 / 1e6,
                status: match r.get::<_, i64>(7)? {
                    1 => "ok",
                    2 => "error",
                    _ => "unset",
                },
                status_message: r.get(8)?,
                http_status: r.get(9)?,
                route: r.get(10)?,
                method: r.get(11)?,
                error: r.get(12)?,
                attributes: serde_json::from_str(&r.get::<_, String>(13)?).unwrap_or_default(),
                events: serde_json::from_str(&r.get::<_, String>(14)?).unwrap_or_default(),
            })
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    out.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct ErrorGroup {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub services: Vec<String>,
    pub routes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_trace_ids: Option<Vec<String>>,
}

pub fn error_groups(
    conn: &Connection,
    pid: i64,
    service: Option<&str>,
    from: i64,
    id: Option<&str>,
) -> Result<Vec<ErrorGroup>> {
    let svc = service.map(|s| serde_json::to_string(s).unwrap_or_default());
    let mut st = conn.prepare_cached(
        "SELECT id, type, message, count, first_ms, last_ms, services, routes, stack, traces FROM error_groups
         WHERE pid = ?1 AND (?2 IS NULL OR last_ms >= ?2) AND (?3 IS NULL OR instr(services, ?3) > 0)
           AND (?4 IS NULL OR id = ?4)
         ORDER BY last_ms DESC LIMIT 200",
    )?;
    let detail = id.is_some();
    let rows = st.query_map(
        params![pid, if detail { None } else { Some(from) }, svc, id],
        |r| {
            Ok(ErrorGroup {
                id: r.get(0)?,
                kind: r.get(1)?,
                message: r.get(2)?,
                count: r.get(3)?,
                first_seen: r.get(4)?,
                last_seen: r.get(5)?,
                services: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                routes: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                stack_trace: if detail { r.get(8)? } else { None },
                sample_trace_ids: if detail {
                    serde_json::from_str(&r.get::<_, String>(9)?).ok()
                } else {
                    None
                },
            })
        },
    )?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

#[derive(Debug, Serialize)]
pub struct RuntimeSeries {
    pub service: String,
    pub name: String,
    pub unit: String,
    pub points: Vec<(i64, f64)>,
}

pub fn runtime(
    conn: &Connection,
    pid: i64,
    service: Option<&str>,
    from: i64,
    to: i64,
) -> Result<Vec<RuntimeSeries>> {
    let mut st = conn.prepare_cached(
        "SELECT service, name, unit, bucket_ms, value FROM runtime
         WHERE pid = ?1 AND (?2 IS NULL OR service = ?2) AND bucket_ms >= ?3 AND bucket_ms < ?4
         ORDER BY service, name, bucket_ms",
    )?;
    let rows = st.query_map(params![pid, service, from - from.rem_euclid(10_000), to], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, f64>(4)?,
        ))
    })?;
    let mut out: Vec<RuntimeSeries> = Vec::new();
    for row in rows {
        let (service, name, unit, ts, v) = row?;
        match out.last_mut() {
            Some(s) if s.service == service && s.name == name => s.points.push((ts, v)),
            _ => out.push(RuntimeSeries {
                service,
                name,
                unit,
                points: vec![(ts, v)],
            }),
        }
    }
    Ok(out)
}

/// The current RED totals per series for /metrics: (project, service, route, method, class,
/// calls, histogram) over all retained data.
pub type RedTotal = (String, String, String, String, String, f64, Hist);

pub fn red_totals(conn: &Connection, since_ms: i64) -> Result<Vec<RedTotal>> {
    let mut st = conn.prepare_cached(
        "SELECT p.name, r.service, r.route, r.method, r.class, r.source, r.count, r.hist
         FROM red r JOIN projects p ON p.id = r.pid WHERE r.bucket_ms >= ?1",
    )?;
    type Key = (String, String, String, String, String, String);
    let mut agg: BTreeMap<Key, (f64, Hist)> = BTreeMap::new();
    let rows = st.query_map([since_ms], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
            r.get::<_, f64>(6)?,
            r.get::<_, Vec<u8>>(7)?,
        ))
    })?;
    for row in rows {
        let (k, c, h) = row?;
        let e = agg.entry(k).or_default();
        e.0 += c;
        e.1.merge(&Hist::decode(&h));
    }
    let with_metrics: BTreeSet<(String, String)> = agg
        .keys()
        .filter(|k| k.5 == "m")
        .map(|k| (k.0.clone(), k.1.clone()))
        .collect();
    Ok(agg
        .into_iter()
        .filter(|(k, _)| k.5 == "m" || !with_metrics.contains(&(k.0.clone(), k.1.clone())))
        .map(|((p, s, r, m, c, _), (n, h))| (p, s, r, m, c, n, h))
        .collect())
}

/// Oldest stored span time (ms), if any.
pub fn oldest_ms(conn: &Connection) -> Result<Option<i64>> {
    let Some((h, _)) = partitions(conn)?.into_iter().next() else {
        return Ok(None);
    };
    // the first rows written to the oldest partition (a full scan would be slow at 1M spans)
    let v: Option<i64> = conn.query_row(
        &format!(
            "SELECT min(start_ns) FROM (SELECT start_ns FROM {} ORDER BY rowid LIMIT 1000)",
            part_table(h)
        ),
        [],
        |r| r.get(0),
    )?;
    Ok(v.map(|ns| ns / 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_is_found_through_the_trace_index_not_the_project_one() {
        // Without statistics SQLite preferred (pid, entry, start_ns) for `trace_id = ? AND
        // pid = ?` and scanned the whole partition (1.3 s at 1M spans); `+pid` prevents that.
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path()).unwrap();
        project_add(&conn, "p").unwrap();
        let mut w = Writer::new(conn, 86_400_000, 1 << 30).unwrap();
        w.ensure_partition(1).unwrap();
        for sql in [
            "SELECT count(*) FROM spans_1 WHERE trace_id = ?1 AND +pid = ?2",
            "SELECT span_id FROM spans_1 WHERE trace_id = ?1 AND +pid = ?2",
        ] {
            let plan: String = w
                .conn()
                .query_row(
                    &format!("EXPLAIN QUERY PLAN {sql}"),
                    params![vec![0u8; 16], 1],
                    |r| r.get(3),
                )
                .unwrap();
            assert!(plan.contains("spans_1_trace"), "{plan}");
        }
    }
}
