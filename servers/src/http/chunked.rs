//! Incremental decoding of a chunked request body (RFC 9112 §7.1), for
//! bodies streamed to disk as they arrive instead of framed whole by the
//! parser.

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Malformed framing (400).
    Bad,
    /// More decoded bytes than allowed (413).
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        digits: u8,
    },
    /// After the size: an extension, up to CRLF.
    Ext,
    /// CR seen after the size line; LF expected.
    SizeLf,
    /// Chunk data still to come.
    Data(u64),
    /// CR then LF expected after the data.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines; `line` bytes into the current one.
    Trailer {
        line: usize,
    },
    TrailerLf {
        line: usize,
    },
    Done,
}

/// Longest chunk extension or trailer section accepted.
const MAX_META: usize = 16 * 1024;

/// The decoder; feed it whatever bytes arrive.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    size: u64,
    decoded: u64,
    limit: u64,
    meta: usize,
}

/// What one [`Decoder::feed`] call did.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes used (the rest belongs to the next request).
    pub consumed: usize,
    /// The body ended (last chunk and trailers read).
    pub done: bool,
}

impl Decoder {
    /// At most `limit` decoded bytes are accepted.
    pub fn new(limit: u64) -> Decoder {
        Decoder {
            state: State::Size { digits: 0 },
            size: 0,
            decoded: 0,
            limit,
            meta: 0,
        }
    }

    /// Decode from `input`, handing each piece of body data to `data` (in
    /// order, without copying). Stops at the end of the body.
    pub fn feed(&mut self, input: &[u8], data: &mut dyn FnMut(&[u8])) -> Result<Fed, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits } => match hex(b) {
                    Some(v) => {
                        if digits >= 15 {
                            return Err(ChunkError::Bad);
                        }
                        self.size = self.size << 4 | u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                        i += 1;
                    }
                    None if digits == 0 => return Err(ChunkError::Bad),
                    None if b == b'\r' => {
                        self.state = State::SizeLf;
                        i += 1;
                    }
                    None if b == b';' || b == b' ' || b == b'\t' => {
                        self.state = State::Ext;
                        i += 1;
                    }
                    None => return Err(ChunkError::Bad),
                },
                State::Ext => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' || b < 0x20 && b != b'\t' {
                        return Err(ChunkError::Bad);
                    } else {
                        self.meta += 1;
                        if self.meta > MAX_META {
                            return Err(ChunkError::Bad);
                        }
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Bad);
                    }
                    i += 1;
                    if self.size == 0 {
                        self.state = State::Trailer { line: 0 };
                    } else {
                        self.decoded = self.decoded.saturating_add(self.size);
                        if self.decoded > self.limit {
                            return Err(ChunkError::TooLarge);
                        }
                        self.state = State::Data(self.size);
                        self.size = 0;
                    }
                }
                State::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::Bad);
                    }
                    self.state = State::DataLf;
                    i += 1;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Bad);
                    }
                    self.state = State::Size { digits: 0 };
                    i += 1;
                }
                State::Trailer { line } => {
                    if b == b'\r' {
                        self.state = State::TrailerLf { line };
                    } else if b == b'\n' || b < 0x20 && b != b'\t' {
                        return Err(ChunkError::Bad);
                    } else {
                        self.meta += 1;
                        if self.meta > MAX_META {
                            return Err(ChunkError::Bad);
                        }
                        self.state = State::Trailer { line: line + 1 };
                    }
                    i += 1;
                }
                State::TrailerLf { line } => {
                    if b != b'\n' {
                        return Err(ChunkError::Bad);
                    }
                    i += 1;
                    if line == 0 {
                        self.state = State::Done;
                        return Ok(Fed {
                            consumed: i,
                            done: true,
                        });
                    }
                    self.state = State::Trailer { line: 0 };
                }
                State::Done => {
                    return Ok(Fed {
                        consumed: i,
                        done: true,
                    })
                }
            }
        }
        Ok(Fed {
            consumed: i,
            done: self.state == State::Done,
        })
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `input` fed in pieces of `step` bytes.
    fn decode(input: &[u8], step: usize, limit: u64) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = Decoder::new(limit);
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let end = (at + step).min(input.len());
            let fed = d.feed(&input[at..end], &mut |p| out.extend_from_slice(p))?;
            if fed.done {
                return Ok((out, at + fed.consumed));
            }
            assert_eq!(
                fed.consumed,
                end - at,
                "not done, so everything is consumed"
            );
            at = end;
        }
        Err(ChunkError::Bad)
    }

    #[test]
    fn every_split_decodes_the_same() {
        let body =
            b"5;name=v\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nGET";
        for step in 1..body.len() {
            let (out, used) = decode(body, step, 1 << 20).unwrap();
            assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            assert_eq!(&body[used..], b"GET", "step {step}");
        }
    }

    #[test]
    fn limits_and_errors() {
        assert_eq!(decode(b"10\r\n", 3, 15), Err(ChunkError::TooLarge));
        assert_eq!(decode(b"zz\r\n", 1, 100), Err(ChunkError::Bad));
        assert_eq!(decode(b"\r\n", 1, 100), Err(ChunkError::Bad));
        assert_eq!(decode(b"3\r\nabcX\r\n", 1, 100), Err(ChunkError::Bad));
        assert_eq!(decode(b"3\nabc", 1, 100), Err(ChunkError::Bad));
        assert_eq!(
            decode(b"1234567890abcdef0\r\n", 1, u64::MAX),
            Err(ChunkError::Bad)
        );
        assert_eq!(decode(b"0\r\n\r\n", 2, 0).unwrap().0, b"");
    }
}
