//! `obs-stack doctor` against real engines and real sockets: the running lab daemon (ready,
//! exit 0), a missing socket, a stale socket and a closed TCP port (not running, exit 3), a
//! socket this user may not open, checked as an unprivileged user (permission denied, exit 4),
//! and a read-only socket proxy in front of the real daemon (write access fails, exit 1).
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::docker_tests_enabled;
use serde_json::Value;

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn doctor_cmd(bin: &Path, docker_host: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("doctor").args(args).env("NO_COLOR", "1");
    match docker_host {
        Some(h) => cmd.env("DOCKER_HOST", h),
        None => cmd.env_remove("DOCKER_HOST"),
    };
    cmd
}

/// Runs `doctor --json` (and the table) and returns (exit code, report); checks both agree.
fn doctor(cmd_for: impl Fn(&[&str]) -> Command) -> (i32, Value) {
    let o = cmd_for(&["--json"]).output().unwrap();
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", show(&o)));
    let code = o.status.code().unwrap();
    assert_eq!(report["exit_code"].as_i64(), Some(code as i64), "{}", show(&o));
    let table = cmd_for(&[]).output().unwrap();
    assert_eq!(
        table.status.code(),
        Some(code),
        "table and JSON disagree: {}",
        show(&table)
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("verdict: {}", report["verdict"].as_str().unwrap())),
        "{text}"
    );
    (code, report)
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn status(report: &Value, id: &str) -> String {
    check(report, id)["status"].as_str().unwrap().to_string()
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_obs-stack"))
}

#[test]
fn doctor_is_ready_against_the_running_daemon() {
    if !docker_tests_enabled("doctor_is_ready_against_the_running_daemon") {
        return;
    }
    // Hold one of the stack's ports (or find it already taken): doctor must name it, and a
    // busy port is only a warning.
    let (port, service) = (3200u16, "Tempo");
    let _held = std::net::TcpListener::bind(("127.0.0.1", port));
    let (code, r) = doctor(|a| doctor_cmd(&bin(), None, a));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["verdict"], "ready");
    assert_eq!(status(&r, "engine"), "ok");
    assert_eq!(status(&r, "api_version"), "ok");
    assert_eq!(status(&r, "write_access"), "ok");
    assert!(["ok", "warn"].contains(&status(&r, "compose").as_str()), "{r:#}");
    assert!(check(&r, "compose")["data"]["version"].is_string(), "{r:#}");
    assert!(["ok", "warn"].contains(&status(&r, "disk").as_str()), "{r:#}");
    assert!(check(&r, "disk")["data"]["available_bytes"].as_u64().unwrap() > 0);
    // up's own port is checked too (free, or another lab test's backend)
    assert!(["ok", "warn"].contains(&status(&r, "up_port").as_str()), "{r:#}");
    assert_eq!(check(&r, "up_port")["data"]["port"], 4319, "{r:#}");
    let ports = check(&r, "ports");
    assert_eq!(ports["status"], "warn", "{ports:#}");
    assert!(
        ports["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{port} ({service})")),
        "{ports:#}"
    );
    let api = check(&r, "api_version")["data"]["api_version"]
        .as_str()
        .unwrap()
        .to_string();
    let cli_api = common::docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(
        api, cli_api,
        "doctor and the docker CLI disagree on the API version"
    );
}

#[test]
fn doctor_says_not_running_for_a_missing_or_stale_socket_or_closed_port() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.sock");
    let host = format!("unix://{}", missing.display());
    let (code, r) = doctor(|a| doctor_cmd(&bin(), Some(&host), a));
    assert_eq!(code, 3, "{r:#}");
    assert_eq!(r["engine_problem"], "not_running");
    let engine = check(&r, "engine");
    assert_eq!(engine["status"], "fail");
    assert!(
        engine["detail"].as_str().unwrap().contains("does not exist"),
        "{engine:#}"
    );
    assert!(
        engine["fix"].as_str().unwrap().contains("systemctl start docker"),
        "{engine:#}"
    );
    assert_eq!(status(&r, "api_version"), "skip");
    assert_eq!(status(&r, "write_access"), "skip");

    // A socket file nobody listens on (dockerd was killed).
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let host = format!("unix://{}", stale.display());
    let (code, r) = doctor(|a| doctor_cmd(&bin(), Some(&host), a));
    assert_eq!(code, 3, "{r:#}");
    assert!(
        check(&r, "engine")["detail"].as_str().unwrap().contains("stale"),
        "{r:#}"
    );

    // A TCP DOCKER_HOST where nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let host = format!("tcp://127.0.0.1:{port}");
    let (code, r) = doctor(|a| doctor_cmd(&bin(), Some(&host), a));
    assert_eq!(code, 3, "{r:#}");
    assert_eq!(r["engine_problem"], "remote_unreachable");
    assert!(
        check(&r, "engine")["fix"]
            .as_str()
            .unwrap()
            .contains("unset DOCKER_HOST"),
        "{r:#}"
    );
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The binary copied where an unprivileged user can run it.
fn world_runnable_binary(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = dir.join("obs-stack");
    std::fs::copy(bin(), &b).unwrap();
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o755)).unwrap();
    b
}

/// `setpriv` to nobody (uid/gid 65534, no supplementary groups).
fn as_nobody(binary: &Path, docker_host: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary)
        .arg("doctor")
        .args(args)
        .env("NO_COLOR", "1")
        .env("HOME", "/");
    match docker_host {
        Some(h) => cmd.env("DOCKER_HOST", h),
        None => cmd.env_remove("DOCKER_HOST"),
    };
    cmd
}

#[test]
fn doctor_says_permission_denied_for_an_unreadable_socket() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and setpriv to run doctor as an unprivileged user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = world_runnable_binary(dir.path());

    // A live socket owned by root with mode 000, checked by nobody.
    let sock = dir.path().join("locked.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o000)).unwrap();
    let host = format!("unix://{}", sock.display());
    let (code, r) = doctor(|a| as_nobody(&binary, Some(&host), a));
    assert_eq!(code, 4, "{r:#}");
    assert_eq!(r["engine_problem"], "permission_denied");
    let engine = check(&r, "engine");
    let detail = engine["detail"].as_str().unwrap();
    assert!(
        detail.contains("permission denied") && detail.contains("mode 0000"),
        "{engine:#}"
    );
    assert!(engine["fix"].as_str().unwrap().contains("sudo"), "{engine:#}");
    assert_eq!(status(&r, "write_access"), "skip");

    // The real daemon's socket (root:docker 0660), checked by nobody, who is not in the group.
    if docker_tests_enabled("doctor permission denied on the real socket") {
        let (code, r) = doctor(|a| as_nobody(&binary, None, a));
        assert_eq!(code, 4, "{r:#}");
        let engine = check(&r, "engine");
        let detail = engine["detail"].as_str().unwrap();
        assert!(
            detail.contains("permission denied on the socket /var/run/docker.sock"),
            "{engine:#}"
        );
        assert!(detail.contains("not in group"), "{engine:#}");
        assert!(
            engine["fix"].as_str().unwrap().contains("usermod -aG"),
            "{engine:#}"
        );
    }
}

/// A Docker socket proxy: `proxy.py unix:/path|tcp:host:port /var/run/docker.sock ro|rw`.
/// In `ro` mode (like docker-socket-proxy with POST=0) GET and HEAD are forwarded to the real
/// socket and anything else gets 403; `rw` forwards everything.
const PROXY: &str = r#"
import http.client, http.server, socket, socketserver, sys
LISTEN, UPSTREAM, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
class Upstream(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=30)
    def connect(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(UPSTREAM)
        self.sock = s
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None
    def forward(self):
        body = self._body()
        c = Upstream()
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        c.request(self.command, self.path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
    def deny(self):
        self._body()
        data = b'{"message":"read-only socket proxy: ' + self.command.encode() + b' is not allowed"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_HEAD = forward
    do_POST = do_PUT = do_DELETE = (deny if MODE == "ro" else forward)
class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
if LISTEN.startswith("unix:"):
    srv = UnixServer(LISTEN[5:], Handler)
    print("ready", flush=True)
else:
    host, port = LISTEN[4:].rsplit(":", 1)
    srv = TcpServer((host, int(port)), Handler)
    print("ready %d" % srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Proxy(Child);
impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the proxy; returns it and its "ready [port]" line.
fn start_proxy(dir: &Path, listen: &str, mode: &str) -> (Proxy, String) {
    let script = dir.join("proxy.py");
    std::fs::write(&script, PROXY).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .args([listen, "/var/run/docker.sock", mode])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("ready"), "proxy did not start: {line:?}");
    (Proxy(child), line.trim().to_string())
}

#[test]
fn doctor_fails_write_access_behind_a_read_only_socket_proxy() {
    if !docker_tests_enabled("doctor_fails_write_access_behind_a_read_only_socket_proxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ro.sock");
    let (_proxy, _) = start_proxy(dir.path(), &format!("unix:{}", sock.display()), "ro");

    let host = format!("unix://{}", sock.display());
    let (code, r) = doctor(|a| doctor_cmd(&bin(), Some(&host), a));
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["verdict"], "not ready");
    assert_eq!(status(&r, "engine"), "ok", "{r:#}");
    let w = check(&r, "write_access");
    assert_eq!(w["status"], "fail", "{w:#}");
    assert!(w["detail"].as_str().unwrap().contains("403"), "{w:#}");
    assert!(r["engine_problem"].is_null());
}

/// This machine's first non-loopback IPv4 address (the engine reached through it counts as a
/// remote host).
fn non_loopback_ipv4() -> Option<String> {
    let out = Command::new("ip").args(["-4", "-o", "addr"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let addr = l.split_whitespace().nth(3)?.split('/').next()?.to_string();
        (!addr.starts_with("127.")).then_some(addr)
    })
}

#[test]
fn doctor_treats_a_tcp_docker_host_as_remote() {
    if !docker_tests_enabled("doctor_treats_a_tcp_docker_host_as_remote") {
        return;
    }
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!("skipping: no non-loopback IPv4 address");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, ready) = start_proxy(dir.path(), &format!("tcp:{ip}:0"), "rw");
    let port = ready.trim_start_matches("ready ").to_string();
    let host = format!("tcp://{ip}:{port}");
    let (code, r) = doctor(|a| doctor_cmd(&bin(), Some(&host), a));
    assert_eq!(code, 0, "{r:#}");
    let engine = check(&r, "engine");
    assert_eq!(engine["status"], "ok");
    assert!(
        engine["detail"]
            .as_str()
            .unwrap()
            .contains("remote host via DOCKER_HOST"),
        "{engine:#}"
    );
    // Local disk and ports say nothing about a remote engine.
    assert_eq!(status(&r, "disk"), "skip");
    assert_eq!(status(&r, "ports"), "skip");
    assert_eq!(status(&r, "write_access"), "ok");
}
