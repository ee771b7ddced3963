//! The `Connector` trait a vendor implements, and the glue that exports it.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{Error, Page, Record, WriteResult};

/// A connector to one business system.
///
/// Implement it on a unit struct and export it with
/// [`export_connector!`](crate::export_connector). The host drives the
/// calls: `check` before a connection is saved, `discover` to list streams,
/// `read` page by page, `write` batch by batch. Each call gets the config,
/// already parsed into [`Connector::Config`]; a config that does not parse is
/// answered with [`Error::InvalidConfig`] naming the field, before your code
/// runs.
pub trait Connector {
    /// The connector's configuration. Its JSON Schema is published in `spec`.
    type Config: DeserializeOwned + JsonSchema;

    /// Streams and capabilities (origins, secrets, storage) the connector needs.
    fn spec() -> ConnectorSpec;

    /// Whether the config can connect and authenticate.
    fn check(config: &Self::Config) -> Result<(), Error>;

    /// The streams available with this config.
    fn discover(config: &Self::Config) -> Result<Vec<StreamInfo>, Error>;

    /// One page of `stream` after `state` (`None`: from the beginning).
    fn read(config: &Self::Config, stream: &str, state: Option<&str>) -> Result<Page, Error>;

    /// Apply a batch to `stream`; one result per record, in batch order.
    /// The default refuses: the connector is read-only.
    fn write(
        config: &Self::Config,
        stream: &str,
        batch: Vec<Record>,
    ) -> Result<Vec<WriteResult>, Error> {
        let _ = (config, batch);
        Err(Error::AccessDenied(format!(
            "stream {stream} is read-only in this connector"
        )))
    }
}

/// A secret a connector needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRequirement {
    /// Name used in `{{secret:NAME}}`.
    pub name: String,
    /// What it is, for the admin.
    pub description: String,
    /// Origins it may be sent to.
    pub origins: Vec<String>,
}

/// What [`Connector::spec`] returns: streams and requested capabilities.
/// The config schema and SDK version are filled in by the SDK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorSpec {
    /// Stream names.
    pub streams: Vec<String>,
    /// Origins (`scheme://host[:port]`) the connector calls.
    pub http_origins: Vec<String>,
    /// Secrets it uses.
    pub secrets: Vec<SecretRequirement>,
    /// Bytes of key-value storage it needs.
    pub kv_bytes: u64,
}

impl ConnectorSpec {
    /// A spec with these streams and no capabilities yet.
    pub fn new<S: Into<String>>(streams: impl IntoIterator<Item = S>) -> Self {
        ConnectorSpec {
            streams: streams.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
    /// Ask for outbound HTTP to `origin`.
    pub fn http_origin(mut self, origin: impl Into<String>) -> Self {
        self.http_origins.push(origin.into());
        self
    }
    /// Ask for a secret bound to `origins`.
    pub fn secret<S: Into<String>>(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        origins: impl IntoIterator<Item = S>,
    ) -> Self {
        self.secrets.push(SecretRequirement {
            name: name.into(),
            description: description.into(),
            origins: origins.into_iter().map(Into::into).collect(),
        });
        self
    }
    /// Ask for `bytes` of key-value storage.
    pub fn kv_bytes(mut self, bytes: u64) -> Self {
        self.kv_bytes = bytes;
        self
    }
}

/// A stream and its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Stream name.
    pub name: String,
    /// JSON Schema of one payload, as text.
    pub json_schema: String,
    /// Fields forming the primary key.
    pub primary_key: Vec<String>,
    /// The incremental cursor field, if any.
    pub cursor_field: Option<String>,
    /// Whether the stream can be read.
    pub can_read: bool,
    /// Whether the stream can be written.
    pub can_write: bool,
}

impl StreamInfo {
    /// A readable, not writable stream with primary key `id`.
    pub fn new(name: impl Into<String>, json_schema: impl Into<String>) -> Self {
        StreamInfo {
            name: name.into(),
            json_schema: json_schema.into(),
            primary_key: vec!["id".to_string()],
            cursor_field: None,
            can_read: true,
            can_write: false,
        }
    }
    /// Set the primary key fields.
    pub fn primary_key<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.primary_key = fields.into_iter().map(Into::into).collect();
        self
    }
    /// Set the cursor field.
    pub fn cursor_field(mut self, field: impl Into<String>) -> Self {
        self.cursor_field = Some(field.into());
        self
    }
    /// Mark the stream writable.
    pub fn writable(mut self) -> Self {
        self.can_write = true;
        self
    }
    /// Mark the stream not readable (write-only).
    pub fn write_only(mut self) -> Self {
        self.can_read = false;
        self.can_write = true;
        self
    }
}

/// Parse a config, naming the offending field on failure.
pub(crate) fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C, Error> {
    let mut de = serde_json::Deserializer::from_str(config);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "the config".to_string()
        } else {
            format!("field `{path}`")
        };
        Error::InvalidConfig(format!(
            "{field}: {} (see the config schema in `nexo plugin inspect`)",
            e.inner()
        ))
    })
}

#[doc(hidden)]
pub mod glue {
    //! Adapts a [`Connector`] to the generated `connector` world.
    use super::*;
    use crate::wit::connector::exports::nexo::connector::operations::WriteRecord;
    use crate::wit::connector::nexo::connector::types as wit;

    pub fn spec<C: Connector>() -> wit::PluginSpec {
        let s = C::spec();
        wit::PluginSpec {
            sdk_version: format!("nexo-sdk {}", crate::SDK_VERSION),
            config_schema: crate::schema_of::<C::Config>(),
            streams: s.streams,
            capabilities: wit::Capabilities {
                http_origins: s.http_origins,
                secrets: s
                    .secrets
                    .into_iter()
                    .map(|r| wit::SecretRequirement {
                        name: r.name,
                        description: r.description,
                        origins: r.origins,
                    })
                    .collect(),
                kv_bytes: s.kv_bytes,
            },
        }
    }

    pub fn check<C: Connector>(config: String) -> Result<(), wit::Error> {
        let config = parse_config::<C::Config>(&config)?;
        Ok(C::check(&config)?)
    }

    pub fn discover<C: Connector>(config: String) -> Result<Vec<wit::StreamInfo>, wit::Error> {
        let config = parse_config::<C::Config>(&config)?;
        Ok(C::discover(&config)?
            .into_iter()
            .map(|s| wit::StreamInfo {
                name: s.name,
                json_schema: s.json_schema,
                primary_key: s.primary_key,
                cursor_field: s.cursor_field,
                can_read: s.can_read,
                can_write: s.can_write,
            })
            .collect())
    }

    pub fn read<C: Connector>(
        config: String,
        stream: String,
        state: Option<String>,
    ) -> Result<wit::Page, wit::Error> {
        let config = parse_config::<C::Config>(&config)?;
        Ok(C::read(&config, &stream, state.as_deref())?.into())
    }

    pub fn write<C: Connector>(
        config: String,
        stream: String,
        batch: Vec<WriteRecord>,
    ) -> Result<Vec<wit::WriteResult>, wit::Error> {
        let config = parse_config::<C::Config>(&config)?;
        let batch = batch.into_iter().map(Record::from_write).collect();
        Ok(C::write(&config, &stream, batch)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

/// Export a [`Connector`] as the plugin's `connector` world.
///
/// ```ignore
/// nexo_sdk::export_connector!(MyCrm);
/// ```
#[macro_export]
macro_rules! export_connector {
    ($ty:ty) => {
        // Natively (tests, benchmarks) a plugin crate is a plain library.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __NexoConnectorExport;
            impl $crate::wit::connector::exports::nexo::connector::operations::Guest for __NexoConnectorExport {
                fn spec() -> $crate::wit::connector::nexo::connector::types::PluginSpec {
                    $crate::__private::connector::spec::<$ty>()
                }
                fn check(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), $crate::wit::connector::nexo::connector::types::Error>
                {
                    $crate::__private::connector::check::<$ty>(config)
                }
                fn discover(
                    config: ::std::string::String,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<$crate::wit::connector::nexo::connector::types::StreamInfo>,
                    $crate::wit::connector::nexo::connector::types::Error,
                > {
                    $crate::__private::connector::discover::<$ty>(config)
                }
                fn read(
                    config: ::std::string::String,
                    stream: ::std::string::String,
                    state: ::std::option::Option<::std::string::String>,
                ) -> ::std::result::Result<
                    $crate::wit::connector::nexo::connector::types::Page,
                    $crate::wit::connector::nexo::connector::types::Error,
                > {
                    $crate::__private::connector::read::<$ty>(config, stream, state)
                }
                fn write(
                    config: ::std::string::String,
                    stream: ::std::string::String,
                    batch: ::std::vec::Vec<$crate::wit::connector::exports::nexo::connector::operations::WriteRecord>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<$crate::wit::connector::nexo::connector::types::WriteResult>,
                    $crate::wit::connector::nexo::connector::types::Error,
                > {
                    $crate::__private::connector::write::<$ty>(config, stream, batch)
                }
            }
            $crate::wit::connector::__export_connector_world!(__NexoConnectorExport with_types_in $crate::wit::connector);
        };
        $crate::__embed_version!();
    };
}
