//! Writes through HubSpot's batch endpoints, following the host's write
//! protocol: a record without destination id is created (`batch/create`),
//! one with an id updated (`batch/update`), a delete archived
//! (`batch/archive`). Creates are idempotent: the key goes into the
//! `nexo_idempotency_key` property and, before creating, a search finds the
//! keys already there, whose records are then updated instead.
//!
//! HubSpot refuses a whole batch (400) when one input is invalid; the
//! connector then sends that chunk's records one by one, so that only the
//! invalid ones fail (`rejected`, dead-lettered by the host).
//!
//! A created record is associated with the objects its payload's
//! `associate` field names, `{"companies": ["5000002"], …}`: ids in the
//! HubSpot written to, with HubSpot's default association type for each
//! pair. It is a field of its own, never the `associations` that reads
//! give, because those ids are the source HubSpot's: a HubSpot → HubSpot
//! sync would otherwise link records to the wrong objects. A mapper (e.g.
//! `nexo/field-mapper` lookups) fills it. Associations are written on
//! create only: an update leaves them as they are in HubSpot.

use std::collections::BTreeMap;

use nexo_sdk::prelude::*;
use serde_json::{Map, Value, json};

use crate::{Config, ENVELOPE, KEY_PROPERTY, MANAGED, failure, success};

/// HubSpot's limit on inputs per batch and values per `IN` filter.
const CHUNK: usize = 100;

type Properties = BTreeMap<String, String>;

/// One upsert on its way: batch position, destination id (none: create),
/// properties, idempotency key.
struct Upsert {
    index: usize,
    id: Option<String>,
    properties: Properties,
    key: Option<String>,
    /// `PublicAssociationsForObject` inputs, sent with a create.
    associations: Vec<Value>,
}

/// HubSpot's default (`HUBSPOT_DEFINED`, unlabeled) association type ids,
/// from one object type to another.
const ASSOCIATION_TYPES: [(&str, &str, u32); 8] = [
    ("contacts", "companies", 279),
    ("contacts", "deals", 4),
    ("companies", "contacts", 280),
    ("companies", "deals", 342),
    ("deals", "contacts", 3),
    ("deals", "companies", 341),
    ("deals", "line_items", 19),
    ("line_items", "deals", 20),
];

/// The association inputs of a record's `associate` field: for each
/// object type, the HubSpot ids to associate with.
fn associations(stream: &str, record: &Record) -> Result<Vec<Value>, Error> {
    let payload: Map<String, Value> = record.payload_as()?;
    let Some(by_type) = payload.get("associate") else {
        return Ok(Vec::new());
    };
    let refused = |why: String| {
        Error::rejected(format!(
            "record {}/{}: `associate` {why}",
            record.stream, record.id
        ))
    };
    let by_type = by_type
        .as_object()
        .ok_or_else(|| refused("must be an object: object type → [HubSpot ids]".into()))?;
    let mut out = Vec::new();
    for (to, targets) in by_type {
        let type_id = ASSOCIATION_TYPES
            .iter()
            .find(|(from, t, _)| *from == stream && t == to)
            .map(|(_, _, id)| *id)
            .ok_or_else(|| {
                refused(format!(
                    "names `{to}`, which {stream} cannot be associated with here"
                ))
            })?;
        let targets = targets
            .as_array()
            .ok_or_else(|| refused(format!("`{to}` must be a list of HubSpot ids")))?;
        for target in targets {
            let id = match target {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(refused(format!("`{to}` has {other}, not an id"))),
            };
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refused(format!(
                    "`{to}` id `{id}` is not a HubSpot object id"
                )));
            }
            out.push(json!({"to": {"id": id}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}));
        }
    }
    Ok(out)
}

pub(crate) fn batch(
    config: &Config,
    stream: &str,
    batch: &[Record],
) -> Result<Vec<WriteResult>, Error> {
    let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; batch.len()];
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for (index, record) in batch.iter().enumerate() {
        match (record.operation, record.destination_id()) {
            (Operation::Delete, Some(id)) => deletes.push((index, id.to_string())),
            (Operation::Delete, None) => {
                outcomes[index] = Some(WriteOutcome::Failed(Error::rejected(
                    "a delete needs the HubSpot id and this record has none; nothing was sent",
                )))
            }
            (Operation::Upsert, id) => {
                match properties(record).and_then(|p| Ok((p, associations(stream, record)?))) {
                    Ok((properties, associations)) => upserts.push(Upsert {
                        index,
                        id: id.map(str::to_string),
                        properties,
                        key: record.idempotency_key().map(str::to_string),
                        associations,
                    }),
                    Err(e) => outcomes[index] = Some(WriteOutcome::Failed(e)),
                }
            }
        }
    }

    // Creates already applied (answer lost, run retried) become updates.
    let keys: Vec<&str> = upserts
        .iter()
        .filter(|u| u.id.is_none())
        .filter_map(|u| u.key.as_deref())
        .collect();
    let known = existing_keys(config, stream, &keys)?;
    for u in &mut upserts {
        if let (None, Some(id)) = (&u.id, u.key.as_ref().and_then(|k| known.get(k))) {
            u.id = Some(id.clone());
        }
    }
    let (updates, creates): (Vec<Upsert>, Vec<Upsert>) =
        upserts.into_iter().partition(|u| u.id.is_some());
    for chunk in creates.chunks(CHUNK) {
        for (index, outcome) in create(config, stream, chunk)? {
            outcomes[index] = Some(outcome);
        }
    }
    for chunk in updates.chunks(CHUNK) {
        for (index, outcome) in update(config, stream, chunk)? {
            outcomes[index] = Some(outcome);
        }
    }
    for chunk in deletes.chunks(CHUNK) {
        let inputs: Vec<Value> = chunk.iter().map(|(_, id)| json!({"id": id})).collect();
        let path = format!("/crm/v3/objects/{stream}/batch/archive");
        success(
            config.post(&path, &json!({"inputs": inputs}))?,
            &format!("archiving {stream}"),
        )?;
        for (index, id) in chunk {
            outcomes[*index] = Some(WriteOutcome::Deleted(id.clone()));
        }
    }

    batch
        .iter()
        .zip(outcomes)
        .map(|(record, outcome)| {
            let outcome = outcome
                .ok_or_else(|| Error::internal(format!("no outcome for record {}", record.id)))?;
            Ok(WriteResult::new(&record.id, outcome))
        })
        .collect()
}

/// A record's payload as HubSpot properties: top-level fields (and those of
/// a nested `properties` object), values as strings, `null` clearing.
fn properties(record: &Record) -> Result<Properties, Error> {
    let payload: Map<String, Value> = record.payload_as()?;
    let nested = payload
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = Properties::new();
    for (name, value) in payload
        .iter()
        .filter(|(k, _)| k.as_str() != "properties")
        .chain(&nested)
    {
        if ENVELOPE.contains(&name.as_str()) || MANAGED.contains(&name.as_str()) {
            continue;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(Error::rejected(format!(
                    "record {}/{}: field `{name}` is {other}, not a HubSpot property value (text, number, boolean)",
                    record.stream, record.id
                )));
            }
        };
        out.insert(name.clone(), text);
    }
    Ok(out)
}

/// Ids of the objects already holding these idempotency keys.
fn existing_keys(
    config: &Config,
    stream: &str,
    keys: &[&str],
) -> Result<BTreeMap<String, String>, Error> {
    let mut found = BTreeMap::new();
    let path = format!("/crm/v3/objects/{stream}/search");
    for chunk in keys.chunks(CHUNK) {
        let mut after = "0".to_string();
        loop {
            let body = json!({
                "filterGroups": [{"filters": [{"propertyName": KEY_PROPERTY, "operator": "IN", "values": chunk}]}],
                "sorts": [],
                "properties": [KEY_PROPERTY],
                "limit": 200,
                "after": after,
            });
            let answer: Value =
                success(config.post(&path, &body)?, "looking up idempotency keys")?.json()?;
            for object in answer["results"].as_array().into_iter().flatten() {
                if let (Some(id), Some(key)) = (
                    object["id"].as_str(),
                    object["properties"][KEY_PROPERTY].as_str(),
                ) {
                    found
                        .entry(key.to_string())
                        .or_insert_with(|| id.to_string());
                }
            }
            match answer["paging"]["next"]["after"].as_str() {
                Some(next) => after = next.to_string(),
                None => break,
            }
        }
    }
    Ok(found)
}

fn with_key(u: &Upsert) -> Properties {
    let mut p = u.properties.clone();
    if let Some(key) = &u.key {
        p.insert(KEY_PROPERTY.into(), key.clone());
    }
    p
}

fn what(stream: &str, u: &Upsert) -> String {
    match (&u.id, &u.key) {
        (Some(id), _) => format!("{stream} {id}"),
        (None, Some(key)) => format!("new {stream} (key {key})"),
        (None, None) => format!("new {stream}"),
    }
}

fn create(
    config: &Config,
    stream: &str,
    chunk: &[Upsert],
) -> Result<Vec<(usize, WriteOutcome)>, Error> {
    let inputs: Vec<Value> = chunk
        .iter()
        .map(|u| json!({"properties": with_key(u), "associations": u.associations}))
        .collect();
    let response = config.post(
        &format!("/crm/v3/objects/{stream}/batch/create"),
        &json!({"inputs": inputs}),
    )?;
    if response.status == 400 {
        // One invalid input refuses the batch: find which, one by one.
        return chunk
            .iter()
            .map(|u| {
                let body = json!({"properties": with_key(u), "associations": u.associations});
                let response = config.post(&format!("/crm/v3/objects/{stream}"), &body)?;
                let outcome = match response.status {
                    200..=299 => WriteOutcome::Created(id_of(&response.json::<Value>()?)?),
                    400 => WriteOutcome::Failed(failure(response, &what(stream, u))),
                    _ => return Err(failure(response, &what(stream, u))),
                };
                Ok((u.index, outcome))
            })
            .collect();
    }
    let answer: Value = success(response, &format!("creating {} {stream}", chunk.len()))?.json()?;
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    // HubSpot does not promise the inputs' order: match by key when there is one.
    let by_key: BTreeMap<&str, &Value> = results
        .iter()
        .filter_map(|r| Some((r["properties"][KEY_PROPERTY].as_str()?, r)))
        .collect();
    chunk
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let result = match &u.key {
                Some(key) => by_key.get(key.as_str()).copied(),
                None => results.get(i),
            };
            let result = result.ok_or_else(|| {
                Error::internal(format!(
                    "HubSpot's batch create did not answer for {}",
                    what(stream, u)
                ))
            })?;
            Ok((u.index, WriteOutcome::Created(id_of(result)?)))
        })
        .collect()
}

fn update(
    config: &Config,
    stream: &str,
    chunk: &[Upsert],
) -> Result<Vec<(usize, WriteOutcome)>, Error> {
    // A replayed create (found by its key) is an update of the record
    // found, and answered as one: the host counts it as matched.
    let inputs: Vec<Value> = chunk
        .iter()
        .map(|u| json!({"id": u.id.clone().unwrap_or_default(), "properties": u.properties}))
        .collect();
    let response = config.post(
        &format!("/crm/v3/objects/{stream}/batch/update"),
        &json!({"inputs": inputs}),
    )?;
    if response.status == 400 {
        return chunk
            .iter()
            .map(|u| {
                let id = u.id.clone().unwrap_or_default();
                let response = config
                    .request(
                        Request::patch,
                        &format!("/crm/v3/objects/{stream}/{}", segment(&id)),
                    )?
                    .json(&json!({"properties": u.properties}))?
                    .send()?;
                let outcome = match response.status {
                    200..=299 => WriteOutcome::Updated(id),
                    404 => WriteOutcome::Failed(Error::rejected(format!(
                        "{stream} {id} no longer exists in HubSpot"
                    ))),
                    400 => WriteOutcome::Failed(failure(response, &what(stream, u))),
                    _ => return Err(failure(response, &what(stream, u))),
                };
                Ok((u.index, outcome))
            })
            .collect();
    }
    let answer: Value = success(response, &format!("updating {} {stream}", chunk.len()))?.json()?;
    // 207: the ids HubSpot could not find are listed in the errors' context.
    let missing: Vec<&str> = answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["context"]["ids"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    Ok(chunk
        .iter()
        .map(|u| {
            let id = u.id.clone().unwrap_or_default();
            let outcome = if missing.contains(&id.as_str()) {
                WriteOutcome::Failed(Error::rejected(format!(
                    "{stream} {id} no longer exists in HubSpot"
                )))
            } else {
                WriteOutcome::Updated(id)
            };
            (u.index, outcome)
        })
        .collect())
}

fn id_of(object: &Value) -> Result<String, Error> {
    object["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::internal(format!("HubSpot answered a write without an id: {object}")))
}

/// `id` as one URL path segment.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_string_properties_without_managed_fields() {
        let record = Record::upsert(
            "deals",
            "",
            &json!({"id": "1", "updatedAt": "T", "dealname": "D", "amount": 12.5, "hs_lastmodifieddate": "x",
                    "closedate": null, "associations": {}, "properties": {"pipeline": "default"}}),
        )
        .unwrap();
        let p = properties(&record).unwrap();
        let expected: Properties = [
            ("amount", "12.5"),
            ("closedate", ""),
            ("dealname", "D"),
            ("pipeline", "default"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(p, expected);
        let bad = Record::upsert("deals", "", &json!({"tags": ["a"]})).unwrap();
        assert!(matches!(properties(&bad), Err(Error::Rejected(_))));
        assert_eq!(segment("12/../x"), "12%2F%2E%2E%2Fx");
    }
}
