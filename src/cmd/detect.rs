//! `obs-stack detect` / `obs-detect`: language, framework and version of containers (or of a
//! source tree with `--path`), with a calibrated confidence and, with `-v`, the evidence.
//!
//! Output: one line per target, `Framework=Flask Language=Python Version=3.0.3 Confidence=95%`
//! (infrastructure: `Kind=Infrastructure Technology=nginx ...`; unknown: `Framework=Unknown
//! Language=<x|Unknown>` and the fallback inject would use). `--json`: one `Detection` object
//! for a single target, an array for several or `--all` (schema: `detect::Detection`).
//! Exit codes: 0 detected (a framework, a language or infrastructure), 1 unknown, 2 error,
//! 3 Docker unreachable, 4 socket permission denied, 5 no such container.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;

use crate::cli::GlobalArgs;
use crate::detect::{self, DetectOptions, Detection, Kind, SignatureSet};
use crate::docker::Engine;
use crate::exit::Outcome;
use crate::output::{Paint, Style, print_json};

#[derive(Debug, Clone, Args)]
pub struct DetectArgs {
    /// Containers to inspect (names or ids)
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
    /// Every running container, concurrently
    #[arg(long, conflicts_with_all = ["containers", "path"])]
    pub all: bool,
    /// Static mode: a source tree or build context (files probe only)
    #[arg(long, value_name = "DIR", conflicts_with = "containers")]
    pub path: Option<PathBuf>,
    /// Add or replace signatures with the *.yaml files in DIR
    #[arg(long, value_name = "DIR")]
    pub signatures: Option<PathBuf>,
    /// Time budget per container in milliseconds (all probes)
    #[arg(long, value_name = "MS", default_value_t = 4000)]
    pub budget_ms: u64,
    /// Do not send HTTP requests to the containers
    #[arg(long)]
    pub no_http: bool,
}

const CONCURRENCY: usize = 8;

pub async fn run(global: &GlobalArgs, args: DetectArgs) -> anyhow::Result<Outcome> {
    let style = global.style();
    let sigs = SignatureSet::load(args.signatures.as_deref())?;
    if let Some(dir) = &args.path {
        let d = detect::detect_path(dir, &sigs)?;
        return report(&style, &sigs, vec![Ok(d)], false);
    }
    if args.containers.is_empty() && !args.all {
        anyhow::bail!(
            "name one or more containers, or use --all (running containers) or --path DIR (a source tree)"
        );
    }
    let engine = Engine::connect().await?;
    let names: Vec<String> = if args.all {
        let list = engine.list(false, &[]).await?;
        list.into_iter()
            .filter_map(|c| {
                c.names
                    .and_then(|n| n.first().cloned())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .or(c.id)
            })
            .collect()
    } else {
        args.containers.clone()
    };
    if names.is_empty() {
        if style.json {
            print_json(&Vec::<Detection>::new())?;
        } else if !style.quiet {
            eprintln!("no running containers");
        }
        return Ok(Outcome::Negative);
    }
    let opts = DetectOptions {
        budget: Duration::from_millis(args.budget_ms.max(100)),
        http: !args.no_http,
        ..Default::default()
    };
    let pb = style.progress(names.len() as u64, "detecting");
    let engine = Arc::new(engine);
    let sigs = Arc::new(sigs);
    let mut results: Vec<(usize, anyhow::Result<Detection>)> =
        futures_util::stream::iter(names.iter().cloned().enumerate())
            .map(|(i, name)| {
                let (engine, sigs, opts, pb) = (engine.clone(), sigs.clone(), opts.clone(), pb.clone());
                async move {
                    let r = detect::detect_container(&engine, &name, &sigs, &opts)
                        .await
                        .with_context(|| format!("detecting {name}"));
                    pb.inc(1);
                    (i, r)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    pb.finish_and_clear();
    results.sort_by_key(|(i, _)| *i);
    let many = args.all || names.len() > 1;
    let results: Vec<anyhow::Result<Detection>> = results.into_iter().map(|(_, r)| r).collect();
    if !many {
        // a single target: its error is the command's error (exit code 3/4/5/2)
        let mut results = results;
        let r = results.pop().context("no result")?;
        return report(&style, &sigs, vec![Ok(r?)], false);
    }
    report(&style, &sigs, results, true)
}

fn report(
    style: &Style,
    sigs: &SignatureSet,
    results: Vec<anyhow::Result<Detection>>,
    many: bool,
) -> anyhow::Result<Outcome> {
    let mut any_error: Option<anyhow::Error> = None;
    let mut all_known = true;
    let mut ok: Vec<Detection> = Vec::new();
    for r in results {
        match r {
            Ok(d) => {
                if d.kind == Kind::Unknown {
                    all_known = false;
                }
                ok.push(d);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                any_error.get_or_insert(e);
            }
        }
    }
    if style.json {
        if many {
            print_json(&ok)?;
        } else if let Some(d) = ok.first() {
            print_json(d)?;
        }
    } else {
        for d in &ok {
            print_human(style, sigs, d, many);
        }
    }
    if let Some(e) = any_error {
        return Err(e.context("some containers could not be inspected"));
    }
    Ok(if all_known {
        Outcome::Success
    } else {
        Outcome::Negative
    })
}

fn pct(p: f64) -> String {
    format!("{}%", ((p * 100.0).round() as i64).clamp(1, 99))
}

/// The one-line summary (no prefix).
pub fn summary(sigs: &SignatureSet, d: &Detection) -> String {
    let name = |id: &str| detect::display_name(sigs, id);
    let lang = d
        .language
        .as_deref()
        .map(name)
        .unwrap_or_else(|| "Unknown".into());
    let mut line = match d.kind {
        Kind::Infrastructure => {
            let mut s = format!(
                "Kind=Infrastructure Technology={}",
                name(d.infrastructure.as_deref().unwrap_or("?"))
            );
            if let Some(v) = &d.infrastructure_version {
                s.push_str(&format!(" Version={v}"));
            }
            s.push_str(&format!(" Confidence={}", pct(d.confidence)));
            s
        }
        _ => match &d.framework {
            Some(f) => {
                let mut s = format!("Framework={} Language={lang}", name(f));
                if let Some(v) = &d.framework_version {
                    s.push_str(&format!(" Version={v}"));
                }
                if let Some(fe) = &d.frontend {
                    s.push_str(match fe.serves {
                        detect::Serves::Static => " Frontend=static",
                        detect::Serves::Server => " Frontend=server",
                    });
                }
                s.push_str(&format!(" Confidence={}", pct(d.confidence)));
                s
            }
            None if d.language.is_some() => format!(
                "Framework=Unknown Language={lang} Confidence={}",
                pct(d.confidence)
            ),
            None => format!("Framework=Unknown Language={lang}"),
        },
    };
    if d.kind == Kind::Unknown {
        line = line.trim_end().to_string();
    }
    line
}

fn print_human(style: &Style, sigs: &SignatureSet, d: &Detection, many: bool) {
    let prefix = if many {
        format!("{}: ", d.target)
    } else {
        String::new()
    };
    let line = summary(sigs, d);
    let painted = match d.kind {
        Kind::Unknown => style.paint(Paint::Yellow, &line),
        _ if d.framework.is_none() && d.kind == Kind::App => line.clone(),
        _ => style.paint(Paint::Green, &line),
    };
    println!("{prefix}{painted}");
    if let Some(fe) = &d.frontend {
        match fe.serves {
            detect::Serves::Static => {
                println!(
                    "  front-end, static files only: no server-side agent applies ({})",
                    fe.reason
                )
            }
            detect::Serves::Server => {
                println!(
                    "  front-end with a Node.js server: the Node.js agent applies ({})",
                    fe.reason
                )
            }
        }
    }
    if d.framework.is_none()
        && let Some(f) = &d.fallback
        && (d.kind != Kind::Infrastructure || style.verbose > 0)
    {
        println!("  fallback: {f}");
    }
    if style.verbose == 0 {
        return;
    }
    let mut facts = Vec::new();
    if let Some(v) = &d.runtime_version {
        facts.push(format!("Runtime={v}"));
    }
    if let Some(s) = &d.server {
        let v = d
            .server_version
            .as_deref()
            .map(|v| format!("/{v}"))
            .unwrap_or_default();
        facts.push(format!("Server={}{v}", detect::display_name(sigs, s)));
    }
    if let Some(l) = &d.libc {
        facts.push(format!("libc={l}"));
    }
    facts.push(format!("confirmed={}", if d.confirmed { "yes" } else { "no" }));
    if !d.existing_agents.is_empty() {
        facts.push(format!("agents={}", d.existing_agents.join(",")));
    }
    facts.push(format!("{} ms", d.elapsed_ms));
    println!("  {}", style.paint(Paint::Dim, &facts.join(" ")));
    for e in &d.evidence {
        let sign = if e.weight >= 0.0 { "+" } else { "-" };
        println!(
            "  {sign}{:.2} {:<8} {:<12} {}",
            e.weight.abs(),
            e.probe.as_str(),
            e.technology,
            e.detail
        );
    }
    if let Some(r) = &d.runner_up {
        println!("  runner-up: {} {}", r.name, pct(r.probability));
    }
    for pe in &d.probe_errors {
        println!(
            "  {} {}: {}",
            style.paint(Paint::Yellow, "unread"),
            pe.probe,
            pe.message
        );
    }
}
