//! Generates the peer protocol's code from `proto/` at build time, with
//! protox (pure Rust), so the build needs no system `protoc`.
//!
//! `proto/messaging.proto` is the product's protocol. The verbatim harepd
//! proto (fields 1-6 only) is generated into `OUT_DIR/harepd/` for the
//! compatibility tests, which include it themselves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let ours = protox::compile(["proto/messaging.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // `status --ask` prints a peer's whole answer as JSON.
        .type_attribute(".models", "#[derive(serde::Serialize)]")
        .compile_fds(ours)?;

    let harepd_dir = out.join("harepd");
    std::fs::create_dir_all(&harepd_dir)?;
    let harepd = protox::compile(["proto/harepd-messaging.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .out_dir(&harepd_dir)
        .compile_fds(harepd)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
