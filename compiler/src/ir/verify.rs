//! The IR verifier: handles and edges first, then the signature, then every node's type.

use super::infer::{result_type, TypeError};
use super::{Graph, NodeId, Op};

/// A broken invariant of a [`Graph`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("{node} has operand slots {slots:?}; they must be 0..{count}")]
    OperandSlots { node: NodeId, slots: Vec<u32>, count: usize },
    #[error("the graph has a cycle")]
    Cycle,
    #[error("signature refers to a removed node {0}")]
    DanglingHandle(NodeId),
    #[error("input {node} listed in the signature is a `{found}` node")]
    NotAnInput { node: NodeId, found: &'static str },
    #[error("input node {0} is missing from the signature")]
    UnlistedInput(NodeId),
    #[error("name `{name}` is used by two {what}")]
    DuplicateName { what: &'static str, name: String },
    #[error("{node} refers to symbol #{symbol}, but the graph declares {count}")]
    UnknownSymbol { node: NodeId, symbol: u32, count: usize },
    #[error("{node} = {op}: {message}")]
    Type { node: NodeId, op: &'static str, message: String, error: Box<TypeError> },
}

/// Checks every invariant of `graph` and returns the first broken one.
pub fn verify(graph: &Graph) -> Result<(), VerifyError> {
    check_edges(graph)?;
    check_signature(graph)?;
    let order = graph.topo_order().ok_or(VerifyError::Cycle)?;
    for id in order {
        check_symbols(graph, id)?;
        check_type(graph, id)?;
    }
    Ok(())
}

fn check_edges(graph: &Graph) -> Result<(), VerifyError> {
    for id in graph.node_ids() {
        let mut slots = graph.operand_slots(id);
        slots.sort();
        if slots.iter().enumerate().any(|(i, &s)| s as usize != i) {
            let count = slots.len();
            return Err(VerifyError::OperandSlots { node: id, slots, count });
        }
    }
    Ok(())
}

fn check_signature(graph: &Graph) -> Result<(), VerifyError> {
    let listed = graph.inputs.iter().chain(graph.outputs.iter().map(|(_, n)| n));
    if let Some(&dangling) = listed.into_iter().find(|&&n| !graph.contains(n)) {
        return Err(VerifyError::DanglingHandle(dangling));
    }
    for &input in &graph.inputs {
        if !matches!(graph.op(input), Op::Input { .. }) {
            return Err(VerifyError::NotAnInput { node: input, found: graph.op(input).name() });
        }
    }
    let mut param_names = Vec::new();
    let mut input_names = Vec::new();
    for id in graph.node_ids() {
        match graph.op(id) {
            Op::Input { .. } if !graph.inputs.contains(&id) => return Err(VerifyError::UnlistedInput(id)),
            Op::Input { name } => input_names.push(name.clone()),
            Op::Param { name } => param_names.push(name.clone()),
            _ => {}
        }
    }
    let output_names = graph.outputs.iter().map(|(n, _)| n.clone()).collect();
    for (what, names) in [("inputs", input_names), ("params", param_names), ("outputs", output_names)] {
        unique(what, names)?;
    }
    Ok(())
}

fn unique(what: &'static str, mut names: Vec<String>) -> Result<(), VerifyError> {
    names.sort();
    match names.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(VerifyError::DuplicateName { what, name: w[0].clone() }),
        None => Ok(()),
    }
}

fn check_symbols(graph: &Graph, id: NodeId) -> Result<(), VerifyError> {
    let count = graph.symbols.len();
    let syms = graph.ty(id).shape.iter().flat_map(|d| d.syms.iter());
    match syms.into_iter().find(|s| s.0 as usize >= count) {
        Some(s) => Err(VerifyError::UnknownSymbol { node: id, symbol: s.0, count }),
        None => Ok(()),
    }
}

fn check_type(graph: &Graph, id: NodeId) -> Result<(), VerifyError> {
    let operands = graph.operands(id);
    let types: Vec<_> = operands.iter().map(|&o| graph.ty(o)).collect();
    let node = graph.node(id);
    result_type(&node.op, &types, Some(&node.ty)).map(|_| ()).map_err(|error| {
        let message = error.display(&graph.symbols).to_string();
        VerifyError::Type { node: id, op: node.op.name(), message, error: Box::new(error) }
    })
}
