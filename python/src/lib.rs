//! `flint._native`: the compiler and the runtime for Python. The `flint` package
//! (`python/flint/__init__.py`) wraps it: it maps dtypes, makes arrays C-contiguous (a no-op,
//! and no copy, when they already are) and shapes the outputs.
//!
//! Inputs are read in place: the runtime gets each array's own buffer. Outputs come back as
//! the runtime's byte vectors moved into NumPy `uint8` arrays, which the package views as the
//! output's dtype and shape without copying.

use std::path::Path;
use std::sync::Arc;

use numpy::{PyArray1, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use flint_compiler::lower::gpu::Sm;
use flint_compiler::lower::llvm::Cpu;
use flint_compiler::onnx::{self, ImportOptions};
use flint_compiler::pipeline::{self, CompileOptions, Target};
use flint_runtime::artifact::DType;
use flint_runtime::{DeviceChoice, LoadOptions, MemoryPolicy, TensorRef};

create_exception!(_native, FlintError, PyException, "An error from the Flint compiler or runtime.");

/// `(kind, name, dtype, shape)` of a signature entry; shape entries are ints or strings.
type Entry = (String, String, String, Vec<Py<PyAny>>);
/// `(name, dtype, shape, bytes)` of an output.
type OutputEntry<'py> = (String, String, Vec<usize>, Bound<'py, PyArray1<u8>>);

fn error(e: impl std::fmt::Display) -> PyErr {
    FlintError::new_err(e.to_string())
}

/// A loaded artifact.
#[pyclass(module = "flint._native", frozen)]
struct Model {
    inner: Arc<flint_runtime::Model>,
}

/// A model's working memory; runs one at a time.
#[pyclass(module = "flint._native", unsendable)]
struct Session {
    // Declared first, so dropped before the model it borrows.
    session: flint_runtime::Session<'static>,
    _model: Arc<flint_runtime::Model>,
}

fn parse_dtype(name: &str) -> PyResult<DType> {
    DType::parse(name).ok_or_else(|| error(format!("unknown dtype `{name}`")))
}

fn device(name: &str) -> PyResult<DeviceChoice> {
    DeviceChoice::parse(name).ok_or_else(|| error(format!("device `{name}`: give cpu, cuda or cuda:N")))
}

/// The load options `device`, `threads` and `memory` (a CUDA memory policy) name.
fn load_options(device: &str, threads: usize, memory: Option<&str>) -> PyResult<LoadOptions> {
    let memory = memory
        .map(|m| MemoryPolicy::parse(m).ok_or_else(|| error(format!("memory `{m}`: give unified, discrete or host"))))
        .transpose()?;
    Ok(LoadOptions { threads, device: self::device(device)?, memory })
}

#[pymethods]
impl Model {
    /// `(kind, name, dtype, shape)` for every input, param and output: a shape's entries are
    /// ints, or strings such as `"N"` for symbolic axes.
    fn signature<'py>(&self, py: Python<'py>) -> PyResult<Vec<Entry>> {
        let m = self.inner.manifest();
        m.regions
            .iter()
            .map(|r| {
                let value = m.region_value(r);
                let shape = value
                    .shape
                    .iter()
                    .map(|d| {
                        Ok(if d.syms.is_empty() {
                            d.coeff.into_pyobject(py)?.into_any().unbind()
                        } else {
                            d.display(&m.symbols).to_string().into_pyobject(py)?.into_any().unbind()
                        })
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                Ok((r.kind.name().to_string(), r.name.clone(), value.dtype.name().to_string(), shape))
            })
            .collect()
    }

    /// Each symbol's name and bound.
    fn symbols(&self) -> Vec<(String, u64)> {
        self.inner.manifest().symbols.iter().map(|s| (s.name.clone(), s.bound)).collect()
    }

    /// A new session.
    fn session(&self) -> Session {
        let owner = self.inner.clone();
        // SAFETY: the session borrows the model inside `owner`'s allocation, which the
        // session keeps alive and drops after itself (field order).
        let borrowed: &'static flint_runtime::Model = unsafe { &*(Arc::as_ptr(&owner)) };
        Session { session: borrowed.session(), _model: owner }
    }
}

#[pymethods]
impl Session {
    /// Runs on `inputs` (name → C-contiguous array of the input's dtype) and returns
    /// `(name, dtype, shape, bytes)` per output, `bytes` a `uint8` array.
    #[pyo3(signature = (inputs, dims=None))]
    fn run<'py>(
        &mut self,
        py: Python<'py>,
        inputs: Vec<(String, Bound<'py, PyUntypedArray>, String)>,
        dims: Option<Vec<(String, u64)>>,
    ) -> PyResult<Vec<OutputEntry<'py>>> {
        let mut refs = Vec::with_capacity(inputs.len());
        for (name, array, dtype) in &inputs {
            if !array.is_c_contiguous() {
                return Err(error(format!("input `{name}` is not C-contiguous")));
            }
            let len = array.len() * array.dtype().itemsize();
            // SAFETY: a C-contiguous array's data pointer addresses `len` bytes, alive while
            // `inputs` holds the array (for the whole run).
            let data =
                unsafe { std::slice::from_raw_parts((*array.as_array_ptr()).data.cast::<u8>().cast_const(), len) };
            refs.push((name.as_str(), TensorRef::new(parse_dtype(dtype)?, array.shape(), data)));
        }
        let dims = dims.unwrap_or_default();
        let dims: Vec<(&str, u64)> = dims.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let outputs = self.session.run_with_dims(&refs, &dims).map_err(error)?;
        Ok(outputs
            .into_iter()
            .map(|(name, t)| (name, t.dtype.name().to_string(), t.shape, PyArray1::from_vec(py, t.data)))
            .collect())
    }

    /// Bytes the last run copied between host and device.
    fn copied_bytes(&self) -> u64 {
        self.session.copied_bytes()
    }
}

/// Loads a `.tgx` artifact; `weights` binds a safetensors file.
#[pyfunction]
#[pyo3(signature = (path, weights=None, device="cpu", threads=0, memory=None))]
fn load(path: &str, weights: Option<&str>, device: &str, threads: usize, memory: Option<&str>) -> PyResult<Model> {
    let options = load_options(device, threads, memory)?;
    let mut model = flint_runtime::Model::load_with(path, &options).map_err(|e| error(format!("{path}: {e}")))?;
    if let Some(w) = weights {
        model.bind_weights(w).map_err(error)?;
    }
    Ok(Model { inner: Arc::new(model) })
}

/// Compiles Flint source text, a `.tg` file or an `.onnx` model (its weights embedded) for
/// `target` (`cpu`, or GPU SMs such as `sm_90,sm_121` beside the CPU code); writes the
/// artifact to `output` when given, and returns it loaded.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (source, target="cpu", dim_bounds=None, output=None, weights=None, device="cpu", threads=0, memory=None))]
fn compile(
    source: &str,
    target: &str,
    dim_bounds: Option<Vec<(String, u64)>>,
    output: Option<&str>,
    weights: Option<&str>,
    device: &str,
    threads: usize,
    memory: Option<&str>,
) -> PyResult<Model> {
    let path = Path::new(source);
    let (graph, embedded) = if onnx::is_onnx_path(path) {
        let options =
            ImportOptions { dim_bounds: dim_bounds.unwrap_or_default().into_iter().collect(), ..Default::default() };
        let imported = onnx::import_file(path, &options).map_err(|e| error(format!("{source}: {e}")))?;
        let weights = flint_compiler::weights::serialize_safetensors(&imported.params).map_err(error)?;
        (imported.graph, (!imported.params.is_empty()).then_some(weights))
    } else {
        let (name, text) = if source.ends_with(".tg") && path.is_file() {
            (source.to_string(), std::fs::read_to_string(path).map_err(|e| error(format!("{source}: {e}")))?)
        } else {
            ("<source>".to_string(), source.to_string())
        };
        let graph = flint_compiler::syntax::compile_str(&text)
            .map_err(|d| error(flint_compiler::diag::render_with(&name, &text, &d, false)))?;
        (graph, None)
    };
    let target = match target {
        "cpu" => Target::Cpu(Cpu::Native),
        sms => Target::Gpu {
            sms: sms.split(',').map(Sm::parse).collect::<Result<_, _>>().map_err(error)?,
            cpu: Cpu::Native,
        },
    };
    let opts = CompileOptions { target: Some(target), embed_weights: embedded, ..Default::default() };
    let compiled = pipeline::compile(&graph, &opts).map_err(error)?;
    let bytes = compiled.artifact.ok_or_else(|| error("the pipeline made no artifact"))?;
    if let Some(out) = output {
        std::fs::write(out, &bytes).map_err(|e| error(format!("{out}: {e}")))?;
    }
    let options = load_options(device, threads, memory)?;
    let mut model = flint_runtime::Model::from_bytes(&bytes, &options).map_err(error)?;
    if let Some(w) = weights {
        model.bind_weights(w).map_err(error)?;
    }
    Ok(Model { inner: Arc::new(model) })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FlintError", m.py().get_type::<FlintError>())?;
    m.add_class::<Model>()?;
    m.add_class::<Session>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
