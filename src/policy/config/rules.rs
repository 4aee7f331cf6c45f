//! Reading PCC rules (`[[predefined_rule]]`, `[[session.rule]]`) and sessions (`[[session]]`).
//! Checks that need more than one rule or session at a time live in the parent module.

use super::reader::{as_str, Ctx, Fields, Span, Value};
use crate::policy::flow::{FlowDescription, IpPrefix};
use crate::policy::model::{
    DefaultRule, FlowDirection, FlowStatus, PccRule, RedirectAddressType, RedirectInformation,
    SdfFilter, SessionConfig, SubscriberId,
};
use std::net::{IpAddr, Ipv4Addr};
use toml::de::DeValue;

const RULE_KEYS: &[&str] = &[
    "name",
    "precedence",
    "flow_status",
    "rating_group",
    "service_identifier",
    "monitoring_key",
    "online",
    "offline",
    "activation",
    "deactivation",
    "redirect",
    "flow",
];

const FLOW_STATUS: &[(&str, FlowStatus)] = &[
    ("ENABLED", FlowStatus::Enabled),
    ("ENABLED-UPLINK", FlowStatus::EnabledUplink),
    ("ENABLED-DOWNLINK", FlowStatus::EnabledDownlink),
    ("DISABLED", FlowStatus::Disabled),
];

const FLOW_DIRECTION: &[(&str, FlowDirection)] = &[
    ("DOWNLINK", FlowDirection::Downlink),
    ("UPLINK", FlowDirection::Uplink),
    ("BIDIRECTIONAL", FlowDirection::Bidirectional),
];

const REDIRECT_SUPPORT: &[(&str, bool)] = &[("ENABLED", true), ("DISABLED", false)];

const ADDRESS_TYPE: &[(&str, RedirectAddressType)] = &[
    ("IPV4_ADDRESS", RedirectAddressType::Ipv4),
    ("IPV6_ADDRESS", RedirectAddressType::Ipv6),
    ("URL", RedirectAddressType::Url),
    ("SIP_URI", RedirectAddressType::SipUri),
];

/// Reads one rule table; `None` if anything in it was wrong (all of it reported).
pub(crate) fn read_rule(ctx: &mut Ctx<'_>, value: &Value<'_>, path: String) -> Option<PccRule> {
    let before = ctx.error_count();
    let f = Fields::new(ctx, value, path, RULE_KEYS)?;

    let name = f.required_str(ctx, "name");
    if let Some((n, span)) = &name {
        if n.trim().is_empty() {
            ctx.error(span.start, &f.path("name"), "a rule name must not be empty");
        }
    }
    if f.get("precedence").is_none() {
        f.missing(ctx, "precedence");
    }
    let precedence = f.u32(ctx, "precedence");
    let flow_status = f.choice(ctx, "flow_status", FLOW_STATUS);
    let rating_group = f.u32(ctx, "rating_group");
    let service_identifier = f.u32(ctx, "service_identifier");
    let monitoring_key = f.str(ctx, "monitoring_key");
    if let Some((key, span)) = &monitoring_key {
        if key.is_empty() {
            ctx.error(
                span.start,
                &f.path("monitoring_key"),
                "a monitoring key must not be empty",
            );
        }
    }
    let online = f.bool(ctx, "online");
    let offline = f.bool(ctx, "offline");
    let activation = f.timestamp(ctx, "activation");
    let deactivation = f.timestamp(ctx, "deactivation");
    if let (Some((on, _)), Some((off, span))) = (&activation, &deactivation) {
        if off <= on {
            ctx.error(
                span.start,
                &f.path("deactivation"),
                "deactivation must be later than activation",
            );
        }
    }
    let redirect = f
        .get("redirect")
        .and_then(|v| read_redirect(ctx, v, f.path("redirect")));
    let filters = read_filters(ctx, &f);

    if ctx.error_count() != before {
        return None;
    }
    Some(PccRule {
        name: name?.0.to_string(),
        precedence: precedence?,
        filters,
        flow_status: flow_status.unwrap_or(FlowStatus::Enabled),
        rating_group,
        service_identifier,
        monitoring_key: monitoring_key.map(|(k, _)| k.to_string()),
        online: online.unwrap_or(false),
        offline: offline.unwrap_or(false),
        redirect,
        activation: activation.map(|(t, _)| t),
        deactivation: deactivation.map(|(t, _)| t),
    })
}

fn read_filters(ctx: &mut Ctx<'_>, rule: &Fields<'_, '_>) -> Vec<SdfFilter> {
    let mut filters = Vec::new();
    let Some(items) = rule.array(ctx, "flow") else {
        if rule.get("flow").is_none() {
            ctx.error(
                rule.span.start,
                &rule.path,
                "a rule needs at least one SDF filter: add flow = [{ description = \"permit out ...\" }]",
            );
        }
        return filters;
    };
    if items.is_empty() {
        if let Some(v) = rule.get("flow") {
            ctx.error(
                v.span().start,
                &rule.path("flow"),
                "a rule needs at least one SDF filter",
            );
        }
    }
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", rule.path("flow"));
        let Some(f) = Fields::new(ctx, item, path, &["description", "direction"]) else {
            continue;
        };
        let direction = f.choice(ctx, "direction", FLOW_DIRECTION);
        let Some((text, span)) = f.required_str(ctx, "description") else {
            continue;
        };
        match text.parse::<FlowDescription>() {
            Ok(flow) => filters.push(SdfFilter {
                flow,
                direction: direction.unwrap_or(FlowDirection::Bidirectional),
            }),
            Err(e) => {
                let at = offset_in_string(ctx.text(), &span, text, e.column);
                ctx.error(at, &f.path("description"), e.to_string());
            }
        }
    }
    filters
}

/// Points inside a string literal at `column` (1-based within the string's value) when the
/// literal has no escapes, so the editor lands on the offending token; otherwise at the literal.
fn offset_in_string(text: &str, span: &Span, value: &str, column: usize) -> usize {
    let literal = text.get(span.clone()).unwrap_or("");
    let plain = literal.len() == value.len() + 2
        && (literal.starts_with('"') || literal.starts_with('\''))
        && literal.get(1..literal.len() - 1) == Some(value);
    if plain {
        span.start + 1 + column.saturating_sub(1).min(value.len())
    } else {
        span.start
    }
}

fn read_redirect(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    path: String,
) -> Option<RedirectInformation> {
    let before = ctx.error_count();
    let f = Fields::new(
        ctx,
        value,
        path,
        &["support", "address_type", "server_address"],
    )?;
    let enabled = f.choice(ctx, "support", REDIRECT_SUPPORT);
    if f.get("address_type").is_none() {
        f.missing(ctx, "address_type");
    }
    let address_type = f.choice(ctx, "address_type", ADDRESS_TYPE);
    let address = f.required_str(ctx, "server_address");
    let info = match (address_type, &address) {
        (Some(kind), Some((addr, span))) => {
            match RedirectInformation::new(enabled.unwrap_or(true), kind, addr) {
                Ok(info) => Some(info),
                Err(e) => {
                    ctx.error(span.start, &f.path("server_address"), e.to_string());
                    None
                }
            }
        }
        _ => None,
    };
    if ctx.error_count() != before {
        return None;
    }
    info
}

/// A session as read, with what the cross-session checks need even when the session itself
/// had mistakes, so one bad key does not hide a clash elsewhere.
pub(super) struct LocatedSession {
    /// `None` if anything in the session was wrong.
    pub(super) session: Option<SessionConfig>,
    pub(super) path: String,
    pub(super) subscriber: Option<(SubscriberId, usize)>,
    pub(super) ipv4: Option<(Ipv4Addr, usize)>,
    pub(super) ipv6: Option<(IpPrefix, usize)>,
    /// Each activated predefined name and where it is written.
    pub(super) predefined: Vec<(String, usize)>,
    /// Each dynamic rule's name (valid rule or not) and where it is written.
    pub(super) rule_names: Vec<(String, usize)>,
}

/// A rule table's name, read leniently so duplicate checks see rules that failed otherwise.
pub(super) fn peek_name(value: &Value<'_>) -> Option<(String, usize)> {
    let DeValue::Table(t) = value.get_ref() else {
        return None;
    };
    let v = t.get("name")?;
    match v.get_ref() {
        DeValue::String(s) => Some((s.to_string(), v.span().start)),
        _ => None,
    }
}

pub(super) fn read_session(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    path: String,
) -> Option<LocatedSession> {
    let before = ctx.error_count();
    let f = Fields::new(
        ctx,
        value,
        path,
        &[
            "subscriber",
            "ipv4",
            "ipv6",
            "predefined",
            "default_rule",
            "rule",
        ],
    )?;
    let subscriber = f.required_str(ctx, "subscriber").and_then(|(s, span)| {
        SubscriberId::parse(s)
            .map_err(|m| ctx.error(span.start, &f.path("subscriber"), m))
            .ok()
            .map(|id| (id, span.start))
    });
    let ipv4 = f.str(ctx, "ipv4").and_then(|(s, span)| {
        s.parse::<Ipv4Addr>()
            .map_err(|_| {
                ctx.error(
                    span.start,
                    &f.path("ipv4"),
                    format!("'{s}' is not an IPv4 address"),
                )
            })
            .ok()
            .map(|a| (a, span.start))
    });
    let ipv6 = f
        .str(ctx, "ipv6")
        .and_then(|(s, span)| match IpPrefix::parse(s, true) {
            Ok(p) if matches!(p.addr, IpAddr::V6(_)) => Some((p, span.start)),
            Ok(_) => {
                ctx.error(
                    span.start,
                    &f.path("ipv6"),
                    format!("'{s}' is not an IPv6 prefix"),
                );
                None
            }
            Err(m) => {
                ctx.error(span.start, &f.path("ipv6"), m);
                None
            }
        });
    if f.get("ipv4").is_none() && f.get("ipv6").is_none() {
        ctx.error(
            f.span.start,
            &f.path,
            "a session needs an ipv4 address, an ipv6 prefix, or both",
        );
    }

    let mut predefined = Vec::new();
    for (i, item) in f.array(ctx, "predefined").unwrap_or(&[]).iter().enumerate() {
        if let Some(name) = as_str(ctx, item, &format!("{}[{i}]", f.path("predefined"))) {
            predefined.push((name.to_string(), item.span().start));
        }
    }

    let default_rule = f
        .get("default_rule")
        .and_then(|v| read_default_rule(ctx, v, f.path("default_rule")));

    let mut rules = Vec::new();
    let mut rule_names = Vec::new();
    for (i, item) in f.array(ctx, "rule").unwrap_or(&[]).iter().enumerate() {
        rule_names.extend(peek_name(item));
        if let Some(r) = read_rule(ctx, item, format!("{}[{i}]", f.path("rule"))) {
            rules.push(std::sync::Arc::new(r));
        }
    }

    let session = match &subscriber {
        Some((id, _)) if ctx.error_count() == before => Some(SessionConfig {
            subscriber: id.clone(),
            ipv4: ipv4.map(|(a, _)| a),
            ipv6: ipv6.map(|(p, _)| p),
            rules,
            predefined: predefined.iter().map(|(n, _)| n.clone()).collect(),
            default_rule: default_rule.unwrap_or(DefaultRule::Forward { rating_group: 0 }),
            monitoring: Vec::new(),
            credits: Vec::new(),
        }),
        _ => None,
    };
    Some(LocatedSession {
        session,
        path: f.path.clone(),
        subscriber,
        ipv4,
        ipv6,
        predefined,
        rule_names,
    })
}

fn read_default_rule(ctx: &mut Ctx<'_>, value: &Value<'_>, path: String) -> Option<DefaultRule> {
    let f = Fields::new(ctx, value, path, &["action", "rating_group"])?;
    if f.get("action").is_none() {
        f.missing(ctx, "action");
    }
    let forward = f.choice(ctx, "action", &[("forward", true), ("drop", false)])?;
    let rating_group = f.u32(ctx, "rating_group");
    if forward {
        Some(DefaultRule::Forward {
            rating_group: rating_group.unwrap_or(0),
        })
    } else {
        if let Some(v) = f.get("rating_group") {
            ctx.error(
                v.span().start,
                &f.path("rating_group"),
                "a rating group only applies to action = \"forward\"",
            );
        }
        Some(DefaultRule::Drop)
    }
}
