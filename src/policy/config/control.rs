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
        }
    }
}
