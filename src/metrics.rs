//! Prometheus metrics: a writer of the text exposition format (version 0.0.4) and the control
//! plane's request metrics ([`ControlMetrics`]), rendered by the gateway's `GET /metrics` and
//! the policy engine's.
//!
//! Written by hand rather than with a metrics registry crate: the data path's numbers already
//! live in typed per-worker structs that workers publish to the report board, so a registry
//! would only hold a second copy refreshed on every scrape. Rendering straight from the
//! published structs keeps one source of truth — `/metrics` and `/report` read the very same
//! slots, so their totals agree exactly — and the format is a few lines of text.
//!
//! What it must never do: be touched per packet. Workers publish plain numbers; the exposition
//! is built on the scraping thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds one exposition: each family's `# HELP` and `# TYPE` once, then its samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family; `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Number>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", value.into());
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Into<Number>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A sample's value: counters stay exact integers, seconds are floats.
#[derive(Clone, Copy, Debug)]
pub enum Number {
    Int(u64),
    Float(f64),
}

impl From<u64> for Number {
    fn from(n: u64) -> Number {
        Number::Int(n)
    }
}

impl From<f64> for Number {
    fn from(n: f64) -> Number {
        Number::Float(n)
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Number::Int(n) => write!(f, "{n}"),
            Number::Float(x) if x.is_nan() => f.write_str("NaN"),
            Number::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Number::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Label values escape backslash, double quote and newline (the format's rule).
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Upper bounds (seconds) of the request latency buckets: from half a millisecond (a local
/// answer) to ten seconds (past any request timeout).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A cumulative histogram over [`LATENCY_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq)]
struct Histogram {
    /// Observations at or below each bound (not yet cumulative).
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() && seconds > 0.0 {
            seconds
        } else {
            0.0
        };
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, e: &mut Exposition, name: &str, label: (&str, &str)) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let le = Number::Float(*bound).to_string();
            e.sample(&bucket, &[label, ("le", &le)], cumulative);
        }
        e.sample(&bucket, &[label, ("le", "+Inf")], self.count);
        e.sample(&format!("{name}_sum"), &[label], self.sum);
        e.sample(&format!("{name}_count"), &[label], self.count);
    }
}

#[derive(Debug, Default)]
struct ControlInner {
    latency: BTreeMap<String, Histogram>,
    results: BTreeMap<(String, String), u64>,
    snapshot_build_seconds: Option<f64>,
    snapshots_built: u64,
}

/// Latencies and results of control-plane requests (served or sent), by RPC, and the time the
/// last policy snapshot took to build. Cheap to clone (one shared state); the control plane
/// records, `/metrics` renders. Requests are few next to packets, so one lock is enough.
#[derive(Clone, Debug, Default)]
pub struct ControlMetrics {
    inner: Arc<Mutex<ControlInner>>,
}

impl ControlMetrics {
    pub fn new() -> ControlMetrics {
        ControlMetrics::default()
    }

    fn lock(&self) -> MutexGuard<'_, ControlInner> {
        // A panic while recording leaves numbers, not broken invariants.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one request: its RPC (`CreateSession`, `ReAuth`, …), its result (a gRPC code
    /// name such as `OK` or `UNAVAILABLE`, or a Diameter result such as
    /// `DIAMETER_SUCCESS`) and how long it took.
    pub fn observe(&self, rpc: &str, result: &str, seconds: f64) {
        let mut m = self.lock();
        match m.latency.get_mut(rpc) {
            Some(h) => h.observe(seconds),
            None => {
                let mut h = Histogram::default();
                h.observe(seconds);
                m.latency.insert(rpc.to_string(), h);
            }
        }
        *m.results
            .entry((rpc.to_string(), result.to_string()))
            .or_insert(0) += 1;
    }

    /// Records that a policy snapshot was built, and how long that took.
    pub fn observe_snapshot_build(&self, seconds: f64) {
        let mut m = self.lock();
        m.snapshot_build_seconds = Some(seconds);
        m.snapshots_built += 1;
    }

    /// Appends the families; `prefix` names whose requests these are (`weir_control` for the
    /// gateway, `weir_policy_engine` for the policy engine).
    pub fn render(&self, e: &mut Exposition, prefix: &str) {
        let m = self.lock();
        let name = format!("{prefix}_request_seconds");
        e.family(
            &name,
            "histogram",
            "Control-plane request latency in seconds, by RPC.",
        );
        for (rpc, h) in &m.latency {
            h.render(e, &name, ("rpc", rpc));
        }
        let name = format!("{prefix}_requests_total");
        e.family(
            &name,
            "counter",
            "Control-plane requests by RPC and result.",
        );
        for ((rpc, result), n) in &m.results {
            e.sample(&name, &[("rpc", rpc), ("result", result)], *n);
        }
        if let Some(s) = m.snapshot_build_seconds {
            e.single(
                "weir_snapshot_build_seconds",
                "gauge",
                "Time the last policy snapshot took to build, in seconds.",
                s,
            );
            e.single(
                "weir_snapshots_built_total",
                "counter",
                "Policy snapshots built by the control plane.",
                m.snapshots_built,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_numbers_exact() {
        let mut e = Exposition::new();
        e.family("weir_x_total", "counter", "X.");
        e.sample(
            "weir_x_total",
            &[("a", "q\"b\\c\nd")],
            18_446_744_073_709_551_615u64,
        );
        e.sample("weir_x_total", &[], 0.25);
        assert_eq!(
            e.finish(),
            "# HELP weir_x_total X.\n# TYPE weir_x_total counter\n\
             weir_x_total{a=\"q\\\"b\\\\c\\nd\"} 18446744073709551615\n\
             weir_x_total 0.25\n"
        );
    }

    #[test]
    fn request_latencies_render_as_cumulative_histograms() {
        let m = ControlMetrics::new();
        let shared = m.clone();
        m.observe("CreateSession", "OK", 0.0007);
        shared.observe("CreateSession", "OK", 0.003);
        m.observe("CreateSession", "UNAVAILABLE", 30.0);
        m.observe("ReAuth", "OK", 0.0001);
        let mut e = Exposition::new();
        m.render(&mut e, "weir_control");
        let text = e.finish();
        let lines: Vec<&str> = text.lines().collect();
        let want = [
            "# HELP weir_control_request_seconds Control-plane request latency in seconds, by RPC.",
            "# TYPE weir_control_request_seconds histogram",
            "weir_control_request_seconds_bucket{rpc=\"CreateSession\",le=\"0.0005\"} 0",
            "weir_control_request_seconds_bucket{rpc=\"CreateSession\",le=\"0.001\"} 1",
            "weir_control_request_seconds_bucket{rpc=\"CreateSession\",le=\"0.0025\"} 1",
            "weir_control_request_seconds_bucket{rpc=\"CreateSession\",le=\"0.005\"} 2",
        ];
        assert_eq!(lines[..6], want);
        let find = |prefix: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix} missing in\n{text}"))
                .to_string()
        };
        assert_eq!(
            find("weir_control_request_seconds_bucket{rpc=\"CreateSession\",le=\"10\"}"),
            "weir_control_request_seconds_bucket{rpc=\"CreateSession\",le=\"10\"} 2"
        );
        assert_eq!(
            find("weir_control_request_seconds_bucket{rpc=\"CreateSession\",le=\"+Inf\"}"),
            "weir_control_request_seconds_bucket{rpc=\"CreateSession\",le=\"+Inf\"} 3"
        );
        assert_eq!(
            find("weir_control_request_seconds_count{rpc=\"CreateSession\"}"),
            "weir_control_request_seconds_count{rpc=\"CreateSession\"} 3"
        );
        assert_eq!(
            find("weir_control_request_seconds_bucket{rpc=\"ReAuth\",le=\"0.0005\"}"),
            "weir_control_request_seconds_bucket{rpc=\"ReAuth\",le=\"0.0005\"} 1"
        );
        assert_eq!(
            find("weir_control_requests_total{rpc=\"CreateSession\",result=\"UNAVAILABLE\"}"),
            "weir_control_requests_total{rpc=\"CreateSession\",result=\"UNAVAILABLE\"} 1"
        );
        assert_eq!(
            find("weir_control_requests_total{rpc=\"CreateSession\",result=\"OK\"}"),
            "weir_control_requests_total{rpc=\"CreateSession\",result=\"OK\"} 2"
        );
        assert!(!text.contains("weir_snapshot_build_seconds"));
        m.observe_snapshot_build(0.125);
        let mut e = Exposition::new();
        m.render(&mut e, "weir_control");
        assert!(e.finish().contains("\nweir_snapshot_build_seconds 0.125\n"));
    }
}
