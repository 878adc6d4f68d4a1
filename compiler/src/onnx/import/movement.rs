//! Movement ops: reshapes, transposes, broadcasts, slices, pads, gathers, and the ONNX ops
//! built from them (`Flatten`, `Tile`, `DepthToSpace`, `Trilu`, `OneHot`, ...).
//!
//! Index remapping along one axis (negative-step slices, reflect/edge/wrap padding) is one
//! mechanism: a `gather` with constant indices.

use super::build::{axes, axis, one};
use super::{entry, DimOrInt, Entry, Importer, NodeCx, Value};
use crate::interp::Tensor;
use crate::ir::infer::{broadcast_shapes, numel};
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

pub(crate) const OPS: &[(&str, Entry)] = &[
    ("Reshape", entry(reshape, &["allowzero", "shape"])),
    ("Flatten", entry(flatten, &["axis"])),
    ("Transpose", entry(transpose, &["perm"])),
    ("Squeeze", entry(squeeze, &["axes"])),
    ("Unsqueeze", entry(unsqueeze, &["axes"])),
    ("Expand", entry(expand, &[])),
    ("Concat", entry(concat, &["axis"])),
    ("Split", entry(split, &["axis", "split", "num_outputs"])),
    ("Slice", entry(slice, &["starts", "ends", "axes"])),
    ("Pad", entry(pad, &["mode", "pads", "value"])),
    ("Gather", entry(gather, &["axis"])),
    ("GatherElements", entry(gather_elements, &["axis"])),
    ("GatherND", entry(gather_nd, &["batch_dims"])),
    ("Tile", entry(tile, &[])),
    ("DepthToSpace", entry(depth_to_space, &["blocksize", "mode"])),
    ("SpaceToDepth", entry(space_to_depth, &["blocksize"])),
    ("Trilu", entry(trilu, &["upper"])),
    ("OneHot", entry(one_hot, &["axis"])),
    ("CenterCropPad", entry(center_crop_pad, &["axes"])),
    ("Compress", entry(compress, &["axis"])),
    ("ReverseSequence", entry(reverse_sequence, &["batch_axis", "time_axis"])),
];

/// The target shape of a `Reshape`: `0` copies the input's dim (unless `allowzero`), one
/// `-1` is inferred as an exact monomial quotient.
pub(crate) fn reshape_target(cx: &NodeCx, input: &[Dim], spec: &[DimOrInt], allowzero: bool) -> R<Shape> {
    let mut out: Vec<Option<Dim>> = Vec::new();
    for (i, e) in spec.iter().enumerate() {
        out.push(match e.as_int() {
            Some(-1) => None,
            Some(0) if !allowzero => {
                Some(input.get(i).cloned().ok_or_else(|| cx.invalid("a 0 in the shape has no input dim to copy"))?)
            }
            _ => Some(e.as_dim().ok_or_else(|| cx.invalid(format!("invalid shape entry {e:?}")))?),
        });
    }
    let known: Vec<Dim> = out.iter().flatten().cloned().collect();
    match out.iter().filter(|d| d.is_none()).count() {
        0 => Ok(known),
        1 => {
            let rest = numel(input)
                .div(&numel(&known))
                .ok_or_else(|| cx.unsupported("a -1 in the shape that is not an exact quotient of the dims"))?;
            Ok(out.into_iter().map(|d| d.unwrap_or_else(|| rest.clone())).collect())
        }
        _ => Err(cx.invalid("the shape has more than one -1")),
    }
}

fn reshape(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let spec = match cx.ints("shape")? {
        Some(s) if !cx.has(1) => s.into_iter().map(DimOrInt::Int).collect(),
        _ => imp.const_dims(cx, 1)?,
    };
    let x = imp.input(cx, 0)?;
    let shape = reshape_target(cx, &imp.ty(x).shape, &spec, cx.int("allowzero", 0)? != 0)?;
    one(imp.reshape(cx, x, shape)?)
}

fn flatten(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let shape = imp.ty(x).shape;
    let a = cx.int("axis", 1)?;
    let a = if a == shape.len() as i64 { shape.len() } else { axis(cx, a, shape.len())? };
    one(imp.reshape(cx, x, vec![numel(&shape[..a]), numel(&shape[a..])])?)
}

fn transpose(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let r = imp.rank(x);
    let perm = match cx.ints("perm")? {
        Some(p) => p.iter().map(|&a| axis(cx, a, r)).collect::<R<Vec<_>>>()?,
        None => (0..r).rev().collect(),
    };
    one(imp.permute(cx, x, perm)?)
}

/// Axes from input `slot` (newer opsets) or the `axes` attribute (older ones).
fn axes_operand(imp: &Importer, cx: &NodeCx, slot: usize) -> R<Option<Vec<i64>>> {
    if cx.has(slot) {
        return imp.const_ints(cx, slot).map(Some);
    }
    cx.ints("axes")
}

fn squeeze(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let shape = imp.ty(x).shape;
    let drop = match axes_operand(imp, cx, 1)? {
        Some(a) => axes(cx, &a, shape.len())?,
        None => (0..shape.len()).filter(|&i| shape[i].is_one()).collect(),
    };
    if let Some(&a) = drop.iter().find(|&&a| !shape[a].is_one()) {
        return Err(cx.invalid(format!("axis {a} has length {:?}, not 1", shape[a])));
    }
    let kept = shape.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, d)| d.clone()).collect();
    one(imp.reshape(cx, x, kept)?)
}

fn unsqueeze(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let raw = axes_operand(imp, cx, 1)?.ok_or_else(|| cx.invalid("`axes` is required"))?;
    let a = axes(cx, &raw, imp.rank(x) + raw.len())?;
    one(imp.unsqueeze(cx, x, &a)?)
}

/// `Expand` broadcasts both ways: the result is the broadcast of the input's shape and the
/// given shape.
fn expand(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let spec = imp.const_dims(cx, 1)?;
    let x = imp.input(cx, 0)?;
    let target: Shape = spec
        .iter()
        .map(|e| e.as_dim().ok_or_else(|| cx.invalid(format!("invalid shape entry {e:?}"))))
        .collect::<R<_>>()?;
    let shape = broadcast_shapes(&imp.ty(x).shape, &target)
        .map_err(|_| cx.invalid("the shape does not broadcast with the input's shape"))?;
    one(imp.broadcast(cx, x, shape)?)
}

fn concat(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let given: Vec<usize> = (0..cx.arity()).filter(|&i| cx.has(i)).collect();
    let first = imp.type_of(cx.value(*given.first().ok_or_else(|| cx.invalid("no inputs"))?)?);
    let a = axis(cx, cx.opt_int("axis")?.ok_or_else(|| cx.invalid("`axis` is required"))?, first.rank())?;
    // Operands of length 0 along the axis add nothing.
    let mut xs = Vec::new();
    for i in given {
        if imp.type_of(cx.value(i)?).shape[a].as_known() != Some(0) {
            xs.push(imp.input(cx, i)?);
        }
    }
    if xs.is_empty() {
        return Ok(vec![cx.value(0)?.clone()]);
    }
    one(imp.concat(cx, &xs, a)?)
}

/// The static length of `x` along `axis`.
fn static_len(imp: &Importer, cx: &NodeCx, x: NodeId, axis: usize) -> R<u64> {
    Ok(imp.known_axes(cx, x, [axis])?[0])
}

fn split(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let a = axis(cx, cx.int("axis", 0)?, imp.rank(x))?;
    let n = static_len(imp, cx, x, a)?;
    let outputs = cx.node.output.len() as u64;
    let sizes: Vec<u64> = match (cx.has(1), cx.ints("split")?, cx.opt_int("num_outputs")?) {
        (true, _, _) => imp.const_ints(cx, 1)?.into_iter().map(|s| s.max(0) as u64).collect(),
        (false, Some(s), _) => s.into_iter().map(|s| s.max(0) as u64).collect(),
        (false, None, Some(k)) if k > 0 && k as u64 <= n => {
            let chunk = n.div_ceil(k as u64);
            (0..k as u64).map(|i| chunk.min(n.saturating_sub(i * chunk))).collect()
        }
        _ if outputs > 0 && n % outputs == 0 => vec![n / outputs; outputs as usize],
        _ => return Err(cx.invalid(format!("cannot split length {n} into {outputs} equal parts"))),
    };
    if sizes.iter().try_fold(0u64, |a, &s| a.checked_add(s)) != Some(n) {
        return Err(cx.invalid(format!("split sizes {sizes:?} do not add up to {n}")));
    }
    let mut start = 0;
    let mut out = Vec::new();
    for s in sizes {
        out.push(take_range(imp, cx, x, a, start, start + s)?);
        start += s;
    }
    Ok(out)
}

/// Elements `start..end` along `axis`. An empty range is an empty constant: a tensor
/// without elements is known at import time (Flint's IR has no zero-length dims).
fn take_range(imp: &mut Importer, cx: &NodeCx, x: NodeId, axis: usize, start: u64, end: u64) -> R<Value> {
    if start < end {
        Ok(Value::Node(imp.slice(cx, x, axis, start, end, 1)?))
    } else {
        empty_along(imp, cx, x, axis)
    }
}

/// `x` with no elements along `axis`, as a constant.
fn empty_along(imp: &Importer, cx: &NodeCx, x: NodeId, axis: usize) -> R<Value> {
    let mut shape = static_shape(imp, cx, x)?;
    shape[axis] = 0;
    let shape: Vec<usize> = shape.into_iter().map(|d| d as usize).collect();
    Ok(Value::constant(splat(cx, imp.dtype(x), &shape, 0.0)?))
}

/// A node for a value that must not be empty.
fn nonempty(cx: &NodeCx, v: Value) -> R<NodeId> {
    match v {
        Value::Node(id) => Ok(id),
        _ => Err(cx.unsupported("a tensor with a dim of 0 (Flint's dims are at least 1)")),
    }
}

/// ONNX `Slice` on one axis of length `n`, following the spec's clamping: the first index
/// taken and how many are taken (`step` apart). Arithmetic, not a walk: a step near
/// `i64::MAX` cannot overflow and a long axis allocates nothing.
pub(crate) fn slice_range(n: i64, start: i64, end: i64, step: i64) -> (i64, u64) {
    let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (start, end) = (norm(start), norm(end));
    let (s, e) =
        if step > 0 { (start.clamp(0, n), end.clamp(0, n)) } else { (start.clamp(0, n - 1), end.clamp(-1, n - 1)) };
    let span = if step > 0 { e - s } else { s - e };
    let count = if span > 0 { (span as u64 - 1) / step.unsigned_abs() + 1 } else { 0 };
    (s, count)
}

/// The indices of a [`slice_range`] (`count` is at most the axis length, and each index
/// lies on the axis, so nothing overflows).
pub(crate) fn range_indices(first: i64, count: u64, step: i64) -> impl Iterator<Item = i64> {
    (0..count as i64).map(move |i| first + i * step)
}

fn slice(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (starts, ends, raw_axes, steps) = if cx.has(1) {
        let starts = imp.const_dims(cx, 1)?;
        let ends = imp.const_dims(cx, 2)?;
        let raw_axes = if cx.has(3) { Some(imp.const_ints(cx, 3)?) } else { None };
        let steps = if cx.has(4) { Some(imp.const_ints(cx, 4)?) } else { None };
        (starts, ends, raw_axes, steps)
    } else {
        let req = |name| cx.ints(name)?.ok_or_else(|| cx.invalid(format!("`{name}` is required")));
        let ints = |v: Vec<i64>| v.into_iter().map(DimOrInt::Int).collect::<Vec<_>>();
        (ints(req("starts")?), ints(req("ends")?), cx.ints("axes")?, None)
    };
    let mut x = imp.input(cx, 0)?;
    let rank = imp.rank(x);
    let raw_axes = raw_axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || raw_axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(cx.invalid("starts, ends, axes and steps differ in length"));
    }
    let ax = axes(cx, &raw_axes, rank)?;
    for (k, &raw) in raw_axes.iter().enumerate() {
        let a = axis(cx, raw, rank)?;
        debug_assert!(ax.contains(&a));
        let step = steps[k];
        if step == 0 {
            return Err(cx.invalid("a step of 0"));
        }
        let (Some(start), Some(end)) = (starts[k].as_int(), ends[k].as_int()) else {
            x = slice_to_dim(imp, cx, x, a, &starts[k], &ends[k], step)?;
            continue;
        };
        // The whole axis, even a symbolic one.
        if start == 0 && step == 1 && end >= i32::MAX as i64 {
            continue;
        }
        let n = static_len(imp, cx, x, a)? as i64;
        let (first, count) = slice_range(n, start, end, step);
        x = match count {
            0 => return Ok(vec![empty_along(imp, cx, x, a)?]),
            _ if step > 0 => {
                let last = first + (count - 1) as i64 * step;
                imp.slice(cx, x, a, first as u64, last as u64 + 1, step as u64)?
            }
            _ => {
                super::build::constant_len(cx, [count])?; // before the indices are allocated
                imp.gather_const(cx, x, a, range_indices(first, count, step).collect())?
            }
        };
    }
    one(x)
}

/// A slice whose end is a symbolic dim `e` (`bias[:, :, :seq]`, the causal mask GPT-2 cuts
/// from a buffer): the whole axis when `e` is its length, else, from 0 with step 1 on a static
/// axis that holds `e` at its bound, a `gather` of `iota(e)`. Other symbolic bounds have a
/// length that is no monomial (`e - 2`) and are refused.
fn slice_to_dim(
    imp: &mut Importer,
    cx: &NodeCx,
    x: NodeId,
    a: usize,
    start: &DimOrInt,
    end: &DimOrInt,
    step: i64,
) -> R<NodeId> {
    let len = imp.ty(x).shape[a].clone();
    let show = |e: &DimOrInt| match e {
        DimOrInt::Int(v) => v.to_string(),
        DimOrInt::Dim(d) => format!("`{}`", d.display(&imp.graph.symbols)),
    };
    let (Some(0), Some(e), 1) = (start.as_int(), end.as_dim(), step) else {
        let what = format!(
            "`Slice` of axis {a} from {} to {} by {step} (a length that is no monomial)",
            show(start),
            show(end)
        );
        return Err(cx.unsupported(what));
    };
    if e == len {
        return Ok(x);
    }
    let n = imp.known_axes(cx, x, [a])?[0];
    let most = e.eval(|s| imp.graph.symbols.get(s.0 as usize).map_or(u64::MAX, |s| s.bound));
    if most > n {
        let what = format!("`Slice` of axis {a} (length {n}) to {}, which may reach {most},", show(end));
        return Err(cx.unsupported(what));
    }
    let idx = imp.iota(cx, vec![e], 0, DType::I64)?;
    imp.add(cx, Op::Gather { axis: a }, &[x, idx], None)
}

/// Where output position `j` along an axis of length `n` padded by `low` reads from, for
/// the non-constant pad modes.
fn pad_source(mode: &str, j: i64, low: i64, n: i64) -> i64 {
    let i = j - low;
    match mode {
        "edge" => i.clamp(0, n - 1),
        "wrap" => i.rem_euclid(n),
        // reflect: mirror about the first and last element, which are not repeated
        _ if n == 1 => 0,
        _ => {
            let p = 2 * (n - 1);
            let m = i.rem_euclid(p);
            if m < n {
                m
            } else {
                p - m
            }
        }
    }
}

fn pad(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let mode = cx.string("mode", "constant")?;
    if !["constant", "reflect", "edge", "wrap"].contains(&mode.as_str()) {
        return Err(cx.bad_attr("mode", &format!("{mode:?}")));
    }
    let mut x = imp.input(cx, 0)?;
    let rank = imp.rank(x);
    let pads = match cx.ints("pads")? {
        Some(p) if !cx.has(1) => p,
        _ => imp.const_ints(cx, 1)?,
    };
    let pad_axes = if cx.has(3) { axes(cx, &imp.const_ints(cx, 3)?, rank)? } else { (0..rank).collect() };
    if pads.len() != 2 * pad_axes.len() {
        return Err(cx.invalid(format!("{} pads for {} axes", pads.len(), pad_axes.len())));
    }
    let value = match (cx.has(2), cx.opt_float("value")?) {
        (true, _) => imp.const_scalar(cx, 2)?,
        (false, Some(v)) => v as f64,
        (false, None) => 0.0,
    };
    let (mut low, mut high) = (vec![0u64; rank], vec![0u64; rank]);
    for (k, &a) in pad_axes.iter().enumerate() {
        let (lo, hi) = (pads[k], pads[k + pad_axes.len()]);
        if lo == 0 && hi == 0 {
            continue;
        }
        let n = static_len(imp, cx, x, a)? as i64;
        if mode == "constant" {
            // Negative pads crop first; the positive ones are Flint's `pad`.
            let cropped = take_range(imp, cx, x, a, (-lo).max(0) as u64, (n + hi.min(0)).max(0) as u64)?;
            x = nonempty(cx, cropped)?;
            (low[a], high[a]) = (lo.max(0) as u64, hi.max(0) as u64);
        } else {
            if n == 0 {
                return Err(cx.invalid("cannot pad an empty axis by reflection"));
            }
            let idx = (0..(n + lo + hi).max(0)).map(|j| pad_source(&mode, j, lo, n)).collect();
            x = imp.gather_const(cx, x, a, idx)?;
        }
    }
    if low.iter().chain(&high).all(|&p| p == 0) {
        return one(x);
    }
    one(imp.add(cx, Op::Pad { low, high, value }, &[x], None)?)
}

fn gather(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, i) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let a = axis(cx, cx.int("axis", 0)?, imp.rank(x))?;
    one(imp.add(cx, Op::Gather { axis: a }, &[x, i], None)?)
}

/// Row-major strides of a static shape.
pub(super) fn strides(shape: &[u64]) -> Vec<u64> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Every dim of `x`, which must all be numbers (see [`Importer::known_axes`]).
pub(crate) fn static_shape(imp: &Importer, cx: &NodeCx, x: NodeId) -> R<Vec<u64>> {
    imp.known_axes(cx, x, 0..imp.rank(x))
}

/// Indices as i64 with negative ones wrapped once: `i < 0 ? i + n : i`.
pub(super) fn wrapped_indices(imp: &mut Importer, cx: &NodeCx, idx: NodeId, n: u64) -> R<NodeId> {
    let idx = imp.cast(cx, idx, DType::I64)?;
    let neg = imp.compare_scalar(cx, CompareOp::Lt, idx, 0.0)?;
    let shifted = imp.binary_scalar(cx, BinaryOp::Add, idx, n as f64)?;
    imp.select(cx, neg, shifted, idx)
}

/// The flat index into data of shape `xs` of every element of `idx` (the `*Elements` ops):
/// `sum_d p_d * stride_d` over the element's position `p`, with `p_axis` replaced by the
/// (wrapped) index.
pub(super) fn element_flat_index(imp: &mut Importer, cx: &NodeCx, idx: NodeId, xs: &[u64], axis: usize) -> R<NodeId> {
    let idx_shape = imp.ty(idx).shape;
    let stride = strides(xs);
    let mut flat = wrapped_indices(imp, cx, idx, xs[axis])?;
    flat = imp.binary_scalar(cx, BinaryOp::Mul, flat, stride[axis] as f64)?;
    for d in (0..xs.len()).filter(|&d| d != axis) {
        let pos = imp.iota(cx, idx_shape.clone(), d, DType::I64)?;
        let term = imp.binary_scalar(cx, BinaryOp::Mul, pos, stride[d] as f64)?;
        flat = imp.binary(cx, BinaryOp::Add, flat, term)?;
    }
    Ok(flat)
}

/// `GatherElements` as one `gather` on the flattened data: the flat index of
/// `out[p]` is `sum_d p_d * stride_d` with `p_axis` replaced by `indices[p]`. The leading
/// axis may be symbolic (a batch) unless it is the gathered one: no stride depends on its
/// size, and its positions come from an iota.
/// The sizes of the `*Elements` ops' data `x` along `axis`: every axis must be a number but a
/// leading one that `axis` is not (a batch; no stride or wrap reads it), which comes back as
/// the first result, with 1 standing in for it in the second.
pub(super) fn element_axes(imp: &Importer, cx: &NodeCx, x: NodeId, axis: usize) -> R<(Dim, Vec<u64>)> {
    let lead = imp.ty(x).shape.first().cloned().ok_or_else(|| cx.invalid("the data must have rank >= 1"))?;
    let known_from = usize::from(axis != 0);
    let mut xs = imp.known_axes(cx, x, known_from..imp.rank(x))?;
    if axis != 0 {
        xs.insert(0, 1);
    }
    Ok((lead, xs))
}

fn gather_elements(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, idx) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let rank = imp.rank(x);
    let a = axis(cx, cx.int("axis", 0)?, rank)?;
    let (lead, xs) = element_axes(imp, cx, x, a)?;
    let flat = element_flat_index(imp, cx, idx, &xs, a)?;
    let total = xs[1..].iter().fold(lead, |acc, &d| acc.mul(&Dim::known(d)));
    let data = imp.reshape(cx, x, vec![total])?;
    one(imp.add(cx, Op::Gather { axis: 0 }, &[data, flat], None)?)
}

/// `GatherND` as one `gather` on the data with its batch and indexed axes flattened into one.
/// With batch dims, the leading one may be symbolic (a batch): no stride depends on its size,
/// and its positions come from an iota; the indices' leading axes may be symbolic too.
fn gather_nd(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, idx) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let b = usize::try_from(cx.int("batch_dims", 0)?).map_err(|_| cx.invalid("`batch_dims` must be >= 0"))?;
    let (xd, id) = (imp.ty(x).shape, imp.ty(idx).shape);
    let k = id
        .last()
        .and_then(Dim::as_known)
        .ok_or_else(|| cx.invalid("indices must have rank >= 1 and a static last dim"))? as usize;
    if b + k > xd.len() || b >= id.len() || xd[..b] != id[..b] {
        return Err(cx.invalid("indices do not fit the data"));
    }
    let known_from = usize::from(b >= 1);
    let mut xs = imp.known_axes(cx, x, known_from..xd.len())?;
    if b >= 1 {
        // A stand-in for the batch size, which no stride reads.
        xs.insert(0, 1);
    }
    // data -> [prod(xs[..b + k]), xs[b + k..]...]
    let lead = xs[1..b + k].iter().fold(xd[0].clone(), |acc, &d| acc.mul(&Dim::known(d)));
    let mut flat_shape = vec![lead];
    flat_shape.extend(xs[b + k..].iter().map(|&d| Dim::known(d)));
    let data = imp.reshape(cx, x, flat_shape)?;
    let stride = strides(&xs[..b + k]);
    let pos_shape: Shape = id[..id.len() - 1].to_vec();
    let mut flat: Option<NodeId> = None;
    let mut add = |imp: &mut Importer, term: NodeId| -> R<()> {
        flat = Some(match flat {
            Some(f) => imp.binary(cx, BinaryOp::Add, f, term)?,
            None => term,
        });
        Ok(())
    };
    for (d, &s) in stride.iter().enumerate().take(b) {
        let pos = imp.iota(cx, pos_shape.clone(), d, DType::I64)?;
        let term = imp.binary_scalar(cx, BinaryOp::Mul, pos, s as f64)?;
        add(imp, term)?;
    }
    for j in 0..k {
        let col = imp.slice(cx, idx, id.len() - 1, j as u64, j as u64 + 1, 1)?;
        let col = imp.reshape(cx, col, pos_shape.clone())?;
        let col = wrapped_indices(imp, cx, col, xs[b + j])?;
        let term = imp.binary_scalar(cx, BinaryOp::Mul, col, stride[b + j] as f64)?;
        add(imp, term)?;
    }
    let flat = flat.ok_or_else(|| cx.unsupported("`GatherND` with no indexed or batch axis"))?;
    one(imp.add(cx, Op::Gather { axis: 0 }, &[data, flat], None)?)
}

/// `tile(x, r)`: `[d0, d1]` -> reshape `[1, d0, 1, d1]` -> broadcast `[r0, d0, r1, d1]` ->
/// reshape `[r0*d0, r1*d1]`.
fn tile(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let reps = imp.const_ints(cx, 1)?;
    let x = imp.input(cx, 0)?;
    let shape = imp.ty(x).shape;
    if reps.len() != shape.len() || reps.iter().any(|&r| r < 0) {
        return Err(cx.invalid(format!("repeats {reps:?} do not fit rank {}", shape.len())));
    }
    let (mut spread, mut wide, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for (d, &r) in shape.iter().zip(&reps) {
        let r = Dim::known(r as u64);
        spread.extend([Dim::known(1), d.clone()]);
        wide.extend([r.clone(), d.clone()]);
        out.push(r.mul(d));
    }
    let s = imp.reshape(cx, x, spread)?;
    let b = imp.broadcast(cx, s, wide)?;
    one(imp.reshape(cx, b, out)?)
}

fn block_size(cx: &NodeCx) -> R<u64> {
    cx.require("blocksize")?;
    Ok(cx.geometry_int("blocksize", 1, 1)? as u64)
}

fn nchw(imp: &Importer, cx: &NodeCx, x: NodeId) -> R<[Dim; 4]> {
    imp.ty(x).shape.try_into().map_err(|_| cx.invalid("the input must have rank 4 (NCHW)"))
}

fn known(d: &Dim, b: u64, cx: &NodeCx) -> R<Dim> {
    d.div(&Dim::known(b)).ok_or_else(|| cx.invalid(format!("a dim is not divisible by the block size {b}")))
}

fn depth_to_space(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let b = block_size(cx)?;
    let [n, c, h, w] = nchw(imp, cx, x)?;
    let c2 = known(&c, b * b, cx)?;
    let bd = Dim::known(b);
    let (shape, perm) = match cx.string("mode", "DCR")?.as_str() {
        "DCR" => (vec![n.clone(), bd.clone(), bd.clone(), c2.clone(), h.clone(), w.clone()], vec![0, 3, 4, 1, 5, 2]),
        "CRD" => (vec![n.clone(), c2.clone(), bd.clone(), bd.clone(), h.clone(), w.clone()], vec![0, 1, 4, 2, 5, 3]),
        m => return Err(cx.bad_attr("mode", &format!("{m:?}"))),
    };
    let r = imp.reshape(cx, x, shape)?;
    let p = imp.permute(cx, r, perm)?;
    one(imp.reshape(cx, p, vec![n, c2, h.mul(&bd), w.mul(&bd)])?)
}

fn space_to_depth(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let b = block_size(cx)?;
    let [n, c, h, w] = nchw(imp, cx, x)?;
    let (h2, w2, bd) = (known(&h, b, cx)?, known(&w, b, cx)?, Dim::known(b));
    let r = imp.reshape(cx, x, vec![n.clone(), c.clone(), h2.clone(), bd.clone(), w2.clone(), bd.clone()])?;
    let p = imp.permute(cx, r, vec![0, 3, 5, 1, 2, 4])?;
    one(imp.reshape(cx, p, vec![n, c.mul(&Dim::known(b * b)), h2, w2])?)
}

/// `trilu(x, k)`: keep `x[..., i, j]` where `j - i >= k` (upper) or `j - i <= k` (lower).
fn trilu(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let k = if cx.has(1) { imp.const_scalar(cx, 1)? } else { 0.0 };
    let x = imp.input(cx, 0)?;
    let shape = imp.ty(x).shape;
    if shape.len() < 2 {
        return Err(cx.invalid("the input must have rank >= 2"));
    }
    let mn = shape[shape.len() - 2..].to_vec();
    let i = imp.iota(cx, mn.clone(), 0, DType::I64)?;
    let j = imp.iota(cx, mn, 1, DType::I64)?;
    let ik = if k == 0.0 { i } else { imp.binary_scalar(cx, BinaryOp::Add, i, k)? };
    let keep = if cx.int("upper", 1)? != 0 { CompareOp::Ge } else { CompareOp::Le };
    let c = imp.compare(cx, keep, j, ik)?;
    let zero = imp.scalar(imp.dtype(x), 0.0);
    one(imp.select(cx, c, x, zero)?)
}

/// `one_hot(indices, depth, [off, on])`: `iota == indices` along the new axis selects `on`.
fn one_hot(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let depth = imp.const_scalar(cx, 1)?;
    if depth < 1.0 {
        return Err(cx.invalid("`depth` must be positive"));
    }
    let depth = depth as u64;
    let idx = imp.input(cx, 0)?;
    let values = imp.input(cx, 2)?;
    let idx = match imp.dtype(idx) {
        d if d.is_float() => imp.cast(cx, idx, DType::I64)?,
        _ => idx,
    };
    let idx = wrapped_indices(imp, cx, idx, depth)?;
    let r = imp.rank(idx) + 1;
    let a = axis(cx, cx.int("axis", -1)?, r)?;
    let idx = imp.unsqueeze(cx, idx, &[a])?;
    let mut shape = imp.ty(idx).shape;
    shape[a] = Dim::known(depth);
    let pos = imp.iota(cx, shape, a, DType::I64)?;
    let hit = imp.compare(cx, CompareOp::Eq, pos, idx)?;
    let off = imp.gather_const(cx, values, 0, vec![0])?;
    let on = imp.gather_const(cx, values, 0, vec![1])?;
    let (off, on) = (imp.reshape(cx, off, vec![])?, imp.reshape(cx, on, vec![])?);
    one(imp.select(cx, hit, on, off)?)
}

/// A constant tensor of `dtype` with every element `value`.
pub(crate) fn splat(cx: &NodeCx, dtype: DType, shape: &[usize], value: f64) -> R<Tensor> {
    let n = super::build::constant_len(cx, shape.iter().map(|&d| d as u64))?;
    let t = match dtype {
        d if d.is_float() => Tensor::from_f64(d, shape, vec![value; n]),
        d if d.is_int() => Tensor::from_i64(d, shape, vec![value as i64; n]),
        _ => Tensor::from_bool(shape, vec![value != 0.0; n]),
    };
    t.map_err(|e| cx.invalid(e.to_string()))
}

/// `CenterCropPad`: each listed axis is cropped or zero-padded to its target length, centred
/// (an odd difference puts the extra element at the end).
fn center_crop_pad(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let target = imp.const_ints(cx, 1)?;
    let mut x = imp.input(cx, 0)?;
    let r = imp.rank(x);
    let ax: Vec<usize> = match cx.ints("axes")? {
        Some(a) => a.iter().map(|&v| axis(cx, v, r)).collect::<R<_>>()?,
        None => (0..r).collect(),
    };
    if ax.len() != target.len() {
        return Err(cx.invalid("one target length per axis is needed"));
    }
    let (mut low, mut high) = (vec![0u64; r], vec![0u64; r]);
    for (&a, &t) in ax.iter().zip(&target) {
        let n = static_len(imp, cx, x, a)? as i64;
        let d = (t - n).abs();
        if t < n {
            x = imp.slice(cx, x, a, (d / 2) as u64, (d / 2 + t) as u64, 1)?;
        } else if t > n {
            (low[a], high[a]) = ((d / 2) as u64, (d - d / 2) as u64);
        }
    }
    if low.iter().chain(&high).all(|&p| p == 0) {
        return one(x);
    }
    one(imp.add(cx, Op::Pad { low, high, value: 0.0 }, &[x], None)?)
}

/// `Compress` with a constant condition: a gather of the selected positions (of the flattened
/// input when there is no axis).
fn compress(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let cond = imp.const_input(cx, 1)?;
    let keep: Vec<i64> =
        cond.to_f64_vec().iter().enumerate().filter(|(_, &c)| c != 0.0).map(|(i, _)| i as i64).collect();
    let mut x = imp.input(cx, 0)?;
    let a = match cx.opt_int("axis")? {
        Some(v) => axis(cx, v, imp.rank(x))?,
        None => {
            x = imp.reshape(cx, x, vec![numel(&imp.ty(x).shape)])?;
            0
        }
    };
    let n = static_len(imp, cx, x, a)? as i64;
    let keep: Vec<i64> = keep.into_iter().filter(|&i| i < n).collect();
    if keep.is_empty() {
        return Ok(vec![empty_along(imp, cx, x, a)?]);
    }
    one(imp.gather_const(cx, x, a, keep)?)
}

/// `ReverseSequence` with constant lengths: one gather on the flattened input, reading
/// `x[len - 1 - t]` for the first `len` steps of each batch entry and `x[t]` after.
fn reverse_sequence(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let lens = imp.const_ints(cx, 1)?;
    let x = imp.input(cx, 0)?;
    let shape = static_shape(imp, cx, x)?;
    let (b, t) = (axis(cx, cx.int("batch_axis", 1)?, shape.len())?, axis(cx, cx.int("time_axis", 0)?, shape.len())?);
    let st = strides(&shape);
    let total: u64 = shape.iter().product();
    let mut idx = Vec::with_capacity(total as usize);
    for flat in 0..total {
        let (tb, tt) = ((flat / st[b]) % shape[b], (flat / st[t]) % shape[t]);
        let len = lens.get(tb as usize).copied().unwrap_or(0).clamp(0, shape[t] as i64) as u64;
        let src_t = if tt < len { len - 1 - tt } else { tt };
        idx.push((flat - tt * st[t] + src_t * st[t]) as i64);
    }
    let flat = imp.reshape(cx, x, vec![Dim::known(total)])?;
    let g = imp.gather_const(cx, flat, 0, idx)?;
    one(imp.reshape(cx, g, imp.ty(x).shape)?)
}
