//! A plan's event triggers (installed at CCR-I, so the gateway reports those bearer events in a
//! CCR-U) and the rule changes the policy engine answers an event with:
//!
//! ```toml
//! [[plan]]
//! event_triggers = ["RAT_CHANGE", "QOS_CHANGE"]   # Event-Trigger names (TS 29.212 §5.3.7)
//!
//! [[plan.on_event]]                   # what the CCA-U of a CCR-U reporting `event` changes
//! event = "RAT_CHANGE"                # one of the plan's event_triggers
//! install = ["video"]                 # predefined rules (each one of predefined_rules)
//! remove = ["web"]                    # rules the plan or an on_event installs
//!
//! [[plan.on_event.rule]]              # dynamic rules to install: the keys of [[plan.rule]]
//! name = "video-hd"
//! precedence = 40
//! flow = [{ description = "permit out 6 from any 443 to assigned" }]
//! ```
//!
//! A CCR-U naming several events gets the changes of each, in the plan's order. A redirected
//! session gets none (its plan is not in force). Config mistakes are located like the rest of
//! the file (`pe.toml:12:11: plan[0].on_event[0].event: ...`).

use super::config::read_names;
use crate::policy::reader::{as_str, Ctx, Fields};
use crate::policy::PccRule;
use crate::proto::rules::{installs_of, MAX_LIST};
use crate::proto::v1 as pb;

/// What the policy engine answers one event with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnEvent {
    pub event: pb::EventTrigger,
    /// Predefined rules to install, by name.
    pub install: Vec<String>,
    /// Dynamic rules to install.
    pub rules: Vec<PccRule>,
    /// Rules to remove, by name.
    pub remove: Vec<String>,
}

/// A plan's events: the triggers of CCR-I and the answers to them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanEvents {
    pub triggers: Vec<pb::EventTrigger>,
    pub on_event: Vec<OnEvent>,
}

/// The rule change of an answer to reported events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventChange {
    pub installs: Vec<pb::ChargingRuleInstall>,
    pub removes: Vec<pb::ChargingRuleRemove>,
    /// Names installed, then removed (for the session's record).
    pub installed: Vec<String>,
    pub removed: Vec<String>,
}

impl PlanEvents {
    /// The change for `events` (`None`: no `on_event` names one of them).
    pub fn change_for(&self, events: &[pb::EventTrigger]) -> Option<EventChange> {
        let mut c = EventChange::default();
        let mut any = false;
        for o in self.on_event.iter().filter(|o| events.contains(&o.event)) {
            any = true;
            c.installs.extend(installs_of(&o.install, &o.rules));
            c.installed.extend(o.install.iter().cloned());
            c.installed.extend(o.rules.iter().map(|r| r.name.clone()));
            c.removed.extend(o.remove.iter().cloned());
        }
        if !any {
            return None;
        }
        c.installs
            .retain(|i| !i.charging_rule_name.is_empty() || !i.charging_rule_definition.is_empty());
        if !c.removed.is_empty() {
            c.removes.push(pb::ChargingRuleRemove {
                charging_rule_name: c.removed.clone(),
                charging_rule_base_name: Vec::new(),
            });
        }
        Some(c)
    }
}

/// An Event-Trigger by its name.
fn event_of(ctx: &mut Ctx<'_>, name: &str, at: usize, path: &str) -> Option<pb::EventTrigger> {
    let e = pb::EventTrigger::from_str_name(name);
    if e.is_none() {
        let m = format!("'{name}' is not an Event-Trigger name such as RAT_CHANGE");
        ctx.error(at, path, m);
    }
    e
}

/// A plan's `event_triggers` and `[[plan.on_event]]`. `predefined` are the engine's
/// predefined_rules, `plan_rules` the names the plan installs itself.
pub(super) fn read_plan_events(
    ctx: &mut Ctx<'_>,
    f: &Fields<'_, '_>,
    predefined: &[(String, usize)],
    plan_rules: &[String],
) -> PlanEvents {
    let mut out = PlanEvents::default();
    let items = f.array(ctx, "event_triggers").unwrap_or(&[]);
    if items.len() > MAX_LIST {
        let m = format!("at most {MAX_LIST} event triggers");
        ctx.error(f.span.start, &f.path("event_triggers"), m);
    }
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path("event_triggers"));
        let Some(name) = as_str(ctx, item, &path) else {
            continue;
        };
        let at = item.span().start;
        let Some(e) = event_of(ctx, name, at, &path) else {
            continue;
        };
        if out.triggers.contains(&e) {
            ctx.error(at, &path, format!("'{name}' is listed twice"));
        } else {
            out.triggers.push(e);
        }
    }
    // Each on_event with its removals still to check (name, offset) and their path.
    type Read = (OnEvent, Vec<(String, usize)>, String);
    let mut reads: Vec<Read> = Vec::new();
    for (i, item) in f.array(ctx, "on_event").unwrap_or(&[]).iter().enumerate() {
        let path = format!("{}[{i}]", f.path("on_event"));
        let Some(o) = Fields::new(
            ctx,
            item,
            path.clone(),
            &["event", "install", "remove", "rule"],
        ) else {
            continue;
        };
        let event = o.required_str(ctx, "event").and_then(|(name, span)| {
            let e = event_of(ctx, name, span.start, &o.path("event"))?;
            if !out.triggers.contains(&e) {
                let m = format!("{name} is not one of the plan's event_triggers (the gateway would never report it)");
                ctx.error(span.start, &o.path("event"), m);
            }
            Some(e)
        });
        let install = read_names(ctx, &o, "install");
        for (j, (n, at)) in install.iter().enumerate() {
            if !predefined.iter().any(|(p, _)| p == n) {
                let m = format!("'{n}' is not one of predefined_rules");
                ctx.error(*at, &format!("{}[{j}]", o.path("install")), m);
            }
        }
        let mut rules: Vec<PccRule> = Vec::new();
        for (j, r) in o.array(ctx, "rule").unwrap_or(&[]).iter().enumerate() {
            let rpath = format!("{}[{j}]", o.path("rule"));
            if let Some(rule) = crate::policy::read_rule(ctx, r, rpath) {
                rules.push(rule);
            }
        }
        let remove = read_names(ctx, &o, "remove");
        if install.is_empty() && rules.is_empty() && remove.is_empty() {
            ctx.error(
                o.span.start,
                &path,
                "an on_event installs or removes at least one rule",
            );
        }
        if let Some(event) = event {
            if out.on_event.iter().any(|x| x.event == event)
                || reads.iter().any(|(x, _, _)| x.event == event)
            {
                let m = format!("{} has an on_event already", event.as_str_name());
                ctx.error(o.span.start, &o.path("event"), m);
            }
            let on = OnEvent {
                event,
                install: install.into_iter().map(|(n, _)| n).collect(),
                rules,
                remove: Vec::new(),
            };
            reads.push((on, remove, o.path("remove")));
        }
    }
    // A rule removed must be one something of the plan installs.
    let known: Vec<String> = plan_rules
        .iter()
        .cloned()
        .chain(reads.iter().flat_map(|(o, _, _)| {
            o.install
                .iter()
                .cloned()
                .chain(o.rules.iter().map(|r| r.name.clone()))
        }))
        .collect();
    for (mut on, remove, path) in reads {
        for (j, (n, at)) in remove.into_iter().enumerate() {
            if !known.contains(&n) {
                let m = format!("'{n}' is no rule this plan installs");
                ctx.error(at, &format!("{path}[{j}]"), m);
            }
            on.remove.push(n);
        }
        out.on_event.push(on);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::config::PolicyEngineConfig;
    use super::*;
    use std::path::Path;

    const HEAD: &str = r#"database = "pe.sqlite"
token_key = "000102030405060708090a0b0c0d0e0f"
predefined_rules = ["web", "video"]

[redirect_rule]
name = "r"
precedence = 1
redirect = { support = "ENABLED", address_type = "URL", server_address = "http://portal.example/" }
flow = [{ description = "permit out ip from any to assigned" }]
"#;

    fn parse(plan: &str) -> Result<PolicyEngineConfig, Vec<String>> {
        let text = format!("{HEAD}{plan}");
        PolicyEngineConfig::from_toml_str(&text, "pe.toml", Path::new("/tmp"))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_plan_answers_its_events_with_rule_changes() {
        let c = parse(
            r#"
[[plan]]
name = "p"
predefined = ["web"]
event_triggers = ["RAT_CHANGE", "QOS_CHANGE"]

[[plan.on_event]]
event = "RAT_CHANGE"
install = ["video"]
remove = ["web"]

[[plan.on_event.rule]]
name = "hd"
precedence = 40
rating_group = 30
flow = [{ description = "permit out 6 from any 443 to assigned" }]
"#,
        )
        .unwrap();
        let e = &c.plan("p").unwrap().events;
        assert_eq!(
            e.triggers,
            [pb::EventTrigger::RatChange, pb::EventTrigger::QosChange]
        );
        let change = e.change_for(&[pb::EventTrigger::RatChange]).unwrap();
        assert_eq!(change.installed, ["video", "hd"]);
        assert_eq!(change.removed, ["web"]);
        assert_eq!(change.installs.len(), 1);
        assert_eq!(change.installs[0].charging_rule_name, ["video"]);
        assert_eq!(
            change.installs[0].charging_rule_definition[0].charging_rule_name,
            "hd"
        );
        assert_eq!(change.removes[0].charging_rule_name, ["web"]);
        // QOS_CHANGE is a trigger without an answer of its own.
        assert_eq!(e.change_for(&[pb::EventTrigger::QosChange]), None);
    }

    #[test]
    fn mistakes_in_events_are_located() {
        let errors = parse(
            r#"
[[plan]]
name = "p"
predefined = ["web"]
event_triggers = ["RAT_CHANGE", "RAT_CHANG"]

[[plan.on_event]]
event = "PLMN_CHANGE"
install = ["audio"]
remove = ["mail"]

[[plan.on_event]]
event = "RAT_CHANGE"
"#,
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "pe.toml:14:33: plan[0].event_triggers[1]: 'RAT_CHANG' is not an Event-Trigger name such as RAT_CHANGE",
                "pe.toml:17:9: plan[0].on_event[0].event: PLMN_CHANGE is not one of the plan's event_triggers (the gateway would never report it)",
                "pe.toml:18:12: plan[0].on_event[0].install[0]: 'audio' is not one of predefined_rules",
                "pe.toml:19:11: plan[0].on_event[0].remove[0]: 'mail' is no rule this plan installs",
                "pe.toml:21:1: plan[0].on_event[1]: an on_event installs or removes at least one rule",
            ]
        );
    }
}
