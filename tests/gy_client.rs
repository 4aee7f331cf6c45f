//! The gateway's Gy client against a real `weir policy-engine` (which serves the charging
//! system) on loopback with a real SQLite file: credit events from the data path become
//! CCR-I/U, the answers grants in the session; the charging system is killed in the middle and
//! started again, then the gateway restarts with reports still in its journal — and the
//! octets the charging system debited equal, exactly, the octets the gateway reported.
//!
//! The events are sent into the control plane as a worker sends them (the data path's own
//! counting is covered by `tests/online_charging.rs`). grpcurl reads the charging system's
//! containers (`weir.v1.Admin/ListCreditContainers`); without it the test says so and stops
//! (under CI, `CI=true`, that is a failure).

mod common;
#[path = "support/grpc.rs"]
mod grpc;

use grpc::grpcurl_or_skip;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::packet::{Event, Octets, ReportingReason, UsedUnits};
use weir::policy::{Config, CreditGrant, PolicySnapshot, SessionId};
use weir::time::Timestamp;

const SUB: &str = "imsi-001010000000011";
const BUCKET: i64 = 10_000_000;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `weir policy-engine`; killed on drop.
struct Engine {
    child: Child,
    addr: String,
}

impl Engine {
    fn start(config: &Path) -> Engine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["policy-engine", "--config"])
            .arg(config)
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
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("weir policy-engine says where it listens");
        Engine { child, addr }
    }

    fn call(&self, method: &str, body: Value) -> Value {
        let out = common::run(
            Command::new("grpcurl").arg("-plaintext").args([
                "-d",
                &body.to_string(),
                &self.addr,
                method,
            ]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// (amount, reserved) of the subscriber's octet bucket.
    fn bucket(&self) -> (i64, i64) {
        let list = self.call(
            "weir.v1.Admin/ListCreditContainers",
            json!({ "subscriber_id": SUB }),
        );
        let int = |v: &Value| match v {
            Value::String(s) => s.parse::<i64>().unwrap(),
            Value::Number(n) => n.as_i64().unwrap(),
            _ => 0,
        };
        let c = list["containers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["unit"] == "CREDIT_UNIT_OCTETS"))
            .cloned()
            .unwrap_or_else(|| panic!("no bucket: {list}"));
        (int(&c["amount"]), int(&c["reserved"]))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn engine_config(port: u16) -> String {
    format!(
        r#"listen = "127.0.0.1:{port}"
database = "pe.sqlite"
origin_host = "ocs.test"
token_key = "000102030405060708090a0b0c0d0e0f"
predefined_rules = ["web"]

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = {{ support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[plan]]
name = "standard"
predefined = ["web"]
rate = [{{ rating_group = 10, per_mb = 2 }}]

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

fn gateway_config(port: u16, journal: &Path) -> Config {
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

[[session]]
subscriber = "{SUB}"
ipv4 = "10.45.0.2"
predefined = ["web"]

[control]
listen = ""
charging_system = "http://127.0.0.1:{port}"

[credit]
request_timeout = 1
attempts = 2
retry_backoff = 0
retry_max_backoff = 1
failure_handling = "continue"
continue_octets = 5000000
journal = "{}"
"#,
        journal.display()
    );
    Config::from_toml_str(&text, "gateway").unwrap_or_else(|e| panic!("{:#?}", e.0))
}

fn start_gateway(config: &Config) -> weir::control::Control {
    let policy = Arc::new(arc_swap::ArcSwap::from_pointee(PolicySnapshot::build(
        config, 0,
    )));
    weir::control::start(config, policy, weir::control::Tallies::default()).expect("control starts")
}

fn credits(c: &weir::control::Control) -> Vec<CreditGrant> {
    let m = c.manager().clone();
    c.block_on(async move {
        m.call(|s, _| s.get(SessionId(0)).map(|e| e.config.credits.clone()))
            .await
            .unwrap()
            .unwrap_or_default()
    })
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(c: &weir::control::Control, grant: u64, reason: ReportingReason, up: u64, down: u64) {
    c.events()
        .send(Event::CreditReport {
            session: SessionId(0),
            rating_group: 10,
            service_identifier: None,
            grant,
            reason,
            used: UsedUnits {
                octets: Octets {
                    uplink: up,
                    downlink: down,
                },
                time: 0,
            },
            at: Timestamp::now(),
        })
        .unwrap();
}

#[test]
fn reports_survive_an_outage_and_a_restart_and_are_debited_exactly_once() {
    if !grpcurl_or_skip("gy_outage") {
        return;
    }
    let dir = Dir(std::env::temp_dir().join(format!("weir-gy-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let port = free_port();
    let pe_toml = dir.0.join("pe.toml");
    std::fs::write(&pe_toml, engine_config(port)).unwrap();
    let journal = dir.0.join("gy.journal");
    let pe = Engine::start(&pe_toml);
    pe.call(
        "weir.v1.Admin/AddCreditContainer",
        json!({ "subscriber_id": SUB, "unit": "CREDIT_UNIT_OCTETS", "amount": BUCKET }),
    );
    let config = gateway_config(port, &journal);
    let gw = start_gateway(&config);

    // The first packet of rating group 10: CCR-I, and the 1 MB grant in the session.
    gw.events()
        .send(Event::CreditRequest {
            session: SessionId(0),
            rating_group: 10,
            service_identifier: None,
            at: Timestamp::now(),
        })
        .unwrap();
    wait_until("the CCA-I grant", Duration::from_secs(10), || {
        credits(&gw).first().map(|g| (g.grant, g.granted.total)) == Some((1, Some(1_000_000)))
    });
    assert_eq!(pe.bucket(), (BUCKET, 1_000_000));
    assert_eq!(credits(&gw)[0].volume_threshold, Some(200_000));

    // A threshold report: CCR-U with 300 000 used, debited; a new grant (number 2).
    report(&gw, 1, ReportingReason::Threshold, 100_000, 200_000);
    wait_until("the CCA-U grant", Duration::from_secs(10), || {
        credits(&gw)[0].grant == 2
    });
    assert_eq!(pe.bucket(), (BUCKET - 300_000, 1_000_000));

    // The charging system dies: the report is journaled, CONTINUE grants 5 MB locally.
    drop(pe);
    report(&gw, 2, ReportingReason::QuotaExhausted, 50_000, 200_000);
    wait_until("the local grant", Duration::from_secs(20), || {
        credits(&gw)[0].granted.total == Some(5_000_000)
    });
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("S ")).count(),
        3,
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("A ")).count(),
        2,
        "{text}"
    );
    // Still down: a second report queues behind the first.
    report(&gw, 3, ReportingReason::QuotaExhausted, 0, 100_000);
    std::thread::sleep(Duration::from_secs(3));

    // Back: both owed reports go, in order, each debited once.
    let pe = Engine::start(&pe_toml);
    wait_until("the owed reports", Duration::from_secs(20), || {
        pe.bucket().0 == BUCKET - 650_000
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pe.bucket().0, BUCKET - 650_000);

    // Down again; one more report is owed when the gateway stops (its CCR-T too).
    drop(pe);
    report(&gw, 5, ReportingReason::Threshold, 70_000, 0);
    std::thread::sleep(Duration::from_secs(3));
    gw.stop(Duration::from_secs(3));
    let owed = std::fs::read_to_string(&journal).unwrap();
    assert!(owed.lines().any(|l| l.starts_with("S ")), "{owed}");

    // The gateway starts again with its journal: the report and the CCR-T go once the
    // charging system is back; the reservation is released, nothing counted twice.
    let pe = Engine::start(&pe_toml);
    let gw = start_gateway(&config);
    wait_until("the journal's reports", Duration::from_secs(20), || {
        pe.bucket() == (BUCKET - 720_000, 0)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pe.bucket(), (BUCKET - 720_000, 0));
    gw.stop(Duration::from_secs(3));
    let (_, owed) = weir::control::gy::journal::Journal::open(&journal).unwrap();
    assert!(owed.is_empty(), "{owed:?}");
}

/// grpcurl against the gateway's weir.v1.Gateway: the answer, or the status code and message.
fn gateway_call(addr: &str, method: &str, body: Value) -> Result<Value, (String, String)> {
    let out = common::run(
        Command::new("grpcurl")
            .arg("-plaintext")
            .args(["-d", &body.to_string(), addr, method]),
        Duration::from_secs(30),
    );
    if out.status.success() {
        return Ok(serde_json::from_slice(&out.stdout).unwrap());
    }
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let field = |name: &str| {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    Err((field("Code:"), field("Message:")))
}

#[test]
fn a_credit_reauth_sends_one_ccr_u_for_the_named_rating_groups() {
    if !grpcurl_or_skip("gy_rar") {
        return;
    }
    let dir = Dir(std::env::temp_dir().join(format!("weir-gy-rar-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let port = free_port();
    let pe_toml = dir.0.join("pe.toml");
    std::fs::write(&pe_toml, engine_config(port)).unwrap();
    let pe = Engine::start(&pe_toml);
    pe.call(
        "weir.v1.Admin/AddCreditContainer",
        json!({ "subscriber_id": SUB, "unit": "CREDIT_UNIT_OCTETS", "amount": BUCKET }),
    );
    let mut config = gateway_config(port, &dir.0.join("gy.journal"));
    config.control.listen = Some("127.0.0.1:0".parse().unwrap());
    let gw = start_gateway(&config);
    let addr = gw.listen().unwrap().unwrap().to_string();
    let m = gw.manager().clone();
    let session_id = gw.block_on(async move {
        m.call(|s, _| s.get(SessionId(0)).unwrap().session_id.clone())
            .await
            .unwrap()
    });
    gw.events()
        .send(Event::CreditRequest {
            session: SessionId(0),
            rating_group: 10,
            service_identifier: None,
            at: Timestamp::now(),
        })
        .unwrap();
    wait_until("the CCA-I grant", Duration::from_secs(10), || {
        credits(&gw).first().map(|g| g.grant) == Some(1)
    });

    let rar = |body: Value| gateway_call(&addr, "weir.v1.Gateway/CreditReAuth", body);
    // Answered at once, then the CCR-U (number 1): its grant is number 2, nothing debited.
    let raa = rar(json!({ "session_id": session_id, "rating_group": [10] })).unwrap();
    assert_eq!(raa["resultCode"], "DIAMETER_LIMITED_SUCCESS", "{raa}");
    assert_eq!(raa["sessionId"], json!(session_id));
    wait_until("the re-authorized grant", Duration::from_secs(10), || {
        credits(&gw)[0].grant == 2
    });
    assert_eq!(pe.bucket(), (BUCKET, 1_000_000));
    // No rating group named: every one of the session (number 2, grant 3).
    rar(json!({ "session_id": session_id })).unwrap();
    wait_until(
        "the second re-authorization",
        Duration::from_secs(10),
        || credits(&gw)[0].grant == 3,
    );

    assert_eq!(
        rar(json!({ "session_id": "nobody;1" })).unwrap_err(),
        ("NotFound".to_string(), "no session nobody;1".to_string())
    );
    let (code, message) = rar(json!({ "session_id": "" })).unwrap_err();
    assert_eq!(code, "InvalidArgument");
    assert!(message.starts_with("session_id: "), "{message}");
    let (code, message) =
        rar(json!({ "session_id": session_id, "rating_group": [10, 10] })).unwrap_err();
    assert_eq!(code, "InvalidArgument");
    assert_eq!(message, "rating_group[1]: rating group 10 is listed twice");
    let (code, message) =
        rar(json!({ "session_id": session_id, "rating_group": [20] })).unwrap_err();
    assert_eq!(code, "InvalidArgument");
    assert_eq!(
        message,
        format!("rating_group[0]: rating group 20 has no credit in session {session_id}")
    );
    // Nothing of those changed the grant.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(credits(&gw)[0].grant, 3);
    gw.stop(Duration::from_secs(3));
    // The CCR-T released the reservation and debited nothing.
    assert_eq!(pe.bucket(), (BUCKET, 0));
}

#[test]
fn under_terminate_an_unreachable_charging_system_ends_the_session_and_keeps_the_report() {
    let dir = Dir(std::env::temp_dir().join(format!("weir-gy-term-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let journal = dir.0.join("gy.journal");
    // Nothing listens on the port.
    let mut config = gateway_config(free_port(), &journal);
    config.control.credit.failure_handling = weir::policy::FailureHandling::Terminate;
    let gw = start_gateway(&config);
    report(&gw, 0, ReportingReason::QuotaExhausted, 1_000, 2_000);
    let m = gw.manager().clone();
    wait_until("the session to end", Duration::from_secs(20), || {
        let m = m.clone();
        gw.block_on(async move { m.call(|s, _| s.get(SessionId(0)).is_none()).await.unwrap() })
    });
    gw.stop(Duration::from_secs(1));
    // The report (CCR-I, number 0, 3 000 octets) is still owed, and the CCR-T behind it
    // (number 1, DIAMETER_LINK_BROKEN), which releases the reservation once delivered.
    let (_, owed) = weir::control::gy::journal::Journal::open(&journal).unwrap();
    assert_eq!(owed.len(), 2, "{owed:?}");
    assert_eq!(owed[0].cc_request_number, 0);
    let used = &owed[0].multiple_services_credit_control[0].used_service_unit[0];
    assert_eq!(used.units.as_ref().unwrap().cc_total_octets, Some(3_000));
    assert_eq!(
        (
            owed[1].cc_request_type,
            owed[1].cc_request_number,
            owed[1].termination_cause
        ),
        (
            weir::proto::v1::CcRequestType::TerminationRequest as i32,
            1,
            weir::proto::v1::TerminationCause::DiameterLinkBroken as i32
        )
    );
}
