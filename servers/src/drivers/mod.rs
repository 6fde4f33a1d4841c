//! The drivers: who moves a connection's bytes, and the only places its
//! socket syscalls are made.
//!
//! Each feeds the sans-IO [`crate::conn::Conn`] the same calls — input
//! (bytes or EOF), what to send, what was sent, finished jobs:
//! - [`blocking`]: one connection on the calling thread, blocking socket
//!   (the `blocking` and `threadpool` variants);
//! - [`readiness`]: an edge-triggered epoll loop over many non-blocking
//!   sockets (`epoll`, and one per thread in `epoll-threads`);
//! - [`offload`]: not a driver but where a driver's blocking jobs can run —
//!   a worker pool that completes back into the loop.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::conn::{Conn, Ctx};
use crate::http::response::{Chunk, Outbox};
use crate::sys;

pub mod blocking;
pub mod offload;
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
}

/// Largest single `sendfile` (the kernel caps one call near 2 GiB anyway).
const SENDFILE_MAX: u64 = 1 << 30;

/// How a send attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Everything queued went out.
    All,
    /// The socket is full (non-blocking): wait until it is writable.
    Blocked,
}

/// Send one chunk: `send` for bytes (with `MSG_MORE` when more follows),
/// `sendfile` for a file range. `EINTR` is retried (shutdown lets responses
/// in flight finish); a file that shrank while being sent is an error.
fn send_chunk(fd: BorrowedFd<'_>, chunk: Chunk<'_>) -> io::Result<usize> {
    loop {
        let res = match chunk {
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
        };
        match res {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Send what `conn` has queued until it is all sent or the socket is full.
/// An error means the connection is broken (it has been told).
pub fn send_queued(
    fd: BorrowedFd<'_>,
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    now_ms: u64,
) -> io::Result<Sent> {
    while let Some(chunk) = conn.to_send() {
        match send_chunk(fd, chunk) {
            Ok(n) => conn.on_sent(ctx, n, now_ms),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
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
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}
