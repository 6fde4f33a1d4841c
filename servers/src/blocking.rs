//! Serving one connection on a blocking socket, start to finish, on the
//! calling thread: the per-connection loop of the `blocking` and
//! `threadpool` models.
//!
//! Timeouts need no timer: the socket's read timeout (SO_RCVTIMEO) is set to
//! the shorter of the idle and header timeouts, so a read returns at least
//! that often and the loop checks both deadlines.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::conn::{Conn, Ctx, Next};
use crate::http::app::App;
use crate::http::parser::Parser;
use crate::http::stats::Shard;
use crate::sys;
use crate::sys::signal::Shutdown;
use crate::sys::time::monotonic_ms_coarse;

/// How long a closing client may keep sending before we drop it.
const LINGER: Duration = Duration::from_secs(1);

pub struct Policy {
    pub keepalive_timeout: Duration,
    pub header_timeout: Duration,
    /// Requests per connection (0 = no cap; 1 = one request, then close).
    pub max_requests: u64,
    /// After shutdown starts, a connection still busy this long is dropped.
    pub shutdown_timeout: Duration,
}

/// Serve `fd` until the client leaves, a limit is reached, or shutdown.
pub fn serve(
    fd: OwnedFd,
    peer: SocketAddrV4,
    parser: Parser,
    app: &App,
    shard: &Shard,
    policy: &Policy,
    shutdown: &Shutdown,
) {
    let tick = policy
        .keepalive_timeout
        .min(policy.header_timeout)
        .max(Duration::from_millis(10));
    if sys::socket::set_read_timeout(fd.as_raw_fd(), tick).is_err() {
        return;
    }
    let keepalive_ms = policy.keepalive_timeout.as_millis() as u64;
    let header_ms = policy.header_timeout.as_millis() as u64;
    let drain_ms = policy.shutdown_timeout.as_millis() as u64;
    let mut conn = Conn::new(fd, peer, false, parser, monotonic_ms_coarse());
    loop {
        let now = monotonic_ms_coarse();
        let ctx = Ctx {
            app,
            shard,
            max_requests: policy.max_requests,
            draining: shutdown.requested(),
            offload: None,
        };
        if ctx.draining
            && (conn.on_drain() == Some(Next::Close) || shutdown.elapsed_ms() >= drain_ms)
        {
            return;
        }
        let next = match conn.on_readable(&ctx, now) {
            Ok(next) => next,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => Next::Close,
        };
        let next = match next {
            Next::Read => {
                let now = monotonic_ms_coarse();
                let overdue = if conn.has_partial_request() {
                    now.saturating_sub(conn.request_started_ms) >= header_ms
                } else {
                    now.saturating_sub(conn.last_active_ms) >= keepalive_ms
                };
                if !overdue {
                    continue;
                }
                conn.on_timeout(&ctx, now)
            }
            other => other,
        };
        match next {
            Next::Read => continue,
            // A blocking send only returns once everything is written.
            Next::Write | Next::Close => return,
            Next::Linger => {
                linger(&mut conn);
                return;
            }
        }
    }
}

/// Half-close, then swallow what the client still sends for a moment, so
/// closing with unread input does not reset the connection before the client
/// has read our final response.
fn linger(conn: &mut Conn) {
    conn.shutdown_write();
    if sys::socket::set_read_timeout(conn.fd(), LINGER).is_ok() {
        // Returns at EOF, at the byte cap, or once a read has waited LINGER.
        let _ = conn.linger_read();
    }
}
