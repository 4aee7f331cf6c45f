use super::*;
use crate::classify::ip_key;
use crate::control::manager::Manager;
use arc_swap::ArcSwap;

const CONFIG: &str = r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[control]
origin_host = "gw.test"

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
flow = [{ description = "permit out 6 from any 80,443 to assigned" }]

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.45.0.2"
predefined = ["web"]

[[session]]
subscriber = "imsi-001010000000002"
ipv4 = "10.45.0.3"
"#;

fn config() -> Config {
    Config::from_toml_str(CONFIG, "t.toml").unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_secs(1_790_000_000)
}

fn def(name: &str, flow: &str) -> pb::ChargingRuleDefinition {
    pb::ChargingRuleDefinition {
        charging_rule_name: name.into(),
        precedence: Some(50),
        rating_group: Some(20),
        flow_information: vec![pb::FlowInformation {
            flow_description: flow.into(),
            flow_direction: 0,
        }],
        ..Default::default()
    }
}

fn redirect_def(address: &str) -> pb::ChargingRuleDefinition {
    pb::ChargingRuleDefinition {
        redirect_information: Some(pb::RedirectInformation {
            redirect_support: pb::RedirectSupport::RedirectionEnabled as i32,
            redirect_address_type: pb::RedirectAddressType::Url as i32,
            redirect_server_address: address.into(),
        }),
        precedence: Some(1),
        ..def("recharge-redirect", "permit out ip from any to assigned")
    }
}

fn install(defs: Vec<pb::ChargingRuleDefinition>, names: &[&str]) -> Update {
    Update {
        installs: vec![pb::ChargingRuleInstall {
            charging_rule_definition: defs,
            charging_rule_name: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn id_of(s: &Sessions, sub: &str) -> SessionId {
    s.by_subscriber(&SubscriberId::parse(sub).unwrap()).unwrap()
}

fn codes(reports: &[pb::ChargingRuleReport]) -> Vec<(String, pb::RuleFailureCode)> {
    reports
        .iter()
        .map(|r| {
            (
                r.charging_rule_name.join(","),
                pb::RuleFailureCode::try_from(r.rule_failure_code).unwrap(),
            )
        })
        .collect()
}

#[test]
fn each_rule_that_cannot_be_installed_is_reported_and_the_others_install() {
    let mut s = Sessions::new(&config(), now());
    s.snapshot().unwrap();
    let (one, two) = (
        id_of(&s, "imsi-001010000000001"),
        id_of(&s, "imsi-001010000000002"),
    );
    let other_before = s.get(one).unwrap().config.clone();
    let update = install(
        vec![
            def("voice", "permit out 17 from any to assigned 5060"),
            def("typo", "permit out 17 frm any to assigned"),
            def("empty", "permit out ip from any to assigned"),
            redirect_def("ftp://portal.example/recharge"),
        ],
        &["web", "no-such-rule"],
    );
    let mut update = update;
    update.installs[0].charging_rule_definition[2]
        .flow_information
        .clear();
    let reports = s
        .apply(two, &update, pb::RedirectLiftCause::PolicyEngine, now())
        .unwrap();
    assert_eq!(
        codes(&reports),
        [
            ("no-such-rule".into(), pb::RuleFailureCode::UnknownRuleName),
            ("typo".into(), pb::RuleFailureCode::IncorrectFlowInformation),
            ("empty".into(), pb::RuleFailureCode::MissingFlowInformation),
            (
                "recharge-redirect".into(),
                pb::RuleFailureCode::MissingRedirectServerAddress
            ),
        ]
    );
    assert!(reports
        .iter()
        .all(|r| r.pcc_rule_status == pb::PccRuleStatus::Inactive as i32));
    assert!(
        reports[1].detail.contains("flow_description"),
        "{}",
        reports[1].detail
    );
    let e = s.get(two).unwrap();
    let names: Vec<&str> = e.config.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["voice"]);
    assert_eq!(e.config.predefined, ["web"]);
    // The other session is untouched, and one snapshot carries the change.
    assert_eq!(s.get(one).unwrap().config, other_before);
    let snap = s.snapshot().unwrap();
    assert_eq!(snap.version, 2);
    let idx = snap
        .session_index(ip_key("10.45.0.3".parse().unwrap()))
        .unwrap();
    let session = snap.session(idx);
    assert_eq!(session.id, two);
    let rules: Vec<&str> = session.rules.iter().map(|r| r.rule.name.as_str()).collect();
    assert_eq!(rules, ["voice", "web"]);
    // Each failure reached the watchers.
    let failures = s
        .take_events()
        .into_iter()
        .filter(|e| matches!(e.event, Some(Ev::RuleFailure(_))))
        .count();
    assert_eq!(failures, 4);
}

#[test]
fn a_malformed_request_is_refused_whole_and_changes_nothing() {
    let mut s = Sessions::new(&config(), now());
    s.snapshot().unwrap();
    let two = id_of(&s, "imsi-001010000000002");
    let before = s.get(two).unwrap().config.clone();
    let cases: Vec<(Update, &str)> = vec![
        (
            {
                let mut u = install(
                    vec![def("voice", "permit out 17 from any to assigned 5060")],
                    &[],
                );
                u.installs[0].charging_rule_base_name = vec!["base".into()];
                u
            },
            "charging_rule_install[0].charging_rule_base_name",
        ),
        (
            install(
                (0..65)
                    .map(|i| def(&format!("r{i}"), "permit out ip from any to assigned"))
                    .collect(),
                &[],
            ),
            "charging_rule_install[0].charging_rule_definition",
        ),
        (
            Update {
                event_triggers: vec![9999],
                ..install(
                    vec![def("voice", "permit out 17 from any to assigned 5060")],
                    &[],
                )
            },
            "event_trigger[0]",
        ),
        (
            Update {
                monitoring: vec![pb::UsageMonitoringInformation::default()],
                ..Default::default()
            },
            "usage_monitoring_information[0].monitoring_key",
        ),
    ];
    for (update, field) in cases {
        match s.apply(two, &update, pb::RedirectLiftCause::PolicyEngine, now()) {
            Err(Refused::Invalid(e)) => assert_eq!(e.field, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(s.get(two).unwrap().config, before);
    assert!(s.snapshot().is_none(), "nothing to publish");
    assert!(s.take_events().is_empty());
    assert!(matches!(
        s.apply(
            SessionId(99),
            &Update::default(),
            pb::RedirectLiftCause::PolicyEngine,
            now()
        ),
        Err(Refused::NotFound(_))
    ));
}

#[test]
fn session_ids_stay_for_a_session_s_life_and_are_never_reused() {
    let mut s = Sessions::new(&config(), now());
    let (one, two) = (
        id_of(&s, "imsi-001010000000001"),
        id_of(&s, "imsi-001010000000002"),
    );
    assert_eq!((one, two), (SessionId(0), SessionId(1)));
    let sub = SubscriberId::parse("imsi-001010000000003").unwrap();
    let three = s
        .create(
            sub.clone(),
            Some("10.45.0.4".parse().unwrap()),
            None,
            Origin::PolicyEngine,
            None,
            now(),
        )
        .unwrap();
    assert_eq!(three, SessionId(2));
    assert_eq!(
        s.get(three).unwrap().session_id,
        format!("gw.test;{};2", 1_790_000_000)
    );
    // Refused: an address in use, a subscriber with a session, outside the pools.
    assert!(matches!(
        s.create(
            SubscriberId::parse("imsi-9").unwrap(),
            Some("10.45.0.4".parse().unwrap()),
            None,
            Origin::Operator,
            None,
            now()
        ),
        Err(Refused::Exists(_))
    ));
    assert!(matches!(
        s.create(
            sub.clone(),
            Some("10.45.0.5".parse().unwrap()),
            None,
            Origin::Operator,
            None,
            now()
        ),
        Err(Refused::Exists(_))
    ));
    assert!(matches!(
        s.create(
            SubscriberId::parse("imsi-9").unwrap(),
            Some("192.0.2.1".parse().unwrap()),
            None,
            Origin::Operator,
            None,
            now()
        ),
        Err(Refused::Invalid(_))
    ));
    s.end(three, pb::TerminationCause::DiameterLogout, now())
        .unwrap();
    let again = s
        .create(
            sub,
            Some("10.45.0.4".parse().unwrap()),
            None,
            Origin::PolicyEngine,
            None,
            now(),
        )
        .unwrap();
    assert_eq!(again, SessionId(3));

    // A reload: imsi-1 keeps its id, imsi-2 leaves the file, imsi-5 is new, the policy
    // engine's session stays.
    let text = CONFIG.replace(
        "subscriber = \"imsi-001010000000002\"\nipv4 = \"10.45.0.3\"",
        "subscriber = \"imsi-001010000000005\"\nipv4 = \"10.45.0.6\"",
    );
    s.reload(&Config::from_toml_str(&text, "t.toml").unwrap(), now());
    let mut ids: Vec<(String, u32, &str)> = s
        .iter()
        .map(|e| (e.config.subscriber.to_string(), e.id.0, e.origin.as_str()))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            ("imsi-001010000000001".to_string(), 0, "config"),
            ("imsi-001010000000003".to_string(), 3, "policy-engine"),
            ("imsi-001010000000005".to_string(), 4, "config"),
        ]
    );
}

#[test]
fn redirects_applied_and_lifted_are_told_with_their_cause_and_grants_are_numbered() {
    let mut s = Sessions::new(&config(), now());
    let two = id_of(&s, "imsi-001010000000002");
    s.apply(
        two,
        &install(vec![redirect_def("http://portal.example/recharge")], &[]),
        pb::RedirectLiftCause::PolicyEngine,
        now(),
    )
    .unwrap();
    assert_eq!(
        s.get(two).unwrap().redirect(s.predefined()),
        Some((
            "recharge-redirect".into(),
            "http://portal.example/recharge".into()
        ))
    );
    let lift = Update {
        removes: vec![pb::ChargingRuleRemove {
            charging_rule_name: vec!["recharge-redirect".into()],
            charging_rule_base_name: vec![],
        }],
        monitoring: vec![pb::UsageMonitoringInformation {
            monitoring_key: "mk-web".into(),
            granted_service_unit: Some(pb::ServiceUnit {
                cc_total_octets: Some(1000),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..install(vec![], &["web"])
    };
    s.apply(two, &lift, pb::RedirectLiftCause::PolicyEngine, now())
        .unwrap();
    s.apply(
        two,
        &Update {
            monitoring: lift.monitoring.clone(),
            ..Default::default()
        },
        pb::RedirectLiftCause::PolicyEngine,
        now(),
    )
    .unwrap();
    let e = s.get(two).unwrap();
    assert_eq!(e.redirect(s.predefined()), None);
    assert_eq!(e.config.monitoring.len(), 1);
    assert_eq!(
        (e.config.monitoring[0].total, e.config.monitoring[0].grant),
        (Some(1000), 2)
    );
    let events: Vec<Ev> = s
        .take_events()
        .into_iter()
        .filter_map(|e| e.event)
        .collect();
    assert_eq!(
        events,
        [
            Ev::RedirectApplied(pb::RedirectApplied {
                cause: pb::RedirectCause::PccRule as i32,
                source: "recharge-redirect".into()
            }),
            Ev::RedirectLifted(pb::RedirectLifted {
                cause: pb::RedirectLiftCause::PolicyEngine as i32,
                source: "recharge-redirect".into()
            }),
        ]
    );
}

#[test]
fn requests_within_the_window_become_one_snapshot() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let policy = Arc::new(ArcSwap::from_pointee(PolicySnapshot::build(&config(), 0)));
        let (m, _task) = Manager::start(
            Sessions::new(&config(), now()),
            Arc::clone(&policy),
            std::time::Duration::from_millis(200),
            crate::metrics::ControlMetrics::new(),
        );
        assert_eq!(policy.load().version, 1);
        let calls: Vec<_> = (0..20u8)
            .map(|i| {
                let m = m.clone();
                tokio::spawn(async move {
                    m.call(move |s, now| {
                        let sub = SubscriberId::parse(&format!("imsi-10{i}")).unwrap();
                        let ue = std::net::Ipv4Addr::new(10, 45, 1, i);
                        s.create(sub, Some(ue), None, Origin::Operator, None, now)
                            .unwrap()
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
        // Every answer came after its change was published, in one snapshot.
        let snap = policy.load();
        assert_eq!((snap.version, snap.session_count()), (2, 22));
        // A read changes nothing and publishes nothing.
        m.call(|s, _| s.len()).await.unwrap();
        assert_eq!(policy.load().version, 2);
    });
}
