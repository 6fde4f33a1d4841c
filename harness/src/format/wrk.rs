//! wrk's number formatting (units.c), reproduced digit for digit so scripts
//! that scrape wrk's report read loadgen's unchanged, and the reverse:
//! reading wrk's time values back when its report is parsed.

/// A family of units: `base` below `scale * 0.85`, then each of `units` in
/// turn. As in wrk, the last entry of `units` is never chosen (wrk's loop
/// stops one before its NULL terminator), so e.g. time tops out at "ms" here
/// and switches to the seconds family instead.
struct Units {
    scale: f64,
    base: &'static str,
    units: &'static [&'static str],
}

const METRIC: Units = Units {
    scale: 1000.0,
    base: "",
    units: &["k", "M", "G", "T", "P"],
};
const BINARY: Units = Units {
    scale: 1024.0,
    base: "",
    units: &["K", "M", "G", "T", "P"],
};
const TIME_US: Units = Units {
    scale: 1000.0,
    base: "us",
    units: &["ms", "s"],
};
const TIME_S: Units = Units {
    scale: 60.0,
    base: "s",
    units: &["m", "h"],
};

fn format_units(n: f64, m: &Units, precision: usize) -> String {
    let mut amt = n;
    let mut unit = m.base;
    let threshold = m.scale * 0.85;
    let mut i = 0;
    while i + 1 < m.units.len() && amt >= threshold {
        amt /= m.scale;
        unit = m.units[i];
        i += 1;
    }
    format!("{amt:.precision$}{unit}")
}

/// Counts: `80.00k`, `1.50M`.
pub fn metric(n: f64) -> String {
    format_units(n, &METRIC, 2)
}

/// Bytes without the trailing `B` (the caller appends it, as wrk does).
pub fn binary(n: f64) -> String {
    format_units(n, &BINARY, 2)
}

/// A time in microseconds: `631.00us`, `5.00ms`, `10.00s`, `2.00m`.
pub fn time_us(n: f64) -> String {
    if n >= 1_000_000.0 {
        format_units(n / 1_000_000.0, &TIME_S, 2)
    } else {
        format_units(n, &TIME_US, 2)
    }
}

/// A whole duration in seconds for the "Running 10s test" line: `10s`, `2m`.
pub fn time_s(n: f64) -> String {
    format_units(n, &TIME_S, 0)
}

/// wrk's `print_units`: right-align the number in `width` columns so that
/// the unit letters hang into the two columns of padding that follow.
pub fn padded(msg: &str, width: usize) -> String {
    let b = msg.as_bytes();
    let mut pad = 2;
    if b.last().is_some_and(|c| c.is_ascii_alphabetic()) {
        pad -= 1;
    }
    if b.len() >= 2 && b[b.len() - 2].is_ascii_alphabetic() {
        pad -= 1;
    }
    let w = width - pad;
    format!("{msg:>w$.w$}{}", &"  "[..pad])
}

/// wrk's time values (`631.00us`, `5.00ms`, `1.20s`, `2.00m`, `1.00h`) in µs.
pub fn parse_time_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_wrk() {
        assert_eq!(time_us(631.0), "631.00us");
        assert_eq!(time_us(900.0), "0.90ms");
        assert_eq!(time_us(5000.0), "5.00ms");
        assert_eq!(time_us(10_000_000.0), "10.00s");
        assert_eq!(time_us(120_000_000.0), "2.00m");
        assert_eq!(metric(80_000.0), "80.00k");
        assert_eq!(metric(12.0), "12.00");
        assert_eq!(binary(200.0 * 1024.0 * 1024.0), "200.00M");
        assert_eq!(time_s(10.0), "10s");
        assert_eq!(time_s(120.0), "2m");
    }

    #[test]
    fn pads_like_print_units() {
        assert_eq!(padded("631.00us", 8), "631.00us");
        assert_eq!(padded("5.00ms", 9), "   5.00ms");
        assert_eq!(padded("80.00k", 8), " 80.00k ");
        assert_eq!(padded("12.00", 8), " 12.00  ");
    }
}
