//! The compiler as one call: a verified graph in, a scheduled and planned program out.
//!
//! Every stage is a line of [`stages`], run top to bottom: the graph passes, then fusion,
//! scheduling and the memory plan, and with a target kernel lowering, native code, the host
//! glue and the artifact. `flint compile`, the tests and every later driver call [`compile`];
//! nothing else strings stages together. Each stage has a kebab-case name used by
//! `--list-passes`, `--dump-after NAME`, `--dump-all` and the snapshots
//! (`<example>@NN-<name>`), is timed, and is followed by a verifier in tests and debug
//! builds: the graph verifier after graph passes, the kernel-graph verifier after kernel
//! stages. After every graph pass the graph is compacted, so a `%N` in any error is the
//! `%N` of the dumps.

use std::time::{Duration, Instant};

use crate::ir::verify::{verify, VerifyError};
use crate::ir::Graph;
use crate::kernel::memory::{self, MemoryPlan};
use crate::kernel::program::Program;
use crate::kernel::verify::KernelError;
use crate::kernel::{fusion, schedule, KernelGraph};
use crate::passes::{Cse, Dce, Decompose, Pass, PassError, Simplify};
use crate::plan::PlanOptions;

/// One step of the pipeline.
pub enum Stage {
    /// A graph-to-graph pass.
    Graph(Box<dyn Pass>),
    /// Partition the computed nodes into kernels ([`fusion`]).
    Fuse,
    /// Order the kernels to lower the peak of live bytes ([`schedule`]).
    Schedule,
    /// Give every intermediate an arena offset ([`memory`]) and describe the program.
    PlanMemory,
    /// Every kernel as an MLIR function for the CPU ([`crate::lower::cpu`]).
    #[cfg(feature = "mlir")]
    LowerCpu,
    /// The MLIR through LLVM to a native shared object ([`crate::lower::llvm`]).
    #[cfg(feature = "mlir")]
    NativeCode,
    /// Every kernel as a `gpu.func` of one `gpu.module` per target SM ([`crate::lower::gpu`]).
    #[cfg(feature = "mlir")]
    LowerGpu,
    /// The GPU module to PTX for each target SM.
    #[cfg(feature = "mlir")]
    Ptx,
    /// The manifest, and the schedule as CLIF host glue ([`crate::glue`]).
    #[cfg(feature = "mlir")]
    HostGlue,
    /// Everything in one `.tgx` file ([`flint_runtime::artifact`]).
    #[cfg(feature = "mlir")]
    Artifact,
}

/// What the compile produces code for; without one, it stops at the memory plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The host CPU, through MLIR and LLVM.
    #[cfg(feature = "mlir")]
    Cpu(crate::lower::llvm::Cpu),
    /// NVIDIA GPUs of these SMs, through MLIR's NVVM pipeline to PTX, and the host CPU (so
    /// the artifact also runs where there is no GPU).
    #[cfg(feature = "mlir")]
    Gpu { sms: Vec<crate::lower::gpu::Sm>, cpu: crate::lower::llvm::Cpu },
}

/// The pipeline for `target`, in order.
pub fn stages(target: Option<&Target>) -> Vec<Stage> {
    let mut stages = vec![
        Stage::Graph(Box::new(Decompose)),
        Stage::Graph(Box::new(Simplify)),
        Stage::Graph(Box::new(Cse)),
        Stage::Graph(Box::new(Dce)),
        Stage::Fuse,
        Stage::Schedule,
        Stage::PlanMemory,
    ];
    stages.extend(target.map(Target::code_stages).unwrap_or_default());
    stages
}

impl Target {
    /// The stages that generate code for the target.
    fn code_stages(&self) -> Vec<Stage> {
        match *self {
            #[cfg(feature = "mlir")]
            Target::Cpu(_) => vec![Stage::LowerCpu, Stage::NativeCode, Stage::HostGlue, Stage::Artifact],
            #[cfg(feature = "mlir")]
            Target::Gpu { .. } => {
                vec![Stage::LowerCpu, Stage::NativeCode, Stage::LowerGpu, Stage::Ptx, Stage::HostGlue, Stage::Artifact]
            }
        }
    }
}

/// The names of the stages for `target`, in order.
pub fn stage_names(target: Option<&Target>) -> Vec<&'static str> {
    stages(target).iter().map(Stage::name).collect()
}

impl Stage {
    /// The kebab-case name of the CLI flags, the dump files and the snapshots.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Graph(pass) => pass.name(),
            Stage::Fuse => "fusion",
            Stage::Schedule => "schedule",
            Stage::PlanMemory => "memory-plan",
            #[cfg(feature = "mlir")]
            Stage::LowerCpu => "lower-cpu",
            #[cfg(feature = "mlir")]
            Stage::NativeCode => "native-code",
            #[cfg(feature = "mlir")]
            Stage::LowerGpu => "lower-gpu",
            #[cfg(feature = "mlir")]
            Stage::Ptx => "ptx",
            #[cfg(feature = "mlir")]
            Stage::HostGlue => "host-glue",
            #[cfg(feature = "mlir")]
            Stage::Artifact => "artifact",
        }
    }

    /// Whether the stage rewrites the graph (its dump is IR) or works on kernels.
    pub fn is_graph_pass(&self) -> bool {
        matches!(self, Stage::Graph(_))
    }

    fn run(&self, unit: &mut Unit, opts: &CompileOptions) -> Result<(), CompileError> {
        match self {
            Stage::Graph(pass) => {
                pass.run(&mut unit.graph)?;
                unit.graph.compact();
            }
            Stage::Fuse => unit.kernels = Some(fusion::fuse(&unit.graph)),
            Stage::Schedule => {
                let kg = unit.kernels.as_mut().ok_or(CompileError::OutOfOrder(self.name()))?;
                schedule::schedule(&unit.graph, kg).ok_or(CompileError::Cycle)?;
            }
            Stage::PlanMemory => {
                let kg = unit.kernels.as_ref().ok_or(CompileError::OutOfOrder(self.name()))?;
                let mp = memory::plan_memory(&unit.graph, kg, &opts.plan);
                unit.program = Some(Program::new(&unit.graph, kg, &mp));
                unit.memory = Some(mp);
            }
            #[cfg(feature = "mlir")]
            Stage::LowerCpu => unit.cpu = Some(crate::lower::cpu_module(&unit.as_compiled_view()?)?),
            #[cfg(feature = "mlir")]
            Stage::NativeCode => {
                let module = unit.cpu.as_ref().ok_or(CompileError::OutOfOrder(self.name()))?;
                let cpu = opts.cpu();
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                unit.library = Some(crate::lower::llvm::shared_object(&module.split(threads), &cpu)?);
            }
            #[cfg(feature = "mlir")]
            Stage::LowerGpu => {
                let (view, sms) = (unit.as_compiled_view()?, opts.sms());
                let modules = per_sm(self.name(), &sms, |sm| crate::lower::gpu_module(&view, *sm))?;
                unit.gpu = sms.into_iter().zip(modules).collect();
            }
            #[cfg(feature = "mlir")]
            Stage::Ptx => {
                // LLVM's NVPTX back end takes most of the time.
                let ptx = per_sm(self.name(), &unit.gpu, |(sm, module)| crate::lower::gpu::ptx(&module.text, sm))?;
                unit.ptx = unit.gpu.iter().map(|(sm, _)| *sm).zip(ptx).collect();
            }
            #[cfg(feature = "mlir")]
            Stage::HostGlue => {
                let (Some(kg), Some(program), Some(module)) = (&unit.kernels, &unit.program, &unit.cpu) else {
                    return Err(CompileError::OutOfOrder(self.name()));
                };
                let (cpu, features) = opts.cpu().target_info();
                let target = crate::artifact::TargetInfo { cpu, features };
                let manifest = crate::artifact::manifest(program, kg, &module.symbols, &unit.gpu, target);
                unit.glue = Some(crate::glue::clif(&manifest));
                unit.manifest = Some(manifest);
            }
            #[cfg(feature = "mlir")]
            Stage::Artifact => {
                let (Some(manifest), Some(glue), Some(library)) = (&unit.manifest, &unit.glue, &unit.library) else {
                    return Err(CompileError::OutOfOrder(self.name()));
                };
                use flint_runtime::artifact::{write, SectionKind};
                let mut sections =
                    vec![(SectionKind::CpuObject, library.as_slice()), (SectionKind::Glue, glue.as_bytes())];
                sections.extend(unit.ptx.iter().map(|(sm, ptx)| (SectionKind::Ptx(sm.capability()), ptx.as_bytes())));
                if let Some(weights) = &opts.embed_weights {
                    sections.push((SectionKind::Weights, weights.as_slice()));
                }
                unit.artifact = Some(write(manifest.clone(), &sections));
            }
        }
        Ok(())
    }

    /// Checks what the stage left, with the verifier of its level.
    fn verify(&self, unit: &Unit) -> Result<(), CompileError> {
        let stage = self.name();
        match (self, &unit.kernels) {
            (Stage::Graph(_), _) => verify(&unit.graph).map_err(|error| CompileError::Verify { stage, error }),
            #[cfg(feature = "mlir")]
            (Stage::LowerCpu, _) => {
                let text = unit.cpu.as_ref().map(|m| m.text.as_str()).unwrap_or_default();
                Ok(crate::lower::llvm::verify(text)?)
            }
            #[cfg(feature = "mlir")]
            (Stage::LowerGpu, _) => {
                unit.gpu.iter().try_for_each(|(_, m)| crate::lower::llvm::verify(&m.text))?;
                Ok(())
            }
            #[cfg(feature = "mlir")]
            (Stage::NativeCode | Stage::Ptx | Stage::Artifact, _) => Ok(()),
            // The runtime's own parser and the Cranelift verifier, as the runtime will run them.
            #[cfg(feature = "mlir")]
            (Stage::HostGlue, _) => crate::glue::verify(unit.glue.as_deref().unwrap_or_default())
                .map_err(|message| CompileError::Glue { message }),
            (_, Some(kg)) => crate::kernel::verify::verify(&unit.graph, kg, unit.memory.as_ref())
                .map_err(|error| CompileError::Kernel { stage, error }),
            (_, None) => Err(CompileError::OutOfOrder(stage)),
        }
    }

    /// One line on what the stage made: nodes, kernels, peak or arena.
    fn summary(&self, unit: &Unit, nodes_before: usize) -> String {
        let kernels = unit.kernels.as_ref().map_or(0, |kg| kg.kernels.len());
        match self {
            Stage::Graph(_) => format!("nodes {nodes_before} -> {}", unit.graph.len()),
            Stage::Fuse => format!("kernels {kernels}"),
            Stage::Schedule => {
                let peak = unit.kernels.as_ref().map_or(0, |kg| schedule::peak(&unit.graph, kg));
                format!("kernels {kernels}, peak {peak} B")
            }
            Stage::PlanMemory => format!("arena {} B", unit.memory.as_ref().map_or(0, |mp| mp.plan.arena)),
            #[cfg(feature = "mlir")]
            Stage::LowerCpu => format!("functions {}", unit.cpu.as_ref().map_or(0, |m| m.functions)),
            #[cfg(feature = "mlir")]
            Stage::NativeCode => format!("shared object {} B", unit.library.as_ref().map_or(0, Vec::len)),
            #[cfg(feature = "mlir")]
            Stage::LowerGpu => {
                let functions: Vec<String> =
                    unit.gpu.iter().map(|(sm, m)| format!("{} {}", sm.name, m.functions)).collect();
                format!("functions {}", functions.join(", "))
            }
            #[cfg(feature = "mlir")]
            Stage::Ptx => {
                let sizes: Vec<String> = unit.ptx.iter().map(|(sm, p)| format!("{} {} B", sm.name, p.len())).collect();
                format!("ptx {}", sizes.join(", "))
            }
            #[cfg(feature = "mlir")]
            Stage::HostGlue => format!("clif {} B", unit.glue.as_ref().map_or(0, String::len)),
            #[cfg(feature = "mlir")]
            Stage::Artifact => format!("artifact {} B", unit.artifact.as_ref().map_or(0, Vec::len)),
        }
    }

    /// What the stage left, as text: the IR, the kernel graph or the plan.
    fn dump(&self, unit: &Unit) -> String {
        let (graph, kernels) = (&unit.graph, unit.kernels.as_ref());
        match (self, kernels, &unit.memory, &unit.program) {
            (Stage::Graph(_), ..) => crate::ir::print::print(graph),
            (Stage::Fuse, Some(kg), ..) => kg.print(graph),
            (Stage::Schedule, Some(kg), ..) => {
                let (peak, unfused) = (schedule::peak(graph, kg), schedule::peak(graph, &fusion::unfused(graph)));
                format!("peak {peak} B (unfused {unfused} B)\n{}", kg.print(graph))
            }
            (Stage::PlanMemory, Some(kg), Some(mp), Some(program)) => {
                format!("{}{}", memory::report(graph, kg, mp), program.print_storage())
            }
            #[cfg(feature = "mlir")]
            (Stage::LowerCpu, ..) => unit.cpu.as_ref().map(|m| m.text.clone()).unwrap_or_default(),
            #[cfg(feature = "mlir")]
            (Stage::NativeCode, Some(kg), ..) => {
                let size = unit.library.as_ref().map_or(0, Vec::len);
                let symbols = unit.cpu.iter().flat_map(|m| m.symbols.iter());
                let lines =
                    kg.iter().zip(symbols).map(|((k, kernel), s)| format!("{k} ({}): {s}\n", kernel.kind.name()));
                format!("shared object {size} B\n{}", lines.collect::<String>())
            }
            #[cfg(feature = "mlir")]
            (Stage::LowerGpu, ..) => gpu_text(&unit.gpu),
            #[cfg(feature = "mlir")]
            (Stage::Ptx, ..) => unit.ptx.iter().map(|(sm, p)| format!("// ---- {} ----\n{p}", sm.name)).collect(),
            #[cfg(feature = "mlir")]
            (Stage::HostGlue, ..) => unit.glue.clone().unwrap_or_default(),
            #[cfg(feature = "mlir")]
            (Stage::Artifact, ..) => unit.manifest.as_ref().map(crate::artifact::describe).unwrap_or_default(),
            _ => String::new(),
        }
    }
}

/// How to compile.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Run the verifiers after every stage (the default in debug builds, and always on there).
    pub verify: bool,
    /// Keep every stage's dump in its [`StageRecord`].
    pub keep_dumps: bool,
    /// The memory planner's budget and strategy.
    pub plan: PlanOptions,
    /// What to generate code for (`None`: stop at the memory plan).
    pub target: Option<Target>,
    /// A safetensors file's bytes to embed in the artifact as its weights.
    pub embed_weights: Option<Vec<u8>>,
}

impl CompileOptions {
    #[cfg(feature = "mlir")]
    fn cpu(&self) -> crate::lower::llvm::Cpu {
        match &self.target {
            Some(Target::Cpu(cpu) | Target::Gpu { cpu, .. }) => cpu.clone(),
            None => crate::lower::llvm::Cpu::Native,
        }
    }

    #[cfg(feature = "mlir")]
    fn sms(&self) -> Vec<crate::lower::gpu::Sm> {
        match &self.target {
            Some(Target::Gpu { sms, .. }) => sms.clone(),
            _ => Vec::new(),
        }
    }
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            verify: cfg!(debug_assertions),
            keep_dumps: false,
            plan: PlanOptions::default(),
            target: None,
            embed_weights: None,
        }
    }
}

/// What one stage did.
#[derive(Clone, Debug)]
pub struct StageRecord {
    pub name: &'static str,
    /// Whether the dump is IR (a graph pass) or kernel-level text.
    pub graph_pass: bool,
    pub time: Duration,
    /// Nodes, kernels, peak or arena after the stage, as one line.
    pub summary: String,
    /// The stage's output as text, when [`CompileOptions::keep_dumps`] is set.
    pub dump: Option<String>,
}

/// The compiled result.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The graph after the graph passes (compacted: its handles are the printer's `%N`).
    pub graph: Graph,
    /// The kernels in schedule order.
    pub kernels: KernelGraph,
    pub memory: MemoryPlan,
    /// The planned program, self-contained: what lowering and the artifact read.
    pub program: Program,
    /// The kernels as MLIR for the CPU, with each kernel's function (with a CPU target).
    #[cfg(feature = "mlir")]
    pub cpu: Option<crate::lower::KernelModule>,
    /// The kernels' shared object (with a CPU target).
    pub library: Option<Vec<u8>>,
    /// The kernels as a GPU module for each target SM (with a GPU target).
    #[cfg(feature = "mlir")]
    pub gpu: Vec<(crate::lower::gpu::Sm, crate::lower::KernelModule)>,
    /// The PTX for each target SM (with a GPU target).
    #[cfg(feature = "mlir")]
    pub ptx: Vec<(crate::lower::gpu::Sm, String)>,
    /// The artifact's manifest (with a target).
    #[cfg(feature = "mlir")]
    pub manifest: Option<flint_runtime::artifact::Manifest>,
    /// The host glue as CLIF text (with a target).
    pub glue: Option<String>,
    /// The `.tgx` artifact's bytes (with a target).
    pub artifact: Option<Vec<u8>>,
    pub stages: Vec<StageRecord>,
}

/// A stage failed. Every variant is a compiler bug or an unsupported construct, never a
/// property of input the front end accepts.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error("`{stage}` left an invalid graph: {error}")]
    Verify { stage: &'static str, error: VerifyError },
    #[error("`{stage}` left an invalid kernel graph: {error}")]
    Kernel { stage: &'static str, error: KernelError },
    #[error("the kernels depend on each other in a cycle")]
    Cycle,
    #[error("stage `{0}` ran before the stage that makes its input")]
    OutOfOrder(&'static str),
    #[cfg(feature = "mlir")]
    #[error(transparent)]
    Lower(#[from] crate::lower::LowerError),
    #[error("stage `{0}` panicked")]
    Panicked(&'static str),
    #[error("the host glue does not compile: {message}")]
    Glue { message: String },
}

/// The work in progress.
struct Unit {
    graph: Graph,
    kernels: Option<KernelGraph>,
    memory: Option<MemoryPlan>,
    program: Option<Program>,
    #[cfg(feature = "mlir")]
    cpu: Option<crate::lower::KernelModule>,
    library: Option<Vec<u8>>,
    #[cfg(feature = "mlir")]
    gpu: Vec<(crate::lower::gpu::Sm, crate::lower::KernelModule)>,
    #[cfg(feature = "mlir")]
    ptx: Vec<(crate::lower::gpu::Sm, String)>,
    #[cfg(feature = "mlir")]
    manifest: Option<flint_runtime::artifact::Manifest>,
    glue: Option<String>,
    artifact: Option<Vec<u8>>,
}

impl Unit {
    /// The graph and its scheduled kernels, as lowering reads them.
    #[cfg(feature = "mlir")]
    fn as_compiled_view(&self) -> Result<crate::lower::KernelSource<'_>, CompileError> {
        let kernels = self.kernels.as_ref().ok_or(CompileError::OutOfOrder("lower-cpu"))?;
        Ok(crate::lower::KernelSource { graph: &self.graph, kernels })
    }
}

/// `work` for each of `items` (an SM, or an SM's module), a thread each, in order.
#[cfg(feature = "mlir")]
fn per_sm<T: Sync, R: Send>(
    stage: &'static str,
    items: &[T],
    work: impl Fn(&T) -> Result<R, crate::lower::LowerError> + Sync,
) -> Result<Vec<R>, CompileError> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = items.iter().map(|item| scope.spawn(|| work(item))).collect();
        workers.into_iter().map(|w| Ok(w.join().map_err(|_| CompileError::Panicked(stage))??)).collect()
    })
}

/// The GPU modules as text, each headed by the SMs it is for (SMs whose tiles are the same
/// share one module).
#[cfg(feature = "mlir")]
pub fn gpu_text(modules: &[(crate::lower::gpu::Sm, crate::lower::KernelModule)]) -> String {
    let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
    for (sm, module) in modules {
        match groups.iter_mut().find(|(_, text)| *text == module.text) {
            Some((names, _)) => names.push(sm.name),
            None => groups.push((vec![sm.name], &module.text)),
        }
    }
    groups.iter().map(|(names, text)| format!("// ---- {} ----\n{text}", names.join(", "))).collect()
}

/// Compiles `graph` through every stage.
pub fn compile(graph: &Graph, opts: &CompileOptions) -> Result<Compiled, CompileError> {
    compile_observed(graph, opts, &mut |_| {})
}

/// [`compile`], calling `observe` after each stage (for progress lines and dumps as they
/// happen, so a failing stage still shows what came before it).
pub fn compile_observed(
    graph: &Graph,
    opts: &CompileOptions,
    observe: &mut dyn FnMut(&StageRecord),
) -> Result<Compiled, CompileError> {
    let mut unit = Unit {
        graph: graph.clone(),
        kernels: None,
        memory: None,
        program: None,
        #[cfg(feature = "mlir")]
        cpu: None,
        library: None,
        #[cfg(feature = "mlir")]
        gpu: Vec::new(),
        #[cfg(feature = "mlir")]
        ptx: Vec::new(),
        #[cfg(feature = "mlir")]
        manifest: None,
        glue: None,
        artifact: None,
    };
    unit.graph.compact();
    let mut records = Vec::new();
    for stage in stages(opts.target.as_ref()) {
        let nodes_before = unit.graph.len();
        let start = Instant::now();
        stage.run(&mut unit, opts)?;
        let time = start.elapsed();
        let record = StageRecord {
            name: stage.name(),
            graph_pass: stage.is_graph_pass(),
            time,
            summary: stage.summary(&unit, nodes_before),
            dump: opts.keep_dumps.then(|| stage.dump(&unit)),
        };
        // Observed before the verifier runs, so a failing stage's own dump is still shown.
        observe(&record);
        if opts.verify || cfg!(debug_assertions) {
            stage.verify(&unit)?;
        }
        records.push(record);
    }
    let (Some(kernels), Some(memory), Some(program)) = (unit.kernels, unit.memory, unit.program) else {
        return Err(CompileError::OutOfOrder("the end of the pipeline"));
    };
    Ok(Compiled {
        graph: unit.graph,
        kernels,
        memory,
        program,
        #[cfg(feature = "mlir")]
        cpu: unit.cpu,
        library: unit.library,
        #[cfg(feature = "mlir")]
        gpu: unit.gpu,
        #[cfg(feature = "mlir")]
        ptx: unit.ptx,
        #[cfg(feature = "mlir")]
        manifest: unit.manifest,
        glue: unit.glue,
        artifact: unit.artifact,
        stages: records,
    })
}
