//! `weir ctl` against a real `weir run`: every command of the README's ctl section run as written
//! in the lab (`scripts/lab.sh up` under a prefix of its own, torn down even on failure), with
//! its exact output; and, against a gateway in a namespace of its own, the errors for a gateway
//! that is down, an unknown subscriber, a rule the gateway cannot install, and TLS.

mod common;
#[path = "support/netns_gateway.rs"]
mod gateway;
#[path = "support/grpc.rs"]
mod grpc;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const SUB: &str = "imsi-001010000000007";

/// The lines of the README's ctl block.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let marker = "<!-- ctl commands: tests/ctl.rs runs these lines as written, in order -->";
    let start = readme.find(marker).expect("the README has the ctl block") + marker.len();
    let block = &readme[start..];
    let block = block.strip_prefix("\n```sh\n").expect("a sh block follows");
    let end = block.find("```").unwrap();
    block[..end].lines().map(str::to_string).collect()
}

struct Ctl {
    gw: gateway::Gateway,
    config: std::path::PathBuf,
}

impl Ctl {
    /// weir ctl with these arguments; (exit code, stdout, stderr).
    fn args(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.gw.exec(&[env!("CARGO_BIN_EXE_weir"), "ctl"]);
        cmd.args(args);
        let out = common::run(&mut cmd, Duration::from_secs(20));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn start(test: &str) -> Ctl {
    let gw = gateway::Gateway::start(test, &[]);
    let dir = std::env::temp_dir().join(format!("weir-ctl-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(&config, gateway::CONFIG).unwrap();
    // The README's operator-API example, which the ctl section builds on.
    gw.grpc(
        "CreateSession",
        &json!({"subscriber_id": SUB, "framed_ip_address": "10.45.0.7",
                "charging_rule_install": [{"charging_rule_name": ["web"]}]}),
    );
    Ctl { gw, config }
}

/// A README line as the shell runs it in `lab`: as root already, the lab's prefix and the
/// binary under test in place of the README's.
fn lab_line(lab: &common::Lab, line: &str) -> Command {
    let script = line
        .replace("sudo ", "")
        .replace(
            "ip netns exec weir-",
            &format!("ip netns exec {}", lab.prefix),
        )
        .replace(
            "target/release/weir ",
            &format!("{} ", env!("CARGO_BIN_EXE_weir")),
        );
    let mut c = Command::new("sh");
    c.args(["-c", &script]);
    c
}

/// A `sessions` table's rows, cell by cell; the octet columns (the last two) must be numbers and
/// are left out, since they count real TCP exchanges.
fn rows_without_octets(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| {
            let mut cells: Vec<String> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            assert!(cells.len() >= 6, "a sessions row: {l}");
            for octets in cells.split_off(cells.len() - 2) {
                assert!(octets.parse::<u64>().is_ok(), "octets {octets:?} in {l}");
            }
            cells
        })
        .collect()
}

/// The cells of a `sessions` table's header line.
fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

const HEADER: [&str; 6] = ["SUBSCRIBER", "ADDRESSES", "RULES", "REDIRECT", "UP", "DOWN"];

const UE: &str = "imsi-001010000000001";
const UE2: &str = "imsi-001010000000002";

#[test]
fn readme_ctl_commands_run_in_the_lab_as_written() {
    let test = "ctl_readme";
    if !common::root_or_skip(test) || !grpc::grpcurl_or_skip(test) {
        return;
    }
    let lines = readme_commands();
    let ctl = "sudo ip netns exec weir-gw target/release/weir ctl --server 192.0.2.2:50052";
    let curl = |ns: &str, rest: &str| format!("sudo ip netns exec {ns} curl {rest}");
    let expect_lines = [
        curl("weir-ue", "-s -o /dev/null -w '%{http_code}\\n' http://site.example/"),
        curl("weir-ue2", "-s -o /dev/null -w '%{http_code}\\n' http://site.example/"),
        format!("{ctl} sessions"),
        format!("{ctl} session {UE}"),
        format!("{ctl} rule install {UE} --name no-site --precedence 2 --gate disabled --flow 'permit out 6 from 198.51.100.10 80 to assigned'"),
        curl("weir-ue", "-4 -s -o /dev/null -w '%{http_code}\\n' --max-time 3 http://site.example/"),
        format!("{ctl} rule remove {UE} no-site"),
        format!("{ctl} redirect {UE} --url http://portal.example/recharge"),
        curl("weir-ue", "-s -o /dev/null -w '%{http_code} %{redirect_url}\\n' http://site.example/"),
        format!("{ctl} sessions"),
        format!("{ctl} lift {UE}"),
        format!("{ctl} rule install {UE2} web"),
        format!("{ctl} lift {UE2}"),
        curl("weir-ue2", "-s -o /dev/null -w '%{http_code}\\n' http://site.example/"),
        format!("{ctl} --json session {UE2}"),
        format!("{ctl} stats"),
        format!("{ctl} events --follow"),
    ];
    assert_eq!(
        lines, expect_lines,
        "the README's ctl block changed: update this test"
    );
    let lab = common::Lab::up("ctl", &[]);
    let ok = |i: usize| -> String {
        let out = common::run(&mut lab_line(&lab, &lines[i]), Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: {:?}\n{stderr}\nlog:\n{}",
            lines[i],
            out.status,
            lab.log()
        );
        String::from_utf8(out.stdout).unwrap()
    };

    // The event watch runs beside the others, from before the first change to the last.
    let mut events = lab_line(&lab, &lines[16])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    assert_eq!(ok(0), "200\n");
    assert_eq!(ok(1), "302\n");
    let sessions = ok(2);
    // The columns are as wide as their widest cell, the octets too (counted once a second).
    assert_eq!(header(&sessions), HEADER, "{sessions}");
    assert_eq!(
        rows_without_octets(&sessions),
        [
            vec![
                UE,
                "10.45.0.2,2001:db8:45:1::/64",
                "dns,web,blocked-p2p",
                "no"
            ],
            vec![
                UE2,
                "10.45.0.3,2001:db8:45:2::/64",
                "recharge-redirect",
                "yes (pcc-rule recharge-redirect)"
            ],
        ],
        "{sessions}"
    );

    let session = ok(3);
    let field = |name: &str| {
        session
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name}: {session}"))
            .trim()
            .to_string()
    };
    let (session_id, started) = (field("session "), field("started "));
    assert!(session_id.starts_with("gw.lab.example;"), "{session}");
    let head: Vec<&str> = session.lines().take(12).collect();
    assert_eq!(
        head,
        [
            &format!("subscriber  {UE}")[..],
            &format!("session     {session_id}"),
            "addresses   10.45.0.2,2001:db8:45:1::/64",
            "origin      policy-engine",
            &format!("started     {started}"),
            "redirect    no",
            "triggers    WEIR_RECHARGE_SUCCESS,USAGE_REPORT",
            "",
            "RULE         KIND        PRECEDENCE  GATE  RG  FLOWS",
            "dns          predefined  -           -     -   -",
            "web          predefined  -           -     -   -",
            "blocked-p2p  predefined  -           -     -   -",
        ],
        "{session}"
    );
    // Usage: a row per rating group once something is counted, and the monitoring key with its
    // grant (columns as wide as the counts).
    let usage: Vec<Vec<&str>> = session
        .lines()
        .skip_while(|l| !l.starts_with("USAGE "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        usage.first().map(Vec::as_slice),
        Some(
            &[
                "USAGE", "UP", "OCTETS", "DOWN", "OCTETS", "UP", "PACKETS", "DOWN", "PACKETS",
                "GRANT"
            ][..]
        ),
        "{session}"
    );
    let mk = usage
        .iter()
        .find(|r| r[0] == "mk:mk-web")
        .unwrap_or_else(|| panic!("no mk-web usage: {session}"));
    assert_eq!(mk[5..], ["10485760", "total"], "{session}");
    assert!(
        usage[1..]
            .iter()
            .all(|r| r[0] == "mk:mk-web" || r[0] == "rg:10"),
        "{session}"
    );

    assert_eq!(ok(4), format!("installed no-site for {UE}\n"));
    // The gate is closed: the request times out (curl's 000, exit 28).
    let out = common::run(&mut lab_line(&lab, &lines[5]), Duration::from_secs(20));
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(28), "000\n")
    );
    assert_eq!(ok(6), format!("removed no-site for {UE}\n"));
    assert_eq!(
        ok(7),
        format!("{UE} redirected to http://portal.example/recharge (pcc-rule operator-redirect)\n")
    );
    assert_eq!(
        ok(8),
        format!("302 http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2F&sub={UE}\n")
    );
    let redirected = ok(9);
    let rows = rows_without_octets(&redirected);
    assert_eq!(
        rows,
        [
            vec![
                UE,
                "10.45.0.2,2001:db8:45:1::/64",
                "dns,web,blocked-p2p,operator-redirect",
                "yes (pcc-rule operator-redirect)"
            ],
            vec![
                UE2,
                "10.45.0.3,2001:db8:45:2::/64",
                "recharge-redirect",
                "yes (pcc-rule recharge-redirect)"
            ],
        ],
        "{redirected}"
    );
    // The README shows this table as the example of `sessions` (its octets from one such run).
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let shown = readme
        .split("```\nSUBSCRIBER ")
        .nth(1)
        .and_then(|t| t.split("```").next())
        .map(|t| format!("SUBSCRIBER {t}"))
        .expect("the README shows a sessions table");
    assert_eq!(header(&shown), HEADER, "{shown}");
    assert_eq!(header(&redirected), HEADER, "{redirected}");
    assert_eq!(rows_without_octets(&shown), rows, "{shown}");

    assert_eq!(ok(10), format!("{UE} not redirected\n"));
    assert_eq!(ok(11), format!("installed web for {UE2}\n"));
    assert_eq!(ok(12), format!("{UE2} not redirected\n"));
    assert_eq!(ok(13), "200\n");
    // --json is the API's message, field for field what grpcurl prints for GetSession.
    let mine: Value = serde_json::from_str(&ok(14)).unwrap();
    let gw = lab.ns("gw");
    let theirs = grpc::call(
        &["ip", "netns", "exec", &gw],
        "192.0.2.2:50052",
        "weir.v1.Gateway/GetSession",
        &json!({"session": {"subscriber_id": UE2}}),
    );
    // The usage moves on once a second as the workers publish it; every other field is the same.
    let without_usage = |v: &Value| {
        let mut v = v.clone();
        for k in ["ratingGroupUsage", "monitoringKeyUsage"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(without_usage(&mine), without_usage(&theirs));
    assert_eq!(mine["subscriberId"], UE2);
    assert_eq!(mine["framedIpAddress"], "10.45.0.3");
    assert_eq!(mine["origin"], "policy-engine");
    assert_eq!(mine["chargingRuleName"], json!(["web"]));
    assert_eq!(mine["redirect"], json!({}));

    let stats = ok(15);
    let head: Vec<&str> = stats.lines().take(6).collect();
    assert_eq!(
        head[..5],
        [
            "sessions             2",
            "redirected           0",
            head[2],
            "events dropped       0",
            "",
        ],
        "{stats}"
    );
    assert!(head[2].starts_with("snapshot generation  "), "{stats}");
    assert_eq!(head[5], "WORKER  FRAMES IN  FRAMES OUT  FLOWS  DROPS");
    // The closed gate's drops are counted on some worker.
    assert!(stats.contains("gate_closed="), "{stats}");

    // The watch saw each change in order: the sessions coming up, the redirects applied and lifted.
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(3)) {
        seen.push(line);
    }
    let _ = events.kill();
    let _ = events.wait();
    let tails: Vec<String> = seen
        .iter()
        .map(|l| {
            let (time, rest) = l.split_once("  ").unwrap();
            assert!(time.ends_with('Z') && time.len() >= 20, "{l}");
            rest.to_string()
        })
        .collect();
    let redirects: Vec<&String> = tails.iter().filter(|t| t.contains(" redirect-")).collect();
    assert_eq!(
        redirects,
        [
            &format!("{UE2}  redirect-applied pcc-rule recharge-redirect"),
            &format!("{UE}  redirect-applied pcc-rule operator-redirect"),
            &format!("{UE}  redirect-lifted REDIRECT_LIFT_CAUSE_POLICY_ENGINE operator-redirect"),
            &format!("{UE2}  redirect-lifted REDIRECT_LIFT_CAUSE_POLICY_ENGINE recharge-redirect"),
        ],
        "{seen:#?}"
    );
}

#[test]
fn ctl_errors_name_the_gateway_the_subscriber_and_the_rule() {
    let test = "ctl_errors";
    if !common::root_or_skip(test) || !grpc::grpcurl_or_skip(test) {
        return;
    }
    let ctl = start("ctle");
    let config = ctl.config.display().to_string();

    // Nothing listens on port 1 in the namespace: exit 3.
    let (code, out, err) = ctl.args(&["--server", "127.0.0.1:1", "sessions"]);
    assert_eq!((code, out.as_str()), (3, ""));
    assert!(
        err.starts_with("weir ctl: cannot reach the gateway at 127.0.0.1:1: ")
            && err.contains("Connection refused")
            && err.ends_with('\n')
            && err.lines().count() == 1,
        "{err}"
    );

    // An unknown subscriber: exit 4, for a read and for a change.
    for args in [
        vec!["--config", &config, "session", "imsi-001010000000099"],
        vec!["--config", &config, "lift", "imsi-001010000000099"],
        vec![
            "--config",
            &config,
            "rule",
            "remove",
            "imsi-001010000000099",
            "web",
        ],
    ] {
        let (code, out, err) = ctl.args(&args);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (4, "", "weir ctl: no session for imsi-001010000000099\n"),
            "{args:?}"
        );
    }

    // A rule the gateway does not know: exit 1 with its Rule-Failure-Code; the other installs.
    let (code, out, err) = ctl.args(&["--config", &config, "rule", "install", SUB, "nosuch"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.starts_with("weir ctl: rules not installed:\n  nosuch: UNKNOWN_RULE_NAME: "),
        "{err}"
    );

    // A bad Flow-Description is the gateway's word, not ours.
    let (code, _, err) = ctl.args(&[
        "--config",
        &config,
        "rule",
        "install",
        SUB,
        "--name",
        "bad",
        "--precedence",
        "5",
        "--flow",
        "permit out 6 frm any to assigned",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("weir ctl: rules not installed:\n  bad: INCORRECT_FLOW_INFORMATION: "),
        "{err}"
    );

    // A configuration that serves TLS, without a CA: exit 2 before any connection.
    let tls = ctl.config.with_file_name("tls.toml");
    std::fs::write(
        &tls,
        gateway::CONFIG.replace(
            "listen = \"127.0.0.1:50052\"",
            "listen = \"127.0.0.1:50052\"\ntls = { cert = \"gw.pem\", key = \"gw.key\" }",
        ),
    )
    .unwrap();
    let (code, _, err) = ctl.args(&["--config", tls.to_str().unwrap(), "stats"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("weir ctl: the gateway at 127.0.0.1:50052 serves TLS ([control] tls in "),
        "{err}"
    );

    // `events` without a way to stop is refused, before connecting.
    let (code, _, err) = ctl.args(&["--server", "127.0.0.1:1", "events"]);
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "weir ctl: events are a live stream: add --follow (until interrupted), --count N or --timeout SECONDS\n"
        )
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl in `dir`.
fn certificates(dir: &std::path::Path) {
    let script = r#"
set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=Weir ctl test CA' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
for name in server:serverAuth client:clientAuth; do
  n=${name%%:*}; usage=${name#*:}
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' "$usage" > $n.ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $n.key -out $n.csr -subj "/CN=$n"
  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem -days 2 -extfile $n.ext
done
"#;
    let out = common::run(
        Command::new("sh").args(["-c", script]).current_dir(dir),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `weir run` serving weir.v1.Gateway over TLS with client certificates required, in a
/// namespace of its own; `weir ctl` reaches it with --ca, --cert and --key, and without a
/// client certificate the handshake fails as "cannot reach" (exit 3).
#[test]
fn ctl_speaks_tls_with_a_client_certificate() {
    let test = "ctl_tls";
    if !common::root_or_skip(test) {
        return;
    }
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("{test}: openssl is missing; scripts/install-deps.sh installs it");
    }
    let ns = format!("w{}ctltls", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("weir-{ns}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let config = dir.join("weir.toml");
    std::fs::write(
        &config,
        gateway::CONFIG
            .replace(
                "listen = \"127.0.0.1:50052\"",
                &format!(
                    "listen = \"127.0.0.1:50052\"\ntls = {{ cert = \"{0}/server.pem\", key = \"{0}/server.key\", client_ca = \"{0}/ca.pem\" }}",
                    dir.display()
                ),
            )
            .replace("report_listen = \"127.0.0.1:9464\"", "report_listen = \"\""),
    )
    .unwrap();
    struct Cleanup(String, std::path::PathBuf, Option<std::process::Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(c) = self.2.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", &ns])
        .stderr(Stdio::null())
        .status();
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let mut cleanup = Cleanup(ns.clone(), dir.clone(), None);
    assert!(Command::new("ip")
        .args(["-n", &ns, "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    cleanup.2 = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                env!("CARGO_BIN_EXE_weir"),
                "run",
                "--config",
            ])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let ctl = |args: &[&str]| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_weir"), "ctl"])
            .args(args)
            .current_dir(&dir);
        let out = common::run(&mut cmd, Duration::from_secs(20));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cfg = config.to_str().unwrap();
    let with_cert = [
        "--config",
        cfg,
        "--ca",
        "ca.pem",
        "--cert",
        "client.pem",
        "--key",
        "client.key",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut args = with_cert.to_vec();
        args.push("sessions");
        let (code, out, err) = ctl(&args);
        if code == 0 {
            assert_eq!(
                out, "SUBSCRIBER  ADDRESSES  RULES  REDIRECT  UP  DOWN\n",
                "{err}"
            );
            break;
        }
        assert_eq!(code, 3, "{err}");
        assert!(
            std::time::Instant::now() < deadline,
            "{err}\n{}",
            std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The configuration says TLS: without --ca, ctl says what it needs before connecting.
    let (code, _, err) = ctl(&["--config", cfg, "sessions"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("serves TLS ([control] tls in "), "{err}");
    // A CA but no client certificate: the server refuses the handshake.
    let (code, out, err) = ctl(&["--config", cfg, "--ca", "ca.pem", "sessions"]);
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert_eq!(
        err,
        "weir ctl: cannot reach the gateway at 127.0.0.1:50052: the gateway closed the connection \
         (one that requires client certificates does so without one: give --cert and --key)\n"
    );
    // Plaintext to a TLS server fails the same way, never silently.
    let (code, _, err) = ctl(&["--server", "127.0.0.1:50052", "stats"]);
    assert_eq!(code, 3, "{err}");
}
