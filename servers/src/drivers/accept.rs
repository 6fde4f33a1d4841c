//! Backing off from `accept` when descriptors or kernel memory run out:
//! shared by every driver's accept path and the blocking models' accept
//! loops, so each pauses, logs and recovers the same way.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys;
use crate::sys::signal::Shutdown;

/// How long a blocking `accept` waits before its loop re-checks the
/// shutdown flag: a safety net for a signal landing between the check and
/// the call (set as the listener's receive timeout by [`blocking_listener`]).
const BLOCKING_ACCEPT_TICK: Duration = Duration::from_secs(1);

/// Prepare a listener for [`AcceptBackoff::next_blocking`].
pub fn blocking_listener(listener: BorrowedFd<'_>) -> io::Result<()> {
    sys::socket::set_read_timeout(listener, BLOCKING_ACCEPT_TICK)
}

/// Backing off from `accept` while the process is out of descriptors or
/// kernel memory, and saying so once per episode rather than once per try.
///
/// `accept` failing with EMFILE, ENFILE, ENOBUFS or ENOMEM leaves the
/// connection queued in the kernel: a level-triggered listener is readable
/// again at once, and a loop that retries at once spins a core and prints a
/// line per attempt. nginx's answer is followed here (`ngx_event_accept`: on
/// EMFILE/ENFILE it disables accept events and enables them again after
/// `accept_mutex_delay`): stop accepting for a pause — 100 ms, doubled while
/// accepts keep failing, at most 1 s — and retry once it is over. Queued
/// clients wait in the backlog meanwhile; connections that close free the
/// descriptors. (Some servers keep a reserve descriptor instead, closed to
/// accept a connection and close it at once: that turns clients away where
/// a pause lets them wait. Pausing is what nginx does.)
///
/// The readiness loop pauses by taking its listener out of the epoll set;
/// the blocking models' accept loops (`blocking`, `threadpool`) by sleeping.
#[derive(Debug)]
pub struct AcceptBackoff {
    /// Printed before `accept:` in the log lines (`""`, `"blocking: "`).
    label: &'static str,
    /// Failed accepts in the current episode; 0 while accepting works.
    failures: u64,
    /// The next pause.
    pause: Duration,
    /// When the current episode began.
    since: Option<Instant>,
}

impl AcceptBackoff {
    const FIRST_PAUSE: Duration = Duration::from_millis(100);
    const MAX_PAUSE: Duration = Duration::from_secs(1);

    /// No episode yet; log lines start with `label`.
    pub const fn new(label: &'static str) -> Self {
        AcceptBackoff {
            label,
            failures: 0,
            pause: Self::FIRST_PAUSE,
            since: None,
        }
    }

    /// Whether `e` is a shortage of descriptors or kernel memory: a failure
    /// that retrying at once only repeats, and that waiting can cure.
    pub fn is_shortage(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }

    /// Count a failed accept (with `open` connections open). The first of an
    /// episode is logged; returns how long to stop accepting.
    pub fn failed(&mut self, e: &io::Error, open: u64) -> Duration {
        if self.failures == 0 {
            self.since = Some(Instant::now());
            // io::Error's Display ends in " (os error N)"; the line reads
            // better without it.
            let text = e.to_string();
            let text = text.split(" (os error ").next().unwrap_or(&text);
            let s = if open == 1 { "" } else { "s" };
            eprintln!(
                "{}accept: {text}: pausing accepts ({open} connection{s} open)",
                self.label
            );
        }
        self.failures += 1;
        let pause = self.pause;
        self.pause = (pause * 2).min(Self::MAX_PAUSE);
        pause
    }

    /// An accept worked: end the episode, if one was running, with one line.
    #[inline]
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            self.end_episode();
        }
    }

    #[cold]
    fn end_episode(&mut self) {
        let secs = self.since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let s = if self.failures == 1 { "" } else { "s" };
        eprintln!(
            "{}accept: accepting again after {} failed attempt{s} over {secs:.1} s",
            self.label, self.failures
        );
        *self = Self::new(self.label);
    }

    /// Sleep `pause` on a blocking accept thread, waking early for shutdown.
    pub fn sleep(pause: Duration, shutdown: &Shutdown) {
        const STEP: Duration = Duration::from_millis(50);
        let until = Instant::now() + pause;
        while !shutdown.requested() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(STEP));
        }
    }

    /// The blocking models' accept loop: the next connection, or `None` once
    /// shutdown is requested. Interruptions, the listener's timeout tick and
    /// connections aborted while queued are retried; a shortage pauses
    /// (`open` counts the connections held, for the log line); another
    /// error is logged and retried after a moment.
    pub fn next_blocking(
        &mut self,
        listener: BorrowedFd<'_>,
        shutdown: &Shutdown,
        open: impl Fn() -> u64,
    ) -> Option<(OwnedFd, SocketAddrV4)> {
        while !shutdown.requested() {
            match sys::socket::accept(listener, false) {
                Ok(accepted) => {
                    self.succeeded();
                    return Some(accepted);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) if Self::is_shortage(&e) => {
                    Self::sleep(self.failed(&e, open()), shutdown);
                }
                Err(e) => {
                    eprintln!("{}accept: {e}", self.label);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        None
    }
}
