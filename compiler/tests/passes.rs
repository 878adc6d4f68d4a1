//! Every stage on every `ir-spec` example: the output of each stage of the one pipeline
//! (the IR after graph passes, the kernel graph, the plan) is snapshotted as
//! `<example>@NN-<stage>`, and the whole pipeline preserves meaning on fresh random inputs.

use std::path::Path;

use flint_compiler::interp::{self, DimValues, Tensor};
use flint_compiler::ir::{self, DType, Graph, SymId};
use flint_compiler::ir::{NodeId, OpClass};
use flint_compiler::kernel::{fusion, memory, schedule, KernelGraph, KernelKind};
use flint_compiler::lower::llvm::Cpu;
use flint_compiler::pipeline::{self, CompileOptions, Compiled, Target};
use flint_compiler::{random, syntax};

fn lower(path: &Path) -> Graph {
    let source = std::fs::read_to_string(path).expect("example readable");
    syntax::compile_str(&source).unwrap_or_else(|_| panic!("{} does not compile", path.display()))
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn compile(graph: &Graph, label: &str, keep_dumps: bool) -> Compiled {
    pipeline::compile(graph, &CompileOptions { verify: true, keep_dumps, ..Default::default() })
        .unwrap_or_else(|e| panic!("{label}: {e}"))
}

/// With code for the host CPU: the kernels' MLIR and the host glue are snapshotted too (the
/// native code and the artifact are not: they depend on the machine's CPU).
fn compile_for_cpu(graph: &Graph, label: &str) -> Compiled {
    let target = Some(Target::Cpu(Cpu::Native));
    pipeline::compile(graph, &CompileOptions { verify: true, keep_dumps: true, target, ..Default::default() })
        .unwrap_or_else(|e| panic!("{label}: {e}"))
}

#[test]
fn every_pass_on_every_example() {
    insta::glob!("../../ir-spec/examples", "*.tg", |path| {
        let label = path.display().to_string();
        let compiled = compile_for_cpu(&lower(path), &label);
        for (i, r) in compiled.stages.iter().enumerate().filter(|(_, r)| !matches!(r.name, "native-code" | "artifact"))
        {
            let name = format!("{}@{:02}-{}", stem(path), i + 1, r.name);
            insta::with_settings!({ prepend_module_to_snapshot => false, snapshot_suffix => "", omit_expression => true }, {
                insta::assert_snapshot!(name, r.dump.clone().unwrap_or_default());
            });
        }
        let Compiled { graph, kernels, memory: mp, .. } = &compiled;
        assert!(graph.node_ids().all(|n| !graph.op(n).is_composite()), "{label}: a composite survived");
        check_kernels(graph, kernels, &label);
        let (fused, unfused) = (schedule::peak(graph, kernels), schedule::peak(graph, &fusion::unfused(graph)));
        assert!(fused <= unfused, "{label}: fusion raised the peak from {unfused} to {fused} bytes");
        assert!(mp.plan.arena <= mp.greedy_arena, "{label}: worse than greedy");
        assert!(mp.plan.offsets.iter().all(|o| o % memory::ALIGNMENT == 0));
    });
}

/// `|got - want| <= atol + rtol·|want|`, NaN matching NaN and infinities matching exactly.
fn close(got: &Tensor, want: &Tensor, dtype: DType) -> Result<(), String> {
    let (rtol, atol) = match dtype {
        DType::F32 => (1e-4, 1e-5),
        DType::F16 => (1e-2, 1e-3),
        DType::BF16 => (5e-2, 1e-2),
        DType::I32 | DType::I64 | DType::Bool => (0.0, 0.0),
    };
    if got.shape() != want.shape() {
        return Err(format!("shape {:?} vs {:?}", got.shape(), want.shape()));
    }
    for (i, (g, w)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == &w || (g - w).abs() <= atol + rtol * w.abs();
        if !ok {
            return Err(format!("element {i}: {g} vs {w}"));
        }
    }
    Ok(())
}

fn check_pipeline_preserves(graph: &Graph, label: &str, seed: u64) {
    let optimized = compile(graph, label, false).graph;
    for pick in [|_: u64| 1, |b: u64| b.min(5)] {
        let dims: DimValues = graph.symbols.iter().enumerate().map(|(i, s)| (SymId(i as u32), pick(s.bound))).collect();
        let inputs = random::random_inputs(graph, &dims, seed).expect("inputs");
        let params = random::random_params(graph, &dims, seed + 1).expect("params");
        let (before, after) =
            match (interp::eval(graph, &dims, &inputs, &params), interp::eval(&optimized, &dims, &inputs, &params)) {
                (Ok(b), Ok(a)) => (b, a),
                // An evaluation error (say, a division by zero) must survive the pipeline.
                (Err(_), Err(_)) => continue,
                (b, a) => panic!("{label}: evaluation changed from {:?} to {:?}", b.err(), a.err()),
            };
        for ((name, want), ((_, got), (_, id))) in before.iter().zip(after.iter().zip(&graph.outputs)) {
            if let Err(e) = close(got, want, graph.ty(*id).dtype) {
                panic!("{label}: output {name} changed by the pipeline: {e}");
            }
        }
    }
}

#[test]
fn the_pipeline_preserves_every_example() {
    insta::glob!("../../ir-spec/examples", "*.tg", |path| {
        for seed in [1, 2] {
            check_pipeline_preserves(&lower(path), &path.display().to_string(), seed);
        }
    });
}

#[test]
fn stage_names_are_kebab_case_and_unique() {
    let names = pipeline::stage_names(Some(&Target::Cpu(Cpu::Native)));
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
}

/// Focused cases, one graph per `// -----` section: each input and the IR after the full
/// pipeline, in one folded snapshot.
#[test]
fn focused_rewrites() {
    let cases = include_str!("passes/rewrites.tg");
    let mut out = String::new();
    for (i, case) in cases.split("// -----").enumerate() {
        let original = syntax::compile_str(case).unwrap_or_else(|_| panic!("case {i} does not compile"));
        let graph = compile(&original, &format!("case {i}"), false).graph;
        check_pipeline_preserves(&original, &format!("case {i}"), 7);
        out.push_str(&format!("// ----- case {i}\n{}\n{}\n", case.trim(), ir::print::print(&graph)));
    }
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("focused_rewrites", out);
    });
}

/// Every computed node is in exactly one kernel, views and constants only where read, and
/// each kernel's inputs are bound or produced by an earlier kernel. Written apart from the
/// kernel verifier the pipeline runs, so that each checks the other.
fn check_kernels(graph: &Graph, kg: &KernelGraph, label: &str) {
    let view_or_const = |op: &ir::Op| op.class().is_duplicable();
    let mut seen: std::collections::HashMap<NodeId, usize> = std::collections::HashMap::new();
    let mut available: std::collections::HashSet<NodeId> =
        graph.node_ids().filter(|&n| graph.op(n).class() == OpClass::Leaf).collect();
    for (k, kernel) in kg.kernels.iter().enumerate() {
        for &i in &kernel.inputs {
            assert!(available.contains(&i), "{label}: kernel {k} reads {i} before it is written");
        }
        for &n in &kernel.nodes {
            if !view_or_const(graph.op(n)) {
                *seen.entry(n).or_default() += 1;
            }
        }
        available.extend(kernel.outputs.iter().copied());
    }
    for n in graph.node_ids() {
        let op = graph.op(n);
        if !view_or_const(op) && op.class() != OpClass::Leaf {
            assert_eq!(seen.get(&n).copied(), Some(1), "{label}: {n} ({}) is not in exactly one kernel", op.name());
        }
    }
    for (name, o) in &graph.outputs {
        assert!(available.contains(o), "{label}: output {name} is never written");
    }
}

/// Every value written in place overwrites an input of the same elementwise kernel that is
/// read there for the last time, at the same shape; cnn and the transformer example have one
/// such pair each.
#[test]
fn in_place_pairs_follow_the_rules() {
    let mut total = 0;
    for path in ["../ir-spec/examples/cnn.tg", "../examples/transformer.tg", "../ir-spec/examples/gpt2_block.tg"] {
        let Compiled { graph, kernels, memory: mp, .. } =
            compile(&lower(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path)), path, false);
        for values in mp.values.iter().filter(|vs| vs.len() > 1) {
            for pair in values.windows(2) {
                let (old, new) = (pair[0], pair[1]);
                let step = kernels.kernels.iter().position(|k| k.outputs.contains(&new)).expect("a producer");
                let kernel = &kernels.kernels[step];
                assert_eq!(kernel.kind, KernelKind::Elementwise, "{path}");
                assert!(kernel.inputs.contains(&old), "{path}: not an input of the writer");
                assert_eq!(graph.ty(old), graph.ty(new), "{path}");
                assert!(kernels.kernels[step + 1..].iter().all(|k| !k.inputs.contains(&old)), "{path}: read later");
                total += 1;
            }
        }
    }
    assert_eq!(total, 2);
}
