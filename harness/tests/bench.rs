//! `harness bench` end to end: the real binary sweeping real variants (debug
//! builds: a smoke check of the plumbing and the files, not of the
//! numbers), a variant that cannot start, and the nginx config template
//! under `nginx -t` (skipped with a note when nginx is not installed; CI
//! installs it).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::rig::nginx;
use harness::schema::{BenchRow, SummaryRow};

/// Hang guard for one sweep (they take seconds).
const LIMIT: Duration = Duration::from_secs(180);

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

/// `harness bench --quick` over `NAME,blocking` where NAME is a fake
/// variant (the shell `script`) beside the real `blocking` and loadgen;
/// its output and the report directory.
fn bench_beside_a_fake(name: &str, script: &str) -> (Output, tempfile::TempDir) {
    let bins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(support::loadgen_bin(), bins.path().join("loadgen")).unwrap();
    let blocking = support::variant_bin("blocking");
    std::os::unix::fs::symlink(&blocking, bins.path().join("blocking")).unwrap();
    let fake = bins.path().join(name);
    fs::write(&fake, script).unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = harness(&[
        "bench",
        "--quick",
        "--conns",
        "50",
        "--variants",
        &format!("{name},blocking"),
        "--no-nginx",
        "--bin-dir",
        bins.path().to_str().unwrap(),
        "--out",
        &out_arg(out.path()),
    ]);
    (o, out)
}

/// Run `harness ARGS` with a hard deadline.
fn harness(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn harness");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > LIMIT {
            // SIGINT first: the harness stops its servers.
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

fn read_rows<T: serde::de::DeserializeOwned>(path: &Path, o: &Output) -> Vec<T> {
    let mut rdr = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), o.describe()));
    rdr.deserialize()
        .map(|r| r.unwrap_or_else(|e| panic!("{}: bad row: {e}\n{}", path.display(), o.describe())))
        .collect()
}

fn out_arg(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

#[test]
fn quick_sweep_of_two_variants_writes_well_formed_files() {
    // Builds the servers' binaries next to the harness when missing.
    support::variant_bin("epoll");
    support::variant_bin("blocking");
    let out = tempfile::tempdir().unwrap();
    let o = harness(&[
        "bench",
        "--quick",
        "--variants",
        "epoll,blocking",
        "--no-nginx",
        "--out",
        &out_arg(out.path()),
    ]);
    assert_eq!(o.code, Some(0), "{}", o.describe());

    let rows: Vec<BenchRow> = read_rows(&out.path().join("bench.csv"), &o);
    assert_eq!(
        rows.len(),
        4,
        "2 variants × 2 connection counts × 1 trial\n{}",
        o.describe()
    );
    for variant in ["epoll", "blocking"] {
        for conns in [50, 400] {
            let r = rows
                .iter()
                .find(|r| r.variant == variant && r.connections == conns)
                .unwrap_or_else(|| panic!("no row for {variant} c={conns}\n{}", o.describe()));
            let ctx = format!("{r:?}");
            assert_eq!(
                (r.workload.as_str(), r.trial, r.client.as_str()),
                ("plaintext", 1, "loadgen"),
                "{ctx}"
            );
            assert!(
                r.requests > 0 && r.req_per_s > 0.0 && r.duration_s > 0.0,
                "{ctx}"
            );
            assert!(r.cpu_us_per_req > 0.0, "{ctx}");
            let parts = r.user_us_per_req + r.system_us_per_req;
            assert!(
                (parts - r.cpu_us_per_req).abs() < 1e-6 * r.cpu_us_per_req.max(1.0),
                "{ctx}"
            );
            assert!(
                r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us,
                "{ctx}"
            );
            assert!(r.peak_rss_kib > 0, "{ctx}");
            assert_eq!(r.server_threads, 1, "{ctx}");
            assert!(
                !r.server_cpus.is_empty() && !r.client_cpus.is_empty(),
                "{ctx}"
            );
            assert!(
                !r.cpu_model.is_empty() && !r.kernel.is_empty() && !r.git_revision.is_empty(),
                "{ctx}"
            );
            assert!(r.cores >= 1, "{ctx}");
        }
    }

    let summary: Vec<SummaryRow> = read_rows(&out.path().join("summary.csv"), &o);
    assert_eq!(summary.len(), 4, "{summary:?}");
    assert!(
        summary.iter().all(|s| s.trials == 1 && s.req_per_s > 0.0),
        "{summary:?}"
    );

    let md = fs::read_to_string(out.path().join("summary.md")).expect("summary.md");
    for want in ["epoll", "blocking", &rows[0].git_revision, &rows[0].kernel] {
        assert!(md.contains(want), "summary.md lacks {want:?}:\n{md}");
    }
    let pngs: Vec<PathBuf> = fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    assert!(!pngs.is_empty(), "no PNG written\n{}", o.describe());
    for p in &pngs {
        let data = fs::read(p).unwrap();
        assert!(
            data.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            p.display()
        );
    }

    // One progress line per run on stderr, and the paths on stdout.
    for want in [
        "[1/4] epoll plaintext c=50 trial 1/1: ",
        "[4/4] blocking plaintext c=400 trial 1/1: ",
    ] {
        assert!(
            o.stderr.contains(want),
            "no progress line {want:?}\n{}",
            o.describe()
        );
    }
    assert!(
        o.stdout.contains("bench.csv") && o.stdout.contains("summary.md"),
        "{}",
        o.describe()
    );
}

#[test]
fn a_variant_that_cannot_start_is_reported_and_the_sweep_goes_on() {
    let (o, out) = bench_beside_a_fake(
        "epoll",
        "#!/bin/sh\necho 'epoll: cannot bind (simulated)' >&2\nexit 3\n",
    );
    assert_eq!(
        o.code,
        Some(1),
        "a failed variant makes the exit status 1\n{}",
        o.describe()
    );
    assert!(
        o.stderr.contains("epoll plaintext: did not start"),
        "{}",
        o.describe()
    );
    assert!(
        o.stderr.contains("cannot bind (simulated)"),
        "stderr tail missing\n{}",
        o.describe()
    );
    let rows: Vec<BenchRow> = read_rows(&out.path().join("bench.csv"), &o);
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.variant == "blocking"),
        "{rows:?}\n{}",
        o.describe()
    );
}

/// A variant that exits with `EXIT_UNAVAILABLE` (the kernel refuses
/// io_uring, here simulated by a script) is skipped with its reason: the
/// sweep goes on, and a skip is no failure.
#[test]
fn a_variant_the_kernel_refuses_is_skipped_with_its_reason() {
    let script = format!(
        "#!/bin/sh\necho 'io_uring is unavailable: io_uring_setup failed: Operation not permitted; \
         kernel.io_uring_disabled = 2 (0 enables it)' >&2\nexit {}\n",
        servers::variants::EXIT_UNAVAILABLE
    );
    let (o, out) = bench_beside_a_fake("uring", &script);
    assert_eq!(o.code, Some(0), "a skip is no failure\n{}", o.describe());
    assert!(
        o.stderr
            .contains("SKIPPED uring plaintext: io_uring is unavailable")
            && o.stderr.contains("kernel.io_uring_disabled = 2"),
        "the skip and its reason\n{}",
        o.describe()
    );
    let rows: Vec<BenchRow> = read_rows(&out.path().join("bench.csv"), &o);
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.variant == "blocking"),
        "{rows:?}\n{}",
        o.describe()
    );
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    let o = harness(&["bench", "--variants", "epol"]);
    assert_eq!(o.code, Some(2), "{}", o.describe());
    assert!(
        o.stderr.contains("unknown variant \"epol\""),
        "{}",
        o.describe()
    );
    let o = harness(&["bench", "--help"]);
    assert_eq!(o.code, Some(0), "{}", o.describe());
    assert!(
        o.stdout.contains("--workload") && o.stdout.contains("minutes"),
        "{}",
        o.describe()
    );
}

fn nginx_or_note(test: &str) -> Option<PathBuf> {
    let found = nginx::find();
    if found.is_none() {
        println!("note: {test} skipped: {}", nginx::INSTALL_HINT);
    }
    found
}

#[test]
fn nginx_template_passes_nginx_t() {
    let Some(bin) = nginx_or_note("nginx_template_passes_nginx_t") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let as_root = harness::rig::process::is_root();
    // As the template stands, and with open_file_cache on (static-1k-cached).
    for open_file_cache in [false, true] {
        let settings = nginx::Settings {
            port: support::dead_port(),
            root: root.path(),
            workers: 2,
            cpus: &[0],
            min_connections: 1200 + 256,
            max_nofile: (!as_root).then(|| {
                harness::rig::process::raise_nofile_limit().map_or(1024, |(_, hard)| hard)
            }),
            as_root,
            open_file_cache,
        };
        let prefix = nginx::Prefix::create(nginx::TEMPLATE, &settings).unwrap();
        let out = Command::new(&bin)
            .arg("-t")
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&prefix.conf)
            .arg("-e")
            .arg(&prefix.error_log)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("test is successful"),
            "nginx -t failed ({}):\n{text}\n--- config ---\n{}",
            out.status,
            fs::read_to_string(&prefix.conf).unwrap()
        );
        assert!(
            !text.contains("[warn]") && !text.contains("[alert]"),
            "{text}"
        );
    }
}

#[test]
fn nginx_runs_in_the_sweep_when_installed() {
    if nginx_or_note("nginx_runs_in_the_sweep_when_installed").is_none() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let o = harness(&[
        "bench",
        "--quick",
        "--conns",
        "50",
        "--variants",
        "nginx",
        "--workload",
        "static-1k",
        "--out",
        &out_arg(out.path()),
    ]);
    assert_eq!(o.code, Some(0), "{}", o.describe());
    let rows: Vec<BenchRow> = read_rows(&out.path().join("bench.csv"), &o);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.variant.as_str(), r.workload.as_str()),
        ("nginx", "static-1k")
    );
    assert!(r.req_per_s > 0.0 && r.cpu_us_per_req > 0.0, "{r:?}");
    assert_eq!(r.errors_status, 0, "{r:?}");
}

#[test]
fn compare_runs_one_build_against_itself() {
    let epoll = support::variant_bin("epoll");
    let dir = epoll.parent().unwrap().to_str().unwrap().to_string();
    let csv = tempfile::tempdir().unwrap();
    let csv_path = csv.path().join("compare.csv");
    let o = harness(&[
        "compare",
        "--old-bin-dir",
        &dir,
        "--new-bin-dir",
        &dir,
        "--variant",
        "epoll",
        "--conns",
        "50",
        "--pairs",
        "1",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--no-nginx",
        "--csv",
        csv_path.to_str().unwrap(),
    ]);
    assert_eq!(o.code, Some(0), "{}", o.describe());
    assert!(o.stdout.contains("new/old"), "{}", o.describe());
    let text = fs::read_to_string(&csv_path).unwrap();
    for want in ["old,50,1,", "new,50,1,", "old,50,median,", "new,50,median,"] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
}
