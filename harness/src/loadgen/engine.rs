//! One load-generating thread: an edge-triggered epoll loop over its share
//! of the connections.
//!
//! The cost per request is what decides whether the load generator or the
//! server is measured, so the loop does the least it can:
//! - each socket is registered once for input, output and peer hang-up,
//!   edge-triggered, and never modified (wrk toggles EPOLLOUT with two
//!   `epoll_ctl` calls per request);
//! - a readable socket is read until a short read, every complete response
//!   in the buffer is parsed, and the next request is sent right away from
//!   the same wake-up: one `read`, one `send` and a share of one
//!   `epoll_wait` per request, and nothing allocated;
//! - with requests in flight and nothing to read, it dozes a few
//!   microseconds (`--coalesce`, bounded by the recent latency, see
//!   `Worker::wait`) before sleeping in `epoll_wait`, so responses arriving
//!   meanwhile cost the server no wake-up of the client's CPU each;
//! - with `--busy-poll`, before sleeping with requests in flight it polls
//!   for a few microseconds (adaptively, see `Worker::wait`), so a fast
//!   server's next response finds the thread awake instead of paying to
//!   wake its CPU;
//! - timeouts, reconnect back-off and rate samples are a sweep every
//!   `TICK_NS`, not per-request timer bookkeeping.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use servers::sys::epoll::{self, Epoll, Event, Interest};
use servers::sys::{io as sysio, socket, time};

use super::request::RequestBytes;
use super::response::{Progress, ResponseParser};
use super::schedule::{Pacer, Timers};
use super::stats::Stats;

/// Token of the Ctrl-C eventfd in every thread's epoll set.
const WAKE: u64 = u64::MAX;
/// Housekeeping period: timeouts are detected at most this late.
const TICK_NS: u64 = 10_000_000;
/// Req/Sec sampling window (wrk's 100 ms).
const SAMPLE_NS: u64 = 100_000_000;
/// Longest wait after the end for responses still on their way.
const GRACE_NS: u64 = 100_000_000;
/// Reconnect back-off after a failed connect, doubling per failure, so a
/// dead server costs a few attempts per second rather than a busy loop.
const MIN_BACKOFF_NS: u64 = 10_000_000;
const MAX_BACKOFF_NS: u64 = 500_000_000;
/// With no connection ever established this long after the start, a run
/// whose connects have failed gives up (the server is not there).
const GIVE_UP_NS: u64 = 1_000_000_000;
/// Per-connection read buffer; responses are parsed in place.
const BUF_SIZE: usize = 16 * 1024;
const EVENTS: usize = 512;
/// Starting budget of the adaptive poll before sleeping (see `Worker::wait`).
const SPIN_MIN_NS: u64 = 2_000;
/// The doze before sleeping is at most this fraction (1/N) of the mean
/// latency of the last tick, so it adds at most ~3% to what is measured.
const DOZE_SHARE: u64 = 32;
/// A doze shorter than this saves nothing over sleeping in `epoll_wait`.
const DOZE_MIN_NS: u64 = 5_000;

/// What every thread does, fixed before the start.
pub struct Plan {
    /// The server.
    pub addr: SocketAddrV4,
    /// The pre-serialized request (pipeline included).
    pub request: RequestBytes,
    /// Requests per write.
    pub pipeline: usize,
    /// HEAD responses carry no body whatever Content-Length says.
    pub head_request: bool,
    /// Request timeout, ns.
    pub timeout_ns: u64,
    /// The rate schedule with `-R`.
    pub pacer: Option<Pacer>,
    /// The histograms' highest trackable value, µs.
    pub hist_max_us: u64,
    /// Upper bound of the poll before sleeping (`--busy-poll`); 0 = never poll.
    pub busy_poll_ns: u64,
    /// Upper bound of the doze before sleeping (`--coalesce`); 0 = never.
    pub coalesce_ns: u64,
}

/// State the threads share: written rarely (never per request, except the
/// `-n` budget, which is the point of it).
pub struct Shared {
    /// The common start instant, ns, so every thread measures from the same origin.
    pub start_ns: u64,
    /// CLOCK_MONOTONIC ns at which to stop sending; `u64::MAX` for none.
    pub end_ns: u64,
    /// Requests left to claim with `-n`.
    pub budget: Option<AtomicU64>,
    /// Stop now: Ctrl-C, or every connect failed.
    pub stop: AtomicBool,
    /// Whether any thread ever connected (else the run is a connect failure).
    pub any_connected: AtomicBool,
    /// Failed connects over all threads.
    pub connect_failures: AtomicU64,
    /// The last connect errno, for the error message.
    pub last_connect_errno: AtomicI32,
    /// Level-triggered readiness of this fd (the Ctrl-C eventfd) stops the run.
    pub wake_fd: Option<BorrowedFd<'static>>,
}

impl Shared {
    /// Claim up to `want` requests from the `-n` budget (all of them without
    /// one); 0 when it is spent. Claims happen before sending, so the total
    /// sent can never exceed `-n`.
    fn claim(&self, want: u64) -> u64 {
        let Some(budget) = &self.budget else {
            return want;
        };
        let mut cur = budget.load(Relaxed);
        loop {
            if cur == 0 {
                return 0;
            }
            let take = cur.min(want);
            match budget.compare_exchange_weak(cur, cur - take, Relaxed, Relaxed) {
                Ok(_) => return take,
                Err(actual) => cur = actual,
            }
        }
    }

    fn budget_spent(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.load(Relaxed) == 0)
    }
}

/// One connection slot; the socket in it is replaced on reconnect, the
/// buffer is kept for the whole run.
struct Conn {
    fd: Option<OwnedFd>,
    /// Bumped whenever the socket is closed, so epoll events and timers
    /// for an earlier socket in this slot are recognised as stale.
    gen: u32,
    /// Index among all connections of the run (its place on the -R grid).
    global: u64,
    connecting: bool,
    /// When the connect started (connect timeout).
    since: u64,
    /// When closed: earliest time to try again (`u64::MAX`: never).
    retry_at: u64,
    backoff: u64,
    buf: Box<[u8]>,
    /// Unparsed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    parser: ResponseParser,
    /// Requests of the current batch not yet answered.
    outstanding: u32,
    /// Bytes of the current batch written so far, and in total.
    write_off: usize,
    write_len: usize,
    /// When the current batch was sent.
    sent_at: u64,
    /// -R: the intended send time of the outstanding request, the index
    /// of the next one on the grid, and whether a timer is pending.
    intended: u64,
    next_k: u64,
    scheduled: bool,
}

/// Run one thread's share (`count` connections, the first being number
/// `first` of the run) until the end, and return what it counted.
pub fn run(plan: &Plan, shared: &Shared, first: u64, count: usize) -> io::Result<Stats> {
    let mut w = Worker::new(plan, shared, first, count)?;
    w.run()?;
    Ok(w.finish())
}

struct Worker<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    ep: Epoll,
    conns: Vec<Conn>,
    stats: Stats,
    timers: Timers,
    now: u64,
    /// Requests sent (or being sent) and not yet answered or failed.
    in_flight: u64,
    stopping: bool,
    grace_end: u64,
    next_tick: u64,
    sample_start: u64,
    sample_count: u64,
    /// Current adaptive poll budget before sleeping.
    spin_ns: u64,
    /// Current doze before sleeping (0: none), set each tick from the
    /// latency of the responses seen since the last tick.
    doze_ns: u64,
    latency_sum_ns: u64,
    latency_count: u64,
}

impl<'a> Worker<'a> {
    fn new(plan: &'a Plan, shared: &'a Shared, first: u64, count: usize) -> io::Result<Self> {
        let head = plan.head_request;
        let conns = (0..count)
            .map(|i| Conn {
                fd: None,
                gen: 0,
                global: first + i as u64,
                connecting: false,
                since: 0,
                retry_at: 0,
                backoff: 0,
                buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
                start: 0,
                end: 0,
                parser: ResponseParser::new(head),
                outstanding: 0,
                write_off: 0,
                write_len: 0,
                sent_at: 0,
                intended: 0,
                next_k: 0,
                scheduled: false,
            })
            .collect();
        let now = time::monotonic_ns();
        Ok(Worker {
            plan,
            shared,
            ep: Epoll::new()?,
            conns,
            stats: Stats::new(plan.hist_max_us),
            timers: Timers::with_capacity(count),
            now,
            in_flight: 0,
            stopping: false,
            grace_end: u64::MAX,
            next_tick: now + TICK_NS,
            sample_start: now,
            sample_count: 0,
            spin_ns: SPIN_MIN_NS.min(plan.busy_poll_ns),
            doze_ns: 0,
            latency_sum_ns: 0,
            latency_count: 0,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        if self.plan.pacer.is_some() || self.plan.coalesce_ns > 0 {
            // Paced sends and dozes wake on timers; the default 50 µs slack
            // would show up in every corrected latency and stretch a doze.
            let _ = time::set_timer_slack_ns(1_000);
        }
        if let Some(fd) = self.shared.wake_fd {
            self.ep.add(fd, Interest::READABLE, WAKE)?;
        }
        self.stats.rps_samples.reserve(
            (self.shared.end_ns.saturating_sub(self.now) / SAMPLE_NS).min(36_000) as usize + 2,
        );
        for slot in 0..self.conns.len() {
            self.open(slot);
        }
        let mut events = epoll::events(EVENTS);
        loop {
            let n = self.wait(&mut events)?;
            self.now = time::monotonic_ns();
            for ev in &events[..n] {
                self.on_event(ev);
            }
            if self.plan.pacer.is_some() {
                self.now = time::monotonic_ns();
                self.run_timers();
            }
            if !self.stopping && self.now >= self.shared.end_ns {
                self.begin_stop();
            }
            if self.now >= self.next_tick {
                self.tick();
            }
            if self.finished() {
                return Ok(());
            }
        }
    }

    fn finish(mut self) -> Stats {
        self.stats.in_flight_at_end = self.in_flight;
        if self.stats.rps_samples.is_empty() {
            // A run shorter than one window still reports its rate.
            let elapsed = self.now.saturating_sub(self.shared.start_ns).max(1);
            self.stats
                .rps_samples
                .push(self.stats.completed as f64 * 1e9 / elapsed as f64);
        }
        self.stats
    }

    /// Wait for events. With requests in flight and a doze set (see
    /// [`Worker::set_doze`]), a first look finding nothing is followed by a
    /// `nanosleep` of the doze and a second look, and only then a sleep in
    /// `epoll_wait`. On loopback a response's arrival runs in the server's
    /// `send`; if this thread is blocked in `epoll_wait` there, the server
    /// pays for waking it (a cross-CPU wake-up, in a VM an exit), once per
    /// response; a dozing thread is not waiting on the epoll set, so the
    /// server only queues the event, and the thread takes all that arrived
    /// in one pass when its own timer fires. Against nginx, in alternating
    /// 3 s runs: nginx's CPU per request ~5% lower at 50 plain connections
    /// and ~11% lower with `--pipeline 16` at 400 than with `--coalesce 0`.
    ///
    /// With `--busy-poll`, before sleeping with requests in
    /// flight, poll for a few microseconds: a response that arrives while this thread is
    /// still awake costs the server (whose `send` runs our socket's wake-up
    /// on loopback) no cross-CPU wake-up of an idle CPU, which in a VM is a
    /// costly exit. The poll budget adapts: it doubles (to `--busy-poll`)
    /// while polls find events and halves when they don't, so a slow server
    /// costs the client almost nothing; ticks re-probe with [`SPIN_MIN_NS`].
    /// Never with -R, whose waits are for the clock, not the server. Off by
    /// default: the poll buys throughput with client CPU, and the client's
    /// CPU per request is one of the figures it must not lose to wrk on.
    fn wait(&mut self, events: &mut [epoll::Event]) -> io::Result<usize> {
        if self.plan.pacer.is_some() {
            let timeout = self.wait_timeout();
            return self.ep.wait_precise(events, Some(timeout));
        }
        if self.in_flight > 0 && self.doze_ns > 0 {
            let n = self.ep.wait(events, 0)?;
            if n > 0 {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_nanos(self.doze_ns));
            let n = self.ep.wait(events, 0)?;
            if n > 0 {
                return Ok(n);
            }
        }
        if self.in_flight > 0 && self.spin_ns > 0 {
            let until = time::monotonic_ns() + self.spin_ns;
            loop {
                let n = self.ep.wait(events, 0)?;
                if n > 0 {
                    self.spin_ns = (self.spin_ns * 2).min(self.plan.busy_poll_ns);
                    return Ok(n);
                }
                if time::monotonic_ns() >= until {
                    break;
                }
            }
            self.spin_ns /= 2;
        }
        // Millisecond resolution is enough without -R: the deadlines are
        // housekeeping ticks and the end of the run.
        let ms = self.wait_timeout().as_nanos().div_ceil(1_000_000);
        self.ep.wait(events, ms.min(i32::MAX as u128) as i32)
    }

    /// Sleep until the next housekeeping tick, paced send, or the end.
    fn wait_timeout(&self) -> Duration {
        let mut next = self.next_tick;
        if self.stopping {
            next = next.min(self.grace_end);
        } else {
            next = next.min(self.shared.end_ns);
            if let Some(due) = self.timers.next_due() {
                next = next.min(due);
            }
        }
        Duration::from_nanos(next.saturating_sub(self.now))
    }

    fn finished(&self) -> bool {
        if self.stopping {
            return self.in_flight == 0 || self.now >= self.grace_end;
        }
        self.in_flight == 0 && self.shared.budget_spent()
    }

    /// Stop sending; wait a short grace for what is in flight.
    fn begin_stop(&mut self) {
        self.stopping = true;
        self.grace_end = self.now + GRACE_NS.min(self.plan.timeout_ns);
        self.timers.clear();
    }

    fn on_event(&mut self, ev: &Event) {
        let token = ev.token();
        if token == WAKE {
            self.shared.stop.store(true, Relaxed);
            if let Some(fd) = self.shared.wake_fd {
                // It stays readable (level-triggered); without this every
                // wait of the grace period would return at once.
                let _ = self.ep.delete(fd);
            }
            if !self.stopping {
                self.begin_stop();
            }
            return;
        }
        let slot = (token & 0xffff_ffff) as usize;
        let gen = (token >> 32) as u32;
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        if c.gen != gen || c.fd.is_none() {
            return; // an event for a socket closed earlier in this batch
        }
        if c.connecting {
            self.on_connect_event(slot, ev);
            return;
        }
        if ev.is_writable() && c.write_off < c.write_len && !self.flush(slot) {
            return;
        }
        if ev.is_readable() || ev.is_hangup() || ev.is_error() {
            let hangup = ev.is_hangup() || ev.is_error();
            self.on_readable(slot, hangup);
        }
    }

    // ---- connecting ------------------------------------------------------

    fn open(&mut self, slot: usize) {
        match socket::connect_nonblocking(self.plan.addr) {
            Ok(fd) => {
                let _ = socket::set_nodelay(fd.as_fd());
                let c = &mut self.conns[slot];
                let token = (u64::from(c.gen) << 32) | slot as u64;
                let interest = Interest::READABLE
                    | Interest::WRITABLE
                    | Interest::READ_HANGUP
                    | Interest::EDGE;
                if let Err(e) = self.ep.add(fd.as_fd(), interest, token) {
                    drop(fd);
                    self.connect_failed(slot, errno(&e));
                    return;
                }
                c.fd = Some(fd);
                c.connecting = true;
                c.since = self.now;
            }
            Err(e) => self.connect_failed(slot, errno(&e)),
        }
    }

    fn on_connect_event(&mut self, slot: usize, ev: &Event) {
        let failed = ev.is_error() || ev.has_hung_up();
        if !ev.is_writable() && !failed {
            return;
        }
        match socket_of(&self.conns[slot].fd).and_then(socket::take_error) {
            Ok(None) if !failed => self.on_connected(slot),
            Ok(None) => self.connect_failed(slot, libc::ECONNREFUSED),
            Ok(Some(e)) | Err(e) => self.connect_failed(slot, errno(&e)),
        }
    }

    fn on_connected(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        c.connecting = false;
        c.backoff = 0;
        if !self.shared.any_connected.load(Relaxed) {
            self.shared.any_connected.store(true, Relaxed);
        }
        self.send_next(slot);
    }

    fn connect_failed(&mut self, slot: usize, errno: i32) {
        self.stats.connect_errors += 1;
        self.shared.connect_failures.fetch_add(1, Relaxed);
        self.shared.last_connect_errno.store(errno, Relaxed);
        let c = &mut self.conns[slot];
        c.fd = None;
        c.gen = c.gen.wrapping_add(1);
        c.connecting = false;
        c.scheduled = false;
        c.backoff = (c.backoff * 2).clamp(MIN_BACKOFF_NS, MAX_BACKOFF_NS);
        c.retry_at = self.now + c.backoff;
    }

    /// Close the slot's socket; returns the requests that were outstanding
    /// on it (the caller counts them under the right error).
    fn close(&mut self, slot: usize) -> u64 {
        let c = &mut self.conns[slot];
        c.fd = None; // closing also removes it from the epoll set
        c.gen = c.gen.wrapping_add(1);
        c.connecting = false;
        c.scheduled = false;
        c.parser.reset();
        c.start = 0;
        c.end = 0;
        c.write_off = 0;
        c.write_len = 0;
        let lost = u64::from(c.outstanding);
        c.outstanding = 0;
        self.in_flight -= lost;
        lost
    }

    /// Open the slot again after a close, unless there is nothing left to send.
    fn reopen(&mut self, slot: usize) {
        if self.stopping || self.shared.budget_spent() {
            self.conns[slot].retry_at = u64::MAX;
            return;
        }
        self.stats.reconnects += 1;
        self.open(slot);
    }

    // ---- sending ---------------------------------------------------------

    /// Start the next batch on an idle, connected slot: now, or (with -R)
    /// at its intended time.
    fn send_next(&mut self, slot: usize) {
        if self.stopping {
            return;
        }
        let c = &mut self.conns[slot];
        let k = if let Some(pacer) = &self.plan.pacer {
            if c.scheduled {
                return;
            }
            let due = pacer.intended(c.global, c.next_k);
            if due >= self.shared.end_ns {
                return;
            }
            if due > self.now {
                self.timers.push(due, slot, c.gen);
                c.scheduled = true;
                return;
            }
            if self.shared.claim(1) == 0 {
                return;
            }
            c.next_k += 1;
            c.intended = due;
            1
        } else {
            match self.shared.claim(self.plan.pipeline as u64) {
                0 => return,
                k => k,
            }
        };
        c.outstanding = k as u32;
        c.write_off = 0;
        c.write_len = k as usize * self.plan.request.one_len;
        c.sent_at = self.now;
        self.in_flight += k;
        self.flush(slot);
    }

    /// Write what is left of the current batch; false if the connection
    /// failed (and was reopened).
    fn flush(&mut self, slot: usize) -> bool {
        loop {
            let c = &mut self.conns[slot];
            if c.write_off >= c.write_len {
                return true;
            }
            let bytes = &self.plan.request.bytes[c.write_off..c.write_len];
            match socket_of(&c.fd).and_then(|fd| sysio::send(fd, bytes, false)) {
                Ok(n) => {
                    c.write_off += n;
                    self.stats.bytes_written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    let lost = self.close(slot);
                    self.stats.write_errors += lost.max(1);
                    self.reopen(slot);
                    return false;
                }
            }
        }
    }

    fn run_timers(&mut self) {
        while let Some((slot, gen)) = self.timers.pop_due(self.now) {
            let c = &mut self.conns[slot];
            if c.gen != gen || !c.scheduled {
                continue;
            }
            c.scheduled = false;
            if c.fd.is_some() && !c.connecting && c.outstanding == 0 {
                self.send_next(slot);
            }
        }
    }

    // ---- receiving -------------------------------------------------------

    /// Read until a short read (edge-triggered: a short read means the
    /// socket was drained, and new data raises a new edge), or until EOF
    /// when the peer hung up.
    fn on_readable(&mut self, slot: usize, hangup: bool) {
        loop {
            let c = &mut self.conns[slot];
            if c.end == c.buf.len() {
                if c.start == 0 {
                    // Cannot happen: heads are capped well below the
                    // buffer and bodies are consumed as they arrive.
                    self.fail_read(slot);
                    return;
                }
                c.buf.copy_within(c.start..c.end, 0);
                c.end -= c.start;
                c.start = 0;
            }
            let space = c.buf.len() - c.end;
            match socket_of(&c.fd).and_then(|fd| sysio::read(fd, &mut c.buf[c.end..])) {
                Ok(0) => {
                    self.on_eof(slot);
                    return;
                }
                Ok(n) => {
                    c.end += n;
                    self.stats.bytes_read += n as u64;
                    self.now = time::monotonic_ns();
                    if !self.parse_responses(slot) {
                        return;
                    }
                    if n < space && !hangup {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.on_read_error(slot);
                    return;
                }
            }
        }
    }

    /// Handle every complete response in the buffer; false if the
    /// connection was closed (and reopened) on the way.
    fn parse_responses(&mut self, slot: usize) -> bool {
        loop {
            let c = &mut self.conns[slot];
            if c.start == c.end {
                c.start = 0;
                c.end = 0;
                return true;
            }
            match c.parser.parse(&c.buf[c.start..c.end]) {
                Ok(Progress::Partial { consumed }) => {
                    c.start += consumed;
                    if c.start == c.end {
                        c.start = 0;
                        c.end = 0;
                    }
                    return true;
                }
                Ok(Progress::Complete {
                    consumed,
                    status,
                    close,
                }) => {
                    c.start += consumed;
                    if c.outstanding == 0 {
                        // A response to nothing: the stream is out of step.
                        self.fail_read(slot);
                        return false;
                    }
                    self.on_response(slot, status);
                    if close {
                        // Requests still outstanding behind it are lost:
                        // the server closed with them unanswered.
                        let lost = self.close(slot);
                        self.stats.read_errors += lost;
                        self.reopen(slot);
                        return false;
                    }
                    if self.conns[slot].outstanding == 0 {
                        let gen = self.conns[slot].gen;
                        self.send_next(slot);
                        if self.conns[slot].gen != gen {
                            return false;
                        }
                    }
                }
                Err(_) => {
                    self.fail_read(slot);
                    return false;
                }
            }
        }
    }

    /// Record one response of the slot's current batch.
    fn on_response(&mut self, slot: usize, status: u16) {
        let now = self.now;
        let c = &mut self.conns[slot];
        c.outstanding -= 1;
        self.in_flight -= 1;
        self.stats.completed += 1;
        self.sample_count += 1;
        self.stats.status(status);
        let actual_ns = now.saturating_sub(c.sent_at);
        self.latency_sum_ns = self.latency_sum_ns.saturating_add(actual_ns);
        self.latency_count += 1;
        let actual_us = actual_ns / 1000;
        if self.plan.pacer.is_some() {
            let corrected_us = now.saturating_sub(c.intended) / 1000;
            self.stats.latency.saturating_record(corrected_us);
            self.stats.uncorrected.saturating_record(actual_us);
        } else {
            self.stats.latency.saturating_record(actual_us);
        }
        if c.outstanding == 0 {
            self.stats.batches += 1;
        }
    }

    fn on_eof(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        let mut ended_response = false;
        if let Some(status) = c.parser.eof() {
            if c.outstanding > 0 {
                self.on_response(slot, status);
                ended_response = true;
            }
        }
        let c = &self.conns[slot];
        let idle = c.outstanding == 0 && c.start == c.end && c.parser.at_boundary();
        let lost = self.close(slot);
        if !idle {
            // Closed mid-response or with requests unanswered.
            self.stats.read_errors += lost.max(1);
        } else if !ended_response {
            self.stats.idle_closes += 1;
        }
        self.reopen(slot);
    }

    fn on_read_error(&mut self, slot: usize) {
        let c = &self.conns[slot];
        let idle = c.outstanding == 0 && c.start == c.end && c.parser.at_boundary();
        let lost = self.close(slot);
        if idle {
            // A reset of a keep-alive connection with nothing asked of it
            // is the server closing it, not a failed request.
            self.stats.idle_closes += 1;
        } else {
            self.stats.read_errors += lost.max(1);
        }
        self.reopen(slot);
    }

    /// The response stream is broken (unparsable or unsolicited bytes).
    fn fail_read(&mut self, slot: usize) {
        let lost = self.close(slot);
        self.stats.read_errors += lost.max(1);
        self.reopen(slot);
    }

    // ---- housekeeping ----------------------------------------------------

    /// Size the doze from the mean latency since the last tick: at most
    /// 1/[`DOZE_SHARE`] of it and `--coalesce`; none below [`DOZE_MIN_NS`]
    /// (a fast server at low concurrency), none with -R (its waits are for
    /// the clock), and none until responses have been seen.
    fn set_doze(&mut self) {
        if self.latency_count > 0 && self.plan.pacer.is_none() {
            let mean = self.latency_sum_ns / self.latency_count;
            self.doze_ns = doze_for(mean, self.plan.coalesce_ns);
        }
        self.latency_sum_ns = 0;
        self.latency_count = 0;
    }

    fn tick(&mut self) {
        let now = self.now;
        self.next_tick = now + TICK_NS;
        self.spin_ns = self.spin_ns.max(SPIN_MIN_NS.min(self.plan.busy_poll_ns));
        self.set_doze();
        if now - self.sample_start >= SAMPLE_NS && !self.stopping {
            let rate = self.sample_count as f64 * 1e9 / (now - self.sample_start) as f64;
            self.stats.rps_samples.push(rate);
            self.sample_count = 0;
            self.sample_start = now;
        }
        if !self.stopping {
            if self.shared.stop.load(Relaxed) {
                self.begin_stop();
            } else if now.saturating_sub(self.shared.start_ns) >= GIVE_UP_NS
                && !self.shared.any_connected.load(Relaxed)
                && self.shared.connect_failures.load(Relaxed) > 0
            {
                self.shared.stop.store(true, Relaxed);
                self.begin_stop();
            }
        }
        let timeout = self.plan.timeout_ns;
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            if c.fd.is_none() {
                if !self.stopping && now >= c.retry_at && !self.shared.budget_spent() {
                    self.open(slot);
                }
            } else if c.connecting {
                if now.saturating_sub(c.since) > timeout {
                    self.connect_failed(slot, libc::ETIMEDOUT);
                }
            } else if c.outstanding > 0 && now.saturating_sub(c.sent_at) > timeout {
                let lost = self.close(slot);
                self.stats.timeouts += lost;
                self.reopen(slot);
            }
        }
    }
}

/// The doze before sleeping for a recent mean latency: 1/[`DOZE_SHARE`] of
/// it, at most `max_ns` (`--coalesce`), and none when that is too short to
/// be worth a timer.
fn doze_for(mean_latency_ns: u64, max_ns: u64) -> u64 {
    let doze = (mean_latency_ns / DOZE_SHARE).min(max_ns);
    if doze >= DOZE_MIN_NS {
        doze
    } else {
        0
    }
}

/// A connection's socket, borrowed for one syscall. A slot without one
/// answers `EBADF`, as the syscall would on a closed descriptor, so the
/// caller takes its usual error path (counted, then reopened).
fn socket_of(fd: &Option<OwnedFd>) -> io::Result<BorrowedFd<'_>> {
    fd.as_ref()
        .map(|fd| fd.as_fd())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    //! The loop against a scripted in-process server (std::net is fine in
    //! a test fixture; only the load generator itself must use `sys`).
    use super::super::{cli, run as run_load, Outcome};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A server answering every request head with `response` (or never,
    /// when it is empty); returns its port and its request counter.
    fn server(response: &'static [u8]) -> (u16, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..i + 4);
                            counter.fetch_add(1, Ordering::SeqCst);
                            if !response.is_empty() && s.write_all(response).is_err() {
                                return;
                            }
                            if response.windows(17).any(|w| w == b"Connection: close") {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (port, count)
    }

    fn load(args: &str, port: u16) -> Outcome {
        let url = format!("http://127.0.0.1:{port}/");
        let argv = std::iter::once("loadgen")
            .chain(args.split_whitespace())
            .chain(std::iter::once(url.as_str()));
        let cfg = cli::parse(argv).unwrap();
        run_load(&cfg, None).unwrap()
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[test]
    fn exact_count_with_pipelining() {
        let (port, count) = server(OK);
        let out = load("-t 2 -c 3 -n 103 --pipeline 8", port);
        let s = &out.stats;
        assert_eq!(s.completed, 103);
        assert_eq!(count.load(Ordering::SeqCst), 103);
        assert_eq!(s.latency.len(), 103);
        assert_eq!(s.socket_errors(), 0);
        assert_eq!(s.in_flight_at_end, 0);
        // 103 = 12 full batches of 8 + one of 7, whichever connections took them.
        assert_eq!(s.batches, 13);
    }

    #[test]
    fn connection_close_reconnects_without_errors() {
        let (port, count) =
            server(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        let out = load("-t 1 -c 2 -n 20", port);
        let s = &out.stats;
        assert_eq!((s.completed, count.load(Ordering::SeqCst)), (20, 20));
        assert_eq!(s.socket_errors(), 0);
        assert!((18..=20).contains(&s.reconnects), "{}", s.reconnects);
    }

    #[test]
    fn silent_server_times_out() {
        let (port, _) = server(b"");
        let out = load("-t 1 -c 1 -d 350ms --timeout 100ms", port);
        let s = &out.stats;
        assert_eq!(s.completed, 0);
        // One every ~100 ms (+ up to a tick); the last may still be in flight.
        assert!((2..=4).contains(&s.timeouts), "{}", s.timeouts);
        // Each reopened, except one timing out after the end.
        assert!((s.timeouts - 1..=s.timeouts).contains(&s.reconnects));
        assert!(s.in_flight_at_end <= 1);
        assert_eq!(s.read_errors + s.write_errors + s.connect_errors, 0);
    }

    #[test]
    fn unanswered_at_the_end_is_in_flight_not_timeout() {
        let (port, _) = server(b"");
        let out = load("-t 1 -c 2 -d 200ms --timeout 5s", port);
        assert_eq!(out.stats.in_flight_at_end, 2);
        assert_eq!(out.stats.socket_errors(), 0);
        // Stopped after the short grace, not after the timeout.
        assert!(out.elapsed.as_secs_f64() < 0.5, "{:?}", out.elapsed);
    }

    #[test]
    fn refused_everywhere_gives_up_within_about_a_second() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let out = load("-t 1 -c 2 -d 10s", port);
        assert!(out.elapsed.as_secs_f64() < 1.5, "{:?}", out.elapsed);
        assert!(out.stats.connect_errors >= 2);
        assert_eq!(
            out.all_connects_failed.as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn doze_is_a_small_share_of_the_latency() {
        use super::{doze_for, DOZE_MIN_NS, DOZE_SHARE};
        let max = 50_000;
        // 50 connections on a fast server: ~450 us round trips.
        assert_eq!(doze_for(448_000, max), 448_000 / DOZE_SHARE);
        // Deep queues: capped at --coalesce.
        assert_eq!(doze_for(10_000_000, max), max);
        // Fast round trips: a doze would be too short to be worth a timer.
        assert_eq!(doze_for(DOZE_MIN_NS * DOZE_SHARE - 1, max), 0);
        assert_eq!(doze_for(100_000, max), 0);
        // --coalesce 0 turns it off.
        assert_eq!(doze_for(10_000_000, 0), 0);
    }
}
