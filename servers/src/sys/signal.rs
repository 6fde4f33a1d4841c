//! Graceful shutdown on SIGINT/SIGTERM for every variant.
//!
//! The signals are blocked in every thread and taken synchronously by one
//! dedicated thread (`sigwait`), so no work happens in a signal handler. That
//! thread raises a flag, makes an eventfd readable (epoll loops register it
//! and wake up), and interrupts threads parked in blocking syscalls (accept,
//! read) with SIGUSR1, whose handler does nothing but make the syscall return
//! `EINTR` so the thread re-checks the flag. The kick repeats until every
//! registered thread has left, which closes the race where the signal lands
//! between a thread's flag check and its next blocking call.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub struct Shutdown {
    requested: AtomicBool,
    /// When shutdown was requested (coarse monotonic ms), for the drain deadline.
    requested_at_ms: AtomicU64,
    wake: OwnedFd,
    parked: Mutex<Vec<(u64, libc::pthread_t)>>,
}

static SHUTDOWN: OnceLock<Shutdown> = OnceLock::new();

impl Shutdown {
    /// Whether SIGINT/SIGTERM has arrived.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Milliseconds since shutdown was requested (0 before).
    pub fn elapsed_ms(&self) -> u64 {
        if !self.requested() {
            return 0;
        }
        super::time::monotonic_ms_coarse()
            .saturating_sub(self.requested_at_ms.load(Ordering::Relaxed))
    }

    /// An eventfd that becomes (and stays) readable on shutdown; register it
    /// level-triggered in an epoll set to be woken.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Mark the calling thread as one that blocks in syscalls, so shutdown
    /// interrupts it. Deregistered when the guard drops.
    pub fn register_blocking_thread(&'static self) -> ParkGuard {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        lock(&self.parked).push((id, me));
        ParkGuard { owner: self, id }
    }

    /// Request shutdown from inside the process (tests, fatal errors).
    pub fn trigger(&self) {
        self.requested_at_ms
            .store(super::time::monotonic_ms_coarse(), Ordering::Relaxed);
        self.requested.store(true, Ordering::SeqCst);
        let _ = super::io::eventfd_signal(self.wake.as_raw_fd());
    }
}

/// Keeps the thread registered for shutdown kicks while alive.
pub struct ParkGuard {
    owner: &'static Shutdown,
    id: u64,
}

impl Drop for ParkGuard {
    fn drop(&mut self) {
        lock(&self.owner.parked).retain(|(id, _)| *id != self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Install the shutdown machinery. Call from `main` before spawning any
/// thread, so every thread inherits the blocked signal mask.
pub fn install() -> io::Result<&'static Shutdown> {
    if let Some(s) = SHUTDOWN.get() {
        return Ok(s);
    }
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is valid writable storage for a sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }

    // SIGUSR1 interrupts blocking syscalls: a no-op handler without
    // SA_RESTART makes them fail with EINTR instead of being restarted.
    // SAFETY: sigaction is plain data; zeroed is a valid starting value.
    let mut sa: libc::sigaction = unsafe { mem::zeroed() };
    sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = 0;
    // SAFETY: `sa` is fully initialised and the handler is async-signal-safe.
    syscall!(sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()))?;
    // Writes to a socket whose peer is gone must fail with EPIPE, not kill us.
    // SAFETY: setting SIGPIPE's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    let shutdown = SHUTDOWN.get_or_init(|| Shutdown {
        requested: AtomicBool::new(false),
        requested_at_ms: AtomicU64::new(0),
        wake: super::io::eventfd().expect("eventfd"),
        parked: Mutex::new(Vec::new()),
    });
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_signals(shutdown, set))?;
    Ok(shutdown)
}

fn wait_for_signals(shutdown: &'static Shutdown, set: libc::sigset_t) {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set blocked in this thread.
    while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
    shutdown.trigger();
    // Keep interrupting parked threads until they have all left. A second
    // signal forces an immediate exit, as users expect from a second Ctrl-C.
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: as above.
        while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
        eprintln!("second signal: exiting without draining");
        std::process::exit(1);
    });
    loop {
        // Kill while holding the lock: a thread deregisters under the same
        // lock before it can exit, so every pthread_t here is alive.
        for &(_, t) in lock(&shutdown.parked).iter() {
            // SAFETY: `t` is a live, registered thread (see above).
            unsafe { libc::pthread_kill(t, libc::SIGUSR1) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
