//! MLIR (func, scf, arith, math, llvm) to a native object for the host, and a shared object.
//!
//! The module is parsed and verified, lowered to the LLVM dialect by upstream passes, and
//! translated to LLVM IR; the IR gets the host's triple, data layout, CPU name and features,
//! is optimised with `default<O3>` and emitted as a position-independent object through
//! LLVM's target machine (llvm-sys, without linking a second LLVM: mlir-sys already holds
//! one). `cc -shared` links the object, with libm for the transcendentals.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
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

/// Upstream MLIR passes from the kernels' dialects to the LLVM dialect. Math ops with an
/// LLVM intrinsic (fma, sqrt, floor, roundeven, ...) become instructions first; the rest
/// (erf, atan, sin, cos, pow) become libm calls.
pub const TO_LLVM: &str = "builtin.module(convert-math-to-llvm, convert-math-to-libm, convert-scf-to-cf, \
     convert-vector-to-llvm, convert-arith-to-llvm, convert-index-to-llvm, convert-func-to-llvm, convert-cf-to-llvm, \
     reconcile-unrealized-casts)";

/// The CPU to generate code for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cpu {
    /// This machine's CPU and all its features (AVX2, FMA, ...).
    #[default]
    Native,
    /// The baseline of the host's architecture.
    Generic,
    /// An LLVM CPU name (`znver3`, `neoverse-v2`, ...) with its default features.
    Named(String),
}

impl Cpu {
    /// `native`, `generic` or a CPU name.
    pub fn parse(s: &str) -> Cpu {
        match s {
            "native" => Cpu::Native,
            "generic" => Cpu::Generic,
            name => Cpu::Named(name.to_string()),
        }
    }
}

impl Cpu {
    /// The CPU name the kernels are compiled for, and the features they may use that the
    /// runtime can check where it loads them. A named or generic CPU lists none: LLVM's C
    /// API does not tell which features a CPU name implies.
    pub fn target_info(&self) -> (String, Vec<String>) {
        match self {
            Cpu::Native => {
                // SAFETY: both calls return new strings, disposed of by `message`.
                let (name, features) = unsafe { (message(LLVMGetHostCPUName()), message(LLVMGetHostCPUFeatures())) };
                let checked = flint_runtime::cpu::CHECKED_FEATURES;
                let on = features.split(',').filter_map(|f| f.strip_prefix('+')).filter(|f| checked.contains(f));
                (name, on.map(str::to_string).collect())
            }
            Cpu::Generic => ("generic".into(), Vec::new()),
            Cpu::Named(name) => (name.clone(), Vec::new()),
        }
    }
}

/// What [`compile`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Object,
    /// The optimised LLVM IR, as text.
    LlvmIr,
    /// The assembly, as text.
    Assembly,
}

/// How long MLIR and LLVM may work on one module before the compile is abandoned (a bad
/// schedule once made an MLIR pass spin forever).
pub const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Verifies `text`, lowers it and returns the host object's bytes.
pub fn object(text: &str, cpu: &Cpu) -> Result<Vec<u8>, LowerError> {
    compile(text, cpu, Output::Object)
}

/// The program that compiles modules in child processes ([`set_worker`]), if any.
static WORKER: std::sync::RwLock<Option<PathBuf>> = std::sync::RwLock::new(None);

/// The argument that makes a program that calls [`worker_main`] a compile worker.
pub const WORKER_COMMAND: &str = "codegen-worker";

/// Compile every module in a child process of `program` (`program codegen-worker`, which
/// must call [`worker_main`]), so that MLIR or LLVM aborting or crashing ends the child, not
/// the caller, and a compile past [`TIME_LIMIT`] can be killed. `None` (the default)
/// compiles on a thread of this process. The `flint` command line sets itself.
pub fn set_worker(program: Option<PathBuf>) {
    *WORKER.write().unwrap_or_else(|e| e.into_inner()) = program;
}

/// [`Output`] for the MLIR module `text`, under [`TIME_LIMIT`]: in a child process when a
/// worker is set ([`set_worker`]), on a worker thread otherwise.
pub fn compile(text: &str, cpu: &Cpu, output: Output) -> Result<Vec<u8>, LowerError> {
    let worker = WORKER.read().unwrap_or_else(|e| e.into_inner()).clone();
    match worker {
        Some(program) => compile_in_child(&program, text, cpu, output),
        None => compile_on_thread(text, cpu, output),
    }
}

fn compile_on_thread(text: &str, cpu: &Cpu, output: Output) -> Result<Vec<u8>, LowerError> {
    let (text, cpu) = (text.to_string(), cpu.clone());
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("flint-llvm".into())
        .spawn(move || {
            let _ = send.send(compile_here(&text, &cpu, output));
        })
        .map_err(|e| LowerError::Llvm { stage: "starting the compile thread", message: e.to_string() })?;
    receive.recv_timeout(TIME_LIMIT).unwrap_or_else(|_| {
        Err(LowerError::Llvm { stage: "compilation", message: format!("no result within {} s", TIME_LIMIT.as_secs()) })
    })
}

/// The request a worker reads on its standard input: one line `CPU OUTPUT`, then the module.
fn request(text: &str, cpu: &Cpu, output: Output) -> String {
    let cpu = match cpu {
        Cpu::Native => "native",
        Cpu::Generic => "generic",
        Cpu::Named(name) => name,
    };
    let output = match output {
        Output::Object => "object",
        Output::LlvmIr => "llvm",
        Output::Assembly => "asm",
    };
    format!("{cpu} {output}\n{text}")
}

/// Runs one compile in `program codegen-worker`. Its standard output is `O` and the result's
/// bytes, or `E` and the error's text; anything else (a signal, an exit without an answer,
/// no answer within [`TIME_LIMIT`]) is reported with the kernels of the module and the end
/// of what the child wrote to its standard error (LLVM's "LLVM ERROR: ...").
fn compile_in_child(program: &Path, text: &str, cpu: &Cpu, output: Output) -> Result<Vec<u8>, LowerError> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let crashed = |how: String, stderr: &[u8]| {
        let said = String::from_utf8_lossy(stderr);
        let tail: Vec<&str> = said.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        LowerError::Crashed { kernels: module_kernels(text), how, stderr: tail.join("\n") }
    };
    let mut child = Command::new(program)
        .arg(WORKER_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LowerError::Llvm {
            stage: "starting the compile worker",
            message: format!("{}: {e}", program.display()),
        })?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(LowerError::Llvm { stage: "starting the compile worker", message: "no pipes".into() });
    };
    let request = request(text, cpu, output);
    let (answer, errors) = std::thread::scope(|scope| {
        // A child that dies early closes its stdin: the write fails and the exit says why.
        scope.spawn(move || {
            let _ = stdin.write_all(request.as_bytes());
        });
        let errors = scope.spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            bytes
        });
        let (send, receive) = std::sync::mpsc::channel();
        scope.spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes);
            let _ = send.send(bytes);
        });
        let answer = receive.recv_timeout(TIME_LIMIT).ok();
        if answer.is_none() {
            // Killing the child closes its pipes, which ends the readers.
            let _ = child.kill();
        }
        (answer, errors.join().unwrap_or_default())
    });
    let status = child
        .wait()
        .map_err(|e| LowerError::Llvm { stage: "waiting for the compile worker", message: e.to_string() })?;
    let Some(answer) = answer else {
        return Err(crashed(format!("no result within {} s; stopped", TIME_LIMIT.as_secs()), &errors));
    };
    match answer.split_first() {
        Some((b'O', bytes)) if status.success() => Ok(bytes.to_vec()),
        Some((b'E', message)) if status.success() => {
            Err(LowerError::Worker(String::from_utf8_lossy(message).into_owned()))
        }
        _ => Err(crashed(exit_description(status), &errors)),
    }
}

/// How a child ended, for a message: what the signal that stopped it means, or its exit code.
fn exit_description(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(signal)) => {
            let what = match signal {
                4 => "crashed (SIGILL",
                6 => "aborted (SIGABRT",
                7 => "crashed (SIGBUS",
                8 => "crashed (SIGFPE",
                9 => "was killed (SIGKILL",
                11 => "crashed (SIGSEGV",
                _ => "was stopped (a signal",
            };
            format!("{what}, signal {signal})")
        }
        (Some(code), None) => format!("exited with status {code} without a result"),
        (None, None) => "ended without a result".into(),
    }
}

/// The kernels a module's functions serve, from the comments heading them.
fn module_kernels(text: &str) -> String {
    let served: Vec<&str> =
        text.lines().filter_map(|l| l.trim_start().strip_prefix("// ")).filter(|l| l.starts_with("kernel")).collect();
    if served.is_empty() {
        "the module".into()
    } else {
        served.join(", ")
    }
}

/// The body of a compile worker (`program codegen-worker`, see [`set_worker`]): reads one
/// request from standard input, compiles it in this process and writes the answer to
/// standard output. Returns the process's exit code.
pub fn worker_main() -> u8 {
    use std::io::{Read, Write};
    let mut input = String::new();
    if std::io::stdin().read_to_string(&mut input).is_err() {
        return 2;
    }
    let (header, text) = input.split_once('\n').unwrap_or((input.as_str(), ""));
    let mut words = header.split(' ');
    let cpu = Cpu::parse(words.next().unwrap_or("native"));
    let output = match words.next() {
        Some("llvm") => Output::LlvmIr,
        Some("asm") => Output::Assembly,
        _ => Output::Object,
    };
    let answer = match compile_here(text, &cpu, output) {
        Ok(bytes) => [b"O".as_slice(), &bytes].concat(),
        Err(e) => [b"E".as_slice(), e.to_string().as_bytes()].concat(),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&answer).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

/// Parses and verifies an MLIR module.
pub fn verify(text: &str) -> Result<(), LowerError> {
    let context = new_context();
    let log = DiagnosticLog::attach(&context);
    parse(&context, &log, text).map(|_| ())
}

/// An MLIR failure, with the kernels of the function each diagnostic points into.
fn mlir(stage: &'static str, log: &DiagnosticLog, text: &str) -> LowerError {
    let diagnostics = log.take_or("no diagnostic");
    let kernels = located_kernels(text, &diagnostics);
    LowerError::Mlir { stage, kernels, diagnostics }
}

/// The kernels named in the comment heading the function around each `loc("-":LINE:COL)`
/// of `diagnostics` (every function of a CPU module is headed `// kernel 3 (row), ...`).
pub fn located_kernels(text: &str, diagnostics: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut found: Vec<String> = Vec::new();
    for part in diagnostics.split("loc(\"-\":").skip(1) {
        let Some(line) = part.split(':').next().and_then(|n| n.parse::<usize>().ok()) else { continue };
        let header = lines[..line.min(lines.len())].iter().rev().find(|l| l.trim_start().starts_with("// kernel"));
        if let Some(h) = header.map(|h| h.trim_start().trim_start_matches("// ").to_string()) {
            if !found.contains(&h) {
                found.push(h);
            }
        }
    }
    if found.is_empty() {
        "the module".into()
    } else {
        found.join("; ")
    }
}

fn parse<'c>(context: &'c melior::Context, log: &DiagnosticLog, text: &str) -> Result<Module<'c>, LowerError> {
    let module = Module::parse(context, text).ok_or_else(|| mlir("parsing", log, text))?;
    match module.as_operation().verify() {
        true => Ok(module),
        false => Err(mlir("verification", log, text)),
    }
}

fn compile_here(text: &str, cpu: &Cpu, output: Output) -> Result<Vec<u8>, LowerError> {
    let context = new_context();
    let log = DiagnosticLog::attach(&context);
    let mut module = parse(&context, &log, text)?;
    let manager = PassManager::new(&context);
    parse_pass_pipeline(manager.as_operation_pass_manager(), TO_LLVM)
        .map_err(|_| mlir("pipeline parsing", &log, text))?;
    manager.run(&mut module).map_err(|_| mlir("lowering to the LLVM dialect", &log, text))?;
    let (name, features) = match cpu {
        Cpu::Native => (None, None),
        Cpu::Generic => (Some("generic".to_string()), Some(String::new())),
        Cpu::Named(n) => (Some(n.clone()), Some(String::new())),
    };
    let c = |s: Option<String>| s.map(|s| CString::new(s).unwrap_or_default());
    // SAFETY: the module is a verified, fully lowered MLIR module that outlives this call;
    // every LLVM handle made here is disposed of in `emit` before it returns.
    unsafe { emit(&module, c(name).as_deref(), c(features).as_deref(), output) }
}

unsafe fn message(msg: *mut std::os::raw::c_char) -> String {
    if msg.is_null() {
        return String::new();
    }
    let s = CStr::from_ptr(msg).to_string_lossy().into_owned();
    LLVMDisposeMessage(msg);
    s
}

unsafe fn emit(
    module: &Module,
    cpu: Option<&CStr>,
    features: Option<&CStr>,
    output: Output,
) -> Result<Vec<u8>, LowerError> {
    let llvm = |stage, message| LowerError::Llvm { stage, message };
    // Once per process: modules compile on several threads, and two threads registering the
    // native target at the same time leave it registered twice ("Cannot choose between
    // targets").
    static NATIVE_TARGET: std::sync::Once = std::sync::Once::new();
    NATIVE_TARGET.call_once(|| {
        LLVM_InitializeNativeTarget();
        LLVM_InitializeNativeAsmPrinter();
    });
    let ctx = LLVMContextCreate();
    let ir = mlir_sys::mlirTranslateModuleToLLVMIR(module.as_operation().to_raw(), ctx as mlir_sys::LLVMContextRef)
        as LLVMModuleRef;
    if ir.is_null() {
        LLVMContextDispose(ctx);
        return Err(llvm("translation", "mlirTranslateModuleToLLVMIR gave no module".into()));
    }
    let (triple, host_cpu, host_features) =
        (LLVMGetDefaultTargetTriple(), LLVMGetHostCPUName(), LLVMGetHostCPUFeatures());
    let cpu = cpu.map_or(host_cpu as *const _, CStr::as_ptr);
    let features = features.map_or(host_features as *const _, CStr::as_ptr);
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
        let out = optimise_and_emit(ir, tm, output);
        LLVMDisposeTargetMachine(tm);
        out
    };
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(host_cpu);
    LLVMDisposeMessage(host_features);
    LLVMDisposeModule(ir);
    LLVMContextDispose(ctx);
    result
}

unsafe fn optimise_and_emit(
    ir: LLVMModuleRef,
    tm: LLVMTargetMachineRef,
    output: Output,
) -> Result<Vec<u8>, LowerError> {
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
    let kind = match output {
        Output::LlvmIr => {
            let text = LLVMPrintModuleToString(ir);
            return Ok(message(text).into_bytes());
        }
        Output::Object => LLVMCodeGenFileType::LLVMObjectFile,
        Output::Assembly => LLVMCodeGenFileType::LLVMAssemblyFile,
    };
    let mut buf: LLVMMemoryBufferRef = ptr::null_mut();
    let mut err = ptr::null_mut();
    if LLVMTargetMachineEmitToMemoryBuffer(tm, ir, kind, &mut err, &mut buf) != 0 {
        return Err(LowerError::Llvm { stage: "object emission", message: message(err) });
    }
    let bytes = std::slice::from_raw_parts(LLVMGetBufferStart(buf) as *const u8, LLVMGetBufferSize(buf)).to_vec();
    LLVMDisposeMemoryBuffer(buf);
    Ok(bytes)
}

/// Compiles the modules side by side (one thread each, the MLIR and LLVM work of each in its
/// own context) and links their objects into one shared object.
pub fn shared_object(modules: &[String], cpu: &Cpu) -> Result<Vec<u8>, LowerError> {
    let objects: Vec<Result<Vec<u8>, LowerError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = modules.iter().map(|m| scope.spawn(move || object(m, cpu))).collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(LowerError::Llvm { stage: "compilation", message: "a compile thread panicked".into() })
                })
            })
            .collect()
    });
    link_shared(&objects.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// Links objects into a shared object with the system's `cc`.
pub fn link_shared(objects: &[Vec<u8>]) -> Result<Vec<u8>, LowerError> {
    let dir = std::env::temp_dir().join(format!("flint-link-{}-{}", std::process::id(), unique()));
    let link = |e: std::io::Error| LowerError::Link(e.to_string());
    std::fs::create_dir_all(&dir).map_err(link)?;
    let so = dir.join("kernels.so");
    let paths: Vec<_> = (0..objects.len()).map(|i| dir.join(format!("kernels{i}.o"))).collect();
    let written: Result<(), LowerError> =
        paths.iter().zip(objects).try_for_each(|(p, o)| std::fs::write(p, o).map_err(link));
    let result = written.and_then(|()| {
        let out = std::process::Command::new("cc").arg("-shared").arg("-o").arg(&so).args(&paths).arg("-lm").output();
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
