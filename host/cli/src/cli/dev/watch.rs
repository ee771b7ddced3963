//! What `nexo plugin dev` watches and runs between rounds: the build
//! command, and the modification times and sizes it polls (no file watcher
//! dependency). A file counts as changed once two polls agree, so a
//! component still being written is not loaded half-way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

/// Lines of a failed build's output shown (its last ones: where compilers
/// put the summary).
const BUILD_LINES: usize = 60;

/// A build's duration and, when it failed, the last lines of its output.
pub(super) struct Built {
    pub(super) took: Duration,
    pub(super) result: Result<(), Vec<String>>,
}

pub(super) async fn build(command: &str) -> Built {
    let started = Instant::now();
    let command = command.to_string();
    let ran = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .output()
    })
    .await;
    let took = started.elapsed();
    let result = match ran {
        Err(e) => Err(vec![format!("the build did not run: {e}")]),
        Ok(Err(e)) => Err(vec![format!("cannot start `sh`: {e}")]),
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() > BUILD_LINES {
                let cut = lines.len() - BUILD_LINES;
                lines.drain(..cut);
                lines.insert(0, format!("… {cut} line(s) before"));
            }
            lines.push(format!("build failed: {}", output.status));
            Err(lines)
        }
    };
    Built { took, result }
}

/// Modification time and size of each file watched.
pub(super) type Stamps = BTreeMap<PathBuf, (SystemTime, u64)>;

/// The stamps of `files` (those that exist).
pub(super) fn stamp(files: &[PathBuf]) -> Stamps {
    let mut s = Stamps::new();
    for file in files {
        if let Ok(m) = std::fs::metadata(file) {
            s.insert(
                file.clone(),
                (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()),
            );
        }
    }
    s
}

/// Every file under `dirs`, except build output (`target`, hidden folders)
/// and the component itself, which a build writes.
pub(super) fn scan(dirs: &[PathBuf], component: &Path) -> Stamps {
    let mut stamps = Stamps::new();
    let mut todo: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if !hidden && entry.file_name() != "target" {
                    todo.push(path);
                }
            } else if path != component {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                stamps.insert(path, (modified, meta.len()));
            }
        }
    }
    stamps
}

/// The stamps last acted on, and a change waiting for a second poll that
/// agrees (a file being written changes between polls).
pub(super) struct Changes {
    seen: Stamps,
    pending: Option<Stamps>,
}

impl Changes {
    pub(super) fn new(now: Stamps) -> Self {
        Changes {
            seen: now,
            pending: None,
        }
    }

    pub(super) fn reset(&mut self, now: Stamps) {
        self.seen = now;
        self.pending = None;
    }

    /// Whether `now` is a change that has settled (the same two polls in a
    /// row); it is then the new baseline.
    pub(super) fn settled(&mut self, now: Stamps) -> bool {
        if now == self.seen {
            self.pending = None;
            return false;
        }
        if self.pending.as_ref() == Some(&now) {
            self.reset(now);
            return true;
        }
        self.pending = Some(now);
        false
    }
}
