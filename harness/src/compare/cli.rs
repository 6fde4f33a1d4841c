//! `harness compare` options and the plan they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use servers::config::parse_duration;

use crate::catalog;
use crate::rig::cpus::{CpuArgs, Placement};
use crate::rig::workload::Workload;

const AFTER_HELP: &str = "\
Starts the variant from --old-bin-dir, the same variant from --new-bin-dir and (unless
--no-nginx) nginx, each pinned to the server CPUs exactly as `harness bench` starts them, warms
each up, then for each connection count runs --pairs pairs of loads alternating the builds
(old then new, then new then old, ...), each followed by one nginx run, with loadgen pinned to
the client CPUs. Alternating cancels the machine's drift; nginx in the same run shows how much
the machine itself moved. Per connection count it prints the median CPU µs per request of old,
new and nginx (the server's CPU time from /proc / completed requests), new/old, and the req/s
medians; --csv FILE writes every run and the medians.

A benchmark, not a test: give it a quiet machine and several pairs. Exit status 1 if a run
failed, 130 after Ctrl-C.

Example (is a refactoring free?):
  git stash && cargo build --release -p servers --bins && cp -r target/release /tmp/old
  git stash pop && cargo build --release -p servers -p harness --bins
  harness compare --old-bin-dir /tmp/old --variant epoll --conns 50,400 --pairs 5 --duration 5s";

/// Two builds of one variant side by side, nginx as the yardstick.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct CompareArgs {
    /// Directory of the old build's server binaries
    #[arg(long, value_name = "DIR")]
    pub old_bin_dir: PathBuf,
    /// Directory of the new build's server binaries and loadgen [default:
    /// the directory of this harness binary]
    #[arg(long, value_name = "DIR")]
    pub new_bin_dir: Option<PathBuf>,
    #[arg(long, value_name = "V", help = variant_help())]
    /// The variant compared (the help text is built from the catalog).
    pub variant: String,
    /// Connection counts
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "50,400"
    )]
    pub conns: Vec<u32>,
    /// Old/new pairs per connection count
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub pairs: u32,
    /// Length of each run, e.g. 5s
    #[arg(long, value_name = "D", default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up of each server after it starts
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Workload
    #[arg(long, value_name = "W", value_enum, default_value = "plaintext")]
    pub workload: Workload,
    /// Leave nginx out
    #[arg(long)]
    pub no_nginx: bool,
    /// Also write every run and the medians as CSV to FILE
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Server and client CPUs, threads (the same flags as `harness bench`).
    #[command(flatten)]
    pub cpus: CpuArgs,
}

/// `--variant`'s help, from the catalog.
fn variant_help() -> String {
    format!(
        "The variant whose two builds are compared: {}",
        catalog::variant_list()
    )
}

/// Everything a comparison needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct ComparePlan {
    /// The variant's name.
    pub variant: String,
    /// Where the old and the new binaries are.
    pub old_bin_dir: PathBuf,
    /// The new build's directory, where loadgen is looked up too.
    pub new_bin_dir: PathBuf,
    /// Connection counts, in order.
    pub conns: Vec<u32>,
    /// Old/new pairs per connection count.
    pub pairs: u32,
    /// Length of each run.
    pub duration: Duration,
    /// Warm-up per server.
    pub warmup: Duration,
    /// The request.
    pub workload: Workload,
    /// Whether nginx runs beside them.
    pub nginx: bool,
    /// Where the CSV goes, if anywhere.
    pub csv: Option<PathBuf>,
    /// Server and client CPUs.
    pub placement: Placement,
}

impl CompareArgs {
    /// Resolve against the CPUs this process may use; `own_dir` is where
    /// the harness binary lives. Err is the message for the user.
    pub fn plan(&self, cpus: &[usize], own_dir: PathBuf) -> Result<ComparePlan, String> {
        if catalog::variant(&self.variant).is_none() {
            return Err(format!(
                "unknown variant {:?} in --variant: pick from {}",
                self.variant,
                catalog::variant_list()
            ));
        }
        if self.conns.is_empty() || self.conns.contains(&0) {
            return Err("--conns needs connection counts of at least 1, e.g. 50,400".into());
        }
        if self.pairs == 0 {
            return Err("--pairs must be at least 1".into());
        }
        if self.duration < Duration::from_millis(100) {
            return Err(format!(
                "--duration {:?} is too short: use at least 100ms",
                self.duration
            ));
        }
        Ok(ComparePlan {
            variant: self.variant.clone(),
            old_bin_dir: self.old_bin_dir.clone(),
            new_bin_dir: self.new_bin_dir.clone().unwrap_or(own_dir),
            conns: self.conns.clone(),
            pairs: self.pairs,
            duration: self.duration,
            warmup: self.warmup,
            workload: self.workload,
            nginx: !self.no_nginx,
            csv: self.csv.clone(),
            placement: self.cpus.resolve(cpus)?,
        })
    }
}
