//! Xero's JSON conventions: `/Date(ms+0000)/` dates, amounts as JSON
//! numbers (read through their shortest decimal text, so exactly), and the
//! comparison that tells whether a record already holds what would be sent.

use nexo_sdk::Error;
use nexo_sdk::model::Date;
use rust_decimal::Decimal;
use serde_json::{Number, Value};

/// Milliseconds of a `/Date(ms+0000)/` value.
pub fn ms_of(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    let inner = s.strip_prefix("/Date(")?;
    let digits: String = inner
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2024-03-01` of an instant.
pub fn day_of(ms: i64) -> String {
    let (y, m, d) = civil(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2024-03-01T10:00:00.123` (UTC) of an instant: Xero's
/// `If-Modified-Since` form.
pub fn iso_of(ms: i64) -> String {
    let t = ms.rem_euclid(86_400_000);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}",
        day_of(ms),
        t / 3_600_000,
        t / 60_000 % 60,
        t / 1000 % 60,
        t % 1000
    )
}

/// RFC 3339 of an instant, for `updated_at`.
pub fn rfc3339_of(ms: i64) -> String {
    format!("{}Z", iso_of(ms))
}

/// A canonical date from a Xero date (`/Date(…)/` or `2024-03-01T…`).
pub fn date_of(v: &Value) -> Result<Option<Date>, Error> {
    let text = match ms_of(v) {
        Some(ms) => day_of(ms),
        None => match v.as_str() {
            Some(s) if s.len() >= 10 => s[..10].to_string(),
            _ => return Ok(None),
        },
    };
    text.parse::<Date>()
        .map(Some)
        .map_err(|e| Error::internal(format!("Xero sent an invalid date `{text}`: {e}")))
}

/// A decimal from a Xero amount.
pub fn dec(v: &Value) -> Result<Decimal, Error> {
    let text = match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Null => return Ok(Decimal::ZERO),
        other => return Err(Error::internal(format!("Xero sent `{other}` as an amount"))),
    };
    text.parse::<Decimal>()
        .map(|d| d.normalize())
        .map_err(|e| Error::internal(format!("Xero sent `{text}` as an amount: {e}")))
}

/// A Xero amount (a JSON number whose text is the exact decimal).
pub fn num(d: Decimal) -> Result<Value, Error> {
    let text = d.normalize().to_string();
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::Number(i.into()));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| format!("{f}") == text)
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| Error::rejected(format!("amount {d} cannot be sent to Xero exactly")))
}

/// Whether `current` (a Xero record) already holds every field of `desired`
/// (what the connector would send): amounts compared as decimals, dates by
/// day, arrays element by element.
pub fn covers(current: &Value, desired: &Value) -> bool {
    match (current, desired) {
        (Value::Object(c), Value::Object(d)) => d
            .iter()
            .all(|(k, v)| covers(c.get(k).unwrap_or(&Value::Null), v)),
        (Value::Array(c), Value::Array(d)) => {
            c.len() == d.len() && c.iter().zip(d).all(|(a, b)| covers(a, b))
        }
        (Value::Number(_), Value::Number(_)) => match (dec(current), dec(desired)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        (Value::String(c), Value::String(d)) => {
            c == d || (ms_of(current).is_some_and(|ms| day_of(ms) == *d))
        }
        (Value::Null, Value::Number(_)) => dec(desired).is_ok_and(|d| d.is_zero()),
        (a, b) => a == b,
    }
}
