//! TCP listening and accepted sockets.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Create, bind and listen on an IPv4 TCP socket.
///
/// `SO_REUSEADDR` lets a restarted server bind while old connections sit in
/// TIME_WAIT; `reuse_port` lets several listeners share one port so the kernel
/// spreads connections over them (one listener per event loop).
pub fn listen_tcp(addr: SocketAddrV4, backlog: i32, reuse_port: bool) -> io::Result<OwnedFd> {
    let fd = syscall!(socket(
        libc::AF_INET,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        0
    ))?;
    // SAFETY: `socket` just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuse_port {
        set_int_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let sa = to_sockaddr(addr);
    syscall!(bind(
        fd.as_raw_fd(),
        &sa as *const libc::sockaddr_in as *const libc::sockaddr,
        mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
    ))?;
    syscall!(listen(fd.as_raw_fd(), backlog))?;
    Ok(fd)
}

/// The address a socket is bound to (to learn the port after binding port 0).
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddrV4> {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // `fd` is open for the borrow; `sa` and `len` are valid for writes.
    syscall!(getsockname(
        fd.as_raw_fd(),
        &mut sa as *mut libc::sockaddr_in as *mut libc::sockaddr,
        &mut len
    ))?;
    Ok(from_sockaddr(&sa))
}

/// The address of the peer of a connected socket (`getpeername(2)`): for a
/// socket accepted by a request that reports no address (io_uring's
/// multishot accept).
pub fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddrV4> {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // `fd` is open for the borrow; `sa` and `len` are valid for writes.
    syscall!(getpeername(
        fd.as_raw_fd(),
        &mut sa as *mut libc::sockaddr_in as *mut libc::sockaddr,
        &mut len
    ))?;
    Ok(from_sockaddr(&sa))
}

/// Accept one connection. `nonblocking` sets `O_NONBLOCK` on the new socket
/// in the same syscall (accept4), and it is always close-on-exec.
pub fn accept(listener: BorrowedFd<'_>, nonblocking: bool) -> io::Result<(OwnedFd, SocketAddrV4)> {
    // SAFETY: as above, zeroed sockaddr_in is valid and the kernel fills it.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // `listener` is open for the borrow; `sa` and `len` are valid for writes.
    let fd = syscall!(accept4(
        listener.as_raw_fd(),
        &mut sa as *mut libc::sockaddr_in as *mut libc::sockaddr,
        &mut len,
        flags
    ))?;
    // SAFETY: accept4 returned a fresh descriptor that we now own.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, from_sockaddr(&sa)))
}

/// Set an integer socket option (private: levels and names are libc's, so
/// each option the servers use gets a wrapper of its own).
fn set_int_opt(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    // `fd` is open for the borrow; `value` is an int valid for reads.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        level,
        name,
        &value as *const i32 as *const libc::c_void,
        mem::size_of::<i32>() as libc::socklen_t
    ))?;
    Ok(())
}

/// Disable Nagle: responses are written whole, so waiting to coalesce only adds latency.
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Set the socket's send buffer (`SO_SNDBUF`; the kernel doubles the value
/// for its bookkeeping). On a Unix socket this bounds how many messages
/// may wait unread at the peer before a send blocks (or fails with
/// `WouldBlock` on a non-blocking socket).
pub fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    set_int_opt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        bytes.min(i32::MAX as usize) as i32,
    )
}

/// Bound how long a blocking read may wait (SO_RCVTIMEO); the read then
/// fails with `WouldBlock`. This is how the blocking models time out idle
/// and slow clients without a timer thread.
pub fn set_read_timeout(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<()> {
    set_timeout(fd, libc::SO_RCVTIMEO, timeout)
}

/// Bound how long a blocking send may make no progress (SO_SNDTIMEO); it
/// then fails with `WouldBlock`. This is how the blocking models cut off a
/// client that stops reading (nginx's `send_timeout` has the same meaning:
/// the time between two successive writes, not for the whole response).
pub fn set_send_timeout(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<()> {
    set_timeout(fd, libc::SO_SNDTIMEO, timeout)
}

fn set_timeout(fd: BorrowedFd<'_>, which: i32, timeout: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `fd` is open for the borrow; `tv` is a timeval valid for reads.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        which,
        &tv as *const libc::timeval as *const libc::c_void,
        mem::size_of::<libc::timeval>() as libc::socklen_t
    ))?;
    Ok(())
}

/// Whether the peer has sent bytes not yet read (a one-byte
/// `MSG_PEEK | MSG_DONTWAIT` receive; nothing is consumed, nothing blocks).
pub fn has_pending_input(fd: BorrowedFd<'_>) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is open for the borrow; `byte` is one writable byte and
    // the length passed is 1.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

/// `shutdown(fd, SHUT_WR)`: send FIN after what is queued, keep reading.
/// A server half-closes this way before lingering on a client it is closing.
pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // `fd` is open for the borrow; shutdown takes no pointers.
    syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_WR))?;
    Ok(())
}

fn to_sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    )
}

/// Make a descriptor non-blocking (FIONBIO: one ioctl, no flag read-back).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: `fd` is open for the borrow; FIONBIO reads one int through the
    // valid pointer `on`.
    syscall!(ioctl(
        fd.as_raw_fd(),
        libc::FIONBIO,
        &mut on as *mut libc::c_int
    ))?;
    Ok(())
}

/// Start a non-blocking TCP connect to `addr`. The connection is complete
/// when the socket becomes writable; [`take_error`] then says whether it
/// succeeded. `Ok` is returned for both immediate success and EINPROGRESS.
pub fn connect_nonblocking(addr: SocketAddrV4) -> io::Result<OwnedFd> {
    let fd = syscall!(socket(
        libc::AF_INET,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        0
    ))?;
    // SAFETY: `socket` just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = to_sockaddr(addr);
    match syscall!(connect(
        fd.as_raw_fd(),
        &sa as *const libc::sockaddr_in as *const libc::sockaddr,
        mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
    )) {
        Ok(_) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

/// The pending error of a socket (SO_ERROR), e.g. the outcome of a
/// non-blocking connect: `Ok(None)` when there is none.
pub fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // `fd` is open for the borrow; `err` and `len` are valid for writes.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_ERROR,
        &mut err as *mut libc::c_int as *mut libc::c_void,
        &mut len
    ))?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}
