//! The Flint compiler: front end (`syntax`), typed IR (`ir`), reference interpreter
//! (`interp`), and the `flint` command-line driver built on them.

pub mod diag;
pub mod interp;
pub mod ir;
#[cfg(feature = "mlir")]
pub mod mlir;
pub mod npy;
pub mod onnx;
pub mod passes;
pub mod plan;
pub mod random;
pub mod syntax;
pub mod weights;
