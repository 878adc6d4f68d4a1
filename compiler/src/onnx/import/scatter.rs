//! Scatters (`ScatterElements`, `Scatter`, `ScatterND`). Flint has no scatter op; a scatter
//! of `U` updates into `D` rows is written with a `[D, U]` match mask `M[d, u] = (target[u]
//! == d)`: a reduction over `u` of `M ? update : neutral` for `add`, `mul`, `max`, `min`, and
//! for plain assignment the last matching update (`max` over `M ? u : -1`, then a `gather`),
//! which is the order ONNX's reference writes in. The cost is `D·U` comparisons, fine for the
//! index updates models make (KV caches, embeddings) at moderate sizes.

use super::build::{axis, one};
use super::movement::{element_axes, element_flat_index, static_shape, strides, wrapped_indices};
use super::{entry, Entry, Importer, NodeCx, Value};
use crate::ir::infer::numel;
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

pub(crate) const OPS: &[(&str, Entry)] = &[
    ("ScatterElements", entry(scatter_elements, &["axis", "reduction"])),
    ("Scatter", entry(scatter_elements, &["axis"])),
    ("ScatterND", entry(scatter_nd, &["reduction"])),
    ("MaxUnpool", entry(max_unpool, &["kernel_shape", "pads", "strides"])),
];

/// `data [D, R]` with the rows `targets [U]` combined with `updates [U, R]`.
fn scatter_rows(
    imp: &mut Importer,
    cx: &NodeCx,
    data: NodeId,
    targets: NodeId,
    updates: NodeId,
    reduction: &str,
) -> R<NodeId> {
    let d = imp.ty(data).shape[0].clone();
    let u = imp.ty(targets).shape[0].clone();
    let rows = imp.iota(cx, vec![d.clone(), Dim::known(1)], 0, DType::I64)?;
    let t = imp.unsqueeze(cx, targets, &[0])?; // [1, U]
    let m = imp.compare(cx, CompareOp::Eq, t, rows)?; // [D, U]
    if reduction == "none" {
        let pos = imp.iota(cx, vec![Dim::known(1), u], 1, DType::I64)?;
        let none = imp.scalar(DType::I64, -1.0);
        let cand = imp.select(cx, m, pos, none)?;
        let last = imp.reduce(cx, ReduceOp::Max, cand, vec![1], false)?; // [D]
        let hit = imp.compare_scalar(cx, CompareOp::Ge, last, 0.0)?;
        let src = imp.binary_scalar(cx, BinaryOp::Maximum, last, 0.0)?;
        let value = imp.add(cx, Op::Gather { axis: 0 }, &[updates, src], None)?; // [D, R]
        let hit = imp.unsqueeze(cx, hit, &[1])?;
        return imp.select(cx, hit, value, data);
    }
    let m3 = imp.unsqueeze(cx, m, &[2])?; // [D, U, 1]
    let u3 = imp.unsqueeze(cx, updates, &[0])?; // [1, U, R]
    let d3 = imp.unsqueeze(cx, data, &[1])?; // [D, 1, R]
    let dtype = imp.dtype(data);
    match reduction {
        "add" | "mul" => {
            let (neutral, op, red) = if reduction == "add" {
                (0.0, BinaryOp::Add, ReduceOp::Sum)
            } else {
                (1.0, BinaryOp::Mul, ReduceOp::Prod)
            };
            let n = imp.scalar(dtype, neutral);
            let sel = imp.select(cx, m3, u3, n)?;
            let c = imp.reduce(cx, red, sel, vec![1], false)?;
            imp.binary(cx, op, data, c)
        }
        "max" | "min" => {
            // Unmatched entries read the data itself, so rows no update reaches keep it.
            let sel = imp.select(cx, m3, u3, d3)?;
            let red = if reduction == "max" { ReduceOp::Max } else { ReduceOp::Min };
            let c = imp.reduce(cx, red, sel, vec![1], false)?;
            let op = if reduction == "max" { BinaryOp::Maximum } else { BinaryOp::Minimum };
            imp.binary(cx, op, data, c)
        }
        other => Err(cx.bad_attr("reduction", &format!("{other:?}"))),
    }
}

/// Along a static axis, the data's leading axis may be symbolic (a batch), as for
/// `GatherElements`: no stride or wrap reads its size. The indices (and updates) may have a
/// symbolic leading axis too.
fn scatter_elements(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, idx, upd) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    let rank = imp.rank(x);
    let a = axis(cx, cx.int("axis", 0)?, rank)?;
    let (lead, xs) = element_axes(imp, cx, x, a)?;
    let flat = element_flat_index(imp, cx, idx, &xs, a)?;
    let total = xs[1..].iter().fold(lead, |acc, &d| acc.mul(&Dim::known(d)));
    let count = numel(&imp.ty(idx).shape);
    let data = imp.reshape(cx, x, vec![total, Dim::known(1)])?;
    let targets = imp.reshape(cx, flat, vec![count.clone()])?;
    let updates = imp.reshape(cx, upd, vec![count, Dim::known(1)])?;
    let y = scatter_rows(imp, cx, data, targets, updates, &cx.string("reduction", "none")?)?;
    one(imp.reshape(cx, y, imp.ty(x).shape)?)
}

/// The indexed leading axes of the data must be numbers (negative indices wrap by them); its
/// other axes, and the indices' leading axes (how many updates), may be symbolic.
fn scatter_nd(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, idx, upd) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    let (xd, id) = (imp.ty(x).shape, imp.ty(idx).shape);
    let k = id
        .last()
        .and_then(Dim::as_known)
        .ok_or_else(|| cx.invalid("indices must have rank >= 1 and a static last dim"))? as usize;
    if k == 0 || k > xd.len() {
        return Err(cx.invalid("the last dim of indices must be in 1..=rank(data)"));
    }
    let xs = imp.known_axes(cx, x, 0..k)?;
    let st = strides(&xs);
    let lead: u64 = xs.iter().product();
    let rest = numel(&xd[k..]);
    let pos_shape: Shape = id[..id.len() - 1].to_vec();
    let count = numel(&pos_shape);
    let mut flat: Option<NodeId> = None;
    for (j, &s) in st.iter().enumerate() {
        let col = imp.slice(cx, idx, id.len() - 1, j as u64, j as u64 + 1, 1)?;
        let col = imp.reshape(cx, col, pos_shape.clone())?;
        let col = wrapped_indices(imp, cx, col, xs[j])?;
        let term = imp.binary_scalar(cx, BinaryOp::Mul, col, s as f64)?;
        flat = Some(match flat {
            Some(f) => imp.binary(cx, BinaryOp::Add, f, term)?,
            None => term,
        });
    }
    let flat = flat.ok_or_else(|| cx.invalid("no indexed axis"))?;
    let data = imp.reshape(cx, x, vec![Dim::known(lead), rest.clone()])?;
    let targets = imp.reshape(cx, flat, vec![count.clone()])?;
    let updates = imp.reshape(cx, upd, vec![count, rest])?;
    let y = scatter_rows(imp, cx, data, targets, updates, &cx.string("reduction", "none")?)?;
    one(imp.reshape(cx, y, imp.ty(x).shape)?)
}

/// `MaxUnpool`: zeros of the unpooled shape with `x` written at the flat `indices` (as
/// `MaxPool` reports them).
fn max_unpool(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, idx) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let xs = static_shape(imp, cx, x)?;
    let sp = xs.len().saturating_sub(2);
    // The indices address the default unpooled shape; an explicit `output_shape` pads it at
    // the end of each axis, as ONNX's reference does.
    cx.require("kernel_shape")?;
    let kernel = cx.geometry("kernel_shape", 1, sp, 1)?;
    let strides = cx.geometry("strides", 1, sp, 1)?;
    let pads = cx.geometry("pads", 0, 2 * sp, 0)?;
    let spatial =
        (0..sp).map(|i| ((xs[i + 2] as i64 - 1) * strides[i] + kernel[i] - pads[i] - pads[i + sp]).max(1) as u64);
    let out: Vec<u64> = xs[..2].iter().copied().chain(spatial).collect();
    let wanted: Vec<u64> =
        if cx.has(2) { imp.const_ints(cx, 2)?.into_iter().map(|v| v.max(0) as u64).collect() } else { out.clone() };
    if wanted.len() != out.len() || wanted.iter().zip(&out).any(|(w, o)| w < o) {
        return Err(cx.unsupported(format!("an output shape {wanted:?} smaller than the unpooled {out:?}")));
    }
    let (total, count): (u64, u64) = (out.iter().product(), xs.iter().product());
    let zero = imp.scalar(imp.dtype(x), 0.0);
    let data = imp.broadcast(cx, zero, vec![Dim::known(total), Dim::known(1)])?;
    let targets = imp.cast(cx, idx, DType::I64)?;
    let targets = imp.reshape(cx, targets, vec![Dim::known(count)])?;
    let updates = imp.reshape(cx, x, vec![Dim::known(count), Dim::known(1)])?;
    let y = scatter_rows(imp, cx, data, targets, updates, "none")?;
    let y = imp.reshape(cx, y, out.iter().copied().map(Dim::known).collect())?;
    if wanted == out {
        return one(y);
    }
    let high = wanted.iter().zip(&out).map(|(w, o)| w - o).collect();
    one(imp.add(cx, Op::Pad { low: vec![0; out.len()], high, value: 0.0 }, &[y], None)?)
}
