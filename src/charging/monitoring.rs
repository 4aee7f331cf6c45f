//! Usage monitoring (TS 29.212 §4.5.17): per session × monitoring key, the octets counted since
//! the key's last report, and the threshold the policy engine granted for it. The packet whose
//! octets make the count reach a granted limit raises one [`Event::UsageThreshold`] carrying
//! the count (that packet included); the count starts again from zero, and goes on, and no
//! threshold applies until a grant with a higher number arrives.
//!
//! State lives beside the meter's slots, by the same index: a flow resolves its monitoring
//! key's slot once, when it is classified, and every packet after that costs an index and a
//! compare. Grants are read from the snapshot again only when the snapshot changed.

use super::Slot;
use crate::packet::{Event, Octets};
use crate::policy::{MonitoringGrant, PolicySnapshot, SessionId};
use crate::time::Timestamp;
use crate::wire::Direction;
use std::sync::Arc;

/// The limits of the grant in force for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limits {
    total: Option<u64>,
    uplink: Option<u64>,
    downlink: Option<u64>,
    grant: u64,
}

impl Limits {
    fn reached(&self, used: &Octets) -> bool {
        self.total.is_some_and(|t| used.total() >= t)
            || self.uplink.is_some_and(|t| used.uplink >= t)
            || self.downlink.is_some_and(|t| used.downlink >= t)
    }
}

/// One session × monitoring key.
#[derive(Clone, Debug)]
struct KeyState {
    session: SessionId,
    key: Arc<str>,
    /// Octets since the last report (or since counting began).
    unreported: Octets,
    armed: Option<Limits>,
    /// The grant whose crossing was reported last.
    reported: Option<u64>,
    /// The snapshot version the grant was read from; `None`: not read yet.
    version: Option<u64>,
}

impl KeyState {
    /// Takes the grant for this key from the session's Usage-Monitoring-Information: a grant
    /// above the one last reported arms the threshold; the one already armed stays armed; no
    /// grant (or only the reported one) means no threshold.
    fn rearm(&mut self, grants: &[MonitoringGrant], version: u64) {
        self.version = Some(version);
        let g = grants.iter().find(|g| *g.monitoring_key == *self.key);
        self.armed = g
            .filter(|g| self.reported.is_none_or(|r| g.grant > r))
            .map(|g| Limits {
                total: g.total,
                uplink: g.uplink,
                downlink: g.downlink,
                grant: g.grant,
            });
    }
}

/// One worker's usage monitoring.
#[derive(Default)]
pub struct Monitoring {
    /// By meter slot index; `None` for slots that count a rating group.
    keys: Vec<Option<KeyState>>,
}

impl Monitoring {
    pub fn new() -> Monitoring {
        Monitoring::default()
    }

    /// Watches the monitoring key counted in `slot` (at classification, once per flow); does
    /// nothing when it is watched already.
    pub fn track(&mut self, slot: Slot, session: SessionId, key: &Arc<str>) {
        let i = slot.index();
        if self.keys.len() <= i {
            self.keys.resize(i + 1, None);
        }
        if self.keys[i].is_none() {
            self.keys[i] = Some(KeyState {
                session,
                key: Arc::clone(key),
                unreported: Octets::default(),
                armed: None,
                reported: None,
                version: None,
            });
        }
    }

    /// Counts a packet of `len` IP octets under the key of `slot`, for session `index` of
    /// `snap`. Returns the event when this packet made the count reach the grant in force.
    #[inline]
    pub fn add(
        &mut self,
        slot: Slot,
        snap: &PolicySnapshot,
        index: u32,
        direction: Direction,
        len: u64,
        at: Timestamp,
    ) -> Option<Event> {
        let k = self.keys.get_mut(slot.index())?.as_mut()?;
        if k.version != Some(snap.version) {
            k.rearm(&snap.session(index).monitoring, snap.version);
        }
        match direction {
            Direction::Uplink => k.unreported.uplink += len,
            Direction::Downlink => k.unreported.downlink += len,
        }
        let limits = k.armed?;
        if !limits.reached(&k.unreported) {
            return None;
        }
        let used = std::mem::take(&mut k.unreported);
        k.reported = Some(limits.grant);
        k.armed = None;
        Some(Event::UsageThreshold {
            session: k.session,
            monitoring_key: Arc::clone(&k.key),
            grant: limits.grant,
            used,
            at,
        })
    }

    /// The octets counted since the last report of the key in the meter's slot `index`.
    pub fn unreported(&self, index: usize) -> Option<Octets> {
        self.keys.get(index)?.as_ref().map(|k| k.unreported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charging::{Meter, Metered};
    use crate::policy::{Config, PolicySnapshot};

    /// (grant, total, uplink, downlink)
    type Grant = (u64, Option<u64>, Option<u64>, Option<u64>);

    fn snapshot(version: u64, grant: Option<Grant>) -> PolicySnapshot {
        let mut config = Config::from_toml_str(
            "[gateway]\nue_pools = [\"10.45.0.0/16\"]\n\n[[session]]\nsubscriber = \"imsi-1\"\nipv4 = \"10.45.0.2\"\n",
            "t.toml",
        )
        .unwrap();
        if let Some((grant, total, uplink, downlink)) = grant {
            config.sessions[0].monitoring.push(MonitoringGrant {
                monitoring_key: "mk".into(),
                total,
                uplink,
                downlink,
                grant,
            });
        }
        PolicySnapshot::build(&config, version)
    }

    fn used(event: Option<Event>) -> Option<(u64, Octets)> {
        match event? {
            Event::UsageThreshold { grant, used, .. } => Some((grant, used)),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn the_packet_that_reaches_the_grant_reports_it_once_and_a_higher_grant_rearms() {
        let mut meter = Meter::new();
        let key: Arc<str> = "mk".into();
        let slot = meter.slot(Metered::MonitoringKey(SessionId(0), Arc::clone(&key)));
        let mut m = Monitoring::new();
        m.track(slot, SessionId(0), &key);
        let t = Timestamp::from_secs(1);
        let snap = snapshot(1, Some((1, Some(1000), None, None)));
        let up = Direction::Uplink;
        let down = Direction::Downlink;
        assert_eq!(used(m.add(slot, &snap, 0, up, 400, t)), None);
        assert_eq!(used(m.add(slot, &snap, 0, down, 400, t)), None);
        assert_eq!(
            used(m.add(slot, &snap, 0, up, 400, t)),
            Some((
                1,
                Octets {
                    uplink: 800,
                    downlink: 400
                }
            ))
        );
        // Counting goes on from zero; the same grant never reports twice.
        for _ in 0..5 {
            assert_eq!(used(m.add(slot, &snap, 0, down, 400, t)), None);
        }
        let same = snapshot(2, Some((1, Some(1000), None, None)));
        assert_eq!(used(m.add(slot, &same, 0, down, 400, t)), None);
        assert_eq!(
            m.unreported(slot.index()),
            Some(Octets {
                uplink: 0,
                downlink: 2400
            })
        );
        // A higher grant: what was counted since the report is held against it at once.
        let next = snapshot(3, Some((2, Some(2500), None, None)));
        assert_eq!(
            used(m.add(slot, &next, 0, up, 100, t)),
            Some((
                2,
                Octets {
                    uplink: 100,
                    downlink: 2400
                }
            ))
        );
        assert_eq!(m.unreported(slot.index()), Some(Octets::default()));
    }

    #[test]
    fn a_directional_limit_counts_its_direction_only() {
        let mut meter = Meter::new();
        let key: Arc<str> = "mk".into();
        let slot = meter.slot(Metered::MonitoringKey(SessionId(0), Arc::clone(&key)));
        let t = Timestamp::from_secs(1);
        let mut m = Monitoring::new();
        m.track(slot, SessionId(0), &key);
        let snap = snapshot(1, Some((5, None, Some(100), None)));
        for _ in 0..10 {
            assert_eq!(
                used(m.add(slot, &snap, 0, Direction::Downlink, 1500, t)),
                None
            );
        }
        assert_eq!(used(m.add(slot, &snap, 0, Direction::Uplink, 60, t)), None);
        assert_eq!(
            used(m.add(slot, &snap, 0, Direction::Uplink, 40, t)),
            Some((
                5,
                Octets {
                    uplink: 100,
                    downlink: 15000
                }
            ))
        );
        // No grant at all: counted, never reported.
        let mut m = Monitoring::new();
        m.track(slot, SessionId(0), &key);
        let none = snapshot(1, None);
        assert_eq!(
            used(m.add(slot, &none, 0, Direction::Uplink, 1500, t)),
            None
        );
        assert_eq!(m.unreported(slot.index()).unwrap().uplink, 1500);
    }
}
