//! Writing responses: the head, and the per-connection outgoing queue.
//!
//! Bodies are either bytes (appended right after the head, so a small
//! response leaves in one `send`) or a file range (sent with `sendfile`,
//! never copied through user space). The queue keeps pipelined responses in
//! order and reuses its buffer, so a keep-alive connection allocates nothing
//! per request once warm.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::date;
use crate::sys;

/// The reason phrase for the statuses this server emits.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        302 => "Found",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// How the response marks the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnHeader {
    /// Nothing: HTTP/1.1 keeps the connection by default.
    None,
    /// `Connection: keep-alive`, for an HTTP/1.0 client that asked for it.
    KeepAlive,
    /// `Connection: close`: the server closes after this response.
    Close,
}

/// Append a response head: status line, Date, the given headers, framing.
///
/// `content_length` of `None` omits the header (for statuses defined to
/// have no body). Extra headers are complete lines without CRLF.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    content_length: Option<u64>,
    conn: ConnHeader,
    extra: &[&[u8]],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(ct) = content_type {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(ct.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(len) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        push_u64(out, len);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(&date::now());
    out.extend_from_slice(b"\r\n");
    match conn {
        ConnHeader::None => {}
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    for h in extra {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append the decimal form of `n` without going through `fmt`.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// A file range queued after the bytes written so far.
struct FileSegment {
    /// Position in `Outbox::buf` where the file's bytes belong.
    at: usize,
    file: File,
    offset: i64,
    remaining: u64,
}

/// Outcome of [`Outbox::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes the kernel accepted in this call.
    pub written: u64,
    /// Whether the queue is now empty.
    pub done: bool,
}

/// A position in an [`Outbox`], taken before a response is appended.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    buf_len: usize,
    files: usize,
}

/// The bytes and file ranges waiting to be written to one connection.
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    pos: usize,
    files: VecDeque<FileSegment>,
}

impl Outbox {
    pub fn new() -> Self {
        Outbox {
            buf: Vec::with_capacity(4096),
            pos: 0,
            files: VecDeque::new(),
        }
    }

    /// The byte buffer to append heads and small bodies to.
    pub fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Queue `len` bytes of `file` from `offset`, after everything queued so far.
    pub fn push_file(&mut self, file: File, offset: u64, len: u64) {
        if len > 0 {
            self.files.push_back(FileSegment {
                at: self.buf.len(),
                file,
                offset: offset as i64,
                remaining: len,
            });
        }
    }

    /// Where the queue ends now; see [`Outbox::body_bytes_since`].
    pub fn mark(&self) -> Mark {
        Mark {
            buf_len: self.buf.len(),
            files: self.files.len(),
        }
    }

    /// Body bytes of the one response appended since `mark` (its head is
    /// everything up to the first blank line), for the access log. Only
    /// meaningful before the next flush.
    pub fn body_bytes_since(&self, mark: Mark) -> u64 {
        let appended = self.buf.get(mark.buf_len..).unwrap_or_default();
        let head = appended
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(appended.len(), |p| p + 4);
        let files: u64 = self
            .files
            .iter()
            .skip(mark.files)
            .map(|f| f.remaining)
            .sum();
        (appended.len() - head) as u64 + files
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len() && self.files.is_empty()
    }

    /// Bytes still queued in memory (files not counted), for backpressure.
    pub fn queued_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Write as much as the socket takes. Returns at `WouldBlock` (a
    /// non-blocking socket is full) with `done: false`; other errors are
    /// returned as they are. `EINTR` is retried: shutdown lets in-flight
    /// responses finish.
    pub fn flush(&mut self, fd: RawFd) -> io::Result<Flushed> {
        let mut written = 0u64;
        loop {
            let end = self.files.front().map_or(self.buf.len(), |f| f.at);
            let res = if self.pos < end {
                let more = end < self.buf.len() || !self.files.is_empty();
                sys::io::send(fd, &self.buf[self.pos..end], more).inspect(|&n| self.pos += n)
            } else if let Some(seg) = self.files.front_mut() {
                let chunk = seg.remaining.min(1 << 30) as usize;
                match sys::io::sendfile(fd, seg.file.as_raw_fd(), &mut seg.offset, chunk) {
                    Ok(0) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    )),
                    Ok(n) => {
                        seg.remaining -= n as u64;
                        if seg.remaining == 0 {
                            self.files.pop_front();
                        }
                        Ok(n)
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.buf.clear();
                self.pos = 0;
                return Ok(Flushed {
                    written,
                    done: true,
                });
            };
            match res {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed {
                        written,
                        done: false,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_layout() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            404,
            Some("text/plain"),
            Some(10),
            ConnHeader::Close,
            &[b"Allow: GET"],
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nDate: "
        ));
        assert!(
            s.ends_with(" GMT\r\nConnection: close\r\nAllow: GET\r\n\r\n"),
            "{s}"
        );
    }

    #[test]
    fn numbers() {
        for n in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(v, n.to_string().as_bytes());
        }
    }
}
