//! `flint plan`: plan a MiniMalloc CSV buffer list, check the plan independently, and print one
//! summary line (optionally draw the plan as SVG).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flint_compiler::plan::{self, check, csv, svg, PlanOptions, Strategy};

/// Arguments of `flint plan`.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// The buffer list: `id,lower,upper,size` per line, lifetimes half-open; the capacity is
    /// the number in the file name (`A.1048576.csv`).
    file: PathBuf,
    /// Also draw the plan as SVG to this file.
    #[arg(long, alias = "plan-svg", value_name = "OUT.svg")]
    svg: Option<PathBuf>,
    /// Search budget in milliseconds; the best plan found by then is used.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    time_limit_ms: u64,
    /// Greedy best-fit by size only (the TFLite/XLA baseline).
    #[arg(long)]
    greedy: bool,
    /// Every offset is a multiple of this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1)]
    alignment: u64,
}

/// Runs `flint plan`; the error is the message to print.
pub fn run(args: &PlanArgs) -> Result<(), String> {
    let buffers = csv::read(&args.file).map_err(|e| format!("error: {}: {e}", args.file.display()))?;
    let opts = PlanOptions {
        alignment: args.alignment.max(1),
        time_limit: Duration::from_millis(args.time_limit_ms),
        strategy: if args.greedy { Strategy::Greedy } else { Strategy::Search },
    };
    let start = Instant::now();
    let (plan, report) = plan::plan_with_report(&buffers, &opts);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    check::check(&buffers, &plan, opts.alignment).map_err(|e| format!("error: the plan is invalid: {e}"))?;
    let ratio = if report.lower_bound == 0 { 1.0 } else { plan.arena as f64 / report.lower_bound as f64 };
    let mut line = format!(
        "buffers={} arena_bytes={} lower_bound={} ratio={ratio:.3} time_ms={ms:.1} optimal={} nodes={}",
        buffers.len(),
        plan.arena,
        report.lower_bound,
        if report.optimal { "yes" } else { "unknown" },
        report.nodes,
    );
    if let Some(capacity) = csv::capacity_from_path(&args.file) {
        let fits = if plan.arena <= capacity { "yes" } else { "no" };
        line.push_str(&format!(" capacity={capacity} fits={fits}"));
    }
    println!("{line}");
    if let Some(out) = &args.svg {
        std::fs::write(out, svg::render_svg(&buffers, &plan))
            .map_err(|e| format!("error: cannot write {}: {e}", out.display()))?;
    }
    Ok(())
}
