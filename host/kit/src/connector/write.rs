//! `write.STREAM.*`: idempotent creates, updates, a refused record alone,
//! deletes as declared — and the write protocol helpers the fault checks
//! share.

use std::collections::BTreeMap;

use nexo_runtime::plugin::{Operation, Record, StreamInfo, WriteOutcome, WriteResult};
use nexo_runtime::{ConnectorPlugin, GuestError};
use serde_json::Value;

use super::{Seen, Timer, fail_if, push};
use crate::Env;
use crate::drive::{self, DriveError, Retry, Trace};
use crate::report::{Report, Verdict};
use crate::suite::{Deletes, StreamSuite, Suite, instantiate};

/// A write-protocol record.
pub(super) fn upsert(stream: &str, id: &str, key: String, payload: &Value) -> Record {
    Record {
        stream: stream.into(),
        id: id.into(),
        operation: Operation::Upsert,
        payload: payload.to_string(),
        cursor: Some(key),
    }
}

pub(super) fn delete(stream: &str, id: &str, key: String) -> Record {
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
pub(super) async fn live(
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

pub(super) fn outcome_line(r: &WriteResult) -> String {
    match &r.outcome {
        WriteOutcome::Created(id) => format!("created {id}"),
        WriteOutcome::Updated(id) => format!("updated {id}"),
        WriteOutcome::Unchanged(id) => format!("unchanged {id}"),
        WriteOutcome::Deleted(id) => format!("deleted {id}"),
        WriteOutcome::Failed(e) => format!("failed: {e}"),
    }
}

pub(super) fn written_id(r: &WriteResult) -> Option<&str> {
    match &r.outcome {
        WriteOutcome::Created(id) | WriteOutcome::Updated(id) | WriteOutcome::Unchanged(id) => {
            Some(id)
        }
        _ => None,
    }
}

pub(super) struct Writer<'a> {
    c: &'a ConnectorPlugin,
    config: &'a str,
    stream: &'a str,
    run_id: &'a str,
    next: u32,
}

impl<'a> Writer<'a> {
    /// Writes to stream `s` of `env`'s run; keys and samples numbered from
    /// `first` (each check's own range, so no two share a key).
    pub(super) fn new(
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

    pub(super) fn key(&mut self) -> String {
        self.next += 1;
        format!("nexo-kit-{}-{}", self.run_id, self.next)
    }

    pub(super) fn unique(&mut self, v: &Value) -> Value {
        self.next += 1;
        instantiate(v, &format!("{}-{}", self.run_id, self.next))
    }

    pub(super) async fn send(
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

/// The suite's samples for `stream` and its `create` sample, when it has
/// one (the write checks and write faults need it).
pub(super) fn samples<'a>(suite: &'a Suite, stream: &str) -> Option<(&'a StreamSuite, &'a Value)> {
    let samples = suite.streams.get(stream)?;
    Some((samples, samples.create.as_ref()?))
}

pub(super) async fn write(
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
    let Some((samples, create)) = samples(suite, name) else {
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

pub(super) async fn clean_up(w: &mut Writer<'_>, ids: &[String], seen: &mut Seen) {
    if ids.is_empty() {
        return;
    }
    let batch: Vec<Record> = ids.iter().map(|id| delete(w.stream, id, w.key())).collect();
    if let Err(e) = w.send(&batch, seen).await {
        tracing::warn!(error = %e, "could not delete the records the suite created");
    }
}

pub(super) fn new_ids(
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
pub(super) fn differences(sent: &Value, read: &Value) -> Vec<String> {
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
pub(super) fn within(sent: &Value, read: &Value) -> bool {
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
pub(super) fn decimal(text: &str) -> Option<String> {
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
