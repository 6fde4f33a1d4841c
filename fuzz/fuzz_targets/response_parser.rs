//! The load generator's response parser (`harness::loadgen::response`),
//! fed as the engine feeds it: bytes arrive, each `Partial { consumed }`
//! drops that many from the front, each `Complete` ends a response.
//!
//! Input: 3 control bytes, then the bytes "from the server".
//! - `ctl[0]` bit 0: the responses answer HEAD requests;
//! - `ctl[1..3]`: where the bytes are split into two arrivals (LE u16,
//!   modulo the length + 1).
//!
//! Invariants: no panic; `consumed` never exceeds what was presented; and
//! the same responses (status, close, where each ends), the same error and
//! the same end-of-stream answer whether the bytes arrive at once, in two
//! parts, or byte by byte (the last for inputs up to 512 bytes).
#![no_main]

use harness::loadgen::response::{Error, Progress, ResponseParser};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A response ended at this offset of the whole input.
    Response {
        end: usize,
        status: u16,
        close: bool,
    },
    Error(Error),
    /// `eof()` after the last byte (a close-delimited response completes).
    Eof(Option<u16>),
}

/// Feed `data` in arrivals ending at `ends` (increasing, the last is
/// `data.len()`), the way the engine's read loop does.
fn run(data: &[u8], head: bool, ends: impl IntoIterator<Item = usize>) -> Vec<Event> {
    let mut p = ResponseParser::new(head);
    let mut events = Vec::new();
    // The unconsumed bytes start at `start` of `data`; bytes up to `avail`
    // have arrived.
    let mut start = 0;
    for avail in ends {
        loop {
            // A fresh copy, as the engine's buffer is reused and moved.
            let buf = data[start..avail].to_vec();
            match p.parse(&buf) {
                Ok(Progress::Complete {
                    consumed,
                    status,
                    close,
                }) => {
                    assert!(
                        consumed > 0 && consumed <= buf.len(),
                        "{consumed} of {}",
                        buf.len()
                    );
                    // 1xx are interim: skipped, never the answer.
                    assert!(
                        status < 1000 && !(100..200).contains(&status),
                        "status {status}"
                    );
                    assert!(p.at_boundary());
                    start += consumed;
                    events.push(Event::Response {
                        end: start,
                        status,
                        close,
                    });
                    if close {
                        // The engine reconnects after a close response.
                        return events;
                    }
                }
                Ok(Progress::Partial { consumed }) => {
                    assert!(consumed <= buf.len(), "{consumed} of {}", buf.len());
                    start += consumed;
                    break;
                }
                Err(e) => {
                    events.push(Event::Error(e));
                    return events;
                }
            }
        }
    }
    events.push(Event::Eof(p.eof()));
    events
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (ctl, buf) = data.split_at(3);
    let head = ctl[0] & 1 != 0;
    let cut = usize::from(u16::from_le_bytes([ctl[1], ctl[2]])) % (buf.len() + 1);

    let whole = run(buf, head, [buf.len()]);
    let split = run(buf, head, [cut, buf.len()]);
    assert_eq!(split, whole, "split at {cut}");
    if buf.len() <= 512 {
        let bytewise = run(buf, head, 0..=buf.len());
        assert_eq!(bytewise, whole, "byte by byte");
    }
});
