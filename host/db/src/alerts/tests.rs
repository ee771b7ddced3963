//! Store tests of alerts, on both backends.
#![allow(clippy::unwrap_used)]
use super::*;

use crate::test_sql::text;

on_both!(
    channels_and_rules_are_added_once_listed_and_removed,
    an_incident_is_opened_once_per_subject_and_its_notices_queued_once,
    a_claimed_delivery_is_not_handed_out_again_until_it_is_finished,
    hosts_seeing_one_failure_at_once_open_one_incident_and_claim_each_notice_once,
);

fn rule(name: &str, channels: &[&str]) -> RuleRow {
    RuleRow {
        name: name.into(),
        condition: r#"{"kind":"run-failed"}"#.into(),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        quiet_hours: None,
    }
}

fn channels_and_rules_are_added_once_listed_and_removed(db: Database) {
    assert!(
        db.add_alert_channel(
            "ops",
            ChannelKind::Webhook,
            r#"{"url":"http://x"}"#,
            Some((&[1; 12], &[2, 3]))
        )
        .unwrap()
    );
    assert!(
        !db.add_alert_channel("ops", ChannelKind::Email, "{}", None)
            .unwrap(),
        "name taken"
    );
    assert!(
        db.add_alert_channel("mail", ChannelKind::Email, "{}", None)
            .unwrap()
    );
    let list = db.alert_channels().unwrap();
    assert_eq!(
        list.iter()
            .map(|c| (c.name.as_str(), c.kind, c.has_secret))
            .collect::<Vec<_>>(),
        vec![
            ("mail", ChannelKind::Email, false),
            ("ops", ChannelKind::Webhook, true)
        ]
    );
    assert_eq!(
        db.alert_channel_secret("ops").unwrap(),
        Some(Sealed {
            nonce: vec![1; 12],
            sealed: vec![2, 3]
        })
    );
    assert_eq!(db.alert_channel_secret("mail").unwrap(), None);
    assert!(
        db.add_alert_rule(&rule("failed", &["ops", "mail"]))
            .unwrap()
    );
    assert!(!db.add_alert_rule(&rule("failed", &[])).unwrap());
    assert_eq!(
        db.alert_rules().unwrap(),
        vec![rule("failed", &["ops", "mail"])]
    );
    assert!(db.remove_alert_channel("mail").unwrap());
    assert!(!db.remove_alert_channel("mail").unwrap());
    assert!(db.remove_alert_rule("failed").unwrap());
    assert!(db.alert_rules().unwrap().is_empty());
}

fn an_incident_is_opened_once_per_subject_and_its_notices_queued_once(db: Database) {
    db.add_alert_rule(&rule("failed", &["ops", "mail"]))
        .unwrap();
    let chans = vec!["ops".to_string(), "mail".to_string()];
    let first = db
        .open_alert_incident(
            "failed",
            "pipeline:p",
            "run 1 failed",
            &chans,
            "2026-12-05T10:00:00.000Z",
        )
        .unwrap();
    let id = first.unwrap();
    // Seen again by later runs (or another host): no second incident.
    for at in ["2026-12-05T10:01:00.000Z", "2026-12-05T10:02:00.000Z"] {
        assert_eq!(
            db.open_alert_incident("failed", "pipeline:p", "again", &chans, at)
                .unwrap(),
            None
        );
    }
    // Another subject is another incident.
    let other = db
        .open_alert_incident(
            "failed",
            "pipeline:q",
            "q failed",
            &chans,
            "2026-12-05T10:02:00.000Z",
        )
        .unwrap()
        .unwrap();
    let open = db.alert_incidents(true, 10).unwrap();
    assert_eq!(open.len(), 2);
    let p = open.iter().find(|i| i.id == id).unwrap();
    assert_eq!(p.last_seen_at, "2026-12-05T10:02:00.000Z");
    assert_eq!(p.summary, "run 1 failed");
    assert_eq!(p.deliveries.len(), 2);
    assert!(
        p.deliveries
            .iter()
            .all(|d| d.notice == Notice::Opened && d.status == DeliveryStatus::Pending)
    );
    assert!(
        db.resolve_alert_incident(id, "2026-12-05T11:00:00.000Z")
            .unwrap()
    );
    assert!(
        !db.resolve_alert_incident(id, "2026-12-05T11:00:01.000Z")
            .unwrap(),
        "resolved twice"
    );
    let all = db.alert_incidents(false, 10).unwrap();
    let p = all.iter().find(|i| i.id == id).unwrap();
    assert_eq!(p.resolved_at.as_deref(), Some("2026-12-05T11:00:00.000Z"));
    assert_eq!(
        p.deliveries
            .iter()
            .filter(|d| d.notice == Notice::Resolved)
            .count(),
        2
    );
    assert_eq!(
        db.alert_incidents(true, 10)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![other]
    );
    // A new failure after the recovery is a new incident.
    let again = db
        .open_alert_incident(
            "failed",
            "pipeline:p",
            "failed again",
            &chans,
            "2026-12-05T12:00:00.000Z",
        )
        .unwrap();
    assert!(again.is_some_and(|n| n != id));
    assert_eq!(
        text(&db, "SELECT CAST(COUNT(*) AS TEXT) FROM alert_incidents").as_deref(),
        Some("3")
    );
}

fn a_claimed_delivery_is_not_handed_out_again_until_it_is_finished(db: Database) {
    db.add_alert_rule(&rule("failed", &["ops"])).unwrap();
    let id = db
        .open_alert_incident(
            "failed",
            "pipeline:p",
            "s",
            &["ops".to_string()],
            "2026-12-05T10:00:00.000Z",
        )
        .unwrap()
        .unwrap();
    let due = db.claim_alert_deliveries(1_000, 60_000, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].incident.id, due[0].notice, due[0].channel.as_str()),
        (id, Notice::Opened, "ops")
    );
    assert!(
        db.claim_alert_deliveries(2_000, 60_000, 10)
            .unwrap()
            .is_empty(),
        "claimed twice"
    );
    // A failed attempt waits for its retry time.
    db.finish_alert_delivery(
        id,
        "ops",
        Notice::Opened,
        &Attempt::Retry {
            error: "connection refused".into(),
            next_ms: 5_000,
        },
    )
    .unwrap();
    assert!(
        db.claim_alert_deliveries(4_000, 60_000, 10)
            .unwrap()
            .is_empty()
    );
    let due = db.claim_alert_deliveries(5_000, 60_000, 10).unwrap();
    assert_eq!(due[0].attempts, 1);
    // A claim that runs out (its host died) is handed out again.
    assert_eq!(
        db.claim_alert_deliveries(70_000, 60_000, 10).unwrap().len(),
        1
    );
    db.finish_alert_delivery(
        id,
        "ops",
        Notice::Opened,
        &Attempt::Sent("2026-12-05T10:00:05.000Z".into()),
    )
    .unwrap();
    assert!(
        db.claim_alert_deliveries(200_000, 60_000, 10)
            .unwrap()
            .is_empty(),
        "sent twice"
    );
    let d = &db.alert_incidents(false, 1).unwrap()[0].deliveries[0];
    assert_eq!(
        (d.status, d.attempts, d.error.as_deref()),
        (DeliveryStatus::Sent, 2, None)
    );
    // Held ones wait; failed ones stay failed and say why.
    db.resolve_alert_incident(id, "2026-12-05T11:00:00.000Z")
        .unwrap();
    db.claim_alert_deliveries(300_000, 60_000, 10).unwrap();
    db.finish_alert_delivery(
        id,
        "ops",
        Notice::Resolved,
        &Attempt::Held { until_ms: 900_000 },
    )
    .unwrap();
    assert!(
        db.claim_alert_deliveries(800_000, 60_000, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.claim_alert_deliveries(900_000, 60_000, 10)
            .unwrap()
            .len(),
        1
    );
    db.finish_alert_delivery(
        id,
        "ops",
        Notice::Resolved,
        &Attempt::Failed("535 authentication failed".into()),
    )
    .unwrap();
    assert!(
        db.claim_alert_deliveries(2_000_000, 60_000, 10)
            .unwrap()
            .is_empty()
    );
    let incident = &db.alert_incidents(false, 1).unwrap()[0];
    let r = incident
        .deliveries
        .iter()
        .find(|d| d.notice == Notice::Resolved)
        .unwrap();
    assert_eq!(
        (r.status, r.error.as_deref()),
        (DeliveryStatus::Failed, Some("535 authentication failed"))
    );
}

/// Eight hosts (threads, each with the same database) see the same
/// failure at once: one incident is opened, one notice per channel
/// queued, and each notice is claimed by one of them.
fn hosts_seeing_one_failure_at_once_open_one_incident_and_claim_each_notice_once(db: Database) {
    db.add_alert_rule(&rule("failed", &["ops", "mail"]))
        .unwrap();
    let chans = vec!["ops".to_string(), "mail".to_string()];
    // Each host has its connection before they start together.
    let _ = db.alert_rules().unwrap();
    let start = std::sync::Barrier::new(8);
    let (opened, claimed) = std::thread::scope(|s| {
        let hosts: Vec<_> = (0..8)
            .map(|_| {
                let db = db.clone();
                let chans = chans.clone();
                let start = &start;
                s.spawn(move || {
                    let _ = db.alert_channels().unwrap();
                    start.wait();
                    let opened = db
                        .open_alert_incident(
                            "failed",
                            "pipeline:p",
                            "s",
                            &chans,
                            "2026-12-05T10:00:00.000Z",
                        )
                        .unwrap();
                    let claimed = db.claim_alert_deliveries(1_000, 60_000, 10).unwrap();
                    (opened, claimed.len())
                })
            })
            .collect();
        let results: Vec<_> = hosts.into_iter().map(|h| h.join().unwrap()).collect();
        (
            results.iter().filter(|(o, _)| o.is_some()).count(),
            results.iter().map(|(_, c)| c).sum::<usize>(),
        )
    });
    assert_eq!(opened, 1, "incidents opened");
    assert_eq!(claimed, 2, "notices claimed (one per channel)");
    assert_eq!(db.alert_incidents(false, 10).unwrap().len(), 1);
}
