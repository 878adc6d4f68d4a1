//! `flint compile`: the pass pipeline with timings and dumps.

use std::path::Path;

use flint_compiler::ir::print::print;
use flint_compiler::passes::{self, RunOptions};

pub fn run(file: Option<&Path>, dump_after: Option<&str>, dump_all: Option<&Path>, list: bool) -> Result<(), String> {
    let names = passes::pass_names();
    if list {
        names.iter().enumerate().for_each(|(i, n)| println!("{:02} {n}", i + 1));
        return Ok(());
    }
    if let Some(p) = dump_after.filter(|p| !names.contains(p)) {
        return Err(format!("error: --dump-after {p}: no such pass (passes: {})", names.join(", ")));
    }
    let Some(file) = file else { return Err("error: no source file given".into()) };
    let mut graph = crate::load(file)?;
    let before = print(&graph);
    let opts = RunOptions { verify: true, keep_dumps: dump_after.is_some() || dump_all.is_some() };
    let records =
        passes::run_passes(&mut graph, &passes::default_pipeline(), &opts).map_err(|e| format!("error: {e}"))?;
    if let Some(dir) = dump_all {
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
        if dump_after == Some(r.name) {
            print!("{}", r.dump.as_deref().unwrap_or_default());
        }
    }
    Ok(())
}
