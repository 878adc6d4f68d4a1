//! Lowering: AST → typed IR. Resolves names, declares symbols, inlines `fn` calls (binding
//! their generic dims by unification and prefixing their params), types every op through
//! [`crate::ir::infer`], and reports each error at its source span. An erroneous value
//! becomes `Value::Poison`, which silently poisons its users, so one mistake gives one error.

use std::collections::HashMap;

use super::ast::*;
use super::builtins::{self, Attr};
use crate::diag::{Diagnostic, Span};
use crate::ir::infer::result_type;
use crate::ir::{BinaryOp, CompareOp, ConstData, DType, Dim, Graph, NodeId, Op, SymId, Symbol, TensorType, UnaryOp};

/// Lowers the file's one `graph` (with the fns it calls) to IR.
pub fn lower(file: &File) -> Result<Graph, Vec<Diagnostic>> {
    let mut l = Lowerer::default();
    let graph_def = l.collect_defs(file);
    if let Some(def) = graph_def {
        l.lower_graph(def);
    }
    l.check_uncalled_fns(file);
    // A fn called twice reports an error in its body once per call; keep the first.
    let mut seen = std::collections::HashSet::new();
    l.diags.retain(|d| seen.insert((d.message.clone(), d.labels.first().map(|(s, _)| *s))));
    if l.diags.is_empty() {
        Ok(l.graph)
    } else {
        Err(l.diags)
    }
}

/// What an expression lowered to.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    Tensor(NodeId),
    /// A weakly typed literal: it takes the dtype of the tensor it meets.
    Float(f64),
    Int(i64),
    Bool(bool),
    /// An error was already reported for this value.
    Poison,
}

/// Names visible in one body: values, dims (graph symbols or a fn's bound generics), and the
/// prefix given to params declared here.
#[derive(Default)]
struct Scope {
    values: HashMap<String, (Value, Span)>,
    dims: HashMap<String, Dim>,
    prefix: String,
    /// Inside a fn body (which changes what the advice on symbols says).
    in_fn: bool,
}

#[derive(Default)]
pub(super) struct Lowerer<'a> {
    pub(super) graph: Graph,
    fns: HashMap<&'a str, &'a Def>,
    pub(super) diags: Vec<Diagnostic>,
    /// The fns being inlined, outermost first, with their call sites (to report recursion).
    stack: Vec<(&'a str, Span)>,
    /// For each param declared inside a fn, the outermost call that inlined it.
    param_sites: HashMap<String, Span>,
    /// The fns inlined at least once; the others are checked on their own.
    called: std::collections::HashSet<&'a str>,
}

impl<'a> Lowerer<'a> {
    fn collect_defs(&mut self, file: &'a File) -> Option<&'a Def> {
        let mut graph: Option<&'a Def> = None;
        for def in &file.defs {
            match def.kind {
                DefKind::Graph => match graph {
                    Some(first) => self.diags.push(
                        Diagnostic::at("a file holds exactly one `graph`", def.name.span, "second graph")
                            .with_label(first.name.span, "first graph here"),
                    ),
                    None => graph = Some(def),
                },
                DefKind::Fn => self.add_fn(def),
            }
            if def.outputs.is_empty() {
                let d = Diagnostic::at(format!("`{}` has no outputs", def.name.name), def.name.span, "defined here");
                self.diags.push(d.with_note("a definition returns at least one value: `-> (y: f32[N])`"));
            }
        }
        if let (Some(g), Some(f)) = (graph, graph.and_then(|g| self.fns.get(g.name.name.as_str()))) {
            let d =
                Diagnostic::at(format!("the graph and a fn are both named `{}`", g.name.name), g.name.span, "graph")
                    .with_label(f.name.span, "fn");
            self.diags.push(d.with_note("definition names are unique in a file"));
        }
        if graph.is_none() && self.diags.is_empty() {
            let d = Diagnostic::error("no `graph` in this file")
                .with_note("a file needs one `graph name(inputs) -> (outputs) { ... }`; `fn`s alone are not runnable");
            self.diags.push(d);
        }
        graph
    }

    fn add_fn(&mut self, def: &'a Def) {
        let name = def.name.name.as_str();
        if builtins::is_builtin(name) {
            self.diags.push(Diagnostic::at(
                format!("fn `{name}` has the name of a builtin op"),
                def.name.span,
                "rename it",
            ));
        } else if let Some(first) = self.fns.get(name) {
            self.diags.push(
                Diagnostic::at(format!("fn `{name}` is defined twice"), def.name.span, "second definition")
                    .with_label(first.name.span, "first definition"),
            );
        } else {
            self.fns.insert(name, def);
        }
    }

    /// Type-checks each fn that no call inlined, with its generic dims as fresh symbols, so
    /// an error in an unused fn is still reported. Work done here is thrown away.
    fn check_uncalled_fns(&mut self, file: &'a File) {
        let uncalled: Vec<&'a Def> =
            file.defs.iter().filter(|d| d.kind == DefKind::Fn && !self.called.contains(d.name.name.as_str())).collect();
        for def in uncalled {
            let mut scratch = Lowerer { fns: self.fns.clone(), ..Lowerer::default() };
            let mut scope = Scope { in_fn: true, ..Scope::default() };
            for b in &def.inputs {
                for atom in b.ty.dims.iter().flat_map(|d| &d.factors) {
                    if let DimAtom::Sym { name, bound } = atom {
                        if let Some((_, span)) = bound {
                            scratch.diags.push(misplaced_bound(name, *span, true));
                        }
                        scratch.declare_symbol(name, Some((u64::MAX, name.span)), &mut scope);
                    }
                }
                let value = match scratch.resolve_type(&b.ty, &scope) {
                    Some(ty) => Value::Tensor(scratch.graph.add_input(b.name.name.clone(), ty)),
                    None => Value::Poison,
                };
                scope.values.insert(b.name.name.clone(), (value, b.name.span));
            }
            scratch.stack.push((def.name.name.as_str(), def.name.span));
            scratch.body(&def.body, &mut scope);
            scratch.outputs(def, &scope);
            self.diags.append(&mut scratch.diags);
        }
    }

    fn lower_graph(&mut self, def: &'a Def) {
        self.graph.name = def.name.name.clone();
        let mut scope = Scope::default();
        for b in &def.inputs {
            let Some(ty) = self.declare_type(&b.ty, &mut scope) else {
                scope.values.insert(b.name.name.clone(), (Value::Poison, b.name.span));
                continue;
            };
            if self.check_new_name(&mut scope, &b.name) {
                let id = self.graph.add_input(b.name.name.clone(), ty);
                self.graph.node_mut(id).span = Some(b.name.span);
                scope.values.insert(b.name.name.clone(), (Value::Tensor(id), b.name.span));
            }
        }
        self.body(&def.body, &mut scope);
        for b in &def.outputs {
            if def.inputs.iter().any(|i| i.name.name == b.name.name) {
                let d = Diagnostic::at(
                    format!("output `{}` has the name of an input", b.name.name),
                    b.name.span,
                    "rename it",
                );
                self.diags.push(d.with_note(format!("to return the input, write `{0}_out = {0}`", b.name.name)));
            }
        }
        for (b, value) in def.outputs.iter().zip(self.outputs(def, &scope)) {
            if let Value::Tensor(id) = value {
                self.graph.add_output(b.name.name.clone(), id);
            }
        }
    }

    /// Resolves a signature type of the graph, declaring each symbol at its first use.
    /// Every symbol must be declared as a whole dim of an input, so that its value can be
    /// read off that input at run time.
    fn declare_type(&mut self, t: &TypeExpr, scope: &mut Scope) -> Option<TensorType> {
        for d in &t.dims {
            match d.factors.as_slice() {
                [DimAtom::Sym { name, bound }] => self.declare_symbol(name, *bound, scope),
                factors => {
                    for f in factors {
                        if let DimAtom::Sym { bound: Some((b, span)), name } = f {
                            let msg =
                                format!("symbol `{}` must be declared as a whole dim, not inside a product", name.name);
                            let hint = format!("declare it alone in an input first: `{}<={b}`", name.name);
                            self.diags.push(Diagnostic::at(msg, *span, hint));
                            self.declare_symbol(name, Some((*b, *span)), scope);
                        }
                    }
                }
            }
        }
        self.resolve_type(t, scope)
    }

    fn declare_symbol(&mut self, name: &Ident, bound: Option<(u64, Span)>, scope: &mut Scope) {
        let known = scope.dims.contains_key(&name.name);
        match (bound, known) {
            (Some((_, span)), true) => self.diags.push(
                Diagnostic::at(format!("symbol `{}` is already declared", name.name), span, "second bound")
                    .with_note("give the bound once, at the symbol's first appearance"),
            ),
            (Some((b, span)), false) => {
                if b == 0 {
                    let msg = format!("symbol `{}` has bound 0", name.name);
                    self.diags.push(Diagnostic::at(msg, span, "bounds are at least 1"));
                }
                // Declared even after an error, so later uses do not report it again.
                let b = b.max(1);
                let id = SymId(self.graph.symbols.len() as u32);
                self.graph.symbols.push(Symbol { name: name.name.clone(), bound: b });
                scope.dims.insert(name.name.clone(), Dim::sym(id));
            }
            (None, true) => {}
            (None, false) => {
                self.diags.push(unknown_symbol(name, false));
                // A placeholder, so that the symbol's other uses report nothing more.
                let id = SymId(self.graph.symbols.len() as u32);
                self.graph.symbols.push(Symbol { name: name.name.clone(), bound: 1 });
                scope.dims.insert(name.name.clone(), Dim::sym(id));
            }
        }
    }

    /// Resolves a type whose symbols are all known in `scope`.
    fn resolve_type(&mut self, t: &TypeExpr, scope: &Scope) -> Option<TensorType> {
        let dtype = self.dtype(&t.dtype)?;
        let mut shape = Vec::new();
        for d in &t.dims {
            shape.push(self.resolve_dim(d, scope)?);
        }
        let ty = TensorType::new(dtype, shape);
        if let Err(e) = crate::ir::infer::check_size(&ty) {
            self.diags.push(Diagnostic::at(e.display(&self.graph.symbols).to_string(), t.span, "in this type"));
            return None;
        }
        Some(ty)
    }

    fn dtype(&mut self, name: &Ident) -> Option<DType> {
        let found = DType::from_name(&name.name);
        if found.is_none() {
            self.diags.push(
                Diagnostic::at(format!("unknown dtype `{}`", name.name), name.span, "not a dtype")
                    .with_note("dtypes are f32, f16, bf16, i32, i64 and bool"),
            );
        }
        found
    }

    fn resolve_dim(&mut self, d: &DimExpr, scope: &Scope) -> Option<Dim> {
        let mut dim = Dim::known(1);
        for atom in &d.factors {
            let factor = match atom {
                DimAtom::Int(n, _) => Dim::known(*n),
                DimAtom::Sym { name, bound } => {
                    if let (Some((_, span)), false) = (bound, scope.dims.contains_key(&name.name)) {
                        self.diags.push(misplaced_bound(name, *span, scope.in_fn));
                        return None;
                    }
                    match scope.dims.get(&name.name) {
                        Some(d) => d.clone(),
                        None => {
                            self.diags.push(unknown_symbol(name, scope.in_fn));
                            return None;
                        }
                    }
                }
            };
            dim = dim.mul(&factor);
        }
        Some(dim)
    }

    /// Whether `name` may be bound in `scope`; a reserved name is bound to a poisoned value
    /// (so its uses report nothing more) and refused.
    fn check_new_name(&mut self, scope: &mut Scope, name: &Ident) -> bool {
        if DType::from_name(&name.name).is_some() {
            scope.values.insert(name.name.clone(), (Value::Poison, name.span));
            let d = Diagnostic::at(
                format!("`{}` is a dtype name and cannot name a value", name.name),
                name.span,
                "reserved",
            );
            self.diags.push(d);
            return false;
        }
        match scope.values.get(&name.name) {
            Some((_, first)) => {
                self.diags.push(
                    Diagnostic::at(format!("`{}` is already defined", name.name), name.span, "defined again here")
                        .with_label(*first, "first defined here")
                        .with_note("names are assigned once; pick a new name"),
                );
                false
            }
            None => true,
        }
    }

    fn body(&mut self, stmts: &'a [Stmt], scope: &mut Scope) {
        for stmt in stmts {
            match stmt {
                Stmt::Param { name, ty, span } => self.param(name, ty, *span, scope),
                Stmt::Assign { targets, value, prefix, span } => {
                    self.assign(targets, value, prefix.as_ref(), *span, scope)
                }
            }
        }
    }

    fn param(&mut self, name: &Ident, ty: &TypeExpr, span: Span, scope: &mut Scope) {
        let Some(t) = self.resolve_type(ty, scope) else {
            scope.values.insert(name.name.clone(), (Value::Poison, name.span));
            return;
        };
        if !self.check_new_name(scope, name) {
            return;
        }
        if t.shape.iter().any(|d| !d.syms.is_empty()) {
            let shown = t.display(&self.graph.symbols).to_string();
            let d = Diagnostic::at(format!("param `{}` has symbolic type {shown}", name.name), ty.span, "not static")
                .with_note("weights have fixed shapes; only inputs carry symbolic dims");
            self.diags.push(d);
            scope.values.insert(name.name.clone(), (Value::Poison, name.span));
            return;
        }
        let key = format!("{}{}", scope.prefix, name.name);
        let clash = self.graph.node_ids().find(|&n| matches!(self.graph.op(n), Op::Param { name } if *name == key));
        if let Some(other) = clash {
            let mut d = Diagnostic::at(format!("param `{key}` is declared twice"), name.span, "second declaration");
            if let Some(s) = self.graph.node(other).span {
                d = d.with_label(s, "first declaration");
            }
            if let Some(&site) = self.param_sites.get(&key) {
                d = d.with_label(site, "the first call giving this prefix");
            }
            self.diags.push(d.with_note("two calls of one fn need distinct prefixes: `y = f(x) as p1`"));
            scope.values.insert(name.name.clone(), (Value::Poison, name.span));
            return;
        }
        if let Some(&(_, site)) = self.stack.first() {
            self.param_sites.insert(key.clone(), site);
        }
        let id = self.graph.add_param(key, t);
        self.graph.node_mut(id).span = Some(span);
        scope.values.insert(name.name.clone(), (Value::Tensor(id), name.span));
    }

    fn assign(&mut self, targets: &[Ident], value: &'a Expr, prefix: Option<&Ident>, span: Span, scope: &mut Scope) {
        let call_prefix = format!("{}{}.", scope.prefix, prefix.unwrap_or(&targets[0]).name);
        let values = match &value.kind {
            ExprKind::Call { callee, args } if self.fns.contains_key(callee.name.as_str()) => {
                self.call_fn(callee, args, value.span, &call_prefix, scope)
            }
            _ => {
                if let Some(p) = prefix {
                    let d = Diagnostic::at("`as` names the params of a fn call", p.span, "no fn is called here");
                    self.diags.push(d);
                }
                vec![self.expr(value, scope)]
            }
        };
        if values.len() != targets.len() && !values.contains(&Value::Poison) {
            let msg =
                format!("{} name(s) on the left, but the right side gives {} value(s)", targets.len(), values.len());
            self.diags.push(Diagnostic::at(msg, span, "count mismatch"));
        }
        for (i, t) in targets.iter().enumerate() {
            let v = values.get(i).cloned().unwrap_or(Value::Poison);
            if let Value::Tensor(id) = v {
                self.graph.node_mut(id).name.get_or_insert_with(|| t.name.clone());
            }
            if self.check_new_name(scope, t) {
                scope.values.insert(t.name.clone(), (v, t.span));
            }
        }
    }

    /// The declared outputs of `def`, checked against what the body computed.
    fn outputs(&mut self, def: &Def, scope: &Scope) -> Vec<Value> {
        let mut out = Vec::new();
        for b in &def.outputs {
            let declared = self.resolve_type(&b.ty, scope);
            let Some((value, _)) = scope.values.get(&b.name.name).cloned() else {
                let d =
                    Diagnostic::at(format!("output `{}` is never assigned", b.name.name), b.name.span, "declared here");
                self.diags.push(d.with_note(format!("assign it in the body: `{} = ...`", b.name.name)));
                out.push(Value::Poison);
                continue;
            };
            let value = match (&value, &declared) {
                (Value::Float(_) | Value::Int(_) | Value::Bool(_), Some(t)) => {
                    self.materialize(&value, Some(t.dtype), b.name.span)
                }
                _ => value,
            };
            if let (Value::Tensor(id), Some(t)) = (&value, declared) {
                if *self.graph.ty(*id) != t {
                    let found = self.graph.ty(*id).display(&self.graph.symbols).to_string();
                    let want = t.display(&self.graph.symbols).to_string();
                    let mut d = Diagnostic::at(
                        format!("output `{}` is declared {want} but computed as {found}", b.name.name),
                        b.ty.span,
                        "declared type",
                    );
                    if let Some(s) = self.graph.node(*id).span {
                        d = d.with_label(s, format!("computed here as {found}"));
                    }
                    self.diags.push(d);
                }
            }
            out.push(value);
        }
        out
    }

    fn call_fn(&mut self, callee: &Ident, args: &'a [Arg], span: Span, prefix: &str, scope: &Scope) -> Vec<Value> {
        let def = self.fns[callee.name.as_str()];
        let poison = vec![Value::Poison; def.outputs.len()];
        if let Some(at) = self.stack.iter().position(|(name, _)| *name == callee.name) {
            let cycle: Vec<&str> = self.stack[at..].iter().map(|(n, _)| *n).chain([callee.name.as_str()]).collect();
            let d = Diagnostic::at(format!("fn `{}` calls itself", callee.name), callee.span, "recursive call")
                .with_label(self.stack[at].1, "the cycle enters here")
                .with_note(format!("call chain: {}; fns are inlined, so recursion cannot end", cycle.join(" -> ")));
            self.diags.push(d);
            return poison;
        }
        if let Some(key) = args.iter().find_map(|a| a.key.as_ref()) {
            let msg = format!("fn `{}` takes positional arguments only", callee.name);
            self.diags.push(Diagnostic::at(msg, key.span, "named argument").with_label(def.name.span, "defined here"));
            return poison;
        }
        if args.len() != def.inputs.len() {
            let msg =
                format!("fn `{}` takes {} positional argument(s), found {}", callee.name, def.inputs.len(), args.len());
            self.diags.push(Diagnostic::at(msg, span, "in this call").with_label(def.name.span, "defined here"));
            return poison;
        }
        let values: Vec<(Value, Span)> = args.iter().map(|a| (self.expr(&a.value, scope), a.value.span)).collect();
        let mut inner = Scope { prefix: prefix.to_string(), in_fn: true, ..Scope::default() };
        for (b, (v, vspan)) in def.inputs.iter().zip(values) {
            let v = self.bind_fn_input(b, v, vspan, &mut inner);
            if v == Value::Poison {
                // Reported already; lowering the body would only repeat it.
                return poison;
            }
            inner.values.insert(b.name.name.clone(), (v, b.name.span));
        }
        self.stack.push((def.name.name.as_str(), span));
        self.called.insert(def.name.name.as_str());
        let diags_before = self.diags.len();
        self.body(&def.body, &mut inner);
        let outs = self.outputs(def, &inner);
        self.stack.pop();
        for d in &mut self.diags[diags_before..] {
            d.labels.push((span, format!("in this call of `{}`", callee.name)));
        }
        outs
    }

    /// Unifies an argument with a fn input's declared type, binding the fn's generic dims.
    fn bind_fn_input(&mut self, b: &Binding, v: Value, vspan: Span, inner: &mut Scope) -> Value {
        let Some(dtype) = self.dtype(&b.ty.dtype) else { return Value::Poison };
        let v = self.materialize(&v, Some(dtype), vspan);
        let Value::Tensor(id) = v else { return v };
        let arg = self.graph.ty(id).clone();
        let shown = arg.display(&self.graph.symbols).to_string();
        let mismatch = |why: String| {
            Diagnostic::at(
                format!("argument `{}` has type {shown}, which does not fit {}", b.name.name, why),
                vspan,
                format!("this is {shown}"),
            )
            .with_label(b.ty.span, "declared here")
        };
        if arg.dtype != dtype || arg.rank() != b.ty.dims.len() {
            let d = mismatch(format!("the declared {} of rank {}", dtype, b.ty.dims.len()));
            self.diags.push(d);
            return Value::Poison;
        }
        for (axis, (d, actual)) in b.ty.dims.iter().zip(&arg.shape).enumerate() {
            // A lone unbound symbol binds to whatever the argument has; anything else must match.
            if let [DimAtom::Sym { name, bound }] = d.factors.as_slice() {
                if let Some((_, span)) = bound {
                    self.diags.push(misplaced_bound(name, *span, true));
                }
                if !inner.dims.contains_key(&name.name) {
                    inner.dims.insert(name.name.clone(), actual.clone());
                    continue;
                }
            }
            // An unresolvable dim was reported by resolve_dim already.
            let Some(expected) = self.resolve_dim(d, inner) else { return Value::Poison };
            if expected != *actual {
                let want = expected.display(&self.graph.symbols).to_string();
                let d = mismatch(format!("axis {axis}: expected {want}"));
                self.diags.push(d);
                return Value::Poison;
            }
        }
        v
    }

    fn expr(&mut self, e: &'a Expr, scope: &Scope) -> Value {
        match &e.kind {
            ExprKind::Name(name) => self.name(name, e.span, scope),
            ExprKind::Int(v) => Value::Int(*v),
            ExprKind::Float(v) => Value::Float(*v),
            ExprKind::Bool(v) => Value::Bool(*v),
            ExprKind::Str(_) | ExprKind::List(_) => {
                let d = Diagnostic::at("strings and lists are attribute values, not tensors", e.span, "not a tensor")
                    .with_note("pass it as an attribute: `reshape(x, shape=[2, 3])`");
                self.diags.push(d);
                Value::Poison
            }
            ExprKind::Unary(op, x) => {
                let v = self.expr(x, scope);
                self.unary(*op, v, e.span, x.span)
            }
            ExprKind::Binary(op, op_span, a, b) => {
                let (va, vb) = (self.expr(a, scope), self.expr(b, scope));
                self.binary(*op, (va, a.span), (vb, b.span), *op_span)
            }
            ExprKind::Call { callee, args } => self.call(callee, args, e.span, scope),
        }
    }

    fn name(&mut self, name: &str, span: Span, scope: &Scope) -> Value {
        if let Some((v, _)) = scope.values.get(name) {
            return v.clone();
        }
        let mut d = Diagnostic::at(format!("`{name}` is not defined"), span, "undefined name");
        if let Some(close) = closest(name, scope.values.keys().map(String::as_str)) {
            d = d.with_note(format!("did you mean `{close}`?"));
        } else if scope.dims.contains_key(name) {
            d = d.with_note(format!("`{name}` is a dim symbol; it can appear in shapes, not as a value"));
        }
        self.diags.push(d);
        Value::Poison
    }

    fn call(&mut self, callee: &Ident, args: &'a [Arg], span: Span, scope: &Scope) -> Value {
        if self.fns.contains_key(callee.name.as_str()) {
            let d = Diagnostic::at(format!("fn `{}` is called inside an expression", callee.name), span, "fn call")
                .with_note(format!(
                    "a fn call is a statement of its own, which names its params: `y = {}(...)`",
                    callee.name
                ));
            self.diags.push(d);
            return Value::Poison;
        }
        if !builtins::is_builtin(&callee.name) {
            let mut d = Diagnostic::at(format!("unknown op `{}`", callee.name), callee.span, "not an op or fn");
            let mut names: Vec<&str> = self.fns.keys().copied().collect();
            names.extend(builtins::names().map(|n| -> &str { n }));
            if let Some(close) = closest(&callee.name, names.into_iter()) {
                d = d.with_note(format!("did you mean `{close}`?"));
            }
            self.diags.push(d);
            return Value::Poison;
        }
        if let Some(pos) = args.iter().skip_while(|a| a.key.is_none()).find(|a| a.key.is_none()) {
            let d = Diagnostic::at("a positional argument follows a named one", pos.value.span, "positional")
                .with_note("give positional arguments first, then `key=value` ones");
            self.diags.push(d);
            return Value::Poison;
        }
        let mut tensors = Vec::new();
        let mut attrs = Vec::new();
        for (i, arg) in args.iter().enumerate() {
            match builtins::classify(&callee.name, i, arg, &scope.values) {
                builtins::ArgKind::Tensor => tensors.push((arg, self.expr(&arg.value, scope))),
                builtins::ArgKind::Attr => attrs.push(arg),
            }
        }
        let attrs: Vec<(Option<&Ident>, Attr, Span)> =
            attrs.into_iter().map(|a| (a.key.as_ref(), builtins::attr(&a.value, &scope.dims), a.value.span)).collect();
        builtins::apply(self, callee, tensors, attrs, span)
    }

    fn unary(&mut self, op: UnOp, v: Value, span: Span, operand_span: Span) -> Value {
        match (op, &v) {
            (UnOp::Neg, Value::Int(x)) => Value::Int(x.wrapping_neg()),
            (UnOp::Neg, Value::Float(x)) => Value::Float(-x),
            (UnOp::Not, Value::Bool(x)) => Value::Bool(!x),
            _ => {
                let u = if op == UnOp::Neg { UnaryOp::Neg } else { UnaryOp::Not };
                self.apply(Op::Unary(u), &[(v, operand_span)], None, span)
            }
        }
    }

    fn binary(&mut self, op: BinOp, a: (Value, Span), b: (Value, Span), span: Span) -> Value {
        if let Some(folded) = fold_literals(op, &a.0, &b.0) {
            return folded;
        }
        let ir = match op {
            BinOp::Add => Op::Binary(BinaryOp::Add),
            BinOp::Sub => Op::Binary(BinaryOp::Sub),
            BinOp::Mul => Op::Binary(BinaryOp::Mul),
            BinOp::Div => Op::Binary(BinaryOp::Div),
            BinOp::Rem => Op::Binary(BinaryOp::Rem),
            BinOp::Pow => Op::Binary(BinaryOp::Pow),
            BinOp::MatMul => Op::MatMul,
            BinOp::Eq => Op::Compare(CompareOp::Eq),
            BinOp::Ne => Op::Compare(CompareOp::Ne),
            BinOp::Lt => Op::Compare(CompareOp::Lt),
            BinOp::Le => Op::Compare(CompareOp::Le),
            BinOp::Gt => Op::Compare(CompareOp::Gt),
            BinOp::Ge => Op::Compare(CompareOp::Ge),
        };
        self.apply(ir, &[a, b], None, span)
    }

    /// Adds `op` applied to `operands` (literals take the dtype of the first tensor operand),
    /// typing it; reports a type error at `span` with each operand's type labelled.
    pub(super) fn apply(&mut self, op: Op, operands: &[(Value, Span)], given: Option<TensorType>, span: Span) -> Value {
        if operands.iter().any(|(v, _)| *v == Value::Poison) {
            return Value::Poison;
        }
        let like = operands.iter().find_map(|(v, _)| match v {
            Value::Tensor(id) => Some(self.graph.ty(*id).dtype),
            _ => None,
        });
        let like = match (&op, like) {
            // The condition of `select` is bool; the literals beside it follow the branches.
            (Op::Select, _) => operands[1..].iter().find_map(|(v, _)| match v {
                Value::Tensor(id) => Some(self.graph.ty(*id).dtype),
                _ => None,
            }),
            (_, l) => l,
        };
        let mut ids = Vec::new();
        for (i, (v, s)) in operands.iter().enumerate() {
            let dtype = match (&op, i) {
                (Op::Select, 0) => Some(DType::Bool),
                // Indices have no peer: a literal index is i64.
                (Op::Gather { .. }, 1) => None,
                _ => like,
            };
            match self.materialize(v, dtype, *s) {
                Value::Tensor(id) => ids.push(id),
                _ => return Value::Poison,
            }
        }
        let types: Vec<&TensorType> = ids.iter().map(|&id| self.graph.ty(id)).collect();
        match result_type(&op, &types, given.as_ref()) {
            Ok(ty) => {
                let id = self.graph.add(op, ty, &ids);
                self.graph.node_mut(id).span = Some(span);
                Value::Tensor(id)
            }
            Err(err) => {
                let symbols = &self.graph.symbols;
                let mut d = Diagnostic::at(err.display(symbols).to_string(), span, format!("in this `{}`", op.name()));
                for (&id, (_, s)) in ids.iter().zip(operands) {
                    d = d.with_label(*s, format!("this is {}", self.graph.ty(id).display(symbols)));
                }
                self.diags.push(d);
                Value::Poison
            }
        }
    }

    /// Turns a literal into a scalar constant of `dtype` (or its default dtype).
    pub(super) fn materialize(&mut self, v: &Value, dtype: Option<DType>, span: Span) -> Value {
        let (data, default) = match *v {
            Value::Float(x) => (ConstData::Float(vec![x]), DType::F32),
            Value::Int(x) => (ConstData::Int(vec![x]), DType::I64),
            Value::Bool(x) => (ConstData::Bool(vec![x]), DType::Bool),
            Value::Tensor(_) | Value::Poison => return v.clone(),
        };
        let dtype = dtype.unwrap_or(default);
        let data = match (data, dtype) {
            (ConstData::Int(x), d) if d.is_float() => ConstData::Float(vec![x[0] as f64]),
            (ConstData::Float(_), d) if !d.is_float() => return self.literal_error("a float literal", d, span),
            (ConstData::Int(_), DType::Bool) => return self.literal_error("an integer literal", dtype, span),
            (ConstData::Int(x), DType::I32) if i32::try_from(x[0]).is_err() => {
                return self.literal_error("an integer literal outside the i32 range", dtype, span)
            }
            (ConstData::Bool(_), d) if d != DType::Bool => return self.literal_error("a bool literal", d, span),
            (data, _) => data,
        };
        let id = self.graph.add(Op::Constant { data }, TensorType::scalar(dtype), &[]);
        self.graph.node_mut(id).span = Some(span);
        Value::Tensor(id)
    }

    fn literal_error(&mut self, what: &str, dtype: DType, span: Span) -> Value {
        let d = Diagnostic::at(
            format!("{what} cannot meet {} {dtype} tensor", article(dtype.name())),
            span,
            format!("used where {dtype} is needed"),
        )
        .with_note("there is no implicit conversion; use cast() on the tensor or write a literal of its kind");
        self.diags.push(d);
        Value::Poison
    }
}

/// Arithmetic between two literals stays a literal (so `1.0 / 8.0` stays weakly typed).
fn fold_literals(op: BinOp, a: &Value, b: &Value) -> Option<Value> {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => fold_float(op, *x, *y),
        (Value::Float(x), Value::Int(y)) => fold_float(op, *x, *y as f64),
        (Value::Int(x), Value::Float(y)) => fold_float(op, *x as f64, *y),
        (Value::Int(x), Value::Int(y)) => match op {
            BinOp::Add => Some(Value::Int(x.wrapping_add(*y))),
            BinOp::Sub => Some(Value::Int(x.wrapping_sub(*y))),
            BinOp::Mul => Some(Value::Int(x.wrapping_mul(*y))),
            _ => None,
        },
        _ => None,
    }
}

fn fold_float(op: BinOp, x: f64, y: f64) -> Option<Value> {
    match op {
        BinOp::Add => Some(Value::Float(x + y)),
        BinOp::Sub => Some(Value::Float(x - y)),
        BinOp::Mul => Some(Value::Float(x * y)),
        BinOp::Div => Some(Value::Float(x / y)),
        BinOp::Pow => Some(Value::Float(x.powf(y))),
        _ => None,
    }
}

/// "a" or "an" before a word as it is pronounced (`an i32`, `an f32`, `a bf16`).
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u', 'f']) {
        "an"
    } else {
        "a"
    }
}

fn unknown_symbol(name: &Ident, in_fn: bool) -> Diagnostic {
    let d = Diagnostic::at(format!("unknown dim symbol `{}`", name.name), name.span, "not declared");
    if in_fn {
        d.with_note(format!(
            "a fn's symbol is bound by appearing alone as a dim of one of its inputs: `x: f32[{}]`",
            name.name
        ))
    } else {
        d.with_note(format!("declare it with an upper bound in an input of the graph: `x: f32[{}<=64]`", name.name))
    }
}

fn misplaced_bound(name: &Ident, span: Span, in_fn: bool) -> Diagnostic {
    if in_fn {
        Diagnostic::at(format!("fn symbol `{}` has a bound", name.name), span, "remove this bound")
            .with_note("bounds belong to a graph's inputs; a fn's symbols take their values from each call's arguments")
    } else {
        Diagnostic::at(format!("symbol `{}` must be declared in a graph input", name.name), span, "bound given here")
            .with_note("a symbol's value is read off the inputs, so it is declared (with its bound) in an input's type")
    }
}

/// The candidate nearest to `name` by edit distance, if it is close enough to be a typo.
pub(super) fn closest<'n>(name: &str, candidates: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
