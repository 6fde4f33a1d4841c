//! What the kernel accounts to a server: CPU time, context switches and
//! memory, read from /proc for a whole process tree.
//!
//! A server is a process, its threads and (for nginx and process-based
//! variants) its child processes. `utime`/`stime` in /proc/PID/stat already
//! sum all threads of a process, and `cutime`/`cstime` add children it has
//! reaped; live children are found through /proc/PID/task/TID/children and
//! added explicitly. Context switches are per task, so they are summed over
//! every thread.

use std::fs;
use std::io;

/// Counters of a process tree at one instant. Differences of two samples
/// give what happened in between.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User CPU time, seconds.
    pub user_s: f64,
    /// System CPU time, seconds.
    pub system_s: f64,
    /// Voluntary context switches (blocking, waiting), summed over every thread.
    pub voluntary_ctxt: u64,
    /// Involuntary context switches (preempted), summed over every thread.
    pub involuntary_ctxt: u64,
    /// Peak resident set size (VmHWM), summed over the tree's processes, KiB.
    pub peak_rss_kib: u64,
}

impl Usage {
    /// What happened between `earlier` and `self` (peak RSS is kept as is:
    /// a high-water mark has no meaningful difference).
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            user_s: (self.user_s - earlier.user_s).max(0.0),
            system_s: (self.system_s - earlier.system_s).max(0.0),
            voluntary_ctxt: self.voluntary_ctxt.saturating_sub(earlier.voluntary_ctxt),
            involuntary_ctxt: self
                .involuntary_ctxt
                .saturating_sub(earlier.involuntary_ctxt),
            peak_rss_kib: self.peak_rss_kib,
        }
    }
}

/// Clock ticks per second, the unit of CPU times in /proc/PID/stat.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Sample `pid` and every live descendant.
pub fn sample_tree(pid: u32) -> io::Result<Usage> {
    let tick = clock_ticks();
    let mut total = Usage::default();
    let mut stack = vec![pid];
    let mut first = true;
    while let Some(p) = stack.pop() {
        match sample_process(p, tick, &mut stack) {
            Ok(u) => {
                total.user_s += u.user_s;
                total.system_s += u.system_s;
                total.voluntary_ctxt += u.voluntary_ctxt;
                total.involuntary_ctxt += u.involuntary_ctxt;
                total.peak_rss_kib += u.peak_rss_kib;
            }
            // The root must exist; a child may exit while we look.
            Err(e) if first => return Err(e),
            Err(_) => {}
        }
        first = false;
    }
    Ok(total)
}

/// One process: its CPU time (threads and reaped children included), the
/// context switches of its threads, its peak RSS; pushes its live children.
fn sample_process(pid: u32, tick: f64, children: &mut Vec<u32>) -> io::Result<Usage> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (utime, stime, cutime, cstime) = parse_stat_times(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat"),
        )
    })?;
    let mut u = Usage {
        user_s: (utime + cutime) as f64 / tick,
        system_s: (stime + cstime) as f64 / tick,
        ..Usage::default()
    };
    if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
        u.peak_rss_kib = status_field(&status, "VmHWM:").unwrap_or(0);
    }
    for task in fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let path = task.path();
        if let Ok(status) = fs::read_to_string(path.join("status")) {
            u.voluntary_ctxt += status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0);
            u.involuntary_ctxt += status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
        }
        if let Ok(kids) = fs::read_to_string(path.join("children")) {
            children.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
    }
    Ok(u)
}

/// CPU seconds (user + system) of every child this process has reaped so
/// far: the difference around one client run is the client's own CPU time
/// (as bash's `times` gives it), since nothing else is reaped meanwhile.
pub fn reaped_children_cpu_s() -> f64 {
    // SAFETY: all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid writable storage for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } == -1 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// (busy, total) jiffies of `cpu` from /proc/stat: two samples give how
/// busy the CPU was in between, whoever kept it busy, so a run that shared
/// its CPU with other work can be flagged.
pub fn cpu_jiffies(cpu: usize) -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&name))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is in user)
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

/// (busy, total) jiffies summed over `cpus` (those /proc/stat lacks are
/// left out).
pub fn cpus_jiffies(cpus: &[usize]) -> (u64, u64) {
    cpus.iter()
        .filter_map(|c| cpu_jiffies(*c))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Percent of `cpu` busy between two [`cpu_jiffies`] samples.
pub fn busy_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    100.0 * after.0.saturating_sub(before.0) as f64 / total as f64
}

/// utime, stime, cutime, cstime (fields 14-17) from a /proc/PID/stat line.
/// The command name (field 2) may contain spaces and parentheses, so fields
/// are counted after its last `)`.
pub fn parse_stat_times(stat: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), so field N is f[N - 3].
    let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some((n(14)?, n(15)?, n(16)?, n(17)?))
}

/// The number after `key` in a /proc status file (`VmHWM:  1234 kB`).
pub fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_command_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0";
        assert_eq!(parse_stat_times(line), Some((250, 75, 3, 4)));
        assert_eq!(parse_stat_times("garbage"), None);
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tx\nVmHWM:\t  5120 kB\nvoluntary_ctxt_switches:\t7\n";
        assert_eq!(status_field(s, "VmHWM:"), Some(5120));
        assert_eq!(status_field(s, "voluntary_ctxt_switches:"), Some(7));
        assert_eq!(status_field(s, "Missing:"), None);
    }

    #[test]
    fn own_process_burns_measurable_cpu() {
        let me = std::process::id();
        let before = sample_tree(me).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // Burn a little CPU so user time must move by at least a tick.
        while start.elapsed() < std::time::Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = sample_tree(me).unwrap();
        let d = after.since(&before);
        assert!(d.user_s + d.system_s > 0.0, "no CPU time accounted: {d:?}");
        assert!(after.peak_rss_kib > 0);
    }

    /// A process model's child that exits (and is reaped) between two
    /// samples still counts: its time moves into the parent's `cutime`.
    #[test]
    fn an_exited_child_is_counted() {
        let me = std::process::id();
        let before = sample_tree(me).unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let d = sample_tree(me).unwrap().since(&before);
        let child = reaped_children_cpu_s();
        assert!(
            d.user_s + d.system_s > 0.0 && child > 0.0,
            "the exited child's CPU time is missing: {d:?}"
        );
    }

    #[test]
    fn children_are_included() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // The child's stat exists; the tree walk must find it via /children.
        let mut stack = Vec::new();
        let _ = sample_process(std::process::id(), clock_ticks(), &mut stack);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            stack.contains(&child.id()),
            "child {} not found in {stack:?}",
            child.id()
        );
    }
}
