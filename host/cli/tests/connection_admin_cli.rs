//! An admin maintaining connections through the `nexo` binary: replacing
//! a connection's secret, config and grants with `connection update` (with
//! the checks of `connection add`, and nothing changed when one fails),
//! removing a connection pipelines still use (refused, naming them;
//! `--force` pauses them), and installing a mapper (the memory it gets).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use nexo::sync::store::PipelineStore;
use nexo_tests::cli::{fails, ok};
use nexo_tests::synckit::{Kit, pipeline};
use nexo_tests::{echo, programs, tinycrm};

/// The TinyCRM token, and the echo API's old and new tokens (long enough
/// to be redacted).
const CRM_TOKEN: &str = "admin-crm-token-51aa";
const OLD_TOKEN: &str = "old-echo-token-9f3b27";
const NEW_TOKEN: &str = "new-echo-token-c48e01";

fn nexo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexo"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env("NEXO_LOG", "info")
        .env("CRM_TOKEN", CRM_TOKEN)
        .env("OLD_TOKEN", OLD_TOKEN)
        .env("NEW_TOKEN", NEW_TOKEN)
        .env_remove("NEXO_SECRET_KEY")
        .output()
        .unwrap()
}

/// `nexo` on the data directory `dir` itself (a sync kit's).
fn nexo_in(dir: &Path, args: &[&str]) -> Output {
    nexo_tests::cli::command(env!("CARGO_BIN_EXE_nexo"), dir, "warn")
        .args(args)
        .output()
        .unwrap()
}

/// Both outputs of a command, for searching.
fn all_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Trust a fresh vendor key in `d` and pack `manifest` with `component`
/// into `d/<out>`, signed by it.
fn pack(d: &Path, manifest: &Path, component: &str, out: &str) {
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    if !d.join("v.key").exists() {
        ok(nexo(
            d,
            &["plugin", "keygen", "--name", "Vendor", "--out", &p("v.key")],
        ));
        ok(nexo(d, &["trust", "add", &p("v.key.pub")]));
    }
    ok(nexo(
        d,
        &[
            "plugin",
            "pack",
            "--manifest",
            manifest.to_str().unwrap(),
            "--component",
            component,
            "--key",
            &p("v.key"),
            "--out",
            &p(out),
        ],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_replaces_what_is_given_with_the_checks_of_add() {
    let crm = tinycrm::start(tinycrm::seed(2), CRM_TOKEN).await;
    let api = echo::start_echo().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let mut outputs = Vec::new();
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/example-crm/nexo-plugin.toml");
    pack(d, &manifest, programs::EXAMPLE_CRM, "crm.nexo");
    ok(nexo(
        d,
        &["plugin", "install", &p("crm.nexo"), "--grant", "all"],
    ));
    let id = "nexo-examples/tinycrm";
    let config = |name: &str, url: &str, extra: &str| {
        std::fs::write(d.join(name), format!(r#"{{"base_url": "{url}"{extra}}}"#)).unwrap();
        p(name)
    };
    let add = |name: &str, cfg: &str, secret: &str, origin: &str| {
        nexo(
            d,
            &[
                "connection",
                "add",
                name,
                "--plugin",
                id,
                "--config",
                cfg,
                "--secret",
                secret,
                "--grant-private-http",
                origin,
            ],
        )
    };

    // The secret is replaced, and the next call carries the new one only.
    ok(add(
        "api",
        &config("api.json", &api.url(), ""),
        "api_token=env:OLD_TOKEN",
        &api.url(),
    ));
    let _ = nexo(d, &["connection", "test", "api"]);
    assert!(api.received_text().contains(OLD_TOKEN), "the first call");
    let seen_before = api.received.lock().unwrap().len();
    let out = nexo(
        d,
        &[
            "connection",
            "update",
            "api",
            "--secret",
            "api_token=env:NEW_TOKEN",
        ],
    );
    outputs.push(all_text(&out));
    let said = ok(out);
    assert!(
        said.contains("updated connection api: secret api_token replaced"),
        "{said}"
    );
    outputs.push(all_text(&nexo(d, &["connection", "test", "api"])));
    outputs.push(all_text(&nexo(d, &["connection", "show", "api"])));
    let after = api.received.lock().unwrap()[seen_before..].join("\n");
    assert!(
        after.contains(NEW_TOKEN),
        "the call after the update: {after}"
    );
    assert!(
        !after.contains(OLD_TOKEN),
        "the old token was still sent: {after}"
    );
    for text in &outputs {
        assert!(
            !text.contains(NEW_TOKEN) && !text.contains(OLD_TOKEN),
            "{text}"
        );
    }

    // A bad config changes nothing: the old one still works.
    ok(add(
        "crm",
        &config("crm.json", &crm.url(), ""),
        "api_token=env:CRM_TOKEN",
        &crm.url(),
    ));
    let bad = config("bad.json", &crm.url(), r#", "page_size": "ten""#);
    let err = fails(nexo(d, &["connection", "update", "crm", "--config", &bad]));
    assert!(err.contains("field `/page_size`"), "{err}");
    assert!(ok(nexo(d, &["connection", "test", "crm"])).contains("connection crm: OK"));

    // One bad part refuses the whole update: the good config given with an
    // unknown secret is not saved either.
    let good = config("good.json", &crm.url(), r#", "page_size": 7"#);
    let err = fails(nexo(
        d,
        &[
            "connection",
            "update",
            "crm",
            "--config",
            &good,
            "--secret",
            "api_key=env:NEW_TOKEN",
        ],
    ));
    assert!(
        err.contains("does not use a secret named `api_key` (it uses: api_token)"),
        "{err}"
    );
    let shown = ok(nexo(d, &["connection", "show", "crm"]));
    assert!(!shown.contains("page_size"), "{shown}");

    // A grant wider than the install's approval is refused as on add: the
    // Xero connector was approved for api.xero.com only.
    let xero = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/xero/nexo-plugin.toml");
    pack(d, &xero, programs::XERO, "xero.nexo");
    ok(nexo(
        d,
        &["plugin", "install", &p("xero.nexo"), "--grant", "all"],
    ));
    std::fs::write(d.join("xero.json"), r#"{"tenant_id": "t-1"}"#).unwrap();
    ok(nexo(
        d,
        &[
            "connection",
            "add",
            "books",
            "--plugin",
            "nexo/xero",
            "--config",
            &p("xero.json"),
            "--secret",
            "access_token=env:CRM_TOKEN",
            "--grant-http",
            "https://api.xero.com",
        ],
    ));
    let err = fails(nexo(
        d,
        &[
            "connection",
            "update",
            "books",
            "--grant-http",
            "https://evil.example",
        ],
    ));
    assert!(
        err.contains(
            "origin https://evil.example is not covered by what nexo/xero@0.1.0 was granted"
        ),
        "{err}"
    );
    let shown = ok(nexo(d, &["connection", "show", "books"]));
    assert!(
        shown.contains("may reach    https://api.xero.com\n"),
        "{shown}"
    );

    // Origin overrides: only on sandbox connections, only of an origin the
    // plugin names exactly, only to one exact origin; shown, and removable.
    let err = fails(nexo(
        d,
        &[
            "connection",
            "add",
            "books-prod",
            "--plugin",
            "nexo/xero",
            "--env",
            "production",
            "--config",
            &p("xero.json"),
            "--secret",
            "access_token=env:CRM_TOKEN",
            "--origin-override",
            "https://api.xero.com=http://127.0.0.1:9",
        ],
    ));
    assert!(err.contains("only for sandbox connections"), "{err}");
    let override_of = |from_to: &str| {
        nexo(
            d,
            &[
                "connection",
                "update",
                "books",
                "--origin-override",
                from_to,
            ],
        )
    };
    let err = fails(override_of("https://evil.example=http://127.0.0.1:9"));
    assert!(
        err.contains("does not declare the origin https://evil.example")
            && err.contains("https://api.xero.com:443"),
        "the refusal names the origins it may override: {err}"
    );
    let err = fails(override_of("https://api.xero.com=http://127.0.0.1:9/api"));
    assert!(err.contains("scheme://host:port"), "{err}");
    let err = fails(override_of("https://api.xero.com"));
    assert!(err.contains("FROM=TO"), "{err}");
    ok(override_of("https://api.xero.com=http://127.0.0.1:9"));
    let shown = ok(nexo(d, &["connection", "show", "books"]));
    assert!(
        shown.contains(
            "override     https://api.xero.com:443 is sent to http://127.0.0.1:9 (sandbox origin override)"
        ) && shown.contains("https://api.xero.com:443 (through its override)"),
        "{shown}"
    );
    ok(nexo(
        d,
        &[
            "connection",
            "update",
            "books",
            "--remove-origin-override",
            "https://api.xero.com",
        ],
    ));
    let shown = ok(nexo(d, &["connection", "show", "books"]));
    assert!(!shown.contains("override"), "{shown}");

    // A required secret cannot be removed; it can be replaced.
    let err = fails(nexo(
        d,
        &[
            "connection",
            "update",
            "crm",
            "--remove-secret",
            "api_token",
        ],
    ));
    assert!(err.contains("needs the secret `api_token`"), "{err}");
    assert!(err.contains("--secret api_token="), "{err}");
    let err = fails(nexo(
        d,
        &["connection", "update", "crm", "--remove-secret", "old_key"],
    ));
    assert!(
        err.contains("connection `crm` has no secret named `old_key` (it has: api_token)"),
        "{err}"
    );

    // What is given changes, and nothing else.
    let said = ok(nexo(
        d,
        &[
            "connection",
            "update",
            "crm",
            "--config",
            &good,
            "--requests-per-minute",
            "90",
        ],
    ));
    assert!(said.contains("config replaced"), "{said}");
    let shown = ok(nexo(d, &["connection", "show", "crm"]));
    assert!(shown.contains("\"page_size\": 7"), "{shown}");
    assert!(shown.contains("at most 90 per minute"), "{shown}");
    assert!(
        shown.contains(&format!("may reach    {} (internal allowed)", crm.url())),
        "{shown}"
    );
    assert!(ok(nexo(d, &["connection", "test", "crm"])).contains("connection crm: OK"));

    let said = ok(nexo(
        d,
        &[
            "connection",
            "update",
            "crm",
            "--requests-per-minute",
            "default",
        ],
    ));
    assert!(
        said.contains("requests per minute back to the default of 600"),
        "{said}"
    );
    let shown = ok(nexo(d, &["connection", "show", "crm"]));
    assert!(
        shown.contains("at most 600 per minute (the default)"),
        "{shown}"
    );
    let err = fails(nexo(d, &["connection", "update", "crm"]));
    assert!(
        err.contains("nothing to update on connection `crm`"),
        "{err}"
    );

    let err = fails(nexo(
        d,
        &["connection", "update", "nope", "--requests-per-minute", "5"],
    ));
    assert!(err.contains("no connection named `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_refuses_while_pipelines_use_it_and_force_pauses_them() {
    let kit = Kit::new(tinycrm::seed(3), Default::default(), 10).await;
    kit.apply(&pipeline("a-to-b", "", "")).await;
    kit.apply(
        &pipeline("b-to-a", "", "")
            .replace("\"crm-a\"", "\"crm-x\"")
            .replace("\"crm-b\"", "\"crm-a\"")
            .replace("\"crm-x\"", "\"crm-b\""),
    )
    .await;
    let dir = kit.dir.path();

    let err = fails(nexo_in(dir, &["connection", "remove", "crm-a"]));
    assert!(err.contains("a-to-b"), "{err}");
    assert!(err.contains("b-to-a"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(kit.db.connection("crm-a").unwrap().is_some(), "still there");
    assert!(!kit.db.pipeline("a-to-b").unwrap().unwrap().paused);

    let said = ok(nexo_in(dir, &["connection", "remove", "crm-a", "--force"]));
    assert!(said.contains("removed connection crm-a"), "{said}");
    assert!(said.contains("paused pipelines a-to-b, b-to-a"), "{said}");
    assert!(kit.db.connection("crm-a").unwrap().is_none());
    for name in ["a-to-b", "b-to-a"] {
        let row = kit.db.pipeline(name).unwrap().unwrap();
        assert!(row.paused, "{name} not paused");
        let reason = row.paused_reason.unwrap_or_default();
        assert!(reason.contains("connection crm-a was removed"), "{reason}");
    }
    let listed = ok(nexo_in(dir, &["pipeline", "list"]));
    assert!(listed.contains("connection crm-a was removed"), "{listed}");

    // A connection nothing uses goes without --force.
    let err = fails(nexo_in(dir, &["connection", "remove", "crm-b"]));
    assert!(err.contains("a-to-b, b-to-a"), "{err}");
    let err = fails(nexo_in(dir, &["connection", "remove", "nope"]));
    assert!(err.contains("no connection named `nope`"), "{err}");

    // Removing the plugin with --force removes its connections the same
    // way: the pipelines that used them are paused, naming the connection.
    ok(nexo_in(
        dir,
        &[
            "plugin",
            "remove",
            nexo_tests::synckit::CRM_PLUGIN,
            "--force",
        ],
    ));
    assert!(kit.db.connection("crm-b").unwrap().is_none());
    for name in ["a-to-b", "b-to-a"] {
        let row = kit.db.pipeline(name).unwrap().unwrap();
        assert!(row.paused, "{name} not paused");
        let reason = row.paused_reason.unwrap_or_default();
        assert!(
            reason.contains("connection crm-b was removed with its plugin acme/crm"),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_install_says_the_memory_it_really_gets() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The manifest's ask, within the admin's cap (256 MiB unless
    // NEXO_PLUGIN_MEMORY_CAP says); an old bundle's 0 means "not stated":
    // the default 64 MiB.
    for (id, memory, says) in [
        ("acme/small", Some(16u64 << 20), "up to 16 MiB of memory"),
        ("acme/big", Some(256 << 20), "up to 256 MiB of memory"),
        ("acme/plain", None, "up to 64 MiB of memory"),
        ("acme/old", Some(0), "up to 64 MiB of memory"),
    ] {
        let caps = memory
            .map(|m| format!("[capabilities]\nmemory_bytes = {m}\n"))
            .unwrap_or_default();
        let manifest = d.join(format!("{}.toml", id.replace('/', "-")));
        std::fs::write(
            &manifest,
            format!(
                "id = \"{id}\"\nversion = \"1.0.0\"\nkind = \"mapper\"\ndescription = \"m\"\nvendor = \"Acme\"\n{caps}"
            ),
        )
        .unwrap();
        let bundle = format!("{}.nexo", id.replace('/', "-"));
        pack(d, &manifest, programs::TEST_MAPPER, &bundle);
        let said = ok(nexo(
            d,
            &["plugin", "install", &d.join(&bundle).to_string_lossy()],
        ));
        assert!(said.contains(says), "{id}: {said}");
        assert!(said.contains("this host's cap is 256 MiB"), "{said}");
    }
}
