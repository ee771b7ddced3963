//! Origin patterns (`scheme://host[:port]`, `*.` as the first host label, `*`
//! as the port): what a manifest declares and an admin grants, parsed into
//! one normal form so that declarations, grants and a component's `spec()`
//! compare by value.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::Url;
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
            HostPattern::Exact(canonical_host(host))
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

/// A host as [`Origin::of`] spells it, so that a pattern written
/// `http://[0:0::1]:8080`, `http://0x7f.1:8080` or `http://API.Example.com`
/// matches the URLs it names.
pub fn canonical_host(host: &str) -> String {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.to_string();
    }
    match url::Host::parse(host) {
        Ok(url::Host::Ipv4(ip)) => ip.to_string(),
        Ok(url::Host::Ipv6(ip)) => ip.to_string(),
        Ok(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Err(_) => host.to_ascii_lowercase(),
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
