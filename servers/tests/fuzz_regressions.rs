//! Inputs found by the libFuzzer targets under `fuzz/` (`just fuzz TARGET`),
//! minimized, each fed as the target fed it.

use servers::http::date;

/// `range_and_conditional`: a leap second on the last day an IMF-fixdate
/// can show parsed to an instant in year 10000, which `date::format`
/// clamps to year 9999 ("Sat, 01 Jan 9999 00:00:00 GMT"), so the date did
/// not survive a round trip. It is now refused like any date we could not
/// have sent.
#[test]
fn date_leap_second_after_year_9999() {
    // crash-3b38037af430bebb1c7e87bb93e2900e7242c685: 9 control bytes (size
    // mode 3, zero), then the header value.
    let input = b"\x03\0\0\0\0\0\0\0\0Fri, 31 Dec 9999 23:59:60 GMT";
    let value = &input[9..];
    if let Some(t) = date::parse(value) {
        assert_eq!(date::parse(&date::format(t)), Some(t));
    }
    assert_eq!(date::parse(value), None);
    // The last second that can be shown still round-trips, and so does a
    // leap second on any earlier day.
    let last = b"Fri, 31 Dec 9999 23:59:59 GMT";
    assert_eq!(date::parse(last), Some(253_402_300_799));
    assert_eq!(&date::format(253_402_300_799), last);
    let t = date::parse(b"Sat, 31 Dec 2016 23:59:60 GMT").unwrap();
    assert_eq!(date::parse(&date::format(t)), Some(t));
}
