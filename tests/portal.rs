//! `weir portal` over loopback: the recharge page, the payment that answers with the success URL
//! and a token the gateway's watch accepts, and the success page; with a real `weir policy-engine`
//! behind it, the payment credited through weir.v1.Admin before the token (pending while the
//! billing delay runs, in the balance after), and no token when the policy engine fails.

mod common;
#[path = "support/grpc.rs"]
mod grpc;

use grpc::{grpcurl_or_skip, int, PolicyEngine};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;
use weir::peers::portal::{serve, Portal};
use weir::policy::Config;
use weir::token::{parse_hex_key, Holder, Token, TokenKey};

const CONFIG: &str = r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[redirect]
success_url = "http://portal.example/recharge/success"
token_key = "000102030405060708090a0b0c0d0e0f"
token_max_age = 600

[[session]]
subscriber = "imsi-001010000000003"
ipv4 = "10.45.0.3"
"#;

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start() -> Server {
    let config = Config::from_toml_str(CONFIG, "portal").unwrap();
    start_with(Portal::from_config(&config).unwrap())
}

fn start_with(portal: Portal) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve(portal, listener, async {
            let _ = rx.await;
        }))
        .unwrap();
    });
    Server {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    }
}

fn request(server: &Server, raw: &str) -> String {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn recharge_page_payment_and_success() {
    let server = start();
    let page = request(
        &server,
        "GET /recharge?orig=http%3A%2F%2Fsite.example%2Fnews&sub=imsi-001010000000003 HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("imsi-001010000000003"));
    assert!(page.contains("value=\"http://site.example/news\""));
    assert!(page.contains("id=\"recharge\""));
    assert!(page
        .to_ascii_lowercase()
        .contains("cache-control: no-store"));

    let form = "sub=imsi-001010000000003&orig=http%3A%2F%2Fsite.example%2Fnews&amount=10";
    let paid = request(
        &server,
        &format!("POST /recharge/pay HTTP/1.1\r\nHost: portal.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len()),
    );
    assert!(paid.starts_with("HTTP/1.1 303"), "{paid}");
    let location = paid
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap()
        .trim()
        .to_string();
    let query = location.strip_prefix("/recharge/success?").unwrap();
    let token = Token::from_query(query).unwrap();
    let key = TokenKey::new(&parse_hex_key("000102030405060708090a0b0c0d0e0f").unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(
        token.verify(
            &key,
            Holder {
                subscriber: "imsi-001010000000003",
                ue: client
            },
            now,
            600
        ),
        Ok(())
    );

    let done = request(
        &server,
        &format!("GET {location} HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n\r\n"),
    );
    assert!(done.starts_with("HTTP/1.1 200"), "{done}");
    assert!(done.contains("Recharge successful"));
    assert!(done.contains("href=\"http://site.example/news\""));
}

#[test]
fn a_page_without_a_subscriber_names_the_client_address() {
    let server = start();
    let page = request(
        &server,
        "GET / HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n\r\n",
    );
    assert!(page.contains("the device at 127.0.0.1"), "{page}");
    let form = "amount=10";
    let refused = request(
        &server,
        &format!("POST /recharge/pay HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len()),
    );
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
}

#[test]
fn the_portal_refuses_a_configuration_without_success_url() {
    let config = Config::from_toml_str("", "empty").unwrap();
    let err = Portal::from_config(&config).err().unwrap();
    assert!(err.to_string().contains("success_url"));
}

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const SUB: &str = "imsi-001010000000003";

/// A policy engine holding `SUB` at zero balance, with this billing delay.
fn policy_engine(test: &str, billing_delay: u64) -> PolicyEngine {
    PolicyEngine::start(
        test,
        &format!(
            r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
billing_delay = {billing_delay}
origin_host = "pcrf.test"
token_key = "{KEY}"
predefined_rules = ["web"]
default_plan = "standard"

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = {{ support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[plan]]
name = "standard"
predefined = ["web"]

[[account]]
subscriber = "{SUB}"
balance = 0
"#
        ),
    )
}

fn crediting(url: &str) -> Server {
    let config = Config::from_toml_str(CONFIG, "portal").unwrap();
    let portal = Portal::from_config(&config)
        .unwrap()
        .with_policy_engine(url)
        .unwrap();
    assert_eq!(portal.policy_engine(), Some(url));
    start_with(portal)
}

fn pay(server: &Server, form: &str) -> String {
    request(
        server,
        &format!("POST /recharge/pay HTTP/1.1\r\nHost: portal.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len()),
    )
}

fn location(reply: &str) -> Option<String> {
    reply.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_string())
    })
}

#[test]
fn a_payment_is_credited_through_admin_before_the_token_is_issued() {
    if !grpcurl_or_skip("portal_credit") {
        return;
    }
    let pe = policy_engine("portal-credit", 2);
    let server = crediting(&format!("http://{}", pe.addr));
    let paid = pay(
        &server,
        &format!("sub={SUB}&orig=http%3A%2F%2Fsite.example%2F&amount=10"),
    );
    assert!(paid.starts_with("HTTP/1.1 303"), "{paid}");
    let location = location(&paid).expect("303 Location");
    let token = Token::from_query(location.strip_prefix("/recharge/success?").unwrap()).unwrap();
    let key = TokenKey::new(&parse_hex_key(KEY).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let holder = Holder {
        subscriber: SUB,
        ue: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    assert_eq!(token.verify(&key, holder, now, 600), Ok(()));

    // The money is in the store, pending while the billing delay runs, named by the token's
    // nonce.
    let account = pe.call("weir.v1.Admin/GetAccount", &json!({ "subscriber_id": SUB }));
    assert_eq!(int(&account["balance"]), 0, "{account}");
    let pending = account["pendingCredit"]
        .as_array()
        .expect("a pending credit");
    assert_eq!(pending.len(), 1, "{account}");
    assert_eq!(int(&pending[0]["amount"]), 10, "{account}");
    assert_eq!(pending[0]["reference"], &*token.nonce, "{account}");
    let due = int(&pending[0]["dueAt"]) as u64;
    assert!((now + 1..=now + 3).contains(&due), "due {due}, now {now}");

    // Then billing applies it, once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let credited = loop {
        let a = pe.call("weir.v1.Admin/GetAccount", &json!({ "subscriber_id": SUB }));
        if int(&a["balance"]) != 0 || std::time::Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(int(&credited["balance"]), 10, "{credited}");
    assert_eq!(
        credited["pendingCredit"],
        serde_json::Value::Null,
        "{credited}"
    );

    // A second payment is a second credit.
    let again = pay(&server, &format!("sub={SUB}&amount=5"));
    assert!(again.starts_with("HTTP/1.1 303"), "{again}");
    let account = pe.call("weir.v1.Admin/GetAccount", &json!({ "subscriber_id": SUB }));
    assert_eq!(int(&account["pendingCredit"][0]["amount"]), 5, "{account}");
}

#[test]
fn a_payment_the_policy_engine_refuses_gets_502_and_no_token() {
    if !grpcurl_or_skip("portal_refused") {
        return;
    }
    let pe = policy_engine("portal-refused", 0);
    let server = crediting(&format!("http://{}", pe.addr));
    // No account for this subscriber: NOT_FOUND from Admin/Recharge.
    let refused = pay(&server, "sub=imsi-001010000000009&amount=10");
    assert!(refused.starts_with("HTTP/1.1 502"), "{refused}");
    assert_eq!(location(&refused), None, "{refused}");
    assert!(!refused.contains("sig="), "{refused}");
    assert!(
        refused.contains("<h1 id=\"failed\">Recharge failed</h1>"),
        "{refused}"
    );
    assert!(
        refused.contains(
            "refused the payment (NotFound): no account for subscriber imsi-001010000000009"
        ),
        "{refused}"
    );
    // An amount the form cannot have offered never reaches the store.
    for amount in ["0", "-5", "ten", ""] {
        let bad = pay(&server, &format!("sub={SUB}&amount={amount}"));
        assert!(bad.starts_with("HTTP/1.1 400"), "{amount}: {bad}");
        assert_eq!(location(&bad), None);
    }
    let account = pe.call("weir.v1.Admin/GetAccount", &json!({ "subscriber_id": SUB }));
    assert_eq!(int(&account["balance"]), 0, "{account}");
    assert_eq!(
        account["pendingCredit"],
        serde_json::Value::Null,
        "{account}"
    );
    // The same portal credits a known subscriber (delay 0: in the balance at once).
    let paid = pay(&server, &format!("sub={SUB}&amount=10"));
    assert!(paid.starts_with("HTTP/1.1 303"), "{paid}");
    assert_eq!(
        int(&pe.call("weir.v1.Admin/GetAccount", &json!({ "subscriber_id": SUB }))["balance"]),
        10
    );
}

#[test]
fn a_policy_engine_that_does_not_answer_gets_502_and_no_token() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let server = crediting(&url);
    let refused = pay(&server, &format!("sub={SUB}&amount=10"));
    assert!(refused.starts_with("HTTP/1.1 502"), "{refused}");
    assert_eq!(location(&refused), None, "{refused}");
    assert!(
        refused.contains(&format!("cannot reach the policy engine at {url}")),
        "{refused}"
    );
}

#[test]
fn a_policy_engine_address_must_be_an_http_url_with_a_port() {
    let config = Config::from_toml_str(CONFIG, "portal").unwrap();
    for bad in ["127.0.0.1:50051", "ftp://pe:1", "http://pe", "http://"] {
        let err = Portal::from_config(&config)
            .unwrap()
            .with_policy_engine(bad)
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(err.to_string().contains(bad), "{err}");
    }
}

/// `weir portal` as started from the command line: the first lines of its log, up to the one
/// saying it listens.
fn startup_log(extra: &[&str]) -> String {
    use std::io::BufRead as _;
    let path = std::env::temp_dir().join(format!(
        "weir-portal-start-{}-{}.toml",
        std::process::id(),
        extra.len()
    ));
    std::fs::write(&path, CONFIG).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["portal", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .args(extra)
        .env("WEIR_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            log.push_str(&line);
            log.push('\n');
            if line.contains("recharge portal listening") {
                break;
            }
        }
        let _ = tx.send(log);
    });
    let log = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    log.expect("weir portal said it listens")
}

#[test]
fn the_portal_says_at_start_whether_payments_are_credited() {
    let alone = startup_log(&[]);
    assert!(
        alone.contains("payments are credited nowhere, the portal only signs success tokens"),
        "{alone}"
    );
    let crediting = startup_log(&["--policy-engine", "http://192.0.2.1:50051"]);
    assert!(
        crediting.contains("payments are credited through weir.v1.Admin/Recharge"),
        "{crediting}"
    );
    assert!(crediting.contains("http://192.0.2.1:50051"), "{crediting}");
    assert!(!crediting.contains("credited nowhere"), "{crediting}");
}
