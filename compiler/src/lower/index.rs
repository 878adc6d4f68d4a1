//! Index expressions: how a kernel finds the element of a value it needs.
//!
//! Views (reshape, permute, broadcast, slice) never move data: reading a view at an index
//! is reading its operand at another index. The mapping is an expression over the kernel's
//! loop variables and the run-time dims, built here once for every kernel kind, and folded
//! as it is built (`x * 1 -> x`, `x + 0 -> x`, constants combined) so that equal indices
//! reached by different paths are equal expressions: the emitter keys its memo on them.

use std::rc::Rc;

use super::build::V;
use crate::ir::{Dim, SymId};

/// A non-negative index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ix {
    Const(u64),
    /// A loop variable, by depth.
    Var(usize),
    /// A symbolic dim's run-time value.
    Sym(SymId),
    /// An index computed at run time (a gathered position).
    Value(V),
    Add(Rc<Ix>, Rc<Ix>),
    /// `a - b`, where the emitter has checked `a >= b` (concat, pad).
    Sub(Rc<Ix>, Rc<Ix>),
    Mul(Rc<Ix>, Rc<Ix>),
    Div(Rc<Ix>, Rc<Ix>),
    Rem(Rc<Ix>, Rc<Ix>),
}

impl Ix {
    pub fn sum(a: Ix, b: Ix) -> Ix {
        match (a, b) {
            (Ix::Const(0), x) | (x, Ix::Const(0)) => x,
            (Ix::Const(x), Ix::Const(y)) => Ix::Const(x + y),
            // (x / k)·k + x % k = x: a split axis merged again (reshape there and back).
            (Ix::Mul(q, k), Ix::Rem(x, m)) if k == m && matches!(&*q, Ix::Div(y, d) if y == &x && d == &k) => {
                (*x).clone()
            }
            (a, b) => Ix::Add(Rc::new(a), Rc::new(b)),
        }
    }

    pub fn diff(a: Ix, b: Ix) -> Ix {
        match (a, b) {
            (x, Ix::Const(0)) => x,
            (Ix::Const(x), Ix::Const(y)) if x >= y => Ix::Const(x - y),
            (a, b) => Ix::Sub(Rc::new(a), Rc::new(b)),
        }
    }

    pub fn prod(a: Ix, b: Ix) -> Ix {
        match (a, b) {
            (Ix::Const(0), _) | (_, Ix::Const(0)) => Ix::Const(0),
            (Ix::Const(1), x) | (x, Ix::Const(1)) => x,
            (Ix::Const(x), Ix::Const(y)) => Ix::Const(x * y),
            (a, b) => Ix::Mul(Rc::new(a), Rc::new(b)),
        }
    }

    pub fn quot(a: Ix, b: Ix) -> Ix {
        match (a, b) {
            (x, Ix::Const(1)) => x,
            (Ix::Const(0), _) => Ix::Const(0),
            (Ix::Const(x), Ix::Const(y)) if y > 0 => Ix::Const(x / y),
            (a, b) => Ix::Div(Rc::new(a), Rc::new(b)),
        }
    }

    pub fn modulo(a: Ix, b: Ix) -> Ix {
        match (a, b) {
            (_, Ix::Const(1)) | (Ix::Const(0), _) => Ix::Const(0),
            (Ix::Const(x), Ix::Const(y)) if y > 0 => Ix::Const(x % y),
            (a, b) => Ix::Rem(Rc::new(a), Rc::new(b)),
        }
    }

    /// The value of a dim: its coefficient times its symbols.
    pub fn dim(d: &Dim) -> Ix {
        d.syms.iter().fold(Ix::Const(d.coeff), |acc, &s| Ix::prod(acc, Ix::Sym(s)))
    }
}

/// The row-major linear position of `index` in `shape`.
pub fn linearize(index: &[Ix], shape: &[Dim]) -> Ix {
    index.iter().zip(shape).fold(Ix::Const(0), |acc, (i, d)| Ix::sum(Ix::prod(acc, Ix::dim(d)), i.clone()))
}

/// The index in `shape` at row-major position `linear`.
pub fn delinearize(linear: Ix, shape: &[Dim]) -> Vec<Ix> {
    let mut out = vec![Ix::Const(0); shape.len()];
    let mut rest = linear;
    for (axis, d) in shape.iter().enumerate().rev() {
        if axis == 0 {
            out[0] = rest.clone();
        } else {
            out[axis] = Ix::modulo(rest.clone(), Ix::dim(d));
            rest = Ix::quot(rest, Ix::dim(d));
        }
    }
    out
}

/// `index` (into a shape of the same element count as `to`) re-read in `to`: the identity
/// when the shapes are equal; else group by group where the shapes split into runs of equal
/// element counts (`[N, 48, 32, 32]` and `[N, 48, 1024]` agree on `N` and `48` and merge the
/// rest), so that axes a reshape keeps keep their index expressions and the memo finds them;
/// else through the linear position.
pub fn reshape(index: &[Ix], from: &[Dim], to: &[Dim]) -> Vec<Ix> {
    if from == to {
        return index.to_vec();
    }
    let Some(groups) = runs(from, to) else { return delinearize(linearize(index, from), to) };
    let mut out = Vec::with_capacity(to.len());
    for (f, t) in groups {
        if f.len() == 1 && t.len() == 1 {
            out.push(index[f.start].clone());
        } else {
            out.extend(delinearize(linearize(&index[f.clone()], &from[f]), &to[t]));
        }
    }
    out
}

/// The runs of axes of `from` and `to` with equal element counts, in order; axes of size 1 at
/// the end join the last run. `None` when the counts do not line up as monomials.
pub(crate) fn runs(from: &[Dim], to: &[Dim]) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    let mut out: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < from.len() && j < to.len() {
        let (si, sj) = (i, j);
        let (mut pf, mut pt) = (from[i].clone(), to[j].clone());
        (i, j) = (i + 1, j + 1);
        while pf != pt {
            if pt.div(&pf).is_some() && i < from.len() {
                pf = pf.mul(&from[i]);
                i += 1;
            } else if pf.div(&pt).is_some() && j < to.len() {
                pt = pt.mul(&to[j]);
                j += 1;
            } else {
                return None;
            }
        }
        out.push((si..i, sj..j));
    }
    let rest_ones = from[i..].iter().chain(&to[j..]).all(Dim::is_one);
    let last = out.last_mut().filter(|_| rest_ones)?;
    (last.0.end, last.1.end) = (from.len(), to.len());
    Some(out)
}

/// The index of an operand of shape `operand` that NumPy broadcasting reads for `index` of
/// the result (trailing axes aligned, size-1 axes read at 0).
pub fn broadcast(index: &[Ix], operand: &[Dim]) -> Vec<Ix> {
    let offset = index.len().saturating_sub(operand.len());
    operand
        .iter()
        .enumerate()
        .map(|(i, d)| if d.is_one() { Ix::Const(0) } else { index.get(offset + i).cloned().unwrap_or(Ix::Const(0)) })
        .collect()
}
