//! The recurrent layers `RNN`, `GRU`, `LSTM`, unrolled over their (static) sequence length:
//! the input projection of every step is one `matmul`, then each step is a few matmuls and
//! elementwise ops on the `[batch, hidden]` state. Gate order and equations are ONNX's; a
//! constant `sequence_lens` holds the state and zeroes the output past each sequence's end.

use super::{entry, Entry, Importer, NodeCx, Value};
use crate::interp::Tensor;
use crate::ir::*;
use crate::onnx::OnnxError;

type R<T> = Result<T, OnnxError>;

const ATTRS: &[&str] = &[
    "activation_alpha",
    "activation_beta",
    "activations",
    "clip",
    "direction",
    "hidden_size",
    "layout",
    "linear_before_reset",
    "input_forget",
];

pub(crate) const OPS: &[(&str, Entry)] =
    &[("RNN", entry(rnn, ATTRS)), ("GRU", entry(rnn, ATTRS)), ("LSTM", entry(rnn, ATTRS))];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Rnn,
    Gru,
    Lstm,
}

impl Kind {
    fn gates(self) -> u64 {
        match self {
            Kind::Rnn => 1,
            Kind::Gru => 3,
            Kind::Lstm => 4,
        }
    }

    /// The default activations of one direction.
    fn defaults(self) -> &'static [&'static str] {
        match self {
            Kind::Rnn => &["Tanh"],
            Kind::Gru => &["Sigmoid", "Tanh"],
            Kind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

/// What the unrolled steps share.
struct Cell<'a> {
    kind: Kind,
    hidden: u64,
    batch: Dim,
    acts: &'a [String],
    clip: Option<f64>,
    linear_before_reset: bool,
    /// Per step, which batch entries are still running (`None`: all).
    running: Vec<Option<NodeId>>,
}

fn activation(imp: &mut Importer, cx: &NodeCx, name: &str, x: NodeId) -> R<NodeId> {
    let u = match name {
        "Tanh" => UnaryOp::Tanh,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Relu" => UnaryOp::Relu,
        other => return Err(cx.bad_attr("activations", &format!("{other:?}"))),
    };
    imp.unary(cx, u, x)
}

fn clipped(imp: &mut Importer, cx: &NodeCx, x: NodeId, clip: Option<f64>) -> R<NodeId> {
    let Some(c) = clip else { return Ok(x) };
    let lo = imp.binary_scalar(cx, BinaryOp::Maximum, x, -c)?;
    imp.binary_scalar(cx, BinaryOp::Minimum, lo, c)
}

/// Gate `g` (of `G`) of a `[.., G * hidden]` tensor.
fn gate(imp: &mut Importer, cx: &NodeCx, x: NodeId, g: u64, hidden: u64) -> R<NodeId> {
    let axis = imp.rank(x) - 1;
    imp.slice(cx, x, axis, g * hidden, (g + 1) * hidden, 1)
}

/// Direction `d` of a `[dirs, ...]` tensor, without the leading axis.
fn direction(imp: &mut Importer, cx: &NodeCx, x: NodeId, d: u64) -> R<NodeId> {
    let s = imp.slice(cx, x, 0, d, d + 1, 1)?;
    let shape = imp.ty(s).shape[1..].to_vec();
    imp.reshape(cx, s, shape)
}

fn rnn(imp: &mut Importer, cx: &NodeCx) -> R<Vec<Value>> {
    let kind = match cx.op() {
        "RNN" => Kind::Rnn,
        "GRU" => Kind::Gru,
        _ => Kind::Lstm,
    };
    if cx.int("input_forget", 0)? != 0 {
        return Err(cx.bad_attr("input_forget", "1"));
    }
    if cx.attr("activation_alpha").is_some() || cx.attr("activation_beta").is_some() {
        return Err(cx.unsupported("activations with `activation_alpha`/`activation_beta`"));
    }
    let mut x = imp.input(cx, 0)?;
    let layout = cx.int("layout", 0)?;
    if layout == 1 {
        x = imp.permute(cx, x, vec![1, 0, 2])?;
    }
    let (w, r) = (imp.input(cx, 1)?, imp.input(cx, 2)?);
    for (v, what) in [(x, "X"), (w, "W"), (r, "R")] {
        imp.need_rank(cx, v, 3, what)?;
    }
    let xs = imp.ty(x).shape;
    let seq = xs[0].as_known().ok_or_else(|| cx.unsupported("a symbolic sequence length (the layer is unrolled)"))?;
    if seq > super::control::MAX_UNROLL {
        return Err(
            cx.unsupported(format!("a sequence of {seq} steps (unrolled up to {})", super::control::MAX_UNROLL))
        );
    }
    let hidden = match cx.opt_int("hidden_size")? {
        Some(_) => Some(cx.geometry_int("hidden_size", 1, 1)? as u64),
        None => imp.ty(r).shape[2].as_known(),
    };
    let hidden = hidden.ok_or_else(|| cx.invalid("unknown hidden size"))?;
    let dirs: Vec<(u64, bool)> = match cx.string("direction", "forward")?.as_str() {
        "forward" => vec![(0, false)],
        "reverse" => vec![(0, true)],
        "bidirectional" => vec![(0, false), (1, true)],
        other => return Err(cx.bad_attr("direction", &format!("{other:?}"))),
    };
    let per_dir = kind.defaults().len();
    let acts: Vec<String> = match cx.attr("activations") {
        Some(a) => a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
        None => kind.defaults().iter().cycle().take(per_dir * dirs.len()).map(|s| s.to_string()).collect(),
    };
    if acts.len() != per_dir * dirs.len() {
        return Err(cx.invalid(format!("{} activations for {} direction(s)", acts.len(), dirs.len())));
    }
    let running = running_masks(imp, cx, seq, &xs[1])?;
    let b = imp.opt_input(cx, 3)?;
    let (h0, c0, p) = (imp.opt_input(cx, 5)?, imp.opt_input(cx, 6)?, imp.opt_input(cx, 7)?);
    let (mut ys, mut hs, mut cs) = (Vec::new(), Vec::new(), Vec::new());
    for (k, &(d, reverse)) in dirs.iter().enumerate() {
        let cell = Cell {
            kind,
            hidden,
            batch: xs[1].clone(),
            acts: &acts[k * per_dir..(k + 1) * per_dir],
            clip: cx.opt_float("clip")?.map(f64::from),
            linear_before_reset: cx.int("linear_before_reset", 0)? != 0,
            running: running.clone(),
        };
        let wd = direction(imp, cx, w, d)?;
        let rd = direction(imp, cx, r, d)?;
        let bd = b.map(|b| direction(imp, cx, b, d)).transpose()?;
        let h = h0.map(|h| direction(imp, cx, h, d)).transpose()?;
        let c = c0.map(|c| direction(imp, cx, c, d)).transpose()?;
        let pd = p.map(|p| direction(imp, cx, p, d)).transpose()?;
        let wts = Weights { w: wd, r: rd, b: bd, h0: h, c0: c, p: pd };
        let (y, h, c) = unroll(imp, cx, &cell, x, &wts, reverse)?;
        ys.push(imp.unsqueeze(cx, y, &[1])?);
        hs.push(imp.unsqueeze(cx, h, &[0])?);
        cs.push(imp.unsqueeze(cx, c, &[0])?);
    }
    let mut y = imp.concat(cx, &ys, 1)?; // [seq, dirs, batch, hidden]
    let (mut yh, mut yc) = (imp.concat(cx, &hs, 0)?, imp.concat(cx, &cs, 0)?);
    if layout == 1 {
        y = imp.permute(cx, y, vec![2, 0, 1, 3])?;
        yh = imp.permute(cx, yh, vec![1, 0, 2])?;
        yc = imp.permute(cx, yc, vec![1, 0, 2])?;
    }
    let mut out = vec![Value::Node(y), Value::Node(yh)];
    if kind == Kind::Lstm {
        out.push(Value::Node(yc));
    }
    Ok(out)
}

/// Per step, a `[batch, 1]` bool mask of the sequences still running, from a constant
/// `sequence_lens` (input 4).
fn running_masks(imp: &mut Importer, cx: &NodeCx, seq: u64, batch: &Dim) -> R<Vec<Option<NodeId>>> {
    if !cx.has(4) {
        return Ok(vec![None; seq as usize]);
    }
    let lens = imp.const_ints(cx, 4)?;
    if batch.as_known() != Some(lens.len() as u64) {
        return Err(cx.invalid("`sequence_lens` needs one length per batch entry"));
    }
    let mut masks = Vec::new();
    for t in 0..seq as i64 {
        let on: Vec<bool> = lens.iter().map(|&l| t < l).collect();
        masks.push(if on.iter().all(|&b| b) {
            None
        } else {
            let m = Tensor::from_bool(&[lens.len(), 1], on).map_err(|e| cx.invalid(e.to_string()))?;
            Some(imp.tensor(cx, &format!("running{t}"), &m)?)
        });
    }
    Ok(masks)
}

/// One direction's weights, without the direction axis.
struct Weights {
    w: NodeId,
    r: NodeId,
    b: Option<NodeId>,
    h0: Option<NodeId>,
    c0: Option<NodeId>,
    p: Option<NodeId>,
}

/// What every step reads: `Rᵀ`, the recurrent bias and the peepholes.
struct StepWeights {
    rt: NodeId,
    rb: Option<NodeId>,
    p: Option<NodeId>,
}

/// One direction over every step; returns `Y [seq, batch, hidden]`, the last `H` and `C`.
fn unroll(
    imp: &mut Importer,
    cx: &NodeCx,
    cell: &Cell,
    x: NodeId,
    wts: &Weights,
    reverse: bool,
) -> R<(NodeId, NodeId, NodeId)> {
    let Weights { w, r, b, h0, c0, p } = *wts;
    let (gh, hd) = (cell.kind.gates() * cell.hidden, cell.hidden);
    let dtype = imp.dtype(x);
    let zero = imp.scalar(dtype, 0.0);
    let state_shape = vec![cell.batch.clone(), Dim::known(hd)];
    let mut h = match h0 {
        Some(h) => h,
        None => imp.broadcast(cx, zero, state_shape.clone())?,
    };
    let mut c = match c0 {
        Some(c) => c,
        None => imp.broadcast(cx, zero, state_shape.clone())?,
    };
    // X W^T + Wb for every step at once: [seq, batch, G*hidden].
    let wt = imp.transpose(cx, w)?;
    let mut xw = imp.matmul(cx, x, wt)?;
    let (wb, rb) = match b {
        Some(b) => (Some(imp.slice(cx, b, 0, 0, gh, 1)?), Some(imp.slice(cx, b, 0, gh, 2 * gh, 1)?)),
        None => (None, None),
    };
    if let Some(wb) = wb {
        xw = imp.binary(cx, BinaryOp::Add, xw, wb)?;
    }
    let rt = imp.transpose(cx, r)?;
    let seq = cell.running.len() as u64;
    let mut outs = vec![None; seq as usize];
    let steps: Vec<u64> = if reverse { (0..seq).rev().collect() } else { (0..seq).collect() };
    for t in steps {
        let xt = imp.slice(cx, xw, 0, t, t + 1, 1)?;
        let xt = imp.reshape(cx, xt, vec![cell.batch.clone(), Dim::known(gh)])?;
        let (hn, cn) = step(imp, cx, cell, xt, (h, c), &StepWeights { rt, rb, p })?;
        let (hn, cn, y) = match cell.running[t as usize] {
            Some(on) => {
                let y = imp.select(cx, on, hn, zero)?;
                (imp.select(cx, on, hn, h)?, imp.select(cx, on, cn, c)?, y)
            }
            None => (hn, cn, hn),
        };
        (h, c) = (hn, cn);
        outs[t as usize] = Some(imp.unsqueeze(cx, y, &[0])?);
    }
    let outs: Vec<NodeId> = outs.into_iter().flatten().collect();
    Ok((imp.concat(cx, &outs, 0)?, h, c))
}

/// One step of the cell: `xt` is `X_t W^T + Wb`.
fn step(
    imp: &mut Importer,
    cx: &NodeCx,
    cell: &Cell,
    xt: NodeId,
    (h, c): (NodeId, NodeId),
    sw: &StepWeights,
) -> R<(NodeId, NodeId)> {
    let StepWeights { rt, rb, p } = *sw;
    use BinaryOp::{Add, Mul, Sub};
    let hd = cell.hidden;
    let mut hr = imp.matmul(cx, h, rt)?; // H R^T: [batch, G*hidden]
    if let Some(rb) = rb {
        hr = imp.binary(cx, Add, hr, rb)?;
    }
    let act = |imp: &mut Importer, i: usize, v: NodeId| -> R<NodeId> {
        let v = clipped(imp, cx, v, cell.clip)?;
        activation(imp, cx, &cell.acts[i], v)
    };
    match cell.kind {
        // H = f(X W^T + H R^T + Wb + Rb)
        Kind::Rnn => {
            let s = imp.binary(cx, Add, xt, hr)?;
            Ok((act(imp, 0, s)?, c))
        }
        // z, r = f(..); h~ = g(X Wh^T + (r H) Rh^T + Rbh + Wbh), or with linear_before_reset
        // g(X Wh^T + r (H Rh^T + Rbh) + Wbh); H = (1 - z) h~ + z H
        Kind::Gru => {
            let pre = |imp: &mut Importer, g: u64| -> R<NodeId> {
                let (a, b) = (gate(imp, cx, xt, g, hd)?, gate(imp, cx, hr, g, hd)?);
                imp.binary(cx, Add, a, b)
            };
            let (zp, rp) = (pre(imp, 0)?, pre(imp, 1)?);
            let (z, rg) = (act(imp, 0, zp)?, act(imp, 0, rp)?);
            let xh = gate(imp, cx, xt, 2, hd)?;
            let hh = if cell.linear_before_reset {
                let hrh = gate(imp, cx, hr, 2, hd)?;
                imp.binary(cx, Mul, rg, hrh)?
            } else {
                let rh = imp.binary(cx, Mul, rg, h)?;
                let rht = imp.slice(cx, rt, 1, 2 * hd, 3 * hd, 1)?;
                let m = imp.matmul(cx, rh, rht)?;
                match rb {
                    Some(rb) => {
                        let rbh = imp.slice(cx, rb, 0, 2 * hd, 3 * hd, 1)?;
                        imp.binary(cx, Add, m, rbh)?
                    }
                    None => m,
                }
            };
            let hp = imp.binary(cx, Add, xh, hh)?;
            let ht = act(imp, 1, hp)?;
            let one = imp.scalar(imp.dtype(z), 1.0);
            let keep = imp.binary(cx, Sub, one, z)?;
            let a = imp.binary(cx, Mul, keep, ht)?;
            let b = imp.binary(cx, Mul, z, h)?;
            Ok((imp.binary(cx, Add, a, b)?, c))
        }
        // i, o, f, c gates; C = f C + i g(..); H = o h(C), with peepholes P = [Pi, Po, Pf]
        Kind::Lstm => {
            let pre = |imp: &mut Importer, g: u64| -> R<NodeId> {
                let (a, b) = (gate(imp, cx, xt, g, hd)?, gate(imp, cx, hr, g, hd)?);
                imp.binary(cx, Add, a, b)
            };
            let peep = |imp: &mut Importer, v: NodeId, k: u64, state: NodeId| -> R<NodeId> {
                let Some(p) = p else { return Ok(v) };
                let pk = imp.slice(cx, p, 0, k * hd, (k + 1) * hd, 1)?;
                let ps = imp.binary(cx, Mul, pk, state)?;
                imp.binary(cx, Add, v, ps)
            };
            let ip = pre(imp, 0)?;
            let ip = peep(imp, ip, 0, c)?;
            let fp = pre(imp, 2)?;
            let fp = peep(imp, fp, 2, c)?;
            let (i, f) = (act(imp, 0, ip)?, act(imp, 0, fp)?);
            let cp = pre(imp, 3)?;
            let cg = act(imp, 1, cp)?;
            let fc = imp.binary(cx, Mul, f, c)?;
            let ic = imp.binary(cx, Mul, i, cg)?;
            let cn = imp.binary(cx, Add, fc, ic)?;
            let op = pre(imp, 1)?;
            let op = peep(imp, op, 1, cn)?;
            let o = act(imp, 0, op)?;
            let hc = act(imp, 2, cn)?;
            Ok((imp.binary(cx, Mul, o, hc)?, cn))
        }
    }
}
