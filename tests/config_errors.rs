//! `weir check-config` on each bad value of the policy tables: every error is located
//! `file:line:column: path: message`, the run ends with exit code 2 (never a panic or an
//! abort), and what it accepts cannot panic later (the portal's router, the flow table at its
//! largest size, a redirect address in a `Location` header).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

fn temp_file(text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("weir-config-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("c{}.toml", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&file, text).expect("write config");
    file
}

/// Runs check-config on `text`; returns the errors with the file name replaced by `F`.
fn errors(text: &str) -> Vec<String> {
    let file = temp_file(text);
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run weir");
    std::fs::remove_file(&file).ok();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // A panic exits with 101 and an abort with a signal: only 2 is a checked rejection.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    let name = file.display().to_string();
    let mut lines: Vec<String> = stderr.lines().map(|l| l.replace(&name, "F")).collect();
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary, format!("F: {} error(s)", lines.len()));
    lines
}

const POOLS: &str = "[gateway]\nue_pools = [\"10.45.0.0/16\"]\n";

fn redirect_rule(address_type: &str, server_address: &str) -> String {
    format!(
        "{POOLS}[[predefined_rule]]\nname = \"r\"\nprecedence = 1\n\
         redirect = {{ address_type = \"{address_type}\", server_address = {server_address} }}\n\
         flow = [{{ description = \"permit out ip from any to assigned\" }}]\n"
    )
}

#[test]
fn size_and_duration_keys_have_ranges() {
    let text = "[gateway]\n\
        flow_table_capacity = 4294967295\n\
        idle_timeout = { tcp = 604801, udp = 0, icmp = 1, other = 604800 }\n\
        [redirect]\n\
        token_max_age = 86401\n\
        grace = 3601\n\
        http_ports = [80, 0, 65536, 80]\n";
    assert_eq!(
        errors(text),
        [
            "F:2:23: gateway.flow_table_capacity: 4294967295 is out of range; expected 1-4194304",
            "F:3:24: gateway.idle_timeout.tcp: 604801 is out of range; expected 1-604800",
            "F:3:38: gateway.idle_timeout.udp: 0 is out of range; expected 1-604800",
            "F:5:17: redirect.token_max_age: 86401 is out of range; expected 1-86400",
            "F:6:9: redirect.grace: 3601 is out of range; expected 0-3600",
            "F:7:19: redirect.http_ports[1]: 0 is not a port (1-65535)",
            "F:7:22: redirect.http_ports[2]: 65536 is not a port (1-65535)",
            "F:7:29: redirect.http_ports[3]: port 80 is listed twice",
        ]
    );
    assert_eq!(
        errors("[gateway]\nflow_table_capacity = 0\n"),
        ["F:2:23: gateway.flow_table_capacity: 0 is out of range; expected 1-4194304"]
    );
    assert_eq!(
        errors("[gateway]\nflow_table_capacity = 4194305\n"),
        ["F:2:23: gateway.flow_table_capacity: 4194305 is out of range; expected 1-4194304"]
    );
}

/// The column of the `server_address` value on the rule's redirect line (line 6).
fn address_column(text: &str) -> usize {
    let line = text.lines().nth(5).expect("redirect line");
    line.find("server_address = ").expect("server_address") + "server_address = ".len() + 1
}

#[test]
fn every_redirect_address_that_reaches_a_header_is_a_real_uri() {
    let long = format!("\"http://portal.example/{}\"", "a".repeat(2100));
    let cases: &[(&str, &str, &str)] = &[
        // CR/LF would split the 302 and add a header of the address's choosing.
        ("SIP_URI", r#""sip:portal@example.net\r\nSet-Cookie: a=b""#,
         r"a redirect address must not contain control characters or spaces (found '\r' at byte 22)"),
        ("SIP_URI", r#""sip:""#,
         "a SIP_URI redirect address must be a sip: or sips: URI with a host, not 'sip:'"),
        ("SIP_URI", r#""sip:alice@""#,
         "a SIP_URI redirect address must be a sip: or sips: URI with a host, not 'sip:alice@'"),
        ("SIP_URI", r#""sip:alice@exa mple.net""#,
         "a redirect address must not contain control characters or spaces (found ' ' at byte 13)"),
        ("SIP_URI", r#""sip:alice@example.net>""#,
         "a redirect address must be a URI of ASCII characters; '>' at byte 21 must be percent-encoded"),
        ("SIP_URI", r#""tel:+15551234""#,
         "a SIP_URI redirect address must be a sip: or sips: URI with a host, not 'tel:+15551234'"),
        ("URL", r#""http://portal.example/\u0000x""#,
         r"a redirect address must not contain control characters or spaces (found '\0' at byte 22)"),
        ("URL", r#""http://portal.example/\u0085""#,
         r"a redirect address must not contain control characters or spaces (found '\u{85}' at byte 22)"),
        ("URL", r#""http://portal.example/café""#,
         "a redirect address must be a URI of ASCII characters; 'é' at byte 25 must be percent-encoded"),
        ("URL", r#""http://portal.example/a%zz""#,
         "a '%' at byte 23 must start a percent-encoding such as %20"),
        ("URL", r#""http://user@portal.example/""#,
         "a URL redirect address must be an http:// or https:// URL with a host, not 'http://user@portal.example/'"),
        ("URL", r#""ftp://portal.example/""#,
         "a URL redirect address must be an http:// or https:// URL with a host, not 'ftp://portal.example/'"),
        ("URL", r#""http:///recharge""#,
         "a URL redirect address must be an http:// or https:// URL with a host, not 'http:///recharge'"),
        ("URL", r#""http://portal..example/""#,
         "the host of redirect address 'http://portal..example/' is not a host name, an IPv4 address or a bracketed IPv6 address"),
        ("URL", r#""http://[2001:db8::zz]/""#,
         "the host of redirect address 'http://[2001:db8::zz]/' is not a host name, an IPv4 address or a bracketed IPv6 address"),
        ("URL", r#""http://portal.example:0/""#,
         "the port of redirect address 'http://portal.example:0/' is not 1-65535"),
        ("URL", r#""http://portal.example:+80/""#,
         "the port of redirect address 'http://portal.example:+80/' is not 1-65535"),
        ("URL", &long, "a redirect address is at most 2048 bytes, got 2122"),
        ("URL", r#""""#, "a redirect address must not be empty"),
        ("IPV4_ADDRESS", r#""192.0.2.1\n""#,
         r"a redirect address must not contain control characters or spaces (found '\n' at byte 9)"),
        ("IPV4_ADDRESS", r#""192.0.2.256""#,
         "an IPV4_ADDRESS redirect address must be an IPv4 address, not '192.0.2.256'"),
        ("IPV6_ADDRESS", r#""2001:db8::1%eth0""#,
         "an IPV6_ADDRESS redirect address must be an IPv6 address, not '2001:db8::1%eth0'"),
    ];
    for (kind, literal, message) in cases {
        let text = redirect_rule(kind, literal);
        let col = address_column(&text);
        assert_eq!(
            errors(&text),
            [format!(
                "F:6:{col}: predefined_rule[0].redirect.server_address: {message}"
            )],
            "{kind} {literal}"
        );
    }
}

#[test]
fn real_uris_of_every_type_are_accepted() {
    for (kind, literal) in [
        (
            "URL",
            r#""http://portal.example/recharge?from=gw&x=%20#top""#,
        ),
        ("URL", r#""https://[2001:db8::1]:8443/r""#),
        ("URL", r#""http://192.0.2.80:8080""#),
        ("URL", r#""http://portal.example./""#),
        ("SIP_URI", r#""sip:alice@example.net""#),
        (
            "SIP_URI",
            r#""sips:recharge@[2001:db8::5]:5061;transport=tls?subject=topup""#,
        ),
        ("IPV4_ADDRESS", r#""192.0.2.80""#),
        ("IPV6_ADDRESS", r#""2001:db8::80""#),
    ] {
        let file = temp_file(&redirect_rule(kind, literal));
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("check-config")
            .arg(&file)
            .output()
            .expect("run weir");
        std::fs::remove_file(&file).ok();
        assert!(
            out.status.success(),
            "{kind} {literal}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn final_unit_redirects_take_only_a_validated_address() {
    use weir::policy::{RedirectAddressError, RedirectAddressType, RedirectInformation};
    // A Final-Unit REDIRECT carries a RedirectInformation, and this is the only way to make one.
    assert_eq!(
        RedirectInformation::new(true, RedirectAddressType::SipUri, "sip:a@b.example\r\nX: y"),
        Err(RedirectAddressError::Control {
            found: '\r',
            at: 15
        })
    );
    assert_eq!(
        RedirectInformation::new(true, RedirectAddressType::Url, "javascript:alert(1)"),
        Err(RedirectAddressError::NotHttpUrl(
            "javascript:alert(1)".into()
        ))
    );
    // Addresses are kept in their canonical form.
    let v6 = RedirectInformation::new(false, RedirectAddressType::Ipv6, "2001:DB8:0::80").unwrap();
    assert_eq!(
        (v6.enabled(), v6.address_type(), v6.server_address()),
        (false, RedirectAddressType::Ipv6, "2001:db8::80")
    );
}

const SUCCESS_HEAD: &str = "[redirect]\ntoken_key = \"00112233445566778899aabbccddeeff\"\n";

#[test]
fn success_urls_the_portal_router_cannot_serve_are_refused() {
    let cases = [
        ("http://portal.example/:id", "success_url path segment ':id' must not begin with ':' or '*' (percent-encode it: %3A, %2A)"),
        ("http://portal.example/files/*rest", "success_url path segment '*rest' must not begin with ':' or '*' (percent-encode it: %3A, %2A)"),
        ("http://portal.example/{id}", "success_url path '/{id}' must not contain '{' or '}' (percent-encode them: %7B, %7D)"),
        ("http://portal.example/a}b", "success_url path '/a}b' must not contain '{' or '}' (percent-encode them: %7B, %7D)"),
        ("http://portal.example/ok\\u0007", r"'http://portal.example/ok\u{7}' must be printable ASCII without spaces (percent-encode the rest)"),
        ("http://portal.example/caf\\u00e9", r"'http://portal.example/caf\u{e9}' must be printable ASCII without spaces (percent-encode the rest)"),
        ("portal.example/ok", "'portal.example/ok' is not an http:// URL with a host"),
    ];
    for (url, message) in cases {
        let text = format!("{SUCCESS_HEAD}success_url = \"{url}\"\n");
        assert_eq!(
            errors(&text),
            [format!("F:3:15: redirect.success_url: {message}")],
            "{url}"
        );
    }
}

/// Builds the portal's router for `path` as the success path; whether building it panicked.
fn router_panics(path: &str) -> bool {
    use weir::peers::portal::Portal;
    use weir::policy::{Config, SuccessUrl};
    let mut config = Config::default();
    config.gateway.redirect.token_key =
        Some(weir::token::TokenKey::new(&[7; 16]).expect("16 bytes"));
    config.gateway.redirect.success_url = Some(SuccessUrl {
        host: "portal.example".into(),
        path: path.into(),
    });
    let portal = Portal::from_config(&config).expect("portal");
    std::panic::catch_unwind(move || {
        let _ = std::sync::Arc::new(portal).router();
    })
    .is_err()
}

#[test]
fn what_check_config_refuses_is_what_the_router_panics_on() {
    // The refused paths are the ones the router (axum 0.8) panics on or reads as a capture…
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let refused_panic = ["/:id", "/files/*rest", "/{x", "/a}b"].map(router_panics);
    std::panic::set_hook(hook);
    assert_eq!(refused_panic, [true; 4]);
    // …and every path check-config accepts builds, including the portal's own pay path.
    for path in [
        "/recharge/success",
        "/a:b/c*d",
        "/%3Aid",
        "/recharge/pay",
        "/",
    ] {
        let text = format!("{SUCCESS_HEAD}success_url = \"http://portal.example{path}\"\n");
        let file = temp_file(&text);
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("check-config")
            .arg(&file)
            .output()
            .expect("run weir");
        std::fs::remove_file(&file).ok();
        assert!(
            out.status.success(),
            "{path} refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!router_panics(path), "{path}");
    }
}

#[test]
fn sessions_need_a_ue_pool() {
    let text = "[[session]]\nsubscriber = \"imsi-001010000000001\"\nipv4 = \"10.45.0.2\"\n\
                ipv6 = \"2001:db8:45:1::/64\"\n";
    let why = "is not inside any ue_pool: gateway.ue_pools is empty, so no packet would ever \
               reach this session; add a pool that covers it";
    assert_eq!(
        errors(text),
        [
            format!("F:3:8: session[0].ipv4: 10.45.0.2 {why}"),
            format!("F:4:8: session[0].ipv6: 2001:db8:45:1::/64 {why}"),
        ]
    );
}

#[test]
fn the_largest_flow_table_runs() {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/weir.toml"),
    )
    .expect("example config");
    let text = example.replace(
        "flow_table_capacity = 65536",
        "flow_table_capacity = 4194304",
    );
    assert_ne!(text, example);
    let file = temp_file(&text);
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["replay", "--json", "--config"])
        .arg(&file)
        .args(["--pcap", "examples/sample.pcap"])
        .output()
        .expect("run weir");
    std::fs::remove_file(&file).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["totals"]["frames"], 126);
}

#[test]
fn credit_keys_are_checked_and_located() {
    let text = "[control]\n\
        charging_system = \"ocs:50051\"\n\
        charging_system_tls = { ca = \"\" }\n\
        [credit]\n\
        pending = \"wait\"\n\
        queue = 65\n\
        retry = 0\n\
        request_timeout = 0\n\
        attempts = 101\n\
        retry_backoff = 40\n\
        retry_max_backoff = 30\n\
        failure_handling = \"retry\"\n\
        continue_octets = 0\n\
        journal = \"\"\n\
        ledger = 1\n";
    assert_eq!(
        errors(text),
        [
            "F:2:19: control.charging_system: 'ocs:50051' must be an http:// or https:// URL with a port",
            "F:3:30: control.charging_system_tls.ca: a file path must not be empty",
            "F:4:1: credit.retry_max_backoff: retry_max_backoff (30 s) must be at least retry_backoff (40 s)",
            "F:5:11: credit.pending: 'wait' is not one of forward, hold, drop",
            "F:6:9: credit.queue: 65 is out of range; expected 1-64",
            "F:7:9: credit.retry: 0 is out of range; expected 1-600",
            "F:8:19: credit.request_timeout: 0 is out of range; expected 1-86400",
            "F:9:12: credit.attempts: 101 is out of range; expected 1-100",
            "F:12:20: credit.failure_handling: 'retry' is not one of terminate, continue, retry_and_terminate",
            "F:13:19: credit.continue_octets: 0 is out of range; expected 1-1125899906842624",
            "F:14:11: credit.journal: a file path must not be empty",
            "F:15:1: credit.ledger: unknown key 'ledger'; expected one of pending, queue, groups, retry, request_timeout, attempts, retry_backoff, retry_max_backoff, failure_handling, continue_octets, journal",
        ]
    );
    // The Gy client's keys need a charging system; the data path's do not.
    assert_eq!(
        errors("[credit]\npending = \"hold\"\nfailure_handling = \"continue\"\njournal = \"j\"\n\
                [control]\ncharging_system_tls = { ca = \"ca.pem\" }\n"),
        [
            "F:3:20: credit.failure_handling: failure_handling applies only with [control] charging_system",
            "F:4:11: credit.journal: journal applies only with [control] charging_system",
            "F:6:23: control.charging_system_tls: charging_system_tls applies only with a charging_system",
        ]
    );
}
