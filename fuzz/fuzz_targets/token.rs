//! The recharge-success token: any text as a query string is read and verified without a panic;
//! a token read from it, signed again with its own fields, reads back to those fields and
//! verifies for its owner only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use weir::token::{parse_hex_key, Holder, Token, TokenError, TokenKey};

const UE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 3));
const NOW: u64 = 1_800_000_000;

fn key() -> &'static TokenKey {
    static KEY: OnceLock<TokenKey> = OnceLock::new();
    KEY.get_or_init(|| TokenKey::new(b"0123456789abcdef0123456789abcdef").expect("32 bytes"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = parse_hex_key(query) {
        assert_eq!(bytes.len() * 2, query.trim().len());
        assert_eq!(
            TokenKey::new(&bytes).is_ok(),
            bytes.len() >= TokenKey::MIN_LEN
        );
    }
    let Ok(token) = Token::from_query(query) else {
        return;
    };
    let _ = token.verify(
        key(),
        Holder {
            subscriber: "imsi-001010000000003",
            ue: UE,
        },
        NOW,
        600,
    );
    let Some(ue) = token.ue else {
        panic!("a token without a UE address was accepted: {query:?}");
    };
    let signed = key().sign(&token.subscriber, ue, token.expires, &token.nonce);
    let again = Token::from_query(&signed)
        .unwrap_or_else(|e| panic!("{signed:?}, signed from {query:?}, reads as {e:?}"));
    assert_eq!(
        (&again.subscriber, again.ue, again.expires, &again.nonce),
        (&token.subscriber, token.ue, token.expires, &token.nonce)
    );
    let now = token.expires.saturating_sub(1);
    if token.expires > 0 {
        assert_eq!(
            again.verify(
                key(),
                Holder {
                    subscriber: &token.subscriber,
                    ue
                },
                now,
                600
            ),
            Ok(())
        );
        let other = format!("{}x", token.subscriber);
        assert_eq!(
            again.verify(
                key(),
                Holder {
                    subscriber: &other,
                    ue
                },
                now,
                600
            ),
            Err(TokenError::OtherSubscriber)
        );
    }
});
