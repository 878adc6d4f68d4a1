//! `flint import`, and loading `.onnx` models for the other commands.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flint_compiler::ir;
use flint_compiler::onnx::{self, ImportOptions, Imported};
use flint_compiler::{npy, syntax, weights};

/// The import options given once on the command line for every command: `--dim-bound
/// NAME=N` and `--freeze NAME=FILE.npy` values.
static GLOBAL: OnceLock<(Vec<String>, Vec<String>)> = OnceLock::new();

pub fn set_options(dim_bounds: Vec<String>, freeze: Vec<String>) {
    let _ = GLOBAL.set((dim_bounds, freeze));
}

fn options() -> Result<ImportOptions, String> {
    let mut options = ImportOptions::default();
    let (bounds, freeze) = GLOBAL.get().map(|(b, f)| (b.as_slice(), f.as_slice())).unwrap_or_default();
    for arg in bounds {
        let parsed = arg.split_once('=').and_then(|(k, v)| Some((k, v.parse::<u64>().ok().filter(|&n| n >= 1)?)));
        let Some((name, bound)) = parsed.filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("error: --dim-bound {arg}: expected NAME=N with N >= 1"));
        };
        options.dim_bounds.insert(name.to_string(), bound);
    }
    for arg in freeze {
        let Some((name, path)) = arg.split_once('=').filter(|(k, p)| !k.is_empty() && !p.is_empty()) else {
            return Err(format!("error: --freeze {arg}: expected NAME=FILE.npy"));
        };
        let value = npy::read_npy(Path::new(path)).map_err(|e| format!("error: --freeze {name}: {e}"))?;
        options.constants.insert(name.to_string(), value);
    }
    Ok(options)
}

/// Imports and verifies an ONNX model; errors come back as messages.
pub fn load(path: &Path) -> Result<Imported, String> {
    let imported = onnx::import_file(path, &options()?).map_err(|e| format!("error: {}: {e}", path.display()))?;
    ir::verify::verify(&imported.graph)
        .map_err(|e| format!("internal error: the imported graph does not verify: {e}"))?;
    Ok(imported)
}

/// Writes the model as Flint source and its initializers as a safetensors file.
pub fn run(model: &Path, output: Option<&Path>, weights_out: Option<&Path>) -> Result<(), String> {
    let imported = load(model)?;
    let weights_path: Option<PathBuf> = match (weights_out, output) {
        (Some(w), _) => Some(w.to_path_buf()),
        (None, Some(o)) if !imported.params.is_empty() => Some(o.with_extension("safetensors")),
        (None, None) if !imported.params.is_empty() => {
            return Err("error: the model has weights: give --weights-out FILE.safetensors (or -o FILE.tg)".into())
        }
        _ => None,
    };
    let file_name = |p: &Path| p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut header = vec![format!(
        "Imported from {} by `flint import` (ONNX opset {}{}).",
        file_name(model),
        imported.opset,
        if imported.producer.is_empty() { String::new() } else { format!(", produced by {}", imported.producer) }
    )];
    if let Some(w) = &weights_path {
        let tg = output.map_or_else(|| "MODEL.tg".to_string(), file_name);
        header.push(format!("Weights: {} (flint eval {tg} --weights {}).", file_name(w), file_name(w)));
    }
    let source = onnx::writer::write_source(&imported.graph, &header).map_err(|e| format!("error: {e}"))?;
    // The source must read back; anything else is a bug in the writer.
    syntax::compile_str(&source).map_err(|d| {
        let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
        format!("internal error: the written source does not compile: {first}")
    })?;
    if let Some(w) = &weights_path {
        weights::save_safetensors(w, &imported.params).map_err(|e| format!("error: {e}"))?;
    }
    match output {
        Some(o) => std::fs::write(o, &source).map_err(|e| format!("error: cannot write {}: {e}", o.display()))?,
        None => print!("{source}"),
    }
    if let Some(o) = output {
        let params = imported.params.len();
        let note = weights_path.map_or_else(String::new, |w| format!(", {params} weight(s) to {}", w.display()));
        eprintln!("wrote {}{note}", o.display());
    }
    Ok(())
}
