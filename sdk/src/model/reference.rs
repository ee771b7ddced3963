//! `ExternalRef`: how one record points at another record, here or in another
//! system, without the model knowing any system's id format.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::error::{path, require_text};

/// A record in a named system: `{"system": "xero", "id": "8f2c…"}`.
///
/// `system` is the connector's short name for the system (`hubspot`, `xero`);
/// `id` is the record's id there, verbatim (ids are opaque text: never parse
/// them as numbers). Both must be non-empty.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub struct ExternalRef {
    /// The system's short name, e.g. `xero`.
    pub system: String,
    /// The record's id in that system.
    pub id: String,
}

impl ExternalRef {
    /// A reference to record `id` in `system`.
    pub fn new(system: impl Into<String>, id: impl Into<String>) -> Self {
        ExternalRef {
            system: system.into(),
            id: id.into(),
        }
    }

    /// Checks both parts are non-empty, reporting paths under `at`.
    pub(crate) fn check_at(&self, at: &str) -> Result<(), ModelError> {
        require_text(&self.system, || path(at, "system"))?;
        require_text(&self.id, || path(at, "id"))
    }
}

impl fmt::Display for ExternalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.system, self.id)
    }
}

impl super::Validate for ExternalRef {
    fn validate(&self) -> Result<(), ModelError> {
        self.check_at("")
    }
}

/// The identity fields every entity shares: its own id (if it has one yet)
/// and its ids in other systems.
pub(crate) fn check_identity(
    id: Option<&str>,
    external_refs: &[ExternalRef],
) -> Result<(), ModelError> {
    super::error::optional_text(id, || "id".into())?;
    for (i, r) in external_refs.iter().enumerate() {
        r.check_at(&format!("external_refs[{i}]"))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::Validate;

    #[test]
    fn requires_system_and_id() {
        assert!(ExternalRef::new("xero", "42").validate().is_ok());
        assert_eq!(
            ExternalRef::new("", "42").validate().unwrap_err().field(),
            Some("system")
        );
        assert_eq!(
            ExternalRef::new("xero", " ")
                .check_at("customer")
                .unwrap_err()
                .field(),
            Some("customer.id")
        );
    }

    #[test]
    fn identity_paths_index_the_refs() {
        let refs = [ExternalRef::new("a", "1"), ExternalRef::new("b", "")];
        let e = check_identity(Some("7"), &refs).unwrap_err();
        assert_eq!(e.field(), Some("external_refs[1].id"));
        assert_eq!(
            check_identity(Some(""), &[]).unwrap_err().field(),
            Some("id")
        );
    }

    #[test]
    fn serialises_as_system_and_id_and_displays_compactly() {
        let r = ExternalRef::new("hubspot", "0012");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"system":"hubspot","id":"0012"}"#);
        assert_eq!(serde_json::from_str::<ExternalRef>(&json).unwrap(), r);
        assert_eq!(r.to_string(), "hubspot:0012");
    }
}
