//! The kernel-graph verifier: what every kernel-level stage must leave behind, checked by
//! code that did not produce it (the pipeline runs it after each of them in tests and debug
//! builds).
//!
//! - every computed node is in exactly one kernel; views and constants only where read;
//! - each kernel reads only bound regions and values that an earlier kernel writes (so the
//!   order is a schedule and the kernel dependencies are acyclic), and reads nothing it
//!   computes itself;
//! - a kernel writes exactly its values that are returned or read by another kernel;
//! - every graph output is written (or is bound);
//! - with a memory plan: every intermediate has a buffer, and the plan is valid (aligned,
//!   inside the arena, no two buffers alive together share a byte).

use std::collections::{HashMap, HashSet};

use super::memory::{MemoryPlan, ALIGNMENT};
use super::{schedule, KernelGraph, KernelId};
use crate::ir::{Graph, NodeId, OpClass};
use crate::plan::{check::check, PlanError};

/// A broken invariant of the kernel graph or its plan. Always a compiler bug.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{0} ({1}) is in no kernel")]
    Unassigned(NodeId, &'static str),
    #[error("{node} ({op}) is in {first} and in {second}")]
    InTwoKernels { node: NodeId, op: &'static str, first: KernelId, second: KernelId },
    #[error("{kernel} reads {value}, which no earlier kernel writes")]
    ReadBeforeWritten { kernel: KernelId, value: NodeId },
    #[error("{kernel} reads {value}, which it computes itself")]
    ReadsItself { kernel: KernelId, value: NodeId },
    #[error("{kernel} needs {value} but does not list it among its inputs")]
    MissingInput { kernel: KernelId, value: NodeId },
    #[error("{kernel} lists {value} as an input but no node of it reads that")]
    UnusedInput { kernel: KernelId, value: NodeId },
    #[error("{kernel} writes {value}, which it does not compute")]
    WritesForeign { kernel: KernelId, value: NodeId },
    #[error("{kernel} computes {value}, which another kernel or the caller reads, but does not write it")]
    NotWritten { kernel: KernelId, value: NodeId },
    #[error("{kernel} writes {value}, which nothing reads")]
    WrittenUnread { kernel: KernelId, value: NodeId },
    #[error("output `{0}` ({1}) is never written")]
    OutputNotWritten(String, NodeId),
    #[error("the intermediate {0} has no buffer in the memory plan")]
    NoBuffer(NodeId),
    #[error("the memory plan is invalid: {0}")]
    Plan(#[from] PlanError),
}

/// Checks `kg` (and `plan`, when given) against `graph`.
pub fn verify(graph: &Graph, kg: &KernelGraph, plan: Option<&MemoryPlan>) -> Result<(), KernelError> {
    let home = assignment(graph, kg)?;
    let returned: HashSet<NodeId> = graph.outputs.iter().map(|(_, o)| *o).collect();
    let mut written: HashSet<NodeId> = graph.node_ids().filter(|&n| graph.op(n).class() == OpClass::Leaf).collect();
    let mut readers: HashMap<NodeId, Vec<KernelId>> = HashMap::new();
    for (k, kernel) in kg.iter() {
        kernel.inputs.iter().for_each(|&i| readers.entry(i).or_default().push(k));
    }
    let read_elsewhere = |k: KernelId, v: NodeId| readers.get(&v).is_some_and(|r| r.iter().any(|&j| j != k));
    for (k, kernel) in kg.iter() {
        check_inputs(graph, k, kernel)?;
        for &i in &kernel.inputs {
            if !written.contains(&i) {
                return Err(KernelError::ReadBeforeWritten { kernel: k, value: i });
            }
        }
        for &o in &kernel.outputs {
            if home.get(&o) != Some(&k) {
                return Err(KernelError::WritesForeign { kernel: k, value: o });
            }
            if !returned.contains(&o) && !read_elsewhere(k, o) {
                return Err(KernelError::WrittenUnread { kernel: k, value: o });
            }
        }
        for &n in kernel.nodes.iter().filter(|n| home.get(n) == Some(&k) && !kernel.outputs.contains(n)) {
            if returned.contains(&n) || read_elsewhere(k, n) {
                return Err(KernelError::NotWritten { kernel: k, value: n });
            }
        }
        written.extend(kernel.outputs.iter().copied());
    }
    if let Some((name, o)) = graph.outputs.iter().find(|(_, o)| !written.contains(o)) {
        return Err(KernelError::OutputNotWritten(name.clone(), *o));
    }
    plan.map_or(Ok(()), |mp| verify_plan(graph, kg, mp))
}

/// A kernel's inputs are exactly what its nodes read from outside it.
fn check_inputs(graph: &Graph, k: KernelId, kernel: &super::Kernel) -> Result<(), KernelError> {
    let nodes: HashSet<NodeId> = kernel.nodes.iter().copied().collect();
    let inputs: HashSet<NodeId> = kernel.inputs.iter().copied().collect();
    if let Some(&i) = kernel.inputs.iter().find(|i| nodes.contains(i)) {
        return Err(KernelError::ReadsItself { kernel: k, value: i });
    }
    let read: HashSet<NodeId> =
        kernel.nodes.iter().flat_map(|&n| graph.operands(n)).filter(|o| !nodes.contains(o)).collect();
    if let Some(&value) = read.iter().find(|v| !inputs.contains(v)) {
        return Err(KernelError::MissingInput { kernel: k, value });
    }
    match kernel.inputs.iter().find(|i| !read.contains(i)) {
        Some(&value) => Err(KernelError::UnusedInput { kernel: k, value }),
        None => Ok(()),
    }
}

/// The kernel computing each computed node, checking that there is exactly one.
fn assignment(graph: &Graph, kg: &KernelGraph) -> Result<HashMap<NodeId, KernelId>, KernelError> {
    let mut home: HashMap<NodeId, KernelId> = HashMap::new();
    for (k, kernel) in kg.iter() {
        // A returned view or constant is computed (written) by its own kernel.
        let computed = kernel.nodes.iter().filter(|&&n| stored(graph, n) || kernel.outputs.contains(&n));
        for &n in computed {
            if let Some(first) = home.insert(n, k) {
                let op = graph.op(n).name();
                return Err(KernelError::InTwoKernels { node: n, op, first, second: k });
            }
        }
    }
    match graph.node_ids().find(|n| stored(graph, *n) && !home.contains_key(n)) {
        Some(n) => Err(KernelError::Unassigned(n, graph.op(n).name())),
        None => Ok(home),
    }
}

/// Nodes that some kernel must compute: everything but leaves, views and constants.
fn stored(graph: &Graph, n: NodeId) -> bool {
    let class = graph.op(n).class();
    class != OpClass::Leaf && !class.is_duplicable()
}

fn verify_plan(graph: &Graph, kg: &KernelGraph, mp: &MemoryPlan) -> Result<(), KernelError> {
    let buffered: HashSet<NodeId> = mp.values.iter().flatten().copied().collect();
    let outputs = kg.kernels.iter().flat_map(|kernel| kernel.outputs.iter().copied());
    if let Some(o) = outputs.filter(|&o| schedule::is_intermediate(graph, o)).find(|o| !buffered.contains(o)) {
        return Err(KernelError::NoBuffer(o));
    }
    Ok(check(&mp.buffers, &mp.plan, ALIGNMENT)?)
}
