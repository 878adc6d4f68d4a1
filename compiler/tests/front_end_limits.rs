//! No input crashes the front end: nesting past the limits of `ir-spec/language.md` §7 gets
//! a located diagnostic, programs at the limits and long flat ones are accepted on a test
//! thread's 2 MiB stack, and `flint check` refuses a deep or non-UTF-8 file with exit 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flint_compiler::syntax::{self, MAX_INLINE_DEPTH, MAX_NESTING};

const HEADER: &str = "graph g(x: f32[N<=8, 4]) -> (y: f32[N, 4]) {\n    y = ";

/// A graph whose one statement is `y = <expr>`, starting at line 2, column 9.
fn program(expr: &str) -> String {
    format!("{HEADER}{expr}\n}}\n")
}

fn nested_parens(n: usize) -> String {
    format!("{}x{}", "(".repeat(n), ")".repeat(n))
}

fn nested_calls(n: usize) -> String {
    format!("{}x{}", "relu(".repeat(n), ")".repeat(n))
}

fn nested_negations(n: usize) -> String {
    format!("{}x{}", "-(".repeat(n), ")".repeat(n))
}

fn right_sum(n: usize) -> String {
    format!("{}x{}", "x + (".repeat(n), ")".repeat(n))
}

fn power_tower(n: usize) -> String {
    format!("x{}", " ** x".repeat(n))
}

/// A chain of `n` fns, each calling the next, the graph calling the first.
fn fn_chain(n: usize) -> String {
    let mut src = String::new();
    for i in 0..n {
        let callee = if i + 1 == n { "relu".to_string() } else { format!("f{}", i + 1) };
        src.push_str(&format!("fn f{i}(x: f32[S, 4]) -> (y: f32[S, 4]) {{ y = {callee}(x) }}\n"));
    }
    src + &program("f0(x)")
}

/// Runs `f` on a thread with the default test stack (parentheses at the limit take about
/// 0.9 MiB in a debug build), so a deep recursion fails the same way whatever
/// `RUST_MIN_STACK` says.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::Builder::new().stack_size(2 << 20).spawn(f).expect("spawn a thread");
    thread.join().unwrap_or_else(|_| panic!("the front end panicked"))
}

fn check_in_process(source: String) -> Result<(), String> {
    on_small_stack(move || match syntax::compile_str(&source) {
        Ok(_) => Ok(()),
        Err(diags) => Err(flint_compiler::diag::render("t.tg", &source, &diags)),
    })
}

#[test]
fn nesting_at_the_limit_is_accepted() {
    let n = MAX_NESTING;
    let ok = [nested_parens(n), nested_calls(n), nested_negations(n / 2), right_sum(n), power_tower(n)];
    for expr in ok {
        let head: String = expr.chars().take(12).collect();
        check_in_process(program(&expr)).unwrap_or_else(|e| panic!("`{head}...` rejected:\n{e}"));
    }
    check_in_process(fn_chain(MAX_INLINE_DEPTH)).unwrap_or_else(|e| panic!("a fn chain at the limit:\n{e}"));
}

#[test]
fn mixed_nesting_at_the_limit_fits_the_stack() {
    // A comparison, a sum and a product around every level: the lowering's deepest
    // recursion per level. Type errors are fine here; running out of stack is not.
    let units = MAX_NESTING / 2; // `-` and `(` open a level each
    let expr = format!("{}x{}", "x < x + x * -(".repeat(units), ")".repeat(units));
    let result = check_in_process(program(&expr));
    assert!(!matches!(&result, Err(e) if e.contains("nested more than")), "{result:?}");
}

#[test]
fn long_flat_programs_are_accepted() {
    let terms = 20_000;
    check_in_process(program(&format!("x{}", " + x".repeat(terms)))).expect("a long sum");
    check_in_process(program(&format!("x{}", " * 2.0 - x".repeat(terms)))).expect("a long mixed chain");
    let shape = format!("reshape(x, shape=[N, 4{}])", " * 1".repeat(terms));
    check_in_process(program(&shape)).expect("a long product in a shape");
    let mut body = String::from("graph g(x: f32[N<=8, 4]) -> (y: f32[N, 4]) {\n    h0 = x\n");
    for i in 0..terms {
        body.push_str(&format!("    h{} = relu(h{i})\n", i + 1));
    }
    check_in_process(body + &format!("    y = h{terms}\n}}\n")).expect("many statements");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flint-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write the program");
    path
}

fn flint_check(path: &Path) -> Output {
    let path = path.to_str().unwrap_or_default();
    Command::new(env!("CARGO_BIN_EXE_flint")).args(["check", path]).current_dir(repo()).output().expect("flint runs")
}

/// `flint check` refuses the file with exit 1 (not a signal, not a panic's 101) and names
/// `line:col` and `message` in its error.
fn assert_refused_at(name: &str, contents: &[u8], (line, col): (usize, usize), message: &str) {
    let path = scratch_file(name, contents);
    let o = flint_check(&path);
    let err = String::from_utf8_lossy(&o.stderr);
    let shown: String = err.chars().take(2000).collect();
    assert_eq!(o.status.code(), Some(1), "{name}: not refused with exit 1 ({:?}):\n{shown}", o.status);
    let at = format!("{}:{line}:{col}", path.display());
    assert!(err.contains(&at), "{name}: the error does not point at {at}:\n{shown}");
    assert!(err.contains(message), "{name}: the error does not say `{message}`:\n{shown}");
}

#[test]
fn check_refuses_deep_nesting_with_a_location() {
    let deep = 50_000;
    let level = MAX_NESTING; // the 0-based index of the construct that opens one level too many
    let cases = [
        ("parens.tg", nested_parens(deep), 9 + level),
        ("calls.tg", nested_calls(deep), 9 + 5 * level + 4),
        ("negations.tg", nested_negations(deep), 9 + level),
        ("right_sum.tg", right_sum(deep), 9 + 5 * level + 4),
        ("power.tg", power_tower(deep), 9 + 5 * level + 2),
    ];
    for (name, expr, col) in cases {
        assert_refused_at(name, program(&expr).as_bytes(), (2, col), "nested more than");
    }
}

#[test]
fn check_refuses_a_long_fn_chain_with_a_location() {
    // `f63` calls `f64`, the 65th call of the chain; the call starts at column 46 of its line.
    let source = fn_chain(3000);
    let line = MAX_INLINE_DEPTH; // 1-based line of `fn f{MAX_INLINE_DEPTH - 1}`
    assert_refused_at("chain.tg", source.as_bytes(), (line, 46), "fn calls nested more than");
}

#[test]
fn check_refuses_invalid_utf8_with_a_location() {
    let mut bytes = b"graph g(x: f32[N<=8, 4]) -> (y: f32[N, 4]) {\n    # caf".to_vec();
    let offset = bytes.len();
    bytes.extend_from_slice(b"\xe9 au lait\n    y = x\n}\n");
    assert_refused_at("latin1.tg", &bytes, (2, 10), &format!("byte 0xE9 at byte offset {offset}"));
}

#[test]
fn decode_source_points_at_the_first_bad_byte() {
    assert_eq!(syntax::decode_source(b"graph"), Ok("graph"));
    let d = syntax::decode_source(b"ok\n\xff\xfe").expect_err("not UTF-8");
    assert_eq!(d.labels.first().map(|(s, _)| s.start), Some(3));
}
