//! Generates the tonic/prost bindings from `proto/tollgate/v1/*.proto` with protox, a
//! pure-Rust protobuf compiler, so building needs no system `protoc`. Also writes the
//! encoded descriptor set that server reflection and the CLI's JSON output read.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "tollgate/v1/token.proto",
        "tollgate/v1/management.proto",
        "tollgate/v1/audit.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tollgate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
