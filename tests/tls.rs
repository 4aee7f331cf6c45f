//! TLS and client-certificate authentication on `weir policy-engine`, with certificates made at
//! test time by the real `openssl` and the server driven by the real grpcurl: reflection and
//! an Admin call over TLS, plaintext refused, client certificates required (none, another CA's,
//! the right one), a bad TLS file stopping the server with the file named, and RARs pushed to a
//! gateway that itself requires the policy engine's client certificate.
//!
//! openssl and grpcurl come from scripts/install-deps.sh; when one is missing each test says so
//! and stops; under CI (`CI=true`) that is a failure.

mod common;
#[path = "support/recording_gateway.rs"]
mod recording_gateway;

use recording_gateway::RecordingGateway;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const RICH: &str = "imsi-001010000000001";

fn tools_or_skip(test: &str) -> bool {
    let found = |tool: &str, arg: &str| {
        Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found("grpcurl", "-version") && found("openssl", "version") {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: grpcurl or openssl is missing; scripts/install-deps.sh installs them");
    }
    use std::io::Write as _;
    let line = format!("{test}: skipped: grpcurl or openssl is missing\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// A temporary folder, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("weir-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Dir, args: &[&str]) {
    let out = common::run(
        Command::new("openssl").current_dir(&dir.0).args(args),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`NAME-ca.pem`, `NAME-ca.key`).
fn make_ca(dir: &Dir, name: &str) {
    let (pem, key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN=Weir test {name} CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A certificate `NAME.pem` with key `NAME.key`, signed by CA `ca`, for `usage` (serverAuth
/// or clientAuth), naming 127.0.0.1 and localhost.
fn make_cert(dir: &Dir, ca: &str, name: &str, usage: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.0.join(&ext),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        ),
    )
    .unwrap();
    let (csr, key, pem) = (
        format!("{name}.csr"),
        format!("{name}.key"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}-ca.pem"),
            "-CAkey",
            &format!("{ca}-ca.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// Two CAs (`good`, `other`); the server's certificate and a client certificate from `good`, a
/// client certificate from `other`.
fn certificates(test: &str) -> Dir {
    let dir = Dir::new(test);
    make_ca(&dir, "good");
    make_ca(&dir, "other");
    make_cert(&dir, "good", "server", "serverAuth");
    make_cert(&dir, "good", "client", "clientAuth");
    make_cert(&dir, "other", "stranger", "clientAuth");
    dir
}

fn config(extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
token_key = "{KEY}"
predefined_rules = ["dns", "web"]
reauth = {{ timeout = 2, attempts = 1, backoff = 0, max_backoff = 0 }}
{extra}

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = {{ support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[plan]]
name = "standard"
predefined = ["dns", "web"]

[[account]]
subscriber = "{RICH}"
balance = 1000
"#
    )
}

/// A running `weir policy-engine`; killed on drop.
struct Engine {
    child: Child,
    addr: String,
}

impl Engine {
    /// Starts it with `config` in `dir`; the address once it says where it listens.
    fn start(dir: &Dir, config: &str) -> Engine {
        let path = dir.0.join("pe.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["policy-engine", "--config"])
            .arg(&path)
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
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Engine { child, addr },
            Err(_) => {
                let _ = child.kill();
                panic!("weir policy-engine did not say where it listens");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// grpcurl with `tls` (its TLS flags) against `addr`.
fn grpcurl(tls: &[&str], addr: &str, rest: &[&str]) -> Output {
    common::run(
        Command::new("grpcurl")
            .args(["-max-time", "10"])
            .args(tls)
            .arg(addr)
            .args(rest),
        Duration::from_secs(30),
    )
}

/// grpcurl until the server answers a health check over `tls` (the listener is bound before
/// the address is printed, gRPC a moment later); false if it never does.
fn healthy(tls: &[&str], addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if grpcurl(tls, addr, &["grpc.health.v1.Health/Check"])
            .status
            .success()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn call(tls: &[&str], addr: &str, method: &str, body: Value) -> Value {
    let body = body.to_string();
    let mut flags = tls.to_vec();
    flags.extend(["-d", body.as_str()]);
    let out = grpcurl(&flags, addr, &[method]);
    assert!(
        out.status.success(),
        "{method}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn the_policy_engine_serves_over_tls_and_refuses_plaintext() {
    if !tools_or_skip("tls_serves") {
        return;
    }
    let dir = certificates("serves");
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        dir.path("server.pem"),
        dir.path("server.key")
    );
    let pe = Engine::start(&dir, &config(&tls));
    let ca = dir.path("good-ca.pem");
    let with_ca = ["-cacert", ca.as_str()];
    assert!(healthy(&with_ca, &pe.addr), "never healthy over TLS");

    let listed = grpcurl(&with_ca, &pe.addr, &["list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let names = String::from_utf8_lossy(&listed.stdout).to_string();
    let mut names: Vec<&str> = names.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "weir.v1.Admin",
            "weir.v1.ChargingSystem",
            "weir.v1.PolicyEngine"
        ]
    );
    let account = call(
        &with_ca,
        &pe.addr,
        "weir.v1.Admin/GetAccount",
        json!({ "subscriber_id": RICH }),
    );
    assert_eq!(account["subscriberId"], RICH);
    assert_eq!(account["balance"], "1000");

    // Plaintext to a TLS server fails; so does TLS that does not trust the server's CA.
    let plain = grpcurl(&["-plaintext"], &pe.addr, &["list"]);
    assert!(!plain.status.success(), "plaintext was served");
    let other = dir.path("other-ca.pem");
    let wrong_ca = grpcurl(&["-cacert", other.as_str()], &pe.addr, &["list"]);
    assert!(!wrong_ca.status.success(), "an unknown CA was trusted");
    assert!(
        stderr(&wrong_ca).contains("certificate"),
        "{}",
        stderr(&wrong_ca)
    );
}

#[test]
fn client_certificates_are_required_when_a_client_ca_is_set() {
    if !tools_or_skip("tls_client_ca") {
        return;
    }
    let dir = certificates("client_ca");
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
        dir.path("server.pem"),
        dir.path("server.key"),
        dir.path("good-ca.pem")
    );
    let pe = Engine::start(&dir, &config(&tls));
    let ca = dir.path("good-ca.pem");
    let (cert, key) = (dir.path("client.pem"), dir.path("client.key"));
    let right = [
        "-cacert",
        ca.as_str(),
        "-cert",
        cert.as_str(),
        "-key",
        key.as_str(),
    ];
    assert!(
        healthy(&right, &pe.addr),
        "never healthy with the right client certificate"
    );

    let account = call(
        &right,
        &pe.addr,
        "weir.v1.Admin/GetAccount",
        json!({ "subscriber_id": RICH }),
    );
    assert_eq!(account["balance"], "1000");

    let none = grpcurl(&["-cacert", ca.as_str()], &pe.addr, &["list"]);
    assert!(
        !none.status.success(),
        "served without a client certificate"
    );
    let (scert, skey) = (dir.path("stranger.pem"), dir.path("stranger.key"));
    let stranger = grpcurl(
        &[
            "-cacert",
            ca.as_str(),
            "-cert",
            scert.as_str(),
            "-key",
            skey.as_str(),
        ],
        &pe.addr,
        &["list"],
    );
    assert!(
        !stranger.status.success(),
        "served a client certificate from another CA"
    );
    let plain = grpcurl(&["-plaintext"], &pe.addr, &["list"]);
    assert!(!plain.status.success(), "plaintext was served");
}

/// Runs `weir policy-engine` with `extra` and expects it to stop at once with an error.
fn refused(dir: &Dir, extra: &str) -> String {
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, config(extra)).unwrap();
    let out = common::run(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["policy-engine", "--config"])
            .arg(&path)
            .env("WEIR_LOG", "off"),
        Duration::from_secs(30),
    );
    assert!(!out.status.success(), "started with {extra}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "announced itself with {extra}"
    );
    stderr(&out)
}

#[test]
fn a_bad_tls_file_stops_the_policy_engine_naming_it() {
    if !tools_or_skip("tls_bad") {
        return;
    }
    let dir = certificates("bad");
    let (cert, key) = (dir.path("server.pem"), dir.path("server.key"));
    let missing = dir.path("missing.pem");

    let e = refused(
        &dir,
        &format!("tls = {{ cert = \"{missing}\", key = \"{key}\" }}"),
    );
    assert!(
        e.contains(&format!("cannot read certificate {missing}: ")),
        "{e}"
    );
    let e = refused(
        &dir,
        &format!("tls = {{ cert = \"{cert}\", key = \"{cert}\" }}"),
    );
    assert!(
        e.contains(&format!("key {cert}: key file has no private key")),
        "{e}"
    );
    let e = refused(
        &dir,
        &format!("tls = {{ cert = \"{key}\", key = \"{key}\" }}"),
    );
    assert!(
        e.contains(&format!("certificate {key}: the file has no certificate")),
        "{e}"
    );
    let other_key = dir.path("client.key");
    let e = refused(
        &dir,
        &format!("tls = {{ cert = \"{cert}\", key = \"{other_key}\" }}"),
    );
    assert!(
        e.contains(&format!(
            "TLS with certificate {cert} and key {other_key}: "
        )),
        "{e}"
    );
    let e = refused(
        &dir,
        &format!("tls = {{ cert = \"{cert}\", key = \"{key}\", client_ca = \"{missing}\" }}"),
    );
    assert!(
        e.contains(&format!("cannot read client CA certificate {missing}: ")),
        "{e}"
    );
    let e = refused(&dir, &format!("gateway_tls = {{ ca = \"{missing}\" }}"));
    assert!(
        e.contains(&format!("cannot read CA certificate {missing}: ")),
        "{e}"
    );
    let e = refused(&dir, &format!("tls = {{ cert = \"{cert}\" }}"));
    assert!(e.contains("tls: missing required key 'key'"), "{e}");
}

/// Serves a recording gateway over TLS with the server certificate, requiring client
/// certificates from `good`; stops with the runtime.
fn tls_gateway(dir: &Dir) -> (RecordingGateway, String, tokio::runtime::Runtime) {
    let tls = weir::proto::tls::server_tls(&weir::policy::ServerTls {
        cert: dir.0.join("server.pem"),
        key: dir.0.join("server.key"),
        client_ca: Some(dir.0.join("good-ca.pem")),
    })
    .unwrap();
    recording_gateway::serve_tls("127.0.0.1:0", tls)
}

/// Opens a session whose gateway is at `gw` and pushes one rule to it: grpcurl's output.
fn push(pe: &Engine, gw: &str, session: &str) -> Output {
    let plain = ["-plaintext"];
    assert!(healthy(&plain, &pe.addr), "never healthy");
    call(
        &plain,
        &pe.addr,
        "weir.v1.PolicyEngine/CreateSession",
        json!({
            "session_id": session,
            "origin_host": "gw.test",
            "subscriber_id": RICH,
            "framed_ip_address": "10.45.0.2",
            "reauth_endpoint": gw,
        }),
    );
    let body = json!({ "session_id": session, "charging_rule_install": [{ "charging_rule_name": ["web"] }] });
    grpcurl(
        &["-plaintext", "-d", &body.to_string()],
        &pe.addr,
        &["weir.v1.Admin/PushRules"],
    )
}

#[test]
fn rars_reach_a_tls_gateway_with_the_client_certificate() {
    if !tools_or_skip("tls_rar") {
        return;
    }
    let dir = certificates("rar");
    let (gw, gw_addr, _rt) = tls_gateway(&dir);
    let endpoint = format!("http://{gw_addr}");

    let gateway_tls = format!(
        "gateway_tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
        dir.path("good-ca.pem"),
        dir.path("client.pem"),
        dir.path("client.key")
    );
    let pe = Engine::start(&dir, &config(&gateway_tls));
    let out = push(&pe, &endpoint, "gw.test;1");
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result["results"][0]["resultCode"], "DIAMETER_SUCCESS",
        "{result}"
    );
    let rars = gw.rars.lock().unwrap().clone();
    assert_eq!(rars.len(), 1);
    assert_eq!(rars[0].session_id, "gw.test;1");
    assert_eq!(rars[0].charging_rule_install[0].charging_rule_name, ["web"]);
    drop(pe);

    // Without its client certificate, and in plaintext, the push never arrives.
    for (i, extra) in [
        format!("gateway_tls = {{ ca = \"{}\" }}", dir.path("good-ca.pem")),
        String::new(),
    ]
    .iter()
    .enumerate()
    {
        let pe = Engine::start(&dir, &config(extra));
        let out = push(&pe, &endpoint, &format!("gw.test;{}", i + 2));
        assert!(!out.status.success(), "{extra}: pushed");
        let e = stderr(&out);
        assert!(e.contains("Code: Unavailable"), "{extra}: {e}");
    }
    assert_eq!(gw.rars.lock().unwrap().len(), 1);
}

#[test]
fn the_policy_engine_times_its_requests_at_metrics() {
    if !tools_or_skip("tls_metrics") {
        return;
    }
    let dir = certificates("metrics");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "metrics_listen = \"127.0.0.1:{port}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
        dir.path("server.pem"),
        dir.path("server.key")
    );
    let pe = Engine::start(&dir, &config(&extra));
    let ca = dir.path("good-ca.pem");
    let with_ca = ["-cacert", ca.as_str()];
    assert!(healthy(&with_ca, &pe.addr), "never healthy over TLS");
    for _ in 0..2 {
        call(
            &with_ca,
            &pe.addr,
            "weir.v1.Admin/GetAccount",
            json!({ "subscriber_id": RICH }),
        );
    }
    let unknown = grpcurl(
        &[
            "-cacert",
            ca.as_str(),
            "-d",
            "{\"subscriber_id\": \"imsi-9\"}",
        ],
        &pe.addr,
        &["weir.v1.Admin/GetAccount"],
    );
    assert!(!unknown.status.success());
    let out = common::run(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/metrics"),
        ]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "# TYPE weir_policy_engine_request_seconds histogram",
        "weir_policy_engine_requests_total{rpc=\"weir.v1.Admin/GetAccount\",result=\"Ok\"} 2",
        "weir_policy_engine_requests_total{rpc=\"weir.v1.Admin/GetAccount\",result=\"NotFound\"} 1",
        "weir_policy_engine_request_seconds_count{rpc=\"weir.v1.Admin/GetAccount\"} 3",
        "weir_policy_engine_request_seconds_bucket{rpc=\"weir.v1.Admin/GetAccount\",le=\"+Inf\"} 3",
    ] {
        assert!(lines.contains(&want), "{want} missing in\n{text}");
    }
}
