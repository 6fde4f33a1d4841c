//! Child processes: the syscalls behind running a CGI script.
//!
//! Two kinds of wrapper live here, and the difference matters:
//!
//! - **Child-side** wrappers ([`fchdir`], [`dup_above`], [`dup_onto`],
//!   [`setpgid`], [`reset_signal_dispositions`], [`set_signal_mask`],
//!   [`mark_cloexec_from`], [`ensure_inherited`], [`execveat_fd`],
//!   [`exit_immediately`], and [`super::io::write`]) are each one bare
//!   syscall (or a fixed number of them) that neither allocates nor takes a
//!   lock. They are async-signal-safe, so they may run in the child of a
//!   [`fork`] taken in a multi-threaded process, where another thread may
//!   have held the allocator's lock at the moment of the fork.
//! - **Parent-side** wrappers ([`pipe`], [`open_executable_beneath`],
//!   [`Child`], [`poll`], [`block_signals`], ...) may allocate freely.
//!
//! Children are reaped through [`Child`], an RAII guard: whatever path a
//! caller leaves by, the child's process group is killed and the child is
//! waited for by its exact pid, never with `waitpid(-1)`, which could steal
//! another thread's child.

use std::ffi::{CStr, CString};
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Make this process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`): a grandchild whose parent exits is
/// reparented here instead of to init, so a server can end what a CGI
/// script left behind even when it escaped the script's process group
/// (`setsid`).
pub fn become_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer; no pointers.
    syscall!(prctl(
        libc::PR_SET_CHILD_SUBREAPER,
        1 as libc::c_ulong,
        0,
        0,
        0
    ))?;
    Ok(())
}

/// The pids whose parent is `parent`: read from each of its threads'
/// `/proc/PID/task/TID/children` (a few small reads), or, on a kernel
/// without that file, by a scan of every `/proc/*/stat` — which costs a
/// read per process on the machine, too much to do once per connection.
pub fn children_of(parent: i32) -> Vec<i32> {
    children_from_tasks(parent).unwrap_or_else(|| children_by_scan(parent))
}

fn children_from_tasks(parent: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
    let mut pids = Vec::new();
    for task in tasks {
        let path = task.ok()?.path().join("children");
        let list = std::fs::read_to_string(path).ok()?;
        pids.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    Some(pids)
}

fn children_by_scan(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid ...: comm may hold spaces and ')'.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// This process's id.
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// `SIGKILL`, for [`kill`].
pub const SIGKILL: i32 = libc::SIGKILL;
/// `SIGTERM`, for [`kill`] and [`set_parent_death_signal`].
pub const SIGTERM: i32 = libc::SIGTERM;
/// `SIGCHLD`, for [`super::signal::SignalFd`].
pub const SIGCHLD: i32 = libc::SIGCHLD;
/// `SIGHUP`, for [`super::signal::SignalFd`].
pub const SIGHUP: i32 = libc::SIGHUP;

/// This process's parent's id (1, or a subreaper's, once the parent died).
pub fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// Have the kernel send `sig` to this process when the thread that forked
/// it exits (`PR_SET_PDEATHSIG`): a server process forked by a master must
/// not outlive a master killed with SIGKILL. Not inherited by this
/// process's own children. The parent may already be gone when this runs:
/// callers compare [`getppid`] with the parent's pid afterwards.
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes one integer; no pointers.
    syscall!(prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0))?;
    Ok(())
}

/// Threads of this process (`num_threads` in `/proc/self/stat`): a master
/// checks it is 1 before it forks, since only then may the child do
/// anything at all (no lock can be held by a thread the child lacks).
pub fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Field 20; fields after `comm` (which may hold spaces) start at 3.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17)?.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/stat"))
}
/// `SIGPIPE`, for [`SigSet::add`] and [`take_pending_signal`].
pub const SIGPIPE: i32 = libc::SIGPIPE;

// ------------------------------------------------------------ descriptors

/// A pipe, both ends close-on-exec: `(read end, write end)`. Close-on-exec
/// matters because other threads fork too; an end leaking into an unrelated
/// child would keep the pipe open (no EOF) for as long as that child lives.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is valid writable storage for the two descriptors.
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: pipe2 succeeded, so both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Open `name` beneath the directory `dir` for execution only: `O_PATH`
/// (no read permission needed, no side effects such as a FIFO blocking),
/// close-on-exec. `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`
/// refuses, atomically during lookup, any resolution that leaves `dir`:
/// `..` above it, an absolute symlink, or a relative one pointing outside
/// (`EXDEV`), and `/proc` magic links (`ELOOP`).
///
/// The returned descriptor pins the inode: executing it with
/// [`execveat_fd`] runs exactly the file that was checked, whatever is
/// renamed over the name in between.
pub fn open_executable_beneath(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zero means "no flags" for every field.
    let mut how: libc::open_how = unsafe { mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    let mut attempts = 0;
    loop {
        // SAFETY: `dir` is open for the borrow, `name` is NUL-terminated,
        // `how` is valid for the call and its size is passed exactly as
        // openat2 requires.
        let res = syscall!(syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            mem::size_of::<libc::open_how>()
        ));
        match res {
            // SAFETY: openat2 returned a fresh descriptor that we now own.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // RESOLVE_BENEATH answers EAGAIN when a concurrent rename made
            // it unable to prove a `..` stayed inside; retrying is the
            // documented response.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && attempts < 8 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Open a process file descriptor for `pid` (`pidfd_open(2)`, Linux 5.3,
/// close-on-exec by default). It polls readable once the process has
/// exited, which lets one `poll` wait for a child's exit, its pipes and a
/// deadline together, with no SIGCHLD handler.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; no pointers.
    let fd = syscall!(syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint))?;
    // SAFETY: pidfd_open returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// One entry of a [`poll`] set.
///
/// It keeps the descriptor's number, not a borrow, so a caller may build a
/// set and then drop one of the descriptors (a pipe end it is done with)
/// before the next round. `poll` only looks at a descriptor, never closes or
/// changes it; a number closed meanwhile is reported as `POLLNVAL`, which
/// counts as [`PollFd::ready`].
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    /// Wait until `fd` is readable (or at end of stream / in error).
    pub fn readable(fd: BorrowedFd<'_>) -> PollFd {
        PollFd(libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
    }

    /// Wait until `fd` is writable (or its reader is gone).
    pub fn writable(fd: BorrowedFd<'_>) -> PollFd {
        PollFd(libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
    }

    /// Whether anything happened on this descriptor: the asked-for
    /// readiness, hang-up or error. The caller then tries its non-blocking
    /// operation, which says which.
    pub fn ready(&self) -> bool {
        self.0.revents != 0
    }
}

/// `poll(2)` for at most `timeout_ms` milliseconds (negative: forever).
/// Returns how many entries are ready. `EINTR` is returned as an error of
/// kind `Interrupted` so the caller can recompute its timeout and retry.
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: PollFd is repr(transparent) over pollfd, and the slice is
    // valid for reads and writes of `fds.len()` entries.
    let n = syscall!(poll(
        fds.as_mut_ptr() as *mut libc::pollfd,
        fds.len() as libc::nfds_t,
        timeout_ms
    ))?;
    Ok(n as usize)
}

// ------------------------------------------------------------ signal masks

/// A set of signals (`sigset_t`).
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// No signal: the mask a child gets before exec, so a script starts
    /// with nothing blocked whatever the server's threads had blocked.
    pub fn empty() -> SigSet {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { mem::zeroed() };
        // SAFETY: `set` is valid writable storage for a sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        SigSet(set)
    }

    /// Every signal. (The kernel never blocks SIGKILL/SIGSTOP, and glibc
    /// silently keeps its two internal signals out of a thread's mask.)
    pub fn full() -> SigSet {
        // SAFETY: sigset_t is plain data; sigfillset initialises it.
        let mut set: libc::sigset_t = unsafe { mem::zeroed() };
        // SAFETY: `set` is valid writable storage for a sigset_t.
        unsafe { libc::sigfillset(&mut set) };
        SigSet(set)
    }

    /// Add the signal numbered `sig` (e.g. [`SIGPIPE`]).
    pub fn add(&mut self, sig: i32) {
        // SAFETY: `self.0` is an initialised sigset_t; an invalid `sig`
        // only makes sigaddset return EINVAL, which leaves the set as is.
        unsafe { libc::sigaddset(&mut self.0, sig) };
    }
}

fn thread_sigmask(how: libc::c_int, set: &SigSet) -> io::Result<SigSet> {
    let mut old = SigSet::empty();
    // SAFETY: both pointers refer to initialised sigset_t values.
    let rc = unsafe { libc::pthread_sigmask(how, &set.0, &mut old.0) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(old)
}

/// Add `set` to the calling thread's blocked signals; returns the previous
/// mask, to be given back to [`set_signal_mask`].
pub fn block_signals(set: &SigSet) -> io::Result<SigSet> {
    thread_sigmask(libc::SIG_BLOCK, set)
}

/// Replace the calling thread's signal mask with `set`.
/// Async-signal-safe (pthread_sigmask is on POSIX's list).
pub fn set_signal_mask(set: &SigSet) -> io::Result<()> {
    thread_sigmask(libc::SIG_SETMASK, set).map(|_| ())
}

/// Accept `sig` if it is pending for the calling thread (where it must be
/// blocked), without waiting: `sigtimedwait` with a zero timeout. Returns
/// whether one was taken.
pub fn take_pending_signal(sig: i32) -> bool {
    let mut set = SigSet::empty();
    set.add(sig);
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: `set` and `zero` are initialised; a null siginfo pointer
        // is allowed.
        match syscall!(sigtimedwait(&set.0, ptr::null_mut(), &zero)) {
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false, // EAGAIN: nothing pending
        }
    }
}

// ------------------------------------------------------------ fork and exec

/// Which side of a [`fork`] the caller is on.
pub enum Fork {
    /// In the new process.
    Child,
    /// In the original process; the child's pid.
    Parent(i32),
}

/// `fork(2)`.
///
/// # Safety
///
/// In a multi-threaded process only the calling thread is copied; locks
/// held by other threads (the allocator's, stdio's) stay locked forever in
/// the child. On [`Fork::Child`] the caller must therefore call only
/// async-signal-safe functions (the child-side wrappers of this module:
/// nothing that allocates, locks, panics or unwinds) and must end in
/// [`execveat_fd`] or [`exit_immediately`], never by returning.
/// On [`Fork::Parent`] the caller owns the child and must reap it, which
/// [`Child::adopt`] guarantees.
pub unsafe fn fork() -> io::Result<Fork> {
    // SAFETY: fork takes no arguments; the caller upholds the contract on
    // what the child may do afterwards.
    let pid = syscall!(fork())?;
    Ok(if pid == 0 {
        // An atomic store is async-signal-safe: the child has forked nothing yet.
        HAS_FORKED.store(false, Ordering::Relaxed);
        Fork::Child
    } else {
        HAS_FORKED.store(true, Ordering::Relaxed);
        Fork::Parent(pid)
    })
}

/// Whether this process has forked a child through [`fork`].
static HAS_FORKED: AtomicBool = AtomicBool::new(false);

/// Whether this process ever forked: a process that never did has no
/// descendants, so nothing can have been reparented to it as a child
/// subreaper (which lets a `fork` child skip looking for orphans as it
/// exits: ~7% of its CPU per connection went into reading /proc for none).
pub fn has_forked() -> bool {
    HAS_FORKED.load(Ordering::Relaxed)
}

/// A NULL-terminated array of C strings (`argv`/`envp`), built before a
/// fork so the child does not allocate.
pub struct CStrArray {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    /// Own `strings` and the pointer array `execve` wants, so the child of a
    /// fork can pass them without building anything.
    pub fn new(strings: Vec<CString>) -> CStrArray {
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(ptr::null());
        // The CStrings' heap buffers do not move when the Vec holding them
        // is moved into the struct, so the pointers stay valid.
        CStrArray {
            _strings: strings,
            ptrs,
        }
    }

    fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// A number in this process's descriptor table that the caller is about to
/// (re)assign, typically in a child before exec: stdin, stdout, stderr, or
/// the slot a `#!` interpreter will open as `/dev/fd/<n>`.
///
/// An executed program finds its descriptors by number, so arranging them
/// is done by number too; what sits at a slot beforehand is not the
/// caller's to keep (it may be one of its own descriptors, or nothing).
/// Giving the target a type of its own keeps the wrappers that overwrite a
/// slot ([`dup_onto`], [`ensure_inherited`]) from being handed a descriptor
/// that something else owns by mistake: a descriptor is a [`BorrowedFd`] or
/// an [`OwnedFd`], a slot is an `FdSlot`, and they do not convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdSlot(RawFd);

impl FdSlot {
    /// Standard input (0).
    pub const STDIN: FdSlot = FdSlot(0);
    /// Standard output (1).
    pub const STDOUT: FdSlot = FdSlot(1);
    /// Standard error (2).
    pub const STDERR: FdSlot = FdSlot(2);

    /// The slot numbered `n` (not negative: a negative number names no slot).
    pub const fn new(n: i32) -> FdSlot {
        assert!(n >= 0, "a descriptor slot is a non-negative number");
        FdSlot(n)
    }

    /// The slot after this one (the first a program may use for its own
    /// files once the slots up to this one are arranged).
    pub const fn next(self) -> FdSlot {
        FdSlot(self.0 + 1)
    }
}

/// `fchdir(2)`. Child-side: async-signal-safe.
pub fn fchdir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fchdir takes a descriptor, open for the borrow; no pointers.
    syscall!(fchdir(dir.as_raw_fd())).map(|_| ())
}

/// Duplicate `fd` to the lowest free number `>= min`, close-on-exec
/// (`F_DUPFD_CLOEXEC`). Used in a child to move descriptors out of the way
/// of the slots about to be assigned (0, 1, 3) before any `dup2` could
/// overwrite one of them. Child-side: async-signal-safe, and so is dropping
/// the copy (`close`); a child that needs it until exec keeps it alive
/// until then (the copy is close-on-exec, so exec closes it).
pub fn dup_above(fd: BorrowedFd<'_>, min: i32) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is open for the borrow; F_DUPFD_CLOEXEC takes an int
    // argument; no pointers.
    let copy = syscall!(fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min))?;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returned a fresh descriptor that we
    // now own.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Make the slot `to` refer to what `from` refers to, *without*
/// close-on-exec, so it survives exec (`dup2`, which silently closes
/// whatever `to` held; when the numbers are equal, which dup2 treats as a
/// no-op, the flag is cleared explicitly). Child-side: async-signal-safe.
pub fn dup_onto(from: BorrowedFd<'_>, to: FdSlot) -> io::Result<()> {
    let (from, to) = (from.as_raw_fd(), to.0);
    if from == to {
        // SAFETY: F_SETFD takes an int argument; no pointers. `to` is
        // `from`, open for its borrow.
        syscall!(fcntl(to, libc::F_SETFD, 0)).map(|_| ())
    } else {
        loop {
            // SAFETY: dup2 takes two numbers; no pointers. `from` is open for
            // its borrow; `to` is a slot the caller declared it reassigns.
            match syscall!(dup2(from, to)) {
                Ok(_) => return Ok(()),
                // EBUSY: a race with open() in another thread, which a
                // single-threaded child cannot have; retried anyway.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// If `fd` would not reach an executed program (closed, or close-on-exec:
/// a server started with its stderr closed may have one of its own pipes
/// there), open `/dev/null` on it, so a script's stderr is never missing
/// nor, later, one of the script's own files. Child-side: async-signal-safe.
pub fn ensure_inherited(slot: FdSlot) -> io::Result<()> {
    // SAFETY: F_GETFD takes no argument; a closed slot is reported as EBADF.
    if let Ok(flags) = syscall!(fcntl(slot.0, libc::F_GETFD)) {
        if flags & libc::FD_CLOEXEC == 0 {
            return Ok(());
        }
    }
    // SAFETY: the path is a NUL-terminated literal.
    let null = syscall!(open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC))?;
    // SAFETY: open returned a fresh descriptor that we now own.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    dup_onto(null.as_fd(), slot)?;
    if null.as_raw_fd() == slot.0 {
        // The slot was free, so /dev/null opened right on it: it stays open
        // there for the program to inherit, not closed with `null`.
        let _ = null.into_raw_fd();
    }
    Ok(())
}

/// Set close-on-exec on every descriptor `>= first` (`close_range` with
/// `CLOSE_RANGE_CLOEXEC`, Linux 5.11): a descriptor some other code opened
/// without the flag must not leak into the executed program. Older kernels
/// answer EINVAL/ENOSYS; the caller may ignore that. Child-side:
/// async-signal-safe.
pub fn mark_cloexec_from(first: FdSlot) -> io::Result<()> {
    // SAFETY: close_range takes two numbers and flags; no pointers. It only
    // sets a flag that exec acts on; nothing is closed here.
    syscall!(syscall(
        libc::SYS_close_range,
        first.0 as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_CLOEXEC
    ))
    .map(|_| ())
}

/// Put the process `pid` (0: the caller) into the process group `pgid`
/// (0: a new group led by `pid`). Async-signal-safe.
pub fn setpgid(pid: i32, pgid: i32) -> io::Result<()> {
    // SAFETY: setpgid takes two ids; no pointers.
    syscall!(setpgid(pid, pgid)).map(|_| ())
}

/// Reset every signal's disposition to the default. `execve` already does
/// that for handled signals, but *ignored* ones stay ignored across exec:
/// without this, a script would inherit the server's `SIGPIPE = SIG_IGN`
/// and, e.g., `yes | head` would spin on EPIPE instead of ending.
///
/// This goes to the kernel directly (`rt_sigaction`), because glibc's
/// `sigaction` refuses signals 32 and 33, which it reserves for itself, and
/// a process can inherit those ignored too (test runners do that). Errors
/// (SIGKILL, SIGSTOP) are skipped. Child-side: async-signal-safe.
pub fn reset_signal_dispositions() {
    // The kernel's `struct sigaction` (handler, flags, restorer, mask) all
    // zero is SIG_DFL with no flags and an empty mask; the buffer is larger
    // than the struct on every architecture, whatever its field order.
    let dfl = [0u64; 8];
    // The kernel's sigset_t size (_NSIG / 8) on x86_64 and aarch64.
    const KERNEL_SIGSET_BYTES: usize = 8;
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `dfl` is readable and at least as large as the kernel's
        // struct sigaction; a null old-action pointer is allowed.
        let _ = syscall!(syscall(
            libc::SYS_rt_sigaction,
            sig,
            dfl.as_ptr(),
            ptr::null_mut::<u64>(),
            KERNEL_SIGSET_BYTES
        ));
    }
}

/// Execute the file open at `slot` (`execveat(slot, "", argv, envp,
/// AT_EMPTY_PATH)`, the syscall behind `fexecve`). Only returns on failure.
///
/// For a `#!` script the kernel hands the interpreter the path
/// `/dev/fd/<slot>`, so the descriptor must survive the exec: it must *not*
/// be close-on-exec (the kernel refuses with ENOENT otherwise). That is why
/// it is named by slot: it is the one [`dup_onto`] just filled for the
/// program, not a descriptor the caller keeps. Child-side:
/// async-signal-safe.
pub fn execveat_fd(slot: FdSlot, argv: &CStrArray, envp: &CStrArray) -> io::Error {
    // SAFETY: the path is an empty NUL-terminated literal; argv and envp
    // are NULL-terminated arrays of pointers to NUL-terminated strings that
    // `CStrArray` keeps alive for the duration of the call. A closed slot is
    // reported as EBADF.
    let res = syscall!(syscall(
        libc::SYS_execveat,
        slot.0,
        c"".as_ptr(),
        argv.as_ptr(),
        envp.as_ptr(),
        libc::AT_EMPTY_PATH
    ));
    match res {
        Err(e) => e,
        // Unreachable (exec does not return on success); no allocation here.
        Ok(_) => io::Error::from_raw_os_error(libc::EINVAL),
    }
}

/// `_exit(2)`: end the process now, without running atexit handlers or
/// flushing stdio buffers that belong to the parent's copy of the heap.
/// Async-signal-safe.
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

// ------------------------------------------------------------ children

/// How a reaped child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl std::fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitStatus::Exited(c) => write!(f, "exit status {c}"),
            WaitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// `kill(2)`: send `sig` to `pid` (negative: to the process group `-pid`).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes a pid and a signal number; no pointers.
    syscall!(kill(pid, sig)).map(|_| ())
}

/// `waitpid(pid, &status, 0)` for one exact pid, retried on EINTR.
pub fn waitpid(pid: i32) -> io::Result<WaitStatus> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is valid writable storage for an int.
        match syscall!(waitpid(pid, &mut status, 0)) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(decode_status(status))
}

/// Reap one child that has exited, if any, without waiting
/// (`waitpid(-1, WNOHANG)`): `None` when no child has exited (or there is
/// no child at all). Only for a process that owns every one of its
/// children: a process whose threads run CGI scripts through [`Child`]
/// must reap by pid instead.
pub fn try_wait_any() -> io::Result<Option<(i32, WaitStatus)>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is valid writable storage for an int.
        match syscall!(waitpid(-1, &mut status, libc::WNOHANG)) {
            Ok(0) => return Ok(None),
            Ok(pid) => return Ok(Some((pid, decode_status(status)))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

fn decode_status(status: libc::c_int) -> WaitStatus {
    if libc::WIFSIGNALED(status) {
        WaitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        WaitStatus::Exited(libc::WEXITSTATUS(status))
    }
}

/// A forked child that leads its own process group, owned until reaped.
///
/// Dropping it without [`Child::reap`] SIGKILLs the whole group and waits
/// for the child, so no early return or `?` can leave a zombie or a stray
/// script behind. Signalling the group by the child's pid is only safe
/// while the child is unreaped: until then the pid (and so the group id)
/// cannot be reused by an unrelated process. Every method here respects
/// that; the guard is consumed by the reap.
pub struct Child {
    pid: i32,
    pidfd: OwnedFd,
    reaped: bool,
}

impl Child {
    /// Take ownership of the freshly forked `pid`, put it in a process group
    /// of its own (the child does the same itself: whichever runs first
    /// wins, and the group exists before either side relies on it), and
    /// open a pidfd for it. On error the child is already killed and reaped.
    pub fn adopt(pid: i32) -> io::Result<Child> {
        // EACCES means the child already exec'd, after its own setpgid.
        let _ = setpgid(pid, pid);
        match pidfd_open(pid) {
            Ok(pidfd) => Ok(Child {
                pid,
                pidfd,
                reaped: false,
            }),
            Err(e) => {
                kill_and_reap(pid);
                Err(e)
            }
        }
    }

    /// The child's pid (also its process group id), for signalling it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A descriptor that polls readable once the child has exited.
    pub fn exit_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// SIGKILL the child's process group (and the child itself, in case it
    /// left the group). Errors (ESRCH: nobody left) are ignored.
    pub fn kill_group(&self) {
        kill_group(self.pid);
    }

    /// Wait for the child (blocking) and release the guard. Even on error
    /// (ECHILD: someone else reaped it) the pid is no longer ours, so the
    /// guard's drop will not signal it.
    pub fn reap(mut self) -> io::Result<WaitStatus> {
        self.reaped = true;
        waitpid(self.pid)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        kill_and_reap(self.pid);
    }
}

/// See [`Child::kill_group`]; for an unreaped child only.
fn kill_group(pid: i32) {
    let _ = kill(-pid, SIGKILL);
    let _ = kill(pid, SIGKILL);
}

/// Kill an unreaped child's group and wait for the child.
fn kill_and_reap(pid: i32) {
    kill_group(pid);
    // ECHILD would mean someone else reaped it (SIGCHLD ignored, or a
    // waitpid(-1) elsewhere): nothing left to do then.
    let _ = waitpid(pid);
}
