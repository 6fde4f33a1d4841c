//! Inputs for the `response_parser` libFuzzer target under `fuzz/`
//! (`just fuzz response_parser`), each fed as the target feeds it: whole,
//! and split in two arrivals, which must give the same answer.

use harness::loadgen::response::{Error, Progress, ResponseParser, MAX_HEAD};

/// Feed `data` in arrivals ending at `ends`, dropping what each `Partial`
/// consumed, as the engine does: the responses (status, end offset) and
/// the error, if any.
fn run(data: &[u8], ends: &[usize]) -> (Vec<(u16, usize)>, Option<Error>) {
    let mut p = ResponseParser::new(false);
    let mut done = Vec::new();
    let mut start = 0;
    for &avail in ends {
        loop {
            match p.parse(&data[start..avail]) {
                Ok(Progress::Complete {
                    consumed, status, ..
                }) => {
                    start += consumed;
                    done.push((status, start));
                }
                Ok(Progress::Partial { consumed }) => {
                    start += consumed;
                    break;
                }
                Err(e) => return (done, Some(e)),
            }
        }
    }
    (done, None)
}

/// The control bytes of the fuzz input: [HEAD flag, cut as LE u16].
fn split(input: &[u8]) -> (&[u8], usize) {
    let (ctl, data) = input.split_at(3);
    let cut = usize::from(u16::from_le_bytes([ctl[1], ctl[2]])) % (data.len() + 1);
    (data, cut)
}

/// A chunk-size line longer than its 1 KiB limit was accepted when it
/// arrived in one read and refused (TooLarge) when split in the middle:
/// the limit was only checked on a line still missing its LF.
#[test]
fn chunk_line_over_the_limit_whatever_the_split() {
    let mut input = vec![0u8, 0, 0];
    input.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    input.extend_from_slice(&[b'a'; 1100]);
    input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    let cut = 47 + 1060;
    input[1..3].copy_from_slice(&(cut as u16).to_le_bytes());
    let (data, cut) = split(&input);
    let whole = run(data, &[data.len()]);
    assert_eq!(run(data, &[cut, data.len()]), whole);
    assert_eq!(whole, (vec![], Some(Error::TooLarge)));
    // A line at the limit still passes, at once or split.
    let mut ok = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    ok.extend_from_slice(&[b'a'; 1024 - 3]);
    ok.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    let whole = run(&ok, &[ok.len()]);
    assert_eq!(whole, (vec![(200, ok.len())], None));
    for cut in [47, 47 + 500, 47 + 1023, 47 + 1024] {
        assert_eq!(run(&ok, &[cut, ok.len()]), whole, "cut {cut}");
    }
}

/// The same for the head as a whole: a head of many short lines, longer
/// than MAX_HEAD, was accepted in one read and refused when split.
/// (Beyond libFuzzer's default 4 KiB inputs: found while writing the
/// target, by the same reasoning.)
#[test]
fn head_over_the_limit_whatever_the_split() {
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n".to_vec();
    while head.len() <= MAX_HEAD {
        head.extend_from_slice(b"X-Filler: 0123456789abcdef\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let whole = run(&head, &[head.len()]);
    assert_eq!(run(&head, &[MAX_HEAD + 1, head.len()]), whole);
    assert_eq!(whole, (vec![], Some(Error::TooLarge)));
}
