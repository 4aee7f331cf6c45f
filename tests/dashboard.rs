//! The Grafana dashboard (packaging/grafana/weir.json) queries only metrics that exist: a real
//! `weir run` and a real `weir policy-engine` are scraped, and every metric name in every
//! panel's query must have a sample there. And `scripts/dashboard-snapshot.sh` over a live lab
//! (Prometheus scraping it, Chromium drawing the panels) draws every panel with data.

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

/// The lab and its state, removed on drop even when the script did not get to do it.
struct LabGuard(Vec<(String, String)>, std::path::PathBuf);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = common::run(
            std::process::Command::new(common::repo().join("scripts/lab.sh"))
                .arg("down")
                .envs(self.0.iter().map(|(k, v)| (k, v))),
            Duration::from_secs(30),
        );
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// The dashboard's panels that draw data (rows only group them), in order.
fn drawn_panels(dashboard: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            if p["type"] != "row" {
                out.push(
                    p["title"]
                        .as_str()
                        .expect("a panel has a title")
                        .to_string(),
                );
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// scripts/dashboard-snapshot.sh over a live lab: a real Prometheus scrapes the lab's gateway and
/// policy engine while traffic runs, evaluates every panel's query, and headless Chromium draws
/// them; every panel of the dashboard must have been drawn with at least one series, so a query
/// that returns nothing over the lab fails here.
#[test]
fn every_panel_of_the_dashboard_draws_data_over_the_lab() {
    let test = "every_panel_of_the_dashboard_draws_data_over_the_lab";
    if !common::root_or_skip(test) || !grpc::grpcurl_or_skip(test) {
        return;
    }
    for tool in ["prometheus", "chromium"] {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "{test}: {tool} is missing; scripts/install-deps.sh installs it"
        );
    }
    let prefix = format!("w{}dash-", std::process::id() % 100_000);
    let state = std::env::temp_dir().join(format!("weir-e2e-{}", prefix.trim_end_matches('-')));
    let _ = std::fs::remove_dir_all(&state);
    let env = vec![
        ("WEIR_LAB_PREFIX".to_string(), prefix.clone()),
        ("WEIR_LAB_STATE".to_string(), state.display().to_string()),
        (
            "WEIR_BIN".to_string(),
            env!("CARGO_BIN_EXE_weir").to_string(),
        ),
    ];
    let out_dir = std::env::temp_dir().join(format!("weir-{prefix}out"));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let _guard = LabGuard(env.clone(), state.clone());
    let (png, dom) = (out_dir.join("dashboard.png"), out_dir.join("dom.html"));
    let out = common::run(
        std::process::Command::new(common::repo().join("scripts/dashboard-snapshot.sh"))
            .arg(&png)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("WEIR_DASH_SECONDS", "20")
            .env("WEIR_DASH_DOM", &dom),
        Duration::from_secs(90),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);

    let picture = std::fs::read(&png).unwrap();
    assert_eq!(&picture[..8], b"\x89PNG\r\n\x1a\n", "{stderr}");
    assert!(picture.len() > 20_000, "{} bytes", picture.len());

    // Each drawn panel is `<div class="panel" data-panel="TITLE" data-series="N">`.
    let dom = std::fs::read_to_string(&dom).unwrap();
    let drawn: Vec<(String, usize)> = dom
        .split("data-panel=\"")
        .skip(1)
        .map(|rest| {
            let (title, rest) = rest.split_once('"').unwrap();
            let n = rest
                .split_once("data-series=\"")
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(n, _)| n.parse::<usize>().unwrap())
                .unwrap_or_else(|| panic!("{title}: no data-series"));
            (title.to_string(), n)
        })
        .collect();
    let titles: Vec<&String> = drawn.iter().map(|(t, _)| t).collect();
    let wanted = drawn_panels(&dashboard());
    assert_eq!(titles, wanted.iter().collect::<Vec<_>>(), "{dom}");
    assert!(wanted.len() >= 18, "{wanted:?}");
    let empty: Vec<&String> = drawn
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(t, _)| t)
        .collect();
    assert!(
        empty.is_empty(),
        "panels with no series over the lab: {empty:?}\n{stderr}"
    );
    assert!(!dom.contains(">No data<"), "{dom}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
