//! Exact amounts for the Xero sandbox: Xero sends and accepts amounts as
//! JSON numbers with at most four decimal places, so they are held as
//! integers of ten-thousandths and never as floats.
//!
//! A JSON number arrives as an `f64`; its shortest round-trip text (Rust's
//! `Display`) is the decimal the client wrote for any amount of up to 15
//! significant digits, so that text is what is parsed.

use std::fmt;

use serde_json::{Number, Value};

/// Scale of an [`Amount`]: four decimal places.
const SCALE: i128 = 10_000;

/// A decimal with at most four decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Amount(i128);

/// Why a value is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a number (nor a numeric string).
    #[error("{0} is not a number")]
    NotANumber(String),
    /// More than four decimal places.
    #[error("{0} has more than 4 decimal places")]
    TooPrecise(String),
    /// Too large to compute with.
    #[error("amount overflow")]
    Overflow,
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// A whole number.
    pub fn from_int(n: i64) -> Amount {
        Amount(i128::from(n) * SCALE)
    }

    /// Parses decimal text such as `-12.5`.
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        let bad = || AmountError::NotANumber(text.to_string());
        let (neg, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 4 {
            return Err(AmountError::TooPrecise(text.to_string()));
        }
        let int: i128 = int.parse().map_err(|_| AmountError::Overflow)?;
        let mut f: i128 = 0;
        for (i, b) in frac.bytes().enumerate() {
            f += i128::from(b - b'0') * 10_i128.pow(3 - i as u32);
        }
        let v = int
            .checked_mul(SCALE)
            .and_then(|v| v.checked_add(f))
            .ok_or(AmountError::Overflow)?;
        Ok(Amount(if neg { -v } else { v }))
    }

    /// Reads a JSON number (or numeric string).
    pub fn from_json(v: &Value) -> Result<Amount, AmountError> {
        match v {
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Amount::from_int(i)),
                (None, Some(f)) => Amount::parse(&format!("{f}")),
                _ => Err(AmountError::NotANumber(n.to_string())),
            },
            Value::String(s) => Amount::parse(s.trim()),
            other => Err(AmountError::NotANumber(other.to_string())),
        }
    }

    /// The amount as a JSON number (exact in the JSON text).
    pub fn to_json(self) -> Value {
        if self.0 % SCALE == 0
            && let Ok(i) = i64::try_from(self.0 / SCALE)
        {
            return Value::Number(i.into());
        }
        self.to_string()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number)
    }

    /// `self + other`.
    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_add(other.0)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }

    /// `self − other`.
    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }

    /// `self × other`, rounded to 2 decimal places (halves away from zero).
    pub fn mul_round2(self, other: Amount) -> Result<Amount, AmountError> {
        let p = self.0.checked_mul(other.0).ok_or(AmountError::Overflow)?;
        // p has 8 decimal places; keep 2.
        Ok(Amount(round_div(p, 1_000_000) * 100))
    }

    /// `self × percent / 100`, rounded to 2 decimal places.
    pub fn percent_round2(self, percent: Amount) -> Result<Amount, AmountError> {
        let p = self.0.checked_mul(percent.0).ok_or(AmountError::Overflow)?;
        // p has 8 decimal places and is 100 times too large; keep 2.
        Ok(Amount(round_div(p, 100_000_000) * 100))
    }

    /// Whether the amount is below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

/// `n / d` rounded half away from zero (`d > 0`).
fn round_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if r.abs() * 2 >= d { q + n.signum() } else { q }
}

impl fmt::Display for Amount {
    /// At least two decimal places: `12.50`, `0.1234`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.abs();
        let mut frac = format!("{:04}", abs % SCALE);
        while frac.len() > 2 && frac.ends_with('0') {
            frac.pop();
        }
        write!(f, "{sign}{}.{frac}", abs / SCALE)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_rounds_and_prints_exactly() {
        let a = Amount::from_json(&json!(5.55)).unwrap();
        assert_eq!(a.to_string(), "5.55");
        assert_eq!(Amount::from_json(&json!(0.1)).unwrap().to_string(), "0.10");
        assert_eq!(
            Amount::parse("3")
                .unwrap()
                .mul_round2(a)
                .unwrap()
                .to_string(),
            "16.65"
        );
        // 0.125 → 0.13 (half away from zero), -0.125 → -0.13
        let q = Amount::parse("0.125").unwrap();
        assert_eq!(
            q.mul_round2(Amount::from_int(1)).unwrap().to_string(),
            "0.13"
        );
        assert_eq!(
            Amount::parse("-0.125")
                .unwrap()
                .mul_round2(Amount::from_int(1))
                .unwrap()
                .to_string(),
            "-0.13"
        );
        assert_eq!(
            Amount::parse("5.55")
                .unwrap()
                .percent_round2(Amount::from_int(20))
                .unwrap()
                .to_string(),
            "1.11"
        );
        assert_eq!(Amount::parse("29.55").unwrap().to_json(), json!(29.55));
        assert!(matches!(
            Amount::parse("1.00001"),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(Amount::parse("abc").is_err());
    }
}
