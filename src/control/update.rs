//! A change to one session's policy as a request carries it, its check of form, and the
//! Charging-Rule-Report of a rule that could not be installed.

use crate::proto::rules::{check_events, check_len, check_name, Invalid};
use crate::proto::v1 as pb;

/// Why a request is refused as a whole (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
}

impl From<Refused> for tonic::Status {
    fn from(r: Refused) -> tonic::Status {
        match r {
            Refused::Invalid(i) => i.into(),
            Refused::NotFound(m) => tonic::Status::not_found(m),
            Refused::Exists(m) => tonic::Status::already_exists(m),
        }
    }
}

/// A change of one session's policy: what a RAR, a CCA or an operator's request carries.
#[derive(Clone, Debug, Default)]
pub struct Update {
    pub installs: Vec<pb::ChargingRuleInstall>,
    pub removes: Vec<pb::ChargingRuleRemove>,
    /// Replaces the triggers when not empty; NO_EVENT_TRIGGERS clears them.
    pub event_triggers: Vec<i32>,
    pub monitoring: Vec<pb::UsageMonitoringInformation>,
    pub revalidation_time: u64,
}

impl Update {
    /// What a CCA-U puts in force.
    pub fn of_update_answer(a: pb::UpdateSessionAnswer) -> Update {
        Update {
            installs: a.charging_rule_install,
            removes: a.charging_rule_remove,
            event_triggers: a.event_trigger,
            monitoring: a.usage_monitoring_information,
            revalidation_time: a.revalidation_time,
        }
    }

    /// Checks the form of the request (sizes, names, enum values): a request that fails here is
    /// refused whole. Whether each rule can be installed is decided per rule when applied.
    pub fn check(&self) -> Result<(), Invalid> {
        check_len(&self.installs, "charging_rule_install")?;
        for (i, install) in self.installs.iter().enumerate() {
            let path = format!("charging_rule_install[{i}]");
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
            for (j, n) in install.charging_rule_name.iter().enumerate() {
                check_name(n, &format!("{path}.charging_rule_name[{j}]"))?;
            }
            for (j, d) in install.charging_rule_definition.iter().enumerate() {
                check_name(
                    &d.charging_rule_name,
                    &format!("{path}.charging_rule_definition[{j}].charging_rule_name"),
                )?;
            }
            if install.rule_deactivation_time != 0
                && install.rule_deactivation_time <= install.rule_activation_time
            {
                return Err(Invalid::new(
                    format!("{path}.rule_deactivation_time"),
                    "must be later than rule_activation_time",
                ));
            }
        }
        check_len(&self.removes, "charging_rule_remove")?;
        for (i, r) in self.removes.iter().enumerate() {
            let path = format!("charging_rule_remove[{i}]");
            check_len(&r.charging_rule_name, &format!("{path}.charging_rule_name"))?;
            if !r.charging_rule_base_name.is_empty() {
                return Err(Invalid::new(
                    format!("{path}.charging_rule_base_name"),
                    "rule bases are not supported; name the rules",
                ));
            }
            for (j, n) in r.charging_rule_name.iter().enumerate() {
                check_name(n, &format!("{path}.charging_rule_name[{j}]"))?;
            }
        }
        check_events(&self.event_triggers, "event_trigger")?;
        check_len(&self.monitoring, "usage_monitoring_information")?;
        for (i, u) in self.monitoring.iter().enumerate() {
            check_name(
                &u.monitoring_key,
                &format!("usage_monitoring_information[{i}].monitoring_key"),
            )?;
        }
        Ok(())
    }
}

pub(super) fn report(
    names: &[String],
    code: pb::RuleFailureCode,
    detail: String,
) -> pb::ChargingRuleReport {
    pb::ChargingRuleReport {
        charging_rule_name: names.to_vec(),
        pcc_rule_status: pb::PccRuleStatus::Inactive as i32,
        rule_failure_code: code as i32,
        detail,
    }
}

/// The Rule-Failure-Code for a definition refused by the rule reader, by the field it names.
pub(super) fn failure_code(e: &Invalid) -> pb::RuleFailureCode {
    if e.field.ends_with(".flow_information") {
        pb::RuleFailureCode::MissingFlowInformation
    } else if e.field.contains(".flow_information[") {
        pb::RuleFailureCode::IncorrectFlowInformation
    } else if e.field.contains(".redirect_information") {
        pb::RuleFailureCode::MissingRedirectServerAddress
    } else {
        pb::RuleFailureCode::GwPcefMalfunction
    }
}
