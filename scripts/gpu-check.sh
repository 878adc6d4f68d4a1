#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU over the folder that gpu-prepare.sh made:
# every artifact runs on the CPU and on CUDA device 0 under each memory policy, the outputs
# are compared (scripts/npy_compare.py: within 1e-4 relative, 1e-5 absolute), and each is timed
# with `flint bench --device cuda` (median ms and bytes copied per run). Writes RESULT (default
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
rm -rf "$work"
cat "$result"
exit $failed
