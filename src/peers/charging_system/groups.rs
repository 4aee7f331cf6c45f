//! Shared quota groups: an owner's containers that its members draw on.
//!
//! A member's grants are reserved from the owner's containers, in the same transaction as every
//! other reservation on them (the store's write lock is taken up front), so two members never
//! get the same unit. A group whose owner's data buckets hold fewer octets than its threshold
//! (what is left after debits and open reservations) is *restricted*: the policy engine
//! redirects every session of every member and of the owner to the recharge portal, at
//! whichever gateway each is attached, with a RAR. When the buckets are above the threshold
//! again (a container added, reservations released) the restriction is lifted the same way.

use super::containers::octets_left;
use crate::params;
use crate::peers::policy_engine::db::Conn;
use crate::peers::policy_engine::store::{to_i64, to_u64, StoreError};

/// A group with its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub group_id: String,
    pub owner_id: String,
    pub members: Vec<String>,
    pub threshold_octets: u64,
    pub restricted: bool,
    pub remaining_octets: i64,
    pub created_at: i64,
}

/// Why a group change was refused.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("no account for subscriber {0}")]
    NoAccount(String),
    #[error("no quota group '{0}'")]
    NoGroup(String),
    #[error("quota group '{0}' already exists")]
    Exists(String),
    #[error("{0} already owns or belongs to a quota group")]
    Taken(String),
    #[error("{0} is not a member of quota group '{1}'")]
    NotMember(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn has_account(conn: &mut Conn, sub: &str) -> Result<bool, GroupError> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM accounts WHERE subscriber_id = ?1",
            params![sub],
        )?
        .is_some())
}

/// Whether `sub` owns or belongs to a group.
fn in_a_group(conn: &mut Conn, sub: &str) -> Result<bool, GroupError> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM quota_groups WHERE owner_id = ?1
             UNION ALL SELECT 1 FROM quota_group_members WHERE subscriber_id = ?1",
            params![sub],
        )?
        .is_some())
}

/// Whose containers pay for `sub`: its group's owner, else itself.
pub fn payer_of(conn: &mut Conn, sub: &str) -> Result<String, StoreError> {
    let owner = conn.query_opt(
        "SELECT g.owner_id FROM quota_group_members m
         JOIN quota_groups g ON g.group_id = m.group_id WHERE m.subscriber_id = ?1",
        params![sub],
    )?;
    match owner {
        Some(r) => r.text(0),
        None => Ok(sub.to_string()),
    }
}

/// Whether `sub` is the owner or a member of a restricted group.
pub fn restricted(conn: &mut Conn, sub: &str) -> Result<bool, StoreError> {
    let n = conn
        .query_one(
            "SELECT COUNT(*) FROM quota_groups g WHERE g.restricted = 1 AND (g.owner_id = ?1
                OR EXISTS (SELECT 1 FROM quota_group_members m
                           WHERE m.group_id = g.group_id AND m.subscriber_id = ?1))",
            params![sub],
        )?
        .int(0)?;
    Ok(n > 0)
}

pub fn group(conn: &mut Conn, id: &str, now: i64) -> Result<Option<GroupRow>, StoreError> {
    let Some(row) = conn.query_opt(
        "SELECT owner_id, threshold_octets, restricted, created_at FROM quota_groups
         WHERE group_id = ?1",
        params![id],
    )?
    else {
        return Ok(None);
    };
    let (owner_id, threshold, restricted, created_at) =
        (row.text(0)?, row.int(1)?, row.flag(2)?, row.int(3)?);
    let members = conn
        .query(
            "SELECT subscriber_id FROM quota_group_members WHERE group_id = ?1
             ORDER BY subscriber_id",
            params![id],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>, _>>()?;
    let remaining_octets = octets_left(conn, &owner_id, now)?;
    Ok(Some(GroupRow {
        group_id: id.to_string(),
        owner_id,
        members,
        threshold_octets: to_u64(threshold),
        restricted,
        remaining_octets,
        created_at,
    }))
}

/// Groups after `after` in id order, at most `limit`.
pub fn groups(
    conn: &mut Conn,
    after: &str,
    limit: usize,
    now: i64,
) -> Result<Vec<GroupRow>, StoreError> {
    let ids = conn
        .query(
            "SELECT group_id FROM quota_groups WHERE group_id > ?1 ORDER BY group_id LIMIT ?2",
            params![after, to_i64(limit as u64)],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(g) = group(conn, &id, now)? {
            out.push(g);
        }
    }
    Ok(out)
}

pub fn create_group(
    conn: &mut Conn,
    id: &str,
    owner: &str,
    threshold_octets: u64,
    now: i64,
) -> Result<GroupRow, GroupError> {
    if !has_account(conn, owner)? {
        return Err(GroupError::NoAccount(owner.to_string()));
    }
    if group(conn, id, now)?.is_some() {
        return Err(GroupError::Exists(id.to_string()));
    }
    if in_a_group(conn, owner)? {
        return Err(GroupError::Taken(owner.to_string()));
    }
    conn.execute(
        "INSERT INTO quota_groups (group_id, owner_id, threshold_octets, restricted, created_at)
         VALUES (?1, ?2, ?3, 0, ?4)",
        params![id, owner, to_i64(threshold_octets), now],
    )?;
    group(conn, id, now)?.ok_or_else(|| GroupError::NoGroup(id.to_string()))
}

pub fn add_member(conn: &mut Conn, id: &str, sub: &str, now: i64) -> Result<GroupRow, GroupError> {
    if group(conn, id, now)?.is_none() {
        return Err(GroupError::NoGroup(id.to_string()));
    }
    if !has_account(conn, sub)? {
        return Err(GroupError::NoAccount(sub.to_string()));
    }
    if in_a_group(conn, sub)? {
        return Err(GroupError::Taken(sub.to_string()));
    }
    conn.execute(
        "INSERT INTO quota_group_members (subscriber_id, group_id) VALUES (?1, ?2)",
        params![sub, id],
    )?;
    group(conn, id, now)?.ok_or_else(|| GroupError::NoGroup(id.to_string()))
}

pub fn remove_member(
    conn: &mut Conn,
    id: &str,
    sub: &str,
    now: i64,
) -> Result<GroupRow, GroupError> {
    if group(conn, id, now)?.is_none() {
        return Err(GroupError::NoGroup(id.to_string()));
    }
    let n = conn.execute(
        "DELETE FROM quota_group_members WHERE subscriber_id = ?1 AND group_id = ?2",
        params![sub, id],
    )?;
    if n == 0 {
        return Err(GroupError::NotMember(sub.to_string(), id.to_string()));
    }
    group(conn, id, now)?.ok_or_else(|| GroupError::NoGroup(id.to_string()))
}

/// Sets each group's restriction from its owner's buckets (of the group `owner` owns, or of
/// every group when `owner` is `None`); returns the subscribers (owner and members) of each group
/// whose restriction changed, for the caller to reconcile.
pub fn evaluate(
    conn: &mut Conn,
    owner: Option<&str>,
    now: i64,
) -> Result<Vec<(GroupRow, Vec<String>)>, StoreError> {
    let rows = match owner {
        Some(o) => conn.query(
            "SELECT group_id FROM quota_groups WHERE owner_id = ?1",
            params![o],
        )?,
        None => conn.query("SELECT group_id FROM quota_groups ORDER BY group_id", &[])?,
    };
    let ids = rows
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut changed = Vec::new();
    for id in ids {
        let Some(mut g) = group(conn, &id, now)? else {
            continue;
        };
        let below = g.remaining_octets < to_i64(g.threshold_octets);
        if below == g.restricted {
            continue;
        }
        // Compare-and-set: of several processes on one store, one acts on the change.
        let moved = conn.execute(
            "UPDATE quota_groups SET restricted = ?2 WHERE group_id = ?1 AND restricted = ?3",
            params![id, below, g.restricted],
        )?;
        if moved == 0 {
            continue;
        }
        g.restricted = below;
        let mut subs = vec![g.owner_id.clone()];
        subs.extend(g.members.iter().cloned());
        changed.push((g, subs));
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::super::containers::{add_container, reserve, Unit};
    use super::super::rating::{Kind, Rate};
    use super::*;
    use crate::peers::policy_engine::store::Store;
    use crate::proto::v1 as pb;

    #[test]
    fn members_pay_from_the_owner_and_the_threshold_restricts_the_group() {
        let path = std::env::temp_dir().join(format!("weir-groups-{}.sqlite", std::process::id()));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        let s = Store::open(&path).unwrap();
        for sub in ["imsi-1", "imsi-2", "imsi-3"] {
            s.create_account(sub, 0, "p", &pb::Plan::default(), 1)
                .unwrap();
        }
        let mut conn = s.conn();
        add_container(&mut conn, "imsi-1", Unit::Octets, 1000, None, 1).unwrap();
        create_group(&mut conn, "family", "imsi-1", 300, 1).unwrap();
        add_member(&mut conn, "family", "imsi-2", 1).unwrap();
        assert!(matches!(
            add_member(&mut conn, "family", "imsi-1", 1),
            Err(GroupError::Taken(_))
        ));
        assert_eq!(payer_of(&mut conn, "imsi-2").unwrap(), "imsi-1");
        assert_eq!(payer_of(&mut conn, "imsi-3").unwrap(), "imsi-3");
        assert!(evaluate(&mut conn, Some("imsi-1"), 1).unwrap().is_empty());
        let rate = Rate::default();
        reserve(
            &mut conn,
            "imsi-1",
            "s2",
            1,
            Kind::Volume,
            800,
            &rate,
            99,
            1,
        )
        .unwrap();
        let changed = evaluate(&mut conn, Some("imsi-1"), 1).unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(
            changed[0].1,
            vec!["imsi-1".to_string(), "imsi-2".to_string()]
        );
        assert!(restricted(&mut conn, "imsi-2").unwrap());
        assert!(!restricted(&mut conn, "imsi-3").unwrap());
        // Once restricted, evaluating again changes nothing.
        assert!(evaluate(&mut conn, None, 1).unwrap().is_empty());
        remove_member(&mut conn, "family", "imsi-2", 1).unwrap();
        assert!(!restricted(&mut conn, "imsi-2").unwrap());
        drop(conn);
        let _ = std::fs::remove_file(&path);
    }
}
