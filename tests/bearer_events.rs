//! `weir.v1.Gateway/ReportBearerEvent` against a real `weir policy-engine` (the policy engine
//! and the charging system, on SQLite), the gateway's control plane in-process, the real
//! grpcurl for the report and the real curl for the policy engine's `/metrics`.
//!
//! For every combination the requests each peer received are counted on the policy engine's
//! per-RPC request counters (`weir_policy_engine_requests_total`): an event trigger only (one
//! CCR-U to the policy engine, nothing to the charging system); a re-authorization trigger only
//! (none, one); both (one, one: the Gy request carries both Trigger-Types); an event whose
//! answer installs a rule that needs credit, with a re-authorization trigger too (one, one: the
//! Gy request carries both reasons) and one whose answer removes a rule whose rating group holds
//! quota, without a trigger (one, one); neither (none, none). The Gy request of a rule change
//! asks for the rating group only the policy engine's answer put in force, so it went out after
//! that answer was applied; and what the charging system debited equals what the gateway
//! reported.

mod common;
#[path = "support/grpc.rs"]
mod grpc;

use grpc::{grpcurl_or_skip, int, PolicyEngine};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::packet::{Event, Octets, ReportingReason, UsedUnits};
use weir::policy::{Config, CreditGrant, PolicySnapshot, SessionId, SubscriberId};
use weir::time::Timestamp;

const SUB: &str = "imsi-001010000000021";
const UE: &str = "10.45.0.21";
const BUCKET: i64 = 10_000_000;
const UPDATE: &str = "weir.v1.PolicyEngine/UpdateSession";
const CREDIT: &str = "weir.v1.ChargingSystem/CreditControl";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The plan: four event triggers, two of them answered with a rule change; rating group 10
/// re-authorized on a QoS change, a location change and a change of MNC.
fn engine_config(metrics: u16) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:{metrics}"
database = "pe.sqlite"
origin_host = "pcrf.test"
token_key = "000102030405060708090a0b0c0d0e0f"
predefined_rules = ["web", "video"]

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = {{ support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[plan]]
name = "bearer"
predefined = ["web"]
event_triggers = ["RAT_CHANGE", "QOS_CHANGE", "PLMN_CHANGE", "AN_GW_CHANGE"]
rate = [
    {{ rating_group = 10, per_mb = 2, reauthorization_triggers = ["CHANGE_IN_QOS", "CHANGE_IN_LOCATION", "CHANGEINLOCATION_MNC"] }},
    {{ rating_group = 20, per_mb = 2 }},
]

[[plan.on_event]]
event = "PLMN_CHANGE"
install = ["video"]

[[plan.on_event]]
event = "AN_GW_CHANGE"
remove = ["web"]

[charging]
grant_octets = 1000000
validity_time = 600
grace = 30
threshold_percent = 20

[[account]]
subscriber = "{SUB}"
balance = 10
"#
    )
}

fn gateway_config(pe: &str) -> Config {
    let text = format!(
        r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
online = true
flow = [{{ description = "permit out 6 from any 80 to assigned" }}]

[[predefined_rule]]
name = "video"
precedence = 90
rating_group = 20
online = true
flow = [{{ description = "permit out 6 from any 8080 to assigned" }}]

[[subscriber]]
subscriber = "{SUB}"
ipv4 = "{UE}"

[control]
listen = "127.0.0.1:0"
origin_host = "gw.test"
policy_engine = "http://{pe}"
charging_system = "http://{pe}"
retry_backoff = 0
retry_max_backoff = 1

[credit]
request_timeout = 2
attempts = 2
retry_backoff = 0
retry_max_backoff = 1
"#
    );
    Config::from_toml_str(&text, "gw.toml").unwrap_or_else(|e| panic!("{:#?}", e.0))
}

/// The policy engine and the gateway's control plane, with the session up and rating group 10
/// granted (a Gx CCR-I and a Gy CCR-I).
struct Setup {
    pe: PolicyEngine,
    metrics: u16,
    gw: Option<weir::control::Control>,
    addr: String,
    session_id: String,
    id: SessionId,
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Setup {
    fn start(test: &str) -> Setup {
        let metrics = free_port();
        let pe = PolicyEngine::start(test, &engine_config(metrics));
        pe.call(
            "weir.v1.Admin/AddCreditContainer",
            &json!({ "subscriber_id": SUB, "unit": "CREDIT_UNIT_OCTETS", "amount": BUCKET }),
        );
        let config = gateway_config(&pe.addr);
        let policy = Arc::new(arc_swap::ArcSwap::from_pointee(PolicySnapshot::build(
            &config, 0,
        )));
        let gw = weir::control::start(&config, policy, weir::control::Tallies::default())
            .expect("control starts");
        let addr = gw.listen().unwrap().unwrap().to_string();
        gw.events()
            .send(Event::SessionRequest {
                ue: UE.parse().unwrap(),
                at: Timestamp::now(),
            })
            .unwrap();
        let m = gw.manager().clone();
        let sub = SubscriberId::parse(SUB).unwrap();
        let mut found = None;
        wait_until("the CCA-I", || {
            let (m, sub) = (m.clone(), sub.clone());
            found = gw
                .block_on(async move {
                    m.call(move |s, _| {
                        let id = s.by_subscriber(&sub)?;
                        Some((id, s.get(id)?.session_id.clone()))
                    })
                    .await
                })
                .unwrap();
            found.is_some()
        });
        let (id, session_id) = found.unwrap();
        gw.events()
            .send(Event::CreditRequest {
                session: id,
                rating_group: 10,
                service_identifier: None,
                at: Timestamp::now(),
            })
            .unwrap();
        let s = Setup {
            pe,
            metrics,
            gw: Some(gw),
            addr,
            session_id,
            id,
        };
        wait_until("the Gy CCA-I grant", || {
            s.credits()
                .iter()
                .any(|g| g.rating_group == 10 && g.grant == 1)
        });
        s
    }

    fn gw(&self) -> &weir::control::Control {
        self.gw.as_ref().unwrap()
    }

    fn credits(&self) -> Vec<CreditGrant> {
        let (m, id) = (self.gw().manager().clone(), self.id);
        self.gw().block_on(async move {
            m.call(move |s, _| s.get(id).map(|e| e.config.credits.clone()))
                .await
                .unwrap()
                .unwrap_or_default()
        })
    }

    /// The session's rule names in force at the gateway, sorted.
    fn rules(&self) -> Vec<String> {
        let (m, id) = (self.gw().manager().clone(), self.id);
        self.gw().block_on(async move {
            m.call(move |s, _| {
                let e = s.get(id).unwrap();
                let mut n: Vec<String> = e
                    .config
                    .predefined
                    .iter()
                    .cloned()
                    .chain(e.config.rules.iter().map(|r| r.name.clone()))
                    .collect();
                n.sort();
                n
            })
            .await
            .unwrap()
        })
    }

    /// Requests the policy engine received for `rpc`, from its /metrics, read with curl.
    fn received(&self, rpc: &str) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics);
        let out = common::run(
            Command::new("curl").args(["-s", "--max-time", "10", &url]),
            Duration::from_secs(15),
        );
        assert!(out.status.success(), "curl {url}");
        let text = String::from_utf8(out.stdout).unwrap();
        let head = format!("weir_policy_engine_requests_total{{rpc=\"{rpc}\",");
        text.lines()
            .filter(|l| l.starts_with(&head))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    fn counts(&self) -> (u64, u64) {
        (self.received(UPDATE), self.received(CREDIT))
    }

    fn report(&self, body: Value) -> Result<Value, (String, String)> {
        grpc::try_call(&[], &self.addr, "weir.v1.Gateway/ReportBearerEvent", &body)
    }

    /// Reports `events` and returns the answer and the requests (Gx, Gy) each peer received
    /// for it.
    fn event(&self, events: &[&str], extra: Value) -> (Value, (u64, u64)) {
        let before = self.counts();
        let mut body = json!({ "session_id": self.session_id, "event_trigger": events });
        if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(x.clone());
        }
        let a = self.report(body).unwrap();
        // Anything sent late would show here.
        std::thread::sleep(Duration::from_millis(500));
        let after = self.counts();
        (a, (after.0 - before.0, after.1 - before.1))
    }

    /// (amount, reserved) of the subscriber's octet bucket.
    fn bucket(&self) -> (i64, i64) {
        let list = self.pe.call(
            "weir.v1.Admin/ListCreditContainers",
            &json!({ "subscriber_id": SUB }),
        );
        let c = list["containers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["unit"] == "CREDIT_UNIT_OCTETS"))
            .cloned()
            .unwrap_or_else(|| panic!("no bucket: {list}"));
        (int(&c["amount"]), int(&c["reserved"]))
    }

    /// A worker's report of `octets` used on rating group 10, then the gateway stops (CCR-T):
    /// the charging system debited exactly what was reported and holds nothing reserved.
    fn charged_is_reported(mut self, octets: u64) {
        let grant = self
            .credits()
            .iter()
            .find(|g| g.rating_group == 10)
            .map(|g| g.grant)
            .unwrap();
        let before = self.received(CREDIT);
        self.gw()
            .events()
            .send(Event::CreditReport {
                session: self.id,
                rating_group: 10,
                service_identifier: None,
                grant,
                reason: ReportingReason::Threshold,
                used: UsedUnits {
                    octets: Octets {
                        uplink: octets / 4,
                        downlink: octets - octets / 4,
                    },
                    time: 0,
                },
                at: Timestamp::now(),
            })
            .unwrap();
        wait_until("the report", || self.received(CREDIT) == before + 1);
        assert_eq!(self.bucket().0, BUCKET - octets as i64);
        if let Some(gw) = self.gw.take() {
            gw.stop(Duration::from_secs(3));
        }
        assert_eq!(self.bucket(), (BUCKET - octets as i64, 0));
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(gw) = self.gw.take() {
            gw.stop(Duration::from_secs(1));
        }
    }
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn an_event_trigger_alone_goes_to_the_policy_engine_only() {
    if !grpcurl_or_skip("bearer_gx_only") {
        return;
    }
    let s = Setup::start("bearer-gx");
    let (a, sent) = s.event(&["RAT_CHANGE"], json!({ "rat_type": 1004 }));
    assert_eq!(sent, (1, 0), "{a}");
    assert_eq!(a["policyUpdateSent"], true, "{a}");
    assert_eq!(a["policyEventTrigger"], json!(["RAT_CHANGE"]));
    assert_eq!(a["policyResultCode"], "DIAMETER_SUCCESS");
    assert_eq!(a.get("creditUpdateSent"), None, "{a}");
    assert_eq!(a.get("creditReason"), None, "{a}");
    assert_eq!(s.rules(), ["web"]);
    s.charged_is_reported(300_000);
}

#[test]
fn a_reauthorization_trigger_alone_goes_to_the_charging_system_only() {
    if !grpcurl_or_skip("bearer_gy_only") {
        return;
    }
    let s = Setup::start("bearer-gy");
    let (a, sent) = s.event(&["USER_LOCATION_CHANGE"], json!({}));
    assert_eq!(sent, (0, 1), "{a}");
    assert_eq!(a.get("policyUpdateSent"), None, "{a}");
    assert_eq!(a["creditUpdateSent"], true);
    assert_eq!(a["creditRequestNumber"], 1);
    assert_eq!(
        a["creditReason"],
        json!([{ "ratingGroup": 10, "triggerType": ["CHANGE_IN_LOCATION"] }])
    );
    // The answer to that request (number 1) is the grant in force: number 2.
    let g = s.credits();
    assert_eq!((g[0].rating_group, g[0].grant), (10, 2));
    // Re-authorized, nothing debited: the bucket still holds it all, 1 MB reserved.
    assert_eq!(s.bucket(), (BUCKET, 1_000_000));
    s.charged_is_reported(250_000);
}

#[test]
fn an_event_and_a_reauthorization_trigger_send_one_request_to_each_peer() {
    if !grpcurl_or_skip("bearer_both") {
        return;
    }
    let s = Setup::start("bearer-both");
    let (a, sent) = s.event(
        &["QOS_CHANGE", "USER_LOCATION_CHANGE"],
        json!({ "qos_class_identifier": 9, "apn_aggregate_max_bitrate_ul": 5000000, "apn_aggregate_max_bitrate_dl": 20000000 }),
    );
    assert_eq!(sent, (1, 1), "{a}");
    // USER_LOCATION_CHANGE is no event trigger of the session: not sent to the policy engine.
    assert_eq!(a["policyEventTrigger"], json!(["QOS_CHANGE"]));
    assert_eq!(a["policyResultCode"], "DIAMETER_SUCCESS");
    // One Gy request with both Trigger-Types of rating group 10.
    assert_eq!(a["creditUpdateSent"], true);
    assert_eq!(
        a["creditReason"],
        json!([{ "ratingGroup": 10, "triggerType": ["CHANGE_IN_QOS", "CHANGE_IN_LOCATION"] }])
    );
    assert_eq!(s.credits()[0].grant, 2);
    s.charged_is_reported(123_456);
}

#[test]
fn a_rule_change_and_a_reauthorization_trigger_share_one_credit_request_after_the_answer() {
    if !grpcurl_or_skip("bearer_rule_trigger") {
        return;
    }
    let s = Setup::start("bearer-rule-trigger");
    assert_eq!(s.rules(), ["web"]);
    let (a, sent) = s.event(&["PLMN_CHANGE"], json!({ "plmn_id": "00102" }));
    assert_eq!(sent, (1, 1), "{a}");
    assert_eq!(a["policyEventTrigger"], json!(["PLMN_CHANGE"]));
    assert_eq!(names(&a["chargingRuleInstalled"]), ["video"]);
    assert_eq!(s.rules(), ["video", "web"]);
    // The one Gy request: rating group 10's trigger (a PLMN change is a change of MNC) and
    // rating group 20, which only the policy engine's answer put in force.
    assert_eq!(
        a["creditReason"],
        json!([
            { "ratingGroup": 10, "triggerType": ["CHANGEINLOCATION_MNC"] },
            { "ratingGroup": 20, "ruleChange": "RULE_CREDIT_CHANGE_NEW_RATING_GROUP", "chargingRuleName": "video" },
        ])
    );
    assert_eq!(a["creditRequestNumber"], 1);
    // Rating group 20 got its grant from that request (number 1, grant 2): the request was
    // sent after the answer that installed "video" was applied.
    let g = s.credits();
    assert_eq!(
        g.iter()
            .map(|g| (g.rating_group, g.grant, g.granted.total))
            .collect::<Vec<_>>(),
        [(10, 2, Some(1_000_000)), (20, 2, Some(1_000_000))]
    );
    assert_eq!(s.bucket(), (BUCKET, 2_000_000));
    s.charged_is_reported(400_000);
}

#[test]
fn a_rule_removed_while_its_rating_group_holds_quota_reauthorizes_without_a_trigger() {
    if !grpcurl_or_skip("bearer_rule_only") {
        return;
    }
    let s = Setup::start("bearer-rule-only");
    let (a, sent) = s.event(
        &["AN_GW_CHANGE"],
        json!({ "serving_node_address": "192.0.2.77" }),
    );
    assert_eq!(sent, (1, 1), "{a}");
    assert_eq!(a["policyEventTrigger"], json!(["AN_GW_CHANGE"]));
    assert_eq!(names(&a["chargingRuleRemoved"]), ["web"]);
    assert_eq!(s.rules(), Vec::<String>::new());
    // Rating group 10 has no Trigger-Type for a serving node change: the rule change alone.
    assert_eq!(
        a["creditReason"],
        json!([{ "ratingGroup": 10, "ruleChange": "RULE_CREDIT_CHANGE_REMOVED_WITH_QUOTA", "chargingRuleName": "web" }])
    );
    s.charged_is_reported(50_000);
}

#[test]
fn an_event_that_matches_nothing_sends_nothing_and_bad_reports_are_refused() {
    if !grpcurl_or_skip("bearer_neither") {
        return;
    }
    let s = Setup::start("bearer-neither");
    // TFT_CHANGE: no event trigger of the session, no Trigger-Type.
    let (a, sent) = s.event(
        &["TFT_CHANGE"],
        json!({ "tft_packet_filter": ["permit out 6 from any 443 to assigned"] }),
    );
    assert_eq!(sent, (0, 0), "{a}");
    assert_eq!(a, json!({ "sessionId": s.session_id }));

    let before = s.counts();
    let refused = |body: Value| s.report(body).unwrap_err();
    assert_eq!(
        refused(json!({ "session_id": "gw.test;1;99", "event_trigger": ["RAT_CHANGE"] })),
        (
            "NotFound".to_string(),
            "no session gw.test;1;99".to_string()
        )
    );
    let sid = s.session_id.clone();
    for (body, message) in [
        (
            json!({ "session_id": sid }),
            "event_trigger: at least one event is required",
        ),
        (
            json!({ "session_id": sid, "event_trigger": [2, 999] }),
            "event_trigger[1]: 999 is not an Event-Trigger value",
        ),
        (
            json!({ "session_id": sid, "event_trigger": ["RAT_CHANGE", "RAT_CHANGE"] }),
            "event_trigger[1]: RAT_CHANGE is listed twice",
        ),
        (
            json!({ "session_id": sid, "event_trigger": ["USAGE_REPORT"] }),
            "event_trigger[0]: USAGE_REPORT is not a bearer event",
        ),
        (
            json!({ "session_id": sid, "event_trigger": ["PLMN_CHANGE"], "plmn_id": "1x" }),
            "plmn_id: '1x' is not an MCC and MNC of 5 or 6 digits",
        ),
        (
            json!({ "session_id": "", "event_trigger": ["RAT_CHANGE"] }),
            "session_id: required",
        ),
    ] {
        assert_eq!(
            refused(body.clone()),
            ("InvalidArgument".to_string(), message.to_string()),
            "{body}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.counts(), before, "a refused report sends nothing");
    assert_eq!(s.rules(), ["web"]);
    s.charged_is_reported(1_000);
}
