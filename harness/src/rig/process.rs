//! The process plumbing every measurement needs: children pinned to CPUs in
//! their own process group (so a terminal Ctrl-C reaches the runner alone,
//! which then stops them in order), killed with the runner if it dies;
//! the Ctrl-C flag; the fd limit; the runner's own CPU mask.

use std::io;
use std::mem;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use servers::sys::affinity;

/// Make `cmd`'s child run on `cpus` only (sched_setaffinity before exec, so
/// every thread and child process it ever starts inherits the mask), lead
/// its own process group, and get SIGKILL if the runner dies first.
pub fn confine(cmd: &mut Command, cpus: &[usize]) -> io::Result<()> {
    let set = affinity::cpu_set(cpus)?;
    // The child's parent: checked in the child after PR_SET_PDEATHSIG.
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions (setpgid, prctl, getppid, _exit,
    // sched_setaffinity) on data prepared before the fork; it allocates
    // nothing (io::Error::last_os_error does not allocate).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The runner may have died before prctl took effect.
            if libc::getppid() != me {
                libc::_exit(1);
            }
            affinity::set_affinity(&set)?;
            Ok(())
        });
    }
    Ok(())
}

pub use affinity::allowed_cpus;

/// `name` on PATH, the way a shell would find it.
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Send `sig` to the process group `pgid` (a child started with [`confine`]
/// leads its own group, whose id is its pid).
pub fn signal_group(pgid: u32, sig: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill has no memory-safety preconditions; a negative pid
        // addresses the group, which only contains processes we started.
        unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
    }
}

/// Send `sig` to one process.
pub fn signal(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

/// Raise the soft open-files limit to the hard one (inherited by the
/// servers and the load generator: 1200 connections need more than the
/// usual 1024). Returns the (soft, hard) limits now in force.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    // SAFETY: all-zero is a valid rlimit.
    let mut lim: libc::rlimit = unsafe { mem::zeroed() };
    // SAFETY: `lim` is valid writable storage.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == -1 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            lim = want;
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // A second Ctrl-C: give up at once. The children get SIGKILL
        // through PR_SET_PDEATHSIG.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Install the Ctrl-C (SIGINT) and SIGTERM handler: it only raises a flag
/// ([`interrupted`]) which the sweep checks between and during runs; a
/// second signal exits at once.
pub fn install_interrupt_handler() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; zeroed is a valid starting value.
        let mut sa: libc::sigaction = unsafe { mem::zeroed() };
        sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa` is initialised and its handler only touches an atomic
        // (and calls _exit), both async-signal-safe.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether Ctrl-C (or SIGTERM) has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_may_run_somewhere() {
        assert!(!allowed_cpus().is_empty());
    }
}
