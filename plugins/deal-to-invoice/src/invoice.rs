//! A won deal → one canonical invoice: the customer from the deal's first
//! company, currency and date from the deal, lines from its line items (or
//! one line from `amount`), totals computed exactly and validated.

use nexo_sdk::model::{Date, ExternalRef, Invoice, PartyRef, Validate};
use rust_decimal::Decimal;

use crate::Config;
use crate::amounts::{
    Discount, FieldProblem, LineInput, PricedLine, parse_currency, parse_decimal, parse_percent,
    price_line, totals,
};
use crate::error::DealError;
use crate::hubspot::{Associated, Deal};

/// The invoice of a won deal.
pub(crate) fn invoice_of(
    config: &Config,
    deal: &Deal,
    id: &str,
) -> Result<Option<Invoice>, DealError> {
    let props = &deal.properties;
    let err = |field: &str, problem: String| DealError::new(id, field, problem);

    let company = deal.associations.companies.first().ok_or_else(|| {
        err(
            "associations.companies",
            "a won deal needs an associated company to bill; associate one in HubSpot".into(),
        )
    })?;
    if company.id.trim().is_empty() {
        return Err(err(
            "associations.companies[0].id",
            "must not be empty".into(),
        ));
    }

    let currency = match props.text("deal_currency_code", id, "properties")? {
        Some(code) => parse_currency(code).map_err(|e| err("properties.deal_currency_code", e))?,
        None => config.default_currency.ok_or_else(|| {
            err(
                "properties.deal_currency_code",
                "the deal has no currency and the mapper config sets no `default_currency`".into(),
            )
        })?,
    };

    let closedate = props.text("closedate", id, "properties")?.ok_or_else(|| {
        err(
            "properties.closedate",
            "a won deal needs a close date".into(),
        )
    })?;
    let issue_date = date_of(closedate).map_err(|e| err("properties.closedate", e))?;

    let default_tax = config.default_tax_rate.unwrap_or(Decimal::ZERO);
    let mut lines: Vec<PricedLine> = Vec::new();
    if deal.associations.line_items.is_empty() {
        let amount = props.text("amount", id, "properties")?.ok_or_else(|| {
            err(
                "properties.amount",
                "a won deal without line items needs an amount".into(),
            )
        })?;
        let amount = parse_decimal(amount).map_err(|e| err("properties.amount", e))?;
        let description = props
            .text("dealname", id, "properties")?
            .unwrap_or("Deal")
            .to_string();
        let input = LineInput {
            description,
            quantity: Decimal::ONE,
            unit_price: amount,
            discount: Discount::None,
            tax_rate: default_tax,
        };
        let priced = price_line(input, currency, config.rounding)
            .map_err(|p| err("properties.amount", p.problem))?;
        lines.push(priced);
    } else {
        for (i, item) in deal.associations.line_items.iter().enumerate() {
            let at = format!("associations.line_items[{i}].properties");
            let input = line_input(item, id, &at, default_tax)?;
            let priced = price_line(input, currency, config.rounding).map_err(
                |FieldProblem { field, problem }| err(&format!("{at}.{field}"), problem),
            )?;
            lines.push(priced);
        }
    }
    let (subtotal, total_tax, total) = totals(&lines)
        .ok_or_else(|| err("associations.line_items", "totals out of range".into()))?;

    let customer = PartyRef::Company(ExternalRef::new(&config.system, company.id.trim()));
    let mut inv = Invoice::new(customer, issue_date, currency);
    inv.status = config.status;
    inv.external_refs
        .push(ExternalRef::new(&config.system, id.to_string()));
    inv.reference = props
        .text("dealname", id, "properties")?
        .map(str::to_string);
    inv.updated_at = props
        .text("hs_lastmodifieddate", id, "properties")?
        .map(str::to_string);
    inv.lines = lines
        .into_iter()
        .map(|p| match &config.account_code {
            Some(code) => p.line.with_account_code(code.clone()),
            None => p.line,
        })
        .collect();
    inv.subtotal = subtotal;
    inv.total_tax = total_tax;
    inv.total = total;
    // The arithmetic above must satisfy the model; if it ever does not, the
    // message names the field the model's rule found wrong.
    inv.validate()
        .map_err(|e| err(e.field().unwrap_or("invoice"), e.to_string()))?;
    Ok(Some(inv))
}

/// One line item's inputs.
fn line_input(
    item: &Associated,
    deal: &str,
    at: &str,
    default_tax: Decimal,
) -> Result<LineInput, DealError> {
    let p = &item.properties;
    let err = |field: &str, problem: String| DealError::new(deal, format!("{at}.{field}"), problem);
    let required = |name: &str| -> Result<Decimal, DealError> {
        let text = p
            .text(name, deal, at)?
            .ok_or_else(|| err(name, "missing; every line item needs one".into()))?;
        parse_decimal(text).map_err(|e| err(name, e))
    };
    let quantity = required("quantity")?;
    let unit_price = required("price")?;
    let tax_rate = match p.text("hs_tax_rate", deal, at)? {
        Some(t) => parse_percent(t, None).map_err(|e| err("hs_tax_rate", e))?,
        None => default_tax,
    };
    let percent = p.text("hs_discount_percentage", deal, at)?;
    let per_unit = p.text("discount", deal, at)?;
    let discount = match (percent, per_unit) {
        (Some(pc), None) => Discount::Percent(
            parse_percent(pc, Some(Decimal::ONE_HUNDRED))
                .map_err(|e| err("hs_discount_percentage", e))?,
        ),
        (None, Some(u)) => {
            let u = parse_decimal(u).map_err(|e| err("discount", e))?;
            if u.is_sign_negative() && !u.is_zero() {
                return Err(err("discount", format!("{u} is a negative discount")));
            }
            Discount::PerUnit(u)
        }
        (None, None) => Discount::None,
        (Some(_), Some(_)) => {
            return Err(err(
                "hs_discount_percentage",
                "both a percentage and a unit `discount` are set; keep one".into(),
            ));
        }
    };
    let name = p.text("name", deal, at)?;
    let sku = p.text("hs_sku", deal, at)?;
    let description = match (name, sku) {
        (Some(n), _) => n.to_string(),
        (None, Some(s)) => s.to_string(),
        (None, None) => return Err(err("name", "a line item needs a name or an hs_sku".into())),
    };
    Ok(LineInput {
        description,
        quantity,
        unit_price,
        discount,
        tax_rate,
    })
}

/// The calendar date of an ISO 8601 date or date-time (`2024-03-14`,
/// `2024-03-14T09:30:00.000Z`). HubSpot sends date-times in UTC, so the
/// invoice is dated by the UTC day of the close.
pub(crate) fn date_of(text: &str) -> Result<Date, String> {
    let day = text.get(..10).unwrap_or(text);
    let rest = text.get(10..).unwrap_or("");
    if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ')) {
        return Err(format!(
            "{text:?} is not an ISO 8601 date (expected e.g. 2024-03-14T09:30:00Z)"
        ));
    }
    day.parse::<Date>().map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_take_the_day_of_iso_timestamps() {
        assert_eq!(
            date_of("2024-03-14T09:30:00.000Z").unwrap().to_string(),
            "2024-03-14"
        );
        assert_eq!(date_of("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert!(date_of("2023-02-29T00:00:00Z").is_err());
        assert!(date_of("1710408600000").is_err());
        assert!(date_of("14/03/2024").is_err());
    }
}
