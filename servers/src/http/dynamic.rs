//! The handlers beyond static content: uploads, stored files, sessions and
//! CGI. Whatever may block (an fsync, a child process) is returned as a
//! [`Job`]; the variant decides which thread runs it.

use std::net::SocketAddrV4;

use super::app::{protocol, serve_file, simple, App, Finished, Job, Meta, Reply};
use super::files::percent_decode;
use super::parser::{Method, Request};
use super::response::{write_head, ConnHeader, Outbox};
use crate::cgi::{self, CgiRequest};
use crate::session::set_cookie_header;
use crate::uploads::{is_disk_full, Lookup};

const ALLOW_POST: &[u8] = b"Allow: POST";
const ALLOW_FILES: &[u8] = b"Allow: GET, HEAD, DELETE";
const ALLOW_CGI: &[u8] = b"Allow: GET, HEAD, POST";

/// The largest CGI output buffered for one response.
const CGI_MAX_OUTPUT: usize = 16 * 1024 * 1024;

fn method_not_allowed(out: &mut Outbox, conn: ConnHeader, allow: &[u8]) -> Reply {
    Reply::Done(simple(
        out,
        405,
        "text/plain",
        b"405 Method Not Allowed\n",
        conn,
        &[allow],
        false,
    ))
}

fn text(out: &mut Outbox, status: u16, body: &[u8], conn: ConnHeader, head_only: bool) -> Reply {
    Reply::Done(simple(
        out,
        status,
        "text/plain",
        body,
        conn,
        &[],
        head_only,
    ))
}

impl App {
    /// `POST /upload`: the body becomes a file in the data dir (written,
    /// fsynced and renamed into place by a job, since fsync blocks).
    pub(super) fn upload(&self, req: &Request<'_>, conn: ConnHeader, out: &mut Outbox) -> Reply {
        if req.method != Method::Post {
            return method_not_allowed(out, conn, ALLOW_POST);
        }
        let Some(store) = self.uploads.clone() else {
            return text(
                out,
                503,
                b"503 Service Unavailable: uploads are off; start the server with --data-dir DIR\n",
                conn,
                false,
            );
        };
        // The parser has already framed (and de-chunked) the whole body
        // within --max-body-bytes; the job owns a copy of it.
        let body = req.body.to_vec();
        Reply::Deferred(Job::new(move || match store.save(&body) {
            Ok(name) => {
                let location = format!("Location: /files/{name}");
                let text_body = format!("/files/{name}\n");
                Finished::text(
                    201,
                    text_body.as_bytes(),
                    conn,
                    &[location.as_bytes()],
                    false,
                )
            }
            Err(e) if is_disk_full(&e) => Finished::text(
                507,
                b"507 Insufficient Storage: the data dir is full; nothing was stored\n",
                conn,
                &[],
                false,
            ),
            Err(e) => {
                eprintln!("upload: {e}");
                Finished::text(
                    500,
                    b"500 Internal Server Error: the upload could not be stored\n",
                    conn,
                    &[],
                    false,
                )
            }
        }))
    }

    /// `GET`/`HEAD`/`DELETE /files/NAME`: a stored upload.
    pub(super) fn stored_file(
        &self,
        req: &Request<'_>,
        name: &str,
        conn: ConnHeader,
        out: &mut Outbox,
    ) -> Reply {
        let head_only = req.method == Method::Head;
        let not_found = b"404 Not Found\n";
        match req.method {
            Method::Get | Method::Head | Method::Delete => {}
            _ => return method_not_allowed(out, conn, ALLOW_FILES),
        }
        let Some(store) = self.uploads.clone() else {
            return text(out, 404, not_found, conn, head_only);
        };
        if req.method == Method::Delete {
            let name = name.to_owned();
            // Unlinking and syncing the directory block: a job.
            return Reply::Deferred(Job::new(move || match store.delete(&name) {
                Ok(()) => {
                    let mut bytes = Vec::with_capacity(128);
                    write_head(&mut bytes, 204, None, None, conn, &[]);
                    Finished {
                        status: 204,
                        bytes,
                        body_bytes: 0,
                    }
                }
                Err(Lookup::BadName | Lookup::NotFound) => {
                    Finished::text(404, not_found, conn, &[], false)
                }
                Err(Lookup::Io(e)) => {
                    eprintln!("delete /files/{name}: {e}");
                    Finished::text(500, b"500 Internal Server Error\n", conn, &[], false)
                }
            }));
        }
        match store.open_file(name) {
            Ok((file, size, mtime)) => Reply::Done(serve_file(
                req,
                file,
                size,
                mtime,
                "application/octet-stream",
                conn,
                head_only,
                out,
            )),
            Err(Lookup::BadName | Lookup::NotFound) => text(out, 404, not_found, conn, head_only),
            Err(Lookup::Io(e)) => {
                eprintln!("GET /files/{name}: {e}");
                text(out, 500, b"500 Internal Server Error\n", conn, head_only)
            }
        }
    }

    /// `GET /session`: a visit counter keyed by a server-chosen cookie.
    pub(super) fn session(
        &self,
        req: &Request<'_>,
        conn: ConnHeader,
        head_only: bool,
        out: &mut Outbox,
    ) -> u16 {
        let visit = self.sessions.visit(req.header("cookie"));
        let cookie = set_cookie_header(&visit.id);
        let body = visit.to_json();
        simple(
            out,
            200,
            "application/json",
            body.as_bytes(),
            conn,
            &[cookie.as_bytes(), b"Cache-Control: no-store"],
            head_only,
        )
    }

    /// `/cgi-bin/NAME[/PATH_INFO]`: run a script from the CGI directory in
    /// a job (fork, exec, wait).
    pub(super) fn cgi(
        &self,
        req: &Request<'_>,
        meta: &Meta,
        conn: ConnHeader,
        out: &mut Outbox,
    ) -> Reply {
        let head_only = req.method == Method::Head;
        if !matches!(req.method, Method::Get | Method::Head | Method::Post) {
            return method_not_allowed(out, conn, ALLOW_CGI);
        }
        let dir = match &self.cgi {
            Ok(dir) => dir.clone(),
            Err(why) => {
                let body = format!("503 Service Unavailable: CGI is off ({why})\n");
                return text(out, 503, body.as_bytes(), conn, head_only);
            }
        };
        let Some(request) = cgi_request(req, meta.peer, self.local) else {
            return text(out, 404, b"404 Not Found\n", conn, head_only);
        };
        let timeout = self.cgi_timeout;
        Reply::Deferred(Job::new(move || {
            match cgi::run(&dir, &request, timeout, CGI_MAX_OUTPUT) {
                Ok(resp) => {
                    let lines: Vec<Vec<u8>> = resp
                        .headers
                        .iter()
                        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
                        .map(|(n, v)| format!("{n}: {v}").into_bytes())
                        .collect();
                    let extra: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
                    let ctype = resp
                        .headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                        .map(|(_, v)| v.as_str());
                    let mut bytes = Vec::with_capacity(256 + resp.body.len());
                    write_head(
                        &mut bytes,
                        resp.status,
                        ctype,
                        Some(resp.body.len() as u64),
                        conn,
                        &extra,
                    );
                    if !head_only {
                        bytes.extend_from_slice(&resp.body);
                    }
                    Finished {
                        status: resp.status,
                        body_bytes: if head_only { 0 } else { resp.body.len() as u64 },
                        bytes,
                    }
                }
                Err(e) => {
                    let status = e.status();
                    let body = format!("{status} {}: {e}\n", super::response::reason(status));
                    Finished::text(status, body.as_bytes(), conn, &[], head_only)
                }
            }
        }))
    }
}

/// Everything the script needs, owned, or `None` when the path names no
/// script (404).
fn cgi_request(req: &Request<'_>, peer: SocketAddrV4, local: SocketAddrV4) -> Option<CgiRequest> {
    let (name, path_info) = cgi::split_path(req.path)?;
    let script = String::from_utf8(percent_decode(name)?).ok()?;
    let path_info = String::from_utf8(percent_decode(path_info)?).ok()?;
    Some(CgiRequest {
        script,
        path_info,
        method: req.method_str.to_owned(),
        query: req.query.unwrap_or("").to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        body: req.body.to_vec(),
        remote_addr: peer,
        server_addr: local,
        protocol: protocol(req.version),
    })
}
