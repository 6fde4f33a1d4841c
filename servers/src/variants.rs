//! The variant catalog: every concurrency model this project builds, in one
//! table that every other list reads.
//!
//! The test suites (which variants to run, which cases a model cannot hold),
//! `harness bench` and `harness profile` (valid names, order, start-up
//! flags, thread counts, the report's order and colours), the Justfile's
//! `serve` check and the README's variant table all come from [`VARIANTS`].
//! A test compares the README's table with this catalog.
//!
//! # Adding a variant
//!
//! A new concurrency model is two things:
//!
//! 1. **One binary**, `servers/src/bin/<name>.rs`, holding the model and
//!    nothing else: how connections are accepted, which driver serves them
//!    ([`crate::drivers::blocking`] for blocking sockets,
//!    [`crate::drivers::readiness`] for an epoll loop, or a driver of its
//!    own that feeds [`crate::conn::Conn`] the same four calls), on which
//!    threads or processes, and where blocking jobs run. It parses
//!    [`crate::config::Options`] (flattened into its own clap struct),
//!    binds with [`crate::config::Listening::bind`], builds the application
//!    in each thread or process that serves with
//!    [`crate::config::Listening::build`], prints nothing before the
//!    `listening on ADDR:PORT` line, answers `/stats` with its own name,
//!    drains on SIGINT/SIGTERM and exits 0. Its module doc comment states
//!    the connection policy (keep-alive, limits, what happens when full).
//! 2. **One entry** in [`VARIANTS`], in architecture order (simplest model
//!    first): the fields of [`Variant`] say everything the harness and the
//!    tests need to know about it. Nothing else lists variants.
//!
//! The conformance, features and CLI suites then run against it, `harness
//! bench` and `harness profile` accept and order it, and the README check
//! asks for its row in the variant table.

/// How many threads (or processes) a variant uses when `--threads` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Single-threaded by design; `--threads` is ignored with a note.
    One,
    /// This many per server CPU (the CPUs of `--cpus`, or all available).
    PerCpu(usize),
}

impl Threads {
    /// The thread count for `cpus` server CPUs, honouring an explicit `--threads`.
    pub fn resolve(self, explicit: Option<usize>, cpus: usize) -> usize {
        match self {
            Threads::One => 1,
            Threads::PerCpu(n) => explicit.unwrap_or(n * cpus.max(1)).max(1),
        }
    }
}

/// How a variant treats a connection after its first response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// One request per connection, then close (`Connection: close`).
    Never,
    /// Keep-alive up to `--keepalive-requests`, and the cap is part of the
    /// model (it is what rotates a bounded set of workers among clients):
    /// benchmarks keep the default cap.
    Capped,
    /// Keep-alive up to `--keepalive-requests`; a connection costs memory,
    /// not a thread, so benchmarks lift the cap as nginx's is lifted.
    Unbounded,
}

/// Behaviours some models cannot provide; the conformance and features
/// suites skip (and name) the cases that test them for such a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Every response closes the connection: no keep-alive, no pipelining.
    NoKeepAlive,
    /// One connection at a time: a stalled client holds up every other.
    OneClientAtATime,
    /// Blocking handlers (`/sleep`, CGI) run on the only thread and freeze
    /// every other client meanwhile.
    HandlersBlockTheLoop,
    /// Sessions live in the memory of one process (see the README), and
    /// successive connections of one client may be served by different
    /// processes: a visit counted in one is unknown to the next.
    SessionsPerProcess,
}

/// Which processes serve a variant's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processes {
    /// The process that accepts them (on its threads).
    One,
    /// A child forked for each connection, which exits when it ends.
    PerConnection,
    /// Long-lived worker processes a master hands connections to.
    Workers,
}

/// One concurrency model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The binary's name, `/stats`' `variant` field, the name in every report.
    pub name: &'static str,
    /// The model in one line (README table, `harness bench --help`).
    pub model: &'static str,
    /// The connection policy in one line (README table).
    pub policy: &'static str,
    /// Threads when `--threads` is not given.
    pub threads: Threads,
    /// What happens to a connection after a response.
    pub keep_alive: KeepAlive,
    /// Where connections are served: per-process checks (descriptors,
    /// resource limits) look at the processes this names.
    pub processes: Processes,
    /// What the model cannot hold (the suites skip those cases, by name).
    pub limits: &'static [Limit],
    /// Flags the variant takes beyond the shared option set, for `--help` checks.
    pub extra_flags: &'static [&'static str],
    /// Colour in every chart (RGB), fixed so a variant looks the same in every report.
    pub colour: (u8, u8, u8),
}

impl Variant {
    /// Whether the model lacks `limit`.
    pub fn cannot(&self, limit: Limit) -> bool {
        self.limits.contains(&limit)
    }

    /// Whether `--threads` changes anything for this model.
    pub fn takes_threads(&self) -> bool {
        self.threads != Threads::One
    }
}

/// Every variant, in architecture order: the order of benches, profiles,
/// plots and the README table.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "blocking",
        model: "one thread: blocking `accept` → read → respond → close",
        policy: "one request per connection (`Connection: close`); a slow client holds up everyone until it finishes, gets 408 after `--header-timeout`, or (reading nothing) is cut off after `--send-timeout`; others wait in the kernel backlog",
        threads: Threads::One,
        keep_alive: KeepAlive::Never,
        processes: Processes::One,
        limits: &[Limit::NoKeepAlive, Limit::OneClientAtATime, Limit::HandlersBlockTheLoop],
        extra_flags: &[],
        colour: (31, 119, 180),
    },
    Variant {
        name: "fork",
        model: "the parent accepts; a child forked per connection serves it (blocking driver) and exits; children reaped through a SIGCHLD signalfd",
        policy: "as `threadpool`, per child: keep-alive until the client closes, `--keepalive-requests`, or `--keepalive-timeout`; at most `--max-children` children (default 256), and clients beyond that wait in the kernel backlog until one exits (as Apache's prefork at `MaxRequestWorkers`); a failed `fork` answers `503` + `Retry-After: 1`",
        threads: Threads::One,
        keep_alive: KeepAlive::Capped,
        processes: Processes::PerConnection,
        limits: &[Limit::SessionsPerProcess],
        extra_flags: &["--max-children"],
        colour: (140, 86, 75),
    },
    Variant {
        name: "threadpool",
        model: "accept thread → bounded queue (mutex + condvar) → N blocking workers (default 4 per CPU)",
        policy: "a worker owns a connection, keep-alive included, until the client closes, `--keepalive-requests` is reached, or it idles past `--keepalive-timeout` (a client that stops reading is cut off after `--send-timeout`); more clients than workers wait in the queue (`--queue`), and when it is full new clients get `503` + `Retry-After: 1`",
        threads: Threads::PerCpu(4),
        keep_alive: KeepAlive::Capped,
        processes: Processes::One,
        limits: &[],
        extra_flags: &["--queue"],
        colour: (255, 127, 14),
    },
    Variant {
        name: "prefork",
        model: "a master accepts and passes each descriptor over a socketpair (`SCM_RIGHTS`) to the least-loaded of `--workers` processes (default one per CPU), each serving with a pool of blocking threads (`--threads` in all, default 4 per CPU)",
        policy: "as `threadpool`, per worker thread; a connection goes to the least-loaded worker with a free thread, and when every thread is busy the master stops accepting until one is free (backpressure: clients wait in the kernel backlog, nobody gets a 503). A dead worker is respawned at once; SIGHUP starts new workers and lets the old ones finish their connections",
        threads: Threads::PerCpu(4),
        keep_alive: KeepAlive::Capped,
        processes: Processes::Workers,
        limits: &[Limit::SessionsPerProcess],
        extra_flags: &["--workers"],
        colour: (227, 119, 194),
    },
    Variant {
        name: "epoll",
        model: "one thread, non-blocking sockets, edge-triggered epoll, `sendfile` for files, idle/header timers by a periodic sweep",
        policy: "keep-alive up to `--keepalive-requests`; any number of idle or slow clients (they cost memory, not a thread). Its honest limit: one core, and a handler that blocks freezes everyone",
        threads: Threads::One,
        keep_alive: KeepAlive::Unbounded,
        processes: Processes::One,
        limits: &[Limit::HandlersBlockTheLoop],
        extra_flags: &[],
        colour: (44, 160, 44),
    },
    Variant {
        name: "epoll-threads",
        model: "one epoll loop per thread (default one per CPU), each with its own `SO_REUSEPORT` listener; blocking handlers on a worker pool",
        policy: "as `epoll`, per loop; blocking handlers (`/sleep`, CGI, upload fsyncs) go to `--workers` threads through a bounded queue (`--work-queue`, full → `503`) and come back to their loop through an eventfd",
        threads: Threads::PerCpu(1),
        keep_alive: KeepAlive::Unbounded,
        processes: Processes::One,
        limits: &[],
        extra_flags: &["--workers", "--storage-workers", "--work-queue"],
        colour: (214, 39, 40),
    },
    Variant {
        name: "uring",
        model: "one io_uring per thread (default one per CPU), each with its own `SO_REUSEPORT` listener: multishot accept, multishot receive into provided buffers, sends batched per loop iteration, one `io_uring_enter` per iteration",
        policy: "as `epoll-threads`: keep-alive up to `--keepalive-requests`, any number of idle or slow clients; blocking handlers on `--workers` threads (`--work-queue`, full → `503`), their completions read by the ring. Where io_uring is refused (`kernel.io_uring_disabled`, seccomp) it exits with one line saying so",
        threads: Threads::PerCpu(1),
        keep_alive: KeepAlive::Unbounded,
        processes: Processes::One,
        limits: &[],
        extra_flags: &["--workers", "--storage-workers", "--work-queue"],
        colour: (148, 103, 189),
    },
];

/// Exit status of a variant that cannot run on this machine because the
/// kernel refuses the interface it is built on (io_uring disabled by
/// sysctl or seccomp): it prints one line saying why, before listening.
/// `EX_UNAVAILABLE` from sysexits.h. `harness bench` reports such a
/// variant as skipped, with that line, and goes on.
pub const EXIT_UNAVAILABLE: i32 = 69;

/// The catalog entry for `name`.
pub fn find(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}

/// Every variant's name, in architecture order.
pub fn names() -> impl Iterator<Item = &'static str> {
    VARIANTS.iter().map(|v| v.name)
}

/// Architecture rank of `name` (its index in [`VARIANTS`]), `None` when unknown.
pub fn rank(name: &str) -> Option<usize> {
    VARIANTS.iter().position(|v| v.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_binaries_exist() {
        let mut seen = std::collections::HashSet::new();
        for v in VARIANTS {
            assert!(seen.insert(v.name), "{} listed twice", v.name);
            let bin = format!("{}/src/bin/{}.rs", env!("CARGO_MANIFEST_DIR"), v.name);
            assert!(std::path::Path::new(&bin).is_file(), "{bin} missing");
        }
    }

    #[test]
    fn every_binary_is_in_the_catalog() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert!(
                find(&stem).is_some(),
                "src/bin/{stem}.rs has no catalog entry"
            );
        }
    }

    #[test]
    fn thread_defaults() {
        assert_eq!(Threads::One.resolve(Some(8), 2), 1);
        assert_eq!(Threads::PerCpu(4).resolve(None, 2), 8);
        assert_eq!(Threads::PerCpu(1).resolve(Some(3), 2), 3);
        assert_eq!(Threads::PerCpu(1).resolve(Some(0), 2), 1);
    }
}
