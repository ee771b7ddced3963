//! Sandbox to production: the production twin of a pipeline that has
//! succeeded in the sandbox (`nexo pipeline promote`). The twin is the same
//! definition with its sandbox connections swapped for production ones,
//! under its own name, so it has its own cursor; and since the identity map
//! keys links by connection (and stream and entity), the twin's links are
//! the production connections' — it can neither reuse nor touch the
//! sandbox's. Everything that can be wrong is refused here, before the
//! caller dry-runs the twin and applies it through `Engine::apply_with`.

use std::collections::BTreeMap;

use super::Engine;
use super::SyncError;
use super::pipeline::Pipeline;
use super::store::{RunFilter, RunStatus};
use nexo_db::connections::Environment;

/// A promotion that cannot go ahead; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// `--connections` does not parse.
    #[error(
        "--connections: `{0}` is not SANDBOX=PRODUCTION; write each pair as sandbox-name=production-name, separated by commas"
    )]
    Syntax(String),
    /// The pipeline has never run to success.
    #[error(
        "pipeline `{0}` has no succeeded run in the sandbox; run it there first (`nexo pipeline run {0}`) and check what it did"
    )]
    NotProven(String),
    /// A named connection does not exist.
    #[error("--connections: no connection named `{name}`{near}; see `nexo connection list`")]
    UnknownConnection {
        /// The name as given.
        name: String,
        /// `; did you mean …?` or nothing.
        near: String,
    },
    /// A connection is in the wrong environment.
    #[error(
        "--connections: `{name}` is a {actual} connection; the left of each pair must be a sandbox connection of the pipeline and the right a production one"
    )]
    WrongEnvironment {
        /// The connection.
        name: String,
        /// Its environment.
        actual: &'static str,
    },
    /// The pipeline uses a sandbox connection the mapping leaves out.
    #[error(
        "--connections: the pipeline's {role} `{name}` has no production counterpart; add `{name}=PRODUCTION-CONNECTION`"
    )]
    Unmapped {
        /// `source` or `destination`.
        role: &'static str,
        /// The sandbox connection.
        name: String,
    },
    /// The mapping names a connection the pipeline does not use.
    #[error(
        "--connections: pipeline `{pipeline}` does not use `{name}` (it uses `{source_connection}` and `{destination_connection}`)"
    )]
    NotUsed {
        /// The pipeline.
        pipeline: String,
        /// The stray connection.
        name: String,
        /// Its source connection.
        source_connection: String,
        /// Its destination connection.
        destination_connection: String,
    },
    /// The two connections of a pair reach different kinds of system.
    #[error(
        "--connections: `{sandbox}` uses plugin {sandbox_plugin} but `{production}` uses {production_plugin}; a twin must reach the same kind of system (connect production with {sandbox_plugin})"
    )]
    PluginsDiffer {
        /// Sandbox connection.
        sandbox: String,
        /// Its plugin.
        sandbox_plugin: String,
        /// Production connection.
        production: String,
        /// Its plugin.
        production_plugin: String,
    },
    /// The twin's name belongs to another pipeline.
    #[error(
        "pipeline `{0}` already exists and is not this pipeline's production twin (its connections differ); choose another name with --as"
    )]
    NameTaken(String),
    /// The pipeline waits for another that has no twin yet.
    #[error(
        "pipeline `{pipeline}` runs after `{after}`, which has no production twin `{twin}`; promote `{after}` first"
    )]
    AfterNotPromoted {
        /// The pipeline.
        pipeline: String,
        /// What it waits for.
        after: String,
        /// The twin that would be waited for.
        twin: String,
    },
}

/// What a promotion would do.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// The twin's definition.
    pub twin: Pipeline,
    /// The definition saved under the twin's name now, when this is an
    /// update of an earlier promotion.
    pub existing: Option<Pipeline>,
}

impl Promotion {
    /// For an update: each field that changes, `path: before → after`.
    pub fn changes(&self) -> Vec<String> {
        let Some(old) = &self.existing else {
            return Vec::new();
        };
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        flatten(
            "",
            &serde_json::to_value(old).unwrap_or_default(),
            &mut before,
        );
        flatten(
            "",
            &serde_json::to_value(&self.twin).unwrap_or_default(),
            &mut after,
        );
        let mut out = Vec::new();
        for (path, b) in &before {
            match after.get(path) {
                Some(a) if a == b => {}
                Some(a) => out.push(format!("{path}: {b} → {a}")),
                None => out.push(format!("{path}: {b} → (none)")),
            }
        }
        for (path, a) in &after {
            if !before.contains_key(path) {
                out.push(format!("{path}: (none) → {a}"));
            }
        }
        out
    }
}

fn flatten(at: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{at}[{i}]"), v, out);
            }
        }
        other => {
            out.insert(at.to_string(), other.to_string());
        }
    }
}

/// `a=b,c=d` → [(a, b), (c, d)] (several `--connections` may be given).
pub fn parse_mapping(items: &[String]) -> Result<BTreeMap<String, String>, PromoteError> {
    let mut out = BTreeMap::new();
    for item in items.iter().flat_map(|i| i.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (from, to) = item
            .split_once('=')
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| PromoteError::Syntax(item.to_string()))?;
        out.insert(from.to_string(), to.to_string());
    }
    Ok(out)
}

/// The default name of a pipeline's production twin.
pub fn twin_name(pipeline: &str) -> String {
    format!("{pipeline}-production")
}

/// The twin: `pipeline` with every connection it names (its ends, its
/// master system and field owners) swapped by `mapping`, named `name`.
/// Pure: the caller checks the connections themselves.
pub fn twin_of(
    pipeline: &Pipeline,
    mapping: &BTreeMap<String, String>,
    name: &str,
) -> Result<Pipeline, PromoteError> {
    let swap = |role: &'static str, c: &str| -> Result<String, PromoteError> {
        mapping
            .get(c)
            .cloned()
            .ok_or_else(|| PromoteError::Unmapped {
                role,
                name: c.to_string(),
            })
    };
    for from in mapping.keys() {
        if *from != pipeline.source.connection && *from != pipeline.destination.connection {
            return Err(PromoteError::NotUsed {
                pipeline: pipeline.name.clone(),
                name: from.clone(),
                source_connection: pipeline.source.connection.clone(),
                destination_connection: pipeline.destination.connection.clone(),
            });
        }
    }
    let mut twin = pipeline.clone();
    twin.name = name.to_string();
    twin.source.connection = swap("source", &pipeline.source.connection)?;
    twin.destination.connection = swap("destination", &pipeline.destination.connection)?;
    if let Some(system) = &pipeline.master.system {
        twin.master.system = Some(swap("master system", system)?);
    }
    for owner in twin.master.fields.values_mut() {
        *owner = swap("field owner", owner)?;
    }
    Ok(twin)
}

impl Engine {
    /// Everything a promotion of `pipeline` by `mapping` (sandbox →
    /// production connection) under `name` needs, checked: a succeeded
    /// run, every named connection existing in the right environment with
    /// the same plugin as its counterpart, both ends mapped, and the name
    /// free or already this pipeline's twin (an update).
    pub fn promotion(
        &self,
        pipeline: &str,
        mapping: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<Promotion, SyncError> {
        let row = self.pipeline_row(pipeline)?;
        let succeeded = self.store.runs(&RunFilter {
            pipeline: Some(pipeline.to_string()),
            status: Some(RunStatus::Succeeded),
            limit: 1,
        })?;
        if succeeded.is_empty() {
            return Err(PromoteError::NotProven(pipeline.to_string()).into());
        }
        let db = self.registry.db();
        let names = db.connection_names(None)?;
        let get = |c: &str, want: Environment| -> Result<String, SyncError> {
            let Some(found) = db.connection(c)? else {
                let near = super::check::nearest(c, names.iter().map(String::as_str))
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                return Err(PromoteError::UnknownConnection {
                    name: c.to_string(),
                    near,
                }
                .into());
            };
            if found.environment != want {
                return Err(PromoteError::WrongEnvironment {
                    name: c.to_string(),
                    actual: found.environment.as_str(),
                }
                .into());
            }
            Ok(found.plugin_id)
        };
        for (sandbox, production) in mapping {
            let sandbox_plugin = get(sandbox, Environment::Sandbox)?;
            let production_plugin = get(production, Environment::Production)?;
            if sandbox_plugin != production_plugin {
                return Err(PromoteError::PluginsDiffer {
                    sandbox: sandbox.clone(),
                    sandbox_plugin,
                    production: production.clone(),
                    production_plugin,
                }
                .into());
            }
        }
        let mut twin = twin_of(&row.pipeline, mapping, name)?;
        for after in &mut twin.schedule.after {
            let theirs = twin_name(after);
            if self.store.pipeline(&theirs)?.is_none() {
                return Err(PromoteError::AfterNotPromoted {
                    pipeline: pipeline.to_string(),
                    after: after.clone(),
                    twin: theirs,
                }
                .into());
            }
            *after = theirs;
        }
        let existing = match self.store.pipeline(name)? {
            None => None,
            Some(old)
                if old.pipeline.source.connection == twin.source.connection
                    && old.pipeline.destination.connection == twin.destination.connection =>
            {
                Some(old.pipeline)
            }
            Some(_) => return Err(PromoteError::NameTaken(name.to_string()).into()),
        };
        Ok(Promotion { twin, existing })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SANDBOX: &str = r#"
        name = "contacts"
        entity = "contact"
        [source]
        connection = "crm-a"
        stream = "contacts"
        [destination]
        connection = "crm-b"
        stream = "contacts"
        [master]
        system = "crm-a"
        fields = { phone = "crm-b" }
    "#;

    fn mapping(pairs: &[&str]) -> BTreeMap<String, String> {
        parse_mapping(&pairs.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_twin_swaps_every_connection_it_names() {
        let p = Pipeline::from_toml(SANDBOX, "p.toml").unwrap();
        let twin = twin_of(
            &p,
            &mapping(&["crm-a=prod-a, crm-b = prod-b"]),
            "contacts-production",
        )
        .unwrap();
        assert_eq!(twin.name, "contacts-production");
        assert_eq!(twin.source.connection, "prod-a");
        assert_eq!(twin.destination.connection, "prod-b");
        assert_eq!(twin.master.system.as_deref(), Some("prod-a"));
        assert_eq!(twin.master.fields["phone"], "prod-b");
        assert_eq!(twin.source.stream, p.source.stream);
        twin.check().unwrap();
    }

    #[test]
    fn a_left_out_or_stray_connection_is_named() {
        let p = Pipeline::from_toml(SANDBOX, "p.toml").unwrap();
        let e = twin_of(&p, &mapping(&["crm-a=prod-a"]), "t").unwrap_err();
        assert!(e.to_string().contains("destination `crm-b`"), "{e}");
        let e = twin_of(&p, &mapping(&["crm-a=prod-a,crm-b=prod-b,crm-c=x"]), "t").unwrap_err();
        assert!(e.to_string().contains("does not use `crm-c`"), "{e}");
        let e = parse_mapping(&["crm-a:prod-a".to_string()]).unwrap_err();
        assert!(e.to_string().contains("`crm-a:prod-a`"), "{e}");
    }

    #[test]
    fn an_update_shows_what_changes() {
        let p = Pipeline::from_toml(SANDBOX, "p.toml").unwrap();
        let m = mapping(&["crm-a=prod-a,crm-b=prod-b"]);
        let old = twin_of(&p, &m, "t").unwrap();
        let mut newer = p.clone();
        newer.batch_size = 50;
        let promotion = Promotion {
            twin: twin_of(&newer, &m, "t").unwrap(),
            existing: Some(old),
        };
        assert_eq!(promotion.changes(), ["batch_size: 100 → 50"]);
    }
}
