//! The bulk write path (`bulk = true`): a write batch goes to TinyCRM's
//! batch endpoint, `POST /api/contacts/batch`, in requests of at most
//! [`CHUNK`] records instead of one request per record, because per-record
//! round trips cannot load 100 000 records quickly. The outcomes are the
//! per-record path's, record by record.
//!
//! The endpoint takes `{"inputs": [{"key", "id", "delete", "properties"}]}`
//! and answers `{"results": [{"status", "id", "error"?, "contact"?}]}`, one
//! result per input, in order: 201 created, 200 updated, deleted (also when
//! already gone) or replayed (a create whose idempotency key TinyCRM knows;
//! `contact` is then the contact as it is now), 404 unknown id, 422 invalid
//! contact.

use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::{Config, about, body, same_content};

/// Records per request: TinyCRM takes up to 5000; 1000 keeps a request
/// (and its answer) well under a second and a few hundred kilobytes.
const CHUNK: usize = 1000;

#[derive(Deserialize)]
struct Answer {
    results: Vec<ItemResult>,
}

/// TinyCRM's result for one input.
#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    error: Option<String>,
    /// The contact as it is now, on a replayed create.
    #[serde(default)]
    contact: Option<Value>,
}

/// Write `batch` in chunks; one outcome per record, in order. An error
/// answer to a whole request ends the call: the host retries the batch
/// with the same idempotency keys, so the chunks already applied are not
/// applied twice.
pub(crate) fn write(config: &Config, batch: &[Record]) -> Result<Vec<WriteResult>, Error> {
    let mut results = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(CHUNK) {
        results.extend(write_chunk(config, chunk)?);
    }
    Ok(results)
}

fn write_chunk(config: &Config, records: &[Record]) -> Result<Vec<WriteResult>, Error> {
    // Records refused before sending have their outcome now; `sent` maps
    // the request's inputs back to the records.
    let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; records.len()];
    let mut inputs = Inputs::new(records.len());
    let mut sent = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        match inputs.push(record) {
            Ok(()) => sent.push(i),
            Err(e) => outcomes[i] = Some(WriteOutcome::Failed(e)),
        }
    }
    let answers = post(config, inputs, sent.len())?;
    // Replayed creates whose content changed since: brought up to date
    // afterwards, as the per-record path does with a PUT.
    let mut stale = Vec::new();
    for (&i, answer) in sent.iter().zip(answers) {
        let (done, replay) = outcome(&records[i], answer)?;
        if let Some(Replay { id, contact }) = replay
            && !same_content(&contact, &body(&records[i])?)
        {
            outcomes[i] = Some(WriteOutcome::Updated(id.clone()));
            stale.push((i, id));
            continue;
        }
        outcomes[i] = Some(done);
    }
    if !stale.is_empty() {
        let mut inputs = Inputs::new(stale.len());
        for (i, id) in &stale {
            inputs.update(id, &records[*i].payload)?;
        }
        let answers = post(config, inputs, stale.len())?;
        for ((i, id), answer) in stale.into_iter().zip(answers) {
            if let Some(refused) = refusal(&answer, &format!("contact {id}"))? {
                outcomes[i] = Some(refused);
            }
        }
    }
    records
        .iter()
        .zip(outcomes)
        .map(|(record, outcome)| {
            let outcome = outcome
                .ok_or_else(|| Error::internal(format!("no outcome for record {}", record.id)))?;
            Ok(WriteResult::new(&record.id, outcome))
        })
        .collect()
}

/// Send one batch request of `count` inputs; the results, one per input.
fn post(config: &Config, inputs: Inputs, count: usize) -> Result<Vec<ItemResult>, Error> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let answer: Answer = config
        .request(Request::post, "/api/contacts/batch")?
        .header("content-type", "application/json")
        .body(inputs.finish())
        .send()?
        .error_for_status()
        .map_err(|e| about(e, &format!("batch of {count} contacts")))?
        .json()?;
    if answer.results.len() != count {
        return Err(Error::internal(format!(
            "TinyCRM answered a batch of {count} with {} results",
            answer.results.len()
        )));
    }
    Ok(answer.results)
}

/// A create TinyCRM recognised by its key: the id and the contact as it is.
struct Replay {
    id: String,
    contact: Value,
}

/// What TinyCRM's `answer` means for `record`, and the replay to check when
/// it was a replayed create.
fn outcome(record: &Record, answer: ItemResult) -> Result<(WriteOutcome, Option<Replay>), Error> {
    let Some(id) = record.destination_id() else {
        if record.operation == Operation::Delete {
            // `Inputs::push` keeps these out of requests.
            return Err(Error::internal("a delete without an id was sent"));
        }
        let what = format!(
            "new contact (key {})",
            record.idempotency_key().unwrap_or("none")
        );
        if let Some(refused) = refusal(&answer, &what)? {
            return Ok((refused, None));
        }
        let id = answer.id.ok_or_else(|| {
            Error::internal(format!(
                "TinyCRM answered {} for {what} without an id",
                answer.status
            ))
        })?;
        let replay = match answer.contact {
            Some(contact) if answer.status == 200 => Some(Replay {
                id: id.clone(),
                contact,
            }),
            _ => None,
        };
        // A replayed key found the contact made the first time: answered
        // `unchanged` (`updated` once brought up to date below), never
        // `created`, so the host counts it as matched.
        let done = match replay {
            Some(_) => WriteOutcome::Unchanged(id),
            None => WriteOutcome::Created(id),
        };
        return Ok((done, replay));
    };
    let done = match record.operation {
        // Already gone is what a delete wants.
        Operation::Delete if answer.status == 404 => WriteOutcome::Deleted(id.to_string()),
        Operation::Upsert if answer.status == 404 => WriteOutcome::Failed(Error::rejected(
            format!("contact {id} no longer exists in TinyCRM"),
        )),
        Operation::Delete => refusal(&answer, &format!("contact {id}"))?
            .unwrap_or_else(|| WriteOutcome::Deleted(id.to_string())),
        Operation::Upsert => refusal(&answer, &format!("contact {id}"))?
            .unwrap_or_else(|| WriteOutcome::Updated(id.to_string())),
    };
    Ok((done, None))
}

/// `None` for a 2xx item; a refused item (400/404/409/422) is a failed
/// record, its error naming `what`; any other status is an error for the
/// whole call, classed as for a whole response.
fn refusal(answer: &ItemResult, what: &str) -> Result<Option<WriteOutcome>, Error> {
    let response = Response {
        status: answer.status,
        headers: Vec::new(),
        body: answer.error.clone().unwrap_or_default().into_bytes(),
    };
    match response.error_for_status().map_err(|e| about(e, what)) {
        Ok(_) => Ok(None),
        Err(e @ Error::Rejected(_)) => Ok(Some(WriteOutcome::Failed(e))),
        Err(e) => Err(e),
    }
}

/// A batch request body, built as text: a record's payload is already
/// JSON, so it is checked and copied in rather than parsed and serialised
/// again. TinyCRM ignores the `id` and `updated_at` a payload may carry.
struct Inputs {
    json: Vec<u8>,
    empty: bool,
}

impl Inputs {
    fn new(records: usize) -> Self {
        let mut json = Vec::with_capacity(64 + records * 320);
        json.extend_from_slice(br#"{"inputs":["#);
        Inputs { json, empty: true }
    }

    /// Add `record`'s input; a record that cannot be sent is refused, and
    /// nothing of it is added.
    fn push(&mut self, record: &Record) -> Result<(), Error> {
        let named = |e| about(e, &format!("record {}/{}", record.stream, record.id));
        match (record.operation, record.destination_id()) {
            (Operation::Delete, Some(id)) => self.add(|me| {
                me.field("id", id)?;
                me.json.extend_from_slice(br#","delete":true"#);
                Ok(())
            }),
            (Operation::Delete, None) => Err(Error::rejected(
                "a delete needs the contact's TinyCRM id and this record has none; nothing was sent",
            )),
            (Operation::Upsert, Some(id)) => self.update(id, &record.payload).map_err(named),
            (Operation::Upsert, None) => {
                let payload = object(&record.payload).map_err(named)?;
                self.add(|me| {
                    match record.idempotency_key() {
                        Some(key) => me.field("key", key)?,
                        None => me.json.extend_from_slice(br#""key":null"#),
                    }
                    me.properties(payload);
                    Ok(())
                })
            }
        }
    }

    /// Add an update of contact `id` to `payload`.
    fn update(&mut self, id: &str, payload: &str) -> Result<(), Error> {
        let payload = object(payload)?;
        self.add(|me| {
            me.field("id", id)?;
            me.properties(payload);
            Ok(())
        })
    }

    /// Add one input object, its fields written by `fields`; if that fails,
    /// nothing of it stays.
    fn add(&mut self, fields: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        let (len, empty) = (self.json.len(), self.empty);
        if !self.empty {
            self.json.push(b',');
        }
        self.empty = false;
        self.json.push(b'{');
        match fields(self) {
            Ok(()) => {
                self.json.push(b'}');
                Ok(())
            }
            Err(e) => {
                self.json.truncate(len);
                self.empty = empty;
                Err(e)
            }
        }
    }

    /// `"name":"value"`, escaped.
    fn field(&mut self, name: &str, value: &str) -> Result<(), Error> {
        self.json.push(b'"');
        self.json.extend_from_slice(name.as_bytes());
        self.json.extend_from_slice(b"\":");
        serde_json::to_writer(&mut self.json, value)?;
        Ok(())
    }

    /// `,"properties":{...}`, the payload as it is.
    fn properties(&mut self, payload: &str) {
        self.json.extend_from_slice(br#","properties":"#);
        self.json.extend_from_slice(payload.as_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.json.extend_from_slice(b"]}");
        self.json
    }
}

/// `payload` if it is exactly one JSON object, which makes it safe to copy
/// into the request as it is; `Rejected` otherwise (only its record fails).
fn object(payload: &str) -> Result<&str, Error> {
    if !payload.trim_start().starts_with('{') {
        return Err(Error::rejected("the payload is not a JSON object"));
    }
    serde_json::from_str::<IgnoredAny>(payload)
        .map_err(|e| Error::rejected(format!("the payload is not valid JSON: {e}")))?;
    Ok(payload)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn upsert(id: &str, key: &str, payload: &str) -> Record {
        Record {
            stream: "contacts".into(),
            id: id.into(),
            operation: Operation::Upsert,
            payload: payload.into(),
            cursor: Some(key.into()),
        }
    }

    #[test]
    fn inputs_are_valid_json_and_bad_payloads_are_left_out() {
        let mut inputs = Inputs::new(4);
        inputs
            .push(&upsert("", "k\"1", r#"{"email":"a@b.test"}"#))
            .unwrap();
        inputs.push(&upsert("c1", "", r#" {"id":"x"} "#)).unwrap();
        assert!(inputs.push(&upsert("c2", "", r#"{}]},{"a":1"#)).is_err());
        assert!(inputs.push(&upsert("", "k", "[1]")).is_err());
        inputs
            .push(&Record::delete("contacts", "c3").with_cursor("kd"))
            .unwrap();
        assert!(inputs.push(&Record::delete("contacts", "")).is_err());
        let sent: Value = serde_json::from_slice(&inputs.finish()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"inputs": [
                {"key": "k\"1", "properties": {"email": "a@b.test"}},
                {"id": "c1", "properties": {"id": "x"}},
                {"id": "c3", "delete": true},
            ]})
        );
    }

    #[test]
    fn item_results_become_outcomes() {
        let item = |status, id: Option<&str>, error: Option<&str>| ItemResult {
            status,
            id: id.map(str::to_string),
            error: error.map(str::to_string),
            contact: None,
        };
        let create = upsert("", "k", "{}");
        let (o, _) = outcome(&create, item(201, Some("c9"), None)).unwrap();
        assert_eq!(o, WriteOutcome::Created("c9".into()));
        let (o, _) = outcome(&create, item(422, None, Some("email is invalid"))).unwrap();
        assert_eq!(
            o,
            WriteOutcome::Failed(Error::Rejected(
                "new contact (key k): HTTP 422: email is invalid".into()
            ))
        );
        let update = upsert("c1", "k", "{}");
        let (o, _) = outcome(&update, item(404, Some("c1"), Some("no such contact"))).unwrap();
        assert_eq!(
            o,
            WriteOutcome::Failed(Error::Rejected(
                "contact c1 no longer exists in TinyCRM".into()
            ))
        );
        let delete = Record::delete("contacts", "c2");
        let (o, _) = outcome(&delete, item(404, Some("c2"), None)).unwrap();
        assert_eq!(o, WriteOutcome::Deleted("c2".into()));
        assert!(outcome(&create, item(201, None, None)).is_err(), "no id");
        assert!(outcome(&update, item(500, None, None)).is_err());
    }
}
