//! Integration tests of `loadgen`, the wrk-compatible load generator, against
//! the spec (scratch/loadgen-spec.md): exact request counts, error
//! classification, rate control, latency measurement (corrected and not),
//! pipelining, the wrk-layout report, the `--json` result and bad input.
//!
//! Targets are the project's `epoll` variant and small `std::net` servers
//! from `support` (answer-and-close, never-answer, always-500, idle-closer,
//! 50 ms delay, pipelining batch counter, request capture). All traffic is on
//! 127.0.0.1; every loadgen run has a hard deadline (a hang guard); the only
//! timing assertions are the latency ranges the spec implies for the delay
//! server and the request count of a rate-limited run.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// Hang guard for an ordinary run (a few seconds of load at most).
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Report helpers
// ---------------------------------------------------------------------------

type Matcher<'a> = (&'a str, Box<dyn Fn(&str) -> bool + 'a>);

fn contains(pat: &str) -> Box<dyn Fn(&str) -> bool + '_> {
    Box::new(move |l: &str| l.contains(pat))
}

fn starts(pat: &str) -> Box<dyn Fn(&str) -> bool + '_> {
    Box::new(move |l: &str| l.trim_start().starts_with(pat))
}

/// The `Latency` thread-stats line (not "Latency Distribution").
fn latency_stats_line() -> Box<dyn Fn(&str) -> bool> {
    Box::new(|l: &str| {
        let t = l.trim_start();
        t.starts_with("Latency ") && !t.starts_with("Latency Distribution")
    })
}

/// Find each matcher's line, in order, each after the previous one; panics
/// naming the first one missing. Returns the line indices.
#[track_caller]
fn expect_in_order(run: &Run, matchers: &[Matcher<'_>]) -> Vec<usize> {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let mut at = 0;
    let mut found = Vec::new();
    for (name, m) in matchers {
        match (at..lines.len()).find(|&i| m(lines[i])) {
            Some(i) => {
                found.push(i);
                at = i + 1;
            }
            None => panic!(
                "report: no line {name:?} after line {at} (expected wrk's order: {:?})\n{}",
                matchers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                run.describe()
            ),
        }
    }
    found
}

/// The first stdout line matching `m`, or panic.
#[track_caller]
fn line_with<'r>(run: &'r Run, what: &str, m: impl Fn(&str) -> bool) -> &'r str {
    run.stdout
        .lines()
        .find(|l| m(l))
        .unwrap_or_else(|| panic!("report: no {what} line\n{}", run.describe()))
}

/// Whitespace-separated tokens of a line.
fn tokens(l: &str) -> Vec<&str> {
    l.split_whitespace().collect()
}

/// `a` within `rel` (relative) or `abs` of `b`.
fn close_to(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= b.abs() * rel + abs
}

/// Parse `Label: N` at the end of a line (`Reconnects: 12`).
fn trailing_count(line: &str) -> Option<u64> {
    line.rsplit(':')
        .next()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The number right after `label` in `line` (`count_after("connect 3, read 0", "connect")`).
fn count_after(line: &str, label: &str) -> Option<u64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace()
        .next()?
        .trim_end_matches(',')
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// 1. Exact request counts (-n) against the epoll variant
// ---------------------------------------------------------------------------

#[test]
fn n_sends_exactly_n_requests_to_epoll() {
    let srv = Variant::start("epoll", &[]);
    let url = srv.url("/plaintext");
    let cases: [(&[&str], u64, u64); 3] = [
        (&["-n", "1000"], 10, 1),
        (&["-c", "7", "-t", "3", "-n", "1000"], 7, 1),
        (&["--pipeline", "16", "-n", "1000"], 10, 16),
    ];
    for (opts, conns, pipeline) in cases {
        let mut args: Vec<&str> = opts.to_vec();
        args.push(&url);
        let before = srv.total_requests();
        let (run, json) = run_loadgen_json(&args, LIMIT);
        let after = srv.total_requests();
        let what = format!("loadgen {}", opts.join(" "));
        run.expect_code(0, &what);
        // +1: the first /stats request is counted in the second one's value.
        assert_eq!(
            after - before,
            1001,
            "{what}: the server's total_requests grew by {} (from {before} to {after}); \
             expected exactly 1000 loadgen requests + 1 /stats request\n{}",
            after - before,
            run.describe()
        );
        assert_eq!(
            int(&json, "requests", &run),
            1000,
            "{what}: json requests\n{}",
            run.describe()
        );
        assert_eq!(
            int(&json, "settings.requests", &run),
            1000,
            "{what}: settings.requests"
        );
        assert_eq!(
            int(&json, "settings.connections", &run),
            conns,
            "{what}: settings.connections"
        );
        assert_eq!(
            int(&json, "settings.pipeline", &run),
            pipeline,
            "{what}: settings.pipeline"
        );
        assert_eq!(
            int(&json, "in_flight_at_end", &run),
            0,
            "{what}: in_flight_at_end\n{}",
            run.describe()
        );
        expect_no_errors_except(&json, &[], &run, &what);
        let batches = int(&json, "batches", &run);
        if pipeline == 1 {
            assert_eq!(
                batches,
                1000,
                "{what}: batches must equal requests with --pipeline 1\n{}",
                run.describe()
            );
        } else {
            // 1000 = 62 full batches of 16 + partial ones: at least 63 batches,
            // and at most one partial batch per connection.
            assert!(
                (63..=63 + conns).contains(&batches),
                "{what}: batches = {batches}, expected 63..={} (full batches of 16, the last ones partial)\n{}",
                63 + conns,
                run.describe()
            );
        }
        let first = run.stdout.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("Running 1000 requests test @ {url}")),
            "{what}: first report line should be `Running 1000 requests test @ {url}`\n{}",
            run.describe()
        );
        let threads = if opts.contains(&"-t") { 3 } else { 2 };
        let want = format!("{threads} threads and {conns} connections");
        assert!(
            run.stdout.lines().nth(1).is_some_and(|l| l.trim() == want),
            "{what}: second report line should be `  {want}`\n{}",
            run.describe()
        );
        let reqs_in = line_with(&run, "`requests in`", |l| l.contains("requests in"));
        assert_eq!(
            tokens(reqs_in).first().copied(),
            Some("1000"),
            "{what}: `N requests in` line\n{}",
            run.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// 2. A server that closes after every response
// ---------------------------------------------------------------------------

#[test]
fn connection_close_responses_are_reconnects_not_errors() {
    let srv = TestServer::close_after_each();
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(&["-n", "200", "-c", "4", "-t", "2", &url], LIMIT);
    let what = "Connection: close server, -n 200 -c 4";
    run.expect_code(0, what);
    let completed = int(&json, "requests", &run);
    assert_eq!(
        completed,
        200,
        "{what}: every request must complete\n{}\n{}",
        srv.log.summary(),
        run.describe()
    );
    // A `Connection: close` response is neither an error nor an idle close.
    expect_no_errors_except(&json, &[], &run, what);
    assert_eq!(
        srv.log.requests.load(std::sync::atomic::Ordering::SeqCst),
        200,
        "{what}: the server must receive exactly 200 requests\n{}\n{}",
        srv.log.summary(),
        run.describe()
    );
    assert!(
        srv.log.problems().is_empty(),
        "{what}: {}",
        srv.log.summary()
    );
    // Every response closes its connection, and the connection is reopened
    // after it; only the last response on each connection may not be
    // followed by a reopen (the run is over), so with 4 connections:
    let reconnects = int(&json, "reconnects", &run);
    assert!(
        (completed - 4..=completed).contains(&reconnects),
        "{what}: reconnects = {reconnects}, expected {}..={completed} (one per Connection: close \
         response, except possibly the last one on each of the 4 connections)\n{}",
        completed - 4,
        run.describe()
    );
    let line = line_with(&run, "`Reconnects: N`", |l| {
        l.trim_start().starts_with("Reconnects:")
    });
    assert_eq!(
        trailing_count(line),
        Some(reconnects),
        "{what}: Reconnects line vs json\n{}",
        run.describe()
    );
    assert!(
        !run.stdout.contains("Socket errors"),
        "{what}: no socket error, so no `Socket errors:` line\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------
// 3. A server that never answers: timeouts, nothing else, no hang
// ---------------------------------------------------------------------------

#[test]
fn stalled_server_gives_timeouts_only() {
    let srv = TestServer::stall();
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(
        &["--timeout", "500ms", "-d", "2s", "-c", "4", "-t", "1", &url],
        Duration::from_secs(15),
    );
    let what = "never-answering server, --timeout 500ms -d 2s -c 4";
    run.expect_code(0, what);
    let timeouts = int(&json, "errors.timeout", &run);
    assert!(
        timeouts > 0,
        "{what}: errors.timeout must be > 0\n{}",
        run.describe()
    );
    expect_no_errors_except(&json, &["timeout"], &run, what);
    assert_eq!(
        int(&json, "requests", &run),
        0,
        "{what}: nothing can complete\n{}",
        run.describe()
    );
    // A timed-out connection is closed and reopened.
    let conns = srv
        .log
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        conns > 4,
        "{what}: {timeouts} timeouts but the server saw only {conns} connections (each timeout \
         must close and reopen its connection)\n{}",
        run.describe()
    );
    let line = line_with(&run, "`Socket errors:`", |l| l.contains("Socket errors:"));
    assert!(
        line.contains("connect 0, read 0, write 0, timeout ") && count_after(line, "timeout") == Some(timeouts),
        "{what}: expected `  Socket errors: connect 0, read 0, write 0, timeout {timeouts}`, got {line:?}\n{}",
        run.describe()
    );
}

/// Requests still outstanding when a -d run ends are `in_flight_at_end`,
/// not timeouts, and the run ends on time even with a long --timeout.
#[test]
fn outstanding_requests_at_end_are_in_flight_not_timeouts() {
    let srv = TestServer::stall();
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(
        &["--timeout", "5s", "-d", "1s", "-c", "3", "-t", "1", &url],
        Duration::from_secs(10),
    );
    let what = "never-answering server, --timeout 5s -d 1s -c 3";
    run.expect_code(0, what);
    expect_no_errors_except(&json, &[], &run, what);
    assert_eq!(
        int(&json, "requests", &run),
        0,
        "{what}: requests\n{}",
        run.describe()
    );
    assert_eq!(
        int(&json, "in_flight_at_end", &run),
        3,
        "{what}: one request outstanding per connection when the run ended\n{}",
        run.describe()
    );
    let line = line_with(&run, "`In flight at end:`", |l| {
        l.trim_start().starts_with("In flight at end:")
    });
    assert_eq!(
        line.trim(),
        "In flight at end: 3",
        "{what}\n{}",
        run.describe()
    );
}

/// The server closes (FIN) with a request outstanding, after part of the
/// response or before any of it: a read error, once per request.
#[test]
fn close_with_request_outstanding_is_a_read_error() {
    let srv = TestServer::close_mid_response();
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(&["-n", "50", "-c", "2", "-t", "1", &url], LIMIT);
    let what = "server closing mid-response, -n 50 -c 2";
    run.expect_code(0, what);
    assert_eq!(
        int(&json, "errors.read", &run),
        50,
        "{what}: each of the 50 requests fails once, as a read error\n{}\n{}",
        srv.log.summary(),
        run.describe()
    );
    expect_no_errors_except(&json, &["read"], &run, what);
    assert_eq!(
        int(&json, "requests", &run),
        0,
        "{what}: nothing completes\n{}",
        run.describe()
    );
    assert_eq!(
        srv.log.requests.load(std::sync::atomic::Ordering::SeqCst),
        50,
        "{what}: -n 50 sends exactly 50 requests\n{}",
        run.describe()
    );
    let line = line_with(&run, "`Socket errors:`", |l| l.contains("Socket errors:"));
    assert_eq!(
        count_after(line, "read"),
        Some(50),
        "{what}: Socket errors line\n{}",
        run.describe()
    );
}

/// With both -n and -d, whichever ends first ends the run.
#[test]
fn n_and_d_whichever_ends_first() {
    // 2 connections × 20 req/s for 1 s: far fewer than 1000 requests.
    let srv = TestServer::delayed(Duration::from_millis(50));
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(
        &["-n", "1000", "-d", "1s", "-c", "2", "-t", "1", &url],
        LIMIT,
    );
    let what = "-n 1000 -d 1s against a 50 ms server";
    run.expect_code(0, what);
    let n = int(&json, "requests", &run);
    assert!(
        n > 0 && n < 1000,
        "{what}: -d must end the run first; {n} requests\n{}",
        run.describe()
    );
    assert_eq!(
        int(&json, "settings.requests", &run),
        1000,
        "{what}: settings.requests"
    );
    assert_eq!(
        num(&json, "settings.duration_s", &run),
        1.0,
        "{what}: settings.duration_s"
    );
    expect_no_errors_except(&json, &[], &run, what);
}

// ---------------------------------------------------------------------------
// 4. Nothing listening: connect errors, exit 1, the hint line, quick stop
// ---------------------------------------------------------------------------

#[test]
fn refused_everywhere_exits_1_quickly() {
    let port = dead_port();
    let url = format!("http://127.0.0.1:{port}/");
    // -d 30s: the spec says such a run stops within about a second of
    // starting; the 10 s deadline is a loose guard for that, and for hangs.
    let run = run_loadgen(
        &["-d", "30s", "-c", "2", "-t", "1", &url],
        Duration::from_secs(10),
    );
    let what = "nothing listening";
    run.expect_code(1, what);
    let want = format!("loadgen: every connection to 127.0.0.1:{port} failed");
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| {
            panic!(
                "{what}: stderr has no line starting {want:?}\n{}",
                run.describe()
            )
        });
    assert!(
        line.to_ascii_lowercase().contains("(connection refused)") && line.ends_with("is a server listening there?"),
        "{what}: expected `{want} (connection refused): is a server listening there?`, got {line:?}\n{}",
        run.describe()
    );
    // The report is still printed, with the connect errors counted.
    let errs = line_with(&run, "`Socket errors:`", |l| l.contains("Socket errors:"));
    let connect = count_after(errs, "connect");
    assert!(
        connect.is_some_and(|n| n > 0),
        "{what}: `Socket errors: connect N` with N > 0 expected, got {errs:?}\n{}",
        run.describe()
    );
    expect_in_order(
        &run,
        &[
            ("Running", starts("Running")),
            ("requests in", contains("requests in")),
        ],
    );
}

// ---------------------------------------------------------------------------
// 5. Every response is a 500: status errors, by code
// ---------------------------------------------------------------------------

#[test]
fn status_500_counted_as_status_errors_by_code() {
    let srv = TestServer::fixed_status(500, "Internal Server Error");
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(&["-n", "200", "-c", "2", "-t", "1", &url], LIMIT);
    let what = "always-500 server, -n 200";
    run.expect_code(0, what);
    let completed = int(&json, "requests", &run);
    assert_eq!(
        completed,
        200,
        "{what}: 500s are completed responses\n{}",
        run.describe()
    );
    assert_eq!(
        int(&json, "errors.status", &run),
        completed,
        "{what}: errors.status\n{}",
        run.describe()
    );
    let by_code = field(&json, "errors.status_by_code", &run);
    assert_eq!(
        by_code,
        &serde_json::json!({ "500": completed }),
        "{what}: errors.status_by_code\n{}",
        run.describe()
    );
    expect_no_errors_except(&json, &["status"], &run, what);
    let idx = expect_in_order(
        &run,
        &[
            ("requests in", contains("requests in")),
            (
                "Non-2xx or 3xx responses: 200",
                Box::new(|l: &str| l.trim() == "Non-2xx or 3xx responses: 200"),
            ),
            (
                "status 500: 200",
                Box::new(|l: &str| l.trim() == "status 500: 200"),
            ),
            ("Requests/sec:", starts("Requests/sec:")),
        ],
    );
    assert_eq!(
        idx[2],
        idx[1] + 1,
        "{what}: `status 500` must follow the Non-2xx line\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------
// 6. Idle keep-alive connections closed by the server
// ---------------------------------------------------------------------------

#[test]
fn idle_keepalive_close_is_idle_close_not_read_error() {
    // The server closes a connection 100 ms after answering when no new
    // request came; at -R 4 over 2 connections requests are ≥ 250 ms apart,
    // so every close happens with no request outstanding.
    let srv = TestServer::idle_closer(Duration::from_millis(100));
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(&["-R", "4", "-c", "2", "-t", "1", "-d", "2s", &url], LIMIT);
    let what = "idle-closing server, -R 4 -c 2 -d 2s";
    run.expect_code(0, what);
    let idle = int(&json, "errors.idle_close", &run);
    assert!(
        idle > 0,
        "{what}: errors.idle_close must be > 0 ({})\n{}",
        srv.log.summary(),
        run.describe()
    );
    expect_no_errors_except(&json, &["idle_close"], &run, what);
    assert!(
        int(&json, "requests", &run) > 0,
        "{what}: requests\n{}",
        run.describe()
    );
    let server_closes = srv
        .log
        .idle_closes
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        idle <= server_closes,
        "{what}: idle_close {idle} > closes the server made ({server_closes})\n{}",
        run.describe()
    );
    let reconnects = int(&json, "reconnects", &run);
    assert!(
        reconnects >= idle.saturating_sub(2),
        "{what}: every idle close is reconnected (counted in reconnects): reconnects {reconnects}, idle_close {idle}\n{}",
        run.describe()
    );
    let line = line_with(&run, "`Idle keep-alive closes by server`", |l| {
        l.trim_start()
            .starts_with("Idle keep-alive closes by server:")
    });
    assert_eq!(
        line.trim(),
        format!("Idle keep-alive closes by server: {idle} (reconnected)"),
        "{what}: idle close line\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------
// 7. -R holds the rate
// ---------------------------------------------------------------------------

#[test]
fn rate_is_held_against_epoll() {
    let srv = Variant::start("epoll", &[]);
    let url = srv.url("/plaintext");
    let (run, json) = run_loadgen_json(
        &["-R", "2000", "-d", "3s", "-c", "10", "-t", "2", &url],
        LIMIT,
    );
    let what = "-R 2000 -d 3s -c 10 -t 2";
    run.expect_code(0, what);
    assert_eq!(
        int(&json, "settings.rate", &run),
        2000,
        "{what}: settings.rate"
    );
    let n = int(&json, "requests", &run);
    assert!(
        (5880..=6120).contains(&n),
        "{what}: {n} requests completed, expected 6000 ± 2%\n{}",
        run.describe()
    );
    expect_no_errors_except(&json, &[], &run, what);
}

// ---------------------------------------------------------------------------
// 8. Latency measured against a 50 ms server
// ---------------------------------------------------------------------------

#[test]
fn latency_p50_of_a_50ms_server() {
    let srv = TestServer::delayed(Duration::from_millis(50));
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(
        &["-c", "4", "-t", "1", "-d", "2s", "--latency", &url],
        LIMIT,
    );
    let what = "50 ms server, -c 4 -d 2s";
    run.expect_code(0, what);
    expect_no_errors_except(&json, &[], &run, what);
    let p50 = num(&json, "latency_us.p50", &run);
    assert!(
        (50_000.0..=60_000.0).contains(&p50),
        "{what}: latency_us.p50 = {p50}, expected 50000..=60000\n{}",
        run.describe()
    );
    let line = line_with(&run, "`50%`", |l| l.trim_start().starts_with("50%"));
    let shown = tokens(line).get(1).and_then(|t| parse_wrk_time_us(t));
    assert!(
        shown.is_some_and(|us| (50_000.0..=60_000.0).contains(&us)),
        "{what}: the `50%` line shows {line:?}, expected 50.00ms..60.00ms\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------
// 9. Pipelining: batches of N, the next after all N responses
// ---------------------------------------------------------------------------

#[test]
fn pipeline_sends_batches_of_n() {
    let srv = TestServer::batch_counter(Duration::from_millis(50));
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(
        &["--pipeline", "16", "-c", "2", "-t", "1", "-n", "320", &url],
        LIMIT,
    );
    let what = "--pipeline 16 -c 2 -n 320";
    run.expect_code(0, what);
    let batches = srv.log.batches();
    assert!(
        batches.len() == 20 && batches.iter().all(|&b| b == 16),
        "{what}: the server saw request batches of sizes {batches:?}, expected 20 batches of 16\n{}\n{}",
        srv.log.summary(),
        run.describe()
    );
    assert!(
        srv.log.problems().is_empty(),
        "{what}: {}",
        srv.log.summary()
    );
    assert_eq!(
        int(&json, "requests", &run),
        320,
        "{what}: requests\n{}",
        run.describe()
    );
    expect_no_errors_except(&json, &[], &run, what);
    assert_eq!(
        int(&json, "batches", &run),
        20,
        "{what}: batches\n{}",
        run.describe()
    );
    assert_eq!(
        int(&json, "in_flight_at_end", &run),
        0,
        "{what}: in_flight_at_end"
    );
    assert_eq!(
        int(&json, "settings.pipeline", &run),
        16,
        "{what}: settings.pipeline"
    );
}

// ---------------------------------------------------------------------------
// 10. The wrk-layout report and the --json result
// ---------------------------------------------------------------------------

const LATENCY_KEYS: [&str; 10] = [
    "min", "mean", "stdev", "max", "p50", "p75", "p90", "p99", "p99_9", "p99_99",
];

/// Every key the spec lists is present, with the right kind of value.
#[track_caller]
fn check_json_schema(json: &Value, run: &Run) {
    for k in [
        "url",
        "threads",
        "connections",
        "duration_s",
        "rate",
        "requests",
        "pipeline",
        "method",
        "timeout_s",
        "headers",
        "coalesce_us",
    ] {
        field(json, &format!("settings.{k}"), run);
    }
    for k in ["duration_s", "requests_per_sec"] {
        num(json, k, run);
    }
    for k in [
        "requests",
        "bytes_read",
        "bytes_written",
        "reconnects",
        "in_flight_at_end",
        "batches",
        "errors.connect",
        "errors.read",
        "errors.write",
        "errors.timeout",
        "errors.status",
        "errors.idle_close",
    ] {
        int(json, k, run);
    }
    assert!(
        field(json, "errors.status_by_code", run).is_object(),
        "errors.status_by_code must be an object\n{}",
        run.describe()
    );
    for group in ["latency_us", "uncorrected_latency_us"] {
        for k in LATENCY_KEYS {
            let v = num(json, &format!("{group}.{k}"), run);
            assert!(
                v >= 0.0,
                "{group}.{k} = {v} is negative\n{}",
                run.describe()
            );
        }
        // min <= p50 <= p75 <= ... <= p99_99 <= max
        let chain = ["min", "p50", "p75", "p90", "p99", "p99_9", "p99_99", "max"];
        for w in chain.windows(2) {
            let (a, b) = (
                num(json, &format!("{group}.{}", w[0]), run),
                num(json, &format!("{group}.{}", w[1]), run),
            );
            assert!(
                a <= b,
                "{group}: {} = {a} is above {} = {b}\n{}",
                w[0],
                w[1],
                pretty(field(json, group, run))
            );
        }
    }
    for k in ["histogram", "histogram_uncorrected"] {
        assert!(
            field(json, k, run).is_string(),
            "{k} must be a base64 string\n{}",
            run.describe()
        );
    }
}

/// Decode `key` and check its total count.
#[track_caller]
fn check_histogram(json: &Value, key: &str, count: u64, run: &Run) {
    let b64 = field(json, key, run).as_str().unwrap_or_default();
    let h = decode_histogram(b64).unwrap_or_else(|e| {
        panic!(
            "{key} does not decode (base64 + HdrHistogram V2 deserializer): {e}\n{key} = {b64:?}\n{}",
            run.describe()
        )
    });
    assert_eq!(
        h.len(),
        count,
        "{key}: decoded histogram's total count vs requests\n{}",
        run.describe()
    );
}

#[test]
fn wrk_report_layout_and_json_result() {
    let srv = Variant::start("epoll", &[]);
    let url = srv.url("/plaintext");
    let (run, json) = run_loadgen_json(
        &["-t", "2", "-c", "4", "-d", "1s", "--latency", &url],
        LIMIT,
    );
    let what = "-t 2 -c 4 -d 1s --latency";
    run.expect_code(0, what);

    // --- the JSON result ---
    check_json_schema(&json, &run);
    let requests = int(&json, "requests", &run);
    assert!(
        requests > 0,
        "{what}: no request completed\n{}",
        run.describe()
    );
    assert_eq!(
        field(&json, "settings.url", &run),
        &Value::from(url.clone()),
        "settings.url"
    );
    assert_eq!(int(&json, "settings.threads", &run), 2, "settings.threads");
    assert_eq!(
        int(&json, "settings.connections", &run),
        4,
        "settings.connections"
    );
    assert_eq!(
        num(&json, "settings.duration_s", &run),
        1.0,
        "settings.duration_s"
    );
    assert_eq!(
        field(&json, "settings.rate", &run),
        &Value::Null,
        "settings.rate without -R"
    );
    assert_eq!(
        field(&json, "settings.requests", &run),
        &Value::Null,
        "settings.requests without -n"
    );
    assert_eq!(
        int(&json, "settings.pipeline", &run),
        1,
        "settings.pipeline"
    );
    assert_eq!(
        field(&json, "settings.method", &run),
        &Value::from("GET"),
        "settings.method"
    );
    assert_eq!(
        num(&json, "settings.timeout_s", &run),
        2.0,
        "settings.timeout_s default"
    );
    assert_eq!(
        int(&json, "batches", &run),
        requests,
        "{what}: batches == requests with --pipeline 1"
    );
    assert_eq!(
        field(&json, "uncorrected_latency_us", &run),
        field(&json, "latency_us", &run),
        "{what}: without -R uncorrected_latency_us equals latency_us\n{}",
        run.describe()
    );
    assert!(
        int(&json, "bytes_read", &run) > 0 && int(&json, "bytes_written", &run) > 0,
        "bytes counted"
    );
    check_histogram(&json, "histogram", requests, &run);
    check_histogram(&json, "histogram_uncorrected", requests, &run);

    // --- the report, in wrk's order ---
    let idx = expect_in_order(
        &run,
        &[
            ("Running", starts("Running")),
            ("threads and", contains("threads and")),
            ("Thread Stats", starts("Thread Stats")),
            ("Latency", latency_stats_line()),
            ("Req/Sec", starts("Req/Sec")),
            ("Latency Distribution", starts("Latency Distribution")),
            ("50%", starts("50%")),
            ("75%", starts("75%")),
            ("90%", starts("90%")),
            ("99%", starts("99%")),
            (
                "Detailed Percentile spectrum:",
                starts("Detailed Percentile spectrum:"),
            ),
            ("requests in", contains("requests in")),
            ("Requests/sec:", starts("Requests/sec:")),
            ("Transfer/sec:", starts("Transfer/sec:")),
        ],
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].trim_end(),
        format!("Running 1s test @ {url}"),
        "Running line\n{}",
        run.describe()
    );
    assert_eq!(
        lines[idx[1]].trim(),
        "2 threads and 4 connections",
        "threads line\n{}",
        run.describe()
    );
    assert_eq!(
        tokens(lines[idx[2]]),
        ["Thread", "Stats", "Avg", "Stdev", "Max", "+/-", "Stdev"],
        "Thread Stats header\n{}",
        run.describe()
    );
    let lat = tokens(lines[idx[3]]);
    let ok = lat.len() == 5
        && lat[1..4].iter().all(|t| parse_wrk_time_us(t).is_some())
        && parse_percent(lat[4]).is_some();
    assert!(
        ok,
        "Latency line should be `Latency AVG STDEV MAX PCT%`: {:?}\n{}",
        lines[idx[3]],
        run.describe()
    );
    let (avg, max) = (
        parse_wrk_time_us(lat[1]).unwrap(),
        parse_wrk_time_us(lat[3]).unwrap(),
    );
    let (jmean, jmax) = (
        num(&json, "latency_us.mean", &run),
        num(&json, "latency_us.max", &run),
    );
    assert!(
        close_to(avg, jmean, 0.05, 10.0) && close_to(max, jmax, 0.05, 10.0),
        "Latency line avg {avg}us / max {max}us vs json mean {jmean} / max {jmax}\n{}",
        run.describe()
    );
    let rs = tokens(lines[idx[4]]);
    let ok = rs.len() == 5
        && rs[1..4].iter().all(|t| parse_wrk_count(t).is_some())
        && parse_percent(rs[4]).is_some();
    assert!(
        ok,
        "Req/Sec line should be `Req/Sec AVG STDEV MAX PCT%`: {:?}\n{}",
        lines[idx[4]],
        run.describe()
    );
    for (i, pct) in [(6, "50%"), (7, "75%"), (8, "90%"), (9, "99%")] {
        let t = tokens(lines[idx[i]]);
        assert!(
            t.len() == 2 && t[0] == pct && parse_wrk_time_us(t[1]).is_some(),
            "distribution line should be `{pct} TIME`: {:?}\n{}",
            lines[idx[i]],
            run.describe()
        );
    }
    assert_eq!(
        idx[6],
        idx[5] + 1,
        "50% follows `Latency Distribution`\n{}",
        run.describe()
    );
    let p50 = parse_wrk_time_us(tokens(lines[idx[6]])[1]).unwrap();
    let jp50 = num(&json, "latency_us.p50", &run);
    assert!(
        close_to(p50, jp50, 0.05, 10.0),
        "50% line {p50}us vs json p50 {jp50}\n{}",
        run.describe()
    );
    check_spectrum(&lines[idx[10]..idx[11]], requests, &run);

    let reqs_in = tokens(lines[idx[11]]);
    // `N requests in 1.00s, 200.00MB read`
    assert!(
        reqs_in.len() == 6
            && reqs_in[1] == "requests"
            && reqs_in[2] == "in"
            && reqs_in[3].ends_with(',')
            && parse_wrk_time_us(reqs_in[3].trim_end_matches(',')).is_some()
            && reqs_in[5] == "read",
        "`N requests in T, B read` line: {:?}\n{}",
        lines[idx[11]],
        run.describe()
    );
    assert_eq!(
        reqs_in[0].parse::<u64>().ok(),
        Some(requests),
        "N requests in vs json requests\n{}",
        run.describe()
    );
    let read = parse_wrk_bytes(reqs_in[4]);
    let jread = int(&json, "bytes_read", &run) as f64;
    assert!(
        read.is_some_and(|b| close_to(b, jread, 0.01, 1.0)),
        "bytes read shown {:?} vs json bytes_read {jread}\n{}",
        reqs_in[4],
        run.describe()
    );
    let rps: Option<f64> = lines[idx[12]]
        .trim()
        .strip_prefix("Requests/sec:")
        .and_then(|s| s.trim().parse().ok());
    let jrps = num(&json, "requests_per_sec", &run);
    assert!(
        rps.is_some_and(|r| close_to(r, jrps, 0.01, 0.01)),
        "Requests/sec line {:?} vs json requests_per_sec {jrps}\n{}",
        lines[idx[12]],
        run.describe()
    );
    let tps = lines[idx[13]]
        .trim()
        .strip_prefix("Transfer/sec:")
        .map(str::trim);
    assert!(
        tps.and_then(parse_wrk_bytes).is_some(),
        "Transfer/sec line {:?}\n{}",
        lines[idx[13]],
        run.describe()
    );
    check_optional_lines(&run, &json);

    // --- without --latency (and a wrk-style attached-value command line) ---
    let (run2, json2) = run_loadgen_json(&["-t1", "-c2", "-d1s", &url], LIMIT);
    run2.expect_code(0, "-t1 -c2 -d1s");
    expect_in_order(
        &run2,
        &[
            ("Running", starts("Running")),
            ("threads and", contains("threads and")),
            ("Thread Stats", starts("Thread Stats")),
            ("Latency", latency_stats_line()),
            ("Req/Sec", starts("Req/Sec")),
            ("requests in", contains("requests in")),
            ("Requests/sec:", starts("Requests/sec:")),
            ("Transfer/sec:", starts("Transfer/sec:")),
        ],
    );
    assert!(
        !run2.stdout.contains("Latency Distribution")
            && !run2.stdout.contains("Detailed Percentile spectrum"),
        "without --latency there is no distribution nor spectrum\n{}",
        run2.describe()
    );
    assert!(
        run2.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.trim() == "1 threads and 2 connections"),
        "threads line\n{}",
        run2.describe()
    );
    assert!(
        !run2.stdout.contains("Uncorrected latency"),
        "the Uncorrected latency line is only for -R runs\n{}",
        run2.describe()
    );
    check_json_schema(&json2, &run2);
    check_optional_lines(&run2, &json2);
}

/// The `Detailed Percentile spectrum` block (HdrHistogram's
/// outputPercentileDistribution format); `block` starts at its header line.
#[track_caller]
fn check_spectrum(block: &[&str], requests: u64, run: &Run) {
    let mut it = block.iter().skip(1).filter(|l| !l.trim().is_empty());
    let header = it.next().copied().unwrap_or("");
    assert_eq!(
        tokens(header),
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"],
        "spectrum column header\n{}",
        run.describe()
    );
    let mut rows = 0;
    let mut last_count = None;
    let mut footer = Vec::new();
    for l in it {
        let t = l.trim();
        if t.starts_with("#[") {
            footer.push(t);
            continue;
        }
        if !footer.is_empty() {
            continue; // anything after the footer (e.g. a separator line)
        }
        let c = tokens(t);
        let ok = (c.len() == 3 || c.len() == 4)
            && c[0].parse::<f64>().is_ok()
            && c[1].parse::<f64>().is_ok_and(|p| (0.0..=1.0).contains(&p))
            && c[2].parse::<u64>().is_ok()
            && (c.len() == 3 || c[3].parse::<f64>().is_ok() || c[3] == "inf");
        assert!(
            ok,
            "spectrum row should be `VALUE PERCENTILE COUNT [1/(1-P)]`: {l:?}\n{}",
            run.describe()
        );
        rows += 1;
        last_count = c[2].parse::<u64>().ok();
    }
    assert!(rows > 0, "spectrum has no rows\n{}", run.describe());
    assert_eq!(
        last_count,
        Some(requests),
        "spectrum's last TotalCount vs requests\n{}",
        run.describe()
    );
    assert!(
        footer.iter().any(|l| l.starts_with("#[Mean")) && footer.iter().any(|l| l.starts_with("#[Max")),
        "spectrum footer `#[Mean = ..., StdDeviation = ...]` / `#[Max = ..., Total count = ...]` missing: {footer:?}\n{}",
        run.describe()
    );
    if let Some(total) = footer
        .iter()
        .find_map(|l| l.split("Total count").nth(1))
        .and_then(|s| {
            s.trim_start_matches([' ', '='])
                .trim_end_matches(']')
                .trim()
                .parse::<u64>()
                .ok()
        })
    {
        assert_eq!(
            total,
            requests,
            "spectrum footer Total count vs requests\n{}",
            run.describe()
        );
    }
}

/// Lines that appear only when their value is non-zero, consistent with the JSON.
#[track_caller]
fn check_optional_lines(run: &Run, json: &Value) {
    let sock: u64 = ["connect", "read", "write", "timeout"]
        .iter()
        .map(|k| int(json, &format!("errors.{k}"), run))
        .sum();
    assert_eq!(
        run.stdout.contains("Socket errors:"),
        sock > 0,
        "`Socket errors:` line iff a socket error occurred ({sock})\n{}",
        run.describe()
    );
    let status = int(json, "errors.status", run);
    assert_eq!(
        run.stdout.contains("Non-2xx or 3xx responses:"),
        status > 0,
        "`Non-2xx or 3xx responses:` line iff status errors ({status})\n{}",
        run.describe()
    );
    for (label, key) in [
        ("Reconnects:", "reconnects"),
        ("In flight at end:", "in_flight_at_end"),
        ("Idle keep-alive closes by server:", "errors.idle_close"),
    ] {
        let n = int(json, key, run);
        let line = run
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label));
        match line {
            Some(l) => assert!(
                n > 0
                    && l.trim()[label.len()..].split_whitespace().next()
                        == Some(n.to_string().as_str()),
                "`{label}` line {l:?} vs json {key} = {n}\n{}",
                run.describe()
            ),
            None => assert_eq!(
                n,
                0,
                "json {key} = {n} but no `{label}` line\n{}",
                run.describe()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// 11. Bad input, and number/duration suffixes
// ---------------------------------------------------------------------------

#[test]
fn bad_input_is_one_line_and_exit_2() {
    // A URL nobody listens on: if an input were wrongly accepted, the run
    // still ends quickly (and fails the exit-code check).
    let url = format!("http://127.0.0.1:{}/", dead_port());
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["htp:/x"], vec!["http://"]),
        (
            vec!["https://127.0.0.1/"],
            vec!["https is not supported: use an http:// URL"],
        ),
        (vec!["-c", "0", &url], vec!["-c"]),
        (
            vec!["-t", "4", "-c", "2", &url],
            vec!["-t 4 is more than -c 2: use at most one thread per connection"],
        ),
        (vec!["--pipeline", "0", &url], vec!["pipeline"]),
        (vec!["-R", "0", &url], vec!["R|rate"]),
        (vec!["--body", "/nonexistent", &url], vec!["/nonexistent"]),
        (
            vec!["-s", "script.lua", &url],
            vec!["Lua scripts are not supported: use -m, -H, --body, --pipeline"],
        ),
    ];
    let mut failures = Vec::new();
    for (args, must) in cases {
        let mut all = vec!["-d", "1s"];
        all.extend(args.iter().copied());
        let run = run_loadgen(&all, Duration::from_secs(10));
        let err = run.stderr.trim_end();
        let mut bad = Vec::new();
        if run.code() != Some(2) {
            bad.push(format!("exit code {:?}, expected 2", run.code()));
        }
        if err.lines().count() != 1 {
            bad.push(format!(
                "{} stderr lines, expected exactly one",
                err.lines().count()
            ));
        }
        if !err.starts_with("loadgen: ") {
            bad.push("stderr does not start with `loadgen: `".to_string());
        }
        for m in must {
            let ok = m.split('|').any(|alt| err.contains(alt));
            if !ok {
                bad.push(format!("stderr does not mention {m:?}"));
            }
        }
        if !bad.is_empty() {
            failures.push(format!(
                "{}:\n  {}\n{}",
                args.join(" "),
                bad.join("\n  "),
                run.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "bad input handling:\n\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn number_and_duration_suffixes_and_localhost() {
    let srv = Variant::start("epoll", &[]);
    let url = srv.url("/plaintext");
    let before = srv.total_requests();
    let (run, json) = run_loadgen_json(&["-n", "1k", "-c", "2", "-t", "1", &url], LIMIT);
    let after = srv.total_requests();
    run.expect_code(0, "-n 1k");
    assert_eq!(
        after - before,
        1001,
        "-n 1k: server total_requests grew by {}, expected 1000 + 1\n{}",
        after - before,
        run.describe()
    );
    assert_eq!(int(&json, "requests", &run), 1000, "-n 1k: requests");
    assert_eq!(
        int(&json, "settings.requests", &run),
        1000,
        "-n 1k: settings.requests"
    );

    let local = format!("http://localhost:{}/plaintext", srv.addr.port());
    let (run, json) = run_loadgen_json(&["-t1", "-c2", "-d", "500ms", "-R", "1.5k", &local], LIMIT);
    let what = "-t1 -c2 -d 500ms -R 1.5k http://localhost:PORT";
    run.expect_code(0, what);
    assert_eq!(
        int(&json, "settings.rate", &run),
        1500,
        "{what}: settings.rate\n{}",
        run.describe()
    );
    assert_eq!(
        num(&json, "settings.duration_s", &run),
        0.5,
        "{what}: settings.duration_s\n{}",
        run.describe()
    );
    assert_eq!(
        int(&json, "settings.threads", &run),
        1,
        "{what}: settings.threads"
    );
    assert_eq!(
        int(&json, "settings.connections", &run),
        2,
        "{what}: settings.connections"
    );
    assert!(
        int(&json, "requests", &run) > 0,
        "{what}: localhost must reach 127.0.0.1\n{}",
        run.describe()
    );
    expect_no_errors_except(&json, &[], &run, what);
}

// ---------------------------------------------------------------------------
// 12. -R: coordinated-omission correction
// ---------------------------------------------------------------------------

#[test]
fn rate_above_capacity_shows_corrected_latency() {
    // 4 connections × 20 req/s (50 ms each) = 80/s, far below -R 400: the
    // intended send times fall further and further behind.
    let srv = TestServer::delayed(Duration::from_millis(50));
    let url = srv.url("/");
    let (run, json) = run_loadgen_json(
        &[
            "-R",
            "400",
            "-c",
            "4",
            "-t",
            "1",
            "-d",
            "2s",
            "--latency",
            &url,
        ],
        LIMIT,
    );
    let what = "-R 400 -c 4 -d 2s against a 50 ms server";
    run.expect_code(0, what);
    assert_eq!(
        int(&json, "settings.rate", &run),
        400,
        "{what}: settings.rate"
    );
    let corrected = num(&json, "latency_us.p99", &run);
    let uncorrected = num(&json, "uncorrected_latency_us.p99", &run);
    assert!(
        corrected > 2.0 * uncorrected,
        "{what}: corrected p99 {corrected}us should be far above the uncorrected p99 {uncorrected}us \
         (coordinated omission)\n{}",
        run.describe()
    );
    let up50 = num(&json, "uncorrected_latency_us.p50", &run);
    assert!(
        up50 >= 49_000.0,
        "{what}: uncorrected p50 {up50}us is below the server's 50 ms delay\n{}",
        run.describe()
    );
    // `  Uncorrected latency: p50 X, p99 Y, max Z` follows the thread stats.
    let idx = expect_in_order(
        &run,
        &[
            ("Latency", latency_stats_line()),
            ("Req/Sec", starts("Req/Sec")),
            ("Uncorrected latency:", starts("Uncorrected latency:")),
            ("requests in", contains("requests in")),
        ],
    );
    assert_eq!(
        idx[2],
        idx[1] + 1,
        "{what}: the Uncorrected latency line follows Req/Sec\n{}",
        run.describe()
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    let rest = lines[idx[2]]
        .trim()
        .strip_prefix("Uncorrected latency:")
        .unwrap_or("");
    let parts: Vec<&str> = rest.split(',').map(str::trim).collect();
    let ok = parts.len() == 3
        && ["p50 ", "p99 ", "max "]
            .iter()
            .zip(&parts)
            .all(|(k, p)| p.strip_prefix(k).and_then(parse_wrk_time_us).is_some());
    assert!(
        ok,
        "{what}: expected `Uncorrected latency: p50 X, p99 Y, max Z`, got {:?}\n{}",
        lines[idx[2]],
        run.describe()
    );
    let shown_p99 = parse_wrk_time_us(parts[1].strip_prefix("p99 ").unwrap()).unwrap();
    assert!(
        close_to(shown_p99, uncorrected, 0.05, 10.0),
        "{what}: Uncorrected latency p99 shown {shown_p99}us vs json {uncorrected}\n{}",
        run.describe()
    );
    // The Latency line is the corrected one: its max is at least the corrected p99.
    let lat = tokens(lines[idx[0]]);
    let max = lat.get(3).and_then(|t| parse_wrk_time_us(t)).unwrap_or(0.0);
    assert!(
        max >= corrected * 0.95,
        "{what}: the Latency line's max {max}us should be the corrected one (p99 {corrected}us)\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------
// 13. Request shape: -m, --body, -H (Host replaces the default)
// ---------------------------------------------------------------------------

#[test]
fn method_body_and_headers_are_sent() {
    let srv = TestServer::capture();
    let dir = tempfile::tempdir().expect("temp dir");
    let body_path = dir.path().join("body.txt");
    let body = b"name=loadgen&value=42\n";
    std::fs::write(&body_path, body).expect("write body file");
    let body_arg = body_path.to_str().expect("utf-8 path");
    let url = srv.url("/submit?x=1");
    let (run, json) = run_loadgen_json(
        &[
            "-m",
            "POST",
            "--body",
            body_arg,
            "-H",
            "X-Test: yes",
            "-H",
            "Host: example.test",
            "-n",
            "3",
            "-c",
            "1",
            "-t",
            "1",
            &url,
        ],
        LIMIT,
    );
    let what = "-m POST --body F -H 'X-Test: yes' -H 'Host: example.test' -n 3";
    run.expect_code(0, what);
    assert_eq!(
        int(&json, "requests", &run),
        3,
        "{what}: requests\n{}",
        run.describe()
    );
    assert_eq!(
        field(&json, "settings.method", &run),
        &Value::from("POST"),
        "{what}: settings.method"
    );
    let reqs = srv.log.captured();
    assert_eq!(
        reqs.len(),
        3,
        "{what}: the server received {} requests\n{}",
        reqs.len(),
        srv.log.summary()
    );
    for r in &reqs {
        assert_eq!(r.method, "POST", "{what}: method\n{r:?}");
        assert_eq!(
            r.target, "/submit?x=1",
            "{what}: request target (path and query)\n{r:?}"
        );
        assert_eq!(r.body, body, "{what}: body\n{r:?}");
        assert_eq!(
            r.headers_named("content-length"),
            [body.len().to_string().as_str()],
            "{what}: Content-Length\n{r:?}"
        );
        assert_eq!(
            r.headers_named("x-test"),
            ["yes"],
            "{what}: -H header\n{r:?}"
        );
        assert_eq!(
            r.headers_named("host"),
            ["example.test"],
            "{what}: -H Host replaces the default\n{r:?}"
        );
    }

    let srv = TestServer::capture();
    let url = srv.url("/p");
    let run = run_loadgen(&["-n", "2", "-c", "1", "-t", "1", &url], LIMIT);
    run.expect_code(0, "-n 2 (defaults)");
    let reqs = srv.log.captured();
    assert_eq!(
        reqs.len(),
        2,
        "defaults: the server received {} requests\n{}",
        reqs.len(),
        run.describe()
    );
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("GET", "/p"),
            "defaults: request line\n{r:?}"
        );
        assert_eq!(
            r.headers_named("host").len(),
            1,
            "defaults: exactly one Host header\n{r:?}"
        );
        assert!(r.body.is_empty(), "defaults: no body\n{r:?}");
    }
}

// ---------------------------------------------------------------------------
// The fixtures themselves (so a failure above is loadgen's, not theirs)
// ---------------------------------------------------------------------------

fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Read from `s` until `done(received)` or EOF or 5 s; returns what came.
fn read_until(s: &mut std::net::TcpStream, done: impl Fn(&str) -> bool) -> (String, bool) {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if done(&String::from_utf8_lossy(&got)) {
            break;
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

#[test]
fn fixtures_selfcheck() {
    use hdrhistogram::serialization::Serializer;
    use std::io::Write;
    use std::sync::atomic::Ordering::SeqCst;

    // base64 and the histogram round trip the JSON's `histogram` relies on.
    assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
    assert_eq!(base64_decode("").unwrap(), b"");
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for v in [10u64, 500, 50_000, 1_000_000] {
        h.record(v).unwrap();
    }
    let mut bytes = Vec::new();
    hdrhistogram::serialization::V2Serializer::new()
        .serialize(&h, &mut bytes)
        .unwrap();
    assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
    let back = decode_histogram(&base64_encode(&bytes)).unwrap();
    assert_eq!(back.len(), 4);
    assert_eq!(back.max(), h.max());

    // Pipelining server: one batch of 3, answered in order.
    let srv = TestServer::batch_counter(Duration::from_millis(50));
    let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
    let req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3);
    s.write_all(req.as_bytes()).unwrap();
    let (got, _) = read_until(&mut s, |g| g.contains("response 3 on connection"));
    assert!(
        got.find("response 1 ") < got.find("response 2 ")
            && got.find("response 2 ") < got.find("response 3 "),
        "{got}"
    );
    assert_eq!(srv.log.batches(), [3]);
    drop(s);
    drop(srv);

    // Idle closer: answers, then closes when idle.
    let srv = TestServer::idle_closer(Duration::from_millis(100));
    let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (got, eof) = read_until(&mut s, |_| false);
    assert!(got.starts_with("HTTP/1.1 200 OK") && eof, "{got}");
    assert_eq!(srv.log.idle_closes.load(SeqCst), 1);
    drop(srv);

    // Close-after-each: Connection: close, then EOF.
    let srv = TestServer::close_after_each();
    let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (got, eof) = read_until(&mut s, |_| false);
    assert!(got.contains("Connection: close") && eof, "{got}");
    drop(srv);

    // Stall: never answers; dropping the server with a client still
    // connected returns (its threads stop).
    let srv = TestServer::stall();
    let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(srv.log.requests.load(SeqCst), 1);
    drop(srv);
    drop(s);

    // Delay server answers after the delay; the epoll variant starts and
    // counts /stats as documented.
    let srv = TestServer::delayed(Duration::from_millis(50));
    let t = std::time::Instant::now();
    let (status, body) = http_get(srv.addr, "/").unwrap();
    assert!(status == 200 && body == "slow\n" && t.elapsed() >= Duration::from_millis(50));
    drop(srv);
    let v = Variant::start("epoll", &[]);
    let a = v.total_requests();
    let b = v.total_requests();
    assert_eq!(b, a + 1);
}
