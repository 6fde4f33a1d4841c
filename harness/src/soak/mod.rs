//! `harness soak`: one variant under mixed, partly hostile load for a long
//! time, then a look at what the load left behind.
//!
//! A benchmark asks how fast; a soak asks whether the server is still the
//! same server after ten minutes of everything at once: keep-alive and
//! one-shot clients, big and small files, uploads, CGI processes, blocking
//! handlers, and the clients that misbehave (readers that barely read,
//! bodies that barely arrive, resets in the middle of a head or a body,
//! pipelines nobody reads). Leaks show as growth, not as errors, so the
//! soak watches the server from outside (/proc and `/stats`) while the load
//! runs and compares the end with a baseline: RSS with its level after the
//! warm-up (a leak keeps growing after the allocator has found its working
//! size), descriptors with the idle count before the load (every
//! connection, file and pipe closes its own), child processes with none
//! (every CGI script reaped). The well-behaved clients count every request
//! and status themselves, so `/stats` can be held to their count and every
//! response to the status it should have had.
//!
//! - [`cli`]: the options and the plan;
//! - `clients` and `hostile`: the two kinds of load, plain threads with
//!   blocking sockets (`http` is their minimal HTTP/1.1);
//! - [`observe`]: /proc and `/stats`;
//! - [`checks`]: the verdicts and their thresholds.

pub mod checks;
pub mod cli;
mod clients;
mod hostile;
mod http;
pub mod observe;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::format::{self, grouped, mib};
use crate::rig::launch::Launcher;
use crate::rig::process;
use crate::rig::server::{Server, StartError};
use crate::rig::setup::Ground;

use checks::Check;
use cli::SoakPlan;
use observe::{Counters, Sample};

/// Longest wait for the server to settle once the load has stopped.
pub const SETTLE: Duration = Duration::from_secs(15);
/// Longest wait for one `/stats` answer (a model that serves one client
/// at a time may not answer while a hostile one holds it).
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// When the load stops: at the end of the run, on [`Clock::stop`], or on
/// Ctrl-C. Every client loop asks it before each round.
pub struct Clock {
    end: Instant,
    stopped: AtomicBool,
}

impl Clock {
    /// A clock that runs out `duration` from now.
    pub fn new(duration: Duration) -> Clock {
        Clock {
            end: Instant::now() + duration,
            stopped: AtomicBool::new(false),
        }
    }

    /// Whether the load should stop.
    pub fn over(&self) -> bool {
        self.stopped.load(Ordering::SeqCst) || process::interrupted() || Instant::now() >= self.end
    }

    /// Stop the load now.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Sleep `d`, or less if the clock runs out meanwhile.
    pub fn nap(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.over() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// What a soak found.
pub struct Outcome {
    /// Every check, in order (empty when interrupted).
    pub checks: Vec<Check>,
    /// Things worth knowing that are not checks.
    pub notes: Vec<String>,
    /// The server's stderr, when a check failed.
    pub server_log: String,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
}

/// What the watch over the running load saw.
struct Watch {
    /// RSS after the warm-up, KiB.
    baseline_rss: Option<u64>,
    /// The most descriptors seen.
    peak_fds: usize,
    /// Why the load stopped early (the server died).
    died: Option<String>,
}

/// The server once the load has stopped and it had time to settle.
struct Settled {
    sample: io::Result<Sample>,
    stats: Result<Counters, String>,
    waited: Duration,
}

/// Run the soak: start the server, load it, watch it, settle, check, stop.
/// Err when it cannot start.
pub fn run(plan: &SoakPlan) -> Result<Outcome, String> {
    let ground = Ground::prepare("soak", &plan.placement.client_cpus)?;
    let data_dir = ground.scratch().join("data");
    let mut server = match start_server(plan, &ground, &data_dir) {
        Ok(s) => s,
        Err(StartError::Interrupted) => return Ok(interrupted(Vec::new())),
        Err(StartError::Failed { why, tail }) => {
            return Err(format!("{} did not start: {why}\n{tail}", plan.variant))
        }
        Err(StartError::Unavailable(why)) => {
            return Err(format!("{} cannot run here: {why}", plan.variant))
        }
    };
    let mut notes = plan.placement.warnings.clone();
    eprintln!(
        "soak: {} (pid {}) on {} pinned to CPUs {}, clients on CPUs {}; {} of load, RSS baseline after {}, a line every {}",
        plan.variant,
        server.pid(),
        server.addr(),
        format::cpus(&plan.placement.server_cpus),
        format::cpus(&plan.placement.client_cpus),
        format::minutes(plan.duration),
        format::duration(round_ms(plan.warmup)),
        format::duration(plan.report_every),
    );
    std::thread::sleep(Duration::from_millis(200));
    let idle = observe::sample(server.pid()).map_err(|e| format!("reading /proc: {e}"))?;

    let clock = Arc::new(Clock::new(plan.duration));
    let tally = Arc::new(clients::Tally::default());
    let counts = Arc::new(hostile::Counts::default());
    let addr = server.addr();
    let mut handles = clients::spawn(addr, &clock, &tally).map_err(|e| e.to_string())?;
    handles.extend(hostile::spawn(addr, &clock, &counts).map_err(|e| e.to_string())?);
    let watch = watch(plan, &mut server, &clock, &tally);
    clock.stop();
    let left = join(handles, clients::REQUEST_TIMEOUT + Duration::from_secs(5));
    if left > 0 {
        notes.push(format!(
            "{left} client thread(s) still blocked on the server {}s after the load stopped (left behind)",
            clients::REQUEST_TIMEOUT.as_secs() + 5
        ));
    }
    if process::interrupted() {
        server.stop();
        return Ok(interrupted(notes));
    }
    notes.push(format!("hostile connections: {}", counts.summary()));
    if let Some(why) = &watch.died {
        notes.push(why.clone());
    }

    let settled = settle(&server, idle.fds);
    println!(
        "{} (settled after {})",
        report_line("end", &settled.sample, &settled.stats, tally.completed()),
        format::duration(round_ms(settled.waited))
    );
    println!("\nWell-behaved requests by outcome:");
    for line in clients::describe(&tally.lines()) {
        println!("  {line}");
    }
    let end = settled.sample.as_ref().ok();
    let mut checks = vec![
        checks::rss(watch.baseline_rss, end.map(|s| s.rss_kib)),
        checks::descriptors(idle.fds, watch.peak_fds, end.map(|s| s.fds)),
        checks::children(&idle.children, end.map(|s| s.children.as_slice())),
        checks::requests(&settled.stats, tally.completed()),
        checks::statuses(&tally.lines()),
        checks::data_dir(&data_dir_entries(&data_dir)),
    ];
    checks.push(checks::exit(&server.stop()));
    let server_log = if checks.iter().all(|c| c.pass) {
        String::new()
    } else {
        server.stderr_tail()
    };
    Ok(Outcome {
        checks,
        notes,
        server_log,
        interrupted: false,
    })
}

fn interrupted(notes: Vec<String>) -> Outcome {
    Outcome {
        checks: Vec::new(),
        notes,
        server_log: String::new(),
        interrupted: true,
    }
}

/// The variant as `harness bench` starts it, plus the data dir and the CGI
/// scripts.
fn start_server(plan: &SoakPlan, ground: &Ground, data_dir: &Path) -> Result<Server, StartError> {
    let failed = |why: String| StartError::Failed {
        why,
        tail: String::new(),
    };
    let launcher = Launcher {
        placement: &plan.placement,
        bin_dir: &plan.bin_dir,
        max_conns: 64,
        docroot: ground.docroot.path(),
        nginx_bin: None,
        nofile_hard: ground.nofile_hard,
        file_cache: false,
    };
    let (mut cmd, _) = launcher.command(&plan.variant).map_err(failed)?;
    cmd.args.extend([
        "--data-dir".into(),
        data_dir.into(),
        "--cgi-dir".into(),
        plan.cgi_dir.clone().into(),
    ]);
    Server::start(&cmd, ground.scratch(), &plan.variant)
}

/// Watch the server while the load runs: a report line every
/// `report_every`, the RSS baseline once the warm-up is over. Stops the
/// load early if the server dies.
fn watch(plan: &SoakPlan, server: &mut Server, clock: &Clock, tally: &clients::Tally) -> Watch {
    let start = Instant::now();
    let mut w = Watch {
        baseline_rss: None,
        peak_fds: 0,
        died: None,
    };
    let mut next_report = plan.report_every;
    while !clock.over() {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(st) = server.exit_status() {
            w.died = Some(format!(
                "the server exited ({st}) {} into the load",
                format::duration(round_ms(start.elapsed()))
            ));
            clock.stop();
            break;
        }
        let elapsed = start.elapsed();
        let warm = w.baseline_rss.is_none() && elapsed >= plan.warmup;
        if !warm && elapsed < next_report {
            continue;
        }
        let sample = observe::sample(server.pid());
        if let Ok(s) = &sample {
            w.peak_fds = w.peak_fds.max(s.fds);
            if warm {
                w.baseline_rss = Some(s.rss_kib);
                println!(
                    "[{:>6}] warm-up over: RSS baseline {} MiB",
                    format::minutes(elapsed),
                    mib(s.rss_kib)
                );
            }
        }
        if elapsed >= next_report {
            // Shorter than the interval, so a silent server costs no line.
            let wait = STATS_TIMEOUT.min(plan.report_every / 2);
            let stats = observe::stats(server.addr(), wait);
            println!(
                "{}",
                report_line(
                    &format::minutes(elapsed),
                    &sample,
                    &stats,
                    tally.completed()
                )
            );
            while next_report <= start.elapsed() {
                next_report += plan.report_every;
            }
        }
    }
    w
}

/// One report line: `[   10s] rss 5.2 MiB, fds 31, threads 1, children 0, /stats requests 1,234 active 20, completed 1,100`.
fn report_line(
    when: &str,
    sample: &io::Result<Sample>,
    stats: &Result<Counters, String>,
    completed: u64,
) -> String {
    let proc = match sample {
        Ok(s) => format!(
            "rss {} MiB, fds {}, threads {}, children {}",
            mib(s.rss_kib),
            s.fds,
            s.threads,
            s.children.len()
        ),
        Err(e) => format!("/proc unreadable ({e})"),
    };
    let counters = match stats {
        Ok(c) => format!(
            "/stats requests {} active {}",
            grouped(c.total_requests),
            c.active_connections
        ),
        Err(e) => format!("/stats: {e}"),
    };
    format!(
        "[{when:>6}] {proc}, {counters}, completed {}",
        grouped(completed)
    )
}

/// `d` to whole milliseconds (for printing).
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Join the client threads, waiting at most `limit`; how many are left.
fn join(mut handles: Vec<JoinHandle<()>>, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let (done, running): (Vec<_>, Vec<_>) = handles.into_iter().partition(|h| h.is_finished());
        for h in done {
            let _ = h.join();
        }
        handles = running;
        if handles.is_empty() || Instant::now() >= deadline {
            return handles.len();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (at most [`SETTLE`]) until the server is quiet again: descriptors
/// near the idle count, no child process, no connection but the one asking.
fn settle(server: &Server, idle_fds: usize) -> Settled {
    let start = Instant::now();
    loop {
        let sample = observe::sample(server.pid());
        let stats = observe::stats(server.addr(), STATS_TIMEOUT);
        let quiet = match (&sample, &stats) {
            (Ok(s), Ok(c)) => {
                s.fds <= idle_fds + checks::FD_SLACK
                    && s.children.is_empty()
                    && c.active_connections <= 1
            }
            _ => false,
        };
        let gone = sample.is_err();
        if quiet || gone || start.elapsed() >= SETTLE || process::interrupted() {
            return Settled {
                sample,
                stats,
                waited: start.elapsed(),
            };
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The names in the data dir (uploads and their temporary files).
fn data_dir_entries(dir: &Path) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}
