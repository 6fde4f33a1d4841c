//! `harness loadgen-vs-wrk`: the project's loadgen against wrk as clients
//! of one nginx, alternating runs (wrk first), plain and pipelined. The
//! target: at every connection count loadgen gets at least wrk's req/s and
//! spends at most wrk's CPU per request.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use servers::config::parse_duration;

use crate::catalog::NGINX;
use crate::format;
use crate::rig::client::{Client, ClientKind};
use crate::rig::cpus::CpuArgs;
use crate::rig::launch::{LaunchError, Launcher};
use crate::rig::measure::{self, with_tail, RunError, Sample};
use crate::rig::process;
use crate::rig::server::{Server, Stopped};
use crate::rig::setup::{self, Ground};
use crate::rig::workload::PIPELINE_DEPTH;

use super::{check_path, load, loadavg, median_text, touch_csv, CpuWatch};

const REQ_PATH: &str = "/plaintext";
const CLIENTS: [&str; 2] = ["wrk", "loadgen"];

const AFTER_HELP: &str = "\
nginx is started once, its workers pinned to the server CPUs (1 worker per server CPU,
from servers/nginx/nginx.conf.template), and checked with GET /health. Each client warms up,
then for each mode and connection count C the two run alternately, wrk first (wrk, loadgen,
wrk, loadgen, ... --runs each), pinned to the client CPUs with one thread:
  plain:     wrk -t1 -cC -dD URL             loadgen -t1 -cC -dD URL
  pipelined: wrk ... -s scripts/wrk-pipeline.lua URL -- 16 /plaintext
             loadgen ... --pipeline 16 URL
Output: every run in the order they ran, then per mode the medians of each client:
  req/s, requests   the client's own figures
  cpu_us/req        the client's CPU time (user + sys, all threads, as the kernel's rusage of
                    the reaped child gives it) per request
  cli_cpu%          client CPU time / wall time (100 = the client's CPU saturated)
  nginx_cpu%        nginx's CPU time / wall time (100 = nginx's CPU saturated)
  nginx_us/req      nginx's CPU time per request of the client's run
  ratio, cpu_ratio  loadgen/wrk of req/s (>= 1.0 is the target) and of cpu_us/req (<= 1.0)
  result            PASS, FAIL(req/s), FAIL(cpu), FAIL(req/s,cpu) or FAIL(no-data)
Exit status: 0 if every run completed (whatever the results), 1 otherwise.";

/// loadgen vs wrk against one nginx.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct VsWrkArgs {
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

/// One run's figures: (req/s, requests, client µs/req, client CPU %,
/// nginx CPU %, nginx µs/req, errors), the columns of the runs table.
type Figures = (f64, u64, f64, f64, f64, f64, u64);

/// One run of one client.
struct RunRow {
    mode: &'static str,
    conns: u32,
    client: &'static str,
    run: u32,
    result: Result<Sample, String>,
}

impl RunRow {
    /// (req/s, requests, client µs/req, cli%, nginx%, nginx µs/req, errors).
    fn figures(&self) -> Option<Figures> {
        let s = self.result.as_ref().ok()?;
        let nginx = s.server.user_s + s.server.system_s;
        Some((
            s.load.req_per_s,
            s.load.requests,
            s.per_req(s.client_cpu_s),
            s.pct_of_wall(s.client_cpu_s),
            s.pct_of_wall(nginx),
            s.per_req(nginx),
            s.load.errors.total(),
        ))
    }
}

/// Run it; Ok is the exit code.
pub fn run(args: &VsWrkArgs, own_dir: &Path) -> Result<u8, String> {
    let modes = modes(args)?;
    if args.conns.is_empty() || args.conns.contains(&0) || args.runs == 0 {
        return Err("bad --conns or --runs: counts must be >= 1".into());
    }
    let placement = args.cpus.resolve(&process::allowed_cpus())?;
    touch_csv(args.csv.as_deref())?;
    let wrk = setup::wrk()?;
    let loadgen = match &args.loadgen_bin {
        Some(p) => p.clone(),
        None => setup::loadgen_in(own_dir)?,
    };
    let nginx_bin = setup::nginx_required()?;
    let ground = Ground::prepare("loadgen-vs-wrk", &placement.client_cpus)?;
    let mut clients = [
        setup::client(ClientKind::Wrk, wrk, &placement.client_cpus),
        setup::client(ClientKind::Loadgen, loadgen, &placement.client_cpus),
    ];
    for c in &mut clients {
        c.threads = 1;
    }
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
    eprintln!("loadgen-vs-wrk: load average before the benchmark: {load_before} (1, 5, 15 min)");
    let (mut server, _prefix) = match launcher.start(NGINX, ground.scratch(), NGINX) {
        Ok(s) => s,
        Err(LaunchError::Interrupted) => return Ok(130),
        Err(LaunchError::Setup(why) | LaunchError::Unavailable(why)) => return Err(why),
        Err(LaunchError::Failed { why, tail }) => {
            return Err(with_tail(format!("nginx did not start: {why}"), &tail))
        }
    };
    check_path(&server, REQ_PATH)?;
    for c in &clients {
        let l = load(&server, REQ_PATH, max_conns, args.warmup, 1);
        eprintln!(
            "loadgen-vs-wrk: warm-up: {} -c{max_conns} for {}",
            c.kind.name(),
            format::duration(args.warmup)
        );
        if !args.warmup.is_zero() && c.run(&l, ground.scratch(), "warmup").is_err() {
            eprintln!(
                "loadgen-vs-wrk: warning: warm-up with {} failed",
                c.kind.name()
            );
        }
    }
    let mut notes = Vec::new();
    let rows = all_runs(
        args,
        &modes,
        &clients,
        &mut server,
        &ground,
        &placement,
        &mut notes,
    )?;
    if server.stop() != Stopped::Clean {
        notes.push("nginx did not exit cleanly on SIGTERM".into());
    }
    print_report(args, &modes, &rows, &notes, &placement);
    println!("\nLoad average before: {load_before}; after: {} (1, 5, 15 min; the benchmark itself keeps both CPUs busy)", loadavg());
    if let Some(p) = &args.csv {
        fs::write(p, csv(args, &modes, &rows))
            .map_err(|e| format!("writing {}: {e}", p.display()))?;
        eprintln!("loadgen-vs-wrk: CSV written to {}", p.display());
    }
    if process::interrupted() {
        return Ok(130);
    }
    let failed = rows.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        eprintln!("loadgen-vs-wrk: {failed} run(s) failed; see the warnings above");
        return Ok(1);
    }
    Ok(0)
}

fn modes(args: &VsWrkArgs) -> Result<Vec<&'static str>, String> {
    let mut m = Vec::new();
    if !args.pipeline_only {
        m.push("plain");
    }
    if !args.no_pipeline {
        m.push("pipelined");
    }
    if m.is_empty() {
        return Err("--pipeline-only and --no-pipeline leave nothing to run".into());
    }
    if args.duration < Duration::from_secs(1) {
        return Err("--duration must be at least 1s (wrk takes whole seconds)".into());
    }
    Ok(m)
}

/// Every mode × connection count × run × client, alternating the clients.
fn all_runs(
    args: &VsWrkArgs,
    modes: &[&'static str],
    clients: &[Client; 2],
    server: &mut Server,
    ground: &Ground,
    placement: &crate::rig::cpus::Placement,
    notes: &mut Vec<String>,
) -> Result<Vec<RunRow>, String> {
    let secs = Duration::from_secs(args.duration.as_secs_f64().ceil() as u64);
    let mut rows = Vec::new();
    for &mode in modes {
        let depth = if mode == "pipelined" {
            PIPELINE_DEPTH
        } else {
            1
        };
        for &c in &args.conns {
            eprintln!("loadgen-vs-wrk: == {mode} @ {c} conns");
            for run in 1..=args.runs {
                for (client, name) in clients.iter().zip(CLIENTS) {
                    let label = format!("{mode} @ {c} conns, {name} run {run}/{}", args.runs);
                    let srv_watch = CpuWatch::start(&placement.server_cpus);
                    let cli_watch = CpuWatch::start(&placement.client_cpus);
                    let l = load(server, REQ_PATH, c, secs, depth);
                    let result = match measure::run(server, client, &l, ground.scratch(), name) {
                        Ok(s) => Ok(s),
                        Err(RunError::Interrupted) => return Ok(rows),
                        Err(RunError::Died(m)) => {
                            return Err(with_tail(
                                format!("nginx is gone during {label}: {m}"),
                                &server.stderr_tail(),
                            ))
                        }
                        Err(RunError::Failed(m)) => Err(m),
                    };
                    let row = RunRow {
                        mode,
                        conns: c,
                        client: name,
                        run,
                        result,
                    };
                    match (&row.result, row.figures()) {
                        (Ok(_), Some((rps, _, cpu, cli, srv, srv_us, errs))) => {
                            notes.extend(srv_watch.note(&label, "nginx", srv));
                            notes.extend(cli_watch.note(&label, name, cli));
                            eprintln!("   {name:<7} run {run}: {rps:10.1} req/s  {cpu:6.2} cpu_us/req  cli_cpu {cli:5.1}%  nginx_cpu {srv:5.1}% ({srv_us:.2} us/req)  errors {errs}");
                        }
                        (Err(m), _) => eprintln!("loadgen-vs-wrk: warning: {label}: {m}"),
                        _ => {}
                    }
                    rows.push(row);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
    Ok(rows)
}

/// Medians of one client at one point: (req/s, cpu µs/req, cli%, nginx%,
/// nginx µs/req) as text, errors summed, good runs.
fn medians(rows: &[RunRow], mode: &str, conns: u32, client: &str) -> ([String; 5], u64, usize) {
    let f: Vec<_> = rows
        .iter()
        .filter(|r| r.mode == mode && r.conns == conns && r.client == client)
        .filter_map(RunRow::figures)
        .collect();
    let col = |i: fn(&Figures) -> f64, d| median_text(&f.iter().map(i).collect::<Vec<_>>(), d);
    (
        [
            col(|x| x.0, 2),
            col(|x| x.2, 3),
            col(|x| x.3, 1),
            col(|x| x.4, 1),
            col(|x| x.5, 3),
        ],
        f.iter().map(|x| x.6).sum(),
        f.len(),
    )
}

/// loadgen/wrk ratios of req/s and cpu µs/req, and the verdict.
fn verdict(w: &[String; 5], l: &[String; 5]) -> (String, String, String) {
    let n = |s: &String| s.parse::<f64>().ok();
    match (n(&w[0]), n(&l[0]), n(&w[1]), n(&l[1])) {
        (Some(wr), Some(lr), Some(wc), Some(lc)) if wr > 0.0 && wc > 0.0 => {
            let (r, c) = (lr / wr, lc / wc);
            let why: Vec<&str> = [(r < 1.0, "req/s"), (c > 1.0, "cpu")]
                .iter()
                .filter(|(bad, _)| *bad)
                .map(|(_, w)| *w)
                .collect();
            let res = if why.is_empty() {
                "PASS".to_string()
            } else {
                format!("FAIL({})", why.join(","))
            };
            (format!("{r:.3}"), format!("{c:.3}"), res)
        }
        _ => ("n/a".into(), "n/a".into(), "FAIL(no-data)".into()),
    }
}

fn print_report(
    args: &VsWrkArgs,
    modes: &[&str],
    rows: &[RunRow],
    notes: &[String],
    p: &crate::rig::cpus::Placement,
) {
    println!(
        "\nRuns, in the order they ran (GET {REQ_PATH}; nginx on CPU(s) {}; each client -t1 on CPU(s) {}; {}s per run; CLK_TCK={})",
        format::cpus(&p.server_cpus),
        format::cpus(&p.client_cpus),
        args.duration.as_secs_f64().ceil(),
        crate::procfs::clock_ticks()
    );
    let runs_line = |c: [&str; 12]| {
        format!(
            "{:<9} {:>6} {:<8} {:>4} {:>12} {:>11} {:>11} {:>9} {:>11} {:>13} {:>7}  {}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
        )
    };
    println!(
        "{}",
        runs_line([
            "mode",
            "conns",
            "client",
            "run",
            "req/s",
            "requests",
            "cpu_us/req",
            "cli_cpu%",
            "nginx_cpu%",
            "nginx_us/req",
            "errors",
            "status"
        ])
    );
    for r in rows {
        let (conns, run) = (r.conns.to_string(), r.run.to_string());
        let cells: Vec<String> = match (r.figures(), &r.result) {
            (Some((rps, req, cpu, cli, srv, srv_us, e)), _) => vec![
                format!("{rps:.1}"),
                req.to_string(),
                format!("{cpu:.2}"),
                format!("{cli:.1}"),
                format!("{srv:.1}"),
                format!("{srv_us:.2}"),
                e.to_string(),
                "ok".into(),
            ],
            (None, Err(m)) => {
                let mut v = vec!["-".to_string(); 7];
                v.push(format!("FAILED: {}", m.lines().next().unwrap_or("")));
                v
            }
            _ => vec!["-".to_string(); 8],
        };
        let c: Vec<&str> = cells.iter().map(String::as_str).collect();
        println!(
            "{}",
            runs_line([
                r.mode, &conns, r.client, &run, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
            ])
        );
    }
    for &mode in modes {
        let title = if mode == "plain" {
            "plain: one request per write".to_string()
        } else {
            format!("pipelined: {PIPELINE_DEPTH} requests per write (wrk -s wrk-pipeline.lua -- {PIPELINE_DEPTH}, loadgen --pipeline {PIPELINE_DEPTH})")
        };
        println!(
            "\nSummary, {title}; medians of {} runs per client",
            args.runs
        );
        let sum_line = |c: [&str; 13]| {
            format!("{:>6} {:>11} {:>14} {:>6} {:>15} {:>19} {:>10} {:>9} {:>9} {:>13} {:>20} {:>13}  {}", c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12])
        };
        println!(
            "{}",
            sum_line([
                "conns",
                "wrk_req/s",
                "loadgen_req/s",
                "ratio",
                "wrk_cpu_us/req",
                "loadgen_cpu_us/req",
                "cpu_ratio",
                "wrk_cli%",
                "lg_cli%",
                "nginx% (w/lg)",
                "nginx_us/req (w/lg)",
                "errors (w/lg)",
                "result"
            ])
        );
        for &c in &args.conns {
            let (w, we, _) = medians(rows, mode, c, "wrk");
            let (l, le, _) = medians(rows, mode, c, "loadgen");
            let (ratio, cpu_ratio, result) = verdict(&w, &l);
            let whole = |s: &String| s.parse::<f64>().map_or("n/a".into(), |v| format!("{v:.0}"));
            let (conns, srv, srv_us, errs) = (
                c.to_string(),
                format!("{}/{}", whole(&w[3]), whole(&l[3])),
                format!("{}/{}", w[4], l[4]),
                format!("{we}/{le}"),
            );
            println!(
                "{}",
                sum_line([
                    &conns, &w[0], &l[0], &ratio, &w[1], &l[1], &cpu_ratio, &w[2], &l[2], &srv,
                    &srv_us, &errs, &result
                ])
            );
        }
    }
    println!("\nTarget: ratio (loadgen req/s / wrk req/s) >= 1.0 and cpu ratio (loadgen cpu_us/req / wrk cpu_us/req) <= 1.0.");
    if !notes.is_empty() {
        println!("\nNotes (treat the numbers of these runs with suspicion):");
        for n in notes {
            println!("  {n}");
        }
    }
}

fn csv(args: &VsWrkArgs, modes: &[&str], rows: &[RunRow]) -> String {
    let mut out = String::from("mode,conns,client,run,requests,req_per_s,cpu_us_per_req,client_cpu_pct,nginx_cpu_pct,nginx_us_per_req,errors,status\n");
    for r in rows {
        match r.figures() {
            Some((rps, req, cpu, cli, srv, srv_us, e)) => out.push_str(&format!(
                "{},{},{},{},{req},{rps:.2},{cpu:.3},{cli:.1},{srv:.1},{srv_us:.3},{e},ok\n",
                r.mode, r.conns, r.client, r.run
            )),
            None => out.push_str(&format!(
                "{},{},{},{},,,,,,,,failed\n",
                r.mode, r.conns, r.client, r.run
            )),
        }
    }
    let blank = |s: &String| if s == "n/a" { String::new() } else { s.clone() };
    for &mode in modes {
        for &c in &args.conns {
            let mut meds = Vec::new();
            for client in CLIENTS {
                let (m, errs, ok) = medians(rows, mode, c, client);
                out.push_str(&format!(
                    "{mode},{c},{client},median,,{},{},{},{},{},{errs},{ok}_of_{}_ok\n",
                    blank(&m[0]),
                    blank(&m[1]),
                    blank(&m[2]),
                    blank(&m[3]),
                    blank(&m[4]),
                    args.runs
                ));
                meds.push(m);
            }
            let (ratio, cpu_ratio, result) = verdict(&meds[0], &meds[1]);
            out.push_str(&format!(
                "{mode},{c},loadgen/wrk,ratio,,{},{},,,,,{result}\n",
                blank(&ratio),
                blank(&cpu_ratio)
            ));
        }
    }
    out
}
