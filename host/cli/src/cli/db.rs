//! `nexo db`: the database as an operator sees it — migrating a PostgreSQL
//! that several hosts share (never done by a host's start), and moving an
//! installation from its SQLite file to PostgreSQL.

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::store::{Database, Location};

/// `nexo db …`.
#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Bring the database named by --database / NEXO_DATABASE_URL to this
    /// nexo's schema. Safe while other hosts run: one migration at a time,
    /// each component in one transaction.
    Migrate,
}

pub(crate) fn run(location: &Location, cmd: DbCommand) -> Result<()> {
    match cmd {
        DbCommand::Migrate => migrate(location),
    }
}

fn migrate(location: &Location) -> Result<()> {
    match location {
        Location::Postgres(url) => {
            let (_, applied) =
                Database::migrate_postgres(url).with_context(|| format!("migrating {location}"))?;
            if applied.is_empty() {
                println!("{location} is at this nexo's schema already");
            }
            for (component, version) in applied {
                println!("{component}: migrated to version {version}");
            }
        }
        Location::Sqlite(path) => {
            if !path.exists() {
                bail!(
                    "no database at {}; a SQLite database is created and migrated by the first command that opens it",
                    path.display()
                );
            }
            Database::open(path).with_context(|| format!("migrating {location}"))?;
            println!("{location} is at this nexo's schema");
        }
    }
    Ok(())
}
