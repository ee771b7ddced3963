//! On-disk cache of compiled components, keyed by the component's SHA-256
//! and the engine's compatibility hash, so each plugin version is compiled
//! once per engine build and later loads only read and relocate the
//! artefact (well under a millisecond).

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// The cache directory.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

pub use nexo_bundle::sha256_hex;

/// Feeds the engine's compatibility hash into a SHA-256 (std's `Hasher`
/// gives 64 bits only; collisions here would load incompatible code).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    /// A cache in `dir` (created, private to the user) for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, LoadError> {
        fs::create_dir_all(dir).map_err(|e| LoadError::Cache {
            path: dir.into(),
            reason: e.to_string(),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex::encode(&h.0.finalize()[..12]);
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    /// Where the artefact of a component with this hash lives.
    pub fn path_for(&self, component_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{component_sha256}-{}.cwasm", self.engine_key))
    }

    /// Load the compiled form of `bytes` (hash `sha`), compiling and storing
    /// it first when absent or unusable.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha: &str,
        what: &str,
    ) -> Result<Component, LoadError> {
        let path = self.path_for(sha);
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled plugin; recompiling")
                }
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| LoadError::Invalid {
                what: what.to_string(),
                reason: format!("{e:#}"),
            })?;
        self.store(&path, &compiled)?;
        deserialize(engine, &path).map_err(|e| LoadError::Cache {
            path,
            reason: e.to_string(),
        })
    }

    /// Write atomically: a temp file in the same directory, then rename, so a
    /// reader never maps a half-written artefact.
    fn store(&self, path: &Path, compiled: &[u8]) -> Result<(), LoadError> {
        let err = |e: std::io::Error| LoadError::Cache {
            path: path.into(),
            reason: e.to_string(),
        };
        // Unique per process *and* per call: two threads of one process
        // compiling the same component must not share a temp file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(compiled).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, path).map_err(err)
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // Read, not mmap: a mapped artefact truncated or rewritten underneath a
    // running host (a cleanup job, a full disk) would crash it with SIGBUS.
    let bytes = fs::read(path)?;
    // SAFETY: `deserialize` trusts the bytes to be wasmtime's own output.
    // Only this module writes to the cache directory (created 0700), always
    // via `precompile_component` and an atomic rename, and the file name
    // carries the engine's compatibility hash; wasmtime additionally checks
    // the header and engine settings and fails cleanly on a mismatch.
    unsafe { Component::deserialize(engine, &bytes) }
}
