//! Control flow, resolved at import time: `If` with a constant condition imports the branch
//! taken; `Loop` with a constant trip count (or a condition that becomes constant) and `Scan`
//! over a static length are unrolled, importing the body once per iteration in its own scope.
//! A body sees the enclosing values by name, as ONNX scoping says.

use super::{entry, Entry, Importer, NodeCx, Value};
use crate::interp::Tensor;
use crate::ir::*;
use crate::onnx::proto::GraphProto;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

/// Iterations beyond this are refused rather than unrolled.
pub(crate) const MAX_UNROLL: u64 = 4096;

pub(crate) const OPS: &[(&str, Entry)] = &[
    ("If", entry(if_, &["then_branch", "else_branch"])),
    ("Loop", entry(loop_, &["body"])),
    (
        "Scan",
        entry(
            scan,
            &[
                "body",
                "num_scan_inputs",
                "scan_input_axes",
                "scan_input_directions",
                "scan_output_axes",
                "scan_output_directions",
            ],
        ),
    ),
];

/// True for the ops whose bodies are imported here (never folded as a whole).
pub(crate) fn is_control(op: &str) -> bool {
    OPS.iter().any(|(n, _)| *n == op)
}

pub(crate) fn graph<'n>(cx: &NodeCx<'n>, name: &str) -> R<&'n GraphProto> {
    cx.attr(name)
        .and_then(|a| a.g.as_ref())
        .ok_or_else(|| cx.invalid(format!("attribute `{name}` (a graph) is required")))
}

/// Imports `body` in a new scope with its inputs bound to `inputs`; returns its outputs.
pub(crate) fn run_body(imp: &mut Importer, cx: &NodeCx, body: &GraphProto, inputs: Vec<Value>) -> R<Vec<Value>> {
    if body.input.len() != inputs.len() {
        return Err(cx.invalid(format!("the body takes {} inputs, {} are given", body.input.len(), inputs.len())));
    }
    imp.scoped(|imp| {
        for (info, v) in body.input.iter().zip(inputs) {
            imp.bind(info.name.as_deref().unwrap_or(""), v);
        }
        for t in &body.initializer {
            imp.bind(t.name.as_deref().unwrap_or(""), Value::constant(crate::onnx::tensor::decode(t)?));
        }
        for (index, node) in body.node.iter().enumerate() {
            imp.import_node(index, node)?;
        }
        body.output
            .iter()
            .map(|o| {
                let name = o.name.as_deref().unwrap_or("");
                imp.lookup(name).map(|(v, _)| v).ok_or_else(|| cx.invalid(format!("the body never computes `{name}`")))
            })
            .collect()
    })
}

fn truth(imp: &Importer, cx: &NodeCx, i: usize) -> R<bool> {
    Ok(imp.const_scalar(cx, i)? != 0.0)
}

fn if_(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let branch = if truth(imp, cx, 0)? { "then_branch" } else { "else_branch" };
    run_body(imp, cx, graph(cx, branch)?, vec![])
}

fn scalar(cx: &NodeCx, dtype: DType, v: i64) -> R<Value> {
    let t = match dtype {
        DType::Bool => Tensor::from_bool(&[], vec![v != 0]),
        d => Tensor::from_i64(d, &[], vec![v]),
    };
    t.map(Value::constant).map_err(|e| cx.invalid(e.to_string()))
}

/// Stacks per-iteration values along a new axis `axis` (reversed when `reverse`).
fn stack(imp: &mut Importer, cx: &NodeCx, items: &[Value], keys: &str, axis: usize, reverse: bool) -> R<Value> {
    let mut nodes = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let id = match v {
            Value::Node(id) => *id,
            Value::Const(t) => imp.tensor(cx, &format!("{keys}{i}"), t)?,
            Value::Dims { .. } => return Err(cx.unsupported("a loop output computed from symbolic dims")),
        };
        nodes.push(imp.unsqueeze(cx, id, &[axis])?);
    }
    if reverse {
        nodes.reverse();
    }
    if nodes.is_empty() {
        return Err(cx.unsupported("a loop that runs no iteration (its scan outputs are empty)"));
    }
    Ok(Value::Node(imp.concat(cx, &nodes, axis)?))
}

/// `Loop(M, cond, v...)`: body `(i, cond, v...) -> (cond, v..., scan...)`.
fn loop_(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let body = graph(cx, "body")?;
    let trips = if cx.has(0) { Some(imp.const_scalar(cx, 0)? as i64) } else { None };
    let mut cond = if cx.has(1) { truth(imp, cx, 1)? } else { true };
    let mut carried: Vec<Value> = (2..cx.arity()).map(|i| cx.value(i).cloned()).collect::<R<_>>()?;
    let n_carried = carried.len();
    let mut scans: Vec<Vec<Value>> = Vec::new();
    let mut i = 0i64;
    while cond && trips.is_none_or(|m| i < m) {
        if i as u64 >= MAX_UNROLL {
            return Err(cx.unsupported(format!("a loop of more than {MAX_UNROLL} iterations")));
        }
        let mut inputs = vec![scalar(cx, DType::I64, i)?, scalar(cx, DType::Bool, 1)?];
        inputs.extend(carried.iter().cloned());
        let out = run_body(imp, cx, body, inputs)?;
        if out.len() < 1 + n_carried {
            return Err(cx.invalid("the body returns too few values"));
        }
        cond = match &out[0] {
            Value::Const(t) => t.to_f64_vec().first().is_some_and(|&c| c != 0.0),
            _ => return Err(cx.unsupported("a loop condition computed at run time")),
        };
        carried = out[1..1 + n_carried].to_vec();
        let rest = &out[1 + n_carried..];
        if scans.is_empty() {
            scans = vec![Vec::new(); rest.len()];
        }
        for (acc, v) in scans.iter_mut().zip(rest) {
            acc.push(v.clone());
        }
        i += 1;
    }
    let mut outputs = carried;
    let n_scan = body.output.len().saturating_sub(1 + n_carried);
    for k in 0..n_scan {
        let items = scans.get(k).cloned().unwrap_or_default();
        outputs.push(stack(imp, cx, &items, &format!("loop{k}_"), 0, false)?);
    }
    Ok(outputs)
}

/// `Scan(states..., inputs...)`: the body runs once per slice of the scan inputs along their
/// axes; its per-step outputs are stacked.
fn scan(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    if imp.opset < 9 {
        return Err(cx.unsupported("`Scan` before opset 9 (batched, with `sequence_lens`)"));
    }
    let body = graph(cx, "body")?;
    let m = cx.opt_int("num_scan_inputs")?.ok_or_else(|| cx.invalid("`num_scan_inputs` is required"))? as usize;
    let n = cx.arity().checked_sub(m).ok_or_else(|| cx.invalid("fewer inputs than `num_scan_inputs`"))?;
    let k = body.output.len().checked_sub(n).ok_or_else(|| cx.invalid("the body returns too few values"))?;
    let list = |name: &str, len: usize| -> R<Vec<i64>> { Ok(cx.ints(name)?.unwrap_or_else(|| vec![0; len])) };
    let (in_axes, in_dirs) = (list("scan_input_axes", m)?, list("scan_input_directions", m)?);
    let (out_axes, out_dirs) = (list("scan_output_axes", k)?, list("scan_output_directions", k)?);
    if in_axes.len() != m || in_dirs.len() != m || out_axes.len() != k || out_dirs.len() != k {
        return Err(cx.invalid("the scan axes and directions must have one entry per scan input and output"));
    }
    let mut xs = Vec::new();
    let mut len = None;
    for (j, &raw_axis) in in_axes.iter().enumerate().take(m) {
        let x = imp.input(cx, n + j)?;
        let a = super::build::axis(cx, raw_axis, imp.rank(x))?;
        let l = imp.ty(x).shape[a].as_known().ok_or_else(|| cx.unsupported("scanning a symbolic axis"))?;
        if len.is_some_and(|v| v != l) {
            return Err(cx.invalid("the scan inputs differ in length"));
        }
        len = Some(l);
        xs.push((x, a));
    }
    let len = len.ok_or_else(|| cx.invalid("no scan input"))?;
    if len > MAX_UNROLL {
        return Err(cx.unsupported(format!("a scan of more than {MAX_UNROLL} steps")));
    }
    let mut states: Vec<Value> = (0..n).map(|i| cx.value(i).cloned()).collect::<R<_>>()?;
    let mut per_step: Vec<Vec<Value>> = vec![Vec::new(); k];
    for t in 0..len {
        let mut inputs = states.clone();
        for (j, &(x, a)) in xs.iter().enumerate() {
            let at = if in_dirs[j] != 0 { len - 1 - t } else { t };
            let s = imp.slice(cx, x, a, at, at + 1, 1)?;
            let mut shape = imp.ty(s).shape;
            shape.remove(a);
            inputs.push(Value::Node(imp.reshape(cx, s, shape)?));
        }
        let out = run_body(imp, cx, body, inputs)?;
        states = out[..n].to_vec();
        for (acc, v) in per_step.iter_mut().zip(&out[n..]) {
            acc.push(v.clone());
        }
    }
    let mut outputs = states;
    for (q, items) in per_step.iter().enumerate() {
        let rank = match items.first() {
            Some(v) => imp.type_of(v).rank() + 1,
            None => 1,
        };
        let a = super::build::axis(cx, out_axes[q], rank)?;
        outputs.push(stack(imp, cx, items, &format!("scan{q}_"), a, out_dirs[q] != 0)?);
    }
    Ok(outputs)
}
