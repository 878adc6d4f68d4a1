//! The host glue: the schedule of an artifact's manifest as one CLIF function, which the
//! runtime compiles with Cranelift at load. The calling convention, the checks and their
//! statuses are [`flint_runtime::glue`]'s; this writes what that module reads.
//!
//! Everything the glue computes comes from the manifest: the checks from its symbols and
//! inputs, each kernel's pointers from the plan (a region's base, or the arena's plus a
//! constant offset), each kernel's range from its extent over the dims. Dims and region bases
//! are loaded once; monomials of the dims are computed once each.

use std::collections::HashMap;
use std::fmt::Write;

use flint_runtime::artifact::{Dim, Manifest, Storage};
use flint_runtime::glue::{checks, Check, RUN_KERNEL};

/// The glue for `m`, as CLIF text.
pub fn clif(m: &Manifest) -> String {
    let mut g =
        Writer { text: String::new(), next_value: 4, next_block: 2, dims: Vec::new(), monomials: HashMap::new() };
    let slot = 8 * m.kernels.iter().map(|k| k.args.len()).max().unwrap_or(0).max(1);
    let _ =
        writeln!(g.text, "; host glue of `{}`: {} kernel(s), {} symbol(s)", m.name, m.kernels.len(), m.symbols.len());
    let _ = writeln!(g.text, "; calls {RUN_KERNEL} as fn0; statuses 1..={} are the checks in order", checks(m).len());
    g.text.push_str("function u0:0(i64, i64, i64, i64) -> i32 system_v {\n");
    let _ = writeln!(g.text, "    ss0 = explicit_slot {slot}");
    g.text.push_str("    sig0 = (i64, i64, i64, i64, i64) -> i32 system_v\n    fn0 = u0:1 sig0\n\n");
    g.text.push_str("block0(v0: i64, v1: i64, v2: i64, v3: i64):\n");
    for (s, symbol) in m.symbols.iter().enumerate() {
        let d = g.value(&format!("load.i64 notrap aligned v1+{}", 8 * s));
        g.comment(&format!("{} = {d}", symbol.name));
        g.dims.push(d);
    }
    let mut shape_at = 0;
    for (status, check) in checks(m).into_iter().enumerate() {
        let status = status + 1;
        match check {
            Check::Bound(s) => {
                let d = g.dims[s].clone();
                let (one, bound) = (g.value("iconst.i64 1"), g.value(&format!("iconst.i64 {}", m.symbols[s].bound)));
                let low = g.value(&format!("icmp slt {d}, {one}"));
                let high = g.value(&format!("icmp sgt {d}, {bound}"));
                let bad = g.value(&format!("bor {low}, {high}"));
                g.fail_if(&bad, status);
            }
            Check::Axis { region, axis } => {
                let r = &m.regions[region];
                let expected = g.monomial(&m.region_value(r).shape[axis]);
                let given = g.value(&format!("load.i64 notrap aligned v3+{}", 8 * shape_at));
                shape_at += 1;
                let bad = g.value(&format!("icmp ne {given}, {expected}"));
                g.comment(&format!("{} axis {axis}", r.name));
                g.fail_if(&bad, status);
            }
        }
    }
    g.comment("the checks passed: the runtime binds params and outputs");
    let (bind, zero) = (g.value("iconst.i64 -1"), g.value("iconst.i64 0"));
    let status = g.value(&format!("call fn0(v0, {bind}, v2, {zero}, v1)"));
    g.propagate(&status);
    let bases: Vec<String> = (0..=m.regions.len())
        .map(|r| {
            let name = m.regions.get(r).map_or("the arena".into(), |r| format!("{} {}", r.kind.name(), r.name));
            g.value(&format!("load.i64 notrap aligned v2+{}  ; {name}", 8 * r))
        })
        .collect();
    let arena = &bases[m.regions.len()];
    for (index, kernel) in m.kernels.iter().enumerate() {
        g.comment(&format!("{} ({}): {}", kernel.name, kernel.kind, kernel.symbol));
        let pointers = g.value("stack_addr.i64 ss0");
        for (j, &arg) in kernel.args.iter().enumerate() {
            let address = match m.values[arg as usize].storage {
                Storage::Region(r) => bases[r as usize].clone(),
                Storage::Arena(0) => arena.clone(),
                Storage::Arena(offset) => {
                    let offset = g.value(&format!("iconst.i64 {offset}"));
                    g.value(&format!("iadd {arena}, {offset}"))
                }
            };
            let _ = writeln!(g.text, "    store notrap aligned {address}, {pointers}+{}", 8 * j);
        }
        let k = g.value(&format!("iconst.i64 {index}"));
        let extent = g.monomial(&kernel.extent);
        let status = g.value(&format!("call fn0(v0, {k}, {pointers}, {extent}, v1)"));
        g.propagate(&status);
    }
    let ok = g.value("iconst.i32 0");
    let exit = g.next_value;
    let _ = writeln!(g.text, "    jump block1({ok})\n\nblock1(v{exit}: i32):\n    return v{exit}\n}}");
    g.text
}

struct Writer {
    text: String,
    next_value: usize,
    next_block: usize,
    dims: Vec<String>,
    monomials: HashMap<(u64, Vec<u32>), String>,
}

impl Writer {
    /// Appends `v = expr` and returns `v`.
    fn value(&mut self, expr: &str) -> String {
        let v = format!("v{}", self.next_value);
        self.next_value += 1;
        let _ = writeln!(self.text, "    {v} = {expr}");
        v
    }

    fn comment(&mut self, text: &str) {
        let _ = writeln!(self.text, "    ; {text}");
    }

    /// Returns `status` when `cond` holds; continues in a new block otherwise.
    fn fail_if(&mut self, cond: &str, status: usize) {
        let code = self.value(&format!("iconst.i32 {status}"));
        self.branch(cond, &code);
    }

    /// Returns `status` (an i32) when it is nonzero.
    fn propagate(&mut self, status: &str) {
        self.branch(status, status);
    }

    fn branch(&mut self, cond: &str, status: &str) {
        let next = self.next_block;
        self.next_block += 1;
        let _ = writeln!(self.text, "    brif {cond}, block1({status}), block{next}\n\nblock{next}:");
    }

    /// `coeff * dims...` as an i64 value, computed once per distinct monomial.
    fn monomial(&mut self, d: &Dim) -> String {
        let key = (d.coeff, d.syms.clone());
        if let Some(v) = self.monomials.get(&key) {
            return v.clone();
        }
        let mut terms: Vec<String> = d.syms.iter().map(|&s| self.dims[s as usize].clone()).collect();
        if d.coeff != 1 || terms.is_empty() {
            let c = self.value(&format!("iconst.i64 {}", d.coeff));
            terms.insert(0, c);
        }
        let mut v = terms[0].clone();
        for t in &terms[1..] {
            v = self.value(&format!("imul {v}, {t}"));
        }
        self.monomials.insert(key, v.clone());
        v
    }
}

/// Checks `text` as the runtime will load it: parsed, verified and compiled by Cranelift.
pub fn verify(text: &str) -> Result<(), String> {
    extern "C" fn never_called(_: *mut u8, _: i64, _: *const *mut u8, _: i64, _: *const i64) -> i32 {
        0
    }
    flint_runtime::glue::Glue::compile(text, never_called).map(drop).map_err(|e| e.to_string())
}
