//! ONNX element types and `TensorProto` data, converted to Flint dtypes and [`Tensor`]s.

use half::{bf16, f16};

use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::TensorProto;
use super::OnnxError;
use crate::interp::Tensor;
use crate::ir::DType;

/// The Flint dtype of an ONNX `TensorProto.DataType` code; `place` names the user in errors.
pub fn dtype(code: i32, place: &dyn Fn() -> String) -> Result<DType, OnnxError> {
    match DataType::try_from(code) {
        Ok(DataType::Float) => Ok(DType::F32),
        Ok(DataType::Float16) => Ok(DType::F16),
        Ok(DataType::Bfloat16) => Ok(DType::BF16),
        Ok(DataType::Int32) => Ok(DType::I32),
        Ok(DataType::Int64) => Ok(DType::I64),
        Ok(DataType::Bool) => Ok(DType::Bool),
        other => Err(OnnxError::UnsupportedDType { place: place(), dtype: dtype_name(code, other.ok()) }),
    }
}

fn dtype_name(code: i32, known: Option<DataType>) -> String {
    known.map_or_else(|| format!("code {code}"), |d| d.as_str_name().to_string())
}

/// The ONNX name of a Flint dtype (`FLOAT`, `INT64`, ...).
pub fn onnx_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "FLOAT",
        DType::F16 => "FLOAT16",
        DType::BF16 => "BFLOAT16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::Bool => "BOOL",
    }
}

/// Decodes a `TensorProto` (an initializer, a `Constant` value, a test's `.pb` file).
pub fn decode(t: &TensorProto) -> Result<Tensor, OnnxError> {
    let name = t.name.clone().unwrap_or_default();
    let err = |message: &str| OnnxError::Tensor { name: name.clone(), message: message.into() };
    if t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty() {
        return Err(OnnxError::UnsupportedModel {
            place: format!("tensor `{name}`"),
            what: "data stored outside the model file (external data)".into(),
        });
    }
    if t.segment.is_some() {
        return Err(err("segmented tensors are not supported"));
    }
    let dtype = dtype(t.data_type.unwrap_or(0), &|| format!("tensor `{name}`"))?;
    let shape: Vec<usize> =
        t.dims.iter().map(|&d| usize::try_from(d).map_err(|_| err("negative dim"))).collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let raw = t.raw_data.as_deref();
    let built = match dtype {
        DType::F32 => Tensor::from_f64(
            dtype,
            &shape,
            match raw {
                Some(b) => le_chunks::<4>(b, n, &err)?.map(|c| f32::from_le_bytes(c) as f64).collect(),
                None => t.float_data.iter().map(|&x| x as f64).collect(),
            },
        ),
        DType::F16 | DType::BF16 => {
            let bits: Vec<u16> = match raw {
                Some(b) => le_chunks::<2>(b, n, &err)?.map(u16::from_le_bytes).collect(),
                None => t.int32_data.iter().map(|&x| x as u16).collect(),
            };
            let values = bits.into_iter().map(|b| match dtype {
                DType::F16 => f16::from_bits(b).to_f64(),
                _ => bf16::from_bits(b).to_f64(),
            });
            Tensor::from_f64(dtype, &shape, values.collect())
        }
        DType::I32 => Tensor::from_i64(
            dtype,
            &shape,
            match raw {
                Some(b) => le_chunks::<4>(b, n, &err)?.map(|c| i32::from_le_bytes(c) as i64).collect(),
                None => t.int32_data.iter().map(|&x| x as i64).collect(),
            },
        ),
        DType::I64 => Tensor::from_i64(
            dtype,
            &shape,
            match raw {
                Some(b) => le_chunks::<8>(b, n, &err)?.map(i64::from_le_bytes).collect(),
                None => t.int64_data.clone(),
            },
        ),
        DType::Bool => Tensor::from_bool(
            &shape,
            match raw {
                Some(b) => b.iter().map(|&x| x != 0).collect(),
                None => t.int32_data.iter().map(|&x| x != 0).collect(),
            },
        ),
    };
    built.map_err(|source| OnnxError::TensorShape { name, source })
}

/// `bytes` as `n` little-endian chunks of `N` bytes.
fn le_chunks<'b, const N: usize>(
    bytes: &'b [u8],
    n: usize,
    err: &dyn Fn(&str) -> OnnxError,
) -> Result<impl Iterator<Item = [u8; N]> + 'b, OnnxError> {
    if bytes.len() != n * N {
        return Err(err(&format!("raw data holds {} bytes, but {n} elements of {N} bytes were declared", bytes.len())));
    }
    Ok(bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    }))
}
