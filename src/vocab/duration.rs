//! Human durations, as flow files, expectation files, settings and flags write them: `250ms`,
//! `30s`, `5m`, `2h`, `1d`, combined as `1h30m`, decimals as `1.5s`. A bare number means
//! seconds, as in Airflow's `retry_delay: 300`.
//!
//! Parsing is exact integer arithmetic with a ceiling ([`MAX_DURATION`]): every duration this
//! returns can be added to `Instant::now()`, to a `chrono` time or to a tokio deadline without
//! overflowing, so no value in a valid file can panic a clock later (a 10²² day timeout once did).

use std::time::Duration;

/// The longest duration anything in flowctl accepts: a year. Longer timeouts, retry delays or
/// freshness windows are typos, and refusing them keeps every clock computation in range.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a duration, or says what was wrong with it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (expected e.g. `30s`, `5m`, `1h30m`)".into());
    }
    let too_long = || format!("duration `{text}` is longer than the maximum, 365d");
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(secs) if secs <= MAX_DURATION.as_secs() => Ok(Duration::from_secs(secs)),
            _ => Err(too_long()),
        };
    }
    let max_nanos = MAX_DURATION.as_nanos();
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "bad duration `{text}`: expected a number at `{rest}` (e.g. `30s`, `5m`, `1h30m`)"
            ));
        }
        let number = &rest[..digits];
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos: u128 = match unit {
            "ms" => 1_000_000,
            "s" | "sec" | "secs" => NANOS_PER_SEC,
            "m" | "min" | "mins" => 60 * NANOS_PER_SEC,
            "h" | "hr" | "hrs" => 3_600 * NANOS_PER_SEC,
            "d" => 86_400 * NANOS_PER_SEC,
            "" => {
                return Err(format!(
                    "bad duration `{text}`: missing unit after `{number}` (use ms, s, m, h or d)"
                ));
            }
            other => {
                return Err(format!(
                    "bad duration `{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        let part = scaled(number, unit_nanos)
            .ok_or_else(|| format!("bad duration `{text}`: `{number}` is not a number"))?;
        total = match part.and_then(|p| total.checked_add(p)) {
            Some(t) if t <= max_nanos => t,
            _ => return Err(too_long()),
        };
    }
    // In range: at most a year of nanoseconds fits a u64 many times over.
    Ok(Duration::from_nanos(total as u64))
}

/// `number` (digits with at most one `.`) times `unit_nanos`, in whole nanoseconds. None when
/// it is not a number; Some(None) when it is one too large to matter (it exceeds any ceiling).
fn scaled(number: &str, unit_nanos: u128) -> Option<Option<u128>> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    // More integer digits than a u128 holds is certainly over the ceiling.
    let whole = match int {
        "" => 0,
        _ if int.len() > 30 => return Some(None),
        _ => int.parse::<u128>().ok()?,
    };
    let Some(mut nanos) = whole.checked_mul(unit_nanos) else {
        return Some(None);
    };
    // Fraction digits past the 18th are below a nanosecond of any unit we have.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let f: u128 = frac.parse().ok()?;
        nanos += f * unit_nanos / 10u128.pow(frac.len() as u32);
    }
    Some(Some(nanos))
}

/// Formats a duration compactly for tables: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0.001s").unwrap(), Duration::from_millis(1));
        assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_duration("abc")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(
            parse_duration("10x")
                .unwrap_err()
                .contains("unknown unit `x`")
        );
        assert!(
            parse_duration("1.2.3s")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(parse_duration(".s").unwrap_err().contains("not a number"));
        assert!(
            parse_duration("-5s")
                .unwrap_err()
                .contains("expected a number")
        );
    }

    /// Issue 18: these panicked ("cannot convert float seconds to Duration") or later overflowed
    /// `Instant + Duration`; each is now a plain error naming the maximum.
    #[test]
    fn huge_durations_are_refused_not_panicked_on() {
        for text in [
            "9999999999999999999999d",
            "18446744073709551615s1s",
            "18446744073709551616",
            "213503982334601d",
            "366d",
            "364d24h1s",
            "8761h",
            "99999999999999999999999999999999999999999999ms",
            "1e400s",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(
                e.contains("maximum") || e.contains("unknown unit"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m05s");
    }
}
