//! `obs-stack serve`: the embedded OpenTelemetry backend (`crate::serve`), plus
//! `serve project add NAME` and `serve token`, which work on the data directory directly
//! (SQLite arbitrates with a running server, which picks new keys up by itself).
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::exit::Outcome;
use crate::serve::{self, store};

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub action: Option<ServeAction>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Data directory (default: $XDG_DATA_HOME/obs-stack/serve or ~/.local/share/obs-stack/serve)
    #[arg(long, env = "OBS_STACK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// OTLP/gRPC listen address (a non-loopback address is reachable from other machines)
    #[arg(
        long,
        env = "OBS_STACK_OTLP_GRPC",
        default_value = "127.0.0.1:4317",
        value_name = "ADDR"
    )]
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP listen address
    #[arg(
        long,
        env = "OBS_STACK_OTLP_HTTP",
        default_value = "127.0.0.1:4318",
        value_name = "ADDR"
    )]
    pub otlp_http: SocketAddr,
    /// JSON API, /metrics and /healthz listen address
    #[arg(
        long,
        env = "OBS_STACK_API",
        default_value = "127.0.0.1:4319",
        value_name = "ADDR"
    )]
    pub api: SocketAddr,
    /// Keep data this long (e.g. 90m, 24h, 7d)
    #[arg(long, env = "OBS_STACK_RETENTION", default_value = "24h", value_parser = parse_duration_ms, value_name = "DURATION")]
    pub retention: i64,
    /// Largest database size; beyond it the project using the most loses its oldest data (e.g. 500MiB, 1GiB)
    #[arg(long, env = "OBS_STACK_MAX_SIZE", default_value = "1GiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_size: u64,
    /// Memory cap: ingest beyond it is refused with retryable answers (e.g. 256MiB)
    #[arg(long, env = "OBS_STACK_MAX_MEMORY", default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_memory: u64,
    /// If the database is empty (0 bytes) or damaged, move it aside and start a new one
    /// (keeping the projects' ingest keys when they can be read); a healthy one is kept
    #[arg(long)]
    pub reset: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ServeAction {
    /// Manage projects (each has its own ingest key)
    #[command(subcommand)]
    Project(ProjectAction),
    /// Print the API access token (made on first use)
    Token(DataDirArg),
}

#[derive(Debug, Clone, Subcommand)]
pub enum ProjectAction {
    /// Print the ingest key of a project, creating the project if needed (idempotent)
    Add {
        /// Project name (usually the compose project)
        name: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

/// "90s", "15m", "24h", "7d" (or plain seconds) → milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with a unit, e.g. 24h"))?;
    let mult = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h, d)")),
    };
    if n <= 0 {
        return Err(format!("{s:?}: must be positive"));
    }
    n.checked_mul(mult).ok_or_else(|| format!("{s:?}: too large"))
}

/// "1GiB", "256MiB", "500MB", "64k", "1048576" → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 1GiB or 256MiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1048576.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1073741824.0,
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1099511627776.0,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    let v = n * mult;
    if !(1.0..=1e16).contains(&v) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(v as u64)
}

pub fn data_dir(arg: &DataDirArg) -> Result<PathBuf> {
    if let Some(d) = &arg.data_dir {
        return Ok(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("obs-stack/serve"));
    }
    let home = std::env::var_os("HOME").context("neither --data-dir, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/obs-stack/serve"))
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> Result<Outcome> {
    match args.action {
        Some(ServeAction::Token(dir)) => {
            let dir = data_dir(&dir)?;
            let t = store::token(&dir)?;
            if global.json {
                println!("{}", serde_json::json!({"token": t}));
            } else {
                println!("{t}");
            }
            Ok(Outcome::Success)
        }
        Some(ServeAction::Project(ProjectAction::Add { name, dir })) => {
            let dir = data_dir(&dir)?;
            if store::empty_db(&dir) {
                // adding to it would hide that every other project is gone
                anyhow::bail!(
                    "{} is empty (0 bytes): every project and its ingest key are gone; \
                     start `obs-stack serve --reset` once (or move the file aside), then add projects",
                    store::db_path(&dir).display()
                );
            }
            let conn = store::open(&dir)?;
            let key = store::project_add(&conn, &name)?;
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({"project": name.trim(), "ingest_key": key})
                );
            } else {
                println!("{key}");
            }
            Ok(Outcome::Success)
        }
        None => {
            let a = args.run;
            let config = serve::Config {
                data_dir: data_dir(&a.dir)?,
                otlp_grpc: a.otlp_grpc,
                otlp_http: a.otlp_http,
                api: a.api,
                retention_ms: a.retention,
                max_size: a.max_size.min(i64::MAX as u64) as i64,
                max_memory: a.max_memory,
                reset: a.reset,
            };
            if config.max_memory < (80 << 20) {
                anyhow::bail!("--max-memory must be at least 80MiB");
            }
            serve::run(config).await?;
            Ok(Outcome::Success)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert!(parse_duration_ms("1w").is_err());
        assert!(parse_duration_ms("0h").is_err());
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert!(parse_size("lots").is_err());
    }
}
