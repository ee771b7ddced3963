//! The connector suite: spec, check, read, write, faults and sandbox, in
//! that order (reads before writes, so a read sees the system as the
//! suite found it; the records the write checks create are deleted again
//! when the connector deletes). One module per area; this one runs them
//! and keeps what the whole suite saw.

mod faults;
mod read;
mod sandbox;
mod spec;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use nexo_runtime::plugin::{Record, WriteOutcome, WriteResult};
use nexo_runtime::sandbox::outbound::HttpError;
use nexo_runtime::state::SandboxEvent;

use crate::drive::{self, Reading, Retry, Trace};
use crate::report::{Report, Verdict};
use crate::suite::Suite;
use crate::{Env, KitError};

#[derive(Default)]
pub(super) struct Seen {
    /// Origins the sandbox refused, with the message.
    refused: BTreeSet<String>,
    /// Whether the plugin used key-value storage it was not granted.
    kv_refused: bool,
    /// Text the plugin produced (records, errors), with where it came from.
    texts: Vec<(String, String)>,
}

impl Seen {
    fn trace(&mut self, t: &Trace) {
        self.events(&t.events);
    }

    /// Notes what the sandbox refused.
    fn events(&mut self, events: &[SandboxEvent]) {
        for e in events {
            if let SandboxEvent::HttpRefused(
                e @ (HttpError::OriginNotAllowed(_)
                | HttpError::AddressNotAllowed(_)
                | HttpError::RedirectNotAllowed(_)),
            ) = e
            {
                self.refused.insert(e.to_string());
            }
            if let SandboxEvent::KvNotGranted = e {
                self.kv_refused = true;
            }
        }
    }

    fn reading(&mut self, stream: &str, r: &Reading) {
        self.trace(&r.trace);
        for rec in r.records() {
            self.texts.push((
                format!("a record of {stream} (id {})", rec.id),
                rec.payload.clone(),
            ));
        }
    }

    fn error(&mut self, what: &str, e: &dyn std::fmt::Display) {
        self.texts
            .push((format!("the error of {what}"), e.to_string()));
    }

    fn results(&mut self, stream: &str, results: &[WriteResult]) {
        for r in results {
            if let WriteOutcome::Failed(e) = &r.outcome {
                self.error(&format!("a write to {stream}"), e);
            }
        }
    }
}

/// A running check: its name and start.
pub(super) struct Timer(Instant);

impl Timer {
    pub(super) fn start() -> Timer {
        Timer(Instant::now())
    }
}

pub(super) fn push(
    report: &mut Report,
    name: String,
    t: Timer,
    verdict: Verdict,
    detail: impl Into<String>,
) {
    report.push(name, verdict, detail, t.0.elapsed());
}

pub(crate) async fn run(
    env: &mut Env,
    suite: &Suite,
    report: &mut Report,
    logs: &crate::logs::Captured,
) -> Result<(), KitError> {
    let c = env.connector(env.target().secrets.clone()).await?;
    let config = env.target().config.clone();
    let mut seen = Seen::default();

    let streams = spec::spec(&c, &config, suite, report, &mut seen).await;
    spec::check(env, &c, &config, report, &mut seen).await?;

    let mut baselines: BTreeMap<String, Reading> = BTreeMap::new();
    for s in streams.iter().filter(|s| s.can_read) {
        if let Some(r) = read::read(&c, &config, s, suite, report, &mut seen).await {
            baselines.insert(s.name.clone(), r);
        }
    }
    for s in streams.iter().filter(|s| s.can_write) {
        write::write(env, &c, &config, s, suite, report, &mut seen).await;
    }
    // Faults on a read need a stream with records: one read at the start,
    // else one the write checks left records in.
    let mut fault_read = baselines
        .iter()
        .find(|(_, r)| r.records().next().is_some())
        .map(|(s, r)| (s.clone(), None::<Reading>, r.pages.len()));
    if fault_read.is_none() {
        for s in streams.iter().filter(|s| s.can_read) {
            let (r, result) = drive::read_to_end(
                &c,
                &config,
                &s.name,
                None,
                suite.read.max_pages,
                Retry::default(),
            )
            .await;
            seen.reading(&s.name, &r);
            if result.is_ok() && r.records().next().is_some() {
                let pages = r.pages.len();
                fault_read = Some((s.name.clone(), Some(r), pages));
                break;
            }
        }
    }
    match fault_read {
        Some((stream, fresh, _)) => {
            let base = match &fresh {
                Some(r) => r,
                None => &baselines[&stream],
            };
            faults::read_faults(env, &c, &config, &stream, base, report, &mut seen).await;
        }
        None => report.push(
            "faults.read",
            Verdict::Skip(
                "no stream has records to read: seed the system (or give write samples)".into(),
            ),
            "",
            std::time::Duration::ZERO,
        ),
    }
    if let Some(s) = streams
        .iter()
        .find(|s| s.can_write && write::samples(suite, &s.name).is_some())
    {
        faults::write_faults(env, &c, &config, s, suite, report, &mut seen).await;
    }
    for line in logs.take() {
        if line.plugin {
            seen.texts
                .push(("a log line".to_string(), line.text.clone()));
        }
        report.log.push(line.text);
    }
    sandbox::sandbox(env, &c, report, &seen);
    Ok(())
}

pub(super) fn fail_if(problems: Vec<String>) -> Verdict {
    if problems.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(problems.join("; "))
    }
}

pub(super) fn ids<'a>(records: impl Iterator<Item = &'a Record>) -> BTreeSet<String> {
    records.map(|r| r.id.clone()).collect()
}

pub(super) fn sample(ids: &[&String]) -> String {
    let mut s: Vec<&str> = ids.iter().take(5).map(|s| s.as_str()).collect();
    if ids.len() > 5 {
        s.push("…");
    }
    s.join(", ")
}
