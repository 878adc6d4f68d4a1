//! Why a model cannot be imported.

use std::fmt;
use std::path::PathBuf;

use crate::interp::{EvalError, TensorError};
use crate::ir::infer::TypeError;
use crate::ir::Symbol;

/// The ONNX node an error is about: its position in the graph, its name and its op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    pub index: usize,
    pub name: String,
    pub op_type: String,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "node {} ({})", self.index, self.op_type)
        } else {
            write!(f, "node {} `{}` ({})", self.index, self.name, self.op_type)
        }
    }
}

/// Everything that stops an import. The `Unsupported*` variants name what Flint lacks (an op,
/// a dtype, an attribute value); the others say the model or its data is malformed.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a valid ONNX protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("{node}: op `{domain}{}{}` is not supported", if domain.is_empty() { "" } else { "::" }, node.op_type)]
    UnsupportedOp { node: NodeRef, domain: String },
    #[error("{node}: attribute `{attr}` = {value} is not supported")]
    UnsupportedAttribute { node: NodeRef, attr: String, value: String },
    #[error("{place}: ONNX dtype {dtype} is not supported (Flint has f32, f16, bf16, i32, i64 and bool)")]
    UnsupportedDType { place: String, dtype: String },
    #[error("{node}: {what} is not supported")]
    Unsupported { node: NodeRef, what: String },
    #[error("{place}: {what} is not supported")]
    UnsupportedModel { place: String, what: String },
    /// `graph_input`: the value is directly a graph input, which `--freeze` can fix.
    #[error("{node}: input {input} (`{value}`) must be known at import time (Flint's shapes and attributes are static), but it is {}", if *graph_input { format!("a graph input, given at run time (fix its value with --freeze {value}=FILE.npy)") } else { "computed at run time".to_string() })]
    NeedsConstant { node: NodeRef, input: usize, value: String, graph_input: bool },
    #[error("{node}: dim {axis} of `{value}` is `{dim}`, but `{}` needs that size as a number (pass a static shape there)", node.op_type)]
    SymbolicDim { node: NodeRef, value: String, axis: usize, dim: String },
    #[error("{node}: {message}")]
    Invalid { node: NodeRef, message: String },
    #[error("{place}: {message}")]
    InvalidModel { place: String, message: String },
    #[error("{node}: `{op}` rejects its operands: {}", error.display(symbols))]
    Type { node: NodeRef, op: &'static str, error: Box<TypeError>, symbols: Vec<Symbol> },
    #[error("symbolic dim `{dim}` (of input `{input}`) needs an upper bound: pass --dim-bound {dim}=N")]
    MissingBound { dim: String, input: String },
    #[error("--dim-bound {dim}=0: a bound must be at least 1")]
    ZeroBound { dim: String },
    #[error("--dim-bound {dim}: the model has no symbolic dim `{dim}` (its dims: {})", known.join(", "))]
    UnknownBound { dim: String, known: Vec<String> },
    #[error("{node}: evaluating constant inputs failed: {source}")]
    Fold { node: NodeRef, source: Box<EvalError> },
    #[error("tensor `{name}`: {message}")]
    Tensor { name: String, message: String },
    #[error("tensor `{name}`: {source}")]
    TensorShape { name: String, source: TensorError },
}

impl OnnxError {
    /// True when the model is valid but uses something Flint does not have.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            OnnxError::UnsupportedOp { .. }
                | OnnxError::UnsupportedAttribute { .. }
                | OnnxError::UnsupportedDType { .. }
                | OnnxError::Unsupported { .. }
                | OnnxError::UnsupportedModel { .. }
                | OnnxError::NeedsConstant { .. }
                | OnnxError::SymbolicDim { .. }
        )
    }
}
