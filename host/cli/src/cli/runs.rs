//! `nexo runs`, `nexo run show` and `nexo identity`: the history of runs
//! and one record seen in every system.

use anyhow::{Context, Result, bail};

use crate::safe_text::{SafeText, safe_json};
use crate::sync::store::{RunFilter, RunStatus, SyncStore};

use super::sync::*;

pub(crate) fn runs(
    store: &dyn SyncStore,
    pipeline: Option<String>,
    status: Option<RunStatus>,
    limit: usize,
) -> Result<()> {
    let rows = store.runs(&RunFilter {
        pipeline,
        status,
        limit,
    })?;
    if rows.is_empty() {
        println!("no runs");
    }
    for r in rows {
        println!(
            "#{}  {}  {}  {}  {}ms  {}{}",
            r.id,
            r.pipeline,
            r.status,
            r.started_at,
            r.duration_ms.unwrap_or(0),
            counts_line(&r.counts),
            r.error
                .map(|e| format!("\n      error: {}", SafeText::line(&e)))
                .unwrap_or_default()
        );
    }
    Ok(())
}

pub(crate) fn run_show(db: &crate::store::Database, cmd: RunCommand) -> Result<()> {
    let store: &dyn SyncStore = db;
    let (id, json) = match cmd {
        RunCommand::Show { id, json } => (id, json),
        RunCommand::Stop { id } => {
            let run = crate::sync::request_stop(store, id)?;
            super::audit::record(
                db,
                crate::store::audit::Change::new(
                    crate::store::audit::Action::RunStop,
                    format!("run/{id}"),
                )
                .after(
                    serde_json::json!({"pipeline": run.pipeline, "status": run.status.to_string()}),
                ),
            )?;
            println!(
                "run #{id} of {} stops after its current page is committed; see `nexo run show {id}`",
                run.pipeline
            );
            return Ok(());
        }
    };
    let run = store
        .run(id)?
        .with_context(|| format!("no run #{id}; see `nexo runs`"))?;
    let records = store.run_records(id)?;
    let log = store.run_log(id)?;
    if json {
        let records: Vec<_> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "source_id": r.source_id,
                    "destination_id": r.destination_id,
                    "outcome": r.outcome.as_str(),
                    "detail": r.detail,
                })
            })
            .collect();
        println!(
            "{}",
            safe_json(serde_json::json!({
                "id": run.id, "pipeline": run.pipeline, "status": run.status,
                "started_at": run.started_at, "finished_at": run.finished_at,
                "duration_ms": run.duration_ms, "pages": run.pages, "counts": run.counts,
                "error": run.error, "records": records,
                "log": log.iter().map(|(at, level, m)| serde_json::json!({"at": at, "level": level, "message": m})).collect::<Vec<_>>(),
            }).to_string())
        );
        return Ok(());
    }
    println!("run #{} of {}: {}", run.id, run.pipeline, run.status);
    println!(
        "  started {}  finished {}  {} ms  {} pages",
        run.started_at,
        run.finished_at.as_deref().unwrap_or("-"),
        run.duration_ms.unwrap_or(0),
        run.pages
    );
    println!("  {}", counts_line(&run.counts));
    if let Some(e) = &run.error {
        println!("  error: {}", SafeText::line(e));
    }
    if !log.is_empty() {
        println!("log:");
        for (at, level, message) in &log {
            println!("  {at} {level:5} {}", SafeText::line(message));
        }
    }
    if !records.is_empty() {
        println!("records:");
        for r in &records {
            println!(
                "  {:11} {}{}{}",
                r.outcome.as_str(),
                SafeText::line(&r.source_id),
                r.destination_id
                    .as_deref()
                    .map(|d| format!(" → {}", SafeText::line(d)))
                    .unwrap_or_default(),
                r.detail
                    .as_deref()
                    .map(|d| format!("  ({})", SafeText::line(d)))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

pub(crate) fn identity(
    store: &dyn SyncStore,
    connection: &str,
    stream: &str,
    id: &str,
    json: bool,
) -> Result<()> {
    let links = store.record_links(connection, stream, id)?;
    if links.is_empty() {
        bail!(
            "no record {connection}/{stream}/{id} in the identity map (it is linked once a pipeline has read or written it)"
        );
    }
    // One record can stand for several entities (a won deal is a customer
    // and an invoice): each with its records in every system.
    let mut entities = Vec::with_capacity(links.len());
    for link in &links {
        entities.push((link.entity_id, store.entity(link.entity_id)?));
    }
    if json {
        let list: Vec<_> = entities
            .iter()
            .map(|(entity, all)| {
                let records: Vec<_> = all
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "connection": l.connection, "stream": l.stream, "id": l.record_id,
                            "deleted": l.deleted, "version": l.version,
                            "known": l.known.as_deref().and_then(|k| serde_json::from_str::<serde_json::Value>(k).ok()),
                        })
                    })
                    .collect();
                serde_json::json!({"entity": entity, "records": records})
            })
            .collect();
        println!("{}", safe_json(serde_json::Value::Array(list).to_string()));
        return Ok(());
    }
    for (entity, all) in &entities {
        println!("entity {entity}");
        for l in all {
            println!(
                "  {}/{}/{}{}{}",
                l.connection,
                l.stream,
                SafeText::line(&l.record_id),
                l.version
                    .as_deref()
                    .map(|v| format!("  (modified {})", SafeText::line(v)))
                    .unwrap_or_default(),
                if l.deleted { "  [deleted]" } else { "" }
            );
        }
    }
    Ok(())
}
