#!/usr/bin/env bash
# The memory planner's benchmark: every MiniMalloc file in bench/minimalloc/, greedy best-fit
# by size (what TFLite and XLA ship) and Flint's planner side by side in one run, then the plan
# of every example, then the compile time of each stage on a GPT-2-small-shaped stack. Writes
# bench/RESULTS.md with a description of the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# The planner and the pipeline up to the memory plan need no MLIR: a release build without it
# is quick.
cargo build --release --locked -p flint-compiler --no-default-features --bin flint
flint=target/release/flint
out=bench/RESULTS.md
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

{
    echo "# Benchmarks: memory planner, compile time"
    echo
    echo "Written by \`make bench\` (\`scripts/bench.sh\`) on $(date -u +%Y-%m-%d)."
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(uname -m)),"
    echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version)."
    echo "Shared and noisy: compare the two columns of one run, not runs with each other."
    echo
    echo "## MiniMalloc benchmarks"
    echo
    echo "lower bound = the peak of live bytes (no plan beats it); ratio = arena / lower bound."
    echo "Flint's planner has a 1 s budget per file (\`flint plan FILE\`), greedy none (\`flint plan --greedy FILE\`)."
    echo
    echo "| file | buffers | lower bound | greedy arena | greedy ratio | greedy ms | flint arena | flint ratio | flint ms | proven optimal |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for f in bench/minimalloc/*.csv; do
        g=$("$flint" plan --greedy "$f")
        s=$("$flint" plan "$f")
        echo "| $(basename "$f") | $(field buffers "$s") | $(field lower_bound "$s") | $(field arena_bytes "$g") | $(field ratio "$g") | $(field time_ms "$g") | $(field arena_bytes "$s") | $(field ratio "$s") | $(field time_ms "$s") | $(field optimal "$s") |"
    done
    echo
    echo "## Compiled examples"
    echo
    echo "\`flint compile FILE --report\`: intermediates at the symbols' upper bounds, 64-byte aligned."
    echo
    echo "| example | kernels | buffers | in place | lower bound | greedy arena | flint arena | ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for f in ir-spec/examples/*.tg examples/*.tg; do
        r=$("$flint" compile "$f" --report 2>/dev/null)
        line=$(head -1 <<<"$r")
        arena=$(awk '{print $2}' <<<"$line"); lb=$(awk '{print $6}' <<<"$line"); ratio=$(awk '{print $9}' <<<"$line")
        greedy=$(sed -n 's/.*greedy best-fit \([0-9]*\) B.*/\1/p' <<<"$line")
        buffers=$(sed -n 's/^buffers \([0-9]*\) (\([0-9]*\) written.*/\1 | \2/p' <<<"$r")
        kernels=$(sed -n 's/^kernels \([0-9]*\)$/\1/p' <<<"$r")
        echo "| $f | $kernels | $buffers | $lb | $greedy | $arena | $ratio |"
    done
    echo
    echo "## Compile time"
    echo
    echo "\`flint compile\` (release) on a GPT-2-small-shaped stack (\`bench/gpt2_stack.py\`: d=768, 12 heads,"
    echo "MLP 3072, batch <= 4, sequence <= 128), median of five runs per stage. Nodes in = after the front"
    echo "end; the front end (parse, type-check, fn inlining) is not a pipeline stage and not in the total."
    echo "Goal: every stage together under 200 ms for 12 layers and under 1 s for 48; 48 layers no more than"
    echo "5x the time of 12."
    echo
    python3 bench/compile_time.py "$flint"
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
