//! A test kit for connector plugins called directly, without the sync
//! engine: open a component on one granted origin with its secret, build
//! write batches in the host's write protocol, write and read to the end
//! (waiting out rate limits as the engine does), and outcomes as one line
//! each. The connector tests under `tests/tests/` share it, and a vendor's
//! tests can use it the same way.

use std::collections::BTreeMap;

use nexo::kit::drive::{self, Retry};
use nexo::plugin::{MapOutcome, Operation, Record, WriteOutcome, WriteResult};
use nexo::sandbox::overrides::Overrides;
use nexo::sandbox::policy::HttpGrant;
use nexo::sandbox::secrets::SecretValue;
use nexo::{
    ConnectorPlugin, Grants, GuestError, Limits, MapperPlugin, PluginError, PluginRef, Sandbox,
};
use serde_json::Value;

use crate::load;

/// Opens the connector `component` (a path constant of [`crate::programs`])
/// as plugin `id`@0.1.0 with default limits, HTTP granted to the private
/// `origin` only, and `secrets` as name → value.
pub async fn open(
    component: &str,
    id: &str,
    origin: &str,
    secrets: &[(&str, &str)],
) -> ConnectorPlugin {
    let grant = HttpGrant::private(origin).unwrap();
    ConnectorPlugin::open(&load(component), sandbox(id, vec![grant], secrets))
        .await
        .unwrap()
}

/// Opens the connector `component` as [`open`] does, but on a vendor's
/// API: HTTP granted to the `logical` origin it declares (public addresses
/// only) and sent, by the connection's origin override, to the sandbox at
/// `physical` — as a sandbox connection (`--origin-override
/// LOGICAL=PHYSICAL`) runs it.
pub async fn open_overridden(
    component: &str,
    id: &str,
    logical: &str,
    physical: &str,
    secrets: &[(&str, &str)],
) -> ConnectorPlugin {
    let grant = HttpGrant::public(logical).unwrap();
    let pair = [(logical.to_string(), physical.to_string())];
    ConnectorPlugin::open(&load(component), sandbox(id, vec![grant], secrets))
        .await
        .unwrap()
        .with_origin_overrides(Overrides::parse(pair.iter().map(|(a, b)| (a, b))).unwrap())
        .unwrap()
}

/// Opens the mapper `component` (a path constant of [`crate::programs`]) as
/// plugin `id`@0.1.0 with default limits and no grants (a mapper gets none).
pub fn open_mapper(component: &str, id: &str) -> MapperPlugin {
    MapperPlugin::open(&load(component), sandbox(id, vec![], &[])).unwrap()
}

/// The sandbox of plugin `id`@0.1.0: default limits, the `http` grants, and
/// `secrets` as name → value.
fn sandbox(id: &str, http: Vec<HttpGrant>, secrets: &[(&str, &str)]) -> Sandbox {
    Sandbox {
        plugin: PluginRef {
            id: id.into(),
            version: "0.1.0".into(),
        },
        limits: Limits::default(),
        grants: Grants { http, kv_bytes: 0 },
        secrets: secrets
            .iter()
            .map(|(name, value)| (name.to_string(), SecretValue::new(*value)))
            .collect::<BTreeMap<_, _>>(),
        credentials: Default::default(),
        kv: None,
    }
}

/// An upsert in the write protocol: `id` is the destination's id (empty for
/// a create), `key` the idempotency key.
pub fn upsert(stream: &str, id: &str, key: &str, payload: &Value) -> Record {
    Record {
        stream: stream.into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload: payload.to_string(),
        cursor: Some(key.into()),
    }
}

/// A delete of the destination's record `id`.
pub fn delete(stream: &str, id: &str, key: &str) -> Record {
    Record {
        stream: stream.into(),
        id: id.into(),
        operation: Operation::Delete,
        payload: "{}".into(),
        cursor: Some(key.into()),
    }
}

/// One result as a line: `created ID`, `updated ID`, `unchanged ID`,
/// `deleted ID` or `failed: CLASS: MESSAGE`.
pub fn outcome(result: &WriteResult) -> String {
    match &result.outcome {
        WriteOutcome::Created(id) => format!("created {id}"),
        WriteOutcome::Updated(id) => format!("updated {id}"),
        WriteOutcome::Unchanged(id) => format!("unchanged {id}"),
        WriteOutcome::Deleted(id) => format!("deleted {id}"),
        WriteOutcome::Failed(e) => format!("failed: {}", e),
    }
}

/// The id at the end of an [`outcome`] line.
pub fn id_of(outcome: &str) -> String {
    outcome.rsplit(' ').next().unwrap_or_default().to_string()
}

/// The guest's own error, when the call failed with one.
pub fn guest_error(e: &PluginError) -> Option<&GuestError> {
    match e {
        PluginError::Guest { error, .. } => Some(error),
        _ => None,
    }
}

/// One `write` call; a call that fails as a whole fails the test. One line
/// per record, in order.
pub async fn write(
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    batch: &[Record],
) -> Vec<String> {
    let results = c.write(config, stream, batch).await.into_result().unwrap();
    assert_eq!(results.len(), batch.len(), "one result per record");
    results.iter().map(outcome).collect()
}

/// One `write` call of a single upsert (see [`upsert`]) to `stream`; its
/// one line, as [`write()`] gives it.
pub async fn write_upsert(
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    id: &str,
    key: &str,
    payload: &Value,
) -> Vec<String> {
    write(c, config, stream, &[upsert(stream, id, key, payload)]).await
}

/// Writes a batch, sending the same batch again after a rate limit (once
/// `Retry-After` has passed) or a transient failure (a time-out, a 5xx), as
/// the engine does — the conformance kit's own driver
/// ([`nexo::kit::drive::write_retrying`]); one line per record.
pub async fn write_retrying(
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    batch: &[Record],
) -> Vec<String> {
    let retry = Retry {
        attempts: 200,
        ..Retry::default()
    };
    let (_, result) = drive::write_retrying(c, config, stream, batch, retry).await;
    let results = result.unwrap_or_else(|e| panic!("write {stream}: {e}"));
    assert_eq!(results.len(), batch.len(), "one result per record");
    results.iter().map(outcome).collect()
}

/// Reads `stream` from `state` to its end, waiting out rate limits as the
/// engine does (the kit's driver, [`nexo::kit::drive::read_to_end`]); the
/// records and the last state.
pub async fn read_all(
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    state: Option<String>,
) -> (Vec<Record>, Option<String>) {
    let retry = Retry {
        attempts: 200,
        ..Retry::default()
    };
    let (reading, result) =
        drive::read_to_end(c, config, stream, state.clone(), 100_000, retry).await;
    if let Err(e) = result {
        panic!("read {stream}: {e}");
    }
    let last = if reading.pages.is_empty() {
        state
    } else {
        reading.state()
    };
    let records = reading.pages.into_iter().flat_map(|p| p.records).collect();
    (records, last)
}

/// [`read_all`], with each record's payload parsed.
pub async fn read_payloads(
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    state: Option<String>,
) -> (Vec<Value>, Option<String>) {
    let (records, state) = read_all(c, config, stream, state).await;
    (records.iter().map(payload).collect(), state)
}

/// The records a mapper's outcomes hold, in input order (skipped inputs
/// add none); panics on a failed outcome, naming it — for tests of mappers
/// that must map everything they are given.
pub fn mapped(outcomes: Vec<MapOutcome>) -> Vec<Record> {
    outcomes
        .into_iter()
        .flat_map(|o| match o {
            MapOutcome::Mapped(records) => records,
            MapOutcome::Failed(e) => panic!("a record failed to map: {e}"),
        })
        .collect()
}

/// A record's payload as JSON.
pub fn payload(r: &Record) -> Value {
    serde_json::from_str(&r.payload).unwrap()
}
