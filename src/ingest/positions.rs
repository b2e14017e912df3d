//! Where each partition resumes, from the Delta `txn` actions — the only offsets that count.
//!
//! Two tables record positions per (topic, partition): the bronze table (good rows) and
//! `bronze_dlq_audit` (bad rows). Each micro-batch commits the audit table first, then bronze,
//! so every bad record at or below bronze's position is already in the audit table: the audit
//! position is `max(audit txn, bronze txn)`. Consumption resumes after bronze's position; records
//! already in the audit table are filtered out, so a crash between the two commits neither loses
//! nor duplicates anything.

/// The explicit way past an out-of-range position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Re-read from the log start.
    Earliest,
    /// Skip to the log end.
    Latest,
}

impl std::str::FromStr for Reset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(Reset::Earliest),
            "latest" => Ok(Reset::Latest),
            other => Err(format!(
                "reset must be `earliest` or `latest`, found {other:?}"
            )),
        }
    }
}

/// The app id of a (table, topic, partition) position in a table's `txn` actions.
pub fn app_id(table: &str, topic: &str, partition: i32) -> String {
    format!("{table}:{topic}:{partition}")
}

/// One partition's committed positions (last offset included) and its log bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub bronze: Option<i64>,
    pub audit: Option<i64>,
    /// First offset still in the log.
    pub low: i64,
    /// Offset the next produced record will get (the high watermark).
    pub high: i64,
}

/// Where a partition starts, and what each table already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// First offset to fetch.
    pub start: i64,
    /// Records at or below this are already in bronze (-1: none).
    pub bronze_done: i64,
    /// Records at or below this are already in the audit table (-1: none).
    pub audit_done: i64,
    /// Set when a reset moved the position: the table positions to record before starting.
    pub reset_to: Option<i64>,
}

/// What is wrong with a stored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfRange {
    /// The next offset is past the log end: the topic was recreated or truncated.
    BeyondEnd { next: i64 },
    /// The next offset was deleted by retention before it was ingested.
    Deleted { next: i64 },
}

impl OutOfRange {
    pub fn problem(self) -> &'static str {
        match self {
            OutOfRange::BeyondEnd { .. } => {
                "beyond the end of the log (was the topic deleted and recreated?)"
            }
            OutOfRange::Deleted { .. } => {
                "before the start of the log: records were deleted by retention before they \
                 were ingested"
            }
        }
    }

    pub fn next(self) -> i64 {
        match self {
            OutOfRange::BeyondEnd { next } | OutOfRange::Deleted { next } => next,
        }
    }
}

/// Plans one partition. A table without a position starts at the log start (that is what
/// "from the beginning" means for a new table). A position outside the log is an error unless
/// `reset` says what to do; a valid position is never moved by `reset`.
pub fn plan(s: Stored, reset: Option<Reset>) -> Result<Plan, OutOfRange> {
    let bronze_done = s.bronze.unwrap_or(-1);
    let audit_done = s.audit.unwrap_or(-1).max(bronze_done);
    let problem = match s.bronze {
        None => None,
        Some(b) if b + 1 > s.high => Some(OutOfRange::BeyondEnd { next: b + 1 }),
        Some(b) if b + 1 < s.low => Some(OutOfRange::Deleted { next: b + 1 }),
        Some(_) => None,
    };
    match (problem, reset) {
        (None, _) => Ok(Plan {
            start: if s.bronze.is_some() {
                bronze_done + 1
            } else {
                s.low
            },
            bronze_done,
            audit_done,
            reset_to: None,
        }),
        (Some(p), None) => Err(p),
        (Some(_), Some(r)) => {
            let start = match r {
                Reset::Earliest => s.low,
                Reset::Latest => s.high,
            };
            Ok(Plan {
                start,
                bronze_done: start - 1,
                audit_done: start - 1,
                reset_to: Some(start - 1),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(bronze: Option<i64>, audit: Option<i64>, low: i64, high: i64) -> Stored {
        Stored {
            bronze,
            audit,
            low,
            high,
        }
    }

    #[test]
    fn a_new_table_starts_at_the_log_start() {
        let p = plan(stored(None, None, 5, 100), None).unwrap();
        assert_eq!((p.start, p.bronze_done, p.audit_done), (5, -1, -1));
    }

    #[test]
    fn resumes_after_bronze_and_trusts_the_audit_table_ahead_of_it() {
        // Crash after the audit commit of a batch, before its bronze commit.
        let p = plan(stored(Some(49), Some(99), 0, 200), None).unwrap();
        assert_eq!((p.start, p.bronze_done, p.audit_done), (50, 49, 99));
        // An audit table behind bronze holds everything up to bronze's position anyway.
        let p = plan(stored(Some(149), Some(20), 0, 200), None).unwrap();
        assert_eq!((p.start, p.audit_done), (150, 149));
        // Fully caught up: start at the log end, fetch nothing.
        let p = plan(stored(Some(199), None, 0, 200), None).unwrap();
        assert_eq!(p.start, 200);
    }

    #[test]
    fn out_of_range_positions_fail_unless_reset() {
        let recreated = stored(Some(499), None, 0, 10);
        assert_eq!(
            plan(recreated, None),
            Err(OutOfRange::BeyondEnd { next: 500 })
        );
        let deleted = stored(Some(9), None, 100, 300);
        assert_eq!(plan(deleted, None), Err(OutOfRange::Deleted { next: 10 }));
        let p = plan(recreated, Some(Reset::Earliest)).unwrap();
        assert_eq!((p.start, p.reset_to, p.audit_done), (0, Some(-1), -1));
        let p = plan(deleted, Some(Reset::Latest)).unwrap();
        assert_eq!((p.start, p.reset_to), (300, Some(299)));
    }

    #[test]
    fn reset_never_moves_a_valid_position() {
        let p = plan(stored(Some(49), None, 0, 100), Some(Reset::Latest)).unwrap();
        assert_eq!((p.start, p.reset_to), (50, None));
    }
}
