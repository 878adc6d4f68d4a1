//! Fusion: partitions the graph's computation into kernels.
//!
//! Elementwise chains fuse with the views (reshape, permute, broadcast, slice) and constants
//! they read, which become index maps and immediates; reductions fuse with their producers
//! and with consumers over the same rows, so softmax, layer_norm and rms_norm become one row
//! kernel each; matmul and conv take their elementwise epilogue (bias, activation, residual).
//! Producers merge into their consumers' kernel, consumers first, one merge at a time.
//!
//! Fusion never raises peak memory. It starts from the list schedule of the unfused kernels
//! (one per computed node) and keeps every group at a step of that timeline: a producer
//! merged into its consumers' group moves to their step, its buffer disappears and the
//! buffers it reads live until that step. The live bytes per step sit in a segment tree
//! ([`super::live`]), so each candidate merge changes a range and reads the peak in
//! `O(log steps)`; a merge that would raise the peak is undone. The whole pass is
//! near-linear: `O(nodes · log nodes)` plus the work of seeing through chains of views and of
//! building each group once.
//!
//! *Requires:* a verified graph without composites or dead nodes (after `dce`). *Establishes:* every computed node
//! belongs to exactly one kernel (views and constants may be read by several); the kernels
//! are in an order that respects their dependencies (the timeline's), and the peak of live
//! intermediate bytes in that order is at most the unfused schedule's.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::live::LiveBytes;
use super::schedule;
use super::{bytes_at_bound, Kernel, KernelGraph, KernelKind};
use crate::ir::infer::numel;
use crate::ir::*;

/// The most reductions one row kernel holds: a softmax followed by a layer_norm. Each
/// reduction is a pass over the row whose operand the kernel recomputes or caches, so a long
/// chain of them in one kernel grows its code and its compile time faster than linearly; past
/// this, the chain splits into kernels that meet in memory.
pub const MAX_ROW_REDUCTIONS: usize = 4;

#[derive(Clone, Debug)]
struct Group {
    kind: KernelKind,
    domain: Shape,
    members: BTreeSet<NodeId>,
    /// The group's step in the timeline.
    step: usize,
}

struct Fusion<'g> {
    graph: &'g Graph,
    topo: HashMap<NodeId, usize>,
    groups: Vec<Option<Group>>,
    owner: HashMap<NodeId, usize>,
    /// The computed nodes that read each node, looking through views and constants.
    consumers: HashMap<NodeId, BTreeSet<NodeId>>,
    /// The buffers (owned or bound values) each node reads, looking through views.
    reads: HashMap<NodeId, BTreeSet<NodeId>>,
    /// The step of the last group reading each intermediate buffer.
    last_read: HashMap<NodeId, usize>,
    returned: HashSet<NodeId>,
    live: LiveBytes,
}

/// One kernel per computed node, scheduled: the baseline fusion improves on.
pub fn unfused(graph: &Graph) -> KernelGraph {
    Fusion::new(graph).kernel_graph()
}

/// Fuses `graph` into kernels, in an order that keeps the unfused peak.
pub fn fuse(graph: &Graph) -> KernelGraph {
    let order = graph.topo_order().unwrap_or_default();
    let mut f = Fusion::new(graph);
    for &n in order.iter().rev() {
        let Some(&from) = f.owner.get(&n) else { continue };
        let Some(target) = f.single_consumer_group(n).filter(|&t| t != from) else { continue };
        let Some(merged) = f.merged(n, from, target) else { continue };
        f.try_merge(from, target, merged);
    }
    let kg = f.kernel_graph();
    debug_assert_eq!(f.live.peak(), i128::from(schedule::peak(graph, &kg)), "the live-bytes model drifted");
    kg
}

impl<'g> Fusion<'g> {
    /// Every computed node alone in a group, at its step of the unfused list schedule.
    fn new(graph: &'g Graph) -> Fusion<'g> {
        let order = graph.topo_order().unwrap_or_default();
        let mut f = Fusion {
            graph,
            topo: order.iter().enumerate().map(|(i, &n)| (n, i)).collect(),
            groups: Vec::new(),
            owner: HashMap::new(),
            consumers: HashMap::new(),
            reads: HashMap::new(),
            last_read: HashMap::new(),
            returned: graph.outputs.iter().map(|(_, o)| *o).collect(),
            live: LiveBytes::new(0),
        };
        order.iter().for_each(|&n| f.start_group(n));
        f.look_through_views(&order);
        f.place_on_timeline();
        f
    }

    fn class(&self, n: NodeId) -> OpClass {
        self.graph.op(n).class()
    }

    fn is_output(&self, n: NodeId) -> bool {
        self.returned.contains(&n)
    }

    /// A view or constant that is computed inside each kernel reading it, never stored.
    fn is_inlined(&self, n: NodeId) -> bool {
        self.class(n).is_duplicable() && !self.owner.contains_key(&n)
    }

    /// Every computed node starts alone; a view or constant gets a kernel only when it is
    /// itself returned (it must be written somewhere).
    fn start_group(&mut self, n: NodeId) {
        let ty = self.graph.ty(n);
        let (kind, domain) = match self.class(n) {
            OpClass::Leaf | OpClass::Composite => return,
            OpClass::View | OpClass::Constant if !self.is_output(n) => return,
            OpClass::View | OpClass::Constant | OpClass::Elementwise => (KernelKind::Elementwise, ty.shape.clone()),
            OpClass::Reduction { axes } => (KernelKind::Row { axes }, self.operand_shape(n)),
            OpClass::Contraction => (KernelKind::Contraction, ty.shape.clone()),
            OpClass::Opaque => (KernelKind::Opaque, ty.shape.clone()),
        };
        self.owner.insert(n, self.groups.len());
        self.groups.push(Some(Group { kind, domain, members: BTreeSet::from([n]), step: 0 }));
    }

    fn operand_shape(&self, n: NodeId) -> Shape {
        self.graph.operands(n).first().map_or_else(Vec::new, |&o| self.graph.ty(o).shape.clone())
    }

    /// Fills `consumers` (in reverse topological order) and `reads` (in topological order),
    /// seeing through inlined views and constants; iterative, so chains of any length work.
    fn look_through_views(&mut self, order: &[NodeId]) {
        let graph = self.graph;
        self.consumers = self.through_views(order.iter().rev(), |n| graph.users(n));
        self.reads = self.through_views(order.iter(), |n| graph.operands(n));
    }

    /// For each node in `order`, its `next` nodes, with each inlined one replaced by what it
    /// leads to (already in the map, as `order` visits it first).
    fn through_views<'a>(
        &self,
        order: impl Iterator<Item = &'a NodeId>,
        next: impl Fn(NodeId) -> Vec<NodeId>,
    ) -> HashMap<NodeId, BTreeSet<NodeId>> {
        let mut done: HashMap<NodeId, BTreeSet<NodeId>> = HashMap::new();
        for &n in order {
            let mut out = BTreeSet::new();
            for m in next(n) {
                if self.is_inlined(m) {
                    out.extend(done.get(&m).into_iter().flatten().copied());
                } else {
                    out.insert(m);
                }
            }
            done.insert(n, out);
        }
        done
    }

    /// Steps from the list schedule of the singleton groups, and the live bytes per step.
    fn place_on_timeline(&mut self) {
        let kg = self.kernel_graph_in_group_order();
        let order = schedule::order(self.graph, &kg).unwrap_or_else(|| (0..kg.kernels.len()).collect());
        let live_groups: Vec<usize> = (0..self.groups.len()).filter(|&g| self.groups[g].is_some()).collect();
        for (step, &k) in order.iter().enumerate() {
            if let Some(g) = self.groups[live_groups[k]].as_mut() {
                g.step = step;
            }
        }
        self.live = LiveBytes::new(order.len());
        let buffers: Vec<(NodeId, usize)> = self.owner.iter().map(|(&n, &g)| (n, g)).collect();
        for (n, g) in buffers {
            let Some(last) = self.consumer_steps(n).max() else { continue };
            if !self.is_output(n) {
                self.last_read.insert(n, last);
                self.live.add(self.step(g), last, self.bytes(n));
            }
        }
    }

    fn step(&self, g: usize) -> usize {
        self.groups[g].as_ref().map_or(0, |g| g.step)
    }

    fn bytes(&self, n: NodeId) -> i128 {
        i128::from(bytes_at_bound(self.graph, n))
    }

    /// The steps of the groups reading `n`.
    fn consumer_steps(&self, n: NodeId) -> impl Iterator<Item = usize> + '_ {
        self.consumer_groups(n).map(|g| self.step(g))
    }

    fn consumer_groups(&self, n: NodeId) -> impl Iterator<Item = usize> + '_ {
        self.consumers.get(&n).into_iter().flatten().filter_map(|c| self.owner.get(c)).copied()
    }

    /// The one group all of `n`'s consumers belong to, if there is one.
    fn single_consumer_group(&self, n: NodeId) -> Option<usize> {
        let groups: BTreeSet<usize> = self.consumer_groups(n).collect();
        (groups.len() == 1).then(|| groups.into_iter().next()).flatten()
    }

    /// How many reductions a group holds.
    fn reductions(&self, g: &Group) -> usize {
        g.members.iter().filter(|&&m| matches!(self.class(m), OpClass::Reduction { .. })).count()
    }

    /// The kind and domain of `from`'s group merged into `target`, if they can fuse.
    fn merged(&self, n: NodeId, from: usize, target: usize) -> Option<(KernelKind, Shape)> {
        let (p, t) = (self.groups[from].as_ref()?, self.groups[target].as_ref()?);
        if self.reductions(p) + self.reductions(t) > MAX_ROW_REDUCTIONS {
            return None;
        }
        let same = |a: &[Dim], b: &[Dim]| numel(a) == numel(b);
        let t_rows = |axes: &[usize]| reduced(&t.domain, axes);
        match (&p.kind, &t.kind) {
            (KernelKind::Elementwise, KernelKind::Elementwise) if same(&p.domain, &t.domain) => {
                Some((KernelKind::Elementwise, t.domain.clone()))
            }
            // A per-row value (it broadcasts along some axes) makes the kernel a row kernel:
            // computed once per row, as a reduction's result would be.
            (KernelKind::Elementwise, KernelKind::Elementwise) => {
                broadcast_axes(&p.domain, &t.domain).map(|axes| (KernelKind::Row { axes }, t.domain.clone()))
            }
            (KernelKind::Elementwise, KernelKind::Row { axes })
                if same(&p.domain, &t.domain) || same(&p.domain, &t_rows(axes)) =>
            {
                Some((t.kind.clone(), t.domain.clone()))
            }
            (KernelKind::Elementwise, KernelKind::Contraction)
                if same(&p.domain, &t.domain) && !self.feeds_contraction(n, t) =>
            {
                Some((KernelKind::Contraction, t.domain.clone()))
            }
            (KernelKind::Row { axes }, KernelKind::Elementwise)
                if same(&t.domain, &p.domain) || same(&t.domain, &reduced(&p.domain, axes)) =>
            {
                Some((p.kind.clone(), p.domain.clone()))
            }
            (KernelKind::Row { axes: a }, KernelKind::Row { axes: b }) if a == b && p.domain == t.domain => {
                Some((p.kind.clone(), p.domain.clone()))
            }
            (KernelKind::Contraction, KernelKind::Elementwise) if same(&p.domain, &t.domain) => {
                Some((KernelKind::Contraction, p.domain.clone()))
            }
            _ => None,
        }
    }

    /// Whether `n` is an operand of a matmul or conv in `t` (a contraction reads each operand
    /// many times; recomputing a producer there would multiply its work).
    fn feeds_contraction(&self, n: NodeId, t: &Group) -> bool {
        let consumers = self.consumers.get(&n).into_iter().flatten();
        consumers.filter(|c| t.members.contains(c)).any(|&c| self.class(c) == OpClass::Contraction)
    }

    /// Moves `from`'s members to `target`'s step, unless that raises the peak. Every
    /// consumer of `from` is in `target` (or `from`), so the move keeps the timeline a valid
    /// order and creates no cycle: a path out of `from` and back into `target` would pass
    /// through `target` first, and the grouping had no cycle before.
    fn try_merge(&mut self, from: usize, target: usize, (kind, domain): (KernelKind, Shape)) {
        let (Some(p), Some(to)) = (self.groups[from].as_ref(), self.groups[target].as_ref()) else { return };
        let (start, at) = (p.step, to.step);
        let members: Vec<NodeId> = p.members.iter().copied().collect();
        let contained = members.iter().all(|&m| self.consumer_groups(m).all(|g| g == from || g == target));
        if !contained || at <= start {
            return;
        }
        // (first step, last step, bytes): `from`'s buffers go, the buffers it reads stretch.
        let mut changes: Vec<(usize, usize, i128)> = Vec::new();
        let mut stretched: Vec<NodeId> = Vec::new();
        for &m in &members {
            if let Some(&last) = self.last_read.get(&m) {
                changes.push((start, last, -self.bytes(m)));
            }
        }
        let read: BTreeSet<NodeId> =
            members.iter().flat_map(|m| self.reads.get(m).into_iter().flatten().copied()).collect();
        for i in read.into_iter().filter(|i| !members.contains(i)) {
            if let Some(&last) = self.last_read.get(&i).filter(|&&last| last < at) {
                changes.push((last + 1, at, self.bytes(i)));
                stretched.push(i);
            }
        }
        let peak = self.live.peak();
        changes.iter().for_each(|&(a, b, bytes)| self.live.add(a, b, bytes));
        if self.live.peak() > peak {
            changes.iter().for_each(|&(a, b, bytes)| self.live.add(a, b, -bytes));
            return;
        }
        for i in stretched {
            self.last_read.insert(i, at);
        }
        for m in &members {
            self.last_read.remove(m);
            self.owner.insert(*m, target);
        }
        let moved = self.groups[from].take().map(|g| g.members).unwrap_or_default();
        if let Some(t) = self.groups[target].as_mut() {
            t.members.extend(moved);
            t.kind = kind;
            t.domain = domain;
        }
    }

    /// The kernels of the current grouping, in timeline order.
    fn kernel_graph(&self) -> KernelGraph {
        let mut groups: Vec<&Group> = self.groups.iter().flatten().collect();
        groups.sort_by_key(|g| g.step);
        KernelGraph { kernels: groups.into_iter().map(|g| self.kernel(g)).collect() }
    }

    /// The kernels of the current grouping, in group order (before steps exist).
    fn kernel_graph_in_group_order(&self) -> KernelGraph {
        KernelGraph { kernels: self.groups.iter().flatten().map(|g| self.kernel(g)).collect() }
    }

    fn kernel(&self, g: &Group) -> Kernel {
        let mut nodes = g.members.clone();
        let mut stack: Vec<NodeId> = g.members.iter().copied().collect();
        while let Some(n) = stack.pop() {
            for o in self.graph.operands(n) {
                if self.is_inlined(o) && nodes.insert(o) {
                    stack.push(o);
                }
            }
        }
        let by_topo = |set: BTreeSet<NodeId>| {
            let mut v: Vec<NodeId> = set.into_iter().collect();
            v.sort_by_key(|n| self.topo.get(n).copied());
            v
        };
        let inputs: BTreeSet<NodeId> =
            nodes.iter().flat_map(|&n| self.graph.operands(n)).filter(|o| !nodes.contains(o)).collect();
        let outputs: BTreeSet<NodeId> = g
            .members
            .iter()
            .copied()
            .filter(|&m| {
                self.is_output(m) || self.consumers.get(&m).into_iter().flatten().any(|c| !g.members.contains(c))
            })
            .collect();
        Kernel {
            kind: g.kind.clone(),
            domain: g.domain.clone(),
            nodes: by_topo(nodes),
            inputs: by_topo(inputs),
            outputs: by_topo(outputs),
        }
    }
}

/// `shape` with `axes` set to 1: the shape of one value per row.
fn reduced(shape: &[Dim], axes: &[usize]) -> Shape {
    shape.iter().enumerate().map(|(i, d)| if axes.contains(&i) { Dim::known(1) } else { d.clone() }).collect()
}

/// The axes along which `small` broadcasts to `big` (aligned at the trailing axes), when it
/// does so along at least one axis.
fn broadcast_axes(small: &[Dim], big: &[Dim]) -> Option<Vec<usize>> {
    let offset = big.len().checked_sub(small.len())?;
    let mut axes: Vec<usize> = (0..offset).collect();
    for (i, d) in small.iter().enumerate() {
        match (d.is_one(), *d == big[offset + i]) {
            (_, true) => {}
            (true, false) => axes.push(offset + i),
            (false, false) => return None,
        }
    }
    (!axes.is_empty()).then_some(axes)
}
