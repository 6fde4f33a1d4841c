//! `harness bench` options, and the plan they resolve to (defaults, `--quick`,
//! the CPU split, validation), kept apart from clap's parsing so the
//! resolution is unit-testable.

use std::path::PathBuf;
use std::time::Duration;

use servers::config::parse_duration;

use crate::catalog::{self, NGINX};
use crate::rig::client::ClientKind;
use crate::rig::cpus::{CpuArgs, Placement};
use crate::rig::process::allowed_cpus;
use crate::rig::workload::Workload;

/// Connection counts of the full sweep: from light load past the knee of the small machines.
pub const DEFAULT_CONNS: [u32; 6] = [50, 100, 200, 400, 800, 1200];
/// Trials per point of the full sweep: enough for a median.
pub const DEFAULT_TRIALS: u32 = 3;
/// Length of a measured run of the full sweep.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);
/// Warm-up after each server start of the full sweep.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
/// `--quick`'s connection counts: one light, one heavy.
pub const QUICK_CONNS: [u32; 2] = [50, 400];
/// `--quick`'s trials per point.
pub const QUICK_TRIALS: u32 = 1;
/// `--quick`'s run length.
pub const QUICK_DURATION: Duration = Duration::from_millis(1500);
/// `--quick`'s warm-up.
pub const QUICK_WARMUP: Duration = Duration::from_millis(500);

/// Start-up, stop and client start/finish per run, seconds: what the
/// time estimate adds to the load durations.
const SERVER_OVERHEAD_S: f64 = 0.5;
const RUN_OVERHEAD_S: f64 = 0.15;

/// The text after the options in `--help`: what a sweep does, with the
/// servers, their flags and the time estimate taken from the catalog.
fn after_help() -> String {
    let variants = servers::variants::VARIANTS;
    let names = |keep: &dyn Fn(&servers::variants::Variant) -> bool| -> String {
        let v: Vec<&str> = variants
            .iter()
            .filter(|v| keep(v))
            .map(|v| v.name)
            .collect();
        v.join(", ")
    };
    let uncapped = names(&|v| v.keep_alive == servers::variants::KeepAlive::Unbounded);
    let threaded = names(&|v| v.takes_threads());
    let per_server = 2.0 + DEFAULT_CONNS.len() as f64 * (0.5 + 3.0 * 5.0);
    let minutes = per_server * (variants.len() + 1) as f64 / 60.0;
    format!(
        "\
For each server ({servers}: the variants in catalog order, then nginx) and each workload:
start it pinned to the server CPUs (`--port 0 --root DOCROOT --cpus LIST`, `--threads N` for
{threaded}; `--keepalive-requests {cap}` for {uncapped}, whose connections cost memory rather
than a thread, while the others keep their model's own policy; nginx from
servers/nginx/nginx.conf.template in a temp prefix with worker_processes N), wait for
GET /health, warm up for --warmup, then for each connection count warm up for a quarter
of --warmup and run --trials runs of the client pinned to the client CPUs
(`loadgen -t <client CPUs> -c C -d D --json FILE`, or wrk with --client wrk). Each run
records req/s, p50/p90/p99/p99.9/max latency, errors by kind, and the server's CPU time
(user/system, threads and children included, from /proc), context switches and peak RSS;
CPU µs per request = CPU time / completed requests.

Time: the default sweep ({n} variants + nginx, {conns} connection counts, 3 trials of 5 s,
plaintext) takes about {minutes:.1} minutes (per server: 2 s warm-up + {conns} × (0.5 s + 3 × 5 s));
--quick (1 trial of 1.5 s at 50 and 400 connections) about 30 s. Each extra workload
multiplies the time. The plan and its estimate are printed before the sweep starts.

Files in --out: bench.csv (one row per run), summary.csv (medians), PNG plots and
summary.md, each recording the machine, the git revision, the pinning and the settings.
Progress goes to stderr, one line per run. A server that fails to start or dies is
reported with the tail of its stderr and the sweep goes on; the exit status is 1 if any
run failed (the files still hold what succeeded), 130 after Ctrl-C (which stops every
server started and writes what was measured).

Examples:
  harness bench                                   # the full default sweep into results/
  harness bench --quick --out /tmp/smoke          # smoke check
  harness bench --variants {last},nginx --conns 100,1000 --workload json --workload static-1m
  harness bench --client wrk --no-nginx           # the same sweep driven by wrk",
        servers = catalog::choices(),
        cap = catalog::NO_KEEPALIVE_CAP,
        n = variants.len(),
        conns = DEFAULT_CONNS.len(),
        last = variants.last().map_or(NGINX, |v| v.name),
    )
}

/// `--variants`' help, from the catalog.
fn variants_help() -> String {
    format!(
        "Servers to measure, in order: any of {} [default: every variant in catalog order, then nginx]",
        catalog::choices()
    )
}

/// Sweep connection counts over the server variants and nginx.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(after_help = after_help())]
pub struct BenchArgs {
    #[arg(long, value_name = "LIST", value_delimiter = ',', help = variants_help())]
    /// Servers to measure (the help text is built from the catalog).
    pub variants: Option<Vec<String>>,
    /// Connection counts [default: 50,100,200,400,800,1200; --quick: 50,400]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub conns: Option<Vec<u32>>,
    /// Runs per point [default: 3; --quick: 1]
    #[arg(long, value_name = "N")]
    pub trials: Option<u32>,
    /// Length of each measured run, e.g. 5s, 1500ms [default: 5s; --quick: 1.5s]
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up after each server start; each connection count then gets a
    /// quarter of it [default: 2s; --quick: 500ms]
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Workload (repeatable or comma-separated): plaintext, json, static-1k,
    /// static-1k-cached (the same file with the variants' --file-cache 64m and
    /// nginx's open_file_cache on), static-1m (sendfile), pipelined
    /// (plaintext, 16 deep), plaintext-close (Connection: close, a new
    /// connection per request) [default: plaintext]
    #[arg(long = "workload", value_name = "W", value_enum, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Load generator: the project's loadgen, or wrk (its output parsed)
    #[arg(long, value_name = "CLIENT", value_enum, default_value = "loadgen")]
    pub client: ClientKind,
    /// Server and client CPUs, threads.
    #[command(flatten)]
    pub cpus: CpuArgs,
    /// Directory for the result files
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// Smoke check: 1 trial of 1.5 s at 50 and 400 connections (flags given
    /// explicitly still win)
    #[arg(long)]
    pub quick: bool,
    /// Leave nginx out
    #[arg(long)]
    pub no_nginx: bool,
    /// Where the server binaries and loadgen are [default: the directory of
    /// this harness binary]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// Everything a sweep needs, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In order; `nginx` among them when included.
    pub servers: Vec<String>,
    /// Connection counts, in the order they are measured.
    pub conns: Vec<u32>,
    /// Runs per point: medians need several.
    pub trials: u32,
    /// Length of each measured run.
    pub duration: Duration,
    /// Warm-up after each server start.
    pub warmup: Duration,
    /// Warm-up before each connection count.
    pub point_warmup: Duration,
    /// Workloads, each a separate group of runs per server.
    pub workloads: Vec<Workload>,
    /// Which load generator drives the runs.
    pub client: ClientKind,
    /// Where servers and clients run, and the thread override.
    pub placement: Placement,
    /// Where the report files go.
    pub out: PathBuf,
    /// Where the variants' binaries and loadgen are.
    pub bin_dir: PathBuf,
    /// `--quick`: recorded in the settings, so a smoke run is never mistaken for a sweep.
    pub quick: bool,
    /// Things worth saying before starting (e.g. overlapping CPUs).
    pub warnings: Vec<String>,
}

impl BenchArgs {
    /// Resolve defaults against this process's CPUs.
    pub fn plan(&self, default_bin_dir: PathBuf) -> Result<Plan, String> {
        self.plan_on(&allowed_cpus(), default_bin_dir)
    }

    /// Resolve defaults for a process allowed on `cpus`.
    pub fn plan_on(&self, cpus: &[usize], default_bin_dir: PathBuf) -> Result<Plan, String> {
        let mut warnings = Vec::new();
        let q = self.quick;

        let mut servers: Vec<String> = match &self.variants {
            Some(v) => {
                let mut out: Vec<String> = Vec::new();
                for name in v.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                    if !catalog::is_known(name) {
                        return Err(format!(
                            "unknown variant {name:?} in --variants: pick from {}",
                            catalog::choices()
                        ));
                    }
                    if !out.iter().any(|o| o == name) {
                        out.push(name.to_string());
                    }
                }
                out
            }
            None => catalog::all().into_iter().map(String::from).collect(),
        };
        if self.no_nginx {
            servers.retain(|s| s != NGINX);
        }
        if servers.is_empty() {
            return Err(
                "no server to measure: --variants is empty (or only nginx with --no-nginx)".into(),
            );
        }

        let conns = match &self.conns {
            Some(c) => c.clone(),
            None if q => QUICK_CONNS.to_vec(),
            None => DEFAULT_CONNS.to_vec(),
        };
        if conns.is_empty() || conns.contains(&0) {
            return Err("--conns needs connection counts of at least 1, e.g. 50,400".into());
        }
        let trials = self
            .trials
            .unwrap_or(if q { QUICK_TRIALS } else { DEFAULT_TRIALS });
        if trials == 0 {
            return Err("--trials must be at least 1".into());
        }
        let duration = self
            .duration
            .unwrap_or(if q { QUICK_DURATION } else { DEFAULT_DURATION });
        if duration < Duration::from_millis(100) {
            return Err(format!(
                "--duration {duration:?} is too short: use at least 100ms"
            ));
        }
        let warmup = self
            .warmup
            .unwrap_or(if q { QUICK_WARMUP } else { DEFAULT_WARMUP });
        let point_warmup = if warmup.is_zero() {
            Duration::ZERO
        } else {
            (warmup / 4).clamp(Duration::from_millis(200), Duration::from_secs(2))
        };

        let mut workloads = Vec::new();
        for w in &self.workloads {
            if !workloads.contains(w) {
                workloads.push(*w);
            }
        }
        if workloads.is_empty() {
            workloads.push(Workload::Plaintext);
        }

        let placement = self.cpus.resolve(cpus)?;
        warnings.extend(placement.warnings.iter().cloned());

        Ok(Plan {
            servers,
            conns,
            trials,
            duration,
            warmup,
            point_warmup,
            workloads,
            client: self.client,
            placement,
            out: self.out.clone(),
            bin_dir: self.bin_dir.clone().unwrap_or(default_bin_dir),
            quick: q,
            warnings,
        })
    }
}

impl Plan {
    /// Measured runs in the whole sweep (servers × workloads × connection
    /// counts × trials).
    pub fn runs(&self) -> usize {
        self.servers.len() * self.workloads.len() * self.conns.len() * self.trials as usize
    }

    /// Rough wall time of the sweep.
    pub fn estimate(&self) -> Duration {
        // wrk only takes whole seconds.
        let secs = |d: Duration| match self.client {
            ClientKind::Wrk if !d.is_zero() => d.as_secs_f64().ceil().max(1.0),
            _ => d.as_secs_f64(),
        };
        let per_conn = secs(self.point_warmup)
            + RUN_OVERHEAD_S
            + self.trials as f64 * (secs(self.duration) + RUN_OVERHEAD_S);
        let per_server = SERVER_OVERHEAD_S
            + secs(self.warmup)
            + RUN_OVERHEAD_S
            + self.conns.len() as f64 * per_conn;
        Duration::from_secs_f64(per_server * (self.servers.len() * self.workloads.len()) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use servers::sys::affinity::CpuList;

    fn plan(args: &BenchArgs, cpus: &[usize]) -> Result<Plan, String> {
        args.plan_on(cpus, PathBuf::from("/bin-dir"))
    }

    #[test]
    fn defaults_split_the_machine() {
        let p = plan(&BenchArgs::default(), &[0, 1]).unwrap();
        assert_eq!(p.servers, catalog::all());
        assert_eq!(p.servers.last().map(String::as_str), Some(NGINX));
        assert_eq!(p.conns, DEFAULT_CONNS);
        assert_eq!((p.trials, p.duration), (3, Duration::from_secs(5)));
        assert_eq!(p.point_warmup, Duration::from_millis(500));
        assert_eq!(p.workloads, [Workload::Plaintext]);
        assert_eq!(
            (
                p.placement.server_cpus.clone(),
                p.placement.client_cpus.clone()
            ),
            (vec![0], vec![1])
        );
        assert_eq!(p.placement.server_threads("nginx"), 1);
        let servers = catalog::all().len();
        assert_eq!(p.runs(), servers * DEFAULT_CONNS.len() * 3);
        assert!(p.warnings.is_empty());
        // The full default sweep must fit in 15 minutes (about 100 s a server).
        let est = p.estimate().as_secs();
        assert!(
            (80 * servers as u64..=900).contains(&est),
            "estimate {est}s for {servers} servers"
        );

        let p = plan(&BenchArgs::default(), &[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!(p.placement.server_cpus, [0, 1, 2, 3]);
        assert_eq!(p.placement.client_cpus, [4, 5, 6, 7]);
        assert_eq!(p.placement.server_threads("epoll"), 1);
        assert_eq!(p.placement.server_threads("nginx"), 4);
    }

    #[test]
    fn quick_is_small_and_explicit_flags_win() {
        let args = BenchArgs {
            quick: true,
            ..BenchArgs::default()
        };
        let p = plan(&args, &[0, 1]).unwrap();
        assert_eq!((p.trials, p.conns.clone()), (1, vec![50, 400]));
        assert!(p.estimate() < Duration::from_secs(60), "{:?}", p.estimate());
        let args = BenchArgs {
            quick: true,
            trials: Some(2),
            conns: Some(vec![10]),
            ..BenchArgs::default()
        };
        let p = plan(&args, &[0, 1]).unwrap();
        assert_eq!((p.trials, p.conns), (2, vec![10]));
    }

    #[test]
    fn variants_are_checked_and_nginx_can_be_dropped() {
        let args = BenchArgs {
            variants: Some(vec!["epoll".into(), "nginx".into(), "epoll".into()]),
            no_nginx: true,
            ..BenchArgs::default()
        };
        assert_eq!(plan(&args, &[0, 1]).unwrap().servers, ["epoll"]);
        let args = BenchArgs {
            variants: Some(vec!["epol".into()]),
            ..BenchArgs::default()
        };
        assert!(plan(&args, &[0, 1])
            .unwrap_err()
            .contains("unknown variant \"epol\""));
        let args = BenchArgs {
            variants: Some(vec!["nginx".into()]),
            no_nginx: true,
            ..BenchArgs::default()
        };
        assert!(plan(&args, &[0, 1]).is_err());
    }

    #[test]
    fn cpu_choices_go_through_the_shared_flags() {
        let args = BenchArgs {
            cpus: CpuArgs {
                server_cpus: Some(CpuList(vec![1])),
                ..CpuArgs::default()
            },
            ..BenchArgs::default()
        };
        let p = plan(&args, &[0, 1, 2]).unwrap();
        assert_eq!(
            (p.placement.server_cpus, p.placement.client_cpus),
            (vec![1], vec![0, 2])
        );
        let args = BenchArgs {
            cpus: CpuArgs {
                server_cpus: Some(CpuList(vec![7])),
                ..CpuArgs::default()
            },
            ..BenchArgs::default()
        };
        assert!(plan(&args, &[0, 1]).unwrap_err().contains("CPU 7"));
        let args = BenchArgs {
            cpus: CpuArgs {
                server_cpus: Some(CpuList(vec![0])),
                client_cpus: Some(CpuList(vec![0, 1])),
                ..CpuArgs::default()
            },
            ..BenchArgs::default()
        };
        assert!(plan(&args, &[0, 1]).unwrap().warnings[0].contains("overlap"));
        let p = plan(&BenchArgs::default(), &[3]).unwrap();
        assert_eq!(
            (p.placement.server_cpus, p.placement.client_cpus),
            (vec![3], vec![3])
        );
        assert!(p.warnings[0].contains("only one CPU"));
    }

    #[test]
    fn bad_numbers_are_refused() {
        for args in [
            BenchArgs {
                conns: Some(vec![0]),
                ..BenchArgs::default()
            },
            BenchArgs {
                trials: Some(0),
                ..BenchArgs::default()
            },
            BenchArgs {
                cpus: CpuArgs {
                    threads: Some(0),
                    ..CpuArgs::default()
                },
                ..BenchArgs::default()
            },
            BenchArgs {
                duration: Some(Duration::from_millis(10)),
                ..BenchArgs::default()
            },
        ] {
            assert!(plan(&args, &[0, 1]).is_err(), "{args:?}");
        }
    }
}
