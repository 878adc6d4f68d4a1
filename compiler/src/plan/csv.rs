//! Reads buffer lists in MiniMalloc's CSV format: a header `id,lower,upper,size`, then one
//! buffer per line with a half-open lifetime `[lower, upper)`. Ids may be any text without a
//! comma. The capacity of a benchmark is the number in its file name (`A.1048576.csv`).

use std::collections::HashMap;
use std::path::Path;

use super::{Buffer, PlanError};

const HEADER: [&str; 4] = ["id", "lower", "upper", "size"];

/// The largest total of sizes accepted, so that no offset arithmetic can overflow.
pub const MAX_TOTAL: u64 = 1 << 62;

/// Reads and parses a CSV file.
pub fn read(path: &Path) -> Result<Vec<Buffer>, PlanError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| PlanError::Io { path: path.display().to_string(), source })?;
    parse(&text)
}

/// Parses CSV text. Blank lines are skipped; line numbers in errors are 1-based.
pub fn parse(text: &str) -> Result<Vec<Buffer>, PlanError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty());
    let (line, header) = lines.next().ok_or(PlanError::Empty)?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    if names.len() != HEADER.len() || names.iter().zip(HEADER).any(|(n, h)| !n.eq_ignore_ascii_case(h)) {
        return Err(PlanError::BadHeader { line, found: header.to_string() });
    }
    let mut buffers = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut total = 0u64;
    for (line, text) in lines {
        let buffer = parse_line(line, text)?;
        if let Some(&first) = seen.get(&buffer.id) {
            return Err(PlanError::DuplicateId { line, id: buffer.id, first });
        }
        seen.insert(buffer.id.clone(), line);
        total = total.checked_add(buffer.size).filter(|&t| t <= MAX_TOTAL).ok_or(PlanError::TooLarge { line })?;
        buffers.push(buffer);
    }
    Ok(buffers)
}

fn parse_line(line: usize, text: &str) -> Result<Buffer, PlanError> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let [id, lower, upper, size] = fields[..] else {
        return Err(PlanError::FieldCount { line, found: fields.len() });
    };
    if id.is_empty() {
        return Err(PlanError::EmptyId { line });
    }
    let number = |field: &'static str, value: &str| {
        value.parse::<u64>().map_err(|_| PlanError::BadNumber { line, field, value: value.to_string() })
    };
    let (lower, upper, size) = (number("lower", lower)?, number("upper", upper)?, number("size", size)?);
    if upper < lower {
        return Err(PlanError::BadLifetime { line, lower, upper });
    }
    Ok(Buffer { id: id.to_string(), lower, upper, size })
}

/// The capacity in a benchmark's file name: the last dot-separated part of the stem, if it is a
/// number (`A.1048576.csv` → 1048576, `input.12.csv` → 12), if any.
pub fn capacity_from_path(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    stem.rsplit('.').next().and_then(|last| last.parse().ok())
}
