//! What the soak watches from outside the server: its resident memory,
//! descriptors, threads and child processes from /proc, and its own
//! counters from `/stats`. Read the same way every report line and at the
//! end, so the checks compare like with like.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::procfs::status_field;

use super::http::{self, Conn};

/// A child process of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildProc {
    /// Its pid.
    pub pid: u32,
    /// Its state letter from /proc/PID/stat (`Z` for a zombie).
    pub state: char,
    /// Its command name.
    pub comm: String,
}

impl std::fmt::Display for ChildProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.state == 'Z' {
            "zombie"
        } else {
            "running"
        };
        write!(f, "pid {} ({}, {what})", self.pid, self.comm)
    }
}

/// The server process at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Resident set size (VmRSS), KiB.
    pub rss_kib: u64,
    /// Open descriptors (entries of /proc/PID/fd).
    pub fds: usize,
    /// Threads (entries of /proc/PID/task).
    pub threads: usize,
    /// Processes whose parent is the server.
    pub children: Vec<ChildProc>,
}

/// Sample process `pid`; Err when it is gone.
pub fn sample(pid: u32) -> io::Result<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(Sample {
        rss_kib: status_field(&status, "VmRSS:").unwrap_or(0),
        fds: fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
        threads: fs::read_dir(format!("/proc/{pid}/task"))?.count(),
        children: children_of(pid),
    })
}

/// Every process whose parent is `pid`, found by scanning /proc (zombies
/// included, which /proc/PID/task/TID/children may not list once reaped
/// threads are gone).
pub fn children_of(pid: u32) -> Vec<ChildProc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<ChildProc> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let (ppid, state, comm) = parse_stat(&stat)?;
            (ppid == pid).then_some(ChildProc {
                pid: p,
                state,
                comm,
            })
        })
        .collect();
    out.sort_by_key(|c| c.pid);
    out
}

/// Parent pid, state and command name from a /proc/PID/stat line (the
/// name, in parentheses, may itself hold spaces and parentheses).
fn parse_stat(stat: &str) -> Option<(u32, char, String)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state, comm))
}

/// The `/stats` figures the soak uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Requests the server has answered.
    pub total_requests: u64,
    /// Connections open now (this one included).
    pub active_connections: u64,
}

/// GET /stats on a fresh connection, within `timeout`.
pub fn stats(addr: SocketAddr, timeout: Duration) -> Result<Counters, String> {
    let why = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no answer within {}", crate::format::duration(timeout))
        }
        _ => e.to_string(),
    };
    let mut c = Conn::open(addr, timeout).map_err(why)?;
    let r = c.exchange(&http::get("/stats", true), true).map_err(why)?;
    if r.status != 200 {
        return Err(format!("GET /stats answered {}", r.status));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("/stats is not JSON: {e}"))?;
    let n = |key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("/stats has no number `{key}`"))
    };
    Ok(Counters {
        total_requests: n("total_requests")?,
        active_connections: n("active_connections")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(
            parse_stat("42 (sh) Z 7 42 42 0 -1"),
            Some((7, 'Z', "sh".into()))
        );
        assert_eq!(
            parse_stat("43 (a (b) c) S 1 43"),
            Some((1, 'S', "a (b) c".into()))
        );
        assert_eq!(parse_stat("junk"), None);
    }

    #[test]
    fn this_process_and_its_child() {
        let me = std::process::id();
        let s = sample(me).unwrap();
        assert!(s.rss_kib > 0 && s.fds > 0 && s.threads > 0, "{s:?}");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = children_of(me);
        let found = kids.iter().any(|c| c.pid == child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "{kids:?}");
    }
}
