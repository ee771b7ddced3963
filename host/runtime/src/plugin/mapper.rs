//! A mapper opened with its sandbox: no network, no storage, only `map`
//! on batches, each call in a fresh instance.

use std::collections::HashMap;

use super::*;
use crate::error::{CallRef, PluginRef};
use crate::inspect::WorldKind;
use crate::runtime::LoadedPlugin;

impl MapperPlugin {
    /// Open a mapper. Mappers get no HTTP and no storage, whatever is granted.
    pub fn open(plugin: &LoadedPlugin, sandbox: Sandbox) -> Result<Self, OpenError> {
        if plugin.info().world != WorldKind::Mapper {
            return Err(OpenError::WrongWorld {
                plugin: sandbox.plugin,
                actual: plugin.info().world,
                expected: WorldKind::Mapper,
            });
        }
        Ok(MapperPlugin {
            core: Core {
                plugin: plugin.clone(),
                sandbox,
                http: None,
                kv: None,
                warm: Default::default(),
            },
        })
    }

    /// Instantiate in a fresh store without calling anything: proves the
    /// plugin starts under its limits (and measures what a call costs
    /// before the plugin's own code runs). A 1.1 plugin's instance is then
    /// kept for its next call.
    pub async fn warm_up(&self) -> Outcome<()> {
        self.core.warm_up().await
    }

    /// Who the plugin is.
    pub fn plugin(&self) -> &PluginRef {
        &self.core.sandbox.plugin
    }

    /// `map(config, batch)`: one outcome per record of `batch`, in order,
    /// whichever contract version the mapper was built against. Each mapped
    /// record carries its input's id; every payload was checked.
    pub async fn map(&self, config: &str, batch: &[Record]) -> Outcome<Vec<MapOutcome>> {
        let call = Op::Map { config, batch };
        let label = call.label();
        let core = &self.core;
        let Outcome {
            result,
            events,
            elapsed,
        } = core.invoke(call).await.then(core, |r| match r {
            Reply::Map(r) => Some(r.map(Answer::PerInput)),
            Reply::MapBatch(r) => Some(r.map(Answer::Flat)),
            _ => None,
        });
        let result = result.and_then(|answer| match answer {
            Answer::PerInput(outcomes) => self.checked(&label, batch, outcomes),
            Answer::Flat(records) => {
                core.check_payloads(label.clone(), &records)?;
                per_input(batch, records).map_err(|reason| core.invalid_output(label, reason))
            }
        });
        Outcome {
            result,
            events,
            elapsed,
        }
    }

    /// `outcomes` once they are one per input, keyed by the inputs' ids, and
    /// every payload in them passes the boundary's check.
    fn checked(
        &self,
        label: &CallRef,
        batch: &[Record],
        mut outcomes: Vec<MapOutcome>,
    ) -> Result<Vec<MapOutcome>, PluginError> {
        if outcomes.len() != batch.len() {
            return Err(self.core.invalid_output(
                label.clone(),
                format!(
                    "it returned {} outcomes for a batch of {} records; a mapper returns one per input, in order",
                    outcomes.len(),
                    batch.len()
                ),
            ));
        }
        for (input, outcome) in batch.iter().zip(&mut outcomes) {
            if let MapOutcome::Mapped(records) = outcome {
                for r in records.iter_mut() {
                    if r.id != input.id {
                        r.id.clone_from(&input.id);
                    }
                }
                self.core.check_payloads(label.clone(), records)?;
            }
        }
        Ok(outcomes)
    }
}

/// A mapper's answer as its contract version gives it.
enum Answer {
    /// 1.1: one outcome per input.
    PerInput(Vec<MapOutcome>),
    /// 1.0: one flat batch.
    Flat(Vec<Record>),
}

/// A 1.0 mapper's flat output as one outcome per input: its records tied to
/// their input by id (1.0 asks a mapper to keep the source id). A record
/// whose id is no input's is the plugin's error.
fn per_input(batch: &[Record], records: Vec<Record>) -> Result<Vec<MapOutcome>, String> {
    let index: HashMap<&str, usize> = batch
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let mut outputs: Vec<Vec<Record>> = vec![Vec::new(); batch.len()];
    for r in records {
        let Some(&i) = index.get(r.id.as_str()) else {
            return Err(format!(
                "it returned a record with id `{}`, which is not the id of any record it was given; a mapper must keep the source id",
                r.id
            ));
        };
        outputs[i].push(r);
    }
    Ok(outputs.into_iter().map(MapOutcome::Mapped).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(id: &str) -> Record {
        Record {
            stream: "contacts".into(),
            id: id.into(),
            operation: Operation::Upsert,
            payload: "{}".into(),
            cursor: None,
        }
    }

    #[test]
    fn a_flat_batch_is_tied_to_its_inputs_by_id_and_a_left_out_record_is_skipped() {
        let batch = [rec("a"), rec("b"), rec("c")];
        let out = per_input(&batch, vec![rec("c"), rec("a")]).unwrap();
        assert_eq!(
            out,
            vec![
                MapOutcome::Mapped(vec![rec("a")]),
                MapOutcome::Mapped(vec![]),
                MapOutcome::Mapped(vec![rec("c")]),
            ]
        );
    }

    #[test]
    fn a_flat_batch_with_a_stranger_id_is_refused_naming_it() {
        let e = per_input(&[rec("a")], vec![rec("zz")]).unwrap_err();
        assert!(e.contains("`zz`"), "{e}");
    }
}
