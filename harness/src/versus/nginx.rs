//! `harness bench-vs-nginx`: every variant and then nginx, each started
//! fresh per connection count, under `wrk -t1` pinned apart from it; per
//! run req/s, latency, the server's CPU per request, its syscalls per
//! request (`perf stat -e raw_syscalls:sys_enter`), and the ratios to nginx.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use servers::config::parse_duration;

use crate::catalog::{self, NGINX};
use crate::format;
use crate::profile::perf::{self as perf_check, Perf};
use crate::profile::syscalls::{self, TOTAL_EVENT};
use crate::rig::client::{Client, ClientKind};
use crate::rig::cpus::{CpuArgs, Placement};
use crate::rig::launch::{LaunchError, Launcher};
use crate::rig::measure::{self, with_tail, RunError, Sample};
use crate::rig::process;
use crate::rig::server::Server;
use crate::rig::setup::{self, Ground};

use super::{check_path, load, touch_csv, CpuWatch};

const AFTER_HELP: &str = "\
For each variant, then nginx, and for each connection count C:
  1. start the server pinned to the server CPUs exactly as `harness bench` does (catalog
     flags: --threads where the model takes it, no keep-alive cap where connections cost
     memory rather than a thread; nginx from servers/nginx/nginx.conf.template),
  2. wait for GET /health and check PATH answers 200,
  3. warm up with wrk, then run on the client CPUs
       wrk -t1 -cC -dD --latency http://127.0.0.1:PORT/PATH
     while perf counts the server's syscalls
       perf stat -e raw_syscalls:sys_enter -x, -p PIDS -- sleep D+1
     (perf starts ~0.3 s before wrk and ends ~0.7 s after it),
  4. stop the server with SIGTERM and check that it exited with status 0.

Columns:
  req/s, p50_ms, p99_ms   from wrk
  cpu_us/req (user, sys)  server CPU time per request (/proc, threads and children included)
  syscalls/req            raw_syscalls:sys_enter events of the server / requests (n/a with
                          --no-perf or when perf may not count)
  srv_cpu%                server CPU time / wall time of the wrk run (100 = one CPU busy)
  cli_cpu%                wrk's CPU time / wall time (100 = wrk's one thread saturated)
  errors                  wrk socket errors plus non-2xx/3xx responses
then the ratios to nginx at each connection count (req/s: >1 is faster than nginx;
cpu_us/req: <1 is cheaper). --csv FILE writes the rows. Exit status 1 if a run failed.
Needs wrk, nginx and (without --no-perf) perf.";

/// wrk -t1 against each variant and nginx, side by side.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct VsNginxArgs {
    #[arg(value_name = "VARIANT", help = variants_help())]
    /// Variants to measure (the help text is built from the catalog).
    pub variants: Vec<String>,
    /// Length of each measured wrk run (whole seconds)
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Connection counts
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "50,400"
    )]
    pub conns: Vec<u32>,
    /// Request path
    #[arg(long, value_name = "PATH", default_value = "/plaintext")]
    pub path: String,
    /// Also write the result rows as CSV to FILE
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// wrk warm-up before each measured run
    #[arg(long, value_name = "D", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Do not count syscalls (to check perf's own overhead)
    #[arg(long)]
    pub no_perf: bool,
    /// Where the variant binaries are [default: the directory of this harness binary]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Server and client CPUs, threads (the same flags as `harness bench`).
    #[command(flatten)]
    pub cpus: CpuArgs,
}

fn variants_help() -> String {
    format!(
        "Variants to measure, any of {} [default: all]; nginx always runs last",
        catalog::variant_list()
    )
}

/// One row of the table and the CSV; `None` fields for a failed run.
#[derive(Debug, Clone, Default)]
struct Row {
    server: String,
    conns: u32,
    sample: Option<Sample>,
    syscalls_per_req: Option<f64>,
    failure: Option<String>,
}

/// Everything resolved.
struct Plan {
    servers: Vec<String>,
    placement: Placement,
    bin_dir: PathBuf,
    perf: Option<Perf>,
}

/// Run it; Ok is the exit code.
pub fn run(args: &VsNginxArgs, own_dir: &Path) -> Result<u8, String> {
    let plan = plan(args, own_dir)?;
    touch_csv(args.csv.as_deref())?;
    let wrk = setup::wrk()?;
    let nginx_bin = setup::nginx_required()?;
    let ground = Ground::prepare("bench-vs-nginx", &plan.placement.client_cpus)?;
    let mut client = setup::client(ClientKind::Wrk, wrk, &plan.placement.client_cpus);
    client.threads = 1;
    let launcher = Launcher {
        placement: &plan.placement,
        bin_dir: &plan.bin_dir,
        max_conns: args.conns.iter().copied().max().unwrap_or(1),
        docroot: ground.docroot.path(),
        nginx_bin: Some(nginx_bin),
        nofile_hard: ground.nofile_hard,
        file_cache: false,
    };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    'all: for server in &plan.servers {
        for &c in &args.conns {
            let label = format!("{server} @ {c} conns");
            eprintln!("bench-vs-nginx: == {label}");
            let row = one(
                args, &plan, &launcher, &client, &ground, server, c, &mut notes,
            );
            let interrupted = process::interrupted();
            if let Some(f) = &row.failure {
                eprintln!("bench-vs-nginx: warning: {label}: {f}");
            } else {
                eprintln!("   {}", fmt_row(&row));
            }
            rows.push(row);
            if interrupted {
                break 'all;
            }
        }
    }
    print_report(args, &plan, &rows, &notes);
    if let Some(p) = &args.csv {
        fs::write(p, csv(&rows)).map_err(|e| format!("writing {}: {e}", p.display()))?;
        eprintln!("bench-vs-nginx: CSV written to {}", p.display());
    }
    let failed = rows.iter().filter(|r| r.failure.is_some()).count();
    if process::interrupted() {
        return Ok(130);
    }
    if failed > 0 {
        eprintln!("bench-vs-nginx: {failed} run(s) failed; see the warnings above");
        return Ok(1);
    }
    Ok(0)
}

fn plan(args: &VsNginxArgs, own_dir: &Path) -> Result<Plan, String> {
    let mut servers: Vec<String> = Vec::new();
    for v in &args.variants {
        if catalog::variant(v).is_none() {
            return Err(format!(
                "unknown variant '{v}' (expected any of: {})",
                catalog::variant_list()
            ));
        }
        servers.push(v.clone());
    }
    if servers.is_empty() {
        servers = servers::variants::names().map(String::from).collect();
    }
    servers.push(NGINX.to_string());
    if args.conns.is_empty() || args.conns.contains(&0) {
        return Err("bad --conns: counts must be >= 1, e.g. 50,400".into());
    }
    if !args.path.starts_with('/') || args.path.contains(char::is_whitespace) {
        return Err(format!("bad --path '{}' (must start with /)", args.path));
    }
    if args.duration < Duration::from_secs(1) {
        return Err("--duration must be at least 1s (wrk takes whole seconds)".into());
    }
    let perf = if args.no_perf {
        None
    } else {
        Some(usable_perf()?)
    }
    .flatten();
    Ok(Plan {
        servers,
        placement: args.cpus.resolve(&process::allowed_cpus())?,
        bin_dir: args
            .bin_dir
            .clone()
            .unwrap_or_else(|| own_dir.to_path_buf()),
        perf,
    })
}

/// perf, when it may count syscalls: missing perf is an error (naming the
/// package); a perf that may not count is a warning and syscalls are n/a.
fn usable_perf() -> Result<Option<Perf>, String> {
    let perf = Perf::locate().map_err(|e| format!("{e}, or pass --no-perf"))?;
    let out = perf
        .command()
        .args([
            "stat",
            "-e",
            TOTAL_EVENT,
            "-x,",
            "-o",
            "/dev/null",
            "--",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running perf: {e}"))?;
    if out.status.success() {
        return Ok(Some(perf));
    }
    let why = perf_check::diagnose(
        "perf stat",
        &String::from_utf8_lossy(&out.stderr),
        &perf_check::Privileges::detect(),
    );
    eprintln!("bench-vs-nginx: warning: {why}. Continuing with syscalls shown as n/a.");
    Ok(None)
}

/// One server at one connection count: start, check, warm up, measure, stop.
#[allow(clippy::too_many_arguments)]
fn one(
    args: &VsNginxArgs,
    plan: &Plan,
    launcher: &Launcher,
    client: &Client,
    ground: &Ground,
    name: &str,
    c: u32,
    notes: &mut Vec<String>,
) -> Row {
    let mut row = Row {
        server: name.to_string(),
        conns: c,
        ..Row::default()
    };
    let tag = format!("{name}.{c}");
    let (mut server, _prefix) = match launcher.start(name, ground.scratch(), &tag) {
        Ok(s) => s,
        Err(LaunchError::Interrupted) => {
            row.failure = Some("interrupted".into());
            return row;
        }
        Err(LaunchError::Setup(why) | LaunchError::Unavailable(why)) => {
            row.failure = Some(why);
            return row;
        }
        Err(LaunchError::Failed { why, tail }) => {
            row.failure = Some(with_tail(format!("{name} did not start: {why}"), &tail));
            return row;
        }
    };
    if let Some(w) = server.check_affinity(&plan.placement.server_cpus) {
        eprintln!("bench-vs-nginx: warning: {name}: {w}");
    }
    let result = measure_one(args, plan, client, ground, &mut server, c, notes);
    let stopped = server.stop();
    match result {
        Ok((sample, sc)) => {
            row.sample = Some(sample);
            row.syscalls_per_req = sc;
            if stopped != crate::rig::server::Stopped::Clean {
                row.failure = Some(with_tail(
                    format!("did not exit cleanly on SIGTERM ({stopped:?})"),
                    &server.stderr_tail(),
                ));
            }
        }
        Err(why) => row.failure = Some(with_tail(why, &server.stderr_tail())),
    }
    row
}

/// Check, warm up, then one measured wrk run with perf counting syscalls.
fn measure_one(
    args: &VsNginxArgs,
    plan: &Plan,
    client: &Client,
    ground: &Ground,
    server: &mut Server,
    c: u32,
    notes: &mut Vec<String>,
) -> Result<(Sample, Option<f64>), String> {
    check_path(server, &args.path)?;
    let warm = load(server, &args.path, c, args.warmup, 1);
    if !args.warmup.is_zero() && client.run(&warm, ground.scratch(), "warmup").is_err() {
        eprintln!(
            "bench-vs-nginx: warning: {} @ {c}: warm-up wrk failed",
            server.name
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let secs = args.duration.as_secs_f64().ceil().max(1.0) as u64;
    let stat_file = ground
        .scratch()
        .join(format!("perf.{}.{c}.csv", server.name));
    let mut perf = match &plan.perf {
        Some(p) => Some(start_perf(p, server, &plan.placement, &stat_file, secs)?),
        None => None,
    };
    let cpu_watch = CpuWatch::start(&plan.placement.server_cpus);
    let cli_watch = CpuWatch::start(&plan.placement.client_cpus);
    let l = load(server, &args.path, c, Duration::from_secs(secs), 1);
    let result = measure::run(server, client, &l, ground.scratch(), "run");
    let perf_ok = perf
        .as_mut()
        .map(|p| wait_bounded(p, Duration::from_secs(secs + 30)));
    let sample = match result {
        Ok(s) => s,
        Err(RunError::Interrupted) => return Err("interrupted".into()),
        Err(RunError::Died(m) | RunError::Failed(m)) => return Err(m),
    };
    let label = format!("{} @ {c} conns", server.name);
    let srv_pct = sample.pct_of_wall(sample.server.user_s + sample.server.system_s);
    notes.extend(cpu_watch.note(&label, "the server", srv_pct));
    notes.extend(cli_watch.note(&label, "wrk", sample.pct_of_wall(sample.client_cpu_s)));
    let sc = match perf_ok {
        Some(true) => fs::read_to_string(&stat_file)
            .ok()
            .and_then(|t| syscalls::parse_stat_csv(&t).ok())
            .map(|counts| counts.total as f64 / sample.load.requests as f64),
        _ => None,
    };
    Ok((sample, sc))
}

/// `perf stat -e raw_syscalls:sys_enter -p PIDS -- sleep D+1` on the client
/// CPUs, started 0.3 s before the load so its window covers all of it.
fn start_perf(
    perf: &Perf,
    server: &Server,
    placement: &Placement,
    out: &Path,
    secs: u64,
) -> Result<Child, String> {
    let pids: Vec<String> = server.tree_pids().iter().map(u32::to_string).collect();
    let mut cmd = perf.command();
    cmd.args(["stat", "-e", TOTAL_EVENT, "-x,", "-o"])
        .arg(out)
        .args([
            "-p",
            &pids.join(","),
            "--",
            "sleep",
            &(secs + 1).to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    process::confine(&mut cmd, &placement.client_cpus)
        .map_err(|e| format!("preparing perf's CPU pinning: {e}"))?;
    let child = cmd.spawn().map_err(|e| format!("starting perf: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(child)
}

/// Wait for `child` up to `limit` (then kill it); whether it exited 0.
fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return st.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

const HDR: [&str; 10] = [
    "server",
    "conns",
    "req/s",
    "p50_ms",
    "p99_ms",
    "cpu_us/req (user, sys)",
    "syscalls/req",
    "srv_cpu%",
    "cli_cpu%",
    "errors",
];

fn fmt_cells(c: &[String]) -> String {
    format!(
        "{:<14} {:>6} {:>11} {:>9} {:>9}  {:<24} {:>13} {:>9} {:>9} {:>7}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
    )
}

/// The figures of a good run, as the table and the CSV show them.
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu: f64,
    user: f64,
    sys: f64,
    srv_pct: f64,
    cli_pct: f64,
}

fn figures(s: &Sample) -> Figures {
    Figures {
        rps: s.load.req_per_s,
        p50_ms: s.load.p50_us / 1e3,
        p99_ms: s.load.p99_us / 1e3,
        cpu: s.cpu_us_per_req(),
        user: s.per_req(s.server.user_s),
        sys: s.per_req(s.server.system_s),
        srv_pct: s.pct_of_wall(s.server.user_s + s.server.system_s),
        cli_pct: s.pct_of_wall(s.client_cpu_s),
    }
}

fn sc_text(sc: Option<f64>) -> String {
    sc.map_or("n/a".into(), |v| format!("{v:.2}"))
}

fn fmt_row(r: &Row) -> String {
    let (Some(s), None) = (&r.sample, &r.failure) else {
        let why = r.failure.as_deref().unwrap_or("not run");
        let first = why.lines().next().unwrap_or("");
        return format!("{:<14} {:>6}  FAILED: {first}", r.server, r.conns);
    };
    let f = figures(s);
    fmt_cells(&[
        r.server.clone(),
        r.conns.to_string(),
        format!("{:.1}", f.rps),
        format!("{:.3}", f.p50_ms),
        format!("{:.3}", f.p99_ms),
        format!("{:.2} ({:.2}, {:.2})", f.cpu, f.user, f.sys),
        sc_text(r.syscalls_per_req),
        format!("{:.1}", f.srv_pct),
        format!("{:.1}", f.cli_pct),
        s.load.errors.total().to_string(),
    ])
}

fn print_report(args: &VsNginxArgs, plan: &Plan, rows: &[Row], notes: &[String]) {
    println!(
        "\nResults: GET {}, wrk -t1 on CPU(s) {}, server on CPU(s) {}, {}s per run (after {} warm-up), CLK_TCK={}",
        args.path,
        format::cpus(&plan.placement.client_cpus),
        format::cpus(&plan.placement.server_cpus),
        args.duration.as_secs_f64().ceil(),
        format::duration(args.warmup),
        crate::procfs::clock_ticks()
    );
    println!("{}", fmt_cells(&HDR.map(String::from)));
    for r in rows {
        println!("{}", fmt_row(r));
    }
    if !notes.is_empty() {
        println!("\nNotes (treat the numbers of these runs with suspicion):");
        for n in notes {
            println!("  {n}");
        }
    }
    println!("\nRatios vs nginx at the same conns (req/s: >1 is faster than nginx; cpu_us/req: <1 is cheaper than nginx)");
    println!(
        "{:<14} {:>6} {:>12} {:>16}",
        "variant", "conns", "req/s ratio", "cpu/req ratio"
    );
    let good = |name: &str, c: u32| {
        rows.iter()
            .find(|r| r.server == name && r.conns == c && r.failure.is_none())
            .and_then(|r| r.sample.as_ref())
            .map(figures)
    };
    for v in plan.servers.iter().filter(|s| *s != NGINX) {
        for &c in &args.conns {
            let (rps, cpu) = match (good(v, c), good(NGINX, c)) {
                (Some(a), Some(n)) if n.rps > 0.0 && n.cpu > 0.0 => (
                    format!("{:.2}x", a.rps / n.rps),
                    format!("{:.2}x", a.cpu / n.cpu),
                ),
                _ => ("n/a".into(), "n/a".into()),
            };
            println!("{v:<14} {c:>6} {rps:>12} {cpu:>16}");
        }
    }
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from("server,conns,requests,req_per_s,p50_ms,p99_ms,cpu_us_per_req,user_us_per_req,sys_us_per_req,syscalls_per_req,server_cpu_pct,client_cpu_pct,errors,status\n");
    for r in rows {
        match (&r.sample, &r.failure) {
            (Some(s), None) => {
                let f = figures(s);
                out.push_str(&format!(
                    "{},{},{},{:.2},{:.3},{:.3},{:.2},{:.2},{:.2},{},{:.1},{:.1},{},ok\n",
                    r.server,
                    r.conns,
                    s.load.requests,
                    f.rps,
                    f.p50_ms,
                    f.p99_ms,
                    f.cpu,
                    f.user,
                    f.sys,
                    r.syscalls_per_req
                        .map_or(String::new(), |v| format!("{v:.2}")),
                    f.srv_pct,
                    f.cli_pct,
                    s.load.errors.total()
                ));
            }
            _ => out.push_str(&format!("{},{},,,,,,,,,,,,failed\n", r.server, r.conns)),
        }
    }
    out
}
