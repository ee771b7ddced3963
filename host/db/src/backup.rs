//! A consistent copy of the SQLite database while hosts keep writing to it
//! (`nexo backup`): SQLite's online backup API copies every page inside one
//! read transaction, so the copy is the database as of one instant — a
//! committed page of a run and its cursor together, never half of a
//! commit — and writers are not stopped meanwhile.

use std::path::Path;

use crate::{Database, StoreError};

impl Database {
    /// Copy this SQLite database to a new file `dest` (which must not
    /// exist), consistently, while others may write. Refused on
    /// PostgreSQL, which has its own tools (`pg_dump`).
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        if self.postgres().is_some() {
            return Err(StoreError::Backup(
                "a shared PostgreSQL database is backed up with PostgreSQL's own tools (pg_dump, or the provider's snapshots); plugin bundles are stored in it too".into(),
            ));
        }
        if dest.exists() {
            return Err(StoreError::Backup(format!(
                "{} exists already: back up into a new file",
                dest.display()
            )));
        }
        let conn = self.lock()?;
        let mut out = rusqlite::Connection::open(dest)?;
        {
            let backup = rusqlite::backup::Backup::new(&conn, &mut out)?;
            // Every page in one step: one read transaction, one instant.
            backup.run_to_completion(i32::MAX, std::time::Duration::ZERO, None)?;
        }
        drop(conn);
        out.execute_batch("PRAGMA journal_mode = DELETE;")?;
        crate::private::secure_database_file(dest).map_err(|source| StoreError::Permissions {
            path: dest.display().to_string(),
            source,
        })?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::audit::{Action, Actor, AuditFilter, Change};

    #[test]
    fn the_copy_holds_what_was_committed_and_opens_as_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("nexo.db")).unwrap();
        db.record_change(
            &Actor::Cli("ana".into()),
            &Change::new(Action::TokenCreate, "token/a"),
        )
        .unwrap();
        let copy = dir.path().join("copy.db");
        db.backup_to(&copy).unwrap();
        // Written after the copy: not in it.
        db.record_change(
            &Actor::Cli("ana".into()),
            &Change::new(Action::TokenRevoke, "token/a"),
        )
        .unwrap();
        let restored = Database::open(&copy).unwrap();
        let trail = restored.audit_entries(&AuditFilter::default()).unwrap();
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].action, "token.create");
        let e = db.backup_to(&copy).unwrap_err().to_string();
        assert!(e.contains("exists already"), "{e}");
    }
}
