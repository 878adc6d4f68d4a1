//! Memory planning for a scheduled kernel graph: one arena for every intermediate buffer.
//!
//! Each kernel output that another kernel reads is a buffer alive from the step that writes
//! it to the last step that reads it (half-open, as in [`schedule::lifetimes`]), sized at
//! the symbols' upper bounds. An elementwise kernel may write its output over an input it
//! reads for the last time when both have the same size and every read of that input is at
//! the output's own index (no view in between): the two values then share one buffer, whose
//! lifetime is the union of theirs. The buffers go to [`crate::plan`] with 64-byte
//! alignment. Graph inputs, params and outputs are not in the arena: they are named regions
//! the runtime binds (on a unified-memory target, the caller's memory, never copied).
//!
//! *Requires:* a scheduled kernel graph. *Establishes:* every intermediate value has an
//! aligned offset; values alive together never share bytes.

use std::collections::HashMap;
use std::fmt::{self, Write};

use super::{bytes_at_bound, schedule, Kernel, KernelGraph, KernelKind};
use crate::ir::{Graph, NodeId, Op, OpClass};
use crate::plan::{self, Buffer, Plan, PlanOptions};

/// Offsets are multiples of this: a cache line, and enough for every vector load.
pub const ALIGNMENT: u64 = 64;

/// An arena buffer: an index into [`MemoryPlan::buffers`]. Prints as `buffer 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub u32);

impl BufferId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for BufferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buffer {}", self.0)
    }
}

/// What the runtime binds from outside the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegionKind {
    /// A graph input, written by the caller.
    Input,
    /// A weight, bound from a weights file or the artifact.
    Param,
    /// A graph output, read by the caller.
    Output,
}

impl RegionKind {
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Input => "input",
            RegionKind::Param => "param",
            RegionKind::Output => "output",
        }
    }
}

/// A region: memory the runtime binds from outside the arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub kind: RegionKind,
    pub name: String,
    /// The value it holds.
    pub value: NodeId,
    pub bytes: u64,
}

/// The arena plan of a kernel graph.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// One per arena buffer, indexed by [`BufferId`]; its id names the values it holds
    /// (`%3`, or `%3=%5` in place), as the planner's CSV and SVG show them.
    pub buffers: Vec<Buffer>,
    /// The values each buffer holds, in the order they are written.
    pub values: Vec<Vec<NodeId>>,
    pub plan: Plan,
    pub lower_bound: u64,
    /// Greedy best-fit's arena for the same buffers, for comparison.
    pub greedy_arena: u64,
    pub regions: Vec<Region>,
}

impl MemoryPlan {
    /// How many values were written over an input in place.
    pub fn in_place(&self) -> usize {
        self.values.iter().map(|vs| vs.len().saturating_sub(1)).sum()
    }
}

/// Plans the intermediates of a scheduled kernel graph.
pub fn plan_memory(graph: &Graph, kg: &KernelGraph, opts: &PlanOptions) -> MemoryPlan {
    let (buffers, values) = buffers(graph, kg);
    let opts = PlanOptions { alignment: ALIGNMENT, ..*opts };
    let (plan, report) = plan::plan_with_report(&buffers, &opts);
    MemoryPlan {
        buffers,
        values,
        plan,
        lower_bound: report.lower_bound,
        greedy_arena: report.greedy_arena,
        regions: regions(graph),
    }
}

/// The arena buffers: one per intermediate, with in-place pairs merged.
fn buffers(graph: &Graph, kg: &KernelGraph) -> (Vec<Buffer>, Vec<Vec<NodeId>>) {
    let lifetimes = schedule::lifetimes(graph, kg);
    let mut buffer_of: HashMap<NodeId, usize> = HashMap::new();
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut values: Vec<Vec<NodeId>> = Vec::new();
    for life in &lifetimes {
        // The input's buffer must end at this step (read here for the last time, and not yet
        // claimed by another output of this kernel) and be of the same size.
        let kernel = &kg.kernels[life.first];
        let reuse = kernel
            .inputs
            .iter()
            .filter(|&&input| overwritable(graph, kernel, life.value, input))
            .filter_map(|input| buffer_of.get(input).copied())
            .find(|&b| buffers[b].upper == life.first as u64 + 1 && buffers[b].size == life.bytes);
        let b = reuse.unwrap_or_else(|| {
            buffers.push(Buffer { id: String::new(), lower: life.first as u64, upper: 0, size: life.bytes });
            values.push(Vec::new());
            buffers.len() - 1
        });
        buffers[b].upper = buffers[b].upper.max(life.last as u64);
        values[b].push(life.value);
        buffer_of.insert(life.value, b);
    }
    let number = crate::ir::print::numbering(graph);
    for (buffer, vs) in buffers.iter_mut().zip(&values) {
        let names: Vec<String> =
            vs.iter().map(|v| number.get(v).map_or_else(|| format!("{v}"), |i| format!("%{i}"))).collect();
        buffer.id = names.join("=");
    }
    (buffers, values)
}

/// Whether `kernel` may write its output `value` over `input` as far as the kernel goes: it
/// is elementwise, and the input has the output's shape and is read only pointwise, at the
/// index being written.
fn overwritable(graph: &Graph, kernel: &Kernel, value: NodeId, input: NodeId) -> bool {
    kernel.kind == KernelKind::Elementwise
        && graph.ty(value).shape == kernel.domain
        && graph.ty(input).shape == kernel.domain
        && kernel.nodes.iter().filter(|n| graph.operands(**n).contains(&input)).all(|&n| is_pointwise(graph.op(n)))
}

/// Ops that read each operand at the index they write.
fn is_pointwise(op: &Op) -> bool {
    op.class() == OpClass::Elementwise
}

fn regions(graph: &Graph) -> Vec<Region> {
    let mut regions: Vec<Region> = graph
        .node_ids()
        .filter_map(|n| match graph.op(n) {
            Op::Input { name } => Some((RegionKind::Input, name, n)),
            Op::Param { name } => Some((RegionKind::Param, name, n)),
            _ => None,
        })
        .map(|(kind, name, value)| Region { kind, name: name.clone(), value, bytes: bytes_at_bound(graph, value) })
        .collect();
    regions.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    regions.extend(graph.outputs.iter().map(|(name, v)| Region {
        kind: RegionKind::Output,
        name: name.clone(),
        value: *v,
        bytes: bytes_at_bound(graph, *v),
    }));
    regions
}

/// The plan report of `flint compile --report`: the arena against its lower bound, the
/// regions, and what every kernel reads and writes.
pub fn report(graph: &Graph, kg: &KernelGraph, mp: &MemoryPlan) -> String {
    let mut out = String::new();
    let ratio = if mp.lower_bound == 0 { 1.0 } else { mp.plan.arena as f64 / mp.lower_bound as f64 };
    let _ = writeln!(
        out,
        "arena {} B, lower bound {} B, ratio {ratio:.3} (greedy best-fit {} B)",
        mp.plan.arena, mp.lower_bound, mp.greedy_arena
    );
    let _ = writeln!(out, "buffers {} ({} written in place), alignment {ALIGNMENT} B", mp.buffers.len(), mp.in_place());
    for (b, buffer) in mp.buffers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:<12} offset {:>9}  size {:>9}  steps [{}, {})",
            buffer.id, mp.plan.offsets[b], buffer.size, buffer.lower, buffer.upper
        );
    }
    let _ = writeln!(out, "regions {}", mp.regions.len());
    for r in &mp.regions {
        let _ = writeln!(out, "  {:<6} {:<16} {:>9} B", r.kind.name(), r.name, r.bytes);
    }
    let _ = writeln!(out, "kernels {}", kg.kernels.len());
    for (k, kernel) in kg.kernels.iter().enumerate() {
        let (read, written) = kg.traffic(graph, k);
        let _ = writeln!(out, "  {k:>3} {:<12} reads {read:>9} B  writes {written:>9} B", kernel.kind.name());
    }
    out
}
