//! `sandbox.*` and `spec.capabilities`: what the sandbox and the proxies
//! saw over the whole suite.

use std::collections::BTreeSet;

use base64::Engine as _;
use nexo_runtime::ConnectorPlugin;
use nexo_runtime::sandbox::policy::{Origin, OriginPattern};

use super::{Seen, Timer, fail_if, push};
use crate::Env;
use crate::report::{Report, Verdict};

pub(super) fn sandbox(env: &Env, c: &ConnectorPlugin, report: &mut Report, seen: &Seen) {
    let t = Timer::start();
    let verdict = fail_if(
        seen.refused
            .iter()
            .map(|r| format!("the sandbox refused a request: {r}"))
            .collect(),
    );
    push(report, "sandbox.granted-origins".into(), t, verdict, "");

    let t = Timer::start();
    let verdict = if seen.kv_refused {
        Verdict::Fail(
            "the plugin used key-value storage it was not granted: declare kv_bytes in the spec (and grant it to the test with --grant-kv)".into(),
        )
    } else {
        Verdict::Pass
    };
    push(
        report,
        "sandbox.granted-storage".into(),
        t,
        verdict,
        format!("{} key-value operations", env.kv_ops()),
    );

    // Every declared origin was used.
    let t = Timer::start();
    let used: Vec<Origin> = env
        .proxies()
        .iter()
        .filter(|(_, p)| p.requests() > 0)
        .filter_map(|(o, _)| url::Url::parse(o).ok().as_ref().and_then(Origin::of))
        .collect();
    // An exact origin is the vendor's claim that the plugin calls it; a
    // wildcard (a self-hosted system's `https://*:*`) leaves the host to
    // the admin's grant, so one run cannot judge it.
    let mut unused = Vec::new();
    let mut wildcards = Vec::new();
    for declared in &c.spec().capabilities.http_origins {
        match OriginPattern::parse(declared) {
            Ok(p) if used.iter().any(|o| p.matches(o)) => {}
            Ok(p) if !p.is_exact_host() || p.port.is_none() => wildcards.push(declared.clone()),
            Ok(_) => unused.push(declared.clone()),
            Err(e) => unused.push(format!("{declared} ({e})")),
        }
    }
    // Every declared secret went out in some request.
    let sent: BTreeSet<String> = env
        .proxies()
        .iter()
        .flat_map(|(_, p)| p.secrets_sent())
        .collect();
    let unsent: Vec<String> = c
        .spec()
        .capabilities
        .secrets
        .iter()
        .filter(|s| env.target().secrets.contains_key(&s.name) && !sent.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    let mut problems = Vec::new();
    if !unused.is_empty() {
        problems.push(format!(
            "declares origin(s) it sent no request to during the suite: {} — remove them from the manifest, or grant them to the test if the plugin uses them",
            unused.join(", ")
        ));
    }
    if !unsent.is_empty() {
        problems.push(format!(
            "declares secret(s) no request carried during the suite: {} — remove them from the manifest if the plugin does not use them",
            unsent.join(", ")
        ));
    }
    let kv = c.spec().capabilities.kv_bytes;
    if kv > 0 && env.target().kv_bytes > 0 && env.kv_ops() == 0 {
        problems.push(format!(
            "declares {kv} bytes of key-value storage it never used during the suite — remove kv_bytes from the spec if the plugin does not need it"
        ));
    }
    let verdict = fail_if(problems);
    let mut detail = format!(
        "used {}",
        used.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !wildcards.is_empty() {
        detail.push_str(&format!(
            "; wildcard {} left to the admin's grant",
            wildcards.join(", ")
        ));
    }
    push(report, "spec.capabilities".into(), t, verdict, detail);

    // No secret value in what the plugin handed back.
    let t = Timer::start();
    let mut leaks = BTreeSet::new();
    for (name, value) in &env.target().secrets {
        let value = value.expose();
        if value.len() < 4 {
            continue;
        }
        let forms = [
            value.to_string(),
            base64::engine::general_purpose::STANDARD.encode(value),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
            hex::encode(value),
            value.chars().rev().collect(),
        ];
        let marker = format!("[redacted:{name}]");
        for (where_, text) in &seen.texts {
            if text.contains(&marker) || forms.iter().any(|f| text.contains(f.as_str())) {
                leaks.insert(format!("{where_} carried the secret `{name}`"));
            }
        }
    }
    let n = seen.texts.len();
    push(
        report,
        "sandbox.secrets".into(),
        t,
        fail_if(
            leaks
                .into_iter()
                .take(10)
                .map(|l| format!("{l}: a plugin must never hand a secret back to the host"))
                .collect(),
        ),
        format!("{n} records, errors and log lines searched"),
    );
}
