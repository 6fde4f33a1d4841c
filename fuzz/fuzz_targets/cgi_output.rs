//! A CGI script's output (`servers::app::cgi::parse_output`): the whole
//! input is what the script wrote to stdout.
//!
//! Invariants: no panic; an error is a 502; an accepted response has a
//! status in 200..=599, headers the server may pass on (token names, no
//! control bytes in values, never Status, framing, hop-by-hop or Date, at
//! most one Content-Type and Location, Content-Type first), a body that is
//! the tail of the output, and a Content-Type or Location when the body is
//! not empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use servers::app::cgi::{parse_output, Body};

const NEVER: &[&str] = &[
    "status",
    "connection",
    "content-length",
    "date",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fuzz_target!(|data: &[u8]| {
    match parse_output(data.to_vec()) {
        Err(e) => {
            assert_eq!(e.status(), 502, "{e:?}");
            assert!(!e.to_string().is_empty());
        }
        Ok(r) => {
            assert!((200..=599).contains(&r.status), "status {}", r.status);
            let Body::Memory(body) = &r.body else {
                panic!("parse_output spilled to a file");
            };
            assert!(data.ends_with(body));
            // The head ends with a blank line before the body.
            let head = &data[..data.len() - body.len()];
            assert!(head.ends_with(b"\n"), "head {head:?}");
            if !r.body.is_empty() {
                assert!(r.content_type().is_some() || r.header("location").is_some());
            }
            let mut seen_ct = 0;
            let mut seen_loc = 0;
            for (i, (name, value)) in r.headers.iter().enumerate() {
                assert!(
                    !name.is_empty() && name.bytes().all(is_tchar),
                    "name {name:?}"
                );
                assert!(
                    value
                        .bytes()
                        .all(|c| c == b'\t' || (c >= 0x20 && c != 0x7f)),
                    "value {value:?}"
                );
                let lower = name.to_ascii_lowercase();
                assert!(!NEVER.contains(&lower.as_str()), "{name} passed on");
                if lower == "content-type" {
                    seen_ct += 1;
                    assert_eq!(i, 0, "Content-Type not first");
                    assert!(!value.is_empty());
                }
                if lower == "location" {
                    seen_loc += 1;
                    assert!(!value.is_empty());
                }
            }
            assert!(seen_ct <= 1 && seen_loc <= 1);
            if seen_loc == 1 && !head_has_status(head) {
                assert_eq!(r.status, 302);
            }
        }
    }
});

/// Whether a line of the head names Status (any case).
fn head_has_status(head: &[u8]) -> bool {
    head.split(|&c| c == b'\n')
        .any(|l| l.len() >= 7 && l[..7].eq_ignore_ascii_case(b"status:"))
}
