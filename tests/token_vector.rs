//! The recharge-success token against signatures computed outside the project, with Python's
//! standard `hmac` module, from the format the README documents byte for byte. A portal written
//! from that description signs tokens the gateway accepts.
//!
//! The first vector was produced by:
//!
//! ```sh
//! python3 -c 'import hmac,hashlib,struct,ipaddress; k=bytes(range(16)); sub=b"imsi-001010000000003"; n=b"9f2c4e1a"; ue=ipaddress.IPv6Address("::ffff:10.45.0.3").packed; m=b"weir-recharge-success-v1"+struct.pack(">I",len(sub))+sub+struct.pack(">I",len(n))+n+ue+struct.pack(">Q",1790000000); print(m.hex()); print(hmac.new(k,m,hashlib.sha256).hexdigest())'
//! ```
//!
//! and the second by the same command with `sub=b"nai-alice@example.net"`, `n=b"n-0001"`,
//! `ipaddress.IPv6Address("2001:db8:45:1::2")` and the expiry `1790000600`.

use std::net::IpAddr;
use weir::token::{Holder, Token, TokenKey};

/// The key: bytes 0x00 to 0x0f (`token_key = "000102030405060708090a0b0c0d0e0f"`).
fn key() -> TokenKey {
    let bytes: Vec<u8> = (0u8..16).collect();
    TokenKey::new(&bytes).unwrap()
}

struct Vector {
    subscriber: &'static str,
    ue: &'static str,
    expires: u64,
    nonce: &'static str,
    /// What Python printed: the signed message, then the signature.
    message_hex: &'static str,
    sig_hex: &'static str,
    /// The query string the portal appends to the success URL.
    query: &'static str,
}

const VECTORS: [Vector; 2] = [
    Vector {
        subscriber: "imsi-001010000000003",
        ue: "10.45.0.3",
        expires: 1_790_000_000,
        nonce: "9f2c4e1a",
        message_hex: "776569722d72656368617267652d737563636573732d763100000014696d73692d3030313031303030303030303030330000000839663263346531610000000000000000\
                      0000ffff0a2d0003000000006ab13b80",
        sig_hex: "34550cc7a0fc64d4102e22eb9b5fdd7b082ecdf7e8049f1b621419b964979d00",
        query: "sub=imsi%2D001010000000003&ue=10.45.0.3&exp=1790000000&nonce=9f2c4e1a\
                &sig=34550cc7a0fc64d4102e22eb9b5fdd7b082ecdf7e8049f1b621419b964979d00",
    },
    Vector {
        subscriber: "nai-alice@example.net",
        ue: "2001:db8:45:1::2",
        expires: 1_790_000_600,
        nonce: "n-0001",
        message_hex: "776569722d72656368617267652d737563636573732d7631000000156e61692d616c696365406578616d706c652e6e6574000000066e2d3030303120010db8004500010000\
                      000000000002000000006ab13dd8",
        sig_hex: "c5f8b835dbaff0688477c1e75402b05eac8f3b36a5b3eff246ea469289e249d3",
        query: "sub=nai%2Dalice%40example%2Enet&ue=2001:db8:45:1::2&exp=1790000600&nonce=n%2D0001\
                &sig=c5f8b835dbaff0688477c1e75402b05eac8f3b36a5b3eff246ea469289e249d3",
    },
];

/// The message as the README lays it out, built here by hand, so the documented layout is
/// the one Python signed.
fn documented_message(v: &Vector) -> String {
    let mut m = b"weir-recharge-success-v1".to_vec();
    for field in [v.subscriber, v.nonce] {
        m.extend_from_slice(&(field.len() as u32).to_be_bytes());
        m.extend_from_slice(field.as_bytes());
    }
    let ue = match v.ue.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    m.extend_from_slice(&ue.octets());
    m.extend_from_slice(&v.expires.to_be_bytes());
    m.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn tokens_match_signatures_computed_outside_the_project() {
    for v in &VECTORS {
        assert_eq!(documented_message(v), v.message_hex, "{}", v.subscriber);
        let ue: IpAddr = v.ue.parse().unwrap();
        let query = key().sign(v.subscriber, ue, v.expires, v.nonce);
        assert_eq!(query, v.query);
        assert!(query.ends_with(&format!("&sig={}", v.sig_hex)));
    }
}

fn holder(subscriber: &str, ue: IpAddr) -> Holder<'_> {
    Holder { subscriber, ue }
}

#[test]
fn the_watch_accepts_a_token_signed_from_the_documentation_alone() {
    for v in &VECTORS {
        let ue: IpAddr = v.ue.parse().unwrap();
        let t = Token::from_query(v.query).unwrap();
        // Valid from any time before its expiry that is within token_max_age (600 s) of it.
        t.verify(&key(), holder(v.subscriber, ue), v.expires - 600, 600)
            .unwrap();
        t.verify(&key(), holder(v.subscriber, ue), v.expires - 1, 600)
            .unwrap();
        assert!(t
            .verify(&key(), holder(v.subscriber, ue), v.expires, 600)
            .is_err());
        // One flipped bit of the signature and it is forged.
        let mut forged = v.query.to_string();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        let t = Token::from_query(&forged).unwrap();
        assert!(t
            .verify(&key(), holder(v.subscriber, ue), v.expires - 1, 600)
            .is_err());
    }
}
