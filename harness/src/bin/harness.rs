//! `harness`: the bench runner and the profiler. This file is only the
//! edge: the command line, the Ctrl-C handler, the report files, the
//! messages and the exit code; the work is in `harness::bench` and
//! `harness::profile`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::bench::{self, cli::BenchArgs, sweep};
use harness::compare::{self, cli::CompareArgs};
use harness::format::thousands;
use harness::merge::{self, cli::MergeArgs};
use harness::profile::cli::{ProfileArgs, Request};
use harness::profile::perf::Perf;
use harness::profile::{session, summary};
use harness::report;
use harness::rig::process;
use harness::soak::{self, cli::SoakArgs};
use harness::versus::{self, clients::ClientsArgs, nginx::VsNginxArgs};

/// Benchmarks for the server variants: sweeps, reports and perf profiles.
#[derive(Parser, Debug)]
#[command(name = "harness", version, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sweep connection counts over each variant and nginx, pinned to
    /// disjoint CPUs, and write CSV, PNG and summary.md reports.
    #[command(args_override_self = true)]
    Bench(BenchArgs),
    /// Put a variant (or nginx) under load and perf record it: perf report,
    /// flame graph, time per bucket, syscalls per request; with --all, the
    /// bottleneck-migration chart across every variant and nginx.
    #[command(args_override_self = true)]
    Profile(ProfileArgs),
    /// Two builds of one variant side by side (and nginx), alternating
    /// loads: median CPU µs per request and req/s of each, new/old.
    #[command(args_override_self = true)]
    Compare(CompareArgs),
    /// One variant for a long time under well-behaved and hostile clients,
    /// then checks of what the load left behind: RSS, descriptors, child
    /// processes, /stats, statuses, a clean exit.
    #[command(args_override_self = true)]
    Soak(SoakArgs),
    /// The variant catalog: name and model, one per line.
    Variants(VariantsArgs),
    /// wrk -t1 against each variant and nginx, pinned apart: req/s,
    /// latency, CPU and syscalls per request, ratios to nginx.
    #[command(name = "bench-vs-nginx", args_override_self = true)]
    BenchVsNginx(VsNginxArgs),
    /// Load generators side by side (loadgen, wrk, oha when installed),
    /// pinned alike and alternating against one nginx: req/s and CPU per
    /// request of each client and of nginx under each, ratios to loadgen.
    #[command(args_override_self = true)]
    Clients(ClientsArgs),
    /// `clients` as it was first named: wrk and loadgen unless --clients
    /// says otherwise.
    #[command(name = "loadgen-vs-wrk", args_override_self = true, hide = true)]
    LoadgenVsWrk(ClientsArgs),
    /// Several loadgen --json results (processes or machines driving one
    /// server at once) as one: counts and errors summed, histograms added.
    #[command(args_override_self = true)]
    Merge(MergeArgs),
}

/// `harness variants` options.
#[derive(clap::Args, Debug)]
struct VariantsArgs {
    /// Print the names only
    #[arg(long)]
    names: bool,
    /// Exit 2 with a message unless NAME is in the catalog (silent otherwise)
    #[arg(long, value_name = "NAME")]
    check: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => match bench_cmd(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("harness bench: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Profile(args) => match profile_cmd(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("harness profile: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Compare(args) => match compare_cmd(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("harness compare: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Soak(args) => match soak_cmd(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("harness soak: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Variants(args) => variants_cmd(&args),
        Command::BenchVsNginx(args) => {
            versus_cmd("bench-vs-nginx", |dir| versus::nginx::run(&args, dir))
        }
        Command::Clients(args) => versus_cmd("clients", |dir| versus::clients::run(&args, dir)),
        Command::LoadgenVsWrk(mut args) => {
            if args.clients.is_empty() {
                args.clients = vec!["wrk".into(), "loadgen".into()];
            }
            versus_cmd("loadgen-vs-wrk", |dir| versus::clients::run(&args, dir))
        }
        Command::Merge(args) => match merge_cmd(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("harness merge: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn merge_cmd(args: &MergeArgs) -> anyhow::Result<()> {
    let done = merge::run(args).map_err(anyhow::Error::msg)?;
    print!("{}", done.text);
    if let Some(path) = &args.json {
        std::fs::write(path, &done.json)
            .with_context(|| format!("writing --json {}", path.display()))?;
    }
    for w in &done.warnings {
        eprintln!("harness merge: warning: {w}");
    }
    Ok(())
}

/// The edge of the two head-to-head benchmarks: Ctrl-C handler, the
/// message of a run that cannot start, the exit code.
fn versus_cmd(cmd: &str, run: impl FnOnce(&std::path::Path) -> Result<u8, String>) -> ExitCode {
    let prepared = own_dir().and_then(|dir| {
        process::install_interrupt_handler().context("installing the Ctrl-C handler")?;
        Ok(dir)
    });
    let dir = match prepared {
        Ok(d) => d,
        Err(e) => {
            eprintln!("harness {cmd}: {e:#}");
            return ExitCode::from(1);
        }
    };
    match run(&dir) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("harness {cmd}: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn variants_cmd(args: &VariantsArgs) -> ExitCode {
    use servers::variants::{find, names, VARIANTS};
    if let Some(name) = &args.check {
        if find(name).is_some() {
            return ExitCode::SUCCESS;
        }
        let all: Vec<&str> = names().collect();
        eprintln!("unknown variant '{name}': pick one of {}", all.join(" "));
        return ExitCode::from(2);
    }
    let width = names().map(str::len).max().unwrap_or(0);
    for v in VARIANTS {
        if args.names {
            println!("{}", v.name);
        } else {
            println!("{:<width$}  {}", v.name, v.model);
        }
    }
    ExitCode::SUCCESS
}

fn compare_cmd(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.plan(&process::allowed_cpus(), own_dir()?) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("harness compare: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    process::install_interrupt_handler().context("installing the Ctrl-C handler")?;
    let outcome = match compare::run(&plan) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("harness compare: {msg}");
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "\n{} old ({}) vs new ({}), medians of {} pair(s) of {} runs:",
        plan.variant,
        plan.old_bin_dir.display(),
        plan.new_bin_dir.display(),
        plan.pairs,
        harness::format::duration(plan.duration)
    );
    print!("{}", compare::table(&outcome.rows, &plan.conns));
    if let Some(path) = &plan.csv {
        harness::report::csv::write_rows(path, &compare::csv_rows(&outcome.rows, &plan.conns))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("CSV written to {}", path.display());
    }
    finish(
        "compare",
        &outcome.notes,
        &outcome.failures,
        outcome.interrupted,
    )
}

fn soak_cmd(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.plan(&process::allowed_cpus(), own_dir()?) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("harness soak: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    process::install_interrupt_handler().context("installing the Ctrl-C handler")?;
    let outcome = match soak::run(&plan) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("harness soak: {msg}");
            return Ok(ExitCode::from(1));
        }
    };
    if !outcome.checks.is_empty() {
        println!();
        for c in &outcome.checks {
            println!("{c}");
        }
    }
    let failed = outcome.checks.iter().filter(|c| !c.pass).count();
    if !outcome.interrupted {
        println!(
            "soak {}: {} ({} of {} checks passed)",
            plan.variant,
            if failed == 0 { "PASS" } else { "FAIL" },
            outcome.checks.len() - failed,
            outcome.checks.len()
        );
    }
    if !outcome.server_log.is_empty() {
        eprintln!(
            "\n{}'s stderr:\n{}",
            plan.variant,
            outcome.server_log.trim_end()
        );
    }
    finish("soak", &outcome.notes, &[], outcome.interrupted).map(|code| {
        if failed > 0 {
            ExitCode::from(1)
        } else {
            code
        }
    })
}

/// The end of a run: notes, failures, and the exit code they make.
fn finish(
    cmd: &str,
    notes: &[String],
    failures: &[String],
    interrupted: bool,
) -> anyhow::Result<ExitCode> {
    if !notes.is_empty() {
        eprintln!("\nNotes:");
        for n in notes {
            eprintln!("  - {n}");
        }
    }
    if !failures.is_empty() {
        eprintln!("\n{} run(s) failed:", failures.len());
        for f in failures {
            eprintln!("  - {}", f.trim_end().replace('\n', "\n    "));
        }
    }
    if interrupted {
        eprintln!("harness {cmd}: interrupted; every server it started is stopped");
        return Ok(ExitCode::from(130));
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The directory of this binary, where loadgen (and by default the servers) live.
fn own_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the harness binary")?;
    exe.parent()
        .map(PathBuf::from)
        .context("the harness binary has no parent directory")
}

fn profile_cmd(args: &ProfileArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.request(&own_dir()?) {
        Ok(Request::Profile(p)) => p,
        Ok(Request::Replot { out, results }) => {
            let profiles = summary::load_profiles(&out)
                .with_context(|| format!("reading the profiles in {}", out.display()))?;
            if profiles.is_empty() {
                eprintln!(
                    "harness profile: no profile.json under {}: run `harness profile --all` first",
                    out.display()
                );
                return Ok(ExitCode::from(1));
            }
            let paths = summary::write_aggregate(&out, &results, &profiles, &[])
                .context("writing the combined files")?;
            println!("Wrote:");
            for p in paths {
                println!("  {}", p.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(msg) => {
            eprintln!("harness profile: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    let perf = match Perf::locate() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("harness profile: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let probe_dir = tempfile::Builder::new()
        .prefix("profile-probe.")
        .tempdir()
        .context("creating a temp dir")?;
    if let Err(e) = perf.check(probe_dir.path()) {
        eprintln!("harness profile: {e}");
        return Ok(ExitCode::from(1));
    }
    drop(probe_dir);
    process::install_interrupt_handler().context("installing the Ctrl-C handler")?;
    let outcome = match session::run(&plan, &perf) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("harness profile: {msg}");
            return Ok(ExitCode::from(1));
        }
    };

    if !outcome.profiles.is_empty() {
        println!(
            "\n{:<14} {:>9} {:>7} {:>9} {:>13} {:>10}",
            "server", "samples", "user %", "kernel %", "syscalls/req", "req/s"
        );
        for p in &outcome.profiles {
            println!(
                "{:<14} {:>9} {:>7.1} {:>9.1} {:>13.2} {:>10}",
                p.variant,
                p.samples,
                p.user_pct,
                p.kernel_pct,
                p.syscalls.per_request(),
                thousands(p.load_req_per_s)
            );
        }
        println!("\nWrote:");
        for p in &outcome.profiles {
            println!("  {}/", plan.out.join(&p.variant).display());
        }
    }
    if plan.aggregate && !outcome.profiles.is_empty() && !outcome.interrupted {
        let missing: Vec<String> = plan
            .servers
            .iter()
            .filter(|s| !outcome.profiles.iter().any(|p| &p.variant == *s))
            .cloned()
            .collect();
        let paths = summary::write_aggregate(&plan.out, &plan.results, &outcome.profiles, &missing)
            .context("writing the combined files")?;
        for p in paths {
            println!("  {}", p.display());
        }
    }
    if !outcome.notes.is_empty() {
        eprintln!("\nNotes:");
        for n in &outcome.notes {
            eprintln!("  - {n}");
        }
    }
    if !outcome.failures.is_empty() {
        eprintln!("\n{} server(s) failed:", outcome.failures.len());
        for f in &outcome.failures {
            eprintln!("  - {}", f.trim_end().replace('\n', "\n    "));
        }
    }
    if outcome.interrupted {
        eprintln!("harness profile: interrupted; every server and perf run it started is stopped");
        return Ok(ExitCode::from(130));
    }
    Ok(
        if outcome.failures.is_empty() && !outcome.profiles.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

fn bench_cmd(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.plan(own_dir()?) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("harness bench: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    process::install_interrupt_handler().context("installing the Ctrl-C handler")?;
    let outcome = match sweep::run(&plan) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("harness bench: {msg}");
            return Ok(ExitCode::from(1));
        }
    };

    if !outcome.rows.is_empty() {
        println!("\nMedians per point:");
        print!("{}", bench::summary_table(&outcome.rows));
        let paths = report::write_all(&plan.out, &outcome.rows, &outcome.info)
            .with_context(|| format!("writing the reports into {}", plan.out.display()))?;
        println!("\nWrote:");
        for p in paths {
            println!("  {}", p.display());
        }
    } else {
        eprintln!("harness bench: nothing was measured, so no file was written");
    }
    if !outcome.notes.is_empty() {
        eprintln!("\nNotes:");
        for n in &outcome.notes {
            eprintln!("  - {n}");
        }
    }
    if !outcome.failures.is_empty() {
        eprintln!(
            "\n{} run(s) failed ({} failure(s)):",
            outcome.failed_runs,
            outcome.failures.len()
        );
        for f in &outcome.failures {
            eprintln!("  - {}", f.trim_end().replace('\n', "\n    "));
        }
    }
    if outcome.interrupted {
        eprintln!("harness bench: interrupted; every server it started is stopped");
        return Ok(ExitCode::from(130));
    }
    Ok(if outcome.failed_runs > 0 || outcome.rows.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
