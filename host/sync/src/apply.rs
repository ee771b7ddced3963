//! `Engine::apply`: everything checked before a pipeline definition is
//! saved — the connections (named as such when missing), the definition's
//! own rules, environments, streams, each mapper's config (against its
//! signed schema, then by the mapper on an empty batch), the last mapper's
//! output fields against the destination stream, and an identity change
//! under a saved cursor (refused unless `reset`). The rules themselves are
//! pure functions in `check`.

use std::collections::HashMap;

use super::SyncError;
use super::engine::{ApplyOptions, Engine};
use super::pipeline::{Pipeline, PipelineError};
use super::store::PipelineRow;
use nexo_db::connections::ConnectionRow;
use nexo_runtime::error::PluginError;
use nexo_runtime::plugin::ConnectorPlugin;

fn invalid(pipeline: &Pipeline, field: &str, message: String) -> PipelineError {
    PipelineError::Invalid {
        name: pipeline.name.clone(),
        field: field.to_string(),
        message,
    }
}

impl Engine {
    /// Validate a definition against the installed connections and plugins,
    /// then save it. Nothing is saved on any error. A change of a saved
    /// pipeline's identity (entity, streams) is refused; see
    /// [`Engine::apply_with`].
    pub async fn apply(&self, pipeline: &Pipeline) -> Result<(), SyncError> {
        self.apply_with(pipeline, ApplyOptions::default()).await
    }

    /// [`Engine::apply`] with options. In order: both connections exist
    /// (named as such, before any field that refers to them is blamed),
    /// the definition's own rules, the environments and streams, each
    /// mapper's config against the schema its signed manifest carries and
    /// then the mapper itself (called once with an empty batch), the last
    /// mapper's output fields against the destination stream, and, for a
    /// saved pipeline with history, an unchanged identity unless
    /// `options.reset`.
    pub async fn apply_with(
        &self,
        pipeline: &Pipeline,
        options: ApplyOptions,
    ) -> Result<(), SyncError> {
        self.check_definition(pipeline, options).await?;
        self.store.save_pipeline(pipeline)?;
        if options.reset {
            self.store.reset_state(&pipeline.name)?;
            tracing::info!(pipeline = %pipeline.name, "pipeline saved and reset");
        } else {
            tracing::info!(pipeline = %pipeline.name, "pipeline saved");
        }
        Ok(())
    }

    /// Every check of [`Engine::apply_with`], saving nothing: for a
    /// definition that is dry-run before it is applied (a promotion's
    /// twin).
    pub async fn check_definition(
        &self,
        pipeline: &Pipeline,
        options: ApplyOptions,
    ) -> Result<(), SyncError> {
        self.connections_exist(pipeline)?;
        pipeline.check()?;
        self.check_after(pipeline)
            .map_err(|message| invalid(pipeline, "schedule.after", message))?;
        let destination = self.check_ends(pipeline).await?;
        let last_schema = self.check_mappers(pipeline).await?;
        if let (Some(schema), Some(last)) = (&last_schema, pipeline.mappers.last()) {
            let at = format!("mappers[{}].config", pipeline.mappers.len() - 1);
            let (row, plugin) = &destination;
            let problems = self
                .check_targets(pipeline, schema, &last.config, &at, row, plugin)
                .await;
            if !problems.is_empty() {
                return Err(PipelineError::Problems {
                    name: pipeline.name.clone(),
                    problems,
                }
                .into());
            }
        }
        if let Some(old) = self.store.pipeline(&pipeline.name)? {
            let changes = super::check::identity_changes(&old.pipeline, pipeline);
            if !changes.is_empty() && !options.reset && self.has_history(&old)? {
                return Err(PipelineError::NeedsReset {
                    name: pipeline.name.clone(),
                    changes,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Both ends name a connection that exists; otherwise the error says
    /// so, lists the connections and suggests the nearest name.
    fn connections_exist(&self, pipeline: &Pipeline) -> Result<(), SyncError> {
        let db = self.registry.db();
        for (field, end) in [
            ("source", &pipeline.source),
            ("destination", &pipeline.destination),
        ] {
            if db.connection(&end.connection)?.is_some() {
                continue;
            }
            let names = db.connection_names(None)?;
            let near = super::check::nearest(&end.connection, names.iter().map(String::as_str))
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            let list = if names.is_empty() {
                "none yet; add one with `nexo connection add`".to_string()
            } else {
                names.join(", ")
            };
            return Err(invalid(
                pipeline,
                &format!("{field}.connection"),
                format!(
                    "no connection named `{}` (connections: {list}){near}",
                    end.connection
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Both ends open, in one environment, with their streams; the
    /// destination's connection and plugin.
    async fn check_ends(
        &self,
        pipeline: &Pipeline,
    ) -> Result<(ConnectionRow, ConnectorPlugin), SyncError> {
        let mut environment = None;
        let mut ends = Vec::with_capacity(2);
        for (field, end) in [
            ("source", &pipeline.source),
            ("destination", &pipeline.destination),
        ] {
            let row = self
                .connections
                .get(&end.connection)
                .map_err(|e| invalid(pipeline, &format!("{field}.connection"), e.to_string()))?;
            match environment {
                None => environment = Some(row.environment),
                Some(env) if env != row.environment => {
                    return Err(invalid(
                        pipeline,
                        "destination.connection",
                        format!(
                            "`{}` is a {} connection but the source is {}: a pipeline stays inside one environment",
                            end.connection,
                            row.environment.as_str(),
                            env.as_str()
                        ),
                    )
                    .into());
                }
                Some(_) => {}
            }
            let (_, plugin) = self
                .connections
                .open(&end.connection, self.limits.clone())
                .await
                .map_err(|e| invalid(pipeline, &format!("{field}.connection"), e.to_string()))?;
            if !plugin.spec().streams.iter().any(|s| s == &end.stream) {
                return Err(invalid(
                    pipeline,
                    &format!("{field}.stream"),
                    format!(
                        "{} has no stream `{}` (it has: {})",
                        plugin.plugin(),
                        end.stream,
                        plugin.spec().streams.join(", ")
                    ),
                )
                .into());
            }
            ends.push((row, plugin));
        }
        ends.pop()
            .ok_or_else(|| invalid(pipeline, "destination", "has no connection".to_string()).into())
    }

    /// Each mapper step: its config against the schema its manifest
    /// carries, then the mapper on an empty batch (its own checks, and
    /// whether it runs at all in its sandbox). Every problem of every step
    /// in one error; the last step's schema when all pass.
    async fn check_mappers(
        &self,
        pipeline: &Pipeline,
    ) -> Result<Option<serde_json::Value>, SyncError> {
        let mut problems = Vec::new();
        let mut last_schema = None;
        for (i, step) in pipeline.mappers.iter().enumerate() {
            let (mapper, manifest) = self
                .open_mapper_manifest(&pipeline.name, step)
                .map_err(|e| invalid(pipeline, &format!("mappers[{i}].plugin"), e.to_string()))?;
            let at = format!("mappers[{i}].config");
            if let Some(schema) = &manifest.config_schema {
                let errors = super::check::config_errors(schema, &step.config, &at);
                if !errors.is_empty() {
                    problems.extend(errors);
                    continue;
                }
            }
            match mapper
                .map(&step.config.to_string(), &[])
                .await
                .into_result()
            {
                Ok(_) => {}
                // What the mapper answered: its verdict on the config.
                Err(e @ PluginError::Guest { .. }) => {
                    problems.push(format!("{at}: {} refused it: {e}", mapper.plugin()));
                }
                // A limit, trap or crash: the mapper cannot run here at
                // all, whatever its config; every run would fail the same.
                Err(e) => {
                    problems.push(format!(
                        "mappers[{i}].plugin: {} cannot run even an empty batch: {e}",
                        mapper.plugin()
                    ));
                }
            }
            last_schema = (i + 1 == pipeline.mappers.len())
                .then_some(manifest.config_schema)
                .flatten();
        }
        if problems.is_empty() {
            Ok(last_schema)
        } else {
            Err(PipelineError::Problems {
                name: pipeline.name.clone(),
                problems,
            }
            .into())
        }
    }

    /// The last mapper's output fields (its schema's `x-nexo-target`
    /// annotations) against the destination stream, when that stream lists
    /// its fields. A destination that cannot be discovered now is left to
    /// the run (which discovers it anyway) with a warning.
    async fn check_targets(
        &self,
        pipeline: &Pipeline,
        schema: &serde_json::Value,
        config: &serde_json::Value,
        at: &str,
        row: &ConnectionRow,
        plugin: &ConnectorPlugin,
    ) -> Vec<String> {
        let targets = super::check::targets(schema, config);
        if targets.is_empty() {
            return Vec::new();
        }
        let stream = &pipeline.destination.stream;
        let info = match self
            .stream_info(&pipeline.name, plugin, &row.config, stream)
            .await
        {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(pipeline = %pipeline.name, error = %e, "mapper targets not checked: the destination stream cannot be discovered now");
                return Vec::new();
            }
        };
        let Ok(stream_schema) = serde_json::from_str::<serde_json::Value>(&info.json_schema) else {
            return Vec::new();
        };
        let Some(fields) = super::check::listed_fields(&stream_schema) else {
            return Vec::new();
        };
        super::check::target_errors(
            &targets,
            &fields,
            at,
            &format!("{} `{stream}`", pipeline.destination.connection),
        )
    }

    /// Whether a saved pipeline has a cursor or has run (so it has links).
    fn has_history(&self, row: &PipelineRow) -> Result<bool, SyncError> {
        if row.state.is_some() || row.destination_state.is_some() {
            return Ok(true);
        }
        let runs = self.store.runs(&super::store::RunFilter {
            pipeline: Some(row.pipeline.name.clone()),
            status: None,
            limit: 1,
        })?;
        Ok(!runs.is_empty())
    }

    /// `schedule.after` must name other saved pipelines and must not close a
    /// loop (A after B after A would run forever).
    fn check_after(&self, pipeline: &Pipeline) -> Result<(), String> {
        if pipeline.schedule.after.is_empty() {
            return Ok(());
        }
        let mut after: HashMap<String, Vec<String>> = self
            .store
            .pipelines()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|row| (row.pipeline.name, row.pipeline.schedule.after))
            .collect();
        after.insert(pipeline.name.clone(), pipeline.schedule.after.clone());
        for first in &pipeline.schedule.after {
            if !after.contains_key(first) {
                return Err(format!(
                    "no pipeline named `{first}`; apply it first (see `nexo pipeline list`)"
                ));
            }
        }
        // Walk what this pipeline waits for; reaching it again is a loop.
        let mut path = vec![pipeline.name.clone()];
        let mut stack: Vec<(String, usize)> = vec![(pipeline.name.clone(), 0)];
        while let Some((name, next)) = stack.pop() {
            let Some(up) = after.get(&name).and_then(|list| list.get(next)).cloned() else {
                path.pop();
                continue;
            };
            stack.push((name, next + 1));
            if up == pipeline.name {
                path.push(up);
                return Err(format!(
                    "would make a loop: {} (each runs after the next)",
                    path.join(" → ")
                ));
            }
            if !path.contains(&up) {
                path.push(up.clone());
                stack.push((up, 0));
            }
        }
        Ok(())
    }
}
