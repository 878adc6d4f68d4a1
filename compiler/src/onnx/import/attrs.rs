//! One ONNX node as a handler sees it: its inputs (as [`Value`]s), its attributes, and the
//! errors that name it.

use super::{Importer, Value};
use crate::interp::Tensor;
use crate::ir::{DType, Dim, NodeId, Op};
use crate::onnx::error::NodeRef;
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::{AttributeProto, NodeProto};
use crate::onnx::{tensor, OnnxError};

pub(crate) fn node_ref(index: usize, node: &NodeProto) -> NodeRef {
    NodeRef { index, name: node.name.clone().unwrap_or_default(), op_type: node.op_type.clone().unwrap_or_default() }
}

/// An attribute's value as text, for error messages.
pub(crate) fn render(a: &AttributeProto) -> String {
    let s = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    match AttributeType::try_from(a.r#type.unwrap_or(0)) {
        Ok(AttributeType::Float) => format!("{}", a.f.unwrap_or(0.0)),
        Ok(AttributeType::Int) => format!("{}", a.i.unwrap_or(0)),
        Ok(AttributeType::String) => s(a.s.as_deref().unwrap_or(b"")),
        Ok(AttributeType::Floats) => format!("{:?}", a.floats),
        Ok(AttributeType::Ints) => format!("{:?}", a.ints),
        Ok(AttributeType::Strings) => format!("[{}]", a.strings.iter().map(|x| s(x)).collect::<Vec<_>>().join(", ")),
        Ok(t) => format!("<{}>", t.as_str_name().to_lowercase()),
        Err(_) => "<unknown attribute type>".into(),
    }
}

/// A node being imported.
pub(crate) struct NodeCx<'n> {
    pub index: usize,
    pub node: &'n NodeProto,
    /// One entry per declared input; `None` where the input name is empty (omitted).
    pub inputs: Vec<Option<Value>>,
    /// Each input's materialisation key (its name qualified by its scope).
    keys: Vec<String>,
}

/// Geometry attributes above this are refused: no model needs a window, pad or stride of
/// 16M elements, and the importer's arithmetic on them must not overflow.
pub const MAX_GEOMETRY: i64 = 1 << 24;

impl<'n> NodeCx<'n> {
    pub fn new(index: usize, node: &'n NodeProto, inputs: Vec<Option<Value>>, keys: Vec<String>) -> NodeCx<'n> {
        NodeCx { index, node, inputs, keys }
    }

    pub fn op(&self) -> &str {
        self.node.op_type.as_deref().unwrap_or("")
    }

    pub fn node_ref(&self) -> NodeRef {
        node_ref(self.index, self.node)
    }

    pub fn invalid(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Invalid { node: self.node_ref(), message: message.into() }
    }

    pub fn unsupported(&self, what: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported { node: self.node_ref(), what: what.into() }
    }

    pub fn bad_attr(&self, attr: &str, value: &str) -> OnnxError {
        OnnxError::UnsupportedAttribute { node: self.node_ref(), attr: attr.into(), value: value.into() }
    }

    /// True when the node has inputs and every one given is a constant.
    pub fn all_const(&self) -> bool {
        self.inputs.iter().any(Option::is_some) && self.inputs.iter().flatten().all(|v| matches!(v, Value::Const(_)))
    }

    /// Input `i`, which must be given.
    pub fn value(&self, i: usize) -> Result<&Value, OnnxError> {
        self.opt(i).ok_or_else(|| self.invalid(format!("input {i} is required")))
    }

    /// Input `i`, or `None` when it is omitted.
    pub fn opt(&self, i: usize) -> Option<&Value> {
        self.inputs.get(i).and_then(Option::as_ref)
    }

    pub fn has(&self, i: usize) -> bool {
        self.opt(i).is_some()
    }

    /// The number of input slots, omitted ones included.
    pub fn arity(&self) -> usize {
        self.inputs.len()
    }

    /// True when output `i` is requested (present with a non-empty name).
    pub fn wants(&self, i: usize) -> bool {
        self.node.output.get(i).is_some_and(|n| !n.is_empty())
    }

    fn input_name(&self, i: usize) -> &str {
        self.node.input.get(i).map_or("", String::as_str)
    }

    pub fn attr(&self, name: &str) -> Option<&'n AttributeProto> {
        self.node.attribute.iter().find(|a| a.name.as_deref() == Some(name))
    }

    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&'n AttributeProto>, OnnxError> {
        let Some(a) = self.attr(name) else { return Ok(None) };
        if a.ref_attr_name.is_some() {
            return Err(self.unsupported(format!("attribute `{name}` referring to a function attribute")));
        }
        match a.r#type {
            Some(t) if t == want as i32 => Ok(Some(a)),
            // Old models may leave the type out; trust the field that is set.
            None => Ok(Some(a)),
            Some(_) => Err(self.invalid(format!("attribute `{name}` must be of type {}", want.as_str_name()))),
        }
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self.typed(name, AttributeType::Int)?.and_then(|a| a.i).unwrap_or(default))
    }

    /// Refuses a node that lacks the attribute `name`.
    pub fn require(&self, name: &str) -> Result<(), OnnxError> {
        match self.attr(name) {
            Some(_) => Ok(()),
            None => Err(self.invalid(format!("`{name}` is required"))),
        }
    }

    /// A geometry attribute (a size, pad, stride, dilation or group count) in
    /// `[min, MAX_GEOMETRY]`.
    pub fn geometry_int(&self, name: &str, default: i64, min: i64) -> Result<i64, OnnxError> {
        let v = self.int(name, default)?;
        match (min..=MAX_GEOMETRY).contains(&v) {
            true => Ok(v),
            false => Err(self.invalid(format!("attribute `{name}` = {v} is outside [{min}, {MAX_GEOMETRY}]"))),
        }
    }

    /// A list of `len` geometry values (`default` repeated when the attribute is absent),
    /// each in `[min, MAX_GEOMETRY]`.
    pub fn geometry(&self, name: &str, default: i64, len: usize, min: i64) -> Result<Vec<i64>, OnnxError> {
        let v = self.ints(name)?.unwrap_or_else(|| vec![default; len]);
        if v.len() != len {
            return Err(self.invalid(format!("attribute `{name}` = {v:?} must have {len} entries")));
        }
        match v.iter().all(|e| (min..=MAX_GEOMETRY).contains(e)) {
            true => Ok(v),
            false => {
                Err(self.invalid(format!("attribute `{name}` = {v:?} has entries outside [{min}, {MAX_GEOMETRY}]")))
            }
        }
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, OnnxError> {
        Ok(self.typed(name, AttributeType::Int)?.and_then(|a| a.i))
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        Ok(self.typed(name, AttributeType::Float)?.and_then(|a| a.f).unwrap_or(default))
    }

    pub fn opt_float(&self, name: &str) -> Result<Option<f32>, OnnxError> {
        Ok(self.typed(name, AttributeType::Float)?.and_then(|a| a.f))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        Ok(self.typed(name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, OnnxError> {
        Ok(self.typed(name, AttributeType::Floats)?.map(|a| a.floats.clone()))
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String, OnnxError> {
        let a = self.typed(name, AttributeType::String)?;
        Ok(a.and_then(|a| a.s.as_deref()).map_or_else(|| default.to_string(), |b| String::from_utf8_lossy(b).into()))
    }

    pub fn tensor_attr(&self, name: &str) -> Result<Option<Tensor>, OnnxError> {
        self.typed(name, AttributeType::Tensor)?.and_then(|a| a.t.as_ref()).map(tensor::decode).transpose()
    }

    /// Refuses an attribute value the importer does not handle.
    pub fn refuse_int(&self, name: &str, value: i64) -> OnnxError {
        self.bad_attr(name, &value.to_string())
    }
}

impl Importer {
    /// The graph node of input `i` (materialising a constant).
    pub fn input(&mut self, cx: &NodeCx, i: usize) -> Result<NodeId, OnnxError> {
        let v = cx.value(i)?.clone();
        let key = cx.keys.get(i).cloned().unwrap_or_default();
        self.materialize(cx.input_name(i), &key, &v)
    }

    /// The graph node of input `i`, or `None` when it is omitted.
    pub fn opt_input(&mut self, cx: &NodeCx, i: usize) -> Result<Option<NodeId>, OnnxError> {
        if cx.has(i) {
            self.input(cx, i).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Input `i` as a constant tensor, known at import time.
    pub fn const_input(&self, cx: &NodeCx, i: usize) -> Result<std::rc::Rc<Tensor>, OnnxError> {
        match cx.value(i)? {
            Value::Const(t) => Ok(t.clone()),
            v => {
                let graph_input = matches!(v, Value::Node(id) if matches!(self.graph.op(*id), Op::Input { .. }));
                let value = cx.input_name(i).to_string();
                Err(OnnxError::NeedsConstant { node: cx.node_ref(), input: i, value, graph_input })
            }
        }
    }

    /// Input `i` as integers known at import time.
    pub fn const_ints(&self, cx: &NodeCx, i: usize) -> Result<Vec<i64>, OnnxError> {
        let t = self.const_input(cx, i)?;
        match t.as_i64() {
            Some(a) => Ok(a.iter().copied().collect()),
            None => Err(cx.invalid(format!("input {i} must hold integers, found {}", t.dtype))),
        }
    }

    /// Input `i` as one number known at import time (as f64).
    pub fn const_scalar(&self, cx: &NodeCx, i: usize) -> Result<f64, OnnxError> {
        let t = self.const_input(cx, i)?;
        match t.to_f64_vec().as_slice() {
            [x] => Ok(*x),
            _ => Err(cx.invalid(format!("input {i} must hold one value, found shape {:?}", t.shape()))),
        }
    }

    /// Input `i` as a shape known at import time: constant integers, or a dims vector.
    pub fn const_dims(&self, cx: &NodeCx, i: usize) -> Result<Vec<DimOrInt>, OnnxError> {
        match cx.value(i)? {
            Value::Dims { dims, .. } => Ok(dims.clone()),
            _ => Ok(self.const_ints(cx, i)?.into_iter().map(DimOrInt::Int).collect()),
        }
    }

    pub fn dtype_of(&self, cx: &NodeCx, i: usize) -> Result<DType, OnnxError> {
        Ok(self.type_of(cx.value(i)?).dtype)
    }
}

/// An entry of a shape given as data: a plain integer (which may be `0` or `-1` with their
/// ONNX meanings) or a symbolic dim.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum DimOrInt {
    Int(i64),
    Dim(Dim),
}

impl DimOrInt {
    /// A static dim becomes an integer (one beyond `i64::MAX` stays a dim).
    pub fn normalize(self) -> DimOrInt {
        match self.as_int() {
            Some(v) => DimOrInt::Int(v),
            None => self,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            DimOrInt::Int(v) => Some(*v),
            DimOrInt::Dim(d) => d.as_known().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The entry as a dim, when it is one (a non-negative integer or a symbolic dim).
    pub fn as_dim(&self) -> Option<Dim> {
        match self {
            DimOrInt::Int(v) => u64::try_from(*v).ok().map(Dim::known),
            DimOrInt::Dim(d) => Some(d.clone()),
        }
    }
}
