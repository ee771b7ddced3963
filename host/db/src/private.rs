//! Owner-only permissions for the data directory and the files in it.
//!
//! The data directory holds the database (connections' configs, sealed
//! secrets, API token hashes, plugins' key-value data) and the key that
//! unseals the secrets: nobody but the host's user should read any of it.
//! The directory is created 0700 and the database 0600 (SQLite gives its
//! `-wal` and `-shm` files the database's mode); anything found looser on
//! open (a copy, a restore, a permissive umask) is tightened, with a
//! warning that says what was found. A directory the admin pointed
//! `--data-dir` at that holds other things (or is shared, like `/tmp`) is
//! not re-moded, only warned about: nexo's own files in it stay private.
//! Unix only: elsewhere the platform's defaults apply.

use std::io;
use std::path::Path;

/// Files of the data directory that must be private when they exist.
pub const PRIVATE_FILES: &[&str] = &["nexo.db", "nexo.db-wal", "nexo.db-shm", "secret.key"];

/// Create `dir` (and its parents) if missing, as 0700; tighten it (when it
/// is nexo's own: empty, or holding `nexo.db`, and not shared with the
/// sticky bit) and the [`PRIVATE_FILES`] in it if they are readable by
/// others.
pub fn secure_data_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        match builder.create(dir) {
            Ok(()) => {}
            // Created by another process in between: tightened below.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if is_own_data_dir(dir)? {
        tighten(dir, 0o700)?;
    } else {
        warn_if_loose(dir);
    }
    for name in PRIVATE_FILES {
        let path = dir.join(name);
        if path.exists() {
            tighten(&path, 0o600)?;
        }
    }
    Ok(())
}

/// Create the database file at `path` as 0600 if it does not exist (before
/// SQLite opens it, so it is never readable by others, not even briefly),
/// and tighten it and its `-wal`/`-shm` files if they exist and are looser.
pub fn secure_database_file(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut all = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            all.push(side.into());
        }
        for file in all.iter().filter(|p| p.exists()) {
            tighten(file, 0o600)?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether `dir` is nexo's alone to re-mode: empty or a data directory
/// already, and not a shared (sticky) directory such as `/tmp`.
fn is_own_data_dir(dir: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(dir)?.permissions().mode() & 0o1000 != 0 {
            return Ok(false);
        }
    }
    Ok(dir.join("nexo.db").exists() || std::fs::read_dir(dir)?.next().is_none())
}

/// Warn that a directory nexo does not re-mode is readable by others.
fn warn_if_loose(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            let found = meta.permissions().mode() & 0o777;
            if found & 0o077 != 0 {
                tracing::warn!(
                    path = %dir.display(),
                    "the data directory {} is readable by other users (mode {found:04o}) and holds other files, so nexo leaves its mode alone (its own files are 0600); give nexo a directory of its own with --data-dir",
                    dir.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Set `path` to `mode` if it grants group or others anything, with a
/// warning naming what was found.
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let found = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if found & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            tracing::warn!(
                path = %path.display(),
                "{} was readable by other users (mode {found:04o}); set to {mode:04o}",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn a_new_data_dir_is_private_and_a_loose_one_is_tightened() -> io::Result<()> {
        let parent = tempfile::tempdir()?;
        let dir = parent.path().join("a/b/data");
        secure_data_dir(&dir)?;
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("nexo.db");
        secure_database_file(&db)?;
        assert_eq!(mode(&db), 0o600);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644))?;
        std::fs::write(dir.join("secret.key"), b"k")?;
        std::fs::set_permissions(
            dir.join("secret.key"),
            std::fs::Permissions::from_mode(0o640),
        )?;
        secure_data_dir(&dir)?;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir.join("secret.key")), 0o600);
        Ok(())
    }

    #[test]
    fn a_directory_holding_other_things_is_left_alone() -> io::Result<()> {
        let shared = tempfile::tempdir()?;
        std::fs::write(shared.path().join("notes.txt"), b"mine")?;
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755))?;
        secure_data_dir(shared.path())?;
        assert_eq!(mode(shared.path()), 0o755);

        let sticky = tempfile::tempdir()?;
        std::fs::set_permissions(sticky.path(), std::fs::Permissions::from_mode(0o1777))?;
        secure_data_dir(sticky.path())?;
        assert_eq!(mode(sticky.path()), 0o777);
        Ok(())
    }
}
