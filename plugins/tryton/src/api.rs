//! Tryton's REST API (`/<database>/rest/model/…`, Tryton 8): requests with
//! the application key and the company context, Tryton's JSON encoding of
//! decimals, dates and timestamps, and its answers turned into the SDK's
//! error classes (a user error is `rejected`, a 5xx `transient`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use nexo_sdk::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::Config;

/// Name of the secret holding the user application key.
pub const KEY_SECRET: &str = "application_key";

/// Tryton's encoding of a decimal.
pub fn decimal(d: Decimal) -> Value {
    json!({"__class__": "Decimal", "decimal": d.normalize().to_string()})
}

/// Tryton's encoding of a calendar date.
pub fn date(d: nexo_sdk::model::Date) -> Value {
    json!({"__class__": "date", "year": d.year(), "month": d.month(), "day": d.day()})
}

/// A decimal from Tryton (`{"__class__": "Decimal"}` or a plain number).
pub fn dec(v: &Value) -> Result<Decimal, Error> {
    let text = match v {
        Value::Null => return Ok(Decimal::ZERO),
        Value::Object(m) => m
            .get("decimal")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => return Err(Error::internal(format!("Tryton sent {other} for a number"))),
    };
    // Floats arrive as `2.0` or `1e-05`; Decimal parses both forms.
    text.parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(&text))
        .map(|d| d.normalize())
        .map_err(|e| Error::internal(format!("Tryton sent `{text}` for a number: {e}")))
}

/// A JSON number for a Tryton `Float` field (quantities).
pub fn float(d: Decimal) -> Result<Value, Error> {
    let f: f64 = d
        .normalize()
        .to_string()
        .parse()
        .map_err(|e| Error::rejected(format!("quantity {d}: {e}")))?;
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| Error::rejected(format!("quantity {d} is not a finite number")))
}

/// A Tryton date or timestamp as text: `YYYY-MM-DD`, or
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, fixed width, so that texts sort like
/// the instants they name).
pub fn stamp(v: &Value) -> Option<String> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let (y, mo, d) = (n("year")?, n("month")?, n("day")?);
    match v.get("__class__").and_then(Value::as_str) {
        Some("date") => Some(format!("{y:04}-{mo:02}-{d:02}")),
        Some("datetime") => Some(format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            n("hour")?,
            n("minute")?,
            n("second")?,
            n("microsecond").unwrap_or(0)
        )),
        _ => None,
    }
}

/// The inverse of [`stamp`] for a timestamp, as Tryton's JSON datetime.
pub fn datetime(text: &str) -> Result<Value, Error> {
    let bad = || {
        Error::internal(format!(
            "the saved read position `{text}` is not a timestamp"
        ))
    };
    let num = |range: std::ops::Range<usize>| -> Result<u64, Error> {
        text.get(range)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(bad)
    };
    if text.len() != 27 {
        return Err(bad());
    }
    Ok(
        json!({"__class__": "datetime", "year": num(0..4)?, "month": num(5..7)?, "day": num(8..10)?,
        "hour": num(11..13)?, "minute": num(14..16)?, "second": num(17..19)?,
        "microsecond": num(20..26)?}),
    )
}

/// The id of a Many2One value (`12`, `{"id": 12, …}` or `null`).
pub fn id_of(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.get("id").and_then(Value::as_u64))
}

/// Text of a field, trimmed; `None` when absent or empty.
pub fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn b64(v: &Value) -> String {
    URL_SAFE.encode(v.to_string())
}

/// A search: domain, order, fields, limit.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    /// Model, e.g. `party.party`.
    pub model: &'a str,
    /// Tryton domain (a JSON list).
    pub domain: Value,
    /// Fields to read (`f`), dotted paths allowed.
    pub fields: &'a [&'a str],
    /// Order, e.g. `[["last_modified_at", "ASC"], ["id", "ASC"]]`.
    pub order: Option<Value>,
    /// Maximum number of records.
    pub limit: Option<u32>,
}

impl Config {
    /// `{base_url}/rest/model/{path}`, once the config is usable.
    fn url(&self, path: &str) -> Result<String, Error> {
        let base = self.base_url.trim_end_matches('/');
        let Some(rest) = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
        else {
            return Err(Error::config(format!(
                "field `base_url`: `{}` is not an http(s) URL",
                self.base_url
            )));
        };
        if !rest.contains('/') {
            return Err(Error::config(format!(
                "field `base_url`: `{}` names no database; add it as the path, e.g. http://127.0.0.1:8000/tryton",
                self.base_url
            )));
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(Error::config(
                "field `page_size`: must be between 1 and 1000",
            ));
        }
        Ok(format!("{base}/rest/model/{path}"))
    }

    /// A request with the key, the company context and the timeout.
    /// Reads see archived records too (`active_test`), so that a product
    /// made inactive in Tryton reaches the destination as inactive.
    fn request(&self, make: fn(String) -> Request, path: &str) -> Result<Request, Error> {
        let context = json!({"company": self.company, "active_test": false,
            "_skip_warnings": self.skip_warnings});
        let mut r = make(self.url(path)?)
            .bearer_secret(KEY_SECRET)
            .header("X-Tryton-Context", b64(&context))
            .header("Accept", "application/json");
        if let Some(ms) = self.timeout_ms {
            r = r.timeout_ms(ms);
        }
        Ok(r)
    }

    /// [`answer`], except that a 404 is first told apart: Tryton answers
    /// 404 for a database it does not have (before it looks at the key),
    /// which without this would read as a missing record or company.
    fn answer(&self, response: Response, model: &str) -> Result<Value, Error> {
        if response.status == 404 && self.database_missing() {
            return Err(self.no_database());
        }
        answer(response, model)
    }

    /// Whether Tryton has no database at `base_url`'s path: a request
    /// without the key gets 401 from a database that exists, 404 from one
    /// that does not.
    fn database_missing(&self) -> bool {
        let Ok(url) = self.url("company.company") else {
            return false;
        };
        let mut probe = Request::get(url).header("Accept", "application/json");
        if let Some(ms) = self.timeout_ms {
            probe = probe.timeout_ms(ms);
        }
        matches!(probe.send(), Ok(r) if r.status == 404)
    }

    fn no_database(&self) -> Error {
        let base = self.base_url.trim_end_matches('/');
        let (origin, database) = base
            .strip_prefix("https://")
            .map(|r| ("https://", r))
            .or_else(|| base.strip_prefix("http://").map(|r| ("http://", r)))
            .and_then(|(scheme, rest)| {
                rest.split_once('/')
                    .map(|(host, db)| (format!("{scheme}{host}"), db.to_string()))
            })
            .unwrap_or_else(|| (base.to_string(), String::new()));
        Error::config(format!(
            "field `base_url`: Tryton at {origin} has no database `{database}` (HTTP 404 for {base}); \
             the URL's path must be the name of the Tryton database, e.g. {origin}/tryton"
        ))
    }

    /// Records matching a search.
    pub fn search(&self, s: &Search<'_>) -> Result<Vec<Value>, Error> {
        let mut req = self
            .request(Request::get, s.model)?
            .query("d", b64(&s.domain));
        for f in s.fields {
            req = req.query("f", *f);
        }
        if let Some(order) = &s.order {
            req = req.query("o", b64(order));
        }
        if let Some(limit) = s.limit {
            req = req.query("s", limit.to_string());
        }
        let body = self.answer(req.send()?, s.model)?;
        match body {
            Value::Array(rows) => Ok(rows),
            other => Err(Error::internal(format!(
                "Tryton answered a search of {} with {other}",
                s.model
            ))),
        }
    }

    /// One record by id, with these fields.
    pub fn get(&self, model: &str, id: u64, fields: &[&str]) -> Result<Value, Error> {
        let mut req = self.request(Request::get, &format!("{model}/{id}"))?;
        for f in fields {
            req = req.query("f", *f);
        }
        self.answer(req.send()?, model)
    }

    /// Creates a record; its id.
    pub fn create(&self, model: &str, values: &Value) -> Result<u64, Error> {
        let req = self
            .request(Request::post, model)?
            .query("f", "id")
            .json(values)?;
        let body = self.answer(req.send()?, model)?;
        id_of(&body).ok_or_else(|| {
            Error::internal(format!(
                "Tryton answered the create of a {model} without id"
            ))
        })
    }

    /// Writes `values` to record `id`.
    pub fn update(&self, model: &str, id: u64, values: &Value) -> Result<(), Error> {
        let req = self
            .request(Request::put, &format!("{model}/{id}"))?
            .query("f", "id")
            .json(values)?;
        self.answer(req.send()?, model).map(drop)
    }

    /// Deletes record `id`.
    pub fn delete(&self, model: &str, id: u64) -> Result<(), Error> {
        let req = self.request(Request::delete, &format!("{model}/{id}"))?;
        self.answer(req.send()?, model).map(drop)
    }

    /// Calls a button or RPC method on record `id`, e.g. `post`.
    pub fn action(&self, model: &str, id: u64, action: &str) -> Result<(), Error> {
        let req = self
            .request(Request::post, &format!("{model}/{id}/{action}"))?
            .json(&json!({}))?;
        self.answer(req.send()?, model).map(drop)
    }
}

/// A response's JSON, or the error it means. Tryton answers a user error
/// (validation, a refused transition, a warning) with 400 and
/// `{"message": …, "description": …}`: that record is rejected with
/// Tryton's own words.
fn answer(response: Response, model: &str) -> Result<Value, Error> {
    if response.status == 204 {
        return Ok(Value::Null);
    }
    if response.status == 400 {
        let body: Value = response.json().unwrap_or(Value::Null);
        if let Some(message) = body.get("message").and_then(Value::as_str) {
            let description = body
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let detail = if description.is_empty() {
                message.to_string()
            } else {
                format!("{message} ({description})")
            };
            return Err(Error::rejected(format!(
                "Tryton refused ({model}): {detail}"
            )));
        }
        return Err(Error::rejected(format!(
            "Tryton refused a request on {model}: HTTP 400 {}",
            response.text().chars().take(200).collect::<String>()
        )));
    }
    if response.status == 401 {
        return Err(Error::Auth(
            "Tryton refused the application key (HTTP 401): check that the key is validated \
             for the REST API and belongs to an active user"
                .into(),
        ));
    }
    let response = response.error_for_status()?;
    if response.body.is_empty() {
        return Ok(Value::Null);
    }
    response.json()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_sort() {
        let v = json!({"__class__": "datetime", "year": 2026, "month": 11, "day": 28,
            "hour": 7, "minute": 5, "second": 9, "microsecond": 3258});
        let t = stamp(&v).unwrap();
        assert_eq!(t, "2026-11-28T07:05:09.003258Z");
        assert_eq!(datetime(&t).unwrap(), v);
        assert!(datetime("2026-11-28").is_err());
        let d = json!({"__class__": "date", "year": 2026, "month": 1, "day": 2});
        assert_eq!(stamp(&d).unwrap(), "2026-01-02");
    }

    #[test]
    fn decimals_from_every_form() {
        assert_eq!(
            dec(&json!({"__class__": "Decimal", "decimal": "12.5000"})).unwrap(),
            "12.5".parse::<Decimal>().unwrap()
        );
        assert_eq!(dec(&json!(2.0)).unwrap(), Decimal::from(2));
        assert_eq!(dec(&json!(0.5)).unwrap(), "0.5".parse::<Decimal>().unwrap());
        assert_eq!(dec(&Value::Null).unwrap(), Decimal::ZERO);
        assert_eq!(
            decimal("10.50".parse().unwrap()),
            json!({"__class__": "Decimal", "decimal": "10.5"})
        );
        assert_eq!(float("1.5".parse().unwrap()).unwrap(), json!(1.5));
    }
}
