//! A HubSpot-like CRM API (contacts, companies, deals, line items) on 127.0.0.1.
