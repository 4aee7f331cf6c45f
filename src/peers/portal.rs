//! `weir portal`: the recharge server. A redirected subscriber lands on its recharge page (the
//! 302's `Location`), pays with the form, and is sent on to the success URL with a token signed
//! with the key the gateway's success watch verifies — the moment the gateway sees that URL it
//! lifts the redirect.
//!
//! Pages: any path shows the recharge page for the subscriber named by `sub` (or, failing that,
//! the session owning the client's address); `POST /recharge/pay` takes the form and answers
//! `303 See Other` to the success URL with the token and the original URL; the success path
//! shows the success page with a link back to the page the subscriber first asked for.

use crate::policy::Config;
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
}

/// What the portal serves from.
pub struct Portal {
    key: TokenKey,
    success_path: String,
    max_age: Duration,
    /// Subscribers by address, to name the subscriber when the URL does not.
    sessions: Vec<(crate::policy::IpPrefix, String)>,
}

impl Portal {
    pub fn from_config(config: &Config) -> Result<Portal, PortalError> {
        let r = &config.gateway.redirect;
        let success = r.success_url.as_ref().ok_or(PortalError::NoSuccessUrl)?;
        let mut sessions = Vec::new();
        for s in &config.sessions {
            if let Some(v4) = s.ipv4 {
                sessions.push((
                    crate::policy::IpPrefix::host(IpAddr::V4(v4)),
                    s.subscriber.to_string(),
                ));
            }
            if let Some(v6) = s.ipv6 {
                sessions.push((v6, s.subscriber.to_string()));
            }
        }
        Ok(Portal {
            // The configuration validated the key; without one there is nothing to sign with.
            key: r.token_key.clone().ok_or(KeyTooShort(0))?,
            success_path: success.path.clone(),
            max_age: r.token_max_age,
            sessions,
        })
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

/// Runs the portal on `addr` until Ctrl-C or SIGTERM.
pub fn run(config: &Config, addr: SocketAddr) -> Result<(), PortalError> {
    let portal = Portal::from_config(config)?;
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let expires = now + portal.max_age.as_secs();
    let nonce = nonce();
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
