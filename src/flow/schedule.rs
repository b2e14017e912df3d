//! Cron schedules: five-field cron expressions and the `@hourly`-style shorthands.

use chrono::{DateTime, Utc};
use croner::Cron;

/// A validated schedule. Times are evaluated in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
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
        if fields != 5 {
            return Err(format!(
                "bad cron `{expr}`: expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"
            ));
        }
        let cron = expanded
            .parse::<Cron>()
            .map_err(|e| format!("bad cron `{expr}`: {e}"))?;
        Ok(Schedule {
            expr: trimmed.to_string(),
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
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
