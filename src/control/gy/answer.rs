//! A charging system's answer as the grants it puts in force: per Multiple-Services-Credit-
//! Control a grant with its units, thresholds and times, a Final-Unit-Indication checked like
//! the configuration's, and a grant of nothing for a rating group refused or out of credit.

use crate::policy::{CreditGrant, FinalUnitAction, FinalUnitIndication, GrantedServiceUnit};
use crate::proto::v1 as pb;

/// A grant of nothing whose Final-Unit-Action is `action`: the rating group is held there.
fn nothing(
    m: &pb::MultipleServicesCreditControl,
    grant: u64,
    action: FinalUnitAction,
) -> CreditGrant {
    CreditGrant {
        rating_group: m.rating_group.unwrap_or(0),
        service_identifier: m.service_identifier,
        grant,
        granted: GrantedServiceUnit {
            total: Some(0),
            ..Default::default()
        },
        volume_threshold: None,
        time_threshold: None,
        validity_time: None,
        quota_holding_time: None,
        final_unit: Some(FinalUnitIndication {
            action,
            restriction_filters: Vec::new(),
            filter_ids: Vec::new(),
        }),
    }
}

fn final_unit_of(f: &pb::FinalUnitIndication) -> Result<FinalUnitIndication, String> {
    let action = match pb::FinalUnitAction::try_from(f.final_unit_action) {
        Ok(pb::FinalUnitAction::Terminate) => FinalUnitAction::Terminate,
        Ok(pb::FinalUnitAction::RestrictAccess) => FinalUnitAction::RestrictAccess,
        Ok(pb::FinalUnitAction::Redirect) => {
            let s = f.redirect_server.clone().unwrap_or_default();
            let info = crate::proto::rules::redirect_of(
                &pb::RedirectInformation {
                    redirect_support: pb::RedirectSupport::RedirectionEnabled as i32,
                    redirect_address_type: s.redirect_address_type,
                    redirect_server_address: s.redirect_server_address,
                },
                "final_unit_indication.redirect_server",
            )
            .map_err(|e| e.to_string())?;
            FinalUnitAction::Redirect(info)
        }
        Err(_) => {
            return Err(format!(
                "{} is not a Final-Unit-Action",
                f.final_unit_action
            ))
        }
    };
    let restriction_filters = f
        .restriction_filter_rule
        .iter()
        .map(|r| {
            r.parse::<crate::policy::FlowDescription>()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FinalUnitIndication {
        action,
        restriction_filters,
        filter_ids: f.filter_id.clone(),
    })
}

/// The grants an answer to request `number` puts in force, and the rating groups it blocks
/// (with the Result-Code). The grant number is `number + 1`: above every grant of an earlier
/// answer, the same for a repeated one.
pub fn grants_of(
    answer: &pb::CreditControlAnswer,
    asked: &[u32],
    number: u32,
) -> (Vec<CreditGrant>, Vec<(u32, i32)>) {
    let grant = u64::from(number) + 1;
    let (mut grants, mut blocked) = (Vec::new(), Vec::new());
    let success = |c: i32| {
        c == pb::ResultCode::DiameterSuccess as i32
            || c == pb::ResultCode::DiameterLimitedSuccess as i32
    };
    let user_or_rating = |c: i32| {
        c == pb::ResultCode::DiameterUserUnknown as i32
            || c == pb::ResultCode::DiameterRatingFailed as i32
    };
    if answer.multiple_services_credit_control.is_empty() && user_or_rating(answer.result_code) {
        for rg in asked {
            let m = pb::MultipleServicesCreditControl {
                rating_group: Some(*rg),
                ..Default::default()
            };
            grants.push(nothing(&m, grant, FinalUnitAction::Terminate));
            blocked.push((*rg, answer.result_code));
        }
        return (grants, blocked);
    }
    for m in &answer.multiple_services_credit_control {
        let Some(rg) = m.rating_group else { continue };
        let fui = m.final_unit_indication.as_ref().map(final_unit_of);
        let code = if m.result_code == 0 {
            answer.result_code
        } else {
            m.result_code
        };
        if user_or_rating(code) {
            grants.push(nothing(m, grant, FinalUnitAction::Terminate));
            blocked.push((rg, code));
            continue;
        }
        let final_unit = match fui {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                tracing::warn!(rating_group = rg, error = %e, "Final-Unit-Indication refused; TERMINATE applies");
                Some(FinalUnitIndication {
                    action: FinalUnitAction::Terminate,
                    restriction_filters: Vec::new(),
                    filter_ids: Vec::new(),
                })
            }
            None => None,
        };
        if code == pb::ResultCode::DiameterCreditLimitReached as i32 || !success(code) {
            let mut g = nothing(m, grant, FinalUnitAction::Terminate);
            if final_unit.is_some() {
                g.final_unit = final_unit;
            }
            grants.push(g);
            continue;
        }
        let Some(u) = &m.granted_service_unit else {
            continue;
        };
        grants.push(CreditGrant {
            rating_group: rg,
            service_identifier: m.service_identifier,
            grant,
            granted: GrantedServiceUnit {
                total: u.cc_total_octets,
                uplink: u.cc_input_octets,
                downlink: u.cc_output_octets,
                time: u.cc_time.map(u64::from),
            },
            volume_threshold: m.volume_quota_threshold,
            time_threshold: m.time_quota_threshold.map(u64::from),
            validity_time: m.validity_time.map(u64::from),
            quota_holding_time: m.quota_holding_time.map(u64::from),
            final_unit,
        });
    }
    (grants, blocked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(msccs: Vec<pb::MultipleServicesCreditControl>) -> pb::CreditControlAnswer {
        pb::CreditControlAnswer {
            result_code: pb::ResultCode::DiameterSuccess as i32,
            multiple_services_credit_control: msccs,
            ..Default::default()
        }
    }

    #[test]
    fn an_answer_becomes_grants_numbered_after_its_request() {
        let a = answer(vec![
            pb::MultipleServicesCreditControl {
                rating_group: Some(10),
                result_code: pb::ResultCode::DiameterSuccess as i32,
                granted_service_unit: Some(pb::ServiceUnits {
                    cc_total_octets: Some(500_000),
                    ..Default::default()
                }),
                validity_time: Some(600),
                volume_quota_threshold: Some(100_000),
                ..Default::default()
            },
            pb::MultipleServicesCreditControl {
                rating_group: Some(20),
                result_code: pb::ResultCode::DiameterRatingFailed as i32,
                ..Default::default()
            },
            pb::MultipleServicesCreditControl {
                rating_group: Some(30),
                result_code: pb::ResultCode::DiameterCreditLimitReached as i32,
                final_unit_indication: Some(pb::FinalUnitIndication {
                    final_unit_action: pb::FinalUnitAction::Redirect as i32,
                    redirect_server: Some(pb::RedirectServer {
                        redirect_address_type: pb::RedirectAddressType::Url as i32,
                        redirect_server_address: "http://portal.example/recharge".into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        let (grants, blocked) = grants_of(&a, &[10, 20, 30], 4);
        assert_eq!(blocked, [(20, pb::ResultCode::DiameterRatingFailed as i32)]);
        assert_eq!(grants.len(), 3);
        assert_eq!((grants[0].rating_group, grants[0].grant), (10, 5));
        assert_eq!(grants[0].granted.total, Some(500_000));
        assert_eq!(grants[0].volume_threshold, Some(100_000));
        assert_eq!(grants[0].validity_time, Some(600));
        assert_eq!(grants[0].final_unit, None);
        assert_eq!(grants[1].granted.total, Some(0));
        assert_eq!(
            grants[1].final_unit.as_ref().unwrap().action,
            FinalUnitAction::Terminate
        );
        assert_eq!(grants[2].granted.total, Some(0));
        assert!(matches!(
            &grants[2].final_unit.as_ref().unwrap().action,
            FinalUnitAction::Redirect(r) if r.server_address() == "http://portal.example/recharge"
        ));
        // USER_UNKNOWN for the whole request: every rating group asked is blocked.
        let mut a = answer(Vec::new());
        a.result_code = pb::ResultCode::DiameterUserUnknown as i32;
        let (grants, blocked) = grants_of(&a, &[10, 11], 0);
        assert_eq!(blocked.len(), 2);
        assert!(grants
            .iter()
            .all(|g| g.granted.total == Some(0) && g.grant == 1));
    }
}
