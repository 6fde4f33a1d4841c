//! The counters behind `/stats`: plain atomics, one [`Shard`] per writer.
//!
//! Exact under concurrency without a shared hot cache line: each thread
//! (or process) updates its own cache-line-aligned shard with atomic adds,
//! and a reader sums the shards into a [`Snapshot`]. A counter moved by one
//! writer and reverted by another (a connection accepted on one thread and
//! closed on another) wraps in a shard but sums correctly.
//!
//! A shard is valid when all its bytes are zero and holds no pointer, so
//! the shards can live in memory shared between processes (where they are
//! placed is the application's business, see `app::stats`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Status codes are counted in a flat array indexed by code.
const CODES: usize = 600;

/// One writer's counters, padded to its own cache lines (two, against the
/// adjacent-line prefetcher) so writers never share one.
#[repr(C, align(128))]
pub struct Shard {
    requests: AtomicU64,
    bytes_sent: AtomicU64,
    service_ns: AtomicU64,
    conns_total: AtomicU64,
    conns_active: AtomicU64,
    shed: AtomicU64,
    processes: AtomicU64,
    status: [AtomicU64; CODES],
}

impl Default for Shard {
    fn default() -> Self {
        Shard::new()
    }
}

impl Shard {
    /// All counters at zero.
    pub const fn new() -> Self {
        Shard {
            requests: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            service_ns: AtomicU64::new(0),
            conns_total: AtomicU64::new(0),
            conns_active: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            processes: AtomicU64::new(0),
            status: [const { AtomicU64::new(0) }; CODES],
        }
    }

    /// A response was produced (counted once it is queued, whatever its status).
    pub fn request_done(&self, status: u16, service_ns: u64) {
        self.requests.fetch_add(1, Relaxed);
        self.service_ns.fetch_add(service_ns, Relaxed);
        self.status[usize::from(status).min(CODES - 1)].fetch_add(1, Relaxed);
    }

    /// `n` bytes reached the kernel's socket buffer.
    pub fn bytes_sent(&self, n: u64) {
        if n > 0 {
            self.bytes_sent.fetch_add(n, Relaxed);
        }
    }

    /// A connection was accepted.
    pub fn conn_opened(&self) {
        self.conns_total.fetch_add(1, Relaxed);
        self.conns_active.fetch_add(1, Relaxed);
    }

    /// A connection was closed (possibly by another writer than the opener).
    pub fn conn_closed(&self) {
        self.conns_active.fetch_sub(1, Relaxed);
    }

    /// A client or request was turned away with 503 because a bounded
    /// queue was full (also counted under its status).
    pub fn shed(&self) {
        self.shed.fetch_add(1, Relaxed);
    }

    /// A process serving this server started (its parent counts it when it
    /// forks it, so a child that dies before running still gets counted
    /// down by the parent that reaps it).
    pub fn process_started(&self) {
        self.processes.fetch_add(1, Relaxed);
    }

    /// A process counted by [`Shard::process_started`] was reaped.
    pub fn process_exited(&self) {
        self.processes.fetch_sub(1, Relaxed);
    }
}

/// A consistent-enough sum of shards.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Responses produced.
    pub requests: u64,
    /// Bytes handed to the kernel.
    pub bytes_sent: u64,
    /// Time spent producing responses, summed.
    pub service_ns: u64,
    /// Connections accepted.
    pub conns_total: u64,
    /// Connections open now.
    pub conns_active: u64,
    /// Clients or requests turned away with 503.
    pub shed: u64,
    /// Processes serving now.
    pub processes: u64,
    /// Responses by status code, codes with a zero count left out.
    pub status: Vec<(u16, u64)>,
}

impl Snapshot {
    /// The sum of `shards`.
    pub fn sum<'a>(shards: impl IntoIterator<Item = &'a Shard>) -> Snapshot {
        let mut s = Snapshot::default();
        let mut codes = [0u64; CODES];
        for sh in shards {
            s.requests = s.requests.wrapping_add(sh.requests.load(Relaxed));
            s.bytes_sent = s.bytes_sent.wrapping_add(sh.bytes_sent.load(Relaxed));
            s.service_ns = s.service_ns.wrapping_add(sh.service_ns.load(Relaxed));
            s.conns_total = s.conns_total.wrapping_add(sh.conns_total.load(Relaxed));
            s.conns_active = s.conns_active.wrapping_add(sh.conns_active.load(Relaxed));
            s.shed = s.shed.wrapping_add(sh.shed.load(Relaxed));
            s.processes = s.processes.wrapping_add(sh.processes.load(Relaxed));
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

    /// Mean service time per request, in microseconds (0 before any request).
    pub fn mean_service_us(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.service_ns as f64 / self.requests as f64 / 1000.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_shards_exactly() {
        let shards: Vec<Shard> = (0..4).map(|_| Shard::new()).collect();
        for i in 0..4 {
            for _ in 0..1000 {
                shards[i].conn_opened();
                shards[i].request_done(200, 10);
                // Closed by another writer: wraps in that shard, sums to 0.
                shards[(i + 1) % 4].conn_closed();
            }
        }
        shards[0].request_done(404, 0);
        shards[1].shed();
        shards[2].bytes_sent(7);
        // Two processes forked and counted by one writer, one reaped by another.
        shards[0].process_started();
        shards[0].process_started();
        shards[3].process_exited();
        let s = Snapshot::sum(shards.iter());
        assert_eq!(s.requests, 4001);
        assert_eq!(s.conns_total, 4000);
        assert_eq!(s.conns_active, 0);
        assert_eq!(s.status, vec![(200, 4000), (404, 1)]);
        assert_eq!((s.shed, s.bytes_sent), (1, 7));
        assert_eq!(s.service_ns, 40_000);
        assert_eq!(s.processes, 1);
    }
}
