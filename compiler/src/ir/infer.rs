//! Shape and dtype inference: the typing rule of every op, shared by the front end (which
//! asks for a node's type) and the verifier (which checks the type a node carries).

use std::fmt;

use super::{ArgReduceOp, BinaryOp, ConstData, DType, Dim, Op, Shape, Symbol, TensorType, UnaryOp};

/// Why an op cannot be applied to its operands. Carries types and values; [`TypeError::display`]
/// writes it with the graph's symbol names.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeError {
    Arity {
        op: &'static str,
        expected: &'static str,
        found: usize,
    },
    DTypeMismatch {
        op: &'static str,
        left: DType,
        right: DType,
    },
    DTypeNotAllowed {
        op: &'static str,
        dtype: DType,
        allowed: &'static str,
    },
    Broadcast {
        left: Shape,
        right: Shape,
        axis: usize,
    },
    RankTooLow {
        op: &'static str,
        operand: usize,
        rank: usize,
        min: usize,
    },
    Rank {
        op: &'static str,
        operand: usize,
        rank: usize,
        expected: usize,
    },
    Axis {
        op: &'static str,
        axis: usize,
        rank: usize,
    },
    DuplicateAxis {
        op: &'static str,
        axis: usize,
    },
    NotPermutation {
        perm: Vec<usize>,
        rank: usize,
    },
    DimMismatch {
        op: &'static str,
        what: &'static str,
        left: Dim,
        right: Dim,
    },
    ReshapeElements {
        from: Shape,
        to: Shape,
    },
    BroadcastTo {
        from: Shape,
        to: Shape,
    },
    SymbolicAxis {
        op: &'static str,
        axis: usize,
        dim: Dim,
    },
    EmptySlice {
        start: u64,
        end: u64,
        step: u64,
    },
    Window {
        op: &'static str,
        what: &'static str,
    },
    ConstLength {
        expected: u64,
        found: usize,
    },
    ConstKind {
        dtype: DType,
    },
    /// A static dim of 0: tensors have at least one element along every axis.
    ZeroDim {
        shape: Shape,
    },
    /// More elements than any tensor may hold ([`MAX_ELEMENTS`]).
    TooLarge {
        shape: Shape,
    },
    /// The op's result type must be given (reshape, broadcast, cast, iota, input, param, const).
    NeedsResultType {
        op: &'static str,
    },
    /// The type a node carries differs from the one its operands imply.
    ResultMismatch {
        expected: TensorType,
        found: TensorType,
    },
}

impl TypeError {
    /// The message, with dims written by their symbol names.
    pub fn display<'a>(&'a self, symbols: &'a [Symbol]) -> impl fmt::Display + 'a {
        TypeErrorDisplay { err: self, symbols }
    }
}

struct TypeErrorDisplay<'a> {
    err: &'a TypeError,
    symbols: &'a [Symbol],
}

impl fmt::Display for TypeErrorDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.symbols;
        let shape = |sh: &Shape| {
            let dims: Vec<String> = sh.iter().map(|d| d.display(s).to_string()).collect();
            format!("[{}]", dims.join(", "))
        };
        match self.err {
            TypeError::Arity { op, expected, found } => {
                write!(f, "`{op}` takes {expected} tensor operand(s), found {found}")
            }
            TypeError::DTypeMismatch { op, left, right } => write!(
                f,
                "`{op}` needs operands of one dtype, found {left} and {right} (there is no implicit conversion; use cast)"
            ),
            TypeError::DTypeNotAllowed { op, dtype, allowed } => {
                write!(f, "`{op}` is not defined on {dtype} (it takes {allowed})")
            }
            TypeError::Broadcast { left, right, axis } => write!(
                f,
                "shapes {} and {} do not broadcast: they differ at axis {axis} from the end and neither is 1",
                shape(left),
                shape(right)
            ),
            TypeError::RankTooLow { op, operand, rank, min } => {
                write!(f, "`{op}` needs operand {operand} of rank at least {min}, found rank {rank}")
            }
            TypeError::Rank { op, operand, rank, expected } => {
                write!(f, "`{op}` needs operand {operand} of rank {expected}, found rank {rank}")
            }
            TypeError::Axis { op, axis, rank } => write!(f, "`{op}`: axis {axis} is out of range for rank {rank}"),
            TypeError::DuplicateAxis { op, axis } => write!(f, "`{op}`: axis {axis} is listed twice"),
            TypeError::NotPermutation { perm, rank } => {
                write!(f, "`permute`: {perm:?} is not a permutation of 0..{rank}")
            }
            TypeError::DimMismatch { op, what, left, right } => {
                write!(f, "`{op}`: {what} must agree, found {} and {}", left.display(s), right.display(s))
            }
            TypeError::ReshapeElements { from, to } => write!(
                f,
                "`reshape` from {} to {} changes the number of elements",
                shape(from),
                shape(to)
            ),
            TypeError::BroadcastTo { from, to } => {
                write!(f, "`broadcast`: {} cannot broadcast to {}", shape(from), shape(to))
            }
            TypeError::SymbolicAxis { op, axis, dim } => write!(
                f,
                "`{op}` along axis {axis} needs a static dim, found symbolic {}",
                dim.display(s)
            ),
            TypeError::EmptySlice { start, end, step } => {
                write!(f, "`slice` {start}..{end} step {step} selects no element")
            }
            TypeError::Window { op, what } => write!(f, "`{op}`: {what}"),
            TypeError::ConstLength { expected, found } => {
                write!(f, "constant has {found} element(s) but its type holds {expected}")
            }
            TypeError::ConstKind { dtype } => write!(f, "constant values do not match dtype {dtype}"),
            TypeError::ZeroDim { shape: sh } => write!(f, "shape {} has a dim of 0; every dim is at least 1", shape(sh)),
            TypeError::TooLarge { shape: sh } => {
                write!(f, "shape {} holds more than 2^40 elements, more than any tensor may", shape(sh))
            }
            TypeError::NeedsResultType { op } => write!(f, "`{op}` needs its result type"),
            TypeError::ResultMismatch { expected, found } => write!(
                f,
                "node carries type {} but its operands give {}",
                found.display(s),
                expected.display(s)
            ),
        }
    }
}

type Result<T> = std::result::Result<T, TypeError>;

/// The result type of `op` applied to `operands`.
///
/// Ops whose result is not implied by their operands (input, param, const, iota, cast,
/// reshape, broadcast) take it from `given` and check it; for the others `given` is checked
/// against the inferred type when present.
pub fn result_type(op: &Op, operands: &[&TensorType], given: Option<&TensorType>) -> Result<TensorType> {
    let inferred = infer(op, operands, given)?;
    check_size(&inferred)?;
    match given {
        Some(g) if *g != inferred => Err(TypeError::ResultMismatch { expected: inferred, found: g.clone() }),
        _ => Ok(inferred),
    }
}

fn infer(op: &Op, t: &[&TensorType], given: Option<&TensorType>) -> Result<TensorType> {
    let name = op.name();
    let need = |op| given.cloned().ok_or(TypeError::NeedsResultType { op });
    match op {
        Op::Input { .. } | Op::Param { .. } => {
            arity(name, t, 0, 0)?;
            need(name)
        }
        Op::Constant { data } => {
            arity(name, t, 0, 0)?;
            let ty = need(name)?;
            check_const(data, &ty)?;
            Ok(ty)
        }
        Op::Iota { axis } => {
            arity(name, t, 0, 0)?;
            let ty = need(name)?;
            check_axis(name, *axis, ty.rank())?;
            numeric(name, ty.dtype)?;
            Ok(ty)
        }
        Op::Unary(u) => {
            arity(name, t, 1, 1)?;
            unary_dtype(*u, t[0].dtype)?;
            Ok(t[0].clone())
        }
        Op::Binary(b) => {
            arity(name, t, 2, 2)?;
            let dtype = same_dtype(name, t[0], t[1])?;
            binary_dtype(*b, dtype)?;
            Ok(TensorType::new(dtype, broadcast_shapes(&t[0].shape, &t[1].shape)?))
        }
        Op::Compare(_) => {
            arity(name, t, 2, 2)?;
            same_dtype(name, t[0], t[1])?;
            Ok(TensorType::new(DType::Bool, broadcast_shapes(&t[0].shape, &t[1].shape)?))
        }
        Op::Select => {
            arity(name, t, 3, 3)?;
            if t[0].dtype != DType::Bool {
                return Err(TypeError::DTypeNotAllowed { op: name, dtype: t[0].dtype, allowed: "a bool condition" });
            }
            let dtype = same_dtype(name, t[1], t[2])?;
            let shape = broadcast_shapes(&broadcast_shapes(&t[0].shape, &t[1].shape)?, &t[2].shape)?;
            Ok(TensorType::new(dtype, shape))
        }
        Op::Cast => {
            arity(name, t, 1, 1)?;
            let ty = need(name)?;
            same_shape(name, "shapes of operand and result", &t[0].shape, &ty.shape)?;
            Ok(ty)
        }
        Op::Reduce { axes, keepdims, .. } => {
            arity(name, t, 1, 1)?;
            numeric(name, t[0].dtype)?;
            Ok(TensorType::new(t[0].dtype, reduce_shape(name, &t[0].shape, axes, *keepdims)?))
        }
        Op::ArgReduce { op: a, axis, keepdims } => {
            arity(name, t, 1, 1)?;
            let name = match a {
                ArgReduceOp::ArgMax => "argmax",
                ArgReduceOp::ArgMin => "argmin",
            };
            numeric(name, t[0].dtype)?;
            Ok(TensorType::new(DType::I64, reduce_shape(name, &t[0].shape, &[*axis], *keepdims)?))
        }
        Op::MatMul => {
            arity(name, t, 2, 2)?;
            let dtype = same_dtype(name, t[0], t[1])?;
            numeric(name, dtype)?;
            Ok(TensorType::new(dtype, matmul_shape(&t[0].shape, &t[1].shape)?))
        }
        Op::Reshape => {
            arity(name, t, 1, 1)?;
            let ty = need(name)?;
            same_dtype(name, t[0], &ty)?;
            if numel(&t[0].shape) != numel(&ty.shape) {
                return Err(TypeError::ReshapeElements { from: t[0].shape.clone(), to: ty.shape.clone() });
            }
            Ok(ty)
        }
        Op::Permute { perm } => {
            arity(name, t, 1, 1)?;
            let mut sorted = perm.clone();
            sorted.sort();
            if sorted != (0..t[0].rank()).collect::<Vec<_>>() {
                return Err(TypeError::NotPermutation { perm: perm.clone(), rank: t[0].rank() });
            }
            Ok(TensorType::new(t[0].dtype, perm.iter().map(|&p| t[0].shape[p].clone()).collect()))
        }
        Op::Broadcast => {
            arity(name, t, 1, 1)?;
            let ty = need(name)?;
            same_dtype(name, t[0], &ty)?;
            match broadcast_shapes(&t[0].shape, &ty.shape) {
                Ok(s) if s == ty.shape => Ok(ty),
                _ => Err(TypeError::BroadcastTo { from: t[0].shape.clone(), to: ty.shape.clone() }),
            }
        }
        Op::Slice { axis, start, end, step } => {
            arity(name, t, 1, 1)?;
            let n = static_axis(name, t[0], *axis)?;
            let len = slice_len(n, *start, *end, *step)?;
            let mut shape = t[0].shape.clone();
            shape[*axis] = Dim::known(len);
            Ok(TensorType::new(t[0].dtype, shape))
        }
        Op::Concat { axis } => concat_type(t, *axis),
        Op::Pad { low, high, .. } => {
            arity(name, t, 1, 1)?;
            pad_type(t[0], low, high)
        }
        Op::Gather { axis } => {
            arity(name, t, 2, 2)?;
            check_axis(name, *axis, t[0].rank())?;
            if !t[1].dtype.is_int() {
                return Err(TypeError::DTypeNotAllowed { op: name, dtype: t[1].dtype, allowed: "i32 or i64 indices" });
            }
            let s = &t[0].shape;
            let shape = s[..*axis].iter().chain(&t[1].shape).chain(&s[axis + 1..]).cloned().collect();
            Ok(TensorType::new(t[0].dtype, shape))
        }
        Op::Conv2d { stride, padding, dilation, groups } => conv2d_type(t, *stride, *padding, *dilation, *groups),
        Op::Pool2d { kernel, stride, padding, .. } => {
            arity(name, t, 1, 1)?;
            rank_is(name, 0, t[0], 4)?;
            float(name, t[0].dtype)?;
            let (h, w) = window_out(name, t[0], *kernel, *stride, *padding, [1, 1])?;
            Ok(TensorType::new(t[0].dtype, vec![t[0].shape[0].clone(), t[0].shape[1].clone(), h, w]))
        }
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            arity(name, t, 1, 1)?;
            float(name, t[0].dtype)?;
            check_axis(name, *axis, t[0].rank())?;
            Ok(t[0].clone())
        }
        Op::LayerNorm { axis, .. } | Op::RmsNorm { axis, .. } => {
            let operands = if matches!(op, Op::LayerNorm { .. }) { 3 } else { 2 };
            arity(name, t, operands, operands)?;
            float(name, t[0].dtype)?;
            check_axis(name, *axis, t[0].rank())?;
            for (i, p) in t.iter().enumerate().skip(1) {
                same_dtype(name, t[0], p)?;
                same_shape(name, "normalised axes and scale/shift shape", &t[0].shape[*axis..], &p.shape).map_err(
                    |e| if p.rank() != t[0].rank() - axis { rank_err(name, i, p, t[0].rank() - axis) } else { e },
                )?;
            }
            Ok(t[0].clone())
        }
        Op::Gelu { .. } | Op::Silu => {
            arity(name, t, 1, 1)?;
            float(name, t[0].dtype)?;
            Ok(t[0].clone())
        }
        Op::Linear => linear_type(t),
        Op::Attention { .. } => attention_type(t),
    }
}

/// The most elements a tensor may hold, counting each symbol as 1: far beyond any memory,
/// and small enough that sizes in bytes cannot overflow.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// Every static dim is at least 1, and the element count is at most [`MAX_ELEMENTS`].
pub fn check_size(t: &TensorType) -> Result<()> {
    if t.shape.iter().any(|d| d.coeff == 0) {
        return Err(TypeError::ZeroDim { shape: t.shape.clone() });
    }
    if numel(&t.shape).coeff > MAX_ELEMENTS {
        return Err(TypeError::TooLarge { shape: t.shape.clone() });
    }
    Ok(())
}

fn rank_err(op: &'static str, operand: usize, t: &TensorType, expected: usize) -> TypeError {
    TypeError::Rank { op, operand, rank: t.rank(), expected }
}

fn arity(op: &'static str, t: &[&TensorType], min: usize, max: usize) -> Result<()> {
    if (min..=max).contains(&t.len()) {
        return Ok(());
    }
    let expected = match (min, max) {
        (0, 0) => "no",
        (1, 1) => "1",
        (2, 2) => "2",
        (3, 3) => "3",
        (2, 3) => "2 or 3",
        (3, 4) => "3 or 4",
        _ => "at least 1",
    };
    Err(TypeError::Arity { op, expected, found: t.len() })
}

fn same_dtype(op: &'static str, a: &TensorType, b: &TensorType) -> Result<DType> {
    if a.dtype == b.dtype {
        Ok(a.dtype)
    } else {
        Err(TypeError::DTypeMismatch { op, left: a.dtype, right: b.dtype })
    }
}

fn numeric(op: &'static str, dtype: DType) -> Result<()> {
    if dtype == DType::Bool {
        return Err(TypeError::DTypeNotAllowed { op, dtype, allowed: "numbers" });
    }
    Ok(())
}

fn float(op: &'static str, dtype: DType) -> Result<()> {
    if !dtype.is_float() {
        return Err(TypeError::DTypeNotAllowed { op, dtype, allowed: "f32, f16 or bf16" });
    }
    Ok(())
}

fn unary_dtype(u: UnaryOp, dtype: DType) -> Result<()> {
    match u {
        UnaryOp::Not if dtype.is_float() => {
            Err(TypeError::DTypeNotAllowed { op: u.name(), dtype, allowed: "bool or integers" })
        }
        UnaryOp::Not => Ok(()),
        _ if u.float_only() => float(u.name(), dtype),
        _ => numeric(u.name(), dtype),
    }
}

fn binary_dtype(b: BinaryOp, dtype: DType) -> Result<()> {
    if b.is_logical() && dtype.is_float() {
        return Err(TypeError::DTypeNotAllowed { op: b.name(), dtype, allowed: "bool or integers" });
    }
    if !b.is_logical() {
        numeric(b.name(), dtype)?;
    }
    Ok(())
}

fn check_axis(op: &'static str, axis: usize, rank: usize) -> Result<()> {
    if axis < rank {
        Ok(())
    } else {
        Err(TypeError::Axis { op, axis, rank })
    }
}

fn rank_is(op: &'static str, operand: usize, t: &TensorType, rank: usize) -> Result<()> {
    if t.rank() == rank {
        Ok(())
    } else {
        Err(rank_err(op, operand, t, rank))
    }
}

fn same_dim(op: &'static str, what: &'static str, a: &Dim, b: &Dim) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(TypeError::DimMismatch { op, what, left: a.clone(), right: b.clone() })
    }
}

fn same_shape(op: &'static str, what: &'static str, a: &[Dim], b: &[Dim]) -> Result<()> {
    if a.len() != b.len() {
        return Err(TypeError::DimMismatch {
            op,
            what,
            left: Dim::known(a.len() as u64),
            right: Dim::known(b.len() as u64),
        });
    }
    a.iter().zip(b).try_for_each(|(x, y)| same_dim(op, what, x, y))
}

/// The number of elements of a shape, as a monomial.
pub fn numel(shape: &[Dim]) -> Dim {
    shape.iter().fold(Dim::known(1), |acc, d| acc.mul(d))
}

/// NumPy broadcasting: align trailing axes; equal dims stay, a dim of 1 stretches.
pub fn broadcast_shapes(a: &[Dim], b: &[Dim]) -> Result<Shape> {
    let rank = a.len().max(b.len());
    let at = |s: &[Dim], i: usize| if i < s.len() { s[s.len() - 1 - i].clone() } else { Dim::known(1) };
    let mut out: Vec<Dim> = (0..rank)
        .map(|i| {
            let (x, y) = (at(a, i), at(b, i));
            match (x.is_one(), y.is_one()) {
                _ if x == y => Ok(x),
                (true, _) => Ok(y),
                (_, true) => Ok(x),
                _ => Err(TypeError::Broadcast { left: a.to_vec(), right: b.to_vec(), axis: i }),
            }
        })
        .collect::<Result<_>>()?;
    out.reverse();
    Ok(out)
}

fn reduce_shape(op: &'static str, shape: &[Dim], axes: &[usize], keepdims: bool) -> Result<Shape> {
    if axes.is_empty() {
        return Err(TypeError::Window { op, what: "there is no axis to reduce (a scalar, or an empty axis list)" });
    }
    for (i, &a) in axes.iter().enumerate() {
        check_axis(op, a, shape.len())?;
        if axes[..i].contains(&a) {
            return Err(TypeError::DuplicateAxis { op, axis: a });
        }
    }
    Ok(shape
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::known(1)),
            (true, false) => None,
        })
        .collect())
}

fn matmul_shape(a: &[Dim], b: &[Dim]) -> Result<Shape> {
    for (i, s) in [a, b].into_iter().enumerate() {
        if s.len() < 2 {
            return Err(TypeError::RankTooLow { op: "matmul", operand: i, rank: s.len(), min: 2 });
        }
    }
    let (m, k1) = (&a[a.len() - 2], &a[a.len() - 1]);
    let (k2, n) = (&b[b.len() - 2], &b[b.len() - 1]);
    same_dim("matmul", "contracted dims (last of lhs, second-to-last of rhs)", k1, k2)?;
    let mut shape = broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2])?;
    shape.push(m.clone());
    shape.push(n.clone());
    Ok(shape)
}

fn static_axis(op: &'static str, t: &TensorType, axis: usize) -> Result<u64> {
    check_axis(op, axis, t.rank())?;
    let d = &t.shape[axis];
    d.as_known().ok_or_else(|| TypeError::SymbolicAxis { op, axis, dim: d.clone() })
}

/// Elements `start, start+step, ...` below `min(end, n)`.
pub fn slice_len(n: u64, start: u64, end: u64, step: u64) -> Result<u64> {
    let end = end.min(n);
    if step == 0 || start >= end {
        return Err(TypeError::EmptySlice { start, end, step });
    }
    Ok((end - start).div_ceil(step))
}

fn concat_type(t: &[&TensorType], axis: usize) -> Result<TensorType> {
    if t.is_empty() {
        return Err(TypeError::Arity { op: "concat", expected: "at least 1", found: 0 });
    }
    let first = t[0];
    let mut total = static_axis("concat", first, axis)?;
    for (i, x) in t.iter().enumerate().skip(1) {
        same_dtype("concat", first, x)?;
        rank_is("concat", i, x, first.rank())?;
        for (j, (a, b)) in first.shape.iter().zip(&x.shape).enumerate() {
            if j != axis {
                same_dim("concat", "dims off the concatenation axis", a, b)?;
            }
        }
        total = total.saturating_add(static_axis("concat", x, axis)?);
    }
    let mut shape = first.shape.clone();
    shape[axis] = Dim::known(total);
    Ok(TensorType::new(first.dtype, shape))
}

fn pad_type(x: &TensorType, low: &[u64], high: &[u64]) -> Result<TensorType> {
    for list in [low, high] {
        if list.len() != x.rank() {
            return Err(TypeError::Window { op: "pad", what: "`low` and `high` need one entry per axis" });
        }
    }
    let shape = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, d)| match low[i].saturating_add(high[i]) {
            0 => Ok(d.clone()),
            extra => static_axis("pad", x, i).map(|n| Dim::known(n.saturating_add(extra))),
        })
        .collect::<Result<_>>()?;
    Ok(TensorType::new(x.dtype, shape))
}

/// Output height and width of a sliding window over an NCHW tensor.
fn window_out(
    op: &'static str,
    x: &TensorType,
    kernel: [u64; 2],
    stride: [u64; 2],
    padding: [u64; 4],
    dilation: [u64; 2],
) -> Result<(Dim, Dim)> {
    if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
        return Err(TypeError::Window { op, what: "kernel, stride and dilation must be positive" });
    }
    let out = |axis: usize| -> Result<Dim> {
        let n = static_axis(op, x, axis + 2)?;
        let i = axis;
        let padded = n.saturating_add(padding[i]).saturating_add(padding[i + 2]);
        let span = dilation[i].saturating_mul(kernel[i] - 1).saturating_add(1);
        if span > padded {
            return Err(TypeError::Window { op, what: "the window is larger than the padded input" });
        }
        Ok(Dim::known((padded - span) / stride[i] + 1))
    };
    Ok((out(0)?, out(1)?))
}

fn conv2d_type(
    t: &[&TensorType],
    stride: [u64; 2],
    padding: [u64; 4],
    dilation: [u64; 2],
    groups: u64,
) -> Result<TensorType> {
    let op = "conv2d";
    arity(op, t, 2, 3)?;
    let (x, w) = (t[0], t[1]);
    float(op, x.dtype)?;
    same_dtype(op, x, w)?;
    rank_is(op, 0, x, 4)?;
    rank_is(op, 1, w, 4)?;
    let channels = static_axis(op, x, 1)?;
    let out_channels = static_axis(op, w, 0)?;
    if groups == 0 || channels % groups != 0 || out_channels % groups != 0 {
        return Err(TypeError::Window { op, what: "groups must divide both input and output channels" });
    }
    same_dim(op, "weight in-channels and input channels / groups", &w.shape[1], &Dim::known(channels / groups))?;
    if let Some(b) = t.get(2) {
        same_dtype(op, x, b)?;
        rank_is(op, 2, b, 1)?;
        same_dim(op, "bias length and output channels", &b.shape[0], &w.shape[0])?;
    }
    let kernel = [static_axis(op, w, 2)?, static_axis(op, w, 3)?];
    let (h, wd) = window_out(op, x, kernel, stride, padding, dilation)?;
    Ok(TensorType::new(x.dtype, vec![x.shape[0].clone(), w.shape[0].clone(), h, wd]))
}

fn linear_type(t: &[&TensorType]) -> Result<TensorType> {
    let op = "linear";
    arity(op, t, 2, 3)?;
    let (x, w) = (t[0], t[1]);
    float(op, x.dtype)?;
    same_dtype(op, x, w)?;
    if x.rank() < 1 {
        return Err(TypeError::RankTooLow { op, operand: 0, rank: 0, min: 1 });
    }
    rank_is(op, 1, w, 2)?;
    same_dim(op, "input features (last dim of x, dim 1 of w)", &x.shape[x.rank() - 1], &w.shape[1])?;
    if let Some(b) = t.get(2) {
        same_dtype(op, x, b)?;
        rank_is(op, 2, b, 1)?;
        same_dim(op, "bias length and output features", &b.shape[0], &w.shape[0])?;
    }
    let mut shape = x.shape[..x.rank() - 1].to_vec();
    shape.push(w.shape[0].clone());
    Ok(TensorType::new(x.dtype, shape))
}

fn attention_type(t: &[&TensorType]) -> Result<TensorType> {
    let op = "attention";
    arity(op, t, 3, 4)?;
    let (q, k, v) = (t[0], t[1], t[2]);
    float(op, q.dtype)?;
    same_dtype(op, q, k)?;
    same_dtype(op, q, v)?;
    for (i, x) in [q, k, v].into_iter().enumerate() {
        if x.rank() < 2 {
            return Err(TypeError::RankTooLow { op, operand: i, rank: x.rank(), min: 2 });
        }
    }
    let last = |x: &TensorType, from_end: usize| x.shape[x.rank() - from_end].clone();
    same_dim(op, "head dims of q and k", &last(q, 1), &last(k, 1))?;
    same_dim(op, "key lengths of k and v", &last(k, 2), &last(v, 2))?;
    let scores = matmul_shape(&q.shape, &[&k.shape[..k.rank() - 2], &[last(k, 1), last(k, 2)]].concat())?;
    if let Some(mask) = t.get(3) {
        if mask.dtype != DType::Bool {
            same_dtype(op, q, mask)?;
        }
        if broadcast_shapes(&scores, &mask.shape)? != scores {
            return Err(TypeError::BroadcastTo { from: mask.shape.clone(), to: scores });
        }
    }
    Ok(TensorType::new(q.dtype, matmul_shape(&scores, &v.shape)?))
}

fn check_const(data: &ConstData, ty: &TensorType) -> Result<()> {
    let len = match (data, ty.dtype) {
        (ConstData::Float(v), d) if d.is_float() => v.len(),
        (ConstData::Int(v), d) if d.is_int() => v.len(),
        (ConstData::Bool(v), DType::Bool) => v.len(),
        _ => return Err(TypeError::ConstKind { dtype: ty.dtype }),
    };
    let expected = numel(&ty.shape);
    match expected.as_known() {
        Some(n) if n == len as u64 => Ok(()),
        _ => Err(TypeError::ConstLength { expected: expected.coeff, found: len }),
    }
}
