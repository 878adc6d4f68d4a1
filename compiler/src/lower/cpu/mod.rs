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
//! Floats are computed in f32 (f16 and bf16 are rounded to their dtype after every op, as
//! the interpreter rounds every node); bools are `i1` in registers and one byte in memory.
//! Integer division and remainder guard their divisor, so a zero divisor (a run-time error
//! in the interpreter) cannot trap the process.

mod math;
mod strided;

use strided::{strided, Strided};

use std::collections::HashMap;

use melior::ir::{Location, Operation, Region};
use melior::Context;

use super::build::{verified_text, Builder, V};
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

/// How many rows ahead a row kernel prefetches its inputs (two measured a little better
/// than one for layer_norm over [4096, 1024], the same for softmax).
const PREFETCH_ROWS: u64 = 2;

/// Stride, padding (`[top, left, bottom, right]`) and dilation of a 2-D window.
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

/// A kernel's MLIR: its `func.func` named `@{FUNCTION}` (the caller names it), and the
/// constant tables it reads, by name (a name is a hash of the contents, so equal tables of
/// different kernels are one global).
pub struct KernelCode {
    pub function: String,
    pub tables: Vec<(String, String)>,
}

/// Where [`KernelCode::function`] holds the function's name.
pub const FUNCTION: &str = "FUNCTION";

/// What a kernel is emitted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// A `func.func` whose loops cover `[begin, end)` of the parallel axis, for one CPU thread.
    Cpu,
    /// A `gpu.func` kernel: every point of the parallel axes (the ABI axis within `[begin,
    /// end)`) is a GPU thread, found by a grid-stride loop so that any launch size is correct;
    /// a row kernel's rows are loops inside its thread.
    Gpu,
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
    let params = b.open(&["!llvm.ptr", "i64", "i64", "!llvm.ptr"]);
    let mut e = Emitter {
        b,
        graph,
        device,
        id,
        kernel,
        slots,
        params: [params[0], params[1], params[2], params[3]],
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
        Device::Gpu => ("gpu.func", "gpu.return"),
    };
    e.effect(ret, &[], &[]);
    let body = e.b.close();
    let mut attributes = vec![
        ("sym_name", format!("\"{FUNCTION}\"")),
        ("function_type", "(!llvm.ptr, i64, i64, !llvm.ptr) -> ()".to_string()),
    ];
    if device == Device::Gpu {
        attributes.extend([("gpu.kernel", "unit".to_string()), ("workgroup_attributions", "0 : i64".to_string())]);
    }
    let attributes: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let function = e.b.detached(func, &attributes, vec![body]);
    let tables = std::mem::take(&mut e.tables);
    let globals: Option<Vec<Operation>> = tables.iter().map(|(name, ty, bytes)| e.global(name, ty, bytes)).collect();
    let kernels = format!("{id} ({})", kernel.kind.name());
    let failed = |diagnostics: String| LowerError::Mlir { stage: "build", kernels: kernels.clone(), diagnostics };
    if let Some(what) = e.b.failure() {
        return Err(failed(what.to_string()));
    }
    let (Some(function), Some(globals)) = (function, globals) else {
        return Err(failed("a function or table was not built".into()));
    };
    let (text, printed) = verified_text(&mut e.b, log, function, globals, device == Device::Gpu).map_err(failed)?;
    let tables = tables.into_iter().map(|(name, _, _)| name).zip(printed.iter().map(|t| indented(t))).collect();
    Ok(KernelCode { function: indented(&text), tables })
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
        // i32::MIN marks the index as the dynamic operand.
        let indices = format!("array<i32: {}>", i32::MIN);
        self.op(
            "llvm.getelementptr",
            &[base, offset],
            "!llvm.ptr",
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
        if self.device == Device::Gpu {
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
        let inner_dims: Vec<Dim> = inner_axes.iter().map(|&a| domain[a].clone()).collect();
        let inner = self.ix(&inner_dims.iter().fold(Ix::Const(1), |acc, d| Ix::prod(acc, Ix::dim(d))))?;
        // A row kernel runs a warp per point: `t = point * WARP + lane`.
        let warp = !rows.is_empty();
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
        let width = if warp { Some(self.ix(&Ix::Const(WARP))?) } else { None };
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
            e.innermost(rows, &point)
        })
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
        self.b.open(&[]);
        self.scopes.push(Scope::default());
        body(self)?;
        self.leave();
        self.effect("scf.yield", &[], &[]);
        let then = self.b.close();
        self.b.op_with("scf.if", &[cond], &[], &[], vec![then, Region::new()]);
        Ok(())
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

    /// The rows `[lo, hi)` of a tiled contraction: blocks of [`TILE_ROWS`] rows through the
    /// register tile, the remaining rows one by one through the row panel. The column tiles
    /// are the outer loop, so one tile's panel of `b` (`k` × the tile's columns) stays in
    /// cache while every row block of the range passes over it; with the rows outside, all
    /// of `b` streamed from memory once per row block.
    fn row_blocks(&mut self, lo: V, hi: V, axis: usize, point: &[Ix]) -> Result<(), LowerError> {
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
    fn strided_row(&mut self, view: &Strided, lead: [Ix; 3], column: Ix, step: u64) -> Result<V, LowerError> {
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
    fn masked_row(
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
    fn even_lanes(&mut self, a: V, b: V, step: u64, ty: &str) -> V {
        let lanes: Vec<String> = (0..LANES).map(|l| (step * l).to_string()).collect();
        let mask = format!("array<i64: {}>", lanes.join(", "));
        self.op("vector.shuffle", &[a, b], ty, &[("mask", &mask)])
    }

    /// What runs at a point of the parallel loops: a convolution's row of output columns,
    /// or the row level.
    fn innermost(&mut self, rows: &[usize], point: &[Ix]) -> Result<(), LowerError> {
        match self.conv.clone() {
            Some((conv, x, spill)) => self.conv_row(point, conv, &x, spill),
            None => self.row_level(rows, point),
        }
    }

    /// The convolution of a contraction kernel that can run [`LANES`] output columns at a
    /// time, and its input as strides: f32, writing the whole domain, a column stride of 1
    /// or 2, unit stride along the input's columns, static spatial sizes and window.
    fn conv_fits(&self) -> Option<(NodeId, Strided)> {
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
    fn conv_row(&mut self, point: &[Ix], conv: NodeId, xv: &Strided, spill: V) -> Result<(), LowerError> {
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
    fn conv_block(&mut self, point: &[Ix], cx: &ConvBlock, start: Ix, masked: Option<u64>) -> Result<(), LowerError> {
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
    fn strided(&self, n: NodeId) -> Option<Strided> {
        strided(self.graph, &self.kernel.inputs, n).filter(|s| self.dtype(s.buffer) == DType::F32)
    }

    /// `b` when the panel's matmul can use the register tile: f32 operands, `b` read in
    /// place with unit stride along its columns, and the columns a multiple of
    /// [`TILE_COLS`].
    fn tile_fits(&self, mm: NodeId, cols: u64) -> Option<Strided> {
        let ops = self.graph.operands(mm);
        let f32s = ops.iter().take(2).all(|&o| self.dtype(o) == DType::F32);
        let b = self.strided(ops[1]).filter(|b| b.unit_along(b.strides.len() - 1))?;
        (f32s && cols.is_multiple_of(TILE_COLS)).then_some(b)
    }

    /// `a` and `b` when the panel's matmul reads both with unit stride along `k` (`linear`'s
    /// PyTorch `[out, in]` weights transposed, attention's keys), both f32, `k` a multiple
    /// of [`LANES`] and the columns of [`NT_COLS`]: then rows of `a` and columns of `b` meet
    /// in vector dot products.
    fn transposed_fits(&self, mm: NodeId, cols: u64) -> Option<(Strided, Strided)> {
        let ops = self.graph.operands(mm);
        let a = self.strided(ops[0]).filter(|a| a.unit_along(a.strides.len() - 1))?;
        let b = self.strided(ops[1]).filter(|b| b.strides.len() >= 2 && b.unit_along(b.strides.len() - 2))?;
        let depth = self.shape(ops[0]).last()?.as_known()?;
        (depth.is_multiple_of(LANES) && cols.is_multiple_of(NT_COLS)).then_some((a, b))
    }

    /// The address of element `idx` of a strided view.
    fn view_address(&mut self, view: &Strided, idx: &[Ix]) -> Result<V, LowerError> {
        self.element_ptr(view.buffer, &view.position(idx))
    }

    /// [`TILE_ROWS`] rows × [`NT_COLS`] columns as vector dot products over `k`: a row of
    /// `a` and a row of `w` loaded [`LANES`] at a time, one vector accumulator per result,
    /// summed across lanes at the end.
    fn tile_transposed(
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
    fn pack_chunk(&mut self, point: &[Ix], mm: NodeId, t: &Ix, bv: &Strided, c: &KChunk) -> Result<(), LowerError> {
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
    fn k_chunks(&self, mm: NodeId) -> Option<Vec<(u64, u64)>> {
        let depth = self.shape(self.graph.operands(mm)[0]).last()?.as_known()?;
        (depth >= 2 * KC).then(|| (0..depth).step_by(KC as usize).map(|k| (k, KC.min(depth - k))).collect())
    }

    fn tile(
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
    fn panel_matmul(&self) -> Option<(NodeId, u64)> {
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
    fn panel_row(&mut self, point: &[Ix], mm: NodeId, cols: u64, acc: V) -> Result<(), LowerError> {
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

    fn row_level(&mut self, rows: &[usize], point: &[Ix]) -> Result<(), LowerError> {
        if let Some((mm, cols, acc)) = self.panel {
            return self.panel_row(point, mm, cols, acc);
        }
        let domain = self.kernel.domain.clone();
        let reduced: Vec<Dim> =
            domain.iter().enumerate().map(|(a, d)| if rows.contains(&a) { Dim::known(1) } else { d.clone() }).collect();
        let (full, row) = (numel(&domain), numel(&reduced));
        if !rows.is_empty() {
            self.prefetch_next_row(rows, point)?;
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
        // On the GPU the warp's lanes take every WARP-th element, side by side in memory.
        let (lo, step) = match self.lane {
            Some(lane) => (lane, WARP),
            None => (lo, 1),
        };
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
        })
    }

    /// Asks the cache for the row [`PREFETCH_ROWS`] ahead of every input the row kernel reads
    /// whole (an input of the domain's shape, rows innermost), one prefetch per 64-byte line. A row kernel
    /// makes its passes over a row from cache, and while it computes, nothing else would
    /// read ahead: the hardware prefetchers follow demand misses, and the passes after the
    /// first make none. Without this, memory sat idle during the computation (a softmax
    /// over [4096, 1024] took the time of a copy plus the time of its arithmetic). Past the
    /// last row the addresses are outside the buffer, which a prefetch may touch.
    fn prefetch_next_row(&mut self, rows: &[usize], point: &[Ix]) -> Result<(), LowerError> {
        let domain = self.kernel.domain.clone();
        let trailing = rows.iter().enumerate().all(|(i, &a)| a == domain.len() - rows.len() + i);
        if self.device == Device::Gpu || !trailing {
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
    fn plan_row_cache(&mut self, rows: &[usize]) {
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
        Ok(self.gep(base, offset, ty))
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
        let raw = match dtype {
            DType::F16 | DType::BF16 => self.cast("truncf", value.v, mem_ty(dtype)),
            DType::Bool => self.cast("extui", value.v, "i8"),
            _ => value.v,
        };
        self.store_ptr(raw, ptr, None);
        Ok(())
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

    // ---- constants and conversions ----------------------------------------------------

    /// A float, int or bool immediate in `dtype`'s register type.
    fn immediate(&mut self, dtype: DType, value: f64) -> Reg {
        match dtype {
            DType::F32 | DType::F16 | DType::BF16 => {
                let bits = (round_float(dtype, value) as f32).to_bits();
                Reg::new(self.constant(&format!("0x{:08X} : f32", bits)), "f32")
            }
            DType::Bool => Reg::new(self.constant(&format!("{} : i1", i32::from(value != 0.0))), "i1"),
            DType::I32 | DType::I64 => {
                Reg::new(self.constant(&format!("{} : {}", value as i64, reg_ty(dtype))), reg_ty(dtype))
            }
        }
    }

    fn constant_value(&mut self, n: NodeId, data: &ConstData, idx: &[Ix]) -> Result<Reg, LowerError> {
        let dtype = self.dtype(n);
        let values: Vec<f64> = match data {
            ConstData::Float(v) => v.clone(),
            ConstData::Int(v) => v.iter().map(|&x| x as f64).collect(),
            ConstData::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
        };
        let first = values.first().copied().unwrap_or(0.0);
        if values.iter().all(|&v| v.to_bits() == first.to_bits()) {
            return Ok(match data {
                ConstData::Int(v) if matches!(dtype, DType::I32 | DType::I64) => {
                    let x = v.first().copied().unwrap_or(0);
                    Reg::new(self.constant(&format!("{} : {}", x, reg_ty(dtype))), reg_ty(dtype))
                }
                _ => self.immediate(dtype, first),
            });
        }
        self.table(n, &values, idx)
    }

    /// The exponent when `n` is a constant whose every element is the same integer from 1 to
    /// 4: `pow(x, 3)` (tanh-GELU's cube) is then two multiplies instead of a libm call per
    /// element, within the op's numerics contract (two roundings instead of one).
    fn small_power(&self, n: NodeId) -> Option<u32> {
        let mut v = n;
        while let Op::Broadcast | Op::Reshape = self.graph.op(v) {
            v = self.graph.operands(v)[0];
        }
        let Op::Constant { data: ConstData::Float(values) } = self.graph.op(v) else { return None };
        let first = *values.first()?;
        let same = values.iter().all(|&x| x.to_bits() == first.to_bits());
        (same && first.fract() == 0.0 && (1.0..=4.0).contains(&first)).then_some(first as u32)
    }

    /// `x` multiplied by itself to the `power`, rounded to `dtype` once at the end.
    fn repeated_product(&mut self, x: Reg, power: u32, dtype: DType) -> Result<Reg, LowerError> {
        let mut r = x.clone();
        for _ in 1..power {
            r = Reg::new(self.arith("mulf", r.v, x.v), "f32");
        }
        Ok(self.round(r, dtype))
    }

    /// A constant with distinct elements: a table in the module, read at the index.
    fn table(&mut self, n: NodeId, values: &[f64], idx: &[Ix]) -> Result<Reg, LowerError> {
        let dtype = self.dtype(n);
        let bytes: Vec<u8> = values.iter().flat_map(|&v| element_bytes(dtype, v)).collect();
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let ty = mem_ty(dtype);
        let name = format!("flint_table_{:016x}", fnv1a(format!("{ty}:{hex}").as_bytes()));
        if !self.tables.iter().any(|(n, _, _)| *n == name) {
            self.tables.push((name.clone(), ty, bytes));
        }
        let linear = self.ix(&index::linearize(idx, self.shape(n)))?;
        let offset = self.cast("index_cast", linear, "i64");
        let base = self.op("llvm.mlir.addressof", &[], "!llvm.ptr", &[("global_name", &format!("@{name}"))]);
        let ty = mem_ty(dtype);
        let ptr = self.gep(base, offset, ty);
        let raw = self.load_ptr(ptr, ty, None);
        Ok(self.widen(raw, dtype))
    }

    /// The internal constant global `name`: `bytes`, elements of type `ty`.
    fn global(&mut self, name: &str, ty: &str, bytes: &[u8]) -> Option<Operation<'c>> {
        let len = bytes.len() / mlir_size(ty);
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let attributes = [
            ("sym_name", format!("\"{name}\"")),
            ("global_type", format!("!llvm.array<{len} x {ty}>")),
            ("constant", "unit".to_string()),
            ("linkage", "#llvm.linkage<internal>".to_string()),
            ("value", format!("dense<\"0x{hex}\"> : tensor<{len}x{ty}>")),
        ];
        let attributes: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.b.detached("llvm.mlir.global", &attributes, vec![Region::new()])
    }

    /// Rounds an f32 register to `dtype` when that is narrower (f16, bf16).
    fn round(&mut self, x: Reg, dtype: DType) -> Reg {
        match dtype {
            DType::F16 | DType::BF16 => {
                let t = self.cast("truncf", x.v, mem_ty(dtype));
                Reg::new(self.cast("extf", t, "f32"), "f32")
            }
            _ => x,
        }
    }

    fn convert(&mut self, x: Reg, from: DType, to: DType) -> Reg {
        let tty = reg_ty(to);
        match (is_float(from), is_float(to)) {
            (true, true) => self.round(x, to),
            (false, true) => {
                let op = if from == DType::Bool { "uitofp" } else { "sitofp" };
                let f = Reg::new(self.cast(op, x.v, "f32"), "f32");
                self.round(f, to)
            }
            (true, false) if to == DType::Bool => {
                let zero = self.immediate(DType::F32, 0.0);
                Reg::new(self.cmpf("une", x.v, zero.v), "i1")
            }
            (true, false) => self.float_to_int(x, to),
            (false, false) if from == to => x,
            (false, false) if to == DType::Bool => {
                let zero = self.immediate(from, 0.0);
                Reg::new(self.cmpi("ne", x.v, zero.v), "i1")
            }
            (false, false) => {
                let op = match (from, to) {
                    (DType::Bool, _) => "extui",
                    (DType::I32, DType::I64) => "extsi",
                    _ => "trunci",
                };
                Reg::new(self.cast(op, x.v, tty), tty)
            }
        }
    }

    /// Truncates toward zero, saturating at the target's range; NaN gives 0.
    fn float_to_int(&mut self, x: Reg, to: DType) -> Reg {
        let ty = reg_ty(to);
        let (lo, hi) = if to == DType::I32 { (i32::MIN as i64, i32::MAX as i64) } else { (i64::MIN, i64::MAX) };
        let limit = self.immediate(DType::F32, -(lo as f64));
        let neg = self.immediate(DType::F32, lo as f64);
        let clamped = self.arith("maximumf", x.v, neg.v);
        let below = self.cmpf("olt", clamped, limit.v);
        let safe = self.select(below, clamped, neg.v);
        let int = self.cast("fptosi", safe, ty);
        let max = self.constant(&format!("{} : {}", hi, ty));
        let high = self.select(below, int, max);
        let nan = self.cmpf("uno", x.v, x.v);
        let zero = self.constant(&format!("0 : {ty}"));
        Reg::new(self.select(nan, zero, high), ty)
    }

    // ---- elementwise ----------------------------------------------------------------

    fn unary(&mut self, u: UnaryOp, dtype: DType, x: Reg) -> Result<Reg, LowerError> {
        let ty = x.ty;
        if !is_float(dtype) {
            return self.unary_int(u, dtype, x);
        }
        let one = || 1.0;
        let r = match u {
            UnaryOp::Neg => Reg::new(self.unop("arith.negf", x.v), ty),
            UnaryOp::Abs => Reg { v: self.math("absf", x.v, "f32"), ty },
            UnaryOp::Exp => self.exp(&x),
            UnaryOp::Log => self.log(&x),
            UnaryOp::Sqrt => Reg { v: self.math("sqrt", x.v, "f32"), ty },
            UnaryOp::Tanh => self.tanh(&x),
            UnaryOp::Erf => self.erf(&x),
            UnaryOp::Sin => self.sin_cos(&x, false),
            UnaryOp::Cos => self.sin_cos(&x, true),
            UnaryOp::Atan => self.atan(&x),
            UnaryOp::Floor => Reg { v: self.math("floor", x.v, "f32"), ty },
            UnaryOp::Ceil => Reg { v: self.math("ceil", x.v, "f32"), ty },
            UnaryOp::Round => Reg { v: self.math("roundeven", x.v, "f32"), ty },
            UnaryOp::Rsqrt => {
                let s = self.math("sqrt", x.v, "f32");
                let one = self.immediate(DType::F32, one());
                Reg::new(self.arith("divf", one.v, s), ty)
            }
            UnaryOp::Reciprocal => {
                let one = self.immediate(DType::F32, one());
                Reg::new(self.arith("divf", one.v, x.v), ty)
            }
            UnaryOp::Sigmoid => {
                let neg = Reg::new(self.unop("arith.negf", x.v), ty);
                let e = self.exp(&neg).v;
                let one = self.immediate(DType::F32, one());
                let d = self.arith("addf", one.v, e);
                Reg::new(self.arith("divf", one.v, d), ty)
            }
            UnaryOp::Relu => {
                let zero = self.immediate(DType::F32, 0.0);
                Reg::new(self.arith("maximumf", x.v, zero.v), ty)
            }
            UnaryOp::Sign => {
                let (zero, one, minus) = (
                    self.immediate(DType::F32, 0.0),
                    self.immediate(DType::F32, 1.0),
                    self.immediate(DType::F32, -1.0),
                );
                let pos = self.cmpf("ogt", x.v, zero.v);
                let neg = self.cmpf("olt", x.v, zero.v);
                let low = self.select(neg, minus.v, x.v);
                Reg::new(self.select(pos, one.v, low), ty)
            }
            UnaryOp::Not => return Err(self.unsupported("`not` on a float")),
        };
        Ok(self.round(r, dtype))
    }

    fn unary_int(&mut self, u: UnaryOp, dtype: DType, x: Reg) -> Result<Reg, LowerError> {
        let ty = x.ty;
        let zero = self.immediate(dtype, 0.0);
        Ok(match u {
            UnaryOp::Neg => Reg::new(self.arith("subi", zero.v, x.v), ty),
            UnaryOp::Abs => {
                let neg = self.arith("subi", zero.v, x.v);
                let below = self.cmpi("slt", x.v, zero.v);
                Reg::new(self.select(below, neg, x.v), ty)
            }
            UnaryOp::Relu => Reg::new(self.arith("maxsi", x.v, zero.v), ty),
            UnaryOp::Not => {
                let ones = self.constant(&format!("-1 : {ty}"));
                Reg::new(self.arith("xori", x.v, ones), ty)
            }
            UnaryOp::Sign => {
                let (one, minus) = (self.immediate(dtype, 1.0), self.immediate(dtype, -1.0));
                let pos = self.cmpi("sgt", x.v, zero.v);
                let neg = self.cmpi("slt", x.v, zero.v);
                let low = self.select(neg, minus.v, zero.v);
                Reg::new(self.select(pos, one.v, low), ty)
            }
            other => return Err(self.unsupported(format!("`{}` on an integer", other.name()))),
        })
    }

    fn binary(&mut self, b: BinaryOp, dtype: DType, x: Reg, y: Reg) -> Result<Reg, LowerError> {
        let ty = x.ty;
        if is_float(dtype) && self.device == Device::Gpu && matches!(b, BinaryOp::Rem | BinaryOp::Pow) {
            let r = if b == BinaryOp::Rem { self.rem_by_division(&x, &y) } else { self.pow_by_exp_log(&x, &y) };
            return Ok(self.round(r, dtype));
        }
        if is_float(dtype) {
            let op = match b {
                BinaryOp::Add => "arith.addf",
                BinaryOp::Sub => "arith.subf",
                BinaryOp::Mul => "arith.mulf",
                BinaryOp::Div => "arith.divf",
                BinaryOp::Rem => "arith.remf",
                BinaryOp::Pow => "math.powf",
                BinaryOp::Maximum => "arith.maximumf",
                BinaryOp::Minimum => "arith.minimumf",
                BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => return Err(self.unsupported("a logical op on floats")),
            };
            let r = Reg::new(self.binop(op, x.v, y.v), ty);
            return Ok(self.round(r, dtype));
        }
        let op = match b {
            BinaryOp::Add => "addi",
            BinaryOp::Sub => "subi",
            BinaryOp::Mul => "muli",
            BinaryOp::Maximum => "maxsi",
            BinaryOp::Minimum => "minsi",
            BinaryOp::And => "andi",
            BinaryOp::Or => "ori",
            BinaryOp::Xor => "xori",
            BinaryOp::Div | BinaryOp::Rem => return Ok(self.int_division(b, dtype, x, y)),
            BinaryOp::Pow => return self.int_pow(x, y),
        };
        Ok(Reg::new(self.arith(op, x.v, y.v), ty))
    }

    /// Truncating division and remainder; `MIN / -1 = MIN`, `MIN % -1 = 0`, and a zero
    /// divisor reads as 1 (the interpreter reports it; here it must not trap).
    fn int_division(&mut self, b: BinaryOp, dtype: DType, x: Reg, y: Reg) -> Reg {
        let ty = x.ty;
        let (zero, one, minus) = (self.immediate(dtype, 0.0), self.immediate(dtype, 1.0), self.immediate(dtype, -1.0));
        let is_zero = self.cmpi("eq", y.v, zero.v);
        let is_minus = self.cmpi("eq", y.v, minus.v);
        let bad = self.arith("ori", is_zero, is_minus);
        let safe = self.select(bad, one.v, y.v);
        let (op, special) = match b {
            BinaryOp::Div => ("divsi", self.arith("subi", zero.v, x.v)),
            _ => ("remsi", zero.v),
        };
        let q = self.arith(op, x.v, safe);
        Reg::new(self.select(is_minus, special, q), ty)
    }

    /// `a` multiplied `b` times, wrapping, by squaring over the exponent's bits (`b < 0`
    /// is a run-time error in the interpreter; here it reads its low bits).
    fn int_pow(&mut self, x: Reg, y: Reg) -> Result<Reg, LowerError> {
        let ty = x.ty;
        let bits = if ty == "i32" { 32 } else { 64 };
        let one = Reg::new(self.constant(&format!("1 : {ty}")), ty);
        let out = self.fold(&Ix::Const(bits), &[one, x], &mut |e, i, carried| {
            let i = e.ix(&i)?;
            let shift = e.cast("index_cast", i, ty);
            let shifted = e.arith("shrui", y.v, shift);
            let one = e.constant(&format!("1 : {ty}"));
            let bit = e.arith("andi", shifted, one);
            let zero = e.constant(&format!("0 : {ty}"));
            let set = e.cmpi("ne", bit, zero);
            let times = e.arith("muli", carried[0].v, carried[1].v);
            let result = Reg::new(e.select(set, times, carried[0].v), ty);
            let base = Reg::new(e.arith("muli", carried[1].v, carried[1].v), ty);
            Ok(vec![result, base])
        })?;
        out.into_iter().next().ok_or_else(|| self.unsupported("an empty fold"))
    }

    fn compare(&mut self, c: CompareOp, dtype: DType, x: &Reg, y: &Reg) -> Reg {
        let (float, signed) = (is_float(dtype), dtype != DType::Bool);
        let pred = match (c, float) {
            (CompareOp::Eq, true) => "oeq",
            (CompareOp::Ne, true) => "une",
            (CompareOp::Lt, true) => "olt",
            (CompareOp::Le, true) => "ole",
            (CompareOp::Gt, true) => "ogt",
            (CompareOp::Ge, true) => "oge",
            (CompareOp::Eq, false) => "eq",
            (CompareOp::Ne, false) => "ne",
            (CompareOp::Lt, false) => ["ult", "slt"][usize::from(signed)],
            (CompareOp::Le, false) => ["ule", "sle"][usize::from(signed)],
            (CompareOp::Gt, false) => ["ugt", "sgt"][usize::from(signed)],
            (CompareOp::Ge, false) => ["uge", "sge"][usize::from(signed)],
        };
        let r = if float { self.cmpf(pred, x.v, y.v) } else { self.cmpi(pred, x.v, y.v) };
        Reg::new(r, "i1")
    }

    // ---- loops that fold ------------------------------------------------------------

    /// [`Emitter::fold`], or with `combine` (one op per carried value) split over the lanes of
    /// a GPU warp: lane `l` folds elements `l, l + WARP, ...`, then a butterfly of `xor`
    /// shuffles combines the lanes' values so that every lane holds the whole result. The
    /// fold's body is then no longer row-level: a reduction inside it is not split again (its
    /// lanes would run different trip counts).
    fn row_fold(
        &mut self,
        extent: &Ix,
        init: &[Reg],
        combine: Option<&[&str]>,
        step: &mut FoldStep<'_, 'g, 'c>,
    ) -> Result<Vec<Reg>, LowerError> {
        let (Some(combine), Some(lane)) = (combine, self.lane) else { return self.fold(extent, init, step) };
        self.row_level_now = false;
        let folded = self.fold_from(lane, WARP, extent, init, step);
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
        Ok(values)
    }

    /// `scf.for` over `[0, extent)` carrying `init`; `step` gets the loop index and the
    /// carried values and returns the next ones. Returns the final values.
    fn fold(&mut self, extent: &Ix, init: &[Reg], step: &mut FoldStep<'_, 'g, 'c>) -> Result<Vec<Reg>, LowerError> {
        let zero = self.ix(&Ix::Const(0))?;
        self.fold_from(zero, 1, extent, init, step)
    }

    /// [`Emitter::fold`] over `lo, lo + stride, ...` below `extent`.
    fn fold_from(
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
    fn reduced_index(&self, n: NodeId, axes: &[usize], keepdims: bool, idx: &[Ix], inner: Ix) -> Vec<Ix> {
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
    fn reduced_operand(
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

    fn reduce(
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
    fn float_extremum(
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
    fn arg_reduce(
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

    fn matmul(&mut self, n: NodeId, idx: &[Ix]) -> Result<Reg, LowerError> {
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

    // ---- windows --------------------------------------------------------------------

    /// Whether window tap `tap` of output position `out` along one spatial axis falls
    /// inside the input, and the input position it reads.
    fn tap(&mut self, out: &Ix, tap: &Ix, axis: usize, w: &Window, len: &Dim) -> Result<(V, Ix), LowerError> {
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
    fn taps(&mut self, out: &[Ix], tap: &[Ix], w: &Window, x: NodeId) -> Result<(V, Vec<Ix>), LowerError> {
        let shape = self.shape(x);
        let (in_h, y) = self.tap(&out[2], &tap[0], 0, w, &shape[2])?;
        let (in_w, xx) = self.tap(&out[3], &tap[1], 1, w, &shape[3])?;
        let inside = self.arith("andi", in_h, in_w);
        Ok((inside, vec![y, xx]))
    }

    /// One output element of a convolution: a fold over the input channels of its group,
    /// each step the taps of the window (unrolled when the window is static, so no tap index
    /// is divided out of a flat counter), a tap outside the input contributing nothing.
    fn conv2d(&mut self, n: NodeId, w: &Window, groups: u64, idx: &[Ix]) -> Result<Reg, LowerError> {
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

    fn pool2d(
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

    // ---- data movement --------------------------------------------------------------

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
        self.b.open(&[]);
        self.scopes.push(Scope::default());
        let r = body(self)?;
        self.effect("scf.yield", &[r.v], &[]);
        self.leave();
        Ok(self.b.close())
    }

    fn concat(&mut self, n: NodeId, axis: usize, idx: &[Ix]) -> Result<Reg, LowerError> {
        let operands = self.graph.operands(n);
        self.concat_from(&operands, 0, axis, idx, reg_ty(self.dtype(n)))
    }

    fn concat_from(
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

    fn pad(&mut self, n: NodeId, low: &[u64], value: f64, idx: &[Ix]) -> Result<Reg, LowerError> {
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

    fn gather(&mut self, n: NodeId, axis: usize, idx: &[Ix]) -> Result<Reg, LowerError> {
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
