//! Element types, dimensions and tensor types.

use std::fmt;

/// An element type. The set is closed; the spec (`ir-spec/types.md`) gives each one's numerics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    BF16,
    I32,
    I64,
    Bool,
}

impl DType {
    pub const ALL: [DType; 6] = [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::Bool];

    /// The spelling used in source and in the printed IR.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    /// Storage size of one element in bytes (bool is stored as one byte).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A handle to a symbolic dimension declared in a graph signature (`N<=64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymId(pub u32);

/// A symbolic dimension: its name and its declared inclusive upper bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub bound: u64,
}

/// One dimension: `coeff * s1 * s2 * ...`, a monomial over symbols.
///
/// A static dim has no symbols. Products arise from reshapes that merge a symbolic axis
/// with others (`[B, S, D] -> [B*S, D]`); sums never arise because the ops that would
/// create them (concat or slice along a symbolic axis) are rejected by shape inference.
/// `syms` is kept sorted, so structural equality is dimension equality.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dim {
    pub coeff: u64,
    pub syms: Vec<SymId>,
}

impl Dim {
    pub fn known(n: u64) -> Dim {
        Dim { coeff: n, syms: Vec::new() }
    }

    pub fn sym(s: SymId) -> Dim {
        Dim { coeff: 1, syms: vec![s] }
    }

    /// The value when the dim is static.
    pub fn as_known(&self) -> Option<u64> {
        self.syms.is_empty().then_some(self.coeff)
    }

    pub fn is_one(&self) -> bool {
        self.as_known() == Some(1)
    }

    pub fn mul(&self, other: &Dim) -> Dim {
        let mut syms: Vec<SymId> = self.syms.iter().chain(&other.syms).copied().collect();
        syms.sort();
        // Saturating: an absurd size stays absurd (and is rejected by type inference) instead
        // of wrapping to a plausible one.
        Dim { coeff: self.coeff.saturating_mul(other.coeff), syms }
    }

    /// `self / other` when the quotient is again a monomial (exact division).
    pub fn div(&self, other: &Dim) -> Option<Dim> {
        if other.coeff == 0 || !self.coeff.is_multiple_of(other.coeff) {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let at = syms.iter().position(|x| x == s)?;
            syms.remove(at);
        }
        Some(Dim { coeff: self.coeff / other.coeff, syms })
    }

    /// The value of this dim given a value for every symbol.
    pub fn eval(&self, sym_value: impl Fn(SymId) -> u64) -> u64 {
        self.syms.iter().fold(self.coeff, |acc, &s| acc.saturating_mul(sym_value(s)))
    }

    /// Writes the dim with symbol names from `symbols`: `64`, `N`, `B*S`, `12*N`.
    pub fn display<'a>(&'a self, symbols: &'a [Symbol]) -> impl fmt::Display + 'a {
        DimDisplay { dim: self, symbols }
    }
}

struct DimDisplay<'a> {
    dim: &'a Dim,
    symbols: &'a [Symbol],
}

impl fmt::Display for DimDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.dim.coeff != 1 || self.dim.syms.is_empty() {
            parts.push(self.dim.coeff.to_string());
        }
        for s in &self.dim.syms {
            parts.push(self.symbols.get(s.0 as usize).map_or_else(|| format!("?{}", s.0), |x| x.name.clone()));
        }
        f.write_str(&parts.join("*"))
    }
}

/// A shape: one [`Dim`] per axis, outermost first. Rank 0 is a scalar.
pub type Shape = Vec<Dim>;

/// The type of every value in the IR: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }

    pub fn scalar(dtype: DType) -> TensorType {
        TensorType { dtype, shape: Vec::new() }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Writes `f32[N, 784]` with symbol names from `symbols`.
    pub fn display<'a>(&'a self, symbols: &'a [Symbol]) -> impl fmt::Display + 'a {
        TypeDisplay { ty: self, symbols }
    }
}

struct TypeDisplay<'a> {
    ty: &'a TensorType,
    symbols: &'a [Symbol],
}

impl fmt::Display for TypeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.ty.dtype)?;
        for (i, d) in self.ty.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", d.display(self.symbols))?;
        }
        f.write_str("]")
    }
}
