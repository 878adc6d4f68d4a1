//! Front end: lexer, parser, and lowering of the AST to the typed IR.

pub mod ast;
mod builtins;
pub mod lexer;
mod lower;
pub mod parser;

use crate::diag::Diagnostic;
use crate::ir::Graph;

/// Parses and lowers one source file to a verified-typed graph, or returns every
/// diagnostic found.
pub fn compile_str(source: &str) -> Result<Graph, Vec<Diagnostic>> {
    let (tokens, mut diags) = lexer::lex(source);
    let (file, parse_diags) = parser::parse(&tokens, source.len());
    diags.extend(parse_diags);
    if !diags.is_empty() {
        return Err(diags);
    }
    lower::lower(&file)
}
