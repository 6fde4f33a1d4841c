//! The request parser (`servers::http::parser::Parser`), fed the way the
//! connections feed it: whole, split at a position taken from the input,
//! pipelined, and with the body taken over and streamed
//! (`pending_head` / `take_over_body` / `stream_body`, as uploads do).
//!
//! Input: 6 control bytes, then the bytes "from the socket".
//! - `ctl[0]`: bits 0-1 pick the limits (0, 1: the defaults; 2: tiny limits
//!   from `ctl[1]` and the upper bits; 3: small fixed ones);
//! - `ctl[2..4]`: the first cut (LE u16, modulo the remaining length + 1);
//! - `ctl[4..6]`: a second cut, used while streaming a body.
//!
//! Invariants: no panic; every answer is one of the documented errors or a
//! request whose `len` is non-zero and within the bytes it was given, whose
//! path and query are consistent with its target; and the request sequence
//! (pipelined) is the same whether each request arrives whole, split in two,
//! or split with its body streamed (same head, same body bytes, same
//! length, same errors). This is `servers/tests/parser_fuzz.rs` under
//! coverage guidance, plus the streaming path it does not cover.
#![no_main]

use libfuzzer_sys::fuzz_target;
use servers::http::parser::{Error, Limits, Parser, Request, Status, MAX_HEADERS};

#[derive(Debug, PartialEq, Eq)]
struct Summary {
    method: servers::http::parser::Method,
    method_str: String,
    target: String,
    path: String,
    query: Option<String>,
    version: servers::http::parser::Version,
    headers: Vec<(String, Vec<u8>)>,
    host: Option<String>,
    keep_alive: bool,
    body: Vec<u8>,
    len: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Partial,
    Complete(Summary),
    Err(Error),
}

/// The invariants every request must satisfy, and its owned summary.
fn summarize(buf: &[u8], r: &Request<'_>) -> Summary {
    assert!(
        r.len > 0 && r.len <= buf.len(),
        "len {} of {}",
        r.len,
        buf.len()
    );
    assert!(r.header_count <= MAX_HEADERS);
    assert!(
        r.path == "*" || r.path.starts_with('/'),
        "path {:?}",
        r.path
    );
    assert!(r.target.starts_with(r.path));
    if let Some(q) = r.query {
        // Only `http://host?q` has no path of its own in the target.
        assert!(
            r.target == "/"
                || (r.target.ends_with(q) && r.target.len() == r.path.len() + 1 + q.len())
        );
    } else {
        assert_eq!(r.target, r.path);
    }
    assert!(!r.method_str.is_empty());
    for h in r.headers() {
        assert!(!h.name.is_empty());
    }
    Summary {
        method: r.method,
        method_str: r.method_str.to_string(),
        target: r.target.to_string(),
        path: r.path.to_string(),
        query: r.query.map(str::to_string),
        version: r.version,
        headers: r
            .headers()
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        host: r.host.map(str::to_string),
        keep_alive: r.keep_alive,
        body: r.body.to_vec(),
        len: r.len,
    }
}

fn check(buf: &[u8], r: Result<Status<Request<'_>>, Error>) -> Outcome {
    match r {
        Ok(Status::Partial) => Outcome::Partial,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413 | 414 | 431 | 501 | 505));
            assert!(!e.reason().is_empty());
            Outcome::Err(e)
        }
        Ok(Status::Complete(r)) => {
            if let std::borrow::Cow::Borrowed(b) = r.body {
                // A Content-Length body is the bytes just before the end.
                assert!(buf[..r.len].ends_with(b));
            }
            Outcome::Complete(summarize(buf, &r))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// Each request's bytes at once.
    Whole,
    /// The first `cut` bytes, then all of them.
    Split,
    /// As `Split`, but a body still arriving after the first part is taken
    /// over and streamed (first up to `cut`, then `cut2` more, then all).
    Stream,
}

/// Parse the requests pipelined in `buf` with one parser, as a connection
/// does, until one is not complete. Returns each request's outcome.
fn pipeline(buf: &[u8], limits: Limits, feed: Feed, cut: usize, cut2: usize) -> Vec<Outcome> {
    let mut p = Parser::new(limits);
    let mut out = Vec::new();
    let mut off = 0;
    // Bounded: each complete request takes at least one byte.
    while out.len() < 16 {
        let rest = &buf[off..];
        let outcome = match feed {
            Feed::Whole => check(rest, p.parse(rest)),
            Feed::Split | Feed::Stream => {
                let k = cut.min(rest.len());
                // A fresh allocation, like a caller whose buffer moved.
                let prefix = rest[..k].to_vec();
                match check(&prefix, p.parse(&prefix)) {
                    Outcome::Partial => {
                        let head = match feed {
                            Feed::Stream => p.pending_head(&prefix).map(|h| {
                                assert!(h.len <= prefix.len());
                                assert!(h.body.is_empty());
                                summarize(&prefix, &h)
                            }),
                            _ => None,
                        };
                        match head {
                            Some(head) => stream(&mut p, rest, k, cut2, head),
                            None => check(rest, p.parse(rest)),
                        }
                    }
                    done => done,
                }
            }
        };
        let next = match &outcome {
            Outcome::Complete(s) => Some(s.len),
            _ => None,
        };
        out.push(outcome);
        match next {
            Some(len) => off += len,
            None => break,
        }
    }
    out
}

/// Take over the body of the request whose head is pending after `rest[..k]`
/// was parsed, and stream it: the bytes up to `k`, then `cut2` more, then
/// the rest. The outcome is that of the buffered parse: the head with the
/// streamed body and the request's whole length, or the error.
fn stream(p: &mut Parser, rest: &[u8], k: usize, cut2: usize, head: Summary) -> Outcome {
    let used = p.take_over_body();
    assert!(
        used >= head.len && used <= k,
        "used {used}, head {}, k {k}",
        head.len
    );
    let mut off = used;
    let mut body = Vec::new();
    let ends = [k, k.saturating_add(cut2).min(rest.len()), rest.len()];
    for (i, &end) in ends.iter().enumerate() {
        if end < off || (i > 0 && end == ends[i - 1]) {
            continue;
        }
        let input = &rest[off..end];
        match p.stream_body(input, &mut |d| body.extend_from_slice(d)) {
            Ok((n, done)) => {
                assert!(n <= input.len(), "used {n} of {}", input.len());
                off += n;
                if done {
                    return Outcome::Complete(Summary {
                        body,
                        len: off,
                        ..head
                    });
                }
            }
            Err(e) => return Outcome::Err(e),
        }
    }
    Outcome::Partial
}

fn limits(ctl: &[u8]) -> Limits {
    match ctl[0] & 3 {
        2 => Limits {
            max_request_line: usize::from(ctl[1] & 0x3f),
            max_header_bytes: usize::from(ctl[0] >> 2) * 2,
            max_body_bytes: usize::from(ctl[1] >> 6) * 5,
        },
        3 => Limits {
            max_request_line: 64,
            max_header_bytes: 256,
            max_body_bytes: 32,
        },
        _ => Limits::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (ctl, buf) = data.split_at(6);
    let limits = limits(ctl);
    let cut = usize::from(u16::from_le_bytes([ctl[2], ctl[3]])) % (buf.len() + 1);
    let cut2 = usize::from(u16::from_le_bytes([ctl[4], ctl[5]])) % (buf.len() + 1);

    let whole = pipeline(buf, limits, Feed::Whole, 0, 0);
    let split = pipeline(buf, limits, Feed::Split, cut, cut2);
    assert_eq!(split, whole, "split at {cut}");
    let streamed = pipeline(buf, limits, Feed::Stream, cut, cut2);
    assert_eq!(streamed, whole, "streamed from {cut}, then {cut2} more");

    // A parser is reusable after any answer, and a buffer that shrank
    // (against the contract) only starts it over.
    let mut p = Parser::new(limits);
    let _ = p.parse(buf);
    let first = check(buf, p.parse(buf));
    assert_eq!(Some(&first), whole.first());
    let _ = p.parse(&buf[..cut]);
    let _ = p.parse(&buf[..cut / 2]);
});
