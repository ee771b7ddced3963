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
}

impl Cursor {
    /// Parse the state the host passed to `read` (`None`: start from scratch).
    pub fn from_state(state: Option<&str>) -> Result<Self, Error> {
        match state {
            None | Some("") => Ok(Cursor::default()),
            Some(s) => serde_json::from_str(s).map_err(|e| {
                Error::Internal(format!("the saved read state is not a nexo-sdk cursor: {e}"))
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

    /// Set or clear the page token.
    pub fn set_page_token(&mut self, token: Option<String>) {
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
pub fn parse_state<S: serde::de::DeserializeOwned + Default>(state: Option<&str>) -> Result<S, Error> {
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
        assert!(!c.is_seen("2026-01-01T00:00:00Z", "b"), "same timestamp, other id");
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
    fn garbage_state_is_an_error_not_a_restart() {
        assert!(Cursor::from_state(Some("not json")).is_err());
        assert_eq!(Cursor::from_state(None).unwrap(), Cursor::default());
    }
}
