//! The recorded window's own figures, read just before and just after
//! `perf record` runs: the server's CPU time, the requests it completed
//! (its own counter, [`crate::rig::served`]), and how busy the server's
//! CPUs were. Dividing the one by the other gives the CPU microseconds per
//! request that the bucket shares split.
//!
//! Where the CPU time comes from:
//! - a server whose processes live as long as the run: the process tree's
//!   utime + stime (+ reaped children) from `/proc/PID/stat`, its threads
//!   included;
//! - a process per connection: the tree cannot be
//!   sampled exactly — children exit while it is walked, so a child missed
//!   by one walk is counted whole through its parent's `cutime` by the next
//!   (the `fork` tree measured 125% of its one CPU here) — so the server
//!   CPUs' busy time from `/proc/stat` is split by the server's share of
//!   the recording's samples (every recording is CPU-wide; the placement gives those CPUs to the server
//!   alone; what else ran on them is the remainder).

use std::io;
use std::time::{Duration, Instant};

use crate::procfs::{self, Usage};
use crate::rig::served::{self, Reading};
use crate::rig::server::Server;

/// How long one counter reading may take (a server with a full backlog
/// answers late).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What was read when the window opened.
pub struct Opened {
    counter: Result<Reading, String>,
    tree: io::Result<Usage>,
    cpus: (u64, u64),
    at: Instant,
}

/// The window, closed.
pub struct Window {
    /// Wall time between the two CPU readings.
    pub wall: Duration,
    /// The server tree's CPU time over the window (None if /proc failed).
    pub tree: Option<Usage>,
    /// Busy percent of the server CPUs (mean over them), from /proc/stat.
    pub cpus_busy_pct: f64,
    /// How many server CPUs.
    pub n_cpus: usize,
    /// Requests the server completed in the window, or why unknown.
    pub requests: Result<f64, String>,
}

/// Read the counter, the tree's CPU time and the CPUs' busy time, in that
/// order (the close reads them in the reverse order, so the counter's
/// interval encloses the CPU's).
pub fn open(server: &Server, nginx: bool, cpus: &[usize]) -> Opened {
    let counter = served::read(server.addr(), nginx, READ_TIMEOUT);
    let tree = procfs::sample_tree(server.pid());
    Opened {
        counter,
        tree,
        cpus: procfs::cpus_jiffies(cpus),
        at: Instant::now(),
    }
}

impl Opened {
    /// Close the window: the same readings in the reverse order.
    pub fn close(self, server: &Server, nginx: bool, cpus: &[usize]) -> Window {
        let wall = self.at.elapsed();
        let cpus_after = procfs::cpus_jiffies(cpus);
        let tree = match (self.tree, procfs::sample_tree(server.pid())) {
            (Ok(b), Ok(a)) => Some(a.since(&b)),
            _ => None,
        };
        let last = served::read(server.addr(), nginx, READ_TIMEOUT);
        let requests = match (self.counter, last) {
            (Ok(f), Ok(l)) => Ok(served::in_window(&f, &l, wall)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        Window {
            wall,
            tree,
            cpus_busy_pct: procfs::busy_pct(self.cpus, cpus_after),
            n_cpus: cpus.len(),
            requests,
        }
    }
}

/// Where a window's CPU time was taken from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CpuSource {
    /// The process tree's own accounting.
    Tree,
    /// The server CPUs' busy time times this share (0..=1) of their
    /// samples that were the server's.
    CpusShare(f64),
}

impl CpuSource {
    /// For profile.json and the report.
    pub fn describe(self) -> String {
        match self {
            CpuSource::Tree => "the process tree's utime + stime (/proc/PID/stat)".into(),
            CpuSource::CpusShare(share) => format!(
                "the server CPUs' busy time (/proc/stat) × the server's share of their samples ({:.1}%)",
                share * 100.0
            ),
        }
    }
}

impl Window {
    /// The server's CPU seconds over the window.
    pub fn cpu_s(&self, source: CpuSource) -> f64 {
        match source {
            CpuSource::Tree => self.tree.map_or(0.0, |u| u.user_s + u.system_s),
            CpuSource::CpusShare(share) => {
                self.cpus_busy_pct / 100.0 * self.n_cpus as f64 * self.wall.as_secs_f64() * share
            }
        }
    }

    /// CPU microseconds per request, and notes on anything that makes it
    /// less than it seems. 0 when the requests are unknown.
    pub fn us_per_request(&self, source: CpuSource) -> (f64, Vec<String>) {
        let mut notes = Vec::new();
        let requests = match &self.requests {
            Ok(n) if *n >= 1.0 => *n,
            Ok(_) => {
                notes.push("the server counted no request during the recording".into());
                return (0.0, notes);
            }
            Err(e) => {
                notes.push(format!("requests of the recording unknown: {e}"));
                return (0.0, notes);
            }
        };
        (self.cpu_s(source) * 1e6 / requests, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: Result<f64, String>) -> Window {
        Window {
            wall: Duration::from_secs(10),
            tree: Some(Usage {
                user_s: 1.0,
                system_s: 3.0,
                ..Usage::default()
            }),
            cpus_busy_pct: 80.0,
            n_cpus: 1,
            requests,
        }
    }

    #[test]
    fn tree_time_per_request() {
        let (us, notes) = window(Ok(400_000.0)).us_per_request(CpuSource::Tree);
        assert!((us - 10.0).abs() < 1e-9, "{us}");
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn cpus_share_time_per_request() {
        // 80% of one CPU for 10 s, 3/4 of the samples the server's: 6 s.
        let w = window(Ok(600_000.0));
        assert!((w.cpu_s(CpuSource::CpusShare(0.75)) - 6.0).abs() < 1e-9);
        let (us, _) = w.us_per_request(CpuSource::CpusShare(0.75));
        assert!((us - 10.0).abs() < 1e-9, "{us}");
    }

    #[test]
    fn unknown_requests_give_zero_and_say_why() {
        let (us, notes) =
            window(Err("GET /stats answered 404".into())).us_per_request(CpuSource::Tree);
        assert_eq!(us, 0.0);
        assert!(notes[0].contains("404"), "{notes:?}");
        let (us, notes) = window(Ok(0.0)).us_per_request(CpuSource::Tree);
        assert_eq!(us, 0.0);
        assert!(notes[0].contains("no request"), "{notes:?}");
    }
}
