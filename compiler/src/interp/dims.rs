//! Values of symbolic dims, and binding them from the shapes of the given inputs.

use std::collections::{BTreeMap, BTreeSet};

use super::{EvalError, Role, Tensor, TensorMap};
use crate::ir::{Dim, Graph, Op, SymId, Symbol, TensorType};

/// A concrete value for each symbolic dim of a graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DimValues {
    values: BTreeMap<SymId, u64>,
}

impl DimValues {
    pub fn new() -> DimValues {
        DimValues::default()
    }

    pub fn insert(&mut self, sym: SymId, value: u64) {
        self.values.insert(sym, value);
    }

    pub fn get(&self, sym: SymId) -> Option<u64> {
        self.values.get(&sym).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SymId, u64)> + '_ {
        self.values.iter().map(|(s, v)| (*s, *v))
    }

    /// The value of `dim`, or the first symbol without a value.
    pub fn dim(&self, dim: &Dim) -> Result<u64, SymId> {
        dim.syms.iter().try_fold(dim.coeff, |acc, s| self.get(*s).map(|v| acc * v).ok_or(*s))
    }

    /// The concrete shape of `shape`; `symbols` names an unbound symbol in the error.
    pub fn shape(&self, shape: &[Dim], symbols: &[Symbol]) -> Result<Vec<usize>, EvalError> {
        shape.iter().map(|d| self.dim(d).map(|v| v as usize).map_err(|s| unbound(symbols, s))).collect()
    }
}

impl FromIterator<(SymId, u64)> for DimValues {
    fn from_iter<I: IntoIterator<Item = (SymId, u64)>>(iter: I) -> DimValues {
        DimValues { values: iter.into_iter().collect() }
    }
}

fn unbound(symbols: &[Symbol], s: SymId) -> EvalError {
    match symbols.get(s.0 as usize) {
        Some(sym) => EvalError::UnboundSymbol { symbol: sym.name.clone() },
        None => EvalError::UnknownSymbol { id: s.0 },
    }
}

/// One input axis: its declared dim and the length the caller gave.
struct Constraint<'a> {
    input: &'a str,
    axis: usize,
    dim: &'a Dim,
    found: u64,
}

/// Infers every symbol's value from the input shapes, starting from `explicit`.
///
/// Checks that every graph input is given with its declared dtype and rank, that no unknown
/// input is given, that the inferred values agree with every input axis, that each value is
/// within its symbol's bound, and that every symbol used by a node's type has a value.
pub fn bind_dims(graph: &Graph, inputs: &TensorMap, explicit: &DimValues) -> Result<DimValues, EvalError> {
    check_unknown_inputs(graph, inputs)?;
    let mut dims = DimValues::new();
    for (s, v) in explicit.iter() {
        bind(graph, &mut dims, s, v)?;
    }
    let mut constraints = Vec::new();
    for &id in &graph.inputs {
        let Op::Input { name } = graph.op(id) else { continue };
        let tensor = inputs.get(name).ok_or_else(|| EvalError::MissingInput { name: name.clone() })?;
        check_kind(Role::Input, name, graph.ty(id), tensor)?;
        for (axis, dim) in graph.ty(id).shape.iter().enumerate() {
            constraints.push(Constraint { input: name, axis, dim, found: tensor.shape()[axis] as u64 });
        }
    }
    solve(graph, &mut dims, &constraints)?;
    for c in &constraints {
        check_axis(&graph.symbols, &dims, Role::Input, c.input, c.axis, c.dim, c.found)?;
    }
    check_all_bound(graph, &dims)?;
    Ok(dims)
}

fn check_unknown_inputs(graph: &Graph, inputs: &TensorMap) -> Result<(), EvalError> {
    let names: Vec<String> = graph
        .inputs
        .iter()
        .filter_map(|&id| match graph.op(id) {
            Op::Input { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    match inputs.keys().find(|k| !names.contains(k)) {
        Some(name) => Err(EvalError::UnknownInput { name: name.clone(), expected: names }),
        None => Ok(()),
    }
}

fn bind(graph: &Graph, dims: &mut DimValues, s: SymId, value: u64) -> Result<(), EvalError> {
    let sym = graph.symbols.get(s.0 as usize).ok_or(EvalError::UnknownSymbol { id: s.0 })?;
    // A symbol ranges over 1..=bound (ir-spec/types.md): empty tensors are not a size we plan for.
    if value == 0 || value > sym.bound {
        return Err(EvalError::SymbolBound { symbol: sym.name.clone(), value, bound: sym.bound });
    }
    dims.insert(s, value);
    Ok(())
}

/// Solves every axis whose dim has exactly one unknown symbol, until nothing changes.
fn solve(graph: &Graph, dims: &mut DimValues, constraints: &[Constraint]) -> Result<(), EvalError> {
    loop {
        let mut progress = false;
        for c in constraints {
            let unknown: BTreeSet<SymId> = c.dim.syms.iter().filter(|s| dims.get(**s).is_none()).copied().collect();
            let [s] = unknown.into_iter().collect::<Vec<_>>()[..] else { continue };
            let power = c.dim.syms.iter().filter(|x| **x == s).count();
            let known =
                c.dim.syms.iter().filter(|x| **x != s).fold(c.dim.coeff, |acc, x| acc * dims.get(*x).unwrap_or(1));
            if power != 1 || known == 0 {
                continue;
            }
            if !c.found.is_multiple_of(known) {
                let dim = c.dim.display(&graph.symbols).to_string();
                return Err(EvalError::NotDivisible {
                    name: c.input.into(),
                    axis: c.axis,
                    dim,
                    divisor: known,
                    found: c.found,
                });
            }
            bind(graph, dims, s, c.found / known)?;
            progress = true;
        }
        if !progress {
            return Ok(());
        }
    }
}

fn check_all_bound(graph: &Graph, dims: &DimValues) -> Result<(), EvalError> {
    for id in graph.node_ids() {
        dims.shape(&graph.ty(id).shape, &graph.symbols)?;
    }
    Ok(())
}

/// Checks a bound value's dtype and rank against its declared type.
pub(super) fn check_kind(role: Role, name: &str, ty: &TensorType, t: &Tensor) -> Result<(), EvalError> {
    if t.dtype != ty.dtype {
        return Err(EvalError::WrongDType { role, name: name.into(), expected: ty.dtype, found: t.dtype });
    }
    if t.shape().len() != ty.rank() {
        return Err(EvalError::WrongRank { role, name: name.into(), expected: ty.rank(), found: t.shape().to_vec() });
    }
    Ok(())
}

/// Checks one axis of a bound value against its declared dim.
pub(super) fn check_axis(
    symbols: &[Symbol],
    dims: &DimValues,
    role: Role,
    name: &str,
    axis: usize,
    dim: &Dim,
    found: u64,
) -> Result<(), EvalError> {
    let expected = dims.dim(dim).map_err(|s| unbound(symbols, s))?;
    if expected == found {
        return Ok(());
    }
    let dim = dim.display(symbols).to_string();
    Err(EvalError::WrongDim { role, name: name.into(), axis, dim, expected, found })
}

/// Checks a bound value's dtype and full shape against its declared type.
pub(super) fn check_value(
    symbols: &[Symbol],
    dims: &DimValues,
    role: Role,
    name: &str,
    ty: &TensorType,
    t: &Tensor,
) -> Result<(), EvalError> {
    check_kind(role, name, ty, t)?;
    for (axis, (dim, &found)) in ty.shape.iter().zip(t.shape()).enumerate() {
        check_axis(symbols, dims, role, name, axis, dim, found as u64)?;
    }
    Ok(())
}
