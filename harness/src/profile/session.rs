//! One profile session per server: start it as the bench does, put it under
//! a steady load, `perf record` it, count its syscalls over a second load
//! with `perf stat`, stop it, then turn the recording into the per-server
//! files.
//!
//! The two perf runs are kept apart on purpose: counting syscall
//! tracepoints sends every syscall through the kernel's tracing slow path,
//! which would show up in the CPU profile as syscall-entry time the server
//! does not normally spend.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::catalog::{self, NGINX};
use crate::format::{self, minutes};
use crate::machine::Machine;
use crate::rig::client::{Client, ClientError, ClientKind, Load, Measured};
use crate::rig::launch::{check_workload, LaunchError, Launcher};
use crate::rig::measure::with_tail;
use crate::rig::process;
use crate::rig::server::{tail_of, Server, Stopped};
use crate::rig::setup::{self, Ground};

use super::classify::{Breakdown, Bucket};
use super::cli::ProfilePlan;
use super::offcpu::{self, OffCpu};
use super::perf::{self, Perf};
use super::stacks::{self, SCRIPT_FIELDS};
use super::syscalls::{self, SyscallProfile};
use super::window::{self, CpuSource, Window};
use super::Owner;
use super::{BucketShare, SymbolShare, VariantProfile};

/// The load outlives the recording by this much, so perf never sees the
/// load generator's teardown.
const LOAD_TAIL: Duration = Duration::from_millis(500);
/// The off-CPU load runs this long before perf starts recording it.
const OFF_CPU_RAMP: Duration = Duration::from_millis(500);
/// A perf run still going this long past its expected end is stopped.
const PERF_OVERRUN: Duration = Duration::from_secs(30);
/// Frames narrower than this many pixels are left out of the flame graph.
const FLAME_MIN_WIDTH_PX: f64 = 0.3;
/// `perf report` lines below this percent of samples are left out.
const REPORT_PERCENT_LIMIT: &str = "0.3";

/// What a run produced.
pub struct Outcome {
    /// One profile per server that succeeded.
    pub profiles: Vec<VariantProfile>,
    /// One message per server that failed (stderr tails included).
    pub failures: Vec<String>,
    /// Skipped servers and warnings worth repeating at the end.
    pub notes: Vec<String>,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
}

/// Why one server's session ended without a profile.
enum Stop {
    Interrupted,
    Failed(String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Failed(e.to_string())
    }
}

/// Profile every server of the plan in turn. Err only when nothing can be
/// profiled at all (no loadgen, unwritable --out).
pub fn run(plan: &ProfilePlan, perf: &Perf) -> Result<Outcome, String> {
    fs::create_dir_all(&plan.out)
        .map_err(|e| format!("cannot create --out {}: {e}", plan.out.display()))?;
    if !plan.loadgen.is_file() {
        return Err(format!(
            "loadgen not found at {}: build it with `cargo build --release -p harness`",
            plan.loadgen.display()
        ));
    }
    let mut notes = plan.warnings.clone();
    let mut servers = plan.servers.clone();
    let nginx_bin = setup::nginx_or_skip(&mut servers, &mut notes);
    notes.extend(setup::busy_machine_note(
        "before profiling",
        "other work on this machine competes with the server and the load \
         (see each server's CPU busy % in its profile)",
    ));
    for n in &notes {
        eprintln!("warning: {n}");
    }

    // Before pinning (in `Ground::prepare`): it counts the CPUs this process may use.
    let machine = Machine::detect();
    let ground = Ground::prepare("profile-run", &plan.placement.client_cpus)?;
    let client = Client {
        kind: ClientKind::Loadgen,
        program: plan.loadgen.clone(),
        cpus: plan.placement.client_cpus.clone(),
        threads: plan.placement.client_threads(),
        wrk_pipeline_script: None,
    };
    let effective = ProfilePlan {
        servers: servers.clone(),
        ..plan.clone()
    };
    eprintln!(
        "harness profile: {} server(s) ({}), about {} in all",
        servers.len(),
        servers.join(", "),
        minutes(effective.estimate())
    );
    eprintln!(
        "  each: GET {} at {} connections (loadgen -t {} on CPU(s) {}), server on CPU(s) {}; \
         {} warm-up, perf record for {}, syscalls counted over {}",
        plan.workload.path(),
        plan.connections,
        client.threads,
        format::cpus(&plan.placement.client_cpus),
        format::cpus(&plan.placement.server_cpus),
        secs(plan.warmup),
        secs(plan.record),
        secs(plan.syscall_window),
    );

    let mut session = Session {
        plan,
        perf,
        launcher: Launcher {
            placement: &plan.placement,
            bin_dir: &plan.bin_dir,
            max_conns: plan.connections,
            docroot: ground.docroot.path(),
            nginx_bin,
            nofile_hard: ground.nofile_hard,
            file_cache: plan.workload.file_cache(),
        },
        scratch: ground.scratch().to_path_buf(),
        client,
        machine,
    };
    let mut outcome = Outcome {
        profiles: Vec::new(),
        failures: Vec::new(),
        notes,
        interrupted: false,
    };
    let started = Instant::now();
    let per_server = effective.estimate() / servers.len().max(1) as u32;
    for (i, name) in servers.iter().enumerate() {
        let left = per_server * (servers.len() - i) as u32;
        eprintln!(
            "[{}/{}] {name}: profiling (about {} left, {} elapsed)",
            i + 1,
            servers.len(),
            minutes(left),
            minutes(started.elapsed())
        );
        match session.profile(name) {
            Ok(p) => {
                eprintln!(
                    "[{}/{}] {name}: {} samples, kernel {:.1}%, {:.2} CPU µs/request, \
                     {:.2} syscalls/request, {:.0} req/s under load → {}",
                    i + 1,
                    servers.len(),
                    p.samples,
                    p.kernel_pct,
                    p.cpu_us_per_request,
                    p.syscalls.per_request(),
                    p.load_req_per_s,
                    plan.out.join(name).display()
                );
                outcome.profiles.push(p);
            }
            Err(Stop::Interrupted) => {
                eprintln!("interrupted: {name} and its load are stopped");
                outcome.interrupted = true;
                break;
            }
            Err(Stop::Failed(msg)) => {
                eprintln!("[{}/{}] FAILED {msg}", i + 1, servers.len());
                outcome.failures.push(msg);
            }
        }
    }
    Ok(outcome)
}

fn secs(d: Duration) -> String {
    format::duration(d)
}

struct Session<'a> {
    plan: &'a ProfilePlan,
    perf: &'a Perf,
    launcher: Launcher<'a>,
    scratch: PathBuf,
    client: Client,
    machine: Machine,
}

/// What the two measured phases gave.
struct Measurements {
    perf_record: String,
    /// The recording's CPU time, requests and CPU busy %.
    window: Window,
    /// The server's processes when the recording started.
    pids: Vec<u32>,
    load: Measured,
    syscalls: SyscallProfile,
    /// Where the threads waited, if recorded.
    off_cpu: Option<OffCpu>,
    notes: Vec<String>,
}

impl Session<'_> {
    fn profile(&mut self, name: &str) -> Result<VariantProfile, Stop> {
        let plan = self.plan;
        let dir = plan.out.join(name);
        fs::create_dir_all(&dir)
            .map_err(|e| Stop::Failed(format!("{name}: creating {}: {e}", dir.display())))?;
        if name != NGINX && !plan.bin_dir.join(name).is_file() {
            return Err(Stop::Failed(format!(
                "{name}: {} not found: build the servers with frame pointers (`just \
                 build-profiling`), or point --bin-dir at a build",
                plan.bin_dir.join(name).display()
            )));
        }
        let (mut server, _prefix) = match self.launcher.start(name, &self.scratch, name) {
            Ok(s) => s,
            Err(LaunchError::Interrupted) => return Err(Stop::Interrupted),
            Err(LaunchError::Setup(why) | LaunchError::Unavailable(why)) => {
                return Err(Stop::Failed(format!("{name}: {why}")))
            }
            Err(LaunchError::Failed { why, tail }) => {
                return Err(Stop::Failed(with_tail(
                    format!("{name}: did not start: {why}"),
                    &tail,
                )))
            }
        };
        eprintln!(
            "  {name}: pid {} on 127.0.0.1:{}, CPU(s) {}, {} thread(s)",
            server.pid(),
            server.port,
            format::cpus(&plan.placement.server_cpus),
            plan.placement.server_threads(name)
        );
        if let Some(w) = server.check_affinity(&plan.placement.server_cpus) {
            eprintln!("warning: {name}: {w}");
        }
        if let Err(why) = check_workload(&server, plan.workload) {
            let msg = with_tail(format!("{name}: {why}"), &server.stderr_tail());
            server.stop();
            return Err(Stop::Failed(msg));
        }
        let measured = self.measure(&mut server, name, &dir);
        let stopped = server.stop();
        let mut m = measured?;
        if stopped != Stopped::Clean {
            m.notes
                .push(format!("did not exit cleanly on SIGTERM ({stopped:?})"));
        }
        self.write_files(name, &dir, m)
    }

    /// The recording, then the syscall count, each under its own load.
    fn measure(
        &mut self,
        server: &mut Server,
        name: &str,
        dir: &Path,
    ) -> Result<Measurements, Stop> {
        let plan = self.plan;
        let mut notes = Vec::new();

        // 1. perf record under a steady load.
        let load = self.load(server, plan.warmup + plan.record + LOAD_TAIL);
        let mut running = self
            .client
            .start(&load, &self.scratch, &format!("{name}-record"))
            .map_err(|e| client_failure(name, e))?;
        let until = Instant::now() + plan.warmup;
        while Instant::now() < until {
            if process::interrupted() {
                return Err(Stop::Interrupted);
            }
            if !server.is_running() {
                return Err(died(server, name, "during the warm-up"));
            }
            if !running.is_running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let pids = server.tree_pids();
        let cpus = format::cpus(&plan.placement.server_cpus);
        let data = dir.join("perf.data");
        let mut args: Vec<String> = vec![
            "record".into(),
            "-e".into(),
            "cpu-clock".into(),
            "-g".into(),
            "-a".into(),
            "-C".into(),
            cpus.clone(),
        ];
        args.extend([
            "-o".into(),
            data.to_string_lossy().into_owned(),
            "--".into(),
            "sleep".into(),
            format!("{:.3}", plan.record.as_secs_f64()),
        ]);
        let perf_record = format!("perf {}", args.join(" "));
        eprintln!(
            "  {name}: recording {} (all of CPU(s) {cpus}, kept: {}) under {} connections",
            secs(plan.record),
            owner_text(name, &pids),
            plan.connections
        );
        let log = self.scratch.join(format!("{name}.perf-record.log"));
        let nginx = name == NGINX;
        let opened = window::open(server, nginx, &plan.placement.server_cpus);
        let mut rec = self.spawn_perf(&args, &log)?;
        let status = self.wait_perf(&mut rec, plan.record + PERF_OVERRUN)?;
        let window = opened.close(server, nginx, &plan.placement.server_cpus);
        let measured = running.finish();
        if !server.is_running() {
            return Err(died(server, name, "while perf recorded it"));
        }
        if !status.success() {
            return Err(Stop::Failed(format!(
                "{name}: perf record exited with {status}:\n{}",
                tail_of(&log, 12)
            )));
        }
        let load_m = match measured {
            Ok(m) => m,
            Err(ClientError::Interrupted) => return Err(Stop::Interrupted),
            Err(ClientError::Failed(msg)) => {
                return Err(Stop::Failed(format!("{name}: the load failed: {msg}")))
            }
        };
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = log_text.lines().find(|l| l.contains("lost")) {
            notes.push(format!("perf record: {}", l.trim()));
        }

        // 2. perf stat over a second load of known size.
        eprintln!(
            "  {name}: counting syscalls over {}",
            secs(plan.syscall_window)
        );
        let syscalls = self.count_syscalls(server, name)?;
        if !server.is_running() {
            return Err(died(server, name, "while its syscalls were counted"));
        }

        // 3. Where the threads wait, over a third load.
        let off_cpu = if plan.off_cpu_window.is_zero() {
            None
        } else {
            eprintln!(
                "  {name}: recording off-CPU time over {}",
                secs(plan.off_cpu_window)
            );
            match self.record_off_cpu(server, name, dir)? {
                Ok(off) => Some(off),
                Err(why) => {
                    notes.push(format!("no off-CPU profile: {why}"));
                    None
                }
            }
        };
        if !server.is_running() {
            return Err(died(server, name, "while its off-CPU time was recorded"));
        }
        Ok(Measurements {
            perf_record,
            window,
            pids,
            load: load_m,
            syscalls,
            off_cpu,
            notes,
        })
    }

    fn load(&self, server: &Server, duration: Duration) -> Load {
        let w = self.plan.workload;
        Load {
            url: format!("http://127.0.0.1:{}{}", server.port, w.path()),
            path: w.path().to_string(),
            connections: self.plan.connections,
            duration,
            pipeline: w.pipeline(),
            close: w.closes(),
        }
    }

    /// perf, confined to the client CPUs (it must not steal the server's
    /// CPU), output to `log`.
    fn spawn_perf(&self, args: &[String], log: &Path) -> Result<Child, Stop> {
        let out = File::create(log)?;
        let mut cmd = self.perf.command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        process::confine(&mut cmd, &self.plan.placement.client_cpus)?;
        cmd.spawn()
            .map_err(|e| Stop::Failed(format!("starting perf: {e}")))
    }

    /// Wait for a perf run to end by itself within `limit`; Ctrl-C stops
    /// it (SIGINT: perf still writes what it has).
    fn wait_perf(&self, child: &mut Child, limit: Duration) -> Result<ExitStatus, Stop> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(st);
            }
            if process::interrupted() {
                stop_child(child);
                return Err(Stop::Interrupted);
            }
            if Instant::now() >= deadline {
                stop_child(child);
                return Err(Stop::Failed(format!(
                    "perf still running {PERF_OVERRUN:?} after its expected end: stopped"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `perf record -e sched:sched_switch -g` on the server's CPUs under a
    /// load, folded into the server's off-CPU stacks ([`offcpu`]). Its
    /// failure is returned as the inner error: the on-CPU figures stand
    /// without it.
    fn record_off_cpu(
        &mut self,
        server: &Server,
        name: &str,
        dir: &Path,
    ) -> Result<Result<OffCpu, String>, Stop> {
        let plan = self.plan;
        let data = dir.join("offcpu.data");
        let args: Vec<String> = vec![
            "record".into(),
            "-e".into(),
            "sched:sched_switch".into(),
            "-g".into(),
            "-a".into(),
            "-C".into(),
            format::cpus(&plan.placement.server_cpus),
            "-o".into(),
            data.to_string_lossy().into_owned(),
            "--".into(),
            "sleep".into(),
            format!("{:.3}", plan.off_cpu_window.as_secs_f64()),
        ];
        let pids = server.tree_pids();
        let owner = owner_of(name, &pids);
        let load = self.load(server, OFF_CPU_RAMP + plan.off_cpu_window + LOAD_TAIL);
        let running = self
            .client
            .start(&load, &self.scratch, &format!("{name}-offcpu"))
            .map_err(|e| client_failure(name, e))?;
        std::thread::sleep(OFF_CPU_RAMP);
        let log = self.scratch.join(format!("{name}.perf-offcpu.log"));
        let mut rec = self.spawn_perf(&args, &log)?;
        let status = self.wait_perf(&mut rec, plan.off_cpu_window + PERF_OVERRUN)?;
        match running.finish() {
            Err(ClientError::Interrupted) => return Err(Stop::Interrupted),
            Err(ClientError::Failed(msg)) => return Ok(Err(format!("the load failed: {msg}"))),
            Ok(_) => {}
        }
        if !status.success() {
            return Ok(Err(format!(
                "perf record -e sched:sched_switch exited with {status}: {}",
                tail_of(&log, 4).trim()
            )));
        }
        let mut script = self
            .perf
            .command()
            .args(["script", "-i"])
            .arg(&data)
            .args(["-F", offcpu::SCRIPT_FIELDS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Stop::Failed(format!("{name}: starting perf script: {e}")))?;
        let stdout = script
            .stdout
            .take()
            .ok_or_else(|| Stop::Failed("perf script: no stdout".into()))?;
        let folded = offcpu::fold(BufReader::new(stdout), &owner);
        script.wait()?;
        Ok(folded.map_err(|e| format!("reading perf script: {e}")))
    }

    /// `perf stat` started disabled, enabled through its control FIFO just
    /// before the load starts and disabled when it ends, so the counts
    /// cover exactly the requests loadgen reports.
    fn count_syscalls(&mut self, server: &Server, name: &str) -> Result<SyscallProfile, Stop> {
        let plan = self.plan;
        let ctl = self.scratch.join(format!("{name}.ctl"));
        let ack = self.scratch.join(format!("{name}.ack"));
        for f in [&ctl, &ack] {
            let _ = fs::remove_file(f);
            perf::mkfifo(f)?;
        }
        // Opened read-write: never blocks, whether perf has opened its end yet or not.
        let mut ctl_f = OpenOptions::new().read(true).write(true).open(&ctl)?;
        let mut ack_f = OpenOptions::new().read(true).write(true).open(&ack)?;
        let csv = self.scratch.join(format!("{name}.stat.csv"));
        let events = syscalls::events(syscalls::tracefs().as_deref()).join(",");
        let (target, _) = perf_target(name, server, &self.plan.placement.server_cpus);
        let mut args: Vec<String> = vec![
            "stat".into(),
            "-x,".into(),
            "-o".into(),
            csv.to_string_lossy().into_owned(),
            "-D".into(),
            "-1".into(),
            "--control".into(),
            format!("fifo:{},{}", ctl.display(), ack.display()),
            "-e".into(),
            events,
        ];
        args.extend(target);
        let command = format!(
            "perf stat -x, -e {},syscalls:sys_enter_{{{} tracked syscalls}} -p PIDS (enabled for the load only)",
            syscalls::TOTAL_EVENT,
            syscalls::TRACKED.len()
        );
        let log = self.scratch.join(format!("{name}.perf-stat.log"));
        let mut stat = self.spawn_perf(&args, &log)?;
        let failed =
            |why: &str| Stop::Failed(format!("{name}: perf stat {why}:\n{}", tail_of(&log, 12)));
        // Opening ~50 events per thread takes perf a second or two here.
        if !command_acked(
            &mut ctl_f,
            &mut ack_f,
            "enable",
            &mut stat,
            Duration::from_secs(30),
        )? {
            stop_child(&mut stat);
            return Err(failed("never enabled its counters"));
        }
        let load = self.load(server, plan.syscall_window);
        let result = self
            .client
            .run(&load, &self.scratch, &format!("{name}-syscalls"));
        let disabled = command_acked(
            &mut ctl_f,
            &mut ack_f,
            "disable",
            &mut stat,
            Duration::from_secs(10),
        )?;
        stop_child(&mut stat);
        let m = match result {
            Ok(m) => m,
            Err(ClientError::Interrupted) => return Err(Stop::Interrupted),
            Err(ClientError::Failed(msg)) => {
                return Err(Stop::Failed(format!("{name}: the load failed: {msg}")))
            }
        };
        if !disabled {
            return Err(failed("did not acknowledge the end of the load"));
        }
        let text = fs::read_to_string(&csv).unwrap_or_default();
        let counts = syscalls::parse_stat_csv(&text).map_err(|e| failed(&e))?;
        if counts.total == 0 || m.requests == 0 {
            return Err(failed(&format!(
                "counted {} syscalls for {} requests: nothing to divide",
                counts.total, m.requests
            )));
        }
        Ok(SyscallProfile {
            counts,
            requests: m.requests,
            window_s: m.duration_s,
            command,
        })
    }

    /// perf script → collapsed stacks → buckets and flame graph; perf
    /// report; then every file of the server's directory.
    fn write_files(&self, name: &str, dir: &Path, m: Measurements) -> Result<VariantProfile, Stop> {
        let plan = self.plan;
        let data = dir.join("perf.data");
        let log = self.scratch.join(format!("{name}.perf-script.log"));
        let mut script = self
            .perf
            .command()
            .args(["script", "-i"])
            .arg(&data)
            .args(["-F", SCRIPT_FIELDS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .map_err(|e| Stop::Failed(format!("{name}: starting perf script: {e}")))?;
        let stdout = script
            .stdout
            .take()
            .ok_or_else(|| Stop::Failed("perf script: no stdout".into()))?;
        let collapsed = stacks::collapse_with_pids(BufReader::new(stdout));
        let status = script.wait()?;
        let collapsed = collapsed
            .map_err(|e| Stop::Failed(format!("{name}: collapsing perf script's stacks: {e}")))?;
        if !status.success() || collapsed.trim().is_empty() {
            return Err(Stop::Failed(format!(
                "{name}: perf script ({status}) gave no stack:\n{}",
                tail_of(&log, 12)
            )));
        }
        let (collapsed, source) = server_stacks(name, &collapsed, &m.pids)
            .map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
        let breakdown = Breakdown::from_collapsed(&collapsed)
            .map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
        let (us_per_request, window_notes) = m.window.us_per_request(source);
        let mut notes = m.notes;
        notes.extend(window_notes);

        let load_text = format!(
            "GET {} at {} connections",
            plan.workload.path(),
            plan.connections
        );
        let title = format!("{name}: {load_text}");
        let subtitle = format!(
            "perf record -e cpu-clock -g, {} · {} samples · kernel {:.1}% · kernel frames blue, user frames red/yellow · revision {}",
            secs(plan.record),
            breakdown.total,
            breakdown.kernel_share(),
            self.machine.git_revision
        );
        let mut svg = Vec::new();
        stacks::flamegraph(&collapsed, &title, &subtitle, FLAME_MIN_WIDTH_PX, &mut svg)?;
        write(&dir.join("flamegraph.svg"), &svg)?;

        if let Some(off) = &m.off_cpu {
            self.write_off_cpu(name, dir, off, &load_text)?;
        }
        let mut report = self.perf_report(&data, name, &m.pids, &m.perf_record, &load_text)?;
        report.push_str(&bucket_table(&breakdown));
        write(&dir.join("report.txt"), report.as_bytes())?;
        // Not committed (see .gitignore): for re-rendering or diffing flame graphs.
        write(&dir.join("stacks.folded"), collapsed.as_bytes())?;

        let profile = VariantProfile {
            variant: name.to_string(),
            workload: plan.workload.name().to_string(),
            request: format!("GET {}", plan.workload.path()),
            connections: plan.connections,
            record_s: plan.record.as_secs_f64(),
            server_cpus: format::cpus(&plan.placement.server_cpus),
            client_cpus: format::cpus(&plan.placement.client_cpus),
            server_threads: plan.placement.server_threads(name),
            samples: breakdown.total,
            buckets: Bucket::ALL
                .iter()
                .map(|b| BucketShare {
                    bucket: b.name().to_string(),
                    samples: breakdown.count(*b),
                    share_pct: breakdown.share(*b),
                    us_per_request: breakdown.share(*b) / 100.0 * us_per_request,
                })
                .collect(),
            user_pct: 100.0 - breakdown.kernel_share(),
            kernel_pct: breakdown.kernel_share(),
            top_symbols: breakdown
                .top_symbols(10)
                .into_iter()
                .map(|(symbol, self_pct)| SymbolShare { symbol, self_pct })
                .collect(),
            complete_user_stacks_pct: breakdown.complete_user_share(),
            load_req_per_s: m.load.req_per_s,
            window_requests: m.window.requests.as_ref().map_or(0, |n| n.round() as u64),
            cpu_us_per_request: us_per_request,
            cpu_time_source: source.describe(),
            server_cpus_busy_pct: m.window.cpus_busy_pct,
            server_cpu_pct: m.window.cpu_s(source) * 100.0 / m.window.wall.as_secs_f64(),
            proc_system_pct: m.window.tree.map_or(0.0, |u| {
                if u.user_s + u.system_s > 0.0 {
                    u.system_s * 100.0 / (u.user_s + u.system_s)
                } else {
                    0.0
                }
            }),
            syscalls: m.syscalls,
            off_cpu: m.off_cpu.as_ref().map(OffCpu::summary),
            perf_record: m.perf_record,
            perf_version: self.perf.version.clone(),
            machine: self.machine.clone(),
            notes,
        };
        super::summary::write_buckets_csv(
            &dir.join("buckets.csv"),
            &super::summary::rows_of(&profile),
        )?;
        write(
            &dir.join("syscalls.txt"),
            profile.syscalls.render(name, &load_text).as_bytes(),
        )?;
        let json = serde_json::to_string_pretty(&profile)
            .map_err(|e| Stop::Failed(format!("{name}: profile.json: {e}")))?;
        write(&dir.join("profile.json"), format!("{json}\n").as_bytes())?;
        Ok(profile)
    }

    /// offcpu.svg (and offcpu.folded, not committed) of one server.
    fn write_off_cpu(&self, name: &str, dir: &Path, off: &OffCpu, load: &str) -> Result<(), Stop> {
        let collapsed = off.collapsed();
        write(&dir.join("offcpu.folded"), collapsed.as_bytes())?;
        if collapsed.is_empty() {
            return Ok(());
        }
        let s = off.summary();
        let title = format!("{name}: off-CPU time under {load}");
        let subtitle = format!(
            "perf record -e sched:sched_switch -g -a -C {}, {} · {:.2} thread-seconds off the CPU in {} waits · width = µs waited · revision {}",
            format::cpus(&self.plan.placement.server_cpus),
            secs(self.plan.off_cpu_window),
            s.off_cpu_s,
            s.waits,
            self.machine.git_revision
        );
        let mut svg = Vec::new();
        stacks::flamegraph_of(
            &collapsed,
            &title,
            &subtitle,
            FLAME_MIN_WIDTH_PX,
            "µs",
            &mut svg,
        )?;
        write(&dir.join("offcpu.svg"), &svg)
    }

    /// `perf report --stdio --no-children`, flat (no call graphs: the
    /// flame graph has them), under a header saying what was recorded.
    fn perf_report(
        &self,
        data: &Path,
        name: &str,
        pids: &[u32],
        record: &str,
        load: &str,
    ) -> Result<String, Stop> {
        // The server's own samples, as the buckets and the flame graph have them.
        let only = if records_cpus(name) {
            format!("--comms={}", comm_of(name))
        } else {
            format!("--pid={}", pid_list(pids))
        };
        let args = [
            "report",
            "--stdio",
            "--no-children",
            "-g",
            "none",
            "--fields",
            "overhead,comm,dso,sym",
            "--percent-limit",
            REPORT_PERCENT_LIMIT,
            "--percentage",
            "relative",
            &only,
        ];
        let out = self
            .perf
            .command()
            .args(args)
            .arg("-i")
            .arg(data)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Stop::Failed(format!("{name}: running perf report: {e}")))?;
        if !out.status.success() {
            return Err(Stop::Failed(format!(
                "{name}: perf report exited with {}:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(format!(
            "# harness profile: {name} under {load}, server on CPU(s) {}\n# {record}\n# perf {} -i perf.data\n# ({}; revision {})\n{}",
            format::cpus(&self.plan.placement.server_cpus),
            args.join(" "),
            self.perf.version,
            self.machine.git_revision,
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// The bucket breakdown as text for report.txt: each bucket's share and the
/// frames that decided most of its samples, so the classifier's work can be
/// checked against perf's own list above it.
fn bucket_table(b: &Breakdown) -> String {
    let mut s = format!(
        "\n# Buckets (DESIGN §7 classifier, harness/src/profile/classify.rs) over {} samples:\n\
         # bucket               share   frames that decided the most samples (% of all samples)\n",
        b.total
    );
    for bucket in Bucket::ALL {
        let top = b
            .top_deciders(bucket, 6)
            .into_iter()
            .map(|(f, p)| format!("{f} {p:.1}"))
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!(
            "  {:<20} {:>5.1}%   {}\n",
            bucket.name(),
            b.share(bucket),
            top
        ));
    }
    s.push_str(&format!(
        "# user {:.1}%, kernel {:.1}%; user stacks reaching the program's or a thread's entry: {:.0}%\n",
        100.0 - b.kernel_share(),
        b.kernel_share(),
        b.complete_user_share()
    ));
    s
}

fn write(path: &Path, data: &[u8]) -> Result<(), Stop> {
    fs::write(path, data).map_err(|e| Stop::Failed(format!("writing {}: {e}", path.display())))
}

/// What `perf stat` counts syscalls of: the server's processes and threads
/// (`-p`; the counts are not times, so per-process events cost nothing
/// that matters here), or, for a model that forks a process per connection
/// (whose children come and go faster than perf can attach, and which
/// `perf -p` does not follow), everything on the server's CPUs (`-a -C`),
/// which the placement gives the server alone.
fn perf_target(name: &str, server: &Server, cpus: &[usize]) -> (Vec<String>, String) {
    if records_cpus(name) {
        let list = format::cpus(cpus);
        let what = format!("all of CPU(s) {list}");
        (vec!["-a".into(), "-C".into(), list], what)
    } else {
        let pids = pid_list(&server.tree_pids());
        (vec!["-p".into(), pids.clone()], format!("pids {pids}"))
    }
}

/// Whether `name` is recorded CPU-wide (a process per connection).
fn records_cpus(name: &str) -> bool {
    catalog::variant(name)
        .is_some_and(|v| v.processes == servers::variants::Processes::PerConnection)
}

/// The server's processes, as they are told apart in a CPU-wide
/// recording: by pid, or, for a process per connection (children that
/// come and go faster than they can be listed), by name.
fn owner_of<'a>(name: &'a str, pids: &'a [u32]) -> Owner<'a> {
    if records_cpus(name) {
        Owner::Comm(comm_of(name))
    } else {
        Owner::Pids(pids)
    }
}

/// `name` as the kernel keeps a process's name (15 bytes).
fn comm_of(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// For the progress line: which samples are the server's.
fn owner_text(name: &str, pids: &[u32]) -> String {
    if records_cpus(name) {
        format!("processes named {}", comm_of(name))
    } else {
        format!("pids {}", pid_list(pids))
    }
}

/// The server's own stacks of a CPU-wide recording (collapsed with pids)
/// and where its CPU time is to come from: the process tree's /proc
/// accounting, or, for a process per connection, the CPUs' busy time split
/// by the server's share of their samples. None of the samples being the
/// server's is an error that says what ran instead.
fn server_stacks(name: &str, collapsed: &str, pids: &[u32]) -> Result<(String, CpuSource), String> {
    let (kept, share) = stacks::keep_owned(collapsed, &owner_of(name, pids));
    if kept.is_empty() {
        let ran = stacks::top_roots(collapsed, 4)
            .iter()
            .map(|(c, pct)| format!("{c} {pct:.0}%"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "none of the samples on the server's CPUs was the server's ({}; they ran: {ran}): \
             something else had those CPUs",
            owner_text(name, pids)
        ));
    }
    let source = if records_cpus(name) {
        CpuSource::CpusShare(share)
    } else {
        CpuSource::Tree
    };
    Ok((kept, source))
}

fn pid_list(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// SIGINT (perf finishes its output), then SIGKILL if it lingers.
fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        process::signal(child.id(), libc::SIGINT);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        process::signal_group(child.id(), libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Send `cmd` on perf's control FIFO and wait for its `ack`; false when
/// perf exits or `limit` passes first.
fn command_acked(
    ctl: &mut File,
    ack: &mut File,
    cmd: &str,
    perf: &mut Child,
    limit: Duration,
) -> io::Result<bool> {
    ctl.write_all(format!("{cmd}\n").as_bytes())?;
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: ack.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n > 0 {
            let mut buf = [0u8; 64];
            let k = ack.read(&mut buf)?;
            got.extend_from_slice(&buf[..k]);
            if got.windows(3).any(|w| w == b"ack") {
                return Ok(true);
            }
        }
        if perf.try_wait()?.is_some() {
            return Ok(false);
        }
    }
    Ok(false)
}

fn died(server: &mut Server, name: &str, when: &str) -> Stop {
    let status = server
        .exit_status()
        .map_or_else(|| "still running".to_string(), |s| s.to_string());
    Stop::Failed(with_tail(
        format!("{name} died {when} ({status})"),
        &server.stderr_tail(),
    ))
}

fn client_failure(name: &str, e: ClientError) -> Stop {
    match e {
        ClientError::Interrupted => Stop::Interrupted,
        ClientError::Failed(msg) => Stop::Failed(format!("{name}: the load did not start: {msg}")),
    }
}
