//! A hand-written recursive-descent parser. It recovers at the next line that starts a
//! statement or definition, so one run reports several syntax errors.
//! The grammar is in `ir-spec/language.md`.

use super::ast::*;
use super::lexer::{Tok, Token};
use crate::diag::{Diagnostic, Span};

/// How deeply an expression may nest: each bracket pair, call argument, prefix operator and
/// right operand of `**` opens a level. A level costs the parser eight frames, about 7 KiB
/// of stack in a debug build (the lowering needs less), so the limit stays under 1 MiB:
/// half of a test thread's 2 MiB. Real programs nest a handful of levels.
pub const MAX_NESTING: usize = 128;

/// Parses tokens into a file; returns every syntax error found.
pub fn parse(tokens: &[Token], source_len: usize) -> (File, Vec<Diagnostic>) {
    let mut p =
        Parser { tokens, pos: 0, diags: Vec::new(), eof: Span::new(source_len..source_len), depth: 0, too_deep: false };
    let file = p.file();
    (file, p.diags)
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    diags: Vec<Diagnostic>,
    eof: Span,
    /// The nesting level of the expression being parsed.
    depth: usize,
    /// The limit was exceeded; the statement's recovery then skips the rest of the body.
    too_deep: bool,
}

/// A syntax error was recorded; the caller unwinds to a recovery point.
struct Recover;

type PResult<T> = Result<T, Recover>;

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, offset: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + offset).map(|t| &t.tok)
    }

    fn span(&self) -> Span {
        self.tokens.get(self.pos).map_or(self.eof, |t| t.span)
    }

    fn prev_span(&self) -> Span {
        self.pos.checked_sub(1).and_then(|i| self.tokens.get(i)).map_or(self.eof, |t| t.span)
    }

    fn at(&self, tok: &Tok) -> bool {
        self.peek() == Some(tok)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let found = self.at(tok);
        if found {
            self.pos += 1;
        }
        found
    }

    fn error<T>(&mut self, expected: &str) -> PResult<T> {
        let (found, label) = match self.tokens.get(self.pos) {
            Some(t) => (t.tok.describe(), format!("expected {expected}")),
            None => ("end of file".to_string(), format!("expected {expected} before the end of the file")),
        };
        self.diags.push(Diagnostic::at(format!("expected {expected}, found {found}"), self.span(), label));
        Err(Recover)
    }

    fn expect(&mut self, tok: Tok) -> PResult<Span> {
        if self.eat(&tok) {
            Ok(self.prev_span())
        } else {
            self.error(&format!("`{}`", tok.spelling()))
        }
    }

    /// Parses `f` one nesting level deeper, or refuses at the token that opened the level.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_NESTING {
            return self.nesting_error();
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    // Out of line, so that its temporaries do not sit in the frame of every nesting level.
    #[cold]
    #[inline(never)]
    fn nesting_error<T>(&mut self) -> PResult<T> {
        let d = Diagnostic::at(
            format!("expression nested more than {MAX_NESTING} levels deep"),
            self.prev_span(),
            format!("level {} opens here", MAX_NESTING + 1),
        );
        self.diags.push(d.with_note("name an inner part in a statement of its own: `t = ...`"));
        self.too_deep = true;
        Err(Recover)
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match self.peek() {
            Some(Tok::Ident(name)) => {
                let ident = Ident { name: name.clone(), span: self.span() };
                self.pos += 1;
                Ok(ident)
            }
            _ => self.error(what),
        }
    }

    fn file(&mut self) -> File {
        let mut defs = Vec::new();
        while self.peek().is_some() {
            match self.def() {
                Ok(d) => defs.push(d),
                Err(Recover) => self.skip_to_def(),
            }
        }
        File { defs }
    }

    fn skip_to_def(&mut self) {
        self.pos += 1;
        while !matches!(self.peek(), None | Some(Tok::Graph | Tok::Fn)) {
            self.pos += 1;
        }
    }

    fn def(&mut self) -> PResult<Def> {
        let start = self.span();
        let kind = match self.peek() {
            Some(Tok::Graph) => DefKind::Graph,
            Some(Tok::Fn) => DefKind::Fn,
            _ => return self.error("`graph` or `fn`"),
        };
        self.pos += 1;
        let name = self.ident("a name")?;
        self.expect(Tok::LParen)?;
        let inputs = self.bindings(Tok::RParen)?;
        self.expect(Tok::Arrow)?;
        self.expect(Tok::LParen)?;
        let outputs = self.bindings(Tok::RParen)?;
        self.expect(Tok::LBrace)?;
        let body = self.body();
        let end = self.expect(Tok::RBrace)?;
        Ok(Def { kind, name, inputs, outputs, body, span: start.to(end) })
    }

    /// `name: type, ...` up to `close`, which it consumes.
    fn bindings(&mut self, close: Tok) -> PResult<Vec<Binding>> {
        let mut out = Vec::new();
        while !self.eat(&close) {
            let name = self.ident("a name")?;
            self.expect(Tok::Colon)?;
            let ty = self.type_expr()?;
            out.push(Binding { name, ty });
            if !self.eat(&Tok::Comma) && !self.at(&close) {
                return self.error(&format!("`,` or `{}`", close.spelling()));
            }
        }
        Ok(out)
    }

    fn type_expr(&mut self) -> PResult<TypeExpr> {
        let dtype = self.ident("a dtype such as `f32`")?;
        self.expect(Tok::LBracket)?;
        let mut dims = Vec::new();
        while !self.eat(&Tok::RBracket) {
            dims.push(self.dim_expr()?);
            if !self.eat(&Tok::Comma) && !self.at(&Tok::RBracket) {
                return self.error("`,` or `]`");
            }
        }
        Ok(TypeExpr { span: dtype.span.to(self.prev_span()), dtype, dims })
    }

    fn dim_expr(&mut self) -> PResult<DimExpr> {
        let start = self.span();
        let mut factors = vec![self.dim_atom()?];
        while self.eat(&Tok::Star) {
            factors.push(self.dim_atom()?);
        }
        Ok(DimExpr { factors, span: start.to(self.prev_span()) })
    }

    fn dim_atom(&mut self) -> PResult<DimAtom> {
        if let Some(Tok::Int(text)) = self.peek() {
            let span = self.span();
            let value = self.int_value(text.clone(), span)?;
            self.pos += 1;
            return Ok(DimAtom::Int(value, span));
        }
        let name = self.ident("a dim (a number or a symbol)")?;
        let mut bound = None;
        if self.eat(&Tok::Le) {
            let span = self.span();
            match self.peek() {
                Some(Tok::Int(text)) => {
                    let value = self.int_value(text.clone(), span)?;
                    self.pos += 1;
                    bound = Some((value, span));
                }
                _ => return self.error("an integer upper bound"),
            }
        }
        Ok(DimAtom::Sym { name, bound })
    }

    fn int_value(&mut self, text: String, span: Span) -> PResult<u64> {
        text.parse::<u64>().map_err(|_| {
            self.diags.push(Diagnostic::at(format!("integer `{text}` is too large"), span, "does not fit in 64 bits"));
            Recover
        })
    }

    fn body(&mut self) -> Vec<Stmt> {
        let mut stmts = Vec::new();
        while !matches!(self.peek(), None | Some(Tok::RBrace)) {
            match self.stmt() {
                Ok(s) => stmts.push(s),
                Err(Recover) if self.too_deep => self.skip_deep_expr(),
                Err(Recover) => self.skip_to_stmt(),
            }
        }
        stmts
    }

    /// After the nesting limit, skips to the end of the body: the deep expression may span
    /// many lines, and resuming at each would report it again. No expression holds a brace.
    fn skip_deep_expr(&mut self) {
        self.too_deep = false;
        while !matches!(self.peek(), None | Some(Tok::RBrace | Tok::Graph | Tok::Fn)) {
            self.pos += 1;
        }
    }

    /// Skips to the next token that starts a line (a new statement), or to the closing brace.
    fn skip_to_stmt(&mut self) {
        // Always make progress, but never past the `}` that closes the body.
        if !self.at(&Tok::RBrace) {
            self.pos += 1;
        }
        while let Some(t) = self.tokens.get(self.pos) {
            if t.starts_line || matches!(t.tok, Tok::RBrace | Tok::Graph | Tok::Fn) {
                break;
            }
            self.pos += 1;
        }
        if matches!(self.peek(), Some(Tok::Graph | Tok::Fn)) {
            // A definition began before this one closed; let the file level take it.
            self.diags.push(Diagnostic::at(
                "expected `}` to close the body",
                self.span(),
                "a new definition begins here",
            ));
        }
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        let start = self.span();
        if self.eat(&Tok::Param) {
            let name = self.ident("a param name")?;
            self.expect(Tok::Colon)?;
            let ty = self.type_expr()?;
            return Ok(Stmt::Param { span: start.to(ty.span), name, ty });
        }
        let mut targets = vec![self.ident("a statement (`name = expr` or `param name: type`)")?];
        while self.eat(&Tok::Comma) {
            targets.push(self.ident("a name")?);
        }
        self.expect(Tok::Assign)?;
        let value = self.expr()?;
        let prefix = if self.eat(&Tok::As) { Some(self.ident("a param prefix after `as`")?) } else { None };
        Ok(Stmt::Assign { span: start.to(self.prev_span()), targets, value, prefix })
    }

    fn expr(&mut self) -> PResult<Expr> {
        let lhs = self.additive()?;
        let op = match self.peek() {
            Some(Tok::EqEq) => BinOp::Eq,
            Some(Tok::NotEq) => BinOp::Ne,
            Some(Tok::Lt) => BinOp::Lt,
            Some(Tok::Le) => BinOp::Le,
            Some(Tok::Gt) => BinOp::Gt,
            Some(Tok::Ge) => BinOp::Ge,
            _ => return Ok(lhs),
        };
        let op_span = self.span();
        self.pos += 1;
        let rhs = self.additive()?;
        if matches!(self.peek(), Some(Tok::EqEq | Tok::NotEq | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge)) {
            self.diags.push(
                Diagnostic::at("comparisons do not chain", self.span(), "second comparison")
                    .with_note("write `logical_and(a < b, b < c)`"),
            );
            return Err(Recover);
        }
        Ok(binary(op, op_span, lhs, rhs))
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut lhs = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => BinOp::Add,
                Some(Tok::Minus) => BinOp::Sub,
                _ => return Ok(lhs),
            };
            let op_span = self.span();
            self.pos += 1;
            let rhs = self.multiplicative()?;
            lhs = binary(op, op_span, lhs, rhs);
        }
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => BinOp::Mul,
                Some(Tok::Slash) => BinOp::Div,
                Some(Tok::Percent) => BinOp::Rem,
                Some(Tok::At) => BinOp::MatMul,
                _ => return Ok(lhs),
            };
            let op_span = self.span();
            self.pos += 1;
            let rhs = self.unary()?;
            lhs = binary(op, op_span, lhs, rhs);
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        let start = self.span();
        let op = match self.peek() {
            Some(Tok::Minus) => UnOp::Neg,
            Some(Tok::Bang) => UnOp::Not,
            _ => return self.power(),
        };
        self.pos += 1;
        let operand = self.nested(Self::unary)?;
        Ok(Expr { span: start.to(operand.span), kind: ExprKind::Unary(op, Box::new(operand)) })
    }

    fn power(&mut self) -> PResult<Expr> {
        let base = self.postfix()?;
        let op_span = self.span();
        if self.eat(&Tok::StarStar) {
            // Right-associative, and binds tighter than a unary minus on its left: -x**2 = -(x**2).
            let exponent = self.nested(Self::unary)?;
            return Ok(binary(BinOp::Pow, op_span, base, exponent));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let bare_name = matches!(self.peek(), Some(Tok::Ident(_)));
        let primary = self.primary()?;
        if let (ExprKind::Name(name), true) = (&primary.kind, bare_name) {
            if self.eat(&Tok::LParen) {
                let callee = Ident { name: name.clone(), span: primary.span };
                let args = self.args()?;
                return Ok(Expr { span: primary.span.to(self.prev_span()), kind: ExprKind::Call { callee, args } });
            }
        }
        if self.at(&Tok::LParen) {
            return self.error("an operator; only names can be called");
        }
        Ok(primary)
    }

    fn args(&mut self) -> PResult<Vec<Arg>> {
        let mut args = Vec::new();
        while !self.eat(&Tok::RParen) {
            let key = match (self.peek(), self.peek_at(1)) {
                (Some(Tok::Ident(_)), Some(Tok::Assign)) => {
                    let key = self.ident("an argument name")?;
                    self.pos += 1;
                    Some(key)
                }
                _ => None,
            };
            args.push(Arg { key, value: self.nested(Self::expr)? });
            if !self.eat(&Tok::Comma) && !self.at(&Tok::RParen) {
                return self.error("`,` or `)`");
            }
        }
        Ok(args)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let span = self.span();
        let kind = match self.peek().cloned() {
            Some(Tok::Ident(name)) => ExprKind::Name(name),
            Some(Tok::Int(text)) => match text.parse::<i64>() {
                Ok(v) => ExprKind::Int(v),
                Err(_) => {
                    self.diags.push(Diagnostic::at(
                        format!("integer `{text}` is too large"),
                        span,
                        "does not fit in i64",
                    ));
                    return Err(Recover);
                }
            },
            Some(Tok::Float(text)) => match text.parse::<f64>() {
                Ok(v) => ExprKind::Float(v),
                Err(_) => return self.error("a number"),
            },
            Some(Tok::True) => ExprKind::Bool(true),
            Some(Tok::False) => ExprKind::Bool(false),
            Some(Tok::Str(s)) => ExprKind::Str(s),
            Some(Tok::LParen) => {
                self.pos += 1;
                let mut inner = self.nested(Self::expr)?;
                inner.span = span.to(self.expect(Tok::RParen)?);
                return Ok(inner);
            }
            Some(Tok::LBracket) => {
                self.pos += 1;
                let mut items = Vec::new();
                while !self.eat(&Tok::RBracket) {
                    items.push(self.nested(Self::expr)?);
                    if !self.eat(&Tok::Comma) && !self.at(&Tok::RBracket) {
                        return self.error("`,` or `]`");
                    }
                }
                return Ok(Expr { span: span.to(self.prev_span()), kind: ExprKind::List(items) });
            }
            _ => return self.error("an expression"),
        };
        self.pos += 1;
        Ok(Expr { kind, span })
    }
}

fn binary(op: BinOp, op_span: Span, lhs: Expr, rhs: Expr) -> Expr {
    Expr { span: lhs.span.to(rhs.span), kind: ExprKind::Binary(op, op_span, Box::new(lhs), Box::new(rhs)) }
}
