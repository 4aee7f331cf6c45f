//! Generates the gRPC contracts (proto/weir/v1/*.proto) with prost and tonic, using the protoc
//! shipped in a crate so a fresh machine needs no system protoc. The file descriptor set is kept
//! for gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/weir/v1/common.proto",
    "proto/weir/v1/gateway.proto",
    "proto/weir/v1/policy_engine.proto",
    "proto/weir/v1/admin.proto",
    "proto/weir/v1/charging_system.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("weir_v1_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    git_revision();
    Ok(())
}

/// `WEIR_GIT_REVISION` for `weir --version`: the short commit of HEAD, or "unknown" outside a
/// git checkout (a source tarball) or without git.
fn git_revision() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let revision = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) if !rev.is_empty() => rev,
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=WEIR_GIT_REVISION={revision}");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
    // In a worktree, .git is a file naming the real git directory.
    // A path that does not exist would rerun this script on every build: name only those that do.
    let watch = |path: Option<String>| {
        if let Some(p) = path.filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={p}");
        }
    };
    watch(git(&["rev-parse", "--git-path", "HEAD"]));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    watch(git(&["rev-parse", "--git-path", "packed-refs"]));
}
