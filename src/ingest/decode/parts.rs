//! The one-pass decoder's rows of one call, split by `event_date` as they are decoded, and the
//! view of a just-decoded row that the judge reads.
//!
//! Every body is decoded into the main part, whose date is that of its first row (in a live
//! ingest nearly every row of a batch has it). A row of another date moves to that date's part
//! (one copy of one row), so a batch leaves the decoder already split into one part per file
//! and nothing has to be filtered by date later.

use deltalake::arrow::datatypes::SchemaRef;

use super::direct::Rows;
use super::run::kafka_micros;
use super::{KafkaRecord, MICROS_PER_DAY};
use crate::contracts::wire::SchemaId;
use crate::quality::{Cell, Row};

/// Rows of one `event_date` (`None`: no event time) and the input index of each.
pub(super) struct DatePart {
    pub date: Option<i32>,
    pub rows: Rows,
    pub records: Vec<usize>,
}

/// The parts of one call; the first is the main part.
pub(super) struct DateParts {
    payload: SchemaRef,
    /// Rows the main part is sized for (the call's record count).
    capacity: usize,
    parts: Vec<DatePart>,
    /// Whether the main part's date is settled (by its first kept row).
    dated: bool,
}

/// Rows a part of a secondary date starts with room for.
const OTHER_DATE_ROWS: usize = 256;

impl DateParts {
    pub fn new(payload: &SchemaRef, capacity: usize) -> DateParts {
        DateParts {
            payload: payload.clone(),
            capacity,
            parts: Vec::new(),
            dated: false,
        }
    }

    /// The main part's rows, where the next body is decoded.
    pub fn main(&mut self) -> &mut Rows {
        if self.parts.is_empty() {
            self.parts.push(DatePart {
                date: None,
                rows: Rows::new(&self.payload, self.capacity),
                records: Vec::new(),
            });
        }
        &mut self.parts[0].rows
    }

    /// Keeps the main part's last row, that of record `index`: in the main part when it has
    /// the main part's date or when rows are not `route`d, else in the part of its `date`.
    pub fn keep_last(&mut self, index: usize, route: bool, date: Option<i32>) {
        let main = &mut self.parts[0];
        if !route || !self.dated || main.date == date {
            if route && !self.dated {
                main.date = date;
                self.dated = true;
            }
            main.records.push(index);
            return;
        }
        let k = match self.parts[1..].iter().position(|p| p.date == date) {
            Some(k) => k + 1,
            None => {
                self.parts.push(DatePart {
                    date,
                    rows: Rows::new(&self.payload, OTHER_DATE_ROWS),
                    records: Vec::new(),
                });
                self.parts.len() - 1
            }
        };
        let (main, others) = self.parts.split_at_mut(1);
        let part = &mut others[k - 1];
        main[0].rows.move_last_to(&mut part.rows);
        part.records.push(index);
        // The main part started with a row of a minority date (a late event first in the
        // batch): the majority date becomes the main part, so its rows stop being moved.
        if part.records.len() > main[0].records.len() {
            self.parts.swap(0, k);
        }
    }

    /// The parts that hold rows.
    pub fn into_parts(self) -> Vec<DatePart> {
        self.parts
            .into_iter()
            .filter(|p| !p.records.is_empty())
            .collect()
    }
}

/// The last row of a [`Rows`] with its record's metadata: a row of the bronze schema. The
/// metadata columns follow the payload in `metadata_fields` order, with the values the batch
/// assembly (`run::Run::bronze_batch`) gives them.
pub(super) struct DirectRow<'a> {
    pub rows: &'a Rows,
    pub record: &'a KafkaRecord<'a>,
    pub schema_id: SchemaId,
    pub ingested_at_us: i64,
    /// The payload column of the event time.
    pub event_time: Option<usize>,
}

impl DirectRow<'_> {
    /// The row's `event_date`: its event time's day (UTC), if it has one.
    pub fn event_date(&self) -> Option<i32> {
        match self.rows.cell(self.event_time?) {
            Cell::Micros(us) | Cell::Int(us) => Some(us.div_euclid(MICROS_PER_DAY) as i32),
            _ => None,
        }
    }
}

impl Row for DirectRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let width = self.rows.width();
        if column < width {
            return self.rows.cell(column);
        }
        let r = self.record;
        match column - width {
            0 => Cell::Str(r.topic),
            1 => Cell::Int(r.partition.into()),
            2 => Cell::Int(r.offset),
            3 => r.key.map_or(Cell::Null, Cell::Bin),
            4 => kafka_micros(r.timestamp_ms).map_or(Cell::Null, Cell::Micros),
            5 => Cell::Int(self.schema_id.into()),
            6 => Cell::Micros(self.ingested_at_us),
            7 => self.event_date().map_or(Cell::Null, Cell::Date),
            _ => Cell::Null,
        }
    }
}
