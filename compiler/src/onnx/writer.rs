//! Writes a graph as Flint source (`.tg`) that lowers back to the same graph.
//!
//! One statement per node, in topological order, after the params. Every op is written
//! as its source call with every attribute spelled out; a scalar constant used only by binary
//! ops, comparisons or `select` next to a tensor is written inline as a literal (it takes
//! that tensor's dtype, as the language's weak typing rule says), others as
//! `full(shape=[], value=..., dtype=...)`. Infinity, which has no literal, is written
//! `1e999` (a float literal that overflows to it). Values keep their names where those are
//! free identifiers; the rest are `t<N>`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::ir::print::signature;
use crate::ir::*;

/// Why a graph cannot be written as source.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("{node}: a constant of {len} elements has no source form (only scalars do; make it a param)")]
    TensorConstant { node: NodeId, len: usize },
    #[error("{node}: the constant {value} has no literal form")]
    Literal { node: NodeId, value: String },
    #[error("`{name}` (an input, param or output) is not an identifier, or is used twice")]
    Name { name: String },
    #[error("the graph has a cycle")]
    Cycle,
}

/// The graph as source; `header` lines are written first, each as a comment.
pub fn write_source(graph: &Graph, header: &[String]) -> Result<String, WriteError> {
    let order = graph.topo_order().ok_or(WriteError::Cycle)?;
    let mut w = Writer { graph, names: HashMap::new(), taken: HashSet::new(), inline: HashSet::new() };
    w.name_fixed(&order)?;
    w.choose_inline(&order);
    w.name_rest(&order);
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(out, "graph {} {{", signature(graph));
    for &id in &order {
        if let Op::Param { name } = graph.op(id) {
            let _ = writeln!(out, "    param {name}: {}", graph.ty(id).display(&graph.symbols));
        }
    }
    for &id in &order {
        if matches!(graph.op(id), Op::Input { .. } | Op::Param { .. }) || w.inline.contains(&id) {
            continue;
        }
        let _ = writeln!(out, "    {} = {}", w.names[&id], w.expr(id)?);
    }
    let mut bound: HashSet<NodeId> = HashSet::new();
    for (name, id) in &graph.outputs {
        if w.names.get(id) == Some(name) && bound.insert(*id) {
            continue;
        }
        let _ = writeln!(out, "    {name} = {}", w.names[id]);
    }
    out.push_str("}\n");
    Ok(out)
}

struct Writer<'g> {
    graph: &'g Graph,
    names: HashMap<NodeId, String>,
    taken: HashSet<String>,
    /// Scalar constants written as literals at their uses.
    inline: HashSet<NodeId>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && crate::onnx::identifier(s) == s
}

impl Writer<'_> {
    /// Inputs, params and outputs keep their names: they are the graph's interface.
    fn name_fixed(&mut self, order: &[NodeId]) -> Result<(), WriteError> {
        let mut fixed: Vec<(NodeId, String)> = Vec::new();
        for &id in order {
            if let Op::Input { name } | Op::Param { name } = self.graph.op(id) {
                fixed.push((id, name.clone()));
            }
        }
        for (name, id) in &self.graph.outputs {
            if !self.taken.contains(name) && !fixed.iter().any(|(n, _)| n == id) {
                fixed.push((*id, name.clone()));
            } else {
                // An alias statement `name = ...` binds it.
                self.claim(name)?;
            }
        }
        for (id, name) in fixed {
            self.claim(&name)?;
            self.names.insert(id, name);
        }
        Ok(())
    }

    fn claim(&mut self, name: &str) -> Result<(), WriteError> {
        if !is_identifier(name) || !self.taken.insert(name.to_string()) {
            return Err(WriteError::Name { name: name.to_string() });
        }
        Ok(())
    }

    fn choose_inline(&mut self, order: &[NodeId]) {
        for &id in order {
            if literal(self.graph, id).is_some() && !self.names.contains_key(&id) {
                let users = self.graph.users(id);
                if !users.is_empty() && users.iter().all(|&u| self.inline_ok(u, id)) {
                    self.inline.insert(id);
                }
            }
        }
    }

    /// A literal operand of `user` takes the dtype of its non-literal peer.
    fn inline_ok(&self, user: NodeId, constant: NodeId) -> bool {
        let operands = self.graph.operands(user);
        let peers: &[NodeId] = match self.graph.op(user) {
            Op::Binary(_) | Op::Compare(_) => &operands,
            Op::Select if operands.len() == 3 && operands[0] != constant => &operands[1..],
            _ => return false,
        };
        peers.iter().any(|&p| p != constant && literal(self.graph, p).is_none())
    }

    fn name_rest(&mut self, order: &[NodeId]) {
        let mut counter = 0;
        for &id in order {
            if self.names.contains_key(&id) || self.inline.contains(&id) {
                continue;
            }
            let preferred = self.graph.node(id).name.clone().filter(|n| is_identifier(n) && !self.taken.contains(n));
            let name = preferred.unwrap_or_else(|| loop {
                counter += 1;
                let n = format!("t{counter}");
                if !self.taken.contains(&n) {
                    break n;
                }
            });
            self.taken.insert(name.clone());
            self.names.insert(id, name);
        }
    }

    /// A value's name, or its literal (a negative one in parentheses, since `-2.0 ** x` would
    /// read as `-(2.0 ** x)`).
    fn operand(&self, id: NodeId) -> String {
        match (self.inline.contains(&id), literal(self.graph, id)) {
            (true, Some(text)) if text.starts_with('-') => format!("({text})"),
            (true, Some(text)) => text,
            _ => self.names.get(&id).cloned().unwrap_or_else(|| format!("{id}")),
        }
    }

    fn shape(&self, shape: &[Dim]) -> String {
        let dims: Vec<String> = shape.iter().map(|d| d.display(&self.graph.symbols).to_string()).collect();
        format!("[{}]", dims.join(", "))
    }

    fn expr(&self, id: NodeId) -> Result<String, WriteError> {
        let g = self.graph;
        let ty = g.ty(id);
        let xs: Vec<String> = g.operands(id).into_iter().map(|o| self.operand(o)).collect();
        let args = xs.join(", ");
        let x = xs.first().cloned().unwrap_or_default();
        let list = |v: &[u64]| format!("{v:?}");
        Ok(match g.op(id) {
            Op::Input { name } | Op::Param { name } => name.clone(),
            Op::Constant { data } => {
                let value = literal(g, id).ok_or_else(|| match data {
                    ConstData::Float(v) if v.len() == 1 => WriteError::Literal { node: id, value: format!("{}", v[0]) },
                    ConstData::Int(v) if v.len() == 1 => WriteError::Literal { node: id, value: format!("{}", v[0]) },
                    d => WriteError::TensorConstant { node: id, len: const_len(d) },
                })?;
                format!("full(shape=[], value={value}, dtype={})", ty.dtype)
            }
            Op::Iota { axis } => format!("iota(shape={}, axis={axis}, dtype={})", self.shape(&ty.shape), ty.dtype),
            Op::Unary(u) => format!("{}({x})", u.name()),
            Op::Binary(b) => match binary_operator(*b) {
                Some(sym) => format!("{} {sym} {}", xs[0], xs[1]),
                None => format!("{}({args})", b.name()),
            },
            Op::Compare(c) => format!("{} {} {}", xs[0], compare_operator(*c), xs[1]),
            Op::Select => format!("select({args})"),
            Op::Cast => format!("cast({x}, dtype={})", ty.dtype),
            Op::Reduce { op, axes, keepdims } => format!("{}({x}, axis={axes:?}, keepdims={keepdims})", op.name()),
            Op::ArgReduce { axis, keepdims, .. } => {
                format!("{}({x}, axis={axis}, keepdims={keepdims})", g.op(id).name())
            }
            Op::MatMul => format!("{} @ {}", xs[0], xs[1]),
            Op::Reshape => format!("reshape({x}, shape={})", self.shape(&ty.shape)),
            Op::Permute { perm } => format!("permute({x}, perm={perm:?})"),
            Op::Broadcast => format!("broadcast({x}, shape={})", self.shape(&ty.shape)),
            Op::Slice { axis, start, end, step } => {
                format!("slice({x}, axis={axis}, start={start}, end={end}, step={step})")
            }
            Op::Concat { axis } => format!("concat({args}, axis={axis})"),
            Op::Pad { low, high, value } => {
                format!("pad({x}, low={}, high={}, value={})", list(low), list(high), float_literal(*value, id)?)
            }
            Op::Gather { axis } => format!("gather({args}, axis={axis})"),
            Op::Conv2d { stride, padding, dilation, groups } => format!(
                "conv2d({args}, stride={}, padding={}, dilation={}, groups={groups})",
                list(stride),
                list(padding),
                list(dilation)
            ),
            Op::Pool2d { kind, kernel, stride, padding, count_include_pad } => match kind {
                PoolKind::Max => {
                    format!(
                        "max_pool2d({x}, kernel={}, stride={}, padding={})",
                        list(kernel),
                        list(stride),
                        list(padding)
                    )
                }
                PoolKind::Avg => format!(
                    "avg_pool2d({x}, kernel={}, stride={}, padding={}, count_include_pad={count_include_pad})",
                    list(kernel),
                    list(stride),
                    list(padding)
                ),
            },
            Op::Softmax { axis } => format!("softmax({x}, axis={axis})"),
            Op::LogSoftmax { axis } => format!("log_softmax({x}, axis={axis})"),
            Op::LayerNorm { axis, eps } => format!("layer_norm({args}, axis={axis}, eps={})", float_literal(*eps, id)?),
            Op::RmsNorm { axis, eps } => format!("rms_norm({args}, axis={axis}, eps={})", float_literal(*eps, id)?),
            Op::Gelu { approx } => match approx {
                GeluApprox::None => format!("gelu({x}, approximate=\"none\")"),
                GeluApprox::Tanh => format!("gelu({x}, approximate=\"tanh\")"),
            },
            Op::Silu => format!("silu({x})"),
            Op::Linear => format!("linear({args})"),
            Op::Attention { causal, scale } => {
                format!("attention({args}, causal={causal}, scale={})", float_literal(*scale, id)?)
            }
        })
    }
}

fn const_len(d: &ConstData) -> usize {
    match d {
        ConstData::Float(v) => v.len(),
        ConstData::Int(v) => v.len(),
        ConstData::Bool(v) => v.len(),
    }
}

/// The source text of a scalar constant node, when it has one.
fn literal(graph: &Graph, id: NodeId) -> Option<String> {
    let Op::Constant { data } = graph.op(id) else { return None };
    if graph.ty(id).rank() != 0 {
        return None;
    }
    match data {
        ConstData::Float(v) => v.first().and_then(|&x| float_text(x)),
        ConstData::Int(v) => v.first().filter(|&&x| x != i64::MIN).map(|x| x.to_string()),
        ConstData::Bool(v) => v.first().map(|x| x.to_string()),
    }
}

/// A float as a literal that parses back to the same value: shortest round-trip digits,
/// always with a `.` or an exponent; infinity as `1e999`.
fn float_text(x: f64) -> Option<String> {
    if x.is_nan() {
        return None;
    }
    if x.is_infinite() {
        return Some(if x > 0.0 { "1e999".into() } else { "-1e999".into() });
    }
    Some(format!("{x:?}"))
}

fn float_literal(x: f64, node: NodeId) -> Result<String, WriteError> {
    float_text(x).ok_or(WriteError::Literal { node, value: "NaN".into() })
}

fn binary_operator(b: BinaryOp) -> Option<&'static str> {
    Some(match b {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Rem => "%",
        BinaryOp::Pow => "**",
        BinaryOp::Maximum | BinaryOp::Minimum | BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => return None,
    })
}

fn compare_operator(c: CompareOp) -> &'static str {
    match c {
        CompareOp::Eq => "==",
        CompareOp::Ne => "!=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
    }
}
