//! Server counters behind `/stats`.
//!
//! Exact under concurrency without a shared hot cache line: each thread
//! updates its own cache-line-aligned shard with atomic adds, and `/stats`
//! sums the shards. A counter moved by one thread and reverted by another
//! (a connection accepted on one thread and closed on another) wraps in a
//! shard but sums correctly.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Status codes are counted in a flat array indexed by code.
const CODES: usize = 600;

#[repr(align(128))]
pub struct Shard {
    requests: AtomicU64,
    bytes_sent: AtomicU64,
    service_ns: AtomicU64,
    conns_total: AtomicU64,
    conns_active: AtomicU64,
    shed: AtomicU64,
    status: [AtomicU64; CODES],
}

impl Shard {
    fn new() -> Self {
        Shard {
            requests: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            service_ns: AtomicU64::new(0),
            conns_total: AtomicU64::new(0),
            conns_active: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            status: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A response was produced (counted once it is queued, whatever its status).
    pub fn request_done(&self, status: u16, service_ns: u64) {
        self.requests.fetch_add(1, Relaxed);
        self.service_ns.fetch_add(service_ns, Relaxed);
        self.status[usize::from(status).min(CODES - 1)].fetch_add(1, Relaxed);
    }

    pub fn bytes_sent(&self, n: u64) {
        if n > 0 {
            self.bytes_sent.fetch_add(n, Relaxed);
        }
    }

    pub fn conn_opened(&self) {
        self.conns_total.fetch_add(1, Relaxed);
        self.conns_active.fetch_add(1, Relaxed);
    }

    pub fn conn_closed(&self) {
        self.conns_active.fetch_sub(1, Relaxed);
    }

    /// A client or request was turned away with 503 because a bounded
    /// queue was full (also counted under its status).
    pub fn shed(&self) {
        self.shed.fetch_add(1, Relaxed);
    }
}

pub struct Stats {
    variant: &'static str,
    threads: usize,
    started: Instant,
    shards: Box<[Shard]>,
}

/// A consistent-enough sum of all shards.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: u64,
    pub bytes_sent: u64,
    pub service_ns: u64,
    pub conns_total: u64,
    pub conns_active: u64,
    pub shed: u64,
    pub status: Vec<(u16, u64)>,
}

impl Stats {
    /// `shards` is the number of threads that will update counters.
    pub fn new(variant: &'static str, threads: usize, shards: usize) -> Self {
        Stats {
            variant,
            threads,
            started: Instant::now(),
            shards: (0..shards.max(1)).map(|_| Shard::new()).collect(),
        }
    }

    /// The shard for thread number `i`.
    pub fn shard(&self, i: usize) -> &Shard {
        &self.shards[i % self.shards.len()]
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        let mut codes = [0u64; CODES];
        for sh in self.shards.iter() {
            s.requests = s.requests.wrapping_add(sh.requests.load(Relaxed));
            s.bytes_sent = s.bytes_sent.wrapping_add(sh.bytes_sent.load(Relaxed));
            s.service_ns = s.service_ns.wrapping_add(sh.service_ns.load(Relaxed));
            s.conns_total = s.conns_total.wrapping_add(sh.conns_total.load(Relaxed));
            s.conns_active = s.conns_active.wrapping_add(sh.conns_active.load(Relaxed));
            s.shed = s.shed.wrapping_add(sh.shed.load(Relaxed));
            for (c, v) in codes.iter_mut().zip(sh.status.iter()) {
                *c += v.load(Relaxed);
            }
        }
        s.status = (0..CODES)
            .filter(|&c| codes[c] > 0)
            .map(|c| (c as u16, codes[c]))
            .collect();
        s
    }

    /// The `/stats` body.
    pub fn to_json(&self) -> String {
        let s = self.snapshot();
        let status: Vec<String> = s
            .status
            .iter()
            .map(|(c, n)| format!("\"{c}\":{n}"))
            .collect();
        let mean_us = if s.requests == 0 {
            0.0
        } else {
            s.service_ns as f64 / s.requests as f64 / 1000.0
        };
        format!(
            concat!(
                "{{\"variant\":\"{}\",\"threads\":{},\"uptime_seconds\":{:.3},",
                "\"active_connections\":{},\"total_connections\":{},\"total_requests\":{},",
                "\"bytes_sent\":{},\"shed\":{},\"status\":{{{}}},\"mean_service_us\":{:.3}}}"
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
            mean_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_shards_exactly() {
        let stats = std::sync::Arc::new(Stats::new("test", 4, 4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        stats.shard(i).conn_opened();
                        stats.shard(i).request_done(200, 10);
                        stats.shard((i + 1) % 4).conn_closed();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = stats.snapshot();
        assert_eq!(s.requests, 40_000);
        assert_eq!(s.conns_total, 40_000);
        assert_eq!(s.conns_active, 0);
        assert_eq!(s.status, vec![(200, 40_000)]);
        assert!(stats.to_json().contains("\"total_requests\":40000"));
    }
}
