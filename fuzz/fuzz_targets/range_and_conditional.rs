//! The inputs of a conditional or range GET: a `Range` header evaluated
//! against a file size (`servers::app::files::range`) and the HTTP-date
//! parser behind If-Modified-Since, If-Unmodified-Since and If-Range
//! (`servers::http::date::parse`).
//!
//! Input: 9 control bytes, then the header value.
//! - `ctl[0]`: bits 0-1 shape the size (0: `ctl[1..9]` as is, a LE u64;
//!   1: modulo 1024; 2: 0; 3: u64::MAX);
//! - `ctl[1..9]`: the size, and also a number of seconds for `date::format`.
//!
//! Invariants: no panic; a `Part` lies within the file (`start <= end <
//! size`); `Unsatisfiable` only for a `bytes=` spec; a suffix range ends at
//! the last byte; a bigger file never turns a `Part` into `Unsatisfiable`.
//! A date that parses, formatted again with `date::format`, parses back to
//! the same instant; any instant in years 0..=9999 survives format and
//! parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use servers::app::files::{range, Range};
use servers::http::date;

/// 9999-12-31T23:59:59Z, the last instant an IMF-fixdate can show.
const MAX_DATE: i64 = 253_402_300_799;
/// 0000-01-01T00:00:00Z (proleptic Gregorian), the first.
const MIN_DATE: i64 = -62_167_219_200;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let (ctl, value) = data.split_at(9);
    let n = u64::from_le_bytes(ctl[1..9].try_into().unwrap());
    let size = match ctl[0] & 3 {
        0 => n,
        1 => n % 1024,
        2 => 0,
        _ => u64::MAX,
    };

    // ---- Range
    let r = range(Some(value), size);
    match r {
        Range::Full => {}
        Range::Part { start, end } => {
            assert!(start <= end && end < size, "{r:?} of {size}");
            let spec = std::str::from_utf8(value).unwrap().trim();
            assert!(spec.starts_with("bytes="));
            if spec["bytes=".len()..].trim().starts_with('-') {
                assert_eq!(end, size - 1, "suffix range {r:?} of {size}");
            }
        }
        Range::Unsatisfiable => {
            let spec = std::str::from_utf8(value).unwrap().trim();
            assert!(spec.starts_with("bytes="), "{spec:?}");
        }
    }
    if let Some(bigger) = size.checked_add(1 + u64::from(ctl[1])) {
        if let Range::Part { .. } = r {
            assert_ne!(range(Some(value), bigger), Range::Unsatisfiable);
        }
    }
    assert_eq!(range(None, size), Range::Full);

    // ---- HTTP-date
    if let Some(t) = date::parse(value) {
        let text = date::format(t);
        assert_eq!(
            date::parse(&text),
            Some(t),
            "{:?} -> {t} -> {:?}",
            String::from_utf8_lossy(value),
            String::from_utf8_lossy(&text)
        );
    }
    let secs = MIN_DATE + (n % (MAX_DATE - MIN_DATE + 1) as u64) as i64;
    let text = date::format(secs);
    assert_eq!(
        date::parse(&text),
        Some(secs),
        "{secs} -> {:?}",
        String::from_utf8_lossy(&text)
    );
    // Out of range it must not panic either.
    let _ = date::format(n as i64);
});
