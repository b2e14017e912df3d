//! What business rules see of a decoded row, and the hook through which the decoder asks them.
//!
//! The one-pass decoder judges each row right after decoding it, while its values are still in
//! cache, and drops a refused row the way it drops a body that fails half way (by truncating its
//! buffers): refused rows never reach a bronze batch, so nothing is filtered out afterwards.
//! The general path judges the rows of its batch through [`BatchRow`] instead, so both paths
//! give a rule the same values.

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampMicrosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

/// One value of a row, as a rule sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(&'a str),
    Bin(&'a [u8]),
    /// Any integer column.
    Int(i64),
    /// Any float column.
    Float(f64),
    Bool(bool),
    /// A timestamp, µs since the epoch (UTC).
    Micros(i64),
    /// A date, days since the epoch.
    Date(i32),
    /// A list, by its length.
    List(usize),
    /// A type rules cannot read (a struct, a map…).
    Other,
}

/// One row of a table's schema, column by column (the bronze decoder's rows, or a
/// `RecordBatch`'s through [`BatchRow`]).
pub trait Row {
    fn cell(&self, column: usize) -> Cell<'_>;
}

/// Why a row was refused: which rule (an index the judge defines) and the value it found,
/// written out for the DLQ.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub rule: usize,
    pub found: String,
}

/// Business rules the decoder applies to every row it decodes.
pub trait RowJudge {
    /// The first rule `row` breaks, or `None` when it passes them all.
    fn judge(&self, row: &dyn Row) -> Option<Refusal>;
}

/// A row of a `RecordBatch`.
pub struct BatchRow<'a> {
    pub batch: &'a RecordBatch,
    pub row: usize,
}

impl Row for BatchRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(a) = self.batch.columns().get(column) else {
            return Cell::Null;
        };
        let i = self.row;
        if a.is_null(i) {
            return Cell::Null;
        }
        match a.data_type() {
            DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i)),
            DataType::LargeUtf8 => Cell::Str(a.as_string::<i64>().value(i)),
            DataType::Utf8View => Cell::Str(a.as_string_view().value(i)),
            DataType::Binary => Cell::Bin(a.as_binary::<i32>().value(i)),
            DataType::LargeBinary => Cell::Bin(a.as_binary::<i64>().value(i)),
            DataType::BinaryView => Cell::Bin(a.as_binary_view().value(i)),
            DataType::Int8 => Cell::Int(a.as_primitive::<Int8Type>().value(i).into()),
            DataType::Int16 => Cell::Int(a.as_primitive::<Int16Type>().value(i).into()),
            DataType::Int32 => Cell::Int(a.as_primitive::<Int32Type>().value(i).into()),
            DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(i)),
            DataType::UInt8 => Cell::Int(a.as_primitive::<UInt8Type>().value(i).into()),
            DataType::UInt16 => Cell::Int(a.as_primitive::<UInt16Type>().value(i).into()),
            DataType::UInt32 => Cell::Int(a.as_primitive::<UInt32Type>().value(i).into()),
            // Beyond i64 a rule could not compare it the way Polars does: not for rules.
            DataType::UInt64 => i64::try_from(a.as_primitive::<UInt64Type>().value(i))
                .map_or(Cell::Other, Cell::Int),
            DataType::Float32 => Cell::Float(a.as_primitive::<Float32Type>().value(i).into()),
            DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
            DataType::Boolean => Cell::Bool(a.as_boolean().value(i)),
            DataType::Date32 => Cell::Date(a.as_primitive::<Date32Type>().value(i)),
            // Bronze stores µs (Delta's unit); a rule compares other units in their own.
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Cell::Micros(a.as_primitive::<TimestampMicrosecondType>().value(i))
            }
            DataType::List(_) => Cell::List(a.as_list::<i32>().value_length(i) as usize),
            DataType::LargeList(_) => Cell::List(a.as_list::<i64>().value_length(i) as usize),
            _ => Cell::Other,
        }
    }
}
