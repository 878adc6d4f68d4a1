//! Hand-worked values for every op family of the reference interpreter: small tensors whose
//! results are written out by hand, including NaN, integer division and overflow, f16/bf16
//! rounding and the error cases.

use std::slice::from_ref;

use flint_compiler::interp::{bind_dims, eval, run, DimValues, EvalError, Tensor, TensorData, TensorMap};
use flint_compiler::ir::{
    ArgReduceOp, BinaryOp, CompareOp, ConstData, DType, Dim, GeluApprox, Graph, Op, PoolKind, ReduceOp, SymId, Symbol,
    TensorType, UnaryOp,
};

const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

fn ty(dtype: DType, shape: &[u64]) -> TensorType {
    TensorType::new(dtype, shape.iter().map(|&n| Dim::known(n)).collect())
}

fn f(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64(dtype, shape, v.to_vec()).unwrap()
}

fn f32s(shape: &[usize], v: &[f64]) -> Tensor {
    f(DType::F32, shape, v)
}

fn int(dtype: DType, shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64(dtype, shape, v.to_vec()).unwrap()
}

fn bools(shape: &[usize], v: &[bool]) -> Tensor {
    Tensor::from_bool(shape, v.to_vec()).unwrap()
}

/// A graph of one `op` node over inputs `x0, x1, ...` typed like `args`, returning the op's
/// node handle and the result.
fn eval_op(op: Op, out: TensorType, args: &[Tensor]) -> (String, Result<Tensor, EvalError>) {
    let mut g = Graph::new("t");
    let mut inputs = TensorMap::new();
    let mut ids = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let shape = a.shape().iter().map(|&n| Dim::known(n as u64)).collect();
        ids.push(g.add_input(format!("x{i}"), TensorType::new(a.dtype, shape)));
        inputs.insert(format!("x{i}"), a.clone());
    }
    let node = g.add(op, out, &ids);
    g.add_output("y", node);
    (node.to_string(), run(&g, &inputs, &TensorMap::new()).map(|mut o| o.remove(0).1))
}

fn ok(op: Op, out: TensorType, args: &[Tensor]) -> Tensor {
    let (_, r) = eval_op(op, out, args);
    r.unwrap()
}

/// Equal values, NaN equal to NaN, and the sign of zero checked.
fn assert_floats(t: &Tensor, want: &[f64]) {
    let got = t.to_f64_vec();
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        let same = (g.is_nan() && w.is_nan()) || (g == w && g.is_sign_negative() == w.is_sign_negative());
        assert!(same, "got {got:?}, want {want:?}");
    }
}

fn assert_close(t: &Tensor, want: &[f64], rtol: f64) {
    let got = t.to_f64_vec();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g.is_nan() && w.is_nan()) || (g - w).abs() <= rtol * w.abs() + 1e-12, "got {got:?}, want {want:?}");
    }
}

fn assert_ints(t: &Tensor, want: &[i64]) {
    assert_eq!(t.as_i64().unwrap().iter().copied().collect::<Vec<_>>(), want);
}

fn assert_bools(t: &Tensor, want: &[bool]) {
    assert_eq!(t.as_bool().unwrap().iter().copied().collect::<Vec<_>>(), want);
}

fn r32(x: f64) -> f64 {
    x as f32 as f64
}

// ---------------------------------------------------------------- unary

fn unary(u: UnaryOp, x: &Tensor) -> Tensor {
    ok(Op::Unary(u), TensorType::new(x.dtype, x.shape().iter().map(|&n| Dim::known(n as u64)).collect()), from_ref(x))
}

#[test]
fn unary_float_values() {
    let x = f32s(&[6], &[-2.0, -0.0, 0.5, 4.0, INF, NAN]);
    assert_floats(&unary(UnaryOp::Neg, &x), &[2.0, 0.0, -0.5, -4.0, -INF, NAN]);
    assert_floats(&unary(UnaryOp::Abs, &x), &[2.0, 0.0, 0.5, 4.0, INF, NAN]);
    assert_floats(&unary(UnaryOp::Sqrt, &x), &[NAN, -0.0, r32(0.5f64.sqrt()), 2.0, INF, NAN]);
    assert_floats(&unary(UnaryOp::Rsqrt, &x), &[NAN, -INF, r32(2f64.sqrt()), 0.5, 0.0, NAN]);
    assert_floats(&unary(UnaryOp::Log, &x), &[NAN, -INF, r32(-(2f64.ln())), r32(4f64.ln()), INF, NAN]);
    assert_floats(&unary(UnaryOp::Exp, &x), &[r32((-2f64).exp()), 1.0, r32(0.5f64.exp()), r32(4f64.exp()), INF, NAN]);
    assert_floats(&unary(UnaryOp::Relu, &x), &[0.0, 0.0, 0.5, 4.0, INF, NAN]);
    assert_floats(&unary(UnaryOp::Sign, &x), &[-1.0, -0.0, 1.0, 1.0, 1.0, NAN]);
    assert_floats(&unary(UnaryOp::Reciprocal, &x), &[-0.5, -INF, 2.0, 0.25, 0.0, NAN]);
    assert_floats(
        &unary(UnaryOp::Tanh, &x),
        &[r32((-2f64).tanh()), -0.0, r32(0.5f64.tanh()), r32(4f64.tanh()), 1.0, NAN],
    );
    assert_floats(
        &unary(UnaryOp::Sigmoid, &x),
        &[
            r32(1.0 / (1.0 + 2f64.exp())),
            0.5,
            r32(1.0 / (1.0 + (-0.5f64).exp())),
            r32(1.0 / (1.0 + (-4f64).exp())),
            1.0,
            NAN,
        ],
    );
    assert_floats(
        &unary(UnaryOp::Erf, &x),
        &[r32(-0.9953222650189527), -0.0, r32(0.5204998778130465), r32(0.9999999845827421), 1.0, NAN],
    );
    assert_floats(&unary(UnaryOp::Sin, &x), &[r32((-2f64).sin()), -0.0, r32(0.5f64.sin()), r32(4f64.sin()), NAN, NAN]);
    assert_floats(&unary(UnaryOp::Cos, &x), &[r32((-2f64).cos()), 1.0, r32(0.5f64.cos()), r32(4f64.cos()), NAN, NAN]);
    let half_pi = r32(std::f64::consts::FRAC_PI_2);
    assert_floats(
        &unary(UnaryOp::Atan, &x),
        &[r32((-2f64).atan()), -0.0, r32(0.5f64.atan()), r32(4f64.atan()), half_pi, NAN],
    );
}

#[test]
fn rounding_functions() {
    let x = f32s(&[8], &[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.7, -2.7]);
    assert_floats(&unary(UnaryOp::Round, &x), &[-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 3.0, -3.0]);
    assert_floats(&unary(UnaryOp::Floor, &x), &[-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 2.0, -3.0]);
    assert_floats(&unary(UnaryOp::Ceil, &x), &[-2.0, -1.0, -0.0, 1.0, 2.0, 3.0, 3.0, -2.0]);
}

#[test]
fn unary_integer_and_bool() {
    let x = int(DType::I32, &[5], &[i32::MIN as i64, -7, 0, 5, i32::MAX as i64]);
    assert_ints(&unary(UnaryOp::Neg, &x), &[i32::MIN as i64, 7, 0, -5, -(i32::MAX as i64)]);
    assert_ints(&unary(UnaryOp::Abs, &x), &[i32::MIN as i64, 7, 0, 5, i32::MAX as i64]);
    assert_ints(&unary(UnaryOp::Relu, &x), &[0, 0, 0, 5, i32::MAX as i64]);
    assert_ints(&unary(UnaryOp::Sign, &x), &[-1, -1, 0, 1, 1]);
    assert_ints(&unary(UnaryOp::Not, &x), &[i32::MAX as i64, 6, -1, -6, i32::MIN as i64]);
    assert_bools(&unary(UnaryOp::Not, &bools(&[2], &[true, false])), &[false, true]);
}

// ---------------------------------------------------------------- binary

fn binary(b: BinaryOp, out: TensorType, x: &Tensor, y: &Tensor) -> Tensor {
    ok(Op::Binary(b), out, &[x.clone(), y.clone()])
}

#[test]
fn binary_float_broadcasts_and_follows_ieee() {
    let x = f32s(&[2, 1], &[1.0, -6.0]);
    let y = f32s(&[3], &[2.0, 0.0, NAN]);
    let out = ty(DType::F32, &[2, 3]);
    assert_floats(&binary(BinaryOp::Add, out.clone(), &x, &y), &[3.0, 1.0, NAN, -4.0, -6.0, NAN]);
    assert_floats(&binary(BinaryOp::Sub, out.clone(), &x, &y), &[-1.0, 1.0, NAN, -8.0, -6.0, NAN]);
    assert_floats(&binary(BinaryOp::Mul, out.clone(), &x, &y), &[2.0, 0.0, NAN, -12.0, -0.0, NAN]);
    assert_floats(&binary(BinaryOp::Div, out.clone(), &x, &y), &[0.5, INF, NAN, -3.0, -INF, NAN]);
    assert_floats(&binary(BinaryOp::Maximum, out.clone(), &x, &y), &[2.0, 1.0, NAN, 2.0, 0.0, NAN]);
    assert_floats(&binary(BinaryOp::Minimum, out, &x, &y), &[1.0, 0.0, NAN, -6.0, -6.0, NAN]);
    // 0.1 + 0.2 in f32 is not the f64 sum rounded to f32 of the f64 inputs: inputs round first.
    let s = binary(BinaryOp::Add, ty(DType::F32, &[1]), &f32s(&[1], &[0.1]), &f32s(&[1], &[0.2]));
    assert_floats(&s, &[(0.1f32 + 0.2f32) as f64]);
}

#[test]
fn float_rem_takes_the_sign_of_the_dividend_and_pow() {
    let x = f32s(&[4], &[5.5, -5.5, 5.5, 1.0]);
    let y = f32s(&[4], &[2.0, 2.0, -2.0, 0.0]);
    assert_floats(&binary(BinaryOp::Rem, ty(DType::F32, &[4]), &x, &y), &[1.5, -1.5, 1.5, NAN]);
    let p = binary(
        BinaryOp::Pow,
        ty(DType::F32, &[3]),
        &f32s(&[3], &[2.0, -8.0, 4.0]),
        &f32s(&[3], &[0.5, 1.0 / 3.0, -0.5]),
    );
    assert_floats(&p, &[r32(2f64.sqrt()), NAN, 0.5]);
}

#[test]
fn integer_division_truncates_toward_zero() {
    let x = int(DType::I64, &[4], &[7, -7, 7, -7]);
    let y = int(DType::I64, &[4], &[2, 2, -2, -2]);
    assert_ints(&binary(BinaryOp::Div, ty(DType::I64, &[4]), &x, &y), &[3, -3, -3, 3]);
    assert_ints(&binary(BinaryOp::Rem, ty(DType::I64, &[4]), &x, &y), &[1, -1, 1, -1]);
}

#[test]
fn integer_division_by_zero_is_an_error_naming_the_node() {
    for b in [BinaryOp::Div, BinaryOp::Rem] {
        let (node, r) = eval_op(
            Op::Binary(b),
            ty(DType::I32, &[2]),
            &[int(DType::I32, &[2], &[1, 2]), int(DType::I32, &[2], &[1, 0])],
        );
        let err = r.unwrap_err();
        assert!(matches!(err, EvalError::DivisionByZero { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("{node}: integer division by zero"));
    }
}

#[test]
fn integer_overflow_wraps() {
    let max = i32::MAX as i64;
    let min = i32::MIN as i64;
    let t = ty(DType::I32, &[3]);
    let x = int(DType::I32, &[3], &[max, min, min]);
    assert_ints(&binary(BinaryOp::Add, t.clone(), &x, &int(DType::I32, &[3], &[1, -1, 0])), &[min, max, min]);
    assert_ints(&binary(BinaryOp::Mul, t.clone(), &x, &int(DType::I32, &[3], &[2, 2, -1])), &[-2, 0, min]);
    assert_ints(&binary(BinaryOp::Div, t.clone(), &x, &int(DType::I32, &[3], &[1, -1, 1])), &[max, min, min]);
    assert_ints(&binary(BinaryOp::Rem, t, &x, &int(DType::I32, &[3], &[1, -1, 1])), &[0, 0, 0]);
    let big = int(DType::I64, &[1], &[i64::MAX]);
    assert_ints(&binary(BinaryOp::Add, ty(DType::I64, &[1]), &big, &int(DType::I64, &[1], &[1])), &[i64::MIN]);
}

#[test]
fn integer_pow() {
    let t = ty(DType::I32, &[4]);
    let b = int(DType::I32, &[4], &[3, 2, 0, -2]);
    assert_ints(
        &binary(BinaryOp::Pow, t.clone(), &b, &int(DType::I32, &[4], &[4, 31, 0, 3])),
        &[81, i32::MIN as i64, 1, -8],
    );
    let (_, r) = eval_op(Op::Binary(BinaryOp::Pow), t, &[b, int(DType::I32, &[4], &[1, 1, -1, 1])]);
    assert!(matches!(r, Err(EvalError::NegativeExponent { exponent: -1, .. })));
}

#[test]
fn bitwise_and_logical() {
    let t = ty(DType::I64, &[2]);
    let (x, y) = (int(DType::I64, &[2], &[12, -1]), int(DType::I64, &[2], &[10, 5]));
    assert_ints(&binary(BinaryOp::And, t.clone(), &x, &y), &[8, 5]);
    assert_ints(&binary(BinaryOp::Or, t.clone(), &x, &y), &[14, -1]);
    assert_ints(&binary(BinaryOp::Xor, t, &x, &y), &[6, -6]);
    let (p, q) = (bools(&[4], &[true, true, false, false]), bools(&[4], &[true, false, true, false]));
    let bt = ty(DType::Bool, &[4]);
    assert_bools(&binary(BinaryOp::And, bt.clone(), &p, &q), &[true, false, false, false]);
    assert_bools(&binary(BinaryOp::Or, bt.clone(), &p, &q), &[true, true, true, false]);
    assert_bools(&binary(BinaryOp::Xor, bt, &p, &q), &[false, true, true, false]);
}

#[test]
fn f16_and_bf16_round_every_result() {
    // f16 spacing at 1 is 2^-10: 1 + 0.0004 rounds back to 1.
    let h = |v: &[f64]| f(DType::F16, &[v.len()], v);
    let t16 = ty(DType::F16, &[3]);
    let s = binary(BinaryOp::Add, t16.clone(), &h(&[1.0, 2048.0, 60000.0]), &h(&[0.0004, 1.0, 10000.0]));
    assert_floats(&s, &[1.0, 2048.0, INF]);
    // Inputs are rounded to f16 on construction.
    assert_floats(&h(&[0.1]), &[0.0999755859375]);
    let d = binary(BinaryOp::Div, t16, &h(&[1.0, 2.0, 1.0]), &h(&[3.0, 3.0, 1024.0]));
    assert_floats(&d, &[0.333251953125, 0.66650390625, 0.0009765625]);
    // bf16 spacing at 256 is 2: 256 + 1 is a tie and rounds to even (256); 1 + 3*2^-8 ties up.
    let b = |v: &[f64]| f(DType::BF16, &[v.len()], v);
    let s = binary(BinaryOp::Add, ty(DType::BF16, &[2]), &b(&[256.0, 1.0]), &b(&[1.0, 3.0 / 256.0]));
    assert_floats(&s, &[256.0, 1.015625]);
}

// ---------------------------------------------------------------- compare, select, cast

#[test]
fn comparisons_follow_ieee() {
    let x = f32s(&[4], &[1.0, NAN, 2.0, -0.0]);
    let y = f32s(&[4], &[1.0, NAN, 1.0, 0.0]);
    let bt = ty(DType::Bool, &[4]);
    let cmp = |c| ok(Op::Compare(c), bt.clone(), &[x.clone(), y.clone()]);
    assert_bools(&cmp(CompareOp::Eq), &[true, false, false, true]);
    assert_bools(&cmp(CompareOp::Ne), &[false, true, true, false]);
    assert_bools(&cmp(CompareOp::Lt), &[false, false, false, false]);
    assert_bools(&cmp(CompareOp::Le), &[true, false, false, true]);
    assert_bools(&cmp(CompareOp::Gt), &[false, false, true, false]);
    assert_bools(&cmp(CompareOp::Ge), &[true, false, true, true]);
    let i = ok(
        Op::Compare(CompareOp::Lt),
        ty(DType::Bool, &[2, 2]),
        &[int(DType::I32, &[2, 1], &[1, 5]), int(DType::I32, &[2], &[3, 4])],
    );
    assert_bools(&i, &[true, true, false, false]);
}

#[test]
fn select_broadcasts_its_condition() {
    let c = bools(&[2, 1], &[true, false]);
    let r = ok(Op::Select, ty(DType::F32, &[2, 2]), &[c, f32s(&[2], &[1.0, 2.0]), f32s(&[1], &[NAN])]);
    assert_floats(&r, &[1.0, 2.0, NAN, NAN]);
}

fn cast(x: &Tensor, to: DType) -> Tensor {
    ok(Op::Cast, TensorType::new(to, x.shape().iter().map(|&n| Dim::known(n as u64)).collect()), from_ref(x))
}

#[test]
fn cast_float_to_int_truncates_and_saturates() {
    let x = f32s(&[7], &[1.9, -1.9, NAN, 3e9, -3e9, INF, -0.5]);
    assert_ints(&cast(&x, DType::I32), &[1, -1, 0, i32::MAX as i64, i32::MIN as i64, i32::MAX as i64, 0]);
    assert_ints(&cast(&x, DType::I64), &[1, -1, 0, 3_000_000_000, -3_000_000_000, i64::MAX, 0]);
    assert_bools(&cast(&f32s(&[4], &[0.0, -0.0, NAN, 2.0]), DType::Bool), &[false, false, true, true]);
}

#[test]
fn cast_between_ints_bools_and_floats() {
    assert_ints(
        &cast(&int(DType::I64, &[3], &[4_294_967_297, -1, 2_147_483_648]), DType::I32),
        &[1, -1, i32::MIN as i64],
    );
    assert_bools(&cast(&int(DType::I32, &[3], &[0, -3, 1]), DType::Bool), &[false, true, true]);
    assert_floats(&cast(&bools(&[2], &[true, false]), DType::F16), &[1.0, 0.0]);
    assert_ints(&cast(&bools(&[2], &[true, false]), DType::I64), &[1, 0]);
    // 2^24 + 1 is not an f32; it rounds to even.
    assert_floats(&cast(&int(DType::I64, &[1], &[16_777_217]), DType::F32), &[16_777_216.0]);
    assert_floats(&cast(&int(DType::I32, &[1], &[2049]), DType::F16), &[2048.0]);
}

#[test]
fn cast_between_floats_rounds_to_nearest_even() {
    let x = f32s(&[4], &[70000.0, 0.1, 1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0]);
    assert_floats(&cast(&x, DType::F16), &[INF, 0.0999755859375, 1.00390625, 1.01171875]);
    assert_floats(&cast(&x, DType::BF16), &[70144.0, 0.10009765625, 1.0, 1.015625]);
    assert_floats(&cast(&cast(&x, DType::BF16), DType::F32), &[70144.0, 0.10009765625, 1.0, 1.015625]);
}

// ---------------------------------------------------------------- reductions

fn reduce(op: ReduceOp, axes: &[usize], keepdims: bool, out: TensorType, x: &Tensor) -> Result<Tensor, EvalError> {
    eval_op(Op::Reduce { op, axes: axes.to_vec(), keepdims }, out, from_ref(x)).1
}

#[test]
fn float_reductions() {
    // x[i, j, k] = 12i + 4j + k over [2, 3, 4] is too big to write; use [2, 2, 2] = 0..8.
    let x = f32s(&[2, 2, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    let sum = reduce(ReduceOp::Sum, &[0, 2], true, ty(DType::F32, &[1, 2, 1]), &x).unwrap();
    assert_floats(&sum, &[0.0 + 1.0 + 4.0 + 5.0, 2.0 + 3.0 + 6.0 + 7.0]);
    let mean = reduce(ReduceOp::Mean, &[1], false, ty(DType::F32, &[2, 2]), &x).unwrap();
    assert_floats(&mean, &[1.0, 2.0, 5.0, 6.0]);
    let prod = reduce(ReduceOp::Prod, &[2], false, ty(DType::F32, &[2, 2]), &x).unwrap();
    assert_floats(&prod, &[0.0, 6.0, 20.0, 42.0]);
    let y = f32s(&[2, 3], &[1.0, NAN, 3.0, -1.0, 5.0, 2.0]);
    assert_floats(&reduce(ReduceOp::Max, &[1], false, ty(DType::F32, &[2]), &y).unwrap(), &[NAN, 5.0]);
    assert_floats(&reduce(ReduceOp::Min, &[1], false, ty(DType::F32, &[2]), &y).unwrap(), &[NAN, -1.0]);
    assert_floats(
        &reduce(ReduceOp::Max, &[0], false, ty(DType::F32, &[]), &f32s(&[2], &[-1.0, -2.0])).unwrap(),
        &[-1.0],
    );
}

#[test]
fn f16_sum_accumulates_wide_then_rounds_once() {
    // 2048 + 1 + 1 in f16 steps would stay 2048; accumulated exactly it is 2050.
    let x = f(DType::F16, &[3], &[2048.0, 1.0, 1.0]);
    assert_floats(&reduce(ReduceOp::Sum, &[0], false, ty(DType::F16, &[]), &x).unwrap(), &[2050.0]);
}

#[test]
fn integer_reductions_wrap_and_truncate() {
    let x = int(DType::I32, &[2, 2], &[i32::MAX as i64, 1, -3, -4]);
    assert_ints(&reduce(ReduceOp::Sum, &[1], false, ty(DType::I32, &[2]), &x).unwrap(), &[i32::MIN as i64, -7]);
    assert_ints(&reduce(ReduceOp::Mean, &[1], false, ty(DType::I32, &[2]), &x).unwrap(), &[1_073_741_824, -3]);
    assert_ints(&reduce(ReduceOp::Prod, &[1], false, ty(DType::I32, &[2]), &x).unwrap(), &[i32::MAX as i64, 12]);
    assert_ints(&reduce(ReduceOp::Max, &[0], false, ty(DType::I32, &[2]), &x).unwrap(), &[i32::MAX as i64, 1]);
    assert_ints(&reduce(ReduceOp::Min, &[0, 1], false, ty(DType::I32, &[]), &x).unwrap(), &[-4]);
}

#[test]
fn empty_reductions() {
    let x = f32s(&[0, 2], &[]);
    assert_floats(&reduce(ReduceOp::Sum, &[0], false, ty(DType::F32, &[2]), &x).unwrap(), &[0.0, 0.0]);
    assert_floats(&reduce(ReduceOp::Prod, &[0], false, ty(DType::F32, &[2]), &x).unwrap(), &[1.0, 1.0]);
    assert_floats(&reduce(ReduceOp::Mean, &[0], false, ty(DType::F32, &[2]), &x).unwrap(), &[NAN, NAN]);
    let err = reduce(ReduceOp::Max, &[0], false, ty(DType::F32, &[2]), &x).unwrap_err();
    assert!(matches!(err, EvalError::EmptyReduction { op: "max", .. }), "{err:?}");
}

#[test]
fn argmax_and_argmin_pick_the_first() {
    let x = f32s(&[3, 4], &[1.0, 3.0, 3.0, 2.0, 1.0, NAN, 5.0, NAN, -1.0, -1.0, 0.0, -1.0]);
    let am = |op, axis, keepdims, out| ok(Op::ArgReduce { op, axis, keepdims }, out, from_ref(&x));
    assert_ints(&am(ArgReduceOp::ArgMax, 1, false, ty(DType::I64, &[3])), &[1, 1, 2]);
    assert_ints(&am(ArgReduceOp::ArgMin, 1, true, ty(DType::I64, &[3, 1])), &[0, 1, 0]);
    assert_ints(&am(ArgReduceOp::ArgMax, 0, false, ty(DType::I64, &[4])), &[0, 1, 1, 1]);
    let i = ok(
        Op::ArgReduce { op: ArgReduceOp::ArgMin, axis: 0, keepdims: false },
        ty(DType::I64, &[]),
        &[int(DType::I32, &[4], &[4, -2, 7, -2])],
    );
    assert_ints(&i, &[1]);
}

// ---------------------------------------------------------------- matmul

#[test]
fn matmul_values_and_batch_broadcast() {
    let a = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32s(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
    assert_floats(&ok(Op::MatMul, ty(DType::F32, &[2, 2]), &[a, b]), &[58.0, 64.0, 139.0, 154.0]);
    // [2, 1, 2] @ [2, 1]: the rhs has no batch dims.
    let a = f32s(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
    let b = f32s(&[2, 1], &[10.0, 1.0]);
    assert_floats(&ok(Op::MatMul, ty(DType::F32, &[2, 1, 1]), &[a, b]), &[12.0, 34.0]);
    // [1, 2, 1] @ [3, 1, 1]: batch dims broadcast to 3.
    let a = f32s(&[1, 2, 1], &[1.0, 2.0]);
    let b = f32s(&[3, 1, 1], &[1.0, 10.0, 100.0]);
    assert_floats(&ok(Op::MatMul, ty(DType::F32, &[3, 2, 1]), &[a, b]), &[1.0, 2.0, 10.0, 20.0, 100.0, 200.0]);
}

#[test]
fn integer_matmul_wraps() {
    let a = int(DType::I32, &[1, 2], &[65536, 1]);
    let b = int(DType::I32, &[2, 1], &[65536, 5]);
    assert_ints(&ok(Op::MatMul, ty(DType::I32, &[1, 1]), &[a, b]), &[5]);
}

// ---------------------------------------------------------------- movement

#[test]
fn reshape_permute_broadcast() {
    let x = f32s(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_floats(&ok(Op::Reshape, ty(DType::F32, &[3, 2]), from_ref(&x)), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_floats(
        &ok(Op::Permute { perm: vec![1, 0] }, ty(DType::F32, &[3, 2]), &[x]),
        &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0],
    );
    let y = int(DType::I64, &[2, 1, 2], &[0, 1, 2, 3]);
    assert_ints(&ok(Op::Permute { perm: vec![2, 0, 1] }, ty(DType::I64, &[2, 2, 1]), &[y]), &[0, 2, 1, 3]);
    let z = bools(&[2, 1], &[true, false]);
    assert_bools(
        &ok(Op::Broadcast, ty(DType::Bool, &[2, 2, 3]), &[z]),
        &[true, true, true, false, false, false, true, true, true, false, false, false],
    );
}

#[test]
fn slice_with_step_and_clamped_end() {
    let x = int(DType::I32, &[10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_ints(&ok(Op::Slice { axis: 0, start: 1, end: 8, step: 3 }, ty(DType::I32, &[3]), from_ref(&x)), &[1, 4, 7]);
    assert_ints(&ok(Op::Slice { axis: 0, start: 7, end: 100, step: 2 }, ty(DType::I32, &[2]), &[x]), &[7, 9]);
    let m = f32s(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_floats(
        &ok(Op::Slice { axis: 1, start: 1, end: 3, step: 1 }, ty(DType::F32, &[2, 2]), &[m]),
        &[1.0, 2.0, 4.0, 5.0],
    );
}

#[test]
fn concat_along_an_axis() {
    let a = f32s(&[2, 1], &[1.0, 2.0]);
    let b = f32s(&[2, 2], &[3.0, 4.0, 5.0, 6.0]);
    assert_floats(&ok(Op::Concat { axis: 1 }, ty(DType::F32, &[2, 3]), &[a, b]), &[1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
}

#[test]
fn pad_with_a_value() {
    let x = f32s(&[1, 2], &[1.0, 2.0]);
    let p =
        ok(Op::Pad { low: vec![1, 0], high: vec![0, 2], value: 0.1 }, ty(DType::F16, &[2, 4]), &[cast(&x, DType::F16)]);
    let v = 0.0999755859375;
    assert_floats(&p, &[v, v, v, v, 1.0, 2.0, v, v]);
    let i =
        ok(Op::Pad { low: vec![2], high: vec![1], value: -1.7 }, ty(DType::I32, &[4]), &[int(DType::I32, &[1], &[9])]);
    assert_ints(&i, &[-1, -1, 9, -1]);
}

#[test]
fn gather_wraps_negative_indices() {
    let table = f32s(&[3, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
    let idx = int(DType::I64, &[2, 2], &[2, -1, 0, -3]);
    let g = ok(Op::Gather { axis: 0 }, ty(DType::F32, &[2, 2, 2]), &[table.clone(), idx]);
    assert_floats(&g, &[20.0, 21.0, 20.0, 21.0, 0.0, 1.0, 0.0, 1.0]);
    let g = ok(Op::Gather { axis: 1 }, ty(DType::F32, &[3, 1]), &[table, int(DType::I32, &[1], &[-1])]);
    assert_floats(&g, &[1.0, 11.0, 21.0]);
}

#[test]
fn gather_out_of_range_names_node_and_index() {
    let table = f32s(&[3], &[0.0, 1.0, 2.0]);
    for bad in [3, -4] {
        let (node, r) =
            eval_op(Op::Gather { axis: 0 }, ty(DType::F32, &[2]), &[table.clone(), int(DType::I64, &[2], &[0, bad])]);
        let err = r.unwrap_err();
        assert_eq!(err, EvalError::IndexOutOfRange { node: err_node(&err), index: bad, len: 3 });
        assert_eq!(err.to_string(), format!("{node}: gather index {bad} is out of range for an axis of length 3"));
    }
}

fn err_node(e: &EvalError) -> flint_compiler::ir::NodeId {
    match e {
        EvalError::IndexOutOfRange { node, .. } => *node,
        _ => panic!("{e:?}"),
    }
}

// ---------------------------------------------------------------- leaves

#[test]
fn iota_and_constant() {
    let mut g = Graph::new("t");
    let i = g.add(Op::Iota { axis: 1 }, ty(DType::I32, &[2, 3]), &[]);
    let fl = g.add(Op::Iota { axis: 0 }, ty(DType::F16, &[2, 2]), &[]);
    let c = g.add(Op::Constant { data: ConstData::Float(vec![0.1, 70000.0]) }, ty(DType::F16, &[2]), &[]);
    let k = g.add(Op::Constant { data: ConstData::Int(vec![1 << 40]) }, ty(DType::I32, &[]), &[]);
    let b = g.add(Op::Constant { data: ConstData::Bool(vec![true]) }, ty(DType::Bool, &[1]), &[]);
    for (n, id) in [("i", i), ("f", fl), ("c", c), ("k", k), ("b", b)] {
        g.add_output(n, id);
    }
    let out = run(&g, &TensorMap::new(), &TensorMap::new()).unwrap();
    assert_ints(&out[0].1, &[0, 1, 2, 0, 1, 2]);
    assert_floats(&out[1].1, &[0.0, 0.0, 1.0, 1.0]);
    assert_floats(&out[2].1, &[0.0999755859375, INF]);
    assert_ints(&out[3].1, &[0]);
    assert_bools(&out[4].1, &[true]);
}

// ---------------------------------------------------------------- conv and pool

fn iota_image(c: usize, h: usize, w: usize) -> Tensor {
    f32s(&[1, c, h, w], &(1..=c * h * w).map(|x| x as f64).collect::<Vec<_>>())
}

#[test]
fn conv2d_stride_padding_dilation_bias() {
    let x = iota_image(1, 3, 3);
    let w = f32s(&[1, 1, 2, 2], &[1.0, 0.0, 0.0, 1.0]);
    let conv = |stride, padding, dilation, out: &[u64], bias: Option<Tensor>| {
        let mut args = vec![x.clone(), w.clone()];
        args.extend(bias);
        ok(Op::Conv2d { stride, padding, dilation, groups: 1 }, ty(DType::F32, out), &args)
    };
    assert_floats(&conv([1, 1], [0; 4], [1, 1], &[1, 1, 2, 2], None), &[6.0, 8.0, 12.0, 14.0]);
    let b = Some(f32s(&[1], &[0.5]));
    assert_floats(&conv([2, 2], [1, 1, 1, 1], [1, 1], &[1, 1, 2, 2], b), &[1.5, 3.5, 7.5, 14.5]);
    assert_floats(&conv([1, 1], [0; 4], [2, 2], &[1, 1, 1, 1], None), &[10.0]);
    // Asymmetric padding: one row on top only.
    assert_floats(&conv([1, 1], [1, 0, 0, 0], [1, 1], &[1, 1, 3, 2], None), &[2.0, 3.0, 6.0, 8.0, 12.0, 14.0]);
}

#[test]
fn conv2d_groups() {
    let x = iota_image(2, 1, 2); // channel 0: [1, 2], channel 1: [3, 4]
    let w = f32s(&[4, 1, 1, 1], &[2.0, -1.0, 3.0, 10.0]);
    let r = ok(
        Op::Conv2d { stride: [1, 1], padding: [0; 4], dilation: [1, 1], groups: 2 },
        ty(DType::F32, &[1, 4, 1, 2]),
        &[x, w],
    );
    assert_floats(&r, &[2.0, 4.0, -1.0, -2.0, 9.0, 12.0, 30.0, 40.0]);
}

fn pool(
    kind: PoolKind,
    kernel: [u64; 2],
    stride: [u64; 2],
    padding: [u64; 4],
    incl: bool,
    out: &[u64],
    x: &Tensor,
) -> Tensor {
    ok(Op::Pool2d { kind, kernel, stride, padding, count_include_pad: incl }, ty(DType::F32, out), from_ref(x))
}

#[test]
fn max_pool_ignores_padding_and_propagates_nan() {
    let x = iota_image(1, 3, 3);
    assert_floats(&pool(PoolKind::Max, [2, 2], [1, 1], [0; 4], false, &[1, 1, 2, 2], &x), &[5.0, 6.0, 8.0, 9.0]);
    let neg = f32s(&[1, 1, 1, 1], &[-5.0]);
    assert_floats(&pool(PoolKind::Max, [2, 2], [1, 1], [1, 1, 0, 0], false, &[1, 1, 1, 1], &neg), &[-5.0]);
    let nan = f32s(&[1, 1, 2, 2], &[1.0, NAN, 3.0, 4.0]);
    assert_floats(&pool(PoolKind::Max, [1, 2], [1, 1], [0; 4], false, &[1, 1, 2, 1], &nan), &[NAN, 4.0]);
}

#[test]
fn avg_pool_count_include_pad() {
    let x = iota_image(1, 3, 3);
    let p = [1, 1, 1, 1];
    assert_floats(&pool(PoolKind::Avg, [2, 2], [2, 2], p, false, &[1, 1, 2, 2], &x), &[1.0, 2.5, 5.5, 7.0]);
    assert_floats(&pool(PoolKind::Avg, [2, 2], [2, 2], p, true, &[1, 1, 2, 2], &x), &[0.25, 1.25, 2.75, 7.0]);
}

// ---------------------------------------------------------------- composites

#[test]
fn softmax_and_log_softmax() {
    let x = f32s(&[3, 2], &[0.0, 3f64.ln(), -INF, -INF, 1.0, NAN]);
    let s = ok(Op::Softmax { axis: 1 }, ty(DType::F32, &[3, 2]), from_ref(&x));
    assert_close(&s, &[0.25, 0.75, NAN, NAN, NAN, NAN], 1e-7);
    let l = ok(Op::LogSoftmax { axis: 1 }, ty(DType::F32, &[3, 2]), &[x]);
    assert_close(&l, &[0.25f64.ln(), 0.75f64.ln(), NAN, NAN, NAN, NAN], 1e-7);
    // Along axis 0 of a column.
    let c = ok(Op::Softmax { axis: 0 }, ty(DType::F32, &[2, 1]), &[f32s(&[2, 1], &[1.0, 1.0])]);
    assert_floats(&c, &[0.5, 0.5]);
}

#[test]
fn layer_norm_and_rms_norm() {
    let x = f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let g = f32s(&[2, 2], &[1.0, 1.0, 2.0, 2.0]);
    let b = f32s(&[2, 2], &[0.0, 0.0, 0.0, 1.0]);
    // Over both axes: mean 2.5, variance 1.25.
    let s = 1.25f64.sqrt();
    let ln = ok(Op::LayerNorm { axis: 0, eps: 0.0 }, ty(DType::F32, &[2, 2]), &[x.clone(), g, b]);
    assert_close(&ln, &[-1.5 / s, -0.5 / s, 2.0 * 0.5 / s, 2.0 * 1.5 / s + 1.0], 1e-7);
    // Over the last axis: mean(x^2) = 2.5 and 12.5.
    let rms = ok(Op::RmsNorm { axis: 1, eps: 0.5 }, ty(DType::F32, &[2, 2]), &[x, f32s(&[2], &[1.0, -1.0])]);
    assert_close(&rms, &[1.0 / 3f64.sqrt(), -2.0 / 3f64.sqrt(), 3.0 / 13f64.sqrt(), -4.0 / 13f64.sqrt()], 1e-7);
}

#[test]
fn gelu_and_silu() {
    let x = f32s(&[3], &[1.0, 0.0, -2.0]);
    let g = ok(Op::Gelu { approx: GeluApprox::None }, ty(DType::F32, &[3]), from_ref(&x));
    assert_close(&g, &[0.8413447460685429, 0.0, -0.04550026389635842], 1e-7);
    let t = ok(Op::Gelu { approx: GeluApprox::Tanh }, ty(DType::F32, &[3]), from_ref(&x));
    assert_close(&t, &[0.8411919906082768, 0.0, -0.04540230591222494], 1e-7);
    let s = ok(Op::Silu, ty(DType::F32, &[3]), &[x]);
    assert_close(&s, &[0.7310585786300049, 0.0, -0.2384058440442351], 1e-7);
}

#[test]
fn linear_with_and_without_bias() {
    let x = f32s(&[2, 2], &[1.0, 2.0, -1.0, 0.5]);
    let w = f32s(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let b = f32s(&[3], &[0.5, 0.0, -1.0]);
    assert_floats(
        &ok(Op::Linear, ty(DType::F32, &[2, 3]), &[x.clone(), w.clone(), b]),
        &[1.5, 2.0, 2.0, -0.5, 0.5, -1.5],
    );
    assert_floats(&ok(Op::Linear, ty(DType::F32, &[2, 3]), &[x, w]), &[1.0, 2.0, 3.0, -1.0, 0.5, -0.5]);
}

#[test]
fn attention_masks() {
    // One head, two queries and keys, head dim 1: scores are [0, ln 3] in every row.
    let q = f32s(&[1, 2, 1], &[1.0, 1.0]);
    let k = f32s(&[1, 2, 1], &[0.0, 3f64.ln()]);
    let v = f32s(&[1, 2, 1], &[4.0, 8.0]);
    let out = ty(DType::F32, &[1, 2, 1]);
    let att = |causal, mask: Option<Tensor>| {
        let mut args = vec![q.clone(), k.clone(), v.clone()];
        args.extend(mask);
        ok(Op::Attention { causal, scale: 1.0 }, out.clone(), &args)
    };
    assert_close(&att(false, None), &[7.0, 7.0], 1e-6);
    assert_close(&att(true, None), &[4.0, 7.0], 1e-6);
    assert_close(&att(false, Some(bools(&[2, 2], &[true, false, true, true]))), &[4.0, 7.0], 1e-6);
    assert_close(&att(false, Some(f32s(&[2, 2], &[0.0, -INF, 0.0, 0.0]))), &[4.0, 7.0], 1e-6);
    // A fully masked row gives NaN, as the decomposition does.
    assert_floats(&att(true, Some(bools(&[2], &[false, true]))), &[NAN, 8.0]);
    // The scale multiplies the scores before the mask: scale 0 makes them uniform.
    let mid = ok(Op::Attention { causal: false, scale: 0.0 }, out.clone(), &[q.clone(), k.clone(), v.clone()]);
    assert_close(&mid, &[6.0, 6.0], 1e-6);
}

// ---------------------------------------------------------------- signature, dims, freeing

fn sym_graph() -> (Graph, SymId) {
    let mut g = Graph::new("t");
    g.symbols.push(Symbol { name: "N".into(), bound: 4 });
    let n = SymId(0);
    let x = g.add_input("x", TensorType::new(DType::F32, vec![Dim::sym(n), Dim::known(2)]));
    let w = g.add_param("w", ty(DType::F32, &[2, 1]));
    let y = g.add(Op::MatMul, TensorType::new(DType::F32, vec![Dim::sym(n), Dim::known(1)]), &[x, w]);
    let flat = g.add(Op::Reshape, TensorType::new(DType::F32, vec![Dim { coeff: 2, syms: vec![n] }]), &[x]);
    g.add_output("y", y);
    g.add_output("flat", flat);
    g.add_output("x", x);
    (g, n)
}

fn one(name: &str, t: Tensor) -> TensorMap {
    TensorMap::from([(name.to_string(), t)])
}

#[test]
fn symbols_are_inferred_and_outputs_returned_in_order() {
    let (g, n) = sym_graph();
    let x = f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let dims = bind_dims(&g, &one("x", x.clone()), &DimValues::new()).unwrap();
    assert_eq!(dims.get(n), Some(3));
    let out = eval(&g, &dims, &one("x", x.clone()), &one("w", f32s(&[2, 1], &[1.0, -1.0]))).unwrap();
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["y", "flat", "x"]);
    assert_floats(&out[0].1, &[-1.0, -1.0, -1.0]);
    assert_eq!(out[1].1.shape(), [6]);
    assert_eq!(out[2].1, x);
}

#[test]
fn signature_errors() {
    let (g, _) = sym_graph();
    let none = DimValues::new();
    let e = bind_dims(&g, &one("x", f32s(&[5, 2], &[0.0; 10])), &none).unwrap_err();
    assert_eq!(e.to_string(), "symbol `N` = 5 is outside 1..=4 (its declared bound)");
    let e = bind_dims(&g, &one("x", f32s(&[0, 2], &[])), &none).unwrap_err();
    assert_eq!(e.to_string(), "symbol `N` = 0 is outside 1..=4 (its declared bound)");
    let e = bind_dims(&g, &one("x", f32s(&[2, 3], &[0.0; 6])), &none).unwrap_err();
    assert_eq!(e.to_string(), "input `x`: axis 1 must be 2, found 3");
    let e = bind_dims(&g, &one("x", f(DType::F16, &[2, 2], &[0.0; 4])), &none).unwrap_err();
    assert_eq!(e.to_string(), "input `x` must be f32, found f16");
    let e = bind_dims(&g, &one("x", f32s(&[4], &[0.0; 4])), &none).unwrap_err();
    assert!(matches!(e, EvalError::WrongRank { expected: 2, .. }));
    let e = bind_dims(&g, &TensorMap::new(), &none).unwrap_err();
    assert_eq!(e, EvalError::MissingInput { name: "x".into() });
    let mut extra = one("x", f32s(&[1, 2], &[0.0; 2]));
    extra.insert("z".into(), f32s(&[1], &[0.0]));
    assert!(matches!(bind_dims(&g, &extra, &none).unwrap_err(), EvalError::UnknownInput { .. }));
    // An explicit value that disagrees with the input shape.
    let explicit: DimValues = [(SymId(0), 2)].into_iter().collect();
    let e = bind_dims(&g, &one("x", f32s(&[3, 2], &[0.0; 6])), &explicit).unwrap_err();
    assert_eq!(e.to_string(), "input `x`: axis 0 must be N = 2, found 3");
}

#[test]
fn params_are_checked() {
    let (g, _) = sym_graph();
    let x = one("x", f32s(&[1, 2], &[0.0; 2]));
    let dims = bind_dims(&g, &x, &DimValues::new()).unwrap();
    let e = eval(&g, &dims, &x, &TensorMap::new()).unwrap_err();
    assert_eq!(e, EvalError::MissingParam { name: "w".into() });
    let e = eval(&g, &dims, &x, &one("w", f32s(&[1, 2], &[0.0; 2]))).unwrap_err();
    assert_eq!(e.to_string(), "param `w`: axis 0 must be 2, found 1");
}

#[test]
fn product_dims_are_solved_from_their_factors() {
    let mut g = Graph::new("t");
    g.symbols.push(Symbol { name: "B".into(), bound: 8 });
    g.symbols.push(Symbol { name: "S".into(), bound: 8 });
    let (b, s) = (SymId(0), SymId(1));
    let bs = Dim { coeff: 1, syms: vec![b, s] };
    let x = g.add_input("x", TensorType::new(DType::F32, vec![bs, Dim::known(2)]));
    let m = g.add_input("m", TensorType::new(DType::Bool, vec![Dim::sym(b)]));
    g.add_output("x", x);
    g.add_output("m", m);
    let mut inputs = one("x", f32s(&[6, 2], &[0.0; 12]));
    inputs.insert("m".into(), bools(&[2], &[true, false]));
    let dims = bind_dims(&g, &inputs, &DimValues::new()).unwrap();
    assert_eq!((dims.get(b), dims.get(s)), (Some(2), Some(3)));
    inputs.insert("x".into(), f32s(&[5, 2], &[0.0; 10]));
    let e = bind_dims(&g, &inputs, &DimValues::new()).unwrap_err();
    assert!(matches!(e, EvalError::NotDivisible { divisor: 2, found: 5, .. }), "{e:?}");
}

#[test]
fn a_value_used_twice_and_freed_still_evaluates() {
    // y = (x + x) * x; x has three uses from two users.
    let mut g = Graph::new("t");
    let x = g.add_input("x", ty(DType::F32, &[2]));
    let s = g.add(Op::Binary(BinaryOp::Add), ty(DType::F32, &[2]), &[x, x]);
    let y = g.add(Op::Binary(BinaryOp::Mul), ty(DType::F32, &[2]), &[s, x]);
    let dead = g.add(Op::Unary(UnaryOp::Exp), ty(DType::F32, &[2]), &[s]);
    let _ = dead;
    g.add_output("y", y);
    let out = run(&g, &one("x", f32s(&[2], &[3.0, -1.0])), &TensorMap::new()).unwrap();
    assert_floats(&out[0].1, &[18.0, 2.0]);
}

#[test]
fn inputs_built_field_by_field_are_rounded_to_their_dtype() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", ty(DType::F16, &[2]));
    g.add_output("x", x);
    let raw = Tensor { dtype: DType::F16, data: TensorData::Float(ndarray::arr1(&[0.1, 1e6]).into_dyn()) };
    let out = run(&g, &one("x", raw), &TensorMap::new()).unwrap();
    assert_floats(&out[0].1, &[0.0999755859375, INF]);
}
