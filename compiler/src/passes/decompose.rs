//! Rewrites every composite op into the core ops of its decomposition in `ir-spec/ops.md` §9.
//! A composite over f16 or bf16 is decomposed in f32 between casts, so no intermediate is
//! rounded to the narrow type.
//!
//! *Requires:* a verified graph. *Establishes:* no composite op remains
//! ([`Op::is_composite`] is false for every node); outputs keep their types.

use super::{Builder, Pass, PassError};
use crate::ir::*;

pub struct Decompose;

impl Pass for Decompose {
    fn name(&self) -> &'static str {
        "decompose"
    }

    fn run(&self, graph: &mut Graph) -> Result<(), PassError> {
        let composites: Vec<NodeId> = graph.node_ids().filter(|&n| graph.op(n).is_composite()).collect();
        for id in composites {
            let replacement = decompose(graph, id)?;
            if let Some(name) = graph.node(id).name.clone() {
                graph.node_mut(replacement).name.get_or_insert(name);
            }
            graph.replace_uses(id, replacement);
            graph.remove(id);
        }
        Ok(())
    }
}

/// Builds the decomposition of composite `id` and returns the node that replaces it.
fn decompose(graph: &mut Graph, id: NodeId) -> Result<NodeId, PassError> {
    let op = graph.op(id).clone();
    let operands = graph.operands(id);
    let dtype = graph.ty(id).dtype;
    let mut b = Builder::new(graph, id);
    // Work in f32: casts are no-ops for f32 graphs.
    let wide: Vec<NodeId> = operands
        .iter()
        .map(|&o| if b.graph.ty(o).dtype.is_float() { b.cast(o, DType::F32) } else { Ok(o) })
        .collect::<Result<_, _>>()?;
    let y = match op {
        Op::Softmax { axis } => softmax(&mut b, wide[0], axis)?,
        Op::LogSoftmax { axis } => log_softmax(&mut b, wide[0], axis)?,
        Op::LayerNorm { axis, eps } => layer_norm(&mut b, &wide, axis, eps)?,
        Op::RmsNorm { axis, eps } => rms_norm(&mut b, &wide, axis, eps)?,
        Op::Gelu { approx } => gelu(&mut b, wide[0], approx)?,
        Op::Silu => {
            let s = b.unary(UnaryOp::Sigmoid, wide[0])?;
            b.binary(BinaryOp::Mul, wide[0], s)?
        }
        Op::Linear => linear(&mut b, &wide)?,
        Op::Attention { causal, scale } => attention(&mut b, &wide, causal, scale)?,
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Constant { .. }
        | Op::Iota { .. }
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Cast
        | Op::Reduce { .. }
        | Op::ArgReduce { .. }
        | Op::MatMul
        | Op::Reshape
        | Op::Permute { .. }
        | Op::Broadcast
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Pad { .. }
        | Op::Gather { .. }
        | Op::Conv2d { .. }
        | Op::Pool2d { .. } => return Ok(id),
    };
    b.cast(y, dtype)
}

fn f32_scalar(b: &mut Builder, value: f64) -> Result<NodeId, PassError> {
    b.scalar(DType::F32, value)
}

/// `m = max(x); e = exp(x - m); e / sum(e)` along `axis`.
fn softmax(b: &mut Builder, x: NodeId, axis: usize) -> Result<NodeId, PassError> {
    let m = b.reduce_keep(ReduceOp::Max, x, vec![axis])?;
    let d = b.binary(BinaryOp::Sub, x, m)?;
    let e = b.unary(UnaryOp::Exp, d)?;
    let s = b.reduce_keep(ReduceOp::Sum, e, vec![axis])?;
    b.binary(BinaryOp::Div, e, s)
}

/// `d = x - max(x); d - log(sum(exp(d)))` along `axis`.
fn log_softmax(b: &mut Builder, x: NodeId, axis: usize) -> Result<NodeId, PassError> {
    let m = b.reduce_keep(ReduceOp::Max, x, vec![axis])?;
    let d = b.binary(BinaryOp::Sub, x, m)?;
    let e = b.unary(UnaryOp::Exp, d)?;
    let s = b.reduce_keep(ReduceOp::Sum, e, vec![axis])?;
    let l = b.unary(UnaryOp::Log, s)?;
    b.binary(BinaryOp::Sub, d, l)
}

fn trailing_axes(b: &Builder, x: NodeId, axis: usize) -> Vec<usize> {
    (axis..b.graph.ty(x).rank()).collect()
}

/// `d = x - mean(x); d * rsqrt(mean(d*d) + eps) * gamma + beta` over `axis..rank`.
fn layer_norm(b: &mut Builder, ops: &[NodeId], axis: usize, eps: f64) -> Result<NodeId, PassError> {
    let (x, gamma, beta) = (ops[0], ops[1], ops[2]);
    let axes = trailing_axes(b, x, axis);
    let mu = b.reduce_keep(ReduceOp::Mean, x, axes.clone())?;
    let d = b.binary(BinaryOp::Sub, x, mu)?;
    let sq = b.binary(BinaryOp::Mul, d, d)?;
    let var = b.reduce_keep(ReduceOp::Mean, sq, axes)?;
    let e = f32_scalar(b, eps)?;
    let ve = b.binary(BinaryOp::Add, var, e)?;
    let r = b.unary(UnaryOp::Rsqrt, ve)?;
    let n = b.binary(BinaryOp::Mul, d, r)?;
    let g = b.binary(BinaryOp::Mul, n, gamma)?;
    b.binary(BinaryOp::Add, g, beta)
}

/// `x * rsqrt(mean(x*x) + eps) * gamma` over `axis..rank`.
fn rms_norm(b: &mut Builder, ops: &[NodeId], axis: usize, eps: f64) -> Result<NodeId, PassError> {
    let (x, gamma) = (ops[0], ops[1]);
    let axes = trailing_axes(b, x, axis);
    let sq = b.binary(BinaryOp::Mul, x, x)?;
    let ms = b.reduce_keep(ReduceOp::Mean, sq, axes)?;
    let e = f32_scalar(b, eps)?;
    let me = b.binary(BinaryOp::Add, ms, e)?;
    let r = b.unary(UnaryOp::Rsqrt, me)?;
    let n = b.binary(BinaryOp::Mul, x, r)?;
    b.binary(BinaryOp::Mul, n, gamma)
}

/// `0.5 * x * (1 + erf(x / √2))`, or the tanh form `0.5 * x * (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
fn gelu(b: &mut Builder, x: NodeId, approx: GeluApprox) -> Result<NodeId, PassError> {
    let inner = match approx {
        GeluApprox::None => {
            let c = f32_scalar(b, std::f64::consts::FRAC_1_SQRT_2)?;
            let t = b.binary(BinaryOp::Mul, x, c)?;
            b.unary(UnaryOp::Erf, t)?
        }
        GeluApprox::Tanh => {
            let k = f32_scalar(b, 0.044715)?;
            let x2 = b.binary(BinaryOp::Mul, x, x)?;
            let x3 = b.binary(BinaryOp::Mul, x2, x)?;
            let kx3 = b.binary(BinaryOp::Mul, k, x3)?;
            let s = b.binary(BinaryOp::Add, x, kx3)?;
            let c = f32_scalar(b, (2.0 / std::f64::consts::PI).sqrt())?;
            let t = b.binary(BinaryOp::Mul, c, s)?;
            b.unary(UnaryOp::Tanh, t)?
        }
    };
    let one = f32_scalar(b, 1.0)?;
    let half = f32_scalar(b, 0.5)?;
    let p = b.binary(BinaryOp::Add, one, inner)?;
    let hx = b.binary(BinaryOp::Mul, half, x)?;
    b.binary(BinaryOp::Mul, hx, p)
}

/// `x @ wᵀ + b`; a rank-1 `x` goes through `[1, in]`.
fn linear(b: &mut Builder, ops: &[NodeId]) -> Result<NodeId, PassError> {
    let (x, w) = (ops[0], ops[1]);
    let wt = b.permute(w, vec![1, 0])?;
    let y = if b.graph.ty(x).rank() == 1 {
        let shape = vec![Dim::known(1), b.graph.ty(x).shape[0].clone()];
        let x2 = b.reshape(x, shape)?;
        let y2 = b.add(Op::MatMul, &[x2, wt], None)?;
        let out = vec![b.graph.ty(w).shape[0].clone()];
        b.reshape(y2, out)?
    } else {
        b.add(Op::MatMul, &[x, wt], None)?
    };
    match ops.get(2) {
        Some(&bias) => b.binary(BinaryOp::Add, y, bias),
        None => Ok(y),
    }
}

/// `softmax((q @ kᵀ) * scale [+ mask | masked to -inf] [causal]) @ v`.
fn attention(b: &mut Builder, ops: &[NodeId], causal: bool, scale: f64) -> Result<NodeId, PassError> {
    let (q, k, v) = (ops[0], ops[1], ops[2]);
    let rank = b.graph.ty(k).rank();
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(rank - 2, rank - 1);
    let kt = b.permute(k, perm)?;
    let qk = b.add(Op::MatMul, &[q, kt], None)?;
    let c = f32_scalar(b, scale)?;
    let mut s = b.binary(BinaryOp::Mul, qk, c)?;
    let neg_inf = f32_scalar(b, f64::NEG_INFINITY)?;
    if let Some(&mask) = ops.get(3) {
        s = match b.graph.ty(mask).dtype {
            DType::Bool => b.add(Op::Select, &[mask, s, neg_inf], None)?,
            _ => b.binary(BinaryOp::Add, s, mask)?,
        };
    }
    if causal {
        let shape = b.graph.ty(s).shape.clone();
        let square = shape[shape.len() - 2..].to_vec();
        let i = b.iota(DType::I64, square.clone(), 0)?;
        let j = b.iota(DType::I64, square, 1)?;
        let keep = b.add(Op::Compare(CompareOp::Le), &[j, i], None)?;
        s = b.add(Op::Select, &[keep, s, neg_inf], None)?;
    }
    let axis = b.graph.ty(s).rank() - 1;
    let p = softmax(b, s, axis)?;
    b.add(Op::MatMul, &[p, v], None)
}
