//! Sending one notice on one channel: a signed JSON `POST` (the signature
//! scheme of Nexo's inbound webhooks, [`crate::webhook::sign`], so a
//! receiver verifies it the same way), or an e-mail over SMTP (lettre, on
//! tokio and rustls; STARTTLS, TLS, or plain to this machine only). Errors
//! say what failed and never carry the channel's secret.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{Value, json};

use super::{ChannelConfig, SmtpSecurity};
use nexo_db::alerts::{Incident, Notice};
use nexo_runtime::sandbox::secrets::SecretValue;

/// The header naming the event of a webhook notice.
pub const EVENT_HEADER: &str = "x-nexo-event";
/// How long one attempt may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// What a notice says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An incident opened.
    Opened(Incident),
    /// An incident was resolved.
    Resolved(Incident),
    /// The channel's test button.
    Test {
        /// The channel tested.
        channel: String,
    },
}

impl Event {
    /// The notice of a delivery.
    pub fn of(notice: Notice, incident: Incident) -> Self {
        match notice {
            Notice::Opened => Event::Opened(incident),
            Notice::Resolved => Event::Resolved(incident),
        }
    }

    /// `incident.opened`, `incident.resolved` or `test`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Opened(_) => "incident.opened",
            Event::Resolved(_) => "incident.resolved",
            Event::Test { .. } => "test",
        }
    }

    /// The e-mail subject line.
    pub fn subject(&self) -> String {
        match self {
            Event::Opened(i) => format!("[Nexo] {}: {}", i.rule, i.subject),
            Event::Resolved(i) => format!("[Nexo] resolved: {}: {}", i.rule, i.subject),
            Event::Test { channel } => format!("[Nexo] test of alert channel {channel}"),
        }
    }

    /// The e-mail body.
    pub fn text(&self) -> String {
        match self {
            Event::Opened(i) => format!(
                "{}\n\nrule:     {}\nsubject:  {}\nsince:    {}\nincident: {}\n\nYou will get one more message when it is resolved.\n",
                i.summary, i.rule, i.subject, i.opened_at, i.id
            ),
            Event::Resolved(i) => format!(
                "Resolved: {}\n\nrule:     {}\nsubject:  {}\nsince:    {}\nresolved: {}\nincident: {}\n",
                i.summary,
                i.rule,
                i.subject,
                i.opened_at,
                i.resolved_at.as_deref().unwrap_or("-"),
                i.id
            ),
            Event::Test { channel } => {
                format!("This is a test of the Nexo alert channel {channel}. It works.\n")
            }
        }
    }

    /// The webhook body.
    pub fn json(&self) -> Value {
        let incident = |i: &Incident| {
            json!({
                "id": i.id,
                "rule": i.rule,
                "subject": i.subject,
                "summary": i.summary,
                "opened_at": i.opened_at,
                "resolved_at": i.resolved_at,
            })
        };
        match self {
            Event::Opened(i) | Event::Resolved(i) => {
                json!({"event": self.name(), "incident": incident(i)})
            }
            Event::Test { channel } => json!({"event": "test", "channel": channel}),
        }
    }
}

/// A failed attempt, said without the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

fn failed(what: &str, e: impl std::fmt::Display, secret: Option<&SecretValue>) -> SendError {
    let mut text = format!("{what}: {e}");
    if let Some(s) = secret.filter(|s| !s.expose().is_empty()) {
        text = text.replace(s.expose(), "***");
    }
    SendError(text)
}

/// Send `event` on a channel configured as `config`, with its `secret`.
pub async fn send(
    config: &ChannelConfig,
    secret: Option<&SecretValue>,
    event: &Event,
) -> Result<(), SendError> {
    match config {
        ChannelConfig::Webhook { url } => {
            let Some(secret) = secret else {
                return Err(SendError(
                    "the webhook channel has no signing secret; add it again with one".into(),
                ));
            };
            let body = event.json().to_string().into_bytes();
            let signature = crate::webhook::sign_now(secret.expose(), &body);
            let client = reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| failed("cannot build the HTTP client", e, Some(secret)))?;
            let resp = client
                .post(url)
                .header("content-type", "application/json")
                .header(crate::webhook::SIGNATURE_HEADER, signature)
                .header(EVENT_HEADER, event.name())
                .body(body)
                .send()
                .await
                .map_err(|e| failed(&format!("POST {url}"), e.without_url(), Some(secret)))?;
            if !resp.status().is_success() {
                return Err(SendError(format!("POST {url} answered {}", resp.status())));
            }
            Ok(())
        }
        ChannelConfig::Email {
            host,
            port,
            security,
            username,
            from,
            to,
        } => {
            let mut mail = lettre::Message::builder()
                .from(
                    from.parse()
                        .map_err(|e| failed("sender address", e, None))?,
                )
                .subject(event.subject())
                .header(ContentType::TEXT_PLAIN);
            for t in to {
                mail = mail.to(t
                    .parse()
                    .map_err(|e| failed("recipient address", e, None))?);
            }
            let mail = mail
                .body(event.text())
                .map_err(|e| failed("cannot build the e-mail", e, None))?;
            let builder = match security {
                SmtpSecurity::Starttls => {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                }
                SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
                SmtpSecurity::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                    host.as_str(),
                )),
            }
            .map_err(|e| failed(&format!("SMTP server {host}"), e, secret))?;
            let mut builder = builder
                .port(*port)
                .timeout(Some(TIMEOUT))
                .hello_name(ClientId::Domain("nexo.localhost".into()));
            if let (Some(user), Some(password)) = (username, secret) {
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.expose().to_string(),
                ));
            }
            builder
                .build()
                .send(mail)
                .await
                .map_err(|e| failed(&format!("SMTP {host}:{port}"), e, secret))?;
            Ok(())
        }
    }
}
