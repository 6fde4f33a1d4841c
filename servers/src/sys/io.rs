//! Reading and writing file descriptors, and sendfile.

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `read(2)` into `buf`; `Ok(0)` is end of stream.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `fd` is open for the borrow; `buf` is a valid writable region
    // of `buf.len()` bytes.
    let n = syscall!(read(
        fd.as_raw_fd(),
        buf.as_mut_ptr() as *mut libc::c_void,
        buf.len()
    ))?;
    Ok(n as usize)
}

/// `send(2)` with MSG_NOSIGNAL: a peer that went away yields `EPIPE` instead
/// of killing the process with SIGPIPE. `more` sets MSG_MORE so a header
/// followed by a sendfile body leaves in as few segments as possible.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: `fd` is open for the borrow; `buf` is a valid readable region
    // of `buf.len()` bytes.
    let n = syscall!(send(
        fd.as_raw_fd(),
        buf.as_ptr() as *const libc::c_void,
        buf.len(),
        flags
    ))?;
    Ok(n as usize)
}

/// `write(2)`, for pipes and files (sockets use [`send`]).
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `fd` is open for the borrow; `buf` is a valid readable region
    // of `buf.len()` bytes.
    let n = syscall!(write(
        fd.as_raw_fd(),
        buf.as_ptr() as *const libc::c_void,
        buf.len()
    ))?;
    Ok(n as usize)
}

/// `writev(2)`: several buffers in one syscall.
pub fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let cnt = bufs.len().min(1024) as libc::c_int;
    // SAFETY: `fd` is open for the borrow; IoSlice is guaranteed
    // ABI-compatible with `struct iovec`, and each slice is valid for reads
    // for its length.
    let n = syscall!(writev(
        fd.as_raw_fd(),
        bufs.as_ptr() as *const libc::iovec,
        cnt
    ))?;
    Ok(n as usize)
}

/// `sendfile(2)` from `file` at `*offset` to the socket `out`; the kernel
/// advances `*offset`. The bytes never visit user space.
pub fn sendfile(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut i64,
    count: usize,
) -> io::Result<usize> {
    // SAFETY: both descriptors are open for their borrows; `offset` is a
    // valid, exclusive pointer to an off_t for the call.
    let n = syscall!(sendfile(
        out.as_raw_fd(),
        file.as_raw_fd(),
        offset as *mut i64,
        count
    ))?;
    Ok(n as usize)
}

/// A counter that can wake an epoll loop (`eventfd(2)`), non-blocking.
pub fn eventfd() -> io::Result<OwnedFd> {
    let fd = syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
    // SAFETY: eventfd returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Add one to an eventfd (wakes whoever polls it).
pub fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    write(fd, &one.to_ne_bytes()).map(|_| ())
}
