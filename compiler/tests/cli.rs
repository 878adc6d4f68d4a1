//! The `flint` binary as a user runs it: exit codes, messages, and `eval` against NumPy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flint_compiler::interp::{DimValues, TensorMap};
use flint_compiler::{npy, random, syntax, weights};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn flint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flint")).args(args).current_dir(repo()).output().expect("the flint binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flint-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn tg_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .expect("directory exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tg"))
        .collect();
    files.sort();
    files
}

#[test]
fn check_accepts_every_spec_example() {
    for file in tg_files("ir-spec/examples").into_iter().chain(tg_files("examples")) {
        let o = flint(&["check", file.to_str().unwrap_or_default()]);
        assert!(o.status.success(), "{} rejected:\n{}", file.display(), stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("->"), "no signature printed for {}", file.display());
    }
}

#[test]
fn check_rejects_every_bad_program_with_a_location() {
    let bad = tg_files("compiler/tests/bad");
    assert!(bad.len() >= 30, "only {} bad programs", bad.len());
    for file in bad {
        let o = flint(&["check", file.to_str().unwrap_or_default()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{} was not rejected with exit 1:\n{err}", file.display());
        assert!(err.contains("error"), "{}: no error message:\n{err}", file.display());
        assert!(!err.contains("panicked"), "{} panicked:\n{err}", file.display());
    }
}

#[test]
fn eval_of_the_mlp_matches_numpy() {
    let dir = scratch("mlp");
    let source = std::fs::read_to_string(repo().join("examples/mlp.tg")).expect("examples/mlp.tg");
    let graph = syntax::compile_str(&source).expect("mlp compiles");
    let dims: DimValues = [(flint_compiler::ir::SymId(0), 5)].into_iter().collect();
    let params = random::random_params(&graph, &dims, 11).expect("random weights");
    weights::save_safetensors(&dir.join("w.safetensors"), &params).expect("write weights");
    let inputs = random::random_inputs(&graph, &dims, 12).expect("random input");
    npy::write_npy(&dir.join("x.npy"), &inputs["x"]).expect("write input");

    let out = dir.join("out");
    let o = flint(&[
        "eval",
        "examples/mlp.tg",
        "--weights",
        dir.join("w.safetensors").to_str().unwrap_or_default(),
        "--input",
        &format!("x={}", dir.join("x.npy").display()),
        "--out",
        out.to_str().unwrap_or_default(),
    ]);
    assert!(o.status.success(), "flint eval failed:\n{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("probs: f32[5, 10]"));

    let reference = dir.join("numpy.npy");
    let py = Command::new("python3")
        .arg(repo().join("scripts/mlp_numpy.py"))
        .args([dir.join("w.safetensors"), dir.join("x.npy"), reference.clone()])
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs it with NumPy)");
    assert!(py.status.success(), "NumPy reference failed:\n{}", stderr(&py));

    let got = npy::read_npy(&out.join("probs.npy")).expect("flint wrote probs.npy").to_f64_vec();
    let want = npy::read_npy(&reference).expect("numpy wrote its output").to_f64_vec();
    assert_eq!(got.len(), 50);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs(), "probs[{i}]: flint {g} vs NumPy {w}");
    }
    // The data must be real: rows sum to one and are not all equal.
    assert!((got[..10].iter().sum::<f64>() - 1.0).abs() < 1e-5);
    assert!(got[..10].iter().any(|&p| (p - got[0]).abs() > 1e-4));
}

#[test]
fn eval_rejects_a_dim_above_its_bound() {
    let o = flint(&["eval", "examples/mlp.tg", "--dim", "N=65"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`N` = 65 is outside 1..=64"), "{}", stderr(&o));
}

#[test]
fn eval_rejects_unknown_names() {
    let o = flint(&["eval", "examples/mlp.tg", "--dim", "M=3"]);
    assert!(stderr(&o).contains("no symbol `M` (its symbols: N)"), "{}", stderr(&o));
    let o = flint(&["eval", "examples/mlp.tg", "--input", "y=nothing.npy"]);
    assert!(stderr(&o).contains("no input `y` (its inputs: x)"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn eval_reports_missing_weights_and_corrupt_inputs() {
    let dir = scratch("bad-data");
    let mut partial = TensorMap::new();
    let source = std::fs::read_to_string(repo().join("examples/mlp.tg")).expect("examples/mlp.tg");
    let graph = syntax::compile_str(&source).expect("mlp compiles");
    let dims: DimValues = [(flint_compiler::ir::SymId(0), 2)].into_iter().collect();
    let mut all = random::random_params(&graph, &dims, 1).expect("weights");
    partial.insert("w1".into(), all.remove("w1").expect("w1"));
    weights::save_safetensors(&dir.join("partial.safetensors"), &partial).expect("write");
    let o =
        flint(&["eval", "examples/mlp.tg", "--weights", dir.join("partial.safetensors").to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("b1"), "the missing param is not named:\n{}", stderr(&o));

    std::fs::write(dir.join("junk.npy"), b"\x93NUMPY\x01\x00garbage").expect("write");
    let o = flint(&["eval", "examples/mlp.tg", "--input", &format!("x={}", dir.join("junk.npy").display())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let o = flint(&["check", "no/such/file.tg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read no/such/file.tg"), "{}", stderr(&o));
}

#[test]
fn compile_runs_the_pipeline_and_dumps_on_request() {
    let dir = scratch("dumps");
    let o = flint(&[
        "compile",
        "examples/mlp.tg",
        "--target",
        "cpu",
        "--dump-after",
        "decompose",
        "--dump-all",
        dir.to_str().unwrap_or_default(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("graph mlp("));
    for pass in passes_in_order().iter().filter(|p| !GPU_STAGES.contains(&p.as_str())) {
        assert!(stderr(&o).contains(pass.as_str()), "no timing line for {pass}");
    }
    assert!(dir.join("00-input.ir").exists() && dir.join("01-decompose.ir").exists());
    let o = flint(&["compile", "examples/mlp.tg", "--dump-after", "fusion-typo"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such pass"));
}

/// Every stage `--list-passes` names can be dumped, and says what it is: IR after a graph
/// pass, kernels after fusion and schedule, the plan after memory-plan.
#[test]
fn every_listed_stage_can_be_dumped() {
    let stages = passes_in_order();
    let code = ["lower-cpu", "native-code", "lower-gpu", "ptx", "host-glue", "artifact"];
    let kernels = ["decompose", "simplify", "cse", "dce", "fusion", "schedule", "memory-plan"];
    assert_eq!(stages, kernels.iter().chain(&code).copied().collect::<Vec<_>>());
    for stage in &stages {
        let target: &[&str] = match stage.as_str() {
            s if GPU_STAGES.contains(&s) => &["--target", "sm_90"],
            s if code.contains(&s) => &["--target", "cpu"],
            _ => &[],
        };
        let o = flint(&[&["compile", "examples/mlp.tg", "--dump-after", stage], target].concat());
        assert!(o.status.success(), "{stage}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let head = match stage.as_str() {
            "fusion" => "kernel 0 ",
            "schedule" => "peak ",
            "memory-plan" => "arena ",
            "lower-cpu" => "module {",
            "native-code" => "shared object ",
            "lower-gpu" => "// ---- sm_90 ----\nmodule attributes {gpu.container_module}",
            "ptx" => "// ---- sm_90 ----",
            "host-glue" => "; host glue of `mlp`",
            "artifact" => "artifact `mlp`",
            _ => "graph mlp(",
        };
        assert!(out.starts_with(head), "{stage}: {out}");
    }
}

/// The stages only a GPU target runs.
const GPU_STAGES: [&str; 2] = ["lower-gpu", "ptx"];

fn passes_in_order() -> Vec<String> {
    let o = flint(&["compile", "--list-passes"]);
    String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.split_whitespace().nth(1).map(String::from)).collect()
}

#[test]
fn freeze_binds_an_onnx_input_that_carries_a_shape() {
    // ONNX's reshape test feeds the target shape as a graph input; Flint needs it at import.
    let case = repo().join("compiler/tests/onnx/test_reshape_negative_extended_dims");
    let model = case.join("model.onnx");
    let model = model.to_str().unwrap_or_default();
    let dir = scratch("freeze");
    let (_, data) = flint_compiler::onnx::read_tensor(&case.join("test_data_set_0/input_0.pb")).expect("data");
    let (_, shape) = flint_compiler::onnx::read_tensor(&case.join("test_data_set_0/input_1.pb")).expect("shape");
    npy::write_npy(&dir.join("data.npy"), &data).expect("write data");
    npy::write_npy(&dir.join("shape.npy"), &shape).expect("write shape");
    let freeze = format!("shape={}", dir.join("shape.npy").display());

    let o = flint(&["check", model]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("input 1 (`shape`) must be known at import time"), "{}", stderr(&o));
    assert!(stderr(&o).contains("(fix its value with --freeze shape=FILE.npy)"), "{}", stderr(&o));
    let o = flint(&["check", model, "--freeze", &freeze]);
    assert!(o.status.success(), "{}", stderr(&o));
    let signature = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(signature.contains("(data: f32[2, 3, 4]) -> (reshaped: f32[1, 2, 3, 4])"), "{signature}");

    let out = dir.join("out");
    let input = format!("data={}", dir.join("data.npy").display());
    let o = flint(&["eval", model, "--freeze", &freeze, "--input", &input, "--out", out.to_str().unwrap_or_default()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = npy::read_npy(&out.join("reshaped.npy")).expect("output");
    assert_eq!(got.shape(), &[1, 2, 3, 4]);
    assert_eq!(got.to_f64_vec(), data.to_f64_vec());

    let tg = dir.join("frozen.tg");
    let o = flint(&["import", model, "--freeze", &freeze, "-o", tg.to_str().unwrap_or_default()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let source = std::fs::read_to_string(&tg).expect("the source is written");
    assert!(source.contains("reshape(data, shape=[1, 2, 3, 4])"), "{source}");
    let o = flint(&["compile", model, "--freeze", &freeze]);
    assert!(o.status.success(), "{}", stderr(&o));

    for (arg, message) in [
        ("shape".to_string(), "--freeze shape: expected NAME=FILE.npy"),
        (
            format!("nope={}", dir.join("shape.npy").display()),
            "input `nope`: a value was given for it, but the model has no such input",
        ),
        ("shape=missing.npy".to_string(), "--freeze shape: "),
    ] {
        let o = flint(&["check", model, "--freeze", &arg]);
        assert_eq!(o.status.code(), Some(1), "{arg}");
        assert!(stderr(&o).contains(message), "{arg}: {}", stderr(&o));
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn npy_values(p: &Path) -> Vec<f64> {
    npy::read_npy(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).to_f64_vec()
}

/// `flint run` through a written artifact, and straight from source, agrees with `flint eval`
/// on the same options; `flint bench` prints its key=value line.
#[test]
fn run_through_the_artifact_agrees_with_eval() {
    let dir = scratch("run");
    let tgx = dir.join("mlp.tgx");
    let o = flint(&["compile", "examples/mlp.tg", "-o", path_str(&tgx)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("artifact ") && tgx.exists(), "{}", stderr(&o));
    for (file, out) in [(path_str(&tgx), "from-artifact"), ("examples/mlp.tg", "from-source")] {
        let run_dir = dir.join(out);
        let o = flint(&["run", file, "--dim", "N=5", "--seed", "3", "--threads", "2", "--out", path_str(&run_dir)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.starts_with("dims: N=5 (<= 64)\nprobs: f32[5, 10] ["), "{text}");
    }
    let eval_dir = dir.join("eval");
    let o = flint(&["eval", "examples/mlp.tg", "--dim", "N=5", "--seed", "3", "--out", path_str(&eval_dir)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = npy_values(&eval_dir.join("probs.npy"));
    for out in ["from-artifact", "from-source"] {
        let got = npy_values(&dir.join(out).join("probs.npy"));
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{out}: {g} vs {w}");
        }
    }
    let o = flint(&["bench", path_str(&tgx), "--iters", "3", "--warmup", "1", "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = String::from_utf8_lossy(&o.stdout);
    for key in [
        "median_ms=",
        "p90_ms=",
        "min_ms=",
        "iters=3 ",
        "threads=1 ",
        "kernels=3 ",
        "arena_bytes=",
        "load_and_first_run_ms=",
    ] {
        assert!(line.contains(key), "{key} missing: {line}");
    }
    let o = flint(&["compile", "examples/mlp.tg", "--target", "cpu", "--emit", "clif"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("; host glue of `mlp`"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every bad input to `flint run` is a message and exit status 1, never a panic (101) or a
/// signal.
#[test]
fn run_refuses_bad_input_with_a_message() {
    let dir = scratch("run-bad");
    let tgx = dir.join("mlp.tgx");
    assert!(flint(&["compile", "examples/mlp.tg", "-o", path_str(&tgx)]).status.success());
    let bytes = std::fs::read(&tgx).expect("artifact");
    let corrupt = dir.join("corrupt.tgx");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    std::fs::write(&corrupt, &flipped).expect("write");
    let truncated = dir.join("truncated.tgx");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).expect("write");
    let wrong_x = dir.join("x.npy");
    npy::write_npy(&wrong_x, &flint_compiler::interp::Tensor::zeros(flint_compiler::ir::DType::F32, &[2, 783]))
        .expect("write");
    let int_x = dir.join("xi.npy");
    npy::write_npy(&int_x, &flint_compiler::interp::Tensor::zeros(flint_compiler::ir::DType::I32, &[2, 784]))
        .expect("write");
    let wrong_w = dir.join("w.safetensors");
    let mut tensors = TensorMap::new();
    tensors.insert("w1".into(), flint_compiler::interp::Tensor::zeros(flint_compiler::ir::DType::F32, &[784, 255]));
    weights::save_safetensors(&wrong_w, &tensors).expect("write");
    let t = path_str(&tgx);
    let (x_wrong, x_int, y_wrong) =
        (format!("x={}", path_str(&wrong_x)), format!("x={}", path_str(&int_x)), format!("y={}", path_str(&wrong_x)));
    let (absent, embedded) = (dir.join("absent.tgx"), dir.join("e.tgx"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", path_str(&corrupt)], "corrupt"),
        (vec!["run", path_str(&truncated)], "truncated"),
        (vec!["run", t, "--dim", "N=65"], "dim `N` = 65 is outside 1..=64"),
        (vec!["run", t, "--dim", "M=2"], "no symbol `M`"),
        (vec!["run", t, "--input", &x_wrong], "input `x` has shape [2, 783]"),
        (vec!["run", t, "--input", &x_int], "input `x` has dtype i32"),
        (vec!["run", t, "--input", &y_wrong], "no input `y`"),
        (vec!["run", t, "--weights", path_str(&wrong_w)], "weight `w1` has shape [784, 255]"),
        (vec!["run", path_str(&absent)], "No such file"),
        (vec!["bench", path_str(&corrupt)], "corrupt"),
        (vec!["compile", "examples/mlp.tg", "--embed-weights", "-o", path_str(&embedded)], "--weights"),
    ];
    for (args, message) in cases {
        let o = flint(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: expected `{message}` in: {}", stderr(&o));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// MLIR and LLVM run in a child process of `flint` (`lower::llvm::set_worker`): when LLVM
/// gives up with a fatal error, which ends its process, the caller gets an error naming the
/// module's kernels and what LLVM said, and lives on. An inline-assembly line that is no
/// instruction makes LLVM's code generator stop the process (`LLVM ERROR`).
#[test]
fn an_llvm_abort_in_the_worker_is_an_error_naming_the_kernels() {
    use flint_compiler::lower::{llvm, LowerError};
    let module = "module {\n  // kernel 7 (elementwise)\n  llvm.func @f() {\n    llvm.inline_asm has_side_effects \"not_an_instruction %eax\", \"\" : () -> ()\n    llvm.return\n  }\n}\n";
    llvm::set_worker(Some(PathBuf::from(env!("CARGO_BIN_EXE_flint"))));
    let result = llvm::compile(module, &llvm::Cpu::Native, llvm::Output::Object);
    llvm::set_worker(None);
    let error = result.expect_err("no object from an invalid instruction");
    let text = error.to_string();
    assert!(matches!(error, LowerError::Crashed { .. }), "{text}");
    assert!(text.contains("kernel 7 (elementwise)"), "{text}");
    assert!(text.contains("aborted (SIGABRT, signal 6)") && text.contains("LLVM ERROR"), "{text}");
}

/// A GPU artifact (PTX for three SMs beside the CPU code) runs on the CPU, and on a CUDA
/// device when the machine has one, agreeing with the CPU under every memory policy. Without
/// a CUDA driver, `--device cuda` fails with a clear message and `--device auto` runs on the
/// CPU; the GPU half then reports that it skipped.
#[test]
fn a_gpu_artifact_runs_on_the_cpu_and_on_cuda_when_present() {
    let dir = scratch("gpu-artifact");
    let artifact = dir.join("mlp.tgx");
    let built =
        flint(&["compile", "examples/mlp.tg", "--target", "sm_80,sm_90,sm_121", "-o", &artifact.to_string_lossy()]);
    assert!(built.status.success(), "{}", stderr(&built));
    let run = |device: &str, memory: Option<&str>, out: &str| {
        let out = dir.join(out);
        let mut args = vec!["run", artifact.to_str().unwrap_or_default(), "--device", device, "--out"];
        let out_text = out.to_string_lossy().into_owned();
        args.push(&out_text);
        if let Some(m) = memory {
            args.extend(["--memory", m]);
        }
        (flint(&args), out.join("probs.npy"))
    };
    let (cpu, cpu_probs) = run("cpu", None, "cpu");
    assert!(cpu.status.success(), "{}", stderr(&cpu));
    let (auto, _) = run("auto", None, "auto");
    assert!(auto.status.success(), "{}", stderr(&auto));
    let want = npy::read_npy(&cpu_probs).expect("probs.npy").to_f64_vec();
    for memory in ["unified", "discrete", "host"] {
        let (cuda, probs) = run("cuda", Some(memory), memory);
        if stderr(&cuda).contains("no CUDA driver") || stderr(&cuda).contains("no CUDA device") {
            assert!(!cuda.status.success());
            eprintln!("note: no CUDA driver or device here; the CUDA run ({memory} memory) was skipped");
            continue;
        }
        assert!(cuda.status.success(), "{memory}: {}", stderr(&cuda));
        let got = npy::read_npy(&probs).expect("probs.npy").to_f64_vec();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{memory}: cuda {g} vs cpu {w}");
        }
    }
}
