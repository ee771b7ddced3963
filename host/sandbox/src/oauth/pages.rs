//! The identity server's HTML pages: login, consent and error. They are a
//! protocol as much as pages — a headless browser clicks them and a plain
//! HTTP client posts their forms — so the names and ids below are fixed:
//!
//! - login: `<form method="post" action="/identity/login">` (HubSpot:
//!   `/oauth/login`) with `<input name="email" id="email">`,
//!   `<input name="password" id="password" type="password">`, a hidden
//!   `<input type="hidden" name="request" value="…">` and
//!   `<button id="login" type="submit">`; after a wrong password the same
//!   page with `<p id="error">…</p>`.
//! - consent: the app's client id in `<code id="client">`, each scope in an
//!   `<li class="scope">`, for Xero each organisation as
//!   `<input type="checkbox" name="tenant" value="TENANT_ID" checked>` with
//!   its name, the hidden `request`, and
//!   `<button id="allow" name="decision" value="allow">` /
//!   `<button id="deny" name="decision" value="deny">`, in a
//!   `<form method="post" action="/identity/consent">` (HubSpot:
//!   `/oauth/consent`).
//! - error: status 400 with `<p id="error">…</p>`.

use super::{Tenant, Vendor};

/// Text made safe inside HTML elements and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(vendor: Vendor, title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} · {vendor} sandbox</title></head>\n<body>\n<h1>{title}</h1>\n\
         <p class=\"sandbox\">{vendor}-like sandbox identity server (test data only)</p>\n{body}</body></html>\n",
        vendor = vendor.name(),
    )
}

fn error_line(error: Option<&str>) -> String {
    error
        .map(|e| format!("<p id=\"error\">{}</p>\n", escape(e)))
        .unwrap_or_default()
}

/// The login page of a sign-in (`request`: its opaque id).
pub(super) fn login(
    vendor: Vendor,
    client_id: &str,
    request: &str,
    email: &str,
    error: Option<&str>,
) -> String {
    let body = format!(
        "<p>Log in to connect <code id=\"client\">{client}</code>.</p>\n{error}\
         <form method=\"post\" action=\"{action}\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\n\
         <label for=\"email\">Email</label> <input name=\"email\" id=\"email\" type=\"email\" value=\"{email}\">\n\
         <label for=\"password\">Password</label> <input name=\"password\" id=\"password\" type=\"password\">\n\
         <button id=\"login\" type=\"submit\">Log in</button>\n</form>\n",
        client = escape(client_id),
        error = error_line(error),
        action = vendor.login_path(),
        request = escape(request),
        email = escape(email),
    );
    page(vendor, "Log in", &body)
}

/// The consent page of a signed-in sign-in; `tenants` are offered as
/// checked boxes (Xero) or not at all (HubSpot: empty).
pub(super) fn consent(
    vendor: Vendor,
    client_id: &str,
    scopes: &[String],
    tenants: &[Tenant],
    request: &str,
    error: Option<&str>,
) -> String {
    let scopes: String = scopes
        .iter()
        .map(|s| format!("<li class=\"scope\">{}</li>\n", escape(s)))
        .collect();
    let tenants: String = if tenants.is_empty() {
        String::new()
    } else {
        let boxes: String = tenants
            .iter()
            .map(|t| {
                format!(
                    "<label><input type=\"checkbox\" name=\"tenant\" value=\"{id}\" checked> {name}</label><br>\n",
                    id = escape(&t.id),
                    name = escape(&t.name),
                )
            })
            .collect();
        format!("<fieldset id=\"tenants\"><legend>Organisations</legend>\n{boxes}</fieldset>\n")
    };
    let body = format!(
        "<p>The app <code id=\"client\">{client}</code> asks for:</p>\n<ul id=\"scopes\">\n{scopes}</ul>\n{error}\
         <form method=\"post\" action=\"{action}\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\n{tenants}\
         <button id=\"allow\" name=\"decision\" value=\"allow\" type=\"submit\">Allow access</button>\n\
         <button id=\"deny\" name=\"decision\" value=\"deny\" type=\"submit\">Cancel</button>\n</form>\n",
        client = escape(client_id),
        error = error_line(error),
        action = vendor.consent_path(),
        request = escape(request),
    );
    page(vendor, "Allow access", &body)
}

/// A page for a request that cannot go back to the client (400).
pub(super) fn error(vendor: Vendor, message: &str) -> String {
    page(vendor, "Cannot continue", &error_line(Some(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_client_sent_is_escaped() {
        let html = login(Vendor::Xero, "<script>", "r\"1", "a@b", Some("x<y"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("value=\"r&quot;1\""));
        assert!(!html.contains("<script>"));
    }
}
