//! The edge-triggered epoll loop: one thread, many non-blocking connections.
//!
//! Used once by the `epoll` variant and once per thread by `epoll-threads`.
//! Each connection is registered once for input, output and peer hang-up,
//! edge-triggered, and never modified afterwards: a keep-alive request costs
//! one `read`, one `send`, and a share of one `epoll_wait`. Closing a socket
//! removes it from the interest list, so there is no `EPOLL_CTL_DEL` either.
//!
//! Timeouts are a sweep over all connections every [`SWEEP_MS`], which is
//! O(connections) once per sweep rather than timer bookkeeping per request.
//!
//! With an offload [`Handle`], blocking handlers run on the worker pool and
//! come back through the handle's eventfd; without one they run inline and
//! the loop waits for them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::conn::{Conn, Ctx, Next};
use crate::http::app::App;
use crate::http::parser::Parser;
use crate::http::stats::Shard;
use crate::offload::Handle;
use crate::sys;
use crate::sys::epoll::{self, Epoll};
use crate::sys::signal::Shutdown;
use crate::sys::time::monotonic_ms_coarse;

const LISTENER: u64 = u64::MAX;
const WAKE: u64 = u64::MAX - 1;
const DONE: u64 = u64::MAX - 2;
const SWEEP_MS: u64 = 250;
/// How long a connection closed after an error may keep sending.
const LINGER_MS: u64 = 1000;
/// Accepts per wake-up, so one busy listener cannot starve the connections.
const ACCEPT_BATCH: usize = 256;

pub struct Policy {
    pub keepalive_timeout: Duration,
    pub header_timeout: Duration,
    pub max_requests: u64,
    /// After shutdown starts, connections still busy this long are dropped.
    pub shutdown_timeout: Duration,
}

struct Slot {
    conn: Conn,
    lingering: bool,
    /// Distinguishes successive connections in one slot, so a finished job
    /// for a connection that has since closed is not given to its successor.
    generation: u32,
}

/// Run one event loop until shutdown has drained every connection.
pub fn run(
    listener: OwnedFd,
    parser: Parser,
    app: &App,
    shard: &Shard,
    policy: &Policy,
    shutdown: &Shutdown,
    offload: Option<&Handle>,
) -> io::Result<()> {
    // accept_batch accepts until EAGAIN, which a blocking listener would
    // turn into an indefinite wait.
    sys::socket::set_nonblocking(listener.as_raw_fd())?;
    let ep = Epoll::new()?;
    ep.add(listener.as_raw_fd(), epoll::IN, LISTENER)?;
    ep.add(shutdown.wake_fd(), epoll::IN, WAKE)?;
    if let Some(h) = offload {
        ep.add(h.wake_fd(), epoll::IN, DONE)?;
    }
    let offload_dyn = offload.map(|h| h as &dyn crate::conn::Offload);
    let mut finished = Vec::new();
    let mut generation = 0u32;
    let mut drain_deadline = u64::MAX;
    let mut listener = Some(listener);
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut live = 0usize;
    let mut events = epoll::events(1024);
    let mut draining = false;
    let mut next_sweep = monotonic_ms_coarse() + SWEEP_MS;
    let keepalive_ms = policy.keepalive_timeout.as_millis() as u64;
    let header_ms = policy.header_timeout.as_millis() as u64;

    loop {
        let n = ep.wait(&mut events, SWEEP_MS as i32)?;
        let now = monotonic_ms_coarse();
        let ctx = Ctx {
            app,
            shard,
            max_requests: policy.max_requests,
            draining,
            offload: offload_dyn,
        };
        for ev in &events[..n] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                if let Some(l) = &listener {
                    let mut table = Table {
                        slots: &mut slots,
                        free: &mut free,
                        live: &mut live,
                        generation: &mut generation,
                    };
                    accept_batch(l, &ep, &parser, shard, &mut table, now);
                }
                continue;
            }
            if token == WAKE {
                continue;
            }
            if token == DONE {
                if let Some(h) = offload {
                    h.take(&mut finished);
                }
                for (tok, done) in finished.drain(..) {
                    let idx = (tok & 0xffff_ffff) as usize;
                    let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut) else {
                        continue;
                    };
                    if slot.generation != (tok >> 32) as u32 || slot.lingering {
                        continue;
                    }
                    let next = slot.conn.on_job_done(&ctx, done, now);
                    settle(next, idx, &mut slots, &mut free, &mut live, shard, now);
                }
                continue;
            }
            let idx = token as usize;
            let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let next = if slot.lingering {
                slot.conn.linger_read()
            } else if flags & (epoll::IN | epoll::RDHUP | epoll::HUP | epoll::ERR) != 0 {
                slot.conn.on_readable(&ctx, now).unwrap_or(Next::Close)
            } else if flags & epoll::OUT != 0 && slot.conn.has_pending_output() {
                slot.conn.on_writable(&ctx, now)
            } else {
                continue;
            };
            settle(next, idx, &mut slots, &mut free, &mut live, shard, now);
        }

        if !draining && shutdown.requested() {
            draining = true;
            drain_deadline = now.saturating_add(policy.shutdown_timeout.as_millis() as u64);
            // Stop accepting: the listening socket closes (its queued,
            // never-accepted connections are reset by the kernel) and the
            // always-readable wake fd leaves the interest list.
            listener = None;
            ep.delete(shutdown.wake_fd())?;
            for idx in 0..slots.len() {
                if let Some(slot) = slots[idx].as_mut() {
                    if let Some(next) = slot.conn.on_drain() {
                        settle(next, idx, &mut slots, &mut free, &mut live, shard, now);
                    }
                }
            }
        }
        let jobs = offload.map_or(0, Handle::in_flight);
        if draining && live == 0 && jobs == 0 {
            return Ok(());
        }
        if draining && now >= drain_deadline {
            eprintln!(
                "shutdown timeout: dropping {live} connection(s) still busy ({jobs} handler(s) running)"
            );
            return Ok(());
        }

        if now >= next_sweep {
            next_sweep = now + SWEEP_MS;
            let ctx = Ctx {
                app,
                shard,
                max_requests: policy.max_requests,
                draining,
                offload: offload_dyn,
            };
            for idx in 0..slots.len() {
                let Some(slot) = slots[idx].as_mut() else {
                    continue;
                };
                let c = &mut slot.conn;
                let next = if slot.lingering {
                    (now.saturating_sub(c.last_active_ms) >= LINGER_MS).then_some(Next::Close)
                } else if c.is_waiting() {
                    None
                } else if c.has_pending_output() {
                    // A client not reading its responses: same bound as idle.
                    (now.saturating_sub(c.last_active_ms) >= keepalive_ms).then_some(Next::Close)
                } else if c.has_partial_request() {
                    (now.saturating_sub(c.request_started_ms) >= header_ms)
                        .then(|| c.on_timeout(&ctx, now))
                } else if draining {
                    Some(Next::Close)
                } else {
                    (now.saturating_sub(c.last_active_ms) >= keepalive_ms)
                        .then(|| c.on_timeout(&ctx, now))
                };
                if let Some(next) = next {
                    settle(next, idx, &mut slots, &mut free, &mut live, shard, now);
                }
            }
        }
    }
}

/// The connection slots, borrowed together for accepting.
struct Table<'a> {
    slots: &'a mut Vec<Option<Slot>>,
    free: &'a mut Vec<usize>,
    live: &'a mut usize,
    generation: &'a mut u32,
}

fn accept_batch(
    listener: &OwnedFd,
    ep: &Epoll,
    parser: &Parser,
    shard: &Shard,
    t: &mut Table<'_>,
    now: u64,
) {
    for _ in 0..ACCEPT_BATCH {
        let (fd, peer) = match sys::socket::accept(listener.as_raw_fd(), true) {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: leave the rest queued in the kernel
                // and try again on the next wake-up.
                eprintln!("accept: {e}");
                return;
            }
        };
        let _ = sys::socket::set_nodelay(fd.as_raw_fd());
        let idx = t.free.pop().unwrap_or_else(|| {
            t.slots.push(None);
            t.slots.len() - 1
        });
        let interest = epoll::IN | epoll::OUT | epoll::RDHUP | epoll::ET;
        if ep.add(fd.as_raw_fd(), interest, idx as u64).is_err() {
            t.free.push(idx);
            continue;
        }
        shard.conn_opened();
        *t.live += 1;
        *t.generation = t.generation.wrapping_add(1);
        let mut conn = Conn::new(fd, peer, true, Parser::new(parser.limits()), now);
        conn.token = u64::from(*t.generation) << 32 | idx as u64;
        t.slots[idx] = Some(Slot {
            conn,
            lingering: false,
            generation: *t.generation,
        });
    }
}

/// Apply a connection's next state: keep it, start lingering, or drop it.
fn settle(
    next: Next,
    idx: usize,
    slots: &mut [Option<Slot>],
    free: &mut Vec<usize>,
    live: &mut usize,
    shard: &Shard,
    now: u64,
) {
    match next {
        Next::Read | Next::Write => {}
        Next::Linger => {
            if let Some(slot) = slots[idx].as_mut() {
                if !slot.lingering {
                    slot.lingering = true;
                    slot.conn.last_active_ms = now;
                    slot.conn.shutdown_write();
                    // Input may already be waiting (no new edge would come).
                    if slot.conn.linger_read() == Next::Close {
                        close(idx, slots, free, live, shard);
                    }
                }
            }
        }
        Next::Close => close(idx, slots, free, live, shard),
    }
}

fn close(
    idx: usize,
    slots: &mut [Option<Slot>],
    free: &mut Vec<usize>,
    live: &mut usize,
    shard: &Shard,
) {
    // Dropping the connection closes its socket, which also removes it from
    // the epoll interest list. Events for this slot later in the same batch
    // cannot exist: each descriptor appears at most once per epoll_wait.
    if slots[idx].take().is_some() {
        free.push(idx);
        *live -= 1;
        shard.conn_closed();
    }
}
