//! Off-CPU time: where the server's threads wait rather than run.
//!
//! A cpu-clock profile only sees a thread while it runs. A blocking model
//! spends much of its life waiting — in `accept`, in `recv` for a slow
//! client, on a futex for a queue — and that time, invisible to the
//! on-CPU flame graph, is what caps its throughput while its CPU idles.
//!
//! What works here: the `sched:sched_switch` tracepoint with call graphs,
//! recorded CPU-wide on the server's CPUs (`perf record -e
//! sched:sched_switch -g -a -C CPUS`). A thread's stack at the switch that
//! takes it off the CPU says why it left; the switch that puts it back on
//! (recorded on the same CPUs, because the server is pinned to them) ends
//! the wait. A thread's waits are summed per stack, in microseconds, into
//! collapsed stacks for inferno's flame graph. `perf sched` needs the
//! same tracepoints plus more, and bcc's `offcputime` needs BPF tools this
//! machine does not have; one tracepoint is enough.
//!
//! Limits, said where they matter: a thread that sleeps through the whole
//! window switches neither out nor in and is not seen; a wait still going
//! when the window ends is counted up to the last event; a thread's last
//! switch, as it exits (state X or Z), is no wait.

use std::collections::HashMap;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::Owner;

/// The fields `perf script` is asked for (the tracepoint's text carries
/// the previous state and the next thread).
pub const SCRIPT_FIELDS: &str = "comm,pid,tid,cpu,time,event,trace,ip,sym";

/// One wait: a thread left the CPU at `since` with this stack.
struct Wait {
    since: f64,
    stack: String,
}

/// The off-CPU stacks of one recording and a summary of them.
#[derive(Debug, Default)]
pub struct OffCpu {
    /// `comm;state;root;...;leaf MICROSECONDS` lines, heaviest first.
    pub folded: Vec<(String, u64)>,
    /// Waits ended (or cut off by the window's end).
    pub waits: u64,
    /// Seconds between the first and last event.
    pub span_s: f64,
}

/// The summary kept in profile.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OffCpuSummary {
    /// Seconds the recording spanned.
    pub span_s: f64,
    /// Waits seen.
    pub waits: u64,
    /// Thread-seconds off the CPU, all threads summed.
    pub off_cpu_s: f64,
    /// Where that time went, by reason, heaviest first (percent of it).
    pub reasons: Vec<(String, f64)>,
}

/// One `sched:sched_switch` event's header, parsed.
struct Switch<'a> {
    comm: &'a str,
    pid: u32,
    tid: u32,
    time: f64,
    prev_state: &'a str,
    next_pid: u32,
}

/// Parse `COMM PID/TID [CPU] TIME: sched:sched_switch: prev_comm=...
/// prev_pid=N prev_prio=P prev_state=S ==> next_comm=... next_pid=M ...`.
/// Command names may contain spaces, so fields are found by their keys.
fn parse_header(line: &str) -> Option<Switch<'_>> {
    let (left, trace) = line.split_once(": sched:sched_switch: ")?;
    // "COMM PID/TID [CPU] TIME"
    let (who, cpu_time) = left.rsplit_once(" [")?;
    let time = cpu_time.split_once(']')?.1.trim().parse().ok()?;
    let (comm, ids) = who.trim_end().rsplit_once(char::is_whitespace)?;
    let (pid, tid) = ids.split_once('/')?;
    let value = |key: &str| -> Option<&str> {
        let at = trace.find(key)? + key.len();
        trace[at..].split_whitespace().next()
    };
    Some(Switch {
        comm: comm.trim(),
        pid: pid.parse().ok()?,
        tid: tid.parse().ok()?,
        time,
        prev_state: value(" prev_state=")?,
        next_pid: value(" next_pid=")?.parse().ok()?,
    })
}

/// The state frame under the command: why the thread left the CPU.
fn state_frame(state: &str) -> &'static str {
    match state.chars().next() {
        Some('R') => "[preempted: runnable, waiting for the CPU]",
        Some('D') => "[uninterruptible wait]",
        Some('S') => "[sleeping]",
        _ => "[other state]",
    }
}

/// `perf script -F comm,pid,tid,cpu,time,event,trace,ip,sym` output of a
/// `sched:sched_switch -g` recording → the server's off-CPU stacks.
pub fn fold(input: impl BufRead, owner: &Owner) -> std::io::Result<OffCpu> {
    let mut waiting: HashMap<u32, Wait> = HashMap::new();
    let mut sums: HashMap<String, f64> = HashMap::new();
    let mut out = OffCpu::default();
    let (mut first, mut last) = (None, 0.0f64);
    let mut lines = input.lines();
    while let Some(line) = lines.next() {
        let line = line?;
        let Some(sw) = parse_header(&line) else {
            continue;
        };
        let mut frames = Vec::new();
        for l in lines.by_ref() {
            let l = l?;
            if l.trim().is_empty() {
                break;
            }
            frames.push(frame_name(&l));
        }
        first.get_or_insert(sw.time);
        last = last.max(sw.time);
        if let Some(w) = waiting.remove(&sw.next_pid) {
            *sums.entry(w.stack).or_default() += (sw.time - w.since) * 1e6;
            out.waits += 1;
        }
        // A thread switching out dead (X, Z) is not waiting: it is gone.
        let exiting = sw.prev_state.starts_with(['X', 'Z']);
        if sw.tid != 0 && !exiting && owner.owns(sw.comm, sw.pid) {
            frames.reverse();
            let stack = format!(
                "{};{};{}",
                sw.comm,
                state_frame(sw.prev_state),
                frames.join(";")
            );
            waiting.insert(
                sw.tid,
                Wait {
                    since: sw.time,
                    stack,
                },
            );
        }
    }
    for (_, w) in waiting.drain() {
        *sums.entry(w.stack).or_default() += (last - w.since).max(0.0) * 1e6;
        out.waits += 1;
    }
    out.span_s = first.map_or(0.0, |f| last - f);
    out.folded = sums
        .into_iter()
        .map(|(s, us)| (s, us.round() as u64))
        .filter(|(_, us)| *us > 0)
        .collect();
    out.folded
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// `\tffffffff82249848 __schedule` → `__schedule_[k]` (kernel addresses
/// are the upper half, marked as inferno marks them); a user frame keeps
/// its name; an unnamed one is `[unknown]`.
fn frame_name(line: &str) -> String {
    let mut parts = line.trim().splitn(2, char::is_whitespace);
    let addr = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("[unknown]").trim();
    let name = name.split(" (").next().unwrap_or(name);
    let kernel = addr.len() == 16 && addr.starts_with("ffff");
    let clean = super::classify::strip_suffixes(name).replace(';', ":");
    if kernel {
        format!("{clean}_[k]")
    } else {
        clean
    }
}

impl OffCpu {
    /// The collapsed text for inferno.
    pub fn collapsed(&self) -> String {
        self.folded
            .iter()
            .map(|(s, us)| format!("{s} {us}\n"))
            .collect()
    }

    /// Total thread-seconds off the CPU and the split by reason: the
    /// syscall a sleeping thread waited in (`accept4`, `epoll_wait`,
    /// `futex`...), or its state when no syscall is on the stack.
    pub fn summary(&self) -> OffCpuSummary {
        let total: u64 = self.folded.iter().map(|(_, us)| us).sum();
        let mut by: HashMap<String, u64> = HashMap::new();
        for (stack, us) in &self.folded {
            *by.entry(reason(stack)).or_default() += us;
        }
        let mut reasons: Vec<(String, f64)> = by
            .into_iter()
            .map(|(r, us)| (r, 100.0 * us as f64 / total.max(1) as f64))
            .collect();
        reasons.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        OffCpuSummary {
            span_s: self.span_s,
            waits: self.waits,
            off_cpu_s: total as f64 / 1e6,
            reasons,
        }
    }
}

/// Why one stack waited: the syscall it slept in — the kernel's
/// `__x64_sys_NAME` frame, or, where the kernel calls the syscall's body
/// directly (`ksys_read`), the libc wrapper just before the first kernel
/// frame (`__send` → `send`) — else its state frame (`preempted`,
/// `sleeping`).
fn reason(stack: &str) -> String {
    let frames: Vec<&str> = stack.split(';').collect();
    if frames.get(1).is_some_and(|s| s.starts_with("[preempted")) {
        return "preempted".into();
    }
    let syscall = frames.iter().find_map(|f| {
        let k = f.strip_suffix("_[k]")?;
        k.strip_prefix("__x64_sys_")
            .or_else(|| k.strip_prefix("__do_sys_"))
    });
    let wrapper = || {
        let first_kernel = frames.iter().position(|f| f.ends_with("_[k]"))?;
        let user = frames.get(first_kernel.checked_sub(1)?)?;
        (first_kernel >= 3 && !user.starts_with('[')).then(|| {
            let name = user.trim_start_matches('_');
            let name = name
                .strip_prefix("GI_")
                .unwrap_or(name)
                .trim_start_matches('_');
            name.strip_prefix("libc_").unwrap_or(name)
        })
    };
    syscall
        .or_else(wrapper)
        .map(str::to_string)
        .unwrap_or_else(|| {
            frames
                .get(1)
                .map_or("unknown", |s| s.trim_matches(|c| c == '[' || c == ']'))
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
srv  100/100  [000]   10.000000: sched:sched_switch: prev_comm=srv prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
\tffffffff82249848 __schedule
\tffffffff8224a1b3 schedule
\tffffffff81e00000 inet_csk_accept
\tffffffff81e00100 __x64_sys_accept4
\tffffffff81000130 entry_SYSCALL_64_after_hwframe
\t           d4ad7 accept4
\t           83183 main

swapper/0     0/0     [000]   10.000500: sched:sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=srv next_pid=100 next_prio=120
\tffffffff82249848 __schedule

opt cgu.00  7/9  [000]   10.000600: sched:sched_switch: prev_comm=opt cgu.00 prev_pid=9 prev_prio=120 prev_state=S ==> next_comm=srv next_pid=100 next_prio=120
\tffffffff82249848 __schedule

srv  100/100  [000]   10.001000: sched:sched_switch: prev_comm=srv prev_pid=100 prev_prio=120 prev_state=R+ ==> next_comm=opt cgu.00 next_pid=9 next_prio=120
\tffffffff82249848 __schedule
\tffffffff8224a3c5 preempt_schedule_irq.isra.0

opt cgu.00  7/9  [000]   10.001250: sched:sched_switch: prev_comm=opt cgu.00 prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=srv next_pid=100 next_prio=120
\tffffffff82249848 __schedule
";

    #[test]
    fn waits_are_summed_per_stack_in_microseconds() {
        let off = fold(SCRIPT.as_bytes(), &Owner::Pids(&[100])).unwrap();
        assert_eq!(off.waits, 2);
        assert!((off.span_s - 0.00125).abs() < 1e-9, "{}", off.span_s);
        let text = off.collapsed();
        assert!(
            text.contains(
                "srv;[sleeping];main;accept4;entry_SYSCALL_64_after_hwframe_[k];\
                 __x64_sys_accept4_[k];inet_csk_accept_[k];schedule_[k];__schedule_[k] 500\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("srv;[preempted: runnable, waiting for the CPU];preempt_schedule_irq_[k];__schedule_[k] 250\n"),
            "{text}"
        );
        // Other processes' waits are not the server's, whatever their name.
        assert!(!text.contains("opt cgu"), "{text}");
    }

    #[test]
    fn the_summary_names_the_syscall_waited_in() {
        let off = fold(SCRIPT.as_bytes(), &Owner::Comm("srv")).unwrap();
        let s = off.summary();
        assert!((s.off_cpu_s - 0.00075).abs() < 1e-9, "{s:?}");
        assert_eq!(s.reasons[0].0, "accept4");
        assert!((s.reasons[0].1 - 200.0 / 3.0).abs() < 1e-6, "{s:?}");
        assert_eq!(s.reasons[1].0, "preempted");
    }

    #[test]
    fn without_a_sys_frame_the_libc_wrapper_names_the_syscall() {
        let r = reason(
            "srv;[sleeping];main;__recv;entry_SYSCALL_64_[k];do_syscall_64_[k];\
             ksys_read_[k];schedule_[k] 5",
        );
        assert_eq!(r, "recv");
        let r =
            reason("prefork;[sleeping];main;__libc_recvmsg;entry_SYSCALL_64_[k];schedule_[k] 5");
        assert_eq!(r, "recvmsg");
        assert_eq!(
            reason("kworker;[sleeping];worker_thread_[k];schedule_[k]"),
            "sleeping"
        );
    }

    #[test]
    fn a_thread_that_exits_is_not_waiting() {
        let text = "\
srv  5/6  [000]   1.000000: sched:sched_switch: prev_comm=srv prev_pid=6 prev_prio=120 prev_state=X ==> next_comm=swapper/0 next_pid=0 next_prio=120
\tffffffff82249848 __schedule
\tffffffff81300000 do_exit

x  8/8  [000]   3.000000: sched:sched_switch: prev_comm=x prev_pid=8 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
\tffffffff82249848 __schedule
";
        let off = fold(text.as_bytes(), &Owner::Pids(&[5])).unwrap();
        assert_eq!(off.collapsed(), "");
        assert_eq!(off.waits, 0);
    }

    #[test]
    fn a_wait_still_going_is_cut_at_the_last_event() {
        let text = "\
srv  5/6  [000]   1.000000: sched:sched_switch: prev_comm=srv prev_pid=6 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
\tffffffff82249848 __schedule

x  8/8  [000]   3.000000: sched:sched_switch: prev_comm=x prev_pid=8 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
\tffffffff82249848 __schedule
";
        let off = fold(text.as_bytes(), &Owner::Pids(&[5])).unwrap();
        assert_eq!(off.collapsed(), "srv;[sleeping];__schedule_[k] 2000000\n");
        assert_eq!(off.summary().reasons[0].0, "sleeping");
    }

    #[test]
    fn headers_with_spaces_in_names_parse() {
        let h =
            "opt cgu.00  7/9  [001]   5.5: sched:sched_switch: prev_comm=opt cgu.00 prev_pid=9 \
                 prev_prio=120 prev_state=D ==> next_comm=a b next_pid=12 next_prio=120";
        let sw = parse_header(h).unwrap();
        assert_eq!(
            (sw.comm, sw.pid, sw.tid, sw.next_pid),
            ("opt cgu.00", 7, 9, 12)
        );
        assert_eq!((sw.time, sw.prev_state), (5.5, "D"));
        assert!(parse_header("not a switch").is_none());
    }
}
