//! Ops that compute shapes and constants at import time: `Shape`, `Size`, `Constant`,
//! `ConstantOfShape`, `Range`, `EyeLike`; and shape arithmetic on dims vectors
//! ([`dims_rule`]), which keeps a symbolic shape symbolic through `Gather`, `Concat`,
//! `Slice`, `Unsqueeze`, `Mul`, ... so that a later `Reshape` still reads it at import time.

use super::build::{constant_len, one};
use super::movement::{range_indices, slice_range, splat};
use super::{entry, DimOrInt, Entry, Importer, NodeCx, Value};
use crate::interp::Tensor;
use crate::ir::infer::numel;
use crate::ir::*;
use crate::onnx::{tensor, OnnxError};

type R<T> = Result<T, OnnxError>;

pub(crate) const OPS: &[(&str, Entry)] = &[
    ("Shape", entry(shape, &["start", "end"])),
    ("Size", entry(size, &[])),
    (
        "Constant",
        entry(
            constant,
            &[
                "value",
                "value_float",
                "value_floats",
                "value_int",
                "value_ints",
                "sparse_value",
                "value_string",
                "value_strings",
            ],
        ),
    ),
    ("ConstantOfShape", entry(constant_of_shape, &["value"])),
    ("Range", entry(range, &[])),
    ("EyeLike", entry(eye_like, &["dtype", "k"])),
    ("HannWindow", entry(window, &["output_datatype", "periodic"])),
    ("HammingWindow", entry(window, &["output_datatype", "periodic"])),
    ("BlackmanWindow", entry(window, &["output_datatype", "periodic"])),
    ("MelWeightMatrix", entry(mel_weight_matrix, &["output_datatype"])),
];

fn shape(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let dims = imp.type_of(cx.value(0)?).shape;
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(cx.int("start", 0)?);
    let end = clamp(cx.int("end", r)?);
    let items = dims[start..end.max(start)].iter().cloned().map(DimOrInt::Dim).collect();
    Ok(vec![Value::dims(in_int64(imp, cx, items)?, false)])
}

fn size(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let n = numel(&imp.type_of(cx.value(0)?).shape);
    Ok(vec![Value::dims(in_int64(imp, cx, vec![DimOrInt::Dim(n)])?, true)])
}

/// A shape value as ONNX holds it, in int64: an entry that may exceed `i64::MAX` with its
/// symbols at their bounds (shape arithmetic that overflows; a monomial's coefficient
/// saturates rather than wraps) is refused, so no later op reads a wrapped size.
fn in_int64(imp: &Importer, cx: &NodeCx, items: Vec<DimOrInt>) -> R<Vec<DimOrInt>> {
    let symbols = &imp.graph.symbols;
    let bound = |s: SymId| symbols.get(s.0 as usize).map_or(u64::MAX, |s| s.bound);
    if let Some(DimOrInt::Dim(d)) =
        items.iter().find(|e| matches!(e, DimOrInt::Dim(d) if d.eval(bound) > i64::MAX as u64))
    {
        let d = d.display(symbols);
        return Err(cx.invalid(format!("shape arithmetic gives `{d}`, which overflows int64 at the dims' bounds")));
    }
    Ok(items)
}

fn constant(_: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let t = if let Some(t) = cx.tensor_attr("value")? {
        t
    } else if let Some(v) = cx.opt_float("value_float")? {
        Tensor::from_f64(DType::F32, &[], vec![v as f64]).map_err(|e| cx.invalid(e.to_string()))?
    } else if let Some(v) = cx.floats("value_floats")? {
        Tensor::from_f64(DType::F32, &[v.len()], v.iter().map(|&x| x as f64).collect())
            .map_err(|e| cx.invalid(e.to_string()))?
    } else if let Some(v) = cx.opt_int("value_int")? {
        Tensor::from_i64(DType::I64, &[], vec![v]).map_err(|e| cx.invalid(e.to_string()))?
    } else if let Some(v) = cx.ints("value_ints")? {
        Tensor::from_i64(DType::I64, &[v.len()], v).map_err(|e| cx.invalid(e.to_string()))?
    } else if let Some(a) = ["sparse_value", "value_string", "value_strings"].into_iter().find(|a| cx.attr(a).is_some())
    {
        return Err(cx.bad_attr(a, "<given>"));
    } else {
        return Err(cx.invalid("no value attribute"));
    };
    Ok(vec![Value::constant(t)])
}

fn constant_of_shape(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (dtype, value) = match cx.tensor_attr("value")? {
        Some(t) => (t.dtype, t.to_f64_vec().first().copied().unwrap_or(0.0)),
        None => (DType::F32, 0.0),
    };
    let spec = imp.const_dims(cx, 0)?;
    let shape: Shape = spec
        .iter()
        .map(|e| e.as_dim().ok_or_else(|| cx.invalid(format!("invalid shape entry {e:?}"))))
        .collect::<R<_>>()?;
    let concrete = shape.iter().map(|d| d.as_known().map(|v| v as usize)).collect::<Option<Vec<usize>>>();
    // A fill too large to hold as a constant stays a run-time broadcast.
    if let Some(concrete) = concrete.filter(|c| constant_len(cx, c.iter().map(|&d| d as u64)).is_ok()) {
        return Ok(vec![Value::constant(splat(cx, dtype, &concrete, value)?)]);
    }
    let s = imp.scalar(dtype, value);
    one(imp.broadcast(cx, s, shape)?)
}

/// `range(start, limit, delta)`: `max(ceil((limit - start) / delta), 0)` elements.
fn range(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let dtype = imp.dtype_of(cx, 0)?;
    let (start, limit, delta) = (imp.const_scalar(cx, 0)?, imp.const_scalar(cx, 1)?, imp.const_scalar(cx, 2)?);
    if delta == 0.0 {
        return Err(cx.invalid("`delta` is 0"));
    }
    let n = constant_len(cx, [((limit - start) / delta).ceil().max(0.0) as u64])?;
    let t = match dtype {
        d if d.is_int() => {
            let (s, dl) = (start as i64, delta as i64);
            Tensor::from_i64(d, &[n], (0..n as i64).map(|i| s + i * dl).collect())
        }
        // The reference adds `delta` repeatedly in the output's dtype; one multiply-add per
        // element agrees with it to within rounding.
        d => Tensor::from_f64(d, &[n], (0..n).map(|i| start + i as f64 * delta).collect()),
    };
    Ok(vec![Value::constant(t.map_err(|e| cx.invalid(e.to_string()))?)])
}

fn eye_like(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let ty = imp.type_of(cx.value(0)?);
    let dtype = match cx.opt_int("dtype")? {
        Some(code) => tensor::dtype(code as i32, &|| format!("{}: attribute `dtype`", cx.node_ref()))?,
        None => ty.dtype,
    };
    let [m, n] = ty.shape.as_slice() else { return Err(cx.invalid("the input must have rank 2")) };
    let (Some(m), Some(n)) = (m.as_known(), n.as_known()) else {
        return Err(cx.unsupported("`EyeLike` of a symbolic shape"));
    };
    let k = cx.int("k", 0)?;
    let mut t = splat(cx, dtype, &[m as usize, n as usize], 0.0)?;
    let ones = (0..m as i64).filter_map(|i| {
        let j = u64::try_from(i.checked_add(k)?).ok().filter(|&j| j < n)?;
        Some(i as u64 * n + j)
    });
    let ones: Vec<u64> = ones.collect();
    let mut values = t.to_f64_vec();
    for i in ones {
        values[i as usize] = 1.0;
    }
    t = match dtype {
        d if d.is_float() => Tensor::from_f64(d, t.shape(), values),
        d if d.is_int() => Tensor::from_i64(d, t.shape(), values.into_iter().map(|v| v as i64).collect()),
        _ => Tensor::from_bool(t.shape(), values.into_iter().map(|v| v != 0.0).collect()),
    }
    .map_err(|e| cx.invalid(e.to_string()))?;
    Ok(vec![Value::constant(t)])
}

/// A rank-0/1 integer value as a list of entries, if it is a dims vector or a constant.
fn as_list(v: &Value) -> Option<(Vec<DimOrInt>, bool)> {
    match v {
        Value::Dims { dims, scalar } => Some((dims.clone(), *scalar)),
        Value::Const(t) if t.shape().len() <= 1 => {
            let a = t.as_i64()?;
            Some((a.iter().map(|&v| DimOrInt::Int(v)).collect(), t.shape().is_empty()))
        }
        _ => None,
    }
}

/// Shape arithmetic on a node with a dims-vector input, when it stays a dims vector;
/// `None` sends the node to its ordinary handler (which computes the dims at run time).
///
/// Constant integer vectors take the same rules (rather than folding through the
/// interpreter), so empty shape vectors, which Flint's IR cannot hold, fold too.
pub(crate) fn dims_rule(imp: &mut Importer, cx: &NodeCx) -> Option<R<Vec<Value>>> {
    let dims = cx.inputs.iter().flatten().any(|v| matches!(v, Value::Dims { .. }));
    let int_vectors = cx.all_const() && cx.inputs.iter().flatten().all(|v| as_list(v).is_some());
    if !dims && !int_vectors {
        return None;
    }
    let lists: Vec<Option<(Vec<DimOrInt>, bool)>> = cx.inputs.iter().map(|v| v.as_ref().and_then(as_list)).collect();
    match cx.op() {
        "Equal" => return equal_dims(&lists),
        "Where" => return where_dims(imp, cx, &lists),
        _ => {}
    }
    let (data, scalar) = lists.first()?.clone()?;
    let mut dtype = imp.dtype_of(cx, 0).ok()?;
    let ints = |i: usize| -> Option<Vec<i64>> { lists.get(i)?.as_ref()?.0.iter().map(DimOrInt::as_int).collect() };
    let result = match cx.op() {
        "Identity" => Some((data, scalar)),
        "Cast" => {
            let to = cx.opt_int("to").ok()??;
            dtype = tensor::dtype(to as i32, &String::new).ok()?;
            dtype.is_int().then_some((data, scalar))
        }
        "Gather" if !scalar => {
            let (idx, idx_scalar) = lists.get(1)?.clone()?;
            let n = data.len() as i64;
            let picked = idx.iter().map(|i| {
                let i = i.as_int()?;
                data.get(usize::try_from(if i < 0 { i + n } else { i }).ok()?).cloned()
            });
            Some((picked.collect::<Option<Vec<_>>>()?, idx_scalar))
        }
        "Unsqueeze" if scalar => Some((data, false)),
        "Squeeze" if !scalar && data.len() == 1 => Some((data, true)),
        // A dims value reshaped to a scalar (`[]`, one entry) or a vector (`[-1]`, `[n]`).
        "Reshape" => match ints(1)?.as_slice() {
            [] if data.len() == 1 => Some((data, true)),
            [-1] => Some((data, false)),
            [n] if *n == data.len() as i64 => Some((data, false)),
            _ => None,
        },
        "Concat" => {
            let mut all = Vec::new();
            for l in lists.iter() {
                let (items, s) = l.clone()?;
                if s {
                    return None;
                }
                all.extend(items);
            }
            Some((all, false))
        }
        "Slice" if !scalar && cx.has(1) => {
            let (starts, ends) = (ints(1)?, ints(2)?);
            let steps = if cx.has(4) { ints(4)? } else { vec![1] };
            match (starts.as_slice(), ends.as_slice(), steps.as_slice()) {
                ([s], [e], [st]) if *st != 0 => {
                    let (first, count) = slice_range(data.len() as i64, *s, *e, *st);
                    let picked = range_indices(first, count, *st).map(|i| data.get(i as usize).cloned());
                    Some((picked.collect::<Option<Vec<_>>>()?, false))
                }
                _ => None,
            }
        }
        "Mul" | "Div" | "Add" | "Sub" => {
            let (other, other_scalar) = lists.get(1)?.clone()?;
            elementwise_dims(cx.op(), &data, &other).map(|v| (v, scalar && other_scalar))
        }
        "Range" if dims => return range_of_dims(imp, cx, &lists),
        _ => None,
    };
    let (items, scalar) = result?;
    let items = match in_int64(imp, cx, items) {
        Ok(items) => items,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(vec![dims_value(dtype, items, scalar)?]))
}

/// The value of a shape-arithmetic result of `dtype`.
fn dims_value(dtype: DType, items: Vec<DimOrInt>, scalar: bool) -> Option<Value> {
    if dtype == DType::I64 {
        return Some(Value::dims(items, scalar));
    }
    // Another integer dtype: only a constant keeps it.
    let ints = items.iter().map(DimOrInt::as_int).collect::<Option<Vec<i64>>>()?;
    let shape: &[usize] = if scalar { &[] } else { &[ints.len()] };
    Some(Value::constant(Tensor::from_i64(dtype, shape, ints).ok()?))
}

/// `f` over the elements of `a` and `b` paired as broadcasting pairs them (equal lengths, or
/// one side of length 1).
fn zip_broadcast<A: Clone, B: Clone, T>(a: &[A], b: &[B], f: impl Fn(A, B) -> Option<T>) -> Option<Vec<T>> {
    let n = a.len().max(b.len());
    if (a.len() != n && a.len() != 1) || (b.len() != n && b.len() != 1) {
        return None;
    }
    let at = |len: usize, i: usize| if len == 1 { 0 } else { i };
    (0..n).map(|i| f(a[at(a.len(), i)].clone(), b[at(b.len(), i)].clone())).collect()
}

/// Whether two entries are equal, when that is known at import time: a symbolic dim is at
/// least its coefficient (every symbol is at least 1), so it differs from any smaller
/// number (PyTorch's `-1` placeholders); two equal dims are equal.
fn same_entry(x: DimOrInt, y: DimOrInt) -> Option<bool> {
    if let (Some(a), Some(b)) = (x.as_int(), y.as_int()) {
        return Some(a == b);
    }
    match (&x, &y) {
        (DimOrInt::Dim(a), DimOrInt::Dim(b)) if a == b => Some(true),
        (DimOrInt::Dim(d), DimOrInt::Int(v)) | (DimOrInt::Int(v), DimOrInt::Dim(d)) if *v < d.coeff as i64 => {
            Some(false)
        }
        _ => None,
    }
}

/// `Equal` on a dims vector, decided entry by entry at import time (a constant mask).
fn equal_dims(lists: &[Option<(Vec<DimOrInt>, bool)>]) -> Option<R<Vec<Value>>> {
    let (a, sa) = lists.first()?.clone()?;
    let (b, sb) = lists.get(1)?.clone()?;
    let eq = zip_broadcast(&a, &b, same_entry)?;
    let shape: &[usize] = if sa && sb { &[] } else { &[eq.len()] };
    Some(Ok(vec![Value::constant(Tensor::from_bool(shape, eq).ok()?)]))
}

/// `Where` with a constant condition choosing between dims vectors (PyTorch's
/// `Where(Equal(shape, -1), ones, shape)` before an `Expand`).
fn where_dims(imp: &Importer, cx: &NodeCx, lists: &[Option<(Vec<DimOrInt>, bool)>]) -> Option<R<Vec<Value>>> {
    let Some(Value::Const(c)) = cx.opt(0) else { return None };
    if c.shape().len() > 1 {
        return None;
    }
    let cond: Vec<bool> = c.as_bool()?.iter().copied().collect();
    let (x, sx) = lists.get(1)?.clone()?;
    let (y, sy) = lists.get(2)?.clone()?;
    let picked = zip_broadcast(&x, &y, |a, b| Some((a, b)))?;
    let items = zip_broadcast(&cond, &picked, |c, (a, b)| Some(if c { a } else { b }))?;
    let scalar = c.shape().is_empty() && sx && sy;
    Some(Ok(vec![dims_value(imp.dtype_of(cx, 1).ok()?, items, scalar)?]))
}

/// `Mul`/`Div`/`Add`/`Sub` of dims vectors (one side may have one element): a product of
/// monomials, an exact quotient, or a sum that stays a monomial (`d + 0`, `d - d`); other
/// sums of symbolic dims are not kept.
fn elementwise_dims(op: &str, a: &[DimOrInt], b: &[DimOrInt]) -> Option<Vec<DimOrInt>> {
    zip_broadcast(a, b, |x, y| {
        if let (Some(x), Some(y)) = (x.as_int(), y.as_int()) {
            return Some(DimOrInt::Int(match op {
                "Mul" => x.checked_mul(y)?,
                "Div" => x.checked_div(y)?,
                "Add" => x.checked_add(y)?,
                _ => x.checked_sub(y)?,
            }));
        }
        let (x, y) = (x.as_dim()?, y.as_dim()?);
        let zero = Dim::known(0);
        let r = match op {
            "Mul" => x.mul(&y),
            "Div" => x.div(&y)?,
            // d + 0 -> d, 0 + d -> d, d - 0 -> d
            "Add" if y == zero => x,
            "Add" if x == zero => y,
            "Sub" if y == zero => x,
            // d - d -> 0
            "Sub" if x == y => zero,
            _ => return None,
        };
        Some(DimOrInt::Dim(r))
    })
}

/// `Range(0, n, 1)` with a symbolic `n` is an `iota`.
fn range_of_dims(imp: &mut Importer, cx: &NodeCx, lists: &[Option<(Vec<DimOrInt>, bool)>]) -> Option<R<Vec<Value>>> {
    let item = |i: usize| lists.get(i)?.as_ref()?.0.first().cloned();
    if item(0)?.as_int()? != 0 || item(2)?.as_int()? != 1 {
        return None;
    }
    let n = item(1)?.as_dim()?;
    let dtype = imp.dtype_of(cx, 0).ok()?;
    Some(imp.iota(cx, vec![n], 0, dtype).and_then(one))
}

/// A dims vector computed at run time: a symbol's value is `sum(broadcast(1, [N]))`.
pub(crate) fn dims_node(imp: &mut Importer, dims: &[DimOrInt], scalar: bool) -> R<NodeId> {
    let mut items = Vec::new();
    for d in dims {
        let item = match d {
            DimOrInt::Int(v) => imp.scalar(DType::I64, *v as f64),
            DimOrInt::Dim(d) => {
                let mut acc = imp.scalar(DType::I64, d.coeff as f64);
                for &s in &d.syms {
                    let one = imp.scalar(DType::I64, 1.0);
                    let ones = imp.graph_add(Op::Broadcast, TensorType::new(DType::I64, vec![Dim::sym(s)]), &[one])?;
                    let op = Op::Reduce { op: ReduceOp::Sum, axes: vec![0], keepdims: false };
                    let v = imp.graph_add(op, TensorType::scalar(DType::I64), &[ones])?;
                    acc = imp.graph_add(Op::Binary(BinaryOp::Mul), TensorType::scalar(DType::I64), &[acc, v])?;
                }
                acc
            }
        };
        items.push(item);
    }
    if scalar {
        return items.first().copied().ok_or_else(|| OnnxError::InvalidModel {
            place: "shape".into(),
            message: "an empty scalar dims value".into(),
        });
    }
    let one = TensorType::new(DType::I64, vec![Dim::known(1)]);
    let parts = items.into_iter().map(|i| imp.graph_add(Op::Reshape, one.clone(), &[i])).collect::<R<Vec<_>>>()?;
    let ty = TensorType::new(DType::I64, vec![Dim::known(parts.len() as u64)]);
    imp.graph_add(Op::Concat { axis: 0 }, ty, &parts)
}

/// The window functions, computed at import time for a constant size (in f64, then rounded
/// to the output dtype).
fn window(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let size = constant_len(cx, [imp.const_scalar(cx, 0)?.max(0.0) as u64])?;
    let dtype = tensor::dtype(cx.int("output_datatype", 1)? as i32, &|| {
        format!("{}: attribute `output_datatype`", cx.node_ref())
    })?;
    let n = if cx.int("periodic", 1)? == 1 { size as f64 } else { size as f64 - 1.0 };
    let pi = std::f64::consts::PI;
    let w: Vec<f64> = (0..size)
        .map(|i| {
            let x = i as f64;
            match cx.op() {
                "HannWindow" => (x * pi / n).sin().powi(2),
                "HammingWindow" => 25.0 / 46.0 - (x * pi * 2.0 / n).cos() * (21.0 / 46.0),
                _ => 0.42 - 0.5 * (x * pi * 2.0 / n).cos() + 0.08 * (x * pi * 4.0 / n).cos(),
            }
        })
        .collect();
    computed(cx, dtype, &[size], w)
}

/// A constant the importer computed in f64, in `output_datatype` (integers truncated).
fn computed(cx: &NodeCx, dtype: DType, shape: &[usize], values: Vec<f64>) -> R<Vec<Value>> {
    let t = match dtype {
        d if d.is_float() => Tensor::from_f64(d, shape, values),
        d if d.is_int() => Tensor::from_i64(d, shape, values.into_iter().map(|v| v as i64).collect()),
        _ => return Err(cx.invalid(format!("`output_datatype` {dtype} for numbers"))),
    };
    Ok(vec![Value::constant(t.map_err(|e| cx.invalid(e.to_string()))?)])
}

/// `MelWeightMatrix`, computed at import time from its constant inputs exactly as ONNX's
/// reference computes it (`[dft_length / 2 + 1, num_mel_bins]` triangles between mel points
/// spaced `(high - low) / (num_mel_bins + 2)` apart, the points floored to spectrogram bins).
fn mel_weight_matrix(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let int = |i: usize| -> R<i64> { Ok(imp.const_scalar(cx, i)? as i64) };
    let (mels, dft_length, rate) = (int(0)?, int(1)?, int(2)?);
    let (low, high) = (imp.const_scalar(cx, 3)?, imp.const_scalar(cx, 4)?);
    if mels < 1 || dft_length < 1 || rate < 1 {
        return Err(cx.invalid("`num_mel_bins`, `dft_length` and `sample_rate` must be positive"));
    }
    let dtype = tensor::dtype(cx.int("output_datatype", 1)? as i32, &|| {
        format!("{}: attribute `output_datatype`", cx.node_ref())
    })?;
    let rows = dft_length as usize / 2 + 1;
    constant_len(cx, [rows as u64, mels as u64])?; // before anything is allocated
    let to_mel = |hz: f64| 2595.0 * (hz / 700.0).ln_1p() / 10f64.ln();
    let (low_mel, high_mel) = (to_mel(low), to_mel(high));
    let step = (high_mel - low_mel) / (mels + 2) as f64;
    let bins: Vec<i64> = (0..mels + 2)
        .map(|i| {
            let hz = 700.0 * ((i as f64 * step + low_mel) / 2595.0 * 10f64.ln()).exp_m1();
            ((dft_length + 1) as f64 * hz).div_euclid(rate as f64) as i64
        })
        .collect();
    let mut m = vec![0.0; rows * mels as usize];
    let mut set = |j: i64, i: usize, v: f64| -> R<()> {
        match usize::try_from(j).ok().filter(|&j| j < rows) {
            Some(j) => {
                m[j * mels as usize + i] = v;
                Ok(())
            }
            None => Err(cx.invalid(format!("mel point {j} lies outside the {rows} spectrogram bins"))),
        }
    };
    for i in 0..mels as usize {
        let (lo, center, hi) = (bins[i], bins[i + 1], bins[i + 2]);
        if center == lo {
            set(center, i, 1.0)?;
        } else {
            for j in lo..=center {
                set(j, i, (j - lo) as f64 / (center - lo) as f64)?;
            }
        }
        for j in center..hi {
            set(j, i, (hi - j) as f64 / (hi - center) as f64)?;
        }
    }
    computed(cx, dtype, &[rows, mels as usize], m)
}
