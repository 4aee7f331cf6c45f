//! The `[dataplane]` table as `weir check-config` and `weir run` report it: every mistake, each as
//! `file:line:column: path: message` like the policy tables, in document order with theirs.
//! Nothing here opens a socket, so it runs without root.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("weir-dpconf-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const BAD: &str = r#"[gateway]
ue_pools = ["10.45.0.0/16"]

[dataplane]
mode = "bridge"
ue_interface = "gw-ue"
internet_interface = "gw-ue"
batch = 0
rx_frames = 4
frame_size = 100000
block_size = 1024
blocks = 1
block_timeout_ms = 0
tx_frames = 300000
handoff_queue = 0
cores = [0, 0, 70000]
tx_mode = "zerocopy"
report_listen = 9464
disable_offloads = "yes"
tun_device = "weir0"

[[session]]
subscriber = "imsi-001010000000001"
ipv4 = "10.46.0.2"
"#;

fn bad_lines(path: &str) -> String {
    format!(
        "{path}:7:22: dataplane.internet_interface: ue_interface and internet_interface must differ\n\
         {path}:8:9: dataplane.batch: 0 is out of range; expected 1-4096\n\
         {path}:9:13: dataplane.rx_frames: 4 is out of range; expected 8-262144\n\
         {path}:10:14: dataplane.frame_size: 100000 is out of range; expected 256-65536\n\
         {path}:11:14: dataplane.block_size: 1024 is out of range; expected 4096-16777216\n\
         {path}:12:10: dataplane.blocks: 1 is out of range; expected 2-4096\n\
         {path}:13:20: dataplane.block_timeout_ms: 0 is out of range; expected 1-10000\n\
         {path}:14:13: dataplane.tx_frames: 300000 is out of range; expected 8-262144\n\
         {path}:15:17: dataplane.handoff_queue: 0 is out of range; expected 1-16384\n\
         {path}:16:13: dataplane.cores[1]: core 0 is listed twice\n\
         {path}:16:16: dataplane.cores[2]: 70000 is out of range; expected 0-65535\n\
         {path}:17:11: dataplane.tx_mode: 'zerocopy' is not one of \"copy\", \"ring\"\n\
         {path}:18:17: dataplane.report_listen: expected a string, found integer\n\
         {path}:19:20: dataplane.disable_offloads: expected true or false, found string\n\
         {path}:20:1: dataplane.tun_device: unknown key 'tun_device'; expected one of mode, ue_interface, internet_interface, tun, cores, batch, tpacket_version, rx_frames, frame_size, block_size, blocks, block_timeout_ms, tx_frames, tx_mode, handoff_queue, offloads, disable_offloads, report_listen, backend, idle\n\
         {path}:24:8: session[0].ipv4: 10.46.0.2 is not inside any ue_pool (10.45.0.0/16)\n\
         {path}: 16 error(s)\n"
    )
}

#[test]
fn check_config_lists_every_dataplane_error_with_the_policys_in_document_order() {
    let dir = Dir::new("check");
    let path = dir.file("bad.toml", BAD);
    let out = weir(&["check-config", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr), bad_lines(&path));
}

#[test]
fn weir_run_refuses_the_same_file_with_the_same_lines() {
    let dir = Dir::new("run");
    let path = dir.file("bad.toml", BAD);
    let out = weir(&["run", "--config", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), bad_lines(&path));
}

#[test]
fn a_table_that_needs_a_key_points_at_its_header() {
    let dir = Dir::new("header");
    let path = dir.file(
        "routed.toml",
        "[gateway]\nue_pools = [\"10.45.0.0/16\"]\n\n[dataplane]\nmode = \"routed\"\nbatch = 5000\n",
    );
    let out = weir(&["check-config", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{path}:4:1: dataplane: mode = \"routed\" needs tun (the TUN device name)\n\
             {path}:6:9: dataplane.batch: 5000 is out of range; expected 1-4096\n\
             {path}: 2 error(s)\n"
        )
    );
}

#[test]
fn a_syntax_error_is_listed_once() {
    let dir = Dir::new("syntax");
    let path = dir.file("broken.toml", "[gateway]\nue_pools = [\"10.45.0.0/16\"\n");
    let out = weir(&["check-config", &path]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(err.starts_with(&format!("{path}:")), "{err}");
    assert!(err.contains("TOML syntax"), "{err}");
    assert!(err.ends_with(&format!("{path}: 1 error(s)\n")), "{err}");
}

#[test]
fn a_valid_table_is_named_in_the_ok_line() {
    let dir = Dir::new("ok");
    let path = dir.file(
        "ok.toml",
        "[gateway]\nue_pools = [\"10.45.0.0/16\"]\n\n[dataplane]\nmode = \"routed\"\ntun = \"weir0\"\nbatch = 4096\nhandoff_queue = 16384\ncores = [0, 1023]\n",
    );
    let out = weir(&["check-config", &path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{path}: ok (1 UE pool(s), 0 predefined rule(s), 0 session(s), [dataplane] routed mode)\n")
    );
}

/// The configuration is read once and both parts are checked on that text. A named pipe gives
/// its content to the first reader only: checking the `[dataplane]` table on a second read
/// would see an empty file and call a bad table fine.
#[test]
fn check_config_checks_the_dataplane_table_of_the_text_it_read() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let dir = Dir::new("fifo");
    let fifo = dir.0.join("config.toml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (fifo, done) = (fifo.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            std::fs::write(&fifo, "[dataplane]\nmode = \"routed\"\n").unwrap();
            // Whoever opens the pipe again reads an empty file.
            while !done.load(Ordering::Relaxed) {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let path = fifo.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check-config", path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{path}:1:1: dataplane: mode = \"routed\" needs tun (the TUN device name)\n\
             {path}: 1 error(s)\n"
        )
    );
}
