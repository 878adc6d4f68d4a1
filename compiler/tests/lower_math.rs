//! The CPU lowering's own transcendentals (exp, log, tanh, and sigmoid through exp) over the
//! whole f32 range: about a million inputs spread over every exponent and both signs, plus
//! ±0, ±inf, NaN and the subnormals, each against the f64 function rounded once, within
//! the spec's class T (rtol 1e-5, atol 1e-6) and its special-value rules.

#![cfg(feature = "mlir")]

use flint_compiler::lower::llvm::Cpu;
use flint_compiler::pipeline::{self, CompileOptions, Target};
use flint_compiler::syntax;

type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64, *const i64);

const SOURCE: &str = "graph g(x: f32[N<=1048576]) -> (y: f32[N]) {\n    y = OP(x)\n}\n";

/// Every 4099th bit pattern (all exponents, both signs, NaNs included) and the specials.
fn inputs() -> Vec<f32> {
    let mut xs: Vec<f32> = (0..=u32::MAX).step_by(4099).map(f32::from_bits).collect();
    xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, 1e-45, -1e-45, 1.0, -1.0]);
    xs.extend([88.0, 88.72, 88.73, -87.3, -87.4, -103.9, 0.625, -0.625, 0.6249, 9.0, -9.0]);
    xs
}

/// Runs `op` compiled for the host on every input.
fn run(op: &str, xs: &[f32]) -> Vec<f32> {
    let graph = syntax::compile_str(&SOURCE.replace("OP", op)).expect("compiles");
    let opts = CompileOptions { target: Some(Target::Cpu(Cpu::Native)), ..Default::default() };
    let c = pipeline::compile(&graph, &opts).expect("pipeline");
    assert_eq!(c.kernels.kernels.len(), 1, "{op}: one kernel");
    let (Some(module), Some(so)) = (c.cpu, c.library) else { panic!("no code") };
    let file = std::env::temp_dir().join(format!("flint-math-{op}-{}.so", std::process::id()));
    std::fs::write(&file, so).expect("write");
    // SAFETY: a library just built from verified MLIR.
    let lib = unsafe { libloading::Library::new(&file) }.expect("dlopen");
    let mut input = xs.to_vec();
    let mut output = vec![0f32; xs.len()];
    let mut args = [input.as_mut_ptr() as *mut u8, output.as_mut_ptr() as *mut u8];
    let dims = [xs.len() as i64];
    let name = format!("{}\0", module.symbols[0]);
    // SAFETY: the kernel reads `n` f32 from the first buffer and writes `n` to the second.
    unsafe {
        let f: libloading::Symbol<KernelFn> = lib.get(name.as_bytes()).expect("symbol");
        f(args.as_mut_ptr() as *const *mut u8, 0, xs.len() as i64, dims.as_ptr());
    }
    let _ = std::fs::remove_file(&file);
    output
}

fn check(op: &str, reference: fn(f64) -> f64) {
    check_with(op, reference, |_| 1e-6);
}

/// As [`check`], with the absolute tolerance a function of the input (sin, cos).
fn check_with(op: &str, reference: fn(f64) -> f64, atol: fn(f64) -> f64) {
    let xs = inputs();
    let got = run(op, &xs);
    let mut worst = (0.0f64, 0.0f32);
    for (&x, &y) in xs.iter().zip(&got) {
        let r = reference(f64::from(x)) as f32 as f64;
        let y = f64::from(y);
        if r.is_nan() || r.is_infinite() {
            assert!((r.is_nan() && y.is_nan()) || y == r, "{op}({x:e}) = {y:e}, want {r:e}");
            continue;
        }
        let excess = (y - r).abs() - (atol(f64::from(x)) + 1e-5 * r.abs());
        assert!(excess <= 0.0, "{op}({x:e}) = {y:e}, want {r:e}");
        let relative = (y - r).abs() / r.abs();
        if r.abs() > 1e-30 && relative > worst.0 {
            worst = (relative, x);
        }
    }
    eprintln!("{op}: {} inputs, worst relative error {:.2e} at {:e}", xs.len(), worst.0, worst.1);
}

#[test]
fn exp_over_the_whole_range() {
    check("exp", f64::exp);
}

#[test]
fn log_over_the_whole_range() {
    check("log", f64::ln);
}

#[test]
fn tanh_over_the_whole_range() {
    check("tanh", f64::tanh);
}

#[test]
fn erf_over_the_whole_range() {
    check("erf", erf);
}

#[test]
fn atan_over_the_whole_range() {
    check("atan", f64::atan);
}

#[test]
fn sin_and_cos_over_the_whole_range() {
    let atol = |x: f64| 1e-6 * x.abs().max(1.0);
    check_with("sin", f64::sin, atol);
    check_with("cos", f64::cos, atol);
}

/// `erf` in f64 (Abramowitz–Stegun 7.1.26 is too coarse): the series for small `|x|`, the
/// continued fraction of `erfc` beyond.
fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let value = if a < 2.5 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = 0.0;
        for k in (1..=60).rev() {
            f = (k as f64 / 2.0) / (a + f);
        }
        1.0 - (-a * a).exp() / ((a + f) * std::f64::consts::PI.sqrt())
    };
    value.copysign(x)
}

#[test]
fn sigmoid_over_the_whole_range() {
    check("sigmoid", |x| 1.0 / (1.0 + (-x).exp()));
}
