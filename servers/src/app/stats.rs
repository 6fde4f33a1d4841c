//! `/stats`: the shards of counters every thread and process of a server
//! updates, and the JSON body summing them.
//!
//! The shards live in one `MAP_SHARED` mapping made before any worker
//! exists, so a process forked from the server keeps writing into the same
//! memory its parent reads: a request counted in a child shows in the
//! parent's `/stats` exactly.

use std::io;
use std::time::Instant;

use crate::http::stats::{Shard, Snapshot};
use crate::sys::shm::{SharedSlice, Zeroable};

// SAFETY: a `Shard` is a `#[repr(C)]` struct of atomic integers and an
// array of them (all `Zeroable`): all-zero bytes are every counter at 0, it
// holds no pointer, is `Sync`, and has no destructor to run.
unsafe impl Zeroable for Shard {}

/// The server's counters: one shard per writer, in shared memory.
pub struct Stats {
    variant: &'static str,
    threads: usize,
    started: Instant,
    shards: SharedSlice<Shard>,
}

impl Stats {
    /// Counters for `shards` writers (threads or processes) of `variant`,
    /// which runs `threads` threads or processes. The calling process is
    /// counted as the first serving process; a model that forks more counts
    /// them with [`Shard::process_started`] and [`Shard::process_exited`].
    pub fn new(variant: &'static str, threads: usize, shards: usize) -> io::Result<Self> {
        let stats = Stats {
            variant,
            threads,
            started: Instant::now(),
            shards: SharedSlice::new(shards.max(1))?,
        };
        stats.shard(0).process_started();
        Ok(stats)
    }

    /// The shard of writer number `i`.
    pub fn shard(&self, i: usize) -> &Shard {
        &self.shards[i % self.shards.len()]
    }

    /// How many writers have a shard.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The sum of every shard now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::sum(self.shards.iter())
    }

    /// The `/stats` body. Counters and gauges only, no rates: a reader
    /// (the dashboard) takes deltas of two bodies and divides
    /// by the difference of their `uptime_seconds`, the server's own clock.
    /// `service_us_total` is the sum behind `mean_service_us`, so a reader
    /// can take the mean over its own interval. New keys go at the end.
    pub fn to_json(&self) -> String {
        let s = self.snapshot();
        let status: Vec<String> = s
            .status
            .iter()
            .map(|(c, n)| format!("\"{c}\":{n}"))
            .collect();
        format!(
            concat!(
                "{{\"variant\":\"{}\",\"threads\":{},\"uptime_seconds\":{:.3},",
                "\"active_connections\":{},\"total_connections\":{},\"total_requests\":{},",
                "\"bytes_sent\":{},\"shed\":{},\"status\":{{{}}},\"mean_service_us\":{:.3},",
                "\"processes\":{},\"service_us_total\":{}}}"
            ),
            self.variant,
            self.threads,
            self.started.elapsed().as_secs_f64(),
            s.conns_active,
            s.conns_total,
            s.requests,
            s.bytes_sent,
            s.shed,
            status.join(","),
            s.mean_service_us(),
            s.processes,
            s.service_ns / 1000,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sums_every_shard() {
        let stats = Stats::new("test", 2, 2).unwrap();
        stats.shard(0).request_done(200, 1000);
        stats.shard(1).request_done(404, 3000);
        stats.shard(1).conn_opened();
        let json = stats.to_json();
        assert!(
            json.starts_with("{\"variant\":\"test\",\"threads\":2,"),
            "{json}"
        );
        assert!(json.contains("\"total_requests\":2"), "{json}");
        assert!(json.contains("\"status\":{\"200\":1,\"404\":1}"), "{json}");
        assert!(json.contains("\"mean_service_us\":2.000"), "{json}");
        assert!(json.contains("\"active_connections\":1"), "{json}");
        assert!(
            json.ends_with(",\"processes\":1,\"service_us_total\":4}"),
            "{json}"
        );
    }
}
