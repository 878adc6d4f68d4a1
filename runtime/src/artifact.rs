//! The `.tgx` artifact: one file holding a compiled graph. `ir-spec/artifact.md` is the
//! specification; the compiler writes these types and the runtime reads them.
//!
//! ```text
//! 0   magic "FLINTTGX"
//! 8   format version      u32 LE
//! 12  CRC-32 of manifest  u32 LE
//! 16  manifest length     u64 LE
//! 24  manifest            postcard encoding of [`Manifest`]
//! ..  zeros to the next multiple of 64: the data start
//! ..  sections, each at data start + its offset (a multiple of 64), zeros between them
//! ```
//!
//! Every byte is covered: the header by its own fields, the manifest and each section by a
//! CRC-32, and the padding by having to be zero; nothing may follow the last section. The
//! checksums catch corruption, not malice: an artifact carries native code, so loading one
//! means trusting whoever compiled it.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The first eight bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"FLINTTGX";
/// The format this runtime writes and reads. Any change to the layout or the manifest's
/// types bumps it.
pub const FORMAT_VERSION: u32 = 2;
/// Sections start at multiples of this, so weights used in place are aligned for any load.
pub const SECTION_ALIGN: usize = 64;
const HEADER: usize = 24;

/// An element type, as in `ir-spec/types.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    F32,
    F16,
    BF16,
    I32,
    I64,
    Bool,
}

impl DType {
    /// Every dtype, in the order of the C API's `FlintDType` codes.
    pub const ALL: [DType; 6] = [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::Bool];

    /// The dtype the spec names `name` (`f32`, `bf16`, ...).
    pub fn parse(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            DType::Bool => 1,
        }
    }

    /// The spec's name (`f32`, `bf16`, ...).
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
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension: `coeff * dims[syms[0]] * dims[syms[1]] * ...`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dim {
    pub coeff: u64,
    pub syms: Vec<u32>,
}

impl Dim {
    /// The dim's value at `dims` (one value per symbol), saturating: the manifest is checked
    /// to stay below 2^63 at the bounds, and `dims` never exceed them.
    pub fn eval(&self, dims: &[u64]) -> u64 {
        self.syms.iter().fold(self.coeff, |acc, &s| acc.saturating_mul(dims.get(s as usize).copied().unwrap_or(0)))
    }

    /// The symbol this dim is, when it is one symbol times a constant.
    pub fn single(&self) -> Option<u32> {
        match self.syms.as_slice() {
            [s] => Some(*s),
            _ => None,
        }
    }

    /// `4*N*T`, with symbols named from `symbols`.
    pub fn display<'a>(&'a self, symbols: &'a [Symbol]) -> impl fmt::Display + 'a {
        DimDisplay(self, symbols)
    }
}

struct DimDisplay<'a>(&'a Dim, &'a [Symbol]);

impl fmt::Display for DimDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.0.coeff != 1 || self.0.syms.is_empty() {
            parts.push(self.0.coeff.to_string());
        }
        parts.extend(self.0.syms.iter().map(|&s| self.1.get(s as usize).map_or("?".into(), |s| s.name.clone())));
        f.write_str(&parts.join("*"))
    }
}

/// A symbolic dim and its upper bound; values run from 1 to the bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbol {
    pub name: String,
    pub bound: u64,
}

/// What binds a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionKind {
    /// A graph input, given by the caller at each run.
    Input,
    /// A weight, bound once from a weights file or the artifact.
    Param,
    /// A graph output, written for the caller.
    Output,
}

impl RegionKind {
    /// `input`, `param` or `output`.
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Input => "input",
            RegionKind::Param => "param",
            RegionKind::Output => "output",
        }
    }
}

/// The bytes of a tensor of `dtype` and `shape`, unless the count overflows.
pub fn byte_len(dtype: DType, shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(dtype.size_bytes(), |acc, &n| acc.checked_mul(n))
}

/// Memory bound from outside the arena: one per input, param and output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub kind: RegionKind,
    pub name: String,
    /// Index into [`Manifest::values`]: the region's dtype and shape.
    pub value: u32,
}

/// Where a value lives while the graph runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Storage {
    /// Inside a region, by index into [`Manifest::regions`].
    Region(u32),
    /// At this offset of the session's arena.
    Arena(u64),
}

/// A value crossing a kernel boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    /// The compiler's number for it (`%12` in dumps).
    pub id: u32,
    pub dtype: DType,
    pub shape: Vec<Dim>,
    pub storage: Storage,
}

impl Value {
    pub fn bytes(&self, dims: &[u64]) -> u64 {
        self.shape.iter().fold(self.dtype.size_bytes() as u64, |acc, d| acc.saturating_mul(d.eval(dims)))
    }
}

/// One kernel launch, in schedule order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// The compiler's kernel id (`k3`).
    pub name: String,
    /// `elementwise`, `row`, `contraction` or `opaque`.
    pub kind: String,
    /// The function in the CPU object computing it.
    pub symbol: String,
    /// The length of the range `[0, extent)` the kernel's function is run over.
    pub extent: Dim,
    /// Bytes the kernel touches per index of its range, at the bounds: how the runtime
    /// decides whether splitting the range across threads pays.
    pub work: u64,
    /// Indices into [`Manifest::values`], inputs then outputs: the function's pointers.
    pub args: Vec<u32>,
    /// Its function in each PTX section: a GPU module is compiled per SM, and its identical
    /// kernels share functions as the CPU's do, but not necessarily the same ones.
    pub gpu: Vec<GpuFunction>,
}

/// A kernel's function in the PTX for one compute capability, and the bytes of dynamic shared
/// memory a block of it is launched with (a GEMM's tiles are sized to each SM; 0 without).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuFunction {
    pub sm: u32,
    pub symbol: String,
    pub shared_bytes: u64,
}

/// What the artifact runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Native code for a CPU of this architecture (`x86_64`, `aarch64`), compiled for the
    /// named CPU; the listed features must be present where it runs.
    Cpu { arch: String, cpu: String, features: Vec<String> },
}

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectionKind {
    /// The kernels as an ELF shared object.
    CpuObject,
    /// The host glue as CLIF text.
    Glue,
    /// The params as a safetensors file, when compiled with `--embed-weights`.
    Weights,
    /// The GPU kernels as PTX text for one compute capability (`major * 10 + minor`: 90 for
    /// sm_90, 121 for sm_121), one section per capability.
    Ptx(u32),
}

impl SectionKind {
    pub fn name(self) -> String {
        match self {
            SectionKind::CpuObject => "the CPU object".into(),
            SectionKind::Glue => "the host glue".into(),
            SectionKind::Weights => "the weights".into(),
            SectionKind::Ptx(sm) => format!("the PTX for sm_{sm}"),
        }
    }
}

/// Where a section's bytes are, relative to the data start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub kind: SectionKind,
    pub offset: u64,
    pub len: u64,
    pub crc32: u32,
}

/// Everything about a compiled graph except its sections' bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// The `flint` that wrote it.
    pub compiler_version: String,
    pub target: Target,
    pub symbols: Vec<Symbol>,
    /// Inputs, params, then outputs in signature order.
    pub regions: Vec<Region>,
    pub values: Vec<Value>,
    pub kernels: Vec<Kernel>,
    /// The arena's size, planned at the bounds.
    pub arena_bytes: u64,
    pub sections: Vec<Section>,
}

impl Manifest {
    /// The regions of one kind, with their indices.
    pub fn regions_of(&self, kind: RegionKind) -> impl Iterator<Item = (usize, &Region)> {
        self.regions.iter().enumerate().filter(move |(_, r)| r.kind == kind)
    }

    /// The value a region holds.
    pub fn region_value(&self, region: &Region) -> &Value {
        &self.values[region.value as usize]
    }

    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }
}

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("not a Flint artifact (it does not start with the magic bytes \"FLINTTGX\")")]
    NotAnArtifact,
    #[error("artifact format version {found}; this runtime reads version {FORMAT_VERSION} (recompile the model with this release's `flint compile`)")]
    Version { found: u32 },
    #[error("the artifact is truncated: {what} ends at byte {end}, but the file has {size}")]
    Truncated { what: String, end: u64, size: u64 },
    #[error("the artifact is corrupt: {what} fails its checksum")]
    Checksum { what: String },
    #[error("the artifact is corrupt: {0}")]
    Malformed(String),
    #[error("the artifact is for {artifact}, but this machine is {host}")]
    WrongTarget { artifact: String, host: String },
    #[error("the artifact was compiled for CPU `{cpu}` and needs CPU features this machine lacks: {}; recompile it here (`--cpu native`) or for a baseline (`--cpu generic`)", missing.join(", "))]
    MissingCpuFeatures { cpu: String, missing: Vec<String> },
}

/// The bytes of an artifact: the manifest, then `sections` in order.
/// [`Manifest::sections`] is filled in here.
pub fn write(mut manifest: Manifest, sections: &[(SectionKind, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    manifest.sections.clear();
    for &(kind, bytes) in sections {
        data.resize(data.len().next_multiple_of(SECTION_ALIGN), 0);
        let crc32 = crc32fast::hash(bytes);
        manifest.sections.push(Section { kind, offset: data.len() as u64, len: bytes.len() as u64, crc32 });
        data.extend_from_slice(bytes);
    }
    let encoded = postcard::to_stdvec(&manifest).expect("a manifest always encodes");
    let mut out = Vec::with_capacity(HEADER + encoded.len() + SECTION_ALIGN + data.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&encoded).to_le_bytes());
    out.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
    out.extend_from_slice(&encoded);
    out.resize(out.len().next_multiple_of(SECTION_ALIGN), 0);
    out.extend_from_slice(&data);
    out
}

/// A checked artifact: its manifest and where each section's bytes are in the file.
#[derive(Debug)]
pub struct Parsed {
    pub manifest: Manifest,
    /// Byte ranges of the file, one per entry of [`Manifest::sections`].
    pub sections: Vec<Range<usize>>,
}

impl Parsed {
    pub fn section(&self, kind: SectionKind) -> Option<Range<usize>> {
        let at = self.manifest.sections.iter().position(|s| s.kind == kind)?;
        Some(self.sections[at].clone())
    }
}

/// Reads and checks an artifact's bytes: layout, checksums and the manifest's internal
/// consistency (every index in range, every arena value inside the arena), so that nothing
/// the runtime does later can index out of bounds. The target is checked by [`check_host`].
pub fn parse(bytes: &[u8]) -> Result<Parsed, ArtifactError> {
    let size = bytes.len() as u64;
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(ArtifactError::NotAnArtifact);
    }
    let truncated = |what: &str, end: u64| ArtifactError::Truncated { what: what.into(), end, size };
    if bytes.len() < HEADER {
        return Err(truncated("the header", HEADER as u64));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(ArtifactError::Version { found: version });
    }
    let crc = word(12);
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let manifest_end = (HEADER as u64).saturating_add(len);
    if manifest_end > size {
        return Err(truncated("the manifest", manifest_end));
    }
    let encoded = &bytes[HEADER..manifest_end as usize];
    if crc32fast::hash(encoded) != crc {
        return Err(ArtifactError::Checksum { what: "the manifest".into() });
    }
    let manifest: Manifest = postcard::from_bytes(encoded)
        .map_err(|e| ArtifactError::Malformed(format!("the manifest does not decode ({e})")))?;
    let data_start = (manifest_end as usize).next_multiple_of(SECTION_ALIGN);
    let mut cursor = manifest_end as usize;
    let mut ranges = Vec::with_capacity(manifest.sections.len());
    for s in &manifest.sections {
        let what = s.kind.name();
        let start = (data_start as u64).checked_add(s.offset).filter(|_| s.offset % SECTION_ALIGN as u64 == 0);
        let end = start.and_then(|start| start.checked_add(s.len));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(ArtifactError::Malformed(format!("{what} has an impossible offset")));
        };
        if end > size {
            return Err(truncated(&what, end));
        }
        let (start, end) = (start as usize, end as usize);
        if start < cursor {
            return Err(ArtifactError::Malformed(format!("{what} overlaps what precedes it")));
        }
        zeros(&bytes[cursor..start], "padding before a section")?;
        if crc32fast::hash(&bytes[start..end]) != s.crc32 {
            return Err(ArtifactError::Checksum { what });
        }
        ranges.push(start..end);
        cursor = end;
    }
    if ranges.is_empty() {
        zeros(&bytes[cursor..bytes.len().min(data_start)], "padding after the manifest")?;
        cursor = cursor.max(data_start.min(bytes.len()));
    }
    if cursor != bytes.len() {
        return Err(ArtifactError::Malformed(format!(
            "{} unexpected bytes after the last section",
            bytes.len() - cursor
        )));
    }
    check_consistent(&manifest)?;
    Ok(Parsed { manifest, sections: ranges })
}

fn zeros(bytes: &[u8], what: &str) -> Result<(), ArtifactError> {
    match bytes.iter().all(|&b| b == 0) {
        true => Ok(()),
        false => Err(ArtifactError::Malformed(format!("nonzero bytes in the {what}"))),
    }
}

/// Every index of the manifest in range, sizes that fit, each section kind at most once.
fn check_consistent(m: &Manifest) -> Result<(), ArtifactError> {
    let bad = |what: String| Err(ArtifactError::Malformed(what));
    let bounds: Vec<u64> = m.symbols.iter().map(|s| s.bound).collect();
    if let Some(s) = m.symbols.iter().find(|s| s.bound == 0 || s.bound > 1 << 40) {
        return bad(format!("symbol {} has bound {}", s.name, s.bound));
    }
    let dim_ok = |d: &Dim| {
        d.syms.iter().all(|&s| (s as usize) < m.symbols.len())
            && d.syms
                .iter()
                .try_fold(d.coeff, |acc, &s| acc.checked_mul(bounds[s as usize]))
                .is_some_and(|v| v < 1 << 62)
    };
    for (i, v) in m.values.iter().enumerate() {
        let bytes = v.shape.iter().try_fold(v.dtype.size_bytes() as u64, |acc, d| {
            if dim_ok(d) {
                acc.checked_mul(d.eval(&bounds))
            } else {
                None
            }
        });
        let Some(bytes) = bytes.filter(|&b| b < 1 << 62) else {
            return bad(format!("value {i} has an impossible shape"));
        };
        match v.storage {
            Storage::Region(r) if (r as usize) >= m.regions.len() => return bad(format!("value {i} names region {r}")),
            Storage::Arena(offset) if offset.checked_add(bytes).is_none_or(|end| end > m.arena_bytes) => {
                return bad(format!("value {i} lies outside the arena"))
            }
            _ => {}
        }
    }
    if let Some(r) = m.regions.iter().find(|r| r.value as usize >= m.values.len()) {
        return bad(format!("region {} names value {}", r.name, r.value));
    }
    for k in &m.kernels {
        if !dim_ok(&k.extent) || k.args.iter().any(|&a| a as usize >= m.values.len()) || k.symbol.is_empty() {
            return bad(format!("kernel {} has an argument or extent out of range", k.name));
        }
    }
    for (i, s) in m.sections.iter().enumerate() {
        if m.sections[..i].iter().any(|t| t.kind == s.kind) {
            return bad(format!("{} appears twice", s.kind.name()));
        }
    }
    Ok(())
}

/// Refuses an artifact this machine cannot run: another architecture, or CPU features it
/// lacks.
pub fn check_host(target: &Target) -> Result<(), ArtifactError> {
    let Target::Cpu { arch, cpu, features } = target;
    if arch != std::env::consts::ARCH {
        return Err(ArtifactError::WrongTarget {
            artifact: format!("{arch} CPUs"),
            host: format!("{} ({})", std::env::consts::ARCH, std::env::consts::OS),
        });
    }
    let missing: Vec<String> =
        features.iter().filter(|f| crate::cpu::host_has_feature(f) == Some(false)).cloned().collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(ArtifactError::MissingCpuFeatures { cpu: cpu.clone(), missing }),
    }
}
