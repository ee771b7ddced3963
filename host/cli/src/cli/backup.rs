//! `nexo backup`, `nexo restore`, `nexo secrets rotate-key`: keeping an
//! installation safe. A backup is a directory: the database as of one
//! instant (SQLite's online backup, taken while `nexo serve` runs), the
//! plugin bundles it names, and `backup.json` with each file's SHA-256 so a
//! restore can tell a damaged or altered backup before it replaces
//! anything. The sealing key is left out unless asked for: a backup
//! without it holds secrets nobody can open.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Database;
use crate::store::audit::{Action, Change};
use crate::store::sealed::Sealer;

/// The file describing a backup.
const MANIFEST: &str = "backup.json";

/// `nexo backup PATH`.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// A new (or empty) directory to write the backup into.
    path: PathBuf,
    /// Also copy the sealing key (secret.key, or NEXO_SECRET_KEY) into the
    /// backup, which then opens every secret: keep it as safe as the host.
    #[arg(long)]
    with_key: bool,
}

/// `nexo restore PATH`.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// A directory `nexo backup` wrote.
    path: PathBuf,
    /// Replace the installation in the data directory (stop `nexo serve`
    /// first).
    #[arg(long)]
    force: bool,
}

/// `nexo secrets …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Seal every stored secret again under a new random key, in one
    /// transaction; the old key opens nothing afterwards. With the key in
    /// NEXO_SECRET_KEY the new key is printed once (set it on every host);
    /// else secret.key is replaced.
    RotateKey,
}

/// What `backup.json` says.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// The nexo that wrote it.
    nexo_version: String,
    /// When (UTC).
    created_at: String,
    /// The database file and its digest.
    database: FileDigest,
    /// Each bundle file and its digest.
    bundles: Vec<FileDigest>,
    /// Whether `secret.key` is in the backup.
    key_included: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileDigest {
    /// Path inside the backup.
    file: String,
    /// SHA-256, hex.
    sha256: String,
}

fn sha256_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Write `bytes` to `path`, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.sync_all()?;
    Ok(())
}

pub(crate) fn backup(dir: &Path, args: BackupArgs) -> Result<()> {
    let db = super::open_db(dir)?;
    let out = &args.path;
    if out.exists()
        && std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: back up into a new directory",
            out.display()
        );
    }
    std::fs::create_dir_all(out.join("bundles"))
        .with_context(|| format!("creating {}", out.display()))?;
    let db_file = out.join("nexo.db");
    db.backup_to(&db_file)?;
    // The bundles the copy names: a plugin installed after the instant of
    // the copy is not in it, and needs no bundle.
    let copy = Database::open(&db_file)?;
    let mut bundles = Vec::new();
    for id in copy.plugin_ids()? {
        for v in copy.plugin_versions(&id)? {
            let name = format!("{}.nexo", v.bundle_sha256);
            let from = dir.join("bundles").join(&name);
            let bytes = std::fs::read(&from).with_context(|| {
                format!(
                    "the bundle of {id}@{} ({}) is missing from the data directory; the backup is incomplete",
                    v.version,
                    from.display()
                )
            })?;
            std::fs::write(out.join("bundles").join(&name), &bytes)?;
            bundles.push(FileDigest {
                file: format!("bundles/{name}"),
                sha256: hex::encode(Sha256::digest(&bytes)),
            });
        }
    }
    drop(copy);
    if args.with_key {
        let key = match std::env::var("NEXO_SECRET_KEY") {
            Ok(k) => k,
            Err(_) => std::fs::read_to_string(dir.join("secret.key"))
                .context("reading secret.key to include it")?,
        };
        write_private(&out.join("secret.key"), key.trim().as_bytes())?;
    }
    let manifest = Manifest {
        nexo_version: env!("CARGO_PKG_VERSION").into(),
        created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        database: FileDigest {
            file: "nexo.db".into(),
            sha256: sha256_of(&db_file)?,
        },
        bundles,
        key_included: args.with_key,
    };
    std::fs::write(out.join(MANIFEST), serde_json::to_string_pretty(&manifest)?)?;
    println!(
        "backed up the database and {} bundle(s) to {}",
        manifest.bundles.len(),
        out.display()
    );
    if !args.with_key {
        eprintln!(
            "the sealing key is not in the backup: keep secret.key (or NEXO_SECRET_KEY) safe apart from it; without it the secrets in this backup cannot be opened"
        );
    }
    Ok(())
}

pub(crate) fn restore(dir: &Path, args: RestoreArgs) -> Result<()> {
    let from = &args.path;
    let text = std::fs::read_to_string(from.join(MANIFEST)).with_context(|| {
        format!(
            "{} is not a backup nexo wrote (no {MANIFEST})",
            from.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{MANIFEST} in {} does not read", from.display()))?;
    for f in std::iter::once(&manifest.database).chain(&manifest.bundles) {
        if f.file.contains("..") || Path::new(&f.file).is_absolute() {
            bail!("{MANIFEST} names `{}`, outside the backup", f.file);
        }
        let found = sha256_of(&from.join(&f.file))?;
        if found != f.sha256 {
            bail!(
                "{} in the backup was changed or damaged (its SHA-256 is not the one {MANIFEST} records); nothing was restored",
                f.file
            );
        }
    }
    if super::database_location().is_some_and(|l| matches!(l, crate::store::Location::Postgres(_)))
    {
        bail!(
            "a restore brings back the embedded SQLite database; a shared PostgreSQL is restored with PostgreSQL's own tools"
        );
    }
    let target = dir.join("nexo.db");
    if target.exists() && !args.force {
        bail!(
            "{} holds an installation: restore into a fresh --data-dir, or stop `nexo serve` and pass --force to replace it",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("bundles"))?;
    // The key: the backup's, when it has one and this directory has none.
    let key_file = dir.join("secret.key");
    if manifest.key_included && !key_file.exists() && std::env::var("NEXO_SECRET_KEY").is_err() {
        let key = std::fs::read(from.join("secret.key"))
            .context("the backup says it includes secret.key, but it is not there")?;
        write_private(&key_file, &key)?;
    }
    if !key_file.exists() && std::env::var("NEXO_SECRET_KEY").is_err() {
        bail!(
            "the backup does not include its sealing key: put the backed-up installation's secret.key into {}, or set NEXO_SECRET_KEY, then restore again",
            dir.display()
        );
    }
    // Work on a copy beside the target; replace the target only once the
    // copy opens and the key opens every secret in it.
    let staged = dir.join("nexo.db.restoring");
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(from.join(&manifest.database.file), &staged)?;
    let check = (|| -> Result<usize> {
        let db = Database::open(&staged)?;
        let sealer = Sealer::from_env_or_file(&key_file)?;
        Ok(db.check_sealing_key(&sealer)?)
    })();
    let opened = match check {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e.context(
                "the backup was not restored: give the key it was sealed with (its secret.key in the data directory, or NEXO_SECRET_KEY)",
            ));
        }
    };
    for f in &manifest.bundles {
        let to = dir.join(&f.file);
        if !to.exists() {
            std::fs::copy(from.join(&f.file), &to)?;
        }
    }
    for stale in ["nexo.db-wal", "nexo.db-shm"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    std::fs::rename(&staged, &target).with_context(|| format!("replacing {}", target.display()))?;
    let db = super::open_db(dir)?;
    super::audit::record(
        &db,
        Change::new(Action::Restore, "installation").after(serde_json::json!({
            "from": from.display().to_string(),
            "backup_created_at": manifest.created_at,
            "nexo_version": manifest.nexo_version,
        })),
    )?;
    println!(
        "restored the backup of {} ({} bundle(s), {opened} secret(s) open with this key) into {}",
        manifest.created_at,
        manifest.bundles.len(),
        dir.display()
    );
    Ok(())
}

pub(crate) fn rotate_key(dir: &Path) -> Result<()> {
    let db = super::open_db(dir)?;
    let key_file = dir.join("secret.key");
    let from_env = std::env::var("NEXO_SECRET_KEY").is_ok();
    if !from_env && !key_file.exists() {
        bail!(
            "no sealing key to rotate: neither NEXO_SECRET_KEY nor {} is there",
            key_file.display()
        );
    }
    let old = Sealer::from_env_or_file(&key_file)?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).context("drawing a new key")?;
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(key)
    };
    let new = Sealer::from_key(&key);
    // The new key is on disk before any value is sealed under it, so no
    // crash leaves secrets under a key nobody has.
    let pending = dir.join("secret.key.new");
    if !from_env {
        let _ = std::fs::remove_file(&pending);
        write_private(&pending, encoded.as_bytes())?;
    }
    let report = match db.rotate_sealing_key(&old, &new) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            return Err(e.into());
        }
    };
    if !from_env {
        std::fs::rename(&pending, &key_file).with_context(|| {
            format!(
                "the secrets are sealed under the new key in {}, but it could not replace {}: move it there yourself",
                pending.display(),
                key_file.display()
            )
        })?;
    }
    super::audit::record(
        &db,
        Change::new(Action::SecretsRotateKey, "installation")
            .after(serde_json::json!({"resealed": report.total()})),
    )?;
    if from_env {
        println!("{encoded}");
        eprintln!(
            "sealed {} secret(s) again under the new key above (shown only now): set it as NEXO_SECRET_KEY on every host before they start; the old key opens nothing",
            report.total()
        );
    } else {
        println!(
            "sealed {} secret(s) again under a new key in {}; the old key opens nothing",
            report.total(),
            key_file.display()
        );
    }
    Ok(())
}
