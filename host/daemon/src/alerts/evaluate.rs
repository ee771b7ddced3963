//! The alert decisions as pure functions: facts about pipelines and
//! connections in, the incidents to open and to resolve out; and when a
//! rule's quiet hours hold a notice. No I/O, so every rule is unit-tested
//! here; [`super::evaluator`] gathers the facts and applies the decisions.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};

use super::{Condition, QuietHours, Rule};

/// How a pipeline's latest finished run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastRun {
    /// No run has finished yet.
    None,
    /// It succeeded.
    Succeeded,
    /// It failed, with this error.
    Failed {
        /// The run.
        run: i64,
        /// Its error.
        error: String,
    },
}

/// Whether, and by whom, a pipeline is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    /// Running on its schedule.
    Running,
    /// A person paused it.
    ByPerson,
    /// The host paused it, saying why.
    ByHost(String),
}

/// What the evaluator knows of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineFacts {
    /// Its name.
    pub name: String,
    /// Its latest finished run.
    pub last_run: LastRun,
    /// Its pause.
    pub pause: Pause,
    /// Its open dead letters.
    pub open_dead_letters: u64,
}

/// What the evaluator knows of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// Its name.
    pub name: String,
    /// Why it needs re-authorization, if it does.
    pub needs_reauthorization: Option<String>,
}

/// Errors of one class in one pipeline on one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    /// Pipeline.
    pub pipeline: String,
    /// Class (`rejected`, `run failed`, …).
    pub class: String,
    /// The day.
    pub day: NaiveDate,
    /// How many.
    pub count: u64,
}

/// Everything a look at the host found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Every pipeline.
    pub pipelines: Vec<PipelineFacts>,
    /// Every connection.
    pub connections: Vec<ConnectionFacts>,
    /// Error counts per pipeline, class and day.
    pub errors: Vec<ErrorCount>,
    /// Today (UTC).
    pub today: Option<NaiveDate>,
}

/// A condition holding for a subject now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub rule: String,
    /// `pipeline:NAME`, `connection:NAME`, `pipeline:NAME/CLASS`.
    pub subject: String,
    /// What was seen, for people.
    pub summary: String,
}

/// An incident open in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIncident {
    /// Id.
    pub id: i64,
    /// Rule.
    pub rule: String,
    /// Subject.
    pub subject: String,
}

/// What to do after a look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Conditions newly holding: open an incident for each (the store
    /// keeps one open per rule and subject, so a host that decided the
    /// same a moment later opens nothing).
    pub open: Vec<Finding>,
    /// Open incidents still holding: marked seen, nobody notified again.
    pub still: Vec<Finding>,
    /// Open incidents whose condition no longer holds.
    pub resolve: Vec<i64>,
}

fn wanted(filter: &Option<String>, name: &str) -> bool {
    filter.as_deref().is_none_or(|f| f == name)
}

/// What holds for `rule` given `facts`.
pub fn findings(rule: &Rule, facts: &Facts) -> Vec<Finding> {
    let found = |subject: String, summary: String| Finding {
        rule: rule.name.clone(),
        subject,
        summary,
    };
    let mut out = Vec::new();
    match &rule.condition {
        Condition::RunFailed { pipeline } => {
            for p in facts.pipelines.iter().filter(|p| wanted(pipeline, &p.name)) {
                if let LastRun::Failed { run, error } = &p.last_run {
                    out.push(found(
                        format!("pipeline:{}", p.name),
                        format!("pipeline {} failed (run {run}): {error}", p.name),
                    ));
                }
            }
        }
        Condition::PipelinePaused { pipeline } => {
            for p in facts.pipelines.iter().filter(|p| wanted(pipeline, &p.name)) {
                if let Pause::ByHost(why) = &p.pause {
                    out.push(found(
                        format!("pipeline:{}", p.name),
                        format!("pipeline {} {why}", p.name),
                    ));
                }
            }
        }
        Condition::NeedsReauthorization { connection } => {
            for c in facts
                .connections
                .iter()
                .filter(|c| wanted(connection, &c.name))
            {
                if let Some(why) = &c.needs_reauthorization {
                    out.push(found(
                        format!("connection:{}", c.name),
                        format!("connection {} needs re-authorization: {why}", c.name),
                    ));
                }
            }
        }
        Condition::DeadLettersAbove {
            threshold,
            pipeline,
        } => {
            for p in facts.pipelines.iter().filter(|p| wanted(pipeline, &p.name)) {
                if p.open_dead_letters > *threshold {
                    out.push(found(
                        format!("pipeline:{}", p.name),
                        format!(
                            "pipeline {} has {} open dead letters (more than {threshold})",
                            p.name, p.open_dead_letters
                        ),
                    ));
                }
            }
        }
        Condition::ErrorSpike {
            factor,
            minimum,
            days,
            pipeline,
        } => {
            if let Some(today) = facts.today {
                for s in spikes(&facts.errors, today, *factor, *minimum, *days) {
                    if wanted(pipeline, &s.pipeline) {
                        out.push(found(
                            format!("pipeline:{}/{}", s.pipeline, s.class),
                            format!(
                                "pipeline {}: {} `{}` errors today against a daily mean of {:.1} over the {days} days before",
                                s.pipeline, s.today, s.class, s.mean
                            ),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A class of errors above its usual count.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    /// Pipeline.
    pub pipeline: String,
    /// Class.
    pub class: String,
    /// Today's count.
    pub today: u64,
    /// The daily mean over the days before (days without errors count 0).
    pub mean: f64,
}

/// Each (pipeline, class) whose count `today` is at least `minimum` and
/// above `factor` × its daily mean over the `days` days before today.
pub fn spikes(
    errors: &[ErrorCount],
    today: NaiveDate,
    factor: f64,
    minimum: u64,
    days: u32,
) -> Vec<Spike> {
    let first = today - Duration::days(i64::from(days));
    let mut per: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for e in errors {
        let entry = per.entry((&e.pipeline, &e.class)).or_default();
        if e.day == today {
            entry.0 += e.count;
        } else if e.day >= first && e.day < today {
            entry.1 += e.count;
        }
    }
    per.into_iter()
        .filter_map(|((pipeline, class), (now, before))| {
            let mean = before as f64 / f64::from(days.max(1));
            (now >= minimum && now as f64 > factor * mean).then(|| Spike {
                pipeline: pipeline.to_string(),
                class: class.to_string(),
                today: now,
                mean,
            })
        })
        .collect()
}

/// Decide, for every rule, what holds and which open incidents are over.
/// An open incident of a rule no longer listed is left alone (removing a
/// rule removes its incidents).
pub fn decide(rules: &[Rule], facts: &Facts, open: &[OpenIncident]) -> Decisions {
    let mut holding = Vec::new();
    for rule in rules {
        holding.extend(findings(rule, facts));
    }
    let now: BTreeSet<(&str, &str)> = holding
        .iter()
        .map(|f| (f.rule.as_str(), f.subject.as_str()))
        .collect();
    let known: BTreeSet<(&str, &str)> = open
        .iter()
        .map(|i| (i.rule.as_str(), i.subject.as_str()))
        .collect();
    let resolve = open
        .iter()
        .filter(|i| rules.iter().any(|r| r.name == i.rule))
        .filter(|i| !now.contains(&(i.rule.as_str(), i.subject.as_str())))
        .map(|i| i.id)
        .collect();
    let (still, open): (Vec<Finding>, Vec<Finding>) = holding
        .into_iter()
        .partition(|f| known.contains(&(f.rule.as_str(), f.subject.as_str())));
    Decisions {
        open,
        still,
        resolve,
    }
}

/// When the quiet window holding `now` ends, if `now` is in it.
pub fn quiet_until(quiet: &QuietHours, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = FixedOffset::east_opt(quiet.utc_offset_minutes.clamp(-1439, 1439) * 60)?;
    let local = now.with_timezone(&offset);
    let time = local.time();
    let (from, to) = (quiet.from, quiet.to);
    let inside = if from <= to {
        time >= from && time < to
    } else {
        time >= from || time < to
    };
    if !inside {
        return None;
    }
    let mut end_date = local.date_naive();
    if from > to && time >= from {
        end_date = end_date.succ_opt()?;
    }
    let end = end_date.and_time(to).and_local_timezone(offset).single()?;
    Some(end.with_timezone(&Utc))
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
