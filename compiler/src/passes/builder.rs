//! Adds typed nodes to a graph on behalf of a pass: every node's type comes from
//! [`crate::ir::infer`], so a rewrite cannot build an ill-typed node unnoticed.

use super::PassError;
use crate::diag::Span;
use crate::ir::infer::result_type;
use crate::ir::*;

/// Builds nodes that stand for `origin` (a node being rewritten): they inherit its span and
/// the first error names it.
pub struct Builder<'g> {
    pub graph: &'g mut Graph,
    origin: NodeId,
    span: Option<Span>,
}

impl<'g> Builder<'g> {
    pub fn new(graph: &'g mut Graph, origin: NodeId) -> Builder<'g> {
        let span = graph.node(origin).span;
        Builder { graph, origin, span }
    }

    /// Adds `op` over `operands`; `given` is the result type for ops that need one.
    pub fn add(&mut self, op: Op, operands: &[NodeId], given: Option<TensorType>) -> Result<NodeId, PassError> {
        let types: Vec<&TensorType> = operands.iter().map(|&o| self.graph.ty(o)).collect();
        let name = op.name();
        let ty = result_type(&op, &types, given.as_ref()).map_err(|error| PassError::Build {
            node: self.origin,
            op: name,
            error: Box::new(error),
        })?;
        let id = self.graph.add(op, ty, operands);
        self.graph.node_mut(id).span = self.span;
        Ok(id)
    }

    pub fn unary(&mut self, u: UnaryOp, x: NodeId) -> Result<NodeId, PassError> {
        self.add(Op::Unary(u), &[x], None)
    }

    pub fn binary(&mut self, b: BinaryOp, x: NodeId, y: NodeId) -> Result<NodeId, PassError> {
        self.add(Op::Binary(b), &[x, y], None)
    }

    /// A reduction over `axes` keeping them as size-1 dims.
    pub fn reduce_keep(&mut self, op: ReduceOp, x: NodeId, axes: Vec<usize>) -> Result<NodeId, PassError> {
        self.add(Op::Reduce { op, axes, keepdims: true }, &[x], None)
    }

    /// A rank-0 constant of `dtype` (a float dtype takes `value`, others its integer part).
    pub fn scalar(&mut self, dtype: DType, value: f64) -> Result<NodeId, PassError> {
        let data = match dtype {
            d if d.is_float() => ConstData::Float(vec![value]),
            DType::Bool => ConstData::Bool(vec![value != 0.0]),
            _ => ConstData::Int(vec![value as i64]),
        };
        self.add(Op::Constant { data }, &[], Some(TensorType::scalar(dtype)))
    }

    pub fn cast(&mut self, x: NodeId, dtype: DType) -> Result<NodeId, PassError> {
        if self.graph.ty(x).dtype == dtype {
            return Ok(x);
        }
        let shape = self.graph.ty(x).shape.clone();
        self.add(Op::Cast, &[x], Some(TensorType::new(dtype, shape)))
    }

    pub fn permute(&mut self, x: NodeId, perm: Vec<usize>) -> Result<NodeId, PassError> {
        self.add(Op::Permute { perm }, &[x], None)
    }

    pub fn reshape(&mut self, x: NodeId, shape: Shape) -> Result<NodeId, PassError> {
        let dtype = self.graph.ty(x).dtype;
        self.add(Op::Reshape, &[x], Some(TensorType::new(dtype, shape)))
    }

    pub fn iota(&mut self, dtype: DType, shape: Shape, axis: usize) -> Result<NodeId, PassError> {
        self.add(Op::Iota { axis }, &[], Some(TensorType::new(dtype, shape)))
    }
}
