//! Ops without operands that make a tensor: constants and iota.

use ndarray::{ArrayD, IxDyn};

use super::{Ctx, EvalError, Tensor, TensorData};
use crate::ir::ConstData;

pub fn constant(ctx: &Ctx, data: &ConstData) -> Result<Tensor, EvalError> {
    let shape = IxDyn(&ctx.shape);
    let bad = |_| ctx.malformed("the element count does not match the type");
    let data = match data {
        ConstData::Float(v) => TensorData::Float(ArrayD::from_shape_vec(shape, v.clone()).map_err(bad)?),
        ConstData::Int(v) => TensorData::Int(ArrayD::from_shape_vec(shape, v.clone()).map_err(bad)?),
        ConstData::Bool(v) => TensorData::Bool(ArrayD::from_shape_vec(shape, v.clone()).map_err(bad)?),
    };
    ctx.finish(data)
}

pub fn iota(ctx: &Ctx, axis: usize) -> Result<Tensor, EvalError> {
    if axis >= ctx.shape.len() {
        return Err(ctx.malformed("the axis is out of range"));
    }
    let index = ArrayD::from_shape_fn(IxDyn(&ctx.shape), |i| i[axis] as i64);
    if ctx.dtype.is_float() {
        ctx.float(index.mapv(|i| i as f64))
    } else {
        ctx.finish(TensorData::Int(index))
    }
}
