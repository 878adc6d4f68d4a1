//! The GPU kernels' MLIR to PTX, one text per chip.
//!
//! The kernels come from the same emitter as the CPU's ([`super::cpu::emit`] with
//! [`super::Device::Gpu`]): each is a `gpu.func` of one `gpu.module @flint`, and MLIR's
//! `gpu-lower-to-nvvm-pipeline` turns the module into PTX for each requested chip
//! ([`crate::mlir::gpu_module_to_ptx`]). No CUDA installation is needed; `ptxas` only checks
//! the result.

use super::LowerError;
use crate::mlir::gpu_module_to_ptx;

/// A GPU Flint compiles for: the name users write, the LLVM chip and PTX ISA version it is
/// compiled for, and the `ptxas -arch` that assembles it (the arch-specific variant, which
/// accepts everything the plain one does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sm {
    pub name: &'static str,
    pub chip: &'static str,
    pub features: &'static str,
    pub ptxas_arch: &'static str,
}

/// The GPUs Flint targets: A100-class, H100/H200, and GB10 (DGX Spark).
pub const SMS: &[Sm] = &[
    Sm { name: "sm_80", chip: "sm_80", features: "+ptx70", ptxas_arch: "sm_80" },
    Sm { name: "sm_90", chip: "sm_90", features: "+ptx80", ptxas_arch: "sm_90a" },
    Sm { name: "sm_121", chip: "sm_121", features: "+ptx88", ptxas_arch: "sm_121a" },
];

impl Sm {
    /// `sm_80`, `sm_90` or `sm_121`.
    pub fn parse(name: &str) -> Result<Sm, String> {
        SMS.iter().copied().find(|s| s.name == name).ok_or_else(|| {
            let known: Vec<&str> = SMS.iter().map(|s| s.name).collect();
            format!("unknown GPU target `{name}`; the targets are cpu, {}", known.join(", "))
        })
    }

    /// The compute capability the SM number stands for, as `major * 10 + minor` (`121`).
    pub fn capability(&self) -> u32 {
        self.name.trim_start_matches("sm_").parse().unwrap_or(0)
    }
}

/// The PTX of the GPU module `text` for `sm`.
pub fn ptx(text: &str, sm: &Sm) -> Result<String, LowerError> {
    gpu_module_to_ptx(text, sm.chip, sm.features).map_err(|e| LowerError::Ptx {
        sm: sm.name,
        kernels: super::llvm::located_kernels(text, &e.to_string()),
        message: e.to_string(),
    })
}
