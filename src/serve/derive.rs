//! What `serve` derives at ingest so queries stay cheap: latency histograms in one canonical
//! form (so any two merge exactly), cumulative-to-delta conversion per metric stream, route
//! normalisation and the cardinality caps. Pure functions and small bounded state; no I/O.
//!
//! The canonical histogram is a sparse base-2 exponential histogram at a fixed scale
//! ([`SCALE`], bucket ratio 2^(1/8) ≈ 1.09, so a percentile is within ~4.5 % of the true value
//! of its bucket) over milliseconds. Incoming explicit-bucket histograms are spread over the
//! canonical buckets their range covers (log-uniformly, the same assumption as interpolation);
//! incoming exponential histograms at a scale >= ours map exactly, finer ones are downscaled,
//! coarser ones spread. Counts are f32 so span-derived data can carry 1/sampling-ratio weights.
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// log2 resolution of the canonical histogram: 2^SCALE buckets per doubling.
pub const SCALE: i32 = 3;
/// Values at or below this many milliseconds count in the zero bucket.
pub const ZERO_MS: f64 = 0.001;
/// Length of a RED bucket.
pub const BUCKET_MS: i64 = 10_000;
/// Routes kept per service before new ones fall into [`OTHER_ROUTE`].
pub const MAX_ROUTES_PER_SERVICE: usize = 200;
/// Services kept per project before new ones fall into [`OTHER_ROUTE`].
pub const MAX_SERVICES_PER_PROJECT: usize = 500;
pub const OTHER_ROUTE: &str = "__other__";
/// The route of an agent's metric point that carries neither `http.route` nor a path (an
/// unmatched request, or an agent that never sets it): never `/`, which is a real route.
/// Queries answer such requests from the server spans that carry no route either (source
/// `u`), and show what is left as `(no route)`.
pub const NO_ROUTE: &str = "(no route)";

/// A mergeable latency histogram (milliseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hist {
    pub zero: f32,
    pub buckets: BTreeMap<i32, f32>,
}

fn index_of(ms: f64) -> i32 {
    (ms.log2() * f64::from(1 << SCALE)).floor() as i32
}

fn lower_of(index: i32) -> f64 {
    (f64::from(index) / f64::from(1 << SCALE)).exp2()
}

impl Hist {
    pub fn total(&self) -> f64 {
        f64::from(self.zero) + self.buckets.values().map(|c| f64::from(*c)).sum::<f64>()
    }

    pub fn is_empty(&self) -> bool {
        self.total() <= 0.0
    }

    /// One observation (or `weight` of them) at `ms`.
    pub fn record(&mut self, ms: f64, weight: f32) {
        if ms.is_nan() || ms <= ZERO_MS || !ms.is_finite() {
            self.zero += weight;
            return;
        }
        *self.buckets.entry(index_of(ms)).or_default() += weight;
    }

    /// `count` observations somewhere in [lo, hi] ms, spread log-uniformly.
    pub fn add_range(&mut self, lo: f64, hi: f64, count: f64) {
        if count <= 0.0 || !count.is_finite() {
            return;
        }
        if !hi.is_finite() || hi <= lo * 1.000_001 || lo <= ZERO_MS {
            // a point (or an open-ended bucket, which we put at its finite bound)
            let at = if hi.is_finite() && lo <= ZERO_MS { hi } else { lo };
            if at <= ZERO_MS || !at.is_finite() {
                self.zero += count as f32;
            } else {
                *self.buckets.entry(index_of(at)).or_default() += count as f32;
            }
            return;
        }
        let (a, b) = (index_of(lo), index_of(hi * 0.999_999));
        if b - a > 4096 {
            *self.buckets.entry(index_of(hi)).or_default() += count as f32;
            return;
        }
        let (llo, lhi) = (lo.log2(), hi.log2());
        let width = lhi - llo;
        for i in a..=b {
            let s = (f64::from(i) / f64::from(1 << SCALE)).max(llo);
            let e = (f64::from(i + 1) / f64::from(1 << SCALE)).min(lhi);
            if e > s {
                *self.buckets.entry(i).or_default() += (count * (e - s) / width) as f32;
            }
        }
    }

    pub fn merge(&mut self, other: &Hist) {
        self.zero += other.zero;
        for (i, c) in &other.buckets {
            *self.buckets.entry(*i).or_default() += *c;
        }
    }

    /// The q-quantile (0..1) in ms, interpolated geometrically inside its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut seen = f64::from(self.zero);
        if rank <= seen && self.zero > 0.0 {
            return Some(0.0);
        }
        for (i, c) in &self.buckets {
            let c = f64::from(*c);
            if c <= 0.0 {
                continue;
            }
            if seen + c >= rank {
                let frac = ((rank - seen) / c).clamp(0.0, 1.0);
                let lo = lower_of(*i);
                let hi = lower_of(i + 1);
                return Some(lo * (hi / lo).powf(frac));
            }
            seen += c;
        }
        self.buckets.keys().next_back().map(|i| lower_of(i + 1))
    }

    /// Compact little-endian encoding: zero count, then (index i32, count f32) pairs.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.buckets.len() * 8);
        out.extend_from_slice(&self.zero.to_le_bytes());
        for (i, c) in &self.buckets {
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Hist {
        let mut h = Hist::default();
        if b.len() < 4 {
            return h;
        }
        h.zero = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for c in b[4..].chunks_exact(8) {
            let i = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let n = f32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            h.buckets.insert(i, n);
        }
        h
    }
}

/// An incoming histogram point in its own shape, before conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum RawHist {
    Explicit {
        bounds: Vec<f64>,
        counts: Vec<u64>,
    },
    Exponential {
        scale: i32,
        zero: u64,
        offset: i32,
        counts: Vec<u64>,
    },
}

impl RawHist {
    pub fn count(&self) -> u64 {
        match self {
            RawHist::Explicit { counts, .. } => counts.iter().sum(),
            RawHist::Exponential { zero, counts, .. } => zero + counts.iter().sum::<u64>(),
        }
    }

    /// `self - prev` for a cumulative stream; `None` when they cannot be subtracted (a reset
    /// or a change of bucket layout), in which case the caller takes `self` whole.
    pub fn minus(&self, prev: &RawHist) -> Option<RawHist> {
        match (self, prev) {
            (
                RawHist::Explicit { bounds, counts },
                RawHist::Explicit {
                    bounds: pb,
                    counts: pc,
                },
            ) => {
                if bounds != pb || counts.len() != pc.len() {
                    return None;
                }
                let mut out = Vec::with_capacity(counts.len());
                for (a, b) in counts.iter().zip(pc) {
                    out.push(a.checked_sub(*b)?);
                }
                Some(RawHist::Explicit {
                    bounds: bounds.clone(),
                    counts: out,
                })
            }
            (
                RawHist::Exponential {
                    scale,
                    zero,
                    offset,
                    counts,
                },
                RawHist::Exponential {
                    scale: ps,
                    zero: pz,
                    offset: po,
                    counts: pcs,
                },
            ) => {
                let s = (*scale).min(*ps);
                let cur = exp_map(*scale, *offset, counts, s);
                let old = exp_map(*ps, *po, pcs, s);
                let mut delta = BTreeMap::new();
                for (i, c) in &cur {
                    let d = c.checked_sub(*old.get(i).unwrap_or(&0))?;
                    delta.insert(*i, d);
                }
                // a bucket the previous point had counts in and this one lacks: a reset. An
                // empty bucket that fell off the edge is not (the SDKs trim and re-offset
                // their bucket arrays between exports; taking such a point whole counted its
                // requests again)
                if old.iter().any(|(k, c)| *c > 0 && !cur.contains_key(k)) {
                    return None;
                }
                let z = zero.checked_sub(*pz)?;
                let (offset, counts) = match (delta.keys().next(), delta.keys().next_back()) {
                    (Some(a), Some(b)) => {
                        let mut v = vec![0u64; (b - a + 1) as usize];
                        for (i, c) in &delta {
                            v[(i - a) as usize] = *c;
                        }
                        (*a, v)
                    }
                    _ => (0, vec![]),
                };
                Some(RawHist::Exponential {
                    scale: s,
                    zero: z,
                    offset,
                    counts,
                })
            }
            _ => None,
        }
    }

    /// Into the canonical histogram; `to_ms` converts the point's unit to milliseconds.
    pub fn to_hist(&self, to_ms: f64) -> Hist {
        let mut h = Hist::default();
        match self {
            RawHist::Explicit { bounds, counts } => {
                for (i, c) in counts.iter().enumerate() {
                    if *c == 0 {
                        continue;
                    }
                    let hi = bounds.get(i).copied().unwrap_or(f64::INFINITY) * to_ms;
                    let lo = if i == 0 {
                        // (0, b0]: the upper half of the first bucket, like interpolation would
                        hi / 2.0
                    } else {
                        bounds[i - 1] * to_ms
                    };
                    h.add_range(lo, hi, *c as f64);
                }
            }
            RawHist::Exponential {
                scale,
                zero,
                offset,
                counts,
            } => {
                h.zero += *zero as f32;
                let scale = (*scale).clamp(-10, 20);
                let base = (-f64::from(scale)).exp2();
                for (k, c) in counts.iter().enumerate() {
                    if *c == 0 {
                        continue;
                    }
                    let i = f64::from(*offset) + k as f64;
                    let lo = (i * base).exp2() * to_ms;
                    let hi = ((i + 1.0) * base).exp2() * to_ms;
                    h.add_range(lo, hi, *c as f64);
                }
            }
        }
        h
    }
}

/// Exponential buckets re-indexed at a coarser-or-equal `to` scale.
fn exp_map(scale: i32, offset: i32, counts: &[u64], to: i32) -> BTreeMap<i32, u64> {
    let shift = (scale - to).clamp(0, 31);
    let mut m = BTreeMap::new();
    for (k, c) in counts.iter().enumerate() {
        let i = offset.saturating_add(k as i32) >> shift;
        *m.entry(i).or_default() += *c;
    }
    m
}

/// The last cumulative value of each stream, to turn cumulative points into deltas. Bounded:
/// past `cap` streams the oldest-inserted are forgotten (their next point is then treated as
/// a first sight).
#[derive(Debug)]
pub struct DeltaState<V> {
    cap: usize,
    map: HashMap<u64, (u64, V)>,
    order: VecDeque<u64>,
}

/// What a first cumulative point of a stream contributes: all of it when the stream started
/// recently (a process that just started), nothing when it is old (we restarted, and counting
/// its whole history would invent a spike).
pub const FRESH_STREAM_NS: u64 = 5 * 60 * 1_000_000_000;

impl<V: Clone> DeltaState<V> {
    pub fn new(cap: usize) -> Self {
        DeltaState {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers `value` (started at `start_ns`) and returns the previous value when it is of
    /// the same run of the stream.
    pub fn swap(&mut self, key: u64, start_ns: u64, value: V) -> Option<V> {
        match self.map.insert(key, (start_ns, value)) {
            Some((s, v)) if s == start_ns => Some(v),
            Some(_) => None,
            None => {
                self.order.push_back(key);
                while self.order.len() > self.cap {
                    if let Some(k) = self.order.pop_front() {
                        self.map.remove(&k);
                    }
                }
                None
            }
        }
    }

    pub fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The status class of an HTTP status code ("2xx" …); "none" when there is none.
pub fn status_class(code: i64) -> &'static str {
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

/// A route template from what the agent gave: `http.route` as it is (bounded), else the path
/// with its query dropped and id-like segments collapsed to `{id}`.
pub fn normalize_route(route: Option<&str>, path: Option<&str>) -> String {
    if let Some(r) = route.filter(|r| !r.is_empty()) {
        return truncate(r, 200);
    }
    let Some(p) = path.filter(|p| !p.is_empty()) else {
        return "/".to_string();
    };
    let p = p.split(['?', '#']).next().unwrap_or("");
    let mut out = String::new();
    for (n, seg) in p.split('/').enumerate() {
        if n > 0 {
            out.push('/');
        }
        if n > 12 {
            out.push_str("{rest}");
            break;
        }
        if is_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    truncate(&out, 200)
}

fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let digits = seg.bytes().filter(u8::is_ascii_digit).count();
    if digits == seg.len() {
        return true;
    }
    let hexish = seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if hexish && seg.len() >= 8 && digits > 0 {
        return true; // uuid, hex hash, object id
    }
    // long tokens mixing letters and digits (base64 ids, slugs with numbers)
    seg.len() >= 16 && digits * 4 >= seg.len()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Caps how many distinct services per project and routes per service are tracked; past the
/// cap new names become [`OTHER_ROUTE`]. Bounded by construction.
#[derive(Debug, Default)]
pub struct Cardinality {
    services: HashMap<String, HashSet<String>>,
    routes: HashMap<(String, String), HashSet<String>>,
}

impl Cardinality {
    pub fn seed(&mut self, project: &str, service: &str, route: &str) {
        self.services
            .entry(project.to_string())
            .or_default()
            .insert(service.to_string());
        self.routes
            .entry((project.to_string(), service.to_string()))
            .or_default()
            .insert(route.to_string());
    }

    pub fn service(&mut self, project: &str, service: &str) -> String {
        let set = self.services.entry(project.to_string()).or_default();
        if set.contains(service) {
            return service.to_string();
        }
        if set.len() >= MAX_SERVICES_PER_PROJECT {
            return OTHER_ROUTE.to_string();
        }
        set.insert(service.to_string());
        service.to_string()
    }

    pub fn route(&mut self, project: &str, service: &str, route: &str) -> String {
        if service == OTHER_ROUTE {
            return OTHER_ROUTE.to_string();
        }
        let set = self
            .routes
            .entry((project.to_string(), service.to_string()))
            .or_default();
        if set.contains(route) {
            return route.to_string();
        }
        if set.len() >= MAX_ROUTES_PER_SERVICE {
            return OTHER_ROUTE.to_string();
        }
        set.insert(route.to_string());
        route.to_string()
    }
}

/// The bucket start (ms) holding `ts_ms`.
pub fn bucket_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// The sampling ratio behind a span: OTEP 235's `ot=th:` threshold in the trace state when the
/// SDK wrote one, else the `obs_stack.sampling_ratio` resource attribute, else 1.
pub fn sampling_ratio(trace_state: &str, resource_ratio: Option<f64>) -> f64 {
    for member in trace_state.split(',') {
        if let Some(ot) = member.trim().strip_prefix("ot=") {
            for kv in ot.split(';') {
                if let Some(th) = kv.strip_prefix("th:") {
                    if th.is_empty() || th.len() > 14 {
                        continue;
                    }
                    let padded = format!("{th:0<14}");
                    if let Ok(t) = u64::from_str_radix(&padded, 16) {
                        let r = 1.0 - (t as f64) / ((1u64 << 56) as f64);
                        if r > 0.0 && r <= 1.0 {
                            return r;
                        }
                    }
                }
            }
        }
    }
    match resource_ratio {
        Some(r) if r > 0.0 && r <= 1.0 => r,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_histogram_percentiles_land_in_the_right_bucket() {
        // 100 requests between 50 and 75 ms (seconds on the wire)
        let raw = RawHist::Explicit {
            bounds: vec![0.005, 0.01, 0.025, 0.05, 0.075, 0.1],
            counts: vec![0, 0, 0, 0, 100, 0, 0],
        };
        let h = raw.to_hist(1000.0);
        assert!((h.total() - 100.0).abs() < 0.01);
        let p50 = h.quantile(0.5).unwrap();
        assert!((55.0..70.0).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((70.0..=80.0).contains(&p99), "{p99}");
    }

    #[test]
    fn exponential_histograms_map_and_merge() {
        // scale 3 buckets around 100 ms: 2^(53/8) = 98.7
        let raw = RawHist::Exponential {
            scale: 3,
            zero: 0,
            offset: 53,
            counts: vec![10],
        };
        let h = raw.to_hist(1.0);
        let p = h.quantile(0.5).unwrap();
        assert!((95.0..110.0).contains(&p), "{p}");
        // a finer scale (6) downscales exactly into ours
        let fine = RawHist::Exponential {
            scale: 6,
            zero: 2,
            offset: 53 * 8,
            counts: vec![5; 8],
        };
        let mut m = fine.to_hist(1.0);
        assert_eq!(m.buckets.get(&53).copied(), Some(40.0));
        m.merge(&h);
        assert_eq!(m.total(), 52.0);
        let enc = m.encode();
        assert_eq!(Hist::decode(&enc), m);
    }

    #[test]
    fn cumulative_deltas_and_resets() {
        let a = RawHist::Explicit {
            bounds: vec![1.0],
            counts: vec![3, 1],
        };
        let b = RawHist::Explicit {
            bounds: vec![1.0],
            counts: vec![5, 1],
        };
        assert_eq!(
            b.minus(&a),
            Some(RawHist::Explicit {
                bounds: vec![1.0],
                counts: vec![2, 0]
            })
        );
        assert_eq!(a.minus(&b), None); // went down: a reset
        let e1 = RawHist::Exponential {
            scale: 2,
            zero: 1,
            offset: 4,
            counts: vec![1, 2],
        };
        let e2 = RawHist::Exponential {
            scale: 1,
            zero: 1,
            offset: 2,
            counts: vec![5],
        };
        let d = e2.minus(&e1).unwrap();
        assert_eq!(d.count(), 2);
        // the previous point's empty edge bucket is gone from this one: still a delta
        let p1 = RawHist::Exponential {
            scale: 3,
            zero: 0,
            offset: 10,
            counts: vec![0, 4, 2],
        };
        let p2 = RawHist::Exponential {
            scale: 3,
            zero: 0,
            offset: 11,
            counts: vec![5, 2, 1],
        };
        assert_eq!(p2.minus(&p1).map(|d| d.count()), Some(2));
        // a bucket that had counts and is gone: a reset
        let p3 = RawHist::Exponential {
            scale: 3,
            zero: 0,
            offset: 12,
            counts: vec![9],
        };
        assert_eq!(p3.minus(&p1), None);
        let mut st = DeltaState::new(2);
        assert_eq!(st.swap(1, 10, 5u64), None);
        assert_eq!(st.swap(1, 10, 7u64), Some(5));
        assert_eq!(st.swap(1, 11, 1u64), None); // new start time: a restart
        st.swap(2, 0, 0);
        st.swap(3, 0, 0);
        assert_eq!(st.len(), 2);
    }

    #[test]
    fn routes_collapse_ids_and_cap() {
        assert_eq!(
            normalize_route(Some("/orders/<id>"), Some("/orders/5")),
            "/orders/<id>"
        );
        assert_eq!(normalize_route(None, Some("/orders/123?x=1")), "/orders/{id}");
        assert_eq!(
            normalize_route(None, Some("/u/550e8400-e29b-41d4-a716-446655440000/cart")),
            "/u/{id}/cart"
        );
        assert_eq!(normalize_route(None, Some("/health")), "/health");
        assert_eq!(normalize_route(None, None), "/");
        let mut c = Cardinality::default();
        for i in 0..1000 {
            c.route("p", "s", &format!("/r{i}"));
        }
        assert_eq!(c.route("p", "s", "/r5"), "/r5");
        assert_eq!(c.route("p", "s", "/new"), OTHER_ROUTE);
    }

    #[test]
    fn sampling_ratio_from_trace_state() {
        assert_eq!(sampling_ratio("", None), 1.0);
        assert_eq!(sampling_ratio("", Some(0.1)), 0.1);
        let r = sampling_ratio("ot=th:8", None); // threshold 0x80000000000000: 50%
        assert!((r - 0.5).abs() < 1e-9);
        assert_eq!(status_class(503), "5xx");
        assert_eq!(bucket_of(12_345), 10_000);
    }
}
