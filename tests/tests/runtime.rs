//! The runtime against artifacts the compiler writes: every corruption of a file refused,
//! foreign targets and CPU features refused, bad inputs and weights refused with the error
//! that names them, weights from files and from the artifact, and sessions on many threads
//! giving bit-identical outputs.

use std::sync::OnceLock;

use flint_compiler::pipeline::{self, CompileOptions, Target};
use flint_compiler::{lower::llvm::Cpu, syntax};
use flint_runtime::artifact::{self, ArtifactError, SectionKind, Target as ArtifactTarget};
use flint_runtime::{DType, LoadOptions, Model, RuntimeError, TensorRef};

/// A batch of rows through a weight, a bias and a row softmax: three kernels, a param, a
/// symbol, an arena value.
const SOURCE: &str = "graph small(x: f32[N<=8, 16]) -> (y: f32[N, 4]) {
    param w: f32[16, 4]
    param b: f32[4]
    y = softmax(relu(x @ w + b) * 2.0, axis=-1)
}
";

fn compile(source: &str, embed_weights: Option<Vec<u8>>) -> Vec<u8> {
    let graph = syntax::compile_str(source).expect("the source compiles");
    let opts = CompileOptions { target: Some(Target::Cpu(Cpu::Native)), embed_weights, ..Default::default() };
    pipeline::compile(&graph, &opts).expect("the pipeline runs").artifact.expect("an artifact")
}

/// The small graph's artifact, compiled once for every test.
fn small() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| compile(SOURCE, None))
}

fn floats(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) * scale).collect()
}

fn loaded() -> Model {
    let mut model = Model::from_bytes(small(), &LoadOptions { threads: 2, ..Default::default() }).expect("loads");
    model.bind_weight("w", TensorRef::f32(&[16, 4], &floats(64, 0.05))).expect("w binds");
    model.bind_weight("b", TensorRef::f32(&[4], &floats(4, 0.1))).expect("b binds");
    model
}

fn refused(bytes: &[u8]) -> Option<RuntimeError> {
    Model::from_bytes(bytes, &LoadOptions { threads: 1, ..Default::default() }).err()
}

#[test]
fn every_single_byte_change_and_every_truncation_is_refused() {
    let bytes = small();
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0xFF] {
            let mut corrupt = bytes.to_vec();
            corrupt[at] ^= flip;
            assert!(refused(&corrupt).is_some(), "a change of byte {at} (^{flip:#x}) of {} was accepted", bytes.len());
        }
    }
    for len in 0..bytes.len() {
        let error = refused(&bytes[..len]).unwrap_or_else(|| panic!("a truncation to {len} bytes was accepted"));
        let text = error.to_string();
        assert!(len < 8 || text.contains("truncated") || text.contains("corrupt"), "truncation to {len}: {text}");
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(refused(&longer).is_some(), "a trailing byte was accepted");
}

#[test]
fn foreign_versions_targets_and_features_are_refused_by_name() {
    let mut bytes = small().to_vec();
    let foreign = artifact::FORMAT_VERSION + 1;
    bytes[8..12].copy_from_slice(&foreign.to_le_bytes());
    let e = refused(&bytes).expect("refused").to_string();
    let reads = format!("reads version {}", artifact::FORMAT_VERSION);
    assert!(e.contains(&format!("format version {foreign}")) && e.contains(&reads), "{e}");
    assert!(refused(b"PK\x03\x04 not an artifact").expect("refused").to_string().contains("not a Flint artifact"));

    let parsed = artifact::parse(small()).expect("parses");
    let sections: Vec<(SectionKind, &[u8])> =
        parsed.manifest.sections.iter().zip(&parsed.sections).map(|(s, r)| (s.kind, &small()[r.clone()])).collect();
    let with_target = |target: ArtifactTarget| {
        let mut m = parsed.manifest.clone();
        m.target = target;
        artifact::write(m, &sections)
    };
    let ArtifactTarget::Cpu { cpu, .. } = parsed.manifest.target.clone();
    let other_arch = if std::env::consts::ARCH == "aarch64" { "x86_64" } else { "aarch64" };
    let foreign = with_target(ArtifactTarget::Cpu { arch: other_arch.into(), cpu: cpu.clone(), features: vec![] });
    let e = refused(&foreign).expect("refused").to_string();
    assert!(e.contains(&format!("for {other_arch} CPUs")) && e.contains(std::env::consts::ARCH), "{e}");

    let lacking: Vec<String> = flint_runtime::cpu::CHECKED_FEATURES
        .iter()
        .filter(|f| flint_runtime::cpu::host_has_feature(f) == Some(false))
        .map(|f| f.to_string())
        .collect();
    match lacking.first() {
        Some(feature) => {
            let arch = std::env::consts::ARCH.to_string();
            let bytes = with_target(ArtifactTarget::Cpu { arch, cpu, features: vec![feature.clone()] });
            let e = refused(&bytes).expect("refused");
            assert!(
                matches!(&e, RuntimeError::Artifact(ArtifactError::MissingCpuFeatures { missing, .. }) if missing == std::slice::from_ref(feature)),
                "{e}"
            );
            assert!(e.to_string().contains(feature.as_str()), "{e}");
        }
        None => eprintln!("this CPU has every feature the runtime checks: the missing-feature case is not exercised"),
    }
    // The re-encoded manifest with the host's own target loads: the checks above refused the
    // target, not the re-encoding.
    let same = with_target(parsed.manifest.target.clone());
    assert!(refused(&same).is_none());
}

#[test]
fn bad_inputs_weights_and_dims_are_refused_with_their_names() {
    let model = loaded();
    let x = floats(3 * 16, 0.1);
    let mut s = model.session();
    let ok = s.run(&[("x", TensorRef::f32(&[3, 16], &x))]).expect("runs");
    assert_eq!(ok[0].1.shape, vec![3, 4]);

    let err = |r: Result<Vec<(String, flint_runtime::Tensor)>, RuntimeError>| r.expect_err("refused").to_string();
    let mut s = model.session();
    let e = err(s.run(&[("x", TensorRef::f32(&[3, 15], &x[..45]))]));
    assert!(e.contains("input `x`") && e.contains("axis 1") && e.contains("[N, 16]"), "{e}");
    let big = floats(9 * 16, 0.1);
    let e = err(s.run(&[("x", TensorRef::f32(&[9, 16], &big))]));
    assert!(e.contains("dim `N` = 9 is outside 1..=8"), "{e}");
    let e = err(s.run(&[("x", TensorRef::f32(&[0, 16], &[]))]));
    assert!(e.contains("dim `N` = 0"), "{e}");
    let e = err(s.run(&[("x", TensorRef::f32(&[48], &x))]));
    assert!(e.contains("input `x` has shape [48]"), "{e}");
    let ints = vec![0u8; 3 * 16 * 4];
    let e = err(s.run(&[("x", TensorRef::new(DType::I32, &[3, 16], &ints))]));
    assert!(e.contains("dtype i32") && e.contains("expects f32"), "{e}");
    let e = err(s.run(&[("x", TensorRef::new(DType::F32, &[3, 16], &ints[..100]))]));
    assert!(e.contains("100 bytes"), "{e}");
    let e = err(s.run(&[]));
    assert!(e.contains("input `x` is missing"), "{e}");
    let e = err(s.run(&[("x", TensorRef::f32(&[3, 16], &x)), ("z", TensorRef::f32(&[3, 16], &x))]));
    assert!(e.contains("no input `z`") && e.contains("its inputs: x"), "{e}");
    let e = err(s.run_with_dims(&[("x", TensorRef::f32(&[3, 16], &x))], &[("M", 3)]));
    assert!(e.contains("no symbol `M`"), "{e}");

    let mut out = vec![0u8; 3 * 4 * 4 - 1];
    let e = s.run_into(&[("x", TensorRef::f32(&[3, 16], &x))], &[], &mut [("y", &mut out)]).expect_err("refused");
    assert!(e.to_string().contains("needs 48"), "{e}");
    let mut out = vec![0u8; 48];
    s.run_into(&[("x", TensorRef::f32(&[3, 16], &x))], &[], &mut [("y", &mut out)]).expect("runs into a buffer");
    assert_eq!(out, ok[0].1.data, "run_into and run agree");

    let mut unbound = Model::from_bytes(small(), &LoadOptions::default()).expect("loads");
    let e = err(unbound.session().run(&[("x", TensorRef::f32(&[3, 16], &x))]));
    assert!(e.contains("weight `b` is not bound") || e.contains("weight `w` is not bound"), "{e}");
    let e = unbound.bind_weight("w", TensorRef::f32(&[4, 16], &floats(64, 0.1))).expect_err("refused").to_string();
    assert!(e.contains("weight `w` has shape [4, 16]") && e.contains("[16, 4]"), "{e}");
    let e = unbound.bind_weight("v", TensorRef::f32(&[4], &floats(4, 0.1))).expect_err("refused").to_string();
    assert!(e.contains("no param `v`") && e.contains("b, w"), "{e}");
}

fn safetensors_file(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| (n.to_string(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).expect("view"))
        })
        .collect();
    safetensors::serialize(views, None).expect("serializes")
}

#[test]
fn weights_from_a_file_and_from_the_artifact_give_the_same_outputs() {
    let (w, b) = (floats(64, 0.05), floats(4, 0.1));
    let file =
        safetensors_file(&[("w", vec![16, 4], w.clone()), ("b", vec![4], b.clone()), ("extra", vec![1], vec![0.0])]);
    let dir = std::env::temp_dir().join(format!("flint-runtime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let (weights, tgx) = (dir.join("small.safetensors"), dir.join("small.tgx"));
    std::fs::write(&weights, &file).expect("write weights");
    std::fs::write(&tgx, small()).expect("write artifact");

    let x = floats(5 * 16, 0.1);
    let inputs = [("x", TensorRef::f32(&[5, 16], &x))];
    let want = loaded().session().run(&inputs).expect("runs");
    let mut from_file = Model::load(&tgx).expect("loads from a file");
    from_file.bind_weights(&weights).expect("binds a safetensors file");
    assert_eq!(from_file.session().run(&inputs).expect("runs"), want);
    let embedded = Model::from_bytes(&compile(SOURCE, Some(file)), &LoadOptions::default()).expect("loads");
    assert_eq!(embedded.session().run(&inputs).expect("runs"), want);

    let wrong = safetensors_file(&[("w", vec![4, 16], w)]);
    std::fs::write(&weights, wrong).expect("write weights");
    let e = from_file.bind_weights(&weights).expect_err("refused").to_string();
    assert!(e.contains("weight `w` has shape [4, 16]"), "{e}");
    std::fs::write(&weights, b"not safetensors").expect("write weights");
    let e = from_file.bind_weights(&weights).expect_err("refused").to_string();
    assert!(e.contains("small.safetensors") && e.contains("not a safetensors file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sessions_on_many_threads_give_bit_identical_outputs() {
    let model = loaded();
    let x = floats(8 * 16, 0.1);
    let inputs = [("x", TensorRef::f32(&[8, 16], &x))];
    let want = model.session().run(&inputs).expect("runs");
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut session = model.session();
                for _ in 0..50 {
                    assert_eq!(session.run(&inputs).expect("runs"), want);
                }
            });
        }
    });
}

#[test]
fn the_runtime_depends_on_no_compiler_mlir_or_llvm() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::process::Command::new(cargo)
        .args(["tree", "-p", "flint-runtime", "--edges", "normal,build", "--prefix", "none", "--offline"])
        .current_dir(root)
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("cranelift-jit"), "{tree}");
    for banned in ["flint-compiler", "melior", "mlir-sys", "llvm-sys", "tblgen"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(&format!("{banned} "))),
            "flint-runtime depends on {banned}:\n{tree}"
        );
    }
}

#[test]
fn a_model_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Model>();
}

/// An artifact for the baseline CPU (`--cpu generic`: no FMA, no SSE4.1 on x86-64) records
/// no features, loads anywhere of its architecture and agrees with the native one.
#[test]
fn a_generic_cpu_artifact_runs_and_agrees_with_the_native_one() {
    let graph = syntax::compile_str(SOURCE).expect("the source compiles");
    let opts = CompileOptions { target: Some(Target::Cpu(Cpu::Generic)), ..Default::default() };
    let bytes = pipeline::compile(&graph, &opts).expect("the pipeline runs").artifact.expect("an artifact");
    let mut generic = Model::from_bytes(&bytes, &LoadOptions { threads: 1, ..Default::default() }).expect("loads");
    let ArtifactTarget::Cpu { cpu, features, .. } = &generic.manifest().target;
    assert_eq!((cpu.as_str(), features.len()), ("generic", 0));
    generic.bind_weight("w", TensorRef::f32(&[16, 4], &floats(64, 0.05))).expect("w binds");
    generic.bind_weight("b", TensorRef::f32(&[4], &floats(4, 0.1))).expect("b binds");
    let x = floats(7 * 16, 0.1);
    let inputs = [("x", TensorRef::f32(&[7, 16], &x))];
    let want = loaded().session().run(&inputs).expect("runs")[0].1.to_f32().expect("f32");
    let got = generic.session().run(&inputs).expect("runs")[0].1.to_f32().expect("f32");
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs(), "{g} vs {w}");
    }
}

/// The C API driven the way a careless or hostile caller would: NULLs, garbage and freed
/// handles, double frees, unknown names, bad dtypes, short buffers, runs after free. Each call
/// comes back with its status and a message; none crashes. Then several sessions of one
/// model run on several threads at once, and a session outlives its freed model.
#[test]
fn the_c_api_survives_hostile_calls() {
    use flint_runtime::capi::*;
    use std::ffi::{c_char, CStr, CString};
    use FlintStatus::*;
    let last = || unsafe { CStr::from_ptr(flint_last_error()) }.to_string_lossy().into_owned();
    let weights = safetensors_file(&[("w", vec![16, 4], floats(64, 0.05)), ("b", vec![4], floats(4, 0.1))]);
    let bytes = compile(SOURCE, Some(weights));
    let dir = std::env::temp_dir().join(format!("flint-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = CString::new(dir.join("small.tgx").to_string_lossy().into_owned()).expect("path");
    std::fs::write(dir.join("small.tgx"), &bytes).expect("write the artifact");
    unsafe {
        let mut model: *mut FlintModel = std::ptr::null_mut();
        assert_eq!(flint_model_load(std::ptr::null(), &mut model), FLINT_ERROR_INVALID_ARGUMENT);
        assert!(last().contains("path is NULL"), "{}", last());
        assert_eq!(flint_model_load(path.as_ptr(), std::ptr::null_mut()), FLINT_ERROR_INVALID_ARGUMENT);
        let missing = CString::new("/nonexistent/model.tgx").expect("path");
        assert_eq!(flint_model_load(missing.as_ptr(), &mut model), FLINT_ERROR_LOAD);
        assert!(last().contains("/nonexistent/model.tgx"), "{}", last());
        assert_eq!(flint_model_load_memory(b"not an artifact".as_ptr().cast(), 15, &mut model), FLINT_ERROR_LOAD);
        assert!(last().contains("not a Flint artifact"), "{}", last());
        let bogus = 0x1234usize as *mut FlintModel;
        let mut count = 0usize;
        assert_eq!(flint_model_count(bogus, FlintKind::FLINT_INPUT as u32, &mut count), FLINT_ERROR_INVALID_HANDLE);
        assert_eq!(flint_model_free(bogus), FLINT_ERROR_INVALID_HANDLE);
        assert_eq!(flint_model_free(std::ptr::null_mut()), FLINT_ERROR_INVALID_HANDLE);

        // Load options: a bad device or memory policy is named; a CPU-only artifact asked onto
        // a CUDA device fails to load with the reason (no driver here, or no PTX); zeroed and
        // NULL options are the defaults.
        let text = |s: &str| CString::new(s).expect("text");
        let (gpu, bogus, cuda, one) = (text("gpu"), text("bogus"), text("cuda"), text("cpu"));
        let options = |device: &CString, memory: Option<&CString>| FlintLoadOptions {
            threads: 1,
            device: device.as_ptr(),
            memory: memory.map_or(std::ptr::null(), |m| m.as_ptr()),
        };
        let with = |o: *const FlintLoadOptions, out: *mut *mut FlintModel| flint_model_load_with(path.as_ptr(), o, out);
        assert_eq!(with(&options(&gpu, None), &mut model), FLINT_ERROR_INVALID_ARGUMENT);
        assert!(last().contains("give cpu, cuda or cuda:N"), "{}", last());
        assert_eq!(with(&options(&one, Some(&bogus)), &mut model), FLINT_ERROR_INVALID_ARGUMENT);
        assert!(last().contains("give unified, discrete or host"), "{}", last());
        assert_eq!(with(&options(&cuda, None), &mut model), FLINT_ERROR_LOAD);
        assert!(last().contains("CUDA") || last().contains("PTX"), "{}", last());
        assert_eq!(with(&options(&one, None), std::ptr::null_mut()), FLINT_ERROR_INVALID_ARGUMENT);
        let zeroed = std::mem::zeroed::<FlintLoadOptions>();
        for o in [std::ptr::null(), &zeroed as *const _, &options(&one, None)] {
            assert_eq!(with(o, &mut model), FLINT_OK, "{}", last());
            assert_eq!(flint_model_free(model), FLINT_OK);
        }

        assert_eq!(flint_model_load(path.as_ptr(), &mut model), FLINT_OK);
        assert_eq!(last(), "");
        assert_eq!(flint_model_count(model, 7, &mut count), FLINT_ERROR_INVALID_ARGUMENT);
        assert_eq!(flint_model_count(model, FlintKind::FLINT_PARAM as u32, &mut count), FLINT_OK);
        assert_eq!(count, 2);
        let mut info = std::mem::zeroed::<FlintTensorInfo>();
        assert_eq!(flint_model_info(model, FlintKind::FLINT_INPUT as u32, 5, &mut info), FLINT_ERROR_INVALID_ARGUMENT);
        assert_eq!(flint_model_info(model, FlintKind::FLINT_INPUT as u32, 0, &mut info), FLINT_OK);
        assert_eq!(CStr::from_ptr(info.name).to_str(), Ok("x"));
        assert_eq!(info.rank, 2);
        let dims = std::slice::from_raw_parts(info.dims, 2);
        assert_eq!((dims[0].size, CStr::from_ptr(dims[0].symbol).to_str(), dims[0].bound), (0, Ok("N"), 8));
        assert_eq!((dims[1].size, dims[1].symbol.is_null(), dims[1].bound), (16, true, 16));

        let mut session: *mut FlintSession = std::ptr::null_mut();
        assert_eq!(flint_session_new(model, &mut session), FLINT_OK);
        let weights_path = CString::new("/nonexistent.safetensors").expect("path");
        assert_eq!(flint_model_bind_weights(model, weights_path.as_ptr()), FLINT_ERROR_INVALID_ARGUMENT);
        assert!(last().contains("sessions"), "{}", last());

        let x = floats(3 * 16, 0.1);
        let shape = [3usize, 16];
        let (xname, yname) = (CString::new("x").expect("name"), CString::new("y").expect("name"));
        let input = |name: *const c_char, dtype: u32, data: *const f32, bytes: usize| FlintInput {
            name,
            dtype,
            shape: shape.as_ptr(),
            rank: 2,
            data: data.cast(),
            bytes,
        };
        let good = input(xname.as_ptr(), FlintDType::FLINT_F32 as u32, x.as_ptr(), x.len() * 4);
        let mut y = vec![0f32; 3 * 4];
        let mut output = FlintOutput {
            name: yname.as_ptr(),
            data: y.as_mut_ptr().cast(),
            capacity: y.len() * 4,
            bytes: 0,
            rank: 0,
            shape: [0; FLINT_MAX_RANK],
        };
        let run = |s, i: &FlintInput, o: &mut FlintOutput| flint_session_run(s, i, 1, o, 1);
        assert_eq!(run(session, &good, &mut output), FLINT_OK, "{}", last());
        assert_eq!((output.bytes, output.rank, &output.shape[..2]), (48, 2, &[3usize, 4][..]));
        assert!(y.chunks(4).all(|row| (row.iter().sum::<f32>() - 1.0).abs() < 1e-5), "softmax rows: {y:?}");
        let expected = y.clone();

        let unknown = CString::new("z").expect("name");
        assert_eq!(run(session, &input(unknown.as_ptr(), 0, x.as_ptr(), 192), &mut output), FLINT_ERROR_INPUT);
        assert!(last().contains("`z`"), "{}", last());
        assert_eq!(
            run(session, &input(xname.as_ptr(), 99, x.as_ptr(), 192), &mut output),
            FLINT_ERROR_INVALID_ARGUMENT
        );
        assert_eq!(run(session, &input(xname.as_ptr(), 3, x.as_ptr(), 192), &mut output), FLINT_ERROR_INPUT);
        assert!(last().contains("dtype"), "{}", last());
        assert_eq!(
            run(session, &input(xname.as_ptr(), 0, std::ptr::null(), 192), &mut output),
            FLINT_ERROR_INVALID_ARGUMENT
        );
        assert_eq!(run(session, &input(xname.as_ptr(), 0, x.as_ptr(), 100), &mut output), FLINT_ERROR_INPUT);
        assert_eq!(
            run(session, &input(std::ptr::null(), 0, x.as_ptr(), 192), &mut output),
            FLINT_ERROR_INVALID_ARGUMENT
        );
        output.capacity = 8;
        assert_eq!(run(session, &good, &mut output), FLINT_ERROR_OUTPUT);
        assert!(last().contains("needs 48"), "{}", last());
        output.capacity = 48;
        let mut misnamed = FlintOutput { name: unknown.as_ptr(), ..output };
        assert_eq!(run(session, &good, &mut misnamed), FLINT_ERROR_OUTPUT);
        assert_eq!(flint_session_run(session, std::ptr::null(), 1, &mut output, 1), FLINT_ERROR_INVALID_ARGUMENT);

        // Sessions on four threads at once, each its own.
        let shared = model as usize;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let x = x.clone();
                std::thread::spawn(move || {
                    let mut session: *mut FlintSession = std::ptr::null_mut();
                    assert_eq!(flint_session_new(shared as *const FlintModel, &mut session), FLINT_OK);
                    let (xname, yname) = (CString::new("x").expect("name"), CString::new("y").expect("name"));
                    let shape = [3usize, 16];
                    let good = FlintInput {
                        name: xname.as_ptr(),
                        dtype: 0,
                        shape: shape.as_ptr(),
                        rank: 2,
                        data: x.as_ptr().cast(),
                        bytes: 192,
                    };
                    let mut y = vec![0f32; 12];
                    let mut out = FlintOutput {
                        name: yname.as_ptr(),
                        data: y.as_mut_ptr().cast(),
                        capacity: 48,
                        bytes: 0,
                        rank: 0,
                        shape: [0; FLINT_MAX_RANK],
                    };
                    for _ in 0..20 {
                        assert_eq!(flint_session_run(session, &good, 1, &mut out, 1), FLINT_OK);
                    }
                    assert_eq!(flint_session_free(session), FLINT_OK);
                    y
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("a session thread"), expected);
        }

        // The session keeps its model alive; after its own free it is a stale handle.
        assert_eq!(flint_model_free(model), FLINT_OK);
        assert_eq!(flint_model_free(model), FLINT_ERROR_INVALID_HANDLE);
        assert_eq!(flint_session_new(model, &mut session), FLINT_ERROR_INVALID_HANDLE);
        assert_eq!(run(session, &good, &mut output), FLINT_OK, "{}", last());
        assert_eq!(flint_session_free(session), FLINT_OK);
        assert_eq!(flint_session_free(session), FLINT_ERROR_INVALID_HANDLE);
        assert_eq!(run(session, &good, &mut output), FLINT_ERROR_INVALID_HANDLE);
        assert!(last().contains("session"), "{}", last());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
