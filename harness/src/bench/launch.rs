//! How a server under test is started: a variant's command line (port 0,
//! the shared docroot, pinned, its thread count and keep-alive policy) or
//! nginx from its rendered config. Shared by `harness bench` and
//! `harness profile`, so a profile looks at exactly the server the bench
//! measured, started the same way.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cli::{Plan, NGINX};
use super::nginx;
use super::process::{self, format_cpus};
use super::server::{http_get, Server, ServerCmd, StartError};
use super::workload::Workload;

/// `--keepalive-requests` for the event-driven variants: no cap, like
/// nginx's keepalive_requests 1000000.
pub const NO_KEEPALIVE_CAP: &str = "0";
/// nginx's keepalive_requests in the template.
pub const NGINX_KEEPALIVE_REQUESTS: &str = "1000000";

/// Starts servers as a plan says.
pub struct Launcher<'a> {
    pub plan: &'a Plan,
    /// The docroot every server serves its static files from.
    pub docroot: &'a Path,
    /// None when nginx is not installed (starting it is then an error).
    pub nginx_bin: Option<PathBuf>,
    /// The hard open-files limit (nginx's worker_rlimit_nofile when unprivileged).
    pub nofile_hard: u64,
}

/// Why a server did not start.
#[derive(Debug)]
pub enum LaunchError {
    /// Its command could not be prepared (binary missing, nginx config rejected).
    Setup(String),
    /// Ctrl-C while waiting for it.
    Interrupted,
    /// It was started but never became ready: why, and its stderr tail.
    Failed { why: String, tail: String },
}

/// A started server and, for nginx, the prefix directory its config lives
/// in (removed when dropped, so it must live as long as the server).
pub type Started = (Server, Option<nginx::Prefix>);

impl Launcher<'_> {
    /// Start `name` with its output in `log_dir/TAG.{stdout,stderr}` and wait
    /// until GET /health answers. nginx's port is picked before it starts,
    /// so another program may take it first: then it is tried again on
    /// another one (up to 3 times).
    pub fn start(&self, name: &str, log_dir: &Path, tag: &str) -> Result<Started, LaunchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (cmd, prefix) = self.command(name).map_err(LaunchError::Setup)?;
            match Server::start(&cmd, log_dir, tag) {
                Ok(s) => return Ok((s, prefix)),
                Err(StartError::Interrupted) => return Err(LaunchError::Interrupted),
                Err(StartError::Failed { tail, .. })
                    if cmd.port.is_some()
                        && attempt < 3
                        && tail.contains("Address already in use") => {}
                Err(StartError::Failed { why, tail }) => {
                    return Err(LaunchError::Failed { why, tail })
                }
            }
        }
    }

    /// How to start `name`; for nginx also its rendered prefix (kept alive
    /// by the caller while nginx runs).
    pub fn command(&self, name: &str) -> Result<(ServerCmd, Option<nginx::Prefix>), String> {
        let plan = self.plan;
        if name == NGINX {
            let bin = self.nginx_bin.clone().ok_or(nginx::INSTALL_HINT)?;
            let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
            let highest = *plan.conns.iter().max().unwrap_or(&1) as u64;
            let settings = nginx::Settings {
                port,
                root: self.docroot,
                workers: plan.threads,
                cpus: &plan.server_cpus,
                min_connections: highest + 256,
                max_nofile: (!process::is_root()).then_some(self.nofile_hard),
                as_root: process::is_root(),
            };
            let prefix = nginx::Prefix::create(nginx::TEMPLATE, &settings)
                .map_err(|e| format!("rendering the nginx config: {e}"))?;
            prefix.test(&bin)?;
            let cmd = ServerCmd {
                name: name.to_string(),
                program: bin,
                args: prefix.start_args(),
                cpus: plan.server_cpus.clone(),
                port: Some(port),
                extra_log: Some(prefix.error_log.clone()),
            };
            return Ok((cmd, Some(prefix)));
        }
        let program = plan.bin_dir.join(name);
        if !program.is_file() {
            return Err(format!(
                "{} not found: build the variants with `cargo build --release -p servers --bins` \
                 (they are looked up next to the harness binary; --bin-dir changes where)",
                program.display()
            ));
        }
        let mut args: Vec<OsString> = vec![
            "--port".into(),
            "0".into(),
            "--root".into(),
            self.docroot.into(),
            "--cpus".into(),
            format_cpus(&plan.server_cpus).into(),
        ];
        if Plan::is_multithreaded(name) {
            args.extend([
                "--threads".into(),
                plan.server_threads(name).to_string().into(),
            ]);
        }
        // The threadpool's request cap is what rotates its workers among
        // clients (part of its model); blocking serves one request per
        // connection whatever the flag says.
        if !matches!(name, "threadpool" | "blocking") {
            args.extend(["--keepalive-requests".into(), NO_KEEPALIVE_CAP.into()]);
        }
        Ok((
            ServerCmd {
                name: name.to_string(),
                program,
                args,
                cpus: plan.server_cpus.clone(),
                port: None,
                extra_log: None,
            },
            None,
        ))
    }
}

/// Whether `server` answers the workload's request as every server must
/// (200 with the expected body length), so a broken route is never measured.
pub fn check_workload(server: &Server, workload: Workload) -> Result<(), String> {
    match http_get(server.addr(), workload.path(), Duration::from_secs(5)) {
        Ok((200, len)) if len == workload.body_len() => Ok(()),
        Ok((status, len)) => Err(format!(
            "GET {} answered {status} with {len} body bytes, expected 200 with {}",
            workload.path(),
            workload.body_len()
        )),
        Err(e) => Err(format!("GET {} failed: {e}", workload.path())),
    }
}

/// A port on 127.0.0.1 nothing listens on (bound, then released) for nginx.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
