//! `harness bench`: sweep connection counts over every variant and nginx
//! (DESIGN §6).
//!
//! - [`cli`]: the options and the plan they resolve to (defaults, `--quick`,
//!   the CPU split);
//! - [`sweep`]: the loop over servers × workloads × connection counts ×
//!   trials, one [`BenchRow`] per run.
//!
//! Starting and measuring servers is [`crate::rig`]'s; the rows are
//! [`crate::schema`]'s; the report files are written by [`crate::report`]
//! (called by the binary, so the bench never depends on the report).

pub mod cli;
pub mod sweep;

use crate::format::{latency, thousands};
use crate::schema::medians::summarize;
use crate::schema::BenchRow;

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
            thousands(p.req_per_s),
            latency(p.p50_us),
            latency(p.p99_us),
            p.cpu_us_per_req,
            p.errors,
        ));
    }
    out
}
