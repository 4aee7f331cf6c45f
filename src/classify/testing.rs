//! Random rules and keys for the classifiers' property tests: small address and port pools, so
//! that rules overlap and keys hit them.

use proptest::prelude::*;

use super::{map_v4, mask, Key, Ports, Prefix, Rule};

/// Addresses drawn from a small pool so that rules overlap and keys hit them.
pub fn address() -> impl Strategy<Value = u128> {
    prop_oneof![
        (0u32..4).prop_map(|i| map_v4(0x0a00_0000 | (i << 12) | i)),
        (0u32..4).prop_map(|i| map_v4(0xc0a8_0000 | (i << 4))),
        (0u128..3).prop_map(|i| (0x2001_0db8u128 << 96) | (i << 64) | i),
        any::<u128>(),
    ]
}

pub fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        1 => Just(Prefix::ANY),
        4 => (address(), 0u8..=32).prop_map(|(a, l)| if a >> 32 == 0xffff {
            Prefix::new(a, 96 + l)
        } else {
            Prefix::new(a, l * 4)
        }),
        2 => (address(), 0u8..=128).prop_map(|(a, l)| Prefix::new(a, l)),
    ]
}

pub fn ports() -> impl Strategy<Value = Ports> {
    prop_oneof![
        Just(Ports::ANY),
        (0u16..8).prop_map(|p| Ports { lo: p, hi: p }),
        (0u16..8, 0u16..8).prop_map(|(a, b)| Ports {
            lo: a.min(b),
            hi: a.max(b)
        }),
        Just(Ports {
            lo: 1024,
            hi: u16::MAX
        }),
    ]
}

pub fn rule() -> impl Strategy<Value = Rule> {
    (
        prefix(),
        prefix(),
        ports(),
        ports(),
        prop_oneof![Just(None), Just(Some(6)), Just(Some(17))],
    )
        .prop_map(|(src, dst, src_ports, dst_ports, protocol)| Rule {
            src,
            dst,
            src_ports,
            dst_ports,
            protocol,
        })
}

/// A key near a rule: inside its prefixes but with random host bits, or from the pool.
pub fn key_near(rules: &[Rule], pick: usize, noise: (u128, u128), raw: Key) -> Key {
    if rules.is_empty() || pick % 4 == 3 {
        return raw;
    }
    let r = &rules[pick % rules.len()];
    Key {
        src: r.src.addr | (noise.0 & !mask(r.src.len)),
        dst: r.dst.addr | (noise.1 & !mask(r.dst.len)),
        ..raw
    }
}

pub fn raw_key() -> impl Strategy<Value = Key> {
    (
        address(),
        address(),
        prop_oneof![0u16..10, any::<u16>()],
        prop_oneof![0u16..10, any::<u16>()],
        prop_oneof![Just(6u8), Just(17u8), Just(1u8)],
    )
        .prop_map(|(src, dst, src_port, dst_port, protocol)| Key {
            src,
            dst,
            src_port,
            dst_port,
            protocol,
        })
}
