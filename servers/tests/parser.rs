//! Unit tests for the incremental HTTP/1.1 request parser.

use servers::http::parser::*;

// ---------------------------------------------------------------- helpers

/// An owned copy of everything a parse result says, for comparisons.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    method: Method,
    method_str: String,
    target: String,
    path: String,
    query: Option<String>,
    version: Version,
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

fn summary(r: &Request<'_>) -> Summary {
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

fn outcome(r: Result<Status<Request<'_>>, Error>) -> Outcome {
    match r {
        Ok(Status::Partial) => Outcome::Partial,
        Ok(Status::Complete(req)) => Outcome::Complete(summary(&req)),
        Err(e) => Outcome::Err(e),
    }
}

fn parse_with(limits: Limits, buf: &[u8]) -> Outcome {
    outcome(Parser::new(limits).parse(buf))
}

fn parse(buf: &[u8]) -> Outcome {
    parse_with(Limits::default(), buf)
}

fn complete(buf: &[u8]) -> Summary {
    match parse(buf) {
        Outcome::Complete(s) => s,
        other => panic!(
            "expected Complete for {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

#[track_caller]
fn assert_err_with(limits: Limits, buf: &[u8], want: Error, status: u16) {
    assert_eq!(want.status(), status);
    assert!(!want.reason().is_empty());
    match parse_with(limits, buf) {
        Outcome::Err(e) => assert_eq!(e, want, "input {:?}", String::from_utf8_lossy(buf)),
        other => panic!(
            "expected {want:?} for {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

#[track_caller]
fn assert_err(buf: &[u8], want: Error, status: u16) {
    assert_err_with(Limits::default(), buf, want, status);
}

fn small_limits() -> Limits {
    Limits {
        max_request_line: 64,
        max_header_bytes: 128,
        max_body_bytes: 32,
    }
}

// ---------------------------------------------------------------- errors

#[test]
fn error_bad_request_line() {
    let cases: &[&[u8]] = &[
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\r\nHost: a\r\n\r\n",
        b"GET\r\nHost: a\r\n\r\n",
        b"/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\tHTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET ** HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / http/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.\r\nHost: a\r\n\r\n",
        b"GET / HTTP/a.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1,1\r\nHost: a\r\n\r\n",
        b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n",
        b"GET / \r\nHost: a\r\n\r\n",
    ];
    for c in cases {
        assert_err(c, Error::BadRequestLine, 400);
    }
}

#[test]
fn error_bad_request_line_detected_before_head_end() {
    // The request line alone is enough to reject garbage.
    assert_err(b"HELLO\r\n", Error::BadRequestLine, 400);
    assert_err(
        b"GET / HTTP/1.1 x\r\nHost: a\r\n",
        Error::BadRequestLine,
        400,
    );
}

#[test]
fn error_bad_header() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nFoo bar\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nFoo : bar\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nFoo\t: bar\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n: bar\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nFoo: bar\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nFoo: bar\r\n\tfolded\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nF(o): x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nF\xc3\xa9: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nF\"o: x\r\n\r\n",
        // Host must be text.
        b"GET / HTTP/1.1\r\nHost: a\xff\r\n\r\n",
    ];
    for c in cases {
        assert_err(c, Error::BadHeader, 400);
    }
}

#[test]
fn error_bad_byte() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
        b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[0m\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x00GET / HTTP/1.1\r\n\r\n",
        b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
    ];
    for c in cases {
        assert_err(c, Error::BadByte, 400);
    }
}

#[test]
fn error_missing_host() {
    assert_err(b"GET / HTTP/1.1\r\n\r\n", Error::MissingHost, 400);
    assert_err(
        b"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n",
        Error::MissingHost,
        400,
    );
    assert_err(
        b"GET / HTTP/1.5\r\nAccept: */*\r\n\r\n",
        Error::MissingHost,
        400,
    );
    // Not required in 1.0.
    assert!(matches!(
        parse(b"GET / HTTP/1.0\r\n\r\n"),
        Outcome::Complete(_)
    ));
}

#[test]
fn error_duplicate_host() {
    assert_err(
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        Error::DuplicateHost,
        400,
    );
    assert_err(
        b"GET / HTTP/1.1\r\nHost: a\r\nhOsT: b\r\n\r\n",
        Error::DuplicateHost,
        400,
    );
    assert_err(
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        Error::DuplicateHost,
        400,
    );
    // Detected at the second Host line, before the head is complete.
    assert_err(
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n",
        Error::DuplicateHost,
        400,
    );
}

#[test]
fn error_bad_content_length() {
    for v in [
        "",
        "+5",
        "-1",
        "5 5",
        "1,1",
        "1, 1",
        "abc",
        "0x10",
        "1.0",
        "5a",
        "99999999999999999999999",
        "18446744073709551616",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_err(req.as_bytes(), Error::BadContentLength, 400);
    }
    // Surrounding whitespace is not part of the value.
    let s = complete(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:   3 \t\r\n\r\nabc");
    assert_eq!(s.body, b"abc");
}

#[test]
fn error_conflicting_content_length() {
    assert_err(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        Error::ConflictingContentLength,
        400,
    );
}

#[test]
fn error_transfer_encoding_with_content_length() {
    assert_err(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        Error::TransferEncodingWithContentLength,
        400,
    );
    assert_err(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        Error::TransferEncodingWithContentLength,
        400,
    );
    // Checked before the coding itself.
    assert_err(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n",
        Error::TransferEncodingWithContentLength,
        400,
    );
}

#[test]
fn error_transfer_encoding_in_http10() {
    assert_err(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Error::TransferEncodingInHttp10,
        400,
    );
}

#[test]
fn error_unsupported_transfer_coding() {
    for te in [
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding:\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunkedx\r\n",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: a\r\n{te}\r\n");
        assert_err(req.as_bytes(), Error::UnsupportedTransferCoding, 501);
    }
}

#[test]
fn error_bad_chunk() {
    let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let bodies: &[&[u8]] = &[
        b"zz\r\nab\r\n0\r\n\r\n",
        b"\r\n",
        b"-1\r\n",
        b"12345678901234567\r\n",   // 17 hex digits
        b"0000000000000000001\r\n", // too many digits, even if zeros
        b"3\r\nabcd\r\n0\r\n\r\n",  // missing CRLF after data
        b"3\r\nabc\n0\r\n\r\n",     // bare LF after data
        b"3\r\nabc\rX",             // bare CR after data
        b"3 \r\nabc\r\n0\r\n\r\n",  // whitespace without an extension
        b"3x\r\nabc\r\n0\r\n\r\n",
        b"3;a=\x01\r\nabc\r\n0\r\n\r\n", // control byte in an extension
        b"3;\xff\r\nabc\r\n0\r\n\r\n",   // not a visible char
        b"3\rabc\r\n0\r\n\r\n",          // bare CR in size line
        b"3\nabc\r\n0\r\n\r\n",          // bare LF in size line
        b"0\r\nX: \x00\r\n\r\n",         // bad byte in a trailer
        b"0\r\nX: a\n\r\n",              // bare LF in a trailer
    ];
    for body in bodies {
        let mut req = head.as_bytes().to_vec();
        req.extend_from_slice(body);
        assert_err(&req, Error::BadChunk, 400);
    }
}

#[test]
fn error_uri_too_long() {
    let mut req = b"GET /".to_vec();
    req.extend(std::iter::repeat(b'a').take(9000));
    req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_err(&req, Error::UriTooLong, 414);

    // Exactly at the limit is fine, one more byte is not.
    let limits = small_limits();
    let line_of = |len: usize| {
        let mut l = b"GET /".to_vec();
        l.extend(std::iter::repeat(b'x').take(len - b"GET / HTTP/1.1".len()));
        l.extend_from_slice(b" HTTP/1.1");
        assert_eq!(l.len(), len);
        l
    };
    let mut ok = line_of(64);
    ok.extend_from_slice(b"\r\nHost: a\r\n\r\n");
    assert!(matches!(parse_with(limits, &ok), Outcome::Complete(_)));
    let mut long = line_of(65);
    long.extend_from_slice(b"\r\nHost: a\r\n\r\n");
    assert_err_with(limits, &long, Error::UriTooLong, 414);
}

#[test]
fn error_headers_too_large() {
    // Header section over the byte limit.
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..40 {
        req.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(500)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert_err(&req, Error::HeadersTooLarge, 431);

    // Exactly max_header_bytes is fine (counting the final blank line).
    let limits = small_limits();
    let head = |section_len: usize| {
        let fixed = "Host: a\r\nX: \r\n\r\n".len();
        format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(section_len - fixed)
        )
    };
    assert!(matches!(
        parse_with(limits, head(128).as_bytes()),
        Outcome::Complete(_)
    ));
    assert_err_with(limits, head(129).as_bytes(), Error::HeadersTooLarge, 431);

    // More than MAX_HEADERS headers.
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert_err(&req, Error::HeadersTooLarge, 431);

    // Exactly MAX_HEADERS is fine.
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 1..MAX_HEADERS {
        req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let s = complete(&req);
    assert_eq!(s.headers.len(), MAX_HEADERS);
}

#[test]
fn error_body_too_large() {
    let limits = small_limits();
    assert_err_with(
        limits,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 33\r\n\r\n",
        Error::BodyTooLarge,
        413,
    );
    assert_err(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n",
        Error::BodyTooLarge,
        413,
    );
    // The limit itself is fine.
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 32\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'b'; 32]);
    assert!(matches!(parse_with(limits, &req), Outcome::Complete(_)));

    // Chunked: a single chunk announcing too much, before any data.
    assert_err_with(
        limits,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n21\r\n",
        Error::BodyTooLarge,
        413,
    );
    assert_err(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        Error::BodyTooLarge,
        413,
    );
    // Chunked: the sum of chunks going over.
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(b"10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n1\r\n");
    assert_err_with(limits, &req, Error::BodyTooLarge, 413);
}

#[test]
fn error_version_not_supported() {
    for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.1", "HTTP/9.9"] {
        let req = format!("GET / {v}\r\nHost: a\r\n\r\n");
        assert_err(req.as_bytes(), Error::VersionNotSupported, 505);
    }
}

#[test]
fn status_codes() {
    use Error::*;
    let all = [
        (BadRequestLine, 400),
        (BadHeader, 400),
        (BadByte, 400),
        (MissingHost, 400),
        (DuplicateHost, 400),
        (BadContentLength, 400),
        (ConflictingContentLength, 400),
        (TransferEncodingWithContentLength, 400),
        (TransferEncodingInHttp10, 400),
        (BadChunk, 400),
        (UnsupportedTransferCoding, 501),
        (UriTooLong, 414),
        (HeadersTooLarge, 431),
        (BodyTooLarge, 413),
        (VersionNotSupported, 505),
    ];
    for (e, s) in all {
        assert_eq!(e.status(), s, "{e:?}");
        assert!(!e.reason().is_empty());
    }
}

// ---------------------------------------------------------------- features

#[test]
fn methods() {
    let known = [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("OPTIONS", Method::Options),
        ("PATCH", Method::Patch),
        ("TRACE", Method::Trace),
        ("CONNECT", Method::Connect),
        ("get", Method::Other),
        ("Post", Method::Other),
        ("PROPFIND", Method::Other),
        ("M-SEARCH", Method::Other),
        ("X!#$%&'*+-.^_`|~9", Method::Other),
    ];
    for (name, m) in known {
        let req = format!("{name} /p HTTP/1.1\r\nHost: a\r\n\r\n");
        let s = complete(req.as_bytes());
        assert_eq!(s.method, m, "{name}");
        assert_eq!(s.method_str, name);
        assert_eq!(s.len, req.len());
    }
}

#[test]
fn simple_get() {
    let req = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    let s = complete(req);
    assert_eq!(s.method, Method::Get);
    assert_eq!(s.target, "/index.html");
    assert_eq!(s.path, "/index.html");
    assert_eq!(s.query, None);
    assert_eq!(s.version, Version::Http11);
    assert_eq!(s.host.as_deref(), Some("example.com"));
    assert_eq!(s.headers.len(), 2);
    assert_eq!(s.headers[0], ("Host".to_string(), b"example.com".to_vec()));
    assert_eq!(s.headers[1], ("Accept".to_string(), b"*/*".to_vec()));
    assert!(s.keep_alive);
    assert!(s.body.is_empty());
    assert_eq!(s.len, req.len());
}

#[test]
fn body_borrowed_or_owned() {
    let mut p = Parser::default();
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let Ok(Status::Complete(r)) = p.parse(buf) else {
        panic!()
    };
    assert!(matches!(r.body, std::borrow::Cow::Borrowed(b)if b.is_empty()));
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
    let Ok(Status::Complete(r)) = p.parse(buf) else {
        panic!()
    };
    assert!(matches!(r.body, std::borrow::Cow::Borrowed(b"hi")));
    let buf =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    let Ok(Status::Complete(r)) = p.parse(buf) else {
        panic!()
    };
    assert!(matches!(&r.body, std::borrow::Cow::Owned(v) if v == b"hi"));
}

#[test]
fn absolute_form() {
    let s = complete(b"GET http://example.com/a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(s.target, "/a/b?x=1&y");
    assert_eq!(s.path, "/a/b");
    assert_eq!(s.query.as_deref(), Some("x=1&y"));

    let s = complete(b"GET HTTP://user@example.com:8080 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(s.target, "/");
    assert_eq!(s.path, "/");
    assert_eq!(s.query, None);

    let s = complete(b"GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(s.target, "/");

    let s = complete(b"GET http://example.com?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(s.path, "/");
    assert_eq!(s.query.as_deref(), Some("q=1"));
}

#[test]
fn asterisk_form() {
    let s = complete(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(s.method, Method::Options);
    assert_eq!(s.target, "*");
    assert_eq!(s.path, "*");
    assert_eq!(s.query, None);
}

#[test]
fn query_split() {
    let s = complete(b"GET /a%20b?x=1&y=?2 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(s.target, "/a%20b?x=1&y=?2");
    assert_eq!(s.path, "/a%20b");
    assert_eq!(s.query.as_deref(), Some("x=1&y=?2"));

    let s = complete(b"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(s.path, "/p");
    assert_eq!(s.query.as_deref(), Some(""));

    let s = complete(b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(s.query, None);
}

#[test]
fn versions() {
    assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
    assert_eq!(
        complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").version,
        Version::Http11
    );
    // Higher minor versions of 1.x are treated as 1.1.
    assert_eq!(
        complete(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n").version,
        Version::Http11
    );
    assert_eq!(
        complete(b"GET / HTTP/1.9\r\nHost: a\r\n\r\n").version,
        Version::Http11
    );
}

#[test]
fn keep_alive_rules() {
    let ka = |version: &str, conn: Option<&str>| {
        let mut req = format!("GET / {version}\r\nHost: a\r\n");
        if let Some(c) = conn {
            req.push_str(&format!("Connection: {c}\r\n"));
        }
        req.push_str("\r\n");
        complete(req.as_bytes()).keep_alive
    };
    assert!(ka("HTTP/1.1", None));
    assert!(ka("HTTP/1.1", Some("keep-alive")));
    assert!(ka("HTTP/1.1", Some("Upgrade")));
    assert!(!ka("HTTP/1.1", Some("close")));
    assert!(!ka("HTTP/1.1", Some("CLOSE")));
    assert!(!ka("HTTP/1.1", Some("Upgrade, close")));
    assert!(!ka("HTTP/1.1", Some("keep-alive ,\tClose ")));
    assert!(ka("HTTP/1.1", Some("closed, enclose")));
    assert!(!ka("HTTP/1.0", None));
    assert!(ka("HTTP/1.0", Some("keep-alive")));
    assert!(ka("HTTP/1.0", Some("Keep-Alive")));
    assert!(ka("HTTP/1.0", Some("foo,  KEEP-ALIVE")));
    assert!(!ka("HTTP/1.0", Some("close")));
    assert!(!ka("HTTP/1.0", Some("keep-alive, close")));
    assert!(!ka("HTTP/1.0", Some("keep-alives")));

    // Across several Connection headers.
    let s = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nconnection: close\r\n\r\n");
    assert!(!s.keep_alive);
}

#[test]
fn header_trimming_and_lookup() {
    let req = b"GET / HTTP/1.1\r\nHost:a\r\nX-Empty:\r\nX-Ws: \t  padded value \t \r\nX-Obs: caf\xc3\xa9 \x80\xff\r\nX-Case: 1\r\n\r\n";
    let mut p = Parser::default();
    let Ok(Status::Complete(r)) = p.parse(req) else {
        panic!()
    };
    assert_eq!(r.host, Some("a"));
    assert_eq!(r.header("x-empty"), Some(&b""[..]));
    assert_eq!(r.header("X-WS"), Some(&b"padded value"[..]));
    assert_eq!(r.header("x-obs"), Some(&b"caf\xc3\xa9 \x80\xff"[..]));
    assert_eq!(r.header("X-CASE"), Some(&b"1"[..]));
    assert_eq!(r.header("host"), Some(&b"a"[..]));
    assert_eq!(r.header("missing"), None);
    assert_eq!(r.headers()[3].name, "X-Obs");
    assert_eq!(r.headers().len(), 5);
    assert_eq!(r.header_count, 5);

    // First of several headers with the same name.
    let Ok(Status::Complete(r)) = p.parse(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nx: 2\r\n\r\n")
    else {
        panic!()
    };
    assert_eq!(r.header("X"), Some(&b"1"[..]));
    assert_eq!(r.headers()[2].value, b"2");
}

#[test]
fn content_length_body() {
    let req = b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
    let s = complete(req);
    assert_eq!(s.method, Method::Post);
    assert_eq!(s.body, b"hello world");
    assert_eq!(s.len, req.len());

    // Partial until the whole body is there.
    assert_eq!(parse(&req[..req.len() - 1]), Outcome::Partial);

    // Content-Length: 0.
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nGET";
    let s = complete(req);
    assert!(s.body.is_empty());
    assert_eq!(s.len, req.len() - 3);

    // Trailing bytes belong to the next request.
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET";
    assert_eq!(complete(req).body, b"abc");
    assert_eq!(complete(req).len, req.len() - 3);
}

#[test]
fn duplicate_identical_content_length() {
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\nContent-Length: 003\r\n\r\nabc";
    let s = complete(req);
    assert_eq!(s.body, b"abc");
    assert_eq!(s.len, req.len());
}

#[test]
fn chunked_body() {
    let req = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;name=value;x\r\n \r\nA ; ext=\"q s\"\r\nworld!!!!!\r\n0\r\n\r\n";
    let s = complete(req);
    assert_eq!(s.body, b"hello world!!!!!");
    assert_eq!(s.len, req.len());

    // Case-insensitive coding, whitespace, uppercase hex, leading zeros, trailers.
    let data = "d".repeat(0xab);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  Chunked \r\n\r\n00000000000000Ab\r\n{data}\r\n000\r\nX-Trailer: yes\r\nChecksum: abc\r\n\r\nNEXT"
    );
    let req = req.as_bytes();
    let s = complete(req);
    assert_eq!(s.body.len(), 0xab);
    assert_eq!(s.len, req.len() - 4);
    assert_eq!(s.headers.len(), 2);

    // Empty chunked body.
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let s = complete(req);
    assert!(s.body.is_empty());
    assert_eq!(s.len, req.len());

    // Partial until the final CRLF.
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n";
    assert_eq!(parse(req), Outcome::Partial);
}

#[test]
fn leading_crlf_skipped() {
    let req = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let s = complete(req);
    assert_eq!(s.method_str, "GET");
    assert_eq!(s.len, req.len());
    assert_eq!(parse(b"\r\n"), Outcome::Partial);
    assert_eq!(parse(b"\r\n\r"), Outcome::Partial);
}

#[test]
fn partial_for_every_prefix_of_the_head() {
    let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for k in 0..req.len() {
        assert_eq!(parse(&req[..k]), Outcome::Partial, "prefix {k}");
    }
}

// ---------------------------------------------------------------- splitting

fn samples() -> Vec<Vec<u8>> {
    let mut many =
        b"GET /api/v1/items?page=2&sort=desc HTTP/1.1\r\nHost: api.example.com\r\n".to_vec();
    for (i, name) in [
        "User-Agent",
        "Accept",
        "Accept-Language",
        "Accept-Encoding",
        "Cookie",
        "Referer",
        "Cache-Control",
        "X-Request-Id",
        "X-Forwarded-For",
        "Authorization",
    ]
    .iter()
    .enumerate()
    {
        many.extend_from_slice(format!("{name}:  value-{i} with spaces\t\r\n").as_bytes());
    }
    many.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
    vec![
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        many,
        b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world!"
            .to_vec(),
        b"POST /chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;a=b\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n"
            .to_vec(),
        b"GET /old HTTP/1.0\r\nUser-Agent: ancient\r\nConnection: Keep-Alive\r\n\r\n".to_vec(),
        b"\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET http://proxy.example/x?y HTTP/1.1\r\nHost: proxy.example\r\n\r\n".to_vec(),
    ]
}

#[test]
fn every_split_point_gives_the_same_result() {
    for sample in samples() {
        let whole = parse(&sample);
        assert!(
            matches!(whole, Outcome::Complete(ref s) if s.len == sample.len()),
            "{whole:?}"
        );
        for k in 0..=sample.len() {
            let mut p = Parser::default();
            // A fresh copy: the caller may reallocate between calls.
            let prefix = sample[..k].to_vec();
            let first = outcome(p.parse(&prefix));
            if k < sample.len() {
                assert_eq!(first, Outcome::Partial, "prefix {k}");
            }
            let full = sample.clone();
            let second = outcome(p.parse(&full));
            if k < sample.len() {
                assert_eq!(second, whole, "split at {k}");
            } else {
                assert_eq!(first, whole);
            }
        }
    }
}

#[test]
fn two_split_points_give_the_same_result() {
    for sample in samples() {
        let whole = parse(&sample);
        for a in 0..sample.len() {
            for b in (a..sample.len()).step_by(3) {
                let mut p = Parser::default();
                assert_eq!(outcome(p.parse(&sample[..a])), Outcome::Partial);
                assert_eq!(outcome(p.parse(&sample[..b])), Outcome::Partial);
                assert_eq!(outcome(p.parse(&sample)), whole, "splits {a} {b}");
            }
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    for sample in samples() {
        let whole = parse(&sample);
        let mut p = Parser::default();
        let mut buf = Vec::new();
        let mut last = Outcome::Partial;
        for (i, &b) in sample.iter().enumerate() {
            buf.push(b);
            last = outcome(p.parse(&buf));
            if i + 1 < sample.len() {
                assert_eq!(last, Outcome::Partial, "after {} bytes", i + 1);
            }
        }
        assert_eq!(last, whole);
    }
}

#[test]
fn errors_are_the_same_at_every_split_point() {
    let bad: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\nFoo bar\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: \x01\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ];
    for req in bad {
        let whole = parse(req);
        assert!(matches!(whole, Outcome::Err(_)));
        for k in 0..=req.len() {
            let mut p = Parser::default();
            let first = outcome(p.parse(&req[..k]));
            if first == Outcome::Partial {
                assert_eq!(outcome(p.parse(req)), whole, "split at {k}");
            } else {
                assert_eq!(first, whole, "prefix {k}");
            }
        }
    }
}

// ---------------------------------------------------------------- pipelining

/// What a pipelined request should come out as: method, path, body.
type Expected = (Method, String, Vec<u8>);

fn pipeline() -> (Vec<u8>, Vec<Expected>) {
    let mut buf = Vec::new();
    let mut expect = Vec::new();
    for i in 0..20 {
        match i % 3 {
            0 => {
                let path = format!("/get/{i}");
                buf.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
                expect.push((Method::Get, path, Vec::new()));
            }
            1 => {
                let path = format!("/post/{i}");
                let body = format!("body number {i}").into_bytes();
                buf.extend_from_slice(
                    format!(
                        "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                buf.extend_from_slice(&body);
                expect.push((Method::Post, path, body));
            }
            _ => {
                let path = format!("/chunked/{i}");
                let part1 = format!("chunk {i};");
                let part2 = "x".repeat(i);
                buf.extend_from_slice(
                    format!(
                        "PUT {path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{part1}\r\n{:x};e\r\n{part2}\r\n0\r\n\r\n",
                        part1.len(),
                        part2.len()
                    )
                    .as_bytes(),
                );
                expect.push((Method::Put, path, format!("{part1}{part2}").into_bytes()));
            }
        }
    }
    (buf, expect)
}

#[test]
fn pipelined_requests_come_out_in_order() {
    let (buf, expect) = pipeline();
    let mut p = Parser::default();
    let mut off = 0;
    for (i, (method, path, body)) in expect.iter().enumerate() {
        let Ok(Status::Complete(r)) = p.parse(&buf[off..]) else {
            panic!("request {i} not complete")
        };
        assert_eq!(r.method, *method, "request {i}");
        assert_eq!(r.path, path);
        assert_eq!(&*r.body, &body[..]);
        assert!(r.len > 0);
        // The next request starts right where this one ends.
        let rest = &buf[off + r.len..];
        assert!(
            rest.is_empty()
                || rest.starts_with(b"GET ")
                || rest.starts_with(b"POST ")
                || rest.starts_with(b"PUT ")
        );
        off += r.len;
    }
    assert_eq!(off, buf.len());
    assert!(matches!(p.parse(&buf[off..]), Ok(Status::Partial)));
}

#[test]
fn pipelined_requests_arriving_in_small_reads() {
    let (stream, expect) = pipeline();
    for read_size in [1, 2, 7, 64, 1000] {
        let mut p = Parser::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        for piece in stream.chunks(read_size) {
            buf.extend_from_slice(piece);
            loop {
                match p.parse(&buf) {
                    Ok(Status::Complete(r)) => {
                        got.push((r.method, r.path.to_string(), r.body.to_vec()));
                        let len = r.len;
                        buf.drain(..len);
                    }
                    Ok(Status::Partial) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got, expect, "read size {read_size}");
    }
}

// ---------------------------------------------------------------- early errors

#[test]
fn errors_detected_before_the_head_is_complete() {
    let mut p = Parser::default();
    assert!(matches!(
        p.parse(b"GET /x HTTP/1.1\r\nHo"),
        Ok(Status::Partial)
    ));
    assert_eq!(
        p.parse(b"GET /x HTTP/1.1\r\nHo\x01").unwrap_err(),
        Error::BadByte
    );

    // 9000 bytes of target and no line end yet.
    let mut p = Parser::default();
    let mut buf = b"GET /".to_vec();
    buf.extend(std::iter::repeat(b'a').take(4000));
    assert!(matches!(p.parse(&buf), Ok(Status::Partial)));
    buf.extend(std::iter::repeat(b'a').take(5000));
    assert_eq!(p.parse(&buf).unwrap_err(), Error::UriTooLong);

    // Right past the limit, not later.
    let limits = small_limits();
    let mut p = Parser::new(limits);
    assert!(matches!(p.parse(&[b'A'; 64]), Ok(Status::Partial)));
    assert_eq!(p.parse(&[b'A'; 65]).unwrap_err(), Error::UriTooLong);

    // Header section growing past its limit with no blank line.
    let mut p = Parser::new(limits);
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    assert!(matches!(p.parse(&buf), Ok(Status::Partial)));
    buf.extend(std::iter::repeat(b'v').take(200));
    assert_eq!(p.parse(&buf).unwrap_err(), Error::HeadersTooLarge);

    // A 65th header, before its line is even complete.
    let mut p = Parser::default();
    let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    assert!(matches!(p.parse(&buf), Ok(Status::Partial)));
    buf.push(b'X');
    assert_eq!(p.parse(&buf).unwrap_err(), Error::HeadersTooLarge);

    // Bad header line, before the blank line.
    let mut p = Parser::default();
    assert_eq!(
        p.parse(b"GET / HTTP/1.1\r\nbad header\r\n").unwrap_err(),
        Error::BadHeader
    );

    // Body too large, before the body.
    let mut p = Parser::default();
    assert_eq!(
        p.parse(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n")
            .unwrap_err(),
        Error::BodyTooLarge
    );
}

#[test]
fn parser_is_reusable_after_errors() {
    let mut p = Parser::default();
    assert!(p.parse(b"GET / HTTP/1.1\r\nHost: a\rX").is_err());
    let s = outcome(p.parse(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(matches!(s, Outcome::Complete(ref s) if s.path == "/ok"));
    assert!(p
        .parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX")
        .is_err());
    let s = outcome(p.parse(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
    ));
    assert!(matches!(s, Outcome::Complete(ref s) if s.body == b"z"));
}

#[test]
fn limits_accessor() {
    let p = Parser::new(small_limits());
    assert_eq!(p.limits().max_request_line, 64);
    assert_eq!(Parser::default().limits().max_header_bytes, 16 * 1024);
}

// ---------------------------------------------------------------- guards beyond the brief

#[test]
fn leading_empty_lines_are_bounded() {
    let limits = small_limits();
    let mut req = b"\r\n".repeat(32);
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(matches!(parse_with(limits, &req), Outcome::Complete(ref s) if s.len == req.len()));
    let mut req = b"\r\n".repeat(33);
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_err_with(limits, &req, Error::BadRequestLine, 400);
}

#[test]
fn chunk_extensions_and_trailers_are_bounded() {
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    // 16 KiB of extensions in total per body.
    let mut req = head.to_vec();
    for _ in 0..20 {
        req.extend_from_slice(format!("1;{}\r\nx\r\n", "e".repeat(1000)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(parse(&req), Outcome::Err(Error::BadChunk));
    let mut req = head.to_vec();
    for _ in 0..10 {
        req.extend_from_slice(format!("1;{}\r\nx\r\n", "e".repeat(1000)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert!(matches!(parse(&req), Outcome::Complete(ref s) if s.body == b"xxxxxxxxxx"));

    // The trailer section is limited like the header section.
    let mut req = head.to_vec();
    req.extend_from_slice(b"0\r\n");
    for i in 0..100 {
        req.extend_from_slice(format!("T-{i}: {}\r\n", "t".repeat(200)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert_eq!(parse(&req), Outcome::Err(Error::HeadersTooLarge));
}

#[test]
fn shrinking_buffer_does_not_panic() {
    // Breaks the caller contract; the parser just starts over.
    let req =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let mut p = Parser::default();
    assert!(matches!(
        p.parse(&req[..req.len() - 3]),
        Ok(Status::Partial)
    ));
    assert!(matches!(p.parse(&req[..10]), Ok(Status::Partial)));
    assert_eq!(outcome(p.parse(req)), parse(req));
}

// ---------------------------------------------------------------- streaming

/// Feed `wire` in pieces of `step` bytes the way a connection streaming an
/// upload does: parse until the head is pending, take the body over, then
/// stream it. Returns the streamed body and the bytes left after it.
fn stream(limits: Limits, wire: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let mut p = Parser::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut body = Vec::new();
    let mut streaming = false;
    loop {
        if streaming {
            let (used, done) = p.stream_body(&buf, &mut |piece| body.extend_from_slice(piece))?;
            buf.drain(..used);
            if done {
                buf.extend_from_slice(&wire[fed..]);
                return Ok((body, buf));
            }
        } else {
            match p.parse(&buf)? {
                Status::Complete(_) => {
                    panic!("step {step}: the body arrived whole, nothing to stream")
                }
                Status::Partial if p.pending_head(&buf).is_some() => {
                    let used = p.take_over_body();
                    buf.drain(..used);
                    streaming = true;
                    continue;
                }
                Status::Partial => {}
            }
        }
        assert!(fed < wire.len(), "step {step}: ran out of input");
        let end = (fed + step).min(wire.len());
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
    }
}

#[test]
fn streamed_bodies_match_buffered_ones_at_every_split() {
    let next = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    let chunked_req = b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\n\r\n".to_vec();
    let length_req = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 31\r\n\r\nhelloabcdefghijklmnopqrstuvwxyz".to_vec();
    for req in [chunked_req, length_req] {
        let buffered = complete(&req).body;
        assert_eq!(buffered, b"helloabcdefghijklmnopqrstuvwxyz");
        let mut wire = req.clone();
        wire.extend_from_slice(next);
        // Steps up to the head's size, so the body never arrives with it.
        for step in 1..40 {
            let (body, rest) = stream(Limits::default(), &wire, step).unwrap();
            assert_eq!(body, buffered, "step {step}");
            assert_eq!(rest, next, "step {step}");
        }
    }
}

#[test]
fn streamed_bodies_keep_the_limits_and_errors() {
    let limits = Limits {
        max_body_bytes: 10,
        ..Limits::default()
    };
    let too_big = b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n";
    let bad =
        b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678XX\r\n";
    for step in 1..20 {
        assert_eq!(
            stream(limits, too_big, step),
            Err(Error::BodyTooLarge),
            "step {step}"
        );
        assert_eq!(
            stream(limits, bad, step),
            Err(Error::BadChunk),
            "step {step}"
        );
    }
}

#[test]
fn errors_display_their_status_and_reason() {
    let e: Box<dyn std::error::Error> = Box::new(Error::BadRequestLine);
    assert_eq!(e.to_string(), "400 Bad Request: malformed request line");
    assert_eq!(
        Error::UnsupportedTransferCoding.to_string(),
        format!(
            "501 Not Implemented: {}",
            Error::UnsupportedTransferCoding.reason()
        )
    );
}
