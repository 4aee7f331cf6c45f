//! The whole recharge loop in the lab with sessions from the policy engine (`scripts/lab.sh up`,
//! `examples/lab-pcrf.toml`): `ue2`'s first packet brings its session from `weir
//! policy-engine` with the redirect; it browses (302 to the portal), pays (the portal credits the
//! account through weir.v1.Admin), reaches the success URL, the gateway reports the success
//! (CCR-U), the policy engine removes the redirect, and the next request gets the real page — all
//! while the payment is still pending in billing. With the watch turned off (no `success_url` in
//! the gateway's configuration) the subscriber stays redirected until the billing delay ends and
//! the policy engine's RAR lifts it. Told with curl, counting every redirect, and once with
//! headless Chromium. Also: grpcurl against `weir run`'s weir.v1.Gateway in the lab, and the
//! README's lab commands run as written.
//!
//! Needs root and grpcurl (each test says so and stops without them; under CI a missing one is a
//! failure). A lab configuration that `weir check-config` rejects fails every test.

mod common;
#[path = "support/grpc.rs"]
mod grpc;

use common::{curl, netns, ok, repo, root_or_skip, run, Lab};
use grpc::{call, grpcurl, grpcurl_or_skip, int};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const SITE: &str = "http://site.example/";
const UE_SUBSCRIBER: &str = "imsi-001010000000001";
const UE2_SUBSCRIBER: &str = "imsi-001010000000002";
const LOCATION: &str =
    "http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2F&sub=imsi-001010000000002";
const PAY: &str = "http://portal.example/recharge/pay";
const FORM: &str = "sub=imsi-001010000000002&orig=http%3A%2F%2Fsite.example%2F&amount=10";
/// weir.v1.Gateway of `weir run`, and the policy engine, on the lab's control network.
const GATEWAY: &str = "192.0.2.2:50052";
const POLICY_ENGINE: &str = "192.0.2.1:50051";
/// The billing delay of these labs, in seconds.
const DELAY: u64 = 5;
const DELAY_TEXT: &str = "5";

/// The tests that count redirects against time take the machine alone (a write lock); the others
/// share it. A report's lift takes milliseconds, but six labs at once on a small machine can
/// stretch that past a browser's click.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

fn say(line: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// That `weir run` takes examples/lab-pcrf.toml: a rejected lab file fails the test, never skips it.
fn lab_config_accepted(test: &str) -> bool {
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("check-config")
            .arg(repo().join("examples/lab-pcrf.toml")),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{test}: examples/lab-pcrf.toml is rejected:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

fn ready(test: &str) -> bool {
    root_or_skip(test) && grpcurl_or_skip(test) && lab_config_accepted(test)
}

/// The default lab (sessions from the policy engine), billing delay `DELAY`.
fn pcrf_lab(name: &str, env: &[(&str, &str)]) -> Lab {
    let mut all = vec![("WEIR_LAB_BILLING_DELAY", DELAY_TEXT)];
    all.extend_from_slice(env);
    Lab::up(name, &all)
}

/// grpcurl inside the lab's gateway namespace, where the control network is.
fn in_gw(lab: &Lab) -> [String; 4] {
    ["ip".into(), "netns".into(), "exec".into(), lab.ns("gw")]
}

fn gcall(lab: &Lab, addr: &str, method: &str, body: Value) -> Value {
    let p = in_gw(lab);
    let prefix: Vec<&str> = p.iter().map(String::as_str).collect();
    call(&prefix, addr, method, &body)
}

/// The status of one request for the site (0 when it got no answer within 3 s).
fn site_status(ns: &str) -> u16 {
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
                "%{http_code}",
                "--max-time",
                "3",
                SITE,
            ],
        ),
        Duration::from_secs(6),
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Requests for the site, one every 200 ms, until `until` (or, with `stop_at_page`, the first
/// real page): how many got a 302, how many the page, how many anything else.
#[derive(Debug, Default)]
struct Count {
    redirects: u32,
    pages: u32,
    other: Vec<u16>,
    first_page: Option<Instant>,
}

fn count(ns: &str, until: Instant, stop_at_page: bool) -> Count {
    let mut c = Count::default();
    while Instant::now() < until {
        match site_status(ns) {
            302 => c.redirects += 1,
            200 => {
                c.pages += 1;
                c.first_page.get_or_insert_with(Instant::now);
                if stop_at_page {
                    return c;
                }
            }
            s => c.other.push(s),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    c
}

fn site_page(lab: &Lab) -> Vec<u8> {
    std::fs::read(lab.state.join("www/index.html")).expect("the lab's page")
}

fn live_report(lab: &Lab) -> Value {
    let text = ok(
        &mut netns(
            &lab.ns("gw"),
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "http://127.0.0.1:9464/report",
            ],
        ),
        Duration::from_secs(10),
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report: {e}: {text}"))
}

fn account(lab: &Lab, sub: &str) -> Value {
    gcall(
        lab,
        POLICY_ENGINE,
        "weir.v1.Admin/GetAccount",
        json!({ "subscriber_id": sub }),
    )
}

/// The policy engine's sessions of `sub`.
fn pe_sessions(lab: &Lab, sub: &str) -> Vec<Value> {
    let r = gcall(
        lab,
        POLICY_ENGINE,
        "weir.v1.Admin/ListSessions",
        json!({ "subscriber_id": sub }),
    );
    r["sessions"].as_array().cloned().unwrap_or_default()
}

/// ue2 up to the success page: 302, the portal, the payment (credited, pending), the success
/// page. Returns when the payment was answered.
fn redirected_pays_and_reaches_success(lab: &Lab) -> Instant {
    let ue2 = lab.ns("ue2");
    let redirected = curl(&ue2, &["-4"], SITE);
    assert_eq!(
        redirected.status,
        302,
        "{}\n{}",
        redirected.text(),
        lab.log()
    );
    assert_eq!(redirected.header("location"), Some(LOCATION));
    let sessions = pe_sessions(lab, UE2_SUBSCRIBER);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["redirected"], true, "{sessions:?}");

    let portal = curl(&ue2, &["-4"], LOCATION);
    assert_eq!(portal.status, 200);
    assert!(portal.text().contains(UE2_SUBSCRIBER), "{}", portal.text());

    let paid = curl(&ue2, &["-4", "--data", FORM], PAY);
    let paid_at = Instant::now();
    assert_eq!(paid.status, 303, "{}", paid.text());
    let success = paid.header("location").expect("303 Location").to_string();
    assert!(
        success.starts_with("/recharge/success?sub=imsi%2D001010000000002&ue=10.45.0.3&exp="),
        "{success}"
    );
    // The money is in the store, pending while billing runs.
    let a = account(lab, UE2_SUBSCRIBER);
    assert_eq!(int(&a["balance"]), 0, "{a}");
    assert_eq!(int(&a["pendingCredit"][0]["amount"]), 10, "{a}");

    let done = curl(&ue2, &["-4"], &format!("http://portal.example{success}"));
    assert_eq!(done.status, 200);
    assert!(
        done.text()
            .contains("<h1 id=\"success\">Recharge successful</h1>"),
        "{}",
        done.text()
    );
    paid_at
}

fn wait_for_balance(lab: &Lab, sub: &str, want: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(DELAY + 10);
    loop {
        let a = account(lab, sub);
        if int(&a["balance"]) == want || Instant::now() > deadline {
            return a;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn curl_recharges_and_the_policy_engine_lifts_the_redirect_before_billing_does() {
    let _machine = alone();
    if !ready("gx_loop_curl") {
        return;
    }
    let lab = pcrf_lab("lc", &[]);
    let (ue, ue2) = (lab.ns("ue"), lab.ns("ue2"));
    let page = site_page(&lab);

    // In credit: the real page through a session fetched from the policy engine.
    let free = curl(&ue, &["-4"], SITE);
    assert_eq!(free.status, 200, "{}", lab.log());
    assert_eq!(free.body, page);

    let paid_at = redirected_pays_and_reaches_success(&lab);
    // The policy engine removed the redirect on the verified success, ahead of billing.
    let sessions = pe_sessions(&lab, UE2_SUBSCRIBER);
    assert_eq!(sessions[0]["redirected"], Value::Null, "{sessions:?}");
    assert_eq!(sessions[0]["liftedOnRechargeSuccess"], true, "{sessions:?}");
    assert_eq!(int(&account(&lab, UE2_SUBSCRIBER)["balance"]), 0);

    // From the success page until the billing delay is over: never a redirect.
    let c = count(&ue2, paid_at + Duration::from_secs(DELAY + 1), false);
    say(&format!(
        "gx_loop_curl: after the success page, with the watch reporting: {} redirects, {} real pages, other {:?}",
        c.redirects, c.pages, c.other
    ));
    assert_eq!(c.redirects, 0, "{c:?}");
    assert!(c.other.is_empty(), "{c:?}");
    assert!(c.pages >= 10, "{c:?}");
    let report = live_report(&lab);
    assert_eq!(report["redirect"]["redirects_sent"], 1, "{report}");

    // Billing caught up in the end, once.
    let a = wait_for_balance(&lab, UE2_SUBSCRIBER, 10);
    assert_eq!(int(&a["balance"]), 10, "{a}");
    assert_eq!(a["pendingCredit"], Value::Null, "{a}");
    let real = curl(&ue2, &["-6"], SITE);
    assert_eq!(real.status, 200);
    assert_eq!(real.body, page);
}

#[test]
fn without_the_watch_the_subscriber_is_redirected_until_the_billing_delay_ends() {
    let _machine = alone();
    if !ready("gx_loop_nowatch") {
        return;
    }
    // The gateway without success_url: nothing watches the portal; the portal keeps its own.
    let text = std::fs::read_to_string(repo().join("examples/lab-pcrf.toml")).unwrap();
    let unwatched: String = text
        .lines()
        .filter(|l| !l.starts_with("success_url"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(unwatched, text);
    let config = std::env::temp_dir().join(format!("weir-gx-nowatch-{}.toml", std::process::id()));
    std::fs::write(&config, unwatched).unwrap();
    let portal_config = repo().join("examples/lab-pcrf.toml");
    let lab = pcrf_lab(
        "ln",
        &[
            ("WEIR_LAB_CONFIG", config.to_str().unwrap()),
            ("WEIR_LAB_PORTAL_CONFIG", portal_config.to_str().unwrap()),
        ],
    );
    let _ = std::fs::remove_file(&config);
    let ue2 = lab.ns("ue2");

    let paid_at = redirected_pays_and_reaches_success(&lab);
    let before = count(&ue2, paid_at + Duration::from_secs(DELAY + 10), true);
    let lifted = before.first_page.expect("the redirect was never lifted") - paid_at;
    let after = count(&ue2, Instant::now() + Duration::from_secs(2), false);
    say(&format!(
        "gx_loop_nowatch: without the watch: {} redirects after the success page, the first real page {:.1} s after the payment (billing delay {DELAY} s); then {} redirects, {} real pages",
        before.redirects,
        lifted.as_secs_f64(),
        after.redirects,
        after.pages
    ));
    // Billing's due time is in whole seconds, so the lift may come up to a second early.
    assert!(
        lifted >= Duration::from_secs(DELAY - 1),
        "lifted after {lifted:?}"
    );
    assert!(
        lifted <= Duration::from_secs(DELAY + 5),
        "lifted after {lifted:?}"
    );
    assert!(
        before.redirects >= 5,
        "redirected until billing: {before:?}"
    );
    assert!(before.other.is_empty(), "{before:?}");
    assert_eq!(after.redirects, 0, "{after:?}");
    assert!(after.pages > 0, "{after:?}");
    let a = account(&lab, UE2_SUBSCRIBER);
    assert_eq!(int(&a["balance"]), 10, "{a}");
    let report = live_report(&lab);
    assert_eq!(
        report["redirect"]["successes"], 0,
        "nothing watched: {report}"
    );
}

#[test]
fn chromium_recharges_and_the_policy_engine_lifts_the_redirect() {
    let _machine = alone();
    if !ready("gx_loop_chromium") {
        return;
    }
    let chromium = "/usr/bin/chromium";
    if !std::path::Path::new(chromium).exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{chromium} is missing; scripts/install-deps.sh installs it");
        }
        say("gx_loop_chromium: skipped: no /usr/bin/chromium (scripts/install-deps.sh)");
        return;
    }
    let lab = pcrf_lab("lb", &[]);
    let page = String::from_utf8(site_page(&lab)).expect("the lab's page is text");
    let driver = repo().join("tests/browser/recharge.py");
    let log = lab.state.join("chromium.log");
    let started = Instant::now();
    let out = ok(
        &mut netns(
            &lab.ns("ue2"),
            &[
                "python3",
                driver.to_str().unwrap(),
                "--chromium",
                chromium,
                "--url",
                SITE,
                "--timeout",
                "90",
                "--log",
                log.to_str().unwrap(),
            ],
        ),
        Duration::from_secs(110),
    );
    let story: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("driver output: {e}: {out}"));
    assert_eq!(story["portal_url"], LOCATION, "{story}");
    assert_eq!(story["subscriber"], UE2_SUBSCRIBER);
    assert_eq!(story["success_text"], "Recharge successful");
    assert_eq!(story["final_url"], SITE);
    assert_eq!(story["final_body"], page.as_str());
    assert_eq!(story["again_body"], page.as_str());
    let before = story["redirects_before_success"].as_array().unwrap();
    assert_eq!(before[0], json!([302, SITE, LOCATION]), "{story}");
    assert_eq!(before[1][0], 303, "{story}");
    assert_eq!(
        story["redirects_after_success"],
        json!([]),
        "zero redirects after the success: {story}"
    );
    // The browser was freed by the policy engine, not by billing, if it got there in time.
    let a = account(&lab, UE2_SUBSCRIBER);
    if started.elapsed() < Duration::from_secs(DELAY - 1) {
        assert_eq!(int(&a["balance"]), 0, "{a}");
    }
    let sessions = pe_sessions(&lab, UE2_SUBSCRIBER);
    assert_eq!(sessions[0]["redirected"], Value::Null, "{sessions:?}");
    let left = run(
        Command::new("ip").args(["netns", "pids", &lab.ns("ue2")]),
        Duration::from_secs(5),
    );
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "processes left in ue2: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn grpcurl_lists_the_gateway_services_and_the_lab_sessions() {
    let _machine = shared();
    if !ready("gx_loop_grpcurl") {
        return;
    }
    let lab = pcrf_lab("lg", &[]);
    let p = in_gw(&lab);
    let prefix: Vec<&str> = p.iter().map(String::as_str).collect();
    let list = grpcurl(&prefix, &[GATEWAY, "list"]);
    assert!(list.status.success(), "{list:?}");
    let services: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for s in ["weir.v1.Gateway", "grpc.health.v1.Health"] {
        assert!(services.iter().any(|l| l == s), "{s} not in {services:?}");
    }
    let health = gcall(
        &lab,
        GATEWAY,
        "grpc.health.v1.Health/Check",
        json!({ "service": "weir.v1.Gateway" }),
    );
    assert_eq!(health, json!({ "status": "SERVING" }));

    // A packet from each client brings its session.
    assert_eq!(site_status(&lab.ns("ue")), 200);
    assert_eq!(site_status(&lab.ns("ue2")), 302);
    let deadline = Instant::now() + Duration::from_secs(10);
    let subscribers = loop {
        let r = gcall(&lab, GATEWAY, "weir.v1.Gateway/ListSessions", json!({}));
        let mut subs: Vec<String> = r["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| s["subscriberId"].as_str().unwrap_or("").to_string())
            .collect();
        subs.sort();
        if subs.len() >= 2 || Instant::now() > deadline {
            break subs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(subscribers, [UE_SUBSCRIBER, UE2_SUBSCRIBER]);
    let s = gcall(
        &lab,
        GATEWAY,
        "weir.v1.Gateway/GetSession",
        json!({ "session": { "subscriber_id": UE2_SUBSCRIBER } }),
    );
    assert_eq!(s["framedIpAddress"], "10.45.0.3", "{s}");
    assert_eq!(s["redirect"]["redirected"], true, "{s}");
}

#[test]
fn the_readme_lab_commands_run_as_written() {
    let _machine = shared();
    if !ready("gx_loop_readme") {
        return;
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block = readme
        .split("<!-- lab commands")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README has the lab commands block");
    let commands: Vec<&str> = block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(commands.len(), 18, "{block}");

    let lab = pcrf_lab("lr", &[]);
    // As written, as root already, with this lab's prefix; a marker before each command's output.
    let mut script = String::new();
    for (i, c) in commands.iter().enumerate() {
        let c = c.replace("sudo ", "").replace(
            "ip netns exec weir-",
            &format!("ip netns exec {}", lab.prefix),
        );
        script.push_str(&format!("echo '@@@ {i}'\n{c}\n"));
    }
    let cwd = lab.state.join("readme");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = run(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&cwd),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut outputs = vec![String::new(); commands.len()];
    let mut at = None;
    for line in stdout.lines() {
        if let Some(n) = line.strip_prefix("@@@ ") {
            at = n.parse::<usize>().ok();
            continue;
        }
        if let Some(i) = at {
            outputs[i].push_str(line);
            outputs[i].push('\n');
        }
    }
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}\nlog:\n{}", lab.log());
    let json_of = |i: usize| -> Value {
        serde_json::from_str(&outputs[i])
            .unwrap_or_else(|e| panic!("command {i}: {e}: {}\n{context}", commands[i]))
    };
    assert!(outputs[0].contains("weir.v1.Gateway\n"), "{context}");
    assert!(outputs[0].contains("grpc.health.v1.Health\n"), "{context}");
    assert_eq!(outputs[2].trim(), "200", "{context}");
    assert_eq!(outputs[3].trim(), "302", "{context}");
    let sessions = json_of(4);
    assert_eq!(
        sessions["sessions"].as_array().map(Vec::len),
        Some(2),
        "{context}"
    );
    let session = json_of(5);
    assert_eq!(session["subscriberId"], UE_SUBSCRIBER, "{context}");
    assert!(outputs[6].trim().is_empty(), "{context}");
    assert_eq!(json_of(7)["resultCode"], "DIAMETER_SUCCESS", "{context}");
    assert_eq!(outputs[8].trim(), "000", "the closed gate: {context}");
    assert_eq!(json_of(9)["resultCode"], "DIAMETER_SUCCESS", "{context}");
    assert_eq!(outputs[10].trim(), "200", "{context}");
    assert_eq!(
        json_of(11)["results"][0]["resultCode"],
        "DIAMETER_SUCCESS",
        "{context}"
    );
    assert!(
        outputs[12].starts_with("302 http://portal.example/recharge?"),
        "{context}"
    );
    assert_eq!(
        json_of(13)["results"][0]["resultCode"],
        "DIAMETER_SUCCESS",
        "{context}"
    );
    assert_eq!(outputs[14].trim(), "200", "{context}");
    let recharged = json_of(15);
    assert_eq!(int(&recharged["account"]["balance"]), 0, "{context}");
    assert_eq!(int(&recharged["credit"]["amount"]), 500, "{context}");
    let account = json_of(16);
    assert_eq!(
        int(&account["pendingCredit"][0]["amount"]),
        500,
        "{context}"
    );
    // The watch saw the redirects come and go (the sessions were up before it started).
    for event in ["redirectApplied", "redirectLifted"] {
        assert!(outputs[17].contains(event), "{event}: {context}");
    }
    // And billing frees ue2 once its delay is over (the policy engine's RAR).
    let ue2 = lab.ns("ue2");
    let c = count(&ue2, Instant::now() + Duration::from_secs(DELAY + 10), true);
    assert!(c.first_page.is_some(), "{c:?}: {context}");
}

#[test]
fn the_lab_portal_credits_the_lab_policy_engine() {
    let _machine = shared();
    // Static sessions (examples/lab.toml): this part of the loop needs no control plane.
    if !root_or_skip("gx_loop_portal") || !grpcurl_or_skip("gx_loop_portal") {
        return;
    }
    let lab = Lab::up(
        "lp",
        &[
            ("WEIR_LAB_SESSIONS", "static"),
            ("WEIR_LAB_BILLING_DELAY", DELAY_TEXT),
        ],
    );
    let ue2 = lab.ns("ue2");
    let p = in_gw(&lab);
    let prefix: Vec<&str> = p.iter().map(String::as_str).collect();
    let list = grpcurl(&prefix, &[POLICY_ENGINE, "list"]);
    let services = String::from_utf8_lossy(&list.stdout);
    assert!(services.contains("weir.v1.Admin\n"), "{list:?}");
    assert_eq!(int(&account(&lab, UE_SUBSCRIBER)["balance"]), 1000);
    assert_eq!(int(&account(&lab, UE2_SUBSCRIBER)["balance"]), 0);

    // The control network is not the subscribers': a client cannot reach the policy engine.
    let reach = run(
        &mut netns(
            &lab.ns("ue"),
            &[
                "curl",
                "-s",
                "--max-time",
                "2",
                &format!("http://{POLICY_ENGINE}/"),
            ],
        ),
        Duration::from_secs(5),
    );
    assert!(!reach.status.success(), "ue reached the policy engine");

    let redirected = curl(&ue2, &["-4"], SITE);
    assert_eq!(redirected.status, 302);
    let paid = curl(&ue2, &["-4", "--data", FORM], PAY);
    assert_eq!(paid.status, 303, "{}", paid.text());
    let success = paid.header("location").expect("303 Location").to_string();
    let nonce = success
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .expect("a nonce in the success URL")
        .to_string();
    let a = account(&lab, UE2_SUBSCRIBER);
    assert_eq!(int(&a["balance"]), 0, "{a}");
    assert_eq!(int(&a["pendingCredit"][0]["amount"]), 10, "{a}");
    assert_eq!(a["pendingCredit"][0]["reference"], nonce.as_str(), "{a}");
    // The gateway lifts the redirect itself here (success_action = "local").
    let done = curl(&ue2, &["-4"], &format!("http://portal.example{success}"));
    assert_eq!(done.status, 200);
    assert_eq!(site_status(&ue2), 200);
    let a = wait_for_balance(&lab, UE2_SUBSCRIBER, 10);
    assert_eq!(int(&a["balance"]), 10, "{a}");
    assert_eq!(a["pendingCredit"], Value::Null, "{a}");

    // Down removes everything, the policy engine's namespace with the rest.
    let down = lab.down();
    assert!(down.status.success());
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
}
