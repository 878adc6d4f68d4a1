//! Elementwise values: immediates and constant tables, conversions and rounding, the unary,
//! binary and comparison ops (the transcendentals are in [`super::math`]).

use super::*;

impl<'g, 'c> Emitter<'g, 'c> {
    /// A float, int or bool immediate in `dtype`'s register type.
    pub(super) fn immediate(&mut self, dtype: DType, value: f64) -> Reg {
        match dtype {
            DType::F32 | DType::F16 | DType::BF16 => {
                let bits = (round_float(dtype, value) as f32).to_bits();
                Reg::new(self.constant(&format!("0x{:08X} : f32", bits)), "f32")
            }
            DType::Bool => Reg::new(self.constant(&format!("{} : i1", i32::from(value != 0.0))), "i1"),
            DType::I32 | DType::I64 => {
                Reg::new(self.constant(&format!("{} : {}", value as i64, reg_ty(dtype))), reg_ty(dtype))
            }
        }
    }

    pub(super) fn constant_value(&mut self, n: NodeId, data: &ConstData, idx: &[Ix]) -> Result<Reg, LowerError> {
        let dtype = self.dtype(n);
        let values: Vec<f64> = match data {
            ConstData::Float(v) => v.clone(),
            ConstData::Int(v) => v.iter().map(|&x| x as f64).collect(),
            ConstData::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
        };
        let first = values.first().copied().unwrap_or(0.0);
        if values.iter().all(|&v| v.to_bits() == first.to_bits()) {
            return Ok(match data {
                ConstData::Int(v) if matches!(dtype, DType::I32 | DType::I64) => {
                    let x = v.first().copied().unwrap_or(0);
                    Reg::new(self.constant(&format!("{} : {}", x, reg_ty(dtype))), reg_ty(dtype))
                }
                _ => self.immediate(dtype, first),
            });
        }
        self.table(n, &values, idx)
    }

    /// The exponent when `n` is a constant whose every element is the same integer from 1 to
    /// 4: `pow(x, 3)` (tanh-GELU's cube) is then two multiplies instead of a libm call per
    /// element, within the op's numerics contract (two roundings instead of one).
    pub(super) fn small_power(&self, n: NodeId) -> Option<u32> {
        let mut v = n;
        while let Op::Broadcast | Op::Reshape = self.graph.op(v) {
            v = self.graph.operands(v)[0];
        }
        let Op::Constant { data: ConstData::Float(values) } = self.graph.op(v) else { return None };
        let first = *values.first()?;
        let same = values.iter().all(|&x| x.to_bits() == first.to_bits());
        (same && first.fract() == 0.0 && (1.0..=4.0).contains(&first)).then_some(first as u32)
    }

    /// `x` multiplied by itself to the `power`, rounded to `dtype` once at the end.
    pub(super) fn repeated_product(&mut self, x: Reg, power: u32, dtype: DType) -> Result<Reg, LowerError> {
        let mut r = x.clone();
        for _ in 1..power {
            r = Reg::new(self.arith("mulf", r.v, x.v), "f32");
        }
        Ok(self.round(r, dtype))
    }

    /// A constant with distinct elements: a table in the module, read at the index.
    pub(super) fn table(&mut self, n: NodeId, values: &[f64], idx: &[Ix]) -> Result<Reg, LowerError> {
        let dtype = self.dtype(n);
        let bytes: Vec<u8> = values.iter().flat_map(|&v| element_bytes(dtype, v)).collect();
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let ty = mem_ty(dtype);
        let name = format!("flint_table_{:016x}", fnv1a(format!("{ty}:{hex}").as_bytes()));
        if !self.tables.iter().any(|(n, _, _)| *n == name) {
            self.tables.push((name.clone(), ty, bytes));
        }
        let linear = self.ix(&index::linearize(idx, self.shape(n)))?;
        let offset = self.cast("index_cast", linear, "i64");
        let base = self.op("llvm.mlir.addressof", &[], "!llvm.ptr", &[("global_name", &format!("@{name}"))]);
        let ty = mem_ty(dtype);
        let ptr = self.gep(base, offset, ty);
        let raw = self.load_ptr(ptr, ty, None);
        Ok(self.widen(raw, dtype))
    }

    /// The internal constant global `name`: `bytes`, elements of type `ty`.
    pub(super) fn global(&mut self, name: &str, ty: &str, bytes: &[u8]) -> Option<Operation<'c>> {
        let len = bytes.len() / mlir_size(ty);
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let attributes = [
            ("sym_name", format!("\"{name}\"")),
            ("global_type", format!("!llvm.array<{len} x {ty}>")),
            ("constant", "unit".to_string()),
            ("linkage", "#llvm.linkage<internal>".to_string()),
            ("value", format!("dense<\"0x{hex}\"> : tensor<{len}x{ty}>")),
        ];
        let attributes: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.b.detached("llvm.mlir.global", &attributes, vec![Region::new()])
    }

    /// Rounds an f32 register to `dtype` when that is narrower (f16, bf16).
    pub(super) fn round(&mut self, x: Reg, dtype: DType) -> Reg {
        match dtype {
            DType::F16 | DType::BF16 => {
                let t = self.cast("truncf", x.v, mem_ty(dtype));
                Reg::new(self.cast("extf", t, "f32"), "f32")
            }
            _ => x,
        }
    }

    pub(super) fn convert(&mut self, x: Reg, from: DType, to: DType) -> Reg {
        let tty = reg_ty(to);
        match (is_float(from), is_float(to)) {
            (true, true) => self.round(x, to),
            (false, true) => {
                let op = if from == DType::Bool { "uitofp" } else { "sitofp" };
                let f = Reg::new(self.cast(op, x.v, "f32"), "f32");
                self.round(f, to)
            }
            (true, false) if to == DType::Bool => {
                let zero = self.immediate(DType::F32, 0.0);
                Reg::new(self.cmpf("une", x.v, zero.v), "i1")
            }
            (true, false) => self.float_to_int(x, to),
            (false, false) if from == to => x,
            (false, false) if to == DType::Bool => {
                let zero = self.immediate(from, 0.0);
                Reg::new(self.cmpi("ne", x.v, zero.v), "i1")
            }
            (false, false) => {
                let op = match (from, to) {
                    (DType::Bool, _) => "extui",
                    (DType::I32, DType::I64) => "extsi",
                    _ => "trunci",
                };
                Reg::new(self.cast(op, x.v, tty), tty)
            }
        }
    }

    /// Truncates toward zero, saturating at the target's range; NaN gives 0.
    pub(super) fn float_to_int(&mut self, x: Reg, to: DType) -> Reg {
        let ty = reg_ty(to);
        let (lo, hi) = if to == DType::I32 { (i32::MIN as i64, i32::MAX as i64) } else { (i64::MIN, i64::MAX) };
        let limit = self.immediate(DType::F32, -(lo as f64));
        let neg = self.immediate(DType::F32, lo as f64);
        let clamped = self.arith("maximumf", x.v, neg.v);
        let below = self.cmpf("olt", clamped, limit.v);
        let safe = self.select(below, clamped, neg.v);
        let int = self.cast("fptosi", safe, ty);
        let max = self.constant(&format!("{} : {}", hi, ty));
        let high = self.select(below, int, max);
        let nan = self.cmpf("uno", x.v, x.v);
        let zero = self.constant(&format!("0 : {ty}"));
        Reg::new(self.select(nan, zero, high), ty)
    }

    pub(super) fn unary(&mut self, u: UnaryOp, dtype: DType, x: Reg) -> Result<Reg, LowerError> {
        let ty = x.ty;
        if !is_float(dtype) {
            return self.unary_int(u, dtype, x);
        }
        let one = || 1.0;
        let r = match u {
            UnaryOp::Neg => Reg::new(self.unop("arith.negf", x.v), ty),
            UnaryOp::Abs => Reg { v: self.math("absf", x.v, "f32"), ty },
            UnaryOp::Exp => self.exp(&x),
            UnaryOp::Log => self.log(&x),
            UnaryOp::Sqrt => Reg { v: self.math("sqrt", x.v, "f32"), ty },
            UnaryOp::Tanh => self.tanh(&x),
            UnaryOp::Erf => self.erf(&x),
            UnaryOp::Sin => self.sin_cos(&x, false),
            UnaryOp::Cos => self.sin_cos(&x, true),
            UnaryOp::Atan => self.atan(&x),
            UnaryOp::Floor => Reg { v: self.math("floor", x.v, "f32"), ty },
            UnaryOp::Ceil => Reg { v: self.math("ceil", x.v, "f32"), ty },
            UnaryOp::Round => Reg { v: self.math("roundeven", x.v, "f32"), ty },
            UnaryOp::Rsqrt => {
                let s = self.math("sqrt", x.v, "f32");
                let one = self.immediate(DType::F32, one());
                Reg::new(self.arith("divf", one.v, s), ty)
            }
            UnaryOp::Reciprocal => {
                let one = self.immediate(DType::F32, one());
                Reg::new(self.arith("divf", one.v, x.v), ty)
            }
            UnaryOp::Sigmoid => {
                let neg = Reg::new(self.unop("arith.negf", x.v), ty);
                let e = self.exp(&neg).v;
                let one = self.immediate(DType::F32, one());
                let d = self.arith("addf", one.v, e);
                Reg::new(self.arith("divf", one.v, d), ty)
            }
            UnaryOp::Relu => {
                let zero = self.immediate(DType::F32, 0.0);
                Reg::new(self.arith("maximumf", x.v, zero.v), ty)
            }
            UnaryOp::Sign => {
                let (zero, one, minus) = (
                    self.immediate(DType::F32, 0.0),
                    self.immediate(DType::F32, 1.0),
                    self.immediate(DType::F32, -1.0),
                );
                let pos = self.cmpf("ogt", x.v, zero.v);
                let neg = self.cmpf("olt", x.v, zero.v);
                let low = self.select(neg, minus.v, x.v);
                Reg::new(self.select(pos, one.v, low), ty)
            }
            UnaryOp::Not => return Err(self.unsupported("`not` on a float")),
        };
        Ok(self.round(r, dtype))
    }

    pub(super) fn unary_int(&mut self, u: UnaryOp, dtype: DType, x: Reg) -> Result<Reg, LowerError> {
        let ty = x.ty;
        let zero = self.immediate(dtype, 0.0);
        Ok(match u {
            UnaryOp::Neg => Reg::new(self.arith("subi", zero.v, x.v), ty),
            UnaryOp::Abs => {
                let neg = self.arith("subi", zero.v, x.v);
                let below = self.cmpi("slt", x.v, zero.v);
                Reg::new(self.select(below, neg, x.v), ty)
            }
            UnaryOp::Relu => Reg::new(self.arith("maxsi", x.v, zero.v), ty),
            UnaryOp::Not => {
                let ones = self.constant(&format!("-1 : {ty}"));
                Reg::new(self.arith("xori", x.v, ones), ty)
            }
            UnaryOp::Sign => {
                let (one, minus) = (self.immediate(dtype, 1.0), self.immediate(dtype, -1.0));
                let pos = self.cmpi("sgt", x.v, zero.v);
                let neg = self.cmpi("slt", x.v, zero.v);
                let low = self.select(neg, minus.v, zero.v);
                Reg::new(self.select(pos, one.v, low), ty)
            }
            other => return Err(self.unsupported(format!("`{}` on an integer", other.name()))),
        })
    }

    pub(super) fn binary(&mut self, b: BinaryOp, dtype: DType, x: Reg, y: Reg) -> Result<Reg, LowerError> {
        let ty = x.ty;
        if is_float(dtype) && self.device.is_gpu() && matches!(b, BinaryOp::Rem | BinaryOp::Pow) {
            let r = if b == BinaryOp::Rem { self.rem_by_division(&x, &y) } else { self.pow_by_exp_log(&x, &y) };
            return Ok(self.round(r, dtype));
        }
        if is_float(dtype) {
            let op = match b {
                BinaryOp::Add => "arith.addf",
                BinaryOp::Sub => "arith.subf",
                BinaryOp::Mul => "arith.mulf",
                BinaryOp::Div => "arith.divf",
                BinaryOp::Rem => "arith.remf",
                BinaryOp::Pow => "math.powf",
                BinaryOp::Maximum => "arith.maximumf",
                BinaryOp::Minimum => "arith.minimumf",
                BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => return Err(self.unsupported("a logical op on floats")),
            };
            let r = Reg::new(self.binop(op, x.v, y.v), ty);
            return Ok(self.round(r, dtype));
        }
        let op = match b {
            BinaryOp::Add => "addi",
            BinaryOp::Sub => "subi",
            BinaryOp::Mul => "muli",
            BinaryOp::Maximum => "maxsi",
            BinaryOp::Minimum => "minsi",
            BinaryOp::And => "andi",
            BinaryOp::Or => "ori",
            BinaryOp::Xor => "xori",
            BinaryOp::Div | BinaryOp::Rem => return Ok(self.int_division(b, dtype, x, y)),
            BinaryOp::Pow => return self.int_pow(x, y),
        };
        Ok(Reg::new(self.arith(op, x.v, y.v), ty))
    }

    /// Truncating division and remainder; `MIN / -1 = MIN`, `MIN % -1 = 0`, and a zero
    /// divisor reads as 1 (the interpreter reports it; here it must not trap).
    pub(super) fn int_division(&mut self, b: BinaryOp, dtype: DType, x: Reg, y: Reg) -> Reg {
        let ty = x.ty;
        let (zero, one, minus) = (self.immediate(dtype, 0.0), self.immediate(dtype, 1.0), self.immediate(dtype, -1.0));
        let is_zero = self.cmpi("eq", y.v, zero.v);
        let is_minus = self.cmpi("eq", y.v, minus.v);
        let bad = self.arith("ori", is_zero, is_minus);
        let safe = self.select(bad, one.v, y.v);
        let (op, special) = match b {
            BinaryOp::Div => ("divsi", self.arith("subi", zero.v, x.v)),
            _ => ("remsi", zero.v),
        };
        let q = self.arith(op, x.v, safe);
        Reg::new(self.select(is_minus, special, q), ty)
    }

    /// `a` multiplied `b` times, wrapping, by squaring over the exponent's bits (`b < 0`
    /// is a run-time error in the interpreter; here it reads its low bits).
    pub(super) fn int_pow(&mut self, x: Reg, y: Reg) -> Result<Reg, LowerError> {
        let ty = x.ty;
        let bits = if ty == "i32" { 32 } else { 64 };
        let one = Reg::new(self.constant(&format!("1 : {ty}")), ty);
        let out = self.fold(&Ix::Const(bits), &[one, x], &mut |e, i, carried| {
            let i = e.ix(&i)?;
            let shift = e.cast("index_cast", i, ty);
            let shifted = e.arith("shrui", y.v, shift);
            let one = e.constant(&format!("1 : {ty}"));
            let bit = e.arith("andi", shifted, one);
            let zero = e.constant(&format!("0 : {ty}"));
            let set = e.cmpi("ne", bit, zero);
            let times = e.arith("muli", carried[0].v, carried[1].v);
            let result = Reg::new(e.select(set, times, carried[0].v), ty);
            let base = Reg::new(e.arith("muli", carried[1].v, carried[1].v), ty);
            Ok(vec![result, base])
        })?;
        out.into_iter().next().ok_or_else(|| self.unsupported("an empty fold"))
    }

    pub(super) fn compare(&mut self, c: CompareOp, dtype: DType, x: &Reg, y: &Reg) -> Reg {
        let (float, signed) = (is_float(dtype), dtype != DType::Bool);
        let pred = match (c, float) {
            (CompareOp::Eq, true) => "oeq",
            (CompareOp::Ne, true) => "une",
            (CompareOp::Lt, true) => "olt",
            (CompareOp::Le, true) => "ole",
            (CompareOp::Gt, true) => "ogt",
            (CompareOp::Ge, true) => "oge",
            (CompareOp::Eq, false) => "eq",
            (CompareOp::Ne, false) => "ne",
            (CompareOp::Lt, false) => ["ult", "slt"][usize::from(signed)],
            (CompareOp::Le, false) => ["ule", "sle"][usize::from(signed)],
            (CompareOp::Gt, false) => ["ugt", "sgt"][usize::from(signed)],
            (CompareOp::Ge, false) => ["uge", "sge"][usize::from(signed)],
        };
        let r = if float { self.cmpf(pred, x.v, y.v) } else { self.cmpi(pred, x.v, y.v) };
        Reg::new(r, "i1")
    }
}
