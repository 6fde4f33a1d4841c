//! `loadgen`: a wrk-compatible HTTP/1.1 load generator. See
//! `harness::loadgen` for how it works; this is only the binary's edge:
//! argument errors, the Ctrl-C handler, printing, and the exit code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use harness::loadgen::{self, cli, json, report};
use servers::sys::signal;

fn main() -> ExitCode {
    let cfg = match cli::parse(std::env::args_os()) {
        Ok(cfg) => cfg,
        Err(cli::Stop::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(cli::Stop::Usage(msg)) => {
            eprintln!("loadgen: {msg}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cfg: &cli::Config) -> anyhow::Result<ExitCode> {
    // Before any thread starts, so all inherit the blocked SIGINT: Ctrl-C
    // then ends the run through an eventfd and the report still prints.
    let shutdown = signal::install().context("installing the Ctrl-C handler")?;
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", report::header(cfg))?;
    stdout.flush()?;
    let outcome = loadgen::run(cfg, Some(shutdown.wake_fd())).context("running the load")?;
    write!(stdout, "{}", report::body(cfg, &outcome))?;
    stdout.flush()?;
    if let Some(path) = &cfg.json {
        json::write(path, cfg, &outcome)
            .with_context(|| format!("writing --json {}", path.display()))?;
    }
    if let Some(reason) = &outcome.all_connects_failed {
        eprintln!(
            "loadgen: every connection to {} failed ({reason}): is a server listening there?",
            cfg.target.addr
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
