//! Scoring: evidence combined as log-odds, pure over `Observations`.
//!
//! Units: signature priors and indicator weights are **log10** odds / likelihood ratios
//! (1.0 = the observation is 10× more likely when the technology is present than when it is
//! not). Internally the sums are converted to natural-log odds for the softmax.
//!
//! For each signature: `L = prior + Σ_groups (strongest positive + strongest negative)`, where
//! every indicator belongs to a group of correlated indicators (default: its probe), and all
//! port indicators together add at most `PORT_CAP`. Absence of an indicator adds its `absent`
//! weight only when the probe read its target (HTTP answered, the ecosystem's manifests were
//! read, processes were listed, ...).
//!
//! `implies`: framework and server evidence (ports excluded) lifts its language by the
//! strongest such lift, so `flask` in requirements.txt also says "Python".
//!
//! Signatures sharing a slot are mutually exclusive with an implicit "none" (log-odds 0):
//! `P(i) = e^Li / (1 + Σ_j e^Lj)`. A signature alone in its slot gets `logistic(L)`.
//! Calibrated confidence is that probability; "confirmed" needs positive evidence
//! (≥ `CONFIRM_MIN`) from two different probes, ports not counted.
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::obs::{Observations, rank};
use super::signature::{Matcher, PORT_CAP, Probe, SigKind, Signature, SignatureSet, normalize_dep};

/// Minimum log10 weight for a probe to count towards "confirmed".
pub const CONFIRM_MIN: f64 = 0.5;
/// log10 weight against a framework or server when nothing listens.
pub const NO_LISTENER: f64 = -2.0;
/// The same within `STARTUP_GRACE_S` of the container's start: servers take seconds to bind,
/// so not listening *yet* is weak evidence (a worker is told apart once the grace is over).
pub const NO_LISTENER_STARTING: f64 = -0.5;
/// How long after a container's start "nothing listens" is read as "not yet".
pub const STARTUP_GRACE_S: u64 = 20;
/// Reported at or above this probability.
pub const REPORT_AT: f64 = 0.5;
/// A dependency only locked or installed (not declared by the app) counts this fraction.
pub const TRANSITIVE_FACTOR: f64 = 0.5;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evidence {
    pub technology: String,
    pub probe: Probe,
    /// log10 likelihood ratio as counted (0 when dominated by a stronger indicator of its group)
    pub weight: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    pub id: String,
    pub name: String,
    pub kind: SigKind,
    pub language: Option<String>,
    pub slot: String,
    /// log10 odds against "none" (prior + evidence)
    pub log_odds: f64,
    pub probability: f64,
    pub version: Option<String>,
    #[serde(skip)]
    pub version_rank: u8,
    /// probes with positive evidence ≥ CONFIRM_MIN (ports excluded)
    pub probes: BTreeSet<Probe>,
    pub evidence: Vec<Evidence>,
}

struct Hit {
    weight: f64,
    detail: String,
    version: Option<(String, u8)>,
    probe: Probe,
}

fn cap(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn capture1(re: &regex::Regex, text: &str) -> Option<(String, Option<String>)> {
    let c = re.captures(text)?;
    let whole = c.get(0).map(|m| m.as_str().to_string()).unwrap_or_default();
    let v = c.get(1).map(|m| m.as_str().to_string()).filter(|s| !s.is_empty());
    Some((whole, v))
}

fn dep_matches(ecosystem: &str, pattern: &str, dep_eco: &str, dep_name: &str) -> bool {
    if ecosystem != dep_eco {
        return false;
    }
    let name = normalize_dep(ecosystem, dep_name);
    let (pat, name) = if ecosystem == "maven" {
        // jars inside a fat jar carry only the artifact id: compare artifacts then
        let pa = pattern.rsplit(':').next().unwrap_or(pattern);
        let na = name.rsplit(':').next().unwrap_or(&name);
        if name.starts_with(':') || !pattern.contains(':') {
            // `group:*` says nothing about a jar known only by its artifact id
            if pa == "*" {
                return false;
            }
            (pa.to_string(), na.to_string())
        } else {
            (pattern.to_string(), name.clone())
        }
    } else {
        (pattern.to_string(), name.clone())
    };
    match pat.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pat,
    }
}

/// A `file:` pattern against a path: `a/b.txt` matches a path ending in `/a/b.txt`; a pattern
/// with one `*` (`*.py`, `requirements*.txt`) matches the basename.
pub fn file_matches(pattern: &str, path: &str) -> bool {
    if let Some((pre, suf)) = pattern.split_once('*') {
        let base = path.rsplit('/').next().unwrap_or(path);
        return !path.ends_with('/')
            && base.len() >= pre.len() + suf.len()
            && base.starts_with(pre)
            && base.ends_with(suf);
    }
    path == pattern || path.ends_with(&format!("/{pattern}"))
}

/// The strongest match of one indicator, or its absence weight when the probe read its target.
fn evaluate(m: &Matcher, weight: f64, absent: Option<f64>, obs: &Observations) -> Option<Hit> {
    let hit = |w: f64, detail: String, version: Option<(String, u8)>, probe: Probe| Hit {
        weight: w,
        detail,
        version,
        probe,
    };
    let mut best: Option<Hit> = None;
    let mut consider = |h: Hit| {
        let better = match &best {
            None => true,
            Some(b) => {
                h.weight > b.weight
                    || (h.weight == b.weight
                        && h.version.as_ref().map(|v| v.1).unwrap_or(0)
                            > b.version.as_ref().map(|v| v.1).unwrap_or(0))
            }
        };
        if better {
            best = Some(h);
        }
    };
    let read: bool;
    match m {
        Matcher::Env { name, value } => {
            read = obs.env.is_some();
            for (k, v) in obs.env.iter().flatten() {
                if k != name {
                    continue;
                }
                match value {
                    None => consider(hit(weight, format!("env {k} is set"), None, Probe::Env)),
                    Some(re) => {
                        if let Some((_, ver)) = capture1(re, v) {
                            consider(hit(
                                weight,
                                format!("env {k}={}", cap(v, 80)),
                                ver.map(|v| (v, rank::OTHER)),
                                Probe::Env,
                            ));
                        }
                    }
                }
            }
        }
        Matcher::Port(p) => {
            read = obs.ports.is_some();
            if let Some(po) = obs.ports.iter().flatten().find(|po| po.port == *p) {
                consider(hit(weight, format!("port {p} {}", po.source), None, Probe::Ports));
            }
        }
        Matcher::File { path, contains } => {
            read = obs.files.as_ref().is_some_and(|f| !f.dirs.is_empty());
            for (fp, content) in obs.files.iter().flat_map(|f| f.files.iter()) {
                if !file_matches(path, fp) {
                    continue;
                }
                match contains {
                    None => consider(hit(weight, format!("file {fp}"), None, Probe::Files)),
                    Some(re) => {
                        if let Some(text) = content
                            && let Some((whole, ver)) = capture1(re, text)
                        {
                            consider(hit(
                                weight,
                                format!("file {fp} contains {:?}", cap(&whole, 60)),
                                ver.map(|v| (v, rank::PIN)),
                                Probe::Files,
                            ));
                        }
                    }
                }
            }
        }
        Matcher::Dependency { ecosystem, name } => {
            read = obs.deps_read.contains(ecosystem);
            for d in &obs.deps {
                if !dep_matches(ecosystem, name, &d.ecosystem, &d.name) {
                    continue;
                }
                let w = if d.direct || weight < 0.0 {
                    weight
                } else {
                    weight * TRANSITIVE_FACTOR
                };
                let ver = d.version.clone().map(|v| (v, d.rank));
                let how = if d.direct { "" } else { " (transitive)" };
                consider(hit(
                    w,
                    format!(
                        "{} dependency {}{}{} in {}",
                        d.ecosystem,
                        d.name,
                        d.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default(),
                        how,
                        d.source
                    ),
                    ver,
                    d.probe,
                ));
            }
        }
        Matcher::Cmdline(re) => {
            read = obs.processes.as_ref().is_some_and(|p| !p.is_empty());
            for p in obs.processes.iter().flatten() {
                if let Some((_, ver)) = capture1(re, &p.cmdline) {
                    consider(hit(
                        weight,
                        format!("process {}: {}", p.pid, cap(&p.cmdline, 100)),
                        ver.map(|v| (v, rank::OTHER)),
                        Probe::Process,
                    ));
                }
            }
        }
        Matcher::Exe(re) => {
            read = obs.processes.as_ref().is_some_and(|p| !p.is_empty());
            for p in obs.processes.iter().flatten() {
                let base = p.exe.rsplit('/').next().unwrap_or(&p.exe);
                if let Some((_, ver)) = capture1(re, base) {
                    consider(hit(
                        weight,
                        format!("process {} executable {}", p.pid, p.exe),
                        ver.map(|v| (v, rank::LOCK)),
                        Probe::Process,
                    ));
                }
            }
        }
        Matcher::ElfNeeded(re) => {
            read = !obs.binaries.is_empty();
            for b in &obs.binaries {
                for n in &b.needed {
                    if let Some((_, ver)) = capture1(re, n) {
                        consider(hit(
                            weight,
                            format!("{} needs {n}", b.path),
                            ver.map(|v| (v, rank::INSTALLED)),
                            Probe::Process,
                        ));
                    }
                }
            }
        }
        Matcher::ElfInterp(re) => {
            read = !obs.binaries.is_empty();
            for b in &obs.binaries {
                let interp = b.interp.as_deref().unwrap_or("(static)");
                if let Some((_, ver)) = capture1(re, interp) {
                    consider(hit(
                        weight,
                        format!("{} interpreter {interp}", b.path),
                        ver.map(|v| (v, rank::INSTALLED)),
                        Probe::Process,
                    ));
                }
            }
        }
        Matcher::Binary(re) => {
            read = !obs.binaries.is_empty();
            for b in &obs.binaries {
                for t in &b.tags {
                    if let Some((_, ver)) = capture1(re, t) {
                        consider(hit(
                            weight,
                            format!("{} is {t}", b.path),
                            ver.map(|v| (v, rank::INSTALLED)),
                            Probe::Process,
                        ));
                    }
                }
            }
        }
        Matcher::Header { name, value } => {
            read = obs.http_answered();
            for r in obs.http.iter().flatten() {
                for (k, v) in &r.headers {
                    if k == name
                        && let Some((_, ver)) = capture1(value, v)
                    {
                        consider(hit(
                            weight,
                            format!("port {} {}: {k}: {}", r.port, r.request, cap(v, 80)),
                            ver.map(|v| (v, rank::OTHER)),
                            Probe::Http,
                        ));
                    }
                }
            }
        }
        Matcher::Cookie(re) => {
            read = obs.http_answered();
            for r in obs.http.iter().flatten() {
                for (k, v) in &r.headers {
                    if k != "set-cookie" {
                        continue;
                    }
                    let cname = v.split(['=', ';']).next().unwrap_or("").trim();
                    if re.is_match(cname) {
                        consider(hit(
                            weight,
                            format!("port {} {}: cookie {cname}", r.port, r.request),
                            None,
                            Probe::Http,
                        ));
                    }
                }
            }
        }
        Matcher::Body(re) => {
            read = obs.http_answered();
            for r in obs.http.iter().flatten() {
                if let Some((whole, ver)) = capture1(re, &r.body) {
                    consider(hit(
                        weight,
                        format!(
                            "port {} {} ({}): body {:?}",
                            r.port,
                            r.request,
                            r.status,
                            cap(&whole, 60)
                        ),
                        ver.map(|v| (v, rank::OTHER)),
                        Probe::Http,
                    ));
                }
            }
        }
    }
    if best.is_none()
        && read
        && let Some(a) = absent
    {
        let what = match m {
            Matcher::Dependency { ecosystem, name } => format!("no {ecosystem} dependency {name}"),
            Matcher::Header { name, .. } => format!("no matching {name} header"),
            Matcher::Cmdline(re) => format!("no process matching {}", re.as_str()),
            Matcher::Exe(re) => format!("no executable matching {}", re.as_str()),
            Matcher::File { path, .. } => format!("no matching file {path}"),
            Matcher::Env { name, .. } => format!("no matching env {name}"),
            Matcher::Body(re) => format!("no body matching {}", re.as_str()),
            Matcher::Cookie(re) => format!("no cookie matching {}", re.as_str()),
            Matcher::ElfNeeded(re) => format!("no DT_NEEDED matching {}", re.as_str()),
            Matcher::ElfInterp(re) => format!("no interpreter matching {}", re.as_str()),
            Matcher::Binary(re) => format!("no binary fact matching {}", re.as_str()),
            Matcher::Port(p) => format!("port {p} not used"),
        };
        return Some(hit(a, what, None, m.probe()));
    }
    best
}

/// Whether a matcher matches the observations: the match's description when it does.
pub fn matches(m: &Matcher, obs: &Observations) -> Option<String> {
    evaluate(m, 1.0, None, obs)
        .filter(|h| h.weight > 0.0)
        .map(|h| h.detail)
}

/// Scores one signature on its own evidence (no `implies`, no slot competition yet).
fn score_one(sig: &Signature, obs: &Observations) -> Scored {
    struct Group {
        pos: Option<(f64, usize)>,
        neg: Option<(f64, usize)>,
    }
    let mut hits: Vec<Hit> = Vec::new();
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    let mut port_sum = 0.0;
    let mut port_idx = Vec::new();
    let mut version: Option<(String, u8, f64)> = None;
    for ind in &sig.indicators {
        let Some(h) = evaluate(&ind.matcher, ind.weight, ind.absent, obs) else {
            continue;
        };
        if ind.version
            && h.weight > 0.0
            && let Some((v, r)) = &h.version
        {
            let better = match &version {
                None => true,
                Some((_, br, bw)) => *r > *br || (*r == *br && h.weight > *bw),
            };
            if better {
                version = Some((v.clone(), *r, h.weight));
            }
        }
        let idx = hits.len();
        if matches!(ind.matcher, Matcher::Port(_)) {
            port_sum += h.weight;
            port_idx.push(idx);
        } else {
            let g = groups
                .entry(ind.group.as_str())
                .or_insert(Group { pos: None, neg: None });
            if h.weight >= 0.0 {
                if g.pos.is_none_or(|(w, _)| h.weight > w) {
                    g.pos = Some((h.weight, idx));
                }
            } else if g.neg.is_none_or(|(w, _)| h.weight < w) {
                g.neg = Some((h.weight, idx));
            }
        }
        hits.push(h);
    }
    let mut counted = vec![0.0; hits.len()];
    let mut total = 0.0;
    for g in groups.values() {
        for (w, i) in [g.pos, g.neg].into_iter().flatten() {
            counted[i] = w;
            total += w;
        }
    }
    let port_total = port_sum.clamp(-PORT_CAP, PORT_CAP);
    if port_sum != 0.0 {
        for &i in &port_idx {
            counted[i] = hits[i].weight * port_total / port_sum;
        }
    }
    total += port_total;
    // frameworks and servers serve: a container whose listening sockets were read and that
    // listens on nothing speaks against all of them (a worker sharing a web app's code)
    if matches!(sig.kind, SigKind::Framework | SigKind::Server)
        && obs.listen_read
        && !obs
            .ports
            .iter()
            .flatten()
            .any(|p| p.source.starts_with("listening"))
    {
        let (w, detail) = if obs.starting {
            (
                NO_LISTENER_STARTING,
                format!("no TCP port listens yet (the container started less than {STARTUP_GRACE_S} s ago)"),
            )
        } else {
            (NO_LISTENER, "no TCP port listens in the container".to_string())
        };
        total += w;
        hits.push(Hit {
            weight: w,
            detail,
            version: None,
            probe: Probe::Ports,
        });
        counted.push(w);
    }
    let mut probes = BTreeSet::new();
    let mut evidence = Vec::new();
    for (h, w) in hits.into_iter().zip(counted) {
        if w >= CONFIRM_MIN && h.probe != Probe::Ports {
            probes.insert(h.probe);
        }
        evidence.push(Evidence {
            technology: sig.id.clone(),
            probe: h.probe,
            weight: w,
            detail: h.detail,
        });
    }
    evidence.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    Scored {
        id: sig.id.clone(),
        name: sig.name.clone(),
        kind: sig.kind,
        language: sig.language.clone(),
        slot: sig.slot.clone(),
        log_odds: sig.prior + total,
        probability: 0.0,
        version_rank: version.as_ref().map(|v| v.1).unwrap_or(0),
        version: version.map(|v| v.0),
        probes,
        evidence,
    }
}

/// Scores every signature: own evidence, then `implies`, then slot competition.
pub fn score(set: &SignatureSet, obs: &Observations) -> Vec<Scored> {
    let mut scored: Vec<Scored> = set.sigs.iter().map(|s| score_one(s, obs)).collect();
    // implies: lift each language by its strongest framework/server (non-port evidence only)
    let mut lifts: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (i, s) in scored.iter().enumerate() {
        if !matches!(s.kind, SigKind::Framework | SigKind::Server) {
            continue;
        }
        let Some(lang) = &s.language else { continue };
        let lift: f64 = s
            .evidence
            .iter()
            .filter(|e| e.probe != Probe::Ports)
            .map(|e| e.weight)
            .sum::<f64>()
            .max(0.0);
        if lift > 0.0 && lifts.get(lang).is_none_or(|(l, _)| lift > *l) {
            lifts.insert(lang.clone(), (lift, i));
        }
    }
    for (lang, (lift, from)) in lifts {
        let name = scored[from].name.clone();
        let probes = scored[from].probes.clone();
        let probe = scored[from]
            .evidence
            .first()
            .map(|e| e.probe)
            .unwrap_or(Probe::Files);
        if let Some(l) = scored
            .iter_mut()
            .find(|s| s.kind == SigKind::Language && s.id == lang)
        {
            l.log_odds += lift;
            l.probes.extend(probes);
            l.evidence.push(Evidence {
                technology: l.id.clone(),
                probe,
                weight: lift,
                detail: format!("implied by {name}"),
            });
        }
    }
    // slots: softmax with an implicit "none"
    let mut slots: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in scored.iter().enumerate() {
        slots.entry(s.slot.clone()).or_default().push(i);
    }
    let ln10 = std::f64::consts::LN_10;
    for members in slots.values() {
        let max = members
            .iter()
            .map(|&i| scored[i].log_odds * ln10)
            .fold(0.0f64, f64::max);
        let denom = (-max).exp()
            + members
                .iter()
                .map(|&i| (scored[i].log_odds * ln10 - max).exp())
                .sum::<f64>();
        for &i in members {
            scored[i].probability = (scored[i].log_odds * ln10 - max).exp() / denom;
        }
    }
    scored
}

/// The outcome of scoring: what to report.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub infrastructure: Option<usize>,
    pub language: Option<usize>,
    pub framework: Option<usize>,
    pub server: Option<usize>,
    pub agents: Vec<usize>,
    /// the reported technology's probability (framework, else language, else infrastructure)
    pub confidence: f64,
    pub confirmed: bool,
    pub runner_up: Option<usize>,
}

fn best_where(scored: &[Scored], f: impl Fn(&Scored) -> bool) -> Option<usize> {
    scored
        .iter()
        .enumerate()
        .filter(|(_, s)| f(s))
        .max_by(|a, b| a.1.probability.total_cmp(&b.1.probability))
        .map(|(i, _)| i)
}

/// Decides what to report from scored signatures.
pub fn decide(scored: &[Scored]) -> Verdict {
    let mut v = Verdict::default();
    let lang = best_where(scored, |s| s.kind == SigKind::Language);
    let infra = best_where(scored, |s| s.kind == SigKind::Infrastructure);
    let p = |i: Option<usize>| i.map(|i| scored[i].probability).unwrap_or(0.0);
    v.agents = scored
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == SigKind::Agent && s.probability >= REPORT_AT)
        .map(|(i, _)| i)
        .collect();
    // an app language with a running runtime process wins over infrastructure in the same
    // container (php-fpm behind nginx is a PHP app); otherwise infrastructure wins
    let lang_ok = p(lang) >= REPORT_AT;
    let lang_runs = lang.is_some_and(|i| scored[i].probes.contains(&Probe::Process));
    if p(infra) >= REPORT_AT && !(lang_ok && (lang_runs || p(lang) > p(infra))) {
        let i = infra.unwrap_or_default();
        v.infrastructure = Some(i);
        v.confidence = scored[i].probability;
        v.confirmed = scored[i].probes.len() >= 2;
        v.runner_up = second_in_slot(scored, i);
        return v;
    }
    let Some(li) = lang.filter(|&i| scored[i].probability >= REPORT_AT) else {
        // nothing reportable: confidence is how sure we are of the best language guess
        v.confidence = p(lang);
        v.runner_up = lang.filter(|&i| scored[i].probability >= 0.1);
        return v;
    };
    v.language = Some(li);
    let lname = scored[li].id.clone();
    let in_lang = |s: &Scored, k: SigKind| s.kind == k && s.language.as_deref() == Some(lname.as_str());
    let fw = best_where(scored, |s| in_lang(s, SigKind::Framework));
    let sv = best_where(scored, |s| in_lang(s, SigKind::Server));
    v.server = sv.filter(|&i| scored[i].probability >= REPORT_AT);
    match fw.filter(|&i| scored[i].probability >= REPORT_AT) {
        Some(fi) => {
            v.framework = Some(fi);
            v.confidence = scored[fi].probability;
            v.confirmed = scored[fi].probes.len() >= 2;
            v.runner_up = second_in_slot(scored, fi);
        }
        None => {
            v.confidence = scored[li].probability;
            v.confirmed = scored[li].probes.len() >= 2;
            v.runner_up = fw.filter(|&i| scored[i].probability >= 0.1);
        }
    }
    v
}

fn second_in_slot(scored: &[Scored], winner: usize) -> Option<usize> {
    let slot = &scored[winner].slot;
    best_where(scored, |s| &s.slot == slot && s.id != scored[winner].id)
        .filter(|&i| scored[i].probability >= 0.05)
}

#[cfg(test)]
mod tests {
    use super::super::obs::*;
    use super::*;

    fn set() -> SignatureSet {
        SignatureSet::builtin().expect("signatures")
    }

    fn prob(s: &[Scored], id: &str) -> f64 {
        s.iter()
            .find(|x| x.id == id)
            .map(|x| x.probability)
            .unwrap_or(-1.0)
    }

    fn ports(ps: &[u16]) -> Option<Vec<PortObs>> {
        Some(
            ps.iter()
                .map(|&p| PortObs {
                    port: p,
                    source: "listening".into(),
                })
                .collect(),
        )
    }

    fn dep(eco: &str, name: &str, ver: &str) -> Dep {
        Dep {
            ecosystem: eco.into(),
            name: name.into(),
            version: Some(ver.into()),
            rank: rank::PIN,
            direct: true,
            source: "/app/requirements.txt".into(),
            probe: Probe::Files,
        }
    }

    fn http(port: u16, headers: &[(&str, &str)], body: &str) -> HttpObs {
        HttpObs {
            port,
            request: "GET /".into(),
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    #[test]
    fn ports_alone_never_decide() {
        let set = set();
        for p in [
            80u16, 3000, 5000, 8000, 8080, 5432, 6379, 9000, 4000, 27017, 3306, 5672,
        ] {
            let obs = Observations {
                ports: ports(&[p]),
                ..Default::default()
            };
            let scored = score(&set, &obs);
            for s in &scored {
                assert!(
                    s.probability < 0.5,
                    "port {p} alone gives {} {:.2}",
                    s.id,
                    s.probability
                );
            }
            let v = decide(&scored);
            assert!(v.framework.is_none() && v.language.is_none() && v.infrastructure.is_none());
        }
        // every port indicator of every signature at once
        let all: Vec<u16> = (1..=u16::MAX).collect();
        let obs = Observations {
            ports: ports(&all),
            ..Default::default()
        };
        for s in score(&set, &obs) {
            assert!(
                s.probability < 0.5,
                "all ports give {} {:.2}",
                s.id,
                s.probability
            );
        }
    }

    #[test]
    fn two_probes_agreeing_confirm() {
        let set = set();
        let one = Observations {
            deps: vec![dep("pypi", "flask", "3.0.3")],
            deps_read: ["pypi".to_string()].into(),
            ..Default::default()
        };
        let s1 = score(&set, &one);
        let v1 = decide(&s1);
        assert_eq!(v1.framework.map(|i| s1[i].id.as_str()), Some("flask"));
        assert!(!v1.confirmed, "one probe must not confirm");
        let two = Observations {
            http: Some(vec![http(
                5000,
                &[("Server", "Werkzeug/3.0.3 Python/3.11.2")],
                "hi",
            )]),
            ..one
        };
        let s2 = score(&set, &two);
        let v2 = decide(&s2);
        assert_eq!(v2.framework.map(|i| s2[i].id.as_str()), Some("flask"));
        assert!(v2.confirmed);
        assert!(v2.confidence > v1.confidence);
        assert_eq!(s2[v2.framework.unwrap()].version.as_deref(), Some("3.0.3"));
        assert_eq!(v2.language.map(|i| s2[i].id.as_str()), Some("python"));
    }

    #[test]
    fn negative_evidence_lowers() {
        let set = set();
        let base = Observations {
            http: Some(vec![http(3000, &[("X-Powered-By", "Express")], "")]),
            ..Default::default()
        };
        let p_before = prob(&score(&set, &base), "express");
        let neg = Observations {
            deps: vec![dep("npm", "koa", "2.15.3")],
            deps_read: ["npm".to_string()].into(),
            ..base.clone()
        };
        let p_after = prob(&score(&set, &neg), "express");
        assert!(p_after < p_before, "{p_after} !< {p_before}");
        // a manifest that was read and lacks express also lowers it
        let absent = Observations {
            deps: vec![dep("npm", "lodash", "4.0.0")],
            deps_read: ["npm".to_string()].into(),
            ..base
        };
        assert!(prob(&score(&set, &absent), "express") < p_before);
    }

    #[test]
    fn competing_frameworks_share_probability() {
        let set = set();
        let obs = Observations {
            deps: vec![dep("pypi", "flask", "3.0.3"), dep("pypi", "django", "5.0.6")],
            deps_read: ["pypi".to_string()].into(),
            ..Default::default()
        };
        let s = score(&set, &obs);
        let (f, d) = (prob(&s, "flask"), prob(&s, "django"));
        assert!(f + d <= 1.0 + 1e-9);
        assert!(f < 0.9 && d < 0.9, "flask {f} django {d}");
        // a manage.py breaks the tie towards Django
        let mut obs2 = obs.clone();
        obs2.files = Some(FileObs {
            dirs: vec!["/app".into()],
            files: [("/app/manage.py".to_string(), None)].into(),
        });
        let s2 = score(&set, &obs2);
        assert!(prob(&s2, "django") > prob(&s2, "flask"));
        assert!(prob(&s2, "django") > d);
    }

    #[test]
    fn infrastructure_is_not_an_app_framework() {
        let set = set();
        let obs = Observations {
            processes: Some(vec![ProcObs {
                pid: 1,
                cmdline: "nginx: master process nginx -g daemon off;".into(),
                exe: "/usr/sbin/nginx".into(),
            }]),
            http: Some(vec![http(80, &[("Server", "nginx/1.22.1")], "<html>")]),
            ..Default::default()
        };
        let s = score(&set, &obs);
        let v = decide(&s);
        assert_eq!(v.infrastructure.map(|i| s[i].id.as_str()), Some("nginx"));
        assert!(v.framework.is_none() && v.language.is_none());
        assert!(v.confirmed);
        assert_eq!(s[v.infrastructure.unwrap()].version.as_deref(), Some("1.22.1"));
    }

    #[test]
    fn lockfile_version_beats_range_and_header() {
        let set = set();
        let mut lock = dep("npm", "express", "4.19.2");
        lock.rank = rank::LOCK;
        let mut range = dep("npm", "express", "^4.18.0");
        range.rank = rank::RANGE;
        let obs = Observations {
            deps: vec![range, lock],
            deps_read: ["npm".to_string()].into(),
            http: Some(vec![http(3000, &[("X-Powered-By", "Express")], "")]),
            ..Default::default()
        };
        let s = score(&set, &obs);
        let e = s.iter().find(|x| x.id == "express").unwrap();
        assert_eq!(e.version.as_deref(), Some("4.19.2"));
    }

    #[test]
    fn a_worker_that_listens_nowhere_is_not_a_web_framework() {
        let set = set();
        let obs = Observations {
            deps: vec![dep("pypi", "flask", "3.0.3")],
            deps_read: ["pypi".to_string()].into(),
            ports: Some(vec![]),
            listen_read: true,
            processes: Some(vec![ProcObs {
                pid: 1,
                cmdline: "python3 -m celery worker".into(),
                exe: "/usr/bin/python3.11".into(),
            }]),
            ..Default::default()
        };
        let s = score(&set, &obs);
        let v = decide(&s);
        assert!(v.framework.is_none(), "{:?}", v.framework.map(|i| &s[i].id));
        assert_eq!(v.language.map(|i| s[i].id.as_str()), Some("python"));
    }

    fn winner(obs: &Observations) -> Option<String> {
        let s = score(&set(), obs);
        decide(&s).framework.map(|i| s[i].id.clone())
    }

    fn deps(eco: &str, names: &[&str]) -> Observations {
        Observations {
            deps: names.iter().map(|n| dep(eco, n, "1.0.0")).collect(),
            deps_read: [eco.to_string()].into(),
            ..Default::default()
        }
    }

    #[test]
    fn near_misses_go_to_the_framework_built_on_top() {
        // FastAPI pulls in Starlette, NestJS pulls in Express, Laravel pulls in Symfony components
        assert_eq!(
            winner(&deps("pypi", &["fastapi", "starlette", "uvicorn"])).as_deref(),
            Some("fastapi")
        );
        assert_eq!(
            winner(&deps("pypi", &["starlette", "uvicorn"])).as_deref(),
            Some("starlette")
        );
        assert_eq!(
            winner(&deps(
                "npm",
                &["@nestjs/core", "@nestjs/platform-express", "express"]
            ))
            .as_deref(),
            Some("nestjs")
        );
        assert_eq!(
            winner(&deps(
                "composer",
                &["laravel/framework", "symfony/http-kernel", "symfony/console"]
            ))
            .as_deref(),
            Some("laravel")
        );
        // Rails apps often mount Sinatra-based UIs (sidekiq/web)
        assert_eq!(
            winner(&deps("gem", &["rails", "sinatra", "puma"])).as_deref(),
            Some("rails")
        );
        // a Go binary with Gin in its build info is Gin, not plain net/http
        let mut go = deps("go", &["github.com/gin-gonic/gin"]);
        go.binaries = vec![ElfObs {
            path: "/server".into(),
            tags: vec!["go1.22.3".into(), "go-http-server".into(), "static".into()],
            go_version: Some("1.22.3".into()),
            ..Default::default()
        }];
        assert_eq!(winner(&go).as_deref(), Some("gin"));
        go.deps.clear();
        assert_eq!(winner(&go).as_deref(), Some("net/http"));
    }

    #[test]
    fn headers_alone_identify_common_servers_behind_no_files() {
        // distroless-like: no manifests, only what the HTTP probe saw
        let obs = |h: &[(&str, &str)], body: &str| Observations {
            http: Some(vec![http(8080, h, body)]),
            ..Default::default()
        };
        assert_eq!(
            winner(&obs(&[("X-Powered-By", "Express")], "")).as_deref(),
            Some("express")
        );
        assert_eq!(
            winner(&obs(&[("X-Powered-By", "Next.js 14.1.0")], "")).as_deref(),
            Some("nextjs")
        );
        assert_eq!(
            winner(&obs(&[("Server", "Kestrel")], "")).as_deref(),
            Some("aspnetcore")
        );
        // a bare "Not Found" body is not enough for anything
        assert_eq!(winner(&obs(&[], "Not Found")), None);
    }

    #[test]
    fn every_signature_has_non_port_evidence() {
        for s in &set().sigs {
            assert!(
                s.indicators
                    .iter()
                    .any(|i| !matches!(i.matcher, Matcher::Port(_)) && i.weight > 0.0),
                "{} has only port evidence",
                s.id
            );
        }
    }

    #[test]
    fn nothing_observed_is_unknown() {
        let s = score(&set(), &Observations::default());
        let v = decide(&s);
        assert!(v.framework.is_none() && v.language.is_none() && v.infrastructure.is_none());
        assert!(v.confidence < 0.5);
    }

    #[test]
    fn a_group_wildcard_never_matches_a_jar_known_only_by_artifact() {
        assert!(!dep_matches(
            "maven",
            "io.opentelemetry.javaagent:*",
            "maven",
            ":spring-boot"
        ));
        assert!(dep_matches(
            "maven",
            "io.opentelemetry.javaagent:*",
            "maven",
            "io.opentelemetry.javaagent:opentelemetry-javaagent"
        ));
        assert!(dep_matches(
            "maven",
            "org.springframework.boot:spring-boot",
            "maven",
            ":spring-boot"
        ));
    }
}
