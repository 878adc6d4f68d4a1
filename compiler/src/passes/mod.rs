//! Graph-to-graph passes.
//!
//! Each pass lives in its own file, opens with its purpose and its *Requires:* and
//! *Establishes:* lines, and has a kebab-case [`Pass::name`] that names its CLI flag
//! (`flint compile --dump-after NAME`), its dump file and its snapshots
//! (`<example>@NN-NAME`). The order they run in is the one list of
//! [`crate::pipeline::stages`]; no pass runs another (a cleanup a pass needs is a line
//! there).

mod builder;
mod cse;
mod dce;
mod decompose;
mod simplify;

pub use builder::Builder;
pub use cse::Cse;
pub use dce::Dce;
pub use decompose::Decompose;
pub use simplify::Simplify;

use crate::ir::infer::TypeError;
use crate::ir::{Graph, NodeId};

/// A rewrite of a whole graph.
pub trait Pass {
    /// The kebab-case name used on the command line, in dumps and in snapshot names.
    fn name(&self) -> &'static str;
    /// Rewrites `graph` in place.
    fn run(&self, graph: &mut Graph) -> Result<(), PassError>;
}

/// A pass could not finish. Every variant is a compiler bug or an unsupported construct,
/// never a property of the user's input that the front end should have caught.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("building `{op}` for {node} failed: {error:?}")]
    Build { node: NodeId, op: &'static str, error: Box<TypeError> },
}
