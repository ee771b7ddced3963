//! The capabilities a plugin version asks for, as an admin reviews and
//! grants them one by one.

use std::fmt;

use nexo_bundle::manifest::Capabilities;
use nexo_db::registry::CapabilityGrant;
use nexo_runtime::limits::human_bytes;

/// One capability, in words an admin can judge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// Outbound HTTP to an origin pattern.
    Http(String),
    /// Outbound HTTP to the origins the admin names on each connection (a
    /// self-hosted system), instead of a wildcard.
    ConnectionOrigins,
    /// Use of a secret, with where it is sent.
    Secret {
        /// Name.
        name: String,
        /// What it is.
        description: String,
        /// Where it may be sent.
        origins: Vec<String>,
        /// Whether it also goes to the origins named on each connection.
        connection_origins: bool,
    },
    /// Key-value storage.
    Storage(u64),
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Http(o) if o.contains('*') => write!(
                f,
                "talk to any site matching {o} (you choose which when you connect it)"
            ),
            Capability::Http(o) => write!(f, "talk to {o}"),
            Capability::ConnectionOrigins => {
                f.write_str("talk to the server you name on each connection (a self-hosted system)")
            }
            Capability::Secret {
                name,
                description,
                origins,
                connection_origins,
            } => {
                let mut to = origins.clone();
                if *connection_origins {
                    to.push("the server you name on each connection".into());
                }
                write!(
                    f,
                    "use the secret `{name}` ({description}), sent only to {}",
                    to.join(", ")
                )
            }
            Capability::Storage(b) => write!(f, "store up to {} of its own data", human_bytes(*b)),
        }
    }
}

/// What a manifest asks for, one capability each.
pub fn capabilities_of(c: &Capabilities) -> Vec<Capability> {
    let mut out: Vec<Capability> = c
        .http_origins
        .iter()
        .cloned()
        .map(Capability::Http)
        .collect();
    if c.connection_origins {
        out.push(Capability::ConnectionOrigins);
    }
    out.extend(c.secrets.iter().map(|s| Capability::Secret {
        name: s.name.clone(),
        description: s.description.clone(),
        origins: s.origins.clone(),
        // Only with the capability itself: it reaches nothing alone.
        connection_origins: s.connection_origins && c.connection_origins,
    }));
    if c.kv_bytes > 0 {
        out.push(Capability::Storage(c.kv_bytes));
    }
    out
}

pub(crate) fn granted(grant: &CapabilityGrant, cap: &Capability) -> bool {
    match cap {
        Capability::Http(o) => grant.http_origins.contains(o),
        Capability::ConnectionOrigins => grant.connection_origins,
        Capability::Secret { name, .. } => grant.secrets.contains(name),
        Capability::Storage(b) => grant.kv_bytes >= *b,
    }
}

/// A grant of exactly `caps`.
pub fn grant_all(caps: &[Capability]) -> CapabilityGrant {
    let mut g = CapabilityGrant::default();
    for c in caps {
        match c {
            Capability::Http(o) => g.http_origins.push(o.clone()),
            Capability::ConnectionOrigins => g.connection_origins = true,
            Capability::Secret { name, .. } => g.secrets.push(name.clone()),
            Capability::Storage(b) => g.kv_bytes = g.kv_bytes.max(*b),
        }
    }
    g
}
