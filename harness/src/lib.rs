//! The measuring side: `loadgen` (a wrk-compatible load generator), the
//! bench runner (`bench`, `report`) and perf profiling (`profile`).

pub mod bench;
pub mod loadgen;
pub mod machine;
pub mod procfs;
pub mod profile;
pub mod report;
