//! The recharge page and the payment: who the subscriber is, what its plan offers, and the
//! checks a payment passes before anything is credited (a known subscriber, a form from this
//! portal's page for this subscriber and device, an amount offered), in that order.

use super::admin::AdminError;
use super::forms::{self, Origin};
use super::pages::{self, esc, RechargeView};
use super::receipts::Receipt;
use super::site::{FormToken, Offer};
use super::{client, enc, no_store, now_secs, Portal};
use crate::token::TokenError;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What the store says of a subscriber.
pub(super) struct Account {
    /// `None` without a policy engine.
    pub balance: Option<i64>,
    pub pending: i64,
    pub offer: Offer,
}

/// Why a subscriber's account could not be shown.
pub(super) enum Lookup {
    Unknown,
    Unreachable,
    Refused,
}

impl Lookup {
    fn of(e: &AdminError) -> Lookup {
        if e.is_unknown_subscriber() {
            Lookup::Unknown
        } else if e.is_unreachable() {
            Lookup::Unreachable
        } else {
            Lookup::Refused
        }
    }

    fn status_and_text(&self) -> (StatusCode, &'static str) {
        match self {
            Lookup::Unknown => (StatusCode::NOT_FOUND, "error_unknown_subscriber"),
            Lookup::Unreachable => (StatusCode::SERVICE_UNAVAILABLE, "error_store_unreachable"),
            Lookup::Refused => (StatusCode::BAD_GATEWAY, "error_refused"),
        }
    }
}

impl Portal {
    /// The subscriber's balance and offers: from the policy engine's store, else (tokens only)
    /// the site's offers for a subscriber the configuration names.
    pub(super) async fn lookup(&self, sub: &str) -> Result<Account, Lookup> {
        let Some(admin) = &self.admin else {
            if !self.configured(sub) {
                return Err(Lookup::Unknown);
            }
            return Ok(Account {
                balance: None,
                pending: 0,
                offer: self.site.offer.clone(),
            });
        };
        let a = admin.account(sub).await.map_err(|e| {
            tracing::warn!(subscriber = %sub, error = %e, "account not read");
            Lookup::of(&e)
        })?;
        let plan = a.plan.unwrap_or_default();
        // The plan's own prices when it states any, else the site's.
        let priced = !plan.recharge_amount.is_empty() || !plan.currency.is_empty();
        let site = &self.site.offer;
        let offer = Offer {
            amounts: if plan.recharge_amount.is_empty() {
                site.amounts.clone()
            } else {
                plan.recharge_amount
            },
            currency: if priced {
                plan.currency
            } else {
                site.currency.clone()
            },
            minor_units: if priced {
                plan.minor_units
            } else {
                site.minor_units
            },
        };
        Ok(Account {
            balance: Some(a.balance),
            pending: a.pending_credit.iter().map(|c| c.amount).sum(),
            offer,
        })
    }

    fn who_html(&self, sub: &str, ue: IpAddr) -> String {
        if sub.is_empty() {
            self.site
                .text
                .html("unknown_device", &[("address", &esc(&ue.to_string()))])
        } else {
            esc(&self.site.show_subscriber(sub))
        }
    }

    /// The recharge page for `sub`, with `error` above it; a fresh form when the account was
    /// read.
    async fn recharge_page(
        &self,
        sub: &str,
        ue: IpAddr,
        orig: &str,
        error: Option<(StatusCode, &'static str)>,
        selected: Option<i64>,
    ) -> Response {
        let mut view = RechargeView {
            subscriber: sub,
            who_html: self.who_html(sub, ue),
            orig,
            balance: None,
            pending: 0,
            offer: self.site.offer.clone(),
            selected,
            form: None,
            error: error.map(|(_, e)| e),
        };
        let mut status = error.map_or(StatusCode::OK, |(s, _)| s);
        if sub.is_empty() {
            view.error = Some("error_unknown_subscriber");
        } else {
            match self.lookup(sub).await {
                Ok(a) => {
                    view.balance = a.balance;
                    view.pending = a.pending;
                    view.offer = a.offer;
                    view.form = Some(forms::issue(&self.form_key, sub, ue, now_secs()));
                }
                Err(e) => {
                    let (s, text) = e.status_and_text();
                    status = error.map_or(s, |(s, _)| s);
                    view.error = Some(text);
                }
            }
        }
        let body = pages::recharge(&self.site, &view);
        no_store((status, Html(body)).into_response())
    }
}

#[derive(Deserialize, Default)]
pub(super) struct PageQuery {
    orig: Option<String>,
    sub: Option<String>,
}

pub(super) async fn page(
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
    portal.recharge_page(&sub, ue, &orig, None, None).await
}

pub(super) async fn logo(State(portal): State<Arc<Portal>>) -> Response {
    match &portal.site.logo {
        Some(logo) => {
            let mut r = logo.bytes.clone().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(logo.content_type),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            );
            r
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(super) async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

#[derive(Deserialize)]
pub(super) struct PayForm {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    orig: String,
    #[serde(default)]
    amount: String,
    /// The idempotency key, the form token's expiry and signature (see `forms`).
    #[serde(default)]
    key: String,
    #[serde(default)]
    exp: String,
    #[serde(default)]
    form: String,
}

pub(super) async fn pay(
    State(portal): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<PayForm>,
) -> Response {
    let ue = client(addr);
    let now = now_secs();
    let sub = if form.sub.is_empty() {
        portal.subscriber_of(ue).unwrap_or_default().to_string()
    } else {
        form.sub.clone()
    };
    let orig = form.orig.as_str();
    let refuse = |status: StatusCode, text: &'static str| {
        let portal = portal.clone();
        let sub = sub.clone();
        async move {
            portal
                .recharge_page(&sub, ue, orig, Some((status, text)), None)
                .await
        }
    };
    if sub.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "error_unknown_subscriber").await;
    }
    let from = forms::origin(&headers);
    if from == Origin::CrossSite {
        tracing::warn!(subscriber = %sub, ue = %ue, origin = ?headers.get(header::ORIGIN),
            "cross-site payment refused");
        return refuse(StatusCode::FORBIDDEN, "error_cross_site").await;
    }
    // The payment's reference: the form's idempotency key once its token verified; a post
    // without one (allowed only from outside a browser) is a payment of its own.
    let reference = if form.form.is_empty() && form.key.is_empty() {
        if portal.site.form_token == FormToken::Required || from == Origin::SameSite {
            tracing::warn!(subscriber = %sub, ue = %ue, "payment without a form token refused");
            return refuse(StatusCode::FORBIDDEN, "error_cross_site").await;
        }
        super::nonce()
    } else {
        let exp = form.exp.parse::<u64>().unwrap_or(0);
        match forms::verify(&portal.form_key, &sub, ue, &form.key, exp, &form.form, now) {
            Ok(()) => form.key.clone(),
            Err(TokenError::Expired) => {
                return refuse(StatusCode::FORBIDDEN, "error_form_expired").await
            }
            Err(e) => {
                tracing::warn!(subscriber = %sub, ue = %ue, error = e.as_str(),
                    "payment with a bad form token refused");
                return refuse(StatusCode::FORBIDDEN, "error_cross_site").await;
            }
        }
    };
    let account = match portal.lookup(&sub).await {
        Ok(a) => a,
        Err(e) => {
            let (status, text) = e.status_and_text();
            let status = if matches!(e, Lookup::Unknown) {
                StatusCode::BAD_REQUEST
            } else {
                status
            };
            return refuse(status, text).await;
        }
    };
    let amount = match form.amount.trim().parse::<i64>() {
        Ok(n) if n > 0 && account.offer.amounts.contains(&n) => n,
        _ => {
            tracing::info!(subscriber = %sub, ue = %ue, amount = %form.amount, "amount not offered");
            return refuse(StatusCode::BAD_REQUEST, "error_invalid_amount").await;
        }
    };
    let mut receipt = Receipt {
        subscriber: sub.clone(),
        amount,
        balance_after: None,
        pending: false,
        currency: account.offer.currency.clone(),
        minor_units: account.offer.minor_units,
        expires: now + portal.max_age.as_secs(),
    };
    if let Some(admin) = &portal.admin {
        // The reference names the payment in the store, so a second submit of the same form
        // is the same payment, and the success report the gateway sends later points at it.
        match admin.recharge(&sub, amount, &reference).await {
            Ok(r) => {
                let credit = r.credit.unwrap_or_default();
                let balance = r.account.map_or(0, |a| a.balance);
                // A double submit answers with the first payment: that is what was charged.
                receipt.amount = credit.amount;
                receipt.pending = !r.applied;
                receipt.balance_after = Some(balance + if r.applied { 0 } else { credit.amount });
                tracing::info!(subscriber = %sub, ue = %ue, amount = credit.amount, applied = r.applied,
                    due_at = credit.due_at, "recharge credited at the policy engine");
            }
            Err(e) => {
                tracing::warn!(subscriber = %sub, ue = %ue, amount, error = %e,
                    "recharge not credited; no success token issued");
                let (status, text) = if e.is_unreachable() {
                    (StatusCode::SERVICE_UNAVAILABLE, "error_store_unreachable")
                } else {
                    (StatusCode::BAD_GATEWAY, "error_refused")
                };
                return refuse(status, text).await;
            }
        }
    }
    portal.receipts.record(&reference, receipt, now);
    let expires = now + portal.max_age.as_secs();
    let token = portal.key.sign(&sub, ue, expires, &reference);
    let mut location = format!("{}?{token}", portal.success_path);
    if !orig.is_empty() {
        location.push_str("&orig=");
        location.push_str(&enc(orig));
    }
    tracing::info!(subscriber = %sub, ue = %ue, amount, "recharge paid");
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(r)
}
