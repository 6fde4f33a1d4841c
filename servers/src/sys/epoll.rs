//! epoll(7): one interest list per event loop.

use std::io;
use std::ops::BitOr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// What a registration waits for (`EPOLLIN`, `EPOLLOUT`, … combined with `|`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest(u32);

impl Interest {
    /// Input is available (or the peer closed: a read returns 0).
    pub const READABLE: Interest = Interest(libc::EPOLLIN as u32);
    /// Output space is available.
    pub const WRITABLE: Interest = Interest(libc::EPOLLOUT as u32);
    /// The peer shut down its sending side (`EPOLLRDHUP`).
    pub const READ_HANGUP: Interest = Interest(libc::EPOLLRDHUP as u32);
    /// Edge-triggered: report a change once, not a state while it lasts.
    pub const EDGE: Interest = Interest(libc::EPOLLET as u32);
    /// Wake one waiter of several on the same descriptor (`EPOLLEXCLUSIVE`).
    pub const EXCLUSIVE: Interest = Interest(libc::EPOLLEXCLUSIVE as u32);
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

/// One ready descriptor, as [`Epoll::wait`] reports it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Event(libc::epoll_event);

impl Event {
    const EMPTY: Event = Event(libc::epoll_event { events: 0, u64: 0 });

    /// The token the descriptor was registered with.
    pub fn token(&self) -> u64 {
        // Read by value: the struct is packed on some architectures, where
        // a reference to the field would be unaligned.
        self.0.u64
    }

    fn has(&self, bits: i32) -> bool {
        let e = self.0.events;
        e & bits as u32 != 0
    }

    /// Input is available.
    pub fn is_readable(&self) -> bool {
        self.has(libc::EPOLLIN)
    }

    /// Output space is available.
    pub fn is_writable(&self) -> bool {
        self.has(libc::EPOLLOUT)
    }

    /// The peer hung up (either direction) or half-closed its sending side.
    pub fn is_hangup(&self) -> bool {
        self.has(libc::EPOLLRDHUP | libc::EPOLLHUP)
    }

    /// The connection is gone both ways (`EPOLLHUP` alone, without the
    /// half-close of `EPOLLRDHUP`): a connect that failed reports this.
    pub fn has_hung_up(&self) -> bool {
        self.has(libc::EPOLLHUP)
    }

    /// An error is pending on the descriptor.
    pub fn is_error(&self) -> bool {
        self.has(libc::EPOLLERR)
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let events = self.0.events;
        f.debug_struct("Event")
            .field("token", &self.token())
            .field("events", &format_args!("{events:#x}"))
            .finish()
    }
}

/// An epoll instance; closed on drop.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty interest list (close-on-exec).
    pub fn new() -> io::Result<Epoll> {
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 returned a fresh descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Register `fd` for `events`, tagged with `token` (returned in each event).
    pub fn add(&self, fd: BorrowedFd<'_>, interest: Interest, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest.0, token)
    }

    /// Change what `fd` is registered for.
    pub fn modify(&self, fd: BorrowedFd<'_>, interest: Interest, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest.0, token)
    }

    /// Stop watching `fd` (closing it does the same once no duplicate is left).
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl(&self, op: i32, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call,
        // and `fd` is a live descriptor for as long as the borrow.
        syscall!(epoll_ctl(self.fd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev))?;
        Ok(())
    }

    /// Wait up to `timeout_ms` (-1 = forever) and fill `events`; returns how
    /// many are ready. EINTR is reported as zero events so callers simply
    /// re-check their shutdown flag.
    pub fn wait(&self, events: &mut [Event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is valid writable storage for `max` epoll_events
        // (`Event` is a transparent wrapper of one).
        match syscall!(epoll_wait(
            self.fd.as_raw_fd(),
            events.as_mut_ptr().cast::<libc::epoll_event>(),
            max,
            timeout_ms
        )) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// A zeroed event buffer of `n` entries for [`Epoll::wait`].
pub fn events(n: usize) -> Vec<Event> {
    vec![Event::EMPTY; n]
}

impl Epoll {
    /// Like [`Epoll::wait`] but with a nanosecond timeout (`epoll_pwait2`,
    /// Linux 5.11+), for loops whose deadlines are finer than a millisecond
    /// (a paced load generator would otherwise send up to 1 ms late).
    /// `None` waits forever. On kernels without `epoll_pwait2` it falls back
    /// to [`Epoll::wait`] with the timeout rounded up to whole milliseconds.
    pub fn wait_precise(
        &self,
        events: &mut [Event],
        timeout: Option<std::time::Duration>,
    ) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `events` is valid writable storage for `max` epoll_events
        // (`Event` is a transparent wrapper of one), `ts_ptr` is null or
        // points at a timespec that outlives the call, and a null signal mask
        // means "leave the mask alone".
        match syscall!(epoll_pwait2(
            self.fd.as_raw_fd(),
            events.as_mut_ptr().cast::<libc::epoll_event>(),
            max,
            ts_ptr,
            std::ptr::null()
        )) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                let ms = timeout.map_or(-1, |t| {
                    t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
                });
                self.wait(events, ms)
            }
            Err(e) => Err(e),
        }
    }
}
