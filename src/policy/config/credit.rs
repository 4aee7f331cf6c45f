//! The `[credit]` table: what an online rating group's packets do while its credit is asked
//! for (the data path's side), and how the Gy client asks the charging system (timeout,
//! retries, Credit-Control-Failure-Handling, the journal of unanswered reports).

use super::control::{CreditControlSettings, FailureHandling, PendingAction};
use super::reader::{Ctx, Fields, Value};
use crate::policy::model::CreditSettings;
use std::path::PathBuf;
use std::time::Duration;

const CREDIT_KEYS: &[&str] = &[
    "pending",
    "queue",
    "groups",
    "retry",
    "request_timeout",
    "attempts",
    "retry_backoff",
    "retry_max_backoff",
    "failure_handling",
    "continue_octets",
    "journal",
];

/// The keys that only the Gy client reads.
const CLIENT_KEYS: &[&str] = &[
    "request_timeout",
    "attempts",
    "retry_backoff",
    "retry_max_backoff",
    "failure_handling",
    "continue_octets",
    "journal",
];

const MAX_SECS: i128 = 86_400;

fn secs(n: i128) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

/// Reads `[credit]`; `None` if anything in it was wrong (all of it reported). The client keys
/// are refused without a charging system to talk to.
pub(super) fn read_credit(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    charging_system: bool,
) -> Option<(CreditSettings, CreditControlSettings)> {
    let before = ctx.error_count();
    let f = Fields::new(ctx, value, "credit".to_string(), CREDIT_KEYS)?;
    let mut d = CreditSettings::default();
    let actions = [
        ("forward", PendingAction::Forward),
        ("hold", PendingAction::Hold),
        ("drop", PendingAction::Drop),
    ];
    if let Some(a) = f.choice(ctx, "pending", &actions) {
        d.pending = a;
    }
    if let Some(n) = f.int(ctx, "queue", 1, 64) {
        d.queue = usize::try_from(n).unwrap_or(1);
    }
    if let Some(n) = f.int(ctx, "groups", 1, 65_536) {
        d.groups = usize::try_from(n).unwrap_or(1);
    }
    if let Some(n) = f.int(ctx, "retry", 1, 600) {
        d.retry = secs(n);
    }
    let mut c = CreditControlSettings::default();
    if let Some(n) = f.int(ctx, "request_timeout", 1, MAX_SECS) {
        c.request_timeout = secs(n);
    }
    if let Some(n) = f.int(ctx, "attempts", 1, 100) {
        c.attempts = u32::try_from(n).unwrap_or(1);
    }
    if let Some(n) = f.int(ctx, "retry_backoff", 0, MAX_SECS) {
        c.retry_backoff = secs(n);
    }
    if let Some(n) = f.int(ctx, "retry_max_backoff", 1, MAX_SECS) {
        c.retry_max_backoff = secs(n);
    }
    if c.retry_max_backoff < c.retry_backoff {
        ctx.error(
            f.span.start,
            &f.path("retry_max_backoff"),
            format!(
                "retry_max_backoff ({} s) must be at least retry_backoff ({} s)",
                c.retry_max_backoff.as_secs(),
                c.retry_backoff.as_secs()
            ),
        );
    }
    let handlings = [
        ("terminate", FailureHandling::Terminate),
        ("continue", FailureHandling::Continue),
        ("retry_and_terminate", FailureHandling::RetryAndTerminate),
    ];
    if let Some(h) = f.choice(ctx, "failure_handling", &handlings) {
        c.failure_handling = h;
    }
    if let Some(n) = f.int(ctx, "continue_octets", 1, 1 << 50) {
        c.continue_octets = u64::try_from(n).unwrap_or(1);
    }
    if let Some((text, span)) = f.str(ctx, "journal") {
        if text.is_empty() {
            ctx.error(
                span.start,
                &f.path("journal"),
                "a file path must not be empty",
            );
        } else {
            c.journal = Some(PathBuf::from(text));
        }
    }
    if !charging_system {
        for key in CLIENT_KEYS {
            if let Some(v) = f.get(key) {
                ctx.error(
                    v.span().start,
                    &f.path(key),
                    format!("{key} applies only with [control] charging_system"),
                );
            }
        }
    }
    (ctx.error_count() == before).then_some((d, c))
}
