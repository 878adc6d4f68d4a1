//! The kernel graph's verifier rejects every kind of broken kernel graph and plan, and the
//! planned program describes every value a kernel touches without the graph.

use flint_compiler::kernel::memory::RegionKind;
use flint_compiler::kernel::program::{Storage, ValueId};
use flint_compiler::kernel::verify::{verify, KernelError};
use flint_compiler::pipeline::{self, CompileOptions, Compiled};
use flint_compiler::syntax;

fn compiled(path: &str) -> Compiled {
    let source = std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).expect("readable");
    let graph = syntax::compile_str(&source).expect("compiles");
    pipeline::compile(&graph, &CompileOptions::default()).expect("pipeline")
}

#[test]
fn a_compiled_example_verifies() {
    for path in ["examples/mlp.tg", "examples/transformer.tg", "ir-spec/examples/cnn.tg"] {
        let c = compiled(path);
        verify(&c.graph, &c.kernels, Some(&c.memory)).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// Each mutation breaks one invariant; the verifier must name it.
#[test]
fn broken_kernel_graphs_are_rejected() {
    let c = compiled("examples/mlp.tg");
    let check = |kg: &flint_compiler::kernel::KernelGraph| verify(&c.graph, kg, None);
    assert!(c.kernels.kernels.len() >= 3);

    let mut kg = c.kernels.clone();
    kg.kernels.remove(0);
    assert!(matches!(check(&kg), Err(KernelError::Unassigned(..) | KernelError::ReadBeforeWritten { .. })));

    let mut kg = c.kernels.clone();
    let stolen = kg.kernels[0].nodes.iter().copied().find(|n| !c.graph.op(*n).class().is_duplicable());
    kg.kernels[1].nodes.extend(stolen);
    assert!(matches!(check(&kg), Err(KernelError::InTwoKernels { .. })), "{:?}", check(&kg));

    let mut kg = c.kernels.clone();
    kg.kernels.swap(0, 1);
    assert!(matches!(check(&kg), Err(KernelError::ReadBeforeWritten { .. })), "{:?}", check(&kg));

    let mut kg = c.kernels.clone();
    kg.kernels[0].outputs.clear();
    assert!(matches!(check(&kg), Err(KernelError::NotWritten { .. })), "{:?}", check(&kg));

    let mut kg = c.kernels.clone();
    let foreign = kg.kernels[1].outputs[0];
    kg.kernels[0].outputs.push(foreign);
    assert!(matches!(check(&kg), Err(KernelError::WritesForeign { .. })), "{:?}", check(&kg));

    let mut kg = c.kernels.clone();
    kg.kernels[0].inputs.retain(|&i| !matches!(c.graph.op(i), flint_compiler::ir::Op::Param { .. }));
    assert!(matches!(check(&kg), Err(KernelError::MissingInput { .. })), "{:?}", check(&kg));

    let mut kg = c.kernels.clone();
    let unrelated = c.kernels.kernels[2].inputs.iter().copied().find(|i| !c.kernels.kernels[0].inputs.contains(i));
    kg.kernels[0].inputs.extend(unrelated);
    assert!(matches!(check(&kg), Err(KernelError::UnusedInput { .. } | KernelError::ReadBeforeWritten { .. })));

    let mut kg = c.kernels.clone();
    let own = kg.kernels[0].outputs[0];
    kg.kernels[0].inputs.push(own);
    assert!(matches!(check(&kg), Err(KernelError::ReadsItself { .. })), "{:?}", check(&kg));
}

#[test]
fn a_broken_plan_is_rejected() {
    let c = compiled("examples/transformer.tg");
    let mut mp = c.memory.clone();
    assert!(mp.buffers.len() >= 2);
    // Two buffers alive together at one offset.
    let (a, b) = (0..mp.buffers.len())
        .flat_map(|a| (0..mp.buffers.len()).map(move |b| (a, b)))
        .find(|&(a, b)| a != b && mp.buffers[a].conflicts(&mp.buffers[b]))
        .expect("two buffers alive together");
    mp.plan.offsets[b] = mp.plan.offsets[a];
    assert!(matches!(verify(&c.graph, &c.kernels, Some(&mp)), Err(KernelError::Plan(_))));
    let mut mp = c.memory.clone();
    mp.values[0].clear();
    assert!(matches!(verify(&c.graph, &c.kernels, Some(&mp)), Err(KernelError::NoBuffer(_))));
}

/// Every value a kernel reads or writes has a dtype, a shape and a home; arena values sit at
/// their buffer's planned offset and inside the arena; regions hold what they name; and a
/// value's id is its `%N` in the dumps.
#[test]
fn the_program_is_self_contained() {
    for path in ["examples/mlp.tg", "examples/transformer.tg", "ir-spec/examples/gpt2_block.tg"] {
        let c = compiled(path);
        let p = &c.program;
        assert_eq!(p.kernels.len(), c.kernels.kernels.len());
        for k in &p.kernels {
            for v in k.inputs.iter().chain(&k.outputs) {
                let value = p.values.get(v).unwrap_or_else(|| panic!("{path}: {v} of {} has no entry", k.id));
                if let Storage::Arena { buffer, offset } = value.storage {
                    assert_eq!(offset, c.memory.plan.offsets[buffer.index()], "{path}: {v}");
                    assert!(offset + c.memory.buffers[buffer.index()].size <= p.arena_bytes, "{path}: {v}");
                }
            }
        }
        for (name, _) in &c.graph.outputs {
            assert!(p.regions.iter().any(|r| r.kind == RegionKind::Output && &r.name == name), "{path}: {name}");
        }
        let printed = flint_compiler::ir::print::print(&c.graph);
        for (id, value) in &p.values {
            let line = printed.lines().find(|l| l.trim_start().starts_with(&format!("{id} = "))).expect("printed");
            assert!(line.contains(&format!(": {}[", value.dtype.name())), "{path}: {id} is not {line}");
        }
        assert!(p.values.keys().all(|&ValueId(n)| (n as usize) < c.graph.len()));
    }
}

/// After the pipeline, a node's handle is its printed `%N`, so an error raised on the
/// compiled graph names the node a dump shows.
#[test]
fn errors_and_dumps_share_one_numbering() {
    let c = compiled("ir-spec/examples/gpt2_block.tg");
    let number = flint_compiler::ir::print::numbering(&c.graph);
    assert!(c.graph.node_ids().all(|n| number[&n] == n.index()));

    // Decompose appends nodes for the softmax; the division by zero comes after it.
    let source = "graph g(x: f32[4], n: i32[4]) -> (y: f32[4], z: i32[4]) {\n    \
                  y = softmax(x, axis=0)\n    z = (n + 1) / (n - n)\n}\n";
    let graph = syntax::compile_str(source).expect("compiles");
    let c = pipeline::compile(&graph, &CompileOptions::default()).expect("pipeline");
    let dims = Default::default();
    let inputs = flint_compiler::random::random_inputs(&c.graph, &dims, 3).expect("inputs");
    let error = flint_compiler::interp::eval(&c.graph, &dims, &inputs, &Default::default())
        .expect_err("division by zero")
        .to_string();
    let id = error.split(':').next().expect("a node");
    let printed = flint_compiler::ir::print::print(&c.graph);
    assert!(printed.lines().any(|l| l.trim_start().starts_with(&format!("{id} = div("))), "{error}\n{printed}");
}

/// A long chain of row reductions splits into kernels of at most `MAX_ROW_REDUCTIONS`
/// reductions each (one kernel holding all 200 once took minutes and gigabytes to lower).
#[test]
fn a_chain_of_row_reductions_splits_into_bounded_kernels() {
    use flint_compiler::ir::OpClass;
    use flint_compiler::kernel::fusion::MAX_ROW_REDUCTIONS;
    let mut source = String::from("graph chain(x: f32[N<=4, 8]) -> (y: f32[N, 8]) {\n    a0 = softmax(x, axis=-1)\n");
    for i in 1..100 {
        source.push_str(&format!("    a{i} = softmax(a{}, axis=-1)\n", i - 1));
    }
    source.push_str("    y = a99\n}\n");
    let graph = syntax::compile_str(&source).expect("compiles");
    let c = pipeline::compile(&graph, &CompileOptions::default()).expect("pipeline");
    for (k, kernel) in c.kernels.iter() {
        let reductions =
            kernel.nodes.iter().filter(|&&n| matches!(c.graph.op(n).class(), OpClass::Reduction { .. })).count();
        assert!(reductions <= MAX_ROW_REDUCTIONS, "{k} holds {reductions} reductions");
    }
    let total = c.graph.node_ids().filter(|&n| matches!(c.graph.op(n).class(), OpClass::Reduction { .. })).count();
    assert_eq!(total, 200, "two reductions per softmax");
    assert!(c.kernels.kernels.len() >= 200 / MAX_ROW_REDUCTIONS);
}
