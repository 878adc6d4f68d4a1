//! ONNX ops that map onto Flint's composites (`softmax`, `layer_norm`, `rms_norm`, `gelu`,
//! `attention`), and other ops with a short decomposition: `Hardmax`, `CumSum`, `Dropout`
//! (inference), the classification losses.

use super::build::{axis, one};
use super::{entry, Entry, Importer, NodeCx, Value};
use crate::ir::infer::numel;
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

pub(crate) const OPS: &[(&str, Entry)] = &[
    ("Softmax", entry(softmax, &["axis"])),
    ("LogSoftmax", entry(softmax, &["axis"])),
    ("Hardmax", entry(softmax, &["axis"])),
    ("LayerNormalization", entry(layer_norm, &["axis", "epsilon", "stash_type"])),
    ("RMSNormalization", entry(rms_norm, &["axis", "epsilon", "stash_type"])),
    ("Gelu", entry(gelu, &["approximate"])),
    (
        "Attention",
        entry(
            attention,
            &[
                "is_causal",
                "kv_num_heads",
                "q_num_heads",
                "qk_matmul_output_mode",
                "scale",
                "softcap",
                "softmax_precision",
            ],
        ),
    ),
    ("ai.onnx.preview::FlexAttention", entry(flex_attention, &["prob_mod", "scale", "score_mod", "softmax_precision"])),
    ("RotaryEmbedding", entry(rotary, &["interleaved", "num_heads", "rotary_embedding_dim"])),
    ("Dropout", entry(dropout, &["seed", "ratio", "is_test"])),
    ("CumSum", entry(cumsum, &["exclusive", "reverse"])),
    ("CumProd", entry(cumsum, &["exclusive", "reverse"])),
    ("NegativeLogLikelihoodLoss", entry(loss, &["ignore_index", "reduction"])),
    ("SoftmaxCrossEntropyLoss", entry(loss, &["ignore_index", "reduction"])),
];

/// `Softmax`, `LogSoftmax`, `Hardmax`. Before opset 13 the input is coerced to 2-D at `axis`
/// (default 1) and the op runs on the flattened trailing axes.
fn softmax(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let shape = imp.ty(x).shape;
    let legacy = imp.opset < 13;
    let a = cx.int("axis", if legacy { 1 } else { -1 })?;
    let a = if legacy && a == shape.len() as i64 { shape.len() } else { axis(cx, a, shape.len())? };
    let (x2, a) = if legacy && a != shape.len().saturating_sub(1) {
        let flat = imp.reshape(cx, x, vec![numel(&shape[..a]), numel(&shape[a..])])?;
        (flat, 1)
    } else {
        (x, a)
    };
    let y = match cx.op() {
        "Softmax" => imp.add(cx, Op::Softmax { axis: a }, &[x2], None)?,
        "LogSoftmax" => imp.add(cx, Op::LogSoftmax { axis: a }, &[x2], None)?,
        // hardmax: 1 where the first maximum along the axis is, else 0
        _ => {
            let am = imp.add(cx, Op::ArgReduce { op: ArgReduceOp::ArgMax, axis: a, keepdims: true }, &[x2], None)?;
            let pos = imp.iota(cx, imp.ty(x2).shape, a, DType::I64)?;
            let hit = imp.compare(cx, CompareOp::Eq, pos, am)?;
            imp.cast(cx, hit, imp.dtype(x))?
        }
    };
    one(imp.reshape(cx, y, shape)?)
}

/// A scale or bias broadcast to exactly `shape` (Flint's norms take it whole); a missing
/// one is the splat `fill`.
fn exact(imp: &mut Importer, cx: &NodeCx, v: Option<NodeId>, dtype: DType, shape: &[Dim], fill: f64) -> R<NodeId> {
    let v = match v {
        Some(v) => imp.cast(cx, v, dtype)?,
        None => imp.scalar(dtype, fill),
    };
    let mut vs = imp.ty(v).shape;
    while vs.len() > shape.len() && vs[0].is_one() {
        vs.remove(0);
    }
    let v = imp.reshape(cx, v, vs)?;
    imp.broadcast(cx, v, shape.to_vec())
}

/// `LayerNormalization` is Flint's `layer_norm`; the optional `Mean` and `InvStdDev` outputs
/// are computed beside it (in the stash type, f32).
fn layer_norm(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let (scale, bias) = (imp.opt_input(cx, 1)?, imp.opt_input(cx, 2)?);
    let ty = imp.ty(x);
    let a = axis(cx, cx.int("axis", -1)?, ty.rank())?;
    let eps = cx.float("epsilon", 1e-5)? as f64;
    let g = exact(imp, cx, scale, ty.dtype, &ty.shape[a..], 1.0)?;
    let b = exact(imp, cx, bias, ty.dtype, &ty.shape[a..], 0.0)?;
    let y = imp.add(cx, Op::LayerNorm { axis: a, eps }, &[x, g, b], None)?;
    let mut out = vec![Value::Node(y)];
    if cx.wants(1) || cx.wants(2) {
        let stash = if cx.int("stash_type", 1)? == 1 { DType::F32 } else { ty.dtype };
        let xs = imp.cast(cx, x, stash)?;
        let axes: Vec<usize> = (a..ty.rank()).collect();
        let mu = imp.reduce(cx, ReduceOp::Mean, xs, axes.clone(), true)?;
        let d = imp.binary(cx, BinaryOp::Sub, xs, mu)?;
        let sq = imp.binary(cx, BinaryOp::Mul, d, d)?;
        let var = imp.reduce(cx, ReduceOp::Mean, sq, axes, true)?;
        let ve = imp.binary_scalar(cx, BinaryOp::Add, var, eps)?;
        let inv = imp.unary(cx, UnaryOp::Rsqrt, ve)?;
        out.extend([Value::Node(mu), Value::Node(inv)]);
    }
    Ok(out)
}

fn rms_norm(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, scale) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let ty = imp.ty(x);
    let a = axis(cx, cx.int("axis", -1)?, ty.rank())?;
    let g = exact(imp, cx, Some(scale), ty.dtype, &ty.shape[a..], 1.0)?;
    one(imp.add(cx, Op::RmsNorm { axis: a, eps: cx.float("epsilon", 1e-5)? as f64 }, &[x, g], None)?)
}

fn gelu(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let approx = match cx.string("approximate", "none")?.as_str() {
        "none" => GeluApprox::None,
        "tanh" => GeluApprox::Tanh,
        other => return Err(cx.bad_attr("approximate", &format!("{other:?}"))),
    };
    let x = imp.input(cx, 0)?;
    one(imp.add(cx, Op::Gelu { approx }, &[x], None)?)
}

/// Inference-mode dropout is the identity; its mask is all `true`.
fn dropout(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let training =
        if cx.has(2) { imp.const_scalar(cx, 2)? != 0.0 } else { cx.int("is_test", 1)? == 0 && imp.opset < 7 };
    // With a ratio of 0 even training mode keeps every element (as ONNX's reference does).
    let ratio = if cx.has(1) { imp.const_scalar(cx, 1)? } else { cx.float("ratio", 0.5)? as f64 };
    if training && ratio != 0.0 {
        return Err(cx.unsupported("dropout in training mode (it draws random numbers)"));
    }
    let x = imp.input(cx, 0)?;
    let mut out = vec![Value::Node(x)];
    if cx.wants(1) {
        let t = imp.scalar(DType::Bool, 1.0);
        out.push(Value::Node(imp.broadcast(cx, t, imp.ty(x).shape)?));
    }
    Ok(out)
}

/// `cumsum` along an axis of length `n` is a product with a triangular 0/1 matrix `T`
/// (`T[j, i] = 1` when `j <= i`; strict for `exclusive`, mirrored for `reverse`), built with
/// `iota` and compare.
fn cumsum(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let r = imp.rank(x);
    let a = axis(cx, imp.const_scalar(cx, 1)? as i64, r)?;
    let n = imp.ty(x).shape[a].clone();
    if n.as_known().is_none() {
        return Err(cx.unsupported("`CumSum` along a symbolic axis"));
    }
    let mut perm: Vec<usize> = (0..r).filter(|&i| i != a).collect();
    perm.push(a);
    let xt = imp.permute(cx, x, perm.clone())?;
    let nn = vec![n.clone(), n];
    let j = imp.iota(cx, nn.clone(), 0, DType::I64)?;
    let i = imp.iota(cx, nn, 1, DType::I64)?;
    let cmp = match (cx.int("exclusive", 0)? != 0, cx.int("reverse", 0)? != 0) {
        (false, false) => CompareOp::Le,
        (true, false) => CompareOp::Lt,
        (false, true) => CompareOp::Ge,
        (true, true) => CompareOp::Gt,
    };
    let c = imp.compare(cx, cmp, j, i)?;
    let y = if cx.op() == "CumProd" {
        // y[..., i] = prod_j (T[j, i] ? x[..., j] : 1)
        let xe = imp.unsqueeze(cx, xt, &[r])?;
        let one = imp.scalar(imp.dtype(x), 1.0);
        let masked = imp.select(cx, c, xe, one)?;
        imp.reduce(cx, ReduceOp::Prod, masked, vec![r - 1], false)?
    } else {
        let t = imp.cast(cx, c, imp.dtype(x))?;
        if r == 1 {
            super::nn::matmul_nd(imp, cx, xt, t)?
        } else {
            imp.matmul(cx, xt, t)?
        }
    };
    let mut inverse = vec![0; r];
    for (k, &p) in perm.iter().enumerate() {
        inverse[p] = k;
    }
    one(imp.permute(cx, y, inverse)?)
}

/// `NegativeLogLikelihoodLoss` and `SoftmaxCrossEntropyLoss` (which first takes
/// `log_softmax` over the classes, axis 1). The target picks one class per position through
/// an `iota == target` mask; weights and `ignore_index` follow ONNX's reference, including
/// when `mean` divides by the summed weights.
fn loss(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let target = imp.input(cx, 1)?;
    let weight = imp.opt_input(cx, 2)?;
    let ty = imp.ty(x);
    if ty.rank() < 2 {
        return Err(cx.invalid("the input must have rank >= 2"));
    }
    let sce = cx.op() == "SoftmaxCrossEntropyLoss";
    let logp = if sce { imp.add(cx, Op::LogSoftmax { axis: 1 }, &[x], None)? } else { x };
    let ignore = cx.opt_int("ignore_index")?;
    let target = imp.cast(cx, target, DType::I64)?;
    let t1 = imp.unsqueeze(cx, target, &[1])?;
    let classes = imp.iota(cx, ty.shape.clone(), 1, DType::I64)?;
    let hit = imp.compare(cx, CompareOp::Eq, classes, t1)?;
    let zero = imp.scalar(ty.dtype, 0.0);
    let picked_all = imp.select(cx, hit, logp, zero)?;
    let picked = imp.reduce(cx, ReduceOp::Sum, picked_all, vec![1], false)?;
    let mut neg = imp.unary(cx, UnaryOp::Neg, picked)?;
    let valid = match ignore {
        Some(i) => Some(imp.compare_scalar(cx, CompareOp::Ne, target, i as f64)?),
        None => None,
    };
    if let Some(v) = valid {
        neg = imp.select(cx, v, neg, zero)?;
    }
    // The per-position weight w[target], 0 where ignored; absent means the plain mean.
    let weighted_mean = weight.is_some() || ignore.is_some_and(|i| sce || i != -1);
    let w = match weight {
        Some(w) => {
            let mut shape = vec![Dim::known(1); ty.rank()];
            shape[1] = ty.shape[1].clone();
            let wr = imp.reshape(cx, w, shape)?;
            let wsel = imp.select(cx, hit, wr, zero)?;
            Some(imp.reduce(cx, ReduceOp::Sum, wsel, vec![1], false)?)
        }
        None if weighted_mean => {
            let one = imp.scalar(ty.dtype, 1.0);
            Some(imp.broadcast(cx, one, imp.ty(target).shape)?)
        }
        None => None,
    };
    let w = match (w, valid) {
        (Some(w), Some(v)) => Some(imp.select(cx, v, w, zero)?),
        (w, _) => w,
    };
    let lossv = match w {
        Some(w) if weight.is_some() => imp.binary(cx, BinaryOp::Mul, neg, w)?,
        _ => neg,
    };
    let all: Vec<usize> = (0..imp.rank(lossv)).collect();
    let y = match cx.string("reduction", "mean")?.as_str() {
        "none" => lossv,
        "sum" => imp.reduce(cx, ReduceOp::Sum, lossv, all, false)?,
        "mean" => match w {
            Some(w) if weighted_mean => {
                let s = imp.reduce(cx, ReduceOp::Sum, lossv, all.clone(), false)?;
                let ws = imp.reduce(cx, ReduceOp::Sum, w, all, false)?;
                imp.binary(cx, BinaryOp::Div, s, ws)?
            }
            _ => imp.reduce(cx, ReduceOp::Mean, lossv, all, false)?,
        },
        other => return Err(cx.bad_attr("reduction", &format!("{other:?}"))),
    };
    let mut out = vec![Value::Node(y)];
    if sce && cx.wants(1) {
        out.push(Value::Node(logp));
    }
    Ok(out)
}

/// The attention inputs as 4-D `[batch, heads, seq, head_dim]`, with the number of heads.
pub(crate) fn heads(imp: &mut Importer, cx: &NodeCx, x: NodeId, num_heads: Option<i64>) -> R<NodeId> {
    match imp.rank(x) {
        4 => Ok(x),
        3 => {
            let n = num_heads.ok_or_else(|| cx.invalid("3-D inputs need `q_num_heads` and `kv_num_heads`"))?;
            let s = imp.ty(x).shape;
            let h = Dim::known(n as u64);
            let d = s[2].div(&h).ok_or_else(|| cx.invalid("the hidden size is not a multiple of the heads"))?;
            let r = imp.reshape(cx, x, vec![s[0].clone(), s[1].clone(), h, d])?;
            imp.permute(cx, r, vec![0, 2, 1, 3])
        }
        r => Err(cx.invalid(format!("inputs must have rank 3 or 4, found {r}"))),
    }
}

/// Repeats each of the `kv` heads `reps` times (`[h0, h0, h1, h1, ...]`) for grouped-query
/// attention.
pub(crate) fn repeat_heads(imp: &mut Importer, cx: &NodeCx, x: NodeId, reps: u64) -> R<NodeId> {
    if reps == 1 {
        return Ok(x);
    }
    let s = imp.ty(x).shape;
    let mut spread = s.clone();
    spread.insert(2, Dim::known(1));
    let r = imp.reshape(cx, x, spread.clone())?;
    spread[2] = Dim::known(reps);
    let b = imp.broadcast(cx, r, spread)?;
    imp.reshape(cx, b, vec![s[0].clone(), s[1].mul(&Dim::known(reps)), s[2].clone(), s[3].clone()])
}

/// ONNX `Attention` (opset 23): Flint's `attention` composite when the node is plain, else
/// its decomposition with the extras (past keys, softcap, the scores output, padding).
fn attention(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (q0, k0, v0) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    let mask = imp.opt_input(cx, 3)?;
    let (past_k, past_v) = (imp.opt_input(cx, 4)?, imp.opt_input(cx, 5)?);
    let three_d = imp.rank(q0) == 3;
    let q = heads(imp, cx, q0, cx.opt_int("q_num_heads")?)?;
    let mut k = heads(imp, cx, k0, cx.opt_int("kv_num_heads")?)?;
    let mut v = heads(imp, cx, v0, cx.opt_int("kv_num_heads")?)?;
    if let Some(p) = past_k {
        imp.need_rank(cx, p, 4, "the past key")?;
        k = imp.concat(cx, &[p, k], 2)?;
    }
    if let Some(p) = past_v {
        v = imp.concat(cx, &[p, v], 2)?;
    }
    let (present_k, present_v) = (k, v);
    let (qh, kh) = (imp.ty(q).shape[1].as_known(), imp.ty(k).shape[1].as_known());
    if let (Some(qh), Some(kh)) = (qh, kh) {
        if qh != kh && kh > 0 && qh % kh == 0 {
            k = repeat_heads(imp, cx, k, qh / kh)?;
            v = repeat_heads(imp, cx, v, qh / kh)?;
        }
    }
    let scale = match cx.opt_float("scale")? {
        Some(s) => s as f64,
        None => {
            let d =
                imp.ty(q).shape[3].as_known().ok_or_else(|| cx.unsupported("a symbolic head size without `scale`"))?;
            1.0 / (d as f64).sqrt()
        }
    };
    let causal = cx.int("is_causal", 0)? != 0;
    let softcap = cx.float("softcap", 0.0)? as f64;
    let lq = imp.ty(q).shape[2].clone();
    let lk = imp.ty(k).shape[2].clone();
    let mut mask = match mask {
        Some(m) => Some(pad_mask(imp, cx, m, &lk)?),
        None => None,
    };
    if let Some(lengths) = imp.opt_input(cx, 6)? {
        if past_k.is_some() {
            return Err(cx.invalid("`nonpad_kv_seqlen` cannot be combined with past keys and values"));
        }
        mask = Some(padding_mask(imp, cx, lengths, mask, &lk)?);
    }
    let past = past_k.map(|p| imp.ty(p).shape[2].clone());
    let plain = softcap <= 0.0 && !cx.wants(3) && (past.is_none() || !causal);
    let y = if plain {
        let operands: Vec<NodeId> = [Some(q), Some(k), Some(v), mask].into_iter().flatten().collect();
        let y = imp.add(cx, Op::Attention { causal, scale }, &operands, None)?;
        vec![Value::Node(y)]
    } else {
        let past_len = match &past {
            Some(p) => p.as_known().ok_or_else(|| cx.unsupported("a symbolic past length with `is_causal`"))?,
            None => 0,
        };
        attention_steps(imp, cx, [q, k, v], mask, Steps { causal, scale, softcap, past_len, lq, lk })?
    };
    let mut y = y;
    if three_d {
        if let Some(Value::Node(o)) = y.first().cloned() {
            let p = imp.permute(cx, o, vec![0, 2, 1, 3])?;
            let s = imp.ty(p).shape;
            let merged = imp.reshape(cx, p, vec![s[0].clone(), s[1].clone(), s[2].mul(&s[3])])?;
            y[0] = Value::Node(merged);
        }
    }
    let qk = if y.len() > 1 { y.pop() } else { None };
    let mut out = vec![y[0].clone(), Value::Node(present_k), Value::Node(present_v)];
    if let Some(qk) = qk {
        out.push(qk);
    }
    Ok(out)
}

/// A mask shorter than the keys is padded with "masked" (`false`, or `-inf` for a float mask).
fn pad_mask(imp: &mut Importer, cx: &NodeCx, m: NodeId, lk: &Dim) -> R<NodeId> {
    let s = imp.ty(m).shape;
    let last = s.last().cloned().ok_or_else(|| cx.invalid("the mask must have rank >= 1"))?;
    if last == *lk {
        return Ok(m);
    }
    let (Some(have), Some(want)) = (last.as_known(), lk.as_known()) else {
        return Err(cx.unsupported("padding a mask along a symbolic key axis"));
    };
    if have > want {
        return Err(cx.invalid("the mask is longer than the keys"));
    }
    let mut high = vec![0; s.len()];
    high[s.len() - 1] = want - have;
    let value = if imp.dtype(m) == DType::Bool { 0.0 } else { f64::NEG_INFINITY };
    imp.add(cx, Op::Pad { low: vec![0; s.len()], high, value }, &[m], None)
}

/// Keys at or past `nonpad_kv_seqlen[b]` are padding: the mask `[B, 1, 1, Lk]` keeps
/// `j < lengths[b]`, combined with the given mask (`and` for a bool mask, `-inf` added to a
/// float one).
fn padding_mask(imp: &mut Importer, cx: &NodeCx, lengths: NodeId, mask: Option<NodeId>, lk: &Dim) -> R<NodeId> {
    let b = imp.ty(lengths).shape.first().cloned().ok_or_else(|| cx.invalid("`nonpad_kv_seqlen` must be [batch]"))?;
    let one = Dim::known(1);
    let lengths = imp.cast(cx, lengths, DType::I64)?;
    let lengths = imp.reshape(cx, lengths, vec![b, one.clone(), one.clone(), one.clone()])?;
    let j = imp.iota(cx, vec![one.clone(), one.clone(), one, lk.clone()], 3, DType::I64)?;
    let keep = imp.compare(cx, CompareOp::Lt, j, lengths)?;
    match mask {
        None => Ok(keep),
        Some(m) if imp.dtype(m) == DType::Bool => imp.binary(cx, BinaryOp::And, m, keep),
        Some(m) => {
            let dtype = imp.dtype(m);
            let (zero, ninf) = (imp.scalar(dtype, 0.0), imp.scalar(dtype, f64::NEG_INFINITY));
            let bias = imp.select(cx, keep, zero, ninf)?;
            imp.binary(cx, BinaryOp::Add, m, bias)
        }
    }
}

struct Steps {
    causal: bool,
    scale: f64,
    softcap: f64,
    past_len: u64,
    lq: Dim,
    lk: Dim,
}

/// `softmax(softcap(q @ kᵀ * scale) + bias) @ v`, the bias from the mask and causality
/// (query `i` sees key `j` when `j <= i + past_len`), as ONNX's reference computes it.
fn attention_steps(
    imp: &mut Importer,
    cx: &NodeCx,
    qkv: [NodeId; 3],
    mask: Option<NodeId>,
    st: Steps,
) -> R<Vec<Value>> {
    let [q, k, v] = qkv;
    let kt = imp.transpose(cx, k)?;
    let qk = imp.matmul(cx, q, kt)?;
    let mut s = imp.binary_scalar(cx, BinaryOp::Mul, qk, st.scale)?;
    if st.softcap > 0.0 {
        let d = imp.binary_scalar(cx, BinaryOp::Div, s, st.softcap)?;
        let t = imp.unary(cx, UnaryOp::Tanh, d)?;
        s = imp.binary_scalar(cx, BinaryOp::Mul, t, st.softcap)?;
    }
    let scores = s;
    let dtype = imp.dtype(s);
    let ninf = imp.scalar(dtype, f64::NEG_INFINITY);
    if let Some(m) = mask {
        s = if imp.dtype(m) == DType::Bool {
            imp.select(cx, m, s, ninf)?
        } else {
            imp.binary(cx, BinaryOp::Add, s, m)?
        };
    }
    if st.causal {
        let shape = vec![st.lq.clone(), st.lk.clone()];
        let i = imp.iota(cx, shape.clone(), 0, DType::I64)?;
        let j = imp.iota(cx, shape, 1, DType::I64)?;
        let ip = imp.binary_scalar(cx, BinaryOp::Add, i, st.past_len as f64)?;
        let keep = imp.compare(cx, CompareOp::Le, j, ip)?;
        s = imp.select(cx, keep, s, ninf)?;
    }
    let p = imp.add(cx, Op::Softmax { axis: imp.rank(s) - 1 }, &[s], None)?;
    let y = imp.matmul(cx, p, v)?;
    let mut out = vec![Value::Node(y)];
    if cx.wants(3) {
        let qk_out = match cx.int("qk_matmul_output_mode", 0)? {
            0 | 1 => scores,
            2 => s,
            3 => p,
            m => return Err(cx.refuse_int("qk_matmul_output_mode", m)),
        };
        out.push(Value::Node(qk_out));
    }
    Ok(out)
}

/// `FlexAttention` (`ai.onnx.preview`): `softmax(score_mod(q·√s @ (k·√s)ᵀ))`, then
/// `prob_mod`, then `@ v`, with grouped-query heads repeated; `score_mod` and `prob_mod` are
/// subgraphs imported inline on the scores and probabilities. Scores are computed in
/// `softmax_precision` (f32 for half-precision inputs by default), as ONNX's reference does.
fn flex_attention(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (q, mut k, mut v) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    for x in [q, k, v] {
        imp.need_rank(cx, x, 4, "Q, K and V")?;
    }
    let (qs, ks) = (imp.ty(q).shape, imp.ty(k).shape);
    if let (Some(hq), Some(hkv)) = (qs[1].as_known(), ks[1].as_known()) {
        if hq != hkv {
            if hq % hkv != 0 {
                return Err(cx.invalid(format!("{hq} query heads are not a multiple of {hkv} key/value heads")));
            }
            k = repeat_heads(imp, cx, k, hq / hkv)?;
            v = repeat_heads(imp, cx, v, hq / hkv)?;
        }
    }
    let scale = match cx.opt_float("scale")? {
        Some(s) => s as f64,
        None => {
            1.0 / (qs[3].as_known().ok_or_else(|| cx.unsupported("a symbolic head size without `scale`"))? as f64)
                .sqrt()
        }
    };
    let dtype = imp.dtype(q);
    let compute = match cx.opt_int("softmax_precision")? {
        None if matches!(dtype, DType::F16 | DType::BF16) => DType::F32,
        None => dtype,
        Some(1) => DType::F32,
        Some(10) => DType::F16,
        Some(16) => DType::BF16,
        Some(p) => return Err(cx.refuse_int("softmax_precision", p)),
    };
    let root = (scale as f32).sqrt() as f64;
    let qr = imp.binary_scalar(cx, BinaryOp::Mul, q, root)?;
    let kr = imp.binary_scalar(cx, BinaryOp::Mul, k, root)?;
    let kt = imp.transpose(cx, kr)?;
    let scores = imp.matmul(cx, qr, kt)?;
    let mut s = imp.cast(cx, scores, compute)?;
    s = modifier(imp, cx, "score_mod", s, compute)?;
    let p = imp.add(cx, Op::Softmax { axis: 3 }, &[s], None)?;
    let p = modifier(imp, cx, "prob_mod", p, compute)?;
    let vc = imp.cast(cx, v, compute)?;
    let y = imp.matmul(cx, p, vc)?;
    let out = imp.cast(cx, y, imp.dtype(v))?;
    one(out)
}

/// Applies the one-input, one-output subgraph attribute `name` to `x` when the node has it.
fn modifier(imp: &mut Importer, cx: &NodeCx, name: &str, x: NodeId, dtype: DType) -> R<NodeId> {
    if cx.attr(name).is_none() {
        return Ok(x);
    }
    let body = super::control::graph(cx, name)?;
    let out = super::control::run_body(imp, cx, body, vec![Value::Node(x)])?;
    let [y] = out.as_slice() else {
        return Err(cx.invalid(format!("`{name}` must return one value, it returns {}", out.len())));
    };
    let y = imp.materialize(name, "", y)?;
    if imp.ty(y).shape != imp.ty(x).shape {
        return Err(cx.invalid(format!("`{name}` must keep the shape of its input")));
    }
    imp.cast(cx, y, dtype)
}

/// `RotaryEmbedding` (opset 23): on `[batch, seq, heads, head]`, the first `rd` channels are
/// rotated pairwise, `(x1, x2) -> (cos x1 - sin x2, sin x1 + cos x2)`, with the pairs either
/// the two halves or (interleaved) the even and odd channels.
fn rotary(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    use BinaryOp::*;
    let x0 = imp.input(cx, 0)?;
    let (cos, sin) = (imp.input(cx, 1)?, imp.input(cx, 2)?);
    let shape0 = imp.ty(x0).shape;
    let x = match shape0.len() {
        4 => imp.permute(cx, x0, vec![0, 2, 1, 3])?,
        3 => {
            let h = Dim::known(cx.int("num_heads", 0)?.max(0) as u64);
            let d = shape0[2].div(&h).ok_or_else(|| cx.invalid("`num_heads` must divide the hidden size"))?;
            imp.reshape(cx, x0, vec![shape0[0].clone(), shape0[1].clone(), h, d])?
        }
        r => return Err(cx.invalid(format!("the input must have rank 3 or 4, found {r}"))),
    };
    let head = imp.ty(x).shape[3].as_known().ok_or_else(|| cx.unsupported("a symbolic head size"))?;
    let rd = match cx.int("rotary_embedding_dim", 0)? {
        0 => head,
        d => d as u64,
    };
    let (cos, sin) = match imp.opt_input(cx, 3)? {
        Some(pos) => (
            imp.add(cx, Op::Gather { axis: 0 }, &[cos, pos], None)?,
            imp.add(cx, Op::Gather { axis: 0 }, &[sin, pos], None)?,
        ),
        None => (cos, sin),
    };
    let (cos, sin) = (imp.unsqueeze(cx, cos, &[2])?, imp.unsqueeze(cx, sin, &[2])?);
    let rot = imp.slice(cx, x, 3, 0, rd, 1)?;
    let interleaved = cx.int("interleaved", 0)? != 0;
    let (x1, x2) = if interleaved {
        (imp.slice(cx, rot, 3, 0, rd, 2)?, imp.slice(cx, rot, 3, 1, rd, 2)?)
    } else {
        (imp.slice(cx, rot, 3, 0, rd / 2, 1)?, imp.slice(cx, rot, 3, rd / 2, rd, 1)?)
    };
    let (c1, s2) = (imp.binary(cx, Mul, cos, x1)?, imp.binary(cx, Mul, sin, x2)?);
    let real = imp.binary(cx, Sub, c1, s2)?;
    let (s1, c2) = (imp.binary(cx, Mul, sin, x1)?, imp.binary(cx, Mul, cos, x2)?);
    let imag = imp.binary(cx, Add, s1, c2)?;
    let rotated = if interleaved {
        let (r, i) = (imp.unsqueeze(cx, real, &[4])?, imp.unsqueeze(cx, imag, &[4])?);
        let pairs = imp.concat(cx, &[r, i], 4)?;
        imp.reshape(cx, pairs, imp.ty(rot).shape)?
    } else {
        imp.concat(cx, &[real, imag], 3)?
    };
    let y = if rd < head {
        let pass = imp.slice(cx, x, 3, rd, head, 1)?;
        imp.concat(cx, &[rotated, pass], 3)?
    } else {
        rotated
    };
    one(match shape0.len() {
        4 => imp.permute(cx, y, vec![0, 2, 1, 3])?,
        _ => imp.reshape(cx, y, shape0)?,
    })
}
