//! Every number the harness prints, in one place: the reports' figures (a
//! few significant digits, thousands grouped, a dash for values that are not
//! numbers), progress lines (latencies, durations, CPU lists) and, in
//! [`wrk`], wrk's own units so loadgen's report reads like wrk's.
//!
//! One module so that a figure looks the same on the terminal, in
//! summary.md and under a chart, and a change of style is made once.

use std::time::Duration;

pub mod wrk;

/// Shown for NaN and infinities.
pub const MISSING: &str = "–";

/// `1234567` → `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A value with decimals chosen by its magnitude: about three significant
/// digits below 100, whole numbers (grouped) above.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return MISSING.to_string();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a < 0.1 {
        format!("{v:.3}")
    } else if a < 10.0 {
        format!("{v:.2}")
    } else if a < 100.0 {
        format!("{v:.1}")
    } else if v < 0.0 {
        format!("-{}", grouped(a.round() as u64))
    } else {
        grouped(v.round() as u64)
    }
}

/// `98765.4` → `98,765`: a rate or count rounded to a whole number.
pub fn thousands(x: f64) -> String {
    grouped(x.round().max(0.0) as u64)
}

/// Microseconds as `850 µs`, `3.2 ms` or `1.25 s`: progress lines, where
/// the unit must travel with the number.
pub fn latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// `496 s` → `8m16s`; under a minute, `42s`: time estimates.
pub fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// `5s`, `1.5s`, `500ms`: a duration as it would be typed on the command line.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

/// A CPU list compactly, as `--cpus` and taskset take it: `[0, 1, 2, 5]` → `0-2,5`.
pub fn cpus(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
        i += 1;
    }
    parts.join(",")
}

/// Requests per second: whole numbers, grouped.
pub fn rate(v: f64) -> String {
    if v.is_finite() && v >= 100.0 {
        grouped(v.round() as u64)
    } else {
        num(v)
    }
}

/// Microseconds shown as milliseconds.
pub fn ms(us: f64) -> String {
    num(us / 1000.0)
}

/// KiB shown as MiB.
pub fn mib(kib: u64) -> String {
    num(kib as f64 / 1024.0)
}

/// Short axis labels: `0`, `500`, `50k`, `1.2M`; fractions for small values.
pub fn short(v: f64) -> String {
    if !v.is_finite() {
        return MISSING.to_string();
    }
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(num(f64::NAN), MISSING);
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.01234), "0.012");
        assert_eq!(num(4.56789), "4.57");
        assert_eq!(num(42.42), "42.4");
        assert_eq!(num(12345.6), "12,346");
        assert_eq!(rate(98765.4), "98,765");
        assert_eq!(ms(1500.0), "1.50");
        assert_eq!(mib(2048), "2.00");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(500.0), "500");
        assert_eq!(short(50_000.0), "50k");
        assert_eq!(short(125_000.0), "125k");
        assert_eq!(short(1_250_000.0), "1.25M");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(2.5), "2.5");
    }

    #[test]
    fn progress_figures_read_well() {
        assert_eq!(thousands(98765.4), "98,765");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(latency(850.0), "850 µs");
        assert_eq!(latency(3210.0), "3.2 ms");
        assert_eq!(latency(1_250_000.0), "1.25 s");
        assert_eq!(minutes(Duration::from_secs(496)), "8m16s");
        assert_eq!(minutes(Duration::from_secs(42)), "42s");
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn cpu_lists_format_compactly() {
        assert_eq!(cpus(&[0]), "0");
        assert_eq!(cpus(&[1, 0, 2, 5]), "0-2,5");
        assert_eq!(cpus(&[0, 2, 4]), "0,2,4");
    }
}
