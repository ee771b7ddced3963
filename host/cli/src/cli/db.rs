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
    /// Move an installation from its SQLite file to an empty PostgreSQL
    /// (migrated first if it has no schema): every row in one transaction,
    /// and the installed plugins' bundles from the data directory. Stop the
    /// host first; give the new hosts the same secret key.
    Copy {
        /// The SQLite database: sqlite:PATH (its data directory holds the
        /// bundles).
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: postgres://USER:PASSWORD@HOST:PORT/DB.
        #[arg(long)]
        to: String,
    },
}

pub(crate) fn run(location: &Location, cmd: DbCommand) -> Result<()> {
    match cmd {
        DbCommand::Migrate => migrate(location),
        DbCommand::Copy { from, to } => copy(&from, &to),
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

fn copy(from: &str, to: &str) -> Result<()> {
    let from = Location::parse(from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = Location::parse(to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let Location::Sqlite(path) = &from else {
        bail!("--from must be the SQLite database to move (sqlite:PATH), not {from}");
    };
    let Location::Postgres(url) = &to else {
        bail!("--to must be a PostgreSQL database (postgres://…), not {to}");
    };
    if !path.exists() {
        bail!("no database at {}; check --from", path.display());
    }
    let source = Database::open(path).with_context(|| format!("opening {from}"))?;
    let (target, _) = Database::migrate_postgres(url).with_context(|| format!("migrating {to}"))?;
    let report = crate::store::copy::copy(&source, &target)
        .with_context(|| format!("copying {from} to {to}"))?;
    // The bundles live beside the database file, content-addressed.
    let bundles = path
        .parent()
        .unwrap_or_else(|| std::path::Path::new("."))
        .join("bundles");
    let mut stored = 0;
    for id in source.plugin_ids()? {
        for row in source.plugin_versions(&id)? {
            let file = bundles.join(format!("{}.nexo", row.bundle_sha256));
            let bytes = std::fs::read(&file).with_context(|| {
                format!(
                    "reading the bundle of {id}@{} ({}); the rows are copied, the bundle is not: install that version again through a host of {to}",
                    row.version,
                    file.display()
                )
            })?;
            target.put_bundle(&row.bundle_sha256, &bytes)?;
            stored += 1;
        }
    }
    print!("{report}");
    println!(
        "copied {} rows and {stored} plugin bundles from {from} to {to}",
        report.total()
    );
    eprintln!(
        "start the hosts with --database pointing at {to} and the same secret key as this installation (NEXO_SECRET_KEY, or its secret.key file): the connections' secrets are copied sealed"
    );
    Ok(())
}
