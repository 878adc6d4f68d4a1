//! The Flint runtime: loads compiled artifacts and runs them on the CPU or through the CUDA
//! driver. It links no LLVM or MLIR; the CUDA driver (`libcuda`) is loaded at run time, so the
//! runtime builds and runs on machines without CUDA and reports the absence as an error.

pub mod device;

pub use device::{cuda_device_count, CudaDevice, Device};

/// Every failure the runtime reports.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
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
