//! Installs Tryton ERP from PyPI for the Tryton connector's tests and
//! demos: a virtualenv at `target/tryton` (where `nexo_sandbox::tryton`
//! looks for it) with pinned versions of trytond and its modules.

use std::path::PathBuf;

use anyhow::Result;

/// Exact versions installed; `pip` resolves nothing else from the index
/// except these packages' own dependencies. The modules of one Tryton
/// series (8.2) go together.
pub const REQUIREMENTS: &[&str] = &[
    "trytond==8.2.1",
    "trytond_party==8.2.0",
    "trytond_company==8.2.0",
    "trytond_currency==8.2.0",
    "trytond_country==8.2.0",
    "trytond_product==8.2.0",
    "trytond_account==8.2.1",
    "trytond_account_product==8.2.0",
    "trytond_account_invoice==8.2.0",
    "trytond_account_invoice_stock==8.2.0",
    "trytond_stock==8.2.1",
    "trytond_sale==8.2.0",
    "proteus==8.2.0",
];

/// The virtualenv: `$NEXO_TRYTON_HOME`, else `target/tryton` of the workspace.
fn home() -> PathBuf {
    match std::env::var_os("NEXO_TRYTON_HOME") {
        Some(h) => PathBuf::from(h),
        None => crate::root().join("target").join("tryton"),
    }
}

/// Creates the virtualenv and installs [`REQUIREMENTS`]; does nothing when
/// every pin is installed already.
pub fn setup() -> Result<()> {
    crate::venv::ensure("tryton", &home(), REQUIREMENTS)
}
