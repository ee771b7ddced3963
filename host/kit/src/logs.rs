//! The plugin's own log lines (target `nexo::plugin`), captured while a
//! future runs: the runtime emits them through `tracing` inside the plugin
//! call, which is polled inside the future, so a dispatcher set for that
//! future sees them. Host warnings still reach stderr.

use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The target the runtime logs plugin lines under.
const PLUGIN_TARGET: &str = "nexo::plugin";

/// Lines captured so far: (level, message).
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<(Level, String)>>>);

impl Captured {
    /// Takes the lines captured since the last call.
    pub fn take(&self) -> Vec<(Level, String)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

struct Capture(Captured);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != PLUGIN_TARGET {
            return;
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        (self.0)
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((*event.metadata().level(), m.0));
    }
}

/// A dispatcher capturing every plugin line (all levels) and writing host
/// warnings to stderr; the captured lines.
pub fn capture() -> (Dispatch, Captured) {
    let captured = Captured::default();
    let plugin = Capture(captured.clone())
        .with_filter(Targets::new().with_target(PLUGIN_TARGET, LevelFilter::TRACE));
    let host = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            Targets::new()
                .with_default(LevelFilter::WARN)
                .with_target(PLUGIN_TARGET, LevelFilter::OFF),
        );
    let subscriber = tracing_subscriber::registry().with(plugin).with(host);
    (Dispatch::new(subscriber), captured)
}
