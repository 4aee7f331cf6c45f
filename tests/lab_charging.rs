//! Online charging with real packets in the lab (`scripts/lab.sh up` with
//! `WEIR_LAB_CHARGING=1`: examples/lab-ocs.toml, examples/policy-engine-ocs.toml): real curl
//! through `weir run` to the lab's web server, the charging system's grants and debits read with
//! real grpcurl.
//!
//! The 1 MB story: a subscriber with a 1 MB data bucket and no money downloads until the bucket
//! is used up; its web requests (rating group 10, online) then get the 302 to the portal while
//! port 8080 (rating group 20, offline) keeps working; it pays at the portal, the success page
//! frees it at once (long before the billing delay), and the charging system's debits equal the
//! gateway's meter to the octet after the CCR-T.
//!
//! Needs root and grpcurl; without them each test says it was skipped and why, and under CI
//! (`CI=true`) a skip is a failure.

mod common;
#[path = "support/grpc.rs"]
mod grpc;
#[path = "support/charging_lab.rs"]
mod lab;

use common::run;
use grpc::int;
use lab::{
    admin, bucket_and_no_money, charging_lab, containers, exchange, fetch, gcall, metered, ready,
    redirects_answered, report_meter, report_session, say, wait_until, CHUNK,
};
use serde_json::{json, Value};
use std::time::Duration;

/// The gateways' weir.v1.Gateway on the lab's control network.
const GW1: &str = "192.0.2.2:50052";
/// The subscriber of `ue2`.
const UE2_SUB: &str = "imsi-001010000000002";
/// 1 MB, in octets.
const BUCKET: i64 = 1_048_576;
const CHUNK_URL: &str = "http://site.example/chunk.bin";
const OFFLINE_URL: &str = "http://site.example:8080/chunk.bin";
/// The 302's Location for the chunk: the portal, the original URL, the subscriber.
const LOCATION: &str =
    "http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2Fchunk.bin&sub=imsi-001010000000002";
const PAY: &str = "http://portal.example/recharge/pay";
/// 10 EUR in the plan's millionths: 10 MB at one millionth per octet.
const FORM: &str = "sub=imsi-001010000000002&orig=http%3A%2F%2Fsite.example%2F&amount=10000000";

#[test]
fn one_megabyte_bucket_runs_out_redirects_its_group_then_recharge_grants_again() {
    let test = "lab_charging_1mb";
    if !ready(test) {
        return;
    }
    let lab = charging_lab("oc", &[]);
    let ue2 = lab.ns("ue2");
    bucket_and_no_money(&lab, UE2_SUB, BUCKET);

    // Downloads until the bucket is used up: 5 whole chunks fit in 1 MB with their headers,
    // the 6th is cut off when the final units go, and the next request gets the 302.
    let mut whole = 0;
    let redirected = loop {
        let (status, size, location) = fetch(&ue2, CHUNK_URL);
        match status {
            200 if size == CHUNK => whole += 1,
            302 => break location,
            // The download the final units ended: cut off, or closed by the gateway's RST.
            _ => {}
        }
        assert!(
            whole <= 6,
            "still downloading after {whole} chunks of {CHUNK} from a {BUCKET} bucket\n{}",
            lab.log()
        );
    };
    assert!(whole >= 4, "only {whole} whole chunks before the 302");
    assert_eq!(redirected, LOCATION);
    // The redirect holds (a repeated answer of nothing keeps it), for this rating group only.
    let again = exchange(&ue2, &[], CHUNK_URL);
    assert_eq!(again.0, 302, "{again:?}");
    assert_eq!(again.1.as_deref(), Some(LOCATION));
    assert_eq!(fetch(&ue2, OFFLINE_URL), (200, CHUNK, String::new()));
    let ((bucket, _), (money, _)) = containers(&lab, UE2_SUB);
    assert_eq!(bucket, 0, "the bucket is used up");
    assert!(money <= 0, "no money: {money}");

    // Pays at the portal: credited (pending for the billing delay), then the success page.
    let portal = exchange(&ue2, &[], LOCATION);
    assert_eq!(portal.0, 200);
    assert!(portal.2.contains(UE2_SUB), "{}", portal.2);
    let paid = exchange(&ue2, &["--data", FORM], PAY);
    assert_eq!(paid.0, 303, "{}", paid.2);
    let success = paid.1.expect("303 Location");
    assert!(
        success.starts_with("/recharge/success?sub=imsi%2D001010000000002&ue=10.45.0.3&exp="),
        "{success}"
    );
    let account = admin(&lab, "GetAccount", json!({ "subscriber_id": UE2_SUB }));
    assert_eq!(
        int(&account["pendingCredit"][0]["amount"]),
        10_000_000,
        "{account}"
    );
    let before = redirects_answered(&lab, "gw");
    let done = exchange(&ue2, &[], &format!("http://portal.example{success}"));
    assert_eq!(done.0, 200);
    assert!(
        done.2
            .contains("<h1 id=\"success\">Recharge successful</h1>"),
        "{}",
        done.2
    );
    // The gateway reports the success to the policy engine, then asks the charging system for
    // credit again; the grant comes from the pending recharge. A browser's next click is as
    // fast as a machine's, but on a loaded 2-core machine the two requests may take longer
    // than curl's start-up: this waits (bounded) for the charging system's reservation before
    // counting, so what is counted is the gateway's behaviour, not the scheduler's.
    wait_until(
        Duration::from_secs(10),
        "the charging system reserves from the recharge",
        || containers(&lab, UE2_SUB).1 .1 > 0,
    );
    let mut pages = 0;
    for _ in 0..5 {
        let (status, size, location) = fetch(&ue2, CHUNK_URL);
        assert_eq!(
            (status, size),
            (200, CHUNK),
            "after the success page: {location}\n{}",
            lab.log()
        );
        pages += 1;
    }
    let after = redirects_answered(&lab, "gw");
    say(&format!(
        "{test}: {whole} whole chunks on the bucket; after the success page {pages} downloads, {} redirects",
        after - before
    ));
    assert_eq!(after, before, "redirects after the success page");
    let account = admin(&lab, "GetAccount", json!({ "subscriber_id": UE2_SUB }));
    assert_eq!(
        int(&account["pendingCredit"][0]["amount"]),
        10_000_000,
        "still pending: freed before billing, {account}"
    );

    // One more download, and the session ends right after it (CCR-T), sooner than the
    // workers' next publication: the CCR-T's last units must still hold all of it. The
    // charging system's debits then equal the gateway's meter, read fresh from /report.
    let session = report_session(&lab, "gw", UE2_SUB, 10);
    assert_eq!(fetch(&ue2, CHUNK_URL).0, 200);
    gcall(
        &lab,
        "gw",
        GW1,
        "weir.v1.Gateway/DeleteSession",
        json!({ "session": { "subscriber_id": UE2_SUB } }),
    );
    wait_until(
        Duration::from_secs(10),
        "the CCR-T releases every reservation",
        || {
            let ((_, r1), (_, r2)) = containers(&lab, UE2_SUB);
            r1 == 0 && r2 == 0
        },
    );
    let metered = report_meter(&lab, "gw", session, 10);
    let ((bucket, _), (money, _)) = containers(&lab, UE2_SUB);
    let debited = (BUCKET - bucket) + (0 - money);
    say(&format!(
        "{test}: metered {metered} octets of rating group 10; debited {debited} (bucket {BUCKET}, money {})",
        -money
    ));
    assert_eq!(debited, metered);
}

const GW2: &str = "192.0.2.4:50052";
/// The family plan: the owner behind the first gateway, the member behind the second.
const OWNER: &str = "imsi-001010000000001";
const MEMBER: &str = "imsi-001010000000003";
const FAMILY_BUCKET: i64 = 2_000_000;
const THRESHOLD: i64 = 400_000;

/// The 302's Location for the chunk of `sub`.
fn location_of(sub: &str) -> String {
    format!("http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2Fchunk.bin&sub={sub}")
}

/// Downloads in `ns` until a 302 (its Location), at most `limit` requests.
fn download_until_redirected(ns: &str, limit: usize) -> (usize, Option<String>) {
    let mut whole = 0;
    for _ in 0..limit {
        match fetch(ns, CHUNK_URL) {
            (200, CHUNK, _) => whole += 1,
            (302, _, location) => return (whole, Some(location)),
            _ => {}
        }
    }
    (whole, None)
}

#[test]
fn a_family_plan_across_two_gateways_draws_on_one_bucket_and_its_threshold_redirects_every_member()
{
    let test = "lab_charging_family";
    if !ready(test) {
        return;
    }
    let lab = charging_lab("of", &[("WEIR_LAB_GATEWAYS", "2")]);
    bucket_and_no_money(&lab, OWNER, FAMILY_BUCKET);
    let g = admin(
        &lab,
        "CreateQuotaGroup",
        json!({ "group_id": "family", "owner_id": OWNER, "threshold_octets": THRESHOLD }),
    );
    assert_eq!(g["ownerId"], OWNER, "{g}");
    let g = admin(
        &lab,
        "AddQuotaGroupMember",
        json!({ "group_id": "family", "subscriber_id": MEMBER }),
    );
    assert_eq!(g["memberId"], json!([MEMBER]), "{g}");

    // Both download at once, the owner through gw, the member through gw2, while the bucket
    // is watched: its open reservations never hold more than it has.
    let (ue, ue3) = (lab.ns("ue"), lab.ns("ue3"));
    let done = std::sync::atomic::AtomicBool::new(false);
    let (owner, member, samples) = std::thread::scope(|s| {
        let owner = s.spawn(|| download_until_redirected(&ue, 20));
        let member = s.spawn(|| download_until_redirected(&ue3, 20));
        let watch = s.spawn(|| {
            let mut samples = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                samples.push(containers(&lab, OWNER).0);
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        });
        let (o, m) = (owner.join().unwrap(), member.join().unwrap());
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (o, m, watch.join().unwrap())
    });
    say(&format!(
        "{test}: owner {} whole chunks, member {} whole chunks before the 302; {} samples of the bucket",
        owner.0,
        member.0,
        samples.len()
    ));
    for (amount, reserved) in &samples {
        assert!(
            reserved <= amount,
            "the bucket's reservations hold more than it has: {samples:?}"
        );
    }
    // Every member is redirected at whichever gateway it is attached: the charging system's
    // group restriction reached each gateway as the policy engine's RAR.
    assert_eq!(
        owner.1.as_deref(),
        Some(location_of(OWNER).as_str()),
        "{owner:?}\n{}",
        lab.log()
    );
    assert_eq!(
        member.1.as_deref(),
        Some(location_of(MEMBER).as_str()),
        "{member:?}"
    );
    let g = admin(&lab, "GetQuotaGroup", json!({ "group_id": "family" }));
    assert_eq!(g["restricted"], true, "{g}");
    assert!(int(&g["remainingOctets"]) < THRESHOLD, "{g}");
    for (gw, addr, sub) in [("gw", GW1, OWNER), ("gw2", GW2, MEMBER)] {
        let sessions = admin(&lab, "ListSessions", json!({ "subscriber_id": sub }));
        let sessions = sessions["sessions"].as_array().cloned().unwrap_or_default();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        assert_eq!(sessions[0]["redirected"], true, "{sessions:?}");
        let origin = if gw == "gw" {
            "gw.lab.example"
        } else {
            "gw2.lab.example"
        };
        assert_eq!(sessions[0]["originHost"], origin, "{sessions:?}");
        let at_gateway = gcall(
            &lab,
            gw,
            addr,
            "weir.v1.Gateway/GetSession",
            json!({ "session": { "subscriber_id": sub } }),
        );
        assert_eq!(
            (
                &at_gateway["redirect"]["redirected"],
                &at_gateway["redirect"]["source"],
                &at_gateway["redirect"]["cause"]
            ),
            (
                &json!(true),
                &json!("recharge-redirect"),
                &json!("REDIRECT_CAUSE_PCC_RULE")
            ),
            "{at_gateway}"
        );
        let again = exchange(
            &lab.ns(if gw == "gw" { "ue" } else { "ue3" }),
            &[],
            CHUNK_URL,
        );
        assert_eq!(
            (again.0, again.1.as_deref()),
            (302, Some(location_of(sub).as_str()))
        );
    }

    // Before the CCR-Ts: what the two gateways' grants still hold, and what their reports
    // debited, never exceed the bucket: no unit went to both.
    let ((amount, reserved), _) = containers(&lab, OWNER);
    say(&format!(
        "{test}: before the CCR-Ts the bucket holds {amount}, {reserved} of it reserved by the open grants"
    ));
    assert!(
        (0..=amount).contains(&reserved),
        "{reserved} reserved of {amount}"
    );
    // Both sessions end (a CCR-T from each gateway); one counter paid for both, exactly.
    let metered_owner = metered(&lab, "gw", GW1, OWNER, 10);
    let metered_member = metered(&lab, "gw2", GW2, MEMBER, 10);
    for (gw, addr, sub) in [("gw", GW1, OWNER), ("gw2", GW2, MEMBER)] {
        gcall(
            &lab,
            gw,
            addr,
            "weir.v1.Gateway/DeleteSession",
            json!({ "session": { "subscriber_id": sub } }),
        );
    }
    wait_until(
        Duration::from_secs(10),
        "both CCR-Ts release every reservation",
        || {
            let ((_, r1), (_, r2)) = containers(&lab, OWNER);
            r1 == 0 && r2 == 0
        },
    );
    let ((bucket, _), (money, _)) = containers(&lab, OWNER);
    let from_bucket = FAMILY_BUCKET - bucket;
    let debited = from_bucket + (0 - money);
    say(&format!(
        "{test}: metered {metered_owner} + {metered_member} octets of rating group 10 at the two gateways; debited {debited} ({from_bucket} from the bucket, {} beyond it)",
        -money
    ));
    assert!((0..=FAMILY_BUCKET).contains(&from_bucket), "{from_bucket}");
    assert_eq!(debited, metered_owner + metered_member);
    // The member has no containers of its own: it drew on the owner's only.
    let mine = admin(
        &lab,
        "ListCreditContainers",
        json!({ "subscriber_id": MEMBER }),
    );
    assert_eq!(mine["containers"], Value::Null, "{mine}");
}

/// The README's online-charging block, as one shell script.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let marker = "<!-- online-charging commands: tests/lab_charging.rs runs this block as written, in one shell -->";
    let start = readme.find(marker).expect("the README has the block") + marker.len();
    let block = readme[start..]
        .strip_prefix("\n```sh\n")
        .expect("a sh block follows");
    block[..block.find("```").unwrap()].to_string()
}

#[test]
fn the_readme_online_charging_commands_run_as_written() {
    let test = "lab_charging_readme";
    if !ready(test) {
        return;
    }
    let lab = charging_lab("or", &[]);
    // As root already, in this lab's namespaces.
    let script = readme_block().replace("sudo ", "").replace(
        "ip netns exec weir-",
        &format!("ip netns exec {}", lab.prefix),
    );
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", &script]);
    let out = run(&mut sh, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The one-line answers of curl, in order: the download the final units end, the 302, the
    // offline group's 200, the success page, the site after it.
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let (status, size) = lines[0].split_once(' ').unwrap();
    assert!(["200", "000"].contains(&status), "{}", lines[0]);
    let size: u64 = size.parse().unwrap();
    // The meter counts octets on the wire both ways, retransmissions and headers included, so
    // the body is somewhat less than the bucket; never more than the bucket and the last grant's
    // packets in flight.
    assert!(
        (100_000..1_200_000).contains(&size),
        "at most about 1 MB delivered: {}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "302 http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2F&sub=imsi-001010000000002"
    );
    assert_eq!(&lines[2..], ["200", "200", "200"], "{stdout}");
    // The CCR-T released every reservation; the bucket is used up, money paid the rest.
    let ((bucket, r1), (money, r2)) = containers(&lab, UE2_SUB);
    assert_eq!((bucket, r1, r2), (0, 0, 0), "{stdout}");
    assert!(money < 0, "{money}");
}
