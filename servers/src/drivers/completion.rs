//! The completion driver: one io_uring per thread, many connections, and
//! one `io_uring_enter` per loop iteration.
//!
//! Used once per thread by the `uring` variant. Where the readiness driver
//! asks the kernel *when* it may read or write and then makes the syscall
//! itself, this one states the operations and is told when they are done:
//! - **accept**: one multishot accept on the thread's listener posts a
//!   completion per new connection;
//! - **receive**: one multishot receive per connection, into a ring of
//!   buffers shared by all of them ([`BufRing`]); the bytes are copied into
//!   the connection ([`Conn::on_input`]) and the buffer goes straight back,
//!   so a few hundred buffers serve thousands of connections;
//! - **send**: what each connection has to send is submitted once per
//!   iteration, after every completion of the iteration has been handled,
//!   so pipelined responses leave in one send and all of an iteration's
//!   sends in the next enter. The bytes are copied into a buffer the
//!   connection's slot owns and nothing else touches until the send
//!   completes: the connection's own output queue may grow, and move, as
//!   further requests are answered meanwhile.
//! - **files** go out with `sendfile` on the loop, on a non-blocking
//!   socket, and wait for room with a poll submitted to the ring: one
//!   syscall per chunk, no pipe. (`splice` through a pipe would keep the
//!   loop out of the file path but costs two descriptors per connection
//!   sending a file and two linked operations per chunk; file reads from
//!   the page cache do not block.)
//!
//! Each iteration submits everything queued and waits, in the same call,
//! for at least one completion or the next timer (the sweep every
//! `SWEEP_MS`, as the readiness driver's). Keep-alive requests thus cost
//! a share of one syscall each; a burst costs one syscall for all of it.
//!
//! The pitfalls, and what is done about each:
//! - *the buffer ring runs empty*: the receive ends with `-ENOBUFS`, which
//!   is no end of input — it is armed again once buffers are back (at the
//!   end of the same iteration) and the bytes still wait in the socket;
//! - *the completion queue overflows*: the kernel must hold what does not
//!   fit (`IORING_FEAT_NODROP`, checked at set-up); the loop then enters
//!   again at once, without waiting, to have it flushed in;
//! - *the submission queue is full*: entries wait in a back-log, in order,
//!   and the next enter does not sleep until it is empty;
//! - *a connection closes with operations pending*: its operations are
//!   cancelled (by descriptor), the descriptor is closed by the ring
//!   behind the cancellation, and the slot — with the send buffer the
//!   kernel may still read — is reused only once the last of them has
//!   completed. Every submission carries the slot's generation, so a
//!   completion could never be taken for a later connection's anyway;
//! - *a short send*: the connection is told what went, and the rest is
//!   submitted next, in order (one send at a time per connection).
//!
//! Blocking jobs go to the worker pool ([`Handle`]); the pool's eventfd is
//! read by a request in the ring, so a finished job wakes the loop like any
//! other completion, with no syscall of its own.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use super::accept::AcceptBackoff;
use super::offload::Handle;
use super::readiness::Env;
use super::{Swept, SWEEP_MS};
use crate::app::Finished;
use crate::conn::{Conn, Ctx, Next};
use crate::http::parser::Parser;
use crate::http::response::Chunk;
use crate::sys;
use crate::sys::time::monotonic_ms_coarse;
use crate::sys::uring::{opcode, squeue, types, BufRing, Completion, Ring, Setup};

/// Bytes copied into one send.
const SEND_MAX: usize = 64 * 1024;
/// Largest single `sendfile`.
const SENDFILE_MAX: usize = 1 << 30;
/// The provided-buffer group of the receive buffers.
const BUF_GROUP: u16 = 0;

/// What a submission was for: the top byte of its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Accept = 1,
    Recv,
    Send,
    /// A poll for room in a socket's send buffer (a file waits on it).
    Writable,
    /// Shutdown's eventfd became readable.
    Shutdown,
    /// The worker pool's eventfd was read: jobs are back.
    Jobs,
    /// Cancellations and closes: their completions need nothing.
    Ignore,
}

impl Op {
    fn of(user_data: u64) -> Option<Op> {
        Some(match (user_data >> 56) as u8 {
            1 => Op::Accept,
            2 => Op::Recv,
            3 => Op::Send,
            4 => Op::Writable,
            5 => Op::Shutdown,
            6 => Op::Jobs,
            7 => Op::Ignore,
            _ => return None,
        })
    }
}

const GEN_BITS: u32 = 24;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// User data: the operation, the slot's generation (low 24 bits) and index.
fn tag(op: Op, idx: usize, generation: u32) -> u64 {
    (op as u64) << 56 | u64::from(generation & GEN_MASK) << 32 | idx as u64
}

fn untag(user_data: u64) -> (usize, u32) {
    (
        (user_data & 0xffff_ffff) as usize,
        (user_data >> 32) as u32 & GEN_MASK,
    )
}

/// The token naming a connection to the offload pool: slot and generation.
fn slot_token(idx: usize, generation: u32) -> u64 {
    u64::from(generation) << 32 | idx as u64
}

/// Sizes a loop runs with (hidden options of the `uring` binary can shrink
/// them, to provoke the pitfalls in tests).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// The ring's queue sizes and task-work mode.
    pub ring: Setup,
    /// Receive buffers in the ring (a power of two).
    pub recv_buffers: u16,
    /// Bytes per receive buffer.
    pub recv_buffer_size: usize,
}

/// The state of a connection's receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    Idle,
    Armed,
    /// A cancellation was submitted; its last completion is still to come.
    Cancelling,
}

/// The state of a connection's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    Idle,
    /// A send of `Slot::out` is in flight.
    Bytes,
    /// A poll for room is in flight (a file chunk waits on it).
    Writable,
}

struct Slot {
    /// `None` once the ring has been asked to close it.
    fd: Option<OwnedFd>,
    conn: Conn,
    generation: u32,
    recv: Recv,
    send: Send,
    /// The bytes of the send in flight: read by the kernel until the send
    /// completes, so written only while `send` is `Idle`.
    out: Vec<u8>,
    /// Submissions naming this slot whose last completion has not come.
    in_flight: u32,
    /// Waiting for `in_flight` to reach zero before the slot is free.
    closing: bool,
    /// Listed in `Loop::dirty` for this iteration.
    dirty: bool,
}

/// The connections of one loop, by slot index.
struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Occupied slots, closing ones included.
    live: usize,
    generation: u32,
}

/// Conditions logged once per loop, so a test can see a pitfall was hit
/// and a busy server does not repeat itself.
#[derive(Default)]
struct Noted {
    no_buffers: bool,
    overflow: bool,
    backlog: bool,
}

/// A loop's ring, receive buffers and listener, set up on the thread that
/// will run it (a ring with one issuer belongs to the thread that made it),
/// before the server announces itself: a failure is a start-up error.
pub struct Prepared {
    ring: Ring,
    bufs: BufRing,
    listener: OwnedFd,
}

/// Set up a loop's ring and buffers on the calling thread.
pub fn prepare(listener: OwnedFd, tuning: &Tuning) -> io::Result<Prepared> {
    sys::socket::set_nonblocking(listener.as_fd())?;
    let ring = Ring::new(tuning.ring)?;
    let bufs = BufRing::new(
        &ring,
        BUF_GROUP,
        tuning.recv_buffers,
        tuning.recv_buffer_size,
    )?;
    Ok(Prepared {
        ring,
        bufs,
        listener,
    })
}

impl Prepared {
    /// Run the loop until shutdown has drained every connection.
    pub fn run(self, parser: Parser, env: &Env<'_>) -> io::Result<()> {
        let Prepared {
            ring,
            bufs,
            listener,
        } = self;
        let mut lp = Loop {
            ring,
            env,
            bufs: ManuallyDrop::new(bufs),
            parser,
            table: Table {
                slots: Vec::new(),
                free: Vec::new(),
                live: 0,
                generation: 0,
            },
            listener: Some(listener),
            accept_armed: false,
            accepts: AcceptBackoff::new(""),
            accepts_paused_until: None,
            draining: false,
            finished: Vec::new(),
            dirty: Vec::new(),
            // Leaked on purpose: a read of the pool's eventfd may still be
            // in flight when the loop ends, and the ring is torn down
            // asynchronously after it is closed; eight bytes that outlive
            // every request are the simple way to be sure.
            jobs_buf: Box::leak(Box::new([0u8; 8])),
            noted: Noted::default(),
            received: false,
            bufs_touched: false,
        };
        // Even when the loop panics, what the kernel may still read or
        // write must not go back to the allocator while the ring is torn
        // down: leak it first, then let the panic go on.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.run()));
        lp.leak_what_the_kernel_may_touch();
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

struct Loop<'a, 'e> {
    /// First field: dropped first, before anything it may name.
    ring: Ring,
    env: &'a Env<'e>,
    /// Never dropped: the kernel may write to a buffer until the ring's
    /// asynchronous teardown has cancelled every receive (see
    /// `leak_what_the_kernel_may_touch`); a loop runs once per thread.
    bufs: ManuallyDrop<BufRing>,
    parser: Parser,
    table: Table,
    listener: Option<OwnedFd>,
    /// A multishot accept is in flight (until its last completion).
    accept_armed: bool,
    accepts: AcceptBackoff,
    accepts_paused_until: Option<u64>,
    draining: bool,
    finished: Vec<(u64, Finished)>,
    /// Slots touched by this iteration's completions, to be pumped.
    dirty: Vec<usize>,
    jobs_buf: &'static mut [u8; 8],
    noted: Noted,
    /// A receive delivered bytes since the last sweep.
    received: bool,
    /// Receive buffers may hold resident pages (a receive came since
    /// they were last released).
    bufs_touched: bool,
}

impl<'e> Loop<'_, 'e> {
    fn run(&mut self) -> io::Result<()> {
        let mut completions = Vec::with_capacity(1024);
        let mut drain_deadline = u64::MAX;
        let mut next_sweep = monotonic_ms_coarse() + SWEEP_MS;
        self.arm_shutdown();
        self.arm_jobs();
        loop {
            self.env.app.flush_log();
            if !self.accept_armed && self.accepts_paused_until.is_none() {
                self.arm_accept();
            }
            self.bufs.publish();
            self.note_backlog();
            self.ring
                .enter(self.wait())
                .map_err(|e| io::Error::new(e.kind(), format!("io_uring_enter: {e}")))?;
            let now = monotonic_ms_coarse();
            self.ring.reap(&mut completions);
            self.note_overflow();
            for c in completions.drain(..) {
                self.on_completion(c, now);
            }
            self.pump_dirty(now);
            if self.accepts_paused_until.is_some_and(|t| now >= t) {
                self.accepts_paused_until = None;
            }
            if !self.draining && self.env.shutdown.requested() {
                self.start_draining(now);
                drain_deadline =
                    now.saturating_add(self.env.policy.shutdown_timeout.as_millis() as u64);
            }
            let jobs = self.env.offload.map_or(0, Handle::in_flight);
            if self.draining && self.table.live == 0 && jobs == 0 {
                self.submit_last();
                return Ok(());
            }
            if self.draining && now >= drain_deadline {
                eprintln!(
                    "shutdown timeout: dropping {} connection(s) still busy ({jobs} handler(s) running)",
                    self.table.live
                );
                self.submit_last();
                return Ok(());
            }
            if now >= next_sweep {
                next_sweep = now + SWEEP_MS;
                self.sweep(now);
                self.pump_dirty(now);
            }
        }
    }

    /// The context for this loop's connections (borrows the environment,
    /// not the loop, so a slot can be borrowed beside it).
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

    /// How long the enter may wait: until the next sweep, or the end of a
    /// pause of accepts if that comes first.
    fn wait(&self) -> Duration {
        let until_resume = self
            .accepts_paused_until
            .map_or(SWEEP_MS, |t| t.saturating_sub(monotonic_ms_coarse()));
        Duration::from_millis(until_resume.min(SWEEP_MS))
    }

    /// Queue a submission.
    ///
    /// # Safety
    ///
    /// What `entry` points to must stay valid until its completion: the
    /// caller says why in a `// SAFETY:` comment.
    unsafe fn submit(&mut self, entry: squeue::Entry) {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.ring.push(entry) }
    }

    fn slot(&mut self, idx: usize, generation: u32) -> Option<&mut Slot> {
        self.table
            .slots
            .get_mut(idx)
            .and_then(Option::as_mut)
            .filter(|s| s.generation & GEN_MASK == generation)
    }

    fn mark_dirty(&mut self, idx: usize) {
        if let Some(Some(s)) = self.table.slots.get_mut(idx) {
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    fn on_completion(&mut self, c: Completion, now: u64) {
        match Op::of(c.user_data) {
            Some(Op::Accept) => self.on_accept(c, now),
            Some(Op::Recv) => self.on_recv(c, now),
            Some(Op::Send) => self.on_send(c, now),
            Some(Op::Writable) => self.on_writable(c),
            Some(Op::Shutdown) => {
                if !self.env.shutdown.requested() {
                    self.env.shutdown.clear_spurious_wake();
                    self.arm_shutdown();
                }
            }
            Some(Op::Jobs) => self.on_jobs(now),
            Some(Op::Ignore) | None => {}
        }
    }

    // ---- accepting -------------------------------------------------------

    fn arm_accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            .build()
            .user_data(tag(Op::Accept, 0, 0));
        self.accept_armed = true;
        // SAFETY: the accept names only the listener, which stays open until
        // the accept is cancelled (`start_draining` cancels before closing;
        // the kernel holds its own reference meanwhile).
        unsafe { self.submit(entry) };
    }

    fn cancel_accept(&mut self) {
        let entry = opcode::AsyncCancel::new(tag(Op::Accept, 0, 0))
            .build()
            .user_data(tag(Op::Ignore, 0, 0));
        // SAFETY: a cancellation names no memory.
        unsafe { self.submit(entry) };
    }

    fn on_accept(&mut self, c: Completion, now: u64) {
        if !c.more() {
            self.accept_armed = false;
        }
        if c.result >= 0 {
            // SAFETY: a successful accept's result is a new descriptor that
            // nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(c.result) };
            self.accepts.succeeded();
            if !self.draining {
                self.add_connection(fd, now);
            }
            return;
        }
        let e = io::Error::from_raw_os_error(-c.result);
        if AcceptBackoff::is_shortage(&e) {
            // Queued clients wait in the backlog while descriptors are short:
            // stop accepting for a pause rather than fail at once again.
            let pause = self.accepts.failed(&e, self.table.live as u64);
            if self.accepts_paused_until.is_none() && c.more() {
                self.cancel_accept();
            }
            self.accepts_paused_until = Some(now + pause.as_millis() as u64);
        } else if !matches!(
            e.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
        ) && c.result != -libc::ECANCELED
        {
            eprintln!("accept: {e}");
        }
    }

    fn add_connection(&mut self, fd: OwnedFd, now: u64) {
        // The multishot accept reports no address.
        let Ok(peer) = sys::socket::peer_addr(fd.as_fd()) else {
            return; // already gone
        };
        let _ = sys::socket::set_nodelay(fd.as_fd());
        let t = &mut self.table;
        let idx = t.free.pop().unwrap_or_else(|| {
            t.slots.push(None);
            t.slots.len() - 1
        });
        t.generation = t.generation.wrapping_add(1);
        let mut conn = Conn::new(peer, Parser::new(self.parser.limits()), now);
        conn.token = slot_token(idx, t.generation);
        t.slots[idx] = Some(Slot {
            fd: Some(fd),
            conn,
            generation: t.generation,
            recv: Recv::Idle,
            send: Send::Idle,
            out: Vec::new(),
            in_flight: 0,
            closing: false,
            dirty: false,
        });
        t.live += 1;
        self.env.shard.conn_opened();
        self.mark_dirty(idx);
    }

    // ---- receiving -------------------------------------------------------

    fn on_recv(&mut self, c: Completion, now: u64) {
        let (idx, generation) = untag(c.user_data);
        let ctx = self.ctx();
        let Loop {
            table,
            bufs,
            noted,
            received,
            ..
        } = self;
        let slot = table
            .slots
            .get_mut(idx)
            .and_then(Option::as_mut)
            .filter(|s| s.generation & GEN_MASK == generation);
        let Some(slot) = slot else {
            // Cannot happen (a slot is kept until its last completion), but
            // a buffer must go back whatever becomes of its bytes.
            if let Some(bid) = c.buffer() {
                bufs.recycle(bid);
            }
            return;
        };
        if !c.more() {
            slot.recv = Recv::Idle;
            slot.in_flight -= 1;
        }
        match c.result {
            n if n > 0 => {
                *received = true;
                if let Some(bid) = c.buffer() {
                    if !slot.closing {
                        slot.conn.on_input(&ctx, bufs.get(bid, n as usize), now);
                    }
                    bufs.recycle(bid);
                }
            }
            0 => slot.conn.on_eof(&ctx, now),
            e if e == -libc::ENOBUFS => {
                // Every buffer is out: no end of input. The receive is armed
                // again once this iteration's buffers are back.
                if !noted.no_buffers {
                    noted.no_buffers = true;
                    eprintln!(
                        "recv: the {} receive buffers of {} bytes ran out; receives are re-armed as they come back (logged once)",
                        bufs.count(),
                        bufs.buffer_size()
                    );
                }
            }
            e if e == -libc::ECANCELED => {}
            _ => slot.conn.on_broken(),
        }
        self.mark_dirty(idx);
    }

    /// Receive while the connection wants input; cancel the receive while it
    /// does not (a deferred response, a backlog), so the client meets TCP's
    /// back-pressure as it would with the readiness driver.
    fn steer_recv(&mut self, idx: usize) {
        let Some(slot) = self.table.slots[idx].as_mut() else {
            return;
        };
        let Some(fd) = slot.fd.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let wants = slot.conn.wants_input();
        let entry = match slot.recv {
            Recv::Idle if wants => {
                slot.recv = Recv::Armed;
                slot.in_flight += 1;
                opcode::RecvMulti::new(types::Fd(fd), BUF_GROUP)
                    .build()
                    .user_data(tag(Op::Recv, idx, slot.generation))
            }
            Recv::Armed if !wants => {
                slot.recv = Recv::Cancelling;
                opcode::AsyncCancel::new(tag(Op::Recv, idx, slot.generation))
                    .build()
                    .user_data(tag(Op::Ignore, idx, slot.generation))
            }
            _ => return,
        };
        // SAFETY: a receive names the socket (open until the ring closes it,
        // behind a cancellation of everything on it) and a buffer group
        // whose memory `BufRing` keeps mapped while the ring lives; a
        // cancellation names no memory.
        unsafe { self.submit(entry) };
    }

    // ---- sending ---------------------------------------------------------

    fn on_send(&mut self, c: Completion, now: u64) {
        let (idx, generation) = untag(c.user_data);
        let ctx = self.ctx();
        let Some(slot) = self.slot(idx, generation) else {
            return;
        };
        slot.send = Send::Idle;
        slot.in_flight -= 1;
        if !slot.closing {
            match c.result {
                // A short send: the connection is told what went, and the
                // rest is submitted next, from where it stopped.
                n if n >= 0 => slot.conn.on_sent(&ctx, n as usize, now),
                e if e == -libc::EAGAIN || e == -libc::EINTR => {}
                _ => slot.conn.on_broken(),
            }
        }
        self.mark_dirty(idx);
    }

    fn on_writable(&mut self, c: Completion) {
        let (idx, generation) = untag(c.user_data);
        if let Some(slot) = self.slot(idx, generation) {
            slot.send = Send::Idle;
            slot.in_flight -= 1;
            self.mark_dirty(idx);
        }
    }

    /// Start the connection's next send, if it has output and none is in
    /// flight: bytes are copied and submitted; file ranges are sent with
    /// `sendfile` until the socket is full, then a poll waits for room.
    fn start_send(&mut self, idx: usize, now: u64) {
        let ctx = self.ctx();
        let Some(slot) = self.table.slots[idx].as_mut() else {
            return;
        };
        if slot.send != Send::Idle || slot.closing {
            return;
        }
        let Some(fd) = slot.fd.as_ref() else {
            return;
        };
        let entry = loop {
            match slot.conn.to_send() {
                None => return,
                Some(Chunk::Bytes { data, more }) => {
                    let n = data.len().min(SEND_MAX);
                    slot.out.clear();
                    slot.out.extend_from_slice(&data[..n]);
                    let more = more || n < data.len();
                    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
                    slot.send = Send::Bytes;
                    break opcode::Send::new(
                        types::Fd(fd.as_raw_fd()),
                        slot.out.as_ptr(),
                        n as u32,
                    )
                    .flags(flags)
                    .build()
                    .user_data(tag(Op::Send, idx, slot.generation));
                }
                Some(Chunk::File {
                    fd: file,
                    offset,
                    len,
                }) => {
                    let mut off = offset as i64;
                    let n = (len as usize).min(SENDFILE_MAX);
                    match sys::io::sendfile(fd.as_fd(), file, &mut off, n) {
                        Ok(0) => slot.conn.on_broken(), // the file shrank
                        Ok(n) => slot.conn.on_sent(&ctx, n, now),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            slot.send = Send::Writable;
                            break opcode::PollAdd::new(
                                types::Fd(fd.as_raw_fd()),
                                libc::POLLOUT as u32,
                            )
                            .build()
                            .user_data(tag(
                                Op::Writable,
                                idx,
                                slot.generation,
                            ));
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => slot.conn.on_broken(),
                    }
                }
            }
        };
        slot.in_flight += 1;
        // SAFETY: a send reads `slot.out`, a heap buffer the slot owns: it
        // is written only while no send is in flight (`send` is `Idle`), and
        // the slot is not freed — nor its buffer dropped — until its last
        // completion has come (`in_flight`); moving the slot in the table
        // does not move the heap buffer. The socket stays open until the
        // ring closes it, behind a cancellation. A poll names no memory.
        unsafe { self.submit(entry) };
    }

    // ---- driving connections ---------------------------------------------

    /// Give every connection touched this iteration what it needs: jobs to
    /// the pool, output to the ring, its receive armed or cancelled, or its
    /// end.
    fn pump_dirty(&mut self, now: u64) {
        while let Some(idx) = self.dirty.pop() {
            if let Some(slot) = self.table.slots[idx].as_mut() {
                slot.dirty = false;
            }
            self.pump(idx, now);
        }
    }

    fn pump(&mut self, idx: usize, now: u64) {
        let closing = match &self.table.slots[idx] {
            Some(s) => s.closing,
            None => return,
        };
        if closing {
            return self.free_if_done(idx);
        }
        self.run_jobs(idx);
        self.start_send(idx, now);
        let Some(slot) = self.table.slots[idx].as_mut() else {
            return;
        };
        match slot.conn.next() {
            Next::Close => self.close(idx),
            Next::Linger => {
                if let Some(fd) = &slot.fd {
                    let _ = sys::socket::shutdown_write(fd.as_fd());
                }
                slot.conn.last_active_ms = now;
                slot.conn.on_half_closed();
                self.steer_recv(idx);
            }
            _ => self.steer_recv(idx),
        }
    }

    /// Hand the connection's blocking job to the pool (or, without one, run
    /// it here); a full pool is answered 503.
    fn run_jobs(&mut self, idx: usize) {
        let ctx = self.ctx();
        let Some(slot) = self.table.slots[idx].as_mut() else {
            return;
        };
        while let Some(job) = slot.conn.take_job() {
            match self.env.offload {
                None if self.env.policy.drain_expired(self.env.shutdown) => slot.conn.on_broken(),
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
    }

    fn arm_jobs(&mut self) {
        let Some(h) = self.env.offload else {
            return;
        };
        let entry = opcode::Read::new(
            types::Fd(h.wake_fd().as_raw_fd()),
            self.jobs_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(tag(Op::Jobs, 0, 0));
        // SAFETY: the read fills `jobs_buf`, leaked ('static) so it outlives
        // the ring; the pool's eventfd lives as long as the handle, which
        // outlives this loop.
        unsafe { self.submit(entry) };
    }

    /// The pool's eventfd was read (and so reset) by the ring: take the
    /// finished jobs without a syscall, and read again.
    fn on_jobs(&mut self, now: u64) {
        let Some(h) = self.env.offload else {
            return;
        };
        self.arm_jobs();
        h.take_after_wake(&mut self.finished);
        let ctx = self.ctx();
        let mut finished = std::mem::take(&mut self.finished);
        for (tok, done) in finished.drain(..) {
            let idx = (tok & 0xffff_ffff) as usize;
            let Some(slot) = self.table.slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            if slot.generation != (tok >> 32) as u32 || slot.closing || slot.conn.is_lingering() {
                continue;
            }
            slot.conn.on_job_done(&ctx, done, now);
            self.mark_dirty(idx);
        }
        self.finished = finished;
    }

    fn arm_shutdown(&mut self) {
        let fd = self.env.shutdown.wake_fd().as_raw_fd();
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(tag(Op::Shutdown, 0, 0));
        // SAFETY: a poll names no memory; the shutdown eventfd is never
        // closed while the process runs.
        unsafe { self.submit(entry) };
    }

    // ---- closing ---------------------------------------------------------

    /// End a connection: cancel whatever it has in flight, then close its
    /// socket — both by the ring, in that order (the close is hard-linked
    /// behind the cancellation, so it runs whatever the cancellation
    /// found). The slot is freed once the last completion is in.
    fn close(&mut self, idx: usize) {
        let Some(slot) = self.table.slots[idx].as_mut() else {
            return;
        };
        if slot.closing {
            return;
        }
        slot.closing = true;
        slot.conn.on_broken();
        self.env.shard.conn_closed();
        if let Some(fd) = slot.fd.take() {
            let raw = fd.into_raw_fd();
            let g = slot.generation;
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(raw)).all())
                .build()
                .flags(squeue::Flags::IO_HARDLINK)
                .user_data(tag(Op::Ignore, idx, g));
            let close =
                opcode::Close::new(types::Fd(raw))
                    .build()
                    .user_data(tag(Op::Ignore, idx, g));
            // SAFETY: neither names memory; the descriptor was taken out of
            // its owner above, so the ring's close is its only close.
            unsafe {
                self.submit(cancel);
                self.submit(close);
            }
        }
        self.free_if_done(idx);
    }

    /// Hand the kernel what is still queued (the last connections' cancels
    /// and closes) before the loop returns: the ring acts only on what it
    /// was given, and the process may live on while other loops drain.
    fn submit_last(&mut self) {
        for _ in 0..16 {
            if self.ring.enter(Duration::ZERO).is_err() || self.ring.backlogged() == 0 {
                break;
            }
        }
    }

    fn free_if_done(&mut self, idx: usize) {
        let done = self.table.slots[idx]
            .as_ref()
            .is_some_and(|s| s.closing && s.in_flight == 0);
        if done {
            self.table.slots[idx] = None;
            self.table.free.push(idx);
            self.table.live -= 1;
        }
    }

    /// Stop accepting (the listener closes once its accept is cancelled, and
    /// its queued connections are reset) and close idle connections now.
    fn start_draining(&mut self, now: u64) {
        self.draining = true;
        if self.accept_armed {
            self.cancel_accept();
        }
        self.listener = None;
        for idx in 0..self.table.slots.len() {
            let idle = self.table.slots[idx].as_ref().is_some_and(|s| {
                !s.closing
                    && s.conn.is_idle()
                    && s.fd
                        .as_ref()
                        .is_some_and(|fd| !sys::socket::has_pending_input(fd.as_fd()))
            });
            if idle {
                self.close(idx);
            }
        }
        self.pump_dirty(now);
    }

    /// Close or answer 408 to connections past their deadlines (as the
    /// readiness driver's sweep), and let quiet ones give back their buffers.
    fn sweep(&mut self, now: u64) {
        // A sweep period without a receive: the buffers' pages go back
        // (once per quiet spell), as a quiet connection's buffers do.
        let received = std::mem::take(&mut self.received);
        self.bufs_touched |= received;
        if !received && self.bufs_touched && self.ring.buffers_at_rest() {
            self.bufs_touched = false;
            self.bufs.release_pages();
        }
        let ctx = self.ctx();
        let policy = self.env.policy;
        for idx in 0..self.table.slots.len() {
            let Some(slot) = self.table.slots[idx].as_mut() else {
                continue;
            };
            if slot.closing {
                continue;
            }
            match policy.sweep(&slot.conn, now, self.draining) {
                Swept::Keep { quiet } => {
                    if quiet {
                        slot.conn.release_buffers();
                        if slot.send == Send::Idle {
                            slot.out = Vec::new();
                        }
                    }
                }
                Swept::Close => self.close(idx),
                Swept::Late => {
                    slot.conn.on_timeout(&ctx);
                    self.mark_dirty(idx);
                }
            }
        }
    }

    // ---- notes and the end -----------------------------------------------

    fn note_backlog(&mut self) {
        if self.ring.backlogged() > 0 && !self.noted.backlog {
            self.noted.backlog = true;
            eprintln!(
                "submission queue full: {} submission(s) wait for the next enter (logged once)",
                self.ring.backlogged()
            );
        }
    }

    fn note_overflow(&mut self) {
        if self.ring.overflowed() && !self.noted.overflow {
            self.noted.overflow = true;
            eprintln!(
                "completion queue overflowed: the kernel holds the rest (IORING_FEAT_NODROP) until the next enter (logged once)"
            );
        }
    }

    /// The loop is ending. The ring is closed next, and the kernel tears it
    /// down asynchronously: buffers it may still write to or read from —
    /// the send buffers of connections with requests in flight, like the
    /// receive buffers (`Loop::bufs`) — are leaked rather than freed. The
    /// process exits next.
    fn leak_what_the_kernel_may_touch(&mut self) {
        for slot in self.table.slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| s.in_flight > 0) {
                std::mem::forget(slot.take());
            }
        }
    }
}
