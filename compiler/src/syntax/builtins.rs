//! The builtin ops as the language spells them: one signature table, attribute evaluation,
//! and the construction of each IR op from its operands and attributes.

use std::collections::HashMap;

use super::ast::{Arg, BinOp, Expr, ExprKind, Ident, UnOp};
use super::lower::{closest, Lowerer, Value};
use crate::diag::{Diagnostic, Span};
use crate::ir::infer::numel;
use crate::ir::*;

/// A builtin's signature: tensor operand names (the last `optional` of them may be left
/// out; `variadic` takes any number ≥ 1) and attribute names in positional order.
struct Sig {
    tensors: &'static [&'static str],
    optional: usize,
    variadic: bool,
    attrs: &'static [&'static str],
}

const fn sig(tensors: &'static [&'static str], attrs: &'static [&'static str]) -> Sig {
    Sig { tensors, optional: 0, variadic: false, attrs }
}

const UNARY: Sig = sig(&["x"], &[]);
const BINARY: Sig = sig(&["a", "b"], &[]);
const REDUCE: Sig = sig(&["x"], &["axis", "keepdims"]);

/// The signature of every builtin other than the unary, binary, compare and reduce families.
const TABLE: &[(&str, Sig)] = &[
    ("select", sig(&["cond", "a", "b"], &[])),
    ("cast", sig(&["x"], &["dtype"])),
    ("argmax", REDUCE),
    ("argmin", REDUCE),
    ("matmul", BINARY),
    ("reshape", sig(&["x"], &["shape"])),
    ("permute", sig(&["x"], &["perm"])),
    ("transpose", UNARY),
    ("broadcast", sig(&["x"], &["shape"])),
    ("slice", sig(&["x"], &["axis", "start", "end", "step"])),
    ("concat", Sig { tensors: &["x"], optional: 0, variadic: true, attrs: &["axis"] }),
    ("pad", sig(&["x"], &["low", "high", "value"])),
    ("gather", sig(&["x", "indices"], &["axis"])),
    (
        "conv2d",
        Sig {
            tensors: &["x", "w", "bias"],
            optional: 1,
            variadic: false,
            attrs: &["stride", "padding", "dilation", "groups"],
        },
    ),
    ("max_pool2d", sig(&["x"], &["kernel", "stride", "padding"])),
    ("avg_pool2d", sig(&["x"], &["kernel", "stride", "padding", "count_include_pad"])),
    ("full", sig(&[], &["shape", "value", "dtype"])),
    ("iota", sig(&[], &["shape", "axis", "dtype"])),
    ("softmax", sig(&["x"], &["axis"])),
    ("log_softmax", sig(&["x"], &["axis"])),
    ("layer_norm", sig(&["x", "gamma", "beta"], &["axis", "eps"])),
    ("rms_norm", sig(&["x", "gamma"], &["axis", "eps"])),
    ("gelu", sig(&["x"], &["approximate"])),
    ("silu", UNARY),
    ("linear", Sig { tensors: &["x", "w", "bias"], optional: 1, variadic: false, attrs: &[] }),
    ("attention", Sig { tensors: &["q", "k", "v", "mask"], optional: 1, variadic: false, attrs: &["causal", "scale"] }),
];

fn signature(name: &str) -> Option<&'static Sig> {
    if UnaryOp::ALL.iter().any(|u| u.name() == name) {
        return Some(&UNARY);
    }
    if BinaryOp::ALL.iter().any(|b| b.name() == name) || CompareOp::ALL.iter().any(|c| c.name() == name) {
        return Some(&BINARY);
    }
    if ReduceOp::ALL.iter().any(|r| r.name() == name) {
        return Some(&REDUCE);
    }
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
}

pub(super) fn is_builtin(name: &str) -> bool {
    signature(name).is_some()
}

/// Every builtin name, for "did you mean" suggestions.
pub(super) fn names() -> impl Iterator<Item = &'static str> {
    let unary = UnaryOp::ALL.iter().map(|u| u.name());
    let binary = BinaryOp::ALL.iter().map(|b| b.name());
    let compare = CompareOp::ALL.iter().map(|c| c.name());
    let reduce = ReduceOp::ALL.iter().map(|r| r.name());
    unary.chain(binary).chain(compare).chain(reduce).chain(TABLE.iter().map(|(n, _)| *n))
}

pub(super) enum ArgKind {
    Tensor,
    Attr,
}

/// Whether argument `i` of a call is a tensor operand or an attribute. Required tensor slots
/// come first; after them an argument that looks like a value (a bound name or an
/// expression over values) fills an optional slot, and anything else is an attribute.
pub(super) fn classify(op: &str, i: usize, arg: &Arg, values: &HashMap<String, (Value, Span)>) -> ArgKind {
    let Some(sig) = signature(op) else { return ArgKind::Attr };
    if let Some(key) = &arg.key {
        return if sig.tensors.contains(&key.name.as_str()) { ArgKind::Tensor } else { ArgKind::Attr };
    }
    let required = sig.tensors.len() - sig.optional;
    let looks_like_value = match &arg.value.kind {
        ExprKind::Name(n) => values.contains_key(n),
        ExprKind::List(_) | ExprKind::Str(_) | ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) => false,
        ExprKind::Unary(_, x) => !matches!(x.kind, ExprKind::Int(_) | ExprKind::Float(_)),
        ExprKind::Binary(..) | ExprKind::Call { .. } => true,
    };
    if i < required || (looks_like_value && (sig.variadic || i < sig.tensors.len())) {
        ArgKind::Tensor
    } else {
        ArgKind::Attr
    }
}

/// An attribute value, evaluated from its expression.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Attr {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    DType(DType),
    Dim(Dim),
    List(Vec<Attr>),
    Invalid(String),
}

pub(super) fn attr(e: &Expr, dims: &HashMap<String, Dim>) -> Attr {
    match &e.kind {
        ExprKind::Int(v) => Attr::Int(*v),
        ExprKind::Float(v) => Attr::Float(*v),
        ExprKind::Bool(v) => Attr::Bool(*v),
        ExprKind::Str(s) => Attr::Str(s.clone()),
        ExprKind::Name(n) => match (DType::from_name(n), dims.get(n)) {
            (Some(d), _) => Attr::DType(d),
            (None, Some(d)) => Attr::Dim(d.clone()),
            (None, None) => Attr::Invalid(format!("`{n}` is neither a dtype nor a dim symbol")),
        },
        ExprKind::Unary(UnOp::Neg, x) => match attr(x, dims) {
            Attr::Int(v) => Attr::Int(-v),
            Attr::Float(v) => Attr::Float(-v),
            _ => Attr::Invalid("only numbers can be negated in an attribute".into()),
        },
        ExprKind::Binary(BinOp::Mul, ..) => dim_product(e, dims),
        ExprKind::List(items) => Attr::List(items.iter().map(|x| attr(x, dims)).collect()),
        ExprKind::Unary(..) | ExprKind::Binary(..) | ExprKind::Call { .. } => {
            Attr::Invalid("attribute values are literals, lists, dtypes or dims".into())
        }
    }
}

/// `a * b * ...` as a dim, walking the left-nested chain in a loop (its length is unbounded).
fn dim_product(e: &Expr, dims: &HashMap<String, Dim>) -> Attr {
    let (leaf, chain) = e.left_chain();
    let mut product = as_dim(&attr(leaf, dims));
    for node in chain {
        product = match (&node.kind, product) {
            (ExprKind::Binary(BinOp::Mul, _, _, b), Some(x)) => as_dim(&attr(b, dims)).map(|y| x.mul(&y)),
            _ => None,
        };
    }
    product.map_or_else(|| Attr::Invalid("only dims can be multiplied in an attribute".into()), Attr::Dim)
}

fn as_dim(a: &Attr) -> Option<Dim> {
    match a {
        Attr::Int(v) if *v >= 0 => Some(Dim::known(*v as u64)),
        Attr::Dim(d) => Some(d.clone()),
        _ => None,
    }
}

/// The attributes of one call, by name, with their spans.
struct Attrs<'s> {
    op: &'s str,
    call: Span,
    values: HashMap<&'static str, (Attr, Span)>,
}

type R<T> = Result<T, Diagnostic>;

impl Attrs<'_> {
    fn get(&self, key: &str) -> Option<&(Attr, Span)> {
        self.values.get(key)
    }

    fn bad(&self, key: &str, span: Span, want: &str) -> Diagnostic {
        Diagnostic::at(format!("`{}`: attribute `{key}` must be {want}", self.op), span, format!("expected {want}"))
    }

    fn int(&self, key: &str, default: Option<i64>) -> R<i64> {
        match (self.get(key), default) {
            (Some((Attr::Int(v), _)), _) => Ok(*v),
            (Some((_, span)), _) => Err(self.bad(key, *span, "an integer")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(self.missing(key)),
        }
    }

    fn uint(&self, key: &str, default: Option<u64>) -> R<u64> {
        let v = self.int(key, default.map(|d| d as i64))?;
        u64::try_from(v).map_err(|_| self.bad(key, self.span(key), "a non-negative integer"))
    }

    fn float(&self, key: &str, default: f64) -> R<f64> {
        match self.get(key) {
            Some((Attr::Float(v), _)) => Ok(*v),
            Some((Attr::Int(v), _)) => Ok(*v as f64),
            Some((_, span)) => Err(self.bad(key, *span, "a number")),
            None => Ok(default),
        }
    }

    fn bool(&self, key: &str, default: bool) -> R<bool> {
        match self.get(key) {
            Some((Attr::Bool(v), _)) => Ok(*v),
            Some((_, span)) => Err(self.bad(key, *span, "`true` or `false`")),
            None => Ok(default),
        }
    }

    fn dtype(&self, key: &str, default: DType) -> R<DType> {
        match self.get(key) {
            Some((Attr::DType(d), _)) => Ok(*d),
            Some((_, span)) => Err(self.bad(key, *span, "a dtype (f32, f16, bf16, i32, i64, bool)")),
            None => Ok(default),
        }
    }

    fn span(&self, key: &str) -> Span {
        self.get(key).map_or(self.call, |(_, s)| *s)
    }

    fn missing(&self, key: &str) -> Diagnostic {
        Diagnostic::at(format!("`{}` needs attribute `{key}`", self.op), self.call, format!("add `{key}=...`"))
    }

    /// An axis, negative counting from the end, normalised to `0..rank`.
    fn axis(&self, key: &str, default: Option<i64>, rank: usize) -> R<usize> {
        let v = self.int(key, default)?;
        normalize_axis(v, rank).ok_or_else(|| {
            let msg = format!("`{}`: axis {v} is out of range for rank {rank}", self.op);
            Diagnostic::at(msg, self.span(key), format!("valid axes are -{rank}..{rank}"))
        })
    }

    /// Sorted, deduplicated axes from an int or a list; all axes when absent.
    fn axes(&self, key: &str, rank: usize) -> R<Vec<usize>> {
        let raw: Vec<i64> = match self.get(key) {
            None => return Ok((0..rank).collect()),
            Some((Attr::Int(v), _)) => vec![*v],
            Some((Attr::List(items), span)) => items
                .iter()
                .map(|a| {
                    if let Attr::Int(v) = a {
                        Ok(*v)
                    } else {
                        Err(self.bad(key, *span, "an integer or a list of integers"))
                    }
                })
                .collect::<R<_>>()?,
            Some((_, span)) => return Err(self.bad(key, *span, "an integer or a list of integers")),
        };
        let mut axes = Vec::new();
        for v in raw {
            let a = normalize_axis(v, rank).ok_or_else(|| {
                let msg = format!("`{}`: axis {v} is out of range for rank {rank}", self.op);
                Diagnostic::at(msg, self.span(key), format!("valid axes are -{rank}..{rank}"))
            })?;
            if axes.contains(&a) {
                let msg = format!("`{}`: axis {v} is listed twice", self.op);
                return Err(Diagnostic::at(msg, self.span(key), "duplicate axis"));
            }
            axes.push(a);
        }
        axes.sort();
        Ok(axes)
    }

    fn ints(&self, key: &str) -> R<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some((Attr::List(items), span)) => items
                .iter()
                .map(|a| if let Attr::Int(v) = a { Ok(*v) } else { Err(self.bad(key, *span, "a list of integers")) })
                .collect::<R<_>>()
                .map(Some),
            Some((_, span)) => Err(self.bad(key, *span, "a list of integers")),
        }
    }

    /// A list of exactly `n` non-negative integers, or `default`.
    fn uints<const N: usize>(&self, key: &str, default: [u64; N]) -> R<[u64; N]> {
        let Some(v) = self.ints(key)? else { return Ok(default) };
        let want = format!("a list of {N} non-negative integers");
        let v: Vec<u64> = v
            .into_iter()
            .map(u64::try_from)
            .collect::<Result<_, _>>()
            .map_err(|_| self.bad(key, self.span(key), &want))?;
        v.try_into().map_err(|_| self.bad(key, self.span(key), &want))
    }

    /// Window padding: `[p]`, `[ph, pw]` or `[top, left, bottom, right]`.
    fn padding(&self) -> R<[u64; 4]> {
        let want = "1, 2 or 4 non-negative integers ([top, left, bottom, right])";
        let Some(v) = self.ints("padding")? else { return Ok([0; 4]) };
        let v: Vec<u64> = v
            .into_iter()
            .map(u64::try_from)
            .collect::<Result<_, _>>()
            .map_err(|_| self.bad("padding", self.span("padding"), want))?;
        match v.as_slice() {
            [p] => Ok([*p; 4]),
            [h, w] => Ok([*h, *w, *h, *w]),
            [t, l, b, r] => Ok([*t, *l, *b, *r]),
            _ => Err(self.bad("padding", self.span("padding"), want)),
        }
    }

    /// A shape; `-1` entries (at most one, when `allow_infer`) come back as `None`.
    fn shape(&self, key: &str, allow_infer: bool) -> R<Vec<Option<Dim>>> {
        let want = if allow_infer { "a list of dims (numbers, symbols, products; one -1)" } else { "a list of dims" };
        let Some((Attr::List(items), span)) = self.get(key) else {
            return Err(self.get(key).map_or_else(|| self.missing(key), |(_, s)| self.bad(key, *s, want)));
        };
        let dims: Vec<Option<Dim>> = items
            .iter()
            .map(|a| match a {
                Attr::Int(-1) if allow_infer => Ok(None),
                other => as_dim(other).map(Some).ok_or_else(|| self.bad(key, *span, want)),
            })
            .collect::<R<_>>()?;
        if dims.iter().filter(|d| d.is_none()).count() > 1 {
            return Err(self.bad(key, *span, "a list with at most one -1"));
        }
        Ok(dims)
    }
}

fn normalize_axis(v: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if v < 0 { v + r } else { v };
    (0..r).contains(&a).then_some(a as usize)
}

/// Lowers a builtin call whose arguments are already split into tensors and attributes.
pub(super) fn apply(
    l: &mut Lowerer<'_>,
    callee: &Ident,
    tensors: Vec<(&Arg, Value)>,
    attrs: Vec<(Option<&Ident>, Attr, Span)>,
    span: Span,
) -> Value {
    let op_name = callee.name.as_str();
    let Some(sig) = signature(op_name) else { return Value::Poison };
    let result = bind_operands(op_name, sig, tensors, span)
        .and_then(|operands| Ok((operands, bind_attrs(op_name, sig, attrs, span)?)))
        .and_then(|(operands, attrs)| {
            let types: Vec<Option<TensorType>> = operands
                .iter()
                .map(|(v, _)| if let Value::Tensor(id) = v { Some(l.graph.ty(*id).clone()) } else { None })
                .collect();
            Ok((operands, build(l, op_name, &types, &attrs)?))
        });
    match result {
        Ok((operands, Built::Op(op, given))) => l.apply(op, &operands, given, span),
        Ok((_, Built::Full { value, ty })) => {
            let scalar = l.materialize(&value, Some(ty.dtype), span);
            if ty.shape.is_empty() {
                return scalar;
            }
            l.apply(Op::Broadcast, &[(scalar, span)], Some(ty), span)
        }
        Err(d) => {
            if !tensors_poisoned(&d) {
                l.diags.push(d);
            }
            Value::Poison
        }
    }
}

/// A poisoned operand was reported already; building with it reports nothing more.
fn tensors_poisoned(d: &Diagnostic) -> bool {
    d.message.is_empty()
}

fn bind_operands(op: &str, sig: &Sig, tensors: Vec<(&Arg, Value)>, span: Span) -> R<Vec<(Value, Span)>> {
    let mut slots: Vec<Option<(Value, Span)>> = vec![None; sig.tensors.len()];
    let mut extra = Vec::new();
    for (i, (arg, value)) in tensors.into_iter().enumerate() {
        if value == Value::Poison {
            return Err(Diagnostic::error(""));
        }
        let slot = match &arg.key {
            Some(k) => sig.tensors.iter().position(|t| *t == k.name).unwrap_or(i),
            None => i,
        };
        match slots.get_mut(slot) {
            Some(s @ None) => *s = Some((value, arg.value.span)),
            Some(Some(_)) => {
                let msg = format!("`{op}`: operand `{}` is given twice", sig.tensors[slot]);
                return Err(Diagnostic::at(msg, arg.value.span, "second value"));
            }
            None if sig.variadic => extra.push((value, arg.value.span)),
            None => {
                let msg = format!(
                    "`{op}` takes at most {} tensor operand(s) ({})",
                    sig.tensors.len(),
                    sig.tensors.join(", ")
                );
                return Err(Diagnostic::at(msg, arg.value.span, "one too many"));
            }
        }
    }
    let required = sig.tensors.len() - sig.optional;
    if let Some(missing) = slots[..required].iter().position(Option::is_none) {
        let msg = format!(
            "`{op}` needs operand `{}` ({} in all: {})",
            sig.tensors[missing],
            required,
            sig.tensors[..required].join(", ")
        );
        return Err(Diagnostic::at(msg, span, "missing operand"));
    }
    Ok(slots.into_iter().flatten().chain(extra).collect())
}

fn bind_attrs<'s>(op: &'s str, sig: &Sig, attrs: Vec<(Option<&Ident>, Attr, Span)>, span: Span) -> R<Attrs<'s>> {
    let mut values = HashMap::new();
    for (i, (key, value, vspan)) in attrs.into_iter().enumerate() {
        let name = match key {
            Some(k) => match sig.attrs.iter().find(|a| **a == k.name) {
                Some(a) => *a,
                None => {
                    let mut d =
                        Diagnostic::at(format!("`{op}` has no attribute `{}`", k.name), k.span, "unknown attribute");
                    d = match closest(&k.name, sig.attrs.iter().copied()) {
                        Some(c) => d.with_note(format!("did you mean `{c}`?")),
                        None if sig.attrs.is_empty() => d.with_note(format!("`{op}` takes no attributes")),
                        None => d.with_note(format!("`{op}` takes: {}", sig.attrs.join(", "))),
                    };
                    return Err(d);
                }
            },
            None => match sig.attrs.get(i) {
                Some(a) => *a,
                None => {
                    let takes = match sig.attrs {
                        [] => "no attributes".to_string(),
                        attrs => format!("{} attribute(s) ({})", attrs.len(), attrs.join(", ")),
                    };
                    let tensors = sig.tensors.len();
                    let msg = format!("too many arguments: `{op}` takes {tensors} tensor operand(s) and {takes}");
                    return Err(Diagnostic::at(msg, vspan, "unexpected argument"));
                }
            },
        };
        if let Attr::Invalid(why) = &value {
            return Err(Diagnostic::at(format!("`{op}`: bad value for `{name}`: {why}"), vspan, "invalid attribute"));
        }
        if values.insert(name, (value, vspan)).is_some() {
            return Err(Diagnostic::at(format!("`{op}`: attribute `{name}` is given twice"), vspan, "second value"));
        }
    }
    Ok(Attrs { op, call: span, values })
}

enum Built {
    Op(Op, Option<TensorType>),
    /// `full`: a scalar broadcast to a type.
    Full {
        value: Value,
        ty: TensorType,
    },
}

fn build(l: &Lowerer<'_>, name: &str, types: &[Option<TensorType>], a: &Attrs) -> R<Built> {
    let rank = types.first().and_then(|t| t.as_ref()).map_or(0, TensorType::rank);
    let x = types.first().cloned().flatten();
    let plain = |op| Ok(Built::Op(op, None));
    if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == name) {
        return plain(Op::Unary(u));
    }
    if let Some(b) = BinaryOp::ALL.into_iter().find(|b| b.name() == name) {
        return plain(Op::Binary(b));
    }
    if let Some(c) = CompareOp::ALL.into_iter().find(|c| c.name() == name) {
        return plain(Op::Compare(c));
    }
    if let Some(r) = ReduceOp::ALL.into_iter().find(|r| r.name() == name) {
        return plain(Op::Reduce { op: r, axes: a.axes("axis", rank)?, keepdims: a.bool("keepdims", false)? });
    }
    match name {
        "select" => plain(Op::Select),
        "matmul" => plain(Op::MatMul),
        "cast" => {
            let dtype =
                a.get("dtype").map(|_| a.dtype("dtype", DType::F32)).transpose()?.ok_or_else(|| a.missing("dtype"))?;
            Ok(Built::Op(Op::Cast, x.map(|t| TensorType::new(dtype, t.shape))))
        }
        "argmax" | "argmin" => {
            let op = if name == "argmax" { ArgReduceOp::ArgMax } else { ArgReduceOp::ArgMin };
            plain(Op::ArgReduce { op, axis: a.axis("axis", None, rank)?, keepdims: a.bool("keepdims", false)? })
        }
        "reshape" => reshape(a, x),
        "permute" => {
            let perm = a.ints("perm")?.ok_or_else(|| a.missing("perm"))?;
            let perm = perm.iter().map(|&p| normalize_axis(p, rank).unwrap_or(usize::MAX)).collect();
            plain(Op::Permute { perm })
        }
        "transpose" => {
            if rank < 2 {
                let msg = format!("`transpose` swaps the last two axes and needs rank at least 2, found rank {rank}");
                return Err(Diagnostic::at(msg, a.call, "rank too low"));
            }
            let mut perm: Vec<usize> = (0..rank).collect();
            perm.swap(rank - 2, rank - 1);
            plain(Op::Permute { perm })
        }
        "broadcast" => {
            let shape = a.shape("shape", false)?.into_iter().flatten().collect();
            Ok(Built::Op(Op::Broadcast, x.map(|t| TensorType::new(t.dtype, shape))))
        }
        "slice" => slice(a, x.as_ref(), rank),
        "concat" => plain(Op::Concat { axis: a.axis("axis", None, rank)? }),
        "pad" => {
            let zeros = vec![0; rank];
            let list = |k| -> R<Vec<u64>> {
                let v = a.ints(k)?.map_or(Ok(zeros.clone()), |v| v.into_iter().map(u64::try_from).collect());
                v.map_err(|_| a.bad(k, a.span(k), "a list of non-negative integers"))
            };
            plain(Op::Pad { low: list("low")?, high: list("high")?, value: a.float("value", 0.0)? })
        }
        "gather" => plain(Op::Gather { axis: a.axis("axis", Some(0), rank)? }),
        "conv2d" => plain(Op::Conv2d {
            stride: a.uints("stride", [1, 1])?,
            padding: a.padding()?,
            dilation: a.uints("dilation", [1, 1])?,
            groups: a.uint("groups", Some(1))?,
        }),
        "max_pool2d" | "avg_pool2d" => {
            let kernel = a.uints("kernel", [0, 0])?;
            if a.get("kernel").is_none() {
                return Err(a.missing("kernel"));
            }
            let kind = if name == "max_pool2d" { PoolKind::Max } else { PoolKind::Avg };
            plain(Op::Pool2d {
                kind,
                kernel,
                stride: a.uints("stride", kernel)?,
                padding: a.padding()?,
                count_include_pad: a.bool("count_include_pad", false)?,
            })
        }
        "full" => {
            let shape = a.shape("shape", false)?.into_iter().flatten().collect();
            let value = match a.get("value") {
                Some((Attr::Float(v), _)) => Value::Float(*v),
                Some((Attr::Int(v), _)) => Value::Int(*v),
                Some((Attr::Bool(v), _)) => Value::Bool(*v),
                Some((_, s)) => return Err(a.bad("value", *s, "a number or bool")),
                None => return Err(a.missing("value")),
            };
            Ok(Built::Full { value, ty: TensorType::new(a.dtype("dtype", DType::F32)?, shape) })
        }
        "iota" => {
            let shape: Shape = a.shape("shape", false)?.into_iter().flatten().collect();
            let axis = a.axis("axis", None, shape.len())?;
            Ok(Built::Op(Op::Iota { axis }, Some(TensorType::new(a.dtype("dtype", DType::I64)?, shape))))
        }
        "softmax" => plain(Op::Softmax { axis: a.axis("axis", Some(-1), rank)? }),
        "log_softmax" => plain(Op::LogSoftmax { axis: a.axis("axis", Some(-1), rank)? }),
        "layer_norm" => plain(Op::LayerNorm { axis: a.axis("axis", Some(-1), rank)?, eps: a.float("eps", 1e-5)? }),
        "rms_norm" => plain(Op::RmsNorm { axis: a.axis("axis", Some(-1), rank)?, eps: a.float("eps", 1e-6)? }),
        "gelu" => {
            let approx = match a.get("approximate") {
                None => GeluApprox::None,
                Some((Attr::Str(s), _)) if s == "none" => GeluApprox::None,
                Some((Attr::Str(s), _)) if s == "tanh" => GeluApprox::Tanh,
                Some((_, span)) => return Err(a.bad("approximate", *span, "\"none\" or \"tanh\"")),
            };
            plain(Op::Gelu { approx })
        }
        "silu" => plain(Op::Silu),
        "linear" => plain(Op::Linear),
        "attention" => attention(l, a, x),
        _ => Err(Diagnostic::at(format!("unknown op `{name}`"), a.call, "not an op")),
    }
}

fn reshape(a: &Attrs, x: Option<TensorType>) -> R<Built> {
    let target = a.shape("shape", true)?;
    let Some(x) = x else { return Ok(Built::Op(Op::Reshape, None)) };
    let known = numel(&target.iter().flatten().cloned().collect::<Vec<_>>());
    let total = numel(&x.shape);
    let mut shape = Vec::new();
    for d in target {
        match d {
            Some(d) => shape.push(d),
            None => match total.div(&known) {
                Some(q) => shape.push(q),
                None => {
                    let msg =
                        "`reshape`: the -1 dim cannot be inferred: the other dims do not divide the element count";
                    return Err(Diagnostic::at(msg, a.span("shape"), "here"));
                }
            },
        }
    }
    Ok(Built::Op(Op::Reshape, Some(TensorType::new(x.dtype, shape))))
}

fn slice(a: &Attrs, x: Option<&TensorType>, rank: usize) -> R<Built> {
    let axis = a.axis("axis", None, rank)?;
    let step = a.int("step", Some(1))?;
    if step <= 0 {
        return Err(a.bad("step", a.span("step"), "a positive integer"));
    }
    let n = x.and_then(|t| t.shape[axis].as_known()).map_or(i64::MAX, |n| n as i64);
    // Python-style: negative positions count from the end, then clamp to 0..=n.
    let position = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) } as u64;
    let start = position(a.int("start", None)?);
    let end = position(a.int("end", None)?);
    Ok(Built::Op(Op::Slice { axis, start, end, step: step as u64 }, None))
}

fn attention(l: &Lowerer<'_>, a: &Attrs, q: Option<TensorType>) -> R<Built> {
    let causal = a.bool("causal", false)?;
    let head_dim = q.as_ref().and_then(|t| t.shape.last()).cloned();
    let scale = match (a.get("scale"), head_dim.as_ref().and_then(Dim::as_known)) {
        (Some(_), _) => a.float("scale", 1.0)?,
        (None, Some(d)) if d > 0 => 1.0 / (d as f64).sqrt(),
        (None, _) => {
            let shown = head_dim.map_or("?".into(), |d| d.display(&l.graph.symbols).to_string());
            let msg = format!("`attention` needs an explicit `scale`: the head dim {shown} is not static");
            return Err(Diagnostic::at(msg, a.call, "add `scale=...`"));
        }
    };
    Ok(Built::Op(Op::Attention { causal, scale }, None))
}
