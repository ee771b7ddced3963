//! Helpers for tests that drive the `nexo` binary.

use std::process::Output;

/// The stdout of a command that must have succeeded (else its stderr).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "nexo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a command that must have failed (else its stdout).
pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
