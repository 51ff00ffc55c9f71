//! The I/O side of detection: the five probes over one container, run concurrently, each
//! bounded by the overall deadline, each reporting what it could not read.
//!
//! When obs-stack runs as root on the Docker host (the container's main process is visible in
//! our `/proc` with the container's id in its cgroup), processes, executables, listening
//! sockets and files are read from `/proc/<pid>/…` directly: nothing is run inside the
//! container. Otherwise the Docker API is used (`top`, the archive API), and what cannot be
//! known that way (listening sockets, ELF details) is reported as unread.
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use bollard::models::ContainerInspectResponse;
use futures_util::StreamExt;

use super::files::{self, Collector};
use super::netproc;
use super::obs::{ElfObs, HttpObs, Observations, PortObs, ProcObs, rank, split_env};
use super::signature::SignatureSet;
use super::{DetectOptions, ProbeError, http};
use crate::docker::Engine;

/// Ports that speak something other than HTTP: never sent an HTTP request (some servers,
/// like Redis, log it as an attack).
pub const NON_HTTP_PORTS: &[u16] = &[
    21, 22, 25, 53, 110, 143, 389, 443, 465, 587, 636, 993, 995, 1433, 1521, 2181, 3306, 4369, 5432, 5671,
    5672, 6379, 6380, 9000, 9042, 9092, 11211, 25672, 26379, 27017, 27018, 33060,
];
const MAX_HTTP_PORTS: usize = 4;
const MAX_ENV: usize = 4096;
const MAX_ENV_BYTES: usize = 1 << 20;
const MAX_BINARIES: usize = 3;
/// Path used to see a framework's not-found page.
pub const NOT_FOUND_PATH: &str = "/obs-detect-probe-404";

/// The container's main process as seen from this host, when it is.
#[derive(Debug, Clone)]
struct HostView {
    pid: u32,
}

impl HostView {
    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }
}

fn host_view(info: &ContainerInspectResponse) -> Option<HostView> {
    // OBS_DETECT_API_ONLY=1 forces the Docker-API-only path (as on a remote engine); tests use it
    if std::env::var("OBS_DETECT_API_ONLY").as_deref() == Ok("1") {
        return None;
    }
    let state = info.state.as_ref()?;
    if state.running != Some(true) {
        return None;
    }
    let pid = u32::try_from(state.pid?).ok().filter(|p| *p > 0)?;
    let id = info.id.as_deref()?;
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    if !cg.contains(id) {
        return None;
    }
    std::fs::read_dir(format!("/proc/{pid}/root/")).ok()?;
    Some(HostView { pid })
}

fn config_cmdline(info: &ContainerInspectResponse) -> Vec<String> {
    let c = info.config.as_ref();
    let mut argv: Vec<String> = c.and_then(|c| c.entrypoint.clone()).unwrap_or_default();
    argv.extend(c.and_then(|c| c.cmd.clone()).unwrap_or_default());
    argv
}

/// Runs every probe against one container.
pub async fn observe_container(
    engine: &Engine,
    container: &str,
    sigs: &SignatureSet,
    opts: &DetectOptions,
) -> Result<(Observations, Vec<ProbeError>)> {
    let deadline = Instant::now() + opts.budget;
    let info = engine.inspect(container).await?;
    let mut obs = Observations::default();
    let mut errors = Vec::new();
    let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    if !running {
        errors.push(ProbeError::new(
            "process",
            "container is not running: no processes, listening sockets or HTTP; files and configuration only",
        ));
    }
    let host = host_view(&info);
    if running && host.is_none() {
        errors.push(ProbeError::new(
            "process",
            "the container's processes are not visible from here (not root on the Docker host): executables and listening sockets unread",
        ));
    }

    // env (image ENV included: Config.Env is the effective environment)
    let env_raw = info
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    let mut env_bytes = 0;
    let env_kept: Vec<String> = env_raw
        .iter()
        .take(MAX_ENV)
        .take_while(|kv| {
            env_bytes += kv.len();
            env_bytes <= MAX_ENV_BYTES
        })
        .cloned()
        .collect();
    if env_kept.len() < env_raw.len() {
        errors.push(ProbeError::new(
            "env",
            format!("{} variables; read the first {}", env_raw.len(), env_kept.len()),
        ));
    }
    obs.env = Some(split_env(&env_kept));

    // ports from the configuration
    let mut ports: Vec<PortObs> = Vec::new();
    let mut published: Vec<(u16, u16)> = Vec::new(); // (container port, 127.0.0.1-reachable host port)
    for p in info
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.clone())
        .unwrap_or_default()
    {
        if let Some(n) = tcp_port(&p) {
            ports.push(PortObs {
                port: n,
                source: "exposed".into(),
            });
        }
    }
    let ns = info.network_settings.as_ref();
    for (k, binds) in ns.and_then(|n| n.ports.clone()).unwrap_or_default() {
        let Some(n) = tcp_port(&k) else { continue };
        for b in binds.unwrap_or_default() {
            let ip = b.host_ip.clone().unwrap_or_default();
            if let Some(hp) = b.host_port.as_deref().and_then(|h| h.parse().ok())
                && (ip.is_empty() || ip == "0.0.0.0" || ip == "127.0.0.1" || ip == "::")
            {
                published.push((n, hp));
                ports.push(PortObs {
                    port: n,
                    source: "published".into(),
                });
            }
        }
    }
    let container_ip: Option<IpAddr> = ns
        .and_then(|n| n.networks.as_ref())
        .and_then(|nets| {
            nets.values()
                .filter_map(|e| e.ip_address.clone())
                .find(|ip| !ip.is_empty())
        })
        .and_then(|ip| ip.parse().ok());

    // listening sockets: from the host's view of the container's network namespace
    let mut listening: Option<Vec<netproc::Listen>> = None;
    if let Some(h) = &host {
        let mut all = Vec::new();
        let mut ok = false;
        for f in ["tcp", "tcp6"] {
            if let Ok(t) = std::fs::read_to_string(format!("/proc/{}/net/{f}", h.pid)) {
                ok = true;
                all.extend(
                    netproc::parse_listening(&t)
                        .into_iter()
                        .filter(|l| !l.docker_dns()),
                );
            }
        }
        if ok {
            for l in &all {
                ports.push(PortObs {
                    port: l.port,
                    source: if l.external() {
                        "listening"
                    } else {
                        "listening (loopback only)"
                    }
                    .into(),
                });
            }
            listening = Some(all);
            obs.listen_read = true;
        } else {
            errors.push(ProbeError::new(
                "ports",
                "listening sockets unreadable (container gone?)",
            ));
        }
    }
    ports.dedup_by(|a, b| a.port == b.port && a.source == b.source);
    obs.starting = running
        && info
            .state
            .as_ref()
            .and_then(|s| s.started_at.as_deref())
            .and_then(rfc3339_epoch)
            .and_then(|t| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs() as i64;
                Some(now - t < super::score::STARTUP_GRACE_S as i64)
            })
            .unwrap_or(false);
    obs.ports = Some(ports.clone());

    let cfg_cmd = config_cmdline(&info);
    let workdir = info.config.as_ref().and_then(|c| c.working_dir.clone());
    let home = obs
        .env
        .as_ref()
        .and_then(|e| e.iter().find(|(k, _)| k == "HOME").map(|(_, v)| v.clone()));

    // the slower probes, concurrently: processes then files (the command lines name app
    // directories) alongside HTTP, so a slow or silent HTTP port never eats the files' budget
    let procs_files = async {
        let (procs, bins, proc_deps, rt, mut perr) =
            processes(engine, container, &info, host.clone(), running, deadline).await;
        let mut cmdlines: Vec<String> = procs.iter().map(|p| p.cmdline.clone()).collect();
        cmdlines.push(cfg_cmd.join(" "));
        let dirs = files::app_dirs(workdir.as_deref(), &cmdlines, home.as_deref());
        let mut coll = Collector::new(sigs, opts);
        match &host {
            Some(h) => {
                let root = h.root();
                let res = tokio::task::spawn_blocking(move || {
                    files::read_root(&root, &dirs, &mut coll, deadline, true);
                    coll
                })
                .await;
                match res {
                    Ok(c) => coll = c,
                    Err(e) => {
                        perr.push(ProbeError::new("files", format!("files probe failed: {e}")));
                        coll = Collector::new(sigs, opts);
                    }
                }
            }
            None => {
                coll = archive_files(engine, container, &dirs, coll, opts, deadline).await;
            }
        }
        (procs, bins, proc_deps, rt, perr, coll)
    };
    let http_fut = http_probe(
        opts,
        &ports,
        &listening,
        &published,
        container_ip,
        host.is_some(),
        running,
        deadline,
    );
    let ((procs, bins, proc_deps, rt, mut perr, mut coll), (http_obs, mut herr)) =
        tokio::join!(procs_files, http_fut);
    errors.append(&mut perr);
    errors.append(&mut herr);
    errors.append(&mut coll.errors);
    let _ = coll.into_observations(&mut obs);
    obs.deps.extend(proc_deps.clone());
    for d in &proc_deps {
        obs.deps_read.insert(d.ecosystem.clone());
    }
    if !bins.is_empty() && bins.iter().any(|b| b.go_version.is_some()) {
        obs.deps_read.insert("go".into());
    }
    obs.runtime_versions.extend(rt);
    let mut bins = bins;
    if host.is_none() {
        // no /proc view: fetch the main executables (and the package database) through the
        // archive API, within the same deadline
        let mut exes: Vec<String> = procs.iter().map(|p| p.exe.clone()).collect();
        exes.push(cfg_cmd.first().cloned().unwrap_or_default());
        let exes: Vec<String> = exes
            .into_iter()
            .filter(|e| e.starts_with('/') && !is_shim(e) && !is_known_runtime(e))
            .fold(Vec::new(), |mut acc, e| {
                if !acc.contains(&e) && acc.len() < 2 {
                    acc.push(e);
                }
                acc
            });
        let (bin_res, dpkg) = tokio::join!(
            futures_util::future::join_all(
                exes.iter()
                    .map(|e| archive_binary(engine, container, e, deadline))
            ),
            archive_file(engine, container, "/var/lib/dpkg/status", 8 << 20, deadline)
        );
        for r in bin_res {
            match r {
                Ok(Some((e, d))) => {
                    for dep in &d {
                        obs.deps_read.insert(dep.ecosystem.clone());
                    }
                    if e.go_version.is_some() {
                        obs.deps_read.insert("go".into());
                    }
                    obs.deps.extend(d);
                    bins.push(e);
                }
                Ok(None) => {}
                Err(m) => errors.push(ProbeError::new("process", m)),
            }
        }
        if let Ok(Some((b, _))) = dpkg {
            obs.deps.extend(super::manifest::dpkg_status(
                &String::from_utf8_lossy(&b),
                "/var/lib/dpkg/status",
            ));
            obs.deps_read.insert("deb".into());
        }
    }
    obs.processes = if procs.is_empty() && !running {
        // stopped: what it would run
        Some(vec![ProcObs {
            pid: 0,
            cmdline: cfg_cmd.join(" "),
            exe: cfg_cmd.first().cloned().unwrap_or_default(),
        }])
        .filter(|p| !p[0].cmdline.is_empty())
    } else if procs.is_empty() {
        None
    } else {
        Some(procs)
    };
    obs.binaries = bins;
    obs.http = if http_obs.is_empty() { None } else { Some(http_obs) };
    Ok((obs, errors))
}

/// `2026-12-01T22:13:24.123456789Z` (Docker's StartedAt, UTC) → seconds since the epoch.
fn rfc3339_epoch(s: &str) -> Option<i64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, m, d, hh, mm, ss) = (n(0, 4)?, n(5, 7)?, n(8, 10)?, n(11, 13)?, n(14, 16)?, n(17, 19)?);
    if !s.ends_with('Z') || y < 1970 {
        return None;
    }
    // days from civil (proleptic Gregorian), Howard Hinnant's algorithm
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn is_shim(exe: &str) -> bool {
    let base = exe.rsplit('/').next().unwrap_or("");
    matches!(
        base,
        "tini" | "dumb-init" | "sh" | "bash" | "dash" | "su-exec" | "gosu" | "sleep" | "env"
    )
}

/// Interpreters and servers that their name already identifies: not worth fetching whole
/// through the archive API (a Node.js binary is ~100 MB).
fn is_known_runtime(exe: &str) -> bool {
    let base = exe.rsplit('/').next().unwrap_or("");
    [
        "node",
        "nodejs",
        "java",
        "python",
        "ruby",
        "php",
        "dotnet",
        "nginx",
        "postgres",
        "redis-server",
        "mysqld",
        "mariadbd",
        "mongod",
        "beam.smp",
        "erl",
    ]
    .iter()
    .any(|r| {
        base == *r
            || (base.starts_with(r)
                && base[r.len()..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-'))
    })
}

/// Largest executable fetched through the archive API for ELF inspection.
const MAX_ARCHIVE_BINARY: usize = 24 << 20;

/// One file's bytes through the archive API (following one symlink); `Ok(None)` if absent.
async fn archive_file(
    engine: &Engine,
    container: &str,
    path: &str,
    cap: usize,
    deadline: Instant,
) -> Result<Option<(Vec<u8>, u64)>, String> {
    let mut path = path.to_string();
    for _ in 0..3 {
        let fut = engine.read_archive(container, &path, cap + 64 * 1024);
        let (tarball, _cut) = match tokio::time::timeout_at(deadline.into(), fut).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                let m = e.to_string();
                if m.contains("404")
                    || m.to_ascii_lowercase().contains("no such file")
                    || m.contains("Could not find")
                {
                    return Ok(None);
                }
                return Err(format!("{path}: {m}"));
            }
            Err(_) => return Err(format!("{path}: no answer within the budget")),
        };
        let mut ar = tar::Archive::new(&tarball[..]);
        let Ok(mut entries) = ar.entries() else {
            return Ok(None);
        };
        let Some(Ok(mut e)) = entries.next() else {
            return Ok(None);
        };
        let kind = e.header().entry_type();
        if kind.is_symlink() {
            let Ok(Some(target)) = e.link_name() else {
                return Ok(None);
            };
            let t = target.to_string_lossy().to_string();
            path = if t.starts_with('/') {
                t
            } else {
                format!("{}/{t}", path.rsplit_once('/').map(|(d, _)| d).unwrap_or(""))
            };
            continue;
        }
        let size = e.header().size().unwrap_or(0);
        if size as usize > cap {
            return Err(format!(
                "{path}: {} MiB, larger than the {} MiB read through the API",
                size >> 20,
                cap >> 20
            ));
        }
        let mut buf = Vec::with_capacity(size as usize);
        use std::io::Read;
        let _ = (&mut e).take(cap as u64).read_to_end(&mut buf);
        return Ok(Some((buf, size)));
    }
    Ok(None)
}

async fn archive_binary(
    engine: &Engine,
    container: &str,
    exe: &str,
    deadline: Instant,
) -> Result<Option<(ElfObs, Vec<super::obs::Dep>)>, String> {
    let Some((bytes, _)) = archive_file(engine, container, exe, MAX_ARCHIVE_BINARY, deadline).await? else {
        return Ok(None);
    };
    let exe = exe.to_string();
    tokio::task::spawn_blocking(move || super::elf::inspect(&bytes[..], &exe))
        .await
        .map_err(|e| format!("ELF inspection failed: {e}"))
}

fn tcp_port(spec: &str) -> Option<u16> {
    let (p, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if proto != "tcp" {
        return None;
    }
    p.parse().ok()
}

type ProcResult = (
    Vec<ProcObs>,
    Vec<ElfObs>,
    Vec<super::obs::Dep>,
    Vec<(String, String, u8)>,
    Vec<ProbeError>,
);

async fn processes(
    engine: &Engine,
    container: &str,
    _info: &ContainerInspectResponse,
    host: Option<HostView>,
    running: bool,
    deadline: Instant,
) -> ProcResult {
    let mut errors = Vec::new();
    if !running {
        return (Vec::new(), Vec::new(), Vec::new(), Vec::new(), errors);
    }
    let top = match tokio::time::timeout_at(deadline.into(), engine.top(container)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            errors.push(ProbeError::new(
                "process",
                format!("process list unreadable: {e}"),
            ));
            Vec::new()
        }
        Err(_) => {
            errors.push(ProbeError::new(
                "process",
                "process list: no answer within the budget",
            ));
            Vec::new()
        }
    };
    let Some(_h) = host else {
        let procs = top
            .into_iter()
            .map(|p| ProcObs {
                pid: p.pid,
                exe: p.command.split_whitespace().next().unwrap_or("").to_string(),
                cmdline: p.command,
            })
            .collect();
        return (procs, Vec::new(), Vec::new(), Vec::new(), errors);
    };
    let res = tokio::task::spawn_blocking(move || {
        let mut errors = Vec::new();
        let mut procs = Vec::new();
        let mut bins: Vec<ElfObs> = Vec::new();
        let mut deps = Vec::new();
        let mut rt = Vec::new();
        let mut seen_exe = BTreeSet::new();
        for p in top.into_iter().take(256) {
            if Instant::now() > deadline {
                errors.push(ProbeError::new(
                    "process",
                    "time budget exhausted while reading processes",
                ));
                break;
            }
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .ok()
                .map(|b| {
                    let b: Vec<u8> = b
                        .into_iter()
                        .take(8192)
                        .map(|c| if c == 0 { b' ' } else { c })
                        .collect();
                    String::from_utf8_lossy(&b).trim().to_string()
                })
                .filter(|s| !s.is_empty())
                .unwrap_or(p.command.clone());
            let exe = std::fs::read_link(format!("/proc/{}/exe", p.pid))
                .ok()
                .map(|l| l.to_string_lossy().trim_end_matches(" (deleted)").to_string());
            let exe_s = exe
                .clone()
                .unwrap_or_else(|| cmdline.split_whitespace().next().unwrap_or("").to_string());
            // inspect each distinct executable once (skip init shims)
            let base = exe_s.rsplit('/').next().unwrap_or("").to_string();
            let shim = matches!(
                base.as_str(),
                "tini" | "dumb-init" | "sh" | "bash" | "dash" | "su-exec" | "gosu" | "sleep"
            );
            if exe.is_some() && !shim && bins.len() < MAX_BINARIES && seen_exe.insert(exe_s.clone()) {
                match std::fs::File::open(format!("/proc/{}/exe", p.pid)) {
                    Ok(f) => {
                        if let Some((e, d)) = super::elf::inspect(&f, &exe_s) {
                            bins.push(e);
                            deps.extend(d);
                        }
                    }
                    Err(e) => errors.push(ProbeError::new("process", format!("{exe_s}: cannot open: {e}"))),
                }
                // a JDK names its version in <home>/release
                if base == "java"
                    && let Some(home) = exe_s.strip_suffix("/bin/java")
                    && let Some(real) = files::resolve_in_root(
                        &PathBuf::from(format!("/proc/{}/root", p.pid)),
                        &format!("{home}/release"),
                    )
                    && let Ok(t) = std::fs::read_to_string(real)
                    && let Some(v) = t
                        .lines()
                        .find_map(|l| l.strip_prefix("JAVA_VERSION=\""))
                        .map(|v| v.trim_end_matches('"').to_string())
                {
                    rt.push(("java".to_string(), v, rank::INSTALLED));
                }
            }
            procs.push(ProcObs {
                pid: p.pid,
                cmdline,
                exe: exe_s,
            });
        }
        (procs, bins, deps, rt, errors)
    })
    .await;
    match res {
        Ok((p, b, d, rt, mut e)) => {
            errors.append(&mut e);
            (p, b, d, rt, errors)
        }
        Err(e) => {
            errors.push(ProbeError::new("process", format!("process probe failed: {e}")));
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), errors)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn http_probe(
    opts: &DetectOptions,
    ports: &[PortObs],
    listening: &Option<Vec<netproc::Listen>>,
    published: &[(u16, u16)],
    container_ip: Option<IpAddr>,
    on_host: bool,
    running: bool,
    deadline: Instant,
) -> (Vec<HttpObs>, Vec<ProbeError>) {
    let mut errors = Vec::new();
    if !opts.http || !running {
        return (Vec::new(), errors);
    }
    // which container ports: what really listens (when known), else what is exposed/published
    let mut targets: Vec<u16> = match listening {
        Some(l) => l.iter().filter(|l| l.external()).map(|l| l.port).collect(),
        None => ports.iter().map(|p| p.port).collect(),
    };
    if let Some(l) = listening {
        for lo in l.iter().filter(|l| !l.external()) {
            if !l.iter().any(|x| x.port == lo.port && x.external()) {
                errors.push(ProbeError::new(
                    "http",
                    format!("port {} listens on loopback only: not probed", lo.port),
                ));
            }
        }
    }
    targets.sort_unstable();
    targets.dedup();
    targets.retain(|p| {
        let skip = NON_HTTP_PORTS.contains(p);
        if skip {
            errors.push(ProbeError::new(
                "http",
                format!("port {p}: a non-HTTP service port, not probed"),
            ));
        }
        !skip
    });
    if targets.len() > MAX_HTTP_PORTS {
        errors.push(ProbeError::new(
            "http",
            format!(
                "{} ports listen; probed the first {MAX_HTTP_PORTS}",
                targets.len()
            ),
        ));
        targets.truncate(MAX_HTTP_PORTS);
    }
    let mut reqs = Vec::new();
    for port in targets {
        let addr = match published.iter().find(|(c, _)| *c == port) {
            Some((_, hp)) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *hp),
            None => match container_ip {
                Some(ip) if on_host => SocketAddr::new(ip, port),
                _ => {
                    errors.push(ProbeError::new(
                        "http",
                        format!("port {port}: not published on this host and the container network is not reachable"),
                    ));
                    continue;
                }
            },
        };
        for (method, path) in [("GET", "/"), ("HEAD", "/"), ("GET", NOT_FOUND_PATH)] {
            reqs.push(async move {
                let left = deadline.saturating_duration_since(Instant::now());
                let t = opts.http_timeout.min(left).max(Duration::from_millis(50));
                (port, method, path, http::request(addr, method, path, t).await)
            });
        }
    }
    let results = futures_util::future::join_all(reqs).await;
    let mut out = Vec::new();
    let mut failed_ports = BTreeSet::new();
    for (port, method, path, r) in results {
        match r {
            Ok(resp) => {
                if resp.truncated {
                    errors.push(ProbeError::new(
                        "http",
                        format!(
                            "port {port} {method} {path}: headers larger than {} KiB; truncated",
                            http::MAX_HEADER_BYTES / 1024
                        ),
                    ));
                }
                out.push(http::to_obs(port, &format!("{method} {path}"), resp));
            }
            Err(e) => {
                if failed_ports.insert((port, e.contains("no answer"))) || !e.contains("no answer") {
                    errors.push(ProbeError::new("http", e));
                }
            }
        }
    }
    (out, errors)
}

/// Archive API fallback: one streamed tar per app directory, concurrently, filtered on the fly.
async fn archive_files(
    engine: &Engine,
    container: &str,
    dirs: &[String],
    mut coll: Collector,
    opts: &DetectOptions,
    deadline: Instant,
) -> Collector {
    // each directory is read into its own collector on a blocking thread
    let futs = dirs.iter().map(|dir| {
        let dir = dir.clone();
        let mut c = Collector::new_like(&coll);
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
            let d2 = dir.clone();
            let parser = tokio::task::spawn_blocking(move || {
                let r = files::read_tar(files::ChannelReader::new(rx), &d2, &mut c, deadline);
                (c, r)
            });
            let mut stream = Box::pin(engine.archive_stream(container, &dir));
            let mut total = 0usize;
            let mut err: Option<String> = None;
            loop {
                let next = tokio::time::timeout_at(deadline.into(), stream.next()).await;
                match next {
                    Ok(Some(Ok(chunk))) => {
                        total += chunk.len();
                        if tx.send(chunk).await.is_err() {
                            break; // parser finished early
                        }
                        if total > opts.max_archive_bytes {
                            err = Some(format!(
                                "{dir}: archive larger than {} MiB; read partly",
                                opts.max_archive_bytes >> 20
                            ));
                            break;
                        }
                    }
                    Ok(Some(Err(e))) => {
                        let msg = e.to_string();
                        if !msg.contains("404") && !msg.to_ascii_lowercase().contains("no such file") {
                            err = Some(format!("{dir}: {msg}"));
                        }
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        err = Some(format!("{dir}: time budget exhausted while reading the archive"));
                        break;
                    }
                }
            }
            drop(tx);
            let (mut c, r) = match parser.await {
                Ok(x) => x,
                Err(e) => return (None, Some(format!("{dir}: archive parser failed: {e}"))),
            };
            if total > 0 {
                c.files.dirs.push(dir.clone());
            }
            let e2 = r.err().filter(|_| total > 0 && err.is_none());
            (Some(c), err.or(e2))
        }
    });
    let results = futures_util::future::join_all(futs).await;
    for (c, err) in results {
        if let Some(c) = c {
            coll.merge(c);
        }
        if let Some(e) = err {
            coll.errors.push(ProbeError::new("files", e));
        }
    }
    coll
}

#[cfg(test)]
mod tests {
    use super::rfc3339_epoch;

    #[test]
    fn docker_started_at_parses() {
        assert_eq!(rfc3339_epoch("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_epoch("2026-12-01T22:13:24.123456789Z"),
            Some(1_796_163_204)
        );
        assert_eq!(rfc3339_epoch("0001-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_epoch("garbage"), None);
    }
}
