//! hledger-web's JSON API (checked against hledger-web 1.25): the
//! transaction shape of `GET /transactions` and `PUT /add`, and the
//! transaction codes that carry Nexo's document ids and revisions.

use nexo_sdk::prelude::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Config;
use crate::entry::{Entry, Posting};

/// Prefix of every transaction code Nexo writes.
pub const CODE_PREFIX: &str = "nexo:";

/// A parsed Nexo transaction code: `nexo:<doc>/<revision>` for a posted
/// version, `nexo:<doc>/<revision>-reversed` for its reversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The document id (the idempotency key of its first write), decoded.
    pub doc: String,
    /// 1 for the first version, then 2, 3…
    pub revision: u32,
    /// Whether this transaction reverses that revision.
    pub reversal: bool,
}

impl Code {
    /// The code text: the document id percent-encoded so that it holds no
    /// `/`, `)`, space or line break.
    pub fn render(&self) -> String {
        let suffix = if self.reversal { "-reversed" } else { "" };
        format!(
            "{CODE_PREFIX}{}/{}{suffix}",
            encode_id(&self.doc),
            self.revision
        )
    }

    /// Parse a transaction code; `None` if it is not a Nexo code.
    pub fn parse(code: &str) -> Option<Code> {
        let rest = code.trim().strip_prefix(CODE_PREFIX)?;
        let (doc, rev) = rest.rsplit_once('/')?;
        let (rev, reversal) = match rev.strip_suffix("-reversed") {
            Some(r) => (r, true),
            None => (rev, false),
        };
        let revision: u32 = rev.parse().ok().filter(|r| *r > 0)?;
        Some(Code {
            doc: decode_id(doc)?,
            revision,
            reversal,
        })
    }
}

fn encode_id(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode_id(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A transaction as `GET /transactions` returns it (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct Transaction {
    /// Position in the journal, from 1.
    #[serde(default)]
    pub tindex: i64,
    /// `YYYY-MM-DD`.
    pub tdate: String,
    /// The code between parentheses, `""` if none.
    #[serde(default)]
    pub tcode: String,
    /// Description (payee | note).
    #[serde(default)]
    pub tdescription: String,
    /// The transaction comment, lines joined with `\n`.
    #[serde(default)]
    pub tcomment: String,
    /// Tags parsed from the comment.
    #[serde(default)]
    pub ttags: Vec<(String, String)>,
    /// The postings.
    #[serde(default)]
    pub tpostings: Vec<JsonPosting>,
}

/// A posting of a [`Transaction`].
#[derive(Debug, Clone, Deserialize)]
pub struct JsonPosting {
    /// Account name.
    pub paccount: String,
    /// Amounts, one per commodity.
    #[serde(default)]
    pub pamount: Vec<JsonAmount>,
    /// Posting comment.
    #[serde(default)]
    pub pcomment: String,
}

/// An amount of a [`JsonPosting`].
#[derive(Debug, Clone, Deserialize)]
pub struct JsonAmount {
    /// Commodity symbol.
    #[serde(default)]
    pub acommodity: String,
    /// The exact quantity.
    pub aquantity: Quantity,
}

/// hledger's exact decimal: `decimalMantissa × 10^-decimalPlaces`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quantity {
    /// The digits, as an integer.
    pub decimal_mantissa: i128,
    /// How many of them are decimals.
    pub decimal_places: u32,
}

impl Quantity {
    /// As a `Decimal`, when it fits (28 decimals at most).
    pub fn to_decimal(&self) -> Option<Decimal> {
        Decimal::try_from_i128_with_scale(self.decimal_mantissa, self.decimal_places).ok()
    }

    /// As decimal text, exact whatever its size.
    pub fn to_text(&self) -> String {
        let negative = self.decimal_mantissa < 0;
        let digits = self.decimal_mantissa.unsigned_abs().to_string();
        let places = self.decimal_places as usize;
        let padded = if digits.len() <= places {
            format!("{}{digits}", "0".repeat(places + 1 - digits.len()))
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - places);
        let sign = if negative { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    }
}

impl Transaction {
    /// The value of tag `name`, if present.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.ttags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The Nexo code, if the transaction has one.
    pub fn code(&self) -> Option<Code> {
        Code::parse(&self.tcode)
    }

    /// The transaction as an [`Entry`], when every posting has exactly one
    /// amount that fits a `Decimal` (always the case for Nexo's own).
    pub fn to_entry(&self) -> Option<Entry> {
        let postings = self
            .tpostings
            .iter()
            .map(|p| match p.pamount.as_slice() {
                [a] => Some(Posting {
                    account: p.paccount.clone(),
                    amount: a.aquantity.to_decimal()?,
                    commodity: a.acommodity.clone(),
                    comment: p.pcomment.trim().to_string(),
                }),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Entry {
            date: self.tdate.clone(),
            description: self.tdescription.trim().to_string(),
            tags: self.ttags.clone(),
            postings,
        })
    }
}

/// Every transaction of the journal, in journal order.
pub fn fetch(config: &Config) -> Result<Vec<Transaction>, Error> {
    config
        .request(Request::get, "/transactions")?
        .header("accept", "application/json")
        .send()?
        .error_for_status()?
        .json()
}

/// The body `PUT /add` takes for `entry` with `code`. hledger-web 1.25 needs
/// every field of its `Transaction` type, even those it recomputes.
pub fn add_body(entry: &Entry, code: &str) -> Result<Value, Error> {
    let postings = entry
        .postings
        .iter()
        .map(|p| {
            let (mantissa, places) = mantissa(p.amount)?;
            Ok(json!({
                "paccount": p.account,
                "pamount": [{
                    "acommodity": p.commodity,
                    "aprice": null,
                    "aquantity": {
                        "decimalMantissa": mantissa,
                        "decimalPlaces": places,
                        "floatingPoint": p.amount.to_string().parse::<f64>().unwrap_or(0.0),
                    },
                    "astyle": {
                        "ascommodityside": "L",
                        "ascommodityspaced": true,
                        "asdecimalpoint": ".",
                        "asdigitgroups": null,
                        "asprecision": places,
                    },
                }],
                "pbalanceassertion": null,
                "pcomment": if p.comment.is_empty() { String::new() } else { format!("{}\n", p.comment) },
                "pdate": null,
                "pdate2": null,
                "poriginal": null,
                "pstatus": "Unmarked",
                "ptags": [],
                "ptransaction_": "0",
                "ptype": "RegularPosting",
            }))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let comment: String = entry
        .tags
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect();
    let position = json!({"sourceColumn": 1, "sourceLine": 1, "sourceName": ""});
    Ok(json!({
        "tcode": code,
        "tcomment": comment,
        "tdate": entry.date,
        "tdate2": null,
        "tdescription": entry.description,
        "tindex": 0,
        "tpostings": postings,
        "tprecedingcomment": "",
        "tsourcepos": [position.clone(), position],
        "tstatus": "Unmarked",
        "ttags": [],
    }))
}

/// The amount as hledger's (mantissa, places); JSON integers beyond 64 bits
/// are not portable, so a longer mantissa is shortened by dropping trailing
/// zeros, or refused.
fn mantissa(amount: Decimal) -> Result<(i64, u32), Error> {
    for d in [amount, amount.normalize()] {
        if let Ok(m) = i64::try_from(d.mantissa()) {
            return Ok((m, d.scale()));
        }
    }
    Err(Error::rejected(format!(
        "amount {amount} has too many digits for hledger-web's JSON"
    )))
}

/// Pause before an add; see [`add`].
const SETTLE_MS: u64 = 20;

/// Append `entry` with `code` to the journal.
///
/// hledger-web 1.25 reloads the journal on a request when the file's
/// modification time is later than the time it last read it, but file
/// times advance in coarse ticks: an add landing in the same tick as a
/// reload leaves hledger-web serving the old journal until the file changes
/// again (measured here: 17 stale reads in 60 add-after-read pairs), and a
/// stale `GET /transactions` would make the next write add duplicates. So
/// each add first makes hledger-web reload (`GET /accountnames` reads the
/// journal), then waits a few ticks, and only then appends: its file time
/// is then always after the last reload (0 stale reads in 100 batches).
pub fn add(config: &Config, entry: &Entry, code: &str) -> Result<(), Error> {
    config
        .request(Request::get, "/accountnames")?
        .send()?
        .error_for_status()?;
    std::thread::sleep(std::time::Duration::from_millis(SETTLE_MS));
    let response = config
        .request(Request::put, "/add")?
        .json(&add_body(entry, code)?)?
        .send()?;
    match response.status {
        200..=299 => Ok(()),
        403 | 405 => Err(Error::AccessDenied(format!(
            "hledger-web refused to add transaction {code} (HTTP {}): start it with the \
             `add` capability (`--capabilities=view,add`, the default)",
            response.status
        ))),
        _ => response
            .error_for_status()
            .map(|_| ())
            .map_err(|e| match e {
                Error::Rejected(m) => Error::Rejected(format!("transaction {code}: {m}")),
                other => other,
            }),
    }
}

/// Checks that hledger-web serves every code in `added` (see [`add`]). If
/// not, the next write could not see them and would add them again, so the
/// error is not one the host retries: a person makes hledger-web reload
/// (restart it, or touch the journal file) first.
pub fn confirm(config: &Config, added: &[String]) -> Result<(), Error> {
    if added.is_empty() {
        return Ok(());
    }
    let served = fetch(config)?;
    let missing: Vec<&str> = added
        .iter()
        .filter(|code| !served.iter().any(|t| t.tcode.trim() == code.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::internal(format!(
        "hledger-web accepted transactions {} but does not serve them yet (it has not \
         reloaded the journal file); restart hledger-web or touch the journal before \
         retrying, or the retry would add them twice",
        missing.join(", ")
    )))
}

/// One transaction of the `transactions` stream.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LedgerTransaction {
    /// The Nexo code when Nexo wrote it, else `t<position>`.
    pub id: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The transaction code, `""` if none.
    pub code: String,
    /// Description (payee | note).
    pub description: String,
    /// The comment.
    pub comment: String,
    /// The postings.
    pub postings: Vec<LedgerPosting>,
    /// For a Nexo transaction: the document id it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nexo_document: Option<String>,
    /// For a Nexo transaction: the document's revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nexo_revision: Option<u32>,
    /// For a Nexo transaction: whether it reverses that revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nexo_reversal: Option<bool>,
}

/// One posting of a [`LedgerTransaction`]: one amount in one commodity.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LedgerPosting {
    /// Account name.
    pub account: String,
    /// Exact amount as decimal text; positive is a debit.
    pub amount: String,
    /// Commodity symbol.
    pub commodity: String,
    /// Posting comment.
    pub comment: String,
}

impl From<&Transaction> for LedgerTransaction {
    fn from(t: &Transaction) -> Self {
        let code = t.code();
        LedgerTransaction {
            id: if code.is_some() {
                t.tcode.trim().to_string()
            } else {
                format!("t{}", t.tindex)
            },
            date: t.tdate.clone(),
            code: t.tcode.clone(),
            description: t.tdescription.clone(),
            comment: t.tcomment.trim_end().to_string(),
            postings: t
                .tpostings
                .iter()
                .flat_map(|p| {
                    p.pamount.iter().map(|a| LedgerPosting {
                        account: p.paccount.clone(),
                        amount: a.aquantity.to_text(),
                        commodity: a.acommodity.clone(),
                        comment: p.pcomment.trim_end().to_string(),
                    })
                })
                .collect(),
            nexo_document: code.as_ref().map(|c| c.doc.clone()),
            nexo_revision: code.as_ref().map(|c| c.revision),
            nexo_reversal: code.as_ref().map(|c| c.reversal),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_any_key() {
        for (doc, revision, reversal) in [
            ("9f2c", 1, false),
            ("a/b) c%", 12, true),
            ("pipe:crm:42", 3, false),
        ] {
            let code = Code {
                doc: doc.into(),
                revision,
                reversal,
            };
            let text = code.render();
            assert!(!text.contains(')') && !text.contains(' '), "{text}");
            assert_eq!(Code::parse(&text), Some(code));
        }
        assert_eq!(Code::parse("INV-1"), None);
        assert_eq!(Code::parse("nexo:abc/0"), None);
        assert_eq!(Code::parse("nexo:abc/x"), None);
        assert_eq!(
            Code {
                doc: "k".into(),
                revision: 2,
                reversal: true
            }
            .render(),
            "nexo:k/2-reversed"
        );
    }

    #[test]
    fn quantities_print_exactly() {
        let q = |m, p| Quantity {
            decimal_mantissa: m,
            decimal_places: p,
        };
        assert_eq!(q(2400, 2).to_text(), "24.00");
        assert_eq!(q(-5, 3).to_text(), "-0.005");
        assert_eq!(q(7, 0).to_text(), "7");
        assert_eq!(q(-2000, 2).to_decimal(), Some("-20.00".parse().unwrap()));
    }

    #[test]
    fn add_body_carries_exact_amounts() {
        let entry = Entry {
            date: "2024-03-01".into(),
            description: "x".into(),
            tags: vec![("nexo-kind".into(), "invoice".into())],
            postings: vec![Posting {
                account: "a".into(),
                amount: "-20.50".parse().unwrap(),
                commodity: "EUR".into(),
                comment: String::new(),
            }],
        };
        let body = add_body(&entry, "nexo:k/1").unwrap();
        let q = &body["tpostings"][0]["pamount"][0]["aquantity"];
        assert_eq!(q["decimalMantissa"], -2050);
        assert_eq!(q["decimalPlaces"], 2);
        assert_eq!(body["tcomment"], "nexo-kind: invoice\n");
    }
}
