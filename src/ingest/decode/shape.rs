//! A structural check of an Avro body against its writer schema, without decoding it: does the
//! body parse as exactly one value of the schema (lengths, varints, union branches and enum
//! indices in range, valid UTF-8 in strings, no bytes left over)?
//!
//! The bronze decoder runs it before a record reaches arrow-avro: a body that fails it is
//! reported at once, instead of leaving half a row in arrow-avro's column builders, which costs
//! a decoder rebuild and a replay of every good record since the last flush. A body that passes
//! can still fail in arrow-avro (schema resolution, a logical type's value): the decoder keeps
//! its rebuild-and-replay path for those.
//!
//! The schema is compiled into flat programs: a record's fields are inlined into its parent's
//! program, so checking a record is one loop over its leaves; only arrays, maps and unions run
//! a sub-program. (A recursive schema cannot be flattened: it gets no check.)

use std::collections::HashMap;

use serde_json::Value;

/// One step of a program: what the next bytes must be.
#[derive(Debug, Clone)]
enum Op {
    /// A fixed number of bytes (float, double, fixed).
    Skip(usize),
    Boolean,
    Int,
    Long,
    /// A timestamp-millis long: bronze holds it in microseconds, so it must fit in them.
    Millis,
    Bytes,
    String,
    /// An enum with this many symbols.
    Enum(u64),
    /// Blocks of items, each one run of the program.
    Array(usize),
    /// Blocks of (string key, value) pairs.
    Map(usize),
    /// A branch index, then that branch's program.
    Union(Box<[usize]>),
}

/// A writer schema compiled for [`Shape::check`].
#[derive(Debug, Clone)]
pub(super) struct Shape {
    /// Program 0 is the schema's; the others are item, value and branch programs.
    programs: Vec<Vec<Op>>,
    /// Fewest bytes a run of each program takes.
    min_size: Vec<usize>,
}

/// What [`Shape::check`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The body is one well-formed value of the schema.
    Fits,
    /// It is not, and why.
    Bad(String),
    /// The check cannot tell (huge blocks of empty values).
    Unsure,
}

/// Why a body does not fit (no allocation on the hot path; the message is built once).
#[derive(Debug, Clone, Copy)]
pub(super) enum Bad {
    Short {
        needed: usize,
        left: usize,
    },
    EndsInNumber,
    /// More than 64 bits: a tenth byte above 1, or an eleventh.
    LongNumber,
    Boolean,
    IntRange,
    /// A timestamp-millis whose microseconds overflow.
    MillisRange,
    NegativeLength(i64),
    Utf8,
    Enum(i64),
    Branch(i64),
    BlockCount,
    NegativeBlockSize(i64),
    Block,
    /// Not a failure: the check cannot tell (huge blocks of empty values).
    Unsure,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Short { needed, left } => {
                write!(
                    f,
                    "the body ends early ({needed} bytes needed, {left} left)"
                )
            }
            Bad::EndsInNumber => write!(f, "the body ends early (inside a number)"),
            Bad::LongNumber => write!(f, "a number does not fit in 64 bits"),
            Bad::Boolean => write!(f, "a boolean is neither 0 nor 1"),
            Bad::IntRange => write!(f, "an int is out of range"),
            Bad::MillisRange => write!(f, "a timestamp-millis is out of range in microseconds"),
            Bad::NegativeLength(n) => write!(f, "negative length {n}"),
            Bad::Utf8 => write!(f, "a string is not valid UTF-8"),
            Bad::Enum(i) => write!(f, "enum index {i} is out of range"),
            Bad::Branch(i) => write!(f, "union branch {i} does not exist"),
            Bad::BlockCount => write!(f, "bad block count"),
            Bad::NegativeBlockSize(n) => write!(f, "negative block size {n}"),
            Bad::Block => write!(f, "a block holds more items than the body has bytes"),
            Bad::Unsure => write!(f, "undecided"),
        }
    }
}

impl Shape {
    /// Compiles an Avro schema (JSON). `None` for a schema the check does not understand (or a
    /// recursive one): the decoder then checks that writer's records alone.
    pub fn parse(schema: &str) -> Option<Shape> {
        let json: Value = serde_json::from_str(schema).ok()?;
        let mut c = Compiler {
            programs: vec![Vec::new()],
            names: HashMap::new(),
            expanding: Vec::new(),
        };
        c.emit(0, &json, "")?;
        let min_size = c.programs.iter().map(|p| min_size(p)).collect();
        Some(Shape {
            programs: c.programs,
            min_size,
        })
    }

    /// Checks that `body` (the Avro bytes after the wire-format header) is exactly one value.
    pub fn check(&self, body: &[u8]) -> Verdict {
        let mut buf = body;
        match self.run(0, &mut buf) {
            Ok(()) if buf.is_empty() => Verdict::Fits,
            Ok(()) => Verdict::Bad(format!(
                "bytes follow the Avro body of the record ({} of {} bytes read)",
                body.len() - buf.len(),
                body.len()
            )),
            Err(Bad::Unsure) => Verdict::Unsure,
            Err(why) => Verdict::Bad(why.to_string()),
        }
    }

    /// Runs program `p` once over the front of `buf`.
    fn run(&self, p: usize, buf: &mut &[u8]) -> Result<(), Bad> {
        for op in &self.programs[p] {
            match op {
                Op::Skip(n) => {
                    take(buf, *n)?;
                }
                Op::Boolean => match take(buf, 1)? {
                    [0 | 1] => {}
                    _ => return Err(Bad::Boolean),
                },
                Op::Int => {
                    if i32::try_from(varint(buf)?).is_err() {
                        return Err(Bad::IntRange);
                    }
                }
                Op::Long => {
                    varint(buf)?;
                }
                Op::Millis => {
                    millis_as_micros(varint(buf)?)?;
                }
                Op::Bytes => {
                    let n = length(buf)?;
                    take(buf, n)?;
                }
                Op::String => {
                    let n = length(buf)?;
                    if !utf8(take(buf, n)?) {
                        return Err(Bad::Utf8);
                    }
                }
                Op::Enum(symbols) => {
                    let i = varint(buf)?;
                    if i < 0 || i as u64 >= *symbols {
                        return Err(Bad::Enum(i));
                    }
                }
                Op::Array(items) => self.blocks(*items, false, buf)?,
                Op::Map(values) => self.blocks(*values, true, buf)?,
                Op::Union(branches) => {
                    let i = varint(buf)?;
                    let Some(&branch) = usize::try_from(i).ok().and_then(|i| branches.get(i))
                    else {
                        return Err(Bad::Branch(i));
                    };
                    self.run(branch, buf)?;
                }
            }
        }
        Ok(())
    }

    /// Array or map blocks of program `p` (maps: each item after a string key).
    fn blocks(&self, p: usize, map: bool, buf: &mut &[u8]) -> Result<(), Bad> {
        loop {
            let count = block_items(buf)?;
            if count == 0 {
                return Ok(());
            }
            let per_item = self.min_size[p] + usize::from(map);
            if per_item == 0 {
                return Err(Bad::Unsure);
            }
            if (count as u64).saturating_mul(per_item as u64) > buf.len() as u64 {
                return Err(Bad::Block);
            }
            for _ in 0..count {
                if map {
                    let n = length(buf)?;
                    if !utf8(take(buf, n)?) {
                        return Err(Bad::Utf8);
                    }
                }
                self.run(p, buf)?;
            }
        }
    }
}

/// Valid UTF-8, with a fast path for ASCII (most strings).
#[inline]
pub(super) fn utf8(b: &[u8]) -> bool {
    b.is_ascii() || std::str::from_utf8(b).is_ok()
}

#[inline(always)]
pub(super) fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], Bad> {
    if buf.len() < n {
        return Err(Bad::Short {
            needed: n,
            left: buf.len(),
        });
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// A zig-zag varint (Avro int and long).
#[inline(always)]
pub(super) fn varint(buf: &mut &[u8]) -> Result<i64, Bad> {
    // Most are one byte: union branches, lengths, counts, small numbers.
    if let Some((&b, rest)) = buf.split_first()
        && b & 0x80 == 0
    {
        *buf = rest;
        let v = u64::from(b);
        return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
    }
    varint_long(buf)
}

/// [`varint`] of more than one byte.
#[inline(never)]
fn varint_long(buf: &mut &[u8]) -> Result<i64, Bad> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(Bad::EndsInNumber);
        };
        // The tenth byte holds bit 63 alone: anything more does not fit (arrow-avro refuses
        // it too; taking it would drop the high bits).
        if i == 9 && b > 1 {
            return Err(Bad::LongNumber);
        }
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    Err(Bad::LongNumber)
}

/// The item count of the next array or map block (0: the last block was read). A negative
/// count is followed by the block's size in bytes, which is skipped (but cannot be negative,
/// for arrow-avro).
#[inline]
pub(super) fn block_items(buf: &mut &[u8]) -> Result<i64, Bad> {
    let count = varint(buf)?;
    if count >= 0 {
        return Ok(count);
    }
    let count = count.checked_neg().ok_or(Bad::BlockCount)?;
    let size = varint(buf)?;
    if size < 0 {
        return Err(Bad::NegativeBlockSize(size));
    }
    Ok(count)
}

/// A timestamp-millis value in microseconds, bronze's unit (the general path would cast an
/// overflowing one to null, or fail the batch if the column is not nullable).
#[inline(always)]
pub(super) fn millis_as_micros(ms: i64) -> Result<i64, Bad> {
    ms.checked_mul(1000).ok_or(Bad::MillisRange)
}

/// A length prefix (bytes, string): a non-negative long.
#[inline(always)]
pub(super) fn length(buf: &mut &[u8]) -> Result<usize, Bad> {
    let n = varint(buf)?;
    usize::try_from(n).map_err(|_| Bad::NegativeLength(n))
}

/// The fewest bytes one run of `program` takes.
fn min_size(program: &[Op]) -> usize {
    program
        .iter()
        .map(|op| match op {
            Op::Skip(n) => *n,
            _ => 1,
        })
        .fold(0usize, usize::saturating_add)
}

struct Compiler<'j> {
    programs: Vec<Vec<Op>>,
    /// Full name of each named type → its definition and namespace.
    names: HashMap<String, (&'j Value, String)>,
    /// Named records being inlined (a reference back to one of them: a recursive schema).
    expanding: Vec<String>,
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

impl<'j> Compiler<'j> {
    /// A new program holding one value of `v`.
    fn program(&mut self, v: &'j Value, namespace: &str) -> Option<usize> {
        let p = self.programs.len();
        self.programs.push(Vec::new());
        self.emit(p, v, namespace)?;
        Some(p)
    }

    /// Appends to program `p` the steps of one value of `v`.
    fn emit(&mut self, p: usize, v: &'j Value, namespace: &str) -> Option<()> {
        match v {
            Value::String(name) => self.emit_named(p, name, namespace),
            Value::Array(branches) => {
                let mut ids = Vec::with_capacity(branches.len());
                for b in branches {
                    ids.push(self.program(b, namespace)?);
                }
                self.programs[p].push(Op::Union(ids.into()));
                Some(())
            }
            Value::Object(o) => {
                let ty = o.get("type")?;
                let Some(ty) = ty.as_str() else {
                    // {"type": {...}} or {"type": [...]}: the inner schema.
                    return self.emit(p, ty, namespace);
                };
                let ns = o
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(namespace);
                let name = o.get("name").and_then(Value::as_str);
                if let Some(name) = name
                    && matches!(ty, "record" | "error" | "enum" | "fixed")
                {
                    let full = full_name(name, ns);
                    let inner = full.rsplit_once('.').map_or("", |(ns, _)| ns).to_string();
                    self.names.insert(full, (v, inner));
                }
                match ty {
                    "record" | "error" => {
                        let full = full_name(name?, ns);
                        let inner = full.rsplit_once('.').map_or("", |(ns, _)| ns).to_string();
                        self.expanding.push(full);
                        for f in o.get("fields")?.as_array()? {
                            self.emit(p, f.get("type")?, &inner)?;
                        }
                        self.expanding.pop();
                    }
                    "enum" => {
                        let n = o.get("symbols")?.as_array()?.len() as u64;
                        self.programs[p].push(Op::Enum(n));
                    }
                    "fixed" => {
                        let n = usize::try_from(o.get("size")?.as_u64()?).ok()?;
                        self.programs[p].push(Op::Skip(n));
                    }
                    "array" => {
                        let items = self.program(o.get("items")?, ns)?;
                        self.programs[p].push(Op::Array(items));
                    }
                    "map" => {
                        let values = self.program(o.get("values")?, ns)?;
                        self.programs[p].push(Op::Map(values));
                    }
                    "long"
                        if matches!(
                            o.get("logicalType").and_then(Value::as_str),
                            Some("timestamp-millis" | "local-timestamp-millis")
                        ) =>
                    {
                        self.programs[p].push(Op::Millis);
                    }
                    // A primitive, perhaps with a logical type: the bytes follow the primitive.
                    other => self.emit_named(p, other, ns)?,
                }
                Some(())
            }
            _ => None,
        }
    }

    fn emit_named(&mut self, p: usize, name: &str, namespace: &str) -> Option<()> {
        let op = match name {
            "null" => return Some(()),
            "boolean" => Op::Boolean,
            "int" => Op::Int,
            "long" => Op::Long,
            "float" => Op::Skip(4),
            "double" => Op::Skip(8),
            "bytes" => Op::Bytes,
            "string" => Op::String,
            _ => {
                let full = full_name(name, namespace);
                let (def, key) = match self.names.get(&full) {
                    Some((def, _)) => (*def, full),
                    None => (self.names.get(name)?.0, name.to_string()),
                };
                if self.expanding.contains(&key) {
                    return None; // recursive
                }
                // The definition's own namespace applies inside it.
                let ns = self.names[&key].1.clone();
                return self.emit(p, def, &ns);
            }
        };
        self.programs[p].push(op);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::encode::encode;
    use crate::contracts::generate::{SchemaVersion, order};
    use crate::contracts::schema::{ParsedSchema, builtin};

    fn body(text: &str, version: SchemaVersion, n: u64) -> Vec<u8> {
        let parsed = ParsedSchema::parse(text).unwrap();
        let mut out = Vec::new();
        encode(
            &parsed.model,
            &order(3, n, version, 1_763_900_000_000),
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn real_orders_fit_and_damaged_ones_do_not() {
        for (text, v) in [
            (builtin::ORDERS_V1, SchemaVersion::V1),
            (builtin::ORDERS_V2, SchemaVersion::V2),
        ] {
            let shape = Shape::parse(text).unwrap();
            for n in 0..200 {
                let b = body(text, v, n);
                assert_eq!(shape.check(&b), Verdict::Fits, "order {n}");
                // Every cut is caught, and so is anything appended.
                for cut in 0..b.len() {
                    assert!(
                        matches!(shape.check(&b[..cut]), Verdict::Bad(_)),
                        "cut {cut}"
                    );
                }
                let mut longer = b.clone();
                longer.push(0);
                assert!(matches!(shape.check(&longer), Verdict::Bad(_)));
            }
        }
    }

    #[test]
    fn every_kind_of_schema_is_checked() {
        let text = r#"{"type": "record", "name": "R", "namespace": "x", "fields": [
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
            {"name": "f", "type": {"type": "fixed", "name": "F", "size": 2}},
            {"name": "m", "type": {"type": "map", "values": "long"}},
            {"name": "again", "type": "E"},
            {"name": "u", "type": ["null", "x.F", "boolean"]},
            {"name": "d", "type": {"type": "int", "logicalType": "date"}},
            {"name": "fl", "type": "float"}
        ]}"#;
        let shape = Shape::parse(text).unwrap();
        // e=1, f="ab", m={"k": 5} as one negative-count block, again=0, u=branch 2 true, d=-1,
        // fl=4 bytes.
        let good = [2, b'a', b'b', 1, 8, 2, b'k', 10, 0, 0, 4, 1, 1, 0, 0, 0, 0];
        assert_eq!(shape.check(&good), Verdict::Fits);
        let mut enum_out_of_range = good;
        enum_out_of_range[0] = 4;
        assert!(matches!(shape.check(&enum_out_of_range), Verdict::Bad(_)));
        let mut no_such_branch = good;
        no_such_branch[10] = 6;
        assert!(matches!(shape.check(&no_such_branch), Verdict::Bad(_)));
        let mut not_bool = good;
        not_bool[11] = 2;
        assert!(matches!(shape.check(&not_bool), Verdict::Bad(_)));
        // A map key that is not UTF-8.
        let mut key = good;
        key[6] = 0xff;
        assert!(matches!(shape.check(&key), Verdict::Bad(_)));
    }

    #[test]
    fn recursive_and_odd_schemas() {
        // A recursive schema cannot be flattened: no check, the decoder decides alone.
        let list = r#"{"type": "record", "name": "Node", "fields": [
            {"name": "v", "type": "long"},
            {"name": "next", "type": ["null", "Node"]}
        ]}"#;
        assert!(Shape::parse(list).is_none());
        // A named type used twice is not recursion.
        let twice = r#"{"type": "record", "name": "P", "fields": [
            {"name": "a", "type": {"type": "record", "name": "Pt", "fields": [
                {"name": "x", "type": "int"}]}},
            {"name": "b", "type": "Pt"}
        ]}"#;
        let shape = Shape::parse(twice).unwrap();
        assert_eq!(shape.check(&[2, 4]), Verdict::Fits);
        assert!(matches!(shape.check(&[2]), Verdict::Bad(_)));
        // Arrays of nulls can be huge for few bytes: left to the decoder.
        let nulls = Shape::parse(r#"{"type": "array", "items": "null"}"#).unwrap();
        assert_eq!(
            nulls.check(&[0x80, 0x80, 0x80, 0x80, 0x10, 0]),
            Verdict::Unsure
        );
        // A reference to an unknown name: no shape, the decoder decides alone.
        assert!(Shape::parse(r#"{"type": "array", "items": "Nope"}"#).is_none());
    }
}
