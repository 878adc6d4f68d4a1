//! GPU contractions as block-tiled GEMMs: a matmul, batched or not, with whatever epilogue its
//! kernel holds. f16 and bf16 operands run on tensor cores (`mma.sync.m16n8k16`, f32
//! accumulators); f32 operands on register-blocked FFMA tiles (TF32 would break the f32
//! numerics contract).
//!
//! A block of [`GEMM_THREADS`] threads computes one tile of the output. `k` goes in steps: the
//! block stages the step's rows of `a` and columns of `b` in shared memory, each element
//! computed by the ordinary value mechanism (so `a` and `b` may be any values: buffers, views,
//! casts) and zero outside the matrices, then multiplies out of shared memory. The output tiles
//! are found grid-stride, as every GPU kernel's points are. Afterwards each thread holds its
//! results at places the engine knows, and runs the kernel's epilogue on each before its one
//! store, as the CPU's register tiles do.
//!
//! - Tensor cores ([`Engine::TensorCore`]): a 128 × 64 tile, 8 warps of 32 × 32 (4 along the
//!   rows, 2 along the columns), each 2 × 4 `m16n8k16` products per 16 of `k`, in steps of 32;
//!   the warps read their fragments with `ldmatrix` (`b` transposed on the way), from rows padded
//!   by 16 bytes so that an `ldmatrix`'s 8 rows start in different banks. The layouts (PTX ISA,
//!   "Matrix Fragments for mma.m16n8k16"): lane `l` holds accumulators `(l/4, 2·(l%4) + j)` and
//!   `(l/4 + 8, 2·(l%4) + j)`, `j` < 2; `ldmatrix.x4` at rows `l%16`, columns `8·(l/16)` gives
//!   the A fragment's four registers in order, `ldmatrix.x2.trans` at rows `l%16` of `b` the B
//!   fragment's two.
//! - FFMA ([`Engine::Ffma`]): a 64 × 64 tile in steps of 16; thread `(ty, tx)` of a 16 × 16
//!   grid computes rows `ty + 16·i` and columns `tx + 16·j` (`i, j` < 4): its shared reads of `b`
//!   are 16 consecutive words across a half-warp, those of `a` one word per half-warp (a
//!   broadcast), and its stores consecutive across `tx`.

use super::*;

/// Threads of a tiled block (the runtime launches every kernel with this many).
pub(super) const GEMM_THREADS: u64 = 256;

/// How a tiled GEMM multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Engine {
    /// `mma.sync` on f16 or bf16 operands.
    TensorCore(DType),
    /// f32 fused multiply-adds from shared memory.
    Ffma,
}

impl Engine {
    /// Rows and columns of the output per block, `k` per step, padding per shared row.
    fn tile(self) -> (u64, u64, u64, u64) {
        match self {
            Engine::TensorCore(_) => (128, 64, 32, 8),
            Engine::Ffma => (64, 64, 16, 0),
        }
    }

    /// The shared tiles' element type.
    fn element(self) -> &'static str {
        match self {
            Engine::TensorCore(dtype) => mem_ty(dtype),
            Engine::Ffma => "f32",
        }
    }

    /// Results each thread holds.
    fn results(self) -> usize {
        match self {
            Engine::TensorCore(_) => 32,
            Engine::Ffma => 16,
        }
    }
}

/// The matmul of a contraction kernel that runs as a tiled GEMM, and how: it writes the
/// kernel's domain and both operands are f16, both bf16, or both f32.
pub(super) fn tiled_matmul(graph: &Graph, kernel: &Kernel) -> Option<(NodeId, Engine)> {
    if kernel.kind != KernelKind::Contraction || kernel.domain.len() < 2 {
        return None;
    }
    let mm = kernel.nodes.iter().copied().find(|&n| *graph.op(n) == Op::MatMul)?;
    let ops = graph.operands(mm);
    let dtype = graph.ty(ops[0]).dtype;
    if graph.ty(ops[1]).dtype != dtype || graph.ty(mm).shape != kernel.domain {
        return None;
    }
    match dtype {
        DType::F16 | DType::BF16 => Some((mm, Engine::TensorCore(dtype))),
        DType::F32 => Some((mm, Engine::Ffma)),
        _ => None,
    }
}

/// The shared tiles' types: `a`'s step, then `b`'s.
pub(super) fn shared_tiles(engine: Engine) -> [String; 2] {
    let ((bm, bn, bk, pad), t) = (engine.tile(), engine.element());
    let shared = "#gpu.address_space<workgroup>";
    [format!("memref<{bm}x{}x{t}, {shared}>", bk + pad), format!("memref<{bk}x{}x{t}, {shared}>", bn + pad)]
}

/// Where one block works: the output tile's first row and column, the batch, and the bounds.
struct GemmTile {
    m0: V,
    n0: V,
    batch: Vec<Ix>,
    rows_end: V,
    cols: V,
}

/// What every thread of a tile knows about itself.
struct Lanes {
    tid: V,
    /// Tensor cores: the warp's first row and column in the tile, and the lane.
    warp: [V; 2],
    lane: V,
}

impl<'g, 'c> Emitter<'g, 'c> {
    /// The kernel: the output tiles of the call's range, grid-stride.
    pub(super) fn gemm_tiles(&mut self, mm: NodeId, engine: Engine, shared: [V; 2]) -> Result<(), LowerError> {
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
            Some(_) => self.gemm_grid(mm, engine, shared, &ranges, cols),
            None => self.one_point(begin, end, &mut |e| e.gemm_grid(mm, engine, shared, &ranges, cols)),
        }
    }

    /// Tile `t` of the grid-stride loop is `((batch…) · tiles_m + tm) · tiles_n + tn`.
    fn gemm_grid(
        &mut self,
        mm: NodeId,
        engine: Engine,
        shared: [V; 2],
        ranges: &[(V, V)],
        cols: V,
    ) -> Result<(), LowerError> {
        let r = ranges.len() + 1;
        let (rows_lo, rows) = ranges[r - 2];
        let (bm, bn, _, _) = engine.tile();
        let (tiles_m, tiles_n) = (self.ceil_div(rows, bm)?, self.ceil_div(cols, bn)?);
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
            let m0 = e.scaled(tm, bm, 0)?;
            let m0 = e.arith("addi", rows_lo, m0);
            let n0 = e.scaled(tn, bn, 0)?;
            e.gemm_tile(mm, engine, shared, &GemmTile { m0, n0, batch, rows_end, cols })
        })
    }

    /// One output tile: the `k` steps, then the epilogue of every result this thread holds.
    fn gemm_tile(&mut self, mm: NodeId, engine: Engine, shared: [V; 2], tile: &GemmTile) -> Result<(), LowerError> {
        let ops = self.graph.operands(mm);
        let (a, b) = (ops[0], ops[1]);
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let a_batch = index::broadcast(&tile.batch, &sa[..sa.len() - 2]);
        let b_batch = index::broadcast(&tile.batch, &sb[..sb.len() - 2]);
        let (bm, bn, bk, _) = engine.tile();
        let depth = self.ix(&Ix::dim(&sa[sa.len() - 1]))?;
        let steps = self.ceil_div(depth, bk)?;
        let x = [("dimension", "#gpu<dim x>")];
        let tid = self.op("gpu.thread_id", &[], "index", &x);
        let [warp, lane] = self.split(tid, WARP)?;
        let [warp_m, warp_n] = self.split(warp, 2)?;
        let lanes = Lanes { tid, warp: [self.scaled(warp_m, 32, 0)?, self.scaled(warp_n, 32, 0)?], lane };
        let zero = self.immediate(DType::F32, 0.0);
        let init = vec![zero; engine.results()];
        let acc = self.fold(&Ix::Value(steps), &init, &mut |e, step, carried| {
            let k0 = e.ix(&Ix::prod(step, Ix::Const(bk)))?;
            // `a`'s step: element `tid + 256·i` of its bm × bk, row-major; then `b`'s.
            for i in 0..bm * bk / GEMM_THREADS {
                let [row, col] = e.element_of(tid, i, bk)?;
                let (gm, gk) = (e.arith("addi", tile.m0, row), e.arith("addi", k0, col));
                let inside = e.both_below(gm, tile.rows_end, gk, depth);
                let at: Vec<Ix> = a_batch.iter().cloned().chain([Ix::Value(gm), Ix::Value(gk)]).collect();
                e.stage(a, &at, inside, engine, [shared[0], row, col])?;
            }
            for i in 0..bk * bn / GEMM_THREADS {
                let [row, col] = e.element_of(tid, i, bn)?;
                let (gk, gn) = (e.arith("addi", k0, row), e.arith("addi", tile.n0, col));
                let inside = e.both_below(gk, depth, gn, tile.cols);
                let at: Vec<Ix> = b_batch.iter().cloned().chain([Ix::Value(gk), Ix::Value(gn)]).collect();
                e.stage(b, &at, inside, engine, [shared[1], row, col])?;
            }
            e.effect("gpu.barrier", &[], &[]);
            let acc = match engine {
                Engine::TensorCore(dtype) => e.mma_step(&lanes, shared, carried, dtype)?,
                Engine::Ffma => e.ffma_step(&lanes, shared, carried, bk)?,
            };
            e.effect("gpu.barrier", &[], &[]);
            Ok(acc)
        })?;
        let domain = self.kernel.domain.clone();
        let outputs = self.kernel.outputs.clone();
        let dtype = self.dtype(mm);
        for (slot, value) in acc.into_iter().enumerate() {
            let [dr, dc] = self.result_place(engine, &lanes, slot)?;
            let row = self.arith("addi", tile.m0, dr);
            let col = self.arith("addi", tile.n0, dc);
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

    /// Where result `slot` of this thread sits in the output tile: `[row, column]`.
    fn result_place(&mut self, engine: Engine, lanes: &Lanes, slot: usize) -> Result<[V; 2], LowerError> {
        let slot = slot as u64;
        match engine {
            Engine::TensorCore(_) => {
                let (mi, ni, q) = (slot / 16, (slot / 4) % 4, slot % 4);
                let [group, quad] = self.split(lanes.lane, 4)?;
                let row = self.arith("addi", lanes.warp[0], group);
                let col = self.scaled(quad, 2, 0)?;
                let col = self.arith("addi", lanes.warp[1], col);
                Ok([self.scaled(row, 1, mi * 16 + 8 * (q / 2))?, self.scaled(col, 1, ni * 8 + q % 2)?])
            }
            Engine::Ffma => {
                let [ty, tx] = self.split(lanes.tid, 16)?;
                Ok([self.scaled(ty, 1, 16 * (slot / 4))?, self.scaled(tx, 1, 16 * (slot % 4))?])
            }
        }
    }

    /// One step of 32 along `k` on tensor cores: each warp's 2 × 4 products, twice.
    fn mma_step(
        &mut self,
        lanes: &Lanes,
        shared: [V; 2],
        carried: &[Reg],
        dtype: DType,
    ) -> Result<Vec<Reg>, LowerError> {
        let fragment = [format!("vector<4x2x{}>", mem_ty(dtype)), format!("vector<2x2x{}>", mem_ty(dtype))];
        let mut acc = carried.to_vec();
        // Lanes 0-15 address the rows of the first 8 columns, lanes 16-31 the next 8.
        let [upper, lane16] = self.split(lanes.lane, 16)?;
        let upper = self.scaled(upper, 8, 0)?;
        for ks in [0, 16] {
            let a_col = self.scaled(upper, 1, ks)?;
            let b_row = self.scaled(lane16, 1, ks)?;
            let mut a_frags = Vec::new();
            for mi in 0..2 {
                let row = self.arith("addi", lanes.warp[0], lane16);
                let row = self.scaled(row, 1, mi * 16)?;
                a_frags.push(self.ldmatrix(shared[0], row, a_col, 4, &fragment[0]));
            }
            for ni in 0..4 {
                let col = self.scaled(lanes.warp[1], 1, ni * 8)?;
                let b_frag = self.ldmatrix(shared[1], b_row, col, 2, &fragment[1]);
                for (mi, &a_frag) in a_frags.iter().enumerate() {
                    let slot = (mi * 4 + ni as usize) * 4;
                    let next = self.mma(a_frag, b_frag, &acc[slot..slot + 4], dtype);
                    acc.splice(slot..slot + 4, next);
                }
            }
        }
        Ok(acc)
    }

    /// One step of `depth` along `k` by FFMA: this thread's 4 × 4 results, a rank-1 update
    /// per `k`.
    fn ffma_step(
        &mut self,
        lanes: &Lanes,
        shared: [V; 2],
        carried: &[Reg],
        depth: u64,
    ) -> Result<Vec<Reg>, LowerError> {
        let [ty, tx] = self.split(lanes.tid, 16)?;
        let mut acc = carried.to_vec();
        for kk in 0..depth {
            let k = self.ix(&Ix::Const(kk))?;
            let mut a = Vec::with_capacity(4);
            let mut b = Vec::with_capacity(4);
            for i in 0..4 {
                let row = self.scaled(ty, 1, 16 * i)?;
                a.push(self.op("memref.load", &[shared[0], row, k], "f32", &[]));
                let col = self.scaled(tx, 1, 16 * i)?;
                b.push(self.op("memref.load", &[shared[1], k, col], "f32", &[]));
            }
            for (slot, r) in acc.iter_mut().enumerate() {
                *r = self.fmuladd(a[slot / 4], b[slot % 4], r.v, "f32");
            }
        }
        Ok(acc)
    }

    /// Element `tid + 256·i` of a row-major tile `width` wide, as `[row, column]`.
    fn element_of(&mut self, tid: V, i: u64, width: u64) -> Result<[V; 2], LowerError> {
        let element = self.scaled(tid, 1, i * GEMM_THREADS)?;
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
    /// tile, in the tile's element type.
    fn stage(&mut self, n: NodeId, at: &[Ix], inside: V, engine: Engine, place: [V; 3]) -> Result<(), LowerError> {
        let v =
            self.select_branch(inside, "f32", &mut |e| e.value(n, at), &mut |e| Ok(e.immediate(DType::F32, 0.0)))?;
        let element = match engine {
            Engine::TensorCore(dtype) => self.cast("truncf", v.v, mem_ty(dtype)),
            Engine::Ffma => v.v,
        };
        let [tile, row, col] = place;
        self.effect("memref.store", &[element, tile, row, col], &[]);
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
            let pair =
                e.op("vector.extract", &[fragment], &format!("vector<2x{t}>"), &[("static_position", &position)]);
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
