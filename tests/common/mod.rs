//! What the end-to-end tests share: the root guard, bounded child processes, curl exchanges in a
//! namespace, and a lab built by `scripts/lab.sh` under a unique prefix and torn down on drop.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn root_or_skip(test: &str) -> bool {
    if weir::io::sys::effective_uid() == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root (network namespaces), and CI must run it");
    }
    // Written to the real stderr, past the test harness's capture, in one write so parallel
    // tests do not interleave.
    use std::io::Write as _;
    let line = format!("{test}: skipped: needs root (network namespaces)\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to completion, killing it after `limit`. Output is read while it runs, so a
/// chatty command cannot block on a full pipe.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status =
        wait_for(&mut child, limit).unwrap_or_else(|| panic!("{cmd:?} took over {limit:?}"));
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Waits for `child` up to `limit`; kills it and returns `None` past that.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn ok(cmd: &mut Command, limit: Duration) -> String {
    let out = run(cmd, limit);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn netns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// A lab; dropping it tears everything down, half-built or not.
pub struct Lab {
    pub prefix: String,
    pub state: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Lab {
    pub fn up(test: &str, env: &[(&str, &str)]) -> Lab {
        let prefix = format!("w{}{}-", std::process::id() % 100_000, test);
        let state = std::env::temp_dir().join(format!("weir-e2e-{}", prefix.trim_end_matches('-')));
        let _ = std::fs::remove_dir_all(&state);
        let mut all = vec![
            ("WEIR_LAB_PREFIX".to_string(), prefix.clone()),
            ("WEIR_LAB_STATE".to_string(), state.display().to_string()),
            (
                "WEIR_BIN".to_string(),
                env!("CARGO_BIN_EXE_weir").to_string(),
            ),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let lab = Lab {
            prefix,
            state,
            env: all,
        };
        ok(&mut lab.script("up"), Duration::from_secs(60));
        lab
    }

    pub fn script(&self, verb: &str) -> Command {
        let mut c = Command::new(repo().join("scripts/lab.sh"));
        c.arg(verb).envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    pub fn down(&self) -> Output {
        run(&mut self.script("down"), Duration::from_secs(30))
    }

    /// The namespaces of this lab that still exist.
    pub fn namespaces(&self) -> Vec<String> {
        let out = run(
            Command::new("ip").args(["netns", "list"]),
            Duration::from_secs(5),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&self.prefix))
            .map(str::to_string)
            .collect()
    }

    pub fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state.join("report.json"))
            .unwrap_or_else(|e| panic!("no final report from weir ({e}); log:\n{}", self.log()));
        serde_json::from_str(&text).expect("report JSON")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("weir.log")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.down();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Status code, headers (lower-case names) and body of one HTTP exchange made with curl in `ns`.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn curl(ns: &str, extra: &[&str], url: &str) -> Reply {
    let mut args = vec!["curl", "-sS", "-i", "--max-time", "10"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = run(&mut netns(ns, &args), Duration::from_secs(15));
    assert!(
        out.status.success(),
        "curl {url} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}
