//! Detection: which language, framework and version a container (or a source tree) runs, with
//! a calibrated confidence and the evidence behind it.
//!
//! Shape: five probes (`ports`, `env`, `files`, `process`, `http`, in `probe`) turn a container
//! into plain `Observations`; the pure scorer (`score`) combines the evidence that the
//! signatures (`signature`, `signatures/*.yaml`) describe; `assemble` turns the scores into
//! the `Detection` that `obs-detect --json` prints and that inject and init consume.
//! Probes are bounded in time and bytes and record what they could not read in
//! `probe_errors`; absent evidence only counts where a probe actually read its target.
//!
//! The signature format and the scoring model are documented in `docs/signatures.md`.
pub mod elf;
pub mod files;
pub mod http;
pub mod manifest;
pub mod netproc;
pub mod obs;
pub mod probe;
pub mod score;
pub mod signature;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub use obs::Observations;
pub use score::Evidence;
pub use signature::{Serves, SigKind, SignatureSet};

use score::{Scored, Verdict};

/// Version of the `--json` schema; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    App,
    Infrastructure,
    Unknown,
}

/// One scored hypothesis, for `runner_up` and `candidates`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    pub kind: SigKind,
    pub language: Option<String>,
    pub probability: f64,
    pub version: Option<String>,
}

/// Something a probe could not read (and so could not count as evidence either way).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProbeError {
    pub probe: String,
    pub message: String,
}

impl ProbeError {
    pub fn new(probe: &str, message: impl Into<String>) -> ProbeError {
        ProbeError {
            probe: probe.to_string(),
            message: message.into(),
        }
    }
}

/// A front-end framework's build: static files only, or a Node.js server.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FrontendInfo {
    /// `static` (no server-side agent applies) or `server` (the Node.js agent applies)
    pub serves: Serves,
    /// why: the observation that decided, or the framework's default
    pub reason: String,
}

/// The result for one container or directory; also the `--json` schema (one object per target).
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub schema_version: u32,
    pub target: String,
    pub kind: Kind,
    pub language: Option<String>,
    pub framework: Option<String>,
    pub framework_version: Option<String>,
    /// front-end frameworks only: whether the build is static files or a Node.js server
    pub frontend: Option<FrontendInfo>,
    pub runtime_version: Option<String>,
    pub server: Option<String>,
    pub server_version: Option<String>,
    /// infrastructure (nginx, postgresql, redis, ...): never reported as a framework
    pub infrastructure: Option<String>,
    pub infrastructure_version: Option<String>,
    pub libc: Option<String>,
    /// probability of the reported framework (else language, else infrastructure), 0..1
    pub confidence: f64,
    /// at least two different probes gave positive evidence for the reported technology
    pub confirmed: bool,
    pub existing_agents: Vec<String>,
    pub evidence: Vec<Evidence>,
    pub runner_up: Option<Candidate>,
    /// every hypothesis with probability ≥ 5%, best first
    pub candidates: Vec<Candidate>,
    pub probe_errors: Vec<ProbeError>,
    /// what inject will do when there is no framework-specific path
    pub fallback: Option<String>,
    /// static mode: the projects of a tree that holds several (no manifest at its root)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<Project>,
    pub elapsed_ms: u64,
}

/// One project of a tree holding several (a monorepo), detected on its own.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Project {
    /// directory relative to the tree
    pub path: String,
    pub language: Option<String>,
    pub framework: Option<String>,
    pub confidence: f64,
}

/// Limits for one detection.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Overall budget; every probe is cut off at this point.
    pub budget: Duration,
    /// Per HTTP request (connect + answer).
    pub http_timeout: Duration,
    /// Run the HTTP probe at all.
    pub http: bool,
    /// Bytes kept per file read.
    pub max_file_bytes: usize,
    /// Bytes streamed per archive read.
    pub max_archive_bytes: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            budget: Duration::from_secs(4),
            http_timeout: Duration::from_millis(800),
            http: true,
            max_file_bytes: 512 * 1024,
            max_archive_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Detects a container by name or id: ports, env, files, processes and HTTP, concurrently.
pub async fn detect_container(
    engine: &crate::docker::Engine,
    container: &str,
    sigs: &SignatureSet,
    opts: &DetectOptions,
) -> anyhow::Result<Detection> {
    let start = std::time::Instant::now();
    let (obs, errors) = probe::observe_container(engine, container, sigs, opts).await?;
    let mut d = assemble(container, sigs, &obs, errors);
    d.elapsed_ms = start.elapsed().as_millis() as u64;
    Ok(d)
}

/// Static mode: the files probe over a source tree or build context.
pub fn detect_path(dir: &Path, sigs: &SignatureSet) -> anyhow::Result<Detection> {
    let start = std::time::Instant::now();
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let (obs, errors) = files::observe_dir(dir, sigs, &DetectOptions::default());
    let mut d = assemble(&dir.display().to_string(), sigs, &obs, errors);
    let subdirs = project_dirs(&obs);
    if subdirs.len() >= 2 {
        let mut projects = Vec::new();
        for rel in subdirs {
            let (o, e) = files::observe_dir(
                &dir.join(rel.trim_start_matches('/')),
                sigs,
                &DetectOptions::default(),
            );
            let p = assemble(&rel, sigs, &o, e);
            projects.push(Project {
                path: rel.trim_start_matches('/').to_string(),
                language: p.language,
                framework: p.framework,
                confidence: p.confidence,
            });
        }
        merge_projects(sigs, &mut d, projects);
    }
    d.elapsed_ms = start.elapsed().as_millis() as u64;
    Ok(d)
}

/// Directories holding a manifest, when the tree's root holds none: a tree of several projects.
fn project_dirs(obs: &Observations) -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in obs.files.iter().flat_map(|f| f.files.keys()) {
        let (parent, base) = path.rsplit_once('/').unwrap_or(("", path));
        if manifest::is_manifest(base) {
            if parent.is_empty() {
                return Vec::new();
            }
            dirs.insert(parent.to_string());
        }
    }
    // a project nested in another counts once
    let all: Vec<String> = dirs.iter().cloned().collect();
    dirs.retain(|d| !all.iter().any(|o| o != d && d.starts_with(&format!("{o}/"))));
    dirs.into_iter().collect()
}

/// Several projects in one tree: one language is reported only when they all share it, one
/// framework only when they all share it; otherwise the tree is Unknown and lists them.
fn merge_projects(sigs: &SignatureSet, d: &mut Detection, projects: Vec<Project>) {
    let same = |f: &dyn Fn(&Project) -> Option<&String>| {
        let first = f(&projects[0]);
        first.is_some() && projects.iter().all(|p| f(p) == first)
    };
    let one_language = same(&|p| p.language.as_ref());
    let one_framework = one_language && same(&|p| p.framework.as_ref());
    let list = projects
        .iter()
        .map(|p| {
            let what = match (&p.language, &p.framework) {
                (Some(l), Some(f)) => format!("{}/{}", display_name(sigs, l), display_name(sigs, f)),
                (Some(l), None) => display_name(sigs, l),
                _ => "unknown".into(),
            };
            format!("{} ({what})", p.path)
        })
        .collect::<Vec<_>>()
        .join(", ");
    if !one_language {
        d.kind = Kind::Unknown;
        d.language = None;
        d.framework = None;
        d.framework_version = None;
        d.frontend = None;
        d.server = None;
        d.server_version = None;
        d.confidence = 0.0;
        d.confirmed = false;
        d.fallback = Some(format!(
            "several projects in one tree: {list}; run `obs-detect --path` on each"
        ));
    } else if !one_framework && d.framework.is_some() {
        d.framework = None;
        d.framework_version = None;
        d.frontend = None;
        d.confidence = d
            .candidates
            .iter()
            .find(|c| Some(&c.id) == d.language.as_ref())
            .map(|c| c.probability)
            .unwrap_or(d.confidence);
        d.fallback = Some(format!(
            "several projects in one tree: {list}; run `obs-detect --path` on each"
        ));
    }
    d.projects = projects;
}

fn candidate(s: &Scored) -> Candidate {
    Candidate {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: s.kind,
        language: s.language.clone(),
        probability: round3(s.probability),
        version: s.version.clone(),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Languages obs-stack has an in-process agent for.
pub const AGENT_LANGUAGES: &[&str] = &["python", "node", "java"];

/// What the stack offers an app without an in-process agent (what exists, nothing more).
pub const NO_AGENT_FALLBACK: &str = "container stats and HTTP checks with `obs-stack up`; container metrics (docker_stats) and logs in the generated stack; no traces";

/// The front-end rule of the reported framework, if it is a front-end framework.
fn frontend_of(sigs: &SignatureSet, framework: Option<&str>, obs: &Observations) -> Option<FrontendInfo> {
    let sig = sigs.get(framework?)?;
    let f = sig.frontend.as_ref()?;
    let hit = |list: &[signature::Matcher]| list.iter().find_map(|m| score::matches(m, obs));
    if let Some(why) = hit(&f.static_when) {
        return Some(FrontendInfo {
            serves: Serves::Static,
            reason: why,
        });
    }
    if let Some(why) = hit(&f.server_when) {
        return Some(FrontendInfo {
            serves: Serves::Server,
            reason: why,
        });
    }
    Some(FrontendInfo {
        serves: f.serves,
        reason: format!("the default build of {}", sig.name),
    })
}

/// What inject does when there is no framework-specific path.
pub fn fallback_for(kind: Kind, language: Option<&str>, framework: Option<&str>) -> Option<String> {
    match (kind, language, framework) {
        (Kind::Infrastructure, _, _) => Some(
            "infrastructure: no agent is injected; the stack collects its container metrics and logs".into(),
        ),
        (_, Some(l), Some(_)) if AGENT_LANGUAGES.contains(&l) => None,
        (_, Some(l), None) if AGENT_LANGUAGES.contains(&l) => Some(format!(
            "the generic {l} agent with all its library instrumentations (no framework-specific checks)"
        )),
        (_, Some(l), _) => Some(format!("no in-process agent for {l}: {NO_AGENT_FALLBACK}")),
        (_, None, _) => Some(format!("nothing to inject: {NO_AGENT_FALLBACK}")),
    }
}

fn libc_of(obs: &Observations) -> Option<String> {
    let b = obs.binaries.first()?;
    Some(match b.interp.as_deref() {
        Some(i) if i.contains("musl") => "musl".into(),
        Some(_) => "glibc".into(),
        None => "static".into(),
    })
}

/// Pure: scores observations and builds the `Detection`.
pub fn assemble(
    target: &str,
    sigs: &SignatureSet,
    obs: &Observations,
    mut probe_errors: Vec<ProbeError>,
) -> Detection {
    let mut seen = std::collections::BTreeSet::new();
    probe_errors.retain(|e| seen.insert((e.probe.clone(), e.message.clone())));
    let scored = score::score(sigs, obs);
    let v: Verdict = score::decide(&scored);
    let get = |i: Option<usize>| i.map(|i| &scored[i]);
    let lang = get(v.language);
    let fw = get(v.framework);
    let infra = get(v.infrastructure);
    let kind = if infra.is_some() {
        Kind::Infrastructure
    } else if lang.is_some() {
        Kind::App
    } else {
        Kind::Unknown
    };
    // runtime version: the language signature's own, else one a probe found (JDK release file)
    let runtime_version = lang.and_then(|l| {
        let other = obs
            .runtime_versions
            .iter()
            .filter(|(lg, _, _)| *lg == l.id)
            .max_by_key(|(_, _, r)| *r);
        match (&l.version, other) {
            (Some(v), Some((_, ov, r))) => Some(if *r > l.version_rank {
                ov.clone()
            } else {
                v.clone()
            }),
            (Some(v), None) => Some(v.clone()),
            (None, Some((_, ov, _))) => Some(ov.clone()),
            (None, None) => None,
        }
    });
    // Agents are reported too (existing_agents): their evidence explains that verdict.
    let reported: Vec<&Scored> = [infra, fw, get(v.server), lang]
        .into_iter()
        .flatten()
        .chain(v.agents.iter().map(|&i| &scored[i]))
        .collect();
    let mut evidence: Vec<Evidence> = reported
        .iter()
        .flat_map(|s| s.evidence.iter().cloned())
        .filter(|e| e.weight != 0.0)
        .collect();
    if kind == Kind::Unknown
        && let Some(r) = get(v.runner_up)
    {
        evidence.extend(r.evidence.iter().filter(|e| e.weight != 0.0).cloned());
    }
    let mut candidates: Vec<Candidate> = scored
        .iter()
        .filter(|s| s.probability >= 0.05 && s.kind != SigKind::Agent)
        .map(candidate)
        .collect();
    candidates.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    let language = lang.map(|l| l.id.clone());
    let framework = fw.map(|f| f.id.clone());
    let frontend = frontend_of(sigs, framework.as_deref(), obs);
    let fallback = match &frontend {
        Some(f) if f.serves == Serves::Static => Some(
            "static front-end: the build is static files served by a web server; no server-side agent applies (instrument the web server serving it, or the browser)"
                .to_string(),
        ),
        _ => fallback_for(kind, language.as_deref(), framework.as_deref()),
    };
    Detection {
        schema_version: SCHEMA_VERSION,
        target: target.to_string(),
        kind,
        language,
        framework,
        framework_version: fw.and_then(|f| f.version.clone()),
        frontend,
        runtime_version,
        server: get(v.server).map(|s| s.id.clone()),
        server_version: get(v.server).and_then(|s| s.version.clone()),
        infrastructure: infra.map(|s| s.id.clone()),
        infrastructure_version: infra.and_then(|s| s.version.clone()),
        libc: libc_of(obs),
        confidence: round3(v.confidence),
        confirmed: v.confirmed,
        existing_agents: v.agents.iter().map(|&i| scored[i].id.clone()).collect(),
        evidence,
        runner_up: get(v.runner_up).map(candidate),
        candidates,
        probe_errors,
        fallback,
        projects: Vec::new(),
        elapsed_ms: 0,
    }
}

/// Display name of a signature id ("flask" → "Flask"), falling back to the id.
pub fn display_name(sigs: &SignatureSet, id: &str) -> String {
    sigs.get(id)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let f = t.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        t
    }

    #[test]
    fn frontend_static_or_server() {
        let sigs = SignatureSet::builtin().unwrap();
        let t = tree(&[
            (
                "package.json",
                r#"{"scripts": {"build": "nuxt generate"}, "dependencies": {"nuxt": "^3.11.2"}}"#,
            ),
            ("nuxt.config.ts", "export default defineNuxtConfig({})\n"),
        ]);
        let d = detect_path(t.path(), &sigs).unwrap();
        assert_eq!(d.framework.as_deref(), Some("nuxt"));
        let fe = d.frontend.expect("front-end");
        assert_eq!(fe.serves, Serves::Static, "{}", fe.reason);
    }

    /// A tree holding `files` (binary content allowed), detected as a container would be
    /// that runs `cmdline` and does not listen yet (1 s after start).
    fn cold(files: &[(&str, Vec<u8>)], cmdline: &str) -> Detection {
        run(files, cmdline, false)
    }

    fn run(files: &[(&str, Vec<u8>)], cmdline: &str, listening: bool) -> Detection {
        let sigs = SignatureSet::builtin().unwrap();
        let t = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let f = t.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, c).unwrap();
        }
        let (mut obs, errors) = files::observe_dir(t.path(), &sigs, &DetectOptions::default());
        obs.processes = Some(vec![obs::ProcObs {
            pid: 1,
            cmdline: cmdline.into(),
            exe: "/usr/bin/java".into(),
        }]);
        obs.ports = Some(if listening {
            vec![obs::PortObs {
                port: 8080,
                source: "listening".into(),
            }]
        } else {
            Vec::new()
        });
        obs.listen_read = true;
        assemble("t", &sigs, &obs, errors)
    }

    #[test]
    fn jvm_layouts_are_recognised_from_disk_before_the_app_listens() {
        let zip = files::tests::zip;
        // a Spring Boot fat jar with a neutral name
        let fat = zip(
            &[
                (
                    "META-INF/MANIFEST.MF",
                    b"Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader.launch.JarLauncher\nStart-Class: com.example.Orders\nSpring-Boot-Version: 3.2.5\n",
                ),
                ("BOOT-INF/lib/spring-boot-3.2.5.jar", b""),
                ("BOOT-INF/lib/spring-webflux-6.1.6.jar", b""),
                ("BOOT-INF/lib/netty-codec-http-4.1.109.Final.jar", b""),
                ("org/springframework/boot/loader/launch/JarLauncher.class", b""),
            ],
            true,
        );
        let d = cold(&[("service.jar", fat)], "java -jar /srv/service.jar");
        assert_eq!(d.framework.as_deref(), Some("spring-boot"), "{:?}", d.candidates);
        assert_eq!(d.framework_version.as_deref(), Some("3.2.5"));
        assert!(d.confidence >= 0.9, "{}", d.confidence);
        // an exploded classpath behind a shell entrypoint
        let d = cold(
            &[
                ("lib/spring-boot-3.2.5.jar", vec![]),
                ("lib/spring-boot-autoconfigure-3.2.5.jar", vec![]),
                ("lib/spring-web-6.1.6.jar", vec![]),
                ("classes/com/example/App.class", vec![]),
                (
                    "entrypoint.sh",
                    b"#!/bin/sh\nexec java -cp classes:lib/* com.example.App\n".to_vec(),
                ),
            ],
            "java -cp classes:lib/* com.example.App",
        );
        assert_eq!(d.framework.as_deref(), Some("spring-boot"), "{:?}", d.candidates);
        assert_eq!(d.language.as_deref(), Some("java"));
        // Quarkus fast-jar
        let runner = zip(
            &[(
                "META-INF/MANIFEST.MF",
                b"Manifest-Version: 1.0\nMain-Class: io.quarkus.bootstrap.runner.QuarkusEntryPoint\n",
            )],
            false,
        );
        let d = cold(
            &[
                ("quarkus-run.jar", runner),
                ("lib/main/io.quarkus.quarkus-core-3.8.4.jar", vec![]),
                ("lib/main/io.vertx.vertx-core-4.5.7.jar", vec![]),
                ("lib/main/io.netty.netty-codec-http-4.1.108.Final.jar", vec![]),
            ],
            "java -jar /deployments/quarkus-run.jar",
        );
        assert_eq!(d.framework.as_deref(), Some("quarkus"), "{:?}", d.candidates);
        assert_eq!(d.framework_version.as_deref(), Some("3.8.4"));
        // a Micronaut shadow jar (classes merged, no lib/)
        let shadow = zip(
            &[
                (
                    "META-INF/MANIFEST.MF",
                    b"Manifest-Version: 1.0\nMain-Class: com.example.Application\n",
                ),
                ("io/micronaut/runtime/Micronaut.class", b""),
                ("io/netty/handler/codec/http/HttpObject.class", b""),
            ],
            true,
        );
        let d = cold(&[("app.jar", shadow)], "java -jar app.jar");
        assert_eq!(d.framework.as_deref(), Some("micronaut"), "{:?}", d.candidates);
        // Netty alone (once it listens: a bare netty-codec-http jar is not strong enough cold)
        let d = run(
            &[
                ("lib/netty-codec-http-4.1.109.Final.jar", vec![]),
                ("lib/netty-common-4.1.109.Final.jar", vec![]),
            ],
            "java -cp lib/* com.example.Server",
            true,
        );
        assert_eq!(d.framework.as_deref(), Some("netty"), "{:?}", d.candidates);
        // a WAR in Tomcat's webapps: Java, the Tomcat server, no framework claimed
        let war = zip(
            &[
                ("WEB-INF/web.xml", b"<web-app/>"),
                ("WEB-INF/classes/com/example/Hello.class", b""),
            ],
            false,
        );
        let d = cold(
            &[
                ("webapps/hello.war", war),
                ("lib/catalina.jar", vec![]),
                ("bin/catalina.sh", vec![]),
            ],
            "/opt/java/bin/java -Dcatalina.base=/usr/local/tomcat org.apache.catalina.startup.Bootstrap start",
        );
        assert_eq!(d.language.as_deref(), Some("java"));
        assert_eq!(d.server.as_deref(), Some("tomcat"), "{:?}", d.candidates);
        assert_eq!(d.framework, None, "{:?}", d.candidates);
    }
}
