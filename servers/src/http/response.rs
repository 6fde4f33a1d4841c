//! Writing responses: the head, and the per-connection outgoing queue.
//!
//! Bodies are either bytes (appended right after the head, so a small
//! response leaves in one `send`) or a file range (which a driver sends
//! with `sendfile`, never copied through user space). The queue keeps
//! pipelined responses in order and reuses its buffer, so a keep-alive
//! connection allocates nothing per request once warm. Nothing here does
//! I/O: the queue describes, the drivers send.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::date;

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
        412 => "Precondition Failed",
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
    file: OwnedFd,
    offset: u64,
    remaining: u64,
}

/// The next piece of output, as [`Outbox::front`] describes it: a driver
/// sends it however its kernel interface allows (`send`, `sendfile`,
/// `splice`, an io_uring submission) and reports how much went out with
/// [`Outbox::consume`].
#[derive(Debug, Clone, Copy)]
pub enum Chunk<'a> {
    /// Bytes in memory; `more` says whether further output follows right
    /// behind them (a sender may set `MSG_MORE` so a head and the file
    /// body after it leave in as few segments as possible).
    Bytes {
        /// The bytes, borrowed from the outbox until the sender reports.
        data: &'a [u8],
        /// Whether more output follows right behind.
        more: bool,
    },
    /// `len` bytes of the open file `fd` from `offset`, sent without
    /// copying through user space.
    File {
        /// The open file, borrowed from the queue that keeps it open.
        fd: BorrowedFd<'a>,
        /// Where in the file to start.
        offset: u64,
        /// How many bytes to send.
        len: u64,
    },
}

/// Capacity an emptied queue keeps for the next response; beyond it the
/// buffer is freed.
const KEEP_CAPACITY: usize = 64 * 1024;

/// A position in an [`Outbox`], taken before a response is appended.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    buf_len: usize,
    files: usize,
}

/// The bytes and file ranges waiting to be written to one connection.
///
/// It only *describes* the output: [`Outbox::front`] says what goes next,
/// [`Outbox::consume`] is told how much of it went. Who moves the bytes,
/// and with which syscall, is the driver's business.
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    pos: usize,
    files: VecDeque<FileSegment>,
}

impl Outbox {
    /// An empty queue with room for a typical response head.
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
    pub fn push_file(&mut self, file: OwnedFd, offset: u64, len: u64) {
        if len > 0 {
            self.files.push_back(FileSegment {
                at: self.buf.len(),
                file,
                offset,
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
    /// meaningful before anything is consumed.
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

    /// Nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len() && self.files.is_empty()
    }

    /// File ranges still queued (each holds an open descriptor).
    pub fn queued_files(&self) -> usize {
        self.files.len()
    }

    /// Bytes still queued in memory (files not counted), for backpressure.
    pub fn queued_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// What to send next; `None` when the queue is empty.
    pub fn front(&self) -> Option<Chunk<'_>> {
        let end = self.files.front().map_or(self.buf.len(), |f| f.at);
        if self.pos < end {
            let more = end < self.buf.len() || !self.files.is_empty();
            return Some(Chunk::Bytes {
                data: &self.buf[self.pos..end],
                more,
            });
        }
        self.files.front().map(|seg| Chunk::File {
            fd: seg.file.as_fd(),
            offset: seg.offset,
            len: seg.remaining,
        })
    }

    /// `n` bytes of [`Outbox::front`] were sent (at most its length).
    /// Once everything is sent the buffer is reset and kept, so a
    /// keep-alive connection allocates nothing per request once warm.
    pub fn consume(&mut self, n: usize) {
        let end = self.files.front().map_or(self.buf.len(), |f| f.at);
        if self.pos < end {
            self.pos += n.min(end - self.pos);
        } else if let Some(seg) = self.files.front_mut() {
            let n = (n as u64).min(seg.remaining);
            seg.offset += n;
            seg.remaining -= n;
            if seg.remaining == 0 {
                self.files.pop_front();
            }
        }
        if self.is_empty() {
            self.buf.clear();
            self.pos = 0;
            // A large response (a CGI output, /stats of a busy server) does
            // not leave its buffer behind on a keep-alive connection.
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
    }

    /// Give back the buffer's memory when nothing is queued (an idle
    /// connection keeps none); the next response allocates again.
    pub fn release(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.files = VecDeque::new();
        }
    }

    /// Drop everything queued (the peer is gone; nothing can be delivered).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.files.clear();
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

    fn some_fd() -> OwnedFd {
        std::io::stdin().as_fd().try_clone_to_owned().unwrap()
    }

    #[test]
    fn front_and_consume_walk_bytes_and_files_in_order() {
        let mut out = Outbox::new();
        out.bytes().extend_from_slice(b"head");
        out.push_file(some_fd(), 10, 5);
        out.bytes().extend_from_slice(b"tail");
        assert!(matches!(
            out.front(),
            Some(Chunk::Bytes {
                data: b"head",
                more: true
            })
        ));
        out.consume(3);
        assert!(matches!(
            out.front(),
            Some(Chunk::Bytes {
                data: b"d",
                more: true
            })
        ));
        out.consume(1);
        assert!(matches!(
            out.front(),
            Some(Chunk::File {
                offset: 10,
                len: 5,
                ..
            })
        ));
        out.consume(2);
        assert!(matches!(
            out.front(),
            Some(Chunk::File {
                offset: 12,
                len: 3,
                ..
            })
        ));
        out.consume(3);
        assert!(matches!(
            out.front(),
            Some(Chunk::Bytes {
                data: b"tail",
                more: false
            })
        ));
        assert_eq!(out.queued_bytes(), 4);
        out.consume(4);
        assert!(out.is_empty() && out.front().is_none());
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn body_bytes_count_files_and_skip_the_head() {
        let mut out = Outbox::new();
        let mark = out.mark();
        out.bytes().extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\nab");
        out.push_file(some_fd(), 0, 7);
        assert_eq!(out.body_bytes_since(mark), 9);
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
