//! The terminal views (`status`, `top`, `traces`, `errors`): pure rendering of the backend's
//! API answers (docs/serve.md) into text. Fetching lives in `src/cmd/views.rs`.
use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;
use serde_json::Value;

use crate::output::{Paint, Style};

/// Smart defaults a service is marked against (templates/defaults/frameworks.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Thresholds {
    /// seconds
    pub latency_p95: f64,
    /// ratio 0..1
    pub error_rate: f64,
}

/// Thresholds per language (and `default`), from the frameworks defaults file.
pub fn thresholds(frameworks_yaml: &str) -> BTreeMap<String, Thresholds> {
    serde_yaml_ng::from_str::<BTreeMap<String, serde_yaml_ng::Value>>(frameworks_yaml)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            let t = Thresholds {
                latency_p95: v.get("latency_p95")?.as_f64()?,
                error_rate: v.get("error_rate")?.as_f64()?,
            };
            Some((k, t))
        })
        .collect()
}

fn limit_for(th: &BTreeMap<String, Thresholds>, language: &str) -> Thresholds {
    let key = match language {
        "nodejs" | "node" => "node",
        "python" => "python",
        "java" => "java",
        "go" => "go",
        "dotnet" => "dotnet",
        "ruby" => "ruby",
        "php" => "php",
        _ => "default",
    };
    th.get(key)
        .or_else(|| th.get("default"))
        .copied()
        .unwrap_or(Thresholds {
            latency_p95: 0.5,
            error_rate: 0.05,
        })
}

/// Everything `status` shows about one service.
#[derive(Debug, Clone, Default)]
pub struct ServiceView {
    pub service: Value,
    pub routes: Value,
    pub errors: Value,
    pub runtime: Value,
}

fn ms(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(x) if x >= 1000.0 => format!("{:.2}s", x / 1000.0),
        Some(x) if x >= 10.0 => format!("{x:.0}ms"),
        Some(x) => format!("{x:.1}ms"),
    }
}

fn bytes(x: f64) -> String {
    if x >= (1u64 << 30) as f64 {
        format!("{:.1}GiB", x / (1u64 << 30) as f64)
    } else {
        format!("{:.0}MiB", x / (1u64 << 20) as f64)
    }
}

fn ago(now_ms: i64, ts: &Value) -> String {
    let Some(t) = ts.as_i64().or_else(|| ts.as_f64().map(|f| f as i64)) else {
        return "-".into();
    };
    let s = (now_ms - t).max(0) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

/// The last value of the first runtime series whose name starts with `prefix`.
fn last_value(runtime: &Value, prefix: &str) -> Option<f64> {
    runtime["series"]
        .as_array()?
        .iter()
        .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .find_map(|s| s["points"].as_array()?.last()?.get(1)?.as_f64())
}

/// The path of the latest HTTP check, from its series name `http_check.status{path=/x}`.
fn check_path(runtime: &Value) -> Option<String> {
    const PREFIX: &str = "http_check.status{path=";
    runtime["series"]
        .as_array()?
        .iter()
        .filter_map(|s| {
            let name = s["name"].as_str()?.strip_prefix(PREFIX)?;
            let last_ts = s["points"].as_array()?.last()?.get(0)?.as_i64()?;
            Some((last_ts, name.trim_end_matches('}').to_string()))
        })
        .max()
        .map(|(_, p)| p)
}

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.chars().take(w.saturating_sub(1)).collect::<String>() + " "
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

/// The hint when a project has nothing yet: what to do, never an empty table.
pub fn no_data_hint(project: &str) -> String {
    format!(
        "No data yet for project {project}.\n\
         - Send a request to one of its services (e.g. `curl http://127.0.0.1:<port>/`): agents \
         export every 15 s.\n\
         - Check that the agent loaded: `docker logs <container> 2>&1 | grep -i opentelemetry`, and \
         that the container runs with it: `obs-inject --dry-run <container>` says `noop` when it does.\n\
         - `obs-stack up` lists what it instrumented; `obs-stack status --json` shows the raw answer."
    )
}

/// `obs-stack status`: one screen per project.
pub fn render_status(
    style: &Style,
    project: &str,
    views: &[ServiceView],
    th: &BTreeMap<String, Thresholds>,
    now_ms: i64,
    width: usize,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {project} — last 15 minutes",
        style.paint(Paint::Bold, "project")
    );
    if views.is_empty() {
        out.push_str(&no_data_hint(project));
        out.push('\n');
        return out;
    }
    let wide = width >= 100;
    let _ = writeln!(
        out,
        "{}",
        style.paint(
            Paint::Dim,
            &format!(
                "{}{}{}{}{}{}{}{}",
                pad("SERVICE", 18),
                pad("LANG", 8),
                pad("REQ/S", 8),
                pad("P50", 8),
                pad("P95", 8),
                pad("P99", 8),
                pad("ERR%", 8),
                if wide { "CPU     MEM" } else { "" }
            )
        )
    );
    for v in views {
        let s = &v.service;
        let name = s["name"].as_str().unwrap_or("?");
        let lang = s["language"].as_str().unwrap_or("-");
        let limit = limit_for(th, lang);
        let err = s["error_rate"].as_f64();
        let p95 = s["p95_ms"].as_f64();
        let err_txt = err.map(|e| format!("{:.1}%", e * 100.0)).unwrap_or("-".into());
        let err_bad = err.is_some_and(|e| e > limit.error_rate);
        let p95_bad = p95.is_some_and(|p| p > limit.latency_p95 * 1000.0);
        // The mark is a `!` (readable without colour), red where colour is on.
        let mark = |bad: bool, t: String| {
            if bad {
                style.paint(Paint::Red, &pad(&format!("{t}!"), 8))
            } else {
                pad(&t, 8)
            }
        };
        let cpu = last_value(&v.runtime, "container_stats.cpu_percent");
        let mem = last_value(&v.runtime, "container_stats.memory_bytes");
        let rps = s["rps"].as_f64().map(|r| format!("{r:.2}")).unwrap_or("-".into());
        let _ = writeln!(
            out,
            "{}{}{}{}{}{}{}{}",
            pad(name, 18),
            pad(lang, 8),
            pad(&rps, 8),
            pad(&ms(&s["p50_ms"]), 8),
            mark(p95_bad, ms(&s["p95_ms"])),
            pad(&ms(&s["p99_ms"]), 8),
            mark(err_bad, err_txt),
            if wide {
                format!(
                    "{}{}",
                    pad(&cpu.map(|c| format!("{c:.1}%")).unwrap_or("-".into()), 8),
                    mem.map(bytes).unwrap_or("-".into())
                )
            } else {
                String::new()
            }
        );
    }
    for v in views {
        let s = &v.service;
        let name = s["name"].as_str().unwrap_or("?");
        let _ = writeln!(out);
        let watched = last_value(&v.runtime, "container_stats.").is_some()
            || last_value(&v.runtime, "http_check.").is_some();
        let src = match s["source"].as_str() {
            Some("metrics") => "agent metrics",
            Some("spans") => "agent spans",
            _ if watched => "no agent: container stats and HTTP checks",
            _ => "no agent data",
        };
        let _ = writeln!(out, "{} ({src})", style.paint(Paint::Bold, name));
        let routes = v.routes["routes"].as_array().cloned().unwrap_or_default();
        if !routes.is_empty() {
            let top: Vec<String> = routes
                .iter()
                .take(3)
                .map(|r| {
                    format!(
                        "{} {} {} calls",
                        r["method"].as_str().unwrap_or(""),
                        r["route"].as_str().unwrap_or("?"),
                        r["calls"].as_f64().unwrap_or(0.0).round()
                    )
                })
                .collect();
            let _ = writeln!(out, "  top routes:     {}", top.join(" · "));
            let mut slow = routes.clone();
            slow.sort_by(|a, b| {
                b["p95_ms"]
                    .as_f64()
                    .unwrap_or(0.0)
                    .total_cmp(&a["p95_ms"].as_f64().unwrap_or(0.0))
            });
            let slow: Vec<String> = slow
                .iter()
                .take(3)
                .map(|r| {
                    format!(
                        "{} {} p95 {}",
                        r["method"].as_str().unwrap_or(""),
                        r["route"].as_str().unwrap_or("?"),
                        ms(&r["p95_ms"])
                    )
                })
                .collect();
            let _ = writeln!(out, "  slowest routes: {}", slow.join(" · "));
        }
        if let Some(e) = v.errors["errors"].as_array().and_then(|e| e.first()) {
            let _ = writeln!(
                out,
                "  latest error:   {}: {} ({}×, {}) — `obs-stack errors {}`",
                e["type"].as_str().unwrap_or("error"),
                e["message"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(80)
                    .collect::<String>(),
                e["count"].as_i64().unwrap_or(0),
                ago(now_ms, &e["last_seen"]),
                e["id"].as_str().unwrap_or("")
            );
        }
        if let Some(status) = last_value(&v.runtime, "http_check.status") {
            let lat = last_value(&v.runtime, "http_check.latency_ms")
                .map(|l| format!(" in {l:.0}ms"))
                .unwrap_or_default();
            let up = last_value(&v.runtime, "http_check.up").unwrap_or(if status > 0.0 { 1.0 } else { 0.0 });
            let path = check_path(&v.runtime)
                .map(|p| format!(" on {p}"))
                .unwrap_or_default();
            let note = if up > 0.0 && status >= 400.0 {
                // it answers, but no usual health path (nor `/`) answers well: say what it means
                " (it answers, so it is up; none of /healthz, /health, /readyz, /ready, /livez, /ping, /status, / answers below 400)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  http check:     {}{lat}{note}",
                if up > 0.0 {
                    format!("HTTP {status:.0}{path}")
                } else {
                    style.paint(Paint::Red, "no answer")
                }
            );
        }
        if let (Some(cpu), Some(mem)) = (
            last_value(&v.runtime, "container_stats.cpu_percent"),
            last_value(&v.runtime, "container_stats.memory_bytes"),
        ) {
            let limit = last_value(&v.runtime, "container_stats.memory_limit_bytes")
                .filter(|l| *l > 0.0 && *l < 1e15)
                .map(|l| format!(" of {}", bytes(l)))
                .unwrap_or_default();
            let restarts = last_value(&v.runtime, "container_stats.restarts").unwrap_or(0.0);
            let oom = last_value(&v.runtime, "container_stats.oom_killed").unwrap_or(0.0) > 0.0;
            let _ = writeln!(
                out,
                "  container:      CPU {cpu:.1}%, memory {}{limit}, {restarts:.0} restarts{}",
                bytes(mem),
                if oom { ", OOM-killed" } else { "" }
            );
        }
        if routes.is_empty() && s["source"].is_null() && !watched {
            let _ = writeln!(
                out,
                "  no requests seen: send one, or see `obs-stack status` hints (agent loaded? `docker logs`)"
            );
        }
    }
    out
}

/// `obs-stack traces`: recent traces, newest first.
/// The project the views show when none is named: the compose project of this folder when
/// the backend knows it, the only one it knows, or the only one `up` has running (`live`),
/// so data an earlier project left behind does not make the views refuse.
pub fn pick_project(known: &Value, here: Option<&str>, live: &[String]) -> anyhow::Result<String> {
    let names: Vec<String> = known
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["project"].as_str().map(String::from))
        .collect();
    let live: Vec<&String> = live.iter().filter(|p| names.contains(p)).collect();
    match here {
        Some(h) if names.iter().any(|n| n == h) => Ok(h.to_string()),
        _ if names.len() == 1 => Ok(names[0].clone()),
        _ if live.len() == 1 => Ok(live[0].clone()),
        _ if names.is_empty() => anyhow::bail!(
            "the backend has no project yet\n  hint: `obs-stack up` instruments a project and registers it"
        ),
        _ => anyhow::bail!(
            "several projects ({}) and this folder is not one of their compose projects: pick one with --project",
            names.join(", ")
        ),
    }
}

/// `traces SERVICE --route R` found nothing: the routes the service has, to pick from.
pub fn render_unknown_route(route: &str, routes: &Value) -> String {
    let known: Vec<String> = routes["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap_or(""),
                r["route"].as_str().unwrap_or("")
            )
            .trim()
            .to_string()
        })
        .collect();
    if known.is_empty() {
        return format!("No traces of route {route:?} in this range, and no routes seen for this service.\n");
    }
    format!(
        "No traces of route {route:?} in this range. Routes seen: {}\n(give the route as shown, e.g. --route \"{}\")\n",
        known.join(", "),
        known[0]
    )
}

pub fn render_traces(traces: &Value, now_ms: i64) -> String {
    let list = traces["traces"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "No traces in this range: send a request to an instrumented service (traces are \
                sampled: --profile dev keeps all of them).\n"
            .into();
    }
    let mut out = format!(
        "{}{}{}{}{}{}\n",
        pad("TRACE", 34),
        pad("SERVICE", 14),
        pad("ROUTE", 28),
        pad("DURATION", 10),
        pad("SPANS", 6),
        "STATUS / WHEN"
    );
    for t in list {
        let route = format!(
            "{} {}",
            t["method"].as_str().unwrap_or(""),
            t["route"].as_str().or(t["name"].as_str()).unwrap_or("?")
        );
        let _ = writeln!(
            out,
            "{}{}{}{}{}{}{}",
            pad(t["trace_id"].as_str().unwrap_or("?"), 34),
            pad(t["service"].as_str().unwrap_or("?"), 14),
            pad(route.trim(), 28),
            pad(&ms(&t["duration_ms"]), 10),
            pad(&t["span_count"].to_string(), 6),
            t["http_status"]
                .as_i64()
                .map(|s| format!("{s} "))
                .unwrap_or_default(),
            if t["error"].as_bool() == Some(true) {
                format!("error, {}", ago(now_ms, &t["start_ms"]))
            } else {
                ago(now_ms, &t["start_ms"])
            }
        );
    }
    out
}

/// `obs-stack traces ID`: the trace as a waterfall with durations and key attributes.
pub fn render_waterfall(trace: &Value, width: usize) -> String {
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    if spans.is_empty() {
        return "This trace has no spans.\n".into();
    }
    let start = spans
        .iter()
        .filter_map(|s| s["start_ms"].as_f64())
        .fold(f64::MAX, f64::min);
    let end = spans
        .iter()
        .filter_map(|s| Some(s["start_ms"].as_f64()? + s["duration_ms"].as_f64()?))
        .fold(f64::MIN, f64::max);
    let total = (end - start).max(0.001);
    let bar_w = width.saturating_sub(60).clamp(10, 60);
    // Depth-first from the roots, children by start time.
    let ids: Vec<String> = spans
        .iter()
        .map(|s| s["span_id"].as_str().unwrap_or("").to_string())
        .collect();
    let mut children: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let parent = s["parent_span_id"].as_str().unwrap_or("");
        if parent.is_empty() || !ids.iter().any(|id| id == parent) {
            roots.push(i);
        } else {
            children.entry(parent.to_string()).or_default().push(i);
        }
    }
    let by_start = |v: &mut Vec<usize>| {
        v.sort_by(|a, b| {
            spans[*a]["start_ms"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&spans[*b]["start_ms"].as_f64().unwrap_or(0.0))
        })
    };
    by_start(&mut roots);
    for v in children.values_mut() {
        by_start(v);
    }
    let mut out = format!(
        "trace {} — {} spans, {}\n",
        trace["trace_id"].as_str().unwrap_or("?"),
        spans.len(),
        ms(&Value::from(total))
    );
    if trace["truncated"].as_bool() == Some(true) {
        out = format!(
            "trace {} — the first {} of {} spans (the answer is bounded), {}\n",
            trace["trace_id"].as_str().unwrap_or("?"),
            spans.len(),
            trace["span_count"],
            ms(&Value::from(total))
        );
    }
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|r| (*r, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        let s = &spans[i];
        let off = ((s["start_ms"].as_f64().unwrap_or(start) - start) / total * bar_w as f64) as usize;
        let len = ((s["duration_ms"].as_f64().unwrap_or(0.0) / total * bar_w as f64).ceil() as usize).max(1);
        let bar = format!(
            "{}{}{}",
            " ".repeat(off.min(bar_w)),
            "█".repeat(len.min(bar_w - off.min(bar_w - 1))),
            ""
        );
        let label = format!(
            "{}{} {}",
            "  ".repeat(depth),
            s["service"].as_str().unwrap_or("?"),
            s["name"].as_str().unwrap_or("?")
        );
        let _ = writeln!(
            out,
            "{}{}|{}|{}",
            pad(&label, 44),
            pad(&ms(&s["duration_ms"]), 9),
            pad(&bar, bar_w),
            if s["error"].as_bool() == Some(true) {
                " ERROR"
            } else {
                ""
            }
        );
        let a = &s["attributes"];
        let mut keys = Vec::new();
        for k in [
            "http.route",
            "http.response.status_code",
            "http.status_code",
            "db.statement",
            "db.query.text",
        ] {
            if let Some(v) = a.get(k).filter(|v| !v.is_null()) {
                let v = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
                keys.push(format!("{k}={}", v.chars().take(100).collect::<String>()));
            }
        }
        if !keys.is_empty() {
            let _ = writeln!(out, "{}    {}", "  ".repeat(depth), keys.join("  "));
        }
        for e in s["events"].as_array().into_iter().flatten() {
            if e["name"] == "exception" {
                let _ = writeln!(
                    out,
                    "{}    exception {}: {}",
                    "  ".repeat(depth),
                    e["attributes"]["exception.type"].as_str().unwrap_or("?"),
                    e["attributes"]["exception.message"].as_str().unwrap_or("")
                );
            }
        }
        if let Some(kids) = children.get(s["span_id"].as_str().unwrap_or("")) {
            for k in kids.iter().rev() {
                stack.push((*k, depth + 1));
            }
        }
    }
    out
}

/// `obs-stack errors`: error groups, newest first, with counts.
pub fn render_errors(errors: &Value, now_ms: i64) -> String {
    let list = errors["errors"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "No errors in this range. (Exceptions arrive as span events and error logs from \
                instrumented services.)\n"
            .into();
    }
    let mut out = format!(
        "{}{}{}{}\n",
        pad("ID", 18),
        pad("COUNT", 7),
        pad("LAST SEEN", 11),
        "ERROR (services · routes)"
    );
    for e in list {
        let _ = writeln!(
            out,
            "{}{}{}{}: {} ({} · {})",
            pad(e["id"].as_str().unwrap_or("?"), 18),
            pad(&e["count"].to_string(), 7),
            pad(&ago(now_ms, &e["last_seen"]), 11),
            e["type"].as_str().unwrap_or("error"),
            e["message"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(70)
                .collect::<String>(),
            join(&e["services"]),
            join(&e["routes"])
        );
    }
    out
}

fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// `obs-stack errors ID`: the latest stack trace and the sample traces.
pub fn render_error_group(g: &Value, now_ms: i64) -> String {
    let mut out = format!(
        "{}: {}\n{} times, first {}, last {}; services {}; routes {}\n\n",
        g["type"].as_str().unwrap_or("error"),
        g["message"].as_str().unwrap_or(""),
        g["count"],
        ago(now_ms, &g["first_seen"]),
        ago(now_ms, &g["last_seen"]),
        join(&g["services"]),
        join(&g["routes"])
    );
    match g["stack_trace"].as_str() {
        Some(st) if !st.trim().is_empty() => {
            out.push_str(st.trim_end());
            out.push('\n');
        }
        _ => out.push_str("(no stack trace was recorded)\n"),
    }
    let samples = join(&g["sample_trace_ids"]);
    if !samples.is_empty() {
        let _ = writeln!(out, "\nsample traces (`obs-stack traces ID`): {samples}");
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_project_is_this_folders_the_only_one_or_the_one_up_runs() {
        let known = serde_json::json!([{"project": "old"}, {"project": "shop"}]);
        assert_eq!(pick_project(&known, Some("shop"), &[]).unwrap(), "shop");
        assert_eq!(pick_project(&known, None, &["shop".into()]).unwrap(), "shop");
        assert_eq!(
            pick_project(&known, Some("elsewhere"), &["shop".into()]).unwrap(),
            "shop"
        );
        assert!(
            pick_project(&known, None, &[])
                .unwrap_err()
                .to_string()
                .contains("--project")
        );
        assert!(pick_project(&known, None, &["gone".into()]).is_err());
        assert_eq!(
            pick_project(&serde_json::json!([{"project": "solo"}]), None, &[]).unwrap(),
            "solo"
        );
        assert!(pick_project(&serde_json::json!([]), None, &[]).is_err());
    }

    use super::*;
    use crate::output::ColorChoice;

    fn style() -> Style {
        Style::new(false, ColorChoice::Never, 0, false)
    }

    #[test]
    fn empty_project_says_what_to_do() {
        let s = render_status(&style(), "shop", &[], &BTreeMap::new(), 0, 120);
        assert!(s.contains("No data yet") && s.contains("Send a request"));
    }

    #[test]
    fn status_marks_what_is_over_its_default() {
        let th = thresholds(
            "default: {latency_p95: 0.5, error_rate: 0.05}\npython: {latency_p95: 0.2, error_rate: 0.01}\n",
        );
        let v = ServiceView {
            service: serde_json::json!({"name":"shop","language":"python","rps":1.5,"p50_ms":5.0,"p95_ms":300.0,"p99_ms":400.0,"error_rate":0.1,"source":"metrics"}),
            routes: serde_json::json!({"routes":[{"route":"/slow","method":"GET","calls":10,"p95_ms":300.0},{"route":"/","method":"GET","calls":30,"p95_ms":3.0}]}),
            errors: serde_json::json!({"errors":[{"id":"e1","type":"ValueError","message":"boom","count":3,"last_seen":1000}]}),
            runtime: serde_json::json!({"series":[{"name":"container_stats.memory_bytes","points":[[0, 52428800.0]]}]}),
        };
        let s = render_status(&style(), "shop", &[v], &th, 5000, 120);
        assert!(s.contains("300ms!"), "{s}");
        assert!(s.contains("10.0%!"), "{s}");
        assert!(s.contains("50MiB"), "{s}");
        assert!(s.contains("slowest routes: GET /slow p95 300ms"), "{s}");
        assert!(s.contains("latest error:   ValueError: boom (3×, 4s ago)"), "{s}");
    }

    #[test]
    fn waterfall_nests_children_under_parents() {
        let t = serde_json::json!({"trace_id":"t1","spans":[
            {"span_id":"b","parent_span_id":"a","service":"shop","name":"SELECT","start_ms":10.0,"duration_ms":40.0,"attributes":{"db.statement":"SELECT 1"},"events":[]},
            {"span_id":"a","parent_span_id":"","service":"shop","name":"GET /slow","start_ms":0.0,"duration_ms":60.0,"attributes":{"http.route":"/slow"},"events":[{"name":"exception","attributes":{"exception.type":"ValueError","exception.message":"x"}}],"error":true}
        ]});
        let s = render_waterfall(&t, 100);
        let root = s.find("shop GET /slow").unwrap();
        let child = s.find("  shop SELECT").unwrap();
        assert!(root < child, "{s}");
        assert!(
            s.contains("db.statement=SELECT 1") && s.contains("exception ValueError: x"),
            "{s}"
        );
    }

    #[test]
    fn lists_say_what_to_do_when_empty() {
        assert!(render_traces(&serde_json::json!({"traces":[]}), 0).contains("send a request"));
        assert!(render_errors(&serde_json::json!({"errors":[]}), 0).contains("No errors"));
    }
}
