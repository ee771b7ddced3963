//! What the command line writes to stderr: logs one line per event with
//! secrets scrubbed, errors with secret values replaced and control
//! characters escaped, and a quiet exit when the reader of stdout is gone.

use std::io::Write;

use crate::safe_text::SafeText;
use crate::sandbox::redact;

use super::LogFormat;

/// An error with its causes as printed on stderr: secret values replaced
/// (the last guard), control characters escaped — errors carry plugins'
/// and remote systems' words.
pub fn safe_error(e: &anyhow::Error) -> String {
    SafeText::block(&redact::scrub(&format!("{e:#}"))).to_string()
}

/// `nexo runs | head -1`: once the reader is gone, stop quietly with the
/// status a shell reports for SIGPIPE (141) instead of a panic message.
///
/// Rust ignores SIGPIPE, so a write to a closed pipe fails with `EPIPE` and
/// `println!` panics with "failed printing to stdout: Broken pipe". Turning
/// SIGPIPE back on would need `unsafe` and would also let a peer that
/// closes a socket kill `nexo serve`; this hook only catches that one
/// panic, and passes every other panic to the default hook.
pub(super) fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        let printing = message.starts_with("failed printing to stdout")
            || message.starts_with("failed printing to stderr");
        if printing && (message.contains("Broken pipe") || message.contains("os error 32")) {
            std::process::exit(141);
        }
        default(info);
    }));
}

pub fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEXO_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},cranelift=warn,wasmtime=warn"))
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLinePerEvent(redact::ScrubbingStderr))
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The text log's writer: whatever a field holds (a remote system's error
/// message, a plugin's words), an event stays one line, so no line of the
/// log can be forged. `tracing-subscriber` writes each event with one
/// `write_all` ending in a newline; newlines and carriage returns before
/// that end are written escaped. (Escape sequences are already escaped by
/// `tracing-subscriber` itself; JSON lines escape both.)
struct OneLinePerEvent<W>(W);

impl<W: Write> Write for OneLinePerEvent<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_event_stays_on_one_line() {
        let mut out = OneLinePerEvent(Vec::new());
        let event = b"2026-12-05T01:00:00Z  WARN nexo: failed error=HTTP 401: no\n2026-12-05T00:00:00Z  INFO nexo: forged\r\n";
        assert_eq!(out.write(event).unwrap(), event.len());
        out.write_all(b"next event\n").unwrap();
        let text = String::from_utf8(out.0).unwrap();
        assert_eq!(
            text,
            "2026-12-05T01:00:00Z  WARN nexo: failed error=HTTP 401: no\\n2026-12-05T00:00:00Z  INFO nexo: forged\\r\nnext event\n"
        );
    }
}
