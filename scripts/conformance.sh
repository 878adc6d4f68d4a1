#!/usr/bin/env bash
# ONNX conformance: runs ONNX's backend node tests through Flint's ONNX importer and
# reference interpreter, and each case the interpreter passes through the CPU backend too
# (compiled, loaded by the runtime, run), prints a table per ONNX op and writes it to
# conformance/RESULTS.md.
#
# The tests ship in the `onnx` Python package (1.22.0 is the last release whose wheel has
# onnx/backend/test/data/node/*/model.onnx with test_data_set_*/input_*.pb and output_*.pb).
# The wheel is fetched once with `pip download` (no install) into target/onnx-conformance/,
# which is git-ignored. Extra arguments go to the harness (e.g. --filter softmax --verbose).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
version="1.22.0"
cache="$root/target/onnx-conformance"
node_dir="$cache/onnx-$version/onnx/backend/test/data/node"

if [ ! -d "$node_dir" ]; then
  mkdir -p "$cache/wheel"
  if ! ls "$cache"/wheel/onnx-"$version"-*.whl >/dev/null 2>&1; then
    echo "conformance: fetching onnx==$version (the wheel only, not installed)"
    python3 -m pip download --quiet --no-deps --dest "$cache/wheel" "onnx==$version"
  fi
  wheel="$(ls "$cache"/wheel/onnx-"$version"-*.whl | head -n 1)"
  rm -rf "$cache/onnx-$version.tmp"
  python3 - "$wheel" "$cache/onnx-$version.tmp" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [n for n in z.namelist() if n.startswith("onnx/backend/test/data/node/")])
PY
  mv "$cache/onnx-$version.tmp" "$cache/onnx-$version"
fi

mkdir -p "$root/conformance"
cd "$root"
# The dev build the tests share (MLIR is compiled once); kernels are optimised by LLVM whatever
# Rust's profile.
cargo run --quiet -p flint-compiler --example onnx_conformance -- \
  "$node_dir" --out "$root/conformance/RESULTS.md" --compiled \
  --source "onnx $version (Python package), onnx/backend/test/data/node" "$@"
