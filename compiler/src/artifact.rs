//! The `.tgx` manifest of a compiled program, in the runtime's types
//! ([`flint_runtime::artifact`]), and the conversions between the compiler's and the
//! runtime's view of a tensor type.

#[cfg(feature = "mlir")]
use std::collections::HashMap;

use flint_runtime::artifact::{self as tgx, Manifest};

use crate::ir::{DType, Dim, SymId, Symbol, TensorType};
#[cfg(feature = "mlir")]
use crate::kernel::program::{Program, Storage};
#[cfg(feature = "mlir")]
use crate::kernel::KernelGraph;

/// What the manifest records about the code's target.
pub struct TargetInfo {
    /// The LLVM CPU name the kernels were compiled for.
    pub cpu: String,
    /// The CPU features the kernels may use, by LLVM's names.
    pub features: Vec<String>,
}

#[cfg(feature = "mlir")]
/// The manifest of `program`: its signature, plan and kernels, with the function computing
/// each kernel (`symbols`, by kernel index, and in each SM's GPU module). Its sections are
/// filled in by [`tgx::write`].
pub fn manifest(
    program: &Program,
    kernels: &KernelGraph,
    symbols: &[String],
    gpu: &[(crate::lower::gpu::Sm, crate::lower::KernelModule)],
    target: TargetInfo,
) -> Manifest {
    let index: HashMap<_, u32> = program.values.keys().enumerate().map(|(i, &id)| (id, i as u32)).collect();
    let values = program
        .values
        .iter()
        .map(|(id, v)| tgx::Value {
            id: id.0,
            dtype: dtype(v.dtype),
            shape: v.shape.iter().map(dim).collect(),
            storage: match v.storage {
                Storage::Region { index, .. } => tgx::Storage::Region(index),
                Storage::Arena { offset, .. } => tgx::Storage::Arena(offset),
            },
        })
        .collect();
    let regions = program
        .regions
        .iter()
        .map(|r| tgx::Region { kind: region_kind(r.kind), name: r.name.clone(), value: index[&r.value] })
        .collect();
    let bounds = |s: SymId| program.symbols[s.0 as usize].bound;
    let kernels = program
        .kernels
        .iter()
        .zip(&kernels.kernels)
        .zip(symbols)
        .enumerate()
        .map(|(i, ((k, kernel), symbol))| {
            let extent = crate::lower::cpu::parallel_axis(kernel).map_or(Dim::known(1), |a| k.domain[a].clone());
            let touched: u64 =
                k.inputs.iter().chain(&k.outputs).map(|v| value_bytes(&program.values[v], &bounds)).sum();
            tgx::Kernel {
                name: k.id.to_string(),
                kind: k.kind.name().to_string(),
                symbol: symbol.clone(),
                work: touched / extent.eval(bounds).max(1),
                extent: dim(&extent),
                args: k.inputs.iter().chain(&k.outputs).map(|v| index[v]).collect(),
                gpu: gpu
                    .iter()
                    .map(|(sm, m)| tgx::GpuFunction {
                        sm: sm.capability(),
                        symbol: m.symbols[i].clone(),
                        shared_bytes: m.shared_bytes[i],
                    })
                    .collect(),
            }
        })
        .collect();
    Manifest {
        name: program.name.clone(),
        compiler_version: env!("CARGO_PKG_VERSION").to_string(),
        target: tgx::Target::Cpu {
            arch: std::env::consts::ARCH.to_string(),
            cpu: target.cpu,
            features: target.features,
        },
        symbols: program.symbols.iter().map(|s| tgx::Symbol { name: s.name.clone(), bound: s.bound }).collect(),
        regions,
        values,
        kernels,
        arena_bytes: program.arena_bytes,
        sections: Vec::new(),
    }
}

#[cfg(feature = "mlir")]
fn value_bytes(v: &crate::kernel::program::Value, bounds: &impl Fn(SymId) -> u64) -> u64 {
    v.shape.iter().fold(v.dtype.size_bytes() as u64, |acc, d| acc.saturating_mul(d.eval(bounds)))
}

#[cfg(feature = "mlir")]
fn region_kind(k: crate::kernel::memory::RegionKind) -> tgx::RegionKind {
    use crate::kernel::memory::RegionKind as K;
    match k {
        K::Input => tgx::RegionKind::Input,
        K::Param => tgx::RegionKind::Param,
        K::Output => tgx::RegionKind::Output,
    }
}

pub fn dim(d: &Dim) -> tgx::Dim {
    tgx::Dim { coeff: d.coeff, syms: d.syms.iter().map(|s| s.0).collect() }
}

pub fn dtype(d: DType) -> tgx::DType {
    match d {
        DType::F32 => tgx::DType::F32,
        DType::F16 => tgx::DType::F16,
        DType::BF16 => tgx::DType::BF16,
        DType::I32 => tgx::DType::I32,
        DType::I64 => tgx::DType::I64,
        DType::Bool => tgx::DType::Bool,
    }
}

pub fn from_dtype(d: tgx::DType) -> DType {
    match d {
        tgx::DType::F32 => DType::F32,
        tgx::DType::F16 => DType::F16,
        tgx::DType::BF16 => DType::BF16,
        tgx::DType::I32 => DType::I32,
        tgx::DType::I64 => DType::I64,
        tgx::DType::Bool => DType::Bool,
    }
}

/// A manifest value's type, in the compiler's terms.
pub fn tensor_type(v: &tgx::Value) -> TensorType {
    let shape =
        v.shape.iter().map(|d| Dim { coeff: d.coeff, syms: d.syms.iter().map(|&s| SymId(s)).collect() }).collect();
    TensorType { dtype: from_dtype(v.dtype), shape }
}

/// The manifest's symbols, in the compiler's terms.
pub fn symbols(m: &Manifest) -> Vec<Symbol> {
    m.symbols.iter().map(|s| Symbol { name: s.name.clone(), bound: s.bound }).collect()
}

/// The manifest as text: the signature, the plan and the kernels, one line each.
pub fn describe(m: &Manifest) -> String {
    use std::fmt::Write;
    let shape = |v: &tgx::Value| {
        let dims: Vec<String> = v.shape.iter().map(|d| d.display(&m.symbols).to_string()).collect();
        format!("{}[{}]", v.dtype, dims.join(", "))
    };
    let mut out = String::new();
    let tgx::Target::Cpu { arch, cpu, features } = &m.target;
    let _ = writeln!(out, "artifact `{}` (format {}, flint {})", m.name, tgx::FORMAT_VERSION, m.compiler_version);
    let _ = writeln!(out, "target {arch} cpu {cpu} features [{}]", features.join(","));
    for s in &m.symbols {
        let _ = writeln!(out, "symbol {} <= {}", s.name, s.bound);
    }
    for r in &m.regions {
        let _ = writeln!(out, "{} {}: {}", r.kind.name(), r.name, shape(m.region_value(r)));
    }
    let _ = writeln!(out, "arena {} B, {} values", m.arena_bytes, m.values.len());
    for k in &m.kernels {
        let args: Vec<String> = k.args.iter().map(|&a| format!("%{}", m.values[a as usize].id)).collect();
        let extent = k.extent.display(&m.symbols);
        // Each SM's function, and the dynamic shared memory it is launched with.
        let shared: String = k
            .gpu
            .iter()
            .map(|f| match f.shared_bytes {
                0 => format!(", sm_{} {}", f.sm, f.symbol),
                bytes => format!(", sm_{} {} shared {bytes} B", f.sm, f.symbol),
            })
            .collect();
        let (name, kind, symbol, work) = (&k.name, &k.kind, &k.symbol, k.work);
        let _ = writeln!(out, "{name} {kind} {symbol} over {extent} ({work} B/index{shared}): {}", args.join(" "));
    }
    out
}
