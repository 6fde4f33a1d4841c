//! `harness bench`: sweep connection counts over every variant and nginx
//! (DESIGN §6).
//!
//! - [`cli`]: the options and the plan they resolve to (defaults, `--quick`,
//!   the CPU split);
//! - [`sweep`]: the loop over servers × workloads × connection counts ×
//!   trials, one [`schema::BenchRow`] per run;
//! - [`launch`]: how each server is started (shared with `harness profile`);
//! - [`server`]: a server under test as a pinned child process;
//! - [`nginx`]: the reference server's config, rendered into a temp prefix;
//! - [`client`]: loadgen or wrk, pinned, and what they measured;
//! - [`workload`]: the requests and the shared docroot;
//! - [`process`]: pinning, process groups, the Ctrl-C flag.
//!
//! The report files themselves are written by [`crate::report`].

pub mod cli;
pub mod client;
pub mod launch;
pub mod nginx;
pub mod process;
pub mod schema;
pub mod server;
pub mod sweep;
pub mod workload;

use crate::report::summarize::summarize;
use schema::BenchRow;

/// One line per point: medians over its trials (the same medians as
/// `summary.csv`), as a fixed-width table printed at the end of a sweep.
pub fn summary_table(rows: &[BenchRow]) -> String {
    let mut out = format!(
        "{:<14} {:<10} {:>6} {:>12} {:>10} {:>10} {:>12} {:>8}\n",
        "server", "workload", "conns", "req/s", "p50", "p99", "cpu µs/req", "errors"
    );
    for p in summarize(rows) {
        out.push_str(&format!(
            "{:<14} {:<10} {:>6} {:>12} {:>10} {:>10} {:>12.2} {:>8}\n",
            p.variant,
            p.workload,
            p.connections,
            sweep::thousands(p.req_per_s),
            sweep::latency(p.p50_us),
            sweep::latency(p.p99_us),
            p.cpu_us_per_req,
            p.errors,
        ));
    }
    out
}
