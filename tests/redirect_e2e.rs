//! The recharge story end to end in the lab with static sessions (`scripts/lab.sh up --static`,
//! examples/lab.toml, `success_action = "local"`): the subscriber in `ue2` is out of
//! credit, so the gateway answers its web requests with a 302 to `weir portal`; it recharges, the
//! gateway's success watch sees the success URL and lifts the redirect at once, and the next
//! request reaches the real site. The subscriber in `ue` is in credit and never redirected.
//!
//! Told twice: with curl, step by step, and with headless Chromium driven over the DevTools
//! protocol (`tests/browser/recharge.py`). Both require zero redirects after the success.
//!
//! Needs root; without it each test says it was skipped and why, and under CI (`CI=true`) a skip
//! is a failure.

mod common;

use common::{curl, netns, ok, repo, root_or_skip, run, Lab};
use std::process::Command;
use std::time::Duration;

const SITE: &str = "http://site.example/";
const UE2_SUBSCRIBER: &str = "imsi-001010000000002";
/// The 302's Location for the site's front page: the portal, the original URL percent-encoded,
/// and the subscriber, as the lab's `location` template says.
const LOCATION: &str =
    "http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2F&sub=imsi-001010000000002";

/// The running gateway's report, fresh from every worker.
fn live_report(lab: &Lab) -> serde_json::Value {
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

/// Frames the gateway answered itself (SYN-ACK, 302, FIN, RST): only redirected flows get any.
fn answered(report: &serde_json::Value) -> u64 {
    report["totals"]["answered"]
        .as_u64()
        .unwrap_or_else(|| panic!("no totals.answered in {report}"))
}

/// The site's page as the web server holds it.
fn site_page(lab: &Lab) -> Vec<u8> {
    std::fs::read(lab.state.join("www/index.html")).expect("the lab's page")
}

#[test]
fn curl_is_redirected_recharges_and_then_gets_the_real_page() {
    if !root_or_skip("redirect_curl") {
        return;
    }
    let lab = Lab::up("rc", &[("WEIR_LAB_SESSIONS", "static")]);
    let (ue, ue2) = (lab.ns("ue"), lab.ns("ue2"));
    let page = site_page(&lab);

    // In credit: the real page, and the gateway answered nothing itself.
    let free = curl(&ue, &[], SITE);
    assert_eq!(free.status, 200);
    assert_eq!(free.body, page);
    assert_eq!(answered(&live_report(&lab)), 0, "ue must not be redirected");

    // Over IPv6 here (Chromium, below, takes whichever family it likes).
    let redirected = curl(&ue2, &["-6"], SITE);
    assert_eq!(redirected.status, 302, "{}", redirected.text());
    assert_eq!(redirected.header("location"), Some(LOCATION));
    assert_eq!(redirected.header("cache-control"), Some("no-store"));

    let portal = curl(&ue2, &["-6"], LOCATION);
    assert_eq!(portal.status, 200);
    let portal_page = portal.text();
    assert!(
        portal_page.contains(&format!("<dd id=\"subscriber\">{UE2_SUBSCRIBER}</dd>")),
        "{portal_page}"
    );
    assert!(
        portal_page.contains("<code id=\"orig\">http://site.example/</code>"),
        "{portal_page}"
    );

    // The form as the page posts it; the portal answers with the success URL and its token.
    let paid = curl(
        &ue2,
        &[
            "-6",
            "--data",
            "sub=imsi-001010000000002&orig=http%3A%2F%2Fsite.example%2F&amount=10",
        ],
        "http://portal.example/recharge/pay",
    );
    assert_eq!(paid.status, 303, "{}", paid.text());
    let success = paid.header("location").expect("303 Location").to_string();
    assert!(
        success
            .starts_with("/recharge/success?sub=imsi%2D001010000000002&ue=2001:db8:45:2::2&exp="),
        "{success}"
    );
    assert!(
        success.ends_with("&orig=http%3A%2F%2Fsite%2Eexample%2F"),
        "{success}"
    );

    let done = curl(&ue2, &["-6"], &format!("http://portal.example{success}"));
    assert_eq!(done.status, 200);
    let done_page = done.text();
    assert!(
        done_page.contains("<h1 id=\"success\">Recharge successful</h1>"),
        "{done_page}"
    );
    assert!(
        done_page.contains("<a id=\"continue\" class=\"button\" href=\"http://site.example/\">"),
        "{done_page}"
    );
    assert!(
        lab.log().contains("recharge success: redirect lifted"),
        "{}",
        lab.log()
    );
    let report = live_report(&lab);
    let after_success = answered(&report);
    assert!(after_success > 0, "the 302 above was the gateway's own");
    assert_eq!(report["redirect"]["redirects_sent"], 1, "{report}");
    assert_eq!(report["redirect"]["lifts"], 1, "{report}");

    // Free again, on both families, and the gateway answers nothing more itself.
    for family in ["-6", "-4"] {
        let real = curl(&ue2, &[family], SITE);
        assert_eq!(real.status, 200, "{family}: {}", real.text());
        assert_eq!(real.body, page, "{family}");
    }
    let again = curl(&ue, &[], SITE);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, page);
    let report = live_report(&lab);
    assert_eq!(
        answered(&report),
        after_success,
        "no 302 (nor any frame of the responder) after the success: {report}"
    );
    assert_eq!(
        report["redirect"]["redirects_sent"], 1,
        "zero 302s after the success: {report}"
    );

    // The clients' hosts files go with their namespaces.
    let etc = std::path::Path::new("/etc/netns").join(&ue2);
    assert!(etc.join("hosts").exists());
    let down = lab.down();
    assert!(down.status.success());
    assert!(!etc.exists(), "{} left behind", etc.display());
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
}

#[test]
fn chromium_is_redirected_recharges_and_then_gets_the_real_page() {
    if !root_or_skip("redirect_chromium") {
        return;
    }
    let chromium = "/usr/bin/chromium";
    if !std::path::Path::new(chromium).exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{chromium} is missing; scripts/install-deps.sh installs it");
        }
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(
            b"redirect_chromium: skipped: no /usr/bin/chromium (scripts/install-deps.sh)\n",
        );
        return;
    }
    let lab = Lab::up("rb", &[("WEIR_LAB_SESSIONS", "static")]);
    let page = String::from_utf8(site_page(&lab)).expect("the lab's page is text");
    let driver = repo().join("tests/browser/recharge.py");
    let log = lab.state.join("chromium.log");
    // The driver bounds every wait by its own timeout; the outer limit catches a hung start.
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
                // A first start on a fresh machine builds Chromium's font and profile caches.
                "90",
                "--log",
                log.to_str().unwrap(),
            ],
        ),
        Duration::from_secs(110),
    );
    let story: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("driver output: {e}: {out}"));

    assert_eq!(story["portal_url"], LOCATION, "{story}");
    assert_eq!(story["subscriber"], UE2_SUBSCRIBER);
    assert_eq!(story["orig_shown"], SITE);
    let success = story["success_url"].as_str().unwrap();
    assert!(
        success
            .starts_with("http://portal.example/recharge/success?sub=imsi%2D001010000000002&ue="),
        "{success}"
    );
    assert_eq!(story["success_text"], "Recharge successful");
    assert_eq!(story["final_url"], SITE);
    assert_eq!(story["final_title"], "Weir lab");
    assert_eq!(story["final_body"], page.as_str());
    assert_eq!(story["again_url"], SITE);
    assert_eq!(story["again_body"], page.as_str());

    let before = story["redirects_before_success"].as_array().unwrap();
    assert_eq!(
        before[0],
        serde_json::json!([302, SITE, LOCATION]),
        "the site's 302 to the portal first: {story}"
    );
    assert_eq!(
        before[1][0], 303,
        "then the payment's 303 to the success URL: {story}"
    );
    assert_eq!(
        story["redirects_after_success"],
        serde_json::json!([]),
        "zero redirects after the success: {story}"
    );
    assert!(
        lab.log().contains("recharge success: redirect lifted"),
        "{}",
        lab.log()
    );
    // The browser is gone with the driver; nothing of it may outlive the test in the namespace.
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

/// A resolver for the gateway on its own loopback: `portal.example` is 198.51.100.20 (A only).
const FAKE_RESOLVER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
while True:
    q, peer = s.recvfrom(512)
    qtype = q[-4:-2]
    name = q[12:-4]
    a = qtype == b"\x00\x01" and name == b"\x06portal\x07example\x00"
    head = q[:2] + b"\x81\x80" + q[4:6] + (b"\x00\x01" if a else b"\x00\x00") + b"\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + bytes([198, 51, 100, 20]) if a else b""
    s.sendto(head + q[12:] + answer, peer)
"#;

#[test]
fn weir_run_resolves_the_portal_name_into_the_walled_garden() {
    if !root_or_skip("redirect_resolve") {
        return;
    }
    // The portal's address only by name: without the resolver its page would get Weir's 302.
    let text = std::fs::read_to_string(repo().join("examples/lab.toml")).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("portal_addresses") {
                "portal_addresses = []"
            } else if l.starts_with("dns_resolvers") {
                "dns_resolvers = [\"127.0.0.1\"]"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = std::env::temp_dir().join(format!("weir-e2e-resolve-{}.toml", std::process::id()));
    std::fs::write(&config, text).unwrap();
    let lab = Lab::up("rr", &[("WEIR_LAB_CONFIG", config.to_str().unwrap())]);
    let _ = std::fs::remove_file(&config);
    let mut resolver = netns(&lab.ns("gw"), &["python3", "-c", FAKE_RESOLVER])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // The gateway retries a failed resolution within seconds; the page appears once it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let out = run(
            &mut netns(
                &lab.ns("ue2"),
                &[
                    "curl",
                    "-4",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                    "http://portal.example/recharge?sub=imsi-001010000000002",
                ],
            ),
            Duration::from_secs(5),
        );
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        if code == "200" || std::time::Instant::now() > deadline {
            break code;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = resolver.kill();
    let _ = resolver.wait();
    assert_eq!(
        page,
        "200",
        "the portal page, not Weir's 302: {}",
        lab.log()
    );
    assert!(
        lab.log().contains("portal host names resolved"),
        "{}",
        lab.log()
    );
}
