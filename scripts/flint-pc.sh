#!/usr/bin/env bash
# Writes flint.pc for the build tree, so that a C program builds against the runtime's C API
# with `cc app.c $(pkg-config --cflags --libs flint)` once PKG_CONFIG_PATH holds the folder
# printed (TARGET/pkgconfig). The library is the cdylib `cargo build -p flint-runtime` makes
# (rpath set, so the program runs without LD_LIBRARY_PATH).
#
#     scripts/flint-pc.sh [PROFILE_DIR]      (default: debug)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
target=$(cd "$target" && pwd)
profile=${1:-debug}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
mkdir -p "$target/pkgconfig"
cat >"$target/pkgconfig/flint.pc" <<PC
includedir=$root/runtime/include
libdir=$target/$profile

Name: flint
Description: The Flint runtime's C API: load .tgx artifacts and run them
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lflint_runtime
PC
echo "$target/pkgconfig"
