//! `-R` pacing: every request has an intended send time on a fixed grid,
//! and latency is measured from it (coordinated-omission correction, as
//! wrk2). The grid is computed from integers, never accumulated, so timer
//! rounding cannot drift the rate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The send grid of a whole run: the `n`-th request overall is due at
/// `start + n / rate`, and connection `i` of `c` sends requests
/// `i, i + c, i + 2c, ...`. So each connection runs at `rate / c`, phase
/// shifted by `i / rate`, and together they are evenly spread.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// When the schedule starts, ns.
    pub start_ns: u64,
    /// Requests per second over all connections.
    pub rate: u64,
    /// Connections sharing the rate.
    pub connections: u64,
}

impl Pacer {
    /// Intended time (ns, CLOCK_MONOTONIC) of connection `conn`'s `k`-th request.
    pub fn intended(&self, conn: u64, k: u64) -> u64 {
        let n = u128::from(conn) + u128::from(k) * u128::from(self.connections);
        let offset = n * 1_000_000_000 / u128::from(self.rate);
        self.start_ns
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }
}

/// Pending sends of one thread, earliest first: (due ns, connection slot,
/// connection generation). An entry whose generation no longer matches its
/// slot is stale (the connection was reopened) and is skipped.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

impl Timers {
    /// A queue for `n` timers without reallocation.
    pub fn with_capacity(n: usize) -> Timers {
        Timers {
            heap: BinaryHeap::with_capacity(n),
        }
    }

    /// Add a timer due at `due` for connection `slot` of generation `gen`.
    pub fn push(&mut self, due: u64, slot: usize, gen: u32) {
        self.heap.push(Reverse((due, slot as u32, gen)));
    }

    /// The earliest due time, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Remove and return one entry due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(usize, u32)> {
        match self.heap.peek() {
            Some(Reverse((t, _, _))) if *t <= now => {
                let Reverse((_, slot, gen)) = self.heap.pop()?;
                Some((slot as usize, gen))
            }
            _ => None,
        }
    }

    /// Drop every timer.
    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_exact_and_spread() {
        let p = Pacer {
            start_ns: 1000,
            rate: 3,
            connections: 2,
        };
        // Overall requests at 0, 1/3, 2/3, 1 s ...: conn 0 takes 0, 2, 4...
        assert_eq!(p.intended(0, 0), 1000);
        assert_eq!(p.intended(1, 0), 1000 + 333_333_333);
        assert_eq!(p.intended(0, 1), 1000 + 666_666_666);
        assert_eq!(p.intended(1, 1), 1000 + 1_000_000_000);
        // No drift after many periods.
        assert_eq!(p.intended(0, 3_000_000), 1000 + 2_000_000 * 1_000_000_000);
    }

    #[test]
    fn exactly_rate_times_duration_fall_inside_the_run() {
        let (rate, conns) = (2000u64, 7u64);
        let p = Pacer {
            start_ns: 0,
            rate,
            connections: conns,
        };
        let end = 3_000_000_000;
        let total: u64 = (0..conns)
            .map(|c| (0..).take_while(|&k| p.intended(c, k) < end).count() as u64)
            .sum();
        assert_eq!(total, 6000);
    }

    #[test]
    fn timers_pop_in_order() {
        let mut t = Timers::with_capacity(4);
        t.push(30, 1, 0);
        t.push(10, 2, 5);
        t.push(20, 3, 0);
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.pop_due(15), Some((2, 5)));
        assert_eq!(t.pop_due(15), None);
        assert_eq!(t.pop_due(40), Some((3, 0)));
        assert_eq!(t.pop_due(40), Some((1, 0)));
        assert_eq!(t.next_due(), None);
    }
}
