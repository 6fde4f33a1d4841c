//! `fork`: a process per connection. The parent accepts; each connection is
//! served by a child forked for it, which exits when the connection ends.
//!
//! Connection policy: as `threadpool`'s, per child — keep-alive until the
//! client closes, `--keepalive-requests` requests have been served, or the
//! connection idles past `--keepalive-timeout` (408 after
//! `--header-timeout` for a half-sent head, cut off after `--send-timeout`
//! for a client that reads nothing), served by the blocking driver.
//!
//! At most `--max-children` children run at once. Beyond that, new clients
//! **wait in the kernel's listen backlog** (`--backlog`) until a child
//! exits, rather than being answered 503: the parent simply stops polling
//! its listener. That is what Apache's prefork MPM does at
//! `MaxRequestWorkers`, and it fits the model: a process per connection has
//! no queue of its own to bound, the backlog is that queue, and a burst
//! waits a moment instead of failing. (`threadpool` answers 503 because its
//! queue is memory it would otherwise grow without bound.) When `fork`
//! itself fails (out of memory, or the process limit), the connection
//! already accepted is answered `503` + `Retry-After: 1` and accepting
//! pauses as it does when descriptors run out.
//!
//! Fork safety: the parent is single-threaded and stays so — it accepts,
//! forks and reaps in one `poll` loop over the listener, a signalfd for
//! SIGCHLD and the shutdown eventfd, and starts no thread (nor does the
//! start-up it shares with the other variants: binding, the shared `/stats`
//! mapping and the application, whose access log has no writer thread).
//! Each fork checks the thread count first
//! ([`servers::drivers::processes::fork_server`]), so the child inherits
//! no lock held elsewhere and may serve like any process: allocate, log,
//! run CGI.
//!
//! Children are reaped as they exit (every SIGCHLD wakes the loop, which
//! reaps until none is left). `/stats` counts across processes: the shards
//! live in shared memory; the parent counts a connection opened when it
//! accepts, the child closed when it ends, and the parent closes it instead
//! for a child that did not exit normally. Sessions, being per process,
//! live as long as one connection here.
//!
//! SIGINT/SIGTERM: the parent closes its listener, passes SIGTERM to every
//! child (each drains its connection as the blocking driver does, bounded
//! by `--shutdown-timeout`), waits for them (SIGKILL past that timeout and
//! a second), and exits 0 with no child left.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use clap::Parser;
use servers::config::{Options, Server};
use servers::drivers::accept::AcceptBackoff;
use servers::drivers::blocking::{self, Env};
use servers::drivers::processes::{self, Reaper};
use servers::drivers::turn_away;
use servers::sys;
use servers::sys::process::{Fork, PollFd, WaitStatus};

#[derive(Parser)]
#[command(
    name = "fork",
    version,
    about = "HTTP/1.1 server: the parent accepts, a forked child serves each connection"
)]
struct Cli {
    #[command(flatten)]
    opts: Options,
    /// Children serving at once; further clients wait in the listen backlog.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_children: u64,
}

/// Counter shards: one for the parent, then one per child slot (slots past
/// this share, which atomics allow).
const MAX_CHILD_SHARDS: usize = 128;

/// The children alive, by pid, and the slots (counter shards) they hold.
struct Children {
    by_pid: HashMap<i32, usize>,
    free: Vec<usize>,
}

impl Children {
    fn new(max: usize) -> Children {
        Children {
            by_pid: HashMap::with_capacity(max),
            free: (0..max).rev().collect(),
        }
    }
}

/// What the accept loop ends as.
enum Role {
    /// In a freshly forked child: serve this connection in `slot`.
    Child(OwnedFd, SocketAddrV4, usize),
    /// In the parent: shutdown was requested.
    Parent,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.opts.threads.is_some_and(|t| t != 1) {
        eprintln!("fork: one single-threaded process per connection; ignoring --threads (bound them with --max-children)");
    }
    let max = cli.max_children as usize;
    let shards = 1 + max.min(MAX_CHILD_SHARDS);
    let (server, listener) = Server::start("fork", cli.opts, max, shards, false)?;
    sys::socket::set_nonblocking(listener.as_fd())?;
    let reaper = Reaper::new(false)?;
    let mut children = Children::new(max);
    match accept_loop(&server, &listener, &reaper, &mut children)? {
        Role::Child(fd, peer, slot) => {
            drop((listener, reaper, children));
            serve_child(&server, fd, peer, slot)
        }
        Role::Parent => {
            // Stop accepting first: clients arriving from now on are
            // refused by the kernel rather than left in a backlog.
            drop(listener);
            stop_children(&server, &reaper, &mut children);
            server.finish();
            Ok(())
        }
    }
}

/// Accept and fork until shutdown (in the parent) or until this process
/// is a new child (which leaves the loop with its connection).
fn accept_loop(
    server: &Server,
    listener: &OwnedFd,
    reaper: &Reaper,
    children: &mut Children,
) -> anyhow::Result<Role> {
    let shard = server.app.stats().shard(0);
    let mut backoff = AcceptBackoff::new("fork: ");
    let mut paused_until: Option<Instant> = None;
    loop {
        reaper.take_signals();
        reaper.reap(|pid, status| child_exited(server, children, pid, status));
        if server.shutdown.requested() {
            return Ok(Role::Parent);
        }
        let now = Instant::now();
        if paused_until.is_some_and(|t| t <= now) {
            paused_until = None;
        }
        let accepting = paused_until.is_none() && !children.free.is_empty();
        let mut fds = vec![
            PollFd::readable(server.shutdown.wake_fd()),
            PollFd::readable(reaper.fd()),
        ];
        if accepting {
            fds.push(PollFd::readable(listener.as_fd()));
        }
        let timeout = paused_until.map_or(-1, |t| {
            t.saturating_duration_since(now).as_millis().max(1) as i32
        });
        match sys::process::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        if !accepting || !fds[2].ready() {
            continue;
        }
        let open = children.by_pid.len() as u64;
        let (fd, peer) = match sys::socket::accept(listener.as_fd(), false) {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) if AcceptBackoff::is_shortage(&e) => {
                paused_until = Some(Instant::now() + backoff.failed(&e, open));
                continue;
            }
            Err(e) if is_retry(&e) => continue,
            Err(e) => {
                eprintln!("fork: accept: {e}");
                paused_until = Some(Instant::now() + Duration::from_millis(10));
                continue;
            }
        };
        shard.conn_opened();
        let slot = children
            .free
            .pop()
            .expect("accepting only with a free slot");
        match processes::fork_server(server.shutdown) {
            Ok(Fork::Child) => return Ok(Role::Child(fd, peer, slot)),
            Ok(Fork::Parent(pid)) => {
                children.by_pid.insert(pid, slot);
                shard.process_started();
            }
            Err(e) => {
                children.free.push(slot);
                turn_away(fd, shard);
                shard.conn_closed();
                eprintln!("fork: fork: {e}");
                paused_until = Some(Instant::now() + backoff.failed(&e, open));
            }
        }
    }
}

/// Accept errors that only mean "try again": a signal, nothing queued
/// after all, or a client that gave up while queued.
fn is_retry(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::ConnectionAborted
    )
}

/// A child was reaped: its slot is free again; if it did not end normally,
/// its connection is closed in the counters on its behalf.
fn child_exited(server: &Server, children: &mut Children, pid: i32, status: WaitStatus) {
    let Some(slot) = children.by_pid.remove(&pid) else {
        // An orphan a child's CGI script left, reparented here: reaped.
        return;
    };
    children.free.push(slot);
    server.app.stats().shard(0).process_exited();
    if status != WaitStatus::Exited(0) {
        server.app.stats().shard(0).conn_closed();
        eprintln!("fork: child {pid} ended with {status}");
    }
}

/// The child's whole life: serve the one connection, close the
/// application (the access log is flushed) and exit without running the
/// parent's destructors a second time.
fn serve_child(server: &Server, fd: OwnedFd, peer: SocketAddrV4, slot: usize) -> ! {
    let _parked = server.shutdown.register_blocking_thread();
    let policy = server.policy(server.opts.keepalive_requests);
    let shard = server.app.stats().shard(1 + slot);
    let env = Env {
        app: &server.app,
        shard,
        policy: &policy,
        shutdown: server.shutdown,
    };
    blocking::serve(fd, peer, server.parser(), &env);
    shard.conn_closed();
    server.finish();
    sys::process::exit_immediately(0)
}

/// Shutdown in the parent: tell every child, wait for them to drain (their
/// own deadline is `--shutdown-timeout`; a second more for them to exit),
/// and kill what is left.
fn stop_children(server: &Server, reaper: &Reaper, children: &mut Children) {
    let mut alive: HashSet<i32> = children.by_pid.keys().copied().collect();
    for &pid in &alive {
        let _ = sys::process::kill(pid, sys::process::SIGTERM);
    }
    let deadline = Instant::now() + server.opts.shutdown_timeout + Duration::from_secs(1);
    let killed = reaper.wait_all(&mut alive, deadline, |pid, status| {
        child_exited(server, children, pid, status)
    });
    if killed > 0 {
        eprintln!("shutdown timeout: killed {killed} child(ren) still serving");
    }
}
