//! What the process models (`fork`, `prefork`) share: forking a serving
//! process from a single-threaded master, setting the child up, reaping
//! children as they exit, and waiting for them at shutdown.
//!
//! **Why the master must be single-threaded.** `fork` copies only the
//! calling thread. A lock another thread held at that instant (the
//! allocator's, stdout's, the access log's) stays held forever in the
//! child, whose first `malloc` may then hang. A child that is to *serve*
//! (parse, allocate, log, run CGI) must therefore be forked from a process
//! with exactly one thread; then there is no other thread whose lock it
//! could inherit, and the child is an ordinary process that may do anything
//! and return normally. [`fork_server`] checks the thread count before each
//! fork (one read of `/proc/self/stat`) and refuses otherwise, so a helper
//! thread added to the master later fails loudly instead of deadlocking a
//! child now and then.
//!
//! **Reaping.** SIGCHLD is taken through a signalfd ([`Reaper`]) that the
//! master polls beside its listener: a child's exit wakes the same loop as
//! a connection, and every wake-up reaps with `waitpid(-1, WNOHANG)` until
//! none is left, so no zombie outlives the loop's next turn. `waitpid(-1)`
//! is safe here because the master runs no CGI script of its own (its
//! children are all servers it forked); the children, which do run
//! scripts, reap those by pid.
//!
//! **Process groups and signals.** Each child leads a process group of its
//! own. A terminal's Ctrl-C goes to the foreground group: if the children
//! were in it, each would hear SIGINT and then the master's SIGTERM, and
//! take the second for a user's second Ctrl-C (exit at once, no draining).
//! In their own groups they hear the master alone, once. A child also asks
//! for SIGTERM when the master dies (`PR_SET_PDEATHSIG`), so a master
//! killed with SIGKILL leaves no server behind: its children drain and exit.

use std::collections::HashSet;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::sys;
use crate::sys::process::{self, Fork, PollFd, WaitStatus};
use crate::sys::signal::{Shutdown, SignalFd};

/// Fork a serving process. Refuses (`Other`) unless the calling process has
/// exactly one thread (see the module doc). In the child, before returning
/// [`Fork::Child`]: a shutdown eventfd of its own, a process group of its
/// own, SIGTERM when the master dies, child subreaper (for what its CGI
/// scripts leave behind; the setting is not inherited), SIGCHLD unblocked.
/// A child whose set-up fails reports it and exits with status 1.
pub fn fork_server(shutdown: &'static Shutdown) -> io::Result<Fork> {
    let threads = process::thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a server from a process with {threads} threads \
             (the child could inherit a lock held by a thread it lacks)"
        )));
    }
    let master = process::getpid();
    // SAFETY: the calling process has one thread (checked just above, and
    // nothing here starts one in between), so the child inherits no lock
    // held by another thread: it may allocate, lock and return normally.
    match unsafe { process::fork() }? {
        Fork::Child => {
            if let Err(e) = set_up_child(master, shutdown) {
                eprintln!("server process {}: set-up failed: {e}", process::getpid());
                process::exit_immediately(1);
            }
            Ok(Fork::Child)
        }
        Fork::Parent(pid) => {
            // The child does the same; whichever runs first wins.
            let _ = process::setpgid(pid, pid);
            Ok(Fork::Parent(pid))
        }
    }
}

fn set_up_child(master: i32, shutdown: &'static Shutdown) -> io::Result<()> {
    shutdown.after_fork()?;
    let _ = process::setpgid(0, 0);
    process::set_parent_death_signal(process::SIGTERM)?;
    if process::getppid() != master {
        // The master died before the request took effect.
        shutdown.trigger();
    }
    if let Err(e) = process::become_child_subreaper() {
        eprintln!("warning: cannot become a child subreaper ({e})");
    }
    sys::signal::unblock(&[process::SIGCHLD])
}

/// SIGCHLD (and, for a master that restarts its workers, SIGHUP) taken
/// through a signalfd, and the reaping that follows. Make it before the
/// first fork, so no exit is missed.
pub struct Reaper {
    signals: SignalFd,
}

/// What woke a [`Reaper`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Woken {
    /// SIGHUP arrived (only when asked for).
    pub hangup: bool,
}

impl Reaper {
    /// Take SIGCHLD, and SIGHUP too when `hangup`.
    pub fn new(hangup: bool) -> io::Result<Reaper> {
        let signals = if hangup {
            SignalFd::new(&[process::SIGCHLD, process::SIGHUP])?
        } else {
            SignalFd::new(&[process::SIGCHLD])?
        };
        Ok(Reaper { signals })
    }

    /// The descriptor to poll: readable when a signal is pending.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.signals.fd()
    }

    /// Consume the pending signals (SIGCHLDs coalesce, so they only say
    /// "reap now"); whether a SIGHUP was among them.
    pub fn take_signals(&self) -> Woken {
        let mut woken = Woken::default();
        while let Ok(Some(sig)) = self.signals.take() {
            woken.hangup |= sig == process::SIGHUP;
        }
        woken
    }

    /// Reap every child that has exited, calling `exited` for each.
    pub fn reap(&self, mut exited: impl FnMut(i32, WaitStatus)) {
        while let Ok(Some((pid, status))) = process::try_wait_any() {
            exited(pid, status);
        }
    }

    /// Wait until every pid in `alive` has been reaped (calling `exited` for
    /// each reaped child) or `deadline` passes; then SIGKILL and reap the
    /// rest. Returns how many had to be killed.
    pub fn wait_all(
        &self,
        alive: &mut HashSet<i32>,
        deadline: Instant,
        mut exited: impl FnMut(i32, WaitStatus),
    ) -> usize {
        loop {
            self.take_signals();
            self.reap(|pid, status| {
                alive.remove(&pid);
                exited(pid, status);
            });
            let left = deadline.saturating_duration_since(Instant::now());
            if alive.is_empty() || left.is_zero() {
                break;
            }
            let mut fds = [PollFd::readable(self.fd())];
            let ms = left.min(Duration::from_secs(1)).as_millis().max(1) as i32;
            let _ = process::poll(&mut fds, ms);
        }
        let killed = alive.len();
        for &pid in alive.iter() {
            let _ = process::kill(pid, process::SIGKILL);
            if let Ok(status) = process::waitpid(pid) {
                exited(pid, status);
            }
        }
        alive.clear();
        killed
    }
}
