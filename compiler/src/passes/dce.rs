//! Dead-code elimination: removes every node no output depends on.
//!
//! *Requires:* a verified graph. *Establishes:* every node other than an input reaches an
//! output (inputs stay: they are the signature).

use std::collections::HashSet;

use super::{Pass, PassError};
use crate::ir::{Graph, NodeId};

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, graph: &mut Graph) -> Result<(), PassError> {
        let live = live_nodes(graph);
        let dead: Vec<NodeId> = graph.node_ids().filter(|n| !live.contains(n)).collect();
        for n in dead {
            graph.remove(n);
        }
        Ok(())
    }
}

/// The nodes an output depends on, and the inputs.
pub fn live_nodes(graph: &Graph) -> HashSet<NodeId> {
    let mut live = HashSet::new();
    let mut stack: Vec<NodeId> = graph.outputs.iter().map(|(_, n)| *n).chain(graph.inputs.iter().copied()).collect();
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(graph.operands(n));
        }
    }
    live
}
