//! Opaque kernels' values: pooling windows, concat, pad and gather, as straightforward loops and
//! branches.

use super::*;

impl<'g, 'c> Emitter<'g, 'c> {
    /// Whether window tap `tap` of output position `out` along one spatial axis falls
    /// inside the input, and the input position it reads.
    pub(super) fn tap(
        &mut self,
        out: &Ix,
        tap: &Ix,
        axis: usize,
        w: &Window,
        len: &Dim,
    ) -> Result<(V, Ix), LowerError> {
        let low = w.padding[axis];
        let at = Ix::sum(
            Ix::prod(out.clone(), Ix::Const(w.stride[axis])),
            Ix::prod(tap.clone(), Ix::Const(w.dilation[axis])),
        );
        let (p, lo) = (self.ix(&at)?, self.ix(&Ix::Const(low))?);
        let hi = self.ix(&Ix::sum(Ix::dim(len), Ix::Const(low)))?;
        let ge = self.cmpi("uge", p, lo);
        let lt = self.cmpi("ult", p, hi);
        let inside = self.arith("andi", ge, lt);
        Ok((inside, Ix::diff(at, Ix::Const(low))))
    }

    /// Both spatial taps of a window: whether the pair is inside, and the input's `[y, x]`.
    pub(super) fn taps(&mut self, out: &[Ix], tap: &[Ix], w: &Window, x: NodeId) -> Result<(V, Vec<Ix>), LowerError> {
        let shape = self.shape(x);
        let (in_h, y) = self.tap(&out[2], &tap[0], 0, w, &shape[2])?;
        let (in_w, xx) = self.tap(&out[3], &tap[1], 1, w, &shape[3])?;
        let inside = self.arith("andi", in_h, in_w);
        Ok((inside, vec![y, xx]))
    }

    pub(super) fn pool2d(
        &mut self,
        n: NodeId,
        kind: PoolKind,
        kernel: [u64; 2],
        w: &Window,
        count_include_pad: bool,
        idx: &[Ix],
    ) -> Result<Reg, LowerError> {
        let x = self.graph.operands(n)[0];
        let dtype = self.dtype(n);
        let taps = [Dim::known(kernel[0]), Dim::known(kernel[1])];
        let start = match kind {
            PoolKind::Max => f64::NEG_INFINITY,
            PoolKind::Avg => 0.0,
        };
        let (init, count) = (self.immediate(DType::F32, start), self.immediate(DType::F32, 0.0));
        let combine = if kind == PoolKind::Max { "arith.maximumf" } else { "arith.addf" };
        let out = self.fold(&Ix::Const(kernel[0] * kernel[1]), &[init, count], &mut |e, i, carried| {
            let t = index::delinearize(i, &taps);
            let (inside, yx) = e.taps(idx, &t, w, x)?;
            let at = vec![idx[0].clone(), idx[1].clone(), yx[0].clone(), yx[1].clone()];
            let acc = carried[0].clone();
            let next = e.select_branch(
                inside,
                "f32",
                &mut |e| {
                    let v = e.value(x, &at)?;
                    Ok(Reg::new(e.binop(combine, acc.v, v.v), "f32"))
                },
                &mut |_| Ok(acc.clone()),
            )?;
            let one = e.immediate(DType::F32, 1.0);
            let bumped = e.arith("addf", carried[1].v, one.v);
            let count = Reg::new(e.select(inside, bumped, carried[1].v), "f32");
            Ok(vec![next, count])
        })?;
        let (value, count) = match out.as_slice() {
            [v, c] => (v.clone(), c.clone()),
            _ => return Err(self.unsupported("an empty fold")),
        };
        let r = match kind {
            PoolKind::Max => value,
            PoolKind::Avg => {
                let divisor =
                    if count_include_pad { self.immediate(DType::F32, (kernel[0] * kernel[1]) as f64) } else { count };
                Reg::new(self.arith("divf", value.v, divisor.v), "f32")
            }
        };
        Ok(self.round(r, dtype))
    }

    pub(super) fn concat(&mut self, n: NodeId, axis: usize, idx: &[Ix]) -> Result<Reg, LowerError> {
        let operands = self.graph.operands(n);
        self.concat_from(&operands, 0, axis, idx, reg_ty(self.dtype(n)))
    }

    pub(super) fn concat_from(
        &mut self,
        operands: &[NodeId],
        offset: u64,
        axis: usize,
        idx: &[Ix],
        ty: &'static str,
    ) -> Result<Reg, LowerError> {
        let Some((&first, rest)) = operands.split_first() else { return Err(self.unsupported("an empty concat")) };
        let len = self.shape(first)[axis].as_known().ok_or_else(|| self.unsupported("a symbolic concat axis"))?;
        let mut at = idx.to_vec();
        at[axis] = Ix::diff(idx[axis].clone(), Ix::Const(offset));
        if rest.is_empty() {
            return self.value(first, &at);
        }
        let i = self.ix(&idx[axis])?;
        let end = self.ix(&Ix::Const(offset + len))?;
        let cond = self.cmpi("ult", i, end);
        self.select_branch(cond, ty, &mut |e| e.value(first, &at), &mut |e| {
            e.concat_from(rest, offset + len, axis, idx, ty)
        })
    }

    pub(super) fn pad(&mut self, n: NodeId, low: &[u64], value: f64, idx: &[Ix]) -> Result<Reg, LowerError> {
        let x = self.graph.operands(n)[0];
        let dtype = self.dtype(n);
        let mut inside: Option<V> = None;
        let mut at = Vec::with_capacity(idx.len());
        for (axis, (i, &lo)) in idx.iter().zip(low).enumerate() {
            let shifted = Ix::diff(i.clone(), Ix::Const(lo));
            let (iv, lov) = (self.ix(i)?, self.ix(&Ix::Const(lo))?);
            let hi = self.ix(&Ix::sum(Ix::dim(&self.shape(x)[axis]), Ix::Const(lo)))?;
            let ge = self.cmpi("uge", iv, lov);
            let lt = self.cmpi("ult", iv, hi);
            let both = self.arith("andi", ge, lt);
            inside = Some(match inside {
                Some(prev) => self.arith("andi", prev, both),
                None => both,
            });
            at.push(shifted);
        }
        let Some(cond) = inside else { return self.value(x, idx) };
        self.select_branch(cond, reg_ty(dtype), &mut |e| e.value(x, &at), &mut |e| Ok(e.immediate(dtype, value)))
    }

    pub(super) fn gather(&mut self, n: NodeId, axis: usize, idx: &[Ix]) -> Result<Reg, LowerError> {
        let ops = self.graph.operands(n);
        let (x, indices) = (ops[0], ops[1]);
        let ri = self.shape(indices).len();
        let position = self.value(indices, &idx[axis..axis + ri])?;
        let len = self.ix(&Ix::dim(&self.shape(x)[axis]))?;
        let len = self.cast("index_cast", len, position.ty);
        let zero = self.constant(&format!("0 : {}", position.ty));
        // Negative positions count from the end; out-of-range ones (an interpreter error)
        // are clamped so that no load leaves the buffer.
        let negative = self.cmpi("slt", position.v, zero);
        let wrapped = self.arith("addi", position.v, len);
        let p = self.select(negative, wrapped, position.v);
        let one = self.constant(&format!("1 : {}", position.ty));
        let last = self.arith("subi", len, one);
        let p = self.arith("maxsi", p, zero);
        let p = self.arith("minsi", p, last);
        let p = self.cast("index_cast", p, "index");
        let at: Vec<Ix> =
            idx[..axis].iter().cloned().chain([Ix::Value(p)]).chain(idx[axis + ri..].iter().cloned()).collect();
        self.value(x, &at)
    }
}
