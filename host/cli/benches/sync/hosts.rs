//! Several hosts on one PostgreSQL: K pipelines, each from the shared
//! source `crm-a` to a destination of its own, triggered through the admin
//! API of `nexo serve` processes (each in its own data directory, with the
//! kit's secret key and the shared compile cache) that claim them by lease
//! in the database. Each round runs the K pipelines on one host allowed K
//! runs at once, then on N hosts allowed ⌈K/N⌉ each, each layout on a fresh
//! database and fresh servers.
//!
//! Throughput is the K × n records over the span from the first run's
//! start to the last run's end (from the runs table); the wait between the
//! triggers and the first start (the scheduler's) is printed apart. Where
//! the time goes: each run's duration and phases (its `run finished` log
//! line) and the CPU seconds of the hosts, of PostgreSQL and of this
//! process (the TinyCRM servers) over the whole round.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nexo::sync::store::{RunFilter, RunStatus, RunStore};
use nexo_tests::benchkit::{load_average, spread};
use nexo_tests::synckit::{Kit, TOKEN, connection};
use nexo_tests::{cli, tinycrm};

use crate::{Mapper, Phases, apply, config, cpu, nexo, nexo_bin};

/// Longest a round may take from the triggers to the last run's end.
const ROUND_LIMIT: Duration = Duration::from_secs(600);

/// What the several-host mode runs.
pub(crate) struct Setup {
    /// Hosts of the several-host layout (one host runs beside it).
    pub hosts: usize,
    /// Pipelines (K), each to a destination of its own.
    pub pipelines: usize,
    /// The pipelines' `[commit] records`.
    pub commit: Option<u64>,
    /// The pipelines' mapper.
    pub mapper: Mapper,
}

/// The `nexo serve` processes of a round; stopped when dropped, so a
/// failed round leaves none behind.
struct Hosts {
    children: Vec<Child>,
    /// Each host's base URL.
    urls: Vec<String>,
    /// Each host's stderr (its log).
    logs: Vec<std::path::PathBuf>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Hosts {
    /// Start `n` hosts on `kit`'s database, each allowed `slots` runs.
    fn start(kit: &Kit, n: usize, slots: usize) -> Hosts {
        let url = kit.database_url().expect("the kit is on PostgreSQL");
        let mut hosts = Hosts {
            children: Vec::new(),
            urls: Vec::new(),
            logs: Vec::new(),
            _dirs: Vec::new(),
        };
        for h in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("serve.log");
            let mut child = Command::new(nexo_bin())
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--database", &url, "serve", "--addr", "127.0.0.1:0"])
                .args(["--max-concurrent-runs", &slots.to_string()])
                .args(["--lease-secs", "10"])
                .env("NEXO_SECRET_KEY", kit.secret_key())
                .env("NEXO_CACHE_DIR", nexo_tests::cache_dir())
                .env("NEXO_HOST_ID", format!("bench-host-{h}"))
                .env("NEXO_LOG", crate::log_filter())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let base = cli::listening_url(&mut child);
            hosts.children.push(child);
            hosts.urls.push(base);
            hosts.logs.push(log);
            hosts._dirs.push(dir);
        }
        hosts
    }

    /// CPU seconds of each host so far.
    fn cpu(&self) -> Vec<f64> {
        self.children.iter().map(|c| cpu::of_pid(c.id())).collect()
    }

    /// Each host's log so far.
    fn logs(&self) -> Vec<String> {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// SIGTERM each, as an admin stops a host.
    fn stop(&mut self) {
        for child in &mut self.children {
            if child.try_wait().ok().flatten().is_none() {
                cli::terminate(child, Duration::from_secs(30));
            }
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One layout's round.
struct Round {
    /// Hosts and runs each may have at once.
    hosts: usize,
    slots: usize,
    /// From the first run's start to the last run's end.
    span_s: f64,
    rate: f64,
    /// From the first trigger to the first run's start.
    wait_s: f64,
    /// Each run's duration.
    runs_s: Vec<f64>,
    /// Runs per host, by host.
    per_host: Vec<usize>,
    /// The runs' phases, averaged.
    phases: Phases,
    /// CPU seconds over the round: each host's, PostgreSQL's, this
    /// process's (the TinyCRM servers).
    cpu_hosts: Vec<f64>,
    cpu_pg: f64,
    cpu_servers: f64,
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("a run's time {text:?}: {e}"))
        .with_timezone(&Utc)
}

async fn round(setup: &Setup, hosts: usize, n: usize, page: usize) -> Round {
    let k = setup.pipelines;
    let slots = k.div_ceil(hosts);
    let kit =
        Kit::on_postgres_with_config(tinycrm::seed(n), Default::default(), config(page)).await;
    // Destination 0 is the kit's `crm-b`; the others are started here.
    let mut destinations = Vec::new();
    for i in 1..k {
        let server = tinycrm::start(BTreeMap::new(), TOKEN).await;
        let mut c = config(page);
        c["base_url"] = serde_json::json!(server.url());
        kit.connections
            .add(connection(&format!("crm-b{i}"), &server, c))
            .unwrap();
        destinations.push(server);
    }
    let mappers = setup.mapper.install(&kit).await;
    for i in 0..k {
        let to = if i == 0 {
            "crm-b".to_string()
        } else {
            format!("crm-b{i}")
        };
        apply(&kit, &format!("bench{i}"), &to, &mappers, setup.commit);
    }
    let (token, _) = nexo(
        &kit,
        &["token", "create", "--name", "bench", "--role", "admin"],
    );
    let token = String::from_utf8(token).unwrap().trim().to_string();

    let mut running = Hosts::start(&kit, hosts, slots);
    let http = reqwest::Client::new();
    // Every host has registered and looked at the pipelines once.
    let started = Instant::now();
    loop {
        let seen: serde_json::Value = http
            .get(format!("{}/api/hosts", running.urls[0]))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let alive = seen["hosts"]
            .as_array()
            .map_or(0, |h| h.iter().filter(|h| h["alive"] == true).count());
        if alive >= hosts {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "hosts did not register: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cpu_hosts = running.cpu();
    let cpu_pg = cpu::postgres().unwrap_or(0.0);
    let cpu_self = cpu::Cpu::now();
    let triggered = Utc::now();
    let t0 = Instant::now();
    // Pipeline i through host i mod N: each host is woken by a trigger.
    for i in 0..k {
        let url = format!(
            "{}/api/pipelines/bench{i}/run",
            running.urls[i % running.urls.len()]
        );
        let r = http.post(url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 202, "trigger of bench{i}: {:?}", r.text().await);
    }
    let runs = loop {
        let runs = kit
            .db
            .runs(&RunFilter {
                pipeline: None,
                status: None,
                limit: 1000,
            })
            .unwrap();
        if let Some(bad) = runs
            .iter()
            .find(|r| !matches!(r.status, RunStatus::Running | RunStatus::Succeeded))
        {
            panic!(
                "run {} of {} ended {:?}: {:?}\nhost logs:\n{}",
                bad.id,
                bad.pipeline,
                bad.status,
                bad.error,
                running.logs().join("\n")
            );
        }
        let done = runs
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count();
        if done >= k {
            break runs;
        }
        assert!(
            t0.elapsed() < ROUND_LIMIT,
            "{done} of {k} runs done after {ROUND_LIMIT:?}\nhost logs:\n{}",
            running.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu_hosts: Vec<f64> = running
        .cpu()
        .iter()
        .zip(cpu_hosts)
        .map(|(a, b)| a - b)
        .collect();
    let cpu_pg = cpu::postgres().unwrap_or(0.0) - cpu_pg;
    let cpu_servers = cpu::Cpu::now().since(cpu_self).servers;
    running.stop();

    assert_eq!(runs.len(), k, "one run per pipeline");
    for r in &runs {
        assert_eq!(r.counts.created, n as u64, "{}: {:?}", r.pipeline, r.counts);
    }
    assert_eq!(kit.b.contacts().len(), n);
    for d in &destinations {
        assert_eq!(d.contacts().len(), n);
    }
    let first = runs.iter().map(|r| time(&r.started_at)).min().unwrap();
    let last = runs
        .iter()
        .map(|r| time(r.finished_at.as_deref().unwrap_or(&r.started_at)))
        .max()
        .unwrap();
    let span_s = (last - first).as_seconds_f64();
    // Which host ran which pipeline, and the runs' phases: their logs.
    let logs = running.logs();
    let per_host: Vec<usize> = logs
        .iter()
        .map(|l| l.lines().filter(|l| l.contains("run finished")).count())
        .collect();
    let mut phases = Phases::default();
    for i in 0..k {
        let name = format!("bench{i}");
        let p = logs
            .iter()
            .find_map(|l| Phases::from_log(l, &name))
            .unwrap_or_default();
        phases.read += p.read / k as f64;
        phases.map += p.map / k as f64;
        phases.write += p.write / k as f64;
        phases.commit += p.commit / k as f64;
    }
    Round {
        hosts,
        slots,
        span_s,
        rate: (k * n) as f64 / span_s,
        wait_s: (first - triggered).as_seconds_f64(),
        runs_s: runs
            .iter()
            .map(|r| r.duration_ms.unwrap_or(0) as f64 / 1000.0)
            .collect(),
        per_host,
        phases,
        cpu_hosts,
        cpu_pg,
        cpu_servers,
    }
}

/// Each size and page size, `rounds` times, one host then `setup.hosts`
/// hosts in each round; then the medians.
pub(crate) async fn bench(setup: &Setup, sizes: &[usize], page_sizes: &[usize], rounds: usize) {
    let k = setup.pipelines;
    println!("load average at start: {}", load_average());
    println!(
        "mapper: {}; {k} pipelines from one source, each to its own destination, on PostgreSQL",
        setup.mapper.name()
    );
    println!(
        "hosts × runs   page   records   round   trigger→first start   first start→last end   records/s   run s median (min–max)   runs per host   CPU s hosts / postgres / servers   run read/map/write/commit s (mean)"
    );
    let mut summary = Vec::new();
    for &page in page_sizes {
        for &n in sizes {
            let mut layouts: Vec<Vec<Round>> = vec![Vec::new(), Vec::new()];
            for r in 1..=rounds {
                for (i, hosts) in [1, setup.hosts].into_iter().enumerate() {
                    let x = round(setup, hosts, n, page).await;
                    let (m, lo, hi) = spread(x.runs_s.clone());
                    println!(
                        "{:>5} × {:<4}   {page:>4}   {:>7}   {r:>5}   {:>17.2} s   {:>18.2} s   {:>9.0}   {m:>6.2} ({lo:.2}–{hi:.2})       {:<13}   {} / {:.2} / {:.2}   {}",
                        x.hosts,
                        x.slots,
                        k * n,
                        x.wait_s,
                        x.span_s,
                        x.rate,
                        x.per_host
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join("+"),
                        x.cpu_hosts
                            .iter()
                            .map(|c| format!("{c:.2}"))
                            .collect::<Vec<_>>()
                            .join("+"),
                        x.cpu_pg,
                        x.cpu_servers,
                        x.phases.show(),
                    );
                    layouts[i].push(x);
                }
            }
            summary.push((page, n, layouts));
        }
    }
    println!("load average at end: {}", load_average());
    println!();
    println!(
        "hosts × runs   page   records   rounds   records/s: median (min–max)   first start→last end s: median   CPU s hosts (sum) / postgres / servers: median"
    );
    for (page, n, layouts) in &summary {
        for all in layouts {
            let (m, lo, hi) = spread(all.iter().map(|x| x.rate).collect());
            let (span, _, _) = spread(all.iter().map(|x| x.span_s).collect());
            let (h, _, _) = spread(all.iter().map(|x| x.cpu_hosts.iter().sum()).collect());
            let (p, _, _) = spread(all.iter().map(|x| x.cpu_pg).collect());
            let (s, _, _) = spread(all.iter().map(|x| x.cpu_servers).collect());
            println!(
                "{:>5} × {:<4}   {page:>4}   {:>7}   {:>6}   {m:>12.0} ({lo:.0}–{hi:.0})   {span:>30.2}   {h:.2} / {p:.2} / {s:.2}",
                all[0].hosts,
                all[0].slots,
                k * n,
                all.len()
            );
        }
    }
}
