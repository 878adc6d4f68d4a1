//! The closed set of operations. Every `match` over [`Op`] lists every variant, so a new op
//! cannot slip past the verifier, the printer or the interpreter.
//!
//! Operand order and attribute meaning follow `ir-spec/ops.md`. Attributes that the result
//! type already determines (the target shape of `reshape` and `broadcast`, the shape of `iota`)
//! are not stored twice: they are read from the node's [`TensorType`](super::TensorType).

/// Elementwise functions of one operand; the result has the operand's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Sigmoid,
    Relu,
    Erf,
    Sin,
    Cos,
    Atan,
    Floor,
    Ceil,
    Round,
    Sign,
    Reciprocal,
    /// Logical not on bool, bitwise not on integers.
    Not,
}

/// Elementwise functions of two operands of one dtype, with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Maximum,
    Minimum,
    And,
    Or,
    Xor,
}

/// Elementwise comparisons; the result is `bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Reductions over a set of axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

/// Index-of-extremum reductions over one axis; the result is `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgReduceOp {
    ArgMax,
    ArgMin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Avg,
}

/// The two forms of GELU: exact (with erf) and the tanh approximation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeluApprox {
    None,
    Tanh,
}

/// A constant tensor's elements, row-major. Floats are kept as f64 and rounded to the
/// node's dtype when used; integers as i64.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstData {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

/// An operation. Operands are the node's incoming edges, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input, bound by the caller. No operands.
    Input { name: String },
    /// A named weight, bound from a weights file. No operands.
    Param { name: String },
    /// A literal tensor of the node's type (a scalar is rank 0). No operands.
    Constant { data: ConstData },
    /// `out[i...] = i_axis` for the node's shape and dtype. No operands.
    Iota { axis: usize },

    /// `(x)`.
    Unary(UnaryOp),
    /// `(a, b)`, broadcast.
    Binary(BinaryOp),
    /// `(a, b)`, broadcast; result bool.
    Compare(CompareOp),
    /// `(cond, a, b)`, broadcast: `cond ? a : b`.
    Select,
    /// `(x)`: convert to the node's dtype.
    Cast,

    /// `(x)`: reduce `axes` (sorted, unique, non-empty); keep them as size-1 when `keepdims`.
    Reduce { op: ReduceOp, axes: Vec<usize>, keepdims: bool },
    /// `(x)`: index of the first extremum along `axis`.
    ArgReduce { op: ArgReduceOp, axis: usize, keepdims: bool },
    /// `(a, b)`: `[..., M, K] @ [..., K, N] -> [..., M, N]`, batch dims broadcast.
    MatMul,

    /// `(x)`: same elements, the node's shape.
    Reshape,
    /// `(x)`: `out.shape[i] = x.shape[perm[i]]`.
    Permute { perm: Vec<usize> },
    /// `(x)`: NumPy broadcast to the node's shape.
    Broadcast,
    /// `(x)`: elements `start, start+step, ... < end` along `axis` (static axis, step > 0).
    Slice { axis: usize, start: u64, end: u64, step: u64 },
    /// `(x0, x1, ...)`: joined along `axis`.
    Concat { axis: usize },
    /// `(x)`: `low[i]`/`high[i]` elements of `value` added before/after axis `i`.
    Pad { low: Vec<u64>, high: Vec<u64>, value: f64 },
    /// `(x, indices)`: `numpy.take(x, indices, axis)`; negative indices count from the end.
    Gather { axis: usize },

    /// `(x, w)` or `(x, w, bias)`: NCHW input, OIHW weight (I = C / groups).
    /// `padding` is `[top, left, bottom, right]`.
    Conv2d { stride: [u64; 2], padding: [u64; 4], dilation: [u64; 2], groups: u64 },
    /// `(x)`: NCHW pooling. `padding` is `[top, left, bottom, right]`; average pooling
    /// divides by the number of in-bounds elements unless `count_include_pad`.
    Pool2d { kind: PoolKind, kernel: [u64; 2], stride: [u64; 2], padding: [u64; 4], count_include_pad: bool },

    // Composites: defined by their decomposition in `ir-spec/ops.md`; the interpreter
    // evaluates them directly so the decomposition pass can be checked against it.
    /// `(x)`: `exp(x - max) / sum(exp(x - max))` along `axis`.
    Softmax { axis: usize },
    /// `(x)`: `x - max - log(sum(exp(x - max)))` along `axis`.
    LogSoftmax { axis: usize },
    /// `(x, gamma, beta)`: normalise over axes `axis..rank`.
    LayerNorm { axis: usize, eps: f64 },
    /// `(x, gamma)`: `x / sqrt(mean(x^2) + eps) * gamma` over axes `axis..rank`.
    RmsNorm { axis: usize, eps: f64 },
    /// `(x)`.
    Gelu { approx: GeluApprox },
    /// `(x)`: `x * sigmoid(x)`.
    Silu,
    /// `(x, w)` or `(x, w, b)`: `x @ transpose(w) + b`, `w` is `[out, in]`.
    Linear,
    /// `(q, k, v)` or `(q, k, v, mask)`: `softmax(q @ kᵀ * scale + mask) @ v`; `causal`
    /// masks keys after the query position. A bool mask keeps `true`; a float mask is added.
    Attention { causal: bool, scale: f64 },
}

impl Op {
    /// The spelling in source and in the printed IR.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Constant { .. } => "const",
            Op::Iota { .. } => "iota",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Compare(c) => c.name(),
            Op::Select => "select",
            Op::Cast => "cast",
            Op::Reduce { op, .. } => op.name(),
            Op::ArgReduce { op, .. } => match op {
                ArgReduceOp::ArgMax => "argmax",
                ArgReduceOp::ArgMin => "argmin",
            },
            Op::MatMul => "matmul",
            Op::Reshape => "reshape",
            Op::Permute { .. } => "permute",
            Op::Broadcast => "broadcast",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::Pad { .. } => "pad",
            Op::Gather { .. } => "gather",
            Op::Conv2d { .. } => "conv2d",
            Op::Pool2d { kind, .. } => match kind {
                PoolKind::Max => "max_pool2d",
                PoolKind::Avg => "avg_pool2d",
            },
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Gelu { .. } => "gelu",
            Op::Silu => "silu",
            Op::Linear => "linear",
            Op::Attention { .. } => "attention",
        }
    }

    /// True for ops a later pass rewrites into core ops.
    pub fn is_composite(&self) -> bool {
        self.class() == OpClass::Composite
    }

    /// What the op means to fusion, memory planning and lowering. The one place that sorts
    /// ops into families: every later stage asks this instead of listing ops again.
    pub fn class(&self) -> OpClass {
        match self {
            Op::Input { .. } | Op::Param { .. } => OpClass::Leaf,
            Op::Constant { .. } | Op::Iota { .. } => OpClass::Constant,
            Op::Reshape | Op::Permute { .. } | Op::Broadcast | Op::Slice { .. } => OpClass::View,
            Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast => OpClass::Elementwise,
            Op::Reduce { axes, .. } => OpClass::Reduction { axes: axes.clone() },
            Op::ArgReduce { axis, .. } => OpClass::Reduction { axes: vec![*axis] },
            Op::MatMul | Op::Conv2d { .. } => OpClass::Contraction,
            Op::Concat { .. } | Op::Pad { .. } | Op::Gather { .. } | Op::Pool2d { .. } => OpClass::Opaque,
            Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::LayerNorm { .. }
            | Op::RmsNorm { .. }
            | Op::Gelu { .. }
            | Op::Silu
            | Op::Linear
            | Op::Attention { .. } => OpClass::Composite,
        }
    }
}

/// The families of ops, as the back end sees them ([`Op::class`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// Bound from outside the graph: inputs and params.
    Leaf,
    /// Computed from nothing: constants and iota, emitted as immediates where they are read.
    Constant,
    /// The operand's elements at other indices (reshape, permute, broadcast, slice): an index
    /// map on the operand, never a computation of its own.
    View,
    /// Reads every operand at the index it writes, after broadcasting (unary, binary,
    /// compare, select, cast).
    Elementwise,
    /// Folds the operand over `axes` (sum, mean, max, min, prod, argmax, argmin).
    Reduction { axes: Vec<usize> },
    /// Sums products over a contracted dimension (matmul, conv2d).
    Contraction,
    /// Data movement or windows with an index pattern of their own (concat, pad, gather,
    /// pooling).
    Opaque,
    /// Defined by a decomposition into the families above (softmax, layer_norm, linear, ...).
    Composite,
}

impl OpClass {
    /// Views and constants: free to recompute inside every kernel that reads them.
    pub fn is_duplicable(&self) -> bool {
        matches!(self, OpClass::View | OpClass::Constant)
    }
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 19] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Erf,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Atan,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::Sign,
        UnaryOp::Reciprocal,
        UnaryOp::Not,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Erf => "erf",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Atan => "atan",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round => "round",
            UnaryOp::Sign => "sign",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Not => "not",
        }
    }

    /// Ops defined only on floating-point operands.
    pub fn float_only(self) -> bool {
        !matches!(self, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Not | UnaryOp::Relu)
    }
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 11] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
        BinaryOp::Pow,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Rem => "rem",
            BinaryOp::Pow => "pow",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::And => "logical_and",
            BinaryOp::Or => "logical_or",
            BinaryOp::Xor => "logical_xor",
        }
    }

    /// `and`, `or`, `xor` take bool or integer operands; the rest take numbers, not bool.
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
}

impl CompareOp {
    pub const ALL: [CompareOp; 6] =
        [CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge];

    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
        }
    }
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 5] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod];

    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Prod => "prod",
        }
    }
}
