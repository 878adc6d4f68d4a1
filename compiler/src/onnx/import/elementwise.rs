//! Elementwise ops: Flint's unary, binary and compare ops, `select`, `cast`, and the ONNX
//! activations that decompose into them (each with its formula from the ONNX spec).

use super::build::one;
use super::{entry, Entry, Importer, NodeCx, Value};
use crate::ir::*;
use crate::onnx::{tensor, OnnxError};

type R<T> = Result<T, OnnxError>;

pub(crate) const OPS: &[(&str, Entry)] = &[
    ("Abs", entry(unary, &[])),
    ("Neg", entry(unary, &[])),
    ("Exp", entry(unary, &[])),
    ("Log", entry(unary, &[])),
    ("Sqrt", entry(unary, &[])),
    ("Tanh", entry(unary, &[])),
    ("Sigmoid", entry(unary, &[])),
    ("Relu", entry(unary, &[])),
    ("Erf", entry(unary, &[])),
    ("Sin", entry(unary, &[])),
    ("Cos", entry(unary, &[])),
    ("Atan", entry(unary, &[])),
    ("Floor", entry(unary, &[])),
    ("Ceil", entry(unary, &[])),
    ("Round", entry(unary, &[])),
    ("Sign", entry(unary, &[])),
    ("Reciprocal", entry(unary, &[])),
    ("Not", entry(unary, &[])),
    ("BitwiseNot", entry(unary, &[])),
    ("Identity", entry(identity, &[])),
    ("Tan", entry(derived, &[])),
    ("Asin", entry(derived, &[])),
    ("Acos", entry(derived, &[])),
    ("Sinh", entry(derived, &[])),
    ("Cosh", entry(derived, &[])),
    ("Asinh", entry(derived, &[])),
    ("Acosh", entry(derived, &[])),
    ("Atanh", entry(derived, &[])),
    ("Softplus", entry(derived, &[])),
    ("Softsign", entry(derived, &[])),
    ("Mish", entry(derived, &[])),
    ("IsNaN", entry(derived, &[])),
    ("IsInf", entry(is_inf, &["detect_negative", "detect_positive"])),
    ("Elu", entry(elu, &["alpha"])),
    ("Selu", entry(selu, &["alpha", "gamma"])),
    ("Celu", entry(celu, &["alpha"])),
    ("LeakyRelu", entry(leaky_relu, &["alpha"])),
    ("ThresholdedRelu", entry(thresholded_relu, &["alpha"])),
    ("HardSigmoid", entry(hard_sigmoid, &["alpha", "beta"])),
    ("HardSwish", entry(hard_swish, &[])),
    ("Swish", entry(swish, &["alpha"])),
    ("Shrink", entry(shrink, &["bias", "lambd"])),
    ("PRelu", entry(prelu, &[])),
    ("Add", entry(binary, &[])),
    ("Sub", entry(binary, &[])),
    ("Mul", entry(binary, &[])),
    ("Div", entry(binary, &[])),
    ("And", entry(binary, &[])),
    ("Or", entry(binary, &[])),
    ("Xor", entry(binary, &[])),
    ("BitwiseAnd", entry(binary, &[])),
    ("BitwiseOr", entry(binary, &[])),
    ("BitwiseXor", entry(binary, &[])),
    ("Equal", entry(binary, &[])),
    ("Less", entry(binary, &[])),
    ("LessOrEqual", entry(binary, &[])),
    ("Greater", entry(binary, &[])),
    ("GreaterOrEqual", entry(binary, &[])),
    ("Pow", entry(pow, &[])),
    ("Mod", entry(modulo, &["fmod"])),
    ("Max", entry(variadic, &[])),
    ("Min", entry(variadic, &[])),
    ("Sum", entry(variadic, &[])),
    ("Mean", entry(variadic, &[])),
    ("Where", entry(where_, &[])),
    ("Clip", entry(clip, &["min", "max"])),
    ("Cast", entry(cast, &["to", "saturate"])),
    ("CastLike", entry(cast_like, &["saturate"])),
];

fn unary(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let u = match cx.op() {
        "Abs" => UnaryOp::Abs,
        "Neg" => UnaryOp::Neg,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sqrt" => UnaryOp::Sqrt,
        "Tanh" => UnaryOp::Tanh,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Relu" => UnaryOp::Relu,
        "Erf" => UnaryOp::Erf,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Atan" => UnaryOp::Atan,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Sign" => UnaryOp::Sign,
        "Reciprocal" => UnaryOp::Reciprocal,
        _ => UnaryOp::Not,
    };
    let x = imp.input(cx, 0)?;
    one(imp.unary(cx, u, x)?)
}

fn identity(_: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    Ok(vec![cx.value(0)?.clone()])
}

/// Unary functions written with Flint's: `tan = sin / cos`, `sinh = (e^x - e^-x) / 2`, ...
fn derived(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    use BinaryOp::*;
    use UnaryOp::*;
    let x = imp.input(cx, 0)?;
    let y = match cx.op() {
        // tan x = sin x / cos x
        "Tan" => {
            let (s, c) = (imp.unary(cx, Sin, x)?, imp.unary(cx, Cos, x)?);
            imp.binary(cx, Div, s, c)?
        }
        // asin x = atan(x / sqrt((1 - x)(1 + x))), acos x = 2 atan(sqrt((1 - x) / (1 + x))):
        // both exact at ±1 (x / 0 = ±inf, atan ±inf = ±π/2) and NaN outside [-1, 1]; the
        // factored 1 - x² keeps its precision near ±1, where acos is small.
        "Asin" | "Acos" => {
            let one = imp.scalar(imp.dtype(x), 1.0);
            let (m, p) = (imp.binary(cx, Sub, one, x)?, imp.binary(cx, Add, one, x)?);
            if cx.op() == "Asin" {
                let mp = imp.binary(cx, Mul, m, p)?;
                let r = imp.unary(cx, Sqrt, mp)?;
                let q = imp.binary(cx, Div, x, r)?;
                imp.unary(cx, Atan, q)?
            } else {
                let q = imp.binary(cx, Div, m, p)?;
                let r = imp.unary(cx, Sqrt, q)?;
                let a = imp.unary(cx, Atan, r)?;
                imp.binary_scalar(cx, Mul, a, 2.0)?
            }
        }
        // sinh x = (e^x - e^-x) / 2, cosh x = (e^x + e^-x) / 2
        "Sinh" | "Cosh" => {
            let e = imp.unary(cx, Exp, x)?;
            let nx = imp.unary(cx, Neg, x)?;
            let en = imp.unary(cx, Exp, nx)?;
            let s = imp.binary(cx, if cx.op() == "Sinh" { Sub } else { Add }, e, en)?;
            imp.binary_scalar(cx, Mul, s, 0.5)?
        }
        // asinh x = ln(x + sqrt(x^2 + 1)), acosh x = ln(x + sqrt(x^2 - 1))
        "Asinh" | "Acosh" => {
            let sq = imp.binary(cx, Mul, x, x)?;
            let inner = imp.binary_scalar(cx, Add, sq, if cx.op() == "Asinh" { 1.0 } else { -1.0 })?;
            let r = imp.unary(cx, Sqrt, inner)?;
            let s = imp.binary(cx, Add, x, r)?;
            imp.unary(cx, Log, s)?
        }
        // atanh x = ln((1 + x) / (1 - x)) / 2
        "Atanh" => {
            let one = imp.scalar(imp.dtype(x), 1.0);
            let (p, m) = (imp.binary(cx, Add, one, x)?, imp.binary(cx, Sub, one, x)?);
            let q = imp.binary(cx, Div, p, m)?;
            let l = imp.unary(cx, Log, q)?;
            imp.binary_scalar(cx, Mul, l, 0.5)?
        }
        "Softplus" => softplus(imp, cx, x)?,
        // softsign x = x / (1 + |x|)
        "Softsign" => {
            let a = imp.unary(cx, Abs, x)?;
            let d = imp.binary_scalar(cx, Add, a, 1.0)?;
            imp.binary(cx, Div, x, d)?
        }
        // mish x = x * tanh(softplus(x))
        "Mish" => {
            let sp = softplus(imp, cx, x)?;
            let t = imp.unary(cx, Tanh, sp)?;
            imp.binary(cx, Mul, x, t)?
        }
        // isnan x = x != x
        _ => imp.compare(cx, CompareOp::Ne, x, x)?,
    };
    one(y)
}

/// softplus x = ln(e^x + 1)
fn softplus(imp: &mut Importer, cx: &NodeCx, x: NodeId) -> R<NodeId> {
    let e = imp.unary(cx, UnaryOp::Exp, x)?;
    let s = imp.binary_scalar(cx, BinaryOp::Add, e, 1.0)?;
    imp.unary(cx, UnaryOp::Log, s)
}

fn is_inf(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let (neg, pos) = (cx.int("detect_negative", 1)? != 0, cx.int("detect_positive", 1)? != 0);
    let mut out = None;
    for (on, v) in [(pos, f64::INFINITY), (neg, f64::NEG_INFINITY)] {
        if on {
            let c = imp.compare_scalar(cx, CompareOp::Eq, x, v)?;
            out = Some(match out {
                Some(o) => imp.binary(cx, BinaryOp::Or, o, c)?,
                None => c,
            });
        }
    }
    match out {
        Some(o) => one(o),
        None => {
            // Neither sign is detected: every element is false.
            let f = imp.scalar(DType::Bool, 0.0);
            one(imp.broadcast(cx, f, imp.ty(x).shape)?)
        }
    }
}

/// `alpha * (e^x - 1)` for the negative branch of the ELU family.
fn expm1_scaled(imp: &mut Importer, cx: &NodeCx, x: NodeId, alpha: f64) -> R<NodeId> {
    let e = imp.unary(cx, UnaryOp::Exp, x)?;
    let d = imp.binary_scalar(cx, BinaryOp::Sub, e, 1.0)?;
    imp.binary_scalar(cx, BinaryOp::Mul, d, alpha)
}

/// elu x = x < 0 ? alpha * (e^x - 1) : x
fn elu(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let neg = expm1_scaled(imp, cx, x, cx.float("alpha", 1.0)? as f64)?;
    let c = imp.compare_scalar(cx, CompareOp::Lt, x, 0.0)?;
    one(imp.select(cx, c, neg, x)?)
}

/// selu x = gamma * (x <= 0 ? alpha * (e^x - 1) : x)
fn selu(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let alpha = cx.float("alpha", 1.673_263_2)? as f64;
    let gamma = cx.float("gamma", 1.050_701)? as f64;
    let neg = expm1_scaled(imp, cx, x, alpha)?;
    let c = imp.compare_scalar(cx, CompareOp::Le, x, 0.0)?;
    let s = imp.select(cx, c, neg, x)?;
    one(imp.binary_scalar(cx, BinaryOp::Mul, s, gamma)?)
}

/// celu x = max(0, x) + min(0, alpha * (e^(x / alpha) - 1))
fn celu(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let alpha = cx.float("alpha", 1.0)? as f64;
    let xa = imp.binary_scalar(cx, BinaryOp::Div, x, alpha)?;
    let neg = expm1_scaled(imp, cx, xa, alpha)?;
    let zero = imp.scalar(imp.dtype(x), 0.0);
    let lo = imp.binary(cx, BinaryOp::Minimum, neg, zero)?;
    let hi = imp.binary(cx, BinaryOp::Maximum, x, zero)?;
    one(imp.binary(cx, BinaryOp::Add, hi, lo)?)
}

/// leaky_relu x = x < 0 ? alpha * x : x
fn leaky_relu(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let ax = imp.binary_scalar(cx, BinaryOp::Mul, x, cx.float("alpha", 0.01)? as f64)?;
    let c = imp.compare_scalar(cx, CompareOp::Lt, x, 0.0)?;
    one(imp.select(cx, c, ax, x)?)
}

/// thresholded_relu x = x > alpha ? x : 0
fn thresholded_relu(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let c = imp.compare_scalar(cx, CompareOp::Gt, x, cx.float("alpha", 1.0)? as f64)?;
    let zero = imp.scalar(imp.dtype(x), 0.0);
    one(imp.select(cx, c, x, zero)?)
}

/// hard_sigmoid x = max(0, min(1, alpha * x + beta))
fn hard_sigmoid_of(imp: &mut Importer, cx: &NodeCx, x: NodeId, alpha: f64, beta: f64) -> R<NodeId> {
    let ax = imp.binary_scalar(cx, BinaryOp::Mul, x, alpha)?;
    let s = imp.binary_scalar(cx, BinaryOp::Add, ax, beta)?;
    let lo = imp.binary_scalar(cx, BinaryOp::Minimum, s, 1.0)?;
    imp.binary_scalar(cx, BinaryOp::Maximum, lo, 0.0)
}

fn hard_sigmoid(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    one(hard_sigmoid_of(imp, cx, x, cx.float("alpha", 0.2)? as f64, cx.float("beta", 0.5)? as f64)?)
}

/// hard_swish x = x * hard_sigmoid(x) with alpha = 1/6, beta = 1/2
fn hard_swish(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let h = hard_sigmoid_of(imp, cx, x, 1.0 / 6.0, 0.5)?;
    one(imp.binary(cx, BinaryOp::Mul, x, h)?)
}

/// swish x = x * sigmoid(alpha * x); `silu` when alpha is 1
fn swish(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let alpha = cx.float("alpha", 1.0)? as f64;
    if alpha == 1.0 {
        return one(imp.add(cx, Op::Silu, &[x], None)?);
    }
    let ax = imp.binary_scalar(cx, BinaryOp::Mul, x, alpha)?;
    let s = imp.unary(cx, UnaryOp::Sigmoid, ax)?;
    one(imp.binary(cx, BinaryOp::Mul, x, s)?)
}

/// shrink x = x < -lambd ? x + bias : (x > lambd ? x - bias : 0)
fn shrink(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let (bias, lambd) = (cx.float("bias", 0.0)? as f64, cx.float("lambd", 0.5)? as f64);
    let zero = imp.scalar(imp.dtype(x), 0.0);
    let up = imp.binary_scalar(cx, BinaryOp::Sub, x, bias)?;
    let gt = imp.compare_scalar(cx, CompareOp::Gt, x, lambd)?;
    let hi = imp.select(cx, gt, up, zero)?;
    let down = imp.binary_scalar(cx, BinaryOp::Add, x, bias)?;
    let lt = imp.compare_scalar(cx, CompareOp::Lt, x, -lambd)?;
    one(imp.select(cx, lt, down, hi)?)
}

/// prelu(x, slope) = x < 0 ? slope * x : x
fn prelu(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, slope) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let sx = imp.binary(cx, BinaryOp::Mul, slope, x)?;
    let c = imp.compare_scalar(cx, CompareOp::Lt, x, 0.0)?;
    let y = imp.select(cx, c, sx, x)?;
    // The slope broadcasts to x, never the other way.
    if imp.ty(y).shape != imp.ty(x).shape {
        return Err(cx.invalid("the slope does not broadcast to the input's shape"));
    }
    one(y)
}

fn binary(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, y) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let op = match cx.op() {
        "Add" => Op::Binary(BinaryOp::Add),
        "Sub" => Op::Binary(BinaryOp::Sub),
        "Mul" => Op::Binary(BinaryOp::Mul),
        "Div" => Op::Binary(BinaryOp::Div),
        "And" | "BitwiseAnd" => Op::Binary(BinaryOp::And),
        "Or" | "BitwiseOr" => Op::Binary(BinaryOp::Or),
        "Xor" | "BitwiseXor" => Op::Binary(BinaryOp::Xor),
        "Equal" => Op::Compare(CompareOp::Eq),
        "Less" => Op::Compare(CompareOp::Lt),
        "LessOrEqual" => Op::Compare(CompareOp::Le),
        "Greater" => Op::Compare(CompareOp::Gt),
        _ => Op::Compare(CompareOp::Ge),
    };
    one(imp.add(cx, op, &[x, y], None)?)
}

/// `pow(x, y)`; ONNX lets the exponent's dtype differ from the base's, and the result has
/// the base's dtype. A float exponent on an integer base is computed in that float dtype and
/// converted back (truncating), as ONNX's reference does.
fn pow(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, y) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let (dx, dy) = (imp.dtype(x), imp.dtype(y));
    if dx.is_int() && dy.is_float() {
        let xf = imp.cast(cx, x, dy)?;
        let p = imp.binary(cx, BinaryOp::Pow, xf, y)?;
        return one(imp.cast(cx, p, dx)?);
    }
    let y = imp.cast(cx, y, dx)?;
    one(imp.binary(cx, BinaryOp::Pow, x, y)?)
}

/// `fmod=1` is C's fmod (Flint's `rem`); `fmod=0` (integers only) takes the divisor's sign:
/// `r = rem(a, b); r != 0 && (r < 0) != (b < 0) ? r + b : r`.
fn modulo(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (a, b) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let r = imp.binary(cx, BinaryOp::Rem, a, b)?;
    let fmod = cx.int("fmod", 0)?;
    if fmod == 1 {
        return one(r);
    }
    if imp.dtype(a).is_float() {
        return Err(cx.invalid("`fmod` must be 1 for floating-point operands"));
    }
    let nonzero = imp.compare_scalar(cx, CompareOp::Ne, r, 0.0)?;
    let r_neg = imp.compare_scalar(cx, CompareOp::Lt, r, 0.0)?;
    let b_neg = imp.compare_scalar(cx, CompareOp::Lt, b, 0.0)?;
    let differ = imp.compare(cx, CompareOp::Ne, r_neg, b_neg)?;
    let fix = imp.binary(cx, BinaryOp::And, nonzero, differ)?;
    let shifted = imp.binary(cx, BinaryOp::Add, r, b)?;
    one(imp.select(cx, fix, shifted, r)?)
}

/// `Max`, `Min`, `Sum`, `Mean` over any number of broadcasting inputs.
fn variadic(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let op = match cx.op() {
        "Max" => BinaryOp::Maximum,
        "Min" => BinaryOp::Minimum,
        _ => BinaryOp::Add,
    };
    let mut acc = imp.input(cx, 0)?;
    for i in 1..cx.arity() {
        let x = imp.input(cx, i)?;
        acc = imp.binary(cx, op, acc, x)?;
    }
    if cx.op() == "Mean" && cx.arity() > 1 {
        acc = imp.binary_scalar(cx, BinaryOp::Div, acc, cx.arity() as f64)?;
    }
    one(acc)
}

fn where_(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (c, a, b) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    one(imp.select(cx, c, a, b)?)
}

/// `clip(x, min, max) = minimum(maximum(x, min), max)`; bounds are inputs from opset 11 and
/// attributes before.
fn clip(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let mut y = imp.input(cx, 0)?;
    let dtype = imp.dtype(y);
    let bounds = [(1, "min", BinaryOp::Maximum), (2, "max", BinaryOp::Minimum)];
    for (slot, attr, op) in bounds {
        let bound = match (imp.opt_input(cx, slot)?, cx.opt_float(attr)?) {
            (Some(b), _) => Some(b),
            (None, Some(v)) => Some(imp.scalar(dtype, v as f64)),
            (None, None) => None,
        };
        if let Some(b) = bound {
            if imp.rank(b) != 0 && imp.ty(b).shape.iter().any(|d| !d.is_one()) {
                return Err(cx.invalid(format!("`{attr}` must be a scalar")));
            }
            let b = imp.reshape(cx, b, vec![])?;
            y = imp.binary(cx, op, y, b)?;
        }
    }
    one(y)
}

fn cast(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let to = cx.opt_int("to")?.ok_or_else(|| cx.invalid("attribute `to` is required"))?;
    let dtype = tensor::dtype(to as i32, &|| format!("{}: attribute `to`", cx.node_ref()))?;
    let x = imp.input(cx, 0)?;
    one(imp.cast(cx, x, dtype)?)
}

/// `CastLike` reads only the dtype of its second input, so a constant first input stays a
/// constant (exporters cast `-inf` like the scores, then pad with it).
fn cast_like(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let dtype = imp.dtype_of(cx, 1)?;
    if let Value::Const(t) = cx.value(0)? {
        return Ok(vec![Value::constant(t.cast(dtype))]);
    }
    let x = imp.input(cx, 0)?;
    one(imp.cast(cx, x, dtype)?)
}

/// An elementwise op on constants of which one has no elements gives an empty constant of
/// the broadcast shape (Flint's IR holds no empty tensors, so nothing is built).
pub(crate) fn empty_rule(imp: &Importer, cx: &NodeCx) -> Option<R<Vec<Value>>> {
    let types: Vec<TensorType> = cx.inputs.iter().flatten().map(|v| imp.type_of(v)).collect();
    if !types.iter().any(|t| t.shape.iter().any(|d| d.as_known() == Some(0))) || cx.op() == "Identity" {
        return None;
    }
    OPS.iter().find(|(n, _)| *n == cx.op())?;
    let shape = types.iter().try_fold(Vec::new(), |acc, t| crate::ir::infer::broadcast_shapes(&acc, &t.shape).ok())?;
    let dtype = match cx.op() {
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "IsNaN" | "IsInf" => DType::Bool,
        "Cast" => tensor::dtype(cx.opt_int("to").ok()?? as i32, &String::new).ok()?,
        "CastLike" | "Where" => types.get(1)?.dtype,
        _ => types.first()?.dtype,
    };
    let shape: Vec<usize> = shape.iter().map(|d| d.as_known().map(|v| v as usize)).collect::<Option<_>>()?;
    Some(super::movement::splat(cx, dtype, &shape, 0.0).map(|t| vec![Value::constant(t)]))
}
