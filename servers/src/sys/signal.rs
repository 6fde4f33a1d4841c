//! Graceful shutdown on SIGINT/SIGTERM, in every thread and every process.
//!
//! No thread is dedicated to signals: a thread does not survive `fork`, and
//! a forked child must hear SIGTERM as well as its parent. Instead the
//! handler itself — inherited across `fork`, async-signal-safe — does all
//! there is to do:
//! - raises the process's shutdown flag (an atomic store);
//! - makes an eventfd readable, which event loops register in their epoll
//!   set and so wake from `epoll_wait` (with no race: the fd stays readable);
//! - interrupts the threads registered as blocking in syscalls (accept,
//!   read) with SIGUSR1, whose handler does nothing but make the syscall
//!   fail with `EINTR` (neither handler uses `SA_RESTART`), so the thread
//!   re-checks the flag. Threads are named by kernel thread id and signalled
//!   with `tgkill`, which is async-signal-safe and cannot reach another
//!   process's thread.
//!
//! A signal that lands after a thread checked the flag but before it
//! blocked is caught by [`Shutdown::kick_parked`], which a supervising
//! thread calls while it waits for the others to finish, and, for a thread
//! blocked in `accept`, by the listener's receive timeout (see the variants).
//!
//! After `fork`, the child calls [`Shutdown::after_fork`]: it gets its own
//! eventfd (the inherited one is its parent's) and forgets its parent's
//! threads. A second signal exits at once, as users expect from a second
//! Ctrl-C.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// Threads that can be registered as blocking at once (more are simply not
/// interrupted; they still see the flag at their next read timeout).
const MAX_PARKED: usize = 4096;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static REQUESTED_AT_MS: AtomicU64 = AtomicU64::new(0);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static PARKED: [AtomicI32; MAX_PARKED] = [const { AtomicI32::new(0) }; MAX_PARKED];
static SHUTDOWN: Shutdown = Shutdown { _private: () };

/// The process's shutdown state (one per process; see the module doc).
pub struct Shutdown {
    _private: (),
}

impl Shutdown {
    /// Whether SIGINT/SIGTERM has arrived (or [`Shutdown::trigger`] was called).
    pub fn requested(&self) -> bool {
        REQUESTED.load(Ordering::Relaxed)
    }

    /// Milliseconds since shutdown was requested (0 before).
    pub fn elapsed_ms(&self) -> u64 {
        if !self.requested() {
            return 0;
        }
        super::time::monotonic_ms_coarse().saturating_sub(REQUESTED_AT_MS.load(Ordering::Relaxed))
    }

    /// An eventfd that becomes (and stays) readable on shutdown; register it
    /// level-triggered in an epoll set to be woken.
    pub fn wake_fd(&self) -> BorrowedFd<'static> {
        let fd = WAKE_FD.load(Ordering::Relaxed);
        assert!(fd >= 0, "sys::signal::install() was not called");
        // SAFETY: the eventfd is created by `install` (or `after_fork`) and
        // never closed while the process runs.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }

    /// Mark the calling thread as one that blocks in syscalls, so shutdown
    /// interrupts it. Deregistered when the guard drops.
    pub fn register_blocking_thread(&'static self) -> ParkGuard {
        let tid = gettid();
        let slot = PARKED.iter().position(|p| {
            p.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        ParkGuard { slot }
    }

    /// Request shutdown from inside the process (tests, fatal errors, a
    /// parent telling its children through shared state).
    pub fn trigger(&self) {
        raise_flag();
        kick_parked();
    }

    /// Interrupt every registered thread once more: a thread that checked
    /// the flag just before it was set, and blocked after, wakes now.
    pub fn kick_parked(&self) {
        kick_parked();
    }

    /// The wake eventfd fired but no shutdown was requested in this process:
    /// a child forked without [`Shutdown::after_fork`] (a CGI script before
    /// its exec) shares the eventfd and was signalled alone. Reset it, or a
    /// loop registered level-triggered on it would spin.
    pub fn clear_spurious_wake(&self) {
        if !self.requested() {
            let mut counter = [0u8; 8];
            let _ = super::io::read(self.wake_fd(), &mut counter);
        }
    }

    /// In a child just forked: a fresh eventfd and no registered threads
    /// (the parent's threads do not exist here). The flag is inherited: a
    /// child forked during shutdown knows it.
    pub fn after_fork(&self) -> io::Result<()> {
        for p in PARKED.iter() {
            p.store(0, Ordering::Relaxed);
        }
        let fresh = new_eventfd()?;
        WAKE_FD.store(fresh, Ordering::Relaxed);
        if self.requested() {
            let _ = signal_eventfd(fresh);
        }
        Ok(())
    }
}

/// Keeps the thread registered for shutdown kicks while alive.
pub struct ParkGuard {
    slot: Option<usize>,
}

impl Drop for ParkGuard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            PARKED[i].store(0, Ordering::Release);
        }
    }
}

/// Install the handlers (idempotent). Call from `main`, before any thread
/// is spawned or process forked.
pub fn install() -> io::Result<&'static Shutdown> {
    if WAKE_FD.load(Ordering::Relaxed) >= 0 {
        return Ok(&SHUTDOWN);
    }
    WAKE_FD.store(new_eventfd()?, Ordering::Relaxed);
    set_handler(libc::SIGINT, on_shutdown_signal)?;
    set_handler(libc::SIGTERM, on_shutdown_signal)?;
    set_handler(libc::SIGUSR1, on_kick)?;
    // Writes to a socket whose peer is gone must fail with EPIPE, not kill us.
    // SAFETY: setting SIGPIPE's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // The signals may have been blocked by whoever started us.
    let mut set = empty_set();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: `set` is an initialised signal set.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(&SHUTDOWN)
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is valid writable storage for a sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    set
}

fn set_handler(sig: i32, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid starting value.
    let mut sa: libc::sigaction = unsafe { mem::zeroed() };
    sa.sa_sigaction = handler as usize;
    // No SA_RESTART: a blocking syscall interrupted by the signal returns
    // EINTR, which is how a parked thread learns to look at the flag.
    sa.sa_flags = 0;
    sa.sa_mask = empty_set();
    // SAFETY: `sa` is fully initialised and the handler is async-signal-safe.
    syscall!(sigaction(sig, &sa, std::ptr::null_mut()))?;
    Ok(())
}

/// SIGINT/SIGTERM. Only async-signal-safe operations: atomics, `write`,
/// `clock_gettime`, `gettid`, `tgkill`, `_exit`.
extern "C" fn on_shutdown_signal(_: libc::c_int) {
    if REQUESTED.load(Ordering::SeqCst) {
        let msg = b"second signal: exiting without draining\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is valid.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(1);
        }
    }
    raise_flag();
    kick_parked();
}

/// SIGUSR1: nothing; its arrival is what interrupts a blocking syscall.
extern "C" fn on_kick(_: libc::c_int) {}

fn raise_flag() {
    REQUESTED_AT_MS.store(super::time::monotonic_ms_coarse(), Ordering::Relaxed);
    REQUESTED.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let _ = signal_eventfd(fd);
    }
}

fn kick_parked() {
    let me = gettid();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    for p in PARKED.iter() {
        let tid = p.load(Ordering::Acquire);
        if tid != 0 && tid != me {
            // A thread that has exited meanwhile fails with ESRCH; a reused
            // id can only belong to another thread of this process (tgkill
            // checks the thread group), which treats EINTR as a retry.
            // SAFETY: tgkill takes plain integers and is async-signal-safe.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
        }
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// A fresh eventfd, by number: it is kept open for the life of the process
/// (the handler writes to it by number from [`WAKE_FD`]), so it is taken out
/// of its owner on purpose.
fn new_eventfd() -> io::Result<RawFd> {
    Ok(super::io::eventfd()?.into_raw_fd())
}

/// Add one to the eventfd numbered `fd` (from [`WAKE_FD`], never closed).
/// A bare `write(2)`, for the signal handler.
fn signal_eventfd(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: `one` is 8 readable bytes; write(2) is async-signal-safe; a
    // write adds to a counter and cannot close or replace the descriptor.
    syscall!(write(fd, (&one as *const u64).cast(), 8))?;
    Ok(())
}

/// Signals received as readable events on a descriptor (`signalfd`)
/// instead of by a handler: a single-threaded master polls it beside its
/// listener, so a child's exit (SIGCHLD) or a restart request (SIGHUP)
/// wakes the same `poll` as a new connection, with no handler racing the
/// loop.
///
/// The signals are blocked in the calling thread, which is what makes
/// them queue for the descriptor; the mask is inherited across `fork`, so a
/// child that wants them back calls [`unblock`].
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Block `signals` in the calling thread and open a non-blocking,
    /// close-on-exec signalfd for them.
    pub fn new(signals: &[i32]) -> io::Result<SignalFd> {
        let set = set_of(signals);
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: -1 asks for a new descriptor; `set` is initialised.
        let fd = syscall!(signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))?;
        // SAFETY: signalfd returned a fresh descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalFd { fd })
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next pending signal's number, `None` when none is pending.
    pub fn take(&self) -> io::Result<Option<i32>> {
        // SAFETY: signalfd_siginfo is plain data; all-zero is valid.
        let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
        let size = mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: `info` is valid writable storage of `size` bytes.
            match syscall!(read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size
            )) {
                Ok(n) if n as usize == size => return Ok(Some(info.ssi_signo as i32)),
                Ok(_) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Unblock `signals` in the calling thread (a child of a process that took
/// them through a [`SignalFd`]).
pub fn unblock(signals: &[i32]) -> io::Result<()> {
    let set = set_of(signals);
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

fn set_of(signals: &[i32]) -> libc::sigset_t {
    let mut set = empty_set();
    for &sig in signals {
        // SAFETY: `set` is an initialised signal set; an invalid number
        // only makes sigaddset fail, leaving the set as it is.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    set
}
