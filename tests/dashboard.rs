//! The Grafana dashboard (packaging/grafana/weir.json) queries only metrics that exist: a real
//! `weir run` and a real `weir policy-engine` are scraped, and every metric name in every
//! panel's query must have a sample there.

mod common;
#[path = "support/netns_gateway.rs"]
mod gateway;
#[path = "support/grpc.rs"]
mod grpc;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn dashboard() -> Value {
    let path = common::repo().join("packaging/grafana/weir.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("the dashboard is JSON")
}

/// Every query of every panel (rows hold panels too when collapsed), and the variables'.
fn queries(dashboard: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(t["expr"].as_str().expect("a query has an expr").to_string());
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// The `weir_…` metric names a query reads.
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    while let Some(at) = query[i..].find("weir_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.push(query[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Names with at least one sample in a Prometheus text exposition.
fn sampled(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_panel_has_queries_and_they_name_weir_metrics() {
    let d = dashboard();
    assert_eq!(d["uid"], "weir-gateway");
    let qs = queries(&d);
    assert!(qs.len() >= 20, "{} queries", qs.len());
    for q in &qs {
        assert!(
            !metric_names(q).is_empty(),
            "a query that reads no weir metric: {q}"
        );
    }
    assert_eq!(
        metric_names("sum(rate(weir_a_total{x=\"y\"}[1m])) / weir_b + noweir_c"),
        ["weir_a_total", "weir_b"]
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_metric_the_dashboard_queries_exists_on_a_running_gateway() {
    let test = "every_metric_the_dashboard_queries_exists_on_a_running_gateway";
    if !common::root_or_skip(test) || !grpc::grpcurl_or_skip(test) {
        return;
    }
    let gw = gateway::Gateway::start("dash", &[]);
    // The policy engine beside it in the namespace, with its metrics endpoint on.
    let dir = std::env::temp_dir().join(format!("weir-dash-pe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("pe.toml");
    std::fs::write(
        &config,
        r#"listen = "127.0.0.1:50051"
metrics_listen = "127.0.0.1:9465"
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
    let _pe = Killed(
        gw.exec(&[env!("CARGO_BIN_EXE_weir"), "policy-engine", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Requests on both control planes, so their per-RPC histograms have samples.
    gw.grpc(
        "CreateSession",
        &json!({
            "subscriber_id": "imsi-001010000000007",
            "framed_ip_address": "10.45.0.7",
            "charging_rule_install": [{ "charging_rule_name": ["web", "recharge-redirect"] }]
        }),
    );
    gw.grpc("GetStats", &json!({}));
    let deadline = Instant::now() + Duration::from_secs(20);
    let pe_metrics = loop {
        let _ = gw
            .exec(&[
                "grpcurl",
                "-plaintext",
                "-d",
                r#"{"subscriber_id": "imsi-001010000000009"}"#,
                "127.0.0.1:50051",
                "weir.v1.Admin/GetAccount",
            ])
            .output();
        let out = gw
            .exec(&[
                "curl",
                "-sf",
                "--max-time",
                "2",
                "http://127.0.0.1:9465/metrics",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("weir_policy_engine_requests_total{") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the policy engine's /metrics: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let gw_metrics = gw.metrics();
    let mut have = sampled(&gw_metrics);
    have.extend(sampled(&pe_metrics));

    let wanted: BTreeSet<String> = queries(&dashboard())
        .iter()
        .flat_map(|q| metric_names(q))
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|m| !have.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics that do not exist: {missing:?}\nthe gateway's:\n{gw_metrics}\nthe policy engine's:\n{pe_metrics}"
    );
    // The check above reads real names: a misspelt one is caught.
    assert!(!have.contains("weir_frames_forwarded"));
    assert!(wanted.len() >= 20, "{wanted:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
