//! Every program in `tests/bad/` is malformed or ill-typed: the front end must reject it
//! (never accept it, never panic), and its rendered diagnostics are snapshotted as
//! `diagnostics@<file>.tg.snap` so a change in wording or in the spans shows up in review.
//!
//! Each `.tg` file starts with a `# ` comment saying what is wrong with it.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use flint_compiler::{diag, syntax};

fn base_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

#[test]
fn bad_programs_are_rejected_with_diagnostics() {
    // Acceptances and panics are collected rather than raised inside the glob, so one run
    // reports every offending file (a panic inside `glob!` would stop at the first).
    let mut problems = Vec::new();
    insta::glob!("bad/*.tg", |path| {
        let name = base_name(path);
        let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        match panic::catch_unwind(AssertUnwindSafe(|| syntax::compile_str(&source))) {
            Err(payload) => problems.push(format!("{name}: the front end panicked: {}", panic_message(&*payload))),
            Ok(Ok(_)) => problems.push(format!("{name}: accepted, but it is a bad program")),
            Ok(Err(diags)) if diags.is_empty() => problems.push(format!("{name}: rejected with no diagnostic")),
            Ok(Err(diags)) => {
                let rendered = match panic::catch_unwind(AssertUnwindSafe(|| diag::render(&name, &source, &diags))) {
                    Ok(text) => text,
                    Err(payload) => {
                        problems.push(format!("{name}: rendering panicked: {}", panic_message(&*payload)));
                        return;
                    }
                };
                insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
                    insta::assert_snapshot!("diagnostics", rendered);
                });
            }
        }
    });
    assert!(problems.is_empty(), "{} bad program(s) mishandled:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn bad_programs_say_what_is_wrong() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut count = 0;
    let mut undocumented = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/bad exists").filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "tg") {
            continue;
        }
        count += 1;
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        if !source.starts_with("# ") {
            undocumented.push(base_name(&path));
        }
    }
    assert!(count >= 40, "tests/bad holds {count} programs, fewer than 40");
    assert!(undocumented.is_empty(), "these do not start with a `# ` comment line: {undocumented:?}");
}
