//! Opening files confined to a directory.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem;
use std::os::fd::{FromRawFd, RawFd};

/// Open `path` relative to the directory `dir`, read-only, refusing any
/// resolution that leaves `dir`: `..` above it, an absolute symlink, or a
/// symlink pointing outside (the kernel answers `EXDEV`). `openat2` with
/// `RESOLVE_BENEATH` checks this atomically during lookup, so a symlink
/// swapped in between a check and the open cannot escape (no TOCTOU race).
///
/// `O_NONBLOCK` keeps a FIFO planted in the docroot from blocking the
/// opener; on regular files it has no effect.
pub fn open_beneath(dir: RawFd, path: &CStr) -> io::Result<File> {
    // SAFETY: open_how is plain data; zero means "no flags" for every field.
    let mut how: libc::open_how = unsafe { mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `path` is NUL-terminated, `how` is valid for the call and its
    // size is passed exactly as openat2 requires.
    let fd = syscall!(syscall(
        libc::SYS_openat2,
        dir,
        path.as_ptr(),
        &how as *const libc::open_how,
        mem::size_of::<libc::open_how>()
    ))?;
    // SAFETY: openat2 returned a fresh descriptor that we now own.
    Ok(unsafe { File::from_raw_fd(fd as RawFd) })
}
