//! The measuring side: `loadgen` (a wrk-compatible load generator) and,
//! later, the bench runner and profiling.

pub mod bench;
pub mod loadgen;
pub mod machine;
pub mod procfs;
pub mod report;
