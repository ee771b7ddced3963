//! The mapper suite: its config schema, determinism (the same input twice
//! gives the same output), totality (one outcome per input) and its time
//! on a batch of 1 000.

use std::time::{Duration, Instant};

use nexo_runtime::MapperPlugin;
use nexo_runtime::plugin::{MapOutcome, Operation, Record};

use crate::report::{Report, Verdict};
use crate::suite::{MapperSuite, Suite};
use crate::{Env, KitError};

/// The batch the budget check maps.
const BATCH: usize = 1_000;

pub(crate) async fn run(env: &Env, suite: &Suite, report: &mut Report) -> Result<(), KitError> {
    let m = env.mapper()?;
    let config = env.target().config.clone();
    let Some(input) = &suite.mapper else {
        for check in ["mapper.total", "mapper.deterministic", "mapper.budget"] {
            report.push(
                check,
                Verdict::Skip("no input: add [mapper] input = [{ id = …, payload = { … } }] to nexo-test.toml".into()),
                "",
                Duration::ZERO,
            );
        }
        return Ok(());
    };
    let batch = records(input, input.input.len());

    let t = Instant::now();
    let first = m.map(&config, &batch).await.into_result();
    let (verdict, detail) = match &first {
        Err(e) => (
            Verdict::Fail(format!("the map call failed as a whole: {e}")),
            String::new(),
        ),
        Ok(out) => (Verdict::Pass, summary(out)),
    };
    report.push("mapper.total", verdict, detail, t.elapsed());

    let t = Instant::now();
    let verdict = match (&first, m.map(&config, &batch).await.into_result()) {
        (Ok(a), Ok(b)) => match first_difference(a, &b) {
            None => Verdict::Pass,
            Some(i) => Verdict::Fail(format!(
                "the same input mapped twice gave different output for record {} (input {}): a mapper must not depend on time, randomness or memory kept between calls",
                batch[i].id,
                i + 1
            )),
        },
        (_, Err(e)) => Verdict::Fail(format!("the second map call failed: {e}")),
        (Err(_), _) => Verdict::Skip("the first map call failed".into()),
    };
    report.push("mapper.deterministic", verdict, "", t.elapsed());

    budget(&m, &config, input, report).await;
    Ok(())
}

async fn budget(m: &MapperPlugin, config: &str, input: &MapperSuite, report: &mut Report) {
    let batch = records(input, BATCH);
    let t = Instant::now();
    let result = m.map(config, &batch).await.into_result();
    let took = t.elapsed();
    let budget = Duration::from_millis(input.budget_ms);
    let verdict = match result {
        Err(e) => Verdict::Fail(format!("a batch of {BATCH} failed: {e}")),
        Ok(_) if took > budget => Verdict::Fail(format!(
            "a batch of {BATCH} took {} ms, over its budget of {} ms (mapper.budget_ms)",
            took.as_millis(),
            input.budget_ms
        )),
        Ok(_) => Verdict::Pass,
    };
    report.push(
        "mapper.budget",
        verdict,
        format!(
            "{BATCH} records in {} ms (budget {} ms)",
            took.as_millis(),
            input.budget_ms
        ),
        took,
    );
}

/// `n` input records: the samples repeated, each with its own id.
fn records(input: &MapperSuite, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let sample = &input.input[i % input.input.len()];
            let id = if i < input.input.len() {
                sample.id.clone()
            } else {
                format!("{}-{}", sample.id, i / input.input.len())
            };
            Record {
                stream: input.stream.clone(),
                id,
                operation: Operation::Upsert,
                payload: sample.payload.to_string(),
                cursor: None,
            }
        })
        .collect()
}

fn summary(out: &[MapOutcome]) -> String {
    let (mut mapped, mut skipped, mut failed) = (0, 0, 0);
    for o in out {
        match o {
            MapOutcome::Mapped(r) if r.is_empty() => skipped += 1,
            MapOutcome::Mapped(_) => mapped += 1,
            MapOutcome::Failed(_) => failed += 1,
        }
    }
    format!("{mapped} mapped, {skipped} skipped, {failed} failed")
}

/// The first input whose outcome differs between `a` and `b`.
fn first_difference(a: &[MapOutcome], b: &[MapOutcome]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| match (a.get(i), b.get(i)) {
        (Some(MapOutcome::Mapped(x)), Some(MapOutcome::Mapped(y))) => x != y,
        (Some(MapOutcome::Failed(x)), Some(MapOutcome::Failed(y))) => x != y,
        _ => true,
    })
}
