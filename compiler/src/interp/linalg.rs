//! Batched matrix multiplication, accumulated in `f64` (floats) or wrapping `i64` (integers).

use ndarray::{Array2, Array3, ArrayD, ArrayView2, Axis, IxDyn};

use super::{Ctx, EvalError, Tensor, TensorData};

pub fn matmul(ctx: &Ctx, a: &Tensor, b: &Tensor) -> Result<Tensor, EvalError> {
    let data = match (&a.data, &b.data) {
        (TensorData::Float(x), TensorData::Float(y)) => TensorData::Float(matmul_f64(ctx, x, y)?),
        (TensorData::Int(x), TensorData::Int(y)) => TensorData::Int(matmul_with(ctx, x, y, int_matmul)?),
        _ => return Err(ctx.malformed("matmul takes two float or two integer operands")),
    };
    ctx.finish(data)
}

/// `[..., M, K] @ [..., K, N]` with the batch dims broadcast, in `f64`.
pub(super) fn matmul_f64(ctx: &Ctx, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>, EvalError> {
    matmul_with(ctx, a, b, |x, y| x.dot(&y))
}

fn matmul_with<T: Clone + Default>(
    ctx: &Ctx,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    mm: impl Fn(ArrayView2<T>, ArrayView2<T>) -> Array2<T>,
) -> Result<ArrayD<T>, EvalError> {
    let bad = || ctx.malformed("the operand shapes do not multiply");
    if a.ndim() < 2 || b.ndim() < 2 {
        return Err(bad());
    }
    let (a_batch, a_mat) = a.shape().split_at(a.ndim() - 2);
    let (b_batch, b_mat) = b.shape().split_at(b.ndim() - 2);
    if a_mat[1] != b_mat[0] {
        return Err(bad());
    }
    let batch = broadcast_shapes(a_batch, b_batch).ok_or_else(bad)?;
    let (a3, b3) = (to_batches(a, &batch, a_mat).ok_or_else(bad)?, to_batches(b, &batch, b_mat).ok_or_else(bad)?);
    let mut out = Array3::from_elem((a3.len_of(Axis(0)), a_mat[0], b_mat[1]), T::default());
    for (i, mut o) in out.outer_iter_mut().enumerate() {
        o.assign(&mm(a3.index_axis(Axis(0), i), b3.index_axis(Axis(0), i)));
    }
    let shape: Vec<usize> = batch.iter().chain(&[a_mat[0], b_mat[1]]).copied().collect();
    out.into_shape_with_order(IxDyn(&shape)).map_err(|_| bad())
}

/// `x` broadcast to `batch ++ mat` and flattened to `[batches, rows, cols]`.
fn to_batches<T: Clone>(x: &ArrayD<T>, batch: &[usize], mat: &[usize]) -> Option<Array3<T>> {
    let full: Vec<usize> = batch.iter().chain(mat).copied().collect();
    let flat: Vec<T> = x.broadcast(IxDyn(&full))?.iter().cloned().collect();
    Array3::from_shape_vec((batch.iter().product(), mat[0], mat[1]), flat).ok()
}

fn int_matmul(a: ArrayView2<i64>, b: ArrayView2<i64>) -> Array2<i64> {
    Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
        a.row(i).iter().zip(b.column(j)).fold(0i64, |acc, (&x, &y)| acc.wrapping_add(x.wrapping_mul(y)))
    })
}

/// NumPy broadcasting of two concrete shapes.
pub(super) fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}
