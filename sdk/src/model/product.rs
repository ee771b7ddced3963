//! `Product`: what can be sold or bought, a.k.a. item (accounting systems) or
//! product (CRMs).

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{non_negative, require_text};
use super::money::DecimalString;
use super::reference::check_identity;
use super::{Currency, Entity, ExternalRef, ModelError, Validate};

fn active_by_default() -> bool {
    true
}

/// A product or service with a price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub struct Product {
    /// Id in the system the record comes from; absent before it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The same product in other systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// Stock-keeping unit or item code: the key systems match products on.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer description, also the default invoice line text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Sales price of one unit, excluding tax. May have more decimal places
    /// than the currency (e.g. `0.125` per unit); line amounts are rounded.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "DecimalString")]
    pub unit_price: Decimal,
    /// Currency of `unit_price`; absent means the system's base currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// Default tax rate in percent, e.g. `"19"` for 19 %.
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DecimalString>")]
    pub tax_rate: Option<Decimal>,
    /// Units in stock, for tracked inventory; absent when not tracked.
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DecimalString>")]
    pub stock_quantity: Option<Decimal>,
    /// Whether the product can still be sold (`false`: archived).
    #[serde(default = "active_by_default")]
    pub active: bool,
    /// When the record last changed in its system (RFC 3339); the usual cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// System-specific fields the model has no place for, kept as they came.
    #[serde(default, flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Product {
    /// An active product with this SKU, name and unit price.
    pub fn new(sku: impl Into<String>, name: impl Into<String>, unit_price: Decimal) -> Self {
        Product {
            id: None,
            external_refs: Vec::new(),
            sku: sku.into(),
            name: name.into(),
            description: None,
            unit_price,
            currency: None,
            tax_rate: None,
            stock_quantity: None,
            active: true,
            updated_at: None,
            extra: Map::new(),
        }
    }
}

impl Validate for Product {
    fn validate(&self) -> Result<(), ModelError> {
        check_identity(self.id.as_deref(), &self.external_refs)?;
        require_text(&self.sku, || "sku".into())?;
        require_text(&self.name, || "name".into())?;
        non_negative(self.unit_price, || "unit_price".into())?;
        // Stock may be negative (back orders); a tax rate may not.
        self.tax_rate
            .map_or(Ok(()), |r| non_negative(r, || "tax_rate".into()))
    }
}

impl Entity for Product {
    const STREAM: &'static str = "products";
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn round_trips_with_amounts_as_strings() {
        let payload = json!({
            "sku": "WID-1",
            "name": "Widget",
            "unit_price": "0.125",
            "currency": "EUR",
            "tax_rate": "19",
            "stock_quantity": "-3",
            "active": false
        });
        let p: Product = serde_json::from_value(payload.clone()).unwrap();
        assert_eq!(p.unit_price, d("0.125"));
        assert_eq!(p.stock_quantity, Some(d("-3")));
        assert_eq!(serde_json::to_value(&p).unwrap(), payload);
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn is_active_unless_told_otherwise_and_rejects_float_prices() {
        let p: Product =
            serde_json::from_value(json!({"sku": "A", "name": "B", "unit_price": "1"})).unwrap();
        assert!(p.active);
        assert_eq!(p.tax_rate, None);
        let e =
            serde_json::from_value::<Product>(json!({"sku": "A", "name": "B", "unit_price": 1.5}))
                .unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let field = |p: Product| p.validate().unwrap_err().field().unwrap().to_string();
        assert_eq!(field(Product::new("", "Widget", d("1"))), "sku");
        assert_eq!(field(Product::new("W", "", d("1"))), "name");
        assert_eq!(field(Product::new("W", "Widget", d("-1"))), "unit_price");
        let mut p = Product::new("W", "Widget", d("1"));
        p.tax_rate = Some(d("-5"));
        assert_eq!(field(p), "tax_rate");
    }
}
