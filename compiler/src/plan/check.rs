//! Validates a plan independently of how it was made: one offset per buffer, every offset
//! aligned, every buffer that occupies space inside the arena, and no two buffers alive
//! together sharing a byte.

use super::{Buffer, Plan, PlanError};

/// Checks `plan` for `buffers`; the first violation found is the error.
pub fn check(buffers: &[Buffer], plan: &Plan, alignment: u64) -> Result<(), PlanError> {
    if plan.offsets.len() != buffers.len() {
        return Err(PlanError::WrongLength { offsets: plan.offsets.len(), buffers: buffers.len() });
    }
    let alignment = alignment.max(1);
    for (b, &offset) in buffers.iter().zip(&plan.offsets) {
        if offset % alignment != 0 {
            return Err(PlanError::Misaligned { id: b.id.clone(), offset, alignment });
        }
        let end = offset.saturating_add(b.size);
        if b.occupies() && end > plan.arena {
            return Err(PlanError::OutsideArena { id: b.id.clone(), end, arena: plan.arena });
        }
    }
    check_overlaps(buffers, &plan.offsets)
}

/// A sweep over time: each buffer is compared with the buffers still alive when it starts.
fn check_overlaps(buffers: &[Buffer], offsets: &[u64]) -> Result<(), PlanError> {
    let mut order: Vec<usize> = (0..buffers.len()).filter(|&i| buffers[i].occupies()).collect();
    order.sort_by_key(|&i| buffers[i].lower);
    let mut alive: Vec<usize> = Vec::new();
    for i in order {
        let b = &buffers[i];
        alive.retain(|&j| buffers[j].upper > b.lower);
        for &j in &alive {
            let from = offsets[i].max(offsets[j]);
            let to = (offsets[i] + b.size).min(offsets[j] + buffers[j].size);
            if from < to {
                return Err(PlanError::Overlap { a: buffers[j].id.clone(), b: b.id.clone(), from, to });
            }
        }
        alive.push(i);
    }
    Ok(())
}
