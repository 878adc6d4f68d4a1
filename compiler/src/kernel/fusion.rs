//! Fusion: partitions the graph's computation into kernels.
//!
//! Elementwise chains fuse with the views (reshape, permute, broadcast, slice) and constants
//! they read, which become index maps and immediates; reductions fuse with their producers
//! and with consumers over the same rows, so softmax, layer_norm and rms_norm become one row
//! kernel each; matmul and conv take their elementwise epilogue (bias, activation, residual).
//! Producers merge into their consumers' kernel, consumers first, one merge at a time.
//!
//! Fusion never raises peak memory: a merge only removes buffers, but it can stretch the
//! lifetimes of a kernel's inputs, so each merge is kept only if the scheduled peak of live
//! intermediate bytes (at the symbols' bounds) does not rise; otherwise it is undone.
//!
//! *Requires:* a verified graph without composites. *Establishes:* every computed node
//! belongs to exactly one kernel (views and constants may be read by several); the kernel
//! dependencies are acyclic and the kernels are in a memory-aware schedule.

use std::collections::{BTreeSet, HashMap};

use super::kernels::{Kernel, KernelGraph, KernelKind};
use super::schedule;
use crate::ir::infer::numel;
use crate::ir::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// A graph input or param: a bound buffer.
    Leaf,
    /// Free to recompute in every kernel that reads it: views, constants, iota.
    Duplicable,
    Elementwise,
    Reduce,
    Contraction,
    Opaque,
}

fn class(op: &Op) -> Class {
    match op {
        Op::Input { .. } | Op::Param { .. } => Class::Leaf,
        Op::Constant { .. } | Op::Iota { .. } | Op::Reshape | Op::Permute { .. } | Op::Broadcast | Op::Slice { .. } => {
            Class::Duplicable
        }
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast => Class::Elementwise,
        Op::Reduce { .. } | Op::ArgReduce { .. } => Class::Reduce,
        Op::MatMul | Op::Conv2d { .. } => Class::Contraction,
        Op::Concat { .. }
        | Op::Pad { .. }
        | Op::Gather { .. }
        | Op::Pool2d { .. }
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::LayerNorm { .. }
        | Op::RmsNorm { .. }
        | Op::Gelu { .. }
        | Op::Silu
        | Op::Linear
        | Op::Attention { .. } => Class::Opaque,
    }
}

#[derive(Clone, Debug)]
struct Group {
    kind: KernelKind,
    domain: Shape,
    members: BTreeSet<NodeId>,
}

struct Fusion<'g> {
    graph: &'g Graph,
    topo: HashMap<NodeId, usize>,
    groups: Vec<Option<Group>>,
    owner: HashMap<NodeId, usize>,
}

/// One kernel per computed node, scheduled: the baseline fusion improves on.
pub fn unfused(graph: &Graph) -> KernelGraph {
    Fusion::new(graph).kernels().0
}

/// Fuses `graph` into kernels and schedules them.
pub fn fuse(graph: &Graph) -> KernelGraph {
    let order = graph.topo_order().unwrap_or_default();
    let mut f = Fusion::new(graph);
    let (mut best, mut peak) = f.kernels();
    for &n in order.iter().rev() {
        let Some(&from) = f.owner.get(&n) else { continue };
        let Some(target) = f.single_consumer_group(n).filter(|&t| t != from) else { continue };
        let Some(merged) = f.merged(n, from, target) else { continue };
        let saved = (f.groups[from].clone(), f.groups[target].clone(), f.owner.clone());
        f.apply_merge(from, target, merged);
        match f.kernels() {
            (kg, p) if p <= peak && !kg.kernels.is_empty() => (best, peak) = (kg, p),
            _ => (f.groups[from], f.groups[target], f.owner) = saved,
        }
    }
    best
}

impl<'g> Fusion<'g> {
    fn new(graph: &'g Graph) -> Fusion<'g> {
        let mut f = Fusion { graph, topo: HashMap::new(), groups: Vec::new(), owner: HashMap::new() };
        for (i, n) in graph.topo_order().unwrap_or_default().into_iter().enumerate() {
            f.topo.insert(n, i);
            f.start_group(n);
        }
        f
    }

    fn class(&self, n: NodeId) -> Class {
        class(self.graph.op(n))
    }

    fn is_output(&self, n: NodeId) -> bool {
        self.graph.outputs.iter().any(|(_, o)| *o == n)
    }

    /// Every computed node starts alone; a view or constant gets a kernel only when it is
    /// itself returned (it must be written somewhere).
    fn start_group(&mut self, n: NodeId) {
        let ty = self.graph.ty(n);
        let (kind, domain) = match self.class(n) {
            Class::Leaf => return,
            Class::Duplicable if !self.is_output(n) => return,
            Class::Duplicable | Class::Elementwise => (KernelKind::Elementwise, ty.shape.clone()),
            Class::Reduce => (KernelKind::Row { axes: reduced_axes(self.graph.op(n)) }, self.operand_shape(n)),
            Class::Contraction => (KernelKind::Contraction, ty.shape.clone()),
            Class::Opaque => (KernelKind::Opaque, ty.shape.clone()),
        };
        self.owner.insert(n, self.groups.len());
        self.groups.push(Some(Group { kind, domain, members: BTreeSet::from([n]) }));
    }

    fn operand_shape(&self, n: NodeId) -> Shape {
        self.graph.operands(n).first().map_or_else(Vec::new, |&o| self.graph.ty(o).shape.clone())
    }

    /// The computed nodes that read `n`, looking through views and constants.
    fn consumers(&self, n: NodeId) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        for u in self.graph.users(n) {
            if self.class(u) == Class::Duplicable && !self.owner.contains_key(&u) {
                out.extend(self.consumers(u));
            } else {
                out.insert(u);
            }
        }
        out
    }

    /// The one group all of `n`'s consumers belong to, if there is one.
    fn single_consumer_group(&self, n: NodeId) -> Option<usize> {
        let groups: BTreeSet<usize> = self.consumers(n).iter().filter_map(|c| self.owner.get(c)).copied().collect();
        (groups.len() == 1).then(|| groups.into_iter().next()).flatten()
    }

    /// The kind and domain of `from`'s group merged into `target`, if they can fuse.
    fn merged(&self, n: NodeId, from: usize, target: usize) -> Option<(KernelKind, Shape)> {
        let (p, t) = (self.groups[from].as_ref()?, self.groups[target].as_ref()?);
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
        t.members.iter().any(|&m| self.class(m) == Class::Contraction && self.reads(m, n))
    }

    /// Whether `m` reads `n`, directly or through views.
    fn reads(&self, m: NodeId, n: NodeId) -> bool {
        self.graph.operands(m).into_iter().any(|o| o == n || (self.class(o) == Class::Duplicable && self.reads(o, n)))
    }

    fn apply_merge(&mut self, from: usize, target: usize, (kind, domain): (KernelKind, Shape)) {
        let Some(moved) = self.groups[from].take() else { return };
        for &m in &moved.members {
            self.owner.insert(m, target);
        }
        if let Some(t) = self.groups[target].as_mut() {
            t.members.extend(moved.members);
            t.kind = kind;
            t.domain = domain;
        }
    }

    /// The kernels of the current grouping, scheduled, and their peak; an empty kernel
    /// graph and `u64::MAX` if the grouping has a cycle.
    fn kernels(&self) -> (KernelGraph, u64) {
        let mut kg = KernelGraph { kernels: self.groups.iter().flatten().map(|g| self.kernel(g)).collect() };
        if schedule::schedule(self.graph, &mut kg).is_none() {
            return (KernelGraph::default(), u64::MAX);
        }
        let peak = schedule::peak(self.graph, &kg);
        (kg, peak)
    }

    fn kernel(&self, g: &Group) -> Kernel {
        let mut nodes = g.members.clone();
        let mut stack: Vec<NodeId> = g.members.iter().copied().collect();
        while let Some(n) = stack.pop() {
            for o in self.graph.operands(n) {
                if self.class(o) == Class::Duplicable && !self.owner.contains_key(&o) && nodes.insert(o) {
                    stack.push(o);
                }
            }
        }
        let by_topo = |set: BTreeSet<NodeId>| {
            let mut v: Vec<NodeId> = set.into_iter().collect();
            v.sort_by_key(|n| self.topo[n]);
            v
        };
        let inputs: BTreeSet<NodeId> =
            nodes.iter().flat_map(|&n| self.graph.operands(n)).filter(|o| !nodes.contains(o)).collect();
        let outputs: BTreeSet<NodeId> = g
            .members
            .iter()
            .copied()
            .filter(|&m| self.is_output(m) || self.consumers(m).iter().any(|c| !g.members.contains(c)))
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

fn reduced_axes(op: &Op) -> Vec<usize> {
    match op {
        Op::Reduce { axes, .. } => axes.clone(),
        Op::ArgReduce { axis, .. } => vec![*axis],
        _ => Vec::new(),
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
