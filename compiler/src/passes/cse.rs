//! Common-subexpression elimination: merges nodes that compute the same op on the same
//! operands with the same type. Ops are compared structurally (`Op: PartialEq`), never by
//! their printed form; a constant holding NaN never equals another, so it is kept.
//!
//! *Requires:* a verified graph. *Establishes:* no two live nodes are structurally equal
//! (inputs and params excepted: each is a distinct binding); merged nodes leave dead copies
//! for DCE.

use std::collections::HashMap;

use super::{Pass, PassError};
use crate::ir::{Graph, NodeId, Op};

pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, graph: &mut Graph) -> Result<(), PassError> {
        let Some(order) = graph.topo_order() else { return Ok(()) };
        // Bucket by (op name, operands) so each comparison is among a handful of candidates.
        let mut seen: HashMap<(&'static str, Vec<NodeId>), Vec<NodeId>> = HashMap::new();
        for id in order {
            if matches!(graph.op(id), Op::Input { .. } | Op::Param { .. }) {
                continue;
            }
            let key = (graph.op(id).name(), graph.operands(id));
            let bucket = seen.entry(key).or_default();
            let twin = bucket.iter().copied().find(|&c| graph.op(c) == graph.op(id) && graph.ty(c) == graph.ty(id));
            match twin {
                Some(t) => graph.replace_uses(id, t),
                None => bucket.push(id),
            }
        }
        Ok(())
    }
}
