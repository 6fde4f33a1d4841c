//! The handlers beyond static content: uploads, stored files, sessions and
//! CGI. Whatever may block (an fsync, a child process) is returned as a
//! [`Job`]; the variant decides which thread runs it.

use std::net::SocketAddrV4;

use super::cgi::{self, CgiRequest, CgiResponse};
use super::files::percent_decode;
use super::session::set_cookie_header;
use super::uploads::{is_disk_full, Lookup, Upload, Uploads};
use super::{
    conn_header, protocol, serve_file, simple, App, Finished, Job, JobClass, Meta, OwnedEntry,
    Reply, Source,
};
use crate::http::parser::{Method, Request};
use crate::http::response::{write_head, ConnHeader, Outbox};

const ALLOW_POST: &[u8] = b"Allow: POST";
const ALLOW_FILES: &[u8] = b"Allow: GET, HEAD, DELETE";
const ALLOW_CGI: &[u8] = b"Allow: GET, HEAD, POST";

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

/// A request body being written to the data dir as it arrives, so an
/// upload costs a socket buffer of memory, not its size.
pub struct UploadStream {
    upload: Upload<'static>,
    conn: ConnHeader,
    /// The first write error; later body bytes are read and discarded so
    /// the response still follows the whole request.
    error: Option<std::io::Error>,
    log: Option<(std::sync::Arc<super::access_log::AccessLog>, OwnedEntry)>,
}

impl UploadStream {
    /// Append body bytes to the temporary file.
    pub fn write(&mut self, data: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.upload.write(data) {
                self.error = Some(e);
            }
        }
    }

    /// The body is complete: the job makes it durable (fsync, rename,
    /// directory fsync) and answers 201, or 507/500 after a write error.
    /// Dropping the stream instead (the client left) removes the file.
    pub fn finish(self) -> Job {
        let UploadStream {
            upload,
            conn,
            error,
            log,
        } = self;
        let job = Job::of(JobClass::Storage, move || match error {
            None => stored(upload.commit(), conn),
            Some(e) => {
                drop(upload);
                stored(Err(e), conn)
            }
        });
        match log {
            Some((log, owned)) => job.then(move |done| {
                log.log(&owned.entry(done.status, done.body_bytes));
            }),
            None => job,
        }
    }
}

/// The response to a store attempt.
fn stored(result: std::io::Result<String>, conn: ConnHeader) -> Finished {
    match result {
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
    }
}

impl App {
    /// For a `POST /upload` whose head has arrived (and body not yet): a
    /// stream to write the body into. `None` for any other request, or when
    /// uploads are off or no temporary file can be created: the request is
    /// then framed whole and answered the ordinary way.
    pub fn stream_upload(&self, req: &Request<'_>, meta: &Meta) -> Option<UploadStream> {
        if req.method != Method::Post || req.path != "/upload" {
            return None;
        }
        let store: &std::sync::Arc<Uploads> = self.uploads.as_ref()?;
        let upload = store.begin_shared().ok()?;
        Some(UploadStream {
            upload,
            conn: conn_header(req.version, meta.keep_alive),
            error: None,
            log: self
                .log
                .as_ref()
                .map(|l| (l.clone(), OwnedEntry::new(req, meta.peer))),
        })
    }

    /// `POST /upload`: the body becomes a file in the data dir (written,
    /// fsynced and renamed into place by a job, since fsync blocks).
    pub(crate) fn upload(&self, req: &Request<'_>, conn: ConnHeader, out: &mut Outbox) -> Reply {
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
        // Reached for a body framed whole: one that arrived with its head
        // (connections stream the rest, see `stream_upload`), or an empty
        // one. The job owns a copy of it.
        let body = req.body.to_vec();
        Reply::Deferred(Job::of(JobClass::Storage, move || {
            stored(store.save(&body), conn)
        }))
    }

    /// `GET`/`HEAD`/`DELETE /files/NAME`: a stored upload.
    pub(crate) fn stored_file(
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
            return Reply::Deferred(Job::of(JobClass::Storage, move || {
                match store.delete(&name) {
                    Ok(()) => {
                        let mut bytes = Vec::with_capacity(128);
                        write_head(&mut bytes, 204, None, None, conn, &[]);
                        Finished::new(204, bytes, 0)
                    }
                    Err(Lookup::BadName | Lookup::NotFound) => {
                        Finished::text(404, not_found, conn, &[], false)
                    }
                    Err(Lookup::Io(e)) => {
                        eprintln!("delete /files/{name}: {e}");
                        Finished::text(500, b"500 Internal Server Error\n", conn, &[], false)
                    }
                }
            }));
        }
        match store.open_file(name) {
            Ok((file, size, mtime)) => Reply::Done(serve_file(
                req,
                Source::File { file, size },
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
    pub(crate) fn session(
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
    pub(crate) fn cgi(
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
        let (timeout, limits) = (self.cgi_timeout, self.cgi_output);
        Reply::Deferred(Job::new(move || {
            match cgi::run(&dir, &request, timeout, limits) {
                Ok(resp) => cgi_finished(resp, conn, head_only),
                Err(e) => {
                    let status = e.status();
                    let body = format!("{status} {}: {e}\n", crate::http::response::reason(status));
                    Finished::text(status, body.as_bytes(), conn, &[], head_only)
                }
            }
        }))
    }
}

/// A script's response as it goes on the wire: Content-Type first, a
/// Content-Length the server computed, the body from memory or from the
/// spilled file.
fn cgi_finished(resp: CgiResponse, conn: ConnHeader, head_only: bool) -> Finished {
    let lines: Vec<Vec<u8>> = resp
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
        .map(|(n, v)| format!("{n}: {v}").into_bytes())
        .collect();
    let extra: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let len = resp.body.len();
    let mut bytes = Vec::with_capacity(256);
    // 204 and 304 end at their head (RFC 9110 §6.4.1): a body the script
    // wrote would be read as the next response, and a 204 carries no
    // Content-Length either (§8.6). What it wrote is dropped.
    let bodyless = matches!(resp.status, 204 | 304);
    let framed = (!bodyless).then_some(len);
    write_head(
        &mut bytes,
        resp.status,
        resp.content_type(),
        framed,
        conn,
        &extra,
    );
    if head_only || bodyless {
        return Finished::new(resp.status, bytes, 0);
    }
    match resp.body {
        cgi::Body::Memory(body) => {
            bytes.extend_from_slice(&body);
            Finished::new(resp.status, bytes, len)
        }
        cgi::Body::File { file, len } => Finished {
            file: Some((file.into(), len)),
            ..Finished::new(resp.status, bytes, len)
        },
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
