//! One client connection: bytes in, parsed requests, responses out.
//!
//! The same state machine serves blocking and non-blocking sockets; the
//! variants differ only in who calls it and when. On a non-blocking socket
//! [`Conn::on_readable`] reads until the kernel buffer is drained, as
//! edge-triggered epoll requires; on a blocking one it reads once (blocking
//! until data comes) so the calling thread can re-check timeouts and shutdown.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::http::app::{respond_error, App, Finished, Job, Meta, Reply};
use crate::http::dynamic::UploadStream;
use crate::http::parser::{Method, Parser, Status};
use crate::http::response::Outbox;
use crate::http::stats::Shard;
use crate::sys;

/// Responses queued beyond this stop the parsing of further pipelined
/// requests until the client has read some: a client that pipelines without
/// reading cannot make the server buffer without bound.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Initial read buffer; grows (up to the request size limits) only for large
/// heads or bodies.
const INITIAL_BUF: usize = 8 * 1024;
/// At most this much is read and discarded from a client being closed after
/// an error, so its last request bytes do not turn our close into a reset
/// that destroys the error response in flight.
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// What the connection needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Waiting for the client to send.
    Read,
    /// Waiting for the socket to accept more of the queued responses.
    Write,
    /// Done: drop the connection (closing the socket).
    Close,
    /// Done, but the client may still be sending: half-close and discard
    /// input for a moment before dropping (see [`Conn::linger_read`]).
    Linger,
}

/// Where deferred (blocking) work goes when the connection's own thread
/// must not block. `token` comes back with the finished response.
pub trait Offload {
    /// Queue `job`, or give it back when the queue is full.
    fn submit(&self, job: Job, token: u64) -> Result<(), Job>;
}

/// What the caller knows that the connection does not.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub shard: &'a Shard,
    /// Requests served on one connection before it is closed (0 = no cap).
    pub max_requests: u64,
    /// Shutdown in progress: answer what has arrived, then close.
    pub draining: bool,
    /// A worker pool for blocking handlers; `None` runs them inline.
    pub offload: Option<&'a dyn Offload>,
}

/// An upload body being streamed to disk (the parser keeps its framing).
struct BodyStream {
    sink: UploadStream,
    /// The response keeps the connection open.
    keep: bool,
    /// When the request started (monotonic ns), for /stats.
    started_ns: u64,
}

pub struct Conn {
    fd: OwnedFd,
    peer: SocketAddrV4,
    /// Names this connection to the offload pool (set by the event loop).
    pub token: u64,
    /// A deferred response is being produced elsewhere: nothing after it
    /// may be parsed or answered until it is back (responses stay in order).
    waiting: bool,
    /// When the deferred request started (monotonic ns), for /stats.
    job_started_ns: u64,
    /// An upload body being written to disk as it arrives.
    stream: Option<BodyStream>,
    nonblocking: bool,
    parser: Parser,
    buf: Vec<u8>,
    filled: usize,
    max_buf: usize,
    out: Outbox,
    served: u64,
    /// A response that ends the connection has been queued.
    closing: bool,
    /// Closing because of a protocol error: linger rather than reset.
    errored: bool,
    /// Parsing stopped at the high-water mark; resume once output drains.
    paused: bool,
    /// The client closed its sending side.
    eof: bool,
    /// Reading stopped with bytes possibly left in the kernel buffer.
    read_pending: bool,
    /// Bytes discarded while lingering.
    lingered: usize,
    /// When the current partial request started (coarse ms), for the header timeout.
    pub request_started_ms: u64,
    /// Last time the client sent or accepted bytes (coarse ms), for idle timeouts.
    pub last_active_ms: u64,
}

impl Conn {
    pub fn new(
        fd: OwnedFd,
        peer: SocketAddrV4,
        nonblocking: bool,
        parser: Parser,
        now_ms: u64,
    ) -> Conn {
        let l = parser.limits();
        Conn {
            fd,
            peer,
            token: 0,
            waiting: false,
            job_started_ns: 0,
            stream: None,
            nonblocking,
            max_buf: l.max_request_line + l.max_header_bytes + l.max_body_bytes + 4096,
            parser,
            buf: vec![0; INITIAL_BUF],
            filled: 0,
            out: Outbox::new(),
            served: 0,
            closing: false,
            errored: false,
            paused: false,
            eof: false,
            read_pending: false,
            lingered: 0,
            request_started_ms: now_ms,
            last_active_ms: now_ms,
        }
    }

    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Bytes of an unfinished request are buffered (the header timeout applies).
    pub fn has_partial_request(&self) -> bool {
        self.filled > 0 || self.stream.is_some()
    }

    /// Responses are queued but not yet written (the socket is full).
    pub fn has_pending_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// A deferred response is being produced on another thread; timeouts
    /// do not apply (the handler bounds its own time) and the connection
    /// must stay until the response comes back.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// The deferred response came back: queue it, answer what was
    /// pipelined behind it, and write.
    pub fn on_job_done(&mut self, ctx: &Ctx<'_>, done: Finished, now_ms: u64) -> Next {
        self.waiting = false;
        self.out.bytes().extend_from_slice(&done.bytes);
        ctx.shard.request_done(
            done.status,
            sys::time::monotonic_ns().saturating_sub(self.job_started_ns),
        );
        self.process(ctx, now_ms);
        self.on_writable(ctx, now_ms)
    }

    /// Read what the client sent, answer every complete request, and write.
    ///
    /// `Err(Interrupted)` is returned only for a blocking socket whose read
    /// was interrupted (shutdown kicks); the caller decides whether to retry.
    pub fn on_readable(&mut self, ctx: &Ctx<'_>, now_ms: u64) -> io::Result<Next> {
        loop {
            self.read_available(ctx, now_ms)?;
            let next = self.after_flush(ctx, now_ms);
            // Reading stopped at the output high-water mark and output has
            // since drained: with edge-triggered epoll no new edge will come
            // for bytes already in the kernel buffer, so read them now.
            if next == Next::Read && self.read_pending && !self.waiting {
                continue;
            }
            return Ok(next);
        }
    }

    /// Read until the socket is drained (non-blocking) or once (blocking),
    /// answering complete requests as they arrive.
    fn read_available(&mut self, ctx: &Ctx<'_>, now_ms: u64) -> io::Result<()> {
        self.read_pending = false;
        loop {
            if self.closing {
                return Ok(());
            }
            if self.paused || self.waiting {
                self.read_pending = self.nonblocking;
                return Ok(());
            }
            if self.filled == self.buf.len() {
                if self.buf.len() >= self.max_buf {
                    // The parser rejects anything this large before the
                    // buffer is full; this is a safety net.
                    self.fail(ctx, 431, "request too large");
                    return Ok(());
                }
                let grown = (self.buf.len() * 2).min(self.max_buf);
                self.buf.resize(grown, 0);
            }
            let space = self.buf.len() - self.filled;
            match sys::io::read(self.fd.as_raw_fd(), &mut self.buf[self.filled..]) {
                Ok(0) => {
                    // Answer what arrived complete; a partial request is
                    // abandoned with the connection.
                    self.eof = true;
                    self.process(ctx, now_ms);
                    self.closing = true;
                    return Ok(());
                }
                Ok(n) => {
                    if self.filled == 0 {
                        self.request_started_ms = now_ms;
                    }
                    self.filled += n;
                    self.last_active_ms = now_ms;
                    self.process(ctx, now_ms);
                    // A short read drained the socket: with edge-triggered
                    // epoll, new data raises a new edge, so reading again
                    // would only cost a syscall returning EAGAIN.
                    if !self.nonblocking || n < space {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted && self.nonblocking => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                Err(_) => {
                    // Reset by the peer: nothing can be delivered any more.
                    self.out = Outbox::new();
                    self.closing = true;
                    self.eof = true;
                    return Ok(());
                }
            }
        }
    }

    /// The socket can take more output.
    pub fn on_writable(&mut self, ctx: &Ctx<'_>, now_ms: u64) -> Next {
        let next = self.after_flush(ctx, now_ms);
        if next == Next::Read && self.read_pending && !self.waiting {
            return self.on_readable(ctx, now_ms).unwrap_or(Next::Close);
        }
        next
    }

    /// The client was silent too long. A half-sent request gets 408; an idle
    /// keep-alive connection is simply closed.
    pub fn on_timeout(&mut self, ctx: &Ctx<'_>, now_ms: u64) -> Next {
        if self.has_partial_request() && !self.closing {
            self.fail(ctx, 408, "request head not received in time");
            return self.after_flush(ctx, now_ms);
        }
        Next::Close
    }

    /// Shutdown: stop taking new requests on this connection. Returns
    /// `Close` if nothing is in flight. A request counts as in flight as
    /// soon as its first bytes reached the kernel, even if not read yet
    /// (say, a connection still queued for a worker): those are answered.
    pub fn on_drain(&mut self) -> Option<Next> {
        if self.out.is_empty()
            && self.filled == 0
            && !self.waiting
            && self.stream.is_none()
            && !sys::socket::has_pending_input(self.fd.as_raw_fd())
        {
            Some(Next::Close)
        } else {
            None
        }
    }

    /// While lingering: read and discard until the client closes, errs, or
    /// has sent more than we are willing to swallow.
    pub fn linger_read(&mut self) -> Next {
        loop {
            let mut sink = [0u8; 4096];
            match sys::io::read(self.fd.as_raw_fd(), &mut sink) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.lingered += n;
                    if self.lingered > LINGER_MAX_BYTES {
                        return Next::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Linger,
                Err(e) if e.kind() == io::ErrorKind::Interrupted && self.nonblocking => {}
                Err(_) => return Next::Close,
            }
        }
    }

    /// Half-close our side so the client sees the end of the response.
    pub fn shutdown_write(&self) {
        let _ = sys::socket::shutdown(self.fd.as_raw_fd(), libc::SHUT_WR);
    }

    /// Parse and answer every complete request in the buffer.
    fn process(&mut self, ctx: &Ctx<'_>, now_ms: u64) {
        let mut start = 0;
        while !self.closing && !self.waiting && self.out.queued_bytes() < OUT_HIGH_WATER {
            if self.stream.is_some() {
                match self.feed_stream(start) {
                    Ok((used, false)) => {
                        start += used;
                        // Body bytes are consumed as they come: the idle
                        // timer restarts with each read.
                        self.request_started_ms = now_ms;
                        break;
                    }
                    Ok((used, true)) => {
                        start += used;
                        self.finish_stream(ctx, now_ms);
                        continue;
                    }
                    Err(e) => {
                        self.fail(ctx, e.status(), e.reason());
                        start = 0;
                        continue;
                    }
                }
            }
            match self.parser.parse(&self.buf[start..self.filled]) {
                Ok(Status::Complete(req)) => {
                    let t0 = sys::time::monotonic_ns();
                    self.served += 1;
                    let keep = req.keep_alive
                        && !ctx.draining
                        && !self.eof
                        && (ctx.max_requests == 0 || self.served < ctx.max_requests);
                    let meta = Meta {
                        keep_alive: keep,
                        peer: self.peer,
                    };
                    let reply = ctx.app.respond(&req, &meta, &mut self.out);
                    start += req.len;
                    match reply {
                        Reply::Done(status) => ctx
                            .shard
                            .request_done(status, sys::time::monotonic_ns().saturating_sub(t0)),
                        Reply::Deferred(job) => self.defer(ctx, job, t0),
                    }
                    self.request_started_ms = now_ms;
                    if !keep {
                        self.closing = true;
                    }
                }
                Ok(Status::Partial) => match self.start_stream(ctx, start) {
                    Some(head_len) => start += head_len,
                    None => break,
                },
                Err(e) => {
                    // The rest of the buffer can no longer be framed: drop it.
                    self.fail(ctx, e.status(), e.reason());
                    start = 0;
                }
            }
        }
        self.paused = !self.closing && !self.waiting && self.out.queued_bytes() >= OUT_HIGH_WATER;
        if start > 0 {
            self.buf.copy_within(start..self.filled, 0);
            self.filled -= start;
        }
    }

    /// A `POST /upload` head is complete and its body is still arriving:
    /// take the body over, to be written to disk as it comes instead of
    /// buffered whole. Returns the head's length; `None` leaves the request
    /// to the parser.
    fn start_stream(&mut self, ctx: &Ctx<'_>, start: usize) -> Option<usize> {
        let req = self.parser.pending_head(&self.buf[start..self.filled])?;
        if req.method != Method::Post {
            return None;
        }
        let keep = req.keep_alive
            && !ctx.draining
            && !self.eof
            && (ctx.max_requests == 0 || self.served + 1 < ctx.max_requests);
        let meta = Meta {
            keep_alive: keep,
            peer: self.peer,
        };
        let sink = ctx.app.stream_upload(&req, &meta)?;
        self.served += 1;
        self.stream = Some(BodyStream {
            sink,
            keep,
            started_ns: sys::time::monotonic_ns(),
        });
        Some(self.parser.take_over_body())
    }

    /// Feed buffered bytes from `start` to the body stream: how many were
    /// used up, and whether the body is complete.
    fn feed_stream(&mut self, start: usize) -> Result<(usize, bool), crate::http::parser::Error> {
        let Conn {
            stream,
            buf,
            filled,
            parser,
            ..
        } = self;
        let Some(s) = stream.as_mut() else {
            return Ok((0, true));
        };
        parser.stream_body(&buf[start..*filled], &mut |piece| s.sink.write(piece))
    }

    /// The streamed body is complete: commit it (a job) and answer.
    fn finish_stream(&mut self, ctx: &Ctx<'_>, now_ms: u64) {
        let Some(s) = self.stream.take() else {
            return;
        };
        self.request_started_ms = now_ms;
        if !s.keep {
            self.closing = true;
        }
        self.defer(ctx, s.sink.finish(), s.started_ns);
    }

    /// Run blocking work inline, or hand it to the pool and wait for it.
    fn defer(&mut self, ctx: &Ctx<'_>, job: Job, t0: u64) {
        let Some(pool) = ctx.offload else {
            let done = job.run();
            self.out.bytes().extend_from_slice(&done.bytes);
            ctx.shard
                .request_done(done.status, sys::time::monotonic_ns().saturating_sub(t0));
            return;
        };
        match pool.submit(job, self.token) {
            Ok(()) => {
                self.waiting = true;
                self.job_started_ns = t0;
            }
            Err(job) => {
                // Shed: the pool is saturated. The request is answered 503
                // with Retry-After and the connection closes after it.
                let done = job.refuse();
                self.out.bytes().extend_from_slice(&done.bytes);
                ctx.shard.shed();
                ctx.shard.request_done(done.status, 0);
                self.closing = true;
            }
        }
    }

    /// Queue an error response and end the connection after it.
    fn fail(&mut self, ctx: &Ctx<'_>, status: u16, detail: &str) {
        // An upload being streamed is abandoned: its temporary file goes.
        self.stream = None;
        let mark = self.out.mark();
        let status = respond_error(&mut self.out, status, detail);
        ctx.shard.request_done(status, 0);
        ctx.app
            .log_failure(self.peer, status, self.out.body_bytes_since(mark));
        self.filled = 0;
        self.closing = true;
        self.errored = true;
    }

    /// Write queued output, then decide what comes next.
    fn after_flush(&mut self, ctx: &Ctx<'_>, now_ms: u64) -> Next {
        loop {
            match self.out.flush(self.fd.as_raw_fd()) {
                Ok(f) => {
                    ctx.shard.bytes_sent(f.written);
                    if f.written > 0 {
                        self.last_active_ms = now_ms;
                    }
                    if !f.done {
                        return Next::Write;
                    }
                }
                Err(_) => return Next::Close,
            }
            if self.waiting {
                // Everything before the deferred response is written; the
                // rest waits for it.
                return Next::Read;
            }
            if self.closing {
                return if self.errored && !self.eof {
                    Next::Linger
                } else {
                    Next::Close
                };
            }
            if self.paused {
                // Output drained: resume the pipelined requests still buffered.
                self.paused = false;
                self.process(ctx, now_ms);
                if self.out.is_empty() {
                    return Next::Read;
                }
                continue;
            }
            return Next::Read;
        }
    }
}
