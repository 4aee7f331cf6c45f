//! PCC rules between the wire (`weir.v1` messages) and the crate's model: every rule that comes
//! in through the API is checked exactly as the configuration file checks its rules (the same
//! Flow-Description parser), and every refusal names the field and the reason.

use crate::policy::{
    FlowDescription, FlowDirection, FlowStatus, PccRule, RedirectAddressType, RedirectInformation,
    SdfFilter,
};
use crate::proto::v1 as pb;
use crate::time::Timestamp;

/// Longest list accepted in a request (rules, names, events, reports, usage entries).
pub const MAX_LIST: usize = 64;
/// Longest rule name or monitoring key, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A request field that is wrong, and why. Becomes INVALID_ARGUMENT `field: reason`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<Invalid> for tonic::Status {
    fn from(e: Invalid) -> tonic::Status {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// Refuses a list longer than [`MAX_LIST`].
pub fn check_len<T>(items: &[T], field: &str) -> Result<(), Invalid> {
    if items.len() > MAX_LIST {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_LIST} entries, got {}", items.len()),
        ));
    }
    Ok(())
}

/// A rule name or monitoring key: 1-128 bytes, not only spaces.
pub fn check_name(name: &str, field: &str) -> Result<(), Invalid> {
    if name.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_NAME_LEN} bytes, got {}", name.len()),
        ));
    }
    Ok(())
}

fn flow_status_of(s: FlowStatus) -> pb::FlowStatus {
    match s {
        FlowStatus::EnabledUplink => pb::FlowStatus::EnabledUplink,
        FlowStatus::EnabledDownlink => pb::FlowStatus::EnabledDownlink,
        FlowStatus::Enabled => pb::FlowStatus::Enabled,
        FlowStatus::Disabled => pb::FlowStatus::Disabled,
    }
}

fn direction_of(d: FlowDirection) -> pb::FlowDirection {
    match d {
        FlowDirection::Downlink => pb::FlowDirection::Downlink,
        FlowDirection::Uplink => pb::FlowDirection::Uplink,
        FlowDirection::Bidirectional => pb::FlowDirection::Bidirectional,
    }
}

fn address_type_of(t: RedirectAddressType) -> pb::RedirectAddressType {
    match t {
        RedirectAddressType::Ipv4 => pb::RedirectAddressType::Ipv4Address,
        RedirectAddressType::Ipv6 => pb::RedirectAddressType::Ipv6Address,
        RedirectAddressType::Url => pb::RedirectAddressType::Url,
        RedirectAddressType::SipUri => pb::RedirectAddressType::SipUri,
    }
}

/// The wire form of a rule (its activation times travel in the Charging-Rule-Install).
pub fn definition_of(rule: &PccRule) -> pb::ChargingRuleDefinition {
    pb::ChargingRuleDefinition {
        charging_rule_name: rule.name.clone(),
        flow_information: rule
            .filters
            .iter()
            .map(|f| pb::FlowInformation {
                flow_description: f.flow.to_string(),
                flow_direction: direction_of(f.direction) as i32,
            })
            .collect(),
        flow_status: Some(flow_status_of(rule.flow_status) as i32),
        precedence: Some(rule.precedence),
        rating_group: rule.rating_group,
        service_identifier: rule.service_identifier,
        monitoring_key: rule.monitoring_key.clone().unwrap_or_default(),
        online: rule.online,
        offline: rule.offline,
        redirect_information: rule.redirect.as_ref().map(|r| pb::RedirectInformation {
            redirect_support: if r.enabled() {
                pb::RedirectSupport::RedirectionEnabled
            } else {
                pb::RedirectSupport::RedirectionDisabled
            } as i32,
            redirect_address_type: address_type_of(r.address_type()) as i32,
            redirect_server_address: r.server_address().to_string(),
        }),
    }
}

pub fn redirect_of(
    r: &pb::RedirectInformation,
    path: &str,
) -> Result<RedirectInformation, Invalid> {
    let enabled = match pb::RedirectSupport::try_from(r.redirect_support) {
        Ok(pb::RedirectSupport::RedirectionEnabled) => true,
        Ok(pb::RedirectSupport::RedirectionDisabled) => false,
        Err(_) => {
            return Err(Invalid::new(
                format!("{path}.redirect_support"),
                format!("{} is not a Redirect-Support value", r.redirect_support),
            ))
        }
    };
    let field = format!("{path}.redirect_server_address");
    let addr = r.redirect_server_address.as_str();
    let address_type = match pb::RedirectAddressType::try_from(r.redirect_address_type) {
        Ok(pb::RedirectAddressType::Url) => RedirectAddressType::Url,
        Ok(pb::RedirectAddressType::Ipv4Address) => RedirectAddressType::Ipv4,
        Ok(pb::RedirectAddressType::Ipv6Address) => RedirectAddressType::Ipv6,
        Ok(pb::RedirectAddressType::SipUri) => RedirectAddressType::SipUri,
        Err(_) => {
            return Err(Invalid::new(
                format!("{path}.redirect_address_type"),
                format!(
                    "{} is not a Redirect-Address-Type value",
                    r.redirect_address_type
                ),
            ))
        }
    };
    // The same checks as the configuration's: nothing reaches a Location header unvalidated.
    RedirectInformation::new(enabled, address_type, addr)
        .map_err(|e| Invalid::new(field, e.to_string()))
}

/// A dynamic rule from the wire, checked like a `[[session.rule]]` of the configuration.
/// `path` names the definition in errors, e.g. `charging_rule_install[0].charging_rule_definition[1]`.
pub fn rule_of(def: &pb::ChargingRuleDefinition, path: &str) -> Result<PccRule, Invalid> {
    check_name(
        &def.charging_rule_name,
        &format!("{path}.charging_rule_name"),
    )?;
    let precedence = def
        .precedence
        .ok_or_else(|| Invalid::new(format!("{path}.precedence"), "required (lower value wins)"))?;
    let flow_status = match def.flow_status.map(pb::FlowStatus::try_from) {
        None | Some(Ok(pb::FlowStatus::Enabled)) => FlowStatus::Enabled,
        Some(Ok(pb::FlowStatus::EnabledUplink)) => FlowStatus::EnabledUplink,
        Some(Ok(pb::FlowStatus::EnabledDownlink)) => FlowStatus::EnabledDownlink,
        Some(Ok(pb::FlowStatus::Disabled)) => FlowStatus::Disabled,
        Some(Ok(pb::FlowStatus::Removed)) => {
            return Err(Invalid::new(
                format!("{path}.flow_status"),
                "REMOVED does not apply to a PCC rule; remove it with charging_rule_remove",
            ))
        }
        Some(Err(_)) => {
            return Err(Invalid::new(
                format!("{path}.flow_status"),
                "not a Flow-Status value",
            ))
        }
    };
    if def.flow_information.is_empty() {
        return Err(Invalid::new(
            format!("{path}.flow_information"),
            "a dynamic rule needs at least one SDF filter",
        ));
    }
    check_len(&def.flow_information, &format!("{path}.flow_information"))?;
    let mut filters = Vec::with_capacity(def.flow_information.len());
    for (i, f) in def.flow_information.iter().enumerate() {
        let fpath = format!("{path}.flow_information[{i}]");
        let flow = f
            .flow_description
            .parse::<FlowDescription>()
            .map_err(|e| Invalid::new(format!("{fpath}.flow_description"), e.to_string()))?;
        let direction = match pb::FlowDirection::try_from(f.flow_direction) {
            Ok(pb::FlowDirection::Unspecified | pb::FlowDirection::Bidirectional) => {
                FlowDirection::Bidirectional
            }
            Ok(pb::FlowDirection::Downlink) => FlowDirection::Downlink,
            Ok(pb::FlowDirection::Uplink) => FlowDirection::Uplink,
            Err(_) => {
                return Err(Invalid::new(
                    format!("{fpath}.flow_direction"),
                    format!("{} is not a Flow-Direction value", f.flow_direction),
                ))
            }
        };
        filters.push(SdfFilter { flow, direction });
    }
    let monitoring_key = if def.monitoring_key.is_empty() {
        None
    } else {
        check_name(&def.monitoring_key, &format!("{path}.monitoring_key"))?;
        Some(def.monitoring_key.clone())
    };
    let redirect = def
        .redirect_information
        .as_ref()
        .map(|r| redirect_of(r, &format!("{path}.redirect_information")))
        .transpose()?;
    Ok(PccRule {
        name: def.charging_rule_name.clone(),
        precedence,
        filters,
        flow_status,
        rating_group: def.rating_group,
        service_identifier: def.service_identifier,
        monitoring_key,
        online: def.online,
        offline: def.offline,
        redirect,
        activation: None,
        deactivation: None,
    })
}

/// Checks a list of Charging-Rule-Install entries: sizes, predefined names the gateways know,
/// dynamic definitions, and no name twice in the request.
pub fn check_installs(
    installs: &[pb::ChargingRuleInstall],
    predefined: &[String],
    field: &str,
) -> Result<(), Invalid> {
    check_len(installs, field)?;
    let mut seen: Vec<&str> = Vec::new();
    for (i, install) in installs.iter().enumerate() {
        let path = format!("{field}[{i}]");
        check_len(
            &install.charging_rule_definition,
            &format!("{path}.charging_rule_definition"),
        )?;
        check_len(
            &install.charging_rule_name,
            &format!("{path}.charging_rule_name"),
        )?;
        if !install.charging_rule_base_name.is_empty() {
            return Err(Invalid::new(
                format!("{path}.charging_rule_base_name"),
                "rule bases are not supported; name the rules",
            ));
        }
        if install.rule_deactivation_time != 0
            && install.rule_deactivation_time <= install.rule_activation_time
        {
            return Err(Invalid::new(
                format!("{path}.rule_deactivation_time"),
                "must be later than rule_activation_time",
            ));
        }
        for (j, name) in install.charging_rule_name.iter().enumerate() {
            let npath = format!("{path}.charging_rule_name[{j}]");
            check_name(name, &npath)?;
            if !predefined.iter().any(|p| p == name) {
                return Err(Invalid::new(
                    npath,
                    format!("'{name}' is not a predefined rule the gateways know"),
                ));
            }
            if seen.contains(&name.as_str()) {
                return Err(Invalid::new(npath, format!("'{name}' is named twice")));
            }
            seen.push(name);
        }
        for (j, def) in install.charging_rule_definition.iter().enumerate() {
            let dpath = format!("{path}.charging_rule_definition[{j}]");
            let rule = rule_of(def, &dpath)?;
            if predefined.contains(&rule.name) {
                return Err(Invalid::new(
                    format!("{dpath}.charging_rule_name"),
                    format!("'{}' is the name of a predefined rule", rule.name),
                ));
            }
            if seen.contains(&def.charging_rule_name.as_str()) {
                return Err(Invalid::new(
                    format!("{dpath}.charging_rule_name"),
                    format!("'{}' is named twice", rule.name),
                ));
            }
            seen.push(&def.charging_rule_name);
        }
    }
    Ok(())
}

/// Checks a list of Charging-Rule-Remove entries.
pub fn check_removes(removes: &[pb::ChargingRuleRemove], field: &str) -> Result<(), Invalid> {
    check_len(removes, field)?;
    for (i, r) in removes.iter().enumerate() {
        let path = format!("{field}[{i}]");
        check_len(&r.charging_rule_name, &format!("{path}.charging_rule_name"))?;
        if !r.charging_rule_base_name.is_empty() {
            return Err(Invalid::new(
                format!("{path}.charging_rule_base_name"),
                "rule bases are not supported; name the rules",
            ));
        }
        for (j, name) in r.charging_rule_name.iter().enumerate() {
            check_name(name, &format!("{path}.charging_rule_name[{j}]"))?;
        }
    }
    Ok(())
}

/// Event-Trigger values: known ones only, at most [`MAX_LIST`].
pub fn check_events(events: &[i32], field: &str) -> Result<Vec<pb::EventTrigger>, Invalid> {
    check_len(events, field)?;
    events
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            pb::EventTrigger::try_from(e).map_err(|_| {
                Invalid::new(
                    format!("{field}[{i}]"),
                    format!("{e} is not an Event-Trigger value"),
                )
            })
        })
        .collect()
}

/// The Charging-Rule-Install entries that put `predefined` and `rules` in force: one entry for
/// the names and the rules without times, one more per rule with an activation window.
pub fn installs_of(predefined: &[String], rules: &[PccRule]) -> Vec<pb::ChargingRuleInstall> {
    let secs = |t: Option<Timestamp>| t.map_or(0, |t| t.as_nanos() / 1_000_000_000);
    let mut plain = pb::ChargingRuleInstall {
        charging_rule_name: predefined.to_vec(),
        ..Default::default()
    };
    let mut timed = Vec::new();
    for r in rules {
        if r.activation.is_none() && r.deactivation.is_none() {
            plain.charging_rule_definition.push(definition_of(r));
        } else {
            timed.push(pb::ChargingRuleInstall {
                charging_rule_definition: vec![definition_of(r)],
                rule_activation_time: secs(r.activation),
                rule_deactivation_time: secs(r.deactivation),
                ..Default::default()
            });
        }
    }
    let mut out = Vec::new();
    if !plain.charging_rule_name.is_empty() || !plain.charging_rule_definition.is_empty() {
        out.push(plain);
    }
    out.extend(timed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(flow: &str) -> pb::ChargingRuleDefinition {
        pb::ChargingRuleDefinition {
            charging_rule_name: "voice".into(),
            precedence: Some(50),
            flow_information: vec![pb::FlowInformation {
                flow_description: flow.into(),
                flow_direction: 0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_definition_round_trips_through_the_model() {
        let rule = rule_of(&def("permit out 17 from any to assigned 5060"), "d").unwrap();
        let back = definition_of(&rule);
        assert_eq!(
            back.flow_information[0].flow_description,
            "permit out 17 from any to assigned 5060"
        );
        assert_eq!(rule_of(&back, "d").unwrap(), rule);
    }

    #[test]
    fn refusals_name_the_field() {
        let e = rule_of(&def("permit out 17 frm any to assigned"), "r[0]").unwrap_err();
        assert_eq!(e.field, "r[0].flow_information[0].flow_description");
        assert!(e.reason.contains("'frm'"), "{}", e.reason);

        let mut d = def("permit out ip from any to assigned");
        d.precedence = None;
        assert_eq!(rule_of(&d, "r").unwrap_err().field, "r.precedence");

        let mut d = def("permit out ip from any to assigned");
        d.flow_information.clear();
        assert_eq!(rule_of(&d, "r").unwrap_err().field, "r.flow_information");

        let install = pb::ChargingRuleInstall {
            charging_rule_name: vec!["dns".into(), "nope".into()],
            ..Default::default()
        };
        let e = check_installs(&[install], &["dns".to_string()], "i").unwrap_err();
        assert_eq!(e.field, "i[0].charging_rule_name[1]");

        let many = vec![0; MAX_LIST + 1];
        assert_eq!(check_events(&many, "e").unwrap_err().field, "e");
        assert_eq!(check_events(&[7, 999], "e").unwrap_err().field, "e[1]");
    }
}
