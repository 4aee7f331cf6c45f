//! What the online-charging lab tests share (tests/lab_charging.rs): the lab with
//! `WEIR_LAB_CHARGING=1`, grpcurl from a gateway namespace to the policy engine and charging
//! system or to a gateway, the subscribers' downloads with curl, and the gateways' meters.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use super::common::{netns, ok, root_or_skip, run, Lab};
use super::grpc::{call, grpcurl_or_skip, int};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The policy engine and charging system on the lab's control network.
pub const PE: &str = "192.0.2.1:50051";
/// The size of each download.
pub const CHUNK: u64 = 200_000;

pub fn say(line: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

pub fn ready(test: &str) -> bool {
    root_or_skip(test) && grpcurl_or_skip(test)
}

/// The online-charging lab, with a billing delay no test waits out.
pub fn charging_lab(name: &str, env: &[(&str, &str)]) -> Lab {
    let mut all = vec![
        ("WEIR_LAB_CHARGING", "1"),
        ("WEIR_LAB_BILLING_DELAY", "600"),
    ];
    all.extend_from_slice(env);
    let lab = Lab::up(name, &all);
    // Every download is this file, of known size.
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(lab.state.join("www/chunk.bin"), chunk).unwrap();
    lab
}

/// A gRPC call made with grpcurl from the gateway namespace `gw`, where the control network is.
pub fn gcall(lab: &Lab, gw: &str, addr: &str, method: &str, body: Value) -> Value {
    let ns = lab.ns(gw);
    call(&["ip", "netns", "exec", &ns], addr, method, &body)
}

pub fn admin(lab: &Lab, method: &str, body: Value) -> Value {
    gcall(lab, "gw", PE, &format!("weir.v1.Admin/{method}"), body)
}

/// Gives `sub` a data bucket of `octets` and a money container (at balance 0), in that order.
pub fn bucket_and_no_money(lab: &Lab, sub: &str, octets: i64) {
    admin(
        lab,
        "AddCreditContainer",
        json!({ "subscriber_id": sub, "unit": "CREDIT_UNIT_OCTETS", "amount": octets }),
    );
    admin(
        lab,
        "AddCreditContainer",
        json!({ "subscriber_id": sub, "unit": "CREDIT_UNIT_MONEY" }),
    );
}

/// (amount, reserved) of the account's bucket and of its money, as the charging system holds
/// them.
pub fn containers(lab: &Lab, sub: &str) -> ((i64, i64), (i64, i64)) {
    let c = admin(lab, "ListCreditContainers", json!({ "subscriber_id": sub }));
    let of = |unit: &str| {
        c["containers"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["unit"] == unit))
            .map(|x| (int(&x["amount"]), int(&x["reserved"])))
            .unwrap_or_else(|| panic!("no {unit} container: {c}"))
    };
    (of("CREDIT_UNIT_OCTETS"), of("CREDIT_UNIT_MONEY"))
}

/// One request with curl in `ns`: status (0 without an answer), octets of body, Location.
pub fn fetch(ns: &str, url: &str) -> (u16, u64, String) {
    let out = run(
        &mut netns(
            ns,
            &[
                "curl",
                "-4",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download} %{redirect_url}",
                "--max-time",
                "8",
                url,
            ],
        ),
        Duration::from_secs(12),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.splitn(3, ' ');
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let size = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, size, parts.next().unwrap_or("").trim().to_string())
}

/// curl -i in `ns`: status, the Location header, the body.
pub fn exchange(ns: &str, extra: &[&str], url: &str) -> (u16, Option<String>, String) {
    let mut args = vec!["curl", "-4", "-sS", "-i", "--max-time", "10"];
    args.extend_from_slice(extra);
    args.push(url);
    let text = ok(&mut netns(ns, &args), Duration::from_secs(15));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    (status, location, body.to_string())
}

/// `GET <path>` of the report endpoint of the gateway in `gw` (fresh numbers from every worker).
fn report_endpoint(lab: &Lab, gw: &str, path: &str) -> String {
    let url = format!("http://127.0.0.1:9464{path}");
    ok(
        &mut netns(&lab.ns(gw), &["curl", "-sS", "--max-time", "5", &url]),
        Duration::from_secs(10),
    )
}

/// The 302s the gateway in `gw` has answered (weir_redirect_answered_total, every worker).
pub fn redirects_answered(lab: &Lab, gw: &str) -> u64 {
    let text = report_endpoint(lab, gw, "/metrics");
    text.lines()
        .filter(|l| l.starts_with("weir_redirect_answered_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Octets of `rating_group` (both directions) the gateway metered for `sub`, once two reads a
/// publication apart agree (the workers publish every second; the traffic has stopped).
pub fn metered(lab: &Lab, gw: &str, addr: &str, sub: &str, rating_group: u32) -> i64 {
    let read = || {
        let s = gcall(
            lab,
            gw,
            addr,
            "weir.v1.Gateway/GetSession",
            json!({ "session": { "subscriber_id": sub } }),
        );
        s["ratingGroupUsage"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|u| u["ratingGroup"] == rating_group)
                    .map(|u| int(&u["usage"]["uplinkOctets"]) + int(&u["usage"]["downlinkOctets"]))
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(1200));
        let now = read();
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{sub}'s meter of rating group {rating_group} never settled ({last} then {now})"
        );
        last = now;
    }
}

/// Waits up to `limit` for `what` to hold; the message says what did not happen.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The gateway's usage report (`GET /report` in `gw`: fresh numbers from every worker), its
/// rows per session and rating group.
pub fn report_rows(lab: &Lab, gw: &str) -> Vec<Value> {
    let text = report_endpoint(lab, gw, "/report");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("report: {e}: {text}"));
    let rows = if v["rating_groups"].is_array() {
        &v["rating_groups"]
    } else {
        &v["report"]["rating_groups"]
    };
    rows.as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no rating_groups in {v}"))
}

/// The gateway's number of `sub`'s session (the report's, kept after the session ends).
pub fn report_session(lab: &Lab, gw: &str, sub: &str, rating_group: u32) -> u64 {
    report_rows(lab, gw)
        .iter()
        .find(|r| r["subscriber"] == sub && r["rating_group"] == rating_group)
        .and_then(|r| r["session_id"].as_u64())
        .unwrap_or_else(|| panic!("no report row of {sub}"))
}

/// Octets of `rating_group` (both directions) the gateway metered for session `session`.
pub fn report_meter(lab: &Lab, gw: &str, session: u64, rating_group: u32) -> i64 {
    report_rows(lab, gw)
        .iter()
        .filter(|r| r["session_id"] == session && r["rating_group"] == rating_group)
        .map(|r| {
            r["uplink_bytes"].as_i64().unwrap_or(0) + r["downlink_bytes"].as_i64().unwrap_or(0)
        })
        .sum()
}
