//! Secret values scrubbed out of text that came from outside the host.
//!
//! A system that echoes request headers, or answers 401 quoting the
//! credential, hands the plaintext back. Two lines stop it:
//!
//! - every response a plugin gets has the values of its connection's
//!   secrets replaced by `[redacted:NAME]` (headers and body) before the
//!   plugin sees it ([`Redactor::scrub_bytes`], used by the `http`
//!   capability);
//! - every text the host keeps or shows that a plugin or a remote system
//!   wrote (plugin log lines, errors, records, kv values, dead letters, run
//!   log, the process's own log output) passes through [`scrub`], the same
//!   replacement for every secret value this process has opened
//!   ([`register`]). Values live in memory only, never written anywhere.
//!
//! Each value is searched in the forms a system may echo it in: as is,
//! base64 (standard and URL-safe, padded or not, and at each of the three
//! alignments it can take inside a longer base64 text such as basic auth's
//! `user:password`), percent-encoded, JSON-escaped, and hex.
//!
//! Values shorter than [`MIN_SECRET_BYTES`] are not searched for:
//! replacing every `abc` in every body would shred the data and still not
//! hide a value that short. `connection add` refuses such secrets.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use super::http::OutboundResponse;
use super::secrets::SecretValue;

/// The shortest secret value that is searched for and redacted, and the
/// shortest a connection accepts.
pub const MIN_SECRET_BYTES: usize = 8;

/// What a redacted value is replaced with: `[redacted:NAME]`.
pub fn marker(name: &str) -> String {
    format!("[redacted:{name}]")
}

/// A set of secret values and their encodings, searched all at once.
#[derive(Clone, Default)]
pub struct Redactor {
    search: Option<AhoCorasick>,
    /// The marker for each pattern, in pattern order.
    markers: Vec<Arc<str>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.markers.len())
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor for these `(name, value)` pairs. Values shorter than
    /// [`MIN_SECRET_BYTES`] are skipped.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a SecretValue)>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut markers: Vec<Arc<str>> = Vec::new();
        for (name, value) in secrets {
            let value = value.expose();
            if value.len() < MIN_SECRET_BYTES {
                continue;
            }
            let m: Arc<str> = marker(name).into();
            for form in forms(value) {
                if !patterns.contains(&form) {
                    patterns.push(form);
                    markers.push(m.clone());
                }
            }
        }
        if patterns.is_empty() {
            return Redactor::default();
        }
        // Leftmost-longest: the whole padded base64 wins over its core.
        match AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
        {
            Ok(search) => Redactor {
                search: Some(search),
                markers,
            },
            Err(e) => {
                // Only a pattern set beyond aho-corasick's size limits gets
                // here; refusing to redact would be worse than failing loud.
                tracing::error!(error = %e, "cannot build the secret redaction set");
                Redactor::default()
            }
        }
    }

    /// Whether nothing is searched for.
    pub fn is_empty(&self) -> bool {
        self.search.is_none()
    }

    /// `text` with every secret value replaced by its marker; borrowed (no
    /// copy) when none occurs.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(search) = &self.search else {
            return Cow::Borrowed(text);
        };
        if search.find(text).is_none() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        search.replace_all_with(text, &mut out, |m, _, dst| {
            dst.push_str(&self.markers[m.pattern().as_usize()]);
            true
        });
        Cow::Owned(out)
    }

    /// The same over bytes (a response body, a kv value).
    pub fn scrub_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        let Some(search) = &self.search else {
            return Cow::Borrowed(bytes);
        };
        if search.find(bytes).is_none() {
            return Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        search.replace_all_with_bytes(bytes, &mut out, |m, _, dst| {
            dst.extend_from_slice(self.markers[m.pattern().as_usize()].as_bytes());
            true
        });
        Cow::Owned(out)
    }

    /// Scrub a response's header values and body in place, before the
    /// plugin gets it.
    pub fn scrub_response(&self, response: &mut OutboundResponse) {
        if self.is_empty() {
            return;
        }
        for (_, value) in &mut response.headers {
            self.scrub_in_place(value);
        }
        if let Cow::Owned(body) = self.scrub_bytes(&response.body) {
            response.body = body;
        }
    }

    /// Scrub a string in place (no allocation when nothing matches).
    pub fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }
}

/// The forms of `value` searched for, each at least [`MIN_SECRET_BYTES`]
/// long (shorter fragments would match by chance).
fn forms(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut out = vec![value.to_string()];
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(bytes));
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes));
        // Inside a longer base64 text (basic auth's `user:password`, a
        // token in a JSON blob), the value starts at one of three
        // alignments; the characters that depend on its bytes alone are
        // those of the whole 3-byte groups it covers.
        for skip in 0..3 {
            let rest = bytes.get(skip..).unwrap_or_default();
            let whole = rest.len() / 3 * 3;
            out.push(engine.encode(&rest[..whole]));
        }
    }
    out.push(percent_encoded(bytes, false));
    out.push(percent_encoded(bytes, true));
    out.push(percent_encoded(bytes, false).replace("%20", "+"));
    if let Ok(json) = serde_json::to_string(value) {
        out.push(json[1..json.len() - 1].to_string());
    }
    out.push(json_ascii(value));
    out.push(hex::encode(bytes));
    out.push(hex::encode_upper(bytes));
    out.retain(|f| f.len() >= MIN_SECRET_BYTES);
    out.sort();
    out.dedup();
    out
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encoded(bytes: &[u8], lower: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ if lower => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// JSON string escaping that writes every non-ASCII character as `\uXXXX`
/// (what `ensure_ascii` encoders such as Python's produce).
fn json_ascii(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Most values of one secret name the process-wide set keeps (the newest).
pub const MAX_VALUES_PER_NAME: usize = 256;

/// The process-wide set: every secret value this process opened.
struct Registry {
    values: Vec<(String, SecretValue)>,
    redactor: Arc<Redactor>,
}

static REGISTERED: LazyLock<RwLock<Registry>> = LazyLock::new(|| {
    RwLock::new(Registry {
        values: Vec::new(),
        redactor: Arc::new(Redactor::default()),
    })
});

/// Add a secret value to the process-wide set every host sink scrubs
/// with. Called when a connection's secrets are opened for a plugin; a
/// value already registered costs a read lock.
pub fn register(name: &str, value: &SecretValue) {
    if value.expose().len() < MIN_SECRET_BYTES {
        return;
    }
    let known = |r: &Registry| r.values.iter().any(|(n, v)| n == name && v == value);
    {
        let r = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
        if known(&r) {
            return;
        }
    }
    let mut r = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if known(&r) {
        return;
    }
    r.values.push((name.to_string(), value.clone()));
    // A refreshed secret (an OAuth access token) gets a new value every
    // half hour for as long as the process runs; its old values expire
    // with it, so only the latest few of one name are kept searchable.
    let same_name = r.values.iter().filter(|(n, _)| n == name).count();
    if same_name > MAX_VALUES_PER_NAME
        && let Some(oldest) = r.values.iter().position(|(n, _)| n == name)
    {
        r.values.remove(oldest);
    }
    let redactor = Redactor::new(r.values.iter().map(|(n, v)| (n.as_str(), v)));
    r.redactor = Arc::new(redactor);
}

/// The process-wide redactor as it is now: take it once for a batch of
/// texts (a page of records) rather than per text.
pub fn current() -> Arc<Redactor> {
    REGISTERED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .redactor
        .clone()
}

/// `text` with every secret value this process opened replaced by its
/// marker; borrowed when none occurs.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let r = current();
    match r.scrub(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// [`scrub`] for an owned text: the same `String` back when nothing occurs.
pub fn scrub_string(text: String) -> String {
    match scrub(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(clean) => clean,
    }
}

/// [`scrub`] over bytes.
pub fn scrub_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let r = current();
    match r.scrub_bytes(bytes) {
        Cow::Borrowed(_) => Cow::Borrowed(bytes),
        Cow::Owned(b) => Cow::Owned(b),
    }
}

/// A `tracing` writer that scrubs each formatted event before it reaches
/// stderr: the last guard for every log line of the process, whatever field
/// carried the text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubbingStderr;

impl std::io::Write for ScrubbingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole event per call.
        std::io::stderr().write_all(&scrub_bytes(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingStderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "s3cr/t+\"val ue\u{e9}";

    fn redactor() -> Redactor {
        let v = SecretValue::new(VALUE);
        Redactor::new([("token", &v)])
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn every_encoding_of_the_value_is_replaced_by_the_marker() {
        let r = redactor();
        let json = serde_json::to_string(VALUE).unwrap();
        let cases = [
            ("plain", VALUE.to_string()),
            ("base64", b64(VALUE)),
            ("base64 no padding", STANDARD_NO_PAD.encode(VALUE)),
            ("base64url", URL_SAFE.encode(VALUE)),
            ("base64url no padding", URL_SAFE_NO_PAD.encode(VALUE)),
            ("percent upper", percent_encoded(VALUE.as_bytes(), false)),
            ("percent lower", percent_encoded(VALUE.as_bytes(), true)),
            (
                "form",
                percent_encoded(VALUE.as_bytes(), false).replace("%20", "+"),
            ),
            ("JSON", json[1..json.len() - 1].to_string()),
            ("JSON ASCII", json_ascii(VALUE)),
            ("hex", hex::encode(VALUE)),
            ("HEX", hex::encode_upper(VALUE)),
        ];
        for (what, form) in cases {
            let text = format!("before {form} after");
            let out = r.scrub(&text);
            assert_eq!(out, "before [redacted:token] after", "{what}: {form}");
        }
    }

    #[test]
    fn basic_auth_and_longer_base64_texts_lose_the_value_at_every_alignment() {
        let r = redactor();
        for user in ["", "a", "ab", "abc", "ada", "user@example.com"] {
            let basic = b64(&format!("{user}:{VALUE}"));
            let out = r.scrub(&basic);
            assert!(out.contains("[redacted:token]"), "{user}: {out}");
            // No run of the value's own base64 survives.
            let core = STANDARD_NO_PAD.encode(&VALUE.as_bytes()[3..9]);
            assert!(!out.contains(&core), "{user}: {out}");
            let longer = b64(&format!("{user}:{VALUE}:and more"));
            assert!(r.scrub(&longer).contains("[redacted:token]"), "{user}");
        }
    }

    #[test]
    fn bytes_headers_and_repeats() {
        let r = redactor();
        let body = format!("{{\"a\":\"{VALUE}\",\"b\":\"{}\"}}", b64(VALUE));
        let out = r.scrub_bytes(body.as_bytes());
        assert_eq!(
            String::from_utf8(out.into_owned()).unwrap(),
            "{\"a\":\"[redacted:token]\",\"b\":\"[redacted:token]\"}"
        );
        let mut header = format!("Bearer {VALUE}");
        r.scrub_in_place(&mut header);
        assert_eq!(header, "Bearer [redacted:token]");
    }

    #[test]
    fn nothing_to_find_borrows_and_short_values_are_not_searched() {
        let r = redactor();
        assert!(matches!(r.scrub("nothing here"), Cow::Borrowed(_)));
        assert!(matches!(r.scrub_bytes(b"nor here"), Cow::Borrowed(_)));
        let short = SecretValue::new("abc1234");
        let r = Redactor::new([("pin", &short)]);
        assert!(r.is_empty());
        assert_eq!(r.scrub("abc1234 stays"), "abc1234 stays");
        assert!(Redactor::default().is_empty());
    }

    #[test]
    fn the_process_wide_set_scrubs_what_was_registered() {
        let v = SecretValue::new("registered-value-93ab");
        assert_eq!(
            scrub("x registered-value-93ab y"),
            "x registered-value-93ab y"
        );
        register("api_token", &v);
        register("api_token", &v);
        assert_eq!(
            scrub("x registered-value-93ab y"),
            "x [redacted:api_token] y"
        );
        assert_eq!(
            scrub_bytes(b64("registered-value-93ab").as_bytes()).as_ref(),
            b"[redacted:api_token]"
        );
    }
}
