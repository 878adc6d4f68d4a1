//! Views of a buffer as strides, so the register tiles can load vectors through them.
//!
//! A chain of views (permute, slice, broadcast, and reshapes that split or merge axes) over a
//! buffer reads element `idx` at `offset + Σ idx[a]·strides[a]` of the buffer. When the stride
//! along a tile's vector axis is 1, the tile loads consecutive elements straight from the
//! buffer: the head-split `q`, `k` and `v` of attention (slice → reshape → permute of one
//! `qkv` projection) feed the register tiles like plain buffers. A reshape that neither
//! splits nor merges contiguous axes has no strides, and the view falls back to scalar loads.

use crate::ir::{Dim, Graph, NodeId, Op};
use crate::lower::index::{self, Ix};

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
/// axes: over each run of equal element counts ([`index::runs`]), the axes of `from` must be
/// contiguous in themselves (each one's stride the next one's times its size; axes of size 1
/// take any), so the run is one strided axis that the run of `to` splits again.
fn reshaped(from: &[Dim], strides: &[Dim], to: &[Dim]) -> Option<Vec<Dim>> {
    let mut out = vec![Dim::known(0); to.len()];
    for (f, t) in index::runs(from, to)? {
        let sized: Vec<usize> = f.filter(|&a| !from[a].is_one()).collect();
        if sized.windows(2).any(|w| strides[w[0]] != strides[w[1]].mul(&from[w[1]])) {
            return None;
        }
        let mut stride = sized.last().map_or(Dim::known(1), |&a| strides[a].clone());
        for a in t.rev() {
            out[a] = stride.clone();
            stride = stride.mul(&to[a]);
        }
    }
    Some(out)
}
