//! Memory-aware scheduling: orders kernels to lower the peak of live intermediate bytes.
//!
//! List scheduling: among the kernels whose inputs are ready, run the one that adds the
//! fewest bytes (its new buffers minus the buffers it is the last reader of); ties go to
//! the earlier kernel. Graph inputs, params and outputs are regions the runtime binds, so
//! only intermediates count.
//!
//! *Requires:* a kernel graph whose dependencies are acyclic. *Establishes:* `kernels` is in
//! an order that respects every dependency.

use std::collections::{HashMap, HashSet};

use super::kernels::{bytes_at_bound, KernelGraph};
use crate::ir::{Graph, NodeId};

/// An intermediate buffer's lifetime in schedule steps, half-open: `[first, last)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub value: NodeId,
    pub first: usize,
    pub last: usize,
    pub bytes: u64,
}

/// The kernel producing each kernel output.
fn producers(kg: &KernelGraph) -> HashMap<NodeId, usize> {
    kg.kernels.iter().enumerate().flat_map(|(k, kernel)| kernel.outputs.iter().map(move |&o| (o, k))).collect()
}

fn is_intermediate(graph: &Graph, v: NodeId) -> bool {
    !graph.outputs.iter().any(|(_, o)| *o == v)
}

/// Reorders `kg.kernels` to lower the peak; returns `None` if the dependencies have a cycle.
pub fn schedule(graph: &Graph, kg: &mut KernelGraph) -> Option<()> {
    let order = order(graph, kg)?;
    let mut kernels: Vec<Option<_>> = std::mem::take(&mut kg.kernels).into_iter().map(Some).collect();
    kg.kernels = order.into_iter().filter_map(|k| kernels[k].take()).collect();
    Some(())
}

fn order(graph: &Graph, kg: &KernelGraph) -> Option<Vec<usize>> {
    let produced_by = producers(kg);
    let deps: Vec<HashSet<usize>> = kg
        .kernels
        .iter()
        .enumerate()
        .map(|(k, kernel)| {
            kernel.inputs.iter().filter_map(|i| produced_by.get(i)).copied().filter(|&p| p != k).collect()
        })
        .collect();
    let mut readers_left: HashMap<NodeId, usize> = HashMap::new();
    for kernel in &kg.kernels {
        for &i in &kernel.inputs {
            *readers_left.entry(i).or_default() += 1;
        }
    }
    let mut done = vec![false; kg.kernels.len()];
    let mut order = Vec::with_capacity(kg.kernels.len());
    while order.len() < kg.kernels.len() {
        let ready = (0..kg.kernels.len()).filter(|&k| !done[k] && deps[k].iter().all(|&d| done[d]));
        let delta = |k: usize| -> i128 {
            let kernel = &kg.kernels[k];
            let alloc: u64 =
                kernel.outputs.iter().filter(|&&o| is_intermediate(graph, o)).map(|&o| bytes_at_bound(graph, o)).sum();
            let freed: u64 = kernel
                .inputs
                .iter()
                .filter(|&&i| produced_by.contains_key(&i) && is_intermediate(graph, i) && readers_left[&i] == 1)
                .map(|&i| bytes_at_bound(graph, i))
                .sum();
            alloc as i128 - freed as i128
        };
        let next = ready.min_by_key(|&k| (delta(k), k))?;
        done[next] = true;
        for &i in &kg.kernels[next].inputs {
            if let Some(n) = readers_left.get_mut(&i) {
                *n -= 1;
            }
        }
        order.push(next);
    }
    Some(order)
}

/// The lifetime of every intermediate buffer of an ordered kernel graph.
pub fn lifetimes(graph: &Graph, kg: &KernelGraph) -> Vec<Lifetime> {
    let mut spans: Vec<Lifetime> = Vec::new();
    let mut index: HashMap<NodeId, usize> = HashMap::new();
    for (step, kernel) in kg.kernels.iter().enumerate() {
        for &o in kernel.outputs.iter().filter(|&&o| is_intermediate(graph, o)) {
            index.insert(o, spans.len());
            spans.push(Lifetime { value: o, first: step, last: step + 1, bytes: bytes_at_bound(graph, o) });
        }
        for i in &kernel.inputs {
            if let Some(&at) = index.get(i) {
                spans[at].last = step + 1;
            }
        }
    }
    spans
}

/// The most intermediate bytes live at once.
pub fn peak(graph: &Graph, kg: &KernelGraph) -> u64 {
    let spans = lifetimes(graph, kg);
    let steps = kg.kernels.len();
    (0..steps).map(|t| spans.iter().filter(|s| s.first <= t && t < s.last).map(|s| s.bytes).sum()).max().unwrap_or(0)
}
