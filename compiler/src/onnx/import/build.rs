//! Small builders over [`Importer::add`] that the op handlers share; each skips the node
//! when it would be the identity.

use super::{Importer, NodeCx, Value};
use crate::interp::Tensor;
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

impl Importer {
    /// Refuses an operand whose rank is not `rank`, before a handler reads its dims.
    pub fn need_rank(&self, cx: &NodeCx, x: NodeId, rank: usize, what: &str) -> R<()> {
        match self.rank(x) {
            r if r == rank => Ok(()),
            r => Err(cx.invalid(format!("{what} must have rank {rank}, found {r}"))),
        }
    }

    /// The sizes of `axes` of `x`, each of which must be a number; the other axes may be
    /// symbolic. A symbolic one is refused naming the axis, its dim and the value (the ONNX
    /// input it is, else the graph node's name).
    pub fn known_axes(&self, cx: &NodeCx, x: NodeId, axes: impl IntoIterator<Item = usize>) -> R<Vec<u64>> {
        let shape = self.ty(x).shape;
        let refuse = |axis: usize, d: &Dim| {
            let input = (0..cx.inputs.len()).find(|&i| matches!(cx.opt(i), Some(Value::Node(n)) if *n == x));
            let value = match input {
                Some(i) => cx.node.input[i].clone(),
                None => self.graph.node(x).name.clone().unwrap_or_else(|| format!("{x}")),
            };
            let dim = d.display(&self.graph.symbols).to_string();
            OnnxError::SymbolicDim { node: cx.node_ref(), value, axis, dim }
        };
        axes.into_iter()
            .map(|a| match shape.get(a) {
                Some(d) => d.as_known().ok_or_else(|| refuse(a, d)),
                None => Err(cx.invalid(format!("the operand has no dim {a}"))),
            })
            .collect()
    }

    pub fn unary(&mut self, cx: &NodeCx, u: UnaryOp, x: NodeId) -> R<NodeId> {
        self.add(cx, Op::Unary(u), &[x], None)
    }

    pub fn binary(&mut self, cx: &NodeCx, b: BinaryOp, x: NodeId, y: NodeId) -> R<NodeId> {
        self.add(cx, Op::Binary(b), &[x, y], None)
    }

    /// `x <b> v` with `v` a scalar of `x`'s dtype.
    pub fn binary_scalar(&mut self, cx: &NodeCx, b: BinaryOp, x: NodeId, v: f64) -> R<NodeId> {
        let c = self.scalar(self.dtype(x), v);
        self.binary(cx, b, x, c)
    }

    pub fn compare(&mut self, cx: &NodeCx, c: CompareOp, x: NodeId, y: NodeId) -> R<NodeId> {
        self.add(cx, Op::Compare(c), &[x, y], None)
    }

    pub fn compare_scalar(&mut self, cx: &NodeCx, c: CompareOp, x: NodeId, v: f64) -> R<NodeId> {
        let s = self.scalar(self.dtype(x), v);
        self.compare(cx, c, x, s)
    }

    pub fn select(&mut self, cx: &NodeCx, cond: NodeId, a: NodeId, b: NodeId) -> R<NodeId> {
        self.add(cx, Op::Select, &[cond, a, b], None)
    }

    pub fn cast(&mut self, cx: &NodeCx, x: NodeId, dtype: DType) -> R<NodeId> {
        if self.dtype(x) == dtype {
            return Ok(x);
        }
        let ty = TensorType::new(dtype, self.ty(x).shape);
        self.add(cx, Op::Cast, &[x], Some(ty))
    }

    pub fn reshape(&mut self, cx: &NodeCx, x: NodeId, shape: Shape) -> R<NodeId> {
        if self.ty(x).shape == shape {
            return Ok(x);
        }
        let ty = TensorType::new(self.dtype(x), shape);
        self.add(cx, Op::Reshape, &[x], Some(ty))
    }

    pub fn broadcast(&mut self, cx: &NodeCx, x: NodeId, shape: Shape) -> R<NodeId> {
        if self.ty(x).shape == shape {
            return Ok(x);
        }
        let ty = TensorType::new(self.dtype(x), shape);
        self.add(cx, Op::Broadcast, &[x], Some(ty))
    }

    pub fn permute(&mut self, cx: &NodeCx, x: NodeId, perm: Vec<usize>) -> R<NodeId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x);
        }
        self.add(cx, Op::Permute { perm }, &[x], None)
    }

    /// Swaps the last two axes.
    pub fn transpose(&mut self, cx: &NodeCx, x: NodeId) -> R<NodeId> {
        let r = self.rank(x);
        if r < 2 {
            return Err(cx.invalid(format!("transposing an operand of rank {r}")));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(cx, x, perm)
    }

    /// A reduction; no axes is the identity (as for a scalar).
    pub fn reduce(&mut self, cx: &NodeCx, op: ReduceOp, x: NodeId, axes: Vec<usize>, keepdims: bool) -> R<NodeId> {
        if axes.is_empty() {
            return Ok(x);
        }
        self.add(cx, Op::Reduce { op, axes, keepdims }, &[x], None)
    }

    pub fn matmul(&mut self, cx: &NodeCx, a: NodeId, b: NodeId) -> R<NodeId> {
        self.add(cx, Op::MatMul, &[a, b], None)
    }

    pub fn iota(&mut self, cx: &NodeCx, shape: Shape, axis: usize, dtype: DType) -> R<NodeId> {
        self.add(cx, Op::Iota { axis }, &[], Some(TensorType::new(dtype, shape)))
    }

    pub fn slice(&mut self, cx: &NodeCx, x: NodeId, axis: usize, start: u64, end: u64, step: u64) -> R<NodeId> {
        let n = self.ty(x).shape[axis].as_known();
        if start == 0 && step == 1 && n == Some(end) {
            return Ok(x);
        }
        self.add(cx, Op::Slice { axis, start, end, step }, &[x], None)
    }

    pub fn concat(&mut self, cx: &NodeCx, xs: &[NodeId], axis: usize) -> R<NodeId> {
        match xs {
            [x] => Ok(*x),
            _ => self.add(cx, Op::Concat { axis }, xs, None),
        }
    }

    /// `gather(x, indices, axis)` with constant indices.
    pub fn gather_const(&mut self, cx: &NodeCx, x: NodeId, axis: usize, indices: Vec<i64>) -> R<NodeId> {
        let n = constant_len(cx, [indices.len() as u64])?;
        if self.ty(x).shape[axis].as_known() == Some(n as u64)
            && indices.iter().enumerate().all(|(i, &k)| k == i as i64)
        {
            return Ok(x);
        }
        let t = Tensor::from_i64(DType::I64, &[n], indices).map_err(|e| cx.invalid(e.to_string()))?;
        let idx = self.tensor(cx, "indices", &t)?;
        self.add(cx, Op::Gather { axis }, &[x, idx], None)
    }

    /// Inserts size-1 axes at `axes` (positions in the result).
    pub fn unsqueeze(&mut self, cx: &NodeCx, x: NodeId, axes: &[usize]) -> R<NodeId> {
        let mut shape = self.ty(x).shape;
        let mut sorted = axes.to_vec();
        sorted.sort();
        for a in sorted {
            if a > shape.len() {
                return Err(cx.invalid(format!("axis {a} is out of range")));
            }
            shape.insert(a, Dim::known(1));
        }
        self.reshape(cx, x, shape)
    }
}

/// An ONNX axis (negative counts from the end) in `0..rank`.
pub(crate) fn axis(cx: &NodeCx, a: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    if (-r..r).contains(&a) {
        Ok(if a < 0 { (a + r) as usize } else { a as usize })
    } else {
        Err(cx.invalid(format!("axis {a} is out of range for rank {rank}")))
    }
}

/// ONNX axes, normalised, sorted and checked for repeats.
pub(crate) fn axes(cx: &NodeCx, raw: &[i64], rank: usize) -> R<Vec<usize>> {
    let mut out = raw.iter().map(|&a| axis(cx, a, rank)).collect::<R<Vec<_>>>()?;
    out.sort();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(cx.invalid(format!("axes {raw:?} repeat an axis")));
    }
    Ok(out)
}

/// Constants the importer computes itself hold at most this many elements. A model that
/// asks for more (a 2^40-element `ConstantOfShape`) gets the op as a run-time node where one
/// exists, else an error; never an allocation that aborts.
pub(crate) const MAX_CONSTANT: u64 = 1 << 24;

/// The element count of a constant of `dims` the importer is about to build, within
/// [`MAX_CONSTANT`].
pub(crate) fn constant_len(cx: &NodeCx, dims: impl IntoIterator<Item = u64>) -> R<usize> {
    match dims.into_iter().try_fold(1u64, |acc, d| acc.checked_mul(d)) {
        Some(n) if n <= MAX_CONSTANT => Ok(n as usize),
        _ => {
            Err(cx.unsupported(format!("a constant of more than 2^{} elements built at import", MAX_CONSTANT.ilog2())))
        }
    }
}

/// One result value from a node.
pub(crate) fn one(id: NodeId) -> R<Vec<Value>> {
    Ok(vec![Value::Node(id)])
}
