//! Documents and their revisions in an append-only journal: hledger-web can
//! add transactions but never edit or delete one, so a changed document is
//! corrected the way an accountant corrects a posted entry — reverse the
//! previous version, post the new one — and every step has a code of its
//! own, so that replaying a write finds its earlier steps instead of
//! repeating them.

use std::collections::BTreeMap;

use crate::entry::{Entry, Kind};
use crate::journal::{Code, Transaction};

/// What the journal holds for one document.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The document's kind (from its `nexo-kind` tag).
    pub kind: Option<Kind>,
    /// Posted revisions by number, as read back.
    pub posted: BTreeMap<u32, Entry>,
    /// Revisions that have been reversed.
    pub reversed: BTreeMap<u32, ()>,
    /// The code of the latest Nexo transaction of the document.
    pub last_code: String,
}

impl History {
    /// Revisions posted and not reversed, oldest first. Normally at most
    /// one; more only after a hand edit of the journal.
    pub fn live(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.posted
            .iter()
            .filter(|(r, _)| !self.reversed.contains_key(r))
            .map(|(r, e)| (*r, e))
    }

    /// The highest revision number used so far (posted or reversed).
    pub fn max_revision(&self) -> u32 {
        let posted = self.posted.keys().next_back().copied().unwrap_or(0);
        let reversed = self.reversed.keys().next_back().copied().unwrap_or(0);
        posted.max(reversed)
    }

    /// Record one Nexo transaction of this document.
    pub fn observe(&mut self, code: &Code, t: &Transaction, entry: Option<Entry>) {
        if let Some(kind) = t.tag("nexo-kind").and_then(Kind::of_tag) {
            self.kind = Some(kind);
        }
        self.last_code = code.render();
        if code.reversal {
            self.reversed.insert(code.revision, ());
        } else if let Some(entry) = entry {
            self.posted.insert(code.revision, entry);
        }
    }
}

/// Every Nexo document of the journal, by document id.
pub fn histories(transactions: &[Transaction]) -> BTreeMap<String, History> {
    let mut docs: BTreeMap<String, History> = BTreeMap::new();
    for t in transactions {
        if let Some(code) = t.code() {
            docs.entry(code.doc.clone())
                .or_default()
                .observe(&code, t, t.to_entry());
        }
    }
    docs
}

/// The transactions to append so that the document `doc` has the effect of
/// `desired` (or none), in order: reversals first, then the new revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// (code, entry) pairs to add.
    pub adds: Vec<(Code, Entry)>,
}

impl Plan {
    /// Whether the journal already matches.
    pub fn is_noop(&self) -> bool {
        self.adds.is_empty()
    }
}

/// Plan the transactions that bring `history` to `desired`.
///
/// - the live revision already equal to `desired` → nothing (a replay);
/// - otherwise every live revision is reversed (`<doc>/<n>-reversed`), and
///   `desired`, if any, is posted as revision `max + 1`.
///
/// Because the plan depends only on what the journal holds, a write
/// interrupted between two adds is completed, not repeated, by a retry.
pub fn plan(doc: &str, history: &History, desired: Option<&Entry>) -> Plan {
    let keep = desired.and_then(|want| {
        history
            .live()
            .find(|(_, have)| same(have, want))
            .map(|(r, _)| r)
    });
    let mut adds = Vec::new();
    for (revision, entry) in history.live() {
        if Some(revision) == keep {
            continue;
        }
        let posted = Code {
            doc: doc.to_string(),
            revision,
            reversal: false,
        };
        let reversal = Code {
            reversal: true,
            ..posted.clone()
        };
        adds.push((reversal, entry.reversal(&posted.render())));
    }
    if let (Some(want), None) = (desired, keep) {
        let code = Code {
            doc: doc.to_string(),
            revision: history.max_revision() + 1,
            reversal: false,
        };
        adds.push((code, want.clone()));
    }
    Plan { adds }
}

/// Whether a read-back entry is the one we would write: same date,
/// description, postings (amounts compared as numbers) and Nexo tags.
pub fn same(have: &Entry, want: &Entry) -> bool {
    have.date == want.date
        && have.description == want.description
        && have.postings == want.postings
        && want
            .tags
            .iter()
            .all(|(k, v)| have.tags.iter().any(|(hk, hv)| hk == k && hv.trim() == v))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::entry::Posting;

    fn entry(amount: &str) -> Entry {
        let a: rust_decimal::Decimal = amount.parse().unwrap();
        Entry {
            date: "2024-03-01".into(),
            description: "c | Invoice 1".into(),
            tags: vec![("nexo-kind".into(), "invoice".into())],
            postings: vec![
                Posting {
                    account: "assets:receivable".into(),
                    amount: a,
                    commodity: "EUR".into(),
                    comment: String::new(),
                },
                Posting {
                    account: "revenue:sales".into(),
                    amount: -a,
                    commodity: "EUR".into(),
                    comment: String::new(),
                },
            ],
        }
    }

    fn codes(p: &Plan) -> Vec<String> {
        p.adds.iter().map(|(c, _)| c.render()).collect()
    }

    #[test]
    fn a_new_document_is_revision_one_and_a_replay_adds_nothing() {
        let mut h = History::default();
        let p = plan("k", &h, Some(&entry("10.00")));
        assert_eq!(codes(&p), ["nexo:k/1"]);
        h.posted.insert(1, entry("10"));
        assert!(plan("k", &h, Some(&entry("10.00"))).is_noop());
    }

    #[test]
    fn a_change_reverses_then_posts_the_next_revision() {
        let mut h = History::default();
        h.posted.insert(1, entry("10.00"));
        let p = plan("k", &h, Some(&entry("12.00")));
        assert_eq!(codes(&p), ["nexo:k/1-reversed", "nexo:k/2"]);
        assert_eq!(p.adds[0].1.postings[0].amount, "-10.00".parse().unwrap());
        // Interrupted after the reversal: the retry only posts.
        h.reversed.insert(1, ());
        assert_eq!(codes(&plan("k", &h, Some(&entry("12.00")))), ["nexo:k/2"]);
        h.posted.insert(2, entry("12.00"));
        assert!(plan("k", &h, Some(&entry("12.00"))).is_noop());
        // Changing back is a third revision, not a resurrection of the first.
        assert_eq!(
            codes(&plan("k", &h, Some(&entry("10.00")))),
            ["nexo:k/2-reversed", "nexo:k/3"]
        );
    }

    #[test]
    fn no_desired_entry_reverses_what_is_live() {
        let mut h = History::default();
        assert!(plan("k", &h, None).is_noop());
        h.posted.insert(1, entry("10.00"));
        assert_eq!(codes(&plan("k", &h, None)), ["nexo:k/1-reversed"]);
        h.reversed.insert(1, ());
        assert!(plan("k", &h, None).is_noop());
    }
}
