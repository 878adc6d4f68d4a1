//! Reductions over axes (`sum`, `mean`, `max`, `min`, `prod`) and `argmax`/`argmin`.
//!
//! Each reduction moves the reduced axes last and flattens the operand into rows, one row per
//! result element, so every reduction is a function of one row.

use ndarray::{Array2, ArrayD, ArrayView1, IxDyn};

use super::elementwise::{max_nan, min_nan};
use super::{Ctx, EvalError, Tensor, TensorData};
use crate::ir::{ArgReduceOp, ReduceOp};

pub fn reduce(ctx: &Ctx, op: ReduceOp, axes: &[usize], x: &Tensor) -> Result<Tensor, EvalError> {
    let data = match &x.data {
        TensorData::Float(a) => {
            let rows = rows(ctx, a, axes)?;
            if matches!(op, ReduceOp::Max | ReduceOp::Min) && rows.ncols() == 0 && rows.nrows() > 0 {
                return Err(empty(ctx));
            }
            TensorData::Float(collect(ctx, rows.outer_iter().map(|r| float_reduce(op, r)))?)
        }
        TensorData::Int(a) => {
            let rows = rows(ctx, a, axes)?;
            let values = rows.outer_iter().map(|r| int_reduce(ctx, op, r)).collect::<Result<Vec<_>, _>>()?;
            TensorData::Int(collect(ctx, values)?)
        }
        TensorData::Bool(_) => return Err(ctx.malformed("reductions take numbers")),
    };
    ctx.finish(data)
}

/// The operand as rows: the kept axes in order make the row index, the reduced axes in order
/// make the position within a row.
pub(super) fn rows<T: Clone>(ctx: &Ctx, a: &ArrayD<T>, axes: &[usize]) -> Result<Array2<T>, EvalError> {
    let rank = a.ndim();
    let mut sorted = axes.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != axes.len() || sorted.last().is_some_and(|&a| a >= rank) {
        return Err(ctx.malformed("the axes are out of range or repeated"));
    }
    let kept: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
    let inner: usize = axes.iter().map(|&i| a.shape()[i]).product();
    let outer: usize = kept.iter().map(|&i| a.shape()[i]).product();
    let flat: Vec<T> = a.view().permuted_axes(IxDyn(&perm)).iter().cloned().collect();
    Array2::from_shape_vec((outer, inner), flat).map_err(|_| ctx.malformed("internal: row shape"))
}

fn collect<T>(ctx: &Ctx, values: impl IntoIterator<Item = T>) -> Result<ArrayD<T>, EvalError> {
    let values: Vec<T> = values.into_iter().collect();
    ArrayD::from_shape_vec(IxDyn(&ctx.shape), values)
        .map_err(|_| ctx.malformed("the result shape does not match the kept axes"))
}

fn empty(ctx: &Ctx) -> EvalError {
    EvalError::EmptyReduction { node: ctx.node, op: ctx.op }
}

fn float_reduce(op: ReduceOp, row: ArrayView1<f64>) -> f64 {
    match op {
        // `Iterator::sum` of no floats is -0; the empty sum is +0 here, as in NumPy.
        ReduceOp::Sum if row.is_empty() => 0.0,
        ReduceOp::Sum => row.iter().sum(),
        ReduceOp::Mean => row.iter().sum::<f64>() / row.len() as f64,
        ReduceOp::Max => row.iter().copied().fold(f64::NEG_INFINITY, max_nan),
        ReduceOp::Min => row.iter().copied().fold(f64::INFINITY, min_nan),
        ReduceOp::Prod => row.iter().product(),
    }
}

fn int_reduce(ctx: &Ctx, op: ReduceOp, row: ArrayView1<i64>) -> Result<i64, EvalError> {
    let it = row.iter().copied();
    Ok(match op {
        ReduceOp::Sum => it.fold(0, i64::wrapping_add),
        ReduceOp::Prod => it.fold(1, i64::wrapping_mul),
        ReduceOp::Max => it.max().ok_or_else(|| empty(ctx))?,
        ReduceOp::Min => it.min().ok_or_else(|| empty(ctx))?,
        ReduceOp::Mean if row.is_empty() => return Err(empty(ctx)),
        // The exact mean, truncated toward zero; it always fits the operand's dtype.
        ReduceOp::Mean => (it.map(i128::from).sum::<i128>() / row.len() as i128) as i64,
    })
}

pub fn arg_reduce(ctx: &Ctx, op: ArgReduceOp, axis: usize, x: &Tensor) -> Result<Tensor, EvalError> {
    let values: Vec<Option<usize>> = match &x.data {
        TensorData::Float(a) => rows(ctx, a, &[axis])?.outer_iter().map(|r| float_arg(op, r)).collect(),
        TensorData::Int(a) => rows(ctx, a, &[axis])?.outer_iter().map(|r| int_arg(op, r)).collect(),
        TensorData::Bool(_) => return Err(ctx.malformed("argmax and argmin take numbers")),
    };
    let values = values.into_iter().map(|i| i.map(|i| i as i64).ok_or_else(|| empty(ctx)));
    let values = values.collect::<Result<Vec<i64>, _>>()?;
    ctx.finish(TensorData::Int(collect(ctx, values)?))
}

/// The first NaN, else the first extremum; `None` for an empty row.
fn float_arg(op: ArgReduceOp, row: ArrayView1<f64>) -> Option<usize> {
    if let Some(i) = row.iter().position(|x| x.is_nan()) {
        return Some(i);
    }
    let better = |x: f64, best: f64| match op {
        ArgReduceOp::ArgMax => x > best,
        ArgReduceOp::ArgMin => x < best,
    };
    first_best(row, better)
}

fn int_arg(op: ArgReduceOp, row: ArrayView1<i64>) -> Option<usize> {
    let better = |x: i64, best: i64| match op {
        ArgReduceOp::ArgMax => x > best,
        ArgReduceOp::ArgMin => x < best,
    };
    first_best(row, better)
}

fn first_best<T: Copy>(row: ArrayView1<T>, better: impl Fn(T, T) -> bool) -> Option<usize> {
    let mut best: Option<(usize, T)> = None;
    for (i, &x) in row.iter().enumerate() {
        if best.is_none_or(|(_, b)| better(x, b)) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}
