//! Seeded random tensors for tests and tools: the same `(seed, name)` always gives the same
//! tensor, on every platform, whatever else is generated (ChaCha8, seeded per tensor).
//!
//! Floats are bell-shaped on `[-1, 1]` (the mean of three uniforms: standard deviation 1/3),
//! times [`RandomSpec::float_scale`], then rounded to the dtype; integers are uniform on
//! [`RandomSpec::int_range`]; bools are true with probability [`RandomSpec::p_true`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::interp::{DimValues, EvalError, Tensor, TensorMap};
use crate::ir::{DType, Graph, Op, Symbol, TensorType};

/// How values are drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomSpec {
    pub float_scale: f64,
    /// Inclusive bounds.
    pub int_range: (i64, i64),
    pub p_true: f64,
}

impl Default for RandomSpec {
    /// Floats on `[-1, 1]`, integers on `[-3, 3]` (valid gather indices for axes of 4 or
    /// more, negative ones included), fair bools.
    fn default() -> RandomSpec {
        RandomSpec { float_scale: 1.0, int_range: (-3, 3), p_true: 0.5 }
    }
}

/// A random tensor of type `ty`, with symbolic dims taken from `dims`.
pub fn random_tensor(ty: &TensorType, dims: &DimValues, seed: u64, name: &str) -> Result<Tensor, EvalError> {
    random_tensor_with(&RandomSpec::default(), ty, dims, &[], seed, name)
}

/// [`random_tensor`] with explicit `spec`; `symbols` names an unbound symbol in the error.
pub fn random_tensor_with(
    spec: &RandomSpec,
    ty: &TensorType,
    dims: &DimValues,
    symbols: &[Symbol],
    seed: u64,
    name: &str,
) -> Result<Tensor, EvalError> {
    let shape = dims.shape(&ty.shape, symbols)?;
    let n: usize = shape.iter().product();
    let mut rng = rng_for(seed, name);
    let tensor = match ty.dtype {
        DType::F32 | DType::F16 | DType::BF16 => {
            Tensor::from_f64(ty.dtype, &shape, (0..n).map(|_| float(&mut rng) * spec.float_scale).collect())
        }
        DType::I32 | DType::I64 => {
            let (lo, hi) = spec.int_range;
            Tensor::from_i64(ty.dtype, &shape, (0..n).map(|_| rng.random_range(lo.min(hi)..=hi.max(lo))).collect())
        }
        DType::Bool => {
            Tensor::from_bool(&shape, (0..n).map(|_| rng.random_bool(spec.p_true.clamp(0.0, 1.0))).collect())
        }
    };
    Ok(tensor?)
}

/// Random values for every graph input, each seeded by `(seed, input name)`.
pub fn random_inputs(graph: &Graph, dims: &DimValues, seed: u64) -> Result<TensorMap, EvalError> {
    named(graph, dims, seed, |op| match op {
        Op::Input { name } => Some(name),
        _ => None,
    })
}

/// Random values for every param, each seeded by `(seed, param name)`.
pub fn random_params(graph: &Graph, dims: &DimValues, seed: u64) -> Result<TensorMap, EvalError> {
    named(graph, dims, seed, |op| match op {
        Op::Param { name } => Some(name),
        _ => None,
    })
}

fn named(
    graph: &Graph,
    dims: &DimValues,
    seed: u64,
    pick: impl Fn(&Op) -> Option<&String>,
) -> Result<TensorMap, EvalError> {
    let spec = RandomSpec::default();
    let mut out = TensorMap::new();
    for id in graph.node_ids() {
        if let Some(name) = pick(graph.op(id)) {
            out.insert(name.clone(), random_tensor_with(&spec, graph.ty(id), dims, &graph.symbols, seed, name)?);
        }
    }
    Ok(out)
}

/// A generator that depends only on `seed` and `name` (FNV-1a of the name, stable forever).
fn rng_for(seed: u64, name: &str) -> ChaCha8Rng {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&hash.to_le_bytes());
    key[16..24].copy_from_slice(&(name.len() as u64).to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Bell-shaped on `[-1, 1]`: the mean of three uniforms.
fn float(rng: &mut ChaCha8Rng) -> f64 {
    (0..3).map(|_| rng.random_range(-1.0..=1.0)).sum::<f64>() / 3.0
}
