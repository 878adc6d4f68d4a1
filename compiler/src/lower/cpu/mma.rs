//! GPU contractions on tensor cores: an f16 or bf16 matmul, batched or not, with whatever
//! epilogue its kernel holds, as `mma.sync.m16n8k16` products with f32 accumulators.
//!
//! A block of [`MMA_THREADS`] threads computes a [`BM`] × [`BN`] tile of the output; its 8
//! warps, 4 along the rows by 2 along the columns, compute 32 × 32 each as 2 × 4 `m16n8k16`
//! products per 16 of `k`. `k` goes in steps of [`BK`]: the block stages the step's [`BM`] ×
//! [`BK`] of `a` and [`BK`] × [`BN`] of `b` in shared memory, each element computed by the
//! ordinary value mechanism (so `a` and `b` may be any f16/bf16 values: buffers, views, casts)
//! and zero outside the matrices, then each warp reads its fragments with `ldmatrix` (`b`
//! transposed on the way) and multiplies. Rows of the shared tiles are padded by 16 bytes, so
//! the 8 rows one `ldmatrix` reads start in different banks. The output tiles are found
//! grid-stride, as every GPU kernel's points are. Afterwards each lane holds 32 results at the
//! places the accumulator layout gives, and runs the kernel's epilogue on each before its one
//! store, as the CPU's register tiles do.
//!
//! The layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"): lane `l` holds accumulator
//! elements `(l/4, 2·(l%4) + j)` and `(l/4 + 8, 2·(l%4) + j)`, `j` < 2; `ldmatrix.x4` at rows
//! `l%16`, columns `8·(l/16)` gives the A fragment's four registers in order, `ldmatrix.x2.trans`
//! at rows `l%16` of `b` the B fragment's two.

use super::*;

/// Rows of the output per block.
const BM: u64 = 128;
/// Columns of the output per block.
const BN: u64 = 64;
/// `k` per shared step.
const BK: u64 = 32;
/// Elements of padding after each shared row: 16 bytes.
const PAD: u64 = 8;
/// Threads of a tensor-core block (the runtime launches every kernel with this many).
pub(super) const MMA_THREADS: u64 = 256;

/// The matmul of a contraction kernel that runs on tensor cores, and its operands' dtype: both
/// operands f16, or both bf16, and the matmul writes the kernel's domain.
pub(super) fn tensor_core_matmul(graph: &Graph, kernel: &Kernel) -> Option<(NodeId, DType)> {
    if kernel.kind != KernelKind::Contraction || kernel.domain.len() < 2 {
        return None;
    }
    let mm = kernel.nodes.iter().copied().find(|&n| *graph.op(n) == Op::MatMul)?;
    let ops = graph.operands(mm);
    let dtype = graph.ty(ops[0]).dtype;
    let fits = graph.ty(ops[1]).dtype == dtype && graph.ty(mm).shape == kernel.domain;
    (fits && matches!(dtype, DType::F16 | DType::BF16)).then_some((mm, dtype))
}

/// The shared tiles' types: `a`'s step, then `b`'s.
pub(super) fn shared_tiles(dtype: DType) -> [String; 2] {
    let t = mem_ty(dtype);
    let shared = "#gpu.address_space<workgroup>";
    [format!("memref<{BM}x{}x{t}, {shared}>", BK + PAD), format!("memref<{BK}x{}x{t}, {shared}>", BN + PAD)]
}

/// Where one block works: the output tile's first row and column, the batch, and the bounds.
struct MmaTile {
    m0: V,
    n0: V,
    batch: Vec<Ix>,
    rows_end: V,
    cols: V,
}

impl<'g, 'c> Emitter<'g, 'c> {
    /// The kernel: the output tiles of the call's range, grid-stride.
    pub(super) fn mma_tiles(&mut self, mm: NodeId, dtype: DType, shared: [V; 2]) -> Result<(), LowerError> {
        let domain = self.kernel.domain.clone();
        let r = domain.len();
        let begin = self.cast("index_cast", self.params[1], "index");
        let end = self.cast("index_cast", self.params[2], "index");
        let abi = parallel_axis(self.kernel);
        // Every axis but the columns: its first index and its count in this call.
        let mut ranges = Vec::with_capacity(r - 1);
        for (a, d) in domain[..r - 1].iter().enumerate() {
            ranges.push(match abi {
                Some(x) if x == a => (begin, self.arith("subi", end, begin)),
                _ => (self.ix(&Ix::Const(0))?, self.ix(&Ix::dim(d))?),
            });
        }
        let cols = self.ix(&Ix::dim(&domain[r - 1]))?;
        match abi {
            Some(_) => self.mma_grid(mm, dtype, shared, &ranges, cols),
            None => self.one_point(begin, end, &mut |e| e.mma_grid(mm, dtype, shared, &ranges, cols)),
        }
    }

    /// Tile `t` of the grid-stride loop is `((batch…) · tiles_m + tm) · tiles_n + tn`.
    fn mma_grid(
        &mut self,
        mm: NodeId,
        dtype: DType,
        shared: [V; 2],
        ranges: &[(V, V)],
        cols: V,
    ) -> Result<(), LowerError> {
        let r = ranges.len() + 1;
        let (rows_lo, rows) = ranges[r - 2];
        let (tiles_m, tiles_n) = (self.ceil_div(rows, BM)?, self.ceil_div(cols, BN)?);
        let mut total = self.arith("muli", tiles_m, tiles_n);
        for &(_, count) in &ranges[..r - 2] {
            total = self.arith("muli", total, count);
        }
        let rows_end = self.arith("addi", rows_lo, rows);
        let x = [("dimension", "#gpu<dim x>")];
        let (block, grid) = (self.op("gpu.block_id", &[], "index", &x), self.op("gpu.grid_dim", &[], "index", &x));
        self.for_stride(block, total, grid, &mut |e, _, t| {
            let tn = e.arith("remui", t, tiles_n);
            let rest = e.arith("divui", t, tiles_n);
            let tm = e.arith("remui", rest, tiles_m);
            let mut rest = e.arith("divui", rest, tiles_m);
            let mut batch = vec![Ix::Const(0); r - 2];
            for a in (0..r - 2).rev() {
                let (lo, count) = ranges[a];
                let i = e.arith("remui", rest, count);
                rest = e.arith("divui", rest, count);
                batch[a] = Ix::Value(e.arith("addi", lo, i));
            }
            let (bm, bn) = (e.ix(&Ix::Const(BM))?, e.ix(&Ix::Const(BN))?);
            let m0 = e.arith("muli", tm, bm);
            let m0 = e.arith("addi", rows_lo, m0);
            let n0 = e.arith("muli", tn, bn);
            e.mma_tile(mm, dtype, shared, &MmaTile { m0, n0, batch, rows_end, cols })
        })
    }

    /// One output tile: the `k` steps, then the epilogue of every result this lane holds.
    fn mma_tile(&mut self, mm: NodeId, dtype: DType, shared: [V; 2], tile: &MmaTile) -> Result<(), LowerError> {
        let ops = self.graph.operands(mm);
        let (a, b) = (ops[0], ops[1]);
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let a_batch = index::broadcast(&tile.batch, &sa[..sa.len() - 2]);
        let b_batch = index::broadcast(&tile.batch, &sb[..sb.len() - 2]);
        let depth = self.ix(&Ix::dim(&sa[sa.len() - 1]))?;
        let steps = self.ceil_div(depth, BK)?;
        let x = [("dimension", "#gpu<dim x>")];
        let tid = self.op("gpu.thread_id", &[], "index", &x);
        let [warp, lane] = self.split(tid, WARP)?;
        let [warp_m, warp_n] = self.split(warp, 2)?;
        let wm = self.scaled(warp_m, 32, 0)?;
        let wn = self.scaled(warp_n, 32, 0)?;
        let zero = self.immediate(DType::F32, 0.0);
        let init = vec![zero; 32];
        let fragment = [format!("vector<4x2x{}>", mem_ty(dtype)), format!("vector<2x2x{}>", mem_ty(dtype))];
        let acc = self.fold(&Ix::Value(steps), &init, &mut |e, step, carried| {
            let k0 = e.ix(&Ix::prod(step, Ix::Const(BK)))?;
            // `a`'s step: element `tid + 256·i` of the 128 × 32, row-major.
            for i in 0..BM * BK / MMA_THREADS {
                let [row, col] = e.element_of(tid, i, BK)?;
                let (gm, gk) = (e.arith("addi", tile.m0, row), e.arith("addi", k0, col));
                let inside = e.both_below(gm, tile.rows_end, gk, depth);
                let at: Vec<Ix> = a_batch.iter().cloned().chain([Ix::Value(gm), Ix::Value(gk)]).collect();
                e.stage(a, &at, inside, dtype, [shared[0], row, col])?;
            }
            for i in 0..BK * BN / MMA_THREADS {
                let [row, col] = e.element_of(tid, i, BN)?;
                let (gk, gn) = (e.arith("addi", k0, row), e.arith("addi", tile.n0, col));
                let inside = e.both_below(gk, depth, gn, tile.cols);
                let at: Vec<Ix> = b_batch.iter().cloned().chain([Ix::Value(gk), Ix::Value(gn)]).collect();
                e.stage(b, &at, inside, dtype, [shared[1], row, col])?;
            }
            e.effect("gpu.barrier", &[], &[]);
            let mut acc = carried.to_vec();
            // Lanes 0-15 address the rows of the first 8 columns, lanes 16-31 the next 8.
            let [upper, lane16] = e.split(lane, 16)?;
            let upper = e.scaled(upper, 8, 0)?;
            for ks in [0, 16] {
                let a_col = e.scaled(upper, 1, ks)?;
                let b_row = e.scaled(lane16, 1, ks)?;
                let mut a_frags = Vec::new();
                for mi in 0..2 {
                    let row = e.arith("addi", wm, lane16);
                    let row = e.scaled(row, 1, mi * 16)?;
                    a_frags.push(e.ldmatrix(shared[0], row, a_col, 4, &fragment[0]));
                }
                for ni in 0..4 {
                    let col = e.scaled(wn, 1, ni * 8)?;
                    let b_frag = e.ldmatrix(shared[1], b_row, col, 2, &fragment[1]);
                    for (mi, &a_frag) in a_frags.iter().enumerate() {
                        let slot = (mi * 4 + ni as usize) * 4;
                        let next = e.mma(a_frag, b_frag, &acc[slot..slot + 4], dtype);
                        acc.splice(slot..slot + 4, next);
                    }
                }
            }
            e.effect("gpu.barrier", &[], &[]);
            Ok(acc)
        })?;
        let [group, quad] = self.split(lane, 4)?;
        let lane_col = self.scaled(quad, 2, 0)?;
        let domain = self.kernel.domain.clone();
        let outputs = self.kernel.outputs.clone();
        for (slot, value) in acc.into_iter().enumerate() {
            let (mi, ni, q) = (slot as u64 / 16, (slot as u64 / 4) % 4, slot as u64 % 4);
            let row = self.arith("addi", tile.m0, wm);
            let row = self.arith("addi", row, group);
            let row = self.scaled(row, 1, mi * 16 + 8 * (q / 2))?;
            let col = self.arith("addi", tile.n0, wn);
            let col = self.arith("addi", col, lane_col);
            let col = self.scaled(col, 1, ni * 8 + q % 2)?;
            let inside = self.both_below(row, tile.rows_end, col, tile.cols);
            let at: Vec<Ix> = tile.batch.iter().cloned().chain([Ix::Value(row), Ix::Value(col)]).collect();
            let sum = self.round(value, dtype);
            self.when(inside, &mut |e| {
                e.remember(mm, &at, sum.clone());
                outputs.iter().try_for_each(|&o| e.store_at(o, &at, &domain))
            })?;
        }
        Ok(())
    }

    /// Element `tid + 256·i` of a row-major tile `width` wide, as `[row, column]`.
    fn element_of(&mut self, tid: V, i: u64, width: u64) -> Result<[V; 2], LowerError> {
        let element = self.scaled(tid, 1, i * MMA_THREADS)?;
        self.split(element, width)
    }

    /// `[x / by, x % by]`.
    fn split(&mut self, x: V, by: u64) -> Result<[V; 2], LowerError> {
        let by = self.ix(&Ix::Const(by))?;
        Ok([self.arith("divui", x, by), self.arith("remui", x, by)])
    }

    /// `x · times + plus`.
    fn scaled(&mut self, x: V, times: u64, plus: u64) -> Result<V, LowerError> {
        let mut v = x;
        if times != 1 {
            let t = self.ix(&Ix::Const(times))?;
            v = self.arith("muli", v, t);
        }
        if plus != 0 {
            let p = self.ix(&Ix::Const(plus))?;
            v = self.arith("addi", v, p);
        }
        Ok(v)
    }

    /// `⌈x / by⌉`.
    fn ceil_div(&mut self, x: V, by: u64) -> Result<V, LowerError> {
        let up = self.scaled(x, 1, by - 1)?;
        Ok(self.split(up, by)?[0])
    }

    /// `a < a_end && b < b_end`.
    fn both_below(&mut self, a: V, a_end: V, b: V, b_end: V) -> V {
        let (x, y) = (self.cmpi("ult", a, a_end), self.cmpi("ult", b, b_end));
        self.arith("andi", x, y)
    }

    /// Stores `n` at `at` (zero where `inside` is false) into element `[row, col]` of a shared
    /// tile, in the operands' dtype.
    fn stage(&mut self, n: NodeId, at: &[Ix], inside: V, dtype: DType, place: [V; 3]) -> Result<(), LowerError> {
        let v = self.select_branch(inside, "f32", &mut |e| e.value(n, at), &mut |e| Ok(e.immediate(DType::F32, 0.0)))?;
        let narrow = self.cast("truncf", v.v, mem_ty(dtype));
        let [tile, row, col] = place;
        self.effect("memref.store", &[narrow, tile, row, col], &[]);
        Ok(())
    }

    /// `tiles` 8 × 8 matrices from a shared tile at `[row, col]` (each lane's row address),
    /// transposed for the B operand (`tiles` = 2).
    fn ldmatrix(&mut self, tile: V, row: V, col: V, tiles: u32, ty: &str) -> V {
        let transpose = if tiles == 2 { "true" } else { "false" };
        let count = format!("{tiles} : i32");
        self.op("nvgpu.ldmatrix", &[tile, row, col], ty, &[("numTiles", &count), ("transpose", transpose)])
    }

    /// `c + a·b` for one `m16n8k16` tile: `a` and `b` fragments from `ldmatrix`, `c` this lane's
    /// four accumulators.
    fn mma(&mut self, a: V, b: V, c: &[Reg], dtype: DType) -> Vec<Reg> {
        let t = mem_ty(dtype);
        // A register of two elements: f16 pairs go as they are, bf16 pairs as an i32.
        let register = |e: &mut Self, fragment: V, i: usize| -> V {
            let position = format!("array<i64: {i}>");
            let pair = e.op("vector.extract", &[fragment], &format!("vector<2x{t}>"), &[("static_position", &position)]);
            if dtype != DType::BF16 {
                return pair;
            }
            let word = e.op("vector.bitcast", &[pair], "vector<1xi32>", &[]);
            e.op("vector.extract", &[word], "i32", &[("static_position", "array<i64: 0>")])
        };
        let mut operands: Vec<V> = (0..4).map(|i| register(self, a, i)).collect();
        operands.extend((0..2).map(|i| register(self, b, i)));
        operands.extend(c.iter().map(|r| r.v));
        let ptx = format!("#nvvm.mma_type<{t}>");
        let attributes = [
            ("layoutA", "#nvvm.mma_layout<row>"),
            ("layoutB", "#nvvm.mma_layout<col>"),
            ("multiplicandAPtxType", ptx.as_str()),
            ("multiplicandBPtxType", ptx.as_str()),
            ("shape", "#nvvm.shape<m = 16, n = 8, k = 16>"),
            ("operandSegmentSizes", "array<i32: 4, 2, 4>"),
        ];
        let d = self.op("nvvm.mma.sync", &operands, "!llvm.struct<(f32, f32, f32, f32)>", &attributes);
        (0..4)
            .map(|q| {
                let position = format!("array<i64: {q}>");
                Reg::new(self.op("llvm.extractvalue", &[d], "f32", &[("position", &position)]), "f32")
            })
            .collect()
    }
}
