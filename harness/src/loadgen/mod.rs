//! `loadgen`: a wrk-compatible HTTP/1.1 load generator on the project's own
//! syscall layer (DESIGN §5).
//!
//! One module per job: [`cli`] parses the command line, [`url`] the target,
//! [`request`] serializes the request once, [`response`] finds where each
//! response ends, [`engine`] is the per-thread epoll loop, [`schedule`] the
//! `-R` send grid, [`stats`] and [`hist`] what is counted, [`report`] and
//! [`json`] what is printed. This file starts the threads and merges them.

pub mod cli;
pub mod engine;
pub mod hist;
pub mod json;
pub mod report;
pub mod request;
pub mod response;
pub mod schedule;
pub mod stats;
pub mod url;

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use servers::sys::time::monotonic_ns;

use cli::Config;
use engine::{Plan, Shared};
use schedule::Pacer;
use stats::Stats;

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// All threads' counts merged.
    pub stats: Stats,
    /// From the start until the last thread finished (grace included).
    pub elapsed: Duration,
    /// Wall-clock time of the start, ms since the Unix epoch: lets runs on
    /// several machines be checked for overlap when merged (as good as the
    /// machines' clocks).
    pub started_unix_ms: u64,
    /// Set when no connection ever succeeded: why the connects failed
    /// (e.g. "connection refused").
    pub all_connects_failed: Option<String>,
}

/// Run the load described by `cfg`. `wake_fd` (the Ctrl-C eventfd) stops
/// the run early when it becomes readable.
pub fn run(cfg: &Config, wake_fd: Option<BorrowedFd<'static>>) -> io::Result<Outcome> {
    let request = request::build(
        &cfg.method,
        &cfg.target.path,
        &cfg.target.authority,
        &cfg.headers,
        cfg.body.as_deref(),
        cfg.pipeline,
    );
    let timeout_ns = duration_ns(cfg.timeout);
    let start_ns = monotonic_ns();
    let started_unix_ms = unix_ms_now();
    let end_ns = cfg
        .duration
        .map_or(u64::MAX, |d| start_ns.saturating_add(duration_ns(d)));
    // Latency cannot exceed the timeout by more than a tick, except the
    // corrected latency with -R, which grows with a backlog up to the run's
    // length; larger values saturate rather than vanish.
    let second = 1_000_000;
    let mut max_us = (timeout_ns / 1000).max(second);
    if cfg.rate.is_some() {
        max_us = max_us.max(cfg.duration.map_or(3600 * second, |d| d.as_micros() as u64));
    }
    let plan = Plan {
        addr: cfg.target.addr,
        request,
        pipeline: cfg.pipeline,
        head_request: cfg.method.eq_ignore_ascii_case("HEAD"),
        timeout_ns,
        pacer: cfg.rate.map(|rate| Pacer {
            start_ns,
            rate,
            connections: cfg.connections as u64,
        }),
        hist_max_us: max_us * 2,
        busy_poll_ns: cfg.busy_poll.as_nanos().min(u128::from(u64::MAX)) as u64,
        coalesce_ns: cfg.coalesce.as_nanos().min(u128::from(u64::MAX)) as u64,
    };
    let shared = Shared {
        start_ns,
        end_ns,
        budget: cfg.requests.map(AtomicU64::new),
        stop: AtomicBool::new(false),
        any_connected: AtomicBool::new(false),
        connect_failures: AtomicU64::new(0),
        last_connect_errno: AtomicI32::new(0),
        wake_fd,
    };
    let shares = split(cfg.connections, cfg.threads);
    let results: Vec<io::Result<Stats>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .iter()
            .map(|&(first, count)| {
                let (plan, shared) = (&plan, &shared);
                std::thread::Builder::new()
                    .name("loadgen".into())
                    .spawn_scoped(s, move || engine::run(plan, shared, first as u64, count))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a thread panicked"))),
                Err(e) => Err(e),
            })
            .collect()
    });
    let elapsed = Duration::from_nanos(monotonic_ns() - start_ns);
    let mut total = Stats::new(plan.hist_max_us);
    for r in results {
        total.merge(&r?);
    }
    total.finish(cfg.rate.is_some());
    let all_connects_failed = (!shared.any_connected.load(Relaxed)
        && shared.connect_failures.load(Relaxed) > 0)
        .then(|| describe_errno(shared.last_connect_errno.load(Relaxed)));
    Ok(Outcome {
        stats: total,
        elapsed,
        started_unix_ms,
        all_connects_failed,
    })
}

/// Connections per thread as (first index, count): an even split, the
/// remainder going one each to the first threads, so none is dropped.
pub fn split(connections: usize, threads: usize) -> Vec<(usize, usize)> {
    let (base, extra) = (connections / threads, connections % threads);
    let mut first = 0;
    (0..threads)
        .map(|i| {
            let count = base + usize::from(i < extra);
            let share = (first, count);
            first += count;
            share
        })
        .collect()
}

/// The wall clock in ms since the Unix epoch (0 on a clock set before 1970).
fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// "connection refused" from ECONNREFUSED: the C library's text without
/// the "(os error N)" suffix, lower-cased to sit inside a sentence.
pub fn describe_errno(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "unknown error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_spreads_the_remainder() {
        assert_eq!(split(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(4, 4), vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
        let total: usize = split(1001, 7).iter().map(|s| s.1).sum();
        assert_eq!(total, 1001);
    }

    #[test]
    fn errno_text() {
        assert_eq!(describe_errno(libc::ECONNREFUSED), "connection refused");
        assert_eq!(describe_errno(libc::ETIMEDOUT), "connection timed out");
    }
}
