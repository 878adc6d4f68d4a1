//! Feeds arbitrary text through the front end. Rejecting it is fine; panicking is a bug, and
//! so is accepting a program whose graph then fails the IR verifier or cannot be printed.
#![no_main]

use flint_compiler::{diag, ir, syntax};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The language is UTF-8 text; invalid bytes are not interesting to the lexer.
    let Ok(source) = std::str::from_utf8(data) else { return };
    match syntax::compile_str(source) {
        Ok(graph) => {
            if let Err(e) = ir::verify::verify(&graph) {
                panic!("the front end accepted a program whose graph does not verify: {e}");
            }
            let _ = ir::print::print(&graph);
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "rejected with no diagnostic");
            let _ = diag::render("fuzz.tg", source, &diags);
        }
    }
});
