//! Cursor state for incremental reads.
//!
//! A [`Cursor`] remembers the highest cursor value seen and the ids seen *at*
//! that value, so records sharing a timestamp are neither skipped nor read
//! twice, plus an opaque page token for the system's own paging. It is
//! serialised as the `state` of a [`Page`](crate::Page); the host commits it
//! in the same transaction as the page's data.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Incremental read position: cursor value + ids at that value + page token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ids_at_value: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page_token: Option<String>,
    /// The cursor value a paged query started from: while paging, every page
    /// must repeat the same query, or offsets would skip records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paging_from: Option<String>,
}

impl Cursor {
    /// Parse the state the host passed to `read` (`None`: start from scratch).
    pub fn from_state(state: Option<&str>) -> Result<Self, Error> {
        match state {
            None | Some("") => Ok(Cursor::default()),
            Some(s) => serde_json::from_str(s).map_err(|e| {
                Error::Internal(format!(
                    "the saved read state is not a nexo-sdk cursor: {e}"
                ))
            }),
        }
    }

    /// Serialise for [`Page::state`](crate::Page).
    pub fn to_state(&self) -> Result<Option<String>, Error> {
        Ok(Some(serde_json::to_string(self)?))
    }

    /// The highest cursor value committed so far.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// The system's page token for the next request, if mid-way through pages.
    pub fn page_token(&self) -> Option<&str> {
        self.page_token.as_deref()
    }

    /// The value to query from ("modified since"): while paging, the value
    /// the paged query started from; otherwise the committed cursor value.
    pub fn query_value(&self) -> Option<&str> {
        if self.page_token.is_some() {
            self.paging_from.as_deref()
        } else {
            self.value.as_deref()
        }
    }

    /// After a page fetched with `queried_from` (what [`Cursor::query_value`]
    /// returned): `Some(token)` continues the same query on the next read;
    /// `None` ends it, so the next read queries from the new cursor value.
    pub fn set_page(&mut self, token: Option<String>, queried_from: Option<&str>) {
        self.paging_from = token.as_ref().and(queried_from.map(str::to_string));
        self.page_token = token;
    }

    /// Whether a record with this cursor value and id was already returned:
    /// older than the cursor, or at the cursor and already seen. Cursor values
    /// compare as strings, so use sortable forms (RFC 3339 UTC, zero-padded).
    pub fn is_seen(&self, value: &str, id: &str) -> bool {
        match self.value.as_deref() {
            None => false,
            Some(v) if value < v => true,
            Some(v) if value == v => self.ids_at_value.iter().any(|i| i == id),
            Some(_) => false,
        }
    }

    /// Record that a record with this value and id was returned.
    pub fn observe(&mut self, value: &str, id: &str) {
        match self.value.as_deref() {
            Some(v) if value < v => {}
            Some(v) if value == v => {
                if !self.ids_at_value.iter().any(|i| i == id) {
                    self.ids_at_value.push(id.to_string());
                }
            }
            _ => {
                self.value = Some(value.to_string());
                self.ids_at_value = vec![id.to_string()];
            }
        }
    }
}

/// Parse any state type the plugin defines itself.
pub fn parse_state<S: serde::de::DeserializeOwned + Default>(
    state: Option<&str>,
) -> Result<S, Error> {
    match state {
        None | Some("") => Ok(S::default()),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| Error::Internal(format!("the saved read state does not parse: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_on_the_cursor_are_not_skipped_nor_repeated() {
        let mut c = Cursor::default();
        c.observe("2026-01-01T00:00:00Z", "a");
        let c = Cursor::from_state(c.to_state().unwrap().as_deref()).unwrap();
        assert!(c.is_seen("2026-01-01T00:00:00Z", "a"));
        assert!(
            !c.is_seen("2026-01-01T00:00:00Z", "b"),
            "same timestamp, other id"
        );
        assert!(c.is_seen("2025-12-31T23:59:59Z", "z"));
        assert!(!c.is_seen("2026-01-01T00:00:01Z", "a"));
    }

    #[test]
    fn observing_a_newer_value_resets_the_tie_set() {
        let mut c = Cursor::default();
        c.observe("1", "a");
        c.observe("1", "b");
        c.observe("2", "c");
        assert_eq!(c.value(), Some("2"));
        assert!(!c.is_seen("2", "a"));
        assert!(c.is_seen("2", "c"));
        c.observe("1", "z");
        assert_eq!(c.value(), Some("2"));
    }

    #[test]
    fn a_paged_query_keeps_its_starting_value_until_it_ends() {
        let mut c = Cursor::default();
        c.observe("5", "a");
        let from = c.query_value().map(str::to_string);
        c.observe("7", "b");
        c.set_page(Some("page-2".into()), from.as_deref());
        assert_eq!(c.query_value(), Some("5"), "same query while paging");
        assert_eq!(c.page_token(), Some("page-2"));
        c.observe("9", "c");
        c.set_page(None, Some("5"));
        assert_eq!(
            c.query_value(),
            Some("9"),
            "after the last page, from the new value"
        );
        assert_eq!(c.page_token(), None);
    }

    #[test]
    fn garbage_state_is_an_error_not_a_restart() {
        assert!(Cursor::from_state(Some("not json")).is_err());
        assert_eq!(Cursor::from_state(None).unwrap(), Cursor::default());
    }
}
