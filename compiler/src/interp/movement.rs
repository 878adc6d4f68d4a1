//! Movement ops: reshape, permute, broadcast, slice, concat, pad, gather. They copy elements
//! without arithmetic, so one generic body serves every element kind.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};

use super::tensor::{by_kind, Elem};
use super::{Ctx, EvalError, Tensor};

pub fn reshape(ctx: &Ctx, x: &Tensor) -> Result<Tensor, EvalError> {
    by_kind!(&x.data, T => {
        let flat: Vec<T> = ctx.get::<T>(x)?.iter().cloned().collect();
        let out = ArrayD::from_shape_vec(IxDyn(&ctx.shape), flat);
        ctx.done(out.map_err(|_| ctx.malformed("the element count changes"))?)
    })
}

pub fn permute(ctx: &Ctx, perm: &[usize], x: &Tensor) -> Result<Tensor, EvalError> {
    let mut sorted = perm.to_vec();
    sorted.sort();
    if sorted != (0..x.shape().len()).collect::<Vec<_>>() {
        return Err(ctx.malformed("`perm` is not a permutation of the axes"));
    }
    by_kind!(&x.data, T => {
        let a = ctx.get::<T>(x)?;
        ctx.done(a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned())
    })
}

pub fn broadcast(ctx: &Ctx, x: &Tensor) -> Result<Tensor, EvalError> {
    by_kind!(&x.data, T => {
        let a = ctx.get::<T>(x)?.broadcast(IxDyn(&ctx.shape));
        ctx.done(a.ok_or_else(|| ctx.malformed("the shapes do not broadcast"))?.to_owned())
    })
}

/// `range` is `[start, end, step]`; `end` is clamped to the axis length.
pub fn slice(ctx: &Ctx, axis: usize, range: [u64; 3], x: &Tensor) -> Result<Tensor, EvalError> {
    let n = *x.shape().get(axis).ok_or_else(|| ctx.malformed("the axis is out of range"))? as u64;
    let [start, end, step] = range;
    let end = end.min(n);
    if step == 0 || start > end {
        return Err(ctx.malformed("the slice is empty or its step is zero"));
    }
    let s = Slice::new(start as isize, Some(end as isize), step as isize);
    by_kind!(&x.data, T => ctx.done(ctx.get::<T>(x)?.slice_axis(Axis(axis), s).to_owned()))
}

pub fn concat(ctx: &Ctx, axis: usize, args: &[&Tensor]) -> Result<Tensor, EvalError> {
    let first = args.first().ok_or_else(|| ctx.malformed("concat needs an operand"))?;
    by_kind!(&first.data, T => {
        let views = args.iter().map(|t| ctx.get::<T>(t).map(|a| a.view())).collect::<Result<Vec<ArrayViewD<T>>, _>>()?;
        let out = ndarray::concatenate(Axis(axis), &views);
        ctx.done(out.map_err(|_| ctx.malformed("the operand shapes do not concatenate"))?)
    })
}

pub fn pad(ctx: &Ctx, low: &[u64], high: &[u64], value: f64, x: &Tensor) -> Result<Tensor, EvalError> {
    let rank = x.shape().len();
    if low.len() != rank || high.len() != rank {
        return Err(ctx.malformed("`low` and `high` need one entry per axis"));
    }
    by_kind!(&x.data, T => {
        let a = ctx.get::<T>(x)?;
        let shape: Vec<usize> = a.shape().iter().enumerate().map(|(i, n)| n + (low[i] + high[i]) as usize).collect();
        let mut out = ArrayD::from_elem(IxDyn(&shape), T::from_f64(value, ctx.dtype));
        out.slice_each_axis_mut(|d| {
            let lo = low[d.axis.index()] as usize;
            Slice::from(lo..lo + a.shape()[d.axis.index()])
        })
        .assign(a);
        ctx.done(out)
    })
}

/// `numpy.take(x, indices, axis)`, with negative indices wrapped once.
pub fn gather(ctx: &Ctx, axis: usize, x: &Tensor, indices: &Tensor) -> Result<Tensor, EvalError> {
    let n = *x.shape().get(axis).ok_or_else(|| ctx.malformed("the axis is out of range"))?;
    let flat = ctx.i64(indices)?.iter().map(|&i| wrap_index(ctx, i, n)).collect::<Result<Vec<usize>, _>>()?;
    by_kind!(&x.data, T => {
        let taken: Vec<T> = ctx.get::<T>(x)?.select(Axis(axis), &flat).iter().cloned().collect();
        let out = ArrayD::from_shape_vec(IxDyn(&ctx.shape), taken);
        ctx.done(out.map_err(|_| ctx.malformed("the result shape does not match the indices"))?)
    })
}

fn wrap_index(ctx: &Ctx, index: i64, len: usize) -> Result<usize, EvalError> {
    let wrapped = if index < 0 { index + len as i64 } else { index };
    if (0..len as i64).contains(&wrapped) {
        Ok(wrapped as usize)
    } else {
        Err(EvalError::IndexOutOfRange { node: ctx.node, index, len })
    }
}
