//! A snapshot derived change by change must equal one built whole from the same sessions.

use super::*;
use crate::classify::ip_key;

#[test]
fn portal_hosts_and_addresses_come_from_the_settings_and_the_redirect_rules() {
    let text = r#"
[redirect]
portal_hosts = ["portal.example"]
portal_addresses = ["192.0.2.80"]

[[predefined_rule]]
name = "by-url"
precedence = 1
redirect = { address_type = "URL", server_address = "http://Top-Up.Example:8080/pay" }
flow = [{ description = "permit out ip from any to assigned" }]

[[predefined_rule]]
name = "by-address"
precedence = 2
redirect = { address_type = "IPV6_ADDRESS", server_address = "2001:db8::80" }
flow = [{ description = "permit out ip from any to assigned" }]

[[predefined_rule]]
name = "same-portal"
precedence = 3
redirect = { address_type = "URL", server_address = "http://portal.example/again" }
flow = [{ description = "permit out ip from any to assigned" }]

[[predefined_rule]]
name = "literal-url"
precedence = 4
redirect = { address_type = "URL", server_address = "http://192.0.2.81/pay" }
flow = [{ description = "permit out ip from any to assigned" }]
"#;
    let snap = PolicySnapshot::build(&Config::from_toml_str(text, "t").unwrap(), 1);
    assert_eq!(snap.portal_hosts(), ["portal.example", "top-up.example"]);
    let addrs: Vec<String> = snap
        .portal_addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, ["192.0.2.80", "2001:db8::80", "192.0.2.81"]);
}

/// A session with more filters than the linear limit uses the packed tuple space; its
/// answers must equal a first-match scan of the same rules in precedence order.
#[test]
fn a_rebuild_keeps_each_subscriber_s_session_id() {
    let doc = |order: &[(&str, &str)]| {
        let mut text = String::from("[gateway]\nue_pools = [\"10.45.0.0/16\"]\n");
        for (sub, addr) in order {
            text.push_str(&format!(
                "[[session]]\nsubscriber = \"{sub}\"\nipv4 = \"{addr}\"\n"
            ));
        }
        Config::from_toml_str(&text, "t.toml").unwrap()
    };
    let first = PolicySnapshot::build(
        &doc(&[
            ("imsi-1", "10.45.0.1"),
            ("imsi-2", "10.45.0.2"),
            ("imsi-3", "10.45.0.3"),
        ]),
        1,
    );
    let ids = |s: &PolicySnapshot| -> Vec<(String, u32)> {
        let mut v: Vec<_> = s
            .sessions()
            .map(|x| (x.subscriber.to_string(), x.id.0))
            .collect();
        v.sort();
        v
    };
    // Reordered, one removed, one added: the survivors keep their ids, the newcomer gets
    // one nobody had.
    let second = PolicySnapshot::rebuild(
        &doc(&[
            ("imsi-4", "10.45.0.4"),
            ("imsi-3", "10.45.0.3"),
            ("imsi-1", "10.45.0.1"),
        ]),
        2,
        &first,
    );
    assert_eq!(
        ids(&second),
        [
            ("imsi-1".into(), 0),
            ("imsi-3".into(), 2),
            ("imsi-4".into(), 3)
        ]
    );
    // imsi-2 comes back after being gone: a new id, so its old counters are not resumed by
    // mistake under a different session.
    let third = PolicySnapshot::rebuild(
        &doc(&[("imsi-2", "10.45.0.2"), ("imsi-4", "10.45.0.4")]),
        3,
        &second,
    );
    assert_eq!(ids(&third), [("imsi-2".into(), 4), ("imsi-4".into(), 3)]);
}

#[test]
fn large_sessions_classify_like_a_first_match_scan() {
    let mut text = String::from("[gateway]\nue_pools = [\"10.45.0.0/16\"]\n");
    let mut names = Vec::new();
    for i in 0..40u32 {
        // Precedence runs against the listing order, so sorting matters.
        text.push_str(&format!(
            "[[predefined_rule]]\nname = \"r{i}\"\nprecedence = {}\nrating_group = {i}\nflow = [{{ description = \"permit out 6 from 198.51.{}.0/24 {} to assigned\" }}]\n",
            1000 - i * 10,
            i % 4,
            8000 + i % 7
        ));
        names.push(format!("\"r{i}\""));
    }
    text.push_str(&format!(
        "[[session]]\nsubscriber = \"imsi-1\"\nipv4 = \"10.45.0.2\"\npredefined = [{}]\n",
        names.join(", ")
    ));
    let config = Config::from_toml_str(&text, "t.toml").unwrap();
    let snap = PolicySnapshot::build(&config, 1);
    let session = snap.session(
        snap.session_index(ip_key("10.45.0.2".parse().unwrap()))
            .unwrap(),
    );
    assert!(matches!(
        session.classifiers.downlink.classifier,
        compile::SessionClassifier::Packed(_)
    ));
    let ue = ip_key("10.45.0.2".parse().unwrap());
    for net in 0..5u32 {
        for port in 7998..8010u16 {
            let remote = ip_key(format!("198.51.{net}.9").parse().unwrap());
            let key = Key {
                src: remote,
                dst: ue,
                src_port: port,
                dst_port: 50000,
                protocol: 6,
            };
            let got = snap
                .classify(session, Direction::Downlink, &key, Timestamp(0))
                .map(|id| session.rule(id).rule.name.clone());
            // The reference: the lowest precedence among rules whose filter matches.
            let want = (0..40u32)
                .filter(|i| i % 4 == net && 8000 + u32::from(*i as u16 % 7) == u32::from(port))
                .min_by_key(|i| 1000 - i * 10)
                .map(|i| format!("r{i}"));
            assert_eq!(got, want, "198.51.{net}.9 port {port}");
        }
    }
}

/// Session variants to draw from: per id, four configurations that differ in addresses (IPv4,
/// IPv6 of two prefix lengths), predefined rules, dynamic rules (one a
/// redirect with its own portal, one timed) and the default rule.
const IDS: u32 = 12;
const VARIANTS: u32 = 4;

fn templates() -> Config {
    let mut text = String::from(
        r#"
[gateway]
ue_pools = ["10.45.0.0/16", "2001:db8::/32"]

[redirect]
portal_hosts = ["portal.example"]

[[predefined_rule]]
name = "a"
precedence = 10
rating_group = 1
flow = [{ description = "permit out 6 from any 80 to assigned" }]

[[predefined_rule]]
name = "b"
precedence = 20
redirect = { address_type = "URL", server_address = "http://portal-b.example/pay" }
flow = [{ description = "permit out ip from any to assigned" }]

[[predefined_rule]]
name = "c"
precedence = 5
rating_group = 3
activation = 2026-01-01T00:00:00Z
deactivation = 2027-01-01T00:00:00Z
flow = [{ description = "permit out 17 from any 53 to assigned" }]
"#,
    );
    for id in 0..IDS {
        for v in 0..VARIANTS {
            text.push_str(&format!(
                "[[session]]\nsubscriber = \"imsi-00101000000{id:02}{v}\"\n"
            ));
            match v {
                0 => text.push_str(&format!(
                    "ipv4 = \"10.45.0.{id}\"\npredefined = [\"a\"]\n"
                )),
                1 => text.push_str(&format!(
                    "ipv4 = \"10.45.1.{id}\"\nipv6 = \"2001:db8:{id}::/64\"\npredefined = [\"a\", \"c\"]\n\
                     [[session.rule]]\nname = \"d-redirect\"\nprecedence = 1\n\
                     redirect = {{ address_type = \"URL\", server_address = \"http://dyn{id}.example/\" }}\n\
                     flow = [{{ description = \"permit out ip from any to assigned\" }}]\n"
                )),
                2 => text.push_str(&format!(
                    "ipv6 = \"2001:db8:{id}:100::/56\"\npredefined = [\"b\", \"c\"]\n\
                     default_rule = {{ action = \"drop\" }}\n\
                     [[session.rule]]\nname = \"d1\"\nprecedence = 10\nrating_group = 7\n\
                     flow = [{{ description = \"permit out 17 from any 53 to assigned\" }}]\n"
                )),
                _ => text.push_str(&format!(
                    "ipv4 = \"10.45.2.{id}\"\npredefined = [\"b\", \"a\"]\n\
                     [[session.rule]]\nname = \"d-timed\"\nprecedence = 10\nrating_group = 9\n\
                     activation = 2026-03-01T00:00:00Z\n\
                     flow = [{{ description = \"permit out 6 from any 80 to assigned\" }}]\n"
                )),
            }
        }
    }
    match Config::from_toml_str(&text, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("{:#?}", e.0),
    }
}

fn template(c: &Config, id: u32, v: u32) -> &SessionConfig {
    &c.sessions[(id * VARIANTS + v) as usize]
}

/// Everything the data path reads of a session, by value.
fn view(snap: &PolicySnapshot, s: &Session) -> String {
    let rule_names = |ids: &[RuleId]| -> Vec<String> {
        ids.iter().map(|id| s.rule(*id).rule.name.clone()).collect()
    };
    let all: Vec<(String, bool)> = s
        .rules
        .iter()
        .map(|r| (r.rule.name.clone(), r.predefined))
        .collect();
    let times = [
        0u64,
        1_767_225_600,
        1_772_323_200,
        1_780_272_000,
        1_800_000_000,
    ];
    let mut classified = Vec::new();
    for t in times {
        let now = Timestamp::from_secs(t);
        classified.push(format!("b{:?}", s.next_boundary(now)));
        for (proto, port) in [(6u8, 80u16), (17, 53), (6, 443)] {
            for direction in [Direction::Uplink, Direction::Downlink] {
                let ue = s
                    .ipv4
                    .map(|a| ip_key(IpAddr::V4(a)))
                    .or(s.ipv6.map(|p| ip_key(p.addr)))
                    .unwrap_or(0);
                let key = Key {
                    src: ip_key("198.51.100.1".parse().unwrap()),
                    dst: ue,
                    src_port: port,
                    dst_port: 40000,
                    protocol: proto,
                };
                classified.push(format!(
                    "{:?}",
                    snap.classify(s, direction, &key, now)
                        .map(|id| s.rule(id).rule.name.clone())
                ));
            }
        }
    }
    format!(
        "{:?} {} {:?} {:?} {:?} {:?} {:?} {:?}",
        s.id,
        s.subscriber,
        s.ipv4,
        s.ipv6,
        s.default_rule,
        all,
        rule_names(&s.redirect_rules),
        classified
    )
}

/// Asserts `got` (derived change by change) enforces exactly what `want` (built whole) does.
fn assert_same(got: &PolicySnapshot, want: &PolicySnapshot, ids: impl Iterator<Item = u32>) {
    assert_eq!(got.session_count(), want.session_count());
    for id in ids {
        let g = got.session_by_id(SessionId(id));
        let w = want.session_by_id(SessionId(id));
        assert_eq!(g.is_some(), w.is_some(), "session {id}");
        let (Some((gs, g)), Some((_, w))) = (g, w) else {
            continue;
        };
        assert_eq!(g.slot, gs);
        assert_eq!(view(got, g), view(want, w));
        // Found by each of its addresses, in both.
        for addr in g
            .ipv4
            .map(|a| ip_key(IpAddr::V4(a)))
            .into_iter()
            .chain(g.ipv6.map(|p| ip_key(p.addr) | 0x1234))
        {
            let found = |s: &PolicySnapshot| s.session_index(addr).map(|i| s.session(i).id);
            assert_eq!(found(got), Some(SessionId(id)));
            assert_eq!(found(want), Some(SessionId(id)));
        }
    }
    // Every address any variant could have: owned by the same session in both, or by none.
    for id in 0..IDS {
        let candidates = [
            format!("10.45.0.{id}"),
            format!("10.45.1.{id}"),
            format!("10.45.2.{id}"),
            format!("2001:db8:{id}::9"),
            format!("2001:db8:{id}:1ff::9"),
        ];
        for a in candidates {
            let addr = ip_key(a.parse().unwrap());
            let found = |s: &PolicySnapshot| s.session_index(addr).map(|i| s.session(i).id);
            assert_eq!(found(got), found(want), "{a}");
        }
    }
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    assert_eq!(sorted(got.portal_hosts()), sorted(want.portal_hosts()));
    assert_eq!(got.portal_addresses(), want.portal_addresses());
}

proptest::proptest! {
    /// Batches of adds, replacements and removals applied with `with_changes` give the snapshot
    /// a full `build_from` of the resulting sessions gives: same sessions by id and address,
    /// same rules, redirect rules, boundaries, classification and portals.
    #[test]
    fn changes_equal_a_full_build(
        initial in proptest::collection::vec((0..IDS, 0..VARIANTS), 0..8),
        batches in proptest::collection::vec(
            proptest::collection::vec((0..IDS, proptest::option::of(0..VARIANTS)), 1..6),
            1..6,
        ),
    ) {
        let c = templates();
        let mut model: std::collections::BTreeMap<u32, u32> = Default::default();
        for (id, v) in &initial {
            model.insert(*id, *v);
        }
        let build = |model: &std::collections::BTreeMap<u32, u32>, version| {
            let sessions: Vec<(SessionId, &SessionConfig)> = model
                .iter()
                .map(|(id, v)| (SessionId(*id), template(&c, *id, *v)))
                .collect();
            PolicySnapshot::build_from(&c.gateway, &c.predefined, &sessions, version)
        };
        let mut snap = build(&model, 1);
        for (n, batch) in batches.iter().enumerate() {
            let changes: Vec<(SessionId, Option<&SessionConfig>)> = batch
                .iter()
                .map(|(id, v)| (SessionId(*id), v.map(|v| template(&c, *id, v))))
                .collect();
            let before = snap.clone();
            snap = snap.with_changes(n as u64 + 2, &changes);
            for (id, v) in batch {
                match v {
                    Some(v) => model.insert(*id, *v),
                    None => model.remove(id),
                };
            }
            assert_same(&snap, &build(&model, 0), 0..IDS);
            // The snapshot it came from is untouched, and a session the batch left alone is
            // the very same compiled session (shared, same stamp).
            for id in (0..IDS).filter(|id| !batch.iter().any(|(b, _)| b == id)) {
                let old = before.session_by_id(SessionId(id)).map(|(_, s)| s as *const Session);
                let new = snap.session_by_id(SessionId(id)).map(|(_, s)| s as *const Session);
                proptest::prop_assert_eq!(old, new);
            }
        }
    }
}

#[test]
fn a_replaced_session_keeps_its_slot_and_gets_a_new_stamp_and_a_removed_one_is_gone() {
    let c = templates();
    let sessions: Vec<(SessionId, &SessionConfig)> = (0..4)
        .map(|id| (SessionId(id), template(&c, id, 0)))
        .collect();
    let first = PolicySnapshot::build_from(&c.gateway, &c.predefined, &sessions, 1);
    let (slot, old) = first.session_by_id(SessionId(2)).unwrap();
    let second = first.with_changes(
        2,
        &[
            (SessionId(2), Some(template(&c, 2, 1))),
            (SessionId(1), None),
            (SessionId(7), Some(template(&c, 7, 0))),
        ],
    );
    let (slot2, new) = second.session_by_id(SessionId(2)).unwrap();
    assert_eq!(slot2, slot);
    assert_ne!(new.stamp, old.stamp);
    assert!(second.is_current(slot, new.stamp) && !second.is_current(slot, old.stamp));
    assert!(first.is_current(slot, old.stamp));
    // The old address is free, the new one found.
    assert_eq!(
        second.session_index(ip_key("10.45.0.2".parse().unwrap())),
        None
    );
    assert_eq!(
        second.session_index(ip_key("10.45.1.2".parse().unwrap())),
        Some(slot)
    );
    // Session 1's slot went to the newcomer 7; 1 is gone.
    let slot1 = first.session_by_id(SessionId(1)).unwrap().0;
    assert!(second.session_by_id(SessionId(1)).is_none());
    assert_eq!(second.session_by_id(SessionId(7)).unwrap().0, slot1);
    assert_eq!(second.session_count(), 4);
    assert_eq!(second.next_session_id(), SessionId(8));
    // The predefined rules are the snapshot's own, shared, not copies.
    let a = second.predefined_rule("a").unwrap();
    for s in second.sessions() {
        for r in s
            .rules
            .iter()
            .filter(|r| r.predefined && r.rule.name == "a")
        {
            assert!(Arc::ptr_eq(&r.rule, a));
        }
    }
    // The dynamic redirect's portal came with the session and leaves with it.
    assert!(second.portal_hosts().contains(&"dyn2.example".to_string()));
    let third = second.with_changes(3, &[(SessionId(2), None)]);
    assert!(!third.portal_hosts().contains(&"dyn2.example".to_string()));
    assert_eq!(third.portal_hosts(), ["portal.example", "portal-b.example"]);
}
