//! One kernel as an MLIR function for the CPU or the GPU, built operation by operation
//! ([`super::build`]).
//!
//! Every kernel kind goes through one mechanism: the kernel loops over its domain (parallel
//! axes outside, a row kernel's reduced axes inside) and, at each point, asks for the value
//! of each output at the index that point maps to. A value at an index is emitted by its op:
//! a buffer is loaded, a view re-indexes its operand ([`super::index`]), an elementwise op
//! combines its operands at the broadcast indices, a reduction or a matmul loops over what
//! it folds. Values are memoised per (node, index) within the loop scope that defined them,
//! so a row kernel computes each reduction once per row, before its inner loop.
//!
//! The function is `f(args: ptr, begin: i64, end: i64, dims: ptr)`: `args`
//! holds one pointer per kernel input then output (in the program's order), `dims` the
//! run-time value of every symbol by id, and `[begin, end)` is the range of the outermost
//! parallel axis this call computes (the runtime splits it across threads).
//!
//! The kinds have a file each (`contraction`, `row`, `elementwise`, `opaque`), all
//! methods of one `Emitter` over the same index maps; this file holds the domain's loops,
//! the values' memo and the operations every kind builds.
//!
//! Floats are computed in f32 (f16 and bf16 are rounded to their dtype after every op, as
//! the interpreter rounds every node); bools are `i1` in registers and one byte in memory.
//! Integer division and remainder guard their divisor, so a zero divisor (a run-time error
//! in the interpreter) cannot trap the process.

mod contraction;
mod elementwise;
mod gemm;
mod math;
mod opaque;
mod row;
mod strided;

use gemm::{tiled_gemm, Gemm, BLOCKS_PER_SM, GEMM_THREADS, SHARED_MEMORY};
use row::{row_block_plan, RowBlock};
use strided::{strided, Strided};

use std::collections::HashMap;

use melior::ir::{Location, Operation, Region};
use melior::Context;

use super::build::{verified_text, Builder, V};
use super::gpu::Sm;
use super::index::{self, Ix};
use super::LowerError;
use crate::interp::round_float;
use crate::ir::infer::numel;
use crate::ir::{ArgReduceOp, OpClass, PoolKind};
use crate::ir::{BinaryOp, CompareOp, ConstData, DType, Dim, Graph, NodeId, Op, ReduceOp, UnaryOp};
use crate::kernel::{Kernel, KernelId, KernelKind};
use crate::mlir::DiagnosticLog;

/// Lanes of a GPU warp: the threads that share a row of a row kernel.
const WARP: u64 = 32;

/// The pointer type of a GPU kernel's buffers: global memory.
const BUFFER_GPU: &str = "!llvm.ptr<1>";

/// Consecutive points a thread of a GPU elementwise kernel computes (one 16-byte load or store
/// per f32 buffer).
const VECTOR_LANES: u64 = 4;

/// How many rows ahead a row kernel prefetches its inputs (two measured a little better
/// than one for layer_norm over [4096, 1024], the same for softmax).
const PREFETCH_ROWS: u64 = 2;

/// Stride, padding (`[top, left, bottom, right]`) and dilation of a 2-D window.
#[derive(Clone, Debug)]
struct Window {
    stride: [u64; 2],
    padding: [u64; 4],
    dilation: [u64; 2],
}

/// One `k` chunk of a blocked plain tile: `[k0, k0 + len)`, whether it starts or ends the
/// sum, and the partial sums' buffer.
struct KChunk {
    k0: u64,
    len: u64,
    first: bool,
    last: bool,
    partial: V,
    /// The chunk of `b` under the column tile, copied contiguous (`len × 64`), which the
    /// group's row blocks read: one row of `b` is then 256 bytes from the next, not a row of
    /// the whole matrix (on a 3072-column `b`, 12 KiB: a new page for every `k`).
    packed: V,
}

/// What every block of a convolution row shares (see `Emitter::conv_block`).
struct ConvBlock {
    conv: NodeId,
    /// The input row's width.
    in_w: u64,
    x: Strided,
    spill: V,
    window: Window,
    groups: u64,
    kh: u64,
    kw: u64,
}

/// A value in a register and its MLIR type.
#[derive(Clone, Debug)]
struct Reg {
    v: V,
    ty: &'static str,
}

impl Reg {
    fn new(v: V, ty: &'static str) -> Reg {
        Reg { v, ty }
    }
}

/// One iteration of a fold: the loop index and the carried values to the next ones.
type FoldStep<'a, 'g, 'c> = dyn FnMut(&mut Emitter<'g, 'c>, Ix, &[Reg]) -> Result<Vec<Reg>, LowerError> + 'a;

#[derive(Default)]
struct Scope {
    ix: HashMap<Ix, V>,
    values: HashMap<(NodeId, Vec<Ix>), Reg>,
}

struct Emitter<'g, 'c> {
    b: Builder<'c>,
    graph: &'g Graph,
    device: Device,
    id: KernelId,
    kernel: &'g Kernel,
    slots: HashMap<NodeId, usize>,
    /// The function's arguments: `args`, `begin`, `end`, `dims`.
    params: [V; 4],
    /// The constant tables the kernel reads, by name: their element type and bytes.
    tables: Vec<(String, &'static str, Vec<u8>)>,
    buffers: Vec<V>,
    /// A contraction computed a row panel at a time: its matmul, the column count and the
    /// accumulator row.
    panel: Option<(NodeId, u64, V)>,
    /// With a panel that fits the register tile: the tile's spill buffer.
    tile: Option<Tile>,
    /// A convolution computed [`LANES`] output columns at a time: the conv, its input as
    /// strides, and a spill buffer of one vector.
    conv: Option<(NodeId, Strided, V)>,
    /// Row-kernel values kept in a scratch row between a reduction's loop and the output
    /// loop ([`Emitter::plan_row_cache`]).
    row_cache: std::collections::BTreeMap<NodeId, V>,
    /// A GPU contraction as a tiled GEMM ([`tiled_gemm`]).
    gemm: Option<Gemm>,
    /// A GPU row kernel that runs a block per row: its shared memory ([`row_block_plan`]).
    row_block: Option<RowBlock>,
    /// How many threads share a GPU row kernel's row: a warp, or a block.
    row_width: u64,
    /// A GPU row kernel: a warp per row, and this thread's lane (an `index` value). Its
    /// row-level float reductions are split over the lanes and combined by shuffles, and its
    /// output loop strides by the warp, so the lanes read and write consecutive elements.
    lane: Option<V>,
    /// Whether a value asked for now is one per row, which every lane of the warp computes
    /// together (a reduction at this level may be split over the lanes).
    row_level_now: bool,
    next: usize,
    scopes: Vec<Scope>,
}

/// A kernel's MLIR: its `func.func` named `@{FUNCTION}` (the caller names it), the
/// constant tables it reads, by name (a name is a hash of the contents, so equal tables of
/// different kernels are one global), and the bytes of dynamic shared memory a GPU block of
/// it needs at launch.
pub struct KernelCode {
    pub function: String,
    pub tables: Vec<(String, String)>,
    pub shared_bytes: u64,
}

/// Where [`KernelCode::function`] holds the function's name.
pub const FUNCTION: &str = "FUNCTION";

/// What a kernel is emitted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// A `func.func` whose loops cover `[begin, end)` of the parallel axis, for one CPU thread.
    Cpu,
    /// A `gpu.func` kernel for one SM: every point of the parallel axes (the ABI axis within
    /// `[begin, end)`) is a GPU thread, found by a grid-stride loop so that any launch size is
    /// correct; a row kernel's rows are loops inside its thread. The SM sizes its GEMM tiles.
    Gpu(Sm),
}

impl Device {
    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }
}

/// The MLIR of `kernel`, built in `context` (whose diagnostics `log` collects) and verified.
pub(crate) fn emit(
    context: &Context,
    log: &DiagnosticLog,
    graph: &Graph,
    id: KernelId,
    kernel: &Kernel,
    device: Device,
) -> Result<KernelCode, LowerError> {
    let slots = kernel.inputs.iter().chain(&kernel.outputs).enumerate().map(|(i, &n)| (n, i)).collect();
    let location = Location::name(context, &format!("{id} ({})", kernel.kind.name()), Location::unknown(context));
    let mut b = Builder::new(context, location);
    let gpu = device.is_gpu();
    let tiled = match device {
        Device::Gpu(sm) => tiled_gemm(graph, kernel, &sm),
        Device::Cpu => None,
    };
    let row_plan = row_block_plan(graph, kernel).filter(|_| gpu && tiled.is_none());
    // A row kernel's shared memory: workgroup attributions after the four parameters. A
    // GEMM's is dynamic, sized per SM.
    let workgroup: Vec<String> = row_plan.as_ref().map(|plan| plan.shared_types(graph)).unwrap_or_default();
    let shared_bytes = tiled.as_ref().map_or(0, |g| g.plan.shared_bytes());
    let mut types = vec!["!llvm.ptr".to_string(), "i64".into(), "i64".into(), "!llvm.ptr".into()];
    types.extend(workgroup.iter().cloned());
    let params = b.open(&types.iter().map(String::as_str).collect::<Vec<_>>());
    let mut e = Emitter {
        b,
        graph,
        device,
        id,
        kernel,
        slots,
        params: [params[0], params[1], params[2], params[3]],
        gemm: tiled,
        row_block: row_plan.as_ref().map(|plan| RowBlock {
            partials: params[4],
            staged: plan.staged.iter().copied().zip(params[5..].iter().copied()).collect(),
            row: None,
        }),
        row_width: WARP,
        tables: Vec::new(),
        buffers: Vec::new(),
        panel: None,
        tile: None,
        conv: None,
        row_cache: std::collections::BTreeMap::new(),
        lane: None,
        row_level_now: false,
        next: 0,
        scopes: vec![Scope::default()],
    };
    e.prologue();
    e.domain_loops()?;
    let (func, ret) = match device {
        Device::Cpu => ("func.func", "func.return"),
        Device::Gpu(_) => ("gpu.func", "gpu.return"),
    };
    e.effect(ret, &[], &[]);
    let body = e.b.close();
    let mut attributes = vec![
        ("sym_name", format!("\"{FUNCTION}\"")),
        ("function_type", "(!llvm.ptr, i64, i64, !llvm.ptr) -> ()".to_string()),
    ];
    if gpu {
        let shared = workgroup.len();
        attributes.extend([("gpu.kernel", "unit".to_string()), ("workgroup_attributions", format!("{shared} : i64"))]);
    }
    if !workgroup.is_empty() {
        // cp.async needs 16-byte rows (MLIR gives an attribution its element's alignment).
        let aligned = vec!["{llvm.align = 16 : i64}"; workgroup.len()];
        attributes.push(("workgroup_attrib_attrs", format!("[{}]", aligned.join(", "))));
    }
    if !workgroup.is_empty() || shared_bytes > 0 {
        // Kernels with shared memory assume the runtime's 256 threads a block.
        attributes.push(("known_block_size", format!("array<i32: {GEMM_THREADS}, 1, 1>")));
    }
    if shared_bytes > 0 {
        // ptxas keeps the registers to what lets the plan's blocks share a multiprocessor.
        attributes.push(("nvvm.minctasm", format!("{BLOCKS_PER_SM} : i32")));
    }
    let attributes: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let function = e.b.detached(func, &attributes, vec![body]);
    let tables = std::mem::take(&mut e.tables);
    let mut globals: Option<Vec<Operation>> =
        tables.iter().map(|(name, ty, bytes)| e.global(name, ty, bytes)).collect();
    let mut names: Vec<String> = tables.into_iter().map(|(name, _, _)| name).collect();
    if shared_bytes > 0 {
        globals = globals.zip(e.shared_memory()).map(|(mut g, s)| {
            g.push(s);
            g
        });
        names.push(SHARED_MEMORY.to_string());
    }
    let kernels = format!("{id} ({})", kernel.kind.name());
    let failed = |diagnostics: String| LowerError::Mlir { stage: "build", kernels: kernels.clone(), diagnostics };
    if let Some(what) = e.b.failure() {
        return Err(failed(what.to_string()));
    }
    let (Some(function), Some(globals)) = (function, globals) else {
        return Err(failed("a function or table was not built".into()));
    };
    let (text, printed) = verified_text(&mut e.b, log, function, globals, gpu).map_err(failed)?;
    let tables = names.into_iter().zip(printed.iter().map(|t| indented(t))).collect();
    Ok(KernelCode { function: indented(&text), tables, shared_bytes })
}

/// `text` indented by two spaces, a line break after every line: as it sits in the module.
fn indented(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// The axis of the kernel's domain whose range `[begin, end)` a call computes, which the
/// runtime splits across threads: the first axis that a row kernel does not reduce, that is
/// not statically 1 (a batch of one must not hide the rows behind it), and that is not a
/// contraction's columns (a row of a matmul is computed whole). `None` when there is no such
/// axis: then a call with `begin < end` computes the whole kernel.
pub fn parallel_axis(kernel: &Kernel) -> Option<usize> {
    let rows: &[usize] = match &kernel.kind {
        KernelKind::Row { axes } => axes,
        _ => &[],
    };
    let columns = (kernel.kind == KernelKind::Contraction).then(|| kernel.domain.len().saturating_sub(1));
    (0..kernel.domain.len()).find(|&a| !rows.contains(&a) && !kernel.domain[a].is_one() && Some(a) != columns)
}

/// How a panel contraction's full row blocks run.
#[derive(Clone, Debug)]
enum Tile {
    /// `b` read in place, row by row (unit stride along its columns): vector accumulators
    /// over columns, spilled to `spill`.
    Plain { spill: V, b: Strided, partial: Option<(V, V)> },
    /// `a` and `b` both with unit stride along `k` (`b` the transpose of `linear`'s weights,
    /// or attention's keys): vector dot products over `k`.
    Transposed { a: Strided, b: Strided },
}

/// `k` per chunk of a blocked [`Tile::Plain`]: the chunk of `b` under one column tile
/// (`KC × 64` floats, 32 KiB) stays in L1 while every row block of a group passes over it.
const KC: u64 = 128;
/// Rows whose partial sums a blocked [`Tile::Plain`] keeps between `k` chunks.
const GROUP_ROWS: u64 = 256;

/// Columns of a [`Tile::Transposed`] block.
const NT_COLS: u64 = 4;

/// The register tile of a contraction: rows of `a`, columns of `b`, lanes per vector.
const TILE_ROWS: u64 = 4;
const TILE_COLS: u64 = 64;
const LANES: u64 = 16;
const VEC: &str = "vector<16xf32>";

/// The address of element `at` of an f32 scratch buffer.
fn e_ptr(e: &mut Emitter, buffer: V, at: &Ix) -> Result<V, LowerError> {
    let i = e.ix(at)?;
    let i = e.cast("index_cast", i, "i64");
    Ok(e.gep(buffer, i, "f32"))
}

fn reg_ty(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => "f32",
        DType::I32 => "i32",
        DType::I64 => "i64",
        DType::Bool => "i1",
    }
}

fn mem_ty(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::I32 => "i32",
        DType::I64 => "i64",
        DType::Bool => "i8",
    }
}

/// The bytes of one element of the memory type `ty` ([`mem_ty`]).
fn mlir_size(ty: &str) -> usize {
    match ty {
        "i8" => 1,
        "f16" | "bf16" => 2,
        "i64" => 8,
        _ => 4,
    }
}

/// FNV-1a, 64 bits: a stable name for a table's contents.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// One element as stored in memory (little-endian).
fn element_bytes(dtype: DType, v: f64) -> Vec<u8> {
    match dtype {
        DType::F32 => (v as f32).to_le_bytes().to_vec(),
        DType::F16 => half::f16::from_f64(v).to_le_bytes().to_vec(),
        DType::BF16 => half::bf16::from_f64(v).to_le_bytes().to_vec(),
        DType::I32 => (v as i32).to_le_bytes().to_vec(),
        DType::I64 => (v as i64).to_le_bytes().to_vec(),
        DType::Bool => vec![u8::from(v != 0.0)],
    }
}

fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// `arith.cmpi`'s predicates, numbered as the dialect numbers them.
const CMPI: [&str; 10] = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"];
/// `arith.cmpf`'s predicates, numbered as the dialect numbers them.
const CMPF: [&str; 16] =
    ["false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une", "uno", "true"];

impl<'g, 'c> Emitter<'g, 'c> {
    // ---- building operations ----------------------------------------------------------

    /// Operation `name` with one result of type `ty`.
    fn op(&mut self, name: &str, operands: &[V], ty: &str, attributes: &[(&str, &str)]) -> V {
        self.b.op(name, operands, &[ty], attributes).first().copied().unwrap_or(V::NONE)
    }

    /// Operation `name` with no result.
    fn effect(&mut self, name: &str, operands: &[V], attributes: &[(&str, &str)]) {
        self.b.op(name, operands, &[], attributes);
    }

    /// `arith.{op} a, b`, of the operands' type.
    fn arith(&mut self, op: &str, a: V, b: V) -> V {
        self.binop(&format!("arith.{op}"), a, b)
    }

    /// The binary operation `name` (`arith.addf`, `arith.maxsi`) of `a` and `b`.
    fn binop(&mut self, name: &str, a: V, b: V) -> V {
        self.b.inferred(name, &[a, b], &[])
    }

    fn binop_fm(&mut self, name: &str, a: V, b: V, flags: &str) -> V {
        self.b.inferred(name, &[a, b], &[("fastmath", &format!("#arith.fastmath<{flags}>"))])
    }

    /// A one-operand operation of its operand's type (`arith.negf`, `math.sqrt`).
    fn unop(&mut self, name: &str, x: V) -> V {
        self.b.inferred(name, &[x], &[])
    }

    /// `arith.{op} x` to type `to` (`index_cast`, `extf`, `bitcast`, ...).
    fn cast(&mut self, op: &str, x: V, to: &str) -> V {
        self.op(&format!("arith.{op}"), &[x], to, &[])
    }

    /// `arith.constant` of `value` written as an attribute (`3 : index`, `true`).
    fn constant(&mut self, value: &str) -> V {
        self.b.inferred("arith.constant", &[], &[("value", value)])
    }

    fn cmpi(&mut self, pred: &str, a: V, b: V) -> V {
        self.compare_with("arith.cmpi", &CMPI, pred, a, b)
    }

    fn cmpf(&mut self, pred: &str, a: V, b: V) -> V {
        self.compare_with("arith.cmpf", &CMPF, pred, a, b)
    }

    fn compare_with(&mut self, name: &str, predicates: &[&str], pred: &str, a: V, b: V) -> V {
        let Some(number) = predicates.iter().position(|p| *p == pred) else {
            self.b.fail(format!("no predicate `{pred}` of `{name}`"));
            return V::NONE;
        };
        self.b.inferred(name, &[a, b], &[("predicate", &format!("{number} : i64"))])
    }

    fn select(&mut self, cond: V, a: V, b: V) -> V {
        self.b.inferred("arith.select", &[cond, a, b], &[])
    }

    /// A load of type `ty` from `ptr`; `align` in bytes where it is more or less than the
    /// type's natural alignment.
    fn load_ptr(&mut self, ptr: V, ty: &str, align: Option<u64>) -> V {
        let align = align.map(|a| format!("{a} : i64"));
        let attributes: Vec<(&str, &str)> = align.iter().map(|a| ("alignment", a.as_str())).collect();
        self.op("llvm.load", &[ptr], ty, &attributes)
    }

    fn store_ptr(&mut self, value: V, ptr: V, align: Option<u64>) {
        let align = align.map(|a| format!("{a} : i64"));
        let attributes: Vec<(&str, &str)> = align.iter().map(|a| ("alignment", a.as_str())).collect();
        self.effect("llvm.store", &[value, ptr], &attributes);
    }

    /// The address of element `offset` (an i64) of `base`, elements of type `elem`.
    fn gep(&mut self, base: V, offset: V, elem: &str) -> V {
        self.gep_typed(base, offset, elem, "!llvm.ptr")
    }

    /// [`Emitter::gep`] for a base pointer of type `pointer` (an address space's).
    fn gep_typed(&mut self, base: V, offset: V, elem: &str, pointer: &str) -> V {
        // i32::MIN marks the index as the dynamic operand.
        let indices = format!("array<i32: {}>", i32::MIN);
        self.op(
            "llvm.getelementptr",
            &[base, offset],
            pointer,
            &[("rawConstantIndices", &indices), ("elem_type", elem)],
        )
    }

    /// The address of element `at` of `base`, elements of type `elem`.
    fn gep_at(&mut self, base: V, at: usize, elem: &str) -> V {
        let indices = format!("array<i32: {at}>");
        self.op("llvm.getelementptr", &[base], "!llvm.ptr", &[("rawConstantIndices", &indices), ("elem_type", elem)])
    }

    fn unsupported(&self, what: impl Into<String>) -> LowerError {
        LowerError::Unsupported { kernel: self.id, what: what.into() }
    }

    /// Buffer pointers and run-time dims, loaded once.
    fn prologue(&mut self) {
        for slot in 0..self.slots.len() {
            let p = self.gep_at(self.params[0], slot, "!llvm.ptr");
            let b = self.load_ptr(p, "!llvm.ptr", None);
            // On the GPU every buffer (device, managed or mapped host memory) is global memory:
            // `ld.global`, not a generic load that resolves its address space each time.
            let b = match self.device {
                Device::Gpu(_) => self.op("llvm.addrspacecast", &[b], BUFFER_GPU, &[]),
                Device::Cpu => b,
            };
            self.buffers.push(b);
        }
        for s in 0..self.graph.symbols.len() {
            let p = self.gep_at(self.params[3], s, "i64");
            let v = self.load_ptr(p, "i64", None);
            let i = self.cast("index_cast", v, "index");
            self.scopes[0].ix.insert(Ix::Sym(crate::ir::SymId(s as u32)), i);
        }
    }

    fn lookup_ix(&self, ix: &Ix) -> Option<V> {
        self.scopes.iter().rev().find_map(|s| s.ix.get(ix).copied())
    }

    fn ix(&mut self, ix: &Ix) -> Result<V, LowerError> {
        if let Some(name) = self.lookup_ix(ix) {
            return Ok(name);
        }
        let name = match ix {
            Ix::Const(c) => self.constant(&format!("{c} : index")),
            Ix::Value(v) => *v,
            Ix::Var(_) | Ix::Sym(_) => return Err(self.unsupported(format!("index {ix:?} used outside its loop"))),
            Ix::Add(a, b) | Ix::Sub(a, b) | Ix::Mul(a, b) | Ix::Div(a, b) | Ix::Rem(a, b) => {
                let (a, b) = (self.ix(a)?, self.ix(b)?);
                let op = match ix {
                    Ix::Add(..) => "addi",
                    Ix::Sub(..) => "subi",
                    Ix::Mul(..) => "muli",
                    Ix::Div(..) => "divui",
                    _ => "remui",
                };
                self.arith(op, a, b)
            }
        };
        if let Some(scope) = self.scopes.last_mut() {
            scope.ix.insert(ix.clone(), name);
        }
        Ok(name)
    }

    fn shape(&self, n: NodeId) -> &'g [Dim] {
        &self.graph.ty(n).shape
    }

    fn dtype(&self, n: NodeId) -> DType {
        self.graph.ty(n).dtype
    }

    // ---- loops ----------------------------------------------------------------------

    /// `scf.for` over `[lo, hi)` with no results; `body` runs inside with `Var(depth)` bound.
    fn for_loop(
        &mut self,
        lo: V,
        hi: V,
        body: &mut dyn FnMut(&mut Self, Ix) -> Result<(), LowerError>,
    ) -> Result<(), LowerError> {
        self.for_step(lo, hi, 1, body)
    }

    fn for_step(
        &mut self,
        lo: V,
        hi: V,
        step: u64,
        body: &mut dyn FnMut(&mut Self, Ix) -> Result<(), LowerError>,
    ) -> Result<(), LowerError> {
        let step = self.ix(&Ix::Const(step))?;
        self.for_stride(lo, hi, step, &mut |e, ix, _| body(e, ix))
    }

    /// [`Emitter::for_step`] with the step a value; `body` also gets the loop variable.
    fn for_stride(
        &mut self,
        lo: V,
        hi: V,
        step: V,
        body: &mut dyn FnMut(&mut Self, Ix, V) -> Result<(), LowerError>,
    ) -> Result<(), LowerError> {
        let var = self.b.open(&["index"])[0];
        let ix = self.enter(var);
        body(self, ix, var)?;
        self.leave();
        self.effect("scf.yield", &[], &[]);
        let region = self.b.close();
        self.b.op_with("scf.for", &[lo, hi, step], &[], &[], vec![region]);
        Ok(())
    }

    fn enter(&mut self, var: V) -> Ix {
        self.scopes.push(Scope::default());
        self.bind(var)
    }

    fn leave(&mut self) {
        self.scopes.pop();
    }

    /// The domain: parallel axes outside (the first over `[begin, end)`), a row kernel's
    /// reduced axes inside; per-row outputs and reductions at the row level.
    fn domain_loops(&mut self) -> Result<(), LowerError> {
        let domain = &self.kernel.domain;
        let rows: Vec<usize> = match &self.kernel.kind {
            KernelKind::Row { axes } => axes.clone(),
            _ => Vec::new(),
        };
        let mut parallel: Vec<usize> = (0..domain.len()).filter(|a| !rows.contains(a)).collect();
        if self.device.is_gpu() {
            if let Some(gemm) = self.gemm.clone() {
                return self.gemm_tiles(&gemm);
            }
            parallel.retain(|&a| !domain[a].is_one());
            return self.gpu_threads(&parallel, &rows);
        }
        self.plan_row_cache(&rows);
        if let Some((mm, cols)) = self.panel_matmul() {
            let count = self.constant(&format!("{cols} : i64"));
            let acc = self.op("llvm.alloca", &[count], "!llvm.ptr", &[("elem_type", "f32")]);
            if let Some(b) = self.tile_fits(mm, cols) {
                let spill = self.scratch(TILE_ROWS * TILE_COLS);
                let partial =
                    self.k_chunks(mm).map(|_| (self.scratch(GROUP_ROWS * TILE_COLS), self.scratch(KC * TILE_COLS)));
                self.tile = Some(Tile::Plain { spill, b, partial });
            } else if let Some((a, b)) = self.transposed_fits(mm, cols) {
                self.tile = Some(Tile::Transposed { a, b });
            }
            self.panel = Some((mm, cols, acc));
            parallel.pop();
        } else if let Some((conv, x)) = self.conv_fits() {
            let spill = self.scratch(LANES);
            self.conv = Some((conv, x, spill));
            parallel.pop();
        }
        // An axis of size 1 needs no loop: its index is 0.
        parallel.retain(|&a| !domain[a].is_one());
        let begin = self.cast("index_cast", self.params[1], "index");
        let end = self.cast("index_cast", self.params[2], "index");
        let point = vec![Ix::Const(0); domain.len()];
        match parallel_axis(self.kernel) {
            Some(axis) if parallel.first() == Some(&axis) => {
                self.parallel_loops(&parallel, &rows, &point, Some((begin, end)))
            }
            _ => self.one_point(begin, end, &mut |e| e.parallel_loops(&parallel, &rows, &point, None)),
        }
    }

    /// The GPU domain: thread `t` of a grid-stride loop over every point of the `parallel`
    /// axes computes that point (its rows, for a row kernel). The ABI's parallel axis, when it
    /// leads, is the outermost part of `t` and offset by `begin`; otherwise the kernel runs
    /// only when `begin < end`, as on the CPU.
    fn gpu_threads(&mut self, parallel: &[usize], rows: &[usize]) -> Result<(), LowerError> {
        let domain = self.kernel.domain.clone();
        let begin = self.cast("index_cast", self.params[1], "index");
        let end = self.cast("index_cast", self.params[2], "index");
        let abi = parallel_axis(self.kernel).filter(|a| parallel.first() == Some(a));
        let inner_axes: Vec<usize> = parallel.iter().copied().filter(|&a| Some(a) != abi).collect();
        let mut inner_dims: Vec<Dim> = inner_axes.iter().map(|&a| domain[a].clone()).collect();
        // An elementwise kernel with a static innermost axis: VECTOR_LANES points a thread.
        let vector = rows.is_empty() && self.vectorizes(&inner_axes);
        if let (true, Some(last)) = (vector, inner_dims.last_mut()) {
            *last = Dim::known(last.as_known().unwrap_or(0) / VECTOR_LANES);
        }
        let inner = self.ix(&inner_dims.iter().fold(Ix::Const(1), |acc, d| Ix::prod(acc, Ix::dim(d))))?;
        // A row kernel runs a warp (or a block) per point: `t = point * width + lane`. With the
        // block's 256 threads as the width, every thread of a block takes the same points.
        let warp = !rows.is_empty();
        self.row_width = if self.row_block.is_some() { GEMM_THREADS } else { WARP };
        let points = match abi {
            Some(_) => {
                let count = self.arith("subi", end, begin);
                self.arith("muli", count, inner)
            }
            None => {
                let zero = self.ix(&Ix::Const(0))?;
                let runs = self.cmpi("ult", begin, end);
                self.select(runs, inner, zero)
            }
        };
        let width = if warp { Some(self.ix(&Ix::Const(self.row_width))?) } else { None };
        let total = match &width {
            Some(w) => self.arith("muli", points, *w),
            None => points,
        };
        let x = [("dimension", "#gpu<dim x>")];
        let (tid, bid) = (self.op("gpu.thread_id", &[], "index", &x), self.op("gpu.block_id", &[], "index", &x));
        let (bdim, gdim) = (self.op("gpu.block_dim", &[], "index", &x), self.op("gpu.grid_dim", &[], "index", &x));
        let first = self.arith("muli", bid, bdim);
        let first = self.arith("addi", first, tid);
        let stride = self.arith("muli", gdim, bdim);
        self.for_stride(first, total, stride, &mut |e, _, var| {
            let var = match &width {
                Some(w) => {
                    e.lane = Some(e.arith("remui", var, *w));
                    e.arith("divui", var, *w)
                }
                None => var,
            };
            let mut point = vec![Ix::Const(0); domain.len()];
            let rest = match abi {
                Some(axis) => {
                    let outer = e.arith("divui", var, inner);
                    let outer = e.arith("addi", outer, begin);
                    point[axis] = e.bind(outer);
                    let rest = e.arith("remui", var, inner);
                    e.bind(rest)
                }
                None => e.bind(var),
            };
            for (a, i) in inner_axes.iter().zip(index::delinearize(rest, &inner_dims)) {
                point[*a] = i;
            }
            match (vector, inner_axes.last()) {
                (true, Some(&last)) => {
                    point[last] = Ix::prod(point[last].clone(), Ix::Const(VECTOR_LANES));
                    e.vector_points(&point, last)
                }
                _ => e.innermost(rows, &point),
            }
        })
    }

    /// Whether an elementwise GPU kernel computes [`VECTOR_LANES`] consecutive points a thread:
    /// its innermost axis is one of `inner_axes` (not the call's range) and a static multiple of
    /// the lanes.
    fn vectorizes(&self, inner_axes: &[usize]) -> bool {
        let last = self.kernel.domain.len() - 1;
        let static_lanes = self.kernel.domain[last].as_known().is_some_and(|d| d % VECTOR_LANES == 0);
        self.kernel.kind == KernelKind::Elementwise && inner_axes.last() == Some(&last) && static_lanes
    }

    /// [`VECTOR_LANES`] consecutive points along `axis` from `point`: the inputs read whole and
    /// the outputs by one 16-byte (for f32) vector load or store each where every such address
    /// is aligned to the vector, point by point otherwise (a caller's buffer may not be).
    fn vector_points(&mut self, point: &[Ix], axis: usize) -> Result<(), LowerError> {
        let domain = self.kernel.domain.clone();
        let points: Vec<Vec<Ix>> = (0..VECTOR_LANES)
            .map(|l| {
                let mut p = point.to_vec();
                p[axis] = Ix::sum(point[axis].clone(), Ix::Const(l));
                p
            })
            .collect();
        let whole: Vec<NodeId> =
            self.kernel.inputs.iter().copied().filter(|&n| self.shape(n) == domain.as_slice()).collect();
        let outputs = self.kernel.outputs.clone();
        let mut aligned = self.constant("true");
        let mut addresses = Vec::new();
        for &n in whole.iter().chain(&outputs) {
            let at = index::reshape(&points[0], &domain, self.shape(n));
            let ptr = self.address(n, &at)?;
            let bytes = VECTOR_LANES * self.dtype(n).size_bytes() as u64;
            let address = self.op("llvm.ptrtoint", &[ptr], "i64", &[]);
            let address = self.cast("index_cast", address, "index");
            let align = self.ix(&Ix::Const(bytes))?;
            let (rem, zero) = (self.arith("remui", address, align), self.ix(&Ix::Const(0))?);
            let ok = self.cmpi("eq", rem, zero);
            aligned = self.arith("andi", aligned, ok);
            addresses.push((n, ptr, bytes));
        }
        self.if_else(
            aligned,
            &mut |e| {
                for &(n, ptr, bytes) in &addresses[..whole.len()] {
                    let dtype = e.dtype(n);
                    let vector = e.load_ptr(ptr, &format!("vector<{VECTOR_LANES}x{}>", mem_ty(dtype)), Some(bytes));
                    for (l, at) in points.iter().enumerate() {
                        let position = format!("array<i64: {l}>");
                        let raw = e.op("vector.extract", &[vector], mem_ty(dtype), &[("static_position", &position)]);
                        let value = e.widen(raw, dtype);
                        e.remember(n, at, value);
                    }
                }
                for &(o, ptr, bytes) in &addresses[whole.len()..] {
                    let dtype = e.dtype(o);
                    let mut lanes = Vec::with_capacity(points.len());
                    for at in &points {
                        let idx = index::reshape(at, &domain, e.shape(o));
                        let value = e.value(o, &idx)?;
                        lanes.push(e.narrow(&value, dtype));
                    }
                    let ty = format!("vector<{VECTOR_LANES}x{}>", mem_ty(dtype));
                    let vector = e.op("vector.from_elements", &lanes, &ty, &[]);
                    e.store_ptr(vector, ptr, Some(bytes));
                }
                Ok(())
            },
            &mut |e| {
                for at in &points {
                    outputs.iter().try_for_each(|&o| e.store_at(o, at, &domain))?;
                }
                Ok(())
            },
        )
    }

    /// An index expression for the SSA index `name`, in the current scope.
    fn bind(&mut self, name: V) -> Ix {
        let ix = Ix::Var(self.next);
        self.next += 1;
        self.scopes.last_mut().map(|s| s.ix.insert(ix.clone(), name));
        ix
    }

    /// `body` once when `begin < end`: a kernel whose range is a single point.
    fn one_point(
        &mut self,
        begin: V,
        end: V,
        body: &mut dyn FnMut(&mut Self) -> Result<(), LowerError>,
    ) -> Result<(), LowerError> {
        let cond = self.cmpi("ult", begin, end);
        self.when(cond, body)
    }

    /// `body` where the i1 `cond` holds (`scf.if` without results).
    fn when(&mut self, cond: V, body: &mut dyn FnMut(&mut Self) -> Result<(), LowerError>) -> Result<(), LowerError> {
        let then = self.region(&mut |e| body(e).map(|()| Vec::new()))?;
        self.b.op_with("scf.if", &[cond], &[], &[], vec![then, Region::new()]);
        Ok(())
    }

    /// `then` where the i1 `cond` holds, `other` where it does not (`scf.if` without results).
    fn if_else(
        &mut self,
        cond: V,
        then: &mut dyn FnMut(&mut Self) -> Result<(), LowerError>,
        other: &mut dyn FnMut(&mut Self) -> Result<(), LowerError>,
    ) -> Result<(), LowerError> {
        let then = self.region(&mut |e| then(e).map(|()| Vec::new()))?;
        let other = self.region(&mut |e| other(e).map(|()| Vec::new()))?;
        self.b.op_with("scf.if", &[cond], &[], &[], vec![then, other]);
        Ok(())
    }

    /// A region of one block, a scope of its own, yielding what `body` returns.
    fn region(
        &mut self,
        body: &mut dyn FnMut(&mut Self) -> Result<Vec<V>, LowerError>,
    ) -> Result<Region<'c>, LowerError> {
        self.b.open(&[]);
        self.scopes.push(Scope::default());
        let yielded = body(self)?;
        self.effect("scf.yield", &yielded, &[]);
        self.leave();
        Ok(self.b.close())
    }

    fn parallel_loops(
        &mut self,
        parallel: &[usize],
        rows: &[usize],
        point: &[Ix],
        range: Option<(V, V)>,
    ) -> Result<(), LowerError> {
        let Some((&axis, rest)) = parallel.split_first() else {
            // No parallel axis left; with none at all, the call's range is one point.
            return match range {
                Some((begin, end)) => self.one_point(begin, end, &mut |e| e.innermost(rows, point)),
                None => self.innermost(rows, point),
            };
        };
        let (lo, hi) = match range {
            Some(r) => r,
            None => (self.ix(&Ix::Const(0))?, self.ix(&Ix::dim(&self.kernel.domain[axis]))?),
        };
        let mut inner = point.to_vec();
        if rest.is_empty() && self.tile.is_some() {
            return self.row_blocks(lo, hi, axis, point);
        }
        self.for_loop(lo, hi, &mut |e, var| {
            inner[axis] = var;
            e.parallel_loops(rest, rows, &inner, None)
        })
    }

    /// What runs at a point of the parallel loops: a convolution's row of output columns,
    /// or the row level.
    fn innermost(&mut self, rows: &[usize], point: &[Ix]) -> Result<(), LowerError> {
        match self.conv.clone() {
            Some((conv, x, spill)) => self.conv_row(point, conv, &x, spill),
            None => self.row_level(rows, point),
        }
    }

    fn store_at(&mut self, o: NodeId, point: &[Ix], domain: &[Dim]) -> Result<(), LowerError> {
        if numel(self.shape(o)) != numel(domain) {
            return Err(self.unsupported(format!("output {o} has neither the domain's size nor a row's")));
        }
        let idx = index::reshape(point, domain, self.shape(o));
        let value = self.value(o, &idx)?;
        self.store(o, &idx, &value)
    }

    // ---- memory ---------------------------------------------------------------------

    fn address(&mut self, n: NodeId, idx: &[Ix]) -> Result<V, LowerError> {
        self.element_ptr(n, &index::linearize(idx, self.shape(n)))
    }

    /// The address of element `position` (row-major) of the buffer `n`.
    fn element_ptr(&mut self, n: NodeId, position: &Ix) -> Result<V, LowerError> {
        let slot = *self.slots.get(&n).ok_or_else(|| self.unsupported(format!("{n} is not a buffer of the kernel")))?;
        let linear = self.ix(position)?;
        let offset = self.cast("index_cast", linear, "i64");
        let base = self.buffers.get(slot).copied().unwrap_or(V::NONE);
        let ty = mem_ty(self.dtype(n));
        let pointer = if self.device.is_gpu() { BUFFER_GPU } else { "!llvm.ptr" };
        Ok(self.gep_typed(base, offset, ty, pointer))
    }

    /// A 64-byte-aligned f32 scratch buffer of `count` elements on the stack.
    fn scratch(&mut self, count: u64) -> V {
        let size = self.constant(&format!("{count} : i64"));
        self.op("llvm.alloca", &[size], "!llvm.ptr", &[("elem_type", "f32"), ("alignment", "64 : i64")])
    }

    /// An f32 repeated in every lane of a [`VEC`].
    fn splat(&mut self, scalar: V) -> V {
        self.op("vector.broadcast", &[scalar], VEC, &[])
    }

    /// A [`VEC`] of zeros.
    fn zero_vector(&mut self) -> Reg {
        let zero = self.immediate(DType::F32, 0.0);
        Reg { v: self.splat(zero.v), ty: VEC }
    }

    /// `a·b + c` on f32 values or vectors of type `ty`, fused where the CPU has FMA.
    fn fmuladd(&mut self, a: V, b: V, c: V, ty: &'static str) -> Reg {
        Reg::new(self.op("llvm.intr.fmuladd", &[a, b, c], ty, &[]), ty)
    }

    fn load(&mut self, n: NodeId, idx: &[Ix]) -> Result<Reg, LowerError> {
        let dtype = self.dtype(n);
        if let Some(raw) = self.staged_load(n, idx)? {
            return Ok(self.widen(raw, dtype));
        }
        let ptr = self.address(n, idx)?;
        let raw = self.load_ptr(ptr, mem_ty(dtype), None);
        Ok(self.widen(raw, dtype))
    }

    /// A value as loaded from memory, in its register type.
    fn widen(&mut self, raw: V, dtype: DType) -> Reg {
        match dtype {
            DType::F16 | DType::BF16 => Reg::new(self.cast("extf", raw, "f32"), "f32"),
            DType::Bool => {
                let zero = self.constant("0 : i8");
                Reg::new(self.cmpi("ne", raw, zero), "i1")
            }
            _ => Reg { v: raw, ty: reg_ty(dtype) },
        }
    }

    fn store(&mut self, n: NodeId, idx: &[Ix], value: &Reg) -> Result<(), LowerError> {
        let dtype = self.dtype(n);
        let ptr = self.address(n, idx)?;
        let raw = self.narrow(value, dtype);
        self.store_ptr(raw, ptr, None);
        Ok(())
    }

    /// A register value in its memory type (the inverse of [`Emitter::widen`]).
    fn narrow(&mut self, value: &Reg, dtype: DType) -> V {
        match dtype {
            DType::F16 | DType::BF16 => self.cast("truncf", value.v, mem_ty(dtype)),
            DType::Bool => self.cast("extui", value.v, "i8"),
            _ => value.v,
        }
    }

    // ---- values ---------------------------------------------------------------------

    /// The value of `n` at `idx`, memoised in the innermost scope.
    fn value(&mut self, n: NodeId, idx: &[Ix]) -> Result<Reg, LowerError> {
        let key = self.memo_key(n, idx);
        if let Some(r) = self.scopes.iter().rev().find_map(|s| s.values.get(&key).cloned()) {
            return Ok(r);
        }
        let r = if self.kernel.inputs.contains(&n) { self.load(n, idx)? } else { self.compute(n, idx)? };
        if let Some(scope) = self.scopes.last_mut() {
            scope.values.insert(key, r.clone());
        }
        Ok(r)
    }

    /// Records that `n` at `idx` is `r` in the innermost scope (a tile's result, a cached row).
    fn remember(&mut self, n: NodeId, idx: &[Ix], r: Reg) {
        let key = self.memo_key(n, idx);
        if let Some(scope) = self.scopes.last_mut() {
            scope.values.insert(key, r);
        }
    }

    /// The memo key of `n` at `idx`: an axis of size 1 has only index 0, so a value stored at
    /// the domain's loop variable there is found by a consumer that broadcasts it to 0 (a
    /// `[1, M, N]` matmul recomputed every element of its epilogue before this).
    fn memo_key(&self, n: NodeId, idx: &[Ix]) -> (NodeId, Vec<Ix>) {
        let shape = self.shape(n);
        let one = |a: usize| shape.get(a).is_some_and(Dim::is_one);
        (n, idx.iter().enumerate().map(|(a, i)| if one(a) { Ix::Const(0) } else { i.clone() }).collect())
    }

    /// Whether `r` is a value of a scope outside the innermost one (through views, a value
    /// keeps its register): one the innermost loop does not change.
    fn defined_outside(&self, r: &Reg) -> bool {
        let outer = &self.scopes[..self.scopes.len().saturating_sub(1)];
        outer.iter().any(|s| s.values.values().any(|v| v.v == r.v))
    }

    fn operand(&mut self, n: NodeId, i: usize, idx: &[Ix]) -> Result<Reg, LowerError> {
        let o = self.graph.operands(n)[i];
        let at = index::broadcast(idx, self.shape(o));
        self.value(o, &at)
    }

    fn compute(&mut self, n: NodeId, idx: &[Ix]) -> Result<Reg, LowerError> {
        let dtype = self.dtype(n);
        let operands = self.graph.operands(n);
        match self.graph.op(n) {
            Op::Input { .. } | Op::Param { .. } => Err(self.unsupported(format!("{n} is read but not an input"))),
            Op::Constant { data } => self.constant_value(n, data, idx),
            Op::Iota { axis } => {
                let i = self.ix(&idx[*axis])?;
                let i = self.cast("index_cast", i, "i64");
                Ok(self.convert(Reg { v: i, ty: "i64" }, DType::I64, dtype))
            }
            Op::Unary(u) => {
                let x = self.operand(n, 0, idx)?;
                self.unary(*u, dtype, x)
            }
            Op::Binary(BinaryOp::Pow) if is_float(dtype) && self.small_power(operands[1]).is_some() => {
                let x = self.operand(n, 0, idx)?;
                let power = self.small_power(operands[1]).unwrap_or(1);
                self.repeated_product(x, power, dtype)
            }
            Op::Binary(BinaryOp::Div) if is_float(dtype) => {
                let (x, y) = (self.operand(n, 0, idx)?, self.operand(n, 1, idx)?);
                if !self.defined_outside(&y) {
                    return self.binary(BinaryOp::Div, dtype, x, y);
                }
                // A divisor computed outside this loop (softmax's row sum): its reciprocal
                // is loop-invariant, so LLVM hoists the one division and each element costs
                // a multiply (1.5 ulp instead of 0.5: within R and T).
                let one = self.immediate(DType::F32, 1.0);
                let r = Reg::new(self.arith("divf", one.v, y.v), "f32");
                let q = Reg::new(self.arith("mulf", x.v, r.v), "f32");
                Ok(self.round(q, dtype))
            }
            Op::Binary(b) => {
                let (x, y) = (self.operand(n, 0, idx)?, self.operand(n, 1, idx)?);
                self.binary(*b, dtype, x, y)
            }
            Op::Compare(c) => {
                let (x, y) = (self.operand(n, 0, idx)?, self.operand(n, 1, idx)?);
                Ok(self.compare(*c, self.dtype(operands[0]), &x, &y))
            }
            Op::Select => {
                let (c, x, y) = (self.operand(n, 0, idx)?, self.operand(n, 1, idx)?, self.operand(n, 2, idx)?);
                Ok(Reg::new(self.select(c.v, x.v, y.v), x.ty))
            }
            Op::Cast => {
                let x = self.operand(n, 0, idx)?;
                Ok(self.convert(x, self.dtype(operands[0]), dtype))
            }
            Op::Reshape => {
                let o = operands[0];
                let at = index::reshape(idx, self.shape(n), self.shape(o));
                self.value(o, &at)
            }
            Op::Permute { perm } => {
                let mut at = vec![Ix::Const(0); perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    at[p] = idx[i].clone();
                }
                self.value(operands[0], &at)
            }
            Op::Broadcast => self.operand(n, 0, idx),
            Op::Slice { axis, start, step, .. } => {
                let mut at = idx.to_vec();
                at[*axis] = Ix::sum(Ix::Const(*start), Ix::prod(idx[*axis].clone(), Ix::Const(*step)));
                self.value(operands[0], &at)
            }
            Op::Reduce { op, axes, keepdims } => self.reduce(n, *op, axes, *keepdims, idx),
            Op::ArgReduce { op, axis, keepdims } => self.arg_reduce(n, *op, *axis, *keepdims, idx),
            Op::MatMul => self.matmul(n, idx),
            Op::Concat { axis } => self.concat(n, *axis, idx),
            Op::Pad { low, value, .. } => self.pad(n, low, *value, idx),
            Op::Gather { axis } => self.gather(n, *axis, idx),
            Op::Conv2d { stride, padding, dilation, groups } => {
                let window = Window { stride: *stride, padding: *padding, dilation: *dilation };
                self.conv2d(n, &window, *groups, idx)
            }
            Op::Pool2d { kind, kernel, stride, padding, count_include_pad } => {
                let window = Window { stride: *stride, padding: *padding, dilation: [1, 1] };
                self.pool2d(n, *kind, *kernel, &window, *count_include_pad, idx)
            }
            op @ (Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::LayerNorm { .. }
            | Op::RmsNorm { .. }
            | Op::Gelu { .. }
            | Op::Silu
            | Op::Linear
            | Op::Attention { .. }) => Err(self.unsupported(format!("`{}` is not lowered yet", op.name()))),
        }
    }

    // ---- branches -------------------------------------------------------------------

    /// `scf.if cond -> ty { then } else { other }`.
    fn select_branch(
        &mut self,
        cond: V,
        ty: &'static str,
        then: &mut dyn FnMut(&mut Self) -> Result<Reg, LowerError>,
        other: &mut dyn FnMut(&mut Self) -> Result<Reg, LowerError>,
    ) -> Result<Reg, LowerError> {
        let then = self.branch(then)?;
        let other = self.branch(other)?;
        Ok(Reg::new(self.b.op_with("scf.if", &[cond], &[ty], &[], vec![then, other])[0], ty))
    }

    /// A region yielding what `body` computes.
    fn branch(&mut self, body: &mut dyn FnMut(&mut Self) -> Result<Reg, LowerError>) -> Result<Region<'c>, LowerError> {
        self.region(&mut |e| body(e).map(|r| vec![r.v]))
    }
}
