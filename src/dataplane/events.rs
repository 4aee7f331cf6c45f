//! The worker's end of the event channel to the control plane: never blocks. What the channel
//! has no room for waits here and is sent again after the next batch — recharge successes in
//! order (a bounded queue: a subscriber who paid must not be forgotten), session requests and
//! usage thresholds merged per subscriber or key (one request per subscriber waits; usage
//! octets are added, so no octet goes unreported). What finds no room even here is counted by
//! kind.

use crate::engine::EventCounters;
use crate::packet::{Event, EventKind};
use crate::policy::SessionId;
use crossbeam_channel::{Sender, TrySendError};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

/// Recharge successes kept while the channel is full, at most.
const MAX_RECHARGES: usize = 256;
/// Session requests and usage thresholds kept while the channel is full, at most.
const MAX_MERGED: usize = 4096;

/// What a waiting event is merged by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum MergeKey {
    Ue(IpAddr),
    Usage(SessionId, Arc<str>),
}

/// One worker's events on their way out.
pub struct Outbox {
    sender: Option<Sender<Event>>,
    recharges: VecDeque<Event>,
    merged: FxHashMap<MergeKey, Event>,
    pub counters: EventCounters,
    /// The receiver is gone: said once.
    disconnected: bool,
}

impl Outbox {
    pub fn new(sender: Option<Sender<Event>>) -> Outbox {
        Outbox {
            sender,
            recharges: VecDeque::with_capacity(MAX_RECHARGES),
            merged: FxHashMap::default(),
            counters: EventCounters::default(),
            disconnected: false,
        }
    }

    /// Sends what waited, then `events`, without waiting; keeps or counts what does not fit.
    /// Without a channel the events are logged.
    pub fn send(&mut self, worker: usize, events: impl Iterator<Item = Event>) {
        // Taken out for the length of the call, so the queues can be borrowed beside it.
        let Some(sender) = self.sender.take() else {
            for event in events {
                log(worker, &event);
            }
            return;
        };
        self.retry(&sender);
        for event in events {
            // A recharge success (or a credit event) waits behind the ones before it, so they
            // arrive in order.
            if matches!(event.kind(), EventKind::RechargeSuccess | EventKind::Credit)
                && !self.recharges.is_empty()
            {
                self.keep(event);
                continue;
            }
            match sender.try_send(event) {
                Ok(()) => self.counters.sent += 1,
                Err(TrySendError::Full(event)) => self.keep(event),
                Err(TrySendError::Disconnected(event)) => self.lost(worker, event),
            }
        }
        self.counters.waiting = (self.recharges.len() + self.merged.len()) as u64;
        self.sender = Some(sender);
    }

    /// Events waiting in the worker.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.recharges.len() + self.merged.len()
    }

    fn retry(&mut self, sender: &Sender<Event>) {
        while let Some(event) = self.recharges.pop_front() {
            match sender.try_send(event) {
                Ok(()) => {
                    self.counters.sent += 1;
                    self.counters.retried += 1;
                }
                Err(TrySendError::Full(event)) | Err(TrySendError::Disconnected(event)) => {
                    self.recharges.push_front(event);
                    return;
                }
            }
        }
        if self.merged.is_empty() {
            return;
        }
        let counters = &mut self.counters;
        let mut full = false;
        self.merged.retain(|_, event| {
            if full {
                return true;
            }
            match sender.try_send(event.clone()) {
                Ok(()) => {
                    counters.sent += 1;
                    counters.retried += 1;
                    false
                }
                Err(_) => {
                    full = true;
                    true
                }
            }
        });
    }

    /// Keeps an event the channel had no room for.
    fn keep(&mut self, event: Event) {
        let key = match &event {
            Event::RechargeSuccess { .. } => {
                if self.recharges.len() < MAX_RECHARGES {
                    self.recharges.push_back(event);
                } else {
                    self.counters.dropped(EventKind::RechargeSuccess);
                }
                return;
            }
            // Credit events carry used units and their order matters (a report before the
            // next request): kept in order like recharges, never merged.
            Event::CreditRequest { .. }
            | Event::CreditReport { .. }
            | Event::CreditTerminated { .. } => {
                if self.recharges.len() < MAX_RECHARGES {
                    self.recharges.push_back(event);
                } else {
                    self.counters.dropped(EventKind::Credit);
                }
                return;
            }
            Event::SessionRequest { ue, .. } => MergeKey::Ue(*ue),
            Event::UsageThreshold {
                session,
                monitoring_key,
                ..
            } => MergeKey::Usage(*session, Arc::clone(monitoring_key)),
        };
        if let Some(waiting) = self.merged.get_mut(&key) {
            merge(waiting, event);
            self.counters.coalesced += 1;
        } else if self.merged.len() < MAX_MERGED {
            self.merged.insert(key, event);
        } else {
            self.counters.dropped(event.kind());
        }
    }

    fn lost(&mut self, worker: usize, event: Event) {
        if !self.disconnected {
            self.disconnected = true;
            tracing::warn!(
                worker,
                "the control plane no longer takes events; counting them as dropped"
            );
        }
        self.counters.dropped(event.kind());
    }
}

/// A later session request of a subscriber already waiting adds nothing (the waiting one has
/// the first packet's time); a later usage report of a key waiting carries the octets of both,
/// under the later grant.
fn merge(waiting: &mut Event, later: Event) {
    if matches!(waiting, Event::SessionRequest { .. }) {
        return;
    }
    if let (Event::UsageThreshold { used: old, .. }, Event::UsageThreshold { used: mut new, .. }) =
        (&*waiting, &later)
    {
        new.uplink += old.uplink;
        new.downlink += old.downlink;
        let mut later = later;
        if let Event::UsageThreshold { used, .. } = &mut later {
            *used = new;
        }
        *waiting = later;
        return;
    }
    *waiting = later;
}

fn log(worker: usize, event: &Event) {
    match event {
        Event::RechargeSuccess {
            session,
            subscriber,
            ue,
            at,
            ..
        } => tracing::info!(
            worker,
            session = session.0,
            %subscriber,
            %ue,
            %at,
            "recharge success"
        ),
        Event::SessionRequest { ue, at } => {
            tracing::info!(worker, %ue, %at, "subscriber without a session")
        }
        Event::UsageThreshold {
            session,
            monitoring_key,
            grant,
            used,
            at,
        } => tracing::info!(
            worker,
            session = session.0,
            %monitoring_key,
            grant,
            uplink = used.uplink,
            downlink = used.downlink,
            %at,
            "usage threshold reached"
        ),
        Event::CreditRequest {
            session,
            rating_group,
            at,
            ..
        } => tracing::info!(worker, session = session.0, rating_group, %at, "credit requested"),
        Event::CreditReport {
            session,
            rating_group,
            grant,
            reason,
            used,
            at,
            ..
        } => tracing::info!(
            worker,
            session = session.0,
            rating_group,
            grant,
            reason = ?reason,
            uplink = used.octets.uplink,
            downlink = used.octets.downlink,
            time = used.time,
            %at,
            "credit report"
        ),
        Event::CreditTerminated { session, at } => {
            tracing::info!(worker, session = session.0, %at, "every online rating group terminated")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Octets, SuccessToken};
    use crate::policy::SubscriberId;
    use crate::time::Timestamp;
    use std::net::Ipv4Addr;

    fn success(n: u8) -> Event {
        Event::RechargeSuccess {
            session: SessionId(u32::from(n)),
            subscriber: SubscriberId::parse("imsi-001010000000001").unwrap(),
            ue: IpAddr::V4(Ipv4Addr::new(10, 45, 0, n)),
            at: Timestamp::from_secs(u64::from(n)),
            token: SuccessToken {
                subscriber: "imsi-001010000000001".into(),
                ue: None,
                expires: 0,
                nonce: format!("n{n}"),
                signature: String::new(),
                original_url: None,
            },
        }
    }

    fn request(n: u8, at: u64) -> Event {
        Event::SessionRequest {
            ue: IpAddr::V4(Ipv4Addr::new(10, 45, 1, n)),
            at: Timestamp::from_secs(at),
        }
    }

    fn usage(grant: u64, uplink: u64) -> Event {
        Event::UsageThreshold {
            session: SessionId(7),
            monitoring_key: "mk".into(),
            grant,
            used: Octets {
                uplink,
                downlink: 1,
            },
            at: Timestamp::from_secs(grant),
        }
    }

    #[test]
    fn a_full_channel_keeps_recharge_successes_in_order_and_merges_the_rest() {
        let (tx, rx) = crossbeam_channel::bounded(2);
        let mut o = Outbox::new(Some(tx));
        o.send(
            0,
            [
                request(1, 1),
                success(1),
                success(2),
                request(1, 2),
                request(2, 3),
                // 10.45.1.2 asks again: one request of it waits, with the first time.
                request(2, 9),
                usage(1, 100),
                usage(2, 50),
                success(3),
            ]
            .into_iter(),
        );
        assert_eq!(
            rx.try_iter().collect::<Vec<_>>(),
            [request(1, 1), success(1)]
        );
        assert_eq!(o.waiting(), 5);
        assert_eq!((o.counters.sent, o.counters.coalesced), (2, 2));

        // Room for two: the recharge successes go first, in order.
        o.send(0, std::iter::empty());
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [success(2), success(3)]);
        // Then the merged ones, two a batch: the later request of 10.45.1.1, the other
        // subscriber's, and the usage of both grants in one.
        o.send(0, std::iter::empty());
        let mut rest: Vec<Event> = rx.try_iter().collect();
        assert_eq!((rest.len(), o.waiting()), (2, 1));
        o.send(0, std::iter::empty());
        rest.extend(rx.try_iter());
        let merged_usage = Event::UsageThreshold {
            session: SessionId(7),
            monitoring_key: "mk".into(),
            grant: 2,
            used: Octets {
                uplink: 150,
                downlink: 2,
            },
            at: Timestamp::from_secs(2),
        };
        for w in [request(1, 2), request(2, 3), merged_usage] {
            assert!(rest.contains(&w), "{w:?} in {rest:?}");
        }
        assert_eq!(rest.len(), 3);
        assert_eq!(o.waiting(), 0);
        assert_eq!(o.counters.sent, 2 + 2 + 3);
        assert_eq!(o.counters.retried, 5);
        assert_eq!(o.counters.dropped_total(), 0);
    }

    #[test]
    fn what_does_not_fit_even_in_the_worker_is_counted_by_kind() {
        let (tx, rx) = crossbeam_channel::bounded(0);
        let mut o = Outbox::new(Some(tx));
        o.send(0, (0..MAX_RECHARGES + 3).map(|i| success(i as u8)));
        assert_eq!(o.counters.dropped_recharge_success, 3);
        o.send(
            0,
            (0..MAX_MERGED as u32 + 2).map(|i| Event::SessionRequest {
                ue: IpAddr::V4(Ipv4Addr::from(0x0a2d_0000 + i)),
                at: Timestamp::from_secs(1),
            }),
        );
        assert_eq!(o.counters.dropped_session_request, 2);
        assert_eq!(o.waiting(), MAX_RECHARGES + MAX_MERGED);
        drop(rx);
        o.send(0, std::iter::once(usage(1, 1)));
        assert_eq!(o.counters.dropped_usage_threshold, 1);
    }
}
