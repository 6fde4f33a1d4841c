//! The text report, in wrk's layout so that scripts reading wrk's output
//! read ours; additions (uncorrected latency, status codes, idle closes,
//! reconnects, in-flight) are extra lines that appear only when non-zero.

use std::fmt::Write;

use super::cli::Config;
use super::hist;
use super::stats::{sample_stats, Stats};
use super::Outcome;
use crate::format::wrk::{binary, metric, padded, time_s, time_us};

/// The two lines wrk prints before the run starts.
pub fn header(cfg: &Config) -> String {
    let what = match (cfg.requests, cfg.duration) {
        (Some(n), _) => format!("{n} requests"),
        (None, Some(d)) if d.subsec_nanos() == 0 => time_s(d.as_secs() as f64),
        (None, Some(d)) => format!("{}ms", d.as_millis()),
        (None, None) => "an unbounded".into(),
    };
    format!(
        "Running {what} test @ {}\n  {} threads and {} connections\n",
        cfg.url, cfg.threads, cfg.connections
    )
}

/// What the body shows beyond wrk's lines: the two choices a run's
/// command line makes. Apart from [`Config`] so that a result read back
/// from JSON (`harness merge`) prints in the same layout.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// `-R` was given: latency is corrected, the uncorrected line is added.
    pub paced: bool,
    /// `--latency`: the distribution and the full spectrum.
    pub distribution: bool,
}

impl Layout {
    /// The layout a run's command line asks for.
    pub fn of(cfg: &Config) -> Layout {
        Layout {
            paced: cfg.rate.is_some(),
            distribution: cfg.latency,
        }
    }
}

/// Everything printed after the run.
pub fn body(cfg: &Config, outcome: &Outcome) -> String {
    render(Layout::of(cfg), outcome)
}

/// The body in `layout`: thread stats, counts, errors, rates.
pub fn render(layout: Layout, outcome: &Outcome) -> String {
    let s = &outcome.stats;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  Thread Stats{:>6}{:>11}{:>8}{:>12}",
        "Avg", "Stdev", "Max", "+/- Stdev"
    );
    let lat = &s.latency;
    let (mean, stdev, max) = if lat.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (lat.mean(), lat.stdev(), lat.max() as f64)
    };
    stats_line(
        &mut out,
        "Latency",
        time_us,
        (mean, stdev, max, hist::within_stdev(lat)),
    );
    stats_line(&mut out, "Req/Sec", metric, sample_stats(&s.rps_samples));
    if layout.paced {
        let u = hist::summary(&s.uncorrected);
        let _ = writeln!(
            out,
            "  Uncorrected latency: p50 {}, p99 {}, max {}",
            time_us(u.p50 as f64),
            time_us(u.p99 as f64),
            time_us(u.max as f64)
        );
    }
    if layout.distribution {
        distribution(&mut out, s);
    }
    let secs = outcome.elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "  {} requests in {}, {}B read",
        s.completed,
        time_us(secs * 1e6),
        binary(s.bytes_read as f64)
    );
    if s.socket_errors() > 0 {
        let _ = writeln!(
            out,
            "  Socket errors: connect {}, read {}, write {}, timeout {}",
            s.connect_errors, s.read_errors, s.write_errors, s.timeouts
        );
    }
    if s.status_errors > 0 {
        let _ = writeln!(out, "  Non-2xx or 3xx responses: {}", s.status_errors);
        for (code, n) in s.status_codes() {
            let _ = writeln!(out, "    status {code}: {n}");
        }
    }
    if s.idle_closes > 0 {
        let _ = writeln!(
            out,
            "  Idle keep-alive closes by server: {} (reconnected)",
            s.idle_closes
        );
    }
    if s.reconnects > 0 {
        let _ = writeln!(out, "  Reconnects: {}", s.reconnects);
    }
    if s.in_flight_at_end > 0 {
        let _ = writeln!(out, "  In flight at end: {}", s.in_flight_at_end);
    }
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let _ = writeln!(out, "Requests/sec: {:>9.2}", per_sec(s.completed));
    let _ = writeln!(out, "Transfer/sec: {:>10}B", binary(per_sec(s.bytes_read)));
    out
}

/// wrk's `print_stats`: name, then Avg, Stdev, Max, +/- Stdev.
fn stats_line(
    out: &mut String,
    name: &str,
    fmt: fn(f64) -> String,
    (mean, stdev, max, within): (f64, f64, f64, f64),
) {
    let _ = writeln!(
        out,
        "    {name:<10}{}{}{}{within:>8.2}%",
        padded(&fmt(mean), 8),
        padded(&fmt(stdev), 10),
        padded(&fmt(max), 9)
    );
}

/// `--latency`: wrk's distribution block, then the full spectrum.
fn distribution(out: &mut String, s: &Stats) {
    let h = &s.latency;
    let sum = hist::summary(h);
    let _ = writeln!(out, "  Latency Distribution");
    let rows = [
        ("     50%", sum.p50),
        ("     75%", sum.p75),
        ("     90%", sum.p90),
        ("     99%", sum.p99),
        ("  99.9%", sum.p99_9),
        (" 99.99%", sum.p99_99),
        ("    max", sum.max),
    ];
    for (label, v) in rows {
        let _ = writeln!(out, "{label}{}", padded(&time_us(v as f64), 10));
    }
    let _ = writeln!(out, "\n  Detailed Percentile spectrum:");
    out.push_str(&hist::spectrum(h));
    let _ = writeln!(out, "{}", "-".repeat(58));
}

#[cfg(test)]
mod tests {
    use super::super::cli;
    use super::*;
    use std::time::Duration;

    fn outcome() -> Outcome {
        let mut stats = Stats::new(2_000_000);
        for v in [500u64, 600, 700, 800] {
            stats.latency.saturating_record(v);
        }
        stats.completed = 4;
        stats.batches = 4;
        stats.bytes_read = 4 * 130;
        stats.rps_samples = vec![80_000.0, 90_000.0];
        stats.read_errors = 1;
        stats.status(500);
        stats.finish(false);
        Outcome {
            stats,
            elapsed: Duration::from_secs(10),
            started_unix_ms: 0,
            all_connects_failed: None,
        }
    }

    fn cfg(args: &[&str]) -> Config {
        cli::parse(std::iter::once("loadgen").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn header_lines() {
        let c = cfg(&["-t2", "-c100", "-d10s", "http://127.0.0.1:8080/plaintext"]);
        assert_eq!(
            header(&c),
            "Running 10s test @ http://127.0.0.1:8080/plaintext\n  2 threads and 100 connections\n"
        );
        let c = cfg(&["-n", "1000", "http://127.0.0.1:8080/"]);
        assert!(header(&c).starts_with("Running 1000 requests test @ "));
    }

    #[test]
    fn wrk_layout() {
        let c = cfg(&["--latency", "http://127.0.0.1:8080/plaintext"]);
        let text = body(&c, &outcome());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "  Thread Stats   Avg      Stdev     Max   +/- Stdev"
        );
        assert!(
            lines[1].starts_with("    Latency   650.00us"),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            "    Req/Sec    85.00k     7.07k   90.00k   100.00%"
        );
        assert_eq!(lines[3], "  Latency Distribution");
        assert!(lines[4].starts_with("     50%  "), "{}", lines[4]);
        assert!(text.contains("\n  99.9%  "));
        assert!(text.contains("\n    max  "));
        assert!(text.contains("\n  Detailed Percentile spectrum:\n"));
        assert!(text.contains("  4 requests in 10.00s, 520.00B read\n"));
        assert!(text.contains("  Socket errors: connect 0, read 1, write 0, timeout 0\n"));
        assert!(text.contains("  Non-2xx or 3xx responses: 1\n    status 500: 1\n"));
        assert!(!text.contains("Reconnects"));
        assert!(text.ends_with("Requests/sec:      0.40\nTransfer/sec:      52.00B\n"));
    }

    #[test]
    fn rate_adds_uncorrected_line() {
        let c = cfg(&["-R", "100", "http://127.0.0.1:8080/"]);
        let text = body(&c, &outcome());
        assert!(text
            .lines()
            .nth(3)
            .unwrap()
            .starts_with("  Uncorrected latency: p50 "));
    }
}
