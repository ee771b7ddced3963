//! Admin commands: `nexo plugin install|upgrade|rollback|list`. What a
//! plugin asks for is shown in plain language before anything is installed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::bundle::Signer;
use crate::limits::{Limits, human_bytes};
use crate::registry::{Capability, Registry, Review, grant_all};
use crate::safe_text::SafeText;
use crate::store::Database;
use crate::store::audit::{Action, Change};
use crate::store::registry::CapabilityGrant;

use super::GrantArgs;

fn describe(review: &Review) {
    let m = review.manifest();
    // Everything but the checked id and versions is the vendor's text.
    println!(
        "{} {} - {} ({})",
        m.id,
        m.version,
        SafeText::line(&m.description),
        m.kind
    );
    println!(
        "  vendor     {}{}",
        SafeText::line(&m.vendor),
        m.homepage
            .as_deref()
            .map(|h| format!(" ({})", SafeText::line(h)))
            .unwrap_or_default()
    );
    match review.signer() {
        Signer::Trusted(k) => println!(
            "  signed by  {} (key {}, trusted)",
            SafeText::line(&k.name),
            k.key_id()
        ),
        Signer::UnsignedDev => {
            println!("  UNSIGNED   for local development only: nobody vouches for this code")
        }
    }
    println!("  built for  nexo:connector {}", m.wit_version);
    if let Some((active, _)) = &review.upgrade {
        println!("  upgrades   {} (active now)", active.version);
    }
    let ask = review.to_grant();
    match (&review.upgrade, ask.is_empty()) {
        (Some(_), true) => println!("It asks for nothing beyond what {} was granted.", m.id),
        (Some(_), false) => println!("Beyond what the active version was granted, it now asks to:"),
        (None, true) => println!("It asks for no network, secrets or storage."),
        (None, false) => println!("It asks to:"),
    }
    for c in ask {
        println!("  - {}", SafeText::line(&c.to_string()));
    }
    // What the engine gives an instance: the ask, within the admin's cap
    // (an ask above it was refused at review).
    let limits = Limits::default();
    match limits.memory_for(m.capabilities.memory_asked()) {
        Ok(granted) => println!(
            "  (and up to {} of memory while it runs; this host's cap is {})",
            human_bytes(granted),
            human_bytes(limits.memory_cap_bytes)
        ),
        Err(e) => println!("  (memory: {e})"),
    }
}

fn parse_grants(args: &[String], asked: &[Capability]) -> Result<CapabilityGrant> {
    let mut grant = CapabilityGrant::default();
    for g in args {
        match g.split_once(':') {
            _ if g == "all" => {
                let all = grant_all(asked);
                grant.http_origins.extend(all.http_origins);
                grant.secrets.extend(all.secrets);
                grant.kv_bytes = grant.kv_bytes.max(all.kv_bytes);
                grant.connection_origins |= all.connection_origins;
            }
            _ if g == "connection-origins" => grant.connection_origins = true,
            Some(("http", origin)) => grant.http_origins.push(origin.to_string()),
            Some(("secret", name)) => grant.secrets.push(name.to_string()),
            Some(("kv", bytes)) => {
                grant.kv_bytes = bytes
                    .parse()
                    .with_context(|| format!("--grant kv:{bytes}: not a number of bytes"))?;
            }
            _ => bail!(
                "--grant {g}: expected all, http:ORIGIN, connection-origins, secret:NAME or kv:BYTES"
            ),
        }
    }
    Ok(grant)
}

fn confirm() -> Result<bool> {
    print!("Grant these and install? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub(crate) async fn install(
    registry: &Registry,
    bundle: &Path,
    upgrade_of: Option<&str>,
    args: &GrantArgs,
) -> Result<()> {
    let what = bundle.display().to_string();
    let bytes = std::fs::read(bundle).with_context(|| format!("cannot read {what}"))?;
    let review = registry
        .review(bytes, &what, args.allow_unsigned, upgrade_of)
        .await?;
    describe(&review);
    let asked = review.to_grant().to_vec();
    let grant = if !args.grant.is_empty() {
        parse_grants(&args.grant, &asked)?
    } else if asked.is_empty() {
        CapabilityGrant::default()
    } else if std::io::stdin().is_terminal() {
        if !confirm()? {
            bail!("not installed: the capabilities were not granted");
        }
        grant_all(&asked)
    } else {
        bail!(
            "not installed: capabilities need an explicit grant; answer at the prompt or pass --grant all (or each: --grant http:ORIGIN, --grant connection-origins, --grant secret:NAME, --grant kv:BYTES)"
        );
    };
    let id = review.manifest().id.clone();
    let before = crate::serve::audit::plugin(registry.db(), &id)?;
    let row = registry.install(review, &grant)?;
    let verb = if upgrade_of.is_some() {
        "upgraded to"
    } else {
        "installed"
    };
    let action = if before.is_some() {
        Action::PluginUpgrade
    } else {
        Action::PluginInstall
    };
    super::audit::record(
        registry.db(),
        crate::serve::audit::with(
            Change::new(action, format!("plugin/{}", row.plugin_id)),
            before,
            crate::serve::audit::plugin(registry.db(), &row.plugin_id)?,
        ),
    )?;
    println!(
        "{verb} {}@{}{}",
        row.plugin_id,
        row.version,
        if row.signer_key_id.is_none() {
            " (UNSIGNED, development only)"
        } else {
            ""
        }
    );
    Ok(())
}

pub(crate) fn rollback(
    registry: &Registry,
    id: &str,
    version: Option<&semver::Version>,
) -> Result<()> {
    let before = crate::serve::audit::plugin(registry.db(), id)?;
    let row = registry.rollback(id, version)?;
    super::audit::record(
        registry.db(),
        crate::serve::audit::with(
            Change::new(Action::PluginRollback, format!("plugin/{id}")),
            before,
            crate::serve::audit::plugin(registry.db(), id)?,
        ),
    )?;
    println!("{id} is now at {} (with the grants it had)", row.version);
    Ok(())
}

pub(crate) fn list(db: &Database) -> Result<()> {
    let ids = db.plugin_ids()?;
    if ids.is_empty() {
        println!("no plugins installed; install one with `nexo plugin install BUNDLE`");
    }
    for id in ids {
        let versions = db.plugin_versions(&id)?;
        let active = db.active_version(&id)?;
        let Some(active) = active else { continue };
        let all: Vec<String> = versions
            .iter()
            .map(|v| {
                if v.version == active.version {
                    format!("{} (active)", v.version)
                } else {
                    v.version.to_string()
                }
            })
            .collect();
        println!("{id}  [{}]  {}", active.kind, all.join(", "));
        println!(
            "  signer   {}",
            active
                .signer_key_id
                .as_deref()
                .unwrap_or("UNSIGNED (development only)")
        );
        let g = &active.grants;
        let mut granted: Vec<String> = g.http_origins.iter().map(|o| format!("http {o}")).collect();
        granted.extend(g.secrets.iter().map(|s| format!("secret {s}")));
        if g.kv_bytes > 0 {
            granted.push(format!("storage {}", human_bytes(g.kv_bytes)));
        }
        println!(
            "  grants   {}",
            if granted.is_empty() {
                "none".to_string()
            } else {
                granted.join(", ")
            }
        );
        let users = db.connection_names(Some(&id))?;
        let users = if users.is_empty() {
            "no connection".to_string()
        } else {
            users.join(", ")
        };
        println!("  used by  {users}");
    }
    Ok(())
}

pub(crate) fn remove(registry: &Registry, id: &str, force: bool) -> Result<()> {
    let before = crate::serve::audit::plugin(registry.db(), id)?;
    let removed = registry.remove(id, force)?;
    let mut change = Change::new(Action::PluginRemove, format!("plugin/{id}"));
    change.before = before;
    if !removed.is_empty() {
        change = change.after(serde_json::json!({"removed_connections": removed}));
    }
    super::audit::record(registry.db(), change)?;
    println!("removed {id}");
    if !removed.is_empty() {
        println!("and the connections that used it: {}", removed.join(", "));
    }
    Ok(())
}
