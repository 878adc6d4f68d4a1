//! Runs every golden case written by `scripts/gen_golden.py`: a one-op graph on random inputs,
//! checked against a float64 NumPy reference rounded to the output dtype.
//!
//! Tolerances come from each `case.txt` (the numerics contract, see the script): f32 rtol 1e-5
//! atol 1e-6, f16 rtol 1e-3 atol 1e-5, bf16 rtol 8e-3 atol 1e-5, integers and bools exact.
//! NaN must match NaN and infinities must match exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use flint_compiler::interp::{run, Tensor, TensorData, TensorMap};
use flint_compiler::ir::{
    ArgReduceOp, BinaryOp, CompareOp, DType, Dim, GeluApprox, Graph, Op, PoolKind, ReduceOp, TensorType, UnaryOp,
};
use flint_compiler::npy::read_npy;

struct Case {
    op: Op,
    op_name: String,
    inputs: Vec<DType>,
    output: DType,
    rtol: f64,
    atol: f64,
}

/// `key=value` attributes of the `op` line.
struct Attrs(BTreeMap<String, String>);

impl Attrs {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).unwrap_or_else(|| panic!("missing attribute `{key}`"))
    }

    fn u64s(&self, key: &str) -> Vec<u64> {
        self.get(key).split(',').map(|v| v.parse().unwrap()).collect()
    }

    fn usizes(&self, key: &str) -> Vec<usize> {
        self.u64s(key).into_iter().map(|v| v as usize).collect()
    }

    fn usize(&self, key: &str) -> usize {
        self.get(key).parse().unwrap()
    }

    fn u64(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap()
    }

    fn f64(&self, key: &str) -> f64 {
        self.get(key).parse().unwrap()
    }

    fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            "true" => true,
            "false" => false,
            other => panic!("`{key}` must be true or false, found `{other}`"),
        }
    }

    fn pair(&self, key: &str) -> [u64; 2] {
        self.u64s(key).try_into().unwrap()
    }

    fn quad(&self, key: &str) -> [u64; 4] {
        self.u64s(key).try_into().unwrap()
    }
}

fn parse_op(name: &str, a: &Attrs) -> Op {
    if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == name) {
        return Op::Unary(u);
    }
    if let Some(b) = BinaryOp::ALL.into_iter().find(|b| b.name() == name) {
        return Op::Binary(b);
    }
    if let Some(c) = CompareOp::ALL.into_iter().find(|c| c.name() == name) {
        return Op::Compare(c);
    }
    if let Some(op) = ReduceOp::ALL.into_iter().find(|r| r.name() == name) {
        return Op::Reduce { op, axes: a.usizes("axes"), keepdims: a.flag("keepdims") };
    }
    match name {
        "argmax" | "argmin" => {
            let op = if name == "argmax" { ArgReduceOp::ArgMax } else { ArgReduceOp::ArgMin };
            Op::ArgReduce { op, axis: a.usize("axis"), keepdims: a.flag("keepdims") }
        }
        "iota" => Op::Iota { axis: a.usize("axis") },
        "select" => Op::Select,
        "cast" => Op::Cast,
        "matmul" => Op::MatMul,
        "reshape" => Op::Reshape,
        "permute" => Op::Permute { perm: a.usizes("perm") },
        "broadcast" => Op::Broadcast,
        "slice" => Op::Slice { axis: a.usize("axis"), start: a.u64("start"), end: a.u64("end"), step: a.u64("step") },
        "concat" => Op::Concat { axis: a.usize("axis") },
        "pad" => Op::Pad { low: a.u64s("low"), high: a.u64s("high"), value: a.f64("value") },
        "gather" => Op::Gather { axis: a.usize("axis") },
        "conv2d" => Op::Conv2d {
            stride: a.pair("stride"),
            padding: a.quad("padding"),
            dilation: a.pair("dilation"),
            groups: a.u64("groups"),
        },
        "max_pool2d" | "avg_pool2d" => Op::Pool2d {
            kind: if name == "max_pool2d" { PoolKind::Max } else { PoolKind::Avg },
            kernel: a.pair("kernel"),
            stride: a.pair("stride"),
            padding: a.quad("padding"),
            count_include_pad: a.flag("count_include_pad"),
        },
        "softmax" => Op::Softmax { axis: a.usize("axis") },
        "log_softmax" => Op::LogSoftmax { axis: a.usize("axis") },
        "layer_norm" => Op::LayerNorm { axis: a.usize("axis"), eps: a.f64("eps") },
        "rms_norm" => Op::RmsNorm { axis: a.usize("axis"), eps: a.f64("eps") },
        "gelu" => Op::Gelu { approx: if a.get("approx") == "tanh" { GeluApprox::Tanh } else { GeluApprox::None } },
        "silu" => Op::Silu,
        "linear" => Op::Linear,
        "attention" => Op::Attention { causal: a.flag("causal"), scale: a.f64("scale") },
        other => panic!("unknown op `{other}`"),
    }
}

fn parse_case(text: &str) -> Case {
    let (mut op, mut inputs, mut output, mut tol) = (None, Vec::new(), None, None);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let dtype = |w: Option<&str>| DType::from_name(w.unwrap()).unwrap();
        match words.next().unwrap() {
            "op" => {
                let name = words.next().unwrap().to_string();
                let attrs = words.map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                });
                op = Some((parse_op(&name, &Attrs(attrs.collect())), name));
            }
            "input" => inputs.push(dtype(words.next())),
            "output" => output = Some(dtype(words.next())),
            "tol" => tol = Some((words.next().unwrap().parse().unwrap(), words.next().unwrap().parse().unwrap())),
            other => panic!("unknown line `{other}`"),
        }
    }
    let (op, op_name) = op.unwrap();
    let (rtol, atol) = tol.unwrap();
    Case { op, op_name, inputs, output: output.unwrap(), rtol, atol }
}

fn static_type(dtype: DType, shape: &[usize]) -> TensorType {
    TensorType::new(dtype, shape.iter().map(|&n| Dim::known(n as u64)).collect())
}

/// Reads an `.npy` file as `dtype` (bf16 is stored as f32 holding bf16 values).
fn load(path: &Path, dtype: DType) -> Tensor {
    let t = read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cast = t.cast(dtype);
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    let exact = cast.to_f64_vec().into_iter().zip(t.to_f64_vec()).all(|(a, b)| same(a, b));
    assert!(exact, "{}: values are not exact {dtype}", path.display());
    cast
}

/// Runs one case; returns a description of the first mismatch.
fn check(dir: &Path) -> Result<String, String> {
    let case = parse_case(&std::fs::read_to_string(dir.join("case.txt")).unwrap());
    let mut g = Graph::new("golden");
    let mut inputs = TensorMap::new();
    let mut operands = Vec::new();
    for (i, &dtype) in case.inputs.iter().enumerate() {
        let t = load(&dir.join(format!("input_{i}.npy")), dtype);
        let name = format!("x{i}");
        operands.push(g.add_input(name.clone(), static_type(dtype, t.shape())));
        inputs.insert(name, t);
    }
    let want = load(&dir.join("output.npy"), case.output);
    let node = g.add(case.op, static_type(case.output, want.shape()), &operands);
    g.add_output("y", node);
    let got = run(&g, &inputs, &TensorMap::new()).map_err(|e| e.to_string())?.remove(0).1;
    if got.dtype != want.dtype || got.shape() != want.shape() {
        return Err(format!("got {}{:?}, want {}{:?}", got.dtype, got.shape(), want.dtype, want.shape()));
    }
    compare(&got, &want, case.rtol, case.atol)?;
    Ok(case.op_name)
}

fn compare(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if let (TensorData::Float(g), TensorData::Float(w)) = (&got.data, &want.data) {
        for (i, (&g, &w)) in g.iter().zip(w.iter()).enumerate() {
            let ok = if w.is_finite() {
                (g - w).abs() <= atol + rtol * w.abs()
            } else {
                g == w || (g.is_nan() && w.is_nan())
            };
            if !ok {
                return Err(format!("element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})"));
            }
        }
        return Ok(());
    }
    if got != want {
        return Err(format!("got {:?}, want {:?}", got.to_f64_vec(), want.to_f64_vec()));
    }
    Ok(())
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

#[test]
fn golden_cases_match_numpy() {
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    for dir in case_dirs() {
        match check(&dir) {
            Ok(op) => {
                covered.insert(op);
            }
            Err(e) => failures.push(format!("{}: {e}", dir.file_name().unwrap().to_string_lossy())),
        }
    }
    assert!(failures.is_empty(), "{} golden case(s) failed:\n{}", failures.len(), failures.join("\n"));
    // Every op family has a golden case; a missing folder must not pass silently.
    let families = [
        "add",
        "div",
        "rem",
        "pow",
        "maximum",
        "exp",
        "erf",
        "round",
        "lt",
        "select",
        "cast",
        "sum",
        "mean",
        "max",
        "prod",
        "argmax",
        "argmin",
        "matmul",
        "reshape",
        "permute",
        "broadcast",
        "slice",
        "concat",
        "pad",
        "gather",
        "iota",
        "conv2d",
        "max_pool2d",
        "avg_pool2d",
        "softmax",
        "log_softmax",
        "layer_norm",
        "rms_norm",
        "gelu",
        "silu",
        "linear",
        "attention",
    ];
    let missing: Vec<&str> = families.into_iter().filter(|f| !covered.contains(*f)).collect();
    assert!(missing.is_empty(), "no golden case for {missing:?}");
}

#[test]
fn golden_comparison_can_fail() {
    let want = Tensor::from_f64(DType::F32, &[2], vec![1.0, f64::NAN]).unwrap();
    let off = Tensor::from_f64(DType::F32, &[2], vec![1.0 + 2e-5, f64::NAN]).unwrap();
    assert!(compare(&off, &want, 1e-5, 1e-6).is_err());
    let nan = Tensor::from_f64(DType::F32, &[2], vec![1.0, 0.0]).unwrap();
    assert!(compare(&nan, &want, 1e-5, 1e-6).is_err());
    assert!(compare(&want, &want, 1e-5, 1e-6).is_ok());
}
