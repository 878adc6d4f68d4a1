#!/usr/bin/env bash
# The PTX of every example for sm_80, sm_90 and sm_121, assembled by `ptxas -v`: registers,
# stack, spills and shared memory per kernel, as a markdown table on stdout (make bench puts it
# in bench/RESULTS-gpu.md). No GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
flint=${FLINT:-target/debug/flint}
ptxas=${FLINT_PTXAS:-$(command -v ptxas || python3 -c "import importlib.metadata as m; d=m.distribution('nvidia-cuda-nvcc'); print(next(str(d.locate_file(f)) for f in d.files if f.name == 'ptxas'))")}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| example | sm | kernel | registers | stack B | spill stores B | spill loads B | static shared B | dynamic shared B |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
for f in ir-spec/examples/*.tg; do
    name=$(basename "$f" .tg)
    for sm in sm_80:sm_80 sm_90:sm_90a sm_121:sm_121a; do
        target=${sm%%:*}; arch=${sm##*:}
        "$flint" compile "$f" --target "$target" --emit ptx 2>/dev/null | sed 1d >"$tmp/k.ptx"
        # The dynamic shared memory each function is launched with, from the manifest.
        "$flint" compile "$f" --target "$target" --dump-after artifact 2>/dev/null |
            sed -n "s/.*${target} \([a-z_0-9]*\) shared \([0-9]*\) B.*/\1 \2/p" >"$tmp/dynamic"
        "$ptxas" -v -arch="$arch" "$tmp/k.ptx" -o "$tmp/k.cubin" 2>&1 | awk -v ex="$name" -v sm="$target" -v dyn="$tmp/dynamic" '
            BEGIN { while ((getline line < dyn) > 0) { split(line, f, " "); dynamic[f[1]] = f[2] } }
            /Compiling entry function/ { k = $7; gsub(/\047/, "", k) }
            /bytes stack frame/ { stack = $1; st = $5; ld = $9 }
            /Used [0-9]+ registers/ {
                regs = ""; shared = 0
                for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^registers/) regs = $i; if ($(i+1) ~ /^bytes/ && $(i+2) ~ /^smem/) shared = $i }
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", ex, sm, k, regs, stack, st, ld, shared, dynamic[k] + 0
            }'
    done
done
