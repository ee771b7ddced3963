//! What a dry run has "committed" so far: identity-map changes kept in
//! memory and laid over what the store returns, so later pages of the same
//! dry run decide as the real run would, with nothing written.

use std::collections::{HashMap, HashSet};

use super::store::{Link, LinkUpdate};

/// In a dry run, the identity-map changes earlier pages would have made,
/// laid over what the store holds.
#[derive(Debug, Default)]
pub struct Overlay {
    links: HashMap<(String, String, String), Patch>,
    next_entity: i64,
}

/// The fields a link update changes (absent: unchanged).
#[derive(Debug, Clone)]
struct Patch {
    entity_id: i64,
    known: Option<String>,
    synced_hash: Option<String>,
    version: Option<String>,
    deleted: bool,
}

impl Patch {
    fn merge_into(&self, link: &mut Link) {
        link.entity_id = self.entity_id;
        if let Some(k) = &self.known {
            link.known = Some(k.clone());
        }
        if let Some(h) = &self.synced_hash {
            link.synced_hash = Some(h.clone());
        }
        if let Some(v) = &self.version {
            link.version = Some(v.clone());
        }
        link.deleted = self.deleted;
    }

    fn to_link(&self, connection: &str, stream: &str, record_id: &str) -> Link {
        let mut link = Link {
            entity_id: self.entity_id,
            connection: connection.to_string(),
            stream: stream.to_string(),
            record_id: record_id.to_string(),
            known: None,
            synced_hash: None,
            version: None,
            deleted: false,
        };
        self.merge_into(&mut link);
        link
    }
}

impl Overlay {
    /// Record updates as if committed (new entities get negative ids).
    pub fn apply(&mut self, updates: &[LinkUpdate]) {
        let mut groups: HashMap<usize, i64> = HashMap::new();
        for u in updates {
            let entity_id = match u.entity_id {
                Some(e) => e,
                None => *groups.entry(u.group).or_insert_with(|| {
                    self.next_entity -= 1;
                    self.next_entity
                }),
            };
            let key = (u.connection.clone(), u.stream.clone(), u.record_id.clone());
            let prior = self.links.get(&key);
            let patch = Patch {
                entity_id,
                known: u
                    .known
                    .clone()
                    .or_else(|| prior.and_then(|p| p.known.clone())),
                synced_hash: u
                    .synced_hash
                    .clone()
                    .or_else(|| prior.and_then(|p| p.synced_hash.clone())),
                version: u
                    .version
                    .clone()
                    .or_else(|| prior.and_then(|p| p.version.clone())),
                deleted: u.deleted,
            };
            self.links.insert(key, patch);
        }
    }

    /// Lay the overlay over links found by record id.
    pub fn patch(&self, found: &mut Vec<Link>, connection: &str, stream: &str, ids: &[&str]) {
        if self.links.is_empty() {
            return;
        }
        let key = |id: &str| (connection.to_string(), stream.to_string(), id.to_string());
        for l in found.iter_mut() {
            if let Some(p) = self.links.get(&key(&l.record_id)) {
                p.merge_into(l);
            }
        }
        for id in ids {
            if !found.iter().any(|l| l.record_id == *id)
                && let Some(p) = self.links.get(&key(id))
            {
                found.push(p.to_link(connection, stream, id));
            }
        }
    }

    /// Lay the overlay over links found by entity.
    pub fn patch_entities(
        &self,
        found: &mut Vec<Link>,
        entities: &HashSet<i64>,
        connection: &str,
        stream: &str,
    ) {
        for ((c, s, id), p) in &self.links {
            if c != connection || s != stream {
                continue;
            }
            match found.iter_mut().find(|l| &l.record_id == id) {
                Some(l) => p.merge_into(l),
                None if entities.contains(&p.entity_id) => {
                    found.push(p.to_link(connection, stream, id));
                }
                None => {}
            }
        }
    }
}
