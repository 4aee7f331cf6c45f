//! The captive-portal API (RFC 8908): a client that learnt the API's URI from DHCP option 114 or
//! the IPv6 RA option (RFC 8910) asks whether it is captive and where to sign in, before any
//! probe of its own is redirected.
//!
//! `captive` comes from the policy engine: true while one of the client's sessions is held by
//! the redirect, or, with no session known there, while its balance is zero or less. Without a
//! policy engine, or for a client the configuration does not name, the portal cannot tell and
//! answers true, which sends the client to the recharge page, where the page says what it
//! knows. `seconds-remaining` and `bytes-remaining` are left out: the store holds a balance in
//! money, not time or volume left.

use super::{client, Portal};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// Where the API is served.
pub(super) const API_PATH: &str = "/captive-portal/api";
/// RFC 8908 §3.
const CONTENT_TYPE: &str = "application/captive+json";

impl Portal {
    async fn captive(&self, sub: Option<&str>) -> bool {
        let (Some(admin), Some(sub)) = (&self.admin, sub) else {
            return true;
        };
        match admin.redirected(sub).await {
            Ok(Some(redirected)) => redirected,
            Ok(None) => match admin.account(sub).await {
                Ok(a) => a.balance <= 0,
                Err(_) => true,
            },
            Err(e) => {
                tracing::warn!(subscriber = %sub, error = %e, "captive state unknown");
                true
            }
        }
    }
}

pub(super) async fn api(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let ue = client(addr);
    let sub = portal.subscriber_of(ue).map(str::to_string);
    let captive = portal.captive(sub.as_deref()).await;
    let portal_url = match &portal.site.captive.user_portal_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("portal.invalid");
            let scheme = if portal.site.captive.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}/recharge")
        }
    };
    let mut body = serde_json::json!({
        "captive": captive,
        "user-portal-url": portal_url,
    });
    if let Some(v) = &portal.site.captive.venue_info_url {
        body["venue-info-url"] = serde_json::Value::String(v.clone());
    }
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    // RFC 8908 §5: the answer is the client's own; caches must not share it.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    r
}
