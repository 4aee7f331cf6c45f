//! AF_XDP sockets on a veth pair in a namespace of their own: frames sent by the peer reach the
//! socket byte for byte, frames the socket transmits reach the peer byte for byte, and the
//! steering program is gone from the interface once the socket and its link are dropped, or once
//! the `weir run` that attached it is killed.
//! Needs root.

mod common;

use std::time::{Duration, Instant};

use weir::io::afpacket::{RxConfig, RxRing, TpacketVersion, TxCopy, VnetHdr};
use weir::io::sys;
use weir::io::xdp::{XdpError, XdpMode, XdpSteering, XskConfig, XskSocket};

/// A namespace holding the veth pair `xa`–`xb`, removed on drop (which takes the pair with it).
struct Netns(String);

impl Netns {
    fn new(test: &str) -> Netns {
        let name = format!("w{}{test}", std::process::id() % 100_000);
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        common::ok(
            std::process::Command::new("ip").args(["netns", "add", &name]),
            Duration::from_secs(10),
        );
        let ns = Netns(name);
        // No IPv6: the kernel's neighbour discovery would put frames of its own on the link,
        // and the test counts every frame.
        ns.sh(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; \
             ip link add xa type veth peer name xb; ip link set xa up; ip link set xb up",
        );
        ns
    }

    /// A second veth pair, `ya`–`yb`, for a bridge's internet leg.
    fn add_second_pair(&self) {
        self.sh("ip link add ya type veth peer name yb; ip link set ya up; ip link set yb up");
    }

    fn sh(&self, script: &str) -> String {
        common::ok(
            &mut common::netns(&self.0, &["sh", "-c", script]),
            Duration::from_secs(10),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Runs `f` on a thread moved into the namespace, so its sockets and interface lookups are the
/// namespace's; a panic in it fails the test after the namespace is removed.
fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            sys::enter_network_namespace(&ns.0).expect("enter the namespace");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

const CONFIG: XskConfig = XskConfig {
    ring_size: 64,
    frame_size: 2048,
    mode: XdpMode::Copy,
};

/// A broadcast frame of the local experimental ethertype carrying `seq` and a pattern, `len`
/// bytes long.
fn frame(seq: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, seq]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seq)));
    f
}

fn xdp_attached(ns: &Netns) -> bool {
    attached(ns, "xa")
}

fn attached(ns: &Netns, interface: &str) -> bool {
    ns.sh(&format!("ip -d link show dev {interface}"))
        .contains("xdp")
}

#[test]
fn frames_cross_an_af_xdp_socket_both_ways_and_the_program_leaves_with_it() {
    if !common::root_or_skip("af_xdp") {
        return;
    }
    let ns = Netns::new("xdp");
    let sent: Vec<Vec<u8>> = [60, 64, 333, 1514]
        .iter()
        .enumerate()
        .map(|(i, &len)| frame(i as u8 + 1, len))
        .collect();

    let (received, stats) = in_netns(&ns, || {
        let steering = XdpSteering::attach("xa", 1).expect("attach the steering program");
        let mut xsk = XskSocket::open("xa", 0, &CONFIG).expect("open the socket");
        steering.insert(&xsk).expect("insert the socket");
        assert!(!xsk.is_zero_copy(), "veth has no zero-copy");
        assert!(xdp_attached(&ns), "{}", ns.sh("ip -d link show dev xa"));

        // Peer to socket.
        let mut peer = TxCopy::open("xb", 16, 2048, false).expect("peer transmit socket");
        for f in &sent {
            peer.push(&VnetHdr::default(), f, &[])
                .expect("queue on the peer");
        }
        peer.flush().expect("send from the peer");
        let mut received: Vec<Vec<u8>> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while received.len() < sent.len() && Instant::now() < deadline {
            let mut ready = [false];
            sys::poll_readable(&[xsk.fd()], 100, &mut ready).expect("poll");
            xsk.recv_batch(16, |f| received.push(f.to_vec()));
        }
        // Nothing else came, even after a moment.
        std::thread::sleep(Duration::from_millis(200));
        xsk.recv_batch(16, |f| received.push(f.to_vec()));

        // Socket to peer.
        let mut capture = RxRing::open(
            "xb",
            &RxConfig {
                version: TpacketVersion::V2,
                frame_size: 2048,
                frames: 64,
                block_size: 0,
                blocks: 0,
                block_timeout_ms: 0,
                vnet: false,
            },
        )
        .expect("peer capture ring");
        for f in &sent {
            xsk.send(f).expect("queue on the socket");
        }
        xsk.flush().expect("kick the socket");
        let mut captured: Vec<Vec<u8>> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while (captured.len() < sent.len() || xsk.tx_in_flight() > 0) && Instant::now() < deadline {
            let mut ready = [false];
            sys::poll_readable(&[capture.fd()], 50, &mut ready).expect("poll");
            capture.recv_batch(16, |f, _| captured.push(f.to_vec()));
            xsk.flush().expect("kick the socket");
        }
        assert_eq!(
            captured, sent,
            "frames the socket sent, as the peer saw them"
        );
        assert_eq!(xsk.tx_in_flight(), 0, "every transmitted chunk completed");
        let stats = xsk.statistics().expect("statistics");
        drop(xsk);
        drop(steering);
        (received, stats)
    });
    assert_eq!(
        received, sent,
        "frames the peer sent, as the socket saw them"
    );
    assert_eq!(stats.rx_dropped, 0, "{stats:?}");
    assert_eq!(stats.rx_ring_full, 0, "{stats:?}");
    assert_eq!(stats.tx_invalid_descs, 0, "{stats:?}");
    assert!(
        !xdp_attached(&ns),
        "still attached after drop: {}",
        ns.sh("ip -d link show dev xa")
    );
}

#[test]
fn setup_errors_name_the_interface_and_the_step() {
    if !common::root_or_skip("af_xdp") {
        return;
    }
    let ns = Netns::new("xdperr");
    in_netns(&ns, || {
        let missing = XskSocket::open("nosuch0", 0, &CONFIG)
            .err()
            .expect("no interface");
        assert!(matches!(missing, XdpError::NoInterface(_)), "{missing}");
        assert!(missing
            .to_string()
            .starts_with("AF_XDP on nosuch0: interface not found"));

        // veth copies: asking for zero-copy is refused at the bind, and the message says where.
        let zc = XskConfig {
            mode: XdpMode::ZeroCopy,
            ..CONFIG
        };
        let refused = XskSocket::open("xa", 0, &zc)
            .err()
            .expect("zero-copy on veth");
        assert_eq!(
            refused.to_string(),
            format!(
                "AF_XDP on xa: bind queue 0: {}",
                std::io::Error::from_raw_os_error(libc::EOPNOTSUPP)
            )
        );

        // A second program cannot take the interface from the first.
        let first = XdpSteering::attach("xa", 1).expect("first program");
        let second = XdpSteering::attach("xa", 1).expect_err("second program");
        assert!(matches!(second, XdpError::Busy { .. }), "{second}");
        assert!(second
            .to_string()
            .starts_with("AF_XDP on xa: another XDP program"));
        drop(first);
        assert!(!xdp_attached(&ns));
        // Once the first is gone, the interface is free again.
        drop(XdpSteering::attach("xa", 1).expect("after the first left"));
    });
}

/// `weir run` on the af_xdp backend, its output in a file; killed on drop if still running.
struct Gateway(std::process::Child);

impl Gateway {
    fn start(ns: &Netns, config: &std::path::Path, log: &std::path::Path) -> Gateway {
        let out = std::fs::File::create(log).unwrap();
        let child = common::netns(&ns.0, &[env!("CARGO_BIN_EXE_weir"), "run", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Gateway(child)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_gateway_refuses_a_taken_leg_and_a_killed_one_leaves_no_program() {
    if !common::root_or_skip("af_xdp") {
        return;
    }
    let ns = Netns::new("xdprun");
    ns.add_second_pair();
    let dir = std::env::temp_dir().join(format!("weir-af-xdp-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(
        &config,
        "[gateway]\nue_pools = [\"10.45.0.0/16\"]\n\n[dataplane]\nbackend = \"af_xdp\"\n\
         cores = [0]\nue_interface = \"xa\"\ninternet_interface = \"ya\"\nreport_listen = \"\"\n",
    )
    .unwrap();
    let log = dir.join("first.log");
    let mut first = Gateway::start(&ns, &config, &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("bridge mode up on AF_XDP")
    {
        assert!(
            Instant::now() < deadline && first.0.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(attached(&ns, "xa") && attached(&ns, "ya"));

    // A second gateway on the same legs is refused, and says what holds the leg.
    let second = common::run(
        common::netns(&ns.0, &[env!("CARGO_BIN_EXE_weir"), "run", "--config"]).arg(&config),
        Duration::from_secs(20),
    );
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("AF_XDP on xa: another XDP program is already attached"),
        "{err}"
    );
    assert!(attached(&ns, "xa"), "the first gateway's program stays");

    // SIGKILL: nothing runs any cleanup, yet the programs go with the process's descriptors.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (attached(&ns, "xa") || attached(&ns, "ya")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!attached(&ns, "xa"), "{}", ns.sh("ip -d link show dev xa"));
    assert!(!attached(&ns, "ya"), "{}", ns.sh("ip -d link show dev ya"));
    let _ = std::fs::remove_dir_all(&dir);
}
