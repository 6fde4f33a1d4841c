//! The verdicts at the end of a soak, each a pure function of what was
//! measured, so the thresholds are stated (and tested) in one place.

use crate::format::{grouped, mib};
use crate::rig::server::Stopped;

use super::clients::{self, Line};
use super::observe::{ChildProc, Counters};

/// RSS may end this far above its level after the warm-up: the larger of
/// [`RSS_SLACK_KIB`] and this fraction of it.
pub const RSS_SLACK_FRACTION: f64 = 0.25;
/// The least RSS growth tolerated, KiB (16 MiB): allocator arenas and
/// caches settle at sizes that have nothing to do with a leak.
pub const RSS_SLACK_KIB: u64 = 16 * 1024;
/// Descriptors may end this many above the idle count (a log, a lazily
/// opened directory), not more: every connection closes its own.
pub const FD_SLACK: usize = 4;

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name: `rss`, `descriptors`, ...
    pub name: &'static str,
    /// Whether it passed.
    pub pass: bool,
    /// The figures behind it, in words.
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        write!(f, "{verdict}  {:<12} {}", self.name, self.detail)
    }
}

fn check(name: &'static str, pass: bool, detail: String) -> Check {
    Check { name, pass, detail }
}

/// The highest RSS that passes, KiB, for a baseline of `baseline` KiB.
pub fn rss_limit(baseline: u64) -> u64 {
    let fraction = (baseline as f64 * RSS_SLACK_FRACTION) as u64;
    baseline + fraction.max(RSS_SLACK_KIB)
}

/// RSS after settling against its level after the warm-up.
pub fn rss(baseline: Option<u64>, end: Option<u64>) -> Check {
    let (Some(base), Some(end)) = (baseline, end) else {
        return check(
            "rss",
            false,
            "not measured (the server was gone, or the run ended before the warm-up)".into(),
        );
    };
    let limit = rss_limit(base);
    check(
        "rss",
        end <= limit,
        format!(
            "{} MiB after settling; {} MiB after the warm-up, limit {} MiB",
            mib(end),
            mib(base),
            mib(limit)
        ),
    )
}

/// Descriptors after settling against the idle count before the load.
pub fn descriptors(idle: usize, peak: usize, end: Option<usize>) -> Check {
    let Some(end) = end else {
        return check(
            "descriptors",
            false,
            "not measured (the server was gone)".into(),
        );
    };
    check(
        "descriptors",
        end <= idle + FD_SLACK,
        format!(
            "{end} after settling; {idle} idle before the load (limit {}), {peak} at most in between",
            idle + FD_SLACK
        ),
    )
}

/// No process left whose parent is the server, but for those it had
/// before the load (a process model's own workers, which it keeps): a
/// zombie, or any child that came with the load and stayed, fails.
pub fn children(idle: &[ChildProc], end: Option<&[ChildProc]>) -> Check {
    let kept = |c: &ChildProc| c.state != 'Z' && idle.iter().any(|i| i.pid == c.pid);
    let strays: Option<Vec<ChildProc>> =
        end.map(|kids| kids.iter().filter(|c| !kept(c)).cloned().collect());
    match strays.as_deref() {
        None => check(
            "children",
            false,
            "not measured (the server was gone)".into(),
        ),
        Some([]) if idle.is_empty() => check("children", true, "no child process left".into()),
        Some([]) => check(
            "children",
            true,
            format!(
                "no child process left but the {} the server kept from before the load",
                idle.len()
            ),
        ),
        Some(kids) => check(
            "children",
            false,
            format!(
                "{} left: {}",
                kids.len(),
                kids.iter()
                    .map(ChildProc::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// /stats total_requests against the well-behaved clients' count (hostile
/// clients and the soak's own /stats requests only add to the server's).
pub fn requests(stats: &Result<Counters, String>, completed: u64) -> Check {
    match stats {
        Err(e) => check("requests", false, format!("no /stats after the load: {e}")),
        Ok(c) => {
            let pass = c.total_requests >= completed;
            let op = if pass { "≥" } else { "<" };
            check(
                "requests",
                pass,
                format!(
                    "/stats total_requests {} {op} {} completed by the well-behaved clients",
                    grouped(c.total_requests),
                    grouped(completed)
                ),
            )
        }
    }
}

/// Every well-behaved request answered with the status (and body length)
/// it should have: no other status, no error, and at least one request.
pub fn statuses(lines: &[Line]) -> Check {
    let total: u64 = lines.iter().map(|l| l.count).sum();
    let bad: Vec<Line> = lines.iter().filter(|l| !l.expected).cloned().collect();
    let bad_n: u64 = bad.iter().map(|l| l.count).sum();
    if total == 0 {
        return check("statuses", false, "no well-behaved request was made".into());
    }
    let detail = if bad.is_empty() {
        format!("all {} well-behaved requests as expected", grouped(total))
    } else {
        format!(
            "{} of {} well-behaved requests not as expected: {}",
            grouped(bad_n),
            grouped(total),
            clients::describe(&bad).join("; ")
        )
    };
    check("statuses", bad.is_empty(), detail)
}

/// The data dir empty again: every upload deleted, every aborted one's
/// temporary file removed.
pub fn data_dir(entries: &Result<Vec<String>, String>) -> Check {
    match entries {
        Err(e) => check("data dir", false, format!("not readable: {e}")),
        Ok(v) if v.is_empty() => check("data dir", true, "empty again".into()),
        Ok(v) => {
            let shown: Vec<&str> = v.iter().take(5).map(String::as_str).collect();
            let more = if v.len() > 5 { ", ..." } else { "" };
            check(
                "data dir",
                false,
                format!("{} file(s) left: {}{more}", v.len(), shown.join(", ")),
            )
        }
    }
}

/// SIGTERM answered by exit status 0.
pub fn exit(stopped: &Stopped) -> Check {
    match stopped {
        Stopped::Clean => check("exit", true, "exit status 0 after SIGTERM".into()),
        Stopped::Status(st) => check("exit", false, format!("{st} after SIGTERM")),
        Stopped::Killed => check(
            "exit",
            false,
            "still running after SIGTERM and the grace period: killed".into(),
        ),
        Stopped::AlreadyGone(st) => check("exit", false, format!("had already exited ({st})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_margins() {
        assert_eq!(rss_limit(10 * 1024), 26 * 1024);
        assert_eq!(rss_limit(200 * 1024), 250 * 1024);
        assert!(rss(Some(10 * 1024), Some(26 * 1024)).pass);
        assert!(!rss(Some(10 * 1024), Some(26 * 1024 + 1)).pass);
        assert!(!rss(None, Some(1)).pass);
    }

    #[test]
    fn descriptors_children_requests() {
        assert!(descriptors(10, 300, Some(14)).pass);
        assert!(!descriptors(10, 300, Some(15)).pass);
        assert!(children(&[], Some(&[])).pass);
        let z = ChildProc {
            pid: 9,
            state: 'Z',
            comm: "time".into(),
        };
        let c = children(&[], Some(std::slice::from_ref(&z)));
        assert!(!c.pass && c.detail.contains("pid 9 (time, zombie)"), "{c}");
        // A worker the server had before the load is its own; a new one is not.
        let worker = ChildProc {
            pid: 7,
            state: 'S',
            comm: "worker".into(),
        };
        let kept = std::slice::from_ref(&worker);
        assert!(children(kept, Some(kept)).pass);
        let stray = ChildProc {
            pid: 8,
            ..worker.clone()
        };
        assert!(!children(kept, Some(&[worker.clone(), stray])).pass);
        // A worker that became a zombie is no longer kept.
        let dead = ChildProc {
            state: 'Z',
            ..worker.clone()
        };
        assert!(!children(kept, Some(&[dead])).pass);
        let ok = Ok(Counters {
            total_requests: 10,
            active_connections: 1,
        });
        assert!(requests(&ok, 10).pass);
        let short = requests(&ok, 11);
        assert!(!short.pass && short.detail.contains("10 < 11"), "{short}");
        assert!(!requests(&Err("timed out".into()), 0).pass);
    }

    #[test]
    fn statuses_and_data_dir() {
        let line = |outcome: &str, expected: bool| Line {
            what: "GET /x",
            outcome: outcome.into(),
            expected,
            count: 2,
        };
        assert!(statuses(&[line("200", true)]).pass);
        assert!(!statuses(&[]).pass);
        let c = statuses(&[line("200", true), line("503", false)]);
        assert!(
            !c.pass && c.detail.contains("2 of 4") && c.detail.contains("503"),
            "{c}"
        );
        assert!(data_dir(&Ok(vec![])).pass);
        assert!(!data_dir(&Ok(vec![".upload-x".into()])).pass);
        assert!(exit(&Stopped::Clean).pass && !exit(&Stopped::Killed).pass);
    }
}
