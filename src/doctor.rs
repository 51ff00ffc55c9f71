//! The pure half of `obs-stack doctor`: the checks' data model, the verdict and its exit code,
//! the interpretation of what the probes found (socket state, versions, free space, ports),
//! and the human table. The probing itself (Docker API, `docker compose version`, statvfs,
//! binding ports) lives in `cmd::doctor`.
//!
//! Exit codes (see `exit.rs`): doctor *reports* rather than errors, so it always prints the
//! whole table and then exits
//! - 0 when everything the main commands need is present (warnings allowed),
//! - 3 when the Docker engine is unreachable (not running, no socket, DOCKER_HOST down),
//! - 4 when the Docker socket refuses us (permission denied),
//! - 1 when anything else required is missing (compose, disk space, write access, old engine).
use serde::Serialize;

/// The ports the default stack publishes on 127.0.0.1, with the service that owns each.
/// `init` reuses this list to move a service to a free port when its default is taken.
pub const DEFAULT_STACK_PORTS: &[(u16, &str)] = &[
    (3000, "Grafana"),
    (9090, "Prometheus"),
    (9093, "Alertmanager"),
    (4317, "OTLP gRPC (collector)"),
    (4318, "OTLP HTTP (collector)"),
    (3100, "Loki"),
    (3200, "Tempo"),
];

/// Oldest Docker Engine API obs-stack negotiates down to (Docker 20.10).
pub const MIN_API_VERSION: (u32, u32) = (1, 41);
/// Below this much free space for Docker's data, the stack's volumes cannot be created.
pub const DISK_FAIL_BYTES: u64 = 1 << 30;
/// Below this much, the stack runs but retention will soon fill the disk.
pub const DISK_WARN_BYTES: u64 = 5 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not checked because something it depends on failed (the engine is unreachable).
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// Why the engine did not answer: each cause has its own fix and exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineProblem {
    /// The unix socket does not exist, or nothing listens on it (stale socket file).
    NotRunning,
    /// The socket exists but this user may not connect to it.
    PermissionDenied,
    /// DOCKER_HOST names a TCP/SSH host that does not answer.
    RemoteUnreachable,
    /// DOCKER_HOST uses a scheme obs-stack cannot talk to.
    UnsupportedHost,
    /// The engine answered with an error.
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier for scripts: engine, api_version, compose, disk, ports, write_access.
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    /// Whether the main commands need this; a failed required check makes the exit non-zero.
    pub required: bool,
    pub detail: String,
    /// What to do about it; None when there is nothing to do.
    pub fix: Option<String>,
    /// Check-specific facts for scripts (versions, paths, bytes, ports).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Check {
    pub fn new(id: &'static str, title: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            id,
            title,
            status,
            required: true,
            detail: detail.into(),
            fix: None,
            data: serde_json::Value::Null,
        }
    }
    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
    pub fn optional(mut self) -> Check {
        self.required = false;
        self
    }
    pub fn data(mut self, data: serde_json::Value) -> Check {
        self.data = data;
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "ready" (exit 0, maybe with warnings) or "not ready".
    pub verdict: &'static str,
    pub exit_code: u8,
    pub docker_host: String,
    pub engine_problem: Option<EngineProblem>,
    pub warnings: usize,
    pub failures: usize,
    pub checks: Vec<Check>,
}

/// Turns the checks into the verdict and exit code described in the module docs.
pub fn report(docker_host: String, engine_problem: Option<EngineProblem>, checks: Vec<Check>) -> Report {
    let failures = checks
        .iter()
        .filter(|c| c.required && c.status == Status::Fail)
        .count();
    let warnings = checks
        .iter()
        .filter(|c| c.status == Status::Warn || (!c.required && c.status == Status::Fail))
        .count();
    let exit_code = match engine_problem {
        Some(EngineProblem::PermissionDenied) => crate::exit::DOCKER_PERMISSION,
        Some(EngineProblem::NotRunning | EngineProblem::RemoteUnreachable) => crate::exit::DOCKER_UNREACHABLE,
        Some(EngineProblem::UnsupportedHost | EngineProblem::Error) => crate::exit::NEGATIVE,
        None if failures > 0 => crate::exit::NEGATIVE,
        None => crate::exit::OK,
    };
    Report {
        verdict: if exit_code == crate::exit::OK {
            "ready"
        } else {
            "not ready"
        },
        exit_code,
        docker_host,
        engine_problem,
        warnings,
        failures,
        checks,
    }
}

/// How DOCKER_HOST (or the default) reaches the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    Unix(String),
    Tcp(String),
    Ssh(String),
    Other(String),
}

pub fn host_kind(host: &str) -> HostKind {
    if let Some(path) = host.strip_prefix("unix://") {
        HostKind::Unix(path.to_string())
    } else if host.starts_with('/') {
        HostKind::Unix(host.to_string())
    } else if let Some(rest) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        HostKind::Tcp(rest.to_string())
    } else if let Some(rest) = host.strip_prefix("https://") {
        HostKind::Tcp(rest.to_string())
    } else if let Some(rest) = host.strip_prefix("ssh://") {
        HostKind::Ssh(rest.to_string())
    } else {
        HostKind::Other(host.to_string())
    }
}

/// True when a TCP host is this machine (its ports and disk are the ones we can check).
pub fn tcp_is_local(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1" | "0.0.0.0")
}

/// What the probes saw of a unix socket before and while connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFacts {
    pub path: String,
    pub exists: bool,
    pub is_socket: bool,
    /// access(2) R_OK|W_OK for the effective user.
    pub accessible: bool,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
    pub uid: u32,
    /// Whether the user is in the socket's group (when known).
    pub in_group: Option<bool>,
}

/// Classifies a failed connection to a unix socket from what the filesystem says and the
/// error text; returns the problem, the detail and the fix.
pub fn diagnose_unix(facts: &SocketFacts, error: &str) -> (EngineProblem, String, String) {
    let lower = error.to_ascii_lowercase();
    let start = "start it: `sudo systemctl start docker` (or `sudo dockerd &`), or point DOCKER_HOST at a running engine";
    if !facts.exists {
        return (
            EngineProblem::NotRunning,
            format!("not running: the socket {} does not exist", facts.path),
            start.to_string(),
        );
    }
    if !facts.is_socket {
        return (
            EngineProblem::NotRunning,
            format!("{} exists but is not a socket", facts.path),
            format!("remove the stray file {} and start Docker: {start}", facts.path),
        );
    }
    if !facts.accessible || lower.contains("permission denied") {
        let who = match (&facts.owner, &facts.group, facts.mode) {
            (Some(o), Some(g), Some(m)) => format!(" (owner {o}, group {g}, mode {:04o})", m & 0o7777),
            _ => String::new(),
        };
        let group_note = match (facts.in_group, &facts.group) {
            (Some(false), Some(g)) => format!("; you (uid {}) are not in group '{g}'", facts.uid),
            _ => String::new(),
        };
        let fix = match &facts.group {
            Some(g) if g != "root" => format!(
                "add yourself to the '{g}' group: `sudo usermod -aG {g} $USER`, then log in again (or `newgrp {g}`); or run obs-stack with sudo"
            ),
            _ => format!(
                "the socket's permissions do not let you connect; ask the administrator to make {} group-accessible (e.g. group 'docker', mode 0660), or run obs-stack with sudo",
                facts.path
            ),
        };
        return (
            EngineProblem::PermissionDenied,
            format!("permission denied on the socket {}{who}{group_note}", facts.path),
            fix,
        );
    }
    if lower.contains("connection refused") || lower.contains("no such file") {
        return (
            EngineProblem::NotRunning,
            format!(
                "not running: nothing answers on {} (stale socket file)",
                facts.path
            ),
            start.to_string(),
        );
    }
    (
        EngineProblem::Error,
        format!("the engine at unix://{} failed: {error}", facts.path),
        "look at the daemon's log (`journalctl -u docker`) and retry".to_string(),
    )
}

/// Classifies a failed connection to a TCP/SSH DOCKER_HOST.
pub fn diagnose_remote(host: &str, error: &str) -> (EngineProblem, String, String) {
    (
        EngineProblem::RemoteUnreachable,
        format!("the engine at DOCKER_HOST={host} does not answer: {error}"),
        "check that the host is up and its daemon listens there (and TLS settings: DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), or unset DOCKER_HOST to use the local socket".to_string(),
    )
}

/// Trims a client error chain to what a person needs: "Error in the hyper legacy client:
/// client error (Connect): tcp connect error: Connection refused (os error 111)" becomes
/// "tcp connect error: Connection refused (os error 111)".
pub fn short_error(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in text.split(": ") {
        let noise = p.starts_with("Error in the hyper legacy client") || p.starts_with("client error (");
        if !noise && !parts.contains(&p) {
            parts.push(p);
        }
    }
    if parts.is_empty() {
        text.to_string()
    } else {
        parts.join(": ")
    }
}

/// Parses "1.41" into (1, 41).
pub fn parse_api_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Which compose implementation answered and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComposeFound {
    /// "docker compose" (v2 plugin) or "docker-compose" (standalone).
    pub command: String,
    pub version: String,
}

/// Extracts the version from `docker compose version` / `docker-compose version` output:
/// "Docker Compose version v2.27.0", "docker-compose version 1.29.2, build unknown",
/// or a bare "2.27.0" from `--short`.
pub fn parse_compose_version(output: &str) -> Option<String> {
    let re = regex::Regex::new(r"(?i)\bv?(\d+\.\d+(?:\.\d+)?(?:[-+][0-9A-Za-z.\-]+)?)").ok()?;
    let first = output.lines().find(|l| !l.trim().is_empty())?;
    re.captures(first).map(|c| c[1].trim_end_matches(',').to_string())
}

/// Judges a compose implementation: v2 is ok; v1 ≥ 1.27 reads the Compose spec files init
/// writes but is end-of-life (warn); older v1 cannot read them (fail).
pub fn compose_check(found: Option<&ComposeFound>, v2_error: &str) -> Check {
    let title = "Compose";
    let install = "install the Compose v2 plugin: `sudo apt-get install docker-compose-plugin` (Docker's apt repo) or see https://docs.docker.com/compose/install/linux/";
    let Some(found) = found else {
        let why = if v2_error.is_empty() {
            String::new()
        } else {
            format!(" (`docker compose version`: {v2_error})")
        };
        return Check::new(
            "compose",
            title,
            Status::Fail,
            format!(
                "neither `docker compose` nor `docker-compose` was found{why}; it runs the stack init writes"
            ),
        )
        .fix(install);
    };
    let data = serde_json::json!({ "command": found.command, "version": found.version });
    let major: u32 = found
        .version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let minor: u32 = found
        .version
        .split('.')
        .nth(1)
        .and_then(|m| m.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or(0);
    if major >= 2 {
        Check::new(
            "compose",
            title,
            Status::Ok,
            format!("{} {}", found.command, found.version),
        )
        .data(data)
    } else if major == 1 && minor >= 27 {
        Check::new(
            "compose",
            title,
            Status::Warn,
            format!(
                "{} {} (Compose v1, end-of-life; it reads obs-stack.yml, use `docker-compose` where the docs say `docker compose`)",
                found.command, found.version
            ),
        )
        .fix(install)
        .data(data)
    } else {
        Check::new(
            "compose",
            title,
            Status::Fail,
            format!(
                "{} {} is too old to read the Compose specification files init writes (needs 1.27+ or v2)",
                found.command, found.version
            ),
        )
        .fix(install)
        .data(data)
    }
}

/// Judges free space where Docker keeps volumes.
pub fn disk_check(path: &str, measured_at: &str, available: u64, total: u64) -> Check {
    let detail = format!(
        "{} free of {} at {measured_at}{}",
        human_bytes(available),
        human_bytes(total),
        if path != measured_at {
            format!(" (Docker data: {path})")
        } else {
            String::new()
        }
    );
    let data = serde_json::json!({ "docker_root": path, "measured_at": measured_at,
        "available_bytes": available, "total_bytes": total });
    let fix = "free space (`docker system prune` removes unused images and build cache), or move Docker's data-root to a bigger disk";
    let status = if available < DISK_FAIL_BYTES {
        Status::Fail
    } else if available < DISK_WARN_BYTES {
        Status::Warn
    } else {
        Status::Ok
    };
    let check = Check::new("disk", "Disk space for volumes", status, detail).data(data);
    if status == Status::Ok {
        check
    } else {
        check.fix(fix)
    }
}

/// One port's state on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortState {
    pub port: u16,
    pub service: &'static str,
    pub free: bool,
    /// Why binding failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Busy ports are a warning: init moves a service to a free port when its default is taken.
pub fn ports_check(states: &[PortState]) -> Check {
    let busy: Vec<&PortState> = states.iter().filter(|p| !p.free).collect();
    let data = serde_json::to_value(states).unwrap_or(serde_json::Value::Null);
    if busy.is_empty() {
        let list: Vec<String> = states.iter().map(|p| p.port.to_string()).collect();
        return Check::new(
            "ports",
            "Stack ports on 127.0.0.1",
            Status::Ok,
            format!("all free: {}", list.join(", ")),
        )
        .data(data);
    }
    let list: Vec<String> = busy
        .iter()
        .map(|p| format!("{} ({})", p.port, p.service))
        .collect();
    Check::new(
        "ports",
        "Stack ports on 127.0.0.1",
        Status::Warn,
        format!(
            "in use: {}; init will publish those services on other free ports",
            list.join(", ")
        ),
    )
    .fix("to keep the defaults, stop what listens there (`ss -ltnp` shows it)")
    .data(data)
}

/// The port `up` publishes its backend's API and UI on: free, taken by an obs-stack backend
/// (a running `up`: fine), or taken by something else (`up` would fail to publish it).
pub fn up_port_check(port: u16, free: bool, ours: bool) -> Check {
    let title = "Port of `obs-stack up`'s API/UI";
    let data = serde_json::json!({"port": port, "free": free, "obs_stack": ours});
    match (free, ours) {
        (true, _) => Check::new("up_port", title, Status::Ok, format!("127.0.0.1:{port} is free")),
        (false, true) => Check::new(
            "up_port",
            title,
            Status::Ok,
            format!("127.0.0.1:{port} is served by a running obs-stack backend"),
        ),
        (false, false) => Check::new(
            "up_port",
            title,
            Status::Warn,
            format!("127.0.0.1:{port} is in use by another program; `obs-stack up` could not publish its API there"),
        )
        .fix(format!(
            "stop what listens there (`ss -ltnp` shows it), or run `obs-stack up --port <free port>` (not {port})"
        )),
    }
    .data(data)
}

/// What the write probe (a state-changing API call on a container that cannot exist) saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteProbe {
    /// The engine processed the write request (answered "no such container").
    Allowed,
    /// A proxy or authorization plugin refused it.
    Denied { status: u16, message: String },
    /// Something else; not conclusive.
    Unclear(String),
}

pub fn write_check(probe: &WriteProbe, host: &str) -> Check {
    let title = "Recreate containers (write access)";
    match probe {
        WriteProbe::Allowed => Check::new(
            "write_access",
            title,
            Status::Ok,
            format!("the engine at {host} accepts state-changing requests (inject can recreate containers)"),
        ),
        WriteProbe::Denied { status, message } => Check::new(
            "write_access",
            title,
            Status::Fail,
            format!("the engine at {host} refuses state-changing requests ({status}: {message}); detect works, inject cannot recreate containers"),
        )
        .fix("give obs-stack a socket that allows POST/DELETE on containers (a docker-socket-proxy with CONTAINERS=1 POST=1, or the real socket), or an authorization plugin policy that permits it"),
        WriteProbe::Unclear(msg) => Check::new(
            "write_access",
            title,
            Status::Warn,
            format!("could not tell whether the engine accepts state-changing requests: {msg}"),
        ),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The human table: one row per check, its fix underneath when there is one, then the verdict.
pub fn render_table(report: &Report, paint: &dyn Fn(Status, &str) -> String) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.title.len())
        .max()
        .unwrap_or(10)
        .max(5);
    let mut out = String::new();
    out.push_str(&format!("{:<width$}  {:<6}  DETAIL\n", "CHECK", "STATUS"));
    for c in &report.checks {
        let status = format!("{:<6}", c.status.label());
        out.push_str(&format!(
            "{:<width$}  {}  {}\n",
            c.title,
            paint(c.status, &status),
            c.detail
        ));
        if let Some(fix) = &c.fix
            && c.status != Status::Ok
        {
            out.push_str(&format!("{:<width$}  {:<6}  fix: {fix}\n", "", ""));
        }
    }
    let summary = match (report.failures, report.warnings) {
        (0, 0) => String::new(),
        (f, w) => {
            let mut parts = Vec::new();
            if f > 0 {
                parts.push(format!("{f} failed"));
            }
            if w > 0 {
                parts.push(format!("{w} warning{}", if w == 1 { "" } else { "s" }));
            }
            format!(" ({})", parts.join(", "))
        }
    };
    let verdict_status = if report.exit_code == 0 {
        Status::Ok
    } else {
        Status::Fail
    };
    out.push_str(&format!(
        "\nverdict: {}{summary}\n",
        paint(verdict_status, report.verdict)
    ));
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn up_port_is_fine_free_or_ours_and_a_warning_otherwise() {
        assert_eq!(up_port_check(4319, true, false).status, Status::Ok);
        assert_eq!(up_port_check(4319, false, true).status, Status::Ok);
        let c = up_port_check(4319, false, false);
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.as_deref().unwrap().contains("--port"), "{c:?}");
    }

    use super::*;

    fn facts(exists: bool, is_socket: bool, accessible: bool) -> SocketFacts {
        SocketFacts {
            path: "/var/run/docker.sock".into(),
            exists,
            is_socket,
            accessible,
            owner: Some("root".into()),
            group: Some("docker".into()),
            mode: Some(0o140660),
            uid: 1000,
            in_group: Some(false),
        }
    }

    #[test]
    fn missing_socket_means_not_running() {
        let (p, d, _) = diagnose_unix(&facts(false, false, false), "socket not found");
        assert_eq!(p, EngineProblem::NotRunning);
        assert!(d.contains("does not exist"), "{d}");
    }

    #[test]
    fn stale_socket_means_not_running() {
        let (p, d, _) = diagnose_unix(&facts(true, true, true), "Connection refused (os error 111)");
        assert_eq!(p, EngineProblem::NotRunning);
        assert!(d.contains("stale"), "{d}");
    }

    #[test]
    fn inaccessible_socket_means_permission_denied_with_group_fix() {
        let (p, d, fix) = diagnose_unix(&facts(true, true, false), "Permission denied (os error 13)");
        assert_eq!(p, EngineProblem::PermissionDenied);
        assert!(
            d.contains("mode 0660") && d.contains("not in group 'docker'"),
            "{d}"
        );
        assert!(fix.contains("usermod -aG docker"), "{fix}");
    }

    #[test]
    fn exit_codes_follow_the_engine_problem_then_failures() {
        let ok = Check::new("x", "X", Status::Ok, "");
        let warn = Check::new("y", "Y", Status::Warn, "");
        let fail = Check::new("z", "Z", Status::Fail, "");
        assert_eq!(
            report("h".into(), None, vec![ok.clone(), warn.clone()]).exit_code,
            0
        );
        assert_eq!(
            report("h".into(), None, vec![ok.clone(), fail.clone()]).exit_code,
            1
        );
        assert_eq!(
            report("h".into(), None, vec![ok.clone(), fail.clone().optional()]).exit_code,
            0
        );
        let r = report("h".into(), Some(EngineProblem::NotRunning), vec![fail.clone()]);
        assert_eq!((r.exit_code, r.verdict), (3, "not ready"));
        assert_eq!(
            report("h".into(), Some(EngineProblem::PermissionDenied), vec![fail]).exit_code,
            4
        );
    }

    #[test]
    fn compose_versions_parse_and_judge() {
        assert_eq!(
            parse_compose_version("Docker Compose version v2.27.0\n").as_deref(),
            Some("2.27.0")
        );
        assert_eq!(
            parse_compose_version("docker-compose version 1.29.2, build unknown\ndocker-py version: 5.0.3")
                .as_deref(),
            Some("1.29.2")
        );
        assert_eq!(
            parse_compose_version("2.30.3-desktop.1").as_deref(),
            Some("2.30.3-desktop.1")
        );
        let v = |c: &str, v: &str| ComposeFound {
            command: c.into(),
            version: v.into(),
        };
        assert_eq!(
            compose_check(Some(&v("docker compose", "2.27.0")), "").status,
            Status::Ok
        );
        assert_eq!(
            compose_check(Some(&v("docker-compose", "1.29.2")), "").status,
            Status::Warn
        );
        assert_eq!(
            compose_check(Some(&v("docker-compose", "1.25.0")), "").status,
            Status::Fail
        );
        assert_eq!(compose_check(None, "unknown command").status, Status::Fail);
    }

    #[test]
    fn disk_thresholds() {
        assert_eq!(disk_check("/", "/", 10 << 30, 100 << 30).status, Status::Ok);
        assert_eq!(disk_check("/", "/", 2 << 30, 100 << 30).status, Status::Warn);
        assert_eq!(disk_check("/", "/", 100 << 20, 100 << 30).status, Status::Fail);
    }

    #[test]
    fn busy_ports_warn_and_name_the_service() {
        let states = vec![
            PortState {
                port: 3000,
                service: "Grafana",
                free: false,
                error: Some("in use".into()),
            },
            PortState {
                port: 9090,
                service: "Prometheus",
                free: true,
                error: None,
            },
        ];
        let c = ports_check(&states);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("3000 (Grafana)") && !c.detail.contains("9090"),
            "{}",
            c.detail
        );
        assert_eq!(ports_check(&states[1..]).status, Status::Ok);
    }

    #[test]
    fn host_kinds() {
        assert_eq!(
            host_kind("unix:///var/run/docker.sock"),
            HostKind::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            host_kind("tcp://10.0.0.5:2375"),
            HostKind::Tcp("10.0.0.5:2375".into())
        );
        assert!(matches!(host_kind("ssh://me@box"), HostKind::Ssh(_)));
        assert!(tcp_is_local("127.0.0.1:2375") && !tcp_is_local("10.0.0.5:2375"));
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(
            short_error(
                "Error in the hyper legacy client: client error (Connect): client error (Connect): tcp connect error: Connection refused (os error 111)"
            ),
            "tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn stack_ports_are_unique() {
        let mut ports: Vec<u16> = DEFAULT_STACK_PORTS.iter().map(|p| p.0).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), DEFAULT_STACK_PORTS.len());
    }
}
