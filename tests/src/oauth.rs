//! An admin's side of an OAuth 2.0 sign-in at the sandbox services, over
//! plain HTTP: open the authorization address, sign in, consent (choosing
//! organisations where the system has them), and take the redirect back.

use nexo::registry::oauth::CallbackParams;
use nexo_sandbox::oauth::{USER_EMAIL, USER_PASSWORD};

fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The value of `name="NAME" value="…"` in `html`.
fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// The `action="…"` of the page's form.
fn form_action(html: &str) -> Option<String> {
    let at = html.find("action=\"")?;
    let rest = &html[at + 8..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Sign in at `authorize_url` as the sandbox's admin and allow access
/// (for the `tenants` given, else every one offered); the parameters of
/// the redirect the system answers with (not followed).
pub async fn consent(authorize_url: &str, tenants: Option<&[&str]>) -> CallbackParams {
    let location = consent_redirect(authorize_url, tenants).await;
    let back = url::Url::parse(&location).unwrap();
    let mut params = CallbackParams::default();
    for (k, v) in back.query_pairs() {
        match k.as_ref() {
            "code" => params.code = Some(v.into_owned()),
            "state" => params.state = Some(v.into_owned()),
            "error" => params.error = Some(v.into_owned()),
            _ => {}
        }
    }
    params
}

/// [`consent`], giving the whole address the system redirects to.
pub async fn consent_redirect(authorize_url: &str, tenants: Option<&[&str]>) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = url::Url::parse(authorize_url).unwrap();
    let login = http.get(authorize_url).send().await.unwrap();
    assert_eq!(login.status(), 200, "the authorization page");
    let html = login.text().await.unwrap();
    let request = input_value(&html, "request").expect("a sign-in request id");
    let action = base.join(&form_action(&html).unwrap()).unwrap();
    let consent = http
        .post(action)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[
            ("email", USER_EMAIL),
            ("password", USER_PASSWORD),
            ("request", &request),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 200, "the consent page");
    let html = consent.text().await.unwrap();
    let request = input_value(&html, "request").expect("a consent request id");
    let action = base.join(&form_action(&html).unwrap()).unwrap();
    let mut form: Vec<(String, String)> = vec![
        ("request".into(), request),
        ("decision".into(), "allow".into()),
    ];
    let offered: Vec<String> = html
        .match_indices("name=\"tenant\" value=\"")
        .filter_map(|(i, _)| {
            let rest = &html[i + 21..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect();
    for t in offered {
        if tenants.is_none_or(|chosen| chosen.contains(&t.as_str())) {
            form.push(("tenant".into(), t));
        }
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let redirect = http
        .post(action)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&pairs))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302, "the redirect back");
    redirect.headers()["location"].to_str().unwrap().to_string()
}
