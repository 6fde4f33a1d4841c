//! The bench result schema: one tidy row per variant × workload ×
//! connections × trial (`results/bench.csv`), and the medians per point
//! (`results/summary.csv`).
//!
//! Every row carries the machine and revision it was measured on, so a row
//! copied into a spreadsheet on its own still says where it came from.

use serde::{Deserialize, Serialize};

/// One measured point (one trial) of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// `blocking`, `threadpool`, `epoll`, `epoll-threads`, ..., or `nginx`.
    pub variant: String,
    /// `plaintext`, `json`, `static-1k`, `static-1m`, `pipelined`.
    pub workload: String,
    /// Open connections of the load.
    pub connections: u32,
    /// 1-based trial number at this point.
    pub trial: u32,
    /// `loadgen` or `wrk`.
    pub client: String,
    /// Server threads (nginx: worker processes).
    pub server_threads: u32,
    /// CPU lists, e.g. `0` and `1`.
    pub server_cpus: String,
    /// The client's CPU list.
    pub client_cpus: String,
    /// Measured length of the load, seconds.
    pub duration_s: f64,
    /// Completed responses (any status).
    pub requests: u64,
    /// Completed responses per second.
    pub req_per_s: f64,
    /// Response latency percentiles and maximum, microseconds (corrected
    /// for coordinated omission when the load was rate-limited).
    pub p50_us: f64,
    /// 90th percentile latency, µs.
    pub p90_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p99_9_us: f64,
    /// Highest latency, µs.
    pub max_us: f64,
    /// Connections that could not be opened.
    pub errors_connect: u64,
    /// Failed reads.
    pub errors_read: u64,
    /// Failed writes.
    pub errors_write: u64,
    /// Requests without an answer in time.
    pub errors_timeout: u64,
    /// Responses outside 200-399.
    pub errors_status: u64,
    /// The server's CPU time during the load (threads and children included).
    pub cpu_user_s: f64,
    /// System CPU time during the load, seconds.
    pub cpu_system_s: f64,
    /// (user + system) / requests, microseconds: the figure that holds on a noisy machine.
    pub cpu_us_per_req: f64,
    /// User CPU µs per request.
    pub user_us_per_req: f64,
    /// System CPU µs per request.
    pub system_us_per_req: f64,
    /// Voluntary context switches over the run (blocking waits).
    pub ctx_switches_voluntary: u64,
    /// Involuntary context switches over the run (preemption).
    pub ctx_switches_involuntary: u64,
    /// Peak resident set size of the server's processes, KiB.
    pub peak_rss_kib: u64,
    /// The machine's CPU model.
    pub cpu_model: String,
    /// CPUs the runner could use.
    pub cores: u32,
    /// Kernel release.
    pub kernel: String,
    /// Git revision of the measured binaries.
    pub git_revision: String,
}

/// Medians over the trials of one point (`results/summary.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// The server.
    pub variant: String,
    /// The workload.
    pub workload: String,
    /// Open connections of the load.
    pub connections: u32,
    /// The load generator.
    pub client: String,
    /// Trials the medians are taken over.
    pub trials: u32,
    /// Median req/s.
    pub req_per_s: f64,
    /// Median p50 latency, µs.
    pub p50_us: f64,
    /// Median p90 latency, µs.
    pub p90_us: f64,
    /// Median p99 latency, µs.
    pub p99_us: f64,
    /// Median p99.9 latency, µs.
    pub p99_9_us: f64,
    /// Median maximum latency, µs.
    pub max_us: f64,
    /// Sum of all error kinds, median over trials.
    pub errors: u64,
    /// Median CPU µs per request (user + system).
    pub cpu_us_per_req: f64,
    /// Median user CPU µs per request.
    pub user_us_per_req: f64,
    /// Median system CPU µs per request.
    pub system_us_per_req: f64,
    /// Median voluntary context switches.
    pub ctx_switches_voluntary: u64,
    /// Median involuntary context switches.
    pub ctx_switches_involuntary: u64,
    /// Median peak RSS, KiB.
    pub peak_rss_kib: u64,
    /// The machine's CPU model.
    pub cpu_model: String,
    /// CPUs the runner could use.
    pub cores: u32,
    /// Kernel release.
    pub kernel: String,
    /// Git revision of the measured binaries.
    pub git_revision: String,
}
