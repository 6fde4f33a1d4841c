//! The drivers: who moves a connection's bytes, and the only places its
//! socket syscalls are made.
//!
//! Each feeds the sans-IO [`crate::conn::Conn`] the same calls — input
//! (bytes or EOF), what to send, what was sent, finished jobs:
//! - [`blocking`]: one connection on the calling thread, blocking socket
//!   (the `blocking` and `threadpool` variants);
//! - [`readiness`]: an edge-triggered epoll loop over many non-blocking
//!   sockets (`epoll`, and one per thread in `epoll-threads`);
//! - [`completion`]: an io_uring per thread, multishot accept and receive,
//!   sends batched per loop iteration (`uring`);
//! - [`offload`]: not a driver but where a driver's blocking jobs can run —
//!   a worker pool that completes back into the loop;
//! - [`processes`]: not a driver either: forking and reaping the serving
//!   processes of the process models (`fork`, `prefork`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::conn::{Conn, Ctx};
use crate::http::response::{Chunk, Outbox};
use crate::sys;
use crate::sys::signal::Shutdown;

pub mod accept;
pub mod blocking;
pub mod completion;
pub mod offload;
pub mod processes;
pub mod readiness;

/// A connection policy: the timeouts and limits every driver applies.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Close a keep-alive connection idle this long.
    pub keepalive_timeout: Duration,
    /// Answer 408 when a request head takes longer than this.
    pub header_timeout: Duration,
    /// Requests per connection (0 = no cap; 1 = one request, then close).
    pub max_requests: u64,
    /// After shutdown starts, a connection still busy this long is dropped.
    pub shutdown_timeout: Duration,
    /// A client that reads nothing of its response for this long is cut off.
    pub send_timeout: Duration,
    /// A streamed request body must have arrived within this (0 = no limit).
    pub body_timeout: Duration,
    /// Open files queued on one connection before its parsing pauses.
    pub max_queued_files: usize,
}

/// How often the event loops sweep their connections for deadlines (and
/// how long a connection must be quiet to give its buffers back).
pub const SWEEP_MS: u64 = 250;
/// How long a connection closed after an error may keep sending.
pub const LINGER_MS: u64 = 1000;

/// What a sweep does with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// No deadline passed; `quiet`: idle for a whole sweep period, so its
    /// buffers go back (a busy connection keeps them).
    Keep {
        /// Idle since the last sweep.
        quiet: bool,
    },
    /// Close it: a linger, a stalled send, or an idle connection at its end.
    Close,
    /// A request is overdue (head or body): answer 408 through the
    /// connection ([`Conn::on_timeout`]).
    Late,
}

impl Policy {
    /// Shutdown was requested longer ago than `shutdown_timeout`: what is
    /// still in flight is dropped, and no more blocking work starts.
    pub fn drain_expired(&self, shutdown: &Shutdown) -> bool {
        shutdown.requested() && shutdown.elapsed_ms() >= self.shutdown_timeout.as_millis() as u64
    }

    /// The one deadline rule of every event loop's sweep: which timer
    /// applies to `c` in its state (linger, send, header or body,
    /// keep-alive; none while it waits for a job), and what to do once it
    /// has passed. `draining`: shutdown started, so idle connections end.
    pub fn sweep(&self, c: &Conn, now: u64, draining: bool) -> Swept {
        let ms = |d: Duration| d.as_millis() as u64;
        let idle_for = now.saturating_sub(c.last_active_ms);
        let expired = if c.is_lingering() {
            idle_for >= LINGER_MS
        } else if c.is_waiting() {
            false
        } else if c.has_pending_output() {
            // A client not reading its responses (nginx's send_timeout).
            idle_for >= ms(self.send_timeout)
        } else if c.has_partial_request() {
            now.saturating_sub(c.request_started_ms) >= ms(self.header_timeout)
                || c.body_overdue(now, ms(self.body_timeout))
        } else {
            draining || idle_for >= ms(self.keepalive_timeout)
        };
        if !expired {
            Swept::Keep {
                quiet: idle_for >= SWEEP_MS,
            }
        } else if c.is_lingering()
            || c.has_pending_output()
            || (draining && !c.has_partial_request())
        {
            Swept::Close
        } else {
            Swept::Late
        }
    }
}

/// Largest single `sendfile` (the kernel caps one call near 2 GiB anyway).
const SENDFILE_MAX: u64 = 1 << 30;

/// How a send attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Everything queued went out.
    All,
    /// The socket is full: a non-blocking one must wait until it is
    /// writable; on a blocking one the send timeout passed with no progress.
    Blocked,
    /// The caller's `go_on` said to stop (shutdown past its deadline).
    Stopped,
}

/// Send one chunk: `send` for bytes (with `MSG_MORE` when more follows),
/// `sendfile` for a file range. A file that shrank while being sent is an
/// error; `EINTR` is returned as it is.
fn send_chunk(fd: BorrowedFd<'_>, chunk: Chunk<'_>) -> io::Result<usize> {
    match chunk {
        Chunk::Bytes { data, more } => sys::io::send(fd, data, more),
        Chunk::File {
            fd: file,
            offset,
            len,
        } => {
            let mut off = offset as i64;
            let n = len.min(SENDFILE_MAX) as usize;
            match sys::io::sendfile(fd, file.as_fd(), &mut off, n) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                )),
                other => other,
            }
        }
    }
}

/// Send what `conn` has queued until it is all sent, the socket is full (or
/// its send timeout passed), or `go_on` — asked before every send, and so
/// after every signal that interrupted one — says to stop. An error means
/// the connection is broken (it has been told).
pub fn send_queued(
    fd: BorrowedFd<'_>,
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    now_ms: u64,
    mut go_on: impl FnMut() -> bool,
) -> io::Result<Sent> {
    while let Some(chunk) = conn.to_send() {
        if !go_on() {
            return Ok(Sent::Stopped);
        }
        match send_chunk(fd, chunk) {
            Ok(n) => conn.on_sent(ctx, n, now_ms),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                conn.on_broken();
                return Err(e);
            }
        }
    }
    Ok(Sent::All)
}

/// Send a standalone response (a client turned away before it has a
/// connection state): as much as the socket takes now. Returns the bytes sent.
pub fn send_outbox(fd: BorrowedFd<'_>, out: &mut Outbox) -> io::Result<u64> {
    let mut sent = 0;
    while let Some(chunk) = out.front() {
        match send_chunk(fd, chunk) {
            Ok(n) => {
                out.consume(n);
                sent += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Turn a client away with `503` + `Retry-After: 1` and close, counted as
/// shed in `shard`, without blocking on it: a fresh socket's send buffer is
/// empty, so the response fits. For a model whose queue (or process bound)
/// is full, so the client hears why rather than seeing a silent close.
pub fn turn_away(fd: OwnedFd, shard: &crate::http::stats::Shard) {
    let mut out = Outbox::new();
    let status = crate::app::respond_overloaded(&mut out);
    shard.shed();
    shard.request_done(status, 0);
    if let Ok(n) = send_outbox(fd.as_fd(), &mut out) {
        shard.bytes_sent(n);
    }
    let _ = sys::socket::shutdown_write(fd.as_fd());
}
