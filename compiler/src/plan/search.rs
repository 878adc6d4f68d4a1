//! The exact planner: a depth-first search over canonical solutions, after two reductions that
//! never lose the optimum.
//!
//! **Reductions.** A buffer that conflicts with every other buffer of its group can sit at the
//! group's bottom: in any plan, everything below it can be lifted by its size and it dropped
//! to the bottom without an overlap. Once those are gone, a group whose lifetimes fall apart
//! into time-disjoint components is planned component by component on the same base. Neither
//! step raises the lower bound: the buffers alive at any instant of a component all overlap a
//! bottom buffer, so (intervals being intervals) they are all alive together with it at one of
//! its ends.
//!
//! **Search.** Within a component the search decides whether everything fits under a capacity.
//! It builds the plan bottom-up in non-decreasing `(offset, rank)` order (the canonical plans
//! of MiniMalloc, Moffitt, ASPLOS 2023): every buffer is placed at its lowest offset, the top
//! of the highest placed buffer it conflicts with, and any unplaced buffer may go next.
//! Pruning:
//! - per time section, the floor (the lowest offset any unplaced buffer alive there can take)
//!   plus the units still unplaced there must fit under the capacity;
//! - a section that is full at the current offset must be covered by the next buffer;
//! - a buffer placed at or above the top of another unplaced buffer's lowest spot leaves a gap
//!   that buffer could fill, and is skipped;
//! - a placement that raises no other buffer's lowest offset is not second-guessed;
//! - whenever no unplaced lifetime crosses a section boundary, the two sides are searched
//!   independently.
//!
//! Three static orders (by section total, lifetime, area) take turns with a node budget that
//! doubles each round. Per component, one thread searches at the target (the lower bound)
//! while another bisects down from greedy's top.
//!
//! Sizes are counted in units of the alignment, so every offset found is aligned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::{Buffer, Plan};

/// What the search found, and whether its arena is proven minimal.
#[derive(Clone, Debug)]
pub struct Found {
    pub plan: Plan,
    pub optimal: bool,
    pub nodes: u64,
}

/// Plans `buffers` aiming at the lower bound, until `deadline`.
pub fn solve(buffers: &[Buffer], alignment: u64, deadline: Instant) -> Found {
    let units: Vec<u64> = buffers.iter().map(|b| b.size.div_ceil(alignment)).collect();
    let items: Vec<usize> = (0..buffers.len()).filter(|&i| buffers[i].occupies()).collect();
    let target = super::peak(items.iter().map(|&i| (buffers[i].lower, buffers[i].upper, units[i])));
    let mut solver = Solver { buffers, units: &units, target, nodes: 0, offsets: vec![0; buffers.len()] };
    let mut proven = true;
    let top = solver.group(&items, 0, deadline, &mut proven);
    let offsets: Vec<u64> = solver.offsets.iter().map(|&o| o * alignment).collect();
    Found { plan: Plan::new(buffers, offsets), optimal: proven || top <= target, nodes: solver.nodes }
}

struct Solver<'a> {
    buffers: &'a [Buffer],
    units: &'a [u64],
    /// The lower bound of the whole problem (units): no part needs to end below it.
    target: u64,
    nodes: u64,
    /// Offsets in units, filled in as groups are solved.
    offsets: Vec<u64>,
}

impl Solver<'_> {
    fn conflicts(&self, i: usize, j: usize) -> bool {
        self.buffers[i].conflicts(&self.buffers[j])
    }

    /// Plans `items` from offset `base` (units) and returns the group's top. `proven` is
    /// cleared when a part ends above the target without a proof that it cannot do better.
    fn group(&mut self, items: &[usize], base: u64, deadline: Instant, proven: &mut bool) -> u64 {
        let (bottom, rest): (Vec<usize>, Vec<usize>) =
            items.iter().partition(|&&i| items.iter().all(|&j| j == i || self.conflicts(i, j)));
        let mut base = base;
        for &i in &bottom {
            self.offsets[i] = base;
            base += self.units[i];
        }
        let parts = components(self.buffers, &rest);
        if parts.len() == 1 && bottom.is_empty() {
            return self.component(&parts[0], base, deadline, proven);
        }
        let mut top = base;
        for (k, part) in parts.iter().enumerate() {
            // An equal share of the time left; what a quick part leaves goes to the rest.
            let now = Instant::now();
            let share = now + deadline.saturating_duration_since(now) / (parts.len() - k) as u32;
            top = top.max(self.group(part, base, share, proven));
        }
        top
    }

    /// Plans one component with two searches side by side: one at the target, which on real
    /// workloads usually succeeds, and one bisecting down from greedy's top, so that a target
    /// out of reach still yields the best plan found in time.
    fn component(&mut self, items: &[usize], base: u64, deadline: Instant, proven: &mut bool) -> u64 {
        let problem = Problem::new(self.buffers, self.units, items);
        let greedy = problem.greedy();
        let greedy_top = problem.top(&greedy);
        let target = problem.lower_bound().max(self.target.saturating_sub(base)).min(greedy_top);
        let stop = AtomicBool::new(false);
        let limit = Limit { deadline, stop: &stop };
        let (at_target, bisected) = std::thread::scope(|scope| {
            let at_target = scope.spawn(|| {
                let mut nodes = 0;
                let outcome =
                    if target < greedy_top { problem.fits(target, limit, &mut nodes) } else { Outcome::Refuted };
                if matches!(outcome, Outcome::Fits(_)) {
                    stop.store(true, Ordering::Relaxed);
                }
                (outcome, nodes)
            });
            let bisected = problem.bisect(target + 1, greedy, limit);
            (at_target.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), bisected)
        });
        self.nodes += at_target.1 + bisected.nodes;
        let target_refuted = matches!(at_target.0, Outcome::Refuted) || target >= greedy_top;
        let (best, top) = match at_target.0 {
            Outcome::Fits(offsets) => (offsets, target),
            _ => (bisected.offsets, bisected.top),
        };
        *proven &= base + top <= self.target || (target_refuted && bisected.refuted >= top);
        for (k, &i) in items.iter().enumerate() {
            self.offsets[i] = base + best[k];
        }
        base + top
    }
}

/// What a bisection found: the best offsets, their top, and the capacity below which every
/// capacity it tried was refuted.
struct Bisected {
    offsets: Vec<u64>,
    top: u64,
    refuted: u64,
    nodes: u64,
}

/// When a search gives up: at a deadline, or when another search raises `stop` because it
/// has won.
#[derive(Clone, Copy)]
struct Limit<'s> {
    deadline: Instant,
    stop: &'s AtomicBool,
}

impl Limit<'_> {
    fn reached(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() > self.deadline
    }
}

/// Splits `items` into groups whose lifetimes do not overlap any other group's.
fn components(buffers: &[Buffer], items: &[usize]) -> Vec<Vec<usize>> {
    let mut order = items.to_vec();
    order.sort_by_key(|&i| (buffers[i].lower, buffers[i].upper));
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut end = 0;
    for i in order {
        let b = &buffers[i];
        match parts.last_mut() {
            Some(part) if b.lower < end => part.push(i),
            _ => parts.push(vec![i]),
        }
        // A new part starts at or after `end`, so this is its end as well.
        end = end.max(b.upper);
    }
    parts
}

enum Outcome {
    Fits(Vec<u64>),
    Refuted,
    OutOfTime,
}

/// Why a search stopped before it finished.
enum Stop {
    /// This round's node budget is spent; another order may do better.
    Budget,
    /// The deadline passed.
    Time,
}

/// A static order's keys, each compared descending: the largest total of sizes in any time
/// section the buffer spans, its lifetime, its area.
#[derive(Clone, Copy)]
enum Key {
    Total,
    Width,
    Area,
}

/// The static orders tried in turn; which one finds a plan fastest differs from problem to
/// problem, so none is trusted alone (MiniMalloc's three preorderings).
const ORDERS: [[Key; 3]; 3] =
    [[Key::Width, Key::Area, Key::Total], [Key::Total, Key::Area, Key::Width], [Key::Total, Key::Width, Key::Area]];

/// One component as the search sees it: local indices, sizes in units, time sections.
struct Problem {
    size: Vec<u64>,
    /// Each buffer's half-open range of time sections.
    span: Vec<(usize, usize)>,
    /// Each buffer's lifetime in time units.
    width: Vec<u64>,
    conflicts: Vec<Vec<usize>>,
    /// The buffers alive in each section.
    members: Vec<Vec<usize>>,
    /// Units alive in each section.
    totals: Vec<u64>,
    /// Per section boundary (after section `s`), the buffers alive on both sides of it.
    crossing: Vec<usize>,
    /// Each buffer's rank in every static order of [`ORDERS`].
    ranks: Vec<Vec<usize>>,
}

impl Problem {
    fn new(buffers: &[Buffer], units: &[u64], items: &[usize]) -> Problem {
        let mut times: Vec<u64> = items.iter().flat_map(|&i| [buffers[i].lower, buffers[i].upper]).collect();
        times.sort_unstable();
        times.dedup();
        let section = |t: u64| times.partition_point(|&x| x < t);
        let span: Vec<(usize, usize)> =
            items.iter().map(|&i| (section(buffers[i].lower), section(buffers[i].upper))).collect();
        let n = items.len();
        let mut members = vec![Vec::new(); times.len().saturating_sub(1)];
        for (a, &(lo, hi)) in span.iter().enumerate() {
            members[lo..hi].iter_mut().for_each(|m| m.push(a));
        }
        let size: Vec<u64> = items.iter().map(|&i| units[i]).collect();
        let totals = members.iter().map(|m| m.iter().map(|&a| size[a]).sum()).collect();
        let mut crossing = vec![0; members.len()];
        for &(lo, hi) in &span {
            crossing[lo..hi - 1].iter_mut().for_each(|c| *c += 1);
        }
        let mut problem = Problem {
            size,
            width: items.iter().map(|&i| buffers[i].upper - buffers[i].lower).collect(),
            conflicts: (0..n)
                .map(|a| (0..n).filter(|&b| b != a && span[a].0 < span[b].1 && span[b].0 < span[a].1).collect())
                .collect(),
            span,
            members,
            totals,
            crossing,
            ranks: Vec::new(),
        };
        problem.ranks = ORDERS.iter().map(|&keys| problem.rank(keys)).collect();
        problem
    }

    fn lower_bound(&self) -> u64 {
        self.totals.iter().copied().max().unwrap_or(0)
    }

    /// Greedy best-fit by size in units: the incumbent of the bisection.
    fn greedy(&self) -> Vec<u64> {
        let buffers: Vec<Buffer> = (0..self.size.len())
            .map(|a| Buffer {
                id: String::new(),
                lower: self.span[a].0 as u64,
                upper: self.span[a].1 as u64,
                size: self.size[a],
            })
            .collect();
        super::greedy::plan(&buffers, 1).offsets
    }

    /// The top of a plan in units.
    fn top(&self, offsets: &[u64]) -> u64 {
        offsets.iter().zip(&self.size).map(|(o, s)| o + s).max().unwrap_or(0)
    }

    /// Bisects the capacity between `lo` and the top of `best`; each attempt gets half the
    /// time left, so a hard capacity cannot starve easier ones.
    fn bisect(&self, mut lo: u64, best: Vec<u64>, limit: Limit) -> Bisected {
        let top = self.top(&best);
        let mut found = Bisected { offsets: best, top, refuted: lo, nodes: 0 };
        while lo < found.top && !limit.reached() {
            let cap = lo + (found.top - lo) / 2;
            let now = Instant::now();
            let attempt = Limit { deadline: now + limit.deadline.saturating_duration_since(now) / 2, ..limit };
            match self.fits(cap, attempt, &mut found.nodes) {
                Outcome::Fits(offsets) => (found.top, found.offsets) = (self.top(&offsets), offsets),
                Outcome::Refuted if found.refuted == lo => (lo, found.refuted) = (cap + 1, cap + 1),
                Outcome::Refuted | Outcome::OutOfTime => lo = cap + 1,
            }
        }
        found
    }

    /// The rank of every buffer in a static order.
    fn rank(&self, keys: [Key; 3]) -> Vec<usize> {
        let total = |a: usize| {
            let (lo, hi) = self.span[a];
            self.totals[lo..hi].iter().copied().max().unwrap_or(0)
        };
        let key = |a: usize, k: Key| match k {
            Key::Total => total(a),
            Key::Width => self.width[a],
            Key::Area => self.width[a].saturating_mul(self.size[a]),
        };
        let mut order: Vec<usize> = (0..self.size.len()).collect();
        order.sort_by_key(|&a| (std::cmp::Reverse(keys.map(|k| key(a, k))), a));
        let mut rank = vec![0; order.len()];
        order.into_iter().enumerate().for_each(|(r, a)| rank[a] = r);
        rank
    }

    /// Decides whether everything fits under `capacity`: each static order in turn gets a
    /// node budget that doubles every round, so one unlucky order cannot take all the time.
    fn fits(&self, capacity: u64, limit: Limit, nodes: &mut u64) -> Outcome {
        let mut budget = self.size.len() as u64;
        loop {
            budget = budget.saturating_mul(2);
            for rank in &self.ranks {
                let mut state = State::new(self, rank, capacity, budget, limit);
                let result = state.search(self, (0, 0), (0, self.members.len()));
                *nodes += state.nodes;
                match result {
                    Ok(true) => return Outcome::Fits(state.solution),
                    Ok(false) => return Outcome::Refuted,
                    Err(Stop::Time) => return Outcome::OutOfTime,
                    Err(Stop::Budget) => {}
                }
            }
        }
    }
}

/// The search state; every change is undone on the way back up.
struct State<'r> {
    rank: &'r [usize],
    capacity: u64,
    placed: Vec<bool>,
    /// The lowest offset each unplaced buffer can take: the highest top of a placed buffer it
    /// conflicts with.
    min_offset: Vec<u64>,
    /// Per section, no unplaced buffer can sit below this offset.
    floor: Vec<u64>,
    /// Per section, the units not yet placed.
    unplaced: Vec<u64>,
    /// Per section boundary (after section `s`), the unplaced buffers alive on both sides.
    crossing: Vec<usize>,
    /// The offsets of the last successful path.
    solution: Vec<u64>,
    nodes: u64,
    budget: u64,
    limit: Limit<'r>,
}

/// The full sections at one level (see [`State::tight`]).
#[derive(Default)]
struct Tight {
    level: Option<u64>,
    /// The first and last full section, if any.
    sections: Option<(usize, usize)>,
    /// The most units unplaced in a full section.
    most_unplaced: u64,
}

impl Tight {
    /// Whether a buffer spanning `span` and placed at `level` covers every full section and
    /// leaves room in them.
    fn admits(&self, (lo, hi): (usize, usize), level: u64, capacity: u64) -> bool {
        self.sections.is_none_or(|(first, last)| lo <= first && last < hi && level + self.most_unplaced <= capacity)
    }
}

/// What placing one buffer changed, to undo it.
struct Undo {
    min_offsets: Vec<(usize, u64)>,
    floors: Vec<(usize, u64)>,
}

impl<'r> State<'r> {
    fn new(p: &Problem, rank: &'r [usize], capacity: u64, budget: u64, limit: Limit<'r>) -> State<'r> {
        let n = p.size.len();
        State {
            rank,
            capacity,
            placed: vec![false; n],
            min_offset: vec![0; n],
            floor: vec![0; p.members.len()],
            unplaced: p.totals.clone(),
            crossing: p.crossing.clone(),
            solution: vec![0; n],
            nodes: 0,
            budget,
            limit,
        }
    }

    /// Places the unplaced buffers within the sections `range`; `after` is the `(offset,
    /// rank)` of the last buffer placed, and the next must not come before it. On success the
    /// offsets of the path are in `solution`; the state is always restored.
    fn search(&mut self, p: &Problem, after: (u64, usize), range: (usize, usize)) -> Result<bool, Stop> {
        self.nodes += 1;
        if self.nodes > self.budget {
            return Err(Stop::Budget);
        }
        if self.nodes.is_multiple_of(1024) && self.limit.reached() {
            return Err(Stop::Time);
        }
        let parts = self.parts(range);
        if parts.len() != 1 || parts[0] != range {
            // Independent parts: a failure in one is not repaired by changing another. Each
            // starts a canonical order of its own: every unplaced buffer's lowest offset
            // already keeps it clear of what is placed, so any order is valid.
            for part in parts {
                if !self.search(p, (0, 0), part)? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let inside = |a: usize| range.0 <= p.span[a].0 && p.span[a].1 <= range.1;
        // A buffer placed at or above the top of some other unplaced buffer's lowest spot
        // leaves a gap that buffer could fill: a dominated plan.
        let lowest_top = (0..p.size.len())
            .filter(|&a| !self.placed[a] && inside(a))
            .map(|a| self.min_offset[a] + p.size[a])
            .min()
            .unwrap_or(u64::MAX);
        let mut order: Vec<(u64, usize, usize)> = (0..p.size.len())
            .filter(|&a| !self.placed[a] && inside(a) && self.min_offset[a] < lowest_top)
            .map(|a| (self.min_offset[a], self.rank[a], a))
            .filter(|&(at, rank, _)| (at, rank) >= after)
            .collect();
        order.sort_unstable();
        let mut tight = Tight::default();
        for (at, rank, a) in order {
            if tight.level != Some(at) {
                tight = self.tight(at, range);
            }
            if !tight.admits(p.span[a], at, self.capacity) {
                continue;
            }
            let undo = self.place(p, a, at);
            let hatless = undo.min_offsets.is_empty();
            let found = if self.bounds_hold(at, range) { self.search(p, (at, rank), range) } else { Ok(false) };
            self.unplace(p, a, undo);
            if found? {
                self.solution[a] = at;
                return Ok(true);
            }
            // Placing this buffer raised no other buffer's lowest offset: it constrains
            // nothing else, so no other choice here can succeed where this one failed.
            if hatless {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// Splits `range` at the section boundaries no unplaced buffer crosses, keeping the parts
    /// that still hold unplaced buffers.
    fn parts(&self, (lo, hi): (usize, usize)) -> Vec<(usize, usize)> {
        let mut parts = Vec::new();
        let mut start = lo;
        for s in lo..hi {
            if s + 1 == hi || self.crossing[s] == 0 {
                if self.unplaced[start..=s].iter().any(|&u| u > 0) {
                    parts.push((start, s + 1));
                }
                start = s + 1;
            }
        }
        parts
    }

    /// Per section of `range`: the floor (at least the offset just placed) plus the units
    /// still to place there must fit.
    fn bounds_hold(&self, at: u64, (lo, hi): (usize, usize)) -> bool {
        self.floor[lo..hi].iter().zip(&self.unplaced[lo..hi]).all(|(&f, &u)| f.max(at) + u <= self.capacity)
    }

    /// The sections that are full at `level`: their floor plus their unplaced units exceed the
    /// capacity unless the next buffer covers them.
    fn tight(&self, level: u64, (lo, hi): (usize, usize)) -> Tight {
        let mut tight = Tight { level: Some(level), sections: None, most_unplaced: 0 };
        for s in lo..hi {
            if self.floor[s].max(level) + self.unplaced[s] > self.capacity {
                let (first, _) = tight.sections.unwrap_or((s, s));
                tight.sections = Some((first, s));
                tight.most_unplaced = tight.most_unplaced.max(self.unplaced[s]);
            }
        }
        tight
    }

    fn place(&mut self, p: &Problem, a: usize, at: u64) -> Undo {
        let top = at + p.size[a];
        self.placed[a] = true;
        let mut undo = Undo { min_offsets: Vec::new(), floors: Vec::new() };
        // Every raised buffer overlaps this one in time, so the sections they touch form one
        // range with this buffer's own.
        let (mut lo, mut hi) = p.span[a];
        for &b in &p.conflicts[a] {
            if !self.placed[b] && self.min_offset[b] < top {
                undo.min_offsets.push((b, self.min_offset[b]));
                self.min_offset[b] = top;
                (lo, hi) = (lo.min(p.span[b].0), hi.max(p.span[b].1));
            }
        }
        let (first, last) = p.span[a];
        self.crossing[first..last - 1].iter_mut().for_each(|c| *c -= 1);
        for s in first..last {
            undo.floors.push((s, self.floor[s]));
            self.floor[s] = top;
            self.unplaced[s] -= p.size[a];
        }
        // A section's floor is also the lowest offset any of its unplaced buffers can take.
        for s in lo..hi {
            let lowest = p.members[s].iter().filter(|&&b| !self.placed[b]).map(|&b| self.min_offset[b]).min();
            if let Some(lowest) = lowest.filter(|&l| l > self.floor[s]) {
                undo.floors.push((s, self.floor[s]));
                self.floor[s] = lowest;
            }
        }
        undo
    }

    fn unplace(&mut self, p: &Problem, a: usize, undo: Undo) {
        undo.floors.into_iter().rev().for_each(|(s, f)| self.floor[s] = f);
        undo.min_offsets.into_iter().for_each(|(b, m)| self.min_offset[b] = m);
        let (lo, hi) = p.span[a];
        self.unplaced[lo..hi].iter_mut().for_each(|u| *u += p.size[a]);
        self.crossing[lo..hi - 1].iter_mut().for_each(|c| *c += 1);
        self.placed[a] = false;
    }
}
