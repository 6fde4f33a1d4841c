//! How a server under test is started: a variant's command line (port 0,
//! the shared docroot, pinned, its thread count and keep-alive policy from
//! the catalog) or nginx from its rendered config. Shared by every
//! subcommand, so a profile or a comparison looks at exactly the server the
//! bench measured, started the same way.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::catalog::{self, NGINX};
use crate::format;

use super::cpus::Placement;
use super::nginx;
use super::process;
use super::server::{http_get, Server, ServerCmd, StartError};
use super::workload::{Workload, VARIANT_FILE_CACHE};

/// Starts servers where a placement says.
pub struct Launcher<'a> {
    /// Server CPUs and threads.
    pub placement: &'a Placement,
    /// Where the variants' binaries are.
    pub bin_dir: &'a Path,
    /// The highest connection count the servers will see (nginx's
    /// worker_connections must exceed it).
    pub max_conns: u32,
    /// The docroot every server serves its static files from.
    pub docroot: &'a Path,
    /// None when nginx is not installed (starting it is then an error).
    pub nginx_bin: Option<PathBuf>,
    /// The hard open-files limit (nginx's worker_rlimit_nofile when unprivileged).
    pub nofile_hard: u64,
    /// File caches on: the variants get [`VARIANT_FILE_CACHE`], nginx
    /// `open_file_cache` (the `static-1k-cached` workload).
    pub file_cache: bool,
}

/// Why a server did not start.
#[derive(Debug)]
pub enum LaunchError {
    /// Its command could not be prepared (binary missing, nginx config rejected).
    Setup(String),
    /// Ctrl-C while waiting for it.
    Interrupted,
    /// It exited saying the kernel refuses what it is built on (see
    /// [`StartError::Unavailable`]): the reason, one line. Skipped, not failed.
    Unavailable(String),
    /// It was started but never became ready: why, and its stderr tail.
    Failed {
        /// What went wrong.
        why: String,
        /// The end of its stderr, where the reason usually is.
        tail: String,
    },
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
                Err(StartError::Unavailable(why)) => return Err(LaunchError::Unavailable(why)),
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
        let placement = self.placement;
        if name == NGINX {
            let bin = self.nginx_bin.clone().ok_or(nginx::INSTALL_HINT)?;
            let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
            let settings = nginx::Settings {
                port,
                root: self.docroot,
                workers: placement.server_threads(NGINX),
                cpus: &placement.server_cpus,
                min_connections: u64::from(self.max_conns.max(1)) + 256,
                max_nofile: (!process::is_root()).then_some(self.nofile_hard),
                as_root: process::is_root(),
                open_file_cache: self.file_cache,
            };
            let prefix = nginx::Prefix::create(nginx::TEMPLATE, &settings)
                .map_err(|e| format!("rendering the nginx config: {e}"))?;
            prefix.test(&bin)?;
            let cmd = ServerCmd {
                name: name.to_string(),
                program: bin,
                args: prefix.start_args(),
                cpus: placement.server_cpus.clone(),
                port: Some(port),
                extra_log: Some(prefix.error_log.clone()),
            };
            return Ok((cmd, Some(prefix)));
        }
        let variant = catalog::variant(name).ok_or_else(|| {
            format!(
                "unknown server {name:?}: pick one of {}",
                catalog::choices()
            )
        })?;
        let program = self.bin_dir.join(name);
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
            format::cpus(&placement.server_cpus).into(),
        ];
        if self.file_cache {
            args.extend(VARIANT_FILE_CACHE.map(OsString::from));
        }
        let threads = placement.server_threads(name);
        args.extend(
            catalog::startup_flags(variant, threads)
                .into_iter()
                .map(OsString::from),
        );
        Ok((
            ServerCmd {
                name: name.to_string(),
                program,
                args,
                cpus: placement.server_cpus.clone(),
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
