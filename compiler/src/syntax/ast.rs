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

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
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
