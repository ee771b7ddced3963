//! `nexo docs`: write the living map of what is connected — every system,
//! connection, pipeline and its health, from the live database — as
//! Markdown and as a self-contained HTML page (the model and renderers are
//! `nexo_daemon::map`, which the console's Map page uses too).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::Runtime;
use crate::connections::Connections;
use crate::serve::map::{Map, html, markdown};
use crate::store::sealed::Sealer;

/// Which documents `nexo docs` writes.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum DocsFormat {
    /// `nexo-map.md`.
    Markdown,
    /// `nexo-map.html` (self-contained: inline CSS and SVG, no script).
    Html,
    /// Both.
    Both,
}

/// `nexo docs`.
#[derive(Debug, Args)]
pub(crate) struct DocsArgs {
    /// Folder to write into (created if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Which documents.
    #[arg(long, value_enum, default_value_t = DocsFormat::Both)]
    format: DocsFormat,
    /// Check every connection now (its plugin's `check`, as `nexo serve`
    /// does every few minutes) and map that health, rather than the last
    /// one saved.
    #[arg(long)]
    check: bool,
}

pub(crate) async fn docs(dir: &Path, runtime: &Runtime, args: DocsArgs) -> Result<()> {
    let db = super::open_db(dir)?;
    let sealer = Sealer::from_env_or_file(&dir.join("secret.key"))?;
    if args.check {
        let connections = Connections::new(super::registry(dir, runtime)?, sealer.clone());
        crate::serve::check_connections(&connections, &db).await;
    }
    let map = Map::build(&db, &db, Some(&sealer))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut written = Vec::new();
    if args.format != DocsFormat::Html {
        written.push(write(&args.out.join("nexo-map.md"), &markdown(&map))?);
    }
    if args.format != DocsFormat::Markdown {
        written.push(write(&args.out.join("nexo-map.html"), &html(&map))?);
    }
    println!(
        "mapped {} systems, {} connections, {} pipelines:",
        map.systems.len(),
        map.connections().count(),
        map.pipelines.len()
    );
    for path in written {
        println!("  wrote {}", path.display());
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<PathBuf> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_path_buf())
}
