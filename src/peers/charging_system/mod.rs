//! The reference charging system (OCS): `weir.v1.ChargingSystem` (Gy), served by `weir
//! policy-engine` beside the policy engine, on the same listener and the same store.
//!
//! Accounts are the policy engine's; each holds credit containers ([`containers`]: money — the
//! balance the portal's recharge credits —, data buckets, time buckets) that grants are reserved
//! from and consumption is debited from, in order, converted by the plan's rates ([`rating`]).
//! Members of a shared quota group draw on the owner's containers ([`groups`]); when the group
//! runs low the policy engine restricts every member's sessions. Every request is accounted for
//! in one transaction ([`credit`]) and is idempotent on its CC-Request-Number.
//!
//! The periodic loop releases reservations no report came for within Validity-Time plus the
//! grace (a gateway that crashed, a CCR-T that never came), and lifts or applies group
//! restrictions the releases change.
//!
//! What it must never do: grant a unit twice, account for a reservation twice or not at all,
//! or change anything on a request it refuses.

pub(crate) mod admin;
pub mod containers;
pub mod credit;
pub mod groups;
mod gy;
pub mod rating;
pub mod settings;

use crate::peers::policy_engine::{now_secs, Core};
use crate::proto::v1 as pb;
use std::sync::Arc;
use std::time::Duration;

/// Ended credit control sessions are kept this long for retried requests.
const KEEP_ENDED: u64 = 86_400;

/// The Gy service and the periodic loop, over the policy engine's state.
#[derive(Clone)]
pub struct ChargingSystem {
    pub(crate) core: Arc<Core>,
    /// Where Final-Unit-Indication REDIRECT sends a subscriber: the redirect rule's portal.
    redirect: pb::RedirectServer,
}

impl ChargingSystem {
    pub(crate) fn new(core: Arc<Core>) -> ChargingSystem {
        let info = core
            .redirect_definition()
            .redirect_information
            .clone()
            .unwrap_or_default();
        ChargingSystem {
            core,
            redirect: pb::RedirectServer {
                redirect_address_type: info.redirect_address_type,
                redirect_server_address: info.redirect_server_address,
            },
        }
    }

    /// Applies or lifts group restrictions (of the groups `owner` owns, or of all), pushing a
    /// RAR to every session of every subscriber of a group whose restriction changed.
    pub(crate) async fn check_groups(&self, owner: Option<String>) {
        let changed = self
            .core
            .db(move |s| {
                groups::evaluate(&mut s.conn(), owner.as_deref(), credit::secs(now_secs()))
            })
            .await;
        let changed = match changed {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot evaluate quota groups");
                return;
            }
        };
        for (g, subs) in changed {
            tracing::info!(group = %g.group_id, owner = %g.owner_id, restricted = g.restricted,
                remaining_octets = g.remaining_octets, threshold_octets = g.threshold_octets,
                members = subs.len(), "quota group restriction changed");
            for sub in subs {
                if let Err(e) = self.core.reconcile(&sub).await {
                    tracing::error!(subscriber = %sub, error = %e, "cannot reconcile sessions");
                }
            }
        }
    }

    /// Releases expired reservations and keeps groups in line, until the server stops.
    pub(crate) async fn expiry(self) {
        loop {
            let now = now_secs();
            let released = self
                .core
                .db(move |s| {
                    let mut conn = s.conn();
                    let released = containers::release_expired(&mut conn, credit::secs(now))?;
                    credit::forget_ended(&mut conn, credit::secs(now.saturating_sub(KEEP_ENDED)))?;
                    Ok(released)
                })
                .await;
            match released {
                Ok(released) => {
                    for (session, rating_group, units) in &released {
                        tracing::info!(session = %session, rating_group, units,
                            "reservation expired without a report; released");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot release expired reservations"),
            }
            self.check_groups(None).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
