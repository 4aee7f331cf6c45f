//! `weir portal`: the recharge server. A redirected subscriber lands on its recharge page (the
//! 302's `Location`), pays with the form, and is sent on to the success URL with a token signed
//! with the key the gateway's success watch verifies — the moment the gateway sees that URL it
//! reports the success (or lifts the redirect itself with `success_action = "local"`).
//!
//! Pages: any path shows the recharge page for the subscriber named by `sub` (or, failing that,
//! the session or `[[subscriber]]` owning the client's address); `POST /recharge/pay` takes the
//! form and answers `303 See Other` to the success URL with the token and the original URL; the
//! success path shows the success page with a link back to the page the subscriber first asked
//! for.
//!
//! With a policy engine (`--policy-engine URL`, else the configuration's `[control]
//! policy_engine`), the payment is credited through `weir.v1.Admin/Recharge` first, with the
//! token's nonce as the payment's reference, and the token is issued only once the policy
//! engine took the money: a payment it refuses or never hears of gets `502 Bad Gateway` and no
//! token, so no subscriber is ever freed by a payment the store does not hold. Without one the
//! portal only signs tokens, and says so when it starts.

use crate::policy::Config;
use crate::proto::v1 as pb;
use crate::redirect::html_escape;
use crate::token::{KeyTooShort, TokenKey};
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::transport::Endpoint;

/// How long connecting to the policy engine may take, and one Recharge call in all: a subscriber
/// waits on the payment page meanwhile.
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

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
}

/// Why a payment was not credited: the page the subscriber sees says it, and no token is issued.
#[derive(Debug, thiserror::Error)]
enum CreditError {
    #[error("cannot reach the policy engine at {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("the policy engine at {url} refused the payment ({:?}): {}", .status.code(), .status.message())]
    Refused { url: String, status: tonic::Status },
}

/// Where payments are credited: the policy engine's `weir.v1.Admin`.
struct Admin {
    url: String,
    uri: tonic::codegen::http::Uri,
}

impl Admin {
    fn new(url: &str) -> Result<Admin, PortalError> {
        let bad = |reason: String| PortalError::PolicyEngine {
            url: url.to_string(),
            reason,
        };
        let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad("the scheme must be http or https".into()));
        }
        if uri.host().is_none_or(str::is_empty) || uri.port_u16().is_none() {
            return Err(bad("a host and a port are required".into()));
        }
        Ok(Admin {
            url: url.to_string(),
            uri,
        })
    }

    /// Credits `amount` to `sub`. One connection per payment: payments are rare, and a fresh
    /// connection finds a restarted policy engine without any reconnect logic.
    async fn recharge(
        &self,
        sub: &str,
        amount: i64,
        reference: &str,
    ) -> Result<pb::RechargeResponse, CreditError> {
        let channel = Endpoint::from(self.uri.clone())
            .connect_timeout(ADMIN_CONNECT_TIMEOUT)
            .timeout(ADMIN_TIMEOUT)
            .connect()
            .await
            .map_err(|source| CreditError::Connect {
                url: self.url.clone(),
                source,
            })?;
        let mut client = pb::admin_client::AdminClient::new(channel);
        client
            .recharge(pb::RechargeRequest {
                subscriber_id: sub.to_string(),
                amount,
                reference: reference.to_string(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| CreditError::Refused {
                url: self.url.clone(),
                status,
            })
    }
}

/// What the portal serves from.
pub struct Portal {
    key: TokenKey,
    success_path: String,
    max_age: Duration,
    /// Subscribers by address, to name the subscriber when the URL does not.
    sessions: Vec<(crate::policy::IpPrefix, String)>,
    /// Where payments are credited; `None`: tokens only.
    admin: Option<Admin>,
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
        Ok(Portal {
            // The configuration validated the key; without one there is nothing to sign with.
            key: r.token_key.clone().ok_or(KeyTooShort(0))?,
            success_path: success.path.clone(),
            max_age: r.token_max_age,
            sessions,
            admin: None,
        })
    }

    /// Credits every payment through the `weir.v1.Admin` service at `url` (`http://host:port`)
    /// before issuing its token.
    pub fn with_policy_engine(mut self, url: &str) -> Result<Portal, PortalError> {
        self.admin = Some(Admin::new(url)?);
        Ok(self)
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

    /// The router; the caller serves it with the client's address as connect info.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(&self.success_path.clone(), get(success))
            .route("/recharge/pay", post(pay))
            .fallback(get(page))
            .with_state(self)
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    portal: Portal,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), PortalError> {
    listener.set_nonblocking(true).map_err(PortalError::Serve)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(PortalError::Serve)?;
    let app = Arc::new(portal).router();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(PortalError::Serve)
}

/// Runs the portal on `addr` until Ctrl-C or SIGTERM, crediting payments at `policy_engine`
/// (else the configuration's `[control] policy_engine`; with neither, tokens only).
pub fn run(
    config: &Config,
    addr: SocketAddr,
    policy_engine: Option<&str>,
) -> Result<(), PortalError> {
    let mut portal = Portal::from_config(config)?;
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

fn esc(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    html_escape(text.as_bytes(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The client's address, without the IPv4-mapped form a dual-stack socket shows.
fn client(addr: SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

#[derive(Deserialize, Default)]
struct PageQuery {
    orig: Option<String>,
    sub: Option<String>,
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn page(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<PageQuery>,
) -> Response {
    let ue = client(addr);
    let sub = q
        .sub
        .filter(|s| !s.is_empty())
        .or_else(|| portal.subscriber_of(ue).map(str::to_string))
        .unwrap_or_default();
    let orig = q.orig.unwrap_or_default();
    let who = if sub.is_empty() {
        format!("the device at {ue}")
    } else {
        esc(&sub)
    };
    let wanted = if orig.is_empty() {
        String::new()
    } else {
        format!(
            "<p>You asked for <code id=\"orig\">{}</code>; you will get there once your balance is topped up.</p>\n",
            esc(&orig)
        )
    };
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Recharge</title></head><body>\n\
<h1>Recharge your balance</h1>\n<p>Subscriber: <strong id=\"subscriber\">{who}</strong></p>\n{wanted}\
<form method=\"post\" action=\"/recharge/pay\">\n\
<input type=\"hidden\" name=\"sub\" value=\"{}\">\n<input type=\"hidden\" name=\"orig\" value=\"{}\">\n\
<label>Amount <select name=\"amount\"><option>5</option><option selected>10</option><option>20</option></select></label>\n\
<button id=\"recharge\" type=\"submit\">Recharge</button>\n</form>\n</body></html>\n",
        esc(&sub),
        esc(&orig),
    );
    no_store(Html(body).into_response())
}

#[derive(Deserialize)]
struct PayForm {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    orig: String,
    #[serde(default)]
    amount: String,
}

async fn pay(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Form(form): Form<PayForm>,
) -> Response {
    let ue = client(addr);
    let sub = if form.sub.is_empty() {
        match portal.subscriber_of(ue) {
            Some(s) => s.to_string(),
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    Html("<p>Unknown subscriber: open the recharge page from your device.</p>"),
                )
                    .into_response()
            }
        }
    } else {
        form.sub
    };
    let nonce = nonce();
    if let Some(admin) = &portal.admin {
        let amount = match form.amount.trim().parse::<i64>() {
            Ok(n) if n > 0 => n,
            _ => {
                return no_store(
                    (
                        StatusCode::BAD_REQUEST,
                        Html(format!(
                            "<p>Invalid amount '{}': a whole number greater than zero.</p>",
                            esc(&form.amount)
                        )),
                    )
                        .into_response(),
                )
            }
        };
        // The token's nonce names the payment in the store, so the pending credit and the
        // success report the gateway sends later point at the same payment.
        match admin.recharge(&sub, amount, &nonce).await {
            Ok(r) => {
                let credit = r.credit.unwrap_or_default();
                tracing::info!(subscriber = %sub, ue = %ue, amount, applied = r.applied,
                    due_at = credit.due_at, "recharge credited at the policy engine");
            }
            Err(e) => {
                tracing::warn!(subscriber = %sub, ue = %ue, amount, error = %e,
                    "recharge not credited; no success token issued");
                let body = format!(
                    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Recharge failed</title></head><body>\n\
<h1 id=\"failed\">Recharge failed</h1>\n<p>The billing system did not confirm your payment, so the \
portal cannot free your browsing yet. Please try again in a moment.</p>\n<p id=\"reason\">{}</p>\n</body></html>\n",
                    esc(&e.to_string())
                );
                return no_store((StatusCode::BAD_GATEWAY, Html(body)).into_response());
            }
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let expires = now + portal.max_age.as_secs();
    let token = portal.key.sign(&sub, ue, expires, &nonce);
    let mut location = format!("{}?{token}", portal.success_path);
    if !form.orig.is_empty() {
        location.push_str("&orig=");
        location.push_str(&enc(&form.orig));
    }
    tracing::info!(subscriber = %sub, ue = %ue, amount = %form.amount, "recharge paid");
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(r)
}

#[derive(Deserialize, Default)]
struct SuccessQuery {
    orig: Option<String>,
    sub: Option<String>,
}

async fn success(Query(q): Query<SuccessQuery>) -> Response {
    let back = match q
        .orig
        .filter(|o| o.starts_with("http://") || o.starts_with("https://"))
    {
        Some(o) => format!(
            "<p><a id=\"continue\" href=\"{}\">Continue to {}</a></p>\n",
            esc(&o),
            esc(&o)
        ),
        None => String::new(),
    };
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Recharge successful</title></head><body>\n\
<h1 id=\"success\">Recharge successful</h1>\n<p>Thank you{}. You can browse again.</p>\n{back}</body></html>\n",
        q.sub.map(|s| format!(", {}", esc(&s))).unwrap_or_default()
    );
    no_store(Html(body).into_response())
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
