//! The kernel graph: what fusion produces, scheduling orders and the memory plan stores.
//!
//! A kernel is a set of IR nodes computed in one launch over one iteration space; values
//! cross kernel boundaries only through buffers. The stages here run after the graph passes,
//! in this order (the list is in [`crate::pipeline`]):
//!
//! - [`fusion`]: partitions the computed nodes into kernels;
//! - [`schedule`]: orders the kernels to lower the peak of live bytes;
//! - [`memory`]: gives every intermediate an offset in one arena;
//! - [`program`]: the planned program, self-contained, as the artifact will carry it.
//!
//! [`verify`] checks the kernel graph and its plan after each of them in tests and debug
//! builds, as the graph verifier does after each graph pass.

pub mod fusion;
mod live;
pub mod memory;
pub mod program;
pub mod schedule;
pub mod verify;

use std::fmt::{self, Write};

use crate::ir::{infer::numel, Dim, Graph, NodeId, Op, Shape};

/// A kernel's position in the kernel graph (its step, once scheduled). Prints as `kernel 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelId(pub u32);

impl KernelId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for KernelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {}", self.0)
    }
}

/// How a kernel iterates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// One point per element of the domain.
    Elementwise,
    /// Rows of the domain reduced over `axes`; members have the domain's shape or the
    /// reduced shape (softmax, layer_norm and rms_norm are one such kernel each).
    Row { axes: Vec<usize> },
    /// A matmul or convolution with its epilogue (bias, activation, residual).
    Contraction,
    /// Data movement or windows that fuse with nothing (gather, concat, pad, pooling).
    Opaque,
}

impl KernelKind {
    /// The kind's name in reports: `elementwise`, `row`, `contraction`, `opaque`.
    pub fn name(&self) -> &'static str {
        match self {
            KernelKind::Elementwise => "elementwise",
            KernelKind::Row { .. } => "row",
            KernelKind::Contraction => "contraction",
            KernelKind::Opaque => "opaque",
        }
    }
}

/// One kernel.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub kind: KernelKind,
    /// The iteration space (the full, unreduced shape for row kernels).
    pub domain: Shape,
    /// The nodes it computes, in topological order; views and constants it reads through
    /// are included (they become index maps and immediates).
    pub nodes: Vec<NodeId>,
    /// Values read from buffers: graph inputs, params, or other kernels' outputs.
    pub inputs: Vec<NodeId>,
    /// Values written to buffers: used by other kernels or returned.
    pub outputs: Vec<NodeId>,
}

/// The kernels of a graph, in execution order once scheduled.
#[derive(Clone, Debug, Default)]
pub struct KernelGraph {
    pub kernels: Vec<Kernel>,
}

/// Bytes of `id`'s value with every symbol at its upper bound.
pub fn bytes_at_bound(graph: &Graph, id: NodeId) -> u64 {
    let ty = graph.ty(id);
    let n = numel(&ty.shape);
    let bound = n.eval(|s| graph.symbols.get(s.0 as usize).map_or(1, |x| x.bound));
    bound.saturating_mul(ty.dtype.size_bytes() as u64)
}

impl KernelGraph {
    /// The kernels with their ids, in order.
    pub fn iter(&self) -> impl Iterator<Item = (KernelId, &Kernel)> {
        self.kernels.iter().enumerate().map(|(k, kernel)| (KernelId(k as u32), kernel))
    }

    /// Bytes a kernel reads and writes, at the symbols' bounds.
    pub fn traffic(&self, graph: &Graph, k: usize) -> (u64, u64) {
        let kernel = &self.kernels[k];
        let read = kernel.inputs.iter().map(|&i| bytes_at_bound(graph, i)).sum();
        let written = kernel.outputs.iter().map(|&o| bytes_at_bound(graph, o)).sum();
        (read, written)
    }

    /// The kernels as text, numbering values like the IR printer (`%12`).
    pub fn print(&self, graph: &Graph) -> String {
        let number = crate::ir::print::numbering(graph);
        let name = |n: &NodeId| number.get(n).map_or_else(|| format!("{n}?"), |i| format!("%{i}"));
        let names = |ns: &[NodeId]| ns.iter().map(name).collect::<Vec<_>>().join(", ");
        let dims = |s: &[Dim]| s.iter().map(|d| d.display(&graph.symbols).to_string()).collect::<Vec<_>>().join(", ");
        let mut out = String::new();
        for (k, kernel) in self.kernels.iter().enumerate() {
            let kind = match &kernel.kind {
                KernelKind::Row { axes } => format!("row{axes:?}"),
                other => other.name().to_string(),
            };
            let (read, written) = self.traffic(graph, k);
            let _ = writeln!(out, "kernel {k} {kind} [{}] reads {read} B, writes {written} B", dims(&kernel.domain));
            let _ = writeln!(out, "  in  ({})", names(&kernel.inputs));
            let ops: Vec<String> = kernel
                .nodes
                .iter()
                .filter(|n| !matches!(graph.op(**n), Op::Input { .. } | Op::Param { .. }))
                .map(|n| format!("{}={}", name(n), graph.op(*n).name()))
                .collect();
            let _ = writeln!(out, "  ops {}", ops.join(" "));
            let _ = writeln!(out, "  out ({})", names(&kernel.outputs));
        }
        out
    }
}
