//! The verifier rejects each broken invariant with the error that names it.

use flint_compiler::ir::verify::{verify, VerifyError};
use flint_compiler::ir::*;

fn f32s(dims: &[u64]) -> TensorType {
    TensorType::new(DType::F32, dims.iter().map(|&d| Dim::known(d)).collect())
}

fn small() -> (Graph, NodeId, NodeId) {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[2, 3]));
    let w = g.add_param("w", f32s(&[3, 4]));
    let y = g.add(Op::MatMul, f32s(&[2, 4]), &[x, w]);
    g.add_output("y", y);
    (g, x, y)
}

#[test]
fn a_well_formed_graph_verifies() {
    assert_eq!(verify(&small().0), Ok(()));
}

#[test]
fn a_wrong_result_type_is_caught() {
    let (mut g, _, y) = small();
    g.node_mut(y).ty = f32s(&[2, 5]);
    assert!(matches!(verify(&g), Err(VerifyError::Type { node, op: "matmul", .. }) if node == y));
}

#[test]
fn mismatched_operands_are_caught() {
    let (mut g, x, _) = small();
    let bad = g.add(Op::Binary(BinaryOp::Add), f32s(&[2, 3]), &[x, x]);
    let wrong = g.add(Op::MatMul, f32s(&[2, 3]), &[x, bad]);
    g.add_output("z", wrong);
    let err = verify(&g).unwrap_err();
    assert!(err.to_string().contains("contracted dims"), "{err}");
}

#[test]
fn a_cycle_is_caught() {
    let (mut g, x, _) = small();
    let a = g.add(Op::Unary(UnaryOp::Neg), f32s(&[2, 3]), &[x]);
    let b = g.add(Op::Unary(UnaryOp::Neg), f32s(&[2, 3]), &[a]);
    // Re-point a's operand at b: a -> b -> a.
    g.replace_uses(x, b);
    assert_eq!(verify(&g), Err(VerifyError::Cycle));
}

#[test]
fn a_dangling_output_is_caught() {
    let (mut g, _, y) = small();
    g.remove(y);
    assert_eq!(verify(&g), Err(VerifyError::DanglingHandle(y)));
}

#[test]
fn duplicate_param_names_are_caught() {
    let (mut g, _, _) = small();
    g.add_param("w", f32s(&[1]));
    assert!(matches!(verify(&g), Err(VerifyError::DuplicateName { what: "params", .. })));
}

#[test]
fn an_input_missing_from_the_signature_is_caught() {
    let (mut g, _, _) = small();
    let stray = g.add(Op::Input { name: "stray".into() }, f32s(&[1]), &[]);
    assert_eq!(verify(&g), Err(VerifyError::UnlistedInput(stray)));
}

#[test]
fn an_unknown_symbol_is_caught() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![Dim::sym(SymId(3))]));
    g.add_output("x", x);
    assert!(matches!(verify(&g), Err(VerifyError::UnknownSymbol { symbol: 3, .. })));
}

#[test]
fn symbolic_dims_broadcast_and_multiply() {
    let n = Dim::sym(SymId(0));
    let s = Dim::sym(SymId(1));
    let ns = n.mul(&s);
    assert_eq!(ns.div(&s), Some(n.clone()));
    assert_eq!(ns.div(&Dim::known(2)), None);
    let shape = infer::broadcast_shapes(&[n.clone(), Dim::known(1)], &[Dim::known(4)]).unwrap();
    assert_eq!(shape, vec![n.clone(), Dim::known(4)]);
    assert!(infer::broadcast_shapes(&[n], &[s]).is_err());
}
