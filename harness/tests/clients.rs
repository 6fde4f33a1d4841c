//! `harness clients` end to end, without wrk or oha installed: a stand-in
//! oha (a shell script that records its command line and answers with a
//! real oha JSON result from tests/fixtures) runs beside the real loadgen
//! against nginx (skipped with a note when nginx is not installed), and the
//! refusals of clients asked for but missing, before anything starts.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use harness::rig::nginx;

/// Hang guard for one run of the harness (these take seconds).
const LIMIT: Duration = Duration::from_secs(120);

/// A real `oha --output-format json` result (oha 1.16, `-z 1s` against the
/// epoll variant).
const OHA_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/oha-plaintext.json"
);

/// The header every clients CSV has had since `loadgen-vs-wrk`.
const CSV_HEADER: &str = "mode,conns,client,run,requests,req_per_s,cpu_us_per_req,client_cpu_pct,nginx_cpu_pct,nginx_us_per_req,errors,status";

/// A directory holding an `oha` that appends its arguments to `args`, waits
/// its `-z` (rounded up to a second) and copies the fixture to its `-o`.
fn stand_in_oha(dir: &Path, args: &Path) {
    let script = format!(
        r#"#!/bin/sh
echo "$@" >> '{args}'
out=""
prev=""
for a in "$@"; do
    [ "$prev" = "-o" ] && out=$a
    prev=$a
done
/bin/sleep 1
/bin/cp '{OHA_FIXTURE}' "$out"
"#,
        args = args.display()
    );
    let oha = dir.join("oha");
    fs::write(&oha, script).unwrap();
    fs::set_permissions(&oha, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_stand_in_oha_runs_beside_loadgen_and_has_no_pipelined_runs() {
    if nginx::find().is_none() {
        println!("note: test skipped: {}", nginx::INSTALL_HINT);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let oha_args = tmp.path().join("oha-args");
    stand_in_oha(&bin, &oha_args);
    let csv = tmp.path().join("clients.csv");
    // PATH holds the stand-in only: no wrk, whatever this machine has.
    let run = support::run_harness(
        &[
            "clients",
            "--duration",
            "1s",
            "--conns",
            "5",
            "--runs",
            "1",
            "--warmup",
            "0s",
            "--csv",
            csv.to_str().unwrap(),
        ],
        &[
            ("PATH", &bin),
            ("HOME", tmp.path()),
            ("CARGO_HOME", tmp.path()),
        ],
        LIMIT,
    );
    run.expect_code(0, "clients with loadgen and a stand-in oha");
    for want in [
        "wrk not installed: `apt-get install wrk` adds it",
        "oha cannot pipeline: no pipelined runs",
    ] {
        assert!(run.stderr.contains(want), "no {want:?}\n{}", run.describe());
    }
    assert!(
        run.stdout
            .contains("(oha cannot pipeline: no runs, no row)"),
        "{}",
        run.describe()
    );

    // One oha run (plain), with the thread count and no pipelining flag.
    let calls = fs::read_to_string(&oha_args).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    for want in [
        "--no-tui --output-format json -o ",
        " -c 5 -z 1000ms --worker-threads 1 http://127.0.0.1:",
    ] {
        assert!(calls[0].contains(want), "{want:?} not in {:?}", calls[0]);
    }

    let text = fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], CSV_HEADER, "{text}");
    let starts = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    for (prefix, n) in [
        ("plain,5,oha,1,", 1),
        ("plain,5,loadgen,1,", 1),
        ("pipelined,5,loadgen,1,", 1),
        ("pipelined,5,oha,", 0),
        ("plain,5,oha,median,", 1),
        ("plain,5,loadgen/oha,ratio,", 1),
        ("pipelined,5,loadgen/oha,", 0),
        ("pipelined,5,loadgen,median,", 1),
    ] {
        assert_eq!(starts(prefix), n, "rows starting {prefix:?}:\n{text}");
    }
    // The oha run's requests are the fixture's responses.
    let oha_row: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("plain,5,oha,1,"))
        .unwrap()
        .split(',')
        .collect();
    let fixture = harness::rig::oha::parse_json(&fs::read_to_string(OHA_FIXTURE).unwrap()).unwrap();
    assert_eq!(oha_row[4], fixture.requests.to_string(), "{text}");
    assert_eq!(oha_row[11], "ok", "{text}");
}

#[test]
fn clients_asked_for_but_missing_are_refused_before_anything_starts() {
    let empty = tempfile::tempdir().unwrap();
    let env: [(&str, &Path); 3] = [
        ("PATH", empty.path()),
        ("HOME", empty.path()),
        ("CARGO_HOME", empty.path()),
    ];
    let cases: [(&[&str], &str); 4] = [
        (
            &["clients", "--clients", "oha"],
            "install it with `cargo install oha`",
        ),
        (
            &["clients", "--clients", "loadgen,wrk"],
            "install it with `apt-get install wrk`",
        ),
        // The old name compares wrk and loadgen, so it needs wrk.
        (&["loadgen-vs-wrk"], "install it with `apt-get install wrk`"),
        (
            &["clients", "--clients", "ab"],
            "unknown client 'ab' in --clients",
        ),
    ];
    for (args, why) in cases {
        let run = support::run_harness(args, &env, LIMIT);
        run.expect_code(1, why);
        assert!(run.stderr.contains(why), "{}", run.describe());
        assert!(!run.stderr.contains("warm-up"), "{}", run.describe());
    }
    let help = support::run_harness(&["clients", "--help"], &env, LIMIT);
    help.expect_code(0, "clients --help");
    for want in ["--clients", "--worker-threads T", "oha cannot pipeline"] {
        assert!(help.stdout.contains(want), "{want:?}\n{}", help.describe());
    }
}
