#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU over the folder that gpu-prepare.sh made:
# every artifact runs on the CPU and on CUDA device 0 under each memory policy, the outputs
# are compared (scripts/npy_compare.py: within 1e-4 relative, 1e-5 absolute), and each is timed
# with `flint bench --device cuda` (median ms and bytes copied per run); then the speed
# benchmarks of bench/gpu/ (bandwidth against a device-to-device copy, f16/bf16 matmuls against
# cuBLAS through PyTorch when it is there, 1000 tiny launches). Writes RESULT (default
# gpu-check.md in the folder) and exits non-zero when any comparison fails.
#
#     scripts/gpu-check.sh DIR [RESULT]
set -uo pipefail
dir=${1:?usage: gpu-check.sh DIR [RESULT]}
result=${2:-$dir/gpu-check.md}
flint="$dir/flint"
work=$(mktemp -d)
failed=0
{
    echo "# GPU check"
    echo
    echo "Device: $(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
    echo "Host: $(uname -m), $(nproc) cores"
    echo
    echo "| artifact | unified | discrete | host | cpu median ms | cuda median ms (unified) | copied B | cuda median ms (discrete) | copied B |"
    echo "|---|---|---|---|---:|---:|---:|---:|---:|"
} >"$result"
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
for artifact in "$dir"/*.tgx; do
    name=$(basename "$artifact" .tgx)
    "$flint" run "$artifact" --device cpu --out "$work/$name-cpu" >/dev/null 2>"$work/err" || { echo "$name: cpu run failed: $(cat "$work/err")"; failed=1; continue; }
    row="| $name"
    for memory in unified discrete host; do
        if "$flint" run "$artifact" --device cuda --memory "$memory" --out "$work/$name-$memory" >/dev/null 2>"$work/err"; then
            if verdict=$(python3 "$dir/npy_compare.py" "$work/$name-cpu" "$work/$name-$memory" 2>&1); then
                row+=" | agrees"
            else
                row+=" | **differs**: ${verdict//|/ }"; failed=1
            fi
        else
            row+=" | **run failed**: $(tr '\n|' '  ' <"$work/err" | cut -c1-200)"; failed=1
        fi
    done
    cpu=$("$flint" bench "$artifact" --device cpu --iters 20 2>/dev/null)
    row+=" | $(field median_ms "$cpu")"
    for memory in unified discrete; do
        b=$("$flint" bench "$artifact" --device cuda --memory "$memory" --iters 20 2>/dev/null)
        row+=" | $(field median_ms "$b") | $(field copied_bytes "$b")"
    done
    echo "$row |" >>"$result"
done
# Speed (when gpu-prepare.sh made speed/): device time of the kernels by `flint bench --profile`
# (CUDA events around each launch), discrete memory so that no run reads host memory.
if [ -d "$dir/speed" ]; then
    kernel_ms() { sed -n 's/.*kernels, \([0-9.]*\) ms\/run in kernels.*/\1/p' <<<"$1"; }
    copy=$(python3 "$dir/cuda_copy.py" $((64 << 20)))
    gbps=$(field copy_gbps "$copy")
    {
        echo
        echo "## Speed"
        echo
        echo "Device-to-device copy of 64 MiB: $gbps GB/s (read + written). Kernel times are device time"
        echo "(CUDA events) from \`flint bench --device cuda --memory discrete --profile\`."
        echo
        echo "| benchmark | kernel ms | GB/s | of copy | goal |"
        echo "|---|---:|---:|---:|---|"
    } >>"$result"
    for case in softmax:33554432 layer_norm:33554432 chain6:134217728; do
        name=${case%%:*}; bytes=${case##*:}
        out=$("$flint" bench "$dir/speed/$name.tgx" --device cuda --memory discrete --iters 20 --profile 2>&1)
        ms=$(kernel_ms "$out")
        rate=$(python3 -c "print(f'{$bytes / ($ms / 1e3) / 1e9:.1f}')" 2>/dev/null || echo "?")
        share=$(python3 -c "print(f'{$rate / $gbps:.2f}')" 2>/dev/null || echo "?")
        echo "| $name | $ms | $rate | $share | >= 0.9 |" >>"$result"
    done
    {
        echo
        echo "| matmul | flint ms | flint TFLOPS | cuBLAS TFLOPS | ratio | goal |"
        echo "|---|---:|---:|---:|---:|---|"
    } >>"$result"
    for t in f16 bf16; do
        for n in 4096 8192; do
            out=$("$flint" bench "$dir/speed/matmul_${t}_$n.tgx" --device cuda --memory discrete --iters 10 --warmup 2 --profile 2>&1)
            ms=$(kernel_ms "$out")
            tflops=$(python3 -c "print(f'{2 * $n**3 / ($ms / 1e3) / 1e12:.1f}')" 2>/dev/null || echo "?")
            cublas=$(field cublas_tflops "$(python3 "$dir/torch_matmul.py" "$n" "$t")")
            ratio=$(python3 -c "print(f'{$tflops / $cublas:.2f}')" 2>/dev/null || echo "?")
            echo "| ${t} ${n}³ | $ms | $tflops | $cublas | $ratio | >= 0.7 |" >>"$result"
        done
    done
    out=$("$flint" bench "$dir/speed/launches.tgx" --device cuda --iters 20 2>&1)
    median=$(field median_ms "$out")
    per=$(python3 -c "print(f'{$median * 1e3 / 1000:.2f}')" 2>/dev/null || echo "?")
    echo >>"$result"
    echo "1000 tiny kernels (\`launches\`): $median ms a run, $per µs per kernel (the glue's call and the launch)." >>"$result"
fi
rm -rf "$work"
cat "$result"
exit $failed
