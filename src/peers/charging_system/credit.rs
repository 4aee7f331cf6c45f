//! One credit control request, accounted for in one store transaction: the session's last
//! answer (idempotency on CC-Request-Number), the used units debited, the old reservation
//! released, the new one taken, and the answer recorded — all or nothing.

use super::containers::{debit, ensure_money, release, reserve};
use super::groups::payer_of;
use super::rating::{rate_of, Kind};
use crate::params;
use crate::peers::policy_engine::config::PolicyEngineConfig;
use crate::peers::policy_engine::db::Conn;
use crate::peers::policy_engine::store::{to_i64, StoreError};
use crate::proto::v1 as pb;
use prost::Message as _;

/// One rating group of a checked request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mscc {
    pub rating_group: u32,
    pub service_identifier: Option<u32>,
    /// What is asked for; `None`: the default grant in octets.
    pub requested: Option<(Kind, u64)>,
    pub used_octets: u64,
    pub used_seconds: u64,
}

/// A checked request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub session_id: String,
    pub origin_host: String,
    pub kind: pb::CcRequestType,
    pub number: u32,
    /// Required in INITIAL and EVENT, optional after.
    pub subscriber: Option<String>,
    pub mscc: Vec<Mscc>,
}

/// What the request did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The answer; `payer` names whose containers changed (for the group check), `replayed`
    /// says it is the stored answer of a retry.
    Answer {
        answer: pb::CreditControlAnswer,
        payer: Option<String>,
        replayed: bool,
    },
    /// The number is older than the session's last one.
    Stale { last: u32 },
    /// The session belongs to another subscriber.
    OtherSubscriber,
}

/// What the answers need from the configuration.
pub struct Context<'a> {
    pub cfg: &'a PolicyEngineConfig,
    /// Where a Final-Unit-Indication REDIRECT sends the subscriber: the redirect rule's portal.
    pub redirect: pb::RedirectServer,
}

fn code(c: pb::ResultCode) -> i32 {
    c as i32
}

impl Context<'_> {
    fn redirect_fui(&self) -> pb::FinalUnitIndication {
        pb::FinalUnitIndication {
            final_unit_action: pb::FinalUnitAction::Redirect as i32,
            restriction_filter_rule: Vec::new(),
            filter_id: Vec::new(),
            redirect_server: Some(self.redirect.clone()),
        }
    }

    fn answer(&self, r: &Request, result: pb::ResultCode) -> pb::CreditControlAnswer {
        pb::CreditControlAnswer {
            session_id: r.session_id.clone(),
            result_code: code(result),
            cc_request_type: r.kind as i32,
            cc_request_number: r.number,
            origin_host: self.cfg.origin_host.clone(),
            multiple_services_credit_control: Vec::new(),
            credit_control_failure_handling: self.cfg.charging.failure_handling as i32,
            detail: String::new(),
        }
    }
}

fn units_of(kind: Kind, n: u64) -> pb::ServiceUnits {
    match kind {
        Kind::Volume => pb::ServiceUnits {
            cc_total_octets: Some(n),
            ..Default::default()
        },
        Kind::Time => pb::ServiceUnits {
            cc_time: Some(u32::try_from(n).unwrap_or(u32::MAX)),
            ..Default::default()
        },
    }
}

/// A session's subscriber, last number, last answer (encoded) and whether it ended.
type Last = (String, u32, Vec<u8>, bool);

/// The session's last request, if it has one.
fn last_of(conn: &mut Conn, session: &str) -> Result<Option<Last>, StoreError> {
    conn.query_opt(
        "SELECT subscriber_id, cc_request_number, answer, terminated FROM gy_sessions
         WHERE session_id = ?1",
        params![session],
    )?
    .map(|r| Ok((r.text(0)?, r.u32(1)?, r.blob(2)?, r.flag(3)?)))
    .transpose()
}

/// Accounts for `r` in one transaction.
pub fn credit_control(
    conn: &mut Conn,
    ctx: &Context<'_>,
    r: &Request,
    now: i64,
) -> Result<Outcome, StoreError> {
    conn.transaction(|tx| account_for(tx, ctx, r, now))
}

/// The body of [`credit_control`], inside its transaction (run again from the start when a
/// PostgreSQL transaction conflicts).
fn account_for(
    tx: &mut Conn,
    ctx: &Context<'_>,
    r: &Request,
    now: i64,
) -> Result<Outcome, StoreError> {
    let last = last_of(tx, &r.session_id)?;
    let fresh = matches!(
        r.kind,
        pb::CcRequestType::InitialRequest | pb::CcRequestType::EventRequest
    );
    let sub = match (&last, fresh) {
        (Some((_, n, answer, _)), _) if *n == r.number => {
            let answer = pb::CreditControlAnswer::decode(answer.as_slice())
                .map_err(|e| StoreError::Corrupt(format!("answer of {}: {e}", r.session_id)))?;
            return Ok(Outcome::Answer {
                answer,
                payer: None,
                replayed: true,
            });
        }
        (Some((_, n, _, _)), _) if r.number < *n => return Ok(Outcome::Stale { last: *n }),
        (Some((_, _, _, true)), _) | (None, false) => {
            let mut a = ctx.answer(r, pb::ResultCode::DiameterUnknownSessionId);
            a.detail = "no open credit control session of this id".to_string();
            return Ok(Outcome::Answer {
                answer: a,
                payer: None,
                replayed: false,
            });
        }
        (Some((owner, _, _, _)), _) => {
            if r.subscriber.as_ref().is_some_and(|s| s != owner) {
                return Ok(Outcome::OtherSubscriber);
            }
            owner.clone()
        }
        (None, true) => r.subscriber.clone().unwrap_or_default(),
    };
    let plan = tx.query_opt(
        "SELECT plan_name FROM accounts WHERE subscriber_id = ?1",
        params![sub],
    )?;
    if plan.is_none() {
        let mut a = ctx.answer(r, pb::ResultCode::DiameterUserUnknown);
        a.detail = format!("no account for subscriber {sub}");
        return Ok(Outcome::Answer {
            answer: a,
            payer: None,
            replayed: false,
        });
    }
    let payer = payer_of(tx, &sub)?;
    let payer_plan = tx
        .query_opt(
            "SELECT plan_name FROM accounts WHERE subscriber_id = ?1",
            params![payer],
        )?
        .ok_or(StoreError::NoAccount)?
        .text(0)?;
    let rates = ctx
        .cfg
        .plan(&payer_plan)
        .map(|p| p.rates.as_slice())
        .unwrap_or(&[]);
    ensure_money(tx, &payer, now)?;

    let settings = &ctx.cfg.charging;
    let expires_at = now + i64::from(settings.validity_time) + i64::from(settings.grace);
    let mut answer = ctx.answer(r, pb::ResultCode::DiameterSuccess);
    let (mut rated, mut granted_any, mut asked) = (0usize, false, 0usize);
    for m in &r.mscc {
        let mut out = pb::MultipleServicesCreditControl {
            rating_group: Some(m.rating_group),
            service_identifier: m.service_identifier,
            ..Default::default()
        };
        let Some(rate) = rate_of(rates, m.rating_group) else {
            out.result_code = code(pb::ResultCode::DiameterRatingFailed);
            answer.multiple_services_credit_control.push(out);
            continue;
        };
        rated += 1;
        release(tx, &r.session_id, Some(m.rating_group))?;
        for (kind, used) in [(Kind::Volume, m.used_octets), (Kind::Time, m.used_seconds)] {
            if used == 0 {
                continue;
            }
            let unbilled = debit(tx, &payer, kind, used, &rate, now)?;
            if unbilled > 0 {
                tracing::warn!(session = %r.session_id, rating_group = m.rating_group, ?kind,
                    unbilled, "used units no container pays for");
            }
        }
        out.result_code = code(pb::ResultCode::DiameterSuccess);
        if r.kind == pb::CcRequestType::TerminationRequest {
            answer.multiple_services_credit_control.push(out);
            continue;
        }
        asked += 1;
        let (kind, want) = match m.requested {
            Some((Kind::Volume, n)) => (Kind::Volume, n.min(settings.max_grant_octets)),
            Some((Kind::Time, n)) => (Kind::Time, n.min(u64::from(settings.max_grant_seconds))),
            None => (Kind::Volume, settings.grant_octets),
        };
        let got = reserve(
            tx,
            &payer,
            &r.session_id,
            m.rating_group,
            kind,
            want,
            &rate,
            expires_at,
            now,
        )?;
        if r.kind == pb::CcRequestType::EventRequest {
            // One-time event: all or nothing, debited at once.
            release(tx, &r.session_id, Some(m.rating_group))?;
            if got < want {
                out.result_code = code(pb::ResultCode::DiameterCreditLimitReached);
            } else {
                debit(tx, &payer, kind, want, &rate, now)?;
                out.granted_service_unit = Some(units_of(kind, want));
                granted_any = true;
            }
            answer.multiple_services_credit_control.push(out);
            continue;
        }
        if got == 0 {
            out.result_code = code(pb::ResultCode::DiameterCreditLimitReached);
            out.final_unit_indication = Some(ctx.redirect_fui());
            answer.multiple_services_credit_control.push(out);
            continue;
        }
        granted_any = true;
        out.granted_service_unit = Some(units_of(kind, got));
        out.trigger_type = rate.triggers.values();
        out.validity_time = Some(settings.validity_time);
        let threshold = got * u64::from(settings.threshold_percent) / 100;
        if threshold > 0 {
            match kind {
                Kind::Volume => out.volume_quota_threshold = Some(threshold),
                Kind::Time => out.time_quota_threshold = u32::try_from(threshold).ok(),
            }
        }
        if settings.quota_holding_time > 0 {
            out.quota_holding_time = Some(settings.quota_holding_time);
        }
        if got < want {
            out.final_unit_indication = Some(ctx.redirect_fui());
        }
        answer.multiple_services_credit_control.push(out);
    }
    if !r.mscc.is_empty() && rated == 0 {
        answer.result_code = code(pb::ResultCode::DiameterRatingFailed);
        answer.detail = "the plan rates none of the rating groups".to_string();
    } else if asked > 0 && !granted_any {
        answer.result_code = code(pb::ResultCode::DiameterCreditLimitReached);
        answer.detail = "no credit left".to_string();
    }
    let ended = matches!(
        r.kind,
        pb::CcRequestType::TerminationRequest | pb::CcRequestType::EventRequest
    );
    if ended {
        release(tx, &r.session_id, None)?;
    }
    tx.execute(
        "INSERT INTO gy_sessions (session_id, subscriber_id, origin_host, cc_request_number,
            answer, terminated, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (session_id) DO UPDATE SET cc_request_number = excluded.cc_request_number,
            answer = excluded.answer, terminated = excluded.terminated,
            updated_at = excluded.updated_at",
        params![
            r.session_id,
            sub,
            r.origin_host,
            r.number,
            answer.encode_to_vec(),
            ended,
            now
        ],
    )?;
    Ok(Outcome::Answer {
        answer,
        payer: Some(payer),
        replayed: false,
    })
}

/// Forgets ended credit control sessions older than `before` (their retries are long over).
pub fn forget_ended(conn: &mut Conn, before: i64) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM gy_sessions WHERE terminated = 1 AND updated_at < ?1",
        params![before],
    )
}

/// Seconds, as the store keeps them.
pub fn secs(now: u64) -> i64 {
    to_i64(now)
}

#[cfg(test)]
mod tests {
    use super::super::containers::{add_container, containers, Unit};
    use super::*;
    use crate::peers::policy_engine::store::Store;
    use std::path::Path;

    const CONFIG: &str = r#"database = "x.sqlite"
token_key = "000102030405060708090a0b0c0d0e0f"
[redirect_rule]
name = "r"
precedence = 1
redirect = { support = "ENABLED", address_type = "URL", server_address = "http://portal.example/" }
flow = [{ description = "permit out ip from any to assigned" }]
[[plan]]
name = "p"
rate = [{ rating_group = 10, per_mb = 1 }]
"#;

    fn request(kind: pb::CcRequestType, number: u32, used: u64) -> Request {
        Request {
            session_id: "s".into(),
            origin_host: "gw".into(),
            kind,
            number,
            subscriber: Some("imsi-1".into()),
            mscc: vec![Mscc {
                rating_group: 10,
                service_identifier: None,
                requested: Some((Kind::Volume, 1000)),
                used_octets: used,
                used_seconds: 0,
            }],
        }
    }

    #[test]
    fn a_repeated_number_replays_and_an_older_one_is_refused() {
        let path = std::env::temp_dir().join(format!("weir-credit-{}.sqlite", std::process::id()));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        let cfg = PolicyEngineConfig::from_toml_str(CONFIG, "t.toml", Path::new("/")).unwrap();
        let ctx = Context {
            cfg: &cfg,
            redirect: pb::RedirectServer::default(),
        };
        let s = Store::open(&path).unwrap();
        s.create_account("imsi-1", 0, "p", &pb::Plan::default(), 1)
            .unwrap();
        add_container(&mut s.conn(), "imsi-1", Unit::Octets, 10_000, None, 1).unwrap();
        let run = |r: &Request| credit_control(&mut s.conn(), &ctx, r, 5).unwrap();
        let held = || {
            containers(&mut s.conn(), "imsi-1")
                .unwrap()
                .iter()
                .map(|c| (c.amount, c.reserved))
                .collect::<Vec<_>>()
        };
        let first = run(&request(pb::CcRequestType::InitialRequest, 0, 0));
        let Outcome::Answer { answer, .. } = &first else {
            panic!("{first:?}")
        };
        let update = request(pb::CcRequestType::UpdateRequest, 1, 400);
        let Outcome::Answer {
            answer: a1,
            replayed: false,
            ..
        } = run(&update)
        else {
            panic!()
        };
        assert_eq!(held(), vec![(9_600, 1000)]);
        let Outcome::Answer {
            answer: a2,
            replayed: true,
            ..
        } = run(&update)
        else {
            panic!()
        };
        assert_eq!(a1, a2);
        assert_eq!(held(), vec![(9_600, 1000)]);
        assert_eq!(
            run(&request(pb::CcRequestType::InitialRequest, 0, 0)),
            Outcome::Stale { last: 1 }
        );
        assert_eq!(held(), vec![(9_600, 1000)]);
        assert_eq!(answer.cc_request_number, 0);
        let mut other = request(pb::CcRequestType::UpdateRequest, 2, 1);
        other.subscriber = Some("imsi-2".into());
        assert_eq!(run(&other), Outcome::OtherSubscriber);
        assert_eq!(held(), vec![(9_600, 1000)]);
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
