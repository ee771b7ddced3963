//! The `Mapper` trait for sandboxed mapping logic, and the glue that exports it.

use serde::de::DeserializeOwned;

use crate::{Error, Record};

/// What a mapper made of one input record: the records to write (none:
/// left out on purpose), or why this record alone cannot be mapped — the
/// host quarantines it with that reason and the batch goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOutcome {
    /// Mapped to these records (in a pipeline: one, or none to leave the
    /// record out).
    Mapped(Vec<Record>),
    /// This record alone failed; usually [`Error::Rejected`] with the field
    /// at fault.
    Failed(Error),
}

impl MapOutcome {
    /// Mapped to one record.
    pub fn one(record: Record) -> Self {
        MapOutcome::Mapped(vec![record])
    }

    /// Left out on purpose (counted by the host, not lost).
    pub fn skipped() -> Self {
        MapOutcome::Mapped(Vec::new())
    }
}

impl From<Result<Option<Record>, Error>> for MapOutcome {
    /// A per-record mapping function's answer: mapped, left out, or failed.
    fn from(r: Result<Option<Record>, Error>) -> Self {
        match r {
            Ok(Some(record)) => MapOutcome::one(record),
            Ok(None) => MapOutcome::skipped(),
            Err(e) => MapOutcome::Failed(e),
        }
    }
}

/// Mapping logic: one [`MapOutcome`] per record of a batch, in order.
///
/// A mapper runs with no network and no storage; it may only log. Export it
/// with [`export_mapper!`](crate::export_mapper). Return an `Err` from
/// `map` only when the whole batch is unusable (a bad config, a bug); a
/// record that alone cannot be mapped is a [`MapOutcome::Failed`], which
/// the host quarantines with its reason while the others are written.
/// A mapper that maps each record on its own writes
/// `batch.iter().map(|r| my_map(config, r).into()).collect()` with a
/// `my_map` returning `Result<Option<Record>, Error>`.
///
/// # Config schema, checked at `pipeline apply`
///
/// The `mapper` world has no `spec()`, so a mapper ships its config's JSON
/// Schema as a file its `nexo-plugin.toml` names (`config_schema =
/// "config.schema.json"`); `nexo plugin pack` checks it is a valid JSON
/// Schema and signs it into the manifest. Generate it from the config
/// type with [`schema_of`](crate::schema_of) and keep a test that the file
/// equals it. At `pipeline apply` the host validates each step's config
/// against it, then calls `map` once with an empty batch, so checks done
/// while parsing or at the start of `map` surface at apply too.
///
/// A property whose config entries name OUTPUT fields carries the
/// keyword `"x-nexo-target"`: `"keys"` (an object whose keys are output
/// fields), `"values"` (an object whose string values are), or `"items"`
/// (an array of them); with schemars,
/// `#[schemars(extend("x-nexo-target" = "values"))]`. For a pipeline's
/// last mapper the host checks those fields (the first segment of a dotted
/// path) against the destination stream's listed `properties`, unless the
/// stream's `additionalProperties` is a schema declaring the other fields
/// it takes.
pub trait Mapper {
    /// The mapper's configuration (JSON), parsed before `map` runs.
    type Config: DeserializeOwned;

    /// Map `batch`: one outcome per record, in order.
    fn map(config: &Self::Config, batch: Vec<Record>) -> Result<Vec<MapOutcome>, Error>;
}

#[doc(hidden)]
pub mod glue {
    //! Adapts a [`Mapper`] to the generated `mapper` world.
    use super::*;
    use crate::wit::mapper::exports::nexo::connector::mapping as wit_mapping;
    use crate::wit::mapper::nexo::connector::types as wit;

    pub fn map<M: Mapper>(
        config: String,
        batch: Vec<wit::Record>,
    ) -> Result<Vec<wit_mapping::MapOutcome>, wit::Error> {
        let config = crate::connector::parse_config::<M::Config>(&config)?;
        let batch = batch.into_iter().map(Into::into).collect();
        Ok(M::map(&config, batch)?
            .into_iter()
            .map(|o| match o {
                MapOutcome::Mapped(records) => {
                    wit_mapping::MapOutcome::Mapped(records.into_iter().map(Into::into).collect())
                }
                MapOutcome::Failed(e) => wit_mapping::MapOutcome::Failed(e.into()),
            })
            .collect())
    }
}

/// Export a [`Mapper`] as the plugin's `mapper` world.
///
/// ```ignore
/// nexo_sdk::export_mapper!(MyMapping);
/// ```
#[macro_export]
macro_rules! export_mapper {
    ($ty:ty) => {
        // Natively (tests, benchmarks) a plugin crate is a plain library.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __NexoMapperExport;
            impl $crate::wit::mapper::exports::nexo::connector::mapping::Guest for __NexoMapperExport {
                fn map(
                    config: ::std::string::String,
                    batch: ::std::vec::Vec<$crate::wit::mapper::nexo::connector::types::Record>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<$crate::wit::mapper::exports::nexo::connector::mapping::MapOutcome>,
                    $crate::wit::mapper::nexo::connector::types::Error,
                > {
                    $crate::__private::mapper::map::<$ty>(config, batch)
                }
            }
            $crate::wit::mapper::__export_mapper_world!(__NexoMapperExport with_types_in $crate::wit::mapper);
        };
        $crate::__embed_version!();
    };
}
