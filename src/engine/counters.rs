//! Typed per-worker counters: what the engine did with every frame.

use crate::packet::DropReason;
use crate::wire::WireError;
use serde::Serialize;

/// Counters of one engine (one worker).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames: u64,
    pub bytes: u64,
    pub forwarded: u64,
    pub injected_frames: u64,
    /// Frames consumed by the engine because it answered them itself.
    pub answered: u64,
    pub dropped: [u64; DropReason::COUNT],
    /// ARP, LLDP and other non-IP frames, passed through.
    pub non_ip: u64,
    /// IPv6 neighbour discovery, passed through like ARP.
    pub neighbor_discovery: u64,
    /// Unparseable frames passed through (`malformed = "pass"`), by reason.
    pub malformed_passed: [u64; WireError::ALL.len()],
    /// Forwarded IP traffic with neither end in a UE pool.
    pub non_subscriber_forwarded: u64,
    pub unknown_subscriber_forwarded: u64,
    pub fragments_first: u64,
    pub fragments_resolved: u64,
    /// Later fragments whose first fragment was not seen: classified without ports.
    pub fragments_orphan: u64,
    /// Pool addresses without a session for which a session was asked (`Event::SessionRequest`).
    pub session_requests: u64,
    /// Frames kept while their subscriber's session was on its way (`Verdict::Held`).
    pub held: u64,
    /// Held frames handed back through the pipeline once the session was in force (each then
    /// counted again under the verdict it got, but not again as a frame).
    pub held_released: u64,
    /// Held frames dropped because no session came within `pending.timeout`.
    pub held_expired: u64,
    /// Frames of a pending subscriber forwarded unenforced (`pending.action = "forward"`).
    pub pending_forwarded: u64,
    /// Usage-monitoring thresholds crossed (`Event::UsageThreshold`).
    pub usage_thresholds: u64,
    /// Online charging: credit asked for (`Event::CreditRequest`) and used units reported
    /// (`Event::CreditReport`).
    pub credit_requests: u64,
    pub credit_reports: u64,
    /// Frames kept while their rating group's credit was asked for (released and expired
    /// ones are counted with the held frames of pending sessions).
    pub credit_held: u64,
    /// Frames of a rating group without credit forwarded (`credit.pending = forward`).
    pub credit_pending_forwarded: u64,
}

impl Counters {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn add(&mut self, other: &Counters) {
        self.frames += other.frames;
        self.bytes += other.bytes;
        self.forwarded += other.forwarded;
        self.injected_frames += other.injected_frames;
        self.answered += other.answered;
        for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
            *a += b;
        }
        self.non_ip += other.non_ip;
        self.neighbor_discovery += other.neighbor_discovery;
        for (a, b) in self.malformed_passed.iter_mut().zip(other.malformed_passed) {
            *a += b;
        }
        self.non_subscriber_forwarded += other.non_subscriber_forwarded;
        self.unknown_subscriber_forwarded += other.unknown_subscriber_forwarded;
        self.fragments_first += other.fragments_first;
        self.fragments_resolved += other.fragments_resolved;
        self.fragments_orphan += other.fragments_orphan;
        self.session_requests += other.session_requests;
        self.held += other.held;
        self.held_released += other.held_released;
        self.held_expired += other.held_expired;
        self.pending_forwarded += other.pending_forwarded;
        self.usage_thresholds += other.usage_thresholds;
        self.credit_requests += other.credit_requests;
        self.credit_reports += other.credit_reports;
        self.credit_held += other.credit_held;
        self.credit_pending_forwarded += other.credit_pending_forwarded;
    }
}

/// The counters as a report shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerdictTotals {
    pub frames: u64,
    pub bytes: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub answered: u64,
    pub injected_frames: u64,
    pub drop_reasons: std::collections::BTreeMap<&'static str, u64>,
    pub malformed_passed: u64,
    pub non_ip: u64,
    pub neighbor_discovery: u64,
    pub non_subscriber_forwarded: u64,
    pub unknown_subscriber_forwarded: u64,
    pub fragments_first: u64,
    pub fragments_resolved: u64,
    pub fragments_orphan: u64,
    pub session_requests: u64,
    pub held: u64,
    pub held_released: u64,
    pub held_expired: u64,
    pub pending_forwarded: u64,
    pub usage_thresholds: u64,
}

impl From<&Counters> for VerdictTotals {
    fn from(c: &Counters) -> Self {
        VerdictTotals {
            frames: c.frames,
            bytes: c.bytes,
            forwarded: c.forwarded,
            dropped: c.dropped_total(),
            answered: c.answered,
            injected_frames: c.injected_frames,
            drop_reasons: DropReason::all()
                .map(|r| (r.as_str(), c.dropped[r.index()]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            malformed_passed: c.malformed_passed.iter().sum(),
            non_ip: c.non_ip,
            neighbor_discovery: c.neighbor_discovery,
            non_subscriber_forwarded: c.non_subscriber_forwarded,
            unknown_subscriber_forwarded: c.unknown_subscriber_forwarded,
            fragments_first: c.fragments_first,
            fragments_resolved: c.fragments_resolved,
            fragments_orphan: c.fragments_orphan,
            session_requests: c.session_requests,
            held: c.held,
            held_released: c.held_released,
            held_expired: c.held_expired,
            pending_forwarded: c.pending_forwarded,
            usage_thresholds: c.usage_thresholds,
        }
    }
}

impl VerdictTotals {
    /// Adds another worker's totals (for [`super::Report::merge`]).
    pub fn add(&mut self, o: &VerdictTotals) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.forwarded += o.forwarded;
        self.dropped += o.dropped;
        self.answered += o.answered;
        self.injected_frames += o.injected_frames;
        for (reason, n) in &o.drop_reasons {
            *self.drop_reasons.entry(reason).or_default() += n;
        }
        self.malformed_passed += o.malformed_passed;
        self.non_ip += o.non_ip;
        self.neighbor_discovery += o.neighbor_discovery;
        self.non_subscriber_forwarded += o.non_subscriber_forwarded;
        self.unknown_subscriber_forwarded += o.unknown_subscriber_forwarded;
        self.fragments_first += o.fragments_first;
        self.fragments_resolved += o.fragments_resolved;
        self.fragments_orphan += o.fragments_orphan;
        self.session_requests += o.session_requests;
        self.held += o.held;
        self.held_released += o.held_released;
        self.held_expired += o.held_expired;
        self.pending_forwarded += o.pending_forwarded;
        self.usage_thresholds += o.usage_thresholds;
    }
}

/// What became of the events raised for the control plane on their way out of a worker: sent
/// on the event channel, waiting in the worker for room, merged into one waiting for the same
/// subscriber or key, or dropped (by kind) when not even the worker had room for them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventCounters {
    pub sent: u64,
    /// Sent on a later batch, after waiting in the worker.
    pub retried: u64,
    /// Waiting in the worker at the time of the report.
    pub waiting: u64,
    /// Merged into an event of the same kind and key already waiting.
    pub coalesced: u64,
    pub dropped_recharge_success: u64,
    pub dropped_session_request: u64,
    pub dropped_usage_threshold: u64,
    pub dropped_credit: u64,
}

impl EventCounters {
    pub fn dropped(&mut self, kind: crate::packet::EventKind) {
        use crate::packet::EventKind;
        match kind {
            EventKind::RechargeSuccess => self.dropped_recharge_success += 1,
            EventKind::SessionRequest => self.dropped_session_request += 1,
            EventKind::UsageThreshold => self.dropped_usage_threshold += 1,
            EventKind::Credit => self.dropped_credit += 1,
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_recharge_success
            + self.dropped_session_request
            + self.dropped_usage_threshold
            + self.dropped_credit
    }

    pub fn add(&mut self, o: &EventCounters) {
        self.sent += o.sent;
        self.retried += o.retried;
        self.waiting += o.waiting;
        self.coalesced += o.coalesced;
        self.dropped_recharge_success += o.dropped_recharge_success;
        self.dropped_session_request += o.dropped_session_request;
        self.dropped_usage_threshold += o.dropped_usage_threshold;
        self.dropped_credit += o.dropped_credit;
    }
}
