//! Thin safe wrappers over the Linux syscalls the servers use.
//!
//! Every wrapper turns the C convention (`-1` and `errno`) into
//! `io::Result` through one macro, `syscall!`, instead of by hand at each
//! call site. Nothing above this module calls libc directly.

/// Call a libc function and turn `-1` into `Err(io::Error::last_os_error())`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: each caller documents why the arguments are valid for this
        // syscall; the macro itself only inspects the return value.
        #[allow(unused_unsafe)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub mod affinity;
pub mod epoll;
pub mod fs;
pub mod io;
pub mod process;
pub mod random;
pub mod shm;
pub mod signal;
pub mod socket;
pub mod time;
pub mod unix;
pub mod uring;
