#!/usr/bin/env bash
# Prepares the GPU check on this machine (no GPU needed): a release `flint` and every example
# compiled for sm_80, sm_90 and sm_121 (beside its CPU code), in gpu-check/, which the device
# run carries: `scripts/gpu-check.sh gpu-check` there only runs and measures.
#
#     scripts/gpu-prepare.sh [PROFILE]     (default: dist, the small static release build)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-dist}
cargo build --locked --profile "$profile" -p flint-compiler --bin flint
dir=gpu-check
rm -rf "$dir" && mkdir -p "$dir"
out=$profile; [ "$profile" = dev ] && out=debug
cp "target/$out/flint" "$dir/flint"
for f in ir-spec/examples/*.tg examples/mlp.tg examples/transformer.tg; do
    name=$(basename "$f" .tg)
    "$dir/flint" compile "$f" --target sm_80,sm_90,sm_121 -o "$dir/$name.tgx" 2>/dev/null
done
# The speed benchmarks: bandwidth-bound kernels, tensor-core matmuls, 1000 tiny launches.
mkdir -p "$dir/speed"
for f in bench/gpu/*.tg; do
    "$dir/flint" compile "$f" --target sm_80,sm_90,sm_121 -o "$dir/speed/$(basename "$f" .tg).tgx" 2>/dev/null
done
cp scripts/gpu-check.sh scripts/npy_compare.py scripts/cuda_copy.py scripts/torch_matmul.py "$dir/"
echo "prepared $dir: $(ls "$dir"/*.tgx | wc -l) artifacts, $(ls "$dir"/speed/*.tgx | wc -l) speed artifacts, flint $(du -h "$dir/flint" | cut -f1)"
ldd "$dir/flint" | grep -v -E 'linux-vdso|libc\.so|libm\.so|libgcc_s|ld-linux|libstdc\+\+|libpthread|libdl|librt|libz' || true
