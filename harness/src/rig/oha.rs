//! oha (`cargo install oha`) as a client: its command line and its JSON
//! result (`--output-format json`, checked against oha 1.16).
//!
//! oha's own `requestsPerSec` divides every request it started, failed and
//! cut off ones included, by the run's length; here req/s is the responses
//! it received (any status) over the same length, as wrk and loadgen count
//! theirs. A response outside 200-399 is a `status` error, as wrk counts it.
//! Requests still in flight at the deadline (oha's "aborted due to
//! deadline") are neither responses nor errors, as for wrk (which drops
//! them uncounted) and loadgen (which reports them as in flight at the
//! end): they are kept apart in [`Measured::abandoned`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::client::{Errors, Load, Measured};

/// oha's message for a request cut off by the end of a `-z` run.
const DEADLINE: &str = "aborted due to deadline";

/// Where oha is: on PATH, else in cargo's bin directory (`$CARGO_HOME/bin`,
/// `~/.cargo/bin`), where `cargo install oha` puts it without it being on
/// every PATH.
pub fn find() -> Option<PathBuf> {
    super::process::find_on_path("oha").or_else(|| {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
        Some(cargo_home.join("bin").join("oha")).filter(|p| p.is_file())
    })
}

/// The command line for `load` with `threads` worker threads, the JSON
/// result written to `json`. oha has no pipelining: a pipelined load is an
/// error, never run as a plain one.
pub fn args(load: &Load, threads: usize, json: &Path) -> Result<Vec<OsString>, String> {
    if load.pipeline > 1 {
        return Err("oha cannot pipeline (one request at a time per HTTP/1.1 connection)".into());
    }
    let mut a: Vec<OsString> = vec![
        "--no-tui".into(),
        "--output-format".into(),
        "json".into(),
        "-o".into(),
        json.into(),
        "-c".into(),
        load.connections.to_string().into(),
        "-z".into(),
        format!("{}ms", load.duration.as_millis().max(1)).into(),
        // With --no-tui, oha runs the connections on this many threads,
        // each with its own single-threaded runtime.
        "--worker-threads".into(),
        threads.to_string().into(),
    ];
    if load.close {
        a.push("--disable-keepalive".into());
    }
    a.push(load.url.clone().into());
    Ok(a)
}

#[derive(Deserialize)]
struct OhaJson {
    summary: Summary,
    #[serde(rename = "latencyPercentiles", default)]
    latency_percentiles: BTreeMap<String, Option<f64>>,
    #[serde(rename = "statusCodeDistribution", default)]
    status_code_distribution: BTreeMap<String, u64>,
    #[serde(rename = "errorDistribution", default)]
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Summary {
    /// The run's length, seconds.
    total: f64,
    /// Slowest response, seconds (null without responses).
    slowest: Option<f64>,
}

/// Read oha's `--output-format json` result.
pub fn parse_json(text: &str) -> Result<Measured, String> {
    let j: OhaJson =
        serde_json::from_str(text).map_err(|e| format!("oha's JSON output unreadable: {e}"))?;
    let mut m = Measured {
        duration_s: j.summary.total,
        max_us: j.summary.slowest.unwrap_or(0.0) * 1e6,
        ..Measured::default()
    };
    for (code, n) in &j.status_code_distribution {
        let code: u16 = code
            .parse()
            .map_err(|_| format!("oha's JSON: bad status code {code:?}"))?;
        m.requests += n;
        if !(200..400).contains(&code) {
            m.errors.status += n;
        }
    }
    for (what, n) in &j.error_distribution {
        match error_kind(what) {
            Some(kind) => *kind(&mut m.errors) += n,
            None => m.abandoned += n,
        }
    }
    let p = |key: &str| j.latency_percentiles.get(key).copied().flatten();
    let us = |key: &str| p(key).map_or(0.0, |s| s * 1e6);
    (m.p50_us, m.p90_us, m.p99_us, m.p99_9_us) = (us("p50"), us("p90"), us("p99"), us("p99.9"));
    if m.duration_s > 0.0 {
        m.req_per_s = m.requests as f64 / m.duration_s;
    }
    Ok(m)
}

/// Which error counter one of oha's error messages goes to; `None` for a
/// request cut off by the deadline (not an error). oha reports errors by
/// message only: a timeout or a refused connect (or no local port left) is
/// recognised by its words, everything else (resets, truncated responses)
/// is a read error. ("connection" alone says nothing: "Connection reset by
/// peer" is a read error.)
fn error_kind(message: &str) -> Option<fn(&mut Errors) -> &mut u64> {
    let m = message.to_ascii_lowercase();
    if m == DEADLINE {
        None
    } else if m.contains("timeout") || m.contains("timed out") {
        Some(|e| &mut e.timeout)
    } else if m.contains("refused") || m.contains("assign requested address") {
        Some(|e| &mut e.connect)
    } else {
        Some(|e| &mut e.read)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // Real results of oha 1.16 (`--no-tui --output-format json -z 1s
    // --worker-threads 1`) against the epoll variant: GET /plaintext with
    // 20 connections, a missing file with 4, and a port nobody listens on.
    const PLAINTEXT: &str = include_str!("../../tests/fixtures/oha-plaintext.json");
    const NOT_FOUND: &str = include_str!("../../tests/fixtures/oha-404.json");
    const REFUSED: &str = include_str!("../../tests/fixtures/oha-refused.json");

    #[test]
    fn responses_over_the_run_not_ohas_requests_per_sec() {
        let m = parse_json(PLAINTEXT).unwrap();
        assert_eq!((m.requests, m.abandoned, m.errors.total()), (99_238, 20, 0));
        assert_eq!(m.duration_s, 1.001483457);
        // oha's own requestsPerSec (99110.97) counts the 20 cut off too.
        assert!((m.req_per_s - 99_238.0 / 1.001483457).abs() < 1e-6);
        assert!((m.p50_us - 203.241).abs() < 1e-6, "{m:?}");
        assert!((m.p99_9_us - 1258.194).abs() < 1e-6, "{m:?}");
        assert!((m.max_us - 2339.636).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn a_404_is_a_response_and_a_status_error() {
        let m = parse_json(NOT_FOUND).unwrap();
        assert_eq!(
            (m.requests, m.errors.status, m.abandoned),
            (32_682, 32_682, 4)
        );
        assert_eq!(m.errors.describe(), "status 32682");
    }

    #[test]
    fn refused_connections_are_connect_errors_without_latency() {
        let m = parse_json(REFUSED).unwrap();
        assert_eq!((m.requests, m.req_per_s), (0, 0.0));
        assert_eq!(
            (m.errors.connect, m.errors.total(), m.abandoned),
            (21_875, 21_875, 2)
        );
        assert_eq!((m.p50_us, m.max_us), (0.0, 0.0));
    }

    #[test]
    fn error_messages_by_kind() {
        let mut e = Errors::default();
        for msg in [
            "timeout",
            "Connection reset by peer (os error 104)",
            "connection closed before message completed",
            "Cannot assign requested address (os error 99)",
        ] {
            *error_kind(msg).unwrap()(&mut e) += 1;
        }
        assert_eq!(e.describe(), "connect 1, read 2, timeout 1");
        assert!(error_kind(DEADLINE).is_none());
    }

    #[test]
    fn unreadable_output_is_an_error() {
        assert!(parse_json("").is_err());
        assert!(
            parse_json(r#"{"summary":{"total":1.0},"statusCodeDistribution":{"OK":3}}"#).is_err()
        );
    }

    fn load(pipeline: usize, close: bool) -> Load {
        Load {
            url: "http://127.0.0.1:8080/plaintext".into(),
            path: "/plaintext".into(),
            connections: 50,
            duration: Duration::from_millis(1500),
            pipeline,
            close,
        }
    }

    #[test]
    fn command_lines() {
        let json = Path::new("/tmp/r.json");
        let a = args(&load(1, false), 2, json).unwrap();
        let a: Vec<&str> = a.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            a.join(" "),
            "--no-tui --output-format json -o /tmp/r.json -c 50 -z 1500ms --worker-threads 2 http://127.0.0.1:8080/plaintext"
        );
        let a = args(&load(1, true), 1, json).unwrap();
        assert!(a.iter().any(|s| s == "--disable-keepalive"));
        let err = args(&load(16, false), 1, json).unwrap_err();
        assert!(err.contains("cannot pipeline"), "{err}");
    }
}
