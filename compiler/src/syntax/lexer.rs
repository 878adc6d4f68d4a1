//! The lexer: `logos` turns source text into tokens with byte spans.

use logos::Logos;

use crate::diag::{Diagnostic, Span};

/// A token kind. Whitespace (newlines included) and `#` comments are skipped.
#[derive(Logos, Clone, Debug, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip r"#[^\n]*")]
pub enum Tok {
    #[token("graph")]
    Graph,
    #[token("fn")]
    Fn,
    #[token("param")]
    Param,
    #[token("as")]
    As,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_string())]
    Ident(String),
    #[regex(r"[0-9]+", |lex| lex.slice().to_string(), priority = 3)]
    Int(String),
    #[regex(r"[0-9]+\.[0-9]*([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|\.[0-9]+([eE][+-]?[0-9]+)?", |lex| lex.slice().to_string())]
    Float(String),
    #[regex(r#""[^"\n]*""#, |lex| { let s = lex.slice(); s[1..s.len() - 1].to_string() })]
    Str(String),
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token("->")]
    Arrow,
    #[token("=")]
    Assign,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<=")]
    Le,
    #[token(">=")]
    Ge,
    #[token("<")]
    Lt,
    #[token(">")]
    Gt,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("**")]
    StarStar,
    #[token("/")]
    Slash,
    #[token("%")]
    Percent,
    #[token("@")]
    At,
    #[token("!")]
    Bang,
}

impl Tok {
    /// How the token is named in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier `{s}`"),
            Tok::Int(s) | Tok::Float(s) => format!("number `{s}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            other => format!("`{}`", other.spelling()),
        }
    }

    /// The fixed spelling of a keyword or punctuation token.
    pub fn spelling(&self) -> &'static str {
        match self {
            Tok::Graph => "graph",
            Tok::Fn => "fn",
            Tok::Param => "param",
            Tok::As => "as",
            Tok::True => "true",
            Tok::False => "false",
            Tok::Ident(_) => "identifier",
            Tok::Int(_) | Tok::Float(_) => "number",
            Tok::Str(_) => "string",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Arrow => "->",
            Tok::Assign => "=",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Le => "<=",
            Tok::Ge => ">=",
            Tok::Lt => "<",
            Tok::Gt => ">",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::StarStar => "**",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::At => "@",
            Tok::Bang => "!",
        }
    }
}

/// A token with its span and whether a line break precedes it (statements start lines,
/// which is what error recovery resynchronises on).
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
    pub starts_line: bool,
}

/// Splits `source` into tokens; unrecognised characters become diagnostics and are skipped.
pub fn lex(source: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut tokens = Vec::new();
    let mut diags = Vec::new();
    let mut last_end = 0;
    let mut lexer = Tok::lexer(source);
    while let Some(result) = lexer.next() {
        let range = lexer.span();
        let starts_line = last_end == 0 || source[last_end..range.start].contains('\n');
        let span = Span::new(range.clone());
        last_end = range.end;
        match result {
            Ok(tok) => tokens.push(Token { tok, span, starts_line }),
            Err(()) => {
                let text = &source[range];
                let (message, label) = if text.starts_with('"') {
                    ("unterminated string".to_string(), "this string is not closed on its line")
                } else {
                    (format!("unexpected character `{}`", text.escape_debug()), "not part of the language")
                };
                diags.push(Diagnostic::at(message, span, label));
            }
        }
    }
    (tokens, diags)
}
