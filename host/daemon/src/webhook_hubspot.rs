//! HubSpot's webhook signature, so a HubSpot app's webhooks can point at a
//! pipeline's hook directly: `X-HubSpot-Signature-v3` is the base64
//! HMAC-SHA256 under the app's client secret of method + URI + body +
//! `X-HubSpot-Request-Timestamp` (ms). A delivery is refused when the
//! signature does not verify, when the timestamp is more than
//! [`TOLERANCE_SECS`] away (HubSpot's own
//! advice is 5 minutes), and when the same signature was accepted before.
//!
//! The client secret is sealed at rest in the pipeline's webhook slot with
//! a [`PREFIX`] that names the scheme, so the scheme is as tamper-proof as
//! the secret and needs no column of its own.

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::webhook::{Refusal, TOLERANCE_SECS, Verified, WebhookError, slot};
use nexo_db::Database;
use nexo_db::sealed::Sealer;
use nexo_runtime::sandbox::secrets::SecretValue;

/// The header carrying the v3 signature.
pub const SIGNATURE_HEADER: &str = "x-hubspot-signature-v3";
/// The header carrying the signing time in ms since the epoch.
pub const TIMESTAMP_HEADER: &str = "x-hubspot-request-timestamp";
/// What a sealed secret of this scheme starts with.
pub const PREFIX: &str = "hubspot-v3:";

/// Which signature a pipeline's webhook expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Nexo-Signature` under a secret the host drew.
    Nexo,
    /// HubSpot's v3 signature under the app's client secret.
    HubSpotV3,
}

impl Scheme {
    /// The scheme of an opened secret, and the key it signs with.
    pub fn of(opened: &str) -> (Scheme, &str) {
        match opened.strip_prefix(PREFIX) {
            Some(client_secret) => (Scheme::HubSpotV3, client_secret),
            None => (Scheme::Nexo, opened),
        }
    }
}

/// Make `pipeline`'s webhook expect HubSpot's v3 signature under
/// `client_secret` (the HubSpot app's client secret), replacing any
/// previous secret or scheme.
pub fn set_secret(
    db: &Database,
    sealer: &Sealer,
    pipeline: &str,
    client_secret: &str,
) -> Result<(), WebhookError> {
    let client_secret = client_secret.trim();
    if client_secret.is_empty() || client_secret.chars().any(char::is_control) {
        return Err(WebhookError::Invalid(
            "the HubSpot client secret is empty or has control characters: copy it from the app's Auth page".into(),
        ));
    }
    let value = SecretValue::new(format!("{PREFIX}{client_secret}"));
    let (nonce, sealed) = sealer.seal(&slot(pipeline), &value)?;
    db.set_webhook_secret(pipeline, &nonce, &sealed)?;
    Ok(())
}

/// The v3 signature of a request (what HubSpot sends).
pub fn sign(
    client_secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp_ms: i64,
) -> String {
    match mac(client_secret, method, uri, body, timestamp_ms) {
        Some(mac) => base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        None => String::new(),
    }
}

fn mac(
    client_secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp_ms: i64,
) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(client_secret.as_bytes()).ok()?;
    mac.update(method.as_bytes());
    mac.update(decode_uri(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp_ms.to_string().as_bytes());
    Some(mac)
}

/// The URI as HubSpot signs it: these escapes decoded, others kept.
fn decode_uri(uri: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("%3A", ':'),
        ("%2F", '/'),
        ("%3F", '?'),
        ("%40", '@'),
        ("%21", '!'),
        ("%24", '$'),
        ("%27", '\''),
        ("%28", '('),
        ("%29", ')'),
        ("%2A", '*'),
        ("%2C", ','),
        ("%3B", ';'),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(c) = rest.chars().next() {
        let escape = rest
            .get(..3)
            .and_then(|head| DECODED.iter().find(|(e, _)| e.eq_ignore_ascii_case(head)));
        match escape {
            Some((_, decoded)) => {
                out.push(*decoded);
                rest = &rest[3..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// The URLs the sender may have signed for a request to `path_and_query`:
/// the host it was sent to (`X-Forwarded-Host` behind a proxy, else
/// `Host`), over the scheme a proxy names, else https and http. An
/// attacker choosing these headers gains nothing: the signature must still
/// verify for the URL, under the secret.
pub fn candidate_urls(headers: &HeaderMap, path_and_query: &str) -> Vec<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let Some(host) = header("x-forwarded-host").or_else(|| header("host")) else {
        return Vec::new();
    };
    let schemes: Vec<&str> = match header("x-forwarded-proto") {
        Some(p) => vec![p],
        None => vec!["https", "http"],
    };
    schemes
        .into_iter()
        .map(|s| format!("{s}://{host}{path_and_query}"))
        .collect()
}

/// Check a delivery: both headers present, the signature (constant-time)
/// for one of `urls`, then the timestamp against `now_ms`. Replays are the
/// caller's replay cache's business.
pub fn verify(
    client_secret: &str,
    urls: &[String],
    body: &[u8],
    signature: &str,
    timestamp: &str,
    now_ms: i64,
) -> Result<Verified, Refusal> {
    let (signature, timestamp) = (signature.trim(), timestamp.trim());
    if signature.is_empty() || timestamp.is_empty() {
        return Err(Refusal::Missing);
    }
    let timestamp_ms: i64 = timestamp.parse().map_err(|_| Refusal::Malformed)?;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .ok()
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or(Refusal::Malformed)?;
    let matches = urls.iter().any(|url| {
        mac(client_secret, "POST", url, body, timestamp_ms)
            .is_some_and(|mac| mac.verify_slice(&sent).is_ok())
    });
    if !matches {
        return Err(Refusal::BadSignature);
    }
    let off_by = now_ms.saturating_sub(timestamp_ms) / 1000;
    if off_by.saturating_abs() > TOLERANCE_SECS {
        return Err(Refusal::Stale { off_by });
    }
    Ok(Verified {
        timestamp: timestamp_ms.div_euclid(1000),
        signature: sent,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_780_000_000_123;
    const URL: &str = "https://nexo.example.com/hooks/deals";

    fn check(secret: &str, body: &[u8], sig: &str, ts: i64) -> Result<Verified, Refusal> {
        verify(
            secret,
            &[URL.to_string()],
            body,
            sig,
            &ts.to_string(),
            NOW_MS,
        )
    }

    #[test]
    fn a_v3_signature_verifies_only_for_its_url_body_timestamp_and_secret() {
        let body = br#"[{"eventId":1}]"#;
        let sig = sign("client-secret", "POST", URL, body, NOW_MS);
        assert!(check("client-secret", body, &sig, NOW_MS).is_ok());
        assert_eq!(
            check("other-secret", body, &sig, NOW_MS),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check("client-secret", br#"[{"eventId":2}]"#, &sig, NOW_MS),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check("client-secret", body, &sig, NOW_MS + 1),
            Err(Refusal::BadSignature)
        );
        let elsewhere = sign(
            "client-secret",
            "POST",
            "https://nexo.example.com/hooks/other",
            body,
            NOW_MS,
        );
        assert_eq!(
            check("client-secret", body, &elsewhere, NOW_MS),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check("client-secret", body, "", NOW_MS),
            Err(Refusal::Missing)
        );
        assert_eq!(
            verify("client-secret", &[URL.into()], body, &sig, "", NOW_MS),
            Err(Refusal::Missing)
        );
        assert_eq!(
            check("client-secret", body, "not base64!", NOW_MS),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn a_timestamp_older_than_five_minutes_is_stale() {
        let body = b"[]";
        let at = |ts: i64| check("s", body, &sign("s", "POST", URL, body, ts), ts);
        assert!(at(NOW_MS - 300_000).is_ok());
        assert_eq!(at(NOW_MS - 301_000), Err(Refusal::Stale { off_by: 301 }));
        assert!(matches!(at(NOW_MS + 3_600_000), Err(Refusal::Stale { .. })));
    }

    #[test]
    fn hubspots_escapes_are_decoded_before_signing() {
        assert_eq!(
            decode_uri("https://h.test/a%3Ab%2fc?x=%40%20%3B"),
            "https://h.test/a:b/c?x=@%20;"
        );
        let sig = sign("s", "POST", "https://h.test/hooks/a%3Ab", b"", 1);
        assert_eq!(sig, sign("s", "POST", "https://h.test/hooks/a:b", b"", 1));
    }

    #[test]
    fn the_urls_come_from_the_host_or_the_proxy() {
        let mut h = HeaderMap::new();
        assert!(candidate_urls(&h, "/hooks/a").is_empty());
        h.insert("host", "127.0.0.1:7373".parse().unwrap());
        assert_eq!(
            candidate_urls(&h, "/hooks/a?x=1"),
            [
                "https://127.0.0.1:7373/hooks/a?x=1",
                "http://127.0.0.1:7373/hooks/a?x=1"
            ]
        );
        h.insert("x-forwarded-host", "nexo.example.com".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            candidate_urls(&h, "/hooks/a"),
            ["https://nexo.example.com/hooks/a"]
        );
    }

    #[test]
    fn the_scheme_is_named_by_the_sealed_value() {
        assert_eq!(Scheme::of("hubspot-v3:abc"), (Scheme::HubSpotV3, "abc"));
        assert_eq!(Scheme::of("whsec_00"), (Scheme::Nexo, "whsec_00"));
    }
}
