//! `weir ctl` against a real `weir run` (in a namespace of its own): every command of the
//! README's ctl section, run as written (the binary's path in place of `weir`, and the test's
//! configuration file), with its exact output; and the errors for a gateway that is down, an
//! unknown subscriber and a rule the gateway cannot install.

mod common;
#[path = "support/netns_gateway.rs"]
mod gateway;
#[path = "support/grpc.rs"]
mod grpc;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
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
    /// A README line as the shell runs it, inside the gateway's namespace.
    fn line(&self, line: &str) -> Command {
        let rest = line
            .strip_prefix("weir ctl ")
            .unwrap_or_else(|| panic!("a ctl line: {line}"));
        let script = format!(
            "{} ctl --config {} {rest}",
            env!("CARGO_BIN_EXE_weir"),
            self.config.display()
        );
        self.gw.exec(&["sh", "-c", &script])
    }

    fn run(&self, line: &str) -> Output {
        common::run(&mut self.line(line), Duration::from_secs(20))
    }

    /// Runs a line that must succeed and print nothing on stderr; returns its stdout.
    fn ok(&self, line: &str) -> String {
        let out = self.run(line);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{line}: {:?}\n{stderr}", out.status);
        assert_eq!(stderr, "", "{line}");
        String::from_utf8(out.stdout).unwrap()
    }

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

#[test]
fn readme_ctl_commands_run_as_written() {
    let test = "ctl_readme";
    if !common::root_or_skip(test) || !grpc::grpcurl_or_skip(test) {
        return;
    }
    let ctl = start("ctlr");
    let lines = readme_commands();
    let expect_lines = [
        "weir ctl sessions",
        "weir ctl session imsi-001010000000007",
        "weir ctl rule install imsi-001010000000007 web",
        "weir ctl rule install imsi-001010000000007 --name no-site --precedence 2 --gate disabled --flow 'permit out 6 from 198.51.100.10 80 to assigned'",
        "weir ctl rule remove imsi-001010000000007 no-site",
        "weir ctl redirect imsi-001010000000007 --url http://portal.example/recharge",
        "weir ctl sessions",
        "weir ctl lift imsi-001010000000007",
        "weir ctl redirect imsi-001010000000007 --rule recharge-redirect",
        "weir ctl --json session imsi-001010000000007",
        "weir ctl lift imsi-001010000000007",
        "weir ctl stats",
        "weir ctl events --follow",
    ];
    assert_eq!(
        lines, expect_lines,
        "the README's ctl block changed: update this test"
    );

    // The event watch runs beside the others, from before the first change to the last.
    let mut events = ctl
        .line(&lines[12])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let sessions = ctl.ok(&lines[0]);
    assert_eq!(
        sessions,
        "SUBSCRIBER            ADDRESSES  RULES  REDIRECT  UP  DOWN\n\
         imsi-001010000000007  10.45.0.7  web    no        0   0\n"
    );

    let session = ctl.ok(&lines[1]);
    let session_id = session
        .lines()
        .find_map(|l| l.strip_prefix("session     "))
        .expect("a session line")
        .to_string();
    assert!(
        session_id.starts_with("weir.gateway;"),
        "{session_id}\n{session}"
    );
    let started = session
        .lines()
        .find_map(|l| l.strip_prefix("started     "))
        .expect("a started line")
        .to_string();
    assert_eq!(
        session,
        format!(
            "subscriber  {SUB}\n\
             session     {session_id}\n\
             addresses   10.45.0.7\n\
             origin      operator\n\
             started     {started}\n\
             redirect    no\n\
             triggers    -\n\
             \n\
             RULE  KIND        PRECEDENCE  GATE  RG  FLOWS\n\
             web   predefined  -           -     -   -\n"
        )
    );

    assert_eq!(ctl.ok(&lines[2]), format!("installed web for {SUB}\n"));
    assert_eq!(ctl.ok(&lines[3]), format!("installed no-site for {SUB}\n"));
    // The dynamic rule is in force as the flags defined it.
    let s: Value = serde_json::from_str(
        &ctl.gw
            .grpc("GetSession", &json!({"session": {"subscriber_id": SUB}})),
    )
    .unwrap();
    assert_eq!(
        s["chargingRuleDefinition"],
        json!([{"chargingRuleName": "no-site", "precedence": 2, "flowStatus": "FLOW_STATUS_DISABLED",
                "flowInformation": [{"flowDescription": "permit out 6 from 198.51.100.10 80 to assigned",
                                     "flowDirection": "FLOW_DIRECTION_BIDIRECTIONAL"}]}])
    );
    assert_eq!(ctl.ok(&lines[4]), format!("removed no-site for {SUB}\n"));

    assert_eq!(
        ctl.ok(&lines[5]),
        format!(
            "{SUB} redirected to http://portal.example/recharge (pcc-rule operator-redirect)\n"
        )
    );
    let redirected = ctl.ok(&lines[6]);
    assert_eq!(
        redirected,
        "SUBSCRIBER            ADDRESSES  RULES                  REDIRECT                          UP  DOWN\n\
         imsi-001010000000007  10.45.0.7  web,operator-redirect  yes (pcc-rule operator-redirect)  0   0\n"
    );
    // The README shows this table as the example of `sessions`.
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```\n{redirected}```")),
        "the README's sessions table differs from:\n{redirected}"
    );
    assert_eq!(ctl.ok(&lines[7]), format!("{SUB} not redirected\n"));
    assert_eq!(
        ctl.ok(&lines[8]),
        format!(
            "{SUB} redirected to http://portal.example/recharge (pcc-rule recharge-redirect)\n"
        )
    );
    // --json is the API's message, field for field what grpcurl prints for GetSession.
    let mine: Value = serde_json::from_str(&ctl.ok(&lines[9])).unwrap();
    let grpcurl: Value = serde_json::from_str(
        &ctl.gw
            .grpc("GetSession", &json!({"session": {"subscriber_id": SUB}})),
    )
    .unwrap();
    assert_eq!(mine, grpcurl);
    assert_eq!(mine["sessionId"], json!(session_id));
    assert_eq!(
        mine["chargingRuleName"],
        json!(["web", "recharge-redirect"])
    );
    assert_eq!(
        mine["redirect"],
        json!({"redirected": true, "cause": "REDIRECT_CAUSE_PCC_RULE", "source": "recharge-redirect",
               "redirectServerAddress": "http://portal.example/recharge"})
    );
    assert_eq!(ctl.ok(&lines[10]), format!("{SUB} not redirected\n"));

    let stats = ctl.ok(&lines[11]);
    let head: Vec<&str> = stats.lines().take(6).collect();
    assert_eq!(
        head[..5],
        [
            "sessions             1",
            "redirected           0",
            head[2],
            "events dropped       0",
            "",
        ]
    );
    assert!(head[2].starts_with("snapshot generation  "), "{stats}");
    assert_eq!(head[5], "WORKER  FRAMES IN  FRAMES OUT  FLOWS  DROPS");
    assert!(stats.lines().count() >= 7, "a row per worker:\n{stats}");

    // The watch saw each redirect applied and lifted, in order.
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
    while seen.len() < 4 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("events: only {seen:?}"),
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    let tails: Vec<String> = seen
        .iter()
        .map(|l| {
            // `2026-12-02T06:50:39.123Z  imsi-…  what`
            let (time, rest) = l.split_once("  ").unwrap();
            assert!(time.ends_with('Z') && time.len() >= 20, "{l}");
            rest.to_string()
        })
        .collect();
    assert_eq!(
        tails,
        [
            format!("{SUB}  redirect-applied pcc-rule operator-redirect"),
            format!("{SUB}  redirect-lifted REDIRECT_LIFT_CAUSE_POLICY_ENGINE operator-redirect"),
            format!("{SUB}  redirect-applied pcc-rule recharge-redirect"),
            format!("{SUB}  redirect-lifted REDIRECT_LIFT_CAUSE_POLICY_ENGINE recharge-redirect"),
        ]
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
