//! Look-back: before an incremental run, the saved cursor of a nexo-sdk
//! connector is moved back to a window before the previous run started, so
//! records committed late in the source (or changed while that run paged
//! through) are read again. Records that did not change are recognised by
//! the identity map and not written, so the cost is a re-read only.

use serde_json::Value;

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp
/// (`YYYY-MM-DDTHH:MM:SS[.fff]Z`, fractions ignored); `None` for any other
/// form.
pub fn parse_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3_600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
pub fn format_utc(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// The state to start an incremental run from. Only a nexo-sdk cursor at
/// rest (not mid-way through pages) with an RFC 3339 UTC value is moved;
/// any other state is the connector's own business and is kept.
pub fn rewind(
    state: Option<String>,
    previous_start: Option<&str>,
    window_s: u64,
) -> Option<String> {
    let (Some(text), Some(prev)) = (state.as_deref(), previous_start) else {
        return state;
    };
    if window_s == 0 {
        return state;
    }
    let Ok(Value::Object(mut cursor)) = serde_json::from_str::<Value>(text) else {
        return state;
    };
    if cursor.contains_key("page_token") {
        return state;
    }
    let (Some(value), Some(prev)) = (
        cursor
            .get("value")
            .and_then(Value::as_str)
            .and_then(parse_utc),
        parse_utc(prev),
    ) else {
        return state;
    };
    let floor = prev.saturating_sub(window_s as i64);
    if value <= floor {
        return state;
    }
    cursor.insert("value".into(), Value::String(format_utc(floor)));
    cursor.remove("ids_at_value");
    Some(Value::Object(cursor).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_round_trip() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2026-02-28T23:59:59Z",
            "2024-02-29T12:00:00Z",
        ] {
            assert_eq!(format_utc(parse_utc(s).unwrap()), s);
        }
        assert_eq!(
            parse_utc("2026-11-28T01:02:03.456Z"),
            parse_utc("2026-11-28T01:02:03Z")
        );
        assert_eq!(parse_utc("2026-11-28 01:02:03"), None);
        assert_eq!(parse_utc("12345"), None);
    }

    #[test]
    fn the_cursor_moves_back_to_the_window_before_the_previous_run() {
        let state = json!({"value": "2026-11-28T10:00:00Z", "ids_at_value": ["a"]}).to_string();
        let out = rewind(Some(state.clone()), Some("2026-11-28T09:59:30.000Z"), 60).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["value"], "2026-11-28T09:58:30Z");
        assert!(v.get("ids_at_value").is_none());
        // Already older than the window: kept.
        assert_eq!(
            rewind(Some(state.clone()), Some("2026-11-28T12:00:00Z"), 60),
            Some(state.clone())
        );
        // Mid-paging, foreign or absent states are kept.
        let paging = json!({"value": "2026-11-28T10:00:00Z", "page_token": "5"}).to_string();
        assert_eq!(
            rewind(Some(paging.clone()), Some("2026-11-28T09:00:00Z"), 60),
            Some(paging)
        );
        assert_eq!(
            rewind(Some("opaque".into()), Some("2026-11-28T09:00:00Z"), 60),
            Some("opaque".into())
        );
        assert_eq!(rewind(None, Some("2026-11-28T09:00:00Z"), 60), None);
        assert_eq!(
            rewind(Some(state.clone()), Some("2026-11-28T09:59:30Z"), 0),
            Some(state)
        );
    }
}
