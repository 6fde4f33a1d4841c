//! Number formatting shared by the tables and the charts: a few significant
//! digits, thousands grouped, and a dash for values that are not numbers.

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
}
