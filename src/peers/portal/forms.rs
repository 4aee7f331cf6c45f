//! The payment form's protections: a form token bound to the subscriber and the device, which
//! is also the payment's idempotency key, and the refusal of posts from other sites.
//!
//! The page hands out `key` (a fresh nonce: the payment's reference in the store, so a double
//! submit is credited once), `exp` and `form`, an HMAC over subscriber, UE address, `exp` and
//! `key`. It is the success token's construction under a key derived from the token key for
//! forms alone, so a form token never verifies as a success token (or back), and the checks are
//! the token module's own.

use crate::token::{Holder, Token, TokenError, TokenKey};
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use std::net::IpAddr;

/// How long a page's form may be submitted after it was shown.
pub(super) const FORM_MAX_AGE: u64 = 30 * 60;
const FORM_CONTEXT: &[u8] = b"weir-portal-form-v1";

/// The key form tokens are signed with: derived from the token key, never equal to it.
pub(super) fn form_key(token_key: &TokenKey) -> TokenKey {
    // HMAC takes keys of any length, and its 32-byte output is a valid TokenKey.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(FORM_CONTEXT);
    let derived = mac.finalize().into_bytes();
    TokenKey::new(&derived).unwrap_or_else(|_| unreachable!("32 bytes is above the minimum"))
}

/// The hidden fields of one page's form.
pub(super) struct Issued {
    pub key: String,
    pub exp: u64,
    pub sig: String,
}

pub(super) fn issue(form_key: &TokenKey, sub: &str, ue: IpAddr, now: u64) -> Issued {
    let key = super::nonce();
    let exp = now + FORM_MAX_AGE;
    let query = form_key.sign(sub, ue, exp, &key);
    // `sign` ends its query with `&sig=` and the hex signature.
    let sig = query
        .rsplit_once("&sig=")
        .map(|(_, s)| s.to_string())
        .unwrap_or_default();
    Issued { key, exp, sig }
}

/// Verifies a posted form token for `sub` from `ue`.
pub(super) fn verify(
    form_key: &TokenKey,
    sub: &str,
    ue: IpAddr,
    key: &str,
    exp: u64,
    sig: &str,
    now: u64,
) -> Result<(), TokenError> {
    if key.is_empty() || key.len() > crate::token::MAX_NONCE_LEN || sig.is_empty() {
        return Err(TokenError::Malformed);
    }
    let token = Token {
        subscriber: Cow::Borrowed(sub),
        ue: Some(ue),
        expires: exp,
        nonce: Cow::Borrowed(key),
        sig,
    };
    token.verify(
        form_key,
        Holder {
            subscriber: sub,
            ue,
        },
        now,
        FORM_MAX_AGE,
    )
}

/// Where a post comes from, as the browser says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// No `Origin` or `Sec-Fetch-Site`: not a browser's form post (curl, a script).
    NotBrowser,
    /// A browser, from a page of this portal.
    SameSite,
    /// A browser, from a page of another site.
    CrossSite,
}

/// Reads `Origin` (its host against `Host`) and `Sec-Fetch-Site`.
pub(super) fn origin(headers: &HeaderMap) -> Origin {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if fetch_site.is_none() && origin.is_none() {
        return Origin::NotBrowser;
    }
    // `same-site` is another host of the same registrable domain: still not this portal.
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Origin::CrossSite;
    }
    if let Some(o) = origin {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // `null` (a sandboxed frame, a no-referrer page) names no site: not ours.
        let from = o.split_once("://").map(|(_, h)| h).unwrap_or("");
        if from.is_empty() || !from.eq_ignore_ascii_case(host) {
            return Origin::CrossSite;
        }
    }
    Origin::SameSite
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const UE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn a_form_token_verifies_for_its_subscriber_and_device_only() {
        let fk = form_key(&key());
        let f = issue(&fk, "imsi-1", UE, 1000);
        assert_eq!(
            verify(&fk, "imsi-1", UE, &f.key, f.exp, &f.sig, 1000),
            Ok(())
        );
        assert_eq!(
            verify(&fk, "imsi-2", UE, &f.key, f.exp, &f.sig, 1000),
            Err(TokenError::Forged)
        );
        let other = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 4));
        assert_eq!(
            verify(&fk, "imsi-1", other, &f.key, f.exp, &f.sig, 1000),
            Err(TokenError::Forged)
        );
        assert_eq!(
            verify(&fk, "imsi-1", UE, &f.key, f.exp, &f.sig, f.exp),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&fk, "imsi-1", UE, "", f.exp, &f.sig, 1000),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_form_token_is_never_a_success_token() {
        let k = key();
        let fk = form_key(&k);
        assert_ne!(fk.as_bytes(), k.as_bytes());
        let f = issue(&fk, "imsi-1", UE, 1000);
        let as_success = format!(
            "sub=imsi-1&ue={UE}&exp={}&nonce={}&sig={}",
            f.exp, f.key, f.sig
        );
        let t = Token::from_query(&as_success).unwrap();
        assert_eq!(
            t.verify(
                &k,
                Holder {
                    subscriber: "imsi-1",
                    ue: UE
                },
                1000,
                FORM_MAX_AGE
            ),
            Err(TokenError::Forged)
        );
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn posts_are_told_apart_by_origin() {
        assert_eq!(
            origin(&headers(&[("host", "portal.example")])),
            Origin::NotBrowser
        );
        let same = [
            ("host", "portal.example"),
            ("origin", "http://portal.example"),
        ];
        assert_eq!(origin(&headers(&same)), Origin::SameSite);
        let evil = [
            ("host", "portal.example"),
            ("origin", "http://evil.example"),
        ];
        assert_eq!(origin(&headers(&evil)), Origin::CrossSite);
        let null = [("host", "portal.example"), ("origin", "null")];
        assert_eq!(origin(&headers(&null)), Origin::CrossSite);
        let fetch = [("host", "portal.example"), ("sec-fetch-site", "cross-site")];
        assert_eq!(origin(&headers(&fetch)), Origin::CrossSite);
        let sibling = [("host", "portal.example"), ("sec-fetch-site", "same-site")];
        assert_eq!(origin(&headers(&sibling)), Origin::CrossSite);
        let ok = [
            ("host", "portal.example"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(origin(&headers(&ok)), Origin::SameSite);
    }
}
