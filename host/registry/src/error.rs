//! What can go wrong installing, upgrading, rolling back, removing or
//! loading a plugin; each error says what to do.

use nexo_bundle::BundleError;
use nexo_db::StoreError;
use nexo_runtime::LoadError;
use nexo_runtime::plugin::OpenError;
use nexo_runtime::vet::VetError;

/// A registry operation that failed; the installed set is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The bundle itself is not acceptable.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The component does not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The connector could not be opened to ask its spec.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Installing something already installed.
    #[error(
        "{id} is already installed (active version {active}); use `nexo plugin upgrade {id} BUNDLE`"
    )]
    AlreadyInstalled {
        /// Plugin id.
        id: String,
        /// Its active version.
        active: String,
    },
    /// The manifest asks for more memory than the admin's cap.
    #[error("{plugin} is refused: {source}")]
    MemoryOverCap {
        /// Plugin and version.
        plugin: String,
        /// The ask and the cap.
        source: nexo_runtime::limits::MemoryOverCap,
    },
    /// Upgrading or rolling back something not installed.
    #[error("{0} is not installed; see `nexo plugin list`")]
    NotInstalled(String),
    /// An upgrade to a version that is not newer.
    #[error(
        "{id} {offered} is not newer than the active {active}; to go back, use `nexo plugin rollback {id} {offered}`"
    )]
    NotNewer {
        /// Plugin id.
        id: String,
        /// Version offered.
        offered: String,
        /// Active version.
        active: String,
    },
    /// An upgrade whose WIT major differs from the installed one.
    #[error(
        "{id} {offered} is built against nexo:connector {offered_wit}, incompatible with {active} (nexo:connector {active_wit})"
    )]
    IncompatibleUpgrade {
        /// Plugin id.
        id: String,
        /// Version offered.
        offered: String,
        /// Its WIT version.
        offered_wit: String,
        /// Active version.
        active: String,
        /// Its WIT version.
        active_wit: String,
    },
    /// The upgrade bundle is for another plugin.
    #[error("the bundle is {found}, not {expected}")]
    WrongPlugin {
        /// What was asked for.
        expected: String,
        /// What the bundle is.
        found: String,
    },
    /// A requested capability was not granted.
    #[error("{plugin} asks for capabilities that were not granted:\n  - {}\ngrant them (answer yes, or pass --grant all) or do not install", .missing.join("\n  - "))]
    NotGranted {
        /// `id@version`.
        plugin: String,
        /// Plain-language list of what is missing.
        missing: Vec<String>,
    },
    /// Rolling back to a version that is not installed.
    #[error("{id} has no installed version {version}; installed: {installed}")]
    NoSuchVersion {
        /// Plugin id.
        id: String,
        /// Asked for.
        version: String,
        /// What there is.
        installed: String,
    },
    /// Removing a plugin connections still use.
    #[error("{id} is used by connection(s) {}; remove them first, or pass --force to remove them with it", .connections.join(", "))]
    InUse {
        /// Plugin id.
        id: String,
        /// The connections.
        connections: Vec<String>,
    },
    /// Removing a mapper pipelines still use.
    #[error("{id} is used by pipeline(s) {}; change or remove them first, or pass --force (those pipelines will then fail until a mapper is installed)", .pipelines.join(", "))]
    UsedByPipelines {
        /// Plugin id.
        id: String,
        /// The pipelines.
        pipelines: Vec<String>,
    },
    /// Nothing older to roll back to.
    #[error("{0} has no version older than the active one to roll back to")]
    NothingToRollBack(String),
    /// The bundle store could not be written.
    #[error("cannot store the bundle at {path}: {reason}")]
    Io {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// Several hosts: an installed version's bundle is missing from the
    /// shared database, or does not match the digest it was installed with.
    #[error(
        "the bundle of {plugin} (sha256 {sha256}) {problem} in the shared database; install that version again through any host"
    )]
    SharedBundle {
        /// `id@version`.
        plugin: String,
        /// The digest it was installed with.
        sha256: String,
        /// `is not stored`, or what is wrong with what is.
        problem: &'static str,
    },
}

impl From<VetError> for RegistryError {
    fn from(e: VetError) -> Self {
        match e {
            VetError::Bundle(e) => RegistryError::Bundle(e),
            VetError::Load(e) => RegistryError::Load(e),
            VetError::Open(e) => RegistryError::Open(e),
        }
    }
}
