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

// The host's RFC 3339 helpers: one calendar implementation for both.
pub(crate) use nexo::sync::lookback::{format_utc as format, parse_utc as parse};

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
