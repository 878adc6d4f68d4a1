//! Params from safetensors files: loading them checked against a graph's `param` nodes, and
//! writing tensors out (for tests and tools).
//!
//! A param must be present with exactly its declared dtype and shape (symbolic dims are
//! evaluated with the given [`DimValues`]); there is no implicit conversion. Tensors in the
//! file that no param names are ignored, so one file can serve several graphs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::interp::{DimValues, EvalError, Tensor, TensorData, TensorMap};
use crate::ir::{DType, Graph, Op};

/// Why params could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a valid safetensors file: {0}")]
    Format(#[from] SafeTensorError),
    #[error("the weights have no tensor `{name}`{}", hint(close))]
    Missing { name: String, close: Vec<String> },
    #[error("param `{name}` is {expected}, but the weights hold {found:?}")]
    WrongDType { name: String, expected: DType, found: Dtype },
    #[error("param `{name}` has shape {expected:?}, but the weights hold shape {found:?}")]
    WrongShape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{name}` has safetensors dtype {dtype:?}, which Flint does not support (F32, F16, BF16, I32, I64, BOOL)")]
    UnsupportedDType { name: String, dtype: Dtype },
    #[error("cannot evaluate a param shape: {0}")]
    Dims(#[from] EvalError),
}

fn hint(close: &[String]) -> String {
    match close {
        [] => String::new(),
        _ => format!(" (did you mean {}?)", close.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")),
    }
}

/// Reads the params of `graph` from the safetensors file at `path`.
pub fn load_safetensors(path: &Path, graph: &Graph, dims: &DimValues) -> Result<TensorMap, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
    params_from_bytes(&bytes, graph, dims)
}

/// Reads the params of `graph` from the bytes of a safetensors file.
pub fn params_from_bytes(bytes: &[u8], graph: &Graph, dims: &DimValues) -> Result<TensorMap, WeightsError> {
    let file = SafeTensors::deserialize(bytes)?;
    let mut params = TensorMap::new();
    for id in graph.node_ids() {
        let Op::Param { name } = graph.op(id) else { continue };
        let ty = graph.ty(id);
        let view = file
            .tensor(name)
            .map_err(|_| WeightsError::Missing { name: name.clone(), close: close_names(name, &file.names()) })?;
        let dtype = flint_dtype(name, view.dtype())?;
        if dtype != ty.dtype {
            return Err(WeightsError::WrongDType { name: name.clone(), expected: ty.dtype, found: view.dtype() });
        }
        let expected = dims.shape(&ty.shape, &graph.symbols)?;
        if view.shape() != expected.as_slice() {
            return Err(WeightsError::WrongShape { name: name.clone(), expected, found: view.shape().to_vec() });
        }
        params.insert(name.clone(), decode(name, &view)?);
    }
    Ok(params)
}

/// Every tensor of a safetensors file, unchecked.
pub fn read_safetensors(bytes: &[u8]) -> Result<TensorMap, WeightsError> {
    let file = SafeTensors::deserialize(bytes)?;
    file.iter().map(|(name, view)| Ok((name.to_string(), decode(name, &view)?))).collect()
}

/// Writes `tensors` as a safetensors file.
pub fn save_safetensors(path: &Path, tensors: &TensorMap) -> Result<(), WeightsError> {
    let bytes = serialize_safetensors(tensors)?;
    std::fs::write(path, bytes).map_err(|source| WeightsError::Io { path: path.into(), source })
}

/// The bytes of a safetensors file holding `tensors`.
pub fn serialize_safetensors(tensors: &TensorMap) -> Result<Vec<u8>, WeightsError> {
    let encoded: BTreeMap<&str, (Dtype, Vec<u8>)> = tensors.iter().map(|(n, t)| (n.as_str(), encode(t))).collect();
    let views = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, bytes) = &encoded[name.as_str()];
            Ok((name.as_str(), TensorView::new(*dtype, t.shape().to_vec(), bytes)?))
        })
        .collect::<Result<Vec<_>, SafeTensorError>>()?;
    Ok(safetensors::serialize(views, None)?)
}

fn flint_dtype(name: &str, dtype: Dtype) -> Result<DType, WeightsError> {
    Ok(match dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::BOOL => DType::Bool,
        other => return Err(WeightsError::UnsupportedDType { name: name.into(), dtype: other }),
    })
}

fn decode(name: &str, view: &TensorView) -> Result<Tensor, WeightsError> {
    let dtype = flint_dtype(name, view.dtype())?;
    let b = view.data();
    let data = match dtype {
        DType::F32 => TensorData::Float(array(view, b.chunks_exact(4).map(|c| f32::from_le_bytes(le(c)) as f64))?),
        DType::F16 => TensorData::Float(array(view, b.chunks_exact(2).map(|c| f16::from_le_bytes(le(c)).to_f64()))?),
        DType::BF16 => TensorData::Float(array(view, b.chunks_exact(2).map(|c| bf16::from_le_bytes(le(c)).to_f64()))?),
        DType::I32 => TensorData::Int(array(view, b.chunks_exact(4).map(|c| i32::from_le_bytes(le(c)) as i64))?),
        DType::I64 => TensorData::Int(array(view, b.chunks_exact(8).map(|c| i64::from_le_bytes(le(c))))?),
        DType::Bool => TensorData::Bool(array(view, b.iter().map(|&x| x != 0))?),
    };
    Tensor::new(dtype, data).map_err(|_| invalid(view))
}

fn le<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(&c[..N]);
    w
}

fn invalid(view: &TensorView) -> WeightsError {
    SafeTensorError::InvalidTensorView(view.dtype(), view.shape().to_vec(), view.data().len()).into()
}

fn array<T>(view: &TensorView, values: impl Iterator<Item = T>) -> Result<ArrayD<T>, WeightsError> {
    ArrayD::from_shape_vec(IxDyn(view.shape()), values.collect()).map_err(|_| invalid(view))
}

fn encode(t: &Tensor) -> (Dtype, Vec<u8>) {
    match (&t.data, t.dtype) {
        (TensorData::Float(a), DType::F16) => {
            (Dtype::F16, a.iter().flat_map(|&x| f16::from_f64(x).to_le_bytes()).collect())
        }
        (TensorData::Float(a), DType::BF16) => {
            (Dtype::BF16, a.iter().flat_map(|&x| bf16::from_f64(x).to_le_bytes()).collect())
        }
        (TensorData::Float(a), _) => (Dtype::F32, a.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()),
        (TensorData::Int(a), DType::I32) => (Dtype::I32, a.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect()),
        (TensorData::Int(a), _) => (Dtype::I64, a.iter().flat_map(|&x| x.to_le_bytes()).collect()),
        (TensorData::Bool(a), _) => (Dtype::BOOL, a.iter().map(|&x| u8::from(x)).collect()),
    }
}

/// Up to three names within a small edit distance of `name`, closest first.
fn close_names(name: &str, names: &[&str]) -> Vec<String> {
    let limit = (name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> =
        names.iter().map(|n| (edit_distance(name, n), *n)).filter(|(d, _)| *d <= limit).collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n.to_string()).collect()
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_ranked_by_distance() {
        let names = ["layer0.weight", "layer1.weight", "layer0.bias", "head.weight"];
        assert_eq!(close_names("layer0.wieght", &names), vec!["layer0.weight", "layer1.weight"]);
        assert!(close_names("embedding", &names).is_empty());
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
