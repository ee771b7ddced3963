//! Incremental reads through HubSpot's search endpoint, the way HubSpot
//! recommends syncing changes: `hs_lastmodifieddate GTE` the cursor, sorted
//! ascending, paged with `after` (an offset HubSpot caps at 10 000 results,
//! after which the query restarts from the newest value read). Deals get
//! their companies and line items embedded.
//!
//! Search never returns archived (deleted) objects, so after each search
//! pass (with `read_deletes`) the archived objects are listed
//! (`GET /crm/v3/objects/{type}?archived=true`, by id) and those archived
//! since the last pass become delete records. The pass's high-water mark
//! is kept with a look-back window, since an object archived mid-pass may
//! sit on a page already listed; a delete read twice is harmless (the
//! engine finds its link already deleted).

use std::collections::BTreeMap;

use nexo_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Config, Object, embedded, success};

/// HubSpot's cap on the results one search can page through.
const SEARCH_CAP: u64 = 10_000;

/// How far before the newest `archivedAt` of a pass the next pass looks
/// again: longer than an archived pass takes.
const ARCHIVED_LOOK_BACK_MS: i64 = 5 * 60 * 1000;

/// The read state: the search position and the archived pass.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ReadState {
    /// Position of the incremental search.
    search: Cursor,
    /// Objects archived at or before this instant (ms) were read as
    /// deletes by an earlier pass.
    #[serde(default)]
    archived_since: i64,
    /// While listing archived objects: the `after` token of the next page
    /// (empty for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archived_after: Option<String>,
    /// The newest `archivedAt` seen by the pass in progress.
    #[serde(default)]
    archived_newest: i64,
}

impl ReadState {
    /// The saved state; a state saved before deletes were read (a bare
    /// search cursor) is the search position of a new one.
    fn parse(state: Option<&str>) -> Result<ReadState, Error> {
        let Some(text) = state.filter(|s| !s.is_empty()) else {
            return Ok(ReadState::default());
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::internal(format!("the saved read state does not parse: {e}")))?;
        if value.get("search").is_some() {
            serde_json::from_value(value).map_err(|e| {
                Error::internal(format!("the saved read state is not this connector's: {e}"))
            })
        } else {
            Ok(ReadState {
                search: Cursor::from_state(Some(text))?,
                ..ReadState::default()
            })
        }
    }

    fn to_state(&self) -> Result<Option<String>, Error> {
        Ok(Some(serde_json::to_string(self)?))
    }
}

/// A page of `GET /crm/v3/objects/{type}?archived=true`.
#[derive(Deserialize)]
struct ListAnswer {
    results: Vec<Value>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct SearchAnswer<'a> {
    #[serde(borrow)]
    results: Vec<Object<'a>>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    next: Option<Next>,
}

#[derive(Deserialize)]
struct Next {
    after: String,
}

/// One page of `stream` from `state`: a page of the search, or, once the
/// search has reached its end, a page of the archived objects.
pub(crate) fn page(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
    let mut state = ReadState::parse(state)?;
    if state.archived_after.is_some() {
        return archived_page(config, stream, state);
    }
    let (records, search, more) = search_page(config, stream, &state.search)?;
    state.search = search;
    if !more && config.read_deletes {
        // The search is done: list what was archived meanwhile.
        state.archived_after = Some(String::new());
        state.archived_newest = 0;
        return Ok(Page {
            records,
            state: state.to_state()?,
            has_more: true,
        });
    }
    Ok(Page {
        records,
        state: state.to_state()?,
        has_more: more,
    })
}

/// One page of archived objects: those archived since the last pass become
/// deletes; the last page closes the pass.
fn archived_page(config: &Config, stream: &str, mut state: ReadState) -> Result<Page, Error> {
    let after = state.archived_after.clone().unwrap_or_default();
    let limit = config.page_size.to_string();
    let mut query = vec![
        ("archived", "true"),
        ("limit", limit.as_str()),
        ("properties", "hs_object_id"),
    ];
    if !after.is_empty() {
        query.push(("after", after.as_str()));
    }
    let path = format!("/crm/v3/objects/{stream}");
    let answer: ListAnswer = success(
        config.get(&path, &query)?,
        &format!("listing archived {stream}"),
    )?
    .json()?;
    let mut records = Vec::new();
    for object in &answer.results {
        let id = object["id"]
            .as_str()
            .ok_or_else(|| Error::internal(format!("an archived {stream} object has no id")))?;
        let at = object["archivedAt"].as_str().unwrap_or_default();
        let ms = iso_to_ms(at).ok_or_else(|| {
            Error::internal(format!(
                "archived {stream} {id} has no ISO 8601 archivedAt (`{at}`)"
            ))
        })?;
        state.archived_newest = state.archived_newest.max(ms);
        if ms > state.archived_since {
            records.push(Record::delete(stream, id).with_cursor(at.to_string()));
        }
    }
    match answer.paging.and_then(|p| p.next).map(|n| n.after) {
        Some(next) => {
            state.archived_after = Some(next);
            Ok(Page {
                records,
                state: state.to_state()?,
                has_more: true,
            })
        }
        None => {
            let since = state.archived_newest - ARCHIVED_LOOK_BACK_MS;
            state.archived_since = state.archived_since.max(since);
            state.archived_after = None;
            state.archived_newest = 0;
            Ok(Page {
                records,
                state: state.to_state()?,
                has_more: false,
            })
        }
    }
}

/// One page of the incremental search from `cursor`: its records, the new
/// position, and whether the search has more.
fn search_page(
    config: &Config,
    stream: &str,
    cursor: &Cursor,
) -> Result<(Vec<Record>, Cursor, bool), Error> {
    let from = cursor.query_value().map(str::to_string);
    let filter_groups = match &from {
        Some(value) => {
            let ms = iso_to_ms(value).ok_or_else(|| {
                Error::internal(format!(
                    "the saved cursor `{value}` is not an ISO 8601 time"
                ))
            })?;
            json!([{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": ms.to_string()}]}])
        }
        None => json!([]),
    };
    let mut properties = config.properties(stream);
    properties.push("hs_lastmodifieddate".into());
    let body = json!({
        "filterGroups": filter_groups,
        "sorts": ["hs_lastmodifieddate"],
        "properties": properties,
        "limit": config.page_size,
        "after": cursor.page_token().unwrap_or("0"),
    });
    let path = format!("/crm/v3/objects/{stream}/search");
    let response = success(config.post(&path, &body)?, &format!("searching {stream}"))?;
    // The records are written from the answer's text as they are read:
    // no tree of the answer, no tree of each payload.
    let answer: SearchAnswer = response.json()?;

    let mut next = cursor.clone();
    let mut rows = Vec::with_capacity(answer.results.len());
    for object in &answer.results {
        let (id, updated) = object.key()?;
        if cursor.is_seen(updated, id) {
            continue;
        }
        next.observe(updated, id);
        rows.push((id, updated, object));
    }
    let mut associations = BTreeMap::new();
    if stream == "deals" && !rows.is_empty() {
        let ids: Vec<&str> = rows.iter().map(|(id, _, _)| *id).collect();
        let companies = associated(config, &ids, "companies")?;
        let lines = associated(config, &ids, "line_items")?;
        for id in ids {
            let pick = |m: &BTreeMap<String, Vec<Value>>| {
                Value::Array(m.get(id).cloned().unwrap_or_default())
            };
            associations.insert(
                id,
                json!({"companies": pick(&companies), "line_items": pick(&lines)}),
            );
        }
    }
    let records = rows
        .into_iter()
        .map(|(id, updated, object)| {
            let payload = object.payload(associations.get(id))?;
            Ok(Record::upsert_json(stream, id, payload)?.with_cursor(updated))
        })
        .collect::<Result<Vec<_>, Error>>()?;

    let token = answer.paging.and_then(|p| p.next).map(|n| n.after);
    let has_more = token.is_some();
    match token {
        // Past HubSpot's cap the same query cannot go on: restart from the
        // newest value read (the ids read at it are remembered).
        Some(after)
            if after.parse::<u64>().unwrap_or(0) + u64::from(config.page_size) > SEARCH_CAP =>
        {
            next.set_page(None, from.as_deref());
        }
        token => next.set_page(token, from.as_deref()),
    }
    Ok((records, next, has_more))
}

/// For each deal id, its associated `to` objects as `{id, properties}`.
fn associated(
    config: &Config,
    deals: &[&str],
    to: &str,
) -> Result<BTreeMap<String, Vec<Value>>, Error> {
    let mut links: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for chunk in deals.chunks(100) {
        let inputs: Vec<Value> = chunk.iter().map(|id| json!({"id": id})).collect();
        let path = format!("/crm/v4/associations/deals/{to}/batch/read");
        let answer: Value = success(
            config.post(&path, &json!({"inputs": inputs}))?,
            &format!("reading deal associations to {to}"),
        )?
        .json()?;
        for result in answer["results"].as_array().into_iter().flatten() {
            let Some(from) = result["from"]["id"].as_str() else {
                continue;
            };
            let targets =
                result["to"].as_array().into_iter().flatten().filter_map(
                    |t| match &t["toObjectId"] {
                        Value::Number(n) => Some(n.to_string()),
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    },
                );
            links.entry(from.to_string()).or_default().extend(targets);
        }
    }
    let mut wanted: Vec<&str> = links.values().flatten().map(String::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut objects: BTreeMap<String, Value> = BTreeMap::new();
    for chunk in wanted.chunks(100) {
        let inputs: Vec<Value> = chunk.iter().map(|id| json!({"id": id})).collect();
        let body = json!({"inputs": inputs, "properties": config.properties(to), "propertiesWithHistory": []});
        let path = format!("/crm/v3/objects/{to}/batch/read");
        // 207: some were archived meanwhile; the others are still answered.
        let answer: Value =
            success(config.post(&path, &body)?, &format!("reading {to}"))?.json()?;
        for object in answer["results"].as_array().into_iter().flatten() {
            if let Some(id) = object["id"].as_str() {
                objects.insert(id.to_string(), embedded(object));
            }
        }
    }
    Ok(links
        .into_iter()
        .map(|(deal, ids)| {
            let found = ids
                .iter()
                .filter_map(|id| objects.get(id).cloned())
                .collect();
            (deal, found)
        })
        .collect())
}

/// `2026-01-05T10:00:00.123Z` (or without fraction) → milliseconds since
/// the epoch; `None` for anything else.
pub(crate) fn iso_to_ms(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let frac = format!("{frac:0<3}");
    let ms: i64 = frac.get(..3)?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + sec * 1000 + ms)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_become_milliseconds() {
        assert_eq!(iso_to_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            iso_to_ms("2019-10-30T03:30:17.883Z"),
            Some(1_572_406_217_883)
        );
        assert_eq!(iso_to_ms("2024-02-29T00:00:01Z"), Some(1_709_164_801_000));
        assert_eq!(iso_to_ms("yesterday"), None);
    }
}
