//! Compiles the federation contract with protox (pure Rust), so no `protoc` is needed on
//! developer machines, CI or container builds.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["tongban/federation/v1/federation.proto"];
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("tongban_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Undecodable messages are INVALID_ARGUMENT, not INTERNAL (see src/contract/codec.rs).
        .codec_path("crate::contract::codec::StrictCodec")
        // Sorted maps make encodings deterministic: the same application is the same
        // bytes at every node (and can be signed or compared as bytes).
        .btree_map(".")
        // Signed objects are cached and answered many times: `Bytes` clones share.
        .bytes(".tongban.federation.v1.SignedObject")
        .compile_fds(fds)?;
    // tonic-prost-build 0.14 stores but never emits its rerun flag, so say it here.
    println!("cargo:rerun-if-changed=tongban");
    println!("cargo:rerun-if-changed=../data/gbt2260.csv");
    println!("cargo:rerun-if-changed=../catalog/national.json");
    Ok(())
}
