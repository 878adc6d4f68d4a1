//! Front end: lexer, parser, and lowering of the AST to the IR.
