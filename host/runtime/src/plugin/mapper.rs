//! A mapper opened with its sandbox: no network, no storage, only `map`
//! on batches, each call in a fresh instance.

use super::*;
use crate::error::PluginRef;
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
            },
        })
    }

    /// Instantiate in a fresh store without calling anything: proves the
    /// plugin starts under its limits (and measures what a call costs
    /// before the plugin's own code runs).
    pub async fn warm_up(&self) -> Outcome<()> {
        self.core.warm_up().await
    }

    /// Who the plugin is.
    pub fn plugin(&self) -> &PluginRef {
        &self.core.sandbox.plugin
    }

    /// `map(config, batch)`.
    pub async fn map(&self, config: &str, batch: &[Record]) -> Outcome<Vec<Record>> {
        let call = Op::Map { config, batch };
        let label = call.label();
        let mut out = self.core.invoke(call).await.then(&self.core, |r| match r {
            Reply::Map(r) => Some(r),
            _ => None,
        });
        if let Ok(records) = &out.result
            && let Err(e) = self.core.check_payloads(label, records)
        {
            out.result = Err(e);
        }
        out
    }
}
