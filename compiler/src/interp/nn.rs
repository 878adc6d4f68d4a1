//! Sliding-window ops on NCHW tensors: `conv2d` and 2-D pooling, accumulated in `f64`.

use std::borrow::Cow;

use ndarray::{ArrayD, IxDyn};

use super::elementwise::max_nan;
use super::{Ctx, EvalError, Tensor};
use crate::ir::PoolKind;

/// Window geometry; `padding` is `[top, left, bottom, right]`.
pub struct Window {
    pub kernel: [u64; 2],
    pub stride: [u64; 2],
    pub padding: [u64; 4],
    pub dilation: [u64; 2],
}

impl Window {
    /// The input row (`axis` 0) or column (`axis` 1) that kernel tap `k` of output position
    /// `out` reads, or `None` when it falls in the padding.
    fn input(&self, axis: usize, out: usize, k: usize, len: usize) -> Option<usize> {
        let pos = (out as u64 * self.stride[axis] + k as u64 * self.dilation[axis]).checked_sub(self.padding[axis])?;
        (pos < len as u64).then_some(pos as usize)
    }
}

/// A float operand in row-major order with its shape.
fn dense<'a>(ctx: &Ctx, t: &'a Tensor, rank: usize) -> Result<(Cow<'a, [f64]>, Vec<usize>), EvalError> {
    let a = ctx.f64(t)?;
    if a.ndim() != rank {
        return Err(ctx.malformed("an operand has the wrong rank"));
    }
    let data = match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    };
    Ok((data, a.shape().to_vec()))
}

pub fn conv2d(
    ctx: &Ctx,
    win: &Window,
    groups: u64,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor, EvalError> {
    let (xs, xd) = dense(ctx, x, 4)?;
    let (ws, wd) = dense(ctx, w, 4)?;
    let (n, c, h, wi) = (xd[0], xd[1], xd[2], xd[3]);
    let (o, cg, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
    let g = groups as usize;
    if g == 0 || c != cg * g || o % g != 0 || ctx.shape.len() != 4 || ctx.shape[..2] != [n, o] {
        return Err(ctx.malformed("the input, weight and result shapes do not agree"));
    }
    let bias = match bias {
        Some(b) => dense(ctx, b, 1)?.0.into_owned(),
        None => vec![0.0; o],
    };
    if bias.len() != o {
        return Err(ctx.malformed("the bias length is not the output channel count"));
    }
    let out = ArrayD::from_shape_fn(IxDyn(&ctx.shape), |i| {
        let (b, oc, y, z) = (i[0], i[1], i[2], i[3]);
        let first = oc / (o / g) * cg;
        let mut acc = bias[oc];
        for ci in 0..cg {
            for ky in 0..kh {
                let Some(iy) = win.input(0, y, ky, h) else { continue };
                for kx in 0..kw {
                    let Some(ix) = win.input(1, z, kx, wi) else { continue };
                    acc += xs[((b * c + first + ci) * h + iy) * wi + ix] * ws[((oc * cg + ci) * kh + ky) * kw + kx];
                }
            }
        }
        acc
    });
    ctx.float(out)
}

pub fn pool2d(
    ctx: &Ctx,
    kind: PoolKind,
    win: &Window,
    count_include_pad: bool,
    x: &Tensor,
) -> Result<Tensor, EvalError> {
    let (xs, xd) = dense(ctx, x, 4)?;
    let (c, h, w) = (xd[1], xd[2], xd[3]);
    if ctx.shape.len() != 4 || ctx.shape[..2] != xd[..2] {
        return Err(ctx.malformed("the input and result shapes do not agree"));
    }
    let [kh, kw] = win.kernel.map(|k| k as usize);
    let out = ArrayD::from_shape_fn(IxDyn(&ctx.shape), |i| {
        let (base, y, z) = ((i[0] * c + i[1]) * h * w, i[2], i[3]);
        let taps = (0..kh)
            .filter_map(|ky| win.input(0, y, ky, h))
            .flat_map(|iy| (0..kw).filter_map(move |kx| win.input(1, z, kx, w)).map(move |ix| iy * w + ix));
        match kind {
            PoolKind::Max => taps.fold(f64::NEG_INFINITY, |m, t| max_nan(m, xs[base + t])),
            PoolKind::Avg => {
                let (sum, count) = taps.fold((0.0, 0usize), |(s, n), t| (s + xs[base + t], n + 1));
                sum / if count_include_pad { (kh * kw) as f64 } else { count as f64 }
            }
        }
    });
    ctx.float(out)
}
