//! `--json FILE`: the whole result as one JSON object, for the bench runner.
//! Keys are fixed by the shared spec; histograms are included whole (V2,
//! base64) so percentiles can be recomputed or merged across runs later.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::cli::Config;
use super::hist::{self, Summary};
use super::Outcome;

#[derive(Serialize)]
struct Report<'a> {
    settings: Settings<'a>,
    duration_s: f64,
    requests: u64,
    requests_per_sec: f64,
    bytes_read: u64,
    bytes_written: u64,
    latency_us: Summary,
    uncorrected_latency_us: Summary,
    errors: Errors,
    reconnects: u64,
    in_flight_at_end: u64,
    histogram: String,
    histogram_uncorrected: String,
    batches: u64,
}

#[derive(Serialize)]
struct Settings<'a> {
    url: &'a str,
    threads: usize,
    connections: usize,
    duration_s: Option<f64>,
    rate: Option<u64>,
    requests: Option<u64>,
    pipeline: usize,
    method: &'a str,
    timeout_s: f64,
    headers: &'a [String],
    /// `--coalesce`: the longest doze before sleeping (0: off).
    coalesce_us: f64,
}

#[derive(Serialize)]
struct Errors {
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    status: u64,
    status_by_code: BTreeMap<String, u64>,
    idle_close: u64,
}

/// The JSON text of a run.
pub fn render(cfg: &Config, outcome: &Outcome) -> String {
    let s = &outcome.stats;
    let secs = outcome.elapsed.as_secs_f64();
    let report = Report {
        settings: Settings {
            url: &cfg.url,
            threads: cfg.threads,
            connections: cfg.connections,
            duration_s: cfg.duration.map(|d| d.as_secs_f64()),
            rate: cfg.rate,
            requests: cfg.requests,
            pipeline: cfg.pipeline,
            method: &cfg.method,
            timeout_s: cfg.timeout.as_secs_f64(),
            coalesce_us: cfg.coalesce.as_secs_f64() * 1e6,
            headers: &cfg.headers,
        },
        duration_s: secs,
        requests: s.completed,
        requests_per_sec: if secs > 0.0 {
            s.completed as f64 / secs
        } else {
            0.0
        },
        bytes_read: s.bytes_read,
        bytes_written: s.bytes_written,
        latency_us: hist::summary(&s.latency),
        uncorrected_latency_us: hist::summary(&s.uncorrected),
        errors: Errors {
            connect: s.connect_errors,
            read: s.read_errors,
            write: s.write_errors,
            timeout: s.timeouts,
            status: s.status_errors,
            status_by_code: s
                .status_codes()
                .map(|(code, n)| (code.to_string(), n))
                .collect(),
            idle_close: s.idle_closes,
        },
        reconnects: s.reconnects,
        in_flight_at_end: s.in_flight_at_end,
        histogram: hist::to_base64(&s.latency),
        histogram_uncorrected: hist::to_base64(&s.uncorrected),
        batches: s.batches,
    };
    serde_json::to_string_pretty(&report).expect("the report serializes") + "\n"
}

/// Write the JSON report to `path`.
pub fn write(path: &Path, cfg: &Config, outcome: &Outcome) -> std::io::Result<()> {
    std::fs::write(path, render(cfg, outcome))
}

#[cfg(test)]
mod tests {
    use super::super::{cli, stats::Stats};
    use super::*;
    use std::time::Duration;

    #[test]
    fn has_the_spec_keys() {
        let cfg = cli::parse(["loadgen", "-n", "5", "http://127.0.0.1:1/x"]).unwrap();
        let mut stats = Stats::new(1_000_000);
        stats.latency.saturating_record(100);
        stats.completed = 1;
        stats.status(404);
        stats.finish(false);
        let outcome = Outcome {
            stats,
            elapsed: Duration::from_secs(1),
            all_connects_failed: None,
        };
        let v: serde_json::Value = serde_json::from_str(&render(&cfg, &outcome)).unwrap();
        for key in [
            "settings",
            "duration_s",
            "requests",
            "requests_per_sec",
            "bytes_read",
            "bytes_written",
            "latency_us",
            "uncorrected_latency_us",
            "errors",
            "reconnects",
            "in_flight_at_end",
            "histogram",
            "histogram_uncorrected",
            "batches",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["settings"]["requests"], 5);
        assert!(v["settings"]["rate"].is_null());
        assert!(v["settings"]["duration_s"].is_null());
        assert_eq!(v["errors"]["status_by_code"]["404"], 1);
        assert_eq!(v["latency_us"]["p99_9"], 100);
        assert_eq!(v["latency_us"], v["uncorrected_latency_us"]);
    }
}
