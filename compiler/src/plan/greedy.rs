//! Greedy best-fit by size, the planner TFLite and XLA ship: take buffers from the largest
//! down, and put each into the smallest gap left between the already-placed buffers it
//! conflicts with, or on top of them when no gap fits. It is the baseline and the search's
//! first incumbent.

use super::{Buffer, Plan};

/// Plans `buffers` greedily; offsets are multiples of `alignment` (at least 1).
pub fn plan(buffers: &[Buffer], alignment: u64) -> Plan {
    let alignment = alignment.max(1);
    let mut order: Vec<usize> = (0..buffers.len()).filter(|&i| buffers[i].occupies()).collect();
    // Largest first; among equals the longer lifetime, then the earlier start, then input order.
    order.sort_by_key(|&i| {
        let b = &buffers[i];
        (std::cmp::Reverse(b.size), std::cmp::Reverse(b.upper - b.lower), b.lower, i)
    });
    let mut offsets = vec![0u64; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(order.len());
    let mut busy: Vec<(u64, u64)> = Vec::new();
    for i in order {
        let b = &buffers[i];
        busy.clear();
        busy.extend(
            placed.iter().filter(|&&j| b.conflicts(&buffers[j])).map(|&j| (offsets[j], offsets[j] + buffers[j].size)),
        );
        busy.sort_unstable();
        offsets[i] = best_fit(&busy, b.size, alignment);
        placed.push(i);
    }
    Plan::new(buffers, offsets)
}

/// The aligned offset of the smallest gap between `busy` ranges (sorted by start) that holds
/// `size` bytes, or the first aligned offset above all of them.
fn best_fit(busy: &[(u64, u64)], size: u64, alignment: u64) -> u64 {
    let mut best: Option<(u64, u64)> = None; // (gap length, offset)
    let mut top = 0u64;
    for &(start, end) in busy {
        let offset = top.next_multiple_of(alignment);
        if start > offset && start - offset >= size && best.is_none_or(|(len, _)| start - offset < len) {
            best = Some((start - offset, offset));
        }
        top = top.max(end);
    }
    best.map_or(top.next_multiple_of(alignment), |(_, offset)| offset)
}
