//! Random graphs through the whole pipeline and fusion: outputs agree with the unoptimised
//! graph on the interpreter, and the kernel graph covers every computed node once. Graphs
//! are generated as source text, so the front end is exercised too.

use flint_compiler::interp::{self, DimValues};
use flint_compiler::ir::SymId;
use flint_compiler::ir::{Op, OpClass};
use flint_compiler::kernel::{fusion, schedule};
use flint_compiler::pipeline::{self, CompileOptions};
use flint_compiler::{random, syntax};
use proptest::prelude::*;

/// Views and constants: read by every kernel that needs them, owned by none.
fn placed_freely(op: &Op) -> bool {
    op.class().is_duplicable()
}

fn is_leaf(op: &Op) -> bool {
    op.class() == OpClass::Leaf
}

#[path = "common/random_program.rs"]
mod random_program;
use random_program::program;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_and_fusion_preserve_random_graphs(
        b in 1usize..5,
        steps in prop::collection::vec((0usize..64, 0usize..64), 1..9),
        returned in 0usize..16,
        n in 1u64..5,
        seed in 0u64..1000,
    ) {
        let source = program(b, &steps, returned);
        let graph = syntax::compile_str(&source).map_err(|d| TestCaseError::fail(format!("{source}\n{d:?}")))?;
        let compiled = pipeline::compile(&graph, &CompileOptions::default())
            .map_err(|e| TestCaseError::fail(format!("{source}\n{e}")))?;
        let (optimized, kernels) = (&compiled.graph, &compiled.kernels);
        prop_assert!(schedule::peak(optimized, kernels) <= schedule::peak(optimized, &fusion::unfused(optimized)));
        let computed = optimized.node_ids().filter(|&n| !placed_freely(optimized.op(n)) && !is_leaf(optimized.op(n))).count();
        let placed: usize =
            kernels.kernels.iter().map(|k| k.nodes.iter().filter(|&&n| !placed_freely(optimized.op(n))).count()).sum();
        prop_assert_eq!(computed, placed, "{}", source);

        let dims: DimValues = [(SymId(0), n)].into_iter().collect();
        let inputs = random::random_inputs(&graph, &dims, seed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let before = interp::eval(&graph, &dims, &inputs, &Default::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let after = interp::eval(optimized, &dims, &inputs, &Default::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for ((name, want), (_, got)) in before.iter().zip(&after) {
            for (g, w) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
                let ok = (g.is_nan() && w.is_nan()) || *g == w || (g - w).abs() <= 1e-4 + 1e-4 * w.abs();
                prop_assert!(ok, "{}: {} vs {} in output {}\n{}", "changed", g, w, name, source);
            }
        }
    }
}
