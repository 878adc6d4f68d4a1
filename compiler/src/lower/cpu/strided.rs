//! Views of a buffer as strides, so the register tiles can load vectors through them.
//!
//! A chain of views (permute, slice, broadcast, and reshapes that split or merge axes) over a
//! buffer reads element `idx` at `offset + Σ idx[a]·strides[a]` of the buffer. When the stride
//! along a tile's vector axis is 1, the tile loads consecutive elements straight from the
//! buffer: the head-split `q`, `k` and `v` of attention (slice → reshape → permute of one
//! `qkv` projection) feed the register tiles like plain buffers. A reshape that neither
//! splits nor merges contiguous axes has no strides, and the view falls back to scalar loads.

use crate::ir::{Dim, Graph, NodeId, Op};
use crate::lower::index::Ix;

/// Element `idx` of the view is element `offset + Σ idx[a]·strides[a]` of `buffer`.
#[derive(Clone, Debug)]
pub struct Strided {
    pub buffer: NodeId,
    pub offset: Ix,
    pub strides: Vec<Dim>,
}

impl Strided {
    /// The buffer position of `idx`.
    pub fn position(&self, idx: &[Ix]) -> Ix {
        idx.iter()
            .zip(&self.strides)
            .fold(self.offset.clone(), |acc, (i, s)| Ix::sum(acc, Ix::prod(i.clone(), Ix::dim(s))))
    }

    /// Whether consecutive indices along `axis` are consecutive elements.
    pub fn unit_along(&self, axis: usize) -> bool {
        self.strides.get(axis).is_some_and(|s| *s == Dim::known(1))
    }
}

/// `n` as strides over one of `buffers`, when every view between them has strides.
pub fn strided(graph: &Graph, buffers: &[NodeId], n: NodeId) -> Option<Strided> {
    let shape = &graph.ty(n).shape;
    if buffers.contains(&n) {
        return Some(Strided { buffer: n, offset: Ix::Const(0), strides: row_major(shape) });
    }
    let operand = *graph.operands(n).first()?;
    let inner = strided(graph, buffers, operand)?;
    match graph.op(n) {
        Op::Permute { perm } => {
            Some(Strided { strides: perm.iter().map(|&p| inner.strides[p].clone()).collect(), ..inner })
        }
        Op::Slice { axis, start, step, .. } => {
            let mut s = inner;
            let along = s.strides[*axis].clone();
            s.offset = Ix::sum(s.offset, Ix::prod(Ix::Const(*start), Ix::dim(&along)));
            s.strides[*axis] = along.mul(&Dim::known(*step));
            Some(s)
        }
        Op::Broadcast => {
            let from = &graph.ty(operand).shape;
            let lead = shape.len().checked_sub(from.len())?;
            let strides = (0..shape.len())
                .map(|a| match a.checked_sub(lead) {
                    Some(i) if !from[i].is_one() => inner.strides[i].clone(),
                    _ => Dim::known(0),
                })
                .collect();
            Some(Strided { strides, ..inner })
        }
        Op::Reshape => {
            let strides = reshaped(&graph.ty(operand).shape, &inner.strides, shape)?;
            Some(Strided { strides, ..inner })
        }
        _ => None,
    }
}

/// The strides of a row-major buffer of `shape`.
fn row_major(shape: &[Dim]) -> Vec<Dim> {
    let mut strides = vec![Dim::known(1); shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        strides[a] = strides[a + 1].mul(&shape[a + 1]);
    }
    strides
}

/// The strides of `to`, a reshape of `from` (with `strides`), when it only splits and merges
/// axes: axes are grouped into runs of equal element counts, and each run of `from` must be
/// contiguous in itself (each axis's stride the next one's times its size), so the run is
/// one strided axis that the run of `to` splits again.
fn reshaped(from: &[Dim], strides: &[Dim], to: &[Dim]) -> Option<Vec<Dim>> {
    // Axes of size 1 take any stride; dropping them first keeps the runs simple.
    let (from_axes, to_axes): (Vec<usize>, Vec<usize>) = (
        (0..from.len()).filter(|&a| !from[a].is_one()).collect(),
        (0..to.len()).filter(|&a| !to[a].is_one()).collect(),
    );
    let mut out = vec![Dim::known(0); to.len()];
    let (mut i, mut j) = (0, 0);
    while i < from_axes.len() && j < to_axes.len() {
        let (start_i, start_j) = (i, j);
        let (mut pf, mut pt) = (from[from_axes[i]].clone(), to[to_axes[j]].clone());
        (i, j) = (i + 1, j + 1);
        while pf != pt {
            if pt.div(&pf).is_some() && i < from_axes.len() {
                pf = pf.mul(&from[from_axes[i]]);
                i += 1;
            } else if pf.div(&pt).is_some() && j < to_axes.len() {
                pt = pt.mul(&to[to_axes[j]]);
                j += 1;
            } else {
                return None;
            }
        }
        let run = &from_axes[start_i..i];
        for w in run.windows(2) {
            if strides[w[0]] != strides[w[1]].mul(&from[w[1]]) {
                return None;
            }
        }
        let mut stride = strides[*run.last()?].clone();
        for &a in to_axes[start_j..j].iter().rev() {
            out[a] = stride.clone();
            stride = stride.mul(&to[a]);
        }
    }
    (i == from_axes.len() && j == to_axes.len()).then_some(out)
}
