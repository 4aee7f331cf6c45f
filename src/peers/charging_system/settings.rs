//! The `[charging]` table of the policy engine's configuration: how the charging system grants.
//!
//! ```toml
//! [charging]
//! grant_octets = 1000000          # the grant when Requested-Service-Unit names no amount (1-10^12)
//! max_grant_octets = 100000000    # the largest grant of one request (default 100 000 000)
//! max_grant_seconds = 86400       # the largest time grant of one request (default 86 400)
//! validity_time = 3600            # Validity-Time of every grant, in seconds (1-86400); default 3600
//! grace = 30                      # seconds after Validity-Time before an unreported reservation
//!                                 # is released (0-86400); default 30
//! threshold_percent = 20          # Volume-/Time-Quota-Threshold as a share of the grant (0-99);
//!                                 # default 20, 0: none
//! quota_holding_time = 0          # Quota-Holding-Time in seconds; default 0: none
//! failure_handling = "CONTINUE"   # Credit-Control-Failure-Handling: TERMINATE, CONTINUE,
//!                                 # RETRY_AND_TERMINATE; default CONTINUE
//! ```
//!
//! Every key is optional, and so is the table.

use crate::policy::reader::{Ctx, Fields, Value};
use crate::proto::v1 as pb;

/// How the charging system grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargingSettings {
    pub grant_octets: u64,
    pub max_grant_octets: u64,
    pub max_grant_seconds: u32,
    pub validity_time: u32,
    pub grace: u32,
    pub threshold_percent: u8,
    pub quota_holding_time: u32,
    pub failure_handling: pb::CreditControlFailureHandling,
}

impl Default for ChargingSettings {
    fn default() -> Self {
        ChargingSettings {
            grant_octets: 1_000_000,
            max_grant_octets: 100_000_000,
            max_grant_seconds: 86_400,
            validity_time: 3600,
            grace: 30,
            threshold_percent: 20,
            quota_holding_time: 0,
            failure_handling: pb::CreditControlFailureHandling::Continue,
        }
    }
}

const MAX_OCTETS: i128 = 1_000_000_000_000;

/// Reads `[charging]`.
pub(crate) fn read_charging(ctx: &mut Ctx<'_>, value: &Value<'_>) -> Option<ChargingSettings> {
    let f = Fields::new(
        ctx,
        value,
        "charging".to_string(),
        &[
            "grant_octets",
            "max_grant_octets",
            "max_grant_seconds",
            "validity_time",
            "grace",
            "threshold_percent",
            "quota_holding_time",
            "failure_handling",
        ],
    )?;
    let mut s = ChargingSettings::default();
    let octets = |ctx: &mut Ctx<'_>, key: &str| {
        f.int(ctx, key, 1, MAX_OCTETS)
            .and_then(|n| u64::try_from(n).ok())
    };
    let seconds = |ctx: &mut Ctx<'_>, key: &str, min: i128| {
        f.int(ctx, key, min, 86_400)
            .and_then(|n| u32::try_from(n).ok())
    };
    if let Some(n) = octets(ctx, "grant_octets") {
        s.grant_octets = n;
    }
    if let Some(n) = octets(ctx, "max_grant_octets") {
        s.max_grant_octets = n;
    }
    if let Some(n) = seconds(ctx, "max_grant_seconds", 1) {
        s.max_grant_seconds = n;
    }
    if let Some(n) = seconds(ctx, "validity_time", 1) {
        s.validity_time = n;
    }
    if let Some(n) = seconds(ctx, "grace", 0) {
        s.grace = n;
    }
    if let Some(n) = f.int(ctx, "threshold_percent", 0, 99) {
        s.threshold_percent = u8::try_from(n).unwrap_or(0);
    }
    if let Some(n) = seconds(ctx, "quota_holding_time", 0) {
        s.quota_holding_time = n;
    }
    if let Some((text, span)) = f.str(ctx, "failure_handling") {
        match pb::CreditControlFailureHandling::from_str_name(&format!(
            "CREDIT_CONTROL_FAILURE_HANDLING_{text}"
        )) {
            Some(h) => s.failure_handling = h,
            None => {
                let m = format!("'{text}' is not TERMINATE, CONTINUE or RETRY_AND_TERMINATE");
                ctx.error(span.start, &f.path("failure_handling"), m);
            }
        }
    }
    if s.grant_octets > s.max_grant_octets {
        let m = "grant_octets must not exceed max_grant_octets";
        ctx.error(f.span.start, "charging.grant_octets", m);
    }
    Some(s)
}
