//! The identity map's rows as the engine sees them: a record of one system
//! linked to an entity, and the change a page makes to such a link.

use std::sync::Arc;

use crate::pipeline::Endpoint;

/// One record of one system, as the identity map knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Entity it belongs to (shared by its copies in other systems).
    pub entity_id: i64,
    /// Connection.
    pub connection: String,
    /// Stream.
    pub stream: String,
    /// Its id in that system.
    pub record_id: String,
    /// Latest content known (JSON object, system fields removed).
    pub known: Option<String>,
    /// Hash of the content as of the last sync by Nexo with the peer the
    /// lookup named (the pipeline's other end): when the system's record
    /// still hashes to this, nothing changed since it was last in step
    /// with that peer. Sync state is kept per record *and* peer, so a
    /// record delivered to one destination is still news to another.
    /// `None` when never synced with that peer (or no peer was named).
    pub synced_hash: Option<String>,
    /// Its cursor value (modification time) when last seen.
    pub version: Option<String>,
    /// Whether it is deleted in that system.
    pub deleted: bool,
}

/// The synced hash of a source record whose delete is settled for a peer
/// (written, or nothing to do there): the record is in step with that peer
/// as deleted, and a full refresh's sweep does not offer it again. Not a
/// hash (those are hex), so no content can match it.
pub const DELETED_IN_STEP: &str = "deleted";

/// A change to the identity map, applied with a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUpdate {
    /// Entity: `None` creates a new one.
    pub entity_id: Option<i64>,
    /// Entity type (for new entities).
    pub entity: String,
    /// Other records of the same new entity in this commit: updates with the
    /// same `group` share the entity created for the first one.
    pub group: usize,
    /// Connection.
    pub connection: String,
    /// Stream.
    pub stream: String,
    /// Record id.
    pub record_id: String,
    /// New known content, if it changed.
    pub known: Option<String>,
    /// New synced hash with `peer`, if it changed.
    pub synced_hash: Option<String>,
    /// The other end of the pipeline making this update: `synced_hash`
    /// records that this record is in step with that connection/stream
    /// (and with no other).
    pub peer: Arc<Endpoint>,
    /// New version, if known.
    pub version: Option<String>,
    /// Deleted in that system.
    pub deleted: bool,
}

impl LinkUpdate {
    /// An update of `link`, an entity of type `entity`, seen by a pipeline
    /// whose other end is `peer`, that changes nothing of its content
    /// (callers set what they learnt).
    pub fn of_link(entity: &str, link: &Link, peer: &Arc<Endpoint>) -> Self {
        LinkUpdate {
            entity_id: Some(link.entity_id),
            entity: entity.to_string(),
            group: 0,
            connection: link.connection.clone(),
            stream: link.stream.clone(),
            record_id: link.record_id.clone(),
            known: None,
            synced_hash: None,
            peer: peer.clone(),
            version: None,
            deleted: false,
        }
    }
}
