//! The connector suite: spec, check, read, write, faults and sandbox, in
//! that order (reads before writes, so a read sees the system as the
//! suite found it; the records the write checks create are deleted again
//! when the connector deletes).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use base64::Engine as _;
use nexo_runtime::plugin::{Operation, Record, StreamInfo, WriteOutcome, WriteResult};
use nexo_runtime::sandbox::outbound::HttpError;
use nexo_runtime::sandbox::policy::{Origin, OriginPattern};
use nexo_runtime::sandbox::secrets::SecretValue;
use nexo_runtime::state::SandboxEvent;
use nexo_runtime::{ConnectorPlugin, GuestError, PluginError};
use serde_json::Value;

use crate::drive::{self, DriveError, Reading, Retry, Trace};
use crate::proxy::{Fault, Only};
use crate::report::{Report, Verdict};
use crate::suite::{Deletes, StreamSuite, Suite, instantiate};
use crate::{Env, KitError};

/// What the whole suite saw, for the sandbox checks at its end.
#[derive(Default)]
struct Seen {
    /// Origins the sandbox refused, with the message.
    refused: BTreeSet<String>,
    /// Whether the plugin used key-value storage it was not granted.
    kv_refused: bool,
    /// Text the plugin produced (records, errors), with where it came from.
    texts: Vec<(String, String)>,
}

impl Seen {
    fn trace(&mut self, t: &Trace) {
        for e in &t.events {
            if let SandboxEvent::HttpRefused(
                e @ (HttpError::OriginNotAllowed(_)
                | HttpError::AddressNotAllowed(_)
                | HttpError::RedirectNotAllowed(_)),
            ) = e
            {
                self.refused.insert(e.to_string());
            }
            if let SandboxEvent::KvNotGranted = e {
                self.kv_refused = true;
            }
        }
    }

    fn reading(&mut self, stream: &str, r: &Reading) {
        self.trace(&r.trace);
        for rec in r.records() {
            self.texts.push((
                format!("a record of {stream} (id {})", rec.id),
                rec.payload.clone(),
            ));
        }
    }

    fn error(&mut self, what: &str, e: &dyn std::fmt::Display) {
        self.texts
            .push((format!("the error of {what}"), e.to_string()));
    }

    fn results(&mut self, stream: &str, results: &[WriteResult]) {
        for r in results {
            if let WriteOutcome::Failed(e) = &r.outcome {
                self.error(&format!("a write to {stream}"), e);
            }
        }
    }
}

/// A running check: its name and start.
struct Timer(Instant);

impl Timer {
    fn start() -> Timer {
        Timer(Instant::now())
    }
}

fn push(report: &mut Report, name: String, t: Timer, verdict: Verdict, detail: impl Into<String>) {
    report.push(name, verdict, detail, t.0.elapsed());
}

pub(crate) async fn run(
    env: &mut Env,
    suite: &Suite,
    report: &mut Report,
    logs: &crate::logs::Captured,
) -> Result<(), KitError> {
    let c = env.connector(env.target().secrets.clone()).await?;
    let config = env.target().config.clone();
    let mut seen = Seen::default();

    let streams = spec(&c, &config, suite, report, &mut seen).await;
    check(env, &c, &config, report, &mut seen).await?;

    let mut baselines: BTreeMap<String, Reading> = BTreeMap::new();
    for s in streams.iter().filter(|s| s.can_read) {
        if let Some(r) = read(&c, &config, s, suite, report, &mut seen).await {
            baselines.insert(s.name.clone(), r);
        }
    }
    for s in streams.iter().filter(|s| s.can_write) {
        write(env, &c, &config, s, suite, report, &mut seen).await;
    }
    // Faults on a read need a stream with records: one read at the start,
    // else one the write checks left records in.
    let mut fault_read = baselines
        .iter()
        .find(|(_, r)| r.records().next().is_some())
        .map(|(s, r)| (s.clone(), None::<Reading>, r.pages.len()));
    if fault_read.is_none() {
        for s in streams.iter().filter(|s| s.can_read) {
            let (r, result) = drive::read_to_end(
                &c,
                &config,
                &s.name,
                None,
                suite.read.max_pages,
                Retry::default(),
            )
            .await;
            seen.reading(&s.name, &r);
            if result.is_ok() && r.records().next().is_some() {
                let pages = r.pages.len();
                fault_read = Some((s.name.clone(), Some(r), pages));
                break;
            }
        }
    }
    match fault_read {
        Some((stream, fresh, _)) => {
            let base = match &fresh {
                Some(r) => r,
                None => &baselines[&stream],
            };
            read_faults(env, &c, &config, &stream, base, report, &mut seen).await;
        }
        None => report.push(
            "faults.read",
            Verdict::Skip(
                "no stream has records to read: seed the system (or give write samples)".into(),
            ),
            "",
            std::time::Duration::ZERO,
        ),
    }
    if let Some(s) = streams.iter().find(|s| {
        s.can_write
            && suite
                .streams
                .get(&s.name)
                .is_some_and(|x| x.create.is_some())
    }) {
        write_faults(env, &c, &config, s, suite, report, &mut seen).await;
    }
    for line in logs.take() {
        if line.plugin {
            seen.texts
                .push(("a log line".to_string(), line.text.clone()));
        }
        report.log.push(line.text);
    }
    sandbox(env, &c, report, &seen);
    Ok(())
}

// ---------------------------------------------------------------- spec ---

async fn spec(
    c: &ConnectorPlugin,
    config: &str,
    suite: &Suite,
    report: &mut Report,
    seen: &mut Seen,
) -> Vec<StreamInfo> {
    let t = Timer::start();
    let verdict = match schema_problem(&c.spec().config_schema) {
        Some(p) => Verdict::Fail(format!("the config schema is not valid JSON Schema: {p}")),
        None => match config_problem(&c.spec().config_schema, config) {
            Some(p) => Verdict::Fail(format!(
                "the config given does not match the config schema: {p}"
            )),
            None => Verdict::Pass,
        },
    };
    push(report, "spec.config-schema".into(), t, verdict, "");

    let t = Timer::start();
    let streams = match c.discover(config).await.into_result() {
        Ok(s) => s,
        Err(e) => {
            seen.error("discover", &e);
            push(
                report,
                "spec.streams".into(),
                t,
                Verdict::Fail(format!("discover failed: {e}")),
                "",
            );
            return Vec::new();
        }
    };
    let declared: BTreeSet<&str> = c.spec().streams.iter().map(String::as_str).collect();
    let found: BTreeSet<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    let mut problems = Vec::new();
    for d in declared.difference(&found) {
        problems.push(format!(
            "the spec declares stream `{d}` but discover does not return it"
        ));
    }
    for f in found.difference(&declared) {
        problems.push(format!(
            "discover returns stream `{f}` the spec does not declare"
        ));
    }
    for s in suite.streams.keys() {
        if !found.contains(s.as_str()) {
            problems.push(format!(
                "the suite file names stream `{s}`, which the connector does not offer (a typo in nexo-test.toml?)"
            ));
        }
    }
    let detail = format!(
        "{} stream(s): {}",
        found.len(),
        found.iter().copied().collect::<Vec<_>>().join(", ")
    );
    push(report, "spec.streams".into(), t, fail_if(problems), detail);

    let t = Timer::start();
    let bad: Vec<String> = streams
        .iter()
        .filter_map(|s| schema_problem(&s.json_schema).map(|p| format!("{}: {p}", s.name)))
        .collect();
    push(
        report,
        "spec.stream-schemas".into(),
        t,
        fail_if(
            bad.into_iter()
                .map(|b| format!("not valid JSON Schema — {b}"))
                .collect(),
        ),
        "",
    );
    streams
}

fn fail_if(problems: Vec<String>) -> Verdict {
    if problems.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(problems.join("; "))
    }
}

/// Why `schema` (text) is not a valid JSON Schema, if it is not.
fn schema_problem(schema: &str) -> Option<String> {
    let value: Value = match serde_json::from_str(schema) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON: {e}")),
    };
    if !(value.is_object() || value.is_boolean()) {
        return Some("a schema is an object".into());
    }
    if let Err(e) = jsonschema::meta::validate(&value) {
        return Some(e.to_string());
    }
    jsonschema::validator_for(&value)
        .err()
        .map(|e| e.to_string())
}

fn config_problem(schema: &str, config: &str) -> Option<String> {
    let schema: Value = serde_json::from_str(schema).ok()?;
    let validator = jsonschema::validator_for(&schema).ok()?;
    let config: Value = serde_json::from_str(config).ok()?;
    let errors: Vec<String> = validator
        .iter_errors(&config)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

// --------------------------------------------------------------- check ---

async fn check(
    env: &Env,
    c: &ConnectorPlugin,
    config: &str,
    report: &mut Report,
    seen: &mut Seen,
) -> Result<(), KitError> {
    let t = Timer::start();
    let out = c.check(config).await;
    seen.trace(&Trace {
        events: out.events,
        ..Trace::default()
    });
    let verdict = match out.result {
        Ok(()) => Verdict::Pass,
        Err(e) => {
            seen.error("check", &e);
            Verdict::Fail(format!("check failed with the credentials given: {e}"))
        }
    };
    push(report, "check.credentials".into(), t, verdict, "");

    let t = Timer::start();
    let declared: Vec<String> = c
        .spec()
        .capabilities
        .secrets
        .iter()
        .map(|s| s.name.clone())
        .collect();
    if declared.is_empty() {
        push(
            report,
            "check.wrong-credentials".into(),
            t,
            Verdict::Skip("the connector declares no secret".into()),
            "",
        );
        return Ok(());
    }
    let wrong: BTreeMap<String, SecretValue> = declared
        .iter()
        .map(|n| (n.clone(), SecretValue::new(format!("nexo-kit-wrong-{n}"))))
        .collect();
    let w = env.connector(wrong).await?;
    let out = w.check(config).await;
    seen.trace(&Trace {
        events: out.events,
        ..Trace::default()
    });
    let names = declared.join(", ");
    let verdict = match out.result {
        Ok(()) => Verdict::Fail(format!(
            "check passed with a wrong {names}: it must call the system with the credentials and fail as `auth` when they are refused"
        )),
        Err(PluginError::Guest {
            error: GuestError::Auth(_),
            ..
        }) => Verdict::Pass,
        Err(PluginError::Guest { error, .. }) => Verdict::Fail(format!(
            "a wrong {names} failed as `{}`, not `auth` ({error}): classify the system's 401/403 as an authentication error so an admin is told to fix the credentials",
            error.class()
        )),
        Err(e) => Verdict::Fail(format!("a wrong {names} made the call fail outright: {e}")),
    };
    push(
        report,
        "check.wrong-credentials".into(),
        t,
        verdict,
        format!("wrong {names}"),
    );
    Ok(())
}

// ---------------------------------------------------------------- read ---

async fn read(
    c: &ConnectorPlugin,
    config: &str,
    s: &StreamInfo,
    suite: &Suite,
    report: &mut Report,
    seen: &mut Seen,
) -> Option<Reading> {
    let name = &s.name;
    let max = suite.read.max_pages;
    let t = Timer::start();
    let (base, result) = drive::read_to_end(c, config, name, None, max, Retry::default()).await;
    seen.reading(name, &base);
    if let Err(e) = result {
        seen.error(&format!("a read of {name}"), &e);
        push(
            report,
            format!("read.{name}.pages"),
            t,
            Verdict::Fail(read_failure(&e)),
            "",
        );
        return None;
    }
    let n = base.records().count();
    push(
        report,
        format!("read.{name}.pages"),
        t,
        Verdict::Pass,
        format!("{n} records in {} pages", base.pages.len()),
    );

    schema_of_records(s, &base, report);
    resume(c, config, name, &base, suite, report, seen).await;
    incremental(c, config, s, &base, suite, report, seen).await;
    Some(base)
}

/// Every upserted record's payload matches the stream's JSON Schema.
fn schema_of_records(s: &StreamInfo, base: &Reading, report: &mut Report) {
    let t = Timer::start();
    let check = format!("read.{}.schema", s.name);
    let validator = serde_json::from_str::<Value>(&s.json_schema)
        .ok()
        .and_then(|v| jsonschema::validator_for(&v).ok());
    let Some(validator) = validator else {
        push(
            report,
            check,
            t,
            Verdict::Skip("the stream schema is not valid (see spec.stream-schemas)".into()),
            "",
        );
        return;
    };
    let mut bad = Vec::new();
    let mut n = 0;
    for r in base.records().filter(|r| r.operation == Operation::Upsert) {
        n += 1;
        let payload: Value = serde_json::from_str(&r.payload).unwrap_or(Value::Null);
        if let Some(e) = validator.iter_errors(&payload).next() {
            bad.push(format!("record {}: {} at `{}`", r.id, e, e.instance_path()));
        }
    }
    let verdict = if bad.is_empty() {
        Verdict::Pass
    } else {
        let count = bad.len();
        bad.truncate(3);
        Verdict::Fail(format!(
            "{count} record(s) do not match the stream's JSON Schema — {}: fix the records or the schema discover returns",
            bad.join("; ")
        ))
    };
    push(report, check, t, verdict, format!("{n} records checked"));
}

fn read_failure(e: &DriveError) -> String {
    match e {
        DriveError::TooManyPages { .. } | DriveError::RepeatedState { .. } => format!(
            "{e}: each page's state must move the read forward; raise read.max_pages in nexo-test.toml if the stream is really that long"
        ),
        other => format!("the read did not reach its end: {other}"),
    }
}

fn ids<'a>(records: impl Iterator<Item = &'a Record>) -> BTreeSet<String> {
    records.map(|r| r.id.clone()).collect()
}

async fn resume(
    c: &ConnectorPlugin,
    config: &str,
    name: &str,
    base: &Reading,
    suite: &Suite,
    report: &mut Report,
    seen: &mut Seen,
) {
    let t = Timer::start();
    let check = format!("read.{name}.resume");
    let pages = base.pages.len();
    if pages < 2 {
        push(
            report,
            check,
            t,
            Verdict::Skip(
                "the stream has one page: nothing to resume from (seed more records, or a smaller page size in the config)".into(),
            ),
            "",
        );
        return;
    }
    let all = ids(base.records());
    let mut problems = Vec::new();
    let mut detail = String::new();
    if let Some(patch) = &suite.read.reference_config {
        match reference_read(c, config, name, patch, suite, seen).await {
            Ok(reference) => {
                let missed: Vec<&String> = reference.difference(&all).collect();
                if !missed.is_empty() {
                    problems.push(format!(
                        "the read from the start lost {} record(s) that a read with read.reference_config (pages ending elsewhere) returned (ids {}): each page's state must point just past the last record handed over, ties on the cursor included",
                        missed.len(),
                        sample(&missed)
                    ));
                }
                detail = format!(", {} record(s) in the reference read", reference.len());
            }
            Err(e) => problems.push(format!(
                "the reference read (read.reference_config) failed: {e}"
            )),
        }
    }
    // The states after pages 1..pages-1, spread evenly over the read.
    let points = suite.read.resume_points.max(1).min(pages - 1);
    let picks: BTreeSet<usize> = (0..points).map(|k| k * (pages - 1) / points).collect();
    let mut ties = 0;
    for i in picks {
        let state = base.pages[i].state.clone();
        let before = ids(base.pages[..=i].iter().flat_map(|p| p.records.iter()));
        let (again, result) = drive::read_to_end(
            c,
            config,
            name,
            state,
            suite.read.max_pages,
            Retry::default(),
        )
        .await;
        seen.reading(name, &again);
        if let Err(e) = result {
            seen.error(&format!("a resumed read of {name}"), &e);
            problems.push(format!(
                "from the state saved after page {}: {}",
                i + 1,
                read_failure(&e)
            ));
            continue;
        }
        let after = ids(again.records());
        ties += before.intersection(&after).count();
        let lost: Vec<&String> = all
            .iter()
            .filter(|id| !before.contains(*id) && !after.contains(*id))
            .collect();
        if !lost.is_empty() {
            problems.push(format!(
                "resuming from the state saved after page {} lost {} record(s) (ids {}): the state must point just past the last record handed over, ties on the cursor included",
                i + 1,
                lost.len(),
                sample(&lost)
            ));
        }
    }
    push(
        report,
        check,
        t,
        fail_if(problems),
        format!("{points} saved states, {ties} record(s) seen again at page boundaries{detail}"),
    );
}

/// The ids a read from the start returns with `patch` set over `config`
/// (the suite's `read.reference_config`).
async fn reference_read(
    c: &ConnectorPlugin,
    config: &str,
    name: &str,
    patch: &Value,
    suite: &Suite,
    seen: &mut Seen,
) -> Result<BTreeSet<String>, String> {
    let mut merged: Value =
        serde_json::from_str(config).map_err(|e| format!("the config is not JSON: {e}"))?;
    let (Some(fields), Some(patch)) = (merged.as_object_mut(), patch.as_object()) else {
        return Err("the config and read.reference_config must both be objects".into());
    };
    for (k, v) in patch {
        fields.insert(k.clone(), v.clone());
    }
    let (reading, result) = drive::read_to_end(
        c,
        &merged.to_string(),
        name,
        None,
        suite.read.max_pages,
        Retry::default(),
    )
    .await;
    seen.reading(name, &reading);
    if let Err(e) = result {
        seen.error(&format!("the reference read of {name}"), &e);
        return Err(read_failure(&e));
    }
    Ok(ids(reading.records()))
}

async fn incremental(
    c: &ConnectorPlugin,
    config: &str,
    s: &StreamInfo,
    base: &Reading,
    suite: &Suite,
    report: &mut Report,
    seen: &mut Seen,
) {
    let name = &s.name;
    let t = Timer::start();
    let check = format!("read.{name}.incremental");
    if s.cursor_field.is_none() {
        push(
            report,
            check,
            t,
            Verdict::Skip("the stream has no cursor field: every read is a full refresh".into()),
            "",
        );
        return;
    }
    let (again, result) = drive::read_to_end(
        c,
        config,
        name,
        base.state(),
        suite.read.max_pages,
        Retry::default(),
    )
    .await;
    seen.reading(name, &again);
    if let Err(e) = result {
        seen.error(&format!("an incremental read of {name}"), &e);
        push(report, check, t, Verdict::Fail(read_failure(&e)), "");
        return;
    }
    let last_page = base.pages.last().map(|p| p.records.len()).unwrap_or(0);
    let allowed = suite
        .streams
        .get(name.as_str())
        .and_then(|x: &StreamSuite| x.lookback)
        .unwrap_or(last_page);
    let got = again.records().count();
    let total = base.records().count();
    let verdict = if got > allowed {
        Verdict::Fail(format!(
            "a second read from the final state returned {got} of the stream's {total} records with nothing changed (look-back allowed: {allowed}): the connector does not resume from its state"
        ))
    } else {
        Verdict::Pass
    };
    push(
        report,
        check,
        t,
        verdict,
        format!("{got} record(s) again after no change"),
    );
}

fn sample(ids: &[&String]) -> String {
    let mut s: Vec<&str> = ids.iter().take(5).map(|s| s.as_str()).collect();
    if ids.len() > 5 {
        s.push("…");
    }
    s.join(", ")
}

// --------------------------------------------------------------- write ---

/// A write-protocol record.
fn upsert(stream: &str, id: &str, key: String, payload: &Value) -> Record {
    Record {
        stream: stream.into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload: payload.to_string(),
        cursor: Some(key),
    }
}

fn delete(stream: &str, id: &str, key: String) -> Record {
    Record {
        stream: stream.into(),
        id: id.into(),
        operation: Operation::Delete,
        payload: "{}".into(),
        cursor: Some(key),
    }
}

/// The ids live in the stream (last operation an upsert) and their
/// payloads; `None` when the stream cannot be read.
async fn live(
    c: &ConnectorPlugin,
    config: &str,
    s: &StreamInfo,
    seen: &mut Seen,
) -> Option<BTreeMap<String, Value>> {
    if !s.can_read {
        return None;
    }
    let (r, result) = drive::read_to_end(c, config, &s.name, None, 100_000, Retry::default()).await;
    seen.reading(&s.name, &r);
    result.ok()?;
    let mut map = BTreeMap::new();
    for rec in r.records() {
        match rec.operation {
            Operation::Upsert => {
                map.insert(
                    rec.id.clone(),
                    serde_json::from_str(&rec.payload).unwrap_or(Value::Null),
                );
            }
            Operation::Delete => {
                map.remove(&rec.id);
            }
        }
    }
    Some(map)
}

fn outcome_line(r: &WriteResult) -> String {
    match &r.outcome {
        WriteOutcome::Created(id) => format!("created {id}"),
        WriteOutcome::Updated(id) => format!("updated {id}"),
        WriteOutcome::Unchanged(id) => format!("unchanged {id}"),
        WriteOutcome::Deleted(id) => format!("deleted {id}"),
        WriteOutcome::Failed(e) => format!("failed: {e}"),
    }
}

fn written_id(r: &WriteResult) -> Option<&str> {
    match &r.outcome {
        WriteOutcome::Created(id) | WriteOutcome::Updated(id) | WriteOutcome::Unchanged(id) => {
            Some(id)
        }
        _ => None,
    }
}

struct Writer<'a> {
    c: &'a ConnectorPlugin,
    config: &'a str,
    stream: &'a str,
    run_id: &'a str,
    next: u32,
}

impl<'a> Writer<'a> {
    /// Writes to stream `s` of `env`'s run; keys and samples numbered from
    /// `first` (each check's own range, so no two share a key).
    fn new(
        env: &'a Env,
        c: &'a ConnectorPlugin,
        config: &'a str,
        stream: &'a str,
        first: u32,
    ) -> Self {
        Writer {
            c,
            config,
            stream,
            run_id: &env.run_id,
            next: first,
        }
    }

    fn key(&mut self) -> String {
        self.next += 1;
        format!("nexo-kit-{}-{}", self.run_id, self.next)
    }

    fn unique(&mut self, v: &Value) -> Value {
        self.next += 1;
        instantiate(v, &format!("{}-{}", self.run_id, self.next))
    }

    async fn send(
        &self,
        batch: &[Record],
        seen: &mut Seen,
    ) -> Result<(Vec<WriteResult>, Trace), DriveError> {
        let (trace, result) =
            drive::write_retrying(self.c, self.config, self.stream, batch, Retry::default()).await;
        seen.trace(&trace);
        match result {
            Ok(r) => {
                seen.results(self.stream, &r);
                Ok((r, trace))
            }
            Err(e) => {
                seen.error(&format!("a write to {}", self.stream), &e);
                Err(e)
            }
        }
    }
}

async fn write(
    env: &Env,
    c: &ConnectorPlugin,
    config: &str,
    s: &StreamInfo,
    suite: &Suite,
    report: &mut Report,
    seen: &mut Seen,
) {
    let name = &s.name;
    let checks = ["idempotent-create", "update", "refused-alone", "delete"];
    let Some(samples) = suite
        .streams
        .get(name.as_str())
        .filter(|x| x.create.is_some())
    else {
        for check in checks {
            report.push(
                format!("write.{name}.{check}"),
                Verdict::Skip(format!(
                    "no sample records: add [streams.{name}] create = {{ … }} to nexo-test.toml"
                )),
                "",
                std::time::Duration::ZERO,
            );
        }
        return;
    };
    let Some(create) = samples.create.as_ref() else {
        return;
    };
    let mut w = Writer::new(env, c, config, name, 0);
    let mut created: Vec<String> = Vec::new();

    // The same create twice, with the same key: one record.
    let t = Timer::start();
    let before = live(c, config, s, seen).await;
    let key = w.key();
    let record = upsert(name, "", key, &w.unique(create));
    let first = w.send(std::slice::from_ref(&record), seen).await;
    let second = w.send(std::slice::from_ref(&record), seen).await;
    let after = live(c, config, s, seen).await;
    let mut id = None;
    let verdict = match (first, second) {
        (Err(e), _) | (_, Err(e)) => Verdict::Fail(format!("the create failed: {e}")),
        (Ok((a, _)), Ok((b, _))) => {
            let (a, b) = (&a[0], &b[0]);
            match (&a.outcome, written_id(b)) {
                (WriteOutcome::Created(x), Some(y)) if x == y => {
                    id = Some(x.clone());
                    created.push(x.clone());
                    match new_ids(&before, &after) {
                        Some(new) if new.len() != 1 => Verdict::Fail(format!(
                            "one create sent twice with the same idempotency key left {} new records ({}): send the record's idempotency key to the system",
                            new.len(),
                            new.join(", ")
                        )),
                        _ => Verdict::Pass,
                    }
                }
                (WriteOutcome::Created(x), _) => {
                    created.push(x.clone());
                    Verdict::Fail(format!(
                        "the same create sent again with the same idempotency key gave `{}` after `created {x}`: it must name the record the key already made",
                        outcome_line(b)
                    ))
                }
                _ => Verdict::Fail(format!(
                    "a create gave `{}`, not `created ID`",
                    outcome_line(a)
                )),
            }
        }
    };
    push(
        report,
        format!("write.{name}.idempotent-create"),
        t,
        verdict,
        id.clone().map(|i| format!("id {i}")).unwrap_or_default(),
    );

    // An update is applied.
    let t = Timer::start();
    let verdict = match &id {
        None => Verdict::Skip("no record was created to update".into()),
        Some(id) => {
            let change = w.unique(samples.update.as_ref().unwrap_or(create));
            let record = upsert(name, id, w.key(), &change);
            match w.send(&[record], seen).await {
                Err(e) => Verdict::Fail(format!("the update failed: {e}")),
                Ok((r, _)) => match &r[0].outcome {
                    WriteOutcome::Updated(x) | WriteOutcome::Unchanged(x) if x == id => {
                        match live(c, config, s, seen).await {
                            None => Verdict::Pass,
                            Some(now) => match now.get(id) {
                                None => {
                                    Verdict::Fail(format!("record {id} is gone after its update"))
                                }
                                Some(read) => fail_if(differences(&change, read)),
                            },
                        }
                    }
                    _ => Verdict::Fail(format!(
                        "an update of {id} gave `{}`, not `updated {id}`",
                        outcome_line(&r[0])
                    )),
                },
            }
        }
    };
    push(report, format!("write.{name}.update"), t, verdict, "");

    // A refused record fails alone.
    let t = Timer::start();
    let verdict = match &samples.invalid {
        None => Verdict::Skip(format!(
            "no invalid sample: add invalid = {{ … }} to [streams.{name}]"
        )),
        Some(invalid) => {
            let batch = [
                upsert(name, "", w.key(), &w.unique(create)),
                upsert(name, "", w.key(), &w.unique(invalid)),
                upsert(name, "", w.key(), &w.unique(create)),
            ];
            match w.send(&batch, seen).await {
                Err(e) => Verdict::Fail(format!(
                    "one refused record failed the whole batch ({e}): return a per-record failure (`rejected`) and write the others"
                )),
                Ok((r, _)) => {
                    created.extend(r.iter().filter_map(|x| match &x.outcome {
                        WriteOutcome::Created(id) => Some(id.clone()),
                        _ => None,
                    }));
                    let mut problems = Vec::new();
                    match &r[1].outcome {
                        WriteOutcome::Failed(GuestError::Rejected(_)) => {}
                        WriteOutcome::Failed(e) => problems.push(format!(
                            "the invalid record failed as `{}`, not `rejected` ({e})",
                            e.class()
                        )),
                        _ => problems.push(format!(
                            "the invalid record was accepted (`{}`): the sample in nexo-test.toml must be one the system refuses",
                            outcome_line(&r[1])
                        )),
                    }
                    for i in [0, 2] {
                        if !matches!(r[i].outcome, WriteOutcome::Created(_)) {
                            problems.push(format!(
                                "a valid record beside the refused one gave `{}`",
                                outcome_line(&r[i])
                            ));
                        }
                    }
                    fail_if(problems)
                }
            }
        }
    };
    push(
        report,
        format!("write.{name}.refused-alone"),
        t,
        verdict,
        "",
    );

    // Deletes, as declared.
    let t = Timer::start();
    let verdict = match (&id, samples.deletes) {
        (None, _) => Verdict::Skip("no record was created to delete".into()),
        (Some(id), Deletes::No) => {
            // Declared as not deleting: a delete must fail alone, saying so.
            let record = delete(name, id, w.key());
            match w.send(&[record], seen).await {
                Err(e) => Verdict::Fail(format!(
                    "a delete the connector does not support failed the whole call ({e}): refuse it per record as `rejected`"
                )),
                Ok((r, _)) => match &r[0].outcome {
                    WriteOutcome::Failed(GuestError::Rejected(_)) => Verdict::Pass,
                    WriteOutcome::Deleted(_) => {
                        created.retain(|x| x != id);
                        Verdict::Fail(format!(
                            "the suite says deletes = false but the delete of {id} succeeded: set deletes = true in [streams.{name}]"
                        ))
                    }
                    _ => Verdict::Fail(format!(
                        "a delete the connector does not support gave `{}`; refuse it per record as `rejected`",
                        outcome_line(&r[0])
                    )),
                },
            }
        }
        (Some(id), deletes) => {
            let record = delete(name, id, w.key());
            match w.send(&[record], seen).await {
                Err(e) => Verdict::Fail(format!("the delete failed: {e}")),
                Ok((r, _)) => match &r[0].outcome {
                    WriteOutcome::Deleted(_) => {
                        created.retain(|x| x != id);
                        match live(c, config, s, seen).await {
                            Some(now) if now.contains_key(id) && deletes == Deletes::Yes => {
                                Verdict::Fail(format!(
                                    "record {id} is still there after `deleted` (if the system archives, say deletes = \"archive\")"
                                ))
                            }
                            _ => Verdict::Pass,
                        }
                    }
                    _ => Verdict::Fail(format!("a delete of {id} gave `{}`", outcome_line(&r[0]))),
                },
            }
        }
    };
    push(report, format!("write.{name}.delete"), t, verdict, "");

    if samples.deletes.supported() {
        clean_up(&mut w, &created, seen).await;
    }
}

async fn clean_up(w: &mut Writer<'_>, ids: &[String], seen: &mut Seen) {
    if ids.is_empty() {
        return;
    }
    let batch: Vec<Record> = ids.iter().map(|id| delete(w.stream, id, w.key())).collect();
    if let Err(e) = w.send(&batch, seen).await {
        tracing::warn!(error = %e, "could not delete the records the suite created");
    }
}

fn new_ids(
    before: &Option<BTreeMap<String, Value>>,
    after: &Option<BTreeMap<String, Value>>,
) -> Option<Vec<String>> {
    let (before, after) = (before.as_ref()?, after.as_ref()?);
    Some(
        after
            .keys()
            .filter(|k| !before.contains_key(*k))
            .cloned()
            .collect(),
    )
}

/// Fields of `sent` that the record read back holds with another value.
/// What the system adds (a default discount, an id) is no difference: a
/// sent object must be found within the one read, field by field, and a
/// sent list element by element.
fn differences(sent: &Value, read: &Value) -> Vec<String> {
    let (Some(sent), Some(read)) = (sent.as_object(), read.as_object()) else {
        return Vec::new();
    };
    sent.iter()
        .filter_map(|(k, v)| {
            let got = read.get(k)?;
            (!within(v, got))
                .then(|| format!("the update set `{k}` to {v} but the record reads back {got}"))
        })
        .collect()
}

/// Whether `sent` is found in `read`: objects field by field (extra
/// fields read are fine), lists element by element, the rest equal.
fn within(sent: &Value, read: &Value) -> bool {
    match (sent, read) {
        (Value::Object(s), Value::Object(r)) => s
            .iter()
            .all(|(k, v)| r.get(k).is_some_and(|g| within(v, g))),
        (Value::Array(s), Value::Array(r)) => {
            s.len() == r.len() && s.iter().zip(r).all(|(a, b)| within(a, b))
        }
        (Value::String(a), Value::String(b)) => {
            a == b || decimal(a).is_some_and(|x| decimal(b) == Some(x))
        }
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            decimal(&a.to_string()).is_some_and(|x| decimal(b) == Some(x))
        }
        _ => sent == read,
    }
}

/// A decimal number's text in one spelling (`12.50`, `+12.5` → `12.5`),
/// when `text` is one.
fn decimal(text: &str) -> Option<String> {
    let t = text.trim().trim_start_matches('+');
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = int.strip_prefix('-').unwrap_or(int);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    })
}

// -------------------------------------------------------------- faults ---

async fn read_faults(
    env: &Env,
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    base: &Reading,
    report: &mut Report,
    seen: &mut Seen,
) {
    let first = ids(base.pages[0].records.iter());
    for fault in [
        Fault::TooManyRequests,
        Fault::ServerError,
        Fault::Unavailable,
        Fault::Dropped,
        Fault::Slow,
    ] {
        let t = Timer::start();
        env.arm(fault, Only::Any);
        let (r, result) = drive::read_to_end(c, config, stream, None, 1, Retry::default()).await;
        let fired = env.disarm();
        seen.reading(stream, &r);
        let got = ids(r.pages.iter().flat_map(|p| p.records.iter()));
        let retried = r.trace.retried.clone();
        let verdict = match result {
            _ if !fired => Verdict::Skip("the read sent no request to inject into".into()),
            Err(DriveError::TooManyPages { .. }) | Ok(()) if got == first => Verdict::Pass,
            Err(DriveError::TooManyPages { .. }) | Ok(()) => Verdict::Fail(format!(
                "with the fault the first page held {} record(s), without it {}: the plugin swallowed the failure instead of reporting it",
                got.len(),
                first.len()
            )),
            Err(e) => Verdict::Fail(match e.guest() {
                Some(g) => format!(
                    "a {} came back as `{}` ({g}): report it as `transient` (or `rate-limited`) so the host retries",
                    describe(fault),
                    g.class()
                ),
                None => format!("a {} made the read fail: {e}", describe(fault)),
            }),
        };
        let detail = if retried.is_empty() {
            "handled within the call".to_string()
        } else {
            format!("retried after {}", retried.join(", "))
        };
        push(
            report,
            format!("faults.{stream}.read-{}", fault.label()),
            t,
            verdict,
            detail,
        );
    }
}

fn describe(fault: Fault) -> &'static str {
    match fault {
        Fault::TooManyRequests => "429 Too Many Requests",
        Fault::ServerError => "500 from the system",
        Fault::Unavailable => "503 Service Unavailable",
        Fault::Dropped => "dropped connection",
        Fault::LostAnswer => "lost answer",
        Fault::Slow => "slow answer",
    }
}

async fn write_faults(
    env: &Env,
    c: &ConnectorPlugin,
    config: &str,
    s: &StreamInfo,
    suite: &Suite,
    report: &mut Report,
    seen: &mut Seen,
) {
    let name = &s.name;
    let Some(samples) = suite.streams.get(name.as_str()) else {
        return;
    };
    let Some(create) = samples.create.as_ref() else {
        return;
    };
    let mut w = Writer::new(env, c, config, name, 1000);
    let mut made: Vec<String> = Vec::new();
    for fault in [Fault::ServerError, Fault::LostAnswer] {
        let what = describe(fault);
        let t = Timer::start();
        let before = live(c, config, s, seen).await;
        env.arm(fault, Only::Writes);
        let record = upsert(name, "", w.key(), &w.unique(create));
        let result = w.send(std::slice::from_ref(&record), seen).await;
        let fired = env.disarm();
        let after = live(c, config, s, seen).await;
        let new = new_ids(&before, &after);
        made.extend(new.clone().unwrap_or_default());
        let verdict = match result {
            _ if !fired => Verdict::Skip("the write sent no request to inject into".into()),
            Err(e) => Verdict::Fail(match e.guest() {
                Some(g) => format!(
                    "a write that met a {what} came back as `{}` ({g}): report it as `transient` so the same record (same idempotency key) is sent again",
                    g.class()
                ),
                None => format!("a write that met a {what} failed: {e}"),
            }),
            Ok((r, trace)) => {
                if let Some(id) = written_id(&r[0]) {
                    made.push(id.to_string());
                }
                match &new {
                    Some(n) if n.len() > 1 => Verdict::Fail(format!(
                        "the create was made {} times after a {what} (ids {}): send the record's idempotency key so the system makes it once",
                        n.len(),
                        n.join(", ")
                    )),
                    Some(n) if n.is_empty() => Verdict::Fail(format!(
                        "the write reported `{}` but no new record is there",
                        outcome_line(&r[0])
                    )),
                    _ if trace.retried.is_empty() => Verdict::Fail(format!(
                        "the write reported success although it met a {what}: it cannot know the record was made"
                    )),
                    _ => Verdict::Pass,
                }
            }
        };
        push(
            report,
            format!("faults.{name}.write-{}", fault.label()),
            t,
            verdict,
            "",
        );
    }
    if samples.deletes.supported() {
        made.sort();
        made.dedup();
        clean_up(&mut w, &made, seen).await;
    }
}

// ------------------------------------------------------------- sandbox ---

fn sandbox(env: &Env, c: &ConnectorPlugin, report: &mut Report, seen: &Seen) {
    let t = Timer::start();
    let verdict = fail_if(
        seen.refused
            .iter()
            .map(|r| format!("the sandbox refused a request: {r}"))
            .collect(),
    );
    push(report, "sandbox.granted-origins".into(), t, verdict, "");

    let t = Timer::start();
    let verdict = if seen.kv_refused {
        Verdict::Fail(
            "the plugin used key-value storage it was not granted: declare kv_bytes in the spec (and grant it to the test with --grant-kv)".into(),
        )
    } else {
        Verdict::Pass
    };
    push(
        report,
        "sandbox.granted-storage".into(),
        t,
        verdict,
        format!("{} key-value operations", env.kv_ops()),
    );

    // Every declared origin was used.
    let t = Timer::start();
    let used: Vec<Origin> = env
        .proxies()
        .iter()
        .filter(|(_, p)| p.requests() > 0)
        .filter_map(|(o, _)| url::Url::parse(o).ok().as_ref().and_then(Origin::of))
        .collect();
    // An exact origin is the vendor's claim that the plugin calls it; a
    // wildcard (a self-hosted system's `https://*:*`) leaves the host to
    // the admin's grant, so one run cannot judge it.
    let mut unused = Vec::new();
    let mut wildcards = Vec::new();
    for declared in &c.spec().capabilities.http_origins {
        match OriginPattern::parse(declared) {
            Ok(p) if used.iter().any(|o| p.matches(o)) => {}
            Ok(p) if !p.is_exact_host() || p.port.is_none() => wildcards.push(declared.clone()),
            Ok(_) => unused.push(declared.clone()),
            Err(e) => unused.push(format!("{declared} ({e})")),
        }
    }
    // Every declared secret went out in some request.
    let sent: BTreeSet<String> = env
        .proxies()
        .iter()
        .flat_map(|(_, p)| p.secrets_sent())
        .collect();
    let unsent: Vec<String> = c
        .spec()
        .capabilities
        .secrets
        .iter()
        .filter(|s| env.target().secrets.contains_key(&s.name) && !sent.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    let mut problems = Vec::new();
    if !unused.is_empty() {
        problems.push(format!(
            "declares origin(s) it sent no request to during the suite: {} — remove them from the manifest, or grant them to the test if the plugin uses them",
            unused.join(", ")
        ));
    }
    if !unsent.is_empty() {
        problems.push(format!(
            "declares secret(s) no request carried during the suite: {} — remove them from the manifest if the plugin does not use them",
            unsent.join(", ")
        ));
    }
    let kv = c.spec().capabilities.kv_bytes;
    if kv > 0 && env.target().kv_bytes > 0 && env.kv_ops() == 0 {
        problems.push(format!(
            "declares {kv} bytes of key-value storage it never used during the suite — remove kv_bytes from the spec if the plugin does not need it"
        ));
    }
    let verdict = fail_if(problems);
    let mut detail = format!(
        "used {}",
        used.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !wildcards.is_empty() {
        detail.push_str(&format!(
            "; wildcard {} left to the admin's grant",
            wildcards.join(", ")
        ));
    }
    push(report, "spec.capabilities".into(), t, verdict, detail);

    // No secret value in what the plugin handed back.
    let t = Timer::start();
    let mut leaks = BTreeSet::new();
    for (name, value) in &env.target().secrets {
        let value = value.expose();
        if value.len() < 4 {
            continue;
        }
        let forms = [
            value.to_string(),
            base64::engine::general_purpose::STANDARD.encode(value),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
            hex::encode(value),
            value.chars().rev().collect(),
        ];
        let marker = format!("[redacted:{name}]");
        for (where_, text) in &seen.texts {
            if text.contains(&marker) || forms.iter().any(|f| text.contains(f.as_str())) {
                leaks.insert(format!("{where_} carried the secret `{name}`"));
            }
        }
    }
    let n = seen.texts.len();
    push(
        report,
        "sandbox.secrets".into(),
        t,
        fail_if(
            leaks
                .into_iter()
                .take(10)
                .map(|l| format!("{l}: a plugin must never hand a secret back to the host"))
                .collect(),
        ),
        format!("{n} records, errors and log lines searched"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_update_is_found_within_what_is_read_back() {
        let sent = json!({"price": "12.50", "lines": [{"qty": "2"}], "name": "A"});
        let read = json!({"price": "12.5", "lines": [{"qty": "2.0", "discount": "0"}], "name": "A", "id": 7});
        assert!(differences(&sent, &read).is_empty());
        let read = json!({"price": "12.51", "lines": [{"qty": "2"}], "name": "A"});
        assert_eq!(differences(&sent, &read).len(), 1);
        let read = json!({"price": "12.5", "lines": [{"qty": "2"}, {"qty": "1"}], "name": "A"});
        assert_eq!(differences(&sent, &read).len(), 1);
        assert_eq!(decimal("1e5"), None);
        assert_eq!(decimal("-0.50"), Some("-0.5".into()));
    }
}
