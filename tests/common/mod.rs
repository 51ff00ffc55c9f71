//! The lab harness shared by the integration tests: real Docker, real containers.
//!
//! Docker tests run when `OBS_STACK_DOCKER_TESTS=1` (set by `tests/run.sh`, which also builds
//! the images); otherwise each prints why it skipped. Every container a test starts carries
//! `io.obs-stack.test=<run id>` and a unique name, and is removed by a guard whose `Drop`
//! never panics, so cleanup also happens when a test fails.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
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
        Self::try_run(stem, image, extra, cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`TestContainer::run`], but returns the `docker run` failure instead of panicking
    /// (the guard still removes a half-created container).
    pub fn try_run(stem: &str, image: &str, extra: &[&str], cmd: &[&str]) -> Result<TestContainer, String> {
        let name = unique_name(stem);
        let mut guard = Guard::new();
        guard.container(&name);
        let label = format!("{TEST_LABEL}={}", run_id());
        let mut args = vec!["run", "-d", "--name", &name, "--label", &label];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(cmd);
        let out = docker(&args);
        if !out.status.success() {
            return Err(format!(
                "docker {:?} failed: {}",
                args,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TestContainer { name, _guard: guard })
    }

    /// Whether the container is running now (false when it exited or is gone).
    pub fn is_running(&self) -> bool {
        let out = docker(&["inspect", "-f", "{{.State.Running}}", &self.name]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "true"
    }

    /// `docker inspect -f FORMAT` on this container (empty on failure).
    pub fn inspect(&self, format: &str) -> String {
        let out = docker(&["inspect", "-f", format, &self.name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
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

// ---------------------------------------------------------------------------------------------
// The fixture corpus: tests/fixtures/apps/<name>/ with a Dockerfile and expected.yaml, built
// into obs-lab/fixture-<name>:latest by tests/lab/build-fixtures.sh.

/// The fixture names that are contracts (coord notes); every one must exist.
pub const CORPUS: &[&str] = &[
    "py-flask",
    "py-django",
    "py-fastapi",
    "py-worker",
    "node-express",
    "node-nestjs",
    "node-koa",
    "java-springboot",
    "java-plain",
    "go-gin",
    "go-nethttp",
    "ruby-sinatra",
    "infra-nginx",
    "infra-postgres",
    "infra-redis",
    "neg-sleep",
];

/// The labels a fixture declares in its `expected.yaml`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Expected {
    /// `app` | `infra` | `negative`
    pub kind: String,
    /// `python|node|java|go|ruby|php|none`
    pub language: String,
    /// lower-case slug, or `unknown`
    pub framework: String,
    #[serde(default)]
    pub server: Option<String>,
    /// major.minor (a bare major for Java, e.g. "17")
    #[serde(default)]
    pub runtime_version: Option<String>,
    #[serde(default)]
    pub framework_version: Option<String>,
    /// container port it listens on; absent when it listens on none
    #[serde(default)]
    pub port: Option<u16>,
    /// a path answering 2xx over HTTP; absent when the port does not speak HTTP
    #[serde(default)]
    pub http_path: Option<String>,
}

pub const KINDS: &[&str] = &["app", "infra", "negative"];
pub const LANGUAGES: &[&str] = &["python", "node", "java", "go", "ruby", "php", "none"];

impl Expected {
    /// Checks the values against the contract; returns every problem found.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let slug = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_./".contains(c))
        };
        let version = |s: &str| {
            let parts: Vec<&str> = s.split('.').collect();
            !parts.is_empty()
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        };
        if !KINDS.contains(&self.kind.as_str()) {
            problems.push(format!("kind {:?} is not one of {KINDS:?}", self.kind));
        }
        if !LANGUAGES.contains(&self.language.as_str()) {
            problems.push(format!(
                "language {:?} is not one of {LANGUAGES:?}",
                self.language
            ));
        }
        if !slug(&self.framework) {
            problems.push(format!("framework {:?} is not a lower-case slug", self.framework));
        }
        if let Some(s) = &self.server
            && !slug(s)
        {
            problems.push(format!("server {s:?} is not a lower-case slug"));
        }
        if let Some(v) = &self.runtime_version
            && (!version(v) || v.split('.').count() > 2)
        {
            problems.push(format!("runtime_version {v:?} is not major[.minor]"));
        }
        if let Some(v) = &self.framework_version
            && !version(v)
        {
            problems.push(format!("framework_version {v:?} is not a dotted version"));
        }
        if let Some(p) = &self.http_path {
            if !p.starts_with('/') {
                problems.push(format!("http_path {p:?} does not start with /"));
            }
            if self.port.is_none() {
                problems.push("http_path without port".to_string());
            }
        }
        match self.kind.as_str() {
            "app" => {
                if self.language == "none" {
                    problems.push("an app fixture needs a language".to_string());
                }
                if self.runtime_version.is_none() {
                    problems.push("an app fixture needs runtime_version".to_string());
                }
                if self.port.is_some() && self.http_path.is_none() {
                    problems.push("an app fixture with a port must declare http_path".to_string());
                }
            }
            "infra" if self.port.is_none() => {
                problems.push("an infra fixture needs a port".to_string());
            }
            "negative" if self.framework != "unknown" => {
                problems.push("a negative fixture has framework: unknown".to_string());
            }
            _ => {}
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Every fixture directory (one holding a Dockerfile), sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("Dockerfile").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The image a fixture is built into.
pub fn fixture_image(name: &str) -> String {
    format!("obs-lab/fixture-{name}:latest")
}

/// Parses a fixture's expected.yaml (no validation).
pub fn try_expected(fixture: &str) -> Result<Expected, String> {
    let path = fixtures_dir().join(fixture).join("expected.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A fixture's expected.yaml, parsed and validated; panics with the reason (test setup).
pub fn expected(fixture: &str) -> Expected {
    let e = try_expected(fixture).unwrap_or_else(|e| panic!("{e}"));
    if let Err(p) = e.validate() {
        panic!("{fixture}/expected.yaml: {p}");
    }
    e
}

/// Starts a fixture's image (publishing its port on 127.0.0.1 when it has one).
pub fn try_start_fixture(name: &str) -> Result<TestContainer, String> {
    let exp = try_expected(name)?;
    let publish = exp.port.map(|p| format!("127.0.0.1::{p}"));
    let mut extra: Vec<&str> = Vec::new();
    if let Some(p) = &publish {
        extra.extend(["-p", p.as_str()]);
    }
    TestContainer::try_run(name, &fixture_image(name), &extra, &[])
}

/// Starts a fixture's image; panics when it cannot be started (test setup).
pub fn start_fixture(name: &str) -> TestContainer {
    try_start_fixture(name).unwrap_or_else(|e| panic!("{e}"))
}

/// `OBS_STACK_AGENT_IMAGE_<RUNTIME>` for the lab's agent images (built by
/// tests/lab/build-agents.sh): init and inject both honour them.
pub fn lab_agent_env() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (var, repo) in [
        (
            "OBS_STACK_AGENT_IMAGE_PYTHON",
            "obs-lab/autoinstrumentation-python",
        ),
        ("OBS_STACK_AGENT_IMAGE_NODE", "obs-lab/autoinstrumentation-nodejs"),
        ("OBS_STACK_AGENT_IMAGE_JAVA", "obs-lab/autoinstrumentation-java"),
    ] {
        let o = docker(&["images", repo, "--format", "{{.Tag}}"]);
        if let Some(tag) = String::from_utf8_lossy(&o.stdout).lines().next() {
            out.push((var.to_string(), format!("{repo}:{tag}")));
        }
    }
    out
}

/// stdout then stderr of a finished command, as text (for assertion messages).
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `obs-stack serve` (the binary `bin`, mounted) in a lab container on `net` as
/// `otel-collector`, its data in `data`, its API published on 127.0.0.1; returns the
/// container and the API's host port once it accepts connections.
pub fn serve_backend(stem: &str, bin: &str, net: &str, data: &Path) -> (TestContainer, u16) {
    let backend = TestContainer::run(
        stem,
        "obs-lab/base:bookworm",
        &[
            "--network",
            net,
            "--network-alias",
            "otel-collector",
            "-p",
            "127.0.0.1::4319",
            "-v",
            &format!("{bin}:/usr/local/bin/obs-stack:ro"),
            "-v",
            &format!("{}:/data", data.display()),
        ],
        &[
            "/usr/local/bin/obs-stack",
            "serve",
            "--data-dir",
            "/data",
            "--otlp-grpc",
            "0.0.0.0:4317",
            "--otlp-http",
            "0.0.0.0:4318",
            "--api",
            "0.0.0.0:4319",
        ],
    );
    let api = backend.host_port(4319);
    assert!(
        wait_tcp(api, Duration::from_secs(60)),
        "backend API: {}",
        backend.logs()
    );
    (backend, api)
}
