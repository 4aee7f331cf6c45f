//! A real `weir policy-engine` for a benchmark: the release binary (or `WEIR_BIN`) in its own
//! process, on a configuration the benchmark writes into a folder of its own; killed, and the
//! folder removed, on drop (also when the benchmark panics).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PolicyEngine {
    child: Child,
    /// Where it listens (`host:port`).
    pub addr: String,
    dir: PathBuf,
}

impl PolicyEngine {
    /// Writes `config` to `dir/pe.toml` (the folder made afresh) and starts the policy engine
    /// on it, waiting until it says where it listens (seeding many accounts takes a while).
    pub fn start(dir: &Path, config: &str) -> PolicyEngine {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("the bench folder");
        let path = dir.join("pe.toml");
        std::fs::write(&path, config).expect("the configuration");
        let bin = std::env::var("WEIR_BIN").unwrap_or_else(|_| "target/release/weir".into());
        let mut child = Command::new(&bin)
            .args(["policy-engine", "--config"])
            .arg(&path)
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (cargo build --release, or set WEIR_BIN)"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(a) = line.strip_prefix("weir policy-engine: listening on ") {
                    let _ = tx.send(a.to_string());
                }
            }
        });
        // Kill it if it never says where it listens: the guard exists before the wait.
        let mut pe = PolicyEngine {
            child,
            addr: String::new(),
            dir: dir.to_path_buf(),
        };
        pe.addr = rx
            .recv_timeout(Duration::from_secs(600))
            .expect("the policy engine says where it listens");
        pe
    }

    /// The process id, to read its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The number after `name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    text_arg(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number"))
    })
}

/// The word after `name` on the command line.
pub fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}
