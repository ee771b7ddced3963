//! Process-wide counters for Prometheus (`/metrics` of `nexo serve`): runs,
//! records by outcome, errors by class, plugin call latency, sandbox limit
//! hits, webhooks; on a database several hosts share, which host this is
//! and how many pipelines it holds, so a Prometheus scraping every host
//! tells them apart. Kept in memory; a scrape renders the text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.total += 1;
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct State {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    gauges: BTreeMap<(&'static str, Labels), i64>,
}

/// What a finished run counted, by outcome (`created`, `updated`, …), as
/// the metrics name them; the sync engine's counts implement it.
pub trait OutcomeCounts {
    /// Each outcome's name and count.
    fn by_outcome(&self) -> Vec<(&'static str, u64)>;
}

/// The metrics of this process.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "nexo_runs_total",
        "counter",
        "Finished pipeline runs by status.",
    ),
    (
        "nexo_records_total",
        "counter",
        "Records handled by runs, by outcome.",
    ),
    (
        "nexo_errors_total",
        "counter",
        "Errors by class: failed runs and dead-lettered records.",
    ),
    (
        "nexo_plugin_calls_total",
        "counter",
        "Plugin calls by plugin, operation and result.",
    ),
    (
        "nexo_plugin_call_seconds",
        "histogram",
        "Plugin call latency, instantiation included.",
    ),
    (
        "nexo_plugin_limit_hits_total",
        "counter",
        "Plugin calls stopped by a sandbox limit.",
    ),
    (
        "nexo_pipelines_auto_paused_total",
        "counter",
        "Pipelines paused after repeated failures.",
    ),
    (
        "nexo_webhooks_total",
        "counter",
        "Webhook requests by result.",
    ),
    (
        "nexo_host_info",
        "gauge",
        "This host among the hosts sharing the database: always 1, labelled with its id and version.",
    ),
    (
        "nexo_host_leases_held",
        "gauge",
        "Pipelines whose lease this host holds now (hosts sharing a database).",
    ),
];

impl Metrics {
    /// The process's metrics.
    pub fn global() -> &'static Metrics {
        static GLOBAL: OnceLock<Metrics> = OnceLock::new();
        GLOBAL.get_or_init(Metrics::default)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, name: &'static str, labels: Labels, n: u64) {
        if n > 0 {
            *self.lock().counters.entry((name, labels)).or_default() += n;
        }
    }

    /// The value of a counter (tests, the console).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.lock()
            .counters
            .iter()
            .filter(|((n, l), _)| {
                *n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// A run ended (succeeded, failed or interrupted) with these counts.
    pub fn run_finished(&self, pipeline: &str, status: &str, counts: &impl OutcomeCounts) {
        self.add(
            "nexo_runs_total",
            vec![("pipeline", pipeline.into()), ("status", status.into())],
            1,
        );
        for (outcome, n) in counts.by_outcome() {
            self.add(
                "nexo_records_total",
                vec![("pipeline", pipeline.into()), ("outcome", outcome.into())],
                n,
            );
        }
    }

    /// An error of a class (`run:<kind>` for a failed run, the dead
    /// letter's class for a record).
    pub fn error(&self, pipeline: &str, class: &str) {
        self.add(
            "nexo_errors_total",
            vec![("pipeline", pipeline.into()), ("class", class.into())],
            1,
        );
    }

    /// A plugin call finished.
    pub fn plugin_call(&self, plugin: &str, op: &str, ok: bool, elapsed: Duration) {
        let labels: Labels = vec![("plugin", plugin.into()), ("operation", op.into())];
        let mut with_result = labels.clone();
        with_result.push(("result", if ok { "ok" } else { "error" }.into()));
        self.add("nexo_plugin_calls_total", with_result, 1);
        self.lock()
            .histograms
            .entry(("nexo_plugin_call_seconds", labels))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// A plugin call was stopped by a limit (`memory`, `time`, …).
    pub fn limit_hit(&self, plugin: &str, limit: &str) {
        self.add(
            "nexo_plugin_limit_hits_total",
            vec![("plugin", plugin.into()), ("limit", limit.into())],
            1,
        );
    }

    /// A pipeline was paused by the host.
    pub fn auto_paused(&self, pipeline: &str) {
        self.add(
            "nexo_pipelines_auto_paused_total",
            vec![("pipeline", pipeline.into())],
            1,
        );
    }

    /// A webhook request was answered (`accepted`, `bad_signature`, …).
    pub fn webhook(&self, pipeline: &str, result: &str) {
        self.add(
            "nexo_webhooks_total",
            vec![("pipeline", pipeline.into()), ("result", result.into())],
            1,
        );
    }

    fn set(&self, name: &'static str, labels: Labels, value: i64) {
        self.lock().gauges.insert((name, labels), value);
    }

    /// The value of a gauge (tests).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<i64> {
        self.lock()
            .gauges
            .iter()
            .find(|((n, l), _)| {
                *n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
    }

    /// This process serves as host `host` of a shared database, running
    /// `version`. One host per process: a host started again in the same
    /// process replaces the previous one.
    pub fn host_info(&self, host: &str, version: &str) {
        let mut state = self.lock();
        state.gauges.retain(|(n, _), _| *n != "nexo_host_info");
        state.gauges.insert(
            (
                "nexo_host_info",
                vec![("host", host.into()), ("version", version.into())],
            ),
            1,
        );
    }

    /// This host holds the lease of `n` pipelines now.
    pub fn host_leases_held(&self, n: usize) {
        self.set(
            "nexo_host_leases_held",
            Vec::new(),
            i64::try_from(n).unwrap_or(i64::MAX),
        );
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let state = self.lock();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let counters = state.counters.iter().map(|(k, v)| (k, i128::from(*v)));
            let gauges = state.gauges.iter().map(|(k, v)| (k, i128::from(*v)));
            for ((n, labels), v) in counters.chain(gauges) {
                if n == name {
                    let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
                }
            }
            for ((n, labels), h) in &state.histograms {
                if n != name {
                    continue;
                }
                for (i, le) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        render_labels(labels, Some(&le.to_string())),
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(labels, Some("+Inf")),
                    h.total
                );
                let _ = writeln!(out, "{name}_sum{} {}", render_labels(labels, None), h.sum);
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    render_labels(labels, None),
                    h.total
                );
            }
        }
        out
    }
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let m = Metrics::default();
        struct Counts;
        impl OutcomeCounts for Counts {
            fn by_outcome(&self) -> Vec<(&'static str, u64)> {
                vec![("created", 2), ("updated", 0), ("failed", 1)]
            }
        }
        let counts = Counts;
        m.run_finished("p\"1", "succeeded", &counts);
        m.plugin_call("acme/crm", "read", true, Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("nexo_runs_total{pipeline=\"p\\\"1\",status=\"succeeded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("nexo_records_total{pipeline=\"p\\\"1\",outcome=\"created\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "nexo_plugin_call_seconds_bucket{plugin=\"acme/crm\",operation=\"read\",le=\"0.005\"} 1"
        ), "{text}");
        assert!(text.contains(
            "nexo_plugin_call_seconds_bucket{plugin=\"acme/crm\",operation=\"read\",le=\"0.0025\"} 0"
        ), "{text}");
        assert_eq!(m.counter("nexo_records_total", &[("outcome", "failed")]), 1);
        assert_eq!(
            m.counter("nexo_records_total", &[("outcome", "updated")]),
            0
        );
    }

    #[test]
    fn a_shared_hosts_identity_and_leases_render_as_gauges() {
        let m = Metrics::default();
        // One host alone (SQLite) says nothing about hosts.
        assert!(!m.render().contains("nexo_host_info{"));
        m.host_info("old", "0.0.9");
        m.host_info("host-a", "1.2.3");
        m.host_leases_held(2);
        m.host_leases_held(3);
        let text = m.render();
        assert!(text.contains("# TYPE nexo_host_info gauge\n"), "{text}");
        assert!(
            text.contains("nexo_host_info{host=\"host-a\",version=\"1.2.3\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("host=\"old\""), "{text}");
        assert!(text.contains("nexo_host_leases_held 3\n"), "{text}");
        assert_eq!(m.gauge("nexo_host_leases_held", &[]), Some(3));
    }
}
