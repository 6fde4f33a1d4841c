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
    pub connections: u32,
    /// 1-based trial number at this point.
    pub trial: u32,
    /// `loadgen` or `wrk`.
    pub client: String,
    /// Server threads (nginx: worker processes).
    pub server_threads: u32,
    /// CPU lists, e.g. `0` and `1`.
    pub server_cpus: String,
    pub client_cpus: String,
    /// Measured length of the load, seconds.
    pub duration_s: f64,
    /// Completed responses (any status).
    pub requests: u64,
    pub req_per_s: f64,
    /// Response latency percentiles and maximum, microseconds (corrected
    /// for coordinated omission when the load was rate-limited).
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub max_us: f64,
    pub errors_connect: u64,
    pub errors_read: u64,
    pub errors_write: u64,
    pub errors_timeout: u64,
    /// Responses outside 200-399.
    pub errors_status: u64,
    /// The server's CPU time during the load (threads and children included).
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// (user + system) / requests, microseconds: the figure that holds on a noisy machine.
    pub cpu_us_per_req: f64,
    pub user_us_per_req: f64,
    pub system_us_per_req: f64,
    pub ctx_switches_voluntary: u64,
    pub ctx_switches_involuntary: u64,
    /// Peak resident set size of the server's processes, KiB.
    pub peak_rss_kib: u64,
    pub cpu_model: String,
    pub cores: u32,
    pub kernel: String,
    pub git_revision: String,
}

/// Medians over the trials of one point (`results/summary.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub variant: String,
    pub workload: String,
    pub connections: u32,
    pub client: String,
    pub trials: u32,
    pub req_per_s: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub max_us: f64,
    /// Sum of all error kinds, median over trials.
    pub errors: u64,
    pub cpu_us_per_req: f64,
    pub user_us_per_req: f64,
    pub system_us_per_req: f64,
    pub ctx_switches_voluntary: u64,
    pub ctx_switches_involuntary: u64,
    pub peak_rss_kib: u64,
    pub cpu_model: String,
    pub cores: u32,
    pub kernel: String,
    pub git_revision: String,
}
