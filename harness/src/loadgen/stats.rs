//! What one thread counts, and the merge of all threads into the run's
//! totals. Counters are plain integers owned by their thread: nothing is
//! shared or atomic on the per-request path.

use hdrhistogram::Histogram;

/// Status codes are three digits; one counter per possible code avoids a
/// map lookup per non-2xx/3xx response.
const CODES: usize = 1000;

/// Counts of one thread (and, after [`Stats::merge`], of the whole run).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency in µs: from the intended send time with -R, else from the send.
    pub latency: Histogram<u64>,
    /// Latency from the actual send; only recorded with -R (otherwise it
    /// equals `latency` and is filled in by [`Stats::finish`]).
    pub uncorrected: Histogram<u64>,
    /// Per-thread requests/s, one sample per sampling window (wrk's Req/Sec).
    pub rps_samples: Vec<f64>,
    /// Completed responses.
    pub completed: u64,
    /// Pipelined batches completed.
    pub batches: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Failed connects.
    pub connect_errors: u64,
    /// Failed reads.
    pub read_errors: u64,
    /// Failed writes.
    pub write_errors: u64,
    /// Requests unanswered within the timeout.
    pub timeouts: u64,
    /// Responses outside 200-399.
    pub status_errors: u64,
    /// Responses by status code.
    pub by_code: Box<[u64; CODES]>,
    /// Idle keep-alive connections the server closed: not failures.
    pub idle_closes: u64,
    /// Connections reopened.
    pub reconnects: u64,
    /// Requests sent but unanswered when the run ended.
    pub in_flight_at_end: u64,
}

impl Stats {
    /// Empty counters with histograms up to `max_us`.
    pub fn new(max_us: u64) -> Stats {
        Stats {
            latency: super::hist::new(max_us),
            uncorrected: super::hist::new(max_us),
            rps_samples: Vec::new(),
            completed: 0,
            batches: 0,
            bytes_read: 0,
            bytes_written: 0,
            connect_errors: 0,
            read_errors: 0,
            write_errors: 0,
            timeouts: 0,
            status_errors: 0,
            by_code: Box::new([0; CODES]),
            idle_closes: 0,
            reconnects: 0,
            in_flight_at_end: 0,
        }
    }

    /// Count a response's status; only codes outside 200-399 are errors.
    #[inline]
    pub fn status(&mut self, code: u16) {
        if !(200..400).contains(&code) {
            self.status_errors += 1;
            self.by_code[usize::from(code) % CODES] += 1;
        }
    }

    /// Add another thread's counts into these.
    pub fn merge(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        self.uncorrected
            .add(&other.uncorrected)
            .expect("histograms share bounds");
        self.rps_samples.extend_from_slice(&other.rps_samples);
        self.completed += other.completed;
        self.batches += other.batches;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.connect_errors += other.connect_errors;
        self.read_errors += other.read_errors;
        self.write_errors += other.write_errors;
        self.timeouts += other.timeouts;
        self.status_errors += other.status_errors;
        for (a, b) in self.by_code.iter_mut().zip(other.by_code.iter()) {
            *a += b;
        }
        self.idle_closes += other.idle_closes;
        self.reconnects += other.reconnects;
        self.in_flight_at_end += other.in_flight_at_end;
    }

    /// Without -R only one histogram is recorded on the hot path; both
    /// views are the same distribution.
    pub fn finish(&mut self, paced: bool) {
        if !paced {
            self.uncorrected = self.latency.clone();
        }
    }

    /// Non-2xx/3xx counts by code, ascending.
    pub fn status_codes(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.by_code
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(c, &n)| (c as u16, n))
    }

    /// Socket errors as wrk counts them (connect, read, write, timeout).
    pub fn socket_errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }
}

/// Mean, sample standard deviation, max and the percentage within one
/// standard deviation, of plain samples (wrk's Req/Sec line).
pub fn sample_stats(samples: &[f64]) -> (f64, f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let stdev = if samples.len() < 2 {
        0.0
    } else {
        (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    let max = samples.iter().cloned().fold(0.0, f64::max);
    let within = samples
        .iter()
        .filter(|&&x| x >= mean - stdev && x <= mean + stdev)
        .count() as f64
        * 100.0
        / n;
    (mean, stdev, max, within)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new(1_000_000);
        let mut b = Stats::new(1_000_000);
        a.latency.saturating_record(100);
        b.latency.saturating_record(300);
        a.completed = 1;
        b.completed = 2;
        b.status(503);
        b.status(200);
        b.rps_samples.push(5.0);
        a.merge(&b);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.completed, 3);
        assert_eq!(a.status_errors, 1);
        assert_eq!(a.status_codes().collect::<Vec<_>>(), vec![(503, 1)]);
        assert_eq!(a.rps_samples, vec![5.0]);
        a.finish(false);
        assert_eq!(a.uncorrected.len(), 2);
    }

    #[test]
    fn sample_statistics() {
        let (mean, stdev, max, within) = sample_stats(&[1.0, 2.0, 3.0]);
        assert_eq!((mean, stdev, max), (2.0, 1.0, 3.0));
        assert!((within - 100.0).abs() < 1e-9);
        assert_eq!(sample_stats(&[]), (0.0, 0.0, 0.0, 0.0));
    }
}
