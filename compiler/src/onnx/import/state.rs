//! The recurrent-state ops of recent language models (opset 24 and later): `LinearAttention`
//! (linear, gated, delta and gated-delta rules with grouped heads), `CausalConvWithState`
//! (the depthwise causal convolution of Mamba and Gated DeltaNet) and `TensorScatter` (the
//! KV-cache write). Each follows ONNX's reference implementation; the recurrence is unrolled
//! over the static sequence length, as for `RNN`.

use super::build::one;
use super::composite::{heads, repeat_heads};
use super::movement::static_shape;
use super::{entry, Entry, Importer, NodeCx, Value};
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

pub(crate) const OPS: &[(&str, Entry)] = &[
    (
        "LinearAttention",
        entry(linear_attention, &["chunk_size", "kv_num_heads", "q_num_heads", "scale", "update_rule"]),
    ),
    ("CausalConvWithState", entry(causal_conv_with_state, &["activation"])),
    ("TensorScatter", entry(tensor_scatter, &["axis", "mode"])),
];

/// Half-precision inputs are computed in f32, as the reference does.
fn widened(imp: &mut Importer, cx: &NodeCx, x: NodeId) -> R<NodeId> {
    match imp.dtype(x) {
        DType::F16 | DType::BF16 => imp.cast(cx, x, DType::F32),
        _ => Ok(x),
    }
}

/// `CausalConvWithState(input [B, C, L], weight [C, 1, k], bias?, past_state? [B, C, k-1])`:
/// the depthwise convolution of `[past_state, input]` (zeros when no state is given) along
/// the length, a grouped `conv2d` of height 1, then SiLU if asked; `present_state` is the last
/// `k - 1` positions of that concatenation.
fn causal_conv_with_state(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, w, bias, past) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.opt_input(cx, 2)?, imp.opt_input(cx, 3)?);
    imp.need_rank(cx, x, 3, "the input")?;
    imp.need_rank(cx, w, 3, "the weight")?;
    let ws = static_shape(imp, cx, w)?;
    let (c, k) = (ws[0], ws[2]);
    let xs = imp.ty(x).shape;
    if ws[1] != 1 || xs[1].as_known() != Some(c) {
        return Err(cx.invalid(format!("the weight must be [C, 1, k] with C the input's channels, found {ws:?}")));
    }
    let silu = match cx.string("activation", "none")?.as_str() {
        "none" => false,
        "silu" | "swish" => true,
        a => return Err(cx.unsupported(format!("`activation` \"{a}\""))),
    };
    if k == 1 && cx.wants(1) {
        return Err(
            cx.unsupported("a kernel of size 1: its `present_state` has length 0 (Flint's dims are at least 1)")
        );
    }
    let padded = if k == 1 {
        x
    } else {
        let state = match past {
            Some(p) => p,
            None => {
                let zero = imp.scalar(imp.dtype(x), 0.0);
                imp.broadcast(cx, zero, vec![xs[0].clone(), xs[1].clone(), Dim::known(k - 1)])?
            }
        };
        imp.concat(cx, &[state, x], 2)?
    };
    let len = imp.ty(padded).shape[2].as_known().ok_or_else(|| cx.unsupported("a symbolic length"))?;
    // [B, C, L] -> [B, C, 1, L]: a conv2d of height 1.
    let one_high = |imp: &mut Importer, v: NodeId| {
        let mut s = imp.ty(v).shape;
        s.insert(2, Dim::known(1));
        imp.reshape(cx, v, s)
    };
    let lifted = one_high(imp, padded)?;
    let w2 = one_high(imp, w)?;
    let op = Op::Conv2d { stride: [1, 1], padding: [0; 4], dilation: [1, 1], groups: c };
    let operands: Vec<NodeId> = [Some(lifted), Some(w2), bias].into_iter().flatten().collect();
    let y = imp.add(cx, op, &operands, None)?;
    let y = imp.reshape(cx, y, xs.clone())?;
    let y = if silu { imp.add(cx, Op::Silu, &[y], None)? } else { y };
    let mut out = vec![Value::Node(y)];
    if k > 1 {
        out.push(Value::Node(imp.slice(cx, padded, 2, len - (k - 1), len, 1)?));
    }
    Ok(out)
}

/// `LinearAttention`: per step `t`, on the state `S [B, H_kv, d_k, d_v]` (`past_state` or
/// zeros), optionally decayed (`S *= exp(g_t)`, one decay per head or per key row) and
/// delta-corrected (`v_t = β_t (v_t - Sᵀ k_t)`), `S += k_t ⊗ v_t`, and every query head reads
/// `o_t = scale · q_tᵀ S` from its group's state. Computed in f32 for half-precision inputs.
fn linear_attention(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    use BinaryOp::*;
    let rule = cx.string("update_rule", "gated_delta")?;
    let (gated, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        r => return Err(cx.unsupported(format!("`update_rule` \"{r}\""))),
    };
    let (hq, hkv) = match (cx.opt_int("q_num_heads")?, cx.opt_int("kv_num_heads")?) {
        (Some(q), Some(k)) if q > 0 && k > 0 && q % k == 0 => (q as u64, k as u64),
        _ => return Err(cx.invalid("`q_num_heads` must be a positive multiple of `kv_num_heads`; both are required")),
    };
    for (i, what, needed) in [(4, "decay", gated), (5, "beta", delta)] {
        if cx.has(i) != needed {
            let verb = if needed { "needs" } else { "takes no" };
            return Err(cx.invalid(format!("`update_rule` \"{rule}\" {verb} `{what}` input")));
        }
    }
    let query = imp.input(cx, 0)?;
    let out_dtype = imp.dtype(query);
    let mut qkv = vec![];
    for i in 0..3 {
        let x = imp.input(cx, i)?;
        imp.need_rank(cx, x, 3, "query, key and value")?;
        qkv.push(widened(imp, cx, x)?);
    }
    let q = heads(imp, cx, qkv[0], Some(hq as i64))?; // [B, Hq, T, dk]
    let k = heads(imp, cx, qkv[1], Some(hkv as i64))?;
    let v = heads(imp, cx, qkv[2], Some(hkv as i64))?; // [B, Hkv, T, dv]
    let (qs, vs) = (imp.ty(q).shape, imp.ty(v).shape);
    let steps =
        qs[2].as_known().ok_or_else(|| cx.unsupported("a symbolic sequence length (the recurrence is unrolled)"))?;
    if steps > super::control::MAX_UNROLL {
        return Err(
            cx.unsupported(format!("a sequence of {steps} steps (unrolled up to {})", super::control::MAX_UNROLL))
        );
    }
    let (Some(dk), Some(dv)) = (qs[3].as_known(), vs[3].as_known()) else {
        return Err(cx.unsupported("symbolic head sizes"));
    };
    let batch = qs[0].clone();
    let state_shape = vec![batch.clone(), Dim::known(hkv), Dim::known(dk), Dim::known(dv)];
    // Decay as [B, Hkv, T, 1 or dk] (per head or per key row) and beta as [B, Hkv or 1, T, 1].
    let per_step = |imp: &mut Importer, i: usize, what: &str, sizes: [u64; 2]| -> R<Option<NodeId>> {
        let Some(x) = imp.opt_input(cx, i)? else { return Ok(None) };
        imp.need_rank(cx, x, 3, what)?;
        let x = widened(imp, cx, x)?;
        let s = imp.ty(x).shape;
        let last = s[2].as_known().unwrap_or(0);
        if !sizes.contains(&last) {
            return Err(cx.invalid(format!("{what} has {last} entries per step, not one of {sizes:?}")));
        }
        let y = if last == hkv * dk {
            heads(imp, cx, x, Some(hkv as i64))?
        } else {
            let r = imp.reshape(cx, x, vec![s[0].clone(), s[1].clone(), s[2].clone(), Dim::known(1)])?;
            imp.permute(cx, r, vec![0, 2, 1, 3])?
        };
        Ok(Some(y))
    };
    let decay = per_step(imp, 4, "decay", [hkv, hkv * dk])?;
    let beta = per_step(imp, 5, "beta", [hkv, 1])?;
    let past = imp.opt_input(cx, 3)?;
    let mut state = match past {
        Some(p) => {
            if imp.ty(p).shape != state_shape {
                return Err(cx.invalid("`past_state` must be [B, kv_num_heads, d_k, d_v]"));
            }
            widened(imp, cx, p)?
        }
        None => {
            let zero = imp.scalar(DType::F32, 0.0);
            imp.broadcast(cx, zero, state_shape.clone())?
        }
    };
    let step = |imp: &mut Importer, x: NodeId, t: u64| imp.slice(cx, x, 2, t, t + 1, 1);
    let column = |imp: &mut Importer, x: NodeId| {
        // [B, H, 1, n] -> [B, H, n, 1]
        let mut s = imp.ty(x).shape;
        s.swap(2, 3);
        imp.reshape(cx, x, s)
    };
    let mut outputs = vec![];
    for t in 0..steps {
        let (q_t, k_t) = (step(imp, q, t)?, step(imp, k, t)?);
        let mut v_t = step(imp, v, t)?; // [B, Hkv, 1, dv]
        if let Some(g) = decay {
            let g_t = step(imp, g, t)?;
            let g_t = column(imp, g_t)?;
            let e = imp.unary(cx, UnaryOp::Exp, g_t)?;
            state = imp.binary(cx, Mul, state, e)?;
        }
        if let Some(b) = beta {
            let retrieved = imp.matmul(cx, k_t, state)?; // [B, Hkv, 1, dv]
            let d = imp.binary(cx, Sub, v_t, retrieved)?;
            let b_t = step(imp, b, t)?;
            v_t = imp.binary(cx, Mul, d, b_t)?;
        }
        let k_col = column(imp, k_t)?;
        let outer = imp.binary(cx, Mul, k_col, v_t)?;
        state = imp.binary(cx, Add, state, outer)?;
        let read = repeat_heads(imp, cx, state, hq / hkv)?;
        outputs.push(imp.matmul(cx, q_t, read)?); // [B, Hq, 1, dv]
    }
    let o = imp.concat(cx, &outputs, 2)?;
    let scale = match cx.opt_float("scale")? {
        Some(s) if s != 0.0 => s as f64,
        _ => 1.0 / (dk as f64).sqrt(),
    };
    let o = imp.binary_scalar(cx, Mul, o, scale)?;
    let o = imp.permute(cx, o, vec![0, 2, 1, 3])?;
    let o = imp.reshape(cx, o, vec![batch, Dim::known(steps), Dim::known(hq * dv)])?;
    let o = imp.cast(cx, o, out_dtype)?;
    let state_dtype = match past {
        Some(p) => imp.dtype(p),
        None => out_dtype,
    };
    let present = imp.cast(cx, state, state_dtype)?;
    Ok(vec![Value::Node(o), Value::Node(present)])
}

/// `TensorScatter(past_cache, update, write_indices?)`: along `axis`, cache position `s` of
/// batch `b` takes update row `s - w[b]` (modulo the cache length when `circular`) when that
/// row exists, else keeps the cache. The update rows are read with one `gather` on the update
/// seen as `[B * P * seq, Q]` (`P`, `Q`: the sizes before and after the axis).
fn tensor_scatter(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    use BinaryOp::*;
    let (cache, update) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let (cs, us) = (imp.ty(cache).shape, imp.ty(update).shape);
    let rank = cs.len();
    let axis = super::build::axis(cx, cx.int("axis", -2)?, rank)?;
    let circular = match cx.string("mode", "linear")?.as_str() {
        "linear" => false,
        "circular" => true,
        m => return Err(cx.unsupported(format!("`mode` \"{m}\""))),
    };
    if axis == 0 || us.len() != rank || (0..rank).any(|i| i != axis && cs[i] != us[i]) {
        return Err(cx.invalid("`update` must match `past_cache` except along `axis` (which is not the batch axis)"));
    }
    let (Some(max), Some(seq)) = (cs[axis].as_known(), us[axis].as_known()) else {
        return Err(cx.unsupported("a symbolic sequence axis"));
    };
    let known = |dims: &[Dim]| dims.iter().map(Dim::as_known).product::<Option<u64>>();
    let (Some(p), Some(q)) = (known(&cs[1..axis]), known(&cs[axis + 1..])) else {
        return Err(cx.unsupported("symbolic dims besides the batch"));
    };
    if seq > max {
        return Err(cx.invalid(format!("the update has {seq} rows, the cache only {max}")));
    }
    let b = cs[0].clone();
    let grid = vec![b.clone(), Dim::known(p), Dim::known(max)];
    // src[b, p, s] = s - w[b] (mod max), as i64.
    let s = imp.iota(cx, grid.clone(), 2, DType::I64)?;
    let mut src = match imp.opt_input(cx, 2)? {
        Some(w) => {
            let w = imp.cast(cx, w, DType::I64)?;
            let w = imp.reshape(cx, w, vec![b.clone(), Dim::known(1), Dim::known(1)])?;
            imp.binary(cx, Sub, s, w)?
        }
        None => s,
    };
    if circular {
        let r = imp.binary_scalar(cx, Rem, src, max as f64)?;
        let r = imp.binary_scalar(cx, Add, r, max as f64)?;
        src = imp.binary_scalar(cx, Rem, r, max as f64)?;
    }
    let below = imp.compare_scalar(cx, CompareOp::Lt, src, 0.0)?;
    let above = imp.compare_scalar(cx, CompareOp::Ge, src, seq as f64)?;
    let outside = imp.binary(cx, Or, below, above)?;
    let zero = imp.scalar(DType::I64, 0.0);
    let safe = imp.select(cx, outside, zero, src)?;
    // Row of update [B*P*seq, Q]: (b * P + p) * seq + src.
    let bp = imp.iota(cx, grid.clone(), 0, DType::I64)?;
    let bp = imp.binary_scalar(cx, Mul, bp, p as f64)?;
    let pp = imp.iota(cx, grid.clone(), 1, DType::I64)?;
    let bp = imp.binary(cx, Add, bp, pp)?;
    let bp = imp.binary_scalar(cx, Mul, bp, seq as f64)?;
    let rows = imp.binary(cx, Add, bp, safe)?;
    let flat = imp.reshape(cx, update, vec![b.mul(&Dim::known(p * seq)), Dim::known(q)])?;
    let picked = imp.add(cx, Op::Gather { axis: 0 }, &[flat, rows], None)?; // [B, P, max, Q]
    let keep = imp.reshape(cx, outside, vec![b.clone(), Dim::known(p), Dim::known(max), Dim::known(1)])?;
    let cache4 = imp.reshape(cx, cache, vec![b, Dim::known(p), Dim::known(max), Dim::known(q)])?;
    let y = imp.select(cx, keep, cache4, picked)?;
    one(imp.reshape(cx, y, cs)?)
}
