#!/usr/bin/env python3
"""Writes the golden cases of the reference interpreter: one-op graphs on random inputs.

Each case is a folder `compiler/tests/golden/<case>/` with `input_<i>.npy` (operands in
order), `output.npy` and `case.txt`, which `compiler/tests/interp_golden.rs` reads:

    # free text
    op <op name> [key=value ...]     op names as printed in the IR; lists are `1,2,3`
    input <dtype>                    one line per operand, in operand order
    output <dtype>
    tol <rtol> <atol>                |got - want| <= atol + rtol * |want|

The expected output is computed in float64 NumPy from the inputs (already rounded to their
dtype), then rounded once to the output dtype (round to nearest, ties to even). NumPy has no
bf16: bf16 tensors are stored as `<f4` holding bf16 values, and rounded by `to_bf16` below.

Tolerances (the numerics contract for a reference computed in f64 and rounded once): f32
rtol 1e-5 atol 1e-6; f16 rtol 1e-3 atol 1e-5 (one f16 ulp is at most 2^-10 relative); bf16
rtol 8e-3 atol 1e-5 (one bf16 ulp is at most 2^-7 relative); integers and bools exact.

Run from anywhere: `python3 scripts/gen_golden.py` (NumPy only). Fixed seed: the output is
the same on every run.
"""

import math
import os
import shutil

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compiler", "tests", "golden")
SEED = 20240607
TOL = {
    "f32": (1e-5, 1e-6),
    "f16": (1e-3, 1e-5),
    "bf16": (8e-3, 1e-5),
    "i32": (0.0, 0.0),
    "i64": (0.0, 0.0),
    "bool": (0.0, 0.0),
}


def to_format(x, precision, emin, emax):
    """Rounds float64 `x` to a binary format: `precision` significand bits, normal exponents
    emin..emax, subnormals, ties to even, overflow to inf."""
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    finite = np.isfinite(x) & (x != 0)
    _, e = np.frexp(x[finite])
    quantum = np.ldexp(1.0, np.maximum(e - 1, emin) - precision + 1)
    r = np.round(x[finite] / quantum) * quantum
    r[np.abs(r) >= 2.0 ** (emax + 1)] = np.inf * np.sign(r[np.abs(r) >= 2.0 ** (emax + 1)])
    out[finite] = r
    return out


def to_bf16(x):
    return to_format(x, 8, -126, 127)


def round_to(x, dtype):
    """The values of `x` (float64 or ints) as values of `dtype`, returned as float64/int64/bool."""
    x = np.asarray(x)
    if dtype == "f32":
        return x.astype(np.float64).astype(np.float32).astype(np.float64)
    if dtype == "f16":
        return x.astype(np.float64).astype(np.float16).astype(np.float64)
    if dtype == "bf16":
        return to_bf16(x.astype(np.float64))
    if dtype == "i32":
        return x.astype(np.int64).astype(np.int32).astype(np.int64)
    if dtype == "i64":
        return x.astype(np.int64)
    if dtype == "bool":
        return x.astype(np.bool_)
    raise ValueError(dtype)


def storage(x, dtype):
    """The array written to the .npy file (bf16 as float32)."""
    kind = {"f32": np.float32, "f16": np.float16, "bf16": np.float32, "i32": np.int32, "i64": np.int64, "bool": np.bool_}
    return np.ascontiguousarray(np.asarray(x).astype(kind[dtype]))


rng = np.random.default_rng(SEED)


def rf(shape, dtype="f32", lo=-1.0, hi=1.0):
    """Random floats, rounded to `dtype`."""
    return round_to(rng.uniform(lo, hi, shape), dtype)


def ri(shape, dtype="i32", lo=-50, hi=50):
    return rng.integers(lo, hi + 1, shape).astype(np.int64)


CASES = []


def case(name, op, inputs, out_dtype, expected, note):
    """`inputs` is a list of (dtype, values); `expected` is float64/int/bool before rounding."""
    CASES.append((name, op, inputs, out_dtype, round_to(expected, out_dtype), note))


def attrs(op, **kw):
    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return ",".join(str(x) for x in v)
        if isinstance(v, float):
            return repr(v)
        return str(v)

    return " ".join([op] + [f"{k}={fmt(v)}" for k, v in kw.items()])


# ------------------------------------------------------------------ elementwise binary

a, b = rf((3, 1, 4)), rf((5, 4))
case("add_broadcast_f32", "add", [("f32", a), ("f32", b)], "f32", a + b, "add with NumPy broadcasting [3,1,4] + [5,4]")
a, b = rf((2, 3, 4), "f16", -4, 4), rf((2, 3, 4), "f16", -4, 4)
case("sub_f16", "sub", [("f16", a), ("f16", b)], "f16", a - b, "f16 sub, rounded once")
a, b = rf((4, 4), "bf16", -3, 3), rf((4, 1), "bf16", -3, 3)
case("mul_bf16", "mul", [("bf16", a), ("bf16", b)], "bf16", a * b, "bf16 mul with a broadcast column")
a, b = rf((3, 4), "f32", -5, 5), rf((3, 4), "f32", 0.5, 2.0) * np.where(rng.random((3, 4)) < 0.5, -1, 1)
case("div_f32", "div", [("f32", a), ("f32", b)], "f32", a / b, "f32 div")
a, b = rf((12,), "f32", -10, 10), rf((12,), "f32", 0.5, 3.0) * np.where(rng.random(12) < 0.5, -1, 1)
case("rem_f32", "rem", [("f32", a), ("f32", b)], "f32", np.fmod(a, b), "rem takes the sign of the dividend (fmod)")
a, b = rf((2, 5), "f32", 0.1, 3.0), rf((2, 5), "f32", -2, 2)
case("pow_f32", "pow", [("f32", a), ("f32", b)], "f32", np.power(a, b), "pow of positive bases")
a, b = rf((2, 6)), rf((2, 6))
a[0, 1], b[1, 3], a[1, 5], b[1, 5] = np.nan, np.nan, np.nan, np.nan
case("maximum_nan_f32", "maximum", [("f32", a), ("f32", b)], "f32", np.maximum(a, b), "maximum propagates NaN")
case("minimum_nan_f32", "minimum", [("f32", a), ("f32", b)], "f32", np.minimum(a, b), "minimum propagates NaN")
a, b = ri((3, 5)), ri((3, 5), lo=1, hi=7) * np.where(rng.random((3, 5)) < 0.5, -1, 1)
case("div_i32", "div", [("i32", a), ("i32", b)], "i32", np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b)), "integer div truncates toward zero")
a, b = ri((3, 5), "i64"), ri((3, 5), lo=1, hi=7) * np.where(rng.random((3, 5)) < 0.5, -1, 1)
case("rem_i64", "rem", [("i64", a), ("i64", b)], "i64", np.fmod(a, b), "integer rem takes the sign of the dividend")
a, b = ri((8,), lo=-(2**31), hi=2**31 - 1), ri((8,), lo=-(2**31), hi=2**31 - 1)
case("add_wrap_i32", "add", [("i32", a), ("i32", b)], "i32", a + b, "i32 add wraps")

# ------------------------------------------------------------------ elementwise unary

x = rf((3, 4), "f32", -4, 4)
case("exp_f32", "exp", [("f32", x)], "f32", np.exp(x), "exp")
x = rf((3, 4), "f16", 0.01, 20)
case("log_f16", "log", [("f16", x)], "f16", np.log(x), "log of positive f16 values")
x = rf((3, 4), "f32", 0, 10)
case("sqrt_f32", "sqrt", [("f32", x)], "f32", np.sqrt(x), "sqrt")
x = rf((3, 4), "f32", 0.01, 10)
case("rsqrt_f32", "rsqrt", [("f32", x)], "f32", 1 / np.sqrt(x), "rsqrt")
x = rf((3, 4), "bf16", -3, 3)
case("tanh_bf16", "tanh", [("bf16", x)], "bf16", np.tanh(x), "tanh in bf16")
x = rf((3, 4), "f16", -8, 8)
case("sigmoid_f16", "sigmoid", [("f16", x)], "f16", 1 / (1 + np.exp(-x)), "sigmoid in f16")
x = rf((4, 5), "f32", -3, 3)
case("erf_f32", "erf", [("f32", x)], "f32", np.vectorize(math.erf)(x), "erf against Python's math.erf")
x = rf((3, 4), "f32", -6, 6)
case("sin_f32", "sin", [("f32", x)], "f32", np.sin(x), "sin")
case("cos_f32", "cos", [("f32", x)], "f32", np.cos(x), "cos")
x = np.concatenate([rf((8,), "f32", -5, 5), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]])
case("round_f32", "round", [("f32", x)], "f32", np.round(x), "round half to even")
x = rf((3, 4), "f32", 0.1, 4) * np.where(rng.random((3, 4)) < 0.5, -1, 1)
case("reciprocal_f32", "reciprocal", [("f32", x)], "f32", 1 / x, "reciprocal")

# ------------------------------------------------------------------ compare, select, cast

a, b = rf((2, 1, 3)), rf((4, 3))
b[1, 1] = np.nan
case("lt_f32", "lt", [("f32", a), ("f32", b)], "bool", a < b, "lt with broadcasting and a NaN")
c, a, b = rng.random((2, 1, 4)) < 0.5, rf((3, 4)), rf((2, 3, 1))
case("select_f32", "select", [("bool", c), ("f32", a), ("f32", b)], "f32", np.where(c, a, b), "select broadcasts all three operands")
x = rf((3, 5), "f32", -100, 100)
case("cast_f32_i32", "cast", [("f32", x)], "i32", np.trunc(x), "cast truncates toward zero")
x = rf((3, 5), "f32", -100, 100)
case("cast_f32_bf16", "cast", [("f32", x)], "bf16", x, "cast rounds to nearest even")
x = ri((2, 6), "i64", -3, 3)
case("cast_i64_bool", "cast", [("i64", x)], "bool", x != 0, "int to bool is x != 0")

# ------------------------------------------------------------------ reductions

x = rf((3, 4, 5))
case("sum_f32", attrs("sum", axes=[0, 2], keepdims=True), [("f32", x)], "f32", x.sum(axis=(0, 2), keepdims=True), "sum over axes 0 and 2, keepdims")
x = rf((3, 4, 5), "f16", -2, 2)
case("mean_f16", attrs("mean", axes=[1], keepdims=False), [("f16", x)], "f16", x.mean(axis=1), "f16 mean, accumulated wide")
x = rf((3, 6))
x[1, 2] = np.nan
case("max_nan_f32", attrs("max", axes=[1], keepdims=False), [("f32", x)], "f32", np.max(x, axis=1), "max propagates NaN")
case("min_f32", attrs("min", axes=[0], keepdims=True), [("f32", x)], "f32", np.min(x, axis=0, keepdims=True), "min with NaN in one column")
x = rf((2, 3, 4), "f32", 0.5, 1.5)
case("prod_f32", attrs("prod", axes=[1, 2], keepdims=False), [("f32", x)], "f32", np.prod(x, axis=(1, 2)), "prod")
x = ri((4, 5), "i64", -3, 3)
case("sum_i64", attrs("sum", axes=[0], keepdims=False), [("i64", x)], "i64", x.sum(axis=0), "integer sum")
x = rf((3, 5))
x[2, 3] = np.nan
case("argmax_f32", attrs("argmax", axis=1, keepdims=False), [("f32", x)], "i64", np.argmax(x, axis=1), "argmax, the first NaN wins")
x = ri((4, 3), "i32", -2, 2)
case("argmin_i32", attrs("argmin", axis=0, keepdims=True), [("i32", x)], "i64", np.argmin(x, axis=0)[None, :], "argmin of ints with ties: the first")

# ------------------------------------------------------------------ matmul

a, b = rf((2, 1, 3, 4)), rf((3, 4, 5))
case("matmul_batched_f32", "matmul", [("f32", a), ("f32", b)], "f32", np.matmul(a, b), "batched matmul with broadcast batch dims")
a, b = rf((4, 16), "f16"), rf((16, 3), "f16")
case("matmul_f16", "matmul", [("f16", a), ("f16", b)], "f16", a @ b, "f16 matmul accumulated in f64")
a, b = ri((3, 4), "i64", -9, 9), ri((4, 2), "i64", -9, 9)
case("matmul_i64", "matmul", [("i64", a), ("i64", b)], "i64", a @ b, "integer matmul")

# ------------------------------------------------------------------ movement

x = rf((2, 3, 4))
case("reshape_f32", "reshape", [("f32", x)], "f32", x.reshape(4, 6), "reshape [2,3,4] -> [4,6]")
case("permute_f32", attrs("permute", perm=[2, 0, 1]), [("f32", x)], "f32", np.transpose(x, (2, 0, 1)), "permute")
x = ri((3, 1), "i64")
case("broadcast_i64", "broadcast", [("i64", x)], "i64", np.broadcast_to(x, (2, 3, 4)), "broadcast [3,1] -> [2,3,4]")
x = rf((4, 10))
case("slice_step_f32", attrs("slice", axis=1, start=1, end=9, step=3), [("f32", x)], "f32", x[:, 1:9:3], "slice with a step")
a, b, c = rf((2, 1, 3)), rf((2, 2, 3)), rf((2, 3, 3))
case("concat_f32", attrs("concat", axis=1), [("f32", a), ("f32", b), ("f32", c)], "f32", np.concatenate([a, b, c], axis=1), "concat of three")
x = rf((2, 3), "bf16")
case("pad_bf16", attrs("pad", low=[1, 0], high=[0, 2], value=0.3), [("bf16", x)], "bf16", np.pad(x, ((1, 0), (0, 2)), constant_values=0.3), "pad with a value rounded to bf16")
x, i = rf((3, 5, 2)), rng.integers(-5, 5, (2, 3)).astype(np.int64)
case("gather_f32", attrs("gather", axis=1), [("f32", x), ("i64", i)], "f32", np.take(x, i, axis=1), "gather with negative indices")
case("iota_i64", attrs("iota", axis=1), [], "i64", np.broadcast_to(np.arange(3)[None, :, None], (2, 3, 4)), "iota along axis 1")

# ------------------------------------------------------------------ conv and pool


def conv2d(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    top, left, bottom, right = padding
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    per = o // groups
    for oc in range(o):
        g = oc // per
        for y in range(oh):
            for z in range(ow):
                ys, zs = y * stride[0], z * stride[1]
                patch = xp[:, g * cg:(g + 1) * cg, ys:ys + dilation[0] * (kh - 1) + 1:dilation[0], zs:zs + dilation[1] * (kw - 1) + 1:dilation[1]]
                out[:, oc, y, z] = (patch * w[oc]).sum(axis=(1, 2, 3)) + (b[oc] if b is not None else 0.0)
    return out


x, w, b = rf((2, 4, 7, 6)), rf((6, 2, 3, 3)), rf((6,))
geom = dict(stride=[2, 1], padding=[1, 0, 2, 1], dilation=[1, 2], groups=2)
case("conv2d_f32", attrs("conv2d", **geom), [("f32", x), ("f32", w), ("f32", b)], "f32", conv2d(x, w, b, geom["stride"], geom["padding"], geom["dilation"], 2), "conv2d: stride, asymmetric padding, dilation, groups, bias")
x, w = rf((1, 3, 5, 5), "f16"), rf((2, 3, 2, 2), "f16")
case("conv2d_f16", attrs("conv2d", stride=[1, 1], padding=[0, 0, 0, 0], dilation=[1, 1], groups=1), [("f16", x), ("f16", w)], "f16", conv2d(x, w, None, [1, 1], [0, 0, 0, 0], [1, 1], 1), "f16 conv2d without bias")


def pool(x, kind, kernel, stride, padding, include):
    top, left, bottom, right = padding
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    ones = np.pad(np.ones_like(x), ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, w = xp.shape
    oh, ow = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
    out = np.zeros((x.shape[0], x.shape[1], oh, ow))
    for y in range(oh):
        for z in range(ow):
            sl = (slice(None), slice(None), slice(y * stride[0], y * stride[0] + kernel[0]), slice(z * stride[1], z * stride[1] + kernel[1]))
            if kind == "max":
                out[:, :, y, z] = xp[sl].max(axis=(2, 3))
            else:
                count = kernel[0] * kernel[1] if include else ones[sl].sum(axis=(2, 3))
                out[:, :, y, z] = xp[sl].sum(axis=(2, 3)) / count
    return out


x = rf((1, 2, 6, 7))
win = dict(kernel=[3, 2], stride=[2, 2], padding=[1, 1, 1, 0])
case("max_pool2d_f32", attrs("max_pool2d", count_include_pad=False, **win), [("f32", x)], "f32", pool(x, "max", win["kernel"], win["stride"], win["padding"], False), "max pooling with padding")
case("avg_pool2d_f32", attrs("avg_pool2d", count_include_pad=False, **win), [("f32", x)], "f32", pool(x, "avg", win["kernel"], win["stride"], win["padding"], False), "average pooling over in-bounds elements")
case("avg_pool2d_incl_f32", attrs("avg_pool2d", count_include_pad=True, **win), [("f32", x)], "f32", pool(x, "avg", win["kernel"], win["stride"], win["padding"], True), "average pooling counting the padding")

# ------------------------------------------------------------------ composites


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


x = rf((3, 5, 2), "f32", -4, 4)
case("softmax_f32", attrs("softmax", axis=1), [("f32", x)], "f32", softmax(x, 1), "softmax along a middle axis")
x = rf((3, 6), "f16", -4, 4)
case("log_softmax_f16", attrs("log_softmax", axis=1), [("f16", x)], "f16", log_softmax(x, 1), "log_softmax in f16")
x, g, bb = rf((2, 3, 4), "f32", -3, 3), rf((3, 4)), rf((3, 4))
mu = x.mean(axis=(1, 2), keepdims=True)
var = ((x - mu) ** 2).mean(axis=(1, 2), keepdims=True)
case("layer_norm_f32", attrs("layer_norm", axis=1, eps=1e-5), [("f32", x), ("f32", g), ("f32", bb)], "f32", (x - mu) / np.sqrt(var + 1e-5) * g + bb, "layer_norm over the last two axes")
x, g = rf((2, 3, 8), "bf16", -3, 3), rf((8,), "bf16")
case("rms_norm_bf16", attrs("rms_norm", axis=2, eps=1e-6), [("bf16", x), ("bf16", g)], "bf16", x / np.sqrt((x**2).mean(axis=2, keepdims=True) + 1e-6) * g, "rms_norm in bf16")
x = rf((3, 5), "f32", -4, 4)
case("gelu_f32", attrs("gelu", approx="none"), [("f32", x)], "f32", 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), "exact gelu")
x = rf((3, 5), "f16", -4, 4)
case("gelu_tanh_f16", attrs("gelu", approx="tanh"), [("f16", x)], "f16", 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))), "tanh-approximated gelu")
x = rf((3, 5), "f32", -6, 6)
case("silu_f32", "silu", [("f32", x)], "f32", x / (1 + np.exp(-x)), "silu")
x, w, bb = rf((2, 3, 5)), rf((4, 5)), rf((4,))
case("linear_f32", "linear", [("f32", x), ("f32", w), ("f32", bb)], "f32", x @ w.T + bb, "linear: x @ w^T + b")


def attention(q, k, v, scale, causal, mask):
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == np.bool_ else s + mask
    if causal:
        lq, lk = s.shape[-2], s.shape[-1]
        s = np.where(np.arange(lk)[None, :] <= np.arange(lq)[:, None], s, -np.inf)
    return softmax(s, -1) @ v


q, k, v, m = rf((2, 2, 4, 8)), rf((2, 2, 6, 8)), rf((2, 2, 6, 3)), rf((4, 6))
case("attention_causal_f32", attrs("attention", causal=True, scale=0.35), [("f32", q), ("f32", k), ("f32", v), ("f32", m)], "f32", attention(q, k, v, 0.35, True, m), "causal attention (top-left aligned) with an added float mask")
q, k, v = rf((2, 5, 4)), rf((2, 7, 4)), rf((2, 7, 4))
m = rng.random((2, 1, 7)) < 0.6
m[..., 0] = True
case("attention_bool_mask_f32", attrs("attention", causal=False, scale=0.5), [("f32", q), ("f32", k), ("f32", v), ("bool", m)], "f32", attention(q, k, v, 0.5, False, m), "attention with a broadcast bool mask")
q, k, v = rf((1, 3, 8), "f16"), rf((1, 3, 8), "f16"), rf((1, 3, 8), "f16")
case("attention_f16", attrs("attention", causal=False, scale=1 / math.sqrt(8)), [("f16", q), ("f16", k), ("f16", v)], "f16", attention(q, k, v, 1 / math.sqrt(8), False, None), "f16 attention without a mask")


def write_all():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for name, op, inputs, out_dtype, expected, note in CASES:
        folder = os.path.join(ROOT, name)
        os.makedirs(folder)
        lines = [f"# {note}", f"op {op}"]
        for i, (dtype, values) in enumerate(inputs):
            np.save(os.path.join(folder, f"input_{i}.npy"), storage(values, dtype))
            lines.append(f"input {dtype}")
        np.save(os.path.join(folder, "output.npy"), storage(expected, out_dtype))
        lines.append(f"output {out_dtype}")
        lines.append("tol {} {}".format(*TOL[out_dtype]))
        with open(os.path.join(folder, "case.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    print(f"wrote {len(CASES)} cases to {os.path.normpath(ROOT)}")


if __name__ == "__main__":
    write_all()
