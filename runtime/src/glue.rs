//! The host glue: the schedule as one CLIF function, JIT-compiled with Cranelift at load.
//!
//! ```text
//! function u0:0(i64 ctx, i64 dims, i64 bases, i64 shapes) -> i32 system_v
//! ```
//! `dims` holds one i64 per symbol, `bases` one pointer per region then the arena's, and
//! `shapes` every input's axes in region order. The glue checks each dim against `[1, bound]`
//! and each input axis against its dims, then for every kernel in schedule order stores its
//! pointers (a region's base, or the arena plus an offset) in a stack slot, computes its
//! range from the dims and calls the import `u0:1`,
//! ```text
//! run_kernel(i64 ctx, i64 kernel, i64 pointers, i64 extent, i64 dims) -> i32
//! ```
//! returning at the first nonzero status. The glue's own statuses are `1 + i` for the `i`-th
//! check of [`checks`]; see `ir-spec/artifact.md`.

use cranelift_codegen::ir::{types, AbiParam, Signature};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};

use crate::artifact::{Manifest, RegionKind};
use crate::RuntimeError;

/// The glue's entry point.
pub type GlueFn = unsafe extern "C" fn(*mut u8, *const i64, *mut *mut u8, *const i64) -> i32;
/// What the glue calls for each kernel.
pub type RunKernelFn = extern "C" fn(*mut u8, i64, *const *mut u8, i64, *const i64) -> i32;

/// The name of the kernel callback in CLIF (`u0:1`).
pub const RUN_KERNEL: &str = "flint_run_kernel";

/// What the glue checks, in order; status `1 + i` means check `i` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Symbol `0` is in `[1, bound]`.
    Bound(usize),
    /// Axis `axis` of the input region `region` equals its dims.
    Axis { region: usize, axis: usize },
}

/// The checks of a manifest in the glue's order: every symbol, then every input axis.
pub fn checks(m: &Manifest) -> Vec<Check> {
    let mut out: Vec<Check> = (0..m.symbols.len()).map(Check::Bound).collect();
    for (region, r) in m.regions_of(RegionKind::Input) {
        out.extend((0..m.region_value(r).shape.len()).map(|axis| Check::Axis { region, axis }));
    }
    out
}

/// JIT-compiled glue. The code is immutable once finalized, so it may be called from any
/// thread.
pub struct Glue {
    entry: GlueFn,
    _module: JitCode,
}

/// Owns the finalized code's memory, freed on drop.
struct JitCode(Option<JITModule>);

impl Drop for JitCode {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: `Glue` owns the only pointer into this code, and it is being dropped.
            unsafe { module.free_memory() };
        }
    }
}

// SAFETY: nothing mutates the module after `finalize_definitions`; it is never used from two
// threads, only dropped.
unsafe impl Send for JitCode {}
// SAFETY: as above; shared references to it are never used.
unsafe impl Sync for JitCode {}

impl Glue {
    /// Parses `clif` and compiles it for this machine, linking `u0:1` to `run_kernel`.
    pub fn compile(clif: &str, run_kernel: RunKernelFn) -> Result<Glue, RuntimeError> {
        let bad = |what: String| RuntimeError::Load(format!("the host glue: {what}"));
        let mut functions = cranelift_reader::parse_functions(clif).map_err(|e| bad(format!("{e}")))?;
        if functions.len() != 1 {
            return Err(bad(format!("{} functions, expected one", functions.len())));
        }
        let function = functions.remove(0);
        let i64s = |n: usize| vec![AbiParam::new(types::I64); n];
        let call_conv = cranelift_codegen::isa::CallConv::SystemV;
        let mut entry_sig = Signature::new(call_conv);
        entry_sig.params = i64s(4);
        entry_sig.returns = vec![AbiParam::new(types::I32)];
        if function.signature != entry_sig {
            return Err(bad(format!("signature {} is not {}", function.signature, entry_sig)));
        }
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").map_err(|e| bad(e.to_string()))?;
        let isa = cranelift_native::builder()
            .map_err(|e| bad(format!("no Cranelift backend for this CPU: {e}")))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| bad(e.to_string()))?;
        let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
        builder.symbol(RUN_KERNEL, run_kernel as *const u8);
        let mut module = JITModule::new(builder);
        // The text names the glue u0:0 and the callback u0:1: declare them in that order.
        let entry =
            module.declare_function("flint_glue", Linkage::Export, &entry_sig).map_err(|e| bad(e.to_string()))?;
        let mut callback_sig = Signature::new(call_conv);
        callback_sig.params = i64s(5);
        callback_sig.returns = vec![AbiParam::new(types::I32)];
        module.declare_function(RUN_KERNEL, Linkage::Import, &callback_sig).map_err(|e| bad(e.to_string()))?;
        let mut ctx = Context::for_function(function);
        module.define_function(entry, &mut ctx).map_err(|e| bad(format!("{e:?}")))?;
        module.finalize_definitions().map_err(|e| bad(e.to_string()))?;
        let code = module.get_finalized_function(entry);
        // SAFETY: the function was checked above to have the `GlueFn` signature.
        let entry: GlueFn = unsafe { std::mem::transmute::<*const u8, GlueFn>(code) };
        Ok(Glue { entry, _module: JitCode(Some(module)) })
    }

    /// Runs the schedule.
    ///
    /// # Safety
    /// `dims`, `bases` and `shapes` must hold what the module doc says for the manifest the
    /// glue was compiled from, and `ctx` what `run_kernel` expects.
    pub unsafe fn call(&self, ctx: *mut u8, dims: &[i64], bases: &mut [*mut u8], shapes: &[i64]) -> i32 {
        (self.entry)(ctx, dims.as_ptr(), bases.as_mut_ptr(), shapes.as_ptr())
    }
}
