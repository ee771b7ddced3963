//! Secrets by reference: plugins write `{{secret:NAME}}`, the host fills in
//! the value at send time, only for origins the secret is bound to.
//!
//! Secret values live in [`SecretValue`], whose `Debug` and `Display` print
//! a placeholder, so a value cannot leak through a log line or an error by
//! accident; and a [`SecretSet`] scrubs its values out of what comes back
//! ([`SecretSet::redactor`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::credential::{Credential, Token};
use super::policy::{Origin, OriginPattern};
use super::redact::Redactor;

/// A secret's value. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }
    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// A secret with the origins it may be sent to.
#[derive(Debug, Clone)]
pub struct BoundSecret {
    /// The value.
    pub value: SecretValue,
    /// Origins it is bound to: those the plugin declared for it that the admin
    /// also granted.
    pub origins: Vec<OriginPattern>,
}

/// A secret whose value the host keeps fresh (an OAuth 2.0 access
/// token), with the origins it may be sent to.
#[derive(Debug, Clone)]
pub struct FreshSecret {
    /// Where its current value comes from.
    pub credential: Arc<dyn Credential>,
    /// Origins it is bound to, as for a [`BoundSecret`].
    pub origins: Vec<OriginPattern>,
}

/// The secrets of one connection.
#[derive(Debug, Clone, Default)]
pub struct SecretSet {
    secrets: BTreeMap<String, BoundSecret>,
    fresh: BTreeMap<String, FreshSecret>,
    /// Built on first use, dropped on insert.
    redactor: OnceLock<Redactor>,
}

/// Why a template could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretDenial {
    /// No secret of that name is configured.
    #[error("secret `{0}` is not configured for this connection")]
    Unknown(String),
    /// The secret exists but may not go to this origin.
    #[error("secret `{name}` is not bound to origin {origin}")]
    NotBound {
        /// Secret name.
        name: String,
        /// Where the request was going.
        origin: Origin,
    },
    /// A `{{secret:` without its closing `}}`.
    #[error("malformed secret template (expected {{{{secret:NAME}}}})")]
    Malformed,
}

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

impl SecretSet {
    /// Add a secret.
    pub fn insert(&mut self, name: impl Into<String>, secret: BoundSecret) {
        self.secrets.insert(name.into(), secret);
        self.redactor = OnceLock::new();
    }

    /// Add a secret whose value the host keeps fresh; it replaces a
    /// static one of the same name.
    pub fn insert_fresh(&mut self, name: impl Into<String>, secret: FreshSecret) {
        let name = name.into();
        self.secrets.remove(&name);
        self.fresh.insert(name, secret);
        self.redactor = OnceLock::new();
    }

    /// Whether a secret of this name is configured.
    pub fn is_set(&self, name: &str) -> bool {
        self.secrets.contains_key(name) || self.fresh.contains_key(name)
    }

    /// The credential of a kept-fresh secret.
    pub fn credential(&self, name: &str) -> Option<&Arc<dyn Credential>> {
        self.fresh.get(name).map(|f| &f.credential)
    }

    /// Whether any secret is kept fresh (its values are then scrubbed by
    /// the process-wide redactor, which learns each new one).
    pub fn has_fresh(&self) -> bool {
        !self.fresh.is_empty()
    }

    /// The kept-fresh secrets that `texts` name and that may go to
    /// `origin`: those whose current value a request to `origin` needs.
    pub fn fresh_needed<'a>(
        &'a self,
        texts: impl IntoIterator<Item = &'a str>,
        origin: &Origin,
    ) -> Vec<(&'a str, &'a Arc<dyn Credential>)> {
        let mut out: Vec<(&str, &Arc<dyn Credential>)> = Vec::new();
        for text in texts {
            let mut rest = text;
            while let Some(start) = rest.find(OPEN) {
                let after = &rest[start + OPEN.len()..];
                let Some(end) = after.find(CLOSE) else { break };
                let name = after[..end].trim();
                if let Some((key, f)) = self.fresh.get_key_value(name)
                    && f.origins.iter().any(|p| p.matches(origin))
                    && !out.iter().any(|(n, _)| *n == key.as_str())
                {
                    out.push((key.as_str(), &f.credential));
                }
                rest = &after[end + CLOSE.len()..];
            }
        }
        out
    }

    /// Whether `text` contains a secret template.
    pub fn has_template(text: &str) -> bool {
        text.contains(OPEN)
    }

    /// `text` with every `{{secret:NAME}}` replaced by the value, if each named
    /// secret is bound to `origin`.
    pub fn substitute(&self, text: &str, origin: &Origin) -> Result<String, SecretDenial> {
        self.substitute_with(text, origin, &BTreeMap::new())
    }

    /// [`SecretSet::substitute`], with the current values of kept-fresh
    /// secrets in `tokens` (see [`SecretSet::fresh_needed`]).
    pub fn substitute_with(
        &self,
        text: &str,
        origin: &Origin,
        tokens: &BTreeMap<String, Token>,
    ) -> Result<String, SecretDenial> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let end = after.find(CLOSE).ok_or(SecretDenial::Malformed)?;
            let name = after[..end].trim();
            let (origins, value) = match (self.secrets.get(name), self.fresh.get(name)) {
                (Some(secret), _) => (&secret.origins, Some(&secret.value)),
                (None, Some(fresh)) => (&fresh.origins, tokens.get(name).map(|t| &t.value)),
                (None, None) => return Err(SecretDenial::Unknown(name.to_string())),
            };
            if !origins.iter().any(|p| p.matches(origin)) {
                return Err(SecretDenial::NotBound {
                    name: name.to_string(),
                    origin: origin.clone(),
                });
            }
            let value = value.ok_or_else(|| SecretDenial::Unknown(name.to_string()))?;
            out.push_str(value.expose());
            rest = &after[end + CLOSE.len()..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The redactor of these secrets: every value of the set, in every
    /// encoding it may come back in, replaced by `[redacted:NAME]`.
    pub fn redactor(&self) -> &Redactor {
        self.redactor
            .get_or_init(|| Redactor::new(self.secrets.iter().map(|(n, s)| (n.as_str(), &s.value))))
    }

    /// `text` with every value of the set replaced by its marker (for
    /// messages that might echo a request back, such as a server's error
    /// body).
    pub fn redact(&self, text: &str) -> String {
        self.redactor().scrub(text).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> SecretSet {
        let mut s = SecretSet::default();
        s.insert(
            "token",
            BoundSecret {
                value: SecretValue::new("s3cr3t-value"),
                origins: vec![OriginPattern::parse("https://api.crm.test").unwrap()],
            },
        );
        s
    }

    fn origin(u: &str) -> Origin {
        Origin::of(&url::Url::parse(u).unwrap()).unwrap()
    }

    #[test]
    fn substitutes_only_for_bound_origins() {
        let s = set();
        assert_eq!(
            s.substitute("Bearer {{secret:token}}", &origin("https://api.crm.test/x"))
                .unwrap(),
            "Bearer s3cr3t-value"
        );
        assert!(matches!(
            s.substitute("Bearer {{secret:token}}", &origin("https://evil.test/")),
            Err(SecretDenial::NotBound { .. })
        ));
        assert!(matches!(
            s.substitute("{{secret:nope}}", &origin("https://api.crm.test/")),
            Err(SecretDenial::Unknown(_))
        ));
        assert_eq!(
            s.substitute("{{secret:token", &origin("https://api.crm.test/")),
            Err(SecretDenial::Malformed)
        );
    }

    #[test]
    fn values_never_print() {
        let s = set();
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let err = s
            .substitute("{{secret:token}}", &origin("https://evil.test/"))
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
        assert_eq!(s.redact("echo: s3cr3t-value!"), "echo: [redacted:token]!");
    }
}
