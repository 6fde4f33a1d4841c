//! `harness bench` options, and the plan they resolve to (defaults, `--quick`,
//! the CPU split, validation), kept apart from clap's parsing so the
//! resolution is unit-testable.

use std::path::PathBuf;
use std::time::Duration;

use servers::config::parse_duration;
use servers::sys::affinity::CpuList;

use super::client::ClientKind;
use super::process::{allowed_cpus, format_cpus};
use super::workload::Workload;

/// The project's variants, in architecture order.
pub const VARIANTS: [&str; 4] = ["blocking", "threadpool", "epoll", "epoll-threads"];
/// The reference server's name in `--variants` and in the results.
pub const NGINX: &str = "nginx";

pub const DEFAULT_CONNS: [u32; 6] = [50, 100, 200, 400, 800, 1200];
pub const DEFAULT_TRIALS: u32 = 3;
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
pub const QUICK_CONNS: [u32; 2] = [50, 400];
pub const QUICK_TRIALS: u32 = 1;
pub const QUICK_DURATION: Duration = Duration::from_millis(1500);
pub const QUICK_WARMUP: Duration = Duration::from_millis(500);

/// Start-up, stop and client start/finish per run, seconds: what the
/// time estimate adds to the load durations.
const SERVER_OVERHEAD_S: f64 = 0.5;
const RUN_OVERHEAD_S: f64 = 0.15;

const AFTER_HELP: &str = "\
For each server (the variants, then nginx) and each workload: start it pinned to the
server CPUs (`--port 0 --root DOCROOT --cpus LIST`, `--threads N` for the multi-threaded
variants, `--keepalive-requests 0` except for threadpool, whose request cap is part of its
model, and blocking, which serves one request per connection; nginx from
servers/nginx/nginx.conf.template in a temp prefix with worker_processes N), wait for
GET /health, warm up for --warmup, then for each connection count warm up for a quarter
of --warmup and run --trials runs of the client pinned to the client CPUs
(`loadgen -t <client CPUs> -c C -d D --json FILE`, or wrk with --client wrk). Each run
records req/s, p50/p90/p99/p99.9/max latency, errors by kind, and the server's CPU time
(user/system, threads and children included, from /proc), context switches and peak RSS;
CPU µs per request = CPU time / completed requests.

Time: the default sweep (4 variants + nginx, 6 connection counts, 3 trials of 5 s,
plaintext) takes about 8.5 minutes (per server: 2 s warm-up + 6 × (0.5 s + 3 × 5 s));
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
  harness bench --variants epoll,nginx --conns 100,1000 --workload json --workload static-1m
  harness bench --client wrk --no-nginx           # the same sweep driven by wrk";

/// Sweep connection counts over the server variants and nginx.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(after_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Servers to measure, in order: any of blocking, threadpool, epoll,
    /// epoll-threads, nginx [default: all four variants, then nginx]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
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
    /// static-1m (sendfile), pipelined (plaintext, 16 deep) [default: plaintext]
    #[arg(long = "workload", value_name = "W", value_enum, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Load generator: the project's loadgen, or wrk (its output parsed)
    #[arg(long, value_name = "CLIENT", value_enum, default_value = "loadgen")]
    pub client: ClientKind,
    /// CPUs for the servers, e.g. 0 or 0-3 [default: the first half of this process's CPUs]
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<CpuList>,
    /// CPUs for the load generator [default: the CPUs the servers do not get]
    #[arg(long, value_name = "LIST")]
    pub client_cpus: Option<CpuList>,
    /// Threads of the multi-threaded variants and nginx worker_processes
    /// [default: the number of server CPUs; threadpool: 4 workers per server CPU]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
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
    pub conns: Vec<u32>,
    pub trials: u32,
    pub duration: Duration,
    /// Warm-up after each server start.
    pub warmup: Duration,
    /// Warm-up before each connection count.
    pub point_warmup: Duration,
    pub workloads: Vec<Workload>,
    pub client: ClientKind,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    /// Threads of the multi-threaded variants, and nginx's workers.
    pub threads: usize,
    /// The threadpool's workers: `--threads` when given, else its own
    /// default of 4 per server CPU. Its workers block on one connection
    /// each, so one per CPU would measure a pool of one, not the model.
    pub threadpool_workers: usize,
    pub out: PathBuf,
    pub bin_dir: PathBuf,
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
                    if !VARIANTS.contains(&name) && name != NGINX {
                        return Err(format!(
                            "unknown variant {name:?} in --variants: pick from {}, {NGINX}",
                            VARIANTS.join(", ")
                        ));
                    }
                    if !out.iter().any(|o| o == name) {
                        out.push(name.to_string());
                    }
                }
                out
            }
            None => VARIANTS
                .iter()
                .chain([&NGINX])
                .map(|s| s.to_string())
                .collect(),
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

        let check = |list: &[usize], flag: &str| -> Result<(), String> {
            match list.iter().find(|c| !cpus.contains(c)) {
                Some(c) => Err(format!(
                    "{flag}: CPU {c} is not available to this process (it may use {})",
                    format_cpus(cpus)
                )),
                None => Ok(()),
            }
        };
        let rest = |taken: &[usize]| -> Vec<usize> {
            cpus.iter()
                .copied()
                .filter(|c| !taken.contains(c))
                .collect()
        };
        let (server_cpus, client_cpus) = match (&self.server_cpus, &self.client_cpus) {
            (Some(s), Some(c)) => (s.0.clone(), c.0.clone()),
            (Some(s), None) => (s.0.clone(), rest(&s.0)),
            (None, Some(c)) => (rest(&c.0), c.0.clone()),
            (None, None) if cpus.len() >= 2 => {
                let half = cpus.len() / 2;
                (cpus[..half].to_vec(), cpus[half..].to_vec())
            }
            (None, None) => {
                warnings.push(format!(
                    "only one CPU ({}): server and client share it, so they compete and the numbers mean little",
                    format_cpus(cpus)
                ));
                (cpus.to_vec(), cpus.to_vec())
            }
        };
        if server_cpus.is_empty() {
            return Err("no CPU left for the servers: give --server-cpus".into());
        }
        if client_cpus.is_empty() {
            return Err("no CPU left for the client: give --client-cpus".into());
        }
        check(&server_cpus, "--server-cpus")?;
        check(&client_cpus, "--client-cpus")?;
        if cpus.len() >= 2 && server_cpus.iter().any(|c| client_cpus.contains(c)) {
            warnings.push(format!(
                "server CPUs {} and client CPUs {} overlap: server and client compete",
                format_cpus(&server_cpus),
                format_cpus(&client_cpus)
            ));
        }
        let threads = self.threads.unwrap_or(server_cpus.len());
        if threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        let threadpool_workers = self.threads.unwrap_or(4 * server_cpus.len());

        Ok(Plan {
            servers,
            conns,
            trials,
            duration,
            warmup,
            point_warmup,
            workloads,
            client: self.client,
            server_cpus,
            client_cpus,
            threads,
            threadpool_workers,
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

    /// Whether a variant name runs more than one thread (and so takes
    /// `--threads`): blocking and epoll are single-threaded by design.
    pub fn is_multithreaded(variant: &str) -> bool {
        !matches!(variant, "blocking" | "epoll")
    }

    /// Server threads (nginx: worker processes) a server runs with.
    pub fn server_threads(&self, server: &str) -> usize {
        match server {
            "threadpool" => self.threadpool_workers,
            s if Plan::is_multithreaded(s) => self.threads,
            _ => 1,
        }
    }
}

/// `5s`, `1.5s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &BenchArgs, cpus: &[usize]) -> Result<Plan, String> {
        args.plan_on(cpus, PathBuf::from("/bin-dir"))
    }

    #[test]
    fn defaults_split_the_machine() {
        let p = plan(&BenchArgs::default(), &[0, 1]).unwrap();
        assert_eq!(
            p.servers,
            ["blocking", "threadpool", "epoll", "epoll-threads", "nginx"]
        );
        assert_eq!(p.conns, DEFAULT_CONNS);
        assert_eq!((p.trials, p.duration), (3, Duration::from_secs(5)));
        assert_eq!(p.point_warmup, Duration::from_millis(500));
        assert_eq!(p.workloads, [Workload::Plaintext]);
        assert_eq!(
            (p.server_cpus.clone(), p.client_cpus.clone()),
            (vec![0], vec![1])
        );
        assert_eq!(p.threads, 1);
        assert_eq!(p.runs(), 90);
        assert!(p.warnings.is_empty());
        // The full default sweep must fit in 15 minutes.
        let est = p.estimate().as_secs();
        assert!((420..=600).contains(&est), "estimate {est}s");

        let p = plan(&BenchArgs::default(), &[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!(p.server_cpus, [0, 1, 2, 3]);
        assert_eq!(p.client_cpus, [4, 5, 6, 7]);
        assert_eq!(p.threads, 4);
        assert_eq!(p.server_threads("epoll"), 1);
        assert_eq!(p.server_threads("nginx"), 4);
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
    fn cpu_choices() {
        let args = BenchArgs {
            server_cpus: Some(CpuList(vec![1])),
            ..BenchArgs::default()
        };
        let p = plan(&args, &[0, 1, 2]).unwrap();
        assert_eq!((p.server_cpus, p.client_cpus), (vec![1], vec![0, 2]));
        let args = BenchArgs {
            server_cpus: Some(CpuList(vec![7])),
            ..BenchArgs::default()
        };
        assert!(plan(&args, &[0, 1]).unwrap_err().contains("CPU 7"));
        let args = BenchArgs {
            server_cpus: Some(CpuList(vec![0])),
            client_cpus: Some(CpuList(vec![0, 1])),
            ..BenchArgs::default()
        };
        assert!(plan(&args, &[0, 1]).unwrap().warnings[0].contains("overlap"));
        let p = plan(&BenchArgs::default(), &[3]).unwrap();
        assert_eq!((p.server_cpus, p.client_cpus), (vec![3], vec![3]));
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
                threads: Some(0),
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

    #[test]
    fn durations_print_as_typed() {
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }
}
