//! Runs ONNX's backend node tests through Flint's importer and reference interpreter (and,
//! with `--compiled`, each case the interpreter passes through the CPU backend as well) and
//! prints a table per ONNX op; `scripts/conformance.sh` fetches the tests and calls this.
//!
//! ```text
//! onnx_conformance NODE_DIR [--out RESULTS.md] [--filter SUBSTRING] [--compiled] [--verbose]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use flint_compiler::onnx::conformance::{self, CaseResult, Counts, Outcome};

struct Args {
    dir: PathBuf,
    out: Option<PathBuf>,
    filter: Option<String>,
    verbose: bool,
    compiled: bool,
    source: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut out, mut filter, mut verbose, mut compiled) = (None, None, None, false, false);
    let mut source = "onnx 1.22.0 (Python package), onnx/backend/test/data/node".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a path")?)),
            "--filter" => filter = Some(args.next().ok_or("--filter needs a string")?),
            "--source" => source = args.next().ok_or("--source needs a description")?,
            "--verbose" | "-v" => verbose = true,
            "--compiled" => compiled = true,
            _ if dir.is_none() => dir = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument `{a}`")),
        }
    }
    let usage = "usage: onnx_conformance NODE_DIR [--out RESULTS.md] [--filter SUBSTRING] [--compiled] [--verbose]";
    Ok(Args { dir: dir.ok_or(usage)?, out, filter, verbose, compiled, source })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let cases = match conformance::cases(&args.dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", args.dir.display());
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let mut results = Vec::new();
    // Quiet the default panic message; a panic is recorded as a failure of its case.
    std::panic::set_hook(Box::new(|_| {}));
    for dir in cases {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if args.filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let run = || if args.compiled { run_compiled(&dir) } else { conformance::run_case(&dir) };
        let r = catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|p| {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            CaseResult {
                name: name.clone(),
                op: conformance::case_op(&dir),
                outcome: Outcome::Fail(format!("panic: {}", msg.unwrap_or_default())),
                frozen: Vec::new(),
                compiled: None,
            }
        });
        if args.verbose {
            match &r.outcome {
                Outcome::Pass => println!("pass        {name}"),
                Outcome::Fail(m) => println!("FAIL        {name}: {}", first_line(m)),
                Outcome::Unsupported(m) => println!("unsupported {name}: {m}"),
            }
            match &r.compiled {
                Some(Outcome::Fail(m)) => println!("  CPU FAIL  {name}: {}", first_line(m)),
                Some(Outcome::Unsupported(m)) => println!("  CPU refused {name}: {}", first_line(m)),
                _ => {}
            }
        }
        results.push(r);
    }
    let report = report(&results, &args.source, args.compiled);
    print!("{}", table_only(&results, args.compiled));
    println!("({} cases in {:.1} s)", results.len(), start.elapsed().as_secs_f64());
    if args.filter.is_some() {
        println!("(a filtered run; the report file is left as it was)");
    } else if let Some(out) = &args.out {
        if let Err(e) = std::fs::write(out, report) {
            eprintln!("{}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", out.display());
    }
    ExitCode::SUCCESS
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(feature = "mlir")]
fn run_compiled(dir: &std::path::Path) -> CaseResult {
    conformance::run_case_compiled(dir)
}

#[cfg(not(feature = "mlir"))]
fn run_compiled(_: &std::path::Path) -> CaseResult {
    panic!("--compiled needs a flint built with MLIR (feature `mlir`)")
}

fn row(out: &mut String, name: &str, c: &Counts, compiled: bool) {
    let passed =
        if c.passed_frozen > 0 { format!("{} ({} frozen)", c.passed, c.passed_frozen) } else { c.passed.to_string() };
    let _ = write!(out, "| {name} | {} | {passed} | {} | {} |", c.tests, c.failed, c.unsupported);
    if compiled {
        let _ = write!(out, " {} | {} | {} |", c.cpu_passed, c.cpu_failed, c.cpu_unsupported);
    }
    out.push('\n');
}

fn table_only(results: &[CaseResult], compiled: bool) -> String {
    let (by_op, total) = conformance::tally(results);
    let mut out = String::new();
    if compiled {
        let _ = writeln!(
            out,
            "| ONNX op | tests | interpreter passed | failed | unsupported | CPU passed | CPU failed | CPU refused |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    } else {
        let _ = writeln!(out, "| ONNX op | tests | passed | failed | unsupported |");
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    }
    for (op, c) in &by_op {
        row(&mut out, op, c, compiled);
    }
    row(&mut out, "**total**", &total, compiled);
    out
}

fn report(results: &[CaseResult], source: &str, compiled: bool) -> String {
    let (_, total) = conformance::tally(results);
    let mut out = String::new();
    let _ = writeln!(out, "# ONNX conformance\n");
    let _ = writeln!(
        out,
        "Generated by `scripts/conformance.sh` (do not edit): ONNX's backend node tests ({source}), each \
         imported, run on Flint's reference interpreter and compared with the expected outputs \
         (equal dtype and shape, then rtol {}, atol {}, NaN equal to NaN; no case overrides them). \
         Every case is also written as Flint source, compiled again and evaluated; the results \
         must be bit-identical. *frozen*: the case passes once graph inputs that carry shapes, axes \
         or sizes (which Flint needs at compile time) are fixed to the test's values at import \
         (`ImportOptions::constants`); the other inputs stay run-time inputs. *unsupported* means the importer refused the model by name (an \
         op, dtype or attribute Flint lacks); *failed* is anything else.\n",
        conformance::RTOL,
        conformance::ATOL
    );
    if compiled {
        let _ = writeln!(
            out,
            "*CPU*: each case the interpreter passes is also compiled for this machine's CPU (`flint \
             compile` with `--target cpu`: kernels through MLIR and LLVM, the artifact, the host glue), \
             loaded by the runtime and run on the same inputs, and compared with the expected outputs \
             the same way; *CPU refused* means the CPU lowering refused a kernel by name.\n"
        );
    }
    let _ = writeln!(
        out,
        "**Total: {} cases, {} passed, {} failed, {} unsupported.**\n",
        total.tests, total.passed, total.failed, total.unsupported
    );
    if compiled {
        let _ = writeln!(
            out,
            "**CPU backend: {} of the {} passed, {} failed, {} refused by the lowering.**\n",
            total.cpu_passed, total.passed, total.cpu_failed, total.cpu_unsupported
        );
    }
    out.push_str(&table_only(results, compiled));
    let _ = writeln!(out, "\n## Failures\n");
    for r in results {
        if let Outcome::Fail(m) = &r.outcome {
            let _ = writeln!(out, "- `{}` ({}): {}", r.name, r.op, first_line(m));
        }
    }
    if compiled {
        let _ = writeln!(out, "\n## CPU backend failures\n");
        for r in results {
            match &r.compiled {
                Some(Outcome::Fail(m)) => {
                    let _ = writeln!(out, "- `{}` ({}): {}", r.name, r.op, first_line(m));
                }
                Some(Outcome::Unsupported(m)) => {
                    let _ = writeln!(out, "- `{}` ({}), refused: {}", r.name, r.op, first_line(m));
                }
                _ => {}
            }
        }
    }
    let _ = writeln!(out, "\n## Unsupported, by reason\n");
    let mut reasons: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in results {
        if let Outcome::Unsupported(m) = &r.outcome {
            reasons.entry(reason(m)).or_default().push(&r.name);
        }
    }
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by_key(|(reason, names)| (std::cmp::Reverse(names.len()), reason.clone()));
    for (reason, names) in reasons {
        let _ = writeln!(out, "- {reason} ({}): {}", names.len(), names.join(", "));
    }
    out
}

/// The message without the node that carried it, so equal reasons group together.
fn reason(m: &str) -> String {
    let m = first_line(m);
    match m.find("): ") {
        Some(at) if m.starts_with("node ") => m[at + 3..].to_string(),
        _ => m.to_string(),
    }
}
