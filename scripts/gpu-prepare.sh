#!/usr/bin/env bash
# Prepares the GPU check on this machine (no GPU needed): every example and the speed
# benchmarks compiled for sm_80, sm_90 and sm_121 (beside their CPU code) by this machine's
# full `flint`, and a runner `flint` built without code generation (the runtime alone, no
# MLIR or LLVM inside: about 5 MB, where the full one is over 150) in gpu-check/, which the
# device run carries: `scripts/gpu-check.sh gpu-check` there only runs and measures.
#
#     scripts/gpu-prepare.sh [PROFILE]     (the runner's profile; default: dist, LTO, stripped)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-dist}
cargo build --locked -p flint-compiler --bin flint
compiler=target/debug/flint
# The runner in a target folder of its own under the dev profile, whose target/debug/flint is
# the full one.
runner_target=target; [ "$profile" = dev ] && runner_target=target/runner
cargo build --locked --profile "$profile" --target-dir "$runner_target" -p flint-compiler --no-default-features --bin flint
dir=gpu-check
rm -rf "$dir" && mkdir -p "$dir"
out=$profile; [ "$profile" = dev ] && out=debug
cp "$runner_target/$out/flint" "$dir/flint"
# The examples, and GEMMs large enough for each SM's largest tiles (tests/gpu/).
for f in ir-spec/examples/*.tg examples/mlp.tg examples/transformer.tg tests/gpu/*.tg; do
    name=$(basename "$f" .tg)
    "$compiler" compile "$f" --target sm_80,sm_90,sm_121 -o "$dir/$name.tgx" 2>/dev/null
done
# The speed benchmarks: bandwidth-bound kernels, tensor-core matmuls, 1000 tiny launches.
mkdir -p "$dir/speed"
for f in bench/gpu/*.tg; do
    "$compiler" compile "$f" --target sm_80,sm_90,sm_121 -o "$dir/speed/$(basename "$f" .tg).tgx" 2>/dev/null
done
cp scripts/gpu-check.sh scripts/npy_compare.py scripts/cuda_copy.py scripts/torch_matmul.py "$dir/"
echo "prepared $dir: $(ls "$dir"/*.tgx | wc -l) artifacts, $(ls "$dir"/speed/*.tgx | wc -l) speed artifacts, flint $(du -h "$dir/flint" | cut -f1)"
ldd "$dir/flint" | grep -v -E 'linux-vdso|libc\.so|libm\.so|libgcc_s|ld-linux|libstdc\+\+|libpthread|libdl|librt|libz' || true
