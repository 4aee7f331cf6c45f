//! `weir portal`: the recharge server. A redirected subscriber lands on its recharge page (the
//! 302's `Location`), pays with the form, and is sent on to the success URL with a token signed
//! with the key the gateway's success watch verifies — the moment the gateway sees that URL it
//! reports the success (or lifts the redirect itself with `success_action = "local"`).
//!
//! Pages (mobile first, no JavaScript, no external assets; the text from the site's page text,
//! see [`site`]): any path shows the recharge page for the subscriber named by `sub` (or,
//! failing that, the session or `[[subscriber]]` owning the client's address) with its balance
//! and the amounts its plan offers; `POST /recharge/pay` takes the form and answers `303 See
//! Other` to the success URL with the token and the original URL; the success path verifies the
//! token as the gateway's watch does and shows what was charged only for a token this portal
//! issued, once; `GET /captive-portal/api` is the RFC 8908 API.
//!
//! With a policy engine (`--policy-engine URL`, else the configuration's `[control]
//! policy_engine`), the account (balance, plan, prices) comes from `weir.v1.Admin/GetAccount`
//! and the payment is credited through `weir.v1.Admin/Recharge` first, with the form's
//! idempotency key as the payment's reference and the token's nonce, and the token is issued
//! only once the policy engine took the money: a payment it refuses or never hears of gets an
//! error page and no token, so no subscriber is ever freed by a payment the store does not
//! hold. Without one the portal knows only the configuration's subscribers, offers the site's
//! amounts and only signs tokens, and says so when it starts.

mod admin;
mod captive;
mod forms;
mod pages;
mod pay;
mod receipts;
pub mod site;
mod success;
mod tls;

use crate::policy::Config;
use crate::token::{KeyTooShort, TokenKey};
use admin::Admin;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use receipts::Receipts;
use site::Site;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why the portal cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("the configuration has no [redirect] success_url; the portal needs it to send subscribers back")]
    NoSuccessUrl,
    #[error("the configuration has no usable [redirect] token_key: {0}")]
    Key(#[from] KeyTooShort),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("portal server: {0}")]
    Serve(std::io::Error),
    #[error("policy engine address '{url}': {reason} (give it as http://host:port)")]
    PolicyEngine { url: String, reason: String },
    #[error("site file {path}: {reason}")]
    Site { path: PathBuf, reason: String },
    #[error("HTTPS for the captive-portal API ({cert}): {reason}")]
    Tls { cert: PathBuf, reason: String },
}

/// What the portal serves from.
pub struct Portal {
    key: TokenKey,
    /// Signs the payment form's token; derived from `key`, never equal to it.
    form_key: TokenKey,
    success_path: String,
    max_age: Duration,
    /// Subscribers by address, to name the subscriber when the URL does not.
    sessions: Vec<(crate::policy::IpPrefix, String)>,
    /// Where accounts are read and payments credited; `None`: tokens only.
    admin: Option<Admin>,
    site: Site,
    receipts: Receipts,
}

impl Portal {
    pub fn from_config(config: &Config) -> Result<Portal, PortalError> {
        let r = &config.gateway.redirect;
        let success = r.success_url.as_ref().ok_or(PortalError::NoSuccessUrl)?;
        let mut sessions = Vec::new();
        let static_sessions = config
            .sessions
            .iter()
            .map(|s| (&s.subscriber, s.ipv4, s.ipv6));
        // Sessions that come from the policy engine are named by the [[subscriber]] mapping.
        let mapped = config
            .control
            .subscribers
            .iter()
            .map(|m| (&m.subscriber, m.ipv4, m.ipv6));
        for (sub, v4, v6) in static_sessions.chain(mapped) {
            if let Some(v4) = v4 {
                sessions.push((
                    crate::policy::IpPrefix::host(IpAddr::V4(v4)),
                    sub.to_string(),
                ));
            }
            if let Some(v6) = v6 {
                sessions.push((v6, sub.to_string()));
            }
        }
        // The configuration validated the key; without one there is nothing to sign with.
        let key = r.token_key.clone().ok_or(KeyTooShort(0))?;
        Ok(Portal {
            form_key: forms::form_key(&key),
            key,
            success_path: success.path.clone(),
            max_age: r.token_max_age,
            sessions,
            admin: None,
            site: Site::default(),
            receipts: Receipts::default(),
        })
    }

    /// Reads accounts from, and credits every payment through, the `weir.v1.Admin` service at
    /// `url` (`http://host:port`) before issuing its token.
    pub fn with_policy_engine(mut self, url: &str) -> Result<Portal, PortalError> {
        self.admin = Some(Admin::new(url)?);
        Ok(self)
    }

    /// The operator's name, logo, page text and offers.
    pub fn with_site(mut self, site: Site) -> Portal {
        self.site = site;
        self
    }

    /// The policy engine payments are credited at, if any.
    pub fn policy_engine(&self) -> Option<&str> {
        self.admin.as_ref().map(|a| a.url.as_str())
    }

    fn subscriber_of(&self, addr: IpAddr) -> Option<&str> {
        self.sessions
            .iter()
            .find(|(p, _)| p.contains(addr))
            .map(|(_, s)| s.as_str())
    }

    /// Whether the configuration names this subscriber (all a portal without a policy engine
    /// knows).
    fn configured(&self, sub: &str) -> bool {
        self.sessions.iter().any(|(_, s)| s == sub)
    }

    /// The router; the caller serves it with the client's address as connect info.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(&self.success_path.clone(), get(success::success))
            .route("/recharge/pay", post(pay::pay))
            .route(pages::LOGO_PATH, get(pay::logo))
            .route(captive::API_PATH, get(captive::api))
            .route("/favicon.ico", get(pay::not_found))
            .fallback(get(pay::page))
            .with_state(self)
    }
}

/// Serves until `shutdown` resolves: HTTP on `listener`, and HTTPS as well when the site
/// configures a certificate for the captive-portal API.
pub async fn serve(
    portal: Portal,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), PortalError> {
    use axum::serve::ListenerExt as _;
    listener.set_nonblocking(true).map_err(PortalError::Serve)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(PortalError::Serve)?;
    let https = match &portal.site.captive.tls {
        Some(t) => {
            let acceptor = tls::acceptor(t)?;
            let bound = tokio::net::TcpListener::bind(t.listen)
                .await
                .map_err(|source| PortalError::Listen {
                    addr: t.listen,
                    source,
                })?;
            tracing::info!(addr = %t.listen, "recharge portal listening over HTTPS");
            Some(tls::TlsListener::new(bound, acceptor).map_err(PortalError::Serve)?)
        }
        None => None,
    };
    let app = Arc::new(portal).router();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let secure = https.map(|l| {
        // `tap_io` gives the TLS listener the same connect info (the client's address) as TCP.
        let service = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let rx = stopped.clone();
        tokio::spawn(async move {
            axum::serve(l.tap_io(|_| {}), service)
                .with_graceful_shutdown(until(rx))
                .await
        })
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let plain = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(until(stopped))
    .await;
    if let Some(task) = secure {
        match task.await {
            Ok(r) => r.map_err(PortalError::Serve)?,
            Err(e) => return Err(PortalError::Serve(std::io::Error::other(e))),
        }
    }
    plain.map_err(PortalError::Serve)
}

/// Runs the portal on `addr` until Ctrl-C or SIGTERM, crediting payments at `policy_engine`
/// (else the configuration's `[control] policy_engine`; with neither, tokens only), dressed as
/// the site file `site` says (default: the English pages of "Weir").
pub fn run(
    config: &Config,
    addr: SocketAddr,
    policy_engine: Option<&str>,
    site: Option<&std::path::Path>,
) -> Result<(), PortalError> {
    let mut portal = Portal::from_config(config)?;
    if let Some(path) = site {
        portal = portal.with_site(Site::load(path)?);
        tracing::info!(site = %path.display(), operator = %portal.site.operator, "site loaded");
    }
    match policy_engine.or(config.control.policy_engine.as_deref()) {
        Some(url) => {
            portal = portal.with_policy_engine(url)?;
            tracing::info!(policy_engine = %url, "payments are credited through weir.v1.Admin/Recharge before the success token is issued");
        }
        None => tracing::warn!(
            "no policy engine (--policy-engine or [control] policy_engine): payments are credited nowhere, the portal only signs success tokens"
        ),
    }
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| PortalError::Listen { addr, source })?;
    tracing::info!(%addr, "recharge portal listening");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PortalError::Serve)?;
    runtime.block_on(serve(portal, listener, shutdown_signal()))
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The client's address, without the IPv4-mapped form a dual-stack socket shows.
fn client(addr: SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// 16 random bytes in hex, from the kernel.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Without the kernel's randomness fall back to time and a counter: still unique, which is
        // all a nonce must be (the signature, not the nonce, is the secret part).
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as u64;
        bytes[..8].copy_from_slice(&t.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
