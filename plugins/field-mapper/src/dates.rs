//! Reading dates in the formats admins meet (`DD/MM/YYYY`, ISO 8601 date
//! times, Unix timestamps) into the canonical `YYYY-MM-DD`, without a date
//! crate: the sandbox needs none, and the patterns are few.

use nexo_sdk::model::Date;
use serde_json::Value;

/// Parse `value` with the first of `formats` that matches.
///
/// A format is `iso` (a `YYYY-MM-DD` date, or a date-time whose first ten
/// characters are one: the date is taken as written, no time zone shift),
/// `unix_s` / `unix_ms` (seconds / milliseconds since 1970, UTC; a JSON
/// number or digits), or a pattern of `YYYY`, `MM`, `DD` (two digits), `M`,
/// `D` (one or two digits) and literal characters, e.g. `DD.MM.YYYY`.
pub fn parse(value: &Value, formats: &[String]) -> Result<Date, String> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("{other} is not a date")),
    };
    for format in formats {
        if let Some(date) = parse_one(&text, format) {
            return Ok(date);
        }
    }
    Err(format!(
        "{text:?} matches none of the formats {}",
        formats.join(", ")
    ))
}

fn parse_one(text: &str, format: &str) -> Option<Date> {
    match format {
        "iso" => {
            let day = text.get(..10)?;
            let rest = text.get(10..)?;
            if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ')) {
                return None;
            }
            day.parse().ok()
        }
        "unix_s" => from_unix_days(text.parse::<i64>().ok()?.div_euclid(86_400)),
        "unix_ms" => from_unix_days(text.parse::<i64>().ok()?.div_euclid(86_400_000)),
        pattern => parse_pattern(text, pattern),
    }
}

fn parse_pattern(text: &str, pattern: &str) -> Option<Date> {
    let (mut y, mut m, mut d) = (None, None, None);
    let t = text.as_bytes();
    let p = pattern.as_bytes();
    let (mut i, mut j) = (0, 0);
    let digits = |from: usize, min: usize, max: usize| -> Option<(u16, usize)> {
        let n = t[from..]
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let v = std::str::from_utf8(&t[from..from + n]).ok()?.parse().ok()?;
        Some((v, n))
    };
    while j < p.len() {
        let rest = &pattern[j..];
        if rest.starts_with("YYYY") {
            let (v, n) = digits(i, 4, 4)?;
            y = Some(v);
            i += n;
            j += 4;
        } else if rest.starts_with("MM") || rest.starts_with("DD") {
            let (v, n) = digits(i, 2, 2)?;
            if rest.starts_with("MM") {
                m = Some(v)
            } else {
                d = Some(v)
            }
            i += n;
            j += 2;
        } else if rest.starts_with('M') || rest.starts_with('D') {
            let (v, n) = digits(i, 1, 2)?;
            if rest.starts_with('M') {
                m = Some(v)
            } else {
                d = Some(v)
            }
            i += n;
            j += 1;
        } else {
            if t.get(i) != Some(&p[j]) {
                return None;
            }
            i += 1;
            j += 1;
        }
    }
    if i != t.len() {
        return None;
    }
    Date::new(y?, u8::try_from(m?).ok()?, u8::try_from(d?).ok()?).ok()
}

/// The civil date `days` after 1970-01-01 (H. Hinnant's algorithm).
fn from_unix_days(days: i64) -> Option<Date> {
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era.checked_mul(400)? + i64::from(month <= 2);
    Date::new(
        u16::try_from(year).ok()?,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()
}

/// Whether `format` is one this module understands.
pub fn check_format(format: &str) -> Result<(), String> {
    if matches!(format, "iso" | "unix_s" | "unix_ms")
        || (format.contains("YYYY") && format.contains('M') && format.contains('D'))
    {
        Ok(())
    } else {
        Err(format!(
            "date format `{format}` is not `iso`, `unix_s`, `unix_ms` or a pattern with YYYY, MM and DD"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fmt(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn day(v: Value, f: &[&str]) -> String {
        parse(&v, &fmt(f)).unwrap().to_string()
    }

    #[test]
    fn patterns_iso_and_timestamps() {
        assert_eq!(day(json!("31/12/2024"), &["DD/MM/YYYY"]), "2024-12-31");
        assert_eq!(day(json!("1.3.2024"), &["D.M.YYYY"]), "2024-03-01");
        assert_eq!(
            day(json!("2024-03-14T23:59:59+02:00"), &["iso"]),
            "2024-03-14"
        );
        assert_eq!(
            day(json!(1_710_408_600_000_i64), &["unix_ms"]),
            "2024-03-14"
        );
        assert_eq!(day(json!("0"), &["unix_s"]), "1970-01-01");
        assert_eq!(day(json!(-86_400), &["unix_s"]), "1969-12-31");
        assert_eq!(
            day(json!("2000-02-29"), &["DD/MM/YYYY", "iso"]),
            "2000-02-29"
        );
    }

    #[test]
    fn impossible_or_unmatched_dates_fail() {
        assert!(parse(&json!("31/02/2024"), &fmt(&["DD/MM/YYYY"])).is_err());
        assert!(parse(&json!("2024-03-14x"), &fmt(&["iso"])).is_err());
        assert!(parse(&json!("14/03/24"), &fmt(&["DD/MM/YYYY"])).is_err());
        assert!(parse(&json!(true), &fmt(&["iso"])).is_err());
        assert!(check_format("iso").is_ok() && check_format("DD/MM/YYYY").is_ok());
        assert!(check_format("%d/%m/%Y").is_err());
    }
}
