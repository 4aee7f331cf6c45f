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
fn an_unknown_subscriber_or_a_bad_amount_gets_the_page_with_the_error_and_no_token() {
    if !grpcurl_or_skip("portal_refused") {
        return;
    }
    let pe = policy_engine("portal-refused", 0);
    let server = crediting(&format!("http://{}", pe.addr));
    // No account for this subscriber: the page says so, and nothing reaches Admin/Recharge.
    let refused = pay(&server, "sub=imsi-001010000000009&amount=10");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert_eq!(location(&refused), None, "{refused}");
    assert!(!refused.contains("sig="), "{refused}");
    assert!(
        refused
            .contains("<p id=\"error\" class=\"alert\" role=\"alert\">We do not know this line."),
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
fn a_policy_engine_that_does_not_answer_gets_503_and_no_token() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let server = crediting(&url);
    let refused = pay(&server, &format!("sub={SUB}&amount=10"));
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert_eq!(location(&refused), None, "{refused}");
    assert!(
        refused.contains("The billing system cannot be reached right now. Nothing was charged"),
        "{refused}"
    );
    // The subscriber stays on the page, with the way to try again.
    assert!(
        refused.contains("<dd id=\"subscriber\">imsi-001010000000003</dd>"),
        "{refused}"
    );
    assert!(
        refused.contains("id=\"again\" href=\"/recharge?sub=imsi%2D001010000000003\""),
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

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn get(server: &Server, target: &str) -> String {
    request(
        server,
        &format!("GET {target} HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n\r\n"),
    )
}

/// The value of the hidden field `name` of a page's form.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("<input type=\"hidden\" name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name}: {page}"))
        + marker.len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

/// The form of the recharge page of `sub`, as a browser would post it with `amount`.
fn form_of(page: &str, amount: &str) -> String {
    format!(
        "sub={}&orig={}&key={}&exp={}&form={}&amount={amount}",
        hidden(page, "sub"),
        hidden(page, "orig"),
        hidden(page, "key"),
        hidden(page, "exp"),
        hidden(page, "form")
    )
}

/// A post as a browser sends it: with its Origin.
fn browser_pay(server: &Server, origin: &str, form: &str) -> String {
    request(
        server,
        &format!("POST /recharge/pay HTTP/1.1\r\nHost: portal.example\r\nOrigin: {origin}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len()),
    )
}

fn not_confirmed(page: &str) -> bool {
    page.contains("<h1 id=\"not-confirmed\">Recharge not confirmed</h1>")
        && !page.contains("Recharge successful")
        && page.contains("<a id=\"back\" class=\"button\" href=\"/recharge")
}

#[test]
fn the_success_page_confirms_only_a_token_it_issued_once() {
    let server = start();
    let page = get(&server, &format!("/recharge?sub={SUB}"));
    let paid = pay(&server, &form_of(&page, "10"));
    assert!(paid.starts_with("HTTP/1.1 303"), "{paid}");
    let location = location(&paid).unwrap();
    let query = location.strip_prefix("/recharge/success?").unwrap();

    // Missing: no token at all, or half of one.
    for target in ["/recharge/success", "/recharge/success?sub=x&sig=00"] {
        let missing = get(&server, target);
        assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
        assert!(not_confirmed(&missing), "{missing}");
        assert!(missing.contains("it carries no confirmation."), "{missing}");
    }
    // Forged: the signature of another amount of time, or a signature of zeros.
    let exp: u64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("exp="))
        .unwrap()
        .parse()
        .unwrap();
    let later = location.replace(&format!("exp={exp}"), &format!("exp={}", exp + 1));
    let sig = query.rsplit_once("sig=").unwrap().1;
    let zeros = location.replace(sig, &"0".repeat(64));
    for target in [later, zeros] {
        let forged = get(&server, &target);
        assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
        assert!(not_confirmed(&forged), "{forged}");
        assert!(
            forged.contains("its confirmation was not issued by this portal."),
            "{forged}"
        );
    }
    // Expired: signed with the key, but its time is over.
    let key = TokenKey::new(&parse_hex_key(KEY).unwrap()).unwrap();
    let old = key.sign(SUB, IpAddr::V4(Ipv4Addr::LOCALHOST), now() - 1, "old-nonce");
    let expired = get(&server, &format!("/recharge/success?{old}"));
    assert!(not_confirmed(&expired), "{expired}");
    assert!(
        expired.contains("its confirmation has expired."),
        "{expired}"
    );
    // Valid and fresh, but for no payment this portal took.
    let made_up = key.sign(SUB, IpAddr::V4(Ipv4Addr::LOCALHOST), now() + 60, "made-up");
    let unknown = get(&server, &format!("/recharge/success?{made_up}"));
    assert!(not_confirmed(&unknown), "{unknown}");
    assert!(
        unknown.contains("this portal has no record of the payment."),
        "{unknown}"
    );

    // The real one, once: what was charged, and the link back.
    let done = get(&server, &location);
    assert!(done.starts_with("HTTP/1.1 200"), "{done}");
    assert!(
        done.contains("<h1 id=\"success\">Recharge successful</h1>"),
        "{done}"
    );
    assert!(done.contains("<dd id=\"charged\">10</dd>"), "{done}");
    // Replayed: the same link a second time.
    let replayed = get(&server, &location);
    assert!(replayed.starts_with("HTTP/1.1 403"), "{replayed}");
    assert!(not_confirmed(&replayed), "{replayed}");
    assert!(
        replayed.contains("its confirmation was already used."),
        "{replayed}"
    );
    assert!(
        replayed.contains("href=\"/recharge?sub=imsi%2D001010000000003\""),
        "{replayed}"
    );
}

#[test]
fn a_link_back_is_only_ever_http_or_https() {
    let server = start();
    let page = get(
        &server,
        &format!("/recharge?sub={SUB}&orig=javascript%3Aalert(1)"),
    );
    let paid = pay(&server, &form_of(&page, "10"));
    let done = get(&server, &location(&paid).unwrap());
    assert!(done.contains("Recharge successful"), "{done}");
    assert!(!done.contains("id=\"continue\""), "{done}");
    assert!(!done.contains("href=\"javascript"), "{done}");
}

/// A policy engine whose plan offers 5.00, 10.00 and 20.00 EUR, `SUB` at 2.50 EUR.
fn priced_policy_engine(test: &str) -> PolicyEngine {
    PolicyEngine::start(
        test,
        &format!(
            r#"listen = "127.0.0.1:0"
database = "pe.sqlite"
billing_delay = 0
token_key = "{KEY}"
predefined_rules = ["web"]

[redirect_rule]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = {{ support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }}
flow = [{{ description = "permit out ip from any to assigned" }}]

[[plan]]
name = "standard"
predefined = ["web"]
recharge = [500, 1000, 2000]
currency = "EUR"
minor_units = 2

[[account]]
subscriber = "{SUB}"
balance = 250
"#
        ),
    )
}

fn balance(pe: &PolicyEngine) -> i64 {
    int(&pe.call("weir.v1.Admin/GetAccount", &json!({ "subscriber_id": SUB }))["balance"])
}

#[test]
fn the_page_shows_the_balance_and_plan_from_the_store_and_a_double_submit_charges_once() {
    if !grpcurl_or_skip("portal_double_submit") {
        return;
    }
    let pe = priced_policy_engine("portal-double");
    let server = crediting(&format!("http://{}", pe.addr));
    let page = get(&server, &format!("/recharge?sub={SUB}"));
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<dd id=\"balance\">2.50 EUR</dd>"), "{page}");
    for (amount, text) in [(500, "5.00 EUR"), (1000, "10.00 EUR"), (2000, "20.00 EUR")] {
        assert!(
            page.contains(&format!("value=\"{amount}\"")) && page.contains(text),
            "{amount}: {page}"
        );
    }
    let form = form_of(&page, "1000");
    let first = browser_pay(&server, "http://portal.example", &form);
    let second = browser_pay(&server, "http://portal.example", &form);
    assert!(first.starts_with("HTTP/1.1 303"), "{first}");
    assert!(second.starts_with("HTTP/1.1 303"), "{second}");
    // Charged once: the store holds one credit of 10.00 EUR.
    assert_eq!(balance(&pe), 1250);
    let nonce = |reply: &str| {
        location(reply)
            .unwrap()
            .split('&')
            .find_map(|kv| kv.strip_prefix("nonce=").map(str::to_string))
            .unwrap()
    };
    assert_eq!(nonce(&first), nonce(&second));
    assert_eq!(nonce(&first), hidden(&page, "key"));
    // The success page says what was charged and the balance the store holds now.
    let done = get(&server, &location(&second).unwrap());
    assert!(done.contains("<dd id=\"charged\">10.00 EUR</dd>"), "{done}");
    assert!(
        done.contains("<dd id=\"new-balance\">12.50 EUR</dd>"),
        "{done}"
    );
    // A fresh page is a fresh payment.
    let again = get(&server, &format!("/recharge?sub={SUB}"));
    assert!(
        again.contains("<dd id=\"balance\">12.50 EUR</dd>"),
        "{again}"
    );
    let third = browser_pay(&server, "http://portal.example", &form_of(&again, "500"));
    assert!(third.starts_with("HTTP/1.1 303"), "{third}");
    assert_eq!(balance(&pe), 1750);
}

#[test]
fn cross_site_posts_and_amounts_not_offered_are_refused_and_charge_nothing() {
    if !grpcurl_or_skip("portal_refusals") {
        return;
    }
    let pe = priced_policy_engine("portal-refusals");
    let server = crediting(&format!("http://{}", pe.addr));
    let page = get(&server, &format!("/recharge?sub={SUB}"));
    let form = form_of(&page, "1000");

    // A page elsewhere posting the subscriber's browser to the portal, with a real form even.
    let evil = browser_pay(&server, "http://evil.example", &form);
    assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
    assert!(
        evil.contains("was not sent from the recharge page"),
        "{evil}"
    );
    assert_eq!(location(&evil), None);
    // A browser's post without the page's form token.
    let bare = browser_pay(
        &server,
        "http://portal.example",
        &format!("sub={SUB}&amount=1000"),
    );
    assert!(bare.starts_with("HTTP/1.1 403"), "{bare}");
    // A form token made for another subscriber.
    let other = form.replace(&format!("sub={SUB}"), "sub=imsi-001010000000004");
    let stolen = browser_pay(&server, "http://portal.example", &other);
    assert!(
        stolen.starts_with("HTTP/1.1 403") || stolen.starts_with("HTTP/1.1 400"),
        "{stolen}"
    );
    assert_eq!(location(&stolen), None);
    // Negative, zero, unlisted, not a number.
    for amount in ["-500", "0", "10", "999", "1000.5", "ten", ""] {
        let bad = browser_pay(&server, "http://portal.example", &form_of(&page, amount));
        assert!(bad.starts_with("HTTP/1.1 400"), "{amount}: {bad}");
        assert!(
            bad.contains("Choose one of the amounts offered."),
            "{amount}: {bad}"
        );
        assert_eq!(location(&bad), None, "{amount}");
        // The page is back, with the subscriber and a form to choose again.
        assert!(
            bad.contains("<dd id=\"subscriber\">imsi-001010000000003</dd>"),
            "{bad}"
        );
        assert!(bad.contains("id=\"recharge\""), "{bad}");
    }
    assert_eq!(balance(&pe), 250);
    let account = pe.call("weir.v1.Admin/GetAccount", &json!({ "subscriber_id": SUB }));
    assert_eq!(
        account["pendingCredit"],
        serde_json::Value::Null,
        "{account}"
    );
    // The same form, posted right, still pays.
    let paid = browser_pay(&server, "http://portal.example", &form);
    assert!(paid.starts_with("HTTP/1.1 303"), "{paid}");
    assert_eq!(balance(&pe), 1250);
}

#[test]
fn a_portal_that_requires_form_tokens_refuses_every_post_without_one() {
    let config = Config::from_toml_str(CONFIG, "portal").unwrap();
    let site = weir::peers::portal::site::Site::from_toml_str(
        "form_token = \"required\"\n",
        std::path::Path::new("portal.toml"),
        std::path::Path::new("."),
    )
    .unwrap();
    let server = start_with(Portal::from_config(&config).unwrap().with_site(site));
    let bare = pay(&server, &format!("sub={SUB}&amount=10"));
    assert!(bare.starts_with("HTTP/1.1 403"), "{bare}");
    let page = get(&server, &format!("/recharge?sub={SUB}"));
    let paid = pay(&server, &form_of(&page, "10"));
    assert!(paid.starts_with("HTTP/1.1 303"), "{paid}");
}

#[test]
fn the_pages_are_made_for_phones_and_the_operator_names_itself() {
    let dir = std::env::temp_dir().join(format!("weir-portal-site-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let logo = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>";
    std::fs::write(dir.join("logo.svg"), logo).unwrap();
    std::fs::write(
        dir.join("fr.toml"),
        "lang = \"fr\"\nheading = \"Rechargez votre solde\"\npay_button = \"Recharger\"\n",
    )
    .unwrap();
    let site = weir::peers::portal::site::Site::from_toml_str(
        "operator = \"Example Mobile\"\nlogo = \"logo.svg\"\ntext = \"fr.toml\"\nsubscriber = \"masked\"\n",
        &dir.join("portal.toml"),
        &dir,
    )
    .unwrap();
    let config = Config::from_toml_str(CONFIG, "portal").unwrap();
    let server = start_with(Portal::from_config(&config).unwrap().with_site(site));
    let page = get(&server, &format!("/recharge?sub={SUB}"));
    assert!(page.contains("<html lang=\"fr\">"), "{page}");
    assert!(
        page.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"operator\">Example Mobile</span>"),
        "{page}"
    );
    assert!(
        page.contains("<img src=\"/recharge/logo\" alt=\"\">"),
        "{page}"
    );
    assert!(page.contains("<h1>Rechargez votre solde</h1>"), "{page}");
    assert!(page.contains(">Recharger</button>"), "{page}");
    // English where the translation says nothing.
    assert!(page.contains("<legend>Choose an amount</legend>"), "{page}");
    assert!(
        page.contains("<dd id=\"subscriber\">•••• 0003</dd>"),
        "{page}"
    );
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("src=\"http"), "no external assets: {page}");
    let served = get(&server, "/recharge/logo");
    assert!(
        served
            .to_ascii_lowercase()
            .contains("content-type: image/svg+xml"),
        "{served}"
    );
    assert!(
        served.ends_with(std::str::from_utf8(logo).unwrap()),
        "{served}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_captive_portal_api_answers_rfc_8908_json() {
    let server = start();
    let reply = get(&server, "/captive-portal/api");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let lower = reply.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/captive+json"),
        "{reply}"
    );
    assert!(
        lower.contains("cache-control: private, no-store"),
        "{reply}"
    );
    let body: serde_json::Value =
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    // No policy engine: the portal cannot tell, and sends the client to the page.
    assert_eq!(
        body,
        json!({ "captive": true, "user-portal-url": "http://portal.example/recharge" })
    );
}

#[test]
fn the_captive_portal_api_says_whether_the_store_holds_the_client_captive() {
    if !grpcurl_or_skip("portal_captive_api") {
        return;
    }
    // `SUB` is 10.45.0.3 in the configuration; this client is 127.0.0.1, so map it.
    let config = Config::from_toml_str(
        &CONFIG
            .replace("ipv4 = \"10.45.0.3\"", "ipv4 = \"127.0.0.1\"")
            .replace("\"10.45.0.0/16\"", "\"10.45.0.0/16\", \"127.0.0.0/8\""),
        "portal",
    )
    .unwrap();
    let pe = priced_policy_engine("portal-captive");
    let url = format!("http://{}", pe.addr);
    let server = start_with(
        Portal::from_config(&config)
            .unwrap()
            .with_policy_engine(&url)
            .unwrap(),
    );
    let captive = |server: &Server| -> serde_json::Value {
        let reply = get(server, "/captive-portal/api");
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    // In credit, no session known: not captive.
    assert_eq!(captive(&server)["captive"], false);
    pe.call(
        "weir.v1.Admin/SetBalance",
        &json!({ "subscriber_id": SUB, "balance": 0 }),
    );
    assert_eq!(captive(&server)["captive"], true);
}

/// The pages in headless Chromium at a phone (390×844) and a desktop viewport: screenshots in
/// `CARGO_TARGET_TMPDIR/portal_browser/`, the DOM checked, and the balance read back from the
/// store after both payments.
#[test]
fn chromium_at_phone_and_desktop_sizes_pays_and_the_store_holds_it() {
    let chromium = "/usr/bin/chromium";
    if !std::path::Path::new(chromium).exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{chromium} is missing; scripts/install-deps.sh installs it");
        }
        eprintln!("portal_browser: skipped: no /usr/bin/chromium (scripts/install-deps.sh)");
        return;
    }
    if !grpcurl_or_skip("portal_browser") {
        return;
    }
    let pe = priced_policy_engine("portal-browser");
    let server = crediting(&format!("http://{}", pe.addr));
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal_browser");
    let _ = std::fs::remove_dir_all(&out);
    let url = format!(
        "http://{}/recharge?orig=http%3A%2F%2Fsite.example%2F&sub={SUB}",
        server.addr
    );
    let driver = common::repo().join("tests/browser/portal_pages.py");
    let log = out.with_extension("chromium.log");
    let stdout = common::ok(
        std::process::Command::new("python3")
            .arg(&driver)
            .args(["--chromium", chromium, "--url", &url, "--timeout", "90"])
            .arg("--out")
            .arg(&out)
            .arg("--log")
            .arg(&log),
        Duration::from_secs(110),
    );
    let story: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("driver output: {e}: {stdout}"));
    let mut balance_shown = ["2.50 EUR", "7.50 EUR"].into_iter();
    for (name, width) in [("phone", 390.0), ("desktop", 1280.0)] {
        let v = &story[name];
        let before = balance_shown.next().unwrap();
        for page in ["page", "success", "reloaded"] {
            let p = &v[page];
            assert_eq!(
                p["viewport_meta"], "width=device-width, initial-scale=1",
                "{name} {page}: {p}"
            );
            assert_eq!(p["inner_width"].as_f64(), Some(width), "{name} {page}: {p}");
            assert!(
                p["scroll_width"].as_f64().unwrap() <= width,
                "{name} {page}: horizontal scroll: {p}"
            );
            assert!(
                p["font_size_px"].as_f64().unwrap() >= 16.0,
                "{name} {page}: {p}"
            );
        }
        let page = &v["page"];
        assert_eq!(page["subscriber"], SUB, "{page}");
        assert_eq!(page["balance"], before, "{name}: {page}");
        assert!(
            page["button_height"].as_f64().unwrap() >= 44.0,
            "{name}: {page}"
        );
        let offers = page["offer_heights"].as_array().unwrap();
        assert_eq!(offers.len(), 3, "{page}");
        assert!(
            offers.iter().all(|h| h.as_f64().unwrap() >= 44.0),
            "{name}: {page}"
        );
        assert_eq!(page["radios_labelled"], true);
        assert_eq!(page["legend"], "Choose an amount");
        assert_eq!(page["selected"], "500");
        let success = &v["success"];
        assert_eq!(
            success["heading"], "Recharge successful",
            "{name}: {success}"
        );
        assert_eq!(success["charged"], "5.00 EUR", "{name}: {success}");
        assert!(
            success["link_height"].as_f64().unwrap() >= 44.0,
            "{name}: {success}"
        );
        let reloaded = &v["reloaded"];
        assert_eq!(
            reloaded["heading"], "Recharge not confirmed",
            "{name}: {reloaded}"
        );
        for shot in ["page_shot", "success_shot", "reloaded_shot"] {
            let png = std::fs::read(v[shot].as_str().unwrap()).unwrap();
            assert_eq!(&png[1..4], b"PNG", "{name} {shot}");
        }
    }
    assert_eq!(story["phone"]["success"]["new_balance"], "7.50 EUR");
    assert_eq!(story["desktop"]["success"]["new_balance"], "12.50 EUR");
    // The store holds both payments, once each.
    assert_eq!(balance(&pe), 1250);
}

#[test]
fn with_a_certificate_the_captive_portal_api_is_served_over_https() {
    let found = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found("openssl", "version") || !found("curl", "--version") {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("openssl or curl is missing; scripts/install-deps.sh installs them");
        }
        eprintln!("portal_https: skipped: openssl or curl is missing");
        return;
    }
    let dir = std::env::temp_dir().join(format!("weir-portal-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=portal.example"])
        .args(["-addext", "subjectAltName=DNS:portal.example"])
        .arg("-keyout")
        .arg(dir.join("portal.key"))
        .arg("-out")
        .arg(dir.join("portal.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let site = weir::peers::portal::site::Site::from_toml_str(
        &format!(
            "captive_api = {{ tls = {{ cert = \"portal.pem\", key = \"portal.key\", listen = \"127.0.0.1:{port}\" }} }}\n"
        ),
        &dir.join("portal.toml"),
        &dir,
    )
    .unwrap();
    let config = Config::from_toml_str(CONFIG, "portal").unwrap();
    let _server = start_with(Portal::from_config(&config).unwrap().with_site(site));
    let curl = |path: &str| {
        let out = common::run(
            std::process::Command::new("curl")
                .args([
                    "-s",
                    "--retry",
                    "5",
                    "--retry-connrefused",
                    "--retry-delay",
                    "1",
                ])
                .arg("--cacert")
                .arg(dir.join("portal.pem"))
                .args(["--resolve", &format!("portal.example:{port}:127.0.0.1")])
                .args(["-w", "\n%{http_code} %{content_type}"])
                .arg(format!("https://portal.example:{port}{path}")),
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let api = curl("/captive-portal/api");
    let (body, status) = api.rsplit_once('\n').unwrap();
    assert_eq!(status, "200 application/captive+json", "{api}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        json!({ "captive": true, "user-portal-url": format!("https://portal.example:{port}/recharge") })
    );
    // The pages too, for a client that follows user-portal-url.
    let page = curl(&format!("/recharge?sub={SUB}"));
    assert!(
        page.contains("<dd id=\"subscriber\">imsi-001010000000003</dd>"),
        "{page}"
    );
    assert!(page.ends_with("200 text/html; charset=utf-8"), "{page}");
    let _ = std::fs::remove_dir_all(&dir);
}
