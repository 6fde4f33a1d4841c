//! The `Date` header and HTTP-date parsing.
//!
//! Formatting a date per request would cost more than the rest of a
//! /plaintext response, so each thread keeps the formatted value and
//! re-formats it only when the (coarse, syscall-free) clock has moved to a
//! new second. A per-thread cache instead of one global value keeps cores from
//! bouncing a shared cache line on every request.

use std::cell::Cell;

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

thread_local! {
    static CACHE: Cell<(i64, [u8; DATE_LEN])> = const { Cell::new((i64::MIN, [0; DATE_LEN])) };
}

/// The current date as an IMF-fixdate, formatted at most once a second per thread.
pub fn now() -> [u8; DATE_LEN] {
    // The clock is read through the vDSO, not a syscall: a few nanoseconds.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    CACHE.with(|c| {
        let (cached, text) = c.get();
        if cached == secs {
            return text;
        }
        let text = format(secs);
        c.set((secs, text));
        text
    })
}

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Format Unix seconds as an IMF-fixdate (RFC 9110 §5.6.7).
pub fn format(secs: i64) -> [u8; DATE_LEN] {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[days.rem_euclid(7) as usize]);
    put2(&mut out[5..7], d as u32);
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize]);
    let y = y.clamp(0, 9999) as u32;
    put2(&mut out[12..14], y / 100);
    put2(&mut out[14..16], y % 100);
    put2(&mut out[17..19], (rem / 3600) as u32);
    put2(&mut out[20..22], (rem / 60 % 60) as u32);
    put2(&mut out[23..25], (rem % 60) as u32);
    out
}

/// Parse an IMF-fixdate back to Unix seconds (the only form we emit; the
/// obsolete RFC 850 and asctime forms are rare enough to treat as absent).
pub fn parse(s: &[u8]) -> Option<i64> {
    if s.len() != DATE_LEN || &s[3..5] != b", " || &s[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &b in &s[r] {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(b - b'0');
        }
        Some(v)
    };
    let d = num(5..7)?;
    let m = MONTHS.iter().position(|mo| &s[8..11] == *mo)? as i64 + 1;
    let y = num(12..16)?;
    let (hh, mm, ss) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if s[16] != b' '
        || s[19] != b':'
        || s[22] != b':'
        || d == 0
        || d > 31
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return None;
    }
    let t = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    // A leap second on 31 Dec 9999 lands in year 10000, which no IMF-fixdate
    // can show (`format` would clamp it to 9999): no date at all, like any
    // other one we could not have sent.
    (t <= LAST_DATE).then_some(t)
}

/// 9999-12-31T23:59:59Z, the last instant an IMF-fixdate can show.
const LAST_DATE: i64 = 253_402_300_799;

fn put2(dst: &mut [u8], v: u32) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(&format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn round_trip() {
        for secs in (0..4_102_444_800i64).step_by(86_400 * 37 + 3_607) {
            assert_eq!(parse(&format(secs)), Some(secs), "{secs}");
        }
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse(b"Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }
}
