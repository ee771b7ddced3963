//! `spec.*` and `check.*`: what the connector declares, and its
//! credentials check with good and wrong secrets.

use std::collections::{BTreeMap, BTreeSet};

use nexo_runtime::plugin::StreamInfo;
use nexo_runtime::sandbox::secrets::SecretValue;
use nexo_runtime::{ConnectorPlugin, GuestError, PluginError};
use serde_json::Value;

use super::{Seen, Timer, fail_if, push};
use crate::report::{Report, Verdict};
use crate::suite::Suite;
use crate::{Env, KitError};

pub(super) async fn spec(
    c: &ConnectorPlugin,
    config: &str,
    suite: &Suite,
    report: &mut Report,
    seen: &mut Seen,
) -> Vec<StreamInfo> {
    let t = Timer::start();
    let verdict = match schema_problem(&c.spec().config_schema) {
        Some(p) => Verdict::Fail(format!("the config schema is not valid JSON Schema: {p}")),
        None => match config_problem(&c.spec().config_schema, config) {
            Some(p) => Verdict::Fail(format!(
                "the config given does not match the config schema: {p}"
            )),
            None => Verdict::Pass,
        },
    };
    push(report, "spec.config-schema".into(), t, verdict, "");

    let t = Timer::start();
    let streams = match c.discover(config).await.into_result() {
        Ok(s) => s,
        Err(e) => {
            seen.error("discover", &e);
            push(
                report,
                "spec.streams".into(),
                t,
                Verdict::Fail(format!("discover failed: {e}")),
                "",
            );
            return Vec::new();
        }
    };
    let declared: BTreeSet<&str> = c.spec().streams.iter().map(String::as_str).collect();
    let found: BTreeSet<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    let mut problems = Vec::new();
    for d in declared.difference(&found) {
        problems.push(format!(
            "the spec declares stream `{d}` but discover does not return it"
        ));
    }
    for f in found.difference(&declared) {
        problems.push(format!(
            "discover returns stream `{f}` the spec does not declare"
        ));
    }
    for s in suite.streams.keys() {
        if !found.contains(s.as_str()) {
            problems.push(format!(
                "the suite file names stream `{s}`, which the connector does not offer (a typo in nexo-test.toml?)"
            ));
        }
    }
    let detail = format!(
        "{} stream(s): {}",
        found.len(),
        found.iter().copied().collect::<Vec<_>>().join(", ")
    );
    push(report, "spec.streams".into(), t, fail_if(problems), detail);

    let t = Timer::start();
    let bad: Vec<String> = streams
        .iter()
        .filter_map(|s| schema_problem(&s.json_schema).map(|p| format!("{}: {p}", s.name)))
        .collect();
    push(
        report,
        "spec.stream-schemas".into(),
        t,
        fail_if(
            bad.into_iter()
                .map(|b| format!("not valid JSON Schema — {b}"))
                .collect(),
        ),
        "",
    );
    streams
}

/// Why `schema` (text) is not a valid JSON Schema, if it is not.
pub(super) fn schema_problem(schema: &str) -> Option<String> {
    let value: Value = match serde_json::from_str(schema) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON: {e}")),
    };
    if !(value.is_object() || value.is_boolean()) {
        return Some("a schema is an object".into());
    }
    if let Err(e) = jsonschema::meta::validate(&value) {
        return Some(e.to_string());
    }
    jsonschema::validator_for(&value)
        .err()
        .map(|e| e.to_string())
}

pub(super) fn config_problem(schema: &str, config: &str) -> Option<String> {
    let schema: Value = serde_json::from_str(schema).ok()?;
    let validator = jsonschema::validator_for(&schema).ok()?;
    let config: Value = serde_json::from_str(config).ok()?;
    let errors: Vec<String> = validator
        .iter_errors(&config)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

// --------------------------------------------------------------- check ---

pub(super) async fn check(
    env: &Env,
    c: &ConnectorPlugin,
    config: &str,
    report: &mut Report,
    seen: &mut Seen,
) -> Result<(), KitError> {
    let t = Timer::start();
    let out = c.check(config).await;
    seen.events(&out.events);
    let verdict = match out.result {
        Ok(()) => Verdict::Pass,
        Err(e) => {
            seen.error("check", &e);
            Verdict::Fail(format!("check failed with the credentials given: {e}"))
        }
    };
    push(report, "check.credentials".into(), t, verdict, "");

    let t = Timer::start();
    let declared: Vec<String> = c
        .spec()
        .capabilities
        .secrets
        .iter()
        .map(|s| s.name.clone())
        .collect();
    if declared.is_empty() {
        push(
            report,
            "check.wrong-credentials".into(),
            t,
            Verdict::Skip("the connector declares no secret".into()),
            "",
        );
        return Ok(());
    }
    let wrong: BTreeMap<String, SecretValue> = declared
        .iter()
        .map(|n| (n.clone(), SecretValue::new(format!("nexo-kit-wrong-{n}"))))
        .collect();
    let w = env.connector(wrong).await?;
    let out = w.check(config).await;
    seen.events(&out.events);
    let names = declared.join(", ");
    let verdict = match out.result {
        Ok(()) => Verdict::Fail(format!(
            "check passed with a wrong {names}: it must call the system with the credentials and fail as `auth` when they are refused"
        )),
        Err(PluginError::Guest {
            error: GuestError::Auth(_),
            ..
        }) => Verdict::Pass,
        Err(PluginError::Guest { error, .. }) => Verdict::Fail(format!(
            "a wrong {names} failed as `{}`, not `auth` ({error}): classify the system's 401/403 as an authentication error so an admin is told to fix the credentials",
            error.class()
        )),
        Err(e) => Verdict::Fail(format!("a wrong {names} made the call fail outright: {e}")),
    };
    push(
        report,
        "check.wrong-credentials".into(),
        t,
        verdict,
        format!("wrong {names}"),
    );
    Ok(())
}
