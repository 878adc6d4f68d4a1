//! Runs ONNX backend node tests (`<case>/model.onnx` with `test_data_set_0/input_*.pb` and
//! `output_*.pb`, as shipped in the `onnx` Python package) through the importer and the
//! reference interpreter, and compares with the expected outputs as ONNX's backend runner
//! does: equal shapes and dtypes, then `|y - r| <= atol + rtol * |r|` element by element, NaN
//! equal to NaN.
//!
//! Each case also goes through [`write_source`](super::writer::write_source) and the front
//! end, and the source must evaluate to exactly the imported graph's results. With
//! [`run_case_compiled`], a case the interpreter passes is then compiled for this CPU and run
//! through its artifact and the runtime, and compared with the expected outputs the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{import_model, read_model, read_tensor, ImportOptions, OnnxError};
use crate::interp::{self, Tensor, TensorMap};
use crate::ir::{verify, Graph, Op};
use crate::onnx::proto::{tensor_shape_proto::dimension::Value as D, type_proto};

/// ONNX's default tolerances for node tests (`onnx/backend/test/loader`); no node test in
/// ONNX 1.22 overrides them.
pub const RTOL: f64 = 1e-3;
pub const ATOL: f64 = 1e-7;

/// How one case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    /// The importer refused the model: an op, dtype or attribute Flint lacks.
    Unsupported(String),
    /// Anything else: a wrong result, or an error that should not happen.
    Fail(String),
}

/// The result of one case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub name: String,
    /// The ONNX op under test (for an `_expanded` case, the op its function came from).
    pub op: String,
    pub outcome: Outcome,
    /// Graph inputs fixed to the test's values at import time (shape-like inputs).
    pub frozen: Vec<String>,
    /// Through the CPU backend, when asked for and the interpreter passed.
    pub compiled: Option<Outcome>,
}

/// The test cases under `dir` (directories holding a `model.onnx`), sorted by name.
pub fn cases(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// The op a case tests: the op of its single node; for an expanded case (many nodes), the
/// op of the case it was expanded from (the name up to `_expanded`).
pub fn case_op(dir: &Path) -> String {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let single = |d: &Path| -> Option<String> {
        let m = read_model(&d.join("model.onnx")).ok()?;
        match m.graph?.node.as_slice() {
            [n] => n.op_type.clone(),
            _ => None,
        }
    };
    if let Some(op) = single(dir) {
        return op;
    }
    if let Some(at) = name.find("_expanded") {
        if let Some(op) = dir.parent().and_then(|p| single(&p.join(&name[..at]))) {
            return op;
        }
    }
    "(unknown)".into()
}

/// Runs one case on the interpreter.
pub fn run_case(dir: &Path) -> CaseResult {
    run(dir, |_| None)
}

/// Runs one case on the interpreter and, when it passes there, through the CPU backend.
#[cfg(feature = "mlir")]
pub fn run_case_compiled(dir: &Path) -> CaseResult {
    run(dir, |case| {
        Some(match compiled(case) {
            Ok(()) => Outcome::Pass,
            Err(Failure::Unsupported(m)) => Outcome::Unsupported(m),
            Err(Failure::Fail(m)) => Outcome::Fail(m),
        })
    })
}

fn run(dir: &Path, backend: impl Fn(&Case) -> Option<Outcome>) -> CaseResult {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut frozen = Vec::new();
    let (outcome, compiled) = match check(dir, &mut frozen) {
        Ok(case) => (Outcome::Pass, backend(&case)),
        Err(Failure::Unsupported(m)) => (Outcome::Unsupported(m), None),
        Err(Failure::Fail(m)) => (Outcome::Fail(m), None),
    };
    CaseResult { name, op: case_op(dir), outcome, frozen, compiled }
}

/// A case the interpreter passed: what the backend runs and what it must give.
#[cfg_attr(not(feature = "mlir"), allow(dead_code))]
struct Case {
    graph: Graph,
    feed: TensorMap,
    params: TensorMap,
    expected: Vec<(String, Tensor)>,
}

/// The case compiled for this CPU, loaded by the runtime and run on the test's inputs.
#[cfg(feature = "mlir")]
fn compiled(case: &Case) -> Result<(), Failure> {
    use crate::artifact::{dtype, from_dtype};
    use crate::lower::LowerError;
    use crate::pipeline::{compile, CompileError, CompileOptions, Target};
    use flint_runtime::{LoadOptions, Model, TensorRef};
    let target = Some(Target::Cpu(crate::lower::llvm::Cpu::Native));
    let c = compile(&case.graph, &CompileOptions { target, ..Default::default() }).map_err(|e| match e {
        CompileError::Lower(e @ LowerError::Unsupported { .. }) => Failure::Unsupported(e.to_string()),
        e => fail(format!("compiling: {e}")),
    })?;
    let bytes = c.artifact.ok_or_else(|| fail("no artifact"))?;
    let mut model = Model::from_bytes(&bytes, &LoadOptions { threads: 1, ..Default::default() })
        .map_err(|e| fail(format!("loading: {e}")))?;
    for (name, t) in &case.params {
        let data = t.to_le_bytes();
        model.bind_weight(name, TensorRef::new(dtype(t.dtype), t.shape(), &data)).map_err(|e| fail(e.to_string()))?;
    }
    let data: Vec<(&str, &Tensor, Vec<u8>)> = case.feed.iter().map(|(n, t)| (n.as_str(), t, t.to_le_bytes())).collect();
    let inputs: Vec<(&str, TensorRef)> =
        data.iter().map(|(n, t, b)| (*n, TensorRef::new(dtype(t.dtype), t.shape(), b))).collect();
    // The test's inputs are at the bounds (the importer bounds each symbol by them).
    let dims: Vec<(&str, u64)> = case.graph.symbols.iter().map(|s| (s.name.as_str(), s.bound)).collect();
    let got = model.session().run_with_dims(&inputs, &dims).map_err(|e| fail(format!("running: {e}")))?;
    for (i, ((name, y), (_, r))) in got.iter().zip(&case.expected).enumerate() {
        let y = Tensor::from_le_bytes(from_dtype(y.dtype), &y.shape, &y.data).map_err(|e| fail(e.to_string()))?;
        compare(&y, r, RTOL, ATOL).map_err(|m| fail(format!("output {i} `{name}`: {m}")))?;
    }
    Ok(())
}

enum Failure {
    Unsupported(String),
    Fail(String),
}

impl From<OnnxError> for Failure {
    fn from(e: OnnxError) -> Failure {
        if e.is_unsupported() {
            Failure::Unsupported(e.to_string())
        } else {
            Failure::Fail(e.to_string())
        }
    }
}

fn fail(m: impl Into<String>) -> Failure {
    Failure::Fail(m.into())
}

/// The `input_*.pb` or `output_*.pb` files of a data set, in index order.
fn data_files(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, Failure> {
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| fail(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            (p.extension()? == "pb").then_some((stem, p))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

fn check(dir: &Path, frozen: &mut Vec<String>) -> Result<Case, Failure> {
    let model = read_model(&dir.join("model.onnx"))?;
    let g = model.graph.as_ref().ok_or_else(|| fail("the model has no graph"))?;
    if let Some(v) = g.input.iter().chain(&g.output).find(|v| !is_tensor(v)) {
        let name = v.name.as_deref().unwrap_or("");
        return Err(Failure::Unsupported(format!("`{name}`: a sequence, map or optional value is not supported")));
    }
    let data = dir.join("test_data_set_0");
    let inputs = data_files(&data, "input_")?.iter().map(|p| read_tensor(p)).collect::<Result<Vec<_>, _>>()?;
    let expected = data_files(&data, "output_")?.iter().map(|p| read_tensor(p)).collect::<Result<Vec<_>, _>>()?;
    let initialized: Vec<&str> = g.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let declared: Vec<_> = g.input.iter().filter(|i| !initialized.contains(&i.name.as_deref().unwrap_or(""))).collect();
    let fed: Vec<(String, &Tensor)> =
        declared.iter().zip(&inputs).map(|(i, (_, t))| (i.name.clone().unwrap_or_default(), t)).collect();
    // Symbolic dims are bounded by the sizes the test feeds.
    let mut options = ImportOptions::default();
    for (info, (_, t)) in declared.iter().zip(&inputs) {
        if let Some(type_proto::Value::TensorType(tt)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            for (d, &len) in tt.shape.iter().flat_map(|s| &s.dim).zip(t.shape()) {
                if let Some(D::DimParam(p)) = &d.value {
                    options.dim_bounds.insert(p.clone(), len.max(1) as u64);
                }
            }
        }
    }
    // A tensor without elements carries only its shape, which Flint needs at compile time.
    for (name, t) in &fed {
        if t.numel() == 0 {
            options.constants.insert(name.clone(), (*t).clone());
        }
    }
    let imported = import_frozen(&model, &mut options, &fed)?;
    frozen.extend(options.constants.keys().cloned());
    let graph = &imported.graph;
    verify::verify(graph).map_err(|e| fail(format!("the imported graph does not verify: {e}")))?;
    let mut feed = TensorMap::new();
    let live = fed.iter().filter(|(n, _)| !options.constants.contains_key(n));
    for (&id, (_, t)) in graph.inputs.iter().zip(live) {
        if let Op::Input { name } = graph.op(id) {
            feed.insert(name.clone(), (*t).clone());
        }
    }
    let got = interp::run(graph, &feed, &imported.params).map_err(|e| fail(format!("evaluation failed: {e}")))?;
    if got.len() != expected.len() {
        return Err(fail(format!("{} outputs, expected {}", got.len(), expected.len())));
    }
    for (i, ((name, y), (_, r))) in got.iter().zip(&expected).enumerate() {
        compare(y, r, RTOL, ATOL).map_err(|m| fail(format!("output {i} `{name}`: {m}")))?;
    }
    round_trip(graph, &feed, &imported.params, &got)?;
    Ok(Case { graph: imported.graph, feed, params: imported.params, expected })
}

fn is_tensor(v: &crate::onnx::proto::ValueInfoProto) -> bool {
    matches!(v.r#type.as_ref().and_then(|t| t.value.as_ref()), Some(type_proto::Value::TensorType(_)))
}

/// Imports the model; where a node needs a graph input's value at import time (a shape, axes,
/// a size given as an input tensor), fixes that input to the test's value and tries again.
/// When the needed value is computed from inputs, every integer input of rank <= 1 (the
/// shape-like ones) is fixed, or failing those, every scalar input.
fn import_frozen(
    model: &crate::onnx::proto::ModelProto,
    options: &mut ImportOptions,
    fed: &[(String, &Tensor)],
) -> Result<super::Imported, OnnxError> {
    loop {
        match import_model(model, options) {
            Err(OnnxError::NeedsConstant { node, input, value, graph_input }) => {
                let direct = fed.iter().find(|(n, _)| *n == value && !options.constants.contains_key(n));
                let open = |(n, _): &&(String, &Tensor)| !options.constants.contains_key(n);
                let shape_like = |(_, t): &&(String, &Tensor)| !t.dtype.is_float() && t.shape().len() <= 1;
                let scalar = |(_, t): &&(String, &Tensor)| t.shape().is_empty();
                let candidates: Vec<&(String, &Tensor)> = match direct {
                    Some(d) => vec![d],
                    None => {
                        let ints: Vec<_> = fed.iter().filter(open).filter(shape_like).collect();
                        if ints.is_empty() {
                            fed.iter().filter(open).filter(scalar).collect()
                        } else {
                            ints
                        }
                    }
                };
                if candidates.is_empty() {
                    return Err(OnnxError::NeedsConstant { node, input, value, graph_input });
                }
                for (n, t) in candidates {
                    options.constants.insert(n.clone(), (*t).clone());
                }
            }
            other => return other,
        }
    }
}

/// The graph written as source and compiled again must give bit-identical results.
fn round_trip(graph: &Graph, feed: &TensorMap, params: &TensorMap, want: &[(String, Tensor)]) -> Result<(), Failure> {
    let source = super::writer::write_source(graph, &[]).map_err(|e| fail(format!("writing source: {e}")))?;
    let again = crate::syntax::compile_str(&source).map_err(|d| {
        let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
        fail(format!("the written source does not compile: {first}\n{source}"))
    })?;
    let got = interp::run(&again, feed, params).map_err(|e| fail(format!("evaluating the written source: {e}")))?;
    let same = got.len() == want.len() && got.iter().zip(want).all(|((_, a), (_, b))| bit_equal(a, b));
    if same {
        Ok(())
    } else {
        Err(fail("the written source computes different results"))
    }
}

fn bit_equal(a: &Tensor, b: &Tensor) -> bool {
    a.dtype == b.dtype
        && a.shape() == b.shape()
        && a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// `numpy.testing.assert_allclose(y, r, rtol, atol)` (NaN equals NaN) after equal dtypes and
/// shapes; integers and bools must be equal.
pub fn compare(y: &Tensor, r: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if y.dtype != r.dtype {
        return Err(format!("dtype {} but expected {}", y.dtype, r.dtype));
    }
    if y.shape() != r.shape() {
        return Err(format!("shape {:?} but expected {:?}", y.shape(), r.shape()));
    }
    let (ys, rs) = (y.to_f64_vec(), r.to_f64_vec());
    let mut worst: Option<(usize, f64, f64)> = None;
    let mut bad = 0;
    for (i, (&a, &b)) in ys.iter().zip(&rs).enumerate() {
        let ok = if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if a.is_infinite() || b.is_infinite() {
            a == b
        } else if y.dtype.is_float() {
            (a - b).abs() <= atol + rtol * b.abs()
        } else {
            a == b
        };
        if !ok {
            bad += 1;
            worst.get_or_insert((i, a, b));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, a, b)) => Err(format!("{bad} of {} elements differ; first at {i}: got {a}, expected {b}", ys.len())),
    }
}

/// Per-op counts for the results table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub tests: usize,
    pub passed: usize,
    /// Passed with shape-like inputs fixed at import time.
    pub passed_frozen: usize,
    pub failed: usize,
    pub unsupported: usize,
    /// Through the CPU backend: passed, failed, and refused by the lowering.
    pub cpu_passed: usize,
    pub cpu_failed: usize,
    pub cpu_unsupported: usize,
}

impl Counts {
    pub fn add(&mut self, r: &CaseResult) {
        self.tests += 1;
        match &r.outcome {
            Outcome::Pass => {
                self.passed += 1;
                self.passed_frozen += usize::from(!r.frozen.is_empty());
            }
            Outcome::Fail(_) => self.failed += 1,
            Outcome::Unsupported(_) => self.unsupported += 1,
        }
        match &r.compiled {
            Some(Outcome::Pass) => self.cpu_passed += 1,
            Some(Outcome::Fail(_)) => self.cpu_failed += 1,
            Some(Outcome::Unsupported(_)) => self.cpu_unsupported += 1,
            None => {}
        }
    }
}

/// Counts by op, and the totals.
pub fn tally(results: &[CaseResult]) -> (BTreeMap<String, Counts>, Counts) {
    let mut by_op: BTreeMap<String, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for r in results {
        by_op.entry(r.op.clone()).or_default().add(r);
        total.add(r);
    }
    (by_op, total)
}
