//! Findings over whole traces (as the backend's `GET /api/v1/traces/{id}` answers them): N+1
//! queries (the same statement repeated under one parent span) and the child span that takes
//! the largest share of each route's requests. Pure; used by `obs-stack analyze` after its
//! replay burst and by the backend's `GET /api/v1/analysis` over stored traces (the UI's
//! "Run analysis").
use std::collections::BTreeMap;

use serde_json::Value;

/// What the analysis found in the traces of a burst (pure; `obs-stack analyze`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Findings {
    /// The same DB statement repeated under one parent span: (route, statement, times, trace).
    pub n_plus_one: Vec<NPlusOne>,
    /// Per route: the child span taking the largest share of the request (median share).
    pub slowest_children: Vec<SlowChild>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NPlusOne {
    pub route: String,
    pub statement: String,
    pub times: usize,
    pub trace_id: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SlowChild {
    pub route: String,
    pub span: String,
    /// Median share of the request's duration, 0..1.
    pub share: f64,
}

/// A statement run this many times under one parent is an N+1.
pub const N_PLUS_ONE_MIN: usize = 3;

fn statement(s: &Value) -> Option<String> {
    let a = &s["attributes"];
    a.get("db.statement")
        .or_else(|| a.get("db.query.text"))
        .and_then(|v| v.as_str())
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Findings over whole traces (each as `GET /api/v1/traces/{id}` answers).
pub fn analyze_traces(traces: &[Value]) -> Findings {
    let mut f = Findings::default();
    let mut shares: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for t in traces {
        let spans = t["spans"].as_array().cloned().unwrap_or_default();
        let Some(root) = spans
            .iter()
            .find(|s| s["parent_span_id"].as_str().unwrap_or("").is_empty())
            .or_else(|| spans.first())
        else {
            continue;
        };
        let route = format!(
            "{} {}",
            root["method"].as_str().unwrap_or("GET"),
            root["route"].as_str().or(root["name"].as_str()).unwrap_or("?")
        );
        let trace_id = t["trace_id"].as_str().unwrap_or("").to_string();
        let mut repeats: BTreeMap<(String, String), usize> = BTreeMap::new();
        for s in &spans {
            if let Some(stmt) = statement(s) {
                *repeats
                    .entry((s["parent_span_id"].as_str().unwrap_or("").to_string(), stmt))
                    .or_default() += 1;
            }
        }
        for ((_, stmt), n) in repeats {
            if n >= N_PLUS_ONE_MIN
                && !f
                    .n_plus_one
                    .iter()
                    .any(|x| x.route == route && x.statement == stmt)
            {
                f.n_plus_one.push(NPlusOne {
                    route: route.clone(),
                    statement: stmt,
                    times: n,
                    trace_id: trace_id.clone(),
                });
            }
        }
        let total = root["duration_ms"].as_f64().unwrap_or(0.0);
        if total > 0.0
            && let Some(child) = spans
                .iter()
                .filter(|s| s["span_id"] != root["span_id"])
                .max_by(|a, b| {
                    a["duration_ms"]
                        .as_f64()
                        .unwrap_or(0.0)
                        .total_cmp(&b["duration_ms"].as_f64().unwrap_or(0.0))
                })
        {
            let name = child["name"].as_str().unwrap_or("?").to_string();
            let share = (child["duration_ms"].as_f64().unwrap_or(0.0) / total).min(1.0);
            shares.entry((route.clone(), name)).or_default().push(share);
        }
    }
    let mut by_route: BTreeMap<String, SlowChild> = BTreeMap::new();
    for ((route, span), mut v) in shares {
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        let better = by_route.get(&route).is_none_or(|c| median > c.share);
        if better {
            by_route.insert(
                route.clone(),
                SlowChild {
                    route,
                    span,
                    share: median,
                },
            );
        }
    }
    f.slowest_children = by_route.into_values().collect();
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_statements_under_one_parent_are_an_n_plus_one() {
        let mut spans = vec![
            serde_json::json!({"span_id":"r","parent_span_id":"","name":"GET /orders","route":"/orders","method":"GET","duration_ms":10.0}),
        ];
        for i in 0..5 {
            spans.push(serde_json::json!({"span_id":format!("c{i}"),"parent_span_id":"r","name":"SELECT","duration_ms":1.0,
                "attributes":{"db.statement":"select name from items where id = ?"}}));
        }
        spans.push(
            serde_json::json!({"span_id":"q","parent_span_id":"r","name":"SELECT ids","duration_ms":4.0,
            "attributes":{"db.statement":"select id from items"}}),
        );
        let f = analyze_traces(&[serde_json::json!({"trace_id":"t1","spans":spans})]);
        assert_eq!(f.n_plus_one.len(), 1, "{f:?}");
        assert_eq!(f.n_plus_one[0].times, 5);
        assert_eq!(f.n_plus_one[0].route, "GET /orders");
        assert_eq!(f.slowest_children[0].span, "SELECT ids");
        assert!((f.slowest_children[0].share - 0.4).abs() < 1e-9);
    }

    #[test]
    fn two_queries_are_not_an_n_plus_one() {
        let spans = vec![
            serde_json::json!({"span_id":"r","parent_span_id":"","name":"GET /","duration_ms":5.0}),
            serde_json::json!({"span_id":"a","parent_span_id":"r","name":"q","duration_ms":1.0,"attributes":{"db.statement":"select 1"}}),
            serde_json::json!({"span_id":"b","parent_span_id":"r","name":"q","duration_ms":1.0,"attributes":{"db.statement":"select 1"}}),
        ];
        assert!(
            analyze_traces(&[serde_json::json!({"trace_id":"t","spans":spans})])
                .n_plus_one
                .is_empty()
        );
    }
}
