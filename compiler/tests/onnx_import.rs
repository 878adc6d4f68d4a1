//! ONNX import: a fixed subset of ONNX's backend node tests (copied under `tests/onnx/` by
//! `scripts/onnx-subset.sh`), errors that name what is unsupported, symbolic dims, the source
//! writer with params, and the `flint import` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use flint_compiler::interp::{self, Tensor, TensorMap};
use flint_compiler::ir::{DType, Dim, SymId};
use flint_compiler::onnx::conformance::{self, Outcome};
use flint_compiler::onnx::proto::attribute_proto::AttributeType;
use flint_compiler::onnx::proto::tensor_proto::DataType;
use flint_compiler::onnx::proto::tensor_shape_proto::{dimension, Dimension};
use flint_compiler::onnx::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use flint_compiler::onnx::{self, writer, ImportOptions, OnnxError};
use flint_compiler::random::random_inputs;
use flint_compiler::syntax;
use prost::Message;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_node_test_subset_passes() {
    let cases = conformance::cases(&manifest().join("tests/onnx")).expect("tests/onnx exists");
    assert!(cases.len() >= 60, "only {} cases under tests/onnx", cases.len());
    let mut failures = Vec::new();
    for dir in &cases {
        let r = conformance::run_case(dir);
        if r.outcome != Outcome::Pass {
            failures.push(format!("{} ({}): {:?}", r.name, r.op, r.outcome));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases did not pass:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

// ----- building small models by hand -----

/// A dim: a number, or a name (`dim_param`).
enum D {
    N(i64),
    P(&'static str),
}

fn value_info(name: &str, dtype: DataType, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: None,
            value: Some(match d {
                D::N(n) => dimension::Value::DimValue(*n),
                D::P(p) => dimension::Value::DimParam(p.to_string()),
            }),
        })
        .collect();
    let tensor = type_proto::Tensor { elem_type: Some(dtype as i32), shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { denotation: None, value: Some(type_proto::Value::TensorType(tensor)) }),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![values.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    init: Vec<TensorProto>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(21) }],
        producer_name: Some("flint-tests".into()),
        graph: Some(GraphProto {
            name: Some("m".into()),
            node: nodes,
            input: inputs,
            output: outputs,
            initializer: init,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn import(m: &ModelProto, bounds: &[(&str, u64)]) -> Result<onnx::Imported, OnnxError> {
    let mut options = ImportOptions::default();
    options.dim_bounds.extend(bounds.iter().map(|(k, v)| (k.to_string(), *v)));
    onnx::import_model(m, &options)
}

// ----- errors name what is unsupported -----

#[test]
fn an_unsupported_op_is_named_with_its_node() {
    let m = model(
        vec![node("Relu", "first", &["x"], &["h"], vec![]), node("NonZero", "where_are_they", &["h"], &["y"], vec![])],
        vec![value_info("x", DataType::Float, &[D::N(4)])],
        vec![value_info("y", DataType::Int64, &[D::N(1), D::N(4)])],
        vec![],
    );
    let e = import(&m, &[]).expect_err("NonZero has no Flint form");
    assert!(e.is_unsupported());
    assert_eq!(e.to_string(), "node 1 `where_are_they` (NonZero): op `NonZero` is not supported");
}

#[test]
fn an_unsupported_attribute_value_is_named() {
    let m = model(
        vec![node("Pad", "p", &["x", "pads"], &["y"], vec![string("mode", "mirror")])],
        vec![value_info("x", DataType::Float, &[D::N(4)])],
        vec![value_info("y", DataType::Float, &[D::N(6)])],
        vec![i64_tensor("pads", &[1, 1])],
    );
    let e = import(&m, &[]).expect_err("mode mirror does not exist");
    assert_eq!(e.to_string(), "node 0 `p` (Pad): attribute `mode` = \"mirror\" is not supported");
}

#[test]
fn an_unknown_attribute_is_refused_not_ignored() {
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"], vec![ints("future_knob", &[1])])],
        vec![value_info("x", DataType::Float, &[D::N(4)])],
        vec![value_info("y", DataType::Float, &[D::N(4)])],
        vec![],
    );
    let e = import(&m, &[]).expect_err("unknown attributes are refused");
    assert_eq!(e.to_string(), "node 0 `r` (Relu): attribute `future_knob` = [1] is not supported");
}

#[test]
fn an_unsupported_dtype_is_named() {
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![value_info("x", DataType::Double, &[D::N(4)])],
        vec![value_info("y", DataType::Double, &[D::N(4)])],
        vec![],
    );
    let e = import(&m, &[]).expect_err("f64 is not a Flint dtype");
    assert!(e.to_string().starts_with("input `x`: ONNX dtype DOUBLE is not supported"), "{e}");
}

// ----- symbolic dims -----

/// `x: [N, 4, 8]` reshaped to `[N, 32]` through `Shape -> Gather -> Unsqueeze -> Concat`, the
/// way exporters write a flatten that keeps the batch dynamic.
fn dynamic_flatten() -> ModelProto {
    model(
        vec![
            node("Shape", "shape", &["x"], &["s"], vec![]),
            node("Gather", "batch", &["s", "zero"], &["n"], vec![]),
            node("Unsqueeze", "batch1", &["n", "axes0"], &["n1"], vec![]),
            node(
                "Concat",
                "target",
                &["n1", "rest"],
                &["shape"],
                vec![AttributeProto {
                    name: Some("axis".into()),
                    r#type: Some(AttributeType::Int as i32),
                    i: Some(0),
                    ..Default::default()
                }],
            ),
            node("Reshape", "flat", &["x", "shape"], &["f"], vec![]),
            node("MatMul", "proj", &["f", "w"], &["y"], vec![]),
        ],
        vec![value_info("x", DataType::Float, &[D::P("batch size"), D::N(4), D::N(8)])],
        vec![value_info("y", DataType::Float, &[D::P("batch size"), D::N(2)])],
        vec![
            TensorProto { dims: vec![], ..i64_tensor("zero", &[0]) },
            i64_tensor("axes0", &[0]),
            i64_tensor("rest", &[32]),
            f32_tensor("w", &[32, 2], &(0..64).map(|i| (i as f32 - 30.0) / 16.0).collect::<Vec<_>>()),
        ],
    )
}

#[test]
fn a_symbolic_dim_needs_a_bound() {
    let e = import(&dynamic_flatten(), &[]).expect_err("no bound given");
    assert_eq!(
        e.to_string(),
        "symbolic dim `batch size` (of input `x`) needs an upper bound: pass --dim-bound batch size=N"
    );
}

#[test]
fn shape_arithmetic_keeps_a_symbolic_batch() {
    let imported = import(&dynamic_flatten(), &[("batch size", 16)]).expect("imports");
    let g = &imported.graph;
    assert_eq!(g.symbols.len(), 1);
    assert_eq!((g.symbols[0].name.as_str(), g.symbols[0].bound), ("batch_size", 16));
    let (_, y) = &g.outputs[0];
    assert_eq!(g.ty(*y).shape, vec![Dim::sym(SymId(0)), Dim::known(2)], "the batch stays symbolic");
    // Three rows through the graph equal three rows by hand.
    let x: Vec<f64> = (0..96).map(|i| ((i * 37) % 23) as f64 / 7.0 - 1.5).collect();
    let mut inputs = TensorMap::new();
    inputs.insert("x".into(), Tensor::from_f64(DType::F32, &[3, 4, 8], x.clone()).expect("tensor"));
    let out = interp::run(g, &inputs, &imported.params).expect("evaluates");
    let w: Vec<f64> = (0..64).map(|i| (i as f32 - 30.0) as f64 / 16.0).collect();
    let y = out[0].1.to_f64_vec();
    for r in 0..3 {
        for c in 0..2 {
            let want: f64 = (0..32).map(|k| x[r * 32 + k] * w[k * 2 + c]).sum();
            assert!((y[r * 2 + c] - want).abs() <= 1e-5 * want.abs().max(1.0), "row {r} col {c}");
        }
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// Seeded values that are neither zeros nor ones.
fn wavy(n: usize, seed: f64) -> Vec<f64> {
    (0..n).map(|i| ((i as f64 + seed) * 0.7).sin() * 2.0).collect()
}

/// Evaluates `m` at each batch size on `x` (shape `[batch, rest...]`) and compares the
/// single output with `want(batch, x)`.
fn check_batches(m: &ModelProto, rest: &[usize], bound: u64, want: impl Fn(usize, &[f64]) -> Vec<f64>) {
    let imported = import(m, &[("batch", bound)]).expect("imports");
    for batch in [1, 3, bound as usize] {
        let shape: Vec<usize> = [batch].iter().chain(rest).copied().collect();
        let x = wavy(shape.iter().product(), batch as f64);
        let mut inputs = TensorMap::new();
        inputs.insert("x".into(), Tensor::from_f64(DType::F32, &shape, x.clone()).expect("tensor"));
        let out = interp::run(&imported.graph, &inputs, &imported.params).expect("evaluates");
        let (got, want) = (out[0].1.to_f64_vec(), want(batch, &x));
        assert_eq!(got.len(), want.len(), "batch {batch}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "batch {batch}, element {i}: {g} != {w}");
        }
    }
}

/// A 2-D pool over `[B, C, 4, 4]` by hand: window `k`, stride `s`, pad `p` (padding never
/// counted), reduced by `f` over the in-bounds elements.
fn pool_by_hand(x: &[f64], planes: usize, k: usize, s: usize, p: usize, f: fn(&[f64]) -> f64) -> Vec<f64> {
    let out = (4 + 2 * p - k) / s + 1;
    let mut y = vec![];
    for plane in x.chunks(16).take(planes) {
        for i in 0..out {
            for j in 0..out {
                let mut window = vec![];
                for (a, b) in (0..k).flat_map(|a| (0..k).map(move |b| (a, b))) {
                    let (r, c) = ((i * s + a) as i64 - p as i64, (j * s + b) as i64 - p as i64);
                    if (0..4).contains(&r) && (0..4).contains(&c) {
                        window.push(plane[(r * 4 + c) as usize]);
                    }
                }
                y.push(f(&window));
            }
        }
    }
    y
}

fn max_of(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn mean_of(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn pool_model(op: &str, attrs: Vec<AttributeProto>, dims: &[D], out: &[D]) -> ModelProto {
    model(
        vec![node(op, "pool", &["x"], &["y"], attrs)],
        vec![value_info("x", DataType::Float, dims)],
        vec![value_info("y", DataType::Float, out)],
        vec![],
    )
}

#[test]
fn pools_take_a_symbolic_batch() {
    let x = [D::P("batch"), D::N(2), D::N(4), D::N(4)];
    let m = pool_model("MaxPool", vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])], &x, &[]);
    check_batches(&m, &[2, 4, 4], 4, |b, x| pool_by_hand(x, 2 * b, 2, 2, 0, max_of));
    let attrs = vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])];
    let m = pool_model("AveragePool", attrs, &x, &[]);
    check_batches(&m, &[2, 4, 4], 4, |b, x| pool_by_hand(x, 2 * b, 3, 1, 1, mean_of));
    let m = pool_model("GlobalAveragePool", vec![], &x, &[]);
    check_batches(&m, &[2, 4, 4], 4, |_, x| x.chunks(16).map(mean_of).collect());
    // Ceil mode: windows at 0 and 2, the second cut off by the border. An average that
    // counts padding goes through strided slices, which keep the batch too (the ceil-mode
    // room is not padding, so both reduce the in-bounds elements).
    for (op, f, include) in [("MaxPool", max_of as fn(&[f64]) -> f64, 0), ("AveragePool", mean_of, 1)] {
        let attrs = vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            int_attr("ceil_mode", 1),
            int_attr("count_include_pad", include),
        ];
        let m = pool_model(op, if op == "MaxPool" { attrs[..3].to_vec() } else { attrs }, &x, &[]);
        check_batches(&m, &[2, 4, 4], 4, |b, x| {
            x.chunks(16)
                .take(2 * b)
                .flat_map(|p| {
                    [(0, 0), (0, 2), (2, 0), (2, 2)].map(|(i, j)| {
                        let w: Vec<f64> =
                            (i..(i + 3).min(4)).flat_map(|r| (j..(j + 3).min(4)).map(move |c| p[r * 4 + c])).collect();
                        f(&w)
                    })
                })
                .collect()
        });
    }
}

#[test]
fn a_pool_refuses_a_symbolic_spatial_axis_by_name() {
    let x = [D::P("batch"), D::N(2), D::P("H"), D::N(4)];
    let m = pool_model("MaxPool", vec![ints("kernel_shape", &[2, 2])], &x, &[]);
    let e = import(&m, &[("batch", 4), ("H", 8)]).expect_err("H is symbolic");
    assert_eq!(
        e.to_string(),
        "node 0 `pool` (MaxPool): dim 2 of `x` is `H`, but `MaxPool` needs that size as a number (pass a static shape there)"
    );
}

/// A ViT's class token `[1, 1, 4]` expanded to `[batch, 1, 4]` the way PyTorch exports
/// `cls.expand(x.shape[0], -1, -1)`: `Shape -> Gather -> Unsqueeze -> Concat(n, -1, -1)`,
/// then `Where(Equal(target, -1), ones, target) -> Expand`, and put before the tokens.
/// torchvision's ViT reshapes the target to `[-1]` first (`reshaped`).
fn class_token(reshaped: bool) -> ModelProto {
    let ones = AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(i64_tensor("one", &[1])),
        ..Default::default()
    };
    model(
        vec![
            node("Shape", "shape", &["x"], &["s"], vec![]),
            node("Gather", "batch", &["s", "zero"], &["n"], vec![]),
            node("Unsqueeze", "batch1", &["n", "axes0"], &["n1"], vec![]),
            node("Concat", "target", &["n1", "minus1", "minus1"], &["t0"], vec![int_attr("axis", 0)]),
            if reshaped {
                node("Reshape", "flat_target", &["t0", "minus1"], &["t"], vec![])
            } else {
                node("Identity", "same_target", &["t0"], &["t"], vec![])
            },
            node("Shape", "target_len", &["t"], &["tl"], vec![]),
            node("ConstantOfShape", "ones", &["tl"], &["o"], vec![ones]),
            node("Equal", "is_any", &["t", "minus1"], &["eq"], vec![]),
            node("Where", "resolved", &["eq", "o", "t"], &["r"], vec![]),
            node("Expand", "expand", &["cls", "r"], &["c"], vec![]),
            node("Concat", "tokens", &["c", "x"], &["y"], vec![int_attr("axis", 1)]),
        ],
        vec![value_info("x", DataType::Float, &[D::P("batch"), D::N(3), D::N(4)])],
        vec![value_info("y", DataType::Float, &[D::P("batch"), D::N(4), D::N(4)])],
        vec![
            TensorProto { dims: vec![], ..i64_tensor("zero", &[0]) },
            i64_tensor("axes0", &[0]),
            i64_tensor("minus1", &[-1]),
            f32_tensor("cls", &[1, 1, 4], &[0.5, -1.25, 2.0, 0.75]),
        ],
    )
}

#[test]
fn a_class_token_expands_to_a_symbolic_batch() {
    for m in [class_token(false), class_token(true)] {
        let imported = import(&m, &[("batch", 5)]).expect("imports");
        let (_, y) = &imported.graph.outputs[0];
        assert_eq!(imported.graph.ty(*y).shape, vec![Dim::sym(SymId(0)), Dim::known(4), Dim::known(4)]);
        check_batches(&m, &[3, 4], 5, |b, x| {
            x.chunks(12)
                .take(b)
                .flat_map(|row| [0.5, -1.25, 2.0, 0.75].into_iter().chain(row.iter().copied()))
                .collect()
        });
    }
}

/// GPT-2's causal mask: a lower-triangular `[8, 8]` buffer sliced to `[seq, seq]` from
/// `Sub(seq, seq)` to `seq` (Hugging Face's `bias[:, :, k - q : k, :k]`), added to `x`.
fn causal_slice(start: &str) -> ModelProto {
    let tril: Vec<f32> = (0..64).map(|i| if i % 8 <= i / 8 { 0.0 } else { -100.0 }).collect();
    model(
        vec![
            node("Shape", "shape", &["x"], &["s"], vec![]),
            node("Gather", "seq", &["s", "one"], &["n"], vec![]),
            node("Sub", "none", &["n", "n"], &["z"], vec![]),
            node("Unsqueeze", "z1", &[start, "axes0"], &["from"], vec![]),
            node("Unsqueeze", "n1", &["n", "axes0"], &["to"], vec![]),
            node("Concat", "starts", &["from", "zero1"], &["starts"], vec![int_attr("axis", 0)]),
            node("Concat", "ends", &["to", "to"], &["ends"], vec![int_attr("axis", 0)]),
            node("Slice", "mask", &["bias", "starts", "ends", "axes01"], &["m"], vec![]),
            node("Add", "masked", &["x", "m"], &["y"], vec![]),
        ],
        vec![value_info("x", DataType::Float, &[D::P("batch"), D::P("seq"), D::P("seq")])],
        vec![value_info("y", DataType::Float, &[D::P("batch"), D::P("seq"), D::P("seq")])],
        vec![
            TensorProto { dims: vec![], ..i64_tensor("one", &[1]) },
            i64_tensor("axes0", &[0]),
            i64_tensor("zero1", &[0]),
            i64_tensor("axes01", &[0, 1]),
            f32_tensor("bias", &[8, 8], &tril),
        ],
    )
}

#[test]
fn a_causal_mask_is_sliced_to_a_symbolic_length() {
    let imported = import(&causal_slice("z"), &[("batch", 2), ("seq", 8)]).expect("imports");
    for (b, n) in [(1, 1), (2, 5), (2, 8)] {
        let x = wavy(b * n * n, n as f64);
        let mut inputs = TensorMap::new();
        inputs.insert("x".into(), Tensor::from_f64(DType::F32, &[b, n, n], x.clone()).expect("tensor"));
        let out = interp::run(&imported.graph, &inputs, &imported.params).expect("evaluates");
        let want: Vec<f64> =
            x.iter().enumerate().map(|(i, v)| v + if i % n <= (i / n) % n { 0.0 } else { -100.0 }).collect();
        let got = out[0].1.to_f64_vec();
        assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-5 * w.abs().max(1.0)), "{b}x{n}");
    }
    // A bound past the buffer, and a start that leaves `seq - 1` rows, are refused by name.
    let e = import(&causal_slice("z"), &[("batch", 2), ("seq", 9)]).expect_err("seq may pass 8").to_string();
    assert!(e.contains("`mask` (Slice): `Slice` of axis 0 (length 8) to `seq`, which may reach 9"), "{e}");
    let e = import(&causal_slice("one"), &[("batch", 2), ("seq", 8)]).expect_err("1..seq").to_string();
    assert!(e.contains("`Slice` of axis 0 from 1 to `seq` by 1 (a length that is no monomial)"), "{e}");
}

// ----- the source writer -----

#[test]
fn written_source_with_params_and_literals_evaluates_the_same() {
    // y = relu(x @ w + b) * 0.5 - inf-masked where x < -10
    let m = model(
        vec![
            node("MatMul", "mm", &["x", "w"], &["h"], vec![]),
            node("Add", "bias", &["h", "b"], &["hb"], vec![]),
            node("Relu", "act", &["hb"], &["r"], vec![]),
            node("Mul", "half", &["r", "c05"], &["y"], vec![]),
            node("Less", "low", &["x", "cm10"], &["lowmask"], vec![]),
        ],
        vec![value_info("x", DataType::Float, &[D::P("N"), D::N(3)])],
        vec![
            value_info("y", DataType::Float, &[D::P("N"), D::N(2)]),
            value_info("lowmask", DataType::Bool, &[D::P("N"), D::N(3)]),
        ],
        vec![
            f32_tensor("w", &[3, 2], &[0.5, -1.0, 2.0, 0.25, -0.75, 1.5]),
            f32_tensor("b", &[2], &[0.1, -0.2]),
            f32_tensor("c05", &[], &[0.5]),
            f32_tensor("cm10", &[], &[-10.0]),
        ],
    );
    let imported = import(&m, &[("N", 8)]).expect("imports");
    assert_eq!(imported.params.keys().collect::<Vec<_>>(), ["b", "w"], "matrices are params, scalars constants");
    let source = writer::write_source(&imported.graph, &["a header line".into()]).expect("writes");
    assert!(source.starts_with("# a header line\ngraph m(x: f32[N<=8, 3]) -> (y: f32[N, 2], lowmask: bool[N, 3]) {\n"));
    assert!(source.contains("    param w: f32[3, 2]\n"), "{source}");
    assert!(source.contains("* 0.5"), "the scalar is a literal:\n{source}");
    let again = syntax::compile_str(&source).expect("the source compiles");
    let dims = interp::DimValues::from_iter([(SymId(0), 5)]);
    let inputs = random_inputs(&imported.graph, &dims, 7).expect("inputs");
    let want = interp::run(&imported.graph, &inputs, &imported.params).expect("imported graph runs");
    let got = interp::run(&again, &inputs, &imported.params).expect("written source runs");
    assert_eq!(want, got);
}

// ----- the command line -----

fn flint(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flint")).args(args).current_dir(dir).output().expect("the flint binary runs")
}

#[test]
fn flint_import_writes_source_and_weights_that_check_and_eval() {
    let dir = std::env::temp_dir().join(format!("flint-onnx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("flat.onnx"), dynamic_flatten().encode_to_vec()).expect("model written");

    let o = flint(&["import", "flat.onnx", "-o", "flat.tg", "--dim-bound", "batch size=4"], &dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let source = std::fs::read_to_string(dir.join("flat.tg")).expect("source written");
    assert!(source.contains("graph m(x: f32[batch_size<=4, 4, 8]) -> (y: f32[batch_size, 2])"), "{source}");
    assert!(source.contains("flint eval flat.tg --weights flat.safetensors"), "{source}");
    assert!(!source.contains(dir.to_str().unwrap_or("/")), "no machine paths in the source");
    assert!(dir.join("flat.safetensors").is_file());

    let o = flint(&["check", "flat.tg"], &dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tg = flint(&["eval", "flat.tg", "--weights", "flat.safetensors", "--seed", "3"], &dir);
    let onnx = flint(&["eval", "flat.onnx", "--dim-bound", "batch size=4", "--seed", "3"], &dir);
    assert!(tg.status.success() && onnx.status.success(), "{}", String::from_utf8_lossy(&onnx.stderr));
    assert_eq!(tg.stdout, onnx.stdout, "the source and the model compute the same");

    let o = flint(&["check", "flat.onnx"], &dir);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dim-bound batch size=N"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- hostile attribute values -----

/// Values an attribute should never crash the importer with: negative, zero, huge, NaN,
/// infinite, lists emptied, lengthened or filled with extremes, unknown strings.
fn hostile(a: &AttributeProto) -> Vec<AttributeProto> {
    let with = |f: &dyn Fn(&mut AttributeProto)| {
        let mut b = a.clone();
        f(&mut b);
        b
    };
    match a.r#type.and_then(|t| AttributeType::try_from(t).ok()) {
        Some(AttributeType::Int) => {
            [-1, 0, 1 << 40, i64::MIN, i64::MAX].iter().map(|&v| with(&|b| b.i = Some(v))).collect()
        }
        Some(AttributeType::Ints) => {
            let n = a.ints.len();
            [vec![], vec![-1; n], vec![0; n], vec![i64::MAX; n], vec![1 << 40; n], vec![1; n + 1]]
                .into_iter()
                .map(|v| with(&|b| b.ints = v.clone()))
                .collect()
        }
        Some(AttributeType::Float) => {
            [f32::NAN, f32::NEG_INFINITY, -1.0, 0.0, 1e30].iter().map(|&v| with(&|b| b.f = Some(v))).collect()
        }
        Some(AttributeType::String) => vec![with(&|b| b.s = Some(b"no such value".to_vec()))],
        _ => vec![],
    }
}

/// Every attribute and every input dim of every node test in the subset (ONNX's and the
/// generated ones), set to each hostile value in turn (a dim also to a symbol with a hostile
/// bound): the import ends in a model or an error, never a panic. `FLINT_HOSTILE_DIR=<node test dir>` runs it over another set (all of ONNX's
/// node tests); `FLINT_HOSTILE_TRACE=1` prints each variant first, to find one that aborts.
#[test]
fn hostile_attribute_values_give_errors_not_panics() {
    let root = std::env::var_os("FLINT_HOSTILE_DIR").map_or_else(|| manifest().join("tests/onnx"), PathBuf::from);
    let cases = conformance::cases(&root).expect("the node test directory exists");
    let trace = std::env::var_os("FLINT_HOSTILE_TRACE").is_some();
    let (mut tried, mut panics) = (0, Vec::new());
    for dir in &cases {
        let bytes = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
        let model = ModelProto::decode(bytes.as_slice()).expect("decodes");
        let graph = model.graph.clone().unwrap_or_default();
        let mut options = ImportOptions::default();
        for d in graph.input.iter().filter_map(input_dims).flatten() {
            if let Some(dimension::Value::DimParam(p)) = &d.value {
                options.dim_bounds.insert(p.clone(), 8);
            }
        }
        let mut variants: Vec<(String, ModelProto, ImportOptions)> = Vec::new();
        for (n, node) in graph.node.iter().enumerate() {
            for (k, attr) in node.attribute.iter().enumerate() {
                for bad in hostile(attr) {
                    let mut m = model.clone();
                    if let Some(g) = m.graph.as_mut() {
                        g.node[n].attribute[k] = bad.clone();
                    }
                    variants.push((format!("node {n} attribute {}", attrs_debug(&bad)), m, options.clone()));
                }
            }
        }
        for (i, input) in graph.input.iter().enumerate() {
            let rank = input_dims(input).map_or(0, |d| d.len());
            for (k, v) in (0..rank).flat_map(|k| [0, -1, 1 << 20, 1 << 40].map(|v| (k, v))) {
                let mut m = model.clone();
                if let Some(dims) = m.graph.as_mut().and_then(|g| input_dims_mut(&mut g.input[i])) {
                    dims[k].value = Some(dimension::Value::DimValue(v));
                }
                variants.push((format!("input {i} dim {k} = {v}"), m, options.clone()));
            }
            // The same dim made symbolic, with a hostile bound.
            for (k, bound) in (0..rank).flat_map(|k| [1, 1 << 20, 1 << 40, u64::MAX].map(|b| (k, b))) {
                let mut m = model.clone();
                if let Some(dims) = m.graph.as_mut().and_then(|g| input_dims_mut(&mut g.input[i])) {
                    dims[k].value = Some(dimension::Value::DimParam("hostile".into()));
                }
                let mut options = options.clone();
                options.dim_bounds.insert("hostile".into(), bound);
                variants.push((format!("input {i} dim {k} = hostile<={bound}"), m, options));
            }
        }
        for (what, m, options) in variants {
            tried += 1;
            if trace {
                eprintln!("{}: {what}", dir.display());
            }
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| onnx::import_model(&m, &options)));
            if outcome.is_err() {
                panics.push(format!("{}: {what}", dir.file_name().unwrap_or_default().to_string_lossy()));
            }
        }
    }
    assert!(tried > 400, "only {tried} hostile imports");
    assert!(panics.is_empty(), "{} of {tried} hostile imports panicked:\n{}", panics.len(), panics.join("\n"));
}

fn input_dims(v: &ValueInfoProto) -> Option<&Vec<Dimension>> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t.shape.as_ref().map(|s| &s.dim),
        _ => None,
    }
}

fn input_dims_mut(v: &mut ValueInfoProto) -> Option<&mut Vec<Dimension>> {
    match v.r#type.as_mut()?.value.as_mut()? {
        type_proto::Value::TensorType(t) => t.shape.as_mut().map(|s| &mut s.dim),
        _ => None,
    }
}

fn attrs_debug(a: &AttributeProto) -> String {
    format!(
        "`{}` = i {:?} ints {:?} f {:?} s {:?}",
        a.name.as_deref().unwrap_or(""),
        a.i,
        a.ints,
        a.f,
        a.s.as_deref().map(String::from_utf8_lossy)
    )
}

/// Model files with bytes flipped or cut short (deterministic, 40 per model): decoding and
/// importing end in a model or an error, never a panic.
#[test]
fn corrupt_model_files_give_errors_not_panics() {
    let root = std::env::var_os("FLINT_HOSTILE_DIR").map_or_else(|| manifest().join("tests/onnx"), PathBuf::from);
    let cases = conformance::cases(&root).expect("the node test directory exists");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut tried, mut panics) = (0, Vec::new());
    for dir in &cases {
        let bytes = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
        for round in 0..40 {
            let mut b = bytes.clone();
            if round % 4 == 0 {
                b.truncate(next() as usize % b.len().max(1));
            } else {
                for _ in 0..1 + round % 3 {
                    let at = next() as usize % b.len().max(1);
                    b[at] ^= 1 << (next() % 8);
                }
            }
            tried += 1;
            let outcome = std::panic::catch_unwind(|| {
                ModelProto::decode(b.as_slice()).map(|m| onnx::import_model(&m, &ImportOptions::default()).is_ok())
            });
            if outcome.is_err() {
                panics.push(format!("{} round {round}", dir.display()));
            }
        }
    }
    assert!(panics.is_empty(), "{} of {tried} corrupt models panicked:\n{}", panics.len(), panics.join("\n"));
}

/// A constant too large to fold (2^40 elements here) stays a run-time op instead of an
/// allocation at import; a declared input beyond any tensor's size is an error.
#[test]
fn huge_constants_stay_run_time_ops() {
    let m = model(
        vec![node("ConstantOfShape", "fill", &["s"], &["y"], vec![]), node("Add", "add", &["y", "x"], &["z"], vec![])],
        vec![value_info("x", DataType::Float, &[D::N(1)])],
        vec![value_info("z", DataType::Float, &[D::N(1 << 20), D::N(1 << 20)])],
        vec![i64_tensor("s", &[1 << 20, 1 << 20])],
    );
    let imported = import(&m, &[]).expect("imports");
    let g = &imported.graph;
    assert!(g.node_ids().any(|id| g.op(id).name() == "broadcast"), "the fill is a run-time broadcast");

    let m = model(
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![value_info("x", DataType::Float, &[D::N(1 << 30), D::N(1 << 30)])],
        vec![value_info("y", DataType::Float, &[D::N(1 << 30), D::N(1 << 30)])],
        vec![],
    );
    let err = import(&m, &[]).expect_err("too large").to_string();
    assert!(err.contains("input `x`") && err.contains("2^40"), "{err}");
}

/// `Resize` (nearest, scales `[1, 1, 2, 2]`, as PyTorch's `Upsample` exports it) over a
/// symbolic batch: the batch passes through unchanged; resizing the batch itself is refused
/// by name.
#[test]
fn resize_takes_a_symbolic_batch() {
    let resize = |scales: &[f32]| {
        model(
            vec![node("Resize", "up", &["x", "", "scales"], &["y"], vec![string("mode", "nearest")])],
            vec![value_info("x", DataType::Float, &[D::P("batch"), D::N(2), D::N(4), D::N(4)])],
            vec![value_info("y", DataType::Float, &[])],
            vec![f32_tensor("scales", &[4], scales)],
        )
    };
    // Nearest with half_pixel centres and round_prefer_floor: output (i, j) reads (i / 2, j / 2).
    check_batches(&resize(&[1.0, 1.0, 2.0, 2.0]), &[2, 4, 4], 4, |b, x| {
        (0..2 * b)
            .flat_map(|p| (0..8).flat_map(move |i| (0..8).map(move |j| (p, i / 2, j / 2))))
            .map(|(p, i, j)| x[p * 16 + i * 4 + j])
            .collect()
    });
    let e = import(&resize(&[2.0, 1.0, 1.0, 1.0]), &[("batch", 4)]).expect_err("the batch is resized");
    assert!(e.to_string().contains("dim 0 of `x` is `batch`"), "{e}");
}

// ----- hostile symbolic shapes -----

/// The bounds a `--dim-bound` should never crash the importer with.
const HOSTILE_BOUNDS: [u64; 9] = [0, 1, 2, 4, 1 << 20, 1 << 40, 1 << 62, i64::MAX as u64, u64::MAX];

/// Imports `m` with every symbol at `bound`; a model that imports must also verify and write
/// as source. `Err` holds the error's text; a panic is caught and reported as `None`.
fn import_hostile(m: &ModelProto, bound: u64) -> Option<Result<(), String>> {
    let mut options = ImportOptions::default();
    for d in m.graph.iter().flat_map(|g| &g.input).filter_map(input_dims).flatten() {
        if let Some(dimension::Value::DimParam(p)) = &d.value {
            options.dim_bounds.insert(p.clone(), bound);
        }
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let imported = onnx::import_model(m, &options).map_err(|e| e.to_string())?;
        flint_compiler::ir::verify::verify(&imported.graph).map_err(|e| format!("does not verify: {e}"))?;
        writer::write_source(&imported.graph, &[]).map_err(|e| format!("does not write: {e}"))?;
        Ok(())
    }))
    .ok()
}

/// `x: f32[batch, 4]`, with `n = Shape(x)[0]` (the symbolic batch, a scalar), `n1 = [n]`,
/// `four = Shape(x)[1]`, and constants (`ten`, `big` = 2^40, `imax` = `i64::MAX`, their
/// one-element vectors `ten1`, `big1`, `imax1`, `zero1`, `one1`, `minus1`, `axes0`,
/// `axes1`); `nodes` compute `y` from them.
fn shape_program(nodes: Vec<NodeProto>) -> ModelProto {
    let scalar = |name: &str, v: i64| TensorProto { dims: vec![], ..i64_tensor(name, &[v]) };
    let prefix = vec![
        node("Shape", "shape", &["x"], &["s"], vec![]),
        node("Gather", "batch", &["s", "zero"], &["n"], vec![]),
        node("Gather", "width", &["s", "one"], &["four"], vec![]),
        node("Unsqueeze", "batch1", &["n", "axes0"], &["n1"], vec![]),
    ];
    model(
        prefix.into_iter().chain(nodes).collect(),
        vec![value_info("x", DataType::Float, &[D::P("batch"), D::N(4)])],
        vec![value_info("y", DataType::Float, &[])],
        vec![
            scalar("zero", 0),
            scalar("one", 1),
            scalar("ten", 10),
            scalar("big", 1 << 40),
            scalar("imax", i64::MAX),
            i64_tensor("zero1", &[0]),
            i64_tensor("one1", &[1]),
            i64_tensor("ten1", &[10]),
            i64_tensor("big1", &[1 << 40]),
            i64_tensor("imax1", &[i64::MAX]),
            i64_tensor("minus1", &[-1]),
            i64_tensor("axes0", &[0]),
            i64_tensor("axes1", &[1]),
        ],
    )
}

fn unsq(from: &str, to: &str) -> NodeProto {
    node("Unsqueeze", to, &[from, "axes0"], &[to], vec![])
}

/// Shape computations on a symbolic batch whose results go negative or overflow, fed to
/// every op that reads a shape at import time, by name.
fn hostile_shape_programs() -> Vec<(&'static str, ModelProto)> {
    let cat = |a: &str, b: &str, to: &str| node("Concat", to, &[a, b], &[to], vec![int_attr("axis", 0)]);
    // `t` = [n, 4 - 10]
    let negative =
        || vec![node("Sub", "neg", &["four", "ten"], &["neg"], vec![]), unsq("neg", "neg1"), cat("n1", "neg1", "t")];
    // `huge` = n * 2^40 * 2^40, `huge1` = [huge]
    let huge = || {
        vec![
            node("Mul", "a", &["n", "big"], &["a"], vec![]),
            node("Mul", "huge", &["a", "big"], &["huge"], vec![]),
            unsq("huge", "huge1"),
        ]
    };
    let with = |mut nodes: Vec<NodeProto>, tail: Vec<NodeProto>| {
        nodes.extend(tail);
        shape_program(nodes)
    };
    let y = |op: &str, inputs: &[&str]| vec![node(op, "consumer", inputs, &["y"], vec![])];
    let sub = |a: &str, b: &str| vec![node("Sub", "d", &[a, b], &["d"], vec![])];
    let reshape_to = |nodes: Vec<NodeProto>| with(nodes, y("Reshape", &["x", "t"]));
    vec![
        ("Reshape to [n, 4 - 10]", reshape_to(negative())),
        ("Expand to [n, 4 - 10]", with(negative(), y("Expand", &["x", "t"]))),
        ("ConstantOfShape [n, 4 - 10]", with(negative(), y("ConstantOfShape", &["t"]))),
        ("Tile by [n, 4 - 10]", with(negative(), y("Tile", &["x", "t"]))),
        ("Tile by [1, 4 - 10]", with([negative(), vec![cat("one1", "neg1", "r")]].concat(), y("Tile", &["x", "r"]))),
        ("Range(0, 4 - 10)", with(negative(), y("Range", &["zero", "neg", "one"]))),
        ("Range(0, n - 10)", with(sub("n", "ten"), y("Range", &["zero", "d", "one"]))),
        ("Range(0, 0 - n)", with(sub("zero", "n"), y("Range", &["zero", "d", "one"]))),
        ("Reshape to [n * 2^80]", with(huge(), y("Reshape", &["x", "huge1"]))),
        ("Expand to [n * 2^80]", with(huge(), y("Expand", &["x", "huge1"]))),
        ("ConstantOfShape [n * 2^80]", with(huge(), y("ConstantOfShape", &["huge1"]))),
        ("Range(0, n * 2^80)", with(huge(), y("Range", &["zero", "huge", "one"]))),
        (
            "Reshape to [n * 2^80 / n]",
            reshape_to([huge(), vec![node("Div", "q", &["huge", "n"], &["q"], vec![]), unsq("q", "t")]].concat()),
        ),
        (
            "Reshape to [n * n * 4 / n]",
            reshape_to(vec![
                node("Mul", "nn", &["n", "n"], &["nn"], vec![]),
                node("Mul", "nn4", &["nn", "four"], &["nn4"], vec![]),
                node("Div", "q", &["nn4", "n"], &["q"], vec![]),
                unsq("q", "t"),
            ]),
        ),
        (
            "Reshape to [n * i64::MAX]",
            reshape_to(vec![node("Mul", "m", &["n", "imax"], &["m"], vec![]), unsq("m", "t")]),
        ),
        (
            "Reshape to [n + i64::MAX]",
            reshape_to(vec![node("Add", "m", &["n", "imax"], &["m"], vec![]), unsq("m", "t")]),
        ),
        (
            "Reshape to [n, i64::MAX * i64::MAX]",
            reshape_to(vec![node("Mul", "m", &["imax1", "imax1"], &["m"], vec![]), cat("n1", "m", "t")]),
        ),
        ("Slice axis 1 (4) to n", with(vec![], y("Slice", &["x", "zero1", "n1", "axes1"]))),
        ("Slice axis 0 (n) to n * 2^80", with(huge(), y("Slice", &["x", "zero1", "huge1", "axes0"]))),
        ("Slice axis 0 (n) from n * 2^80", with(huge(), y("Slice", &["x", "huge1", "imax1", "axes0"]))),
        ("Slice axis 1 (4) from n to 1 by -1", with(vec![], y("Slice", &["x", "n1", "one1", "axes1", "minus1"]))),
        ("Slice axis 1 (4) from 1 by i64::MAX", with(vec![], y("Slice", &["x", "one1", "imax1", "axes1", "imax1"]))),
        (
            "Slice of the shape from 1 by i64::MAX",
            reshape_to(vec![node("Slice", "part", &["s", "one1", "imax1", "axes0", "imax1"], &["t"], vec![])]),
        ),
        ("Gather of the shape at i64::MAX", reshape_to(vec![node("Gather", "g", &["s", "imax1"], &["t"], vec![])])),
        ("Reshape to [n, n, n]", reshape_to(vec![cat("n1", "n1", "nn"), cat("nn", "n1", "t")])),
        (
            "Expand to [n * n, n * 2^40]",
            with(
                vec![
                    node("Mul", "nn", &["n1", "n1"], &["nn"], vec![]),
                    node("Mul", "nb", &["n1", "big1"], &["nb"], vec![]),
                    cat("nn", "nb", "t"),
                    node("Unsqueeze", "x3", &["x", "axes0"], &["x3"], vec![]),
                ],
                y("Expand", &["x3", "t"]),
            ),
        ),
    ]
}

/// Models with a symbolic batch, imported with every hostile bound: an error or a model that
/// verifies, never a panic. A bound of 0, and an input too large at its bounds, are errors;
/// shape arithmetic that overflows int64 at the bounds is an error, never a wrapped value.
#[test]
fn hostile_symbolic_shapes_give_errors_not_panics() {
    let mut models = hostile_shape_programs();
    models.extend([
        ("dynamic flatten", dynamic_flatten()),
        ("class token", class_token(false)),
        ("class token, reshaped", class_token(true)),
        ("causal mask", causal_slice("z")),
        ("causal mask from 1", causal_slice("one")),
    ]);
    let (mut tried, mut panics) = (0, Vec::new());
    for (what, m) in &models {
        for bound in HOSTILE_BOUNDS {
            tried += 1;
            match import_hostile(m, bound) {
                None => panics.push(format!("{what} at bound {bound}")),
                Some(Ok(())) if bound == 0 => panic!("{what}: a bound of 0 imports"),
                Some(Ok(())) if bound > 1 << 38 => panic!("{what}: an input of more than 2^40 elements imports"),
                _ => {}
            }
        }
    }
    assert!(panics.is_empty(), "{} of {tried} imports panicked:\n{}", panics.len(), panics.join("\n"));

    let program = |name: &str| hostile_shape_programs().into_iter().find(|(w, _)| *w == name).map(|(_, m)| m);
    let err = |name: &str, bound: u64| {
        let m = program(name).unwrap_or_else(|| panic!("no program {name}"));
        match import_hostile(&m, bound) {
            Some(Err(e)) => e,
            other => panic!("{name} at bound {bound}: {other:?}"),
        }
    };
    // The product overflows before the quotient could read it as a plausible (`-1`) size.
    let e = err("Reshape to [n * 2^80 / n]", 4);
    assert!(e.contains("`huge` (Mul): shape arithmetic gives `18446744073709551615*batch`"), "{e}");
    assert!(e.ends_with("which overflows int64 at the dims' bounds"), "{e}");
    let e = err("Reshape to [n * n * 4 / n]", 1 << 38);
    assert!(e.contains("`nn` (Mul): shape arithmetic gives `batch*batch`"), "{e}");
    let e = err("Reshape to [n, 4 - 10]", 4);
    assert!(e.contains("`consumer` (Reshape)") && e.contains("invalid shape entry"), "{e}");
    let e = err("Range(0, n - 10)", 4);
    assert!(e.contains("`consumer` (Range): input 1 (`d`) must be known at import time"), "{e}");
    assert!(e.ends_with("but it is computed at run time"), "{e}");
    let e = err("Slice axis 1 (4) to n", 8);
    assert!(e.contains("to `batch`, which may reach 8"), "{e}");
    assert_eq!(import_hostile(&program("Slice axis 1 (4) to n").expect("program"), 4), Some(Ok(())));
    assert_eq!(import_hostile(&program("Slice axis 1 (4) from 1 by i64::MAX").expect("program"), 4), Some(Ok(())));
    let e = err("Reshape to [n, n, n]", 0);
    assert_eq!(e, "--dim-bound batch=0: a bound must be at least 1");
    let e = err("Reshape to [n, n, n]", 1 << 40);
    assert_eq!(e, "input `x`: at the bounds batch<=1099511627776 it holds more than 2^40 elements");
}

/// A shape that is directly a graph input names the `--freeze` option that fixes it.
#[test]
fn a_shape_given_as_a_graph_input_suggests_freeze() {
    let m = model(
        vec![node("Reshape", "r", &["x", "shape"], &["y"], vec![])],
        vec![value_info("x", DataType::Float, &[D::N(4)]), value_info("shape", DataType::Int64, &[D::N(2)])],
        vec![value_info("y", DataType::Float, &[D::N(2), D::N(2)])],
        vec![],
    );
    let e = import(&m, &[]).expect_err("the shape is an input");
    assert_eq!(
        e.to_string(),
        "node 0 `r` (Reshape): input 1 (`shape`) must be known at import time (Flint's shapes and attributes are \
         static), but it is a graph input, given at run time (fix its value with --freeze shape=FILE.npy)"
    );
}

/// `GatherElements` along a static axis of data with a symbolic batch: each row's element at
/// its own argmax is the row's maximum, at every batch; along the batch itself it is refused
/// by name (negative indices wrap by the axis's size, which must be a number).
#[test]
fn gather_elements_takes_a_symbolic_batch() {
    let x = [D::P("batch"), D::N(5)];
    let nodes = |axis: i64| {
        vec![
            node("ArgMax", "am", &["x"], &["i"], vec![int_attr("axis", 1), int_attr("keepdims", 1)]),
            node("GatherElements", "ge", &["x", "i"], &["y"], vec![int_attr("axis", axis)]),
        ]
    };
    let m = model(
        nodes(1),
        vec![value_info("x", DataType::Float, &x)],
        vec![value_info("y", DataType::Float, &[])],
        vec![],
    );
    check_batches(&m, &[5], 4, |_, x| x.chunks(5).map(max_of).collect());
    let m = model(
        nodes(0),
        vec![value_info("x", DataType::Float, &x)],
        vec![value_info("y", DataType::Float, &[])],
        vec![],
    );
    let e = import(&m, &[("batch", 4)]).expect_err("the gathered axis is symbolic").to_string();
    assert!(e.contains("dim 0 of `x` is `batch`"), "{e}");
}

/// `GatherND` with a batch dim over data with a symbolic batch: each row's element at its
/// own argmax is the row's maximum, at every batch.
#[test]
fn gather_nd_takes_a_symbolic_batch() {
    let x = [D::P("batch"), D::N(5)];
    let nodes = vec![
        node("ArgMax", "am", &["x"], &["i"], vec![int_attr("axis", 1), int_attr("keepdims", 1)]),
        node("GatherND", "gnd", &["x", "i"], &["y"], vec![int_attr("batch_dims", 1)]),
    ];
    let m =
        model(nodes, vec![value_info("x", DataType::Float, &x)], vec![value_info("y", DataType::Float, &[])], vec![]);
    check_batches(&m, &[5], 4, |_, x| x.chunks(5).map(max_of).collect());
}

/// `ScatterElements` along a static axis of data with a symbolic batch: each row's maximum,
/// written back negated at its own argmax, at every batch; along the batch it is refused by
/// name (negative indices wrap by that axis's size).
#[test]
fn scatter_elements_takes_a_symbolic_batch() {
    let x = [D::P("batch"), D::N(5)];
    let nodes = |axis: i64| {
        vec![
            node("ArgMax", "am", &["x"], &["i"], vec![int_attr("axis", 1), int_attr("keepdims", 1)]),
            node("GatherElements", "ge", &["x", "i"], &["m"], vec![int_attr("axis", 1)]),
            node("Neg", "neg", &["m"], &["u"], vec![]),
            node("ScatterElements", "se", &["x", "i", "u"], &["y"], vec![int_attr("axis", axis)]),
        ]
    };
    let m = model(
        nodes(1),
        vec![value_info("x", DataType::Float, &x)],
        vec![value_info("y", DataType::Float, &[])],
        vec![],
    );
    check_batches(&m, &[5], 4, |_, x| {
        x.chunks(5)
            .flat_map(|row| {
                let top = max_of(row);
                let at = row.iter().position(|&v| v == top).unwrap_or(0);
                row.iter().enumerate().map(move |(j, &v)| if j == at { -top } else { v })
            })
            .collect()
    });
    let m = model(
        nodes(0),
        vec![value_info("x", DataType::Float, &x)],
        vec![value_info("y", DataType::Float, &[])],
        vec![],
    );
    let e = import(&m, &[("batch", 4)]).expect_err("the scattered axis is symbolic").to_string();
    assert!(e.contains("dim 0 of `x` is `batch`"), "{e}");
}

/// `ScatterND` into rows 1 and 3 of `x: [4, batch]` (its symbolic axis is not indexed): the
/// rows become their own doubles, at every batch.
#[test]
fn scatter_nd_takes_a_symbolic_trailing_axis() {
    let mut rows = i64_tensor("rows", &[1, 3]);
    rows.dims = vec![2, 1];
    let nodes = vec![
        node("Transpose", "t", &["x"], &["xt"], vec![ints("perm", &[1, 0])]),
        node("Gather", "g", &["xt", "picks"], &["picked"], vec![int_attr("axis", 0)]),
        node("Add", "double", &["picked", "picked"], &["u"], vec![]),
        node("ScatterND", "s", &["xt", "rows", "u"], &["yt"], vec![]),
        node("Transpose", "t2", &["yt"], &["y"], vec![ints("perm", &[1, 0])]),
    ];
    let m = model(
        nodes,
        vec![value_info("x", DataType::Float, &[D::P("batch"), D::N(4)])],
        vec![value_info("y", DataType::Float, &[])],
        vec![rows, i64_tensor("picks", &[1, 3])],
    );
    check_batches(&m, &[4], 4, |_, x| {
        x.chunks(4)
            .flat_map(|r| r.iter().enumerate().map(|(j, &v)| if j == 1 || j == 3 { 2.0 * v } else { v }))
            .collect()
    });
}

/// `DFT` of real signals `x: [batch, 8, 1]` along their length, with a symbolic batch: each
/// row's spectrum `[8, 2]` (re, im), at every batch.
#[test]
fn dft_takes_a_symbolic_batch() {
    let m = model(
        vec![node("DFT", "dft", &["x"], &["y"], vec![])],
        vec![value_info("x", DataType::Float, &[D::P("batch"), D::N(8), D::N(1)])],
        vec![value_info("y", DataType::Float, &[])],
        vec![],
    );
    check_batches(&m, &[8, 1], 4, |_, x| {
        x.chunks(8)
            .flat_map(|row| {
                (0..8).flat_map(move |k| {
                    let angle = |n: usize| -2.0 * std::f64::consts::PI * (k * n) as f64 / 8.0;
                    let re: f64 = row.iter().enumerate().map(|(n, v)| v * angle(n).cos()).sum();
                    let im: f64 = row.iter().enumerate().map(|(n, v)| v * angle(n).sin()).sum();
                    [re, im]
                })
            })
            .collect()
    });
}
