//! The sync engine's tables (pipelines, identity links, runs, queues), as
//! migrations of the one database. The statements that read and write them
//! live with the sync engine (`nexo-sync`); these only create and reshape.

/// Migration creating the sync tables.
pub(crate) const MIGRATION: &str = "
    CREATE TABLE pipelines (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        state TEXT,
        destination_state TEXT,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE entity_links (
        connection TEXT NOT NULL,
        stream TEXT NOT NULL,
        record_id TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        entity TEXT NOT NULL,
        known TEXT,
        synced_hash TEXT,
        version TEXT,
        deleted INTEGER NOT NULL DEFAULT 0,
        seen_run INTEGER,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (connection, stream, record_id)
    ) WITHOUT ROWID;
    CREATE INDEX entity_links_by_entity ON entity_links(entity_id, connection, stream);
    CREATE TABLE runs (
        run_id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        finished_at TEXT,
        duration_ms INTEGER,
        pages INTEGER NOT NULL DEFAULT 0,
        read INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        unchanged INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        quarantined INTEGER NOT NULL DEFAULT 0,
        conflicts INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX runs_by_pipeline ON runs(pipeline, run_id);
    CREATE TABLE run_records (
        run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        source_id TEXT NOT NULL,
        destination_id TEXT,
        outcome TEXT NOT NULL,
        detail TEXT,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE run_log (
        run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        source_id TEXT NOT NULL,
        record TEXT NOT NULL,
        error TEXT NOT NULL,
        class TEXT NOT NULL,
        field TEXT,
        attempts INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX dead_letters_by_pipeline ON dead_letters(pipeline, status);
    CREATE TABLE conflicts (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        entity_id INTEGER NOT NULL,
        source_id TEXT NOT NULL,
        destination_id TEXT NOT NULL,
        source_record TEXT NOT NULL,
        destination_payload TEXT NOT NULL,
        fields TEXT NOT NULL,
        status TEXT NOT NULL,
        resolution TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX conflicts_by_entity ON conflicts(entity_id, status);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
";

/// Migration 7: identity links are keyed by entity type too, so one source
/// record can feed several entities (a won deal is both a customer and an
/// invoice) without one pipeline's link standing in for another's.
pub(crate) const LINKS_PER_ENTITY: &str = "
    CREATE TABLE entity_links_v7 (
        connection TEXT NOT NULL,
        stream TEXT NOT NULL,
        record_id TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        entity TEXT NOT NULL,
        known TEXT,
        synced_hash TEXT,
        version TEXT,
        deleted INTEGER NOT NULL DEFAULT 0,
        seen_run INTEGER,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (connection, stream, record_id, entity)
    ) WITHOUT ROWID;
    INSERT INTO entity_links_v7
        SELECT connection, stream, record_id, entity_id, entity, known, synced_hash,
               version, deleted, seen_run, updated_at
          FROM entity_links;
    DROP TABLE entity_links;
    ALTER TABLE entity_links_v7 RENAME TO entity_links;
    CREATE INDEX entity_links_by_entity ON entity_links(entity_id, connection, stream);
";

/// Migration 8: runs count the records superseded by a later one with the
/// same id in the same page, and carry a stop request that the run reads
/// at each page boundary (so another process can stop it).
pub(crate) const RUN_CONTROL: &str = "
    ALTER TABLE runs ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;
";

/// Migration 9: what a record was last synced as is kept per record *and*
/// peer (the other end of the pipeline that synced it), not per record: a
/// record delivered to one destination was taken as unchanged by every
/// other pipeline sharing its source and entity, which then skipped it.
///
/// The first peer a link is synced with is kept in the link's own row
/// (`synced_connection`, `synced_stream` beside `synced_hash`), so the
/// usual record with one peer costs no extra row to read or write; any
/// further peer has a row in `link_sync`.
///
/// Carrying the old state over: a link's one synced hash is kept for its
/// peer only where that is unambiguous — the saved pipelines give the
/// link's connection/stream and entity exactly one other end — and, for a
/// source's record, only where the entity has a record at that peer (it
/// was delivered there). Elsewhere the state is dropped and the next run
/// compares the record with the destination's (unchanged when equal, so
/// nothing is written twice): an extra comparison, never a skipped record.
pub(crate) const SYNC_PER_PEER: &str = "
    ALTER TABLE entity_links ADD COLUMN synced_connection TEXT;
    ALTER TABLE entity_links ADD COLUMN synced_stream TEXT;
    CREATE TABLE link_sync (
        connection TEXT NOT NULL,
        stream TEXT NOT NULL,
        record_id TEXT NOT NULL,
        entity TEXT NOT NULL,
        peer_connection TEXT NOT NULL,
        peer_stream TEXT NOT NULL,
        synced_hash TEXT NOT NULL,
        PRIMARY KEY (connection, stream, record_id, entity, peer_connection, peer_stream)
    ) WITHOUT ROWID;
    WITH ends (connection, stream, entity, peer_connection, peer_stream) AS (
        SELECT json_extract(definition, '$.source.connection'),
               json_extract(definition, '$.source.stream'),
               json_extract(definition, '$.entity'),
               json_extract(definition, '$.destination.connection'),
               json_extract(definition, '$.destination.stream')
          FROM pipelines
        UNION
        SELECT json_extract(definition, '$.destination.connection'),
               json_extract(definition, '$.destination.stream'),
               json_extract(definition, '$.entity'),
               json_extract(definition, '$.source.connection'),
               json_extract(definition, '$.source.stream')
          FROM pipelines
    ),
    sole (connection, stream, entity, peer_connection, peer_stream) AS (
        SELECT connection, stream, entity, MIN(peer_connection), MIN(peer_stream)
          FROM ends GROUP BY connection, stream, entity HAVING COUNT(*) = 1
    ),
    carried (connection, stream, record_id, entity, peer_connection, peer_stream) AS (
        SELECT l.connection, l.stream, l.record_id, l.entity,
               s.peer_connection, s.peer_stream
          FROM entity_links l
          JOIN sole s ON s.connection = l.connection AND s.stream = l.stream
                     AND s.entity = l.entity
         WHERE l.synced_hash IS NOT NULL
           AND EXISTS (SELECT 1 FROM entity_links o
                        WHERE o.entity_id = l.entity_id AND o.entity = l.entity
                          AND o.connection = s.peer_connection
                          AND o.stream = s.peer_stream)
    )
    UPDATE entity_links
       SET synced_connection = c.peer_connection, synced_stream = c.peer_stream
      FROM carried c
     WHERE c.connection = entity_links.connection AND c.stream = entity_links.stream
       AND c.record_id = entity_links.record_id AND c.entity = entity_links.entity;
    UPDATE entity_links SET synced_hash = NULL WHERE synced_connection IS NULL;
";

/// Migration 10: pipelines saved before the retry window carry the old
/// default `max_attempts = 5`, which would cap the window at a few
/// seconds; it is dropped so they retry for the default window.
///
/// Runs count apart the creates the destination answered with a record it
/// already held (`matched`).
///
/// Conflicts the policy settled get a status of their own (`auto-resolved`),
/// apart from those a person settled; dead letters are found by source id
/// (a later run's delivery resolves them).
///
/// Runs also record when they last made progress (a page, or a line in
/// their log), so a run whose process was killed keeps the duration up to
/// then once it is found `interrupted`.
pub(crate) const RUN_OUTAGES: &str = "
    ALTER TABLE runs ADD COLUMN last_progress_at TEXT;
    ALTER TABLE runs ADD COLUMN matched INTEGER NOT NULL DEFAULT 0;
    UPDATE conflicts SET status = 'auto-resolved'
     WHERE status = 'resolved'
       AND resolution IN ('destination kept by policy', 'source written by policy');
    CREATE INDEX dead_letters_by_source ON dead_letters(pipeline, source_id, status);
    UPDATE pipelines SET definition = json_remove(definition, '$.retry.max_attempts')
     WHERE json_extract(definition, '$.retry.max_attempts') = 5;
";

/// Sync's sixth migration (the first after versions became per
/// component): runs count the records their mappers left out on purpose
/// (a contract 1.1 mapper's empty outcome), apart from the unchanged.
pub(crate) const RUN_SKIPPED: &str = "
    ALTER TABLE runs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
";

/// Sync's seventh migration: a run names the host that holds it and until
/// when (milliseconds since the epoch, by the database's clock). A page
/// commit checks that the run still holds itself — still `running`, its
/// lease, when it has one, not run out — so a host cut off from the
/// database cannot commit after another took its run over.
pub(crate) const RUN_LEASES: &str = "
    ALTER TABLE runs ADD COLUMN host TEXT;
    ALTER TABLE runs ADD COLUMN lease_until_ms INTEGER;
";

/// Sync's eighth migration: going live on systems that already hold data.
/// A pipeline's `[match]` pass links the records it is sure of and queues
/// the uncertain ones for a person (`match_reviews`: the source record as
/// read, so a run can deliver it once decided; the mapped record and the
/// candidates, for the side-by-side view); `match_passes` remembers that a
/// pipeline was matched, so its first run does not match again; runs count
/// the records they held back because they wait for a review.
pub(crate) const MATCHING: &str = "
    ALTER TABLE runs ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE match_reviews (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        source_id TEXT NOT NULL,
        source_record TEXT NOT NULL,
        mapped TEXT NOT NULL,
        candidates TEXT NOT NULL,
        why TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        chosen TEXT,
        decided_by TEXT,
        decided_at TEXT,
        delivered_run INTEGER,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE UNIQUE INDEX match_reviews_waiting ON match_reviews(pipeline, source_id)
        WHERE delivered_run IS NULL;
    CREATE TABLE match_passes (
        pipeline TEXT PRIMARY KEY,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        linked INTEGER NOT NULL,
        queued INTEGER NOT NULL,
        unmatched INTEGER NOT NULL,
        already INTEGER NOT NULL
    );
";
