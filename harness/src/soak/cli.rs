//! `harness soak` options and the plan they resolve to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use servers::config::parse_duration;

use crate::catalog;
use crate::rig::cpus::{CpuArgs, Placement};

const AFTER_HELP: &str = "\
Starts the variant pinned to the server CPUs (as `harness bench` starts it) with a temp docroot
(1 KiB and 1 MiB files), a temp --data-dir and the repository's CGI scripts (servers/cgi-bin),
then for --duration runs, from the client CPUs, at once:

  well-behaved clients  keep-alive and new-connection GET /plaintext, the 1 KiB and 1 MiB files,
                        uploads (POST /upload, GET and DELETE the returned Location), GET
                        /cgi-bin/time, GET /sleep?ms=50; every request and status is counted
  hostile clients       slow readers of the 1 MiB file (4 KB a second), slow bodies (POST of
                        1 MB at a byte a second), resets (SO_LINGER 0) mid-head and mid-body,
                        200 pipelined GETs written without reading, then a close

Every --report-every it prints one line: the server's RSS, descriptors, threads, child
processes, /stats total_requests and active_connections, well-behaved requests completed.
At the end it stops the load, lets the server settle (up to 15 s) and checks: RSS within
max(16 MiB, 25%) of its level after the warm-up, descriptors within 4 of the idle count, no
child process left (zombie or live) but those it had before the load (a process model's
workers), /stats total_requests at least the well-behaved count,
every well-behaved request answered with the status it should, no upload left in the data dir,
and exit status 0 after SIGTERM. One PASS/FAIL line per check; exit status 1 if any failed,
130 after Ctrl-C.

Example: harness soak --variant epoll --duration 60s --report-every 5s";

/// Options of `harness soak`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct SoakArgs {
    #[arg(long, value_name = "V", help = variant_help())]
    /// The variant soaked (the help text is built from the catalog).
    pub variant: String,
    /// How long the load runs, e.g. 10m, 60s
    #[arg(long, value_name = "D", default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// One report line this often
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration)]
    pub report_every: Duration,
    /// Directory of the server binaries [default: the directory of this
    /// harness binary]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Server and client CPUs, threads (the same flags as `harness bench`).
    #[command(flatten)]
    pub cpus: CpuArgs,
}

/// `--variant`'s help, from the catalog.
fn variant_help() -> String {
    format!("The variant soaked: {}", catalog::variant_list())
}

/// Everything a soak needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct SoakPlan {
    /// The variant's name.
    pub variant: String,
    /// How long the load runs.
    pub duration: Duration,
    /// Time between two report lines.
    pub report_every: Duration,
    /// How long the load runs before the RSS baseline is taken.
    pub warmup: Duration,
    /// Where the variant's binary is.
    pub bin_dir: PathBuf,
    /// The CGI scripts directory served at /cgi-bin/.
    pub cgi_dir: PathBuf,
    /// Server and client CPUs.
    pub placement: Placement,
}

/// The shortest soak that still has a warm-up and a measured stretch.
pub const MIN_DURATION: Duration = Duration::from_secs(2);

impl SoakArgs {
    /// Resolve against the CPUs this process may use; `own_dir` is where
    /// the harness binary lives. Err is the message for the user.
    pub fn plan(&self, cpus: &[usize], own_dir: PathBuf) -> Result<SoakPlan, String> {
        if catalog::variant(&self.variant).is_none() {
            return Err(format!(
                "unknown variant {:?} in --variant: pick from {}",
                self.variant,
                catalog::variant_list()
            ));
        }
        if self.duration < MIN_DURATION {
            return Err(format!(
                "--duration {:?} is too short: use at least {MIN_DURATION:?}",
                self.duration
            ));
        }
        if self.report_every < Duration::from_millis(100) {
            return Err("--report-every must be at least 100ms".into());
        }
        let cgi_dir = cgi_dir().ok_or(
            "servers/cgi-bin not found: run from the repository (the soak's CGI client needs its `time` script)",
        )?;
        Ok(SoakPlan {
            variant: self.variant.clone(),
            duration: self.duration,
            report_every: self.report_every,
            warmup: warmup(self.duration),
            bin_dir: self.bin_dir.clone().unwrap_or(own_dir),
            cgi_dir,
            placement: self.cpus.resolve(cpus)?,
        })
    }
}

/// The warm-up before the RSS baseline: a sixth of the run, between 1 s
/// and 60 s (allocators and caches reach their working size early; a leak
/// keeps growing after).
pub fn warmup(duration: Duration) -> Duration {
    (duration / 6).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// servers/cgi-bin, from the current directory or the source tree.
fn cgi_dir() -> Option<PathBuf> {
    let rel = Path::new("servers/cgi-bin");
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    [rel.to_path_buf(), in_tree]
        .into_iter()
        .find(|p| p.join("time").is_file())
        .and_then(|p| p.canonicalize().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(variant: &str, duration: &str) -> SoakArgs {
        SoakArgs {
            variant: variant.into(),
            duration: parse_duration(duration).unwrap(),
            report_every: Duration::from_secs(10),
            bin_dir: None,
            cpus: CpuArgs::default(),
        }
    }

    #[test]
    fn plans_and_refusals() {
        let p = args("epoll", "10m").plan(&[0, 1], "/x".into()).unwrap();
        assert_eq!(p.warmup, Duration::from_secs(60));
        assert_eq!(p.bin_dir, PathBuf::from("/x"));
        assert!(p.cgi_dir.join("time").is_file());
        let p = args("epoll", "60s").plan(&[0, 1], "/x".into()).unwrap();
        assert_eq!(p.warmup, Duration::from_secs(10));
        assert_eq!(warmup(Duration::from_secs(3)), Duration::from_secs(1));
        let e = args("nginx", "1m").plan(&[0, 1], "/x".into()).unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
        let e = args("epoll", "1s").plan(&[0, 1], "/x".into()).unwrap_err();
        assert!(e.contains("too short"), "{e}");
    }
}
