//! The redirect stage's counters: what it did with each packet it kept from the normal rules,
//! and what the success watch found, by reason.

use serde::Serialize;

/// What the redirect stage did, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub syn_answered: u64,
    pub redirects_sent: u64,
    /// Retransmitted requests answered again with the same 302.
    pub retransmissions: u64,
    /// Requests split over segments, collected before the answer.
    pub requests_collecting: u64,
    /// Split requests answered early because every collecting slot was taken.
    pub pending_full: u64,
    pub fins_acked: u64,
    pub resets_sent: u64,
    /// ACKs that match no SYN-ACK of ours (answered with an RST).
    pub bad_cookies: u64,
    /// Data on an HTTP port that is not HTTP (answered with an RST).
    pub not_http: u64,
    pub quic_unreachable: u64,
    /// New flows let through the walled garden, by what let them.
    pub garden_portal: u64,
    pub garden_dns: u64,
    pub garden_restriction: u64,
    /// Packets blocked, by reason.
    pub blocked_downlink: u64,
    pub blocked_dns: u64,
    pub blocked_quic: u64,
    pub blocked_other: u64,
    pub dns_learned: u64,
    pub successes: u64,
    pub lifts: u64,
    /// Successes left for the policy engine to lift (`success_action = "report"`).
    pub successes_reported: u64,
    pub tokens_malformed: u64,
    pub tokens_forged: u64,
    pub tokens_expired: u64,
    pub tokens_other_subscriber: u64,
    pub tokens_replayed: u64,
    /// An already-used token of a session no longer redirected (e.g. the success page
    /// requested after the portal's redirect to it was seen): harmless, not an attack.
    pub tokens_duplicate: u64,
    pub events_dropped: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += o.$f; )* };
        }
        sum!(
            syn_answered,
            redirects_sent,
            retransmissions,
            requests_collecting,
            pending_full,
            fins_acked,
            resets_sent,
            bad_cookies,
            not_http,
            quic_unreachable,
            garden_portal,
            garden_dns,
            garden_restriction,
            blocked_downlink,
            blocked_dns,
            blocked_quic,
            blocked_other,
            dns_learned,
            successes,
            lifts,
            successes_reported,
            tokens_malformed,
            tokens_forged,
            tokens_expired,
            tokens_other_subscriber,
            tokens_replayed,
            tokens_duplicate,
            events_dropped
        );
    }
}
