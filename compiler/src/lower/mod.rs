//! Kernel lowering: every kernel of a compiled program to MLIR, then to native code.
//!
//! [`cpu::emit`] writes each kernel as a `func.func` over `[begin, end)` of its outermost
//! parallel axis, with views as index maps ([`index`]); the module is parsed and verified by
//! MLIR in one context per compile, lowered to the LLVM dialect, translated, optimised at
//! `-O3` for the host CPU and linked into one shared object ([`llvm`]). Kernels that are
//! structurally identical (same text once their id is set aside) are compiled once and
//! share one symbol.
//!
//! This is the first, scalar lowering: every kernel kind and the ops of `ir-spec/ops.md`
//! except `conv2d`, the pools, integer `pow` and non-splat constants, loop by loop; LLVM's
//! vectorizer is the only vectorization, and transcendentals call libm.

pub mod cpu;
pub mod index;
pub mod llvm;

use crate::kernel::KernelId;
use crate::pipeline::Compiled;

/// Lowering failed for one kernel, or the toolchain did.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("{kernel}: {what} (not supported by the CPU lowering yet)")]
    Unsupported { kernel: KernelId, what: String },
    #[error("MLIR {stage} failed:\n{diagnostics}")]
    Mlir { stage: &'static str, diagnostics: String },
    #[error("LLVM {stage} failed: {message}")]
    Llvm { stage: &'static str, message: String },
    #[error("linking the kernels with `cc` failed: {0}")]
    Link(String),
}

/// The kernels of a program as one MLIR module, each `func.func` headed by a comment with
/// its kernel's id and kind.
pub fn cpu_module(compiled: &Compiled) -> Result<String, LowerError> {
    let mut text = String::from("module {\n");
    for (id, kernel) in compiled.kernels.iter() {
        text.push_str(&format!("  // {id}: {}\n", kernel.kind.name()));
        text.push_str(&cpu::emit(&compiled.graph, id, kernel)?);
    }
    text.push_str("}\n");
    Ok(text)
}

/// The program's kernels as a shared object for the host: `flint_kernel_K` per kernel.
pub fn cpu_shared_object(compiled: &Compiled) -> Result<Vec<u8>, LowerError> {
    let module = cpu_module(compiled)?;
    let object = llvm::object(&module)?;
    llvm::link_shared(&object)
}
