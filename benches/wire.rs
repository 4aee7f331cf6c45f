//! Frame parsing and segment building, on real frames from ../shared/data/pcap/ (embedded).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use weir::wire::{
    finish_partial_checksum, parse, tcp_flags, Checksum, EthernetHeader, LinkHeader, LinkType,
    Partial, TcpSegment,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("bench hex"))
        .collect()
}

/// tcpreplay-test.pcap #1: IPv4 TCP with timestamps, 27 bytes of TLS.
const IPV4_TCP: &str = "001ff33ce113f81edfe5843a08004500004fde534000400647abac100b0c4a7d
    1311fc3501bbc6d914d0c51e2dbf8018ffffcb8c00000101080a1a7d842c37c5
    58b01503010016431a881efa7abc226ee6327a534700a75dcc64ea8e92";
/// tcpreplay-test.pcap #32: IPv6 TCP, HTTP GET.
const IPV6_TCP: &str = "943fc2d352bdac1f6bac27da86dd6000420000a506402001495815a00024c1b3
    b7667fffd0b32606470000000000000000006812069ca8f200506e210cf87d79
    294a501801fb254b0000474554202f20485454502f312e310d0a557365722d41
    67656e743a20576765742f312e32302e3320286c696e75782d676e75290d0a41
    63636570743a202a2f2a0d0a4163636570742d456e636f64696e673a20696465
    6e746974790d0a486f73743a20697076362e6963616e68617a69702e636f6d0d
    0a436f6e6e656374696f6e3a204b6565702d416c6976650d0a0d0a";

fn parse_frames(c: &mut Criterion) {
    let ipv4 = hex(IPV4_TCP);
    let ipv6 = hex(IPV6_TCP);
    // The IPv4 frame with an 802.1Q tag (VLAN 100) inserted after the MAC addresses.
    let mut vlan = ipv4[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 100]);
    vlan.extend_from_slice(&ipv4[12..]);

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, frame, link) in [
        ("ipv4_tcp", &ipv4[..], LinkType::Ethernet),
        ("ipv6_tcp", &ipv6[..], LinkType::Ethernet),
        ("vlan_ipv4_tcp", &vlan[..], LinkType::Ethernet),
        ("raw_ipv4_tcp", &ipv4[14..], LinkType::RawIp),
    ] {
        assert!(parse(link, frame).is_ok(), "{name} must parse");
        group.bench_function(name, |b| b.iter(|| parse(link, black_box(frame))));
    }
    group.finish();
}

fn build_segment(c: &mut Criterion) {
    let payload = b"HTTP/1.1 302 Found\r\nLocation: http://portal.example/recharge\r\nContent-Length: 0\r\n\r\n";
    let segment = TcpSegment {
        link: LinkHeader::Ethernet(EthernetHeader {
            dst: [0x02, 0, 0, 0, 0, 1],
            src: [0x02, 0, 0, 0, 0, 2],
            vlans: [100, 0],
            vlan_count: 1,
        }),
        src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 45, 0, 7)),
        src_port: 80,
        dst_port: 51000,
        seq: 1,
        ack: 2,
        flags: tcp_flags::PSH | tcp_flags::ACK | tcp_flags::FIN,
        window: 65535,
        mss: None,
        payload,
    };
    let mut out = Vec::with_capacity(2048);
    c.bench_function("build/tcp_302_ipv4_vlan", |b| {
        b.iter(|| {
            out.clear();
            black_box(&segment).write(&mut out)
        })
    });
}

/// What a frame costs the checksum step on AF_XDP: a full-sized TCP segment whose checksum is
/// right (a real NIC's frame: the field compared with the pseudo-header sum, nothing written),
/// and the same segment as a veth sender leaves it (the checksum finished over 1 460 bytes).
fn finish_checksums(c: &mut Criterion) {
    let (src, dst) = (
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
        IpAddr::V4(Ipv4Addr::new(10, 45, 0, 2)),
    );
    let payload = vec![0x5a; 1460];
    let mut whole = Vec::with_capacity(2048);
    TcpSegment {
        link: LinkHeader::Ethernet(EthernetHeader {
            dst: [0x02, 0, 0, 0, 0, 1],
            src: [0x02, 0, 0, 0, 0, 2],
            vlans: [0, 0],
            vlan_count: 0,
        }),
        src,
        dst,
        src_port: 80,
        dst_port: 51000,
        seq: 1,
        ack: 2,
        flags: tcp_flags::ACK,
        window: 65535,
        mss: None,
        payload: &payload,
    }
    .write(&mut whole)
    .expect("a segment");
    let mut pseudo = Checksum::new();
    pseudo.add_pseudo_header(src, dst, 6, (whole.len() - 34) as u32);
    let mut begun = whole.clone();
    begun[50..52].copy_from_slice(&(!pseudo.finish()).to_be_bytes());

    let mut group = c.benchmark_group("checksum");
    group.throughput(Throughput::Elements(1));
    let mut frame = whole.clone();
    group.bench_function("ipv4_tcp_1500_already_right", |b| {
        b.iter(|| finish_partial_checksum(black_box(&mut frame), Partial::IfBegun))
    });
    group.bench_function("ipv4_tcp_1500_begun", |b| {
        b.iter(|| {
            frame.copy_from_slice(&begun);
            finish_partial_checksum(black_box(&mut frame), Partial::IfBegun)
        })
    });
    group.bench_function("copy_1500_alone", |b| {
        b.iter(|| frame.copy_from_slice(black_box(&begun)))
    });
    group.finish();
}

criterion_group!(benches, parse_frames, build_segment, finish_checksums);
criterion_main!(benches);
