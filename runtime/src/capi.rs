//! The C API (`runtime/include/flint.h`, generated from this file by cbindgen).
//!
//! Handles are opaque pointers that the runtime checks against the handles it gave out, so a
//! null, freed or foreign handle is `FLINT_ERROR_INVALID_HANDLE`, not a crash. Every entry
//! point catches panics (`FLINT_ERROR_INTERNAL`), and every failure leaves its message for
//! `flint_last_error()` on the calling thread. A model may have many sessions, each used by
//! one thread at a time; models are freed after, or while, their sessions live (a session
//! keeps its model alive).

#![allow(clippy::missing_safety_doc, non_camel_case_types)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use crate::artifact::{DType, RegionKind};
use crate::model::{DeviceChoice, LoadOptions, Model, Session, TensorRef};
use crate::MemoryPolicy;
use crate::RuntimeError;

/// What a call did.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlintStatus {
    /// It worked.
    FLINT_OK = 0,
    /// A null pointer, a string that is not UTF-8, an index out of range or a bad size.
    FLINT_ERROR_INVALID_ARGUMENT = 1,
    /// A handle that is null, freed already, or not one this library gave out.
    FLINT_ERROR_INVALID_HANDLE = 2,
    /// The artifact could not be read or loaded (missing, corrupt, for another machine).
    FLINT_ERROR_LOAD = 3,
    /// A weights file or tensor does not fit the model.
    FLINT_ERROR_WEIGHTS = 4,
    /// An input is unknown, missing, or of the wrong dtype or shape.
    FLINT_ERROR_INPUT = 5,
    /// An output is unknown or its buffer is too small.
    FLINT_ERROR_OUTPUT = 6,
    /// The run itself failed (a kernel or the device).
    FLINT_ERROR_RUN = 7,
    /// A bug in Flint: a panic was caught at the boundary.
    FLINT_ERROR_INTERNAL = 8,
}

/// Element types, as in the spec.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlintDType {
    FLINT_F32 = 0,
    FLINT_F16 = 1,
    FLINT_BF16 = 2,
    FLINT_I32 = 3,
    FLINT_I64 = 4,
    FLINT_BOOL = 5,
}

/// The three parts of a model's signature.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlintKind {
    FLINT_INPUT = 0,
    FLINT_PARAM = 1,
    FLINT_OUTPUT = 2,
}

/// One axis of a tensor in the signature.
#[repr(C)]
pub struct FlintDim {
    /// The axis's size when it is static, else 0.
    pub size: u64,
    /// The axis as the model writes it when it is symbolic (`"N"`, `"2*N"`), else NULL.
    pub symbol: *const c_char,
    /// The largest size the model was compiled for (the static size, or the symbols' bounds).
    pub bound: u64,
}

/// A tensor of the signature; its strings and dims live as long as the model.
#[repr(C)]
pub struct FlintTensorInfo {
    pub name: *const c_char,
    pub dtype: FlintDType,
    pub rank: usize,
    pub dims: *const FlintDim,
}

/// An input the caller lends to a run: `bytes` bytes of little-endian, row-major elements.
#[repr(C)]
pub struct FlintInput {
    pub name: *const c_char,
    /// A `FlintDType`.
    pub dtype: u32,
    pub shape: *const usize,
    pub rank: usize,
    pub data: *const c_void,
    pub bytes: usize,
}

/// The largest rank `FlintOutput::shape` holds.
pub const FLINT_MAX_RANK: usize = 8;

/// An output buffer the caller owns: the run writes the output's bytes to `data` (at most
/// `capacity`) and sets `bytes`, `rank` and `shape`.
#[repr(C)]
pub struct FlintOutput {
    pub name: *const c_char,
    pub data: *mut c_void,
    pub capacity: usize,
    pub bytes: usize,
    pub rank: usize,
    pub shape: [usize; FLINT_MAX_RANK],
}

/// A loaded model (opaque).
pub struct FlintModel {
    model: Arc<LoadedModel>,
}

/// A model's working memory (opaque).
pub struct FlintSession {
    // Declared first, so dropped before the model it borrows.
    session: Session<'static>,
    _model: Arc<LoadedModel>,
}

struct LoadedModel {
    model: Model,
    /// The signature as C sees it, per kind: names, dims and the strings they point to.
    info: [Vec<TensorInfo>; 3],
}

struct TensorInfo {
    name: CString,
    dtype: FlintDType,
    dims: Vec<FlintDim>,
    _symbols: Vec<CString>,
}

// SAFETY: the raw pointers in `FlintDim` point into `TensorInfo::_symbols`, which is never
// changed after the model is loaded; `Model` itself is `Send + Sync`.
unsafe impl Send for LoadedModel {}
// SAFETY: as above.
unsafe impl Sync for LoadedModel {}

/// The handles given out and not freed, by address: how a stale handle is told from a live one.
static MODELS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
static SESSIONS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn live(set: &Mutex<Option<HashSet<usize>>>) -> std::sync::MutexGuard<'_, Option<HashSet<usize>>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_live(set: &Mutex<Option<HashSet<usize>>>, address: usize) -> bool {
    live(set).as_ref().is_some_and(|s| s.contains(&address))
}

fn remember(set: &Mutex<Option<HashSet<usize>>>, address: usize) {
    live(set).get_or_insert_with(HashSet::new).insert(address);
}

fn forget(set: &Mutex<Option<HashSet<usize>>>, address: usize) -> bool {
    live(set).as_mut().is_some_and(|s| s.remove(&address))
}

/// A failure: its status and message.
struct Failure(FlintStatus, String);

impl From<RuntimeError> for Failure {
    fn from(e: RuntimeError) -> Failure {
        use RuntimeError as E;
        let status = match &e {
            E::Artifact(_) | E::Io { .. } | E::Load(_) | E::NoCudaDriver | E::NoSuchDevice { .. } => {
                FlintStatus::FLINT_ERROR_LOAD
            }
            E::Weights { .. } | E::WeightDType { .. } | E::WeightShape { .. } | E::MissingWeight { .. } => {
                FlintStatus::FLINT_ERROR_WEIGHTS
            }
            E::UnknownName { what: "output", .. } | E::MissingOutput { .. } | E::OutputSize { .. } => {
                FlintStatus::FLINT_ERROR_OUTPUT
            }
            E::UnknownName { .. }
            | E::MissingInput { .. }
            | E::DuplicateInput { .. }
            | E::InputDType { .. }
            | E::InputRank { .. }
            | E::InputData { .. }
            | E::InputShape { .. }
            | E::DimOutOfRange { .. }
            | E::UnboundDim { .. } => FlintStatus::FLINT_ERROR_INPUT,
            E::Kernel { .. } | E::Driver { .. } => FlintStatus::FLINT_ERROR_RUN,
        };
        Failure(status, e.to_string())
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure(FlintStatus::FLINT_ERROR_INVALID_ARGUMENT, message.into())
}

/// Runs `body` behind the boundary: a panic or a failure becomes a status and the thread's
/// last error.
fn guarded(body: impl FnOnce() -> Result<(), Failure>) -> FlintStatus {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what =
            panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        Err(Failure(FlintStatus::FLINT_ERROR_INTERNAL, format!("internal error: {}", what.unwrap_or_default())))
    });
    let (status, message) = match outcome {
        Ok(()) => (FlintStatus::FLINT_OK, String::new()),
        Err(Failure(status, message)) => (status, message),
    };
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(message.replace('\0', " ")).unwrap_or_default());
    status
}

unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    CStr::from_ptr(s).to_str().map_err(|_| invalid(format!("{what} is not UTF-8")))
}

unsafe fn model_ref<'a>(model: *const FlintModel) -> Result<&'a FlintModel, Failure> {
    if model.is_null() || !is_live(&MODELS, model as usize) {
        return Err(Failure(FlintStatus::FLINT_ERROR_INVALID_HANDLE, "not a live model handle".into()));
    }
    Ok(&*model)
}

unsafe fn session_mut<'a>(session: *mut FlintSession) -> Result<&'a mut FlintSession, Failure> {
    if session.is_null() || !is_live(&SESSIONS, session as usize) {
        return Err(Failure(FlintStatus::FLINT_ERROR_INVALID_HANDLE, "not a live session handle".into()));
    }
    Ok(&mut *session)
}

fn c_dtype(d: DType) -> FlintDType {
    match d {
        DType::F32 => FlintDType::FLINT_F32,
        DType::F16 => FlintDType::FLINT_F16,
        DType::BF16 => FlintDType::FLINT_BF16,
        DType::I32 => FlintDType::FLINT_I32,
        DType::I64 => FlintDType::FLINT_I64,
        DType::Bool => FlintDType::FLINT_BOOL,
    }
}

fn rust_dtype(d: u32) -> Option<DType> {
    DType::ALL.get(d as usize).copied()
}

/// A `FlintKind` passed as an integer, checked.
fn kind_index(kind: u32) -> Result<usize, Failure> {
    (kind < 3).then_some(kind as usize).ok_or_else(|| invalid(format!("kind {kind} is not a FlintKind")))
}

fn signature(model: &Model) -> [Vec<TensorInfo>; 3] {
    let m = model.manifest();
    let bounds: Vec<u64> = m.symbols.iter().map(|s| s.bound).collect();
    let of = |kind| {
        m.regions_of(kind)
            .map(|(_, r)| {
                let value = m.region_value(r);
                let symbols: Vec<CString> = value
                    .shape
                    .iter()
                    .map(|d| CString::new(d.display(&m.symbols).to_string()).unwrap_or_default())
                    .collect();
                let dims = value
                    .shape
                    .iter()
                    .zip(&symbols)
                    .map(|(d, s)| FlintDim {
                        size: if d.syms.is_empty() { d.coeff } else { 0 },
                        symbol: if d.syms.is_empty() { std::ptr::null() } else { s.as_ptr() },
                        bound: d.eval(&bounds),
                    })
                    .collect();
                TensorInfo {
                    name: CString::new(r.name.as_str()).unwrap_or_default(),
                    dtype: c_dtype(value.dtype),
                    dims,
                    _symbols: symbols,
                }
            })
            .collect()
    };
    [of(RegionKind::Input), of(RegionKind::Param), of(RegionKind::Output)]
}

unsafe fn hand_out(model: Model, out: *mut *mut FlintModel) -> Result<(), Failure> {
    let info = signature(&model);
    let handle = Box::into_raw(Box::new(FlintModel { model: Arc::new(LoadedModel { model, info }) }));
    remember(&MODELS, handle as usize);
    *out = handle;
    Ok(())
}

/// The library's version, e.g. `"0.1.0"`; a static string.
#[no_mangle]
pub extern "C" fn flint_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last call on this thread that failed ("" after a call that worked).
/// Valid until the next Flint call on this thread.
#[no_mangle]
pub extern "C" fn flint_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Loads the artifact (`.tgx`) at `path` into `*out` (one thread per core for the CPU).
#[no_mangle]
pub unsafe extern "C" fn flint_model_load(path: *const c_char, out: *mut *mut FlintModel) -> FlintStatus {
    guarded(|| {
        let path = text(path, "path")?;
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        hand_out(Model::load(path)?, out)
    })
}

/// Where and how a model runs ([`flint_model_load_with`]); zeroed, the defaults.
#[repr(C)]
pub struct FlintLoadOptions {
    /// Threads a CPU kernel's range is split across; 0: every core.
    pub threads: usize,
    /// `"cpu"`, `"cuda"` (device 0) or `"cuda:N"`; NULL: the CPU.
    pub device: *const c_char,
    /// On a CUDA device, how it reaches host memory: `"unified"`, `"discrete"` or `"host"`;
    /// NULL: from the device's attributes (unified where it reads host memory in place).
    pub memory: *const c_char,
}

/// `options` as the runtime's, NULL fields and a NULL `options` meaning the defaults.
unsafe fn load_options(options: *const FlintLoadOptions) -> Result<LoadOptions, Failure> {
    let Some(o) = options.as_ref() else { return Ok(LoadOptions::default()) };
    let device = match o.device.is_null() {
        true => DeviceChoice::Cpu,
        false => {
            let name = text(o.device, "device")?;
            DeviceChoice::parse(name).ok_or_else(|| invalid(format!("device `{name}`: give cpu, cuda or cuda:N")))?
        }
    };
    let memory = match o.memory.is_null() {
        true => None,
        false => {
            let name = text(o.memory, "memory")?;
            let policy = MemoryPolicy::parse(name);
            Some(policy.ok_or_else(|| invalid(format!("memory `{name}`: give unified, discrete or host")))?)
        }
    };
    Ok(LoadOptions { threads: o.threads, device, memory })
}

/// Loads the artifact (`.tgx`) at `path` into `*out` to run as `options` say (NULL: on the
/// CPU, one thread per core). A CUDA device without a driver, or an artifact without PTX for
/// it, is `FLINT_ERROR_LOAD` with the reason in flint_last_error().
#[no_mangle]
pub unsafe extern "C" fn flint_model_load_with(
    path: *const c_char,
    options: *const FlintLoadOptions,
    out: *mut *mut FlintModel,
) -> FlintStatus {
    guarded(|| {
        let path = text(path, "path")?;
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let options = load_options(options)?;
        hand_out(Model::load_with(path, &options)?, out)
    })
}

/// Loads an artifact from `len` bytes at `bytes` (copied) into `*out`.
#[no_mangle]
pub unsafe extern "C" fn flint_model_load_memory(
    bytes: *const c_void,
    len: usize,
    out: *mut *mut FlintModel,
) -> FlintStatus {
    guarded(|| {
        if bytes.is_null() || out.is_null() {
            return Err(invalid("bytes or out is NULL"));
        }
        let slice = std::slice::from_raw_parts(bytes.cast::<u8>(), len);
        hand_out(Model::from_bytes(slice, &LoadOptions::default())?, out)
    })
}

/// Binds every param found in the safetensors file at `path`. Only before the model's first
/// session is made (`FLINT_ERROR_INVALID_ARGUMENT` after).
#[no_mangle]
pub unsafe extern "C" fn flint_model_bind_weights(model: *mut FlintModel, path: *const c_char) -> FlintStatus {
    guarded(|| {
        let path = text(path, "path")?;
        model_ref(model)?;
        let loaded = Arc::get_mut(&mut (*model).model)
            .ok_or_else(|| invalid("the model has sessions: bind its weights before making the first one"))?;
        loaded.model.bind_weights(path)?;
        Ok(())
    })
}

/// How many inputs, params or outputs (`kind`, a `FlintKind`) the model has, in `*count`.
#[no_mangle]
pub unsafe extern "C" fn flint_model_count(model: *const FlintModel, kind: u32, count: *mut usize) -> FlintStatus {
    guarded(|| {
        let m = model_ref(model)?;
        if count.is_null() {
            return Err(invalid("count is NULL"));
        }
        *count = m.model.info[kind_index(kind)?].len();
        Ok(())
    })
}

/// The `index`-th input, param or output (`kind`, a `FlintKind`; signature order) in `*info`.
#[no_mangle]
pub unsafe extern "C" fn flint_model_info(
    model: *const FlintModel,
    kind: u32,
    index: usize,
    info: *mut FlintTensorInfo,
) -> FlintStatus {
    guarded(|| {
        let m = model_ref(model)?;
        if info.is_null() {
            return Err(invalid("info is NULL"));
        }
        let all = &m.model.info[kind_index(kind)?];
        let t = all
            .get(index)
            .ok_or_else(|| invalid(format!("index {index} is out of range (there are {})", all.len())))?;
        *info = FlintTensorInfo { name: t.name.as_ptr(), dtype: t.dtype, rank: t.dims.len(), dims: t.dims.as_ptr() };
        Ok(())
    })
}

/// Frees a model. Its sessions stay usable (each keeps the model alive) until they are freed.
#[no_mangle]
pub unsafe extern "C" fn flint_model_free(model: *mut FlintModel) -> FlintStatus {
    guarded(|| {
        if model.is_null() || !forget(&MODELS, model as usize) {
            return Err(Failure(FlintStatus::FLINT_ERROR_INVALID_HANDLE, "not a live model handle".into()));
        }
        drop(Box::from_raw(model));
        Ok(())
    })
}

/// A new session of `model` (its own working memory) in `*out`.
#[no_mangle]
pub unsafe extern "C" fn flint_session_new(model: *const FlintModel, out: *mut *mut FlintSession) -> FlintStatus {
    guarded(|| {
        let m = model_ref(model)?;
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let owner = m.model.clone();
        // SAFETY: the session borrows the model inside `owner`'s allocation, which the session
        // handle keeps alive and drops after the session (field order).
        let borrowed: &'static Model = &*(&owner.model as *const Model);
        let handle = Box::into_raw(Box::new(FlintSession { session: borrowed.session(), _model: owner }));
        remember(&SESSIONS, handle as usize);
        *out = handle;
        Ok(())
    })
}

/// Runs the model on `n_inputs` named inputs and writes each of the `n_outputs` named
/// outputs into its caller-owned buffer (`FLINT_ERROR_OUTPUT` when a buffer is smaller than
/// the output, which is then not written). Symbolic dims are read off the inputs' shapes.
#[no_mangle]
pub unsafe extern "C" fn flint_session_run(
    session: *mut FlintSession,
    inputs: *const FlintInput,
    n_inputs: usize,
    outputs: *mut FlintOutput,
    n_outputs: usize,
) -> FlintStatus {
    guarded(|| {
        let s = session_mut(session)?;
        if (inputs.is_null() && n_inputs > 0) || (outputs.is_null() && n_outputs > 0) {
            return Err(invalid("inputs or outputs is NULL"));
        }
        let given = if n_inputs == 0 { &[][..] } else { std::slice::from_raw_parts(inputs, n_inputs) };
        let mut named = Vec::with_capacity(given.len());
        for (i, input) in given.iter().enumerate() {
            let name = text(input.name, &format!("inputs[{i}].name"))?;
            if (input.shape.is_null() && input.rank > 0) || (input.data.is_null() && input.bytes > 0) {
                return Err(invalid(format!("input `{name}`: shape or data is NULL")));
            }
            let shape = if input.rank == 0 { &[][..] } else { std::slice::from_raw_parts(input.shape, input.rank) };
            let data = if input.bytes == 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(input.data.cast::<u8>(), input.bytes)
            };
            let dtype = rust_dtype(input.dtype)
                .ok_or_else(|| invalid(format!("input `{name}`: dtype {} is not a FlintDType", input.dtype)))?;
            named.push((name, TensorRef::new(dtype, shape, data)));
        }
        let results = s.session.run(&named)?;
        let wanted = if n_outputs == 0 { &mut [][..] } else { std::slice::from_raw_parts_mut(outputs, n_outputs) };
        for (i, out) in wanted.iter_mut().enumerate() {
            let name = text(out.name, &format!("outputs[{i}].name"))?;
            let Some((_, tensor)) = results.iter().find(|(n, _)| n == name) else {
                let known: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
                return Err(Failure(
                    FlintStatus::FLINT_ERROR_OUTPUT,
                    format!("the model has no output `{name}` (its outputs: {})", known.join(", ")),
                ));
            };
            if tensor.data.len() > out.capacity || (out.data.is_null() && !tensor.data.is_empty()) {
                return Err(Failure(
                    FlintStatus::FLINT_ERROR_OUTPUT,
                    format!(
                        "the buffer for output `{name}` has {} bytes, it needs {}",
                        out.capacity,
                        tensor.data.len()
                    ),
                ));
            }
            if tensor.shape.len() > FLINT_MAX_RANK {
                return Err(Failure(
                    FlintStatus::FLINT_ERROR_OUTPUT,
                    format!("output `{name}` has rank above {FLINT_MAX_RANK}"),
                ));
            }
            std::ptr::copy_nonoverlapping(tensor.data.as_ptr(), out.data.cast::<u8>(), tensor.data.len());
            out.bytes = tensor.data.len();
            out.rank = tensor.shape.len();
            out.shape = [0; FLINT_MAX_RANK];
            out.shape[..tensor.shape.len()].copy_from_slice(&tensor.shape);
        }
        Ok(())
    })
}

/// Frees a session.
#[no_mangle]
pub unsafe extern "C" fn flint_session_free(session: *mut FlintSession) -> FlintStatus {
    guarded(|| {
        if session.is_null() || !forget(&SESSIONS, session as usize) {
            return Err(Failure(FlintStatus::FLINT_ERROR_INVALID_HANDLE, "not a live session handle".into()));
        }
        drop(Box::from_raw(session));
        Ok(())
    })
}
