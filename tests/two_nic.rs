//! The README's guide for a box with two real interfaces, run as written: veth pairs named
//! `eth1` and `eth2` in a namespace standing for the box, a UE behind `eth1`, a web server
//! behind `eth2`. The guide's lines run in one shell in the box's namespace (`sudo` dropped:
//! the test is root; `weir` the binary under test; `/etc/weir/weir.toml` the test's file);
//! each line's output is checked. The namespaces are named by the process id and removed on
//! drop, whatever happens.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"[gateway]
ue_pools = ["10.45.0.0/16"]
unknown_subscriber = "drop"
non_subscriber = "forward"

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
flow = [{{ description = "permit out 6 from any 80 to assigned" }}]

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.45.0.2"
predefined = ["web"]
default_rule = {{ action = "forward", rating_group = 99 }}

[control]
listen = "127.0.0.1:50052"

[dataplane]
mode = "bridge"
ue_interface = "eth1"
internet_interface = "eth2"
offloads = "off"
cores = [0]
report_listen = "127.0.0.1:9464"
# {}
"#,
        dir.display()
    )
}

/// The lines of the README's two-interface block.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let marker =
        "<!-- two-nic commands: tests/two_nic.rs runs these lines as written, in one shell -->";
    let start = readme
        .find(marker)
        .expect("the README has the two-nic block")
        + marker.len();
    let block = readme[start..]
        .strip_prefix("\n```sh\n")
        .expect("a sh block follows");
    let end = block.find("```").unwrap();
    block[..end].lines().map(str::to_string).collect()
}

struct Box3 {
    ns: [String; 3],
    dir: std::path::PathBuf,
    children: Vec<std::process::Child>,
}

impl Drop for Box3 {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(ns: &str, script: &str) {
    let s = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-ec", script])
        .status()
        .unwrap();
    assert!(s.success(), "in {ns}: {script}");
}

#[test]
fn readme_two_interface_guide_runs_on_veth_stand_ins() {
    let test = "two_nic";
    if !common::root_or_skip(test) {
        return;
    }
    for tool in ["ethtool", "tcpdump", "curl", "python3"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "{tool} is missing (scripts/install-deps.sh installs it)"
        );
    }
    let id = std::process::id() % 100_000;
    let ns = [
        format!("w{id}nic-ue"),
        format!("w{id}nic-box"),
        format!("w{id}nic-net"),
    ];
    let dir = std::env::temp_dir().join(format!("weir-two-nic-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut lab = Box3 {
        ns: ns.clone(),
        dir: dir.clone(),
        children: Vec::new(),
    };
    let [ue, gw, net] = &ns;
    for n in &ns {
        let _ = Command::new("ip")
            .args(["netns", "del", n])
            .stderr(Stdio::null())
            .status();
        let added = Command::new("ip")
            .args(["netns", "add", n])
            .status()
            .unwrap();
        assert!(added.success(), "ip netns add {n}");
        sh(n, "ip link set lo up");
    }
    // The two NICs of the box: veths whose far ends are the UE and the internet host. The legs
    // stay down: bringing them up is the guide's.
    sh(
        gw,
        &format!(
            "ip link add eth1 type veth peer name eth0 netns {ue}; \
             ip link add eth2 type veth peer name eth0 netns {net}"
        ),
    );
    // The end hosts compute their own checksums (a veth would leave them to the peer).
    sh(
        ue,
        "ip link set eth0 up; ip addr add 10.45.0.2/24 dev eth0; \
         ip route add 198.51.100.0/24 dev eth0; ethtool -K eth0 tx off >/dev/null 2>&1 || true",
    );
    sh(
        net,
        "ip link set eth0 up; ip addr add 198.51.100.10/24 dev eth0; \
         ip route add 10.45.0.0/16 dev eth0; ethtool -K eth0 tx off >/dev/null 2>&1 || true",
    );
    std::fs::write(dir.join("index.html"), "through weir\n").unwrap();
    lab.children.push(
        Command::new("ip")
            .args(["netns", "exec", net, "python3", "-m", "http.server", "80"])
            .args(["--bind", "198.51.100.10", "--directory"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let cfg = dir.join("weir.toml");
    std::fs::write(&cfg, config(&dir)).unwrap();
    let lines = readme_commands();
    assert_eq!(
        lines.len(),
        13,
        "the README's two-nic block changed: {lines:#?}"
    );
    // One shell, a marker before each line so each line's output can be told apart.
    let bin = env!("CARGO_BIN_EXE_weir");
    let mut script = String::new();
    for (i, line) in lines.iter().enumerate() {
        // Through placeholders, since the binary's own path ends in `weir`.
        let line = line
            .replace("sudo ", "")
            .replace("/etc/weir/weir.toml", "@CONFIG@")
            .replace("weir ctl ", "@BIN@ ctl --config @CONFIG@ ")
            .replace("weir ", "@BIN@ ")
            .replace("@BIN@", bin)
            .replace("@CONFIG@", cfg.to_str().unwrap());
        script.push_str(&format!("echo '@@ {i}'\n{line}\n"));
    }
    script.push_str("echo '@@ end'\n");
    std::fs::write(dir.join("guide.sh"), &script).unwrap();

    // The UE browses while the guide runs; the capture line waits for its packets.
    let stop = Arc::new(AtomicBool::new(false));
    let browsing = {
        let stop = Arc::clone(&stop);
        let ue = ue.clone();
        std::thread::spawn(move || {
            let mut ok = 0;
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("ip")
                    .args(["netns", "exec", &ue, "curl", "-s", "--max-time", "2"])
                    .arg("http://198.51.100.10/")
                    .output()
                    .unwrap();
                if out.stdout == b"through weir\n" {
                    ok += 1;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            ok
        })
    };
    let out = common::run(
        Command::new("ip")
            .args(["netns", "exec", gw, "sh"])
            .arg(dir.join("guide.sh"))
            .current_dir(&dir),
        Duration::from_secs(120),
    );
    stop.store(true, Ordering::Relaxed);
    let fetched = browsing.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = std::fs::read_to_string(dir.join("weir.log")).unwrap_or_default();
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}\nweir.log:\n{log}");
    assert!(out.status.success(), "{context}");
    assert_eq!(stderr, "", "{context}");
    let mut outputs: Vec<Vec<&str>> = vec![Vec::new(); lines.len()];
    let mut current = None;
    for l in stdout.lines() {
        if let Some(n) = l.strip_prefix("@@ ") {
            current = n.parse::<usize>().ok();
            continue;
        }
        outputs[current.expect("output after a marker")].push(l);
    }
    assert!(stdout.ends_with("@@ end\n"), "{context}");

    // 0: both legs, down (the guide brings them up).
    assert_eq!(outputs[0].len(), 2, "{context}");
    for (l, name) in outputs[0].iter().zip(["eth1@", "eth2@"]) {
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert!(cols[0].starts_with(name), "{l}");
        assert_eq!(cols[1], "DOWN", "{l}");
    }
    // 1: up, nothing printed.
    assert!(outputs[1].is_empty(), "{context}");
    // 2: valid.
    assert_eq!(
        outputs[2],
        [format!(
            "{}: ok (1 UE pool(s), 1 predefined rule(s), 1 session(s), [dataplane] bridge mode)",
            cfg.display()
        )]
    );
    // 3: the plan, with both legs' MTU.
    assert_eq!(
        outputs[3][..4],
        [
            format!("{}: valid; nothing opened, bound or changed (--dry-run)", cfg.display()),
            "mode           bridge".to_string(),
            "ue side        eth1 (MTU 1500): AF_PACKET per worker, TPACKET_V2 receive ring, 4096 slots of 2048 bytes, transmit by sendmmsg, promiscuous while open".to_string(),
            "internet side  eth2 (MTU 1500): AF_PACKET per worker, TPACKET_V2 receive ring, 4096 slots of 2048 bytes, transmit by sendmmsg, promiscuous while open".to_string(),
        ]
    );
    assert_eq!(
        outputs[3][4],
        "offloads       gro, lro, gso, tso turned off on eth1 and eth2 where on; turned back on at exit"
    );
    assert_eq!(
        outputs[3][5],
        "workers        1 pinned (worker->core): 0->0"
    );
    // 4 and 7: a veth segments in software (on) until Weir turns it off.
    let offloads = |o: &[&str]| -> Vec<String> {
        o.iter()
            .map(|l| l.trim().split(" [").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        offloads(&outputs[4]),
        [
            "tx-tcp-segmentation: on",
            "tx-tcp6-segmentation: on",
            "generic-segmentation-offload: on",
            "generic-receive-offload: off",
        ],
        "{context}"
    );
    // 5, 6: started in the background, reachable.
    assert!(outputs[5].is_empty() && outputs[6].is_empty(), "{context}");
    assert_eq!(
        offloads(&outputs[7]),
        [
            "tx-tcp-segmentation: off",
            "tx-tcp6-segmentation: off",
            "generic-segmentation-offload: off",
            "generic-receive-offload: off",
        ],
        "{context}"
    );
    assert!(
        log.contains("turned offload off") && log.contains("interface=\"eth1\""),
        "{log}"
    );
    // 8: the UE's own packets on the internet leg, both ways.
    assert_eq!(outputs[8].len(), 4, "{context}");
    for l in &outputs[8] {
        assert!(
            l.contains("10.45.0.2.") && l.contains("198.51.100.10.80"),
            "{l}\n{context}"
        );
    }
    // 9: the session with its usage counted.
    assert_eq!(
        outputs[9][0].split_whitespace().collect::<Vec<_>>(),
        ["SUBSCRIBER", "ADDRESSES", "RULES", "REDIRECT", "UP", "DOWN"],
        "{context}"
    );
    let row: Vec<&str> = outputs[9][1].split_whitespace().collect();
    assert_eq!(
        row[..4],
        ["imsi-001010000000001", "10.45.0.2", "web", "no"],
        "{context}"
    );
    let (up, down): (u64, u64) = (row[4].parse().unwrap(), row[5].parse().unwrap());
    assert!(up > 0 && down > 0, "usage counted: {row:?}");
    // 10: frames received and forwarded, one worker.
    assert_eq!(outputs[10].len(), 2, "{context}");
    let value = |prefix: &str| -> u64 {
        outputs[10]
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {context}"))
            .trim()
            .parse()
            .unwrap()
    };
    let received = value("weir_frames_received_total{worker=\"0\"}");
    let forwarded = value("weir_frames_forwarded_total{worker=\"0\"}");
    assert!(
        forwarded > 0 && forwarded <= received,
        "{received} {forwarded}"
    );
    // 11: stopped, and the report's first lines.
    assert_eq!(outputs[11][0], "bridge mode", "{context}");
    assert!(
        outputs[11][1].starts_with("worker 0 (core 0): rx "),
        "{context}"
    );
    // 12: offloads as they were before Weir started, turned back on as it stopped.
    assert_eq!(offloads(&outputs[12]), offloads(&outputs[4]), "{context}");
    assert!(
        log.contains("turned offload back on") && log.contains("interface=\"eth2\""),
        "{log}"
    );
    assert!(fetched > 0, "the UE fetched the page through Weir");
}
