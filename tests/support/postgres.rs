//! A real PostgreSQL server for a test: a fresh cluster in a temporary folder, listening only on
//! a unix socket of its own, stopped and removed on drop (also when the test fails).
//!
//! The server comes from Debian's `postgresql` package (`/usr/lib/postgresql/*/bin`). As root
//! it runs as the `postgres` user (or `nobody`), since PostgreSQL refuses to run as root.
//! Without the package the test is skipped, except under `CI=true`, where that is a failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<String>,
    /// `postgres://` URL of the database `weir` (created), over the socket.
    pub url: String,
}

fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn run_as(user: &Option<String>, program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

impl Postgres {
    /// Starts a server, or `None` (with a note) when PostgreSQL is not installed outside CI.
    pub fn start(name: &str) -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL is not installed (apt-get install postgresql); CI needs it");
            }
            eprintln!("skipping: PostgreSQL is not installed (/usr/lib/postgresql/*/bin)");
            return None;
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let user = root.then(|| {
            let has_postgres = Command::new("id")
                .arg("postgres")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if has_postgres { "postgres" } else { "nobody" }.to_string()
        });
        let dir = std::env::temp_dir().join(format!("weir-pg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut pg = Postgres {
            dir: dir.clone(),
            bin: bin.clone(),
            user: user.clone(),
            url: String::new(),
        };
        if let Some(u) = &user {
            let ok = Command::new("chown")
                .args([&format!("{u}:"), dir.to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot hand {} to {u}", dir.display());
        }
        let data = dir.join("data");
        let out = run_as(
            &user,
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "weir",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opts = format!("-c listen_addresses='' -k {} -p 5432", dir.display());
        let out = run_as(
            &user,
            &bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                dir.join("log").to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        let socket = dir.display().to_string().replace('/', "%2F");
        let admin = format!("postgres://weir@{socket}:5432/postgres");
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client.batch_execute("CREATE DATABASE weir").unwrap();
        drop(client);
        pg.url = format!("postgres://weir@{socket}:5432/weir");
        Some(pg)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if data.exists() {
            let _ = run_as(
                &self.user,
                &self.bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test's temporary folder (removed on drop) and, with `WEIR_TEST_STORE=postgres`, the
/// PostgreSQL server whose database the test's configurations name instead of `pe.sqlite`.
pub struct StoreDir(pub PathBuf, pub Option<Postgres>);

impl StoreDir {
    /// `kind` keeps the folders and clusters of different test binaries apart.
    pub fn new(kind: &str, test: &str) -> StoreDir {
        let p = std::env::temp_dir().join(format!("weir-{kind}-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        let pg = match std::env::var("WEIR_TEST_STORE").as_deref() {
            Ok("postgres") => Some(
                Postgres::start(&format!("{kind}-{test}"))
                    .expect("WEIR_TEST_STORE=postgres needs PostgreSQL installed"),
            ),
            _ => None,
        };
        StoreDir(p, pg)
    }

    /// A configuration on this test's store.
    pub fn store(&self, config: String) -> String {
        match &self.1 {
            Some(pg) => config.replace(
                "database = \"pe.sqlite\"",
                &format!("database = \"{}\"", pg.url),
            ),
            None => config,
        }
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
