//! The application: routes a parsed request to a response.
//!
//! Every variant calls the same [`App::respond`], so the bytes on the wire are
//! identical across concurrency models (apart from the Date header).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use super::date;
use super::files::{self, Range, Resolved};
use super::parser::{Method, Request, Version};
use super::response::{push_u64, write_head, ConnHeader, Outbox};
use super::stats::Stats;

const PLAINTEXT: &[u8] = b"Hello, World!";
const JSON: &[u8] = br#"{"message":"Hello, World!"}"#;
const ALLOW_GET_HEAD: &[u8] = b"Allow: GET, HEAD";

pub struct App {
    root: File,
    stats: Arc<Stats>,
}

impl App {
    /// `root` is the document root; it is opened once and every file lookup
    /// is resolved beneath that descriptor.
    pub fn new(root: &Path, stats: Arc<Stats>) -> io::Result<App> {
        let dir = File::open(root)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--root {} is not a directory", root.display()),
            ));
        }
        Ok(App { root: dir, stats })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Append the response to `req` to `out` and return its status.
    /// `keep_alive` says whether the connection stays open afterwards (the
    /// caller folds in the client's wish, request caps and shutdown).
    pub fn respond(&self, req: &Request<'_>, keep_alive: bool, out: &mut Outbox) -> u16 {
        let conn = conn_header(req.version, keep_alive);
        let head_only = req.method == Method::Head;
        if !matches!(req.method, Method::Get | Method::Head) {
            return simple(
                out,
                405,
                "text/plain",
                b"405 Method Not Allowed\n",
                conn,
                &[ALLOW_GET_HEAD],
                false,
            );
        }
        match req.path {
            "/plaintext" => simple(out, 200, "text/plain", PLAINTEXT, conn, &[], head_only),
            "/json" => simple(out, 200, "application/json", JSON, conn, &[], head_only),
            "/health" => simple(out, 200, "text/plain", b"OK", conn, &[], head_only),
            "/stats" => {
                let body = self.stats.to_json();
                simple(
                    out,
                    200,
                    "application/json",
                    body.as_bytes(),
                    conn,
                    &[],
                    head_only,
                )
            }
            path => self.static_file(req, path, conn, head_only, out),
        }
    }

    fn static_file(
        &self,
        req: &Request<'_>,
        path: &str,
        conn: ConnHeader,
        head_only: bool,
        out: &mut Outbox,
    ) -> u16 {
        let (file, size, mtime, ctype) = match files::resolve(self.root.as_raw_fd(), path) {
            Resolved::File {
                file,
                size,
                mtime,
                mime,
            } => (file, size, mtime, mime),
            Resolved::Redirect(to) => {
                let mut loc = b"Location: ".to_vec();
                loc.extend_from_slice(to.as_bytes());
                return simple(
                    out,
                    301,
                    "text/plain",
                    b"301 Moved Permanently\n",
                    conn,
                    &[&loc],
                    head_only,
                );
            }
            Resolved::BadPath => {
                return simple(
                    out,
                    400,
                    "text/plain",
                    b"400 Bad Request: invalid path\n",
                    conn,
                    &[],
                    head_only,
                )
            }
            Resolved::Forbidden => {
                return simple(
                    out,
                    403,
                    "text/plain",
                    b"403 Forbidden\n",
                    conn,
                    &[],
                    head_only,
                )
            }
            Resolved::NotFound => {
                return simple(
                    out,
                    404,
                    "text/plain",
                    b"404 Not Found\n",
                    conn,
                    &[],
                    head_only,
                )
            }
        };
        let mut last_modified = *b"Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT";
        last_modified[15..].copy_from_slice(&date::format(mtime));
        let not_modified = req
            .header("if-modified-since")
            .and_then(date::parse)
            .is_some_and(|since| mtime <= since);
        if not_modified {
            // A 304 has no body; its Content-Length, if any, must be the
            // length a 200 would have had (RFC 9110 §8.6).
            write_head(out.bytes(), 304, None, Some(size), conn, &[&last_modified]);
            return 304;
        }
        match files::range(req.header("range"), size) {
            Range::Full => {
                write_head(
                    out.bytes(),
                    200,
                    Some(ctype),
                    Some(size),
                    conn,
                    &[&last_modified, b"Accept-Ranges: bytes"],
                );
                if !head_only {
                    out.push_file(file, 0, size);
                }
                200
            }
            Range::Part { start, end } => {
                let mut cr = b"Content-Range: bytes ".to_vec();
                push_u64(&mut cr, start);
                cr.push(b'-');
                push_u64(&mut cr, end);
                cr.push(b'/');
                push_u64(&mut cr, size);
                let len = end - start + 1;
                write_head(
                    out.bytes(),
                    206,
                    Some(ctype),
                    Some(len),
                    conn,
                    &[&last_modified, b"Accept-Ranges: bytes", &cr],
                );
                if !head_only {
                    out.push_file(file, start, len);
                }
                206
            }
            Range::Unsatisfiable => {
                let mut cr = b"Content-Range: bytes */".to_vec();
                push_u64(&mut cr, size);
                simple(
                    out,
                    416,
                    "text/plain",
                    b"416 Range Not Satisfiable\n",
                    conn,
                    &[&cr],
                    head_only,
                )
            }
        }
    }
}

/// Append an error response that closes the connection (the request's
/// framing, or the client's pace, can no longer be trusted). Returns `status`.
pub fn respond_error(out: &mut Outbox, status: u16, detail: &str) -> u16 {
    let mut body = Vec::with_capacity(64);
    push_u64(&mut body, u64::from(status));
    body.push(b' ');
    body.extend_from_slice(super::response::reason(status).as_bytes());
    body.extend_from_slice(b": ");
    body.extend_from_slice(detail.as_bytes());
    body.push(b'\n');
    simple(
        out,
        status,
        "text/plain",
        &body,
        ConnHeader::Close,
        &[],
        false,
    )
}

/// Append a 503 for a client turned away because the server is saturated.
pub fn respond_overloaded(out: &mut Outbox) -> u16 {
    simple(
        out,
        503,
        "text/plain",
        b"503 Service Unavailable: server busy, retry shortly\n",
        ConnHeader::Close,
        &[b"Retry-After: 1"],
        false,
    )
}

fn simple(
    out: &mut Outbox,
    status: u16,
    ctype: &str,
    body: &[u8],
    conn: ConnHeader,
    extra: &[&[u8]],
    head_only: bool,
) -> u16 {
    let buf = out.bytes();
    write_head(
        buf,
        status,
        Some(ctype),
        Some(body.len() as u64),
        conn,
        extra,
    );
    if !head_only {
        buf.extend_from_slice(body);
    }
    status
}

/// The Connection header a response needs: HTTP/1.1 keeps by default, 1.0
/// only when asked (and then the response says so).
fn conn_header(version: Version, keep_alive: bool) -> ConnHeader {
    match (keep_alive, version) {
        (false, _) => ConnHeader::Close,
        (true, Version::Http10) => ConnHeader::KeepAlive,
        (true, Version::Http11) => ConnHeader::None,
    }
}
