//! SYN cookies for the 302 responder: the SYN-ACK's sequence number proves, when the client's
//! ACK echoes it, that we answered this connection's SYN — without remembering the SYN.
//!
//! A cookie is a SipHash-2-4 of the connection's addresses and ports under a key that changes
//! every [`EPOCH_SECS`] (derived from the configured secret and the epoch number with
//! HMAC-SHA256), with its low three bits carrying the client's MSS class. ACKs are accepted
//! under the current and the previous epoch's key.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long one cookie key is used.
pub const EPOCH_SECS: u64 = 64;

/// MSS classes a cookie can carry; the client's MSS is rounded down to one of them.
pub const MSS_TABLE: [u16; 8] = [536, 1200, 1220, 1280, 1360, 1400, 1440, 1460];

/// The MSS class index for a client's announced MSS (536 when it announced none).
pub fn mss_index(mss: Option<u16>) -> u32 {
    let mss = mss.unwrap_or(536);
    MSS_TABLE.iter().rposition(|m| *m <= mss).unwrap_or(0) as u32
}

/// The connection a cookie is bound to, in the client's orientation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    pub client: u128,
    pub server: u128,
    pub client_port: u16,
    pub server_port: u16,
}

pub struct CookieJar {
    secret: Vec<u8>,
    /// (epoch, SipHash key) for the current and previous epoch.
    keys: [(u64, [u64; 2]); 2],
}

impl CookieJar {
    pub fn new(secret: &[u8]) -> CookieJar {
        let mut jar = CookieJar {
            secret: secret.to_vec(),
            keys: [(u64::MAX, [0; 2]); 2],
        };
        jar.keys[0] = (0, jar.derive(0));
        jar
    }

    fn derive(&self, epoch: u64) -> [u64; 2] {
        // HMAC takes keys of any length: this cannot fail, and derivation runs once an epoch.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return [epoch, !epoch];
        };
        mac.update(b"weir-syn-cookie");
        mac.update(&epoch.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&out[i..i + 8]);
            u64::from_le_bytes(w)
        };
        [word(0), word(8)]
    }

    /// Makes sure the keys of `epoch` and the one before are at hand.
    fn roll(&mut self, epoch: u64) {
        if self.keys[0].0 == epoch {
            return;
        }
        let previous = if self.keys[0].0.wrapping_add(1) == epoch {
            self.keys[0]
        } else {
            (epoch.wrapping_sub(1), self.derive(epoch.wrapping_sub(1)))
        };
        self.keys = [(epoch, self.derive(epoch)), previous];
    }

    fn hash(key: [u64; 2], c: &Conn) -> u32 {
        let mut m = [0u8; 36];
        m[..16].copy_from_slice(&c.client.to_be_bytes());
        m[16..32].copy_from_slice(&c.server.to_be_bytes());
        m[32..34].copy_from_slice(&c.client_port.to_be_bytes());
        m[34..36].copy_from_slice(&c.server_port.to_be_bytes());
        let h = siphash24(key[0], key[1], &m);
        (h ^ (h >> 32)) as u32 & !7
    }

    /// The SYN-ACK sequence number for a connection at `now_secs`.
    pub fn make(&mut self, now_secs: u64, c: &Conn, mss_index: u32) -> u32 {
        let epoch = now_secs / EPOCH_SECS;
        self.roll(epoch);
        Self::hash(self.keys[0].1, c) | (mss_index & 7)
    }

    /// For an ACK whose acknowledgement number is `ack`: how far past our SYN-ACK it reaches
    /// (the MSS class plus the bytes we sent since), if it belongs to a cookie of this or the
    /// previous epoch and is less than `window` past it.
    pub fn check(&mut self, now_secs: u64, c: &Conn, ack: u32, window: u32) -> Option<u32> {
        self.roll(now_secs / EPOCH_SECS);
        self.keys.iter().find_map(|(_, key)| {
            let offset = ack.wrapping_sub(1).wrapping_sub(Self::hash(*key, c));
            (offset < window).then_some(offset)
        })
    }
}

/// SipHash-2-4 (Aumasson and Bernstein, 2012) of `m` under the key (k0, k1).
pub fn siphash24(k0: u64, k1: u64, m: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = m.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let word = u64::from_le_bytes(w);
        v[3] ^= word;
        round(&mut v);
        round(&mut v);
        v[0] ^= word;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = m.len() as u8;
    let word = u64::from_le_bytes(last);
    v[3] ^= word;
    round(&mut v);
    round(&mut v);
    v[0] ^= word;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vector() {
        // The paper's Appendix A: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let m: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(k0, k1, &m), 0xa129_ca61_49be_45e5);
    }

    fn conn() -> Conn {
        Conn {
            client: 1,
            server: 2,
            client_port: 40000,
            server_port: 80,
        }
    }

    #[test]
    fn cookies_survive_one_rotation_but_not_two() {
        let mut jar = CookieJar::new(b"sixteen byte key");
        let c = jar.make(1000, &conn(), 5);
        assert_eq!(c & 7, 5);
        assert_eq!(jar.check(1000, &conn(), c.wrapping_add(1), 8), Some(5));
        assert_eq!(
            jar.check(1000 + EPOCH_SECS, &conn(), c.wrapping_add(1), 8),
            Some(5)
        );
        assert_eq!(
            jar.check(1000 + 2 * EPOCH_SECS, &conn(), c.wrapping_add(1), 8),
            None
        );
        let other = Conn {
            client_port: 40001,
            ..conn()
        };
        assert_eq!(jar.check(1000, &other, c.wrapping_add(1), 8), None);
    }

    #[test]
    fn different_secrets_make_different_cookies() {
        let a = CookieJar::new(b"sixteen byte key").make(0, &conn(), 0);
        let b = CookieJar::new(b"another long key").make(0, &conn(), 0);
        assert_ne!(a, b);
    }

    #[test]
    fn mss_rounds_down() {
        assert_eq!(MSS_TABLE[mss_index(None) as usize], 536);
        assert_eq!(MSS_TABLE[mss_index(Some(1460)) as usize], 1460);
        assert_eq!(MSS_TABLE[mss_index(Some(1300)) as usize], 1280);
        assert_eq!(MSS_TABLE[mss_index(Some(100)) as usize], 536);
        assert_eq!(MSS_TABLE[mss_index(Some(9000)) as usize], 1460);
    }
}
