//! Special functions the standard library lacks.
//!
//! `erf` follows the method of FreeBSD's `s_erf.c` (from Sun's fdlibm: "Developed at SunPro, a
//! Sun Microsystems, Inc. business. Permission to use, copy, modify, and distribute this
//! software is freely granted, provided that this notice is preserved."): rational
//! approximations on four intervals, accurate to under one ulp of f64.

// The coefficients are written as published, with more digits than an f64 holds.
#![allow(clippy::excessive_precision)]

/// Coefficients for erf on `|x| < 0.84375`: `erf(x) = x + x * P(x²)/Q(x²)`.
const PP: [f64; 5] = [
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
];
const QQ: [f64; 6] = [
    1.0,
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
];
/// On `0.84375 <= |x| < 1.25`: `erf(x) = ERX + P(s)/Q(s)` with `s = |x| - 1`.
const ERX: f64 = 8.45062911510467529297e-01;
const PA: [f64; 7] = [
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
];
const QA: [f64; 7] = [
    1.0,
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
];
/// On `1.25 <= |x| < 1/0.35`: `erfc(x) = exp(-x² - 0.5625 + R(1/x²)/S(1/x²)) / x`.
const RA: [f64; 8] = [
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e+01,
    -6.23753324503260060396e+01,
    -1.62396669462573470355e+02,
    -1.84605092906711035994e+02,
    -8.12874355063065934246e+01,
    -9.81432934416914548592e+00,
];
const SA: [f64; 9] = [
    1.0,
    1.96512716674392571292e+01,
    1.37657754143519042600e+02,
    4.34565877475229228821e+02,
    6.45387271733267880336e+02,
    4.29008140027567833386e+02,
    1.08635005541779435134e+02,
    6.57024977031928170135e+00,
    -6.04244152148580987438e-02,
];
/// On `1/0.35 <= |x| < 6`, the same form with other coefficients.
const RB: [f64; 7] = [
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e+01,
    -1.60636384855821916062e+02,
    -6.37566443368389627722e+02,
    -1.02509513161107724954e+03,
    -4.83519191608651397019e+02,
];
const SB: [f64; 8] = [
    1.0,
    3.03380607434824582924e+01,
    3.25792512996573918826e+02,
    1.53672958608443695994e+03,
    3.19985821950859553908e+03,
    2.55305040643316442583e+03,
    4.74528541206955367215e+02,
    -2.24409524465858183362e+01,
];

/// Evaluates the polynomial with coefficients `c` (lowest degree first) at `x`.
fn poly(c: &[f64], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, &k| acc * x + k)
}

/// The error function, `2/√π ∫₀ˣ e^(-t²) dt`.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let magnitude = if a < 0.84375 {
        let z = x * x;
        return x + x * (poly(&PP, z) / poly(&QQ, z));
    } else if a < 1.25 {
        let s = a - 1.0;
        ERX + poly(&PA, s) / poly(&QA, s)
    } else if a < 6.0 {
        1.0 - erfc_tail(a)
    } else {
        1.0
    };
    magnitude.copysign(x)
}

/// `erfc(a)` for `1.25 <= a < 6`.
fn erfc_tail(a: f64) -> f64 {
    let s = 1.0 / (a * a);
    let (r, q) = if a < 1.0 / 0.35 { (poly(&RA, s), poly(&SA, s)) } else { (poly(&RB, s), poly(&SB, s)) };
    // Split a = z + (a - z) with z exact in 32 bits so that z² is exact.
    let z = f64::from_bits(a.to_bits() & 0xffff_ffff_0000_0000);
    (-z * z - 0.5625).exp() * ((z - a) * (z + a) + r / q).exp() / a
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_known_values() {
        let cases = [
            (0.0, 0.0),
            (1e-10, 1.1283791670955126e-10),
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (1.1, 0.8802050695740817),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (4.5, 0.9999999998033839),
        ];
        for (x, want) in cases {
            assert!((erf(x) - want).abs() <= 2e-16 * want.abs().max(1e-300), "erf({x}) = {} != {want}", erf(x));
            assert_eq!(erf(-x), -erf(x));
        }
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert!(erf(f64::NAN).is_nan());
    }
}
