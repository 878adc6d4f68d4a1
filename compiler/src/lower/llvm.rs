//! MLIR (func, scf, arith, math, llvm) to a native object for the host, and a shared object.
//!
//! The module is parsed and verified, lowered to the LLVM dialect by upstream passes, and
//! translated to LLVM IR; the IR gets the host's triple, data layout, CPU name and features,
//! is optimised with `default<O3>` and emitted as a position-independent object through
//! LLVM's target machine (llvm-sys, without linking a second LLVM: mlir-sys already holds
//! one). `cc -shared` links the object, with libm for the transcendentals.

use std::ffi::{CStr, CString};
use std::ptr;

use llvm_sys::core::*;
use llvm_sys::error::*;
use llvm_sys::prelude::*;
use llvm_sys::target::*;
use llvm_sys::target_machine::*;
use llvm_sys::transforms::pass_builder::*;
use melior::ir::operation::OperationLike;
use melior::ir::Module;
use melior::pass::PassManager;
use melior::utility::parse_pass_pipeline;

use super::LowerError;
use crate::mlir::{new_context, DiagnosticLog};

/// Upstream MLIR passes from the kernels' dialects to the LLVM dialect. Transcendentals
/// without an LLVM intrinsic (tanh, erf, atan) become libm calls.
pub const TO_LLVM: &str = "builtin.module(convert-math-to-libm, convert-scf-to-cf, convert-math-to-llvm, \
     convert-arith-to-llvm, convert-index-to-llvm, convert-func-to-llvm, convert-cf-to-llvm, \
     reconcile-unrealized-casts)";

/// Verifies `text`, lowers it and returns the host object's bytes.
pub fn object(text: &str) -> Result<Vec<u8>, LowerError> {
    let context = new_context();
    let log = DiagnosticLog::attach(&context);
    let mlir = |stage, log: &DiagnosticLog| LowerError::Mlir { stage, diagnostics: log.take_or("no diagnostic") };
    let mut module = Module::parse(&context, text).ok_or_else(|| mlir("parsing", &log))?;
    if !module.as_operation().verify() {
        return Err(mlir("verification", &log));
    }
    let manager = PassManager::new(&context);
    parse_pass_pipeline(manager.as_operation_pass_manager(), TO_LLVM).map_err(|_| mlir("pipeline parsing", &log))?;
    manager.run(&mut module).map_err(|_| mlir("lowering to the LLVM dialect", &log))?;
    // SAFETY: the module is a verified, fully lowered MLIR module that outlives this call;
    // every LLVM handle made here is disposed of in `emit` before it returns.
    unsafe { emit(&module) }
}

unsafe fn message(msg: *mut std::os::raw::c_char) -> String {
    if msg.is_null() {
        return String::new();
    }
    let s = CStr::from_ptr(msg).to_string_lossy().into_owned();
    LLVMDisposeMessage(msg);
    s
}

unsafe fn emit(module: &Module) -> Result<Vec<u8>, LowerError> {
    let llvm = |stage, message| LowerError::Llvm { stage, message };
    LLVM_InitializeNativeTarget();
    LLVM_InitializeNativeAsmPrinter();
    let ctx = LLVMContextCreate();
    let ir = mlir_sys::mlirTranslateModuleToLLVMIR(module.as_operation().to_raw(), ctx as mlir_sys::LLVMContextRef)
        as LLVMModuleRef;
    if ir.is_null() {
        LLVMContextDispose(ctx);
        return Err(llvm("translation", "mlirTranslateModuleToLLVMIR gave no module".into()));
    }
    let (triple, cpu, features) = (LLVMGetDefaultTargetTriple(), LLVMGetHostCPUName(), LLVMGetHostCPUFeatures());
    let mut target: LLVMTargetRef = ptr::null_mut();
    let mut err = ptr::null_mut();
    let result = if LLVMGetTargetFromTriple(triple, &mut target, &mut err) != 0 {
        Err(llvm("target lookup", message(err)))
    } else {
        let tm = LLVMCreateTargetMachine(
            target,
            triple,
            cpu,
            features,
            LLVMCodeGenOptLevel::LLVMCodeGenLevelAggressive,
            LLVMRelocMode::LLVMRelocPIC,
            LLVMCodeModel::LLVMCodeModelDefault,
        );
        LLVMSetTarget(ir, triple);
        let layout = LLVMCreateTargetDataLayout(tm);
        LLVMSetModuleDataLayout(ir, layout);
        LLVMDisposeTargetData(layout);
        let out = optimise_and_emit(ir, tm);
        LLVMDisposeTargetMachine(tm);
        out
    };
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    LLVMDisposeModule(ir);
    LLVMContextDispose(ctx);
    result
}

unsafe fn optimise_and_emit(ir: LLVMModuleRef, tm: LLVMTargetMachineRef) -> Result<Vec<u8>, LowerError> {
    let options = LLVMCreatePassBuilderOptions();
    let pipeline = CString::new("default<O3>").unwrap_or_default();
    let e = LLVMRunPasses(ir, pipeline.as_ptr(), tm, options);
    LLVMDisposePassBuilderOptions(options);
    if !e.is_null() {
        let m = LLVMGetErrorMessage(e);
        let text = CStr::from_ptr(m).to_string_lossy().into_owned();
        LLVMDisposeErrorMessage(m);
        return Err(LowerError::Llvm { stage: "optimisation", message: text });
    }
    let mut buf: LLVMMemoryBufferRef = ptr::null_mut();
    let mut err = ptr::null_mut();
    if LLVMTargetMachineEmitToMemoryBuffer(tm, ir, LLVMCodeGenFileType::LLVMObjectFile, &mut err, &mut buf) != 0 {
        return Err(LowerError::Llvm { stage: "object emission", message: message(err) });
    }
    let bytes = std::slice::from_raw_parts(LLVMGetBufferStart(buf) as *const u8, LLVMGetBufferSize(buf)).to_vec();
    LLVMDisposeMemoryBuffer(buf);
    Ok(bytes)
}

/// Links an object into a shared object with the system's `cc`.
pub fn link_shared(object: &[u8]) -> Result<Vec<u8>, LowerError> {
    let dir = std::env::temp_dir().join(format!("flint-link-{}-{}", std::process::id(), unique()));
    let link = |e: std::io::Error| LowerError::Link(e.to_string());
    std::fs::create_dir_all(&dir).map_err(link)?;
    let (obj, so) = (dir.join("kernels.o"), dir.join("kernels.so"));
    let result = std::fs::write(&obj, object).map_err(link).and_then(|()| {
        let out = std::process::Command::new("cc").arg("-shared").arg("-o").arg(&so).arg(&obj).arg("-lm").output();
        match out {
            Ok(o) if o.status.success() => std::fs::read(&so).map_err(link),
            Ok(o) => Err(LowerError::Link(String::from_utf8_lossy(&o.stderr).into_owned())),
            Err(e) => Err(LowerError::Link(format!("cannot run cc: {e}"))),
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
