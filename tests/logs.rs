//! `--log-format json`: every line a command writes on stderr is one JSON object, and `weir run`
//! writes one line per gateway event with the subscriber and the reason as fields.

mod common;
#[path = "support/netns_gateway.rs"]
mod gateway;
#[path = "support/grpc.rs"]
mod grpc;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every line parsed; the test fails on the first that is not a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    assert!(!text.trim().is_empty(), "no log lines");
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\nall:\n{text}"));
            assert!(v.is_object(), "not an object: {l}");
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v.get(key).is_some(), "no {key}: {l}");
            }
            v
        })
        .collect()
}

#[test]
fn policy_engine_logs_one_json_object_a_line() {
    let dir = std::env::temp_dir().join(format!("weir-logs-pe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("pe.toml");
    std::fs::write(
        &config,
        r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
token_key = "000102030405060708090a0b0c0d0e0f"
predefined_rules = ["web"]
[redirect_rule]
name = "recharge-redirect"
precedence = 1
redirect = { support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }
flow = [{ description = "permit out ip from any to assigned" }]
[[plan]]
name = "standard"
predefined = ["web"]
"#,
    )
    .unwrap();
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--log-format", "json", "policy-engine", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    // Ready once it says where it listens (on stdout, the command's own output).
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("weir policy-engine: listening on"),
        "{line:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.join("stderr")).unwrap();
    let lines = json_lines(&text);
    let listening = lines
        .iter()
        .find(|l| l["message"] == "policy engine listening")
        .unwrap_or_else(|| panic!("no listening line in\n{text}"));
    // Fields at the top level, typed as logged.
    assert_eq!(listening["addr"], line.trim().rsplit(' ').next().unwrap());
    assert_eq!(listening["tls"], false);
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "weir::peers::policy_engine");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gateway_events_are_one_json_line_each_with_subscriber_and_reason() {
    let test = "gateway_events_are_one_json_line_each_with_subscriber_and_reason";
    if !common::root_or_skip(test) || !grpc::grpcurl_or_skip(test) {
        return;
    }
    let mut gw = gateway::Gateway::start("logs", &["--log-format", "json"]);
    let sub = "imsi-001010000000007";
    let created: Value = serde_json::from_str(&gw.grpc(
        "CreateSession",
        &json!({
            "subscriber_id": sub,
            "framed_ip_address": "10.45.0.7",
            "charging_rule_install": [{ "charging_rule_name": ["web", "recharge-redirect"] }]
        }),
    ))
    .unwrap();
    let session = created["sessionId"].as_str().unwrap().to_string();
    // A rule that cannot be installed: reported, and logged as a rule failure.
    gw.grpc(
        "ReAuth",
        &json!({
            "session_id": session,
            "charging_rule_install": [{ "charging_rule_name": ["no-such-rule"] }]
        }),
    );
    gw.grpc(
        "ReAuth",
        &json!({
            "session_id": session,
            "charging_rule_remove": [{ "charging_rule_name": ["recharge-redirect"] }]
        }),
    );
    gw.grpc(
        "DeleteSession",
        &json!({ "session": { "subscriber_id": sub } }),
    );
    // The event log runs beside the manager: give it a moment before stopping.
    std::thread::sleep(Duration::from_millis(300));
    assert!(gw.stop(), "weir run exits cleanly: {}", gw.stderr());
    let text = gw.stderr();
    let lines = json_lines(&text);
    let events: Vec<(String, String, String)> = lines
        .iter()
        .filter(|l| l.get("event").is_some())
        .map(|l| {
            assert_eq!(l["subscriber"], sub, "{l}");
            assert_eq!(l["session"], session.as_str(), "{l}");
            (
                l["event"].as_str().unwrap().to_string(),
                l["reason"].as_str().unwrap_or("").to_string(),
                l["level"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("session_up", "", "INFO"),
        ("redirect_applied", "REDIRECT_CAUSE_PCC_RULE", "INFO"),
        ("rule_failure", "UNKNOWN_RULE_NAME", "WARN"),
        (
            "redirect_lifted",
            "REDIRECT_LIFT_CAUSE_POLICY_ENGINE",
            "INFO",
        ),
        ("session_down", "DIAMETER_ADMINISTRATIVE", "INFO"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(events, want, "event lines in\n{text}");
    let failure = lines.iter().find(|l| l["event"] == "rule_failure").unwrap();
    assert_eq!(failure["rules"], "no-such-rule");
}
