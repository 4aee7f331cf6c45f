//! The classic-BPF program that steers a subscriber's frames to the worker that owns the
//! subscriber: AF_PACKET fanout runs it on every received frame and delivers the frame to member
//! `result % members`.
//!
//! It hashes the UE address — the IPv4 source on the UE leg and the destination on the internet
//! leg; for IPv6 the /64 prefix, since a UE owns a whole prefix — with the same function as
//! [`ue_hash`], so both directions of a subscriber reach one worker and code that must place a
//! packet by hand (routed mode) agrees with the kernel. Pure data: building it touches no socket.
//!
//! Where the program reads: the kernel runs fanout programs before the frame's link header is
//! pushed back and after the first VLAN tag has been moved out of the frame, so loads are
//! relative to the network header (`SKF_NET_OFF`) and the ethertype comes from the skb
//! (`SKF_AD_PROTOCOL`); a second (QinQ inner) tag is still in the data and is skipped here.

/// One classic-BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Instruction classes and modes (linux/filter.h); spelled out so the program reads like the
// kernel's documentation of it.
pub const LD: u16 = 0x00;
pub const LDX: u16 = 0x01;
pub const ST: u16 = 0x02;
pub const ALU: u16 = 0x04;
pub const JMP: u16 = 0x05;
pub const RET: u16 = 0x06;
pub const MISC: u16 = 0x07;
pub const W: u16 = 0x00;
pub const H: u16 = 0x08;
pub const IMM: u16 = 0x00;
pub const ABS: u16 = 0x20;
pub const IND: u16 = 0x40;
pub const MEM: u16 = 0x60;
pub const MUL: u16 = 0x20;
pub const RSH: u16 = 0x70;
pub const XOR: u16 = 0xa0;
pub const JA: u16 = 0x00;
pub const JEQ: u16 = 0x10;
pub const K: u16 = 0x00;
pub const X: u16 = 0x08;
pub const A: u16 = 0x10;
pub const TAX: u16 = 0x00;

/// Loads below this offset address the skb's ancillary data, not the frame.
pub const SKF_AD_OFF: i32 = -0x1000;
pub const SKF_AD_PROTOCOL: i32 = 0;
/// Loads at `SKF_NET_OFF + n` read byte `n` of the network header.
pub const SKF_NET_OFF: i32 = -0x100000;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
const ETH_P_8021Q: u32 = 0x8100;
const ETH_P_8021AD: u32 = 0x88a8;
const HASH_MULTIPLIER: u32 = 0x045d_9f3b;

/// Which leg the program runs on decides which address is the UE's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// Frames from the UEs: the UE is the source.
    Ue,
    /// Frames from the internet: the UE is the destination.
    Internet,
}

/// The worker-choosing hash of a UE address; `hash % workers` owns the subscriber. Mixes the
/// high and low halves so consecutive addresses spread over workers.
pub fn ue_hash(addr: std::net::IpAddr) -> u32 {
    let word = match addr {
        std::net::IpAddr::V4(a) => u32::from(a),
        std::net::IpAddr::V6(a) => {
            let o = a.octets();
            u32::from_be_bytes([o[0], o[1], o[2], o[3]])
                ^ u32::from_be_bytes([o[4], o[5], o[6], o[7]])
        }
    };
    mix(word)
}

fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(HASH_MULTIPLIER);
    h ^ (h >> 16)
}

fn op(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: JMP | JEQ | K,
        jt,
        jf,
        k,
    }
}

fn net(offset: i32) -> u32 {
    (SKF_NET_OFF + offset) as u32
}

/// The fanout program for one leg. Non-IP frames (ARP, LLDP) all go to member 0: they carry no
/// subscriber state.
pub fn fanout_program(leg: Leg) -> Vec<Insn> {
    let (v4, v6) = match leg {
        Leg::Ue => (12, 8),
        Leg::Internet => (16, 24),
    };
    // Jump offsets count instructions skipped; the indices in comments keep them honest.
    vec![
        /* 0 */ op(LD | W | ABS, (SKF_AD_OFF + SKF_AD_PROTOCOL) as u32),
        /* 1 */ op(LDX | W | IMM, 0),
        /* 2 */ jeq(ETH_P_8021Q, 1, 0),
        /* 3 */ jeq(ETH_P_8021AD, 0, 2),
        // An inner tag is still in the data: its ethertype follows the TCI, L3 follows it.
        /* 4 */
        op(LD | H | ABS, net(2)),
        /* 5 */ op(LDX | W | IMM, 4),
        /* 6 */ jeq(ETH_P_IP, 2, 0),
        /* 7 */ jeq(ETH_P_IPV6, 3, 0),
        /* 8 */ op(RET | K, 0),
        /* 9 */ op(LD | W | IND, net(v4)),
        /* 10 */ op(JMP | JA, 5),
        /* 11 */ op(LD | W | IND, net(v6)),
        /* 12 */ op(ST, 0),
        /* 13 */ op(LD | W | IND, net(v6 + 4)),
        /* 14 */ op(LDX | W | MEM, 0),
        /* 15 */ op(ALU | XOR | X, 0),
        /* 16 */ op(MISC | TAX, 0),
        /* 17 */ op(ALU | RSH | K, 16),
        /* 18 */ op(ALU | XOR | X, 0),
        /* 19 */ op(ALU | MUL | K, HASH_MULTIPLIER),
        /* 20 */ op(MISC | TAX, 0),
        /* 21 */ op(ALU | RSH | K, 16),
        /* 22 */ op(ALU | XOR | X, 0),
        /* 23 */ op(RET | A, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A frame as the kernel presents it to a fanout program: the first VLAN tag moved out of
    /// the data, `protocol` the ethertype after it, the network header just past it.
    struct Skb<'a> {
        protocol: u16,
        net: &'a [u8],
    }

    fn skb(frame: &[u8]) -> Skb<'_> {
        let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let mut off = 14;
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            ethertype = u16::from_be_bytes([frame[16], frame[17]]);
            off = 18;
        }
        Skb {
            protocol: ethertype,
            net: &frame[off..],
        }
    }

    /// Just enough of a classic-BPF machine to run what [`fanout_program`] emits; any other
    /// instruction fails the test. Out-of-bounds loads end the program with 0, as the kernel's.
    fn run(prog: &[Insn], skb: &Skb) -> u32 {
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let load = |k: i64, size: usize| -> Option<u32> {
            if k == i64::from(SKF_AD_OFF + SKF_AD_PROTOCOL) {
                return Some(u32::from(skb.protocol));
            }
            let off = usize::try_from(k - i64::from(SKF_NET_OFF)).ok()?;
            let b = skb.net.get(off..off + size)?;
            Some(b.iter().fold(0u32, |acc, v| acc << 8 | u32::from(*v)))
        };
        let mut pc = 0;
        for _ in 0..prog.len() + 1 {
            let i = prog[pc];
            pc += 1;
            let size = if i.code & 0x18 == H { 2 } else { 4 };
            match i.code {
                c if c == LD | W | ABS || c == LD | H | ABS => {
                    match load(i.k as i32 as i64, size) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                c if c == LD | W | IND => match load(i.k as i32 as i64 + i64::from(x), size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == LDX | W | IMM => x = i.k,
                c if c == LDX | W | MEM => x = mem[i.k as usize],
                c if c == ST => mem[i.k as usize] = a,
                c if c == ALU | XOR | X => a ^= x,
                c if c == ALU | RSH | K => a >>= i.k,
                c if c == ALU | MUL | K => a = a.wrapping_mul(i.k),
                c if c == MISC | TAX => x = a,
                c if c == JMP | JA => pc += i.k as usize,
                c if c == JMP | JEQ | K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                c if c == RET | K => return i.k,
                c if c == RET | A => return a,
                c => panic!("instruction {c:#x} not modelled"),
            }
        }
        panic!("program did not return");
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // A real TCP SYN from 10.45.0.2:40962 to 198.51.100.10:80, as captured on a veth.
    const SYN_V4: &str = "02b1c2d3e4f5 0a1b2c3d4e5f 0800
        45000034 3d5a4000 4006 0000 0a2d0002 c633640a
        a0020050 5e0f1a2b 00000000 8002faf0 0000 0000 020405b4 01030307 0402 0000";
    // Its answer, SYN-ACK from 198.51.100.10:80 back to the UE.
    const SYNACK_V4: &str = "0a1b2c3d4e5f 02b1c2d3e4f5 0800
        45000034 00004000 4006 0000 c633640a 0a2d0002
        0050a002 11223344 5e0f1a2c 8012faf0 0000 0000 020405b4 01030307 0402 0000";
    // ICMPv6 echo request 2001:db8:45:1::2 -> 2001:db8:100::10.
    const PING_V6: &str = "02b1c2d3e4f5 0a1b2c3d4e5f 86dd
        60000000 00103a40 20010db8 00450001 00000000 00000002
        20010db8 01000000 00000000 00000010
        8000 0000 1234 0001 0102030405060708";
    const ARP: &str = "ffffffffffff 0a1b2c3d4e5f 0806
        0001 0800 06 04 0001 0a1b2c3d4e5f 0a2d0002 000000000000 c633640a";

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_directions_of_an_ipv4_subscriber_hash_alike() {
        let up = hex(SYN_V4);
        let down = hex(SYNACK_V4);
        let want = ue_hash(addr("10.45.0.2"));
        assert_eq!(run(&fanout_program(Leg::Ue), &skb(&up)), want);
        assert_eq!(run(&fanout_program(Leg::Internet), &skb(&down)), want);
        // The other leg's program keys on the remote end instead.
        assert_eq!(
            run(&fanout_program(Leg::Internet), &skb(&up)),
            ue_hash(addr("198.51.100.10"))
        );
    }

    #[test]
    fn vlan_tags_are_skipped() {
        let plain = hex(SYN_V4);
        // The kernel moves the outer tag out of the frame; a QinQ inner tag stays in the data.
        let mut one = plain[..12].to_vec();
        one.extend(hex("8100 0064"));
        one.extend(&plain[12..]);
        let mut two = plain[..12].to_vec();
        two.extend(hex("88a8 00c8 8100 0064"));
        two.extend(&plain[12..]);
        let want = ue_hash(addr("10.45.0.2"));
        for f in [&plain, &one, &two] {
            assert_eq!(run(&fanout_program(Leg::Ue), &skb(f)), want);
        }
    }

    #[test]
    fn an_ipv6_subscriber_hashes_by_its_prefix() {
        let f = hex(PING_V6);
        let got = run(&fanout_program(Leg::Ue), &skb(&f));
        assert_eq!(got, ue_hash(addr("2001:db8:45:1::2")));
        assert_eq!(got, ue_hash(addr("2001:db8:45:1:ffff::9")));
        let mut down = f.clone();
        let (src, dst) = (22..38, 38..54);
        let s = f[src.clone()].to_vec();
        down[src].copy_from_slice(&f[dst.clone()]);
        down[dst].copy_from_slice(&s);
        assert_eq!(run(&fanout_program(Leg::Internet), &skb(&down)), got);
    }

    #[test]
    fn non_ip_goes_to_member_zero_and_truncation_is_safe() {
        assert_eq!(run(&fanout_program(Leg::Ue), &skb(&hex(ARP))), 0);
        let f = hex(SYN_V4);
        assert_eq!(run(&fanout_program(Leg::Ue), &skb(&f[..20])), 0);
    }

    #[test]
    fn hashes_spread_consecutive_subscribers() {
        let mut per_worker = [0u32; 4];
        for i in 0..1024u32 {
            let a = std::net::Ipv4Addr::from(0x0a2d_0000 + i);
            per_worker[(ue_hash(IpAddr::V4(a)) % 4) as usize] += 1;
        }
        for n in per_worker {
            assert!((192..=320).contains(&n), "{per_worker:?}");
        }
    }

    #[test]
    fn encodings_match_the_kernel_headers() {
        let p = fanout_program(Leg::Ue);
        assert_eq!(p[0].code, 0x20); // BPF_LD|BPF_W|BPF_ABS
        assert_eq!(p[0].k, 0xffff_f000); // SKF_AD_OFF + SKF_AD_PROTOCOL
        assert_eq!(p[9].code, 0x40); // BPF_LD|BPF_W|BPF_IND
        assert_eq!(p[9].k, 0xfff0_000c); // SKF_NET_OFF + 12
        assert_eq!(p[23].code, 0x16); // BPF_RET|BPF_A
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
