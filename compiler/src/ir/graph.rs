//! The graph container: a `petgraph` stable graph behind typed handles.

use std::fmt;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::{Op, Symbol, TensorType};
use crate::diag::Span;

/// A handle to a node. Handles survive the removal of other nodes. Prints as `%12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex<u32>);

impl NodeId {
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0.index())
    }
}

/// A node: one operation producing one tensor of type `ty`.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub ty: TensorType,
    /// The source name the value was bound to (`h = ...`), kept for readable dumps.
    pub name: Option<String>,
    /// Where in the source the value was written; beside the op, never inside it.
    pub span: Option<Span>,
}

/// An edge's weight: which operand slot of the consumer it feeds.
pub type OperandIndex = u32;

/// A typed dataflow graph with named inputs, params and outputs.
///
/// Inputs and params are nodes (`Op::Input`, `Op::Param`); `inputs` keeps the signature's
/// order. Outputs are named references to nodes, in signature order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub symbols: Vec<Symbol>,
    pub inputs: Vec<NodeId>,
    pub outputs: Vec<(String, NodeId)>,
    nodes: StableDiGraph<Node, OperandIndex, u32>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Graph::default() }
    }

    /// Adds a node whose operands are `operands`, in order.
    pub fn add(&mut self, op: Op, ty: TensorType, operands: &[NodeId]) -> NodeId {
        let id = NodeId(self.nodes.add_node(Node { op, ty, name: None, span: None }));
        for (slot, operand) in operands.iter().enumerate() {
            self.nodes.add_edge(operand.0, id.0, slot as OperandIndex);
        }
        id
    }

    /// Adds a graph input and records it in the signature.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> NodeId {
        let name = name.into();
        let id = self.add(Op::Input { name: name.clone() }, ty, &[]);
        self.node_mut(id).name = Some(name);
        self.inputs.push(id);
        id
    }

    /// Adds a named weight.
    pub fn add_param(&mut self, name: impl Into<String>, ty: TensorType) -> NodeId {
        let name = name.into();
        let id = self.add(Op::Param { name: name.clone() }, ty, &[]);
        self.node_mut(id).name = Some(name);
        id
    }

    pub fn add_output(&mut self, name: impl Into<String>, node: NodeId) {
        self.outputs.push((name.into(), node));
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.nodes.contains_node(id.0)
    }

    /// The node behind `id`. Panics on a removed handle: that is a compiler bug, and the
    /// verifier checks every handle a graph holds before passes run.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.0]
    }

    pub fn op(&self, id: NodeId) -> &Op {
        &self.nodes[id.0].op
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.nodes[id.0].ty
    }

    /// The operands of `id`, in slot order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(OperandIndex, NodeId)> =
            self.nodes.edges_directed(id.0, Direction::Incoming).map(|e| (*e.weight(), NodeId(e.source()))).collect();
        edges.sort();
        edges.into_iter().map(|(_, n)| n).collect()
    }

    /// The operand slots of `id` as stored, unsorted, for the verifier's edge checks.
    pub fn operand_slots(&self, id: NodeId) -> Vec<OperandIndex> {
        self.nodes.edges_directed(id.0, Direction::Incoming).map(|e| *e.weight()).collect()
    }

    /// The distinct nodes that use `id`, in handle order.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut users: Vec<NodeId> = self.nodes.neighbors_directed(id.0, Direction::Outgoing).map(NodeId).collect();
        users.sort();
        users.dedup();
        users
    }

    /// Every live node, in handle order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.node_indices().map(NodeId)
    }

    pub fn len(&self) -> usize {
        self.nodes.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.node_count() == 0
    }

    /// Points every use of `old` (operands and outputs) at `new`.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let uses: Vec<_> =
            self.nodes.edges_directed(old.0, Direction::Outgoing).map(|e| (e.id(), e.target(), *e.weight())).collect();
        for (edge, target, slot) in uses {
            self.nodes.remove_edge(edge);
            self.nodes.add_edge(new.0, target, slot);
        }
        for (_, out) in &mut self.outputs {
            if *out == old {
                *out = new;
            }
        }
    }

    /// Removes a node and its edges. Inputs stay in the signature and must not be removed.
    pub fn remove(&mut self, id: NodeId) {
        self.nodes.remove_node(id.0);
    }

    /// Renumbers the handles densely in the printer's order (topological, ties by handle;
    /// handle order for a graph with a cycle), so that `%N` in an error names the same node
    /// as `%N` in a dump. Returns the old handle of every new one, by new index.
    pub fn compact(&mut self) -> Vec<NodeId> {
        let order = self.topo_order().unwrap_or_else(|| self.node_ids().collect());
        let mut nodes = StableDiGraph::with_capacity(order.len(), self.nodes.edge_count());
        let mut new_of = std::collections::HashMap::with_capacity(order.len());
        for &old in &order {
            new_of.insert(old, NodeId(nodes.add_node(self.nodes[old.0].clone())));
        }
        for &old in &order {
            for e in self.nodes.edges_directed(old.0, Direction::Incoming) {
                nodes.add_edge(new_of[&NodeId(e.source())].0, new_of[&old].0, *e.weight());
            }
        }
        let renumber = |id: &mut NodeId| *id = new_of.get(id).copied().unwrap_or(*id);
        self.inputs.iter_mut().for_each(renumber);
        self.outputs.iter_mut().for_each(|(_, id)| renumber(id));
        self.nodes = nodes;
        order
    }

    /// Every live node in a topological order (operands first); ties broken by handle
    /// order, so the order is deterministic. `None` when the graph has a cycle.
    pub fn topo_order(&self) -> Option<Vec<NodeId>> {
        let mut indegree: std::collections::BTreeMap<NodeId, usize> =
            self.node_ids().map(|n| (n, self.nodes.edges_directed(n.0, Direction::Incoming).count())).collect();
        let mut ready: std::collections::BTreeSet<NodeId> =
            indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| *n).collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.nodes.edges_directed(n.0, Direction::Outgoing) {
                let user = NodeId(e.target());
                if let Some(d) = indegree.get_mut(&user) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(user);
                    }
                }
            }
        }
        (order.len() == self.len()).then_some(order)
    }
}
