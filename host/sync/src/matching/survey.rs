//! What a system holds, before anything is synced to or from it (`nexo
//! survey`): how many records, how full each field is and in which
//! formats (e-mails, phones, tax ids, currencies, dates, numbers), and the
//! records that are likely the same customer twice *inside* the system —
//! by the same normalisation matching uses, so what the survey calls a
//! duplicate is what matching would call one. Pure: records in, a report
//! out.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::normalize::{self, Normalizer};

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `a@b.c`.
    Email,
    /// Seven or more digits with phone punctuation.
    Phone,
    /// A VAT-like id: a country prefix and digits.
    TaxId,
    /// A three-letter upper-case currency code.
    Currency,
    /// `YYYY-MM-DD…`.
    Date,
    /// A number.
    Number,
    /// `true` / `false`.
    Boolean,
    /// Anything else.
    Text,
}

/// One field of a stream's records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldProfile {
    /// Its path (`properties.email` for nested objects).
    pub field: String,
    /// Records where it holds a value (not absent, null or blank).
    pub filled: u64,
    /// `filled` / records, 0–1.
    pub fill_rate: f64,
    /// How many of its values look like each format, most first.
    pub formats: Vec<(Format, u64)>,
}

/// Records that are likely one and the same.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateGroup {
    /// By what: `email`, `tax-id`, `phone`, `name`, `similar-name`.
    pub by: String,
    /// The shared value, normalised (or the first record's name, for a
    /// similar name).
    pub value: String,
    /// The records' ids, sorted.
    pub ids: Vec<String>,
}

/// What one stream holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamSurvey {
    /// The stream.
    pub stream: String,
    /// Records read.
    pub records: u64,
    /// Every field seen, by path.
    pub fields: Vec<FieldProfile>,
    /// Likely duplicates inside the stream.
    pub duplicates: Vec<DuplicateGroup>,
}

/// The format of one value.
pub fn format_of(value: &str) -> Format {
    let v = value.trim();
    if v == "true" || v == "false" {
        return Format::Boolean;
    }
    if normalize::date(v).is_some() {
        return Format::Date;
    }
    if v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase()) {
        return Format::Currency;
    }
    if v.contains('@') && v.contains('.') && !v.contains(' ') {
        return Format::Email;
    }
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let phone_chars = v
        .bytes()
        .all(|b| b.is_ascii_digit() || b" +-()./".contains(&b));
    // E.164: at most 15 digits (a UUID of digits and dashes is not a phone).
    if phone_chars
        && (7..=15).contains(&digits)
        && (v.starts_with('+') || v.starts_with('0') || v.contains(' '))
    {
        return Format::Phone;
    }
    if v.parse::<f64>().is_ok() {
        return Format::Number;
    }
    let b = v.as_bytes();
    if b.len() >= 8
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_uppercase()
        && b[2..].iter().filter(|c| c.is_ascii_digit()).count() >= 6
        && !v.contains(' ')
    {
        return Format::TaxId;
    }
    Format::Text
}

/// Every leaf of `value` as `(path, text)`; arrays are kept as JSON text.
fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) if s.trim().is_empty() => {}
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Which field of the records plays a part, by its name and then by what
/// its values look like.
fn role_field(fields: &[FieldProfile], names: &[&str], format: Option<Format>) -> Option<String> {
    let last = |f: &str| f.rsplit('.').next().unwrap_or(f).to_ascii_lowercase();
    fields
        .iter()
        .find(|f| names.iter().any(|n| last(&f.field) == *n))
        .or_else(|| {
            let format = format?;
            fields
                .iter()
                .filter(|f| f.formats.first().is_some_and(|(fmt, _)| *fmt == format))
                .max_by_key(|f| f.filled)
        })
        .map(|f| f.field.clone())
}

/// A person's name from first and last name fields, put in each record
/// under a field of its own; the name of that field.
fn person_name(
    fields: &[FieldProfile],
    flat: &mut [(String, BTreeMap<String, String>)],
) -> Option<String> {
    let first = role_field(fields, &["first_name", "firstname", "given_name"], None)?;
    let last = role_field(fields, &["last_name", "lastname", "family_name"], None)?;
    const FULL: &str = "(first and last name)";
    for (_, f) in flat.iter_mut() {
        let full = [f.get(&first), f.get(&last)]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        if !full.is_empty() {
            f.insert(FULL.into(), full);
        }
    }
    Some(FULL.into())
}

/// Survey one stream's records (`(id, payload)`). Similar names are
/// grouped at Jaro-Winkler `similar` or above (within blocks of the first
/// word, never all pairs).
pub fn survey(stream: &str, records: &[(String, Value)], similar: f64) -> StreamSurvey {
    let mut flat: Vec<(String, BTreeMap<String, String>)> = Vec::with_capacity(records.len());
    let mut seen: BTreeMap<String, (u64, HashMap<Format, u64>)> = BTreeMap::new();
    for (id, payload) in records {
        let mut leaf = Vec::new();
        leaves("", payload, &mut leaf);
        for (path, text) in &leaf {
            let entry = seen.entry(path.clone()).or_default();
            entry.0 += 1;
            *entry.1.entry(format_of(text)).or_default() += 1;
        }
        flat.push((id.clone(), leaf.into_iter().collect()));
    }
    let n = records.len().max(1) as f64;
    let fields: Vec<FieldProfile> = seen
        .into_iter()
        .map(|(field, (filled, formats))| {
            let mut formats: Vec<(Format, u64)> = formats.into_iter().collect();
            formats.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            FieldProfile {
                field,
                filled,
                fill_rate: filled as f64 / n,
                formats,
            }
        })
        .collect();

    let email = role_field(
        &fields,
        &["email", "emailaddress", "e_mail", "mail"],
        Some(Format::Email),
    );
    let phone = role_field(
        &fields,
        &["phone", "phonenumber", "mobile", "telephone"],
        Some(Format::Phone),
    );
    let tax = role_field(
        &fields,
        &[
            "tax_id",
            "tax_number",
            "taxnumber",
            "vat",
            "vat_number",
            "taxid",
        ],
        Some(Format::TaxId),
    );
    let name = role_field(
        &fields,
        &[
            "name",
            "company",
            "company_name",
            "companyname",
            "display_name",
        ],
        None,
    )
    .or_else(|| person_name(&fields, &mut flat));

    let mut duplicates = Vec::new();
    for (by, field, norm) in [
        ("tax-id", &tax, Normalizer::TaxId),
        ("email", &email, Normalizer::Email),
        ("phone", &phone, Normalizer::Phone),
        ("name", &name, Normalizer::Name),
    ] {
        let Some(field) = field else { continue };
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, f) in &flat {
            if let Some(v) = f.get(field).and_then(|v| norm.apply(v)) {
                groups.entry(v).or_default().push(id.clone());
            }
        }
        for (value, mut ids) in groups {
            if ids.len() > 1 {
                ids.sort();
                duplicates.push(DuplicateGroup {
                    by: by.into(),
                    value,
                    ids,
                });
            }
        }
    }
    if let Some(field) = &name {
        duplicates.extend(similar_names(&flat, field, similar));
    }
    StreamSurvey {
        stream: stream.into(),
        records: records.len() as u64,
        fields,
        duplicates,
    }
}

/// Records whose (different) names are at least `similar` alike, grouped
/// (a group holds every record linked to another by such a pair), within
/// the blocks matching uses.
fn similar_names(
    flat: &[(String, BTreeMap<String, String>)],
    field: &str,
    similar: f64,
) -> Vec<DuplicateGroup> {
    let names: Vec<(String, String)> = flat
        .iter()
        .filter_map(|(id, f)| {
            let v = normalize::name(f.get(field)?)?;
            (!v.is_empty()).then(|| (v, id.clone()))
        })
        .collect();
    let mut blocks: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (v, _)) in names.iter().enumerate() {
        for b in super::matcher::blocks_of(v) {
            blocks.entry(b).or_default().push(i);
        }
    }
    // Union-find over the pairs found in any block.
    let mut parent: Vec<usize> = (0..names.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for members in blocks.values() {
        if members.len() < 2 || members.len() > 2_000 {
            continue;
        }
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                let (a, b) = (&names[i].0, &names[j].0);
                if a != b
                    && !normalize::numbers_differ(a, b)
                    && strsim::jaro_winkler(a, b) >= similar
                {
                    let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                    parent[ri.max(rj)] = ri.min(rj);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..names.len() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut out: Vec<DuplicateGroup> = groups
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|g| {
            let mut ids: Vec<String> = g.iter().map(|&i| names[i].1.clone()).collect();
            ids.sort();
            let value = g
                .iter()
                .map(|&i| names[i].0.clone())
                .min()
                .unwrap_or_default();
            DuplicateGroup {
                by: "similar-name".into(),
                value,
                ids,
            }
        })
        .collect();
    out.sort_by(|a, b| a.ids.cmp(&b.ids));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_formats_and_duplicates_inside_one_system() {
        let records = vec![
            (
                "1".into(),
                json!({"name": "ACME Trading GmbH", "email": "info@acme.de", "phone": "+49 30 1234 5678", "currency": "EUR"}),
            ),
            (
                "2".into(),
                json!({"name": "Acme Trading", "email": "INFO@acme.de", "phone": null, "currency": "EUR"}),
            ),
            (
                "3".into(),
                json!({"name": "Bright Ltd", "email": "hi@bright.co.uk", "phone": "030 12345678", "created": "2026-11-02"}),
            ),
            (
                "4".into(),
                json!({"name": "Brigth Ltd", "email": "", "phone": "020 7946 0958"}),
            ),
            (
                "5".into(),
                json!({"name": "Zephyr Labs", "properties": {"vat": "DE123456789"}}),
            ),
        ];
        let s = survey("contacts", &records, 0.9);
        assert_eq!(s.records, 5);
        let field = |f: &str| s.fields.iter().find(|x| x.field == f).unwrap();
        assert_eq!(field("email").filled, 3, "a blank e-mail is not filled");
        assert!((field("email").fill_rate - 0.6).abs() < 1e-9);
        assert_eq!(field("email").formats, vec![(Format::Email, 3)]);
        assert_eq!(field("phone").formats, vec![(Format::Phone, 3)]);
        assert_eq!(field("currency").formats, vec![(Format::Currency, 2)]);
        assert_eq!(field("created").formats, vec![(Format::Date, 1)]);
        assert_eq!(field("properties.vat").formats, vec![(Format::TaxId, 1)]);
        assert_eq!(
            format_of("00000001-0000-4000-8000-000000000042"),
            Format::Text,
            "a UUID is not a phone"
        );
        let groups: Vec<(&str, Vec<&str>)> = s
            .duplicates
            .iter()
            .map(|g| (g.by.as_str(), g.ids.iter().map(String::as_str).collect()))
            .collect();
        assert!(groups.contains(&("email", vec!["1", "2"])), "{groups:?}");
        // "+49 30 1234 5678" and "030 12345678" are one number.
        assert!(groups.contains(&("phone", vec!["1", "3"])), "{groups:?}");
        assert!(groups.contains(&("name", vec!["1", "2"])), "{groups:?}");
        assert!(
            groups.contains(&("similar-name", vec!["3", "4"])),
            "{groups:?}"
        );
        assert!(
            !groups.iter().any(|(_, ids)| ids.contains(&"5")),
            "{groups:?}"
        );
    }
}
