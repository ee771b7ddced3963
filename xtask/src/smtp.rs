//! Installs a real SMTP server from PyPI for the alert e-mail tests: a
//! virtualenv at `target/smtp` (override with `NEXO_SMTP_HOME`) holding a
//! pinned aiosmtpd, which `tests/src/smtp.rs` starts on 127.0.0.1 with a
//! handler that writes each message it receives to a directory.

use std::path::PathBuf;

use anyhow::Result;

/// Exact versions installed (aiosmtpd 1.4.6 and what it needs).
pub const REQUIREMENTS: &[&str] = &["aiosmtpd==1.4.6", "atpublic==9.0.0", "attrs==26.1.0"];

/// The virtualenv: `$NEXO_SMTP_HOME`, else `target/smtp` of the workspace.
fn home() -> PathBuf {
    match std::env::var_os("NEXO_SMTP_HOME") {
        Some(h) => PathBuf::from(h),
        None => crate::root().join("target").join("smtp"),
    }
}

/// Creates the virtualenv and installs [`REQUIREMENTS`]; does nothing when
/// every pin is installed already.
pub fn setup() -> Result<()> {
    crate::venv::ensure("smtp (alert tests)", &home(), REQUIREMENTS)
}
