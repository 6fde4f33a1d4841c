//! Syscalls per request: `perf stat` counts `raw_syscalls:sys_enter` (every
//! syscall) and one `syscalls:sys_enter_NAME` tracepoint per syscall in
//! [`TRACKED`] on the server's processes while a load runs; divided by the
//! requests the load generator completed, they give the total per request
//! and the mix.
//!
//! Counting every `sys_enter_*` tracepoint would need ~360 events per
//! thread and takes perf seconds to set up (15 s for the threadpool's 6
//! threads here); the list below is what an HTTP server calls, and whatever
//! it misses shows as "other" (the total minus the tracked ones), so
//! nothing is lost, only not named.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Every syscall entry, whatever the syscall.
pub const TOTAL_EVENT: &str = "raw_syscalls:sys_enter";

/// The syscalls named in the mix (tracepoint names, x86_64).
pub const TRACKED: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "sendfile64",
    "splice",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "accept",
    "accept4",
    "close",
    "shutdown",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "futex",
    "openat",
    "openat2",
    "newfstat",
    "newfstatat",
    "statx",
    "fcntl",
    "ioctl",
    "mmap",
    "munmap",
    "madvise",
    "brk",
    "mprotect",
    "clock_nanosleep",
    "nanosleep",
    "sched_yield",
    "rt_sigprocmask",
    "clone",
    "clone3",
    "wait4",
    "poll",
    "ppoll",
    "io_uring_enter",
    "lseek",
];

/// The tracefs directory holding `events/syscalls`, when readable.
pub fn tracefs() -> Option<PathBuf> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events/syscalls").is_dir())
}

/// The events to count: the total, then each tracked syscall this kernel
/// has a tracepoint for (looked up in `tracefs`; all of them when unknown).
pub fn events(tracefs: Option<&Path>) -> Vec<String> {
    let mut v = vec![TOTAL_EVENT.to_string()];
    for name in TRACKED {
        let present = tracefs.map_or(true, |t| {
            t.join(format!("events/syscalls/sys_enter_{name}")).exists()
        });
        if present {
            v.push(format!("syscalls:sys_enter_{name}"));
        }
    }
    v
}

/// What `perf stat` counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Every syscall.
    pub total: u64,
    /// Tracked syscalls with a non-zero count, most frequent first.
    pub by_syscall: Vec<(String, u64)>,
}

impl Counts {
    /// Syscalls outside [`TRACKED`].
    pub fn other(&self) -> u64 {
        let named: u64 = self.by_syscall.iter().map(|(_, n)| n).sum();
        self.total.saturating_sub(named)
    }
}

/// Parse `perf stat -x,` output (`value,unit,event,...` per line; `#`
/// comments; `<not counted>` for an event that never ran).
pub fn parse_stat_csv(text: &str) -> Result<Counts, String> {
    let mut total = None;
    let mut by = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            continue;
        }
        let value = f[0].trim();
        let event = f[2].trim();
        let n: u64 = match value.parse() {
            Ok(n) => n,
            Err(_) if value.starts_with('<') => 0,
            Err(_) => return Err(format!("perf stat line unreadable: {line:?}")),
        };
        if event == TOTAL_EVENT {
            total = Some(n);
        } else if let Some(name) = event.strip_prefix("syscalls:sys_enter_") {
            if n > 0 {
                by.push((name.to_string(), n));
            }
        }
    }
    let total = total.ok_or_else(|| format!("no {TOTAL_EVENT} count in perf stat's output"))?;
    by.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Counts {
        total,
        by_syscall: by,
    })
}

/// Syscalls over a load of known size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyscallProfile {
    /// What perf stat counted.
    pub counts: Counts,
    /// Requests the load generator completed while perf stat counted.
    pub requests: u64,
    /// Length of the load, seconds.
    pub window_s: f64,
    /// The perf stat command, for the record.
    pub command: String,
}

impl SyscallProfile {
    /// Syscalls per completed request.
    pub fn per_request(&self) -> f64 {
        per(self.counts.total, self.requests)
    }

    /// `syscalls.txt`: the total per request, then the mix.
    pub fn render(&self, variant: &str, load: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Syscalls of {variant} under {load}");
        let _ = writeln!(s, "# {}", self.command);
        let _ = writeln!(
            s,
            "# counted for the whole load ({:.1} s, connection set-up and teardown included); requests from the load generator",
        self.window_s
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "requests            {:>12}", self.requests);
        let _ = writeln!(s, "syscalls            {:>12}", self.counts.total);
        let _ = writeln!(s, "syscalls/request    {:>12.3}", self.per_request());
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<18} {:>12} {:>12} {:>8}",
            "syscall", "count", "per request", "share"
        );
        let mut rows: Vec<(String, u64)> = self.counts.by_syscall.clone();
        let other = self.counts.other();
        if other > 0 {
            rows.push(("(other)".to_string(), other));
        }
        for (name, n) in rows {
            let _ = writeln!(
                s,
                "{:<18} {:>12} {:>12.3} {:>7.1}%",
                name,
                n,
                per(n, self.requests),
                per(n * 100, self.counts.total)
            );
        }
        s
    }

    /// `read 1.00, sendto 1.00, epoll_wait 0.13`: the mix in one line, for
    /// tables (syscalls under 0.01 per request left out).
    pub fn mix_line(&self) -> String {
        self.counts
            .by_syscall
            .iter()
            .map(|(n, c)| (n, per(*c, self.requests)))
            .filter(|(_, p)| *p >= 0.01)
            .map(|(n, p)| format!("{n} {p:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn per(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "# started on Mon Nov 23 08:09:14 2026\n\n\
142317,,raw_syscalls:sys_enter,821944419,100.00,,\n\
67111,,syscalls:sys_enter_read,821944419,100.00,,\n\
66711,,syscalls:sys_enter_sendto,821944419,100.00,,\n\
<not counted>,,syscalls:sys_enter_futex,0,0.00,,\n\
0,,syscalls:sys_enter_close,821944419,100.00,,\n";

    #[test]
    fn parses_perf_stat_csv() {
        let c = parse_stat_csv(STAT).unwrap();
        assert_eq!(c.total, 142_317);
        assert_eq!(
            c.by_syscall,
            vec![("read".to_string(), 67_111), ("sendto".to_string(), 66_711)]
        );
        assert_eq!(c.other(), 142_317 - 67_111 - 66_711);
        assert!(parse_stat_csv("1,,syscalls:sys_enter_read,1,100,,\n").is_err());
    }

    #[test]
    fn per_request_and_text() {
        let p = SyscallProfile {
            counts: parse_stat_csv(STAT).unwrap(),
            requests: 66_711,
            window_s: 3.0,
            command: "perf stat ...".into(),
        };
        assert!((p.per_request() - 142_317.0 / 66_711.0).abs() < 1e-12);
        let t = p.render("epoll", "GET /plaintext");
        assert!(t.contains("syscalls/request"), "{t}");
        assert!(t.contains("(other)"), "{t}");
        assert_eq!(p.mix_line(), "read 1.01, sendto 1.00");
    }

    #[test]
    fn events_start_with_the_total() {
        let e = events(None);
        assert_eq!(e[0], TOTAL_EVENT);
        assert_eq!(e.len(), TRACKED.len() + 1);
    }
}
