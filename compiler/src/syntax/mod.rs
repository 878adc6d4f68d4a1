//! Front end: lexer, parser, and lowering of the AST to the typed IR.

pub mod ast;
mod builtins;
pub mod lexer;
mod lower;
pub mod parser;

pub use lower::MAX_INLINE_DEPTH;
pub use parser::MAX_NESTING;

use crate::diag::{Diagnostic, Span};
use crate::ir::Graph;

/// A source file's bytes as text, or a diagnostic at the first byte that is not UTF-8.
/// Render it against `String::from_utf8_lossy(bytes)`: that text equals the file up to
/// the bad byte, and the span covers the `U+FFFD` standing in for it, so the rendered line
/// and column are the file's.
pub fn decode_source(bytes: &[u8]) -> Result<&str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let byte = bytes.get(at).copied().unwrap_or_default();
        let span = Span::new(at..at + char::REPLACEMENT_CHARACTER.len_utf8());
        Diagnostic::at(format!("the file is not valid UTF-8: byte 0x{byte:02X} at byte offset {at}"), span, "not UTF-8")
            .with_note("a source file is UTF-8 text; only comments and strings may hold non-ASCII characters")
    })
}

/// Parses and lowers one source file to a verified-typed graph, or returns every
/// diagnostic found.
pub fn compile_str(source: &str) -> Result<Graph, Vec<Diagnostic>> {
    let (tokens, mut diags) = lexer::lex(source);
    let (file, parse_diags) = parser::parse(&tokens, source.len());
    diags.extend(parse_diags);
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut graph = lower::lower(&file)?;
    // Handles in the printer's order: a `%N` in any later error is the `%N` of `flint print`.
    graph.compact();
    Ok(graph)
}
