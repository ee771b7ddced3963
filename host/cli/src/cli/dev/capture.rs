//! The plugin log of one `nexo plugin dev` round, caught from `tracing`.

use std::sync::{Arc, Mutex};

use crate::safe_text::SafeText;

/// A `tracing` layer keeping a round's plugin log lines (target
/// `nexo::plugin`) and the host's warnings and errors. It is the scoped
/// subscriber of the round's future, so it sees what that future's plugin
/// calls log (they are polled inside it) and nothing of other tasks.
#[derive(Clone, Default)]
pub(super) struct Capture(Arc<Mutex<Vec<String>>>);

impl Capture {
    /// The lines so far, leaving none.
    pub(super) fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut lines| std::mem::take(&mut *lines))
            .unwrap_or_default()
    }
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

impl<S> tracing_subscriber::Layer<S> for Capture
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
        let line = if meta.target() == "nexo::plugin" {
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
            lines.push(crate::sandbox::redact::scrub(&line).to_string());
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
