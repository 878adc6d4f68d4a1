//! The interpreter's error type.

use std::fmt;

use super::TensorError;
use crate::ir::{DType, NodeId};

/// Whether a bound value is a graph input or a param.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Input,
    Param,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Input => "input",
            Role::Param => "param",
        })
    }
}

/// Why a graph could not be evaluated. Node errors carry the node's handle (`%12`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("the graph has a cycle")]
    Cycle,
    #[error("no value was given for input `{name}`")]
    MissingInput { name: String },
    #[error("`{name}` is not an input of the graph (its inputs are: {})", expected.join(", "))]
    UnknownInput { name: String, expected: Vec<String> },
    #[error("no value was given for param `{name}`")]
    MissingParam { name: String },
    #[error("{role} `{name}` must be {expected}, found {found}")]
    WrongDType { role: Role, name: String, expected: DType, found: DType },
    #[error("{role} `{name}` must have rank {expected}, found shape {found:?}")]
    WrongRank { role: Role, name: String, expected: usize, found: Vec<usize> },
    #[error("{role} `{name}`: axis {axis} must be {}, found {found}", dim_text(dim, *expected))]
    WrongDim { role: Role, name: String, axis: usize, dim: String, expected: u64, found: u64 },
    #[error("input `{name}`: axis {axis} has {found} elements, which is not a multiple of {divisor} as `{dim}` needs")]
    NotDivisible { name: String, axis: usize, dim: String, divisor: u64, found: u64 },
    #[error("symbol `{symbol}` = {value} is outside 1..={bound} (its declared bound)")]
    SymbolBound { symbol: String, value: u64, bound: u64 },
    #[error("no value for symbol `{symbol}`: the input shapes do not determine it; give it explicitly")]
    UnboundSymbol { symbol: String },
    #[error("symbol id {id} is not declared by the graph")]
    UnknownSymbol { id: u32 },
    #[error("{node}: integer division by zero")]
    DivisionByZero { node: NodeId },
    #[error("{node}: integer `pow` with negative exponent {exponent}")]
    NegativeExponent { node: NodeId, exponent: i64 },
    #[error("{node}: gather index {index} is out of range for an axis of length {len}")]
    IndexOutOfRange { node: NodeId, index: i64, len: usize },
    #[error("{node}: `{op}` over an empty axis has no value")]
    EmptyReduction { node: NodeId, op: &'static str },
    #[error("{node}: `{op}` would hold {shape:?}, {bytes} bytes in the reference interpreter (8 per element), more than this machine's {budget} bytes of memory")]
    TooLarge { node: NodeId, op: &'static str, shape: Vec<usize>, bytes: u128, budget: u64 },
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error("{node}: malformed `{op}`: {reason} (the verifier rejects this graph)")]
    Malformed { node: NodeId, op: &'static str, reason: &'static str },
    #[error("{node}: `{op}` produced {found_dtype}{found:?} but the node's type is {expected_dtype}{expected:?}")]
    ResultMismatch {
        node: NodeId,
        op: &'static str,
        expected_dtype: DType,
        expected: Vec<usize>,
        found_dtype: DType,
        found: Vec<usize>,
    },
}

/// `2` for a static dim, `N = 2` for a symbolic one.
fn dim_text(dim: &str, value: u64) -> String {
    if dim == value.to_string() {
        dim.to_string()
    } else {
        format!("{dim} = {value}")
    }
}
