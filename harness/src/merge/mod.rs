//! `harness merge`: several loadgen runs (processes or machines driving one
//! server at once) as one result, in loadgen's own text layout and `--json`
//! layout, so that a merged file reads like one run's and can be merged
//! again.
//!
//! Counts, bytes and every error counter are summed (`status_by_code` per
//! code). The latency histograms are added bucket by bucket — all of
//! loadgen's have 1 µs resolution and 3 significant digits, so the sum is
//! exactly the histogram one loadgen holding every connection would have
//! recorded — and the percentiles are computed from the sum, never averaged
//! from the inputs'. Rates cannot be recovered from a histogram; the merged
//! req/s is the sum of the inputs' req/s (the combined rate when the runs
//! overlapped in time, see [`checks`]), and the merged duration is
//! requests ÷ that sum: the inputs' common duration when they ran equally
//! long, so that the report's `N requests in D` and `Requests/sec` agree.
//!
//! [`input`] reads and checks one file, [`checks`] says whether the merge
//! means anything, [`cli`] is the command line; this file combines.

pub mod checks;
pub mod cli;
pub mod input;

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::loadgen::json::{Report, Settings};
use crate::loadgen::report::{self, Layout};
use crate::loadgen::stats::Stats;
use crate::loadgen::Outcome;
use cli::MergeArgs;
use input::Input;

/// What `harness merge` prints.
#[derive(Debug)]
pub struct Done {
    /// The report, for stdout.
    pub text: String,
    /// The result in loadgen's `--json` layout, for `--json OUT`.
    pub json: String,
    /// Doubts about the result, one line each (the clock caveat).
    pub warnings: Vec<String>,
}

/// Read `args.files`, refuse what cannot be merged, merge.
pub fn run(args: &MergeArgs) -> Result<Done, String> {
    let inputs = args
        .files
        .iter()
        .map(|p| input::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut warnings = checks::differences(&inputs);
    if !warnings.is_empty() && !args.allow_mixed {
        return Err(format!(
            "refusing to merge runs of different loads:\n  {}\n(--allow-mixed merges them \
             anyway, under the first input's settings)",
            warnings.join("\n  ")
        ));
    }
    warnings.extend(checks::windows(&inputs));
    let merged = merge(&inputs)?;
    Ok(Done {
        text: text(&merged, args.latency),
        json: merged.report.to_text(),
        warnings,
    })
}

/// The merge of several runs.
#[derive(Debug)]
pub struct Merged {
    /// In loadgen's `--json` layout.
    pub report: Report,
    /// The same, as loadgen's report renders it.
    pub outcome: Outcome,
    /// Files merged.
    pub files: usize,
}

/// Merge `inputs` (at least one).
pub fn merge(inputs: &[Input]) -> Result<Merged, String> {
    let stats = stats(inputs)?;
    let rps: f64 = inputs.iter().map(|i| i.report.requests_per_sec).sum();
    let duration_s = if rps > 0.0 {
        stats.completed as f64 / rps
    } else {
        let longest = inputs.iter().map(|i| i.report.duration_s);
        longest.fold(0.0, f64::max)
    };
    let starts: Option<Vec<u64>> = inputs.iter().map(|i| i.report.started_unix_ms).collect();
    let started = starts.and_then(|s| s.into_iter().min());
    let outcome = Outcome {
        stats,
        elapsed: Duration::try_from_secs_f64(duration_s).unwrap_or_default(),
        started_unix_ms: started.unwrap_or(0),
        all_connects_failed: None,
    };
    let mut report = Report::new(settings(inputs), &outcome);
    report.duration_s = duration_s;
    report.requests_per_sec = rps;
    report.started_unix_ms = started;
    report.merged_from = Some(
        inputs
            .iter()
            .map(|i| i.report.merged_from.unwrap_or(1))
            .sum(),
    );
    Ok(Merged {
        report,
        outcome,
        files: inputs.len(),
    })
}

/// Every count summed, the histograms added, the req/s samples pooled.
fn stats(inputs: &[Input]) -> Result<Stats, String> {
    let mut s = Stats::new(2);
    s.latency = union(inputs, |i| &i.latency, "histogram")?;
    s.uncorrected = union(inputs, |i| &i.uncorrected, "histogram_uncorrected")?;
    for i in inputs {
        let (r, e) = (&i.report, &i.report.errors);
        s.rps_samples.extend_from_slice(&r.thread_rps_samples);
        s.completed += r.requests;
        s.batches += r.batches;
        s.bytes_read += r.bytes_read;
        s.bytes_written += r.bytes_written;
        s.connect_errors += e.connect;
        s.read_errors += e.read;
        s.write_errors += e.write;
        s.timeouts += e.timeout;
        s.status_errors += e.status;
        for &(code, n) in &i.codes {
            s.by_code[usize::from(code)] += n;
        }
        s.idle_closes += e.idle_close;
        s.reconnects += r.reconnects;
        s.in_flight_at_end += r.in_flight_at_end;
    }
    Ok(s)
}

/// The sum of one histogram of every input. The sum grows to hold the
/// largest input's range (their bounds differ with -T and -R).
fn union(
    inputs: &[Input],
    of: impl Fn(&Input) -> &Histogram<u64>,
    key: &str,
) -> Result<Histogram<u64>, String> {
    let Some((first, rest)) = inputs.split_first() else {
        return Err("nothing to merge".into());
    };
    let mut sum = of(first).clone();
    sum.auto(true);
    for i in rest {
        sum.add(of(i))
            .map_err(|e| format!("{}: key `{key}`: cannot be added: {e:?}", i.name))?;
    }
    Ok(sum)
}

/// The merged settings: the load (URL, method, headers, pipeline) of the
/// first input; threads, connections, rates and request counts summed;
/// the longest duration, timeout and coalescing.
fn settings(inputs: &[Input]) -> Settings {
    let all = || inputs.iter().map(|i| &i.report.settings);
    let max = |f: fn(&Settings) -> f64| all().map(f).fold(0.0, f64::max);
    let mut s = inputs[0].report.settings.clone();
    s.threads = all().map(|s| s.threads).sum();
    s.connections = all().map(|s| s.connections).sum();
    s.duration_s = all().filter_map(|s| s.duration_s).reduce(f64::max);
    s.rate = all().filter_map(|s| s.rate).reduce(|a, b| a + b);
    s.requests = all().map(|s| s.requests).sum();
    s.timeout_s = max(|s| s.timeout_s);
    s.coalesce_us = max(|s| s.coalesce_us);
    s
}

/// The text report: two header lines in wrk's manner, one saying how the
/// figures were formed, then loadgen's body.
pub fn text(merged: &Merged, distribution: bool) -> String {
    let r = &merged.report;
    let s = &r.settings;
    let runs = r.merged_from.unwrap_or(1);
    let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let what = if runs == merged.files as u64 {
        plural(runs, "loadgen run")
    } else {
        format!(
            "{} ({})",
            plural(merged.files as u64, "file"),
            plural(runs, "loadgen run")
        )
    };
    let layout = Layout {
        paced: s.rate.is_some(),
        distribution,
    };
    format!(
        "Merged {what} @ {}\n  {} threads and {} connections in all\n  \
         req/s: the sum of the runs' req/s (right when they ran at the same time); \
         latency: their histograms added, percentiles from the sum\n{}",
        s.url,
        s.threads,
        s.connections,
        report::render(layout, &merged.outcome)
    )
}

#[cfg(test)]
mod tests {
    use super::input::fixture;
    use super::*;

    #[test]
    fn counts_add_and_percentiles_come_from_the_sum() {
        // a: 99 fast requests; b: 1 fast and 9 slow. The p99 of the union
        // lies among b's slow ones, which neither input's p99 average says.
        let a = fixture("a.json", &["-t1", "-c2"], &[100; 99], 2, (10.0, 1_000));
        let mut b_lat = vec![100];
        b_lat.extend([50_000; 9]);
        let b = fixture("b.json", &["-t2", "-c3"], &b_lat, 1, (10.0, 1_200));
        let m = merge(&[a, b]).unwrap();
        let r = &m.report;
        assert_eq!(r.requests, 109);
        assert_eq!(r.bytes_read, 10_900);
        assert_eq!(r.errors.status, 3);
        assert_eq!(r.errors.status_by_code["503"], 3);
        assert_eq!(r.latency_us.p50, 100);
        assert!((50_000..50_100).contains(&r.latency_us.p99), "{r:?}");
        assert_eq!(r.latency_us, r.uncorrected_latency_us);
        assert_eq!((r.settings.threads, r.settings.connections), (3, 5));
        assert_eq!(r.requests_per_sec, 9.9 + 1.0);
        assert!((r.duration_s - 10.0).abs() < 1e-9, "{}", r.duration_s);
        assert_eq!(r.started_unix_ms, Some(1_000));
        assert_eq!(r.merged_from, Some(2));
        assert_eq!(r.thread_rps_samples, vec![9.9, 1.0]);
    }

    #[test]
    fn a_merged_file_merges_again() {
        let run = |n: &str, v: u64| fixture(n, &["-n", "3"], &[v; 3], 0, (1.0, 0));
        let ab = merge(&[run("a", 10), run("b", 20)]).unwrap();
        let ab = input::parse("ab.json".into(), &ab.report.to_text()).unwrap();
        let abc = merge(&[ab, run("c", 30)]).unwrap().report;
        let flat = merge(&[run("a", 10), run("b", 20), run("c", 30)])
            .unwrap()
            .report;
        assert_eq!(abc.merged_from, Some(3));
        assert_eq!(abc.settings.requests, Some(9));
        assert_eq!(abc.histogram, flat.histogram);
        assert_eq!(abc.latency_us, flat.latency_us);
        assert_eq!(abc.requests_per_sec, flat.requests_per_sec);
    }

    #[test]
    fn histograms_of_different_ranges_add() {
        let a = fixture("a", &["-R", "10"], &[40_000_000], 0, (1.0, 0));
        let b = fixture("b", &["-R", "10"], &[10], 0, (1.0, 0));
        let m = merge(&[b, a]).unwrap();
        assert_eq!(m.report.latency_us.min, 10);
        assert!(m.report.latency_us.max >= 40_000_000);
        assert_eq!(m.report.settings.rate, Some(20));
    }

    #[test]
    fn the_text_is_loadgens_layout_under_a_merge_header() {
        let run = |n: &str| fixture(n, &[], &[100, 200], 1, (2.0, 0));
        let m = merge(&[run("a"), run("b")]).unwrap();
        let t = text(&m, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "Merged 2 loadgen runs @ http://127.0.0.1:1/x");
        assert_eq!(lines[1], "  4 threads and 20 connections in all");
        assert!(lines[2].starts_with("  req/s: the sum of the runs' req/s"));
        assert_eq!(
            lines[3],
            "  Thread Stats   Avg      Stdev     Max   +/- Stdev"
        );
        assert!(t.contains("  Latency Distribution\n"));
        assert!(t.contains("  4 requests in 2.00s, 400.00B read\n"));
        assert!(t.contains("  Non-2xx or 3xx responses: 2\n    status 503: 2\n"));
        assert!(t.ends_with("Requests/sec:      2.00\nTransfer/sec:     200.00B\n"));
        assert!(!t.contains("Uncorrected"));
    }
}
