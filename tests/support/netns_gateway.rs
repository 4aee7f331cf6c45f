//! A real `weir run` for the tests that read what it shows an operator (its log lines, its
//! metrics): routed mode on a TUN device inside a network namespace of its own (named by the
//! test and the process id), so its ports and device clash with nothing; its stderr goes to a
//! file. Killed, and the namespace removed, on drop.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The configuration: one pool, a plain rule and a redirect rule to install over gRPC.
pub const CONFIG: &str = r#"
[gateway]
ue_pools = ["10.45.0.0/16"]
unknown_subscriber = "drop"

[redirect]
http_ports = [80]
portal_addresses = ["198.51.100.20"]

[[predefined_rule]]
name = "web"
precedence = 100
rating_group = 10
flow = [{ description = "permit out 6 from any 80,443 to assigned" }]

[[predefined_rule]]
name = "recharge-redirect"
precedence = 1
rating_group = 98
redirect = { support = "ENABLED", address_type = "URL", server_address = "http://portal.example/recharge" }
flow = [{ description = "permit out ip from any to assigned" }]

[control]
listen = "127.0.0.1:50052"

[dataplane]
mode = "routed"
tun = "weir0"
report_listen = "127.0.0.1:9464"
"#;

pub const GRPC: &str = "127.0.0.1:50052";

pub struct Gateway {
    pub ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

fn ip(args: &[&str]) {
    let s = Command::new("ip").args(args).status().expect("ip runs");
    assert!(s.success(), "ip {args:?} failed");
}

impl Gateway {
    /// Starts `weir <global args> run` and waits until /metrics answers.
    pub fn start(test: &str, global: &[&str]) -> Gateway {
        let ns = format!("w{}{test}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("weir-{ns}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns]);
        let mut gw = Gateway {
            ns,
            dir,
            child: None,
        };
        ip(&["-n", &gw.ns, "link", "set", "lo", "up"]);
        let config = gw.dir.join("weir.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let log = std::fs::File::create(gw.dir.join("stderr")).unwrap();
        gw.child = Some(
            Command::new("ip")
                .args(["netns", "exec", &gw.ns, env!("CARGO_BIN_EXE_weir")])
                .args(global)
                .args(["run", "--config"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("weir run starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if gw.try_metrics().is_some() && gw.try_grpc_ready() {
                return gw;
            }
            let exited = gw.child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "weir run exited: {}", gw.stderr());
            assert!(
                Instant::now() < deadline,
                "weir run did not come up: {}",
                gw.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(args);
        c
    }

    fn try_metrics(&self) -> Option<String> {
        let out = self
            .exec(&[
                "curl",
                "-sf",
                "--max-time",
                "2",
                "http://127.0.0.1:9464/metrics",
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn try_grpc_ready(&self) -> bool {
        self.exec(&["grpcurl", "-plaintext", GRPC, "list"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The Prometheus text of GET /metrics.
    pub fn metrics(&self) -> String {
        self.try_metrics()
            .unwrap_or_else(|| panic!("GET /metrics failed: {}", self.stderr()))
    }

    /// Calls weir.v1.Gateway/`method` with grpcurl inside the namespace.
    pub fn grpc(&self, method: &str, body: &serde_json::Value) -> String {
        let out = self
            .exec(&[
                "grpcurl",
                "-plaintext",
                "-d",
                &body.to_string(),
                GRPC,
                &format!("weir.v1.Gateway/{method}"),
            ])
            .output()
            .expect("grpcurl runs");
        assert!(
            out.status.success(),
            "{method} {body}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        // `ip netns exec` execs weir, so the child's id is weir's.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait().unwrap() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
