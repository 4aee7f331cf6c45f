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
    Ok(())
}
