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
/// compiled for, the `ptxas -arch` that assembles it (the arch-specific variant, which
/// accepts everything the plain one does), and the shared memory its kernels are sized to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sm {
    pub name: &'static str,
    pub chip: &'static str,
    pub features: &'static str,
    pub ptxas_arch: &'static str,
    /// Bytes of shared memory on one multiprocessor, and the most one block may ask for
    /// (dynamically, past the 48 KiB a static declaration may hold): CUDA's "Technical
    /// Specifications per Compute Capability".
    pub shared_per_sm: u64,
    pub shared_per_block: u64,
}

const KIB: u64 = 1024;

/// The GPUs Flint targets: A100-class, H100/H200, and GB10 (DGX Spark), whose 100 KiB of
/// shared memory a multiprocessor is less than half of sm_90's.
pub const SMS: &[Sm] = &[
    Sm {
        name: "sm_80",
        chip: "sm_80",
        features: "+ptx70",
        ptxas_arch: "sm_80",
        shared_per_sm: 164 * KIB,
        shared_per_block: 163 * KIB,
    },
    Sm {
        name: "sm_90",
        chip: "sm_90",
        features: "+ptx80",
        ptxas_arch: "sm_90a",
        shared_per_sm: 228 * KIB,
        shared_per_block: 227 * KIB,
    },
    Sm {
        name: "sm_121",
        chip: "sm_121",
        features: "+ptx88",
        ptxas_arch: "sm_121a",
        shared_per_sm: 100 * KIB,
        shared_per_block: 99 * KIB,
    },
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
