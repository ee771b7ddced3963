//! Nexo connector for [hledger-web](https://hledger.org)'s JSON API: canonical
//! invoices and payments become balanced, idempotent journal transactions,
//! and the journal is read back so the sync engine can track it.
//!
//! Tested against hledger-web 1.25 (Debian packages `hledger` and
//! `hledger-web`), started as
//! `hledger-web --serve-api --host 127.0.0.1 --port 5000 --file books.journal`
//! (the default capabilities `view,add` are what the connector needs).
//!
//! # API used
//!
//! - `GET /version` (check), `GET /transactions` (every transaction, as
//!   JSON; hledger-web has no filter or paging, so each write batch and each
//!   read fetches the journal once);
//! - `PUT /add` with a JSON transaction. hledger-web appends it to the
//!   journal file as given: it has no record ids, cannot edit or delete, and
//!   **accepts unbalanced transactions** (after which `hledger` refuses to
//!   load the journal). hledger-web has no authentication of its own; put it
//!   behind a proxy and grant the connector only that origin.
//!
//! # Streams
//!
//! | stream | read | write | payload |
//! |---|---|---|---|
//! | `invoices` | yes | yes | canonical [`Invoice`] |
//! | `payments` | yes | yes | canonical [`Payment`] |
//! | `transactions` | yes | no | [`LedgerTransaction`]: every journal transaction |
//!
//! # Transaction format
//!
//! An invoice (status `authorised` or `paid`) debits receivables by the
//! total and credits revenue per line (net) and tax payable by the total
//! tax; a payment debits the bank and credits receivables:
//!
//! ```text
//! 2024-03-01 (nexo:9f2c/1) c-9 | Invoice INV-1  ; nexo-kind: invoice
//!     ; nexo-doc: eyJjdXN0b21lciI6ey…
//!     assets:receivable               EUR 29.55
//!     revenue:consulting             EUR -20.00  ; Consulting (2 × 10.00, tax 20 %)
//!     revenue:sales                   EUR -5.55  ; Travel (1 × 5.55)
//!     liabilities:tax payable         EUR -4.00
//!
//! 2024-03-15 (nexo:77aa/1) Payment of invoice 9f2c | SEPA 1  ; nexo-kind: payment
//!     ; nexo-doc: eyJhbW91bnQiOiIyOS41NSIs…
//!     assets:bank                     EUR 29.55
//!     assets:receivable              EUR -29.55
//! ```
//!
//! - The **code** `nexo:<document>/<revision>` identifies the document and its
//!   version. The document id is the idempotency key of the record's first
//!   write (the host's `cursor`), percent-encoded to fit a code; it is the
//!   destination id the connector answers with.
//! - `nexo-doc` holds the record's payload (base64 JSON), so that `read`
//!   returns exactly what was written and the engine recognises its own
//!   writes; `nexo-kind` says which stream the document belongs to.
//! - Accounts come from the config: `accounts.receivable`, `.revenue`,
//!   `.tax`, `.bank`, with `account_codes` mapping a line's or payment's
//!   `account_code` to an hledger account (an unmapped code posts to the
//!   default revenue or bank account).
//! - Every transaction is checked with exact decimals before it is sent: one
//!   whose postings do not sum to zero (an invoice whose `total` is not
//!   `subtotal + total_tax`…) is answered `rejected`, naming the difference,
//!   and nothing is written for it. The canonical model's rules are checked
//!   too.
//! - Draft, submitted and voided invoices post nothing (a voided invoice
//!   that was posted is reversed).
//!
//! # Idempotency
//!
//! Before adding anything, a write reads the journal and groups Nexo's
//! transactions by document. A record whose current version is already in
//! the journal (same date, description, postings and payload) is answered
//! with its document id and nothing is added: a retried batch after a lost
//! answer, or a re-run, never duplicates a transaction.
//!
//! # Updates: reverse and re-post
//!
//! A posted transaction is never edited, by hand or by Nexo. When a document
//! changes, the connector appends a **reversal** of the version in the
//! journal, `nexo:<doc>/<n>-reversed`, dated like it and with every posting
//! negated, then the new version, `nexo:<doc>/<n+1>`. The journal keeps the
//! full audit trail and its balances, at any date, equal the latest version.
//! Each step has its own code, so a write interrupted between them is
//! completed by a retry, not repeated. A delete (or an invoice turning
//! draft/voided) appends the reversal only. (A period already closed is
//! not protected: change such a document in the source only with the
//! accountant's agreement.)
//!
//! Outcomes: `created(doc)` for a record without destination id (also on a
//! replay), `updated(doc)` when a new revision was posted, `unchanged(doc)`
//! when the journal already matched, `deleted(doc)`, or `failed(rejected)`
//! for that record alone.
//!
//! # Limits
//!
//! Two writers on one journal at the same time could both post the same
//! revision; run one pipeline per journal. hledger-web 1.25 can miss an
//! append that lands in the same file-time tick as its last reload and then
//! serve a stale journal; each add is therefore preceded by a reload request
//! and a 20 ms pause, and a write batch ends by checking that hledger-web
//! serves every transaction it added (if not, it fails with an `internal`
//! error, which the host does not retry). A transaction edited by hand in
//! the journal is not detected by `read` (its `nexo-doc` is what counts).

mod entry;
mod journal;
mod revision;

use std::collections::BTreeMap;

use nexo_sdk::model::{Invoice, Payment};
use nexo_sdk::prelude::*;
use serde::Deserialize;
use serde_json::Value;

pub use entry::{EntryError, Kind};
pub use journal::{LedgerPosting, LedgerTransaction};

use journal::{Code, Transaction};
use revision::History;

/// Configuration of an hledger-web connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of hledger-web, e.g. `http://127.0.0.1:5000`.
    pub base_url: String,
    /// Accounts the transactions post to.
    #[serde(default)]
    pub accounts: Accounts,
    /// hledger account for an `account_code` of an invoice line (revenue)
    /// or a payment (bank), e.g. `{"200": "revenue:consulting"}`. A code
    /// not listed posts to the default account.
    #[serde(default)]
    pub account_codes: BTreeMap<String, String>,
    /// Timeout of each request in milliseconds (at least 1); the host's own
    /// limit applies when absent.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

/// Default accounts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    /// Debited by an invoice's total, credited by a payment.
    #[serde(default = "default_receivable")]
    pub receivable: String,
    /// Credited by each invoice line without a mapped `account_code`.
    #[serde(default = "default_revenue")]
    pub revenue: String,
    /// Credited by an invoice's total tax.
    #[serde(default = "default_tax")]
    pub tax: String,
    /// Debited by a payment without a mapped `account_code`.
    #[serde(default = "default_bank")]
    pub bank: String,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts {
            receivable: default_receivable(),
            revenue: default_revenue(),
            tax: default_tax(),
            bank: default_bank(),
        }
    }
}

fn default_receivable() -> String {
    "assets:receivable".into()
}
fn default_revenue() -> String {
    "revenue:sales".into()
}
fn default_tax() -> String {
    "liabilities:tax payable".into()
}
fn default_bank() -> String {
    "assets:bank".into()
}

impl Config {
    /// The base URL without a trailing `/`, once the config is usable.
    fn base(&self) -> Result<&str, Error> {
        if self.timeout_ms == Some(0) {
            return Err(Error::config(
                "field `timeout_ms`: must be at least 1 (leave it out for the host's default)",
            ));
        }
        let base = self.base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::config(format!(
                "field `base_url`: `{}` is not an http(s) URL",
                self.base_url
            )));
        }
        let named = [
            ("accounts.receivable", &self.accounts.receivable),
            ("accounts.revenue", &self.accounts.revenue),
            ("accounts.tax", &self.accounts.tax),
            ("accounts.bank", &self.accounts.bank),
        ];
        let mapped = self
            .account_codes
            .iter()
            .map(|(code, account)| (code.as_str(), account));
        for (field, account) in named.into_iter().chain(mapped) {
            check_account(account)
                .map_err(|problem| Error::config(format!("account for `{field}`: {problem}")))?;
        }
        Ok(base)
    }

    /// A request to `path` with the configured timeout.
    fn request(&self, new: fn(String) -> Request, path: &str) -> Result<Request, Error> {
        let request = new(format!("{}{path}", self.base()?));
        Ok(match self.timeout_ms {
            Some(ms) => request.timeout_ms(ms),
            None => request,
        })
    }

    /// The account for `code`, or `default`.
    fn account_for(&self, code: Option<&str>, default: &str) -> String {
        code.and_then(|c| self.account_codes.get(c))
            .map_or_else(|| default.to_string(), Clone::clone)
    }
}

/// An hledger account name must fit on a posting line: two spaces or a tab
/// end the name, `;` starts a comment.
fn check_account(account: &str) -> Result<(), String> {
    if account.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if account != account.trim() || account.starts_with(':') || account.ends_with(':') {
        return Err(format!(
            "`{account}` must not start or end with a space or `:`"
        ));
    }
    if account.contains("  ") || account.chars().any(|c| c.is_control() || c == ';') {
        return Err(format!(
            "`{account}` must not contain two spaces in a row, a tab, a line break or `;`"
        ));
    }
    Ok(())
}

/// The connector.
#[derive(Debug)]
pub struct Hledger;

const TRANSACTIONS: &str = "transactions";
const STREAMS: [&str; 3] = ["invoices", "payments", TRANSACTIONS];

fn unknown_stream(stream: &str) -> Error {
    Error::unknown_stream(stream, &STREAMS)
}

impl Connector for Hledger {
    type Config = Config;

    fn spec() -> ConnectorSpec {
        // hledger-web is self-hosted: the admin names the origin on each
        // connection. A 1.0 spec() cannot say so; its any-host patterns are
        // what the manifest's `connection_origins = true` stands for.
        ConnectorSpec::new(STREAMS)
            .http_origin("https://*:*")
            .http_origin("http://*:*")
    }

    fn check(config: &Config) -> Result<(), Error> {
        let version: Value = config
            .request(Request::get, "/version")?
            .send()?
            .error_for_status()?
            .json()?;
        // Probing the journal too: a journal hledger cannot load (an
        // unbalanced entry) answers with an error here.
        journal::fetch(config)?;
        nexo_sdk::info!("connected to hledger-web {version} at {}", config.base_url);
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<StreamInfo>, Error> {
        Ok(vec![
            // The journal keeps the payload as written, except its `id`:
            // a read gives the document id there instead.
            StreamInfo::new("invoices", StreamSchema::of::<Invoice>().derived("id")).writable(),
            StreamInfo::new("payments", StreamSchema::of::<Payment>().derived("id")).writable(),
            StreamInfo::new(TRANSACTIONS, schema_of::<LedgerTransaction>()),
        ])
    }

    /// One page holding the whole stream (hledger-web has no paging); no
    /// state, so each read is a full read.
    fn read(config: &Config, stream: &str, _state: Option<&str>) -> Result<Page, Error> {
        if !STREAMS.contains(&stream) {
            return Err(unknown_stream(stream));
        }
        let transactions = journal::fetch(config)?;
        let records = match Kind::of_stream(stream) {
            None => transactions
                .iter()
                .map(|t| {
                    let t = LedgerTransaction::from(t);
                    let id = t.id.clone();
                    Record::upsert(stream, id, &t)
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(kind) => documents(&transactions, kind)?,
        };
        Ok(Page::last(records, None))
    }

    fn write(config: &Config, stream: &str, batch: Vec<Record>) -> Result<Vec<WriteResult>, Error> {
        let Some(kind) = Kind::of_stream(stream) else {
            return Err(match stream {
                TRANSACTIONS => Error::AccessDenied(
                    "stream `transactions` is read-only; write `invoices` or `payments`".into(),
                ),
                other => unknown_stream(other),
            });
        };
        config.base()?;
        let mut docs = revision::histories(&journal::fetch(config)?);
        let mut results = Vec::with_capacity(batch.len());
        let mut added = Vec::new();
        for record in batch {
            let outcome = match write_one(config, kind, &record, &mut docs, &mut added) {
                Ok(o) => o,
                // Only this record failed; anything else stops the batch and
                // the host retries it with the same keys.
                Err(Error::Rejected(m)) => WriteOutcome::Failed(Error::Rejected(format!(
                    "{stream} record (key {}): {m}",
                    record.idempotency_key().unwrap_or("none")
                ))),
                Err(e) => return Err(e),
            };
            results.push(WriteResult::new(&record.id, outcome));
        }
        journal::confirm(config, &added)?;
        Ok(results)
    }
}

/// The live documents of `kind` as records of its stream; a document whose
/// every revision is reversed is a delete.
fn documents(transactions: &[Transaction], kind: Kind) -> Result<Vec<Record>, Error> {
    let mut records = Vec::new();
    for (doc, history) in revision::histories(transactions) {
        if history.kind != Some(kind) {
            continue;
        }
        let live = history.live().last();
        let record = match live {
            None => Record::delete(kind.stream(), &doc),
            Some((revision, entry)) => {
                let tag = entry.tags.iter().find(|(k, _)| k == "nexo-doc");
                let Some(mut payload) = tag.and_then(|(_, v)| entry::decode_doc(v)) else {
                    nexo_sdk::warn!(
                        "transaction nexo:{doc}/{revision} has no readable nexo-doc tag; skipped"
                    );
                    continue;
                };
                payload.insert("id".into(), Value::String(doc.clone()));
                Record::upsert(kind.stream(), &doc, &payload)?
            }
        };
        records.push(record.with_cursor(history.last_code.clone()));
    }
    Ok(records)
}

fn write_one(
    config: &Config,
    kind: Kind,
    record: &Record,
    docs: &mut BTreeMap<String, History>,
    added: &mut Vec<String>,
) -> Result<WriteOutcome, Error> {
    let doc_id = match (record.destination_id(), record.idempotency_key()) {
        (Some(id), _) => id.to_string(),
        (None, Some(key)) => key.to_string(),
        (None, None) => {
            return Err(Error::rejected(
                "hledger has no record ids: a create needs the idempotency key (the record's \
                 cursor) to name the transaction; nothing was written",
            ));
        }
    };
    let desired = match record.operation {
        Operation::Delete => None,
        Operation::Upsert => {
            let doc = entry::document(&record.payload, kind)?;
            entry::desired(config, kind, &doc)?.entry
        }
    };
    let history = docs.entry(doc_id.clone()).or_default();
    if let Some(other) = history.kind.filter(|k| *k != kind) {
        return Err(Error::rejected(format!(
            "document {doc_id} is a {} in the journal, not a {}",
            other.tag(),
            kind.tag()
        )));
    }
    // A create whose document is in the journal already (an answer lost,
    // a rerun after a reset) found it: not `created`.
    let existed = history.kind.is_some();
    let plan = revision::plan(&doc_id, history, desired.as_ref());
    for (code, entry) in &plan.adds {
        entry.check_balanced()?;
        journal::add(config, entry, &code.render())?;
        nexo_sdk::debug!("added {}", code.render());
        added.push(code.render());
        remember(history, kind, code, entry);
    }
    Ok(match (record.operation, record.destination_id()) {
        (Operation::Delete, _) => WriteOutcome::Deleted(doc_id),
        (Operation::Upsert, None) if !existed => WriteOutcome::Created(doc_id),
        (Operation::Upsert, _) if plan.is_noop() => WriteOutcome::Unchanged(doc_id),
        (Operation::Upsert, _) => WriteOutcome::Updated(doc_id),
    })
}

/// Keep the in-memory journal view current, so later records of the batch
/// see what this one added.
fn remember(history: &mut History, kind: Kind, code: &Code, entry: &entry::Entry) {
    history.kind = Some(kind);
    history.last_code = code.render();
    if code.reversal {
        history.reversed.insert(code.revision, ());
    } else {
        history.posted.insert(code.revision, entry.clone());
    }
}

nexo_sdk::export_connector!(Hledger);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_defaults_and_account_checks() {
        let c: Config =
            serde_json::from_value(json!({"base_url": "http://127.0.0.1:5000/"})).unwrap();
        assert_eq!(c.base().unwrap(), "http://127.0.0.1:5000");
        assert_eq!(c.accounts.receivable, "assets:receivable");
        let c: Config = serde_json::from_value(
            json!({"base_url": "http://h", "accounts": {"tax": "liabilities:vat  due"}}),
        )
        .unwrap();
        let e = c.base().unwrap_err().to_string();
        assert!(
            e.contains("accounts.tax") && e.contains("two spaces"),
            "{e}"
        );
        let c: Config =
            serde_json::from_value(json!({"base_url": "http://h", "account_codes": {"1": "a;b"}}))
                .unwrap();
        assert!(c.base().is_err());
        assert!(check_account("revenue:sales").is_ok());
        assert!(check_account(":x").is_err());
    }
}
