//! The plugin's log lines (target `nexo::plugin`) and the host's warnings,
//! captured while a future runs: the runtime emits them through `tracing`
//! inside the plugin call, which is polled inside that future, so a
//! dispatcher set for the future (`WithSubscriber`) sees them — and
//! nothing of other tasks. Each line names the call that logged it. Used by
//! the kit (secrets in logs) and `nexo plugin dev` (a round's log).

use std::sync::{Arc, Mutex};

use nexo_runtime::safe_text::SafeText;
use tracing_subscriber::layer::SubscriberExt as _;

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Whether the plugin logged it (else the host warned).
    pub plugin: bool,
    /// `LEVEL call: message` (host lines: `LEVEL host: call: message fields`),
    /// secret values scrubbed, one line.
    pub text: String,
}

/// A `tracing` layer keeping plugin log lines and the host's warnings and
/// errors; cheap to clone (the clones share the lines).
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<LogLine>>>);

impl Captured {
    /// The lines so far, leaving none.
    pub fn take(&self) -> Vec<LogLine> {
        self.0
            .lock()
            .map(|mut lines| std::mem::take(&mut *lines))
            .unwrap_or_default()
    }
}

/// A dispatcher capturing into the returned lines.
pub fn capture() -> (tracing::Dispatch, Captured) {
    let captured = Captured::default();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(captured.clone()));
    (dispatch, captured)
}

/// Whether an event is one the capture keeps, or a span whose call label
/// it puts before them (the runtime's `plugin_call`).
fn kept(meta: &tracing::Metadata<'_>) -> bool {
    if meta.is_span() {
        return meta.name() == "plugin_call";
    }
    meta.target() == "nexo::plugin" || *meta.level() <= tracing::Level::WARN
}

/// The `call` field of a `plugin_call` span (`read(contacts)`), kept in
/// the span's extensions.
struct CallLabel(String);

impl<S> tracing_subscriber::Layer<S> for Captured
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if kept(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        kept(meta)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(call), Some(span)) = (fields.call, ctx.span(id)) {
            span.extensions_mut().insert(CallLabel(call));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        // Which call logged it: many calls make one suite round.
        let call = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope
                    .into_iter()
                    .find_map(|span| span.extensions().get::<CallLabel>().map(|c| c.0.clone()))
            })
            .map(|c| format!("{c}: "))
            .unwrap_or_default();
        let plugin = meta.target() == "nexo::plugin";
        let line = if plugin {
            format!("{:>5} {call}{}", meta.level(), fields.message)
        } else {
            format!(
                "{:>5} host: {call}{}{}",
                meta.level(),
                fields.message,
                fields.rest
            )
        };
        if let Ok(mut lines) = self.0.lock() {
            lines.push(LogLine {
                plugin,
                text: nexo_runtime::sandbox::redact::scrub(&line).to_string(),
            });
        }
    }
}

/// An event's message and its other fields as ` name=value`; a span's
/// `call`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    call: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = SafeText::line(&format!("{value:?}")).to_string();
        } else if field.name() == "call" {
            self.call = Some(SafeText::line(&format!("{value:?}")).to_string());
        } else {
            let value = SafeText::line(&format!("{value:?}")).to_string();
            self.rest.push_str(&format!(" {}={value}", field.name()));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = SafeText::line(value).to_string();
        } else {
            self.rest
                .push_str(&format!(" {}={}", field.name(), SafeText::line(value)));
        }
    }
}
