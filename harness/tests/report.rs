//! The bench report through its public entry point: every file written,
//! the CSVs readable back, medians right, PNGs real images of the promised
//! size, summary.md linking them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use harness::machine::Machine;
use harness::report::{write_all, RunInfo};
use harness::schema::{BenchRow, SummaryRow};

const VARIANTS: [&str; 4] = ["nginx", "epoll", "blocking", "threadpool"];
const CONNECTIONS: [u32; 3] = [50, 200, 800];

fn machine() -> Machine {
    Machine {
        cpu_model: "Test CPU, 3.0GHz \"quoted\"".to_string(),
        cores: 8,
        kernel: "6.1.0-test".to_string(),
        git_revision: "0123456789ab".to_string(),
    }
}

fn info(cpu_chart_connections: u32) -> RunInfo {
    RunInfo {
        machine: machine(),
        settings: vec![
            ("duration".to_string(), "5s".to_string()),
            ("trials".to_string(), "2".to_string()),
            ("server CPUs".to_string(), "0-3".to_string()),
            ("client CPUs".to_string(), "4-7".to_string()),
            ("client".to_string(), "loadgen -t4".to_string()),
        ],
        cpu_chart_connections,
    }
}

/// A trial with plain numbers derived from its inputs; `rps` drives the rest.
fn row(variant: &str, connections: u32, trial: u32, rps: f64) -> BenchRow {
    let duration_s = 5.0;
    let requests = (rps * duration_s) as u64;
    let user_us = 6.0 + f64::from(trial);
    let system_us = 4.0;
    BenchRow {
        variant: variant.to_string(),
        workload: "plaintext".to_string(),
        connections,
        trial,
        client: "loadgen".to_string(),
        server_threads: 4,
        server_cpus: "0-3".to_string(),
        client_cpus: "4-7".to_string(),
        duration_s,
        requests,
        req_per_s: rps,
        p50_us: f64::from(connections) * 10.0 + f64::from(trial),
        p90_us: f64::from(connections) * 15.0,
        p99_us: f64::from(connections) * 20.0 * f64::from(trial),
        p99_9_us: f64::from(connections) * 30.0,
        max_us: f64::from(connections) * 50.0,
        errors_connect: 0,
        errors_read: 0,
        errors_write: 0,
        errors_timeout: 0,
        errors_status: 0,
        cpu_user_s: user_us * requests as f64 / 1e6,
        cpu_system_s: system_us * requests as f64 / 1e6,
        cpu_us_per_req: user_us + system_us,
        user_us_per_req: user_us,
        system_us_per_req: system_us,
        ctx_switches_voluntary: 1000 * u64::from(trial),
        ctx_switches_involuntary: 10,
        peak_rss_kib: 4096 + u64::from(trial),
        cpu_model: machine().cpu_model,
        cores: 8,
        kernel: machine().kernel,
        git_revision: machine().git_revision,
    }
}

/// 4 variants × 3 connection counts × 2 trials, in the runner's order.
fn rows() -> Vec<BenchRow> {
    let mut rows = Vec::new();
    for (v, variant) in VARIANTS.iter().enumerate() {
        for &c in &CONNECTIONS {
            for trial in 1..=2 {
                let rps =
                    10_000.0 * (v as f64 + 1.0) + f64::from(c) * 10.0 + f64::from(trial) * 100.0;
                let mut r = row(variant, c, trial, rps);
                if *variant == "epoll" && c == 200 {
                    // Hand-checked below: errors 3 and 0 → median 1.5, rounded up to 2.
                    if trial == 1 {
                        r.errors_connect = 1;
                        r.errors_read = 2;
                    }
                }
                rows.push(r);
            }
        }
    }
    rows
}

fn summary_of<'a>(summary: &'a [SummaryRow], variant: &str, connections: u32) -> &'a SummaryRow {
    summary
        .iter()
        .find(|r| r.variant == variant && r.connections == connections)
        .unwrap_or_else(|| panic!("no summary row for {variant} @ {connections}"))
}

/// Width and height from a PNG's IHDR, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = fs::read(path).unwrap();
    assert!(
        bytes.len() > 33,
        "{} is too short for a PNG",
        path.display()
    );
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn writes_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("results");
    let input = rows();
    let written = write_all(&dir, &input, &info(200)).unwrap();

    assert_eq!(
        names(&written),
        [
            "bench.csv",
            "summary.csv",
            "req_per_s_plaintext.png",
            "p99_plaintext.png",
            "cpu_per_req_plaintext.png",
            "summary.md",
        ]
    );
    for path in &written {
        assert!(path.starts_with(&dir), "{}", path.display());
        assert!(
            fs::metadata(path).unwrap().len() > 0,
            "{} is empty",
            path.display()
        );
    }

    // bench.csv: header from the field names, then the rows as given.
    let bench = dir.join("bench.csv");
    let header = fs::read_to_string(&bench).unwrap();
    assert!(header.starts_with("variant,workload,connections,trial,client,"));
    let back: Vec<BenchRow> = csv::Reader::from_path(&bench)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back, input);

    // summary.csv: one row per point, hand-computed medians.
    let summary: Vec<SummaryRow> = csv::Reader::from_path(dir.join("summary.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(summary.len(), VARIANTS.len() * CONNECTIONS.len());
    // Report order: variants blocking, threadpool, epoll, nginx last.
    let order: Vec<&str> = summary.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(&order[..3], ["blocking"; 3]);
    assert_eq!(&order[3..6], ["threadpool"; 3]);
    assert_eq!(&order[6..9], ["epoll"; 3]);
    assert_eq!(&order[9..], ["nginx"; 3]);

    // epoll (index 1) at 200: req/s trials 20000+2000+100 and +200 → 22150.
    let epoll = summary_of(&summary, "epoll", 200);
    assert_eq!(epoll.trials, 2);
    assert_eq!(epoll.req_per_s, 22_150.0);
    // p99: 200*20*1 and 200*20*2 → 6000.
    assert_eq!(epoll.p99_us, 6000.0);
    assert_eq!(epoll.errors, 2);
    // user 7 and 8 → 7.5; system 4; total 11 and 12 → 11.5.
    assert_eq!(epoll.user_us_per_req, 7.5);
    assert_eq!(epoll.system_us_per_req, 4.0);
    assert_eq!(epoll.cpu_us_per_req, 11.5);
    assert_eq!(epoll.ctx_switches_voluntary, 1500);
    assert_eq!(epoll.peak_rss_kib, 4098); // 4097 and 4098 → 4097.5, half up
    assert_eq!(epoll.cpu_model, machine().cpu_model);
    assert_eq!(epoll.git_revision, machine().git_revision);
    // nginx (index 0) at 800: 10000+8000+100 and +200 → 18150; no errors.
    let nginx = summary_of(&summary, "nginx", 800);
    assert_eq!(nginx.req_per_s, 18_150.0);
    assert_eq!(nginx.errors, 0);
    assert_eq!(nginx.p50_us, 8001.5);

    for name in [
        "req_per_s_plaintext.png",
        "p99_plaintext.png",
        "cpu_per_req_plaintext.png",
    ] {
        assert_eq!(png_size(&dir.join(name)), (1200, 700), "{name}");
    }

    let md = fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains(
        "| variant | workload | conns | req/s | p50 ms | p99 ms | errors | CPU µs/req (user + sys) | ctx switches (vol / invol) | peak RSS MiB |"
    ));
    for name in [
        "req_per_s_plaintext.png",
        "p99_plaintext.png",
        "cpu_per_req_plaintext.png",
    ] {
        assert!(
            md.contains(&format!("]({name})")),
            "no link to {name}:\n{md}"
        );
    }
    assert!(
        md.contains("| epoll | plaintext | 200 | 22,150 | 2.00 | 6.00 | 2 | 11.5 (7.50 + 4.00) |"),
        "{md}"
    );
    assert!(md.contains("Test CPU, 3.0GHz"));
    assert!(md.contains("0123456789ab"));
    assert!(md.contains("loadgen -t4"));
    // Fastest non-nginx variant at 50: threadpool (index 3) 40650 vs nginx 10650.
    assert!(
        md.contains("50 → **threadpool** 40,650 req/s (3.82× nginx)"),
        "{md}"
    );
}

#[test]
fn the_profile_section_of_summary_md_survives_a_bench_report() {
    use harness::profile::summary::{BEGIN, END};
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("summary.md");
    let section = format!("{BEGIN}\n## Profiles\n\nkept\n{END}");
    fs::write(&md, format!("# old bench text\n\n{section}\n")).unwrap();
    for _ in 0..2 {
        write_all(tmp.path(), &rows(), &info(200)).unwrap();
    }
    let text = fs::read_to_string(&md).unwrap();
    assert!(text.starts_with("# Bench results"), "{text}");
    assert!(!text.contains("old bench text"), "{text}");
    assert_eq!(text.matches(BEGIN).count(), 1, "{text}");
    assert!(text.trim_end().ends_with(&section), "{text}");
}

#[test]
fn empty_input_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = write_all(&tmp.path().join("r"), &[], &info(200)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("no bench rows"), "{err}");
}

#[test]
fn odd_trials_zero_requests_nan_and_missing_cpu_point() {
    let tmp = tempfile::tempdir().unwrap();
    let mut input = vec![
        row("epoll", 100, 1, 5000.0),
        row("epoll", 100, 2, 9000.0),
        row("epoll", 100, 3, 7000.0),
    ];
    // A trial that completed nothing: its CPU per request counts as 0.
    let mut dead = row("fork", 100, 1, 0.0);
    dead.requests = 0;
    dead.cpu_us_per_req = f64::NAN;
    dead.user_us_per_req = f64::INFINITY;
    dead.system_us_per_req = f64::NAN;
    dead.p99_us = f64::NAN;
    input.push(dead);
    // Another workload, only nginx, named with a character unfit for a file.
    let mut other = row("nginx", 400, 1, 1234.5);
    other.workload = "static 1k".to_string();
    input.push(other);

    let dir = tmp.path();
    let written = write_all(dir, &input, &info(1200)).unwrap();
    assert_eq!(
        names(&written),
        [
            "bench.csv",
            "summary.csv",
            "req_per_s_plaintext.png",
            "p99_plaintext.png",
            "cpu_per_req_plaintext.png",
            "req_per_s_static_1k.png",
            "p99_static_1k.png",
            "cpu_per_req_static_1k.png",
            "summary.md",
        ]
    );
    for p in written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
    {
        assert_eq!(png_size(p), (1200, 700), "{}", p.display());
    }

    let summary: Vec<SummaryRow> = csv::Reader::from_path(dir.join("summary.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(summary.len(), 3);
    let epoll = summary_of(&summary, "epoll", 100);
    assert_eq!(epoll.trials, 3);
    assert_eq!(epoll.req_per_s, 7000.0);
    assert_eq!(epoll.p50_us, 1002.0);
    let fork = summary_of(&summary, "fork", 100);
    assert_eq!(fork.cpu_us_per_req, 0.0);
    assert_eq!(fork.user_us_per_req, 0.0);
    assert_eq!(fork.system_us_per_req, 0.0);
    assert!(fork.p99_us.is_nan());

    let md = fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("completed no request"), "{md}");
    assert!(md.contains("not numbers"), "{md}");
    assert!(md.contains("no point at 1200 connections"), "{md}");
    assert!(md.contains("](req_per_s_static_1k.png)"), "{md}");
    assert!(md.contains("(nginx not measured)"), "{md}");
}

/// Renders a full-size sample (7 variants + nginx × 6 connection counts ×
/// 3 trials) into `$REPORT_SAMPLE_DIR` for looking at the charts:
/// `REPORT_SAMPLE_DIR=/tmp/s cargo test -p harness --test report -- --ignored`.
#[test]
#[ignore = "writes sample charts for a human to look at"]
fn sample_report() {
    let Some(dir) = std::env::var_os("REPORT_SAMPLE_DIR") else {
        return;
    };
    let variants = [
        ("blocking", 20_000.0, 0.2, 30.0),
        ("threadpool", 60_000.0, 0.9, 14.0),
        ("epoll", 140_000.0, 1.0, 7.0),
        ("epoll-threads", 180_000.0, 1.1, 8.0),
        ("fork", 8_000.0, 0.1, 90.0),
        ("prefork", 90_000.0, 0.8, 10.0),
        ("uring", 165_000.0, 1.05, 6.0),
        ("nginx", 150_000.0, 1.0, 7.5),
    ];
    let mut input = Vec::new();
    for (variant, peak, scale, cpu) in variants {
        for c in [50u32, 100, 200, 400, 800, 1200] {
            for trial in 1..=3 {
                let load = (f64::from(c) / 100.0).min(1.0) * scale + (1.0 - scale).max(0.0) * 0.5;
                let rps = peak * load.min(1.2) * (1.0 + 0.01 * f64::from(trial));
                let mut r = row(variant, c, trial, rps);
                r.p99_us = f64::from(c) * 1e6 / rps * 3.0;
                r.p50_us = r.p99_us / 3.0;
                r.user_us_per_req = cpu * 0.6;
                r.system_us_per_req = cpu * 0.4;
                r.cpu_us_per_req = cpu;
                r.peak_rss_kib = 10_000 + u64::from(c) * 40;
                input.push(r);
            }
        }
    }
    let mut info = info(400);
    info.machine = Machine::detect();
    info.settings.push(("warmup".to_string(), "2s".to_string()));
    info.settings.push((
        "nginx".to_string(),
        "worker_processes 4, sendfile on, access_log off".to_string(),
    ));
    let written = write_all(Path::new(&dir), &input, &info).unwrap();
    for p in written {
        println!("{}", p.display());
    }

    // Edge cases in `edge/`: two clients, a narrow latency range (linear
    // axis), a variant the report does not know, a point with no requests,
    // and no point at the CPU chart's connection count.
    let mut edge = Vec::new();
    for (variant, rps) in [
        ("epoll", 50_000.0),
        ("mystery", 30_000.0),
        ("nginx", 45_000.0),
    ] {
        for client in ["loadgen", "wrk"] {
            for c in [100u32, 300, 1000] {
                let mut r = row(variant, c, 1, rps + f64::from(c));
                r.client = client.to_string();
                r.p99_us = 2000.0 + f64::from(c);
                if variant == "mystery" && c == 1000 {
                    r.requests = 0;
                    r.req_per_s = 0.0;
                }
                edge.push(r);
            }
        }
    }
    let written = write_all(&Path::new(&dir).join("edge"), &edge, &info).unwrap();
    for p in written {
        println!("{}", p.display());
    }
}
