//! Matching the records a source holds against those a destination
//! already has, before the first sync creates anything: keys tried in
//! order of trust, each an index over the destination (blocking), never
//! all pairs. A record gets one of three answers:
//!
//! - **sure**: one destination record, found by a key that nothing more
//!   trusted contradicts and that no other source record also claims —
//!   link it;
//! - **uncertain**: candidates a person must look at (two records under
//!   one key, a key contradicted by a more trusted one, a fuzzy name) —
//!   hold the record for review;
//! - **none**: nothing like it — create it, as today.
//!
//! The answer depends only on the records, never on the order they come
//! in or on hashing: candidates are sorted, ties broken by id.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::normalize::Normalizer;

/// One key: fields normalised and joined (exact), or one field compared
/// by similarity (fuzzy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Its name in reports (`tax-id`, `email`, `name+country`…).
    pub name: String,
    /// `(field, normaliser)`: every one must be present on both sides.
    pub fields: Vec<(String, Normalizer)>,
    /// Compare the (single) field by Jaro-Winkler similarity, at least
    /// this high, instead of exactly. A fuzzy match is never sure.
    #[serde(default)]
    pub fuzzy: Option<f64>,
}

impl Key {
    fn exact(name: &str, fields: &[(&str, Normalizer)]) -> Key {
        Key {
            name: name.into(),
            fields: fields.iter().map(|(f, n)| (f.to_string(), *n)).collect(),
            fuzzy: None,
        }
    }

    /// The key's value of `record`: each field normalised, joined by `|`;
    /// none when a field is missing or says nothing.
    fn value(&self, record: &Record) -> Option<String> {
        let mut parts = Vec::with_capacity(self.fields.len());
        for (field, norm) in &self.fields {
            parts.push(norm.apply(record.get(field)?)?);
        }
        Some(parts.join("|"))
    }
}

/// The keys for customers, in order of trust.
pub fn customer_keys(fuzzy: f64) -> Vec<Key> {
    use Normalizer::*;
    vec![
        Key::exact("tax-id", &[("tax_id", TaxId)]),
        Key::exact("email", &[("email", Email)]),
        Key::exact("phone", &[("phone", Phone)]),
        Key::exact("name+country", &[("name", Name), ("country", Text)]),
        Key {
            name: "fuzzy-name".into(),
            fields: vec![("name".into(), Name)],
            fuzzy: Some(fuzzy),
        },
    ]
}

/// The keys for products: the SKU, then the name.
pub fn product_keys() -> Vec<Key> {
    use Normalizer::*;
    vec![
        Key::exact("sku", &[("sku", Code)]),
        Key::exact("name", &[("name", Name)]),
    ]
}

/// The keys for invoices: the number, then customer, date and total.
pub fn invoice_keys() -> Vec<Key> {
    use Normalizer::*;
    vec![
        Key::exact("number", &[("number", Code)]),
        Key::exact(
            "customer+date+total",
            &[("customer", Name), ("date", Date), ("total", Amount)],
        ),
    ]
}

/// A record as matching sees it: its id and its fields' text.
pub type Record = BTreeMap<String, String>;

/// A destination record a source record may be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The destination record's id.
    pub id: String,
    /// The key that found it.
    pub key: String,
    /// 1.0 for an exact key, the similarity for a fuzzy one.
    pub score: f64,
}

/// What matching says of one source record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// This destination record, by this key.
    Sure(Candidate),
    /// These candidates (best first) need a person; `why` says why.
    Uncertain {
        /// Best first.
        candidates: Vec<Candidate>,
        /// Why it is not sure.
        why: String,
    },
    /// Nothing like it: create it.
    None,
}

/// The verdict of every source record, by source id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Matches {
    /// By source id.
    pub verdicts: BTreeMap<String, Verdict>,
}

impl Matches {
    /// How many are sure, uncertain and unmatched.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for v in self.verdicts.values() {
            match v {
                Verdict::Sure(_) => c.0 += 1,
                Verdict::Uncertain { .. } => c.1 += 1,
                Verdict::None => c.2 += 1,
            }
        }
        c
    }
}

/// Candidates past this many under one fuzzy block are not compared (a
/// block that large says the blocking key is useless, not that all are
/// alike).
const MAX_BLOCK: usize = 2_000;

/// An index of the destination for one key.
enum Index {
    /// Value → destination positions.
    Exact(HashMap<String, Vec<usize>>),
    /// Block ([`blocks_of`]) → `(position, value)`: similar names share
    /// one of them far more often than not.
    Fuzzy(HashMap<String, Vec<(usize, String)>>),
}

/// The blocks of a value: the first three letters of its first word, and
/// its last word — a typo rarely hits both.
pub(crate) fn blocks_of(value: &str) -> Vec<String> {
    let first: String = value.chars().take(3).collect();
    let last = value.rsplit(' ').next().unwrap_or("");
    vec![format!("^{first}"), format!("{last}$")]
}

/// Match every source record against the destination's records by `keys`
/// (most trusted first).
pub fn match_records(
    keys: &[Key],
    source: &[(String, Record)],
    destination: &[(String, Record)],
) -> Matches {
    // Sorted by id, so every later step is deterministic.
    let mut dest: Vec<&(String, Record)> = destination.iter().collect();
    dest.sort_by(|a, b| a.0.cmp(&b.0));
    let indexes: Vec<Index> = keys
        .iter()
        .map(|k| {
            if k.fuzzy.is_some() {
                let mut m: HashMap<String, Vec<(usize, String)>> = HashMap::new();
                for (i, (_, r)) in dest.iter().enumerate() {
                    if let Some(v) = k.value(r) {
                        for b in blocks_of(&v) {
                            m.entry(b).or_default().push((i, v.clone()));
                        }
                    }
                }
                Index::Fuzzy(m)
            } else {
                let mut m: HashMap<String, Vec<usize>> = HashMap::new();
                for (i, (_, r)) in dest.iter().enumerate() {
                    if let Some(v) = k.value(r) {
                        m.entry(v).or_default().push(i);
                    }
                }
                Index::Exact(m)
            }
        })
        .collect();

    let mut verdicts = BTreeMap::new();
    for (id, record) in source {
        verdicts.insert(id.clone(), judge(keys, &indexes, &dest, record));
    }
    // One destination record, one source record: a destination record two
    // source records are sure of is a question for a person.
    let mut claims: HashMap<&str, Vec<String>> = HashMap::new();
    for (id, v) in &verdicts {
        if let Verdict::Sure(c) = v {
            claims.entry(c.id.as_str()).or_default().push(id.clone());
        }
    }
    // Source records that agree on every key are one party read twice
    // (two deals of one company): they may share the record they match.
    let by_id: HashMap<&str, &Record> = source.iter().map(|(id, r)| (id.as_str(), r)).collect();
    let same_party = |ids: &[String]| {
        let values = |id: &String| {
            by_id
                .get(id.as_str())
                .map(|r| keys.iter().map(|k| k.value(r)).collect::<Vec<_>>())
        };
        let first = ids.first().and_then(values);
        ids.iter().all(|id| values(id) == first)
    };
    let contested: Vec<(String, Candidate)> = claims
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1 && !same_party(ids))
        .flat_map(|(_, ids)| ids)
        .filter_map(|id| match verdicts.get(&id) {
            Some(Verdict::Sure(c)) => Some((id, c.clone())),
            _ => None,
        })
        .collect();
    for (id, c) in contested {
        verdicts.insert(
            id,
            Verdict::Uncertain {
                why: format!(
                    "destination record {} is also the {} match of another source record",
                    c.id, c.key
                ),
                candidates: vec![c],
            },
        );
    }
    Matches { verdicts }
}

fn judge(keys: &[Key], indexes: &[Index], dest: &[&(String, Record)], record: &Record) -> Verdict {
    for (k, (key, index)) in keys.iter().zip(indexes).enumerate() {
        let Some(value) = key.value(record) else {
            continue;
        };
        // `(destination position, candidate)`.
        let found: Vec<(usize, Candidate)> = match index {
            Index::Exact(m) => m
                .get(&value)
                .map(|hits| {
                    hits.iter()
                        .map(|&i| {
                            let c = Candidate {
                                id: dest[i].0.clone(),
                                key: key.name.clone(),
                                score: 1.0,
                            };
                            (i, c)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Index::Fuzzy(m) => {
                let threshold = key.fuzzy.unwrap_or(1.0);
                let mut seen = std::collections::HashSet::new();
                let mut hits: Vec<(usize, Candidate)> = blocks_of(&value)
                    .iter()
                    .filter_map(|b| m.get(b))
                    .filter(|block| block.len() <= MAX_BLOCK)
                    .flatten()
                    .filter(|(i, _)| seen.insert(*i))
                    .filter(|(_, v)| !super::normalize::numbers_differ(&value, v))
                    .filter_map(|(i, v)| {
                        let score = strsim::jaro_winkler(&value, v);
                        (score >= threshold).then(|| {
                            let c = Candidate {
                                id: dest[*i].0.clone(),
                                key: key.name.clone(),
                                score,
                            };
                            (*i, c)
                        })
                    })
                    .collect();
                hits.sort_by(|(_, a), (_, b)| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
                hits.truncate(5);
                hits
            }
        };
        let (positions, candidates): (Vec<usize>, Vec<Candidate>) = found.into_iter().unzip();
        let (Some(&first), Some(candidate)) = (positions.first(), candidates.first()) else {
            continue;
        };
        if key.fuzzy.is_some() {
            return Verdict::Uncertain {
                why: format!("only a similar name ({})", key.name),
                candidates,
            };
        }
        if candidates.len() > 1 {
            return Verdict::Uncertain {
                why: format!(
                    "{} destination records share this {}",
                    candidates.len(),
                    key.name
                ),
                candidates,
            };
        }
        // One candidate: sure unless a more trusted key, present on both
        // sides, says they differ (a namesake with another e-mail).
        let other = &dest[first].1;
        let candidate = candidate.clone();
        let contradicted = keys[..k].iter().find(|stronger| {
            stronger.fuzzy.is_none()
                && matches!(
                    (stronger.value(record), stronger.value(other)),
                    (Some(a), Some(b)) if a != b
                )
        });
        return match contradicted {
            Some(stronger) => Verdict::Uncertain {
                why: format!("the {} agrees but the {} differs", key.name, stronger.name),
                candidates,
            },
            None => Verdict::Sure(candidate),
        };
    }
    Verdict::None
}
