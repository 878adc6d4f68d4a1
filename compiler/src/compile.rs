//! `flint compile`: runs [`pipeline::compile`] with a timing line per stage, and writes the
//! dumps, the plan report and the plan drawing asked for.

use std::path::Path;

use flint_compiler::ir::print::print;
use flint_compiler::kernel::memory;
use flint_compiler::pipeline::{self, CompileOptions, StageRecord};
use flint_compiler::plan::svg;

/// What `flint compile` writes besides its per-stage timings.
pub struct Outputs<'a> {
    pub dump_after: Option<&'a str>,
    pub dump_all: Option<&'a Path>,
    pub report: bool,
    pub plan_svg: Option<&'a Path>,
}

pub fn run(file: Option<&Path>, out: &Outputs, list: bool) -> Result<(), String> {
    let names = pipeline::stage_names();
    if list {
        names.iter().enumerate().for_each(|(i, n)| println!("{:02} {n}", i + 1));
        return Ok(());
    }
    if let Some(p) = out.dump_after.filter(|p| !names.contains(p)) {
        return Err(format!("error: --dump-after {p}: no such pass (passes: {})", names.join(", ")));
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
    let opts = CompileOptions { keep_dumps: out.dump_after.is_some() || out.dump_all.is_some(), ..Default::default() };
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
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("error: cannot write {}: {e}", path.display()))
}
