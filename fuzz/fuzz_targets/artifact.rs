//! Feeds arbitrary bytes to the artifact reader, twice: as a whole file, and as a manifest
//! wrapped in a valid header (so the checksum does not stop the fuzzer before the decoder and
//! the consistency checks). Refusing is fine; panicking is a bug, and so is accepting a
//! manifest whose indices or sizes the runtime would trip over.
#![no_main]

use flint_runtime::artifact::{self, Storage, FORMAT_VERSION, MAGIC};
use flint_runtime::glue;
use libfuzzer_sys::fuzz_target;

fn exercise(bytes: &[u8]) {
    let Ok(parsed) = artifact::parse(bytes) else { return };
    let m = &parsed.manifest;
    let bounds: Vec<u64> = m.symbols.iter().map(|s| s.bound).collect();
    for v in &m.values {
        let size = v.bytes(&bounds);
        if let Storage::Arena(offset) = v.storage {
            assert!(offset + size <= m.arena_bytes, "an accepted arena value outside the arena");
        }
    }
    for r in &m.regions {
        let _ = m.region_value(r);
    }
    for k in &m.kernels {
        let _ = k.extent.eval(&bounds);
        assert!(k.args.iter().all(|&a| (a as usize) < m.values.len()));
    }
    let _ = glue::checks(m);
    for (s, range) in m.sections.iter().zip(&parsed.sections) {
        assert_eq!(range.len() as u64, s.len);
        assert!(range.end <= bytes.len());
    }
    let _ = artifact::check_host(&m.target);
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    let mut wrapped = MAGIC.to_vec();
    wrapped.extend(FORMAT_VERSION.to_le_bytes());
    wrapped.extend(crc32fast::hash(data).to_le_bytes());
    wrapped.extend((data.len() as u64).to_le_bytes());
    wrapped.extend(data);
    wrapped.resize(wrapped.len().next_multiple_of(artifact::SECTION_ALIGN), 0);
    exercise(&wrapped);
});
