use super::*;
use crate::policy::flow::{AddressMatch, FilterDirection, FlowDescription, PortRange};
use crate::policy::model::{
    DefaultRule, FlowDirection, FlowStatus, RedirectAddressType, RedirectInformation, SdfFilter,
    SubscriberId,
};
use crate::time::Timestamp;

fn errors(text: &str) -> Vec<(usize, usize, String, String)> {
    match Config::from_toml_str(text, "test.toml") {
        Ok(_) => Vec::new(),
        Err(ConfigErrors(list)) => list
            .into_iter()
            .map(|e| (e.line, e.column, e.path, e.message))
            .collect(),
    }
}

#[test]
fn example_file_is_valid() {
    let config = Config::from_toml_str(include_str!("../../../examples/weir.toml"), "weir.toml")
        .unwrap_or_else(|e| panic!("{:#?}", e.0));
    assert_eq!(config.predefined.len(), 5);
    assert_eq!(config.sessions.len(), 3);
    assert_eq!(config.gateway.ue_pools.len(), 2);
}

#[test]
fn days_and_timestamps() {
    assert_eq!(reader::days_from_civil(1970, 1, 1), 0);
    assert_eq!(reader::days_from_civil(1969, 12, 31), -1);
    assert_eq!(reader::days_from_civil(2000, 2, 29), 11016);
    assert_eq!(reader::days_from_civil(2000, 3, 1), 11017);
    assert_eq!(reader::days_from_civil(2026, 1, 1), 20454);
    let dt: toml::value::Datetime = "2026-01-01T02:00:00.5+02:00".parse().unwrap();
    assert_eq!(
        reader::timestamp_of(&dt).unwrap(),
        Timestamp::from_nanos(20454 * 86_400 * 1_000_000_000 + 500_000_000)
    );
    let local: toml::value::Datetime = "2026-01-01T00:00:00".parse().unwrap();
    assert!(reader::timestamp_of(&local).is_err());
}

#[test]
fn syntax_error_has_a_position() {
    let text = "[gateway]\nmalformed = \"drop\"\nue_pools = [\"10.45.0.0/16\"\n";
    let found = errors(text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2, "");
    assert!(found[0].3.starts_with("TOML syntax"), "{found:?}");
    assert_eq!((found[0].0, found[0].1), (3, 27), "{found:?}");
    assert_eq!(found[0].3, "TOML syntax: unclosed array, expected `]`");
}

fn flow(text: &str) -> FlowDescription {
    text.parse().unwrap()
}

#[test]
fn full_document() {
    let text = r#"
[gateway]
ue_pools = ["10.45.0.0/16", "2001:db8:45::/48"]
malformed = "pass"
unknown_subscriber = "forward"
non_subscriber = "drop"
flow_table_capacity = 1024
idle_timeout = { tcp = 600, udp = 30 }

[[predefined_rule]]
name = "web"
precedence = 100
flow_status = "enabled-downlink"
rating_group = 10
service_identifier = 1
monitoring_key = "mk-web"
online = false
offline = true
activation = 2026-01-01T00:00:00Z
deactivation = 2027-01-01T01:00:00+01:00
redirect = { support = "DISABLED", address_type = "URL", server_address = "https://portal.example/recharge" }
flow = [
  { description = "permit out tcp from any 80,443 to assigned", direction = "DOWNLINK" },
  { description = "permit in 6 from assigned to any 8080-8090" },
]

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.45.0.2"
ipv6 = "2001:db8:45:1::/64"
predefined = ["web"]
default_rule = { action = "drop" }

[[session.rule]]
name = "voice"
precedence = 20
monitoring_key = "mk-voice"
flow = [{ description = "permit out 17 from 2001:db8::10 5060 to assigned", direction = "UPLINK" }]

[[session]]
subscriber = "nai-bob@example.net"
ipv4 = "10.45.0.3"
"#;
    let config = Config::from_toml_str(text, "t").unwrap_or_else(|e| panic!("{:#?}", e.0));
    let expected = Config {
        gateway: GatewaySettings {
            ue_pools: vec![
                IpPrefix::parse("10.45.0.0/16", true).unwrap(),
                IpPrefix::parse("2001:db8:45::/48", true).unwrap(),
            ],
            malformed: MalformedAction::Pass,
            forward_unknown_subscriber: true,
            forward_non_subscriber: false,
            flow_table_capacity: 1024,
            tcp_idle_timeout: Duration::from_secs(600),
            udp_idle_timeout: Duration::from_secs(30),
            icmp_idle_timeout: Duration::from_secs(30),
            other_idle_timeout: Duration::from_secs(60),
            redirect: Default::default(),
            pending: None,
            credit: Default::default(),
        },
        predefined: vec![PccRule {
            name: "web".into(),
            precedence: 100,
            filters: vec![
                SdfFilter {
                    flow: FlowDescription {
                        direction: FilterDirection::Out,
                        protocol: Some(6),
                        src: AddressMatch::Any,
                        src_ports: vec![
                            PortRange { lo: 80, hi: 80 },
                            PortRange { lo: 443, hi: 443 },
                        ],
                        dst: AddressMatch::Assigned,
                        dst_ports: vec![],
                    },
                    direction: FlowDirection::Downlink,
                },
                SdfFilter {
                    flow: flow("permit in 6 from assigned to any 8080-8090"),
                    direction: FlowDirection::Bidirectional,
                },
            ],
            flow_status: FlowStatus::EnabledDownlink,
            rating_group: Some(10),
            service_identifier: Some(1),
            monitoring_key: Some("mk-web".into()),
            online: false,
            offline: true,
            redirect: Some(
                RedirectInformation::new(
                    false,
                    RedirectAddressType::Url,
                    "https://portal.example/recharge",
                )
                .unwrap(),
            ),
            activation: Some(Timestamp::from_secs(1_767_225_600)),
            deactivation: Some(Timestamp::from_secs(1_798_761_600)),
        }],
        sessions: vec![
            SessionConfig {
                subscriber: SubscriberId::parse("imsi-001010000000001").unwrap(),
                ipv4: Some("10.45.0.2".parse().unwrap()),
                ipv6: Some(IpPrefix::parse("2001:db8:45:1::/64", true).unwrap()),
                rules: vec![std::sync::Arc::new(PccRule {
                    name: "voice".into(),
                    precedence: 20,
                    filters: vec![SdfFilter {
                        flow: flow("permit out 17 from 2001:db8::10 5060 to assigned"),
                        direction: FlowDirection::Uplink,
                    }],
                    flow_status: FlowStatus::Enabled,
                    rating_group: None,
                    service_identifier: None,
                    monitoring_key: Some("mk-voice".into()),
                    online: false,
                    offline: false,
                    redirect: None,
                    activation: None,
                    deactivation: None,
                })],
                predefined: vec!["web".into()],
                default_rule: DefaultRule::Drop,
                monitoring: Vec::new(),
                credits: Vec::new(),
            },
            SessionConfig {
                subscriber: SubscriberId::parse("nai-bob@example.net").unwrap(),
                ipv4: Some("10.45.0.3".parse().unwrap()),
                ipv6: None,
                rules: vec![],
                predefined: vec![],
                default_rule: DefaultRule::Forward { rating_group: 0 },
                monitoring: vec![],
                credits: vec![],
            },
        ],
        control: Default::default(),
    };
    assert_eq!(config, expected);
}

#[test]
fn empty_document_is_the_default() {
    assert_eq!(Config::from_toml_str("", "t").unwrap(), Config::default());
}

#[test]
fn every_mistake_is_reported() {
    let text = r#"[gateway]
ue_pools = ["10.45.0.0/16", "10.46.0.1/16"]
malformed = "ignore"
colour = "blue"

[[predefined_rule]]
name = "web"
precedence = 4294967296
flow_status = "ON"
flow = [{ description = "permit out 6 frm any to assigned" }]

[[predefined_rule]]
name = "web"
precedence = 1
rating_group = -1
activation = 2026-01-01T00:00:00Z
deactivation = 2025-01-01T00:00:00Z
redirect = { address_type = "URL", server_address = "portal.example" }
flow = []

[[session]]
subscriber = "imsi-1"
predefined = ["web", "nope"]

[[session]]
subscriber = "imsi-2"
ipv4 = "10.99.0.1"

[[session]]
subscriber = "imsi-3"
ipv4 = "10.45.0.9"

[[session]]
subscriber = "imsi-4"
ipv4 = "10.45.0.9"

[[session.rule]]
name = "x"
precedence = 1
flow = [{ description = "permit out 6 from any to assigned", direction = "SIDEWAYS" }]

[[session.rule]]
name = "x"
precedence = 2
flow = [{ description = "permit out 6 from any to assigned" }]
"#;
    let found = errors(text);
    let expected: Vec<(usize, usize, &str, &str)> = vec![
        (2, 29, "gateway.ue_pools[1]", "invalid pool prefix: '10.46.0.1/16' has host bits set; did you mean 10.46.0.0/16?"),
        (3, 13, "gateway.malformed", "'ignore' is not one of drop, pass"),
        (4, 1, "gateway.colour", "unknown key 'colour'; expected one of ue_pools, malformed, unknown_subscriber, non_subscriber, flow_table_capacity, idle_timeout"),
        (8, 14, "predefined_rule[0].precedence", "4294967296 is out of range; expected 0-4294967295"),
        (9, 15, "predefined_rule[0].flow_status", "'ON' is not one of ENABLED, ENABLED-UPLINK, ENABLED-DOWNLINK, DISABLED"),
        (10, 39, "predefined_rule[0].flow[0].description", "Flow-Description: expected 'from', found 'frm' at column 14"),
        (13, 8, "predefined_rule[1].name", "predefined rule 'web' is already defined at predefined_rule[0]"),
        (15, 16, "predefined_rule[1].rating_group", "-1 is out of range; expected 0-4294967295"),
        (17, 16, "predefined_rule[1].deactivation", "deactivation must be later than activation"),
        (18, 53, "predefined_rule[1].redirect.server_address", "a URL redirect address must be an http:// or https:// URL with a host, not 'portal.example'"),
        (19, 8, "predefined_rule[1].flow", "a rule needs at least one SDF filter"),
        (21, 1, "session[0]", "a session needs an ipv4 address, an ipv6 prefix, or both"),
        (23, 22, "session[0].predefined[1]", "no predefined_rule is named 'nope'"),
        (27, 8, "session[1].ipv4", "10.99.0.1 is not inside any ue_pool (10.45.0.0/16)"),
        (35, 8, "session[3].ipv4", "10.45.0.9 is already used by session[2]"),
        (40, 74, "session[3].rule[0].flow[0].direction", "'SIDEWAYS' is not one of DOWNLINK, UPLINK, BIDIRECTIONAL"),
        (43, 8, "session[3].rule[1].name", "rule 'x' is already defined in this session"),
    ];
    let found: Vec<(usize, usize, &str, &str)> = found
        .iter()
        .map(|(l, c, p, m)| (*l, *c, p.as_str(), m.as_str()))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn more_mistakes() {
    let text = r#"[gateway]
ue_pools = ["2001:db8:45::/48", "10.45.0.0/33"]
idle_timeout = { tcp = 0, sctp = 5 }

[[predefined_rule]]
name = "web"
flow = [{ description = "permit out 6 from any to assigned" }]
activation = 2026-01-01T00:00:00
redirect = { address_type = "IPV4_ADDRESS", server_address = "portal" }

[[session]]
subscriber = "imsi-1"
ipv6 = "2001:db8:45::/56"
predefined = ["web"]
default_rule = { action = "drop", rating_group = 3 }

[[session.rule]]
name = "web"
precedence = "high"

[[session]]
subscriber = "imsi-1"
ipv6 = "2001:db8:45:1::/64"
"#;
    let found = errors(text);
    let found: Vec<(usize, usize, &str, &str)> = found
        .iter()
        .map(|(l, c, p, m)| (*l, *c, p.as_str(), m.as_str()))
        .collect();
    let expected: Vec<(usize, usize, &str, &str)> = vec![
        (2, 33, "gateway.ue_pools[1]", "invalid pool prefix: prefix length '33' in '10.45.0.0/33' must be 0-32"),
        (3, 24, "gateway.idle_timeout.tcp", "0 is out of range; expected 1-604800"),
        (3, 27, "gateway.idle_timeout.sctp", "unknown key 'sctp'; expected one of tcp, udp, icmp, other"),
        (5, 1, "predefined_rule[0]", "missing required key 'precedence'"),
        (8, 14, "predefined_rule[0].activation", "'2026-01-01T00:00:00' needs a date, a time and an offset, e.g. 2026-01-01T00:00:00Z"),
        (9, 62, "predefined_rule[0].redirect.server_address", "an IPV4_ADDRESS redirect address must be an IPv4 address, not 'portal'"),
        (15, 50, "session[0].default_rule.rating_group", "a rating group only applies to action = \"forward\""),
        (17, 1, "session[0].rule[0]", "a rule needs at least one SDF filter: add flow = [{ description = \"permit out ...\" }]"),
        (18, 8, "session[0].rule[0].name", "rule 'web' has the name of a predefined rule this session activates"),
        (19, 14, "session[0].rule[0].precedence", "expected an integer, found string"),
        (22, 14, "session[1].subscriber", "subscriber imsi-1 already has a session at session[0]"),
        (23, 8, "session[1].ipv6", "2001:db8:45:1::/64 overlaps 2001:db8:45::/56 of session[0]"),
    ];
    assert_eq!(found, expected);
}

#[test]
fn redirect_table() {
    let text = r#"
[redirect]
http_ports = [80, 8080]
location = "{url}{q}from={orig}"
success_url = "http://Portal.Example:8000/recharge/success?x=1"
token_key = "000102030405060708090a0b0c0d0e0f"
token_max_age = 120
portal_hosts = ["portal.example."]
portal_addresses = ["192.0.2.80", "2001:db8::80"]
dns_resolvers = ["192.0.2.53"]
success_action = "LOCAL"
grace = 5
quic = "drop"
"#;
    let config = Config::from_toml_str(text, "t").unwrap_or_else(|e| panic!("{:#?}", e.0));
    let r = &config.gateway.redirect;
    assert_eq!(r.http_ports, [80, 8080]);
    assert_eq!(r.location, "{url}{q}from={orig}");
    assert_eq!(
        r.success_url,
        Some(SuccessUrl {
            host: "portal.example".into(),
            path: "/recharge/success".into()
        })
    );
    assert_eq!(r.token_key.as_ref().map(|k| k.len()), Some(16));
    assert_eq!(r.token_max_age, Duration::from_secs(120));
    assert_eq!(r.portal_hosts, ["portal.example"]);
    assert_eq!(r.portal_addresses.len(), 2);
    assert_eq!(r.grace, Duration::from_secs(5));
    assert_eq!(r.quic, QuicAction::Drop);
    assert_eq!(r.success_action, SuccessAction::Local);
}

#[test]
fn success_action_report_leaves_the_lift_to_the_policy_engine() {
    let config = Config::from_toml_str(
        "[redirect]\nsuccess_action = \"report\"\n[control]\npolicy_engine = \"http://127.0.0.1:50051\"\n",
        "t",
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.0));
    assert_eq!(
        config.gateway.redirect.success_action,
        SuccessAction::Report
    );
    let config = Config::from_toml_str("[redirect]\n", "t").unwrap();
    assert_eq!(config.gateway.redirect.success_action, SuccessAction::Local);
}

#[test]
fn redirect_mistakes_are_each_located() {
    let text = r#"[redirect]
http_ports = [0, "x"]
location = "{orig}"
success_url = "ftp://portal.example/ok"
token_key = "abc"
token_max_age = 0
portal_hosts = ["bad host"]
dns_resolvers = ["10.0.0.300"]
success_action = "lift"
colour = 1
"#;
    let e = errors(text);
    let at = |line: usize| {
        e.iter()
            .find(|x| x.0 == line)
            .unwrap_or_else(|| panic!("no error on line {line}: {e:#?}"))
            .clone()
    };
    assert_eq!(at(2).2, "redirect.http_ports[0]");
    assert!(e.iter().any(|x| x.2 == "redirect.http_ports[1]"));
    assert!(at(3).3.contains("{url}"));
    assert!(at(4).3.contains("not an http:// URL"));
    assert!(at(5).3.contains("even number"));
    assert!(at(6).3.contains("out of range"));
    assert!(at(7).3.contains("not a host name"));
    assert!(at(8).3.contains("not an IP address"));
    assert_eq!(at(9).2, "redirect.success_action");
    assert!(at(9).3.contains("report"), "{:?}", at(9));
    assert!(at(10).3.contains("unknown key 'colour'"));
    // A success URL without a key to verify its tokens.
    let e = errors("[redirect]\nsuccess_url = \"http://p/ok\"\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].3.contains("token_key"));
    let e = errors("[redirect]\ntoken_key = \"0011\"\n");
    assert!(e[0].3.contains("at least 16 bytes"), "{e:?}");
}

#[test]
fn the_control_table_and_subscriber_entries_are_read() {
    let text = r#"
[gateway]
ue_pools = ["10.45.0.0/16"]

[control]
listen = "127.0.0.1:0"
advertise = "http://192.0.2.1:50052"
origin_host = "gw1.example"
policy_engine = "http://127.0.0.1:50051"
request_timeout = 2
retry_backoff = 0
retry_max_backoff = 4
session_idle_timeout = 60
pending_action = "forward"
pending_queue = 4
pending_subscribers = 16
pending_timeout = 3
tls = { cert = "gw.pem", key = "gw.key" }
policy_engine_tls = { ca = "ca.pem", domain = "pcrf" }

[[subscriber]]
subscriber = "imsi-001010000000009"
ipv4 = "10.45.0.9"
ipv6 = "2001:db8:45:9::/64"
"#;
    let c = Config::from_toml_str(text, "t.toml").unwrap();
    assert_eq!(
        c.control,
        ControlSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            advertise: Some("http://192.0.2.1:50052".into()),
            origin_host: "gw1.example".into(),
            policy_engine: Some("http://127.0.0.1:50051".into()),
            request_timeout: Duration::from_secs(2),
            retry_backoff: Duration::ZERO,
            retry_max_backoff: Duration::from_secs(4),
            session_idle_timeout: Duration::from_secs(60),
            subscribers: vec![SubscriberMapping {
                subscriber: SubscriberId::parse("imsi-001010000000009").unwrap(),
                ipv4: Some("10.45.0.9".parse().unwrap()),
                ipv6: Some(IpPrefix::parse("2001:db8:45:9::/64", true).unwrap()),
            }],
            tls: Some(ServerTls {
                cert: "gw.pem".into(),
                key: "gw.key".into(),
                client_ca: None,
            }),
            policy_engine_tls: Some(ClientTls {
                ca: "ca.pem".into(),
                cert: None,
                key: None,
                domain: Some("pcrf".into()),
            }),
            ..Default::default()
        }
    );
    assert_eq!(
        c.gateway.pending,
        Some(PendingSettings {
            action: PendingAction::Forward,
            queue: 4,
            subscribers: 16,
            timeout: Duration::from_secs(3),
        })
    );
    // With a policy engine the recharge success is reported by default.
    assert_eq!(c.gateway.redirect.success_action, SuccessAction::Report);
    assert_eq!(c.control.reauth_endpoint(), "http://192.0.2.1:50052");
    let mapped = c.control.subscriber_for("10.45.0.9".parse().unwrap());
    assert_eq!(mapped.subscriber.to_string(), "imsi-001010000000009");
    let v6 = c
        .control
        .subscriber_for("2001:db8:45:7::5".parse().unwrap());
    assert_eq!(v6.subscriber.to_string(), "private-2001:db8:45:7::/64");
    let other = c.control.subscriber_for("10.45.0.10".parse().unwrap());
    assert_eq!(other.subscriber.to_string(), "private-10.45.0.10");
}

#[test]
fn without_a_policy_engine_nothing_is_pending_and_success_stays_local() {
    let c = Config::from_toml_str("[control]\nlisten = \"\"\n", "t.toml").unwrap();
    assert_eq!(c.control.listen, None);
    assert_eq!(c.gateway.pending, None);
    assert_eq!(c.gateway.redirect.success_action, SuccessAction::Local);
    let explicit = Config::from_toml_str(
        "[control]\npolicy_engine = \"http://127.0.0.1:1\"\n[redirect]\nsuccess_action = \"local\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        explicit.gateway.redirect.success_action,
        SuccessAction::Local
    );
    assert!(explicit.gateway.pending.is_some());
}

#[test]
fn control_mistakes_are_located() {
    let text = r#"[control]
listen = "nowhere"
policy_engine = "127.0.0.1:50051"
retry_backoff = 10
retry_max_backoff = 5
pending_action = "wait"
colour = 1
tls = { cert = "a.pem" }

[[subscriber]]
subscriber = "imsi-1"
ipv4 = "10.45.0.9"

[[subscriber]]
subscriber = "imsi-1"
ipv4 = "10.45.0.9"

[[subscriber]]
subscriber = "imsi-2"

[redirect]
success_action = "report"
"#;
    let got = errors(text);
    let expected: Vec<(usize, usize, String, String)> = [
        (1, 1, "control.retry_max_backoff", "retry_max_backoff (5 s) must be at least retry_backoff (10 s)"),
        (2, 10, "control.listen", "'nowhere' is not an address and port such as 127.0.0.1:50052 (\"\" turns the server off)"),
        (3, 17, "control.policy_engine", "'127.0.0.1:50051' must be an http:// or https:// URL with a port"),
        (6, 18, "control.pending_action", "'wait' is not one of hold, forward, drop"),
        (6, 18, "control.pending_action", "pending_action applies only with a policy_engine"),
        (7, 1, "control.colour", "unknown key 'colour'; expected one of listen, advertise, origin_host, policy_engine, request_timeout, retry_backoff, retry_max_backoff, session_idle_timeout, pending_action, pending_queue, pending_subscribers, pending_timeout, tls, policy_engine_tls, charging_system, charging_system_tls"),
        (8, 7, "control.tls", "missing required key 'key'"),
        (15, 14, "subscriber[1].subscriber", "imsi-1 is already mapped at subscriber[0]"),
        (16, 8, "subscriber[1].ipv4", "10.45.0.9 is already mapped to imsi-1"),
        (18, 1, "subscriber[2]", "a subscriber entry needs an ipv4 address, an ipv6 prefix, or both"),
        (22, 18, "redirect.success_action", "\"report\" needs a policy engine to report to ([control] policy_engine); use \"local\""),
    ]
    .into_iter()
    .map(|(l, c, p, m)| (l, c, p.to_string(), m.to_string()))
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn the_credit_table_reaches_the_data_path_and_the_gy_client() {
    let text = "[control]\ncharging_system = \"http://127.0.0.1:50051\"\n\
        [credit]\npending = \"HOLD\"\nqueue = 4\ngroups = 16\nretry = 2\nrequest_timeout = 3\n\
        attempts = 1\nretry_backoff = 0\nretry_max_backoff = 1\nfailure_handling = \"continue\"\n\
        continue_octets = 5000\njournal = \"gy.journal\"\n";
    let c = Config::from_toml_str(text, "t.toml").unwrap_or_else(|e| panic!("{:#?}", e.0));
    assert_eq!(c.gateway.credit.pending, PendingAction::Hold);
    assert_eq!((c.gateway.credit.queue, c.gateway.credit.groups), (4, 16));
    assert_eq!(c.gateway.credit.retry, std::time::Duration::from_secs(2));
    assert_eq!(
        c.control.charging_system.as_deref(),
        Some("http://127.0.0.1:50051")
    );
    let g = &c.control.credit;
    assert_eq!(g.request_timeout, std::time::Duration::from_secs(3));
    assert_eq!((g.attempts, g.continue_octets), (1, 5000));
    assert_eq!(g.retry_backoff, std::time::Duration::ZERO);
    assert_eq!(g.failure_handling, FailureHandling::Continue);
    assert_eq!(
        g.journal.as_deref(),
        Some(std::path::Path::new("gy.journal"))
    );
    // Without the table: forward while asked, RFC 4006's TERMINATE, no journal.
    let d = Config::from_toml_str("", "t.toml").unwrap_or_else(|e| panic!("{:#?}", e.0));
    assert_eq!(d.gateway.credit.pending, PendingAction::Forward);
    assert_eq!(d.control.credit, CreditControlSettings::default());
    assert_eq!(
        d.control.credit.failure_handling,
        FailureHandling::Terminate
    );
}
