//! CPU kernels against the reference interpreter: every kernel of every example is lowered
//! through MLIR and LLVM into one shared object, loaded, and run kernel by kernel on the
//! interpreter's values of its inputs (fresh random inputs and weights), at each symbol = 1,
//! an odd value and its bound; each call's range is split in two to check `[begin, end)`.
//! Outputs must agree with the interpreter within each dtype's tolerance. Then the whole graph
//! runs through its `.tgx` artifact and the runtime, and its outputs must agree as well.

#![cfg(feature = "mlir")]

use std::path::Path;

use flint_compiler::interp::DimValues;
use flint_compiler::ir::{Graph, SymId};
use flint_compiler::lower::llvm::Cpu;
use flint_compiler::lower::LowerError;
use flint_compiler::pipeline::{self, CompileError, CompileOptions, Compiled, Target};
use flint_compiler::syntax;
use proptest::prelude::*;

#[path = "common/kernels.rs"]
mod kernels;
#[path = "common/random_program.rs"]
mod random_program;
use kernels::{reference, run_artifact, run_kernel};

struct Checked {
    kernels: usize,
    runs: usize,
    /// Runs of the whole graph through its artifact.
    graph_runs: usize,
    skipped: Vec<String>,
}

fn check_example(path: &Path, lib_dir: &Path) -> Checked {
    let label = path.display().to_string();
    let source = std::fs::read_to_string(path).expect("readable");
    let graph = syntax::compile_str(&source).unwrap_or_else(|_| panic!("{label} compiles"));
    let target = Some(Target::Cpu(Cpu::Native));
    let c = match pipeline::compile(&graph, &CompileOptions { target, ..Default::default() }) {
        Ok(c) => c,
        Err(CompileError::Lower(e @ LowerError::Unsupported { .. })) => {
            return Checked { kernels: 0, runs: 0, graph_runs: 0, skipped: vec![format!("{label}: {e}")] }
        }
        Err(e) => panic!("{label}: {e}"),
    };
    let (Some(module), Some(so)) = (c.cpu.clone(), c.library.clone()) else { panic!("{label}: no code") };
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let runs = run_all(&graph, &c, &module.symbols, &so, &lib_dir.join(format!("{stem}.so")), &label);
    let graph_runs = run_artifact(&graph, &c, &label);
    Checked { kernels: c.kernels.kernels.len(), runs, graph_runs, skipped: Vec::new() }
}

/// Loads the shared object from `file` and runs every kernel at each symbol = 1, 3 (or its
/// bound) and its bound; returns the number of kernel runs.
fn run_all(graph: &Graph, c: &Compiled, symbols: &[String], so: &[u8], file: &Path, label: &str) -> usize {
    std::fs::write(file, so).expect("write the shared object");
    // SAFETY: the library was just built from verified MLIR; its kernels only read and
    // write the buffers each call passes.
    let lib = unsafe { libloading::Library::new(file) }.expect("dlopen");
    let mut runs = 0;
    for pick in [|_: u64| 1, |b: u64| b.min(3), |b: u64| b] {
        let dims: DimValues = graph.symbols.iter().enumerate().map(|(i, s)| (SymId(i as u32), pick(s.bound))).collect();
        let Some(reference) = reference(c, &dims, 11) else { continue };
        for (id, _) in c.kernels.iter() {
            run_kernel(c, &lib, id, &symbols[id.index()], &dims, &reference, label);
            runs += 1;
        }
    }
    runs
}

#[test]
fn every_example_kernel_agrees_with_the_interpreter() {
    let dir = std::env::temp_dir().join(format!("flint-lower-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: Vec<_> = std::fs::read_dir(root.join("ir-spec/examples"))
        .expect("examples")
        .chain(std::fs::read_dir(root.join("examples")).expect("examples"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tg"))
        .collect();
    files.sort();
    let (mut checked, mut runs, mut graph_runs, mut skipped) = (0, 0, 0, Vec::new());
    for path in &files {
        let r = check_example(path, &dir);
        (checked, runs, graph_runs) = (checked + r.kernels, runs + r.runs, graph_runs + r.graph_runs);
        skipped.extend(r.skipped);
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{checked} kernels checked in {runs} runs, {graph_runs} whole-graph runs through artifacts; {} not lowered yet:\n{}",
        skipped.len(),
        skipped.join("\n")
    );
    assert!(graph_runs + 3 >= 3 * files.len(), "only {graph_runs} whole-graph runs for {} files", files.len());
    assert!(skipped.is_empty(), "kernels the CPU lowering refused:\n{}", skipped.join("\n"));
    assert!(checked >= 160 && runs >= 3 * 160, "only {checked} kernels in {runs} runs were checked");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random graphs (the pass tests' generator): every kernel agrees with the interpreter.
    #[test]
    fn random_graph_kernels_agree_with_the_interpreter(
        b in 1usize..6,
        steps in prop::collection::vec((0usize..64, 0usize..64), 1..7),
        returned in 0usize..16,
    ) {
        let source = random_program::program(b, &steps, returned);
        let graph = syntax::compile_str(&source).map_err(|d| TestCaseError::fail(format!("{source}\n{d:?}")))?;
        let target = Some(Target::Cpu(Cpu::Native));
        let c = pipeline::compile(&graph, &CompileOptions { target, ..Default::default() })
            .map_err(|e| TestCaseError::fail(format!("{source}\n{e}")))?;
        let (Some(module), Some(so)) = (c.cpu.clone(), c.library.clone()) else { panic!("no code") };
        let file = std::env::temp_dir().join(format!("flint-random-{}-{}.so", std::process::id(), unique()));
        run_all(&graph, &c, &module.symbols, &so, &file, &source);
        let _ = std::fs::remove_file(&file);
        run_artifact(&graph, &c, &source);
    }
}

/// A fresh number per call: glibc's dlopen matches libraries by path, so each random graph
/// gets its own file.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Contractions through the register tiles (columns a multiple of 64 with `b` read in place,
/// or `b` transposed with `k` a multiple of 16):
/// row counts that leave a remainder after the 4-row blocks, a batch, a broadcast batch, an
/// epilogue, and a second output read by a later kernel.
#[test]
fn tiled_contractions_agree_with_the_interpreter() {
    let sources = [
        "graph t1(x: f32[N<=9, 70], w: f32[70, 128], b: f32[128]) -> (y: f32[N, 128]) {\n    y = relu(x @ w + b)\n}\n",
        "graph t2(q: f32[2, S<=7, 64], k: f32[2, 64, 192]) -> (y: f32[2, S, 192]) {\n    y = (q @ k) * 0.5\n}\n",
        "graph t3(q: f32[3, S<=5, 16], k: f32[16, 64]) -> (y: f32[3, S, 64], z: f32[3, S, 64]) {\n    y = q @ k\n    z = tanh(y) + y\n}\n",
        // `b` transposed (PyTorch's [out, in] weights): the dot-product tile.
        "graph t4(x: f32[N<=9, 64], w: f32[12, 64], b: f32[12]) -> (y: f32[N, 12]) {\n    y = gelu(linear(x, w, b))\n}\n",
        "graph t5(x: f32[2, S<=6, 32], w: f32[8, 32]) -> (y: f32[2, S, 8]) {\n    y = linear(x, w) * 2.0\n}\n",
        ATTENTION_VIEWS,
        // Convolutions by output rows 16 columns at a time: padding on both sides, stride 2
        // (the even lanes of two loads), dilation, depthwise groups, widths that leave an
        // overlapping last block, and a row too narrow for any block.
        "graph t7(x: f32[N<=2, 4, 9, 40], w: f32[6, 4, 3, 3], b: f32[6]) -> (y: f32[N, 6, 9, 40]) {\n    y = relu(conv2d(x, w, b, padding=[1, 1, 1, 1]))\n}\n",
        "graph t8(x: f32[N<=2, 3, 11, 70], w: f32[5, 3, 3, 3]) -> (y: f32[N, 5, 6, 35]) {\n    y = conv2d(x, w, stride=[2, 2], padding=[1, 1, 1, 1])\n}\n",
        "graph t9(x: f32[N<=2, 4, 8, 37], w: f32[4, 1, 3, 3]) -> (y: f32[N, 4, 8, 37]) {\n    y = conv2d(x, w, padding=[2, 2, 2, 2], dilation=[2, 2], groups=4) * 0.5\n}\n",
        "graph t10(x: f32[N<=2, 2, 5, 17], w: f32[3, 2, 3, 3]) -> (y: f32[N, 3, 5, 17]) {\n    y = conv2d(x, w, padding=[1, 1, 1, 1])\n}\n",
        // The plain tile in k chunks (128, 128, 44), each chunk of b packed, over groups of
        // 256 rows (two groups at the bound, the second partial) with a remainder row, and an
        // epilogue.
        "graph t11(x: f32[N<=301, 300], w: f32[300, 64], b: f32[64]) -> (y: f32[N, 64]) {\n    y = relu(x @ w + b)\n}\n",
        // Two log_softmaxes over the symbolic axis, the range the other axis, split in two.
        "graph t13(x: f32[N<=4, 2]) -> (y: f32[N, 2]) {\n    v1 = log_softmax(x, axis=0)\n    y = abs(log_softmax(v1, axis=0)) + v1\n}\n",
        // Chunks of a batched b, packed per batch.
        "graph t12(x: f32[2, S<=9, 256], w: f32[2, 256, 128]) -> (y: f32[2, S, 128]) {\n    y = x @ w\n}\n",
    ];
    let dir = std::env::temp_dir().join(format!("flint-tiled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut runs = 0;
    for (i, source) in sources.iter().enumerate() {
        let path = dir.join(format!("t{i}.tg"));
        std::fs::write(&path, source).expect("write");
        let checked = check_example(&path, &dir);
        assert!(checked.skipped.is_empty(), "{:?}", checked.skipped);
        runs += checked.runs;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(runs >= 9, "{runs} runs");
}

/// Attention's heads as PyTorch exports them: `q`, `k` and `v` sliced out of one projection,
/// split into heads and permuted. Through strided views, `q @ k` runs as the dot-product tile
/// (unit stride along `k` in both) and `p @ v` as the plain tile (unit stride along `v`'s
/// columns), with no scalar dot product left.
const ATTENTION_VIEWS: &str =
    "graph t6(qkv: f32[2, 8, 384], p: f32[2, 2, 8, 8]) -> (s: f32[2, 2, 8, 8], o: f32[2, 2, 8, 64]) {
    q = permute(reshape(slice(qkv, axis=-1, start=0, end=128), shape=[2, 8, 2, 64]), perm=[0, 2, 1, 3])
    k = permute(reshape(slice(qkv, axis=-1, start=128, end=256), shape=[2, 8, 2, 64]), perm=[0, 2, 3, 1])
    v = permute(reshape(slice(qkv, axis=-1, start=256, end=384), shape=[2, 8, 2, 64]), perm=[0, 2, 1, 3])
    s = (q @ k) * 0.125
    o = p @ v
}
";

#[test]
fn attention_heads_through_views_use_the_register_tiles() {
    let graph = syntax::compile_str(ATTENTION_VIEWS).expect("compiles");
    let target = Some(Target::Cpu(Cpu::Native));
    let c = pipeline::compile(&graph, &CompileOptions { target, ..Default::default() }).expect("compiles");
    let text = &c.cpu.as_ref().expect("code").text;
    assert!(text.contains("vector.reduction <add>"), "no dot-product tile:\n{text}");
    assert!(text.contains("llvm.intr.fmuladd"), "no register tile:\n{text}");
    assert!(!text.contains("-> (f32)"), "a scalar dot product is left:\n{text}");
}

/// An MLIR failure names the kernels of the function it points into.
#[test]
fn mlir_errors_name_the_kernel() {
    let module = "module {\n  // kernel 0 (elementwise)\n  func.func @f0() {\n    return\n  }\n  // kernel 1 (row), kernel 4 (row)\n  func.func @f1() {\n    %x = arith.addf %y, %y : f32\n    return\n  }\n}\n";
    let error = flint_compiler::lower::llvm::verify(module).expect_err("an undefined value").to_string();
    assert!(error.contains("kernel 1 (row), kernel 4 (row)"), "{error}");
    assert!(!error.contains("kernel 0"), "{error}");
}

/// A batch of one is not a loop: a `[1, M, K] @ [K, N] + b` kernel's range is its rows (so
/// threads can split them), and its epilogue reads the register tile instead of computing a
/// scalar dot product per element (the tile's results were once memoised at the batch's loop
/// variable and missed at the broadcast index 0: 270x slower).
#[test]
fn a_batch_of_one_splits_by_rows_and_its_epilogue_reads_the_tile() {
    let source =
        "graph g(x: f32[1, 8, 32], w: f32[32, 64], b: f32[64]) -> (y: f32[1, 8, 64]) {\n    y = x @ w + b\n}\n";
    let graph = syntax::compile_str(source).expect("compiles");
    let target = Some(Target::Cpu(Cpu::Native));
    let c = pipeline::compile(&graph, &CompileOptions { target, ..Default::default() }).expect("compiles");
    let kernel = &c.kernels.kernels[0];
    assert_eq!(flint_compiler::lower::cpu::parallel_axis(kernel), Some(1));
    let text = &c.cpu.as_ref().expect("code").text;
    assert!(text.contains("vector<16xf32>"), "no register tile:\n{text}");
    assert!(!text.contains("-> (f32)"), "a scalar dot product in the epilogue:\n{text}");
    assert_eq!(run_artifact(&graph, &c, source), 3);
}
