//! The map built from a real (in-memory) database and rendered: a pipeline
//! with mappers and field owners appears with them, health colours the
//! arrows, and no secret value reaches any rendering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::build::pipeline_status;
use super::*;
use nexo_bundle::manifest::CapabilityGrant;
use nexo_db::Database;
use nexo_db::connections::{ConnectionGrants, ConnectionRow, Environment, SealedSecret};
use nexo_db::registry::VersionRow;
use nexo_db::sealed::Sealer;
use nexo_runtime::sandbox::secrets::SecretValue;
use nexo_sync::Pipeline;
use nexo_sync::store::PipelineStore;

const SECRET: &str = "tok_live_9c1f3e77_do_not_print";

const PIPELINE: &str = r#"
    name = "contacts-a-to-b"
    description = "Head office contacts into the branch"
    entity = "contact"
    [source]
    connection = "crm-a"
    stream = "contacts"
    [[mappers]]
    plugin = "nexo/field-mapper"
    version = "1.2.0"
    [mappers.config]
    rename = { email_address = "email" }
    keep = ["email", "name"]
    [destination]
    connection = "crm-b"
    stream = "contacts"
    [master]
    system = "crm-a"
    fields = { phone = "crm-b" }
    [conflicts]
    policy = "hold"
    [deletes]
    policy = "archive"
    archive = { status = "archived" }
    [schedule]
    every = "15m"
"#;

fn database() -> Database {
    let db = Database::in_memory().unwrap();
    let sealer = Sealer::from_key(&[7u8; 32]);
    db.insert_version(&VersionRow {
        plugin_id: "acme/tinycrm".into(),
        version: semver::Version::new(2, 1, 0),
        kind: "connector".into(),
        wit_version: "1.0.0".into(),
        manifest: "{}".into(),
        bundle_sha256: "b".into(),
        component_sha256: "c".into(),
        signer_key_id: None,
        grants: CapabilityGrant {
            http_origins: vec!["https://api.tinycrm.example".into()],
            ..Default::default()
        },
        installed_at: String::new(),
    })
    .unwrap();
    for (name, env) in [
        ("crm-a", Environment::Sandbox),
        ("crm-b", Environment::Sandbox),
    ] {
        let (nonce, sealed) = sealer
            .seal(&format!("{name}/token"), &SecretValue::new(SECRET))
            .unwrap();
        db.insert_connection(
            &ConnectionRow {
                name: name.into(),
                plugin_id: "acme/tinycrm".into(),
                pinned_version: None,
                environment: env,
                config: "{}".into(),
                grants: ConnectionGrants {
                    private_http: vec![format!("http://127.0.0.1:9/{name}")],
                    ..Default::default()
                },
            },
            &[SealedSecret {
                name: "token".into(),
                nonce,
                sealed,
            }],
        )
        .unwrap();
    }
    db.set_health("crm-a", None).unwrap();
    db.set_health("crm-b", Some(&format!("HTTP 401 with {SECRET}")))
        .unwrap();
    db.save_pipeline(&Pipeline::from_toml(PIPELINE, "p.toml").unwrap())
        .unwrap();
    db
}

#[test]
fn a_pipeline_appears_with_its_mappers_rules_owners_and_policies() {
    let db = database();
    let map = Map::build(&db, &db, Some(&Sealer::from_key(&[7u8; 32]))).unwrap();
    assert_eq!(map.systems.len(), 1);
    assert_eq!(map.connections().count(), 2);
    let p = &map.pipelines[0];
    assert_eq!(p.master_system, "crm-a");
    assert_eq!(
        p.field_owners.get("phone").map(String::as_str),
        Some("crm-b")
    );
    assert_eq!(p.mappers[0].version.as_deref(), Some("1.2.0"));
    assert!(p.mappers[0].pinned);
    assert_eq!(p.health.status, "never-run");
    let md = markdown(&map);
    for needle in [
        "### contacts-a-to-b — never-run",
        "`crm-a`/`contacts` → `crm-b`/`contacts`",
        "`nexo/field-mapper` 1.2.0 (pinned)",
        "rename: email_address → email",
        "keep: email, name",
        "**field owners:** `phone` → `crm-b`",
        "**Conflicts:** hold · **Deletes:** archive (sets `status` = `\"archived\"`)",
        "**Schedule:** every 15m",
        "| **crm-a** | sandbox |",
        "`http://127.0.0.1:9/crm-a`, `https://api.tinycrm.example`",
        "### acme/tinycrm (active version 2.1.0)",
    ] {
        assert!(md.contains(needle), "no {needle:?} in\n{md}");
    }
    assert!(
        md.contains("c0 -->|\"contacts-a-to-b (never-run)\"| c1"),
        "{md}"
    );
    let page = html(&map);
    for needle in [
        "<div class=\"card\" data-pipeline=\"contacts-a-to-b\">",
        "rename: email_address → email",
        "<code>phone</code> → <code>crm-b</code>",
        "conflicts: hold · deletes: archive",
        "<g data-pipeline=\"contacts-a-to-b\">",
        "class=\"edge h-never-run\"",
        "<rect class=\"node h-failing\"",
    ] {
        assert!(page.contains(needle), "no {needle:?} in\n{page}");
    }
    // Self-contained: nothing is fetched from anywhere.
    for outside in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(outside), "{outside} in the page");
    }
}

#[test]
fn no_secret_value_reaches_any_rendering() {
    let db = database();
    let map = Map::build(&db, &db, Some(&Sealer::from_key(&[7u8; 32]))).unwrap();
    let json = serde_json::to_string(&map).unwrap();
    for (what, text) in [
        ("json", json),
        ("markdown", markdown(&map)),
        ("html", html(&map)),
    ] {
        assert!(
            !text.contains(SECRET),
            "the secret is in the {what}:\n{text}"
        );
        // The secret's name is shown, and the health error still says what failed.
        assert!(text.contains("token"), "{what}");
        assert!(text.contains("HTTP 401"), "{what}");
    }
}

#[test]
fn an_arrow_takes_its_pipelines_health() {
    use nexo_sync::store::RunStatus::*;
    assert_eq!(pipeline_status(Some(Failed), true, 3), "failing");
    assert_eq!(pipeline_status(Some(Succeeded), true, 0), "paused");
    assert_eq!(pipeline_status(Some(Succeeded), false, 0), "ok");
    assert_eq!(pipeline_status(Some(Succeeded), false, 1), "warning");
    assert_eq!(pipeline_status(Some(Interrupted), false, 0), "warning");
    assert_eq!(pipeline_status(Some(Running), false, 0), "running");
    assert_eq!(pipeline_status(None, false, 0), "never-run");
}

#[test]
fn two_pipelines_between_the_same_boxes_do_not_overlap() {
    let db = database();
    let mut back = Pipeline::from_toml(PIPELINE, "p.toml").unwrap();
    back.name = "contacts-b-to-a".into();
    std::mem::swap(&mut back.source, &mut back.destination);
    back.master = Default::default();
    db.save_pipeline(&back).unwrap();
    let map = Map::build(&db, &db, Some(&Sealer::from_key(&[7u8; 32]))).unwrap();
    let d = &map.diagram;
    assert_eq!(d.edges.len(), 2);
    assert_ne!(
        (d.edges[0].label_x, d.edges[0].label_y),
        (d.edges[1].label_x, d.edges[1].label_y)
    );
    assert_ne!(d.edges[0].path, d.edges[1].path);
    for n in &d.nodes {
        assert!(n.x >= 0 && n.x + n.w <= d.width && n.y + n.h <= d.height);
    }
}

fn system(plugin: &str, connections: &[&str]) -> System {
    System {
        plugin: plugin.into(),
        description: None,
        vendor: None,
        active_version: Some("1.0.0".into()),
        connections: connections
            .iter()
            .map(|c| ConnectionMap {
                name: c.to_string(),
                environment: "production".into(),
                plugin: plugin.into(),
                version: Some("1.0.0".into()),
                pinned: false,
                granted_hosts: vec![],
                origin_overrides: Default::default(),
                requests_per_minute: None,
                secrets: vec![],
                health: ConnectionHealth {
                    status: "ok",
                    checked_at: None,
                    error: None,
                },
            })
            .collect(),
    }
}

fn arrow(name: &str, from: &str, to: &str) -> PipelineMap {
    let end = |c: &str| End {
        connection: c.into(),
        stream: "s".into(),
    };
    PipelineMap {
        name: name.into(),
        description: None,
        source: end(from),
        destination: end(to),
        entity: "e".into(),
        model: None,
        mode: "incremental".into(),
        master_system: from.into(),
        field_owners: Default::default(),
        update_only: false,
        conflict_policy: "source-wins".into(),
        delete_policy: "ignore".into(),
        archive: Default::default(),
        schedule: "manual".into(),
        after: vec![],
        mappers: vec![],
        health: PipelineHealth {
            status: "ok",
            last_run: None,
            last_run_status: None,
            last_run_at: None,
            last_error: None,
            open_dead_letters: 0,
            open_conflicts: 0,
            paused: false,
        },
    }
}

#[test]
fn the_busiest_system_sits_between_those_that_send_and_receive() {
    // Alphabetically the books come first; by flow the CRM and the ERP
    // send to the books, which send payments back to the CRM.
    let systems = [
        system("acme/books", &["books"]),
        system("acme/crm", &["crm"]),
        system("acme/erp", &["erp"]),
        system("acme/warehouse", &["stock"]),
    ];
    let pipelines = [
        arrow("deals", "crm", "books"),
        arrow("products", "erp", "books"),
        arrow("payments", "books", "crm"),
        arrow("stock", "books", "stock"),
        arrow("stock-back", "stock", "books"),
        arrow("orders", "books", "stock"),
    ];
    let d = Diagram::lay_out(&systems, &pipelines);
    let x = |c: &str| d.nodes.iter().find(|n| n.connection == c).unwrap().x;
    assert!(x("crm") < x("books") && x("erp") < x("books"), "{d:?}");
    assert!(x("stock") > x("books"), "{d:?}");
    assert_eq!(x("crm"), x("erp"), "senders share the left column");
    // Every arrow joins neighbouring columns, leaving one box and entering
    // the other on the facing sides.
    for e in &d.edges {
        let (a, b) = (x(&e.from), x(&e.to));
        assert!(a != b, "{}", e.pipeline);
    }
    for n in &d.nodes {
        assert!(n.x >= 0 && n.x + n.w <= d.width && n.y + n.h <= d.height);
    }
}
