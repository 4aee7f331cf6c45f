//! What a hash flood costs: inserting and then looking up flow keys crafted to collide under
//! FxHash, next to random keys, in a table hashed with FxHash and in one hashed with ahash's
//! randomly keyed `RandomState` (what the flow table, the fragment table and the watch use).
//!
//! How the keys are crafted: FxHash folds each word of the key into its state as
//! `h = (h + w) * K`, so the hash of a `FlowKey` (written as ue and remote, each u128 as two
//! u64, then `ports = ue_port | remote_port << 16 | protocol << 32`) is linear in its words:
//! `h = ue_lo·K⁵ + ue_hi·K⁴ + remote_lo·K³ + remote_hi·K² + ports·K (mod 2⁶⁴)`, then rotated.
//! K is odd, hence invertible modulo 2⁶⁴: for any pair of ports,
//! `remote_lo = c − ports·K⁻²` gives every key the same hash.
//! Everything varied is what a sender on the internet chooses for packets towards a UE: the
//! interface id of its IPv6 source (one /64 is enough), its source port and the destination
//! port.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use weir::packet::FlowKey;

/// Keys per table: the flood of a few thousand packets.
const KEYS: usize = 4096;
/// FxHash's multiplier (rustc-hash 2, 64-bit).
const K: u64 = 0xf1357aea2e62a9c5;

/// The inverse of an odd number modulo 2⁶⁴ (Newton's iteration; each step doubles the bits).
fn inverse(k: u64) -> u64 {
    let mut x = k;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(k.wrapping_mul(x)));
    }
    x
}

const UE: u128 = 0x2001_0db8_0045_0001_0000_0000_0000_0002;
const REMOTE_PREFIX: u64 = 0x2001_0db8_cafe_0000;

fn crafted(n: usize) -> Vec<FlowKey> {
    let k2_inv = inverse(K.wrapping_mul(K));
    (0..n)
        .map(|i| {
            let ue_port = 1024 + (i % 60_000) as u16;
            let remote_port = 443 + (i / 60_000) as u16;
            let ports = u64::from(ue_port) | u64::from(remote_port) << 16 | 6 << 32;
            let remote_lo = 0x1234_5678_9abc_def0u64.wrapping_sub(ports.wrapping_mul(k2_inv));
            FlowKey {
                ue: UE,
                remote: (u128::from(REMOTE_PREFIX) << 64) | u128::from(remote_lo),
                ue_port,
                remote_port,
                protocol: 6,
            }
        })
        .collect()
}

/// Keys as ordinary traffic makes them (a small deterministic generator: no dependency).
fn random(n: usize) -> Vec<FlowKey> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|_| FlowKey {
            ue: UE,
            remote: (u128::from(REMOTE_PREFIX) << 64) | u128::from(next()),
            ue_port: next() as u16,
            remote_port: next() as u16,
            protocol: 6,
        })
        .collect()
}

fn hash_of<S: BuildHasher>(s: &S, k: &FlowKey) -> u64 {
    let mut h = s.build_hasher();
    k.hash(&mut h);
    std::hash::Hasher::finish(&h)
}

/// Inserts every key, then looks every one up: 2 × `keys.len()` operations.
fn insert_and_look_up<S: BuildHasher>(mut map: HashMap<FlowKey, u64, S>, keys: &[FlowKey]) -> u64 {
    for (i, k) in keys.iter().enumerate() {
        map.insert(*k, i as u64);
    }
    keys.iter().map(|k| map.get(k).copied().unwrap_or(0)).sum()
}

fn bench(c: &mut Criterion) {
    let crafted = crafted(KEYS);
    let fx = rustc_hash::FxBuildHasher;
    let first = hash_of(&fx, &crafted[0]);
    assert!(
        crafted.iter().all(|k| hash_of(&fx, k) == first),
        "the crafted keys must collide under FxHash"
    );
    let mut distinct = crafted.clone();
    distinct.sort_by_key(|k| (k.remote, k.ue_port, k.remote_port));
    distinct.dedup();
    assert_eq!(distinct.len(), KEYS, "and be distinct keys");
    let random = random(KEYS);

    let mut group = c.benchmark_group("hash_flood");
    // Per operation: one insert or one lookup.
    group.throughput(Throughput::Elements(2 * KEYS as u64));
    for (name, keys) in [("crafted", &crafted), ("random", &random)] {
        group.bench_function(format!("fx/{name}"), |b| {
            b.iter_batched(
                || HashMap::with_capacity_and_hasher(KEYS, rustc_hash::FxBuildHasher),
                |map| std::hint::black_box(insert_and_look_up(map, keys)),
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("ahash/{name}"), |b| {
            b.iter_batched(
                || HashMap::with_capacity_and_hasher(KEYS, ahash::RandomState::new()),
                |map| std::hint::black_box(insert_and_look_up(map, keys)),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
