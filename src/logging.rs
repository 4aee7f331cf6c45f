//! The command line's log output on stderr: human lines or one JSON object a line
//! (`--log-format json`), filtered by `WEIR_LOG` (default `info`); and, for `weir run`, one line
//! per gateway event (session up and down, redirect applied and lifted, rule failure, usage
//! report) with the subscriber and the reason as fields, from the session manager's event feed.

use weir::proto::v1 as pb;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for a terminal or journald.
    #[default]
    Human,
    /// One JSON object a line (timestamp, level, target, fields), for log collectors.
    Json,
}

pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Fields at the top level, so a collector reads `subscriber` and `reason` directly.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Logs every event the session manager announces, on a thread of its own, until the manager
/// stops. A recharge success is not logged here: the control plane logs it as it reports it.
pub fn log_gateway_events(control: &weir::control::Control) {
    let mut events = control.manager().subscribe();
    let spawned = std::thread::Builder::new()
        .name("weir-event-log".into())
        .spawn(move || loop {
            match events.blocking_recv() {
                Ok(e) => log_event(&e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "event log fell behind; events skipped")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the event log; gateway events are not logged");
    }
}

fn log_event(e: &pb::GatewayEvent) {
    use pb::gateway_event::Event as Ev;
    let (subscriber, session) = (&e.subscriber_id, &e.session_id);
    match &e.event {
        Some(Ev::SessionUp(up)) => tracing::info!(
            event = "session_up",
            %subscriber,
            %session,
            ipv4 = %up.framed_ip_address,
            ipv6 = %up.framed_ipv6_prefix,
            "session up"
        ),
        Some(Ev::SessionDown(down)) => tracing::info!(
            event = "session_down",
            %subscriber,
            %session,
            reason = name(pb::TerminationCause::try_from(down.termination_cause).map(|c| c.as_str_name())),
            "session down"
        ),
        Some(Ev::RedirectApplied(r)) => tracing::info!(
            event = "redirect_applied",
            %subscriber,
            %session,
            reason = name(pb::RedirectCause::try_from(r.cause).map(|c| c.as_str_name())),
            source = %r.source,
            "redirect applied"
        ),
        Some(Ev::RedirectLifted(r)) => tracing::info!(
            event = "redirect_lifted",
            %subscriber,
            %session,
            reason = name(pb::RedirectLiftCause::try_from(r.cause).map(|c| c.as_str_name())),
            source = %r.source,
            "redirect lifted"
        ),
        Some(Ev::RuleFailure(r)) => tracing::warn!(
            event = "rule_failure",
            %subscriber,
            %session,
            reason = name(pb::RuleFailureCode::try_from(r.rule_failure_code).map(|c| c.as_str_name())),
            rules = %r.charging_rule_name.join(","),
            detail = %r.detail,
            "rule failure"
        ),
        Some(Ev::UsageReport(u)) => tracing::info!(
            event = "usage_report",
            %subscriber,
            %session,
            monitoring_key = %u.monitoring_key,
            "usage reported"
        ),
        Some(Ev::RechargeSuccess(_)) | None => {}
    }
}

fn name<E>(n: Result<&'static str, E>) -> &'static str {
    n.unwrap_or("UNKNOWN")
}
