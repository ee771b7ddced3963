//! The engine's front door: `apply` (validate and save a definition; in
//! `apply.rs`), and `run` — open the pipeline's connections and mappers, take the
//! per-pipeline lock that keeps runs from overlapping, hand the run to its
//! driver, and record how it ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SyncError;
pub use super::commit::Progress;
use super::compare::Comparison;
use super::content::SystemFields;
use super::driver::{Driver, RunSetup};
pub use super::dry_run::PlannedChange;
use super::dry_run::{DryDestination, DryRun};
use super::gate::Gate;
use super::lease::{Hold, HostLease};
use super::locks::{RunLock, lock_pipeline, reap_interrupted};
use super::pipeline::Pipeline;
use super::ports::{ConnectorEnd, MapperChain};
use super::prepared::Prepared;
pub use super::retry::StopSignal;
use super::store::{Counts, LogLevel, PageStore, PipelineRow, RunId, RunStatus, SyncStore};
use nexo_registry::Registry;
use nexo_registry::connections::Connections;
use nexo_runtime::PluginRef;
use nexo_runtime::limits::Limits;
use nexo_runtime::plugin::{ConnectorPlugin, MapperPlugin, Sandbox, StreamInfo};

/// How to run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Read and map for real, write nothing anywhere, return the plan.
    pub dry_run: bool,
    /// Called after each page.
    pub progress: Option<Progress>,
    /// Stop at the next page boundary (a shutdown): the run ends
    /// `interrupted` and the next one resumes from its last page.
    pub stop: Option<StopSignal>,
    /// Several hosts: this host's scheduler has claimed the pipeline for
    /// this run already (otherwise the run claims it, or is `Busy`).
    pub claimed: bool,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// How to apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Accept a change of a saved pipeline's identity (entity, source or
    /// destination connection or stream) and reset its cursor in the same
    /// step, as `nexo pipeline reset` does.
    pub reset: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run (none for a dry run: nothing is recorded).
    pub run_id: Option<RunId>,
    /// Final status.
    pub status: RunStatus,
    /// Counts.
    pub counts: Counts,
    /// Pages processed.
    pub pages: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Dry run: what would change.
    pub plan: Vec<PlannedChange>,
    /// Why it failed.
    pub error: Option<String>,
    /// What the matching pass before the first run found (a pipeline
    /// with `[match]`, never matched; a dry run says what it would find).
    pub matching: Option<super::going_live::MatchReport>,
}

/// The sync engine of one host.
#[derive(Clone)]
pub struct Engine {
    pub(super) store: Arc<dyn SyncStore>,
    pub(super) connections: Connections,
    pub(super) registry: Registry,
    locks: Option<PathBuf>,
    /// Several hosts share the database: runs hold their pipeline by a
    /// lease instead of a lock file.
    shared: Option<HostLease>,
    pub(super) limits: Limits,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// The plugin versions a run uses (a run keeps them to its end, even if a
/// plugin is upgraded meanwhile).
fn versions(
    source: &ConnectorPlugin,
    dest: &ConnectorPlugin,
    mappers: &[(MapperPlugin, String)],
) -> String {
    let mut line = format!(
        "plugins: source {}, destination {}",
        source.plugin(),
        dest.plugin()
    );
    for (m, _) in mappers {
        line.push_str(&format!(", mapper {}", m.plugin()));
    }
    line
}

/// A warning for the run log per connector whose `spec()` asked for more
/// than its install approved (ignored: it runs with the approval).
fn approval_warnings(source: &ConnectorPlugin, dest: &ConnectorPlugin) -> Vec<(LogLevel, String)> {
    let mut out = Vec::new();
    for (role, plugin) in [("source", source), ("destination", dest)] {
        let excess = plugin.beyond_approval();
        if !excess.is_empty() {
            out.push((
                LogLevel::Warn,
                format!(
                    "{role} plugin {} asked at run time for {}; ignored: it runs with what its install approved (check the plugin's vendor before granting more)",
                    plugin.plugin(),
                    excess.join("; ")
                ),
            ));
        }
    }
    out
}

impl Engine {
    /// An engine over `store`, opening connections and plugins through
    /// `connections`/`registry`. `locks` is where per-pipeline lock files
    /// live (none: no cross-process locking, for tests on one process).
    pub fn new(
        store: Arc<dyn SyncStore>,
        connections: Connections,
        registry: Registry,
        locks: Option<PathBuf>,
    ) -> Self {
        Engine {
            store,
            connections,
            registry,
            locks,
            shared: None,
            limits: Limits::default(),
        }
    }

    /// Share the database with other hosts: each run holds its pipeline
    /// by a lease of `lease.host` (claimed, tied to the run, renewed,
    /// released) instead of a lock file, and runs whose lease ran out are
    /// the interrupted ones.
    pub fn shared(mut self, lease: HostLease) -> Self {
        self.shared = Some(lease);
        self
    }

    /// The plugin registry runs load plugins from (and its database).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// This host's lease settings, when the database is shared.
    pub fn host_lease(&self) -> Option<&HostLease> {
        self.shared.as_ref()
    }

    /// Use these limits for every plugin call.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The connections runs are opened through (and whose request budgets
    /// they share).
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SyncStore> {
        &self.store
    }

    fn open_mapper(
        &self,
        pipeline: &str,
        step: &super::pipeline::MapperStep,
    ) -> Result<MapperPlugin, SyncError> {
        self.open_mapper_manifest(pipeline, step).map(|(m, _)| m)
    }

    pub(super) fn open_mapper_manifest(
        &self,
        pipeline: &str,
        step: &super::pipeline::MapperStep,
    ) -> Result<(MapperPlugin, nexo_bundle::manifest::Manifest), SyncError> {
        let (row, loaded) = match &step.version {
            Some(v) => self.registry.load_version(&step.plugin, v)?,
            None => self.registry.load_active(&step.plugin)?,
        };
        // A mapper gets no network, secrets or storage whatever it asks;
        // its memory is what its signed manifest asked for, within the
        // admin's cap.
        let manifest: nexo_bundle::manifest::Manifest = serde_json::from_str(&row.manifest)
            .map_err(|e| SyncError::Mapper {
                pipeline: pipeline.to_string(),
                plugin: step.plugin.clone(),
                reason: format!("its installed manifest does not parse: {e}"),
            })?;
        let mut limits = self.limits.clone();
        limits.memory_bytes = limits
            .memory_for(manifest.capabilities.memory_asked())
            .map_err(|e| SyncError::Mapper {
                pipeline: pipeline.to_string(),
                plugin: step.plugin.clone(),
                reason: e.to_string(),
            })?;
        let sandbox = Sandbox {
            plugin: PluginRef {
                id: row.plugin_id.clone(),
                version: row.version.to_string(),
            },
            limits,
            grants: Default::default(),
            secrets: Default::default(),
            credentials: Default::default(),
            kv: None,
        };
        let mapper = MapperPlugin::open(&loaded, sandbox).map_err(|e| SyncError::Mapper {
            pipeline: pipeline.to_string(),
            plugin: step.plugin.clone(),
            reason: e.to_string(),
        })?;
        Ok((mapper, manifest))
    }

    /// Hold `pipeline` for a run outside the page loop (a replay, a
    /// resolved conflict): its lease when hosts share the database, else
    /// its lock file.
    pub(super) fn lock(&self, pipeline: &str) -> Result<RunLock, SyncError> {
        if let Some(lease) = &self.shared {
            return Ok(RunLock::lease(Hold::claim(
                self.registry.db(),
                lease,
                pipeline,
            )?));
        }
        match &self.locks {
            Some(dir) => lock_pipeline(dir, pipeline),
            None => Ok(RunLock::none()),
        }
    }

    /// End the runs left `running` by a process that died (see
    /// [`reap_interrupted`]); nothing without lock files, where a run
    /// cannot be told from a dead one.
    pub fn reap_interrupted(&self) -> Result<Vec<RunId>, SyncError> {
        if self.shared.is_some() {
            return Ok(self.registry.db().interrupt_expired_runs()?);
        }
        match &self.locks {
            Some(dir) => reap_interrupted(self.store.as_ref(), dir),
            None => Ok(Vec::new()),
        }
    }

    pub(super) fn pipeline_row(&self, name: &str) -> Result<PipelineRow, SyncError> {
        self.store
            .pipeline(name)?
            .ok_or_else(|| SyncError::UnknownPipeline(name.to_string()))
    }

    /// Open connections and mappers, discover both streams, build the gate.
    pub(crate) async fn prepare(&self, pipeline: &Pipeline) -> Result<Prepared, SyncError> {
        let name = &pipeline.name;
        let open = |conn: String| async move {
            self.connections
                .open(&conn, self.limits.clone())
                .await
                .map_err(|source| SyncError::Connection {
                    pipeline: name.clone(),
                    source: Box::new(source),
                })
        };
        let (src_row, source) = open(pipeline.source.connection.clone()).await?;
        let (dst_row, dest) = open(pipeline.destination.connection.clone()).await?;
        let mut mappers = Vec::new();
        for step in &pipeline.mappers {
            mappers.push((self.open_mapper(name, step)?, step.config.to_string()));
        }
        let src_info = self
            .stream_info(name, &source, &src_row.config, &pipeline.source.stream)
            .await?;
        let dst_info = self
            .stream_info(name, &dest, &dst_row.config, &pipeline.destination.stream)
            .await?;
        let stream_error = |message: String| SyncError::Stream {
            pipeline: name.clone(),
            message,
        };
        if !src_info.can_read {
            return Err(stream_error(format!(
                "source stream `{}` of {} cannot be read",
                src_info.name,
                source.plugin()
            )));
        }
        if !dst_info.can_write {
            return Err(stream_error(format!(
                "destination stream `{}` of {} cannot be written",
                dst_info.name,
                dest.plugin()
            )));
        }
        let system = |s: &StreamInfo| {
            SystemFields::new(
                s.primary_key
                    .iter()
                    .map(String::as_str)
                    .chain(s.cursor_field.as_deref()),
            )
        };
        let dest_system = system(&dst_info);
        let gate = Gate::new(
            &dst_info.json_schema,
            &dest_system,
            pipeline.model.as_deref(),
        )
        .map_err(stream_error)?;
        let compare = |s: &StreamInfo, role: &str| {
            Comparison::from_schema(&s.json_schema)
                .map_err(|e| stream_error(format!("{role} stream `{}`: {e}", s.name)))
        };
        let source_compare = compare(&src_info, "source")?;
        let dest_compare = compare(&dst_info, "destination")?;
        let mut opening_log = vec![(LogLevel::Info, versions(&source, &dest, &mappers))];
        opening_log.extend(approval_warnings(&source, &dest));
        let source = Arc::new(ConnectorEnd {
            plugin: source,
            config: src_row.config,
            stream: pipeline.source.stream.clone(),
        });
        let dest = Arc::new(ConnectorEnd {
            plugin: dest,
            config: dst_row.config,
            stream: pipeline.destination.stream.clone(),
        });
        Ok(Prepared {
            pipeline: pipeline.clone(),
            source,
            dest: dest.clone(),
            dest_reader: dest,
            mapping: Arc::new(MapperChain(mappers)),
            source_system: system(&src_info),
            dest_system,
            source_compare,
            dest_compare,
            dest_readable: dst_info.can_read,
            gate,
            source_end: Arc::new(pipeline.source.clone()),
            dest_end: Arc::new(pipeline.destination.clone()),
            opening_log,
        })
    }

    pub(super) async fn stream_info(
        &self,
        pipeline: &str,
        plugin: &ConnectorPlugin,
        config: &str,
        stream: &str,
    ) -> Result<StreamInfo, SyncError> {
        let streams = plugin
            .discover(config)
            .await
            .into_result()
            .map_err(|source| SyncError::Plugin {
                pipeline: pipeline.to_string(),
                step: "discover",
                source: Box::new(source),
            })?;
        let names: Vec<String> = streams.iter().map(|s| s.name.clone()).collect();
        streams
            .into_iter()
            .find(|s| s.name == stream)
            .ok_or_else(|| SyncError::Stream {
                pipeline: pipeline.to_string(),
                message: format!(
                    "{} offers no stream `{stream}` with this config (it offers: {})",
                    plugin.plugin(),
                    names.join(", ")
                ),
            })
    }

    /// Run a pipeline (or dry-run it: the same run over a store that
    /// records instead of writing and a destination that is not called).
    pub async fn run(&self, name: &str, opts: RunOptions) -> Result<RunReport, SyncError> {
        let row = self.pipeline_row(name)?;
        self.run_row(row, opts).await
    }

    /// Dry-run a definition that is not saved (the production twin of a
    /// promotion, before it is applied): as if it had never run — no
    /// cursor — against the identity map as it stands, through the same
    /// page path as [`Engine::run`] with `dry_run`. Nothing is written to
    /// the database or the destination.
    pub async fn dry_run_unsaved(
        &self,
        pipeline: &Pipeline,
        progress: Option<Progress>,
    ) -> Result<RunReport, SyncError> {
        let row = PipelineRow {
            pipeline: pipeline.clone(),
            paused: false,
            paused_reason: None,
            state: None,
            destination_state: None,
        };
        let opts = RunOptions {
            dry_run: true,
            progress,
            stop: None,
            claimed: false,
        };
        self.run_row(row, opts).await
    }

    async fn run_row(&self, row: PipelineRow, opts: RunOptions) -> Result<RunReport, SyncError> {
        let name = row.pipeline.name.clone();
        let name = name.as_str();
        let dry = opts.dry_run;
        if row.paused && !dry {
            return Err(SyncError::Paused(name.to_string()));
        }
        let mut hold = match (&self.shared, dry) {
            (Some(lease), false) if opts.claimed => {
                Some(Hold::claimed(self.registry.db(), lease, name))
            }
            (Some(lease), false) => Some(Hold::claim(self.registry.db(), lease, name)?),
            _ => None,
        };
        let _lock = if dry || hold.is_some() {
            RunLock::none()
        } else {
            self.lock(name)?
        };
        let started = Instant::now();
        let store: Arc<dyn PageStore> = if dry {
            Arc::new(DryRun::over(self.store.clone()))
        } else {
            self.store.clone()
        };
        // A dry run's metrics are nobody's.
        let metrics = (!dry).then(nexo_runtime::metrics::Metrics::global);
        let run_id = store.begin_run(name)?;
        let mut stop = opts.stop.clone();
        if let Some(hold) = &mut hold {
            let own = stop
                .as_ref()
                .map_or_else(StopSignal::default, StopSignal::child);
            if let Err(e) = hold.attach(run_id, own.clone()) {
                store.finish_run(run_id, RunStatus::Interrupted, Some(&e.to_string()))?;
                return Err(e);
            }
            stop = Some(own);
        }
        // A run that cannot even open its connections and plugins is a
        // failed run in the history, not just an error on someone's screen.
        let mut prepared = match self.prepare(&row.pipeline).await {
            Ok(p) => p,
            Err(e) => {
                if let Some(metrics) = metrics {
                    metrics.run_finished(name, "failed", &Counts::default());
                    metrics.error(name, &format!("run:{}", e.class()));
                }
                store.finish_run(run_id, RunStatus::Failed, Some(&e.to_string()))?;
                return Err(e);
            }
        };
        if dry {
            prepared.dest = Arc::new(DryDestination);
        }
        let setup = RunSetup {
            stop,
            progress: opts.progress.clone(),
            metrics,
            plan: dry,
        };
        let mut driver = Driver::new(&prepared, store.clone(), run_id, setup);
        // A stop seen while waiting out an outage knows nothing of the
        // pages committed before it.
        let outcome = driver
            .drive(&row)
            .await
            .map_err(|e| match e {
                SyncError::Stopped { pipeline, pages } if hold.as_ref().is_some_and(Hold::lost) => {
                    SyncError::LeaseLost { pipeline, pages }
                }
                e => e,
            })
            .map_err(|e| e.with_pages(driver.pages()));
        if let Err(e) = &outcome {
            let level = if matches!(
                e,
                SyncError::Stopped { .. }
                    | SyncError::LeaseLost { .. }
                    | SyncError::Cancelled { .. }
            ) {
                LogLevel::Warn
            } else {
                LogLevel::Error
            };
            if let Err(log_error) = driver.log_ending(level, &e.to_string()) {
                tracing::error!(pipeline = name, error = %log_error, "cannot log why the run ended");
            }
        }
        let (status, error) = match &outcome {
            Ok(()) => (RunStatus::Succeeded, None),
            Err(e @ (SyncError::Stopped { .. } | SyncError::LeaseLost { .. })) => {
                (RunStatus::Interrupted, Some(e.to_string()))
            }
            Err(e @ SyncError::Cancelled { .. }) => (RunStatus::Cancelled, Some(e.to_string())),
            Err(e) => (RunStatus::Failed, Some(e.to_string())),
        };
        let counts = driver.counts();
        if let Some(metrics) = metrics {
            metrics.run_finished(name, status.as_str(), &counts);
            if let Err(e) = &outcome
                && status == RunStatus::Failed
            {
                metrics.error(name, &format!("run:{}", e.class()));
            }
        }
        store.finish_run(run_id, status, error.as_deref())?;
        if metrics.is_some() {
            let days = self
                .store
                .setting("run_retention_days")?
                .and_then(|d| d.parse().ok())
                .unwrap_or(30);
            let pruned = self.store.prune_runs(days)?;
            if pruned > 0 {
                tracing::info!(pruned, days, "old runs pruned");
            }
        }
        let timings = driver.timings();
        let run_id = (!dry).then_some(run_id);
        let report = RunReport {
            run_id,
            status,
            counts,
            pages: driver.pages(),
            elapsed: started.elapsed(),
            plan: driver.take_plan(),
            matching: driver.take_matching(),
            error,
        };
        tracing::info!(
            pipeline = name,
            run = ?run_id,
            status = status.as_str(),
            read = report.counts.read,
            created = report.counts.created,
            updated = report.counts.updated,
            unchanged = report.counts.unchanged,
            deleted = report.counts.deleted,
            failed = report.counts.failed,
            quarantined = report.counts.quarantined,
            superseded = report.counts.superseded,
            conflicts = report.counts.conflicts,
            ms = report.elapsed.as_millis() as u64,
            read_ms = timings.read.as_millis() as u64,
            map_ms = timings.map.as_millis() as u64,
            write_ms = timings.write.as_millis() as u64,
            commit_ms = timings.commit.as_millis() as u64,
            "run finished"
        );
        match outcome {
            Ok(()) => Ok(report),
            Err(e) => Err(e),
        }
    }
}
