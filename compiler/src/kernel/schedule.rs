//! Memory-aware scheduling: orders kernels to lower the peak of live intermediate bytes.
//!
//! List scheduling: among the kernels whose inputs are ready, run the one that adds the
//! fewest bytes (its new buffers minus the buffers it is the last reader of); ties go to
//! the earlier kernel. The ready kernels sit in an ordered set keyed by that difference,
//! updated when a buffer gets down to its last reader, so a schedule costs
//! `O(edges · log kernels)`. If the incoming order is valid and has a lower peak than the
//! list schedule (fusion's order is built to keep the unfused peak), it is kept. Graph
//! inputs, params and outputs are regions the runtime binds, so only intermediates count.
//!
//! *Requires:* a kernel graph whose dependencies are acyclic. *Establishes:* `kernels` is in
//! an order that respects every dependency.

use std::collections::{BTreeSet, HashMap};

use super::{bytes_at_bound, KernelGraph};
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

pub(crate) fn is_intermediate(graph: &Graph, v: NodeId) -> bool {
    !graph.outputs.iter().any(|(_, o)| *o == v)
}

/// Reorders `kg.kernels` to lower the peak; returns `None` if the dependencies have a cycle.
pub fn schedule(graph: &Graph, kg: &mut KernelGraph) -> Option<()> {
    let listed = order(graph, kg)?;
    let incoming: Vec<usize> = (0..kg.kernels.len()).collect();
    let chosen = if is_valid(kg, &incoming) && peak_of(graph, kg, &incoming) < peak_of(graph, kg, &listed) {
        incoming
    } else {
        listed
    };
    let mut kernels: Vec<Option<_>> = std::mem::take(&mut kg.kernels).into_iter().map(Some).collect();
    kg.kernels = chosen.into_iter().filter_map(|k| kernels[k].take()).collect();
    Some(())
}

/// Whether every kernel in `order` runs after the producers of its inputs.
fn is_valid(kg: &KernelGraph, order: &[usize]) -> bool {
    let produced_by = producers(kg);
    let mut step = vec![0; kg.kernels.len()];
    order.iter().enumerate().for_each(|(s, &k)| step[k] = s);
    order.iter().all(|&k| kg.kernels[k].inputs.iter().filter_map(|i| produced_by.get(i)).all(|&p| step[p] < step[k]))
}

fn peak_of(graph: &Graph, kg: &KernelGraph, order: &[usize]) -> u64 {
    let ordered = KernelGraph { kernels: order.iter().map(|&k| kg.kernels[k].clone()).collect() };
    peak(graph, &ordered)
}

/// The list schedule: kernel indices in execution order.
pub(crate) fn order(graph: &Graph, kg: &KernelGraph) -> Option<Vec<usize>> {
    let produced_by = producers(kg);
    let n = kg.kernels.len();
    // Bytes of each intermediate buffer (zero for bound regions, which are never freed).
    let bytes: HashMap<NodeId, i128> = produced_by
        .keys()
        .filter(|&&v| is_intermediate(graph, v))
        .map(|&v| (v, bytes_at_bound(graph, v) as i128))
        .collect();
    let size = |v: &NodeId| bytes.get(v).copied().unwrap_or(0);
    let mut readers: HashMap<NodeId, Vec<usize>> = HashMap::new();
    let mut waiting = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, kernel) in kg.kernels.iter().enumerate() {
        let mut deps: Vec<usize> =
            kernel.inputs.iter().filter_map(|i| produced_by.get(i)).copied().filter(|&p| p != k).collect();
        deps.sort_unstable();
        deps.dedup();
        waiting[k] = deps.len();
        deps.into_iter().for_each(|d| dependents[d].push(k));
        kernel.inputs.iter().for_each(|&i| readers.entry(i).or_default().push(k));
    }
    let mut readers_left: HashMap<NodeId, usize> = readers.iter().map(|(&v, r)| (v, r.len())).collect();
    let alloc: Vec<i128> = kg.kernels.iter().map(|kernel| kernel.outputs.iter().map(size).sum()).collect();
    let delta = |k: usize, left: &HashMap<NodeId, usize>| -> i128 {
        let freed: i128 = kg.kernels[k].inputs.iter().filter(|i| left.get(i) == Some(&1)).map(size).sum();
        alloc[k] - freed
    };
    let mut key: Vec<i128> = vec![0; n];
    let mut ready: BTreeSet<(i128, usize)> = BTreeSet::new();
    for k in (0..n).filter(|&k| waiting[k] == 0) {
        key[k] = delta(k, &readers_left);
        ready.insert((key[k], k));
    }
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while let Some((_, next)) = ready.pop_first() {
        done[next] = true;
        order.push(next);
        for i in &kg.kernels[next].inputs {
            let Some(left) = readers_left.get_mut(i) else { continue };
            *left -= 1;
            // The one reader left now frees the buffer: its cost drops if it is ready.
            if *left == 1 && size(i) > 0 {
                let last = readers.get(i).into_iter().flatten().copied().find(|&r| !done[r]);
                if let Some(r) = last.filter(|&r| ready.remove(&(key[r], r))) {
                    key[r] -= size(i);
                    ready.insert((key[r], r));
                }
            }
        }
        for &d in &dependents[next] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                key[d] = delta(d, &readers_left);
                ready.insert((key[d], d));
            }
        }
    }
    (order.len() == n).then_some(order)
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

/// The most intermediate bytes live at once: a sweep over the lifetimes' ends.
pub fn peak(graph: &Graph, kg: &KernelGraph) -> u64 {
    let mut change = vec![0i128; kg.kernels.len() + 1];
    for span in lifetimes(graph, kg) {
        change[span.first] += span.bytes as i128;
        change[span.last] -= span.bytes as i128;
    }
    let mut live = 0i128;
    let peak = change.iter().map(|c| {
        live += c;
        live
    });
    u64::try_from(peak.max().unwrap_or(0)).unwrap_or(u64::MAX)
}
