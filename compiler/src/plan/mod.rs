//! Memory planning: give every buffer an offset in one arena so that buffers alive at the same
//! time never share bytes, and make the arena as small as we can.
//!
//! A buffer is a size and a half-open lifetime `[lower, upper)` in some discrete time (a step
//! of the schedule). Two buffers *conflict* when their lifetimes intersect and both have a
//! non-zero size; conflicting buffers must occupy disjoint byte ranges. The arena of a plan is
//! `max(offset + size)`.
//!
//! The **lower bound** is the peak of live bytes: the largest sum of sizes of buffers alive at
//! one instant. No plan beats it; a plan that meets it is optimal. Finding the optimum is
//! NP-hard (it is dynamic storage allocation), so [`plan`] works in three steps:
//!
//! 1. greedy best-fit by size ([`greedy`]), what TFLite and XLA ship — the incumbent;
//! 2. if the incumbent is above the lower bound, an exact branch-and-bound search over
//!    canonical solutions in the style of MiniMalloc (Moffitt, ASPLOS 2023) ([`search`]),
//!    asked first for the lower bound itself and then for anything better than the incumbent;
//! 3. the search stops at its time limit and returns the best plan found, never worse than
//!    greedy.
//!
//! Alignment is exact, not a heuristic: with every offset a multiple of `a`, a buffer of size
//! `s` blocks the next `ceil(s / a) * a` bytes for any buffer above it, so the planner solves
//! the problem in units of `a` bytes and scales back.
//!
//! [`csv`] reads MiniMalloc's benchmark format, [`check`] validates any plan, and [`svg`]
//! draws one.

pub mod check;
pub mod csv;
pub mod greedy;
pub mod search;
pub mod svg;

use std::time::Duration;

/// A buffer to place: a name, a half-open lifetime `[lower, upper)` and a size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// A name for messages and drawings (a CSV id, or a value name in a graph).
    pub id: String,
    /// The first instant the buffer is alive.
    pub lower: u64,
    /// The first instant the buffer is dead again (exclusive).
    pub upper: u64,
    /// Bytes.
    pub size: u64,
}

impl Buffer {
    /// Whether the buffer takes space at some instant (a non-empty lifetime and a non-zero size).
    pub fn occupies(&self) -> bool {
        self.size > 0 && self.lower < self.upper
    }

    /// Whether two buffers must not share bytes: both occupy space and their lifetimes meet.
    pub fn conflicts(&self, other: &Buffer) -> bool {
        self.occupies() && other.occupies() && self.lower < other.upper && other.lower < self.upper
    }
}

/// Offsets for a list of buffers (same order) and the arena they need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The byte offset of each buffer within the arena (0 for buffers that never occupy space).
    pub offsets: Vec<u64>,
    /// `max(offset + size)` over the buffers that occupy space, 0 for none.
    pub arena: u64,
}

impl Plan {
    /// A plan with these offsets; the arena is computed from the buffers that occupy space.
    pub fn new(buffers: &[Buffer], offsets: Vec<u64>) -> Plan {
        let arena =
            buffers.iter().zip(&offsets).filter(|(b, _)| b.occupies()).map(|(b, &o)| o + b.size).max().unwrap_or(0);
        Plan { offsets, arena }
    }
}

/// How to plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Greedy best-fit by size only.
    Greedy,
    /// Greedy, then the exact search until the lower bound, a proof, or the time limit.
    Search,
}

/// Options for [`plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Every offset is a multiple of this (bytes, at least 1). Graphs use 64.
    pub alignment: u64,
    /// Wall-clock budget of the search; the best plan found by then is returned.
    pub time_limit: Duration,
    /// Greedy only, or greedy then search.
    pub strategy: Strategy,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions { alignment: 1, time_limit: Duration::from_secs(1), strategy: Strategy::Search }
    }
}

/// What [`plan_with_report`] found out besides the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The peak of live bytes ([`lower_bound`]).
    pub lower_bound: u64,
    /// The arena of greedy best-fit by size.
    pub greedy_arena: u64,
    /// Whether the plan is proven optimal (it meets the lower bound, or the search proved that
    /// nothing smaller exists).
    pub optimal: bool,
    /// Search nodes visited.
    pub nodes: u64,
}

/// Everything that can go wrong reading a buffer list or checking a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file has no header line.
    #[error("the file is empty; expected the header `id,lower,upper,size`")]
    Empty,
    /// The first line is not the expected header.
    #[error("line {line}: expected the header `id,lower,upper,size`, found `{found}`")]
    BadHeader {
        /// 1-based line number.
        line: usize,
        /// The line as read.
        found: String,
    },
    /// A data line with the wrong number of fields.
    #[error("line {line}: expected 4 fields `id,lower,upper,size`, found {found}")]
    FieldCount {
        /// 1-based line number.
        line: usize,
        /// How many comma-separated fields the line has.
        found: usize,
    },
    /// A field that should be a non-negative integer is not.
    #[error("line {line}: {field} `{value}` is not a non-negative integer")]
    BadNumber {
        /// 1-based line number.
        line: usize,
        /// Which column.
        field: &'static str,
        /// The text found.
        value: String,
    },
    /// An empty id.
    #[error("line {line}: the id is empty")]
    EmptyId {
        /// 1-based line number.
        line: usize,
    },
    /// A lifetime whose end comes before its start.
    #[error("line {line}: the lifetime [{lower}, {upper}) ends before it starts")]
    BadLifetime {
        /// 1-based line number.
        line: usize,
        /// The start.
        lower: u64,
        /// The end.
        upper: u64,
    },
    /// Two lines with the same id.
    #[error("line {line}: duplicate id `{id}` (first on line {first})")]
    DuplicateId {
        /// 1-based line number of the repeat.
        line: usize,
        /// The id.
        id: String,
        /// 1-based line number of the first occurrence.
        first: usize,
    },
    /// Sizes that add up to more than [`csv::MAX_TOTAL`] bytes.
    #[error("line {line}: the sizes add up to more than 2^62 bytes")]
    TooLarge {
        /// 1-based line number where the total overflowed.
        line: usize,
    },
    /// A plan with a different number of offsets than buffers.
    #[error("the plan has {offsets} offsets for {buffers} buffers")]
    WrongLength {
        /// Offsets in the plan.
        offsets: usize,
        /// Buffers to place.
        buffers: usize,
    },
    /// An offset that is not a multiple of the alignment.
    #[error("buffer `{id}` sits at offset {offset}, not a multiple of {alignment}")]
    Misaligned {
        /// The buffer.
        id: String,
        /// Its offset.
        offset: u64,
        /// The required alignment.
        alignment: u64,
    },
    /// A buffer that reaches past the arena.
    #[error("buffer `{id}` ends at byte {end}, past the arena of {arena} bytes")]
    OutsideArena {
        /// The buffer.
        id: String,
        /// Its offset plus its size.
        end: u64,
        /// The plan's arena.
        arena: u64,
    },
    /// Two buffers alive at the same time that share bytes.
    #[error("buffers `{a}` and `{b}` are alive together but share bytes [{from}, {to})")]
    Overlap {
        /// One buffer.
        a: String,
        /// The other.
        b: String,
        /// First shared byte.
        from: u64,
        /// One past the last shared byte.
        to: u64,
    },
}

/// The peak of live bytes: the largest total size of buffers alive at one instant.
pub fn lower_bound(buffers: &[Buffer]) -> u64 {
    peak(buffers.iter().filter(|b| b.occupies()).map(|b| (b.lower, b.upper, b.size)))
}

/// The peak of a set of `(lower, upper, size)` lifetimes; ends sort before starts at one instant
/// because lifetimes are half-open.
pub(crate) fn peak(items: impl Iterator<Item = (u64, u64, u64)>) -> u64 {
    let mut events: Vec<(u64, bool, u64)> = Vec::new();
    for (lower, upper, size) in items {
        events.push((lower, true, size));
        events.push((upper, false, size));
    }
    events.sort_unstable();
    let (mut live, mut best) = (0u64, 0u64);
    for (_, start, size) in events {
        if start {
            live += size;
            best = best.max(live);
        } else {
            live -= size;
        }
    }
    best
}

/// Plans the buffers: offsets (multiples of `opts.alignment`) and the arena.
///
/// Never worse than greedy best-fit by size; optimal whenever the search reaches the lower bound
/// or finishes within the time limit.
pub fn plan(buffers: &[Buffer], opts: &PlanOptions) -> Plan {
    plan_with_report(buffers, opts).0
}

/// [`plan`], plus the lower bound, the greedy arena, and whether the plan is proven optimal.
pub fn plan_with_report(buffers: &[Buffer], opts: &PlanOptions) -> (Plan, Report) {
    let alignment = opts.alignment.max(1);
    let greedy = greedy::plan(buffers, alignment);
    let lower_bound = lower_bound(buffers);
    let mut report = Report { lower_bound, greedy_arena: greedy.arena, optimal: greedy.arena == lower_bound, nodes: 0 };
    if report.optimal || opts.strategy == Strategy::Greedy {
        return (greedy, report);
    }
    let found = search::solve(buffers, alignment, std::time::Instant::now() + opts.time_limit);
    report.nodes = found.nodes;
    let best = if found.plan.arena < greedy.arena { found.plan } else { greedy };
    report.optimal = found.optimal || best.arena == lower_bound;
    (best, report)
}
