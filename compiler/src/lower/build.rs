//! Kernels as MLIR operations, built through melior's operation builder.
//!
//! The emitter never writes MLIR text: every operation is created by
//! [`OperationBuilder`] with its operands, result types, attributes and regions, appended to
//! the block under construction, and the function is verified once it is whole. Nested
//! regions (loop bodies, branches) are blocks on a stack: the emitter opens one, fills it,
//! closes it into the region of the operation that owns it.
//!
//! Values are kept as [`V`], a copyable handle of the `mlir::Value` (hashable, so an index
//! expression can name a value computed at run time): melior's `Value` borrows its block,
//! which the stack of blocks under construction cannot express. Handles stay valid while the
//! operation that defines them lives, which is until the kernel's module is dropped after
//! printing.

use std::collections::HashMap;

use melior::ir::operation::{OperationBuilder, OperationLike, OperationPrintingFlags};
use melior::ir::{
    Attribute, Block, BlockLike, Identifier, Location, Module, Operation, Region, RegionLike, Type, Value, ValueLike,
};
use melior::Context;
use mlir_sys::MlirValue;

use crate::mlir::DiagnosticLog;

/// An SSA value of the kernel being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V(usize);

impl V {
    /// No value: what an operation skipped after a failure returns.
    pub const NONE: V = V(0);

    fn of<'c>(value: &impl ValueLike<'c>) -> V {
        V(value.to_raw().ptr as usize)
    }

    fn raw(self) -> MlirValue {
        MlirValue { ptr: self.0 as *const std::ffi::c_void }
    }
}

/// Builds operations into a stack of open blocks, innermost last.
///
/// Building cannot fail half-way through the emitter's recursion: the first operation MLIR
/// refuses (a bad type or attribute, which is a bug of the emitter) is recorded, every later
/// one is skipped, and [`Builder::failure`] reports it when the kernel is finished.
pub struct Builder<'c> {
    context: &'c Context,
    location: Location<'c>,
    blocks: Vec<Block<'c>>,
    types: HashMap<String, Type<'c>>,
    attributes: HashMap<String, Attribute<'c>>,
    failure: Option<String>,
}

impl<'c> Builder<'c> {
    pub fn new(context: &'c Context, location: Location<'c>) -> Self {
        Builder {
            context,
            location,
            blocks: Vec::new(),
            types: HashMap::new(),
            attributes: HashMap::new(),
            failure: None,
        }
    }

    /// The first operation, type or attribute MLIR refused, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    pub fn fail(&mut self, what: String) {
        self.failure.get_or_insert(what);
    }

    /// The type written `text` (`f32`, `vector<16xf32>`, `!llvm.ptr`), parsed once.
    fn ty(&mut self, text: &str) -> Option<Type<'c>> {
        if let Some(&t) = self.types.get(text) {
            return Some(t);
        }
        let Some(t) = Type::parse(self.context, text) else {
            self.fail(format!("bad type `{text}`"));
            return None;
        };
        self.types.insert(text.to_string(), t);
        Some(t)
    }

    /// The attribute written `text` (`4 : i64`, `#arith.fastmath<reassoc>`), parsed once.
    fn attribute(&mut self, text: &str) -> Option<Attribute<'c>> {
        if let Some(&a) = self.attributes.get(text) {
            return Some(a);
        }
        let Some(a) = Attribute::parse(self.context, text) else {
            self.fail(format!("bad attribute `{text}`"));
            return None;
        };
        self.attributes.insert(text.to_string(), a);
        Some(a)
    }

    /// Opens a block whose arguments have `types`; returns the arguments.
    pub fn open(&mut self, types: &[&str]) -> Vec<V> {
        let args: Option<Vec<(Type<'c>, Location<'c>)>> =
            types.iter().map(|t| Some((self.ty(t)?, self.location))).collect();
        let block = Block::new(&args.unwrap_or_default());
        let values = (0..types.len()).map(|i| block.argument(i).map_or(V::NONE, |a| V::of(&a))).collect();
        self.blocks.push(block);
        values
    }

    /// Closes the innermost block into a region of its own.
    pub fn close(&mut self) -> Region<'c> {
        let region = Region::new();
        match self.blocks.pop() {
            Some(block) => {
                region.append_block(block);
            }
            None => self.fail("a block closed twice".into()),
        }
        region
    }

    /// Creates operation `name` with results typed `results` and attributes written as
    /// text, and appends it to the innermost block.
    pub fn op(&mut self, name: &str, operands: &[V], results: &[&str], attributes: &[(&str, &str)]) -> Vec<V> {
        self.op_with(name, operands, results, attributes, Vec::new())
    }

    /// [`Builder::op`] with regions.
    pub fn op_with(
        &mut self,
        name: &str,
        operands: &[V],
        results: &[&str],
        attributes: &[(&str, &str)],
        regions: Vec<Region<'c>>,
    ) -> Vec<V> {
        let types: Option<Vec<Type<'c>>> = results.iter().map(|t| self.ty(t)).collect();
        let built = match (types, self.builder(name, operands, attributes)) {
            (Some(types), Some(b)) => self.append(b.add_results(&types).add_regions_vec(regions)),
            _ => None,
        };
        built.unwrap_or_else(|| vec![V::NONE; results.len()])
    }

    /// [`Builder::op`] with one result, whose type the operation infers (arith's
    /// operations: from their operands, or a constant's from its value).
    pub fn inferred(&mut self, name: &str, operands: &[V], attributes: &[(&str, &str)]) -> V {
        let built =
            self.builder(name, operands, attributes).and_then(|b| self.append(b.enable_result_type_inference()));
        built.and_then(|r| r.first().copied()).unwrap_or(V::NONE)
    }

    /// An operation that is appended nowhere (a function, a global, a module), for the caller
    /// to place.
    pub fn detached(
        &mut self,
        name: &str,
        attributes: &[(&str, &str)],
        regions: Vec<Region<'c>>,
    ) -> Option<Operation<'c>> {
        let builder = self.builder(name, &[], attributes)?.add_regions_vec(regions);
        builder.build().map_err(|e| self.fail(format!("`{name}`: {e}"))).ok()
    }

    fn builder(&mut self, name: &str, operands: &[V], attributes: &[(&str, &str)]) -> Option<OperationBuilder<'c>> {
        if self.failure.is_some() || operands.contains(&V::NONE) {
            return None;
        }
        let named: Option<Vec<(Identifier<'c>, Attribute<'c>)>> = attributes
            .iter()
            .map(|&(key, text)| Some((Identifier::new(self.context, key), self.attribute(text)?)))
            .collect();
        let operands: Vec<Value<'c, '_>> = operands.iter().map(|&v| value(v)).collect();
        Some(OperationBuilder::new(name, self.location).add_operands(&operands).add_attributes(&named?))
    }

    fn append(&mut self, builder: OperationBuilder<'c>) -> Option<Vec<V>> {
        let operation = match builder.build() {
            Ok(op) => op,
            Err(e) => {
                self.fail(e.to_string());
                return None;
            }
        };
        let Some(block) = self.blocks.last() else {
            self.fail("an operation outside any block".into());
            return None;
        };
        let op = block.append_operation(operation);
        Some(op.results().map(|r| V::of(&r)).collect())
    }
}

/// The melior value behind a handle.
fn value<'c>(v: V) -> Value<'c, 'static> {
    // SAFETY: every `V` but `NONE` (which never reaches here) was taken from a value of an
    // operation or block the builder created, and those live until the kernel's module is
    // dropped, after the last use of any handle.
    unsafe { Value::from_raw(v.raw()) }
}

/// A kernel function in a module of its own with the tables it reads, verified, and each
/// printed: the function, then the tables, as MLIR text.
pub(crate) fn verified_text<'c>(
    b: &mut Builder<'c>,
    log: &DiagnosticLog,
    function: Operation<'c>,
    tables: Vec<Operation<'c>>,
    gpu: bool,
) -> Result<(String, Vec<String>), String> {
    let module = Module::new(b.location);
    let holder = if gpu {
        let inner = Region::new();
        inner.append_block(Block::new(&[]));
        let gpu_module = b.detached("gpu.module", &[("sym_name", "\"flint\"")], vec![inner]);
        let Some(gpu_module) = gpu_module else { return Err(b.failure().unwrap_or_default().to_string()) };
        let op = module.body().append_operation(gpu_module);
        op.region(0).ok().and_then(|r| r.first_block()).ok_or("a gpu.module without a body")?
    } else {
        module.body()
    };
    let tables: Vec<_> = tables.into_iter().map(|t| holder.append_operation(t)).collect();
    let function = holder.append_operation(function);
    if !module.as_operation().verify() {
        return Err(log.take_or("the kernel does not verify"));
    }
    let flags = || OperationPrintingFlags::new().use_local_scope();
    let print = |op: &melior::ir::OperationRef| op.to_string_with_flags(flags()).map_err(|e| e.to_string());
    let text = print(&function)?;
    let tables = tables.iter().map(print).collect::<Result<_, _>>()?;
    Ok((text, tables))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused attribute poisons the builder: the failure names it, later operations are
    /// skipped (no null value reaches MLIR), and the blocks still open and close in pairs.
    #[test]
    fn the_first_refusal_is_kept_and_later_operations_are_skipped() {
        let context = crate::mlir::new_context();
        let mut b = Builder::new(&context, Location::unknown(&context));
        let args = b.open(&["i32"]);
        let one = b.inferred("arith.constant", &[], &[("value", "1 : i32")]);
        let sum = b.inferred("arith.addi", &[args[0], one], &[]);
        assert_ne!(sum, V::NONE);
        assert!(b.failure().is_none());
        let bad = b.inferred("arith.constant", &[], &[("value", "1 : not_a_type")]);
        assert_eq!(bad, V::NONE);
        let after = b.inferred("arith.addi", &[sum, one], &[]);
        assert_eq!(after, V::NONE, "an operation after the failure is skipped");
        assert!(b.failure().is_some_and(|f| f.contains("not_a_type")), "{:?}", b.failure());
        b.open(&[]);
        let _inner = b.close();
        let _outer = b.close();
        assert!(b.failure().is_some_and(|f| f.contains("not_a_type")), "the first failure stays");
    }

    #[test]
    fn an_unbalanced_close_is_a_failure_not_a_crash() {
        let context = crate::mlir::new_context();
        let mut b = Builder::new(&context, Location::unknown(&context));
        let _ = b.close();
        assert!(b.failure().is_some_and(|f| f.contains("closed")));
        assert_eq!(b.inferred("arith.constant", &[], &[("value", "1 : i32")]), V::NONE);
    }
}
