//! What a suite found: one verdict per named check, as text for a person,
//! JSON for a program, or JUnit XML for a CI server.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// Log lines the text report shows after a failure.
const LOG_TAIL: usize = 20;

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    /// It holds; the detail says what was seen.
    Pass,
    /// It does not hold; the reason says what went wrong and what to fix.
    Fail(String),
    /// It could not be run here (a stream that cannot be written, no
    /// sample records); the reason says why and how to run it.
    Skip(String),
}

/// One named check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its name, `area.subject.what` (`read.contacts.resume`).
    pub name: String,
    /// Pass, fail or skip.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What the check saw (counts, ids), whatever the verdict.
    pub detail: String,
    /// How long it took, in milliseconds.
    pub ms: u64,
}

impl Check {
    /// Whether it failed.
    pub fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Fail(_))
    }
}

/// The outcome of a whole suite.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The plugin tested (`id@version`).
    pub plugin: String,
    /// `live` (a running system), `record` or `replay`.
    pub mode: String,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// The plugin's log lines and the host's warnings during the suite
    /// (secret values scrubbed), in order.
    pub log: Vec<String>,
}

/// The output formats of [`Report::render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per check, then a summary.
    Text,
    /// The report as one JSON document.
    Json,
    /// A JUnit XML `testsuite`, one `testcase` per check.
    Junit,
}

impl Report {
    /// Adds a check's verdict.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        verdict: Verdict,
        detail: impl Into<String>,
        took: Duration,
    ) {
        self.checks.push(Check {
            name: name.into(),
            verdict,
            detail: detail.into(),
            ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// The check named `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.failed())
    }

    /// Whether every check passed or was skipped.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for check in &self.checks {
            match check.verdict {
                Verdict::Pass => c.0 += 1,
                Verdict::Fail(_) => c.1 += 1,
                Verdict::Skip(_) => c.2 += 1,
            }
        }
        c
    }

    /// The report in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Json => {
                let (passed, failed, skipped) = self.counts();
                let doc = serde_json::json!({
                    "plugin": self.plugin,
                    "mode": self.mode,
                    "passed": passed,
                    "failed": failed,
                    "skipped": skipped,
                    "checks": self.checks,
                    "log": self.log,
                });
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            }
            Format::Junit => self.junit(),
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "nexo plugin test: {} ({})", self.plugin, self.mode);
        for c in &self.checks {
            let (word, reason) = match &c.verdict {
                Verdict::Pass => ("ok  ", None),
                Verdict::Fail(r) => ("FAIL", Some(r)),
                Verdict::Skip(r) => ("skip", Some(r)),
            };
            let _ = write!(out, "{word}  {}", c.name);
            if !c.detail.is_empty() {
                let _ = write!(out, " — {}", c.detail);
            }
            let _ = writeln!(out);
            if let Some(r) = reason {
                let _ = writeln!(out, "      {r}");
            }
        }
        let (passed, failed, skipped) = self.counts();
        // What the plugin said helps most when something failed.
        if failed > 0 && !self.log.is_empty() {
            let shown = self.log.len().min(LOG_TAIL);
            let _ = writeln!(out, "log (last {shown} of {} lines):", self.log.len());
            for line in &self.log[self.log.len() - shown..] {
                let _ = writeln!(out, "      {line}");
            }
        }
        let _ = writeln!(
            out,
            "{passed} passed, {failed} failed, {skipped} skipped{}",
            if failed == 0 {
                ""
            } else {
                " — see FAIL lines above; docs/VENDORS.md explains each check"
            }
        );
        out
    }

    fn junit(&self) -> String {
        let (_, failed, skipped) = self.counts();
        let total_ms: u64 = self.checks.iter().map(|c| c.ms).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuite name=\"nexo plugin test {}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\">",
            xml(&self.plugin),
            self.checks.len(),
            total_ms as f64 / 1000.0
        );
        for c in &self.checks {
            let (class, name) = c.name.split_once('.').unwrap_or(("kit", &c.name));
            let _ = write!(
                out,
                "  <testcase classname=\"nexo.kit.{}\" name=\"{}\" time=\"{:.3}\"",
                xml(class),
                xml(name),
                c.ms as f64 / 1000.0
            );
            match &c.verdict {
                Verdict::Pass => {
                    let _ = writeln!(
                        out,
                        "><system-out>{}</system-out></testcase>",
                        xml(&c.detail)
                    );
                }
                Verdict::Fail(r) => {
                    let _ = writeln!(
                        out,
                        "><failure message=\"{}\">{}</failure></testcase>",
                        xml(r),
                        xml(&c.detail)
                    );
                }
                Verdict::Skip(r) => {
                    let _ = writeln!(out, "><skipped message=\"{}\"/></testcase>", xml(r));
                }
            }
        }
        out.push_str("</testsuite>\n");
        out
    }
}

/// `text` escaped for XML text and attributes, without the control
/// characters XML 1.0 cannot carry.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(ch),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report {
            plugin: "acme/crm@0.1.0".into(),
            mode: "live".into(),
            checks: Vec::new(),
            log: Vec::new(),
        };
        r.push(
            "spec.streams",
            Verdict::Pass,
            "1 stream",
            Duration::from_millis(3),
        );
        r.push(
            "read.contacts.resume",
            Verdict::Fail("lost <2> records & more".into()),
            "",
            Duration::ZERO,
        );
        r.push(
            "write.contacts.delete",
            Verdict::Skip("deletes = false".into()),
            "",
            Duration::ZERO,
        );
        r
    }

    #[test]
    fn junit_counts_and_escapes() {
        let x = sample().render(Format::Junit);
        assert!(
            x.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("classname=\"nexo.kit.read\" name=\"contacts.resume\""),
            "{x}"
        );
        assert!(
            x.contains("message=\"lost &lt;2&gt; records &amp; more\""),
            "{x}"
        );
        assert!(!x.contains("<2>"), "{x}");
    }

    #[test]
    fn json_and_text_name_every_check() {
        let r = sample();
        assert!(!r.passed());
        let j: serde_json::Value = serde_json::from_str(&r.render(Format::Json)).unwrap();
        assert_eq!(j["failed"], 1);
        assert_eq!(j["checks"][1]["verdict"], "fail");
        assert_eq!(j["checks"][1]["reason"], "lost <2> records & more");
        let t = r.render(Format::Text);
        assert!(t.contains("FAIL  read.contacts.resume"), "{t}");
        assert!(!t.contains("log ("), "no log, no log section: {t}");
        let mut r = r;
        r.log = (0..30)
            .map(|i| format!("INFO read(contacts): line {i}"))
            .collect();
        let t = r.render(Format::Text);
        assert!(t.contains("log (last 20 of 30 lines):"), "{t}");
        assert!(t.contains("line 29") && !t.contains("line 9\n"), "{t}");
        assert!(t.contains("1 passed, 1 failed, 1 skipped"), "{t}");
    }
}
