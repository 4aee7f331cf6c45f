//! Each `weir ctl` command as calls to `weir.v1.Gateway`.
//!
//! Rule changes are RARs (`ReAuth`) on the session the subscriber names, exactly as a policy
//! engine would send them: the gateway applies each rule it can and reports the others, which
//! are printed and make the command fail. A redirect is a rule with Redirect-Information, so
//! forcing one installs such a rule and lifting removes the rules the session's redirect state
//! names.

use super::client::{Client, Target};
use super::table;
use super::{CtlArgs, CtlCommand, CtlError, Gate, RuleCommand};
use std::time::Duration;
use weir::proto::v1 as pb;

/// Origin-Host of the operator's RARs, in the gateway's log.
const ORIGIN_HOST: &str = "weir-ctl";
/// The dynamic rule `weir ctl redirect --url` installs.
pub const REDIRECT_RULE: &str = "operator-redirect";

pub async fn run(args: &CtlArgs) -> Result<(), CtlError> {
    if let CtlCommand::Events {
        follow: false,
        count: None,
        timeout: None,
        ..
    } = args.command
    {
        return Err(CtlError::Usage(
            "events are a live stream: add --follow (until interrupted), --count N or \
             --timeout SECONDS"
                .into(),
        ));
    }
    let target = Target::from_args(args)?;
    let streaming = matches!(args.command, CtlCommand::Events { .. });
    let mut client = target.connect(streaming).await?;
    let json = args.json;
    match &args.command {
        CtlCommand::Sessions => sessions(&target, &mut client, json).await,
        CtlCommand::Session { subscriber } => {
            let s = get(&target, &mut client, subscriber).await?;
            print_session(&s, json);
            Ok(())
        }
        CtlCommand::Rule(RuleCommand::Install {
            subscriber,
            predefined,
            name,
            precedence,
            flow,
            rating_group,
            monitoring_key,
            gate,
        }) => {
            let mut install = pb::ChargingRuleInstall {
                charging_rule_name: predefined.clone(),
                ..Default::default()
            };
            if let Some(name) = name {
                install
                    .charging_rule_definition
                    .push(pb::ChargingRuleDefinition {
                        charging_rule_name: name.clone(),
                        flow_information: flow
                            .iter()
                            .map(|d| pb::FlowInformation {
                                flow_description: d.clone(),
                                flow_direction: pb::FlowDirection::Bidirectional as i32,
                            })
                            .collect(),
                        flow_status: Some(flow_status(*gate) as i32),
                        precedence: *precedence,
                        rating_group: *rating_group,
                        monitoring_key: monitoring_key.clone().unwrap_or_default(),
                        ..Default::default()
                    });
            }
            if install.charging_rule_name.is_empty() && install.charging_rule_definition.is_empty()
            {
                return Err(CtlError::Usage(
                    "name predefined rules, or define one with --name, --precedence and --flow"
                        .into(),
                ));
            }
            let mut names = install.charging_rule_name.clone();
            names.extend(name.iter().cloned());
            let rar = pb::ReAuthRequest {
                charging_rule_install: vec![install],
                ..Default::default()
            };
            reauth(&target, &mut client, subscriber, rar, json).await?;
            if !json {
                println!("installed {} for {subscriber}", names.join(", "));
            }
            Ok(())
        }
        CtlCommand::Rule(RuleCommand::Remove { subscriber, name }) => {
            let rar = pb::ReAuthRequest {
                charging_rule_remove: vec![pb::ChargingRuleRemove {
                    charging_rule_name: vec![name.clone()],
                    ..Default::default()
                }],
                ..Default::default()
            };
            reauth(&target, &mut client, subscriber, rar, json).await?;
            if !json {
                println!("removed {name} for {subscriber}");
            }
            Ok(())
        }
        CtlCommand::Redirect {
            subscriber,
            rule,
            url,
        } => {
            let install = match (rule, url) {
                (Some(rule), _) => pb::ChargingRuleInstall {
                    charging_rule_name: vec![rule.clone()],
                    ..Default::default()
                },
                (None, Some(url)) => pb::ChargingRuleInstall {
                    charging_rule_definition: vec![redirect_rule(url)],
                    ..Default::default()
                },
                (None, None) => {
                    return Err(CtlError::Usage("give --rule NAME or --url URL".into()))
                }
            };
            let rar = pb::ReAuthRequest {
                charging_rule_install: vec![install],
                ..Default::default()
            };
            reauth(&target, &mut client, subscriber, rar, false).await?;
            let s = get(&target, &mut client, subscriber).await?;
            report_redirect(&s, json)
        }
        CtlCommand::Lift { subscriber } => lift(&target, &mut client, subscriber, json).await,
        CtlCommand::Events {
            count,
            timeout,
            subscriber,
            ..
        } => {
            events(
                &target,
                &mut client,
                subscriber.as_deref(),
                *count,
                timeout.map(Duration::from_secs),
                json,
            )
            .await
        }
        CtlCommand::Stats => {
            let stats = client
                .get_stats(pb::GetStatsRequest {})
                .await
                .map_err(|s| target.status(s, None))?
                .into_inner();
            if json {
                println!("{}", table::json(&stats, "weir.v1.GatewayStats", true));
            } else {
                print!("{}", table::stats(&stats));
            }
            Ok(())
        }
    }
}

fn flow_status(gate: Gate) -> pb::FlowStatus {
    match gate {
        Gate::Enabled => pb::FlowStatus::Enabled,
        Gate::Uplink => pb::FlowStatus::EnabledUplink,
        Gate::Downlink => pb::FlowStatus::EnabledDownlink,
        Gate::Disabled => pb::FlowStatus::Disabled,
    }
}

/// Every HTTP request of the subscriber answered with a 302 to `url`.
fn redirect_rule(url: &str) -> pb::ChargingRuleDefinition {
    pb::ChargingRuleDefinition {
        charging_rule_name: REDIRECT_RULE.into(),
        flow_information: vec![pb::FlowInformation {
            flow_description: "permit out ip from any to assigned".into(),
            flow_direction: pb::FlowDirection::Bidirectional as i32,
        }],
        precedence: Some(1),
        redirect_information: Some(pb::RedirectInformation {
            redirect_support: pb::RedirectSupport::RedirectionEnabled as i32,
            redirect_address_type: pb::RedirectAddressType::Url as i32,
            redirect_server_address: url.into(),
        }),
        ..Default::default()
    }
}

fn selector(subscriber: &str) -> Option<pb::SessionSelector> {
    Some(pb::SessionSelector {
        key: Some(pb::session_selector::Key::SubscriberId(subscriber.into())),
    })
}

async fn get(
    target: &Target,
    client: &mut Client,
    subscriber: &str,
) -> Result<pb::GatewaySession, CtlError> {
    Ok(client
        .get_session(pb::GatewayGetSessionRequest {
            session: selector(subscriber),
        })
        .await
        .map_err(|s| target.status(s, Some(subscriber)))?
        .into_inner())
}

fn print_session(s: &pb::GatewaySession, json: bool) {
    if json {
        println!("{}", table::json(s, "weir.v1.GatewaySession", true));
    } else {
        print!("{}", table::session(s));
    }
}

async fn sessions(target: &Target, client: &mut Client, json: bool) -> Result<(), CtlError> {
    let mut all = pb::GatewayListSessionsResponse::default();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_sessions(pb::GatewayListSessionsRequest {
                page_size: 1000,
                page_token,
            })
            .await
            .map_err(|s| target.status(s, None))?
            .into_inner();
        all.sessions.extend(page.sessions);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if json {
        println!(
            "{}",
            table::json(&all, "weir.v1.GatewayListSessionsResponse", true)
        );
    } else {
        print!("{}", table::sessions(&all.sessions));
    }
    Ok(())
}

/// A RAR on the subscriber's session; rules the gateway could not install are an error (with
/// each named), the others stay installed. `print_answer` prints the RAA (for `--json`).
async fn reauth(
    target: &Target,
    client: &mut Client,
    subscriber: &str,
    mut rar: pb::ReAuthRequest,
    print_answer: bool,
) -> Result<pb::ReAuthAnswer, CtlError> {
    let session = get(target, client, subscriber).await?;
    rar.session_id = session.session_id;
    rar.origin_host = ORIGIN_HOST.into();
    let answer = client
        .re_auth(rar)
        .await
        .map_err(|s| target.status(s, Some(subscriber)))?
        .into_inner();
    if answer.result_code == pb::ResultCode::DiameterUnknownSessionId as i32 {
        // Ended between the two calls.
        return Err(CtlError::NoSession(subscriber.into()));
    }
    if !answer.charging_rule_report.is_empty() {
        let mut msg = String::from("rules not installed:");
        for r in &answer.charging_rule_report {
            let code =
                pb::RuleFailureCode::try_from(r.rule_failure_code).map_or("?", |c| c.as_str_name());
            msg.push_str(&format!(
                "\n  {}: {code}: {}",
                r.charging_rule_name.join(","),
                r.detail
            ));
        }
        return Err(CtlError::Refused(msg));
    }
    if print_answer {
        println!("{}", table::json(&answer, "weir.v1.ReAuthAnswer", true));
    }
    Ok(answer)
}

/// Prints the redirect state after a change: the session's JSON, or one line.
fn report_redirect(s: &pb::GatewaySession, json: bool) -> Result<(), CtlError> {
    if json {
        print_session(s, true);
        return Ok(());
    }
    match &s.redirect {
        Some(r) if r.redirected => println!(
            "{} redirected to {} ({} {})",
            s.subscriber_id,
            r.redirect_server_address,
            table::cause(r.cause),
            r.source
        ),
        _ => println!("{} not redirected", s.subscriber_id),
    }
    Ok(())
}

async fn lift(
    target: &Target,
    client: &mut Client,
    subscriber: &str,
    json: bool,
) -> Result<(), CtlError> {
    // A session may hold several redirect rules; the state names the one in force. Each
    // removal uncovers the next, and a session holds at most 256 rules.
    for _ in 0..256 {
        let s = get(target, client, subscriber).await?;
        let Some(r) = s.redirect.as_ref().filter(|r| r.redirected) else {
            return report_redirect(&s, json);
        };
        if r.cause != pb::RedirectCause::PccRule as i32 {
            return Err(CtlError::Refused(format!(
                "{subscriber} is redirected by the charging system's Final-Unit-Action ({}): \
                 it is lifted when the charging system grants credit again, not by removing a rule",
                r.source
            )));
        }
        let rar = pb::ReAuthRequest {
            charging_rule_remove: vec![pb::ChargingRuleRemove {
                charging_rule_name: vec![r.source.clone()],
                ..Default::default()
            }],
            ..Default::default()
        };
        reauth(target, client, subscriber, rar, false).await?;
    }
    Err(CtlError::Refused(format!(
        "{subscriber} is still redirected after removing 256 rules"
    )))
}

async fn events(
    target: &Target,
    client: &mut Client,
    subscriber: Option<&str>,
    count: Option<u64>,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), CtlError> {
    let watch = async {
        let mut stream = client
            .watch_events(pb::WatchEventsRequest {
                subscriber_id: subscriber.unwrap_or_default().into(),
            })
            .await
            .map_err(|s| target.status(s, None))?
            .into_inner();
        let mut seen = 0u64;
        while count.is_none_or(|n| seen < n) {
            let Some(event) = stream.message().await.map_err(|s| target.status(s, None))? else {
                return Err(target.unreachable("the gateway ended the event stream"));
            };
            if json {
                println!("{}", table::json(&event, "weir.v1.GatewayEvent", false));
            } else {
                println!("{}", table::event(&event));
            }
            seen += 1;
        }
        Ok(())
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, watch).await.unwrap_or(Ok(())),
        None => watch.await,
    }
}
