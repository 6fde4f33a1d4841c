//! `--json FILE`: the whole result as one JSON object, for the bench runner.
//! Keys are fixed by the shared spec; histograms are included whole (V2,
//! base64) so percentiles can be recomputed or merged across runs later.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cli::Config;
use super::hist::{self, Summary};
use super::Outcome;

/// The whole `--json` object. It reads back as well as it writes, so that
/// `harness merge` can combine several runs' files into one of the same
/// layout (which can itself be merged again). Keys added after the first
/// layout are optional when read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The command line's settings.
    pub settings: Settings,
    /// From the start until the last thread finished, in seconds.
    pub duration_s: f64,
    /// Wall-clock start, ms since the Unix epoch (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_ms: Option<u64>,
    /// Completed responses.
    pub requests: u64,
    /// `requests / duration_s`.
    pub requests_per_sec: f64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Summary of `histogram`.
    pub latency_us: Summary,
    /// Summary of `histogram_uncorrected`.
    pub uncorrected_latency_us: Summary,
    /// Failures by kind.
    pub errors: Errors,
    /// Connections reopened.
    pub reconnects: u64,
    /// Requests unanswered when the run ended.
    pub in_flight_at_end: u64,
    /// Latency (corrected with `-R`), µs, HdrHistogram V2 in base64.
    pub histogram: String,
    /// Latency from the actual send, µs, HdrHistogram V2 in base64.
    pub histogram_uncorrected: String,
    /// Pipelined batches completed.
    pub batches: u64,
    /// Each thread's req/s in each 100 ms window: wrk's Req/Sec line
    /// (absent in older files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thread_rps_samples: Vec<f64>,
    /// How many loadgen runs `harness merge` combined into this one
    /// (absent in a single run's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<u64>,
}

/// The settings of a run, as its command line gave them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The target.
    pub url: String,
    /// `-t`.
    pub threads: usize,
    /// `-c`.
    pub connections: usize,
    /// `-d`, when given.
    pub duration_s: Option<f64>,
    /// `-R`, when given.
    pub rate: Option<u64>,
    /// `-n`, when given.
    pub requests: Option<u64>,
    /// `--pipeline`.
    pub pipeline: usize,
    /// `-m`.
    pub method: String,
    /// `--timeout`.
    pub timeout_s: f64,
    /// `-H`, in order.
    pub headers: Vec<String>,
    /// `--coalesce`: the longest doze before sleeping (0: off).
    #[serde(default)]
    pub coalesce_us: f64,
}

/// Failures by kind, as the text report counts them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Errors {
    /// Failed connects.
    pub connect: u64,
    /// Failed reads.
    pub read: u64,
    /// Failed writes.
    pub write: u64,
    /// Requests unanswered within the timeout.
    pub timeout: u64,
    /// Responses outside 200-399.
    pub status: u64,
    /// `status` by code ("503": n).
    pub status_by_code: BTreeMap<String, u64>,
    /// Idle keep-alive connections the server closed: not failures.
    pub idle_close: u64,
}

impl Settings {
    /// The settings of `cfg`.
    pub fn of(cfg: &Config) -> Settings {
        Settings {
            url: cfg.url.clone(),
            threads: cfg.threads,
            connections: cfg.connections,
            duration_s: cfg.duration.map(|d| d.as_secs_f64()),
            rate: cfg.rate,
            requests: cfg.requests,
            pipeline: cfg.pipeline,
            method: cfg.method.clone(),
            timeout_s: cfg.timeout.as_secs_f64(),
            coalesce_us: cfg.coalesce.as_secs_f64() * 1e6,
            headers: cfg.headers.clone(),
        }
    }
}

impl Report {
    /// The report of `outcome`, a run with `settings`.
    pub fn new(settings: Settings, outcome: &Outcome) -> Report {
        let s = &outcome.stats;
        let secs = outcome.elapsed.as_secs_f64();
        Report {
            settings,
            duration_s: secs,
            started_unix_ms: Some(outcome.started_unix_ms),
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
            thread_rps_samples: s.rps_samples.clone(),
            merged_from: None,
        }
    }

    /// The JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes") + "\n"
    }
}

/// The JSON text of a run.
pub fn render(cfg: &Config, outcome: &Outcome) -> String {
    Report::new(Settings::of(cfg), outcome).to_text()
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
        stats.rps_samples.push(1.0);
        stats.status(404);
        stats.finish(false);
        let outcome = Outcome {
            stats,
            elapsed: Duration::from_secs(1),
            started_unix_ms: 1_700_000_000_000,
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
            "started_unix_ms",
            "thread_rps_samples",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["settings"]["requests"], 5);
        assert!(v["settings"]["rate"].is_null());
        assert!(v["settings"]["duration_s"].is_null());
        assert_eq!(v["errors"]["status_by_code"]["404"], 1);
        assert_eq!(v["latency_us"]["p99_9"], 100);
        assert_eq!(v["latency_us"], v["uncorrected_latency_us"]);
        assert!(v.get("merged_from").is_none());
    }

    #[test]
    fn reads_back_what_it_writes() {
        let cfg = cli::parse(["loadgen", "-R", "50", "-H", "X: y", "http://127.0.0.1:1/"]).unwrap();
        let mut stats = Stats::new(1_000_000);
        stats.latency.saturating_record(250);
        stats.completed = 1;
        stats.rps_samples = vec![10.0, 12.5];
        stats.finish(true);
        let outcome = Outcome {
            stats,
            elapsed: Duration::from_millis(1500),
            started_unix_ms: 5,
            all_connects_failed: None,
        };
        let text = render(&cfg, &outcome);
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_text(), text);
        assert_eq!(back.settings, Settings::of(&cfg));
        assert_eq!(back.thread_rps_samples, vec![10.0, 12.5]);
        assert_eq!(back.started_unix_ms, Some(5));
    }
}
