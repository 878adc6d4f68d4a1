//! Models and sessions: the Rust API.
//!
//! A [`Model`] is a loaded artifact: its kernels, its JIT-compiled glue and its bound
//! weights. It is `Send + Sync`; each [`Session`] owns an arena (the plan's size) and runs
//! the model on named inputs.
//!
//! ```no_run
//! use flint_runtime::{Model, TensorRef};
//!
//! let mut model = Model::load("mlp.tgx")?;
//! model.bind_weights("mlp.safetensors")?;
//! let mut session = model.session();
//! let x = vec![0.5f32; 2 * 784];
//! let outputs = session.run(&[("x", TensorRef::f32(&[2, 784], &x))])?;
//! for (name, tensor) in &outputs {
//!     println!("{name}: {:?} {:?}", tensor.shape, &tensor.to_f32().unwrap()[..4]);
//! }
//! # Ok::<(), flint_runtime::RuntimeError>(())
//! ```

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use crate::artifact::{self, DType, Manifest, RegionKind, SectionKind, Storage};
use crate::cpu::{KernelFn, Library, Threads};
use crate::cuda::{CudaKernels, CudaSession, LaunchTimes, MemoryPolicy, Slots};
use crate::device::CudaDevice;
use crate::glue::{self, Check, Glue};
use crate::RuntimeError;

/// How a model is loaded.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Threads a kernel's range is split across; 0 (the default) means every core.
    pub threads: usize,
    /// Where the kernels run.
    pub device: DeviceChoice,
    /// On a CUDA device: how it reaches host memory (default: from the device's attributes).
    pub memory: Option<MemoryPolicy>,
}

/// Where a model's kernels run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The host CPU, on [`LoadOptions::threads`] threads.
    #[default]
    Cpu,
    /// The CUDA device of this ordinal, with the artifact's PTX.
    Cuda(usize),
}

impl DeviceChoice {
    /// `cpu`, `cuda` (ordinal 0) or `cuda:N`.
    pub fn parse(name: &str) -> Option<DeviceChoice> {
        match name {
            "cpu" => Some(DeviceChoice::Cpu),
            "cuda" => Some(DeviceChoice::Cuda(0)),
            _ => name.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceChoice::Cuda),
        }
    }
}

/// A tensor the caller lends to a run: little-endian elements in row-major order.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

impl<'a> TensorRef<'a> {
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a [u8]) -> TensorRef<'a> {
        TensorRef { dtype, shape, data }
    }

    pub fn f32(shape: &'a [usize], data: &'a [f32]) -> TensorRef<'a> {
        // SAFETY: any initialised f32 slice is a valid byte slice of four times the length.
        let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) };
        TensorRef { dtype: DType::F32, shape, data: bytes }
    }
}

/// A tensor the runtime returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Little-endian elements in row-major order.
    pub data: Vec<u8>,
}

impl Tensor {
    /// The elements, when the dtype is `f32`.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.dtype == DType::F32)
            .then(|| self.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef { dtype: self.dtype, shape: &self.shape, data: &self.data }
    }
}

/// A weight's bytes and shape; `owner` keeps the memory they point into alive.
struct Weight {
    address: usize,
    shape: Vec<usize>,
    _owner: Arc<dyn Any + Send + Sync>,
}

/// 64-byte blocks: the arena and copied artifacts are aligned for any vector load.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// An aligned, zeroed byte buffer.
struct Aligned(Vec<Block>, usize);

impl Aligned {
    fn zeroed(len: usize) -> Aligned {
        Aligned(vec![Block([0; 64]); len.div_ceil(64)], len)
    }

    fn copy_of(bytes: &[u8]) -> Aligned {
        let mut a = Aligned::zeroed(bytes.len());
        a.bytes_mut().copy_from_slice(bytes);
        a
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the blocks are plain bytes, at least `self.1` of them.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.1) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.1) }
    }
}

enum ArtifactBytes {
    Mapped(memmap2::Mmap),
    Copied(Aligned),
}

impl ArtifactBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            ArtifactBytes::Mapped(m) => m,
            ArtifactBytes::Copied(a) => a.bytes(),
        }
    }
}

/// One kernel, ready to run.
struct LoadedKernel {
    function: KernelFn,
    work: u64,
}

/// A loaded artifact.
pub struct Model {
    manifest: Manifest,
    kernels: Vec<LoadedKernel>,
    glue: Glue,
    checks: Vec<Check>,
    /// One entry per region; only params are ever bound.
    weights: Vec<Option<Weight>>,
    threads: Threads,
    /// The kernels on a CUDA device, when loaded for one.
    cuda: Option<CudaKernels>,
    // Dropped after the kernels and glue that point into them.
    _library: Library,
    bytes: Arc<ArtifactBytes>,
}

// SAFETY: `Weight::address` points into memory its owner keeps alive and that nothing writes
// (kernels only read params); kernel and glue pointers are immutable code.
unsafe impl Send for Model {}
// SAFETY: as above; running takes `&self` and touches only the session's memory.
unsafe impl Sync for Model {}

impl Model {
    /// Loads an artifact file (mapped, not read).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, RuntimeError> {
        Model::load_with(path, &LoadOptions::default())
    }

    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Model, RuntimeError> {
        let path = path.as_ref();
        let io = |source| RuntimeError::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file changed while mapped is the caller's
        // responsibility, as with any mapped file.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Model::from_artifact(ArtifactBytes::Mapped(map), options)
    }

    /// Loads an artifact from memory (the bytes are copied once, aligned).
    pub fn from_bytes(bytes: &[u8], options: &LoadOptions) -> Result<Model, RuntimeError> {
        Model::from_artifact(ArtifactBytes::Copied(Aligned::copy_of(bytes)), options)
    }

    fn from_artifact(bytes: ArtifactBytes, options: &LoadOptions) -> Result<Model, RuntimeError> {
        let parsed = artifact::parse(bytes.bytes())?;
        artifact::check_host(&parsed.manifest.target)?;
        let section = |kind: SectionKind| {
            parsed.section(kind).ok_or_else(|| {
                RuntimeError::Artifact(artifact::ArtifactError::Malformed(format!("{} is missing", kind.name())))
            })
        };
        let object = section(SectionKind::CpuObject)?;
        let clif = section(SectionKind::Glue)?;
        let embedded = parsed.section(SectionKind::Weights);
        let ptx_ranges: Vec<(u32, std::ops::Range<usize>)> = parsed
            .manifest
            .sections
            .iter()
            .zip(&parsed.sections)
            .filter_map(|(s, range)| match s.kind {
                SectionKind::Ptx(sm) => Some((sm, range.clone())),
                _ => None,
            })
            .collect();
        let manifest = parsed.manifest;
        let library = Library::from_bytes(&manifest.name, &bytes.bytes()[object])?;
        let kernels = manifest
            .kernels
            .iter()
            .map(|k| Ok(LoadedKernel { function: library.kernel(&k.symbol)?, work: k.work }))
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        let clif = std::str::from_utf8(&bytes.bytes()[clif])
            .map_err(|_| RuntimeError::Load("the host glue is not UTF-8".into()))?;
        let glue = Glue::compile(clif, run_kernel)?;
        let checks = glue::checks(&manifest);
        let weights = manifest.regions.iter().map(|_| None).collect();
        let cuda = match options.device {
            DeviceChoice::Cpu => None,
            DeviceChoice::Cuda(ordinal) => {
                let device = CudaDevice::new(ordinal)?;
                let ptx = ptx_ranges
                    .iter()
                    .map(|(sm, range)| {
                        let text = std::str::from_utf8(&bytes.bytes()[range.clone()])
                            .map_err(|_| RuntimeError::Load(format!("the PTX for sm_{sm} is not UTF-8")))?;
                        Ok((*sm, text))
                    })
                    .collect::<Result<Vec<_>, RuntimeError>>()?;
                Some(CudaKernels::load(device, &manifest, &ptx, options.memory)?)
            }
        };
        let mut model = Model {
            manifest,
            kernels,
            glue,
            checks,
            weights,
            threads: Threads::new(options.threads)?,
            cuda,
            _library: library,
            bytes: Arc::new(bytes),
        };
        if let Some(range) = embedded {
            let all = model.bytes.clone();
            let owner: Arc<dyn Any + Send + Sync> = all.clone();
            model.bind_safetensors(&all.bytes()[range], owner).map_err(|e| e.in_source("the embedded weights"))?;
        }
        Ok(model)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Threads a kernel may be split across.
    pub fn threads(&self) -> usize {
        self.threads.count()
    }

    /// The CUDA device the kernels run on, the SM of the PTX loaded and the memory policy;
    /// `None` on the CPU.
    pub fn cuda(&self) -> Option<(&CudaDevice, u32, MemoryPolicy)> {
        self.cuda.as_ref().map(|k| (k.device(), k.ptx_sm, k.policy))
    }

    /// Binds every param found in a safetensors file, mapped and used in place. Tensors the
    /// model does not name are ignored; params the file lacks stay as they were.
    pub fn bind_weights(&mut self, path: impl AsRef<Path>) -> Result<(), RuntimeError> {
        let path = path.as_ref();
        let io = |source| RuntimeError::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: read-only map, as in `load_with`.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?);
        let owner: Arc<dyn Any + Send + Sync> = map.clone();
        self.bind_safetensors(&map, owner).map_err(|e| e.in_source(&path.display().to_string()))
    }

    fn bind_safetensors(&mut self, bytes: &[u8], owner: Arc<dyn Any + Send + Sync>) -> Result<(), RuntimeError> {
        let file = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| RuntimeError::Weights { file: String::new(), message: e.to_string() })?;
        let params: Vec<(usize, String)> =
            self.manifest.regions_of(RegionKind::Param).map(|(i, r)| (i, r.name.clone())).collect();
        for (region, name) in params {
            let Ok(view) = file.tensor(&name) else { continue };
            let dtype = safetensors_dtype(view.dtype()).ok_or_else(|| RuntimeError::WeightDType {
                name: name.clone(),
                expected: self.param_dtype(region),
                found: format!("{:?}", view.dtype()),
            })?;
            self.check_weight(region, dtype, view.shape(), view.data().len())?;
            self.weights[region] = Some(Weight {
                address: view.data().as_ptr() as usize,
                shape: view.shape().to_vec(),
                _owner: owner.clone(),
            });
        }
        Ok(())
    }

    /// Binds one param to a copy of `tensor`.
    pub fn bind_weight(&mut self, name: &str, tensor: TensorRef) -> Result<(), RuntimeError> {
        let Some((region, _)) = self.manifest.regions_of(RegionKind::Param).find(|(_, r)| r.name == name) else {
            return Err(RuntimeError::UnknownName {
                what: "param",
                name: name.into(),
                known: self.names(RegionKind::Param),
            });
        };
        self.check_weight(region, tensor.dtype, tensor.shape, tensor.data.len())?;
        let copy = Arc::new(Aligned::copy_of(tensor.data));
        let address = copy.bytes().as_ptr() as usize;
        let weight = Weight { address, shape: tensor.shape.to_vec(), _owner: copy };
        self.weights[region] = Some(weight);
        Ok(())
    }

    fn param_dtype(&self, region: usize) -> DType {
        self.manifest.region_value(&self.manifest.regions[region]).dtype
    }

    /// A weight's dtype, its rank, its static axes and its length; symbolic axes are checked
    /// at each run.
    fn check_weight(&self, region: usize, dtype: DType, shape: &[usize], len: usize) -> Result<(), RuntimeError> {
        let r = &self.manifest.regions[region];
        let value = self.manifest.region_value(r);
        if dtype != value.dtype {
            return Err(RuntimeError::WeightDType {
                name: r.name.clone(),
                expected: value.dtype,
                found: dtype.name().into(),
            });
        }
        let fits = shape.len() == value.shape.len()
            && value.shape.iter().zip(shape).all(|(d, &n)| !d.syms.is_empty() || d.coeff == n as u64);
        if !fits || artifact::byte_len(dtype, shape) != Some(len) {
            return Err(RuntimeError::WeightShape {
                name: r.name.clone(),
                expected: self.shape_text(&value.shape),
                found: shape.to_vec(),
            });
        }
        Ok(())
    }

    fn shape_text(&self, shape: &[artifact::Dim]) -> String {
        let dims: Vec<String> = shape.iter().map(|d| d.display(&self.manifest.symbols).to_string()).collect();
        format!("[{}]", dims.join(", "))
    }

    fn names(&self, kind: RegionKind) -> String {
        listed(self.manifest.regions_of(kind).map(|(_, r)| r.name.as_str()))
    }

    /// Whether region `region` (a param) has a weight bound to it.
    pub fn is_bound(&self, region: usize) -> bool {
        self.weights.get(region).is_some_and(Option::is_some)
    }

    /// A new session with its own arena.
    pub fn session(&self) -> Session<'_> {
        Session { model: self, arena: Aligned::zeroed(self.manifest.arena_bytes as usize), profile: None, cuda: None }
    }

    /// The value of every symbol for a run: explicit ones, then those read off the inputs.
    /// Errors name a symbol no input fixes; bounds and shapes are the glue's to check.
    fn resolve_dims(&self, inputs: &[(usize, TensorRef)], explicit: &[(&str, u64)]) -> Result<Vec<u64>, RuntimeError> {
        let symbols = &self.manifest.symbols;
        let mut dims: Vec<Option<u64>> = vec![None; symbols.len()];
        for &(name, value) in explicit {
            let Some(s) = symbols.iter().position(|s| s.name == name) else {
                let known = listed(symbols.iter().map(|s| s.name.as_str()));
                return Err(RuntimeError::UnknownName { what: "symbol", name: name.into(), known });
            };
            dims[s] = Some(value);
        }
        for (region, tensor) in inputs {
            let value = self.manifest.region_value(&self.manifest.regions[*region]);
            for (dim, &len) in value.shape.iter().zip(tensor.shape) {
                if let Some(s) = dim.single() {
                    dims[s as usize].get_or_insert(len as u64 / dim.coeff.max(1));
                }
            }
        }
        dims.iter()
            .zip(symbols)
            .map(|(d, s)| d.ok_or_else(|| RuntimeError::UnboundDim { name: s.name.clone() }))
            .collect()
    }

    fn check_error(&self, check: Check, dims: &[u64], shapes: &[(usize, TensorRef)]) -> RuntimeError {
        match check {
            Check::Bound(s) => {
                let symbol = &self.manifest.symbols[s];
                RuntimeError::DimOutOfRange { name: symbol.name.clone(), value: dims[s], bound: symbol.bound }
            }
            Check::Axis { region, axis } => {
                let r = &self.manifest.regions[region];
                let shape =
                    shapes.iter().find(|(i, _)| *i == region).map(|(_, t)| t.shape.to_vec()).unwrap_or_default();
                let value = self.manifest.region_value(r);
                let used = |s: usize| value.shape.iter().any(|d| d.syms.contains(&(s as u32)));
                let dims_text: Vec<String> = (0..dims.len())
                    .filter(|&s| used(s))
                    .map(|s| format!("{}={}", self.manifest.symbols[s].name, dims[s]))
                    .collect();
                RuntimeError::InputShape {
                    name: r.name.clone(),
                    axis,
                    expected: self.shape_text(&value.shape),
                    found: shape,
                    dims: dims_text.join(", "),
                }
            }
        }
    }
}

/// The glue's callback. Kernel `-1` means the checks passed: `pointers` is then the bases
/// array, to bind; otherwise it runs kernel `kernel` over `[0, extent)`.
extern "C" fn run_kernel(ctx: *mut u8, kernel: i64, pointers: *const *mut u8, extent: i64, dims: *const i64) -> i32 {
    // SAFETY: `Session::execute` passes its `RunCtx` as `ctx`, alive for the whole call.
    let ctx = unsafe { &mut *ctx.cast::<RunCtx>() };
    let model = ctx.model;
    let run = std::panic::AssertUnwindSafe(|| {
        if kernel == -1 {
            let regions = model.manifest.regions.len() + 1;
            // SAFETY: for kernel -1 the glue passes its `bases` argument, one pointer per region
            // and the arena's, which `execute` owns mutably.
            let bases = unsafe { std::slice::from_raw_parts_mut(pointers.cast_mut(), regions) };
            return match (ctx.bind)(bases) {
                Ok(()) => 0,
                Err(e) => {
                    ctx.failure = Some(e);
                    -3
                }
            };
        }
        let Some(index) = usize::try_from(kernel).ok().filter(|&k| k < model.kernels.len()) else { return -1 };
        let k = &model.kernels[index];
        let start = ctx.profile.is_some().then(std::time::Instant::now);
        if let (Some((kernels, slots)), true) = (ctx.cuda, extent > 0) {
            let count = model.manifest.kernels[index].args.len();
            let before = match ctx.profile.is_some().then(|| ctx.launches.mark()).transpose() {
                Ok(before) => before,
                Err(e) => {
                    ctx.failure = Some(e);
                    return -3;
                }
            };
            // SAFETY: the glue passes the kernel's `count` pointers (device-accessible: device
            // buffers, managed memory, or host memory the device reads in place) and the dims.
            let launched = unsafe {
                let pointers = std::slice::from_raw_parts(pointers.cast::<u64>(), count);
                let dims = std::slice::from_raw_parts(dims, model.manifest.symbols.len());
                kernels.launch(index, pointers, dims, extent, slots.of(index))
            };
            let timed = before.map(|b| ctx.launches.mark().map(|after| ctx.launches.push(index, b, after)));
            if let Err(e) = launched.and(timed.transpose()) {
                ctx.failure = Some(e);
                return -3;
            }
            return 0;
        } else if extent > 0 {
            // SAFETY: the glue passes the kernel's pointers, computed from the checked plan,
            // and the checked dims.
            unsafe { model.threads.run(k.function, pointers, extent as u64, dims, k.work) }
        }
        if let (Some(profile), Some(start)) = (ctx.profile.as_deref_mut(), start) {
            profile[index] += start.elapsed();
        }
        0
    });
    // A panic must not unwind into JIT code.
    std::panic::catch_unwind(run).unwrap_or(-2)
}

/// Where a run's outputs go.
enum Outputs<'o> {
    Owned(&'o mut Vec<Vec<u8>>),
    /// Name, address and length of each buffer the caller gave.
    Borrowed(Vec<(&'o str, *mut u8, usize)>),
}

/// A model's working memory: runs one at a time; a model may have many.
pub struct Session<'m> {
    model: &'m Model,
    arena: Aligned,
    /// Time spent in each kernel over the runs since profiling was turned on.
    profile: Option<Vec<std::time::Duration>>,
    /// Device memory, on a CUDA device (made at the first run).
    cuda: Option<CudaSession>,
}

impl Session<'_> {
    /// Starts (or restarts) timing every kernel of the following runs; [`Session::profile`]
    /// reads the totals, one per kernel of the manifest.
    pub fn start_profiling(&mut self) {
        self.profile = Some(vec![std::time::Duration::ZERO; self.model.kernels.len()]);
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model {
        self.model
    }

    /// Bytes the last run copied between host and device (0 on the CPU and under the unified
    /// memory policy).
    pub fn copied_bytes(&self) -> u64 {
        self.cuda.as_ref().map_or(0, |c| c.copied_bytes)
    }

    /// Time spent in each kernel since [`Session::start_profiling`].
    pub fn profile(&self) -> Option<&[std::time::Duration]> {
        self.profile.as_deref()
    }

    /// Runs the model; every symbol must be fixed by an input's shape.
    pub fn run(&mut self, inputs: &[(&str, TensorRef)]) -> Result<Vec<(String, Tensor)>, RuntimeError> {
        self.run_with_dims(inputs, &[])
    }

    /// Runs the model with some symbols given explicitly; returns the outputs in signature
    /// order.
    pub fn run_with_dims(
        &mut self,
        inputs: &[(&str, TensorRef)],
        dims: &[(&str, u64)],
    ) -> Result<Vec<(String, Tensor)>, RuntimeError> {
        let mut buffers = Vec::new();
        let dims = self.execute(inputs, dims, Outputs::Owned(&mut buffers))?;
        let m = &self.model.manifest;
        Ok(m.regions_of(RegionKind::Output)
            .zip(buffers)
            .map(|((_, r), data)| {
                let value = m.region_value(r);
                let shape = value.shape.iter().map(|d| d.eval(&dims) as usize).collect();
                (r.name.clone(), Tensor { dtype: value.dtype, shape, data })
            })
            .collect())
    }

    /// Runs the model into buffers the caller owns, one per output, each exactly the output's
    /// size at this run's dims.
    pub fn run_into(
        &mut self,
        inputs: &[(&str, TensorRef)],
        dims: &[(&str, u64)],
        outputs: &mut [(&str, &mut [u8])],
    ) -> Result<(), RuntimeError> {
        let given = outputs.iter_mut().map(|(name, b)| (*name, b.as_mut_ptr(), b.len())).collect();
        self.execute(inputs, dims, Outputs::Borrowed(given)).map(drop)
    }

    fn execute(
        &mut self,
        inputs: &[(&str, TensorRef)],
        explicit: &[(&str, u64)],
        outputs: Outputs,
    ) -> Result<Vec<u64>, RuntimeError> {
        let model = self.model;
        let m = &model.manifest;
        let given = self.match_inputs(inputs)?;
        let dims = model.resolve_dims(&given, explicit)?;
        let dims_i64: Vec<i64> = dims.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
        let shapes: Vec<i64> =
            given.iter().flat_map(|(_, t)| t.shape.iter().map(|&n| i64::try_from(n).unwrap_or(i64::MAX))).collect();
        let mut bases: Vec<*mut u8> = vec![std::ptr::null_mut(); m.regions.len() + 1];
        for (region, tensor) in &given {
            bases[*region] = tensor.data.as_ptr().cast_mut();
        }
        bases[m.regions.len()] = self.arena.bytes_mut().as_mut_ptr();
        if let Some(kernels) = &model.cuda {
            kernels
                .device()
                .context()
                .bind_to_thread()
                .map_err(|source| RuntimeError::Driver { call: "cuCtxSetCurrent", source })?;
            if self.cuda.is_none() {
                let bounds: Vec<u64> = m.symbols.iter().map(|s| s.bound).collect();
                let bytes: Vec<usize> = m.regions.iter().map(|r| m.region_value(r).bytes(&bounds) as usize).collect();
                self.cuda = Some(CudaSession::new(kernels, m, &bytes)?);
            }
        }
        let policy = model.cuda.as_ref().map(|k| k.policy);
        let (discrete, mapped) = (policy == Some(MemoryPolicy::Discrete), policy == Some(MemoryPolicy::Host));
        let slots = self.cuda.as_ref().map(|c| c.slots);
        if let Some(device) = &mut self.cuda {
            device.copied_bytes = 0;
            bases[m.regions.len()] = device.arena as *mut u8;
        }
        let mut device = self.cuda.as_mut().filter(|_| discrete || mapped);
        // Host policy: each region's host address, before `bind` maps it for the device.
        let mut host_bases: Vec<*mut u8> = Vec::new();
        let output_regions: Vec<usize> = m.regions_of(RegionKind::Output).map(|(i, _)| i).collect();
        let mut sizes: Vec<usize> = Vec::new();
        let mut targets: Vec<*mut u8> = Vec::new();
        let mut outputs = outputs;
        // Sizes mean something only once the glue has checked the dims: it calls this then.
        let mut bind = |bases: &mut [*mut u8]| -> Result<(), RuntimeError> {
            self::bind_params(model, &dims, bases)?;
            sizes = output_regions.iter().map(|&i| m.region_value(&m.regions[i]).bytes(&dims) as usize).collect();
            targets = match &mut outputs {
                Outputs::Owned(buffers) => {
                    **buffers = sizes.iter().map(|&n| vec![0u8; n]).collect();
                    buffers.iter_mut().map(|b| b.as_mut_ptr()).collect()
                }
                Outputs::Borrowed(given) => match_outputs(model, given, &output_regions, &sizes)?,
            };
            for (&region, &target) in output_regions.iter().zip(&targets) {
                bases[region] = target;
            }
            match device.as_deref_mut() {
                Some(device) if discrete => to_device(model, device, &dims, &given, bases)?,
                Some(device) => {
                    host_bases = bases.to_vec();
                    for (region, r) in m.regions.iter().enumerate() {
                        let bytes = m.region_value(r).bytes(&dims) as usize;
                        bases[region] = device.map_host(bases[region], bytes)? as *mut u8;
                    }
                }
                None => {}
            }
            Ok(())
        };
        let cuda = model.cuda.as_ref().zip(slots);
        let mut ctx = RunCtx {
            model,
            bind: &mut bind,
            failure: None,
            profile: self.profile.as_deref_mut(),
            launches: LaunchTimes::default(),
            cuda,
        };
        // SAFETY: inputs are bound to memory of their checked sizes, and the arena is the
        // plan's size at the bounds; the glue checks the dims and the input shapes, then has
        // `bind` fill in the params and outputs before it runs the first kernel.
        let status = unsafe { model.glue.call((&mut ctx as *mut RunCtx).cast(), &dims_i64, &mut bases, &shapes) };
        let failure = ctx.failure.take();
        // Host policy: what the run mapped stays pinned until every launch has finished.
        let synced = model.cuda.as_ref().map(|k| k.synchronize()).transpose();
        let timed = match ctx.profile.as_deref_mut() {
            Some(profile) => ctx.launches.collect(profile),
            None => Ok(()),
        };
        if let Some(device) = self.cuda.as_mut().filter(|_| mapped) {
            device.unmap();
        }
        if status != 0 {
            return Err(failure.unwrap_or_else(|| self.status_error(status, &dims, &given)));
        }
        synced?;
        timed?;
        if let Some(device) = self.cuda.as_mut().filter(|_| mapped) {
            // Outputs were written in place; one kept in the arena (device memory) comes back,
            // one that is another region is copied from its host memory.
            for ((&region, &target), &size) in output_regions.iter().zip(&targets).zip(&sizes) {
                // SAFETY: `target` is the output's buffer of `size` bytes, made or checked by
                // `bind`; a source region's host memory holds the same `size` bytes.
                unsafe {
                    match m.region_value(&m.regions[region]).storage {
                        Storage::Region(r) if r as usize == region => {}
                        Storage::Region(r) => std::ptr::copy(host_bases[r as usize], target, size),
                        Storage::Arena(offset) => {
                            device.download(std::slice::from_raw_parts_mut(target, size), device.arena + offset)?
                        }
                    }
                }
            }
            return Ok(dims);
        }
        if let Some(device) = self.cuda.as_mut().filter(|_| discrete) {
            // Every region and the arena are device memory: each output comes back from where
            // its value is.
            for ((&region, &target), &size) in output_regions.iter().zip(&targets).zip(&sizes) {
                let source = match m.region_value(&m.regions[region]).storage {
                    Storage::Region(r) => bases[r as usize] as u64,
                    Storage::Arena(offset) => device.arena + offset,
                };
                // SAFETY: `target` is the output's buffer of `size` bytes, made or checked by `bind`.
                device.download(unsafe { std::slice::from_raw_parts_mut(target, size) }, source)?;
            }
            return Ok(dims);
        }
        // An output that is an input, a param or another output was not written by a kernel.
        for ((&region, &target), &size) in output_regions.iter().zip(&targets).zip(&sizes) {
            let value = m.region_value(&m.regions[region]);
            let source = match value.storage {
                Storage::Region(r) if r as usize == region => continue,
                Storage::Region(r) => bases[r as usize],
                Storage::Arena(offset) => self.arena.bytes_mut()[offset as usize..].as_mut_ptr(),
            };
            // SAFETY: both are `size` bytes of the same value, in distinct memory.
            unsafe { std::ptr::copy(source, target, size) };
        }
        Ok(dims)
    }

    fn match_inputs<'t>(&self, inputs: &[(&str, TensorRef<'t>)]) -> Result<Vec<(usize, TensorRef<'t>)>, RuntimeError> {
        let m = &self.model.manifest;
        let mut given: Vec<(usize, TensorRef)> = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let Some((region, r)) = m.regions_of(RegionKind::Input).find(|(_, r)| r.name == *name) else {
                return Err(RuntimeError::UnknownName {
                    what: "input",
                    name: name.to_string(),
                    known: self.model.names(RegionKind::Input),
                });
            };
            if given.iter().any(|(g, _)| *g == region) {
                return Err(RuntimeError::DuplicateInput { name: name.to_string() });
            }
            let value = m.region_value(r);
            if tensor.dtype != value.dtype {
                return Err(RuntimeError::InputDType {
                    name: name.to_string(),
                    expected: value.dtype,
                    found: tensor.dtype,
                });
            }
            if tensor.shape.len() != value.shape.len() {
                return Err(RuntimeError::InputRank {
                    name: name.to_string(),
                    expected: self.model.shape_text(&value.shape),
                    found: tensor.shape.to_vec(),
                });
            }
            if artifact::byte_len(tensor.dtype, tensor.shape) != Some(tensor.data.len()) {
                return Err(RuntimeError::InputData {
                    name: name.to_string(),
                    shape: tensor.shape.to_vec(),
                    bytes: tensor.data.len(),
                });
            }
            given.push((region, *tensor));
        }
        let mut ordered = Vec::with_capacity(given.len());
        for (region, r) in m.regions_of(RegionKind::Input) {
            match given.iter().find(|(g, _)| *g == region) {
                Some(&found) => ordered.push(found),
                None => return Err(RuntimeError::MissingInput { name: r.name.clone() }),
            }
        }
        Ok(ordered)
    }

    fn status_error(&self, status: i32, dims: &[u64], given: &[(usize, TensorRef)]) -> RuntimeError {
        match usize::try_from(status).ok().and_then(|s| self.model.checks.get(s.wrapping_sub(1))) {
            Some(&check) => self.model.check_error(check, dims, given),
            None => RuntimeError::Kernel { status },
        }
    }
}

/// What the glue's callback reaches through its `ctx`.
struct RunCtx<'a> {
    model: &'a Model,
    /// On a CUDA device: the kernels and the session's argument slots.
    cuda: Option<(&'a CudaKernels, Slots)>,
    /// Binds params and outputs once the glue's checks have passed.
    bind: &'a mut dyn FnMut(&mut [*mut u8]) -> Result<(), RuntimeError>,
    /// Time per kernel, when the session profiles.
    profile: Option<&'a mut [std::time::Duration]>,
    /// On a CUDA device while profiling: each launch's events, read once the run finishes.
    launches: LaunchTimes,
    failure: Option<RuntimeError>,
}

/// Points each param's base at its weight, checking a symbolic shape at this run's dims
/// (binding checked the static ones).
fn bind_params(model: &Model, dims: &[u64], bases: &mut [*mut u8]) -> Result<(), RuntimeError> {
    let m = &model.manifest;
    for (region, r) in m.regions_of(RegionKind::Param) {
        let value = m.region_value(r);
        let Some(w) = &model.weights[region] else {
            return Err(RuntimeError::MissingWeight { name: r.name.clone() });
        };
        if value.shape.iter().any(|d| !d.syms.is_empty()) {
            let expected: Vec<usize> = value.shape.iter().map(|d| d.eval(dims) as usize).collect();
            if w.shape != expected {
                return Err(RuntimeError::WeightShape {
                    name: r.name.clone(),
                    expected: format!("{expected:?}"),
                    found: w.shape.clone(),
                });
            }
        }
        bases[region] = w.address as *mut u8;
    }
    Ok(())
}

/// Discrete memory: each input copied to its region's device buffer, each param's weight
/// uploaded once per session (a symbolic-shaped one at every run), outputs pointed at their
/// device buffers; `bases` then holds only device addresses.
fn to_device(
    model: &Model,
    device: &mut CudaSession,
    dims: &[u64],
    given: &[(usize, TensorRef)],
    bases: &mut [*mut u8],
) -> Result<(), RuntimeError> {
    let m = &model.manifest;
    for (region, r) in m.regions.iter().enumerate() {
        let (buffer, capacity) = device.regions[region];
        let value = m.region_value(r);
        match r.kind {
            RegionKind::Input => {
                if let Some((_, tensor)) = given.iter().find(|(g, _)| *g == region) {
                    device.upload(buffer, &tensor.data[..tensor.data.len().min(capacity)])?;
                }
            }
            RegionKind::Param if !device.uploaded[region] || value.shape.iter().any(|d| !d.syms.is_empty()) => {
                let len = (value.bytes(dims) as usize).min(capacity);
                // SAFETY: `bind_params` pointed the base at the bound weight, checked to hold
                // the param's bytes at these dims.
                let weight = unsafe { std::slice::from_raw_parts(bases[region], len) };
                device.upload(buffer, weight)?;
                device.uploaded[region] = true;
            }
            _ => {}
        }
        bases[region] = buffer as *mut u8;
    }
    Ok(())
}

fn match_outputs(
    model: &Model,
    given: &[(&str, *mut u8, usize)],
    regions: &[usize],
    sizes: &[usize],
) -> Result<Vec<*mut u8>, RuntimeError> {
    let m = &model.manifest;
    let mut targets = Vec::with_capacity(regions.len());
    for (&region, &size) in regions.iter().zip(sizes) {
        let name = &m.regions[region].name;
        let Some(&(_, address, len)) = given.iter().find(|(n, _, _)| n == name) else {
            return Err(RuntimeError::MissingOutput { name: name.clone() });
        };
        if len != size {
            return Err(RuntimeError::OutputSize { name: name.clone(), expected: size, found: len });
        }
        targets.push(address);
    }
    if let Some((name, _, _)) =
        given.iter().find(|(n, _, _)| !m.regions_of(RegionKind::Output).any(|(_, r)| r.name == *n))
    {
        return Err(RuntimeError::UnknownName {
            what: "output",
            name: name.to_string(),
            known: model.names(RegionKind::Output),
        });
    }
    Ok(targets)
}

/// `a, b, c`, or `none`.
fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn safetensors_dtype(d: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match d {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::I32 => DType::I32,
        S::I64 => DType::I64,
        S::BOOL => DType::Bool,
        _ => return None,
    })
}
