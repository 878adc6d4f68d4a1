//! embed-rust: runs an artifact that `flint compile` wrote, with nothing but `flint-runtime`.
//!
//!     cargo run -p embed-rust -- MODEL.tgx
//!
//! Every input gets a deterministic ramp (symbolic dims at 2, or their bound if smaller); the
//! outputs' shapes and first values are printed.

use flint_runtime::artifact::RegionKind;
use flint_runtime::{DType, Model, TensorRef};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: embed-rust MODEL.tgx")?;
    let model = Model::load(&path)?;
    let m = model.manifest();
    let mut inputs: Vec<(String, DType, Vec<usize>, Vec<u8>)> = Vec::new();
    for (_, region) in m.regions_of(RegionKind::Input) {
        let value = m.region_value(region);
        let dims: Vec<u64> = m.symbols.iter().map(|s| s.bound.min(2)).collect();
        let shape: Vec<usize> = value.shape.iter().map(|d| d.eval(&dims) as usize).collect();
        let count: usize = shape.iter().product();
        let data: Vec<u8> = match value.dtype {
            DType::F32 => (0..count).flat_map(|k| ((k % 17) as f32 * 0.125 - 1.0).to_le_bytes()).collect(),
            other => vec![0; count * other.size_bytes()],
        };
        println!("input {}: {} {shape:?}", region.name, value.dtype.name());
        inputs.push((region.name.clone(), value.dtype, shape, data));
    }
    let refs: Vec<(&str, TensorRef)> =
        inputs.iter().map(|(n, d, s, b)| (n.as_str(), TensorRef::new(*d, s, b))).collect();
    let mut session = model.session();
    for (name, tensor) in session.run(&refs)? {
        let first: Vec<String> =
            tensor.to_f32().unwrap_or_default().iter().take(6).map(|v| format!("{v:.6}")).collect();
        println!("output {name}: {:?} {}", tensor.shape, first.join(" "));
    }
    Ok(())
}
