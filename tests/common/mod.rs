//! The lab harness shared by the integration tests: real Docker, real containers.
//!
//! Docker tests run when `OBS_STACK_DOCKER_TESTS=1` (set by `tests/run.sh`, which also builds
//! the images); otherwise each prints why it skipped. Every container a test starts carries
//! `io.obs-stack.test=<run id>` and a unique name, and is removed by a guard whose `Drop`
//! never panics, so cleanup also happens when a test fails.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const TEST_LABEL: &str = "io.obs-stack.test";

/// True when the lab is built and Docker tests should run; prints a note otherwise.
pub fn docker_tests_enabled(test: &str) -> bool {
    if std::env::var("OBS_STACK_DOCKER_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipping {test}: set OBS_STACK_DOCKER_TESTS=1 (tests/run.sh does) to run Docker tests");
    false
}

/// Identifies this test process' containers: `<pid>-<start time>`.
pub fn run_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{}-{}", std::process::id(), t)
    })
    .clone()
}

/// A unique container/network/volume name with the given stem.
pub fn unique_name(stem: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "obs-test-{stem}-{}-{}",
        run_id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests/fixtures/apps")
}

/// Runs `docker` with the given arguments and returns its output (never panics).
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: format!("cannot run docker: {e}").into_bytes(),
        })
}

/// Runs `docker` and returns trimmed stdout, panicking with stderr on failure (test setup).
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Something Docker holds for a test; removed on drop, errors ignored.
pub enum Resource {
    Container(String),
    Network(String),
    Volume(String),
}

/// Removes its resources (containers first, then networks and volumes) when dropped.
#[derive(Default)]
pub struct Guard {
    items: Vec<Resource>,
}

impl Guard {
    pub fn new() -> Self {
        Guard::default()
    }
    pub fn container(&mut self, name: &str) {
        self.items.push(Resource::Container(name.to_string()));
    }
    pub fn network(&mut self, name: &str) {
        self.items.push(Resource::Network(name.to_string()));
    }
    pub fn volume(&mut self, name: &str) {
        self.items.push(Resource::Volume(name.to_string()));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut items = std::mem::take(&mut self.items);
        items.sort_by_key(|r| match r {
            Resource::Container(_) => 0,
            Resource::Network(_) => 1,
            Resource::Volume(_) => 2,
        });
        for r in items {
            let _ = match &r {
                Resource::Container(n) => docker(&["rm", "-f", "-v", n]),
                Resource::Network(n) => docker(&["network", "rm", n]),
                Resource::Volume(n) => docker(&["volume", "rm", "-f", n]),
            };
        }
    }
}

/// A container started for a test, removed on drop.
pub struct TestContainer {
    pub name: String,
    _guard: Guard,
}

impl TestContainer {
    /// `docker run -d` with the test label and a unique name; `extra` goes before the image.
    pub fn run(stem: &str, image: &str, extra: &[&str], cmd: &[&str]) -> TestContainer {
        let name = unique_name(stem);
        let mut guard = Guard::new();
        guard.container(&name);
        let label = format!("{TEST_LABEL}={}", run_id());
        let mut args = vec!["run", "-d", "--name", &name, "--label", &label];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(cmd);
        docker_ok(&args);
        TestContainer { name, _guard: guard }
    }

    /// The 127.0.0.1 host port published for `container_port/tcp`.
    pub fn host_port(&self, container_port: u16) -> u16 {
        let out = docker_ok(&["port", &self.name, &format!("{container_port}/tcp")]);
        out.lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no 127.0.0.1 port for {container_port} in {out:?}"))
    }

    pub fn logs(&self) -> String {
        let out = docker(&["logs", "--tail", "50", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Waits until a TCP connect to 127.0.0.1:port succeeds.
pub fn wait_tcp(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A plain HTTP/1.0 GET to 127.0.0.1:port, returning (status, headers+body) once it answers.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut s) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            if s.write_all(req.as_bytes()).is_ok() {
                let mut buf = Vec::new();
                let _ = s.take(1 << 20).read_to_end(&mut buf);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(code) = text
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|c| c.parse().ok())
                {
                    return Some((code, text));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    None
}
