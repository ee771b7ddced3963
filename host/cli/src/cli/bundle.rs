//! Vendor and admin commands for bundles and keys: `nexo plugin keygen`,
//! `pack`, `verify`, and `nexo trust add|list|remove`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::Runtime;
use crate::bundle::keys::{PublicKey, SecretKey};
use crate::bundle::manifest::ManifestSource;
use crate::bundle::{Bundle, Signer};
use crate::safe_text::SafeText;
use crate::store::Database;
use crate::store::audit::{Action, Change};

pub(crate) fn keygen(name: &str, out: &Path) -> Result<()> {
    let key = SecretKey::generate(name)?;
    let public_path = out.with_file_name(format!(
        "{}.pub",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "key".into())
    ));
    if public_path.exists() {
        bail!(
            "{} already exists; choose another --out",
            public_path.display()
        );
    }
    key.write(out)?;
    let public = key.public();
    std::fs::write(&public_path, format!("{}\n", public.to_line()))
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    println!(
        "secret key  {}  (keep it private; it signs your bundles)",
        out.display()
    );
    println!(
        "public key  {}  (give it to admins: `nexo trust add {}`)",
        public_path.display(),
        public_path.display()
    );
    println!("key id      {}", public.key_id());
    Ok(())
}

pub(crate) async fn pack(
    runtime: &Runtime,
    manifest: &Path,
    component: &Path,
    key: Option<&Path>,
    out: &Path,
) -> Result<()> {
    let source = ManifestSource::read(manifest).map_err(anyhow::Error::msg)?;
    let bytes =
        std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    let key = key.map(SecretKey::read).transpose()?;
    let bundle = crate::bundle::pack(runtime, source, bytes, key.as_ref()).await?;
    let data = bundle.to_bytes().context("cannot encode the bundle")?;
    // Write next to the target and rename, so a failed pack leaves nothing.
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    let m = &bundle.manifest;
    println!(
        "packed {}@{} ({}, nexo:connector {}) into {}",
        m.id,
        m.version,
        m.kind,
        m.wit_version,
        out.display()
    );
    match &bundle.signature {
        Some(sig) => println!(
            "signed by key {} ({})",
            sig.key_id,
            SafeText::line(&sig.signer)
        ),
        None => {
            println!("UNSIGNED: for local development only; installing it needs --allow-unsigned")
        }
    }
    Ok(())
}

pub(crate) async fn verify(
    db: &Database,
    runtime: &Runtime,
    path: &Path,
    allow_unsigned: bool,
) -> Result<()> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {what}"))?;
    let bundle = Bundle::parse(&bytes, &what)?;
    let signer = bundle.verify(
        &what,
        |id| db.trusted_key(id).ok().flatten(),
        allow_unsigned,
    )?;
    let m = &bundle.manifest;
    // The component must also be what the signed manifest says it is.
    let plugin = runtime.load(&bundle.component, &format!("{}@{}", m.id, m.version))?;
    crate::bundle::confirm_spec(&plugin, m).await?;
    println!("{what}: OK");
    println!("  plugin     {}@{} ({})", m.id, m.version, m.kind);
    println!("  vendor     {}", SafeText::line(&m.vendor));
    println!("  built for  nexo:connector {}", m.wit_version);
    println!(
        "  component  sha256 {} ({} bytes)",
        m.component.sha256, m.component.size
    );
    match signer {
        Signer::Trusted(key) => {
            println!(
                "  signed by  {} (key {}, trusted)",
                SafeText::line(&key.name),
                key.key_id()
            )
        }
        Signer::UnsignedDev => println!("  UNSIGNED   accepted for local development only"),
    }
    Ok(())
}

pub(crate) fn trust_add(db: &Database, file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let key = PublicKey::parse(&text)?;
    if db.trust_key(&key)? {
        super::audit::record(
            db,
            Change::new(Action::TrustAdd, format!("trust/{}", key.key_id()))
                .after(serde_json::json!({"key_id": key.key_id(), "name": key.name})),
        )?;
        println!("trusted key {} ({})", key.key_id(), key.name);
    } else {
        println!("key {} ({}) was already trusted", key.key_id(), key.name);
    }
    Ok(())
}

pub(crate) fn trust_list(db: &Database) -> Result<()> {
    let keys = db.trusted_keys()?;
    if keys.is_empty() {
        println!("no trusted keys; add a vendor's public key with `nexo trust add FILE`");
    }
    for k in keys {
        println!(
            "{}  {}  (since {})",
            k.key.key_id(),
            SafeText::line(&k.key.name),
            k.added_at
        );
    }
    Ok(())
}

pub(crate) fn trust_remove(db: &Database, key_id: &str) -> Result<()> {
    let before = db
        .trusted_keys()?
        .into_iter()
        .find(|k| k.key.key_id() == key_id)
        .map(|k| serde_json::json!({"key_id": key_id, "name": k.key.name}));
    if !db.untrust_key(key_id)? {
        bail!("no trusted key with id {key_id}; see `nexo trust list`");
    }
    let mut change = Change::new(Action::TrustRemove, format!("trust/{key_id}"));
    change.before = before;
    super::audit::record(db, change)?;
    println!("key {key_id} is no longer trusted");
    Ok(())
}
