//! The soak's HTTP/1.1 client: one blocking `TcpStream` per connection and
//! just enough of the protocol to frame a response (Content-Length,
//! chunked, or read to the close) and tell whether the connection may be
//! reused. Deliberately not loadgen: the soak wants a few plain clients
//! whose every request and status it can account for, and hostile ones
//! that do what no load generator does.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A response, framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Body bytes received.
    pub body_len: usize,
    /// The body, when asked for (otherwise empty: bodies are counted, not kept).
    pub body: Vec<u8>,
    /// The server closes the connection after it.
    pub close: bool,
    /// The `Location` header, if any.
    pub location: Option<String>,
}

/// One client connection to 127.0.0.1.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// `bad data` as an io::Error, for malformed responses.
fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Conn {
    /// Connect, with `timeout` for the connect and for every read and write.
    pub fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// The socket, for what the hostile clients do with it.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Write all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Send `request` and read its response (`keep_body`: keep the body
    /// bytes, otherwise only count them).
    pub fn exchange(&mut self, request: &[u8], keep_body: bool) -> io::Result<Response> {
        self.send(request)?;
        self.response(keep_body)
    }

    /// Read one response.
    pub fn response(&mut self, keep_body: bool) -> io::Result<Response> {
        let head = parse_head(&self.head()?)?;
        let mut body = Vec::new();
        let sink = keep_body.then_some(&mut body);
        let body_len = match head.framing {
            Framing::Empty => 0,
            Framing::Length(n) => self.take(n, sink)?,
            Framing::Chunked => self.chunked(sink)?,
            Framing::UntilClose => self.until_close(sink)?,
        };
        Ok(Response {
            status: head.status,
            body_len,
            body,
            close: head.close || head.framing == Framing::UntilClose,
            location: head.location,
        })
    }

    /// Read more into the buffer; EOF is an error (a response was due).
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before the response was complete",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The bytes up to and including the next `delim`, taken out of the buffer.
    fn until(&mut self, delim: &[u8], limit: usize) -> io::Result<Vec<u8>> {
        let mut from = 0;
        loop {
            if let Some(i) = self.buf[from..]
                .windows(delim.len())
                .position(|w| w == delim)
            {
                let end = from + i + delim.len();
                return Ok(self.buf.drain(..end).collect());
            }
            if self.buf.len() > limit {
                return Err(invalid(format!("no {delim:?} within {limit} bytes")));
            }
            from = self.buf.len().saturating_sub(delim.len() - 1);
            self.fill()?;
        }
    }

    /// The response head, 1xx interim responses skipped.
    fn head(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let head = self.until(b"\r\n\r\n", MAX_HEAD)?;
            if !head.starts_with(b"HTTP/1.1 1") && !head.starts_with(b"HTTP/1.0 1") {
                return Ok(head);
            }
        }
    }

    /// Take `n` body bytes (into `sink` when given); returns `n`.
    fn take(&mut self, n: usize, mut sink: Option<&mut Vec<u8>>) -> io::Result<usize> {
        let mut left = n;
        let from_buf = left.min(self.buf.len());
        if let Some(s) = sink.as_deref_mut() {
            s.extend_from_slice(&self.buf[..from_buf]);
        }
        self.buf.drain(..from_buf);
        left -= from_buf;
        let mut chunk = [0u8; 64 * 1024];
        while left > 0 {
            let want = left.min(chunk.len());
            let got = self.stream.read(&mut chunk[..want])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the body ended {left} bytes short of {n}"),
                ));
            }
            if let Some(s) = sink.as_deref_mut() {
                s.extend_from_slice(&chunk[..got]);
            }
            left -= got;
        }
        Ok(n)
    }

    /// A chunked body; returns its decoded length.
    fn chunked(&mut self, mut sink: Option<&mut Vec<u8>>) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let line = self.until(b"\r\n", 1024)?;
            let text = String::from_utf8_lossy(&line);
            let size = text.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while self.until(b"\r\n", MAX_HEAD)? != b"\r\n" {}
                return Ok(total);
            }
            total += self.take(size, sink.as_deref_mut())?;
            if self.until(b"\r\n", 2)? != b"\r\n" {
                return Err(invalid("a chunk not followed by CRLF"));
            }
        }
    }

    /// A body delimited by the close.
    fn until_close(&mut self, sink: Option<&mut Vec<u8>>) -> io::Result<usize> {
        let mut rest = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut rest)?;
        let n = rest.len();
        if let Some(s) = sink {
            s.extend_from_slice(&rest);
        }
        Ok(n)
    }

    /// Close with a reset (SO_LINGER 0): whatever is unsent or unread is
    /// dropped and the server sees ECONNRESET, as when a client crashes.
    /// Takes the connection, so it cannot be used afterwards.
    pub fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the descriptor is open (owned by `self.stream`, closed
        // when it drops below), and `linger` is a valid value of the size
        // passed.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (204, 304).
    Empty,
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs until the server closes.
    UntilClose,
}

/// What the head says.
struct Head {
    status: u16,
    framing: Framing,
    close: bool,
    location: Option<String>,
}

/// Parse a response head (status line and headers, CRLF CRLF included).
fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut h = Head {
        status,
        framing: Framing::UntilClose,
        close: version == "HTTP/1.0",
        location: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" if h.framing != Framing::Chunked => {
                let n = value
                    .parse()
                    .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?;
                h.framing = Framing::Length(n);
            }
            "transfer-encoding" if value.to_ascii_lowercase().ends_with("chunked") => {
                h.framing = Framing::Chunked;
            }
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.split(',').any(|t| t.trim() == "close") {
                    h.close = true;
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    h.close = false;
                }
            }
            "location" => h.location = Some(value.to_string()),
            _ => {}
        }
    }
    if status == 204 || status == 304 {
        h.framing = Framing::Empty;
    }
    Ok(h)
}

/// `GET path` (with `Connection: close` when `close`).
pub fn get(path: &str, close: bool) -> Vec<u8> {
    request("GET", path, close, &[])
}

/// `DELETE path`.
pub fn delete(path: &str) -> Vec<u8> {
    request("DELETE", path, false, &[])
}

/// `POST path` with `body` framed by Content-Length.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    request("POST", path, false, body)
}

/// A request; a body (if any) framed by Content-Length.
fn request(method: &str, path: &str, close: bool, body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if close {
        r.push_str("Connection: close\r\n");
    }
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that writes `reply` after the first request
    /// head, then closes.
    fn serve(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&b[..n]);
            }
            s.write_all(reply).unwrap();
        });
        addr
    }

    #[test]
    fn framings() {
        let cases: [(&'static [u8], u16, &[u8], bool); 5] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                200,
                b"hello",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
                200,
                b"abcde",
                false,
            ),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", 200, b"all of it", true),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 204, b"", false),
            (b"HTTP/1.0 201 Created\r\nLocation: /files/ab\r\nContent-Length: 0\r\n\r\n", 201, b"", true),
        ];
        for (reply, status, body, close) in cases {
            let mut c = Conn::open(serve(reply), Duration::from_secs(5)).unwrap();
            let r = c.exchange(&get("/", false), true).unwrap();
            assert_eq!((r.status, &r.body[..], r.close), (status, body, close));
            assert_eq!(r.body_len, body.len());
        }
        let mut c = Conn::open(
            serve(b"HTTP/1.1 201 Created\r\nLocation: /files/ab\r\nContent-Length: 0\r\n\r\n"),
            Duration::from_secs(5),
        )
        .unwrap();
        let r = c.exchange(&post("/upload", b"xyz"), false).unwrap();
        assert_eq!(r.location.as_deref(), Some("/files/ab"));
    }

    #[test]
    fn a_short_body_is_an_error() {
        let mut c = Conn::open(
            serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            Duration::from_secs(5),
        )
        .unwrap();
        let e = c.exchange(&get("/", false), false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn requests() {
        assert_eq!(
            post("/upload", b"ab"),
            b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\nab"
        );
        assert_eq!(
            get("/x", true),
            b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
    }
}
