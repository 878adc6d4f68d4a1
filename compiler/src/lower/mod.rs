//! Kernel lowering: every kernel of a compiled program to MLIR, then to native code.
//!
//! `cpu::emit` builds each kernel as a `func.func` over `[begin, end)` of its outermost
//! parallel axis, with views as index maps ([`index`]), through melior's operation builder
//! ([`build`]) in one MLIR context per compile, and verifies it. The verified functions,
//! printed, make the module that is lowered to the LLVM dialect, translated, optimised at
//! `-O3` for the host CPU and linked into one shared object ([`llvm`]). Kernels whose code is
//! identical are compiled once and share one symbol.
//!
//! MLIR and LLVM run under a time limit, in a child process of the `flint` binary when one is
//! set ([`llvm::set_worker`]), so an abort inside them becomes a [`LowerError::Crashed`] that
//! names the kernels being compiled.

pub mod build;
pub mod cpu;
pub mod gpu;
pub mod index;
pub mod llvm;

use std::collections::{BTreeMap, HashMap};

use crate::ir::Graph;
use crate::kernel::{KernelGraph, KernelId};
pub use cpu::Device;

/// What lowering reads: the optimised graph (the kernels' bodies) and the scheduled kernels.
pub struct KernelSource<'a> {
    pub graph: &'a Graph,
    pub kernels: &'a KernelGraph,
}

/// Lowering failed for one kernel, or the toolchain did.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("{kernel}: {what} (not supported by the CPU lowering yet)")]
    Unsupported { kernel: KernelId, what: String },
    #[error("MLIR {stage} failed in {kernels}:\n{diagnostics}")]
    Mlir { stage: &'static str, kernels: String, diagnostics: String },
    #[error("LLVM {stage} failed: {message}")]
    Llvm { stage: &'static str, message: String },
    /// A compile worker's own error, as it wrote it.
    #[error("{0}")]
    Worker(String),
    /// The compile worker ended without an answer: MLIR or LLVM aborted, crashed or hung.
    #[error("MLIR/LLVM {how} while compiling {kernels}{}", if stderr.is_empty() { String::new() } else { format!(":\n{stderr}") })]
    Crashed { kernels: String, how: String, stderr: String },
    #[error("PTX for {sm} failed in {kernels}: {message}")]
    Ptx { sm: &'static str, kernels: String, message: String },
    #[error("linking the kernels with `cc` failed: {0}")]
    Link(String),
}

/// The kernels of a program as one MLIR module.
#[derive(Clone, Debug)]
pub struct KernelModule {
    /// The module: each function headed by a comment naming the kernels it serves.
    pub text: String,
    /// The function computing each kernel, by [`KernelId`]; identical kernels share one.
    pub symbols: Vec<String>,
    /// How many distinct functions the module holds.
    pub functions: usize,
    /// Each kernel's bytes of dynamic shared memory a block (GPU), by [`KernelId`].
    pub shared_bytes: Vec<u64>,
    /// The constant tables, then each function with its heading comment, as in `text`.
    tables: String,
    bodies: Vec<String>,
}

impl KernelModule {
    /// The module as at most `n` modules of about equal size, each with every table and a
    /// share of the functions, to compile side by side.
    pub fn split(&self, n: usize) -> Vec<String> {
        let n = n.clamp(1, self.bodies.len().max(1));
        let mut parts: Vec<String> = vec![format!("module {{\n{}", self.tables); n];
        let mut sizes = vec![0usize; n];
        for body in &self.bodies {
            let smallest = (0..n).min_by_key(|&i| sizes[i]).unwrap_or(0);
            parts[smallest].push_str(body);
            sizes[smallest] += body.len();
        }
        parts.iter_mut().for_each(|p| p.push_str("}\n"));
        parts
    }
}

/// Emits every kernel of `compiled` for the CPU; a kernel whose code equals an earlier one's
/// reuses that function (the layers of a transformer stack are one set of functions).
pub fn cpu_module(compiled: &KernelSource) -> Result<KernelModule, LowerError> {
    kernel_module(compiled, Device::Cpu)
}

/// Emits every kernel of `compiled` for `sm` as a `gpu.func` of one `gpu.module @flint`, in a
/// module marked `gpu.container_module` (what `gpu-lower-to-nvvm-pipeline` takes).
pub fn gpu_module(compiled: &KernelSource, sm: gpu::Sm) -> Result<KernelModule, LowerError> {
    kernel_module(compiled, Device::Gpu(sm))
}

fn kernel_module(compiled: &KernelSource, device: Device) -> Result<KernelModule, LowerError> {
    let mut by_code: HashMap<String, usize> = HashMap::new();
    let mut functions: Vec<(String, Vec<String>)> = Vec::new();
    let mut tables: BTreeMap<String, String> = BTreeMap::new();
    let mut symbols = Vec::with_capacity(compiled.kernels.kernels.len());
    let mut shared_bytes = Vec::with_capacity(compiled.kernels.kernels.len());
    // One context for every kernel of the compile; each kernel is verified in a module of its own.
    let context = crate::mlir::new_context();
    let log = crate::mlir::DiagnosticLog::attach(&context);
    for (id, kernel) in compiled.kernels.iter() {
        let code = cpu::emit(&context, &log, compiled.graph, id, kernel, device)?;
        tables.extend(code.tables);
        let next = functions.len();
        let f = *by_code.entry(code.function.clone()).or_insert(next);
        if f == next {
            functions.push((code.function, Vec::new()));
        }
        functions[f].1.push(format!("{id} ({})", kernel.kind.name()));
        symbols.push(format!("flint_kernel_{f}"));
        shared_bytes.push(code.shared_bytes);
    }
    let tables: String = tables.into_values().collect();
    let bodies: Vec<String> = functions
        .iter()
        .enumerate()
        .map(|(f, (function, served))| {
            let named = function.replacen(&format!("@{}(", cpu::FUNCTION), &format!("@flint_kernel_{f}("), 1);
            format!("  // {}\n{named}", served.join(", "))
        })
        .collect();
    let text = match device {
        Device::Cpu => format!("module {{\n{tables}{}}}\n", bodies.concat()),
        Device::Gpu(_) => format!(
            "module attributes {{gpu.container_module}} {{\ngpu.module @flint {{\n{tables}{}}}\n}}\n",
            bodies.concat()
        ),
    };
    Ok(KernelModule { text, symbols, functions: functions.len(), shared_bytes, tables, bodies })
}
