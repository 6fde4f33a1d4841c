//! A minimal incremental HTTP/1.1 response parser: just enough to find where
//! each response ends (status line, `Content-Length`, chunked framing,
//! `Connection: close`) without copying or allocating. Bodies are skipped,
//! never stored, so a large download costs only the reads.

/// Largest response head accepted; a server sending more is broken (or not
/// HTTP) and the connection is failed rather than buffered without bound.
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 1024;

/// Why a response could not be parsed. Each one fails the connection and
/// counts as a read error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The status line is not `HTTP/1.x NNN ...`.
    StatusLine,
    /// A `Content-Length` that is not a number, or two that disagree.
    ContentLength,
    /// A chunk-size line that is not hex, or chunk data not followed by CRLF.
    Chunk,
    /// The head (or a chunk line) exceeded its limit without ending.
    TooLarge,
}

/// The outcome of feeding bytes to the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A response ended after `consumed` bytes of the input.
    Complete {
        /// Bytes of the input the response took.
        consumed: usize,
        /// Its status code.
        status: u16,
        /// The server will close the connection after this response.
        close: bool,
    },
    /// No response ended; `consumed` bytes (interim responses, body bytes)
    /// may be discarded, the rest must be presented again with more data.
    Partial {
        /// Bytes that may be discarded.
        consumed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body { remaining: u64 },
    ChunkSize,
    ChunkData { remaining: u64 },
    ChunkDataEnd,
    Trailers,
    UntilClose,
}

/// Per-connection parser state, reset by [`ResponseParser::reset`] when the
/// connection is reopened.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    head_request: bool,
    status: u16,
    close: bool,
}

impl ResponseParser {
    /// `head_request`: responses answer HEAD requests, so carry no body
    /// whatever their Content-Length says.
    pub fn new(head_request: bool) -> ResponseParser {
        ResponseParser {
            state: State::Head,
            head_request,
            status: 0,
            close: false,
        }
    }

    /// Forget any partial response (the connection was reopened).
    pub fn reset(&mut self) {
        self.state = State::Head;
    }

    /// Whether the parser is between responses (nothing partially parsed
    /// beyond bytes still in the caller's buffer).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Head
    }

    /// The peer closed the connection: a response delimited by close is now
    /// complete (its status returned); anything else mid-way is lost.
    pub fn eof(&mut self) -> Option<u16> {
        if self.state == State::UntilClose {
            self.state = State::Head;
            Some(self.status)
        } else {
            None
        }
    }

    /// Consume bytes from `buf` up to the end of the next response.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Progress, Error> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Head => {
                    let Some(head) = parse_head(rest)? else {
                        if rest.len() > MAX_HEAD {
                            return Err(Error::TooLarge);
                        }
                        return Ok(Progress::Partial { consumed: pos });
                    };
                    pos += head.len;
                    if (100..200).contains(&head.status) {
                        // Interim (100 Continue, 103 Early Hints): the real
                        // response follows.
                        continue;
                    }
                    self.status = head.status;
                    self.close = head.close;
                    let bodiless = self.head_request || head.status == 204 || head.status == 304;
                    self.state = match head.framing {
                        _ if bodiless => return Ok(self.complete(pos)),
                        Framing::Chunked => State::ChunkSize,
                        Framing::Length(0) => return Ok(self.complete(pos)),
                        Framing::Length(n) => State::Body { remaining: n },
                        Framing::Close => {
                            self.close = true;
                            State::UntilClose
                        }
                    };
                }
                State::Body { remaining } | State::ChunkData { remaining } => {
                    let avail = rest.len() as u64;
                    if avail < remaining {
                        self.state = match self.state {
                            State::Body { .. } => State::Body {
                                remaining: remaining - avail,
                            },
                            _ => State::ChunkData {
                                remaining: remaining - avail,
                            },
                        };
                        return Ok(Progress::Partial {
                            consumed: buf.len(),
                        });
                    }
                    pos += remaining as usize;
                    if let State::Body { .. } = self.state {
                        return Ok(self.complete(pos));
                    }
                    self.state = State::ChunkDataEnd;
                }
                State::ChunkSize => {
                    let Some((line, len)) = line(rest, MAX_LINE)? else {
                        return Ok(Progress::Partial { consumed: pos });
                    };
                    pos += len;
                    let size = chunk_size(line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData { remaining: size }
                    };
                }
                State::ChunkDataEnd => {
                    let Some((line, len)) = line(rest, MAX_LINE)? else {
                        return Ok(Progress::Partial { consumed: pos });
                    };
                    if !line.is_empty() {
                        return Err(Error::Chunk);
                    }
                    pos += len;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some((line, len)) = line(rest, MAX_LINE)? else {
                        return Ok(Progress::Partial { consumed: pos });
                    };
                    pos += len;
                    if line.is_empty() {
                        return Ok(self.complete(pos));
                    }
                }
                State::UntilClose => {
                    return Ok(Progress::Partial {
                        consumed: buf.len(),
                    })
                }
            }
        }
    }

    fn complete(&mut self, consumed: usize) -> Progress {
        self.state = State::Head;
        Progress::Complete {
            consumed,
            status: self.status,
            close: self.close,
        }
    }
}

enum Framing {
    Length(u64),
    Chunked,
    Close,
}

struct Head {
    len: usize,
    status: u16,
    close: bool,
    framing: Framing,
}

/// One line without its CRLF (or bare LF), and the bytes it spans
/// including the terminator; `None` if it has not fully arrived.
fn line(buf: &[u8], limit: usize) -> Result<Option<(&[u8], usize)>, Error> {
    match memchr::memchr(b'\n', buf) {
        // Over the limit is refused even when the LF is already here, or a
        // line read at once would pass where the same line split across
        // reads fails (below).
        Some(i) if i > limit => Err(Error::TooLarge),
        Some(i) => {
            let l = &buf[..i];
            Ok(Some((l.strip_suffix(b"\r").unwrap_or(l), i + 1)))
        }
        None if buf.len() > limit => Err(Error::TooLarge),
        None => Ok(None),
    }
}

fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
    let digits = trim(digits);
    if digits.is_empty() || digits.len() > 15 {
        return Err(Error::Chunk);
    }
    let mut n = 0u64;
    for &b in digits {
        let d = (b as char).to_digit(16).ok_or(Error::Chunk)?;
        n = n * 16 + u64::from(d);
    }
    Ok(n)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether the comma-separated list `value` contains `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// Parse a complete head, or `None` if its blank line has not arrived yet.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Error> {
    let Some((status_line, mut pos)) = line(buf, MAX_HEAD)? else {
        return Ok(None);
    };
    // "HTTP/1.x NNN[ reason]"
    let s = status_line;
    if s.len() < 12
        || &s[..7] != b"HTTP/1."
        || s[8] != b' '
        || !s[9..12].iter().all(u8::is_ascii_digit)
    {
        return Err(Error::StatusLine);
    }
    if s.len() > 12 && s[12] != b' ' {
        return Err(Error::StatusLine);
    }
    let status = s[9..12]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    let http10 = s[7] == b'0';
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = false;
    let mut keep_alive = false;
    loop {
        let Some((l, len)) = line(&buf[pos..], MAX_HEAD)? else {
            return Ok(None);
        };
        pos += len;
        if l.is_empty() {
            break;
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            continue; // not a header we need; tolerate it
        };
        let (name, value) = (&l[..colon], trim(&l[colon + 1..]));
        // Dispatch on length first: almost every header is skipped with
        // one comparison.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = parse_decimal(value).ok_or(Error::ContentLength)?;
                if length.is_some_and(|old| old != n) {
                    return Err(Error::ContentLength);
                }
                length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // Chunked only counts as the final coding.
                let last = value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked = trim(last).eq_ignore_ascii_case(b"chunked");
                other_coding = !chunked;
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                close |= has_token(value, b"close");
                keep_alive |= has_token(value, b"keep-alive");
            }
            _ => {}
        }
    }
    // As for a line: the limit holds however the head arrived.
    if pos > MAX_HEAD {
        return Err(Error::TooLarge);
    }
    let framing = if chunked {
        Framing::Chunked
    } else if other_coding {
        Framing::Close
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    Ok(Some(Head {
        len: pos,
        status,
        close: close || (http10 && !keep_alive),
        framing,
    }))
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(consumed: usize, status: u16, close: bool) -> Result<Progress, Error> {
        Ok(Progress::Complete {
            consumed,
            status,
            close,
        })
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";

    #[test]
    fn content_length_response() {
        let mut p = ResponseParser::new(false);
        assert_eq!(p.parse(OK), complete(OK.len(), 200, false));
    }

    #[test]
    fn byte_by_byte_arrival() {
        let mut p = ResponseParser::new(false);
        let mut start = 0;
        for end in 1..=OK.len() {
            match p.parse(&OK[start..end]).unwrap() {
                Progress::Partial { consumed } => start += consumed,
                Progress::Complete { consumed, .. } => {
                    assert_eq!(end, OK.len());
                    assert_eq!(start + consumed, OK.len());
                    return;
                }
            }
        }
        panic!("never completed");
    }

    #[test]
    fn pipelined_responses_one_at_a_time() {
        let two = [OK, OK].concat();
        let mut p = ResponseParser::new(false);
        assert_eq!(p.parse(&two), complete(OK.len(), 200, false));
        assert_eq!(p.parse(&two[OK.len()..]), complete(OK.len(), 200, false));
    }

    #[test]
    fn chunked_body_and_trailers() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n";
        let mut p = ResponseParser::new(false);
        assert_eq!(p.parse(r), complete(r.len(), 200, false));
        // Split everywhere.
        for cut in 1..r.len() {
            let mut p = ResponseParser::new(false);
            let Progress::Partial { consumed } = p.parse(&r[..cut]).unwrap() else {
                panic!("complete early at {cut}");
            };
            assert_eq!(
                p.parse(&r[consumed..]),
                complete(r.len() - consumed, 200, false)
            );
        }
    }

    #[test]
    fn bad_chunk_is_an_error() {
        let mut p = ResponseParser::new(false);
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(p.parse(r), Err(Error::Chunk));
    }

    #[test]
    fn connection_close_and_http10() {
        let mut p = ResponseParser::new(false);
        let r = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(p.parse(r), complete(r.len(), 503, true));
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(p.parse(r), complete(r.len(), 200, true));
        let r = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(p.parse(r), complete(r.len(), 200, false));
    }

    #[test]
    fn head_204_304_have_no_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n";
        assert_eq!(
            ResponseParser::new(true).parse(r),
            complete(r.len(), 200, false)
        );
        let r = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 13\r\n\r\n";
        assert_eq!(
            ResponseParser::new(false).parse(r),
            complete(r.len(), 304, false)
        );
        let r = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            ResponseParser::new(false).parse(r),
            complete(r.len(), 204, false)
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            ResponseParser::new(false).parse(r),
            complete(r.len(), 201, false)
        );
        // Only the interim one so far: it may be discarded.
        let mut p = ResponseParser::new(false);
        assert_eq!(p.parse(&r[..30]), Ok(Progress::Partial { consumed: 25 }));
    }

    #[test]
    fn unframed_body_reads_until_close() {
        let mut p = ResponseParser::new(false);
        let r = b"HTTP/1.1 200 OK\r\n\r\nsome body";
        assert_eq!(p.parse(r), Ok(Progress::Partial { consumed: r.len() }));
        assert_eq!(p.parse(b"more"), Ok(Progress::Partial { consumed: 4 }));
        assert_eq!(p.eof(), Some(200));
        assert!(p.at_boundary());
    }

    #[test]
    fn malformed_heads() {
        let mut p = ResponseParser::new(false);
        assert_eq!(p.parse(b"HTTP/2 200 OK\r\n\r\n"), Err(Error::StatusLine));
        assert_eq!(p.parse(b"garbage\r\n\r\n"), Err(Error::StatusLine));
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(p.parse(r), Err(Error::ContentLength));
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(p.parse(r), Err(Error::ContentLength));
        let big = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert_eq!(p.parse(&big), Err(Error::TooLarge));
    }

    #[test]
    fn large_body_is_skipped_incrementally() {
        let mut p = ResponseParser::new(false);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
        assert_eq!(
            p.parse(head),
            Ok(Progress::Partial {
                consumed: head.len()
            })
        );
        let chunk = [0u8; 4096];
        let mut left = 100_000;
        while left > 4096 {
            assert_eq!(p.parse(&chunk), Ok(Progress::Partial { consumed: 4096 }));
            left -= 4096;
        }
        assert_eq!(p.parse(&chunk), complete(left, 200, false));
    }
}
