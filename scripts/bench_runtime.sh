#!/usr/bin/env bash
# The runtime's own costs, printed as a markdown section for bench/RESULTS.md (scripts/bench.sh
# calls this): load and first run of the MLP artifact, the host glue's dispatch cost per kernel
# on a graph of 800 tiny kernels, the stripped size of a program that links the runtime (until
# the C API exports symbols, the cdylib alone would be garbage-collected to nothing), and the peak
# resident memory of a process that runs an artifact against the plan's arena and weights.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --locked -p flint-compiler --bin flint
# The runtime as embedders ship it: the `dist` profile (LTO, dependencies optimised for size,
# stripped).
cargo build --quiet --locked --profile dist -p flint-runtime --example run_artifact
flint=target/debug/flint
run_artifact=target/dist/examples/run_artifact
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# 1000 chained softmaxes over [1, 8]: fusion makes 800 row kernels, 4 distinct functions.
python3 - >"$scratch/tiny.tg" <<'PY'
print("graph tiny(x: f32[1, 8]) -> (y: f32[1, 8]) {")
prev = "x"
for i in range(1000):
    print(f"    a{i} = softmax({prev}, axis=-1)")
    prev = f"a{i}"
print(f"    y = {prev}\n}}")
PY
$flint compile "$scratch/tiny.tg" -o "$scratch/tiny.tgx" 2>/dev/null
$flint compile examples/mlp.tg -o "$scratch/mlp.tgx" 2>/dev/null
python3 bench/gpt2_stack.py 12 >"$scratch/gpt2.tg"
$flint compile "$scratch/gpt2.tg" -o "$scratch/gpt2.tgx" 2>/dev/null

tiny=$($flint bench "$scratch/tiny.tgx" --threads 1 --iters 500 --warmup 20)
kernels=$(field kernels "$tiny")
per_kernel_us=$(awk -v ms="$(field median_ms "$tiny")" -v k="$kernels" 'BEGIN { printf "%.3f", ms * 1000 / k }')
mlp=$($flint bench "$scratch/mlp.tgx" --threads 1 --iters 50)
lib_mb=$(awk -v b="$(stat -c %s "$run_artifact")" 'BEGIN { printf "%.2f", b / 1048576 }')
mlp_rss=$($run_artifact "$scratch/mlp.tgx" --iters 5 --threads 1)
gpt_rss=$($run_artifact "$scratch/gpt2.tgx" --iters 1 --threads 1)
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
kb_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo "## Runtime overhead"
echo
echo "\`scripts/bench_runtime.sh\`, one thread. Dispatch: a chain of 1000 softmaxes over [1, 8], which fusion"
echo "makes $kernels row kernels; the median run divided by the kernels (each kernel's own work included)."
echo "Peak RSS: \`runtime/examples/run_artifact\` (the runtime alone, no compiler) loading the artifact,"
echo "binding zero weights and running at the bounds; VmHWM from /proc/self/status."
echo
echo "| measure | value | goal |"
echo "|---|---:|---:|"
echo "| load + first run, MLP artifact | $(field load_and_first_run_ms "$mlp") ms | < 50 ms |"
echo "| MLP run (N=64), median | $(field median_ms "$mlp") ms | |"
echo "| dispatch per kernel ($kernels kernels, median $(field median_ms "$tiny") ms) | $per_kernel_us µs | < 2 µs |"
echo "| load of the $kernels-kernel artifact (JIT of its glue included) | $(field load_and_first_run_ms "$tiny") ms | |"
echo "| \`run_artifact\` built with \`--profile dist\` (LTO, deps at opt-level s, stripped): the whole runtime (Cranelift, loader, threads, CUDA probe) and a driver | $lib_mb MB | < 5 MB |"
echo "| peak RSS, MLP: arena $(mb "$(field arena_bytes "$mlp_rss")") MB + weights $(mb "$(field weight_bytes "$mlp_rss")") MB | $(kb_mb "$(field peak_rss_kb "$mlp_rss")") MB | |"
echo "| peak RSS, 12-layer GPT-2 stack (B=4, T=128): arena $(mb "$(field arena_bytes "$gpt_rss")") MB + weights $(mb "$(field weight_bytes "$gpt_rss")") MB | $(kb_mb "$(field peak_rss_kb "$gpt_rss")") MB | |"
echo
