//! Cron schedules: five-field cron expressions (six with a leading seconds field, for sub-minute
//! schedules) and the `@hourly`-style shorthands. Evaluated in UTC.

use chrono::{DateTime, Utc};
use croner::Cron;

/// A validated schedule. Times are evaluated in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    /// Always six fields: the form tokio-cron-scheduler wants.
    with_seconds: String,
    cron: Cron,
}

impl Schedule {
    /// Parses `expr`; the error says what is wrong in words a user can act on.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let trimmed = expr.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "bad cron `{expr}`: unknown shorthand (use @hourly, @daily, @weekly, @monthly or @yearly)"
                ));
            }
            other => other,
        };
        let fields = expanded.split_whitespace().count();
        if fields != 5 && fields != 6 {
            return Err(format!(
                "bad cron `{expr}`: expected 5 fields (minute hour day-of-month month day-of-week), \
                 or 6 with leading seconds; found {fields}"
            ));
        }
        let with_seconds = if fields == 5 {
            format!("0 {expanded}")
        } else {
            expanded.to_string()
        };
        let cron = with_seconds
            .parse::<Cron>()
            .map_err(|e| format!("bad cron `{expr}`: {e}"))?;
        Ok(Schedule {
            expr: trimmed.to_string(),
            with_seconds,
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The six-field form (seconds first).
    pub fn with_seconds(&self) -> &str {
        &self.with_seconds
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The latest fire time at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t, true).ok()
    }

    /// Fire times in `(after, until]`, oldest first, at most `cap` of the most recent ones.
    pub fn missed(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        cap: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = std::collections::VecDeque::new();
        let mut t = after;
        while let Some(next) = self.next_after(t) {
            if next > until {
                break;
            }
            out.push_back(next);
            if out.len() > cap {
                out.pop_front();
            }
            t = next;
        }
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn shorthands_and_fields() {
        let s = Schedule::parse("@hourly").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 15, 0).unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 11, 0, 0).unwrap()
        );
        let d = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            d.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 2, 2, 30, 0).unwrap()
        );
    }

    #[test]
    fn seconds_and_missed_windows() {
        let s = Schedule::parse("*/10 * * * * *").unwrap();
        assert_eq!(s.with_seconds(), "*/10 * * * * *");
        assert_eq!(
            Schedule::parse("@daily").unwrap().with_seconds(),
            "0 0 0 * * *"
        );
        let h = Schedule::parse("@hourly").unwrap();
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 30, 0).unwrap();
        let until = Utc.with_ymd_and_hms(2026, 1, 1, 5, 0, 0).unwrap();
        let all = h.missed(from, until, 100);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0], Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).unwrap());
        assert_eq!(all[4], until);
        let capped = h.missed(from, until, 2);
        assert_eq!(capped, all[3..].to_vec());
        assert_eq!(h.latest_at_or_before(until).unwrap(), until);
    }

    #[test]
    fn bad_crons_are_explained() {
        assert!(
            Schedule::parse("* * *")
                .unwrap_err()
                .contains("expected 5 fields")
        );
        assert!(
            Schedule::parse("@sometimes")
                .unwrap_err()
                .contains("unknown shorthand")
        );
        assert!(Schedule::parse("61 * * * *").is_err());
    }
}
