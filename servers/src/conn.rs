//! One client connection's state machine, sans-IO.
//!
//! The connection never touches its socket. A driver hands it what arrived
//! ([`Conn::recv_buf`] + [`Conn::on_received`], or [`Conn::on_input`] for
//! bytes that landed in a buffer of the driver's own, and [`Conn::on_eof`]),
//! asks what to send next ([`Conn::to_send`]), tells it what was sent
//! ([`Conn::on_sent`]), and runs the blocking jobs it asks for
//! ([`Conn::take_job`] → [`Conn::on_job_done`]). [`Conn::next`] says what
//! it needs now. Blocking sockets, a readiness loop (epoll) and a
//! completion queue (io_uring) drive the same machine; they differ only in
//! who calls it and when, and in which syscalls move the bytes.
//!
//! Where the connection is in its life is one `Phase`; whether the client
//! may still send is the separate `Input` (a client can half-close in any
//! phase).

use std::net::SocketAddrV4;

use crate::app::dynamic::UploadStream;
use crate::app::{respond_error, App, Finished, Job, Meta, Outcome, Reply};
use crate::http::parser::{self, Method, Parser, Status};
use crate::http::response::{Chunk, Outbox};
use crate::http::stats::Shard;

/// Responses queued beyond this stop the parsing of further pipelined
/// requests until the client has read some: a client that pipelines without
/// reading cannot make the server buffer without bound.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Read buffer allocated with the first bytes; grows (up to the request
/// size limits) only for large heads or bodies, and a grown one is freed as
/// soon as it is empty again, so a keep-alive connection never keeps the
/// memory of its largest request.
const INITIAL_BUF: usize = 8 * 1024;
/// At most this much is read and discarded from a client being closed after
/// an error, so its last request bytes do not turn our close into a reset
/// that destroys the error response in flight.
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// What the connection needs next from its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Waiting for the client to send.
    Read,
    /// Output is queued: send [`Conn::to_send`].
    Write,
    /// A deferred response is being produced: run [`Conn::take_job`]'s job
    /// (or wait for it) and call [`Conn::on_job_done`].
    Wait,
    /// Done after an error while the client may still be sending:
    /// half-close our side, call [`Conn::on_half_closed`], and keep feeding
    /// input (it is discarded) until EOF or [`Next::Close`].
    Linger,
    /// Done: drop the connection (closing the socket).
    Close,
}

/// Where the connection is in its life.
enum Phase {
    /// Reading requests and answering each as it completes.
    Open,
    /// Responses queued past the high-water mark: parsing resumes once the
    /// client has read them.
    Backlogged,
    /// An upload body is being written to disk as it arrives.
    Streaming(Box<BodyStream>),
    /// A response is being produced by blocking work; nothing behind it is
    /// answered until it is back (responses stay in order). `job` is
    /// `Some` until the driver takes it; `last` ends the connection after it.
    Waiting {
        job: Option<Job>,
        started_ns: u64,
        last: bool,
    },
    /// The last response is queued: once it is sent, close — after an
    /// error, linger first so the client can read it.
    Closing { after_error: bool },
    /// Our side is half-closed after an error; input is read and dropped.
    Lingering { discarded: usize },
    /// Nothing more to do.
    Closed,
}

/// Whether the client may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Open,
    /// EOF seen: the client half-closed (or the connection broke).
    Ended,
}

/// What the driver knows that the connection does not.
pub struct Ctx<'a> {
    /// The application answering requests.
    pub app: &'a App,
    /// This thread's (or process's) counters.
    pub shard: &'a Shard,
    /// Requests served on one connection before it is closed (0 = no cap).
    pub max_requests: u64,
    /// Shutdown in progress: answer what has arrived, then close.
    pub draining: bool,
    /// Open files queued for sending on one connection before parsing
    /// pauses (`--max-queued-files`).
    pub max_queued_files: usize,
    /// Monotonic nanoseconds, for service times: the driver's clock
    /// (`sys::time::monotonic_ns`), so the state machine reads none of its
    /// own and a test can run it on a fake one.
    pub clock: fn() -> u64,
}

/// An upload body being streamed to disk (the parser keeps its framing).
struct BodyStream {
    sink: UploadStream,
    /// The response keeps the connection open.
    keep: bool,
    started_ns: u64,
    /// When the body began (coarse ms), for `--body-timeout`.
    started_ms: u64,
}

/// One client connection: its buffers, parser and phase.
pub struct Conn {
    peer: SocketAddrV4,
    /// Names this connection to whoever runs its jobs (set by the driver).
    pub token: u64,
    phase: Phase,
    input: Input,
    parser: Parser,
    buf: Vec<u8>,
    filled: usize,
    max_buf: usize,
    out: Outbox,
    served: u64,
    /// When the current partial request started (coarse ms), for the header timeout.
    pub request_started_ms: u64,
    /// Last time the client sent or accepted bytes (coarse ms), for idle timeouts.
    pub last_active_ms: u64,
}

impl Conn {
    /// A new connection from `peer`, parsing with `parser`'s limits.
    pub fn new(peer: SocketAddrV4, parser: Parser, now_ms: u64) -> Conn {
        let l = parser.limits();
        Conn {
            peer,
            token: 0,
            phase: Phase::Open,
            input: Input::Open,
            max_buf: l.max_request_line + l.max_header_bytes + l.max_body_bytes + 4096,
            parser,
            buf: Vec::new(),
            filled: 0,
            out: Outbox::default(),
            served: 0,
            request_started_ms: now_ms,
            last_active_ms: now_ms,
        }
    }

    /// What the connection needs now.
    pub fn next(&self) -> Next {
        if matches!(self.phase, Phase::Closed) {
            return Next::Close;
        }
        if !self.out.is_empty() {
            return Next::Write;
        }
        match self.phase {
            Phase::Open | Phase::Backlogged | Phase::Streaming(_) | Phase::Lingering { .. } => {
                Next::Read
            }
            Phase::Waiting { .. } => Next::Wait,
            Phase::Closing { after_error } if after_error && self.input == Input::Open => {
                Next::Linger
            }
            Phase::Closing { .. } | Phase::Closed => Next::Close,
        }
    }

    /// Whether input is useful now. A readiness driver stops reading when it
    /// is not (and remembers the socket may hold more); a completion driver
    /// may deliver anyway, and the bytes are kept for later.
    pub fn wants_input(&self) -> bool {
        self.input == Input::Open
            && matches!(
                self.phase,
                Phase::Open | Phase::Streaming(_) | Phase::Lingering { .. }
            )
    }

    /// Where the next bytes from the client go: read into this, then call
    /// [`Conn::on_received`]. `None` when the connection takes no input now
    /// (see [`Conn::wants_input`]), or the buffer is full at the request
    /// size limit (the request is then answered 431).
    pub fn recv_buf(&mut self, ctx: &Ctx<'_>) -> Option<&mut [u8]> {
        if !self.wants_input() {
            return None;
        }
        if self.buf.is_empty() {
            self.buf.resize(INITIAL_BUF, 0);
        }
        if let Phase::Lingering { .. } = self.phase {
            return Some(&mut self.buf[..]);
        }
        if self.filled == self.buf.len() {
            if self.buf.len() >= self.max_buf {
                // The parser rejects anything this large before the buffer
                // is full; this is a safety net.
                self.fail(ctx, 431, "request too large");
                return None;
            }
            let grown = (self.buf.len() * 2).min(self.max_buf);
            self.buf.resize(grown, 0);
        }
        Some(&mut self.buf[self.filled..])
    }

    /// `n` bytes were read into [`Conn::recv_buf`]: answer every request
    /// they complete.
    pub fn on_received(&mut self, ctx: &Ctx<'_>, n: usize, now_ms: u64) {
        if n == 0 {
            return;
        }
        if let Phase::Lingering { discarded } = &mut self.phase {
            *discarded += n;
            if *discarded > LINGER_MAX_BYTES {
                self.phase = Phase::Closed;
            }
            return;
        }
        if self.filled == 0 {
            self.request_started_ms = now_ms;
        }
        self.filled += n;
        self.last_active_ms = now_ms;
        self.process(ctx, now_ms);
    }

    /// Bytes that arrived in a buffer of the driver's own (a completion
    /// driver's provided buffers): copied in, then as [`Conn::on_received`].
    /// Input that comes while the connection is not reading (a deferred
    /// response, a backlog) is kept for later, up to the request limits.
    pub fn on_input(&mut self, ctx: &Ctx<'_>, mut data: &[u8], now_ms: u64) {
        while !data.is_empty() && !matches!(self.phase, Phase::Closed) {
            if let Phase::Lingering { .. } = self.phase {
                let n = data.len();
                self.on_received(ctx, n, now_ms);
                return;
            }
            if matches!(self.phase, Phase::Closing { .. }) {
                return;
            }
            if self.buf.is_empty() {
                self.buf.resize(INITIAL_BUF, 0);
            }
            if self.filled == self.buf.len() {
                if self.buf.len() >= self.max_buf {
                    self.fail(ctx, 431, "request too large");
                    return;
                }
                let grown = (self.buf.len() * 2).min(self.max_buf);
                self.buf.resize(grown, 0);
            }
            let n = data.len().min(self.buf.len() - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            data = &data[n..];
            if self.wants_input() {
                self.on_received(ctx, n, now_ms);
            } else {
                self.filled += n;
                self.last_active_ms = now_ms;
            }
        }
    }

    /// The client closed its sending side: answer what arrived complete; a
    /// partial request is abandoned with the connection.
    pub fn on_eof(&mut self, ctx: &Ctx<'_>, now_ms: u64) {
        if self.input == Input::Ended {
            return;
        }
        self.input = Input::Ended;
        match self.phase {
            Phase::Lingering { .. } => self.phase = Phase::Closed,
            Phase::Open | Phase::Streaming(_) => {
                self.process(ctx, now_ms);
                if matches!(self.phase, Phase::Open | Phase::Streaming(_)) {
                    // An upload cut short is abandoned: its temp file goes.
                    self.phase = Phase::Closing { after_error: false };
                }
            }
            Phase::Backlogged | Phase::Waiting { .. } => {}
            Phase::Closing { .. } | Phase::Closed => {}
        }
    }

    /// The connection broke (a reset, a failed send): nothing can be
    /// delivered any more.
    pub fn on_broken(&mut self) {
        self.out.clear();
        self.input = Input::Ended;
        self.phase = Phase::Closed;
    }

    /// What to send next; `None` when nothing is queued.
    pub fn to_send(&self) -> Option<Chunk<'_>> {
        if matches!(self.phase, Phase::Closed) {
            return None;
        }
        self.out.front()
    }

    /// `n` bytes of [`Conn::to_send`] reached the kernel. When the queue
    /// drains, parsing resumes for requests held back by the high-water mark.
    pub fn on_sent(&mut self, ctx: &Ctx<'_>, n: usize, now_ms: u64) {
        self.out.consume(n);
        ctx.shard.bytes_sent(n as u64);
        if n > 0 {
            self.last_active_ms = now_ms;
        }
        if self.out.is_empty() && matches!(self.phase, Phase::Backlogged) {
            self.phase = Phase::Open;
            self.process(ctx, now_ms);
            if self.input == Input::Ended && matches!(self.phase, Phase::Open) {
                self.phase = Phase::Closing { after_error: false };
            }
        }
    }

    /// The blocking work behind a deferred response, for the driver to run
    /// inline or hand to a pool; `None` when there is none (or it was taken).
    pub fn take_job(&mut self) -> Option<Job> {
        match &mut self.phase {
            Phase::Waiting { job, .. } => job.take(),
            _ => None,
        }
    }

    /// A job is waiting to be taken with [`Conn::take_job`].
    pub fn has_job(&self) -> bool {
        matches!(self.phase, Phase::Waiting { job: Some(_), .. })
    }

    /// The deferred response came back: queue it and answer what was
    /// pipelined behind it.
    pub fn on_job_done(&mut self, ctx: &Ctx<'_>, done: Finished, now_ms: u64) {
        let Phase::Waiting {
            started_ns, last, ..
        } = self.phase
        else {
            return;
        };
        let took = (ctx.clock)().saturating_sub(started_ns);
        let served = self.queue_finished(ctx, done, took);
        self.phase = if last || !served {
            Phase::Closing { after_error: false }
        } else {
            Phase::Open
        };
        self.process(ctx, now_ms);
        if self.input == Input::Ended && matches!(self.phase, Phase::Open) {
            self.phase = Phase::Closing { after_error: false };
        }
    }

    /// Queue a job's response and count it; whether the connection may go on.
    fn queue_finished(&mut self, ctx: &Ctx<'_>, done: Finished, took_ns: u64) -> bool {
        self.out.bytes().extend_from_slice(&done.bytes);
        if let Some((file, len)) = done.file {
            self.out.push_file(file, 0, len);
        }
        if done.outcome == Outcome::Shed {
            ctx.shard.shed();
        }
        ctx.shard.request_done(done.status, took_ns);
        done.outcome == Outcome::Served
    }

    /// The job could not be queued (its pool is saturated): answer 503 with
    /// `Retry-After`, and close after it.
    pub fn on_job_refused(&mut self, ctx: &Ctx<'_>, job: Job) {
        self.queue_finished(ctx, job.refuse(), 0);
        self.phase = Phase::Closing { after_error: false };
    }

    /// Our side was half-closed after an error response: from now on input
    /// is discarded, up to a cap.
    pub fn on_half_closed(&mut self) {
        self.phase = Phase::Lingering { discarded: 0 };
    }

    /// The client was silent too long. A half-sent request gets 408; an idle
    /// keep-alive connection is simply closed.
    pub fn on_timeout(&mut self, ctx: &Ctx<'_>) {
        let closing = matches!(
            self.phase,
            Phase::Closing { .. } | Phase::Lingering { .. } | Phase::Closed
        );
        if self.has_partial_request() && !closing {
            self.fail(ctx, 408, "request head not received in time");
        } else {
            self.out.clear();
            self.phase = Phase::Closed;
        }
    }

    /// Shutdown: whether the connection is idle and can be closed now. A
    /// request counts as in flight as soon as its first bytes arrived (a
    /// driver also checks for bytes still in the kernel's buffer).
    pub fn is_idle(&self) -> bool {
        self.out.is_empty()
            && self.filled == 0
            && matches!(
                self.phase,
                Phase::Open | Phase::Backlogged | Phase::Lingering { .. }
            )
    }

    /// A streamed body has been arriving for `body_ms` or more: however
    /// steadily its bytes trickle in (each read restarts the header timer),
    /// the whole body has a deadline (`--body-timeout`; 0 = none).
    pub fn body_overdue(&self, now_ms: u64, body_ms: u64) -> bool {
        match &self.phase {
            Phase::Streaming(s) => body_ms > 0 && now_ms.saturating_sub(s.started_ms) >= body_ms,
            _ => false,
        }
    }

    /// Bytes of an unfinished request are buffered (the header timeout applies).
    pub fn has_partial_request(&self) -> bool {
        self.filled > 0 || matches!(self.phase, Phase::Streaming(_))
    }

    /// Responses are queued but not yet sent.
    pub fn has_pending_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// A deferred response is being produced; timeouts do not apply (the
    /// handler bounds its own time) and the connection must stay until the
    /// response comes back.
    pub fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. })
    }

    /// Half-closed after an error and discarding input.
    pub fn is_lingering(&self) -> bool {
        matches!(self.phase, Phase::Lingering { .. })
    }

    /// Responses queued past what one connection may hold: bytes in memory,
    /// or open files (each a descriptor) — a client pipelining requests for
    /// a small file without reading would otherwise fill the descriptor table.
    fn out_full(&self, ctx: &Ctx<'_>) -> bool {
        self.out.queued_bytes() >= OUT_HIGH_WATER || self.out.queued_files() >= ctx.max_queued_files
    }

    /// Whether the connection stays open after the request being answered.
    fn keeps_alive(&self, ctx: &Ctx<'_>, client_wants: bool, served: u64) -> bool {
        client_wants
            && !ctx.draining
            && self.input == Input::Open
            && (ctx.max_requests == 0 || served < ctx.max_requests)
    }

    /// Parse and answer every complete request in the buffer.
    fn process(&mut self, ctx: &Ctx<'_>, now_ms: u64) {
        let mut start = 0;
        while !self.out_full(ctx) {
            match self.phase {
                Phase::Streaming(_) => match self.feed_stream(start) {
                    Ok((used, false)) => {
                        start += used;
                        // Body bytes are consumed as they come: the idle
                        // timer restarts with each read.
                        self.request_started_ms = now_ms;
                        break;
                    }
                    Ok((used, true)) => {
                        start += used;
                        self.finish_stream(now_ms);
                        continue;
                    }
                    Err(e) => {
                        self.fail(ctx, e.status(), e.reason());
                        start = 0;
                        break;
                    }
                },
                Phase::Open => {}
                _ => break,
            }
            match self.parser.parse(&self.buf[start..self.filled]) {
                Ok(Status::Complete(req)) => {
                    let t0 = (ctx.clock)();
                    self.served += 1;
                    let keep = self.keeps_alive(ctx, req.keep_alive, self.served);
                    let meta = Meta {
                        keep_alive: keep,
                        peer: self.peer,
                    };
                    let reply = ctx.app.respond(&req, &meta, &mut self.out);
                    start += req.len;
                    self.request_started_ms = now_ms;
                    match reply {
                        Reply::Done(status) => {
                            let took = (ctx.clock)().saturating_sub(t0);
                            ctx.shard.request_done(status, took);
                            if !keep {
                                self.phase = Phase::Closing { after_error: false };
                            }
                        }
                        Reply::Deferred(job) => {
                            self.phase = Phase::Waiting {
                                job: Some(job),
                                started_ns: t0,
                                last: !keep,
                            };
                        }
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
                    break;
                }
            }
        }
        if matches!(self.phase, Phase::Open) && self.out_full(ctx) {
            self.phase = Phase::Backlogged;
        }
        if start > 0 {
            self.buf.copy_within(start..self.filled, 0);
            self.filled -= start;
        }
        if self.filled == 0 && self.buf.len() > INITIAL_BUF {
            self.buf = Vec::new();
        }
    }

    /// The connection is idle: give back its buffers (a few hundred bytes
    /// of state are left). Called by drivers for connections that have been
    /// quiet a while, so a busy keep-alive connection keeps its buffers.
    pub fn release_buffers(&mut self) {
        if self.filled == 0 && matches!(self.phase, Phase::Open) {
            self.buf = Vec::new();
            self.out.release();
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
        let keep = self.keeps_alive(ctx, req.keep_alive, self.served + 1);
        let meta = Meta {
            keep_alive: keep,
            peer: self.peer,
        };
        let sink = ctx.app.stream_upload(&req, &meta)?;
        self.served += 1;
        self.phase = Phase::Streaming(Box::new(BodyStream {
            sink,
            keep,
            started_ns: (ctx.clock)(),
            started_ms: self.request_started_ms,
        }));
        Some(self.parser.take_over_body())
    }

    /// Feed buffered bytes from `start` to the body stream: how many were
    /// used up, and whether the body is complete.
    fn feed_stream(&mut self, start: usize) -> Result<(usize, bool), parser::Error> {
        let Conn {
            phase,
            buf,
            filled,
            parser,
            ..
        } = self;
        let Phase::Streaming(s) = phase else {
            return Ok((0, true));
        };
        parser.stream_body(&buf[start..*filled], &mut |piece| s.sink.write(piece))
    }

    /// The streamed body is complete: committing it is a job.
    fn finish_stream(&mut self, now_ms: u64) {
        let Phase::Streaming(s) = std::mem::replace(&mut self.phase, Phase::Open) else {
            return;
        };
        self.request_started_ms = now_ms;
        self.phase = Phase::Waiting {
            job: Some(s.sink.finish()),
            started_ns: s.started_ns,
            last: !s.keep,
        };
    }

    /// Queue an error response and end the connection after it.
    fn fail(&mut self, ctx: &Ctx<'_>, status: u16, detail: &str) {
        // An upload being streamed is abandoned (dropping its stream
        // removes the temporary file).
        self.phase = Phase::Closing { after_error: true };
        let mark = self.out.mark();
        let status = respond_error(&mut self.out, status, detail);
        ctx.shard.request_done(status, 0);
        ctx.app
            .log_failure(self.peer, status, self.out.body_bytes_since(mark));
        self.filled = 0;
    }
}

/// The connection driven purely in memory, as a completion driver would
/// feed it: bytes in, chunks out, partial sends, jobs run by the caller.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::app::stats::Stats;
    use crate::app::Settings;
    use crate::http::parser::Limits;

    struct World {
        app: App,
        _root: tempfile::TempDir,
    }

    fn world() -> World {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("file.txt"), b"0123456789").unwrap();
        let settings = Settings {
            root: root.path().to_path_buf(),
            cgi_dir: root.path().join("no-cgi"),
            cgi_timeout: Duration::from_secs(1),
            cgi_output: crate::app::cgi::OutputLimits {
                memory: 1024,
                max: 1 << 20,
            },
            data_dir: None,
            access_log: None,
            local: "127.0.0.1:80".parse().unwrap(),
            file_cache: crate::app::file_cache::Limits {
                bytes: 0,
                max_file: 0,
                valid_ms: 0,
            },
        };
        let stats = Arc::new(Stats::new("test", 1, 1).unwrap());
        World {
            app: App::new(&settings, stats).unwrap(),
            _root: root,
        }
    }

    fn ctx(w: &World) -> Ctx<'_> {
        Ctx {
            app: &w.app,
            shard: w.app.stats().shard(0),
            max_requests: 0,
            draining: false,
            max_queued_files: 16,
            clock: || 1_000,
        }
    }

    fn conn() -> Conn {
        Conn::new(
            "127.0.0.1:5000".parse().unwrap(),
            Parser::new(Limits::default()),
            0,
        )
    }

    /// Send everything queued, `step` bytes at most per send, as a driver
    /// would; file ranges are read from the file itself. Returns the bytes.
    fn drain(c: &mut Conn, ctx: &Ctx<'_>, step: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Some(chunk) = c.to_send() {
            let n = match chunk {
                Chunk::Bytes { data, .. } => {
                    let n = data.len().min(step);
                    wire.extend_from_slice(&data[..n]);
                    n
                }
                Chunk::File { fd, offset, len } => {
                    let file = std::fs::File::from(fd.try_clone_to_owned().unwrap());
                    let mut buf = vec![0; len.min(step as u64) as usize];
                    std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, offset).unwrap();
                    wire.extend_from_slice(&buf);
                    buf.len()
                }
            };
            c.on_sent(ctx, n, 1);
        }
        wire
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    const GET: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn keep_alive_then_pipelining_in_order() {
        let w = world();
        let ctx = ctx(&w);
        let mut c = conn();
        c.on_input(&ctx, GET, 1);
        assert_eq!(c.next(), Next::Write);
        let wire = drain(&mut c, &ctx, usize::MAX);
        assert!(wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(wire.ends_with(b"Hello, World!"));
        assert_eq!(c.next(), Next::Read, "keep-alive: the connection stays");
        // Two requests and half of a third in one delivery.
        let mut input = [GET, b"GET /json HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
        input.extend_from_slice(&GET[..10]);
        c.on_input(&ctx, &input, 2);
        let wire = drain(&mut c, &ctx, usize::MAX);
        assert_eq!(count(&wire, b"HTTP/1.1 200 OK"), 2);
        let hello = wire
            .windows(13)
            .position(|x| x == b"Hello, World!")
            .unwrap();
        let json = wire.windows(9).position(|x| x == b"{\"message").unwrap();
        assert!(hello < json, "responses leave in request order");
        assert!(c.has_partial_request());
        c.on_input(&ctx, &GET[10..], 3);
        assert_eq!(count(&drain(&mut c, &ctx, usize::MAX), b"Hello, World!"), 1);
        assert_eq!(w.app.stats().snapshot().requests, 4);
    }

    #[test]
    fn a_partial_write_resumes_where_it_stopped() {
        let w = world();
        let ctx = ctx(&w);
        let mut c = conn();
        c.on_input(&ctx, GET, 1);
        let whole = match c.to_send() {
            Some(Chunk::Bytes { data, more }) => {
                assert!(!more);
                data.to_vec()
            }
            other => panic!("expected bytes, got {other:?}"),
        };
        c.on_sent(&ctx, 7, 1);
        match c.to_send() {
            Some(Chunk::Bytes { data, .. }) => assert_eq!(data, &whole[7..]),
            other => panic!("expected the rest, got {other:?}"),
        }
        assert_eq!(c.next(), Next::Write);
        let rest = drain(&mut c, &ctx, 3);
        assert_eq!([&whole[..7], &rest[..]].concat(), whole);
        assert_eq!(w.app.stats().snapshot().bytes_sent, whole.len() as u64);
    }

    #[test]
    fn a_file_range_is_described_not_copied() {
        let w = world();
        let ctx = ctx(&w);
        let mut c = conn();
        c.on_input(
            &ctx,
            b"GET /file.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=2-5\r\n\r\n",
            1,
        );
        let head_len = match c.to_send() {
            Some(Chunk::Bytes { data, more }) => {
                assert!(data.starts_with(b"HTTP/1.1 206 Partial Content\r\n"));
                assert!(more, "the file follows the head");
                data.len()
            }
            other => panic!("expected the head, got {other:?}"),
        };
        c.on_sent(&ctx, head_len, 1);
        assert!(matches!(
            c.to_send(),
            Some(Chunk::File {
                offset: 2,
                len: 4,
                ..
            })
        ));
        c.on_sent(&ctx, 1, 1);
        assert!(matches!(
            c.to_send(),
            Some(Chunk::File {
                offset: 3,
                len: 3,
                ..
            })
        ));
        assert_eq!(drain(&mut c, &ctx, usize::MAX), b"345");
        assert_eq!(c.next(), Next::Read);
    }

    #[test]
    fn a_malformed_request_is_answered_then_closed_with_a_linger() {
        let w = world();
        let ctx = ctx(&w);
        let mut c = conn();
        c.on_input(&ctx, b"GET / HTTP/1.1\r\nHost a\r\n\r\n", 1);
        let wire = drain(&mut c, &ctx, usize::MAX);
        assert!(wire.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        assert_eq!(count(&wire, b"Connection: close"), 1);
        assert_eq!(c.next(), Next::Linger);
        c.on_half_closed();
        assert!(c.wants_input());
        c.on_input(&ctx, b"more bytes the client had in flight", 2);
        assert!(c.to_send().is_none(), "lingering input is discarded");
        assert_eq!(c.next(), Next::Read);
        c.on_eof(&ctx, 3);
        assert_eq!(c.next(), Next::Close);
        assert_eq!(w.app.stats().snapshot().status, vec![(400, 1)]);
    }

    #[test]
    fn a_deferred_response_holds_the_pipeline_until_its_job_is_done() {
        let w = world();
        let ctx = ctx(&w);
        let mut c = conn();
        let input = [&b"GET /sleep?ms=1 HTTP/1.1\r\nHost: a\r\n\r\n"[..], GET].concat();
        c.on_input(&ctx, &input, 1);
        assert_eq!(c.next(), Next::Wait);
        assert!(c.to_send().is_none() && !c.wants_input());
        let job = c.take_job().expect("a job to run");
        assert!(c.take_job().is_none(), "taken once");
        c.on_job_done(&ctx, job.run(), 2);
        let wire = drain(&mut c, &ctx, usize::MAX);
        let slept = wire.windows(5).position(|x| x == b"slept").unwrap();
        let hello = wire.windows(5).position(|x| x == b"Hello").unwrap();
        assert!(
            slept < hello,
            "the request behind the job is answered after it"
        );
        assert_eq!(c.next(), Next::Read);
    }

    #[test]
    fn eof_answers_what_arrived_and_then_closes() {
        let w = world();
        let ctx = ctx(&w);
        let mut c = conn();
        c.on_input(&ctx, GET, 1);
        c.on_eof(&ctx, 1);
        let wire = drain(&mut c, &ctx, usize::MAX);
        assert!(wire.ends_with(b"Hello, World!"));
        assert_eq!(c.next(), Next::Close);
        // A request still arriving when the client half-closed is abandoned.
        let mut c = conn();
        c.on_input(&ctx, &GET[..12], 1);
        c.on_eof(&ctx, 1);
        assert!(c.to_send().is_none());
        assert_eq!(c.next(), Next::Close);
    }
}
