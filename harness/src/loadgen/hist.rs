//! Latency histograms: creation, summaries, the HdrHistogram percentile
//! spectrum (wrk2's `--latency` text) and V2 serialization for JSON.

use std::fmt::Write;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Three significant digits: 0.1% error, as wrk2 and HdrHistogram default.
const SIGFIG: u8 = 3;

/// A histogram of microseconds from 1 µs to `max_us`; values above are
/// recorded as `max_us` (saturating), never dropped.
pub fn new(max_us: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max_us.max(2), SIGFIG).expect("valid histogram bounds")
}

/// The figures the report and the JSON give for one histogram, in µs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Lowest value.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Highest value.
    pub max: u64,
    /// Median.
    pub p50: u64,
    /// 75th percentile.
    pub p75: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// 99.99th percentile.
    pub p99_99: u64,
}

/// The summary of `h` (zeros when empty).
pub fn summary(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    let q = |p: f64| h.value_at_quantile(p);
    Summary {
        min: h.min(),
        mean: h.mean(),
        stdev: h.stdev(),
        max: h.max(),
        p50: q(0.50),
        p75: q(0.75),
        p90: q(0.90),
        p99: q(0.99),
        p99_9: q(0.999),
        p99_99: q(0.9999),
    }
}

/// Percentage of samples within one standard deviation of the mean (wrk's
/// "+/- Stdev" column).
pub fn within_stdev(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let (mean, stdev) = (h.mean(), h.stdev());
    let (lo, hi) = (mean - stdev, mean + stdev);
    let inside: u64 = h
        .iter_recorded()
        .filter(|v| {
            let x = h.median_equivalent(v.value_iterated_to()) as f64;
            x >= lo && x <= hi
        })
        .map(|v| v.count_at_value())
        .sum();
    inside as f64 * 100.0 / h.len() as f64
}

/// HdrHistogram's `outputPercentileDistribution` in the C library's classic
/// format, as wrk2 prints it: values in milliseconds, five ticks per half
/// distance, then the mean/max/bucket footer. HdrHistogram's plotter reads it.
pub fn spectrum(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0; // µs recorded, ms printed
    let p = usize::from(SIGFIG);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>12} {:>12} {:>12}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / SCALE;
            let inv = 1.0 / (1.0 - q);
            let inv = if inv.is_finite() {
                format!("{inv:>12.2}")
            } else {
                format!("{:>12}", "inf")
            };
            let _ = writeln!(out, "{value:>12.p$} {q:>12.6} {total:>12} {inv}");
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE)
    };
    // sub_bucket_count is not exposed: it is the power of two holding
    // 2 * 10^sigfig, as in every HdrHistogram implementation.
    let sub_buckets = (2 * 10u64.pow(u32::from(SIGFIG))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.p$}, StdDeviation   = {stdev:>12.p$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.p$}, Total count    = {:>12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// The histogram in HdrHistogram's V2 encoding, base64 (standard alphabet,
/// padded): any HdrHistogram library can decode and re-analyse it.
pub fn to_base64(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing to memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`to_base64`]: what went wrong says which layer failed
/// (the base64 text or the HdrHistogram V2 encoding inside it).
pub fn from_base64(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("not an HdrHistogram V2 encoding: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = new(2_000_000);
        for v in 1..=1000u64 {
            h.saturating_record(v * 10);
        }
        h
    }

    #[test]
    fn saturates_instead_of_dropping() {
        let mut h = new(1000);
        h.saturating_record(5_000_000);
        assert_eq!(h.len(), 1);
        assert!(h.max() >= 1000 && h.max() < 1100);
    }

    #[test]
    fn summary_percentiles() {
        let s = summary(&sample());
        assert_eq!(s.min, 10);
        assert!((s.p50 as f64 - 5000.0).abs() < 10.0);
        assert!((s.p99 as f64 - 9900.0).abs() < 20.0);
        assert!((s.mean - 5005.0).abs() < 10.0);
        assert_eq!(summary(&new(10)), Summary::default());
    }

    #[test]
    fn within_stdev_of_uniform_is_about_58_percent() {
        let w = within_stdev(&sample());
        assert!((w - 57.7).abs() < 1.0, "{w}");
    }

    #[test]
    fn spectrum_layout() {
        let s = spectrum(&sample());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "       Value   Percentile   TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert!(lines[2].trim_start().starts_with("0.010"));
        assert!(lines[2].contains("0.000000"));
        let last = lines.iter().rev().find(|l| l.contains("1.000000")).unwrap();
        assert!(last.ends_with("inf"), "{last}");
        assert!(last.contains(" 1000 "));
        assert!(s.contains("#[Mean    = "));
        assert!(s.contains("Total count    =         1000]"));
        assert!(s.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn base64_round_trips() {
        let h = sample();
        let back = from_base64(&to_base64(&h)).unwrap();
        assert_eq!(back, h);
        assert!(from_base64("%%").unwrap_err().starts_with("not base64: "));
        let not_v2 = base64::engine::general_purpose::STANDARD.encode(b"hello");
        assert!(from_base64(&not_v2)
            .unwrap_err()
            .starts_with("not an HdrHistogram V2 encoding: "));
    }
}
