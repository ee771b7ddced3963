//! `nexo-sandbox demo`: the whole product in one command. Starts the HubSpot-like
//! and Xero-like sandbox services, installs the signed plugin bundles it is
//! given, connects both systems, applies the demo pipelines (won deals →
//! Xero customers and invoices; Xero payments → the deal's invoice status
//! in HubSpot), runs them, shows records linked across systems, and ends by
//! serving the console so a person can change a deal and watch it flow.
//! When Tryton ERP is installed (`cargo xtask setup`), it also starts a real
//! trytond with a small catalogue and syncs its products to Xero items.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use nexo::connections::{Connections, NewConnection};
use nexo::registry::{Registry, grant_all};
use nexo::sandbox::secrets::SecretValue;
use nexo::store::connections::{ConnectionGrants, Environment};
use nexo::store::sealed::Sealer;
use nexo::sync::store::Link;
use nexo::sync::{Engine, Pipeline, RunOptions, SyncStore};
use nexo_sandbox::hubspot::{self, HubSpotConfig, HubSpotSandbox, ObjectType, SeedData};
use nexo_sandbox::tryton::Tryton;
use nexo_sandbox::xero::{self, Collection, XeroConfig, XeroSandbox};

use nexo::cli::sync::counts_line;

/// The demo's pipelines, in the order they first run.
const PIPELINES: [(&str, &str); 3] = [
    (
        "won-deals-to-xero-customers",
        include_str!("../demo/won-deals-to-xero-customers.toml"),
    ),
    (
        "won-deals-to-xero-invoices",
        include_str!("../demo/won-deals-to-xero-invoices.toml"),
    ),
    (
        "invoice-payments-to-deals",
        include_str!("../demo/invoice-payments-to-deals.toml"),
    ),
];

/// The ERP pipeline, applied when Tryton runs.
const ERP_PIPELINE: (&str, &str) = (
    "tryton-products-to-xero-items",
    include_str!("../demo/tryton-products-to-xero-items.toml"),
);

const HUBSPOT: &str = "hubspot-sandbox";
const XERO: &str = "xero-sandbox";
const TRYTON: &str = "tryton-sandbox";
/// Products in the demo's Tryton catalogue.
const ERP_PRODUCTS: usize = 6;

/// Options of `nexo-sandbox demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder of signed plugin bundles (`*.nexo`) and their signers' public
    /// keys (`*.pub`), as `cargo xtask demo` packs them.
    #[arg(long)]
    bundles: PathBuf,
    /// Where the console listens at the end.
    #[arg(long, default_value = "127.0.0.1:7373")]
    addr: SocketAddr,
    /// End after the first runs instead of serving the console.
    #[arg(long)]
    no_serve: bool,
    /// Port of the HubSpot-like sandbox (0: any free port).
    #[arg(long, default_value_t = 7401)]
    hubspot_port: u16,
    /// Port of the Xero-like sandbox (0: any free port).
    #[arg(long, default_value_t = 7402)]
    xero_port: u16,
    /// How much sandbox data to generate (CRM contacts; half as many deals).
    #[arg(long, default_value_t = 40)]
    size: usize,
    /// Invoices the accountant pays in Xero during the demo.
    #[arg(long, default_value_t = 3)]
    pay: usize,
    /// Leave Tryton ERP out even when it is installed.
    #[arg(long)]
    no_erp: bool,
}

pub async fn demo(dir: &Path, registry: Registry, args: DemoArgs) -> Result<()> {
    let db = registry.db().clone();
    if !db.connection_names(None)?.is_empty() {
        bail!(
            "the data directory {} already has connections; the demo sets up a fresh one: pass another --data-dir (or remove that one)",
            dir.display()
        );
    }
    if !(4..=10_000).contains(&args.size) {
        bail!("--size must be between 4 and 10000, not {}", args.size);
    }

    section("Sandbox services (the test environment, on 127.0.0.1)");
    let hub = hubspot::start(HubSpotConfig {
        seed: SeedData::of_size(args.size, 7),
        // A few companies typed in twice, for `nexo survey` to find.
        typed_twice: true,
        port: args.hubspot_port,
        ..HubSpotConfig::default()
    })
    .await
    .context("starting the HubSpot-like sandbox (port in use? pick another with --hubspot-port)")?;
    let books = xero::start(XeroConfig {
        // The demo's own calls are few; no throttling in the way.
        rate_limit: None,
        seed: args.size / 4,
        typed_twice: true,
        port: args.xero_port,
        ..XeroConfig::default()
    })
    .await
    .context("starting the Xero-like sandbox (port in use? pick another with --xero-port)")?;
    let deals = hub.objects(ObjectType::Deals);
    let won = deals
        .iter()
        .filter(|d| d.property("dealstage").as_deref() == Some("closedwon"))
        .count();
    println!(
        "HubSpot-like CRM     {}  ({} contacts, {} companies, {} deals of which {won} won)",
        hub.url(),
        hub.count(ObjectType::Contacts),
        hub.count(ObjectType::Companies),
        deals.len(),
    );
    println!(
        "Xero-like accounting {}  ({} contacts, {} invoices already in the books)",
        books.url(),
        books.records(Collection::Contacts).len(),
        books.records(Collection::Invoices).len(),
    );
    let erp = start_erp(dir, &args).await?;

    section(&format!(
        "Plugins: signed bundles from {}",
        args.bundles.display()
    ));
    let installed = install_bundles(&db, &registry, &args.bundles).await?;
    let erp = match erp {
        Some(erp) if !installed.iter().any(|p| p == "nexo/tryton") => {
            println!(
                "(no nexo/tryton bundle in {}: the ERP pipeline is left out)",
                args.bundles.display()
            );
            drop(erp);
            None
        }
        other => other,
    };

    section("Connections (sandbox environment; secrets sealed in the host)");
    let sealer = Sealer::from_env_or_file(&dir.join("secret.key"))?;
    let connections = Connections::new(registry.clone(), sealer);
    connect(&connections, &hub, &books, erp.as_ref())?;
    let mut names = vec![HUBSPOT, XERO];
    if erp.is_some() {
        names.push(TRYTON);
    }
    for name in names {
        connections
            .test(name)
            .await
            .with_context(|| format!("testing connection {name}"))?;
        println!("{name}: check OK");
    }

    section("Pipelines");
    let engine = nexo::cli::sync::engine(dir, &registry)?;
    let mut pipelines = PIPELINES.to_vec();
    if erp.is_some() {
        pipelines.push(ERP_PIPELINE);
    }
    for (name, text) in pipelines.iter().copied() {
        let p = Pipeline::from_toml(text, name)?;
        engine.apply(&p).await?;
        println!(
            "{name}\n    {}\n    schedule: {}",
            p.description.as_deref().unwrap_or_default(),
            p.schedule()?
        );
    }

    section("First runs");
    for (name, _) in &PIPELINES[..2] {
        run(&engine, name).await?;
    }
    if erp.is_some() {
        run(&engine, ERP_PIPELINE.0).await?;
    }

    section(&format!(
        "Meanwhile in Xero, the accountant records payments for {} of the new invoices",
        args.pay
    ));
    let paid = pay_invoices(&*engine.store().clone(), &books, args.pay).await?;
    run(&engine, PIPELINES[2].0).await?;

    section("Run again: nothing changed, so nothing is written (and no echo of Nexo's own writes)");
    for (name, _) in pipelines.iter().copied() {
        run(&engine, name).await?;
    }

    section("Linked across systems: CRM → accounting → CRM");
    for deal in &paid {
        show_deal(&*engine.store().clone(), &hub, &books, deal)?;
    }
    if paid.is_empty() {
        println!("(no won deal became an invoice; try a larger --size)");
    }
    if erp.is_some() {
        section("Linked across systems: ERP → accounting");
        show_products(&*engine.store().clone(), &books)?;
    }

    if args.no_serve {
        println!(
            "\nDone. Data in {}; try `nexo --data-dir {} runs`.",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    section("The console");
    let token = demo_token(&db)?;
    let listener = nexo::cli::serve::bind(args.addr).await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let open = deals
        .iter()
        .find(|d| d.property("dealstage").as_deref() != Some("closedwon"))
        .map(|d| d.id.to_string())
        .unwrap_or_else(|| "ID".into());
    println!(
        "Log in at {url} with the token {token}\n\
         The customers pipeline runs every minute and the invoices pipeline right after it;\n\
         payments come back every minute. Win a deal in the CRM and watch it become a\n\
         customer and an invoice in Xero (the console's runs and lookup show it), e.g.:\n\n  \
         curl -X PATCH -H 'Authorization: Bearer {hub_token}' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"properties\": {{\"dealstage\": \"closedwon\"}}}}' {hub_url}/crm/v3/objects/deals/{open}\n\n\
         Ctrl-C stops the host (runs commit their page first) and the sandbox services.",
        hub_token = HubSpotConfig::default().token,
        hub_url = hub.url(),
    );
    nexo::cli::serve::serve_on(
        dir,
        registry,
        listener,
        4,
        false,
        std::time::Duration::from_secs(30),
    )
    .await?;
    drop(erp);
    drop(books);
    drop(hub);
    Ok(())
}

/// Starts a real Tryton ERP with a small product catalogue, when it is
/// installed and not left out; `None` (with the reason printed) otherwise.
async fn start_erp(dir: &Path, args: &DemoArgs) -> Result<Option<Tryton>> {
    if args.no_erp {
        println!("Tryton ERP           left out (--no-erp)");
        return Ok(None);
    }
    if Tryton::find().is_none() {
        println!(
            "Tryton ERP           not installed: `cargo xtask setup` installs it from PyPI, and the \
             demo then syncs its products to Xero"
        );
        return Ok(None);
    }
    let work = dir.join("tryton");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let erp = Tryton::start(&work)
        .await
        .context("starting Tryton ERP (pass --no-erp to run the demo without it)")?;
    let codes = erp
        .seed_products(ERP_PRODUCTS)
        .await
        .context("creating the demo's products in Tryton")?;
    println!(
        "{:<21}{}  (real trytond, fresh database; products {})",
        format!("Tryton ERP {}", erp.version()),
        erp.origin(),
        codes.join(", ")
    );
    Ok(Some(erp))
}

fn section(title: &str) {
    println!("\n== {title} ==");
}

/// Trust every `*.pub` in `dir`, then install every `*.nexo` with the
/// capabilities it asks for (its signature is checked against those keys);
/// the ids of the plugins installed.
async fn install_bundles(
    db: &nexo::store::Database,
    registry: &Registry,
    dir: &Path,
) -> Result<Vec<String>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| {
            format!(
                "cannot read the bundles folder {}; `cargo xtask demo` builds and packs them",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let with_ext = |ext: &str| -> Vec<&PathBuf> {
        entries
            .iter()
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
            .collect()
    };
    for file in with_ext("pub") {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let key = nexo::bundle::keys::PublicKey::parse(&text)
            .with_context(|| format!("{} is not a public key", file.display()))?;
        db.trust_key(&key)?;
        println!("trusted signer {} (key {})", key.name, key.key_id());
    }
    let bundles = with_ext("nexo");
    if bundles.is_empty() {
        bail!(
            "no plugin bundles (*.nexo) in {}; `cargo xtask demo` builds and packs them",
            dir.display()
        );
    }
    let mut installed = Vec::new();
    for file in bundles {
        let what = file.display().to_string();
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {what}"))?;
        let review = registry.review(bytes, &what, false, None).await?;
        let grant = grant_all(review.to_grant());
        let row = registry.install(review, &grant)?;
        println!(
            "installed {}@{} ({})",
            row.plugin_id,
            row.version,
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        installed.push(row.plugin_id);
    }
    Ok(installed)
}

fn connect(
    connections: &Connections,
    hub: &HubSpotSandbox,
    books: &XeroSandbox,
    erp: Option<&Tryton>,
) -> Result<()> {
    let xero_config = XeroConfig::default();
    let mut ends = vec![
        (
            HUBSPOT,
            "nexo/hubspot",
            // Deals are read with the properties Nexo writes back, so its own
            // writes are recognised when read again.
            json!({"page_size": 50, "properties": {"deals": [
                "dealname", "amount", "dealstage", "pipeline", "closedate", "deal_currency_code",
                "nexo_invoice_number", "nexo_invoice_status", "nexo_amount_due"
            ]}}),
            "api_token",
            HubSpotConfig::default().token,
            hub.url(),
            // The connector calls HubSpot's API only: the sandbox is
            // reached through the connection's origin override.
            Some("https://api.hubapi.com"),
        ),
        (
            XERO,
            "nexo/xero",
            json!({"tenant_id": xero_config.tenant_id}),
            "access_token",
            xero_config.token.clone(),
            books.url(),
            Some("https://api.xero.com"),
        ),
    ];
    if let Some(erp) = erp {
        ends.push((
            TRYTON,
            "nexo/tryton",
            erp.connector_config(50),
            "application_key",
            erp.application_key().to_string(),
            erp.origin().to_string(),
            // Self-hosted: the connection names the server's origin.
            None,
        ));
    }
    for (name, plugin, config, secret, token, origin, logical) in ends {
        let grants = match logical {
            Some(logical) => ConnectionGrants {
                origin_overrides: BTreeMap::from([(logical.to_string(), origin.clone())]),
                ..Default::default()
            },
            None => ConnectionGrants {
                private_http: vec![origin.clone()],
                ..Default::default()
            },
        };
        let row = connections.add(NewConnection {
            name: name.into(),
            plugin_id: plugin.into(),
            pinned_version: None,
            environment: Environment::Sandbox,
            config,
            secrets: BTreeMap::from([(secret.to_string(), SecretValue::new(token))]),
            grants,
        })?;
        match logical {
            Some(logical) => println!(
                "{} → {logical}, overridden to {origin} ({}, secret `{secret}` sealed)",
                row.name, row.plugin_id
            ),
            None => println!(
                "{} → {origin} ({}, secret `{secret}` sealed)",
                row.name, row.plugin_id
            ),
        }
    }
    Ok(())
}

async fn run(engine: &Engine, name: &str) -> Result<()> {
    let report = engine.run(name, RunOptions::default()).await?;
    println!(
        "{name}: {}  {}",
        report.status.as_str(),
        counts_line(&report.counts)
    );
    if let Some(e) = &report.error {
        println!("    error: {e}");
    }
    Ok(())
}

/// The Xero invoice linked to a HubSpot deal, if the invoices pipeline made
/// one.
fn invoice_of(store: &dyn SyncStore, deal: &str) -> Result<Option<Link>> {
    for link in store.links("invoice", HUBSPOT, "deals", &[deal], None)? {
        if let Some(invoice) = store
            .entity(link.entity_id)?
            .into_iter()
            .find(|l| l.connection == XERO && l.stream == "invoices" && !l.deleted)
        {
            return Ok(Some(invoice));
        }
    }
    Ok(None)
}

/// Pay up to `n` invoices Nexo created, in full, through Xero's API (as the
/// accountant's bank reconciliation would); the deals they came from.
async fn pay_invoices(store: &dyn SyncStore, books: &XeroSandbox, n: usize) -> Result<Vec<String>> {
    let config = XeroConfig::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut deals: Vec<(String, String)> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for run in store.runs(&nexo::sync::store::RunFilter {
        pipeline: Some(PIPELINES[1].0.into()),
        status: None,
        limit: 10,
    })? {
        for r in store.run_records(run.id)? {
            if r.outcome == nexo::sync::RecordOutcome::Created && !ids.contains(&r.source_id) {
                ids.push(r.source_id.clone());
            }
        }
    }
    for deal in ids {
        if deals.len() >= n {
            break;
        }
        if let Some(invoice) = invoice_of(store, &deal)? {
            deals.push((deal, invoice.record_id));
        }
    }
    let today = chrono::Utc::now().date_naive().to_string();
    for (_, invoice) in &deals {
        let doc = books
            .record(Collection::Invoices, invoice)
            .with_context(|| format!("invoice {invoice} is not in the Xero sandbox"))?;
        let body = json!({"Payments": [{
            "Invoice": {"InvoiceID": invoice},
            "Account": {"Code": "090"},
            "Date": today,
            "Amount": doc["AmountDue"],
            "Reference": "bank transfer"
        }]});
        let answer = client
            .put(format!("{}/api.xro/2.0/Payments", books.url()))
            .bearer_auth(&config.token)
            .header("xero-tenant-id", &config.tenant_id)
            .json(&body)
            .send()
            .await?;
        if !answer.status().is_success() {
            let status = answer.status();
            bail!(
                "the Xero sandbox refused a payment for {invoice}: {status} {}",
                answer.text().await.unwrap_or_default()
            );
        }
        println!(
            "paid {} in full: {} {}",
            text(&doc["InvoiceNumber"]),
            text(&doc["AmountDue"]),
            text(&doc["CurrencyCode"])
        );
    }
    Ok(deals.into_iter().map(|(deal, _)| deal).collect())
}

/// One deal's journey: the deal, its customer and invoice in Xero, and what
/// came back to the deal.
fn show_deal(
    store: &dyn SyncStore,
    hub: &HubSpotSandbox,
    books: &XeroSandbox,
    deal: &str,
) -> Result<()> {
    let Some(obj) = deal
        .parse()
        .ok()
        .and_then(|id| hub.get(ObjectType::Deals, id))
    else {
        return Ok(());
    };
    let prop = |name: &str| obj.property(name).unwrap_or_default();
    println!(
        "\nHubSpot deal {deal} \"{}\" ({}, {} {})",
        prop("dealname"),
        prop("dealstage"),
        prop("amount"),
        prop("deal_currency_code")
    );
    for link in store.links("customer", HUBSPOT, "deals", &[deal], None)? {
        for l in store.entity(link.entity_id)? {
            if l.connection == XERO
                && let Some(c) = books.record(Collection::Contacts, &l.record_id)
            {
                println!(
                    "  → Xero contact \"{}\" (ContactNumber {})",
                    text(&c["Name"]),
                    text(&c["ContactNumber"])
                );
            }
        }
    }
    if let Some(link) = invoice_of(store, deal)?
        && let Some(inv) = books.record(Collection::Invoices, &link.record_id)
    {
        println!(
            "  → Xero invoice {} for {} {}, now {} (amount due {})",
            text(&inv["InvoiceNumber"]),
            text(&inv["Total"]),
            text(&inv["CurrencyCode"]),
            text(&inv["Status"]),
            text(&inv["AmountDue"])
        );
    }
    println!(
        "  → back in HubSpot: nexo_invoice_number = {}, nexo_invoice_status = {}, nexo_amount_due = {}",
        prop("nexo_invoice_number"),
        prop("nexo_invoice_status"),
        prop("nexo_amount_due")
    );
    Ok(())
}

/// A few ERP products and the Xero items they became.
fn show_products(store: &dyn SyncStore, books: &XeroSandbox) -> Result<()> {
    let items = books.records(Collection::Items);
    let mut shown = 0;
    for item in items
        .iter()
        .filter(|i| text(&i["Code"]).starts_with("SRV-"))
    {
        let id = text(&item["ItemID"]);
        let Some(link) = store
            .links("product", XERO, "items", &[id.as_str()], None)?
            .into_iter()
            .next()
        else {
            continue;
        };
        let Some(source) = store
            .entity(link.entity_id)?
            .into_iter()
            .find(|l| l.connection == TRYTON)
        else {
            continue;
        };
        println!(
            "Tryton product {} ({}) → Xero item {} \"{}\" at {} ({})",
            source.record_id,
            text(&item["Code"]),
            id,
            text(&item["Name"]),
            text(&item["SalesDetails"]["UnitPrice"]),
            text(&item["SalesDetails"]["TaxType"]),
        );
        shown += 1;
        if shown == 3 {
            break;
        }
    }
    if shown == 0 {
        println!(
            "(no Tryton product reached Xero; see `nexo runs --pipeline {}`)",
            ERP_PIPELINE.0
        );
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A console token named `demo`, made for this run (a previous one is
/// replaced: tokens are shown only when created).
fn demo_token(db: &nexo::store::Database) -> Result<String> {
    db.revoke_token("demo")?;
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).context("drawing a random token")?;
    let token = format!("nexo_{}", hex::encode(bytes));
    if !db.insert_token("demo", &token, nexo::store::service::Role::Admin)? {
        bail!("cannot create the console token `demo`");
    }
    Ok(token)
}
