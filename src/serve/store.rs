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
//! Size cap and fair share. Every table is declared in [`TABLES`] with how it gives space
//! back ([`Trim`]); `Writer::new` refuses a database holding an undeclared table. What each
//! project holds is kept in `usage` (project × table × hour → rows, bytes), updated in the
//! same transaction as the rows it counts: each insert returns its row's size through
//! `RETURNING <size expression>`, each delete through the same expression, so the counters
//! cannot drift from the data and reading them is a few hundred rows, cheap every 10 s at any
//! database size (a scan of 1 GiB to learn who uses what would take seconds; partitioning
//! spans per project would multiply tables and still leave the derived tables shared). Over
//! the cap, the project using the most (the one most over its equal share) is trimmed in the
//! table where it uses most, oldest data first, and never much below the next largest, so a
//! small project is not touched while a larger one is over its share ([`plan_trim`]). Small
//! tables are bounded per project too: [`MAX_ERROR_GROUPS`] (least recently seen evicted) with
//! stacks of at most [`MAX_STACK`] bytes; services and series by the cardinality caps.
//!
//! Time. Every stored time is inside [`window`] (now − retention … now + [`FUTURE_SKEW_MS`]):
//! `receive` refuses or clamps outside it and the writer refuses what still is (counted as
//! out of window), so time arithmetic downstream cannot overflow.
//!
//! Files. The data directory is 0700 and its files 0600 ([`secure_dir`]). At start a 0-byte
//! or damaged database is refused ([`damage`]) unless `--reset` ([`reset`]); at runtime a
//! write failing because the store is broken is reported by [`Health`].
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

/// How far ahead of this clock a timestamp may be (clocks of other hosts, batching).
pub const FUTURE_SKEW_MS: i64 = 5 * 60_000;
/// The latest time (ms) anything works with: its nanoseconds still fit an i64 (year 2262).
pub const MAX_TIME_MS: i64 = i64::MAX / 1_000_000;
/// Error groups kept per project; past it the least recently seen are evicted.
pub const MAX_ERROR_GROUPS: i64 = 1000;
/// Bytes of a group's stack trace stored (its fingerprint was taken from the whole stack).
pub const MAX_STACK: usize = 8 * 1024;

/// The times ingest accepts, in ms: [now − retention, now + skew], saturating.
pub fn window(now_ms: i64, retention_ms: i64) -> (i64, i64) {
    (
        now_ms.saturating_sub(retention_ms).max(0),
        now_ms.saturating_add(FUTURE_SKEW_MS).min(MAX_TIME_MS),
    )
}

/// How a table gives space back: every table is declared here (`Writer::new` refuses a
/// database with an undeclared one, and a unit test checks the schema), so a new table
/// cannot grow outside the size cap unnoticed.
#[derive(Debug, Clone, Copy)]
pub enum Trim {
    /// Spans in hourly partitions: per project and hour, oldest rows first.
    Partitions,
    /// Rows keyed by a time column (ms): per project, oldest hour first; also by age.
    ByTime { column: &'static str },
    /// Rows evicted least recently seen first (`column`), per project; `key` identifies a row
    /// within a project; `expires`: also deleted once `column` is older than the retention.
    LeastRecent {
        column: &'static str,
        key: &'static str,
        expires: bool,
    },
    /// Not project data (keys, bookkeeping): small by construction, never trimmed.
    Fixed,
}

pub struct Table {
    pub name: &'static str,
    pub trim: Trim,
    /// SQL for the bytes a row takes (its values plus a fixed share for keys and indexes),
    /// the same expression when a row is counted in and when it is deleted.
    pub size: &'static str,
}

const SPAN_SIZE: &str = "(96 + 2 * octet_length(trace_id) + ifnull(octet_length(span_id), 0)
    + ifnull(octet_length(parent_id), 0) + 2 * ifnull(octet_length(service), 0)
    + ifnull(octet_length(name), 0) + ifnull(octet_length(status_message), 0)
    + ifnull(octet_length(route), 0) + ifnull(octet_length(method), 0)
    + ifnull(octet_length(attrs), 0) + ifnull(octet_length(events), 0))";
const RED_SIZE: &str = "(64 + octet_length(service) + octet_length(route) + octet_length(method)
    + octet_length(class) + octet_length(source) + octet_length(hist))";
const RUNTIME_SIZE: &str = "(56 + octet_length(service) + octet_length(name) + octet_length(unit))";
const ERROR_GROUP_SIZE: &str = "(64 + 2 * octet_length(id) + ifnull(octet_length(type), 0)
    + ifnull(octet_length(message), 0) + ifnull(octet_length(services), 0)
    + ifnull(octet_length(routes), 0) + ifnull(octet_length(stack), 0)
    + ifnull(octet_length(traces), 0))";
const SERVICE_SIZE: &str = "(32 + octet_length(name) + ifnull(octet_length(language), 0)
    + ifnull(octet_length(sdk), 0) + ifnull(octet_length(sdk_version), 0)
    + ifnull(octet_length(agent), 0) + ifnull(octet_length(agent_version), 0))";

pub const TABLES: &[Table] = &[
    Table {
        name: "spans",
        trim: Trim::Partitions,
        size: SPAN_SIZE,
    },
    Table {
        name: "red",
        trim: Trim::ByTime { column: "bucket_ms" },
        size: RED_SIZE,
    },
    Table {
        name: "runtime",
        trim: Trim::ByTime { column: "bucket_ms" },
        size: RUNTIME_SIZE,
    },
    Table {
        name: "error_groups",
        trim: Trim::LeastRecent {
            column: "last_ms",
            key: "id",
            expires: true,
        },
        size: ERROR_GROUP_SIZE,
    },
    Table {
        name: "services",
        trim: Trim::LeastRecent {
            column: "last_seen_ms",
            key: "name",
            expires: false,
        },
        size: SERVICE_SIZE,
    },
    Table {
        name: "projects",
        trim: Trim::Fixed,
        size: "0",
    },
    Table {
        name: "partitions",
        trim: Trim::Fixed,
        size: "0",
    },
    Table {
        name: "counters",
        trim: Trim::Fixed,
        size: "0",
    },
    Table {
        name: "usage",
        trim: Trim::Fixed,
        size: "0",
    },
];

fn table(name: &str) -> &'static Table {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .expect("a table of store::TABLES")
}

/// Tables in the database that `TABLES` does not declare (partitions count as `spans`).
pub fn undeclared_tables(conn: &Connection) -> Result<Vec<String>> {
    let mut st =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?;
    let names = st.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for n in names {
        let n = n?;
        let partition = n.strip_prefix("spans_").is_some_and(|h| h.parse::<i64>().is_ok());
        if !partition && !TABLES.iter().any(|t| t.name == n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Whether the store works, as the writer last found it: `/healthz` and `/api/v1/stats` say
/// it. Corruption stays reported until a restart (some writes may still succeed while others
/// fail on the damaged pages); a full disk or an I/O error clears with the next good commit.
#[derive(Debug, Default)]
pub struct Health {
    error: std::sync::Mutex<Option<(String, bool)>>,
}

impl Health {
    /// Records `e` when it says the store itself is broken (not, say, an unknown project).
    pub fn note(&self, e: &anyhow::Error) {
        let Some(sticky) = broken_store(e) else { return };
        if let Ok(mut g) = self.error.lock()
            && !g.as_ref().is_some_and(|(_, s)| *s)
        {
            *g = Some((format!("{e:#}"), sticky));
        }
    }

    /// A commit went through.
    pub fn ok(&self) {
        if let Ok(mut g) = self.error.lock()
            && g.as_ref().is_some_and(|(_, sticky)| !sticky)
        {
            *g = None;
        }
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().ok()?.as_ref().map(|(e, _)| e.clone())
    }

    pub fn json(&self) -> serde_json::Value {
        let e = self.error();
        serde_json::json!({"ok": e.is_none(), "error": e})
    }
}

/// Some(sticky) when an error means the database cannot be written: corrupt (sticky), or
/// full, read-only, failing I/O.
fn broken_store(e: &anyhow::Error) -> Option<bool> {
    use rusqlite::ErrorCode as C;
    e.chain()
        .find_map(|c| match c.downcast_ref::<rusqlite::Error>()? {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                C::DatabaseCorrupt | C::NotADatabase => Some(true),
                C::DiskFull | C::SystemIoFailure | C::ReadOnly | C::CannotOpen | C::PermissionDenied => {
                    Some(false)
                }
                _ => None,
            },
            _ => None,
        })
}

/// Makes the data directory owner-only (0700) and every file in it owner-only (0600): the
/// database holds every ingest key and `token` the API's. The umask (process-wide, this
/// process only ever writes private files) covers what SQLite creates later (-wal, -shm).
pub fn secure_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        unsafe {
            libc::umask(0o077);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        // a file we cannot change (a read-only mount of redaction.yaml, another owner) is
        // reported, not fatal: refusing to start would not make it private either
        let fix = |p: &Path, mode: u32| {
            let r = std::fs::metadata(p).and_then(|m| {
                if m.permissions().mode() & 0o777 != mode {
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
                }
                Ok(())
            });
            if let Err(e) = r {
                eprintln!(
                    "warning: cannot make {} private (mode {mode:o}): {e}",
                    p.display()
                );
            }
        };
        fix(dir, 0o700);
        for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let e = e?;
            if e.file_type()?.is_file() {
                fix(&e.path(), 0o600);
            }
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(())
}

/// Whether `serve.db` exists with 0 bytes (SQLite would take it for a new database).
pub fn empty_db(dir: &Path) -> bool {
    std::fs::metadata(db_path(dir)).is_ok_and(|m| m.len() == 0)
}

/// What is wrong with an existing database before serving from it, if anything: a 0-byte
/// file (every project and ingest key gone), or damage `PRAGMA quick_check` finds. The check
/// stops after `budget` (it reads every page: ~N s per GiB, see docs/serve.md), and what it
/// did not reach is left to the runtime health check.
pub fn damage(dir: &Path, budget: std::time::Duration) -> Result<Option<String>> {
    let path = db_path(dir);
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if empty_db(dir) {
        return Ok(Some(format!(
            "{} is empty (0 bytes): every project and its ingest key are gone",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // a watchdog interrupts the check once over budget
    let interrupt = conn.get_interrupt_handle();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(budget) {
            interrupt.interrupt();
        }
    });
    let r: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check(20)")
        .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect());
    drop(done);
    let _ = watchdog.join();
    match r {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(None),
        Ok(lines) => Ok(Some(format!(
            "{} is corrupt (quick_check: {})",
            path.display(),
            lines.join("; ")
        ))),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            Ok(Some(format!(
                "{} is corrupt or not a database ({f})",
                path.display()
            )))
        }
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::OperationInterrupted => {
            eprintln!(
                "obs-stack serve: the integrity check of {} stopped after {} s ({} MiB); the rest is checked as it is used",
                path.display(),
                budget.as_secs(),
                len >> 20
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot check {}", path.display())),
    }
}

/// `serve --reset` on a damaged database: moves it (and its -wal, -shm) aside as
/// `serve.db.broken-<unix ms>` and makes a new one, with the projects and their ingest keys
/// copied over when the old one still yields them (agents keep sending then). Returns the
/// path it was moved to and how many projects were kept.
pub fn reset(dir: &Path) -> Result<(PathBuf, usize)> {
    let path = db_path(dir);
    let salvaged: Vec<(String, String, i64)> =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.prepare("SELECT name, ingest_key, created_ms FROM projects")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .unwrap_or_default();
    let aside = dir.join(format!("{DB_FILE}.broken-{}", now_ms()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
    }
    let conn = open(dir)?;
    for (name, key, created) in &salvaged {
        conn.execute(
            "INSERT OR IGNORE INTO projects(name, ingest_key, created_ms) VALUES (?1, ?2, ?3)",
            params![name, key, created],
        )?;
    }
    Ok((aside, salvaged.len()))
}

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
    pub evicted_error_groups: AtomicU64,
    pub requests: AtomicU64,
    /// API calls answered 503: no share of the query memory within the wait
    pub api_busy: AtomicU64,
}

impl Counters {
    fn fields(&self) -> [(&'static str, &AtomicU64); 13] {
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
            ("evicted_error_groups", &self.evicted_error_groups),
            ("requests", &self.requests),
            ("api_busy", &self.api_busy),
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
    secure_dir(dir)?;
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
         CREATE INDEX IF NOT EXISTS error_groups_last ON error_groups(pid, last_ms);
         CREATE TABLE IF NOT EXISTS usage(pid INTEGER NOT NULL, tbl TEXT NOT NULL, hour INTEGER NOT NULL,
            rows INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY(pid, tbl, hour)) WITHOUT ROWID;",
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
    let key = format!("{}{}", super::auth::KEY_PREFIX, random_hex(24)?);
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

/// The API token, made at first start into `<dir>/token` (mode 0600). A file that holds no
/// valid token (emptied, truncated, edited to something short) is replaced by a new token and
/// the replacement is said on stderr: an empty token once let `?token=` in.
pub fn token(dir: &Path) -> Result<String> {
    let path = dir.join(TOKEN_FILE);
    let replace = match std::fs::read_to_string(&path) {
        Ok(t) if super::auth::token_ok(t.trim()) => return Ok(t.trim().to_string()),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => true,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let t = random_hex(super::auth::TOKEN_LEN / 2)?;
    let tmp = dir.join(format!(".token.{}.tmp", std::process::id()));
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
    if replace {
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
        eprintln!(
            "warning: {} held no valid access token (empty or shorter than {} characters); a new one was made: old UI links and sessions no longer work",
            path.display(),
            super::auth::TOKEN_LEN
        );
        return Ok(t);
    }
    // another process may have won the race: keep whichever landed first
    if std::fs::hard_link(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        let won = std::fs::read_to_string(&path)?.trim().to_string();
        anyhow::ensure!(
            super::auth::token_ok(&won),
            "{} holds no valid access token",
            path.display()
        );
        return Ok(won);
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

/// Usage changes of one write, summed per (table, hour) before they reach `usage`.
type UsageDelta = BTreeMap<(&'static str, i64), (i64, i64)>;

fn add_delta(d: &mut UsageDelta, tbl: &'static str, hour: i64, rows: i64, bytes: i64) {
    let e = d.entry((tbl, hour)).or_default();
    e.0 += rows;
    e.1 += bytes;
}

fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS)
}

impl Writer {
    pub fn new(conn: Connection, retention_ms: i64, max_size: i64) -> Result<Writer> {
        if let Some(t) = undeclared_tables(&conn)?.first() {
            anyhow::bail!("table {t} declares no trim policy (store::TABLES)");
        }
        let parts = partitions(&conn)?.into_iter().map(|(h, _)| h).collect();
        let w = Writer {
            conn,
            parts,
            pids: HashMap::new(),
            retention_ms,
            max_size,
        };
        w.rebuild_usage_if_missing()?;
        Ok(w)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A database written before `usage` existed: count once what every project holds (a
    /// full scan, seconds at 1 GiB; afterwards the counters are kept in each write).
    fn rebuild_usage_if_missing(&self) -> Result<()> {
        let empty: bool = self
            .conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM usage)", [], |r| r.get(0))?;
        if !empty {
            return Ok(());
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let r = (|| -> Result<()> {
            for t in TABLES {
                let (name, size) = (t.name, t.size);
                let sql = match t.trim {
                    Trim::Partitions => {
                        for h in &self.parts {
                            self.conn.execute(
                                &format!(
                                    "INSERT INTO usage SELECT pid, '{name}', {h}, count(*), sum({size})
                                     FROM {} GROUP BY pid",
                                    part_table(*h)
                                ),
                                [],
                            )?;
                        }
                        continue;
                    }
                    Trim::ByTime { column } => format!(
                        "INSERT INTO usage SELECT pid, '{name}',
                           {column} / {HOUR_MS} - ({column} < 0 AND {column} % {HOUR_MS} <> 0) AS h,
                           count(*), sum({size}) FROM {name} GROUP BY pid, h"
                    ),
                    Trim::LeastRecent { .. } => format!(
                        "INSERT INTO usage SELECT pid, '{name}', 0, count(*), sum({size}) FROM {name} GROUP BY pid"
                    ),
                    Trim::Fixed => continue,
                };
                self.conn.execute(&sql, [])?;
            }
            Ok(())
        })();
        self.finish(r)
    }

    /// Commits after `r` succeeded, rolls back otherwise.
    fn finish<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Ok(v) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
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
        let now = now_ms();
        for b in batches {
            self.conn.execute_batch("SAVEPOINT b")?;
            match self.write_one(b, now) {
                Ok((late, evicted)) => {
                    self.conn.execute_batch("RELEASE b")?;
                    counters.received_spans.fetch_add(b.n_spans, Ordering::Relaxed);
                    counters.received_points.fetch_add(b.n_points, Ordering::Relaxed);
                    counters.received_logs.fetch_add(b.n_logs, Ordering::Relaxed);
                    counters
                        .dropped_out_of_window
                        .fetch_add(b.n_dropped + late, Ordering::Relaxed);
                    counters
                        .evicted_error_groups
                        .fetch_add(evicted, Ordering::Relaxed);
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

    /// One batch; returns the rows refused here for their time (a batch not made by
    /// `receive`, e.g. `/api/v1/checks`, or a clock that moved) and the error groups evicted.
    fn write_one(&mut self, b: &Batch, now: i64) -> Result<(u64, u64)> {
        let pid = self.pid(&b.project)?;
        let (lo, hi) = window(now, self.retention_ms);
        let in_window = |ms: i64| ms >= lo && ms <= hi;
        let mut late = 0u64;
        let mut usage = UsageDelta::new();
        // spans, by partition
        let mut per_part: BTreeMap<i64, i64> = BTreeMap::new();
        for s in &b.spans {
            let start_ms = s.start_ns.div_euclid(1_000_000);
            let end_ms = s.start_ns.saturating_add(s.dur_ns.max(0)).div_euclid(1_000_000);
            if !in_window(start_ms) || !in_window(end_ms) {
                late += 1;
                continue;
            }
            let hour = hour_of(start_ms);
            self.ensure_partition(hour)?;
            let entry = if s.parent_id.is_empty() {
                2
            } else if s.kind == 2 || s.kind == 5 {
                1
            } else {
                0
            };
            let mut st = self.conn.prepare_cached(&format!(
                "INSERT INTO {} VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)
                 RETURNING {SPAN_SIZE}",
                part_table(hour)
            ))?;
            let bytes: i64 = st.query_row(
                params![
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
                ],
                |r| r.get(0),
            )?;
            add_delta(&mut usage, "spans", hour, 1, bytes);
            *per_part.entry(hour).or_default() += 1;
        }
        for (hour, n) in per_part {
            self.conn
                .prepare_cached("UPDATE partitions SET spans = spans + ?1 WHERE hour = ?2")?
                .execute(params![n, hour])?;
        }
        // RED: merge into the stored bucket
        for (k, v) in &b.red {
            if !in_window(k.bucket_ms) && !in_window(k.bucket_ms.saturating_add(super::derive::BUCKET_MS)) {
                late += 1;
                continue;
            }
            let existing: Option<(f64, Vec<u8>, i64)> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT count, hist, {RED_SIZE} FROM red WHERE pid=?1 AND service=?2 AND route=?3
                     AND method=?4 AND class=?5 AND bucket_ms=?6 AND source=?7"
                ))?
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
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (count, hist, old) = match existing {
                Some((c, h, old)) => {
                    let mut h = Hist::decode(&h);
                    h.merge(&v.hist);
                    (c + v.count, h, Some(old))
                }
                None => (v.count, v.hist.clone(), None),
            };
            let new: i64 = self
                .conn
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO red VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) RETURNING {RED_SIZE}"
                ))?
                .query_row(
                    params![
                        pid,
                        k.service,
                        k.route,
                        k.method,
                        k.class,
                        k.bucket_ms,
                        k.source.to_string(),
                        count,
                        hist.encode()
                    ],
                    |r| r.get(0),
                )?;
            add_delta(
                &mut usage,
                "red",
                hour_of(k.bucket_ms),
                old.is_none() as i64,
                new - old.unwrap_or(0),
            );
        }
        for p in &b.runtime {
            if !in_window(p.ts_ms) {
                late += 1;
                continue;
            }
            let bucket = super::derive::bucket_of(p.ts_ms);
            let inserted: Option<i64> = self
                .conn
                .prepare_cached(&format!(
                    "INSERT INTO runtime VALUES (?1,?2,?3,?4,?5,?6)
                     ON CONFLICT(pid, service, name, bucket_ms) DO NOTHING RETURNING {RUNTIME_SIZE}"
                ))?
                .query_row(params![pid, p.service, p.name, p.unit, bucket, p.value], |r| {
                    r.get(0)
                })
                .optional()?;
            match inserted {
                Some(bytes) => add_delta(&mut usage, "runtime", hour_of(bucket), 1, bytes),
                None => {
                    self.conn
                        .prepare_cached(
                            "UPDATE runtime SET value=?5 WHERE pid=?1 AND service=?2 AND name=?3 AND bucket_ms=?4",
                        )?
                        .execute(params![pid, p.service, p.name, bucket, p.value])?;
                }
            }
        }
        for s in b.services.values() {
            let old: Option<i64> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT {SERVICE_SIZE} FROM services WHERE pid=?1 AND name=?2"
                ))?
                .query_row(params![pid, s.name], |r| r.get(0))
                .optional()?;
            let new: i64 = self
                .conn
                .prepare_cached(&format!(
                    "INSERT INTO services VALUES (?1,?2,?3,?4,?5,?6,?7,?8)
                     ON CONFLICT(pid, name) DO UPDATE SET
                       language = CASE WHEN excluded.language <> '' THEN excluded.language ELSE language END,
                       sdk = CASE WHEN excluded.sdk <> '' THEN excluded.sdk ELSE sdk END,
                       sdk_version = CASE WHEN excluded.sdk_version <> '' THEN excluded.sdk_version ELSE sdk_version END,
                       agent = CASE WHEN excluded.agent <> '' THEN excluded.agent ELSE agent END,
                       agent_version = CASE WHEN excluded.agent_version <> '' THEN excluded.agent_version ELSE agent_version END,
                       last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)
                     RETURNING {SERVICE_SIZE}"
                ))?
                .query_row(
                    params![
                        pid,
                        s.name,
                        s.language,
                        s.sdk,
                        s.sdk_version,
                        s.agent,
                        s.agent_version,
                        // a check's own ts_ms, or a clock ahead: never "seen" in the future
                        s.last_seen_ms.clamp(0, hi)
                    ],
                    |r| r.get(0),
                )?;
            add_delta(
                &mut usage,
                "services",
                0,
                old.is_none() as i64,
                new - old.unwrap_or(0),
            );
        }
        // error groups
        let mut groups: BTreeMap<&str, Vec<&super::receive::ErrorEvent>> = BTreeMap::new();
        for e in &b.errors {
            if !in_window(e.ts_ms) {
                late += 1;
                continue;
            }
            groups.entry(e.fingerprint.as_str()).or_default().push(e);
        }
        let mut new_groups = false;
        for (id, evs) in groups {
            type Row = (i64, i64, i64, String, String, String, i64);
            let row: Option<Row> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT count, first_ms, last_ms, services, routes, traces, {ERROR_GROUP_SIZE}
                     FROM error_groups WHERE pid=?1 AND id=?2"
                ))?
                .query_row(params![pid, id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })
                .optional()?;
            let old = row.as_ref().map(|r| r.6);
            let (mut count, mut first, mut last, services, routes, traces, _) =
                row.unwrap_or((0, i64::MAX, i64::MIN, "[]".into(), "[]".into(), "[]".into(), 0));
            let mut services: Vec<String> = serde_json::from_str(&services).unwrap_or_default();
            let mut routes: Vec<String> = serde_json::from_str(&routes).unwrap_or_default();
            let mut traces: Vec<String> = serde_json::from_str(&traces).unwrap_or_default();
            let latest = evs.iter().max_by_key(|e| e.ts_ms).copied();
            for e in &evs {
                count = count.saturating_add(1);
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
            let new: i64 = self
                .conn
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO error_groups VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)
                     RETURNING {ERROR_GROUP_SIZE}"
                ))?
                .query_row(
                    params![
                        pid,
                        id,
                        latest.kind,
                        latest.message,
                        count,
                        first,
                        last,
                        serde_json::to_string(&services)?,
                        serde_json::to_string(&routes)?,
                        clip_str(&latest.stack, MAX_STACK),
                        serde_json::to_string(&traces)?
                    ],
                    |r| r.get(0),
                )?;
            new_groups |= old.is_none();
            add_delta(
                &mut usage,
                "error_groups",
                0,
                old.is_none() as i64,
                new - old.unwrap_or(0),
            );
        }
        for ((tbl, hour), (rows, bytes)) in usage {
            self.add_usage(pid, tbl, hour, rows, bytes)?;
        }
        let mut evicted = 0;
        if new_groups {
            let n: i64 = self
                .conn
                .prepare_cached("SELECT rows FROM usage WHERE pid=?1 AND tbl='error_groups' AND hour=0")?
                .query_row([pid], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            if n > MAX_ERROR_GROUPS {
                let (rows, _) = self.trim_least_recent(table("error_groups"), pid, n - MAX_ERROR_GROUPS)?;
                evicted = rows as u64;
            }
        }
        Ok((late, evicted))
    }

    /// Adds to (or, negative, takes from) what `pid` holds in `tbl` for `hour`.
    fn add_usage(&self, pid: i64, tbl: &str, hour: i64, rows: i64, bytes: i64) -> Result<()> {
        if rows == 0 && bytes == 0 {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "INSERT INTO usage(pid, tbl, hour, rows, bytes) VALUES (?1,?2,?3,?4,?5)
                 ON CONFLICT(pid, tbl, hour) DO UPDATE SET rows = rows + excluded.rows,
                   bytes = bytes + excluded.bytes",
            )?
            .execute(params![pid, tbl, hour, rows, bytes])?;
        if rows < 0 {
            self.conn
                .prepare_cached("DELETE FROM usage WHERE pid=?1 AND tbl=?2 AND hour=?3 AND rows <= 0")?
                .execute(params![pid, tbl, hour])?;
        }
        Ok(())
    }

    /// Bytes each project holds, per table (from `usage`: a few hundred rows, not a scan).
    pub fn usage(&self) -> Result<Usage> {
        let mut st = self
            .conn
            .prepare_cached("SELECT pid, tbl, sum(bytes) FROM usage GROUP BY pid, tbl")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?;
        let mut out = Usage::new();
        for row in rows {
            let (pid, tbl, bytes) = row?;
            if let Some(t) = TABLES.iter().find(|t| t.name == tbl) {
                *out.entry(pid).or_default().entry(t.name).or_default() += bytes;
            }
        }
        Ok(out)
    }

    /// Retention. By age: whole partitions older than the retention, derived rows older than
    /// it. By size, while the database is over the cap (down to 90 % of it, so that the next
    /// commits do not trim again at once): the project using the most is trimmed in the table
    /// where it uses most, oldest data first ([`plan_trim`]). Returns the spans dropped.
    pub fn enforce_retention(&mut self, counters: &Counters, now_ms: i64) -> Result<u64> {
        let mut dropped = 0u64;
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        for (h, n) in partitions(&self.conn)? {
            if h.saturating_add(1).saturating_mul(HOUR_MS) <= cutoff {
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let r = self.drop_partition(h);
                self.finish(r)?;
                dropped += n.max(0) as u64;
            }
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let r = self.expire(cutoff);
        self.finish(r)?;
        let mut size = db_size(&self.conn)?;
        let over = size > self.max_size;
        if over {
            let low = self.max_size - self.max_size / 10;
            let mut skip = BTreeSet::new();
            for _ in 0..256 {
                if size <= low {
                    break;
                }
                let usage = self.usage()?;
                let est: i64 = usage.values().flat_map(|t| t.values()).sum();
                // usage counts row bytes; the file also holds b-tree overhead
                let need = ((size - low) as i128 * est.max(1) as i128 / size.max(1) as i128) as i64;
                let Some((pid, tbl, amount)) = plan_trim(&usage, need, &skip) else {
                    break;
                };
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let r = self.trim(table(tbl), pid, amount);
                let (rows, spans) = self.finish(r)?;
                if rows == 0 {
                    skip.insert((pid, tbl));
                }
                dropped += spans;
                size = db_size(&self.conn)?;
            }
        }
        if dropped > 0 {
            counters.dropped_retention.fetch_add(dropped, Ordering::Relaxed);
            counters.save(&self.conn)?;
        }
        self.conn.execute_batch("PRAGMA incremental_vacuum")?;
        if over {
            // in WAL mode the file shrinks when the checkpoint reaches the vacuum
            self.checkpoint();
        }
        Ok(dropped)
    }

    /// Derived rows older than `cutoff`, with their usage.
    fn expire(&mut self, cutoff: i64) -> Result<()> {
        for t in TABLES {
            let (column, hourly) = match t.trim {
                Trim::ByTime { column } => (column, true),
                Trim::LeastRecent {
                    column,
                    expires: true,
                    ..
                } => (column, false),
                _ => continue,
            };
            let mut gone: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
            let mut st = self.conn.prepare_cached(&format!(
                "DELETE FROM {} WHERE {column} < ?1 RETURNING pid, {column}, {}",
                t.name, t.size
            ))?;
            let rows = st.query_map([cutoff], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })?;
            for row in rows {
                let (pid, ts, bytes) = row?;
                let e = gone
                    .entry((pid, if hourly { hour_of(ts) } else { 0 }))
                    .or_default();
                e.0 += 1;
                e.1 += bytes;
            }
            drop(st);
            for ((pid, hour), (n, bytes)) in gone {
                self.add_usage(pid, t.name, hour, -n, -bytes)?;
            }
        }
        Ok(())
    }

    /// Deletes about `amount` bytes of `pid`'s oldest data in `t`; a project's newest quarter
    /// in a table is never taken in one step. Returns (rows deleted, of which spans).
    fn trim(&mut self, t: &'static Table, pid: i64, amount: i64) -> Result<(i64, u64)> {
        if let Trim::LeastRecent { .. } = t.trim {
            let (rows, bytes): (i64, i64) = self
                .conn
                .query_row(
                    "SELECT rows, bytes FROM usage WHERE pid=?1 AND tbl=?2 AND hour=0",
                    params![pid, t.name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .unwrap_or((0, 0));
            let most = rows - rows / 4 - 1;
            if most < 1 {
                return Ok((0, 0));
            }
            let n = (amount as i128 * rows as i128 / bytes.max(1) as i128) as i64;
            let n = n.clamp(1, most);
            return Ok((self.trim_least_recent(t, pid, n)?.0, 0));
        }
        let mut st = self
            .conn
            .prepare_cached("SELECT hour, rows, bytes FROM usage WHERE pid=?1 AND tbl=?2 ORDER BY hour")?;
        let hours: Vec<(i64, i64, i64)> = st
            .query_map(params![pid, t.name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<std::result::Result<_, _>>()?;
        drop(st);
        let Some(&(hour, rows, bytes)) = hours.first() else {
            return Ok((0, 0));
        };
        let whole = bytes <= amount && hours.len() > 1;
        let n = if whole {
            rows
        } else {
            let n = (amount as i128 * rows as i128 / bytes.max(1) as i128) as i64;
            let keep = if hours.len() > 1 { 0 } else { rows / 4 + 1 };
            n.clamp(1, rows).min(rows - keep)
        };
        if n <= 0 {
            return Ok((0, 0));
        }
        match t.trim {
            Trim::Partitions => {
                let tbl = part_table(hour);
                let (deleted, freed) = if whole {
                    self.conn
                        .execute(&format!("DELETE FROM {tbl} WHERE pid = ?1"), [pid])?;
                    (rows, bytes)
                } else {
                    // rowid order is arrival order: the oldest first
                    let mut st = self.conn.prepare(&format!(
                        "DELETE FROM {tbl} WHERE rowid IN
                           (SELECT rowid FROM {tbl} WHERE +pid = ?1 ORDER BY rowid LIMIT ?2)
                         RETURNING {}",
                        t.size
                    ))?;
                    sum_rows(st.query_map(params![pid, n], |r| r.get::<_, i64>(0))?)?
                };
                self.add_usage(pid, t.name, hour, -deleted, -freed)?;
                self.conn.execute(
                    "UPDATE partitions SET spans = max(0, spans - ?1) WHERE hour = ?2",
                    params![deleted, hour],
                )?;
                let left: bool = self.conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM usage WHERE tbl = ?1 AND hour = ?2)",
                    params![t.name, hour],
                    |r| r.get(0),
                )?;
                if !left {
                    self.drop_partition(hour)?;
                }
                Ok((deleted, deleted.max(0) as u64))
            }
            Trim::ByTime { column } => {
                let (from, end) = (hour * HOUR_MS, (hour + 1) * HOUR_MS);
                let cut = if whole {
                    end
                } else {
                    // the bucket time below which about n rows lie
                    let c: Option<i64> = self
                        .conn
                        .query_row(
                            &format!(
                                "SELECT {column} FROM {} WHERE pid = ?1 AND {column} >= ?2 AND {column} < ?3
                                 ORDER BY {column} LIMIT 1 OFFSET ?4",
                                t.name
                            ),
                            params![pid, from, end, n],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match c {
                        Some(c) if c > from => c,
                        Some(c) => c + 1,
                        None => end,
                    }
                };
                let mut st = self.conn.prepare(&format!(
                    "DELETE FROM {} WHERE pid = ?1 AND {column} >= ?2 AND {column} < ?3 RETURNING {}",
                    t.name, t.size
                ))?;
                let (deleted, freed) =
                    sum_rows(st.query_map(params![pid, from, cut], |r| r.get::<_, i64>(0))?)?;
                drop(st);
                self.add_usage(pid, t.name, hour, -deleted, -freed)?;
                Ok((deleted, 0))
            }
            Trim::LeastRecent { .. } | Trim::Fixed => Ok((0, 0)),
        }
    }

    /// Deletes the `n` least recently seen rows of `pid` in `t`; returns (rows, bytes).
    fn trim_least_recent(&mut self, t: &'static Table, pid: i64, n: i64) -> Result<(i64, i64)> {
        let Trim::LeastRecent { column, key, .. } = t.trim else {
            return Ok((0, 0));
        };
        let mut st = self.conn.prepare_cached(&format!(
            "DELETE FROM {0} WHERE pid = ?1 AND {key} IN
               (SELECT {key} FROM {0} WHERE pid = ?1 ORDER BY {column} LIMIT ?2)
             RETURNING {1}",
            t.name, t.size
        ))?;
        let (rows, bytes) = sum_rows(st.query_map(params![pid, n], |r| r.get::<_, i64>(0))?)?;
        drop(st);
        self.add_usage(pid, t.name, 0, -rows, -bytes)?;
        Ok((rows, bytes))
    }

    /// Drops a partition with its usage; the caller holds the transaction.
    fn drop_partition(&mut self, hour: i64) -> Result<()> {
        let t = part_table(hour);
        self.conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {t}; DELETE FROM partitions WHERE hour={hour};
             DELETE FROM usage WHERE tbl='spans' AND hour={hour};"
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

fn sum_rows(rows: impl Iterator<Item = rusqlite::Result<i64>>) -> Result<(i64, i64)> {
    let (mut n, mut bytes) = (0i64, 0i64);
    for r in rows {
        n += 1;
        bytes += r?;
    }
    Ok((n, bytes))
}

fn clip_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Bytes per project (pid) per table.
pub type Usage = BTreeMap<i64, BTreeMap<&'static str, i64>>;

/// What to trim next when over the size cap: the project using the most bytes (with equal
/// shares, the one most over its fair share of the cap), in the table where it uses most (not
/// one in `skip`, found empty of trimmable data this pass), by about `need` bytes — but not
/// much below the next largest project, so the largest are levelled down together and a
/// smaller project is never trimmed while a larger one is over its share.
pub fn plan_trim(
    usage: &Usage,
    need: i64,
    skip: &BTreeSet<(i64, &'static str)>,
) -> Option<(i64, &'static str, i64)> {
    const MIN_CHUNK: i64 = 64 << 10;
    let mut totals: Vec<(i64, i64)> = usage
        .iter()
        .map(|(pid, t)| (*pid, t.values().sum::<i64>()))
        .collect();
    totals.sort_by_key(|(pid, total)| (std::cmp::Reverse(*total), *pid));
    for (i, (pid, total)) in totals.iter().enumerate() {
        let Some((tbl, _)) = usage[pid]
            .iter()
            .filter(|(t, b)| **b > 0 && !skip.contains(&(*pid, **t)))
            .max_by_key(|(t, b)| (**b, std::cmp::Reverse(**t)))
        else {
            continue;
        };
        let next = totals.get(i + 1).map(|x| x.1).unwrap_or(0);
        let amount = need.min((total - next).max(total / 8)).max(MIN_CHUNK);
        return Some((*pid, tbl, amount));
    }
    None
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

/// Calls `f` with every RED row of the range, one at a time: an answer's memory is its
/// aggregate (bounded by the cardinality caps), never the rows of the range (a day of 10 s
/// buckets for 200 routes is millions). Per service, metrics win over spans: agents' metrics
/// count every request.
fn fold_red(
    conn: &Connection,
    pid: i64,
    from: i64,
    to: i64,
    service: Option<&str>,
    route: Option<&str>,
    mut f: impl FnMut(RedRow),
) -> Result<()> {
    let from = from.saturating_sub(from.rem_euclid(10_000));
    let mut sources: BTreeMap<String, RedSources> = BTreeMap::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT service, source, max(route = ?5) FROM red WHERE pid=?1 AND bucket_ms >= ?2
               AND bucket_ms < ?3 AND (?4 IS NULL OR service = ?4) GROUP BY service, source",
        )?;
        let mut rows = st.query(params![pid, from, to, service, super::derive::NO_ROUTE])?;
        while let Some(r) = rows.next()? {
            let e = sources.entry(r.get(0)?).or_default();
            match r.get::<_, String>(1)?.as_str() {
                "m" => {
                    e.metrics = true;
                    e.metrics_no_route |= r.get::<_, bool>(2)?;
                }
                "u" => e.unrouted_spans = true,
                _ => {}
            }
        }
    }
    let mut st = conn.prepare_cached(
        "SELECT service, route, method, class, bucket_ms, source, count, hist FROM red
         WHERE pid=?1 AND bucket_ms >= ?2 AND bucket_ms < ?3
           AND (?4 IS NULL OR service = ?4) AND (?5 IS NULL OR route = ?5)",
    )?;
    let mut rows = st.query(params![pid, from, to, service, route])?;
    while let Some(r) = rows.next()? {
        let service: String = r.get(0)?;
        let source: String = r.get(5)?;
        let route: String = r.get(1)?;
        let of = sources.get(&service).copied().unwrap_or_default();
        if !of.counts(&source, &route) {
            continue;
        }
        f(RedRow {
            service,
            route,
            method: r.get(2)?,
            class: r.get(3)?,
            bucket_ms: r.get(4)?,
            source,
            count: r.get(6)?,
            hist: Hist::decode(&r.get::<_, Vec<u8>>(7)?),
        });
    }
    Ok(())
}

/// Where a service's RED rows in a range come from, to pick the rows that count each request
/// once: the agents' metrics count every request; server spans stand in for a service
/// without them, and for the metric points that carry no route (`derive::NO_ROUTE`: spans
/// without `http.route` tell their path, which is truer than one "(no route)" row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedSources {
    pub metrics: bool,
    pub metrics_no_route: bool,
    pub unrouted_spans: bool,
}

impl RedSources {
    /// Whether a row of `source` ('m', 's' or 'u') and `route` counts.
    pub fn counts(&self, source: &str, route: &str) -> bool {
        let unrouted_stand_in = self.metrics_no_route && self.unrouted_spans;
        match source {
            "m" => !(route == super::derive::NO_ROUTE && unrouted_stand_in),
            "u" => !self.metrics || unrouted_stand_in,
            _ => !self.metrics,
        }
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn q(h: &Hist, p: f64) -> Option<f64> {
    h.quantile(p).map(round)
}

pub fn services(conn: &Connection, pid: i64, from: i64, to: i64) -> Result<Vec<ServiceRow>> {
    let secs = (to.saturating_sub(from) as f64 / 1000.0).max(1.0);
    let mut agg: BTreeMap<String, (f64, f64, Hist, &'static str)> = BTreeMap::new();
    fold_red(conn, pid, from, to, None, None, |r| {
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
    })?;
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
    let secs = (to.saturating_sub(from) as f64 / 1000.0).max(1.0);
    let mut agg: BTreeMap<(String, String), Agg> = BTreeMap::new();
    fold_red(conn, pid, from, to, Some(service), None, |r| {
        let e = agg.entry((r.route, r.method)).or_default();
        e.0 += r.count;
        if r.class == "5xx" {
            e.1 += r.count;
        }
        e.2.merge(&r.hist);
        *e.3.entry(r.class).or_default() += r.count;
    })?;
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

/// Points a series answer holds at most: the step grows with the range to stay under it.
pub const MAX_POINTS: i64 = 1_000;

/// The step of a series over [from, to): whole 10 s buckets, at least `step`, and coarse
/// enough that the range makes at most [`MAX_POINTS`] points.
pub fn series_step(from: i64, to: i64, step: i64) -> i64 {
    let span = to.saturating_sub(from).max(0);
    let min = span / MAX_POINTS + 1;
    let step = step.max(10_000) / 10_000 * 10_000;
    if step >= min {
        step
    } else {
        min.saturating_add(9_999) / 10_000 * 10_000
    }
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
    let step = series_step(from, to, step);
    let mut agg: BTreeMap<i64, (f64, f64, Hist, BTreeMap<String, f64>)> = BTreeMap::new();
    fold_red(conn, pid, from, to, Some(service), route, |r| {
        let ts = r.bucket_ms.div_euclid(step) * step;
        let e = agg.entry(ts).or_default();
        e.0 += r.count;
        if r.class == "5xx" {
            e.1 += r.count;
        }
        e.2.merge(&r.hist);
        *e.3.entry(r.class).or_default() += r.count;
    })?;
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
    /// only spans of this HTTP method (`--route "GET /x"`)
    pub method: Option<String>,
    /// slowest first (else newest first)
    pub slowest: bool,
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
               AND (?10 IS NULL OR method = ?10)
             ORDER BY {order} LIMIT ?9",
            order = if f.slowest { "dur_ns DESC" } else { "start_ns DESC" }
        );
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![
                pid,
                from.saturating_mul(1_000_000),
                to.saturating_mul(1_000_000),
                f.service,
                f.route,
                f.status,
                f.error,
                f.min_duration_ms.map(|m| (m * 1e6) as i64),
                // slowest first: every partition's slowest, sorted together below
                (if f.slowest { limit } else { limit - out.len() }) as i64,
                f.method
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
        if out.len() >= limit && !f.slowest {
            break;
        }
    }
    if f.slowest {
        out.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
        out.truncate(limit);
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

/// Where a page of a trace starts: after the span at (start, span id), the order spans are
/// returned in. Written `<start_ns>-<span id hex>` in the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanCursor {
    pub start_ns: i64,
    pub span_id: Vec<u8>,
}

impl SpanCursor {
    pub fn parse(s: &str) -> Option<SpanCursor> {
        let (ns, id) = s.trim().split_once('-')?;
        Some(SpanCursor {
            start_ns: ns.parse().ok()?,
            span_id: hex::decode(id).ok().filter(|b| b.len() <= 16)?,
        })
    }

    pub fn render(&self) -> String {
        format!("{}-{}", self.start_ns, hex::encode(&self.span_id))
    }
}

/// One page of a trace's spans in (start, span id) order: at most `limit` spans and about
/// `max_bytes` of answer (always at least one span), the trace's total span count, and the
/// cursor of the next page when there is more. Memory is bounded by the page, not the trace:
/// each partition is asked for at most `limit + 1` rows, sorted by SQLite's bounded top-N sort.
#[derive(Debug, Serialize)]
pub struct TracePage {
    pub span_count: i64,
    pub spans: Vec<SpanOut>,
    pub truncated: bool,
    pub next: Option<String>,
}

pub fn trace_page(
    conn: &Connection,
    pid: i64,
    trace_id: &[u8],
    after: Option<&SpanCursor>,
    limit: usize,
    max_bytes: usize,
) -> Result<TracePage> {
    let limit = limit.max(1);
    let parts = partitions(conn)?;
    let mut total = 0i64;
    for (h, _) in &parts {
        total += conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM {} WHERE trace_id = ?1 AND +pid = ?2",
                part_table(*h)
            ))?
            .query_row(params![trace_id, pid], |r| r.get::<_, i64>(0))?;
    }
    let (after_ns, after_id) = after
        .map(|c| (c.start_ns, c.span_id.clone()))
        .unwrap_or((i64::MIN, Vec::new()));
    let mut spans: Vec<SpanOut> = Vec::new();
    let mut bytes = 0usize;
    let mut more = false;
    // partitions hold spans by start hour, so walking them in order walks the trace in order
    'parts: for (h, _) in parts {
        if (h.saturating_add(1))
            .saturating_mul(HOUR_MS)
            .saturating_mul(1_000_000)
            <= after_ns
        {
            continue;
        }
        let mut st = conn.prepare_cached(&format!(
            "SELECT span_id, parent_id, service, name, kind, start_ns, dur_ns, status, status_message,
                    http_status, route, method, error, attrs, events
             FROM {} WHERE trace_id = ?1 AND +pid = ?2 AND (start_ns > ?3 OR (start_ns = ?3 AND span_id > ?4))
             ORDER BY start_ns, span_id LIMIT ?5",
            part_table(h)
        ))?;
        let mut rows = st.query(params![
            trace_id,
            pid,
            after_ns,
            after_id,
            (limit + 1 - spans.len()) as i64
        ])?;
        while let Some(r) = rows.next()? {
            let attrs: String = r.get(13)?;
            let events: String = r.get(14)?;
            let size = 400 + attrs.len() + events.len();
            if spans.len() >= limit || (!spans.is_empty() && bytes + size > max_bytes) {
                more = true;
                break 'parts;
            }
            bytes += size;
            let start: i64 = r.get(5)?;
            let dur: i64 = r.get(6)?;
            spans.push(SpanOut {
                trace_id: hex::encode(trace_id),
                span_id: hex::encode(r.get::<_, Vec<u8>>(0)?),
                parent_span_id: hex::encode(r.get::<_, Vec<u8>>(1)?),
                service: r.get(2)?,
                name: r.get(3)?,
                kind: kind_name(r.get(4)?),
                start_unix_nano: start.to_string(),
                end_unix_nano: start.saturating_add(dur).to_string(),
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
                attributes: serde_json::from_str(&attrs).unwrap_or_default(),
                events: serde_json::from_str(&events).unwrap_or_default(),
            });
        }
    }
    let next = if more {
        spans.last().map(|s| {
            SpanCursor {
                start_ns: s.start_unix_nano.parse().unwrap_or(i64::MAX),
                span_id: hex::decode(&s.span_id).unwrap_or_default(),
            }
            .render()
        })
    } else {
        None
    };
    Ok(TracePage {
        span_count: total,
        truncated: (spans.len() as i64) < total,
        spans,
        next,
    })
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

/// Points an answer of [`runtime`] holds at most, all series together (`truncated` says when
/// series were left out): about 6 MB of JSON.
pub const MAX_RUNTIME_POINTS: usize = 200_000;

#[derive(Debug, Serialize)]
pub struct RuntimeAnswer {
    pub step: i64,
    pub truncated: bool,
    pub series: Vec<RuntimeSeries>,
}

/// Runtime series of the range, each averaged into `step`-wide points (see [`series_step`]),
/// whole series until [`MAX_RUNTIME_POINTS`]. Rows are read in key order and folded as they come,
/// so memory is the answer's, not the range's.
pub fn runtime(
    conn: &Connection,
    pid: i64,
    service: Option<&str>,
    from: i64,
    to: i64,
    step: i64,
) -> Result<RuntimeAnswer> {
    let step = series_step(from, to, step);
    // `+bucket_ms`: walk the primary key (pid, service, name, bucket) in order rather than
    // the time index, which would need a sort of every row in the range
    let mut st = conn.prepare_cached(
        "SELECT service, name, unit, bucket_ms, value FROM runtime
         WHERE pid = ?1 AND (?2 IS NULL OR service = ?2) AND +bucket_ms >= ?3 AND +bucket_ms < ?4
         ORDER BY pid, service, name, bucket_ms",
    )?;
    let mut rows = st.query(params![
        pid,
        service,
        from.saturating_sub(from.rem_euclid(10_000)),
        to
    ])?;
    let mut out: Vec<RuntimeSeries> = Vec::new();
    let mut truncated = false;
    let mut points = 0usize;
    // the point being averaged: (bucket start, sum, n)
    let mut acc: Option<(i64, f64, f64)> = None;
    let flush = |out: &mut Vec<RuntimeSeries>, acc: &mut Option<(i64, f64, f64)>| {
        if let (Some(s), Some((ts, sum, n))) = (out.last_mut(), acc.take()) {
            s.points.push((ts, sum / n));
        }
    };
    while let Some(r) = rows.next()? {
        let service: String = r.get(0)?;
        let name: String = r.get(1)?;
        let ts = r.get::<_, i64>(3)?.div_euclid(step) * step;
        let v: f64 = r.get(4)?;
        let same_series = out.last().is_some_and(|s| s.service == service && s.name == name);
        if !same_series {
            flush(&mut out, &mut acc);
            points += out.last().map_or(0, |s| s.points.len());
            if points >= MAX_RUNTIME_POINTS {
                truncated = true;
                break;
            }
            out.push(RuntimeSeries {
                service,
                name,
                unit: r.get(2)?,
                points: Vec::new(),
            });
        }
        match acc.as_mut() {
            Some((t, sum, n)) if *t == ts => {
                *sum += v;
                *n += 1.0;
            }
            _ => {
                flush(&mut out, &mut acc);
                acc = Some((ts, v, 1.0));
            }
        }
    }
    flush(&mut out, &mut acc);
    Ok(RuntimeAnswer {
        step,
        truncated,
        series: out,
    })
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
    // the same choice of rows as the API's (`RedSources`), per project and service
    let mut sources: BTreeMap<(String, String), RedSources> = BTreeMap::new();
    for k in agg.keys() {
        let e = sources.entry((k.0.clone(), k.1.clone())).or_default();
        match k.5.as_str() {
            "m" => {
                e.metrics = true;
                e.metrics_no_route |= k.2 == super::derive::NO_ROUTE;
            }
            "u" => e.unrouted_spans = true,
            _ => {}
        }
    }
    Ok(agg
        .into_iter()
        .filter(|(k, _)| {
            sources
                .get(&(k.0.clone(), k.1.clone()))
                .is_some_and(|s| s.counts(&k.5, &k.2))
        })
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
    #[test]
    fn each_request_is_counted_from_one_source() {
        let no = super::super::derive::NO_ROUTE;
        // metrics with routes for all: spans never count
        let m = RedSources {
            metrics: true,
            ..Default::default()
        };
        assert!(m.counts("m", "/a") && !m.counts("s", "/a") && !m.counts("u", "/x"));
        // metrics without a route for some, and spans that say their path: the spans stand in
        let mu = RedSources {
            metrics: true,
            metrics_no_route: true,
            unrouted_spans: true,
        };
        assert!(!mu.counts("m", no) && mu.counts("u", "/nope/{id}") && mu.counts("m", "/a"));
        assert!(!mu.counts("s", "/a"));
        // no spans to stand in: "(no route)" stays, rather than nothing
        let mn = RedSources {
            metrics: true,
            metrics_no_route: true,
            unrouted_spans: false,
        };
        assert!(mn.counts("m", no));
        // no metrics at all: every span
        let s = RedSources {
            unrouted_spans: true,
            ..Default::default()
        };
        assert!(s.counts("s", "/a") && s.counts("u", "/x"));
    }

    use super::*;
    use crate::serve::receive::{ErrorEvent, SpanRow};

    const MIN: i64 = 60_000;

    fn writer(dir: &Path, projects: &[&str], max_size: i64) -> Writer {
        let conn = open(dir).unwrap();
        for p in projects {
            project_add(&conn, p).unwrap();
        }
        Writer::new(conn, 86_400_000, max_size).unwrap()
    }

    fn spans(project: &str, n: u64, start_ms: i64, pad: usize, seed: u64) -> Batch {
        let spans = (0..n)
            .map(|i| SpanRow {
                trace_id: [seed.to_be_bytes(), i.to_be_bytes()].concat(),
                span_id: i.to_be_bytes().to_vec(),
                service: "svc".into(),
                name: "GET /".into(),
                kind: 2,
                start_ns: (start_ms + i as i64) * 1_000_000,
                dur_ns: 1_000_000,
                attrs: "x".repeat(pad),
                events: "[]".into(),
                ..Default::default()
            })
            .collect();
        Batch {
            project: project.into(),
            spans,
            n_spans: n,
            ..Default::default()
        }
    }

    fn errors(project: &str, n: usize, ts_ms: i64, stack: usize, seed: usize) -> Batch {
        let errors = (0..n)
            .map(|i| ErrorEvent {
                fingerprint: format!("fp{seed}-{i}"),
                kind: format!("E{i}"),
                message: "boom".into(),
                stack: "s".repeat(stack),
                service: "svc".into(),
                route: None,
                trace_id: None,
                ts_ms: ts_ms + i as i64,
            })
            .collect();
        Batch {
            project: project.into(),
            errors,
            ..Default::default()
        }
    }

    fn count(c: &Connection, sql: &str, pid: i64) -> i64 {
        c.query_row(sql, [pid], |r| r.get(0)).unwrap()
    }

    fn span_count(w: &Writer, pid: i64) -> i64 {
        partitions(w.conn())
            .unwrap()
            .iter()
            .map(|(h, _)| {
                count(
                    w.conn(),
                    &format!("SELECT count(*) FROM spans_{h} WHERE pid=?1"),
                    pid,
                )
            })
            .sum()
    }

    /// `usage` as kept by the writes equals a recount from the rows themselves.
    fn assert_usage_exact(w: &Writer) {
        let usage = |w: &Writer| -> Vec<(i64, String, i64, i64, i64)> {
            w.conn()
                .prepare("SELECT pid, tbl, hour, rows, bytes FROM usage ORDER BY 1, 2, 3")
                .unwrap()
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let kept = usage(w);
        w.conn().execute_batch("DELETE FROM usage").unwrap();
        w.rebuild_usage_if_missing().unwrap();
        let recount = usage(w);
        assert_eq!(kept, recount);
    }

    #[test]
    fn every_table_declares_how_it_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), &["p"], 1 << 30);
        w.ensure_partition(1).unwrap();
        assert_eq!(undeclared_tables(w.conn()).unwrap(), Vec::<String>::new());
        w.conn().execute_batch("CREATE TABLE newthing(x)").unwrap();
        assert_eq!(undeclared_tables(w.conn()).unwrap(), vec!["newthing".to_string()]);
        let conn = open(dir.path()).unwrap();
        assert!(Writer::new(conn, 1, 1).is_err());
    }

    #[test]
    fn the_largest_project_is_trimmed_first_and_not_below_the_next() {
        let mut u = Usage::new();
        u.insert(
            1,
            BTreeMap::from([("spans", 100 << 20), ("error_groups", 10 << 20)]),
        );
        u.insert(2, BTreeMap::from([("spans", 1 << 20)]));
        let skip = BTreeSet::new();
        let (pid, tbl, amount) = plan_trim(&u, 500 << 20, &skip).unwrap();
        assert_eq!((pid, tbl), (1, "spans"));
        assert_eq!(
            amount,
            (110 << 20) - (1 << 20),
            "levelled down to the next, not beyond"
        );
        let (pid, tbl, amount) = plan_trim(&u, 1 << 20, &skip).unwrap();
        assert_eq!((pid, tbl, amount), (1, "spans", 1 << 20));
        // nothing left to take from its spans this pass: its next table, still not project 2
        let skip = BTreeSet::from([(1, "spans")]);
        assert_eq!(plan_trim(&u, 1 << 20, &skip).unwrap().1, "error_groups");
        let skip = BTreeSet::from([(1, "spans"), (1, "error_groups")]);
        assert_eq!(plan_trim(&u, 1 << 20, &skip).unwrap().0, 2);
    }

    #[test]
    fn over_the_cap_the_flooding_project_loses_its_oldest_data_and_no_one_else_anything() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 8 << 20;
        let mut w = writer(dir.path(), &["a", "b"], cap);
        let (a, b) = (w.pid("a").unwrap(), w.pid("b").unwrap());
        let c = Counters::default();
        let now = now_ms();
        // b's small data is the oldest: dropping the oldest partitions would take it first
        w.write(&[&spans("b", 300, now - 5 * HOUR_MS, 200, 1)], &c)
            .unwrap();
        for h in (0..5).rev() {
            w.write(&[&spans("a", 1000, now - h * HOUR_MS, 1000, 100 + h as u64)], &c)
                .unwrap();
            w.write(&[&errors("a", 300, now - h * HOUR_MS, 1000, h as usize)], &c)
                .unwrap();
            w.enforce_retention(&c, now).unwrap();
            assert_usage_exact(&w);
        }
        assert!(
            db_size(w.conn()).unwrap() <= cap,
            "{}",
            db_size(w.conn()).unwrap()
        );
        assert!(
            c.dropped_retention.load(Ordering::Relaxed) > 0,
            "the cap was reached"
        );
        assert_eq!(span_count(&w, b), 300, "the other project keeps everything");
        // a's newest spans and newest error group are there, its oldest are not
        let newest = (now - 1) * 1_000_000;
        let newest_a: i64 = partitions(w.conn())
            .unwrap()
            .iter()
            .map(|(h, _)| {
                count(
                    w.conn(),
                    &format!("SELECT count(*) FROM spans_{h} WHERE pid=?1 AND start_ns > {newest}"),
                    a,
                )
            })
            .sum();
        assert_eq!(newest_a, 1000);
        assert!(span_count(&w, a) < 5000);
        assert_eq!(
            count(
                w.conn(),
                "SELECT count(*) FROM error_groups WHERE pid=?1 AND id='fp0-299'",
                a
            ),
            1
        );
        assert!(c.dropped_retention.load(Ordering::Relaxed) > 0);
        assert_usage_exact(&w);
    }

    #[test]
    fn error_groups_per_project_are_capped_least_recently_seen_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), &["a"], 1 << 30);
        let a = w.pid("a").unwrap();
        let c = Counters::default();
        let now = now_ms();
        let n = MAX_ERROR_GROUPS as usize + 500;
        w.write(&[&errors("a", n, now - 10 * MIN, 20_000, 0)], &c)
            .unwrap();
        assert_eq!(
            count(w.conn(), "SELECT count(*) FROM error_groups WHERE pid=?1", a),
            MAX_ERROR_GROUPS
        );
        // the newest stay, stacks are clipped
        let last = format!("fp0-{}", n - 1);
        let len: i64 = w
            .conn()
            .query_row(
                "SELECT length(stack) FROM error_groups WHERE id=?1",
                [&last],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(len, MAX_STACK as i64);
        assert_eq!(
            count(
                w.conn(),
                "SELECT count(*) FROM error_groups WHERE id='fp0-0' AND pid=?1",
                a
            ),
            0
        );
        assert_eq!(c.evicted_error_groups.load(Ordering::Relaxed), 500);
        assert_usage_exact(&w);
    }

    #[test]
    fn the_writer_refuses_times_outside_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), &["a"], 1 << 30);
        let c = Counters::default();
        let now = now_ms();
        let mut b = spans("a", 2, now - MIN, 10, 1);
        b.spans[1].dur_ns = i64::MAX;
        b.runtime.push(crate::serve::receive::RuntimePoint {
            service: "svc".into(),
            name: "x".into(),
            unit: "1".into(),
            ts_ms: i64::MAX,
            value: 1.0,
        });
        b.errors = errors("a", 1, MAX_TIME_MS, 10, 0).errors;
        b.services.insert(
            "svc".into(),
            crate::serve::receive::ServiceInfo {
                name: "svc".into(),
                last_seen_ms: i64::MAX,
                ..Default::default()
            },
        );
        w.write(&[&b], &c).unwrap();
        assert_eq!(c.dropped_out_of_window.load(Ordering::Relaxed), 3);
        assert_eq!(span_count(&w, 1), 1);
        let seen: i64 = w
            .conn()
            .query_row("SELECT last_seen_ms FROM services", [], |r| r.get(0))
            .unwrap();
        assert!(seen <= now_ms() + FUTURE_SKEW_MS);
        assert_eq!(window(i64::MAX, i64::MAX), (0, MAX_TIME_MS));
    }

    #[test]
    fn a_broken_store_is_told_apart_from_a_bad_batch() {
        let corrupt = anyhow::Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            None,
        ))
        .context("writing");
        let full = anyhow::Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        let h = Health::default();
        h.note(&anyhow::anyhow!("unknown project x"));
        assert_eq!(h.error(), None);
        h.note(&full);
        assert!(h.error().is_some());
        h.ok();
        assert_eq!(h.error(), None, "a full disk clears with the next commit");
        h.note(&corrupt);
        h.ok();
        assert!(h.error().unwrap().contains("writing"), "corruption stays");
        assert_eq!(h.json()["ok"], false);
    }

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
