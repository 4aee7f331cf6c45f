//! PCC rules, SDF filters and sessions as 3GPP TS 29.212 names them. Enum discriminants keep the
//! 3GPP numbering.

use super::flow::{FlowDescription, IpPrefix};
use crate::time::Timestamp;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

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

/// Redirect-Information AVP (TS 29.212 §5.3.82). Its address reaches a `Location` header, so
/// [`RedirectInformation::new`] is the only way to build one: the address is checked once, at
/// the edge (config, control plane), and trusted everywhere after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectInformation {
    /// Redirect-Support: ENABLED (true) or DISABLED (false).
    enabled: bool,
    address_type: RedirectAddressType,
    /// Checked for its type; IPv4 and IPv6 addresses in their canonical text form.
    server_address: String,
}

/// Why a Redirect-Server-Address cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedirectAddressError {
    #[error("a redirect address must not be empty")]
    Empty,
    #[error("a redirect address is at most {max} bytes, got {len}")]
    TooLong { len: usize, max: usize },
    #[error("a redirect address must not contain control characters or spaces (found {found:?} at byte {at})")]
    Control { found: char, at: usize },
    #[error("a redirect address must be a URI of ASCII characters; {found:?} at byte {at} must be percent-encoded")]
    NotUriCharacter { found: char, at: usize },
    #[error("a '%' at byte {at} must start a percent-encoding such as %20")]
    BadPercent { at: usize },
    #[error("a URL redirect address must be an http:// or https:// URL with a host, not '{0}'")]
    NotHttpUrl(String),
    #[error("a SIP_URI redirect address must be a sip: or sips: URI with a host, not '{0}'")]
    NotSipUri(String),
    #[error("the host of redirect address '{0}' is not a host name, an IPv4 address or a bracketed IPv6 address")]
    BadHost(String),
    #[error("the port of redirect address '{0}' is not 1-65535")]
    BadPort(String),
    #[error("an IPV4_ADDRESS redirect address must be an IPv4 address, not '{0}'")]
    NotIpv4(String),
    #[error("an IPV6_ADDRESS redirect address must be an IPv6 address, not '{0}'")]
    NotIpv6(String),
}

impl RedirectInformation {
    /// The longest redirect address accepted: the 302 carrying it stays a few segments.
    pub const MAX_ADDRESS_LEN: usize = 2048;

    /// Checks `server_address` against `address_type`: no control characters or spaces, only
    /// URI characters (RFC 3986, percent-encodings well formed), and per type an `http://` or
    /// `https://` URL with a host (URL), a `sip:`/`sips:` URI with a host (SIP_URI), or an
    /// address (IPV4_ADDRESS, IPV6_ADDRESS).
    pub fn new(
        enabled: bool,
        address_type: RedirectAddressType,
        server_address: &str,
    ) -> Result<Self, RedirectAddressError> {
        let server_address = check_address(address_type, server_address)?;
        Ok(RedirectInformation {
            enabled,
            address_type,
            server_address,
        })
    }

    /// Redirect-Support: ENABLED (true) or DISABLED (false).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn address_type(&self) -> RedirectAddressType {
        self.address_type
    }

    pub fn server_address(&self) -> &str {
        &self.server_address
    }
}

fn check_address(kind: RedirectAddressType, a: &str) -> Result<String, RedirectAddressError> {
    use RedirectAddressError as E;
    if a.is_empty() {
        return Err(E::Empty);
    }
    if a.len() > RedirectInformation::MAX_ADDRESS_LEN {
        return Err(E::TooLong {
            len: a.len(),
            max: RedirectInformation::MAX_ADDRESS_LEN,
        });
    }
    for (at, c) in a.char_indices() {
        if c.is_control() || c.is_whitespace() {
            return Err(E::Control { found: c, at });
        }
    }
    match kind {
        RedirectAddressType::Ipv4 => a
            .parse::<Ipv4Addr>()
            .map(|v4| v4.to_string())
            .map_err(|_| E::NotIpv4(a.to_string())),
        RedirectAddressType::Ipv6 => a
            .parse::<Ipv6Addr>()
            .map(|v6| v6.to_string())
            .map_err(|_| E::NotIpv6(a.to_string())),
        RedirectAddressType::Url => {
            check_uri_characters(a)?;
            let rest = a
                .strip_prefix("http://")
                .or_else(|| a.strip_prefix("https://"))
                .ok_or_else(|| E::NotHttpUrl(a.to_string()))?;
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            if authority.is_empty() || authority.contains('@') {
                return Err(E::NotHttpUrl(a.to_string()));
            }
            check_host_port(a, authority)?;
            // Brackets belong to an IPv6 host only.
            if rest[end..].contains(['[', ']']) {
                return Err(E::NotHttpUrl(a.to_string()));
            }
            Ok(a.to_string())
        }
        RedirectAddressType::SipUri => {
            check_uri_characters(a)?;
            let rest = a
                .strip_prefix("sip:")
                .or_else(|| a.strip_prefix("sips:"))
                .ok_or_else(|| E::NotSipUri(a.to_string()))?;
            // sip:[userinfo@]host[:port][;params][?headers] (RFC 3261 §19.1.1).
            let end = rest.find([';', '?']).unwrap_or(rest.len());
            let hostport = match rest[..end].rsplit_once('@') {
                Some((user, host)) if !user.is_empty() => host,
                Some(_) => return Err(E::NotSipUri(a.to_string())),
                None => &rest[..end],
            };
            if hostport.is_empty() {
                return Err(E::NotSipUri(a.to_string()));
            }
            check_host_port(a, hostport)?;
            Ok(a.to_string())
        }
    }
}

/// RFC 3986 characters only (unreserved, reserved, and well-formed percent-encodings).
fn check_uri_characters(a: &str) -> Result<(), RedirectAddressError> {
    let bytes = a.as_bytes();
    for (at, c) in a.char_indices() {
        let allowed = c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c);
        if !allowed {
            return Err(RedirectAddressError::NotUriCharacter { found: c, at });
        }
        if c == '%' {
            let hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(at + 1) && hex(at + 2)) {
                return Err(RedirectAddressError::BadPercent { at });
            }
        }
    }
    Ok(())
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
fn check_host_port(whole: &str, hostport: &str) -> Result<(), RedirectAddressError> {
    let bad_host = || RedirectAddressError::BadHost(whole.to_string());
    let (host_ok, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad_host)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad_host)?),
        };
        (addr.parse::<Ipv6Addr>().is_ok(), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        // A trailing dot (an absolute name) is allowed.
        let name = host.strip_suffix('.').unwrap_or(host);
        let name_ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        (name_ok, port)
    };
    if !host_ok {
        return Err(bad_host());
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n != 0) || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RedirectAddressError::BadPort(whole.to_string()));
        }
    }
    Ok(())
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
    /// Dynamic PCC rules of this session, shared with the snapshots that compiled them: a
    /// change to a session copies pointers, not rules.
    pub rules: Vec<std::sync::Arc<PccRule>>,
    /// Names of predefined rules active for this session.
    pub predefined: Vec<String>,
    pub default_rule: DefaultRule,
    /// Usage-Monitoring-Information in force: a threshold per monitoring key (Gx).
    pub monitoring: Vec<MonitoringGrant>,
    /// Credit in force per rating group (Gy Multiple-Services-Credit-Control), as the control
    /// plane sets it from a CCA; the rules with `online = true` consume it.
    pub credits: Vec<CreditGrant>,
}

/// A usage monitoring threshold granted for one monitoring key (Granted-Service-Unit of
/// Usage-Monitoring-Information, TS 29.212 §4.5.17): the owning worker reports once the usage
/// counted since the previous report reaches any of the limits given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitoringGrant {
    pub monitoring_key: std::sync::Arc<str>,
    /// CC-Total-Octets: both directions together.
    pub total: Option<u64>,
    /// CC-Input-Octets: from the UE.
    pub uplink: Option<u64>,
    /// CC-Output-Octets: toward the UE.
    pub downlink: Option<u64>,
    /// Numbers the grants of one session and key, increasing: a worker that reported grant `n`
    /// waits for a grant above `n` before it counts toward a threshold again.
    pub grant: u64,
}

/// Final-Unit-Action (RFC 4006 §8.35, TS 32.299): what the gateway does, at once and on its
/// own, when the last grant of a rating group is used up. Numbered as the AVP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinalUnitAction {
    /// TERMINATE (0): the rating group's packets are dropped.
    Terminate,
    /// REDIRECT (1): the rating group is redirected to the Redirect-Server.
    Redirect(RedirectInformation),
    /// RESTRICT_ACCESS (2): only the Restriction-Filter-Rules and Filter-Ids pass.
    RestrictAccess,
}

impl FinalUnitAction {
    /// The Final-Unit-Action AVP value.
    pub fn code(&self) -> u32 {
        match self {
            FinalUnitAction::Terminate => 0,
            FinalUnitAction::Redirect(_) => 1,
            FinalUnitAction::RestrictAccess => 2,
        }
    }
}

/// Final-Unit-Indication (RFC 4006 §8.34): the grant it comes with is the last one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalUnitIndication {
    pub action: FinalUnitAction,
    /// Restriction-Filter-Rules: traffic that stays allowed (REDIRECT and RESTRICT_ACCESS).
    pub restriction_filters: Vec<FlowDescription>,
    /// Filter-Ids: predefined rules whose SDF filters stay allowed.
    pub filter_ids: Vec<String>,
}

/// Granted-Service-Unit (RFC 4006 §8.17): what may be used, by unit; `None` is no limit in that
/// unit. A grant with no limit at all is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantedServiceUnit {
    /// CC-Total-Octets: both directions together.
    pub total: Option<u64>,
    /// CC-Input-Octets: from the UE.
    pub uplink: Option<u64>,
    /// CC-Output-Octets: toward the UE.
    pub downlink: Option<u64>,
    /// CC-Time, in seconds.
    pub time: Option<u64>,
}

/// The credit granted for one rating group (one Multiple-Services-Credit-Control of a CCA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditGrant {
    pub rating_group: u32,
    pub service_identifier: Option<u32>,
    /// Numbers the grants of one session and rating group, increasing: a new answer's grant has
    /// a higher number, a repeated answer the same one — and a repeated answer changes nothing.
    pub grant: u64,
    pub granted: GrantedServiceUnit,
    /// Volume-Quota-Threshold: report (and ask for more) when this many octets are left.
    pub volume_threshold: Option<u64>,
    /// Time-Quota-Threshold, in seconds left.
    pub time_threshold: Option<u64>,
    /// Validity-Time, in seconds from when the grant is taken into use.
    pub validity_time: Option<u64>,
    /// Quota-Holding-Time, in seconds: a grant unused for this long is given back.
    pub quota_holding_time: Option<u64>,
    pub final_unit: Option<FinalUnitIndication>,
}

/// What the online rules of a rating group do while its credit is asked for (no grant yet, or
/// the last one used up without a Final-Unit-Indication).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditSettings {
    /// Hold (in order, bounded), forward (the default) or drop.
    pub pending: super::PendingAction,
    /// Frames held per rating group while its credit is asked for (1-64).
    pub queue: usize,
    /// Rating groups holding frames at once per worker.
    pub groups: usize,
    /// A request unanswered for this long is made again (by the next packet, or the timer);
    /// held frames that waited this long are dropped.
    pub retry: std::time::Duration,
}

impl Default for CreditSettings {
    fn default() -> Self {
        CreditSettings {
            // Forward, counted and reported with the first grant, as CC-Failure-Handling
            // CONTINUE would: a configuration with online rules and no charging system to
            // answer keeps working as it did before online charging was enforced.
            pending: super::PendingAction::Forward,
            queue: 8,
            groups: 1024,
            retry: std::time::Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [RedirectAddressType; 4] = [
        RedirectAddressType::Ipv4,
        RedirectAddressType::Ipv6,
        RedirectAddressType::Url,
        RedirectAddressType::SipUri,
    ];

    proptest! {
        /// Whatever the text, the check answers (no panic), and what it accepts can go into a
        /// header line: no byte that could end or split it.
        #[test]
        fn accepted_addresses_are_header_safe(text in "\\PC{0,40}|[ -~\r\n\t]{0,40}", kind in 0..4usize) {
            let base = ["http://portal.example/", "sip:a@b.example", "", "192.0.2.1"];
            for prefix in base {
                let a = format!("{prefix}{text}");
                if let Ok(info) = RedirectInformation::new(true, KINDS[kind], &a) {
                    prop_assert!(info.server_address().bytes().all(|b| b.is_ascii_graphic()));
                }
            }
        }
    }
}
