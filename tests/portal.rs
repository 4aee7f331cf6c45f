//! `weir portal` over loopback: the recharge page, the payment that answers with the success URL
//! and a token the gateway's watch accepts, and the success page.

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
    let portal = Portal::from_config(&config).unwrap();
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
