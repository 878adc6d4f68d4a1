//! Linear maps along one axis: `Resize`, `Upsample` and `DFT`.
//!
//! `Resize` and `Upsample`. Resizing is separable: along each resized axis, output `o` is
//! `sum_i M[o, i] * x[i]` for an interpolation matrix `M` that depends only on the sizes and
//! the attributes. The matrix is computed here in f64 exactly as ONNX's reference computes
//! its coefficients (nearest, linear, cubic, antialiasing, `exclude_outside`, every
//! coordinate transformation); the graph applies it as a `matmul` (or, when each row picks one
//! element, as a `gather`, which is exact for every dtype).

use super::build::one;
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
    ("AffineGrid", entry(affine_grid, &["align_corners"])),
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
    let mut m = vec![0.0; n_out * n_in];
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
    let shape: Vec<usize> = ty
        .shape
        .iter()
        .map(|d| d.as_known().map(|v| v as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| cx.unsupported("resizing a symbolic shape"))?;
    let p = plan(imp, cx, &k.ctm, &shape, scales_slot, sizes_slot)?;
    let extrapolation = cx.float("extrapolation_value", 0.0)? as f64;
    for &a in &p.axes {
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
    let shape = super::movement::static_shape(imp, cx, x)?;
    let r = shape.len();
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
    if a == r - 1 || !(shape[r - 1] == 1 || shape[r - 1] == 2) {
        return Err(cx.invalid("the last axis holds the real (and imaginary) part; the signal axis is another"));
    }
    let (inverse, onesided) = (cx.int("inverse", 0)? != 0, cx.int("onesided", 0)? != 0);
    let n_in = shape[a] as usize;
    let len = match cx.has(1) {
        true => imp.const_scalar(cx, 1)? as usize,
        false if inverse && onesided => 2 * (n_in - 1),
        false => n_in,
    };
    if len == 0 {
        return Err(cx.invalid("`dft_length` must be positive"));
    }
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
    let mut am = vec![0.0; n_out * n_in];
    let mut bm = vec![0.0; n_out * n_in];
    for k in 0..n_out {
        for n in 0..used {
            let (kf, nf) = (k as f64, n as f64);
            let (re, im) = match (inverse, onesided) {
                (false, _) => ((tau * kf * nf / l).cos(), -(tau * kf * nf / l).sin()),
                (true, false) => ((tau * kf * nf / l).cos() / l, (tau * kf * nf / l).sin() / l),
                // irfft: output t = k, one-sided input n; the half-spectrum counts twice
                (true, true) => {
                    let weight = if n == 0 || (len % 2 == 0 && n == len / 2) { 1.0 } else { 2.0 };
                    (weight * (tau * kf * nf / l).cos() / l, weight * (tau * kf * nf / l).sin() / l)
                }
            };
            am[k * n_in + n] = re;
            bm[k * n_in + n] = im;
        }
    }
    let dtype = imp.dtype(x);
    let matrix = |imp: &mut Importer, m: &[f64], what: &str| -> R<NodeId> {
        let t: Vec<f64> = (0..n_in * n_out).map(|q| m[(q % n_out) * n_in + q / n_out]).collect();
        let t = Tensor::from_f64(dtype, &[n_in, n_out], t).map_err(|e| cx.invalid(e.to_string()))?;
        imp.tensor(cx, what, &t)
    };
    let (at, bt) = (matrix(imp, &am, "dft_re")?, matrix(imp, &bm, "dft_im")?);
    // Parts as [..., n] with the signal axis last.
    let mut perm: Vec<usize> = (0..r - 1).filter(|&i| i != a).collect();
    perm.push(a);
    let part = |imp: &mut Importer, p: u64| -> R<NodeId> {
        let s = imp.slice(cx, x, r - 1, p, p + 1, 1)?;
        let s = imp.reshape(cx, s, imp.ty(s).shape[..r - 1].to_vec())?;
        imp.permute(cx, s, perm.clone())
    };
    let xr = part(imp, 0)?;
    let xi = if shape[r - 1] == 2 { Some(part(imp, 1)?) } else { None };
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
        return one(yr);
    }
    let yi = back(imp, yi)?;
    one(imp.concat(cx, &[yr, yi], r - 1)?)
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
    let mut g = vec![0.0; (k + 1) * p];
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
