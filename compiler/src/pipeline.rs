//! The compiler as one call: a verified graph in, a scheduled and planned program out.
//!
//! Every stage is a line of [`stages`], run top to bottom: the graph passes, then fusion,
//! scheduling and the memory plan (kernel lowering, the host glue and the artifact will be
//! the next lines). `flint compile`, the tests and every later driver call [`compile`];
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
}

/// The pipeline, in order.
pub fn stages() -> Vec<Stage> {
    vec![
        Stage::Graph(Box::new(Decompose)),
        Stage::Graph(Box::new(Simplify)),
        Stage::Graph(Box::new(Cse)),
        Stage::Graph(Box::new(Dce)),
        Stage::Fuse,
        Stage::Schedule,
        Stage::PlanMemory,
    ]
}

/// The names of the stages, in order.
pub fn stage_names() -> Vec<&'static str> {
    stages().iter().map(Stage::name).collect()
}

impl Stage {
    /// The kebab-case name of the CLI flags, the dump files and the snapshots.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Graph(pass) => pass.name(),
            Stage::Fuse => "fusion",
            Stage::Schedule => "schedule",
            Stage::PlanMemory => "memory-plan",
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
        }
        Ok(())
    }

    /// Checks what the stage left, with the verifier of its level.
    fn verify(&self, unit: &Unit) -> Result<(), CompileError> {
        let stage = self.name();
        match (self, &unit.kernels) {
            (Stage::Graph(_), _) => verify(&unit.graph).map_err(|error| CompileError::Verify { stage, error }),
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
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions { verify: cfg!(debug_assertions), keep_dumps: false, plan: PlanOptions::default() }
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
}

/// The work in progress.
struct Unit {
    graph: Graph,
    kernels: Option<KernelGraph>,
    memory: Option<MemoryPlan>,
    program: Option<Program>,
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
    let mut unit = Unit { graph: graph.clone(), kernels: None, memory: None, program: None };
    unit.graph.compact();
    let mut records = Vec::new();
    for stage in stages() {
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
    match unit {
        Unit { graph, kernels: Some(kernels), memory: Some(memory), program: Some(program) } => {
            Ok(Compiled { graph, kernels, memory, program, stages: records })
        }
        _ => Err(CompileError::OutOfOrder("the end of the pipeline")),
    }
}
