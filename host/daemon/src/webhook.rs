//! Webhooks: `POST /hooks/{pipeline}` signed with HMAC-SHA256 under the
//! pipeline's own secret (sealed at rest like connection secrets). A good
//! signature queues an incremental run; anything else runs nothing.
//!
//! The signature covers a timestamp and the body, the way payment
//! providers sign: `X-Nexo-Signature: t=<unix seconds>,v1=<hex>` where the
//! HMAC is over `"<t>.<body>"`. A delivery is accepted only within
//! [`TOLERANCE_SECS`] of the host's clock, and only once: a replay cache
//! remembers the signatures accepted within that window, so a captured
//! delivery cannot be sent again, now or later. Hosts sharing a PostgreSQL
//! keep that cache in the database (`webhook_deliveries`), so the same
//! delivery sent to two of them is accepted by one. The old `sha256=<hex>`
//! form (over the body alone, replayable forever) is refused.
//!
//! A pipeline's webhook can instead expect HubSpot's v3 signature under a
//! HubSpot app's client secret ([`super::webhook_hubspot`]), so the app's
//! webhook subscriptions point at the hook directly; the same window and
//! replay cache apply, and neither scheme's header is accepted by the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::App;
use super::webhook_hubspot::{self as hubspot, Scheme};
use nexo_db::Database;
use nexo_db::sealed::{SealError, Sealer};
use nexo_runtime::metrics::Metrics;
use nexo_runtime::sandbox::secrets::SecretValue;

/// The header carrying `t=<unix seconds>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-nexo-signature";
/// How far (either way) a delivery's timestamp may be from the host's
/// clock: 5 minutes.
pub const TOLERANCE_SECS: i64 = 300;
/// Replay-cache size at which expired entries are swept.
const SWEEP_AT: usize = 1024;

pub(crate) fn slot(pipeline: &str) -> String {
    format!("webhook:{pipeline}")
}

/// Create (or rotate) a pipeline's webhook secret; returns it, to be shown
/// once.
pub fn rotate_secret(
    db: &Database,
    sealer: &Sealer,
    pipeline: &str,
) -> Result<String, WebhookError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| WebhookError::Random(e.to_string()))?;
    let secret = format!("whsec_{}", hex::encode(bytes));
    let (nonce, sealed) = sealer.seal(&slot(pipeline), &SecretValue::new(secret.clone()))?;
    db.set_webhook_secret(pipeline, &nonce, &sealed)?;
    Ok(secret)
}

/// The HMAC of `"<timestamp>.<body>"` under `secret`.
fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// `t=<timestamp>,v1=<hex>` for `body` under `secret` (what a sender
/// computes and sends in [`SIGNATURE_HEADER`]).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    match mac(secret, timestamp, body) {
        Some(mac) => format!(
            "t={timestamp},v1={}",
            hex::encode(mac.finalize().into_bytes())
        ),
        None => String::new(),
    }
}

/// [`sign`] with the current time.
pub fn sign_now(secret: &str, body: &[u8]) -> String {
    sign(secret, now_unix(), body)
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No signature header.
    Missing,
    /// The old `sha256=<hex>` form.
    OldFormat,
    /// Not `t=<unix seconds>,v1=<hex>`.
    Malformed,
    /// No `v1` matches the body and timestamp under the secret.
    BadSignature,
    /// Signed too long ago (or too far ahead).
    Stale {
        /// Seconds between the timestamp and the host's clock.
        off_by: i64,
    },
    /// This exact delivery was accepted already.
    Replayed,
}

const HUBSPOT_FORMAT: &str = "X-HubSpot-Signature-v3: <base64 HMAC-SHA256 of method + URL + body + timestamp under the HubSpot app's client secret> and X-HubSpot-Request-Timestamp: <ms since the epoch>, as HubSpot signs its webhooks";

const FORMAT: &str = "X-Nexo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" under the pipeline's webhook secret>";

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::OldFormat | Refusal::Malformed => StatusCode::BAD_REQUEST,
            Refusal::Missing | Refusal::BadSignature | Refusal::Stale { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Refusal::Replayed => StatusCode::CONFLICT,
        }
    }

    /// The label of `nexo_webhooks_total`.
    pub fn metric(&self) -> &'static str {
        match self {
            Refusal::Missing | Refusal::BadSignature => "bad_signature",
            Refusal::OldFormat | Refusal::Malformed => "bad_format",
            Refusal::Stale { .. } => "stale",
            Refusal::Replayed => "replayed",
        }
    }

    /// What the sender is told, for a pipeline whose webhook expects
    /// `scheme`.
    pub fn message(&self, scheme: Scheme) -> String {
        if scheme == Scheme::HubSpotV3 {
            return match self {
                Refusal::Missing | Refusal::BadSignature => format!(
                    "missing or bad HubSpot signature: this pipeline's webhook expects {HUBSPOT_FORMAT}; check that the app's client secret given to `nexo pipeline webhook NAME --hubspot` is the app's"
                ),
                Refusal::OldFormat | Refusal::Malformed => {
                    format!(
                        "the HubSpot signature headers are not in the expected form: {HUBSPOT_FORMAT}"
                    )
                }
                other => other.message(Scheme::Nexo),
            };
        }
        match self {
            Refusal::Missing | Refusal::BadSignature => {
                format!("missing or bad X-Nexo-Signature: send {FORMAT}")
            }
            Refusal::OldFormat => format!(
                "the sha256=<hex> signature over the body alone is no longer accepted (it can be replayed); send {FORMAT}"
            ),
            Refusal::Malformed => format!("X-Nexo-Signature is not in the expected form; send {FORMAT}"),
            Refusal::Stale { off_by } => format!(
                "the signature's timestamp is {off_by} s away from this host's clock; deliveries are accepted within {TOLERANCE_SECS} s of it: sign each delivery when sending it (and keep the sender's clock in time)"
            ),
            Refusal::Replayed => "this delivery was already delivered (same timestamp, body and signature); a new event needs a new signature".into(),
        }
    }
}

/// A delivery whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its timestamp.
    pub timestamp: i64,
    /// The matching signature, for the replay cache.
    pub signature: [u8; 32],
}

/// Check `header` against `body` under `secret` at time `now`: the form,
/// the signature (constant-time), then the timestamp. Replays are the
/// caller's [`ReplayCache`]'s business.
pub fn verify(secret: &str, body: &[u8], header: &str, now: i64) -> Result<Verified, Refusal> {
    let header = header.trim();
    if header.is_empty() {
        return Err(Refusal::Missing);
    }
    if header.starts_with("sha256=") {
        return Err(Refusal::OldFormat);
    }
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| Refusal::Malformed)?),
            // Several v1 let a sender sign with an old and a new secret
            // while it rotates.
            Some(("v1", v)) => candidates.push(v),
            // Other schemes (a future v2) are ignored.
            Some(_) => {}
            None => return Err(Refusal::Malformed),
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(Refusal::Malformed);
    };
    if candidates.is_empty() {
        return Err(Refusal::Malformed);
    }
    let Some(expected) = mac(secret, timestamp, body) else {
        return Err(Refusal::BadSignature);
    };
    let signature = candidates
        .iter()
        .filter_map(|v| hex::decode(v).ok())
        .find(|sig| expected.clone().verify_slice(sig).is_ok())
        .and_then(|sig| <[u8; 32]>::try_from(sig).ok())
        .ok_or(Refusal::BadSignature)?;
    let off_by = now.saturating_sub(timestamp);
    if off_by.saturating_abs() > TOLERANCE_SECS {
        return Err(Refusal::Stale { off_by });
    }
    Ok(Verified {
        timestamp,
        signature,
    })
}

/// Signatures accepted within the tolerance window. A delivery outside the
/// window is refused as stale, so an entry is dropped once its timestamp
/// is more than [`TOLERANCE_SECS`] old; only well-signed deliveries get in,
/// so an outsider cannot fill it.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

impl ReplayCache {
    /// Record `delivery`; false if it was recorded before (a replay).
    pub fn first_time(&self, delivery: &Verified, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= SWEEP_AT {
            seen.retain(|_, t| t.saturating_add(TOLERANCE_SECS) >= now);
        }
        seen.insert(delivery.signature, delivery.timestamp)
            .is_none()
    }
}

/// Whether `delivery` is new: on a PostgreSQL several hosts share, the
/// database remembers it (a delivery sent to two hosts runs once); on
/// SQLite (one host) this process's [`ReplayCache`] does.
fn first_time(app: &App, delivery: &Verified, now: i64) -> Result<bool, nexo_db::StoreError> {
    let db = app.registry.db();
    if db.postgres().is_none() {
        return Ok(app.webhook_replays.first_time(delivery, now));
    }
    // Kept twice the window: a host whose clock is behind this one's
    // still accepts what this one already counts as stale.
    db.first_webhook_delivery(
        &hex::encode(delivery.signature),
        delivery.timestamp,
        now.saturating_sub(2 * TOLERANCE_SECS),
    )
}

/// Webhook setup failures.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] nexo_db::StoreError),
    /// No randomness.
    #[error("cannot draw a random secret: {0}")]
    Random(String),
    /// A secret given by the admin cannot be used.
    #[error("{0}")]
    Invalid(String),
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// `POST /hooks/{pipeline}`.
pub async fn hook(
    State(app): State<Arc<App>>,
    Path(pipeline): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let metrics = Metrics::global();
    let db = app.registry.db();
    let sealed = match db.webhook_secret(&pipeline) {
        Ok(Some(s)) => s,
        Ok(None) => {
            // Not labelled with the caller's path: anyone could grow the
            // metrics without bound.
            metrics.webhook("", "unknown");
            // Same answer whether the pipeline is missing or has no hook:
            // a caller learns nothing about which pipelines exist.
            return answer(
                StatusCode::NOT_FOUND,
                "no webhook for this pipeline; create one with `nexo pipeline webhook NAME`",
            );
        }
        Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let secret = match app
        .sealer
        .open(&slot(&pipeline), &sealed.nonce, &sealed.sealed)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(pipeline, error = %e, "webhook secret cannot be opened");
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the webhook secret cannot be opened with this host's key; rotate it with `nexo pipeline webhook NAME`",
            );
        }
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (scheme, key) = Scheme::of(secret.expose());
    let now_ms = chrono::Utc::now().timestamp_millis();
    let now = now_ms.div_euclid(1000);
    let verified = match scheme {
        Scheme::Nexo => verify(key, &body, header(SIGNATURE_HEADER), now),
        Scheme::HubSpotV3 => {
            let path = uri.path_and_query().map_or("", |p| p.as_str());
            hubspot::verify(
                key,
                &hubspot::candidate_urls(&headers, path),
                &body,
                header(hubspot::SIGNATURE_HEADER),
                header(hubspot::TIMESTAMP_HEADER),
                now_ms,
            )
        }
    };
    let checked = match verified {
        Ok(delivery) => match first_time(&app, &delivery, now) {
            Ok(true) => Ok(delivery),
            Ok(false) => Err(Refusal::Replayed),
            Err(e) => {
                tracing::error!(pipeline, error = %e, "cannot record a webhook delivery");
                return answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the delivery cannot be recorded (the database failed); send it again",
                );
            }
        },
        Err(refusal) => Err(refusal),
    };
    if let Err(refusal) = checked {
        metrics.webhook(&pipeline, refusal.metric());
        tracing::warn!(pipeline, reason = ?refusal, "webhook refused");
        return answer(refusal.status(), &refusal.message(scheme));
    }
    match app.scheduler.trigger(&pipeline) {
        Ok(t) => {
            metrics.webhook(&pipeline, "accepted");
            let coalesced = t == super::scheduler::Triggered::Coalesced;
            (
                StatusCode::ACCEPTED,
                Json(json!({"queued": true, "coalesced": coalesced})),
            )
                .into_response()
        }
        Err(e) => {
            metrics.webhook(&pipeline, "refused");
            crate::api::ApiError::from(e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000;

    #[test]
    fn a_signature_verifies_only_for_its_body_timestamp_and_secret() {
        let body = b"{\"deal\":42}";
        let sig = sign("whsec_a", NOW, body);
        assert!(sig.starts_with(&format!("t={NOW},v1=")));
        assert!(verify("whsec_a", body, &sig, NOW).is_ok());
        assert_eq!(
            verify("whsec_b", body, &sig, NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify("whsec_a", b"{\"deal\":43}", &sig, NOW),
            Err(Refusal::BadSignature)
        );
        let moved = sig.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            verify("whsec_a", body, &moved, NOW),
            Err(Refusal::BadSignature)
        );
        assert_eq!(verify("whsec_a", body, "", NOW), Err(Refusal::Missing));
        assert_eq!(
            verify("whsec_a", body, "sha256=00", NOW),
            Err(Refusal::OldFormat)
        );
        for bad in ["t=x,v1=00", "v1=00", &format!("t={NOW}"), "garbage"] {
            assert_eq!(
                verify("whsec_a", body, bad, NOW),
                Err(Refusal::Malformed),
                "{bad}"
            );
        }
        // Rotation: one of several v1 matches.
        let both = format!("{sig},v1={}", "00".repeat(32));
        assert!(verify("whsec_a", body, &both, NOW).is_ok());
    }

    #[test]
    fn the_timestamp_must_be_within_the_tolerance() {
        let body = b"{}";
        let at = |t: i64| verify("whsec_a", body, &sign("whsec_a", t, body), NOW);
        assert!(at(NOW - TOLERANCE_SECS).is_ok());
        assert!(at(NOW + TOLERANCE_SECS).is_ok());
        assert_eq!(
            at(NOW - TOLERANCE_SECS - 1),
            Err(Refusal::Stale {
                off_by: TOLERANCE_SECS + 1
            })
        );
        assert!(matches!(
            at(NOW + 3600),
            Err(Refusal::Stale { off_by: -3600 })
        ));
    }

    #[test]
    fn a_delivery_is_accepted_once_and_old_entries_are_swept() {
        let cache = ReplayCache::default();
        let body = b"{}";
        let delivery = verify("whsec_a", body, &sign("whsec_a", NOW, body), NOW).unwrap();
        assert!(cache.first_time(&delivery, NOW));
        assert!(!cache.first_time(&delivery, NOW + 10));
        // Fill past the sweep size with deliveries that have expired.
        for i in 0..SWEEP_AT as i64 {
            let mut old = delivery.clone();
            old.signature[..8].copy_from_slice(&i.to_le_bytes());
            old.signature[8] = 0xff;
            old.timestamp = NOW - 10_000;
            cache.first_time(&old, NOW);
        }
        cache.first_time(&delivery, NOW + 1);
        let len = cache.seen.lock().unwrap().len();
        assert!(len < 10, "{len} entries kept");
    }
}
