//! `harness profile`: perf sessions on a server under steady load, flame
//! graphs, the bucketed breakdown, and the bottleneck-migration picture
//! (DESIGN §7).
//!
//! - [`cli`]: the options and the plan (servers, pinning and load resolved
//!   by the bench planner, so a profile is of the server a bench measures);
//! - [`perf`]: finding perf and checking it may sample the kernel and count
//!   syscalls, with messages that say what to install or which sysctl to set;
//! - [`session`]: one server at a time: start, load, `perf record`, `perf
//!   stat`, stop, and the per-server files;
//! - [`stacks`]: `perf script` → collapsed stacks → flame graph (inferno);
//! - [`classify`]: the bucket rule table and the leaf-to-root walk;
//! - [`offcpu`]: where the server's threads wait (sched_switch stacks);
//! - [`diff`]: differential flame graphs between servers, per request;
//! - [`syscalls`]: syscalls per request and the mix;
//! - [`window`]: the recorded window's CPU time, requests and CPU busy %;
//! - [`summary`]: the combined buckets.csv, the chart and the summary.md
//!   section (the chart itself is drawn by [`crate::report`]).
//!
//! Why frame pointers: perf's default unwinder (`-g`) follows frame
//! pointers, which release builds omit, so user stacks stop after one
//! frame (6% of the epoll server's samples reached `main` here). DWARF
//! unwinding (`--call-graph dwarf`) recovers them (91%) but copies 8 KiB of
//! stack per sample: 92 MB for 3 s of one server against 1.8 MB. A build of
//! the servers with `-C force-frame-pointers=yes` keeps the exact
//! command meaningful at the small size: 41% of the epoll server's samples
//! reach `main`, the rest stop at glibc's `send` wrapper (glibc itself has
//! no frame pointers), which costs nothing the buckets need, since every
//! kernel frame and the leaf are always there. `just profile` builds it into
//! `target/frame-pointers/release`.

pub mod classify;
pub mod cli;
pub mod diff;
pub mod offcpu;
pub mod perf;
pub mod session;
pub mod stacks;
pub mod summary;
pub mod syscalls;
pub mod window;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use syscalls::SyscallProfile;

/// Which threads are the server's: by process id (the server's process
/// tree) or by command name (a process per connection, whose short-lived
/// children cannot be listed in advance).
pub enum Owner<'a> {
    /// Threads of these processes (tgids).
    Pids(&'a [u32]),
    /// Threads whose command is this.
    Comm(&'a str),
}

impl Owner<'_> {
    /// Whether a thread of process `pid` named `comm` is the server's.
    pub fn owns(&self, comm: &str, pid: u32) -> bool {
        match self {
            Owner::Pids(p) => p.contains(&pid),
            Owner::Comm(c) => comm == *c,
        }
    }
}

/// Everything one server's profile measured. Written as `profile.json`
/// beside the other files of its directory and read back for the combined
/// files, so `--replot` needs no new measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VariantProfile {
    /// The server.
    pub variant: String,
    /// The workload's name.
    pub workload: String,
    /// `GET /plaintext`
    pub request: String,
    /// Connections of the load.
    pub connections: u32,
    /// Length of the perf recording, seconds.
    pub record_s: f64,
    /// The server's CPU list.
    pub server_cpus: String,
    /// The client's (and perf's) CPU list.
    pub client_cpus: String,
    /// Threads (nginx: workers) the server ran with.
    pub server_threads: usize,
    /// Samples in the recording (each 250 µs of on-CPU time at perf's
    /// default 4 kHz).
    pub samples: u64,
    /// Every bucket, in [`classify::Bucket::ALL`] order.
    pub buckets: Vec<BucketShare>,
    /// Share of samples in user mode, percent.
    pub user_pct: f64,
    /// Share of samples in kernel mode, percent.
    pub kernel_pct: f64,
    /// Leaf functions with the most self samples.
    pub top_symbols: Vec<SymbolShare>,
    /// Of the samples with user frames, those whose user stack reaches the
    /// program's or a thread's entry.
    pub complete_user_stacks_pct: f64,
    /// req/s of the load during the recording (loadgen's figure over its
    /// whole run, warm-up included).
    pub load_req_per_s: f64,
    /// The server's CPU time during the recording (threads and children,
    /// from /proc) as a percent of one CPU: 100 per fully busy CPU.
    pub server_cpu_pct: f64,
    /// Requests the server completed during the recording, by its own
    /// counter (`/stats`; nginx's `stub_status`) read just before and just
    /// after it. 0 in a profile.json written before this field existed.
    #[serde(default)]
    pub window_requests: u64,
    /// The server's CPU time over the recording divided by
    /// `window_requests`, in microseconds: the absolute cost that each
    /// bucket's share splits (0 when unknown).
    #[serde(default)]
    pub cpu_us_per_request: f64,
    /// Where that CPU time came from (the process tree's /proc accounting,
    /// or the server CPUs' busy time split by their samples).
    #[serde(default)]
    pub cpu_time_source: String,
    /// How busy the server's CPUs were during the recording (mean over
    /// them, /proc/stat), percent: below 100 the server waited for work.
    #[serde(default)]
    pub server_cpus_busy_pct: f64,
    /// The system share of that CPU time by /proc's own accounting, a
    /// cross-check of the kernel share the samples give.
    pub proc_system_pct: f64,
    /// Syscalls per request and the mix.
    pub syscalls: SyscallProfile,
    /// Where the threads waited off the CPU (None: not recorded).
    #[serde(default)]
    pub off_cpu: Option<offcpu::OffCpuSummary>,
    /// The perf record command as run.
    pub perf_record: String,
    /// `perf version`.
    pub perf_version: String,
    /// Where it was measured.
    pub machine: Machine,
    /// Anything that makes a figure less than it seems (lost samples...).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// One bucket's share of a profile's samples.
pub struct BucketShare {
    /// The bucket's name.
    pub bucket: String,
    /// Samples in it.
    pub samples: u64,
    /// Its share, percent.
    pub share_pct: f64,
    /// Its share of the server's CPU microseconds per request (0 when the
    /// total is unknown).
    #[serde(default)]
    pub us_per_request: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// One leaf function's self time.
pub struct SymbolShare {
    /// `name` or `name [k]` for a kernel function.
    pub symbol: String,
    /// Its share of the samples, percent.
    pub self_pct: f64,
}
