//! Real models exported by PyTorch (`examples/onnx/export.py`): imported, run on the
//! reference interpreter and compared with ONNX Runtime's outputs, at the exported batch and
//! at other values of the dynamic dims; then compiled for the CPU and run through the
//! artifact and the runtime, and compared again.

use std::path::PathBuf;

use flint_compiler::interp::{self, DimValues, Tensor, TensorMap};
use flint_compiler::ir::SymId;
use flint_compiler::onnx::conformance::compare;
use flint_compiler::onnx::{self, writer, ImportOptions};
use flint_compiler::{npy, random, syntax};

/// The graph compiled for this CPU and loaded by the runtime, with the model's weights.
#[cfg(feature = "mlir")]
fn compiled(imported: &onnx::Imported) -> flint_runtime::Model {
    use flint_compiler::pipeline::{self, CompileOptions, Target};
    let target = Some(Target::Cpu(flint_compiler::lower::llvm::Cpu::Native));
    let c = pipeline::compile(&imported.graph, &CompileOptions { target, ..Default::default() }).expect("compiles");
    let bytes = c.artifact.expect("an artifact");
    let mut model = flint_runtime::Model::from_bytes(&bytes, &Default::default()).expect("loads");
    for (name, t) in &imported.params {
        let data = t.to_le_bytes();
        let view = flint_runtime::TensorRef::new(flint_compiler::artifact::dtype(t.dtype), t.shape(), &data);
        model.bind_weight(name, view).expect("binds");
    }
    model
}

/// The first output of a run through the runtime, as an interpreter tensor.
#[cfg(feature = "mlir")]
fn run_compiled(model: &flint_runtime::Model, feed: &TensorMap) -> Tensor {
    let bytes: Vec<(&str, &Tensor, Vec<u8>)> = feed.iter().map(|(n, t)| (n.as_str(), t, t.to_le_bytes())).collect();
    let refs: Vec<(&str, flint_runtime::TensorRef)> = bytes
        .iter()
        .map(|(n, t, b)| (*n, flint_runtime::TensorRef::new(flint_compiler::artifact::dtype(t.dtype), t.shape(), b)))
        .collect();
    let out = model.session().run(&refs).expect("runs");
    let t = &out[0].1;
    Tensor::from_le_bytes(flint_compiler::artifact::from_dtype(t.dtype), &t.shape, &t.data).expect("an output")
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/onnx").join(name)
}

fn import(model: &str, bounds: &[(&str, u64)]) -> onnx::Imported {
    let mut options = ImportOptions::default();
    options.dim_bounds.extend(bounds.iter().map(|(k, v)| (k.to_string(), *v)));
    onnx::import_file(&example(&format!("{model}.onnx")), &options).expect("the model imports")
}

/// The model on its recorded input gives ONNX Runtime's output, and so does its source.
fn matches_onnx_runtime(model: &str, bounds: &[(&str, u64)]) {
    let imported = import(model, bounds);
    let x = npy::read_npy(&example(&format!("{model}_input.npy"))).expect("input");
    let want = npy::read_npy(&example(&format!("{model}_expected.npy"))).expect("expected output");
    let mut inputs = TensorMap::new();
    inputs.insert("x".into(), x);
    let got = interp::run(&imported.graph, &inputs, &imported.params).expect("evaluates");
    compare(&got[0].1, &want, 1e-4, 1e-5).expect("matches ONNX Runtime");

    let source = writer::write_source(&imported.graph, &[]).expect("writes source");
    let again = syntax::compile_str(&source).expect("the source compiles");
    let from_source = interp::run(&again, &inputs, &imported.params).expect("the source evaluates");
    assert_eq!(got, from_source);
    #[cfg(feature = "mlir")]
    compare(&run_compiled(&compiled(&imported), &inputs), &want, 1e-4, 1e-5).expect("compiled, matches ONNX Runtime");
}

#[test]
fn mlp_matches_onnx_runtime() {
    matches_onnx_runtime("mlp", &[("batch", 64)]);
}

#[test]
fn transformer_block_matches_onnx_runtime() {
    matches_onnx_runtime("block", &[("batch", 8), ("seq", 64)]);
}

#[test]
fn mobilenet_v2_matches_onnx_runtime() {
    matches_onnx_runtime("mobilenet_v2", &[("batch", 8)]);
}

#[test]
fn mobilenet_v3_small_matches_onnx_runtime() {
    matches_onnx_runtime("mobilenet_v3_small", &[("batch", 8)]);
}

#[test]
fn the_block_runs_at_other_sizes_of_its_dynamic_dims() {
    let imported = import("block", &[("batch", 8), ("seq", 64)]);
    let g = &imported.graph;
    for (batch, seq) in [(1, 1), (3, 5), (8, 64)] {
        let dims = DimValues::from_iter([(SymId(0), batch), (SymId(1), seq)]);
        let inputs = random::random_inputs(g, &dims, batch * 100 + seq).expect("inputs");
        let out = interp::run(g, &inputs, &imported.params).expect("evaluates");
        assert_eq!(out[0].1.shape(), &[batch as usize, seq as usize, 32]);
        assert!(out[0].1.to_f64_vec().iter().all(|v| v.is_finite()));
    }
}

/// One import of a block with batch and seq dynamic matches ONNX Runtime at both recorded
/// sizes (`<model>_<batch>x<seq>_<input>.npy`), and so does its written source.
fn block_matches_onnx_runtime_at_two_sizes(model: &str, inputs: &[&str], sizes: [(u64, u64); 2]) {
    let imported = import(model, &[("batch", 4), ("seq", 16)]);
    let source = writer::write_source(&imported.graph, &[]).expect("writes source");
    let again = syntax::compile_str(&source).expect("the source compiles");
    #[cfg(feature = "mlir")]
    let runtime = compiled(&imported);
    for (batch, seq) in sizes {
        let file = |name: &str| example(&format!("{model}_{batch}x{seq}_{name}.npy"));
        let mut feed = TensorMap::new();
        for name in inputs {
            feed.insert(name.to_string(), npy::read_npy(&file(name)).expect("input"));
        }
        let want = npy::read_npy(&file("expected")).expect("expected output");
        let got = interp::run(&imported.graph, &feed, &imported.params).expect("evaluates");
        compare(&got[0].1, &want, 1e-4, 1e-5).unwrap_or_else(|e| panic!("{model} at {batch}x{seq}: {e}"));
        let from_source = interp::run(&again, &feed, &imported.params).expect("the source evaluates");
        assert_eq!(got, from_source);
        #[cfg(feature = "mlir")]
        compare(&run_compiled(&runtime, &feed), &want, 1e-4, 1e-5)
            .unwrap_or_else(|e| panic!("{model} compiled, at {batch}x{seq}: {e}"));
    }
}

#[test]
fn bert_block_matches_onnx_runtime_at_two_sizes() {
    block_matches_onnx_runtime_at_two_sizes("bert_block", &["x", "attention_mask"], [(2, 7), (3, 5)]);
}

#[test]
fn gpt2_block_matches_onnx_runtime_at_two_sizes() {
    block_matches_onnx_runtime_at_two_sizes("gpt2_block", &["input_ids"], [(2, 7), (3, 12)]);
}

#[test]
fn a_causal_mask_sliced_past_its_buffer_is_refused_by_name() {
    // gpt2_block's mask buffer holds 32 positions; a seq bound of 40 could slice past it.
    let path = example("gpt2_block.onnx");
    let mut options = ImportOptions::default();
    options.dim_bounds.extend([("batch".to_string(), 4), ("seq".to_string(), 40)]);
    let err = onnx::import_file(&path, &options).expect_err("the slice may run past the buffer").to_string();
    assert!(err.contains("/Slice_4") && err.contains("to `seq`, which may reach 40"), "{err}");
}
