//! The authority an admin approved for an installed plugin: the signed
//! manifest's capabilities, as far as the install granted them. When a
//! plugin runs under it, this is all it has: the origins it may call, the
//! origins each secret may be sent to, its key-value quota and its memory.
//! Whatever the live component's `spec()` asks beyond that is ignored and
//! reported, so a manifest that lies, or a component whose `spec()` changes
//! after install, reaches nothing the install screen did not show.

use std::collections::BTreeMap;

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
}

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
        }
    }

    /// Where `spec` asks for more than (or other than) this: one sentence
    /// each, for the admin's log. Asking for less is not reported.
    pub fn excess(&self, spec: &SpecCapabilities) -> Vec<String> {
        let mut out = Vec::new();
        let extra: Vec<&String> = spec
            .http_origins
            .iter()
            .filter(|o| !self.http_origins.contains(o))
            .collect();
        if !extra.is_empty() {
            out.push(format!("origins {extra:?} it was not approved for"));
        }
        for s in &spec.secrets {
            match self.secrets.get(&s.name) {
                None => out.push(format!("the secret `{}` it was not granted", s.name)),
                Some(approved) => {
                    let extra: Vec<&String> =
                        s.origins.iter().filter(|o| !approved.contains(o)).collect();
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
            }],
            kv_bytes: 4096,
            memory_bytes: 32 << 20,
            oauth2: None,
        }
    }

    #[test]
    fn approved_is_the_manifest_as_far_as_it_was_granted() {
        let grant = CapabilityGrant {
            http_origins: vec!["https://api.crm.test".into(), "https://evil.test".into()],
            secrets: vec!["token".into(), "other".into()],
            kv_bytes: 1024,
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
}
