//! The readiness driver: one edge-triggered epoll loop, one thread, many
//! non-blocking connections.
//!
//! Used once by the `epoll` variant and once per thread by `epoll-threads`.
//! Each connection is registered once for input, output and peer hang-up,
//! edge-triggered, and never modified afterwards: a keep-alive request costs
//! one `read`, one `send`, and a share of one `epoll_wait`. Closing a socket
//! removes it from the interest list, so there is no `EPOLL_CTL_DEL` either.
//!
//! Edge-triggered means no new event comes for bytes already in the kernel
//! buffer, so the loop remembers, per connection, when it stopped reading
//! before the socket was drained (the connection did not want input: a
//! deferred response, a backlog of output) and reads again once it does.
//!
//! Timeouts are a sweep over all connections every `SWEEP_MS` (250 ms),
//! which is O(connections) once per sweep rather than timer bookkeeping per
//! request.
//!
//! With an offload [`Handle`], blocking jobs run on the worker pool and come
//! back through the handle's eventfd; without one they run inline and the
//! loop waits for them (the `epoll` model's honest limit).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::accept::AcceptBackoff;
use super::offload::Handle;
use super::{send_queued, Policy, Sent, Swept, SWEEP_MS};
use crate::app::{App, Finished};
use crate::conn::{Conn, Ctx, Next};
use crate::http::parser::Parser;
use crate::http::stats::Shard;
use crate::sys;
use crate::sys::epoll::{self, Epoll, Event, Interest};
use crate::sys::signal::Shutdown;
use crate::sys::time::monotonic_ms_coarse;

const LISTENER: u64 = u64::MAX;
const WAKE: u64 = u64::MAX - 1;
const DONE: u64 = u64::MAX - 2;
/// Accepts per wake-up, so one busy listener cannot starve the connections.
const ACCEPT_BATCH: usize = 256;

/// What a loop borrows from its thread.
pub struct Env<'a> {
    /// The application answering requests.
    pub app: &'a App,
    /// This loop's counters.
    pub shard: &'a Shard,
    /// Timeouts and limits.
    pub policy: &'a Policy,
    /// Raised on SIGINT/SIGTERM; its eventfd wakes the loop.
    pub shutdown: &'a Shutdown,
    /// Where blocking jobs run; `None` runs them on the loop.
    pub offload: Option<&'a Handle>,
}

struct Slot {
    fd: OwnedFd,
    conn: Conn,
    /// Reading stopped with bytes possibly left in the kernel buffer.
    read_pending: bool,
    /// Distinguishes successive connections in one slot, so a finished job
    /// for a connection that has since closed is not given to its successor.
    generation: u32,
}

/// The connections of one loop, by slot index (the epoll token).
struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    live: usize,
    generation: u32,
}

/// Run one event loop until shutdown has drained every connection.
pub fn run(listener: OwnedFd, parser: Parser, env: &Env<'_>) -> io::Result<()> {
    // accept_batch accepts until EAGAIN, which a blocking listener would
    // turn into an indefinite wait.
    sys::socket::set_nonblocking(listener.as_fd())?;
    let ep = Epoll::new()?;
    ep.add(listener.as_fd(), Interest::READABLE, LISTENER)?;
    ep.add(env.shutdown.wake_fd(), Interest::READABLE, WAKE)?;
    if let Some(h) = env.offload {
        ep.add(h.wake_fd(), Interest::READABLE, DONE)?;
    }
    let mut lp = Loop {
        env,
        ep,
        parser,
        table: Table {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            generation: 0,
        },
        listener: Some(listener),
        accepts: AcceptBackoff::new(""),
        accepts_paused_until: None,
        draining: false,
        finished: Vec::new(),
    };
    lp.run()
}

struct Loop<'a, 'e> {
    env: &'a Env<'e>,
    ep: Epoll,
    parser: Parser,
    table: Table,
    listener: Option<OwnedFd>,
    accepts: AcceptBackoff,
    /// While accepts are paused (the listener is out of the epoll set): when
    /// to put it back (monotonic ms).
    accepts_paused_until: Option<u64>,
    draining: bool,
    finished: Vec<(u64, Finished)>,
}

impl<'e> Loop<'_, 'e> {
    fn run(&mut self) -> io::Result<()> {
        let mut events = epoll::events(1024);
        let mut drain_deadline = u64::MAX;
        let mut next_sweep = monotonic_ms_coarse() + SWEEP_MS;
        loop {
            self.env.app.flush_log();
            let n = self.ep.wait(&mut events, self.wait_ms())?;
            let now = monotonic_ms_coarse();
            for ev in &events[..n] {
                self.on_event(ev, now);
            }
            if self.accepts_paused_until.is_some_and(|t| now >= t) {
                self.resume_accepts(now);
            }
            if !self.draining && self.env.shutdown.requested() {
                self.start_draining(now)?;
                drain_deadline =
                    now.saturating_add(self.env.policy.shutdown_timeout.as_millis() as u64);
            }
            let jobs = self.env.offload.map_or(0, Handle::in_flight);
            if self.draining && self.table.live == 0 && jobs == 0 {
                return Ok(());
            }
            if self.draining && now >= drain_deadline {
                eprintln!(
                    "shutdown timeout: dropping {} connection(s) still busy ({jobs} handler(s) running)",
                    self.table.live
                );
                return Ok(());
            }
            if now >= next_sweep {
                next_sweep = now + SWEEP_MS;
                self.sweep(now);
            }
        }
    }

    /// The context for this loop's connections. Its borrows come from the
    /// environment, not from the loop, so a slot can be borrowed beside it.
    fn ctx(&self) -> Ctx<'e> {
        Ctx {
            app: self.env.app,
            shard: self.env.shard,
            max_requests: self.env.policy.max_requests,
            draining: self.draining,
            max_queued_files: self.env.policy.max_queued_files,
            clock: sys::time::monotonic_ns,
        }
    }

    fn on_event(&mut self, ev: &Event, now: u64) {
        match ev.token() {
            LISTENER => self.accept_batch(now),
            WAKE => self.env.shutdown.clear_spurious_wake(),
            DONE => self.take_finished(now),
            idx => {
                let idx = idx as usize;
                let readable = ev.is_readable() || ev.is_hangup() || ev.is_error();
                // A writable edge matters only to a connection with output
                // or input held back; most arrive for neither.
                let wanted = readable
                    || ev.is_writable()
                        && self
                            .table
                            .slots
                            .get(idx)
                            .and_then(Option::as_ref)
                            .is_some_and(|s| s.conn.has_pending_output() || s.read_pending);
                if wanted {
                    // A FIN or reset that came with data raises no new edge
                    // after the data is read: read on to EOF or the error.
                    let to_eof = ev.is_hangup() || ev.is_error();
                    self.drive(idx, readable, to_eof, now);
                }
            }
        }
    }

    /// Read, answer, run or hand off jobs, and write, until the connection
    /// waits for the socket, the client or a job; then apply what it needs.
    fn drive(&mut self, idx: usize, readable: bool, to_eof: bool, now: u64) {
        let ctx = self.ctx();
        let Some(slot) = self.table.slots.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let mut read = readable || slot.read_pending;
        let next = loop {
            if read {
                slot.read_pending = read_available(slot, &ctx, now, to_eof);
            }
            if let Some(job) = slot.conn.take_job() {
                match self.env.offload {
                    // Past the shutdown deadline no job starts on the loop:
                    // each would hold the exit back by its whole length.
                    None if self.env.policy.drain_expired(self.env.shutdown) => {
                        slot.conn.on_broken();
                    }
                    None => {
                        let done = job.run();
                        slot.conn.on_job_done(&ctx, done, monotonic_ms_coarse());
                    }
                    Some(pool) => {
                        if let Err(job) = pool.submit(job, slot_token(idx, slot.generation)) {
                            slot.conn.on_job_refused(&ctx, job);
                        }
                    }
                }
            }
            let sent = send_queued(slot.fd.as_fd(), &mut slot.conn, &ctx, now, || true);
            if let Ok(Sent::Blocked) = sent {
                break Next::Write;
            }
            match slot.conn.next() {
                // A job's response or a drained backlog may have made room
                // for input the socket still holds (no new edge will come).
                Next::Read if slot.read_pending => read = true,
                // The requests answered after a job included another job.
                Next::Wait if slot.conn.has_job() => read = false,
                next => break next,
            }
        };
        self.settle(next, idx, now);
    }

    /// Apply a connection's next state: keep it, start lingering, or drop it.
    fn settle(&mut self, next: Next, idx: usize, now: u64) {
        match next {
            Next::Read | Next::Write | Next::Wait => {}
            Next::Linger => {
                let ctx = self.ctx();
                if let Some(slot) = self.table.slots[idx].as_mut() {
                    slot.conn.last_active_ms = now;
                    let _ = sys::socket::shutdown_write(slot.fd.as_fd());
                    slot.conn.on_half_closed();
                    // Input may already be waiting (no new edge would come).
                    read_available(slot, &ctx, now, false);
                    if slot.conn.next() == Next::Close {
                        self.close(idx);
                    }
                }
            }
            Next::Close => self.close(idx),
        }
    }

    fn close(&mut self, idx: usize) {
        // Dropping the socket closes it, which also removes it from the
        // epoll interest list. Events for this slot later in the same batch
        // cannot exist: each descriptor appears at most once per epoll_wait.
        if self.table.slots[idx].take().is_some() {
            self.table.free.push(idx);
            self.table.live -= 1;
            self.env.shard.conn_closed();
        }
    }

    /// Finished jobs came back from the pool: hand each to its connection.
    fn take_finished(&mut self, now: u64) {
        let Some(h) = self.env.offload else {
            return;
        };
        h.take(&mut self.finished);
        let mut finished = std::mem::take(&mut self.finished);
        for (tok, done) in finished.drain(..) {
            let idx = (tok & 0xffff_ffff) as usize;
            let ctx = self.ctx();
            let Some(slot) = self.table.slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            if slot.generation != (tok >> 32) as u32 || slot.conn.is_lingering() {
                continue;
            }
            slot.conn.on_job_done(&ctx, done, now);
            self.drive(idx, false, false, now);
        }
        self.finished = finished;
    }

    /// How long `epoll_wait` may sleep: until the next sweep, or until a
    /// pause of accepts ends if that comes first.
    fn wait_ms(&self) -> i32 {
        let until_resume = self
            .accepts_paused_until
            .map_or(SWEEP_MS, |t| t.saturating_sub(monotonic_ms_coarse()));
        until_resume.min(SWEEP_MS) as i32
    }

    fn accept_batch(&mut self, now: u64) {
        let Some(listener) = &self.listener else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            let (fd, peer) = match sys::socket::accept(listener.as_fd(), true) {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // A client that gave up while queued: on to the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) if AcceptBackoff::is_shortage(&e) => {
                    // The connection stays queued, so the level-triggered
                    // listener would end every epoll_wait at once: take it
                    // out of the set until the pause is over (see
                    // AcceptBackoff). Deleting cannot fail while it is in.
                    let pause = self.accepts.failed(&e, self.table.live as u64);
                    let _ = self.ep.delete(listener.as_fd());
                    self.accepts_paused_until = Some(now + pause.as_millis() as u64);
                    return;
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    return;
                }
            };
            self.accepts.succeeded();
            let _ = sys::socket::set_nodelay(fd.as_fd());
            let t = &mut self.table;
            let idx = t.free.pop().unwrap_or_else(|| {
                t.slots.push(None);
                t.slots.len() - 1
            });
            let interest =
                Interest::READABLE | Interest::WRITABLE | Interest::READ_HANGUP | Interest::EDGE;
            if self.ep.add(fd.as_fd(), interest, idx as u64).is_err() {
                t.free.push(idx);
                continue;
            }
            self.env.shard.conn_opened();
            t.live += 1;
            t.generation = t.generation.wrapping_add(1);
            let mut conn = Conn::new(peer, Parser::new(self.parser.limits()), now);
            conn.token = slot_token(idx, t.generation);
            t.slots[idx] = Some(Slot {
                fd,
                conn,
                read_pending: false,
                generation: t.generation,
            });
        }
    }

    /// A pause of accepts is over: put the listener back in the set. The next
    /// wait reports it if connections are queued, and the accept that follows
    /// either ends the episode or starts a longer pause.
    fn resume_accepts(&mut self, now: u64) {
        self.accepts_paused_until = None;
        let Some(listener) = &self.listener else {
            return; // draining: the listener is closed
        };
        if let Err(e) = self.ep.add(listener.as_fd(), Interest::READABLE, LISTENER) {
            // Out of kernel memory for the registration itself: same cure.
            let pause = self.accepts.failed(&e, self.table.live as u64);
            self.accepts_paused_until = Some(now + pause.as_millis() as u64);
        }
    }

    /// Stop accepting: the listening socket closes (its queued, never-accepted
    /// connections are reset by the kernel) and the always-readable wake fd
    /// leaves the interest list; idle connections close now.
    fn start_draining(&mut self, now: u64) -> io::Result<()> {
        self.draining = true;
        self.listener = None;
        self.ep.delete(self.env.shutdown.wake_fd())?;
        for idx in 0..self.table.slots.len() {
            let idle = self.table.slots[idx]
                .as_ref()
                .is_some_and(|s| s.conn.is_idle() && !sys::socket::has_pending_input(s.fd.as_fd()));
            if idle {
                self.settle(Next::Close, idx, now);
            }
        }
        Ok(())
    }

    /// Close or answer 408 to connections past their deadlines.
    fn sweep(&mut self, now: u64) {
        let ctx = self.ctx();
        let policy = self.env.policy;
        for idx in 0..self.table.slots.len() {
            let Some(slot) = self.table.slots[idx].as_mut() else {
                continue;
            };
            match policy.sweep(&slot.conn, now, self.draining) {
                Swept::Keep { quiet } => {
                    if quiet {
                        slot.conn.release_buffers();
                    }
                }
                Swept::Close => self.close(idx),
                Swept::Late => {
                    slot.conn.on_timeout(&ctx);
                    self.drive(idx, false, false, now);
                }
            }
        }
    }
}

/// The token naming a connection to the offload pool: slot and generation.
fn slot_token(idx: usize, generation: u32) -> u64 {
    u64::from(generation) << 32 | idx as u64
}

/// Read until the socket is drained or the connection stops wanting input,
/// feeding what arrives. Returns whether reading stopped with bytes possibly
/// left in the kernel buffer. `to_eof`: the peer hung up, so a short read
/// does not end the reading (its EOF or error follows the data).
fn read_available(slot: &mut Slot, ctx: &Ctx<'_>, now: u64, to_eof: bool) -> bool {
    loop {
        let Some(buf) = slot.conn.recv_buf(ctx) else {
            return slot.conn.next() != Next::Close;
        };
        let space = buf.len();
        match sys::io::read(slot.fd.as_fd(), buf) {
            Ok(0) => {
                slot.conn.on_eof(ctx, now);
                return false;
            }
            Ok(n) => {
                slot.conn.on_received(ctx, n, now);
                // A short read drained the socket: with edge-triggered
                // epoll, new data raises a new edge, so reading again
                // would only cost a syscall returning EAGAIN.
                if n < space && !to_eof {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                slot.conn.on_broken();
                return false;
            }
        }
    }
}
