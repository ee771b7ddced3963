//! SQLite's own past: databases built from the schema's old single list of
//! migrations, upgraded.

use super::*;
use rusqlite::params;

/// A database of schema 8 (one synced hash per link) with two
/// pipelines sharing a source and an entity, and a two-way pair.
fn schema_8_database(path: &std::path::Path) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    for sql in &nexo_db::MIGRATIONS[..8] {
        let tx = conn.transaction().unwrap();
        tx.execute_batch(sql).unwrap();
        tx.commit().unwrap();
    }
    conn.pragma_update(None, "user_version", 8).unwrap();
    let save = |p: &str, entity: &str, from: (&str, &str), to: (&str, &str)| {
        let def = serde_json::json!({
            "name": p, "entity": entity,
            "source": {"connection": from.0, "stream": from.1},
            "destination": {"connection": to.0, "stream": to.1},
        });
        conn.execute(
            "INSERT INTO pipelines (name, definition) VALUES (?1, ?2)",
            params![p, def.to_string()],
        )
        .unwrap();
    };
    save("to-erp", "invoice", ("crm", "deals"), ("erp", "invoices"));
    save(
        "to-books",
        "invoice",
        ("crm", "deals"),
        ("books", "journal"),
    );
    save("a-to-b", "contact", ("a", "s"), ("b", "s"));
    save("b-to-a", "contact", ("b", "s"), ("a", "s"));
    let links = [
        ("crm", "deals", "d1", 1, "invoice"),
        ("erp", "invoices", "t1", 1, "invoice"),
        ("books", "journal", "j1", 1, "invoice"),
        ("crm", "deals", "d2", 2, "invoice"),
        ("erp", "invoices", "t2", 2, "invoice"),
        ("a", "s", "a1", 3, "contact"),
        ("b", "s", "b1", 3, "contact"),
        ("a", "s", "a2", 4, "contact"),
    ];
    for (c, st, id, e, entity) in links {
        conn.execute(
            "INSERT INTO entity_links (connection, stream, record_id, entity_id, entity, known, synced_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, '{}', ?6)",
            params![c, st, id, e, entity, format!("h-{id}")],
        )
        .unwrap();
    }
}

#[test]
fn the_migration_keeps_every_link_and_only_unambiguous_sync_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nexo.db");
    schema_8_database(&path);
    let db = Database::open(&path).unwrap();
    let end = |c: &str, s: &str| Endpoint {
        connection: c.into(),
        stream: s.into(),
    };
    let synced = |entity: &str, at: (&str, &str), id: &str, peer: (&str, &str)| {
        let found = db
            .links(entity, at.0, at.1, &[id], Some(&end(peer.0, peer.1)))
            .unwrap();
        assert_eq!(found.len(), 1, "link {id} lost");
        found[0].synced_hash.clone()
    };
    // The deals feed two destinations: which one their hash was for
    // is unknown, so both compare again (no skip).
    for peer in [("erp", "invoices"), ("books", "journal")] {
        assert_eq!(synced("invoice", ("crm", "deals"), "d1", peer), None);
        assert_eq!(synced("invoice", ("crm", "deals"), "d2", peer), None);
    }
    // Each destination's record was synced with the one source.
    let crm = ("crm", "deals");
    assert_eq!(
        synced("invoice", ("erp", "invoices"), "t1", crm).as_deref(),
        Some("h-t1")
    );
    assert_eq!(
        synced("invoice", ("books", "journal"), "j1", crm).as_deref(),
        Some("h-j1")
    );
    // A two-way pair: each side has one peer.
    assert_eq!(
        synced("contact", ("a", "s"), "a1", ("b", "s")).as_deref(),
        Some("h-a1")
    );
    assert_eq!(
        synced("contact", ("b", "s"), "b1", ("a", "s")).as_deref(),
        Some("h-b1")
    );
    // Never delivered to b: compared again.
    assert_eq!(synced("contact", ("a", "s"), "a2", ("b", "s")), None);
    let all: i64 = db
        .lock()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM entity_links", [], |r| r.get(0))
        .unwrap();
    assert_eq!(all, 8, "every link carried over");
}

#[test]
fn upgrading_drops_the_old_attempts_cap_and_sorts_out_settled_conflicts() {
    // A database as the release before it left it.
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let before = nexo_db::MIGRATIONS.len() - 1;
    for sql in &nexo_db::MIGRATIONS[..before] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", before as i64)
        .unwrap();
    let mut old = serde_json::to_value(pipeline("old")).unwrap();
    old["retry"] =
        serde_json::json!({"max_attempts": 5, "initial_backoff_ms": 200, "max_backoff_ms": 30000});
    let mut kept = old.clone();
    kept["name"] = "kept".into();
    kept["retry"]["max_attempts"] = 3.into();
    for p in [&old, &kept] {
        conn.execute(
            "INSERT INTO pipelines (name, definition) VALUES (?1, ?2)",
            params![p["name"].as_str(), p.to_string()],
        )
        .unwrap();
    }
    for (resolution, status) in [
        ("source written by policy", "resolved"),
        ("source written by a person", "resolved"),
    ] {
        conn.execute(
            "INSERT INTO conflicts (pipeline, run_id, entity_id, source_id, destination_id,
                 source_record, destination_payload, fields, status, resolution)
             VALUES ('old', 1, 1, 's', 'd', '{}', '{}', '[]', ?1, ?2)",
            params![status, resolution],
        )
        .unwrap();
    }
    let db = Database::init(conn, ":memory:").unwrap();
    let old = db.pipeline("old").unwrap().unwrap().pipeline.retry;
    assert_eq!(
        old.max_attempts, None,
        "the old default would cap the window"
    );
    assert_eq!(old.window(), std::time::Duration::from_secs(600));
    let kept = db.pipeline("kept").unwrap().unwrap().pipeline.retry;
    assert_eq!(kept.max_attempts, Some(3), "a chosen cap stays");
    let statuses: Vec<ConflictStatus> = db
        .conflicts(None, None)
        .unwrap()
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses,
        [ConflictStatus::AutoResolved, ConflictStatus::Resolved]
    );
}
