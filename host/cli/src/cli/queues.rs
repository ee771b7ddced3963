//! `nexo dlq …` and `nexo conflict …`: working the dead-letter and
//! conflict queues.

use anyhow::{Context, Result};

use crate::safe_text::{SafeText, safe_json};
use crate::store::audit::{Action, Change};
use crate::sync::{Engine, Side};

use super::sync::*;

pub(crate) async fn dlq(engine: &Engine, cmd: DlqCommand) -> Result<()> {
    let store = engine.store();
    match cmd {
        DlqCommand::List { pipeline, status } => {
            let letters = store.dead_letters(pipeline.as_deref(), status.filter())?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for l in letters {
                println!(
                    "{}  {}  {}  record {}  [{}{}] {}  ({})",
                    l.id,
                    l.pipeline,
                    l.letter.kind.as_str(),
                    SafeText::line(&l.letter.source_id),
                    l.letter.class,
                    l.letter
                        .field
                        .as_deref()
                        .map(|f| format!(", field {}", SafeText::line(f)))
                        .unwrap_or_default(),
                    SafeText::line(&l.letter.error),
                    l.status
                );
            }
        }
        DlqCommand::Show { id } => {
            let l = store
                .dead_letter(id)?
                .with_context(|| format!("no dead letter {id}; see `nexo dlq list`"))?;
            println!("dead letter {} ({})", l.id, l.status);
            println!("  pipeline  {} (run #{})", l.pipeline, l.run_id);
            println!("  kind      {}", l.letter.kind.as_str());
            println!("  record    {}", SafeText::line(&l.letter.source_id));
            println!("  class     {}", l.letter.class);
            if let Some(f) = &l.letter.field {
                println!("  field     {}", SafeText::line(f));
            }
            println!("  error     {}", SafeText::line(&l.letter.error));
            println!("  attempts  {}", l.letter.attempts);
            println!("  since     {}", l.created_at);
            let record: serde_json::Value =
                serde_json::from_str(&l.letter.record).unwrap_or(serde_json::Value::Null);
            println!(
                "  write     {}",
                safe_json(serde_json::to_string_pretty(&record)?).replace('\n', "\n            ")
            );
        }
        DlqCommand::Replay { id } => {
            let before = crate::serve::audit::dead_letter(store.as_ref(), id)?;
            let run = engine.replay(id).await?;
            let mut after = crate::serve::audit::dead_letter(store.as_ref(), id)?;
            if let Some(serde_json::Value::Object(a)) = after.as_mut() {
                a.insert("run_id".into(), serde_json::json!(run));
            }
            super::audit::record(
                engine.connections().registry().db(),
                crate::serve::audit::with(
                    Change::new(Action::DeadLetterReplay, format!("dlq/{id}")),
                    before,
                    after,
                ),
            )?;
            println!("dead letter {id} replayed (run #{run})");
        }
        DlqCommand::Discard { id } => {
            let before = crate::serve::audit::dead_letter(store.as_ref(), id)?;
            engine.discard(id)?;
            super::audit::record(
                engine.connections().registry().db(),
                crate::serve::audit::with(
                    Change::new(Action::DeadLetterDiscard, format!("dlq/{id}")),
                    before,
                    crate::serve::audit::dead_letter(store.as_ref(), id)?,
                ),
            )?;
            println!("dead letter {id} discarded");
        }
    }
    Ok(())
}

pub(crate) async fn conflict(engine: &Engine, cmd: ConflictCommand) -> Result<()> {
    let store = engine.store();
    match cmd {
        ConflictCommand::List { pipeline, status } => {
            let list = store.conflicts(pipeline.as_deref(), status.filter())?;
            if list.is_empty() {
                println!("no conflicts");
            }
            for c in list {
                println!(
                    "{}  {}  record {} ↔ {}  fields {}  ({}{})",
                    c.id,
                    c.pipeline,
                    SafeText::line(&c.conflict.source_id),
                    SafeText::line(&c.conflict.destination_id),
                    SafeText::line(&c.conflict.fields.join(", ")),
                    c.status,
                    c.conflict
                        .resolution
                        .as_deref()
                        .map(|r| format!(": {}", SafeText::line(r)))
                        .unwrap_or_default()
                );
            }
        }
        ConflictCommand::Show { id } => {
            let c = store
                .conflict(id)?
                .with_context(|| format!("no conflict {id}; see `nexo conflict list`"))?;
            let source: serde_json::Value =
                serde_json::from_str(&c.conflict.source_record).unwrap_or_default();
            let dest: serde_json::Value =
                serde_json::from_str(&c.conflict.destination_payload).unwrap_or_default();
            println!("conflict {} ({}) in {}", c.id, c.status, c.pipeline);
            println!(
                "  fields       {}",
                SafeText::line(&c.conflict.fields.join(", "))
            );
            for f in &c.conflict.fields {
                println!(
                    "    {}: source {}  destination {}",
                    SafeText::line(f),
                    safe_json(source["payload"][f].to_string()),
                    safe_json(dest[f].to_string())
                );
            }
            println!(
                "  resolve with `nexo conflict resolve {id} --keep source` or `--keep destination`"
            );
        }
        ConflictCommand::Resolve { id, keep } => {
            let side = match keep {
                Keep::Source => Side::Source,
                Keep::Destination => Side::Destination,
            };
            let before = crate::serve::audit::conflict(store.as_ref(), id)?;
            engine.resolve(id, side).await?;
            let mut after = crate::serve::audit::conflict(store.as_ref(), id)?;
            if let Some(serde_json::Value::Object(a)) = after.as_mut() {
                let kept = match side {
                    Side::Source => "source",
                    Side::Destination => "destination",
                };
                a.insert("kept".into(), serde_json::json!(kept));
            }
            super::audit::record(
                engine.connections().registry().db(),
                crate::serve::audit::with(
                    Change::new(Action::ConflictResolve, format!("conflict/{id}")),
                    before,
                    after,
                ),
            )?;
            println!("conflict {id} resolved");
        }
    }
    Ok(())
}
