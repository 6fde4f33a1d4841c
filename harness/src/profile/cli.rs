//! `harness profile` options and the plan they resolve to. The servers
//! come from the catalog and the CPU split and thread counts from the same
//! flags as `harness bench` ([`CpuArgs`]), so a profile is of the same
//! server under the same load as a bench point.

use std::path::{Path, PathBuf};
use std::time::Duration;

use servers::config::parse_duration;

use crate::catalog;
use crate::rig::cpus::{CpuArgs, Placement};
use crate::rig::process::allowed_cpus;
use crate::rig::workload::Workload;

/// Connections of the load: past the knee on small machines, below overload.
pub const DEFAULT_CONNS: u32 = 400;
/// Length of the recording.
pub const DEFAULT_DURATION: &str = "10s";
/// Load before the recording starts.
pub const DEFAULT_WARMUP: &str = "2s";
/// Length of the syscall count's load.
pub const DEFAULT_SYSCALL_DURATION: &str = "3s";
/// Length of the off-CPU recording's load.
pub const DEFAULT_OFF_CPU_DURATION: &str = "3s";

/// Where the frame-pointer build of the servers goes, relative to cargo's
/// target directory (see [`frame_pointer_bin_dir`]).
pub const FRAME_POINTER_DIR: &str = "frame-pointers/release";

/// Per server, besides the load: start, perf stat set-up and tear-down,
/// perf script / report and the flame graph (measured here: 4-7 s).
const OVERHEAD_PER_SERVER_S: f64 = 7.0;

const AFTER_HELP: &str = "\
For each server: start it pinned to the server CPUs exactly as `harness bench` does, put it
under a steady load (loadgen pinned to the client CPUs, --conns connections, GET of the
workload's path), wait --warmup, then

  perf record -e cpu-clock -g -a -C <the server CPUs> -- sleep <--duration>

keeping the samples of the server's processes (by pid; a process-per-connection model's by
name). CPU-wide, not per process (-p): per-process events are switched in and out with every
context switch, which made threadpool's requests 53% dearer while recorded; CPU-wide events cost
it nothing measurable. Then
count its syscalls over a second load of --syscall-duration (perf stat -e
raw_syscalls:sys_enter plus one syscalls:sys_enter_NAME per common syscall), record where its
threads wait over a third load of --off-cpu-duration (perf record -e sched:sched_switch -g -a
-C <server CPUs>), stop it, and write into --out/<server>/:

  report.txt       perf report --stdio --no-children (top symbols, self time)
  flamegraph.svg   the stacks collapsed and rendered with inferno (kernel frames in blue)
  buckets.csv      the share of samples per bucket (DESIGN §7 classifier)
  syscalls.txt     syscalls per request and the syscall mix
  offcpu.svg       off-CPU flame graph: where the threads waited, in µs (width), by the
                   syscall they slept in or preemption
  profile.json     all of the above in one file, for the aggregate files
  perf.data        the raw recording (ignored by git)

The figure the reports lead with: the server's CPU time over the recording (its process tree
from /proc; a process-per-connection model: its CPUs' busy time split by its share of their
samples) divided by the requests it completed in that same window (its own counter, /stats or
nginx's stub_status, read just before and after), split by the buckets' shares: CPU µs per
request per bucket.

With --all (every variant in catalog order, then nginx), also --out/buckets.csv,
--results/cost-per-request.png (the headline: µs per request per bucket),
--results/bottleneck-migration.png (the same buckets as shares of 100%), the differential flame
graphs --out/diff/A-vs-B.svg (each server against the next, each event-loop variant against
nginx; CPU time per request, red where B spends more) and the profile section of
--results/summary.md (the bench sections are left as they are). --replot rewrites those from
the profiles already on disk; a pair whose stacks.folded is not there (it is not kept in git)
is listed as not drawn.

Stacks: the variants are looked up in target/frame-pointers/release, the build `just profile`
makes with -C force-frame-pointers=yes, so perf's frame-pointer unwinding (-g) sees whole user
stacks; without it (plain release build) user stacks stop after one frame. nginx is Debian's
stripped binary: its own frames are unnamed.

Time: about --warmup + --duration + --syscall-duration + --off-cpu-duration + 7 s per server (~3.5 min for --all with
the defaults). Progress goes to stderr. A server that cannot start, or dies while profiled, is
reported with its stderr tail and the others go on; the exit status is then 1.

Examples:
  harness profile --variant epoll
  harness profile --all
  harness profile --variant epoll,nginx --conns 50 --duration 5s --out /tmp/prof";

/// perf record sessions, flame graphs and the bucket breakdown.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct ProfileArgs {
    #[arg(long = "variant", value_name = "V", value_delimiter = ',', help = variant_help())]
    /// Servers to profile (the help text is built from the catalog).
    pub variants: Vec<String>,
    /// Every variant in architecture order, then nginx, and the aggregate
    /// files (buckets.csv, bottleneck-migration.png, summary.md section)
    #[arg(long, conflicts_with = "variants")]
    pub all: bool,
    /// Only rewrite the aggregate files from the profiles already in --out
    #[arg(long, conflicts_with_all = ["variants", "all"])]
    pub replot: bool,
    /// Workload: plaintext, json, static-1k, static-1k-cached (file caches on), static-1m, pipelined, plaintext-close
    #[arg(long, value_name = "W", value_enum, default_value = "plaintext")]
    pub workload: Workload,
    /// Connections of the load
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONNS)]
    pub conns: u32,
    /// Length of the perf recording, e.g. 10s
    #[arg(long, value_name = "D", default_value = DEFAULT_DURATION, value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before the recording starts
    #[arg(long, value_name = "D", default_value = DEFAULT_WARMUP, value_parser = parse_duration)]
    pub warmup: Duration,
    /// Length of the load during which syscalls are counted
    #[arg(long, value_name = "D", default_value = DEFAULT_SYSCALL_DURATION, value_parser = parse_duration)]
    pub syscall_duration: Duration,
    /// Length of the load during which off-CPU time is recorded (0s: skip it)
    #[arg(long, value_name = "D", default_value = DEFAULT_OFF_CPU_DURATION, value_parser = parse_duration)]
    pub off_cpu_duration: Duration,
    /// Server and client CPUs, threads (the same flags as `harness bench`).
    #[command(flatten)]
    pub cpus: CpuArgs,
    /// Directory of the per-server profiles (and the combined buckets.csv)
    #[arg(long, value_name = "DIR", default_value = "profiles")]
    pub out: PathBuf,
    /// Directory of bottleneck-migration.png and summary.md
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
    /// Where the server variants are [default: target/frame-pointers/release
    /// when built, else the directory of this harness binary]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// `--variant`'s help, from the catalog.
fn variant_help() -> String {
    format!(
        "Server(s) to profile: {} (repeatable or comma-separated)",
        catalog::choices()
    )
}

/// Everything a profile run needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct ProfilePlan {
    /// The servers, in order.
    pub servers: Vec<String>,
    /// Server and client CPUs, threads: as the bench resolves them.
    pub placement: Placement,
    /// Where the variants' binaries are.
    pub bin_dir: PathBuf,
    /// Load before the recording.
    pub warmup: Duration,
    /// Length of the recording.
    pub record: Duration,
    /// Length of the syscall count's load.
    pub syscall_window: Duration,
    /// Length of the off-CPU recording (zero: none).
    pub off_cpu_window: Duration,
    /// The request.
    pub workload: Workload,
    /// Connections of the load.
    pub connections: u32,
    /// Where the per-server profiles go.
    pub out: PathBuf,
    /// Where the chart and summary.md go.
    pub results: PathBuf,
    /// Write the aggregate files (`--all`).
    pub aggregate: bool,
    /// The load generator (next to the harness binary).
    pub loadgen: PathBuf,
    /// Things worth saying before starting.
    pub warnings: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Request {
    /// Profile these servers.
    Profile(Box<ProfilePlan>),
    /// Only redraw the combined files from the profiles on disk.
    Replot {
        /// Where the per-server profiles are.
        out: PathBuf,
        /// Where the chart and summary.md go.
        results: PathBuf,
    },
}

/// `<target>/frame-pointers/release` for a harness binary in
/// `<target>/<profile>/`.
pub fn frame_pointer_bin_dir(harness_dir: &Path) -> Option<PathBuf> {
    Some(harness_dir.parent()?.join(FRAME_POINTER_DIR))
}

impl ProfileArgs {
    /// Resolve against this process's CPUs; `harness_dir` is where the
    /// harness binary (and loadgen) live.
    pub fn request(&self, harness_dir: &Path) -> Result<Request, String> {
        self.request_on(&allowed_cpus(), harness_dir)
    }

    /// [`ProfileArgs::request`] for a process allowed on `cpus` (unit-testable).
    pub fn request_on(&self, cpus: &[usize], harness_dir: &Path) -> Result<Request, String> {
        if self.replot {
            return Ok(Request::Replot {
                out: self.out.clone(),
                results: self.results.clone(),
            });
        }
        let servers: Vec<String> = if self.all {
            catalog::all().into_iter().map(String::from).collect()
        } else if self.variants.is_empty() {
            return Err(format!(
                "say what to profile: --variant V (one of {}) or --all",
                catalog::choices()
            ));
        } else {
            let mut out: Vec<String> = Vec::new();
            for name in self.variants.iter().map(|s| s.trim()) {
                if !catalog::is_known(name) {
                    return Err(format!(
                        "unknown variant {name:?} in --variant: pick from {}",
                        catalog::choices()
                    ));
                }
                if !out.iter().any(|o| o == name) {
                    out.push(name.to_string());
                }
            }
            out
        };
        let off_cpu = (!self.off_cpu_duration.is_zero())
            .then_some((self.off_cpu_duration, "--off-cpu-duration"));
        for (d, flag) in [
            (self.duration, "--duration"),
            (self.syscall_duration, "--syscall-duration"),
        ]
        .into_iter()
        .chain(off_cpu)
        {
            if d < Duration::from_millis(500) {
                return Err(format!("{flag} {d:?} is too short: use at least 500ms"));
            }
        }
        let mut warnings = Vec::new();
        let bin_dir = match &self.bin_dir {
            Some(d) => d.clone(),
            None => match frame_pointer_bin_dir(harness_dir).filter(|d| d.is_dir()) {
                Some(d) => d,
                None => {
                    warnings.push(format!(
                        "no frame-pointer build of the servers in {}: using {}, whose user \
                         stacks perf cannot unwind past one frame (build it with `just \
                         build-profiling`)",
                        frame_pointer_bin_dir(harness_dir)
                            .unwrap_or_default()
                            .display(),
                        harness_dir.display()
                    ));
                    harness_dir.to_path_buf()
                }
            },
        };
        let placement = self.cpus.resolve(cpus)?;
        warnings.extend(placement.warnings.iter().cloned());
        Ok(Request::Profile(Box::new(ProfilePlan {
            warmup: self.warmup,
            record: self.duration,
            syscall_window: self.syscall_duration,
            off_cpu_window: self.off_cpu_duration,
            workload: self.workload,
            connections: self.conns,
            out: self.out.clone(),
            results: self.results.clone(),
            aggregate: self.all,
            loadgen: harness_dir.join("loadgen"),
            warnings,
            servers,
            placement,
            bin_dir,
        })))
    }
}

impl ProfilePlan {
    /// Rough wall time of the whole run.
    pub fn estimate(&self) -> Duration {
        let per = self.warmup.as_secs_f64()
            + self.record.as_secs_f64()
            + self.syscall_window.as_secs_f64()
            + self.off_cpu_window.as_secs_f64()
            + OVERHEAD_PER_SERVER_S;
        Duration::from_secs_f64(per * self.servers.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProfileArgs,
    }

    fn parse(args: &[&str]) -> ProfileArgs {
        let mut v = vec!["profile"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().args
    }

    fn plan(args: &[&str]) -> Result<ProfilePlan, String> {
        match parse(args).request_on(&[0, 1], Path::new("/t/release"))? {
            Request::Profile(p) => Ok(*p),
            Request::Replot { .. } => Err("replot".into()),
        }
    }

    #[test]
    fn all_is_every_variant_then_nginx_on_split_cpus() {
        let p = plan(&["--all"]).unwrap();
        assert_eq!(p.servers, catalog::all());
        assert_eq!(p.servers.last().map(String::as_str), Some(catalog::NGINX));
        assert_eq!(
            (
                p.placement.server_cpus.clone(),
                p.placement.client_cpus.clone()
            ),
            (vec![0], vec![1])
        );
        assert_eq!(p.connections, 400);
        assert_eq!(p.record, Duration::from_secs(10));
        assert!(p.aggregate);
        assert_eq!(p.loadgen, Path::new("/t/release/loadgen"));
        // No frame-pointer build under /t: the harness's own directory, with a warning.
        assert_eq!(p.bin_dir, Path::new("/t/release"));
        assert!(
            p.warnings.iter().any(|w| w.contains("frame-pointer")),
            "{:?}",
            p.warnings
        );
        let secs = p.estimate().as_secs();
        assert!((60..=240).contains(&secs), "{secs}");
    }

    #[test]
    fn one_variant_and_the_refusals() {
        let p = plan(&["--variant", "epoll", "--conns", "50", "--duration", "2s"]).unwrap();
        assert_eq!(p.servers, ["epoll"]);
        assert!(!p.aggregate);
        assert!(plan(&[]).unwrap_err().contains("--all"));
        assert!(plan(&["--variant", "epol"])
            .unwrap_err()
            .contains("unknown variant"));
        assert!(plan(&["--variant", "epoll", "--duration", "100ms"])
            .unwrap_err()
            .contains("too short"));
        assert!(matches!(
            parse(&["--replot"]).request_on(&[0, 1], Path::new("/t")),
            Ok(Request::Replot { .. })
        ));
    }

    #[test]
    fn frame_pointer_dir_sits_beside_the_profile_dirs() {
        assert_eq!(
            frame_pointer_bin_dir(Path::new("/w/target/release")).unwrap(),
            Path::new("/w/target/frame-pointers/release")
        );
    }
}
