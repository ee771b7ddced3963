//! Currencies and the rules for money amounts: which codes are accepted, how
//! many decimal places each allows, how amounts round, and how decimal amounts
//! appear in JSON and JSON Schema (as strings, never floats).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ModelError;

/// An ISO 4217 currency that Nexo supports, e.g. [`Currency::EUR`].
///
/// Only known codes can be built (parse with `"EUR".parse()`), so a record
/// holding a `Currency` never needs its code checked again. Serialised as the
/// three-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency {
    code: &'static str,
    minor_units: u32,
}

/// Declares each supported currency once: as an associated constant and as
/// an entry of the lookup table, so the two cannot drift apart.
macro_rules! currencies {
    ($($code:ident = $minor:literal, $name:literal;)*) => {
        impl Currency {
            $(
                #[doc = concat!($name, " (`", stringify!($code), "`, ", $minor, " decimal places).")]
                pub const $code: Currency = Currency { code: stringify!($code), minor_units: $minor };
            )*
        }
        /// Every supported currency, by code.
        const KNOWN: &[Currency] = &[$(Currency::$code),*];
    };
}

// Minor units as ISO 4217 lists them (HUF, IDR and TWD have 2 there, even if
// cash practice differs; ISK, JPY, KRW, CLP and VND have 0; Gulf dinars 3).
currencies! {
    AED = 2, "UAE dirham";
    ARS = 2, "Argentine peso";
    AUD = 2, "Australian dollar";
    BHD = 3, "Bahraini dinar";
    BRL = 2, "Brazilian real";
    CAD = 2, "Canadian dollar";
    CHF = 2, "Swiss franc";
    CLP = 0, "Chilean peso";
    CNY = 2, "Chinese yuan renminbi";
    COP = 2, "Colombian peso";
    CZK = 2, "Czech koruna";
    DKK = 2, "Danish krone";
    EGP = 2, "Egyptian pound";
    EUR = 2, "Euro";
    GBP = 2, "Pound sterling";
    HKD = 2, "Hong Kong dollar";
    HUF = 2, "Hungarian forint";
    IDR = 2, "Indonesian rupiah";
    ILS = 2, "Israeli new shekel";
    INR = 2, "Indian rupee";
    ISK = 0, "Icelandic króna";
    JPY = 0, "Japanese yen";
    KES = 2, "Kenyan shilling";
    KRW = 0, "South Korean won";
    KWD = 3, "Kuwaiti dinar";
    MAD = 2, "Moroccan dirham";
    MXN = 2, "Mexican peso";
    MYR = 2, "Malaysian ringgit";
    NGN = 2, "Nigerian naira";
    NOK = 2, "Norwegian krone";
    NZD = 2, "New Zealand dollar";
    OMR = 3, "Omani rial";
    PEN = 2, "Peruvian sol";
    PHP = 2, "Philippine peso";
    PKR = 2, "Pakistani rupee";
    PLN = 2, "Polish złoty";
    QAR = 2, "Qatari riyal";
    RON = 2, "Romanian leu";
    RUB = 2, "Russian ruble";
    SAR = 2, "Saudi riyal";
    SEK = 2, "Swedish krona";
    SGD = 2, "Singapore dollar";
    THB = 2, "Thai baht";
    TRY = 2, "Turkish lira";
    TWD = 2, "New Taiwan dollar";
    UAH = 2, "Ukrainian hryvnia";
    USD = 2, "US dollar";
    VND = 0, "Vietnamese đồng";
    ZAR = 2, "South African rand";
}

impl Currency {
    /// The currency with this code; the error names the bad code.
    pub fn from_code(code: &str) -> Result<Self, ModelError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ModelError::MalformedCurrency { code: code.into() });
        }
        KNOWN
            .iter()
            .find(|c| c.code == code)
            .copied()
            .ok_or_else(|| ModelError::UnknownCurrency { code: code.into() })
    }

    /// Every supported currency, in code order.
    pub fn known() -> impl Iterator<Item = Currency> {
        KNOWN.iter().copied()
    }

    /// The three-letter code, e.g. `"EUR"`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Decimal places of the currency's minor unit: 2 for EUR, 0 for JPY.
    pub fn minor_units(&self) -> u32 {
        self.minor_units
    }

    /// `amount` rounded to the minor unit, halves away from zero (commercial
    /// rounding, what invoicing systems use), e.g. 2.345 EUR → 2.35.
    pub fn round(&self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(self.minor_units, RoundingStrategy::MidpointAwayFromZero)
    }

    /// Whether `amount` needs no rounding: `10.50` is exact in EUR, `10.5` is
    /// not exact in JPY. Trailing zeros do not count (`100.00` JPY is exact).
    pub fn is_exact(&self, amount: Decimal) -> bool {
        amount.normalize().scale() <= self.minor_units
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl FromStr for Currency {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::from_code(&code).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Currency {
    fn schema_name() -> Cow<'static, str> {
        "Currency".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Currency").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut schema = Schema::default();
        schema.insert("type".into(), "string".into());
        schema.insert(
            "enum".into(),
            KNOWN.iter().map(|c| c.code).collect::<Vec<_>>().into(),
        );
        schema.insert(
            "description".into(),
            "ISO 4217 currency code, three uppercase letters.".into(),
        );
        schema
    }
}

/// Schema stand-in for `Decimal` fields, used as `#[schemars(with = "DecimalString")]`.
///
/// Amounts are (de)serialised with `rust_decimal::serde::str`, which accepts
/// only JSON strings: a JSON number has already been through `f64` in most
/// parsers and may no longer be exact. schemars' own `Decimal` schema allows
/// numbers too, so it would promise more than the model accepts.
pub(crate) struct DecimalString;

impl JsonSchema for DecimalString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "DecimalString".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut schema = Schema::default();
        schema.insert("type".into(), "string".into());
        schema.insert("pattern".into(), r"^-?[0-9]+(\.[0-9]+)?$".into());
        schema
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn parses_known_codes_and_names_bad_ones() {
        assert_eq!("EUR".parse::<Currency>().unwrap(), Currency::EUR);
        assert_eq!(Currency::from_code("JPY").unwrap().minor_units(), 0);
        assert_eq!(Currency::KWD.minor_units(), 3);
        assert_eq!(
            Currency::from_code("eur"),
            Err(ModelError::MalformedCurrency { code: "eur".into() })
        );
        assert_eq!(
            Currency::from_code("EURO"),
            Err(ModelError::MalformedCurrency {
                code: "EURO".into()
            })
        );
        let e = Currency::from_code("XYZ").unwrap_err();
        assert_eq!(e, ModelError::UnknownCurrency { code: "XYZ".into() });
        assert!(e.to_string().contains("\"XYZ\""), "{e}");
    }

    #[test]
    fn table_is_sorted_unique_and_about_forty_long() {
        let codes: Vec<_> = Currency::known().map(|c| c.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
        assert!(codes.len() >= 40, "{}", codes.len());
        for c in Currency::known() {
            assert_eq!(Currency::from_code(c.code()), Ok(c));
        }
    }

    #[test]
    fn serde_uses_the_code_and_rejects_unknown_codes() {
        assert_eq!(serde_json::to_string(&Currency::GBP).unwrap(), r#""GBP""#);
        let c: Currency = serde_json::from_str(r#""CHF""#).unwrap();
        assert_eq!(c, Currency::CHF);
        let e = serde_json::from_str::<Currency>(r#""ABC""#).unwrap_err();
        assert!(e.to_string().contains("\"ABC\""), "{e}");
    }

    #[test]
    fn rounds_half_away_from_zero_to_minor_units() {
        assert_eq!(Currency::EUR.round(d("2.345")), d("2.35"));
        assert_eq!(Currency::EUR.round(d("-2.345")), d("-2.35"));
        assert_eq!(Currency::JPY.round(d("100.5")), d("101"));
        assert_eq!(Currency::BHD.round(d("1.2345")), d("1.235"));
    }

    #[test]
    fn exactness_ignores_trailing_zeros() {
        assert!(Currency::EUR.is_exact(d("10.50")));
        assert!(!Currency::EUR.is_exact(d("10.505")));
        assert!(Currency::JPY.is_exact(d("100.00")));
        assert!(!Currency::JPY.is_exact(d("100.5")));
    }

    #[test]
    fn schema_lists_the_codes() {
        let schema = schemars::schema_for!(Currency);
        let codes = schema.get("enum").and_then(|v| v.as_array()).unwrap();
        assert!(codes.iter().any(|c| c == "JPY"));
        assert_eq!(schema.get("type").unwrap(), "string");
    }
}
