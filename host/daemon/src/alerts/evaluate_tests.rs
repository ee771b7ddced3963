//! Unit tests of the alert decisions: dedup, resolve, quiet hours, spikes.
#![allow(clippy::unwrap_used)]

use super::*;

fn rule(name: &str, condition: Condition) -> Rule {
    Rule {
        name: name.into(),
        condition,
        channels: vec!["ops".into()],
        quiet_hours: None,
    }
}

fn pipeline(name: &str, last_run: LastRun, pause: Pause, dead: u64) -> PipelineFacts {
    PipelineFacts {
        name: name.into(),
        last_run,
        pause,
        open_dead_letters: dead,
    }
}

fn failed(run: i64) -> LastRun {
    LastRun::Failed {
        run,
        error: "TinyCRM answered 503".into(),
    }
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn open(id: i64, rule: &str, subject: &str) -> OpenIncident {
    OpenIncident {
        id,
        rule: rule.into(),
        subject: subject.into(),
    }
}

#[test]
fn a_failing_pipeline_opens_one_incident_then_is_only_seen_then_resolves() {
    let rules = [rule("failed", Condition::RunFailed { pipeline: None })];
    let mut facts = Facts {
        pipelines: vec![
            pipeline("orders", failed(1), Pause::Running, 0),
            pipeline("fine", LastRun::Succeeded, Pause::Running, 0),
        ],
        ..Facts::default()
    };
    // First failure: one incident to open.
    let d = decide(&rules, &facts, &[]);
    assert_eq!(d.open.len(), 1);
    assert_eq!(d.open[0].subject, "pipeline:orders");
    assert!(d.open[0].summary.contains("run 1"), "{:?}", d.open);
    // Runs 2 and 3 fail too: the open incident is only seen again.
    let incidents = [open(7, "failed", "pipeline:orders")];
    for run in [2, 3] {
        facts.pipelines[0].last_run = failed(run);
        let d = decide(&rules, &facts, &incidents);
        assert!(d.open.is_empty(), "opened again on run {run}: {d:?}");
        assert_eq!(d.still.len(), 1);
        assert!(d.resolve.is_empty());
    }
    // A run still in progress changes nothing; a success resolves.
    facts.pipelines[0].last_run = LastRun::Succeeded;
    let d = decide(&rules, &facts, &incidents);
    assert_eq!(d.resolve, vec![7]);
    assert!(d.open.is_empty() && d.still.is_empty());
}

#[test]
fn a_rule_for_one_pipeline_ignores_the_others_and_leaves_other_rules_incidents_alone() {
    let rules = [rule(
        "orders-failed",
        Condition::RunFailed {
            pipeline: Some("orders".into()),
        },
    )];
    let facts = Facts {
        pipelines: vec![pipeline("invoices", failed(4), Pause::Running, 0)],
        ..Facts::default()
    };
    let d = decide(&rules, &facts, &[open(3, "gone-rule", "pipeline:x")]);
    assert!(d.open.is_empty(), "{d:?}");
    assert!(d.resolve.is_empty(), "resolved another rule's incident");
}

#[test]
fn only_a_pause_by_the_host_is_an_incident_and_resume_resolves_it() {
    let rules = [rule("paused", Condition::PipelinePaused { pipeline: None })];
    let facts = Facts {
        pipelines: vec![
            pipeline("a", LastRun::None, Pause::ByPerson, 0),
            pipeline(
                "b",
                failed(9),
                Pause::ByHost("paused by the host after 3 failed runs in a row".into()),
                0,
            ),
        ],
        ..Facts::default()
    };
    let d = decide(&rules, &facts, &[]);
    assert_eq!(
        d.open
            .iter()
            .map(|f| f.subject.as_str())
            .collect::<Vec<_>>(),
        vec!["pipeline:b"]
    );
    let resumed = Facts {
        pipelines: vec![pipeline("b", failed(9), Pause::Running, 0)],
        ..Facts::default()
    };
    assert_eq!(
        decide(&rules, &resumed, &[open(1, "paused", "pipeline:b")]).resolve,
        vec![1]
    );
}

#[test]
fn reauthorization_and_dead_letters_above_n() {
    let rules = [
        rule(
            "reauth",
            Condition::NeedsReauthorization { connection: None },
        ),
        rule(
            "dlq",
            Condition::DeadLettersAbove {
                threshold: 10,
                pipeline: None,
            },
        ),
    ];
    let facts = Facts {
        pipelines: vec![
            pipeline("at-limit", LastRun::Succeeded, Pause::Running, 10),
            pipeline("over", LastRun::Succeeded, Pause::Running, 11),
        ],
        connections: vec![
            ConnectionFacts {
                name: "books".into(),
                needs_reauthorization: Some("invalid_grant".into()),
            },
            ConnectionFacts {
                name: "crm".into(),
                needs_reauthorization: None,
            },
        ],
        ..Facts::default()
    };
    let d = decide(&rules, &facts, &[]);
    let subjects: Vec<_> = d
        .open
        .iter()
        .map(|f| (f.rule.as_str(), f.subject.as_str()))
        .collect();
    assert_eq!(
        subjects,
        vec![("reauth", "connection:books"), ("dlq", "pipeline:over")]
    );
}

#[test]
fn a_spike_is_against_the_class_own_history_and_needs_a_minimum() {
    let today = day("2026-12-05");
    let mut errors = Vec::new();
    // `rejected`: 2 a day for the week before; 7 today (mean 2, 3× = 6).
    for d in 1..=7 {
        errors.push(ErrorCount {
            pipeline: "p".into(),
            class: "rejected".into(),
            day: today - Duration::days(d),
            count: 2,
        });
    }
    errors.push(ErrorCount {
        pipeline: "p".into(),
        class: "rejected".into(),
        day: today,
        count: 7,
    });
    // `timeout`: never before, 3 today: above the mean, below the minimum.
    errors.push(ErrorCount {
        pipeline: "p".into(),
        class: "timeout".into(),
        day: today,
        count: 3,
    });
    // Old history outside the window does not count.
    errors.push(ErrorCount {
        pipeline: "p".into(),
        class: "rejected".into(),
        day: today - Duration::days(30),
        count: 1000,
    });
    let s = spikes(&errors, today, 3.0, 5, 7);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!((s[0].class.as_str(), s[0].today), ("rejected", 7));
    assert!((s[0].mean - 2.0).abs() < 1e-9);
    // 6 today is not above 3 × 2.
    errors[7].count = 6;
    assert!(spikes(&errors, today, 3.0, 5, 7).is_empty());
    // Through a rule: the subject names the class.
    errors[7].count = 7;
    let rules = [rule(
        "spike",
        Condition::ErrorSpike {
            factor: 3.0,
            minimum: 5,
            days: 7,
            pipeline: None,
        },
    )];
    let facts = Facts {
        errors,
        today: Some(today),
        ..Facts::default()
    };
    let d = decide(&rules, &facts, &[]);
    assert_eq!(d.open[0].subject, "pipeline:p/rejected");
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn quiet(from: &str, to: &str, offset: i32) -> QuietHours {
    QuietHours {
        from: chrono::NaiveTime::parse_from_str(from, "%H:%M").unwrap(),
        to: chrono::NaiveTime::parse_from_str(to, "%H:%M").unwrap(),
        utc_offset_minutes: offset,
    }
}

#[test]
fn quiet_hours_across_midnight_hold_until_their_end_in_local_time() {
    // 22:00–07:00 at UTC+1.
    let q = quiet("22:00", "07:00", 60);
    // 20:59 UTC = 21:59 local: not quiet.
    assert_eq!(quiet_until(&q, at("2026-12-05T20:59:00Z")), None);
    // 21:00 UTC = 22:00 local: quiet until 07:00 local tomorrow = 06:00 UTC.
    assert_eq!(
        quiet_until(&q, at("2026-12-05T21:00:00Z")),
        Some(at("2026-12-06T06:00:00Z"))
    );
    // 03:00 UTC = 04:00 local, after midnight: same end, today.
    assert_eq!(
        quiet_until(&q, at("2026-12-06T03:00:00Z")),
        Some(at("2026-12-06T06:00:00Z"))
    );
    // 06:00 UTC = 07:00 local: the window has ended.
    assert_eq!(quiet_until(&q, at("2026-12-06T06:00:00Z")), None);
}

#[test]
fn quiet_hours_within_a_day() {
    let q = quiet("12:00", "13:30", -300);
    // 17:15 UTC = 12:15 at UTC−5.
    assert_eq!(
        quiet_until(&q, at("2026-12-05T17:15:00Z")),
        Some(at("2026-12-05T18:30:00Z"))
    );
    assert_eq!(quiet_until(&q, at("2026-12-05T16:59:00Z")), None);
    assert_eq!(quiet_until(&q, at("2026-12-05T18:30:00Z")), None);
}
