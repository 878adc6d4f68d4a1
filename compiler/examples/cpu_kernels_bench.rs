//! The CPU kernels' benchmark (`make bench`): compiles small graphs for the host, runs their
//! kernels single-threaded on random data and prints one line of `key=value` pairs per
//! case: the median time, GFLOP/s for matmuls, GB/s for memory-bound kernels against a
//! memcpy of the same bytes measured in the same run, and the compile time per stage.
//!
//!     cargo run --release --example cpu_kernels_bench [CASE...]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flint_compiler::ir::NodeId;
use flint_compiler::lower::llvm::Cpu;
use flint_compiler::pipeline::{self, CompileOptions, Compiled, Target};
use flint_compiler::syntax;

type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64, *const i64);

struct Case {
    name: &'static str,
    source: String,
    /// Floating-point operations per run (0: report bandwidth instead).
    flops: f64,
}

fn cases() -> Vec<Case> {
    let matmul = |name, m: u64, k: u64, n: u64| Case {
        name,
        source: format!("graph g(a: f32[{m}, {k}], b: f32[{k}, {n}]) -> (y: f32[{m}, {n}]) {{\n    y = a @ b\n}}\n"),
        flops: 2.0 * (m * k * n) as f64,
    };
    vec![
        matmul("matmul_512", 512, 512, 512),
        matmul("matmul_1024", 1024, 1024, 1024),
        matmul("matmul_gpt2_mlp", 128, 768, 3072),
        Case {
            name: "linear_gpt2_mlp",
            source: "graph g(x: f32[128, 768], w: f32[3072, 768]) -> (y: f32[128, 3072]) {\n    y = linear(x, w)\n}\n".into(),
            flops: 2.0 * 128.0 * 768.0 * 3072.0,
        },
        Case {
            name: "attention_scores",
            source: "graph g(q: f32[12, 128, 64], k: f32[12, 64, 128]) -> (s: f32[12, 128, 128]) {\n    s = q @ k\n}\n".into(),
            flops: 2.0 * 12.0 * 128.0 * 64.0 * 128.0,
        },
        Case {
            name: "softmax_4096x1024",
            source: "graph g(x: f32[4096, 1024]) -> (y: f32[4096, 1024]) {\n    y = softmax(x, axis=-1)\n}\n".into(),
            flops: 0.0,
        },
        Case {
            name: "layer_norm_4096x1024",
            source: "graph g(x: f32[4096, 1024], g: f32[1024], b: f32[1024]) -> (y: f32[4096, 1024]) {\n    y = layer_norm(x, g, b)\n}\n".into(),
            flops: 0.0,
        },
        Case {
            name: "chain6_16M",
            source: "graph g(x: f32[4096, 4096]) -> (y: f32[4096, 4096]) {\n    y = tanh(relu(x * 0.5 + 1.0) - 0.25) * 3.0\n}\n".into(),
            flops: 0.0,
        },
    ]
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Runs every kernel once, in order, on `buffers`.
fn run_graph(c: &Compiled, lib: &libloading::Library, symbols: &[String], buffers: &mut HashMap<NodeId, Vec<u8>>) {
    for (id, kernel) in c.kernels.iter() {
        let mut pointers: Vec<*mut u8> = kernel
            .inputs
            .iter()
            .chain(&kernel.outputs)
            .map(|n| buffers.get_mut(n).map_or(std::ptr::null_mut(), |b| b.as_mut_ptr()))
            .collect();
        let extent = flint_compiler::lower::cpu::parallel_axis(kernel)
            .map_or(1, |a| kernel.domain[a].as_known().unwrap_or(1) as i64);
        let name = format!("{}\0", symbols[id.index()]);
        // SAFETY: every pointer is a buffer of the value's size; the symbol has the kernel
        // signature.
        unsafe {
            let f: libloading::Symbol<KernelFn> = lib.get(name.as_bytes()).expect("kernel symbol");
            f(pointers.as_mut_ptr() as *const *mut u8, 0, extent, [0i64].as_ptr());
        }
    }
}

fn bench(case: &Case) {
    let graph = syntax::compile_str(&case.source).expect("the case compiles");
    let opts = CompileOptions { target: Some(Target::Cpu(Cpu::Native)), ..Default::default() };
    let start = Instant::now();
    let c = pipeline::compile(&graph, &opts).expect("pipeline");
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let (Some(module), Some(so)) = (c.cpu.clone(), c.library.clone()) else { panic!("no code") };
    let file = std::env::temp_dir().join(format!("flint-bench-{}-{}.so", case.name, std::process::id()));
    std::fs::write(&file, so).expect("write");
    // SAFETY: a library just built from verified MLIR.
    let lib = unsafe { libloading::Library::new(&file) }.expect("dlopen");
    let mut buffers: HashMap<NodeId, Vec<u8>> = HashMap::new();
    let mut seed = 1u32;
    let mut bytes_moved = 0u64;
    for kernel in &c.kernels.kernels {
        for &n in kernel.inputs.iter().chain(&kernel.outputs) {
            let len = flint_compiler::kernel::bytes_at_bound(&c.graph, n) as usize;
            buffers.entry(n).or_insert_with(|| {
                bytes_moved += len as u64;
                (0..len / 4)
                    .flat_map(|_| {
                        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                        ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5).to_le_bytes()
                    })
                    .collect()
            });
        }
    }
    run_graph(&c, &lib, &module.symbols, &mut buffers);
    let iters = 5;
    let times: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            run_graph(&c, &lib, &module.symbols, &mut buffers);
            t.elapsed()
        })
        .collect();
    let t = median(times).as_secs_f64();
    let stages: Vec<String> =
        c.stages.iter().map(|r| format!("{}_ms={:.1}", r.name.replace('-', "_"), r.time.as_secs_f64() * 1e3)).collect();
    if case.flops > 0.0 {
        println!(
            "case={} median_ms={:.2} gflops={:.2} compile_ms={compile_ms:.0} {}",
            case.name,
            t * 1e3,
            case.flops / t / 1e9,
            stages.join(" ")
        );
    } else {
        let copy = memcpy_seconds(bytes_moved as usize / 2);
        println!(
            "case={} median_ms={:.2} gbps={:.2} memcpy_gbps={:.2} ratio={:.2} compile_ms={compile_ms:.0} {}",
            case.name,
            t * 1e3,
            bytes_moved as f64 / t / 1e9,
            bytes_moved as f64 / copy / 1e9,
            copy / t,
            stages.join(" ")
        );
    }
    let _ = std::fs::remove_file(&file);
}

/// The median time of copying `bytes` bytes (so `2·bytes` moved: read and write).
fn memcpy_seconds(bytes: usize) -> f64 {
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(&src);
            std::hint::black_box(&mut dst);
            t.elapsed()
        })
        .collect();
    median(times).as_secs_f64()
}

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    for case in cases().iter().filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.name)) {
        bench(case);
    }
}
