//! The abstract syntax tree: what the parser builds and the lowering consumes. Every node
//! keeps its span so errors found later still point into the source.

use crate::diag::Span;

/// A whole source file: fns and graphs in written order.
#[derive(Clone, Debug)]
pub struct File {
    pub defs: Vec<Def>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefKind {
    Graph,
    Fn,
}

/// A `graph` or `fn` definition; both share one form.
#[derive(Clone, Debug)]
pub struct Def {
    pub kind: DefKind,
    pub name: Ident,
    pub inputs: Vec<Binding>,
    pub outputs: Vec<Binding>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `name: type`, in a signature.
#[derive(Clone, Debug)]
pub struct Binding {
    pub name: Ident,
    pub ty: TypeExpr,
}

/// `f32[N<=64, 784]`.
#[derive(Clone, Debug)]
pub struct TypeExpr {
    pub dtype: Ident,
    pub dims: Vec<DimExpr>,
    pub span: Span,
}

/// A product of dim atoms: `B*S`, `784`, `N<=64`.
#[derive(Clone, Debug)]
pub struct DimExpr {
    pub factors: Vec<DimAtom>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum DimAtom {
    Int(u64, Span),
    /// A symbol, with its upper bound where it is declared.
    Sym {
        name: Ident,
        bound: Option<(u64, Span)>,
    },
}

#[derive(Clone, Debug)]
pub enum Stmt {
    /// `param name: type`.
    Param { name: Ident, ty: TypeExpr, span: Span },
    /// `a, b = expr [as prefix]`.
    Assign { targets: Vec<Ident>, value: Expr, prefix: Option<Ident>, span: Span },
}

/// An expression. Its nesting is bounded by the parser ([`super::parser::MAX_NESTING`]),
/// except along a left-associative chain (`a + b + c + ...` nests once per term): walk
/// such a chain with [`Expr::left_chain`], never by recursion, and let [`Drop`] free it.
#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl Expr {
    /// The binary nodes down the left operands from `self`, innermost first, and the
    /// leftmost operand below them: `a + b * c - d` gives `a`, [`a + b * c`, `... - d`].
    pub fn left_chain(&self) -> (&Expr, Vec<&Expr>) {
        let mut chain = Vec::new();
        let mut leaf = self;
        while let ExprKind::Binary(_, _, lhs, _) = &leaf.kind {
            chain.push(leaf);
            leaf = lhs;
        }
        chain.reverse();
        (leaf, chain)
    }
}

impl Drop for Expr {
    /// Frees the tree with a worklist: the derived drop would recurse once per term of a
    /// left-associative chain and overflow the stack on a long one.
    fn drop(&mut self) {
        let mut work = Vec::new();
        take_children(&mut self.kind, &mut work);
        while let Some(mut e) = work.pop() {
            take_children(&mut e.kind, &mut work);
        }
    }
}

/// Moves the operands of `kind` onto `work`, leaving a leaf in its place.
fn take_children(kind: &mut ExprKind, work: &mut Vec<Expr>) {
    match std::mem::replace(kind, ExprKind::Bool(false)) {
        ExprKind::Unary(_, x) => work.push(*x),
        ExprKind::Binary(_, _, a, b) => work.extend([*a, *b]),
        ExprKind::List(items) => work.extend(items),
        ExprKind::Call { args, .. } => work.extend(args.into_iter().map(|a| a.value)),
        ExprKind::Name(_) | ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) | ExprKind::Str(_) => {}
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    MatMul,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Name(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    List(Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    /// The operator, its span, and the operands.
    Binary(BinOp, Span, Box<Expr>, Box<Expr>),
    Call {
        callee: Ident,
        args: Vec<Arg>,
    },
}

/// A call argument, positional or `key=value`.
#[derive(Clone, Debug)]
pub struct Arg {
    pub key: Option<Ident>,
    pub value: Expr,
}
