//! The gateway's `GET /metrics`: the workers' published counters (the same slots `/report`
//! reads) as Prometheus families labelled by `worker`, the policy in force, and the control
//! plane's request metrics when it hands them over.

use super::report::WorkerReport;
use crate::metrics::{ControlMetrics, Exposition};
use crate::packet::DropReason;
use crate::policy::PolicySnapshot;

/// One per-worker counter family: its name, help and the number of a worker.
type Get = fn(&WorkerReport) -> u64;
type Field = (&'static str, &'static str, Get);

const COUNTERS: &[Field] = &[
    (
        "weir_frames_received_total",
        "Frames received from the rings.",
        |w| w.io.rx_frames,
    ),
    (
        "weir_frames_sent_total",
        "Frames sent (forwarded and injected).",
        |w| w.io.tx_frames,
    ),
    (
        "weir_frames_handled_total",
        "Frames the engine handled.",
        |w| w.tally.counters.frames,
    ),
    (
        "weir_bytes_handled_total",
        "Bytes of the frames the engine handled.",
        |w| w.tally.counters.bytes,
    ),
    ("weir_frames_forwarded_total", "Frames forwarded.", |w| {
        w.tally.counters.forwarded
    }),
    (
        "weir_frames_injected_total",
        "Frames the engine built and sent (302s, SYN-ACKs, RSTs).",
        |w| w.tally.counters.injected_frames,
    ),
    (
        "weir_frames_answered_total",
        "Frames the engine answered itself instead of forwarding.",
        |w| w.tally.counters.answered,
    ),
    (
        "weir_ring_drops_total",
        "Frames the receive ring had no room for.",
        |w| w.io.ring_drops,
    ),
    (
        "weir_tx_ring_full_total",
        "Forwarded frames not sent because the transmit ring was full.",
        |w| w.io.tx_ring_full,
    ),
    (
        "weir_oversize_frames_total",
        "Frames larger than a ring slot.",
        |w| w.io.oversize,
    ),
    (
        "weir_checksums_finished_total",
        "TCP and UDP checksums a sender left to offload, finished before forwarding.",
        |w| w.io.csum_finished,
    ),
    (
        "weir_aggregates_total",
        "Frames received as aggregates of several segments (GSO/GRO), handled once each.",
        |w| w.io.aggregates,
    ),
    (
        "weir_tx_errors_total",
        "Failed transmit flushes and refused copied frames.",
        |w| w.io.tx_errors,
    ),
    (
        "weir_handoff_sent_total",
        "Packets handed to the worker owning their subscriber.",
        |w| w.io.handoff_sent,
    ),
    (
        "weir_handoff_received_total",
        "Packets received from other workers.",
        |w| w.io.handoff_received,
    ),
    (
        "weir_handoff_full_total",
        "Packets dropped because the owner's queue was full.",
        |w| w.io.handoff_full,
    ),
    ("weir_flows_created_total", "Flows classified.", |w| {
        w.tally.flows.created
    }),
    ("weir_flows_expired_total", "Flows that went idle.", |w| {
        w.tally.flows.expired
    }),
    (
        "weir_flows_evicted_total",
        "Flows evicted from a full table.",
        |w| w.tally.flows.evicted,
    ),
    (
        "weir_redirect_syn_answered_total",
        "SYNs of redirected subscribers answered by the gateway.",
        |w| w.tally.redirect.syn_answered,
    ),
    (
        "weir_redirect_answered_total",
        "HTTP requests answered with a redirect (302).",
        |w| w.tally.redirect.redirects_sent,
    ),
    (
        "weir_redirect_resets_sent_total",
        "RSTs sent to redirected subscribers.",
        |w| w.tally.redirect.resets_sent,
    ),
    (
        "weir_redirect_successes_total",
        "Recharge successes verified by the watch.",
        |w| w.tally.redirect.successes,
    ),
    ("weir_redirect_lifts_total", "Redirects lifted.", |w| {
        w.tally.redirect.lifts
    }),
];

/// Success-token rejections by reason.
const TOKEN_REJECTIONS: &[(&str, Get)] = &[
    ("malformed", |w| w.tally.redirect.tokens_malformed),
    ("forged", |w| w.tally.redirect.tokens_forged),
    ("expired", |w| w.tally.redirect.tokens_expired),
    ("other_subscriber", |w| {
        w.tally.redirect.tokens_other_subscriber
    }),
    ("replayed", |w| w.tally.redirect.tokens_replayed),
    ("duplicate", |w| w.tally.redirect.tokens_duplicate),
];

/// The exposition of the workers' counters, the policy `snapshot` and `control`'s metrics.
/// Workers are rendered in the order given (the board's, by index).
pub fn render(
    workers: &[WorkerReport],
    snapshot: &PolicySnapshot,
    control: Option<&ControlMetrics>,
) -> String {
    let mut e = Exposition::new();
    let labels: Vec<String> = workers.iter().map(|w| w.worker.to_string()).collect();
    for (name, help, get) in COUNTERS {
        e.family(name, "counter", help);
        for (w, label) in workers.iter().zip(&labels) {
            e.sample(name, &[("worker", label)], get(w));
        }
    }
    let name = "weir_frames_dropped_total";
    e.family(name, "counter", "Frames dropped by the engine, by reason.");
    for (w, label) in workers.iter().zip(&labels) {
        // Every reason, zeros too, so a rate over a reason that starts late still works.
        for r in DropReason::all() {
            let n = w.tally.counters.dropped[r.index()];
            e.sample(name, &[("worker", label), ("reason", r.as_str())], n);
        }
    }
    let name = "weir_redirect_token_rejections_total";
    e.family(
        name,
        "counter",
        "Recharge-success tokens rejected, by reason.",
    );
    for (w, label) in workers.iter().zip(&labels) {
        for (reason, get) in TOKEN_REJECTIONS {
            e.sample(name, &[("worker", label), ("reason", reason)], get(w));
        }
    }
    let name = "weir_events_dropped_total";
    e.family(name, "counter", "Data-path events not delivered, by kind.");
    for (w, label) in workers.iter().zip(&labels) {
        let n = w.tally.redirect.events_dropped;
        e.sample(name, &[("worker", label), ("kind", "redirect")], n);
    }
    let name = "weir_flows";
    e.family(name, "gauge", "Flows in the worker's flow table.");
    for (w, label) in workers.iter().zip(&labels) {
        e.sample(name, &[("worker", label)], w.tally.flows.active);
    }
    e.single(
        "weir_sessions",
        "gauge",
        "Sessions in the policy in force.",
        snapshot.session_count() as u64,
    );
    let redirected = snapshot
        .sessions()
        .filter(|s| !s.redirect_rules.is_empty())
        .count();
    e.single(
        "weir_sessions_redirected",
        "gauge",
        "Sessions of the policy in force with a redirect rule installed.",
        redirected as u64,
    );
    e.single(
        "weir_snapshot_generation",
        "gauge",
        "Version of the policy snapshot in force.",
        snapshot.version,
    );
    if let Some(c) = control {
        c.render(&mut e, "weir_control");
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::report::tests::policy;
    use crate::dataplane::report::IoCounters;

    fn worker(index: usize) -> WorkerReport {
        let mut w = WorkerReport {
            worker: index,
            core: index + 2,
            io: IoCounters {
                rx_frames: 100 + index as u64,
                tx_frames: 90,
                ring_drops: 3,
                ..IoCounters::default()
            },
            ..WorkerReport::default()
        };
        let c = &mut w.tally.counters;
        c.frames = 100 + index as u64;
        c.bytes = 6400;
        c.forwarded = 80;
        c.dropped[DropReason::GateClosed.index()] = 7;
        c.dropped[DropReason::WalledGarden.index()] = 13 + index as u64;
        w.tally.flows.active = 5;
        w.tally.redirect.redirects_sent = 4;
        w.tally.redirect.tokens_forged = 2;
        w
    }

    #[test]
    fn a_known_tally_renders_exact_lines() {
        let policy = policy();
        let control = ControlMetrics::new();
        control.observe("ReAuth", "OK", 0.002);
        let text = render(&[worker(0), worker(1)], &policy.load(), Some(&control));
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# TYPE weir_frames_received_total counter",
            "weir_frames_received_total{worker=\"0\"} 100",
            "weir_frames_received_total{worker=\"1\"} 101",
            "weir_frames_sent_total{worker=\"1\"} 90",
            "weir_bytes_handled_total{worker=\"0\"} 6400",
            "weir_ring_drops_total{worker=\"0\"} 3",
            "weir_frames_dropped_total{worker=\"0\",reason=\"gate_closed\"} 7",
            "weir_frames_dropped_total{worker=\"1\",reason=\"walled_garden\"} 14",
            "weir_frames_dropped_total{worker=\"1\",reason=\"default_rule\"} 0",
            "weir_redirect_answered_total{worker=\"0\"} 4",
            "weir_redirect_token_rejections_total{worker=\"1\",reason=\"forged\"} 2",
            "weir_redirect_token_rejections_total{worker=\"1\",reason=\"replayed\"} 0",
            "weir_events_dropped_total{worker=\"0\",kind=\"redirect\"} 0",
            "# TYPE weir_flows gauge",
            "weir_flows{worker=\"1\"} 5",
            "weir_sessions 2",
            "weir_sessions_redirected 0",
            "weir_snapshot_generation 1",
            "weir_control_request_seconds_bucket{rpc=\"ReAuth\",le=\"0.0025\"} 1",
            "weir_control_requests_total{rpc=\"ReAuth\",result=\"OK\"} 1",
        ] {
            assert!(lines.contains(&want), "{want} missing in\n{text}");
        }
        // Every family is declared once, before its samples.
        let types = lines.iter().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = lines.iter().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        let mut seen = std::collections::BTreeSet::new();
        for l in lines.iter().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.split(' ').nth(2).unwrap()), "{l} twice");
        }
        for l in lines.iter().filter(|l| !l.starts_with('#')) {
            let family = l.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| family.strip_suffix(s))
                .filter(|b| seen.contains(b))
                .unwrap_or(family);
            assert!(seen.contains(base), "{l}: no # TYPE for {base}");
        }
    }
}
