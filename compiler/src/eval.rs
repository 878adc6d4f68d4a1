//! `flint eval`: bind inputs, dims and weights, run the reference interpreter, write outputs.

use std::path::{Path, PathBuf};

use flint_compiler::interp::{self, DimValues, Tensor, TensorMap};
use flint_compiler::ir::{Op, Shape, SymId, Symbol};
use flint_compiler::{npy, random, weights};

pub fn run(
    file: &Path,
    weights_path: Option<&Path>,
    input_args: &[String],
    dim_args: &[String],
    seed: u64,
    out: Option<&Path>,
) -> Result<(), String> {
    let graph = crate::load(file)?;
    let signature: Vec<(&str, &Shape)> = graph
        .inputs
        .iter()
        .filter_map(
            |&n| if let Op::Input { name } = graph.op(n) { Some((name.as_str(), &graph.ty(n).shape)) } else { None },
        )
        .collect();
    let given = read_inputs(&signature, input_args)?;
    let explicit = parse_dim_args(&graph.symbols, dim_args)?;
    let dims = choose_dims(&graph.symbols, &signature, &given, explicit);
    let mut inputs = random::random_inputs(&graph, &dims, seed).map_err(|e| format!("error: {e}"))?;
    inputs.extend(given);
    let dims = interp::bind_dims(&graph, &inputs, &dims).map_err(|e| format!("error: {e}"))?;
    let params = match weights_path {
        Some(p) => weights::load_safetensors(p, &graph, &dims).map_err(|e| format!("error: {}: {e}", p.display()))?,
        // An ONNX model carries its weights.
        None if flint_compiler::onnx::is_onnx_path(file) => crate::import::load(file)?.params,
        None => random::random_params(&graph, &dims, seed).map_err(|e| format!("error: {e}"))?,
    };
    let outputs = interp::eval(&graph, &dims, &inputs, &params).map_err(|e| format!("error: {e}"))?;
    report_dims(&graph.symbols, &dims);
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| format!("error: cannot create {}: {e}", dir.display()))?;
    }
    for (name, tensor) in &outputs {
        println!("{name}: {}", summary(tensor));
        if let Some(dir) = out {
            let path: PathBuf = dir.join(format!("{name}.npy"));
            npy::write_npy(&path, tensor).map_err(|e| format!("error: cannot write {}: {e}", path.display()))?;
            println!("  -> {}", path.display());
        }
    }
    Ok(())
}

/// `--input NAME=PATH` arguments, read and checked against the names of `inputs` (each
/// input's name and shape).
pub(crate) fn read_inputs(inputs: &[(&str, &Shape)], args: &[String]) -> Result<TensorMap, String> {
    let names: Vec<&str> = inputs.iter().map(|&(n, _)| n).collect();
    let mut map = TensorMap::new();
    for arg in args {
        let (name, path) = split_arg(arg, "--input", "NAME=PATH.npy")?;
        if !names.contains(&name) {
            return Err(format!(
                "error: --input {name}: the graph has no input `{name}` (its inputs: {})",
                names.join(", ")
            ));
        }
        let tensor = npy::read_npy(Path::new(path)).map_err(|e| format!("error: --input {name}: {path}: {e}"))?;
        if map.insert(name.to_string(), tensor).is_some() {
            return Err(format!("error: --input {name} is given twice"));
        }
    }
    Ok(map)
}

/// `--dim SYMBOL=VALUE` arguments.
pub(crate) fn parse_dim_args(symbols: &[Symbol], args: &[String]) -> Result<DimValues, String> {
    let mut dims = DimValues::new();
    for arg in args {
        let (name, value) = split_arg(arg, "--dim", "SYMBOL=VALUE")?;
        let Some(at) = symbols.iter().position(|s| s.name == name) else {
            let known: Vec<&str> = symbols.iter().map(|s| s.name.as_str()).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            return Err(format!("error: --dim {name}: the graph has no symbol `{name}` (its symbols: {known})"));
        };
        let value: u64 =
            value.parse().map_err(|_| format!("error: --dim {name}={value}: not a non-negative integer"))?;
        dims.insert(SymId(at as u32), value);
    }
    Ok(dims)
}

pub(crate) fn split_arg<'a>(arg: &'a str, flag: &str, form: &str) -> Result<(&'a str, &'a str), String> {
    arg.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("error: {flag} {arg}: expected {form}"))
}

/// Symbol values: explicit ones, then those read off the given inputs, then each bound.
/// `bind_dims` (or the runtime) checks the result against every input afterwards.
pub(crate) fn choose_dims(
    symbols: &[Symbol],
    inputs: &[(&str, &Shape)],
    given: &TensorMap,
    mut dims: DimValues,
) -> DimValues {
    for &(name, shape) in inputs {
        let Some(tensor) = given.get(name) else { continue };
        for (dim, &len) in shape.iter().zip(tensor.shape()) {
            if let ([s], 1) = (dim.syms.as_slice(), dim.coeff) {
                if dims.get(*s).is_none() {
                    dims.insert(*s, len as u64);
                }
            }
        }
    }
    for (i, sym) in symbols.iter().enumerate() {
        let id = SymId(i as u32);
        if dims.get(id).is_none() {
            dims.insert(id, sym.bound);
        }
    }
    dims
}

pub(crate) fn report_dims(symbols: &[Symbol], dims: &DimValues) {
    let shown: Vec<String> = symbols
        .iter()
        .enumerate()
        .filter_map(|(i, s)| dims.get(SymId(i as u32)).map(|v| format!("{}={v} (<= {})", s.name, s.bound)))
        .collect();
    if !shown.is_empty() {
        println!("dims: {}", shown.join(", "));
    }
}

/// `f32[2, 10] [0.0123, -0.98, ...]`: dtype, shape and the first values.
pub(crate) fn summary(t: &Tensor) -> String {
    let shape: Vec<String> = t.shape().iter().map(usize::to_string).collect();
    let values = t.to_f64_vec();
    let head: Vec<String> = values.iter().take(6).map(|v| format_value(*v)).collect();
    let more = if values.len() > 6 { format!(", ... ({} values)", values.len()) } else { String::new() };
    format!("{}[{}] [{}{more}]", t.dtype, shape.join(", "), head.join(", "))
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.6}")
    }
}
