//! The static corpus (tests/fixtures/static/*): small source trees, each with an
//! `expected.yaml` ({language, framework, kind: app|frontend|none, serves?: static|server}),
//! run through the real binary as `obs-stack detect --path DIR --json`. No Docker needed.
//!
//! Targets: language accuracy >= 98%, framework accuracy >= 95%, and no wrong answer given
//! with confidence >= 50% (abstaining is allowed, a confident wrong answer is not). A
//! front-end's `serves` (static files or a Node.js server) must match when it is labelled.
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    language: Option<String>,
    framework: Option<String>,
    kind: String,
    #[serde(default)]
    serves: Option<String>,
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/static")
}

struct Outcome {
    name: String,
    expected: Expected,
    language: Option<String>,
    framework: Option<String>,
    serves: Option<String>,
    confidence: f64,
}

fn trees() -> Vec<(String, PathBuf, Expected)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/fixtures/static")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(dir.join("expected.yaml"))
                .unwrap_or_else(|e| panic!("{name}/expected.yaml: {e}"));
            let expected: Expected =
                serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}/expected.yaml: {e}"));
            assert!(
                matches!(expected.kind.as_str(), "app" | "frontend" | "none"),
                "{name}: kind must be app, frontend or none"
            );
            (name, dir, expected)
        })
        .collect()
}

fn detect(name: String, dir: &Path, expected: Expected) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_obs-stack"))
        .args(["detect", "--path"])
        .arg(dir)
        .arg("--json")
        .output()
        .expect("run obs-stack");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Outcome {
        language: s("language"),
        framework: s("framework"),
        serves: v
            .pointer("/frontend/serves")
            .and_then(|x| x.as_str())
            .map(str::to_string),
        confidence: v.get("confidence").and_then(|c| c.as_f64()).unwrap_or(0.0),
        name,
        expected,
    }
}

/// Every tree through the binary, four at a time.
fn run_all() -> Vec<Outcome> {
    let mut todo = trees();
    let mut out = Vec::new();
    while !todo.is_empty() {
        let batch: Vec<_> = todo.drain(..todo.len().min(4)).collect();
        let done: Vec<Outcome> = std::thread::scope(|s| {
            let hs: Vec<_> = batch
                .into_iter()
                .map(|(n, d, e)| s.spawn(move || detect(n, &d, e)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        out.extend(done);
    }
    out
}

#[test]
fn static_corpus_meets_the_targets() {
    let all = run_all();
    let n = all.len();
    assert!(n >= 80, "the static corpus has only {n} trees");
    let mut lang_ok = 0;
    let mut fw_ok = 0;
    let mut report = Vec::new();
    let mut confident_wrong = Vec::new();
    for o in &all {
        let l = o.language == o.expected.language;
        let f = o.framework == o.expected.framework;
        let fe_ok = match o.expected.kind.as_str() {
            "frontend" => {
                o.serves.is_some() && (o.expected.serves.is_none() || o.serves == o.expected.serves)
            }
            _ => o.serves.is_none(),
        };
        lang_ok += l as usize;
        fw_ok += (f && fe_ok) as usize;
        if !(l && f && fe_ok) {
            report.push(format!(
                "{}: expected {:?}/{:?}/{:?}, got {:?}/{:?}/{:?} at {:.0}%",
                o.name,
                o.expected.language,
                o.expected.framework,
                o.expected.serves,
                o.language,
                o.framework,
                o.serves,
                o.confidence * 100.0
            ));
        }
        // wrong and said with confidence: a reported value that is not the expected one
        let wrong_lang = o.language.is_some() && !l;
        let wrong_fw = o.framework.is_some() && !f;
        if (wrong_lang || wrong_fw) && o.confidence >= 0.5 {
            confident_wrong.push(o.name.clone());
        }
    }
    let lang_acc = lang_ok as f64 / n as f64;
    let fw_acc = fw_ok as f64 / n as f64;
    println!(
        "static corpus: {n} trees; language {:.1}%, framework {:.1}%, confident wrong {}",
        lang_acc * 100.0,
        fw_acc * 100.0,
        confident_wrong.len()
    );
    for r in &report {
        println!("  {r}");
    }
    assert!(
        lang_acc >= 0.98,
        "language accuracy {:.1}% < 98%:\n{}",
        lang_acc * 100.0,
        report.join("\n")
    );
    assert!(
        fw_acc >= 0.95,
        "framework accuracy {:.1}% < 95%:\n{}",
        fw_acc * 100.0,
        report.join("\n")
    );
    assert!(
        confident_wrong.is_empty(),
        "confident wrong answers: {confident_wrong:?}"
    );
}

#[test]
fn every_signature_language_and_framework_is_in_the_corpus() {
    let all = trees();
    let sigs = obs_stack::detect::SignatureSet::builtin().unwrap();
    let mut missing = Vec::new();
    for s in &sigs.sigs {
        use obs_stack::detect::SigKind;
        let covered = match s.kind {
            SigKind::Language => all.iter().any(|(_, _, e)| e.language.as_deref() == Some(&s.id)),
            SigKind::Framework => all.iter().any(|(_, _, e)| e.framework.as_deref() == Some(&s.id)),
            _ => true,
        };
        if !covered {
            missing.push(s.id.clone());
        }
    }
    assert!(missing.is_empty(), "no static tree for {missing:?}");
}
