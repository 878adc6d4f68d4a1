//! Every normative example in `ir-spec/examples/` must parse, type-check and verify; its
//! printed IR is snapshotted as `<example>@00-lower` (later passes follow as `@NN-<pass>`).

use std::path::Path;

use flint_compiler::{diag, ir, syntax};

fn lower_example(path: &Path) -> ir::Graph {
    let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let graph = syntax::compile_str(&source)
        .unwrap_or_else(|diags| panic!("{name} is rejected:\n{}", diag::render(&name, &source, &diags)));
    if let Err(e) = ir::verify::verify(&graph) {
        panic!("{name} lowers to a graph that does not verify: {e}");
    }
    graph
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

#[test]
fn every_example_lowers_and_prints() {
    insta::glob!("../../ir-spec/examples", "*.tg", |path| {
        let graph = lower_example(path);
        insta::with_settings!({ prepend_module_to_snapshot => false, snapshot_suffix => "", omit_expression => true }, {
            insta::assert_snapshot!(format!("{}@00-lower", stem(path)), ir::print::print(&graph));
        });
    });
}

#[test]
fn examples_cover_enough_of_the_language() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples");
    let tg = |e: &std::fs::DirEntry| e.path().extension().is_some_and(|x| x == "tg");
    let count = std::fs::read_dir(&dir).map(|d| d.filter_map(Result::ok).filter(tg).count()).unwrap_or(0);
    assert!(count >= 10, "ir-spec/examples holds {count} examples, fewer than 10");
}

#[test]
fn printing_is_deterministic_and_dense_after_removals() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples/mlp.tg");
    let mut graph = lower_example(&path);
    let before = ir::print::print(&graph);
    // Add and remove a dead node: handles shift, the printed text must not.
    let first = graph.inputs[0];
    let ty = graph.ty(first).clone();
    let dead = graph.add(ir::Op::Unary(ir::UnaryOp::Neg), ty, &[first]);
    graph.remove(dead);
    assert_eq!(before, ir::print::print(&graph));
    assert!(ir::verify::verify(&graph).is_ok());
}

/// Every example runs on the reference interpreter with random data, with each symbol at 1
/// and at its bound, and gives finite outputs of the declared shapes.
#[test]
fn every_example_evaluates_at_the_extremes_of_its_dims() {
    use flint_compiler::interp::{self, DimValues};
    use flint_compiler::random;
    insta::glob!("../../ir-spec/examples", "*.tg", |path| {
        let graph = lower_example(path);
        for pick in [|_: u64| 1, |bound: u64| bound] {
            let dims: DimValues =
                graph.symbols.iter().enumerate().map(|(i, s)| (ir::SymId(i as u32), pick(s.bound))).collect();
            let inputs = random::random_inputs(&graph, &dims, 3).expect("random inputs");
            let params = random::random_params(&graph, &dims, 4).expect("random params");
            let outputs = interp::eval(&graph, &dims, &inputs, &params)
                .unwrap_or_else(|e| panic!("{} fails to evaluate at {dims:?}: {e}", path.display()));
            for ((name, t), (_, id)) in outputs.iter().zip(&graph.outputs) {
                let want = dims.shape(&graph.ty(*id).shape, &graph.symbols).expect("dims bound");
                assert_eq!(t.shape(), want.as_slice(), "{}: output {name}", path.display());
            }
        }
    });
}
