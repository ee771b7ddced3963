//! Outbound network policy: which origins a plugin may reach.
//!
//! A request is allowed when its origin matches a pattern the plugin
//! *declared* and a pattern the admin *granted*. Names that resolve to
//! loopback, private, link-local or otherwise internal addresses are refused
//! unless the admin's grant for that host explicitly allows private
//! addresses. The check runs on the URL before sending, on every redirect
//! hop, and on the resolved addresses at connect time (so DNS rebinding
//! cannot slip an internal address past a public name).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::Url;

pub use super::address::is_public;

/// Why an origin pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid origin pattern `{pattern}`: {reason} (expected scheme://host[:port], e.g. https://api.example.com or https://*.example.com)"
)]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HostPattern {
    /// Any host (a plugin for self-hosted systems declares this; the admin's
    /// grant then decides).
    Any,
    /// This host exactly (lower-case; IPv6 without brackets).
    Exact(String),
    /// Any subdomain of this suffix (`*.example.com` matches `a.example.com`,
    /// not `example.com`).
    Subdomain(String),
}

/// `scheme://host[:port]` with `*` allowed as the whole host, as the first
/// host label (`*.example.com`) or as the port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OriginPattern {
    /// `http` or `https`.
    pub scheme: String,
    /// Host part.
    pub host: HostPattern,
    /// Port; `None` means any port.
    pub port: Option<u16>,
}

impl OriginPattern {
    /// Parse a pattern such as `https://api.example.com`, `http://127.0.0.1:8080`,
    /// `https://*.example.com` or `http://*:*`.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let err = |reason| PatternError {
            pattern: pattern.to_string(),
            reason,
        };
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| err("missing `://`"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(err("scheme must be http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(err("missing host"));
        }
        if rest.contains('/') || rest.contains('?') || rest.contains('#') || rest.contains('@') {
            return Err(err("an origin has no path, query, fragment or user"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| err("malformed host or port"))?;
        let port = match port {
            None => Some(default_port),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| err("port must be 1-65535 or *"))?,
            ),
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(err("`*` may only be the first host label"));
            }
            HostPattern::Subdomain(suffix.to_ascii_lowercase())
        } else if host.contains('*') {
            return Err(err("`*` may only be the first host label"));
        } else {
            HostPattern::Exact(host.to_ascii_lowercase())
        };
        Ok(OriginPattern { scheme, host, port })
    }

    /// Whether `origin` matches.
    pub fn matches(&self, origin: &Origin) -> bool {
        if self.scheme != origin.scheme {
            return false;
        }
        if let Some(p) = self.port
            && p != origin.port
        {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == origin.host,
            HostPattern::Subdomain(s) => origin
                .host
                .strip_suffix(s.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        }
    }

    /// Whether this pattern names exactly one host (no wildcard host).
    pub fn is_exact_host(&self) -> bool {
        matches!(self.host, HostPattern::Exact(_))
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        match &self.host {
            HostPattern::Any => write!(f, "*")?,
            HostPattern::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostPattern::Exact(h) => write!(f, "{h}")?,
            HostPattern::Subdomain(s) => write!(f, "*.{s}")?,
        }
        match self.port {
            None => write!(f, ":*"),
            Some(80) if self.scheme == "http" => Ok(()),
            Some(443) if self.scheme == "https" => Ok(()),
            Some(p) => write!(f, ":{p}"),
        }
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

/// The origin of a concrete URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host; IPv6 without brackets.
    pub host: String,
    /// Port (default filled in).
    pub port: u16,
}

impl Origin {
    /// The origin of `url`, if it is http(s) with a host.
    pub fn of(url: &Url) -> Option<Self> {
        let scheme = url.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        Some(Origin {
            port: url.port_or_known_default()?,
            scheme,
            host,
        })
    }

    /// The host as an IP address, when the URL names one directly.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// An admin's grant of outbound HTTP to origins matching `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpGrant {
    /// Origins granted.
    pub pattern: OriginPattern,
    /// Whether the host may resolve to loopback/private/link-local addresses
    /// (an on-premises ERP, a test server). Only honoured for exact hosts.
    pub allow_private: bool,
}

impl HttpGrant {
    /// A grant for public addresses only.
    pub fn public(pattern: &str) -> Result<Self, PatternError> {
        Ok(HttpGrant {
            pattern: OriginPattern::parse(pattern)?,
            allow_private: false,
        })
    }
    /// A grant that also allows internal addresses for this exact host.
    pub fn private(pattern: &str) -> Result<Self, PatternError> {
        let pattern = OriginPattern::parse(pattern)?;
        if !pattern.is_exact_host() {
            return Err(PatternError {
                pattern: pattern.to_string(),
                reason: "a grant to internal addresses must name one exact host",
            });
        }
        Ok(HttpGrant {
            pattern,
            allow_private: true,
        })
    }
}

/// Why a request was refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The plugin did not declare the origin.
    #[error("origin {0} is not declared by the plugin")]
    NotDeclared(Origin),
    /// The admin did not grant the origin.
    #[error("origin {0} is not granted to this plugin (grant it with --grant-http)")]
    NotGranted(Origin),
    /// The origin resolves to (or is) an internal address not allowed.
    #[error(
        "{origin} resolves to internal address {ip}, which is not granted (grant the exact host with --grant-private-http)"
    )]
    InternalAddress {
        /// The origin.
        origin: Origin,
        /// The address it resolved to.
        ip: IpAddr,
    },
}

/// Declared ∩ granted origins, checked at the `http` import for every
/// request and every redirect hop.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    declared: Vec<OriginPattern>,
    granted: Vec<HttpGrant>,
}

impl OutboundPolicy {
    /// The policy for a plugin that declared `declared` and was granted `granted`.
    pub fn new(declared: Vec<OriginPattern>, granted: Vec<HttpGrant>) -> Self {
        OutboundPolicy { declared, granted }
    }

    /// Whether a request to `origin` may be sent at all.
    pub fn check_origin(&self, origin: &Origin) -> Result<(), Denial> {
        if !self.declared.iter().any(|p| p.matches(origin)) {
            return Err(Denial::NotDeclared(origin.clone()));
        }
        if !self.granted.iter().any(|g| g.pattern.matches(origin)) {
            return Err(Denial::NotGranted(origin.clone()));
        }
        if let Some(ip) = origin.ip() {
            self.check_address(&origin.host, ip)
                .map_err(|ip| Denial::InternalAddress {
                    origin: origin.clone(),
                    ip,
                })?;
        }
        Ok(())
    }

    /// Whether `host` may connect to `ip` (called for every resolved address).
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), IpAddr> {
        if is_public(ip) || self.private_allowed(host) {
            Ok(())
        } else {
            Err(ip)
        }
    }

    fn private_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.granted.iter().any(|g| {
            g.allow_private && matches!(&g.pattern.host, HostPattern::Exact(h) if *h == host)
        })
    }

    /// Origins that are both declared and granted, for display.
    pub fn granted(&self) -> &[HttpGrant] {
        &self.granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(u: &str) -> Origin {
        Origin::of(&Url::parse(u).unwrap()).unwrap()
    }

    #[test]
    fn patterns_parse_and_print() {
        for (input, shown) in [
            ("https://api.example.com", "https://api.example.com"),
            ("https://API.example.com:443/", "https://api.example.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://*.hubspot.com", "https://*.hubspot.com"),
            ("http://*:*", "http://*:*"),
            ("http://[::1]:9000", "http://[::1]:9000"),
        ] {
            assert_eq!(
                OriginPattern::parse(input).unwrap().to_string(),
                shown,
                "{input}"
            );
        }
        for bad in [
            "api.example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://a.*.com",
            "https://x.com:99999",
            "https://user@x.com",
            "https://",
        ] {
            let e = OriginPattern::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn matching_respects_scheme_host_and_port() {
        let p = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(p.matches(&origin("https://api.example.com/x")));
        assert!(!p.matches(&origin("https://example.com/")));
        assert!(!p.matches(&origin("https://evilexample.com/")));
        assert!(!p.matches(&origin("http://api.example.com/")));
        assert!(!p.matches(&origin("https://api.example.com:8443/")));
        let any_port = OriginPattern::parse("http://localhost:*").unwrap();
        assert!(any_port.matches(&origin("http://localhost:1234/")));
    }

    #[test]
    fn declared_and_granted_are_both_required() {
        let declared = vec![OriginPattern::parse("https://*.crm.test").unwrap()];
        let policy = OutboundPolicy::new(declared.clone(), vec![]);
        assert!(matches!(
            policy.check_origin(&origin("https://a.crm.test")),
            Err(Denial::NotGranted(_))
        ));
        let policy = OutboundPolicy::new(
            declared,
            vec![HttpGrant::public("https://b.crm.test").unwrap()],
        );
        assert!(policy.check_origin(&origin("https://b.crm.test")).is_ok());
        assert!(matches!(
            policy.check_origin(&origin("https://a.crm.test")),
            Err(Denial::NotGranted(_))
        ));
        let policy = OutboundPolicy::new(
            vec![],
            vec![HttpGrant::public("https://b.crm.test").unwrap()],
        );
        assert!(matches!(
            policy.check_origin(&origin("https://b.crm.test")),
            Err(Denial::NotDeclared(_))
        ));
    }

    #[test]
    fn internal_addresses_need_an_explicit_private_grant() {
        let any = vec![OriginPattern::parse("http://*:*").unwrap()];
        let public = OutboundPolicy::new(
            any.clone(),
            vec![HttpGrant::public("http://127.0.0.1:8080").unwrap()],
        );
        assert!(matches!(
            public.check_origin(&origin("http://127.0.0.1:8080")),
            Err(Denial::InternalAddress { .. })
        ));
        assert!(
            public
                .check_address("metadata.test", "169.254.169.254".parse().unwrap())
                .is_err()
        );
        let private = OutboundPolicy::new(
            any,
            vec![HttpGrant::private("http://127.0.0.1:8080").unwrap()],
        );
        assert!(
            private
                .check_origin(&origin("http://127.0.0.1:8080"))
                .is_ok()
        );
        assert!(HttpGrant::private("https://*.example.com").is_err());
    }
}
