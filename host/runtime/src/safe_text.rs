//! Text from plugins and remote systems, made safe to show a person.
//!
//! A plugin's log line, a record id or a remote system's error message can
//! carry terminal control sequences (`ESC ]0;title BEL`, `ESC [2J`, the
//! 8-bit `CSI`), bidirectional overrides that reorder what is displayed, or
//! a newline followed by a well-formed host log line. Printed raw, they
//! retitle and clear the admin's terminal or forge log entries. Every CLI
//! output and text log line that can carry such text goes through
//! [`SafeText`] (or [`safe_json`] for JSON output), which shows those
//! characters as visible escapes (`\x1b`, `\u{9b}`, `\n`) instead.

use std::fmt;

/// Whether `c` must not reach a terminal raw: C0 controls but tab and
/// newline (newline is decided by the caller), DEL, C1 controls, the
/// bidirectional embedding/override/isolate marks and the Unicode line and
/// paragraph separators.
fn is_hostile(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}

/// How newlines are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Newlines {
    /// Escaped: the text stays on one line (log messages, table cells).
    Escape,
    /// Kept where the next line is indented (a multi-line error's
    /// continuation), escaped where it would start a line at the left edge:
    /// no line can pass for one the host wrote.
    Indented,
}

/// Text shown with its control characters escaped; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct SafeText<'a> {
    text: &'a str,
    newlines: Newlines,
}

impl<'a> SafeText<'a> {
    /// `text` on one line: newlines and carriage returns are escaped too.
    pub fn line(text: &'a str) -> Self {
        SafeText {
            text,
            newlines: Newlines::Escape,
        }
    }

    /// `text` that may span lines (an error with its causes): a newline is
    /// kept only before an indented line.
    pub fn block(text: &'a str) -> Self {
        SafeText {
            text,
            newlines: Newlines::Indented,
        }
    }
}

fn write_escaped(f: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        c if (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32),
        c => write!(f, "\\u{{{:x}}}", c as u32),
    }
}

impl fmt::Display for SafeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut clean_from = 0;
        let mut chars = self.text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let escape = match c {
                '\n' => {
                    self.newlines == Newlines::Escape
                        || !matches!(chars.peek(), Some((_, ' ' | '\t')))
                }
                c => is_hostile(c),
            };
            if escape {
                f.write_str(&self.text[clean_from..at])?;
                write_escaped(f, c)?;
                clean_from = at + c.len_utf8();
            }
        }
        f.write_str(&self.text[clean_from..])
    }
}

/// JSON text (from `serde_json`) with the characters serde leaves raw
/// inside strings (DEL, C1, bidirectional marks, line separators) written
/// as `\uXXXX` escapes: the same JSON value, safe on a terminal. serde
/// already escapes C0 controls, quotes and backslashes.
pub fn safe_json(json: String) -> String {
    if !json.chars().any(is_hostile) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_hostile(c) {
            // All of them are in the Basic Multilingual Plane: one escape.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_shown_escaped() {
        let text = "a\x1b]0;pwned\x07\x1b[2J\u{9b}31m\u{7f}\u{202e}b\tc";
        assert_eq!(
            SafeText::line(text).to_string(),
            "a\\x1b]0;pwned\\x07\\x1b[2J\\u{9b}31m\\x7f\\u{202e}b\tc"
        );
    }

    #[test]
    fn a_line_stays_one_line() {
        let text = "ok\n2026-12-05T00:00:00Z  INFO nexo: forged\r";
        assert_eq!(
            SafeText::line(text).to_string(),
            "ok\\n2026-12-05T00:00:00Z  INFO nexo: forged\\r"
        );
    }

    #[test]
    fn a_block_keeps_indented_lines_only() {
        let text = "mismatch:\n  - kind\n  - origins\nerror: forged";
        assert_eq!(
            SafeText::block(text).to_string(),
            "mismatch:\n  - kind\n  - origins\\nerror: forged"
        );
        assert_eq!(SafeText::block("plain é ✓").to_string(), "plain é ✓");
    }

    #[test]
    fn json_stays_the_same_value() {
        let value = serde_json::json!({"id": "x\x1b[2J\u{9b}1m\u{7f}\u{2028}"});
        let text = safe_json(serde_json::to_string(&value).unwrap_or_default());
        assert!(!text.chars().any(|c| c.is_control()), "{text}");
        assert!(
            text.contains("\\u009b") && text.contains("\\u007f"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, value);
    }
}
