//! Re-authorizing credit at a peer's or a bearer's request: the Gy RAR's CCR-U
//! (FORCED_REAUTHORISATION) and a bearer event's (RATING_CONDITION_CHANGE), and what they need
//! to know of a Gy session (its rating groups, the Trigger-Types the charging system gave).
//! Both go through the session's queue and journal like every other request.

use super::Gy;
use crate::policy::SessionId;
use crate::proto::v1 as pb;

impl Gy {
    /// The rating groups the Gy session of `id` has asked credit for (none without one).
    pub async fn rating_groups(&self, id: SessionId) -> Vec<u32> {
        let Some(s) = self.open(id) else {
            return Vec::new();
        };
        let g = s.lock().await;
        let mut groups: Vec<u32> = g.reported.keys().copied().collect();
        groups.sort_unstable();
        groups
    }

    /// Gy RAR: one CCR-U asking credit again for `groups`, Reporting-Reason
    /// FORCED_REAUTHORISATION. It carries no used units: what the worker counted and has not
    /// reported goes in its next report (every report is what was counted since the one
    /// before), so nothing is counted twice.
    pub async fn reauthorize(&self, id: SessionId, groups: Vec<u32>) {
        let mscc = groups
            .into_iter()
            .map(|rg| pb::MultipleServicesCreditControl {
                rating_group: Some(rg),
                requested_service_unit: Some(pb::ServiceUnits::default()),
                reporting_reason: Some(pb::ReportingReason::ForcedReauthorisation as i32),
                ..Default::default()
            })
            .collect();
        let ended = self.request(id, mscc, None).await;
        self.ended(ended).await;
    }

    /// The re-authorization triggers the charging system gave per rating group of the Gy
    /// session of `id` (rating groups in order; none without a Gy session).
    pub async fn reauthorization_triggers(
        &self,
        id: SessionId,
    ) -> Vec<(u32, Vec<pb::TriggerType>)> {
        let Some(s) = self.open(id) else {
            return Vec::new();
        };
        let g = s.lock().await;
        let mut out: Vec<(u32, Vec<pb::TriggerType>)> =
            g.triggers.iter().map(|(rg, t)| (*rg, t.clone())).collect();
        out.sort_unstable_by_key(|(rg, _)| *rg);
        out
    }

    /// A bearer event's credit re-authorization: one request (CCR-U; CCR-I when the session
    /// never asked for credit) with `mscc`, queued and journaled like every other. Like
    /// [`Gy::reauthorize`] it carries no used units: the worker's next report (or the CCR-T)
    /// carries what it counted, so nothing is counted twice. Returns its CC-Request-Number.
    pub async fn rating_condition_change(
        &self,
        id: SessionId,
        mscc: Vec<pb::MultipleServicesCreditControl>,
    ) -> Option<u32> {
        let (number, ended) = self.numbered(id, mscc, None).await;
        self.ended(ended).await;
        number
    }
}
