//! The option set every variant shares, and server start-up: binding
//! (once, in whatever process accepts) apart from building the application
//! (in every process that serves).

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::app::stats::Stats;
use crate::app::{App, Settings};
use crate::http::parser::{Limits, Parser};
use crate::sys;
use crate::sys::affinity::CpuList;
use crate::sys::signal::Shutdown;

/// Shared options (flatten into each variant's command line).
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// IPv4 address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub addr: Ipv4Addr,
    /// TCP port; 0 picks a free one. The first stdout line is always
    /// `listening on ADDR:PORT`.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Worker threads (models that have several; default depends on the model).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Document root for static files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/www"))]
    pub root: PathBuf,
    /// Close a keep-alive connection idle this long (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// Answer 408 when a request's head takes longer than this to arrive.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Requests served on one connection before it is closed (0 = no cap).
    #[arg(long, default_value_t = 1000)]
    pub keepalive_requests: u64,
    /// Largest request header section, in bytes (431 above it).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Largest request body, in bytes (413 above it).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Pin the server to these CPUs, e.g. `0` or `0-1` or `0,2`.
    #[arg(long)]
    pub cpus: Option<CpuList>,
    /// listen(2) backlog.
    #[arg(long, default_value_t = 4096)]
    pub backlog: i32,
    /// Directory of CGI scripts served at /cgi-bin/NAME (nothing outside it runs).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/cgi-bin"))]
    pub cgi_dir: PathBuf,
    /// A CGI script still running after this is killed and answered 504.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub cgi_timeout: Duration,
    /// A CGI script's output kept in memory; a longer body is spilled to an
    /// unlinked temporary file in $TMPDIR (the header section must fit).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(1024..))]
    pub cgi_buffer_bytes: u64,
    /// A CGI script writing more than this in all (headers and body) is
    /// killed and answered 502 (nginx's fastcgi_max_temp_file_size).
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub cgi_max_output_bytes: u64,
    /// Where POST /upload stores bodies (created if missing). Without it,
    /// uploads are answered 503 with a message naming this flag.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Append a combined-format access log to this file (whole lines,
    /// one `write` per batch, safe across processes; off by default).
    #[arg(long)]
    pub access_log: Option<PathBuf>,
    /// Keep small static files in memory, up to this many bytes in all
    /// (e.g. 64m; 0 = off): a hit is answered with no open, stat or sendfile.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub file_cache: u64,
    /// Largest file the cache keeps (e.g. 64k).
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    pub file_cache_max_file: u64,
    /// A cached file is checked against the disk (inode, size, mtime) at
    /// most this often; a change shows after at most this long.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub file_cache_valid: Duration,
    /// Rotate the access log when it would grow past this many bytes (0 = never).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub access_log_max_bytes: u64,
    /// Rotated access logs kept (FILE.1 .. FILE.N).
    #[arg(long, default_value_t = 5)]
    pub access_log_keep: usize,
    /// A request body streamed to disk (an upload) must arrive within this
    /// long, however steadily it trickles (0 = no limit; each read must
    /// still come within --header-timeout).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Open files queued for sending on one connection before its
    /// pipelined requests wait for the client to read (each is a descriptor).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queued_files: u64,
    /// Close a connection whose client has read nothing of its response for
    /// this long (between two successive sends, as nginx's send_timeout).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Work waiting in a queue for a worker (a blocking job, or a
    /// connection waiting for a thread) longer than this is answered `503`
    /// with `Retry-After` instead of served late (as HAProxy's `timeout queue`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// On SIGINT/SIGTERM, wait this long for in-flight requests (including
    /// /sleep and CGI) before dropping what is left; the exit code is 0 either way.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Parse `5s`, `500ms`, `250us`, `2m`, `1h` or a plain number of seconds
/// (shared by the servers, loadgen and the bench runner).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 5s, 500ms, 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?}: use us, ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration {s:?} is out of range"))
}

/// Parse a byte size: `65536`, `64k`, `64KiB`, `16m`, `1g` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 65536, 64k, 16m, 1g"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("invalid size unit in {s:?}: use k, m or g")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} is out of range"))
}

/// What a master does once: pin CPUs, install signal handling, bind the
/// listening socket. Building the application is a separate step
/// ([`Listening::build`]), done by each thread group or process that serves,
/// so a process model can bind in its master and build in its workers.
pub struct Listening {
    /// The variant's catalog name (`/stats`' `variant`).
    pub variant: &'static str,
    /// The options it was started with.
    pub opts: Options,
    /// The address actually bound (the port resolved when `--port 0`).
    pub local: SocketAddrV4,
    /// Raised on SIGINT/SIGTERM.
    pub shutdown: &'static Shutdown,
}

/// A started server: where it listens and the application it serves.
pub struct Server {
    /// Bound address, options and shutdown state.
    pub listening: Listening,
    /// The application every connection of this process is answered by.
    pub app: Arc<App>,
    /// The model's thread (or process) count, as `/stats` reports it.
    pub threads: usize,
}

impl std::ops::Deref for Server {
    type Target = Listening;
    fn deref(&self) -> &Listening {
        &self.listening
    }
}

/// `err` with `context` in front of its message (the kind is kept).
fn context(err: io::Error, context: impl std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{context}: {err}"))
}

impl Listening {
    /// Pin CPUs, install signal handling and bind. The listener is returned
    /// beside, to be moved into whichever thread accepts (closing it is how
    /// accepting stops).
    pub fn bind(
        variant: &'static str,
        opts: Options,
        reuse_port: bool,
    ) -> io::Result<(Listening, OwnedFd)> {
        if let Some(CpuList(cpus)) = &opts.cpus {
            sys::affinity::pin_current_thread(cpus).map_err(|e| {
                let n = sys::affinity::online_cpus();
                context(
                    e,
                    format!("pinning to CPUs {cpus:?} (this machine has {n}: see `nproc`)"),
                )
            })?;
        }
        let shutdown =
            sys::signal::install().map_err(|e| context(e, "installing signal handlers"))?;
        let listener = bind(&opts, opts.port, reuse_port)?;
        let local = sys::socket::local_addr(listener.as_fd())?;
        let listening = Listening {
            variant,
            opts,
            local,
            shutdown,
        };
        Ok((listening, listener))
    }

    /// Counters for `shards` writers, in memory shared with forked children.
    pub fn stats(&self, threads: usize, shards: usize) -> io::Result<Arc<Stats>> {
        Stats::new(self.variant, threads, shards)
            .map(Arc::new)
            .map_err(|e| context(e, "mapping the /stats counters"))
    }

    /// Open the root, CGI and data directories and the access log: what
    /// each worker does for itself.
    pub fn build(&self, stats: Arc<Stats>) -> io::Result<App> {
        let opts = &self.opts;
        let settings = Settings {
            root: opts.root.clone(),
            cgi_dir: opts.cgi_dir.clone(),
            cgi_timeout: opts.cgi_timeout,
            file_cache: crate::app::file_cache::Limits {
                bytes: usize::try_from(opts.file_cache).unwrap_or(usize::MAX),
                max_file: opts.file_cache_max_file,
                valid_ms: opts.file_cache_valid.as_millis() as u64,
            },
            cgi_output: crate::app::cgi::OutputLimits {
                memory: opts.cgi_buffer_bytes as usize,
                max: opts.cgi_max_output_bytes,
            },
            data_dir: opts.data_dir.clone(),
            access_log: opts
                .access_log
                .clone()
                .map(|p| (p, opts.access_log_max_bytes, opts.access_log_keep)),
            local: self.local,
        };
        App::new(&settings, stats).map_err(|e| context(e, "starting the application"))
    }

    /// Print the `listening on ADDR:PORT` line (the first stdout line, which
    /// scripts wait for): only once everything that can fail at start-up
    /// has succeeded.
    pub fn announce(&self) -> io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", self.local)?;
        out.flush()
    }

    /// Another listener on the same port (SO_REUSEPORT), for one-listener-per-loop models.
    pub fn another_listener(&self) -> io::Result<OwnedFd> {
        bind(&self.opts, self.local.port(), true)
    }

    /// The connection policy from the options, with `max_requests` per
    /// connection (a model may impose its own: `blocking` serves one).
    pub fn policy(&self, max_requests: u64) -> crate::drivers::Policy {
        crate::drivers::Policy {
            keepalive_timeout: self.opts.keepalive_timeout,
            header_timeout: self.opts.header_timeout,
            max_requests,
            shutdown_timeout: self.opts.shutdown_timeout,
            send_timeout: self.opts.send_timeout,
            body_timeout: self.opts.body_timeout,
            max_queued_files: self.opts.max_queued_files as usize,
        }
    }

    /// A parser with the configured limits.
    pub fn parser(&self) -> Parser {
        Parser::new(Limits {
            max_header_bytes: self.opts.max_header_bytes,
            max_body_bytes: self.opts.max_body_bytes,
            ..Limits::default()
        })
    }
}

impl Server {
    /// The usual start of a single-process variant: bind, build the
    /// application with `shards` counter shards, announce. `threads` is
    /// the model's thread count.
    pub fn start(
        variant: &'static str,
        opts: Options,
        threads: usize,
        shards: usize,
        reuse_port: bool,
    ) -> io::Result<(Server, OwnedFd)> {
        let (listening, listener) = Listening::bind(variant, opts, reuse_port)?;
        let stats = listening.stats(threads, shards)?;
        let app = Arc::new(listening.build(stats)?);
        listening.announce()?;
        let server = Server {
            listening,
            app,
            threads,
        };
        Ok((server, listener))
    }

    /// Last step of every variant once its threads are done: kill CGI
    /// scripts still running and flush the access log so it holds every
    /// request answered.
    pub fn finish(&self) {
        let killed = crate::app::cgi::kill_running();
        if killed > 0 {
            eprintln!("shutdown: killed {killed} CGI script(s) still running");
        }
        self.app.close();
    }
}

fn bind(opts: &Options, port: u16, reuse_port: bool) -> io::Result<OwnedFd> {
    let addr = SocketAddrV4::new(opts.addr, port);
    sys::socket::listen_tcp(addr, opts.backlog, reuse_port).map_err(|e| {
        context(
            e,
            format!(
                "binding {addr} (is another server using the port? try --port 0 for a free one)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
    }
}
