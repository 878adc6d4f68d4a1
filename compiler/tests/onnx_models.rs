//! Real models exported by PyTorch (`examples/onnx/export.py`): imported, run on the
//! reference interpreter and compared with ONNX Runtime's outputs, at the exported batch and
//! at other values of the dynamic dims.

use std::path::PathBuf;

use flint_compiler::interp::{self, DimValues, TensorMap};
use flint_compiler::ir::SymId;
use flint_compiler::onnx::conformance::compare;
use flint_compiler::onnx::{self, writer, ImportOptions};
use flint_compiler::{npy, random, syntax};

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
