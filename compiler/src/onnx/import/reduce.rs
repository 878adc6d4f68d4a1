//! Reductions (`Reduce*` with axes as attribute or input), and `ArgMax`/`ArgMin`.

use super::build::{axes, axis, one};
use super::{entry, Entry, Importer, NodeCx, Value};
use crate::interp::Tensor;
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

const REDUCE_ATTRS: &[&str] = &["axes", "keepdims", "noop_with_empty_axes"];

pub(crate) const OPS: &[(&str, Entry)] = &[
    ("ReduceSum", entry(reduce, REDUCE_ATTRS)),
    ("ReduceMean", entry(reduce, REDUCE_ATTRS)),
    ("ReduceMax", entry(reduce, REDUCE_ATTRS)),
    ("ReduceMin", entry(reduce, REDUCE_ATTRS)),
    ("ReduceProd", entry(reduce, REDUCE_ATTRS)),
    ("ReduceL1", entry(reduce, REDUCE_ATTRS)),
    ("ReduceL2", entry(reduce, REDUCE_ATTRS)),
    ("ReduceSumSquare", entry(reduce, REDUCE_ATTRS)),
    ("ReduceLogSum", entry(reduce, REDUCE_ATTRS)),
    ("ReduceLogSumExp", entry(reduce, REDUCE_ATTRS)),
    ("ArgMax", entry(arg_reduce, &["axis", "keepdims", "select_last_index"])),
    ("ArgMin", entry(arg_reduce, &["axis", "keepdims", "select_last_index"])),
    ("TopK", entry(top_k, &["axis", "largest", "sorted"])),
];

/// The axes a `Reduce*` node reduces: from input 1 or the `axes` attribute; none given (or
/// an empty list) means every axis, or no reduction at all with `noop_with_empty_axes`.
fn reduce_axes(imp: &Importer, cx: &NodeCx, rank: usize) -> R<Option<Vec<usize>>> {
    let raw = match (cx.has(1), cx.ints("axes")?) {
        (true, _) => imp.const_ints(cx, 1)?,
        (false, Some(a)) => a,
        (false, None) => vec![],
    };
    if raw.is_empty() {
        return Ok(if cx.int("noop_with_empty_axes", 0)? != 0 { None } else { Some((0..rank).collect()) });
    }
    axes(cx, &raw, rank).map(Some)
}

fn reduce(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let ty = imp.type_of(cx.value(0)?);
    let keepdims = cx.int("keepdims", 1)? != 0;
    let Some(axes) = reduce_axes(imp, cx, ty.rank())? else {
        return Ok(vec![cx.value(0)?.clone()]);
    };
    if ty.shape.iter().any(|d| d.as_known() == Some(0)) {
        return empty_reduction(cx, &ty, &axes, keepdims);
    }
    let x = imp.input(cx, 0)?;
    if ty.dtype == DType::Bool && matches!(cx.op(), "ReduceMax" | "ReduceMin") {
        // On bool, max is "any" and min is "all": reduce as integers.
        let xi = imp.cast(cx, x, DType::I32)?;
        let op = if cx.op() == "ReduceMax" { ReduceOp::Max } else { ReduceOp::Min };
        let r = imp.reduce(cx, op, xi, axes, keepdims)?;
        return one(imp.cast(cx, r, DType::Bool)?);
    }
    use BinaryOp::*;
    use ReduceOp::*;
    let y = match cx.op() {
        "ReduceSum" => imp.reduce(cx, Sum, x, axes, keepdims)?,
        "ReduceMean" => imp.reduce(cx, Mean, x, axes, keepdims)?,
        "ReduceMax" => imp.reduce(cx, Max, x, axes, keepdims)?,
        "ReduceMin" => imp.reduce(cx, Min, x, axes, keepdims)?,
        "ReduceProd" => imp.reduce(cx, Prod, x, axes, keepdims)?,
        // l1 = sum(|x|)
        "ReduceL1" => {
            let a = imp.unary(cx, UnaryOp::Abs, x)?;
            imp.reduce(cx, Sum, a, axes, keepdims)?
        }
        // l2 = sqrt(sum(x * x)), sum_square = sum(x * x)
        "ReduceL2" | "ReduceSumSquare" => {
            let sq = imp.binary(cx, Mul, x, x)?;
            let s = imp.reduce(cx, Sum, sq, axes, keepdims)?;
            if cx.op() == "ReduceL2" {
                imp.unary(cx, UnaryOp::Sqrt, s)?
            } else {
                s
            }
        }
        // log_sum = ln(sum(x))
        "ReduceLogSum" => {
            let s = imp.reduce(cx, Sum, x, axes, keepdims)?;
            imp.unary(cx, UnaryOp::Log, s)?
        }
        // log_sum_exp = m + ln(sum(e^(x - m))), m = max(x): the usual overflow-free form
        _ => {
            let m = imp.reduce(cx, Max, x, axes.clone(), true)?;
            let d = imp.binary(cx, Sub, x, m)?;
            let e = imp.unary(cx, UnaryOp::Exp, d)?;
            let s = imp.reduce(cx, Sum, e, axes.clone(), true)?;
            let l = imp.unary(cx, UnaryOp::Log, s)?;
            let y = imp.binary(cx, Add, l, m)?;
            if keepdims {
                y
            } else {
                let shape = ty.shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone());
                imp.reshape(cx, y, shape.collect())?
            }
        }
    };
    one(y)
}

/// A reduction over an axis of length 0 gives the reduction's identity element.
fn empty_reduction(cx: &NodeCx, ty: &TensorType, axes: &[usize], keepdims: bool) -> R<Vec<Value>> {
    let value = match cx.op() {
        "ReduceSum" | "ReduceL1" | "ReduceL2" | "ReduceSumSquare" => 0.0,
        "ReduceProd" => 1.0,
        "ReduceMax" | "ReduceLogSum" | "ReduceLogSumExp" => f64::NEG_INFINITY,
        "ReduceMin" => f64::INFINITY,
        _ => f64::NAN,
    };
    let shape: Vec<usize> = ty
        .shape
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
            (true, true) => Some(Some(1)),
            (true, false) => None,
            (false, _) => Some(d.as_known().map(|v| v as usize)),
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| cx.unsupported("an empty reduction over a symbolic shape"))?;
    let n = super::build::constant_len(cx, shape.iter().map(|&d| d as u64))?;
    let t = match ty.dtype {
        d if d.is_float() => Tensor::from_f64(d, &shape, vec![value; n]),
        d if d.is_int() => {
            let v = match value {
                f64::NEG_INFINITY => {
                    if d == DType::I32 {
                        i32::MIN as i64
                    } else {
                        i64::MIN
                    }
                }
                f64::INFINITY => {
                    if d == DType::I32 {
                        i32::MAX as i64
                    } else {
                        i64::MAX
                    }
                }
                v => v as i64,
            };
            Tensor::from_i64(d, &shape, vec![v; n])
        }
        _ => return Err(cx.invalid("reductions take numbers")),
    };
    Ok(vec![Value::constant(t.map_err(|e| cx.invalid(e.to_string()))?)])
}

/// `ArgMax`/`ArgMin`; `select_last_index` reverses the axis with a gather and maps the index
/// back: `n - 1 - argmax(reversed)`.
fn arg_reduce(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let ty = imp.ty(x);
    let a = axis(cx, cx.int("axis", 0)?, ty.rank())?;
    let keepdims = cx.int("keepdims", 1)? != 0;
    let op = if cx.op() == "ArgMax" { ArgReduceOp::ArgMax } else { ArgReduceOp::ArgMin };
    if cx.int("select_last_index", 0)? == 0 {
        return one(imp.add(cx, Op::ArgReduce { op, axis: a, keepdims }, &[x], None)?);
    }
    let n = ty.shape[a].as_known().ok_or_else(|| cx.unsupported("`select_last_index` along a symbolic axis"))?;
    let n = super::build::constant_len(cx, [n])?;
    let reversed = imp.gather_const(cx, x, a, (0..n as i64).rev().collect())?;
    let i = imp.add(cx, Op::ArgReduce { op, axis: a, keepdims }, &[reversed], None)?;
    let last = imp.scalar(DType::I64, (n - 1) as f64);
    one(imp.binary(cx, BinaryOp::Sub, last, i)?)
}

/// `TopK` with a constant `k`. The rank of element `i` along the axis is the number of
/// elements that beat it (larger, or equal at a lower index: ties go to the lower index, as
/// ONNX requires); output `r` gathers the element of rank `r` through an `==` mask. That is
/// exact for every value, infinities included, at `n²` comparisons per row; above
/// [`TOPK_RANK_LIMIT`] float rows take `k` rounds of `argmax` instead, masking each pick
/// with `-inf` (which is exact unless the row itself holds infinities or NaN).
fn top_k(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let k = imp.const_scalar(cx, 1)?;
    let x = imp.input(cx, 0)?;
    let ty = imp.ty(x);
    let a = axis(cx, cx.int("axis", -1)?, ty.rank())?;
    let n = ty.shape[a].as_known().ok_or_else(|| cx.unsupported("`TopK` along a symbolic axis"))?;
    if k < 1.0 || k > n as f64 {
        return Err(cx.unsupported(format!("k = {k} on an axis of length {n}")));
    }
    let largest = cx.int("largest", 1)? != 0;
    if n > TOPK_RANK_LIMIT && ty.dtype.is_float() {
        return top_k_rounds(imp, cx, x, a, k as u64, largest);
    }
    let r = ty.rank();
    // Move the axis last: xt [..., n].
    let mut perm: Vec<usize> = (0..r).filter(|&i| i != a).collect();
    perm.push(a);
    let xt = imp.permute(cx, x, perm.clone())?;
    let xi = imp.unsqueeze(cx, xt, &[r])?; // [..., n(i), 1]
    let xj = imp.unsqueeze(cx, xt, &[r - 1])?; // [..., 1, n(j)]
    let beats = imp.compare(cx, if largest { CompareOp::Gt } else { CompareOp::Lt }, xj, xi)?;
    let same = imp.compare(cx, CompareOp::Eq, xj, xi)?;
    let nn = vec![Dim::known(n), Dim::known(n)];
    let (ii, jj) = (imp.iota(cx, nn.clone(), 0, DType::I64)?, imp.iota(cx, nn, 1, DType::I64)?);
    let earlier = imp.compare(cx, CompareOp::Lt, jj, ii)?;
    let tie = imp.binary(cx, BinaryOp::And, same, earlier)?;
    let better = imp.binary(cx, BinaryOp::Or, beats, tie)?;
    let counts = imp.cast(cx, better, DType::I64)?;
    let rank = imp.reduce(cx, ReduceOp::Sum, counts, vec![r], false)?; // [..., n]
                                                                       // M[..., q, i] = rank[..., i] == q for q < k
    let rank_q = imp.unsqueeze(cx, rank, &[r - 1])?; // [..., 1, n]
    let q = imp.iota(cx, vec![Dim::known(k as u64), Dim::known(1)], 0, DType::I64)?;
    let m = imp.compare(cx, CompareOp::Eq, rank_q, q)?; // [..., k, n]
    let xq = imp.unsqueeze(cx, xt, &[r - 1])?;
    let zero = imp.scalar(ty.dtype, 0.0);
    let picked = imp.select(cx, m, xq, zero)?;
    let values = imp.reduce(cx, ReduceOp::Sum, picked, vec![r], false)?; // [..., k]
    let pos = imp.iota(cx, vec![Dim::known(n)], 0, DType::I64)?;
    let zero_i = imp.scalar(DType::I64, 0.0);
    let at = imp.select(cx, m, pos, zero_i)?;
    let indices = imp.reduce(cx, ReduceOp::Sum, at, vec![r], false)?;
    let mut inverse = vec![0; r];
    for (k, &p) in perm.iter().enumerate() {
        inverse[p] = k;
    }
    Ok(vec![Value::Node(imp.permute(cx, values, inverse.clone())?), Value::Node(imp.permute(cx, indices, inverse)?)])
}

/// Rows longer than this use `k` rounds of `argmax` in `TopK` (the rank method needs `n²`).
const TOPK_RANK_LIMIT: u64 = 1024;

fn top_k_rounds(imp: &mut Importer, cx: &NodeCx, x: NodeId, a: usize, k: u64, largest: bool) -> R<Vec<Value>> {
    let ty = imp.ty(x);
    let (op, fill) =
        if largest { (ArgReduceOp::ArgMax, f64::NEG_INFINITY) } else { (ArgReduceOp::ArgMin, f64::INFINITY) };
    let pos = imp.iota(cx, ty.shape.clone(), a, DType::I64)?;
    let fill = imp.scalar(ty.dtype, fill);
    let zero = imp.scalar(ty.dtype, 0.0);
    let (mut rest, mut values, mut indices) = (x, Vec::new(), Vec::new());
    for _ in 0..k {
        let i = imp.add(cx, Op::ArgReduce { op, axis: a, keepdims: true }, &[rest], None)?;
        let hit = imp.compare(cx, CompareOp::Eq, pos, i)?;
        let picked = imp.select(cx, hit, x, zero)?;
        values.push(imp.reduce(cx, ReduceOp::Sum, picked, vec![a], true)?);
        indices.push(i);
        rest = imp.select(cx, hit, fill, rest)?;
    }
    Ok(vec![Value::Node(imp.concat(cx, &values, a)?), Value::Node(imp.concat(cx, &indices, a)?)])
}
