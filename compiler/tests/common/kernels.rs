//! Running compiled CPU kernels one by one against the interpreter's values.

use std::collections::HashMap;

use flint_compiler::interp::{self, DimValues, Tensor};
use flint_compiler::ir::{DType, NodeId, SymId};
use flint_compiler::kernel::KernelId;
use flint_compiler::lower::cpu;
use flint_compiler::pipeline::Compiled;
use flint_compiler::random;

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
pub fn reference(c: &Compiled, dims: &DimValues, seed: u64) -> Option<HashMap<NodeId, Tensor>> {
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

pub fn run_kernel(
    c: &Compiled,
    lib: &libloading::Library,
    id: KernelId,
    symbol: &str,
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
    let name = format!("{symbol}\0");
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

/// The whole graph through its artifact and the runtime (the JIT'd glue, two threads), on
/// fresh random inputs and weights at each symbol = 1, 3 (or its bound) and its bound; the
/// outputs must agree with the interpreter on the source graph. Returns the number of runs.
pub fn run_artifact(graph: &flint_compiler::ir::Graph, c: &Compiled, label: &str) -> usize {
    use flint_compiler::artifact::dtype as runtime_dtype;
    use flint_runtime::{LoadOptions, Model, TensorRef};
    let bytes = c.artifact.as_ref().unwrap_or_else(|| panic!("{label}: no artifact"));
    let mut model = Model::from_bytes(bytes, &LoadOptions { threads: 2, ..Default::default() })
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut runs = 0;
    type Pick = fn(u64) -> u64;
    let picks: [(Pick, u64); 3] = [(|_| 1, 21), (|b| b.min(3), 22), (|b| b, 23)];
    for (pick, seed) in picks {
        let dims: DimValues = graph.symbols.iter().enumerate().map(|(i, s)| (SymId(i as u32), pick(s.bound))).collect();
        let (Ok(inputs), Ok(params)) =
            (random::random_inputs(graph, &dims, seed), random::random_params(graph, &dims, seed + 100))
        else {
            continue;
        };
        // A graph whose evaluation fails (an integer division by zero) has no reference.
        let Ok(want) = interp::eval(graph, &dims, &inputs, &params) else { continue };
        for (name, t) in &params {
            let bytes = t.to_le_bytes();
            model
                .bind_weight(name, TensorRef::new(runtime_dtype(t.dtype), t.shape(), &bytes))
                .unwrap_or_else(|e| panic!("{label}: {e}"));
        }
        let input_bytes: Vec<(String, &Tensor, Vec<u8>)> =
            inputs.iter().map(|(n, t)| (n.clone(), t, t.to_le_bytes())).collect();
        let refs: Vec<(&str, TensorRef)> = input_bytes
            .iter()
            .map(|(n, t, b)| (n.as_str(), TensorRef::new(runtime_dtype(t.dtype), t.shape(), b)))
            .collect();
        let dim_list: Vec<(&str, u64)> = graph
            .symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), dims.get(SymId(i as u32)).unwrap_or(1)))
            .collect();
        let got =
            model.session().run_with_dims(&refs, &dim_list).unwrap_or_else(|e| panic!("{label}: {e} (dims {dims:?})"));
        assert_eq!(got.len(), want.len(), "{label}: outputs");
        for ((name, g), (want_name, w)) in got.iter().zip(&want) {
            assert_eq!(name, want_name, "{label}");
            assert_eq!(g.shape, w.shape(), "{label}: output {name} shape");
            let dtype = w.dtype;
            let (rtol, atol) = tolerance(dtype);
            // Errors compound over a chain of kernels: allow a few ulps more than one kernel.
            let (rtol, atol) = (rtol * 4.0, atol * 4.0);
            for (i, (gv, wv)) in values_of(&g.data, dtype).iter().zip(w.to_f64_vec()).enumerate() {
                let ok = (gv.is_nan() && wv.is_nan()) || *gv == wv || (gv - wv).abs() <= atol + rtol * wv.abs();
                assert!(ok, "{label}: output {name} element {i}: {gv} vs {wv} (dims {dims:?})");
            }
        }
        runs += 1;
    }
    runs
}
