//! Loads an artifact with nothing but the runtime, runs it on zeros at every symbol's bound,
//! and prints what it cost: `load_ms= first_run_ms= median_ms= arena_bytes= weight_bytes=
//! peak_rss_kb=`. `make bench` uses it for the runtime's own footprint (the `flint` binary
//! also holds the compiler).
//!
//! ```text
//! run_artifact ARTIFACT.tgx [--weights FILE.safetensors] [--iters N] [--threads T]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use flint_runtime::artifact::RegionKind;
use flint_runtime::{LoadOptions, Model, RuntimeError, TensorRef};

struct Args {
    artifact: String,
    weights: Option<String>,
    iters: usize,
    threads: usize,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut out = Args { artifact: String::new(), weights: None, iters: 20, threads: 0 };
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--weights" => out.weights = Some(value()?),
            "--iters" => out.iters = value()?.parse().map_err(|_| "--iters: not a number")?,
            "--threads" => out.threads = value()?.parse().map_err(|_| "--threads: not a number")?,
            _ if out.artifact.is_empty() => out.artifact = a,
            _ => return Err(format!("unexpected argument `{a}`")),
        }
    }
    if out.artifact.is_empty() {
        return Err("usage: run_artifact ARTIFACT.tgx [--weights FILE] [--iters N] [--threads T]".into());
    }
    Ok(out)
}

/// The process's peak resident set, from `/proc/self/status`.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn run(args: &Args) -> Result<(), RuntimeError> {
    let start = Instant::now();
    let mut model = Model::load_with(&args.artifact, &LoadOptions { threads: args.threads, ..Default::default() })?;
    if let Some(w) = &args.weights {
        model.bind_weights(w)?;
    }
    let m = model.manifest().clone();
    let bounds: Vec<u64> = m.symbols.iter().map(|s| s.bound).collect();
    let zeros = |value: u32| {
        let v = &m.values[value as usize];
        let shape: Vec<usize> = v.shape.iter().map(|d| d.eval(&bounds) as usize).collect();
        (v.dtype, vec![0u8; v.bytes(&bounds) as usize], shape)
    };
    let mut weight_bytes = 0;
    for (region, r) in m.regions_of(RegionKind::Param) {
        let (dtype, data, shape) = zeros(r.value);
        weight_bytes += data.len();
        if !model.is_bound(region) {
            model.bind_weight(&r.name, TensorRef::new(dtype, &shape, &data))?;
        }
    }
    let load = start.elapsed();
    let inputs: Vec<(String, _)> =
        m.regions_of(RegionKind::Input).map(|(_, r)| (r.name.clone(), zeros(r.value))).collect();
    let refs: Vec<(&str, TensorRef)> =
        inputs.iter().map(|(n, (dtype, data, shape))| (n.as_str(), TensorRef::new(*dtype, shape, data))).collect();
    let dims: Vec<(&str, u64)> = m.symbols.iter().map(|s| (s.name.as_str(), s.bound)).collect();
    let mut session = model.session();
    let first = Instant::now();
    session.run_with_dims(&refs, &dims)?;
    let first = first.elapsed();
    let mut times = Vec::new();
    for _ in 0..args.iters.max(1) {
        let t = Instant::now();
        session.run_with_dims(&refs, &dims)?;
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "load_ms={:.3} first_run_ms={:.3} median_ms={:.4} arena_bytes={} weight_bytes={weight_bytes} peak_rss_kb={}",
        ms(load),
        ms(first),
        ms(times[times.len() / 2]),
        m.arena_bytes,
        peak_rss_kb()
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse().and_then(|args| run(&args).map_err(|e| format!("error: {e}")));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
