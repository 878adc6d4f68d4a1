//! Contraction kernels: matmul and batched matmul through register tiles (packed `b` chunks,
//! vector dot products for `b` transposed) or row panels, and conv2d by output rows of 16
//! columns, plain or masked at the edges; a scalar fold for what fits neither. The epilogue
//! reads each result from the tile before the one store ([`Emitter::remember`]).

use super::*;

impl<'g, 'c> Emitter<'g, 'c> {
    /// The rows `[lo, hi)` of a tiled contraction: blocks of [`TILE_ROWS`] rows through the
    /// register tile, the remaining rows one by one through the row panel. The column tiles
    /// are the outer loop, so one tile's panel of `b` (`k` × the tile's columns) stays in
    /// cache while every row block of the range passes over it; with the rows outside, all
    /// of `b` streamed from memory once per row block.
    pub(super) fn row_blocks(&mut self, lo: V, hi: V, axis: usize, point: &[Ix]) -> Result<(), LowerError> {
        let count = self.arith("subi", hi, lo);
        let block = self.ix(&Ix::Const(TILE_ROWS))?;
        let blocks = self.arith("divui", count, block);
        let span = self.arith("muli", blocks, block);
        let split = self.arith("addi", lo, span);
        let Some((mm, cols, _)) = self.panel else { return Err(self.unsupported("a tile without a panel")) };
        let Some(tile) = self.tile.clone() else { return Err(self.unsupported("a tile without a kind")) };
        let width = match tile {
            Tile::Plain { .. } => TILE_COLS,
            Tile::Transposed { .. } => NT_COLS,
        };
        let (zero, tiles) = (self.ix(&Ix::Const(0))?, self.ix(&Ix::Const(cols / width))?);
        if let (Tile::Plain { spill, b, partial: Some((partial, packed)) }, Some(chunks)) = (&tile, self.k_chunks(mm)) {
            // Groups of rows; in each, column tile by column tile, `k` chunk by chunk, every
            // row block of the group, partial sums kept between chunks.
            self.for_step(lo, split, GROUP_ROWS, &mut |e, g| {
                let g_ix = e.ix(&g)?;
                let end = e.ix(&Ix::sum(g.clone(), Ix::Const(GROUP_ROWS)))?;
                let g_end = e.arith("minui", end, split);
                e.for_loop(zero, tiles, &mut |e, t| {
                    for (c, &(k0, len)) in chunks.iter().enumerate() {
                        let chunk = KChunk {
                            k0,
                            len,
                            first: c == 0,
                            last: c + 1 == chunks.len(),
                            partial: *partial,
                            packed: *packed,
                        };
                        e.pack_chunk(point, mm, &t, b, &chunk)?;
                        let mut inner = point.to_vec();
                        e.for_step(g_ix, g_end, TILE_ROWS, &mut |e, m| {
                            inner[axis] = m.clone();
                            let row0 = Ix::diff(m, g.clone());
                            e.tile(&inner, mm, &t, *spill, b, Some((&chunk, row0)))
                        })?;
                    }
                    Ok(())
                })
            })?;
        } else {
            self.for_loop(zero, tiles, &mut |e, t| {
                let mut inner = point.to_vec();
                e.for_step(lo, split, TILE_ROWS, &mut |e, m| {
                    inner[axis] = m;
                    match &tile {
                        Tile::Plain { spill, b, .. } => e.tile(&inner, mm, &t, *spill, b, None),
                        Tile::Transposed { a, b } => e.tile_transposed(&inner, mm, a, b, &t),
                    }
                })
            })?;
        }
        let mut inner = point.to_vec();
        self.for_loop(split, hi, &mut |e, m| {
            inner[axis] = m;
            e.row_level(&[], &inner)
        })
    }

    /// [`LANES`] elements of a row of `view` from `column`, every `step`-th (1 or 2): one
    /// vector load, or two and the even lanes of both.
    pub(super) fn strided_row(
        &mut self,
        view: &Strided,
        lead: [Ix; 3],
        column: Ix,
        step: u64,
    ) -> Result<V, LowerError> {
        let load = |e: &mut Self, at: Ix| -> Result<V, LowerError> {
            let [n, c, y] = lead.clone();
            let ptr = e.view_address(view, &[n, c, y, at])?;
            Ok(e.load_ptr(ptr, VEC, Some(4)))
        };
        let low = load(self, column.clone())?;
        if step == 1 {
            return Ok(low);
        }
        let high = load(self, Ix::sum(column, Ix::Const(LANES)))?;
        Ok(self.even_lanes(low, high, 2, VEC))
    }

    /// Input columns `start·step + offset + l·step` (`l` < 16; `offset` may be negative) of a
    /// row of `view`, loaded under a mask of those inside `[0, width)` (zeros elsewhere): for
    /// stride 2, 32 contiguous columns under their mask and the even lanes of them.
    pub(super) fn masked_row(
        &mut self,
        view: &Strided,
        lead: [Ix; 3],
        start: &Ix,
        offset: i64,
        step: u64,
        width: u64,
    ) -> Result<V, LowerError> {
        let [n, c, y] = lead;
        let row = self.view_address(view, &[n, c, y, Ix::Const(0)])?;
        let first = self.ix(&Ix::prod(start.clone(), Ix::Const(step)))?;
        let first = self.cast("index_cast", first, "i64");
        let shift = self.constant(&format!("{offset} : i64"));
        let first = self.arith("addi", first, shift);
        let span = LANES * step;
        let (iv, fv) = (format!("vector<{span}xi64>"), format!("vector<{span}xf32>"));
        let iota: Vec<String> = (0..span).map(|l| l.to_string()).collect();
        let iota = self.constant(&format!("dense<[{}]> : {}", iota.join(", "), iv));
        let base = self.op("vector.broadcast", &[first], &iv, &[]);
        let columns = self.arith("addi", base, iota);
        let zero = self.constant(&format!("dense<0> : {iv}"));
        let end = self.constant(&format!("dense<{width}> : {iv}"));
        let after = self.cmpi("sge", columns, zero);
        let before = self.cmpi("slt", columns, end);
        let mask = self.arith("andi", after, before);
        let ptr = self.gep(row, first, "f32");
        let zeros = self.constant(&format!("dense<0.0> : {fv}"));
        let loaded = self.op("llvm.intr.masked.load", &[ptr, mask, zeros], &fv, &[("alignment", "4 : i32")]);
        if step == 1 {
            return Ok(loaded);
        }
        Ok(self.even_lanes(loaded, loaded, step, VEC))
    }

    /// Lanes `0, step, 2·step, ...` of `a` then `b` (a `vector.shuffle`), as a `ty`.
    pub(super) fn even_lanes(&mut self, a: V, b: V, step: u64, ty: &str) -> V {
        let lanes: Vec<String> = (0..LANES).map(|l| (step * l).to_string()).collect();
        let mask = format!("array<i64: {}>", lanes.join(", "));
        self.op("vector.shuffle", &[a, b], ty, &[("mask", &mask)])
    }

    /// The convolution of a contraction kernel that can run [`LANES`] output columns at a
    /// time, and its input as strides: f32, writing the whole domain, a column stride of 1
    /// or 2, unit stride along the input's columns, static spatial sizes and window.
    pub(super) fn conv_fits(&self) -> Option<(NodeId, Strided)> {
        if self.kernel.kind != KernelKind::Contraction {
            return None;
        }
        let conv = self.kernel.nodes.iter().copied().find(|&n| matches!(self.graph.op(n), Op::Conv2d { .. }))?;
        let Op::Conv2d { stride, .. } = self.graph.op(conv) else { return None };
        let ops = self.graph.operands(conv);
        let x = self.strided(ops[0]).filter(|x| x.unit_along(3))?;
        let statics =
            [self.shape(ops[0]), self.shape(ops[1])].iter().all(|s| s[2..].iter().all(|d| d.as_known().is_some()));
        let fits = matches!(stride[1], 1 | 2) && statics && self.shape(conv) == self.kernel.domain.as_slice();
        (fits && ops.iter().all(|&o| self.dtype(o) == DType::F32)).then_some((conv, x))
    }

    /// One row of a convolution's output (`point` fixes batch, channel and row), [`LANES`]
    /// columns at a time ([`Emitter::conv_block`]): the columns whose windows lie inside the
    /// input row in plain blocks, the edges in masked ones.
    pub(super) fn conv_row(&mut self, point: &[Ix], conv: NodeId, xv: &Strided, spill: V) -> Result<(), LowerError> {
        let Op::Conv2d { stride, padding, dilation, groups } = self.graph.op(conv).clone() else {
            return Err(self.unsupported("a conv row without a conv"));
        };
        let ops = self.graph.operands(conv).to_vec();
        let (xs, ws) = (self.shape(ops[0]).to_vec(), self.shape(ops[1]).to_vec());
        let known = |d: &Dim| d.as_known().unwrap_or(1);
        let (in_w, out_w, kh, kw) = (known(&xs[3]), known(&self.shape(conv)[3]), known(&ws[2]), known(&ws[3]));
        let (left, reach, step) = (padding[1], (kw - 1) * dilation[1], stride[1]);
        // Output column j reads input columns j·step - left through j·step + reach - left: the
        // columns [lo, hi) read inside the row. They run in blocks of 16 from lo, the last
        // block ending at hi (overlapping the one before it: its columns are stored twice,
        // with the same values); a masked block covers each edge.
        let lo = left.div_ceil(step).min(out_w);
        let hi = ((in_w + left).saturating_sub(reach + 1) / step + 1).min(out_w).max(lo);
        let window = Window { stride, padding, dilation };
        let cx = ConvBlock { conv, x: xv.clone(), spill, window, groups, kh, kw, in_w };
        let blocks = |e: &mut Self, from: u64, count: u64, masked: bool| -> Result<(), LowerError> {
            let (zero, blocks) = (e.ix(&Ix::Const(0))?, e.ix(&Ix::Const(count))?);
            let lanes = masked.then_some(LANES);
            e.for_loop(zero, blocks, &mut |e, b| {
                e.conv_block(point, &cx, Ix::sum(Ix::Const(from), Ix::prod(b, Ix::Const(LANES))), lanes)
            })
        };
        // A row with few columns inside the input, or wide edges, runs in masked blocks from
        // its start: lanes reading outside the input row load the padding's zeros.
        if hi - lo < LANES || lo > LANES || out_w - hi > LANES {
            blocks(self, 0, out_w / LANES, true)?;
            return match (out_w % LANES, out_w >= LANES) {
                (0, _) => Ok(()),
                (_, true) => self.conv_block(point, &cx, Ix::Const(out_w - LANES), Some(LANES)),
                (rest, false) => self.conv_block(point, &cx, Ix::Const(0), Some(rest)),
            };
        }
        if lo > 0 {
            self.conv_block(point, &cx, Ix::Const(0), Some(LANES))?;
        }
        blocks(self, lo, (hi - lo) / LANES, false)?;
        if (hi - lo) % LANES != 0 {
            self.conv_block(point, &cx, Ix::Const(hi - LANES), None)?;
        }
        if hi < out_w {
            self.conv_block(point, &cx, Ix::Const(out_w - LANES), Some(LANES))?;
        }
        Ok(())
    }

    /// Output columns `start..start + 16` of a convolution row: one vector accumulator over
    /// channels and taps, spilled for the epilogue. Unmasked, every window lies inside the
    /// input row; `masked` (the lanes to store) loads each tap's inputs under a mask of the
    /// columns inside the row, zeros elsewhere.
    pub(super) fn conv_block(
        &mut self,
        point: &[Ix],
        cx: &ConvBlock,
        start: Ix,
        masked: Option<u64>,
    ) -> Result<(), LowerError> {
        let ops = self.graph.operands(cx.conv).to_vec();
        let (xs, ws) = (self.shape(ops[0]).to_vec(), self.shape(ops[1]).to_vec());
        let (step, left, dilation) = (cx.window.stride[1], cx.window.padding[1], cx.window.dilation[1]);
        let domain = self.kernel.domain.clone();
        let outputs = self.kernel.outputs.clone();
        let input0 = Ix::prod(start.clone(), Ix::Const(step));
        let per_group = Ix::quot(Ix::dim(&ws[0]), Ix::Const(cx.groups));
        let first_channel = Ix::prod(Ix::quot(point[1].clone(), per_group), Ix::dim(&ws[1]));
        let zero_v = self.zero_vector();
        let acc = self.fold(&Ix::dim(&ws[1]), &[zero_v], &mut |e, c, carried| {
            let channel = Ix::sum(first_channel.clone(), c.clone());
            let mut acc = carried[0].clone();
            for p in 0..cx.kh {
                let (inside, y) = e.tap(&point[2], &Ix::Const(p), 0, &cx.window, &xs[2])?;
                let before = acc.clone();
                acc = e.select_branch(
                    inside,
                    VEC,
                    &mut |e| {
                        let mut a = before.clone();
                        for q in 0..cx.kw {
                            let lead = [point[0].clone(), channel.clone(), y.clone()];
                            let xs = match masked {
                                Some(_) => {
                                    let offset = (q * dilation) as i64 - left as i64;
                                    e.masked_row(&cx.x, lead, &start, offset, step, cx.in_w)?
                                }
                                None => {
                                    let column =
                                        Ix::diff(Ix::sum(input0.clone(), Ix::Const(q * dilation)), Ix::Const(left));
                                    e.strided_row(&cx.x, lead, column, step)?
                                }
                            };
                            let w = e.value(ops[1], &[point[1].clone(), c.clone(), Ix::Const(p), Ix::Const(q)])?;
                            let wv = e.splat(w.v);
                            a = e.fmuladd(xs, wv, a.v, VEC);
                        }
                        Ok(a)
                    },
                    &mut |_| Ok(before.clone()),
                )?;
            }
            Ok(vec![acc])
        })?;
        let mut acc = acc.into_iter().next().ok_or_else(|| self.unsupported("an empty fold"))?;
        if let Some(&bias) = ops.get(2) {
            let b = self.value(bias, &[point[1].clone()])?;
            let bv = self.splat(b.v);
            acc = Reg::new(self.arith("addf", acc.v, bv), VEC);
        }
        let p0 = e_ptr(self, cx.spill, &Ix::Const(0))?;
        self.store_ptr(acc.v, p0, Some(4));
        let (zero_i, lanes) = (self.ix(&Ix::Const(0))?, self.ix(&Ix::Const(masked.unwrap_or(LANES)))?);
        self.for_loop(zero_i, lanes, &mut |e, l| {
            let mut at = point.to_vec();
            at[3] = Ix::sum(start.clone(), l.clone());
            let p = e_ptr(e, cx.spill, &l)?;
            let v = Reg { v: e.load_ptr(p, "f32", None), ty: "f32" };
            e.remember(cx.conv, &at, v);
            outputs.iter().try_for_each(|&o| e.store_at(o, &at, &domain))
        })
    }

    /// `n` as strides over one of the kernel's buffers, when the views between allow it.
    pub(super) fn strided(&self, n: NodeId) -> Option<Strided> {
        strided(self.graph, &self.kernel.inputs, n).filter(|s| self.dtype(s.buffer) == DType::F32)
    }

    /// `b` when the panel's matmul can use the register tile: f32 operands, `b` read in
    /// place with unit stride along its columns, and the columns a multiple of
    /// [`TILE_COLS`].
    pub(super) fn tile_fits(&self, mm: NodeId, cols: u64) -> Option<Strided> {
        let ops = self.graph.operands(mm);
        let f32s = ops.iter().take(2).all(|&o| self.dtype(o) == DType::F32);
        let b = self.strided(ops[1]).filter(|b| b.unit_along(b.strides.len() - 1))?;
        (f32s && cols.is_multiple_of(TILE_COLS)).then_some(b)
    }

    /// `a` and `b` when the panel's matmul reads both with unit stride along `k` (`linear`'s
    /// PyTorch `[out, in]` weights transposed, attention's keys), both f32, `k` a multiple
    /// of [`LANES`] and the columns of [`NT_COLS`]: then rows of `a` and columns of `b` meet
    /// in vector dot products.
    pub(super) fn transposed_fits(&self, mm: NodeId, cols: u64) -> Option<(Strided, Strided)> {
        let ops = self.graph.operands(mm);
        let a = self.strided(ops[0]).filter(|a| a.unit_along(a.strides.len() - 1))?;
        let b = self.strided(ops[1]).filter(|b| b.strides.len() >= 2 && b.unit_along(b.strides.len() - 2))?;
        let depth = self.shape(ops[0]).last()?.as_known()?;
        (depth.is_multiple_of(LANES) && cols.is_multiple_of(NT_COLS)).then_some((a, b))
    }

    /// The address of element `idx` of a strided view.
    pub(super) fn view_address(&mut self, view: &Strided, idx: &[Ix]) -> Result<V, LowerError> {
        self.element_ptr(view.buffer, &view.position(idx))
    }

    /// [`TILE_ROWS`] rows × [`NT_COLS`] columns as vector dot products over `k`: a row of
    /// `a` and a row of `w` loaded [`LANES`] at a time, one vector accumulator per result,
    /// summed across lanes at the end.
    pub(super) fn tile_transposed(
        &mut self,
        point: &[Ix],
        mm: NodeId,
        av: &Strided,
        bv: &Strided,
        t: &Ix,
    ) -> Result<(), LowerError> {
        let r = point.len();
        let (a, b) = (self.graph.operands(mm)[0], self.graph.operands(mm)[1]);
        let (sa, sb) = (self.shape(a), self.shape(b));
        let a_batch = index::broadcast(&point[..r - 2], &sa[..sa.len() - 2]);
        let b_batch = index::broadcast(&point[..r - 2], &sb[..sb.len() - 2]);
        let rows: Vec<Ix> = (0..TILE_ROWS).map(|i| Ix::sum(point[r - 2].clone(), Ix::Const(i))).collect();
        let cols: Vec<Ix> =
            (0..NT_COLS).map(|j| Ix::sum(Ix::prod(t.clone(), Ix::Const(NT_COLS)), Ix::Const(j))).collect();
        let zero_v = self.zero_vector();
        let init = vec![zero_v; (TILE_ROWS * NT_COLS) as usize];
        let chunks = Ix::quot(Ix::dim(&sa[sa.len() - 1]), Ix::Const(LANES));
        let acc = self.fold(&chunks, &init, &mut |e, c, carried| {
            let k = Ix::prod(c, Ix::Const(LANES));
            let load = |e: &mut Self, view: &Strided, at: Vec<Ix>| -> Result<V, LowerError> {
                let p = e.view_address(view, &at)?;
                Ok(e.load_ptr(p, VEC, Some(4)))
            };
            let mut a_rows = Vec::new();
            for m in &rows {
                a_rows.push(load(e, av, a_batch.iter().cloned().chain([m.clone(), k.clone()]).collect())?);
            }
            // Column `n` of `b`, `LANES` consecutive elements along `k` from row `k`.
            let mut w_rows = Vec::new();
            for n in &cols {
                w_rows.push(load(e, bv, b_batch.iter().cloned().chain([k.clone(), n.clone()]).collect())?);
            }
            let mut next = Vec::with_capacity(carried.len());
            for (i, av) in a_rows.iter().enumerate() {
                for (j, wv) in w_rows.iter().enumerate() {
                    let acc = &carried[i * NT_COLS as usize + j];
                    next.push(e.fmuladd(*av, *wv, acc.v, VEC));
                }
            }
            Ok(next)
        })?;
        let domain = self.kernel.domain.clone();
        let outputs = self.kernel.outputs.clone();
        for (i, m) in rows.iter().enumerate() {
            for (j, n) in cols.iter().enumerate() {
                let v = &acc[i * NT_COLS as usize + j];
                let kind = [("kind", "#vector.kind<add>"), ("fastmath", "#arith.fastmath<reassoc>")];
                let sum = Reg::new(self.op("vector.reduction", &[v.v], "f32", &kind), "f32");
                let mut at = point.to_vec();
                at[r - 2] = m.clone();
                at[r - 1] = n.clone();
                self.remember(mm, &at, sum);
                outputs.iter().try_for_each(|&o| self.store_at(o, &at, &domain))?;
            }
        }
        Ok(())
    }

    /// Copies the chunk of `b` under column tile `t` (rows `k0..k0 + len`, the tile's 64
    /// columns) into the chunk's packed buffer. `point` gives the batch.
    pub(super) fn pack_chunk(
        &mut self,
        point: &[Ix],
        mm: NodeId,
        t: &Ix,
        bv: &Strided,
        c: &KChunk,
    ) -> Result<(), LowerError> {
        let r = point.len();
        let sb = self.shape(self.graph.operands(mm)[1]).to_vec();
        let b_batch = index::broadcast(&point[..r - 2], &sb[..sb.len() - 2]);
        let n0 = Ix::prod(t.clone(), Ix::Const(TILE_COLS));
        let (zero, rows) = (self.ix(&Ix::Const(0))?, self.ix(&Ix::Const(c.len))?);
        self.for_loop(zero, rows, &mut |e, kk| {
            for v in 0..TILE_COLS / LANES {
                let col = Ix::sum(n0.clone(), Ix::Const(v * LANES));
                let at: Vec<Ix> = b_batch.iter().cloned().chain([Ix::sum(Ix::Const(c.k0), kk.clone()), col]).collect();
                let from = e.view_address(bv, &at)?;
                let x = e.load_ptr(from, VEC, Some(4));
                let to =
                    e_ptr(e, c.packed, &Ix::sum(Ix::prod(kk.clone(), Ix::Const(TILE_COLS)), Ix::Const(v * LANES)))?;
                e.store_ptr(x, to, Some(64));
            }
            Ok(())
        })
    }

    /// The static `k` chunks `(start, length)` of a blocked plain tile, when `k` is static
    /// and at least two chunks long.
    pub(super) fn k_chunks(&self, mm: NodeId) -> Option<Vec<(u64, u64)>> {
        let depth = self.shape(self.graph.operands(mm)[0]).last()?.as_known()?;
        (depth >= 2 * KC).then(|| (0..depth).step_by(KC as usize).map(|k| (k, KC.min(depth - k))).collect())
    }

    pub(super) fn tile(
        &mut self,
        point: &[Ix],
        mm: NodeId,
        t: &Ix,
        tile_buf: V,
        bv: &Strided,
        chunk: Option<(&KChunk, Ix)>,
    ) -> Result<(), LowerError> {
        let r = point.len();
        let ops = self.graph.operands(mm);
        let (a, b) = (ops[0], ops[1]);
        let (sa, sb) = (self.shape(a), self.shape(b));
        let batch = &point[..r - 2];
        let a_batch = index::broadcast(batch, &sa[..sa.len() - 2]);
        let b_batch = index::broadcast(batch, &sb[..sb.len() - 2]);
        let rows: Vec<Ix> = (0..TILE_ROWS).map(|i| Ix::sum(point[r - 2].clone(), Ix::Const(i))).collect();
        let n0 = Ix::prod(t.clone(), Ix::Const(TILE_COLS));
        let vectors = TILE_COLS / LANES;
        // Where row `i`, vector `v` of this block keeps its partial sum between chunks.
        let partial_at = |row0: &Ix, i: u64, v: u64| {
            Ix::sum(Ix::prod(Ix::sum(row0.clone(), Ix::Const(i)), Ix::Const(TILE_COLS)), Ix::Const(v * LANES))
        };
        let init = match &chunk {
            Some((c, row0)) if !c.first => {
                let mut init = Vec::with_capacity((TILE_ROWS * vectors) as usize);
                for i in 0..TILE_ROWS {
                    for v in 0..vectors {
                        let p = e_ptr(self, c.partial, &partial_at(row0, i, v))?;
                        init.push(Reg::new(self.load_ptr(p, VEC, Some(4)), VEC));
                    }
                }
                init
            }
            _ => {
                let zero_v = self.zero_vector();
                vec![zero_v; (TILE_ROWS * vectors) as usize]
            }
        };
        let (k0, depth) = match &chunk {
            Some((c, _)) => (c.k0, Ix::Const(c.len)),
            None => (0, Ix::dim(&sa[sa.len() - 1])),
        };
        let packed = chunk.as_ref().map(|(c, _)| c.packed);
        let acc = self.fold(&depth, &init, &mut |e, local, carried| {
            let k = Ix::sum(Ix::Const(k0), local.clone());
            let mut b_rows = Vec::new();
            for v in 0..vectors {
                let p = match &packed {
                    Some(buf) => {
                        e_ptr(e, *buf, &Ix::sum(Ix::prod(local.clone(), Ix::Const(TILE_COLS)), Ix::Const(v * LANES)))?
                    }
                    None => {
                        let col = Ix::sum(n0.clone(), Ix::Const(v * LANES));
                        let at: Vec<Ix> = b_batch.iter().cloned().chain([k.clone(), col]).collect();
                        e.view_address(bv, &at)?
                    }
                };
                b_rows.push(e.load_ptr(p, VEC, Some(4)));
            }
            let mut next = Vec::with_capacity(carried.len());
            for (i, row) in rows.iter().enumerate() {
                let at: Vec<Ix> = a_batch.iter().cloned().chain([row.clone(), k.clone()]).collect();
                let x = e.value(a, &at)?;
                let xv = e.splat(x.v);
                for (v, bv) in b_rows.iter().enumerate() {
                    let c = &carried[i * vectors as usize + v];
                    next.push(e.fmuladd(xv, *bv, c.v, VEC));
                }
            }
            Ok(next)
        })?;
        if let Some((c, row0)) = chunk.filter(|(c, _)| !c.last) {
            for (slot, v) in acc.iter().enumerate() {
                let (i, w) = (slot as u64 / vectors, slot as u64 % vectors);
                let p = e_ptr(self, c.partial, &partial_at(&row0, i, w))?;
                self.store_ptr(v.v, p, Some(4));
            }
            return Ok(());
        }
        for (slot, v) in acc.iter().enumerate() {
            let at = Ix::Const(slot as u64 * LANES);
            let p = e_ptr(self, tile_buf, &at)?;
            self.store_ptr(v.v, p, Some(4));
        }
        let domain = self.kernel.domain.clone();
        let outputs = self.kernel.outputs.clone();
        let (zero_i, width) = (self.ix(&Ix::Const(0))?, self.ix(&Ix::Const(TILE_COLS))?);
        for (i, row) in rows.iter().enumerate() {
            self.for_loop(zero_i, width, &mut |e, j| {
                let mut at = point.to_vec();
                at[r - 2] = row.clone();
                at[r - 1] = Ix::sum(n0.clone(), j.clone());
                let p = e_ptr(e, tile_buf, &Ix::sum(Ix::Const(i as u64 * TILE_COLS), j))?;
                let sum = Reg { v: e.load_ptr(p, "f32", None), ty: "f32" };
                e.remember(mm, &at, sum);
                outputs.iter().try_for_each(|&o| e.store_at(o, &at, &domain))
            })?;
        }
        Ok(())
    }

    /// The matmul of a contraction kernel that can run by row panels: it writes the whole
    /// domain in a float dtype and the domain's last axis (its columns) is static.
    pub(super) fn panel_matmul(&self) -> Option<(NodeId, u64)> {
        if self.kernel.kind != KernelKind::Contraction || self.kernel.domain.len() < 2 {
            return None;
        }
        let mm = self.kernel.nodes.iter().copied().find(|&n| *self.graph.op(n) == Op::MatMul)?;
        let cols = self.kernel.domain.last()?.as_known()?;
        (self.shape(mm) == self.kernel.domain.as_slice() && is_float(self.dtype(mm))).then_some((mm, cols))
    }

    /// One row of a panel contraction: `acc[n] = Σ_k a[m, k]·b[k, n]` with the column loop
    /// innermost (contiguous in `b` and `acc`, so LLVM vectorizes it), then the epilogue
    /// and the stores, column by column.
    pub(super) fn panel_row(&mut self, point: &[Ix], mm: NodeId, cols: u64, acc: V) -> Result<(), LowerError> {
        let r = point.len();
        let ops = self.graph.operands(mm);
        let (a, b) = (ops[0], ops[1]);
        let (sa, sb) = (self.shape(a), self.shape(b));
        let batch = &point[..r - 2];
        let m = point[r - 2].clone();
        let a_batch = index::broadcast(batch, &sa[..sa.len() - 2]);
        let b_batch = index::broadcast(batch, &sb[..sb.len() - 2]);
        let (zero, hi) = (self.ix(&Ix::Const(0))?, self.ix(&Ix::Const(cols))?);
        let depth = self.ix(&Ix::dim(&sa[sa.len() - 1]))?;
        self.for_loop(zero, hi, &mut |e, n| {
            let p = e_ptr(e, acc, &n)?;
            let z = e.immediate(DType::F32, 0.0);
            e.store_ptr(z.v, p, None);
            Ok(())
        })?;
        self.for_loop(zero, depth, &mut |e, k| {
            let at_a: Vec<Ix> = a_batch.iter().cloned().chain([m.clone(), k.clone()]).collect();
            let x = e.value(a, &at_a)?;
            e.for_loop(zero, hi, &mut |e, n| {
                let at_b: Vec<Ix> = b_batch.iter().cloned().chain([k.clone(), n.clone()]).collect();
                let y = e.value(b, &at_b)?;
                let p = e_ptr(e, acc, &n)?;
                let old = e.load_ptr(p, "f32", None);
                let new = e.fmuladd(x.v, y.v, old, "f32").v;
                e.store_ptr(new, p, None);
                Ok(())
            })
        })?;
        let domain = self.kernel.domain.clone();
        let outputs = self.kernel.outputs.clone();
        self.for_loop(zero, hi, &mut |e, n| {
            let mut at = point.to_vec();
            at[r - 1] = n.clone();
            let p = e_ptr(e, acc, &n)?;
            let sum = Reg { v: e.load_ptr(p, "f32", None), ty: "f32" };
            let sum = e.round(sum, e.dtype(mm));
            e.remember(mm, &at, sum);
            outputs.iter().try_for_each(|&o| e.store_at(o, &at, &domain))
        })
    }

    pub(super) fn matmul(&mut self, n: NodeId, idx: &[Ix]) -> Result<Reg, LowerError> {
        let ops = self.graph.operands(n);
        let (a, b) = (ops[0], ops[1]);
        let (sa, sb) = (self.shape(a), self.shape(b));
        let r = idx.len();
        let (m, col) = (idx[r - 2].clone(), idx[r - 1].clone());
        let batch = &idx[..r - 2];
        let a_batch = index::broadcast(batch, &sa[..sa.len() - 2]);
        let b_batch = index::broadcast(batch, &sb[..sb.len() - 2]);
        let extent = Ix::dim(&sa[sa.len() - 1]);
        let dtype = self.dtype(n);
        let acc_ty = if is_float(dtype) { DType::F32 } else { dtype };
        let (mul, add) = if is_float(dtype) { ("arith.mulf", "arith.addf") } else { ("arith.muli", "arith.addi") };
        let zero = self.immediate(acc_ty, 0.0);
        let ty = reg_ty(acc_ty);
        let sum = self.fold(&extent, &[zero], &mut |e, k, carried| {
            let at_a: Vec<Ix> = a_batch.iter().cloned().chain([m.clone(), k.clone()]).collect();
            let at_b: Vec<Ix> = b_batch.iter().cloned().chain([k, col.clone()]).collect();
            let (x, y) = (e.value(a, &at_a)?, e.value(b, &at_b)?);
            let p = e.binop(mul, x.v, y.v);
            Ok(vec![Reg::new(e.binop(add, carried[0].v, p), ty)])
        })?;
        let s = sum.into_iter().next().ok_or_else(|| self.unsupported("an empty fold"))?;
        Ok(self.round(s, dtype))
    }

    /// One output element of a convolution: a fold over the input channels of its group,
    /// each step the taps of the window (unrolled when the window is static, so no tap index
    /// is divided out of a flat counter), a tap outside the input contributing nothing.
    pub(super) fn conv2d(&mut self, n: NodeId, w: &Window, groups: u64, idx: &[Ix]) -> Result<Reg, LowerError> {
        let ops = self.graph.operands(n);
        let (x, weight) = (ops[0], ops[1]);
        let ws = self.shape(weight);
        let (per_group_out, kh, kw) = (Ix::quot(Ix::dim(&ws[0]), Ix::Const(groups)), &ws[2], &ws[3]);
        let c_in = ws[1].clone();
        let first_channel = Ix::prod(Ix::quot(idx[1].clone(), per_group_out), Ix::dim(&c_in));
        let unrolled = match (kh.as_known(), kw.as_known()) {
            (Some(h), Some(w)) if h * w <= 49 => Some((h, w)),
            _ => None,
        };
        let (fold_dims, window): (Vec<Dim>, Vec<(u64, u64)>) = match unrolled {
            Some((h, w)) => (vec![c_in.clone()], (0..h).flat_map(|p| (0..w).map(move |q| (p, q))).collect()),
            None => (vec![c_in.clone(), kh.clone(), kw.clone()], vec![(0, 0)]),
        };
        let extent = fold_dims.iter().fold(Ix::Const(1), |acc, d| Ix::prod(acc, Ix::dim(d)));
        let dtype = self.dtype(n);
        let zero = self.immediate(DType::F32, 0.0);
        let sum = self.fold(&extent, &[zero], &mut |e, i, carried| {
            let t = index::delinearize(i, &fold_dims);
            let channel = Ix::sum(first_channel.clone(), t[0].clone());
            let mut acc = carried[0].clone();
            for &(p, q) in &window {
                let (tp, tq) = match unrolled {
                    Some(_) => (Ix::Const(p), Ix::Const(q)),
                    None => (t[1].clone(), t[2].clone()),
                };
                let (inside, yx) = e.taps(idx, &[tp.clone(), tq.clone()], w, x)?;
                let at_x = vec![idx[0].clone(), channel.clone(), yx[0].clone(), yx[1].clone()];
                let at_w = vec![idx[1].clone(), t[0].clone(), tp, tq];
                let term = e.select_branch(
                    inside,
                    "f32",
                    &mut |e| {
                        let (a, b) = (e.value(x, &at_x)?, e.value(weight, &at_w)?);
                        Ok(Reg::new(e.arith("mulf", a.v, b.v), "f32"))
                    },
                    &mut |e| Ok(e.immediate(DType::F32, 0.0)),
                )?;
                acc = Reg::new(e.arith("addf", acc.v, term.v), "f32");
            }
            Ok(vec![acc])
        })?;
        let mut s = sum.into_iter().next().ok_or_else(|| self.unsupported("an empty fold"))?;
        if let Some(&bias) = ops.get(2) {
            let b = self.value(bias, &[idx[1].clone()])?;
            s = Reg::new(self.arith("addf", s.v, b.v), "f32");
        }
        Ok(self.round(s, dtype))
    }
}
