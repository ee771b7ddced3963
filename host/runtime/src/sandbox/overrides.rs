//! Origin overrides: a sandbox connection's admin points an origin the
//! plugin declares (the *logical* origin, `https://api.xero.com`) at another
//! server (the *physical* one, `http://127.0.0.1:7402`). Everything the
//! policy decides — declared ∩ granted, which secret goes where — is decided
//! on the logical origin; only the request's scheme, host and port are
//! replaced when it is sent. The plugin never names the physical origin:
//! if it does, that origin is checked as any other (and is not declared).
//! The host's own requests on a connection's behalf (OAuth token endpoint,
//! tenants list, the authorization URL) go through [`Overrides::physical`]
//! too, so they reach the same sandbox.

use std::collections::BTreeMap;

use url::Url;

use super::policy::{HostPattern, Origin, OriginPattern};

/// An override that cannot be used, naming the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// One side is not one exact `scheme://host:port`.
    #[error(
        "origin override {which} `{origin}` must be one exact origin `scheme://host:port` (no path, no wildcard): {reason}"
    )]
    NotExact {
        /// `FROM` or `TO`.
        which: &'static str,
        /// What was given.
        origin: String,
        /// Why it is not one.
        reason: String,
    },
    /// The same `FROM` twice.
    #[error("origin {0} is overridden twice; give one --origin-override per origin")]
    Twice(String),
}

/// The exact origin `text` names: `scheme://host[:port]` with no wildcard
/// and no path (the port defaults by scheme).
pub fn exact_origin(which: &'static str, text: &str) -> Result<Origin, OverrideError> {
    let not = |reason: String| OverrideError::NotExact {
        which,
        origin: text.to_string(),
        reason,
    };
    let pattern = OriginPattern::parse(text).map_err(|e| not(e.to_string()))?;
    match (&pattern.host, pattern.port) {
        (HostPattern::Exact(host), Some(port)) => Ok(Origin {
            scheme: pattern.scheme.clone(),
            host: host.clone(),
            port,
        }),
        _ => Err(not("it has a wildcard".into())),
    }
}

/// A connection's origin overrides, logical → physical. Empty for every
/// production connection (the registry refuses overrides there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    // Keyed by the logical origin's text (`Origin` has no order).
    map: BTreeMap<String, (Origin, Origin)>,
}

impl Overrides {
    /// No override.
    pub fn none() -> Self {
        Overrides::default()
    }

    /// Overrides from `FROM` → `TO` pairs as stored on a connection
    /// (`ConnectionGrants::origin_overrides`): each side one exact origin,
    /// each `FROM` once. Whether `FROM` is the plugin's and the connection a
    /// sandbox one is the registry's check, made when the pair is saved.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Self, OverrideError> {
        let mut map = BTreeMap::new();
        for (from, to) in pairs {
            let logical = exact_origin("FROM", from)?;
            let physical = exact_origin("TO", to)?;
            let key = logical.to_string();
            if map.insert(key.clone(), (logical, physical)).is_some() {
                return Err(OverrideError::Twice(key));
            }
        }
        Ok(Overrides { map })
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Each override, logical → physical, in the logical origin's order.
    pub fn iter(&self) -> impl Iterator<Item = (&Origin, &Origin)> {
        self.map.values().map(|(l, p)| (l, p))
    }

    /// Where requests to `logical` really go, if it is overridden.
    pub fn physical_origin(&self, logical: &Origin) -> Option<&Origin> {
        self.map.get(&logical.to_string()).map(|(_, p)| p)
    }

    /// Whether `origin` is the physical target of an override.
    pub fn is_target(&self, origin: &Origin) -> bool {
        self.map.values().any(|(_, p)| p == origin)
    }

    /// The hosts of the physical targets (the only hosts an overridden hop
    /// may resolve to internal addresses for).
    pub fn target_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.map.values().map(|(_, p)| p.host.clone()).collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// `url` with its scheme, host and port replaced by the override of its
    /// origin (path, query and fragment kept); `url` itself when its origin
    /// is not overridden.
    pub fn physical(&self, url: &Url) -> Url {
        match Origin::of(url).and_then(|o| self.physical_origin(&o)) {
            Some(to) => with_origin(url, to),
            None => url.clone(),
        }
    }

    /// A redirect target back in logical terms: a URL on the physical origin
    /// of `current` (the logical origin of the hop that answered) maps back
    /// to `current`'s logical origin; any other URL stays as it is, to be
    /// checked as any redirect is.
    pub fn logical(&self, current: &Origin, url: &Url) -> Url {
        match (Origin::of(url), self.physical_origin(current)) {
            (Some(o), Some(physical)) if &o == physical => with_origin(url, current),
            _ => url.clone(),
        }
    }
}

/// `url` on `origin` (scheme, host, port), the rest kept.
fn with_origin(url: &Url, origin: &Origin) -> Url {
    let host = if origin.host.contains(':') {
        format!("[{}]", origin.host)
    } else {
        origin.host.clone()
    };
    let text = format!(
        "{}://{}:{}{}",
        origin.scheme,
        host,
        origin.port,
        &url[url::Position::BeforePath..]
    );
    // Every part came from a parsed URL and an exact origin.
    Url::parse(&text).unwrap_or_else(|_| url.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> Result<Overrides, OverrideError> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Overrides::parse(owned.iter().map(|(a, b)| (a, b)))
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_logical_url_goes_to_the_physical_origin_with_its_path_and_query() {
        let o = overrides(&[("https://api.xero.com", "http://127.0.0.1:7402")]).unwrap();
        assert_eq!(
            o.physical(&url("https://api.xero.com/api.xro/2.0/Invoices?page=2"))
                .as_str(),
            "http://127.0.0.1:7402/api.xro/2.0/Invoices?page=2"
        );
        assert_eq!(
            o.physical(&url("https://api.xero.com:443/x")).as_str(),
            "http://127.0.0.1:7402/x",
            "the default port is the same origin"
        );
        for other in [
            "https://api.xero.com:8443/x",
            "http://api.xero.com/x",
            "https://identity.xero.com/x",
            "http://127.0.0.1:7402/x",
        ] {
            assert_eq!(o.physical(&url(other)).as_str(), other, "{other}");
        }
    }

    #[test]
    fn a_redirect_to_the_physical_origin_maps_back_and_no_other() {
        let o = overrides(&[("https://api.xero.com", "http://127.0.0.1:7402")]).unwrap();
        let current = exact_origin("FROM", "https://api.xero.com").unwrap();
        assert_eq!(
            o.logical(&current, &url("http://127.0.0.1:7402/next?a=1"))
                .as_str(),
            "https://api.xero.com/next?a=1"
        );
        assert_eq!(
            o.logical(&current, &url("http://127.0.0.1:7403/next"))
                .as_str(),
            "http://127.0.0.1:7403/next"
        );
    }

    #[test]
    fn each_side_is_one_exact_origin() {
        for (from, to) in [
            ("https://*.xero.com", "http://127.0.0.1:1"),
            ("https://api.xero.com", "http://127.0.0.1:*"),
            ("https://api.xero.com", "http://127.0.0.1:1/path"),
            ("api.xero.com", "http://127.0.0.1:1"),
        ] {
            let e = overrides(&[(from, to)]).unwrap_err();
            assert!(e.to_string().contains("scheme://host:port"), "{e}");
        }
        let e = overrides(&[
            ("https://api.xero.com", "http://127.0.0.1:1"),
            ("https://api.xero.com:443", "http://127.0.0.1:2"),
        ])
        .unwrap_err();
        assert!(matches!(e, OverrideError::Twice(_)), "{e}");
        let ipv6 = overrides(&[("https://api.xero.com", "http://[::1]:9")]).unwrap();
        assert_eq!(
            ipv6.physical(&url("https://api.xero.com/a")).as_str(),
            "http://[::1]:9/a"
        );
    }
}
