//! The Flint compiler: front end (`syntax`), typed IR (`ir`), reference interpreter
//! (`interp`), graph passes (`passes`), kernel graph and memory plan (`kernel`), all run in
//! order by one call ([`pipeline::compile`]), and the `flint` command-line driver.

pub mod artifact;
pub mod diag;
#[cfg(feature = "mlir")]
pub mod glue;
pub mod interp;
pub mod ir;
pub mod kernel;
#[cfg(feature = "mlir")]
pub mod lower;
#[cfg(feature = "mlir")]
pub mod mlir;
pub mod npy;
pub mod onnx;
pub mod passes;
pub mod pipeline;
pub mod plan;
pub mod random;
pub mod syntax;
pub mod weights;
