//! Incremental reads through HubSpot's search endpoint, the way HubSpot
//! recommends syncing changes: `hs_lastmodifieddate GTE` the cursor, sorted
//! ascending, paged with `after` (an offset HubSpot caps at 10 000 results,
//! after which the query restarts from the newest value read). Deals get
//! their companies and line items embedded.

use std::collections::BTreeMap;

use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Config, embedded, flat, success};

/// HubSpot's cap on the results one search can page through.
const SEARCH_CAP: u64 = 10_000;

#[derive(Deserialize)]
struct SearchAnswer {
    results: Vec<Value>,
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

/// One page of `stream` from `state`.
pub(crate) fn page(config: &Config, stream: &str, state: Option<&str>) -> Result<Page, Error> {
    let cursor = Cursor::from_state(state)?;
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
    let answer: SearchAnswer =
        success(config.post(&path, &body)?, &format!("searching {stream}"))?.json()?;

    let mut next = cursor.clone();
    let mut rows = Vec::with_capacity(answer.results.len());
    for object in &answer.results {
        let (id, updated, payload) = flat(object)?;
        if cursor.is_seen(&updated, &id) {
            continue;
        }
        next.observe(&updated, &id);
        rows.push((id, updated, payload));
    }
    if stream == "deals" && !rows.is_empty() {
        let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
        let companies = associated(config, &ids, "companies")?;
        let lines = associated(config, &ids, "line_items")?;
        for (id, _, payload) in &mut rows {
            let pick = |m: &BTreeMap<String, Vec<Value>>| {
                Value::Array(m.get(id.as_str()).cloned().unwrap_or_default())
            };
            payload.insert(
                "associations".into(),
                json!({"companies": pick(&companies), "line_items": pick(&lines)}),
            );
        }
    }
    let records = rows
        .into_iter()
        .map(
            |(id, updated, payload)| Ok(Record::upsert(stream, id, &payload)?.with_cursor(updated)),
        )
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
    Ok(Page {
        records,
        state: next.to_state()?,
        has_more,
    })
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
