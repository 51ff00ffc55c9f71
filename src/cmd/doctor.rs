//! `obs-stack doctor`: checks that this machine has what obs-stack needs and says how to fix
//! what is missing. The probes live here (Docker API, the compose CLIs, statvfs, binding the
//! stack's ports); judging them, the verdict and the exit code live in `crate::doctor`.
//!
//! Doctor reports rather than errors: it prints every check, then exits 0 (ready, warnings
//! allowed), 3 (engine unreachable), 4 (socket permission denied) or 1 (something else
//! required is missing).
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use clap::Args;

use crate::cli::GlobalArgs;
use crate::docker::{Engine, docker_host};
use crate::doctor::{
    Check, ComposeFound, DEFAULT_STACK_PORTS, EngineProblem, HostKind, MIN_API_VERSION, PortState,
    SocketFacts, Status, WriteProbe, compose_check, diagnose_remote, diagnose_unix, disk_check, host_kind,
    parse_api_version, parse_compose_version, ports_check, render_table, report, tcp_is_local, up_port_check,
    write_check,
};
use crate::exit::Outcome;
use crate::output::Paint;

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Seconds to wait for the engine and each external command
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub timeout: u64,
}

pub async fn run(global: &GlobalArgs, args: DoctorArgs) -> anyhow::Result<Outcome> {
    let style = global.style();
    let timeout = Duration::from_secs(args.timeout.max(1));
    let host = docker_host();
    let kind = host_kind(&host);
    let local = match &kind {
        HostKind::Unix(_) => true,
        HostKind::Tcp(addr) => tcp_is_local(addr),
        _ => false,
    };

    let mut checks = Vec::new();
    let (engine, problem) = engine_check(&host, &kind, timeout, &mut checks).await;

    // Engine API version.
    match &engine {
        Some((_, version)) => {
            let api = version.api_version.clone().unwrap_or_default();
            let check = match parse_api_version(&api) {
                Some(v) if v >= MIN_API_VERSION => Check::new(
                    "api_version",
                    "Engine API version",
                    Status::Ok,
                    format!("API {api}"),
                ),
                Some(_) => Check::new(
                    "api_version",
                    "Engine API version",
                    Status::Fail,
                    format!(
                        "API {api} is older than {}.{} (Docker 20.10), the oldest obs-stack speaks",
                        MIN_API_VERSION.0, MIN_API_VERSION.1
                    ),
                )
                .fix("upgrade Docker Engine to 20.10 or later"),
                None => Check::new(
                    "api_version",
                    "Engine API version",
                    Status::Warn,
                    format!("the engine did not report a usable API version ({api:?})"),
                ),
            };
            checks.push(check.data(serde_json::json!({ "api_version": api })));
        }
        None => checks.push(skipped("api_version", "Engine API version")),
    }

    // Compose (client side: works without an engine).
    checks.push(compose(timeout).await);

    // Disk space where Docker keeps volumes.
    if local {
        let root = match &engine {
            Some((e, _)) => tokio::time::timeout(timeout, e.raw().info())
                .await
                .ok()
                .and_then(|r| r.ok())
                .and_then(|i| i.docker_root_dir),
            None => None,
        };
        checks.push(disk(root));
    } else {
        checks.push(
            Check::new(
                "disk",
                "Disk space for volumes",
                Status::Skip,
                format!("the engine is remote ({host}); its volumes live on that host"),
            )
            .optional(),
        );
    }

    // Stack ports on 127.0.0.1.
    if local {
        checks.push(ports_check(&probe_ports()));
        checks.push(probe_up_port(crate::up::API_PORT).await);
    } else {
        checks.push(
            Check::new(
                "ports",
                "Stack ports on 127.0.0.1",
                Status::Skip,
                format!("the engine is remote ({host}); the stack publishes its ports there"),
            )
            .optional(),
        );
    }

    // Write access: can inject recreate containers?
    match &engine {
        Some((e, _)) => {
            let probe = write_probe(e, timeout).await;
            checks.push(write_check(&probe, &host));
        }
        None => checks.push(skipped("write_access", "Recreate containers (write access)")),
    }

    let report = report(host, problem, checks);
    if style.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        write_stdout(&text)?;
    } else if !style.quiet || report.exit_code != 0 {
        let paint = |s: Status, text: &str| {
            let p = match s {
                Status::Ok => Paint::Green,
                Status::Warn => Paint::Yellow,
                Status::Fail => Paint::Red,
                Status::Skip => Paint::Dim,
            };
            style.paint(p, text)
        };
        write_stdout(&render_table(&report, &paint))?;
    }
    Ok(match report.exit_code {
        0 => Outcome::Success,
        crate::exit::DOCKER_UNREACHABLE => Outcome::DockerUnreachable,
        crate::exit::DOCKER_PERMISSION => Outcome::DockerPermission,
        _ => Outcome::Negative,
    })
}

/// Writes to stdout; a closed pipe (`obs-stack doctor | head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn skipped(id: &'static str, title: &'static str) -> Check {
    Check::new(id, title, Status::Skip, "needs a reachable Docker engine")
}

/// Connects (with a deadline) and explains a failure; pushes the engine check.
async fn engine_check(
    host: &str,
    kind: &HostKind,
    timeout: Duration,
    checks: &mut Vec<Check>,
) -> (
    Option<(Engine, bollard::models::SystemVersion)>,
    Option<EngineProblem>,
) {
    let title = "Docker engine";
    let connected = match tokio::time::timeout(timeout, Engine::connect()).await {
        Ok(Ok(engine)) => match tokio::time::timeout(timeout, engine.version()).await {
            Ok(Ok(v)) => Ok((engine, v)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
        },
        Ok(Err(e)) => Err(match e {
            crate::docker::DockerError::Unreachable { detail, .. } => detail,
            crate::docker::DockerError::PermissionDenied { .. } => "permission denied".to_string(),
            other => other.to_string(),
        }),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    };
    let connected = connected.map_err(|e| crate::doctor::short_error(&e));
    match connected {
        Ok((engine, v)) => {
            // What an earlier, killed obs-stack run left behind (helper containers) goes now.
            crate::cmd::inject::clean_leftovers(
                &engine,
                &crate::output::Style::new(false, crate::output::ColorChoice::Never, 0, true),
            )
            .await;
            let version = v.version.clone().unwrap_or_else(|| "?".into());
            let remote = match kind {
                HostKind::Unix(_) => String::new(),
                HostKind::Tcp(a) if tcp_is_local(a) => String::new(),
                _ => " (remote host via DOCKER_HOST: disk and ports are checked there, not here)".into(),
            };
            let os = format!(
                "{}/{}",
                v.os.clone().unwrap_or_default(),
                v.arch.clone().unwrap_or_default()
            );
            checks.push(
                Check::new(
                    "engine",
                    title,
                    Status::Ok,
                    format!("Docker Engine {version} ({os}) at {host}{remote}"),
                )
                .data(serde_json::json!({ "host": host, "version": version, "os": v.os, "arch": v.arch })),
            );
            (Some((engine, v)), None)
        }
        Err(error) => {
            let (problem, detail, fix) = match kind {
                HostKind::Unix(path) => diagnose_unix(&socket_facts(path), &error),
                HostKind::Tcp(_) => diagnose_remote(host, &error),
                HostKind::Ssh(_) | HostKind::Other(_) => (
                    EngineProblem::UnsupportedHost,
                    format!("cannot use DOCKER_HOST={host}: {error}"),
                    "point DOCKER_HOST at a unix:// socket or tcp:// address (for an SSH host: `ssh -NL /tmp/docker.sock:/var/run/docker.sock user@host` and DOCKER_HOST=unix:///tmp/docker.sock)".to_string(),
                ),
            };
            checks.push(
                Check::new("engine", title, Status::Fail, detail)
                    .fix(fix)
                    .data(serde_json::json!({ "host": host, "problem": problem, "error": error })),
            );
            (None, Some(problem))
        }
    }
}

/// What the filesystem says about a unix socket, for the "why not" of a failed connection.
fn socket_facts(path: &str) -> SocketFacts {
    let uid = unsafe { libc::geteuid() };
    let meta = std::fs::metadata(path).ok();
    let accessible = std::ffi::CString::new(path)
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) } == 0)
        .unwrap_or(false);
    let (owner, group, mode, in_group) = match &meta {
        Some(m) => (
            Some(name_for_id("/etc/passwd", m.uid()).unwrap_or_else(|| m.uid().to_string())),
            Some(name_for_id("/etc/group", m.gid()).unwrap_or_else(|| m.gid().to_string())),
            Some(m.mode()),
            Some(user_in_group(m.gid())),
        ),
        None => (None, None, None, None),
    };
    SocketFacts {
        path: path.to_string(),
        exists: meta.is_some() || Path::new(path).symlink_metadata().is_ok(),
        is_socket: meta.as_ref().is_some_and(|m| m.file_type().is_socket()),
        accessible,
        owner,
        group,
        mode,
        uid,
        in_group,
    }
}

/// Looks an id up in /etc/passwd or /etc/group (name:x:id:…).
fn name_for_id(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next();
        (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

fn user_in_group(gid: u32) -> bool {
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return false;
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    n > 0 && groups[..n as usize].contains(&gid)
}

/// `docker compose version` (v2 plugin), else `docker-compose version` (standalone): which
/// compose this machine has, or why `docker compose` failed.
pub async fn find_compose(timeout: Duration) -> (Option<ComposeFound>, String) {
    let v2 = run_cmd("docker", &["compose", "version"], timeout).await;
    let v2_error = match &v2 {
        Ok(out) => {
            if let Some(version) = parse_compose_version(out) {
                let found = ComposeFound {
                    command: "docker compose".into(),
                    version,
                };
                return (Some(found), String::new());
            }
            format!("unexpected output {:?}", out.trim())
        }
        Err(e) => e.clone(),
    };
    if let Ok(out) = run_cmd("docker-compose", &["version"], timeout).await
        && let Some(version) = parse_compose_version(&out)
    {
        let found = ComposeFound {
            command: "docker-compose".into(),
            version,
        };
        return (Some(found), v2_error);
    }
    (None, v2_error)
}

/// The compose command to print in next steps: the one this machine has.
pub async fn compose_command() -> String {
    find_compose(Duration::from_secs(5))
        .await
        .0
        .map(|f| f.command)
        .unwrap_or_else(|| "docker compose".into())
}

async fn compose(timeout: Duration) -> Check {
    let (found, v2_error) = find_compose(timeout).await;
    compose_check(found.as_ref(), &v2_error)
}

/// Runs a command with a deadline; stdout on success, a one-line reason otherwise.
async fn run_cmd(program: &str, args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => Err(format!(
            "`{program}` did not finish within {}s",
            timeout.as_secs()
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("`{program}` is not installed"))
        }
        Ok(Err(e)) => Err(format!("cannot run `{program}`: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).to_string()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            Err(if line.is_empty() {
                format!("exit {}", out.status.code().unwrap_or(-1))
            } else {
                line
            })
        }
    }
}

/// Free space where Docker keeps its data: the engine's root dir when known, else
/// /var/lib/docker, else /; measured at the nearest existing ancestor.
fn disk(root: Option<String>) -> Check {
    let path = root.unwrap_or_else(|| {
        if Path::new("/var/lib/docker").exists() {
            "/var/lib/docker".into()
        } else {
            "/".into()
        }
    });
    let mut at = Path::new(&path);
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    let at_str = at.to_string_lossy().to_string();
    match statvfs(&at_str) {
        Some((avail, total)) => disk_check(&path, &at_str, avail, total),
        None => Check::new(
            "disk",
            "Disk space for volumes",
            Status::Warn,
            format!("could not measure free space at {at_str}"),
        ),
    }
}

fn statvfs(path: &str) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(path).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    Some((s.f_bavail as u64 * frsize, s.f_blocks as u64 * frsize))
}

/// `up`'s API port: free, or answering `/healthz` as an obs-stack backend does.
async fn probe_up_port(port: u16) -> crate::doctor::Check {
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return up_port_check(port, true, false);
    }
    let ours = async {
        let r = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .ok()?
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .ok()?;
        Some(r.text().await.ok()?.trim() == "ok")
    }
    .await
    .unwrap_or(false);
    up_port_check(port, false, ours)
}

fn probe_ports() -> Vec<PortState> {
    DEFAULT_STACK_PORTS
        .iter()
        .map(
            |&(port, service)| match std::net::TcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => {
                    drop(listener);
                    PortState {
                        port,
                        service,
                        free: true,
                        error: None,
                    }
                }
                Err(e) => PortState {
                    port,
                    service,
                    free: false,
                    error: Some(e.to_string()),
                },
            },
        )
        .collect()
}

/// A state-changing request that cannot change anything: stopping a container that does not
/// exist. The engine answers 404 when it processed the request; an authorization plugin or
/// a read-only socket proxy refuses it first (401/403/405).
async fn write_probe(engine: &Engine, timeout: Duration) -> WriteProbe {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("obs-stack-doctor-probe-{}-{nanos}", std::process::id());
    let call = engine.raw().stop_container(&name, None);
    match tokio::time::timeout(timeout, call).await {
        Err(_) => WriteProbe::Unclear(format!("no answer within {}s", timeout.as_secs())),
        Ok(Ok(())) => WriteProbe::Allowed,
        Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code, message })) => {
            match status_code {
                404 => WriteProbe::Allowed,
                401 | 403 | 405 => WriteProbe::Denied {
                    status: status_code,
                    message: message.trim().to_string(),
                },
                _ => WriteProbe::Unclear(format!("{status_code}: {}", message.trim())),
            }
        }
        Ok(Err(e)) => WriteProbe::Unclear(e.to_string()),
    }
}
