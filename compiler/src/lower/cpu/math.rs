//! Transcendentals as inline f32 polynomials (the Cephes single-precision forms), emitted
//! once here and used by every kernel: no libm call is left in a loop, so LLVM vectorizes
//! loops that use them. MLIR 22 has no non-test polynomial approximation pass.
//!
//! `erf`, `atan`, `sin` and `cos` are here too. Each keeps the spec's special cases: NaN propagates, `exp(+inf) = +inf`,
//! `exp(-inf) = 0`, `log(0) = -inf`, `log(x < 0) = NaN`, `log(+inf) = +inf`,
//! `tanh(±inf) = ±1`; `tests/lower_math.rs` checks them and the accuracy (class T, rtol
//! 1e-5) over the whole f32 range.

use super::{Emitter, Reg, V};
use crate::ir::DType;

impl Emitter<'_, '_> {
    fn f32c(&mut self, v: f64) -> V {
        self.immediate(DType::F32, v).v
    }

    fn fop(&mut self, op: &str, a: V, b: V) -> V {
        self.arith(op, a, b)
    }

    /// `c[0] + x·(c[1] + x·(c[2] + ...))`, by Horner's rule from the highest term.
    fn horner(&mut self, x: V, coeffs: &[f64]) -> V {
        let mut acc = self.f32c(coeffs[coeffs.len() - 1]);
        for &c in coeffs[..coeffs.len() - 1].iter().rev() {
            let k = self.f32c(c);
            acc = self.fmuladd(acc, x, k, "f32").v;
        }
        acc
    }

    /// `e^x`: `x = n·ln2 + r`, `|r| <= ln2/2`, `e^r` by a degree-6 polynomial, `2^n` built
    /// in the exponent bits. Results below `e^-86.5` (under 3e-38) are flushed to 0, which
    /// class T allows (atol 1e-6; subnormals may be flushed): the scale is then one normal
    /// power of two, eighteen vector instructions in all.
    pub(super) fn exp(&mut self, x: &Reg) -> Reg {
        let x = x.v;
        // Above 89 the result overflows to +inf by itself (n = 128); both clamps propagate NaN.
        let (hi, lo) = (self.f32c(89.0), self.f32c(-86.5));
        let clamped = self.fop("minimumf", x, hi);
        let clamped = self.fop("maximumf", clamped, lo);
        let log2e = self.f32c(std::f64::consts::LOG2_E);
        let t = self.fop("mulf", clamped, log2e);
        // Round to nearest even by adding and subtracting 1.5·2^23 (exact for |t| <= 150):
        // an add and a subtract on every CPU, where `roundeven` without SSE4.1 (`--cpu
        // generic`) is a libm call per element. The low bits of the sum are then `n + 126`
        // (the magic number carries the bias), so shifting them into the exponent field
        // gives `2^(n-1)` with no conversion.
        let magic = self.f32c(12_582_912.0 + 126.0);
        let shifted = self.fop("addf", t, magic);
        let n = self.fop("subf", shifted, magic);
        let (c1, c2) = (self.f32c(-0.693_359_375), self.f32c(2.121_944_4e-4));
        let r = self.fmuladd(n, c1, clamped, "f32").v;
        let r = self.fmuladd(n, c2, r, "f32").v;
        let p = self.horner(
            r,
            &[0.5, 1.666_666_545_9e-1, 4.166_579_589_4e-2, 8.333_451_907_3e-3, 1.398_199_950_7e-3, 1.987_569_150_0e-4],
        );
        let z = self.fop("mulf", r, r);
        let two = self.f32c(2.0);
        let y = self.fmuladd(p, z, r, "f32").v;
        // 2·e^r times 2^(n-1): `n - 1 + 127` is in [1, 254] for every n the clamps allow, and
        // the one rounding is the last multiply's, so the overflow edge is exact.
        let y2 = self.fmuladd(y, two, two, "f32").v;
        let bits = self.cast("bitcast", shifted, "i32");
        let shift = self.constant("23 : i32");
        let scale_bits = self.arith("shli", bits, shift);
        let scale = self.cast("bitcast", scale_bits, "f32");
        let e = self.fop("mulf", y2, scale);
        let (zero, under) = (self.f32c(0.0), self.cmpf("olt", x, lo));
        Reg::new(self.select(under, zero, e), "f32")
    }

    /// `ln x`: `x = m·2^e` with `m` in `[√½, √2)`, `ln(m)` by a degree-9 polynomial in
    /// `m - 1`; subnormal `x` is scaled by `2^23` first.
    pub(super) fn log(&mut self, x: &Reg) -> Reg {
        let x = x.v;
        let (tiny, big) = (self.f32c(1.175_494_350_822_287_5e-38), self.f32c(8_388_608.0));
        let small = self.cmpf("olt", x, tiny);
        let scaled = self.fop("mulf", x, big);
        let v = self.select(small, scaled, x);
        let bits = self.cast("bitcast", v, "i32");
        let shift = self.constant("23 : i32");
        let exp_bits = self.arith("shrui", bits, shift);
        let mask = self.constant("255 : i32");
        let exp_bits = self.arith("andi", exp_bits, mask);
        let bias = self.constant("126 : i32");
        let e = self.arith("subi", exp_bits, bias);
        let e = self.cast("sitofp", e, "f32");
        let sub = self.f32c(23.0);
        let e_scaled = self.fop("subf", e, sub);
        let e = self.select(small, e_scaled, e);
        let keep = self.constant("-2139095041 : i32");
        let half = self.constant("1056964608 : i32");
        let m_bits = self.arith("andi", bits, keep);
        let m_bits = self.arith("ori", m_bits, half);
        let m = self.cast("bitcast", m_bits, "f32");
        let (sqrthf, one) = (self.f32c(std::f64::consts::FRAC_1_SQRT_2), self.f32c(1.0));
        let low = self.cmpf("olt", m, sqrthf);
        let m2 = self.fop("addf", m, m);
        let m = self.select(low, m2, m);
        let m = self.fop("subf", m, one);
        let e1 = self.fop("subf", e, one);
        let e = self.select(low, e1, e);
        let z = self.fop("mulf", m, m);
        let p = self.horner(
            m,
            &[
                3.333_333_117_4e-1,
                -2.499_999_399_3e-1,
                2.000_071_476_5e-1,
                -1.666_805_766_5e-1,
                1.424_932_278_7e-1,
                -1.242_014_084_6e-1,
                1.167_699_874_0e-1,
                -1.151_461_031_0e-1,
                7.037_683_629_2e-2,
            ],
        );
        let y = self.fop("mulf", p, m);
        let y = self.fop("mulf", y, z);
        let c2 = self.f32c(-2.121_944_4e-4);
        let y = self.fmuladd(e, c2, y, "f32").v;
        let mhalf = self.f32c(-0.5);
        let y = self.fmuladd(z, mhalf, y, "f32").v;
        let y = self.fop("addf", m, y);
        let c1 = self.f32c(0.693_359_375);
        let y = self.fmuladd(e, c1, y, "f32").v;
        // The special values: 0 -> -inf, negative -> NaN, +inf -> +inf, NaN -> NaN.
        let (zero, ninf, inf, nan) =
            (self.f32c(0.0), self.f32c(f64::NEG_INFINITY), self.f32c(f64::INFINITY), self.f32c(f64::NAN));
        let is_zero = self.cmpf("oeq", x, zero);
        let y = self.select(is_zero, ninf, y);
        let is_inf = self.cmpf("oeq", x, inf);
        let y = self.select(is_inf, inf, y);
        let bad = self.cmpf("ult", x, zero);
        Reg::new(self.select(bad, nan, y), "f32")
    }

    /// `tanh x`: an odd rational function of `x` on `[-7.9, 7.9]` (±1 beyond in f32), as
    /// Eigen computes it: one division and no exponential.
    pub(super) fn tanh(&mut self, x: &Reg) -> Reg {
        let xs = x.v;
        let (lo, hi) = (self.f32c(-7.905_311_107_635_498), self.f32c(7.905_311_107_635_498));
        let c = self.fop("maximumf", xs, lo);
        let c = self.fop("minimumf", c, hi);
        let z = self.fop("mulf", c, c);
        let p = self.horner(
            z,
            &[
                4.893_524_558_917_86e-3,
                6.372_619_288_754_36e-4,
                1.485_722_357_179_79e-5,
                5.122_297_090_371_14e-8,
                -8.604_671_522_137_35e-11,
                2.000_187_904_824_77e-13,
                -2.760_768_477_423_55e-16,
            ],
        );
        let p = self.fop("mulf", p, c);
        let q = self.horner(
            z,
            &[4.893_525_185_543_85e-3, 2.268_434_632_439e-3, 1.185_347_056_866_54e-4, 1.198_258_394_667_02e-6],
        );
        let r = self.fop("divf", p, q);
        // Tiny inputs: tanh x = x to f32 precision, and exact for ±0.
        let ax = self.math("absf", xs, "f32");
        let tiny = self.f32c(4e-4);
        let small = self.cmpf("olt", ax, tiny);
        Reg::new(self.select(small, xs, r), "f32")
    }

    /// `erf x`: a rational function of `x²` on `[-4, 4]` (odd numerator), ±1 beyond, as
    /// Eigen and XLA compute it in f32.
    pub(super) fn erf(&mut self, x: &Reg) -> Reg {
        let xs = x.v;
        let (lo, hi) = (self.f32c(-4.0), self.f32c(4.0));
        let c = self.fop("maximumf", xs, lo);
        let c = self.fop("minimumf", c, hi);
        let z = self.fop("mulf", c, c);
        let p = self.horner(
            z,
            &[
                -1.609_603_332_624_15e-2,
                -2.954_599_808_540_25e-3,
                -7.349_906_303_268_55e-4,
                -5.692_506_394_623_46e-5,
                -2.101_024_020_825_08e-6,
                2.770_681_424_959_02e-8,
                -2.726_142_258_013_06e-10,
            ],
        );
        let p = self.fop("mulf", p, c);
        let q = self.horner(
            z,
            &[
                -1.426_473_905_141_89e-2,
                -7.373_329_167_204_68e-3,
                -1.682_826_974_382_03e-3,
                -2.133_740_552_789_05e-4,
                -1.456_607_184_649_96e-5,
            ],
        );
        Reg::new(self.fop("divf", p, q), "f32")
    }

    /// `atan x`: reduced to `|x| <= tan(π/8)` by `π/4 + atan((x-1)/(x+1))` or
    /// `π/2 + atan(-1/x)`, then an odd polynomial; the sign restored at the end.
    pub(super) fn atan(&mut self, x: &Reg) -> Reg {
        let xs = x.v;
        let ax = self.math("absf", xs, "f32");
        let (t3, t1) = (self.f32c(2.414_213_562_373_095), self.f32c(0.414_213_562_373_095));
        let (one, zero) = (self.f32c(1.0), self.f32c(0.0));
        let far = self.cmpf("ogt", ax, t3);
        let mid = self.cmpf("ogt", ax, t1);
        let minus_one = self.f32c(-1.0);
        let inv = self.fop("divf", minus_one, ax);
        let num = self.fop("subf", ax, one);
        let den = self.fop("addf", ax, one);
        let ratio = self.fop("divf", num, den);
        let r = self.select(mid, ratio, ax);
        let r = self.select(far, inv, r);
        let (q1, q2) = (self.f32c(std::f64::consts::FRAC_PI_4), self.f32c(std::f64::consts::FRAC_PI_2));
        let y0 = self.select(mid, q1, zero);
        let y0 = self.select(far, q2, y0);
        let z = self.fop("mulf", r, r);
        let p = self.horner(z, &[-3.333_294_915_39e-1, 1.997_771_064_78e-1, -1.387_768_560_32e-1, 8.053_744_495_38e-2]);
        let pz = self.fop("mulf", p, z);
        let y = self.fmuladd(pz, r, r, "f32").v;
        let y = self.fop("addf", y, y0);
        let negative = self.cmpf("olt", xs, zero);
        let neg_y = self.unop("arith.negf", y);
        Reg::new(self.select(negative, neg_y, y), "f32")
    }

    /// `sin x` or `cos x`: `x = k·π/2 + r` (three-part Cody–Waite), the sine and cosine
    /// polynomials of `r`, picked and signed by the quadrant `k mod 4`. Beyond `|x| = 1e7`
    /// the spec's tolerance (`1e-6·|x|`) exceeds the range, and 0 is returned; ±inf and
    /// NaN give NaN.
    pub(super) fn sin_cos(&mut self, x: &Reg, cosine: bool) -> Reg {
        let xs = x.v;
        let two_over_pi = self.f32c(std::f64::consts::FRAC_2_PI);
        let t = self.fop("mulf", xs, two_over_pi);
        let k = self.math("roundeven", t, "f32");
        let (p1, p2, p3) =
            (self.f32c(-1.570_312_5), self.f32c(-4.837_512_969_970_703e-4), self.f32c(-7.549_789_954_891_882e-8));
        let r = self.fmuladd(k, p1, xs, "f32").v;
        let r = self.fmuladd(k, p2, r, "f32").v;
        let r = self.fmuladd(k, p3, r, "f32").v;
        let z = self.fop("mulf", r, r);
        let sp = self.horner(z, &[-1.666_665_461_1e-1, 8.332_160_873_6e-3, -1.951_529_589_1e-4]);
        let rz = self.fop("mulf", r, z);
        let sin_r = self.fmuladd(sp, rz, r, "f32").v;
        let cp = self.horner(z, &[4.166_664_568_298_827e-2, -1.388_731_625_493_765e-3, 2.443_315_711_809_948e-5]);
        let zz = self.fop("mulf", z, z);
        let (half, one) = (self.f32c(-0.5), self.f32c(1.0));
        let c = self.fmuladd(z, half, one, "f32").v;
        let cos_r = self.fmuladd(cp, zz, c, "f32").v;
        // Quadrant q = k mod 4 (two's complement keeps it right for negative k); cosine is
        // sine one quadrant on.
        let (big, zero) = (self.f32c(1e7), self.f32c(0.0));
        let ax = self.math("absf", xs, "f32");
        let in_range = self.cmpf("olt", ax, big);
        let k_safe = self.select(in_range, k, zero);
        let ki = self.cast("fptosi", k_safe, "i32");
        let ki = if cosine {
            let one_i = self.constant("1 : i32");
            self.arith("addi", ki, one_i)
        } else {
            ki
        };
        let three = self.constant("3 : i32");
        let q = self.arith("andi", ki, three);
        let one_i = self.constant("1 : i32");
        let odd = self.arith("andi", q, one_i);
        let zero_i = self.constant("0 : i32");
        let use_cos = self.cmpi("ne", odd, zero_i);
        let two_i = self.constant("2 : i32");
        let flip_bit = self.arith("andi", q, two_i);
        let flip = self.cmpi("ne", flip_bit, zero_i);
        let v = self.select(use_cos, cos_r, sin_r);
        let neg_v = self.unop("arith.negf", v);
        let v = self.select(flip, neg_v, v);
        let v = self.select(in_range, v, zero);
        let inf = self.f32c(f64::INFINITY);
        let bad = self.cmpf("ueq", ax, inf);
        let nan = self.f32c(f64::NAN);
        Reg::new(self.select(bad, nan, v), "f32")
    }
}

impl Emitter<'_, '_> {
    /// `math.OP x` for a rounding, `absf` or `sqrt`. On the GPU it is the one PTX instruction
    /// for it, as inline PTX: MLIR's NVVM conversion sends these ops (and their LLVM
    /// intrinsics) to libdevice, which only a CUDA installation has.
    pub(super) fn math(&mut self, op: &str, x: V, ty: &str) -> V {
        if !self.device.is_gpu() {
            return self.unop(&format!("math.{op}"), x);
        }
        let t = if ty == "f64" { "f64" } else { "f32" };
        let instruction = match op {
            "absf" => format!("abs.{t}"),
            "sqrt" => format!("sqrt.rn.{t}"),
            "floor" => format!("cvt.rmi.{t}.{t}"),
            "ceil" => format!("cvt.rpi.{t}.{t}"),
            "trunc" => format!("cvt.rzi.{t}.{t}"),
            _ => format!("cvt.rni.{t}.{t}"),
        };
        let constraint = if ty == "f64" { "d" } else { "f" };
        let (asm, constraints) = (format!("\"{instruction} $0, $1;\""), format!("\"={constraint},{constraint}\""));
        self.op("llvm.inline_asm", &[x], ty, &[("asm_string", &asm), ("constraints", &constraints)])
    }
}

/// What NVPTX has no instruction or call for: MLIR's GPU pipeline leaves `powf` and `remf`
/// to libdevice's `__nv_powf`/`__nv_fmodf`, which only a CUDA installation has, so GPU
/// kernels compute them here.
impl Emitter<'_, '_> {
    /// C's `powf` as `e^(y·ln|x|)` with its special cases: `pow(x, ±0) = 1`, `pow(1, y) = 1`,
    /// `pow(-1, ±inf) = 1`, a negative `x` (or `-0`) with an odd integer `y` negative, with
    /// a non-integer `y` NaN (but `-inf`, whose powers are infinities or zeros). Accurate to
    /// about `|y·ln|x||·1.2e-7` relative, within class T while the result is a finite f32.
    pub(super) fn pow_by_exp_log(&mut self, x: &Reg, y: &Reg) -> Reg {
        let (xn, yn) = (x.v, y.v);
        let ax = self.math("absf", xn, "f32");
        let ln = self.log(&Reg::new(ax, "f32"));
        let t = self.fop("mulf", yn, ln.v);
        let mut r = self.exp(&Reg::new(t, "f32")).v;
        let whole = self.math("trunc", yn, "f32");
        let integral = self.cmpf("oeq", whole, yn);
        let half = self.f32c(0.5);
        let half_y = self.fop("mulf", yn, half);
        let half_whole = self.math("trunc", half_y, "f32");
        let even = self.cmpf("oeq", half_whole, half_y);
        let yes = self.constant("true");
        let not_even = self.arith("xori", even, yes);
        let odd = self.arith("andi", integral, not_even);
        let bits = self.cast("bitcast", xn, "i32");
        let zero_i = self.constant("0 : i32");
        let negative = self.cmpi("slt", bits, zero_i);
        let flip = self.arith("andi", negative, odd);
        let minus = self.unop("arith.negf", r);
        r = self.select(flip, minus, r);
        let (zero, neg_inf, nan) = (self.f32c(0.0), self.f32c(f64::NEG_INFINITY), self.f32c(f64::NAN));
        let below = self.cmpf("olt", xn, zero);
        let finite_below = self.cmpf("one", xn, neg_inf);
        let below = self.arith("andi", below, finite_below);
        let fractional = self.arith("xori", integral, yes);
        let undefined = self.arith("andi", below, fractional);
        r = self.select(undefined, nan, r);
        let (one, inf) = (self.f32c(1.0), self.f32c(f64::INFINITY));
        let ay = self.math("absf", yn, "f32");
        let unit_base = self.cmpf("oeq", ax, one);
        let infinite_y = self.cmpf("oeq", ay, inf);
        let unit_to_inf = self.arith("andi", unit_base, infinite_y);
        let base_one = self.cmpf("oeq", xn, one);
        let zero_power = self.cmpf("oeq", yn, zero);
        for cond in [unit_to_inf, base_one, zero_power] {
            r = self.select(cond, one, r);
        }
        Reg::new(r, "f32")
    }

    /// C's `fmodf` as `x - trunc(x/y)·y` in f64 (exact while `|x/y| < 2^24`; beyond, the
    /// result is below `|x|·2^-24`, inside the contract's `rtol·|x|`), with `rem(x, ±inf) = x`.
    pub(super) fn rem_by_division(&mut self, x: &Reg, y: &Reg) -> Reg {
        let (xn, yn) = (x.v, y.v);
        let xd = self.cast("extf", xn, "f64");
        let yd = self.cast("extf", yn, "f64");
        let q = self.arith("divf", xd, yd);
        let q = self.math("trunc", q, "f64");
        let nq = self.unop("arith.negf", q);
        let rd = self.fmuladd(nq, yd, xd, "f64").v;
        let r = self.cast("truncf", rd, "f32");
        // `x + (x - x)` is `x`, or NaN for an infinite `x`.
        let d = self.fop("subf", xn, xn);
        let same = self.fop("addf", xn, d);
        let ay = self.math("absf", yn, "f32");
        let inf = self.f32c(f64::INFINITY);
        let infinite = self.cmpf("oeq", ay, inf);
        Reg::new(self.select(infinite, same, r), "f32")
    }
}
