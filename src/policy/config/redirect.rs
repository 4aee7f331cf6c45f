//! The `[redirect]` table: how the gateway answers a redirected subscriber (the 302 responder),
//! what stays reachable (the walled garden), and how it recognises a recharge success.

use super::reader::{as_str, Ctx, Fields, Value};
use crate::policy::template::Template;
use crate::token::{parse_hex_key, TokenKey};
use std::net::IpAddr;
use std::time::Duration;

/// What a verified recharge success does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuccessAction {
    /// Lift the session's redirect in the data path at once, and raise the event.
    Local,
    /// Raise the event only: the control plane reports it to the policy engine (CCR-U with
    /// WEIR_RECHARGE_SUCCESS), which removes the redirect in its answer or a RAR.
    Report,
}

/// What a redirected subscriber's QUIC (UDP 443) gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuicAction {
    /// An ICMP port-unreachable: browsers give up on QUIC at once and fall back to TCP, where the
    /// 302 responder or the RST waits.
    Unreachable,
    /// Silently dropped: browsers fall back only after their QUIC handshake timer.
    Drop,
}

/// The success URL the watch looks for: host (lower case, no port) and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuccessUrl {
    pub host: String,
    pub path: String,
}

/// The `[redirect]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectSettings {
    /// TCP ports the 302 responder answers on; other TCP ports get an RST.
    pub http_ports: Vec<u16>,
    /// The `Location` template, parsed.
    pub location: Template,
    pub success_url: Option<SuccessUrl>,
    /// Shared with the portal; signs and verifies success tokens. Validated: at least 16 bytes.
    pub token_key: Option<TokenKey>,
    pub token_max_age: Duration,
    /// Host names of the portal: their addresses, learned from DNS answers, stay reachable.
    pub portal_hosts: Vec<String>,
    /// Portal addresses known up front.
    pub portal_addresses: Vec<IpAddr>,
    /// The only resolvers a redirected subscriber may query.
    pub dns_resolvers: Vec<IpAddr>,
    pub success_action: SuccessAction,
    /// How long after a lift the watch keeps looking (late duplicates are not counted as attacks).
    pub grace: Duration,
    pub quic: QuicAction,
    /// Secret of the SYN cookies; empty means derived from the token key (the live data path
    /// replaces it with random bytes at start).
    pub cookie_secret: Vec<u8>,
}

impl Default for RedirectSettings {
    fn default() -> Self {
        RedirectSettings {
            http_ports: vec![80],
            location: Template::default(),
            success_url: None,
            token_key: None,
            token_max_age: Duration::from_secs(600),
            portal_hosts: Vec::new(),
            portal_addresses: Vec::new(),
            dns_resolvers: Vec::new(),
            success_action: SuccessAction::Local,
            grace: Duration::from_secs(30),
            quic: QuicAction::Unreachable,
            cookie_secret: Vec::new(),
        }
    }
}

const KEYS: &[&str] = &[
    "http_ports",
    "location",
    "success_url",
    "token_key",
    "token_max_age",
    "portal_hosts",
    "portal_addresses",
    "dns_resolvers",
    "success_action",
    "grace",
    "quic",
    "cookie_secret",
];

/// Splits `http://host[:port]/path[?query]` into lower-case host (no port) and path.
pub fn split_http_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    if host.is_empty() || url.contains(char::is_whitespace) {
        return None;
    }
    let path = rest[end..].split(['?', '#']).next().unwrap_or("");
    let path = if path.is_empty() { "/" } else { path };
    Some((host.to_ascii_lowercase(), path.to_string()))
}

/// The portal serves the success path as a route, and its router (axum 0.8) refuses segments
/// that begin with `:` or `*` (the old capture syntax) and treats `{`…`}` as a capture: such
/// a path would stop the portal at start, or match URLs the watch does not, so it is refused
/// here instead.
fn check_success_path(path: &str) -> Result<(), String> {
    if let Some(seg) = path
        .split('/')
        .find(|seg| seg.starts_with(':') || seg.starts_with('*'))
    {
        return Err(format!(
            "success_url path segment '{seg}' must not begin with ':' or '*' (percent-encode it: %3A, %2A)"
        ));
    }
    if path.contains(['{', '}']) {
        return Err(format!(
            "success_url path '{path}' must not contain '{{' or '}}' (percent-encode them: %7B, %7D)"
        ));
    }
    Ok(())
}

pub(super) fn read_redirect(ctx: &mut Ctx<'_>, value: &Value<'_>) -> Option<RedirectSettings> {
    let before = ctx.error_count();
    let f = Fields::new(ctx, value, "redirect".to_string(), KEYS)?;
    let mut r = RedirectSettings::default();
    if let Some(items) = f.array(ctx, "http_ports") {
        r.http_ports.clear();
        if items.is_empty() {
            if let Some(v) = f.get("http_ports") {
                ctx.error(
                    v.span().start,
                    &f.path("http_ports"),
                    "list at least one port, e.g. [80]",
                );
            }
        }
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", f.path("http_ports"));
            match item.get_ref() {
                toml::de::DeValue::Integer(n) => match u16::from_str_radix(n.as_str(), n.radix()) {
                    Ok(p) if r.http_ports.contains(&p) => ctx.error(
                        item.span().start,
                        &path,
                        format!("port {p} is listed twice"),
                    ),
                    Ok(p) if p != 0 => r.http_ports.push(p),
                    _ => ctx.error(
                        item.span().start,
                        &path,
                        format!("{n} is not a port (1-65535)"),
                    ),
                },
                other => ctx.error(
                    item.span().start,
                    &path,
                    format!("expected a port number, found {}", other.type_str()),
                ),
            }
        }
    }
    if let Some((t, span)) = f.str(ctx, "location") {
        match Template::parse(t) {
            Ok(template) => r.location = template,
            Err(m) => ctx.error(span.start, &f.path("location"), m),
        }
    }
    if let Some((u, span)) = f.str(ctx, "success_url") {
        let at = span.start;
        let path = f.path("success_url");
        if u.contains(|c: char| !c.is_ascii_graphic()) {
            let message = format!(
                "'{}' must be printable ASCII without spaces (percent-encode the rest)",
                u.escape_default()
            );
            ctx.error(at, &path, message);
        } else {
            match split_http_url(u) {
                Some((host, p)) => match check_success_path(&p) {
                    Ok(()) => r.success_url = Some(SuccessUrl { host, path: p }),
                    Err(m) => ctx.error(at, &path, m),
                },
                None => ctx.error(
                    at,
                    &path,
                    format!("'{u}' is not an http:// URL with a host"),
                ),
            }
        }
    }
    if let Some((k, span)) = f.str(ctx, "token_key") {
        match TokenKey::from_hex(k) {
            Ok(key) => r.token_key = Some(key),
            Err(m) => ctx.error(span.start, &f.path("token_key"), m),
        }
    }
    if let Some((k, span)) = f.str(ctx, "cookie_secret") {
        match parse_hex_key(k) {
            Ok(key) if key.len() >= 16 => r.cookie_secret = key,
            Ok(key) => ctx.error(
                span.start,
                &f.path("cookie_secret"),
                format!("a cookie secret needs at least 16 bytes, got {}", key.len()),
            ),
            Err(m) => ctx.error(span.start, &f.path("cookie_secret"), m),
        }
    }
    if r.success_url.is_some() && r.token_key.is_none() && f.get("token_key").is_none() {
        ctx.error(
            f.span.start,
            &f.path,
            "success_url needs token_key (hex, at least 16 bytes, shared with the portal)",
        );
    }
    let secs = |n: i128| Duration::from_secs(u64::try_from(n).unwrap_or(0));
    if let Some(n) = f.int(ctx, "token_max_age", 1, 86_400) {
        r.token_max_age = secs(n);
    }
    if let Some(n) = f.int(ctx, "grace", 0, 3_600) {
        r.grace = secs(n);
    }
    for (i, item) in f
        .array(ctx, "portal_hosts")
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let path = format!("{}[{i}]", f.path("portal_hosts"));
        if let Some(h) = as_str(ctx, item, &path) {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            if h.is_empty()
                || h.len() > 253
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                ctx.error(
                    item.span().start,
                    &path,
                    format!("'{h}' is not a host name"),
                );
            } else {
                r.portal_hosts.push(h);
            }
        }
    }
    for key in ["portal_addresses", "dns_resolvers"] {
        for (i, item) in f.array(ctx, key).unwrap_or(&[]).iter().enumerate() {
            let path = format!("{}[{i}]", f.path(key));
            if let Some(a) = as_str(ctx, item, &path) {
                match a.parse::<IpAddr>() {
                    Ok(addr) if key == "portal_addresses" => r.portal_addresses.push(addr),
                    Ok(addr) => r.dns_resolvers.push(addr),
                    Err(_) => ctx.error(
                        item.span().start,
                        &path,
                        format!("'{a}' is not an IP address"),
                    ),
                }
            }
        }
    }
    if let Some(a) = f.choice(
        ctx,
        "success_action",
        &[
            ("local", SuccessAction::Local),
            ("report", SuccessAction::Report),
        ],
    ) {
        r.success_action = a;
    }
    if let Some(q) = f.choice(
        ctx,
        "quic",
        &[
            ("unreachable", QuicAction::Unreachable),
            ("drop", QuicAction::Drop),
        ],
    ) {
        r.quic = q;
    }
    (ctx.error_count() == before).then_some(r)
}
