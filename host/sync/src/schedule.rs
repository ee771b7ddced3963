//! When a pipeline runs on its own: never (manual), every N seconds, or on
//! a cron expression (UTC), each shifted by a per-pipeline jitter so that
//! pipelines on one schedule do not all hit their APIs in the same second.
//! Part of the pipeline definition (`[schedule]`), checked when it is saved.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The shortest interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Consecutive failed runs after which the daemon pauses a pipeline, unless
/// the definition says otherwise.
pub const DEFAULT_PAUSE_AFTER: u32 = 5;

/// The `[schedule]` table of a pipeline definition, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Run this often, e.g. `"30s"`, `"5m"`, `"1h30m"`, `"1d"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Or on this cron expression, in UTC: five fields, or six with seconds
    /// first (`"0 */15 * * * *"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Up to this much later than the nominal time (fixed per pipeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// Pause the pipeline after this many failed runs in a row (0: never).
    #[serde(default = "default_pause_after")]
    pub pause_after_failures: u32,
    /// Also run right after each successful run of these pipelines, e.g.
    /// invoices after the customers they bill (`nexo serve` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

fn default_pause_after() -> u32 {
    DEFAULT_PAUSE_AFTER
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec {
            every: None,
            cron: None,
            jitter: None,
            pause_after_failures: DEFAULT_PAUSE_AFTER,
            after: Vec::new(),
        }
    }
}

/// A schedule that cannot be used: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `schedule.{field}`: {message}")]
pub struct ScheduleError {
    /// `every`, `cron` or `jitter`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// When runs are due.
#[derive(Debug, Clone)]
pub enum Timing {
    /// Only when asked (CLI, API, webhook).
    Manual,
    /// A fixed interval after the previous run started.
    Interval(Duration),
    /// The times a cron expression matches (UTC).
    Cron(Box<croner::Cron>),
}

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When.
    pub timing: Timing,
    /// The largest shift after the nominal time.
    pub jitter: Duration,
    /// As written, for display.
    text: String,
}

impl ScheduleSpec {
    /// Check and compile.
    pub fn compile(&self) -> Result<Schedule, ScheduleError> {
        let jitter = match &self.jitter {
            Some(j) => parse_duration(j).map_err(|message| ScheduleError {
                field: "jitter",
                message,
            })?,
            None => Duration::ZERO,
        };
        let (timing, text) = match (&self.every, &self.cron) {
            (Some(_), Some(_)) => {
                return Err(ScheduleError {
                    field: "every",
                    message: "give either `every` or `cron`, not both".into(),
                });
            }
            (None, None) => (Timing::Manual, "manual".to_string()),
            (Some(every), None) => {
                let d = parse_duration(every).map_err(|message| ScheduleError {
                    field: "every",
                    message,
                })?;
                if d < MIN_INTERVAL {
                    return Err(ScheduleError {
                        field: "every",
                        message: format!(
                            "`{every}` is shorter than the minimum of 30s; for faster reactions use the pipeline's webhook"
                        ),
                    });
                }
                (Timing::Interval(d), format!("every {every}"))
            }
            (None, Some(expr)) => {
                let cron = croner::parser::CronParser::new()
                    .parse(expr)
                    .map_err(|e| ScheduleError {
                        field: "cron",
                        message: format!(
                            "`{expr}` is not a cron expression ({e}); write five fields (minute hour day month weekday) or six with seconds first, e.g. \"0 */15 * * * *\""
                        ),
                    })?;
                (Timing::Cron(Box::new(cron)), format!("cron {expr} (UTC)"))
            }
        };
        if jitter > Duration::ZERO && matches!(timing, Timing::Manual) {
            return Err(ScheduleError {
                field: "jitter",
                message: "only applies to `every` or `cron` schedules".into(),
            });
        }
        if let Some(bad) = self.after.iter().find(|a| a.trim().is_empty()) {
            return Err(ScheduleError {
                field: "after",
                message: format!("`{bad}` is not a pipeline name"),
            });
        }
        let text = match (self.after.is_empty(), &timing) {
            (true, _) => text,
            (false, Timing::Manual) => format!("after {}", self.after.join(", ")),
            (false, _) => format!("{text}, and after {}", self.after.join(", ")),
        };
        Ok(Schedule {
            timing,
            jitter,
            text,
        })
    }
}

impl Schedule {
    /// The next time a run is due for pipeline `name`, given when its last
    /// run started (`None`: never ran) and the current time. `None` for a
    /// manual schedule.
    pub fn next_run(
        &self,
        name: &str,
        last_start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let nominal = match &self.timing {
            Timing::Manual => return None,
            Timing::Interval(every) => match last_start {
                // The first run carries the jitter; later ones keep that
                // offset by counting from it. A run that is overdue (the
                // host was down) is due at once.
                Some(last) => return Some(last + chrono::Duration::from_std(*every).ok()?),
                None => now,
            },
            Timing::Cron(cron) => {
                let from = last_start.map_or(now, |l| l.max(now - chrono::Duration::seconds(1)));
                cron.find_next_occurrence(&from, false).ok()?
            }
        };
        Some(nominal + self.jitter_for(name))
    }

    /// A fixed shift in `[0, jitter)` derived from the pipeline's name, so
    /// pipelines on one schedule spread out, each at a stable offset.
    fn jitter_for(&self, name: &str) -> chrono::Duration {
        let ms = self.jitter.as_millis() as u64;
        if ms == 0 {
            return chrono::Duration::zero();
        }
        let h = Sha256::digest(name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        chrono::Duration::milliseconds((u64::from_le_bytes(first) % ms) as i64)
    }

    /// Whether runs happen on their own.
    pub fn is_manual(&self) -> bool {
        matches!(self.timing, Timing::Manual)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `"90s"`, `"5m"`, `"1h30m"`, `"2d"` → a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "`{text}` is not a duration; write a number and a unit (s, m, h, d), e.g. \"30s\", \"5m\", \"1h30m\""
        )
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(every: Option<&str>, cron: Option<&str>, jitter: Option<&str>) -> ScheduleSpec {
        ScheduleSpec {
            every: every.map(str::to_string),
            cron: cron.map(str::to_string),
            jitter: jitter.map(str::to_string),
            ..ScheduleSpec::default()
        }
    }

    #[test]
    fn durations_parse_with_units_and_reject_the_rest() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "5", "m", "5x", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_expressions_with_five_or_six_fields_give_the_next_match() {
        let s = spec(None, Some("*/15 * * * *"), None).compile().unwrap();
        let now = at("2026-11-28T10:07:12Z");
        assert_eq!(s.next_run("p", None, now), Some(at("2026-11-28T10:15:00Z")));
        let s = spec(None, Some("30 0 9 * * MON-FRI"), None)
            .compile()
            .unwrap();
        // Saturday → Monday 09:00:30.
        assert_eq!(s.next_run("p", None, now), Some(at("2026-11-30T09:00:30Z")));
        // A run already made at this match does not repeat it.
        let s = spec(None, Some("0 * * * *"), None).compile().unwrap();
        let last = at("2026-11-28T10:00:00Z");
        assert_eq!(
            s.next_run("p", Some(last), at("2026-11-28T10:00:00.5Z")),
            Some(at("2026-11-28T11:00:00Z"))
        );
    }

    #[test]
    fn bad_cron_and_bad_combinations_name_the_field() {
        let e = spec(None, Some("61 * * * *"), None).compile().unwrap_err();
        assert_eq!(e.field, "cron");
        assert!(e.message.contains("61 * * * *"), "{e}");
        let e = spec(Some("5m"), Some("* * * * *"), None)
            .compile()
            .unwrap_err();
        assert_eq!(e.field, "every");
        let e = spec(Some("10s"), None, None).compile().unwrap_err();
        assert!(e.message.contains("minimum of 30s"), "{e}");
        let e = spec(None, None, Some("5s")).compile().unwrap_err();
        assert_eq!(e.field, "jitter");
    }

    #[test]
    fn an_interval_counts_from_the_last_start_and_an_overdue_run_is_due_now() {
        let s = spec(Some("5m"), None, None).compile().unwrap();
        let now = at("2026-11-28T10:00:00Z");
        assert_eq!(s.next_run("p", None, now), Some(now));
        let jittered = spec(Some("5m"), None, Some("1m")).compile().unwrap();
        let last = at("2026-11-28T09:58:17Z");
        assert_eq!(
            jittered.next_run("p", Some(last), now),
            Some(at("2026-11-28T10:03:17Z")),
            "no drift: the offset of the first run is kept"
        );
        assert_eq!(
            s.next_run("p", Some(at("2026-11-28T09:58:00Z")), now),
            Some(at("2026-11-28T10:03:00Z"))
        );
        assert!(
            spec(None, None, None)
                .compile()
                .unwrap()
                .next_run("p", None, now)
                .is_none()
        );
    }

    #[test]
    fn jitter_is_stable_per_pipeline_bounded_and_spreads_pipelines() {
        let s = spec(Some("1h"), None, Some("10m")).compile().unwrap();
        let now = at("2026-11-28T10:00:00Z");
        let offsets: Vec<i64> = (0..20)
            .map(|i| {
                let name = format!("pipeline-{i}");
                let a = s.next_run(&name, None, now).unwrap();
                assert_eq!(a, s.next_run(&name, None, now).unwrap(), "stable");
                (a - now).num_milliseconds()
            })
            .collect();
        assert!(
            offsets.iter().all(|&o| (0..600_000).contains(&o)),
            "{offsets:?}"
        );
        let distinct: std::collections::BTreeSet<_> = offsets.iter().collect();
        assert!(distinct.len() > 10, "spread out: {offsets:?}");
    }
}
