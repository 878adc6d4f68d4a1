//! The random-graph generator shared by the pass and lowering property tests: a chain of
//! steps over `[N, B]` values, written as source so the front end is exercised too.

/// One step: an expression over the previous value `$t` and an earlier value `$u`, all of
/// shape `[N, B]`.
const STEPS: &[&str] = &[
    "exp($t * 0.1)",
    "tanh($t)",
    "relu($t)",
    "-$t",
    "abs($t) + $u",
    "sigmoid($t) * $u",
    "maximum($t, $u)",
    "$t - max($t, axis=1, keepdims=true)",
    "sum($t, axis=0, keepdims=true) + $t",
    "mean($t, axis=[0, 1], keepdims=true) * $t",
    "softmax($t, axis=-1)",
    "log_softmax($t, axis=0)",
    "gelu($t, approximate=\"tanh\")",
    "silu($t)",
    // Not `> 0.0`: steps can cancel to an exact zero in real arithmetic (the absolute value
    // of a log_softmax of a log_softmax plus the first one), which f32 and the interpreter's
    // f64 then round to opposite signs, and the select picks different operands.
    "select($t > 0.25, $t, $u)",
    "reshape(reshape($t, shape=[N*$b]), shape=[N, $b])",
    "permute(permute($t, perm=[1, 0]), perm=[1, 0])",
    "$t @ w",
    "rms_norm($t, g)",
    "layer_norm($t, g, g)",
    "($t + 0) * 1",
    "$t * $u + $t * $u",
];

pub fn program(b: usize, steps: &[(usize, usize)], returned: usize) -> String {
    let mut body = String::from("    v0 = x\n");
    for (i, &(step, earlier)) in steps.iter().enumerate() {
        let u = format!("v{}", earlier % (i + 1));
        let expr =
            STEPS[step % STEPS.len()].replace("$t", &format!("v{i}")).replace("$u", &u).replace("$b", &b.to_string());
        body.push_str(&format!("    v{} = {expr}\n", i + 1));
    }
    let last = steps.len();
    format!(
        "graph g(x: f32[N<=4, {b}], w: f32[{b}, {b}], g: f32[{b}]) -> (y: f32[N, {b}], z: f32[N, {b}]) {{\n{body}    y = v{last}\n    z = v{}\n}}\n",
        returned % (last + 1)
    )
}
