//! `flint compile`: the pass pipeline with timings and dumps, then fusion, scheduling and the
//! memory plan.

use std::path::Path;
use std::time::Instant;

use flint_compiler::ir::print::print;
use flint_compiler::passes::{self, fusion, memory, RunOptions};
use flint_compiler::plan::{self, svg, PlanOptions};

/// What `flint compile` writes besides its per-pass timings.
pub struct Outputs<'a> {
    pub dump_after: Option<&'a str>,
    pub dump_all: Option<&'a Path>,
    pub report: bool,
    pub plan_svg: Option<&'a Path>,
}

pub fn run(file: Option<&Path>, out: &Outputs, list: bool) -> Result<(), String> {
    let names = passes::pass_names();
    if list {
        names.iter().enumerate().for_each(|(i, n)| println!("{:02} {n}", i + 1));
        return Ok(());
    }
    if let Some(p) = out.dump_after.filter(|p| !names.contains(p)) {
        return Err(format!("error: --dump-after {p}: no such pass (passes: {})", names.join(", ")));
    }
    let Some(file) = file else { return Err("error: no source file given".into()) };
    let mut graph = crate::load(file)?;
    let before = print(&graph);
    let opts = RunOptions { verify: true, keep_dumps: out.dump_after.is_some() || out.dump_all.is_some() };
    let records =
        passes::run_passes(&mut graph, &passes::default_pipeline(), &opts).map_err(|e| format!("error: {e}"))?;
    if let Some(dir) = out.dump_all {
        std::fs::create_dir_all(dir).map_err(|e| format!("error: cannot create {}: {e}", dir.display()))?;
        let write = |name: String, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("error: cannot write {}: {e}", path.display()))
        };
        write("00-input.ir".into(), &before)?;
        for (i, r) in records.iter().enumerate() {
            write(format!("{:02}-{}.ir", i + 1, r.name), r.dump.as_deref().unwrap_or_default())?;
        }
    }
    for r in &records {
        let ms = r.time.as_secs_f64() * 1e3;
        eprintln!("{:<12} {:>8.3} ms  nodes {:>4} -> {:<4}", r.name, ms, r.nodes_before, r.nodes_after);
        if out.dump_after == Some(r.name) {
            print!("{}", r.dump.as_deref().unwrap_or_default());
        }
    }
    let start = Instant::now();
    let kernels = fusion::fuse(&graph);
    eprintln!("{:<12} {:>8.3} ms  kernels {}", "fusion", start.elapsed().as_secs_f64() * 1e3, kernels.kernels.len());
    let start = Instant::now();
    let mp = memory::plan_memory(&graph, &kernels, &PlanOptions::default());
    eprintln!("{:<12} {:>8.3} ms  arena {} B", "memory-plan", start.elapsed().as_secs_f64() * 1e3, mp.plan.arena);
    plan::check::check(&mp.buffers, &mp.plan, memory::ALIGNMENT)
        .map_err(|e| format!("internal error: the memory plan is invalid: {e}"))?;
    if out.report {
        print!("{}", memory::report(&graph, &kernels, &mp));
    }
    if let Some(path) = out.plan_svg {
        std::fs::write(path, svg::render_svg(&mp.buffers, &mp.plan))
            .map_err(|e| format!("error: cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
