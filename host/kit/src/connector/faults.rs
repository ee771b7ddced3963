//! `faults.STREAM.*`: failures the proxy injects between the plugin and
//! the system, each of which must be classed so the host retries, and
//! must never duplicate a record.

use nexo_runtime::ConnectorPlugin;
use nexo_runtime::plugin::StreamInfo;

use super::write::{Writer, clean_up, live, new_ids, outcome_line, samples, upsert, written_id};
use super::{Seen, Timer, ids, push};
use crate::Env;
use crate::drive::{self, DriveError, Reading, Retry};
use crate::proxy::{Fault, Only};
use crate::report::{Report, Verdict};
use crate::suite::Suite;

pub(super) async fn read_faults(
    env: &Env,
    c: &ConnectorPlugin,
    config: &str,
    stream: &str,
    base: &Reading,
    report: &mut Report,
    seen: &mut Seen,
) {
    let first = ids(base.pages[0].records.iter());
    for fault in [
        Fault::TooManyRequests,
        Fault::ServerError,
        Fault::Unavailable,
        Fault::Dropped,
        Fault::Slow,
    ] {
        let t = Timer::start();
        env.arm(fault, Only::Any);
        let (r, result) = drive::read_to_end(c, config, stream, None, 1, Retry::default()).await;
        let fired = env.disarm();
        seen.reading(stream, &r);
        let got = ids(r.pages.iter().flat_map(|p| p.records.iter()));
        let retried = r.trace.retried.clone();
        let verdict = match result {
            _ if !fired => Verdict::Skip("the read sent no request to inject into".into()),
            Err(DriveError::TooManyPages { .. }) | Ok(()) if got == first => Verdict::Pass,
            Err(DriveError::TooManyPages { .. }) | Ok(()) => Verdict::Fail(format!(
                "with the fault the first page held {} record(s), without it {}: the plugin swallowed the failure instead of reporting it",
                got.len(),
                first.len()
            )),
            Err(e) => Verdict::Fail(match e.guest() {
                Some(g) => format!(
                    "a {} came back as `{}` ({g}): report it as `transient` (or `rate-limited`) so the host retries",
                    describe(fault),
                    g.class()
                ),
                None => format!("a {} made the read fail: {e}", describe(fault)),
            }),
        };
        let detail = if retried.is_empty() {
            "handled within the call".to_string()
        } else {
            format!("retried after {}", retried.join(", "))
        };
        push(
            report,
            format!("faults.{stream}.read-{}", fault.label()),
            t,
            verdict,
            detail,
        );
    }
}

pub(super) fn describe(fault: Fault) -> &'static str {
    match fault {
        Fault::TooManyRequests => "429 Too Many Requests",
        Fault::ServerError => "500 from the system",
        Fault::Unavailable => "503 Service Unavailable",
        Fault::Dropped => "dropped connection",
        Fault::LostAnswer => "lost answer",
        Fault::Slow => "slow answer",
    }
}

pub(super) async fn write_faults(
    env: &Env,
    c: &ConnectorPlugin,
    config: &str,
    s: &StreamInfo,
    suite: &Suite,
    report: &mut Report,
    seen: &mut Seen,
) {
    let name = &s.name;
    let Some((samples, create)) = samples(suite, name) else {
        return;
    };
    let mut w = Writer::new(env, c, config, name, 1000);
    let mut made: Vec<String> = Vec::new();
    for fault in [Fault::ServerError, Fault::LostAnswer] {
        let what = describe(fault);
        let t = Timer::start();
        let before = live(c, config, s, seen).await;
        env.arm(fault, Only::Writes);
        let record = upsert(name, "", w.key(), &w.unique(create));
        let result = w.send(std::slice::from_ref(&record), seen).await;
        let fired = env.disarm();
        let after = live(c, config, s, seen).await;
        let new = new_ids(&before, &after);
        made.extend(new.clone().unwrap_or_default());
        let verdict = match result {
            _ if !fired => Verdict::Skip("the write sent no request to inject into".into()),
            Err(e) => Verdict::Fail(match e.guest() {
                Some(g) => format!(
                    "a write that met a {what} came back as `{}` ({g}): report it as `transient` so the same record (same idempotency key) is sent again",
                    g.class()
                ),
                None => format!("a write that met a {what} failed: {e}"),
            }),
            Ok((r, trace)) => {
                if let Some(id) = written_id(&r[0]) {
                    made.push(id.to_string());
                }
                match &new {
                    Some(n) if n.len() > 1 => Verdict::Fail(format!(
                        "the create was made {} times after a {what} (ids {}): send the record's idempotency key so the system makes it once",
                        n.len(),
                        n.join(", ")
                    )),
                    Some(n) if n.is_empty() => Verdict::Fail(format!(
                        "the write reported `{}` but no new record is there",
                        outcome_line(&r[0])
                    )),
                    _ if trace.retried.is_empty() => Verdict::Fail(format!(
                        "the write reported success although it met a {what}: it cannot know the record was made"
                    )),
                    _ => Verdict::Pass,
                }
            }
        };
        push(
            report,
            format!("faults.{name}.write-{}", fault.label()),
            t,
            verdict,
            "",
        );
    }
    if samples.deletes.supported() {
        made.sort();
        made.dedup();
        clean_up(&mut w, &made, seen).await;
    }
}
