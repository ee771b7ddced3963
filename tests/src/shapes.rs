//! Components of shapes the SDK cannot build, for the attacks on the
//! runtime's per-plugin budget: a real `nexo:connector` mapper (so it loads
//! and links like any plugin) with extra core instances, each with a
//! linear memory that its start function touches page by page, so every
//! byte it is given becomes resident.
//!
//! Built from the frozen WIT: wit-component's dummy module for the mapper
//! world (every export traps), encoded as a component, printed to text,
//! extended with the extra instances at the end (appending keeps every
//! existing index valid) and parsed again.

use std::path::PathBuf;

use anyhow::{Context, Result};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{ManglingAndAbi, Resolve};

/// A mapper component with `instances` extra core instances, each owning a
/// linear memory of `pages` 64 KiB pages that it writes to on start (with
/// `pages == 0`, instances with no memory at all).
pub fn mapper_with_memories(instances: u32, pages: u32) -> Result<Vec<u8>> {
    let base = dummy_mapper()?;
    let text = wasmprinter::print_bytes(&base).context("print the dummy mapper")?;
    let end = text
        .trim_end()
        .strip_suffix(')')
        .context("a component's text ends with `)`")?;
    let bytes = u64::from(pages) * 65_536;
    let mut extended = String::from(end);
    if pages == 0 {
        extended.push_str("\n  (core module $hog)\n");
    } else {
        extended.push_str(&format!(
            r#"
  (core module $hog
    (memory {pages})
    (func $touch (local $at i64)
      (loop $pages
        (i32.store8 (i32.wrap_i64 (local.get $at)) (i32.const 1))
        (local.set $at (i64.add (local.get $at) (i64.const 4096)))
        (br_if $pages (i64.lt_u (local.get $at) (i64.const {bytes})))))
    (start $touch))
"#
        ));
    }
    for _ in 0..instances {
        extended.push_str("  (core instance (instantiate $hog))\n");
    }
    extended.push_str(")\n");
    wat::parse_str(&extended).context("parse the extended component")
}

/// The mapper world's dummy component.
fn dummy_mapper() -> Result<Vec<u8>> {
    let wit = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../wit")
        .join(nexo::bindings::v1_0::VERSION);
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(&wit).context("parse wit/")?;
    let world = resolve.select_world(&[package], Some("mapper"))?;
    let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
}
