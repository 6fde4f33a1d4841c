//! One measured run: the server's CPU counters from /proc around one client
//! run, the client's own CPU time, and the wall time. Every subcommand that
//! reports CPU per request measures it here, so the figures agree.

use std::path::Path;
use std::time::Instant;

use crate::procfs::{self, Usage};

use super::client::{Client, ClientError, Load, Measured};
use super::process;
use super::server::Server;

/// What one run gave.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// What the client measured.
    pub load: Measured,
    /// The server tree's CPU time, context switches and peak RSS over the run.
    pub server: Usage,
    /// The client's own CPU seconds (user + system, all its threads).
    pub client_cpu_s: f64,
    /// Wall time of the client run, seconds.
    pub wall_s: f64,
}

impl Sample {
    /// Server CPU microseconds per completed request: the figure that holds
    /// on a noisy machine.
    pub fn cpu_us_per_req(&self) -> f64 {
        self.per_req(self.server.user_s + self.server.system_s)
    }

    /// `seconds` as microseconds per completed request (NaN without requests).
    pub fn per_req(&self, seconds: f64) -> f64 {
        if self.load.requests == 0 {
            f64::NAN
        } else {
            seconds * 1e6 / self.load.requests as f64
        }
    }

    /// `seconds` as a percent of the run's wall time (100 = one CPU busy).
    pub fn pct_of_wall(&self, seconds: f64) -> f64 {
        if self.wall_s > 0.0 {
            100.0 * seconds / self.wall_s
        } else {
            0.0
        }
    }
}

/// Why a run gave no sample.
#[derive(Debug)]
pub enum RunError {
    /// Ctrl-C during the run.
    Interrupted,
    /// The server exited (or /proc could not be read): its later runs are lost too.
    Died(String),
    /// This run failed; the server is fine.
    Failed(String),
}

/// Run `load` against `server` with `client` and measure both sides.
pub fn run(
    server: &mut Server,
    client: &Client,
    load: &Load,
    scratch: &Path,
    tag: &str,
) -> Result<Sample, RunError> {
    if process::interrupted() {
        return Err(RunError::Interrupted);
    }
    let c = load.connections;
    let before = procfs::sample_tree(server.pid())
        .map_err(|e| RunError::Died(format!("reading /proc before the run: {e}")))?;
    let reaped = procfs::reaped_children_cpu_s();
    let started = Instant::now();
    let result = client.run(load, scratch, tag);
    let wall_s = started.elapsed().as_secs_f64();
    let client_cpu_s = procfs::reaped_children_cpu_s() - reaped;
    let after = procfs::sample_tree(server.pid());
    let died = !server.is_running();
    let m = match result {
        Err(ClientError::Interrupted) => return Err(RunError::Interrupted),
        Err(ClientError::Failed(msg)) if died => {
            return Err(RunError::Died(format!(
                "exited during the run at c={c}; then the client failed: {}",
                msg.lines().next().unwrap_or("")
            )))
        }
        Err(ClientError::Failed(msg)) => return Err(RunError::Failed(msg)),
        Ok(_) if died => {
            return Err(RunError::Died(format!(
                "exited during the run at c={c} (after {wall_s:.1} s)"
            )))
        }
        Ok(m) => m,
    };
    let after = after.map_err(|e| RunError::Died(format!("reading /proc after the run: {e}")))?;
    if m.requests == 0 {
        return Err(RunError::Failed(format!(
            "no request completed (errors: {})",
            m.errors.describe()
        )));
    }
    Ok(Sample {
        load: m,
        server: after.since(&before),
        client_cpu_s,
        wall_s,
    })
}

/// A message followed by the server's stderr tail, when there is one.
pub fn with_tail(msg: String, tail: &str) -> String {
    if tail.trim().is_empty() {
        msg
    } else {
        format!("{msg}\n  server stderr:\n{}", tail.trim_end())
    }
}
