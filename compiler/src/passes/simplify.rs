//! Algebraic simplification and constant folding.
//!
//! Rules sit in [`RULES`], one line of algebra each; a rule returns the node that replaces
//! the one it matched, or `None`. Nodes whose operands are all constants and whose result
//! is small and static are folded by running the reference interpreter on them, so folding
//! has exactly the semantics of evaluation. The pass repeats until nothing changes.
//!
//! *Requires:* a verified graph. *Establishes:* no rule of [`RULES`] matches, and no
//! foldable node remains; replaced nodes are left dead for DCE.

use super::{Pass, PassError};
use crate::interp::{self, DimValues, TensorData, TensorMap};
use crate::ir::*;

pub struct Simplify;

/// Largest result, in elements, that constant folding materialises.
const FOLD_LIMIT: u64 = 4096;

type Rule = fn(&mut Graph, NodeId) -> Result<Option<NodeId>, PassError>;

/// The rewrite rules, tried in order on every node.
const RULES: &[(&str, Rule)] = &[
    ("x + 0 -> x, 0 + x -> x (the sign of a zero result is not kept)", add_zero),
    ("x - 0 -> x", sub_zero),
    ("x * 1 -> x, 1 * x -> x", mul_one),
    ("x / 1 -> x", div_one),
    ("neg(neg(x)) -> x", double_neg),
    ("permute(permute(x, p), q) -> permute(x, p∘q); permute(x, id) -> x", permute_permute),
    ("reshape(reshape(x)) -> reshape(x); reshape(x) to its own shape -> x", reshape_reshape),
    ("broadcast(broadcast(x)) -> broadcast(x); broadcast(x) to its own shape -> x", broadcast_broadcast),
    ("cast(x) to its own dtype -> x", cast_same),
    ("slice(x) over a whole axis -> x", slice_whole),
    ("conv2d(x, w[O, C, 1, 1]) with stride 1, no padding, groups 1 -> matmul(w[O, C], x[N, C, H·W])", pointwise_conv),
    ("op(constants...) -> constant, when small and static", fold_constants),
];

impl Pass for Simplify {
    fn name(&self) -> &'static str {
        "simplify"
    }

    fn run(&self, graph: &mut Graph) -> Result<(), PassError> {
        // Rules look only at nodes an output depends on: a rewrite leaves the old node dead,
        // and the `dce` line after this pass removes it.
        loop {
            let mut changed = false;
            let live = super::dce::live_nodes(graph);
            for id in graph.topo_order().unwrap_or_default().into_iter().filter(|n| live.contains(n)) {
                for (_, rule) in RULES {
                    if let Some(replacement) = rule(graph, id)? {
                        graph.replace_uses(id, replacement);
                        changed = true;
                        break;
                    }
                }
            }
            if !changed {
                return Ok(());
            }
        }
    }
}

/// A 1×1 convolution is a matmul of the weights with each image's pixels as columns: then the
/// matmul's register tiles serve it (MobileNet's and ResNet's pointwise convolutions).
fn pointwise_conv(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    let Op::Conv2d { stride: [1, 1], padding: [0, 0, 0, 0], groups: 1, .. } = g.op(id) else { return Ok(None) };
    let operands = g.operands(id).to_vec();
    let (x, w) = (operands[0], operands[1]);
    let (xs, ws) = (g.ty(x).shape.clone(), g.ty(w).shape.clone());
    if !(ws[2].is_one() && ws[3].is_one()) {
        return Ok(None);
    }
    let (dtype, out) = (g.ty(id).dtype, g.ty(id).clone());
    let mut b = super::builder::Builder::new(g, id);
    let pixels = xs[2].mul(&xs[3]);
    let columns =
        b.add(Op::Reshape, &[x], Some(TensorType::new(dtype, vec![xs[0].clone(), xs[1].clone(), pixels.clone()])))?;
    let weights = b.add(Op::Reshape, &[w], Some(TensorType::new(dtype, vec![ws[0].clone(), ws[1].clone()])))?;
    let mut y = b.add(Op::MatMul, &[weights, columns], None)?;
    if let Some(&bias) = operands.get(2) {
        let column = b.add(Op::Reshape, &[bias], Some(TensorType::new(dtype, vec![ws[0].clone(), Dim::known(1)])))?;
        y = b.binary(BinaryOp::Add, y, column)?;
    }
    Ok(Some(b.add(Op::Reshape, &[y], Some(out))?))
}

/// The single value of a constant (or a broadcast of one) whose elements are all equal.
fn splat(graph: &Graph, id: NodeId) -> Option<f64> {
    if *graph.op(id) == Op::Broadcast {
        return splat(graph, graph.operands(id)[0]);
    }
    let Op::Constant { data } = graph.op(id) else { return None };
    let values: Vec<f64> = match data {
        ConstData::Float(v) => v.clone(),
        ConstData::Int(v) => v.iter().map(|&x| x as f64).collect(),
        ConstData::Bool(_) => return None,
    };
    let first = *values.first()?;
    values.iter().all(|&v| v == first).then_some(first)
}

/// `id = op(a, b)` where `b` (or, when `commutes`, `a`) is the identity `unit` and the other
/// operand already has the result's type (so dropping the op changes no shape).
fn identity_operand(graph: &Graph, id: NodeId, op: BinaryOp, unit: f64, commutes: bool) -> Option<NodeId> {
    if *graph.op(id) != Op::Binary(op) {
        return None;
    }
    let [a, b] = graph.operands(id)[..] else { return None };
    let keeps_type = |x: NodeId| graph.ty(x) == graph.ty(id);
    if splat(graph, b) == Some(unit) && keeps_type(a) {
        return Some(a);
    }
    (commutes && splat(graph, a) == Some(unit) && keeps_type(b)).then_some(b)
}

fn add_zero(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    Ok(identity_operand(g, id, BinaryOp::Add, 0.0, true))
}

fn sub_zero(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    Ok(identity_operand(g, id, BinaryOp::Sub, 0.0, false))
}

fn mul_one(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    Ok(identity_operand(g, id, BinaryOp::Mul, 1.0, true))
}

fn div_one(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    Ok(identity_operand(g, id, BinaryOp::Div, 1.0, false))
}

/// The sole operand of `id` when `id`'s op satisfies `outer` and that operand's op `inner`.
fn nested(g: &Graph, id: NodeId, outer: impl Fn(&Op) -> bool, inner: impl Fn(&Op) -> bool) -> Option<NodeId> {
    if !outer(g.op(id)) {
        return None;
    }
    let [x] = g.operands(id)[..] else { return None };
    inner(g.op(x)).then_some(x)
}

fn double_neg(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    let neg = |op: &Op| *op == Op::Unary(UnaryOp::Neg);
    Ok(nested(g, id, neg, neg).map(|inner| g.operands(inner)[0]))
}

fn permute_permute(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    let Op::Permute { perm: outer } = g.op(id).clone() else { return Ok(None) };
    let x = g.operands(id)[0];
    if outer.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(Some(x));
    }
    let Op::Permute { perm: inner } = g.op(x).clone() else { return Ok(None) };
    let source = g.operands(x)[0];
    let perm: Vec<usize> = outer.iter().map(|&p| inner[p]).collect();
    let ty = g.ty(id).clone();
    Ok(Some(g.add(Op::Permute { perm }, ty, &[source])))
}

/// `outer(inner(x))` -> `outer(x)` for ops whose result is their type alone (reshape,
/// broadcast), and `op(x)` -> `x` when the op does not change the type.
fn collapse_chain(g: &mut Graph, id: NodeId, op: Op) -> Option<NodeId> {
    if *g.op(id) != op {
        return None;
    }
    let x = g.operands(id)[0];
    if g.ty(x) == g.ty(id) {
        return Some(x);
    }
    if *g.op(x) != op {
        return None;
    }
    let source = g.operands(x)[0];
    let ty = g.ty(id).clone();
    Some(g.add(op, ty, &[source]))
}

fn reshape_reshape(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    Ok(collapse_chain(g, id, Op::Reshape))
}

fn broadcast_broadcast(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    Ok(collapse_chain(g, id, Op::Broadcast))
}

fn cast_same(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    Ok(collapse_chain(g, id, Op::Cast).filter(|&x| g.ty(x) == g.ty(id)))
}

fn slice_whole(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    let Op::Slice { .. } = g.op(id) else { return Ok(None) };
    let x = g.operands(id)[0];
    Ok((g.ty(x) == g.ty(id)).then_some(x))
}

/// A constant operand: a `const`, or a `broadcast` of one (how a splat is kept: a view of
/// one value is cheaper than its copies).
fn constant_value(g: &Graph, id: NodeId) -> bool {
    match g.op(id) {
        Op::Constant { .. } => true,
        Op::Broadcast => matches!(g.op(g.operands(id)[0]), Op::Constant { .. }),
        _ => false,
    }
}

/// Copies the constant `id` (and the constant under a broadcast) into `into`.
fn copy_constant(g: &Graph, id: NodeId, into: &mut Graph) -> NodeId {
    let operands: Vec<NodeId> = g.operands(id).into_iter().map(|o| copy_constant(g, o, into)).collect();
    into.add(g.op(id).clone(), g.ty(id).clone(), &operands)
}

/// Evaluates `id` when all its operands are constants and its result is small and static.
/// A result whose elements are all equal becomes a scalar `const` broadcast to the shape.
fn fold_constants(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>, PassError> {
    let operands = g.operands(id);
    let foldable = !operands.is_empty() && *g.op(id) != Op::Broadcast && operands.iter().all(|&o| constant_value(g, o));
    let size = infer::numel(&g.ty(id).shape).as_known();
    if !foldable || size.is_none_or(|n| n > FOLD_LIMIT) {
        return Ok(None);
    }
    let mut single = Graph::new("fold");
    let copies: Vec<NodeId> = operands.iter().map(|&o| copy_constant(g, o, &mut single)).collect();
    let node = single.add(g.op(id).clone(), g.ty(id).clone(), &copies);
    single.add_output("y", node);
    // An op that fails on its constants (say, an integer division by zero) is left for run
    // time, where the error belongs.
    let Ok(out) = interp::eval(&single, &DimValues::new(), &TensorMap::new(), &TensorMap::new()) else {
        return Ok(None);
    };
    let data = match &out[0].1.data {
        TensorData::Float(a) => ConstData::Float(a.iter().copied().collect()),
        TensorData::Int(a) => ConstData::Int(a.iter().copied().collect()),
        TensorData::Bool(a) => ConstData::Bool(a.iter().copied().collect()),
    };
    let ty = g.ty(id).clone();
    let folded = match splat_data(&data) {
        Some(one) if ty.rank() > 0 => {
            let scalar = g.add(Op::Constant { data: one }, TensorType::scalar(ty.dtype), &[]);
            g.add(Op::Broadcast, ty, &[scalar])
        }
        _ => g.add(Op::Constant { data }, ty, &[]),
    };
    let (name, span) = (g.node(id).name.clone(), g.node(id).span);
    g.node_mut(folded).name = name;
    g.node_mut(folded).span = span;
    Ok(Some(folded))
}

/// The one value of constant data whose elements are all equal (bitwise for floats).
fn splat_data(data: &ConstData) -> Option<ConstData> {
    fn one<T: Clone + PartialEq>(v: &[T], eq: impl Fn(&T, &T) -> bool) -> Option<Vec<T>> {
        let first = v.first()?;
        v.iter().all(|x| eq(x, first)).then(|| vec![first.clone()])
    }
    match data {
        ConstData::Float(v) => one(v, |a, b| a.to_bits() == b.to_bits()).map(ConstData::Float),
        ConstData::Int(v) => one(v, |a, b| a == b).map(ConstData::Int),
        ConstData::Bool(v) => one(v, |a, b| a == b).map(ConstData::Bool),
    }
}
