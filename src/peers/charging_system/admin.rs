//! The charging system's Admin RPCs (containers and quota groups), called from
//! `weir.v1.Admin`'s service so both sides share one Admin.

use super::containers::{self, AddError, ContainerRow, Unit};
use super::credit::secs;
use super::groups::{self, GroupError, GroupRow};
use super::ChargingSystem;
use crate::peers::policy_engine::config::MAX_AMOUNT;
use crate::peers::policy_engine::gx::subscriber;
use crate::peers::policy_engine::{internal, now_secs, Core};
use crate::proto::rules::Invalid;
use crate::proto::v1 as pb;
use std::sync::Arc;
use tonic::Status;

/// Longest group id, in bytes.
const MAX_GROUP_ID_LEN: usize = 64;
/// Largest page.
const MAX_PAGE: u32 = 1000;

fn container_of(c: &ContainerRow) -> pb::CreditContainer {
    pb::CreditContainer {
        container_id: u64::try_from(c.id).unwrap_or(0),
        subscriber_id: c.subscriber_id.clone(),
        unit: match c.unit {
            Unit::Money => pb::CreditUnit::Money,
            Unit::Octets => pb::CreditUnit::Octets,
            Unit::Seconds => pb::CreditUnit::Seconds,
        } as i32,
        amount: c.amount,
        reserved: c.reserved,
        expires_at: c
            .expires_at
            .and_then(|e| u64::try_from(e).ok())
            .unwrap_or(0),
        position: c.position,
        created_at: u64::try_from(c.created_at).unwrap_or(0),
    }
}

fn group_of(g: &GroupRow) -> pb::QuotaGroup {
    pb::QuotaGroup {
        group_id: g.group_id.clone(),
        owner_id: g.owner_id.clone(),
        member_id: g.members.clone(),
        threshold_octets: g.threshold_octets,
        restricted: g.restricted,
        remaining_octets: g.remaining_octets,
        created_at: u64::try_from(g.created_at).unwrap_or(0),
    }
}

fn group_status(e: GroupError) -> Status {
    match e {
        GroupError::NoAccount(_) | GroupError::NoGroup(_) | GroupError::NotMember(..) => {
            Status::not_found(e.to_string())
        }
        GroupError::Exists(_) => Status::already_exists(e.to_string()),
        GroupError::Taken(_) => Status::failed_precondition(e.to_string()),
        GroupError::Store(e) => internal(e),
    }
}

fn group_id(id: &str) -> Result<(), Invalid> {
    if id.trim().is_empty() || id.len() > MAX_GROUP_ID_LEN {
        return Err(Invalid::new(
            "group_id",
            format!("needs 1-{MAX_GROUP_ID_LEN} bytes"),
        ));
    }
    Ok(())
}

pub(crate) async fn add_credit_container(
    core: &Arc<Core>,
    r: pb::AddCreditContainerRequest,
) -> Result<pb::CreditContainer, Status> {
    let sub = subscriber(&r.subscriber_id, "subscriber_id")?;
    let unit = match pb::CreditUnit::try_from(r.unit) {
        Ok(pb::CreditUnit::Money) => Unit::Money,
        Ok(pb::CreditUnit::Octets) => Unit::Octets,
        Ok(pb::CreditUnit::Seconds) => Unit::Seconds,
        _ => return Err(Invalid::new("unit", "MONEY, OCTETS or SECONDS is required").into()),
    };
    if !(0..=MAX_AMOUNT).contains(&r.amount) {
        return Err(Invalid::new(
            "amount",
            format!("must be 0-{MAX_AMOUNT}, got {}", r.amount),
        )
        .into());
    }
    let expires_at = match r.expires_at {
        0 => None,
        n => Some(i64::try_from(n).map_err(|_| Invalid::new("expires_at", "out of range"))?),
    };
    let (amount, who) = (r.amount, sub.clone());
    let added = core
        .db(move |s| {
            Ok(containers::add_container(
                &mut s.conn(),
                &who,
                unit,
                amount,
                expires_at,
                secs(now_secs()),
            ))
        })
        .await
        .map_err(internal)?;
    let c = match added {
        Ok(c) => c,
        Err(AddError::NoAccount) => {
            return Err(Status::not_found(format!(
                "no account for subscriber {sub}"
            )))
        }
        Err(e @ AddError::SecondMoney) => return Err(Invalid::new("unit", e.to_string()).into()),
        Err(AddError::Store(e)) => return Err(internal(e)),
    };
    tracing::info!(subscriber = %sub, unit = unit.as_str(), amount, container = c.id, "credit container added");
    ChargingSystem::new(core.clone())
        .check_groups(Some(sub))
        .await;
    Ok(container_of(&c))
}

pub(crate) async fn list_credit_containers(
    core: &Arc<Core>,
    r: pb::ListCreditContainersRequest,
) -> Result<pb::ListCreditContainersResponse, Status> {
    let sub = subscriber(&r.subscriber_id, "subscriber_id")?;
    let who = sub.clone();
    let (exists, list) = core
        .db(move |s| {
            let exists = s.account(&who)?.is_some();
            Ok((exists, containers::containers(&mut s.conn(), &who)?))
        })
        .await
        .map_err(internal)?;
    if !exists {
        return Err(Status::not_found(format!(
            "no account for subscriber {sub}"
        )));
    }
    Ok(pb::ListCreditContainersResponse {
        containers: list.iter().map(container_of).collect(),
    })
}

pub(crate) async fn get_credit_container(
    core: &Arc<Core>,
    r: pb::GetCreditContainerRequest,
) -> Result<pb::CreditContainer, Status> {
    let id = i64::try_from(r.container_id)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Invalid::new("container_id", "required"))?;
    core.db(move |s| containers::container(&mut s.conn(), id))
        .await
        .map_err(internal)?
        .map(|c| container_of(&c))
        .ok_or_else(|| Status::not_found(format!("no credit container {id}")))
}

pub(crate) async fn create_quota_group(
    core: &Arc<Core>,
    r: pb::CreateQuotaGroupRequest,
) -> Result<pb::QuotaGroup, Status> {
    group_id(&r.group_id)?;
    let owner = subscriber(&r.owner_id, "owner_id")?;
    if r.threshold_octets > MAX_AMOUNT as u64 {
        return Err(Invalid::new("threshold_octets", format!("at most {MAX_AMOUNT}")).into());
    }
    let (id, threshold) = (r.group_id.clone(), r.threshold_octets);
    let o = owner.clone();
    let g = core
        .db(move |s| {
            Ok(groups::create_group(
                &mut s.conn(),
                &id,
                &o,
                threshold,
                secs(now_secs()),
            ))
        })
        .await
        .map_err(internal)?
        .map_err(group_status)?;
    tracing::info!(group = %g.group_id, owner = %owner, threshold, "quota group created");
    ChargingSystem::new(core.clone())
        .check_groups(Some(owner))
        .await;
    group_now(core, &r.group_id).await
}

async fn group_now(core: &Arc<Core>, id: &str) -> Result<pb::QuotaGroup, Status> {
    let id = id.to_string();
    let name = id.clone();
    core.db(move |s| groups::group(&mut s.conn(), &id, secs(now_secs())))
        .await
        .map_err(internal)?
        .map(|g| group_of(&g))
        .ok_or_else(|| Status::not_found(format!("no quota group '{name}'")))
}

pub(crate) async fn change_member(
    core: &Arc<Core>,
    r: pb::QuotaGroupMemberRequest,
    add: bool,
) -> Result<pb::QuotaGroup, Status> {
    group_id(&r.group_id)?;
    let sub = subscriber(&r.subscriber_id, "subscriber_id")?;
    let (id, who) = (r.group_id.clone(), sub.clone());
    let g = core
        .db(move |s| {
            let mut conn = s.conn();
            let now = secs(now_secs());
            Ok(if add {
                groups::add_member(&mut conn, &id, &who, now)
            } else {
                groups::remove_member(&mut conn, &id, &who, now)
            })
        })
        .await
        .map_err(internal)?
        .map_err(group_status)?;
    tracing::info!(group = %g.group_id, subscriber = %sub, added = add, "quota group member changed");
    // A member joining a restricted group, or leaving one, moves at once.
    if g.restricted {
        if let Err(e) = core.reconcile(&sub).await {
            tracing::error!(subscriber = %sub, error = %e, "cannot reconcile sessions");
        }
    }
    Ok(group_of(&g))
}

pub(crate) async fn get_quota_group(
    core: &Arc<Core>,
    r: pb::GetQuotaGroupRequest,
) -> Result<pb::QuotaGroup, Status> {
    group_id(&r.group_id)?;
    group_now(core, &r.group_id).await
}

pub(crate) async fn list_quota_groups(
    core: &Arc<Core>,
    r: pb::ListQuotaGroupsRequest,
) -> Result<pb::ListQuotaGroupsResponse, Status> {
    let size = match r.page_size {
        0 => 100,
        n @ 1..=MAX_PAGE => n as usize,
        n => return Err(Invalid::new("page_size", format!("at most {MAX_PAGE}, got {n}")).into()),
    };
    let after = r.page_token.clone();
    let mut list = core
        .db(move |s| groups::groups(&mut s.conn(), &after, size + 1, secs(now_secs())))
        .await
        .map_err(internal)?;
    let next = if list.len() > size {
        list.truncate(size);
        list.last().map(|g| g.group_id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListQuotaGroupsResponse {
        groups: list.iter().map(group_of).collect(),
        next_page_token: next,
    })
}
