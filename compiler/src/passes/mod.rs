//! Graph-to-graph passes and the pipeline that runs them.
//!
//! Each pass lives in its own file, opens with its purpose and its *Requires:* and
//! *Establishes:* lines, and has a kebab-case [`Pass::name`] that names its CLI flag
//! (`flint compile --dump-after NAME`), its dump file and its snapshots
//! (`<example>@NN-NAME`). The pipeline is the one list in [`default_pipeline`], run top to
//! bottom; no pass schedules another.

mod builder;
mod cse;
mod dce;
mod decompose;
pub mod fusion;
pub mod kernels;
pub mod memory;
pub mod schedule;
mod simplify;

use std::time::{Duration, Instant};

pub use builder::Builder;
pub use cse::Cse;
pub use dce::Dce;
pub use decompose::Decompose;
pub use simplify::Simplify;

use crate::ir::infer::TypeError;
use crate::ir::verify::{verify, VerifyError};
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
    #[error("pass `{pass}` left an invalid graph: {error}")]
    Verify { pass: &'static str, error: VerifyError },
    #[error("building `{op}` for {node} failed: {error:?}")]
    Build { node: NodeId, op: &'static str, error: Box<TypeError> },
    #[error("no pass is named `{0}` (passes: {1})")]
    UnknownPass(String, String),
}

/// The default pipeline, in order.
pub fn default_pipeline() -> Vec<Box<dyn Pass>> {
    vec![Box::new(Decompose), Box::new(Simplify), Box::new(Cse), Box::new(Dce)]
}

/// Options of one run of the pipeline.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Verify after every pass (on in tests and debug builds, whatever this says).
    pub verify: bool,
    /// Keep the printed IR after each pass, for `--dump-after` and `--dump-all`.
    pub keep_dumps: bool,
}

/// What one pass did: its name, time, node counts and (on request) the IR after it.
#[derive(Clone, Debug)]
pub struct PassRecord {
    pub name: &'static str,
    pub time: Duration,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub dump: Option<String>,
}

/// Runs `passes` over `graph` in order, verifying after each when asked (always in debug
/// builds), timing each, and keeping dumps on request.
pub fn run_passes(
    graph: &mut Graph,
    passes: &[Box<dyn Pass>],
    opts: &RunOptions,
) -> Result<Vec<PassRecord>, PassError> {
    let mut records = Vec::new();
    for pass in passes {
        let nodes_before = graph.len();
        let start = Instant::now();
        pass.run(graph)?;
        let time = start.elapsed();
        if opts.verify || cfg!(debug_assertions) {
            verify(graph).map_err(|error| PassError::Verify { pass: pass.name(), error })?;
        }
        let dump = opts.keep_dumps.then(|| crate::ir::print::print(graph));
        records.push(PassRecord { name: pass.name(), time, nodes_before, nodes_after: graph.len(), dump });
    }
    Ok(records)
}

/// The names of the default pipeline's passes, in order.
pub fn pass_names() -> Vec<&'static str> {
    default_pipeline().iter().map(|p| p.name()).collect()
}
