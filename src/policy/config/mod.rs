//! The TOML configuration: UE pools, predefined rules, static sessions, data-path settings.
//! Every error is collected with its location so `weir check-config` can print them all.
//!
//! This module reads and validates; it never opens files (the caller hands in the text) and
//! never touches the data path.
//!
//! # Format
//!
//! ```toml
//! [gateway]                           # optional; every key has a default
//! ue_pools = ["10.45.0.0/16", "2001:db8:45::/48"]   # required for sessions: each is inside one
//! malformed = "drop"                  # or "pass"; default "drop"
//! unknown_subscriber = "drop"         # or "forward": pool address without a session; default "drop"
//! non_subscriber = "forward"          # or "drop": neither end in a pool; default "forward"
//! flow_table_capacity = 65536         # flows per worker, 1-4194304; default 65536
//! idle_timeout = { tcp = 300, udp = 60, icmp = 30, other = 60 }   # seconds, each 1-604800
//!
//! [redirect]                          # optional; how redirected subscribers are answered
//! http_ports = [80]                   # TCP ports answered with the 302 (1-65535, none twice)
//! location = "{url}{q}orig={orig}&sub={sub}"   # Location template, see below
//! success_url = "http://portal.example/recharge/success"   # host + path the watch looks for;
//!     # printable ASCII, no path segment beginning ':' or '*', no '{' or '}' (the portal's router)
//! token_key = "00112233445566778899aabbccddeeff"            # hex, >= 16 bytes, shared with the portal
//! token_max_age = 600                 # seconds a success token may live (1-86400)
//! portal_hosts = ["portal.example"]   # DNS answers for these names join the walled garden
//! portal_addresses = ["192.0.2.80"]   # portal addresses known up front
//! dns_resolvers = ["10.45.0.1"]       # the only resolvers a redirected subscriber may query
//! success_action = "local"            # lift the redirect in the data path at once; or "report":
//!     # raise the event only, the policy engine lifts it (the default with [control] policy_engine;
//!     # "report" without a policy engine is an error)
//! grace = 30                          # seconds the watch keeps looking after a lift (0-3600)
//! quic = "unreachable"                # UDP 443: ICMP port unreachable, or "drop"
//! cookie_secret = "…"                 # hex, >= 16 bytes; default derived from token_key
//!     # Location placeholders: {url} redirect address, {q} '?' or '&' (whichever continues
//!     # {url}), {orig} the original URL, {sub} subscriber id, {ue} UE address — all but {url}
//!     # and {q} percent-encoded.
//!
//! [[predefined_rule]]                 # any number
//! name = "web"                        # required, unique among predefined rules
//! precedence = 100                    # required, 0-4294967295, lower wins
//! flow_status = "ENABLED"             # ENABLED (default), ENABLED-UPLINK, ENABLED-DOWNLINK, DISABLED
//! rating_group = 10                   # optional, 0-4294967295
//! service_identifier = 1              # optional, 0-4294967295
//! monitoring_key = "mk-web"           # optional
//! online = false                      # default false
//! offline = true                      # default false
//! activation = 2026-01-01T00:00:00Z   # optional; a date-time with an offset
//! deactivation = 2027-01-01T00:00:00Z # optional; must be later than activation
//! redirect = { support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }
//!     # optional; support ENABLED (default) or DISABLED;
//!     # address_type IPV4_ADDRESS, IPV6_ADDRESS, URL (http/https) or SIP_URI (sip:/sips:);
//!     # the address is checked by `RedirectInformation::new` (it reaches a Location header)
//! flow = [                            # required, at least one SDF filter
//!   { description = "permit out 6 from any 80,443 to assigned", direction = "BIDIRECTIONAL" },
//!     # description: a Flow-Description (TS 29.212 §5.4.2);
//!     # direction: DOWNLINK, UPLINK or BIDIRECTIONAL (default)
//! ]
//!
//! [[session]]                         # any number
//! subscriber = "imsi-001010000000001" # required, unique; imsi-, msisdn-, nai-, sip-, private-
//! ipv4 = "10.45.0.2"                  # ipv4 and/or ipv6 required, inside a ue_pool if any given
//! ipv6 = "2001:db8:45:1::/64"         # a prefix (a bare address means /128)
//! predefined = ["web"]                # names of predefined rules active for the session
//! default_rule = { action = "forward", rating_group = 0 }
//!     # or { action = "drop" }; default forward with rating group 0
//!
//! [[session.rule]]                    # dynamic PCC rules: the same keys as predefined_rule;
//! name = "voice"                      # names unique within the session and distinct from the
//! precedence = 50                     # predefined rules it activates
//! flow = [{ description = "permit out 17 from any to assigned 5060" }]
//! ```
//!
//!
//! [control]                           # optional; the gRPC side of `weir run`
//! listen = "127.0.0.1:50052"          # weir.v1.Gateway (with reflection and health); "" turns it off
//! advertise = "http://192.0.2.1:50052"   # ReAuth endpoint given in CCR-I; default http://<listen>
//! origin_host = "weir.gateway"        # Origin-Host of CCR-I/U/T; 1-255 printable ASCII
//! policy_engine = "http://127.0.0.1:50051"   # weir.v1.PolicyEngine; unset: no Gx, sessions come
//!                                     # from the file and the operator API only
//! request_timeout = 5                 # seconds one request to the policy engine may take (1-86400)
//! retry_backoff = 1                   # first wait before a failed report is sent again (0-86400)
//! retry_max_backoff = 30              # largest wait, doubling up to it (>= retry_backoff)
//! session_idle_timeout = 300          # seconds without a packet before CCR-T (1-604800)
//! pending_action = "hold"             # while CCR-I is answered: "hold", "forward" or "drop"
//! pending_queue = 8                   # packets held per subscriber (1-64)
//! pending_subscribers = 1024          # subscribers pending at once per worker (1-65536)
//! pending_timeout = 5                 # seconds before held packets are dropped and asked again (1-600)
//!     # the pending_* keys and policy_engine_tls need policy_engine
//! tls = { cert = "gw.pem", key = "gw.key", client_ca = "ca.pem" }   # serve TLS; client_ca
//!                                     # optional: then client certificates are required
//! policy_engine_tls = { ca = "ca.pem", cert = "c.pem", key = "c.key", domain = "pcrf" }
//!                                     # dial the policy engine over TLS; cert+key together
//! charging_system = "http://127.0.0.1:50051" # weir.v1.ChargingSystem (Gy); unset: online
//!                                     # rating groups are never charged
//! charging_system_tls = { ca = "ca.pem" }    # as policy_engine_tls, for the charging system
//!
//! [credit]                            # optional; online charging (rules with online = true)
//! pending = "forward"                 # while credit is asked for: "forward", "hold" or "drop"
//! queue = 8                           # frames held per rating group (1-64)
//! groups = 1024                       # rating groups holding frames at once per worker (1-65536)
//! retry = 5                           # seconds before an unanswered credit request is made again (1-600)
//! request_timeout = 5                 # Tx: seconds one request to the charging system may take (1-86400)
//! attempts = 3                        # tries of a request before failure_handling applies (1-100)
//! retry_backoff = 1                   # first wait between tries (0-86400)
//! retry_max_backoff = 30              # largest wait, doubling up to it (>= retry_backoff)
//! failure_handling = "terminate"      # "terminate", "continue" or "retry_and_terminate";
//!                                     # the charging system's answer overrides it per session
//! continue_octets = 10000000          # octets granted locally per rating group under continue
//! journal = "/var/lib/weir/gy.journal"   # unanswered reports, kept across restarts; unset:
//!                                     # in memory only
//!     # the keys from request_timeout on need charging_system
//!
//! [[subscriber]]                      # the subscriber id CCR-I names for an address; an address
//! subscriber = "imsi-001010000000009" # with no entry is `private-<address>` (an IPv6 address
//! ipv4 = "10.45.0.9"                  # by its /64: `private-2001:db8:45:9::/64`); ipv4 and/or
//! ipv6 = "2001:db8:45:9::/64"         # ipv6, none mapped twice
//! ```
//!
//! Enumerated strings match without regard to case. Unknown keys are errors. Positions are
//! 1-based lines and columns counted in characters; a Flow-Description error points at the
//! offending token inside the string when the string has no escapes.

// The reader and the rule reader are shared with the policy engine's configuration
// (peers::policy_engine), so both files read and report alike.
pub(crate) mod control;
mod credit;
pub(crate) mod reader;
mod redirect;
mod rules;

pub(crate) use rules::read_rule;

pub use control::{
    ClientTls, ControlSettings, CreditControlSettings, FailureHandling, PendingAction,
    PendingSettings, ServerTls, SubscriberMapping,
};

pub use redirect::{split_http_url, QuicAction, RedirectSettings, SuccessAction, SuccessUrl};

use super::flow::IpPrefix;
use super::model::{PccRule, SessionConfig};
use reader::{as_str, Ctx, Fields};
use rules::{peek_name, read_session, LocatedSession};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use toml::de::DeTable;

/// The largest `flow_table_capacity`. Each worker reserves its table up front, about 185 bytes
/// a slot with room to spare (some 1.5 GiB of address space at this size), so a larger value
/// would fail in the allocator instead of here.
pub const MAX_FLOW_TABLE_CAPACITY: i128 = 1 << 22;

/// The longest idle timeout, in seconds (a week).
pub const MAX_IDLE_TIMEOUT_SECS: i128 = 604_800;

/// What happens to frames that cannot be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedAction {
    Drop,
    Pass,
}

/// The `[gateway]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    pub ue_pools: Vec<IpPrefix>,
    pub malformed: MalformedAction,
    /// Traffic from/to a UE pool address that has no session: forward (true) or drop.
    pub forward_unknown_subscriber: bool,
    /// IP traffic with neither end in a UE pool: forward (true) or drop.
    pub forward_non_subscriber: bool,
    pub flow_table_capacity: usize,
    pub tcp_idle_timeout: Duration,
    pub udp_idle_timeout: Duration,
    pub icmp_idle_timeout: Duration,
    pub other_idle_timeout: Duration,
    /// The `[redirect]` table.
    pub redirect: RedirectSettings,
    /// With a policy engine configured (`[control] policy_engine`): what a pool address without
    /// a session does while its CCR-I is answered. `None`: `unknown_subscriber` decides.
    pub pending: Option<PendingSettings>,
    /// Online charging: what a rating group's packets do while its credit is asked for (the
    /// `[credit]` table).
    pub credit: super::model::CreditSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            ue_pools: Vec::new(),
            malformed: MalformedAction::Drop,
            forward_unknown_subscriber: false,
            forward_non_subscriber: true,
            flow_table_capacity: 65536,
            tcp_idle_timeout: Duration::from_secs(300),
            udp_idle_timeout: Duration::from_secs(60),
            icmp_idle_timeout: Duration::from_secs(30),
            other_idle_timeout: Duration::from_secs(60),
            redirect: RedirectSettings::default(),
            pending: None,
            credit: Default::default(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub gateway: GatewaySettings,
    pub predefined: Vec<PccRule>,
    pub sessions: Vec<SessionConfig>,
    /// The `[control]` table and `[[subscriber]]` entries (not part of the snapshot).
    pub control: ControlSettings,
}

/// One problem in a configuration, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {path}: {message}")]
pub struct ConfigError {
    /// File name (or `<string>`).
    pub origin: String,
    /// 1-based line and column of the offending value.
    pub line: usize,
    pub column: usize,
    /// Where in the document, e.g. `session[2].rule[0].flow[1]`.
    pub path: String,
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in configuration", .0.len())]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// Parses and validates a configuration document. `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let mut ctx = Ctx::new(text, origin);
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let at = e.span().map_or(0, |s| s.start);
                ctx.error(at, "", format!("TOML syntax: {}", e.message().trim_end()));
                return Err(ConfigErrors(ctx.errors));
            }
        };
        let root = Fields::from_table(
            &mut ctx,
            root.get_ref(),
            root.span(),
            String::new(),
            // [dataplane] belongs to `weir run` (dataplane::DataplaneConfig reads it).
            &[
                "gateway",
                "redirect",
                "predefined_rule",
                "session",
                "dataplane",
                "control",
                "credit",
                "subscriber",
            ],
        );

        let mut gateway = root
            .get("gateway")
            .and_then(|v| read_gateway(&mut ctx, v))
            .unwrap_or_default();
        if let Some(r) = root
            .get("redirect")
            .and_then(|v| redirect::read_redirect(&mut ctx, v))
        {
            gateway.redirect = r;
        }

        let mut predefined = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, item) in root
            .array(&mut ctx, "predefined_rule")
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            if let Some((name, at)) = peek_name(item) {
                if let Some(first) = names.get(&name) {
                    let message = format!(
                        "predefined rule '{name}' is already defined at predefined_rule[{first}]"
                    );
                    ctx.error(at, &format!("predefined_rule[{i}].name"), message);
                } else {
                    names.insert(name, i);
                }
            }
            if let Some(r) = read_rule(&mut ctx, item, format!("predefined_rule[{i}]")) {
                predefined.push(r);
            }
        }

        let mut sessions = Vec::new();
        for (i, item) in root
            .array(&mut ctx, "session")
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            if let Some(s) = read_session(&mut ctx, item, format!("session[{i}]")) {
                sessions.push(s);
            }
        }
        check_sessions(&mut ctx, &gateway, &names, &sessions);

        let mut control_settings = ControlSettings::default();
        if let Some((c, pending)) = root
            .get("control")
            .and_then(|v| control::read_control(&mut ctx, v))
        {
            control_settings = c;
            gateway.pending = pending;
        }
        // Named at all (even wrongly, which is reported there): the client keys are not
        // refused a second time for it.
        let charging_system = root.get("control").is_some_and(|v| match v.get_ref() {
            toml::de::DeValue::Table(t) => t.contains_key("charging_system"),
            _ => false,
        });
        if let Some((d, c)) = root
            .get("credit")
            .and_then(|v| credit::read_credit(&mut ctx, v, charging_system))
        {
            gateway.credit = d;
            control_settings.credit = c;
        }
        if let Some(items) = root.array(&mut ctx, "subscriber") {
            control_settings.subscribers = control::read_subscribers(&mut ctx, items);
        }
        // With a policy engine the recharge success is its to act on, unless the file says
        // otherwise; without one nobody would lift the redirect on a report.
        let explicit = root.get("redirect").and_then(|v| match v.get_ref() {
            toml::de::DeValue::Table(t) => t.get("success_action").map(|a| {
                let report = matches!(a.get_ref(), toml::de::DeValue::String(s) if s.eq_ignore_ascii_case("report"));
                (a.span().start, report)
            }),
            _ => None,
        });
        match (explicit, control_settings.policy_engine.is_some()) {
            (None, true) => gateway.redirect.success_action = SuccessAction::Report,
            (Some((at, true)), false) => ctx
                .error(
                    at,
                    "redirect.success_action",
                    "\"report\" needs a policy engine to report to ([control] policy_engine); use \"local\"",
                ),
            _ => {}
        }

        if !ctx.errors.is_empty() {
            let mut errors = ctx.errors;
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            gateway,
            predefined,
            sessions: sessions.into_iter().filter_map(|s| s.session).collect(),
            control: control_settings,
        })
    }
}

fn read_gateway(ctx: &mut Ctx<'_>, value: &reader::Value<'_>) -> Option<GatewaySettings> {
    let f = Fields::new(
        ctx,
        value,
        "gateway".to_string(),
        &[
            "ue_pools",
            "malformed",
            "unknown_subscriber",
            "non_subscriber",
            "flow_table_capacity",
            "idle_timeout",
        ],
    )?;
    let mut g = GatewaySettings::default();
    for (i, item) in f.array(ctx, "ue_pools").unwrap_or(&[]).iter().enumerate() {
        let path = format!("gateway.ue_pools[{i}]");
        let Some(text) = as_str(ctx, item, &path) else {
            continue;
        };
        match IpPrefix::parse(text, true) {
            Ok(pool) => {
                if let Some(other) = g.ue_pools.iter().find(|p| p.overlaps(&pool)) {
                    ctx.error(
                        item.span().start,
                        &path,
                        format!("pool {pool} overlaps pool {other}"),
                    );
                }
                g.ue_pools.push(pool);
            }
            Err(m) => ctx.error(
                item.span().start,
                &path,
                format!("invalid pool prefix: {m}"),
            ),
        }
    }
    let malformed = [
        ("drop", MalformedAction::Drop),
        ("pass", MalformedAction::Pass),
    ];
    if let Some(a) = f.choice(ctx, "malformed", &malformed) {
        g.malformed = a;
    }
    let forward_or_drop = [("forward", true), ("drop", false)];
    if let Some(v) = f.choice(ctx, "unknown_subscriber", &forward_or_drop) {
        g.forward_unknown_subscriber = v;
    }
    if let Some(v) = f.choice(ctx, "non_subscriber", &forward_or_drop) {
        g.forward_non_subscriber = v;
    }
    if let Some(n) = f.int(ctx, "flow_table_capacity", 1, MAX_FLOW_TABLE_CAPACITY) {
        // In range, so at most 2^22: fits any usize.
        g.flow_table_capacity = usize::try_from(n).unwrap_or(1);
    }
    if let Some(v) = f.get("idle_timeout") {
        if let Some(t) = Fields::new(
            ctx,
            v,
            "gateway.idle_timeout".to_string(),
            &["tcp", "udp", "icmp", "other"],
        ) {
            let max = MAX_IDLE_TIMEOUT_SECS;
            let secs = |n: i128| Duration::from_secs(u64::try_from(n).unwrap_or(0));
            if let Some(n) = t.int(ctx, "tcp", 1, max) {
                g.tcp_idle_timeout = secs(n);
            }
            if let Some(n) = t.int(ctx, "udp", 1, max) {
                g.udp_idle_timeout = secs(n);
            }
            if let Some(n) = t.int(ctx, "icmp", 1, max) {
                g.icmp_idle_timeout = secs(n);
            }
            if let Some(n) = t.int(ctx, "other", 1, max) {
                g.other_idle_timeout = secs(n);
            }
        }
    }
    Some(g)
}

/// Checks across sessions and against the predefined rules: names resolve, nothing clashes,
/// and every address belongs to a pool and to one session only.
fn check_sessions(
    ctx: &mut Ctx<'_>,
    gateway: &GatewaySettings,
    predefined: &HashMap<String, usize>,
    sessions: &[LocatedSession],
) {
    let pools = || {
        let list: Vec<String> = gateway.ue_pools.iter().map(|p| p.to_string()).collect();
        list.join(", ")
    };
    // With no pool no packet is ever a subscriber's, so a session could never match.
    let in_pool = |addr: &IpPrefix| gateway.ue_pools.iter().any(|p| p.covers(addr));
    let outside = |what: String| {
        if gateway.ue_pools.is_empty() {
            format!(
                "{what} is not inside any ue_pool: gateway.ue_pools is empty, so no packet \
                 would ever reach this session; add a pool that covers it"
            )
        } else {
            format!("{what} is not inside any ue_pool ({})", pools())
        }
    };
    let mut subscribers: HashMap<String, &str> = HashMap::new();
    let mut v4: HashMap<Ipv4Addr, &str> = HashMap::new();
    let mut v6: Vec<(IpPrefix, &str)> = Vec::new();
    for s in sessions {
        if let Some((id, at)) = &s.subscriber {
            let id = id.to_string();
            if let Some(first) = subscribers.get(&id) {
                let path = format!("{}.subscriber", s.path);
                let message = format!("subscriber {id} already has a session at {first}");
                ctx.error(*at, &path, message);
            } else {
                subscribers.insert(id, &s.path);
            }
        }
        if let Some((addr, at)) = s.ipv4 {
            let path = format!("{}.ipv4", s.path);
            if !in_pool(&IpPrefix::host(IpAddr::V4(addr))) {
                ctx.error(at, &path, outside(addr.to_string()));
            }
            if let Some(first) = v4.get(&addr) {
                ctx.error(at, &path, format!("{addr} is already used by {first}"));
            } else {
                v4.insert(addr, &s.path);
            }
        }
        if let Some((prefix, at)) = s.ipv6 {
            let path = format!("{}.ipv6", s.path);
            if !in_pool(&prefix) {
                ctx.error(at, &path, outside(prefix.to_string()));
            }
            if let Some((other, first)) = v6.iter().find(|(p, _)| p.overlaps(&prefix)) {
                let message = format!("{prefix} overlaps {other} of {first}");
                ctx.error(at, &path, message);
            } else {
                v6.push((prefix, &s.path));
            }
        }

        for (i, (name, at)) in s.predefined.iter().enumerate() {
            let path = format!("{}.predefined[{i}]", s.path);
            if !predefined.contains_key(name) {
                ctx.error(*at, &path, format!("no predefined_rule is named '{name}'"));
            } else if s.predefined[..i].iter().any(|(n, _)| n == name) {
                ctx.error(*at, &path, format!("'{name}' is listed twice"));
            }
        }
        for (i, (name, at)) in s.rule_names.iter().enumerate() {
            let path = format!("{}.rule[{i}].name", s.path);
            if s.rule_names[..i].iter().any(|(n, _)| n == name) {
                let message = format!("rule '{name}' is already defined in this session");
                ctx.error(*at, &path, message);
            } else if s.predefined.iter().any(|(n, _)| n == name) {
                let message = format!(
                    "rule '{name}' has the name of a predefined rule this session activates"
                );
                ctx.error(*at, &path, message);
            }
        }
    }
}

#[cfg(test)]
mod tests;
