#!/usr/bin/env bash
# Regenerates compiler/src/onnx/proto/onnx.rs from the vendored compiler/src/onnx/proto/onnx.proto.
#
# The generated Rust is checked in, so building Flint needs neither protoc nor this script.
# Run it only after updating onnx.proto. It compiles the .proto with protox (a protobuf
# compiler in pure Rust, so no system protoc) and feeds the descriptors to prost-build,
# in a throwaway cargo project under target/ (git-ignored).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
proto_dir="$root/compiler/src/onnx/proto"
work="$root/target/onnx-protogen"
mkdir -p "$work/src"

cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "onnx-protogen"
version = "0.0.0"
edition = "2021"
publish = false

# Its own workspace: this project is not a member of Flint's.
[workspace]

[dependencies]
prost-build = "0.14"
protox = "0.10"
TOML

cat > "$work/src/main.rs" <<'RS'
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: onnx-protogen PROTO_DIR")?);
    let descriptors = protox::compile([dir.join("onnx.proto")], [&dir])?;
    prost_build::Config::new().out_dir(&dir).compile_fds(descriptors)?;
    Ok(())
}
RS

cargo run --quiet --release --manifest-path "$work/Cargo.toml" -- "$proto_dir"
# prost-build names the file after the proto package.
rustfmt --edition 2021 --config max_width=120 "$proto_dir/onnx.rs"
echo "wrote $proto_dir/onnx.rs"
