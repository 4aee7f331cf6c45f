//! The recharge-success token, shared by the portal (which signs) and the success watch (which
//! verifies): HMAC-SHA256 with a key both hold, over the subscriber id, the UE address, an expiry
//! and a nonce.
//!
//! A leaf below `policy`: the configuration validates the key once, into a [`TokenKey`], and
//! everything after it holds that value; nothing here knows the configuration.
//!
//! The token travels as query parameters of the success URL, each percent-encoded:
//! `?sub=imsi-001010000000001&ue=10.45.0.3&exp=1767225600&nonce=9f2c…&sig=<64 hex digits>`.
//! Keeping the fields readable lets an operator see from a log line whose token it was; only the
//! signature is opaque. Verification never allocates and compares the signature in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt::Write as _;
use std::net::IpAddr;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation: a signature made for anything else with the same key never verifies here.
const CONTEXT: &[u8] = b"weir-recharge-success-v1";
/// A signature in hex.
const SIG_HEX_LEN: usize = 64;
/// Longest nonce accepted: keeps the replay table's entries small.
pub const MAX_NONCE_LEN: usize = 32;

/// The key shared with the portal. At least 16 bytes.
#[derive(Clone)]
pub struct TokenKey {
    /// The key itself: compared when a reload decides whether the key changed, and the seed of
    /// the SYN-cookie secret when none is configured.
    bytes: std::sync::Arc<[u8]>,
    mac: HmacSha256,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &TokenKey) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for TokenKey {}

/// The key is shorter than 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a token key needs at least 16 bytes, got {0}")]
pub struct KeyTooShort(pub usize);

impl TokenKey {
    pub const MIN_LEN: usize = 16;

    pub fn new(key: &[u8]) -> Result<TokenKey, KeyTooShort> {
        if key.len() < Self::MIN_LEN {
            return Err(KeyTooShort(key.len()));
        }
        // HMAC takes keys of any length; only the length check above can refuse one.
        let mac = HmacSha256::new_from_slice(key).map_err(|_| KeyTooShort(key.len()))?;
        Ok(TokenKey {
            bytes: key.into(),
            mac,
        })
    }

    /// A key written in hex, as the configuration holds it; the message says what is wrong.
    pub fn from_hex(text: &str) -> Result<TokenKey, String> {
        TokenKey::new(&parse_hex_key(text)?).map_err(|e| e.to_string())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a key has at least [`TokenKey::MIN_LEN`] bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn signer(&self, subscriber: &str, ue: IpAddr, expires: u64, nonce: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        // Length-prefixed fields: no two different field lists sign the same bytes.
        mac.update(CONTEXT);
        for field in [subscriber.as_bytes(), nonce.as_bytes()] {
            mac.update(&(field.len() as u32).to_be_bytes());
            mac.update(field);
        }
        match ue {
            IpAddr::V4(a) => mac.update(&a.to_ipv6_mapped().octets()),
            IpAddr::V6(a) => mac.update(&a.octets()),
        }
        mac.update(&expires.to_be_bytes());
        mac
    }

    /// Signs a token; returns the query string (without `?`) to append to the success URL.
    pub fn sign(&self, subscriber: &str, ue: IpAddr, expires: u64, nonce: &str) -> String {
        let sig = self
            .signer(subscriber, ue, expires, nonce)
            .finalize()
            .into_bytes();
        let mut q = String::new();
        q.push_str("sub=");
        q.extend(percent_encoding::utf8_percent_encode(
            subscriber,
            percent_encoding::NON_ALPHANUMERIC,
        ));
        // Writing to a String cannot fail.
        let _ = write!(q, "&ue={ue}&exp={expires}&nonce=");
        q.extend(percent_encoding::utf8_percent_encode(
            nonce,
            percent_encoding::NON_ALPHANUMERIC,
        ));
        q.push_str("&sig=");
        for b in sig.iter() {
            let _ = write!(q, "{b:02x}");
        }
        q
    }

    /// Checks the signature only.
    fn signature_ok(&self, t: &Token<'_>) -> bool {
        let mut raw = [0u8; SIG_HEX_LEN / 2];
        if t.sig.len() != SIG_HEX_LEN || !decode_hex(t.sig.as_bytes(), &mut raw) {
            return false;
        }
        let Some(ue) = t.ue else { return false };
        self.signer(t.subscriber.as_ref(), ue, t.expires, t.nonce.as_ref())
            .verify_slice(&raw)
            .is_ok()
    }
}

/// Why a token was refused. Each is a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenError {
    /// A field is missing or unreadable.
    Malformed,
    /// The signature does not match: not made with our key.
    Forged,
    Expired,
    /// Signed for a different subscriber or UE address than the one presenting it.
    OtherSubscriber,
    /// The nonce was already used.
    Replayed,
}

impl TokenError {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Forged => "forged",
            TokenError::Expired => "expired",
            TokenError::OtherSubscriber => "other_subscriber",
            TokenError::Replayed => "replayed",
        }
    }
}

/// Who presents a token: the subscriber and the UE address it must have been signed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub subscriber: &'a str,
    pub ue: IpAddr,
}

/// A token read from a query string. Fields borrow from the query where no decoding was needed.
#[derive(Debug, Default)]
pub struct Token<'q> {
    pub subscriber: std::borrow::Cow<'q, str>,
    pub ue: Option<IpAddr>,
    pub expires: u64,
    pub nonce: std::borrow::Cow<'q, str>,
    pub sig: &'q str,
}

impl<'q> Token<'q> {
    /// Reads the token fields from a query string (`a=b&c=d`, with or without a leading `?`).
    pub fn from_query(query: &'q str) -> Result<Token<'q>, TokenError> {
        let mut t = Token::default();
        let (mut sub, mut exp, mut nonce) = (false, false, false);
        for pair in query.trim_start_matches('?').split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = || percent_encoding::percent_decode_str(value).decode_utf8();
            match name {
                "sub" => {
                    t.subscriber = decoded().map_err(|_| TokenError::Malformed)?;
                    sub = true;
                }
                "ue" => {
                    let v = decoded().map_err(|_| TokenError::Malformed)?;
                    t.ue = Some(v.parse().map_err(|_| TokenError::Malformed)?);
                }
                "exp" => {
                    t.expires = value.parse().map_err(|_| TokenError::Malformed)?;
                    exp = true;
                }
                "nonce" => {
                    t.nonce = decoded().map_err(|_| TokenError::Malformed)?;
                    nonce = true;
                }
                "sig" => t.sig = value,
                _ => {}
            }
        }
        if !(sub && exp && nonce && t.ue.is_some())
            || t.sig.is_empty()
            || t.nonce.is_empty()
            || t.nonce.len() > MAX_NONCE_LEN
        {
            return Err(TokenError::Malformed);
        }
        Ok(t)
    }

    /// Verifies signature, expiry and owner; the caller checks the nonce against replays.
    /// `now` and `max_age` are in seconds since the Unix epoch and seconds.
    pub fn verify(
        &self,
        key: &TokenKey,
        holder: Holder<'_>,
        now: u64,
        max_age: u64,
    ) -> Result<(), TokenError> {
        let Holder { subscriber, ue } = holder;
        if !key.signature_ok(self) {
            return Err(TokenError::Forged);
        }
        // A token valid for longer than the configured age was not minted under this policy.
        if self.expires <= now || self.expires > now.saturating_add(max_age) {
            return Err(TokenError::Expired);
        }
        if self.subscriber != subscriber || self.ue != Some(ue) {
            return Err(TokenError::OtherSubscriber);
        }
        Ok(())
    }
}

fn decode_hex(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != out.len() * 2 {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
            return false;
        };
        *o = hi << 4 | lo;
    }
    true
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses a hex key as written in the configuration.
pub fn parse_hex_key(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return Err("a hex key needs an even number of digits".to_string());
    }
    let mut out = vec![0; text.len() / 2];
    if !decode_hex(text.as_bytes(), &mut out) {
        return Err("a hex key may contain only 0-9 and a-f".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }
    const UE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));

    fn holder(subscriber: &str, ue: IpAddr) -> Holder<'_> {
        Holder { subscriber, ue }
    }

    #[test]
    fn signed_token_verifies_for_its_owner_only() {
        let q = key().sign("imsi-001010000000003", UE, 1_000, "n1");
        let t = Token::from_query(&q).unwrap();
        assert_eq!(
            t.verify(&key(), holder("imsi-001010000000003", UE), 900, 300),
            Ok(())
        );
        assert_eq!(
            t.verify(&key(), holder("imsi-001010000000004", UE), 900, 300),
            Err(TokenError::OtherSubscriber)
        );
        let other_ue = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 4));
        assert_eq!(
            t.verify(&key(), holder("imsi-001010000000003", other_ue), 900, 300),
            Err(TokenError::OtherSubscriber)
        );
    }

    #[test]
    fn expired_and_too_long_lived_tokens_are_refused() {
        let q = key().sign("imsi-1", UE, 1_000, "n1");
        let t = Token::from_query(&q).unwrap();
        assert_eq!(
            t.verify(&key(), holder("imsi-1", UE), 1_000, 300),
            Err(TokenError::Expired)
        );
        assert_eq!(
            t.verify(&key(), holder("imsi-1", UE), 600, 300),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampering_with_any_field_is_forgery() {
        let q = key().sign("nai-alice@example.net", UE, 1_000, "n1");
        for (from, to) in [("exp=1000", "exp=1001"), ("n1", "n2"), ("alice", "alicf")] {
            let changed = q.replace(from, to);
            let t = Token::from_query(&changed).unwrap();
            assert_eq!(
                t.verify(&key(), holder(&t.subscriber, UE), 900, 300),
                Err(TokenError::Forged),
                "{from}"
            );
        }
        let other = TokenKey::new(b"another key of 16+ bytes").unwrap();
        let t = Token::from_query(&q).unwrap();
        assert_eq!(
            t.verify(&other, holder("nai-alice@example.net", UE), 900, 300),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn missing_fields_are_malformed() {
        assert!(Token::from_query("sub=a&ue=1.2.3.4&exp=5&sig=00").is_err());
        assert!(Token::from_query("").is_err());
        assert!(Token::from_query("sub=a&ue=x&exp=5&nonce=n&sig=00").is_err());
    }

    #[test]
    fn short_keys_and_bad_hex_are_refused() {
        assert_eq!(TokenKey::new(b"short").unwrap_err(), KeyTooShort(5));
        assert!(parse_hex_key("abc").is_err());
        assert!(parse_hex_key("zz").is_err());
        assert_eq!(parse_hex_key("00ff").unwrap(), vec![0, 255]);
    }
}
