#!/usr/bin/env bash
# The memory planner's benchmark: every MiniMalloc file in bench/minimalloc/, greedy best-fit
# by size (what TFLite and XLA ship) and Flint's planner side by side in one run, then the plan
# of every example, then the compile time of each stage on a GPT-2-small-shaped stack, then
# Flint's runtime against ONNX Runtime (bench/ort_compare.py). Writes bench/RESULTS.md with a
# description of the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# The planner and the pipeline up to the memory plan need no MLIR: a release build without it
# is quick.
cargo build --release --locked -p flint-compiler --no-default-features --bin flint
flint=target/release/flint
out=bench/RESULTS.md

# The CPU kernels need MLIR: the dev build that the tests share (kernels are optimised by
# LLVM at -O3 whatever Rust's profile).
cargo build --locked -p flint-compiler --bin flint --example cpu_kernels_bench
cpu_section() {
    echo "## CPU kernels"
    echo
    echo "Single thread, median of five runs, f32; Flint and NumPy run one after the other. Flint: \`cpu_kernels_bench\`"
    echo "(\`flint compile --target cpu\` code, run kernel by kernel); NumPy: OpenBLAS with"
    echo "\`OPENBLAS_NUM_THREADS=1\` (\`bench/numpy_matmul.py\`); memcpy: the same bytes copied in the same run."
    echo
    local flint_lines numpy_lines
    flint_lines=$(target/debug/examples/cpu_kernels_bench)
    numpy_lines=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python3 bench/numpy_matmul.py)
    echo "$numpy_lines" | sed -n 's/^# blas /NumPy BLAS: /p'
    echo
    echo "| case | flint ms | flint | reference | flint / reference | goal |"
    echo "|---|---:|---:|---:|---:|---:|"
    while read -r line; do
        local name ms
        name=$(field case "$line"); ms=$(field median_ms "$line")
        if [ -n "$(field gflops "$line")" ]; then
            local ref
            ref=$(grep "case=${name/linear_/matmul_} " <<<"$numpy_lines" | sed -n 's/.*gflops=\([^ ]*\).*/\1/p')
            echo "| $name | $ms | $(field gflops "$line") GFLOP/s | $ref GFLOP/s (NumPy) | $(awk -v a="$(field gflops "$line")" -v b="$ref" 'BEGIN { printf "%.2f", a / b }') | >= 0.9 |"
        else
            local goal=">= 0.5"
            [[ $name == chain* ]] && goal=">= 0.8"
            echo "| $name | $ms | $(field gbps "$line") GB/s | $(field memcpy_gbps "$line") GB/s (memcpy) | $(field ratio "$line") | $goal |"
        fi
    done <<<"$flint_lines"
    echo
    echo "Where the gaps come from (outside the matmul tile, kernels are scalar MLIR loops that LLVM vectorizes):"
    echo "- matmul: a 4x64 register tile of vector accumulators over k chunks of 128, each chunk of b"
    echo "  packed contiguous first (packing took 1024^3 from 0.62x to about 1.1x: unpacked, every k"
    echo "  of a wide b was a new page). Below 256 of k there are no chunks and no packing, and the"
    echo "  tile leaves through a scalar epilogue loop (5-15% of a matmul's time, measured by"
    echo "  shortening it)."
    echo "  \`linear_gpt2_mlp\` is the same product with PyTorch's [out, in] weights (the dot-product"
    echo "  tile); NumPy's figure beside it is for the plain layout."
    echo "- softmax and layer_norm: three passes over each row (softmax: max, exp and sum into a scratch"
    echo "  row, output; layer_norm: mean, variance, output), made from cache: each row start prefetches the"
    echo "  row two ahead, so memory keeps streaming while a row is computed (without it a softmax over"
    echo "  [4096, 1024] took a copy's time plus its arithmetic's: 1.7 ms, 1.45 with it). The max folds"
    echo "  with a NaN-free \`maxnum\` beside a NaN flag (the NaN-propagating \`maximumf\` was five dependent"
    echo "  instructions a vector) and \`exp\` scales by one power of two built from the rounding sum's low"
    echo "  bits (18 vector instructions; was 24): 2.0 -> 1.45 ms in all on a quiet run. What remains is"
    echo "  arithmetic that memory does not hide: with the rows in cache ([64, 1024], \`flint bench --threads"
    echo "  1\`) softmax takes 15.7 us and layer_norm 10.6 us (\`x * 2\`: 4 us), i.e. 1.0 and 0.68 ms for 4096"
    echo "  rows, beside the 0.59 ms a copy of the 32 MB takes at 57 GB/s: when memcpy runs that fast,"
    echo "  layer_norm's arithmetic plus its traffic (1.27 ms) is past the 1.18 ms that 0.5x allows, and"
    echo "  softmax's 1.0 ms of arithmetic leaves it under 0.5x whenever the machine is loaded (0.39 to"
    echo "  0.62 across the runs of 2026-12-02; its code did not change between them)."
    echo
    echo "Compile time, source to shared object (\`flint compile FILE --target cpu -o OUT.so\`, dev build):"
    echo
    echo "| graph | kernels | functions | lower-cpu ms | native-code ms | all stages ms |"
    echo "|---|---:|---:|---:|---:|---:|"
    local tmp
    tmp=$(mktemp -d)
    python3 bench/gpt2_stack.py 12 >"$tmp/gpt2_12.tg"
    for f in examples/mlp.tg examples/transformer.tg "$tmp/gpt2_12.tg"; do
        local log
        log=$(target/debug/flint compile "$f" --target cpu -o "$tmp/out.so" 2>&1 >/dev/null)
        local kernels functions lower native total label
        kernels=$(sed -n 's/^fusion .*kernels \([0-9]*\).*/\1/p' <<<"$log")
        functions=$(sed -n 's/^lower-cpu .*functions \([0-9]*\).*/\1/p' <<<"$log")
        lower=$(awk '/^lower-cpu/ {print $2}' <<<"$log"); native=$(awk '/^native-code/ {print $2}' <<<"$log")
        total=$(awk '/^total/ {print $2}' <<<"$log")
        label=$f; [[ $f == "$tmp"* ]] && label="GPT-2-small stack, 12 layers"
        echo "| $label | $kernels | $functions | $lower | $native | $total |"
    done
    rm -rf "$tmp"
    echo
    echo "Goal: the 12-layer stack from source to shared object in under 2 s (identical kernels"
    echo "compile once: 110 kernels are 13 functions)."
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
# Flint's runtime against ONNX Runtime on the same ONNX graphs (bench/ort_compare.py; the dev
# build above, which has MLIR). onnx==1.22.0 (as scripts/conformance.sh) and onnxruntime are
# installed here when missing, quietly and outside RESULTS.md.
ort_deps() {
    python3 -c 'import numpy, onnxruntime, onnx; assert onnx.__version__ == "1.22.0"' 2>/dev/null ||
        python3 -m pip install -q numpy onnx==1.22.0 onnxruntime >&2
}
ort_section() {
    ort_deps
    python3 bench/ort_compare.py target/debug/flint
    echo
    echo "Where Flint is slower (measured with \`flint bench FILE --profile\`, which times every kernel):"
    echo "- GPT-2 stack: about even on one thread; on two, the three large projections (\`c_fc\`, \`c_proj\`,"
    echo "  \`c_attn\`, 83% of a layer) scale 1.8x, because the threads split a matmul by rows and so each"
    echo "  packs every chunk of b for itself (twice the packing and twice b's traffic); attention is a"
    echo "  few percent."
    echo "- MobileNet-V2: at this model's small images (32x32 down to 2x2) the convolution rows run in"
    echo "  masked 16-lane blocks; the slowest kernel is now the last 1x1 conv, a matmul with 4 columns"
    echo "  that no register tile takes (a fifth of a run at batch 1), and no kernel is big enough to be"
    echo "  worth waking a second thread (hence no gain from two: a pool that spins between kernels"
    echo "  would let small kernels split)."
}

{
    echo "# Benchmarks: memory planner, compile time, CPU kernels"
    echo
    echo "Written by \`make bench\` (\`scripts/bench.sh\`) on $(date -u +%Y-%m-%d)."
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(uname -m)),"
    echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, vector units: $(grep -m1 -o -w -E 'avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')(of avx2/avx512f); $(rustc --version)."
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
    echo
    cpu_section
    echo
    ort_section
    echo
    ./scripts/bench_runtime.sh
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"

# The GPU side: measured only on a machine with a GPU (scripts/gpu-prepare.sh, then
# scripts/gpu-check.sh there); here the PTX's resource use per kernel, which needs no GPU.
{
    echo "# Flint GPU results"
    echo
    echo "Timings on a GPU come from \`scripts/gpu-check.sh\` on a machine with one (its table is"
    echo "added below with the device named when it has run). Written by \`make bench\` on: $(lscpu | sed -n 's/^Model name: *//p' | head -1)."
    echo
    echo "No GPU has run these kernels yet: no device was lent to the sessions that wrote them."
    echo
    echo "## PTX resources (\`ptxas -v\`)"
    echo
    echo "Every example's kernels for each target SM, as \`flint compile --target SM --emit ptx\` writes"
    echo "them, assembled by ptxas for sm_80, sm_90a and sm_121a (\`scripts/ptx_resources.sh\`)."
    echo "The tiled GEMMs (matmuls and one-group convolutions) take their tiles in dynamic shared memory,"
    echo "sized to each SM and to the GEMM (the last column, from the manifest; ir-spec/passes.md,"
    echo "\"Tiles per SM\"): the examples' GEMMs are small, so they run 64 × 64 f32 tiles in 4 stages"
    echo "(32 KiB) and 128 × 64 f16/bf16 tiles in 4 stages (58 KiB; 3, 43.5 KiB, on sm_121). They"
    echo "declare two blocks a multiprocessor (\`.minnctapersm 2\`), which holds ptxas to 128 registers;"
    echo "the GEMM with both operands head-split views (attention's q·kᵀ) spills a few hundred bytes."
    echo "Row kernels that run a block per row use static shared memory (the static column)."
    echo
    FLINT=target/debug/flint ./scripts/ptx_resources.sh
} >bench/RESULTS-gpu.md
