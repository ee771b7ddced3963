//! Webhooks: `POST /hooks/{pipeline}` signed with HMAC-SHA256 under the
//! pipeline's own secret (sealed at rest like connection secrets). A good
//! signature queues an incremental run; anything else runs nothing.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::App;
use crate::metrics::Metrics;
use crate::sandbox::secrets::SecretValue;
use crate::store::Database;
use crate::store::sealed::{SealError, Sealer};

/// The header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-nexo-signature";

fn slot(pipeline: &str) -> String {
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

/// `sha256=<hex>` of `body` under `secret` (what a sender computes).
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails.
    match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// Whether `header` is a valid signature of `body` (constant-time).
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Webhook setup failures.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// No randomness.
    #[error("cannot draw a random secret: {0}")]
    Random(String),
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// `POST /hooks/{pipeline}`.
pub async fn hook(
    State(app): State<Arc<App>>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let metrics = Metrics::global();
    let db = app.registry.db();
    let sealed = match db.webhook_secret(&pipeline) {
        Ok(Some(s)) => s,
        Ok(None) => {
            metrics.webhook(&pipeline, "unknown");
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
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify(secret.expose(), &body, signature) {
        metrics.webhook(&pipeline, "bad_signature");
        tracing::warn!(pipeline, "webhook refused: missing or bad signature");
        return answer(
            StatusCode::UNAUTHORIZED,
            "missing or bad X-Nexo-Signature: send sha256=<hex HMAC-SHA256 of the body under the pipeline's webhook secret>",
        );
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
            crate::serve::api::ApiError::from(e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let sig = sign("whsec_a", b"{\"deal\":42}");
        assert!(sig.starts_with("sha256="));
        assert!(verify("whsec_a", b"{\"deal\":42}", &sig));
        assert!(!verify("whsec_b", b"{\"deal\":42}", &sig));
        assert!(!verify("whsec_a", b"{\"deal\":43}", &sig));
        assert!(!verify("whsec_a", b"{\"deal\":42}", ""));
        assert!(!verify("whsec_a", b"{\"deal\":42}", "sha256=zz"));
        assert!(!verify(
            "whsec_a",
            b"{\"deal\":42}",
            &sig.replace("sha256=", "md5=")
        ));
    }
}
