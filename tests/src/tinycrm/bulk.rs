//! TinyCRM's batch endpoint, `POST /api/contacts/batch`: many creates,
//! updates and deletes in one request, as real CRMs offer (HubSpot's
//! `/batch/create`, Xero's arrays), because one round trip per record
//! cannot load 100 000 records quickly. Each input keeps the single
//! endpoints' semantics and gets a result of its own; the fault knobs apply
//! once to the whole request, and the lock is taken once for all inputs.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Crm;
use super::api::{
    Shared, answer_after, authorized, before_write, contact_fields, error, take_stall, unauthorized,
};

/// The most inputs one request may carry; more is a 400.
pub(super) const MAX_INPUTS: usize = 5000;

/// The largest request body accepted: 5000 contacts with room for custom
/// fields.
pub(super) const MAX_BODY_BYTES: usize = 32 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    inputs: Vec<Input>,
}

/// One operation of a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Idempotency key of a create (ignored otherwise; empty is none).
    #[serde(default)]
    key: Option<String>,
    /// The contact to update or delete; none for a create.
    #[serde(default)]
    id: Option<String>,
    /// Delete contact `id` instead of writing it.
    #[serde(default)]
    delete: bool,
    /// The contact's fields, for a create or an update.
    #[serde(default)]
    properties: Option<Value>,
}

/// The result of one input.
#[derive(Debug, Serialize)]
struct Outcome {
    status: u16,
    /// The contact's id; `null` for a create that was refused.
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// On a replayed create only: the contact as it is now, so that a
    /// client can tell whether its record still needs an update.
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<Value>,
}

impl Outcome {
    fn ok(status: StatusCode, id: String) -> Self {
        Outcome {
            status: status.as_u16(),
            id: Some(id),
            error: None,
            contact: None,
        }
    }

    fn refused(status: StatusCode, id: Option<String>, error: impl Into<String>) -> Self {
        Outcome {
            status: status.as_u16(),
            id,
            error: Some(error.into()),
            contact: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct Answer {
    results: Vec<Outcome>,
}

/// `POST /api/contacts/batch`.
pub(super) async fn batch(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Batch>(&body);
    let what = match &parsed {
        Ok(b) => format!("POST /api/contacts/batch inputs={}", b.inputs.len()),
        Err(_) => "POST /api/contacts/batch".to_string(),
    };
    if !authorized(&s, &headers, what) {
        return unauthorized();
    }
    let inputs = match parsed {
        Ok(b) if b.inputs.len() > MAX_INPUTS => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "a batch holds at most {MAX_INPUTS} inputs, this one {}",
                    b.inputs.len()
                ),
            );
        }
        Ok(b) => b.inputs,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("body is not a batch ({{\"inputs\": [...]}}): {e}"),
            );
        }
    };
    if let Some(failed) = before_write(&s, true).await {
        return failed;
    }
    let (results, stall) = {
        let mut crm = s.0.lock().unwrap();
        let results: Vec<Outcome> = inputs.into_iter().map(|i| apply(&mut crm, i)).collect();
        (results, take_stall(&mut crm))
    };
    answer_after(stall, StatusCode::OK, Answer { results }).await
}

/// Apply one input as the single endpoints would.
fn apply(crm: &mut Crm, input: Input) -> Outcome {
    match (input.id, input.delete) {
        (None, true) => Outcome::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "a delete needs the contact's id",
        ),
        // Unknown or already deleted: gone is what a delete wants.
        (Some(id), true) => {
            crm.remove(&id);
            Outcome::ok(StatusCode::OK, id)
        }
        (Some(id), false) => {
            if !crm.contacts.contains_key(&id) {
                return Outcome::refused(StatusCode::NOT_FOUND, Some(id), "no such contact");
            }
            match contact(input.properties) {
                Ok(body) => {
                    crm.replace(&id, body);
                    Outcome::ok(StatusCode::OK, id)
                }
                Err(e) => Outcome::refused(StatusCode::UNPROCESSABLE_ENTITY, Some(id), e),
            }
        }
        (None, false) => {
            let key = input.key.filter(|k| !k.is_empty());
            // As `POST /api/contacts`: a known key replays before the body
            // is even looked at.
            if let Some(now) = key.as_deref().and_then(|k| crm.replay(k)) {
                let id = now["id"].as_str().unwrap_or_default().to_string();
                return Outcome {
                    contact: Some(now),
                    ..Outcome::ok(StatusCode::OK, id)
                };
            }
            match contact(input.properties) {
                Ok(body) => Outcome::ok(StatusCode::CREATED, crm.create_counted(body, key)),
                Err(e) => Outcome::refused(StatusCode::UNPROCESSABLE_ENTITY, None, e),
            }
        }
    }
}

/// An input's `properties` as a valid contact, or why not.
fn contact(properties: Option<Value>) -> Result<Map<String, Value>, String> {
    let Some(Value::Object(mut body)) = properties else {
        return Err("properties must be a JSON object".into());
    };
    contact_fields(&mut body).map_err(|(error, _field)| error.to_string())?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> Input {
        serde_json::from_value(v).unwrap()
    }

    fn run(crm: &mut Crm, inputs: Value) -> Vec<(u16, Option<String>)> {
        let Batch { inputs } = serde_json::from_value(json!({ "inputs": inputs })).unwrap();
        inputs
            .into_iter()
            .map(|i| {
                let o = apply(crm, i);
                (o.status, o.id)
            })
            .collect()
    }

    #[test]
    fn inputs_apply_in_order_with_the_single_endpoints_semantics() {
        let mut crm = Crm::default();
        let ada = json!({"email": "ada@example.com", "city": "London"});
        let results = run(
            &mut crm,
            json!([
                {"key": "k1", "properties": ada},
                {"key": "k1", "properties": {"email": "other@example.com"}},
                {"key": "k2", "properties": {"email": "nope"}},
                {"id": "c0001", "properties": {"email": "ada@example.com", "city": "Paris"}},
                {"id": "c0001", "delete": true},
                {"id": "c0001", "delete": true},
                {"id": "c0001", "properties": ada},
                {"delete": true},
                {"properties": [1]},
            ]),
        );
        let c1 = Some("c0001".to_string());
        assert_eq!(
            results,
            [
                (201, c1.clone()),
                (200, c1.clone()),
                (422, None),
                (200, c1.clone()),
                (200, c1.clone()),
                (200, c1.clone()),
                (404, c1),
                (422, None),
                (422, None),
            ]
        );
        assert_eq!(crm.creates, 1, "a replayed key creates nothing");
        assert!(crm.contacts.is_empty());
        assert_eq!(crm.tombstones.len(), 1);
        assert_eq!(crm.index.len(), 1, "the index follows every write");
        assert!(
            !crm.contacts.touched && !crm.tombstones.touched,
            "the server's own writes need no re-indexing"
        );
    }

    #[test]
    fn a_replay_carries_the_contact_as_it_is_now() {
        let mut crm = Crm::default();
        let ada = json!({"email": "ada@example.com", "city": "London"});
        apply(&mut crm, input(json!({"key": "k", "properties": ada})));
        crm.edit("c0001", "city", json!("Paris"));
        let again = apply(&mut crm, input(json!({"key": "k", "properties": ada})));
        assert_eq!(again.status, 200);
        assert_eq!(again.contact.unwrap()["city"], "Paris");
    }
}
