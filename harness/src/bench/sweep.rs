//! The sweep: for each server and workload, start it once, warm it up, and
//! measure every connection count × trial on it; one [`BenchRow`] per run.
//!
//! Failures never end the sweep: a server that cannot start, or dies, is
//! reported with its stderr tail and its remaining runs are counted as
//! failed; a variant that says the kernel refuses its interface (io_uring
//! disabled: [`servers::variants::EXIT_UNAVAILABLE`]) is skipped with its
//! reason, its runs neither measured nor failed; a client run that fails costs that run only. Ctrl-C stops the
//! client and the server and ends the sweep with what was measured.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::catalog::{self, NGINX};
use crate::format::{self, latency, minutes, thousands};
use crate::machine::Machine;
use crate::procfs::Usage;
use crate::rig::client::{Client, ClientError, ClientKind, Load, Measured};
use crate::rig::launch::{check_workload, LaunchError, Launcher};
use crate::rig::measure::{self, with_tail, RunError};
use crate::rig::nginx;
use crate::rig::server::{Server, Stopped};
use crate::rig::setup::{self, Ground};
use crate::rig::workload::Workload;
use crate::schema::{BenchRow, RunInfo};

use super::cli::Plan;

/// What a sweep produced.
pub struct Outcome {
    /// Every measured run, in the order they ran.
    pub rows: Vec<BenchRow>,
    /// One message per failure (a server that could not start or died, a
    /// failed run), stderr tails included.
    pub failures: Vec<String>,
    /// Runs that produced no row.
    pub failed_runs: usize,
    /// Skipped servers and warnings worth repeating at the end.
    pub notes: Vec<String>,
    /// Ctrl-C ended the sweep early.
    pub interrupted: bool,
    /// What the report files record besides the rows.
    pub info: RunInfo,
    /// Whether nginx took part (found and asked for).
    pub nginx_version: Option<String>,
}

/// Run the whole sweep. Err only when nothing can be measured at all (no
/// client binary, unwritable output directory); everything else is in the
/// outcome.
pub fn run(plan: &Plan) -> Result<Outcome, String> {
    fs::create_dir_all(&plan.out)
        .map_err(|e| format!("cannot create --out {}: {e}", plan.out.display()))?;
    let client_program =
        match plan.client {
            ClientKind::Loadgen => setup::loadgen_in(&plan.bin_dir)?,
            ClientKind::Wrk => {
                setup::wrk().map_err(|e| format!("{e}, or use the default --client loadgen"))?
            }
            ClientKind::Oha => return Err(
                "oha cannot pipeline: it is compared in `harness clients`, not a --client of bench"
                    .into(),
            ),
        };
    // Before pinning (in `Ground::prepare`): it counts the CPUs this process may use.
    let machine = Machine::detect();
    let ground = Ground::prepare("bench-run", &plan.placement.client_cpus)?;
    let needed = *plan.conns.iter().max().unwrap_or(&0) as u64 + 64;
    let mut notes: Vec<String> = plan.warnings.clone();
    if ground.nofile < needed {
        notes.push(format!(
            "the open-files limit is {}: runs above ~{} connections will see connect errors \
             (raise it with `ulimit -n`)",
            ground.nofile,
            ground.nofile.saturating_sub(64)
        ));
    }
    let mut servers = plan.servers.clone();
    let nginx_bin = setup::nginx_or_skip(&mut servers, &mut notes);
    let nginx_version = nginx_bin
        .as_ref()
        .map(|bin| nginx::version(bin).unwrap_or_else(|| "nginx".into()));
    notes.extend(setup::busy_machine_note(
        "before the sweep",
        "other work on this machine makes the numbers noisy",
    ));
    for n in &notes {
        eprintln!("warning: {n}");
    }

    let client = Client {
        kind: plan.client,
        program: client_program,
        cpus: plan.placement.client_cpus.clone(),
        threads: plan.placement.client_threads(),
        wrk_pipeline_script: setup::wrk_pipeline_script(),
    };
    let effective = Plan {
        servers: servers.clone(),
        ..plan.clone()
    };
    let total = effective.runs();
    eprintln!(
        "harness bench: {} server(s) × {} workload(s) × {} connection counts × {} trial(s) = {total} runs of {}; about {} in all",
        servers.len(),
        plan.workloads.len(),
        plan.conns.len(),
        plan.trials,
        format::duration(plan.duration),
        minutes(effective.estimate()),
    );
    eprintln!(
        "  servers on CPU(s) {} (threads: {}), {} -t {} on CPU(s) {}",
        format::cpus(&plan.placement.server_cpus),
        plan.placement.threads_summary(),
        client.kind.name(),
        client.threads,
        format::cpus(&plan.placement.client_cpus)
    );

    let mut sweep = Sweep {
        plan,
        machine,
        scratch: ground.scratch().to_path_buf(),
        ground,
        client,
        nginx_bin,
        rows: Vec::new(),
        failures: Vec::new(),
        failed_runs: 0,
        skipped: Vec::new(),
        done: 0,
        total,
        interrupted: false,
    };
    'all: for server in &servers {
        for &workload in &plan.workloads {
            sweep.group(server, workload);
            if sweep.interrupted {
                break 'all;
            }
        }
    }

    notes.extend(
        sweep
            .skipped
            .iter()
            .map(|(name, why)| format!("skipped {name}: {why}")),
    );
    let mut settings = sweep.settings(&nginx_version);
    if sweep.interrupted {
        settings.push((
            "interrupted".into(),
            format!("yes: Ctrl-C after {} of {} runs", sweep.done, total),
        ));
    }
    let info = RunInfo {
        machine: sweep.machine.clone(),
        settings,
        cpu_chart_connections: cpu_chart_connections(&plan.conns),
    };
    Ok(Outcome {
        rows: sweep.rows,
        failures: sweep.failures,
        failed_runs: sweep.failed_runs,
        notes,
        interrupted: sweep.interrupted,
        info,
        nginx_version,
    })
}

/// The connection count shown in the CPU-per-request chart: 400 when
/// swept (past the knee on small machines, below overload), else the
/// middle of the list.
fn cpu_chart_connections(conns: &[u32]) -> u32 {
    if conns.contains(&400) {
        return 400;
    }
    let mut sorted = conns.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

struct Sweep<'a> {
    plan: &'a Plan,
    machine: Machine,
    /// Docroot, scratch space and limits (removed when the sweep ends).
    ground: Ground,
    scratch: PathBuf,
    client: Client,
    nginx_bin: Option<PathBuf>,
    rows: Vec<BenchRow>,
    failures: Vec<String>,
    failed_runs: usize,
    /// Servers that cannot run on this machine, and why (one line each).
    skipped: Vec<(String, String)>,
    /// Runs accounted for so far (measured, failed or skipped).
    done: usize,
    total: usize,
    interrupted: bool,
}

impl Sweep<'_> {
    /// `[ 12/90]`
    fn counter(&self) -> String {
        let w = self.total.to_string().len();
        format!("[{:>w$}/{}]", self.done, self.total)
    }

    /// Record a failure that costs `runs` runs.
    fn fail(&mut self, runs: usize, msg: String) {
        self.done += runs;
        self.failed_runs += runs;
        eprintln!("{} FAILED {msg}", self.counter());
        self.failures.push(msg);
    }

    /// Count `runs` runs of `name` as skipped: it cannot run here.
    fn skip(&mut self, runs: usize, name: &str, label: &str, why: String) {
        self.done += runs;
        eprintln!("{} SKIPPED {label}: {why}", self.counter());
        if !self.skipped.iter().any(|(n, _)| n == name) {
            self.skipped.push((name.to_string(), why));
        }
    }

    /// One server × workload: start, check, warm up, every point, stop.
    fn group(&mut self, name: &str, workload: Workload) {
        let plan = self.plan;
        let runs = plan.conns.len() * plan.trials as usize;
        let label = format!("{name} {workload}");
        let tag = format!("{name}-{workload}");
        if let Some((_, why)) = self.skipped.iter().find(|(n, _)| n == name) {
            let why = why.clone();
            return self.skip(runs, name, &label, why);
        }

        let launcher = Launcher {
            placement: &plan.placement,
            bin_dir: &plan.bin_dir,
            max_conns: plan.conns.iter().copied().max().unwrap_or(1),
            docroot: self.ground.docroot.path(),
            nginx_bin: self.nginx_bin.clone(),
            nofile_hard: self.ground.nofile_hard,
            file_cache: workload.file_cache(),
        };
        // nginx's prefix must outlive the server.
        let (mut server, _prefix) = match launcher.start(name, &self.scratch, &tag) {
            Ok(started) => started,
            Err(LaunchError::Interrupted) => {
                self.interrupted = true;
                return;
            }
            Err(LaunchError::Setup(why)) => return self.fail(runs, format!("{label}: {why}")),
            Err(LaunchError::Unavailable(why)) => return self.skip(runs, name, &label, why),
            Err(LaunchError::Failed { why, tail }) => {
                return self.fail(
                    runs,
                    with_tail(format!("{label}: did not start: {why}"), &tail),
                );
            }
        };
        eprintln!(
            "{label}: pid {} on 127.0.0.1:{}, CPU(s) {}, {} thread(s)",
            server.pid(),
            server.port,
            format::cpus(&plan.placement.server_cpus),
            plan.placement.server_threads(name)
        );
        if let Some(w) = server.check_affinity(&plan.placement.server_cpus) {
            eprintln!(
                "warning: {label}: {w} (expected {})",
                format::cpus(&plan.placement.server_cpus)
            );
        }
        if let Err(why) = check_workload(&server, workload) {
            let msg = with_tail(format!("{label}: {why}"), &server.stderr_tail());
            server.stop();
            return self.fail(runs, msg);
        }

        let mut left = runs;
        if !plan.warmup.is_zero() {
            let c = plan.conns[0];
            if let Err(stop) = self.warm_up(&mut server, &label, workload, c, plan.warmup) {
                return self.abandon(&mut server, &label, left, stop);
            }
        }
        for &c in &plan.conns {
            if !plan.point_warmup.is_zero() {
                if let Err(stop) = self.warm_up(&mut server, &label, workload, c, plan.point_warmup)
                {
                    return self.abandon(&mut server, &label, left, stop);
                }
            }
            for trial in 1..=plan.trials {
                match self.measure(&mut server, name, workload, c, trial) {
                    Ok(()) => {}
                    Err(Abandon::RunFailed(msg)) => {
                        self.fail(1, format!("{label} c={c} trial {trial}: {msg}"))
                    }
                    Err(stop) => return self.abandon(&mut server, &label, left, stop),
                }
                left -= 1;
            }
        }
        match server.stop() {
            Stopped::Clean => {}
            other => eprintln!(
                "{}",
                with_tail(
                    format!("warning: {label}: did not exit cleanly on SIGTERM ({other:?})"),
                    &server.stderr_tail()
                )
            ),
        }
    }

    /// Stop measuring this server: it died (its remaining runs fail) or
    /// Ctrl-C arrived.
    fn abandon(&mut self, server: &mut Server, label: &str, left: usize, why: Abandon) {
        match why {
            Abandon::Interrupted => {
                self.interrupted = true;
                eprintln!("interrupted: stopping {label}");
                server.stop();
            }
            Abandon::Died(msg) | Abandon::RunFailed(msg) => {
                let status = server
                    .exit_status()
                    .map_or_else(|| "still running".to_string(), |s| s.to_string());
                let tail = server.stderr_tail();
                server.stop();
                self.fail(
                    left,
                    with_tail(
                        format!(
                            "{label}: died mid-sweep ({status}; {left} run(s) not measured): {msg}"
                        ),
                        &tail,
                    ),
                );
            }
        }
    }

    /// A load whose result is discarded.
    fn warm_up(
        &mut self,
        server: &mut Server,
        label: &str,
        workload: Workload,
        connections: u32,
        duration: Duration,
    ) -> Result<(), Abandon> {
        let load = self.load(server, workload, connections, duration);
        match self.client.run(&load, &self.scratch, "warmup") {
            Ok(_) => Ok(()),
            Err(ClientError::Interrupted) => Err(Abandon::Interrupted),
            Err(ClientError::Failed(msg)) => {
                if !server.is_running() {
                    return Err(Abandon::Died(format!(
                        "during a warm-up at c={connections}"
                    )));
                }
                eprintln!("warning: {label}: warm-up at c={connections} failed: {msg}");
                Ok(())
            }
        }
    }

    fn load(
        &self,
        server: &Server,
        workload: Workload,
        connections: u32,
        duration: Duration,
    ) -> Load {
        Load {
            url: format!("http://127.0.0.1:{}{}", server.port, workload.path()),
            path: workload.path().to_string(),
            connections,
            duration,
            pipeline: workload.pipeline(),
            close: workload.closes(),
        }
    }

    /// One run: the server's CPU counters around one client run.
    fn measure(
        &mut self,
        server: &mut Server,
        name: &str,
        workload: Workload,
        connections: u32,
        trial: u32,
    ) -> Result<(), Abandon> {
        let load = self.load(server, workload, connections, self.plan.duration);
        let sample = match measure::run(server, &self.client, &load, &self.scratch, "run") {
            Ok(sample) => sample,
            Err(RunError::Interrupted) => return Err(Abandon::Interrupted),
            Err(RunError::Died(msg)) => return Err(Abandon::Died(msg)),
            Err(RunError::Failed(msg)) => return Err(Abandon::RunFailed(msg)),
        };
        let m = &sample.load;
        let row = self.row(name, workload, connections, trial, m, &sample.server);
        self.done += 1;
        let errors = if m.errors.total() > 0 {
            format!(", errors: {}", m.errors.describe())
        } else {
            String::new()
        };
        eprintln!(
            "{} {name} {workload} c={connections} trial {trial}/{}: {} req/s, p99 {}, cpu {:.1} µs/req{errors}",
            self.counter(),
            self.plan.trials,
            thousands(row.req_per_s),
            latency(row.p99_us),
            row.cpu_us_per_req,
        );
        self.rows.push(row);
        Ok(())
    }

    fn row(
        &self,
        name: &str,
        workload: Workload,
        connections: u32,
        trial: u32,
        m: &Measured,
        u: &Usage,
    ) -> BenchRow {
        let per_req = |s: f64| s * 1e6 / m.requests as f64;
        BenchRow {
            variant: name.to_string(),
            workload: workload.name().to_string(),
            connections,
            trial,
            client: self.client.kind.name().to_string(),
            server_threads: self.plan.placement.server_threads(name) as u32,
            server_cpus: format::cpus(&self.plan.placement.server_cpus),
            client_cpus: format::cpus(&self.plan.placement.client_cpus),
            duration_s: m.duration_s,
            requests: m.requests,
            req_per_s: m.req_per_s,
            p50_us: m.p50_us,
            p90_us: m.p90_us,
            p99_us: m.p99_us,
            p99_9_us: m.p99_9_us,
            max_us: m.max_us,
            errors_connect: m.errors.connect,
            errors_read: m.errors.read,
            errors_write: m.errors.write,
            errors_timeout: m.errors.timeout,
            errors_status: m.errors.status,
            cpu_user_s: u.user_s,
            cpu_system_s: u.system_s,
            cpu_us_per_req: per_req(u.user_s + u.system_s),
            user_us_per_req: per_req(u.user_s),
            system_us_per_req: per_req(u.system_s),
            ctx_switches_voluntary: u.voluntary_ctxt,
            ctx_switches_involuntary: u.involuntary_ctxt,
            peak_rss_kib: u.peak_rss_kib,
            cpu_model: self.machine.cpu_model.clone(),
            cores: self.machine.cores as u32,
            kernel: self.machine.kernel.clone(),
            git_revision: self.machine.git_revision.clone(),
        }
    }

    /// The settings every report file records.
    fn settings(&self, nginx_version: &Option<String>) -> Vec<(String, String)> {
        let p = self.plan;
        let c = &self.client;
        let client = match c.kind {
            ClientKind::Loadgen => format!("loadgen -t {} (--timeout 2s)", c.threads),
            ClientKind::Wrk => format!("wrk -t {} --latency", c.threads),
            ClientKind::Oha => format!("oha --worker-threads {}", c.threads),
        };
        let mut s: Vec<(String, String)> = vec![
            ("client".into(), client),
            ("server CPUs".into(), format::cpus(&p.placement.server_cpus)),
            ("client CPUs".into(), format::cpus(&p.placement.client_cpus)),
            ("server threads".into(), p.placement.threads_summary()),
            ("connections".into(), join(&p.conns)),
            ("trials".into(), p.trials.to_string()),
            ("duration".into(), format::duration(p.duration)),
            (
                "warm-up".into(),
                format!(
                    "{} per server start, {} per connection count",
                    format::duration(p.warmup),
                    format::duration(p.point_warmup)
                ),
            ),
            (
                "workloads".into(),
                p.workloads
                    .iter()
                    .map(|w| format!("{w} (GET {}{})", w.path(), pipeline_note(*w)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("keep-alive".into(), catalog::keep_alive_summary()),
            (
                "open-file caching".into(),
                crate::rig::workload::file_cache_note(&p.workloads),
            ),
            (
                "CPU accounting".into(),
                "server process tree from /proc (threads, children); per request = CPU time / requests"
                    .into(),
            ),
            (
                "nginx".into(),
                match nginx_version {
                    Some(v) if p.servers.iter().any(|s| s == NGINX) => v.clone(),
                    _ if p.servers.iter().any(|s| s == NGINX) => "not installed: skipped".into(),
                    _ => "not run (--no-nginx or not in --variants)".into(),
                },
            ),
        ];
        if p.quick {
            s.push((
                "mode".into(),
                "--quick (smoke check: few, short runs)".into(),
            ));
        }
        s
    }
}

/// Why a server's remaining runs are abandoned (or one run failed).
#[derive(Debug)]
enum Abandon {
    Interrupted,
    /// The server exited (or cannot be read in /proc).
    Died(String),
    /// One run failed; the server is fine.
    RunFailed(String),
}

fn pipeline_note(w: Workload) -> String {
    if w.pipeline() > 1 {
        format!(", {} pipelined", w.pipeline())
    } else {
        String::new()
    }
}

fn join(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_chart_point() {
        assert_eq!(cpu_chart_connections(&[50, 100, 200, 400, 800, 1200]), 400);
        assert_eq!(cpu_chart_connections(&[10, 20, 30]), 20);
    }
}
