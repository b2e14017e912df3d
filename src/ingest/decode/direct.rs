//! A one-pass Avro → Arrow decoder for the plain record schemas the event contracts use: it
//! checks and decodes a body in the same walk, straight into column buffers.
//!
//! The general path ([`super::BronzeDecoder`] with arrow-avro) reads every body twice: first
//! the structural check ([`super::shape`]), because arrow-avro's builders cannot drop half a
//! row, then arrow-avro itself, whose builders grow by reallocation and whose timestamps are
//! cast afterwards. Here a body that fails half way is dropped by truncating the buffers back to
//! the last whole row, so each body is read once; that was about half of ingest's decode time.
//!
//! It covers a writer schema whose fields are the reader schema's first fields, same names and
//! types, the reader's remaining fields having defaults (v1 orders read as v2), with types:
//! string, int, long, float, double, boolean, timestamp-millis/-micros longs, `["null", T]`
//! unions of those, and arrays of records of those. Anything else (enums, maps, nested records,
//! named type references, reordered or promoted fields, arrays of records without fields) gets
//! `None` and goes the general way; tests (`direct_props`) hold both paths to the same output.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, ListArray,
    StringArray, StructArray, TimestampMicrosecondArray,
};
use deltalake::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use deltalake::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use serde_json::Value;

use super::shape::{Bad, block_items, length, millis_as_micros, take, utf8, varint};
use crate::quality::Cell;

/// A value's type, as far as this decoder goes.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Str,
    Int,
    Long,
    Float,
    Double,
    Bool,
    /// A timestamp-millis long, stored as microseconds (Delta's unit).
    TsMillis,
    /// A timestamp-micros long.
    TsMicros,
    /// A two-branch union with `null`; `null_branch` is the index meaning null.
    Opt {
        null_branch: i64,
        inner: Box<Kind>,
    },
    /// An array of records whose fields are flat kinds.
    Records(Vec<(String, Kind)>),
}

impl Kind {
    /// Parses an Avro type; `None` for what this decoder does not cover.
    fn parse(v: &Value) -> Option<Kind> {
        match v {
            Value::String(s) => Kind::primitive(s),
            Value::Array(branches) if branches.len() == 2 => {
                let null_branch = branches.iter().position(|b| b == "null")?;
                let inner = Kind::parse(&branches[1 - null_branch])?;
                if !inner.is_flat() {
                    return None;
                }
                Some(Kind::Opt {
                    null_branch: null_branch as i64,
                    inner: Box::new(inner),
                })
            }
            Value::Object(o) => {
                let ty = o.get("type")?;
                let Some(ty) = ty.as_str() else {
                    return Kind::parse(ty);
                };
                match (ty, o.get("logicalType").and_then(Value::as_str)) {
                    ("long", Some("timestamp-millis")) => Some(Kind::TsMillis),
                    ("long", Some("timestamp-micros")) => Some(Kind::TsMicros),
                    (_, Some(_)) => None,
                    ("array", None) => {
                        let item = o.get("items")?.as_object()?;
                        if item.get("type")?.as_str()? != "record" {
                            return None;
                        }
                        let mut fields = Vec::new();
                        for f in item.get("fields")?.as_array()? {
                            let kind = Kind::parse(f.get("type")?)?;
                            if !kind.is_flat() {
                                return None;
                            }
                            fields.push((f.get("name")?.as_str()?.to_string(), kind));
                        }
                        // Records without fields take no bytes (the item count is all there
                        // is) and make a struct array without children, which needs its
                        // length given: left to arrow-avro.
                        if fields.is_empty() {
                            return None;
                        }
                        Some(Kind::Records(fields))
                    }
                    (p, None) => Kind::primitive(p),
                }
            }
            _ => None,
        }
    }

    fn primitive(name: &str) -> Option<Kind> {
        Some(match name {
            "string" => Kind::Str,
            "int" => Kind::Int,
            "long" => Kind::Long,
            "float" => Kind::Float,
            "double" => Kind::Double,
            "boolean" => Kind::Bool,
            _ => return None,
        })
    }

    /// Neither a union nor an array: one column of its own.
    fn is_flat(&self) -> bool {
        !matches!(self, Kind::Opt { .. } | Kind::Records(_))
    }

    /// Whether a column of Arrow type `dt` (nullable or not) holds this kind.
    fn fits(&self, dt: &DataType, nullable: bool) -> bool {
        match (self, dt) {
            (Kind::Opt { inner, .. }, _) => nullable && inner.fits(dt, nullable),
            (Kind::Str, DataType::Utf8)
            | (Kind::Int, DataType::Int32)
            | (Kind::Long, DataType::Int64)
            | (Kind::Float, DataType::Float32)
            | (Kind::Double, DataType::Float64)
            | (Kind::Bool, DataType::Boolean) => true,
            (Kind::TsMillis | Kind::TsMicros, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
                true
            }
            (Kind::Records(fields), DataType::List(item)) => match item.data_type() {
                DataType::Struct(children) => {
                    children.len() == fields.len()
                        && children.iter().zip(fields).all(|(c, (name, kind))| {
                            c.name() == name && kind.fits(c.data_type(), c.is_nullable())
                        })
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// What a reader field the writer lacks takes.
#[derive(Debug, Clone)]
enum Default {
    Null,
    Str(String),
    Long(i64),
    Double(f64),
    Bool(bool),
}

impl Default {
    fn parse(kind: &Kind, v: &Value) -> Option<Default> {
        Some(match (kind, v) {
            (Kind::Opt { null_branch: 0, .. }, Value::Null) => Default::Null,
            (Kind::Str, Value::String(s)) => Default::Str(s.clone()),
            (Kind::Int | Kind::Long | Kind::TsMicros, Value::Number(n)) => {
                Default::Long(n.as_i64()?)
            }
            // The default is in milliseconds, the column in microseconds.
            (Kind::TsMillis, Value::Number(n)) => Default::Long(n.as_i64()?.checked_mul(1000)?),
            (Kind::Float | Kind::Double, Value::Number(n)) => Default::Double(n.as_f64()?),
            (Kind::Bool, Value::Bool(b)) => Default::Bool(*b),
            _ => return None,
        })
    }
}

/// A non-union, non-array kind: what one buffer push reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prim {
    Str,
    Int,
    Long,
    /// A timestamp-millis long, stored as microseconds.
    TsMillis,
    Float,
    Double,
    Bool,
}

impl Kind {
    /// The primitive a flat kind reads.
    fn prim(&self) -> Prim {
        match self {
            Kind::Str => Prim::Str,
            Kind::Int => Prim::Int,
            Kind::Long | Kind::TsMicros => Prim::Long,
            Kind::TsMillis => Prim::TsMillis,
            Kind::Float => Prim::Float,
            Kind::Double => Prim::Double,
            Kind::Bool => Prim::Bool,
            Kind::Opt { .. } | Kind::Records(_) => unreachable!("not a flat kind"),
        }
    }

    /// What decoding a value of this kind does, resolved once per writer schema so the
    /// per-value work is one dispatch and no calls.
    fn op(&self) -> Op {
        match self {
            Kind::Opt { null_branch, inner } => Op::Opt {
                prim: inner.prim(),
                null_branch: *null_branch,
            },
            Kind::Records(fields) => Op::Items(fields.iter().map(|(_, k)| k.prim()).collect()),
            k => Op::Val(k.prim()),
        }
    }
}

/// One top-level field of the reader schema: how its column gets its value.
#[derive(Debug, Clone)]
enum Op {
    Val(Prim),
    /// A two-branch union with `null`; `null_branch` is the index meaning null.
    Opt {
        prim: Prim,
        null_branch: i64,
    },
    /// An array of records whose fields are these primitives.
    Items(Box<[Prim]>),
    /// A field the writer lacks.
    Default(Default),
}

/// A writer schema compiled against the reader schema.
#[derive(Debug, Clone)]
pub(super) struct Direct {
    ops: Vec<Op>,
}

/// The fields of a record schema: (name, type, default).
fn record_fields(v: &Value) -> Option<Vec<(&str, &Value, Option<&Value>)>> {
    let o = v.as_object()?;
    if o.get("type")?.as_str()? != "record" {
        return None;
    }
    o.get("fields")?
        .as_array()?
        .iter()
        .map(|f| Some((f.get("name")?.as_str()?, f.get("type")?, f.get("default"))))
        .collect()
}

impl Direct {
    /// Compiles `writer` (Avro JSON) for rows of `reader` whose Arrow columns are `payload`;
    /// `None` when the pair is outside what this decoder covers.
    pub fn new(writer: &str, reader: &str, payload: &SchemaRef) -> Option<Direct> {
        let writer: Value = serde_json::from_str(writer).ok()?;
        let reader: Value = serde_json::from_str(reader).ok()?;
        let (w, r) = (record_fields(&writer)?, record_fields(&reader)?);
        if w.len() > r.len() || r.len() != payload.fields().len() {
            return None;
        }
        let mut ops = Vec::with_capacity(r.len());
        for (i, ((name, ty, default), field)) in r.iter().zip(payload.fields()).enumerate() {
            let kind = Kind::parse(ty)?;
            if field.name() != name || !kind.fits(field.data_type(), field.is_nullable()) {
                return None;
            }
            ops.push(match w.get(i) {
                Some((w_name, w_ty, _)) => {
                    if w_name != name || Kind::parse(w_ty)? != kind {
                        return None;
                    }
                    kind.op()
                }
                None => Op::Default(Default::parse(&kind, default.as_ref()?)?),
            });
        }
        Some(Direct { ops })
    }

    /// Decodes one body (after the wire header) as a row of `rows`. A body that is not exactly
    /// one value leaves `rows` as it was and says why.
    pub fn decode(&self, body: &[u8], rows: &mut Rows) -> Result<(), String> {
        let mut buf = body;
        let outcome = match self.run(&mut rows.cols, &mut buf) {
            Err(why) => Err(why.to_string()),
            Ok(()) if !buf.is_empty() => Err(format!(
                "bytes follow the Avro body of the record ({} of {} bytes read)",
                body.len() - buf.len(),
                body.len()
            )),
            Ok(()) => {
                rows.len += 1;
                return Ok(());
            }
        };
        rows.truncate();
        outcome
    }

    /// Reads one value per column from the front of `buf`.
    fn run(&self, cols: &mut [Col], buf: &mut &[u8]) -> Result<(), Bad> {
        for (op, col) in self.ops.iter().zip(cols) {
            match op {
                Op::Val(p) => {
                    col.prim(*p, buf)?;
                    col.valid(true);
                }
                Op::Opt { prim, null_branch } => {
                    let branch = varint(buf)?;
                    if branch == *null_branch {
                        col.zero();
                        col.valid(false);
                    } else if branch == 1 - null_branch {
                        col.prim(*prim, buf)?;
                        col.valid(true);
                    } else {
                        return Err(Bad::Branch(branch));
                    }
                }
                Op::Items(fields) => {
                    col.items(fields, buf)?;
                    col.valid(true);
                }
                Op::Default(d) => col.default(d),
            }
        }
        Ok(())
    }
}

/// Rows decoded so far: one buffer per reader field.
pub(super) struct Rows {
    cols: Vec<Col>,
    len: usize,
    payload: SchemaRef,
}

impl Rows {
    /// Buffers for `payload` columns, with room for `rows` rows (growing them row by row cost
    /// a copy of every buffer at each doubling).
    pub fn new(payload: &SchemaRef, rows: usize) -> Rows {
        Rows {
            cols: payload
                .fields()
                .iter()
                .map(|f| Col::for_type(f.data_type(), f.is_nullable(), rows))
                .collect(),
            len: 0,
            payload: payload.clone(),
        }
    }

    /// The number of payload columns.
    pub fn width(&self) -> usize {
        self.cols.len()
    }

    /// A payload column's value in the last row.
    pub fn cell(&self, column: usize) -> Cell<'_> {
        match (self.cols.get(column), self.len.checked_sub(1)) {
            (Some(c), Some(row)) => c.cell(row),
            _ => Cell::Null,
        }
    }

    /// Drops the last row (refused by the rules).
    pub fn drop_last(&mut self) {
        self.len = self.len.saturating_sub(1);
        self.truncate();
    }

    /// Moves the last row to the end of `to` (buffers of the same payload schema).
    pub fn move_last_to(&mut self, to: &mut Rows) {
        let Some(row) = self.len.checked_sub(1) else {
            return;
        };
        for (from, into) in self.cols.iter().zip(to.cols.iter_mut()) {
            into.push_from(from, row);
        }
        to.len += 1;
        self.drop_last();
    }

    /// Drops whatever a failed body appended after the last whole row.
    fn truncate(&mut self) {
        for c in &mut self.cols {
            c.truncate(self.len);
        }
    }

    /// The payload columns, typed as `payload`.
    pub fn finish(self) -> Vec<ArrayRef> {
        self.cols
            .into_iter()
            .zip(self.payload.fields())
            .map(|(c, f)| c.finish(f.data_type()))
            .collect()
    }
}

/// One column's buffers. `nulls` exists for nullable columns; a null slot holds a zero value.
struct Col {
    data: Data,
    nulls: Option<Vec<bool>>,
    /// A timestamp column (its `I64` values are µs).
    time: bool,
}

enum Data {
    Str { offsets: Vec<i32>, bytes: Vec<u8> },
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    List { offsets: Vec<i32>, items: Vec<Col> },
}

impl Col {
    /// Buffers for an Arrow type [`Kind::fits`] accepted.
    /// Buffers for an Arrow type [`Kind::fits`] accepted, with room for `n` values (strings:
    /// `STRING_BYTES` bytes each; lists: `LIST_ITEMS` items each).
    fn for_type(dt: &DataType, nullable: bool, n: usize) -> Col {
        const STRING_BYTES: usize = 16;
        const LIST_ITEMS: usize = 4;
        let offsets = || {
            let mut o = Vec::with_capacity(n + 1);
            o.push(0);
            o
        };
        let data = match dt {
            DataType::Utf8 => Data::Str {
                offsets: offsets(),
                bytes: Vec::with_capacity(n * STRING_BYTES),
            },
            DataType::Int32 => Data::I32(Vec::with_capacity(n)),
            DataType::Float32 => Data::F32(Vec::with_capacity(n)),
            DataType::Float64 => Data::F64(Vec::with_capacity(n)),
            DataType::Boolean => Data::Bool(Vec::with_capacity(n)),
            DataType::List(item) => Data::List {
                offsets: offsets(),
                items: match item.data_type() {
                    DataType::Struct(fs) => fs
                        .iter()
                        .map(|f| Col::for_type(f.data_type(), f.is_nullable(), n * LIST_ITEMS))
                        .collect(),
                    _ => Vec::new(),
                },
            },
            // Int64 and timestamps.
            _ => Data::I64(Vec::with_capacity(n)),
        };
        Col {
            data,
            nulls: nullable.then(|| Vec::with_capacity(n)),
            time: matches!(dt, DataType::Timestamp(..)),
        }
    }

    #[inline(always)]
    fn valid(&mut self, v: bool) {
        if let Some(n) = &mut self.nulls {
            n.push(v);
        }
    }

    /// Reads one primitive value (validity is the caller's).
    #[inline(always)]
    fn prim(&mut self, p: Prim, buf: &mut &[u8]) -> Result<(), Bad> {
        match (&mut self.data, p) {
            (Data::Str { offsets, bytes }, Prim::Str) => {
                let n = length(buf)?;
                let s = take(buf, n)?;
                if !utf8(s) {
                    return Err(Bad::Utf8);
                }
                bytes.extend_from_slice(s);
                offsets.push(i32::try_from(bytes.len()).map_err(|_| Bad::Block)?);
            }
            (Data::I32(v), Prim::Int) => {
                let x = varint(buf)?;
                v.push(i32::try_from(x).map_err(|_| Bad::IntRange)?);
            }
            (Data::I64(v), Prim::Long) => v.push(varint(buf)?),
            (Data::I64(v), Prim::TsMillis) => v.push(millis_as_micros(varint(buf)?)?),
            (Data::F32(v), Prim::Float) => {
                let b = take(buf, 4)?;
                v.push(f32::from_le_bytes(b.try_into().expect("4 bytes")));
            }
            (Data::F64(v), Prim::Double) => {
                let b = take(buf, 8)?;
                v.push(f64::from_le_bytes(b.try_into().expect("8 bytes")));
            }
            (Data::Bool(v), Prim::Bool) => match take(buf, 1)? {
                [b @ (0 | 1)] => v.push(*b == 1),
                _ => return Err(Bad::Boolean),
            },
            _ => unreachable!("Direct::new pairs kinds with their columns"),
        }
        Ok(())
    }

    /// Reads an array of records whose fields are `fields` (validity is the caller's).
    fn items(&mut self, fields: &[Prim], buf: &mut &[u8]) -> Result<(), Bad> {
        let Data::List { offsets, items } = &mut self.data else {
            unreachable!("Direct::new pairs kinds with their columns")
        };
        let mut total = *offsets.last().expect("starts at 0") as usize;
        loop {
            let count = block_items(buf)?;
            if count == 0 {
                break;
            }
            // Every field takes at least one byte: a count beyond that is garbage.
            if (count as u64).saturating_mul(fields.len().max(1) as u64) > buf.len() as u64 {
                return Err(Bad::Block);
            }
            for _ in 0..count {
                for (p, col) in fields.iter().zip(items.iter_mut()) {
                    col.prim(*p, buf)?;
                    col.valid(true);
                }
            }
            total += count as usize;
        }
        offsets.push(i32::try_from(total).map_err(|_| Bad::Block)?);
        Ok(())
    }

    /// The zero value a null slot holds.
    fn zero(&mut self) {
        match &mut self.data {
            Data::Str { offsets, .. } | Data::List { offsets, .. } => {
                offsets.push(*offsets.last().expect("starts at 0"))
            }
            Data::I32(v) => v.push(0),
            Data::I64(v) => v.push(0),
            Data::F32(v) => v.push(0.0),
            Data::F64(v) => v.push(0.0),
            Data::Bool(v) => v.push(false),
        }
    }

    fn default(&mut self, d: &Default) {
        match (d, &mut self.data) {
            (Default::Null, _) => {
                self.zero();
                self.valid(false);
                return;
            }
            (Default::Str(s), Data::Str { offsets, bytes }) => {
                bytes.extend_from_slice(s.as_bytes());
                offsets.push(bytes.len() as i32);
            }
            (Default::Long(x), Data::I32(v)) => v.push(*x as i32),
            (Default::Long(x), Data::I64(v)) => v.push(*x),
            (Default::Double(x), Data::F32(v)) => v.push(*x as f32),
            (Default::Double(x), Data::F64(v)) => v.push(*x),
            (Default::Bool(b), Data::Bool(v)) => v.push(*b),
            _ => unreachable!("Default::parse pairs defaults with their kinds"),
        }
        self.valid(true);
    }

    /// Value `i`, as a rule sees it (`dt`: the column's Arrow type).
    fn cell(&self, i: usize) -> Cell<'_> {
        if self.nulls.as_ref().is_some_and(|n| !n[i]) {
            return Cell::Null;
        }
        match &self.data {
            Data::Str { offsets, bytes } => {
                let s = &bytes[offsets[i] as usize..offsets[i + 1] as usize];
                // SAFETY: every string was checked to be UTF-8 as it was read.
                Cell::Str(unsafe { std::str::from_utf8_unchecked(s) })
            }
            Data::I32(v) => Cell::Int(v[i].into()),
            Data::I64(v) if self.time => Cell::Micros(v[i]),
            Data::I64(v) => Cell::Int(v[i]),
            Data::F32(v) => Cell::Float(v[i].into()),
            Data::F64(v) => Cell::Float(v[i]),
            Data::Bool(v) => Cell::Bool(v[i]),
            Data::List { offsets, .. } => Cell::List((offsets[i + 1] - offsets[i]) as usize),
        }
    }

    /// Appends value `i` of `from` (a column of the same type).
    fn push_from(&mut self, from: &Col, i: usize) {
        if let (Some(into), Some(src)) = (&mut self.nulls, &from.nulls) {
            into.push(src[i]);
        }
        match (&mut self.data, &from.data) {
            (
                Data::Str { offsets, bytes },
                Data::Str {
                    offsets: o,
                    bytes: b,
                },
            ) => {
                bytes.extend_from_slice(&b[o[i] as usize..o[i + 1] as usize]);
                offsets.push(bytes.len() as i32);
            }
            (Data::I32(v), Data::I32(f)) => v.push(f[i]),
            (Data::I64(v), Data::I64(f)) => v.push(f[i]),
            (Data::F32(v), Data::F32(f)) => v.push(f[i]),
            (Data::F64(v), Data::F64(f)) => v.push(f[i]),
            (Data::Bool(v), Data::Bool(f)) => v.push(f[i]),
            (
                Data::List { offsets, items },
                Data::List {
                    offsets: o,
                    items: f,
                },
            ) => {
                for k in o[i] as usize..o[i + 1] as usize {
                    for (into, src) in items.iter_mut().zip(f) {
                        into.push_from(src, k);
                    }
                }
                let total = offsets.last().expect("starts at 0") + (o[i + 1] - o[i]);
                offsets.push(total);
            }
            _ => unreachable!("rows of one payload schema have the same column types"),
        }
    }

    /// Keeps the first `n` values.
    fn truncate(&mut self, n: usize) {
        if let Some(v) = &mut self.nulls {
            v.truncate(n);
        }
        match &mut self.data {
            Data::Str { offsets, bytes } => {
                offsets.truncate(n + 1);
                bytes.truncate(offsets[n] as usize);
            }
            Data::List { offsets, items } => {
                offsets.truncate(n + 1);
                let m = offsets[n] as usize;
                for c in items {
                    c.truncate(m);
                }
            }
            Data::I32(v) => v.truncate(n),
            Data::I64(v) => v.truncate(n),
            Data::F32(v) => v.truncate(n),
            Data::F64(v) => v.truncate(n),
            Data::Bool(v) => v.truncate(n),
        }
    }

    fn finish(self, dt: &DataType) -> ArrayRef {
        let nulls = self
            .nulls
            .map(NullBuffer::from)
            .filter(|n| n.null_count() > 0);
        match self.data {
            Data::Str { offsets, bytes } => {
                // SAFETY: offsets start at 0 and never decrease, the last is `bytes.len()`,
                // and every value was checked to be UTF-8 as it was read.
                Arc::new(unsafe {
                    StringArray::new_unchecked(
                        OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                        Buffer::from_vec(bytes),
                        nulls,
                    )
                })
            }
            Data::I32(v) => Arc::new(Int32Array::new(ScalarBuffer::from(v), nulls)),
            Data::I64(v) => match dt {
                DataType::Timestamp(_, tz) => Arc::new(
                    TimestampMicrosecondArray::new(ScalarBuffer::from(v), nulls)
                        .with_timezone_opt(tz.clone()),
                ),
                _ => Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls)),
            },
            Data::F32(v) => Arc::new(Float32Array::new(ScalarBuffer::from(v), nulls)),
            Data::F64(v) => Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls)),
            Data::Bool(v) => Arc::new(BooleanArray::new(BooleanBuffer::from(v), nulls)),
            Data::List { offsets, items } => {
                let DataType::List(item) = dt else {
                    unreachable!("a list column has a list type")
                };
                let DataType::Struct(fields) = item.data_type() else {
                    unreachable!("list items are records")
                };
                let children: Vec<ArrayRef> = items
                    .into_iter()
                    .zip(fields.iter())
                    .map(|(c, f)| c.finish(f.data_type()))
                    .collect();
                let values = StructArray::new(fields.clone(), children, None);
                Arc::new(ListArray::new(
                    item.clone(),
                    // SAFETY: as for strings: from 0, never decreasing, last = item count.
                    unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)) },
                    Arc::new(values),
                    nulls,
                ))
            }
        }
    }
}
