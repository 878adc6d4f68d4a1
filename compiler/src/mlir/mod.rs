//! Kernel lowering through MLIR (melior, LLVM/MLIR 22).
//!
//! The entry point today is [`gpu_module_to_ptx`]: it takes MLIR text holding one
//! `gpu.module`, runs MLIR's `gpu-lower-to-nvvm-pipeline` with `cubin-format=isa`, and
//! returns the PTX text that LLVM's NVPTX back end wrote into the resulting `gpu.binary`.
//! No CUDA installation is needed for this; `ptxas` is only needed to check the result.
//!
//! LLVM's NVPTX back end aborts the whole process (`LLVM ERROR: ...`) on some bad inputs,
//! for instance a PTX ISA version that is too old for the chip, and only warns on stderr
//! for an unknown chip or feature. So the target is checked here against the table of
//! what LLVM 22 accepts ([`SUPPORTED_CHIPS`]) before anything reaches LLVM.

use std::cell::RefCell;
use std::rc::Rc;

use melior::dialect::DialectRegistry;
use melior::ir::attribute::{ArrayAttribute, AttributeLike};
use melior::ir::operation::{OperationLike, WalkOrder, WalkResult};
use melior::ir::Module;
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::Context;

/// An error from lowering MLIR to GPU code.
#[derive(Debug, thiserror::Error)]
pub enum MlirError {
    /// The chip or feature string is not one LLVM 22's NVPTX back end accepts as given.
    #[error("invalid NVPTX target: {0}")]
    InvalidTarget(String),
    /// The input text is not a valid MLIR module.
    #[error("failed to parse the MLIR module:\n{diagnostics}")]
    Parse {
        /// MLIR's diagnostics, one per line.
        diagnostics: String,
    },
    /// The pass pipeline could not be built or failed while running.
    #[error("MLIR pass pipeline `{pipeline}` failed:\n{diagnostics}")]
    Pass {
        /// The textual pipeline that was run.
        pipeline: String,
        /// MLIR's diagnostics, one per line.
        diagnostics: String,
    },
    /// The lowered module holds no PTX (no `gpu.module` in the input, or no assembly object).
    #[error("no PTX found after lowering: {0}")]
    NoPtx(String),
    /// The lowered module holds more than one PTX object, so the result would be ambiguous.
    #[error("expected one PTX object after lowering, found {0}; pass one gpu.module at a time")]
    MultiplePtx(usize),
}

/// NVPTX chips LLVM 22 knows that current `ptxas` (CUDA 13) still assembles, with the minimum
/// PTX ISA version (major, minor) LLVM requires for each. LLVM aborts the process when the
/// requested PTX version is lower. Measured with `llc -mcpu=<chip>` (which picks the minimum
/// when no `+ptxNN` feature is given).
pub const SUPPORTED_CHIPS: &[(&str, (u32, u32))] = &[
    ("sm_75", (6, 3)),
    ("sm_80", (7, 0)),
    ("sm_86", (7, 1)),
    ("sm_87", (7, 4)),
    ("sm_88", (9, 0)),
    ("sm_89", (7, 8)),
    ("sm_90", (7, 8)),
    ("sm_90a", (8, 0)),
    ("sm_100", (8, 6)),
    ("sm_100a", (8, 6)),
    ("sm_100f", (8, 8)),
    ("sm_101", (8, 6)),
    ("sm_101a", (8, 6)),
    ("sm_101f", (8, 8)),
    ("sm_103", (8, 8)),
    ("sm_103a", (8, 8)),
    ("sm_103f", (8, 8)),
    ("sm_110", (9, 0)),
    ("sm_110a", (9, 0)),
    ("sm_110f", (9, 0)),
    ("sm_120", (8, 7)),
    ("sm_120a", (8, 7)),
    ("sm_120f", (8, 8)),
    ("sm_121", (8, 8)),
    ("sm_121a", (8, 8)),
    ("sm_121f", (8, 8)),
];

/// PTX ISA versions LLVM 22 has a `+ptxNN` feature for (as `NN`, i.e. major * 10 + minor).
const PTX_FEATURES: &[u32] = &[
    32, 40, 41, 42, 43, 50, 60, 61, 62, 63, 64, 65, 70, 71, 72, 73, 74, 75, 76, 77, 78, 80, 81, 82, 83, 84, 85, 86, 87,
    88, 90,
];

/// `gpu.object` format value meaning "assembly" (`gpu::CompilationTarget::Assembly` in MLIR 22).
const GPU_OBJECT_FORMAT_ASSEMBLY: u32 = 2;

/// Lowers the `gpu.module` in `mlir_text` to PTX text for one NVIDIA chip.
///
/// `chip` is an LLVM NVPTX processor such as `"sm_90"` or `"sm_121"` (see
/// [`SUPPORTED_CHIPS`]); `features` is empty or a comma-separated list of `+ptxNN` features
/// choosing the PTX ISA version, e.g. `"+ptx80"` (sm_121 needs at least `"+ptx88"`). Empty
/// `features` selects the chip's minimum PTX version. The module must hold exactly one
/// `gpu.module`; host code next to it is lowered too and discarded.
///
/// Runs `convert-math-to-llvm` on the `gpu.module` (math ops with an LLVM intrinsic become
/// instructions: the NVVM pipeline alone would call libdevice's `__nv_floorf` and the like,
/// which only a CUDA installation has, and `ptxas` then fails on an unresolved function), then
/// `gpu-lower-to-nvvm-pipeline{cubin-chip=.. cubin-features=.. cubin-format=isa}`, and
/// returns the text of the single assembly object of the resulting `gpu.binary`.
///
/// Kernel memref arguments use MLIR's default (expanded descriptor) calling convention.
/// Errors come back as [`MlirError`] with MLIR's diagnostics; note that LLVM instruction
/// selection can still abort the process on IR it cannot select for the chip (an LLVM
/// limitation: its code generator reports such errors as fatal).
pub fn gpu_module_to_ptx(mlir_text: &str, chip: &str, features: &str) -> Result<String, MlirError> {
    let features = check_target(chip, features)?;
    let pipeline = format!(
        "builtin.module(gpu.module(convert-math-to-llvm), \
         gpu-lower-to-nvvm-pipeline{{cubin-chip={chip} cubin-features={features} cubin-format=isa}})"
    );

    let context = new_context();
    let diagnostics = DiagnosticLog::attach(&context);

    if mlir_text.contains('\0') {
        return Err(MlirError::Parse { diagnostics: "the module text contains a NUL byte".to_string() });
    }
    let Some(mut module) = Module::parse(&context, mlir_text) else {
        return Err(MlirError::Parse { diagnostics: diagnostics.take_or("the parser gave no diagnostic") });
    };

    let manager = PassManager::new(&context);
    if let Err(error) = parse_pass_pipeline(manager.as_operation_pass_manager(), &pipeline) {
        let detail = format!("{error}\n{}", diagnostics.take());
        return Err(MlirError::Pass { pipeline, diagnostics: detail.trim_end().to_string() });
    }
    if manager.run(&mut module).is_err() {
        return Err(MlirError::Pass { pipeline, diagnostics: diagnostics.take_or("no diagnostic was reported") });
    }

    let ptx = collect_assembly_objects(&module)?;
    match ptx.len() {
        0 => Err(MlirError::NoPtx("the lowered module has no gpu.binary with an assembly object".to_string())),
        1 => ptx.into_iter().next().ok_or_else(|| MlirError::NoPtx("empty object list".to_string())),
        n => Err(MlirError::MultiplePtx(n)),
    }
}

/// Checks `chip` and `features` against what LLVM 22 accepts and returns the feature string
/// to pass on (the chip's minimum PTX version when `features` is empty).
fn check_target(chip: &str, features: &str) -> Result<String, MlirError> {
    let Some(&(_, (min_major, min_minor))) = SUPPORTED_CHIPS.iter().find(|(name, _)| *name == chip) else {
        let known: Vec<&str> = SUPPORTED_CHIPS.iter().map(|(name, _)| *name).collect();
        return Err(MlirError::InvalidTarget(format!("unknown chip `{chip}`; known chips: {}", known.join(", "))));
    };
    let min = min_major * 10 + min_minor;
    if features.is_empty() {
        return Ok(format!("+ptx{min}"));
    }
    let mut highest = 0;
    for feature in features.split(',') {
        let version = feature
            .strip_prefix("+ptx")
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u32>().ok())
            .filter(|version| PTX_FEATURES.contains(version))
            .ok_or_else(|| {
                MlirError::InvalidTarget(format!(
                    "unsupported feature `{feature}` in `{features}`; expected `+ptxNN` with NN one of {PTX_FEATURES:?}"
                ))
            })?;
        highest = highest.max(version);
    }
    if highest < min {
        return Err(MlirError::InvalidTarget(format!(
            "{chip} needs PTX ISA {min_major}.{min_minor} or newer (`+ptx{min}`), but `{features}` selects {}.{}",
            highest / 10,
            highest % 10
        )));
    }
    Ok(features.to_string())
}

/// A context with every upstream dialect, extension, pass and LLVM translation registered.
/// The NVVM target attribute and the `gpu.module` → binary serialisation live in the
/// extensions and translations, so all of them are needed for the NVVM pipeline.
pub(crate) fn new_context() -> Context {
    let registry = DialectRegistry::new();
    register_all_dialects(&registry);
    register_all_passes();
    let context = Context::new();
    context.append_dialect_registry(&registry);
    context.load_all_available_dialects();
    register_all_llvm_translations(&context);
    context
}

/// Collects the diagnostics MLIR reports on a context, so they end up in our errors instead
/// of on stderr.
pub(crate) struct DiagnosticLog {
    lines: Rc<RefCell<Vec<String>>>,
}

impl DiagnosticLog {
    pub(crate) fn attach(context: &Context) -> DiagnosticLog {
        let lines = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&lines);
        // The handler lives as long as the context; it owns its own reference to the log.
        context.attach_diagnostic_handler(move |diagnostic| {
            let mut text = format!("{}: {:?}: {}", diagnostic.location(), diagnostic.severity(), diagnostic);
            for index in 0..diagnostic.note_count() {
                if let Ok(note) = diagnostic.note(index) {
                    text.push_str(&format!("\n  note: {}: {}", note.location(), note));
                }
            }
            sink.borrow_mut().push(text);
            true // handled: do not also print to stderr
        });
        DiagnosticLog { lines }
    }

    pub(crate) fn take(&self) -> String {
        self.lines.borrow_mut().drain(..).collect::<Vec<_>>().join("\n")
    }

    pub(crate) fn take_or(&self, fallback: &str) -> String {
        let text = self.take();
        if text.is_empty() {
            fallback.to_string()
        } else {
            text
        }
    }
}

/// The text of every assembly-format `#gpu.object` of every `gpu.binary` in `module`.
fn collect_assembly_objects(module: &Module) -> Result<Vec<String>, MlirError> {
    let mut objects = Vec::new();
    let mut failure = None;
    module.as_operation().walk(WalkOrder::PreOrder, |operation| {
        let is_binary = operation.name().as_string_ref().as_str().is_ok_and(|name| name == "gpu.binary");
        if !is_binary {
            return WalkResult::Advance;
        }
        let array = match operation.attribute("objects").map(ArrayAttribute::try_from) {
            Ok(Ok(array)) => array,
            _ => {
                failure = Some(MlirError::NoPtx(format!("gpu.binary without an `objects` array: {operation}")));
                return WalkResult::Interrupt;
            }
        };
        for index in 0..array.len() {
            let Ok(object) = array.element(index) else { continue };
            let raw = object.to_raw();
            // SAFETY: `raw` is a live attribute owned by the module's context, which outlives this walk.
            let is_object = unsafe { mlir_sys::mlirAttributeIsAGPUObjectAttr(raw) };
            if !is_object {
                continue;
            }
            // SAFETY: `raw` was just checked to be a `#gpu.object` attribute.
            let format = unsafe { mlir_sys::mlirGPUObjectAttrGetFormat(raw) };
            if format != GPU_OBJECT_FORMAT_ASSEMBLY {
                continue;
            }
            // SAFETY: `raw` is a `#gpu.object`; the returned string reference points into the
            // attribute's storage, which the context keeps alive; it is copied out at once.
            let bytes = unsafe {
                let text = mlir_sys::mlirGPUObjectAttrGetObject(raw);
                if text.data.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(text.data.cast::<u8>(), text.length).to_vec()
                }
            };
            match String::from_utf8(bytes) {
                Ok(text) => objects.push(text),
                Err(_) => {
                    failure = Some(MlirError::NoPtx("the assembly object is not UTF-8 text".to_string()));
                    return WalkResult::Interrupt;
                }
            }
        }
        WalkResult::Skip
    });
    match failure {
        Some(error) => Err(error),
        None => Ok(objects),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_checks() {
        assert_eq!(check_target("sm_90", "+ptx80").ok(), Some("+ptx80".to_string()));
        assert_eq!(check_target("sm_121", "").ok(), Some("+ptx88".to_string()));
        assert_eq!(check_target("sm_121", "+ptx80,+ptx88").ok(), Some("+ptx80,+ptx88".to_string()));
        assert!(matches!(check_target("sm_121", "+ptx80"), Err(MlirError::InvalidTarget(_))));
        assert!(matches!(check_target("sm_999", "+ptx80"), Err(MlirError::InvalidTarget(_))));
        assert!(matches!(check_target("sm_90", "+bogus"), Err(MlirError::InvalidTarget(_))));
        assert!(matches!(check_target("sm_90", "+ptx80 cubin-format=bin"), Err(MlirError::InvalidTarget(_))));
        assert!(matches!(check_target("sm_90", "+ptx99"), Err(MlirError::InvalidTarget(_))));
    }

    #[test]
    fn parse_error_is_reported() {
        let error = gpu_module_to_ptx("module { this is not mlir }", "sm_90", "+ptx80");
        match error {
            Err(MlirError::Parse { diagnostics }) => assert!(!diagnostics.is_empty()),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn module_without_gpu_code_has_no_ptx() {
        let error = gpu_module_to_ptx("module {}", "sm_90", "+ptx80");
        assert!(matches!(error, Err(MlirError::NoPtx(_))), "{error:?}");
    }

    #[test]
    fn pass_failure_carries_diagnostics() {
        // Parses and verifies, but `tensor` ops inside a kernel have no lowering to NVVM, so
        // translating the gpu.module to LLVM IR fails.
        let text = r#"
module attributes {gpu.container_module} {
  gpu.module @m {
    gpu.func @k(%a: memref<4xf32>) kernel {
      %t = tensor.empty() : tensor<4xf32>
      %c0 = arith.constant 0 : index
      %v = tensor.extract %t[%c0] : tensor<4xf32>
      memref.store %v, %a[%c0] : memref<4xf32>
      gpu.return
    }
  }
}"#;
        match gpu_module_to_ptx(text, "sm_90", "+ptx80") {
            Err(MlirError::Pass { diagnostics, .. }) => {
                assert!(diagnostics.contains("LLVM Translation failed"), "{diagnostics}")
            }
            other => panic!("expected a pass failure, got {other:?}"),
        }
    }
}
