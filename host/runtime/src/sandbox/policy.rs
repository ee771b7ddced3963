//! Outbound network policy: which origins a plugin may reach.
//!
//! A request is allowed when its origin matches a pattern the plugin
//! *declared* and a pattern the admin *granted*. Loopback, private,
//! link-local and otherwise internal addresses (IPv6 forms that embed an
//! internal IPv4 address included) are refused unless the request's origin
//! — scheme, host and port — equals a *private grant* exactly; a private
//! grant never opens other ports of the same host. The check runs on the
//! URL before sending, on every redirect hop, and on the resolved addresses
//! at connect time (so DNS rebinding cannot slip an internal address past a
//! public name).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use super::address::is_public;

pub use nexo_bundle::origin::{HostPattern, Origin, OriginPattern, PatternError, canonical_host};

/// An admin's grant of outbound HTTP to origins matching `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpGrant {
    /// Origins granted.
    pub pattern: OriginPattern,
    /// Whether requests to exactly this origin may reach loopback, private,
    /// link-local and other internal addresses (an on-premises ERP, a test
    /// server). Only for one exact origin: host *and* port.
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
    /// A grant that also allows internal addresses, for this one exact
    /// origin (`scheme://host:port`, no wildcard host or port).
    pub fn private(pattern: &str) -> Result<Self, PatternError> {
        let pattern = OriginPattern::parse(pattern)?;
        if !pattern.is_exact_host() || pattern.port.is_none() {
            return Err(PatternError {
                pattern: pattern.to_string(),
                reason: "a grant to internal addresses must name one exact host and port, e.g. http://10.0.0.5:8069",
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
    /// A self-hosted system's plugin called an origin its connection does
    /// not name.
    #[error(
        "origin {0} is not the server this connection names (name it with `nexo connection update NAME --grant-http {0}`, or --grant-private-http for an internal address)"
    )]
    NotNamedOnConnection(Origin),
    /// The origin resolves to (or is) an internal address not allowed.
    #[error(
        "{origin} resolves to internal address {ip}, which is not granted (grant this exact origin with --grant-private-http {origin})"
    )]
    InternalAddress {
        /// The origin.
        origin: Origin,
        /// The address it resolved to.
        ip: IpAddr,
    },
}

/// Which addresses one connection may reach. A request's origin picks it
/// ([`OutboundPolicy::scope_for`]); the resolver of the client that sends
/// the request enforces it on every address it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressScope {
    /// Public unicast addresses only: every origin that is not exactly a
    /// private grant.
    PublicOnly,
    /// Internal addresses too: only an origin equal to a private grant.
    PrivateGrant,
}

/// Declared ∩ granted origins, checked at the `http` import for every
/// request and every redirect hop.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    declared: Vec<OriginPattern>,
    granted: Vec<HttpGrant>,
    /// The plugin reaches the servers its connection names (so an origin
    /// outside them is the connection's to name, not the plugin's to
    /// declare).
    connection_origins: bool,
}

impl OutboundPolicy {
    /// The policy for a plugin that declared `declared` and was granted `granted`.
    pub fn new(declared: Vec<OriginPattern>, granted: Vec<HttpGrant>) -> Self {
        OutboundPolicy {
            declared,
            granted,
            connection_origins: false,
        }
    }

    /// The same policy for a plugin approved to reach the servers its
    /// connection names: a refused origin is reported as one the
    /// connection does not name, with the fix.
    pub fn for_connection_origins(mut self) -> Self {
        self.connection_origins = true;
        self
    }

    /// Whether a request to `origin` may be sent at all.
    pub fn check_origin(&self, origin: &Origin) -> Result<(), Denial> {
        if !self.declared.iter().any(|p| p.matches(origin)) {
            return Err(if self.connection_origins {
                Denial::NotNamedOnConnection(origin.clone())
            } else {
                Denial::NotDeclared(origin.clone())
            });
        }
        if !self.granted.iter().any(|g| g.pattern.matches(origin)) {
            return Err(Denial::NotGranted(origin.clone()));
        }
        if let Some(ip) = origin.ip() {
            self.check_address(self.scope_for(origin), &origin.host, ip)
                .map_err(|ip| Denial::InternalAddress {
                    origin: origin.clone(),
                    ip,
                })?;
        }
        Ok(())
    }

    /// Which addresses a request to `origin` may reach: internal ones only
    /// when `origin` equals a private grant exactly (scheme, host, port).
    pub fn scope_for(&self, origin: &Origin) -> AddressScope {
        let exact = self.granted.iter().any(|g| {
            g.allow_private
                && g.pattern.scheme == origin.scheme
                && g.pattern.port == Some(origin.port)
                && matches!(&g.pattern.host, HostPattern::Exact(h) if *h == origin.host)
        });
        if exact {
            AddressScope::PrivateGrant
        } else {
            AddressScope::PublicOnly
        }
    }

    /// Whether a connection in `scope` to `host` may reach `ip` (called for
    /// every resolved address, and for a literal IP in the URL). In
    /// [`AddressScope::PrivateGrant`], internal addresses are allowed only
    /// for a host that a private grant names.
    pub fn check_address(&self, scope: AddressScope, host: &str, ip: IpAddr) -> Result<(), IpAddr> {
        let allowed =
            is_public(ip) || (scope == AddressScope::PrivateGrant && self.names_private_host(host));
        if allowed { Ok(()) } else { Err(ip) }
    }

    fn names_private_host(&self, host: &str) -> bool {
        let host = canonical_host(host.trim_start_matches('[').trim_end_matches(']'));
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
    use proptest::prelude::*;
    use url::Url;

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
                .check_address(
                    AddressScope::PublicOnly,
                    "metadata.test",
                    "169.254.169.254".parse().unwrap()
                )
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Where `localhost`, and a rebinding attacker's public name, resolve.
    const LOOPBACK: [&str; 2] = ["127.0.0.1", "::1"];

    /// Whether a request to `origin` gets through when its host name
    /// resolves to `resolved`: the origin check, then the resolver of the
    /// client that the origin picks (a literal IP is not resolved).
    fn reaches(policy: &OutboundPolicy, origin: &Origin, resolved: &[&str]) -> bool {
        policy.check_origin(origin).is_ok()
            && (origin.ip().is_some()
                || resolved.iter().all(|a| {
                    policy
                        .check_address(policy.scope_for(origin), &origin.host, ip(a))
                        .is_ok()
                }))
    }

    /// A connector for a test server: private grants for
    /// `http://127.0.0.1:PORT` and `http://localhost:PORT`, and public
    /// grants for any http(s) origin.
    fn private_port_and_public_world(port: u16) -> OutboundPolicy {
        OutboundPolicy::new(
            vec![
                OriginPattern::parse("http://*:*").unwrap(),
                OriginPattern::parse("https://*:*").unwrap(),
            ],
            vec![
                HttpGrant::private(&format!("http://127.0.0.1:{port}")).unwrap(),
                HttpGrant::private(&format!("http://localhost:{port}")).unwrap(),
                HttpGrant::public("http://*:*").unwrap(),
                HttpGrant::public("https://*:*").unwrap(),
            ],
        )
    }

    #[test]
    fn a_private_grant_opens_one_origin_not_its_host() {
        let policy = private_port_and_public_world(8080);
        for allowed in [
            "http://127.0.0.1:8080/x",
            "http://localhost:8080/",
            "http://LOCALHOST:8080",
            "http://0x7f.1:8080",
            "http://2130706433:8080",
        ] {
            assert!(reaches(&policy, &origin(allowed), &LOOPBACK), "{allowed}");
        }
        for refused in [
            "http://127.0.0.1:8081",
            "http://2130706433:22",
            "http://localhost:8081",
            "https://127.0.0.1:8080",
            "https://localhost:8080",
            "http://127.0.0.2:8080",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]:8081",
            "http://localhost.:8080",
            "http://rebind.example.com:8080",
        ] {
            assert!(!reaches(&policy, &origin(refused), &LOOPBACK), "{refused}");
        }
        // The wide public grant still reaches public addresses.
        assert!(reaches(
            &policy,
            &origin("http://example.com:8081"),
            &["93.184.216.34"]
        ));
    }

    #[test]
    fn a_private_grant_names_one_port() {
        let e = HttpGrant::private("http://10.0.0.5:*").unwrap_err();
        assert!(e.to_string().contains("one exact host and port"), "{e}");
        assert!(HttpGrant::private("http://10.0.0.5:8069").is_ok());
    }

    #[test]
    fn grant_hosts_are_spelled_as_urls_spell_them() {
        for (pattern, url) in [
            ("http://[0:0::1]:8080", "http://[::1]:8080"),
            ("http://0x7f.1:8080", "http://127.0.0.1:8080"),
            ("http://[::FFFF:7f00:1]", "http://[::ffff:127.0.0.1]/"),
            ("http://ERP.Example.com:8069", "http://erp.example.com:8069"),
        ] {
            let p = OriginPattern::parse(pattern).unwrap();
            assert!(p.matches(&origin(url)), "{pattern} vs {url}");
        }
    }

    /// Spellings of loopback and other internal hosts a URL may use.
    const INTERNAL_SPELLINGS: &[&str] = &[
        "127.0.0.1",
        "127.0.0.1.",
        "2130706433",
        "0177.0.0.1",
        "0177.1",
        "0x7f.1",
        "0x7f000001",
        "017700000001",
        "127.1",
        "127.0.1",
        "127.0.0.2",
        "0",
        "0.0.0.0",
        "10.0.0.1",
        "169.254.169.254",
        "0xa9.0xfe.0xa9.0xfe",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:7f00:1]",
        "[::127.0.0.1]",
        "[::7f00:1]",
        "[::ffff:0:7f00:1]",
        "[2002:7f00:1::]",
        "[2001::7f00:1]",
        "[64:ff9b::127.0.0.1]",
        "[64:ff9b:1::a00:1]",
        "[fe80::1]",
        "[fec0::1]",
        "localhost",
        "localhost.",
        "LocalHost",
        "sub.localhost",
        "rebind.example.com",
    ];

    proptest! {
        /// With a private grant for one exact origin and public grants for
        /// everything, no other scheme, port or spelling of a host reaches
        /// an internal address.
        #[test]
        fn only_the_exact_private_origin_reaches_internal_addresses(
            host in prop::sample::select(INTERNAL_SPELLINGS),
            upper in any::<bool>(),
            scheme in prop::sample::select(&["http", "https", "HTTP", "hTTps"][..]),
            port in prop_oneof![Just(8080u16), 1u16..],
            zero_padded in any::<bool>(),
        ) {
            let policy = private_port_and_public_world(8080);
            let host = if upper { host.to_ascii_uppercase() } else { host.to_string() };
            let port = if zero_padded { format!("0{port}") } else { port.to_string() };
            let url = format!("{scheme}://{host}:{port}/x");
            // A spelling no URL parser accepts cannot be sent either.
            let Some(o) = Url::parse(&url).ok().as_ref().and_then(Origin::of) else {
                return Ok(());
            };
            let granted =
                o == origin("http://127.0.0.1:8080") || o == origin("http://localhost:8080");
            prop_assert_eq!(reaches(&policy, &o, &LOOPBACK), granted, "{}", url);
        }
    }
}
