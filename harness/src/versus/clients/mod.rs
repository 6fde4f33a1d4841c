//! `harness clients` (alias `loadgen-vs-wrk`): load generators side by side
//! as clients of one nginx — the project's loadgen, wrk and, when
//! installed, oha — pinned alike, alternating in rounds, plain and
//! pipelined. Per client: req/s, its own CPU per request, and nginx's CPU
//! per request while it ran. The target: at every connection count loadgen
//! gets at least each other client's req/s and spends at most its CPU per
//! request.
//!
//! - [`roster`]: which clients run (`--clients`, or every installed one);
//! - [`report`]: the tables and the CSV.

pub mod report;
pub mod roster;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use servers::config::parse_duration;

use crate::catalog::NGINX;
use crate::format;
use crate::rig::client::{Client, ClientKind};
use crate::rig::cpus::{CpuArgs, Placement};
use crate::rig::launch::{LaunchError, Launcher};
use crate::rig::measure::{self, with_tail, RunError, Sample};
use crate::rig::server::{Server, Stopped};
use crate::rig::setup::{self, Ground};
use crate::rig::workload::PIPELINE_DEPTH;
use crate::rig::{oha, process};

use super::{check_path, load, loadavg, touch_csv, CpuWatch};

const REQ_PATH: &str = "/plaintext";

const AFTER_HELP: &str = "\
nginx is started once, its workers pinned to the server CPUs (1 worker per server CPU,
from servers/nginx/nginx.conf.template), and checked with GET /health. Each client warms up,
then for each mode and connection count C the clients run in rounds, one run each per round
in a fixed order (--clients order; default wrk, oha, loadgen), --runs rounds:
  plain:     wrk -tT -cC -dD URL
             oha --no-tui --output-format json -cC -zD --worker-threads T URL
             loadgen -tT -cC -dD URL
  pipelined: wrk ... -s scripts/wrk-pipeline.lua URL -- 16 /plaintext
             loadgen ... --pipeline 16 URL
             (oha cannot pipeline: it has no pipelined runs, and the report says so)
Pinning, the same for every client: each is a child process pinned to the client CPUs
(sched_setaffinity before exec, so every thread it starts inherits it), T = --client-threads
(default 1). wrk and loadgen take it as -t. oha has no -t: --worker-threads T is the number of
threads its --no-tui mode runs the connections on (each with its own single-threaded tokio
runtime), beside a main runtime of T threads that mostly waits.
Clients: loadgen (always), wrk (on PATH), oha (on PATH or in ~/.cargo/bin). By default every
one installed runs, a missing one is a note saying how to install it; one named in --clients
and missing is an error.
Output: every run in the order they ran, then per mode the medians of each client:
  req/s             responses (any status) per second, from the client's own report
  cpu_us/req        the client's CPU time (user + sys, all threads, as the kernel's rusage of
                    the reaped child gives it) per request
  cli_cpu%          client CPU time / wall time (100 = one CPU saturated)
  nginx_cpu%        nginx's CPU time / wall time (100 = one CPU saturated)
  nginx_us/req      nginx's CPU time per request of the client's run
  lg/x, cpu lg/x    loadgen/client of req/s (>= 1.0 is the target) and of cpu_us/req (<= 1.0)
  errors            connect, read, write and timeout errors plus responses outside 200-399
  result            PASS, FAIL(req/s), FAIL(cpu), FAIL(req/s,cpu) or FAIL(no-data)
Requests still in flight at the end (loadgen's in_flight_at_end, oha's \"aborted due to
deadline\") are neither responses nor errors, as for wrk, which drops its own uncounted; the
runs table shows them.
--csv FILE: mode,conns,client,run,requests,req_per_s,cpu_us_per_req,client_cpu_pct,
nginx_cpu_pct,nginx_us_per_req,errors,status; a row per run, a `median` row per client and a
`loadgen/CLIENT` `ratio` row per other client (the columns of earlier loadgen-vs-wrk files).
Exit status: 0 if every run completed (whatever the results), 1 otherwise.";

/// Load generators side by side against one nginx.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct ClientsArgs {
    /// Clients to compare, in the order they run within a round: any of
    /// wrk, oha, loadgen [default: every one installed; loadgen always]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub clients: Vec<String>,
    /// Threads of each client (wrk -t, loadgen -t, oha --worker-threads)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub client_threads: usize,
    /// Length of each measured run (whole seconds)
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Connection counts
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "50,400,1000"
    )]
    pub conns: Vec<u32>,
    /// Measured runs of each client per connection count
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub runs: u32,
    /// Only the pipelined comparison (--pipeline 16)
    #[arg(long, conflicts_with = "no_pipeline")]
    pub pipeline_only: bool,
    /// Only the plain comparison (one request per write)
    #[arg(long)]
    pub no_pipeline: bool,
    /// Warm-up of each client before the first run
    #[arg(long, value_name = "D", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Also write every run and the summaries as CSV to FILE
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Another loadgen binary [default: next to this harness binary]
    #[arg(long, value_name = "FILE", hide = true)]
    pub loadgen_bin: Option<PathBuf>,
    /// Server and client CPUs, threads (the same flags as `harness bench`).
    #[command(flatten)]
    pub cpus: CpuArgs,
}

/// Without pipelining, or 16 requests per write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One request per write.
    Plain,
    /// [`PIPELINE_DEPTH`] requests per write.
    Pipelined,
}

impl Mode {
    /// The name in the tables and the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Pipelined => "pipelined",
        }
    }

    fn depth(self) -> usize {
        match self {
            Mode::Plain => 1,
            Mode::Pipelined => PIPELINE_DEPTH,
        }
    }

    /// Whether `client` has runs in this mode.
    pub fn runs(self, client: ClientKind) -> bool {
        self == Mode::Plain || client.can_pipeline()
    }
}

/// One run of one client.
pub struct RunRow {
    mode: Mode,
    conns: u32,
    client: ClientKind,
    run: u32,
    result: Result<Sample, String>,
}

/// Run it; Ok is the exit code.
pub fn run(args: &ClientsArgs, own_dir: &Path) -> Result<u8, String> {
    let modes = modes(args)?;
    let placement = args.cpus.resolve(&process::allowed_cpus())?;
    let loadgen = match &args.loadgen_bin {
        Some(p) => p.clone(),
        None => setup::loadgen_in(own_dir)?,
    };
    let roster = roster::select(&args.clients, |kind| match kind {
        ClientKind::Loadgen => Some(loadgen.clone()),
        ClientKind::Wrk => process::find_on_path("wrk"),
        ClientKind::Oha => oha::find(),
    })?;
    for n in &roster.notes {
        eprintln!("clients: {n}");
    }
    touch_csv(args.csv.as_deref())?;
    let nginx_bin = setup::nginx_required()?;
    let ground = Ground::prepare("clients", &placement.client_cpus)?;
    let clients: Vec<Client> = roster
        .clients
        .into_iter()
        .map(|(kind, program)| Client {
            threads: args.client_threads,
            ..setup::client(kind, program, &placement.client_cpus)
        })
        .collect();
    let max_conns = args.conns.iter().copied().max().unwrap_or(1);
    let launcher = Launcher {
        placement: &placement,
        bin_dir: own_dir,
        max_conns: max_conns + 100,
        docroot: ground.docroot.path(),
        nginx_bin: Some(nginx_bin),
        nofile_hard: ground.nofile_hard,
        file_cache: false,
    };
    let load_before = loadavg();
    eprintln!("clients: load average before the benchmark: {load_before} (1, 5, 15 min)");
    let (mut server, _prefix) = match launcher.start(NGINX, ground.scratch(), NGINX) {
        Ok(s) => s,
        Err(LaunchError::Interrupted) => return Ok(130),
        Err(LaunchError::Setup(why) | LaunchError::Unavailable(why)) => return Err(why),
        Err(LaunchError::Failed { why, tail }) => {
            return Err(with_tail(format!("nginx did not start: {why}"), &tail))
        }
    };
    check_path(&server, REQ_PATH)?;
    warm_up(args, &clients, &server, &ground, max_conns);
    let mut notes = Vec::new();
    let rounds = Rounds {
        args,
        clients: &clients,
        ground: &ground,
        placement: &placement,
    };
    let rows = rounds.all(&modes, &mut server, &mut notes)?;
    if server.stop() != Stopped::Clean {
        notes.push("nginx did not exit cleanly on SIGTERM".into());
    }
    let kinds: Vec<ClientKind> = clients.iter().map(|c| c.kind).collect();
    let table = report::Table {
        args,
        modes: &modes,
        clients: &kinds,
        rows: &rows,
    };
    table.print(&notes, &placement);
    println!("\nLoad average before: {load_before}; after: {} (1, 5, 15 min; the benchmark itself keeps both CPUs busy)", loadavg());
    if let Some(p) = &args.csv {
        fs::write(p, table.csv()).map_err(|e| format!("writing {}: {e}", p.display()))?;
        eprintln!("clients: CSV written to {}", p.display());
    }
    if process::interrupted() {
        return Ok(130);
    }
    let failed = rows.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        eprintln!("clients: {failed} run(s) failed; see the warnings above");
        return Ok(1);
    }
    Ok(0)
}

/// The modes asked for, after the flags are checked.
fn modes(args: &ClientsArgs) -> Result<Vec<Mode>, String> {
    if args.conns.is_empty() || args.conns.contains(&0) || args.runs == 0 {
        return Err("bad --conns or --runs: counts must be >= 1".into());
    }
    if args.client_threads == 0 {
        return Err("--client-threads must be at least 1".into());
    }
    if args.duration < Duration::from_secs(1) {
        return Err("--duration must be at least 1s (wrk takes whole seconds)".into());
    }
    let mut m = Vec::new();
    if !args.pipeline_only {
        m.push(Mode::Plain);
    }
    if !args.no_pipeline {
        m.push(Mode::Pipelined);
    }
    if m.is_empty() {
        return Err("--pipeline-only and --no-pipeline leave nothing to run".into());
    }
    Ok(m)
}

/// Each client once at the highest connection count, unmeasured.
fn warm_up(args: &ClientsArgs, clients: &[Client], server: &Server, ground: &Ground, conns: u32) {
    if args.warmup.is_zero() {
        return;
    }
    for c in clients {
        let l = load(server, REQ_PATH, conns, args.warmup, 1);
        eprintln!(
            "clients: warm-up: {} -c{conns} for {}",
            c.kind.name(),
            format::duration(args.warmup)
        );
        if c.run(&l, ground.scratch(), "warmup").is_err() {
            eprintln!("clients: warning: warm-up with {} failed", c.kind.name());
        }
    }
}

/// What every measured run shares.
struct Rounds<'a> {
    args: &'a ClientsArgs,
    clients: &'a [Client],
    ground: &'a Ground,
    placement: &'a Placement,
}

impl Rounds<'_> {
    /// Every mode × connection count × round × client, the clients
    /// alternating; stops early (with the rows so far) on Ctrl-C.
    fn all(
        &self,
        modes: &[Mode],
        server: &mut Server,
        notes: &mut Vec<String>,
    ) -> Result<Vec<RunRow>, String> {
        let mut rows = Vec::new();
        for &mode in modes {
            for client in self.clients.iter().filter(|c| !mode.runs(c.kind)) {
                eprintln!(
                    "clients: {} cannot pipeline: no {} runs",
                    client.kind.name(),
                    mode.name()
                );
            }
            for &c in &self.args.conns {
                eprintln!("clients: == {} @ {c} conns", mode.name());
                for run in 1..=self.args.runs {
                    for client in self.clients.iter().filter(|cl| mode.runs(cl.kind)) {
                        let Some(result) = self.one(mode, c, run, client, server, notes)? else {
                            return Ok(rows);
                        };
                        rows.push(RunRow {
                            mode,
                            conns: c,
                            client: client.kind,
                            run,
                            result,
                        });
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        }
        Ok(rows)
    }

    /// One measured run: Ok(None) on Ctrl-C, Err when nginx is gone.
    fn one(
        &self,
        mode: Mode,
        c: u32,
        run: u32,
        client: &Client,
        server: &mut Server,
        notes: &mut Vec<String>,
    ) -> Result<Option<Result<Sample, String>>, String> {
        let name = client.kind.name();
        let label = format!(
            "{} @ {c} conns, {name} run {run}/{}",
            mode.name(),
            self.args.runs
        );
        let secs = Duration::from_secs(self.args.duration.as_secs_f64().ceil() as u64);
        let srv_watch = CpuWatch::start(&self.placement.server_cpus);
        let cli_watch = CpuWatch::start(&self.placement.client_cpus);
        let l = load(server, REQ_PATH, c, secs, mode.depth());
        let sample = match measure::run(server, client, &l, self.ground.scratch(), name) {
            Ok(s) => s,
            Err(RunError::Interrupted) => return Ok(None),
            Err(RunError::Died(m)) => {
                return Err(with_tail(
                    format!("nginx is gone during {label}: {m}"),
                    &server.stderr_tail(),
                ))
            }
            Err(RunError::Failed(m)) => {
                eprintln!("clients: warning: {label}: {m}");
                return Ok(Some(Err(m)));
            }
        };
        let f = report::Figures::of(&sample);
        notes.extend(srv_watch.note(&label, "nginx", f.nginx_pct));
        notes.extend(cli_watch.note(&label, name, f.cli_pct));
        eprintln!(
            "   {name:<7} run {run}: {:10.1} req/s  {:6.2} cpu_us/req  cli_cpu {:5.1}%  nginx_cpu {:5.1}% ({:.2} us/req)  errors {}",
            f.rps, f.cpu_us, f.cli_pct, f.nginx_pct, f.nginx_us, f.errors
        );
        Ok(Some(Ok(sample)))
    }
}
