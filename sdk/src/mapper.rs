//! The `Mapper` trait for sandboxed mapping logic, and the glue that exports it.

use serde::de::DeserializeOwned;

use crate::{Error, Record};

/// Mapping logic: turns a batch of records into another batch.
///
/// A mapper runs with no network and no storage; it may only log. Export it
/// with [`export_mapper!`](crate::export_mapper). Return
/// [`Error::Rejected`] from `map` only when the whole batch is unusable; to
/// drop one bad record, leave it out and log why.
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

    /// Map `batch` into the destination's records.
    fn map(config: &Self::Config, batch: Vec<Record>) -> Result<Vec<Record>, Error>;
}

#[doc(hidden)]
pub mod glue {
    //! Adapts a [`Mapper`] to the generated `mapper` world.
    use super::*;
    use crate::wit::mapper::nexo::connector::types as wit;

    pub fn map<M: Mapper>(
        config: String,
        batch: Vec<wit::Record>,
    ) -> Result<Vec<wit::Record>, wit::Error> {
        let config = crate::connector::parse_config::<M::Config>(&config)?;
        let batch = batch.into_iter().map(Into::into).collect();
        Ok(M::map(&config, batch)?
            .into_iter()
            .map(Into::into)
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
                    ::std::vec::Vec<$crate::wit::mapper::nexo::connector::types::Record>,
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
