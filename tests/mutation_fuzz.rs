//! Deterministic mutation fuzzing of the packet path on real frames: every frame of the shipped
//! sample and of the third-party captures, bit-flipped, truncated, extended and with length
//! fields smashed, goes through the whole engine. Nothing may panic, and every frame must get
//! exactly one verdict in the counters.

use std::path::Path;
use std::sync::Arc;
use weir::engine::{Engine, Output, Port, Verdict};
use weir::io::pcap::CaptureReader;
use weir::policy::{Config, PolicySnapshot};
use weir::time::Timestamp;

/// xorshift64*: a fixed seed keeps every run identical, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    match rng.below(6) {
        0 => {
            let i = rng.below(f.len());
            if let Some(b) = f.get_mut(i) {
                *b ^= 1 << rng.below(8);
            }
        }
        1 => f.truncate(rng.below(f.len())),
        2 => {
            for _ in 0..rng.below(64) {
                f.push(rng.next() as u8);
            }
        }
        3 => {
            // Smash bytes where length, version and header-length fields live.
            for at in [12, 13, 14, 16, 17, 18, 19, 20, 24, 38, 46, 54] {
                if rng.below(3) == 0 {
                    if let Some(b) = f.get_mut(at) {
                        *b = rng.next() as u8;
                    }
                }
            }
        }
        4 => {
            let i = rng.below(f.len());
            let n = rng.below(16);
            f.splice(i..i, (0..n).map(|_| rng.next() as u8));
        }
        _ => {
            for _ in 0..8 {
                let i = rng.below(f.len());
                if let Some(b) = f.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
        }
    }
    f
}

fn frames_of(path: &Path) -> Vec<(weir::wire::LinkType, Vec<u8>)> {
    let mut reader =
        CaptureReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        out.push((r.link, r.data));
    }
    out
}

#[test]
fn mutated_real_frames_never_panic_and_always_get_one_verdict() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/weir.toml")).unwrap();
    let config = Config::from_toml_str(&text, "examples/weir.toml").unwrap();
    let snapshot = Arc::new(PolicySnapshot::build(&config, 1));
    let data = root.join("../shared/data/pcap");
    let mut captures = vec![root.join("examples/sample.pcap")];
    for name in [
        "tcpreplay-test.pcap",
        "zeek-wikipedia.pcap",
        "suricata-verify/http-ipv6/input.pcap",
    ] {
        let p = data.join(name);
        assert!(p.exists(), "test data missing: ../shared/data/pcap/{name}");
        captures.push(p);
    }
    let mut rng = Rng(0x5eed_f0ea);
    let mut total = 0u64;
    for path in &captures {
        let frames = frames_of(path);
        let mut engine = Engine::new(snapshot.clone(), frames[0].0);
        let mut out = Output::default();
        let mut verdicts = 0u64;
        for round in 0..40u64 {
            for (i, (_, frame)) in frames.iter().enumerate() {
                let mutated = mutate(&mut rng, frame);
                out.clear();
                let now = Timestamp::from_secs(1_790_000_000 + round * 10 + i as u64 / 100);
                let v = engine.handle_frame(now, Port::Any, &mutated, &mut out);
                if v == Verdict::Inject {
                    assert!(!out.frames.is_empty());
                }
                verdicts += 1;
            }
        }
        let c = engine.counters();
        assert_eq!(c.frames, verdicts, "{}", path.display());
        assert_eq!(
            c.forwarded + c.dropped_total() + c.answered,
            c.frames,
            "{}",
            path.display()
        );
        total += verdicts;
    }
    assert!(total > 10_000, "only {total} frames fuzzed");
}
