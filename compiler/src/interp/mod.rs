//! The reference interpreter: evaluates any IR graph on the CPU. It is the oracle every
//! backend and every pass is tested against, so it favours being obviously right over speed.
//!
//! # Numerics
//!
//! Floats of every dtype are held as `f64`, integers as `i64` (see [`Tensor`]). Each op
//! computes its result in `f64` (or exact/wrapping `i64`) from its already-rounded operands
//! and rounds **once** to the node's dtype: round to nearest, ties to even, overflow to ±inf.
//! So an f16 graph behaves like f16 storage between ops, and f32 `add`/`mul`/`div`/`sqrt` are
//! bit-exact with IEEE f32 arithmetic (f64 has enough extra bits that rounding twice is exact).
//! Reductions, `matmul`, `conv2d` and the composites accumulate in `f64` and round once at the
//! end; composites are evaluated as one op (no rounding of their internal steps).
//!
//! # Semantics chosen here (the spec in `ir-spec/ops.md` states the same)
//!
//! - Integers wrap (two's complement) on overflow in `add`, `sub`, `mul`, `neg`, `abs`,
//!   `pow`, `sum`, `prod`, `matmul`; `i32::MIN / -1` wraps to `i32::MIN`.
//! - Integer `div` truncates toward zero; `rem` takes the sign of the dividend (so does float
//!   `rem`, which is C's `fmod`). Integer division or remainder by zero is an error, as is
//!   integer `pow` with a negative exponent (`pow(0, 0)` is 1).
//! - `maximum`, `minimum`, `max`, `min` and max-pooling propagate NaN. `argmax`/`argmin`
//!   return the index of the first NaN if there is one, else of the first extremum.
//! - Comparisons follow IEEE: every comparison with NaN is false except `ne`.
//! - `cast`: float→int truncates toward zero, saturates at the target range, NaN→0;
//!   int→int wraps; float/int→bool is `x != 0` (NaN→true); bool→number is 0 or 1;
//!   float→float and int→float round to nearest, ties to even.
//! - `round` rounds half to even; `sign` keeps NaN and ±0; `relu(NaN)` is NaN; integer
//!   `not`, `and`, `or`, `xor` are bitwise.
//! - Integer `mean` is the exact mean truncated toward zero. `sum` over an empty axis is 0,
//!   `prod` 1, float `mean` NaN; `max`, `min`, `argmax`, `argmin` and integer `mean` over an
//!   empty axis are errors.
//! - `gather` wraps negative indices once (`-1` is the last); anything still out of range is
//!   an error naming the node and the index. `pad` rounds its value to the dtype (for integer
//!   dtypes it is truncated, for bool it is `value != 0`).
//! - `max_pool2d` ignores padding (a window of padding only gives -inf); `avg_pool2d`
//!   divides by the window size with `count_include_pad`, else by the number of in-bounds
//!   elements (0/0 = NaN for a window of padding only).
//! - `attention`: `causal` keeps key `j` for query `i` when `j <= i` (top-left aligned, as
//!   PyTorch's `is_causal`); a bool mask keeps `true`, a float mask is added to the scaled
//!   scores. A row whose keys are all masked gives NaN, as the decomposition does.
//! - `softmax` and `log_softmax` subtract the row max first; a row containing NaN or +inf
//!   gives NaN, as the decomposition does.

mod composite;
mod create;
mod dims;
mod elementwise;
mod error;
mod linalg;
mod math;
mod movement;
mod nn;
mod reduce;
mod tensor;

use std::collections::{BTreeMap, HashMap};

use ndarray::ArrayD;

pub use dims::{bind_dims, DimValues};
pub use error::{EvalError, Role};
pub use math::erf;
pub use tensor::{float_to_int, int_to_float, round_float, wrap_int, Tensor, TensorData, TensorError};

use crate::ir::{DType, Graph, NodeId, Op};
use tensor::Elem;

/// Named tensors: graph inputs, params, or weights read from a file.
pub type TensorMap = BTreeMap<String, Tensor>;

/// Evaluates `graph` with symbol values `dims` on `inputs` and `params`; returns the outputs
/// in signature order. Values are freed after their last use.
///
/// Every input and param is checked against its node's dtype and concrete shape. Call
/// [`bind_dims`] first to infer `dims` from the inputs, or use [`run`].
pub fn eval(
    graph: &Graph,
    dims: &DimValues,
    inputs: &TensorMap,
    params: &TensorMap,
) -> Result<Vec<(String, Tensor)>, EvalError> {
    let order = graph.topo_order().ok_or(EvalError::Cycle)?;
    let mut uses = use_counts(graph);
    let mut values: HashMap<NodeId, Tensor> = HashMap::new();
    for id in order {
        let node = graph.node(id);
        let ctx = Ctx {
            node: id,
            op: node.op.name(),
            dtype: node.ty.dtype,
            shape: dims.shape(&node.ty.shape, &graph.symbols)?,
        };
        check_memory(&ctx)?;
        let mut operands = graph.operands(id);
        let value = {
            let args = operands.iter().map(|o| values.get(o).ok_or_else(|| ctx.malformed("an operand has no value")));
            let args = args.collect::<Result<Vec<&Tensor>, _>>()?;
            match &node.op {
                Op::Input { name } => bound(graph, dims, &ctx, Role::Input, name, inputs),
                Op::Param { name } => bound(graph, dims, &ctx, Role::Param, name, params),
                op => eval_op(&ctx, op, &args),
            }?
        };
        operands.sort();
        operands.dedup();
        for o in operands {
            release(&mut uses, &mut values, o);
        }
        if uses.get(&id).copied().unwrap_or(0) > 0 {
            values.insert(id, value);
        }
    }
    graph
        .outputs
        .iter()
        .map(|(name, id)| match values.get(id) {
            Some(t) => Ok((name.clone(), t.clone())),
            None => {
                Err(EvalError::Malformed { node: *id, op: "output", reason: "the output node is not in the graph" })
            }
        })
        .collect()
}

/// Refuses a value larger than this machine's memory before computing it: the interpreter
/// keeps every element as 8 bytes (f64, i64), and an allocation that fails aborts.
fn check_memory(ctx: &Ctx) -> Result<(), EvalError> {
    static BUDGET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let budget = *BUDGET.get_or_init(|| physical_memory().unwrap_or(u64::MAX));
    let bytes = ctx.shape.iter().fold(8u128, |acc, &d| acc.saturating_mul(d as u128));
    match bytes > budget as u128 {
        true => Err(EvalError::TooLarge { node: ctx.node, op: ctx.op, shape: ctx.shape.clone(), bytes, budget }),
        false => Ok(()),
    }
}

/// `MemTotal` from `/proc/meminfo`, where there is one.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// [`bind_dims`] with no explicit values, then [`eval`].
pub fn run(graph: &Graph, inputs: &TensorMap, params: &TensorMap) -> Result<Vec<(String, Tensor)>, EvalError> {
    let dims = bind_dims(graph, inputs, &DimValues::new())?;
    eval(graph, &dims, inputs, params)
}

/// How many times each node's value is still needed: once per distinct user, once per output.
fn use_counts(graph: &Graph) -> HashMap<NodeId, usize> {
    let mut uses: HashMap<NodeId, usize> = graph.node_ids().map(|id| (id, graph.users(id).len())).collect();
    for (_, id) in &graph.outputs {
        *uses.entry(*id).or_insert(0) += 1;
    }
    uses
}

fn release(uses: &mut HashMap<NodeId, usize>, values: &mut HashMap<NodeId, Tensor>, id: NodeId) {
    if let Some(n) = uses.get_mut(&id) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            values.remove(&id);
        }
    }
}

fn bound(
    graph: &Graph,
    dims: &DimValues,
    ctx: &Ctx,
    role: Role,
    name: &str,
    map: &TensorMap,
) -> Result<Tensor, EvalError> {
    let t = map.get(name).ok_or_else(|| match role {
        Role::Input => EvalError::MissingInput { name: name.into() },
        Role::Param => EvalError::MissingParam { name: name.into() },
    })?;
    dims::check_value(&graph.symbols, dims, role, name, graph.ty(ctx.node), t)?;
    // Re-establishes the rounding invariant for tensors built field by field.
    Ok(Tensor::new(t.dtype, t.data.clone())?)
}

/// Evaluates one op. The match lists every op, so a new op cannot be forgotten here.
fn eval_op(ctx: &Ctx, op: &Op, args: &[&Tensor]) -> Result<Tensor, EvalError> {
    let arg = |i: usize| args.get(i).copied().ok_or_else(|| ctx.malformed("an operand is missing"));
    match op {
        Op::Input { .. } | Op::Param { .. } => Err(ctx.malformed("inputs and params are bound, not evaluated")),
        Op::Constant { data } => create::constant(ctx, data),
        Op::Iota { axis } => create::iota(ctx, *axis),
        Op::Unary(u) => elementwise::unary(ctx, *u, arg(0)?),
        Op::Binary(b) => elementwise::binary(ctx, *b, arg(0)?, arg(1)?),
        Op::Compare(c) => elementwise::compare(ctx, *c, arg(0)?, arg(1)?),
        Op::Select => elementwise::select(ctx, arg(0)?, arg(1)?, arg(2)?),
        Op::Cast => ctx.finish(arg(0)?.cast(ctx.dtype).data),
        Op::Reduce { op, axes, keepdims: _ } => reduce::reduce(ctx, *op, axes, arg(0)?),
        Op::ArgReduce { op, axis, keepdims: _ } => reduce::arg_reduce(ctx, *op, *axis, arg(0)?),
        Op::MatMul => linalg::matmul(ctx, arg(0)?, arg(1)?),
        Op::Reshape => movement::reshape(ctx, arg(0)?),
        Op::Permute { perm } => movement::permute(ctx, perm, arg(0)?),
        Op::Broadcast => movement::broadcast(ctx, arg(0)?),
        Op::Slice { axis, start, end, step } => movement::slice(ctx, *axis, [*start, *end, *step], arg(0)?),
        Op::Concat { axis } => movement::concat(ctx, *axis, args),
        Op::Pad { low, high, value } => movement::pad(ctx, low, high, *value, arg(0)?),
        Op::Gather { axis } => movement::gather(ctx, *axis, arg(0)?, arg(1)?),
        Op::Conv2d { stride, padding, dilation, groups } => {
            let window = nn::Window { kernel: [0, 0], stride: *stride, padding: *padding, dilation: *dilation };
            nn::conv2d(ctx, &window, *groups, arg(0)?, arg(1)?, args.get(2).copied())
        }
        Op::Pool2d { kind, kernel, stride, padding, count_include_pad } => {
            let window = nn::Window { kernel: *kernel, stride: *stride, padding: *padding, dilation: [1, 1] };
            nn::pool2d(ctx, *kind, &window, *count_include_pad, arg(0)?)
        }
        Op::Softmax { axis } => composite::softmax(ctx, *axis, arg(0)?, false),
        Op::LogSoftmax { axis } => composite::softmax(ctx, *axis, arg(0)?, true),
        Op::LayerNorm { axis, eps } => composite::layer_norm(ctx, *axis, *eps, arg(0)?, arg(1)?, arg(2)?),
        Op::RmsNorm { axis, eps } => composite::rms_norm(ctx, *axis, *eps, arg(0)?, arg(1)?),
        Op::Gelu { approx } => composite::gelu(ctx, *approx, arg(0)?),
        Op::Silu => composite::silu(ctx, arg(0)?),
        Op::Linear => composite::linear(ctx, arg(0)?, arg(1)?, args.get(2).copied()),
        Op::Attention { causal, scale } => {
            composite::attention(ctx, *causal, *scale, [arg(0)?, arg(1)?, arg(2)?], args.get(3).copied())
        }
    }
}

/// What an op implementation knows about the node it evaluates.
pub(crate) struct Ctx {
    pub node: NodeId,
    pub op: &'static str,
    pub dtype: DType,
    /// The node's concrete shape.
    pub shape: Vec<usize>,
}

impl Ctx {
    pub fn malformed(&self, reason: &'static str) -> EvalError {
        EvalError::Malformed { node: self.node, op: self.op, reason }
    }

    /// Rounds `data` to the node's dtype and checks it has the node's shape.
    pub fn finish(&self, data: TensorData) -> Result<Tensor, EvalError> {
        let t =
            Tensor::new(self.dtype, data).map_err(|_| self.malformed("the result kind does not match the dtype"))?;
        if t.shape() != self.shape.as_slice() {
            return Err(EvalError::ResultMismatch {
                node: self.node,
                op: self.op,
                expected_dtype: self.dtype,
                expected: self.shape.clone(),
                found_dtype: t.dtype,
                found: t.shape().to_vec(),
            });
        }
        Ok(t)
    }

    pub fn float(&self, data: ArrayD<f64>) -> Result<Tensor, EvalError> {
        self.finish(TensorData::Float(data))
    }

    /// [`Ctx::finish`] for an array of any element kind.
    pub fn done<T: Elem>(&self, data: ArrayD<T>) -> Result<Tensor, EvalError> {
        self.finish(T::wrap(data))
    }

    /// The operand's values as elements of kind `T`.
    pub fn get<'t, T: Elem>(&self, t: &'t Tensor) -> Result<&'t ArrayD<T>, EvalError> {
        T::get(&t.data).ok_or_else(|| self.malformed("operands of different element kinds"))
    }

    pub fn f64<'t>(&self, t: &'t Tensor) -> Result<&'t ArrayD<f64>, EvalError> {
        t.as_f64().ok_or_else(|| self.malformed("expected a float operand"))
    }

    pub fn i64<'t>(&self, t: &'t Tensor) -> Result<&'t ArrayD<i64>, EvalError> {
        t.as_i64().ok_or_else(|| self.malformed("expected an integer operand"))
    }

    pub fn bool<'t>(&self, t: &'t Tensor) -> Result<&'t ArrayD<bool>, EvalError> {
        t.as_bool().ok_or_else(|| self.malformed("expected a bool operand"))
    }
}
