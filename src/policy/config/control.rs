//! The `[control]` table and `[[subscriber]]` entries: where `weir run` serves weir.v1.Gateway,
//! which policy engine it asks for sessions (Gx), what a subscriber's packets do while that
//! answer is on its way, and how a UE address is named in CCR-I.

use crate::policy::flow::IpPrefix;
use crate::policy::model::SubscriberId;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// What a subscriber's packets do while its session is being fetched (CCR-I in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingAction {
    /// Kept in a small bounded queue per subscriber and released in order once the session is
    /// in force (then enforced like any other packet); what does not fit is dropped, counted.
    Hold,
    /// Forwarded unenforced and unmetered, counted.
    Forward,
    /// Dropped, counted.
    Drop,
}

/// The data path's side of sessions that come from a policy engine (the workers read it from
/// the snapshot's settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSettings {
    pub action: PendingAction,
    /// Packets held per subscriber (1-64).
    pub queue: usize,
    /// Subscribers pending at once per worker (1-65536); a packet of one more is dropped.
    pub subscribers: usize,
    /// How long a pending subscriber waits for its session before its held packets are dropped
    /// and its next packet asks again.
    pub timeout: Duration,
}

impl Default for PendingSettings {
    fn default() -> Self {
        PendingSettings {
            action: PendingAction::Hold,
            queue: 8,
            subscribers: 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A UE address's subscriber id for CCR-I (`[[subscriber]]`). An address with no entry is
/// named by itself: `private-10.45.0.9` (or `private-2001:db8:45:9::/64` for its /64).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberMapping {
    pub subscriber: SubscriberId,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<IpPrefix>,
}

/// TLS for a gRPC server: its certificate chain and key (PEM), and — when set — the CA whose
/// client certificates it requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// TLS for a gRPC client: the CA that signs the server's certificate, and — for client
/// certificate authentication — its own certificate and key (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry; default the endpoint's host.
    pub domain: Option<String>,
}

/// The `[control]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlSettings {
    /// Where weir.v1.Gateway is served; `None` turns the server off. Default 127.0.0.1:50052.
    pub listen: Option<SocketAddr>,
    /// The ReAuth endpoint given to the policy engine in CCR-I; default `http://` + listen.
    pub advertise: Option<String>,
    /// Origin-Host of the gateway's requests.
    pub origin_host: String,
    /// The policy engine's weir.v1.PolicyEngine endpoint (`http://host:port`); `None`: sessions
    /// come only from the file and the operator API.
    pub policy_engine: Option<String>,
    /// How long one request to the policy engine may take.
    pub request_timeout: Duration,
    /// First and largest wait between retries of a request that failed to reach the policy
    /// engine (a recharge-success report, CCR-T).
    pub retry_backoff: Duration,
    pub retry_max_backoff: Duration,
    /// A session with no packet for this long ends with CCR-T (Termination-Cause
    /// DIAMETER_SESSION_TIMEOUT).
    pub session_idle_timeout: Duration,
    /// Static address -> subscriber id mapping for CCR-I.
    pub subscribers: Vec<SubscriberMapping>,
    pub tls: Option<ServerTls>,
    pub policy_engine_tls: Option<ClientTls>,
    /// The charging system's weir.v1.ChargingSystem endpoint (Gy); `None`: online rating
    /// groups are not charged (the `[credit]` pending action applies to them for good).
    pub charging_system: Option<String>,
    pub charging_system_tls: Option<ClientTls>,
    /// How the Gy client talks to the charging system (the `[credit]` table).
    pub credit: CreditControlSettings,
}

/// Credit-Control-Failure-Handling (RFC 4006 §8.14): what the gateway does when the charging
/// system cannot be reached. Numbered as the AVP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureHandling {
    /// TERMINATE (0): the session ends once a request has timed out (its report is kept).
    Terminate,
    /// CONTINUE (1): the session goes on, granted locally, while reports wait to be delivered.
    Continue,
    /// RETRY_AND_TERMINATE (2): the request is retried; the session ends when every retry
    /// failed.
    RetryAndTerminate,
}

/// The Gy client's side of the `[credit]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditControlSettings {
    /// Tx: how long one request to the charging system may take.
    pub request_timeout: Duration,
    /// Attempts of one request before the failure handling applies (1 = no retry).
    pub attempts: u32,
    /// First and largest wait between attempts.
    pub retry_backoff: Duration,
    pub retry_max_backoff: Duration,
    /// Until a charging system's answer says otherwise for its session.
    pub failure_handling: FailureHandling,
    /// Octets granted locally per rating group under CONTINUE while the charging system is
    /// unreachable (metered and reported once it is back).
    pub continue_octets: u64,
    /// The journal of requests with used units not yet answered; `None`: kept in memory only
    /// (lost if the gateway stops before the charging system is back).
    pub journal: Option<PathBuf>,
}

impl Default for CreditControlSettings {
    fn default() -> Self {
        CreditControlSettings {
            request_timeout: Duration::from_secs(5),
            attempts: 3,
            retry_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(30),
            failure_handling: FailureHandling::Terminate,
            continue_octets: 10_000_000,
            journal: None,
        }
    }
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 50052))),
            advertise: None,
            origin_host: "weir.gateway".into(),
            policy_engine: None,
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(30),
            session_idle_timeout: Duration::from_secs(300),
            subscribers: Vec::new(),
            tls: None,
            policy_engine_tls: None,
            charging_system: None,
            charging_system_tls: None,
            credit: CreditControlSettings::default(),
        }
    }
}

use super::reader::{Ctx, Fields, Value};
use std::net::IpAddr;

const CONTROL_KEYS: &[&str] = &[
    "listen",
    "advertise",
    "origin_host",
    "policy_engine",
    "request_timeout",
    "retry_backoff",
    "retry_max_backoff",
    "session_idle_timeout",
    "pending_action",
    "pending_queue",
    "pending_subscribers",
    "pending_timeout",
    "tls",
    "policy_engine_tls",
    "charging_system",
    "charging_system_tls",
];

/// The longest wait or timeout of `[control]`, in seconds (a day).
const MAX_CONTROL_SECS: i128 = 86_400;

fn secs(n: i128) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

/// An `http://host:port` or `https://host:port` endpoint (the form tonic dials).
fn check_endpoint(text: &str) -> Result<(), String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| format!("'{text}' must be an http:// or https:// URL with a port"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let port = authority.rsplit_once(':').map(|(_, p)| p);
    match port.map(str::parse::<u16>) {
        Some(Ok(p)) if p != 0 && !authority.starts_with(':') => Ok(()),
        _ => Err(format!(
            "'{text}' needs a host and a port, e.g. http://127.0.0.1:50051"
        )),
    }
}

fn read_path(ctx: &mut Ctx<'_>, f: &Fields<'_, '_>, key: &str, required: bool) -> Option<PathBuf> {
    let got = if required {
        f.required_str(ctx, key)
    } else {
        f.str(ctx, key)
    };
    let (text, span) = got?;
    if text.is_empty() {
        ctx.error(span.start, &f.path(key), "a file path must not be empty");
        return None;
    }
    Some(PathBuf::from(text))
}

fn read_server_tls(ctx: &mut Ctx<'_>, value: &Value<'_>) -> Option<ServerTls> {
    let before = ctx.error_count();
    let f = Fields::new(
        ctx,
        value,
        "control.tls".into(),
        &["cert", "key", "client_ca"],
    )?;
    let cert = read_path(ctx, &f, "cert", true);
    let key = read_path(ctx, &f, "key", true);
    let client_ca = read_path(ctx, &f, "client_ca", false);
    (ctx.error_count() == before).then_some(ServerTls {
        cert: cert?,
        key: key?,
        client_ca,
    })
}

fn read_client_tls(ctx: &mut Ctx<'_>, value: &Value<'_>, path: &str) -> Option<ClientTls> {
    let before = ctx.error_count();
    let f = Fields::new(ctx, value, path.into(), &["ca", "cert", "key", "domain"])?;
    let ca = read_path(ctx, &f, "ca", true);
    let cert = read_path(ctx, &f, "cert", false);
    let key = read_path(ctx, &f, "key", false);
    if cert.is_some() != key.is_some() {
        ctx.error(
            f.span.start,
            &f.path,
            "cert and key go together (client certificate authentication needs both)",
        );
    }
    let domain = f.str(ctx, "domain").map(|(d, _)| d.to_string());
    (ctx.error_count() == before).then_some(ClientTls {
        ca: ca?,
        cert,
        key,
        domain,
    })
}

/// Reads the `[control]` table; `None` if anything in it was wrong (all of it reported). The
/// pending settings come back only when a policy engine is configured.
pub(super) fn read_control(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
) -> Option<(ControlSettings, Option<PendingSettings>)> {
    let before = ctx.error_count();
    let f = Fields::new(ctx, value, "control".to_string(), CONTROL_KEYS)?;
    let mut c = ControlSettings::default();
    if let Some((text, span)) = f.str(ctx, "listen") {
        if text.is_empty() {
            c.listen = None;
        } else {
            match text.parse::<SocketAddr>() {
                Ok(a) => c.listen = Some(a),
                Err(_) => ctx.error(
                    span.start,
                    &f.path("listen"),
                    format!("'{text}' is not an address and port such as 127.0.0.1:50052 (\"\" turns the server off)"),
                ),
            }
        }
    }
    if let Some((text, span)) = f.str(ctx, "advertise") {
        match check_endpoint(text) {
            Ok(()) => c.advertise = Some(text.to_string()),
            Err(m) => ctx.error(span.start, &f.path("advertise"), m),
        }
    }
    if let Some((text, span)) = f.str(ctx, "origin_host") {
        if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            ctx.error(
                span.start,
                &f.path("origin_host"),
                "an Origin-Host is 1-255 printable ASCII characters without spaces",
            );
        } else {
            c.origin_host = text.to_string();
        }
    }
    if let Some((text, span)) = f.str(ctx, "policy_engine") {
        match check_endpoint(text) {
            Ok(()) => c.policy_engine = Some(text.to_string()),
            Err(m) => ctx.error(span.start, &f.path("policy_engine"), m),
        }
    }
    if let Some(n) = f.int(ctx, "request_timeout", 1, MAX_CONTROL_SECS) {
        c.request_timeout = secs(n);
    }
    if let Some(n) = f.int(ctx, "retry_backoff", 0, MAX_CONTROL_SECS) {
        c.retry_backoff = secs(n);
    }
    if let Some(n) = f.int(ctx, "retry_max_backoff", 1, MAX_CONTROL_SECS) {
        c.retry_max_backoff = secs(n);
    }
    if c.retry_max_backoff < c.retry_backoff {
        ctx.error(
            f.span.start,
            &f.path("retry_max_backoff"),
            format!(
                "retry_max_backoff ({} s) must be at least retry_backoff ({} s)",
                c.retry_max_backoff.as_secs(),
                c.retry_backoff.as_secs()
            ),
        );
    }
    if let Some(n) = f.int(ctx, "session_idle_timeout", 1, MAX_CONTROL_SECS * 7) {
        c.session_idle_timeout = secs(n);
    }
    let mut p = PendingSettings::default();
    let actions = [
        ("hold", PendingAction::Hold),
        ("forward", PendingAction::Forward),
        ("drop", PendingAction::Drop),
    ];
    if let Some(a) = f.choice(ctx, "pending_action", &actions) {
        p.action = a;
    }
    if let Some(n) = f.int(ctx, "pending_queue", 1, 64) {
        p.queue = usize::try_from(n).unwrap_or(1);
    }
    if let Some(n) = f.int(ctx, "pending_subscribers", 1, 65_536) {
        p.subscribers = usize::try_from(n).unwrap_or(1);
    }
    if let Some(n) = f.int(ctx, "pending_timeout", 1, 600) {
        p.timeout = secs(n);
    }
    if c.policy_engine.is_none() {
        for key in [
            "pending_action",
            "pending_queue",
            "pending_subscribers",
            "pending_timeout",
            "policy_engine_tls",
        ] {
            if let Some(v) = f.get(key) {
                ctx.error(
                    v.span().start,
                    &f.path(key),
                    format!("{key} applies only with a policy_engine"),
                );
            }
        }
    }
    if let Some(v) = f.get("tls") {
        c.tls = read_server_tls(ctx, v);
    }
    if let Some(v) = f.get("policy_engine_tls") {
        c.policy_engine_tls = read_client_tls(ctx, v, "control.policy_engine_tls");
    }
    if let Some((text, span)) = f.str(ctx, "charging_system") {
        match check_endpoint(text) {
            Ok(()) => c.charging_system = Some(text.to_string()),
            Err(m) => ctx.error(span.start, &f.path("charging_system"), m),
        }
    }
    if let Some(v) = f.get("charging_system_tls") {
        if c.charging_system.is_none() && f.get("charging_system").is_none() {
            ctx.error(
                v.span().start,
                &f.path("charging_system_tls"),
                "charging_system_tls applies only with a charging_system",
            );
        }
        c.charging_system_tls = read_client_tls(ctx, v, "control.charging_system_tls");
    }
    let pending = c.policy_engine.is_some().then_some(p);
    (ctx.error_count() == before).then_some((c, pending))
}

/// Reads `[[subscriber]]` entries (the address -> subscriber id mapping for CCR-I): each names a
/// subscriber and an IPv4 address, an IPv6 prefix or both, none of them twice.
pub(super) fn read_subscribers(ctx: &mut Ctx<'_>, items: &[Value<'_>]) -> Vec<SubscriberMapping> {
    let mut out: Vec<SubscriberMapping> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("subscriber[{i}]");
        let Some(f) = Fields::new(ctx, item, path.clone(), &["subscriber", "ipv4", "ipv6"]) else {
            continue;
        };
        let before = ctx.error_count();
        let subscriber = f.required_str(ctx, "subscriber").and_then(|(s, span)| {
            SubscriberId::parse(s)
                .map_err(|m| ctx.error(span.start, &f.path("subscriber"), m))
                .ok()
                .map(|id| (id, span.start))
        });
        let ipv4 = f.str(ctx, "ipv4").and_then(|(s, span)| match s.parse() {
            Ok(a) => Some((a, span.start)),
            Err(_) => {
                ctx.error(
                    span.start,
                    &f.path("ipv4"),
                    format!("'{s}' is not an IPv4 address"),
                );
                None
            }
        });
        let ipv6 = f
            .str(ctx, "ipv6")
            .and_then(|(s, span)| match IpPrefix::parse(s, true) {
                Ok(p) if matches!(p.addr, IpAddr::V6(_)) => Some((p, span.start)),
                _ => {
                    ctx.error(
                        span.start,
                        &f.path("ipv6"),
                        format!("'{s}' is not an IPv6 prefix"),
                    );
                    None
                }
            });
        if f.get("ipv4").is_none() && f.get("ipv6").is_none() {
            ctx.error(
                f.span.start,
                &path,
                "a subscriber entry needs an ipv4 address, an ipv6 prefix, or both",
            );
        }
        if let Some((id, at)) = &subscriber {
            if let Some(j) = out.iter().position(|m| &m.subscriber == id) {
                ctx.error(
                    *at,
                    &f.path("subscriber"),
                    format!("{id} is already mapped at subscriber[{j}]"),
                );
            }
        }
        if let Some((a, at)) = ipv4 {
            if let Some(m) = out.iter().find(|m| m.ipv4 == Some(a)) {
                let message = format!("{a} is already mapped to {}", m.subscriber);
                ctx.error(at, &f.path("ipv4"), message);
            }
        }
        if let Some((p, at)) = ipv6 {
            if let Some(m) = out
                .iter()
                .find(|m| m.ipv6.is_some_and(|q: IpPrefix| q.overlaps(&p)))
            {
                let message = format!("{p} overlaps the prefix of {}", m.subscriber);
                ctx.error(at, &f.path("ipv6"), message);
            }
        }
        if let (Some((id, _)), true) = (subscriber, ctx.error_count() == before) {
            out.push(SubscriberMapping {
                subscriber: id,
                ipv4: ipv4.map(|(a, _)| a),
                ipv6: ipv6.map(|(p, _)| p),
            });
        }
    }
    out
}

impl ControlSettings {
    /// The subscriber id CCR-I names for a UE address: its `[[subscriber]]` entry, else
    /// `private-<address>` (`private-<prefix>/64` for an IPv6 address).
    pub fn subscriber_for(&self, ue: IpAddr) -> SubscriberMapping {
        let found = self.subscribers.iter().find(|m| match ue {
            IpAddr::V4(a) => m.ipv4 == Some(a),
            IpAddr::V6(_) => m.ipv6.is_some_and(|p| p.contains(ue)),
        });
        if let Some(m) = found {
            return m.clone();
        }
        match ue {
            IpAddr::V4(a) => SubscriberMapping {
                subscriber: SubscriberId {
                    kind: crate::policy::model::SubscriptionIdType::EndUserPrivate,
                    data: a.to_string(),
                },
                ipv4: Some(a),
                ipv6: None,
            },
            IpAddr::V6(_) => {
                // 64 is within an IPv6 address's width, so `new` cannot refuse it.
                let p = IpPrefix::new(ue, 64).unwrap_or(IpPrefix::host(ue));
                SubscriberMapping {
                    subscriber: SubscriberId {
                        kind: crate::policy::model::SubscriptionIdType::EndUserPrivate,
                        data: p.to_string(),
                    },
                    ipv4: None,
                    ipv6: Some(p),
                }
            }
        }
    }

    /// The ReAuth endpoint given in CCR-I.
    pub fn reauth_endpoint(&self) -> String {
        match (&self.advertise, self.listen) {
            (Some(a), _) => a.clone(),
            (None, Some(l)) => format!("http://{l}"),
            (None, None) => String::new(),
        }
    }
}
