//! `harness`: the bench runner (and, later, profiling). This file is only
//! the edge: the command line, the Ctrl-C handler, the report files, the
//! messages and the exit code; the work is in `harness::bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::bench::{self, cli::BenchArgs, process, sweep};
use harness::report;

/// Benchmarks for the server variants: sweeps, reports (and profiles, later).
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
    }
}

fn bench_cmd(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the harness binary")?;
    let bin_dir = exe
        .parent()
        .map(PathBuf::from)
        .context("the harness binary has no parent directory")?;
    let plan = match args.plan(bin_dir) {
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
