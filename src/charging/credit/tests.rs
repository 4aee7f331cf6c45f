use super::*;
use crate::charging::{Meter, Metered};
use crate::policy::Config;

const RETRY: Duration = Duration::from_secs(5);

fn snapshot(version: u64, grants: Vec<CreditGrant>) -> PolicySnapshot {
    let mut config = Config::from_toml_str(
        "[gateway]\nue_pools = [\"10.45.0.0/16\"]\n\n[[session]]\nsubscriber = \"imsi-1\"\nipv4 = \"10.45.0.2\"\n",
        "t.toml",
    )
    .unwrap();
    config.sessions[0].credits = grants;
    PolicySnapshot::build(&config, version)
}

fn grant(n: u64, granted: GrantedServiceUnit) -> CreditGrant {
    CreditGrant {
        rating_group: 7,
        service_identifier: Some(70),
        grant: n,
        granted,
        volume_threshold: None,
        time_threshold: None,
        validity_time: None,
        quota_holding_time: None,
        final_unit: None,
    }
}

const KEY: FlowKey = FlowKey {
    ue: 0xffff_0a2d_0002,
    remote: 0xffff_c633_640a,
    ue_port: 40000,
    remote_port: 80,
    protocol: 6,
};

struct Group {
    credit: Credit,
    slot: Slot,
    events: Vec<Event>,
}

impl Group {
    fn new() -> Group {
        let mut meter = Meter::new();
        let slot = meter.slot(Metered::RatingGroup(SessionId(0), 7));
        let mut credit = Credit::new();
        credit.track(slot, SessionId(0), 7);
        Group {
            credit,
            slot,
            events: Vec::new(),
        }
    }

    fn packet(&mut self, snap: &PolicySnapshot, d: Direction, len: u64, secs: u64) -> Admit {
        let events = &mut self.events;
        self.credit.admit(
            self.slot,
            snap,
            0,
            &KEY,
            false,
            d,
            len,
            Timestamp::from_secs(secs),
            Timestamp::from_secs(1000 + secs),
            false,
            RETRY,
            &mut |e| events.push(e),
        )
    }

    fn reports(&mut self) -> Vec<(ReportingReason, u64, u64, u64)> {
        self.events
            .drain(..)
            .map(|e| match e {
                Event::CreditReport {
                    reason,
                    used,
                    service_identifier: Some(70),
                    ..
                } => (reason, used.octets.uplink, used.octets.downlink, used.time),
                e => panic!("{e:?}"),
            })
            .collect()
    }
}

#[test]
fn an_untracked_slot_passes_and_keeps_no_state() {
    let mut meter = Meter::new();
    let slot = meter.slot(Metered::RatingGroup(SessionId(0), 7));
    let mut credit = Credit::new();
    let snap = snapshot(1, vec![]);
    let admit = credit.admit(
        slot,
        &snap,
        0,
        &KEY,
        false,
        Direction::Uplink,
        100,
        Timestamp::from_secs(1),
        Timestamp::from_secs(1),
        false,
        RETRY,
        &mut |e| panic!("{e:?}"),
    );
    assert_eq!(admit, Admit::Pass);
    assert!(!credit.tracks(slot));
    assert_eq!(credit.state(slot.index()), None);
}

#[test]
fn a_directional_limit_counts_its_direction_only() {
    let mut g = Group::new();
    let snap = snapshot(
        1,
        vec![grant(
            1,
            GrantedServiceUnit {
                uplink: Some(100),
                ..Default::default()
            },
        )],
    );
    for _ in 0..5 {
        assert_eq!(g.packet(&snap, Direction::Downlink, 1500, 1), Admit::Pass);
    }
    assert_eq!(g.packet(&snap, Direction::Uplink, 60, 1), Admit::Pass);
    assert!(g.reports().is_empty());
    assert_eq!(g.packet(&snap, Direction::Uplink, 40, 2), Admit::Pass);
    assert_eq!(
        g.reports(),
        vec![(ReportingReason::QuotaExhausted, 100, 7500, 1)]
    );
    assert_eq!(g.packet(&snap, Direction::Downlink, 40, 2), Admit::Pending);
}

#[test]
fn a_time_grant_runs_out_with_the_clock_and_its_threshold_comes_first() {
    let mut g = Group::new();
    let mut c = grant(
        1,
        GrantedServiceUnit {
            time: Some(10),
            ..Default::default()
        },
    );
    c.time_threshold = Some(3);
    let snap = snapshot(1, vec![c]);
    assert_eq!(g.packet(&snap, Direction::Uplink, 100, 100), Admit::Pass);
    assert_eq!(g.packet(&snap, Direction::Uplink, 100, 106), Admit::Pass);
    assert!(g.reports().is_empty());
    assert_eq!(g.packet(&snap, Direction::Uplink, 100, 107), Admit::Pass);
    assert_eq!(g.reports(), vec![(ReportingReason::Threshold, 300, 0, 7)]);
    // Ten seconds after the grant's first packet nothing is left for the next one.
    assert_eq!(g.packet(&snap, Direction::Uplink, 100, 110), Admit::Pending);
    assert_eq!(
        g.reports(),
        vec![(ReportingReason::QuotaExhausted, 0, 0, 3)]
    );
    assert_eq!(g.credit.state(g.slot.index()), Some(CreditState::Waiting));
}

#[test]
fn a_final_grant_of_nothing_applies_its_action_to_the_first_packet() {
    let mut g = Group::new();
    let mut c = grant(
        4,
        GrantedServiceUnit {
            total: Some(0),
            ..Default::default()
        },
    );
    c.final_unit = Some(FinalUnitIndication {
        action: FinalUnitAction::Terminate,
        restriction_filters: Vec::new(),
        filter_ids: Vec::new(),
    });
    let snap = snapshot(1, vec![c]);
    assert_eq!(
        g.packet(&snap, Direction::Uplink, 100, 1),
        Admit::Drop(DropReason::CreditTerminated)
    );
    assert_eq!(
        g.events,
        vec![
            Event::CreditReport {
                session: SessionId(0),
                rating_group: 7,
                service_identifier: Some(70),
                grant: 4,
                reason: ReportingReason::Final,
                used: UsedUnits::default(),
                at: Timestamp::from_secs(1001),
            },
            Event::CreditTerminated {
                session: SessionId(0),
                at: Timestamp::from_secs(1001),
            },
        ]
    );
    assert_eq!(g.credit.unreported(g.slot.index()), Some(Octets::default()));
}

#[test]
fn a_grant_taken_is_never_taken_again_and_a_higher_one_starts_afresh() {
    let mut g = Group::new();
    let total = |t| GrantedServiceUnit {
        total: Some(t),
        ..Default::default()
    };
    let snap = snapshot(1, vec![grant(3, total(100))]);
    assert_eq!(g.packet(&snap, Direction::Uplink, 100, 1), Admit::Pass);
    assert_eq!(
        g.reports(),
        vec![(ReportingReason::QuotaExhausted, 100, 0, 0)]
    );
    // A later snapshot with the same grant, or a lower one: still waiting.
    for (v, n) in [(2, 3), (3, 2)] {
        let snap = snapshot(v, vec![grant(n, total(100))]);
        let mut changes = Vec::new();
        g.credit.set_snapshot(&snap, &mut changes);
        assert_eq!(changes, vec![]);
        assert_eq!(g.packet(&snap, Direction::Uplink, 10, 2), Admit::Pending);
    }
    let snap = snapshot(4, vec![grant(4, total(100))]);
    let mut changes = Vec::new();
    g.credit.set_snapshot(&snap, &mut changes);
    assert_eq!(changes, vec![Change::Granted { index: 0 }]);
    assert_eq!(g.packet(&snap, Direction::Uplink, 99, 3), Admit::Pass);
    assert!(g.reports().is_empty());
}
