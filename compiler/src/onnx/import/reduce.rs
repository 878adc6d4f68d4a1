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
    let n = shape.iter().product();
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
    let reversed = imp.gather_const(cx, x, a, (0..n as i64).rev().collect())?;
    let i = imp.add(cx, Op::ArgReduce { op, axis: a, keepdims }, &[reversed], None)?;
    let last = imp.scalar(DType::I64, (n - 1) as f64);
    one(imp.binary(cx, BinaryOp::Sub, last, i)?)
}
