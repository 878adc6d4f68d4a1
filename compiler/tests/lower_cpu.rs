//! CPU kernels against the reference interpreter: every kernel of every example is lowered
//! through MLIR and LLVM into one shared object, loaded, and run kernel by kernel on the
//! interpreter's values of its inputs (fresh random inputs and weights), at each symbol = 1,
//! an odd value and its bound; each call's range is split in two to check `[begin, end)`.
//! Outputs must agree with the interpreter within each dtype's tolerance.

#![cfg(feature = "mlir")]

use std::collections::HashMap;
use std::path::Path;

use flint_compiler::interp::{self, DimValues, Tensor};
use flint_compiler::ir::{DType, NodeId, SymId};
use flint_compiler::kernel::KernelId;
use flint_compiler::lower::{self, cpu, LowerError};
use flint_compiler::pipeline::{self, CompileOptions, Compiled};
use flint_compiler::{random, syntax};

type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64, *const i64);

fn bytes_of(t: &Tensor, dtype: DType) -> Vec<u8> {
    let values = t.to_f64_vec();
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        match dtype {
            DType::F32 => out.extend((v as f32).to_le_bytes()),
            DType::F16 => out.extend(half::f16::from_f64(v).to_le_bytes()),
            DType::BF16 => out.extend(half::bf16::from_f64(v).to_le_bytes()),
            DType::I32 => out.extend((v as i32).to_le_bytes()),
            DType::I64 => out.extend((v as i64).to_le_bytes()),
            DType::Bool => out.push(u8::from(v != 0.0)),
        }
    }
    out
}

fn values_of(bytes: &[u8], dtype: DType) -> Vec<f64> {
    let size = dtype.size_bytes();
    bytes
        .chunks_exact(size)
        .map(|c| match dtype {
            DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            DType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f64(),
            DType::BF16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f64(),
            DType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            DType::I64 => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64,
            DType::Bool => f64::from(c[0]),
        })
        .collect()
}

fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (2e-4, 2e-5),
        DType::F16 => (2e-2, 2e-3),
        DType::BF16 => (6e-2, 2e-2),
        DType::I32 | DType::I64 | DType::Bool => (0.0, 0.0),
    }
}

/// The interpreter's value of every node a kernel reads or writes.
fn reference(c: &Compiled, dims: &DimValues, seed: u64) -> Option<HashMap<NodeId, Tensor>> {
    let mut all = c.graph.clone();
    let boundary: Vec<NodeId> =
        c.kernels.kernels.iter().flat_map(|k| k.inputs.iter().chain(&k.outputs)).copied().collect();
    all.outputs = boundary.iter().map(|n| (format!("v{}", n.index()), *n)).collect();
    let inputs = random::random_inputs(&c.graph, dims, seed).ok()?;
    let params = random::random_params(&c.graph, dims, seed + 1).ok()?;
    // A graph whose evaluation fails (an integer division by zero) has no reference.
    let values = interp::eval(&all, dims, &inputs, &params).ok()?;
    Some(boundary.into_iter().zip(values.into_iter().map(|(_, t)| t)).collect())
}

struct Checked {
    kernels: usize,
    runs: usize,
    skipped: Vec<String>,
}

fn check_example(path: &Path, lib_dir: &Path) -> Checked {
    let label = path.display().to_string();
    let source = std::fs::read_to_string(path).expect("readable");
    let graph = syntax::compile_str(&source).unwrap_or_else(|_| panic!("{label} compiles"));
    let c = pipeline::compile(&graph, &CompileOptions::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut supported = Vec::new();
    let mut skipped = Vec::new();
    let mut module = String::from("module {\n");
    for (id, kernel) in c.kernels.iter() {
        match cpu::emit(&c.graph, id, kernel) {
            Ok(text) => {
                module.push_str(&text);
                supported.push(id);
            }
            Err(e @ LowerError::Unsupported { .. }) => skipped.push(format!("{label}: {e}")),
            Err(e) => panic!("{label}: {e}"),
        }
    }
    module.push_str("}\n");
    let object = lower::llvm::object(&module).unwrap_or_else(|e| panic!("{label}: {e}\n{module}"));
    let so = lower::llvm::link_shared(&object).unwrap_or_else(|e| panic!("{label}: {e}"));
    let file = lib_dir.join(format!("{}.so", path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default()));
    std::fs::write(&file, so).expect("write the shared object");
    // SAFETY: the library was just built from verified MLIR; its kernels only read and
    // write the buffers each call passes.
    let lib = unsafe { libloading::Library::new(&file) }.expect("dlopen");
    let mut runs = 0;
    for pick in [|_: u64| 1, |b: u64| b.min(3), |b: u64| b] {
        let dims: DimValues = graph.symbols.iter().enumerate().map(|(i, s)| (SymId(i as u32), pick(s.bound))).collect();
        let Some(reference) = reference(&c, &dims, 11) else { continue };
        for &id in &supported {
            run_kernel(&c, &lib, id, &dims, &reference, &label);
            runs += 1;
        }
    }
    Checked { kernels: supported.len(), runs, skipped }
}

fn run_kernel(
    c: &Compiled,
    lib: &libloading::Library,
    id: KernelId,
    dims: &DimValues,
    reference: &HashMap<NodeId, Tensor>,
    label: &str,
) {
    let kernel = &c.kernels.kernels[id.index()];
    let dtype = |n: &NodeId| c.graph.ty(*n).dtype;
    let mut buffers: Vec<Vec<u8>> = kernel.inputs.iter().map(|n| bytes_of(&reference[n], dtype(n))).collect();
    buffers.extend(kernel.outputs.iter().map(|n| vec![0xA5u8; bytes_of(&reference[n], dtype(n)).len()]));
    let mut pointers: Vec<*mut u8> = buffers.iter_mut().map(|b| b.as_mut_ptr()).collect();
    let dim_values: Vec<i64> =
        (0..c.graph.symbols.len()).map(|s| dims.get(SymId(s as u32)).unwrap_or(1) as i64).collect();
    let extent = cpu::parallel_axis(kernel).map_or(1, |a| kernel.domain[a].eval(|s| dims.get(s).unwrap_or(1)) as i64);
    let name = format!("{}\0", cpu::symbol(id));
    // SAFETY: the symbol is a kernel of this library with the documented signature; every
    // pointer is a live buffer of the size the kernel reads or writes at these dims.
    unsafe {
        let f: libloading::Symbol<KernelFn> = lib.get(name.as_bytes()).expect("kernel symbol");
        let mid = extent / 2;
        f(pointers.as_mut_ptr() as *const *mut u8, 0, mid, dim_values.as_ptr());
        f(pointers.as_mut_ptr() as *const *mut u8, mid, extent, dim_values.as_ptr());
    }
    for (k, o) in kernel.outputs.iter().enumerate() {
        let got = values_of(&buffers[kernel.inputs.len() + k], dtype(o));
        let want = reference[o].to_f64_vec();
        let (rtol, atol) = tolerance(dtype(o));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= atol + rtol * w.abs();
            assert!(ok, "{label}: {id} output {o} element {i}: {g} vs {w} (dims {dims:?})");
        }
    }
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
    let (mut checked, mut runs, mut skipped) = (0, 0, Vec::new());
    for path in &files {
        let r = check_example(path, &dir);
        (checked, runs) = (checked + r.kernels, runs + r.runs);
        skipped.extend(r.skipped);
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{checked} kernels checked in {runs} runs; {} not lowered yet:\n{}", skipped.len(), skipped.join("\n"));
    assert!(skipped.is_empty(), "kernels the CPU lowering refused:\n{}", skipped.join("\n"));
    assert!(checked >= 160 && runs >= 3 * 160, "only {checked} kernels in {runs} runs were checked");
}
