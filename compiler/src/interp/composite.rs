//! Composite ops, evaluated directly in `f64` and rounded once, so the decomposition pass can
//! be checked against them. Each follows its decomposition in `ir-spec/ops.md`, including what
//! that gives for NaN and infinities.

use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn};

use super::elementwise::{max_nan, sigmoid};
use super::linalg::matmul_f64;
use super::math::erf;
use super::{Ctx, EvalError, Tensor, TensorData};
use crate::ir::GeluApprox;

/// `softmax` (or `log_softmax` when `log`) along `axis`.
pub fn softmax(ctx: &Ctx, axis: usize, x: &Tensor, log: bool) -> Result<Tensor, EvalError> {
    let mut a = ctx.f64(x)?.clone();
    if axis >= a.ndim() {
        return Err(ctx.malformed("the axis is out of range"));
    }
    softmax_lanes(&mut a, axis, log);
    ctx.float(a)
}

fn softmax_lanes(a: &mut ArrayD<f64>, axis: usize, log: bool) {
    for mut lane in a.lanes_mut(Axis(axis)) {
        let max = lane.iter().copied().fold(f64::NEG_INFINITY, max_nan);
        let sum: f64 = lane.iter().map(|&v| (v - max).exp()).sum();
        if log {
            lane.mapv_inplace(|v| v - max - sum.ln());
        } else {
            lane.mapv_inplace(|v| (v - max).exp() / sum);
        }
    }
}

/// `(x - mean) / sqrt(var + eps) * gamma + beta` over axes `axis..rank` (biased variance).
pub fn layer_norm(
    ctx: &Ctx,
    axis: usize,
    eps: f64,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<Tensor, EvalError> {
    let norm = |row: &mut [f64]| {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        row.iter_mut().for_each(|v| *v = (*v - mean) * inv);
    };
    normalize(ctx, axis, x, norm, gamma, Some(beta))
}

/// `x / sqrt(mean(x^2) + eps) * gamma` over axes `axis..rank`.
pub fn rms_norm(ctx: &Ctx, axis: usize, eps: f64, x: &Tensor, gamma: &Tensor) -> Result<Tensor, EvalError> {
    let norm = |row: &mut [f64]| {
        let mean_sq = row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        row.iter_mut().for_each(|v| *v *= inv);
    };
    normalize(ctx, axis, x, norm, gamma, None)
}

/// Applies `norm` to each row of the trailing axes `axis..rank`, then scales and shifts.
fn normalize(
    ctx: &Ctx,
    axis: usize,
    x: &Tensor,
    norm: impl Fn(&mut [f64]),
    gamma: &Tensor,
    beta: Option<&Tensor>,
) -> Result<Tensor, EvalError> {
    let a = ctx.f64(x)?;
    let trailing = a.shape().get(axis..).ok_or_else(|| ctx.malformed("the axis is out of range"))?;
    let inner: usize = trailing.iter().product();
    let params = [Some(gamma), beta].into_iter().flatten();
    if params.clone().any(|p| p.shape() != trailing) {
        return Err(ctx.malformed("gamma and beta must have the shape of the normalised axes"));
    }
    let g: Vec<f64> = ctx.f64(gamma)?.iter().copied().collect();
    let b: Vec<f64> = match beta {
        Some(b) => ctx.f64(b)?.iter().copied().collect(),
        None => vec![0.0; inner],
    };
    let mut flat: Vec<f64> = a.iter().copied().collect();
    for row in flat.chunks_mut(inner.max(1)) {
        norm(row);
        row.iter_mut().zip(g.iter().zip(&b)).for_each(|(v, (g, b))| *v = *v * g + b);
    }
    ctx.float(ArrayD::from_shape_vec(a.raw_dim(), flat).map_err(|_| ctx.malformed("internal: shape"))?)
}

pub fn gelu(ctx: &Ctx, approx: GeluApprox, x: &Tensor) -> Result<Tensor, EvalError> {
    let f = match approx {
        GeluApprox::None => |x: f64| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        GeluApprox::Tanh => {
            |x: f64| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
    };
    ctx.float(ctx.f64(x)?.mapv(f))
}

pub fn silu(ctx: &Ctx, x: &Tensor) -> Result<Tensor, EvalError> {
    ctx.float(ctx.f64(x)?.mapv(|x| x * sigmoid(x)))
}

/// `x @ wᵀ + b` with `w` of shape `[out, in]`.
pub fn linear(ctx: &Ctx, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, EvalError> {
    let bad = || ctx.malformed("the input, weight and bias shapes do not agree");
    let (a, w) = (ctx.f64(x)?, ctx.f64(w)?);
    let (Some((&features, batch)), [out, w_in]) = (a.shape().split_last(), w.shape()) else { return Err(bad()) };
    if features != *w_in {
        return Err(bad());
    }
    let rows: usize = batch.iter().product();
    let x2 = Array2::from_shape_vec((rows, features), a.iter().copied().collect()).map_err(|_| bad())?;
    let w2 = w.view().into_dimensionality::<ndarray::Ix2>().map_err(|_| bad())?;
    let mut y = x2.dot(&w2.t());
    if let Some(b) = bias {
        let b: Array1<f64> = ctx.f64(b)?.iter().copied().collect();
        if b.len() != *out {
            return Err(bad());
        }
        y += &b;
    }
    let shape: Vec<usize> = batch.iter().chain([out]).copied().collect();
    ctx.float(ArrayD::from_shape_vec(IxDyn(&shape), y.iter().copied().collect()).map_err(|_| bad())?)
}

/// `softmax(q @ kᵀ * scale + mask) @ v`, with the causal mask when `causal`.
pub fn attention(
    ctx: &Ctx,
    causal: bool,
    scale: f64,
    [q, k, v]: [&Tensor; 3],
    mask: Option<&Tensor>,
) -> Result<Tensor, EvalError> {
    let k = ctx.f64(k)?;
    if k.ndim() < 2 {
        return Err(ctx.malformed("k needs rank 2 or more"));
    }
    let mut kt = k.view();
    kt.swap_axes(k.ndim() - 2, k.ndim() - 1);
    let mut scores = matmul_f64(ctx, ctx.f64(q)?, &kt.to_owned())?;
    scores.mapv_inplace(|s| s * scale);
    if let Some(m) = mask {
        apply_mask(ctx, &mut scores, m)?;
    }
    if causal {
        let rank = scores.ndim();
        for (i, s) in scores.indexed_iter_mut() {
            if i[rank - 1] > i[rank - 2] {
                *s = f64::NEG_INFINITY;
            }
        }
    }
    let last = scores.ndim() - 1;
    softmax_lanes(&mut scores, last, false);
    ctx.float(matmul_f64(ctx, &scores, ctx.f64(v)?)?)
}

/// A bool mask keeps the scores where it is true; a float mask is added.
fn apply_mask(ctx: &Ctx, scores: &mut ArrayD<f64>, mask: &Tensor) -> Result<(), EvalError> {
    let bad = || ctx.malformed("the mask does not broadcast to the scores");
    let dim = scores.raw_dim();
    match &mask.data {
        TensorData::Bool(m) => {
            let m = m.broadcast(dim).ok_or_else(bad)?;
            scores.zip_mut_with(&m, |s, &keep| {
                if !keep {
                    *s = f64::NEG_INFINITY;
                }
            });
        }
        TensorData::Float(m) => {
            let m = m.broadcast(dim).ok_or_else(bad)?;
            scores.zip_mut_with(&m, |s, &add| *s += add);
        }
        TensorData::Int(_) => return Err(ctx.malformed("the mask must be bool or float")),
    }
    Ok(())
}
