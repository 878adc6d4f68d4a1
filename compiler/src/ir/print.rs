//! The deterministic IR printer. Nodes are numbered densely in topological order (ties by
//! handle), so equal graphs print equal text whatever their history of removals.
//! The format is described in `ir-spec/ir.md`.

use std::collections::HashMap;
use std::fmt::Write;

use super::{ConstData, Graph, NodeId, Op, TensorType};

/// The graph as text. A graph with a cycle prints its nodes in handle order, marked.
pub fn print(graph: &Graph) -> String {
    let (order, cyclic) = match graph.topo_order() {
        Some(order) => (order, false),
        None => (graph.node_ids().collect(), true),
    };
    let number = numbering(graph);
    let name = |n: NodeId| number.get(&n).map_or_else(|| format!("{n}?"), |i| format!("%{i}"));
    let ty = |t: &TensorType| t.display(&graph.symbols).to_string();

    let mut out = String::new();
    let _ = writeln!(out, "graph {} {{", signature(graph));
    if cyclic {
        let _ = writeln!(out, "  # not a DAG: nodes in handle order");
    }
    for &id in &order {
        let node = graph.node(id);
        let operands: Vec<String> = graph.operands(id).into_iter().map(name).collect();
        let _ = write!(out, "  {} = {}", name(id), node.op.name());
        match &node.op {
            Op::Input { name: n } | Op::Param { name: n } => {
                let _ = write!(out, " {n:?}");
            }
            Op::Constant { data } => {
                let _ = write!(out, " {}", const_values(data));
            }
            _ => {
                let _ = write!(out, "({})", operands.join(", "));
            }
        }
        let attrs = attributes(&node.op);
        if !attrs.is_empty() {
            let _ = write!(out, " {{{}}}", attrs.join(", "));
        }
        let _ = write!(out, " : {}", ty(&node.ty));
        if let Some(n) = node.name.as_ref().filter(|_| !matches!(node.op, Op::Input { .. } | Op::Param { .. })) {
            let _ = write!(out, "  # {n}");
        }
        out.push('\n');
    }
    let rets: Vec<String> = graph.outputs.iter().map(|(o, n)| format!("{o}={}", name(*n))).collect();
    let _ = writeln!(out, "  return {}", rets.join(", "));
    out.push_str("}\n");
    out
}

/// The dense number of every node, as printed: its position in topological order (handle
/// order for a graph with a cycle).
pub fn numbering(graph: &Graph) -> HashMap<NodeId, usize> {
    let order = graph.topo_order().unwrap_or_else(|| graph.node_ids().collect());
    order.iter().enumerate().map(|(i, &n)| (n, i)).collect()
}

/// `name(x: f32[N<=64, 784]) -> (probs: f32[N, 10])`: each bound at its symbol's first appearance.
pub fn signature(graph: &Graph) -> String {
    let mut declared = vec![false; graph.symbols.len()];
    let inputs: Vec<String> = graph
        .inputs
        .iter()
        .filter(|&&n| graph.contains(n))
        .map(|&n| format!("{}: {}", input_name(graph, n), signature_type(graph, graph.ty(n), &mut declared)))
        .collect();
    let outputs: Vec<String> = graph
        .outputs
        .iter()
        .map(|(o, n)| {
            let t = if graph.contains(*n) { graph.ty(*n).display(&graph.symbols).to_string() } else { "?".into() };
            format!("{o}: {t}")
        })
        .collect();
    format!("{}({}) -> ({})", graph.name, inputs.join(", "), outputs.join(", "))
}

fn input_name(graph: &Graph, id: NodeId) -> String {
    match graph.op(id) {
        Op::Input { name } => name.clone(),
        other => format!("<{}>", other.name()),
    }
}

/// A signature type, with a symbol's bound where it is not yet `declared`: `f32[N<=64, 784]`.
fn signature_type(graph: &Graph, t: &TensorType, declared: &mut [bool]) -> String {
    let dims: Vec<String> = t
        .shape
        .iter()
        .map(|d| match (d.syms.as_slice(), d.coeff) {
            ([s], 1) if declared.get(s.0 as usize) == Some(&false) => {
                declared[s.0 as usize] = true;
                let sym = &graph.symbols[s.0 as usize];
                format!("{}<={}", sym.name, sym.bound)
            }
            _ => d.display(&graph.symbols).to_string(),
        })
        .collect();
    format!("{}[{}]", t.dtype, dims.join(", "))
}

/// Up to eight values; longer constants show their head and their length.
fn const_values(data: &ConstData) -> String {
    fn list<T: std::fmt::Debug>(v: &[T]) -> String {
        let head: Vec<String> = v.iter().take(8).map(|x| format!("{x:?}")).collect();
        match v.len() {
            1 => head[0].clone(),
            n if n > 8 => format!("[{}, ... ({n} values)]", head.join(", ")),
            _ => format!("[{}]", head.join(", ")),
        }
    }
    match data {
        ConstData::Float(v) => list(v),
        ConstData::Int(v) => list(v),
        ConstData::Bool(v) => list(v),
    }
}

/// The attributes of an op as `key=value` strings, in declaration order.
pub fn attributes(op: &Op) -> Vec<String> {
    let kv = |k: &str, v: String| format!("{k}={v}");
    match op {
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Constant { .. }
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Cast
        | Op::MatMul
        | Op::Reshape
        | Op::Broadcast
        | Op::Silu
        | Op::Linear => vec![],
        Op::Iota { axis } | Op::Concat { axis } | Op::Gather { axis } => vec![kv("axis", axis.to_string())],
        Op::Softmax { axis } | Op::LogSoftmax { axis } => vec![kv("axis", axis.to_string())],
        Op::Reduce { axes, keepdims, .. } => {
            vec![kv("axes", format!("{axes:?}")), kv("keepdims", keepdims.to_string())]
        }
        Op::ArgReduce { axis, keepdims, .. } => {
            vec![kv("axis", axis.to_string()), kv("keepdims", keepdims.to_string())]
        }
        Op::Permute { perm } => vec![kv("perm", format!("{perm:?}"))],
        Op::Slice { axis, start, end, step } => vec![
            kv("axis", axis.to_string()),
            kv("start", start.to_string()),
            kv("end", end.to_string()),
            kv("step", step.to_string()),
        ],
        Op::Pad { low, high, value } => {
            vec![kv("low", format!("{low:?}")), kv("high", format!("{high:?}")), kv("value", format!("{value:?}"))]
        }
        Op::Conv2d { stride, padding, dilation, groups } => vec![
            kv("stride", format!("{stride:?}")),
            kv("padding", format!("{padding:?}")),
            kv("dilation", format!("{dilation:?}")),
            kv("groups", groups.to_string()),
        ],
        Op::Pool2d { kernel, stride, padding, count_include_pad, kind } => {
            let mut a = vec![
                kv("kernel", format!("{kernel:?}")),
                kv("stride", format!("{stride:?}")),
                kv("padding", format!("{padding:?}")),
            ];
            if *kind == super::PoolKind::Avg {
                a.push(kv("count_include_pad", count_include_pad.to_string()));
            }
            a
        }
        Op::LayerNorm { axis, eps } | Op::RmsNorm { axis, eps } => {
            vec![kv("axis", axis.to_string()), kv("eps", format!("{eps:?}"))]
        }
        Op::Gelu { approx } => vec![kv("approximate", format!("{:?}", format!("{approx:?}").to_lowercase()))],
        Op::Attention { causal, scale } => vec![kv("causal", causal.to_string()), kv("scale", format!("{scale:?}"))],
    }
}
