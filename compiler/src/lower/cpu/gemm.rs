//! GPU contractions as block-tiled GEMMs: a matmul, batched or not, or a convolution of one
//! group (an implicit GEMM, [`Gemm`]), with whatever epilogue its kernel holds. f16 and bf16
//! operands run on tensor cores (`mma.sync.m16n8k16`, f32 accumulators); f32 operands on
//! register-blocked FFMA tiles (TF32 would break the f32 numerics contract).
//!
//! A block of [`GEMM_THREADS`] threads computes one tile of the output. `k` goes in steps: the
//! block stages the step's rows of `a` and columns of `b` in shared memory, each element
//! computed by the ordinary value mechanism (so `a` and `b` may be any values: buffers, views,
//! casts) and zero outside the matrices, then multiplies out of shared memory. The output tiles
//! are found grid-stride, as every GPU kernel's points are. Afterwards each thread holds its
//! results at places the engine knows, and runs the kernel's epilogue on each before its one
//! store, as the CPU's register tiles do.
//!
//! How large a tile, and how many steps are in flight, depends on the SM ([`GemmPlan`]).
//!
//! - Tensor cores ([`Engine::TensorCore`]): a 128 × 128 tile, 8 warps of 64 × 32 (2 along the
//!   rows, 4 along the columns) each 4 × 4 `m16n8k16` products per 16 of `k`, or a 128 × 64
//!   tile, warps of 32 × 32 (4, 2) each 2 × 4 products; in steps of 32. The warps read their
//!   fragments with `ldmatrix` (`b` transposed on the way), from rows padded by 16 bytes so that an `ldmatrix`'s 8 rows start in different banks. The layouts (PTX ISA,
//!   "Matrix Fragments for mma.m16n8k16"): lane `l` holds accumulators `(l/4, 2·(l%4) + j)` and
//!   `(l/4 + 8, 2·(l%4) + j)`, `j` < 2; `ldmatrix.x4` at rows `l%16`, columns `8·(l/16)` gives
//!   the A fragment's four registers in order, `ldmatrix.x2.trans` at rows `l%16` of `b` the B
//!   fragment's two.
//! - FFMA ([`Engine::Ffma`]): a 128 × 128 or 64 × 64 tile in steps of 16; thread `(ty, tx)` of
//!   a 16 × 16 grid computes rows `ty + 16·i` and columns `tx + 16·j` (`i, j` < 8 or 4), 4 or 2
//!   multiply-adds per word read from shared memory: its shared reads of `b`
//!   are 16 consecutive words across a half-warp, those of `a` one word per half-warp (a
//!   broadcast), and its stores consecutive across `tx`.

use super::*;

/// Threads of a tiled block (the runtime launches every kernel with this many).
pub(super) const GEMM_THREADS: u64 = 256;

/// The symbol of the dynamic shared memory a GEMM's blocks are launched with: an external
/// `memref.global` declaration, which the NVPTX back end writes as `.extern .shared .b8 []`.
/// (MLIR's `gpu.dynamic_shared_memory` becomes an internal global that LLVM 22 demotes to a
/// one-byte static variable inside the kernel.)
pub(super) const SHARED_MEMORY: &str = "flint_shared";

/// How a tiled GEMM multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Engine {
    /// `mma.sync` on f16 or bf16 operands.
    TensorCore(DType),
    /// f32 fused multiply-adds from shared memory.
    Ffma,
}

impl Engine {
    /// The block tiles the engine can run, largest first.
    fn shapes(self) -> &'static [TileShape] {
        match self {
            // 8 warps of 64 × 32 (2 along the rows, 4 along the columns), or of 32 × 32 (4, 2).
            Engine::TensorCore(_) => &[
                TileShape { rows: 128, cols: 128, depth: 32, pad: 8, warps: [2, 4] },
                TileShape { rows: 128, cols: 64, depth: 32, pad: 8, warps: [4, 2] },
            ],
            // A 16 × 16 grid of threads, each 8 × 8 or 4 × 4 results.
            Engine::Ffma => &[
                TileShape { rows: 128, cols: 128, depth: 16, pad: 0, warps: [1, 1] },
                TileShape { rows: 64, cols: 64, depth: 16, pad: 0, warps: [1, 1] },
            ],
        }
    }

    /// The shared tiles' element type.
    fn element(self) -> &'static str {
        match self {
            Engine::TensorCore(dtype) => mem_ty(dtype),
            Engine::Ffma => "f32",
        }
    }

    /// Bytes of an element of the shared tiles.
    fn element_bytes(self) -> u64 {
        match self {
            Engine::TensorCore(_) => 2,
            Engine::Ffma => 4,
        }
    }
}

/// A block's tile: rows and columns of the output, `k` per step, elements of padding per
/// shared row, and (tensor cores) the warps along its rows and columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TileShape {
    pub(super) rows: u64,
    pub(super) cols: u64,
    pub(super) depth: u64,
    pad: u64,
    warps: [u64; 2],
}

/// How a GEMM's blocks run on one SM: the engine, the tile, and how many `k` steps are in
/// shared memory at once (the pipeline's depth: one is multiplied while the others arrive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GemmPlan {
    pub(super) engine: Engine,
    pub(super) shape: TileShape,
    pub(super) stages: u64,
}

/// Blocks of a GEMM meant to share a multiprocessor: while one waits at a barrier or runs its
/// epilogue, another multiplies. Each tile keeps at most 64 accumulators a thread, so that
/// two blocks of 256 threads fit the 64 Ki registers at 128 registers a thread.
pub(super) const BLOCKS_PER_SM: u64 = 2;
/// The fewest stages worth a larger tile: with two, a step's copy has only one step's
/// multiplication to hide behind; `mma.sync` has no TMA to fetch further ahead.
const MIN_STAGES: u64 = 3;
/// More stages than this hide nothing more at these tile sizes.
const MAX_STAGES: u64 = 4;

impl GemmPlan {
    /// The plan for `engine` on `sm` for a GEMM of `extent` rows and columns (at most): the
    /// largest tile no larger than the GEMM (unless it is the smallest) of which [`MIN_STAGES`]
    /// stages fit [`BLOCKS_PER_SM`] blocks into the SM's shared memory, with as many stages as
    /// fit (up to [`MAX_STAGES`]); failing that, the smallest tile, double-buffered. For large
    /// GEMMs on sm_80 and sm_90 this is a 128 × 128 tensor-core tile in 4 stages (74 KiB), on
    /// sm_121 a 128 × 64 tile in 3 (43.5 KiB); for f32, 128 × 128 in 4 stages (64 KiB) and in
    /// 3 (48 KiB).
    pub(super) fn for_sm(engine: Engine, sm: &Sm, extent: [u64; 2]) -> GemmPlan {
        // The driver keeps 1 KiB of every block's shared memory for itself.
        let reserved = sm.shared_per_sm - sm.shared_per_block;
        let room = (sm.shared_per_sm / BLOCKS_PER_SM - reserved).min(sm.shared_per_block);
        let plan = |shape: TileShape, stages| GemmPlan { engine, shape, stages };
        let smallest = engine.shapes()[engine.shapes().len() - 1];
        // A tile past the GEMM's edges computes zeros.
        let within = |s: &&TileShape| s.rows <= extent[0].max(smallest.rows) && s.cols <= extent[1].max(smallest.cols);
        let fitting = engine.shapes().iter().filter(within).find_map(|&shape| {
            let stages = (room / plan(shape, 1).shared_bytes()).min(MAX_STAGES);
            (stages >= MIN_STAGES).then(|| plan(shape, stages))
        });
        fitting.unwrap_or(plan(smallest, 2))
    }

    /// The shared tiles' types: `a`'s steps, then `b`'s.
    pub(super) fn tile_types(&self) -> [String; 2] {
        let ([a_rows, a_cols], [b_rows, b_cols]) = (self.a_tile(), self.b_tile());
        let (s, t) = (self.stages, self.engine.element());
        [
            format!("memref<{s}x{a_rows}x{a_cols}x{t}, {WORKGROUP}>"),
            format!("memref<{s}x{b_rows}x{b_cols}x{t}, {WORKGROUP}>"),
        ]
    }

    /// One stage of `a`: `[rows, k + pad]`; of `b`: `[k, cols + pad]`.
    fn a_tile(&self) -> [u64; 2] {
        [self.shape.rows, self.shape.depth + self.shape.pad]
    }

    fn b_tile(&self) -> [u64; 2] {
        [self.shape.depth, self.shape.cols + self.shape.pad]
    }

    /// Bytes of `a`'s tiles: where `b`'s begin (a multiple of 16).
    pub(super) fn a_bytes(&self) -> u64 {
        let [rows, cols] = self.a_tile();
        self.stages * rows * cols * self.engine.element_bytes()
    }

    /// Bytes of shared memory a block uses.
    pub(super) fn shared_bytes(&self) -> u64 {
        let [rows, cols] = self.b_tile();
        self.a_bytes() + self.stages * rows * cols * self.engine.element_bytes()
    }

    /// Tensor cores: a warp's rows and columns, and its `m16n8k16` tiles along each.
    fn warp_tile(&self) -> [u64; 2] {
        [self.shape.rows / self.shape.warps[0], self.shape.cols / self.shape.warps[1]]
    }

    fn mma_tiles(&self) -> [u64; 2] {
        let [rows, cols] = self.warp_tile();
        [rows / 16, cols / 8]
    }

    /// Results each thread holds.
    fn results(&self) -> usize {
        let per_thread = match self.engine {
            Engine::TensorCore(_) => self.mma_tiles().iter().product::<u64>() * 4,
            Engine::Ffma => (self.shape.rows / 16) * (self.shape.cols / 16),
        };
        per_thread as usize
    }
}

/// The GEMM a tiled contraction kernel computes: its node (a matmul, or a convolution with its
/// window), and the domain axes that index the GEMM's batch, its rows (outer first) and its
/// column. A matmul `[batch…, M, N]` is rows `[M]`, column `N`; a convolution `[N, C_out, H, W]`
/// (implicit GEMM: a row per output pixel, a column per output channel, `k` over input channels
/// × kernel rows × kernel columns) is rows `[N, H, W]`, column `C_out`.
#[derive(Clone, Debug)]
pub(super) struct Gemm {
    node: NodeId,
    conv: Option<Window>,
    batch: Vec<usize>,
    rows: Vec<usize>,
    col: usize,
    pub(super) plan: GemmPlan,
}

/// The tiled GEMM of a contraction kernel on `sm`, if it has one: a matmul, or a convolution
/// of one group, that writes the kernel's domain, with both operands f16, both bf16, or both
/// f32.
pub(super) fn tiled_gemm(graph: &Graph, kernel: &Kernel, sm: &Sm) -> Option<Gemm> {
    if kernel.kind != KernelKind::Contraction || kernel.domain.len() < 2 {
        return None;
    }
    let node =
        kernel.nodes.iter().copied().find(|&n| matches!(graph.op(n), Op::MatMul | Op::Conv2d { groups: 1, .. }))?;
    let ops = graph.operands(node);
    let dtype = graph.ty(ops[0]).dtype;
    if graph.ty(ops[1]).dtype != dtype || graph.ty(node).shape != kernel.domain {
        return None;
    }
    let engine = match dtype {
        DType::F16 | DType::BF16 => Engine::TensorCore(dtype),
        DType::F32 => Engine::Ffma,
        _ => return None,
    };
    let r = kernel.domain.len();
    let (conv, batch, rows, col) = match graph.op(node) {
        Op::Conv2d { stride, padding, dilation, .. } => {
            let window = Window { stride: *stride, padding: *padding, dilation: *dilation };
            (Some(window), Vec::new(), vec![0, 2, 3], 1)
        }
        _ => (None, (0..r - 2).collect(), vec![r - 2], r - 1),
    };
    // The GEMM's rows and columns at their bounds.
    let bound = |axes: &[usize]| -> u64 {
        axes.iter().map(|&a| kernel.domain[a].eval(|s| graph.symbols[s.0 as usize].bound)).product()
    };
    let plan = GemmPlan::for_sm(engine, sm, [bound(&rows), bound(&[col])]);
    Some(Gemm { node, conv, batch, rows, col, plan })
}

const WORKGROUP: &str = "#gpu.address_space<workgroup>";

/// Bytes one `cp.async` moves: 8 f16 or bf16, 4 f32.
const CHUNK_BYTES: u64 = 16;

/// How an operand reaches shared memory.
#[derive(Clone, Debug)]
enum Staging {
    /// Read straight from a kernel input of the tiles' element type with unit stride along the
    /// tile rows (`a` along `k`, `b` along the columns): 16-byte `cp.async` copies.
    Chunks(Strided),
    /// A strided view of such an input otherwise (a transposed or head-split operand): element
    /// by element, each at `offset + Σ index · stride`.
    Elements(Strided),
    /// Any other value, element by element through the value mechanism.
    Values,
}

/// Where one block works: the call's range of every domain axis (`[first, first + count)`),
/// the batch's indices, the output tile's first row and column (of the GEMM), and the GEMM's
/// row, column and `k` counts.
struct GemmTile {
    ranges: Vec<(V, V)>,
    batch: Vec<V>,
    m0: V,
    n0: V,
    rows: V,
    cols: V,
    depth: V,
}

/// What every thread of a tile knows about itself.
struct Lanes {
    tid: V,
    /// Tensor cores: the warp's first row and column in the tile, and the lane.
    warp: [V; 2],
    lane: V,
}

impl<'g, 'c> Emitter<'g, 'c> {
    /// The declaration of [`SHARED_MEMORY`], 16-byte aligned for `cp.async` and `ldmatrix`.
    pub(super) fn shared_memory(&mut self) -> Option<Operation<'c>> {
        let attributes = [
            ("sym_name", format!("\"{SHARED_MEMORY}\"")),
            ("type", format!("memref<0xi8, {WORKGROUP}>")),
            ("alignment", "16 : i64".to_string()),
        ];
        let attributes: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.b.detached("memref.global", &attributes, vec![])
    }

    /// `a`'s and `b`'s tiles: views of the block's dynamic shared memory, `b`'s after `a`'s.
    fn shared_tiles(&mut self, plan: &GemmPlan) -> Result<[V; 2], LowerError> {
        let name = format!("@{SHARED_MEMORY}");
        let global = self.op("memref.get_global", &[], &format!("memref<0xi8, {WORKGROUP}>"), &[("name", &name)]);
        let bytes = self.op("memref.cast", &[global], &format!("memref<?xi8, {WORKGROUP}>"), &[]);
        let [a_type, b_type] = plan.tile_types();
        let (a_at, b_at) = (self.ix(&Ix::Const(0))?, self.ix(&Ix::Const(plan.a_bytes()))?);
        Ok([self.op("memref.view", &[bytes, a_at], &a_type, &[]), self.op("memref.view", &[bytes, b_at], &b_type, &[])])
    }

    /// The kernel: the output tiles of the call's range, grid-stride.
    pub(super) fn gemm_tiles(&mut self, g: &Gemm) -> Result<(), LowerError> {
        let shared = self.shared_tiles(&g.plan)?;
        let domain = self.kernel.domain.clone();
        let begin = self.cast("index_cast", self.params[1], "index");
        let end = self.cast("index_cast", self.params[2], "index");
        let abi = parallel_axis(self.kernel);
        let mut ranges = Vec::with_capacity(domain.len());
        for (a, d) in domain.iter().enumerate() {
            ranges.push(match abi {
                Some(x) if x == a => (begin, self.arith("subi", end, begin)),
                _ => (self.ix(&Ix::Const(0))?, self.ix(&Ix::dim(d))?),
            });
        }
        match abi {
            Some(_) => self.gemm_grid(g, shared, &ranges),
            None => self.one_point(begin, end, &mut |e| e.gemm_grid(g, shared, &ranges)),
        }
    }

    /// Tile `t` of the grid-stride loop is `((batch…) · tiles_m + tm) · tiles_n + tn`.
    fn gemm_grid(&mut self, g: &Gemm, shared: [V; 2], ranges: &[(V, V)]) -> Result<(), LowerError> {
        let mut rows = self.ix(&Ix::Const(1))?;
        for &a in &g.rows {
            rows = self.arith("muli", rows, ranges[a].1);
        }
        let cols = ranges[g.col].1;
        let depth = self.gemm_depth(g)?;
        let TileShape { rows: bm, cols: bn, .. } = g.plan.shape;
        let (tiles_m, tiles_n) = (self.ceil_div(rows, bm)?, self.ceil_div(cols, bn)?);
        let mut total = self.arith("muli", tiles_m, tiles_n);
        for &a in &g.batch {
            total = self.arith("muli", total, ranges[a].1);
        }
        let x = [("dimension", "#gpu<dim x>")];
        let (block, grid) = (self.op("gpu.block_id", &[], "index", &x), self.op("gpu.grid_dim", &[], "index", &x));
        self.for_stride(block, total, grid, &mut |e, _, t| {
            let [rest, tn] = e.split_by(t, tiles_n);
            let [mut rest, tm] = e.split_by(rest, tiles_m);
            let mut batch = vec![V::NONE; g.batch.len()];
            for (slot, &a) in g.batch.iter().enumerate().rev() {
                let (first, count) = ranges[a];
                let [outer, i] = e.split_by(rest, count);
                rest = outer;
                batch[slot] = e.arith("addi", first, i);
            }
            let (m0, n0) = (e.scaled(tm, bm, 0)?, e.scaled(tn, bn, 0)?);
            e.gemm_tile(g, shared, &GemmTile { ranges: ranges.to_vec(), batch, m0, n0, rows, cols, depth })
        })
    }

    /// The GEMM's `k`: the matmul's inner dim, or a convolution's input channels × window.
    fn gemm_depth(&mut self, g: &Gemm) -> Result<V, LowerError> {
        let ops = self.graph.operands(g.node);
        let depth = match g.conv {
            None => Ix::dim(&self.shape(ops[0])[self.shape(ops[0]).len() - 1]),
            Some(_) => {
                let w = self.shape(ops[1]);
                Ix::prod(Ix::prod(Ix::dim(&w[1]), Ix::dim(&w[2])), Ix::dim(&w[3]))
            }
        };
        self.ix(&depth)
    }

    /// The domain point of GEMM row `m`, column `n` of a tile.
    fn gemm_point(&mut self, g: &Gemm, tile: &GemmTile, m: V, n: V) -> Vec<Ix> {
        let mut point = vec![Ix::Const(0); tile.ranges.len()];
        for (&a, &v) in g.batch.iter().zip(&tile.batch) {
            point[a] = Ix::Value(v);
        }
        let mut rest = m;
        for &a in g.rows.iter().rev() {
            let (first, count) = tile.ranges[a];
            let [outer, i] = self.split_by(rest, count);
            rest = outer;
            point[a] = Ix::Value(self.arith("addi", first, i));
        }
        let first = tile.ranges[g.col].0;
        point[g.col] = Ix::Value(self.arith("addi", first, n));
        point
    }

    /// Convolution `conv`'s `k` as `[input channel, kernel row, kernel column]`.
    fn conv_taps(&mut self, conv: NodeId, k: V) -> Result<[Ix; 3], LowerError> {
        let w = self.shape(self.graph.operands(conv)[1]).to_vec();
        let (kw, kh) = (self.ix(&Ix::dim(&w[3]))?, self.ix(&Ix::dim(&w[2]))?);
        let [rest, q] = self.split_by(k, kw);
        let [c, p] = self.split_by(rest, kh);
        Ok([Ix::Value(c), Ix::Value(p), Ix::Value(q)])
    }

    /// `a` at GEMM row `m`, `k`, where `in_range` (and, for a convolution, where the tap falls
    /// inside the input); zero elsewhere.
    fn gemm_a(&mut self, g: &Gemm, tile: &GemmTile, m: V, k: V, in_range: V) -> Result<Reg, LowerError> {
        let ops = self.graph.operands(g.node).to_vec();
        // The column is not `a`'s: any will do.
        let any = self.ix(&Ix::Const(0))?;
        let point = self.gemm_point(g, tile, m, any);
        let (cond, at) = match &g.conv {
            None => {
                let sa = self.shape(ops[0]).to_vec();
                let r = point.len();
                let mut at = index::broadcast(&point[..r - 2], &sa[..sa.len() - 2]);
                at.extend([point[r - 2].clone(), Ix::Value(k)]);
                (in_range, at)
            }
            Some(window) => {
                let xs = self.shape(ops[0]).to_vec();
                let [c, p, q] = self.conv_taps(g.node, k)?;
                let (in_h, y) = self.tap(&point[2], &p, 0, window, &xs[2])?;
                let (in_w, x) = self.tap(&point[3], &q, 1, window, &xs[3])?;
                let taps = self.arith("andi", in_h, in_w);
                (self.arith("andi", in_range, taps), vec![point[0].clone(), c, y, x])
            }
        };
        let x = ops[0];
        self.select_branch(cond, "f32", &mut |e| e.value(x, &at), &mut |e| Ok(e.immediate(DType::F32, 0.0)))
    }

    /// `b` at `k`, GEMM column `n`, where `in_range`; zero elsewhere.
    fn gemm_b(&mut self, g: &Gemm, tile: &GemmTile, k: V, n: V, in_range: V) -> Result<Reg, LowerError> {
        let ops = self.graph.operands(g.node).to_vec();
        let first = tile.ranges[g.col].0;
        let col = Ix::Value(self.arith("addi", first, n));
        let at = match &g.conv {
            None => {
                let sb = self.shape(ops[1]).to_vec();
                let batch: Vec<Ix> = tile.batch.iter().map(|&v| Ix::Value(v)).collect();
                let mut at = index::broadcast(&batch, &sb[..sb.len() - 2]);
                at.extend([Ix::Value(k), col]);
                at
            }
            Some(_) => {
                let [c, p, q] = self.conv_taps(g.node, k)?;
                vec![col, c, p, q]
            }
        };
        let w = ops[1];
        self.select_branch(in_range, "f32", &mut |e| e.value(w, &at), &mut |e| Ok(e.immediate(DType::F32, 0.0)))
    }

    /// One output tile: the `k` steps, then the epilogue of every result this thread holds.
    fn gemm_tile(&mut self, g: &Gemm, shared: [V; 2], tile: &GemmTile) -> Result<(), LowerError> {
        let plan = g.plan;
        let (bk, stages) = (plan.shape.depth, plan.stages);
        let steps = self.ceil_div(tile.depth, bk)?;
        let x = [("dimension", "#gpu<dim x>")];
        let tid = self.op("gpu.thread_id", &[], "index", &x);
        let [warp, lane] = self.split(tid, WARP)?;
        let [warp_m, warp_n] = self.split(warp, plan.shape.warps[1])?;
        let [warp_rows, warp_cols] = plan.warp_tile();
        let lanes = Lanes { tid, warp: [self.scaled(warp_m, warp_rows, 0)?, self.scaled(warp_n, warp_cols, 0)?], lane };
        let views = [self.staging(g, 0), self.staging(g, 1)];
        let zero = self.immediate(DType::F32, 0.0);
        let init = vec![zero; plan.results()];
        // Software-pipelined: step `s + stages - 1` is copied into its stage of the tiles (by
        // `cp.async` where it can be) while step `s` is multiplied. Every step commits one
        // group of copies, empty past the last step, so that the count of groups newer than
        // step `s`'s is always `stages - 1`.
        let stage_if_any = |e: &mut Self, step: V| -> Result<(), LowerError> {
            let more = e.cmpi("ult", step, steps);
            e.when(more, &mut |e| {
                let k0 = e.scaled(step, bk, 0)?;
                let [_, slot] = e.split(step, stages)?;
                e.stage_step(g, tile, &views, shared, tid, k0, slot)
            })?;
            e.effect("nvvm.cp.async.commit.group", &[], &[]);
            Ok(())
        };
        // The first `stages - 1` steps, as a loop: one copy of the staging code.
        self.fold(&Ix::Const(stages - 1), &[], &mut |e, step, _| {
            let step = e.ix(&step)?;
            stage_if_any(e, step)?;
            Ok(Vec::new())
        })?;
        let newer = format!("{} : i32", stages - 1);
        let acc = self.fold(&Ix::Value(steps), &init, &mut |e, step, carried| {
            let step = e.ix(&step)?;
            let ahead = e.scaled(step, 1, stages - 1)?;
            stage_if_any(e, ahead)?;
            e.effect("nvvm.cp.async.wait.group", &[], &[("n", newer.as_str())]);
            e.effect("gpu.barrier", &[], &[]);
            let [_, slot] = e.split(step, stages)?;
            let acc = match plan.engine {
                Engine::TensorCore(dtype) => e.mma_step(&plan, &lanes, shared, slot, carried, dtype)?,
                Engine::Ffma => e.ffma_step(&plan, &lanes, shared, slot, carried)?,
            };
            // The next step's copies overwrite the stage just read.
            e.effect("gpu.barrier", &[], &[]);
            Ok(acc)
        })?;
        let domain = self.kernel.domain.clone();
        let outputs = self.kernel.outputs.clone();
        let dtype = self.dtype(g.node);
        let bias = self.graph.operands(g.node).get(2).copied().filter(|_| g.conv.is_some());
        for (slot, value) in acc.into_iter().enumerate() {
            let [dr, dc] = self.result_place(&plan, &lanes, slot)?;
            let row = self.arith("addi", tile.m0, dr);
            let col = self.arith("addi", tile.n0, dc);
            let inside = self.both_below(row, tile.rows, col, tile.cols);
            self.when(inside, &mut |e| {
                let at = e.gemm_point(g, tile, row, col);
                let mut sum = value.clone();
                if let Some(bias) = bias {
                    let b = e.value(bias, &[at[1].clone()])?;
                    sum = Reg::new(e.arith("addf", sum.v, b.v), "f32");
                }
                let sum = e.round(sum, dtype);
                e.remember(g.node, &at, sum);
                outputs.iter().try_for_each(|&o| e.store_at(o, &at, &domain))
            })?;
        }
        Ok(())
    }

    /// How matmul operand `operand` is staged ([`Staging`]); a convolution's go by value.
    fn staging(&self, g: &Gemm, operand: usize) -> Staging {
        let x = self.graph.operands(g.node)[operand];
        let view = strided(self.graph, &self.kernel.inputs, x).filter(|_| g.conv.is_none());
        match view {
            Some(view) if mem_ty(self.dtype(view.buffer)) == g.plan.engine.element() => {
                match view.unit_along(view.strides.len() - 1) {
                    true => Staging::Chunks(view),
                    false => Staging::Elements(view),
                }
            }
            _ => Staging::Values,
        }
    }

    /// Stages step `k0` of `a` and `b` into stage `slot` of the shared tiles.
    #[allow(clippy::too_many_arguments)]
    fn stage_step(
        &mut self,
        g: &Gemm,
        tile: &GemmTile,
        views: &[Staging; 2],
        shared: [V; 2],
        tid: V,
        k0: V,
        slot: V,
    ) -> Result<(), LowerError> {
        let TileShape { rows: bm, cols: bn, depth: bk, .. } = g.plan.shape;
        for (operand, (rows, cols)) in [(bm, bk), (bk, bn)].into_iter().enumerate() {
            let per_chunk = CHUNK_BYTES / g.plan.engine.element_bytes();
            let chunked = matches!(views[operand], Staging::Chunks(_));
            let width = if chunked { cols / per_chunk } else { cols };
            for i in 0..rows * width / GEMM_THREADS {
                let [row, col] = self.element_of(tid, i, width)?;
                let col = if chunked { self.scaled(col, per_chunk, 0)? } else { col };
                let place = [shared[operand], slot, row, col];
                match &views[operand] {
                    Staging::Chunks(view) => self.copy_chunk(g, tile, view, operand, k0, place)?,
                    Staging::Elements(view) => self.stage_strided(g, tile, view, operand, k0, place)?,
                    Staging::Values => self.stage_element(g, tile, operand, k0, place)?,
                }
            }
        }
        Ok(())
    }

    /// The GEMM coordinates of `[row, col]` of operand `operand`'s step `k0`, and their bounds:
    /// `a`'s row and `k`, `b`'s `k` and column.
    fn operand_place(&mut self, tile: &GemmTile, operand: usize, k0: V, row: V, col: V) -> [V; 4] {
        if operand == 0 {
            [self.arith("addi", tile.m0, row), self.arith("addi", k0, col), tile.rows, tile.depth]
        } else {
            [self.arith("addi", k0, row), self.arith("addi", tile.n0, col), tile.depth, tile.cols]
        }
    }

    /// The address of GEMM element `[r, c]` of operand `operand` through its strides where
    /// `inside`, else of the batch's first element (safe to read, or to copy nothing from).
    /// The GEMM's rows and columns count from the call's range of theirs.
    #[allow(clippy::too_many_arguments)]
    fn operand_address(
        &mut self,
        g: &Gemm,
        tile: &GemmTile,
        view: &Strided,
        operand: usize,
        [r, c]: [V; 2],
        inside: V,
    ) -> Result<V, LowerError> {
        let zero = self.ix(&Ix::Const(0))?;
        let (r, c) = (self.select(inside, r, zero), self.select(inside, c, zero));
        let (r, c) = match operand {
            0 => (self.arith("addi", tile.ranges[g.rows[0]].0, r), c),
            _ => (r, self.arith("addi", tile.ranges[g.col].0, c)),
        };
        let batch: Vec<Ix> = tile.batch.iter().map(|&v| Ix::Value(v)).collect();
        let x = self.graph.operands(g.node)[operand];
        let mut at = index::broadcast(&batch, &self.shape(x)[..self.shape(x).len() - 2]);
        at.extend([Ix::Value(r), Ix::Value(c)]);
        self.view_address(view, &at)
    }

    /// Element `[row, col]` of a strided operand's step into `[slot, row, col]` of its shared
    /// tile: one load at its address, no index arithmetic beyond the strides; zero past the
    /// edges (the load then reads a safe address, and is selected away).
    fn stage_strided(
        &mut self,
        g: &Gemm,
        tile: &GemmTile,
        view: &Strided,
        operand: usize,
        k0: V,
        place: [V; 4],
    ) -> Result<(), LowerError> {
        let [shared, slot, row, col] = place;
        let [r, c, r_end, c_end] = self.operand_place(tile, operand, k0, row, col);
        let inside = self.both_below(r, r_end, c, c_end);
        let source = self.operand_address(g, tile, view, operand, [r, c], inside)?;
        let ty = g.plan.engine.element();
        let loaded = self.load_ptr(source, ty, None);
        let zero = self.constant(&format!("0.0 : {ty}"));
        let element = self.select(inside, loaded, zero);
        self.effect("memref.store", &[element, shared, slot, row, col], &[]);
        Ok(())
    }

    /// Element `[row, col]` of operand `operand`'s step `k0` (GEMM coordinates), or zero past
    /// the edges.
    fn gemm_element(
        &mut self,
        g: &Gemm,
        tile: &GemmTile,
        operand: usize,
        k0: V,
        row: V,
        col: V,
    ) -> Result<Reg, LowerError> {
        let [r, c, r_end, c_end] = self.operand_place(tile, operand, k0, row, col);
        let in_range = self.both_below(r, r_end, c, c_end);
        match operand {
            0 => self.gemm_a(g, tile, r, c, in_range),
            _ => self.gemm_b(g, tile, r, c, in_range),
        }
    }

    /// One element through the value mechanism into `[slot, row, col]` of a shared tile.
    fn stage_element(
        &mut self,
        g: &Gemm,
        tile: &GemmTile,
        operand: usize,
        k0: V,
        place: [V; 4],
    ) -> Result<(), LowerError> {
        let [_, _, row, col] = place;
        let v = self.gemm_element(g, tile, operand, k0, row, col)?;
        self.stage(v, g.plan.engine, place);
        Ok(())
    }

    /// The 16 bytes from `[row, col]` of a direct operand's step into `[slot, row, col]` of its
    /// shared tile by `cp.async`, the part past the matrix's edge zero-filled (the copy's source
    /// size); element by element where the source is not 16-byte aligned (a caller's buffer, an
    /// odd stride).
    fn copy_chunk(
        &mut self,
        g: &Gemm,
        tile: &GemmTile,
        view: &Strided,
        operand: usize,
        k0: V,
        place: [V; 4],
    ) -> Result<(), LowerError> {
        let [shared, slot, row, col] = place;
        let bytes = g.plan.engine.element_bytes();
        let per_chunk = CHUNK_BYTES / bytes;
        // The chunk's first element, its row's bound and how many of it are inside.
        let [r, c, r_end, c_end] = self.operand_place(tile, operand, k0, row, col);
        let inside = self.both_below(r, r_end, c, c_end);
        let left = self.arith("subi", c_end, c);
        let chunk = self.ix(&Ix::Const(per_chunk))?;
        let count = self.arith("minui", left, chunk);
        let zero = self.ix(&Ix::Const(0))?;
        let count = self.select(inside, count, zero);
        let source = self.operand_address(g, tile, view, operand, [r, c], inside)?;
        let address = self.op("llvm.ptrtoint", &[source], "i64", &[]);
        let address = self.cast("index_cast", address, "index");
        let align = self.ix(&Ix::Const(CHUNK_BYTES))?;
        let misaligned = self.arith("remui", address, align);
        let aligned = self.cmpi("eq", misaligned, zero);
        self.if_else(
            aligned,
            &mut |e| {
                let global = source;
                let dims = if operand == 0 { g.plan.a_tile() } else { g.plan.b_tile() };
                let target = e.shared_address(shared, dims, [slot, row, col], bytes)?;
                let size = e.scaled(count, bytes, 0)?;
                let size = e.cast("index_cast", size, "i32");
                let cg = [("size", "16 : i32"), ("modifier", "#nvvm<load_cache_modifier cg>")];
                e.effect("nvvm.cp.async.shared.global", &[target, global, size], &cg);
                Ok(())
            },
            &mut |e| {
                for l in 0..per_chunk {
                    let col_l = e.scaled(col, 1, l)?;
                    e.stage_strided(g, tile, view, operand, k0, [shared, slot, row, col_l])?;
                }
                Ok(())
            },
        )
    }

    /// The shared-memory address (`!llvm.ptr<3>`) of `[slot, row, col]` of a tile of stages
    /// of `[rows, cols]` elements of `bytes` each.
    fn shared_address(&mut self, tile: V, [rows, cols]: [u64; 2], at: [V; 3], bytes: u64) -> Result<V, LowerError> {
        let base = self.op("memref.extract_aligned_pointer_as_index", &[tile], "index", &[]);
        let base = self.cast("index_cast", base, "i64");
        let base = self.op("llvm.inttoptr", &[base], "!llvm.ptr<3>", &[]);
        let [slot, row, col] = at.map(Ix::Value);
        let element = Ix::sum(Ix::prod(Ix::sum(Ix::prod(slot, Ix::Const(rows)), row), Ix::Const(cols)), col);
        let offset = self.ix(&Ix::prod(element, Ix::Const(bytes)))?;
        let offset = self.cast("index_cast", offset, "i64");
        let indices = format!("array<i32: {}>", i32::MIN);
        Ok(self.op(
            "llvm.getelementptr",
            &[base, offset],
            "!llvm.ptr<3>",
            &[("rawConstantIndices", &indices), ("elem_type", "i8")],
        ))
    }

    /// Where result `slot` of this thread sits in the output tile: `[row, column]`.
    fn result_place(&mut self, plan: &GemmPlan, lanes: &Lanes, slot: usize) -> Result<[V; 2], LowerError> {
        let slot = slot as u64;
        match plan.engine {
            Engine::TensorCore(_) => {
                let nt = plan.mma_tiles()[1];
                let (mi, ni, q) = (slot / (4 * nt), (slot / 4) % nt, slot % 4);
                let [group, quad] = self.split(lanes.lane, 4)?;
                let row = self.arith("addi", lanes.warp[0], group);
                let col = self.scaled(quad, 2, 0)?;
                let col = self.arith("addi", lanes.warp[1], col);
                Ok([self.scaled(row, 1, mi * 16 + 8 * (q / 2))?, self.scaled(col, 1, ni * 8 + q % 2)?])
            }
            Engine::Ffma => {
                let per_row = plan.shape.cols / 16;
                let [ty, tx] = self.split(lanes.tid, 16)?;
                Ok([self.scaled(ty, 1, 16 * (slot / per_row))?, self.scaled(tx, 1, 16 * (slot % per_row))?])
            }
        }
    }

    /// One step along `k` on tensor cores: each warp's `m16n8k16` products, for every 16 of
    /// the step.
    fn mma_step(
        &mut self,
        plan: &GemmPlan,
        lanes: &Lanes,
        shared: [V; 2],
        slot: V,
        carried: &[Reg],
        dtype: DType,
    ) -> Result<Vec<Reg>, LowerError> {
        let [mt, nt] = plan.mma_tiles();
        let fragment = [format!("vector<4x2x{}>", mem_ty(dtype)), format!("vector<2x2x{}>", mem_ty(dtype))];
        let mut acc = carried.to_vec();
        // Lanes 0-15 address the rows of the first 8 columns, lanes 16-31 the next 8.
        let [upper, lane16] = self.split(lanes.lane, 16)?;
        let upper = self.scaled(upper, 8, 0)?;
        for ks in (0..plan.shape.depth).step_by(16) {
            let a_col = self.scaled(upper, 1, ks)?;
            let b_row = self.scaled(lane16, 1, ks)?;
            let mut a_frags = Vec::new();
            for mi in 0..mt {
                let row = self.arith("addi", lanes.warp[0], lane16);
                let row = self.scaled(row, 1, mi * 16)?;
                a_frags.push(self.ldmatrix([shared[0], slot, row, a_col], 4, &fragment[0]));
            }
            for ni in 0..nt {
                let col = self.scaled(lanes.warp[1], 1, ni * 8)?;
                let b_frag = self.ldmatrix([shared[1], slot, b_row, col], 2, &fragment[1]);
                for (mi, &a_frag) in a_frags.iter().enumerate() {
                    let at = (mi * nt as usize + ni as usize) * 4;
                    let next = self.mma(a_frag, b_frag, &acc[at..at + 4], dtype);
                    acc.splice(at..at + 4, next);
                }
            }
        }
        Ok(acc)
    }

    /// One step of `depth` along `k` by FFMA: this thread's results, a rank-1 update per `k`
    /// of its rows `ty + 16·i` by its columns `tx + 16·j`.
    fn ffma_step(
        &mut self,
        plan: &GemmPlan,
        lanes: &Lanes,
        shared: [V; 2],
        slot: V,
        carried: &[Reg],
    ) -> Result<Vec<Reg>, LowerError> {
        let (per_col, per_row) = (plan.shape.rows / 16, plan.shape.cols / 16);
        let [ty, tx] = self.split(lanes.tid, 16)?;
        let mut acc = carried.to_vec();
        for kk in 0..plan.shape.depth {
            let k = self.ix(&Ix::Const(kk))?;
            let mut a = Vec::with_capacity(per_col as usize);
            for i in 0..per_col {
                let row = self.scaled(ty, 1, 16 * i)?;
                a.push(self.op("memref.load", &[shared[0], slot, row, k], "f32", &[]));
            }
            let mut b = Vec::with_capacity(per_row as usize);
            for j in 0..per_row {
                let col = self.scaled(tx, 1, 16 * j)?;
                b.push(self.op("memref.load", &[shared[1], slot, k, col], "f32", &[]));
            }
            for (at, r) in acc.iter_mut().enumerate() {
                let (i, j) = (at / per_row as usize, at % per_row as usize);
                *r = self.fmuladd(a[i], b[j], r.v, "f32");
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
    pub(super) fn split(&mut self, x: V, by: u64) -> Result<[V; 2], LowerError> {
        let by = self.ix(&Ix::Const(by))?;
        Ok(self.split_by(x, by))
    }

    /// `[x / by, x % by]` for a value `by`.
    fn split_by(&mut self, x: V, by: V) -> [V; 2] {
        [self.arith("divui", x, by), self.arith("remui", x, by)]
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

    /// Stores `v` into element `[row, col]` of a shared tile, in the tile's element type.
    fn stage(&mut self, v: Reg, engine: Engine, place: [V; 4]) {
        let element = match engine {
            Engine::TensorCore(dtype) => self.cast("truncf", v.v, mem_ty(dtype)),
            Engine::Ffma => v.v,
        };
        let [tile, slot, row, col] = place;
        self.effect("memref.store", &[element, tile, slot, row, col], &[]);
    }

    /// `tiles` 8 × 8 matrices from a shared tile at `[slot, row, col]` (each lane's row address),
    /// transposed for the B operand (`tiles` = 2).
    fn ldmatrix(&mut self, at: [V; 4], tiles: u32, ty: &str) -> V {
        let transpose = if tiles == 2 { "true" } else { "false" };
        let count = format!("{tiles} : i32");
        self.op("nvgpu.ldmatrix", &at, ty, &[("numTiles", &count), ("transpose", transpose)])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::gpu::SMS;

    fn plan(engine: Engine, sm: &str) -> GemmPlan {
        GemmPlan::for_sm(engine, &SMS.iter().copied().find(|s| s.name == sm).expect("a known SM"), [4096, 4096])
    }

    #[test]
    fn tiles_follow_each_sm_s_shared_memory() {
        let tensor = Engine::TensorCore(DType::F16);
        for sm in ["sm_80", "sm_90"] {
            let p = plan(tensor, sm);
            assert_eq!((p.shape.rows, p.shape.cols, p.stages, p.shared_bytes()), (128, 128, 4, 75776), "{sm}");
        }
        // GB10: 100 KiB a multiprocessor holds two blocks of three 128 × 64 stages, not of three 128 × 128.
        let p = plan(tensor, "sm_121");
        assert_eq!((p.shape.rows, p.shape.cols, p.stages, p.shared_bytes()), (128, 64, 3, 44544));
        // f32: 16 KiB a stage of 128 × 128, 4 of them on sm_90, 3 on sm_121.
        let p = plan(Engine::Ffma, "sm_90");
        assert_eq!((p.shape.rows, p.shape.cols, p.stages, p.shared_bytes()), (128, 128, 4, 65536));
        let p = plan(Engine::Ffma, "sm_121");
        assert_eq!((p.shape.rows, p.shape.cols, p.stages, p.shared_bytes()), (128, 128, 3, 49152));
    }

    #[test]
    fn tiles_are_no_larger_than_the_gemm() {
        let sm = SMS.iter().copied().find(|s| s.name == "sm_90").expect("sm_90");
        let f32_small = GemmPlan::for_sm(Engine::Ffma, &sm, [32, 4096]);
        assert_eq!((f32_small.shape.rows, f32_small.shape.cols, f32_small.stages), (64, 64, 4));
        let f16_narrow = GemmPlan::for_sm(Engine::TensorCore(DType::F16), &sm, [4096, 64]);
        assert_eq!((f16_narrow.shape.rows, f16_narrow.shape.cols, f16_narrow.stages), (128, 64, 4));
        // The smallest tile serves any GEMM, however small.
        let tiny = GemmPlan::for_sm(Engine::TensorCore(DType::F16), &sm, [8, 8]);
        assert_eq!((tiny.shape.rows, tiny.shape.cols), (128, 64));
    }

    #[test]
    fn every_plan_fits_its_blocks_and_threads() {
        for sm in SMS {
            for engine in [Engine::TensorCore(DType::BF16), Engine::Ffma] {
                let p = GemmPlan::for_sm(engine, sm, [4096, 4096]);
                let reserved = sm.shared_per_sm - sm.shared_per_block;
                assert!(BLOCKS_PER_SM * (p.shared_bytes() + reserved) <= sm.shared_per_sm, "{} {engine:?}", sm.name);
                assert!(p.results() <= 64 && p.a_bytes().is_multiple_of(16), "{} {engine:?}", sm.name);
                let [a, b] = [p.a_tile(), p.b_tile()];
                // Every thread stages whole 16-byte chunks and whole elements of both tiles.
                for [rows, cols] in [[a[0], a[1] - p.shape.pad], [b[0], b[1] - p.shape.pad]] {
                    let per_chunk = CHUNK_BYTES / engine.element_bytes();
                    assert!((rows * cols / per_chunk).is_multiple_of(GEMM_THREADS), "{} {engine:?}", sm.name);
                }
                if let Engine::TensorCore(_) = engine {
                    assert_eq!(p.shape.warps[0] * p.shape.warps[1] * WARP, GEMM_THREADS);
                }
            }
        }
    }
}
