//! Credit containers and the reservations held on them, in the policy engine's store.
//!
//! An account holds containers in the order they were added: money (its balance, so a
//! recharge credits it; at most one), data buckets in octets, time buckets in seconds, each with
//! an optional expiry. An account without containers gets a money container at its first credit
//! request, so a plain account is charged from its balance.
//!
//! A grant walks the containers in order and reserves from each what it can until the interval
//! is covered, so a grant spans containers instead of shrinking. Money pays by the plan's rate
//! ([`Rate`]); a bucket pays only for its own kind. A reservation is a row: it is either debited
//! (the used units reported) or released (a later report, the session's end, or its expiry) by
//! deleting the row, in the transaction that accounts for it — so it is accounted for exactly
//! once, whoever gets there first. Consumption is debited in container order too; what exceeds
//! every container (the gateway may overshoot a grant by a packet) is still debited, from money
//! when money pays for it (the balance goes below zero), else from the first bucket of its kind.
//!
//! The money a container offers is the balance, plus the pending credits while a verified
//! recharge success has lifted one of the subscriber's redirects (the policy engine's `lifted`
//! state): the charging system grants again at once on the same evidence the policy engine
//! lifts the redirect on, before billing applies the credit.
//!
//! Every function takes the open transaction, so a caller composes them into one.

use super::rating::{Kind, Rate};
use crate::params;
use crate::peers::policy_engine::db::Conn;
use crate::peers::policy_engine::store::{to_i64, StoreError};

/// A container's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Money,
    Octets,
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Money => "money",
            Unit::Octets => "octets",
            Unit::Seconds => "seconds",
        }
    }

    fn parse(text: &str) -> Result<Unit, StoreError> {
        match text {
            "money" => Ok(Unit::Money),
            "octets" => Ok(Unit::Octets),
            "seconds" => Ok(Unit::Seconds),
            other => Err(StoreError::Corrupt(format!("container unit '{other}'"))),
        }
    }

    /// How many `kind` units `available` of this container pays for, under `rate`.
    fn covers(self, kind: Kind, rate: &Rate, available: i64) -> Option<u64> {
        match (self, kind) {
            (Unit::Octets, Kind::Volume) | (Unit::Seconds, Kind::Time) => {
                Some(u64::try_from(available).unwrap_or(0))
            }
            (Unit::Money, _) => rate.units_for(kind, available),
            _ => None,
        }
    }

    /// What `units` of `kind` take from this container, in its unit.
    fn cost(self, kind: Kind, rate: &Rate, units: u64) -> Option<i64> {
        match (self, kind) {
            (Unit::Octets, Kind::Volume) | (Unit::Seconds, Kind::Time) => Some(to_i64(units)),
            (Unit::Money, _) => rate.cost_of(kind, units),
            _ => None,
        }
    }
}

/// A container as the store holds it, with what open reservations hold of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRow {
    pub id: i64,
    pub subscriber_id: String,
    pub unit: Unit,
    /// In its unit; for money the balance.
    pub amount: i64,
    pub reserved: i64,
    pub expires_at: Option<i64>,
    /// From 1, in the account's order.
    pub position: u32,
    pub created_at: i64,
}

impl ContainerRow {
    fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// The balance, plus pending credits while a recharge success lifted a redirect.
fn money_available(conn: &mut Conn, sub: &str) -> Result<i64, StoreError> {
    conn.query_opt(
        "SELECT CAST(balance + CASE WHEN EXISTS (
                SELECT 1 FROM sessions WHERE subscriber_id = ?1 AND lifted = 1)
            THEN COALESCE((SELECT SUM(amount) FROM credits
                WHERE subscriber_id = ?1 AND applied_at IS NULL), 0)
            ELSE 0 END AS BIGINT)
         FROM accounts WHERE subscriber_id = ?1",
        params![sub],
    )?
    .ok_or(StoreError::NoAccount)?
    .int(0)
}

/// An account's containers in order; for money, `amount` is the balance.
pub fn containers(conn: &mut Conn, sub: &str) -> Result<Vec<ContainerRow>, StoreError> {
    let rows = conn.query(
        "SELECT c.id, c.unit, c.amount, c.expires_at, c.created_at,
            CAST(COALESCE((SELECT SUM(r.units) FROM gy_reservations r
                WHERE r.container_id = c.id), 0) AS BIGINT),
            a.balance
         FROM credit_containers c JOIN accounts a ON a.subscriber_id = c.subscriber_id
         WHERE c.subscriber_id = ?1 ORDER BY c.id",
        params![sub],
    )?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let unit = Unit::parse(&r.text(1)?)?;
            Ok(ContainerRow {
                id: r.int(0)?,
                subscriber_id: sub.to_string(),
                unit,
                amount: if unit == Unit::Money {
                    r.int(6)?
                } else {
                    r.int(2)?
                },
                reserved: r.int(5)?,
                expires_at: r.opt_int(3)?,
                position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                created_at: r.int(4)?,
            })
        })
        .collect()
}

/// One container by id.
pub fn container(conn: &mut Conn, id: i64) -> Result<Option<ContainerRow>, StoreError> {
    let Some(row) = conn.query_opt(
        "SELECT subscriber_id FROM credit_containers WHERE id = ?1",
        params![id],
    )?
    else {
        return Ok(None);
    };
    Ok(containers(conn, &row.text(0)?)?
        .into_iter()
        .find(|c| c.id == id))
}

/// Why a container cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("no account for this subscriber")]
    NoAccount,
    #[error("the account already has a money container (its balance)")]
    SecondMoney,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds a container after the account's others, in one transaction.
pub fn add_container(
    conn: &mut Conn,
    sub: &str,
    unit: Unit,
    amount: i64,
    expires_at: Option<i64>,
    now: i64,
) -> Result<ContainerRow, AddError> {
    conn.transaction(|tx| {
        let exists = tx.query_opt(
            "SELECT 1 FROM accounts WHERE subscriber_id = ?1",
            params![sub],
        )?;
        if exists.is_none() {
            return Err(AddError::NoAccount);
        }
        if unit == Unit::Money {
            let money = tx
                .query_one(
                    "SELECT COUNT(*) FROM credit_containers
                     WHERE subscriber_id = ?1 AND unit = 'money'",
                    params![sub],
                )?
                .int(0)?;
            if money > 0 {
                return Err(AddError::SecondMoney);
            }
        }
        let amount = if unit == Unit::Money { 0 } else { amount };
        let id = tx
            .query_one(
                "INSERT INTO credit_containers (subscriber_id, unit, amount, expires_at,
                    created_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                params![sub, unit.as_str(), amount, expires_at, now],
            )?
            .int(0)?;
        Ok(container(tx, id)?.ok_or(StoreError::NoAccount)?)
    })
}

/// Gives an account without containers its money container.
pub fn ensure_money(conn: &mut Conn, sub: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO credit_containers (subscriber_id, unit, amount, expires_at, created_at)
         SELECT CAST(?1 AS TEXT), 'money', 0, NULL, CAST(?2 AS BIGINT)
         WHERE NOT EXISTS (SELECT 1 FROM credit_containers WHERE subscriber_id = ?1)",
        params![sub, now],
    )?;
    Ok(())
}

/// What each live container can give now, in its unit, in order.
fn available(conn: &mut Conn, sub: &str, now: i64) -> Result<Vec<(ContainerRow, i64)>, StoreError> {
    let money = money_available(conn, sub)?;
    Ok(containers(conn, sub)?
        .into_iter()
        .filter(|c| c.live(now))
        .map(|c| {
            let amount = if c.unit == Unit::Money {
                money
            } else {
                c.amount
            };
            let free = amount - c.reserved;
            (c, free)
        })
        .collect())
}

/// Reserves up to `want` units of `kind` for `session`'s `rating_group` across the payer's
/// containers in order; returns the units reserved (less than `want` only when the containers
/// hold no more).
#[allow(clippy::too_many_arguments)]
pub fn reserve(
    conn: &mut Conn,
    payer: &str,
    session: &str,
    rating_group: u32,
    kind: Kind,
    want: u64,
    rate: &Rate,
    expires_at: i64,
    now: i64,
) -> Result<u64, StoreError> {
    let mut remaining = want;
    for (c, free) in available(conn, payer, now)? {
        if remaining == 0 {
            break;
        }
        let Some(covers) = c.unit.covers(kind, rate, free) else {
            continue;
        };
        let take = covers.min(remaining);
        if take == 0 {
            continue;
        }
        let Some(units) = c.unit.cost(kind, rate, take) else {
            continue;
        };
        conn.execute(
            "INSERT INTO gy_reservations (session_id, rating_group, container_id, units,
                expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![session, rating_group, c.id, units, expires_at],
        )?;
        remaining -= take;
    }
    Ok(want - remaining)
}

/// Releases the open reservations of a session (of one rating group, or all); returns the
/// number released.
pub fn release(
    conn: &mut Conn,
    session: &str,
    rating_group: Option<u32>,
) -> Result<usize, StoreError> {
    match rating_group {
        Some(rg) => conn.execute(
            "DELETE FROM gy_reservations WHERE session_id = ?1 AND rating_group = ?2",
            params![session, rg],
        ),
        None => conn.execute(
            "DELETE FROM gy_reservations WHERE session_id = ?1",
            params![session],
        ),
    }
}

/// Takes `amount` (in its unit) from a container.
fn take(conn: &mut Conn, c: &ContainerRow, amount: i64, now: i64) -> Result<(), StoreError> {
    if c.unit == Unit::Money {
        conn.execute(
            "UPDATE accounts SET balance = balance - ?2, updated_at = ?3 WHERE subscriber_id = ?1",
            params![c.subscriber_id, amount, now],
        )?;
    } else {
        conn.execute(
            "UPDATE credit_containers SET amount = amount - ?2 WHERE id = ?1",
            params![c.id, amount],
        )?;
    }
    Ok(())
}

/// Debits `used` units of `kind` from the payer's containers in order (release the session's
/// reservation of the rating group first, so its units are there to take). Returns the units
/// no container could take (nothing pays for that kind at all), which the caller logs.
pub fn debit(
    conn: &mut Conn,
    payer: &str,
    kind: Kind,
    used: u64,
    rate: &Rate,
    now: i64,
) -> Result<u64, StoreError> {
    let mut remaining = used;
    let live = available(conn, payer, now)?;
    for (c, free) in &live {
        if remaining == 0 {
            return Ok(0);
        }
        let Some(covers) = c.unit.covers(kind, rate, *free) else {
            continue;
        };
        let units = covers.min(remaining);
        if units == 0 {
            continue;
        }
        if let Some(cost) = c.unit.cost(kind, rate, units) {
            take(conn, c, cost, now)?;
            remaining -= units;
        }
    }
    if remaining == 0 {
        return Ok(0);
    }
    // Beyond every container: money when it pays for the kind, else the first bucket of it.
    let overdraw = live
        .iter()
        .find(|(c, _)| c.unit == Unit::Money && rate.cost_of(kind, 1).is_some())
        .or_else(|| {
            live.iter()
                .find(|(c, _)| c.unit != Unit::Money && c.unit.cost(kind, rate, 1).is_some())
        });
    if let Some((c, _)) = overdraw {
        if let Some(cost) = c.unit.cost(kind, rate, remaining) {
            take(conn, c, cost, now)?;
            return Ok(0);
        }
    }
    Ok(remaining)
}

/// Releases every reservation past its expiry; returns (session, rating group, units) of each.
pub fn release_expired(conn: &mut Conn, now: i64) -> Result<Vec<(String, u32, i64)>, StoreError> {
    conn.query(
        "DELETE FROM gy_reservations WHERE expires_at <= ?1
         RETURNING session_id, rating_group, units",
        params![now],
    )?
    .iter()
    .map(|r| Ok((r.text(0)?, r.u32(1)?, r.int(2)?)))
    .collect()
}

/// Octets left in an account's live data buckets (amount - reserved).
pub fn octets_left(conn: &mut Conn, sub: &str, now: i64) -> Result<i64, StoreError> {
    Ok(containers(conn, sub)?
        .iter()
        .filter(|c| c.unit == Unit::Octets && c.live(now))
        .map(|c| c.amount - c.reserved)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::policy_engine::store::Store;
    use crate::proto::v1 as pb;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "weir-containers-{}-{name}.sqlite",
            std::process::id()
        ));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
        p
    }

    const RATE: Rate = Rate {
        rating_group: None,
        per_mb: Some(2),
        per_minute: None,
        triggers: super::super::rating::TriggerSet::NONE,
    };

    fn amounts(conn: &mut Conn, sub: &str) -> Vec<(i64, i64)> {
        containers(conn, sub)
            .unwrap()
            .iter()
            .map(|c| (c.amount, c.reserved))
            .collect()
    }

    #[test]
    fn a_grant_spans_containers_and_debits_go_in_order() {
        let path = temp("span");
        let s = Store::open(&path).unwrap();
        s.create_account("imsi-1", 10, "p", &pb::Plan::default(), 1)
            .unwrap();
        let mut conn = s.conn();
        add_container(&mut conn, "imsi-1", Unit::Octets, 300_000, None, 1).unwrap();
        add_container(&mut conn, "imsi-1", Unit::Money, 0, None, 1).unwrap();
        add_container(&mut conn, "imsi-1", Unit::Octets, 1_000_000, Some(50), 1).unwrap();
        // 3 MB wanted: 300 000 from the bucket, 10 money = 5 MB at 2 per MB covers the rest
        // (2 700 000 octets cost 5.4, rounded up to 6); the expired bucket is never touched.
        let got = reserve(
            &mut conn,
            "imsi-1",
            "s1",
            10,
            Kind::Volume,
            3_000_000,
            &RATE,
            100,
            60,
        )
        .unwrap();
        assert_eq!(got, 3_000_000);
        assert_eq!(
            amounts(&mut conn, "imsi-1"),
            vec![(300_000, 300_000), (10, 6), (1_000_000, 0)]
        );
        // 4 MB more: only 4 money left = 2 MB.
        let more = reserve(
            &mut conn,
            "imsi-1",
            "s2",
            10,
            Kind::Volume,
            4_000_000,
            &RATE,
            100,
            60,
        )
        .unwrap();
        assert_eq!(more, 2_000_000);
        assert_eq!(release(&mut conn, "s2", Some(10)).unwrap(), 1);
        // 500 000 used: the first bucket first.
        release(&mut conn, "s1", Some(10)).unwrap();
        assert_eq!(
            debit(&mut conn, "imsi-1", Kind::Volume, 500_000, &RATE, 60).unwrap(),
            0
        );
        assert_eq!(
            amounts(&mut conn, "imsi-1"),
            vec![(0, 0), (10 - 1, 0), (1_000_000, 0)]
        );
        // Far beyond everything: the balance goes below zero, nothing is lost.
        assert_eq!(
            debit(&mut conn, "imsi-1", Kind::Volume, 10_000_000, &RATE, 60).unwrap(),
            0
        );
        assert_eq!(amounts(&mut conn, "imsi-1")[1].0, 9 - 20);
        // Time is paid by nothing here.
        assert_eq!(
            debit(&mut conn, "imsi-1", Kind::Time, 30, &RATE, 60).unwrap(),
            30
        );
        drop(conn);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn expired_reservations_are_released_once() {
        let path = temp("expiry");
        let s = Store::open(&path).unwrap();
        s.create_account("imsi-1", 0, "p", &pb::Plan::default(), 1)
            .unwrap();
        let mut conn = s.conn();
        add_container(&mut conn, "imsi-1", Unit::Octets, 1000, None, 1).unwrap();
        reserve(
            &mut conn,
            "imsi-1",
            "s1",
            1,
            Kind::Volume,
            600,
            &RATE,
            10,
            1,
        )
        .unwrap();
        assert_eq!(octets_left(&mut conn, "imsi-1", 1).unwrap(), 400);
        assert!(release_expired(&mut conn, 9).unwrap().is_empty());
        assert_eq!(
            release_expired(&mut conn, 10).unwrap(),
            vec![("s1".to_string(), 1, 600)]
        );
        assert!(release_expired(&mut conn, 11).unwrap().is_empty());
        assert_eq!(octets_left(&mut conn, "imsi-1", 11).unwrap(), 1000);
        drop(conn);
        let _ = std::fs::remove_file(&path);
    }
}
