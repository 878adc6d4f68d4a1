//! The Flint IR: a typed dataflow graph of tensor operations.
//!
//! A [`Graph`] is a directed acyclic graph whose nodes are operations ([`Op`]) and whose
//! edges carry values from a producer to an operand slot of a consumer. Every node produces
//! exactly one tensor, and every node carries that tensor's [`TensorType`]: an element type
//! ([`DType`]) and a shape of [`Dim`]s. A dim is a constant or a product of symbols declared
//! in the graph signature with an inclusive upper bound (`N<=64`); one compiled graph serves
//! every value of its symbols up to their bounds.
//!
//! Operands are ordered: the edge weight is the operand slot, and slots of a node are dense
//! (`0..n`). The operand order and attributes of every op are given in `ir-spec/ops.md`;
//! the comments on [`Op`] repeat them briefly.
//!
//! Typing rules (see `ir-spec/types.md`):
//! - elementwise binary ops, comparisons and `select` require one dtype for their value
//!   operands and broadcast shapes the NumPy way (align trailing axes; a dim of 1 stretches);
//! - there is no implicit dtype conversion: `cast` is the only op that changes a dtype
//!   (besides comparisons, which produce `bool`, and `argmax`/`argmin`, which produce `i64`);
//! - axes in attributes are normalised to `0..rank` by the front end.
//!
//! Graph inputs are `Op::Input` nodes listed in signature order in [`Graph::inputs`];
//! params (`Op::Param`) are named weights bound at load time; outputs are named references
//! in [`Graph::outputs`]. [`verify`] checks all of this; [`print`] writes the graph as text
//! with dense numbering, so its output is deterministic.

mod graph;
pub mod infer;
mod op;
pub mod print;
mod types;
pub mod verify;

pub use graph::{Graph, Node, NodeId, OperandIndex};
pub use op::{ArgReduceOp, BinaryOp, CompareOp, ConstData, GeluApprox, Op, OpClass, PoolKind, ReduceOp, UnaryOp};
pub use types::{DType, Dim, Shape, SymId, Symbol, TensorType};
