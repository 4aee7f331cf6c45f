//! What `weir ctl` prints: aligned tables and key-value blocks for a terminal, and the API's
//! messages as proto3 JSON (field names in lowerCamelCase, enums by name, 64-bit integers as
//! strings, default values left out: what grpcurl prints) for scripts.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use std::fmt::Write;
use weir::proto::v1 as pb;

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A message of package `weir.v1` in the proto3 JSON mapping. `name` is its full name.
pub fn json<M: Message>(message: &M, name: &str, pretty: bool) -> String {
    // The descriptors are compiled into the binary from the same .proto files as the types, so
    // decoding them and finding `name` can only fail if the build is broken: say so plainly.
    // Decoded once: `events --follow` prints many.
    static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
            .expect("the weir.v1 descriptors built into this binary decode")
    });
    let descriptor = pool
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is a weir.v1 message"));
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message decodes with its own descriptor");
    let options = SerializeOptions::new();
    let mut out = Vec::new();
    let result = if pretty {
        let mut ser = serde_json::Serializer::pretty(&mut out);
        dynamic.serialize_with_options(&mut ser, &options)
    } else {
        let mut ser = serde_json::Serializer::new(&mut out);
        dynamic.serialize_with_options(&mut ser, &options)
    };
    result.expect("serializing to a Vec cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The rules in force, predefined then dynamic, by name.
pub fn rules(s: &pb::GatewaySession) -> String {
    let names: Vec<&str> = s
        .charging_rule_name
        .iter()
        .map(String::as_str)
        .chain(
            s.charging_rule_definition
                .iter()
                .map(|d| d.charging_rule_name.as_str()),
        )
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

pub fn addresses(s: &pb::GatewaySession) -> String {
    let list: Vec<&str> = [&s.framed_ip_address, &s.framed_ipv6_prefix]
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(String::as_str)
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

/// `no`, or `yes (pcc-rule recharge-redirect)` / `yes (final-unit rg:98)`.
pub fn redirect(s: &pb::GatewaySession) -> String {
    match &s.redirect {
        Some(r) if r.redirected => format!("yes ({} {})", cause(r.cause), r.source),
        _ => "no".into(),
    }
}

pub fn cause(cause: i32) -> &'static str {
    match pb::RedirectCause::try_from(cause) {
        Ok(pb::RedirectCause::PccRule) => "pcc-rule",
        Ok(pb::RedirectCause::FinalUnit) => "final-unit",
        _ => "none",
    }
}

/// Octets up and down over every rating group.
pub fn usage_totals(s: &pb::GatewaySession) -> (u64, u64) {
    s.rating_group_usage
        .iter()
        .filter_map(|r| r.usage.as_ref())
        .fold((0, 0), |(up, down), u| {
            (up + u.uplink_octets, down + u.downlink_octets)
        })
}

pub fn sessions(list: &[pb::GatewaySession]) -> String {
    let mut t = Table::new(&["SUBSCRIBER", "ADDRESSES", "RULES", "REDIRECT", "UP", "DOWN"]);
    for s in list {
        let (up, down) = usage_totals(s);
        t.row(vec![
            s.subscriber_id.clone(),
            addresses(s),
            rules(s),
            redirect(s),
            up.to_string(),
            down.to_string(),
        ]);
    }
    t.render()
}

fn gate(status: Option<i32>) -> &'static str {
    match status.map(pb::FlowStatus::try_from) {
        None | Some(Ok(pb::FlowStatus::Enabled)) => "enabled",
        Some(Ok(pb::FlowStatus::EnabledUplink)) => "uplink",
        Some(Ok(pb::FlowStatus::EnabledDownlink)) => "downlink",
        Some(Ok(pb::FlowStatus::Disabled)) => "disabled",
        Some(Ok(pb::FlowStatus::Removed)) => "removed",
        Some(Err(_)) => "?",
    }
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// One session in full.
pub fn session(s: &pb::GatewaySession) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(out, "{k:<12}{v}");
    };
    line("subscriber", &s.subscriber_id);
    line("session", &s.session_id);
    line("addresses", &addresses(s));
    line("origin", &s.origin);
    line("started", &rfc3339(s.started_at, 0));
    line("redirect", &redirect(s));
    if let Some(r) = s.redirect.as_ref().filter(|r| r.redirected) {
        line("portal", &r.redirect_server_address);
    }
    let triggers: Vec<String> = s
        .event_trigger
        .iter()
        .map(|t| {
            pb::EventTrigger::try_from(*t)
                .map_or_else(|_| t.to_string(), |t| t.as_str_name().to_string())
        })
        .collect();
    line(
        "triggers",
        &if triggers.is_empty() {
            "-".into()
        } else {
            triggers.join(",")
        },
    );
    out.push('\n');
    let mut t = Table::new(&["RULE", "KIND", "PRECEDENCE", "GATE", "RG", "FLOWS"]);
    for name in &s.charging_rule_name {
        t.row(vec![
            name.clone(),
            "predefined".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    for d in &s.charging_rule_definition {
        let flows: Vec<&str> = d
            .flow_information
            .iter()
            .map(|f| f.flow_description.as_str())
            .collect();
        t.row(vec![
            d.charging_rule_name.clone(),
            "dynamic".into(),
            opt(d.precedence),
            gate(d.flow_status).into(),
            opt(d.rating_group),
            flows.join("; "),
        ]);
    }
    out.push_str(&t.render());
    if !s.rating_group_usage.is_empty() || !s.monitoring_key_usage.is_empty() {
        out.push('\n');
        let mut t = Table::new(&[
            "USAGE",
            "UP OCTETS",
            "DOWN OCTETS",
            "UP PACKETS",
            "DOWN PACKETS",
            "GRANT",
        ]);
        let cells = |u: Option<&pb::Usage>| {
            let u = u.cloned().unwrap_or_default();
            [
                u.uplink_octets,
                u.downlink_octets,
                u.uplink_packets,
                u.downlink_packets,
            ]
            .map(|n| n.to_string())
        };
        for r in &s.rating_group_usage {
            let mut row = vec![format!("rg:{}", r.rating_group)];
            row.extend(cells(r.usage.as_ref()));
            row.push("-".into());
            t.row(row);
        }
        for m in &s.monitoring_key_usage {
            let mut row = vec![format!("mk:{}", m.monitoring_key)];
            row.extend(cells(m.usage.as_ref()));
            row.push(
                m.granted_service_unit
                    .as_ref()
                    .and_then(|g| g.cc_total_octets)
                    .map_or_else(|| "-".into(), |n| format!("{n} total")),
            );
            t.row(row);
        }
        out.push_str(&t.render());
    }
    out
}

pub fn stats(s: &pb::GatewayStats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "sessions             {}", s.sessions);
    let _ = writeln!(out, "redirected           {}", s.redirected_sessions);
    let _ = writeln!(out, "snapshot generation  {}", s.snapshot_generation);
    let dropped: u64 = s.events_dropped.values().sum();
    let _ = writeln!(out, "events dropped       {dropped}");
    out.push('\n');
    let mut t = Table::new(&["WORKER", "FRAMES IN", "FRAMES OUT", "FLOWS", "DROPS"]);
    for w in &s.workers {
        let mut drops: Vec<(&String, &u64)> = w.drops.iter().filter(|(_, n)| **n > 0).collect();
        drops.sort();
        let drops: Vec<String> = drops.iter().map(|(k, n)| format!("{k}={n}")).collect();
        t.row(vec![
            w.worker.to_string(),
            w.frames_in.to_string(),
            w.frames_out.to_string(),
            w.flows.to_string(),
            if drops.is_empty() {
                "-".into()
            } else {
                drops.join(",")
            },
        ]);
    }
    out.push_str(&t.render());
    out
}

/// One event on one line: time, subscriber, what, and its details.
pub fn event(e: &pb::GatewayEvent) -> String {
    use pb::gateway_event::Event;
    let what = match &e.event {
        Some(Event::SessionUp(u)) => {
            let s = pb::GatewaySession {
                framed_ip_address: u.framed_ip_address.clone(),
                framed_ipv6_prefix: u.framed_ipv6_prefix.clone(),
                ..Default::default()
            };
            format!("session-up {}", addresses(&s))
        }
        Some(Event::SessionDown(d)) => format!(
            "session-down {}",
            pb::TerminationCause::try_from(d.termination_cause).map_or("?", |c| c.as_str_name())
        ),
        Some(Event::RedirectApplied(r)) => {
            format!("redirect-applied {} {}", cause(r.cause), r.source)
        }
        Some(Event::RedirectLifted(r)) => format!(
            "redirect-lifted {} {}",
            pb::RedirectLiftCause::try_from(r.cause).map_or("?", |c| c.as_str_name()),
            r.source
        ),
        Some(Event::RechargeSuccess(r)) => {
            format!("recharge-success ue={} nonce={}", r.ue_address, r.nonce)
        }
        Some(Event::RuleFailure(r)) => format!(
            "rule-failure {} {} {}",
            r.charging_rule_name.join(","),
            pb::RuleFailureCode::try_from(r.rule_failure_code).map_or("?", |c| c.as_str_name()),
            r.detail
        ),
        Some(Event::UsageReport(u)) => format!(
            "usage-report {} {} octets",
            u.monitoring_key,
            u.used_service_unit
                .as_ref()
                .and_then(|s| s.cc_total_octets)
                .unwrap_or(0)
        ),
        None => "?".into(),
    };
    let secs = e.at_unix_nanos / 1_000_000_000;
    let millis = (e.at_unix_nanos % 1_000_000_000) / 1_000_000;
    format!(
        "{}  {}  {}",
        rfc3339(secs, millis as u32),
        e.subscriber_id,
        what.trim_end()
    )
}

/// Seconds since the Unix epoch as `2026-12-02T06:50:39Z` (with `.123` when `millis` is not 0).
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Days to a civil date (proleptic Gregorian), after H. Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let frac = if millis == 0 {
        String::new()
    } else {
        format!(".{millis:03}")
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_194_239, 123), "2026-12-02T06:50:39.123Z");
    }

    #[test]
    fn columns_are_aligned_and_the_last_is_not_padded() {
        let mut t = Table::new(&["A", "BB", "C"]);
        t.row(vec!["long".into(), "x".into(), "end".into()]);
        assert_eq!(t.render(), "A     BB  C\nlong  x   end\n");
    }

    #[test]
    fn json_is_the_proto3_mapping() {
        let s = pb::GatewaySession {
            session_id: "gw;1;2".into(),
            subscriber_id: "imsi-001010000000007".into(),
            started_at: 5,
            redirect: Some(pb::RedirectState {
                redirected: true,
                cause: pb::RedirectCause::PccRule as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            json(&s, "weir.v1.GatewaySession", false),
            r#"{"sessionId":"gw;1;2","subscriberId":"imsi-001010000000007","redirect":{"redirected":true,"cause":"REDIRECT_CAUSE_PCC_RULE"},"startedAt":"5"}"#
        );
    }
}
