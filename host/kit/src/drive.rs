//! Calling a connector the way the sync engine does: a read page by page to
//! its end, waiting out rate limits and retrying passing failures; a write
//! batch sent again after either. What the sandbox refused along the way is
//! kept, so a caller can tell what the plugin tried.

use std::time::{Duration, Instant};

use nexo_runtime::plugin::{Page, Record, WriteResult};
use nexo_runtime::state::SandboxEvent;
use nexo_runtime::{ConnectorPlugin, GuestError, PluginError};

/// Longest wait for a rate limit the kit accepts before it gives up.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// How hard to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Calls per page or batch, the first included.
    pub attempts: u32,
    /// Wait after a passing (`transient`) failure.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            backoff: Duration::from_millis(50),
        }
    }
}

/// Why a read or write could not be driven to its end.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// A call failed and retrying did not help (or the class says not to).
    #[error("{0}")]
    Plugin(#[from] PluginError),
    /// A read went on past its bound.
    #[error("read of {stream} did not end within {pages} pages (a loop?)")]
    TooManyPages {
        /// The stream.
        stream: String,
        /// The bound.
        pages: u32,
    },
    /// A read handed back a state it had handed back before, with more to
    /// read: it would loop forever.
    #[error("read of {stream} returned the same state twice with more to read: it loops")]
    RepeatedState {
        /// The stream.
        stream: String,
    },
    /// A rate limit asked for a wait longer than the kit accepts.
    #[error("{stream}: rate limited for {ms} ms, longer than the kit waits")]
    WaitTooLong {
        /// The stream.
        stream: String,
        /// The wait asked for.
        ms: u64,
    },
}

impl DriveError {
    /// The guest's own error, when a call failed with one.
    pub fn guest(&self) -> Option<&GuestError> {
        match self {
            DriveError::Plugin(PluginError::Guest { error, .. }) => Some(error),
            _ => None,
        }
    }
}

/// What a driven call saw besides its result.
#[derive(Debug, Default)]
pub struct Trace {
    /// Refusals and drops recorded by the sandbox.
    pub events: Vec<SandboxEvent>,
    /// The class of each failure that was retried, in order.
    pub retried: Vec<&'static str>,
}

/// A read to its end.
#[derive(Debug, Default)]
pub struct Reading {
    /// The pages, in order.
    pub pages: Vec<Page>,
    /// What the calls saw.
    pub trace: Trace,
}

impl Reading {
    /// Every record of every page, in order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.pages.iter().flat_map(|p| p.records.iter())
    }

    /// The state after the last page.
    pub fn state(&self) -> Option<String> {
        self.pages.last().and_then(|p| p.state.clone())
    }
}

/// How long to wait before calling again after `e`; `None`: do not.
fn wait_for(e: &PluginError, retry: &Retry) -> Option<Duration> {
    match e {
        PluginError::Guest {
            error: GuestError::RateLimited { retry_after_ms },
            ..
        } => Some(Duration::from_millis(*retry_after_ms)),
        PluginError::Guest {
            error: GuestError::Transient(_),
            ..
        } => Some(retry.backoff),
        _ => None,
    }
}

/// Reads `stream` from `state` to its end (at most `max_pages` pages).
/// The reading so far comes back with the error when it fails.
pub async fn read_to_end(
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    mut state: Option<String>,
    max_pages: u32,
    retry: Retry,
) -> (Reading, Result<(), DriveError>) {
    let mut reading = Reading::default();
    let mut seen_states = std::collections::HashSet::new();
    let result = loop {
        if reading.pages.len() >= max_pages as usize {
            break Err(DriveError::TooManyPages {
                stream: stream.into(),
                pages: max_pages,
            });
        }
        let page = match call_retrying(&mut reading.trace, retry, stream, || {
            c.read(config, stream, state.as_deref())
        })
        .await
        {
            Ok(page) => page,
            Err(e) => break Err(e),
        };
        let more = page.has_more;
        state = page.state.clone();
        reading.pages.push(page);
        if !more {
            break Ok(());
        }
        if let Some(s) = &state
            && !seen_states.insert(s.clone())
        {
            break Err(DriveError::RepeatedState {
                stream: stream.into(),
            });
        }
    };
    (reading, result)
}

/// Writes `batch` to `stream`, sending the same batch again after a rate
/// limit or a passing failure, as the engine does.
pub async fn write_retrying(
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    batch: &[Record],
    retry: Retry,
) -> (Trace, Result<Vec<WriteResult>, DriveError>) {
    let mut trace = Trace::default();
    let result = call_retrying(&mut trace, retry, stream, || c.write(config, stream, batch)).await;
    (trace, result)
}

async fn call_retrying<T, F, Fut>(
    trace: &mut Trace,
    retry: Retry,
    stream: &str,
    mut call: F,
) -> Result<T, DriveError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = nexo_runtime::Outcome<T>>,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = call().await;
        trace.events.extend(outcome.events);
        match outcome.result {
            Ok(v) => return Ok(v),
            Err(e) => {
                let Some(wait) = wait_for(&e, &retry) else {
                    return Err(DriveError::Plugin(e));
                };
                if wait > MAX_WAIT {
                    return Err(DriveError::WaitTooLong {
                        stream: stream.to_string(),
                        ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                if attempt >= retry.attempts || started.elapsed() + wait > MAX_WAIT * 2 {
                    return Err(DriveError::Plugin(e));
                }
                trace.retried.push(match &e {
                    PluginError::Guest { error, .. } => error.class(),
                    _ => "host",
                });
                tokio::time::sleep(wait).await;
            }
        }
    }
}
