//! epoll(7): one interest list per event loop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub const IN: u32 = libc::EPOLLIN as u32;
pub const OUT: u32 = libc::EPOLLOUT as u32;
pub const ET: u32 = libc::EPOLLET as u32;
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const HUP: u32 = libc::EPOLLHUP as u32;
pub const ERR: u32 = libc::EPOLLERR as u32;
pub const EXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

pub type Event = libc::epoll_event;

/// An epoll instance; closed on drop.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 returned a fresh descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Register `fd` for `events`, tagged with `token` (returned in each event).
    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        syscall!(epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev))?;
        Ok(())
    }

    /// Wait up to `timeout_ms` (-1 = forever) and fill `events`; returns how
    /// many are ready. EINTR is reported as zero events so callers simply
    /// re-check their shutdown flag.
    pub fn wait(&self, events: &mut [Event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is valid writable storage for `max` epoll_events.
        match syscall!(epoll_wait(
            self.fd.as_raw_fd(),
            events.as_mut_ptr(),
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
    vec![libc::epoll_event { events: 0, u64: 0 }; n]
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
        // SAFETY: `events` is valid writable storage for `max` epoll_events,
        // `ts_ptr` is null or points at a timespec that outlives the call, and
        // a null signal mask means "leave the mask alone".
        match syscall!(epoll_pwait2(
            self.fd.as_raw_fd(),
            events.as_mut_ptr(),
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
