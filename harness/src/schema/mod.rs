//! What a measurement produces, shared by whoever writes it (`bench`,
//! `profile`) and whoever reads it (`report`): the bench rows and their
//! medians, the run's description, the profile buckets.
//!
//! Kept apart so that the writers and the report depend on the schema, not
//! on each other.

pub mod bench;
pub mod bucket;
pub mod medians;

use crate::machine::Machine;

pub use bench::{BenchRow, SummaryRow};
pub use bucket::Bucket;

/// What a report says about the run besides its rows.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Where it ran: printed under every chart so a picture never travels
    /// without its machine.
    pub machine: Machine,
    /// Settings as (name, value) pairs, shown in summary.md and under each plot
    /// (e.g. ("duration", "5s"), ("trials", "3"), ("server CPUs", "0"), ("client", "loadgen -t1")).
    pub settings: Vec<(String, String)>,
    /// Connection count of the CPU-per-request chart.
    pub cpu_chart_connections: u32,
}
