//! Devices the runtime can run on, and the probe for CUDA devices.
//!
//! cudarc loads `libcuda` lazily and panics when it is missing (`CudaContext::new` included),
//! so every entry point here first asks [`cuda_driver_present`] and turns a missing driver
//! into [`RuntimeError::NoCudaDriver`].

use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::{result, CudaContext, DriverError};

use crate::RuntimeError;

/// Whether the CUDA driver library can be loaded on this machine.
pub fn cuda_driver_present() -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the driver library under its known names
    // and drops the handle again; it touches no other state.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Initialises the driver, or says why it cannot be used.
fn init_driver() -> Result<(), RuntimeError> {
    if !cuda_driver_present() {
        return Err(RuntimeError::NoCudaDriver);
    }
    result::init().map_err(|source| RuntimeError::Driver { call: "cuInit", source })
}

/// The number of CUDA devices the driver reports.
///
/// Returns [`RuntimeError::NoCudaDriver`] when `libcuda` is absent, and `Ok(0)` when the driver
/// is installed but sees no device (`CUDA_ERROR_NO_DEVICE`).
pub fn cuda_device_count() -> Result<usize, RuntimeError> {
    match init_driver() {
        Err(RuntimeError::Driver { source: DriverError(CUresult::CUDA_ERROR_NO_DEVICE), .. }) => return Ok(0),
        other => other?,
    }
    let count =
        result::device::get_count().map_err(|source| RuntimeError::Driver { call: "cuDeviceGetCount", source })?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// A device a compiled graph can run on.
#[derive(Debug, Clone)]
pub enum Device {
    /// The host CPU.
    Cpu,
    /// A CUDA device, with its primary context retained.
    Cuda(CudaDevice),
}

impl Device {
    /// Opens the CUDA device `ordinal` (see [`CudaDevice::new`]).
    pub fn cuda(ordinal: usize) -> Result<Device, RuntimeError> {
        CudaDevice::new(ordinal).map(Device::Cuda)
    }
}

/// An open CUDA device: the driver's primary context for one ordinal.
#[derive(Debug, Clone)]
pub struct CudaDevice {
    context: Arc<CudaContext>,
}

impl CudaDevice {
    /// Opens the CUDA device `ordinal`, retaining its primary context.
    ///
    /// Fails with [`RuntimeError::NoCudaDriver`] when `libcuda` is absent and with
    /// [`RuntimeError::NoSuchDevice`] when the ordinal is out of range; never panics for either.
    pub fn new(ordinal: usize) -> Result<CudaDevice, RuntimeError> {
        let count = cuda_device_count()?;
        if ordinal >= count {
            return Err(RuntimeError::NoSuchDevice { ordinal, count });
        }
        let context =
            CudaContext::new(ordinal).map_err(|source| RuntimeError::Driver { call: "CudaContext::new", source })?;
        Ok(CudaDevice { context })
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.context.ordinal()
    }

    /// The device's name as the driver reports it, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn name(&self) -> Result<String, RuntimeError> {
        self.context.name().map_err(|source| RuntimeError::Driver { call: "cuDeviceGetName", source })
    }

    /// The compute capability as (major, minor), e.g. (9, 0) for H100 and (12, 1) for GB10.
    pub fn compute_capability(&self) -> Result<(u32, u32), RuntimeError> {
        let major = self.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = self.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        Ok((major, minor))
    }

    /// Whether the GPU shares physical memory with the host (GB10 and other integrated parts).
    pub fn is_integrated(&self) -> Result<bool, RuntimeError> {
        Ok(self.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_INTEGRATED)? != 0)
    }

    /// The cudarc context, for launching work on this device.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.context
    }

    pub(crate) fn attribute(&self, attribute: CUdevice_attribute) -> Result<u32, RuntimeError> {
        let value = self
            .context
            .attribute(attribute)
            .map_err(|source| RuntimeError::Driver { call: "cuDeviceGetAttribute", source })?;
        Ok(u32::try_from(value).unwrap_or(0))
    }
}
