//! Reading and writing NumPy `.npy` files (format versions 1, 2 and 3), C order only.
//!
//! Element types: `<f2` (f16), `<f4` (f32), `<f8` (read as f32, rounded to nearest),
//! `<i4` (i32), `<i8` (i64) and `|b1` (bool). NumPy has no bf16, so bf16 tensors are written
//! as `<f4` (exactly: every bf16 value is an f32 value) and read back as f32; cast them back
//! with [`Tensor::cast`]. Big-endian data, Fortran order and structured dtypes are refused.

use std::path::{Path, PathBuf};

use half::f16;

use crate::interp::{round_float, Tensor, TensorData};
use crate::ir::DType;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An element type as spelled in an `.npy` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descr {
    F2,
    F4,
    F8,
    I4,
    I8,
    B1,
}

impl Descr {
    pub const ALL: [Descr; 6] = [Descr::F2, Descr::F4, Descr::F8, Descr::I4, Descr::I8, Descr::B1];

    pub fn as_str(self) -> &'static str {
        match self {
            Descr::F2 => "<f2",
            Descr::F4 => "<f4",
            Descr::F8 => "<f8",
            Descr::I4 => "<i4",
            Descr::I8 => "<i8",
            Descr::B1 => "|b1",
        }
    }

    pub fn parse(s: &str) -> Option<Descr> {
        Descr::ALL.into_iter().find(|d| d.as_str() == s)
    }

    pub fn size(self) -> usize {
        match self {
            Descr::B1 => 1,
            Descr::F2 => 2,
            Descr::F4 | Descr::I4 => 4,
            Descr::F8 | Descr::I8 => 8,
        }
    }

    /// The dtype a file of this descr is read as.
    pub fn dtype(self) -> DType {
        match self {
            Descr::F2 => DType::F16,
            Descr::F4 | Descr::F8 => DType::F32,
            Descr::I4 => DType::I32,
            Descr::I8 => DType::I64,
            Descr::B1 => DType::Bool,
        }
    }

    /// The descr a tensor of `dtype` is written as (bf16 as `<f4`).
    pub fn for_dtype(dtype: DType) -> Descr {
        match dtype {
            DType::F32 | DType::BF16 => Descr::F4,
            DType::F16 => Descr::F2,
            DType::I32 => Descr::I4,
            DType::I64 => Descr::I8,
            DType::Bool => Descr::B1,
        }
    }
}

/// Why an `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not an .npy file: the magic string `\\x93NUMPY` is missing")]
    BadMagic,
    #[error("unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are read)")]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error("the file is truncated: the {what} needs {expected} bytes, {found} remain")]
    Truncated { what: &'static str, expected: usize, found: usize },
    #[error("malformed .npy header ({reason}): {header}")]
    BadHeader { reason: &'static str, header: String },
    #[error("unsupported .npy dtype `{descr}` (supported: <f2 <f4 <f8 <i4 <i8 |b1)")]
    UnsupportedDtype { descr: String },
    #[error("Fortran-order .npy arrays are not supported; save a C-order array")]
    FortranOrder,
    #[error("the data section has {found} bytes, but shape {shape:?} of {descr} needs {expected}")]
    DataLength { shape: Vec<usize>, descr: &'static str, expected: usize, found: usize },
    #[error("a {dtype} tensor cannot be written as `{descr}`")]
    KindMismatch { dtype: DType, descr: &'static str },
}

/// Reads an `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io { path: path.into(), source })?;
    decode_npy(&bytes)
}

/// Writes `t` to an `.npy` file with the descr of its dtype.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    std::fs::write(path, encode_npy(t)).map_err(|source| NpyError::Io { path: path.into(), source })
}

/// Parses the bytes of an `.npy` file.
pub fn decode_npy(bytes: &[u8]) -> Result<Tensor, NpyError> {
    let (header, data) = split_header(bytes)?;
    let (descr, shape) = parse_header(&header)?;
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let expected = n
        .and_then(|n| n.checked_mul(descr.size()))
        .ok_or_else(|| NpyError::BadHeader { reason: "the shape is too large", header: header.clone() })?;
    if data.len() != expected {
        let found = data.len();
        return Err(NpyError::DataLength { shape, descr: descr.as_str(), expected, found });
    }
    let tensor = match descr {
        Descr::F2 => Tensor::from_f64(DType::F16, &shape, decode_le(data, |b: [u8; 2]| f16::from_le_bytes(b).to_f64())),
        Descr::F4 => Tensor::from_f64(DType::F32, &shape, decode_le(data, |b: [u8; 4]| f32::from_le_bytes(b) as f64)),
        Descr::F8 => Tensor::from_f64(DType::F32, &shape, decode_le(data, f64::from_le_bytes)),
        Descr::I4 => Tensor::from_i64(DType::I32, &shape, decode_le(data, |b: [u8; 4]| i32::from_le_bytes(b) as i64)),
        Descr::I8 => Tensor::from_i64(DType::I64, &shape, decode_le(data, i64::from_le_bytes)),
        Descr::B1 => Tensor::from_bool(&shape, data.iter().map(|&b| b != 0).collect()),
    };
    tensor.map_err(|_| NpyError::BadHeader { reason: "the shape does not match the data", header })
}

/// Decodes consecutive little-endian words of `N` bytes.
fn decode_le<const N: usize, T>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut w = [0u8; N];
            w.copy_from_slice(c);
            f(w)
        })
        .collect()
}

/// The header text and the data bytes.
fn split_header(bytes: &[u8]) -> Result<(String, &[u8]), NpyError> {
    let truncated = |what, expected: usize, found: usize| NpyError::Truncated { what, expected, found };
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_size, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => return Err(NpyError::UnsupportedVersion { major, minor }),
    };
    let rest = &bytes[8..];
    if rest.len() < len_size {
        return Err(truncated("header length", len_size, rest.len()));
    }
    let len = rest[..len_size].iter().rev().fold(0usize, |acc, &b| acc << 8 | b as usize);
    let rest = &rest[len_size..];
    if rest.len() < len {
        return Err(truncated("header", len, rest.len()));
    }
    let header = if utf8 {
        String::from_utf8_lossy(&rest[..len]).into_owned()
    } else {
        rest[..len].iter().map(|&b| b as char).collect()
    };
    Ok((header, &rest[len..]))
}

/// Reads `{'descr': ..., 'fortran_order': ..., 'shape': (...), }`.
fn parse_header(header: &str) -> Result<(Descr, Vec<usize>), NpyError> {
    let bad = |reason| NpyError::BadHeader { reason, header: header.trim_end().to_string() };
    let mut p = Parser { s: header.as_bytes(), pos: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{').ok_or_else(|| bad("expected `{`"))?;
    while !p.eat(b'}') {
        let key = p.string().ok_or_else(|| bad("expected a quoted key"))?;
        p.expect(b':').ok_or_else(|| bad("expected `:`"))?;
        match key.as_str() {
            "descr" => descr = Some(p.string().ok_or_else(|| bad("`descr` must be a string"))?),
            "fortran_order" => fortran = Some(p.boolean().ok_or_else(|| bad("`fortran_order` must be True or False"))?),
            "shape" => shape = Some(p.tuple().ok_or_else(|| bad("`shape` must be a tuple of integers"))?),
            _ => return Err(bad("unknown key")),
        }
        if !p.eat(b',') {
            p.expect(b'}').ok_or_else(|| bad("expected `,` or `}`"))?;
            break;
        }
    }
    let descr = descr.ok_or_else(|| bad("`descr` is missing"))?;
    if fortran.ok_or_else(|| bad("`fortran_order` is missing"))? {
        return Err(NpyError::FortranOrder);
    }
    let shape = shape.ok_or_else(|| bad("`shape` is missing"))?;
    let descr = Descr::parse(&descr).ok_or(NpyError::UnsupportedDtype { descr })?;
    Ok((descr, shape))
}

/// A cursor over the Python literal of an `.npy` header.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        let hit = self.s.get(self.pos) == Some(&c);
        self.pos += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn string(&mut self) -> Option<String> {
        self.skip_ws();
        let quote = *self.s.get(self.pos).filter(|q| **q == b'\'' || **q == b'"')?;
        let start = self.pos + 1;
        let len = self.s[start..].iter().position(|&c| c == quote)?;
        self.pos = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec()).ok()
    }

    fn word(&mut self) -> &[u8] {
        self.skip_ws();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn boolean(&mut self) -> Option<bool> {
        match self.word() {
            b"True" => Some(true),
            b"False" => Some(false),
            _ => None,
        }
    }

    fn tuple(&mut self) -> Option<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while !self.eat(b')') {
            // Python 2 wrote long integers with an `L` suffix.
            let word = std::str::from_utf8(self.word()).ok()?;
            dims.push(word.strip_suffix('L').unwrap_or(word).parse().ok()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Some(dims)
    }
}

/// The bytes of an `.npy` file holding `t`, with the descr of its dtype.
pub fn encode_npy(t: &Tensor) -> Vec<u8> {
    let descr = Descr::for_dtype(t.dtype);
    let mut out = header_bytes(descr, t.shape());
    out.extend(data_bytes(t, descr));
    out
}

/// The bytes of an `.npy` file holding `t` as `descr` (a float tensor as `<f8`, say).
/// Floats round to the descr's width, integers wrap.
pub fn encode_npy_as(t: &Tensor, descr: Descr) -> Result<Vec<u8>, NpyError> {
    let fits = match &t.data {
        TensorData::Float(_) => matches!(descr, Descr::F2 | Descr::F4 | Descr::F8),
        TensorData::Int(_) => matches!(descr, Descr::I4 | Descr::I8),
        TensorData::Bool(_) => descr == Descr::B1,
    };
    if !fits {
        return Err(NpyError::KindMismatch { dtype: t.dtype, descr: descr.as_str() });
    }
    let mut out = header_bytes(descr, t.shape());
    out.extend(data_bytes(t, descr));
    Ok(out)
}

fn header_bytes(descr: Descr, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", descr.as_str());
    // NumPy aligns the data to 64 bytes: magic, version, length, header and its newline.
    let (version, len_size) = if dict.len() + 64 <= u16::MAX as usize { (1u8, 2) } else { (2u8, 4) };
    let unpadded = 8 + len_size + dict.len() + 1;
    dict.extend(std::iter::repeat_n(' ', unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([version, 0]);
    out.extend(&(dict.len() as u32).to_le_bytes()[..len_size]);
    out.extend(dict.bytes());
    out
}

fn data_bytes(t: &Tensor, descr: Descr) -> Vec<u8> {
    match (&t.data, descr) {
        (TensorData::Float(a), Descr::F2) => {
            a.iter().flat_map(|&x| f16::from_f64(round_float(DType::F16, x)).to_le_bytes()).collect()
        }
        (TensorData::Float(a), Descr::F4) => a.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        (TensorData::Float(a), _) => a.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        (TensorData::Int(a), Descr::I4) => a.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
        (TensorData::Int(a), _) => a.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        (TensorData::Bool(a), _) => a.iter().map(|&x| u8::from(x)).collect(),
    }
}
