//! Running a model's kernels through the CUDA driver.
//!
//! A model loaded for a CUDA device picks the artifact's PTX for the device (the highest
//! compute capability not above the device's: PTX for sm_80 runs on sm_90 and sm_121 by the
//! driver's JIT, PTX for sm_121 does not run on sm_90), loads it with the JIT's error log
//! (`cuModuleLoadDataEx`), and launches each kernel from the same host glue as the CPU: the
//! glue's callback copies the kernel's pointers and dims into a small device slot and
//! launches the kernel's grid-stride function on the context's stream, so any grid is correct.
//!
//! Memory policy ([`MemoryPolicy`]): *unified* where the GPU reads host memory in place (an
//! integrated GPU such as GB10, or a device reporting pageable memory access: Grace Hopper,
//! HMM) — inputs, weights and outputs stay where the caller and the model put them, the arena
//! is managed memory, and nothing is copied; *discrete* otherwise — the arena and every region
//! live in device memory, weights are uploaded once per session through a pinned staging
//! buffer and inputs and outputs copied. *host* (only when asked for) reads and writes the
//! caller's and the model's memory over the bus, pinned and mapped for the device for the
//! length of a run, with the arena in device memory: no copies on any device, at the bus's
//! speed. [`CudaSession::copied_bytes`] counts what one run moved between host and device.
//!
//! A session never asks for more memory than there is: device memory as the driver reports it
//! free, and on an integrated GPU (whose "device" memory is the system's) what `/proc/meminfo`
//! calls available.

use std::ffi::{c_void, CString};

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdevice_attribute, CUjit_option};

use crate::artifact::Manifest;
use crate::device::CudaDevice;
use crate::RuntimeError;

/// How a CUDA model reaches host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryPolicy {
    /// Device memory for everything; inputs, weights and outputs copied.
    Discrete,
    /// Host memory read and written in place by the GPU; a managed arena.
    Unified,
    /// Host memory pinned and mapped for the device during each run; the arena on the device.
    Host,
}

impl MemoryPolicy {
    /// `discrete`, `unified` or `host`.
    pub fn parse(name: &str) -> Option<MemoryPolicy> {
        [MemoryPolicy::Discrete, MemoryPolicy::Unified, MemoryPolicy::Host].into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            MemoryPolicy::Discrete => "discrete",
            MemoryPolicy::Unified => "unified",
            MemoryPolicy::Host => "host",
        }
    }
}

/// Threads per block of every launch; the kernels loop over their points grid-stride, with a
/// grid sized from the kernel's traffic ([`grid`]).
const BLOCK: u32 = 256;

/// A model's kernels on one CUDA device.
pub struct CudaKernels {
    device: CudaDevice,
    module: sys::CUmodule,
    functions: Vec<sys::CUfunction>,
    /// The compute capability of the PTX loaded (`major * 10 + minor`).
    pub ptx_sm: u32,
    pub policy: MemoryPolicy,
    /// The most blocks a launch gets: 8 per SM.
    blocks: u32,
    /// Each kernel's bytes touched per index of its range (the manifest's `work`).
    work: Vec<u64>,
    /// Each kernel's bytes of dynamic shared memory a block, for the PTX loaded.
    shared: Vec<u32>,
}

/// Bytes of a kernel's traffic per thread that size its grid.
const BYTES_PER_THREAD: u64 = 16;

/// Blocks of a launch over `extent` indices of `work` bytes each: about [`BYTES_PER_THREAD`]
/// of traffic a thread, at least one block, at most `cap`. A tiny kernel then starts one block
/// instead of eight per SM that find nothing to do; the kernels are grid-stride, so any count
/// is correct.
fn grid(extent: i64, work: u64, cap: u32) -> u32 {
    let bytes = u64::try_from(extent).unwrap_or(0).saturating_mul(work);
    bytes.div_ceil(u64::from(BLOCK) * BYTES_PER_THREAD).clamp(1, u64::from(cap.max(1))) as u32
}

fn driver(call: &'static str) -> impl Fn(cudarc::driver::DriverError) -> RuntimeError {
    move |source| RuntimeError::Driver { call, source }
}

impl CudaKernels {
    /// Loads the PTX of `ptx` (capability, text) that suits `device`, and every kernel's
    /// function. `policy` overrides the one the device's attributes choose.
    pub fn load(
        device: CudaDevice,
        manifest: &Manifest,
        ptx: &[(u32, &str)],
        policy: Option<MemoryPolicy>,
    ) -> Result<CudaKernels, RuntimeError> {
        device.context().bind_to_thread().map_err(driver("cuCtxSetCurrent"))?;
        let (major, minor) = device.compute_capability()?;
        let sm = major * 10 + minor;
        let Some(&(ptx_sm, text)) = ptx.iter().filter(|(s, _)| *s <= sm).max_by_key(|(s, _)| *s) else {
            let have: Vec<String> = ptx.iter().map(|(s, _)| format!("sm_{s}")).collect();
            let have = if have.is_empty() {
                "none (compile with --target sm_80, sm_90 or sm_121)".into()
            } else {
                have.join(", ")
            };
            return Err(RuntimeError::Load(format!("the artifact has no PTX this sm_{sm} device runs; it has {have}")));
        };
        let module = load_ptx(text)?;
        let attribute = |a| device.attribute(a);
        let most = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
        let (functions, shared) = manifest
            .kernels
            .iter()
            .map(|k| {
                let f = k.gpu.iter().find(|f| f.sm == ptx_sm).ok_or_else(|| {
                    RuntimeError::Load(format!("kernel {} has no function in the PTX for sm_{ptx_sm}", k.name))
                })?;
                let name = CString::new(f.symbol.as_str())
                    .map_err(|_| RuntimeError::Load("a kernel name has a NUL".into()))?;
                // SAFETY: `module` was just loaded and is unloaded only when `self` drops.
                let function =
                    unsafe { result::module::get_function(module, name) }.map_err(driver("cuModuleGetFunction"))?;
                Ok((function, allow_shared(k, f, function, most)?))
            })
            .collect::<Result<(Vec<_>, Vec<_>), RuntimeError>>()?;
        let in_place =
            device.is_integrated()? || attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS)? != 0;
        let policy = policy.unwrap_or(if in_place { MemoryPolicy::Unified } else { MemoryPolicy::Discrete });
        let sms = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?.max(1);
        let work = manifest.kernels.iter().map(|k| k.work).collect();
        Ok(CudaKernels { device, module, functions, ptx_sm, policy, blocks: sms * 8, work, shared })
    }

    /// The device the kernels are loaded on.
    pub fn device(&self) -> &CudaDevice {
        &self.device
    }

    /// Launches kernel `index` over `[0, extent)` with `pointers` and `dims` copied into its
    /// `slot` of device memory first (the launch reads them when it runs, after the glue's
    /// stack frame is gone).
    ///
    /// # Safety
    /// `pointers` are device-accessible addresses of the kernel's buffers, `slot` is at least
    /// `(pointers.len() + dims.len()) * 8` bytes of device memory that no running kernel reads.
    pub unsafe fn launch(
        &self,
        index: usize,
        pointers: &[u64],
        dims: &[i64],
        extent: i64,
        slot: sys::CUdeviceptr,
    ) -> Result<(), RuntimeError> {
        let mut words: Vec<u64> = pointers.to_vec();
        words.extend(dims.iter().map(|&d| d as u64));
        result::memcpy_htod_sync(slot, &words).map_err(driver("cuMemcpyHtoD"))?;
        let (mut args, mut begin, mut end) = (slot, 0i64, extent);
        let mut dims_at = slot + 8 * pointers.len() as u64;
        let mut params: [*mut c_void; 4] = [
            (&mut args as *mut u64).cast(),
            (&mut begin as *mut i64).cast(),
            (&mut end as *mut i64).cast(),
            (&mut dims_at as *mut u64).cast(),
        ];
        result::launch_kernel(
            self.functions[index],
            (grid(extent, self.work.get(index).copied().unwrap_or(u64::MAX), self.blocks), 1, 1),
            (BLOCK, 1, 1),
            self.shared.get(index).copied().unwrap_or(0),
            std::ptr::null_mut(),
            &mut params,
        )
        .map_err(driver("cuLaunchKernel"))
    }

    /// Waits for every launch.
    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        result::ctx::synchronize().map_err(driver("cuCtxSynchronize"))
    }
}

impl Drop for CudaKernels {
    fn drop(&mut self) {
        // SAFETY: the module is ours, and no launch outlives the run that made it.
        let _ = unsafe { result::module::unload(self.module) };
    }
}

/// Each launch's start and end on the device while a session profiles: host clocks around an
/// asynchronous launch measure the launch, not the kernel.
#[derive(Default)]
pub struct LaunchTimes(Vec<(usize, sys::CUevent, sys::CUevent)>);

impl LaunchTimes {
    /// An event recorded on the launch stream now.
    pub fn mark(&self) -> Result<sys::CUevent, RuntimeError> {
        let event = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(driver("cuEventCreate"))?;
        // SAFETY: a live event, recorded on the default stream the launches use.
        unsafe { result::event::record(event, std::ptr::null_mut()) }.map_err(driver("cuEventRecord"))?;
        Ok(event)
    }

    /// Kernel `index` ran between `start` and `end`.
    pub fn push(&mut self, index: usize, start: sys::CUevent, end: sys::CUevent) {
        self.0.push((index, start, end));
    }

    /// Adds each launch's device time to `profile`, once the launches have finished.
    pub fn collect(&mut self, profile: &mut [std::time::Duration]) -> Result<(), RuntimeError> {
        for (index, start, end) in std::mem::take(&mut self.0) {
            // SAFETY: both events were created and recorded by `mark`, in this order.
            let ms = unsafe { result::event::elapsed(start, end) };
            // SAFETY: each event is destroyed once, here.
            unsafe {
                let _ = result::event::destroy(start);
                let _ = result::event::destroy(end);
            }
            let ms = ms.map_err(driver("cuEventElapsedTime"))?;
            if let Some(t) = profile.get_mut(index) {
                *t += std::time::Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1e3);
            }
        }
        Ok(())
    }
}

impl Drop for LaunchTimes {
    fn drop(&mut self) {
        for &(_, start, end) in &self.0 {
            // SAFETY: events not collected are destroyed once, here.
            unsafe {
                let _ = result::event::destroy(start);
                let _ = result::event::destroy(end);
            }
        }
    }
}

/// Loads PTX text, with the JIT's error log in the error when the driver refuses it.
/// The dynamic shared memory kernel `k`'s function `f` asks for, allowed for `function` (past
/// 48 KiB a block must opt in); an error if the device has less than that (`most`) for a
/// block: the artifact's tiles were sized for a larger SM.
fn allow_shared(
    k: &crate::artifact::Kernel,
    f: &crate::artifact::GpuFunction,
    function: sys::CUfunction,
    most: u32,
) -> Result<u32, RuntimeError> {
    let bytes = u32::try_from(f.shared_bytes).unwrap_or(u32::MAX);
    if bytes > most {
        return Err(RuntimeError::Load(format!(
            "kernel {} of the PTX for sm_{} needs {bytes} B of shared memory a block; this device allows {most} B (compile for its SM with --target)",
            k.name, f.sm
        )));
    }
    if bytes > 0 {
        let attribute = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        // SAFETY: `function` was just taken from the loaded module.
        unsafe { result::function::set_function_attribute(function, attribute, bytes as i32) }
            .map_err(driver("cuFuncSetAttribute"))?;
    }
    Ok(bytes)
}

fn load_ptx(text: &str) -> Result<sys::CUmodule, RuntimeError> {
    let image = CString::new(text).map_err(|_| RuntimeError::Load("the PTX has a NUL byte".into()))?;
    let mut log = vec![0u8; 16 * 1024];
    let mut options = [CUjit_option::CU_JIT_ERROR_LOG_BUFFER, CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES];
    let mut values: [*mut c_void; 2] = [log.as_mut_ptr().cast(), log.len() as *mut c_void];
    let mut module = std::ptr::null_mut();
    // SAFETY: the image is NUL-terminated PTX; the options point at live buffers of the sizes given.
    let status = unsafe {
        sys::cuModuleLoadDataEx(&mut module, image.as_ptr().cast(), 2, options.as_mut_ptr(), values.as_mut_ptr())
    };
    if status == sys::CUresult::CUDA_SUCCESS {
        return Ok(module);
    }
    let said = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(log.len())]).into_owned();
    Err(RuntimeError::Load(format!("the CUDA driver refused the PTX ({status:?}): {}", said.trim())))
}

/// Each kernel's slot of device memory for its pointers and dims.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    base: sys::CUdeviceptr,
    bytes: u64,
}

impl Slots {
    /// The slot of kernel `index`.
    pub fn of(&self, index: usize) -> sys::CUdeviceptr {
        self.base + self.bytes * index as u64
    }
}

/// Device memory of one kernel-graph run on CUDA: the arena, each kernel's argument slot, and
/// (discrete) a buffer per region at its size at the bounds.
pub struct CudaSession {
    pub arena: sys::CUdeviceptr,
    pub slots: Slots,
    /// Discrete only: each region's device buffer and its capacity.
    pub regions: Vec<(sys::CUdeviceptr, usize)>,
    /// Discrete only: whether each param's weight is on the device.
    pub uploaded: Vec<bool>,
    /// Bytes copied between host and device by the last run.
    pub copied_bytes: u64,
    allocations: Vec<sys::CUdeviceptr>,
    /// Host policy: the host ranges pinned and mapped for the current run.
    registered: Vec<*mut c_void>,
    /// Discrete: the pinned buffer uploads pass through, allocated at the first.
    staging: Option<*mut u8>,
}

/// Bytes of the pinned staging buffer: uploads go through it in pieces of this size.
const STAGING_BYTES: usize = 4 << 20;

/// What `/proc/meminfo` calls available (`MemAvailable`), in bytes: the budget of an
/// integrated GPU, whose memory is the system's (the driver's "free" device memory is not
/// what the system can give).
pub fn available_system_memory() -> Option<u64> {
    parse_mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

impl CudaSession {
    /// Allocates a session's memory for `manifest` on `kernels`' device; `region_bytes` are
    /// the regions' sizes at the bounds. Never more than the device has free.
    pub fn new(
        kernels: &CudaKernels,
        manifest: &Manifest,
        region_bytes: &[usize],
    ) -> Result<CudaSession, RuntimeError> {
        kernels.device.context().bind_to_thread().map_err(driver("cuCtxSetCurrent"))?;
        let words = manifest.kernels.iter().map(|k| k.args.len()).max().unwrap_or(0) + manifest.symbols.len().max(1);
        let slot_bytes = 8 * words as u64;
        let discrete = kernels.policy == MemoryPolicy::Discrete;
        let wanted = manifest.arena_bytes.max(1)
            + slot_bytes * manifest.kernels.len().max(1) as u64
            + if discrete { region_bytes.iter().map(|&b| b.max(1) as u64).sum() } else { 0 };
        let free = match kernels.device.is_integrated()? {
            true => available_system_memory()
                .ok_or_else(|| RuntimeError::Load("cannot read MemAvailable from /proc/meminfo".into()))?,
            false => result::mem_get_info().map_err(driver("cuMemGetInfo"))?.0 as u64,
        };
        if wanted > free {
            return Err(RuntimeError::Load(format!(
                "the model needs {wanted} bytes of device memory; the device has {free} free"
            )));
        }
        let mut session = CudaSession {
            arena: 0,
            slots: Slots { base: 0, bytes: slot_bytes },
            regions: Vec::new(),
            uploaded: vec![false; region_bytes.len()],
            copied_bytes: 0,
            allocations: Vec::new(),
            registered: Vec::new(),
            staging: None,
        };
        let arena_bytes = manifest.arena_bytes.max(1) as usize;
        // SAFETY: plain allocations, freed in `drop`.
        unsafe {
            session.arena = match kernels.policy {
                MemoryPolicy::Unified => {
                    result::malloc_managed(arena_bytes, sys::CUmemAttach_flags::CU_MEM_ATTACH_GLOBAL)
                        .map_err(driver("cuMemAllocManaged"))?
                }
                MemoryPolicy::Discrete | MemoryPolicy::Host => {
                    result::malloc_sync(arena_bytes).map_err(driver("cuMemAlloc"))?
                }
            };
            session.allocations.push(session.arena);
            session.slots.base = result::malloc_sync((slot_bytes as usize) * manifest.kernels.len().max(1))
                .map_err(driver("cuMemAlloc"))?;
            session.allocations.push(session.slots.base);
            if discrete {
                for &bytes in region_bytes {
                    let buffer = result::malloc_sync(bytes.max(1)).map_err(driver("cuMemAlloc"))?;
                    session.allocations.push(buffer);
                    session.regions.push((buffer, bytes));
                }
            }
        }
        Ok(session)
    }

    /// Copies `bytes` to device address `to` through the pinned staging buffer (a copy from
    /// pageable memory is staged by the driver anyway, synchronously and in smaller pieces),
    /// counting them.
    pub fn upload(&mut self, to: sys::CUdeviceptr, bytes: &[u8]) -> Result<(), RuntimeError> {
        let staging = match self.staging {
            Some(s) => s,
            None => {
                // SAFETY: a plain pinned allocation, freed in `drop`.
                let s = unsafe { result::malloc_host(STAGING_BYTES, 0) }.map_err(driver("cuMemAllocHost"))?;
                *self.staging.insert(s.cast())
            }
        };
        for (i, piece) in bytes.chunks(STAGING_BYTES).enumerate() {
            // SAFETY: the staging buffer holds STAGING_BYTES, a piece at most that; `to` is a
            // region buffer of at least `bytes.len()` bytes (checked by the caller).
            unsafe {
                std::ptr::copy_nonoverlapping(piece.as_ptr(), staging, piece.len());
                let pinned = std::slice::from_raw_parts(staging, piece.len());
                result::memcpy_htod_sync(to + (i * STAGING_BYTES) as u64, pinned).map_err(driver("cuMemcpyHtoD"))?;
            }
        }
        self.copied_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Host policy: pins and maps `bytes` at `host` for the device until [`CudaSession::unmap`],
    /// and returns the device's address of it. A range inside one already mapped (a tensor on
    /// a page of another) is used as it is.
    pub fn map_host(&mut self, host: *mut u8, bytes: usize) -> Result<u64, RuntimeError> {
        if host.is_null() || bytes == 0 {
            return Ok(host as u64);
        }
        let flags = sys::CU_MEMHOSTREGISTER_PORTABLE | sys::CU_MEMHOSTREGISTER_DEVICEMAP;
        // SAFETY: `host` is `bytes` of live memory (an input, a bound weight or an output
        // buffer) that outlives the run; it is unregistered after the run.
        let status = unsafe { sys::cuMemHostRegister_v2(host.cast(), bytes, flags) };
        match status {
            sys::CUresult::CUDA_SUCCESS => self.registered.push(host.cast()),
            sys::CUresult::CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED => {}
            other => other.result().map_err(driver("cuMemHostRegister"))?,
        }
        let mut device = 0;
        // SAFETY: `host` is inside a registered range.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut device, host.cast(), 0) }
            .result()
            .map_err(driver("cuMemHostGetDevicePointer"))?;
        Ok(device)
    }

    /// Host policy: unpins what the run mapped.
    pub fn unmap(&mut self) {
        for p in self.registered.drain(..) {
            // SAFETY: each was registered by `map_host` and is unregistered once.
            let _ = unsafe { sys::cuMemHostUnregister(p) };
        }
    }

    /// Copies device address `from` into `to`, counting the bytes.
    pub fn download(&mut self, to: &mut [u8], from: sys::CUdeviceptr) -> Result<(), RuntimeError> {
        // SAFETY: `from` holds at least `to.len()` bytes of a region or the arena.
        unsafe { result::memcpy_dtoh_sync(to, from) }.map_err(driver("cuMemcpyDtoH"))?;
        self.copied_bytes += to.len() as u64;
        Ok(())
    }
}

impl Drop for CudaSession {
    fn drop(&mut self) {
        self.unmap();
        if let Some(staging) = self.staging.take() {
            // SAFETY: allocated by `malloc_host` in `upload`, freed once.
            let _ = unsafe { result::free_host(staging.cast()) };
        }
        for &a in &self.allocations {
            // SAFETY: each was allocated by `new` and is freed once.
            let _ = unsafe { result::free_sync(a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_grid_follows_the_kernel_s_traffic() {
        assert_eq!(grid(8, 64, 1056), 1, "a tiny kernel: one block");
        assert_eq!(grid(0, 64, 1056), 1, "an empty range still launches one block that exits");
        assert_eq!(grid(1024, 4096, 1056), 1024, "4 MiB: a block per 4 KiB");
        assert_eq!(grid(4096, 32 << 10, 1056), 1056, "capped at 8 blocks per SM");
        assert_eq!(grid(-5, 64, 8), 1);
        assert_eq!(grid(i64::MAX, u64::MAX, 8), 8, "no overflow");
    }

    #[test]
    fn the_budget_of_an_integrated_gpu_is_what_meminfo_calls_available() {
        let meminfo = "MemTotal:       131072000 kB\nMemFree:         1000 kB\nMemAvailable:   120000000 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(120_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: lots\n"), None);
        // This machine's own, read as a GB10 would read its.
        assert!(available_system_memory().is_some_and(|b| b > 0));
    }
}
