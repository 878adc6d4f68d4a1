//! `flint`: the command-line driver.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flint_compiler::diag;
use flint_compiler::ir::{self, Graph, Op};
use flint_compiler::syntax;

mod compile;
mod eval;
mod import;
mod plan_cmd;
mod run_cmd;

/// Flint: a compiler for tensor graphs.
#[derive(Parser)]
#[command(name = "flint", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Upper bound of a symbolic dim of an ONNX model (`dim_param`); repeat for several.
    #[arg(long = "dim-bound", value_name = "NAME=N", global = true)]
    dim_bounds: Vec<String>,
    /// Fix an input of an ONNX model to the value in a .npy file at import time (it stops
    /// being an input): for an input carrying a shape, axes or sizes, which Flint needs
    /// before run time; repeat for several.
    #[arg(long = "freeze", value_name = "NAME=FILE.npy", global = true)]
    freeze: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, type-check and verify a .tg file; print its signature.
    Check {
        /// The source file.
        file: PathBuf,
    },
    /// Print the typed IR of a .tg file.
    Print {
        /// The source file.
        file: PathBuf,
    },
    /// Compile a .tg or .onnx file: `-o OUT.tgx` writes the artifact `flint run` loads.
    ///
    /// Runs every stage in order (see --list-passes): the graph passes, fusion into kernels,
    /// the memory-aware schedule and the memory plan, then with a target (implied by -o) the
    /// kernels through MLIR and LLVM, the host glue and the artifact, verifying after each,
    /// and prints one line per stage on stderr (time, and what the stage made).
    Compile {
        /// The source file.
        #[arg(required_unless_present = "list_passes")]
        file: Option<PathBuf>,
        /// Print the output of this stage (see --list-passes for names): the IR after a graph
        /// pass, the kernel graph after `fusion` or `schedule`, the plan after `memory-plan`.
        #[arg(long, value_name = "PASS")]
        dump_after: Option<String>,
        /// Write the IR before the pipeline to DIR/00-input.ir and every stage's output to
        /// DIR/NN-<stage>.ir (graph passes) or DIR/NN-<stage>.txt (kernel stages).
        #[arg(long, value_name = "DIR")]
        dump_all: Option<PathBuf>,
        /// List the stages of the pipeline in order.
        #[arg(long)]
        list_passes: bool,
        /// Print the memory plan: arena, lower bound, ratio, buffers, regions, and the bytes
        /// each kernel reads and writes.
        #[arg(long)]
        report: bool,
        /// Draw the memory plan as SVG (time across, offset up, a box per buffer).
        #[arg(long, value_name = "OUT.svg")]
        plan_svg: Option<PathBuf>,
        /// Generate code: `cpu` lowers every kernel through MLIR and LLVM for the host and
        /// links them into one shared object; `sm_80`, `sm_90` or `sm_121` (several joined
        /// by commas) also lowers every kernel to PTX for those NVIDIA GPUs (matmul and
        /// convolution tiles sized to each one's shared memory), and the artifact holds both.
        /// Without it, the pipeline stops at the plan.
        #[arg(long, value_parser = compile::TargetArg::parse, value_name = "cpu|sm_80|sm_90|sm_121")]
        target: Option<compile::TargetArg>,
        /// With --target: print every kernel at this stage, headed by its kernel ids and
        /// kinds: `mlir` (verified, before LLVM; with a GPU target the GPU modules, each headed
        /// by the SMs it serves), `llvm`
        /// (optimised LLVM IR) or `asm` for the CPU, `ptx` for each GPU target; or the host
        /// glue (`clif`).
        #[arg(long, value_enum, requires = "target")]
        emit: Option<compile::Emit>,
        /// With --target cpu: `native` (this machine's CPU and features), `generic`, or an
        /// LLVM CPU name such as `znver3` or `neoverse-v2`.
        #[arg(long, default_value = "native", value_name = "CPU")]
        cpu: String,
        /// Write the artifact (`.tgx`) here, for `flint run` or the runtime's APIs; a path
        /// ending in `.so` gets the kernels' shared object alone. Implies --target cpu.
        #[arg(short = 'o', long = "output", value_name = "OUT.tgx")]
        output: Option<PathBuf>,
        /// Weights to embed in the artifact (an ONNX model's own are used when not given).
        #[arg(long, value_name = "FILE.safetensors")]
        weights: Option<PathBuf>,
        /// Put the weights in the artifact, so that it runs without a weights file.
        #[arg(long)]
        embed_weights: bool,
    },
    /// Import an ONNX model: write it as Flint source and its weights as safetensors.
    Import {
        /// The .onnx model.
        model: PathBuf,
        /// The .tg file to write (standard output if absent).
        #[arg(short = 'o', long = "output", value_name = "FILE.tg")]
        output: Option<PathBuf>,
        /// The weights file to write (default: next to the output, as .safetensors).
        #[arg(long, value_name = "FILE.safetensors")]
        weights_out: Option<PathBuf>,
    },
    /// Run a graph on the reference interpreter (f64 accumulation) and write its outputs.
    ///
    /// Inputs and weights that are not given are seeded random; a symbolic dim that neither
    /// `--dim` nor a given input fixes takes its upper bound.
    Eval {
        /// The source file.
        file: PathBuf,
        /// Weights for the params, as a safetensors file.
        #[arg(long, value_name = "FILE.safetensors")]
        weights: Option<PathBuf>,
        /// An input from a .npy file; repeat for several inputs.
        #[arg(long = "input", value_name = "NAME=PATH.npy")]
        inputs: Vec<String>,
        /// The value of a symbolic dim; repeat for several.
        #[arg(long = "dim", value_name = "SYMBOL=VALUE")]
        dims: Vec<String>,
        /// Seed for the random inputs and weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write every output to DIR/<name>.npy.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Run a graph through the compiled artifact and the runtime and write its outputs.
    ///
    /// Takes `flint eval`'s options and prints its output format, so the two can be
    /// compared; a .tg or .onnx file is compiled in memory first.
    Run(run_cmd::RunArgs),
    /// Time runs of a graph through the runtime; prints one line of key=value pairs.
    ///
    /// `median_ms= p90_ms= min_ms= iters= threads= kernels= arena_bytes=
    /// load_and_first_run_ms=`, the times per run over --iters runs after --warmup.
    Bench {
        #[command(flatten)]
        args: run_cmd::RunArgs,
        /// Timed runs.
        #[arg(long, default_value_t = 50)]
        iters: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Then time every kernel over --iters more runs and list the slowest (on a CUDA
        /// device by events around each launch: the kernels' device time).
        #[arg(long)]
        profile: bool,
    },
    /// Plan buffer offsets in one arena for a MiniMalloc CSV (`id,lower,upper,size`).
    ///
    /// Prints `buffers= arena_bytes= lower_bound= ratio= time_ms=`; the plan is checked
    /// independently and the command fails if the check does.
    Plan(plan_cmd::PlanArgs),
}

fn main() -> ExitCode {
    // MLIR and LLVM run in child processes of this program, so an abort in them is an
    // error message, not the end of `flint` (see `lower::llvm::set_worker`).
    #[cfg(feature = "mlir")]
    {
        use flint_compiler::lower::llvm;
        if std::env::args().nth(1).as_deref() == Some(llvm::WORKER_COMMAND) {
            return ExitCode::from(llvm::worker_main());
        }
        llvm::set_worker(std::env::current_exe().ok());
    }
    let cli = Cli::parse();
    import::set_options(cli.dim_bounds, cli.freeze);
    let result = match cli.command {
        Command::Check { file } => check(&file),
        Command::Print { file } => load(&file).map(|g| print!("{}", ir::print::print(&g))),
        Command::Compile {
            file,
            dump_after,
            dump_all,
            list_passes,
            report,
            plan_svg,
            target,
            emit,
            cpu,
            output,
            weights,
            embed_weights,
        } => compile::run(
            file.as_deref(),
            &compile::Outputs {
                dump_after: dump_after.as_deref(),
                dump_all: dump_all.as_deref(),
                report,
                plan_svg: plan_svg.as_deref(),
                target,
                emit,
                cpu: &cpu,
                output: output.as_deref(),
                weights: weights.as_deref(),
                embed_weights,
            },
            list_passes,
        ),
        Command::Import { model, output, weights_out } => {
            import::run(&model, output.as_deref(), weights_out.as_deref())
        }
        Command::Eval { file, weights, inputs, dims, seed, out } => {
            eval::run(&file, weights.as_deref(), &inputs, &dims, seed, out.as_deref())
        }
        Command::Run(args) => run_cmd::run(&args),
        Command::Bench { args, iters, warmup, profile } => run_cmd::bench(&args, iters, warmup, profile),
        Command::Plan(args) => plan_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprint!("{message}");
            if !message.ends_with('\n') {
                eprintln!();
            }
            ExitCode::FAILURE
        }
    }
}

/// Reads, parses, lowers and verifies a source file, or imports an `.onnx` model; errors
/// come back rendered.
pub(crate) fn load(path: &Path) -> Result<Graph, String> {
    if flint_compiler::onnx::is_onnx_path(path) {
        return import::load(path).map(|m| m.graph);
    }
    let bytes = std::fs::read(path).map_err(|e| format!("error: cannot read {}: {e}", path.display()))?;
    let name = path.display().to_string();
    let source = syntax::decode_source(&bytes).map(str::to_owned).map_err(|d| {
        diag::render_with(&name, &String::from_utf8_lossy(&bytes), &[d], std::io::stderr().is_terminal())
    })?;
    let graph = syntax::compile_str(&source)
        .map_err(|diags| diag::render_with(&name, &source, &diags, std::io::stderr().is_terminal()))?;
    ir::verify::verify(&graph).map_err(|e| format!("internal error: the lowered graph does not verify: {e}"))?;
    Ok(graph)
}

fn check(path: &Path) -> Result<(), String> {
    let graph = load(path)?;
    let params = graph.node_ids().filter(|&n| matches!(graph.op(n), Op::Param { .. })).count();
    println!("{}", ir::print::signature(&graph));
    println!("  {} node(s), {} param(s)", graph.len(), params);
    Ok(())
}
