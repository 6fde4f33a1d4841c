//! The buckets a profile's samples fall into (DESIGN §7): part of the
//! result schema because `buckets.csv`, the profile section of summary.md
//! and the bottleneck-migration chart all name them, while only
//! [`crate::profile::classify`] decides which sample goes where.

use serde::{Deserialize, Serialize};

/// Where a sample's CPU time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Bucket {
    /// The server's own code (Rust std included: it is linked into the app).
    App,
    /// libc (syscall wrappers, mem*/str*), the allocators, the vDSO.
    LibcAlloc,
    /// Kernel copies and fills, user copies and their hardening checks.
    Memcpy,
    /// Context switches, wake-ups, run-queue bookkeeping.
    Scheduler,
    /// Futexes, spinning on kernel locks, mutexes and semaphores.
    FutexLocks,
    /// The event interface: epoll_wait/epoll_ctl and readiness callbacks,
    /// or io_uring's own submission and completion work (`uring`).
    Epoll,
    /// The file layer: read/write/writev on a socket fd, fd tables, socket
    /// files, inodes and dentries created and freed, sendfile and splice.
    VfsSendfile,
    /// Sockets, TCP, IP, the loopback device, skb management, softirq RX.
    TcpIp,
    /// What a connection brings along wherever it is spent: accept, the
    /// socket's file, inode and dentry made and freed, its options set, the
    /// close (FIN and the peer's loopback receive of it included), time-wait
    /// and the socket's destruction; the server's half of the handshake.
    Connection,
    /// Kernel entry and exit around every syscall.
    SyscallEntry,
    /// Process creation and end (clone, exec, exit, wait, whatever runs
    /// under them) and address-space work (page faults, mmap, munmap): for
    /// a process per connection, the faults are its fresh children's.
    Process,
    /// Kernel samples no rule names (see the module docs).
    OtherKernel,
}

impl Bucket {
    /// Every bucket in stacking order: user space first (the bottom of a
    /// bar), then the kernel, the catch-all last. Connection sits on TCP/IP
    /// (most of a connection's cost is TCP work), process/mm near the top
    /// with the other costs a model can shed.
    pub const ALL: [Bucket; 12] = [
        Bucket::App,
        Bucket::LibcAlloc,
        Bucket::Memcpy,
        Bucket::Scheduler,
        Bucket::FutexLocks,
        Bucket::Epoll,
        Bucket::VfsSendfile,
        Bucket::TcpIp,
        Bucket::Connection,
        Bucket::SyscallEntry,
        Bucket::Process,
        Bucket::OtherKernel,
    ];

    /// The name used in CSV files, tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::App => "app",
            Bucket::LibcAlloc => "libc/alloc",
            Bucket::Memcpy => "memcpy",
            Bucket::Scheduler => "scheduler",
            Bucket::FutexLocks => "futex/locks",
            Bucket::Epoll => "epoll",
            Bucket::VfsSendfile => "VFS/sendfile",
            Bucket::TcpIp => "TCP/IP",
            Bucket::Connection => "conn. set-up/tear-down",
            Bucket::SyscallEntry => "syscall entry/exit",
            Bucket::Process => "process/mm",
            Bucket::OtherKernel => "other kernel",
        }
    }

    /// The bucket named `name` in a CSV file, if any. `process` is
    /// process/mm's name in profiles written before the connection bucket,
    /// so `--replot` still draws them whole.
    pub fn from_name(name: &str) -> Option<Bucket> {
        match name {
            "process" => Some(Bucket::Process),
            _ => Bucket::ALL.into_iter().find(|b| b.name() == name),
        }
    }

    /// Whether the bucket's samples were taken in the kernel.
    pub fn is_kernel(self) -> bool {
        !matches!(self, Bucket::App | Bucket::LibcAlloc)
    }

    /// `user` or `kernel`.
    pub fn space(self) -> &'static str {
        if self.is_kernel() {
            "kernel"
        } else {
            "user"
        }
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_older_profiles_still_read() {
        for b in Bucket::ALL {
            assert_eq!(Bucket::from_name(b.name()), Some(b));
        }
        assert_eq!(Bucket::from_name("process"), Some(Bucket::Process));
        assert_eq!(Bucket::from_name("connections"), None);
    }

    #[test]
    fn names_fit_a_chart_legend() {
        // The legend column is 210 px wide at 15 px text (report::plot).
        for b in Bucket::ALL {
            assert!(b.name().len() <= 22, "{} is too long", b.name());
        }
    }
}
