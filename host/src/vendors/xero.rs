//! A Xero-like accounting API on 127.0.0.1.
