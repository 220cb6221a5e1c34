//! Compiles the internal services (`proto/sieve/cluster/v1/{shard,models}.proto` in this
//! crate: internal, so not beside the public API in the top-level `proto/`) with protox, no
//! `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let files =
        ["shard.proto", "models.proto"].map(|name| root.join("sieve/cluster/v1").join(name));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
