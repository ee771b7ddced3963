//! The authority an admin approved for an installed plugin: the signed
//! manifest's capabilities, as far as the install granted them. When a
//! plugin runs under it, this is all it has: the origins it may call, the
//! origins each secret may be sent to, its key-value quota and its memory.
//! Whatever the live component's `spec()` asks beyond that is ignored and
//! reported, so a manifest that lies, or a component whose `spec()` changes
//! after install, reaches nothing the install screen did not show.

use std::collections::{BTreeMap, BTreeSet};

use nexo_bundle::manifest::Capabilities as Declared;
use nexo_bundle::manifest::CapabilityGrant;

use super::Capabilities as SpecCapabilities;

/// The approved authority of one installed plugin version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approved {
    /// Origin patterns it may call (declared and granted).
    pub http_origins: Vec<String>,
    /// Each granted secret's name and the origins it may be sent to, as
    /// the manifest binds it.
    pub secrets: BTreeMap<String, Vec<String>>,
    /// Key-value bytes (declared and granted).
    pub kv_bytes: u64,
    /// Memory the manifest asks for: the plugin's memory never exceeds it
    /// (`None`: an older manifest that does not say).
    pub memory_bytes: Option<u64>,
    /// Whether it may call the origins granted on each connection (a
    /// self-hosted system), declared and granted.
    pub connection_origins: bool,
    /// The granted secrets that go to those origins too (marked in the
    /// manifest; empty unless [`Approved::connection_origins`]).
    pub connection_secrets: BTreeSet<String>,
}

/// The patterns a 1.0 `spec()` says "any host" with: a plugin approved for
/// the connection's origins asks for them, and is not reported for it.
const ANY_HOST: [&str; 2] = ["http://*:*", "https://*:*"];

impl Approved {
    /// The manifest's capabilities intersected with the install's grant.
    pub fn of(declared: &Declared, grant: &CapabilityGrant) -> Self {
        Approved {
            http_origins: declared
                .http_origins
                .iter()
                .filter(|o| grant.http_origins.contains(o))
                .cloned()
                .collect(),
            secrets: declared
                .secrets
                .iter()
                .filter(|s| grant.secrets.contains(&s.name))
                .map(|s| (s.name.clone(), s.origins.clone()))
                .collect(),
            kv_bytes: declared.kv_bytes.min(grant.kv_bytes),
            memory_bytes: declared.memory_asked(),
            connection_origins: declared.connection_origins && grant.connection_origins,
            connection_secrets: if declared.connection_origins && grant.connection_origins {
                declared
                    .secrets
                    .iter()
                    .filter(|s| s.connection_origins && grant.secrets.contains(&s.name))
                    .map(|s| s.name.clone())
                    .collect()
            } else {
                BTreeSet::new()
            },
        }
    }

    /// The origins the plugin may call on a connection whose grants name
    /// `connection` (its `--grant-http` / `--grant-private-http` origins and
    /// overridden ones): the approved ones, and with
    /// [`Approved::connection_origins`] exactly the connection's too.
    pub fn origins_on(&self, connection: &[String]) -> Vec<String> {
        let mut out = self.http_origins.clone();
        if self.connection_origins {
            out.extend(connection.iter().cloned());
        }
        out
    }

    /// Each granted secret and the origins it may go to on a connection
    /// whose grants name `connection`: as the manifest binds it, and a
    /// marked one (with [`Approved::connection_origins`]) exactly the
    /// connection's origins too.
    pub fn secrets_on(&self, connection: &[String]) -> BTreeMap<String, Vec<String>> {
        let mut out = self.secrets.clone();
        for name in &self.connection_secrets {
            if let Some(origins) = out.get_mut(name) {
                origins.extend(connection.iter().cloned());
            }
        }
        out
    }

    /// Where `spec` asks for more than (or other than) this: one sentence
    /// each, for the admin's log. Asking for less is not reported.
    pub fn excess(&self, spec: &SpecCapabilities) -> Vec<String> {
        let mut out = Vec::new();
        let any_host = |o: &String| ANY_HOST.contains(&o.as_str());
        let extra: Vec<&String> = spec
            .http_origins
            .iter()
            .filter(|o| !self.http_origins.contains(o))
            .filter(|o| !(self.connection_origins && any_host(o)))
            .collect();
        if !extra.is_empty() {
            out.push(format!("origins {extra:?} it was not approved for"));
        }
        for s in &spec.secrets {
            match self.secrets.get(&s.name) {
                None => out.push(format!("the secret `{}` it was not granted", s.name)),
                Some(approved) => {
                    let marked = self.connection_secrets.contains(&s.name);
                    let extra: Vec<&String> = s
                        .origins
                        .iter()
                        .filter(|o| !approved.contains(o))
                        .filter(|o| !(marked && any_host(o)))
                        .collect();
                    if !extra.is_empty() {
                        out.push(format!(
                            "to send the secret `{}` to {extra:?}, beyond the approved {approved:?}",
                            s.name
                        ));
                    }
                }
            }
        }
        if spec.kv_bytes > self.kv_bytes {
            out.push(format!(
                "{} bytes of key-value storage, beyond the approved {}",
                spec.kv_bytes, self.kv_bytes
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::plugin::SecretRequirement;
    use nexo_bundle::manifest::SecretCapability;

    fn declared() -> Declared {
        Declared {
            http_origins: vec![
                "https://api.crm.test".into(),
                "https://files.crm.test".into(),
            ],
            secrets: vec![SecretCapability {
                name: "token".into(),
                description: String::new(),
                origins: vec!["https://api.crm.test".into()],
                connection_origins: false,
            }],
            kv_bytes: 4096,
            memory_bytes: 32 << 20,
            oauth2: None,
            connection_origins: false,
        }
    }

    #[test]
    fn approved_is_the_manifest_as_far_as_it_was_granted() {
        let grant = CapabilityGrant {
            http_origins: vec!["https://api.crm.test".into(), "https://evil.test".into()],
            secrets: vec!["token".into(), "other".into()],
            kv_bytes: 1024,
            connection_origins: false,
        };
        let a = Approved::of(&declared(), &grant);
        assert_eq!(a.http_origins, vec!["https://api.crm.test".to_string()]);
        assert_eq!(
            a.secrets.get("token"),
            Some(&vec!["https://api.crm.test".to_string()])
        );
        assert_eq!(a.secrets.len(), 1);
        assert_eq!(a.kv_bytes, 1024);
        assert_eq!(a.memory_bytes, Some(32 << 20));
    }

    #[test]
    fn a_spec_asking_beyond_the_approval_is_named_point_by_point() {
        let a = Approved::of(
            &declared(),
            &CapabilityGrant {
                http_origins: declared().http_origins,
                secrets: vec!["token".into()],
                kv_bytes: 4096,
                connection_origins: false,
            },
        );
        let honest = SpecCapabilities {
            http_origins: vec!["https://api.crm.test".into()],
            secrets: vec![SecretRequirement {
                name: "token".into(),
                description: "d".into(),
                origins: vec!["https://api.crm.test".into()],
            }],
            kv_bytes: 10,
        };
        assert!(a.excess(&honest).is_empty());
        let greedy = SpecCapabilities {
            http_origins: vec!["https://evil.test".into()],
            secrets: vec![
                SecretRequirement {
                    name: "token".into(),
                    description: "d".into(),
                    origins: vec!["http://*:*".into()],
                },
                SecretRequirement {
                    name: "admin".into(),
                    description: "d".into(),
                    origins: vec![],
                },
            ],
            kv_bytes: 1 << 30,
        };
        let excess = a.excess(&greedy);
        assert_eq!(excess.len(), 4, "{excess:?}");
        assert!(excess[0].contains("evil.test"));
        assert!(excess[1].contains("http://*:*"));
        assert!(excess[2].contains("`admin`"));
        assert!(excess[3].contains("key-value"));
    }

    fn self_hosted() -> Declared {
        Declared {
            http_origins: vec![],
            connection_origins: true,
            secrets: vec![SecretCapability {
                name: "key".into(),
                description: String::new(),
                origins: vec![],
                connection_origins: true,
            }],
            ..Declared::default()
        }
    }

    #[test]
    fn connection_origins_reach_exactly_the_connections_grants_when_granted() {
        let on = vec!["http://10.0.0.5:8000".to_string()];
        let granted = CapabilityGrant {
            secrets: vec!["key".into()],
            connection_origins: true,
            ..CapabilityGrant::default()
        };
        let a = Approved::of(&self_hosted(), &granted);
        assert_eq!(a.origins_on(&on), on);
        assert_eq!(a.secrets_on(&on).get("key"), Some(&on));
        assert_eq!(
            a.origins_on(&[]),
            Vec::<String>::new(),
            "none named: none reached"
        );
        // Not granted at install: nothing beyond declared ∩ granted (none).
        let refused = Approved::of(
            &self_hosted(),
            &CapabilityGrant {
                connection_origins: false,
                ..granted
            },
        );
        assert!(refused.origins_on(&on).is_empty());
        assert_eq!(refused.secrets_on(&on).get("key"), Some(&vec![]));
        // Its 1.0 spec's any-host patterns are what it was approved for.
        let spec = SpecCapabilities {
            http_origins: vec!["https://*:*".into(), "http://*:*".into()],
            secrets: vec![SecretRequirement {
                name: "key".into(),
                description: "d".into(),
                origins: vec!["https://*:*".into(), "http://*:*".into()],
            }],
            kv_bytes: 0,
        };
        assert!(a.excess(&spec).is_empty(), "{:?}", a.excess(&spec));
        assert_eq!(refused.excess(&spec).len(), 2);
    }
}
