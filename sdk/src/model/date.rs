//! `Date`, a validated calendar date: business documents are dated by day, so
//! the model carries neither times nor time zones (and needs no date crate).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ModelError;

/// A calendar date (proleptic Gregorian, years 1–9999), written `YYYY-MM-DD`.
///
/// Only real dates can be built: `2024-02-29` parses, `2023-02-29` does not.
/// Dates order chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    // Field order makes the derived `Ord` chronological.
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The date `year-month-day`, if it exists.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, ModelError> {
        let invalid = |problem| ModelError::InvalidDate {
            value: format!("{year:04}-{month:02}-{day:02}"),
            problem,
        };
        if !(1..=9999).contains(&year) {
            return Err(invalid("the year must be between 0001 and 9999"));
        }
        if !(1..=12).contains(&month) {
            return Err(invalid("the month must be between 01 and 12"));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(invalid("the day does not exist in that month"));
        }
        Ok(Date { year, month, day })
    }

    /// The year, 1–9999.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The day of the month, 1–31.
    pub fn day(&self) -> u8 {
        self.day
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl FromStr for Date {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || ModelError::InvalidDate {
            value: s.into(),
            problem: "expected YYYY-MM-DD, e.g. 2024-01-31",
        };
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(malformed());
        }
        // Digits only: `u16::from_str` alone would accept a leading `+`.
        let number = |range: std::ops::Range<usize>| {
            let part = s.get(range).ok_or_else(malformed)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(malformed());
            }
            part.parse::<u16>().map_err(|_| malformed())
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        // Both fit in u8: two digits.
        Date::new(year, month as u8, day as u8).map_err(|e| match e {
            ModelError::InvalidDate { problem, .. } => ModelError::InvalidDate {
                value: s.into(),
                problem,
            },
            other => other,
        })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Date {
    fn schema_name() -> Cow<'static, str> {
        "Date".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Date").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut schema = Schema::default();
        schema.insert("type".into(), "string".into());
        schema.insert("format".into(), "date".into());
        schema.insert("pattern".into(), "^[0-9]{4}-[0-9]{2}-[0-9]{2}$".into());
        schema.insert(
            "description".into(),
            "Calendar date, ISO 8601 YYYY-MM-DD.".into(),
        );
        schema
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_real_dates() {
        let d: Date = "2024-02-29".parse().unwrap();
        assert_eq!((d.year(), d.month(), d.day()), (2024, 2, 29));
        assert_eq!(d.to_string(), "2024-02-29");
        assert_eq!(Date::new(7, 1, 5).unwrap().to_string(), "0007-01-05");
        assert!("2000-02-29".parse::<Date>().is_ok());
    }

    #[test]
    fn rejects_impossible_or_malformed_dates_naming_them() {
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-13-01",
            "2024-00-10",
            "0000-01-01",
            "2024-1-01",
            "2024/01/01",
            "+024-01-01",
            "2024-01-01T00:00:00Z",
            "",
        ] {
            let e = bad.parse::<Date>().unwrap_err();
            assert!(
                matches!(&e, ModelError::InvalidDate { value, .. } if value == bad),
                "{bad}: unexpected {e:?}"
            );
        }
    }

    #[test]
    fn orders_chronologically() {
        let a: Date = "2023-12-31".parse().unwrap();
        let b: Date = "2024-01-01".parse().unwrap();
        assert!(a < b);
    }

    #[test]
    fn serde_uses_the_iso_text() {
        let d: Date = serde_json::from_str(r#""2024-06-30""#).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), r#""2024-06-30""#);
        let e = serde_json::from_str::<Date>(r#""2024-06-31""#).unwrap_err();
        assert!(e.to_string().contains("2024-06-31"), "{e}");
    }
}
