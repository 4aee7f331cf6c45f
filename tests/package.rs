//! The Debian package: built with `cargo deb` from the release binary, its contents checked
//! exactly, its units verified, installed with `dpkg -i`, its configurations checked from the
//! installed files, and purged again leaving no file and no user behind.
//!
//! Needs root (it installs into this machine); skipped with a message otherwise, except under
//! CI=true, where it must run. The release build is the one `scripts/lab.sh` makes for the lab
//! tests: when it is up to date this test only packages (a few seconds).

mod common;

use common::{ok, repo, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const USERS: [&str; 3] = ["weir", "weir-policy-engine", "weir-portal"];
const CONFIGS: [(&str, &str); 3] = [
    ("/etc/weir/weir.toml", "weir"),
    ("/etc/weir/portal.toml", "weir-portal"),
    ("/etc/weir/policy-engine.toml", "weir-policy-engine"),
];
const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Every path the package holds, as `dpkg-deb --contents` names it.
const CONTENTS: &[&str] = &[
    "./etc/",
    "./etc/weir/",
    "./etc/weir/policy-engine.toml",
    "./etc/weir/portal.toml",
    "./etc/weir/weir.toml",
    "./usr/",
    "./usr/bin/",
    "./usr/bin/weir",
    "./usr/lib/",
    "./usr/lib/systemd/",
    "./usr/lib/systemd/system/",
    "./usr/lib/systemd/system/weir-policy-engine.service",
    "./usr/lib/systemd/system/weir-portal.service",
    "./usr/lib/systemd/system/weir.service",
    "./usr/share/",
    "./usr/share/doc/",
    "./usr/share/doc/weir/",
    "./usr/share/doc/weir/copyright",
    "./usr/share/weir/",
    "./usr/share/weir/grafana/",
    "./usr/share/weir/grafana/weir.json",
];

/// What must be gone after the purge (besides the package's own files).
const LEFTOVERS: &[&str] = &[
    "/etc/weir",
    "/var/lib/weir",
    "/usr/share/weir",
    "/usr/share/doc/weir",
    "/etc/systemd/system/multi-user.target.wants/weir.service",
];

fn root_or_skip(test: &str) -> bool {
    if weir::io::sys::effective_uid() == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root (dpkg -i), and CI must run it");
    }
    use std::io::Write as _;
    let line = format!("{test}: skipped: needs root (it installs the package with dpkg -i)\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// Cargo as a user runs it: without the variables `cargo test` sets for its test binaries
/// (a build script that watches one would see a change, and the release build would be redone
/// on every alternation between this test and the command line).
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(repo());
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        let set_by_cargo = n.starts_with("CARGO_")
            && !matches!(&*n, "CARGO_HOME" | "CARGO_TARGET_DIR")
            && !n.starts_with("CARGO_BUILD_")
            && !n.starts_with("CARGO_PROFILE_");
        if set_by_cargo || n == "LD_LIBRARY_PATH" || n == "OUT_DIR" {
            c.env_remove(&name);
        }
    }
    c
}

/// Builds the package into `out` and returns its path.
fn build(out: &Path) -> PathBuf {
    // The same build as the lab's (`cargo build --release`), so CI compiles it once.
    ok(
        cargo().args(["build", "--release", "--locked"]),
        Duration::from_secs(1800),
    );
    let deb = run(
        cargo()
            .args(["deb", "--no-build", "--locked", "--fast", "--output"])
            .arg(out),
        Duration::from_secs(300),
    );
    assert!(
        deb.status.success(),
        "cargo deb failed ({}); scripts/install-deps.sh installs it: {}{}",
        deb.status,
        String::from_utf8_lossy(&deb.stdout),
        String::from_utf8_lossy(&deb.stderr)
    );
    let mut debs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package in {}: {debs:?}", out.display());
    debs.remove(0)
}

fn contents(deb: &Path) -> Vec<String> {
    let listing = ok(
        Command::new("dpkg-deb").arg("--contents").arg(deb),
        Duration::from_secs(30),
    );
    let mut paths: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
        .collect();
    paths.sort();
    paths
}

fn user_exists(name: &str) -> bool {
    run(
        Command::new("getent").args(["passwd", name]),
        Duration::from_secs(5),
    )
    .status
    .success()
}

fn group_exists(name: &str) -> bool {
    run(
        Command::new("getent").args(["group", name]),
        Duration::from_secs(5),
    )
    .status
    .success()
}

fn purge() -> std::process::Output {
    run(
        Command::new("dpkg").args(["--purge", "weir"]),
        Duration::from_secs(120),
    )
}

/// Purges the package on drop, so a failed check leaves the machine as it was.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = purge();
    }
}

fn token_key(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token_key = \""))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
}

/// Runs the installed `weir run` in bridge mode between two veth legs in a namespace of its own,
/// as the user `weir` with only `caps` (setpriv's syntax), the way weir.service runs it; waits
/// until it forwards or exits, stops it with SIGTERM. Returns whether it forwarded and exited 0,
/// and its log.
fn bridge_as_weir(dir: &Path, caps: &str) -> (bool, String) {
    let ns = format!("w{}pkg", std::process::id() % 100_000);
    let ip = |args: &[&str]| {
        ok(Command::new("ip").args(args), Duration::from_secs(10));
    };
    let _ = run(
        Command::new("ip").args(["netns", "del", &ns]),
        Duration::from_secs(10),
    );
    ip(&["netns", "add", &ns]);
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = Ns(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    for (a, b) in [("ue0", "ue1"), ("inet0", "inet1")] {
        ip(&[
            "-n", &ns, "link", "add", a, "type", "veth", "peer", "name", b,
        ]);
        ip(&["-n", &ns, "link", "set", a, "up"]);
        ip(&["-n", &ns, "link", "set", b, "up"]);
    }
    let config = dir.join("bridge.toml");
    std::fs::write(
        &config,
        "[gateway]\nue_pools = [\"10.45.0.0/16\"]\n[control]\nlisten = \"\"\n\
         [dataplane]\nmode = \"bridge\"\nue_interface = \"ue0\"\ninternet_interface = \"inet0\"\n\
         report_listen = \"127.0.0.1:9464\"\n",
    )
    .unwrap();
    ok(
        Command::new("chmod").args(["755"]).arg(dir),
        Duration::from_secs(5),
    );
    ok(
        Command::new("chmod").args(["644"]).arg(&config),
        Duration::from_secs(5),
    );
    let log_path = dir.join("bridge.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "setpriv",
            "--reuid=weir",
            "--regid=weir",
        ])
        .args(["--clear-groups", "--no-new-privs"])
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg(format!("--bounding-set={caps}"))
        .args(["/usr/bin/weir", "run", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (false, format!("exited with {s}: {}", read()));
        }
        if read().contains("forwarding;") || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // `ip netns exec` and setpriv exec, so the child's id is weir's.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = common::wait_for(&mut child, Duration::from_secs(15));
    (status.is_some_and(|s| s.success()), read())
}

#[test]
fn the_package_installs_verifies_checks_and_purges_without_a_trace() {
    if !root_or_skip("the_package_installs_verifies_checks_and_purges_without_a_trace") {
        return;
    }
    let started = std::time::Instant::now();
    let out = std::env::temp_dir().join(format!("weir-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let deb = build(&out);
    let built = started.elapsed();

    assert_eq!(
        contents(&deb),
        CONTENTS,
        "dpkg-deb --contents {}",
        deb.display()
    );
    let conffiles = ok(
        Command::new("dpkg-deb")
            .args(["--info"])
            .arg(&deb)
            .arg("conffiles"),
        Duration::from_secs(30),
    );
    let mut conffiles: Vec<&str> = conffiles.lines().collect();
    conffiles.sort();
    assert_eq!(
        conffiles,
        [
            "/etc/weir/policy-engine.toml",
            "/etc/weir/portal.toml",
            "/etc/weir/weir.toml"
        ]
    );

    // A leftover of an interrupted run would hide what this install does.
    let _ = purge();
    for user in USERS {
        assert!(!user_exists(user), "user {user} exists before the install");
    }
    let installed = Installed;
    ok(
        Command::new("dpkg").arg("-i").arg(&deb),
        Duration::from_secs(120),
    );

    for user in USERS {
        assert!(user_exists(user), "postinst creates the user {user}");
        assert!(group_exists(user), "postinst creates the group {user}");
    }
    // Each configuration readable by its service only, all three with one key made for this
    // box in place of the shipped placeholder.
    let mut keys = Vec::new();
    for (file, group) in CONFIGS {
        let stat = ok(
            Command::new("stat").args(["-c", "%U:%G %a", file]),
            Duration::from_secs(5),
        );
        assert_eq!(stat.trim(), format!("root:{group} 640"), "{file}");
        let text = std::fs::read_to_string(file).unwrap();
        let key = token_key(&text).unwrap_or_else(|| panic!("{file} has a token_key"));
        assert_ne!(
            key, PLACEHOLDER,
            "{file}: the placeholder key was not replaced"
        );
        assert_eq!(key.len(), 64, "{file}: a 32-byte hex key");
        keys.push(key);
    }
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "one key: {keys:?}");

    let units = [
        "/usr/lib/systemd/system/weir.service",
        "/usr/lib/systemd/system/weir-policy-engine.service",
        "/usr/lib/systemd/system/weir-portal.service",
    ];
    let verify = run(
        Command::new("systemd-analyze").arg("verify").args(units),
        Duration::from_secs(60),
    );
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify ({}): {}{}",
        verify.status,
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    for (file, _) in CONFIGS.iter().take(2) {
        let checked = ok(
            Command::new("/usr/bin/weir").args(["check-config", file]),
            Duration::from_secs(10),
        );
        assert!(checked.starts_with(&format!("{file}: ok")), "{checked}");
    }
    let gateway = ok(
        Command::new("/usr/bin/weir").args(["check-config", "/etc/weir/weir.toml"]),
        Duration::from_secs(10),
    );
    assert!(gateway.contains("[dataplane] bridge mode"), "{gateway}");

    // The unit's user and capability set are enough for raw sockets: the installed binary
    // bridges two veth legs as `weir` with CAP_NET_RAW, CAP_NET_ADMIN and CAP_SYS_NICE only,
    // and without CAP_NET_RAW it cannot.
    let (status, log) = bridge_as_weir(&out, "-all,+net_raw,+net_admin,+sys_nice");
    assert!(
        status && log.contains("forwarding;"),
        "weir run with the unit's capabilities: {log}"
    );
    let (status, log) = bridge_as_weir(&out, "-all,+net_admin,+sys_nice");
    assert!(
        !status && !log.contains("forwarding;"),
        "weir run without CAP_NET_RAW: {log}"
    );

    // The purge.
    std::mem::forget(installed);
    let purged = purge();
    assert!(
        purged.status.success(),
        "dpkg --purge weir: {}",
        String::from_utf8_lossy(&purged.stderr)
    );
    let status = run(
        Command::new("dpkg-query").args(["-W", "-f", "${Status}", "weir"]),
        Duration::from_secs(10),
    );
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "dpkg still knows weir: {status}"
    );
    for path in CONTENTS.iter().filter(|p| !p.ends_with('/')) {
        let path = &path[1..];
        assert!(!Path::new(path).exists(), "{path} left after the purge");
    }
    for path in units.iter().chain(LEFTOVERS) {
        assert!(!Path::new(path).exists(), "{path} left after the purge");
    }
    for user in USERS {
        assert!(!user_exists(user), "user {user} left after the purge");
        assert!(!group_exists(user), "group {user} left after the purge");
    }
    let _ = std::fs::remove_dir_all(&out);
    eprintln!(
        "package: built in {:.1?}, whole test {:.1?}",
        built,
        started.elapsed()
    );
}
