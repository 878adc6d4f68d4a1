//! Linear algebra and convolutional-network ops: `MatMul`, `Gemm`, `Einsum`, `Conv`, the
//! pools, and the normalisations that are not Flint composites (batch, instance, group,
//! Lp).
//!
//! Flint's `conv2d` and pools are 2-D; 1-D ones are imported as 2-D with a height of 1.

use super::attrs::MAX_GEOMETRY;
use super::build::{axes, axis, one};
use super::{entry, Entry, Importer, NodeCx, Value};
use crate::ir::infer::numel;
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

const POOL_ATTRS: &[&str] =
    &["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "storage_order", "strides"];

pub(crate) const OPS: &[(&str, Entry)] = &[
    ("MatMul", entry(matmul, &[])),
    ("Gemm", entry(gemm, &["alpha", "beta", "transA", "transB"])),
    ("Einsum", entry(einsum, &["equation"])),
    ("Det", entry(det, &[])),
    ("Conv", entry(conv, &["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])),
    (
        "ConvTranspose",
        entry(
            conv_transpose,
            &["auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape", "pads", "strides"],
        ),
    ),
    ("Col2Im", entry(col2im, &["dilations", "pads", "strides"])),
    ("DeformConv", entry(deform_conv, &["dilations", "group", "kernel_shape", "offset_group", "pads", "strides"])),
    ("MaxPool", entry(pool, POOL_ATTRS)),
    ("AveragePool", entry(pool, POOL_ATTRS)),
    ("LpPool", entry(pool, &["auto_pad", "ceil_mode", "dilations", "kernel_shape", "p", "pads", "strides"])),
    ("GlobalAveragePool", entry(global_pool, &[])),
    ("GlobalMaxPool", entry(global_pool, &[])),
    ("BatchNormalization", entry(batch_norm, &["epsilon", "momentum", "training_mode", "spatial"])),
    ("InstanceNormalization", entry(instance_norm, &["epsilon"])),
    ("GroupNormalization", entry(group_norm, &["epsilon", "num_groups", "stash_type"])),
    ("LpNormalization", entry(lp_norm, &["axis", "p"])),
    ("MeanVarianceNormalization", entry(mvn, &["axes"])),
    ("LRN", entry(lrn, &["alpha", "beta", "bias", "size"])),
];

/// NumPy `matmul`: a rank-1 operand is promoted to a matrix and its added axis removed.
pub(crate) fn matmul_nd(imp: &mut Importer, cx: &NodeCx, a: NodeId, b: NodeId) -> R<NodeId> {
    let (ra, rb) = (imp.rank(a), imp.rank(b));
    let a2 = if ra == 1 { imp.unsqueeze(cx, a, &[0])? } else { a };
    let b2 = if rb == 1 { imp.unsqueeze(cx, b, &[1])? } else { b };
    let y = imp.matmul(cx, a2, b2)?;
    let mut shape = imp.ty(y).shape;
    let r = shape.len();
    if rb == 1 {
        shape.remove(r - 1);
    }
    if ra == 1 {
        shape.remove(r - 2);
    }
    imp.reshape(cx, y, shape)
}

fn matmul(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (a, b) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    one(matmul_nd(imp, cx, a, b)?)
}

/// `gemm(A, B, C) = alpha * op(A) @ op(B) + beta * C`; PyTorch's `Linear` (`transB=1`,
/// `alpha = beta = 1`, a bias vector) becomes Flint's `linear`.
fn gemm(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (a, b, c) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.opt_input(cx, 2)?);
    let (alpha, beta) = (cx.float("alpha", 1.0)? as f64, cx.float("beta", 1.0)? as f64);
    let (ta, tb) = (cx.int("transA", 0)? != 0, cx.int("transB", 0)? != 0);
    let n = imp.ty(b).shape.get(if tb { 0 } else { 1 }).cloned();
    let bias_is_vector = c.is_none_or(|c| imp.ty(c).shape == [n.clone().unwrap_or(Dim::known(0))]);
    if !ta && tb && alpha == 1.0 && beta == 1.0 && bias_is_vector && imp.dtype(a).is_float() {
        let operands: Vec<NodeId> = [Some(a), Some(b), c].into_iter().flatten().collect();
        return one(imp.add(cx, Op::Linear, &operands, None)?);
    }
    let a = if ta { imp.transpose(cx, a)? } else { a };
    let b = if tb { imp.transpose(cx, b)? } else { b };
    let mut y = imp.matmul(cx, a, b)?;
    if alpha != 1.0 {
        y = imp.binary_scalar(cx, BinaryOp::Mul, y, alpha)?;
    }
    if let Some(c) = c {
        let c = if beta != 1.0 { imp.binary_scalar(cx, BinaryOp::Mul, c, beta)? } else { c };
        y = imp.binary(cx, BinaryOp::Add, y, c)?;
        if imp.rank(y) != 2 {
            return Err(cx.invalid("C does not broadcast to the product's shape"));
        }
    }
    one(y)
}

/// `Einsum` without repeated letters in one operand: every operand is permuted to a common
/// letter order with size-1 axes for the letters it lacks, the operands are multiplied
/// (broadcasting), and the letters missing from the output are summed.
fn einsum(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let eq: String = cx.string("equation", "")?.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains("...") {
        return Err(cx.bad_attr("equation", &format!("{eq:?} (ellipsis)")));
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != cx.arity() {
        return Err(cx.invalid(format!("the equation has {} operands, the node {}", terms.len(), cx.arity())));
    }
    let mut letters: Vec<char> = Vec::new();
    for t in &terms {
        for c in t.chars() {
            if !letters.contains(&c) {
                letters.push(c);
            }
        }
        if t.chars().enumerate().any(|(i, c)| t[..i].contains(c)) {
            return Err(cx.bad_attr("equation", &format!("{eq:?} (a repeated index in one operand)")));
        }
    }
    let out: Vec<char> = match rhs {
        Some(r) => r.chars().collect(),
        None => {
            // Implicit output: the letters used once, in alphabetical order.
            let mut once: Vec<char> = letters.iter().copied().filter(|&c| lhs.matches(c).count() == 1).collect();
            once.sort();
            once
        }
    };
    // Output letters first, in output order, then the summed ones.
    let mut order = out.clone();
    order.extend(letters.iter().filter(|c| !out.contains(c)));
    let mut product: Option<NodeId> = None;
    for (i, t) in terms.iter().enumerate() {
        let x = imp.input(cx, i)?;
        let here: Vec<char> = t.chars().collect();
        if here.len() != imp.rank(x) {
            return Err(cx.invalid(format!("operand {i} has rank {}, the equation says {}", imp.rank(x), here.len())));
        }
        let present: Vec<char> = order.iter().copied().filter(|c| here.contains(c)).collect();
        let perm = present.iter().map(|c| here.iter().position(|h| h == c).unwrap_or(0)).collect();
        let p = imp.permute(cx, x, perm)?;
        let shape = imp.ty(p).shape;
        let mut it = shape.into_iter();
        let full: Shape = order
            .iter()
            .map(|c| if here.contains(c) { it.next().unwrap_or(Dim::known(1)) } else { Dim::known(1) })
            .collect();
        let p = imp.reshape(cx, p, full)?;
        product = Some(match product {
            Some(acc) => imp.binary(cx, BinaryOp::Mul, acc, p)?,
            None => p,
        });
    }
    let product = product.ok_or_else(|| cx.invalid("no operands"))?;
    let summed: Vec<usize> = (out.len()..order.len()).collect();
    one(imp.reduce(cx, ReduceOp::Sum, product, summed, false)?)
}

/// Window attributes of a 2-D conv or pool, NCHW.
struct Window {
    stride: [u64; 2],
    dilation: [u64; 2],
    /// `[top, left, bottom, right]`.
    padding: [u64; 4],
}

/// Reads `kernel_shape`, `strides`, `dilations`, `pads` and `auto_pad` for `spatial` (1 or
/// 2) spatial axes of lengths `input`, lifting 1-D windows to 2-D.
/// `Det` of `[..., M, M]`: Gaussian elimination with partial pivoting unrolled over the
/// static `M`, as the LU factorisation ONNX's reference calls through NumPy. At step `j` the
/// row with the largest `|a[i, j]|`, `i >= j`, is swapped in (a permutation matrix applied
/// by `matmul`; a swap flips the sign), the pivot joins the product and the rows below are
/// eliminated. A zero pivot makes the product 0 without dividing by it.
fn det(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    use BinaryOp::*;
    let x = imp.input(cx, 0)?;
    let shape = imp.ty(x).shape;
    let r = shape.len();
    let dtype = imp.dtype(x);
    let m = match (r >= 2, shape.get(r.wrapping_sub(1)).and_then(Dim::as_known)) {
        (true, Some(m)) if shape[r - 2] == shape[r - 1] && dtype.is_float() => m,
        _ => return Err(cx.invalid("the input must hold square float matrices of a static size")),
    };
    let iota = |imp: &mut Importer, axis: usize| {
        let mut s = vec![Dim::known(1); r];
        s[r - 2 + axis] = Dim::known(m);
        imp.iota(cx, s, r - 2 + axis, DType::I64)
    };
    let rows = iota(imp, 0)?; // [1.., M, 1]
    let cols = iota(imp, 1)?; // [1.., 1, M]
    let entry = |imp: &mut Importer, a: NodeId, i: u64, j: u64| -> R<NodeId> {
        let row = imp.slice(cx, a, r - 2, i, i + 1, 1)?;
        imp.slice(cx, row, r - 1, j, j + 1, 1)
    };
    let mut a = x;
    let mut product: Option<NodeId> = None;
    for j in 0..m {
        let column = imp.slice(cx, a, r - 1, j, j + 1, 1)?; // [..., M, 1]
        let mut pivot_sign = None;
        if j + 1 < m {
            // The pivot row p, and the permutation swapping rows j and p.
            let magnitude = imp.unary(cx, UnaryOp::Abs, column)?;
            let above = imp.compare_scalar(cx, CompareOp::Lt, rows, j as f64)?;
            let minus = imp.scalar(dtype, -1.0);
            let candidates = imp.select(cx, above, minus, magnitude)?;
            let p = imp.add(
                cx,
                Op::ArgReduce { op: ArgReduceOp::ArgMax, axis: r - 2, keepdims: true },
                &[candidates],
                None,
            )?;
            let is_j = imp.compare_scalar(cx, CompareOp::Eq, rows, j as f64)?;
            let is_p = imp.compare(cx, CompareOp::Eq, rows, p)?;
            let jc = imp.scalar(DType::I64, j as f64);
            let other = imp.select(cx, is_p, jc, rows)?;
            let source = imp.select(cx, is_j, p, other)?;
            let pick = imp.compare(cx, CompareOp::Eq, source, cols)?;
            let permutation = imp.cast(cx, pick, dtype)?;
            a = imp.matmul(cx, permutation, a)?;
            let stays = imp.compare_scalar(cx, CompareOp::Eq, p, j as f64)?;
            let (one, minus_one) = (imp.scalar(dtype, 1.0), imp.scalar(dtype, -1.0));
            pivot_sign = Some(imp.select(cx, stays, one, minus_one)?);
        }
        let pivot = entry(imp, a, j, j)?; // [..., 1, 1]
        let mut factor = pivot;
        if let Some(s) = pivot_sign {
            factor = imp.binary(cx, Mul, factor, s)?;
        }
        product = Some(match product {
            Some(d) => imp.binary(cx, Mul, d, factor)?,
            None => factor,
        });
        if j + 1 < m {
            let is_zero = imp.compare_scalar(cx, CompareOp::Eq, pivot, 0.0)?;
            let one = imp.scalar(dtype, 1.0);
            let safe = imp.select(cx, is_zero, one, pivot)?;
            let column = imp.slice(cx, a, r - 1, j, j + 1, 1)?;
            let f = imp.binary(cx, Div, column, safe)?;
            let below = imp.compare_scalar(cx, CompareOp::Gt, rows, j as f64)?;
            let zero = imp.scalar(dtype, 0.0);
            let f = imp.select(cx, below, f, zero)?;
            let row = imp.slice(cx, a, r - 2, j, j + 1, 1)?; // [..., 1, M]
            let update = imp.binary(cx, Mul, f, row)?;
            a = imp.binary(cx, Sub, a, update)?;
        }
    }
    let d = product.ok_or_else(|| cx.invalid("an empty matrix"))?;
    one(imp.reshape(cx, d, shape[..r - 2].to_vec())?)
}

/// The pads `(begin, end)` of one axis of length `n` for a window spanning `span` with
/// `stride`: the declared ones, none (`VALID`), or `SAME_*`'s, which keep `ceil(n / stride)`
/// outputs and put the odd element at the end (`UPPER`) or the beginning (`LOWER`).
fn axis_pads(cx: &NodeCx, auto_pad: &str, n: i64, span: i64, stride: i64, declared: (i64, i64)) -> R<(i64, i64)> {
    match auto_pad {
        "NOTSET" => Ok(declared),
        "VALID" => Ok((0, 0)),
        "SAME_UPPER" | "SAME_LOWER" => {
            let out = (n + stride - 1) / stride;
            let total = ((out - 1) * stride + span - n).max(0);
            let small = total / 2;
            Ok(if auto_pad == "SAME_UPPER" { (small, total - small) } else { (total - small, small) })
        }
        other => Err(cx.bad_attr("auto_pad", &format!("{other:?}"))),
    }
}

fn window(cx: &NodeCx, spatial: usize, input: [u64; 2], kernel: Option<Vec<i64>>) -> R<Window> {
    let kernel = kernel.ok_or_else(|| cx.invalid("`kernel_shape` is required"))?;
    let stride = cx.geometry("strides", 1, spatial, 1)?;
    let dilation = cx.geometry("dilations", 1, spatial, 1)?;
    let mut pads = cx.geometry("pads", 0, 2 * spatial, 0)?;
    if kernel.len() != spatial || kernel.iter().any(|&v| !(1..=MAX_GEOMETRY).contains(&v)) {
        return Err(cx.invalid(format!("`kernel_shape` = {kernel:?} must hold {spatial} sizes in [1, {MAX_GEOMETRY}]")));
    }
    let auto_pad = cx.string("auto_pad", "NOTSET")?;
    let lift = |v: &[i64], fill: i64| -> [u64; 2] {
        if spatial == 1 {
            [fill as u64, v[0] as u64]
        } else {
            [v[0] as u64, v[1] as u64]
        }
    };
    let inp: &[u64] = if spatial == 1 { &input[1..] } else { &input };
    for i in 0..spatial {
        let span = dilation[i] * (kernel[i] - 1) + 1;
        let (lo, hi) = axis_pads(cx, &auto_pad, inp[i] as i64, span, stride[i], (pads[i], pads[i + spatial]))?;
        pads[i] = lo;
        pads[i + spatial] = hi;
    }
    let (top, bottom) = if spatial == 1 { (0, 0) } else { (pads[0] as u64, pads[2] as u64) };
    let (left, right) = if spatial == 1 { (pads[0] as u64, pads[1] as u64) } else { (pads[1] as u64, pads[3] as u64) };
    Ok(Window { stride: lift(&stride, 1), dilation: lift(&dilation, 1), padding: [top, left, bottom, right] })
}

/// The spatial lengths of an NCL or NCHW input, lifted to 2-D, and how many there are.
fn spatial(imp: &Importer, cx: &NodeCx, x: NodeId) -> R<(usize, [u64; 2])> {
    match imp.rank(x) {
        3 => Ok((1, [1, imp.known_axes(cx, x, [2])?[0]])),
        4 => match imp.known_axes(cx, x, [2, 3])?[..] {
            [h, w] => Ok((2, [h, w])),
            _ => Err(cx.invalid("no spatial dims")),
        },
        r => Err(cx.unsupported(format!("`{}` on a rank-{r} input (Flint has 1-D and 2-D windows)", cx.op()))),
    }
}

/// An NCL tensor as NC1L.
fn lift_1d(imp: &mut Importer, cx: &NodeCx, x: NodeId) -> R<NodeId> {
    imp.unsqueeze(cx, x, &[2])
}

fn drop_1d(imp: &mut Importer, cx: &NodeCx, y: NodeId) -> R<NodeId> {
    let mut shape = imp.ty(y).shape;
    shape.remove(2);
    imp.reshape(cx, y, shape)
}

fn conv(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, w, b) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.opt_input(cx, 2)?);
    let (sp, input) = spatial(imp, cx, x)?;
    imp.need_rank(cx, w, sp + 2, "the weight")?;
    let kernel_dims: Option<Vec<i64>> = imp.ty(w).shape[2..].iter().map(|d| d.as_known().map(|v| v as i64)).collect();
    let kernel = cx.ints("kernel_shape")?.or(kernel_dims);
    let win = window(cx, sp, input, kernel)?;
    let groups = cx.geometry_int("group", 1, 1)? as u64;
    let (x, w) = if sp == 1 { (lift_1d(imp, cx, x)?, lift_1d(imp, cx, w)?) } else { (x, w) };
    let op = Op::Conv2d { stride: win.stride, padding: win.padding, dilation: win.dilation, groups };
    let operands: Vec<NodeId> = [Some(x), Some(w), b].into_iter().flatten().collect();
    let y = imp.add(cx, op, &operands, None)?;
    one(if sp == 1 { drop_1d(imp, cx, y)? } else { y })
}

/// `ConvTranspose` as a `conv2d`: the input spread out by the stride (zeros in between,
/// made by padding a size-1 axis and merging it), padded by `(k - 1) * d - pad` on each side
/// (plus `output_padding` at the end), convolved with the kernel flipped and its in/out
/// channels swapped within each group.
fn conv_transpose(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, w, b) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.opt_input(cx, 2)?);
    let (sp, input) = spatial(imp, cx, x)?;
    imp.need_rank(cx, w, sp + 2, "the weight")?;
    let (x, w) = if sp == 1 { (lift_1d(imp, cx, x)?, lift_1d(imp, cx, w)?) } else { (x, w) };
    let ws = super::movement::static_shape(imp, cx, w)?;
    let xs = imp.ty(x).shape;
    let g = cx.geometry_int("group", 1, 1)? as u64;
    let list = |name: &str, default: i64, len: usize| -> R<Vec<i64>> {
        let v = cx.geometry(name, default, len, default.min(1))?;
        // Lift 1-D lists to 2-D with a neutral height entry.
        Ok(if sp == 1 && len == 1 {
            vec![if matches!(name, "strides" | "dilations" | "output_shape") { 1 } else { 0 }, v[0]]
        } else {
            v
        })
    };
    let stride = list("strides", 1, sp)?;
    let dil = list("dilations", 1, sp)?;
    let out_pad = list("output_padding", 0, sp)?;
    let kernel = [ws[2] as i64, ws[3] as i64];
    let inp = [input[0] as i64, input[1] as i64];
    let natural = |i: usize| stride[i] * (inp[i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1;
    let auto_pad = cx.string("auto_pad", "NOTSET")?;
    let out_shape = match cx.ints("output_shape")? {
        Some(_) => Some(list("output_shape", 1, sp)?),
        None => None,
    };
    let (mut lo, mut hi) = ([0i64; 2], [0i64; 2]);
    match (auto_pad.as_str(), cx.ints("pads")?, out_shape) {
        ("NOTSET", Some(_), _) => {
            let p = cx.geometry("pads", 0, 2 * sp, 0)?;
            let p = if sp == 1 { vec![0, p[0], 0, p[1]] } else { p };
            (lo, hi) = ([p[0], p[1]], [p[2], p[3]]);
        }
        ("NOTSET", None, Some(o)) => hi = [natural(0) - o[0], natural(1) - o[1]],
        ("NOTSET" | "VALID", None, None) => {}
        ("SAME_UPPER" | "SAME_LOWER", _, o) => {
            for i in 0..2 {
                let out = o.as_ref().map_or(inp[i] * stride[i], |o| o[i]);
                let total = natural(i) - out;
                let small = total / 2;
                (lo[i], hi[i]) = if auto_pad == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
            }
        }
        (other, _, _) => return Err(cx.bad_attr("auto_pad", &format!("{other:?}"))),
    }
    // Spread: [N, C, H, W] -> [N, C, H, 1, W, 1] -> pad to [N, C, H, sh, W, sw] -> merge -> trim.
    let mut spread = x;
    if stride != [1, 1] {
        let one = Dim::known(1);
        let r =
            imp.reshape(cx, x, vec![xs[0].clone(), xs[1].clone(), xs[2].clone(), one.clone(), xs[3].clone(), one])?;
        let high = vec![0, 0, 0, stride[0] as u64 - 1, 0, stride[1] as u64 - 1];
        let p = imp.add(cx, Op::Pad { low: vec![0; 6], high, value: 0.0 }, &[r], None)?;
        let merged = [inp[0] * stride[0], inp[1] * stride[1]].map(|v| Dim::known(v as u64));
        let m = imp.reshape(cx, p, vec![xs[0].clone(), xs[1].clone(), merged[0].clone(), merged[1].clone()])?;
        let t = imp.slice(cx, m, 2, 0, ((inp[0] - 1) * stride[0] + 1) as u64, 1)?;
        spread = imp.slice(cx, t, 3, 0, ((inp[1] - 1) * stride[1] + 1) as u64, 1)?;
    }
    // Padding (k - 1) * d - pad, cropping where it is negative.
    let mut padding = [0u64; 4];
    for i in 0..2 {
        let before = (kernel[i] - 1) * dil[i] - lo[i];
        let after = (kernel[i] - 1) * dil[i] - hi[i] + out_pad[i];
        let len = imp.ty(spread).shape[2 + i].as_known().unwrap_or(0) as i64;
        let (start, end) = ((-before).max(0), len - (-after).max(0));
        if start >= end {
            return Err(cx.invalid("the padding removes the whole input"));
        }
        spread = imp.slice(cx, spread, 2 + i, start as u64, end as u64, 1)?;
        padding[i] = before.max(0) as u64;
        padding[i + 2] = after.max(0) as u64;
    }
    // Weight [C, M/g, kh, kw] -> [M, C/g, kh, kw], flipped.
    let (c, mg) = (ws[0], ws[1]);
    let d = |v: u64| Dim::known(v);
    let wg = imp.reshape(cx, w, vec![d(g), d(c / g), d(mg), d(ws[2]), d(ws[3])])?;
    let wp = imp.permute(cx, wg, vec![0, 2, 1, 3, 4])?;
    let wm = imp.reshape(cx, wp, vec![d(g * mg), d(c / g), d(ws[2]), d(ws[3])])?;
    let wf = imp.gather_const(cx, wm, 2, (0..ws[2] as i64).rev().collect())?;
    let wf = imp.gather_const(cx, wf, 3, (0..ws[3] as i64).rev().collect())?;
    let op = Op::Conv2d {
        stride: [1, 1],
        padding: [padding[0], padding[1], padding[2], padding[3]],
        dilation: [dil[0] as u64, dil[1] as u64],
        groups: g,
    };
    let operands: Vec<NodeId> = [Some(spread), Some(wf), b].into_iter().flatten().collect();
    let y = imp.add(cx, op, &operands, None)?;
    one(if sp == 1 { drop_1d(imp, cx, y)? } else { y })
}

/// `Col2Im`: the columns `[N, C*K, L]` (`K` kernel offsets, `L` blocks, both row-major) are
/// the `K` planes `[N, C, n1, ..., nr]` of block values; the plane of offset `k` lands in the
/// padded image at `k * dilation + block * stride`. Each plane is spread by the strides
/// (zeros between, as for `ConvTranspose`), padded to its place, the planes are summed and
/// the pads cropped away.
fn col2im(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    imp.need_rank(cx, x, 3, "the input")?;
    let image = imp.const_ints(cx, 1)?;
    let block = imp.const_ints(cx, 2)?;
    let r = image.len();
    let dil = cx.geometry("dilations", 1, r, 1)?;
    let pads = cx.geometry("pads", 0, 2 * r, 0)?;
    let stride = cx.geometry("strides", 1, r, 1)?;
    if block.len() != r || image.iter().chain(&block).any(|&v| !(1..=MAX_GEOMETRY).contains(&v)) {
        return Err(
            cx.invalid(format!("image_shape {image:?} and block_shape {block:?} must be positive and of one length"))
        );
    }
    let padded: Vec<i64> = (0..r).map(|i| image[i] + pads[i] + pads[r + i]).collect();
    let blocks: Vec<i64> =
        (0..r).map(|i| (padded[i] - dil[i] * (block[i] - 1) - 1).div_euclid(stride[i]) + 1).collect();
    let k: i64 = block.iter().product();
    let xs = imp.ty(x).shape;
    let known = imp.known_axes(cx, x, 1..3)?;
    let (ck, l) = (known[0], known[1]);
    if blocks.iter().any(|&b| b < 1) || l as i64 != blocks.iter().product::<i64>() || ck as i64 % k != 0 {
        return Err(cx.invalid(format!(
            "input {:?} does not hold {k} kernel offsets per channel and {blocks:?} blocks",
            [ck, l]
        )));
    }
    let d = |v: i64| Dim::known(v as u64);
    let n = xs[0].clone();
    // [N, C, K, n1, 1, n2, 1, ...], padded by stride - 1 after each block, merged, trimmed.
    let mut shape = vec![n.clone(), d(ck as i64 / k), d(k)];
    let mut high = vec![0, 0, 0];
    for i in 0..r {
        shape.extend([d(blocks[i]), d(1)]);
        high.extend([0, stride[i] as u64 - 1]);
    }
    let planes = imp.reshape(cx, x, shape)?;
    let planes = match stride.iter().all(|&s| s == 1) {
        true => planes,
        false => imp.add(cx, Op::Pad { low: vec![0; high.len()], high, value: 0.0 }, &[planes], None)?,
    };
    let mut spread = vec![n, d(ck as i64 / k), d(k)];
    spread.extend((0..r).map(|i| d(blocks[i] * stride[i])));
    let mut planes = imp.reshape(cx, planes, spread)?;
    let extent: Vec<i64> = (0..r).map(|i| (blocks[i] - 1) * stride[i] + 1).collect();
    for (i, &e) in extent.iter().enumerate() {
        planes = imp.slice(cx, planes, 3 + i, 0, e as u64, 1)?;
    }
    let mut sum = None;
    for offset in 0..k {
        let plane = imp.slice(cx, planes, 2, offset as u64, offset as u64 + 1, 1)?;
        let (mut low, mut high) = (vec![0; r + 3], vec![0; r + 3]);
        let mut rest = offset;
        for i in (0..r).rev() {
            let at = rest % block[i] * dil[i];
            rest /= block[i];
            low[3 + i] = at as u64;
            high[3 + i] = (padded[i] - at - extent[i]) as u64;
        }
        let placed = imp.add(cx, Op::Pad { low, high, value: 0.0 }, &[plane], None)?;
        sum = Some(match sum {
            Some(s) => imp.binary(cx, BinaryOp::Add, s, placed)?,
            None => placed,
        });
    }
    let sum = sum.expect("K >= 1");
    let mut shape = imp.ty(sum).shape;
    shape.remove(2);
    let mut y = imp.reshape(cx, sum, shape)?;
    for i in 0..r {
        y = imp.slice(cx, y, 2 + i, pads[i] as u64, (pads[i] + image[i]) as u64, 1)?;
    }
    one(y)
}

/// `DeformConv` (2-D), as ONNX's reference: each kernel tap samples the input bilinearly
/// (zero outside) at its regular position plus its offset group's learned offset, times the
/// optional mask; the samples of all taps are im2col columns `[N, oh·ow, C·kh·kw]`, and each
/// group is one `matmul` with its slice of the weight, plus the bias. The four neighbours of
/// every sample are read by one `gather` on the input seen as `[N·H·W, C]`.
fn deform_conv(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    use super::resize::{batch_rows, blend, combine_taps, pixel_rows, sample_taps, Padding};
    use BinaryOp::*;
    let (x, w, off) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    let (bias, mask) = (imp.opt_input(cx, 3)?, imp.opt_input(cx, 4)?);
    if imp.rank(x) != 4 {
        return Err(cx.unsupported(format!("`DeformConv` on a rank-{} input (Flint has the 2-D form)", imp.rank(x))));
    }
    imp.need_rank(cx, off, 4, "the offset")?;
    let ws = super::movement::static_shape(imp, cx, w)?;
    let xs = imp.ty(x).shape;
    let (xk, ok) = (imp.known_axes(cx, x, 1..4)?, imp.known_axes(cx, off, 1..4)?);
    let (c, h, wd, off_c, oh, ow) = (xk[0], xk[1], xk[2], ok[0], ok[1], ok[2]);
    let [oc, cg, kh, kw] = ws[..] else { return Err(cx.invalid("the weight must be [M, C/group, kh, kw]")) };
    let (group, og) = (cx.geometry_int("group", 1, 1)? as u64, cx.geometry_int("offset_group", 1, 1)? as u64);
    let list = |name: &str, default: i64, len: usize| -> R<Vec<u64>> {
        Ok(cx.geometry(name, default, len, default)?.into_iter().map(|e| e as u64).collect())
    };
    let (stride, dil, pads) = (list("strides", 1, 2)?, list("dilations", 1, 2)?, list("pads", 0, 4)?);
    let kernel = [kh, kw];
    let fits = |i: usize, n: u64, out: u64| {
        (n + pads[i] + pads[i + 2]).checked_sub(dil[i] * (kernel[i] - 1) + 1).map(|v| v / stride[i] + 1) == Some(out)
    };
    if c != cg * group || oc % group != 0 || c % og != 0 {
        return Err(
            cx.invalid(format!("{c} channels do not fit the weight {ws:?}, group {group} and offset_group {og}"))
        );
    }
    if off_c != og * kh * kw * 2 || !fits(0, h, oh) || !fits(1, wd, ow) {
        return Err(cx.invalid("the offset's shape does not fit the kernel, pads, strides and dilations"));
    }
    if cx.ints("kernel_shape")?.is_some_and(|k| k != [kh as i64, kw as i64]) {
        return Err(cx.invalid("`kernel_shape` differs from the weight's"));
    }
    let n = xs[0].clone();
    let d = Dim::known;
    let grid = |imp: &mut Importer, v: NodeId, shape: Vec<u64>| -> R<NodeId> {
        let mut s = vec![n.clone()];
        s.extend(shape.into_iter().map(d));
        imp.reshape(cx, v, s)
    };
    let off = imp.cast(cx, off, DType::F32)?;
    let off = grid(imp, off, vec![og, kh, kw, 2, oh, ow])?;
    let mask = match mask {
        Some(m) => Some(grid(imp, m, vec![og, kh, kw, oh, ow])?),
        None => None,
    };
    let rows = pixel_rows(imp, cx, x)?;
    let base = batch_rows(imp, cx, vec![n.clone(), d(1), d(1)], h * wd)?;
    // The regular position of output (i, j) along an axis: -pad + stride * i + tap * dilation.
    let regular = |imp: &mut Importer, axis: usize, tap: u64, out: u64| -> R<NodeId> {
        let v: Vec<f64> = (0..out).map(|i| (stride[axis] * i + tap * dil[axis]) as f64 - pads[axis] as f64).collect();
        let mut shape = [1, 1, 1];
        shape[axis + 1] = out as usize; // [1, oh, 1] or [1, 1, ow]
        let t = crate::interp::Tensor::from_f64(DType::F32, &shape, v).map_err(|e| cx.invalid(e.to_string()))?;
        imp.tensor(cx, "deform_positions", &t)
    };
    // `v[:, idx...]` as [N, oh, ow].
    let pick = |imp: &mut Importer, v: NodeId, idx: &[u64]| -> R<NodeId> {
        let mut v = v;
        for (k, &i) in idx.iter().enumerate() {
            v = imp.slice(cx, v, k + 1, i, i + 1, 1)?;
        }
        imp.reshape(cx, v, vec![n.clone(), d(oh), d(ow)])
    };
    let cpo = c / og;
    let mut columns = vec![];
    for a in 0..kh {
        for b in 0..kw {
            let (ry, rx) = (regular(imp, 0, a, oh)?, regular(imp, 1, b, ow)?);
            let mut sampled = vec![];
            for o in 0..og {
                let dy = pick(imp, off, &[o, a, b, 0])?;
                let dx = pick(imp, off, &[o, a, b, 1])?;
                let y = imp.binary(cx, Add, dy, ry)?;
                let xq = imp.binary(cx, Add, dx, rx)?;
                let axes = [
                    (sample_taps(imp, cx, y, 2, Padding::Zeros, h, (0.0, h as f64 - 1.0))?, wd),
                    (sample_taps(imp, cx, xq, 2, Padding::Zeros, wd, (0.0, wd as f64 - 1.0))?, 1),
                ];
                let (flat, mut weight) = combine_taps(imp, cx, &axes, base)?; // [N, oh, ow, 4]
                if let Some(m) = mask {
                    let m = pick(imp, m, &[o, a, b])?;
                    let m = imp.unsqueeze(cx, m, &[3])?;
                    let m = imp.cast(cx, m, DType::F32)?;
                    weight = imp.binary(cx, Mul, weight, m)?;
                }
                let channels = imp.slice(cx, rows, 1, o * cpo, (o + 1) * cpo, 1)?;
                sampled.push(blend(imp, cx, channels, flat, weight, ReduceOp::Sum)?);
                // [N, oh, ow, C/og]
            }
            let tap = imp.concat(cx, &sampled, 3)?; // [N, oh, ow, C]
            columns.push(imp.unsqueeze(cx, tap, &[4])?);
        }
    }
    let k = kh * kw;
    let cols = imp.concat(cx, &columns, 4)?; // [N, oh, ow, C, K]
    let cols = imp.reshape(cx, cols, vec![n.clone(), d(oh * ow), d(c * k)])?;
    let wm = imp.reshape(cx, w, vec![d(oc), d(cg * k)])?;
    let ocg = oc / group;
    let mut outs = vec![];
    for g in 0..group {
        let cols_g = imp.slice(cx, cols, 2, g * cg * k, (g + 1) * cg * k, 1)?;
        let w_g = imp.slice(cx, wm, 0, g * ocg, (g + 1) * ocg, 1)?;
        let w_g = imp.transpose(cx, w_g)?;
        outs.push(matmul_nd(imp, cx, cols_g, w_g)?);
    }
    let mut y = imp.concat(cx, &outs, 2)?; // [N, oh*ow, M]
    if let Some(bias) = bias {
        y = imp.binary(cx, Add, y, bias)?;
    }
    let y = imp.reshape(cx, y, vec![n, d(oh), d(ow), d(oc)])?;
    one(imp.permute(cx, y, vec![0, 3, 1, 2])?)
}

/// One spatial axis of a pool, as ONNX's reference lays it out: the input padded by `lo`
/// and `hi` (the declared pads, plus the room `ceil_mode` needs, split as the reference
/// splits it), windows at `i * stride`, and only padded positions `p < bound` (input plus
/// declared pads) taking part.
struct PoolAxis {
    n: u64,
    k: u64,
    s: u64,
    d: u64,
    out: u64,
    lo: u64,
    hi: u64,
    /// Declared pads.
    pb: u64,
    pe: u64,
}

impl PoolAxis {
    fn extra(&self) -> u64 {
        self.lo + self.hi - self.pb - self.pe
    }
}

fn pool_geometry(cx: &NodeCx, input: &[u64]) -> R<Vec<PoolAxis>> {
    let sp = input.len();
    cx.require("kernel_shape")?;
    let kernel = cx.geometry("kernel_shape", 1, sp, 1)?;
    let (stride, dilation) = (cx.geometry("strides", 1, sp, 1)?, cx.geometry("dilations", 1, sp, 1)?);
    let pads = cx.geometry("pads", 0, 2 * sp, 0)?;
    let ceil_mode = cx.int("ceil_mode", 0)? != 0;
    let auto_pad = cx.string("auto_pad", "NOTSET")?;
    (0..sp)
        .map(|i| {
            let (n, k, s, d) = (input[i] as i64, kernel[i], stride[i], dilation[i]);
            let span = d * (k - 1) + 1;
            let (pb, pe) = axis_pads(cx, &auto_pad, n, span, s, (pads[i], pads[i + sp]))?;
            let padded = n + pb + pe - span;
            if padded < 0 {
                return Err(cx.invalid("the window is larger than the padded input"));
            }
            let mut out = if ceil_mode && auto_pad == "NOTSET" { (padded + s - 1) / s + 1 } else { padded / s + 1 };
            if ceil_mode && auto_pad == "NOTSET" && (out - 1) * s >= n + pb {
                out -= 1;
            }
            let extra = ((out - 1) * s + span - n - pb - pe).max(0);
            let u = |v: i64| v as u64;
            Ok(PoolAxis {
                n: u(n),
                k: u(k),
                s: u(s),
                d: u(d),
                out: u(out),
                lo: u(pb + extra / 2),
                hi: u(pe + extra - extra / 2),
                pb: u(pb),
                pe: u(pe),
            })
        })
        .collect()
}

fn pool(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    if imp.rank(x) < 3 {
        return Err(cx.invalid("the input must have rank >= 3"));
    }
    // The batch and channels may be symbolic; the windows need the spatial sizes.
    let spatial = imp.known_axes(cx, x, 2..imp.rank(x))?;
    let geo = pool_geometry(cx, &spatial)?;
    let include = cx.op() == "LpPool" || cx.int("count_include_pad", 0)? != 0;
    // Flint's pool: 1-D or 2-D, no dilation, and the ceil-mode room (at most one element,
    // at the end, where the reference puts it) not counted as padding.
    let native = geo.len() <= 2
        && geo
            .iter()
            .all(|g| g.d == 1 && (g.extra() == 0 || (g.extra() == 1 && !(include && cx.op() == "AveragePool"))));
    if !native || cx.wants(1) {
        let (y, indices) = pool_by_slices(imp, cx, x, &geo, include)?;
        return Ok([Some(y), indices].into_iter().flatten().map(Value::Node).collect());
    }
    let lifted = geo.len() == 1;
    let x = if lifted { lift_1d(imp, cx, x)? } else { x };
    let g2: Vec<&PoolAxis> = geo.iter().collect();
    let (kernel, stride, padding) = if lifted {
        ([1, g2[0].k], [1, g2[0].s], [0, g2[0].lo, 0, g2[0].hi])
    } else {
        ([g2[0].k, g2[1].k], [g2[0].s, g2[1].s], [g2[0].lo, g2[1].lo, g2[0].hi, g2[1].hi])
    };
    let y = match cx.op() {
        "MaxPool" => {
            let op = Op::Pool2d { kind: PoolKind::Max, kernel, stride, padding, count_include_pad: false };
            imp.add(cx, op, &[x], None)?
        }
        "AveragePool" => {
            let op = Op::Pool2d { kind: PoolKind::Avg, kernel, stride, padding, count_include_pad: include };
            imp.add(cx, op, &[x], None)?
        }
        // lp_pool = (sum over the window of |x|^p)^(1/p) = (k * avg_pool(|x|^p, with padding))^(1/p)
        _ => {
            let p = cx.int("p", 2)? as f64;
            let a = imp.unary(cx, UnaryOp::Abs, x)?;
            let ap = imp.binary_scalar(cx, BinaryOp::Pow, a, p)?;
            let op = Op::Pool2d { kind: PoolKind::Avg, kernel, stride, padding, count_include_pad: true };
            let avg = imp.add(cx, op, &[ap], None)?;
            let sum = imp.binary_scalar(cx, BinaryOp::Mul, avg, (kernel[0] * kernel[1]) as f64)?;
            imp.binary_scalar(cx, BinaryOp::Pow, sum, 1.0 / p)?
        }
    };
    one(if lifted { drop_1d(imp, cx, y)? } else { y })
}

/// Any pool as the reduction of `prod(kernel)` strided slices of the padded input, one per
/// kernel offset: any number of spatial axes, dilation, and the reference's ceil-mode layout.
/// Which padded positions count is a mask built from `iota`. For `MaxPool`'s `Indices`
/// output, the flat input index of every padded position is sliced the same way and kept
/// where an offset's value is strictly greater (the first maximum in window order wins).
fn pool_by_slices(
    imp: &mut Importer,
    cx: &NodeCx,
    x: NodeId,
    geo: &[PoolAxis],
    include: bool,
) -> R<(NodeId, Option<NodeId>)> {
    let dtype = imp.dtype(x);
    if !dtype.is_float() {
        return Err(cx.invalid("pools take floats"));
    }
    let r = 2 + geo.len();
    let (mut low, mut high) = (vec![0u64; r], vec![0u64; r]);
    for (i, g) in geo.iter().enumerate() {
        (low[i + 2], high[i + 2]) = (g.lo, g.hi);
    }
    let max = cx.op() == "MaxPool";
    let padded = if low.iter().chain(&high).any(|&p| p > 0) {
        imp.add(cx, Op::Pad { low: low.clone(), high: high.clone(), value: 0.0 }, &[x], None)?
    } else {
        x
    };
    // valid[p] = p < n + pb + pe, and (unless padding counts) p is an input element.
    let mut mask_shape = vec![Dim::known(1); r];
    for (i, g) in geo.iter().enumerate() {
        mask_shape[i + 2] = Dim::known(g.lo + g.n + g.hi);
    }
    let mut valid: Option<NodeId> = None;
    for (i, g) in geo.iter().enumerate() {
        let p = imp.iota(cx, mask_shape.clone(), i + 2, DType::I64)?;
        let mut ok = imp.compare_scalar(cx, CompareOp::Lt, p, (g.n + g.pb + g.pe) as f64)?;
        if !include || max {
            let a = imp.compare_scalar(cx, CompareOp::Ge, p, g.lo as f64)?;
            let b = imp.compare_scalar(cx, CompareOp::Lt, p, (g.lo + g.n) as f64)?;
            let inside = imp.binary(cx, BinaryOp::And, a, b)?;
            ok = imp.binary(cx, BinaryOp::And, ok, inside)?;
        }
        valid = Some(match valid {
            Some(v) => imp.binary(cx, BinaryOp::And, v, ok)?,
            None => ok,
        });
    }
    let valid = valid.ok_or_else(|| cx.invalid("no spatial axis"))?;
    let p = cx.int("p", 2)? as f64;
    let source = match cx.op() {
        "MaxPool" => {
            let ninf = imp.scalar(dtype, f64::NEG_INFINITY);
            imp.select(cx, valid, padded, ninf)?
        }
        "LpPool" => {
            let a = imp.unary(cx, UnaryOp::Abs, padded)?;
            let ap = imp.binary_scalar(cx, BinaryOp::Pow, a, p)?;
            let zero = imp.scalar(dtype, 0.0);
            imp.select(cx, valid, ap, zero)?
        }
        _ => {
            let zero = imp.scalar(dtype, 0.0);
            imp.select(cx, valid, padded, zero)?
        }
    };
    let counts = imp.cast(cx, valid, dtype)?;
    let positions = if max && cx.wants(1) { Some(flat_positions(imp, cx, padded, geo)?) } else { None };
    let offsets: u64 = geo.iter().map(|g| g.k).product();
    let (mut acc, mut count, mut argmax): (Option<NodeId>, Option<NodeId>, Option<NodeId>) = (None, None, None);
    for flat in 0..offsets {
        let (mut v, mut c, mut ix, mut rest) = (source, counts, positions, flat);
        for (i, g) in geo.iter().enumerate().rev() {
            let o = rest % g.k;
            rest /= g.k;
            let start = o * g.d;
            let end = start + (g.out - 1) * g.s + 1;
            v = imp.slice(cx, v, i + 2, start, end, g.s)?;
            if !max {
                c = imp.slice(cx, c, i + 2, start, end, g.s)?;
            }
            if let Some(p) = ix {
                ix = Some(imp.slice(cx, p, i + 2, start, end, g.s)?);
            }
        }
        if let (Some(a), Some(best), Some(ix)) = (acc, argmax, ix) {
            let greater = imp.compare(cx, CompareOp::Gt, v, a)?;
            argmax = Some(imp.select(cx, greater, ix, best)?);
        } else {
            argmax = ix;
        }
        let op = if max { BinaryOp::Maximum } else { BinaryOp::Add };
        acc = Some(match acc {
            Some(a) => imp.binary(cx, op, a, v)?,
            None => v,
        });
        if !max {
            count = Some(match count {
                Some(a) => imp.binary(cx, BinaryOp::Add, a, c)?,
                None => c,
            });
        }
    }
    let acc = acc.ok_or_else(|| cx.invalid("an empty kernel"))?;
    let y = match (cx.op(), count) {
        ("AveragePool", Some(c)) => imp.binary(cx, BinaryOp::Div, acc, c)?,
        ("LpPool", _) => imp.binary_scalar(cx, BinaryOp::Pow, acc, 1.0 / p)?,
        _ => acc,
    };
    Ok((y, argmax))
}

/// The flat index into the input `[N, C, n1, ...]` of every position of its padded copy
/// (`padded`): `(n C + c) n1 n2 ... + spatial`, the spatial part row-major, or column-major
/// with `storage_order = 1`, as `MaxPool`'s `Indices` counts.
fn flat_positions(imp: &mut Importer, cx: &NodeCx, padded: NodeId, geo: &[PoolAxis]) -> R<NodeId> {
    let shape = imp.ty(padded).shape;
    let channels = imp.known_axes(cx, padded, [1])?[0];
    let plane: u64 = geo.iter().map(|g| g.n).product();
    let column_major = match cx.int("storage_order", 0)? {
        0 => false,
        1 => true,
        s => return Err(cx.refuse_int("storage_order", s)),
    };
    let mut terms = vec![(0, (channels * plane) as f64, 0.0), (1, plane as f64, 0.0)];
    for (i, g) in geo.iter().enumerate() {
        let later: u64 = if column_major { geo[..i].iter() } else { geo[i + 1..].iter() }.map(|g| g.n).product();
        terms.push((i + 2, later as f64, g.lo as f64));
    }
    let mut sum: Option<NodeId> = None;
    for (axis, stride, offset) in terms {
        let p = imp.iota(cx, shape.clone(), axis, DType::I64)?;
        let p = if offset > 0.0 { imp.binary_scalar(cx, BinaryOp::Sub, p, offset)? } else { p };
        let t = imp.binary_scalar(cx, BinaryOp::Mul, p, stride)?;
        sum = Some(match sum {
            Some(s) => imp.binary(cx, BinaryOp::Add, s, t)?,
            None => t,
        });
    }
    sum.ok_or_else(|| cx.invalid("no axes"))
}

fn global_pool(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let op = if cx.op() == "GlobalMaxPool" { ReduceOp::Max } else { ReduceOp::Mean };
    let axes = (2..imp.rank(x)).collect();
    one(imp.reduce(cx, op, x, axes, true)?)
}

/// A per-channel vector `[C]` reshaped to `[C, 1, ...]` to broadcast against NC... data.
fn per_channel(imp: &mut Importer, cx: &NodeCx, v: NodeId, rank: usize) -> R<NodeId> {
    let mut shape = imp.ty(v).shape;
    shape.extend((2..rank).map(|_| Dim::known(1)));
    imp.reshape(cx, v, shape)
}

/// `(x - mean) * rsqrt(var + eps)`, with the mean and (biased) variance over `axes`.
fn normalize(imp: &mut Importer, cx: &NodeCx, x: NodeId, axes: Vec<usize>, eps: f64) -> R<NodeId> {
    let mu = imp.reduce(cx, ReduceOp::Mean, x, axes.clone(), true)?;
    let d = imp.binary(cx, BinaryOp::Sub, x, mu)?;
    let sq = imp.binary(cx, BinaryOp::Mul, d, d)?;
    let var = imp.reduce(cx, ReduceOp::Mean, sq, axes, true)?;
    let ve = imp.binary_scalar(cx, BinaryOp::Add, var, eps)?;
    let r = imp.unary(cx, UnaryOp::Rsqrt, ve)?;
    imp.binary(cx, BinaryOp::Mul, d, r)
}

/// `y * scale + bias`, both per channel.
fn scale_shift(imp: &mut Importer, cx: &NodeCx, y: NodeId, scale: NodeId, bias: NodeId) -> R<NodeId> {
    let r = imp.rank(y);
    let s = per_channel(imp, cx, scale, r)?;
    let b = per_channel(imp, cx, bias, r)?;
    let ys = imp.binary(cx, BinaryOp::Mul, y, s)?;
    imp.binary(cx, BinaryOp::Add, ys, b)
}

/// Inference-mode batch norm: `(x - mean) / sqrt(var + eps) * scale + bias` per channel.
///
/// In training mode (opset 14+) the statistics are the batch's (biased variance, over every
/// axis but the channels), and the running statistics are updated with `momentum`.
fn batch_norm(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    if cx.int("spatial", 1)? != 1 {
        return Err(cx.bad_attr("spatial", "0"));
    }
    let x = imp.input(cx, 0)?;
    let [scale, bias, mean, var] = [1, 2, 3, 4].map(|i| imp.input(cx, i));
    let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
    let r = imp.rank(x);
    let eps = cx.float("epsilon", 1e-5)? as f64;
    let mut extra = Vec::new();
    let (m, v) = if cx.int("training_mode", 0)? != 0 {
        let axes: Vec<usize> = (0..r).filter(|&a| a != 1).collect();
        let bm = imp.reduce(cx, ReduceOp::Mean, x, axes.clone(), true)?;
        let d = imp.binary(cx, BinaryOp::Sub, x, bm)?;
        let sq = imp.binary(cx, BinaryOp::Mul, d, d)?;
        let bv = imp.reduce(cx, ReduceOp::Mean, sq, axes, true)?;
        let momentum = cx.float("momentum", 0.9)? as f64;
        for (running, batch) in [(mean, bm), (var, bv)] {
            let flat = imp.reshape(cx, batch, imp.ty(running).shape)?;
            let a = imp.binary_scalar(cx, BinaryOp::Mul, running, momentum)?;
            let b = imp.binary_scalar(cx, BinaryOp::Mul, flat, 1.0 - momentum)?;
            extra.push(Value::Node(imp.binary(cx, BinaryOp::Add, a, b)?));
        }
        (bm, bv)
    } else {
        (per_channel(imp, cx, mean, r)?, per_channel(imp, cx, var, r)?)
    };
    let d = imp.binary(cx, BinaryOp::Sub, x, m)?;
    let ve = imp.binary_scalar(cx, BinaryOp::Add, v, eps)?;
    let s = imp.unary(cx, UnaryOp::Sqrt, ve)?;
    let y = imp.binary(cx, BinaryOp::Div, d, s)?;
    let mut out = vec![Value::Node(scale_shift(imp, cx, y, scale, bias)?)];
    out.extend(extra);
    Ok(out)
}

fn instance_norm(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, scale, bias) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    let axes = (2..imp.rank(x)).collect();
    let y = normalize(imp, cx, x, axes, cx.float("epsilon", 1e-5)? as f64)?;
    one(scale_shift(imp, cx, y, scale, bias)?)
}

/// Group norm: the channels split into `num_groups` groups, each normalised over its
/// channels and the spatial axes. The scale and bias are per channel (opset 21) or per
/// group (opset 18).
fn group_norm(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, scale, bias) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    let g = cx.opt_int("num_groups")?.ok_or_else(|| cx.invalid("`num_groups` is required"))?;
    let shape = imp.ty(x).shape;
    let (g, rank) = (Dim::known(g as u64), shape.len());
    if rank < 2 {
        return Err(cx.invalid("the input must have rank >= 2"));
    }
    let per_group = shape[1].div(&g).ok_or_else(|| cx.invalid("`num_groups` does not divide the channels"))?;
    let mut grouped = vec![shape[0].clone(), g.clone(), per_group.clone()];
    grouped.extend(shape[2..].iter().cloned());
    let xg = imp.reshape(cx, x, grouped)?;
    let axes = (2..rank + 1).collect();
    let yg = normalize(imp, cx, xg, axes, cx.float("epsilon", 1e-5)? as f64)?;
    let (scale, bias) = if imp.ty(scale).shape == [g.clone()] && (imp.opset < 21 || g != shape[1]) {
        // Per group: repeat each value over the group's channels.
        let rep = |imp: &mut Importer, v: NodeId| -> R<NodeId> {
            let col = imp.reshape(cx, v, vec![g.clone(), Dim::known(1)])?;
            let b = imp.broadcast(cx, col, vec![g.clone(), per_group.clone()])?;
            imp.reshape(cx, b, vec![shape[1].clone()])
        };
        (rep(imp, scale)?, rep(imp, bias)?)
    } else {
        (scale, bias)
    };
    let y = imp.reshape(cx, yg, shape)?;
    one(scale_shift(imp, cx, y, scale, bias)?)
}

/// `x / ||x||_p` along `axis` (p = 1 or 2).
fn lp_norm(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let a = axis(cx, cx.int("axis", -1)?, imp.rank(x))?;
    let norm = match cx.int("p", 2)? {
        1 => {
            let abs = imp.unary(cx, UnaryOp::Abs, x)?;
            imp.reduce(cx, ReduceOp::Sum, abs, vec![a], true)?
        }
        2 => {
            let sq = imp.binary(cx, BinaryOp::Mul, x, x)?;
            let s = imp.reduce(cx, ReduceOp::Sum, sq, vec![a], true)?;
            imp.unary(cx, UnaryOp::Sqrt, s)?
        }
        p => return Err(cx.refuse_int("p", p)),
    };
    // A zero norm gives 0, not 0/0, as ONNX's reference does.
    let y = imp.binary(cx, BinaryOp::Div, x, norm)?;
    let zero = imp.compare_scalar(cx, CompareOp::Eq, norm, 0.0)?;
    let z = imp.scalar(imp.dtype(x), 0.0);
    one(imp.select(cx, zero, z, y)?)
}

/// `(x - mean) / sqrt(mean(x^2) - mean^2)` over `axes` (default N, H, W), as ONNX's function
/// body computes it.
fn mvn(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let raw = cx.ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]);
    let ax = axes(cx, &raw, imp.rank(x))?;
    let mu = imp.reduce(cx, ReduceOp::Mean, x, ax.clone(), true)?;
    let sq = imp.binary(cx, BinaryOp::Mul, x, x)?;
    let msq = imp.reduce(cx, ReduceOp::Mean, sq, ax, true)?;
    let mu2 = imp.binary(cx, BinaryOp::Mul, mu, mu)?;
    let var = imp.binary(cx, BinaryOp::Sub, msq, mu2)?;
    let sd = imp.unary(cx, UnaryOp::Sqrt, var)?;
    let d = imp.binary(cx, BinaryOp::Sub, x, mu)?;
    one(imp.binary(cx, BinaryOp::Div, d, sd)?)
}

/// Local response normalisation across channels: `x / (bias + alpha / size * S)^beta`, with
/// `S` the sum of squares over the channel window `[c - (size-1)/2, c + ceil((size-1)/2)]`,
/// computed as a zero-padded average pool over the channel axis times `size`.
fn lrn(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let shape = imp.ty(x).shape;
    if shape.len() < 3 {
        return Err(cx.invalid("the input must have rank >= 3"));
    }
    let size = cx.opt_int("size")?.filter(|&s| s > 0).ok_or_else(|| cx.invalid("`size` must be positive"))? as u64;
    let (alpha, beta, bias) =
        (cx.float("alpha", 1e-4)? as f64, cx.float("beta", 0.75)? as f64, cx.float("bias", 1.0)? as f64);
    let sq = imp.binary(cx, BinaryOp::Mul, x, x)?;
    let rest = numel(&shape[2..]);
    let col = imp.reshape(cx, sq, vec![shape[0].clone(), Dim::known(1), shape[1].clone(), rest])?;
    let (before, after) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let op = Op::Pool2d {
        kind: PoolKind::Avg,
        kernel: [size, 1],
        stride: [1, 1],
        padding: [before, 0, after, 0],
        count_include_pad: true,
    };
    let avg = imp.add(cx, op, &[col], None)?;
    let avg = imp.reshape(cx, avg, shape)?;
    // bias + alpha / size * (size * avg) = bias + alpha * avg
    let scaled = imp.binary_scalar(cx, BinaryOp::Mul, avg, alpha)?;
    let base = imp.binary_scalar(cx, BinaryOp::Add, scaled, bias)?;
    let den = imp.binary_scalar(cx, BinaryOp::Pow, base, beta)?;
    one(imp.binary(cx, BinaryOp::Div, x, den)?)
}
