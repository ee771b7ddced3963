//! The batch endpoints (`/crm/v3/objects/{type}/batch/{create,update,read,archive}`),
//! with HubSpot's all-or-nothing validation (one invalid input refuses the
//! batch with 400) and 207 multi-status answers for unknown ids.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Answer as Reply, ApiError as Refusal, ForCreate, IdInput, associate_all, change};
use super::now_ms;
use super::store::{ChangeError, ObjectType, Store, iso};

/// HubSpot's limit on inputs per batch.
const MAX_INPUTS: usize = 100;

#[derive(Deserialize)]
struct Inputs<T> {
    inputs: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateInput {
    id: String,
    #[serde(default)]
    id_property: Option<String>,
    properties: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadInputs {
    inputs: Vec<IdInput>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    id_property: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::Validation {
        message: format!("Invalid input JSON: {e}"),
        errors: Vec::new(),
    })
}

fn too_many(n: usize) -> Result<(), Refusal> {
    if n > MAX_INPUTS {
        return Err(Refusal::Validation {
            message: format!("Batch of {n} inputs; the limit is {MAX_INPUTS}"),
            errors: Vec::new(),
        });
    }
    Ok(())
}

/// A batch answer: 200/201 without errors, 207 with them.
fn answer(ok: StatusCode, ty: ObjectType, results: Vec<Value>, missing: Vec<String>) -> Reply {
    let t = iso(now_ms());
    let mut body =
        json!({"status": "COMPLETE", "results": results, "startedAt": t, "completedAt": t});
    if missing.is_empty() {
        return Ok((ok, Some(body)));
    }
    body["numErrors"] = json!(1);
    body["errors"] = json!([{
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", ty.name().to_uppercase()),
        "context": {"ids": missing},
        "errors": [],
        "links": {},
    }]);
    Ok((StatusCode::MULTI_STATUS, Some(body)))
}

fn resolve(store: &Store, ty: ObjectType, id: &str, id_property: Option<&str>) -> Option<u64> {
    match id_property {
        Some(p) if p != "hs_object_id" => store.find_by(ty, p, id).map(|o| o.id),
        _ => id.parse().ok().filter(|&id| store.get(ty, id).is_some()),
    }
}

pub(super) fn batch(store: &mut Store, ty: ObjectType, op: &str, body: &[u8]) -> Reply {
    let now = now_ms();
    match op {
        "create" => {
            let input: Inputs<ForCreate> = parse(body)?;
            too_many(input.inputs.len())?;
            for (i, one) in input.inputs.iter().enumerate() {
                let errors = super::store::validate(ty, &one.properties);
                if !errors.is_empty() {
                    return Err(change(
                        ty,
                        ChangeError::Invalid(errors),
                        &format!("inputs[{i}]: "),
                    ));
                }
            }
            let mut results = Vec::with_capacity(input.inputs.len());
            for one in input.inputs {
                let created = store
                    .create(ty, one.properties, now)
                    .map_err(|e| change(ty, e, ""))?;
                associate_all(store, ty, created.id, &one.associations);
                results.push(Store::render_written(ty, &created));
            }
            answer(StatusCode::CREATED, ty, results, Vec::new())
        }
        "update" => {
            let input: Inputs<UpdateInput> = parse(body)?;
            too_many(input.inputs.len())?;
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for (i, one) in input.inputs.iter().enumerate() {
                match resolve(store, ty, &one.id, one.id_property.as_deref()) {
                    Some(id) => {
                        if let Err(e @ ChangeError::Invalid(_)) =
                            store.check(ty, id, &one.properties)
                        {
                            return Err(change(ty, e, &format!("inputs[{i}]: ")));
                        }
                        found.push((id, one.properties.clone()));
                    }
                    None => missing.push(one.id.clone()),
                }
            }
            let mut results = Vec::with_capacity(found.len());
            for (id, props) in found {
                let obj = store
                    .update(ty, id, props, now)
                    .map_err(|e| change(ty, e, ""))?;
                results.push(Store::render_written(ty, &obj));
            }
            answer(StatusCode::OK, ty, results, missing)
        }
        "read" => {
            let input: ReadInputs = parse(body)?;
            too_many(input.inputs.len())?;
            let mut results = Vec::new();
            let mut missing = Vec::new();
            for one in &input.inputs {
                match resolve(store, ty, &one.id, input.id_property.as_deref())
                    .and_then(|id| store.get(ty, id))
                {
                    Some(obj) => results.push(Store::render(ty, obj, &input.properties)),
                    None => missing.push(one.id.clone()),
                }
            }
            answer(StatusCode::OK, ty, results, missing)
        }
        "archive" => {
            let input: Inputs<IdInput> = parse(body)?;
            too_many(input.inputs.len())?;
            for one in input.inputs {
                if let Ok(id) = one.id.parse() {
                    store.archive(ty, id, now);
                }
            }
            Ok((StatusCode::NO_CONTENT, None))
        }
        other => Err(Refusal::NotFound(format!("No batch operation {other}"))),
    }
}
