//! `read.STREAM.*`: a read to its end, its records against the stream's
//! schema, reads resumed from saved states, and the incremental read after
//! no change.

use std::collections::BTreeSet;

use nexo_runtime::ConnectorPlugin;
use nexo_runtime::plugin::{Operation, StreamInfo};
use serde_json::Value;

use super::{Seen, Timer, fail_if, ids, push, sample};
use crate::drive::{self, DriveError, Reading, Retry};
use crate::report::{Report, Verdict};
use crate::suite::{StreamSuite, Suite};

pub(super) async fn read(
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
pub(super) fn schema_of_records(s: &StreamInfo, base: &Reading, report: &mut Report) {
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

pub(super) fn read_failure(e: &DriveError) -> String {
    match e {
        DriveError::TooManyPages { .. } | DriveError::RepeatedState { .. } => format!(
            "{e}: each page's state must move the read forward; raise read.max_pages in nexo-test.toml if the stream is really that long"
        ),
        other => format!("the read did not reach its end: {other}"),
    }
}

pub(super) async fn resume(
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
pub(super) async fn reference_read(
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

pub(super) async fn incremental(
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
