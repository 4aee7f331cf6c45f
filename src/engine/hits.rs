//! Rule hits by (session, rule name), as the report shows them. A flow's decision holds the
//! index of its counter, so counting a hit is one add; finding the index costs a name only the
//! first time a session's rule is seen.

use crate::policy::{RuleId, SessionId};
use rustc_hash::FxHashMap;
use std::sync::Arc;

#[derive(Default)]
pub(super) struct HitCounters {
    by_name: FxHashMap<(SessionId, Arc<str>), u32>,
    /// The same indices by rule of a compiled session, with its stamp (rule ids mean nothing
    /// across compilations): a new flow of a rule already counted builds no name.
    by_rule: FxHashMap<(SessionId, RuleId), (u64, u32)>,
    counts: Vec<u64>,
}

impl HitCounters {
    /// The counter of `rule` (named `name`) of `session`, made on first use.
    pub(super) fn slot(&mut self, session: SessionId, stamp: u64, rule: RuleId, name: &str) -> u32 {
        if let Some((s, i)) = self.by_rule.get(&(session, rule)) {
            if *s == stamp {
                return *i;
            }
        }
        let next = self.counts.len() as u32;
        let i = *self
            .by_name
            .entry((session, Arc::from(name)))
            .or_insert(next);
        if i == next {
            self.counts.push(0);
        }
        self.by_rule.insert((session, rule), (stamp, i));
        i
    }

    #[inline]
    pub(super) fn hit(&mut self, i: u32) {
        // Indices are only made by `slot`, so they are in range.
        if let Some(n) = self.counts.get_mut(i as usize) {
            *n += 1;
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&(SessionId, Arc<str>), u64)> {
        self.by_name
            .iter()
            .map(|(k, i)| (k, self.counts[*i as usize]))
    }
}
