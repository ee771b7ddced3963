//! Everything a run needs, opened once before its first page: the pipeline,
//! its ends and mappers behind the small [`ports`](super::ports) traits,
//! and the rules derived from the streams' schemas (system fields, how
//! read-backs compare, the quality gate). The page path reads only this
//! and the context it is handed, so tests can build one from fakes.

use std::sync::Arc;

use super::compare::Comparison;
use super::content::SystemFields;
use super::gate::Gate;
use super::pipeline::{Endpoint, Pipeline};
use super::ports::{Destination, Mapping, Source};
use super::store::LogLevel;

/// Everything a run needs, opened once.
pub(crate) struct Prepared {
    pub pipeline: Pipeline,
    /// The source's reads.
    pub source: Arc<dyn Source>,
    /// The destination's writes.
    pub dest: Arc<dyn Destination>,
    /// The destination's reads (change tracking).
    pub dest_reader: Arc<dyn Source>,
    pub mapping: Arc<dyn Mapping>,
    pub source_system: SystemFields,
    pub dest_system: SystemFields,
    /// How read-backs compare with what Nexo wrote, per side (from each
    /// stream's JSON Schema).
    pub source_compare: Comparison,
    pub dest_compare: Comparison,
    pub dest_readable: bool,
    pub gate: Gate,
    /// The pipeline's ends, shared by every link update of the run (the
    /// peer each side is synced with).
    pub source_end: Arc<Endpoint>,
    pub dest_end: Arc<Endpoint>,
    /// The run log's first lines: the plugin versions the run uses (kept
    /// to its end, even if a plugin is upgraded meanwhile), and a warning
    /// per connector whose `spec()` asked for more than its install
    /// approved.
    pub opening_log: Vec<(LogLevel, String)>,
}
