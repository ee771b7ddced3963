//! What a component says about itself without running it: its world (from
//! its exports), its imports (with their WIT versions) and the SDK/WIT
//! versions the SDK embedded in the `nexo-sdk` custom section.

use std::fmt;

use wasmparser::{Parser, Payload};

use crate::error::LoadError;

/// Which Nexo world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    /// `nexo:connector/connector`.
    Connector,
    /// `nexo:connector/mapper`.
    Mapper,
}

impl fmt::Display for WorldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorldKind::Connector => "connector",
            WorldKind::Mapper => "mapper",
        })
    }
}

/// Static facts about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// The world it implements.
    pub world: WorldKind,
    /// Names of its imports, e.g. `nexo:connector/http@1.0.0`.
    pub imports: Vec<String>,
    /// Names of its exports.
    pub exports: Vec<String>,
    /// The `nexo-sdk` section's fields (`sdk`, `wit`, `plugin`, `version`).
    pub embedded: Vec<(String, String)>,
    /// What its instances hold, counted from its sections.
    pub shape: Shape,
}

/// What one instance of a component holds, counted statically: core
/// module instantiations at any depth, and the memories and tables the
/// instantiated modules define. A nested component instantiated twice is
/// counted once here; the store counts every instance again when it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Core module instances.
    pub core_instances: u32,
    /// Linear memories defined by those instances.
    pub memories: u32,
    /// Tables defined by those instances.
    pub tables: u32,
}

/// One level of nesting while counting.
enum Frame {
    /// A component: the (memories, tables) each of its core modules defines,
    /// by module index.
    Component(Vec<(u32, u32)>),
    /// A core module being read: what it defines so far.
    Module(u32, u32),
}

impl Shape {
    /// Count `bytes`, a component.
    pub fn of(bytes: &[u8]) -> Result<Shape, wasmparser::BinaryReaderError> {
        let mut shape = Shape::default();
        let mut stack: Vec<Frame> = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::Version { encoding, .. } => stack.push(match encoding {
                    wasmparser::Encoding::Module => Frame::Module(0, 0),
                    wasmparser::Encoding::Component => Frame::Component(Vec::new()),
                }),
                Payload::MemorySection(s) => {
                    if let Some(Frame::Module(m, _)) = stack.last_mut() {
                        *m = m.saturating_add(s.count());
                    }
                }
                Payload::TableSection(s) => {
                    if let Some(Frame::Module(_, t)) = stack.last_mut() {
                        *t = t.saturating_add(s.count());
                    }
                }
                Payload::InstanceSection(s) => {
                    for i in s {
                        if let wasmparser::Instance::Instantiate { module_index, .. } = i? {
                            shape.core_instances = shape.core_instances.saturating_add(1);
                            if let Some(Frame::Component(modules)) = stack.last()
                                && let Some((m, t)) = modules.get(module_index as usize)
                            {
                                shape.memories = shape.memories.saturating_add(*m);
                                shape.tables = shape.tables.saturating_add(*t);
                            }
                        }
                    }
                }
                Payload::End(_) => {
                    if let Some(Frame::Module(m, t)) = stack.pop()
                        && let Some(Frame::Component(modules)) = stack.last_mut()
                    {
                        modules.push((m, t));
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }
}

impl ComponentInfo {
    /// Parse the top level of a component.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, LoadError> {
        let invalid = |reason: String| LoadError::Invalid {
            what: what.to_string(),
            reason,
        };
        let mut imports = Vec::new();
        let mut exports = Vec::new();
        let mut embedded = Vec::new();
        let mut depth = 0usize;
        let mut is_component = false;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| invalid(e.to_string()))? {
                Payload::Version { encoding, .. } => {
                    if depth == 0 {
                        is_component = encoding == wasmparser::Encoding::Component;
                    }
                    depth += 1;
                }
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(s) if depth == 1 => {
                    for i in s {
                        imports.push(i.map_err(|e| invalid(e.to_string()))?.name.name.to_string());
                    }
                }
                Payload::ComponentExportSection(s) if depth == 1 => {
                    for e in s {
                        exports.push(e.map_err(|e| invalid(e.to_string()))?.name.name.to_string());
                    }
                }
                Payload::CustomSection(c) if c.name() == "nexo-sdk" => {
                    embedded = parse_embedded(c.data());
                }
                _ => {}
            }
        }
        if !is_component {
            return Err(invalid("it is a core module, not a component".into()));
        }
        let exports_interface = |name: &str| {
            exports.iter().any(|e| {
                e.strip_prefix("nexo:connector/")
                    .and_then(|rest| rest.split('@').next())
                    .is_some_and(|iface| iface == name)
            })
        };
        let world = if exports_interface("operations") {
            WorldKind::Connector
        } else if exports_interface("mapping") {
            WorldKind::Mapper
        } else {
            return Err(LoadError::NotAPlugin {
                what: what.to_string(),
                reason: format!(
                    "it exports [{}]; a connector exports nexo:connector/operations and a mapper nexo:connector/mapping, of a version this host serves ({})",
                    exports.join(", "),
                    crate::bindings::served_text()
                ),
            });
        };
        Ok(ComponentInfo {
            world,
            imports,
            exports,
            embedded,
            shape: Shape::of(bytes).map_err(|e| invalid(e.to_string()))?,
        })
    }

    /// A field of the embedded `nexo-sdk` section.
    pub fn embedded(&self, key: &str) -> Option<&str> {
        self.embedded
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `nexo:connector` version the component imports or exports (e.g.
    /// `1.0.0`); without either, the one the SDK embedded.
    pub fn wit_version(&self) -> Option<&str> {
        self.imports
            .iter()
            .chain(&self.exports)
            .find_map(|i| {
                i.strip_prefix("nexo:connector/")?
                    .split_once('@')
                    .map(|(_, v)| v)
            })
            .or_else(|| self.embedded("wit"))
    }
}

fn parse_embedded(data: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(data)
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_and_garbage_are_refused_with_the_reason() {
        let core = b"\0asm\x01\0\0\0";
        let e = ComponentInfo::parse(core, "x.wasm").unwrap_err();
        assert!(e.to_string().contains("core module"), "{e}");
        let e = ComponentInfo::parse(b"not wasm at all", "y.wasm").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("y.wasm is not a valid WebAssembly component"),
            "{e}"
        );
    }

    #[test]
    fn embedded_section_fields() {
        let f = parse_embedded(b"sdk=0.1.0;wit=1.0.0;plugin=example-crm;version=0.2.0");
        assert_eq!(f.len(), 4);
        assert_eq!(f[2], ("plugin".into(), "example-crm".into()));
    }
}
