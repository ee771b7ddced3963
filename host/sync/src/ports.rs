//! The three things a run talks to besides its store, each behind a small
//! trait so the page path can be driven by fakes in unit tests: a
//! [`Source`] that reads pages, a [`Destination`] that writes batches, and
//! a [`Mapping`] that turns source records into destination records. The
//! real implementations are thin adapters over the Wasm plugins
//! ([`ConnectorEnd`], [`MapperChain`]). Calls are per page or per batch,
//! never per record, so the dynamic dispatch costs nothing measurable.

use std::future::Future;
use std::pin::Pin;

use super::SyncError;
use super::mapping::{Mapped, map_parallel};
use nexo_runtime::PluginError;
use nexo_runtime::plugin::{CheckedPage, ConnectorPlugin, MapperPlugin, Record, WriteResult};

/// A boxed future, the return type of the ports' calls (dyn-compatible).
pub(crate) type Call<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where records are read from: a pipeline's source, or its destination
/// when its own changes are tracked.
pub(crate) trait Source: Send + Sync {
    /// The plugin, for messages.
    fn label(&self) -> String;
    /// The page after `state`, its records checked one by one.
    fn read<'a>(&'a self, state: Option<&'a str>) -> Call<'a, Result<CheckedPage, PluginError>>;
}

/// Where records are written: one result per record, in order.
pub(crate) trait Destination: Send + Sync {
    /// Write one batch.
    fn write<'a>(&'a self, batch: &'a [Record]) -> Call<'a, Result<Vec<WriteResult>, PluginError>>;
}

/// The pipeline's mappers, as one step.
pub(crate) trait Mapping: Send + Sync {
    /// Map the page's changed records; the output keyed by source id (a
    /// record left out is not written, one refused is quarantined).
    fn map<'a>(
        &'a self,
        pipeline: &'a str,
        records: Vec<Record>,
    ) -> Call<'a, Result<Mapped, SyncError>>;
}

/// One end of a pipeline: a connector plugin with its connection's config
/// and the stream the pipeline uses.
pub(crate) struct ConnectorEnd {
    pub plugin: ConnectorPlugin,
    pub config: String,
    pub stream: String,
}

impl Source for ConnectorEnd {
    fn label(&self) -> String {
        self.plugin.plugin().to_string()
    }

    fn read<'a>(&'a self, state: Option<&'a str>) -> Call<'a, Result<CheckedPage, PluginError>> {
        Box::pin(async move {
            self.plugin
                .read_checked(&self.config, &self.stream, state)
                .await
                .into_result()
        })
    }
}

impl Destination for ConnectorEnd {
    fn write<'a>(&'a self, batch: &'a [Record]) -> Call<'a, Result<Vec<WriteResult>, PluginError>> {
        Box::pin(async move {
            self.plugin
                .write(&self.config, &self.stream, batch)
                .await
                .into_result()
        })
    }
}

/// The pipeline's mapper plugins, each with its config, applied in order.
pub(crate) struct MapperChain(pub Vec<(MapperPlugin, String)>);

impl Mapping for MapperChain {
    fn map<'a>(
        &'a self,
        pipeline: &'a str,
        records: Vec<Record>,
    ) -> Call<'a, Result<Mapped, SyncError>> {
        Box::pin(async move {
            if self.0.is_empty() {
                return Ok(Mapped::passing(records));
            }
            map_parallel(&self.0, pipeline, records).await
        })
    }
}
