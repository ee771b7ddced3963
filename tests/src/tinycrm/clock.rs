//! TinyCRM's clock: the server, not the client, stamps `updated_at` with
//! the wall time in milliseconds (`YYYY-MM-DDTHH:MM:SS.mmmZ`), strictly
//! increasing even within one millisecond, so stamps are unique, sort as
//! strings, and compare across servers as real modification times do
//! (conflict policies such as newest-wins rely on that).

use std::time::{SystemTime, UNIX_EPOCH};

/// A per-server clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    /// Unix milliseconds of the last stamp handed out.
    last_ms: i64,
}

impl Clock {
    /// A clock whose stamps come after `stamps` (those already in the data).
    pub(crate) fn after<'a>(stamps: impl IntoIterator<Item = &'a str>) -> Self {
        let newest = stamps.into_iter().filter_map(parse).max().unwrap_or(0);
        Clock {
            last_ms: newest * 1_000 + 999,
        }
    }

    /// The next stamp: now, or one millisecond after the last one.
    pub(crate) fn tick(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.last_ms = now.max(self.last_ms + 1);
        format_ms(self.last_ms)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::after([])
    }
}

/// Unix milliseconds → `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn format_ms(ms: i64) -> String {
    let secs = format(ms.div_euclid(1_000));
    format!("{}.{:03}Z", &secs[..19], ms.rem_euclid(1_000))
}

/// `YYYY-MM-DDTHH:MM:SSZ` → Unix seconds; `None` for any other shape.
pub(crate) fn parse(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // Whole seconds; milliseconds, if any, are ignored.
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| s.get(from..to)?.parse::<i64>().ok();
    let days = days_from_civil(num(0, 4)?, num(5, 7)?, num(8, 10)?);
    Some(days * 86_400 + num(11, 13)? * 3_600 + num(14, 16)? * 60 + num(17, 19)?)
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn format(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_sort_in_time_order() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59Z",
            "2026-06-01T00:00:00Z",
            "2100-12-31T12:34:56Z",
        ] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
        assert_eq!(parse("2026-06-01T00:00:00Z"), Some(1_780_272_000));
        assert_eq!(parse("2026-06-01 00:00:00"), None);
        let mut clock = Clock::after(["2026-01-01T00:00:00Z"]);
        let mut last = clock.tick();
        assert_eq!(last.len(), 24, "{last}");
        for _ in 0..100_000 {
            let next = clock.tick();
            assert!(next > last, "{next} after {last}");
            last = next;
        }
    }

    #[test]
    fn the_clock_starts_after_the_newest_existing_stamp() {
        let mut clock = Clock::after(["2026-01-01T00:00:00Z", "2999-03-01T23:59:59Z", "junk"]);
        assert_eq!(clock.tick(), "2999-03-02T00:00:00.000Z");
        assert_eq!(clock.tick(), "2999-03-02T00:00:00.001Z");
    }
}
