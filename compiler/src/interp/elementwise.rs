//! Elementwise ops: unary, binary, compare and select, with NumPy broadcasting to the node's
//! shape. Each op is a function table per element kind; `None` marks an op the kind lacks.

use ndarray::{ArrayD, IxDyn, Zip};

use super::math::erf;
use super::tensor::by_kind;
use super::{Ctx, EvalError, Tensor, TensorData};
use crate::ir::{BinaryOp, CompareOp, UnaryOp};

pub fn unary(ctx: &Ctx, u: UnaryOp, x: &Tensor) -> Result<Tensor, EvalError> {
    let missing = || ctx.malformed("the op is not defined on this dtype");
    let data = match &x.data {
        TensorData::Float(a) => TensorData::Float(a.mapv(float_unary(u).ok_or_else(missing)?)),
        TensorData::Int(a) => TensorData::Int(a.mapv(int_unary(u).ok_or_else(missing)?)),
        TensorData::Bool(a) if u == UnaryOp::Not => TensorData::Bool(a.mapv(|x| !x)),
        TensorData::Bool(_) => return Err(missing()),
    };
    ctx.finish(data)
}

fn float_unary(u: UnaryOp) -> Option<fn(f64) -> f64> {
    Some(match u {
        UnaryOp::Neg => |x: f64| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Rsqrt => |x: f64| 1.0 / x.sqrt(),
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Sigmoid => sigmoid,
        UnaryOp::Relu => |x: f64| if x > 0.0 || x.is_nan() { x } else { 0.0 },
        UnaryOp::Erf => erf,
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Atan => f64::atan,
        UnaryOp::Floor => f64::floor,
        UnaryOp::Ceil => f64::ceil,
        UnaryOp::Round => f64::round_ties_even,
        // NaN and ±0 map to themselves.
        UnaryOp::Sign => |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        UnaryOp::Reciprocal => |x: f64| 1.0 / x,
        UnaryOp::Not => return None,
    })
}

pub(super) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn int_unary(u: UnaryOp) -> Option<fn(i64) -> i64> {
    Some(match u {
        UnaryOp::Neg => i64::wrapping_neg,
        UnaryOp::Abs => i64::wrapping_abs,
        UnaryOp::Relu => |x: i64| x.max(0),
        UnaryOp::Sign => i64::signum,
        UnaryOp::Not => |x: i64| !x,
        UnaryOp::Exp
        | UnaryOp::Log
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Tanh
        | UnaryOp::Sigmoid
        | UnaryOp::Erf
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Atan
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Reciprocal => return None,
    })
}

pub fn binary(ctx: &Ctx, b: BinaryOp, x: &Tensor, y: &Tensor) -> Result<Tensor, EvalError> {
    let missing = || ctx.malformed("the op is not defined on this dtype");
    let data = match (&x.data, &y.data) {
        (TensorData::Float(p), TensorData::Float(q)) => {
            TensorData::Float(zip2(ctx, p, q, float_binary(b).ok_or_else(missing)?)?)
        }
        (TensorData::Int(p), TensorData::Int(q)) => {
            check_int_divisor(ctx, b, q)?;
            TensorData::Int(zip2(ctx, p, q, int_binary(b).ok_or_else(missing)?)?)
        }
        (TensorData::Bool(p), TensorData::Bool(q)) => {
            TensorData::Bool(zip2(ctx, p, q, bool_binary(b).ok_or_else(missing)?)?)
        }
        _ => return Err(ctx.malformed("operands of different element kinds")),
    };
    ctx.finish(data)
}

fn float_binary(b: BinaryOp) -> Option<fn(f64, f64) -> f64> {
    Some(match b {
        BinaryOp::Add => |x, y| x + y,
        BinaryOp::Sub => |x, y| x - y,
        BinaryOp::Mul => |x, y| x * y,
        BinaryOp::Div => |x, y| x / y,
        BinaryOp::Rem => |x, y| x % y,
        BinaryOp::Pow => f64::powf,
        BinaryOp::Maximum => max_nan,
        BinaryOp::Minimum => min_nan,
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => return None,
    })
}

/// The larger of two floats; NaN if either is NaN; `+0` over `-0`.
pub(super) fn max_nan(x: f64, y: f64) -> f64 {
    if x.is_nan() || x > y || (x == y && x.is_sign_positive()) {
        x
    } else {
        y
    }
}

/// The smaller of two floats; NaN if either is NaN; `-0` over `+0`.
pub(super) fn min_nan(x: f64, y: f64) -> f64 {
    if x.is_nan() || x < y || (x == y && x.is_sign_negative()) {
        x
    } else {
        y
    }
}

/// Division and remainder by zero and negative powers are errors for integers. Every
/// element of `divisor` is used when the result is not empty.
fn check_int_divisor(ctx: &Ctx, b: BinaryOp, divisor: &ArrayD<i64>) -> Result<(), EvalError> {
    if ctx.shape.contains(&0) {
        return Ok(());
    }
    match b {
        BinaryOp::Div | BinaryOp::Rem if divisor.iter().any(|&d| d == 0) => {
            Err(EvalError::DivisionByZero { node: ctx.node })
        }
        BinaryOp::Pow => match divisor.iter().find(|&&e| e < 0) {
            Some(&exponent) => Err(EvalError::NegativeExponent { node: ctx.node, exponent }),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn int_binary(b: BinaryOp) -> Option<fn(i64, i64) -> i64> {
    Some(match b {
        BinaryOp::Add => i64::wrapping_add,
        BinaryOp::Sub => i64::wrapping_sub,
        BinaryOp::Mul => i64::wrapping_mul,
        // Zero divisors were rejected by `check_int_divisor`.
        BinaryOp::Div => |x: i64, y: i64| if y == 0 { 0 } else { x.wrapping_div(y) },
        BinaryOp::Rem => |x: i64, y: i64| if y == 0 { 0 } else { x.wrapping_rem(y) },
        BinaryOp::Pow => wrapping_pow,
        BinaryOp::Maximum => i64::max,
        BinaryOp::Minimum => i64::min,
        BinaryOp::And => |x, y| x & y,
        BinaryOp::Or => |x, y| x | y,
        BinaryOp::Xor => |x, y| x ^ y,
    })
}

/// `base^exp` with wrapping multiplication, by squaring; `exp` is non-negative.
fn wrapping_pow(mut base: i64, mut exp: i64) -> i64 {
    let mut acc: i64 = 1;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        exp >>= 1;
    }
    acc
}

fn bool_binary(b: BinaryOp) -> Option<fn(bool, bool) -> bool> {
    Some(match b {
        BinaryOp::And => |x, y| x && y,
        BinaryOp::Or => |x, y| x || y,
        BinaryOp::Xor => |x, y| x != y,
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Rem
        | BinaryOp::Pow
        | BinaryOp::Maximum
        | BinaryOp::Minimum => return None,
    })
}

pub fn compare(ctx: &Ctx, c: CompareOp, x: &Tensor, y: &Tensor) -> Result<Tensor, EvalError> {
    by_kind!(&x.data, T => {
        let out = zip2(ctx, ctx.get::<T>(x)?, ctx.get::<T>(y)?, compare_fn::<T>(c))?;
        ctx.finish(TensorData::Bool(out))
    })
}

/// IEEE comparisons for floats: only `ne` holds when an operand is NaN.
fn compare_fn<T: PartialOrd>(c: CompareOp) -> fn(T, T) -> bool {
    match c {
        CompareOp::Eq => |x, y| x == y,
        CompareOp::Ne => |x, y| x != y,
        CompareOp::Lt => |x, y| x < y,
        CompareOp::Le => |x, y| x <= y,
        CompareOp::Gt => |x, y| x > y,
        CompareOp::Ge => |x, y| x >= y,
    }
}

pub fn select(ctx: &Ctx, cond: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor, EvalError> {
    let c = bcast(ctx, ctx.bool(cond)?)?;
    by_kind!(&x.data, T => {
        let (p, q) = (bcast(ctx, ctx.get::<T>(x)?)?, bcast(ctx, ctx.get::<T>(y)?)?);
        ctx.done(Zip::from(&c).and(&p).and(&q).map_collect(|&c, &p, &q| if c { p } else { q }))
    })
}

fn bcast<'a, T>(ctx: &Ctx, a: &'a ArrayD<T>) -> Result<ndarray::ArrayViewD<'a, T>, EvalError> {
    a.broadcast(IxDyn(&ctx.shape)).ok_or_else(|| ctx.malformed("an operand does not broadcast to the result"))
}

/// Applies `f` to the operands broadcast to the node's shape.
fn zip2<A: Copy, B: Copy, C>(
    ctx: &Ctx,
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: fn(A, B) -> C,
) -> Result<ArrayD<C>, EvalError> {
    let (a, b) = (bcast(ctx, a)?, bcast(ctx, b)?);
    Ok(Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_pow_wraps_and_handles_zero() {
        assert_eq!(wrapping_pow(0, 0), 1);
        assert_eq!(wrapping_pow(3, 4), 81);
        assert_eq!(wrapping_pow(-2, 63), i64::MIN);
        assert_eq!(wrapping_pow(2, 64), 0);
        assert_eq!(wrapping_pow(-1, i64::MAX), -1);
    }
}
