//! `obs-stack up` / `down`, the pure part: what each selected container gets (an agent, the
//! fallback, or nothing and why), the backend's image made from obs-stack's own binary, and
//! the state `up` keeps so `down` (or a rerun after a SIGKILL) converges.
//!
//! The Docker side lives in `src/cmd/up.rs`; the backend itself (`src/serve/`) knows nothing
//! of Docker: containers without an agent are observed by `obs-stack watch`, a separate
//! process that pushes what it sees to the backend's documented `POST /api/v1/checks`.
use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The backend container's name, and its DNS name on the backend network.
pub const BACKEND: &str = "obs-stack";
/// The container observing the containers without an agent (Docker stats, HTTP checks).
pub const WATCHER: &str = "obs-stack-watch";
/// The backend's network: instrumented apps join it to reach `http://obs-stack:4318`.
pub const NETWORK: &str = "obs-stack";
/// The backend's data (SQLite, token), kept by `down` unless `--purge`.
pub const VOLUME: &str = "obs-stack-data";
/// The image made from this binary (`<repo>:<version>-<binary hash>`).
pub const IMAGE_REPO: &str = "obs-stack/serve";
pub const API_PORT: u16 = 4319;
pub const OTLP_HTTP_PORT: u16 = 4318;
pub const OTLP_GRPC_PORT: u16 = 4317;
/// Label on the containers, network and volume `up` creates: `backend`, `watch`, `network`, `data`.
pub const COMPONENT_LABEL: &str = "io.obs-stack.component";
/// Where agents export: the backend's OTLP/HTTP port on its network.
pub const ENDPOINT: &str = "http://obs-stack:4318";
/// What `up` asks of agents sending to the backend, where the app sets nothing itself:
/// base-2 exponential histograms merge exactly, so p50/p95/p99 come out with small error.
pub const AGENT_ENV: &[(&str, &str)] = &[(
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
    "base2_exponential_bucket_histogram",
)];

/// What `up` does with one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Recreate it with the runtime's agent (`inject`).
    Agent { runtime: String },
    /// No in-process agent: the watcher records its container stats and checks its HTTP ports.
    Fallback { reason: String, http_ports: Vec<u16> },
    /// Not touched; its container stats are still recorded.
    LeftAlone { reason: String },
}

/// What is known about a container when deciding.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    pub language: Option<String>,
    pub framework: Option<String>,
    /// Detect's infrastructure id (postgresql, redis, nginx …).
    pub infrastructure: Option<String>,
    /// Labelled `io.obs-stack.instrument=false`.
    pub opted_out: bool,
    /// Agents already in it (not obs-stack's own).
    pub existing_agents: Vec<String>,
    /// Container TCP ports it exposes or listens on.
    pub tcp_ports: Vec<u16>,
}

/// The decision for one container. `fallback_text` is agents.yaml's text for the language.
pub fn decide(c: &Candidate, fallback_text: impl Fn(&str) -> String) -> Decision {
    if c.opted_out {
        return Decision::LeftAlone {
            reason: "labelled io.obs-stack.instrument=false".into(),
        };
    }
    if let Some(infra) = &c.infrastructure {
        return Decision::LeftAlone {
            reason: format!("infrastructure ({infra}): container stats only"),
        };
    }
    if !c.existing_agents.is_empty() {
        return Decision::LeftAlone {
            reason: format!("already has an agent ({})", c.existing_agents.join(", ")),
        };
    }
    let lang = c.language.as_deref().unwrap_or("");
    match crate::agents::runtime_key(lang) {
        Some(rt) if rt != "dotnet" => Decision::Agent {
            runtime: rt.to_string(),
        },
        _ => {
            let mut ports = c.tcp_ports.clone();
            ports.sort_unstable();
            ports.dedup();
            Decision::Fallback {
                reason: fallback_text(if lang.is_empty() { "unknown" } else { lang }),
                http_ports: ports,
            }
        }
    }
}

/// One container the watcher observes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WatchTarget {
    pub project: String,
    pub service: String,
    pub container: String,
    /// Ports to check over HTTP (empty: stats only).
    pub http_ports: Vec<u16>,
    /// What detection found the container runs (`go`, `rust` …), for the views of a service
    /// without an agent, which has no SDK to say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Paths the watcher tries, in order, for a service's HTTP check: the usual health endpoints
/// first, `/` last; the first that answers below 400 is the one checked from then on.
pub const CHECK_PATHS: &[&str] = &[
    "/healthz", "/health", "/readyz", "/ready", "/livez", "/ping", "/status", "/",
];

/// The path to check, from what each of [`CHECK_PATHS`] answered (its status, or `None`
/// for no answer): the first below 400, else `/` (so a service that answers only errors is
/// still seen as up, with its status).
pub fn pick_check_path(answers: &[(&'static str, Option<u16>)]) -> &'static str {
    answers
        .iter()
        .find(|(_, st)| st.is_some_and(|s| s < 400))
        .map(|(p, _)| *p)
        .unwrap_or("/")
}

impl WatchTarget {
    /// `PROJECT:SERVICE:CONTAINER[:PORT,PORT[:LANGUAGE]]`, the watcher's `--target` argument.
    pub fn arg(&self) -> String {
        let mut s = format!("{}:{}:{}", self.project, self.service, self.container);
        if !self.http_ports.is_empty() || self.language.is_some() {
            let ports: Vec<String> = self.http_ports.iter().map(u16::to_string).collect();
            s.push(':');
            s.push_str(&ports.join(","));
        }
        if let Some(l) = &self.language {
            s.push(':');
            s.push_str(l);
        }
        s
    }

    pub fn parse(arg: &str) -> Result<WatchTarget> {
        let mut it = arg.split(':');
        let (Some(project), Some(service), Some(container)) = (it.next(), it.next(), it.next()) else {
            anyhow::bail!("--target wants PROJECT:SERVICE:CONTAINER[:PORT,…[:LANGUAGE]], got {arg:?}");
        };
        let http_ports = match it.next() {
            Some(p) if !p.is_empty() => p
                .split(',')
                .map(|p| {
                    p.parse()
                        .with_context(|| format!("--target {arg}: bad port {p:?}"))
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let language = it.next().filter(|l| !l.is_empty()).map(String::from);
        Ok(WatchTarget {
            project: project.into(),
            service: service.into(),
            container: container.into(),
            http_ports,
            language,
        })
    }
}

/// What `up` did, so `down` can undo exactly that (and a rerun after a kill converges).
/// Written before each change it describes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpState {
    pub format: u32,
    /// Per project: the containers `up` instrumented (names) and the ones it watches.
    pub projects: BTreeMap<String, ProjectState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectState {
    pub instrumented: Vec<String>,
    pub watched: Vec<WatchTarget>,
}

impl UpState {
    pub fn load(path: &std::path::Path) -> Result<UpState> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UpState {
                format: 1,
                ..Default::default()
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Atomic write (temporary file, fsync, rename).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(&serde_json::to_vec_pretty(self)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    /// Where `up` keeps its state: next to inject's records.
    pub fn path() -> std::path::PathBuf {
        crate::inject::state::state_dir().join("up.state")
    }

    /// Every watched container, across projects, once.
    pub fn all_watched(&self) -> Vec<WatchTarget> {
        let mut v: Vec<WatchTarget> = self.projects.values().flat_map(|p| p.watched.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The shared libraries a process has loaded, from its `/proc/<pid>/maps`: what the backend
/// image needs next to the binary (the binary links glibc dynamically).
pub fn loaded_libraries(maps: &str) -> Vec<String> {
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/') && (p.contains(".so") || p.contains("/ld-linux")))
        .map(String::from)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

/// The backend image's root filesystem: the binary at `/obs-stack`, its libraries at their
/// paths, empty `/data` and `/tmp`. Deterministic (sorted, mtime 0) for the same inputs.
pub fn rootfs_tar(binary: &[u8], libraries: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = vec!["data".into(), "tmp".into(), "etc".into()];
    for (path, _) in libraries {
        let rel = path.trim_start_matches('/');
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 1..parts.len() {
            dirs.push(parts[..i].join("/"));
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        crate::tarball::dir(&mut b, d, if d == "tmp" { 0o1777 } else { 0o755 })?;
    }
    let mut file = |path: &str, data: &[u8], mode: u32| crate::tarball::file(&mut b, path, data, mode);
    file("obs-stack", binary, 0o755)?;
    // Name resolution for the few names it looks up (the backend binds addresses only).
    file("etc/nsswitch.conf", b"hosts: files dns\n", 0o644)?;
    file("etc/passwd", b"root:x:0:0:root:/data:/obs-stack\n", 0o644)?;
    let mut libs = libraries.to_vec();
    libs.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, data) in &libs {
        file(path.trim_start_matches('/'), data, 0o755)?;
    }
    Ok(b.into_inner()?)
}

/// A short, stable identity of the binary: the image tag, so a new build gets a new image.
pub fn binary_tag(binary: &[u8]) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(binary));
    format!("{}-{}", env!("CARGO_PKG_VERSION"), &h[..12])
}

/// CPU use in percent of one core, from a stats sample and its previous one (Docker\n/// `stats` semantics).
pub fn cpu_percent(s: &bollard::models::ContainerStatsResponse) -> Option<f64> {
    let cpu = s.cpu_stats.as_ref()?;
    let pre = s.precpu_stats.as_ref()?;
    let total = cpu.cpu_usage.as_ref()?.total_usage? as f64;
    let pre_total = pre.cpu_usage.as_ref()?.total_usage.unwrap_or(0) as f64;
    let sys = cpu.system_cpu_usage? as f64;
    let pre_sys = pre.system_cpu_usage.unwrap_or(0) as f64;
    let cpus = cpu.online_cpus.unwrap_or(1).max(1) as f64;
    let (d, ds) = (total - pre_total, sys - pre_sys);
    (ds > 0.0 && d >= 0.0).then(|| d / ds * cpus * 100.0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lang: &str) -> String {
        format!("no agent for {lang}")
    }

    #[test]
    fn decisions_follow_the_runtime() {
        let c = |lang: &str| Candidate {
            language: Some(lang.into()),
            tcp_ports: vec![8080, 8080],
            ..Default::default()
        };
        assert_eq!(
            decide(&c("python"), text),
            Decision::Agent {
                runtime: "python".into()
            }
        );
        assert_eq!(
            decide(&c("nodejs"), text),
            Decision::Agent {
                runtime: "node".into()
            }
        );
        assert_eq!(
            decide(&c("go"), text),
            Decision::Fallback {
                reason: "no agent for go".into(),
                http_ports: vec![8080]
            }
        );
        assert!(matches!(
            decide(&Candidate::default(), text),
            Decision::Fallback { .. }
        ));
        let db = Candidate {
            infrastructure: Some("postgresql 15".into()),
            ..Default::default()
        };
        assert!(matches!(decide(&db, text), Decision::LeftAlone { .. }));
        let out = Candidate {
            opted_out: true,
            ..c("python")
        };
        assert!(matches!(decide(&out, text), Decision::LeftAlone { .. }));
        let dd = Candidate {
            existing_agents: vec!["datadog".into()],
            ..c("java")
        };
        assert!(matches!(decide(&dd, text), Decision::LeftAlone { .. }));
    }

    #[test]
    fn the_check_path_is_the_first_that_answers_well() {
        let a = |v: &[Option<u16>]| -> Vec<(&'static str, Option<u16>)> {
            CHECK_PATHS.iter().copied().zip(v.iter().copied()).collect()
        };
        // a Gin API without "/": its /health answers
        assert_eq!(pick_check_path(&a(&[Some(404), Some(200), Some(404)])), "/health");
        assert_eq!(pick_check_path(&a(&[Some(301)])), "/healthz");
        // nothing good: "/" and its status
        assert_eq!(pick_check_path(&a(&[Some(404), Some(404), None])), "/");
        assert_eq!(pick_check_path(&[]), "/");
    }

    #[test]
    fn watch_targets_round_trip() {
        let t = WatchTarget {
            project: "shop".into(),
            service: "gateway".into(),
            container: "shop_gateway_1".into(),
            http_ports: vec![8080, 9090],
            language: None,
        };
        assert_eq!(t.arg(), "shop:gateway:shop_gateway_1:8080,9090");
        assert_eq!(WatchTarget::parse(&t.arg()).unwrap(), t);
        let go = WatchTarget {
            language: Some("go".into()),
            ..t.clone()
        };
        assert_eq!(go.arg(), "shop:gateway:shop_gateway_1:8080,9090:go");
        assert_eq!(WatchTarget::parse(&go.arg()).unwrap(), go);
        let db = WatchTarget {
            http_ports: vec![],
            ..go.clone()
        };
        assert_eq!(WatchTarget::parse(&db.arg()).unwrap(), db);
        let s = WatchTarget::parse("p:s:c").unwrap();
        assert!(s.http_ports.is_empty());
        assert!(WatchTarget::parse("p:s").is_err());
        assert!(WatchTarget::parse("p:s:c:80,x").is_err());
    }

    #[test]
    fn libraries_come_from_the_maps() {
        let maps = "55d0 r-xp 0 08:01 1 /usr/local/bin/obs-stack\n\
                    7f00 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                    7f01 r--p 0 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
                    7f02 r-xp 0 08:01 3 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n\
                    7ffd rw-p 0 00:00 0 [stack]\n";
        assert_eq!(
            loaded_libraries(maps),
            [
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                "/usr/lib/x86_64-linux-gnu/libc.so.6"
            ]
        );
    }

    #[test]
    fn rootfs_is_deterministic_and_complete() {
        let libs = vec![("/lib/x/libc.so.6".to_string(), b"libc".to_vec())];
        let a = rootfs_tar(b"bin", &libs).unwrap();
        assert_eq!(a, rootfs_tar(b"bin", &libs).unwrap());
        let mut ar = tar::Archive::new(&a[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for want in ["obs-stack", "lib/x/libc.so.6", "data/", "tmp/", "lib/x/"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        assert_ne!(binary_tag(b"a"), binary_tag(b"b"));
    }

    #[test]
    fn state_round_trips_and_lists_watched_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("up.state");
        let mut s = UpState::load(&p).unwrap();
        let t = WatchTarget::parse("a:b:c:80").unwrap();
        s.projects.entry("a".into()).or_default().watched.push(t.clone());
        s.projects.entry("b".into()).or_default().watched.push(t.clone());
        s.save(&p).unwrap();
        let back = UpState::load(&p).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.all_watched(), vec![t]);
    }
}
