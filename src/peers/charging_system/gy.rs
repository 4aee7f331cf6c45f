//! `weir.v1.ChargingSystem`: CCR/CCA from gateways, checked at the edge, accounted for in one
//! store transaction ([`super::credit`]).

use super::credit::{credit_control, secs, Context, Mscc, Outcome, Request};
use super::rating::Kind;
use super::ChargingSystem;
use crate::peers::policy_engine::gx::subscriber;
use crate::peers::policy_engine::{internal, now_secs};
use crate::proto::rules::Invalid;
use crate::proto::v1 as pb;
use tonic::{Response, Status};

/// Longest Session-Id and Origin-Host accepted, in bytes.
const MAX_ID_LEN: usize = 256;
/// Most MSCCs in one request.
const MAX_MSCC: usize = 64;
/// Most Used-Service-Units in one MSCC.
const MAX_USED: usize = 8;

fn check_id(value: &str, field: &str, required: bool) -> Result<(), Invalid> {
    if required && value.is_empty() {
        return Err(Invalid::new(field, "required"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_ID_LEN} bytes, got {}", value.len()),
        ));
    }
    Ok(())
}

/// Octets of a unit: the total, else input + output.
fn octets(u: &pb::ServiceUnits) -> u64 {
    u.cc_total_octets.unwrap_or_else(|| {
        u.cc_input_octets
            .unwrap_or(0)
            .saturating_add(u.cc_output_octets.unwrap_or(0))
    })
}

fn mscc_of(m: &pb::MultipleServicesCreditControl, path: &str) -> Result<Mscc, Invalid> {
    let rating_group = m
        .rating_group
        .ok_or_else(|| Invalid::new(format!("{path}.rating_group"), "required"))?;
    let requested = match &m.requested_service_unit {
        None => None,
        Some(u) => {
            let volume = u.cc_total_octets.is_some()
                || u.cc_input_octets.is_some()
                || u.cc_output_octets.is_some();
            match (u.cc_time, volume) {
                (Some(_), true) => {
                    return Err(Invalid::new(
                        format!("{path}.requested_service_unit"),
                        "ask for time or for octets, not both",
                    ))
                }
                (Some(0), false) => {
                    return Err(Invalid::new(
                        format!("{path}.requested_service_unit.cc_time"),
                        "must be greater than 0",
                    ))
                }
                (Some(t), false) => Some((Kind::Time, u64::from(t))),
                (None, true) => match octets(u) {
                    0 => {
                        return Err(Invalid::new(
                            format!("{path}.requested_service_unit"),
                            "octets requested must be greater than 0",
                        ))
                    }
                    n => Some((Kind::Volume, n)),
                },
                (None, false) => None,
            }
        }
    };
    if m.used_service_unit.len() > MAX_USED {
        return Err(Invalid::new(
            format!("{path}.used_service_unit"),
            format!(
                "at most {MAX_USED} entries, got {}",
                m.used_service_unit.len()
            ),
        ));
    }
    let (mut used_octets, mut used_seconds) = (0u64, 0u64);
    for (i, u) in m.used_service_unit.iter().enumerate() {
        let Some(units) = &u.units else {
            return Err(Invalid::new(
                format!("{path}.used_service_unit[{i}].units"),
                "required",
            ));
        };
        if pb::ReportingReason::try_from(u.reporting_reason).is_err() {
            return Err(Invalid::new(
                format!("{path}.used_service_unit[{i}].reporting_reason"),
                format!("{} is not a Reporting-Reason", u.reporting_reason),
            ));
        }
        used_octets = used_octets.saturating_add(octets(units));
        used_seconds = used_seconds.saturating_add(u64::from(units.cc_time.unwrap_or(0)));
    }
    // Far beyond any real report: refused rather than summed into nonsense.
    const MAX_USED_OCTETS: u64 = 1 << 50;
    if used_octets > MAX_USED_OCTETS {
        return Err(Invalid::new(
            format!("{path}.used_service_unit"),
            format!("at most {MAX_USED_OCTETS} octets"),
        ));
    }
    Ok(Mscc {
        rating_group,
        service_identifier: m.service_identifier,
        requested,
        used_octets,
        used_seconds,
    })
}

/// Checks a CCR at the edge; nothing after it re-validates.
pub(super) fn request_of(r: &pb::CreditControlRequest) -> Result<Request, Invalid> {
    check_id(&r.session_id, "session_id", true)?;
    check_id(&r.origin_host, "origin_host", false)?;
    let kind = match pb::CcRequestType::try_from(r.cc_request_type) {
        Ok(pb::CcRequestType::Unspecified) => {
            return Err(Invalid::new("cc_request_type", "required"))
        }
        Ok(k) => k,
        Err(_) => {
            return Err(Invalid::new(
                "cc_request_type",
                format!("{} is not a CC-Request-Type", r.cc_request_type),
            ))
        }
    };
    let fresh = matches!(
        kind,
        pb::CcRequestType::InitialRequest | pb::CcRequestType::EventRequest
    );
    if fresh && r.cc_request_number != 0 {
        return Err(Invalid::new(
            "cc_request_number",
            format!(
                "{} starts at 0, got {}",
                kind.as_str_name(),
                r.cc_request_number
            ),
        ));
    }
    if !fresh && r.cc_request_number == 0 {
        return Err(Invalid::new(
            "cc_request_number",
            format!(
                "0 is the INITIAL_REQUEST's; {} needs 1 or more",
                kind.as_str_name()
            ),
        ));
    }
    let sub = if r.subscriber_id.is_empty() && !fresh {
        None
    } else {
        Some(subscriber(&r.subscriber_id, "subscriber_id")?)
    };
    if r.multiple_services_credit_control.len() > MAX_MSCC {
        return Err(Invalid::new(
            "multiple_services_credit_control",
            format!(
                "at most {MAX_MSCC} entries, got {}",
                r.multiple_services_credit_control.len()
            ),
        ));
    }
    let mut mscc: Vec<Mscc> = Vec::with_capacity(r.multiple_services_credit_control.len());
    for (i, m) in r.multiple_services_credit_control.iter().enumerate() {
        let path = format!("multiple_services_credit_control[{i}]");
        let m = mscc_of(m, &path)?;
        if mscc.iter().any(|o| o.rating_group == m.rating_group) {
            return Err(Invalid::new(
                format!("{path}.rating_group"),
                format!("rating group {} is listed twice", m.rating_group),
            ));
        }
        mscc.push(m);
    }
    if kind == pb::CcRequestType::EventRequest && mscc.iter().any(|m| m.requested.is_none()) {
        return Err(Invalid::new(
            "multiple_services_credit_control",
            "an EVENT_REQUEST names the units it asks for in requested_service_unit",
        ));
    }
    Ok(Request {
        session_id: r.session_id.clone(),
        origin_host: r.origin_host.clone(),
        kind,
        number: r.cc_request_number,
        subscriber: sub,
        mscc,
    })
}

#[tonic::async_trait]
impl pb::charging_system_server::ChargingSystem for ChargingSystem {
    async fn credit_control(
        &self,
        request: tonic::Request<pb::CreditControlRequest>,
    ) -> Result<Response<pb::CreditControlAnswer>, Status> {
        let req = request_of(&request.into_inner())?;
        let core = self.core.clone();
        let redirect = self.redirect.clone();
        let r = req.clone();
        let outcome = self
            .core
            .db(move |store| {
                let ctx = Context {
                    cfg: core.cfg(),
                    redirect,
                };
                credit_control(&mut store.conn(), &ctx, &r, secs(now_secs()))
            })
            .await
            .map_err(internal)?;
        match outcome {
            Outcome::Stale { last } => Err(Status::failed_precondition(format!(
                "cc_request_number: {} is older than the session's last request ({last})",
                req.number
            ))),
            Outcome::OtherSubscriber => Err(Invalid::new(
                "subscriber_id",
                "the session belongs to another subscriber",
            )
            .into()),
            Outcome::Answer {
                answer,
                payer,
                replayed,
            } => {
                tracing::debug!(session = %req.session_id, cc_request_type = req.kind.as_str_name(),
                    cc_request_number = req.number, result_code = answer.result_code, replayed,
                    "credit control");
                if let Some(payer) = payer {
                    self.check_groups(Some(payer)).await;
                }
                Ok(Response::new(answer))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ccr() -> pb::CreditControlRequest {
        pb::CreditControlRequest {
            session_id: "gw;1".into(),
            cc_request_type: pb::CcRequestType::InitialRequest as i32,
            subscriber_id: "imsi-001010000000001".into(),
            multiple_services_credit_control: vec![pb::MultipleServicesCreditControl {
                rating_group: Some(10),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn field(r: pb::CreditControlRequest) -> String {
        request_of(&r).unwrap_err().field
    }

    #[test]
    fn each_mistake_names_its_field() {
        assert_eq!(request_of(&ccr()).unwrap().mscc[0].requested, None);
        let mut r = ccr();
        r.cc_request_type = 0;
        assert_eq!(field(r), "cc_request_type");
        let mut r = ccr();
        r.cc_request_number = 3;
        assert_eq!(field(r), "cc_request_number");
        let mut r = ccr();
        r.subscriber_id = "bob".into();
        assert_eq!(field(r), "subscriber_id");
        let mut r = ccr();
        r.multiple_services_credit_control[0].rating_group = None;
        assert_eq!(field(r), "multiple_services_credit_control[0].rating_group");
        let mut r = ccr();
        r.multiple_services_credit_control
            .push(r.multiple_services_credit_control[0].clone());
        assert_eq!(field(r), "multiple_services_credit_control[1].rating_group");
        let mut r = ccr();
        r.multiple_services_credit_control[0].requested_service_unit = Some(pb::ServiceUnits {
            cc_time: Some(60),
            cc_total_octets: Some(1),
            ..Default::default()
        });
        assert_eq!(
            field(r),
            "multiple_services_credit_control[0].requested_service_unit"
        );
        let mut r = ccr();
        r.cc_request_type = pb::CcRequestType::UpdateRequest as i32;
        r.subscriber_id.clear();
        assert_eq!(field(r), "cc_request_number");
    }
}
