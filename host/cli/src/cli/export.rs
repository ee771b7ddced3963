//! `nexo stream export CONNECTION STREAM` (and `plugin call … read
//! --all-pages`): a stream's records written as they arrive, one page at a
//! time — JSON lines or CSV, to a file or stdout — so memory stays that of
//! one page whatever the stream's size. With a state file, each page's next
//! state is saved once its records are flushed, so an export that stops
//! (a page limit, an error, Ctrl-C) resumes where it left off. A page limit
//! that is reached is an error that says how to go on, never a silent end.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::ConnectorPlugin;
use crate::plugin::{Operation, Record};
use crate::safe_text::{SafeText, safe_json};

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line: `{"stream", "id", "operation", "payload", "cursor"}`.
    Jsonl,
    /// A header row, then `id` and one column per top-level payload field
    /// (nested values as JSON text); the columns are the first page's.
    Csv,
}

/// Options of `nexo stream export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The connection to read (see `nexo connection list`).
    pub(crate) connection: String,
    /// The stream to export.
    pub(crate) stream: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub(crate) format: Format,
    /// Write to this file (created or, when resuming, appended to); stdout
    /// when absent.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Keep the read state here after each page: an export that stops
    /// resumes from it when run again with the same file (delete the file
    /// to start over).
    #[arg(long, value_name = "FILE")]
    pub(crate) state_file: Option<PathBuf>,
    /// Stop with an error after this many pages (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub(crate) max_pages: u64,
}

/// Where records go, in their format.
pub(crate) struct Sink<W: Write> {
    out: W,
    format: Format,
    /// CSV: whether the header is in the output (a resumed file has it).
    header_written: bool,
    /// CSV: the columns, decided by the first record read.
    columns: Option<Vec<String>>,
    line: String,
    /// Bytes written through this sink.
    written: u64,
    /// Length of the output file when the sink started (`None`: not a file).
    base: Option<u64>,
}

impl<W: Write> Sink<W> {
    /// A sink over `out`, a file already `base` bytes long (`None`: stdout).
    pub(crate) fn new(out: W, format: Format, base: Option<u64>) -> Self {
        // A resumed file has its CSV header.
        let header_written = base.is_some_and(|b| b > 0);
        Sink {
            out,
            format,
            header_written,
            columns: None,
            line: String::new(),
            written: 0,
            base,
        }
    }

    /// The output file's length now (`None`: not a file).
    fn position(&self) -> Option<u64> {
        self.base.map(|b| b + self.written)
    }

    /// Write one page's records and flush them.
    pub(crate) fn page(&mut self, records: &[Record]) -> Result<()> {
        for r in records {
            self.line.clear();
            match self.format {
                Format::Jsonl => jsonl_line(&mut self.line, r)?,
                Format::Csv => self.csv_line(r)?,
            }
            self.out.write_all(self.line.as_bytes())?;
            self.written += self.line.len() as u64;
        }
        self.out.flush()?;
        Ok(())
    }

    fn csv_line(&mut self, r: &Record) -> Result<()> {
        let payload: Value = serde_json::from_str(&r.payload)
            .with_context(|| format!("record {} of {} is not JSON", r.id, r.stream))?;
        let fields = payload.as_object();
        // A resumed export's first record decides the same columns, in the
        // same order, as the first record of the run that wrote the header.
        let cols = self.columns.get_or_insert_with(|| {
            fields
                .map(|m| m.keys().filter(|k| *k != "id").cloned().collect())
                .unwrap_or_default()
        });
        if !self.header_written {
            let mut head = String::new();
            csv_cell(&mut head, "id");
            for c in cols.iter() {
                head.push(',');
                csv_cell(&mut head, c);
            }
            head.push('\n');
            let head = safe_json(head);
            self.out.write_all(head.as_bytes())?;
            self.written += head.len() as u64;
            self.header_written = true;
        }
        let mut row = String::new();
        csv_cell(&mut row, &r.id);
        for c in cols {
            row.push(',');
            match fields.and_then(|m| m.get(c)) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => csv_cell(&mut row, s),
                Some(v) => csv_cell(&mut row, &v.to_string()),
            }
        }
        row.push('\n');
        self.line.push_str(&safe_json(row));
        Ok(())
    }
}

/// One record as a JSON line. The payload is the plugin's JSON text as it
/// is (checked when read), not parsed and re-encoded; JSON whitespace
/// between its tokens that would break the line is made a space (inside a
/// valid JSON string a raw line break cannot occur).
fn jsonl_line(line: &mut String, r: &Record) -> Result<()> {
    line.push_str("{\"stream\":");
    line.push_str(&serde_json::to_string(&r.stream)?);
    line.push_str(",\"id\":");
    line.push_str(&serde_json::to_string(&r.id)?);
    line.push_str(",\"operation\":");
    line.push_str(match r.operation {
        Operation::Upsert => "\"upsert\"",
        Operation::Delete => "\"delete\"",
    });
    line.push_str(",\"payload\":");
    let payload = r.payload.trim();
    if payload.is_empty() {
        line.push_str("null");
    } else if payload.contains(['\n', '\r']) {
        line.push_str(&payload.replace(['\n', '\r'], " "));
    } else {
        line.push_str(payload);
    }
    line.push_str(",\"cursor\":");
    line.push_str(&serde_json::to_string(&r.cursor)?);
    line.push_str("}\n");
    if !plainly_safe(line) {
        let safe = safe_json(std::mem::take(line));
        *line = safe;
    }
    Ok(())
}

/// Whether `text` holds none of the characters `safe_json` neutralises,
/// told from its bytes: each of those is an ASCII control, a C1 control
/// (UTF-8 lead byte 0xC2) or a direction or separator mark (lead byte
/// 0xE2). A record's line is nearly always plain, and checking it a
/// character at a time was the export's largest host cost (≈ 7 % of its
/// CPU at 100 000 records); a line that is not plain takes that check.
fn plainly_safe(text: &str) -> bool {
    text.bytes()
        .all(|b| !matches!(b, 0..=0x08 | 0x0b..=0x1f | 0x7f | 0xc2 | 0xe2))
}

fn csv_cell(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// What an export did.
#[derive(Debug, Default)]
pub(crate) struct Exported {
    pub(crate) records: u64,
    pub(crate) pages: u64,
    pub(crate) rejected: u64,
    /// The state to resume from when more pages remain.
    pub(crate) more: Option<Option<String>>,
}

/// Read `stream` page by page from `state` into `sink`, saving each next
/// state to `state_file` once its page is flushed, until the stream ends
/// or `max_pages` pages (0: no limit) were read.
pub(crate) async fn run<W: Write>(
    connector: &ConnectorPlugin,
    config: &str,
    stream: &str,
    mut state: Option<String>,
    max_pages: u64,
    sink: &mut Sink<W>,
    state_file: Option<&Path>,
) -> Result<Exported> {
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Some(bar)
    } else {
        None
    };
    let mut done = Exported::default();
    loop {
        let checked = connector
            .read_checked(config, stream, state.as_deref())
            .await
            .into_result()
            .with_context(|| {
                format!(
                    "reading page {} of {stream}{}",
                    done.pages + 1,
                    resume_hint(state_file)
                )
            })?;
        for bad in &checked.rejected {
            eprintln!(
                "record {} of {stream} not exported: {}",
                SafeText::line(&bad.record.id),
                SafeText::line(&bad.fault.to_string())
            );
        }
        done.rejected += checked.rejected.len() as u64;
        let page = checked.page;
        sink.page(&page.records)?;
        done.records += page.records.len() as u64;
        done.pages += 1;
        if let Some(file) = state_file {
            let saved = Saved {
                state: page.state.clone(),
                bytes: sink.position(),
            };
            saved.save(file)?;
        }
        if let Some(bar) = &progress {
            bar.set_message(format!("{} records, {} pages", done.records, done.pages));
            bar.tick();
        }
        state = page.state;
        if !page.has_more {
            break;
        }
        if max_pages > 0 && done.pages >= max_pages {
            done.more = Some(state);
            break;
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(done)
}

fn resume_hint(state_file: Option<&Path>) -> String {
    match state_file {
        Some(f) => format!(
            "; the pages before it are written and {} holds where to resume: run the same command again",
            f.display()
        ),
        None => String::new(),
    }
}

/// Where an export stopped: the next read state and, when it writes to a
/// file, how long the file was once that state's page was flushed. A
/// resume cuts the file back to that length, so a kill between writing a
/// page and saving its state neither doubles the page nor leaves half a
/// record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Saved {
    state: Option<String>,
    #[serde(default)]
    bytes: Option<u64>,
}

impl Saved {
    /// Written whole to a temporary file beside `file` and renamed, so a
    /// crash never leaves half a state.
    fn save(&self, file: &Path) -> Result<()> {
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
        Ok(())
    }

    /// The state saved in `file` by an earlier export (`None`: start fresh).
    fn load(file: &Path) -> Result<Option<Saved>> {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        serde_json::from_slice(&text).map(Some).with_context(|| {
            format!(
                "{} is not a state file written by nexo stream export; delete it to start over",
                file.display()
            )
        })
    }
}

/// `nexo stream export`.
pub(crate) async fn export(
    connections: &crate::connections::Connections,
    args: ExportArgs,
) -> Result<()> {
    let (row, connector) = connections
        .open(&args.connection, crate::Limits::default())
        .await?;
    if !connector.spec().streams.iter().any(|s| s == &args.stream) {
        bail!(
            "connection {} ({}) has no stream `{}`; its streams: {}",
            row.name,
            row.plugin_id,
            args.stream,
            connector.spec().streams.join(", ")
        );
    }
    let resumed = match &args.state_file {
        Some(f) => Saved::load(f)?,
        None => None,
    };
    if let (Some(_), None) = (&resumed, &args.out) {
        // Resuming appends: to stdout, the first part is gone.
        eprintln!("resuming from the saved state; only the remaining records are written");
    }
    let start = resumed.as_ref().and_then(|r| r.state.clone());
    let (out, bytes_before): (Box<dyn Write>, Option<u64>) = match &args.out {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            // Fresh: empty. Resumed: cut back to what the saved state covers
            // (a state saved by a stdout export covers nothing of a file).
            let keep = resumed.as_ref().and_then(|r| r.bytes).unwrap_or(0);
            let len = file.metadata()?.len();
            if len < keep {
                bail!(
                    "{} holds {len} bytes but the saved state says the export had written {keep}: it was changed since; delete {} to start over",
                    path.display(),
                    args.state_file
                        .as_deref()
                        .map(|f| f.display().to_string())
                        .unwrap_or_default()
                );
            }
            file.set_len(keep)
                .with_context(|| format!("cutting {} back to {keep} bytes", path.display()))?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
            (Box::new(std::io::BufWriter::new(file)), Some(keep))
        }
        None => (
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            None,
        ),
    };
    let mut sink = Sink::new(out, args.format, bytes_before);
    let done = run(
        &connector,
        &row.config,
        &args.stream,
        start,
        args.max_pages,
        &mut sink,
        args.state_file.as_deref(),
    )
    .await?;
    eprintln!(
        "exported {} records of {} from {} in {} pages",
        done.records, args.stream, row.name, done.pages
    );
    if let Some(state) = done.more {
        let how = match &args.state_file {
            Some(f) => format!(
                "run the same command again to go on from {} (or raise --max-pages)",
                f.display()
            ),
            None => format!(
                "add --state-file FILE to resume, or raise --max-pages; the next page's state is {}",
                state
                    .as_deref()
                    .map(SafeText::line)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".into())
            ),
        };
        bail!(
            "stopped at --max-pages {} with more of {} to read: {how}",
            args.max_pages,
            args.stream
        );
    }
    if done.rejected > 0 {
        bail!(
            "{} records of {} were malformed and are not in the export (listed above); the rest are",
            done.rejected,
            args.stream
        );
    }
    if let Some(f) = &args.state_file {
        // Finished: the next export starts over.
        std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_is_one_safe_json_leaves_as_it_is() {
        let lines = [
            "{\"name\":\"García, Gdańsk, Chloé, 漢字\"}\n",
            "tab\there",
            "a\u{7f}",
            "\u{9b}31m",
            "x\u{202e}y",
            "\u{2028}",
            "\u{1b}[2J",
            "€ 12",
        ];
        for line in lines {
            let untouched = safe_json(line.to_string()) == line;
            if plainly_safe(line) {
                assert!(untouched, "{line:?}");
            }
        }
        assert!(plainly_safe(lines[0]) && plainly_safe(lines[1]));
        assert!(!lines[2..7].iter().any(|l| plainly_safe(l)));
    }
}
