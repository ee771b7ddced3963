//! Tests of the sync engine's stores. Every test of the store's behaviour
//! runs on SQLite (`crate::sqlite`) and on PostgreSQL (`crate::postgres`, a
//! real server per test process): `on_both!` makes `NAME::sqlite` and
//! `NAME::postgres` of a function taking the `Database`. SQLite's own past
//! (legacy migrations) is tested on SQLite alone (`sqlite_only`), hosts
//! working at once on PostgreSQL alone (`hosts`).

use crate::pipeline::{Endpoint, Pipeline};
use crate::store::*;
use nexo_db::Database;

/// A migrated PostgreSQL database of its own.
fn postgres_database() -> Database {
    let url = nexo_db::postgres::testing::database().unwrap();
    Database::migrate_postgres(&url).unwrap().0
}

/// Each named test, once on an in-memory SQLite database and once on
/// a fresh PostgreSQL one: `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(nexo_db::Database::in_memory().unwrap());
            }
            #[test]
            fn postgres() {
                super::$name(crate::store_tests::postgres_database());
            }
        }
    )*};
}

/// Raw SQL both databases read alike (values written into it).
fn exec(db: &Database, sql: &str) {
    match db.postgres() {
        Some(pg) => pg.with(async |c| Ok(c.batch_execute(sql).await?)).unwrap(),
        None => db.lock().unwrap().execute_batch(sql).unwrap(),
    }
}

fn pipeline(name: &str) -> Pipeline {
    Pipeline::from_toml(
        &format!(
            "name = \"{name}\"\nentity = \"contact\"\n[source]\nconnection = \"a\"\nstream = \"s\"\n[destination]\nconnection = \"b\"\nstream = \"s\"\n"
        ),
        "t",
    )
    .unwrap()
}

fn link(conn: &str, id: &str, entity_id: Option<i64>, group: usize) -> LinkUpdate {
    LinkUpdate {
        entity_id,
        entity: "contact".into(),
        group,
        connection: conn.into(),
        stream: "s".into(),
        record_id: id.into(),
        known: Some(format!("{{\"id\":\"{id}\"}}")),
        synced_hash: Some(format!("h-{id}")),
        peer: std::sync::Arc::new(Endpoint {
            connection: if conn == "a" { "b" } else { "a" }.into(),
            stream: "s".into(),
        }),
        version: None,
        deleted: false,
    }
}

mod commits;
mod engine;
mod hosts;
mod queues;
mod reviews;
mod runs;
mod sqlite_only;
