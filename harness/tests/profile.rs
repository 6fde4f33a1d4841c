//! `harness profile`: the bucket classifier on a `perf script` excerpt
//! recorded from the project's epoll server, the bottleneck-migration chart
//! from a fixed buckets.csv, the differential flame graphs `--replot` draws
//! from fixture profiles, the error messages, and, when perf is usable
//! on the machine, short real profiles (skipped with the reason printed
//! when perf is missing or not permitted; a perf that is permitted but fails
//! fails the test).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::machine::Machine;
use harness::profile::classify::{
    matches, split_annotation, Breakdown, Bucket, Classifier, OWNER_RULES,
};
use harness::profile::perf::{Perf, PerfError};
use harness::profile::{stacks, summary, VariantProfile};
use harness::report::{self, RunInfo};

const FIXTURE: &str = include_str!("fixtures/perf-script-epoll.txt");
/// A connection per request: the owner rules' samples.
const CLOSE_FIXTURE: &str = include_str!("fixtures/perf-script-close.txt");
const BUCKETS_CSV: &str = "tests/fixtures/buckets.csv";
const PROFILE_JSON: &str = include_str!("fixtures/profile-epoll.json");

/// The samples of the epoll fixture.
fn samples() -> Vec<String> {
    samples_of(FIXTURE)
}

/// The samples of a perf script fixture (its `#` comment lines dropped).
fn samples_of(fixture: &str) -> Vec<String> {
    let text: String = fixture
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    text.split("\n\n")
        .map(|s| s.trim_start_matches('\n'))
        .filter(|s| s.contains("cpu-clock:"))
        .map(|s| format!("{s}\n\n"))
        .collect()
}

struct Sample {
    leaf: String,
    parent: String,
    bucket: Bucket,
    decided_by: Option<String>,
    collapsed: String,
}

/// Each sample of the epoll fixture on its own: collapsed as the profiler
/// collapses a recording, then classified.
fn classified() -> Vec<Sample> {
    classified_of(FIXTURE)
}

fn classified_of(fixture: &str) -> Vec<Sample> {
    samples_of(fixture)
        .iter()
        .map(|s| {
            let collapsed = stacks::collapse(s.as_bytes()).expect("collapse");
            let line = collapsed.trim();
            assert_eq!(line.lines().count(), 1, "one stack per sample:\n{s}");
            let (stack, count) = line.rsplit_once(' ').expect("count");
            assert_eq!(count, "1", "a sample counts once: {line}");
            let frames: Vec<&str> = stack.split(';').skip(1).collect();
            let verdict = Classifier::new().classify(&frames);
            let name = |i: usize| {
                frames
                    .len()
                    .checked_sub(i)
                    .map(|j| split_annotation(frames[j]).0.to_string())
                    .unwrap_or_default()
            };
            Sample {
                leaf: name(1),
                parent: name(2),
                bucket: verdict.bucket,
                decided_by: verdict.decided_by,
                collapsed: line.to_string(),
            }
        })
        .collect()
}

/// (leaf, parent or "" for any, bucket): every sample of the fixture is
/// named here, with the reason in a comment where the leaf alone does not
/// say it.
const EXPECTED: &[(&str, &str, Bucket)] = &[
    // Pass-through: the unlock re-enabling interrupts is charged to its caller.
    (
        "_raw_spin_unlock_irqrestore",
        "sock_def_readable",
        Bucket::TcpIp,
    ),
    ("_raw_spin_unlock_irqrestore", "__mod_timer", Bucket::TcpIp), // sk_reset_timer
    (
        "_raw_spin_unlock_irqrestore",
        "enqueue_to_backlog",
        Bucket::TcpIp,
    ),
    ("servers::conn::Conn::process", "", Bucket::App),
    ("servers::http::response::write_head", "", Bucket::App),
    ("epoll::main", "", Bucket::App),
    ("servers::http::parser::scan", "", Bucket::App),
    ("__memmove_avx_unaligned_erms", "", Bucket::LibcAlloc),
    ("__send", "", Bucket::LibcAlloc),
    // The vDSO runs in user mode although perf names its module like the kernel's.
    ("__vdso_clock_gettime", "", Bucket::LibcAlloc),
    ("vfs_read", "", Bucket::VfsSendfile),
    ("fdget_pos", "", Bucket::VfsSendfile),
    ("sock_read_iter", "", Bucket::VfsSendfile),
    ("tcp_ack", "", Bucket::TcpIp),
    ("tcp_sendmsg_locked", "", Bucket::TcpIp),
    ("__inet_lookup_established", "", Bucket::TcpIp),
    // Compiler suffixes stripped before matching.
    ("__netif_receive_skb_core.constprop.0", "", Bucket::TcpIp),
    ("tcp_schedule_loss_probe.part.0", "", Bucket::TcpIp),
    ("__xfrm_policy_check2.constprop.0", "", Bucket::TcpIp),
    // Allocators pass through to the skb allocation that called them.
    ("kmem_cache_alloc_node_noprof", "", Bucket::TcpIp),
    // Softirq re-enable: the loopback receive it ran is TCP/IP.
    ("__local_bh_enable_ip", "", Bucket::TcpIp),
    ("__rcu_read_unlock", "", Bucket::TcpIp),
    // A list-debugging check passes through to epoll handing out events.
    (
        "__list_del_entry_valid_or_report",
        "ep_send_events",
        Bucket::Epoll,
    ),
    // Timekeeping matches nothing: its TCP caller decides.
    ("read_tsc", "", Bucket::TcpIp),
    ("_copy_to_iter", "", Bucket::Memcpy),
    ("__virt_addr_valid", "", Bucket::Memcpy),
    ("__check_object_size", "", Bucket::Memcpy),
    ("sock_poll", "", Bucket::Epoll),
    ("ep_item_poll.isra.0", "", Bucket::Epoll),
    ("ep_send_events", "", Bucket::Epoll),
    // First rule wins within a frame: tcp_poll is epoll's readiness check.
    ("tcp_poll", "", Bucket::Epoll),
    ("do_syscall_64", "", Bucket::SyscallEntry),
    ("finish_task_switch.isra.0", "", Bucket::Scheduler),
    ("_raw_spin_lock_bh", "", Bucket::FutexLocks),
    // An RCU callback freeing page tables, inside a timer interrupt.
    ("tlb_remove_table_rcu", "", Bucket::Process),
    ("unmap_page_range", "", Bucket::Process),
    // Timer-interrupt work: the interrupt entry ends the walk.
    ("rcu_core", "", Bucket::OtherKernel),
    ("handle_softirqs", "", Bucket::OtherKernel),
    // A kernel stack the unwinder lost after one thunk.
    ("__x86_indirect_thunk_rax", "", Bucket::OtherKernel),
];

#[test]
fn the_fixture_is_a_small_excerpt_of_the_epoll_server() {
    assert!(FIXTURE.len() < 50 * 1024, "{} bytes", FIXTURE.len());
    let s = samples();
    assert!(s.len() >= 30, "{} samples", s.len());
    assert!(
        s.iter().all(|x| x.starts_with("epoll ")),
        "not all from epoll"
    );
}

#[test]
fn known_stacks_land_in_their_buckets() {
    let all = classified();
    for s in &all {
        let exp = EXPECTED
            .iter()
            .find(|(leaf, parent, _)| *leaf == s.leaf && (parent.is_empty() || *parent == s.parent))
            .unwrap_or_else(|| {
                panic!(
                    "fixture sample with leaf {} < {} has no expectation: {}",
                    s.leaf, s.parent, s.collapsed
                )
            });
        assert_eq!(
            s.bucket, exp.2,
            "{} < {} (decided by {:?}): {}",
            s.leaf, s.parent, s.decided_by, s.collapsed
        );
    }
    for (leaf, parent, _) in EXPECTED {
        assert!(
            all.iter()
                .any(|s| s.leaf == *leaf && (parent.is_empty() || s.parent == *parent)),
            "no fixture sample for the expectation {leaf} < {parent}"
        );
    }
    // Every bucket appears at least once in the fixtures (a connection and
    // process creation only in the one with a connection per request).
    let close = classified_of(CLOSE_FIXTURE);
    for b in Bucket::ALL {
        assert!(
            all.iter().chain(&close).any(|s| s.bucket == b),
            "no sample in {b}"
        );
    }
}

/// (leaf, parent, bucket, frame that decides) for every sample of the
/// connection-per-request fixture: what runs under an owner is the owner's
/// whatever it is (a copy, TCP, the VFS, the allocator), except a context
/// switch.
const CLOSE_EXPECTED: &[(&str, &str, Bucket, &str)] = &[
    // accept(2): the socket's dentry made (a copy inside it), the address copied out
    (
        "__pi_memcpy",
        "__d_alloc",
        Bucket::Connection,
        "d_alloc_pseudo",
    ),
    (
        "_copy_to_user",
        "move_addr_to_user",
        Bucket::Connection,
        "do_accept",
    ),
    // a blocking accept waiting is still the scheduler
    (
        "finish_task_switch.isra.0",
        "__schedule",
        Bucket::Scheduler,
        "finish_task_switch",
    ),
    // the blocking driver's timeouts, set on each new socket
    (
        "sock_copy_user_timeval",
        "sock_set_timeout",
        Bucket::Connection,
        "do_sock_setsockopt",
    ),
    // close(2): the FIN sent, and the client's loopback receive of it
    (
        "__tcp_transmit_skb",
        "tcp_write_xmit",
        Bucket::Connection,
        "__tcp_close",
    ),
    (
        "sock_def_readable",
        "tcp_data_queue",
        Bucket::Connection,
        "__tcp_close",
    ),
    ("tcp_fin", "tcp_data_queue", Bucket::Connection, "tcp_fin"),
    // the socket's dentry and inode freed
    (
        "evict",
        "__dentry_kill",
        Bucket::Connection,
        "__dentry_kill",
    ),
    // in the client's context: the server's half of the handshake, time-wait, destruction
    (
        "tcp_select_initial_window",
        "tcp_openreq_init_rwin",
        Bucket::Connection,
        "tcp_conn_request",
    ),
    (
        "inet_twsk_deschedule_put",
        "tcp_v4_rcv",
        Bucket::Connection,
        "inet_twsk_deschedule_put",
    ),
    (
        "bpf_sk_storage_free",
        "__sk_destruct",
        Bucket::Connection,
        "__sk_destruct",
    ),
    (
        "hrtimer_try_to_cancel",
        "tcp_done",
        Bucket::Connection,
        "tcp_done",
    ),
    // fork: the address space copied, the child's first switch in, its file
    // pages faulted in, its exit and its reaping; and an exec
    ("copy_page_range", "dup_mmap", Bucket::Process, "dup_mmap"),
    (
        "finish_task_switch.isra.0",
        "schedule_tail",
        Bucket::Scheduler,
        "finish_task_switch",
    ),
    (
        "filemap_map_pages",
        "do_fault",
        Bucket::Process,
        "exc_page_fault",
    ),
    ("kmem_cache_free", "do_exit", Bucket::Process, "do_exit"),
    (
        "free_unref_folios",
        "folios_put_refs",
        Bucket::Process,
        "exit_mmap",
    ),
    (
        "_raw_spin_unlock_irq",
        "wait_consider_task",
        Bucket::Process,
        "wait_consider_task",
    ),
    (
        "current_time",
        "atime_needs_update",
        Bucket::Process,
        "load_elf_binary",
    ),
];

#[test]
fn owners_take_what_runs_under_them_but_the_scheduler() {
    assert!(
        CLOSE_FIXTURE.len() < 50 * 1024,
        "{} bytes",
        CLOSE_FIXTURE.len()
    );
    let all = classified_of(CLOSE_FIXTURE);
    assert_eq!(
        all.len(),
        CLOSE_EXPECTED.len(),
        "one expectation per sample"
    );
    for s in &all {
        let (_, _, bucket, decider) = CLOSE_EXPECTED
            .iter()
            .find(|(leaf, parent, _, _)| *leaf == s.leaf && *parent == s.parent)
            .unwrap_or_else(|| panic!("no expectation for {}", s.collapsed));
        assert_eq!(
            (s.bucket, s.decided_by.as_deref()),
            (*bucket, Some(*decider)),
            "{}",
            s.collapsed
        );
    }
}

#[test]
fn every_owner_rule_decides_a_fixture_sample() {
    let all = classified_of(CLOSE_FIXTURE);
    for (i, rule) in OWNER_RULES.iter().enumerate() {
        assert!(
            all.iter().any(|s| s.bucket == rule.bucket
                && s.decided_by
                    .as_deref()
                    .is_some_and(|d| rule.patterns.iter().any(|p| matches(p, d)))),
            "owner rule {i} ({}: {:?}...) decides no sample of the fixture",
            rule.bucket,
            &rule.patterns[..2]
        );
    }
}

#[test]
fn suffixes_and_pass_through_frames_name_the_deciding_caller() {
    let all = classified();
    let decided = |leaf: &str, parent: &str| -> Option<String> {
        all.iter()
            .find(|s| s.leaf == leaf && (parent.is_empty() || s.parent == parent))
            .unwrap_or_else(|| panic!("no sample {leaf}"))
            .decided_by
            .clone()
    };
    assert_eq!(
        decided("finish_task_switch.isra.0", "").as_deref(),
        Some("finish_task_switch")
    );
    assert_eq!(
        decided("__netif_receive_skb_core.constprop.0", "").as_deref(),
        Some("__netif_receive_skb_core")
    );
    assert_eq!(
        decided("_raw_spin_unlock_irqrestore", "sock_def_readable").as_deref(),
        Some("sock_def_readable")
    );
    assert_eq!(
        decided("kmem_cache_alloc_node_noprof", "").as_deref(),
        Some("__alloc_skb")
    );
    // The catch-all names no rule.
    assert_eq!(decided("rcu_core", ""), None);
}

#[test]
fn shares_sum_to_100_and_every_sample_is_counted_once() {
    let collapsed = stacks::collapse(FIXTURE.as_bytes()).unwrap();
    let b = Breakdown::from_collapsed(&collapsed).unwrap();
    assert_eq!(b.total as usize, samples().len());
    assert_eq!(b.counts.iter().sum::<u64>(), b.total);
    let sum: f64 = Bucket::ALL.iter().map(|x| b.share(*x)).sum();
    assert!((sum - 100.0).abs() < 1e-9, "{sum}");
    let user = b.share(Bucket::App) + b.share(Bucket::LibcAlloc);
    assert!((user + b.kernel_share() - 100.0).abs() < 1e-9);
    // The same counts whether the samples are collapsed together or one by one.
    for bucket in Bucket::ALL {
        let one_by_one = classified().iter().filter(|s| s.bucket == bucket).count();
        assert_eq!(b.count(bucket) as usize, one_by_one, "{bucket}");
    }
}

fn info() -> RunInfo {
    RunInfo {
        machine: Machine {
            cpu_model: "Test CPU".into(),
            cores: 2,
            kernel: "6.1.0-test".into(),
            git_revision: "0123456789ab".into(),
        },
        settings: vec![("load".into(), "GET /plaintext at 400 connections".into())],
        cpu_chart_connections: 400,
    }
}

/// (width, height) from a PNG's IHDR, after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    (be(16), be(20))
}

#[test]
fn the_migration_chart_renders_from_a_fixed_buckets_csv() {
    let rows = summary::read_buckets_csv(Path::new(BUCKETS_CSV)).unwrap();
    let bars = summary::bars(&rows, report::View::Shares);
    let names: Vec<&str> = bars.iter().map(|b| b.variant.as_str()).collect();
    assert_eq!(
        names,
        ["blocking", "threadpool", "epoll", "epoll-threads", "nginx"]
    );
    for bar in &bars {
        let sum: f64 = bar.shares.iter().map(|(_, s)| s).sum();
        assert!((sum - 100.0).abs() < 0.01, "{}: {sum}", bar.variant);
        assert_eq!(bar.shares.len(), Bucket::ALL.len());
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("bottleneck-migration.png");
    report::render_buckets(&png, &bars, &info(), report::View::Shares).unwrap();
    let bytes = fs::read(&png).unwrap();
    assert_eq!(png_size(&bytes), (1200, 700));
    // A blank or near-blank page compresses to a few KiB; bars, labels and
    // the legend do not.
    assert!(bytes.len() > 30_000, "{} bytes", bytes.len());
    assert!(report::render_buckets(&png, &[], &info(), report::View::Shares).is_err());
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// Hang guard for one harness run.
const LIMIT: Duration = Duration::from_secs(120);

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Run `harness ARGS` (with `path` as PATH when given) under a deadline.
fn harness(args: &[&str], path: Option<&Path>) -> Output {
    harness_in(None, args, path)
}

/// [`harness`] in the working directory `cwd` when given.
fn harness_in(cwd: Option<&Path>, args: &[&str], path: Option<&Path>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("spawn harness");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > LIMIT {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(3));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = Output {
        code: status.and_then(|s| s.code()),
        stdout: fs::read_to_string(out).unwrap_or_default(),
        stderr: fs::read_to_string(err).unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "harness {args:?} outlived {LIMIT:?}\n{}",
        o.describe()
    );
    o
}

#[test]
fn missing_perf_names_the_package_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let o = harness(&["profile", "--variant", "epoll"], Some(empty.path()));
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert!(
        o.stderr.contains("perf not found") && o.stderr.contains("apt-get install linux-perf"),
        "{}",
        o.describe()
    );
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    let o = harness(&["profile"], None);
    assert_eq!(o.code, Some(2), "{}", o.describe());
    assert!(o.stderr.contains("--all"), "{}", o.describe());
    let o = harness(&["profile", "--variant", "epol"], None);
    assert_eq!(o.code, Some(2), "{}", o.describe());
    assert!(o.stderr.contains("unknown variant"), "{}", o.describe());
}

/// A real profile.json (epoll's, from `harness profile --all`) made into
/// `variant`'s with `samples` samples, `cpu_us` µs per request and only
/// the given buckets (share %), written to `dir/variant/`, with
/// `stacks` as its stacks.folded when given.
fn fixture_profile(
    dir: &Path,
    variant: &str,
    cpu_us: f64,
    shares: &[(&str, f64)],
    stacks: Option<&str>,
) {
    let mut p: serde_json::Value = serde_json::from_str(PROFILE_JSON).unwrap();
    p["variant"] = variant.into();
    p["samples"] = 100.into();
    p["cpu_us_per_request"] = cpu_us.into();
    for b in p["buckets"].as_array_mut().unwrap() {
        let share = shares
            .iter()
            .find(|(name, _)| b["bucket"] == *name)
            .map_or(0.0, |s| s.1);
        b["samples"] = (share as u64).into();
        b["share_pct"] = share.into();
        b["us_per_request"] = (share * cpu_us / 100.0).into();
    }
    let d = dir.join(variant);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("profile.json"), p.to_string()).unwrap();
    if let Some(text) = stacks {
        fs::write(d.join("stacks.folded"), text).unwrap();
    }
}

#[test]
fn replot_draws_the_differential_flame_graphs_it_has_stacks_for() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("profiles");
    // threadpool's stacks.folded is not on disk (as in a fresh checkout).
    fixture_profile(
        &out,
        "threadpool",
        20.0,
        &[("scheduler", 50.0), ("app", 50.0)],
        None,
    );
    let epoll = "epoll;main;epoll_wait;do_syscall_64_[k];__schedule_[k] 30\nepoll;main;parse 70\n";
    fixture_profile(
        &out,
        "epoll",
        10.0,
        &[("scheduler", 30.0), ("app", 70.0)],
        Some(epoll),
    );
    let nginx = "nginx;[nginx];do_syscall_64_[k];__schedule_[k] 10\nnginx;[nginx] 90\n";
    fixture_profile(
        &out,
        "nginx",
        8.0,
        &[("scheduler", 10.0), ("app", 90.0)],
        Some(nginx),
    );
    let o = harness_in(
        Some(root.path()),
        &[
            "profile",
            "--replot",
            "--out",
            "profiles",
            "--results",
            "results",
        ],
        None,
    );
    assert_eq!(o.code, Some(0), "{}", o.describe());
    assert!(
        o.stdout.contains("diff/epoll-vs-nginx.svg"),
        "{}",
        o.describe()
    );

    let svg = non_empty(&out.join("diff/epoll-vs-nginx.svg"), &o);
    assert!(
        svg.contains("epoll → nginx: differential flame graph"),
        "{}",
        &svg[..600]
    );
    // 8 µs per request in all: every frame's width is in ns per request.
    assert!(svg.contains("server (8,000 ns/request"), "{svg}");
    assert!(!out.join("diff/threadpool-vs-epoll.svg").exists());

    let md = fs::read_to_string(root.path().join("results/summary.md")).unwrap();
    // scheduler: 3.0 → 0.8 µs/request; `[nginx]`: 0 → 7.2 µs/request of self time.
    let line = "- [epoll vs nginx](../profiles/diff/epoll-vs-nginx.svg): nginx spends 2.20 \
                µs/request less in scheduler (3.00 → 0.80; all CPU 10.00 → 8.00 µs/request); the \
                largest single function change is `[nginx]` (user, +7.20 µs/request of self time).";
    assert!(md.contains(line), "{md}");
    assert!(
        md.contains("- threadpool vs epoll: not drawn: no stacks.folded for threadpool"),
        "{md}"
    );
}

/// None (with the reason printed) when perf is missing or not permitted
/// here; a perf that is there and permitted but fails its check panics.
fn usable_perf(test: &str) -> Option<Perf> {
    let perf = match Perf::locate() {
        Ok(p) => p,
        Err(e) => {
            println!("note: {test} skipped: {e}");
            return None;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    match perf.check(dir.path()) {
        Ok(()) => Some(perf),
        Err(e @ PerfError::NotPermitted(_)) | Err(e @ PerfError::Missing(_)) => {
            println!("note: {test} skipped: {e}");
            None
        }
        Err(e @ PerfError::Broken(_)) => panic!("perf is installed and permitted but fails: {e}"),
    }
}

fn non_empty(path: &Path, o: &Output) -> String {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), o.describe()));
    assert!(
        !text.trim().is_empty(),
        "{} is empty\n{}",
        path.display(),
        o.describe()
    );
    text
}

#[test]
fn a_short_profile_of_epoll_writes_all_four_files() {
    if usable_perf("a_short_profile_of_epoll_writes_all_four_files").is_none() {
        return;
    }
    let epoll = support::variant_bin("epoll");
    let bins = epoll.parent().unwrap().to_str().unwrap().to_string();
    let out = tempfile::tempdir().unwrap();
    let results = tempfile::tempdir().unwrap();
    let (out_s, results_s) = (
        out.path().to_str().unwrap().to_string(),
        results.path().to_str().unwrap().to_string(),
    );
    let o = harness(
        &[
            "profile",
            "--variant",
            "epoll",
            "--conns",
            "50",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--syscall-duration",
            "1s",
            "--off-cpu-duration",
            "1s",
            "--bin-dir",
            &bins,
            "--out",
            &out_s,
            "--results",
            &results_s,
        ],
        None,
    );
    assert_eq!(o.code, Some(0), "{}", o.describe());
    let dir = out.path().join("epoll");
    costed_per_request(&dir, &o);
    // Off the CPU: epoll under a load that does not saturate it waits in
    // epoll_wait, and that is where its off-CPU graph says it waited.
    let offcpu = non_empty(&dir.join("offcpu.svg"), &o);
    assert!(
        offcpu.contains("<svg") && offcpu.contains("epoll_wait"),
        "{}",
        &offcpu[..300]
    );
    let report = non_empty(&dir.join("report.txt"), &o);
    assert!(
        report.contains("cpu-clock") && report.contains("# Buckets"),
        "{report}"
    );
    let svg = non_empty(&dir.join("flamegraph.svg"), &o);
    assert!(
        svg.contains("<svg") && svg.contains("do_syscall_64"),
        "{}",
        &svg[..300]
    );
    let syscalls = non_empty(&dir.join("syscalls.txt"), &o);
    assert!(syscalls.contains("syscalls/request"), "{syscalls}");
    non_empty(&dir.join("buckets.csv"), &o);
    let rows = summary::read_buckets_csv(&dir.join("buckets.csv")).unwrap();
    assert_eq!(rows.len(), Bucket::ALL.len());
    let sum: f64 = rows.iter().map(|r| r.share_pct).sum();
    assert!((sum - 100.0).abs() < 0.01, "{rows:?}");
    assert!(rows.iter().all(|r| r.variant == "epoll"));
    assert!(rows.iter().map(|r| r.samples).sum::<u64>() > 0);
    assert!(dir.join("perf.data").is_file());

    // The combined files from what is on disk: the summary.md section goes
    // after the bench's text, and a second run replaces it in place.
    let md = results.path().join("summary.md");
    fs::write(&md, "# Bench results\n\nbench table\n").unwrap();
    for _ in 0..2 {
        let o = harness(
            &[
                "profile",
                "--replot",
                "--out",
                &out_s,
                "--results",
                &results_s,
            ],
            None,
        );
        assert_eq!(o.code, Some(0), "{}", o.describe());
    }
    let text = fs::read_to_string(&md).unwrap();
    assert!(
        text.starts_with("# Bench results\n\nbench table\n"),
        "{text}"
    );
    assert_eq!(text.matches(summary::BEGIN).count(), 1, "{text}");
    assert!(text.contains("| epoll |"), "{text}");
    assert!(
        text.contains("CPU µs/req") && text.contains("Off the CPU"),
        "{text}"
    );
    for chart in [summary::CHART_FILE, summary::COST_CHART_FILE] {
        let png = fs::read(results.path().join(chart)).unwrap();
        assert_eq!(png_size(&png), (1200, 700), "{chart}");
    }
    non_empty(&out.path().join("buckets.csv"), &o);
}

/// The profile in `dir` has CPU µs per request from its own window, and the
/// buckets' µs add up to it.
fn costed_per_request(dir: &Path, o: &Output) -> VariantProfile {
    let text = non_empty(&dir.join("profile.json"), o);
    let p: VariantProfile = serde_json::from_str(&text).unwrap();
    assert!(p.window_requests > 0, "{text}");
    assert!(p.cpu_us_per_request > 0.0, "{text}");
    let sum: f64 = p.buckets.iter().map(|b| b.us_per_request).sum();
    assert!(
        (sum - p.cpu_us_per_request).abs() < 1e-6 * p.cpu_us_per_request.max(1.0),
        "{sum} vs {text}"
    );
    let rows = summary::read_buckets_csv(&dir.join("buckets.csv")).unwrap();
    let csv_sum: f64 = rows.iter().map(|r| r.us_per_request).sum();
    assert!(
        (csv_sum - p.cpu_us_per_request).abs() < 0.01,
        "{csv_sum} vs {text}"
    );
    p
}

#[test]
fn nginx_is_costed_by_its_own_request_counter() {
    if usable_perf("nginx_is_costed_by_its_own_request_counter").is_none() {
        return;
    }
    if harness::rig::nginx::find().is_none() {
        println!(
            "note: nginx_is_costed_by_its_own_request_counter skipped: {}",
            harness::rig::nginx::INSTALL_HINT
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let results = tempfile::tempdir().unwrap();
    let o = harness(
        &[
            "profile",
            "--variant",
            "nginx",
            "--conns",
            "20",
            "--duration",
            "1s",
            "--warmup",
            "500ms",
            "--syscall-duration",
            "1s",
            "--off-cpu-duration",
            "0s",
            "--out",
            out.path().to_str().unwrap(),
            "--results",
            results.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.code, Some(0), "{}", o.describe());
    let dir = out.path().join("nginx");
    let p = costed_per_request(&dir, &o);
    assert!(p.off_cpu.is_none(), "--off-cpu-duration 0s records none");
    assert!(!dir.join("offcpu.svg").exists());
}

/// A fake `epoll` (Python, when there is one): serves /health and
/// /plaintext like a variant, then crashes with a message 1.5 s into the
/// load.
const FAKE_SERVER: &str = r#"#!/usr/bin/env python3
import socket, sys, threading, time, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1024)
print("listening on 127.0.0.1:%d" % s.getsockname()[1], flush=True)
first = []
def crash_later():
    time.sleep(1.5)
    sys.stderr.write("fake epoll: simulated crash under load\n"); sys.stderr.flush()
    os._exit(3)
def serve(c):
    buf = b""
    while True:
        d = c.recv(65536)
        if not d: return
        buf += d
        while b"\r\n\r\n" in buf:
            head, buf = buf.split(b"\r\n\r\n", 1)
            body = b"OK" if b"/health" in head.split(b"\r\n")[0] else b"Hello, World!"
            if b"/plaintext" in head and not first:
                first.append(1); threading.Thread(target=crash_later, daemon=True).start()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            if b"connection: close" in head.lower():
                c.close(); return
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn a_variant_that_dies_under_profiling_is_reported() {
    if usable_perf("a_variant_that_dies_under_profiling_is_reported").is_none() {
        return;
    }
    if Command::new("python3").arg("--version").output().is_err() {
        println!("note: a_variant_that_dies_under_profiling_is_reported skipped: no python3 for the fake server");
        return;
    }
    let bins = tempfile::tempdir().unwrap();
    let fake = bins.path().join("epoll");
    fs::write(&fake, FAKE_SERVER).unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = harness(
        &[
            "profile",
            "--variant",
            "epoll",
            "--conns",
            "10",
            "--duration",
            "3s",
            "--warmup",
            "500ms",
            "--bin-dir",
            bins.path().to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
            "--results",
            out.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert!(o.stderr.contains("epoll died"), "{}", o.describe());
    assert!(
        o.stderr.contains("simulated crash under load"),
        "stderr tail missing\n{}",
        o.describe()
    );
    assert!(!out.path().join("epoll/report.txt").exists());
}
