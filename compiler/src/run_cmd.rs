//! `flint run` and `flint bench`: a graph through the compiled artifact and the runtime, with
//! `flint eval`'s options and output, so the two can be compared on the same files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flint_compiler::artifact::{self, symbols, tensor_type};
use flint_compiler::interp::{DimValues, Tensor};
use flint_compiler::ir::{Shape, SymId, TensorType};
#[cfg(feature = "mlir")]
use flint_compiler::pipeline::{self, CompileOptions, Target};
use flint_compiler::{npy, random};

use crate::eval;
use flint_runtime::artifact::{Manifest, RegionKind};
use flint_runtime::{DeviceChoice, LoadOptions, MemoryPolicy, Model, TensorRef};

/// The options `run` and `bench` share with `eval`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A .tg or .onnx file (compiled in memory first), or a .tgx artifact.
    pub file: PathBuf,
    /// Weights for the params, as a safetensors file (default: the artifact's embedded
    /// weights, an ONNX model's own, or seeded random ones).
    #[arg(long, value_name = "FILE.safetensors")]
    pub weights: Option<PathBuf>,
    /// An input from a .npy file; repeat for several inputs.
    #[arg(long = "input", value_name = "NAME=PATH.npy")]
    pub inputs: Vec<String>,
    /// The value of a symbolic dim; repeat for several.
    #[arg(long = "dim", value_name = "SYMBOL=VALUE")]
    pub dims: Vec<String>,
    /// Seed for the random inputs and weights (the same as `flint eval`'s).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads to split kernels across (default: every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write every output to DIR/<name>.npy.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With a .tg or .onnx file: the CPU to compile for (`native`, `generic` or a name).
    #[arg(long, default_value = "native", value_name = "CPU")]
    pub cpu: String,
    /// Where to run: `cpu`, `cuda` or `cuda:N` (the CUDA device of ordinal N, with the
    /// artifact's PTX), or `auto`: the first CUDA device when the artifact has PTX and a
    /// CUDA driver and device are present, the CPU otherwise.
    #[arg(long, default_value = "auto", value_name = "auto|cpu|cuda[:N]")]
    pub device: String,
    /// On a CUDA device: `unified` (the GPU reads and writes host memory in place: GB10,
    /// Grace Hopper, HMM), `discrete` (device memory, inputs and outputs copied, weights once)
    /// or `host` (host memory pinned and mapped for the device during each run, read over the
    /// bus; any device). Default: unified where the device reads host memory in place,
    /// discrete otherwise.
    #[arg(long, value_name = "unified|discrete|host")]
    pub memory: Option<String>,
}

/// `--device`, resolved against the artifact (whether it has PTX) and the machine.
/// `has_ptx` is asked only for `auto` on a machine with a CUDA device.
fn device_choice(arg: &str, has_ptx: impl FnOnce() -> bool) -> Result<DeviceChoice, String> {
    match arg {
        "auto" => Ok(match flint_runtime::cuda_device_count() {
            Ok(n) if n > 0 && has_ptx() => DeviceChoice::Cuda(0),
            _ => DeviceChoice::Cpu,
        }),
        _ => DeviceChoice::parse(arg).ok_or_else(|| format!("error: --device {arg}: give auto, cpu, cuda or cuda:N")),
    }
}

fn memory_policy(arg: Option<&str>) -> Result<Option<MemoryPolicy>, String> {
    arg.map(|a| MemoryPolicy::parse(a).ok_or_else(|| format!("error: --memory {a}: give unified, discrete or host")))
        .transpose()
}

/// `cpu` or `cuda:N (sm_XX PTX, POLICY memory)`, for the bench line.
fn device_text(model: &Model) -> String {
    match model.cuda() {
        None => "cpu".into(),
        Some((device, sm, policy)) => format!("cuda:{}/sm_{sm}/{}", device.ordinal(), policy.name()),
    }
}

/// A loaded model with its inputs chosen.
struct Prepared {
    model: Model,
    dims: DimValues,
    inputs: Vec<(String, Tensor, Vec<u8>)>,
    load_time: Duration,
}

pub fn run(args: &RunArgs) -> Result<(), String> {
    let p = prepare(args)?;
    let mut session = p.model.session();
    let outputs = session.run_with_dims(&p.input_refs(), &p.dim_list()).map_err(|e| format!("error: {e}"))?;
    eval::report_dims(&symbols(p.model.manifest()), &p.dims);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("error: cannot create {}: {e}", dir.display()))?;
    }
    for (name, t) in outputs {
        let tensor = Tensor::from_le_bytes(artifact::from_dtype(t.dtype), &t.shape, &t.data)
            .map_err(|e| format!("internal error: output {name}: {e}"))?;
        println!("{name}: {}", eval::summary(&tensor));
        if let Some(dir) = &args.out {
            let path = dir.join(format!("{name}.npy"));
            npy::write_npy(&path, &tensor).map_err(|e| format!("error: cannot write {}: {e}", path.display()))?;
            println!("  -> {}", path.display());
        }
    }
    Ok(())
}

pub fn bench(args: &RunArgs, iters: usize, warmup: usize, profile: bool) -> Result<(), String> {
    let p = prepare(args)?;
    let (inputs, dims) = (p.input_refs(), p.dim_list());
    let mut session = p.model.session();
    let mut times = Vec::with_capacity(iters.max(1));
    for i in 0..warmup + iters.max(1) {
        let start = Instant::now();
        session.run_with_dims(&inputs, &dims).map_err(|e| format!("error: {e}"))?;
        if i == 0 {
            times.push(p.load_time + start.elapsed());
        }
        if i >= warmup {
            times.push(start.elapsed());
        }
    }
    let first = times.remove(0);
    times.sort();
    let ms = |d: Duration| format!("{:.4}", d.as_secs_f64() * 1e3);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let m = p.model.manifest();
    println!(
        "median_ms={} p90_ms={} min_ms={} iters={} threads={} kernels={} arena_bytes={} load_and_first_run_ms={} device={} copied_bytes={}",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(times[0]),
        times.len(),
        p.model.threads(),
        m.kernels.len(),
        m.arena_bytes,
        ms(first),
        device_text(&p.model),
        session.copied_bytes()
    );
    if profile {
        print_profile(&mut session, &inputs, &dims, iters.max(1))?;
    }
    Ok(())
}

/// The kernels by time over `iters` more runs, slowest first: what `--profile` adds.
fn print_profile(
    session: &mut flint_runtime::Session,
    inputs: &[(&str, TensorRef)],
    dims: &[(&str, u64)],
    iters: usize,
) -> Result<(), String> {
    session.start_profiling();
    for _ in 0..iters {
        session.run_with_dims(inputs, dims).map_err(|e| format!("error: {e}"))?;
    }
    let m = session.model().manifest();
    let times = session.profile().unwrap_or_default();
    let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|&a, &b| times[b].cmp(&times[a]));
    println!("kernel    kind         ms/run      %  function");
    for &k in order.iter().take(20) {
        let per_run = times[k].as_secs_f64() * 1e3 / iters as f64;
        let share = 100.0 * times[k].as_secs_f64() / total.max(1e-12);
        let kernel = &m.kernels[k];
        println!("{:<9} {:<11} {per_run:>8.4} {share:>6.1}  {}", kernel.name, kernel.kind, kernel.symbol);
    }
    println!("({} kernels, {:.4} ms/run in kernels)", times.len(), total * 1e3 / iters as f64);
    Ok(())
}

impl Prepared {
    fn input_refs(&self) -> Vec<(&str, TensorRef<'_>)> {
        let m = self.model.manifest();
        self.inputs
            .iter()
            .map(|(name, t, bytes)| (name.as_str(), TensorRef::new(artifact::dtype(t.dtype), t.shape(), bytes)))
            .filter(|(name, _)| m.regions_of(RegionKind::Input).any(|(_, r)| r.name == *name))
            .collect()
    }

    fn dim_list(&self) -> Vec<(&str, u64)> {
        let m = self.model.manifest();
        m.symbols
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.name.as_str(), self.dims.get(SymId(i as u32))?)))
            .collect()
    }
}

/// Loads or compiles the model, binds its weights and chooses its dims and inputs as `flint
/// eval` does.
fn prepare(args: &RunArgs) -> Result<Prepared, String> {
    let is_artifact = args.file.extension().is_some_and(|e| e == "tgx");
    let memory = memory_policy(args.memory.as_deref())?;
    let mut onnx_params = None;
    // The load time counts from the artifact's bytes, not from compiling the source.
    let mut start = Instant::now();
    let mut model = if is_artifact {
        let device = device_choice(&args.device, || artifact_has_ptx(&args.file))?;
        let options = LoadOptions { threads: args.threads, device, memory };
        Model::load_with(&args.file, &options).map_err(|e| format!("error: {}: {e}", args.file.display()))?
    } else {
        // A source file is compiled for the GPUs too when it is to run on one.
        let device = device_choice(&args.device, || true)?;
        let options = LoadOptions { threads: args.threads, device, memory };
        let gpu = matches!(device, DeviceChoice::Cuda(_));
        let bytes = compile_in_memory(&args.file, &args.cpu, gpu)?;
        if flint_compiler::onnx::is_onnx_path(&args.file) && args.weights.is_none() {
            onnx_params = Some(crate::import::load(&args.file)?.params);
        }
        start = Instant::now();
        Model::from_bytes(&bytes, &options).map_err(|e| format!("error: {e}"))?
    };
    if let Some(w) = &args.weights {
        model.bind_weights(w).map_err(|e| format!("error: {e}"))?;
    }
    let load_time = start.elapsed();
    let m = model.manifest().clone();
    let types: Vec<(&str, TensorType)> =
        m.regions_of(RegionKind::Input).map(|(_, r)| (r.name.as_str(), tensor_type(m.region_value(r)))).collect();
    let signature: Vec<(&str, &Shape)> = types.iter().map(|(n, t)| (*n, &t.shape)).collect();
    let given = eval::read_inputs(&signature, &args.inputs)?;
    let symbols = symbols(&m);
    let dims = eval::choose_dims(&symbols, &signature, &given, eval::parse_dim_args(&symbols, &args.dims)?);
    let mut inputs = Vec::new();
    for (_, r) in m.regions_of(RegionKind::Input) {
        let tensor = match given.get(&r.name) {
            Some(t) => t.clone(),
            None => random_tensor(&m, r.value, &dims, args.seed, &r.name)?,
        };
        let bytes = tensor.to_le_bytes();
        inputs.push((r.name.clone(), tensor, bytes));
    }
    for (region, r) in m.regions_of(RegionKind::Param) {
        if model.is_bound(region) {
            continue;
        }
        let tensor = match onnx_params.as_ref().and_then(|p| p.get(&r.name)) {
            Some(t) => t.clone(),
            None if args.weights.is_some()
                || is_artifact && m.section(flint_runtime::artifact::SectionKind::Weights).is_some() =>
            {
                return Err(format!("error: weight `{}` is not in the weights given", r.name))
            }
            None => random_tensor(&m, r.value, &dims, args.seed, &r.name)?,
        };
        let bytes = tensor.to_le_bytes();
        let view = TensorRef::new(artifact::dtype(tensor.dtype), tensor.shape(), &bytes);
        model.bind_weight(&r.name, view).map_err(|e| format!("error: {e}"))?;
    }
    Ok(Prepared { model, dims, inputs, load_time })
}

/// Whether the artifact at `path` holds PTX (an unreadable one is the loader's to report).
fn artifact_has_ptx(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    flint_runtime::artifact::parse(&bytes).is_ok_and(|p| {
        p.manifest.sections.iter().any(|s| matches!(s.kind, flint_runtime::artifact::SectionKind::Ptx(_)))
    })
}

/// The artifact of a source or ONNX file, compiled for the host (and the GPUs, with `gpu`).
#[cfg(feature = "mlir")]
pub fn compile_in_memory(file: &Path, cpu: &str, gpu: bool) -> Result<Vec<u8>, String> {
    let graph = crate::load(file)?;
    let cpu = flint_compiler::lower::llvm::Cpu::parse(cpu);
    let target = match gpu {
        true => Target::Gpu { sms: flint_compiler::lower::gpu::SMS.to_vec(), cpu },
        false => Target::Cpu(cpu),
    };
    let opts = CompileOptions { target: Some(target), ..Default::default() };
    let compiled = pipeline::compile(&graph, &opts).map_err(|e| format!("error: {e}"))?;
    compiled.artifact.ok_or_else(|| "internal error: the pipeline made no artifact".into())
}

/// A `flint` built without code generation (the runner a GPU machine gets) runs artifacts only.
#[cfg(not(feature = "mlir"))]
pub fn compile_in_memory(file: &Path, _cpu: &str, _gpu: bool) -> Result<Vec<u8>, String> {
    Err(format!(
        "error: {}: this flint was built without code generation (the `mlir` feature); compile it \
         with a full flint (`flint compile FILE -o OUT.tgx`) and give the .tgx",
        file.display()
    ))
}

fn random_tensor(m: &Manifest, value: u32, dims: &DimValues, seed: u64, name: &str) -> Result<Tensor, String> {
    let ty = tensor_type(&m.values[value as usize]);
    random::random_tensor(&ty, dims, seed, name).map_err(|e| format!("error: {e}"))
}
