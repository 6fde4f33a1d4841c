#![warn(missing_docs)]

//! The measuring side: `loadgen` (a wrk-compatible load generator), the
//! bench runner (`bench`, `report`), perf profiling (`profile`) and the
//! side-by-side comparisons (`compare`, `versus`).
//!
//! # Module dependencies
//!
//! The modules form a DAG; an arrow points at what a module may use:
//!
//! ```text
//!   compare  versus   profile   bench        (subcommands: use anything below)
//!      \        \     /    \      |
//!       \        \   /   report   |          (files and charts from the schema)
//!        \        \ /      |      |
//!         '------ rig -----+------'          (start, pin and measure a server)
//!                  |       |
//!   loadgen      schema  procfs  machine     (results, /proc, the machine)
//!      \           |
//!       '------ format  catalog              (numbers; the variant catalog)
//!
//!   merge ----> loadgen                      (several loadgen results as one)
//! ```
//!
//! - At the bottom, [`format`] (every number the harness prints) and
//!   [`catalog`] (the variant list, read from `servers::variants`, plus
//!   nginx) use nothing of the harness; [`machine`] and [`procfs`] neither.
//! - [`schema`] (bench rows, medians, run description, profile buckets) uses
//!   only the catalog, for the report order.
//! - [`loadgen`] is self-contained apart from [`format`]'s wrk units.
//! - [`rig`] starts servers and clients pinned and measures them: the one
//!   implementation every subcommand shares.
//! - [`report`] reads the schema and never a subcommand.
//! - [`bench`], [`profile`] (which also draws through [`report`]),
//!   [`compare`] and [`versus`] sit on top and never use each other, so
//!   none can pull the others into a cycle. `grep -rn "use crate::"
//!   harness/src` shows it.
//! - [`soak`] sits on top too (rig, procfs, format, catalog) and nothing uses it.
//! - [`merge`] sits on top of [`loadgen`] alone (its JSON, histograms and
//!   report) and nothing uses it.
//!
//! The binaries (`src/bin`) are the only place that ties subcommands to
//! report files, and the only place `anyhow` is used.

pub mod bench;
pub mod catalog;
pub mod compare;
pub mod format;
pub mod loadgen;
pub mod machine;
pub mod merge;
pub mod procfs;
pub mod profile;
pub mod report;
pub mod rig;
pub mod schema;
pub mod soak;
pub mod versus;
