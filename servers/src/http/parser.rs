//! Incremental HTTP/1.1 request parser (sans-IO).
//!
//! The caller owns the bytes. It appends whatever the socket gave it to one
//! buffer and calls [`Parser::parse`] on the whole unconsumed buffer. The
//! answer is [`Status::Partial`] (need more bytes), [`Status::Complete`] (a
//! request, borrowing from the buffer, and how many bytes it spans) or a
//! precise [`Error`] that maps to one HTTP status. After `Complete` the caller
//! drops `len` bytes from the front of its buffer; pipelined requests then come
//! out one by one. Feeding a request split at any byte boundary gives the same
//! result as feeding it whole, because the parser only remembers how far it
//! has already scanned, never anything it would have to undo.

use std::borrow::Cow;

/// Most headers a request may carry; more is answered 431.
pub const MAX_HEADERS: usize = 64;

/// Size limits, all in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest request line (method, target, version); longer is 414.
    pub max_request_line: usize,
    /// Longest header section (after the request line, up to and including
    /// the blank line); longer is 431.
    pub max_header_bytes: usize,
    /// Largest body (decoded, for chunked); larger is 413.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// The request method, recognised once by the parser so the router matches
/// an enum instead of comparing strings on every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: as GET, but the response carries no body.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
    /// `PATCH`.
    Patch,
    /// `TRACE`.
    Trace,
    /// `CONNECT`.
    Connect,
    /// A syntactically valid token we do not implement (answered 405/501 by the app).
    Other,
}

/// The protocol version of a request; it decides the keep-alive default
/// and whether Host is required. Any other version is rejected (505).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: closes after the response unless asked to keep alive.
    Http10,
    /// `HTTP/1.1`: kept alive unless asked to close.
    Http11,
}

/// One header field, borrowing from the caller's buffer (no copy per
/// header on the hot path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'b> {
    /// As sent (case preserved); compare with `eq_ignore_ascii_case`.
    pub name: &'b str,
    /// Value with leading and trailing whitespace trimmed.
    pub value: &'b [u8],
}

/// A complete request, borrowing from the caller's buffer.
#[derive(Debug)]
pub struct Request<'b> {
    /// The method, recognised (see [`Request::method_str`] for the token).
    pub method: Method,
    /// The method token exactly as sent.
    pub method_str: &'b str,
    /// The request target as sent (origin-form, e.g. `/a%20b?x=1`); an
    /// absolute-form target (`http://host/p`) is reduced to its path here.
    pub target: &'b str,
    /// `target` up to the first `?`, still percent-encoded.
    pub path: &'b str,
    /// After the first `?`, if any.
    pub query: Option<&'b str>,
    /// The protocol version from the request line.
    pub version: Version,
    /// Storage for the headers, filled up to `header_count` (a fixed array:
    /// no allocation per request); read them through [`Request::headers`].
    pub headers: [Header<'b>; MAX_HEADERS],
    /// How many entries of `headers` are filled.
    pub header_count: usize,
    /// Value of the single Host header (required in 1.1), if present.
    pub host: Option<&'b str>,
    /// Whether the connection stays open after this request: 1.1 unless
    /// `Connection: close`, 1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// Decoded body: borrowed for Content-Length, owned for chunked.
    pub body: Cow<'b, [u8]>,
    /// Bytes of the buffer this request spans (head + framed body).
    pub len: usize,
}

impl<'b> Request<'b> {
    /// The headers actually present.
    pub fn headers(&self) -> &[Header<'b>] {
        &self.headers[..self.header_count]
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// The outcome of feeding the parser a buffer that may hold only part of a
/// request (the httparse convention): not an error, just "not yet".
#[derive(Debug)]
pub enum Status<T> {
    /// A whole request was found.
    Complete(T),
    /// The buffer ends before the request does: read more, then call again.
    Partial,
}

/// Why a request was rejected. Each maps to exactly one status code; after
/// answering it the server closes the connection, because the framing of
/// whatever follows can no longer be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Request line is not `METHOD SP target SP HTTP/x.y` (400).
    BadRequestLine,
    /// A header line without a colon, with whitespace before the colon, an
    /// empty or non-token name, or obs-fold continuation (400).
    BadHeader,
    /// A control byte (other than HTAB) or a bare CR/LF in the head (400).
    BadByte,
    /// HTTP/1.1 request without Host (400).
    MissingHost,
    /// More than one Host header (400).
    DuplicateHost,
    /// Content-Length not a plain decimal number (400).
    BadContentLength,
    /// Several Content-Length headers with different values (400).
    ConflictingContentLength,
    /// Transfer-Encoding together with Content-Length, a smuggling vector (400).
    TransferEncodingWithContentLength,
    /// Transfer-Encoding on an HTTP/1.0 request (400).
    TransferEncodingInHttp10,
    /// Malformed chunked framing (400).
    BadChunk,
    /// A transfer coding other than `chunked` (501).
    UnsupportedTransferCoding,
    /// Request line longer than the limit (414).
    UriTooLong,
    /// Header section longer than the limit, or more than MAX_HEADERS (431).
    HeadersTooLarge,
    /// Body larger than the limit (413).
    BodyTooLarge,
    /// HTTP major version other than 1 (505).
    VersionNotSupported,
}

impl std::fmt::Display for Error {
    /// `400 Bad Request: malformed request line` — the status it is
    /// answered with, and why.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status();
        let phrase = super::response::reason(status);
        write!(f, "{status} {phrase}: {}", self.reason())
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            Error::UnsupportedTransferCoding => 501,
            Error::UriTooLong => 414,
            Error::HeadersTooLarge => 431,
            Error::BodyTooLarge => 413,
            Error::VersionNotSupported => 505,
            _ => 400,
        }
    }

    /// One line for the error body and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Error::BadRequestLine => "malformed request line",
            Error::BadHeader => "malformed header line",
            Error::BadByte => "control character or bare CR/LF in request head",
            Error::MissingHost => "HTTP/1.1 request without Host header",
            Error::DuplicateHost => "more than one Host header",
            Error::BadContentLength => "invalid Content-Length",
            Error::ConflictingContentLength => "conflicting Content-Length headers",
            Error::TransferEncodingWithContentLength => {
                "both Transfer-Encoding and Content-Length present"
            }
            Error::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            Error::BadChunk => "malformed chunked body",
            Error::UnsupportedTransferCoding => "unsupported transfer coding",
            Error::UriTooLong => "request line too long",
            Error::HeadersTooLarge => "request header section too large",
            Error::BodyTooLarge => "request body too large",
            Error::VersionNotSupported => "HTTP version not supported",
        }
    }
}
/// Per-connection parser state: only how far the buffer has been scanned,
/// so re-feeding a growing buffer costs time proportional to the new bytes.
#[derive(Debug, Default)]
pub struct Parser {
    limits: Limits,
    /// Scan position and what the lines scanned so far said (offsets only).
    st: State,
    /// Where each header seen so far lies, relative to the header section.
    spans: Spans,
    /// Chunked body decoded so far; handed out (moved) on `Complete`.
    body: Vec<u8>,
}

impl Parser {
    /// A parser for a new connection, enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            ..Parser::default()
        }
    }

    /// The limits it enforces: a connection sizes its input buffer from
    /// them, and an event loop hands them to each new connection's parser.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parse the request at the front of `buf`.
    ///
    /// Call again with the same (possibly grown) buffer after `Partial`.
    /// After `Complete`, the caller removes `req.len` bytes from the front and
    /// the parser is ready for the next request.
    pub fn parse<'b>(&mut self, buf: &'b [u8]) -> Result<Status<Request<'b>>, Error> {
        // Contract: the buffer only grows between calls. If it shrank anyway,
        // start over rather than index past its end.
        if buf.len() < self.st.seen_len {
            self.reset();
        }
        self.st.seen_len = buf.len();
        match self.parse_inner(buf) {
            Ok(None) => Ok(Status::Partial),
            Ok(Some((len, body))) => {
                // Reset first (the body was moved out already), so that the
                // ~2 KiB request is built right into the return value.
                let st = std::mem::take(&mut self.st);
                Ok(Status::Complete(build(&st, &self.spans, buf, len, body)))
            }
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    /// After `Partial`: the request's head, if it is complete and its body
    /// is still arriving. The caller may then take the body over (stream it
    /// to disk instead of buffering it whole) with [`Parser::take_over_body`]
    /// and [`Parser::stream_body`].
    pub fn pending_head<'b>(&self, buf: &'b [u8]) -> Option<Request<'b>> {
        if !matches!(self.st.phase, Phase::Body)
            || matches!(self.st.framing, Framing::None)
            || buf.len() < self.st.head_end
        {
            return None;
        }
        Some(build(
            &self.st,
            &self.spans,
            buf,
            self.st.head_end,
            Cow::Borrowed(&[]),
        ))
    }

    /// Switch the request whose head [`Parser::pending_head`] returned to
    /// streaming. Returns how many bytes at the front of the buffer last
    /// passed to `parse` are used up (the head, and chunks already decoded);
    /// the caller drops them and from then on feeds [`Parser::stream_body`]
    /// the bytes that follow.
    pub fn take_over_body(&mut self) -> usize {
        let used = match self.st.framing {
            Framing::Chunked => self.consumable(),
            _ => self.st.head_end,
        };
        self.rebase(used);
        used
    }

    /// Decode body bytes of a request taken over with
    /// [`Parser::take_over_body`], handing the data to `sink` in order. `buf`
    /// starts at the first byte not used up yet. Returns the bytes used up
    /// and whether the body is complete (the parser is then ready for the
    /// next request). The limits and errors are those of a buffered body.
    pub fn stream_body(
        &mut self,
        buf: &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(usize, bool), Error> {
        match self.st.framing {
            Framing::Length(left) => {
                let take = left.min(buf.len());
                sink(&buf[..take]);
                self.st.framing = Framing::Length(left - take);
                if take == left {
                    self.reset();
                }
                Ok((take, take == left))
            }
            Framing::Chunked => {
                self.st.seen_len = buf.len();
                let res = self.chunked(buf);
                // Data decoded by this call (and any decoded before the
                // take-over) leaves now; the buffer is reused.
                if !self.body.is_empty() {
                    sink(&self.body);
                    self.body.clear();
                }
                match res {
                    Ok(Some(len)) => {
                        self.reset();
                        Ok((len, true))
                    }
                    Ok(None) => {
                        let used = self.consumable();
                        self.rebase(used);
                        Ok((used, false))
                    }
                    Err(e) => {
                        self.reset();
                        Err(e)
                    }
                }
            }
            Framing::None => {
                self.reset();
                Ok((0, true))
            }
        }
    }

    /// Bytes of a chunked body before `pos` that no later call looks at
    /// again: everything, except trailer lines (their size limit counts from
    /// the trailer's start, so the trailer stays in the buffer).
    fn consumable(&self) -> usize {
        match self.st.chunk {
            Chunk::Trailer => self.st.trailer_start.min(self.st.pos),
            _ => self.st.pos,
        }
    }

    /// The caller dropped `used` bytes from the front of the buffer.
    fn rebase(&mut self, used: usize) {
        self.st.pos -= used;
        self.st.scanned = self.st.scanned.saturating_sub(used);
        self.st.trailer_start = self.st.trailer_start.saturating_sub(used);
        self.st.seen_len = 0;
    }

    fn reset(&mut self) {
        self.st = State::default();
        // Only non-empty after an error; `Complete` moved it out already.
        if self.body.capacity() != 0 {
            self.body = Vec::new();
        }
    }

    /// Scan on from where the last call stopped. `Some((len, body))` once the
    /// request is complete; `None` while more bytes are needed.
    fn parse_inner<'b>(&mut self, buf: &'b [u8]) -> Result<Option<Framed<'b>>, Error> {
        let n = buf.len();
        loop {
            match self.st.phase {
                Phase::Leading => {
                    // RFC 9112 §2.2: ignore empty lines before the request line.
                    let p = self.st.pos;
                    if p >= n {
                        return Ok(None);
                    }
                    if buf[p] == b'\r' {
                        if p + 1 >= n {
                            return Ok(None);
                        }
                        if buf[p + 1] != b'\n' {
                            return Err(Error::BadByte);
                        }
                        self.st.pos = p + 2;
                        // Bound the empty lines too, or a peer could make the
                        // caller buffer them forever.
                        if self.st.pos > self.limits.max_request_line {
                            return Err(Error::BadRequestLine);
                        }
                    } else {
                        self.st.start = p;
                        self.st.scanned = p;
                        self.st.phase = Phase::RequestLine;
                    }
                }
                Phase::RequestLine => {
                    let limit = self.st.start.saturating_add(self.limits.max_request_line);
                    match scan(buf, self.st.scanned, limit, false, HEAD_OK) {
                        Scan::Partial(i) => {
                            self.st.scanned = i;
                            return Ok(None);
                        }
                        Scan::Bad => return Err(Error::BadByte),
                        Scan::Limit => return Err(Error::UriTooLong),
                        Scan::Line(cr) => {
                            self.request_line(buf, cr)?;
                            self.st.hs = cr + 2;
                            self.st.pos = cr + 2;
                            self.st.scanned = cr + 2;
                            self.st.phase = Phase::Headers;
                        }
                    }
                }
                Phase::Headers => {
                    let pos = self.st.pos;
                    let limit = self.st.hs.saturating_add(self.header_limit());
                    // A 65th header is certain from its first byte.
                    if self.st.count == MAX_HEADERS && pos < n {
                        let b = buf[pos];
                        if b != b'\r' && class(b) & HEAD_OK != 0 {
                            return Err(Error::HeadersTooLarge);
                        }
                    }
                    match scan(buf, self.st.scanned, limit, true, HEAD_OK) {
                        Scan::Partial(i) => {
                            self.st.scanned = i;
                            return Ok(None);
                        }
                        Scan::Bad => return Err(Error::BadByte),
                        Scan::Limit => return Err(Error::HeadersTooLarge),
                        Scan::Line(cr) if cr == pos => {
                            self.st.head_end = cr + 2;
                            self.st.pos = cr + 2;
                            self.st.scanned = cr + 2;
                            self.end_of_head()?;
                            self.st.phase = Phase::Body;
                        }
                        Scan::Line(cr) => {
                            self.header_line(buf, pos, cr)?;
                            self.st.pos = cr + 2;
                            self.st.scanned = cr + 2;
                        }
                    }
                }
                Phase::Body => {
                    let head_end = self.st.head_end;
                    return match self.st.framing {
                        Framing::None => Ok(Some((head_end, Cow::Borrowed(&[])))),
                        Framing::Length(l) if n - head_end >= l => Ok(Some((
                            head_end + l,
                            Cow::Borrowed(&buf[head_end..head_end + l]),
                        ))),
                        Framing::Length(_) => Ok(None),
                        Framing::Chunked => Ok(self
                            .chunked(buf)?
                            .map(|len| (len, Cow::Owned(std::mem::take(&mut self.body))))),
                    };
                }
            }
        }
    }

    /// Header section limit, capped so that offsets into it fit a `u32`.
    fn header_limit(&self) -> usize {
        self.limits.max_header_bytes.min(u32::MAX as usize)
    }

    /// `buf[start..cr]` is the request line, free of control bytes.
    fn request_line(&mut self, buf: &[u8], cr: usize) -> Result<(), Error> {
        let s = self.st.start;
        let line = &buf[s..cr];
        let m = run(line, 0, TCHAR);
        if m == 0 || line.get(m) != Some(&b' ') {
            return Err(Error::BadRequestLine);
        }
        let ts = m + 1;
        let te = run(line, ts, VCHAR);
        if te == ts || line.get(te) != Some(&b' ') {
            return Err(Error::BadRequestLine);
        }
        let version = match &line[te + 1..] {
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                if *major != b'1' {
                    return Err(Error::VersionNotSupported);
                }
                if *minor == b'0' {
                    Version::Http10
                } else {
                    Version::Http11
                }
            }
            _ => return Err(Error::BadRequestLine),
        };
        let method = match &line[..m] {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        };

        // Absolute offsets of the target, reduced to origin-form.
        let (t0, t1) = (s + ts, s + te);
        let target = &buf[t0..t1];
        let (tgt, query) = if target[0] == b'/' {
            let q = target.iter().position(|&b| b == b'?').map(|q| t0 + q);
            (Some((t0, t1)), q.map(|q| (q, t1)))
        } else if target == b"*" {
            (Some((t0, t1)), None)
        } else {
            let after_scheme = if starts_with_ci(target, b"http://") {
                7
            } else if starts_with_ci(target, b"https://") {
                8
            } else {
                return Err(Error::BadRequestLine);
            };
            let rest = &target[after_scheme..];
            let auth = rest
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(rest.len());
            if auth == 0 {
                return Err(Error::BadRequestLine);
            }
            let p0 = t0 + after_scheme + auth;
            match rest.get(auth) {
                Some(b'/') => {
                    let q = buf[p0..t1].iter().position(|&b| b == b'?').map(|q| p0 + q);
                    (Some((p0, t1)), q.map(|q| (q, t1)))
                }
                // `http://host?q`: empty path, i.e. "/", with a query.
                Some(_) => (None, Some((p0, t1))),
                None => (None, None),
            }
        };
        self.st.method = Some(method);
        self.st.method_end = s + m;
        self.st.target = tgt;
        self.st.query = query;
        self.st.version = Some(version);
        Ok(())
    }

    /// `buf[ls..cr]` is a non-empty header line, free of control bytes.
    fn header_line(&mut self, buf: &[u8], ls: usize, cr: usize) -> Result<(), Error> {
        if self.st.count >= MAX_HEADERS {
            return Err(Error::HeadersTooLarge);
        }
        let line = &buf[ls..cr];
        // Starts with whitespace: obs-fold (or a name preceded by spaces).
        let name_len = run(line, 0, TCHAR);
        if name_len == 0 || line.get(name_len) != Some(&b':') {
            return Err(Error::BadHeader);
        }
        let mut vs = name_len + 1;
        let mut ve = line.len();
        while vs < ve && is_ws(line[vs]) {
            vs += 1;
        }
        while ve > vs && is_ws(line[ve - 1]) {
            ve -= 1;
        }
        let name = &line[..name_len];
        let value = &line[vs..ve];

        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                if self.st.host.is_some() {
                    return Err(Error::DuplicateHost);
                }
                if std::str::from_utf8(value).is_err() {
                    return Err(Error::BadHeader);
                }
                self.st.host = Some(self.st.count);
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let cl = parse_content_length(value).ok_or(Error::BadContentLength)?;
                match self.st.content_length {
                    Some(prev) if prev != cl => return Err(Error::ConflictingContentLength),
                    _ => self.st.content_length = Some(cl),
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.st.te = true;
                for coding in value.split(|&b| b == b',') {
                    self.st.te_items += 1;
                    if !trim(coding).eq_ignore_ascii_case(b"chunked") {
                        self.st.te_bad = true;
                    }
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in value.split(|&b| b == b',') {
                    let token = trim(token);
                    if token.eq_ignore_ascii_case(b"close") {
                        self.st.conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.st.conn_keep_alive = true;
                    }
                }
            }
            _ => {}
        }

        let hs = self.st.hs;
        let rel = |x: usize| (x - hs) as u32;
        self.spans.0[self.st.count] = Span {
            name: (rel(ls), rel(ls + name_len)),
            value: (rel(ls + vs), rel(ls + ve)),
        };
        self.st.count += 1;
        Ok(())
    }

    /// The blank line ending the head was just seen: decide the framing.
    fn end_of_head(&mut self) -> Result<(), Error> {
        let version = self.st.version.unwrap_or(Version::Http11);
        if version == Version::Http11 && self.st.host.is_none() {
            return Err(Error::MissingHost);
        }
        if self.st.te {
            if version == Version::Http10 {
                return Err(Error::TransferEncodingInHttp10);
            }
            if self.st.content_length.is_some() {
                return Err(Error::TransferEncodingWithContentLength);
            }
            if self.st.te_items != 1 || self.st.te_bad {
                return Err(Error::UnsupportedTransferCoding);
            }
            self.st.framing = Framing::Chunked;
            self.st.chunk = Chunk::Size;
            self.st.ext_budget = CHUNK_EXT_BUDGET;
        } else if let Some(cl) = self.st.content_length {
            let max = u64::try_from(self.limits.max_body_bytes).unwrap_or(u64::MAX);
            if cl > max {
                return Err(Error::BodyTooLarge);
            }
            // cl <= max_body_bytes, a usize.
            self.st.framing = Framing::Length(cl as usize);
        }
        Ok(())
    }

    /// Decode the chunked body from `st.pos` on, appending to `self.body`.
    /// Returns the end of the request once the last chunk and trailers are in.
    fn chunked(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        let n = buf.len();
        let max_body = u64::try_from(self.limits.max_body_bytes).unwrap_or(u64::MAX);
        loop {
            let pos = self.st.pos;
            match self.st.chunk {
                Chunk::Size => {
                    let limit = pos.saturating_add(MAX_HEX_DIGITS + self.st.ext_budget);
                    let cr = match scan(buf, self.st.scanned, limit, false, EXT_OK) {
                        Scan::Partial(i) => {
                            self.st.scanned = i;
                            return Ok(None);
                        }
                        Scan::Bad | Scan::Limit => return Err(Error::BadChunk),
                        Scan::Line(cr) => cr,
                    };
                    let line = &buf[pos..cr];
                    let digits = run(line, 0, HEX);
                    if digits == 0 || digits > MAX_HEX_DIGITS {
                        return Err(Error::BadChunk);
                    }
                    let ext = &line[digits..];
                    if !ext.is_empty() {
                        // BWS ";" chunk-ext, contents ignored.
                        let ws = ext.iter().take_while(|&&b| is_ws(b)).count();
                        if ext.get(ws) != Some(&b';') || ext.len() > self.st.ext_budget {
                            return Err(Error::BadChunk);
                        }
                        self.st.ext_budget -= ext.len();
                    }
                    let size = line[..digits]
                        .iter()
                        .fold(0u64, |acc, &b| (acc << 4) | u64::from(hex_val(b)));
                    match self.st.decoded.checked_add(size) {
                        Some(total) if total <= max_body => {}
                        _ => return Err(Error::BodyTooLarge),
                    }
                    self.st.pos = cr + 2;
                    self.st.scanned = cr + 2;
                    if size == 0 {
                        self.st.trailer_start = cr + 2;
                        self.st.chunk = Chunk::Trailer;
                    } else {
                        self.st.chunk = Chunk::Data(size);
                    }
                }
                Chunk::Data(remaining) => {
                    let avail = (n - pos) as u64;
                    // take <= avail, a usize.
                    let take = avail.min(remaining) as usize;
                    self.body.extend_from_slice(&buf[pos..pos + take]);
                    self.st.pos = pos + take;
                    self.st.decoded += take as u64;
                    if take as u64 != remaining {
                        self.st.chunk = Chunk::Data(remaining - take as u64);
                        return Ok(None);
                    }
                    self.st.chunk = Chunk::DataEnd;
                }
                Chunk::DataEnd => {
                    if pos >= n {
                        return Ok(None);
                    }
                    if buf[pos] != b'\r' {
                        return Err(Error::BadChunk);
                    }
                    if pos + 1 >= n {
                        return Ok(None);
                    }
                    if buf[pos + 1] != b'\n' {
                        return Err(Error::BadChunk);
                    }
                    self.st.pos = pos + 2;
                    self.st.scanned = pos + 2;
                    self.st.chunk = Chunk::Size;
                }
                Chunk::Trailer => {
                    let limit = self
                        .st
                        .trailer_start
                        .saturating_add(self.limits.max_header_bytes);
                    match scan(buf, self.st.scanned, limit, true, HEAD_OK) {
                        Scan::Partial(i) => {
                            self.st.scanned = i;
                            return Ok(None);
                        }
                        Scan::Bad => return Err(Error::BadChunk),
                        Scan::Limit => return Err(Error::HeadersTooLarge),
                        Scan::Line(cr) if cr == pos => return Ok(Some(cr + 2)),
                        Scan::Line(cr) => {
                            self.st.pos = cr + 2;
                            self.st.scanned = cr + 2;
                        }
                    }
                }
            }
        }
    }
}

/// Assemble the request from the recorded offsets, filling the headers in
/// place so that the ~2 KiB request is not copied around.
#[inline]
fn build<'b>(
    st: &State,
    spans: &Spans,
    buf: &'b [u8],
    len: usize,
    body: Cow<'b, [u8]>,
) -> Request<'b> {
    let hs = st.hs;
    // Every &str handed out was checked to be ASCII (or UTF-8, for Host).
    // Validating the head once (fast when it is all ASCII, as it nearly
    // always is) and slicing it beats one from_utf8 call per field.
    let start = st.start;
    let head = std::str::from_utf8(&buf[start..st.head_end]).ok();
    let range = |(a, b): (usize, usize)| match head.and_then(|h| h.get(a - start..b - start)) {
        Some(s) => s,
        None => ascii(&buf[a..b]),
    };
    let abs = |(a, b): (u32, u32)| (hs + a as usize, hs + b as usize);
    let target = st.target.map_or("/", range);
    let (path, query) = match (st.target, st.query) {
        (Some((t0, _)), Some((q, t1))) => (range((t0, q)), Some(range((q + 1, t1)))),
        (None, Some((q, t1))) => ("/", Some(range((q + 1, t1)))),
        (_, None) => (target, None),
    };
    let version = st.version.unwrap_or(Version::Http11);
    let mut req = Request {
        method: st.method.unwrap_or(Method::Other),
        method_str: range((st.start, st.method_end)),
        target,
        path,
        query,
        version,
        headers: [Header {
            name: "",
            value: &[],
        }; MAX_HEADERS],
        header_count: st.count,
        host: st.host.map(|i| range(abs(spans.0[i].value))),
        keep_alive: !st.conn_close && (version == Version::Http11 || st.conn_keep_alive),
        body,
        len,
    };
    for (h, span) in req.headers.iter_mut().zip(&spans.0[..st.count]) {
        h.name = range(abs(span.name));
        let (a, b) = abs(span.value);
        h.value = &buf[a..b];
    }
    req
}

/// A complete request's length and its decoded body.
type Framed<'b> = (usize, Cow<'b, [u8]>);

/// Chunk-size lines: at most this many hex digits (a u64).
const MAX_HEX_DIGITS: usize = 16;
/// Bytes of chunk extensions (everything after the size) allowed per body, so
/// a peer cannot stream framing forever while the decoded size stays small.
const CHUNK_EXT_BUDGET: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Skipping empty lines before the request line.
    #[default]
    Leading,
    RequestLine,
    Headers,
    Body,
}

#[derive(Clone, Copy, Debug, Default)]
enum Framing {
    #[default]
    None,
    Length(usize),
    Chunked,
}

#[derive(Clone, Copy, Debug, Default)]
enum Chunk {
    /// At (or inside) a chunk-size line starting at `pos`.
    #[default]
    Size,
    /// This many data bytes of the current chunk still to come, from `pos`.
    Data(u64),
    /// The CRLF after chunk data, at `pos`.
    DataEnd,
    /// At (or inside) a trailer line starting at `pos`.
    Trailer,
}

/// Everything the parser remembers between calls; reset after each request.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    phase: Phase,
    /// Start of the line being scanned (or, in a chunked body, the next byte
    /// to decode).
    pos: usize,
    /// How far the current line has been checked byte by byte (>= `pos`).
    scanned: usize,
    /// Buffer length at the previous call.
    seen_len: usize,
    /// Start of the request line (after leading empty lines).
    start: usize,
    method: Option<Method>,
    method_end: usize,
    /// Reduced target; `None` is "/" (absolute-form with empty path).
    target: Option<(usize, usize)>,
    /// Index of the `?` and the end of the query.
    query: Option<(usize, usize)>,
    version: Option<Version>,
    /// Start of the header section.
    hs: usize,
    /// Headers recorded in `spans`.
    count: usize,
    /// Index of the Host header.
    host: Option<usize>,
    content_length: Option<u64>,
    te: bool,
    te_items: usize,
    te_bad: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    /// End of the head (after the blank line).
    head_end: usize,
    framing: Framing,
    chunk: Chunk,
    /// Decoded chunked body bytes so far.
    decoded: u64,
    ext_budget: usize,
    trailer_start: usize,
}

/// Offsets of one header's name and value, relative to the header section.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

#[derive(Debug)]
struct Spans([Span; MAX_HEADERS]);

impl Default for Spans {
    fn default() -> Self {
        Spans([Span::default(); MAX_HEADERS])
    }
}

/// Outcome of scanning for the end of a line.
enum Scan {
    /// The line ends with the CRLF at this index.
    Line(usize),
    /// Everything up to this index is fine; need more bytes.
    Partial(usize),
    /// A byte outside the allowed class, a bare CR or a bare LF.
    Bad,
    /// A byte at or past the limit.
    Limit,
}

/// Scan a line from `from` (where a previous scan stopped) for its CRLF.
/// Content bytes must have a class bit in `ok` and lie before `limit`; with
/// `crlf_limited` the CRLF must lie before `limit` too. Every decision depends
/// only on bytes already present, so a split feed decides exactly like a whole
/// one.
#[inline]
fn scan(buf: &[u8], from: usize, limit: usize, crlf_limited: bool, ok: u8) -> Scan {
    let n = buf.len();
    let bound = n.min(limit).max(from);
    let mut start = from;
    if ok == HEAD_OK {
        // Skip 8 plain bytes at a time; the byte loop below finds the exact one.
        while bound - start >= 8 {
            let Ok(word) = <[u8; 8]>::try_from(&buf[start..start + 8]) else {
                break;
            };
            if has_ctl(u64::from_le_bytes(word)) {
                break;
            }
            start += 8;
        }
    }
    let i = match buf[start..bound].iter().position(|&b| class(b) & ok == 0) {
        Some(k) => start + k,
        None if bound >= n => return Scan::Partial(n),
        None => bound,
    };
    if buf[i] == b'\r' {
        if crlf_limited && i >= limit {
            return Scan::Limit;
        }
        if i + 1 >= n {
            return Scan::Partial(i);
        }
        if buf[i + 1] != b'\n' {
            return Scan::Bad;
        }
        if crlf_limited && i + 1 >= limit {
            return Scan::Limit;
        }
        Scan::Line(i)
    } else if i >= limit {
        Scan::Limit
    } else {
        Scan::Bad
    }
}

/// Whether any byte of the word is below 0x20 (CTL, HTAB, CR, LF) or is DEL
/// (the classic "has less than" / "has zero byte" bit tricks; exact as a yes/no).
#[inline]
fn has_ctl(x: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let y = x ^ (ONES * 0x7f);
    let del = y.wrapping_sub(ONES) & !y & HIGH;
    below_space | del != 0
}

/// Index of the first byte at or after `from` without a class bit in `flag`.
#[inline]
fn run(s: &[u8], from: usize, flag: u8) -> usize {
    s[from..]
        .iter()
        .position(|&b| class(b) & flag == 0)
        .map_or(s.len(), |k| from + k)
}

fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[inline]
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Bytes already checked to be ASCII (or UTF-8); never fails in practice.
#[inline]
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// Allowed in a request head line: anything but CTLs (HTAB excepted), DEL.
const HEAD_OK: u8 = 1;
/// RFC 9110 tchar.
const TCHAR: u8 = 2;
/// Visible ASCII, 0x21..=0x7e.
const VCHAR: u8 = 4;
/// Allowed in a chunk-size line: HTAB, SP, visible ASCII.
const EXT_OK: u8 = 8;
const HEX: u8 = 16;

#[inline]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b == b'\t' || (b >= 0x20 && b != 0x7f) {
            c |= HEAD_OK;
        }
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            c |= TCHAR;
        }
        if b >= 0x21 && b <= 0x7e {
            c |= VCHAR;
        }
        if b == b'\t' || (b >= 0x20 && b <= 0x7e) {
            c |= EXT_OK;
        }
        if b.is_ascii_hexdigit() {
            c |= HEX;
        }
        t[i] = c;
        i += 1;
    }
    t
};
