//! `include/flint.h` is what cbindgen makes of `src/capi.rs` (with `cbindgen.toml`): the
//! committed header cannot drift from the functions it declares. `FLINT_BLESS=1` rewrites it.

use std::path::Path;

#[test]
fn the_header_is_cbindgens_output() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/capi.rs"))
        .generate()
        .expect("cbindgen reads src/capi.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8");
    let path = crate_dir.join("include/flint.h");
    if std::env::var_os("FLINT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/flint.h differs from cbindgen's output: run FLINT_BLESS=1 cargo test -p flint-runtime --test header"
    );
}
