//! Rating: the plan's prices, and the conversion between money and service units.
//!
//! A `[[plan]]` of the policy engine's configuration rates its rating groups:
//!
//! ```toml
//! rate = [
//!     { rating_group = 10, per_mb = 5, per_minute = 2 },   # this rating group
//!     { per_mb = 1 },                                      # every other rating group
//!     { rating_group = 20, per_mb = 2, reauthorization_triggers = ["CHANGE_IN_RAT", "CHANGE_IN_QOS"] },
//! ]
//! ```
//!
//! `reauthorization_triggers` are the Trigger-Types (TS 32.299 §7.2.208) every answer that
//! grants the rating group names in its Multiple-Services-Credit-Control: the gateway
//! re-authorizes the rating group's credit when one of them fires. Default: none.
//!
//! `per_mb` is the price of 1 MB = 1 000 000 octets and `per_minute` the price of 60 seconds,
//! both in the balance's unit (the plan's `minor_units`: cents when it is 2). A rating group the
//! plan lists (or a plan with a default entry) is rated; any other gets RATING_FAILED. A rate
//! without `per_mb` (or `per_minute`) is paid for volume (or time) by buckets only, never from
//! the money container.
//!
//! Rounding: money is always rounded in the operator's favour by at most one unit per
//! reservation or debit: the units a sum of money covers round down, the money a number of units
//! costs rounds up. So a grant never costs more than the money it was reserved from.

use crate::policy::reader::{as_str, Ctx, Fields};
use crate::proto::v1 as pb;

/// Octets in the MB that `per_mb` prices.
pub const OCTETS_PER_MB: u64 = 1_000_000;
/// Seconds in the minute that `per_minute` prices.
pub const SECONDS_PER_MINUTE: u64 = 60;
/// Highest price accepted, per MB or per minute.
const MAX_PRICE: i128 = 1_000_000_000;

/// The price of one rating group (or, with `rating_group` unset, of every group not listed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub rating_group: Option<u32>,
    /// Money per MB; `None`: volume is paid by data buckets only.
    pub per_mb: Option<u64>,
    /// Money per minute; `None`: time is paid by time buckets only.
    pub per_minute: Option<u64>,
    /// Trigger-Types the answers give the rating group.
    pub triggers: TriggerSet,
}

/// A set of Trigger-Types: a bit per value (every Trigger-Type is below 128), so a [`Rate`]
/// stays a small copyable value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TriggerSet(u128);

impl TriggerSet {
    /// No trigger.
    pub const NONE: TriggerSet = TriggerSet(0);

    /// Adds `t`; false when it was there already (or is out of the set's range).
    pub fn insert(&mut self, t: pb::TriggerType) -> bool {
        let Some(bit) = u32::try_from(t as i32).ok().filter(|b| *b < 128) else {
            return false;
        };
        let had = self.0 & (1 << bit) != 0;
        self.0 |= 1 << bit;
        !had
    }

    /// The Trigger-Type values, ascending.
    pub fn values(self) -> Vec<i32> {
        (0..128i32).filter(|b| self.0 & (1 << b) != 0).collect()
    }
}

/// What a grant or a debit is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Octets.
    Volume,
    /// Seconds.
    Time,
}

/// The rate of `rating_group`: its own entry, else the default one.
pub fn rate_of(rates: &[Rate], rating_group: u32) -> Option<Rate> {
    rates
        .iter()
        .find(|r| r.rating_group == Some(rating_group))
        .or_else(|| rates.iter().find(|r| r.rating_group.is_none()))
        .copied()
}

impl Rate {
    /// Money per `(price unit, units in it)` for `kind`, when money pays for it.
    fn price(&self, kind: Kind) -> Option<(u64, u64)> {
        match kind {
            Kind::Volume => self.per_mb.map(|p| (p, OCTETS_PER_MB)),
            Kind::Time => self.per_minute.map(|p| (p, SECONDS_PER_MINUTE)),
        }
    }

    /// How many units `money` pays for (rounded down); `None` when money does not pay for
    /// `kind`.
    pub fn units_for(&self, kind: Kind, money: i64) -> Option<u64> {
        let (price, per) = self.price(kind)?;
        let money = u128::try_from(money).unwrap_or(0);
        let units = money * u128::from(per) / u128::from(price.max(1));
        Some(u64::try_from(units).unwrap_or(u64::MAX))
    }

    /// What `units` cost (rounded up); `None` when money does not pay for `kind`.
    pub fn cost_of(&self, kind: Kind, units: u64) -> Option<i64> {
        let (price, per) = self.price(kind)?;
        let cost = (u128::from(units) * u128::from(price)).div_ceil(u128::from(per));
        Some(i64::try_from(cost).unwrap_or(i64::MAX))
    }
}

/// A plan's `rate` array.
pub(crate) fn read_rates(ctx: &mut Ctx<'_>, f: &Fields<'_, '_>) -> Vec<Rate> {
    let mut rates: Vec<Rate> = Vec::new();
    for (i, item) in f.array(ctx, "rate").unwrap_or(&[]).iter().enumerate() {
        let path = format!("{}[{i}]", f.path("rate"));
        let Some(r) = Fields::new(
            ctx,
            item,
            path.clone(),
            &[
                "rating_group",
                "per_mb",
                "per_minute",
                "reauthorization_triggers",
            ],
        ) else {
            continue;
        };
        let mut triggers = TriggerSet::default();
        let key = "reauthorization_triggers";
        for (j, item) in r.array(ctx, key).unwrap_or(&[]).iter().enumerate() {
            let tpath = format!("{}[{j}]", r.path(key));
            let Some(name) = as_str(ctx, item, &tpath) else {
                continue;
            };
            let at = item.span().start;
            match pb::TriggerType::from_str_name(name) {
                Some(t) if t != pb::TriggerType::Unspecified => {
                    if !triggers.insert(t) {
                        ctx.error(at, &tpath, format!("'{name}' is listed twice"));
                    }
                }
                _ => {
                    let m = format!("'{name}' is not a Trigger-Type name such as CHANGE_IN_RAT");
                    ctx.error(at, &tpath, m);
                }
            }
        }
        let price = |ctx: &mut Ctx<'_>, key: &str| {
            r.int(ctx, key, 1, MAX_PRICE)
                .and_then(|n| u64::try_from(n).ok())
        };
        let rate = Rate {
            rating_group: r.u32(ctx, "rating_group"),
            per_mb: price(ctx, "per_mb"),
            per_minute: price(ctx, "per_minute"),
            triggers,
        };
        if rates.iter().any(|q| q.rating_group == rate.rating_group) {
            let m = match rate.rating_group {
                Some(g) => format!("rating group {g} is rated twice"),
                None => "only one rate may leave rating_group out (the default)".to_string(),
            };
            ctx.error(item.span().start, &path, m);
            continue;
        }
        rates.push(rate);
    }
    rates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_covers_whole_units_and_units_cost_whole_money() {
        let r = Rate {
            rating_group: None,
            per_mb: Some(3),
            per_minute: Some(7),
            triggers: TriggerSet::default(),
        };
        // 10 cents at 3 per MB cover 3 333 333 octets, which cost 10 (9.999999 rounded up).
        assert_eq!(r.units_for(Kind::Volume, 10), Some(3_333_333));
        assert_eq!(r.cost_of(Kind::Volume, 3_333_333), Some(10));
        assert_eq!(r.cost_of(Kind::Volume, 1), Some(1));
        assert_eq!(r.cost_of(Kind::Volume, 0), Some(0));
        assert_eq!(r.units_for(Kind::Time, 7), Some(60));
        assert_eq!(r.units_for(Kind::Volume, -5), Some(0));
        let buckets_only = Rate::default();
        assert_eq!(buckets_only.units_for(Kind::Volume, 100), None);
    }

    #[test]
    fn a_rating_group_falls_back_to_the_default() {
        let rates = [
            Rate {
                rating_group: Some(10),
                per_mb: Some(5),
                per_minute: None,
                triggers: TriggerSet::default(),
            },
            Rate {
                rating_group: None,
                per_mb: Some(1),
                per_minute: None,
                triggers: TriggerSet::default(),
            },
        ];
        assert_eq!(rate_of(&rates, 10).unwrap().per_mb, Some(5));
        assert_eq!(rate_of(&rates, 11).unwrap().per_mb, Some(1));
        assert_eq!(rate_of(&rates[..1], 11), None);
    }

    #[test]
    fn a_trigger_set_holds_each_trigger_type_once_in_order() {
        let mut t = TriggerSet::default();
        assert!(t.insert(pb::TriggerType::ChangeInUserCsgInformation));
        assert!(t.insert(pb::TriggerType::ChangeInRat));
        assert!(!t.insert(pb::TriggerType::ChangeInRat));
        assert_eq!(t.values(), [4, 70]);
        assert!(TriggerSet::default().values().is_empty());
    }
}
