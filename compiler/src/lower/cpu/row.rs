//! Row kernels and reductions: the row level (each reduction once per row, before the output
//! loop), the folds that carry values through `scf.for`, split over a warp's lanes (or a
//! block's threads, with long rows staged in shared memory) on the GPU, the rows' prefetch and
//! scratch cache.

use super::*;

/// Rows at least this long run a block per row on the GPU (shorter ones a warp per row).
const BLOCK_ROW: u64 = 1024;
/// Shared memory a block-per-row kernel may give its staged rows.
const STAGED_BYTES: u64 = 32 << 10;
/// Warps of a block.
const WARPS: u64 = GEMM_THREADS / WARP;
const SHARED: &str = "#gpu.address_space<workgroup>";

/// A GPU row kernel that runs a block per row: its long static rows (trailing axes), and the
/// inputs read whole, row by row, which are staged in shared memory so that every pass over a
/// row after the first reads shared memory, not global (softmax and layer_norm then read
/// their input once).
pub(super) struct RowPlan {
    extent: u64,
    pub(super) staged: Vec<NodeId>,
}

impl RowPlan {
    /// The shared memory: the warps' partial reductions (two carried values of eight warps),
    /// then a row of each staged input.
    pub(super) fn shared_types(&self, graph: &Graph) -> Vec<String> {
        let rows =
            self.staged.iter().map(|&n| format!("memref<{}x{}, {SHARED}>", self.extent, mem_ty(graph.ty(n).dtype)));
        std::iter::once(format!("memref<2x{WARPS}xf32, {SHARED}>")).chain(rows).collect()
    }
}

/// A block-per-row kernel's shared memory as the emitter holds it.
#[derive(Clone, Debug)]
pub(super) struct RowBlock {
    pub(super) partials: V,
    pub(super) staged: Vec<(NodeId, V)>,
    /// The staged row: its indices on the parallel axes (size-1 axes as 0), while it is
    /// staged. A staged input read at another row (a transposed view of it) reads global memory.
    pub(super) row: Option<Vec<Ix>>,
}

/// The block-per-row plan of a row kernel, if it has one: static trailing rows of at least
/// [`BLOCK_ROW`] elements, and no op that branches around a reduction (concat, pad, gather,
/// windows), since a block's reduction meets at barriers every thread must reach.
pub(super) fn row_block_plan(graph: &Graph, kernel: &Kernel) -> Option<RowPlan> {
    let KernelKind::Row { axes } = &kernel.kind else { return None };
    let r = kernel.domain.len();
    let trailing = axes.iter().enumerate().all(|(i, &a)| a == r - axes.len() + i);
    let extent = axes.iter().map(|&a| kernel.domain[a].as_known()).try_fold(1u64, |acc, d| d.map(|d| acc * d))?;
    let branches = kernel.nodes.iter().any(|&n| {
        matches!(
            graph.op(n),
            Op::Concat { .. } | Op::Pad { .. } | Op::Gather { .. } | Op::Conv2d { .. } | Op::Pool2d { .. }
        )
    });
    if !trailing || extent < BLOCK_ROW || branches {
        return None;
    }
    let mut bytes = 0;
    let mut staged = Vec::new();
    for &n in &kernel.inputs {
        let row = extent * graph.ty(n).dtype.size_bytes() as u64;
        if graph.ty(n).shape == kernel.domain && bytes + row <= STAGED_BYTES {
            bytes += row;
            staged.push(n);
        }
    }
    Some(RowPlan { extent, staged })
}

impl<'g, 'c> Emitter<'g, 'c> {
    /// A block-per-row kernel: copies this row of every staged input into shared memory, the
    /// block's threads side by side, then waits for all of them.
    fn stage_rows(&mut self, rows: &[usize], point: &[Ix]) -> Result<(), LowerError> {
        let Some(block) = self.row_block.clone() else { return Ok(()) };
        if block.staged.is_empty() {
            return Ok(());
        }
        let Some(lane) = self.lane else { return Ok(()) };
        let domain = self.kernel.domain.clone();
        let row_dims: Vec<Dim> = rows.iter().map(|&a| domain[a].clone()).collect();
        let extent = self.ix(&rows.iter().fold(Ix::Const(1), |acc, &a| Ix::prod(acc, Ix::dim(&domain[a]))))?;
        for &(n, tile) in &block.staged {
            let ty = mem_ty(self.dtype(n));
            self.for_step(lane, extent, self.row_width, &mut |e, j| {
                let mut at = point.to_vec();
                for (a, i) in rows.iter().zip(index::delinearize(j.clone(), &row_dims)) {
                    at[*a] = i;
                }
                let ptr = e.address(n, &at)?;
                let raw = e.load_ptr(ptr, ty, None);
                let j = e.ix(&j)?;
                e.effect("memref.store", &[raw, tile, j], &[]);
                Ok(())
            })?;
        }
        self.effect("gpu.barrier", &[], &[]);
        let first = domain.len() - rows.len();
        let row = self.outer_key(&point[..first]);
        if let Some(b) = self.row_block.as_mut() {
            b.row = Some(row);
        }
        Ok(())
    }

    /// Indices on the parallel axes, an axis of size 1 at 0 (as [`Emitter::memo_key`] has them).
    fn outer_key(&self, outer: &[Ix]) -> Vec<Ix> {
        let domain = &self.kernel.domain;
        outer.iter().enumerate().map(|(a, i)| if domain[a].is_one() { Ix::Const(0) } else { i.clone() }).collect()
    }

    /// A staged input read from its row in shared memory (in its memory type), when this row
    /// is staged.
    pub(super) fn staged_load(&mut self, n: NodeId, idx: &[Ix]) -> Result<Option<V>, LowerError> {
        let Some(block) = self.row_block.as_ref() else { return Ok(None) };
        let (Some(row), Some(&(_, tile))) = (&block.row, block.staged.iter().find(|(s, _)| *s == n)) else {
            return Ok(None);
        };
        let KernelKind::Row { axes } = &self.kernel.kind else { return Ok(None) };
        let domain = &self.kernel.domain;
        let first = domain.len() - axes.len();
        if self.outer_key(&idx[..first]) != *row {
            return Ok(None);
        }
        let position = self.ix(&index::linearize(&idx[first..], &domain[first..]))?;
        Ok(Some(self.op("memref.load", &[tile, position], mem_ty(self.dtype(n)), &[])))
    }

    /// After a block's warps each folded their share of a row: every thread gets the whole, by
    /// way of one partial per warp in shared memory (flags as 0.0 and 1.0).
    fn across_warps(&mut self, values: &mut [Reg], combine: &[&str]) -> Result<(), LowerError> {
        let Some(block) = self.row_block.clone() else { return Ok(()) };
        let Some(lane) = self.lane else { return Ok(()) };
        let [warp, in_warp] = self.split(lane, WARP)?;
        let zero = self.ix(&Ix::Const(0))?;
        let first = self.cmpi("eq", in_warp, zero);
        let slots: Vec<V> = (0..values.len()).map(|i| self.ix(&Ix::Const(i as u64))).collect::<Result<_, _>>()?;
        let wide: Vec<V> = values
            .iter()
            .map(|v| match v.ty {
                "i1" => self.cast("uitofp", v.v, "f32"),
                _ => v.v,
            })
            .collect();
        self.when(first, &mut |e| {
            for (&w, &slot) in wide.iter().zip(&slots) {
                e.effect("memref.store", &[w, block.partials, slot, warp], &[]);
            }
            Ok(())
        })?;
        self.effect("gpu.barrier", &[], &[]);
        for ((v, op), &slot) in values.iter_mut().zip(combine).zip(&slots) {
            let mut total: Option<V> = None;
            for w in 0..WARPS {
                let w = self.ix(&Ix::Const(w))?;
                let part = self.op("memref.load", &[block.partials, slot, w], "f32", &[]);
                let part = match v.ty {
                    "i1" => {
                        let zero = self.immediate(DType::F32, 0.0).v;
                        self.cmpf("une", part, zero)
                    }
                    _ => part,
                };
                total = Some(match total {
                    None => part,
                    Some(t) if v.ty == "f32" => self.binop_fm(op, t, part, "reassoc"),
                    Some(t) => self.binop(op, t, part),
                });
            }
            *v = Reg::new(total.unwrap_or(v.v), v.ty);
        }
        // The partials are read before the next reduction writes them.
        self.effect("gpu.barrier", &[], &[]);
        Ok(())
    }

    pub(super) fn row_level(&mut self, rows: &[usize], point: &[Ix]) -> Result<(), LowerError> {
        if let Some((mm, cols, acc)) = self.panel {
            return self.panel_row(point, mm, cols, acc);
        }
        let domain = self.kernel.domain.clone();
        let reduced: Vec<Dim> =
            domain.iter().enumerate().map(|(a, d)| if rows.contains(&a) { Dim::known(1) } else { d.clone() }).collect();
        let (full, row) = (numel(&domain), numel(&reduced));
        if !rows.is_empty() {
            self.prefetch_next_row(rows, point)?;
            self.stage_rows(rows, point)?;
            let kernel = self.kernel;
            self.row_level_now = true;
            for &n in &kernel.nodes {
                let per_row = numel(self.shape(n)) == row;
                if per_row
                    && (matches!(self.graph.op(n).class(), OpClass::Reduction { .. })
                        || self.kernel.outputs.contains(&n))
                {
                    let idx = index::reshape(point, &reduced, self.shape(n));
                    let value = self.value(n, &idx)?;
                    if self.kernel.outputs.contains(&n) && numel(self.shape(n)) != full {
                        self.store(n, &idx, &value)?;
                    }
                }
            }
            self.row_level_now = false;
        }
        let outputs: Vec<NodeId> =
            self.kernel.outputs.iter().copied().filter(|&o| rows.is_empty() || numel(self.shape(o)) == full).collect();
        if rows.is_empty() {
            return outputs.into_iter().try_for_each(|o| self.store_at(o, point, &domain));
        }
        let extent = rows.iter().fold(Ix::Const(1), |acc, &a| Ix::prod(acc, Ix::dim(&domain[a])));
        let (lo, hi) = (self.ix(&Ix::Const(0))?, self.ix(&extent)?);
        let row_dims: Vec<Dim> = rows.iter().map(|&a| domain[a].clone()).collect();
        let cached: Vec<(NodeId, V)> = self.row_cache.iter().map(|(&n, &s)| (n, s)).collect();
        // On the GPU the row's threads take every `row_width`-th element, side by side in memory.
        let (lo, step) = match self.lane {
            Some(lane) => (lane, self.row_width),
            None => (lo, 1),
        };
        let staged = self.row_block.as_ref().is_some_and(|b| b.row.is_some());
        self.for_step(lo, hi, step, &mut |e, var| {
            let mut full_point = point.to_vec();
            for (a, i) in rows.iter().zip(index::delinearize(var.clone(), &row_dims)) {
                full_point[*a] = i;
            }
            for (n, scratch) in &cached {
                let p = e_ptr(e, *scratch, &var)?;
                let v = Reg { v: e.load_ptr(p, "f32", None), ty: "f32" };
                e.remember(*n, &full_point, v);
            }
            outputs.iter().try_for_each(|&o| e.store_at(o, &full_point, &domain))
        })?;
        if staged {
            // Every thread is done with this row before the next is staged over it.
            self.effect("gpu.barrier", &[], &[]);
            if let Some(b) = self.row_block.as_mut() {
                b.row = None;
            }
        }
        Ok(())
    }

    /// Asks the cache for the row [`PREFETCH_ROWS`] ahead of every input the row kernel reads
    /// whole (an input of the domain's shape, rows innermost), one prefetch per 64-byte line. A row kernel
    /// makes its passes over a row from cache, and while it computes, nothing else would
    /// read ahead: the hardware prefetchers follow demand misses, and the passes after the
    /// first make none. Without this, memory sat idle during the computation (a softmax
    /// over [4096, 1024] took the time of a copy plus the time of its arithmetic). Past the
    /// last row the addresses are outside the buffer, which a prefetch may touch.
    pub(super) fn prefetch_next_row(&mut self, rows: &[usize], point: &[Ix]) -> Result<(), LowerError> {
        let domain = self.kernel.domain.clone();
        let trailing = rows.iter().enumerate().all(|(i, &a)| a == domain.len() - rows.len() + i);
        if self.device.is_gpu() || !trailing {
            return Ok(());
        }
        let wholes: Vec<NodeId> = self
            .kernel
            .inputs
            .iter()
            .copied()
            .filter(|&n| self.shape(n) == domain.as_slice() && self.slots.contains_key(&n))
            .collect();
        let length = rows.iter().fold(Ix::Const(1), |acc, &a| Ix::prod(acc, Ix::dim(&domain[a])));
        let ahead = Ix::prod(Ix::Const(PREFETCH_ROWS), length.clone());
        let next = Ix::sum(index::linearize(point, &domain), ahead);
        for n in wholes {
            let per_line = 64 / self.dtype(n).size_bytes() as u64;
            let (lo, hi) = (self.ix(&Ix::Const(0))?, self.ix(&length)?);
            self.for_step(lo, hi, per_line, &mut |e, j| {
                let p = e.element_ptr(n, &Ix::sum(next.clone(), j))?;
                e.effect("llvm.intr.prefetch", &[p], &[("rw", "0 : i32"), ("hint", "3 : i32"), ("cache", "1 : i32")]);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The values of a row kernel worth keeping for its output loop: the operand of a
    /// reduction over the kernel's rows that something else in the kernel reads too (softmax's
    /// `exp(x - max)`, read by the sum and by the division), when a row fits in 64 KiB.
    /// Each gets a row of scratch, filled by the reduction's loop.
    pub(super) fn plan_row_cache(&mut self, rows: &[usize]) {
        let extent = rows.iter().map(|&a| self.kernel.domain[a].as_known()).try_fold(1u64, |acc, d| d.map(|d| acc * d));
        let Some(extent) = extent.filter(|&e| e > 0 && e <= 16384) else { return };
        let kernel = self.kernel;
        for &r in &kernel.nodes {
            let Op::Reduce { axes, .. } = self.graph.op(r) else { continue };
            let o = self.graph.operands(r)[0];
            let shared = self.graph.users(o).iter().any(|&u| u != r && kernel.nodes.contains(&u));
            let fits = axes.as_slice() == rows && self.shape(o) == kernel.domain.as_slice() && is_float(self.dtype(o));
            if fits && shared && !kernel.inputs.contains(&o) && !self.row_cache.contains_key(&o) {
                let scratch = self.scratch(extent);
                self.row_cache.insert(o, scratch);
            }
        }
    }

    /// [`Emitter::fold`], or with `combine` (one op per carried value) split over the lanes of
    /// a GPU warp: lane `l` folds elements `l, l + WARP, ...`, then a butterfly of `xor`
    /// shuffles combines the lanes' values so that every lane holds the whole result. The
    /// fold's body is then no longer row-level: a reduction inside it is not split again (its
    /// lanes would run different trip counts).
    pub(super) fn row_fold(
        &mut self,
        extent: &Ix,
        init: &[Reg],
        combine: Option<&[&str]>,
        step: &mut FoldStep<'_, 'g, 'c>,
    ) -> Result<Vec<Reg>, LowerError> {
        let (Some(combine), Some(lane)) = (combine, self.lane) else { return self.fold(extent, init, step) };
        self.row_level_now = false;
        let folded = self.fold_from(lane, self.row_width, extent, init, step);
        self.row_level_now = true;
        let mut values = folded?;
        let width = self.constant(&format!("{WARP} : i32"));
        for offset in [16, 8, 4, 2, 1] {
            let offset = self.constant(&format!("{offset} : i32"));
            for (v, op) in values.iter_mut().zip(combine) {
                // Shuffles move 32-bit values: a flag travels as an i32.
                let wide = match v.ty {
                    "i1" => self.cast("extui", v.v, "i32"),
                    _ => v.v,
                };
                let ty = if v.ty == "i1" { "i32" } else { v.ty };
                let mode = [("mode", "#gpu<shuffle_mode xor>")];
                let other = self.b.op("gpu.shuffle", &[wide, offset, width], &[ty, "i1"], &mode)[0];
                let other = match v.ty {
                    "i1" => self.cast("trunci", other, "i1"),
                    _ => other,
                };
                let r =
                    if v.ty == "f32" { self.binop_fm(op, v.v, other, "reassoc") } else { self.binop(op, v.v, other) };
                *v = Reg::new(r, v.ty);
            }
        }
        if self.row_width > WARP {
            self.across_warps(&mut values, combine)?;
        }
        Ok(values)
    }

    /// `scf.for` over `[0, extent)` carrying `init`; `step` gets the loop index and the
    /// carried values and returns the next ones. Returns the final values.
    pub(super) fn fold(
        &mut self,
        extent: &Ix,
        init: &[Reg],
        step: &mut FoldStep<'_, 'g, 'c>,
    ) -> Result<Vec<Reg>, LowerError> {
        let zero = self.ix(&Ix::Const(0))?;
        self.fold_from(zero, 1, extent, init, step)
    }

    /// [`Emitter::fold`] over `lo, lo + stride, ...` below `extent`.
    pub(super) fn fold_from(
        &mut self,
        lo: V,
        stride: u64,
        extent: &Ix,
        init: &[Reg],
        step: &mut FoldStep<'_, 'g, 'c>,
    ) -> Result<Vec<Reg>, LowerError> {
        let (hi, one) = (self.ix(extent)?, self.ix(&Ix::Const(stride))?);
        let types: Vec<&'static str> = init.iter().map(|r| r.ty).collect();
        let args = self.b.open(&[&["index"], types.as_slice()].concat());
        let carried: Vec<Reg> = args[1..].iter().zip(&types).map(|(&v, &ty)| Reg::new(v, ty)).collect();
        let ix = self.enter(args[0]);
        let next = step(self, ix, &carried)?;
        let values: Vec<V> = next.iter().map(|r| r.v).collect();
        self.effect("scf.yield", &values, &[]);
        self.leave();
        let body = self.b.close();
        let operands: Vec<V> = [lo, hi, one].into_iter().chain(init.iter().map(|r| r.v)).collect();
        let results = self.b.op_with("scf.for", &operands, &types, &[], vec![body]);
        Ok(results.into_iter().zip(types).map(|(v, ty)| Reg::new(v, ty)).collect())
    }

    /// The operand index of a reduction over `axes` at output `idx`, with `inner` the
    /// index over the reduced axes (delinearized).
    pub(super) fn reduced_index(&self, n: NodeId, axes: &[usize], keepdims: bool, idx: &[Ix], inner: Ix) -> Vec<Ix> {
        let x = self.shape(self.graph.operands(n)[0]);
        let dims: Vec<Dim> = axes.iter().map(|&a| x[a].clone()).collect();
        let mut inner = index::delinearize(inner, &dims).into_iter();
        let mut outer = idx.iter();
        (0..x.len())
            .map(|a| {
                if axes.contains(&a) {
                    if keepdims {
                        outer.next();
                    }
                    inner.next().unwrap_or(Ix::Const(0))
                } else {
                    outer.next().cloned().unwrap_or(Ix::Const(0))
                }
            })
            .collect()
    }

    /// The operand of reduction `n` at fold index `i`, also kept in the operand's scratch row
    /// when it has one ([`Emitter::plan_row_cache`]).
    pub(super) fn reduced_operand(
        &mut self,
        n: NodeId,
        axes: &[usize],
        keepdims: bool,
        idx: &[Ix],
        i: &Ix,
    ) -> Result<Reg, LowerError> {
        let x = self.graph.operands(n)[0];
        let at = self.reduced_index(n, axes, keepdims, idx, i.clone());
        let v = self.value(x, &at)?;
        if let Some(scratch) = self.row_cache.get(&x).cloned() {
            let p = e_ptr(self, scratch, i)?;
            self.store_ptr(v.v, p, None);
        }
        Ok(v)
    }

    pub(super) fn reduce(
        &mut self,
        n: NodeId,
        op: ReduceOp,
        axes: &[usize],
        keepdims: bool,
        idx: &[Ix],
    ) -> Result<Reg, LowerError> {
        let dtype = self.dtype(n);
        let x = self.graph.operands(n)[0];
        let extent = axes.iter().fold(Ix::Const(1), |acc, &a| Ix::prod(acc, Ix::dim(&self.shape(x)[a])));
        let float = is_float(dtype);
        let acc_ty = if float { DType::F32 } else { DType::I64 };
        let init = match op {
            ReduceOp::Sum | ReduceOp::Mean => 0.0,
            ReduceOp::Prod => 1.0,
            ReduceOp::Max if float => f64::NEG_INFINITY,
            ReduceOp::Min if float => f64::INFINITY,
            ReduceOp::Max => {
                if dtype == DType::I32 {
                    i32::MIN as f64
                } else {
                    i64::MIN as f64
                }
            }
            ReduceOp::Min => {
                if dtype == DType::I32 {
                    i32::MAX as f64
                } else {
                    i64::MAX as f64
                }
            }
        };
        let init = match (float, op) {
            (false, ReduceOp::Max) => Reg::new(
                self.constant(&format!("{} : i64", if dtype == DType::I32 { i32::MIN as i64 } else { i64::MIN })),
                "i64",
            ),
            (false, ReduceOp::Min) => Reg::new(
                self.constant(&format!("{} : i64", if dtype == DType::I32 { i32::MAX as i64 } else { i64::MAX })),
                "i64",
            ),
            _ => self.immediate(acc_ty, init),
        };
        let combine = match (op, float) {
            (ReduceOp::Sum | ReduceOp::Mean, true) => "arith.addf",
            (ReduceOp::Prod, true) => "arith.mulf",
            (ReduceOp::Max, true) => "arith.maximumf",
            (ReduceOp::Min, true) => "arith.minimumf",
            (ReduceOp::Sum | ReduceOp::Mean, false) => "arith.addi",
            (ReduceOp::Prod, false) => "arith.muli",
            (ReduceOp::Max, false) => "arith.maxsi",
            (ReduceOp::Min, false) => "arith.minsi",
        };
        let acc_name = reg_ty(acc_ty);
        if float && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            let r = self.float_extremum(n, op, axes, keepdims, idx, &extent, init)?;
            return Ok(self.convert(r, acc_ty, dtype));
        }
        let combines = [combine];
        let split = (float && self.lane.is_some() && self.row_level_now).then_some(combines.as_slice());
        let total = self.row_fold(&extent, &[init], split, &mut |e, i, carried| {
            let v = e.reduced_operand(n, axes, keepdims, idx, &i)?;
            let v = e.convert(v, e.dtype(x), acc_ty);
            // Float folds may be reassociated (the spec's R(K) allows any summation order),
            // which lets LLVM vectorize them.
            let r = if float {
                e.binop_fm(combine, carried[0].v, v.v, "reassoc")
            } else {
                e.binop(combine, carried[0].v, v.v)
            };
            Ok(vec![Reg::new(r, acc_name)])
        })?;
        let mut r = total.into_iter().next().ok_or_else(|| self.unsupported("an empty fold"))?;
        if op == ReduceOp::Mean {
            let k = self.ix(&extent)?;
            let k = self.cast("index_cast", k, "i64");
            r = if float {
                let kf = self.cast("sitofp", k, "f32");
                Reg::new(self.arith("divf", r.v, kf), "f32")
            } else {
                Reg::new(self.arith("divsi", r.v, k), "i64")
            };
        }
        Ok(self.convert(r, acc_ty, dtype))
    }

    /// A float max or min: `maxnumf`/`minnumf` told there are no NaNs (one `vmaxps` per vector
    /// on x86, where the NaN-propagating `maximumf` is five dependent instructions) beside an
    /// `or` of "is NaN" flags; a NaN anywhere makes the result NaN, as the spec says.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn float_extremum(
        &mut self,
        n: NodeId,
        op: ReduceOp,
        axes: &[usize],
        keepdims: bool,
        idx: &[Ix],
        extent: &Ix,
        init: Reg,
    ) -> Result<Reg, LowerError> {
        let x = self.graph.operands(n)[0];
        let combine = if op == ReduceOp::Max { "arith.maxnumf" } else { "arith.minnumf" };
        let no_nan = Reg::new(self.constant("false"), "i1");
        let combines = [combine, "arith.ori"];
        let split = (self.lane.is_some() && self.row_level_now).then_some(combines.as_slice());
        let folded = self.row_fold(extent, &[init, no_nan], split, &mut |e, i, carried| {
            let v = e.reduced_operand(n, axes, keepdims, idx, &i)?;
            let v = e.convert(v, e.dtype(x), DType::F32);
            // With `nnan` a NaN operand makes the accumulator poison; the flag then selects
            // the NaN below, and a select takes nothing from the arm it does not choose.
            let acc = Reg::new(e.binop_fm(combine, carried[0].v, v.v, "nnan,nsz,reassoc"), "f32");
            let is_nan = e.cmpf("uno", v.v, v.v);
            let flag = Reg::new(e.arith("ori", carried[1].v, is_nan), "i1");
            Ok(vec![acc, flag])
        })?;
        let nan = self.immediate(DType::F32, f64::NAN);
        Ok(Reg::new(self.select(folded[1].v, nan.v, folded[0].v), "f32"))
    }

    /// Index of the first extremum; the first NaN wins over any number.
    pub(super) fn arg_reduce(
        &mut self,
        n: NodeId,
        op: ArgReduceOp,
        axis: usize,
        keepdims: bool,
        idx: &[Ix],
    ) -> Result<Reg, LowerError> {
        let x = self.graph.operands(n)[0];
        let xt = self.dtype(x);
        let extent = Ix::dim(&self.shape(x)[axis]);
        let first_at = self.reduced_index(n, &[axis], keepdims, idx, Ix::Const(0));
        let best = self.value(x, &first_at)?;
        let zero = Reg::new(self.constant("0 : i64"), "i64");
        let out = self.fold(&extent, &[best, zero], &mut |e, i, carried| {
            let at = e.reduced_index(n, &[axis], keepdims, idx, i.clone());
            let v = e.value(x, &at)?;
            let pred = CompareOp::Gt;
            let better = match op {
                ArgReduceOp::ArgMax => e.compare(pred, xt, &v, &carried[0]),
                ArgReduceOp::ArgMin => e.compare(CompareOp::Lt, xt, &v, &carried[0]),
            };
            let take = if is_float(xt) {
                let v_nan = e.cmpf("uno", v.v, v.v);
                let b_nan = e.cmpf("uno", carried[0].v, carried[0].v);
                let yes = e.constant("true");
                let b_ok = e.arith("xori", b_nan, yes);
                let first_nan = e.arith("andi", v_nan, b_ok);
                e.arith("ori", better.v, first_nan)
            } else {
                better.v
            };
            let i = e.ix(&i)?;
            let i = e.cast("index_cast", i, "i64");
            let value = Reg::new(e.select(take, v.v, carried[0].v), v.ty);
            let index = Reg::new(e.select(take, i, carried[1].v), "i64");
            Ok(vec![value, index])
        })?;
        let index = out.into_iter().nth(1).ok_or_else(|| self.unsupported("an empty fold"))?;
        Ok(self.convert(index, DType::I64, self.dtype(n)))
    }
}
