//! CPU seconds from `/proc`: of this process (the TinyCRM servers), of its
//! waited-for children (`nexo pipeline run`), of a live child (`nexo
//! serve`), and of the test PostgreSQL server with all its backends, so a
//! run's time can be split between the host, the database and the systems
//! it syncs.

/// USER_HZ on Linux.
const TICK: f64 = 100.0;

/// The numeric fields of `/proc/<pid>/stat` after the command name, so
/// that `field(14)` is utime as `proc(5)` numbers them.
struct Stat(Vec<f64>);

impl Stat {
    fn of(pid: &str) -> Option<Stat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is parenthesised and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r)?;
        Some(Stat(
            rest.split_whitespace()
                .map(|x| x.parse().unwrap_or(0.0))
                .collect(),
        ))
    }
    fn field(&self, i: usize) -> f64 {
        self.0.get(i - 3).copied().unwrap_or(0.0)
    }
    /// utime + stime, in seconds.
    fn own(&self) -> f64 {
        (self.field(14) + self.field(15)) / TICK
    }
    /// cutime + cstime: the children it has waited for, in seconds.
    fn reaped(&self) -> f64 {
        (self.field(16) + self.field(17)) / TICK
    }
    fn parent(&self) -> f64 {
        self.field(4)
    }
}

/// CPU seconds (user + system) of this process (the TinyCRM servers) and
/// of its waited-for children (the `nexo` runs).
#[derive(Clone, Copy, Default)]
pub(crate) struct Cpu {
    pub servers: f64,
    pub nexo: f64,
}

impl Cpu {
    pub fn now() -> Cpu {
        Stat::of("self").map_or_else(Cpu::default, |s| Cpu {
            servers: s.own(),
            nexo: s.reaped(),
        })
    }
    pub fn since(self, before: Cpu) -> Cpu {
        Cpu {
            servers: self.servers - before.servers,
            nexo: self.nexo - before.nexo,
        }
    }
}

/// CPU seconds of a running process (a `nexo serve` host) so far.
pub(crate) fn of_pid(pid: u32) -> f64 {
    Stat::of(&pid.to_string()).map_or(0.0, |s| s.own())
}

/// CPU seconds of this process's PostgreSQL so far: the postmaster, the
/// backends it has reaped (each closed connection) and those alive
/// (connections open now, checkpointer, WAL writer…). None on SQLite.
pub(crate) fn postgres() -> Option<f64> {
    let server = nexo::store::postgres::testing::server().ok()?;
    let pidfile = std::fs::read_to_string(server.dir.join("data/postmaster.pid")).ok()?;
    let pid = pidfile.lines().next()?.trim().to_string();
    let master = Stat::of(&pid)?;
    let pid_f: f64 = pid.parse().ok()?;
    let live: f64 = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            name.bytes().all(|b| b.is_ascii_digit()).then_some(name)
        })
        .filter_map(|p| Stat::of(&p))
        .filter(|s| s.parent() == pid_f)
        .map(|s| s.own())
        .sum();
    Some(master.own() + master.reaped() + live)
}
