//! What the benches share for timing and printing: sorted samples and
//! their quantiles, the machine's load average, and durations, rates and
//! verdicts as the benches print them. Benches measure and print; nothing
//! here asserts a timing.

use std::path::Path;
use std::time::Duration;

/// Timings of one variant, sorted.
#[derive(Debug)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn sorted(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Samples(v)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn quantile(&self, q: f64) -> Duration {
        let i = ((self.0.len().saturating_sub(1)) as f64 * q).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }
    pub fn p90(&self) -> Duration {
        self.quantile(0.9)
    }
    pub fn min(&self) -> Duration {
        self.quantile(0.0)
    }
}

/// Median, minimum and maximum of `v` (not empty).
pub fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The 1, 5 and 15 minute load averages: above ~1 on this 2-core machine,
/// something else competed with the bench.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A target's verdict as printed.
pub fn verdict(met: bool) -> &'static str {
    if met { "PASS" } else { "MISS" }
}

/// A duration in the unit that suits it.
pub fn dur(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `n` items per `per_batch`, as a rate.
pub fn rate(n: usize, per_batch: Duration) -> String {
    let r = n as f64 / per_batch.as_secs_f64();
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

/// Size of the compiled artefact the runtime cached for `bytes` in `dir`.
pub fn cwasm_size(dir: &Path, bytes: &[u8]) -> u64 {
    let sha = nexo::cache::sha256_hex(bytes);
    std::fs::read_dir(dir)
        .expect("cache dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&sha))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
