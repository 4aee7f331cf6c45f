//! The success page: it says a recharge succeeded only for a token the gateway's watch would
//! accept (the token module's checks: signature, expiry, the device presenting it) whose
//! payment this portal recorded and has not shown before. Anything else gets a page saying the
//! recharge was not confirmed, with the way back.

use super::receipts::Missing;
use super::{client, enc, no_store, now_secs, pages, Portal};
use crate::token::{Holder, Token, TokenError};
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Deserialize, Default)]
pub(super) struct SuccessQuery {
    orig: Option<String>,
}

pub(super) async fn success(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<SuccessQuery>,
    RawQuery(raw): RawQuery,
) -> Response {
    let ue = client(addr);
    let raw = raw.unwrap_or_default();
    let parsed = Token::from_query(&raw);
    let checked = parsed.as_ref().map_err(|e| *e).and_then(|t| {
        // The device's subscriber when the configuration names it, as the watch holds it;
        // else the token's own, which the signature covers.
        let subscriber = portal.subscriber_of(ue).unwrap_or(&t.subscriber);
        t.verify(
            &portal.key,
            Holder { subscriber, ue },
            now_secs(),
            portal.max_age.as_secs(),
        )
    });
    let reason = match (&parsed, checked) {
        (Ok(t), Ok(())) => match portal.receipts.show(&t.nonce) {
            Ok(receipt) if receipt.subscriber == t.subscriber => {
                tracing::info!(subscriber = %t.subscriber, ue = %ue, "success page shown");
                let body = pages::success(&portal.site, &receipt, q.orig.as_deref());
                return no_store(Html(body).into_response());
            }
            Ok(_) => "reason_forged",
            Err(Missing::Shown) => "reason_replayed",
            Err(Missing::Unknown) => "reason_unknown",
        },
        (_, Err(TokenError::Malformed)) => "reason_missing",
        (_, Err(TokenError::Forged)) => "reason_forged",
        (_, Err(TokenError::Expired)) => "reason_expired",
        (_, Err(TokenError::OtherSubscriber)) => "reason_other_device",
        (_, Err(TokenError::Replayed)) => "reason_replayed",
        // `checked` is Ok only when `parsed` is.
        (Err(_), Ok(())) => "reason_missing",
    };
    tracing::info!(ue = %ue, reason, "success link not confirmed");
    let mut back = String::from("/recharge");
    let sub = parsed
        .as_ref()
        .ok()
        .map(|t| t.subscriber.to_string())
        .filter(|s| !s.is_empty());
    let mut sep = '?';
    if let Some(sub) = sub {
        back.push_str(&format!("?sub={}", enc(&sub)));
        sep = '&';
    }
    if let Some(o) = q
        .orig
        .filter(|o| o.starts_with("http://") || o.starts_with("https://"))
    {
        back.push_str(&format!("{sep}orig={}", enc(&o)));
    }
    let body = pages::not_confirmed(&portal.site, reason, &back);
    let status = if reason == "reason_missing" {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::FORBIDDEN
    };
    no_store((status, Html(body)).into_response())
}
