//! Files and directories: opening confined to a directory, and the `*at`
//! calls (create, rename, unlink, fsync, lock) that durable stores need.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Open `path` relative to the directory `dir`, read-only, refusing any
/// resolution that leaves `dir`: `..` above it, an absolute symlink, or a
/// symlink pointing outside (the kernel answers `EXDEV`). `openat2` with
/// `RESOLVE_BENEATH` checks this atomically during lookup, so a symlink
/// swapped in between a check and the open cannot escape (no TOCTOU race).
///
/// `O_NONBLOCK` keeps a FIFO planted in the docroot from blocking the
/// opener; on regular files it has no effect.
pub fn open_beneath(dir: BorrowedFd<'_>, path: &CStr) -> io::Result<File> {
    // SAFETY: open_how is plain data; zero means "no flags" for every field.
    let mut how: libc::open_how = unsafe { mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `dir` is open for the borrow, `path` is NUL-terminated, `how`
    // is valid for the call and its size is passed exactly as openat2
    // requires.
    let fd = syscall!(syscall(
        libc::SYS_openat2,
        dir.as_raw_fd(),
        path.as_ptr(),
        &how as *const libc::open_how,
        mem::size_of::<libc::open_how>()
    ))?;
    // SAFETY: openat2 returned a fresh descriptor that we now own.
    Ok(unsafe { File::from_raw_fd(fd as RawFd) })
}

/// Open the directory at `path` (`O_DIRECTORY`), to anchor later `*at`
/// calls: operations relative to a held descriptor keep working on the same
/// directory even if its path is renamed or replaced afterwards.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is NUL-terminated and outlives the call.
    let fd = syscall!(open(
        c.as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC
    ))?;
    // SAFETY: open returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Create `name` in `dir` for writing, failing with `EEXIST` if anything
/// (a file, a dangling symlink) already has that name: `O_CREAT|O_EXCL`
/// never follows a symlink, so the caller owns what it created.
pub fn create_excl_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<File> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: `dir` is open for the borrow and `name` is NUL-terminated;
    // openat with O_CREAT reads the mode as its variadic third argument,
    // passed as the C `unsigned int`.
    let fd = syscall!(openat(
        dir.as_raw_fd(),
        name.as_ptr(),
        flags,
        mode as libc::c_uint
    ))?;
    // SAFETY: openat returned a fresh descriptor that we now own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// A new file in the directory `dir` with no name (`O_TMPFILE`), for
/// reading and writing: nothing is left on disk however the process ends,
/// since the file has no link to remove. Fails with `EOPNOTSUPP` on a file
/// system without `O_TMPFILE` support.
pub fn anonymous_file(dir: &Path) -> io::Result<File> {
    let c = cstring(dir.as_os_str().as_bytes())?;
    // SAFETY: `c` is NUL-terminated and outlives the call; with O_TMPFILE
    // open reads the mode as its variadic third argument.
    let fd = syscall!(open(
        c.as_ptr(),
        libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
        0o600 as libc::c_uint
    ))?;
    // SAFETY: open returned a fresh descriptor that we now own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Open (creating if needed) `name` in `dir` for appending: every write
/// lands at the end of the file even if another process appends too.
pub fn open_append_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<File> {
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: as in `create_excl_at`.
    let fd = syscall!(openat(
        dir.as_raw_fd(),
        name.as_ptr(),
        flags,
        mode as libc::c_uint
    ))?;
    // SAFETY: openat returned a fresh descriptor that we now own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `fsync(2)`: on a file, its data and metadata reach the disk; on a
/// directory, the entries created, renamed or removed in it do.
pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fsync takes no pointers, and `fd` is open for the borrow.
    syscall!(fsync(fd.as_raw_fd()))?;
    Ok(())
}

/// Rename `from` to `to`, both in `dir`. With `no_replace` an existing `to`
/// is an `EEXIST` error instead of being replaced (`RENAME_NOREPLACE`); a
/// file system that cannot do that answers `EINVAL`.
pub fn rename_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr, no_replace: bool) -> io::Result<()> {
    let flags = if no_replace {
        libc::RENAME_NOREPLACE
    } else {
        0
    };
    let dir = dir.as_raw_fd();
    // SAFETY: `dir` is open for the borrow; both names are NUL-terminated
    // and outlive the call.
    syscall!(renameat2(dir, from.as_ptr(), dir, to.as_ptr(), flags))?;
    Ok(())
}

/// Remove the (non-directory) entry `name` from `dir`.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: `dir` is open for the borrow; `name` is NUL-terminated and
    // outlives the call.
    syscall!(unlinkat(dir.as_raw_fd(), name.as_ptr(), 0))?;
    Ok(())
}

/// An advisory `flock(2)` lock mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// `LOCK_SH`: several holders at once (instances sharing a store).
    Shared,
    /// `LOCK_EX`: one holder (sole use, or rotating a shared file).
    Exclusive,
}

/// Take (or convert to) `lock` on `fd`, waiting while another open file
/// description holds a conflicting one.
pub fn flock(fd: BorrowedFd<'_>, lock: Lock) -> io::Result<()> {
    loop {
        // SAFETY: flock takes no pointers, and `fd` is open for the borrow.
        match syscall!(flock(fd.as_raw_fd(), lock_op(lock))) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn lock_op(lock: Lock) -> libc::c_int {
    match lock {
        Lock::Shared => libc::LOCK_SH,
        Lock::Exclusive => libc::LOCK_EX,
    }
}

/// Take (or convert to) `lock` on `fd` without waiting: `Ok(false)` if
/// another open file description holds a conflicting lock. The lock belongs
/// to the open file description, so it is shared with `fork`ed children and
/// released when the last descriptor for it closes, even on a crash.
pub fn try_flock(fd: BorrowedFd<'_>, lock: Lock) -> io::Result<bool> {
    loop {
        // SAFETY: flock takes no pointers, and `fd` is open for the borrow.
        match syscall!(flock(fd.as_raw_fd(), lock_op(lock) | libc::LOCK_NB)) {
            Ok(_) => return Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `name` as a C string; an interior NUL can name no file (`InvalidInput`).
pub fn cstring(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in file name"))
}
