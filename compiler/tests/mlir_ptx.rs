//! Lowers a small real kernel through MLIR to PTX for the chips Flint targets and, when
//! `ptxas` is available, assembles the PTX to prove it is valid.
//!
//! `ptxas` is looked up in this order: the `FLINT_PTXAS` environment variable (a path), then
//! `PATH`, then the `nvidia-cuda-nvcc` package from the Python registry (installed by
//! `scripts/install-deps.sh`), located through `python3`'s `importlib.metadata`. When none is
//! found the assembly step is skipped with a note, unless `CI` or `FLINT_REQUIRE_PTXAS` is set,
//! in which case the test fails.
#![cfg(feature = "mlir")]

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use flint_compiler::mlir::{gpu_module_to_ptx, MlirError};

/// c[i] = a[i] + b[i] for i < n, one thread per element.
const VECTOR_ADD: &str = r#"
module attributes {gpu.container_module} {
  gpu.module @kernels {
    gpu.func @vadd(%a: memref<?xf32>, %b: memref<?xf32>, %c: memref<?xf32>, %n: index) kernel {
      %tid = gpu.thread_id x
      %bid = gpu.block_id x
      %bdim = gpu.block_dim x
      %base = arith.muli %bid, %bdim : index
      %i = arith.addi %base, %tid : index
      %in_bounds = arith.cmpi ult, %i, %n : index
      scf.if %in_bounds {
        %x = memref.load %a[%i] : memref<?xf32>
        %y = memref.load %b[%i] : memref<?xf32>
        %s = arith.addf %x, %y : f32
        memref.store %s, %c[%i] : memref<?xf32>
      }
      gpu.return
    }
  }
}
"#;

#[test]
fn vector_add_sm90() {
    lower_and_assemble("sm_90", "+ptx80", "8.0", "sm_90a");
}

#[test]
fn vector_add_sm121() {
    lower_and_assemble("sm_121", "+ptx88", "8.8", "sm_121a");
}

/// LLVM aborts the process on a PTX version too old for the chip; the API must refuse it first.
#[test]
fn too_old_ptx_version_is_an_error_not_an_abort() {
    let result = gpu_module_to_ptx(VECTOR_ADD, "sm_121", "+ptx80");
    assert!(matches!(result, Err(MlirError::InvalidTarget(_))), "{result:?}");
}

#[test]
fn two_gpu_modules_are_ambiguous() {
    let two = VECTOR_ADD.replacen("gpu.module @kernels {", "gpu.module @empty {\n  }\n  gpu.module @kernels {", 1);
    let result = gpu_module_to_ptx(&two, "sm_90", "+ptx80");
    assert!(matches!(result, Err(MlirError::MultiplePtx(2))), "{result:?}");
}

/// Every example through the whole pipeline for sm_80, sm_90 and sm_121: the GPU module is
/// snapshotted (`<example>@10-lower-gpu`, after MLIR verified it), and the PTX of every kernel
/// (one `.entry` each) is accepted by `ptxas` for the arch-specific variant of each chip
/// (`sm_80`, `sm_90a`, `sm_121a`).
#[test]
fn every_example_assembles_for_every_sm() {
    use flint_compiler::lower::gpu::SMS;
    use flint_compiler::lower::llvm::Cpu;
    use flint_compiler::pipeline::{compile, CompileOptions, Target};
    let ptxas = find_ptxas();
    let target = Some(Target::Gpu { sms: SMS.to_vec(), cpu: Cpu::Native });
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("examples_ptx");
    std::fs::create_dir_all(&out).expect("scratch dir");
    insta::glob!("../../ir-spec/examples", "*.tg", |path| {
        let label = path.display().to_string();
        let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let graph = flint_compiler::syntax::compile_str(&std::fs::read_to_string(path).expect("readable"))
            .unwrap_or_else(|_| panic!("{label} compiles"));
        let opts = CompileOptions { target: target.clone(), keep_dumps: true, verify: true, ..Default::default() };
        let c = compile(&graph, &opts).unwrap_or_else(|e| panic!("{label}: {e}"));
        let (i, lowered) = c.stages.iter().enumerate().find(|(_, r)| r.name == "lower-gpu").expect("a lower-gpu stage");
        insta::with_settings!({ prepend_module_to_snapshot => false, snapshot_suffix => "", omit_expression => true }, {
            insta::assert_snapshot!(format!("{stem}@{:02}-lower-gpu", i + 1), lowered.dump.clone().unwrap_or_default());
        });
        assert_eq!(c.ptx.len(), SMS.len(), "{label}");
        for (sm, ptx) in &c.ptx {
            assert_eq!(
                ptx.matches(".entry ").count(),
                c.gpu.first().map_or(0, |(_, m)| m.functions),
                "{label} {}",
                sm.name
            );
            let Some(ptxas) = &ptxas else { continue };
            let name = format!("{stem}_{}", sm.name);
            assemble(ptxas, ptx, sm.ptxas_arch, &out.join(format!("{name}.ptx")), &out.join(format!("{name}.cubin")));
        }
    });
    if ptxas.is_none() {
        no_ptxas("the examples");
    }
}

/// The contraction kernels of f16 and bf16 graphs run on tensor cores for every SM: each
/// `.entry` of `half_matmul`'s two matmuls holds `mma.sync.m16n8k16` with f32 accumulators of
/// its dtype, fed by `ldmatrix` from shared memory filled by `cp.async` (`bar.sync` between the
/// steps), and ptxas accepts it; so does an f16 convolution (an implicit GEMM); an f32 matmul
/// does not use them. Their 80 or 48 columns take 128 × 64 tiles on every SM: a 32-deep step
/// of a warp's 32 × 32 is 2 × 4 products twice, an `ldmatrix.x4` per 16 rows of the warp's `a`
/// and an `x2.trans` per 8 columns of its `b`.
#[test]
fn half_precision_contractions_run_on_tensor_cores() {
    let ptxas = find_ptxas();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tensor_core_ptx");
    std::fs::create_dir_all(&out).expect("scratch dir");
    let half =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples/half_matmul.tg"))
            .expect("readable");
    // Products, `ldmatrix.x4` and `.x2.trans` of one step of one kernel.
    let (products, x4, x2) = (16, 4, 8);
    for (sm, ptx) in &ptx_for_every_sm(&half) {
        let mma =
            |dtype: &str| ptx.matches(&format!("mma.sync.aligned.m16n8k16.row.col.f32.{dtype}.{dtype}.f32")).count();
        assert_eq!(mma("f16"), products, "{}", sm.name);
        // The bf16 product has 40 rows, fewer than a tile's: LLVM drops the products of warps'
        // rows it proves past them.
        assert!((1..=products).contains(&mma("bf16")), "{}: {} bf16 products", sm.name, mma("bf16"));
        assert_eq!(ptx.matches("ldmatrix.sync.aligned.m8n8.x4.shared.b16").count(), 2 * x4, "{}", sm.name);
        assert_eq!(ptx.matches("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16").count(), 2 * x2, "{}", sm.name);
        assert!(ptx.contains("bar.sync"), "{}", sm.name);
        // `x @ w` reads both operands straight from its inputs: 16-byte `cp.async` copies,
        // software-pipelined (the next step in flight while this one multiplies).
        assert!(ptx.contains("cp.async.cg.shared.global") && ptx.contains("cp.async.wait_group"), "{}", sm.name);
        if let Some(ptxas) = &ptxas {
            let name = format!("half_matmul_{}", sm.name);
            assemble(ptxas, ptx, sm.ptxas_arch, &out.join(format!("{name}.ptx")), &out.join(format!("{name}.cubin")));
        }
    }
    // A convolution of one group is an implicit GEMM on the same tiles.
    let conv = "graph g(x: f16[2, 8, 12, 12], w: f16[16, 8, 3, 3], b: f16[16]) -> (y: f16[2, 16, 12, 12]) {\n    \
                y = relu(conv2d(x, w, b, padding=[1, 1, 1, 1]))\n}\n";
    for (sm, ptx) in &ptx_for_every_sm(conv) {
        let mma = ptx.matches("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32").count();
        assert_eq!(mma, products, "{}", sm.name);
    }
    // f32 runs on FFMA tiles from shared memory, not on tensor cores (TF32 would break the f32
    // numerics contract).
    let single = "graph g(x: f32[64, 64], w: f32[64, 64]) -> (y: f32[64, 64]) {\n    y = x @ w\n}\n";
    for (sm, ptx) in &ptx_for_every_sm(single) {
        assert!(!ptx.contains("mma.sync"), "{}: an f32 matmul on tensor cores", sm.name);
        assert!(ptx.contains("ld.shared") && ptx.contains("bar.sync"), "{}: no shared-memory tiles", sm.name);
    }
    if ptxas.is_none() {
        no_ptxas("the tensor-core kernels");
    }
}

/// A GEMM's tiles are sized to its SM's shared memory and to the GEMM, and the block asks for
/// them at launch (dynamic shared memory: the manifest records each SM's bytes and functions,
/// the PTX declares the `.extern` array and two blocks a multiprocessor); ptxas keeps every
/// GEMM kernel within the registers two blocks of 256 threads leave it (128).
#[test]
fn gemm_tiles_are_sized_to_each_sm() {
    let half = "graph g(x: f16[512, 256], w: f16[256, 512]) -> (y: f16[512, 512]) {\n    y = x @ w\n}\n";
    let single = "graph g(x: f32[512, 256], w: f32[256, 512]) -> (y: f32[512, 512]) {\n    y = x @ w\n}\n";
    let narrow = "graph g(x: f16[512, 256], w: f16[256, 48]) -> (y: f16[512, 48]) {\n    y = x @ w\n}\n";
    // 4 stages of 128 × 128 where 164 or 228 KiB hold two blocks; 3 of 128 × 64 in GB10's 100;
    // a GEMM of 48 columns takes the narrower tile on every SM.
    let cases = [
        (half, [(80, 75776), (90, 75776), (121, 44544)], [32, 32, 16]),
        (single, [(80, 65536), (90, 65536), (121, 49152)], [0, 0, 0]),
        (narrow, [(80, 59392), (90, 59392), (121, 44544)], [16, 16, 16]),
    ];
    let ptxas = find_ptxas();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gemm_tiles_ptx");
    std::fs::create_dir_all(&out).expect("scratch dir");
    for (case, (source, shared, products)) in cases.into_iter().enumerate() {
        let c = compile_for_every_sm(source);
        let manifest = c.manifest.as_ref().expect("a manifest");
        let [k] = &manifest.kernels[..] else { panic!("case {case}: one kernel") };
        let bytes: Vec<(u32, u64)> = k.gpu.iter().map(|f| (f.sm, f.shared_bytes)).collect();
        assert_eq!(bytes, shared, "case {case}");
        for (((sm, ptx), f), products) in c.ptx.iter().zip(&k.gpu).zip(products) {
            assert!(ptx.contains(&format!(".entry {}(", f.symbol)), "case {case} {}: {}", sm.name, f.symbol);
            assert!(ptx.contains(".extern .shared .align 16 .b8 flint_shared[];"), "case {case} {}", sm.name);
            assert!(ptx.contains(".minnctapersm 2"), "case {case} {}", sm.name);
            assert_eq!(ptx.matches("mma.sync.aligned.m16n8k16").count(), products, "case {case} {}", sm.name);
            let Some(ptxas) = &ptxas else { continue };
            let registers = registers(ptxas, ptx, sm.ptxas_arch, &out.join(format!("{case}_{}", sm.name)));
            assert!(registers.iter().all(|&r| r <= 128), "case {case} {}: {registers:?} registers", sm.name);
        }
    }
    // The examples' GEMMs too, and every kernel names a function of each SM's PTX.
    for example in ["half_matmul", "gpt2_block"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../ir-spec/examples/{example}.tg"));
        let c = compile_for_every_sm(&std::fs::read_to_string(path).expect("readable"));
        let manifest = c.manifest.as_ref().expect("a manifest");
        for (gpu, (sm, ptx)) in c.ptx.iter().enumerate() {
            for k in &manifest.kernels {
                let f = &k.gpu[gpu];
                assert_eq!(f.sm, sm.capability(), "{example} {}", k.name);
                assert!(ptx.contains(&format!(".entry {}(", f.symbol)), "{example} {}: {}", k.name, f.symbol);
            }
            let Some(ptxas) = &ptxas else { continue };
            let registers = registers(ptxas, ptx, sm.ptxas_arch, &out.join(format!("{example}_{}", sm.name)));
            assert_eq!(registers.len(), ptx.matches(".entry ").count(), "{example} {}", sm.name);
        }
    }
    if ptxas.is_none() {
        no_ptxas("the GEMM tiles' registers");
    }
}

/// `source` compiled for every SM Flint targets, to an artifact.
fn compile_for_every_sm(source: &str) -> flint_compiler::pipeline::Compiled {
    use flint_compiler::lower::gpu::SMS;
    use flint_compiler::lower::llvm::Cpu;
    use flint_compiler::pipeline::{compile, CompileOptions, Target};
    let graph = flint_compiler::syntax::compile_str(source).expect("compiles");
    let target = Some(Target::Gpu { sms: SMS.to_vec(), cpu: Cpu::Native });
    compile(&graph, &CompileOptions { target, ..Default::default() }).expect("lowers")
}

/// Each kernel's registers, as `ptxas -v` reports them for `ptx` assembled at `stem`.ptx.
fn registers(ptxas: &Path, ptx: &str, arch: &str, stem: &Path) -> Vec<u32> {
    std::fs::write(stem.with_extension("ptx"), ptx).expect("scratch file");
    let output = Command::new(ptxas)
        .args([format!("-arch={arch}"), "-v".into()])
        .arg(stem.with_extension("ptx"))
        .arg("-o")
        .arg(stem.with_extension("cubin"))
        .output()
        .expect("ptxas runs");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {said}", stem.display());
    said.lines().filter_map(|l| l.split("Used ").nth(1)?.split(" registers").next()?.parse().ok()).collect()
}

/// Long rows run a block per row: the row is read from global memory once into shared memory
/// (softmax's three passes then read shared memory), and the warps' partial reductions meet
/// in shared memory between barriers; short rows keep a warp per row, without barriers.
#[test]
fn long_rows_run_a_block_per_row_from_shared_memory() {
    let ptxas = find_ptxas();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("row_block_ptx");
    std::fs::create_dir_all(&out).expect("scratch dir");
    let long = "graph g(x: f32[64, 2048]) -> (y: f32[64, 2048]) {\n    y = softmax(x)\n}\n";
    for (sm, ptx) in &ptx_for_every_sm(long) {
        assert!(ptx.contains("bar.sync") && ptx.contains("ld.shared") && ptx.contains("st.shared"), "{}", sm.name);
        if let Some(ptxas) = &ptxas {
            let name = format!("row_block_{}", sm.name);
            assemble(ptxas, ptx, sm.ptxas_arch, &out.join(format!("{name}.ptx")), &out.join(format!("{name}.cubin")));
        }
    }
    let short = "graph g(x: f32[64, 256]) -> (y: f32[64, 256]) {\n    y = softmax(x)\n}\n";
    for (sm, ptx) in &ptx_for_every_sm(short) {
        assert!(ptx.contains("shfl.sync.bfly") && !ptx.contains("bar.sync"), "{}: a warp per row", sm.name);
    }
}

/// An elementwise kernel with a static innermost axis moves 16 bytes a thread: one vector load
/// per input read whole and one vector store per output (`ld.global.v4`), where the addresses
/// allow; every buffer is accessed as global memory, not through generic addresses.
#[test]
fn elementwise_kernels_load_and_store_16_bytes_a_thread() {
    let source = "graph g(x: f32[B<=8, 256], y: f32[B, 256]) -> (z: f32[B, 256]) {\n    z = tanh(x * y + 1.0)\n}\n";
    for (sm, ptx) in &ptx_for_every_sm(source) {
        // 16 bytes as 4 × b32 or (sm_121) 2 × b64.
        let loads = ptx.matches("ld.global.v4.b32").count() + ptx.matches("ld.global.v2.b64").count();
        let stores = ptx.matches("st.global.v4.b32").count() + ptx.matches("st.global.v2.b64").count();
        assert_eq!((loads, stores), (2, 1), "{}: one vector load per input, one vector store", sm.name);
        // A generic access names no state space: `ld.b32`, `st.v4.b32`.
        let generic = ptx.lines().any(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("ld.").or_else(|| l.strip_prefix("st."));
            rest.is_some_and(|r| {
                let r = r.strip_prefix("v4.").or_else(|| r.strip_prefix("v2.")).unwrap_or(r);
                r.starts_with(|c: char| "bfsu".contains(c)) && r[1..].starts_with(|c: char| c.is_ascii_digit())
            })
        });
        assert!(!generic, "{}: a generic load or store of a buffer", sm.name);
    }
}

/// `source` compiled for every SM Flint targets: each SM's PTX.
fn ptx_for_every_sm(source: &str) -> Vec<(flint_compiler::lower::gpu::Sm, String)> {
    compile_for_every_sm(source).ptx
}

/// Assembles `ptx` with `ptxas -arch=ARCH`, failing the test with ptxas's words if it refuses.
fn assemble(ptxas: &Path, ptx: &str, arch: &str, ptx_path: &Path, cubin_path: &Path) {
    std::fs::write(ptx_path, ptx).unwrap_or_else(|e| panic!("cannot write {}: {e}", ptx_path.display()));
    let output = Command::new(ptxas)
        .arg(format!("-arch={arch}"))
        .arg(ptx_path)
        .arg("-o")
        .arg(cubin_path)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", ptxas.display()));
    assert!(
        output.status.success(),
        "{} -arch={arch} rejected {} ({}):\nstdout:\n{}\nstderr:\n{}",
        ptxas.display(),
        ptx_path.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Without ptxas: a failure under CI or FLINT_REQUIRE_PTXAS, a note otherwise.
fn no_ptxas(what: &str) {
    if required("CI") || required("FLINT_REQUIRE_PTXAS") {
        panic!(
            "ptxas not found, and CI or FLINT_REQUIRE_PTXAS is set: run scripts/install-deps.sh \
             (installs the `nvidia-cuda-nvcc` Python package) or point FLINT_PTXAS at a ptxas binary"
        );
    }
    eprintln!("note: ptxas not found (FLINT_PTXAS, PATH, python3 nvidia-cuda-nvcc); skipping PTX assembly for {what}");
}

fn lower_and_assemble(chip: &str, features: &str, ptx_version: &str, ptxas_arch: &str) {
    let ptx = match gpu_module_to_ptx(VECTOR_ADD, chip, features) {
        Ok(ptx) => ptx,
        Err(error) => panic!("lowering to PTX for {chip} failed: {error}"),
    };
    assert!(ptx.contains(".entry vadd("), "no `.entry vadd(` in PTX:\n{ptx}");
    assert!(
        ptx.lines().any(|line| line.trim() == format!(".target {chip}")),
        "no `.target {chip}` line in PTX:\n{ptx}"
    );
    assert!(
        ptx.lines().any(|line| line.trim() == format!(".version {ptx_version}")),
        "no `.version {ptx_version}`:\n{ptx}"
    );
    assert!(ptx.contains("%tid.x") && ptx.contains("%ctaid.x"), "thread/block ids missing:\n{ptx}");

    let Some(ptxas) = find_ptxas() else { return no_ptxas(chip) };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mlir_ptx");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let cubin_path = dir.join(format!("vadd_{chip}.cubin"));
    assemble(&ptxas, &ptx, ptxas_arch, &dir.join(format!("vadd_{chip}.ptx")), &cubin_path);
    let cubin_len = std::fs::metadata(&cubin_path).map(|m| m.len()).unwrap_or(0);
    assert!(cubin_len > 0, "ptxas wrote no cubin to {}", cubin_path.display());
}

/// Whether an environment switch is on (set, and not empty, `0` or `false`).
fn required(name: &str) -> bool {
    env::var(name).is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

/// `FLINT_PTXAS`, then `ptxas` on `PATH`, then the `nvidia-cuda-nvcc` Python package.
fn find_ptxas() -> Option<PathBuf> {
    if let Some(path) = env::var_os("FLINT_PTXAS").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "FLINT_PTXAS={} is not a file", path.display());
        return Some(path);
    }
    if let Some(path) = env::var_os("PATH")
        .and_then(|paths| env::split_paths(&paths).map(|dir| dir.join("ptxas")).find(|p| p.is_file()))
    {
        return Some(path);
    }
    // The wheel puts it under site-packages/nvidia/cu<major>/bin/ptxas (cu13 for CUDA 13);
    // asking the package's file list avoids hard-coding that layout.
    let script = "import importlib.metadata as m\n\
                  d = m.distribution('nvidia-cuda-nvcc')\n\
                  print(next(str(d.locate_file(f)) for f in (d.files or []) if f.name == 'ptxas'))";
    let output = Command::new("python3").arg("-c").arg(script).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    path.is_file().then_some(path)
}
