//! The state a server shares with processes it forks: `/stats` counters
//! (in `MAP_SHARED` memory) and shutdown (an inherited signal handler, no
//! thread). What the process models (`fork`, `prefork`) rely on.
//!
//! Children run only async-signal-safe code (atomics, `sys` wrappers,
//! `_exit`): the test harness is multi-threaded, and a child of a
//! multi-threaded process must not allocate or take locks. A child reports
//! through its exit code.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use servers::app::stats::Stats;
use servers::sys::process::{self, exit_immediately, fork, Child, Fork, PollFd, WaitStatus};
use servers::sys::signal;

fn spawn(body: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child runs only `body`, which every caller keeps
    // async-signal-safe, and ends in `_exit` without returning.
    match unsafe { fork() }.expect("fork") {
        Fork::Child => exit_immediately(body()),
        Fork::Parent(pid) => Child::adopt(pid).expect("adopt child"),
    }
}

#[test]
fn a_request_counted_in_a_child_shows_in_the_parents_stats_exactly() {
    let stats = Stats::new("test", 3, 3).unwrap();
    stats.shard(0).request_done(200, 1_000);
    let children: Vec<Child> = (1..3)
        .map(|i| {
            let stats = &stats;
            spawn(move || {
                let shard = stats.shard(i);
                for _ in 0..10_000 {
                    shard.conn_opened();
                    shard.request_done(200, 1_000);
                    shard.bytes_sent(10);
                    shard.conn_closed();
                }
                shard.request_done(404, 0);
                0
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.reap().unwrap(), WaitStatus::Exited(0));
    }
    let s = stats.snapshot();
    assert_eq!(s.requests, 1 + 2 * 10_001);
    assert_eq!(s.status, vec![(200, 20_001), (404, 2)]);
    assert_eq!((s.conns_total, s.conns_active), (20_000, 0));
    assert_eq!(s.bytes_sent, 200_000);
    let json = stats.to_json();
    assert!(json.contains("\"total_requests\":20003"), "{json}");
}

/// SIGTERM sent to a forked child reaches it: its handler (inherited; no
/// thread involved) raises the child's flag and interrupts its blocking
/// wait. The child exits 0 when it saw the flag, 2 if it waited 10 s for
/// nothing, 3 if its flag was already up at birth.
#[test]
fn sigterm_reaches_a_forked_child_blocked_in_a_syscall() {
    let shutdown = signal::install().unwrap();
    assert!(!shutdown.requested());
    let (quiet_read, _quiet_write) = process::pipe().unwrap();
    let (ready_read, ready_write) = process::pipe().unwrap();
    let child = spawn(|| {
        if shutdown.after_fork().is_err() || shutdown.requested() {
            return 3;
        }
        let _parked = shutdown.register_blocking_thread();
        let _ = servers::sys::io::write(ready_write.as_fd(), b"r");
        let deadline_ms = 10_000;
        let mut fds = [PollFd::readable(quiet_read.as_fd())];
        // Nothing is ever written to the pipe: only a signal ends the wait.
        match process::poll(&mut fds, deadline_ms) {
            Err(_) if shutdown.requested() => 0,
            _ => 2,
        }
    });
    drop(ready_write);
    let mut byte = [0u8; 1];
    let got = servers::sys::io::read(ready_read.as_fd(), &mut byte);
    assert_eq!(got.unwrap(), 1, "the child did not start");
    // The child is now in (or about to enter) its poll. A signal landing
    // just before it blocks is caught by a kick (SIGUSR1, which only
    // interrupts), as a supervisor repeats its kicks; a second SIGTERM
    // would mean "exit now".
    process::kill(child.pid(), libc::SIGTERM).unwrap();
    let started = Instant::now();
    while !has_exited(&child) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "child never exited"
        );
        std::thread::sleep(Duration::from_millis(50));
        let _ = process::kill(child.pid(), libc::SIGUSR1);
    }
    assert_eq!(
        child.reap().unwrap(),
        WaitStatus::Exited(0),
        "the child did not see SIGTERM"
    );
    assert!(
        !shutdown.requested(),
        "the parent's flag moved with the child's"
    );
}

/// Whether the child has exited (its pidfd is readable), without reaping it.
fn has_exited(child: &Child) -> bool {
    let mut fds = [PollFd::readable(child.exit_fd())];
    matches!(process::poll(&mut fds, 0), Ok(1))
}
