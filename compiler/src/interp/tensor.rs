//! Concrete tensors: an element type and an n-dimensional array holding its values.
//!
//! Floats of every width are stored as `f64`, integers of every width as `i64`. A [`Tensor`]
//! keeps one invariant: every element is a value of its dtype — floats are already rounded to
//! the dtype (round to nearest, ties to even) and integers lie in the dtype's range. The
//! constructors establish it, so an f16 tensor holds exactly the values an f16 buffer can.

use ndarray::{ArrayD, IxDyn};

use crate::ir::DType;

/// The values of a tensor, by kind of element.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Float(ArrayD<f64>),
    Int(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// A concrete tensor of one [`DType`]. See the module doc for the invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub data: TensorData,
}

/// Why a tensor cannot be built from the given parts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    #[error("{dtype} values cannot be stored as {kind} data")]
    KindMismatch { dtype: DType, kind: &'static str },
    #[error("shape {shape:?} holds {expected} elements, but {found} values were given")]
    Length { shape: Vec<usize>, expected: usize, found: usize },
}

impl TensorData {
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorData::Float(a) => a.shape(),
            TensorData::Int(a) => a.shape(),
            TensorData::Bool(a) => a.shape(),
        }
    }

    /// `"float"`, `"int"` or `"bool"`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            TensorData::Float(_) => "float",
            TensorData::Int(_) => "int",
            TensorData::Bool(_) => "bool",
        }
    }
}

impl Tensor {
    /// A tensor of `dtype` from `data`, rounding floats and wrapping integers to `dtype`.
    pub fn new(dtype: DType, data: TensorData) -> Result<Tensor, TensorError> {
        let data = match data {
            TensorData::Float(a) if dtype.is_float() => TensorData::Float(a.mapv_into(|x| round_float(dtype, x))),
            TensorData::Int(a) if dtype.is_int() => TensorData::Int(a.mapv_into(|x| wrap_int(dtype, x))),
            TensorData::Bool(a) if dtype == DType::Bool => TensorData::Bool(a),
            other => return Err(TensorError::KindMismatch { dtype, kind: other.kind() }),
        };
        Ok(Tensor { dtype, data })
    }

    /// A float tensor from row-major values, rounded to `dtype`.
    pub fn from_f64(dtype: DType, shape: &[usize], values: Vec<f64>) -> Result<Tensor, TensorError> {
        Tensor::new(dtype, TensorData::Float(array(shape, values)?))
    }

    /// An integer tensor from row-major values, wrapped to `dtype`.
    pub fn from_i64(dtype: DType, shape: &[usize], values: Vec<i64>) -> Result<Tensor, TensorError> {
        Tensor::new(dtype, TensorData::Int(array(shape, values)?))
    }

    /// A bool tensor from row-major values.
    pub fn from_bool(shape: &[usize], values: Vec<bool>) -> Result<Tensor, TensorError> {
        Tensor::new(DType::Bool, TensorData::Bool(array(shape, values)?))
    }

    /// A tensor of `dtype` and `shape` filled with zeros (`false` for bool).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        let data = match dtype {
            DType::F32 | DType::F16 | DType::BF16 => TensorData::Float(ArrayD::zeros(IxDyn(shape))),
            DType::I32 | DType::I64 => TensorData::Int(ArrayD::zeros(IxDyn(shape))),
            DType::Bool => TensorData::Bool(ArrayD::from_elem(IxDyn(shape), false)),
        };
        Tensor { dtype, data }
    }

    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn as_f64(&self) -> Option<&ArrayD<f64>> {
        match &self.data {
            TensorData::Float(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match &self.data {
            TensorData::Int(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<&ArrayD<bool>> {
        match &self.data {
            TensorData::Bool(a) => Some(a),
            _ => None,
        }
    }

    /// Every element as `f64`, row-major (bool as 0 or 1; i64 beyond 2^53 rounds).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::Float(a) => a.iter().copied().collect(),
            TensorData::Int(a) => a.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(a) => a.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }

    /// The elements as the runtime stores them: little-endian, row-major, each in its
    /// dtype's width (bool as one byte, 0 or 1).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let floats = |a: &ArrayD<f64>, f: &dyn Fn(f64) -> Vec<u8>| a.iter().flat_map(|&x| f(x)).collect();
        match (&self.data, self.dtype) {
            (TensorData::Float(a), DType::F16) => floats(a, &|x| half::f16::from_f64(x).to_le_bytes().to_vec()),
            (TensorData::Float(a), DType::BF16) => floats(a, &|x| half::bf16::from_f64(x).to_le_bytes().to_vec()),
            (TensorData::Float(a), _) => floats(a, &|x| (x as f32).to_le_bytes().to_vec()),
            (TensorData::Int(a), DType::I32) => a.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
            (TensorData::Int(a), _) => a.iter().flat_map(|&x| x.to_le_bytes()).collect(),
            (TensorData::Bool(a), _) => a.iter().map(|&x| u8::from(x)).collect(),
        }
    }

    /// A tensor from elements stored as [`Tensor::to_le_bytes`] writes them.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, TensorError> {
        let n: usize = shape.iter().product();
        if bytes.len() != n * dtype.size_bytes() {
            let found = bytes.len() / dtype.size_bytes().max(1);
            return Err(TensorError::Length { shape: shape.to_vec(), expected: n, found });
        }
        let words = |size: usize| bytes.chunks_exact(size);
        match dtype {
            DType::F32 => Tensor::from_f64(
                dtype,
                shape,
                words(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
            ),
            DType::F16 => Tensor::from_f64(
                dtype,
                shape,
                words(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            ),
            DType::BF16 => Tensor::from_f64(
                dtype,
                shape,
                words(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            ),
            DType::I32 => Tensor::from_i64(
                dtype,
                shape,
                words(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            ),
            DType::I64 => Tensor::from_i64(
                dtype,
                shape,
                words(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            ),
            DType::Bool => Tensor::from_bool(shape, bytes.iter().map(|&b| b != 0).collect()),
        }
    }

    /// Converts to `dtype` with the semantics of the `cast` op (see [`super`]).
    pub fn cast(&self, dtype: DType) -> Tensor {
        let data = match (&self.data, dtype) {
            (TensorData::Float(a), d) if d.is_float() => TensorData::Float(a.mapv(|x| round_float(d, x))),
            (TensorData::Float(a), d) if d.is_int() => TensorData::Int(a.mapv(|x| float_to_int(d, x))),
            (TensorData::Float(a), _) => TensorData::Bool(a.mapv(|x| x != 0.0)),
            (TensorData::Int(a), d) if d.is_float() => TensorData::Float(a.mapv(|x| int_to_float(d, x))),
            (TensorData::Int(a), d) if d.is_int() => TensorData::Int(a.mapv(|x| wrap_int(d, x))),
            (TensorData::Int(a), _) => TensorData::Bool(a.mapv(|x| x != 0)),
            (TensorData::Bool(a), d) if d.is_float() => TensorData::Float(a.mapv(|x| f64::from(u8::from(x)))),
            (TensorData::Bool(a), d) if d.is_int() => TensorData::Int(a.mapv(i64::from)),
            (TensorData::Bool(a), _) => TensorData::Bool(a.clone()),
        };
        Tensor { dtype, data }
    }
}

/// An element kind as stored: `f64`, `i64` or `bool`. Lets movement ops be written once.
pub(crate) trait Elem: Clone + PartialEq + 'static {
    fn get(data: &TensorData) -> Option<&ArrayD<Self>>;
    fn wrap(a: ArrayD<Self>) -> TensorData;
    /// The scalar `x` converted to `dtype` with `cast` semantics.
    fn from_f64(x: f64, dtype: DType) -> Self;
}

impl Elem for f64 {
    fn get(data: &TensorData) -> Option<&ArrayD<f64>> {
        match data {
            TensorData::Float(a) => Some(a),
            _ => None,
        }
    }
    fn wrap(a: ArrayD<f64>) -> TensorData {
        TensorData::Float(a)
    }
    fn from_f64(x: f64, dtype: DType) -> f64 {
        round_float(dtype, x)
    }
}

impl Elem for i64 {
    fn get(data: &TensorData) -> Option<&ArrayD<i64>> {
        match data {
            TensorData::Int(a) => Some(a),
            _ => None,
        }
    }
    fn wrap(a: ArrayD<i64>) -> TensorData {
        TensorData::Int(a)
    }
    fn from_f64(x: f64, dtype: DType) -> i64 {
        float_to_int(dtype, x)
    }
}

impl Elem for bool {
    fn get(data: &TensorData) -> Option<&ArrayD<bool>> {
        match data {
            TensorData::Bool(a) => Some(a),
            _ => None,
        }
    }
    fn wrap(a: ArrayD<bool>) -> TensorData {
        TensorData::Bool(a)
    }
    fn from_f64(x: f64, _dtype: DType) -> bool {
        x != 0.0
    }
}

/// Runs `$body` with `$T` the element type of `$data` (`f64`, `i64` or `bool`).
macro_rules! by_kind {
    ($data:expr, $T:ident => $body:expr) => {
        match $data {
            $crate::interp::TensorData::Float(_) => {
                type $T = f64;
                $body
            }
            $crate::interp::TensorData::Int(_) => {
                type $T = i64;
                $body
            }
            $crate::interp::TensorData::Bool(_) => {
                type $T = bool;
                $body
            }
        }
    };
}
pub(crate) use by_kind;

fn array<T>(shape: &[usize], values: Vec<T>) -> Result<ArrayD<T>, TensorError> {
    let expected: usize = shape.iter().product();
    let found = values.len();
    ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|_| TensorError::Length {
        shape: shape.to_vec(),
        expected,
        found,
    })
}

/// Rounds `x` to the nearest value of the float `dtype` (ties to even); other dtypes keep `x`.
pub fn round_float(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::F32 => x as f32 as f64,
        DType::F16 => round_to_format(x, 11, -14, 15),
        DType::BF16 => round_to_format(x, 8, -126, 127),
        DType::I32 | DType::I64 | DType::Bool => x,
    }
}

/// Rounds to a binary format with `precision` significand bits (implicit bit included),
/// normal exponents `emin..=emax` and gradual underflow, ties to even, overflowing to ±inf.
///
/// `half`'s own `from_f64` is not used for rounding: its f16 path goes through f32 on x86
/// (double rounding) and its bf16 path drops the low mantissa word before rounding.
fn round_to_format(x: f64, precision: i32, emin: i32, emax: i32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let exponent = ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    let quantum = 2f64.powi(exponent.max(emin) - precision + 1);
    let r = (x / quantum).round_ties_even() * quantum;
    if r.abs() >= 2f64.powi(emax + 1) {
        f64::INFINITY.copysign(x)
    } else {
        r
    }
}

/// Wraps `x` into the range of the integer `dtype` (two's complement); others keep `x`.
pub fn wrap_int(dtype: DType, x: i64) -> i64 {
    match dtype {
        DType::I32 => i64::from(x as i32),
        DType::I64 | DType::F32 | DType::F16 | DType::BF16 | DType::Bool => x,
    }
}

/// Float to integer: truncate toward zero, saturate at the dtype's range, NaN to 0.
pub fn float_to_int(dtype: DType, x: f64) -> i64 {
    match dtype {
        DType::I32 => i64::from(x as i32),
        _ => x as i64,
    }
}

/// Integer to float, rounded once to `dtype` (exact for |x| <= 2^53).
pub fn int_to_float(dtype: DType, x: i64) -> f64 {
    match dtype {
        DType::F32 => x as f32 as f64,
        _ => round_float(dtype, x as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    #[test]
    fn f16_rounding_matches_half_on_exact_ties() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even gives 1.
        assert_eq!(round_float(DType::F16, 1.0 + 2f64.powi(-11)), 1.0);
        // Just above the tie rounds up: f32 would have lost the sticky bit.
        assert_eq!(round_float(DType::F16, 1.0 + 2f64.powi(-11) + 2f64.powi(-40)), 1.0 + 2f64.powi(-10));
        assert_eq!(round_float(DType::F16, 65504.0), 65504.0);
        assert_eq!(round_float(DType::F16, 65520.0), f64::INFINITY);
        assert_eq!(round_float(DType::F16, 65519.99), 65504.0);
        assert_eq!(round_float(DType::F16, 2f64.powi(-25)), 0.0);
        assert_eq!(round_float(DType::F16, 3.0 * 2f64.powi(-26)), 2f64.powi(-24));
        assert!(round_float(DType::F16, f64::NAN).is_nan());
    }

    #[test]
    fn bf16_rounding_keeps_sticky_bits() {
        assert_eq!(round_float(DType::BF16, 1.0 + 2f64.powi(-8)), 1.0);
        assert_eq!(round_float(DType::BF16, 1.0 + 2f64.powi(-8) + 2f64.powi(-45)), 1.0 + 2f64.powi(-7));
        assert_eq!(round_float(DType::BF16, -3.0e38), -226.0 * 2f64.powi(120));
        for x in [0.1, -2.5, 1e-40, 3.3e38] {
            let r = round_float(DType::BF16, x);
            assert_eq!(bf16::from_f64(r).to_f64(), r);
        }
    }
}
