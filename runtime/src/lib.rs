//! The Flint runtime: loads compiled artifacts (`.tgx`) and runs them on the CPU or through
//! the CUDA driver. It links no compiler, LLVM or MLIR: kernels arrive as native code, the
//! host glue as CLIF text that Cranelift compiles at load. The CUDA driver (`libcuda`) is
//! loaded at run time, so the runtime builds and runs on machines without CUDA and reports the
//! absence as an error.
//!
//! Start at [`Model`].

pub mod artifact;
pub mod capi;
pub mod cpu;
pub mod cuda;
pub mod device;
pub mod glue;
mod model;

pub use artifact::{ArtifactError, DType};
pub use cuda::MemoryPolicy;
pub use device::{cuda_device_count, CudaDevice, Device};
pub use model::{DeviceChoice, LoadOptions, Model, Session, Tensor, TensorRef};

/// Every failure the runtime reports.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The artifact checked out but its code could not be loaded.
    #[error("cannot load the artifact: {0}")]
    Load(String),
    #[error("{file}: not a safetensors file: {message}")]
    Weights { file: String, message: String },
    #[error("weight `{name}` has dtype {found}, the model expects {expected}")]
    WeightDType { name: String, expected: DType, found: String },
    #[error("weight `{name}` has shape {found:?}, the model expects {expected}")]
    WeightShape { name: String, expected: String, found: Vec<usize> },
    #[error("weight `{name}` is not bound: give a weights file that holds it (or compile with --embed-weights)")]
    MissingWeight { name: String },
    #[error("the model has no {what} `{name}` (its {what}s: {known})")]
    UnknownName { what: &'static str, name: String, known: String },
    #[error("input `{name}` is missing")]
    MissingInput { name: String },
    #[error("input `{name}` is given twice")]
    DuplicateInput { name: String },
    #[error("input `{name}` has dtype {found}, the model expects {expected}")]
    InputDType { name: String, expected: DType, found: DType },
    #[error("input `{name}` has shape {found:?}, the model expects {expected}")]
    InputRank { name: String, expected: String, found: Vec<usize> },
    #[error("input `{name}` of shape {shape:?} comes with {bytes} bytes of data")]
    InputData { name: String, shape: Vec<usize>, bytes: usize },
    #[error("input `{name}` has shape {found:?}, the model expects {expected} (axis {axis} differs; at {dims})")]
    InputShape { name: String, axis: usize, expected: String, found: Vec<usize>, dims: String },
    #[error("dim `{name}` = {value} is outside 1..={bound}, the range the model was compiled for")]
    DimOutOfRange { name: String, value: u64, bound: u64 },
    #[error("dim `{name}` is not fixed by any input's shape: give its value")]
    UnboundDim { name: String },
    #[error("no buffer given for output `{name}`")]
    MissingOutput { name: String },
    #[error("the buffer for output `{name}` has {found} bytes, it needs {expected}")]
    OutputSize { name: String, expected: usize, found: usize },
    #[error("a kernel failed (status {status})")]
    Kernel { status: i32 },
    /// The CUDA driver library (`libcuda.so`) could not be loaded on this machine.
    #[error("no CUDA driver: libcuda could not be loaded (is an NVIDIA driver installed and on the library path?)")]
    NoCudaDriver,
    /// The driver is present but has no device with the requested ordinal.
    #[error("no CUDA device with ordinal {ordinal}: the driver reports {count} device(s)")]
    NoSuchDevice {
        /// The ordinal that was asked for.
        ordinal: usize,
        /// How many devices the driver reports.
        count: usize,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver call {call} failed: {source}")]
    Driver {
        /// The driver entry point (or the cudarc wrapper) that failed.
        call: &'static str,
        /// The driver's error code.
        #[source]
        source: cudarc::driver::DriverError,
    },
}

impl RuntimeError {
    /// Names the weights file a weights error came from.
    fn in_source(self, source: &str) -> RuntimeError {
        match self {
            RuntimeError::Weights { message, .. } => RuntimeError::Weights { file: source.into(), message },
            other => other,
        }
    }
}
