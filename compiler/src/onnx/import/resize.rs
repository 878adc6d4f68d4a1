//! Resampling: `Resize`, `Upsample`, `DFT` and `STFT` (linear maps along one axis),
//! `AffineGrid`, `GridSample` and `RoiAlign`.
//!
//! `Resize` and `Upsample`. Resizing is separable: along each resized axis, output `o` is
//! `sum_i M[o, i] * x[i]` for an interpolation matrix `M` that depends only on the sizes and
//! the attributes. The matrix is computed here in f64 exactly as ONNX's reference computes
//! its coefficients (nearest, linear, cubic, antialiasing, `exclude_outside`, every
//! coordinate transformation); the graph applies it as a `matmul` (or, when each row picks one
//! element, as a `gather`, which is exact for every dtype).

use super::attrs::MAX_GEOMETRY;
use super::build::{constant_len, one};
use super::{entry, Entry, Importer, NodeCx, Value};
use crate::interp::Tensor;
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

pub(crate) const OPS: &[(&str, Entry)] = &[
    (
        "Resize",
        entry(
            resize,
            &[
                "antialias",
                "axes",
                "coordinate_transformation_mode",
                "cubic_coeff_a",
                "exclude_outside",
                "extrapolation_value",
                "keep_aspect_ratio_policy",
                "mode",
                "nearest_mode",
            ],
        ),
    ),
    ("Upsample", entry(upsample, &["mode", "scales"])),
    ("DFT", entry(dft, &["axis", "inverse", "onesided"])),
    ("STFT", entry(stft, &["onesided"])),
    ("AffineGrid", entry(affine_grid, &["align_corners"])),
    ("GridSample", entry(grid_sample, &["align_corners", "mode", "padding_mode"])),
    (
        "RoiAlign",
        entry(
            roi_align,
            &[
                "coordinate_transformation_mode",
                "mode",
                "output_height",
                "output_width",
                "sampling_ratio",
                "spatial_scale",
            ],
        ),
    ),
];

/// How coefficients are chosen; see ONNX's `Resize`.
struct Kernel {
    mode: String,
    nearest_mode: String,
    cubic_a: f64,
    antialias: bool,
    /// `coordinate_transformation_mode`.
    ctm: String,
    exclude_outside: bool,
}

/// The interpolation matrix `m` (`[n_out, n_in]`, row-major) of one axis, and the rows that
/// take the extrapolation value.
struct AxisMap {
    m: Vec<f64>,
    n_in: usize,
    n_out: usize,
    extrapolated: Vec<bool>,
}

impl Kernel {
    fn coeffs(&self, ratio: f64, scale: f64) -> Vec<f64> {
        match (self.mode.as_str(), self.antialias) {
            ("nearest", _) => nearest_coeffs(ratio, &self.nearest_mode),
            ("linear", false) => vec![1.0 - ratio, ratio],
            ("linear", true) => linear_antialias(ratio, scale),
            (_, false) => cubic_coeffs(ratio, self.cubic_a),
            (_, true) => cubic_antialias(ratio, scale, self.cubic_a),
        }
    }
}

fn nearest_coeffs(ratio: f64, mode: &str) -> Vec<f64> {
    let b = |x: bool| f64::from(u8::from(x));
    if ratio.fract() == 0.0 {
        return vec![0.0, 1.0];
    }
    match mode {
        "round_prefer_floor" => vec![b(ratio <= 0.5), b(ratio > 0.5)],
        "round_prefer_ceil" => vec![b(ratio < 0.5), b(ratio >= 0.5)],
        "floor" => vec![1.0, 0.0],
        _ => vec![0.0, 1.0],
    }
}

fn cubic_coeffs(r: f64, a: f64) -> Vec<f64> {
    let s = 1.0 - r;
    vec![
        ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
        ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
        ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
        ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
    ]
}

fn normalized(c: Vec<f64>) -> Vec<f64> {
    let sum: f64 = c.iter().sum();
    c.into_iter().map(|x| x / sum).collect()
}

fn cubic_antialias(ratio: f64, scale: f64, a: f64) -> Vec<f64> {
    let scale = scale.min(1.0);
    let coeff = |x: f64| {
        let x = x.abs();
        let (x2, x3) = (x * x, x * x * x);
        if x <= 1.0 {
            (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
        } else if x < 2.0 {
            a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    };
    let start = (-2.0 / scale).floor() as i64 + 1;
    normalized((start..2 - start).map(|i| coeff(scale * (i as f64 - ratio))).collect())
}

fn linear_antialias(ratio: f64, scale: f64) -> Vec<f64> {
    let scale = scale.min(1.0);
    let start = (-1.0 / scale).floor() as i64 + 1;
    let footprint = 2 - 2 * start;
    normalized((start..start + footprint).map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0)).collect())
}

/// The source coordinate of each output position (and whether it lies outside the input,
/// for `tf_crop_and_resize`).
fn source_coords(
    cx: &NodeCx,
    mode: &str,
    n_in: usize,
    n_out: usize,
    scale: f64,
    roi: (f64, f64),
) -> R<Vec<(f64, bool)>> {
    let out_w = scale * n_in as f64;
    let (win, wout) = (n_in as f64, n_out as f64);
    (0..n_out)
        .map(|o| {
            let y = o as f64;
            Ok(match mode {
                "align_corners" => (if out_w == 1.0 { 0.0 } else { y * (win - 1.0) / (out_w - 1.0) }, false),
                "asymmetric" => (y / scale, false),
                "tf_crop_and_resize" => {
                    let x = if out_w == 1.0 {
                        (roi.1 - roi.0) * (win - 1.0) / 2.0
                    } else {
                        y * (roi.1 - roi.0) * (win - 1.0) / (out_w - 1.0)
                    } + roi.0 * (win - 1.0);
                    (x, x < 0.0 || x > win - 1.0)
                }
                "pytorch_half_pixel" => (if out_w == 1.0 { -0.5 } else { (y + 0.5) / scale - 0.5 }, false),
                "half_pixel" => ((y + 0.5) / scale - 0.5, false),
                "half_pixel_symmetric" => {
                    let offset = win / 2.0 * (1.0 - wout / out_w);
                    (offset + (y + 0.5) / scale - 0.5, false)
                }
                other => return Err(cx.bad_attr("coordinate_transformation_mode", &format!("{other:?}"))),
            })
        })
        .collect()
}

/// The interpolation matrix of one axis.
fn matrix(cx: &NodeCx, k: &Kernel, n_in: usize, n_out: usize, scale: f64, roi: (f64, f64)) -> R<AxisMap> {
    let coords = source_coords(cx, &k.ctm, n_in, n_out, scale, roi)?;
    let mut m = vec![0.0; constant_len(cx, [n_out as u64, n_in as u64])?];
    let mut extrapolated = vec![false; n_out];
    for (o, &(x, outside)) in coords.iter().enumerate() {
        let xi = x.floor();
        let ratio = if x == xi { 1.0 } else { x - xi };
        let mut c = k.coeffs(ratio, scale);
        let n = c.len() as i64;
        let pad = (n + 1) / 2;
        let xp = x + pad as f64;
        let p = xp.floor();
        let frac = xp - p;
        let off = if n % 2 == 0 {
            if frac == 0.0 {
                -(n / 2)
            } else {
                -(n / 2) + 1
            }
        } else if frac <= 0.5 {
            -((n - 1) / 2)
        } else {
            -((n - 1) / 2) + 1
        };
        let start = p as i64 + off;
        let idx: Vec<i64> = (0..n).map(|j| start + j - pad).collect();
        if k.exclude_outside {
            for (cj, &i) in c.iter_mut().zip(&idx) {
                if i < 0 || i >= n_in as i64 {
                    *cj = 0.0;
                }
            }
            let sum: f64 = c.iter().sum();
            let sum = if sum == 0.0 { 1.0 } else { sum };
            c.iter_mut().for_each(|x| *x /= sum);
        }
        for (cj, &i) in c.iter().zip(&idx) {
            m[o * n_in + i.clamp(0, n_in as i64 - 1) as usize] += cj;
        }
        extrapolated[o] = outside;
    }
    for (o, &e) in extrapolated.iter().enumerate() {
        if e {
            m[o * n_in..(o + 1) * n_in].iter_mut().for_each(|x| *x = 0.0);
        }
    }
    Ok(AxisMap { m, n_in, n_out, extrapolated })
}

/// A constant input that may be omitted or given as an empty tensor.
fn floats_input(imp: &Importer, cx: &NodeCx, i: usize) -> R<Option<Vec<f64>>> {
    if !cx.has(i) {
        return Ok(None);
    }
    let t = imp.const_input(cx, i)?;
    Ok((t.numel() > 0).then(|| t.to_f64_vec()))
}

struct Plan {
    /// Per axis: output length and scale.
    out: Vec<usize>,
    scale: Vec<f64>,
    roi: Vec<(f64, f64)>,
    axes: Vec<usize>,
}

/// Output sizes and scales per axis, following ONNX's reference (`_interpolate_nd`).
fn plan(
    imp: &Importer,
    cx: &NodeCx,
    ctm: &str,
    shape: &[usize],
    scales_slot: usize,
    sizes_slot: Option<usize>,
) -> R<Plan> {
    let r = shape.len();
    // In the attribute's order, which the scales and sizes follow.
    let axes: Vec<usize> = match cx.ints("axes")? {
        Some(a) => {
            super::build::axes(cx, &a, r)?;
            a.iter().map(|&x| super::build::axis(cx, x, r)).collect::<R<_>>()?
        }
        None => (0..r).collect(),
    };
    let widen = |v: Vec<f64>, fill: &dyn Fn(usize) -> f64| -> R<Vec<f64>> {
        if v.len() != axes.len() {
            return Err(cx.invalid(format!("{} values for {} axes", v.len(), axes.len())));
        }
        let mut full: Vec<f64> = (0..r).map(fill).collect();
        for (k, &a) in axes.iter().enumerate() {
            full[a] = v[k];
        }
        Ok(full)
    };
    // The region of interest matters only to `tf_crop_and_resize`.
    let roi_given = if ctm == "tf_crop_and_resize" { floats_input(imp, cx, 1)? } else { None };
    let roi = match roi_given {
        Some(v) if v.len() == 2 * axes.len() => {
            let starts = widen(v[..axes.len()].to_vec(), &|_| 0.0)?;
            let ends = widen(v[axes.len()..].to_vec(), &|_| 1.0)?;
            starts.into_iter().zip(ends).collect()
        }
        _ => vec![(0.0, 1.0); r],
    };
    let sizes = match sizes_slot {
        Some(s) => floats_input(imp, cx, s)?,
        None => None,
    };
    let (out, scale) = match (
        sizes,
        floats_input(imp, cx, scales_slot)?.or(cx.floats("scales")?.map(|v| v.iter().map(|&x| x as f64).collect())),
    ) {
        (Some(sizes), _) => {
            let sizes = widen(sizes, &|i| shape[i] as f64)?;
            let mut scale: Vec<f64> = (0..r).map(|i| sizes[i] / shape[i] as f64).collect();
            let policy = cx.string("keep_aspect_ratio_policy", "stretch")?;
            if policy == "stretch" {
                (sizes.iter().map(|&s| s as usize).collect(), scale)
            } else {
                let picked = axes.iter().map(|&a| scale[a]);
                let s = match policy.as_str() {
                    "not_larger" => picked.fold(f64::INFINITY, f64::min),
                    "not_smaller" => picked.fold(f64::NEG_INFINITY, f64::max),
                    other => return Err(cx.bad_attr("keep_aspect_ratio_policy", &format!("{other:?}"))),
                };
                scale = (0..r).map(|i| if axes.contains(&i) { s } else { 1.0 }).collect();
                let out = (0..r)
                    .map(|i| if axes.contains(&i) { (s * shape[i] as f64 + 0.5) as usize } else { shape[i] })
                    .collect();
                (out, scale)
            }
        }
        (None, Some(scales)) => {
            let scales = if cx.op() == "Resize" { widen(scales, &|_| 1.0)? } else { scales };
            if scales.len() != r {
                return Err(cx.invalid("one scale per axis is needed"));
            }
            ((0..r).map(|i| (scales[i] * shape[i] as f64) as usize).collect(), scales)
        }
        (None, None) => return Err(cx.invalid("neither `scales` nor `sizes` is given")),
    };
    Ok(Plan { out, scale, roi, axes })
}

fn resize(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    // Opset 10 has (X, scales); later opsets (X, roi, scales, sizes).
    let (scales_slot, sizes_slot) = if imp.opset < 11 { (1, None) } else { (2, Some(3)) };
    let k = Kernel {
        mode: cx.string("mode", "nearest")?,
        nearest_mode: cx.string("nearest_mode", "round_prefer_floor")?,
        cubic_a: cx.float("cubic_coeff_a", -0.75)? as f64,
        antialias: cx.int("antialias", 0)? != 0,
        ctm: cx.string("coordinate_transformation_mode", "half_pixel")?,
        exclude_outside: cx.int("exclude_outside", 0)? != 0,
    };
    run(imp, cx, &k, scales_slot, sizes_slot)
}

/// `Upsample` is `Resize` with asymmetric coordinates (nearest rounds down).
fn upsample(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let k = Kernel {
        mode: cx.string("mode", "nearest")?,
        nearest_mode: "floor".into(),
        cubic_a: -0.75,
        antialias: false,
        ctm: "asymmetric".into(),
        exclude_outside: false,
    };
    run(imp, cx, &k, 1, None)
}

fn run(imp: &mut Importer, cx: &NodeCx, k: &Kernel, scales_slot: usize, sizes_slot: Option<usize>) -> R<Vec<Value>> {
    if !["nearest", "linear", "cubic"].contains(&k.mode.as_str()) {
        return Err(cx.bad_attr("mode", &format!("{:?}", k.mode)));
    }
    if !["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(&k.nearest_mode.as_str()) {
        return Err(cx.bad_attr("nearest_mode", &format!("{:?}", k.nearest_mode)));
    }
    let mut x = imp.input(cx, 0)?;
    let ty = imp.ty(x);
    // A symbolic axis (a dynamic batch) is planned at length 1; it must come out unchanged,
    // which the refusal below checks by name.
    let symbolic: Vec<usize> = (0..ty.shape.len()).filter(|&a| ty.shape[a].as_known().is_none()).collect();
    let shape: Vec<usize> = ty.shape.iter().map(|d| d.as_known().map_or(1, |v| v as usize)).collect();
    let p = plan(imp, cx, &k.ctm, &shape, scales_slot, sizes_slot)?;
    let unchanged = |a: usize| (p.scale[a] - 1.0).abs() <= 1e-9 && p.out[a] == shape[a] && p.roi[a] == (0.0, 1.0);
    if let Some(&a) = symbolic.iter().find(|&&a| p.axes.contains(&a) && !unchanged(a)) {
        imp.known_axes(cx, x, [a])?;
    }
    let extrapolation = cx.float("extrapolation_value", 0.0)? as f64;
    for &a in p.axes.iter().filter(|a| !symbolic.contains(a)) {
        let (n_in, n_out) = (shape[a], p.out[a]);
        let trivial = (p.scale[a] - 1.0).abs() <= 1e-9 && n_out == n_in && p.roi[a] == (0.0, 1.0);
        if trivial {
            continue;
        }
        if n_out == 0 {
            return Err(cx.unsupported("a resize to length 0"));
        }
        let map = matrix(cx, k, n_in, n_out, p.scale[a], p.roi[a])?;
        x = apply(imp, cx, x, a, &map, extrapolation)?;
    }
    one(x)
}

/// Applies an axis map along `axis` of `x`.
fn apply(imp: &mut Importer, cx: &NodeCx, x: NodeId, axis: usize, map: &AxisMap, value: f64) -> R<NodeId> {
    let AxisMap { m, n_in, n_out, extrapolated } = map;
    let (n_in, n_out) = (*n_in, *n_out);
    // One 1 per row: a gather (exact for every dtype).
    let picks: Option<Vec<i64>> = (0..n_out)
        .map(|o| {
            let row = &m[o * n_in..(o + 1) * n_in];
            let ones: Vec<usize> = (0..n_in).filter(|&i| row[i] != 0.0).collect();
            match ones.as_slice() {
                [i] if row[*i] == 1.0 && !extrapolated[o] => Some(*i as i64),
                _ => None,
            }
        })
        .collect();
    if let Some(idx) = picks {
        return imp.gather_const(cx, x, axis, idx);
    }
    let dtype = imp.dtype(x);
    if !dtype.is_float() {
        return Err(cx.unsupported(format!("interpolating {dtype} data")));
    }
    let r = imp.rank(x);
    let mut perm: Vec<usize> = (0..r).filter(|&i| i != axis).collect();
    perm.push(axis);
    let xt = imp.permute(cx, x, perm.clone())?;
    // x[..., in] @ Mᵀ[in, out]
    let mt: Vec<f64> = (0..n_in * n_out).map(|k| m[(k % n_out) * n_in + k / n_out]).collect();
    let t = Tensor::from_f64(dtype, &[n_in, n_out], mt).map_err(|e| cx.invalid(e.to_string()))?;
    let w = imp.tensor(cx, &format!("resize{axis}"), &t)?;
    let mut y = super::nn::matmul_nd(imp, cx, xt, w)?;
    if value != 0.0 && extrapolated.iter().any(|&e| e) {
        let e = extrapolated.iter().map(|&e| if e { value } else { 0.0 }).collect();
        let t = Tensor::from_f64(dtype, &[n_out], e).map_err(|e| cx.invalid(e.to_string()))?;
        let c = imp.tensor(cx, &format!("extrapolation{axis}"), &t)?;
        y = imp.binary(cx, BinaryOp::Add, y, c)?;
    }
    let mut inverse = vec![0; r];
    for (k, &p) in perm.iter().enumerate() {
        inverse[p] = k;
    }
    imp.permute(cx, y, inverse)
}

/// `DFT` as complex matrix products along the signal axis: `y = M x` with `M = A + iB`
/// computed in f64 (`e^{∓2πi kn/L}`, scaled by `1/L` for the inverse; for the one-sided
/// inverse, numpy's `irfft` weights with the Hermitian half doubled), applied as
/// `y_re = x_re Aᵀ - x_im Bᵀ`, `y_im = x_re Bᵀ + x_im Aᵀ`.
fn dft(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    let r = imp.rank(x);
    let raw_axis = if imp.opset >= 20 {
        if cx.has(2) {
            imp.const_scalar(cx, 2)? as i64
        } else {
            -2
        }
    } else {
        cx.int("axis", 1)?
    };
    let a = super::build::axis(cx, raw_axis, r)?;
    // Only the signal axis and the parts axis need sizes: a batch may be symbolic.
    let known = if a == r - 1 { vec![0, 0] } else { imp.known_axes(cx, x, [a, r - 1])? };
    if a == r - 1 || !(known[1] == 1 || known[1] == 2) {
        return Err(cx.invalid("the last axis holds the real (and imaginary) part; the signal axis is another"));
    }
    let (inverse, onesided) = (cx.int("inverse", 0)? != 0, cx.int("onesided", 0)? != 0);
    let n_in = known[0] as usize;
    let len = match cx.has(1) {
        true => imp.const_scalar(cx, 1)? as usize,
        false if inverse && onesided => 2 * (n_in - 1),
        false => n_in,
    };
    if len == 0 {
        return Err(cx.invalid("`dft_length` must be positive"));
    }
    one(transform(imp, cx, x, a, len, inverse, onesided)?)
}

/// The DFT of length `len` of `x` (`[..., 1 or 2]`, real or complex) along `a`.
fn transform(
    imp: &mut Importer,
    cx: &NodeCx,
    x: NodeId,
    a: usize,
    len: usize,
    inverse: bool,
    onesided: bool,
) -> R<NodeId> {
    let r = imp.rank(x);
    let known = imp.known_axes(cx, x, [a, r - 1])?;
    let (n_in, parts) = (known[0] as usize, known[1]);
    let l = len as f64;
    let tau = 2.0 * std::f64::consts::PI;
    // M[k, n] over the used inputs n < min(n_in, len) (the rest is zero padding).
    let used = n_in.min(if inverse && onesided { len / 2 + 1 } else { len });
    let (n_out, real_out) = match (inverse, onesided) {
        (false, false) => (len, false),
        (false, true) => (len / 2 + 1, false),
        (true, false) => (len, false),
        (true, true) => (len, true),
    };
    // Aᵀ and Bᵀ, `[n_in, n_out]`, as the products below take them.
    let mut at = vec![0.0; constant_len(cx, [n_out as u64, n_in as u64])?];
    let mut bt = vec![0.0; n_out * n_in];
    for k in 0..n_out {
        for n in 0..used {
            let (kf, nf) = (k as f64, n as f64);
            let (re, im) = match (inverse, onesided) {
                (false, _) => ((tau * kf * nf / l).cos(), -(tau * kf * nf / l).sin()),
                (true, false) => ((tau * kf * nf / l).cos() / l, (tau * kf * nf / l).sin() / l),
                // irfft: output t = k, one-sided input n; the half-spectrum counts twice
                (true, true) => {
                    let weight = if n == 0 || (len.is_multiple_of(2) && n == len / 2) { 1.0 } else { 2.0 };
                    (weight * (tau * kf * nf / l).cos() / l, weight * (tau * kf * nf / l).sin() / l)
                }
            };
            at[n * n_out + k] = re;
            bt[n * n_out + k] = im;
        }
    }
    let dtype = imp.dtype(x);
    let matrix = |imp: &mut Importer, m: Vec<f64>, what: &str| -> R<NodeId> {
        let t = Tensor::from_f64(dtype, &[n_in, n_out], m).map_err(|e| cx.invalid(e.to_string()))?;
        imp.tensor(cx, what, &t)
    };
    let (at, bt) = (matrix(imp, at, "dft_re")?, matrix(imp, bt, "dft_im")?);
    // Parts as [..., n] with the signal axis last.
    let mut perm: Vec<usize> = (0..r - 1).filter(|&i| i != a).collect();
    perm.push(a);
    let part = |imp: &mut Importer, p: u64| -> R<NodeId> {
        let s = imp.slice(cx, x, r - 1, p, p + 1, 1)?;
        let s = imp.reshape(cx, s, imp.ty(s).shape[..r - 1].to_vec())?;
        imp.permute(cx, s, perm.clone())
    };
    let xr = part(imp, 0)?;
    let xi = if parts == 2 { Some(part(imp, 1)?) } else { None };
    let mm = |imp: &mut Importer, v: NodeId, m: NodeId| super::nn::matmul_nd(imp, cx, v, m);
    let mut yr = mm(imp, xr, at)?;
    let mut yi = mm(imp, xr, bt)?;
    if let Some(xi) = xi {
        let (ib, ia) = (mm(imp, xi, bt)?, mm(imp, xi, at)?);
        yr = imp.binary(cx, BinaryOp::Sub, yr, ib)?;
        yi = imp.binary(cx, BinaryOp::Add, yi, ia)?;
    }
    let mut inverse_perm = vec![0; r - 1];
    for (k, &p) in perm.iter().enumerate() {
        inverse_perm[p] = k;
    }
    let back = |imp: &mut Importer, v: NodeId| -> R<NodeId> {
        let v = imp.permute(cx, v, inverse_perm.clone())?;
        imp.unsqueeze(cx, v, &[r - 1])
    };
    let yr = back(imp, yr)?;
    if real_out {
        return Ok(yr);
    }
    let yi = back(imp, yi)?;
    imp.concat(cx, &[yr, yi], r - 1)
}

/// `STFT(signal [B, L, 1 or 2], frame_step, window?, frame_length?)`: the frames
/// `[B, F, W, 1 or 2]` (one `gather` with constant indices `f * step + w`), weighted by the
/// window, and their DFT of length `W` along the frame axis (one-sided by default).
fn stft(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let x = imp.input(cx, 0)?;
    if imp.rank(x) != 3 {
        return Err(cx.invalid("the signal must be [batch, length, 1 or 2]"));
    }
    // The batch may be symbolic; the length and the parts must be numbers.
    let mut shape = imp.known_axes(cx, x, [1, 2])?;
    shape.insert(0, 0);
    if !(shape[2] == 1 || shape[2] == 2) {
        return Err(cx.invalid("the signal must be [batch, length, 1 or 2]"));
    }
    let step = imp.const_scalar(cx, 1)? as i64;
    let window = imp.opt_input(cx, 2)?;
    let window_len = match window {
        Some(w) => Some(super::movement::static_shape(imp, cx, w)?),
        None => None,
    };
    let frame = match (cx.has(3), &window_len) {
        (true, _) => imp.const_scalar(cx, 3)? as i64,
        (false, Some(w)) => w.first().copied().unwrap_or(0) as i64,
        (false, None) => shape[1] as i64,
    };
    if window_len.as_ref().is_some_and(|w| w.as_slice() != [frame as u64]) {
        return Err(cx.invalid(format!("the window must have `frame_length` = {frame} elements")));
    }
    if step < 1 || frame < 1 || frame > shape[1] as i64 {
        return Err(cx.invalid(format!("frame step {step} and length {frame} do not fit a signal of {}", shape[1])));
    }
    let frames = 1 + (shape[1] as i64 - frame) / step;
    constant_len(cx, [frames as u64, frame as u64])?;
    let indices: Vec<i64> = (0..frames).flat_map(|f| (0..frame).map(move |w| f * step + w)).collect();
    let t = Tensor::from_i64(DType::I64, &[frames as usize, frame as usize], indices)
        .map_err(|e| cx.invalid(e.to_string()))?;
    let idx = imp.tensor(cx, "frames", &t)?;
    let mut y = imp.add(cx, Op::Gather { axis: 1 }, &[x, idx], None)?; // [B, F, W, c]
    if let Some(w) = window {
        let w = imp.reshape(cx, w, vec![Dim::known(1), Dim::known(1), Dim::known(frame as u64), Dim::known(1)])?;
        y = imp.binary(cx, BinaryOp::Mul, y, w)?;
    }
    let onesided = cx.int("onesided", 1)? != 0;
    one(transform(imp, cx, y, 2, frame as usize, false, onesided)?)
}

/// `AffineGrid`: `theta [N, k, k+1]` applied to the homogeneous base grid `(x, y[, z], 1)`
/// of normalised coordinates (a constant `[k+1, P]`), as one `matmul`.
fn affine_grid(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let size: Vec<usize> = imp.const_ints(cx, 1)?.into_iter().map(|v| v.max(1) as usize).collect();
    let theta = imp.input(cx, 0)?;
    let spatial = &size[2.min(size.len())..];
    let k = spatial.len();
    if !(k == 2 || k == 3) || imp.ty(theta).shape.get(1) != Some(&Dim::known(k as u64)) {
        return Err(cx.invalid("`size` must be [N, C, H, W] or [N, C, D, H, W] and theta [N, k, k+1]"));
    }
    let align = cx.int("align_corners", 0)? != 0;
    let coord = |i: usize, n: usize| -> f64 {
        if align {
            if n == 1 {
                -1.0
            } else {
                -1.0 + 2.0 * i as f64 / (n - 1) as f64
            }
        } else {
            -1.0 + (2 * i + 1) as f64 / n as f64
        }
    };
    let p: usize = spatial.iter().product();
    // Rows x, y[, z], 1 (x runs along the last spatial axis).
    let mut g = vec![0.0; constant_len(cx, [k as u64 + 1, p as u64])?];
    for flat in 0..p {
        let mut rest = flat;
        for (axis, &n) in spatial.iter().enumerate().rev() {
            let row = k - 1 - axis;
            g[row * p + flat] = coord(rest % n, n);
            rest /= n;
        }
        g[k * p + flat] = 1.0;
    }
    let dtype = imp.dtype(theta);
    let t = Tensor::from_f64(dtype, &[k + 1, p], g).map_err(|e| cx.invalid(e.to_string()))?;
    let grid = imp.tensor(cx, "base_grid", &t)?;
    let y = imp.matmul(cx, theta, grid)?; // [N, k, P]
    let y = imp.permute(cx, y, vec![0, 2, 1])?;
    let mut shape = vec![imp.ty(theta).shape[0].clone()];
    shape.extend(spatial.iter().map(|&n| Dim::known(n as u64)));
    shape.push(Dim::known(k as u64));
    one(imp.reshape(cx, y, shape)?)
}

/// `GridSample`, as ONNX's reference computes it. Along each spatial axis `i` the source
/// coordinate is the grid's component `r-1-i` (the grid lists x first, and x runs along the
/// last axis), denormalized, rounded half to even for `nearest`, and brought back inside the
/// borders when it lies outside them (clamped for `border`, reflected for `reflection`). The
/// output is a weighted sum over taps around it, 1 (`nearest`), 2 (`linear`) or 4 (`cubic`,
/// Keys with a = -0.75) per axis; a tap outside the input reads 0 (`zeros`: its weight is
/// zeroed), the edge (`border`) or its reflection. The taps of all axes combine into flat
/// indices into the input seen as `[N*P, C]`, one `gather` reads them, and the weighted sum
/// is a `reduce`.
fn grid_sample(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let (x, grid) = (imp.input(cx, 0)?, imp.input(cx, 1)?);
    let (xt, gt) = (imp.ty(x), imp.ty(grid));
    let r = xt.rank().saturating_sub(2);
    if r == 0 || gt.rank() != r + 2 || gt.shape[r + 1].as_known() != Some(r as u64) {
        return Err(cx.invalid("X must be [N, C, D1, ..., Dr] and grid [N, H1, ..., Hr, r]"));
    }
    let dims = imp.known_axes(cx, x, 2..r + 2)?;
    let align = cx.int("align_corners", 0)? != 0;
    let taps_per_axis = match cx.string("mode", "linear")?.as_str() {
        "nearest" => 1,
        "linear" | "bilinear" => 2,
        "cubic" | "bicubic" => 4,
        m => return Err(cx.unsupported(format!("`mode` \"{m}\""))),
    };
    let padding = match cx.string("padding_mode", "zeros")?.as_str() {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        p => return Err(cx.unsupported(format!("`padding_mode` \"{p}\""))),
    };
    // The reference denormalizes into float32; so does this.
    let grid = imp.cast(cx, grid, DType::F32)?;
    let p: u64 = dims.iter().product();
    let mut axes = vec![];
    for (i, &d) in dims.iter().enumerate() {
        let comp = imp.slice(cx, grid, r + 1, (r - 1 - i) as u64, (r - i) as u64, 1)?;
        let comp = imp.reshape(cx, comp, gt.shape[..r + 1].to_vec())?; // [N, H...]
        let (lo, hi) = if align { (0.0, d as f64 - 1.0) } else { (-0.5, d as f64 - 0.5) };
        let c = imp.binary_scalar(cx, BinaryOp::Add, comp, 1.0)?;
        let mut coord = if align {
            imp.binary_scalar(cx, BinaryOp::Mul, c, (d as f64 - 1.0) / 2.0)?
        } else {
            let c = imp.binary_scalar(cx, BinaryOp::Mul, c, d as f64)?;
            let c = imp.binary_scalar(cx, BinaryOp::Sub, c, 1.0)?;
            imp.binary_scalar(cx, BinaryOp::Mul, c, 0.5)?
        };
        if taps_per_axis == 1 {
            coord = imp.unary(cx, UnaryOp::Round, coord)?;
        }
        coord = match padding {
            Padding::Border => {
                let outside = outside(imp, cx, coord, lo, hi)?;
                let clamped = clamp(imp, cx, coord, 0.0, d as f64 - 1.0)?;
                imp.select(cx, outside, clamped, coord)?
            }
            Padding::Reflection => reflect(imp, cx, coord, lo, hi)?,
            Padding::Zeros => coord,
        };
        let stride: u64 = dims[i + 1..].iter().product();
        axes.push((sample_taps(imp, cx, coord, taps_per_axis, padding, d, (lo, hi))?, stride));
    }
    let mut batch_shape = vec![Dim::known(1); r + 1];
    batch_shape[0] = xt.shape[0].clone();
    let base = batch_rows(imp, cx, batch_shape, p)?;
    let (flat, weight) = combine_taps(imp, cx, &axes, base)?;
    let rows = pixel_rows(imp, cx, x)?;
    let y = blend(imp, cx, rows, flat, weight, ReduceOp::Sum)?; // [N, H..., C]
    let mut perm = vec![0, r + 1];
    perm.extend(1..=r);
    one(imp.permute(cx, y, perm)?)
}

#[derive(Clone, Copy)]
pub(crate) enum Padding {
    Zeros,
    Border,
    Reflection,
}

/// The taps of an interpolation at `coord` along an axis of `size` elements, as `(i64 index,
/// f32 weight)`: a tap outside the axis gets weight 0 (`Zeros`), the edge (`Border`) or its
/// reflection within `borders` (`Reflection`), truncated as the reference's `int()`.
pub(crate) fn sample_taps(
    imp: &mut Importer,
    cx: &NodeCx,
    coord: NodeId,
    taps: usize,
    padding: Padding,
    size: u64,
    borders: (f64, f64),
) -> R<Vec<(NodeId, NodeId)>> {
    let last = size as f64 - 1.0;
    let mut out = vec![];
    for (tap, w) in grid_taps(imp, cx, coord, taps)? {
        let (index, w) = match padding {
            Padding::Zeros => {
                let outside = outside(imp, cx, tap, 0.0, last)?;
                let zero = imp.scalar(DType::F32, 0.0);
                (clamp(imp, cx, tap, 0.0, last)?, imp.select(cx, outside, zero, w)?)
            }
            Padding::Border => (clamp(imp, cx, tap, 0.0, last)?, w),
            Padding::Reflection => (reflect(imp, cx, tap, borders.0, borders.1)?, w),
        };
        out.push((imp.cast(cx, index, DType::I64)?, w));
    }
    Ok(out)
}

/// Interpolation taps along several axes, combined: each choice of one tap per axis gives
/// the flat index `base + Σ index · stride` and the weight `Π weight`, stacked along a new
/// last axis. The per-axis tensors broadcast against each other and `base`.
pub(crate) fn combine_taps(
    imp: &mut Importer,
    cx: &NodeCx,
    axes: &[(Vec<(NodeId, NodeId)>, u64)],
    base: NodeId,
) -> R<(NodeId, NodeId)> {
    let mut combos = vec![(base, None)];
    for (taps, stride) in axes {
        let mut next = vec![];
        for &(flat, weight) in &combos {
            for &(index, w) in taps {
                let offset = imp.binary_scalar(cx, BinaryOp::Mul, index, *stride as f64)?;
                let flat = imp.binary(cx, BinaryOp::Add, flat, offset)?;
                let w = match weight {
                    Some(v) => imp.binary(cx, BinaryOp::Mul, v, w)?,
                    None => w,
                };
                next.push((flat, Some(w)));
            }
        }
        combos = next;
    }
    let stack = |imp: &mut Importer, parts: Vec<NodeId>| -> R<NodeId> {
        let shape =
            parts.iter().try_fold(Vec::new(), |acc, &p| crate::ir::infer::broadcast_shapes(&acc, &imp.ty(p).shape));
        let shape = shape.map_err(|_| cx.invalid("interpolation taps of mismatched shapes"))?;
        let rank = shape.len();
        let mut out = vec![];
        for p in parts {
            let p = imp.broadcast(cx, p, shape.clone())?;
            out.push(imp.unsqueeze(cx, p, &[rank])?);
        }
        imp.concat(cx, &out, rank)
    };
    let (flats, weights): (Vec<NodeId>, Vec<Option<NodeId>>) = combos.into_iter().unzip();
    let weights =
        weights.into_iter().map(|w| w.ok_or_else(|| cx.invalid("no interpolation axis"))).collect::<R<_>>()?;
    Ok((stack(imp, flats)?, stack(imp, weights)?))
}

/// The first row of each batch entry (`n · per_batch`) of rows seen as `[N·P, C]`, shaped
/// `shape` (`N` first, ones after) to broadcast against flat indices.
pub(crate) fn batch_rows(imp: &mut Importer, cx: &NodeCx, shape: Shape, per_batch: u64) -> R<NodeId> {
    let n = imp.iota(cx, shape, 0, DType::I64)?;
    imp.binary_scalar(cx, BinaryOp::Mul, n, per_batch as f64)
}

/// The input `[N, C, S...]` as rows `[N·P, C]`, one per batch entry and spatial position.
pub(crate) fn pixel_rows(imp: &mut Importer, cx: &NodeCx, x: NodeId) -> R<NodeId> {
    let s = imp.ty(x).shape;
    let mut perm = vec![0];
    perm.extend(2..s.len());
    perm.push(1);
    let t = imp.permute(cx, x, perm)?;
    let rows = s.iter().enumerate().filter(|&(i, _)| i != 1).fold(Dim::known(1), |acc, (_, d)| acc.mul(d));
    imp.reshape(cx, t, vec![rows, s[1].clone()])
}

/// `Σ_t weight[..., t] · rows[flat[..., t]]` (or the maximum over `t` of those products):
/// one `gather` of the rows, `[..., C]`.
pub(crate) fn blend(
    imp: &mut Importer,
    cx: &NodeCx,
    rows: NodeId,
    flat: NodeId,
    weight: NodeId,
    op: ReduceOp,
) -> R<NodeId> {
    let last = imp.rank(flat);
    let weight = imp.cast(cx, weight, imp.dtype(rows))?;
    let weight = imp.unsqueeze(cx, weight, &[last])?;
    let picked = imp.add(cx, Op::Gather { axis: 0 }, &[rows, flat], None)?; // [..., taps, C]
    let weighted = imp.binary(cx, BinaryOp::Mul, picked, weight)?;
    imp.reduce(cx, op, weighted, vec![last - 1], false)
}

/// The taps around `coord` and their weights: `round` already applied for one tap, `floor`
/// and the fractional part for linear and cubic.
fn grid_taps(imp: &mut Importer, cx: &NodeCx, coord: NodeId, taps: usize) -> R<Vec<(NodeId, NodeId)>> {
    if taps == 1 {
        let one = imp.scalar(DType::F32, 1.0);
        return Ok(vec![(coord, imp.broadcast(cx, one, imp.ty(coord).shape)?)]);
    }
    let base = imp.unary(cx, UnaryOp::Floor, coord)?;
    let t = imp.binary(cx, BinaryOp::Sub, coord, base)?;
    let one = imp.scalar(DType::F32, 1.0);
    let u = imp.binary(cx, BinaryOp::Sub, one, t)?; // 1 - t
    let mut out = vec![];
    if taps == 2 {
        for (k, w) in [(0.0, u), (1.0, t)] {
            out.push((imp.binary_scalar(cx, BinaryOp::Add, base, k)?, w));
        }
        return Ok(out);
    }
    // Keys' cubic at distances t + 1, t, 1 - t, 2 - t from the taps base - 1 ... base + 2.
    let t1 = imp.binary_scalar(cx, BinaryOp::Add, t, 1.0)?;
    let u1 = imp.binary_scalar(cx, BinaryOp::Add, u, 1.0)?;
    for (k, s, near) in [(-1.0, t1, false), (0.0, t, true), (1.0, u, true), (2.0, u1, false)] {
        let w = keys_cubic(imp, cx, s, near)?;
        out.push((imp.binary_scalar(cx, BinaryOp::Add, base, k)?, w));
    }
    Ok(out)
}

/// Keys' cubic convolution kernel (a = -0.75) at distance `s`: `((a+2)s - (a+3))s² + 1` for
/// `s <= 1`, `((as - 5a)s + 8a)s - 4a` for `1 < s < 2`, in the reference's Horner form.
fn keys_cubic(imp: &mut Importer, cx: &NodeCx, s: NodeId, near: bool) -> R<NodeId> {
    const A: f64 = -0.75;
    use BinaryOp::*;
    if near {
        let v = imp.binary_scalar(cx, Mul, s, A + 2.0)?;
        let v = imp.binary_scalar(cx, Sub, v, A + 3.0)?;
        let v = imp.binary(cx, Mul, v, s)?;
        let v = imp.binary(cx, Mul, v, s)?;
        imp.binary_scalar(cx, Add, v, 1.0)
    } else {
        let v = imp.binary_scalar(cx, Mul, s, A)?;
        let v = imp.binary_scalar(cx, Sub, v, 5.0 * A)?;
        let v = imp.binary(cx, Mul, v, s)?;
        let v = imp.binary_scalar(cx, Add, v, 8.0 * A)?;
        let v = imp.binary(cx, Mul, v, s)?;
        imp.binary_scalar(cx, Sub, v, 4.0 * A)
    }
}

/// `x < lo or x > hi`.
fn outside(imp: &mut Importer, cx: &NodeCx, x: NodeId, lo: f64, hi: f64) -> R<NodeId> {
    let below = imp.compare_scalar(cx, CompareOp::Lt, x, lo)?;
    let above = imp.compare_scalar(cx, CompareOp::Gt, x, hi)?;
    imp.binary(cx, BinaryOp::Or, below, above)
}

fn clamp(imp: &mut Importer, cx: &NodeCx, x: NodeId, lo: f64, hi: f64) -> R<NodeId> {
    let x = imp.binary_scalar(cx, BinaryOp::Maximum, x, lo)?;
    imp.binary_scalar(cx, BinaryOp::Minimum, x, hi)
}

/// Reflects `x` by the nearer border until it lies in `[lo, hi]`, as the reference does: with
/// `d` the distance past the border and `w = hi - lo`, `n = floor(d / w)` and `r = d - n w`,
/// the result is `r` inside from the border crossed when `n` is even, from the other when
/// odd. A point interval (`w = 0`) reflects everything onto it.
fn reflect(imp: &mut Importer, cx: &NodeCx, x: NodeId, lo: f64, hi: f64) -> R<NodeId> {
    use BinaryOp::*;
    let width = hi - lo;
    if width == 0.0 {
        let v = imp.scalar(imp.dtype(x), lo);
        return imp.broadcast(cx, v, imp.ty(x).shape);
    }
    let lo_c = imp.scalar(imp.dtype(x), lo);
    let hi_c = imp.scalar(imp.dtype(x), hi);
    let fold = |imp: &mut Importer, past: NodeId, near: NodeId, far: NodeId, inward: f64| -> R<NodeId> {
        let q = imp.binary_scalar(cx, Div, past, width)?;
        let n = imp.unary(cx, UnaryOp::Floor, q)?;
        let nw = imp.binary_scalar(cx, Mul, n, width)?;
        let rest = imp.binary(cx, Sub, past, nw)?;
        let step = imp.binary_scalar(cx, Mul, rest, inward)?; // toward the inside from `near`
        let from_near = imp.binary(cx, Add, near, step)?;
        let from_far = imp.binary(cx, Sub, far, step)?;
        let parity = imp.binary_scalar(cx, Rem, n, 2.0)?;
        let even = imp.compare_scalar(cx, CompareOp::Eq, parity, 0.0)?;
        imp.select(cx, even, from_near, from_far)
    };
    let below = imp.binary(cx, Sub, lo_c, x)?;
    let from_below = fold(imp, below, lo_c, hi_c, 1.0)?;
    let above = imp.binary(cx, Sub, x, hi_c)?;
    let from_above = fold(imp, above, hi_c, lo_c, -1.0)?;
    let is_below = imp.compare_scalar(cx, CompareOp::Lt, x, lo)?;
    let is_above = imp.compare_scalar(cx, CompareOp::Gt, x, hi)?;
    let y = imp.select(cx, is_above, from_above, x)?;
    imp.select(cx, is_below, from_below, y)
}

/// `RoiAlign`, as ONNX's reference computes it, for a fixed `sampling_ratio` `g`: each
/// region's `g x g` sample points per output cell, each the bilinear blend of its four
/// neighbours (no weight outside `[-1, size]`, clamped at the far edge), gathered from the
/// input seen as `[N*H*W, C]` and averaged (or, for `max`, the largest weighted neighbour,
/// maximised over the samples). An adaptive sampling ratio (0) depends on the region sizes,
/// which are run-time values, and is refused.
fn roi_align(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    use BinaryOp::*;
    let (x, rois, batch) = (imp.input(cx, 0)?, imp.input(cx, 1)?, imp.input(cx, 2)?);
    imp.need_rank(cx, x, 4, "the input")?;
    imp.need_rank(cx, rois, 2, "the regions")?;
    let [c, h, w] = imp.known_axes(cx, x, 1..4)?[..] else { return Err(cx.invalid("the input must have rank 4")) };
    if cx.int("sampling_ratio", 0)? == 0 {
        return Err(cx.unsupported("`sampling_ratio` 0 (the sample count would depend on run-time region sizes)"));
    }
    let g = cx.geometry_int("sampling_ratio", 0, 1)?;
    let (oh, ow) = (cx.geometry_int("output_height", 1, 1)?, cx.geometry_int("output_width", 1, 1)?);
    if (oh * g) * (ow * g) > MAX_GEOMETRY {
        return Err(cx.invalid(format!("{oh}x{ow} cells of {g}x{g} samples are too many")));
    }
    let max = match cx.string("mode", "avg")?.as_str() {
        "avg" => false,
        "max" => true,
        m => return Err(cx.unsupported(format!("`mode` \"{m}\""))),
    };
    let half_pixel = match cx.string("coordinate_transformation_mode", "half_pixel")?.as_str() {
        "half_pixel" => true,
        "output_half_pixel" => false,
        m => return Err(cx.unsupported(format!("`coordinate_transformation_mode` \"{m}\""))),
    };
    let scale = cx.float("spatial_scale", 1.0)? as f64;
    let r = imp.ty(rois).shape[0].clone();
    let rois = imp.cast(cx, rois, DType::F32)?;
    let g = g as u64;
    // Per axis: the sample coordinates [R, out * g] and their two taps (index, weight).
    let axis_taps = |imp: &mut Importer, first: u64, out: i64, size: u64| -> R<Vec<(NodeId, NodeId)>> {
        let edge = |imp: &mut Importer, col: u64| -> R<NodeId> {
            let v = imp.slice(cx, rois, 1, col, col + 1, 1)?; // [R, 1]
            let v = imp.binary_scalar(cx, Mul, v, scale)?;
            imp.binary_scalar(cx, Sub, v, if half_pixel { 0.5 } else { 0.0 })
        };
        let (start, end) = (edge(imp, first)?, edge(imp, first + 2)?);
        let mut extent = imp.binary(cx, Sub, end, start)?;
        if !half_pixel {
            extent = imp.binary_scalar(cx, Maximum, extent, 1.0)?;
        }
        let bin = imp.binary_scalar(cx, Div, extent, out as f64)?;
        let n = out as u64 * g;
        let steps: Vec<f64> = (0..n).map(|k| (k / g) as f64 + ((k % g) as f64 + 0.5) / g as f64).collect();
        let t = Tensor::from_f64(DType::F32, &[1, n as usize], steps).map_err(|e| cx.invalid(e.to_string()))?;
        let steps = imp.tensor(cx, "roi_steps", &t)?;
        let offset = imp.binary(cx, Mul, steps, bin)?;
        let p = imp.binary(cx, Add, start, offset)?; // [R, out * g]
        let inside = {
            let o = outside(imp, cx, p, -1.0, size as f64)?;
            let zero = imp.scalar(DType::F32, 0.0);
            let one = imp.scalar(DType::F32, 1.0);
            imp.select(cx, o, zero, one)?
        };
        let p = imp.binary_scalar(cx, Maximum, p, 0.0)?;
        let low = imp.unary(cx, UnaryOp::Floor, p)?;
        let at_edge = imp.compare_scalar(cx, CompareOp::Ge, low, size as f64 - 1.0)?;
        let last = imp.scalar(DType::F32, size as f64 - 1.0);
        let low = imp.select(cx, at_edge, last, low)?;
        let p = imp.select(cx, at_edge, low, p)?;
        let next = imp.binary_scalar(cx, Add, low, 1.0)?;
        let high = imp.select(cx, at_edge, low, next)?;
        let l = imp.binary(cx, Sub, p, low)?;
        let one = imp.scalar(DType::F32, 1.0);
        let hw = imp.binary(cx, Sub, one, l)?;
        let (wl, wh) = (imp.binary(cx, Mul, hw, inside)?, imp.binary(cx, Mul, l, inside)?);
        let (low, high) = (imp.cast(cx, low, DType::I64)?, imp.cast(cx, high, DType::I64)?);
        Ok(vec![(low, wl), (high, wh)])
    };
    let d = Dim::known;
    let (ny, nx) = (oh as u64 * g, ow as u64 * g);
    // Sample rows along axis 1 and columns along axis 2 of [R, ny, nx].
    let mut axes = vec![];
    for (first, out, size, shape, stride) in [(1, oh, h, [d(ny), d(1)], w), (0, ow, w, [d(1), d(nx)], 1)] {
        let mut taps = vec![];
        for (index, weight) in axis_taps(imp, first, out, size)? {
            let s = vec![r.clone(), shape[0].clone(), shape[1].clone()];
            taps.push((imp.reshape(cx, index, s.clone())?, imp.reshape(cx, weight, s)?));
        }
        axes.push((taps, stride));
    }
    let base = imp.cast(cx, batch, DType::I64)?;
    let base = imp.binary_scalar(cx, Mul, base, (h * w) as f64)?;
    let base = imp.reshape(cx, base, vec![r.clone(), d(1), d(1)])?;
    let (flat, weight) = combine_taps(imp, cx, &axes, base)?; // [R, ny, nx, 4]
    let rows = pixel_rows(imp, cx, x)?;
    let samples = blend(imp, cx, rows, flat, weight, if max { ReduceOp::Max } else { ReduceOp::Sum })?; // [R, ny, nx, C]
    let cells = imp.reshape(cx, samples, vec![r, d(oh as u64), d(g), d(ow as u64), d(g), d(c)])?;
    let op = if max { ReduceOp::Max } else { ReduceOp::Mean };
    let y = imp.reduce(cx, op, cells, vec![2, 4], false)?; // [R, oh, ow, C]
    one(imp.permute(cx, y, vec![0, 3, 1, 2])?)
}
