//! `harness soak` end to end: the real binary soaking the epoll variant
//! (debug builds) for 8 s with a report every 2 s. A smoke check of the
//! plumbing: the report lines, the per-check PASS lines, the exit status.

mod support;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Hang guard, and the time the whole test must fit in.
const LIMIT: Duration = Duration::from_secs(30);

/// Every check `harness soak` makes, in the order it prints them.
const CHECKS: [&str; 7] = [
    "rss",
    "descriptors",
    "children",
    "requests",
    "statuses",
    "data dir",
    "exit",
];

#[test]
fn soak_epoll_for_eight_seconds() {
    let epoll = support::variant_bin("epoll");
    let bin_dir = epoll.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["soak", "--variant", "epoll", "--duration", "8s"])
        .args(["--report-every", "2s", "--bin-dir"])
        .arg(bin_dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn harness");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > LIMIT {
            // SIGINT first: the harness stops its server.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let stdout = fs::read_to_string(out).unwrap_or_default();
    let stderr = fs::read_to_string(err).unwrap_or_default();
    let describe = format!(
        "exit {status:?} after {elapsed:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        stdout.trim_end(),
        stderr.trim_end()
    );
    assert!(status.is_some(), "outlived {LIMIT:?}\n{describe}");

    let reports: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("] rss ") && l.contains(", completed "))
        .collect();
    for when in ["2s]", "4s]", "6s]", "end]"] {
        assert!(
            reports
                .iter()
                .any(|l| l.trim_start_matches([' ', '[']).starts_with(when)),
            "no report line at {when}\n{describe}"
        );
    }
    for field in ["fds ", "threads ", "children ", "/stats requests "] {
        assert!(
            reports.iter().all(|l| l.contains(field)),
            "a report line lacks `{field}`\n{describe}"
        );
    }
    assert!(
        stdout.contains("warm-up over: RSS baseline"),
        "no warm-up line\n{describe}"
    );
    for name in CHECKS {
        let pass = format!("PASS  {name:<12} ");
        assert!(
            stdout.lines().any(|l| l.starts_with(&pass)),
            "no `{pass}` line\n{describe}"
        );
    }
    assert!(
        stdout.contains("soak epoll: PASS (7 of 7 checks passed)"),
        "{describe}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{describe}");
    assert!(elapsed < LIMIT, "took {elapsed:?}\n{describe}");
}
