//! `flint compile`: runs [`pipeline::compile`] with a timing line per stage, and writes the
//! dumps, the plan report and the plan drawing asked for.

use std::path::Path;

use flint_compiler::ir::print::print;
use flint_compiler::kernel::memory;
#[cfg(feature = "mlir")]
use flint_compiler::lower::llvm::{self, Cpu, Output};
use flint_compiler::pipeline::{self, CompileOptions, StageRecord, Target};
use flint_compiler::plan::svg;

/// What `flint compile` writes besides its per-stage timings.
#[cfg_attr(not(feature = "mlir"), allow(dead_code))]
pub struct Outputs<'a> {
    pub dump_after: Option<&'a str>,
    pub dump_all: Option<&'a Path>,
    pub report: bool,
    pub plan_svg: Option<&'a Path>,
    pub target: Option<TargetArg>,
    pub emit: Option<Emit>,
    pub cpu: &'a str,
    pub output: Option<&'a Path>,
    pub weights: Option<&'a Path>,
    pub embed_weights: bool,
}

/// `--target`: `cpu`, or GPU SMs (`sm_90`, `sm_90,sm_121`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetArg {
    Cpu,
    Gpu(Vec<String>),
}

impl TargetArg {
    /// What `--target` takes (the SM names are checked where the target is built).
    pub fn parse(s: &str) -> Result<TargetArg, String> {
        match s {
            "cpu" => Ok(TargetArg::Cpu),
            _ if s.split(',').all(|sm| sm.starts_with("sm_")) => {
                Ok(TargetArg::Gpu(s.split(',').map(str::to_string).collect()))
            }
            _ => {
                Err(format!("`{s}` is not a target: give cpu, or one or more of sm_80, sm_90, sm_121 joined by commas"))
            }
        }
    }
}

/// `--emit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    Mlir,
    Llvm,
    Asm,
    Clif,
    Ptx,
}

/// `--target`, or the CPU when `-o` asks for code.
fn target_arg(out: &Outputs) -> Option<TargetArg> {
    out.target.clone().or(out.output.map(|_| TargetArg::Cpu))
}

#[cfg(feature = "mlir")]
fn target(out: &Outputs) -> Result<Option<Target>, String> {
    use flint_compiler::lower::gpu::Sm;
    let cpu = Cpu::parse(out.cpu);
    Ok(match target_arg(out) {
        None => None,
        Some(TargetArg::Cpu) => Some(Target::Cpu(cpu)),
        Some(TargetArg::Gpu(names)) => {
            let sms = names
                .iter()
                .map(|n| Sm::parse(n))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("error: --target: {e}"))?;
            Some(Target::Gpu { sms, cpu })
        }
    })
}

#[cfg(not(feature = "mlir"))]
fn target(out: &Outputs) -> Result<Option<Target>, String> {
    match target_arg(out) {
        Some(_) => Err("error: --target: this flint was built without MLIR (feature `mlir`)".into()),
        None => Ok(None),
    }
}

/// Every stage `--list-passes` shows: those of the fullest target this build has.
fn all_stages() -> Vec<&'static str> {
    #[cfg(feature = "mlir")]
    return pipeline::stage_names(Some(&Target::Gpu { sms: Vec::new(), cpu: Cpu::Native }));
    #[cfg(not(feature = "mlir"))]
    pipeline::stage_names(None)
}

pub fn run(file: Option<&Path>, out: &Outputs, list: bool) -> Result<(), String> {
    let target = target(out)?;
    let names = all_stages();
    if list {
        names.iter().enumerate().for_each(|(i, n)| println!("{:02} {n}", i + 1));
        return Ok(());
    }
    if let Some(p) = out.dump_after.filter(|p| !names.contains(p)) {
        return Err(format!("error: --dump-after {p}: no such pass (passes: {})", names.join(", ")));
    }
    if let Some(p) = out.dump_after.filter(|p| !pipeline::stage_names(target.as_ref()).contains(p)) {
        let target = if matches!(p, "lower-gpu" | "ptx") { "a GPU target (--target sm_90)" } else { "--target cpu" };
        return Err(format!("error: --dump-after {p}: that stage generates code; give {target}"));
    }
    let Some(file) = file else { return Err("error: no source file given".into()) };
    let start = std::time::Instant::now();
    let graph = crate::load(file)?;
    let front_end = start.elapsed();
    eprintln!("{:<12} {:>8.3} ms  nodes {}", "front-end", front_end.as_secs_f64() * 1e3, graph.len());
    if let Some(dir) = out.dump_all {
        std::fs::create_dir_all(dir).map_err(|e| format!("error: cannot create {}: {e}", dir.display()))?;
        write(&dir.join("00-input.ir"), &print(&graph))?;
    }
    let keep_dumps = out.dump_after.is_some() || out.dump_all.is_some();
    let embed_weights = if out.embed_weights { Some(weights_to_embed(file, &graph, out.weights)?) } else { None };
    let opts = CompileOptions { keep_dumps, target, embed_weights, ..Default::default() };
    let mut step = 0;
    let mut written = Ok(());
    let mut total = std::time::Duration::ZERO;
    let mut observe = |r: &StageRecord| {
        step += 1;
        total += r.time;
        eprintln!("{:<12} {:>8.3} ms  {}", r.name, r.time.as_secs_f64() * 1e3, r.summary);
        let dump = r.dump.as_deref().unwrap_or_default();
        if out.dump_after == Some(r.name) {
            print!("{dump}");
        }
        if let (Some(dir), Ok(())) = (out.dump_all, &written) {
            let ext = if r.graph_pass { "ir" } else { "txt" };
            written = write(&dir.join(format!("{step:02}-{}.{ext}", r.name)), dump);
        }
    };
    let compiled = pipeline::compile_observed(&graph, &opts, &mut observe).map_err(|e| format!("error: {e}"))?;
    written?;
    eprintln!(
        "{:<12} {:>8.3} ms  (stages; with the front end {:.3} ms)",
        "total",
        total.as_secs_f64() * 1e3,
        (total + front_end).as_secs_f64() * 1e3
    );
    if out.report {
        print!("{}", memory::report(&compiled.graph, &compiled.kernels, &compiled.memory));
    }
    if let Some(path) = out.plan_svg {
        write(path, &svg::render_svg(&compiled.memory.buffers, &compiled.memory.plan))?;
    }
    emit_code(&compiled, out)
}

#[cfg(not(feature = "mlir"))]
fn emit_code(_: &pipeline::Compiled, _: &Outputs) -> Result<(), String> {
    Ok(())
}

/// `--emit` and `-o`.
#[cfg(feature = "mlir")]
fn emit_code(compiled: &pipeline::Compiled, out: &Outputs) -> Result<(), String> {
    let text = compiled.cpu.as_ref().map(|m| m.text.as_str()).unwrap_or_default();
    let gpu = (!compiled.gpu.is_empty()).then(|| pipeline::gpu_text(&compiled.gpu));
    let stage = match out.emit {
        Some(Emit::Mlir) => Some(gpu.unwrap_or_else(|| text.to_string())),
        Some(Emit::Ptx) if compiled.ptx.is_empty() => {
            return Err("error: --emit ptx: give a GPU target (--target sm_80, sm_90 or sm_121)".into())
        }
        Some(Emit::Ptx) => {
            Some(compiled.ptx.iter().map(|(sm, ptx)| format!("// ---- {} ----\n{ptx}", sm.name)).collect())
        }
        Some(Emit::Clif) => compiled.glue.clone(),
        Some(kind @ (Emit::Llvm | Emit::Asm)) => {
            let output = if kind == Emit::Llvm { Output::LlvmIr } else { Output::Assembly };
            let bytes = llvm::compile(text, &Cpu::parse(out.cpu), output).map_err(|e| format!("error: {e}"))?;
            let comment = if kind == Emit::Llvm { ";" } else { "#" };
            let mut code = String::new();
            for (k, symbol) in compiled.cpu.iter().flat_map(|m| m.symbols.iter()).enumerate() {
                let kind = compiled.kernels.kernels[k].kind.name();
                code.push_str(&format!("{comment} kernel {k} ({kind}): {symbol}\n"));
            }
            code.push_str(&String::from_utf8_lossy(&bytes));
            Some(code)
        }
        None => None,
    };
    if let Some(code) = stage {
        print!("{code}");
    }
    let Some(path) = out.output else { return Ok(()) };
    let shared_object = path.extension().is_some_and(|e| e == "so");
    let bytes = if shared_object { &compiled.library } else { &compiled.artifact };
    let bytes = bytes.as_ref().ok_or("internal error: the pipeline made no code")?;
    std::fs::write(path, bytes).map_err(|e| format!("error: cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {} ({} B)", path.display(), bytes.len());
    Ok(())
}

/// The safetensors bytes `--embed-weights` puts in the artifact, checked against the params
/// (at the symbols' bounds).
fn weights_to_embed(file: &Path, graph: &flint_compiler::ir::Graph, weights: Option<&Path>) -> Result<Vec<u8>, String> {
    use flint_compiler::{interp::DimValues, ir::SymId, weights as w};
    let bytes = match weights {
        Some(p) => std::fs::read(p).map_err(|e| format!("error: cannot read {}: {e}", p.display()))?,
        None if flint_compiler::onnx::is_onnx_path(file) => {
            let params = crate::import::load(file)?.params;
            w::serialize_safetensors(&params).map_err(|e| format!("error: {e}"))?
        }
        None => return Err("error: --embed-weights: give the weights with --weights FILE.safetensors".into()),
    };
    let mut bounds = DimValues::new();
    graph.symbols.iter().enumerate().for_each(|(i, s)| bounds.insert(SymId(i as u32), s.bound));
    let source = weights.map_or_else(|| file.display().to_string(), |p| p.display().to_string());
    w::params_from_bytes(&bytes, graph, &bounds).map_err(|e| format!("error: {source}: {e}"))?;
    Ok(bytes)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("error: cannot write {}: {e}", path.display()))
}
