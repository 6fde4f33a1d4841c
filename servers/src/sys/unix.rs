//! Unix-domain socket pairs and passing descriptors over them.
//!
//! A pre-forking server's master accepts connections and hands each one to
//! a worker process. A descriptor number means nothing in another process;
//! the kernel has to install the open file in the receiver's table, which
//! is what an `SCM_RIGHTS` control message asks it to do. These wrappers
//! hide the `cmsghdr` arithmetic: the control buffer is sized with
//! `CMSG_SPACE` and aligned for `cmsghdr`, received descriptors arrive
//! close-on-exec (`MSG_CMSG_CLOEXEC`, so no CGI script inherits a client's
//! socket) and owned, and anything unexpected in the control data is an
//! error after every received descriptor has been closed, never a leak.
//!
//! [`send_fd`] and [`recv_fd`] use only the stack and one syscall each (plus
//! `EINTR` retries) and build errors without allocating, so they are
//! async-signal-safe: a child forked from a multi-threaded process may call
//! them.

use std::io::{self, ErrorKind};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

/// What a [`socketpair`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A byte stream: message boundaries are not kept, and a receive may
    /// return the bytes of several sends (it stops after the first one that
    /// carried a descriptor).
    Stream,
    /// Reliable, ordered messages with boundaries kept: one [`recv_fd`] per
    /// [`send_fd`], which is what a master handing out connections wants.
    SeqPacket,
}

/// A connected pair of Unix-domain sockets, both close-on-exec (an end
/// leaking into an executed program would keep the other end from ever
/// seeing end of stream).
pub fn socketpair(kind: SocketKind) -> io::Result<(OwnedFd, OwnedFd)> {
    let ty = match kind {
        SocketKind::Stream => libc::SOCK_STREAM,
        SocketKind::SeqPacket => libc::SOCK_SEQPACKET,
    };
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is valid writable storage for the two descriptors.
    syscall!(socketpair(
        libc::AF_UNIX,
        ty | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    // SAFETY: socketpair succeeded, so both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The most descriptors one message may carry here. [`send_fd`] sends one;
/// the room for more lets tests send two and check that the receiver
/// rejects (and closes) them.
const MAX_FDS: usize = 4;

/// Bytes in a descriptor as the kernel passes it.
const FD_BYTES: usize = mem::size_of::<libc::c_int>();

/// A control-message buffer aligned for `cmsghdr` (at most 8 on every
/// Linux target), large enough for [`MAX_FDS`] descriptors.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

const _: () = assert!(mem::align_of::<libc::cmsghdr>() <= 8);
// SAFETY: CMSG_SPACE is arithmetic on its argument, no memory access.
const _: () = assert!(unsafe { libc::CMSG_SPACE((MAX_FDS * FD_BYTES) as u32) } as usize <= 64);

/// `CMSG_SPACE` for `n` descriptors: header, data and padding.
fn cmsg_space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument, no memory access.
    unsafe { libc::CMSG_SPACE((n * FD_BYTES) as u32) as usize }
}

/// Send `fd` over the Unix socket `sock` together with `payload`
/// (`sendmsg` with an `SCM_RIGHTS` control message, `MSG_NOSIGNAL` so a
/// vanished peer yields `EPIPE` rather than SIGPIPE). Returns the payload
/// bytes sent; on a stream socket a large payload may go out in part (the
/// descriptor travels with the first part; send the rest without one).
///
/// `payload` must not be empty: a stream socket silently drops the
/// descriptor of a zero-byte send, so that is refused (`InvalidInput`).
/// The receiver gets its own descriptor for the same open file; `fd` stays
/// open here until the caller drops it. Async-signal-safe.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, payload: &[u8]) -> io::Result<usize> {
    send_fds(sock, &[fd], payload)
}

fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>], payload: &[u8]) -> io::Result<usize> {
    if payload.is_empty() || fds.is_empty() || fds.len() > MAX_FDS {
        return Err(ErrorKind::InvalidInput.into());
    }
    let mut control = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is "no name, no iovecs, no
    // control data", filled in below.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(fds.len()) as _;
    // SAFETY: `msg` points at `control`, which is aligned for cmsghdr and
    // holds CMSG_SPACE(len) bytes, so CMSG_FIRSTHDR is non-null and the
    // header and the `fds.len()` ints after CMSG_DATA are in bounds.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN((fds.len() * FD_BYTES) as u32) as _;
        let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
        for (i, fd) in fds.iter().enumerate() {
            ptr::write_unaligned(data.add(i), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `msg` and everything it points to (the iovec over
        // `payload`, the control buffer) are valid for the call.
        match syscall!(sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Receive a message into `buf` from the Unix socket `sock`, and the
/// descriptor sent with it, if any (`recvmsg` with `MSG_CMSG_CLOEXEC`).
/// `Ok((0, None))` is end of stream.
///
/// The control buffer has room for exactly one descriptor. A message that
/// carried more (`MSG_CTRUNC`: the kernel discarded what did not fit), or
/// one longer than `buf` on a [`SocketKind::SeqPacket`] socket (`MSG_TRUNC`:
/// the rest is lost), is an `EMSGSIZE` error, and a descriptor that did
/// arrive is closed first. Async-signal-safe.
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    loop {
        match recv_fd_once(sock, buf, Wait::Block) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Whether [`recv_fd_once`] waits for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until a message (or end of stream) arrives, or a signal.
    Block,
    /// Return `WouldBlock` at once when nothing is queued (`MSG_DONTWAIT`).
    No,
}

/// As [`recv_fd`], but one `recvmsg`: a signal that interrupts the wait is
/// returned as `Interrupted` (so a thread blocked here can look at a
/// shutdown flag), and with [`Wait::No`] an empty queue is `WouldBlock`
/// (so a draining thread takes what is queued and no more).
/// Async-signal-safe.
pub fn recv_fd_once(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    wait: Wait,
) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut control = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is "no name, no iovecs, no
    // control data", filled in below.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(1) as _;
    let flags = match wait {
        Wait::Block => libc::MSG_CMSG_CLOEXEC,
        Wait::No => libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
    };
    // SAFETY: `msg` points at the iovec over `buf` and at `control`, both
    // writable for the lengths given, for the duration of the call.
    let n = syscall!(recvmsg(sock.as_raw_fd(), &mut msg, flags))? as usize;
    // Take ownership of every descriptor first, so each is closed on any
    // error path below.
    let (received, extra) = take_fds(&msg);
    if extra || msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0 {
        drop(received);
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok((n, received))
}

/// The descriptors in `msg`'s `SCM_RIGHTS` messages, owned: the first, and
/// whether there were more (closed here).
fn take_fds(msg: &libc::msghdr) -> (Option<OwnedFd>, bool) {
    let mut first = None;
    let mut extra = false;
    // SAFETY: `msg` was filled by a successful recvmsg: msg_control points
    // at our aligned buffer and msg_controllen is what the kernel wrote
    // there, so the CMSG_* walk stays inside it. Each SCM_RIGHTS entry holds
    // (cmsg_len - CMSG_LEN(0)) / FD_BYTES descriptors the kernel installed
    // for this process, which nothing else owns yet.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                for i in 0..bytes / FD_BYTES {
                    let fd = OwnedFd::from_raw_fd(ptr::read_unaligned(data.add(i)));
                    if first.is_none() {
                        first = Some(fd);
                    } else {
                        extra = true;
                        drop(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (first, extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::io::{read, write};
    use crate::sys::process::pipe;
    use std::os::fd::AsFd;

    #[test]
    fn a_pipe_end_crosses_a_socketpair() {
        for kind in [SocketKind::Stream, SocketKind::SeqPacket] {
            let (a, b) = socketpair(kind).unwrap();
            let (r, w) = pipe().unwrap();
            assert_eq!(send_fd(a.as_fd(), w.as_fd(), b"hi").unwrap(), 2);
            drop(w);
            let mut buf = [0u8; 16];
            let (n, fd) = recv_fd(b.as_fd(), &mut buf).unwrap();
            assert_eq!(&buf[..n], b"hi");
            let fd = fd.expect("a descriptor");
            assert_ne!(fd.as_raw_fd(), r.as_raw_fd());
            write(fd.as_fd(), b"through").unwrap();
            drop(fd);
            let mut got = [0u8; 16];
            assert_eq!(read(r.as_fd(), &mut got).unwrap(), 7);
            assert_eq!(&got[..7], b"through");
            // The received copy was the last write end: end of stream.
            assert_eq!(read(r.as_fd(), &mut got).unwrap(), 0);
        }
    }

    #[test]
    fn received_descriptors_are_close_on_exec() {
        let (a, b) = socketpair(SocketKind::SeqPacket).unwrap();
        let (_r, w) = pipe().unwrap();
        send_fd(a.as_fd(), w.as_fd(), b"x").unwrap();
        let (_, fd) = recv_fd(b.as_fd(), &mut [0u8; 4]).unwrap();
        let fd = fd.unwrap();
        // SAFETY: F_GETFD takes no argument and reads no memory.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn plain_messages_and_end_of_stream() {
        let (a, b) = socketpair(SocketKind::SeqPacket).unwrap();
        crate::sys::io::send(a.as_fd(), b"plain", false).unwrap();
        let mut buf = [0u8; 8];
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fd.is_none()), (&b"plain"[..], true));
        drop(a);
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (0, true));
    }

    #[test]
    fn an_empty_payload_is_refused() {
        let (a, _b) = socketpair(SocketKind::Stream).unwrap();
        let err = send_fd(a.as_fd(), a.as_fd(), b"").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn truncated_control_data_is_an_error_and_leaks_nothing() {
        let (a, b) = socketpair(SocketKind::SeqPacket).unwrap();
        let (r, w) = pipe().unwrap();
        send_fds(a.as_fd(), &[w.as_fd(), w.as_fd()], b"two").unwrap();
        drop(w);
        let err = recv_fd(b.as_fd(), &mut [0u8; 8]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE));
        // Every copy of the write end is gone: the pipe reads end of stream.
        assert_eq!(read(r.as_fd(), &mut [0u8; 4]).unwrap(), 0);
    }

    #[test]
    fn a_message_longer_than_the_buffer_is_an_error() {
        let (a, b) = socketpair(SocketKind::SeqPacket).unwrap();
        let (r, w) = pipe().unwrap();
        send_fd(a.as_fd(), w.as_fd(), b"longer than four").unwrap();
        drop(w);
        let err = recv_fd(b.as_fd(), &mut [0u8; 4]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE));
        assert_eq!(read(r.as_fd(), &mut [0u8; 4]).unwrap(), 0);
    }
}
