//! The importer: walks an ONNX graph node by node and builds the equivalent Flint IR.
//!
//! Every ONNX value is one of three things while importing ([`Value`]):
//! - a **node** of the Flint graph (a run-time value);
//! - a **constant** tensor known at import time (an initializer, a `Constant`, or anything
//!   computed from constants only: a node whose inputs are all constant is *folded* — built in
//!   a scratch graph and evaluated by the reference interpreter, so folding needs no second
//!   implementation of any op);
//! - a **dims** vector: a rank-0/1 `i64` tensor whose elements are [`Dim`]s, some symbolic
//!   (`Shape` of an input with a dynamic batch). The shape-arithmetic ops (`Gather`,
//!   `Concat`, `Slice`, `Unsqueeze`, `Mul`, ...) keep it symbolic, so `Reshape` can still
//!   read a compile-time shape; any other op gets it computed at run time.
//!
//! A constant becomes a graph node only where a run-time op uses it ("materialised"): a
//! scalar or splat as a `const` (broadcast to its shape), anything else as a `param` whose
//! data goes to the weights file. Op handlers live in the family modules; each one states
//! the attributes it understands, and a node carrying any other attribute is refused.

mod attrs;
mod build;
mod composite;
mod control;
mod elementwise;
mod movement;
mod nn;
mod reduce;
mod resize;
mod rnn;
mod scatter;
mod shape;
mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

pub(crate) use attrs::{DimOrInt, NodeCx};

use super::proto::{self, ModelProto, NodeProto, ValueInfoProto};
use super::{tensor, OnnxError};
use crate::interp::{self, DimValues, Tensor, TensorData, TensorMap};
use crate::ir::infer::{result_type, TypeError};
use crate::ir::*;

/// What the caller tells the importer.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Upper bounds of symbolic dims (ONNX `dim_param`s), by name.
    pub dim_bounds: BTreeMap<String, u64>,
    /// Graph inputs fixed to a value at import time, by ONNX name: they stop being inputs.
    /// This specialises a model whose shapes or attributes arrive as input tensors (Flint
    /// needs those at compile time).
    pub constants: BTreeMap<String, Tensor>,
}

/// An imported model: the graph and the data of its params.
#[derive(Clone, Debug)]
pub struct Imported {
    pub graph: Graph,
    pub params: TensorMap,
    /// The default-domain opset the model declares.
    pub opset: i64,
    /// `producer_name producer_version`, as the model states it.
    pub producer: String,
}

/// A value while importing; see the module doc.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Node(NodeId),
    Const(Rc<Tensor>),
    Dims { dims: Vec<DimOrInt>, scalar: bool },
}

impl Value {
    pub fn constant(t: Tensor) -> Value {
        Value::Const(Rc::new(t))
    }

    /// A dims vector, or a plain constant when no entry is symbolic.
    pub fn dims(dims: Vec<DimOrInt>, scalar: bool) -> Value {
        let dims: Vec<DimOrInt> = dims.into_iter().map(DimOrInt::normalize).collect();
        match dims.iter().map(DimOrInt::as_int).collect::<Option<Vec<i64>>>() {
            Some(v) => {
                let shape: &[usize] = if scalar { &[] } else { &[v.len()] };
                Tensor::from_i64(DType::I64, shape, v).map_or(Value::Dims { dims, scalar }, Value::constant)
            }
            None => Value::Dims { dims, scalar },
        }
    }
}

/// One scope of ONNX value names.
#[derive(Default)]
pub(crate) struct Scope {
    uid: usize,
    map: HashMap<String, Value>,
}

/// An op handler: reads the node's inputs and attributes, returns one value per output.
pub(crate) type Handler = fn(&mut Importer, &NodeCx) -> Result<Vec<Value>, OnnxError>;

/// One row of an op table: the handler and the attributes it understands.
pub(crate) struct Entry {
    pub run: Handler,
    pub attrs: &'static [&'static str],
}

pub(crate) const fn entry(run: Handler, attrs: &'static [&'static str]) -> Entry {
    Entry { run, attrs }
}

/// The op tables of every family, searched in order.
const FAMILIES: &[&[(&str, Entry)]] = &[
    elementwise::OPS,
    reduce::OPS,
    movement::OPS,
    shape::OPS,
    nn::OPS,
    composite::OPS,
    resize::OPS,
    scatter::OPS,
    rnn::OPS,
    state::OPS,
    control::OPS,
];

fn lookup(op_type: &str) -> Option<&'static Entry> {
    FAMILIES.iter().flat_map(|f| f.iter()).find(|(name, _)| *name == op_type).map(|(_, e)| e)
}

/// True when the importer has a handler for the default-domain op `op_type`.
pub fn is_supported_op(op_type: &str) -> bool {
    lookup(op_type).is_some()
}

/// The importer's state while it walks one graph.
pub(crate) struct Importer {
    pub graph: Graph,
    params: TensorMap,
    /// ONNX values by name, innermost scope last (a subgraph of `If`, `Loop` or `Scan` is a
    /// scope; names resolve outward).
    scopes: Vec<Scope>,
    /// Scopes opened so far, for unique scope ids.
    scope_count: usize,
    /// Constants already materialised, by [`Importer::key`].
    materialized: HashMap<String, NodeId>,
    /// Identifiers taken by inputs, params and outputs.
    names: HashSet<String>,
    pub opset: i64,
    /// True while a node with constant inputs is built in a scratch graph.
    folding: bool,
}

/// Imports a decoded model.
pub fn import_model(model: &ModelProto, options: &ImportOptions) -> Result<Imported, OnnxError> {
    let opset = default_opset(model)?;
    let g = model.graph.as_ref().ok_or_else(|| invalid_model("model", "it has no graph"))?;
    let mut imp = Importer {
        graph: Graph::new(identifier(g.name.as_deref().unwrap_or("model"))),
        params: TensorMap::new(),
        scopes: vec![Scope::default()],
        scope_count: 1,
        materialized: HashMap::new(),
        names: HashSet::new(),
        opset,
        folding: false,
    };
    imp.initializers(g)?;
    imp.inputs(g, options)?;
    for (index, node) in g.node.iter().enumerate() {
        imp.import_node(index, node)?;
    }
    imp.outputs(g)?;
    imp.graph.compact();
    let producer =
        format!("{} {}", model.producer_name.as_deref().unwrap_or(""), model.producer_version.as_deref().unwrap_or(""));
    Ok(Imported { graph: imp.graph, params: imp.params, opset, producer: producer.trim().to_string() })
}

fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let default = model.opset_import.iter().find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")));
    // IR versions before 3 had no opset_import; they mean opset 1.
    Ok(default.and_then(|o| o.version).unwrap_or(1))
}

fn invalid_model(place: &str, message: &str) -> OnnxError {
    OnnxError::InvalidModel { place: place.into(), message: message.into() }
}

impl Importer {
    fn initializers(&mut self, g: &proto::GraphProto) -> Result<(), OnnxError> {
        if let Some(s) = g.sparse_initializer.first() {
            let name = s.values.as_ref().and_then(|v| v.name.clone()).unwrap_or_default();
            return Err(OnnxError::UnsupportedModel {
                place: format!("initializer `{name}`"),
                what: "a sparse initializer".into(),
            });
        }
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            self.bind(&name, Value::constant(tensor::decode(t)?));
        }
        Ok(())
    }

    /// Graph inputs that no initializer shadows become `input` nodes.
    fn inputs(&mut self, g: &proto::GraphProto, options: &ImportOptions) -> Result<(), OnnxError> {
        if let Some(dim) = options.dim_bounds.iter().find(|(_, &b)| b == 0).map(|(d, _)| d.clone()) {
            return Err(OnnxError::ZeroBound { dim });
        }
        let mut symbols: BTreeMap<String, SymId> = BTreeMap::new();
        for info in &g.input {
            let raw = info.name.clone().unwrap_or_default();
            if self.lookup(&raw).is_some() {
                continue;
            }
            if let Some(t) = options.constants.get(&raw) {
                self.bind(&raw, Value::constant(t.clone()));
                continue;
            }
            let name = self.fresh_name(&raw);
            let ty = self.value_type(info, &name, &mut symbols, options)?;
            crate::ir::infer::check_size(&ty).map_err(|e| OnnxError::InvalidModel {
                place: format!("input `{raw}`"),
                message: e.display(&self.graph.symbols).to_string(),
            })?;
            self.fits_at_bounds(&raw, &ty)?;
            let id = self.graph.add_input(name, ty);
            self.bind(&raw, Value::Node(id));
        }
        let declared: Vec<&str> = g.input.iter().filter_map(|i| i.name.as_deref()).collect();
        if let Some(unknown) = options.constants.keys().find(|k| !declared.contains(&k.as_str())) {
            return Err(OnnxError::InvalidModel {
                place: format!("input `{unknown}`"),
                message: "a value was given for it, but the model has no such input".into(),
            });
        }
        if let Some(unknown) = options.dim_bounds.keys().find(|k| !symbols.contains_key(*k)) {
            return Err(OnnxError::UnknownBound { dim: unknown.clone(), known: symbols.into_keys().collect() });
        }
        Ok(())
    }

    /// An input must hold at most [`MAX_ELEMENTS`](crate::ir::infer::MAX_ELEMENTS) with
    /// every symbol at its bound too, so that sizes and shape values computed from the bounds
    /// stay far from overflowing.
    fn fits_at_bounds(&self, raw: &str, ty: &TensorType) -> Result<(), OnnxError> {
        let symbols = &self.graph.symbols;
        let bound = |s: SymId| symbols.get(s.0 as usize).map_or(u64::MAX, |s| s.bound);
        let most = ty.shape.iter().fold(1u64, |n, d| n.saturating_mul(d.eval(bound)));
        if most <= crate::ir::infer::MAX_ELEMENTS {
            return Ok(());
        }
        let mut syms: Vec<SymId> = ty.shape.iter().flat_map(|d| d.syms.iter().copied()).collect();
        syms.sort();
        syms.dedup();
        let bounds: Vec<String> =
            syms.iter().filter_map(|s| symbols.get(s.0 as usize)).map(|s| format!("{}<={}", s.name, s.bound)).collect();
        Err(OnnxError::InvalidModel {
            place: format!("input `{raw}`"),
            message: format!("at the bounds {} it holds more than 2^40 elements", bounds.join(", ")),
        })
    }

    fn value_type(
        &mut self,
        info: &ValueInfoProto,
        input: &str,
        symbols: &mut BTreeMap<String, SymId>,
        options: &ImportOptions,
    ) -> Result<TensorType, OnnxError> {
        let place = || format!("input `{input}`");
        let t = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(proto::type_proto::Value::TensorType(t)) => t,
            _ => {
                return Err(OnnxError::UnsupportedModel { place: place(), what: "a value that is not a tensor".into() })
            }
        };
        let dtype = tensor::dtype(t.elem_type.unwrap_or(0), &place)?;
        let Some(shape) = &t.shape else {
            return Err(OnnxError::UnsupportedModel { place: place(), what: "an input of unknown rank".into() });
        };
        let mut dims = Vec::new();
        for (axis, d) in shape.dim.iter().enumerate() {
            use proto::tensor_shape_proto::dimension::Value as D;
            let dim = match &d.value {
                Some(D::DimValue(0)) => {
                    return Err(OnnxError::UnsupportedModel {
                        place: place(),
                        what: "a dim of 0 (Flint's dims are at least 1)".into(),
                    })
                }
                Some(D::DimValue(v)) if *v > 0 => Dim::known(*v as u64),
                Some(D::DimParam(p)) if !p.is_empty() => Dim::sym(self.symbol(p, input, symbols, options)?),
                _ => Dim::sym(self.symbol(&format!("{input}_dim{axis}"), input, symbols, options)?),
            };
            dims.push(dim);
        }
        Ok(TensorType::new(dtype, dims))
    }

    fn symbol(
        &mut self,
        raw: &str,
        input: &str,
        symbols: &mut BTreeMap<String, SymId>,
        options: &ImportOptions,
    ) -> Result<SymId, OnnxError> {
        if let Some(s) = symbols.get(raw) {
            return Ok(*s);
        }
        let bound = options
            .dim_bounds
            .get(raw)
            .copied()
            .ok_or_else(|| OnnxError::MissingBound { dim: raw.to_string(), input: input.to_string() })?;
        let id = SymId(self.graph.symbols.len() as u32);
        let mut name = identifier(raw);
        while self.graph.symbols.iter().any(|s| s.name == name) {
            name.push('_');
        }
        self.graph.symbols.push(Symbol { name, bound });
        symbols.insert(raw.to_string(), id);
        Ok(id)
    }

    fn outputs(&mut self, g: &proto::GraphProto) -> Result<(), OnnxError> {
        for info in &g.output {
            let raw = info.name.clone().unwrap_or_default();
            let place = format!("graph output `{raw}`");
            let (value, key) = self.lookup(&raw).ok_or_else(|| invalid_model(&place, "no node computes it"))?;
            let id = self.materialize(&raw, &key, &value)?;
            if let Some(proto::type_proto::Value::TensorType(t)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                let declared = tensor::dtype(t.elem_type.unwrap_or(0), &|| place.clone())?;
                let found = self.graph.ty(id).dtype;
                if declared != found {
                    let message = format!("declared {declared}, but the imported graph computes {found}");
                    return Err(OnnxError::InvalidModel { place, message });
                }
            }
            let name = self.fresh_name(&raw);
            if self.graph.node(id).name.is_none() {
                self.graph.node_mut(id).name = Some(name.clone());
            }
            self.graph.add_output(name, id);
        }
        Ok(())
    }

    /// A unique identifier made from an ONNX name.
    fn fresh_name(&mut self, raw: &str) -> String {
        let base = identifier(raw);
        let mut name = base.clone();
        let mut n = 1;
        while self.names.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        self.names.insert(name.clone());
        name
    }

    pub(crate) fn import_node(&mut self, index: usize, node: &NodeProto) -> Result<(), OnnxError> {
        let (mut inputs, mut keys) = (Vec::new(), Vec::new());
        for name in &node.input {
            if name.is_empty() {
                inputs.push(None);
                keys.push(String::new());
                continue;
            }
            let (v, key) = self.lookup(name).ok_or_else(|| OnnxError::Invalid {
                node: attrs::node_ref(index, node),
                message: format!("input `{name}` is not computed by any earlier node"),
            })?;
            inputs.push(Some(v));
            keys.push(key);
        }
        let cx = NodeCx::new(index, node, inputs, keys);
        // Ops of other domains are listed as `domain::Op`.
        let entry = match node.domain.as_deref().unwrap_or("") {
            "" | "ai.onnx" => lookup(cx.op()),
            domain => lookup(&format!("{domain}::{}", cx.op())),
        };
        let Some(entry) = entry else {
            let domain = node.domain.clone().unwrap_or_default();
            return Err(OnnxError::UnsupportedOp { node: cx.node_ref(), domain });
        };
        if let Some(a) = node.attribute.iter().find(|a| !entry.attrs.contains(&a.name.as_deref().unwrap_or(""))) {
            return Err(cx.bad_attr(a.name.as_deref().unwrap_or(""), &attrs::render(a)));
        }
        let outputs = match shape::dims_rule(self, &cx) {
            Some(r) => r?,
            None if control::is_control(cx.op()) => (entry.run)(self, &cx)?,
            None if cx.all_const() => match elementwise::empty_rule(self, &cx) {
                Some(r) => r?,
                None => self.fold(&cx, entry)?,
            },
            None => (entry.run)(self, &cx)?,
        };
        self.bind_outputs(&cx, outputs)
    }

    fn bind_outputs(&mut self, cx: &NodeCx, outputs: Vec<Value>) -> Result<(), OnnxError> {
        for (i, name) in cx.node.output.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let Some(v) = outputs.get(i) else {
                return Err(cx.unsupported(format!("output {i} (`{name}`)")));
            };
            if let Value::Node(id) = v {
                let node = self.graph.node_mut(*id);
                if node.name.is_none() && !matches!(node.op, Op::Input { .. } | Op::Param { .. }) {
                    node.name = Some(value_name(name));
                }
            }
            self.bind(name, v.clone());
        }
        Ok(())
    }

    /// Builds the node in a scratch graph whose constants stay constants, and evaluates it.
    fn fold(&mut self, cx: &NodeCx, entry: &Entry) -> Result<Vec<Value>, OnnxError> {
        let mut scratch = Graph::new("fold");
        scratch.symbols = self.graph.symbols.clone();
        let graph = std::mem::replace(&mut self.graph, scratch);
        let materialized = std::mem::take(&mut self.materialized);
        let folding = std::mem::replace(&mut self.folding, true);
        let result = (entry.run)(self, cx);
        self.folding = folding;
        let mut scratch = std::mem::replace(&mut self.graph, graph);
        self.materialized = materialized;
        let outputs = result?;
        // Outputs too large to hold as constants are computed at run time instead.
        let too_large = outputs.iter().any(|v| match v {
            Value::Node(id) => {
                let n = crate::ir::infer::numel(&scratch.ty(*id).shape);
                !n.syms.is_empty() || n.coeff > build::MAX_CONSTANT
            }
            _ => false,
        });
        if too_large {
            return (entry.run)(self, cx);
        }
        for (i, v) in outputs.iter().enumerate() {
            if let Value::Node(id) = v {
                scratch.add_output(format!("o{i}"), *id);
            }
        }
        let empty = TensorMap::new();
        let values = interp::eval(&scratch, &DimValues::new(), &empty, &empty)
            .map_err(|source| OnnxError::Fold { node: cx.node_ref(), source: Box::new(source) })?;
        let mut values = values.into_iter().map(|(_, t)| t);
        outputs
            .into_iter()
            .map(|v| match v {
                Value::Node(_) => {
                    values.next().map(Value::constant).ok_or_else(|| cx.invalid("folding lost an output"))
                }
                other => Ok(other),
            })
            .collect()
    }

    /// The type of a value.
    pub fn type_of(&self, v: &Value) -> TensorType {
        match v {
            Value::Node(id) => self.graph.ty(*id).clone(),
            Value::Const(t) => static_type(t.dtype, t.shape()),
            Value::Dims { dims, scalar } => {
                TensorType::new(DType::I64, if *scalar { vec![] } else { vec![Dim::known(dims.len() as u64)] })
            }
        }
    }

    /// The value named `name` in the innermost scope that has it, with its materialisation
    /// key (the name, qualified by the scope).
    pub(crate) fn lookup(&self, name: &str) -> Option<(Value, String)> {
        self.scopes.iter().rev().find_map(|s| s.map.get(name).map(|v| (v.clone(), format!("{}:{name}", s.uid))))
    }

    pub(crate) fn bind(&mut self, name: &str, v: Value) {
        if let Some(s) = self.scopes.last_mut() {
            s.map.insert(name.to_string(), v);
        }
    }

    /// Runs `body` in a new innermost scope.
    pub(crate) fn scoped<T>(&mut self, body: impl FnOnce(&mut Importer) -> T) -> T {
        self.scopes.push(Scope { uid: self.scope_count, map: HashMap::new() });
        self.scope_count += 1;
        let r = body(self);
        self.scopes.pop();
        r
    }

    /// The graph node holding `v`, materialising a constant (once per `key`) under the ONNX
    /// name `name`.
    fn materialize(&mut self, name: &str, key: &str, v: &Value) -> Result<NodeId, OnnxError> {
        match v {
            Value::Node(id) => Ok(*id),
            Value::Const(t) => {
                if let Some(id) = self.materialized.get(key) {
                    return Ok(*id);
                }
                let id = self.const_node(name, t)?;
                self.materialized.insert(key.to_string(), id);
                Ok(id)
            }
            Value::Dims { dims, scalar } => shape::dims_node(self, dims, *scalar),
        }
    }

    /// A graph node with the value of `t`: a (broadcast) scalar when every element is equal
    /// and writable as a literal, a `param` named after `hint` otherwise.
    pub fn const_node(&mut self, hint: &str, t: &Tensor) -> Result<NodeId, OnnxError> {
        let ty = static_type(t.dtype, t.shape());
        if self.folding {
            return self.graph_add(Op::Constant { data: const_data(t) }, ty, &[]);
        }
        if let Some(s) = splat(t) {
            let c = self.graph_add(Op::Constant { data: s }, TensorType::scalar(t.dtype), &[])?;
            return self.broadcast_node(c, ty);
        }
        let name = self.fresh_name(hint);
        self.params.insert(name.clone(), t.clone());
        Ok(self.graph.add_param(name, ty))
    }

    fn broadcast_node(&mut self, x: NodeId, ty: TensorType) -> Result<NodeId, OnnxError> {
        if *self.graph.ty(x) == ty {
            return Ok(x);
        }
        self.graph_add(Op::Broadcast, ty, &[x])
    }

    /// Adds a node whose type was computed by the caller (checked again here).
    fn graph_add(&mut self, op: Op, ty: TensorType, operands: &[NodeId]) -> Result<NodeId, OnnxError> {
        let types: Vec<&TensorType> = operands.iter().map(|&o| self.graph.ty(o)).collect();
        let ty = result_type(&op, &types, Some(&ty)).map_err(|error| match error {
            TypeError::ZeroDim { .. } => OnnxError::UnsupportedModel {
                place: "a constant".into(),
                what: "a tensor with a dim of 0 (Flint's dims are at least 1)".into(),
            },
            _ => OnnxError::InvalidModel {
                place: "constant".into(),
                message: error.display(&self.graph.symbols).to_string(),
            },
        })?;
        Ok(self.graph.add(op, ty, operands))
    }

    /// Adds `op` applied to `operands`; `given` is the result type for ops that need one.
    pub fn add(
        &mut self,
        cx: &NodeCx,
        op: Op,
        operands: &[NodeId],
        given: Option<TensorType>,
    ) -> Result<NodeId, OnnxError> {
        let types: Vec<&TensorType> = operands.iter().map(|&o| self.graph.ty(o)).collect();
        match result_type(&op, &types, given.as_ref()) {
            Ok(ty) => Ok(self.graph.add(op, ty, operands)),
            Err(TypeError::ZeroDim { .. }) => {
                Err(cx.unsupported("a tensor with a dim of 0 (Flint's dims are at least 1)"))
            }
            Err(error) => {
                let symbols = self.graph.symbols.clone();
                Err(OnnxError::Type { node: cx.node_ref(), op: op.name(), error: Box::new(error), symbols })
            }
        }
    }

    pub fn ty(&self, id: NodeId) -> TensorType {
        self.graph.ty(id).clone()
    }

    pub fn rank(&self, id: NodeId) -> usize {
        self.graph.ty(id).rank()
    }

    pub fn dtype(&self, id: NodeId) -> DType {
        self.graph.ty(id).dtype
    }

    /// A scalar constant of `dtype` with the value `v` (`v != 0` for bool).
    pub fn scalar(&mut self, dtype: DType, v: f64) -> NodeId {
        let data = match dtype {
            d if d.is_float() => ConstData::Float(vec![v]),
            d if d.is_int() => ConstData::Int(vec![v as i64]),
            _ => ConstData::Bool(vec![v != 0.0]),
        };
        self.graph.add(Op::Constant { data }, TensorType::scalar(dtype), &[])
    }

    /// A constant tensor built by the importer itself (gather indices, masks), named after
    /// the node's first output.
    pub fn tensor(&mut self, cx: &NodeCx, what: &str, t: &Tensor) -> Result<NodeId, OnnxError> {
        let hint = format!("{}_{what}", cx.node.output.first().map_or("const", String::as_str));
        self.const_node(&hint, t)
    }
}

/// The type of a tensor of concrete `shape`.
pub(crate) fn static_type(dtype: DType, shape: &[usize]) -> TensorType {
    TensorType::new(dtype, shape.iter().map(|&d| Dim::known(d as u64)).collect())
}

fn const_data(t: &Tensor) -> ConstData {
    match &t.data {
        TensorData::Float(a) => ConstData::Float(a.iter().copied().collect()),
        TensorData::Int(a) => ConstData::Int(a.iter().copied().collect()),
        TensorData::Bool(a) => ConstData::Bool(a.iter().copied().collect()),
    }
}

/// The single value of a tensor whose elements are all equal (or which has none), when the
/// source language can write it as a literal: not NaN, not `i64::MIN`.
fn splat(t: &Tensor) -> Option<ConstData> {
    match &t.data {
        TensorData::Float(a) => {
            let x = a.iter().next().copied().unwrap_or(0.0);
            (!x.is_nan() && a.iter().all(|&y| y.to_bits() == x.to_bits())).then(|| ConstData::Float(vec![x]))
        }
        TensorData::Int(a) => {
            let x = a.iter().next().copied().unwrap_or(0);
            (x != i64::MIN && a.iter().all(|&y| y == x)).then(|| ConstData::Int(vec![x]))
        }
        TensorData::Bool(a) => {
            let x = a.iter().next().copied().unwrap_or(false);
            a.iter().all(|&y| y == x).then(|| ConstData::Bool(vec![x]))
        }
    }
}

/// The name a computed value keeps: exporters' `/block/fc/MatMul_output_0` becomes
/// `block_fc_MatMul`.
fn value_name(raw: &str) -> String {
    let trimmed = raw.trim_start_matches('/');
    identifier(trimmed.strip_suffix("_output_0").filter(|s| !s.is_empty()).unwrap_or(trimmed))
}

/// A Flint identifier made from an ONNX name: other characters become `_`; a leading digit,
/// a keyword or a dtype name gets a prefix or suffix.
pub fn identifier(raw: &str) -> String {
    let mut s: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'v');
    }
    const RESERVED: &[&str] =
        &["graph", "fn", "param", "as", "true", "false", "f32", "f16", "bf16", "i32", "i64", "bool"];
    if RESERVED.contains(&s.as_str()) {
        s.push('_');
    }
    s
}
