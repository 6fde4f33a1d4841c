//! Starting a server pinned and measuring it, once for every subcommand
//! (DESIGN §6): `harness bench`, `harness profile`, `harness compare`,
//! `harness bench-vs-nginx` and `harness clients` all start servers
//! and clients through here, so a number from one is comparable with a
//! number from another.
//!
//! - [`cpus`]: the CPU and thread flags and the placement they resolve to;
//! - [`launch`]: how each server is started (catalog flags, nginx config);
//! - [`measure`]: one run measured on both sides (CPU from /proc, wall time);
//! - [`server`]: a server under test as a pinned child process;
//! - [`served`]: the requests a server has answered, by its own counter;
//! - [`nginx`]: the reference server's config, rendered into a temp prefix;
//! - [`client`]: loadgen or wrk, pinned, and what they measured;
//! - [`oha`]: oha's command line and JSON result (`harness clients` only);
//! - [`workload`]: the requests and the shared docroot;
//! - [`setup`]: the docroot, scratch space and tools a run needs;
//! - [`process`]: pinning, process groups, the Ctrl-C flag, tool lookup.

pub mod client;
pub mod cpus;
pub mod launch;
pub mod measure;
pub mod nginx;
pub mod oha;
pub mod process;
pub mod served;
pub mod server;
pub mod setup;
pub mod workload;
