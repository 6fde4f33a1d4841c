//! The blocking-socket driver: one connection served start to finish on the
//! calling thread (the per-connection loop of `blocking` and `threadpool`).
//!
//! Timeouts need no timer: the socket's read timeout (SO_RCVTIMEO) is set to
//! the shorter of the idle and header timeouts, so a read returns at least
//! that often and the loop checks both deadlines. Blocking jobs (`/sleep`,
//! CGI, upload commits) run inline: the thread is the connection's anyway.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::{send_queued, Policy, Sent};
use crate::app::App;
use crate::conn::{Conn, Ctx, Next};
use crate::http::parser::Parser;
use crate::http::stats::Shard;
use crate::sys;
use crate::sys::signal::Shutdown;
use crate::sys::time::monotonic_ms_coarse;

/// How long a closing client may keep sending before we drop it.
const LINGER: Duration = Duration::from_secs(1);

/// What one connection's loop borrows from its thread.
pub struct Env<'a> {
    /// The application answering requests.
    pub app: &'a App,
    /// This thread's counters.
    pub shard: &'a Shard,
    /// Timeouts and limits.
    pub policy: &'a Policy,
    /// Raised on SIGINT/SIGTERM.
    pub shutdown: &'a Shutdown,
}

/// Serve `fd` until the client leaves, a limit is reached, or shutdown.
pub fn serve(fd: OwnedFd, peer: SocketAddrV4, parser: Parser, env: &Env<'_>) {
    let p = env.policy;
    let mut tick = p.keepalive_timeout.min(p.header_timeout);
    if !p.body_timeout.is_zero() {
        tick = tick.min(p.body_timeout);
    }
    let tick = tick.max(Duration::from_millis(10));
    if sys::socket::set_read_timeout(fd.as_fd(), tick).is_err()
        || sys::socket::set_send_timeout(fd.as_fd(), p.send_timeout).is_err()
    {
        return;
    }
    let mut conn = Conn::new(peer, parser, monotonic_ms_coarse());
    loop {
        let ctx = Ctx {
            app: env.app,
            shard: env.shard,
            max_requests: p.max_requests,
            draining: env.shutdown.requested(),
            max_queued_files: p.max_queued_files,
            clock: sys::time::monotonic_ns,
        };
        if ctx.draining && (drained(&fd, &conn) || p.drain_expired(env.shutdown)) {
            return;
        }
        match read_once(&fd, &mut conn, &ctx) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => conn.on_broken(),
        }
        let mut next = settle(&fd, &mut conn, &ctx, env);
        if next == Next::Read && overdue(&conn, p) {
            conn.on_timeout(&ctx);
            next = settle(&fd, &mut conn, &ctx, env);
        }
        match next {
            Next::Read => {}
            Next::Linger => return linger(&fd, &mut conn, &ctx),
            Next::Write | Next::Wait | Next::Close => return,
        }
    }
}

/// One blocking read into the connection (which answers what completes).
/// `Interrupted` is returned so the caller re-checks shutdown; a read
/// timeout is not an error (the caller checks the deadlines).
fn read_once(fd: &OwnedFd, conn: &mut Conn, ctx: &Ctx<'_>) -> io::Result<()> {
    let now = monotonic_ms_coarse();
    let Some(buf) = conn.recv_buf(ctx) else {
        return Ok(());
    };
    match sys::io::read(fd.as_fd(), buf) {
        Ok(0) => conn.on_eof(ctx, now),
        Ok(n) => conn.on_received(ctx, n, now),
        // The read timed out: the connection is idle, its buffers go back.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.release_buffers(),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Run jobs inline and send everything queued; what the connection needs then.
/// A client that takes nothing for `send_timeout` is cut off; past the
/// shutdown deadline no job starts and an interrupted send is not retried.
fn settle(fd: &OwnedFd, conn: &mut Conn, ctx: &Ctx<'_>, env: &Env<'_>) -> Next {
    loop {
        if let Some(job) = conn.take_job() {
            if env.policy.drain_expired(env.shutdown) {
                conn.on_broken();
            } else {
                let done = job.run();
                conn.on_job_done(ctx, done, monotonic_ms_coarse());
            }
        }
        let mut bounded = false;
        let go_on = || drain_bound(fd, env, &mut bounded);
        match send_queued(fd.as_fd(), conn, ctx, monotonic_ms_coarse(), go_on) {
            // The send timeout passed with nothing taken (a client that does
            // not read would hold this thread for good), or shutdown's did.
            Ok(Sent::Blocked | Sent::Stopped) => conn.on_broken(),
            Ok(Sent::All) | Err(_) => {}
        }
        // The thread may now block reading: log lines go out first.
        ctx.app.flush_log();
        match conn.next() {
            Next::Wait | Next::Write => continue,
            next => return next,
        }
    }
}

/// Asked before each send: once shutdown is requested, a send may block
/// only for what is left of its deadline (a signal that interrupted a send
/// after partial progress is not seen again), and none starts past it.
fn drain_bound(fd: &OwnedFd, env: &Env<'_>, bounded: &mut bool) -> bool {
    let p = env.policy;
    if !env.shutdown.requested() {
        return true;
    }
    if p.drain_expired(env.shutdown) {
        return false;
    }
    if !*bounded {
        let left = ms(p.shutdown_timeout).saturating_sub(env.shutdown.elapsed_ms());
        let bound = Duration::from_millis(left.max(1)).min(p.send_timeout);
        *bounded = sys::socket::set_send_timeout(fd.as_fd(), bound).is_ok();
    }
    true
}

/// Shutdown: the connection has nothing in flight, not even unread bytes
/// in the kernel's buffer (those are a request already sent: answered).
fn drained(fd: &OwnedFd, conn: &Conn) -> bool {
    conn.is_idle() && !sys::socket::has_pending_input(fd.as_fd())
}

/// The client is past its deadline: the header timeout while a request is
/// partly in, the idle timeout between requests.
fn overdue(conn: &Conn, p: &Policy) -> bool {
    let now = monotonic_ms_coarse();
    if conn.has_partial_request() {
        now.saturating_sub(conn.request_started_ms) >= ms(p.header_timeout)
            || conn.body_overdue(now, ms(p.body_timeout))
    } else {
        now.saturating_sub(conn.last_active_ms) >= ms(p.keepalive_timeout)
    }
}

/// Half-close, then swallow what the client still sends for a moment, so
/// closing with unread input does not reset the connection before the client
/// has read our final response.
fn linger(fd: &OwnedFd, conn: &mut Conn, ctx: &Ctx<'_>) {
    let _ = sys::socket::shutdown_write(fd.as_fd());
    conn.on_half_closed();
    if sys::socket::set_read_timeout(fd.as_fd(), LINGER).is_err() {
        return;
    }
    // Ends at EOF, at the byte cap, or once a read has waited LINGER.
    while conn.next() == Next::Read {
        let Some(buf) = conn.recv_buf(ctx) else {
            return;
        };
        match sys::io::read(fd.as_fd(), buf) {
            Ok(0) => conn.on_eof(ctx, monotonic_ms_coarse()),
            Ok(n) => conn.on_received(ctx, n, monotonic_ms_coarse()),
            Err(_) => return,
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}
