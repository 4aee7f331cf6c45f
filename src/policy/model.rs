//! PCC rules, SDF filters and sessions as 3GPP TS 29.212 names them. Enum discriminants keep the
//! 3GPP numbering.

use super::flow::{FlowDescription, IpPrefix};
use crate::time::Timestamp;
use std::fmt;
use std::net::Ipv4Addr;

/// Flow-Status AVP (TS 29.212 §5.3.11): the gate of a PCC rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowStatus {
    EnabledUplink = 0,
    EnabledDownlink = 1,
    Enabled = 2,
    Disabled = 3,
}

/// Flow-Direction AVP (TS 29.212 §5.3.65): which packets an SDF filter applies to, relative to
/// the UE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowDirection {
    Downlink = 1,
    Uplink = 2,
    Bidirectional = 3,
}

/// One service data flow filter of a PCC rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdfFilter {
    pub flow: FlowDescription,
    pub direction: FlowDirection,
}

/// Redirect-Address-Type AVP (TS 29.212 §5.3.39 / RFC 4006 §8.38).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RedirectAddressType {
    Ipv4 = 0,
    Ipv6 = 1,
    Url = 2,
    SipUri = 3,
}

/// Redirect-Information AVP (TS 29.212 §5.3.82).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectInformation {
    /// Redirect-Support: ENABLED (true) or DISABLED (false).
    pub enabled: bool,
    pub address_type: RedirectAddressType,
    pub server_address: String,
}

/// A PCC rule (TS 29.212 §4.3 / TS 23.203 §6.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PccRule {
    pub name: String,
    /// Lower value wins.
    pub precedence: u32,
    pub filters: Vec<SdfFilter>,
    pub flow_status: FlowStatus,
    pub rating_group: Option<u32>,
    pub service_identifier: Option<u32>,
    pub monitoring_key: Option<String>,
    pub online: bool,
    pub offline: bool,
    pub redirect: Option<RedirectInformation>,
    /// Rule-Activation-Time / Rule-Deactivation-Time.
    pub activation: Option<Timestamp>,
    pub deactivation: Option<Timestamp>,
}

impl PccRule {
    /// Whether the rule is in force at `now` (activation inclusive, deactivation exclusive).
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.activation.is_none_or(|t| now >= t) && self.deactivation.is_none_or(|t| now < t)
    }
}

/// Subscription-Id-Type (RFC 4006 §8.47).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionIdType {
    EndUserE164 = 0,
    EndUserImsi = 1,
    EndUserSipUri = 2,
    EndUserNai = 3,
    EndUserPrivate = 4,
}

/// Who a session belongs to: written `imsi-001010000000001`, `msisdn-4915112345678`,
/// `nai-alice@example.net`, `sip-sip:alice@example.net` or `private-anything`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubscriberId {
    pub kind: SubscriptionIdType,
    pub data: String,
}

impl SubscriberId {
    fn prefix(kind: SubscriptionIdType) -> &'static str {
        match kind {
            SubscriptionIdType::EndUserE164 => "msisdn",
            SubscriptionIdType::EndUserImsi => "imsi",
            SubscriptionIdType::EndUserSipUri => "sip",
            SubscriptionIdType::EndUserNai => "nai",
            SubscriptionIdType::EndUserPrivate => "private",
        }
    }

    /// Parses the `kind-data` form; returns a message naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, data) = s
            .split_once('-')
            .ok_or_else(|| format!("subscriber id '{s}' must look like imsi-001010000000001"))?;
        let kind = match kind {
            "imsi" => SubscriptionIdType::EndUserImsi,
            "msisdn" => SubscriptionIdType::EndUserE164,
            "nai" => SubscriptionIdType::EndUserNai,
            "sip" => SubscriptionIdType::EndUserSipUri,
            "private" => SubscriptionIdType::EndUserPrivate,
            other => {
                return Err(format!(
                    "subscriber id kind '{other}' is not one of imsi, msisdn, nai, sip, private"
                ))
            }
        };
        if data.is_empty() {
            return Err(format!("subscriber id '{s}' has nothing after the kind"));
        }
        if matches!(
            kind,
            SubscriptionIdType::EndUserImsi | SubscriptionIdType::EndUserE164
        ) && !(data.len() <= 15 && data.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "subscriber id '{s}': an IMSI or MSISDN is at most 15 decimal digits"
            ));
        }
        Ok(SubscriberId {
            kind,
            data: data.to_string(),
        })
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", Self::prefix(self.kind), self.data)
    }
}

/// What a session does with traffic that no PCC rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultRule {
    /// Forward and meter under this rating group.
    Forward {
        rating_group: u32,
    },
    Drop,
}

/// A subscriber session (an IP-CAN session) as configured or installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub subscriber: SubscriberId,
    pub ipv4: Option<Ipv4Addr>,
    /// The UE's IPv6 prefix (typically a /64).
    pub ipv6: Option<IpPrefix>,
    /// Dynamic PCC rules of this session.
    pub rules: Vec<PccRule>,
    /// Names of predefined rules active for this session.
    pub predefined: Vec<String>,
    pub default_rule: DefaultRule,
}
