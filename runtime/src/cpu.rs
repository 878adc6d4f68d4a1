//! Execution on the CPU: the kernels' shared object loaded from memory, CPU feature checks,
//! and the split of each kernel's range across threads.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;

use crate::RuntimeError;

/// A kernel: `f(pointers, begin, end, dims)` computes indices `[begin, end)` of its range;
/// `pointers` holds its inputs then its outputs, `dims` the value of every symbol.
pub type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64, *const i64);

/// A shared object loaded from bytes, leaving no file behind.
///
/// The memfd stays open while the library is loaded: glibc's `dlopen` first matches loaded
/// objects by path, and fd numbers are reused, so closing it would let the next library
/// loaded from the same `/proc/self/fd/N` come back as this one. Fields drop in order: the
/// library is closed before the memfd.
pub struct Library {
    library: libloading::Library,
    _memfd: File,
}

impl Library {
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Library, RuntimeError> {
        let load = |what: &str, e: &dyn std::fmt::Display| RuntimeError::Load(format!("{what}: {e}"));
        let cname = CString::new(name).unwrap_or_default();
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(load("memfd_create", &std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let mut memfd = unsafe { File::from_raw_fd(fd) };
        memfd.write_all(bytes).map_err(|e| load("writing the kernels to memory", &e))?;
        let path = format!("/proc/self/fd/{fd}");
        // SAFETY: the object was checksummed with the artifact; its initialisers are those `cc
        // -shared` links in (none of ours), so loading it runs no code of the artifact.
        let library = unsafe { libloading::Library::new(&path) }.map_err(|e| load("loading the kernels", &e))?;
        Ok(Library { library, _memfd: memfd })
    }

    /// The kernel function named `symbol`.
    pub fn kernel(&self, symbol: &str) -> Result<KernelFn, RuntimeError> {
        let name = CString::new(symbol).map_err(|_| RuntimeError::Load(format!("bad kernel symbol {symbol:?}")))?;
        // SAFETY: the manifest says `symbol` is a kernel with the `KernelFn` signature; the
        // pointer is used only while `self` keeps the library loaded.
        unsafe {
            self.library
                .get::<KernelFn>(name.as_bytes_with_nul())
                .map(|f| *f)
                .map_err(|e| RuntimeError::Load(format!("the kernels lack `{symbol}`: {e}")))
        }
    }
}

/// Runs kernels over their ranges, splitting a range across threads when its work pays for
/// them.
///
/// The workers spin on the job counter for a while after each job before they sleep: a run is
/// a burst of kernels microseconds apart, and waking a sleeping thread costs more than most of
/// them (on a futex, several microseconds). So small kernels may split, and a burst pays one
/// wake-up at its start. One run splits at a time; a second caller meanwhile (sessions on
/// several threads) runs its kernel on its own thread.
pub struct Threads {
    shared: Option<std::sync::Arc<Shared>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    threads: usize,
}

/// Bytes of work below which a chunk is not worth handing to another thread. With spinning
/// workers the MLP (examples/mlp.tg, N=64) runs 1.6x faster on two threads than on one; below
/// 128 KiB MobileNet-V2's small convolutions split and ran slower on two (0.27 against 0.22 ms
/// at 32 and 64 KiB). With rayon's sleeping workers it took 256 KiB not to lose.
const MIN_CHUNK_WORK: u64 = 128 * 1024;

/// How long a worker spins for the next job before it sleeps.
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// One split kernel call.
#[derive(Clone, Copy)]
struct Job {
    epoch: u64,
    f: KernelFn,
    args: usize,
    dims: usize,
    extent: i64,
    chunks: i64,
}

struct Shared {
    /// Bumped for every job; a worker runs chunks of the job when it sees a new value.
    epoch: std::sync::atomic::AtomicU64,
    job: std::sync::Mutex<Option<Job>>,
    /// The next chunk to take, tagged with its job's epoch in the high 32 bits (so that a late
    /// worker holding an old job claims nothing of a new one), and how many chunks are done.
    next: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicI64,
    /// Held by the caller whose job is out.
    busy: std::sync::Mutex<()>,
    sleep: std::sync::Mutex<()>,
    wake: std::sync::Condvar,
    stop: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Takes chunks of `job` until none is left.
    ///
    /// # Safety
    /// As [`Threads::run`].
    unsafe fn work(&self, job: &Job) {
        use std::sync::atomic::Ordering;
        let tag = (job.epoch & 0xFFFF_FFFF) << 32;
        loop {
            let next = self.next.load(Ordering::Acquire);
            let c = (next & 0xFFFF_FFFF) as i64;
            if next & !0xFFFF_FFFF != tag || c >= job.chunks {
                return;
            }
            if self.next.compare_exchange_weak(next, next + 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
                continue;
            }
            let (begin, end) = (job.extent * c / job.chunks, job.extent * (c + 1) / job.chunks);
            (job.f)(job.args as *const *mut u8, begin, end, job.dims as *const i64);
            self.done.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn worker(shared: std::sync::Arc<Shared>) {
    use std::sync::atomic::Ordering;
    let mut seen = 0u64;
    loop {
        let started = std::time::Instant::now();
        let epoch = loop {
            let now = shared.epoch.load(Ordering::Acquire);
            if now != seen || shared.stop.load(Ordering::Acquire) {
                break now;
            }
            if started.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let guard = shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            // Checked again under the lock the waker takes, so no wake-up is lost.
            if shared.epoch.load(Ordering::Acquire) == seen && !shared.stop.load(Ordering::Acquire) {
                drop(shared.wake.wait_timeout(guard, std::time::Duration::from_millis(100)));
            }
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        seen = epoch;
        let job = *shared.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            // SAFETY: the caller of `run` published the job and waits until every chunk is done.
            unsafe { shared.work(&job) };
        }
    }
}

impl Threads {
    /// `threads` workers in all, the calling thread one of them; 0 means every core.
    pub fn new(threads: usize) -> Result<Threads, RuntimeError> {
        use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if threads == 1 {
            return Ok(Threads { shared: None, workers: Vec::new(), threads });
        }
        let shared = std::sync::Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: std::sync::Mutex::new(None),
            next: AtomicU64::new(0),
            done: AtomicI64::new(0),
            busy: std::sync::Mutex::new(()),
            sleep: std::sync::Mutex::new(()),
            wake: std::sync::Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let workers = (1..threads)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("flint-{i}"))
                    .spawn(move || worker(shared))
                    .map_err(|e| RuntimeError::Load(format!("cannot start {threads} threads: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Threads { shared: Some(shared), workers, threads })
    }

    pub fn count(&self) -> usize {
        self.threads
    }

    /// How many chunks `[0, extent)` is split into, given the work per index.
    pub fn chunks(&self, extent: u64, work: u64) -> u64 {
        let worth = (extent.saturating_mul(work) / MIN_CHUNK_WORK).max(1);
        worth.min(extent).min(self.threads as u64).max(1)
    }

    /// Runs `f` over `[0, extent)`.
    ///
    /// # Safety
    /// `f` must be a kernel whose pointers and dims are valid for the whole range, and whose
    /// indices write disjoint memory (every kernel of an artifact does).
    pub unsafe fn run(&self, f: KernelFn, args: *const *mut u8, extent: u64, dims: *const i64, work: u64) {
        use std::sync::atomic::Ordering;
        let chunks = self.chunks(extent, work) as i64;
        let shared = match &self.shared {
            Some(shared) if chunks > 1 => shared,
            _ => return f(args, 0, extent as i64, dims),
        };
        // Another caller's job is out: this one runs alone.
        let Ok(_busy) = shared.busy.try_lock() else { return f(args, 0, extent as i64, dims) };
        let epoch = shared.epoch.load(Ordering::Acquire) + 1;
        let job = Job { epoch, f, args: args as usize, dims: dims as usize, extent: extent as i64, chunks };
        *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        shared.done.store(0, Ordering::Release);
        shared.next.store((epoch & 0xFFFF_FFFF) << 32, Ordering::Release);
        shared.epoch.store(epoch, Ordering::Release);
        {
            let _guard = shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        shared.work(&job);
        while shared.done.load(Ordering::Acquire) < chunks {
            std::hint::spin_loop();
        }
        *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.stop.store(true, std::sync::atomic::Ordering::Release);
            let _guard = shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

macro_rules! features {
    ($detect:ident: $($llvm:literal => $rust:tt),* $(,)?) => {
        /// The CPU features the runtime checks before running an artifact, by LLVM's names.
        pub const CHECKED_FEATURES: &[&str] = &[$($llvm),*];
        /// Whether this machine has the CPU feature LLVM calls `name`; `None` for a feature
        /// the runtime cannot detect (the compiler records only those it can, see
        /// [`CHECKED_FEATURES`]).
        pub fn host_has_feature(name: &str) -> Option<bool> {
            match name {
                $($llvm => Some(std::arch::$detect!($rust)),)*
                _ => None,
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
features!(is_x86_feature_detected:
    "sse3" => "sse3", "ssse3" => "ssse3", "sse4.1" => "sse4.1", "sse4.2" => "sse4.2",
    "popcnt" => "popcnt", "avx" => "avx", "avx2" => "avx2", "fma" => "fma", "f16c" => "f16c",
    "bmi" => "bmi1", "bmi2" => "bmi2", "lzcnt" => "lzcnt", "movbe" => "movbe",
    "avx512f" => "avx512f", "avx512bw" => "avx512bw", "avx512cd" => "avx512cd",
    "avx512dq" => "avx512dq", "avx512vl" => "avx512vl", "avx512vnni" => "avx512vnni",
    "avx512bf16" => "avx512bf16", "avx512fp16" => "avx512fp16", "avx512vbmi" => "avx512vbmi",
    "avx512vbmi2" => "avx512vbmi2", "avx512ifma" => "avx512ifma", "avx512bitalg" => "avx512bitalg",
    "avx512vpopcntdq" => "avx512vpopcntdq", "avxvnni" => "avxvnni", "gfni" => "gfni",
    "vaes" => "vaes", "vpclmulqdq" => "vpclmulqdq",
);

#[cfg(target_arch = "aarch64")]
features!(is_aarch64_feature_detected:
    "neon" => "neon", "fullfp16" => "fp16", "dotprod" => "dotprod", "bf16" => "bf16",
    "i8mm" => "i8mm", "sve" => "sve", "sve2" => "sve2", "lse" => "lse", "rcpc" => "rcpc",
);

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const CHECKED_FEATURES: &[&str] = &[];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn host_has_feature(_: &str) -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Adds one to `counts[i]` for every `i` of its range; `args[0]` is the counts.
    unsafe extern "C" fn count(args: *const *mut u8, begin: i64, end: i64, _dims: *const i64) {
        let counts = *args as *const AtomicU32;
        for i in begin..end {
            (*counts.add(i as usize)).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every index of every range runs exactly once, for splits of every size, from several
    /// callers at once (one splits, the others run alone), and the pool shuts down.
    #[test]
    fn every_index_runs_once() {
        let threads = Threads::new(4).expect("a pool");
        std::thread::scope(|scope| {
            for caller in 0..3u64 {
                let threads = &threads;
                scope.spawn(move || {
                    for round in 0..2000u64 {
                        let extent = 1 + (round * 7 + caller) % 97;
                        let counts: Vec<AtomicU32> = (0..extent).map(|_| AtomicU32::new(0)).collect();
                        let args = [counts.as_ptr() as *mut u8];
                        // SAFETY: `count` touches only `counts`, one slot per index.
                        unsafe { threads.run(count, args.as_ptr(), extent, std::ptr::null(), MIN_CHUNK_WORK) };
                        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "round {round}");
                    }
                });
            }
        });
        drop(threads);
    }
}
