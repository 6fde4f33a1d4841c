//! The access log written by several processes at once, as a pre-forking
//! server does: forked children logging through one `AccessLog` opened in
//! the parent, or each through its own on the same path, with rotation on.
//! Afterwards every line is present exactly once across `FILE` and
//! `FILE.N`, every line is well-formed (no two lines interleaved, even
//! lines longer than `PIPE_BUF`), each writer's lines appear in the order it
//! logged them (nothing was written to a file after it was rotated away),
//! and no file passes `max_bytes`.
//!
//! The tests fork while the test harness may run other tests on other
//! threads; they take one lock so that at least their own forks do not
//! overlap. Children exit with a status, never by panicking.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use servers::app::access_log::{AccessLog, Entry};
use servers::sys::process::{exit_immediately, fork, poll, Child, Fork, PollFd, WaitStatus};

const CHILDREN: usize = 4;
const LINES: usize = 5_000;
const MAX_BYTES: u64 = 128 * 1024;
/// Enough rotated files that none is deleted: every line must survive.
const KEEP: usize = 400;
const UA: &[u8] = b"procs/1";

/// Forking tests in this binary run one at a time.
static FORKS: Mutex<()> = Mutex::new(());

/// How many padding bytes writer `w`'s line `i` carries: mostly short,
/// every 20th longer than `PIPE_BUF` (4096).
fn pad_len(w: usize, i: usize) -> usize {
    if i % 20 == 0 {
        4_200 + (i * 7 + w) % 700
    } else {
        (i * 37 + w * 11) % 200
    }
}

fn target(w: usize, i: usize) -> String {
    let fill = (b'a' + ((i + w) % 26) as u8) as char;
    format!("/w{w}/{i}/{}", fill.to_string().repeat(pad_len(w, i)))
}

fn log_line(log: &AccessLog, w: usize, i: usize) {
    log.log(&Entry {
        remote: Ipv4Addr::new(10, 0, 0, 1),
        unix_time: 1_795_428_000,
        method: "GET",
        target: &target(w, i),
        protocol: "HTTP/1.1",
        status: 200,
        body_bytes: 13,
        referer: None,
        user_agent: Some(UA),
    });
}

/// Writer and sequence number of a well-formed line; panics on anything
/// else (a torn or interleaved line).
fn parse(line: &str) -> (usize, usize) {
    let rest = line
        .strip_prefix("10.0.0.1 - - [23/Nov/2026:10:00:00 +0000] \"GET ")
        .unwrap_or_else(|| panic!("bad line start: {}", excerpt(line)));
    let t = rest
        .strip_suffix(" HTTP/1.1\" 200 13 \"-\" \"procs/1\"")
        .unwrap_or_else(|| panic!("bad line end: {}", excerpt(line)));
    let mut parts = t.splitn(4, '/');
    let (Some(""), Some(w), Some(i), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("bad target: {}", excerpt(line));
    };
    let w: usize = w.strip_prefix('w').unwrap().parse().unwrap();
    let i: usize = i.parse().unwrap();
    assert_eq!(t, target(w, i), "target of w{w}/{i} mangled");
    (w, i)
}

fn excerpt(line: &str) -> String {
    line.chars().take(160).collect()
}

/// Fork a child that runs `body` and `_exit`s with its status.
fn spawn(body: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child runs `body` (which logs: it allocates and takes the
    // log's own locks, held by no other thread at the fork; glibc's fork
    // keeps malloc usable in the child) and ends in `_exit`.
    match unsafe { fork() }.expect("fork") {
        Fork::Child => exit_immediately(body()),
        Fork::Parent(pid) => Child::adopt(pid).expect("adopt child"),
    }
}

/// Wait for every child, failing (and killing them) after a deadline.
fn reap_all(children: Vec<Child>, deadline: Duration) {
    let start = Instant::now();
    for child in children {
        let left = deadline.saturating_sub(start.elapsed());
        let mut fds = [PollFd::readable(child.exit_fd())];
        let ready = poll(&mut fds, left.as_millis() as i32).unwrap();
        assert_eq!(
            ready,
            1,
            "child {} still running after {deadline:?}",
            child.pid()
        );
        assert_eq!(child.reap().unwrap(), WaitStatus::Exited(0), "child status");
    }
}

/// A child's status: 0 if its log saw no failure.
fn status(log: &AccessLog) -> i32 {
    i32::from(log.write_errors() != 0 || log.dropped() != 0)
}

/// Check the files under `dir` named `access.log*`: every line of writer
/// `w` in `expected` (writer → line count) exactly once and in order,
/// nothing else; returns how many files there were.
fn check(dir: &Path, expected: &HashMap<usize, usize>, max_bytes: u64) -> usize {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("access.log"))
        .collect();
    let rank = |n: &String| -> usize {
        match n.strip_prefix("access.log.") {
            Some(k) => k.parse().unwrap(),
            None => 0,
        }
    };
    // Oldest first: the highest number, down to FILE itself.
    names.sort_by_key(|n| std::cmp::Reverse(rank(n)));
    let mut next: HashMap<usize, usize> = HashMap::new();
    for name in &names {
        let data = std::fs::read(dir.join(name)).unwrap();
        if max_bytes > 0 {
            assert!(
                data.len() as u64 <= max_bytes,
                "{name} holds {} bytes, over {max_bytes}",
                data.len()
            );
        }
        let text = String::from_utf8(data).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name} ends mid-line"
        );
        for line in text.lines() {
            let (w, i) = parse(line);
            let want = next.entry(w).or_insert(0);
            assert_eq!(
                i, *want,
                "writer {w}: line {i} where {want} was due, in {name}"
            );
            *want += 1;
        }
    }
    assert_eq!(&next, expected, "lines per writer");
    names.len()
}

/// Children log through the `AccessLog` the parent opened, which has
/// lines of its own buffered at the fork (each child must drop its copy
/// of them, or they would appear twice).
fn shared_log(max_bytes: u64) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::open(&path, max_bytes, KEEP).unwrap();
    let parent = CHILDREN;
    for i in 0..10 {
        log_line(&log, parent, i);
    }
    let children: Vec<Child> = (0..CHILDREN)
        .map(|w| {
            let log = &log;
            spawn(move || {
                for i in 0..LINES {
                    log_line(log, w, i);
                }
                log.flush();
                status(log)
            })
        })
        .collect();
    for i in 10..20 {
        log_line(&log, parent, i);
    }
    reap_all(children, Duration::from_secs(120));
    log.close().unwrap();
    let mut expected: HashMap<usize, usize> = (0..CHILDREN).map(|w| (w, LINES)).collect();
    expected.insert(parent, 20);
    check(dir.path(), &expected, max_bytes)
}

#[test]
fn children_share_the_parents_log_with_rotation() {
    let _one = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let files = shared_log(MAX_BYTES);
    assert!(files > 10, "only {files} files: rotation did not happen");
}

#[test]
fn children_share_the_parents_log_without_rotation() {
    let _one = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(shared_log(0), 1);
}

/// Each child opens its own `AccessLog` on the same path and logs from two
/// threads; they rotate the one file between them.
#[test]
fn children_with_their_own_logs_rotate_one_file() {
    let _one = FORKS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    const THREADS: usize = 2;
    let children: Vec<Child> = (0..CHILDREN)
        .map(|c| {
            let path = &path;
            spawn(move || {
                let Ok(log) = AccessLog::open(path, MAX_BYTES, KEEP) else {
                    return 2;
                };
                std::thread::scope(|s| {
                    for t in 0..THREADS {
                        let log = &log;
                        s.spawn(move || {
                            for i in 0..LINES / THREADS {
                                log_line(log, c * THREADS + t, i);
                            }
                        });
                    }
                });
                let closed = log.close();
                if closed.is_err() {
                    return 3;
                }
                status(&log)
            })
        })
        .collect();
    reap_all(children, Duration::from_secs(120));
    let expected: HashMap<usize, usize> = (0..CHILDREN * THREADS)
        .map(|w| (w, LINES / THREADS))
        .collect();
    let files = check(dir.path(), &expected, MAX_BYTES);
    assert!(files > 10, "only {files} files: rotation did not happen");
}

#[test]
fn the_checker_catches_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::open(&path, 0, 0).unwrap();
    log_line(&log, 0, 0);
    log.close().unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.insert_str(40, "10.0.0.1 - - [");
    std::fs::write(&path, text).unwrap();
    let expected = HashMap::from([(0, 1)]);
    let caught = std::panic::catch_unwind(|| check(dir.path(), &expected, 0));
    assert!(caught.is_err());
}
