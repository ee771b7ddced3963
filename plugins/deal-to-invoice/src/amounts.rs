//! The invoice arithmetic, exact and separate from HubSpot's shapes so it can
//! be tested on its own: one line's discount, amount and tax, and the totals.
//!
//! Per line, in this order:
//!
//! 1. `gross = quantity × unit_price` (exact, no rounding);
//! 2. `discount = gross × discount% / 100` (or `quantity × unit discount`),
//!    rounded to the currency with the configured [`Rounding`];
//! 3. `line_amount = gross − discount`, rounded to the currency **half away
//!    from zero**: the canonical model fixes this rule and `Validate` checks
//!    it, so it is not configurable;
//! 4. `tax = line_amount × tax_rate / 100`, rounded with [`Rounding`].
//!
//! Then `subtotal = Σ line_amount`, `total_tax = Σ tax` (tax rounded per
//! line, then summed, as HubSpot and Xero show it) and
//! `total = subtotal + total_tax`.

use std::str::FromStr;

use nexo_sdk::model::{Currency, InvoiceLine};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;

/// How discounts and taxes are rounded to the currency's minor units.
///
/// The default is `half_up` (halves away from zero, "commercial rounding"):
/// it is what the canonical model uses for line amounts, what HubSpot,
/// Xero and most invoicing law (e.g. EU VAT practice) apply, so an invoice
/// uses one rule throughout and matches the CRM to the cent. `half_even`
/// (banker's rounding) is there for ledgers that require it; it changes only
/// exact halves (2.345 → 2.34 instead of 2.35).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Halves away from zero: 2.345 → 2.35, −2.345 → −2.35.
    #[default]
    HalfUp,
    /// Halves to the even neighbour: 2.345 → 2.34, 2.355 → 2.36.
    HalfEven,
}

impl Rounding {
    /// `amount` rounded to `currency`'s minor units with this rule.
    pub fn round(self, currency: Currency, amount: Decimal) -> Decimal {
        let strategy = match self {
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
        };
        amount.round_dp_with_strategy(currency.minor_units(), strategy)
    }
}

/// A problem with one field of a line (the caller adds the path and deal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field, relative to the line (`price`, `hs_tax_rate`, …).
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl FieldProblem {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        FieldProblem {
            field,
            problem: problem.into(),
        }
    }
}

/// A decimal written as text (`"12.50"`, `"-3"`), exactly; no floats, no
/// exponents, no thousands separators.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let t = text.trim();
    let plain = !t.is_empty()
        && t.bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && (b == b'-' || b == b'+')));
    if !plain {
        return Err(format!(
            "{text:?} is not a decimal number (expected digits with an optional `.`, e.g. \"12.50\")"
        ));
    }
    Decimal::from_str_exact(t).map_err(|e| format!("{text:?} is not an exact decimal: {e}"))
}

/// A percentage as text, between `0` and `max` inclusive.
pub fn parse_percent(text: &str, max: Option<Decimal>) -> Result<Decimal, String> {
    let p = parse_decimal(text)?;
    if p.is_sign_negative() && !p.is_zero() {
        return Err(format!("{text:?} is a negative percentage"));
    }
    if let Some(max) = max
        && p > max
    {
        return Err(format!("{text:?} is above {max} %"));
    }
    Ok(p)
}

/// How a line's discount is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    /// No discount.
    None,
    /// A percentage of `quantity × unit_price` (HubSpot `hs_discount_percentage`).
    Percent(Decimal),
    /// An amount off each unit (HubSpot `discount`).
    PerUnit(Decimal),
}

/// The inputs of one line, already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct LineInput {
    /// Line text.
    pub description: String,
    /// Units.
    pub quantity: Decimal,
    /// Price of one unit, tax-exclusive.
    pub unit_price: Decimal,
    /// Discount.
    pub discount: Discount,
    /// Tax rate in percent.
    pub tax_rate: Decimal,
}

/// A priced line: the canonical line and its rounded tax.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedLine {
    /// The canonical line, `line_amount` set.
    pub line: InvoiceLine,
    /// Its tax, rounded to the currency.
    pub tax: Decimal,
}

fn overflow(field: &'static str) -> FieldProblem {
    FieldProblem::new(field, "amount out of range (arithmetic overflow)")
}

/// Price one line in `currency`.
pub fn price_line(
    input: LineInput,
    currency: Currency,
    rounding: Rounding,
) -> Result<PricedLine, FieldProblem> {
    let gross = input
        .quantity
        .checked_mul(input.unit_price)
        .ok_or_else(|| overflow("price"))?;
    let discount = match input.discount {
        Discount::None => Decimal::ZERO,
        Discount::Percent(p) => gross
            .checked_mul(p)
            .and_then(|d| d.checked_div(Decimal::ONE_HUNDRED))
            .map(|d| rounding.round(currency, d))
            .ok_or_else(|| overflow("hs_discount_percentage"))?,
        Discount::PerUnit(d) => input
            .quantity
            .checked_mul(d)
            .map(|d| rounding.round(currency, d))
            .ok_or_else(|| overflow("discount"))?,
    };
    // A discount on a credited (negative) line credits less; the model wants
    // the discount as a non-negative amount subtracted from the gross.
    if discount.is_sign_negative() && !discount.is_zero() {
        return Err(FieldProblem::new(
            "quantity",
            "a discount on a negative line (a credit) is not supported; enter the credit net of discount",
        ));
    }
    let mut line = InvoiceLine::new(input.description, input.quantity, input.unit_price)
        .with_discount(discount)
        .with_tax_rate(input.tax_rate);
    line.line_amount = line
        .expected_amount(currency)
        .map_err(|_| overflow("price"))?;
    let tax = line
        .line_amount
        .checked_mul(input.tax_rate)
        .and_then(|t| t.checked_div(Decimal::ONE_HUNDRED))
        .map(|t| rounding.round(currency, t))
        .ok_or_else(|| overflow("hs_tax_rate"))?;
    Ok(PricedLine { line, tax })
}

/// `(subtotal, total_tax, total)` of priced lines.
pub fn totals(lines: &[PricedLine]) -> Option<(Decimal, Decimal, Decimal)> {
    let mut subtotal = Decimal::ZERO;
    let mut tax = Decimal::ZERO;
    for l in lines {
        subtotal = subtotal.checked_add(l.line.line_amount)?;
        tax = tax.checked_add(l.tax)?;
    }
    Some((subtotal, tax, subtotal.checked_add(tax)?))
}

/// A currency code, with the error HubSpot admins can act on.
pub fn parse_currency(code: &str) -> Result<Currency, String> {
    Currency::from_str(&code.trim().to_ascii_uppercase()).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn line(q: &str, p: &str, discount: Discount, tax: &str) -> LineInput {
        LineInput {
            description: "x".into(),
            quantity: d(q),
            unit_price: d(p),
            discount,
            tax_rate: d(tax),
        }
    }

    fn priced(input: LineInput, c: Currency, r: Rounding) -> (Decimal, Decimal, Decimal) {
        let p = price_line(input, c, r).unwrap();
        (p.line.discount, p.line.line_amount, p.tax)
    }

    #[test]
    fn decimals_are_parsed_exactly_and_strictly() {
        assert_eq!(parse_decimal("12.50").unwrap(), d("12.50"));
        assert_eq!(parse_decimal(" -3 ").unwrap(), d("-3"));
        assert_eq!(parse_decimal("0.1").unwrap() + d("0.2"), d("0.3"));
        for bad in ["", "1,000.00", "1e3", "12.5.0", "abc", "€5", "NaN", "1 000"] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
        assert!(parse_percent("-1", None).is_err());
        assert!(parse_percent("101", Some(Decimal::ONE_HUNDRED)).is_err());
        assert_eq!(
            parse_percent("100", Some(Decimal::ONE_HUNDRED)).unwrap(),
            d("100")
        );
    }

    #[test]
    fn quantity_times_price_with_tax() {
        let (disc, amount, tax) = priced(
            line("3", "19.99", Discount::None, "19"),
            Currency::EUR,
            Rounding::HalfUp,
        );
        assert_eq!((disc, amount, tax), (d("0"), d("59.97"), d("11.39"))); // 11.3943
    }

    #[test]
    fn half_up_and_half_even_differ_only_on_exact_halves() {
        // 10.50 × 10 % = 1.05 → tax on 10.50 at 10 % is exactly 1.050: no half.
        // 0.25 at 10 % = 0.025: a half at the cent.
        let half = || line("1", "0.25", Discount::None, "10");
        assert_eq!(priced(half(), Currency::EUR, Rounding::HalfUp).2, d("0.03"));
        assert_eq!(
            priced(half(), Currency::EUR, Rounding::HalfEven).2,
            d("0.02")
        );
        // 0.35 at 10 % = 0.035: half-even goes up to the even 0.04 too.
        let odd = || line("1", "0.35", Discount::None, "10");
        assert_eq!(priced(odd(), Currency::EUR, Rounding::HalfUp).2, d("0.04"));
        assert_eq!(
            priced(odd(), Currency::EUR, Rounding::HalfEven).2,
            d("0.04")
        );
        // Not a half: both agree (0.26 at 10 % = 0.026). A price of 0.251
        // would not do: the line amount rounds to 0.25 first.
        let near = || line("1", "0.26", Discount::None, "10");
        assert_eq!(priced(near(), Currency::EUR, Rounding::HalfUp).2, d("0.03"));
        assert_eq!(
            priced(near(), Currency::EUR, Rounding::HalfEven).2,
            d("0.03")
        );
    }

    #[test]
    fn line_amount_is_always_half_away_from_zero_as_the_model_requires() {
        // 3 × 0.835 = 2.505 → 2.51 under both settings.
        for r in [Rounding::HalfUp, Rounding::HalfEven] {
            let (_, amount, _) = priced(line("3", "0.835", Discount::None, "0"), Currency::EUR, r);
            assert_eq!(amount, d("2.51"), "{r:?}");
        }
        // Negative (credit) lines round symmetrically.
        let (_, amount, tax) = priced(
            line("-3", "0.835", Discount::None, "10"),
            Currency::EUR,
            Rounding::HalfUp,
        );
        assert_eq!((amount, tax), (d("-2.51"), d("-0.25"))); // −0.251
    }

    #[test]
    fn percentage_discount_is_rounded_before_the_line_amount() {
        // 1 × 99.99 at 12.5 % off: discount 12.49875 → 12.50; amount 87.49.
        let (disc, amount, tax) = priced(
            line("1", "99.99", Discount::Percent(d("12.5")), "20"),
            Currency::EUR,
            Rounding::HalfUp,
        );
        assert_eq!((disc, amount, tax), (d("12.50"), d("87.49"), d("17.50"))); // 17.498
        // 1 × 0.5 at 5 % off = 0.025: the half decides.
        let up = priced(
            line("1", "0.5", Discount::Percent(d("5")), "0"),
            Currency::EUR,
            Rounding::HalfUp,
        );
        let even = priced(
            line("1", "0.5", Discount::Percent(d("5")), "0"),
            Currency::EUR,
            Rounding::HalfEven,
        );
        assert_eq!((up.0, up.1), (d("0.03"), d("0.47")));
        assert_eq!((even.0, even.1), (d("0.02"), d("0.48")));
    }

    #[test]
    fn per_unit_discount_and_full_discount() {
        let (disc, amount, _) = priced(
            line("4", "10", Discount::PerUnit(d("1.255")), "0"),
            Currency::EUR,
            Rounding::HalfUp,
        );
        assert_eq!((disc, amount), (d("5.02"), d("34.98")));
        let (disc, amount, tax) = priced(
            line("2", "10", Discount::Percent(d("100")), "20"),
            Currency::EUR,
            Rounding::HalfUp,
        );
        assert_eq!((disc, amount, tax), (d("20.00"), d("0.00"), d("0.00")));
    }

    #[test]
    fn currencies_round_to_their_own_minor_units() {
        // JPY: 0 places. 3 × 333.5 = 1000.5 → 1001; 10 % → 100.1 → 100.
        let (_, amount, tax) = priced(
            line("3", "333.5", Discount::None, "10"),
            Currency::JPY,
            Rounding::HalfUp,
        );
        assert_eq!((amount, tax), (d("1001"), d("100")));
        // KWD: 3 places. 1 × 1.0005 → 1.001; 5 % of 1.001 = 0.05005 → 0.050.
        let (_, amount, tax) = priced(
            line("1", "1.0005", Discount::None, "5"),
            Currency::KWD,
            Rounding::HalfUp,
        );
        assert_eq!((amount, tax), (d("1.001"), d("0.050")));
    }

    #[test]
    fn fractional_quantities_are_exact() {
        // 2.5 h × 80.10 = 200.25 exactly; 0.1 + 0.2 style sums stay exact.
        let a = price_line(
            line("2.5", "80.10", Discount::None, "0"),
            Currency::USD,
            Rounding::HalfUp,
        )
        .unwrap();
        let b = price_line(
            line("0.1", "1", Discount::None, "0"),
            Currency::USD,
            Rounding::HalfUp,
        )
        .unwrap();
        let c = price_line(
            line("0.2", "1", Discount::None, "0"),
            Currency::USD,
            Rounding::HalfUp,
        )
        .unwrap();
        assert_eq!(a.line.line_amount, d("200.25"));
        let (subtotal, tax, total) = totals(&[b, c]).unwrap();
        assert_eq!((subtotal, tax, total), (d("0.3"), d("0"), d("0.3")));
    }

    #[test]
    fn tax_is_rounded_per_line_then_summed() {
        // Three lines of 0.10 at 15 %: 0.015 each → 0.02 each → 0.06 total
        // (rounding the sum 0.045 once would give 0.05).
        let lines: Vec<_> = (0..3)
            .map(|_| {
                price_line(
                    line("1", "0.10", Discount::None, "15"),
                    Currency::EUR,
                    Rounding::HalfUp,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(totals(&lines).unwrap(), (d("0.30"), d("0.06"), d("0.36")));
    }

    #[test]
    fn overflow_names_the_field() {
        let e = price_line(
            line("2", &Decimal::MAX.to_string(), Discount::None, "0"),
            Currency::EUR,
            Rounding::HalfUp,
        )
        .unwrap_err();
        assert_eq!(e.field, "price");
    }

    #[test]
    fn currency_codes_are_checked() {
        assert_eq!(parse_currency("eur").unwrap(), Currency::EUR);
        assert!(parse_currency("XYZ").unwrap_err().contains("XYZ"));
        assert!(parse_currency("EURO").is_err());
    }
}
