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
pub struct Threads {
    pool: Option<rayon::ThreadPool>,
    threads: usize,
}

/// Bytes of work below which a chunk is not worth handing to another thread: waking one
/// costs microseconds, in which a core moves a few hundred kilobytes. (At 96 KiB, MobileNet-V2
/// at batch 2 ran slower on two threads than on one; at 512 KiB the GPT-2 stack lost some of
/// its split kernels.)
const MIN_CHUNK_WORK: u64 = 256 * 1024;

impl Threads {
    /// `threads` workers in all, the calling thread one of them; 0 means every core.
    pub fn new(threads: usize) -> Result<Threads, RuntimeError> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = match threads {
            1 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n - 1)
                    .thread_name(|i| format!("flint-{i}"))
                    .build()
                    .map_err(|e| RuntimeError::Load(format!("cannot start {n} threads: {e}")))?,
            ),
        };
        Ok(Threads { pool, threads })
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
        let chunks = self.chunks(extent, work);
        let (extent, chunks_i) = (extent as i64, chunks as i64);
        let bounds = |c: i64| (extent * c / chunks_i, extent * (c + 1) / chunks_i);
        match &self.pool {
            Some(pool) if chunks > 1 => {
                // Raw pointers are not Send; the addresses are, and stay valid until the scope
                // returns. The calling thread runs the first chunk itself: one wake-up fewer.
                let (args, dims) = (args as usize, dims as usize);
                pool.in_place_scope(|s| {
                    for c in 1..chunks_i {
                        s.spawn(move |_| {
                            let (begin, end) = bounds(c);
                            f(args as *const *mut u8, begin, end, dims as *const i64);
                        });
                    }
                    let (begin, end) = bounds(0);
                    f(args as *const *mut u8, begin, end, dims as *const i64);
                });
            }
            _ => f(args, 0, extent, dims),
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
