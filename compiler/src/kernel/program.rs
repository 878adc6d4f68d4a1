//! The planned program: the launches and the storage of a compiled graph, described without
//! the [`Graph`]. This is what the host glue and the artifact read: the kernels in schedule
//! order with their kinds, domains and the values they read and write, and a table from
//! every such value to its dtype, shape and storage (a bound region or an arena buffer at an
//! offset). A kernel's body (its ops) stays in the graph, which lowering reads.
//!
//! Values are named by [`ValueId`], the `%N` of the IR printer, so a value in a program, an
//! error and a dump is one name.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use super::memory::{BufferId, MemoryPlan, RegionKind};
use super::{KernelGraph, KernelId, KernelKind};
use crate::ir::{DType, Dim, Graph, NodeId, Shape, Symbol};

/// A value crossing a kernel boundary, numbered as the printer numbers nodes (`%12`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Where a value lives while the program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// The `index`-th region of [`Program::regions`], bound by the runtime.
    Region { kind: RegionKind, index: u32 },
    /// Bytes `offset..offset + size` of the arena.
    Arena { buffer: BufferId, offset: u64 },
}

/// A value's type and home.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub dtype: DType,
    pub shape: Shape,
    pub storage: Storage,
}

/// Memory bound from outside the arena.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub kind: RegionKind,
    pub name: String,
    pub value: ValueId,
    /// Size at the symbols' upper bounds.
    pub bytes: u64,
}

/// One kernel launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub id: KernelId,
    pub kind: KernelKind,
    pub domain: Shape,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A scheduled, planned program.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub name: String,
    /// The symbolic dims, with their bounds; [`Dim`]s in shapes refer to them.
    pub symbols: Vec<Symbol>,
    /// Inputs and params (sorted by kind and name), then outputs in signature order.
    pub regions: Vec<Region>,
    pub kernels: Vec<Kernel>,
    pub values: BTreeMap<ValueId, Value>,
    pub arena_bytes: u64,
}

impl Program {
    /// Describes a scheduled kernel graph and its plan.
    pub fn new(graph: &Graph, kg: &KernelGraph, mp: &MemoryPlan) -> Program {
        // The pipeline compacts the graph, so a node's handle is its printed number.
        let id = |n: NodeId| ValueId(n.index() as u32);
        let regions: Vec<Region> = mp
            .regions
            .iter()
            .map(|r| Region { kind: r.kind, name: r.name.clone(), value: id(r.value), bytes: r.bytes })
            .collect();
        let mut values = BTreeMap::new();
        for (index, r) in mp.regions.iter().enumerate() {
            let storage = Storage::Region { kind: r.kind, index: index as u32 };
            // An output that is also an input or param stays where the caller bound it.
            values.entry(id(r.value)).or_insert_with(|| value(graph, r.value, storage));
        }
        for (b, held) in mp.values.iter().enumerate() {
            let storage = Storage::Arena { buffer: BufferId(b as u32), offset: mp.plan.offsets[b] };
            for &v in held {
                values.insert(id(v), value(graph, v, storage));
            }
        }
        let kernels = kg
            .iter()
            .map(|(k, kernel)| Kernel {
                id: k,
                kind: kernel.kind.clone(),
                domain: kernel.domain.clone(),
                inputs: kernel.inputs.iter().map(|&n| id(n)).collect(),
                outputs: kernel.outputs.iter().map(|&n| id(n)).collect(),
            })
            .collect();
        Program {
            name: graph.name.clone(),
            symbols: graph.symbols.clone(),
            regions,
            kernels,
            values,
            arena_bytes: mp.plan.arena,
        }
    }

    /// The storage table as text: one line per value.
    pub fn print_storage(&self) -> String {
        let dims = |s: &[Dim]| s.iter().map(|d| d.display(&self.symbols).to_string()).collect::<Vec<_>>().join(", ");
        let mut out = String::new();
        let _ = writeln!(out, "values {}", self.values.len());
        for (id, v) in &self.values {
            let home = match v.storage {
                Storage::Region { index, .. } => {
                    let r = &self.regions[index as usize];
                    format!("{} {:?}", r.kind.name(), r.name)
                }
                Storage::Arena { buffer, offset } => format!("arena {buffer} at {offset}"),
            };
            let ty = format!("{}[{}]", v.dtype.name(), dims(&v.shape));
            let _ = writeln!(out, "  {:<6} {ty:<20} {home}", id.to_string());
        }
        out
    }
}

fn value(graph: &Graph, n: NodeId, storage: Storage) -> Value {
    let ty = graph.ty(n);
    Value { dtype: ty.dtype, shape: ty.shape.clone(), storage }
}
