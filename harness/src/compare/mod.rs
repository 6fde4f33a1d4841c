//! `harness compare`: two builds of one variant side by side, to show that
//! a change (a refactoring, a new abstraction) costs nothing, or what it
//! costs. Both builds and nginx are started once, pinned as the bench pins
//! them, and loaded in alternation, so drift over the run (thermal, other
//! work) falls on both builds alike and nginx shows how much there was.

pub mod cli;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::NGINX;
use crate::format::{self, thousands};
use crate::rig::client::{Client, ClientKind, Load};
use crate::rig::launch::{check_workload, LaunchError, Launcher, Started};
use crate::rig::measure::{self, with_tail, RunError, Sample};
use crate::rig::setup::{self, Ground};
use crate::rig::workload::Workload;
use crate::schema::medians::median_f64;

use cli::ComparePlan;

/// One run, or the medians of a point (`pair` = `median`): a CSV row.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    /// `old`, `new` or `nginx`.
    pub build: String,
    /// Connections of the load.
    pub connections: u32,
    /// 1-based pair number, or `median`.
    pub pair: String,
    /// Completed requests (empty for medians).
    pub requests: Option<u64>,
    /// Requests per second.
    pub req_per_s: f64,
    /// The server's CPU µs per request, user + system.
    pub cpu_us_per_req: f64,
    /// User part of it.
    pub user_us_per_req: f64,
    /// System part of it.
    pub system_us_per_req: f64,
    /// p99 latency, µs.
    pub p99_us: f64,
    /// Errors of every kind.
    pub errors: u64,
}

/// What a comparison produced.
pub struct Outcome {
    /// Every run, in the order they ran.
    pub rows: Vec<CompareRow>,
    /// One message per failed run.
    pub failures: Vec<String>,
    /// Warnings worth repeating at the end.
    pub notes: Vec<String>,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
}

/// A server of the comparison, started.
struct Contender {
    build: &'static str,
    started: Started,
}

/// Run the comparison. Err when it cannot start (a build missing, a server
/// that does not come up, a server that dies).
pub fn run(plan: &ComparePlan) -> Result<Outcome, String> {
    let loadgen = setup::loadgen_in(&plan.new_bin_dir)?;
    let ground = Ground::prepare("compare-run", &plan.placement.client_cpus)?;
    let client = setup::client(ClientKind::Loadgen, loadgen, &plan.placement.client_cpus);
    let mut notes = plan.placement.warnings.clone();
    let nginx_bin = if plan.nginx {
        match setup::nginx_required() {
            Ok(bin) => Some(bin),
            Err(e) => {
                notes.push(format!("skipping nginx: {e}, or pass --no-nginx"));
                None
            }
        }
    } else {
        None
    };
    for n in &notes {
        eprintln!("warning: {n}");
    }
    let mut servers = Vec::new();
    for (build, dir) in [("old", &plan.old_bin_dir), ("new", &plan.new_bin_dir)] {
        let launcher = launcher(plan, &ground, dir, None);
        servers.push(start(&launcher, build, &plan.variant, plan, &ground)?);
    }
    if nginx_bin.is_some() {
        let launcher = launcher(plan, &ground, &plan.new_bin_dir, nginx_bin.clone());
        servers.push(start(&launcher, "nginx", NGINX, plan, &ground)?);
    }
    eprintln!(
        "harness compare: {} old vs new{}, {} pair(s) × {} connection count(s) of {} each; \
         servers on CPU(s) {}, loadgen -t {} on CPU(s) {}",
        plan.variant,
        if nginx_bin.is_some() {
            " and nginx"
        } else {
            ""
        },
        plan.pairs,
        plan.conns.len(),
        format::duration(plan.duration),
        format::cpus(&plan.placement.server_cpus),
        client.threads,
        format::cpus(&plan.placement.client_cpus),
    );
    let mut outcome = Outcome {
        rows: Vec::new(),
        failures: Vec::new(),
        notes,
        interrupted: false,
    };
    alternate(plan, &client, ground.scratch(), &mut servers, &mut outcome)?;
    for s in &mut servers {
        s.started.0.stop();
    }
    Ok(outcome)
}

/// A launcher for the binaries in `bin_dir`, placed as the plan says.
fn launcher<'a>(
    plan: &'a ComparePlan,
    ground: &'a Ground,
    bin_dir: &'a Path,
    nginx_bin: Option<PathBuf>,
) -> Launcher<'a> {
    Launcher {
        placement: &plan.placement,
        bin_dir,
        max_conns: plan.conns.iter().copied().max().unwrap_or(1),
        docroot: ground.docroot.path(),
        nginx_bin,
        nofile_hard: ground.nofile_hard,
        file_cache: plan.workload.file_cache(),
    }
}

/// Start one contender, check it serves the workload, warm it up.
fn start(
    launcher: &Launcher,
    build: &'static str,
    name: &str,
    plan: &ComparePlan,
    ground: &Ground,
) -> Result<Contender, String> {
    let label = format!("{name} ({build})");
    let mut started = match launcher.start(name, ground.scratch(), build) {
        Ok(s) => s,
        Err(LaunchError::Interrupted) => return Err("interrupted".into()),
        Err(LaunchError::Setup(why) | LaunchError::Unavailable(why)) => {
            return Err(format!("{label}: {why}"))
        }
        Err(LaunchError::Failed { why, tail }) => {
            return Err(with_tail(format!("{label}: did not start: {why}"), &tail))
        }
    };
    let server = &mut started.0;
    check_workload(server, plan.workload)
        .map_err(|why| with_tail(format!("{label}: {why}"), &server.stderr_tail()))?;
    eprintln!("{label}: pid {} on 127.0.0.1:{}", server.pid(), server.port);
    if !plan.warmup.is_zero() {
        let load = load_for(server.port, plan.workload, plan.conns[0], plan.warmup);
        let client = setup::client(
            ClientKind::Loadgen,
            setup::loadgen_in(&plan.new_bin_dir)?,
            &plan.placement.client_cpus,
        );
        let _ = client.run(&load, ground.scratch(), "warmup");
    }
    Ok(Contender { build, started })
}

fn load_for(port: u16, w: Workload, connections: u32, duration: std::time::Duration) -> Load {
    Load {
        url: format!("http://127.0.0.1:{port}{}", w.path()),
        path: w.path().to_string(),
        connections,
        duration,
        pipeline: w.pipeline(),
        close: w.closes(),
    }
}

/// Every connection count × pair: old and new in alternating order, then nginx.
fn alternate(
    plan: &ComparePlan,
    client: &Client,
    scratch: &Path,
    servers: &mut [Contender],
    outcome: &mut Outcome,
) -> Result<(), String> {
    for &c in &plan.conns {
        for pair in 1..=plan.pairs {
            let mut order: Vec<usize> = if pair % 2 == 1 {
                vec![0, 1]
            } else {
                vec![1, 0]
            };
            order.extend(2..servers.len());
            for i in order {
                let s = &mut servers[i];
                let load = load_for(s.started.0.port, plan.workload, c, plan.duration);
                let label = format!("{} c={c} pair {pair}/{}", s.build, plan.pairs);
                match measure::run(&mut s.started.0, client, &load, scratch, s.build) {
                    Ok(sample) => {
                        eprintln!(
                            "{label}: {} req/s, cpu {:.2} µs/req",
                            thousands(sample.load.req_per_s),
                            sample.cpu_us_per_req()
                        );
                        outcome
                            .rows
                            .push(row(s.build, c, pair.to_string(), &sample));
                    }
                    Err(RunError::Interrupted) => {
                        outcome.interrupted = true;
                        return Ok(());
                    }
                    Err(RunError::Failed(msg)) => {
                        eprintln!("{label}: FAILED {msg}");
                        outcome.failures.push(format!("{label}: {msg}"));
                    }
                    Err(RunError::Died(msg)) => {
                        let tail = s.started.0.stderr_tail();
                        return Err(with_tail(format!("{label}: the server died: {msg}"), &tail));
                    }
                }
            }
        }
    }
    Ok(())
}

fn row(build: &str, connections: u32, pair: String, s: &Sample) -> CompareRow {
    CompareRow {
        build: build.to_string(),
        connections,
        pair,
        requests: Some(s.load.requests),
        req_per_s: s.load.req_per_s,
        cpu_us_per_req: s.cpu_us_per_req(),
        user_us_per_req: s.per_req(s.server.user_s),
        system_us_per_req: s.per_req(s.server.system_s),
        p99_us: s.load.p99_us,
        errors: s.load.errors.total(),
    }
}

/// The medians of one build at one connection count.
pub fn median_row(rows: &[CompareRow], build: &str, connections: u32) -> Option<CompareRow> {
    let runs: Vec<&CompareRow> = rows
        .iter()
        .filter(|r| r.build == build && r.connections == connections && r.requests.is_some())
        .collect();
    if runs.is_empty() {
        return None;
    }
    let med = |f: fn(&CompareRow) -> f64| median_f64(runs.iter().map(|r| f(r)));
    Some(CompareRow {
        build: build.to_string(),
        connections,
        pair: "median".into(),
        requests: None,
        req_per_s: med(|r| r.req_per_s),
        cpu_us_per_req: med(|r| r.cpu_us_per_req),
        user_us_per_req: med(|r| r.user_us_per_req),
        system_us_per_req: med(|r| r.system_us_per_req),
        p99_us: med(|r| r.p99_us),
        errors: runs.iter().map(|r| r.errors).sum(),
    })
}

/// The median over pairs of `new / old` at one connection count: each
/// pair ran back to back, so drift that hits one pair hits both of its runs
/// and cancels in the ratio, which the ratio of two medians does not do.
pub fn paired_ratio(
    rows: &[CompareRow],
    connections: u32,
    f: fn(&CompareRow) -> f64,
) -> Option<f64> {
    let run = |build: &str, pair: &str| {
        rows.iter().find(|r| {
            r.build == build
                && r.connections == connections
                && r.pair == pair
                && r.requests.is_some()
        })
    };
    let ratios: Vec<f64> = rows
        .iter()
        .filter(|r| r.build == "new" && r.connections == connections && r.requests.is_some())
        .filter_map(|new| {
            let old = run("old", &new.pair)?;
            (f(old) > 0.0).then(|| f(new) / f(old))
        })
        .collect();
    (!ratios.is_empty()).then(|| median_f64(ratios.into_iter()))
}

/// The table printed at the end: per connection count, the medians of old,
/// new and nginx, the ratio of the medians, and the median of the per-pair
/// ratios (the figure to trust on a noisy machine).
pub fn table(rows: &[CompareRow], conns: &[u32]) -> String {
    let mut out = format!(
        "{:>6} {:>12} {:>12} {:>14} {:>9} {:>9} {:>12} {:>12} {:>12} {:>9} {:>9}\n",
        "conns",
        "old µs/req",
        "new µs/req",
        "nginx µs/req",
        "new/old",
        "paired",
        "old req/s",
        "new req/s",
        "nginx req/s",
        "new/old",
        "paired"
    );
    let paired = |c: u32, f: fn(&CompareRow) -> f64| {
        paired_ratio(rows, c, f).map_or_else(|| "n/a".into(), |r| format!("{r:.3}"))
    };
    let cell = |r: &Option<CompareRow>, f: fn(&CompareRow) -> f64, dec: bool| match r {
        Some(r) if dec => format!("{:.2}", f(r)),
        Some(r) => thousands(f(r)),
        None => "n/a".into(),
    };
    let ratio =
        |a: &Option<CompareRow>, b: &Option<CompareRow>, f: fn(&CompareRow) -> f64| match (a, b) {
            (Some(a), Some(b)) if f(b) > 0.0 => format!("{:.3}", f(a) / f(b)),
            _ => "n/a".into(),
        };
    for &c in conns {
        let [old, new, nginx] = ["old", "new", "nginx"].map(|b| median_row(rows, b, c));
        let cpu = |r: &CompareRow| r.cpu_us_per_req;
        let rps = |r: &CompareRow| r.req_per_s;
        out.push_str(&format!(
            "{:>6} {:>12} {:>12} {:>14} {:>9} {:>9} {:>12} {:>12} {:>12} {:>9} {:>9}\n",
            c,
            cell(&old, cpu, true),
            cell(&new, cpu, true),
            cell(&nginx, cpu, true),
            ratio(&new, &old, cpu),
            paired(c, cpu),
            cell(&old, rps, false),
            cell(&new, rps, false),
            cell(&nginx, rps, false),
            ratio(&new, &old, rps),
            paired(c, rps),
        ));
    }
    out
}

/// Every run, then the medians per build and connection count.
pub fn csv_rows(rows: &[CompareRow], conns: &[u32]) -> Vec<CompareRow> {
    let mut all = rows.to_vec();
    for &c in conns {
        for b in ["old", "new", "nginx"] {
            all.extend(median_row(rows, b, c));
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(build: &str, pair: u32, cpu: f64) -> CompareRow {
        CompareRow {
            build: build.into(),
            connections: 50,
            pair: pair.to_string(),
            requests: Some(1000),
            req_per_s: 1000.0 / cpu,
            cpu_us_per_req: cpu,
            user_us_per_req: 0.0,
            system_us_per_req: cpu,
            p99_us: 0.0,
            errors: 0,
        }
    }

    #[test]
    fn paired_ratio_cancels_drift_that_medians_do_not() {
        // Noise hits pairs 3 and 4 (both builds alike); new is 2% cheaper.
        let old = [6.0, 6.0, 9.0, 9.0, 6.0];
        let rows: Vec<CompareRow> = old
            .iter()
            .enumerate()
            .flat_map(|(i, &o)| {
                [
                    run("old", i as u32 + 1, o),
                    run("new", i as u32 + 1, o * 0.98),
                ]
            })
            .collect();
        let cpu = |r: &CompareRow| r.cpu_us_per_req;
        let r = paired_ratio(&rows, 50, cpu).unwrap();
        assert!((r - 0.98).abs() < 1e-9, "{r}");
        assert_eq!(paired_ratio(&rows, 400, cpu), None);
        let table = table(&rows, &[50]);
        assert!(table.contains("0.980"), "{table}");
    }
}
