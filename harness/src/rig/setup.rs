//! What every measuring subcommand prepares before its first server: a
//! higher open-files limit, the runner itself pinned off the server CPUs,
//! the shared docroot and a scratch directory for logs and client output.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::client::{Client, ClientKind};
use super::nginx;
use super::process;
use super::workload::Docroot;
use crate::catalog::NGINX;

/// The prepared ground; dropping it removes the docroot and scratch files.
pub struct Ground {
    /// The docroot every server serves.
    pub docroot: Docroot,
    /// Logs, client results, nginx prefixes.
    pub scratch: TempDir,
    /// The open-files limit this process now has (the soft one, raised).
    pub nofile: u64,
    /// The hard open-files limit (nginx's worker_rlimit_nofile when unprivileged).
    pub nofile_hard: u64,
}

impl Ground {
    /// Prepare; `tag` names the temp directories.
    pub fn prepare(tag: &str, client_cpus: &[usize]) -> Result<Ground, String> {
        let (nofile, nofile_hard) = process::raise_nofile_limit().unwrap_or((1024, 1024));
        // The runner mostly sleeps, but never on the server's CPUs.
        let _ = servers::sys::affinity::pin_current_thread(client_cpus);
        let docroot = Docroot::create().map_err(|e| format!("creating the docroot: {e}"))?;
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{tag}."))
            .tempdir()
            .map_err(|e| format!("creating a temp dir: {e}"))?;
        Ok(Ground {
            docroot,
            scratch,
            nofile,
            nofile_hard,
        })
    }

    /// The scratch directory.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }
}

/// loadgen in `dir`, or the message that says how to build it.
pub fn loadgen_in(dir: &Path) -> Result<PathBuf, String> {
    let p = dir.join("loadgen");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "loadgen not found at {}: build it with `cargo build --release -p harness` \
             (it is looked up next to the harness binary; --bin-dir changes where)",
            p.display()
        ))
    }
}

/// wrk on PATH, or the message that says how to install it.
pub fn wrk() -> Result<PathBuf, String> {
    process::find_on_path("wrk")
        .ok_or_else(|| "wrk not found: install it with `apt-get install wrk`".to_string())
}

/// nginx, or the message that says how to install it (`skip` says how to
/// do without it, when the subcommand can).
pub fn nginx_required() -> Result<PathBuf, String> {
    nginx::find().ok_or_else(|| {
        "nginx not found: install it with `apt-get install nginx-light` (or nginx)".to_string()
    })
}

/// nginx for a run whose server list names it: found, or taken out of
/// `servers` with a note that says how to install it (the run goes on
/// without it). `None` also when the list does not name nginx.
pub fn nginx_or_skip(servers: &mut Vec<String>, notes: &mut Vec<String>) -> Option<PathBuf> {
    if !servers.iter().any(|s| s == NGINX) {
        return None;
    }
    let found = nginx::find();
    if found.is_none() {
        notes.push(format!("skipping nginx: {}", nginx::INSTALL_HINT));
        servers.retain(|s| s != NGINX);
    }
    found
}

/// A note when the machine is already busy before a run: the 1-minute load
/// average at 0.5 or more. `before` names the run ("before the sweep"),
/// `meaning` what the reader should make of it.
pub fn busy_machine_note(before: &str, meaning: &str) -> Option<String> {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())?;
    (load >= 0.5).then(|| format!("load average {load:.2} {before}: {meaning}"))
}

/// A client of `kind` pinned to `cpus` with one thread per CPU.
pub fn client(kind: ClientKind, program: PathBuf, cpus: &[usize]) -> Client {
    Client {
        kind,
        program,
        cpus: cpus.to_vec(),
        threads: cpus.len().max(1),
        wrk_pipeline_script: wrk_pipeline_script(),
    }
}

/// scripts/wrk-pipeline.lua, from the current directory or the source tree.
pub fn wrk_pipeline_script() -> Option<PathBuf> {
    let rel = Path::new("scripts/wrk-pipeline.lua");
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    [rel.to_path_buf(), in_tree]
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}
