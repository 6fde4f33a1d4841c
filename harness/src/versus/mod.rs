//! The head-to-head benchmarks, on the same machinery as `harness bench`
//! ([`crate::rig`]):
//!
//! - [`nginx`]: `harness bench-vs-nginx`, wrk -t1 against each variant and
//!   nginx: req/s, latency, server CPU per request, syscalls per request,
//!   ratios to nginx;
//! - [`clients`]: `harness clients` (once `harness loadgen-vs-wrk`, which
//!   still works and compares wrk and loadgen only), load generators —
//!   loadgen, wrk and oha when installed — alternating against one nginx,
//!   pinned alike: req/s and CPU per request of each client, nginx's CPU
//!   per request under each, ratios to loadgen.
//!
//! Both began as shell scripts and keep their columns and CSV files, so
//! earlier results stay comparable; `scripts/bench-vs-nginx` only builds
//! and calls its subcommand, and `just clients` builds and calls the other.

pub mod clients;
pub mod nginx;

use std::path::Path;
use std::time::Duration;

use crate::procfs;
use crate::rig::client::Load;
use crate::rig::server::{http_get, Server};

/// Busy% of other work on a CPU above which a run gets a note.
const OTHER_LOAD_PCT: f64 = 15.0;

/// How busy a set of CPUs was over a run, beside what the measured
/// process used: a note when something else shared them.
struct CpuWatch {
    cpus: Vec<usize>,
    before: (u64, u64),
}

impl CpuWatch {
    fn start(cpus: &[usize]) -> CpuWatch {
        CpuWatch {
            cpus: cpus.to_vec(),
            before: procfs::cpus_jiffies(cpus),
        }
    }

    /// A note when the CPUs were more than [`OTHER_LOAD_PCT`] busier than
    /// `who` (which used `used_pct` of one CPU) accounts for.
    fn note(&self, label: &str, who: &str, used_pct: f64) -> Option<String> {
        let busy = procfs::busy_pct(self.before, procfs::cpus_jiffies(&self.cpus))
            * self.cpus.len() as f64;
        (busy - used_pct > OTHER_LOAD_PCT).then(|| {
            format!(
                "{label}: CPU {} was {busy:.0}% busy but {who} used {used_pct:.0}%: other processes (or interrupts) shared it",
                crate::format::cpus(&self.cpus)
            )
        })
    }
}

/// A load of `path` on `server`.
fn load(
    server: &Server,
    path: &str,
    connections: u32,
    duration: Duration,
    pipeline: usize,
) -> Load {
    Load {
        url: format!("http://127.0.0.1:{}{path}", server.port),
        path: path.to_string(),
        connections,
        duration,
        pipeline,
        close: false,
    }
}

/// Whether `path` answers 200 (the scripts' check before measuring).
fn check_path(server: &Server, path: &str) -> Result<(), String> {
    match http_get(server.addr(), path, Duration::from_secs(5)) {
        Ok((200, _)) => Ok(()),
        Ok((status, _)) => Err(format!("GET {path} answered {status}, expected 200")),
        Err(e) => Err(format!("GET {path} failed: {e}")),
    }
}

/// The load average, for the start and end of a run.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Create (truncate) `path` early, so an unwritable `--csv` fails before
/// minutes of measuring.
fn touch_csv(path: Option<&Path>) -> Result<(), String> {
    if let Some(p) = path {
        std::fs::write(p, "")
            .map_err(|e| format!("cannot write --csv file {}: {e}", p.display()))?;
    }
    Ok(())
}
