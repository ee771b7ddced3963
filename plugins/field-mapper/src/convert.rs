//! Type conversions of the `convert` rule: to text, integer, exact decimal
//! string, boolean or canonical date. Each conversion accepts the plain
//! spellings of its type and refuses anything it would have to guess at.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::dates;

/// The type a field is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Text: strings stay, numbers and booleans are written out.
    String,
    /// A JSON integer, from an integer number or text such as `"42"`.
    Integer,
    /// An exact decimal as a JSON string (`"12.50"`), as the canonical model
    /// carries amounts; from text (see `decimal_separator`) or a number.
    DecimalString,
    /// `true`/`false`, from booleans, `"true"/"false"`, `"yes"/"no"`,
    /// `"y"/"n"`, `"1"/"0"` (any case) or the numbers 1 and 0.
    Boolean,
    /// A canonical `YYYY-MM-DD` date, read with `formats`.
    Date,
}

/// One conversion: a bare target (`"integer"`) or a target with options.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Conversion {
    /// Just the target, e.g. `"decimal_string"`.
    Bare(Target),
    /// The target with its options.
    Full(ConversionOptions),
}

/// A conversion with options.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversionOptions {
    /// The target type.
    pub to: Target,
    /// `decimal_string`: the decimal separator of the input text, `.`
    /// (default) or `,`; the other one is then taken as a thousands
    /// separator and removed (`"1.234,5"` → `"1234.5"`).
    #[serde(default)]
    pub decimal_separator: Option<char>,
    /// `decimal_string`: round to this many decimal places, halves away
    /// from zero (as the canonical model rounds money).
    #[serde(default)]
    pub scale: Option<u32>,
    /// `date`: input formats tried in order: `iso` (default), `unix_s`,
    /// `unix_ms`, or a pattern such as `DD/MM/YYYY` (`YYYY`, `MM`, `DD`, and
    /// `M`/`D` for one or two digits).
    #[serde(default)]
    pub formats: Vec<String>,
}

impl Conversion {
    /// The options, with defaults for a bare target.
    pub fn options(&self) -> ConversionOptions {
        match self {
            Conversion::Bare(to) => ConversionOptions {
                to: *to,
                decimal_separator: None,
                scale: None,
                formats: Vec::new(),
            },
            Conversion::Full(o) => o.clone(),
        }
    }

    /// Problems with the options themselves.
    pub fn check(&self) -> Result<(), String> {
        let o = self.options();
        if let Some(sep) = o.decimal_separator
            && sep != '.'
            && sep != ','
        {
            return Err(format!("decimal_separator {sep:?} must be `.` or `,`"));
        }
        if o.scale.is_some_and(|s| s > 28) {
            return Err("scale must be at most 28".into());
        }
        o.formats.iter().try_for_each(|f| dates::check_format(f))
    }

    /// `value` converted.
    pub fn apply(&self, value: &Value) -> Result<Value, String> {
        let o = self.options();
        match o.to {
            Target::String => to_string(value).map(Value::String),
            Target::Integer => to_integer(value),
            Target::DecimalString => to_decimal(value, o.decimal_separator.unwrap_or('.'), o.scale)
                .map(|d| Value::String(d.to_string())),
            Target::Boolean => to_boolean(value).map(Value::Bool),
            Target::Date => {
                let formats = if o.formats.is_empty() {
                    vec!["iso".to_string()]
                } else {
                    o.formats
                };
                dates::parse(value, &formats).map(|d| Value::String(d.to_string()))
            }
        }
    }
}

fn to_string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("{other} cannot be turned into text")),
    }
}

fn to_integer(value: &Value) -> Result<Value, String> {
    let text = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => return Ok(value.clone()),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("{other} is not an integer")),
    };
    // Through Decimal, so `"42.0"` passes and `"42.5"` is refused, exactly.
    let d = Decimal::from_str_exact(&text).map_err(|_| format!("{text:?} is not an integer"))?;
    if !d.fract().is_zero() {
        return Err(format!(
            "{text:?} has a fractional part; it is not an integer"
        ));
    }
    i64::try_from(d)
        .map(Value::from)
        .map_err(|_| format!("{text:?} is out of the integer range"))
}

fn to_decimal(value: &Value, separator: char, scale: Option<u32>) -> Result<Decimal, String> {
    let d = match value {
        // serde_json writes the shortest text that reads back as the same
        // f64: `0.1` stays "0.1". Exact as far as the sender's number was.
        Value::Number(n) => Decimal::from_str_exact(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .map_err(|e| format!("{n} is not a decimal: {e}"))?,
        Value::String(s) => {
            let thousands = if separator == ',' { '.' } else { ',' };
            let cleaned: String = s
                .trim()
                .chars()
                .filter(|c| *c != thousands && *c != ' ' && *c != '\'')
                .map(|c| if c == separator { '.' } else { c })
                .collect();
            let plain = !cleaned.is_empty()
                && cleaned.bytes().enumerate().all(|(i, b)| {
                    b.is_ascii_digit() || b == b'.' || (i == 0 && (b == b'-' || b == b'+'))
                });
            if !plain {
                return Err(format!("{s:?} is not a decimal number"));
            }
            Decimal::from_str(&cleaned).map_err(|e| format!("{s:?} is not a decimal: {e}"))?
        }
        other => return Err(format!("{other} is not a decimal number")),
    };
    Ok(match scale {
        Some(dp) => d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero),
        None => d,
    })
}

fn to_boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok(true),
            "false" | "no" | "n" | "0" => Ok(false),
            _ => Err(format!("{s:?} is not a yes/no value")),
        },
        other => Err(format!("{other} is not a yes/no value")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(spec: Value, v: Value) -> Result<Value, String> {
        let c: Conversion = serde_json::from_value(spec).unwrap();
        c.check()?;
        c.apply(&v)
    }

    #[test]
    fn each_target_converts_plain_values() {
        assert_eq!(conv(json!("string"), json!(12.5)).unwrap(), json!("12.5"));
        assert_eq!(conv(json!("string"), json!(true)).unwrap(), json!("true"));
        assert_eq!(conv(json!("integer"), json!(" 42 ")).unwrap(), json!(42));
        assert_eq!(conv(json!("integer"), json!("42.00")).unwrap(), json!(42));
        assert_eq!(conv(json!("integer"), json!(7)).unwrap(), json!(7));
        assert_eq!(conv(json!("boolean"), json!("Yes")).unwrap(), json!(true));
        assert_eq!(conv(json!("boolean"), json!(0)).unwrap(), json!(false));
        assert_eq!(
            conv(json!("date"), json!("2024-01-31T10:00:00Z")).unwrap(),
            json!("2024-01-31")
        );
    }

    #[test]
    fn decimals_stay_exact_and_read_local_separators() {
        let d = |spec, v| conv(spec, v).unwrap();
        assert_eq!(d(json!("decimal_string"), json!("12.50")), json!("12.50"));
        assert_eq!(d(json!("decimal_string"), json!(0.1)), json!("0.1"));
        assert_eq!(
            d(json!("decimal_string"), json!("1,234.5")),
            json!("1234.5")
        );
        assert_eq!(
            d(
                json!({"to": "decimal_string", "decimal_separator": ","}),
                json!("1.234,56")
            ),
            json!("1234.56")
        );
        assert_eq!(
            d(json!({"to": "decimal_string", "scale": 2}), json!("2.345")),
            json!("2.35")
        );
        assert_eq!(
            d(json!({"to": "decimal_string", "scale": 2}), json!("-2.345")),
            json!("-2.35")
        );
    }

    #[test]
    fn guesses_are_refused() {
        assert!(
            conv(json!("integer"), json!("42.5"))
                .unwrap_err()
                .contains("fractional")
        );
        assert!(conv(json!("integer"), json!(1.5)).is_err());
        assert!(conv(json!("decimal_string"), json!("12 EUR")).is_err());
        assert!(conv(json!("decimal_string"), json!("1e3")).is_err());
        assert!(conv(json!("boolean"), json!("maybe")).is_err());
        assert!(conv(json!("string"), json!({"a": 1})).is_err());
        assert!(conv(json!({"to": "date", "formats": ["%Y"]}), json!("2024")).is_err());
        assert!(
            conv(
                json!({"to": "decimal_string", "decimal_separator": ";"}),
                json!("1")
            )
            .is_err()
        );
    }
}
