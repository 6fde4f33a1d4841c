//! The application: routes a parsed request to a response.
//!
//! It sits above the sans-IO [`crate::http`] core and below the connection
//! state machine: the router and handlers (static files, `/stats` and its
//! `/dashboard`, `/sleep`, CGI, uploads, sessions) and the access log live
//! here, and may open files and start processes; `http` never does.
//!
//! Every variant calls the same [`App::respond`], so the bytes on the wire are
//! identical across concurrency models (apart from the Date header).
//!
//! Most responses are produced on the spot. Handlers that must block (a
//! sleep, a CGI script, an fsync) are returned as a [`Job`] instead: the
//! variant decides where it runs — inline on the connection's thread for the
//! blocking models and for `epoll` (whose loop then stalls, the model's
//! honest limit), on a worker pool for `epoll-threads`.

use std::fs::File;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::http::date;
use crate::http::parser::{Header, Method, Request, Version};
use crate::http::response::{push_u64, write_head, ConnHeader, Outbox};
use access_log::{AccessLog, Entry};
use cgi::CgiDir;
use file_cache::{FileCache, Lookup};
use files::{Range, Resolved};
use session::Sessions;
use stats::Stats;
use uploads::Uploads;

pub mod access_log;
pub mod cgi;
pub mod dashboard;
pub mod dynamic;
pub mod file_cache;
pub mod files;
pub mod session;
pub mod stats;
pub mod uploads;

const PLAINTEXT: &[u8] = b"Hello, World!";
const JSON: &[u8] = br#"{"message":"Hello, World!"}"#;
const ALLOW_GET_HEAD: &[u8] = b"Allow: GET, HEAD";
/// The longest `/sleep` honoured; longer requests sleep this long.
pub const MAX_SLEEP: Duration = Duration::from_secs(10);

/// What the application did with a request.
pub enum Reply {
    /// The response (with this status) is queued in the outbox.
    Done(u16),
    /// The response needs blocking work: run the job on a thread that may
    /// block, then queue its bytes where this response belongs.
    Deferred(Job),
}

/// Blocking work producing one complete response. It owns everything it
/// needs (nothing borrowed from the request buffer), so it can move to
/// another thread.
pub struct Job {
    class: JobClass,
    work: Box<dyn FnOnce() -> Finished + Send>,
    /// Told about the response whichever way it came: produced by `work`,
    /// or a 503 because the job was refused (the access log's hook).
    after: Option<AfterHook>,
}

/// See [`Job::then`].
type AfterHook = Box<dyn FnOnce(&Finished) + Send>;

/// What kind of blocking a job does, so a pool can keep kinds apart: a
/// short fsync must not queue behind minutes of sleeping scripts (nginx
/// gives each kind of blocking work its own named `thread_pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobClass {
    /// Waits on something outside the server for as long as it takes: a
    /// `/sleep`, a CGI script.
    Wait = 0,
    /// Short disk work: an upload's fsync and rename, a delete.
    Storage = 1,
}

impl JobClass {
    /// How many classes there are (pools index queues by class).
    pub const COUNT: usize = 2;
}

impl Job {
    /// A job that runs `work` wherever the variant puts blocking work.
    pub fn new(work: impl FnOnce() -> Finished + Send + 'static) -> Job {
        Job::of(JobClass::Wait, work)
    }

    /// Blocking work of `class`.
    pub fn of(class: JobClass, work: impl FnOnce() -> Finished + Send + 'static) -> Job {
        Job {
            class,
            work: Box::new(work),
            after: None,
        }
    }

    /// What kind of blocking the job does.
    pub fn class(&self) -> JobClass {
        self.class
    }

    /// Call `f` with the response once there is one.
    pub fn then(mut self, f: impl FnOnce(&Finished) + Send + 'static) -> Job {
        assert!(self.after.is_none(), "one hook per job");
        self.after = Some(Box::new(f));
        self
    }

    /// Run the work here (the caller is a thread that may block), then the
    /// hook.
    pub fn run(self) -> Finished {
        let done = (self.work)();
        if let Some(after) = self.after {
            after(&done);
        }
        done
    }

    /// The job will not run (its queue is full, or it waited past the
    /// queue deadline): answer 503 instead.
    pub fn refuse(self) -> Finished {
        let mut out = Outbox::new();
        let mark = out.mark();
        let status = respond_overloaded(&mut out);
        let done = Finished {
            outcome: Outcome::Shed,
            ..Finished::new(
                status,
                std::mem::take(out.bytes()),
                out.body_bytes_since(mark),
            )
        };
        if let Some(after) = self.after {
            after(&done);
        }
        done
    }
}

/// A response produced by a [`Job`]: the message as it goes on the wire.
pub struct Finished {
    /// The status code, for the counters and the access log.
    pub status: u16,
    /// The head, and the body unless it is in [`Finished::file`].
    pub bytes: Vec<u8>,
    /// A body too large to keep in memory, sent after `bytes`: an
    /// unlinked temporary file and its length (a CGI script's spilled
    /// output).
    pub file: Option<(OwnedFd, u64)>,
    /// Body length, for the access log.
    pub body_bytes: u64,
    /// What the connection does after it.
    pub outcome: Outcome,
}

/// How a job's response ends for its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served: the connection goes on as the request asked.
    Served,
    /// The job failed; the response says `Connection: close`.
    Failed,
    /// The job never ran (it waited past the queue deadline): a 503 that
    /// closes the connection, counted as shed.
    Shed,
}

impl Finished {
    /// A response served in full from memory.
    pub fn new(status: u16, bytes: Vec<u8>, body_bytes: u64) -> Self {
        Finished {
            status,
            bytes,
            file: None,
            body_bytes,
            outcome: Outcome::Served,
        }
    }

    /// A plain-text response built off the connection's thread.
    pub fn text(
        status: u16,
        body: &[u8],
        conn: ConnHeader,
        extra: &[&[u8]],
        head_only: bool,
    ) -> Self {
        let mut bytes = Vec::with_capacity(160 + body.len());
        write_head(
            &mut bytes,
            status,
            Some("text/plain"),
            Some(body.len() as u64),
            conn,
            extra,
        );
        if !head_only {
            bytes.extend_from_slice(body);
        }
        Finished::new(status, bytes, if head_only { 0 } else { body.len() as u64 })
    }

    /// An error that closes the connection (used when a job itself fails).
    pub fn error(status: u16, detail: &str) -> Self {
        let mut out = Outbox::new();
        respond_error(&mut out, status, detail);
        let bytes = std::mem::take(out.bytes());
        Finished {
            outcome: Outcome::Failed,
            ..Finished::new(status, bytes, 0)
        }
    }
}

/// What the connection knows about a request beyond its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// Whether the connection stays open afterwards (the caller folds in
    /// the client's wish, request caps and shutdown).
    pub keep_alive: bool,
    /// The client's address.
    pub peer: SocketAddrV4,
}

/// Where the optional services live, as configured on the command line.
pub struct Settings {
    /// The document root (`--root`), with one directory per virtual host.
    pub root: std::path::PathBuf,
    /// Where CGI scripts are executed from (`--cgi-dir`).
    pub cgi_dir: std::path::PathBuf,
    /// How long a script may run before it is killed (504).
    pub cgi_timeout: Duration,
    /// How a script's output is held: memory, then a temporary file, capped.
    pub cgi_output: cgi::OutputLimits,
    /// Where uploads are stored (`--data-dir`); `None` turns uploads off.
    pub data_dir: Option<std::path::PathBuf>,
    /// `(file, rotate at bytes, files kept)`.
    pub access_log: Option<(std::path::PathBuf, u64, usize)>,
    /// The listening address (CGI's SERVER_NAME/SERVER_PORT).
    pub local: SocketAddrV4,
    /// Small static files kept in memory (`bytes` 0: off).
    pub file_cache: file_cache::Limits,
}

/// The application one server process serves: the descriptors and state
/// opened once at start-up (document root, CGI directory, upload store,
/// access log, sessions, counters) and shared by every connection, so
/// handling a request opens nothing by path.
pub struct App {
    root: File,
    /// `ROOT/<host>/` directories, by normalised host name.
    vhosts: std::collections::HashMap<String, File>,
    file_cache: Option<FileCache>,
    stats: Arc<Stats>,
    pub(crate) sessions: Sessions,
    /// `Err` holds why CGI is unavailable, for the 503 message.
    pub(crate) cgi: Result<Arc<CgiDir>, String>,
    pub(crate) cgi_timeout: Duration,
    pub(crate) cgi_output: cgi::OutputLimits,
    pub(crate) uploads: Option<Arc<Uploads>>,
    pub(crate) log: Option<Arc<AccessLog>>,
    pub(crate) local: SocketAddrV4,
}

/// Sessions kept before the oldest are forgotten.
const MAX_SESSIONS: usize = 100_000;

impl App {
    /// The document root is opened once and every file lookup is resolved
    /// beneath that descriptor; the data dir and the access log are opened
    /// here too, so a bad path fails at start-up with the flag's name. A
    /// missing CGI directory only disables CGI (with a warning), since its
    /// default lives in the source tree.
    pub fn new(settings: &Settings, stats: Arc<Stats>) -> io::Result<App> {
        let root = &settings.root;
        let dir = File::open(root).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "--root {}: {e} (pass an existing directory)",
                    root.display()
                ),
            )
        })?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--root {} is not a directory", root.display()),
            ));
        }
        let vhosts = files::vhost_dirs(root, dir.as_fd()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("--root {}: listing virtual hosts: {e}", root.display()),
            )
        })?;
        let cgi = CgiDir::open(&settings.cgi_dir).map(Arc::new).map_err(|e| {
            let why = format!("--cgi-dir {}: {e}", settings.cgi_dir.display());
            eprintln!("warning: CGI disabled: {why}");
            why
        });
        let uploads = match &settings.data_dir {
            Some(d) => Some(Arc::new(Uploads::open(d).map_err(|e| {
                io::Error::new(e.kind(), format!("--data-dir {}: {e}", d.display()))
            })?)),
            None => None,
        };
        let log = match &settings.access_log {
            Some((path, max, keep)) => Some(Arc::new(AccessLog::open(path, *max, *keep).map_err(
                |e| io::Error::new(e.kind(), format!("--access-log {}: {e}", path.display())),
            )?)),
            None => None,
        };
        Ok(App {
            vhosts,
            file_cache: FileCache::new(settings.file_cache),
            root: dir,
            stats,
            sessions: Sessions::new(MAX_SESSIONS),
            cgi,
            cgi_timeout: settings.cgi_timeout,
            cgi_output: settings.cgi_output,
            uploads,
            log,
            local: settings.local,
        })
    }

    /// The counters `/stats` reports (in shared memory, so forked workers
    /// count into the same place: see [`Stats`]).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Write the access-log lines buffered so far. Drivers call it when they
    /// are about to wait (an event loop before `epoll_wait`, a blocking
    /// thread once its responses are sent), so lines reach the file
    /// promptly without a writer thread. Nearly free without a log, or
    /// with nothing buffered.
    pub fn flush_log(&self) {
        if let Some(log) = &self.log {
            log.flush();
        }
    }

    /// Flush and close the access log (shutdown). Idempotent.
    pub fn close(&self) {
        if let Some(log) = &self.log {
            if let Err(e) = log.close() {
                eprintln!("access log: {e}");
            }
        }
    }

    /// Answer `req`: queue the response in `out`, or hand back the blocking
    /// work that will produce it. Every answer is access-logged (a deferred
    /// one when its job finishes).
    pub fn respond(&self, req: &Request<'_>, meta: &Meta, out: &mut Outbox) -> Reply {
        let Some(log) = &self.log else {
            return self.route(req, meta, out);
        };
        let mark = out.mark();
        match self.route(req, meta, out) {
            Reply::Done(status) => {
                log.log(&entry(req, meta.peer, status, out.body_bytes_since(mark)));
                Reply::Done(status)
            }
            Reply::Deferred(job) => {
                let log = log.clone();
                let owned = OwnedEntry::new(req, meta.peer);
                Reply::Deferred(job.then(move |done| {
                    log.log(&owned.entry(done.status, done.body_bytes));
                }))
            }
        }
    }

    /// Log a response sent without a parsed request (a malformed one).
    pub fn log_failure(&self, peer: SocketAddrV4, status: u16, body_bytes: u64) {
        if let Some(log) = &self.log {
            log.log(&Entry {
                remote: *peer.ip(),
                unix_time: crate::sys::time::unix_seconds_coarse(),
                method: "-",
                target: "",
                protocol: "",
                status,
                body_bytes,
                referer: None,
                user_agent: None,
            });
        }
    }

    fn route(&self, req: &Request<'_>, meta: &Meta, out: &mut Outbox) -> Reply {
        let conn = conn_header(req.version, meta.keep_alive);
        let head_only = req.method == Method::Head;
        let path = req.path;
        if path == "/upload" {
            return self.upload(req, conn, out);
        }
        if let Some(name) = path.strip_prefix("/files/") {
            return self.stored_file(req, name, conn, out);
        }
        if path == "/cgi-bin" || path.starts_with("/cgi-bin/") {
            return self.cgi(req, meta, conn, out);
        }
        if !matches!(req.method, Method::Get | Method::Head) {
            return Reply::Done(simple(
                out,
                405,
                "text/plain",
                b"405 Method Not Allowed\n",
                conn,
                &[ALLOW_GET_HEAD],
                false,
            ));
        }
        let status = match path {
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
            "/dashboard" => dashboard::respond(out, conn, head_only),
            "/sleep" => return sleep(req, conn, head_only, out),
            "/session" => self.session(req, conn, head_only, out),
            path => self.static_file(req, path, conn, head_only, out),
        };
        Reply::Done(status)
    }

    fn static_file(
        &self,
        req: &Request<'_>,
        path: &str,
        conn: ConnHeader,
        head_only: bool,
        out: &mut Outbox,
    ) -> u16 {
        let vhost = match req.host {
            Some(h) if !self.vhosts.is_empty() => {
                files::vhost_name(h).and_then(|name| self.vhosts.get_key_value(&name))
            }
            _ => None,
        };
        let (host, root) = vhost.map_or(("", &self.root), |(n, f)| (n.as_str(), f));
        let Some(cache) = &self.file_cache else {
            let resolved = files::resolve(root.as_fd(), path);
            return answer_resolved(req, resolved, conn, head_only, out);
        };
        let Some(normal) = files::normalize(path) else {
            return answer_resolved(req, Resolved::BadPath, conn, head_only, out);
        };
        let key = file_cache::Key {
            host: host.to_owned(),
            path: normal,
        };
        let now = crate::sys::time::monotonic_ms_coarse();
        let resolved = match cache.lookup(&key, now) {
            Lookup::Fresh(hit) => return serve_cached(req, &hit, conn, head_only, out),
            Lookup::Check(entry) => {
                let resolved = files::resolve_normal(root.as_fd(), &key.path, path);
                if let Resolved::File {
                    size,
                    mtime,
                    identity,
                    ..
                } = resolved
                {
                    if entry.same_as(size, mtime, identity) {
                        return serve_cached(req, &entry, conn, head_only, out);
                    }
                }
                cache.remove(&key, &entry);
                resolved
            }
            Lookup::Miss => files::resolve_normal(root.as_fd(), &key.path, path),
        };
        if let Resolved::File {
            file,
            size,
            mtime,
            mime,
            identity,
        } = &resolved
        {
            if let Some(entry) = cache.insert(key, file, (*size, *mtime, mime, *identity), now) {
                return serve_cached(req, &entry, conn, head_only, out);
            }
        }
        answer_resolved(req, resolved, conn, head_only, out)
    }
}

/// A file from the cache: the same response as from disk, the body copied
/// after the head.
fn serve_cached(
    req: &Request<'_>,
    hit: &file_cache::Cached,
    conn: ConnHeader,
    head_only: bool,
    out: &mut Outbox,
) -> u16 {
    let body = Source::Memory(&hit.body);
    serve_file(req, body, hit.mtime, hit.mime, conn, head_only, out)
}

/// The response for what a path resolved to.
fn answer_resolved(
    req: &Request<'_>,
    resolved: Resolved,
    conn: ConnHeader,
    head_only: bool,
    out: &mut Outbox,
) -> u16 {
    let (status, text, extra): (u16, &[u8], Vec<u8>) = match resolved {
        Resolved::File {
            file,
            size,
            mtime,
            mime,
            ..
        } => {
            let body = Source::File { file, size };
            return serve_file(req, body, mtime, mime, conn, head_only, out);
        }
        Resolved::Redirect(to) => {
            let mut loc = b"Location: ".to_vec();
            loc.extend_from_slice(to.as_bytes());
            (301, b"301 Moved Permanently\n", loc)
        }
        Resolved::BadPath => (400, b"400 Bad Request: invalid path\n", Vec::new()),
        Resolved::Forbidden => (403, b"403 Forbidden\n", Vec::new()),
        Resolved::NotFound => (404, b"404 Not Found\n", Vec::new()),
        // The connection stays open: it needs no new descriptor to
        // retry, which a new connection would.
        Resolved::Unavailable => (
            503,
            b"503 Service Unavailable: out of descriptors or memory, retry shortly\n",
            b"Retry-After: 1".to_vec(),
        ),
        Resolved::Failed => (500, b"500 Internal Server Error\n", Vec::new()),
    };
    let extra: &[&[u8]] = if extra.is_empty() { &[] } else { &[&extra] };
    simple(out, status, "text/plain", text, conn, extra, head_only)
}

/// Where a static response's body comes from.
pub(crate) enum Source<'a> {
    /// An open file, sent with `sendfile`.
    File {
        /// The file.
        file: File,
        /// Its size.
        size: u64,
    },
    /// A cached copy, appended to the head.
    Memory(&'a [u8]),
}

impl Source<'_> {
    fn size(&self) -> u64 {
        match self {
            Source::File { size, .. } => *size,
            Source::Memory(b) => b.len() as u64,
        }
    }

    /// Queue `len` bytes from `start`.
    fn queue(self, out: &mut Outbox, start: u64, len: u64) {
        match self {
            Source::File { file, .. } => out.push_file(file.into(), start, len),
            Source::Memory(b) => {
                out.bytes()
                    .extend_from_slice(&b[start as usize..(start + len) as usize]);
            }
        }
    }
}

/// Answer with a file (or a range of it) sent by `sendfile`, honouring
/// Range and the conditional headers (see [`preconditions`]).
pub(crate) fn serve_file(
    req: &Request<'_>,
    body: Source<'_>,
    mtime: i64,
    ctype: &str,
    conn: ConnHeader,
    head_only: bool,
    out: &mut Outbox,
) -> u16 {
    let size = body.size();
    let mut last_modified = *b"Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT";
    last_modified[15..].copy_from_slice(&date::format(mtime));
    let now = crate::sys::time::unix_seconds_coarse();
    let honour_range = match preconditions(req.method, req.headers(), mtime, now) {
        Verdict::Failed => {
            return simple(
                out,
                412,
                "text/plain",
                b"412 Precondition Failed\n",
                conn,
                &[],
                head_only,
            );
        }
        Verdict::NotModified => {
            // A 304 has no body; its Content-Length, if any, must be the
            // length a 200 would have had (RFC 9110 §8.6). Last-Modified is
            // the validator a cache updates from (§15.4.5; we send no ETag).
            write_head(out.bytes(), 304, None, Some(size), conn, &[&last_modified]);
            return 304;
        }
        Verdict::Proceed { honour_range } => honour_range,
    };
    let range = if honour_range {
        files::range(req.header("range"), size)
    } else {
        Range::Full
    };
    match range {
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
                body.queue(out, 0, size);
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
                body.queue(out, start, len);
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

/// What the conditional headers decide for a file (see [`preconditions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// 412 Precondition Failed.
    Failed,
    /// 304 Not Modified.
    NotModified,
    /// Serve the file. `honour_range` is false when an If-Range condition is
    /// false: any Range header is then ignored and the whole file sent (200).
    Proceed { honour_range: bool },
}

/// One conditional header as the request carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Field<'b> {
    #[default]
    Absent,
    One(&'b [u8]),
    /// Several lines: one list combining them (RFC 9110 §5.3), which is
    /// never a valid HTTP-date, a valid If-Range, nor `*`.
    Many,
}

impl<'b> Field<'b> {
    fn add(&mut self, value: &'b [u8]) {
        *self = match self {
            Field::Absent => Field::One(value),
            _ => Field::Many,
        };
    }

    fn present(self) -> bool {
        self != Field::Absent
    }

    fn is_star(self) -> bool {
        self == Field::One(b"*")
    }

    /// The date, when the field is one valid HTTP-date (anything else is
    /// ignored: RFC 9110 §13.1.3, §13.1.4).
    fn date(self) -> Option<i64> {
        match self {
            Field::One(v) => date::parse(v),
            _ => None,
        }
    }
}

/// The conditional headers of a request, gathered in one pass.
#[derive(Default)]
struct Conditions<'b> {
    if_match: Field<'b>,
    if_none_match: Field<'b>,
    if_modified_since: Field<'b>,
    if_unmodified_since: Field<'b>,
    if_range: Field<'b>,
}

impl<'b> Conditions<'b> {
    fn of(headers: &[Header<'b>]) -> Self {
        let mut c = Conditions::default();
        for h in headers {
            let n = h.name;
            if n.len() < 8 || !n.as_bytes()[..3].eq_ignore_ascii_case(b"if-") {
                continue;
            }
            let slot = match &n[3..] {
                x if x.eq_ignore_ascii_case("match") => &mut c.if_match,
                x if x.eq_ignore_ascii_case("none-match") => &mut c.if_none_match,
                x if x.eq_ignore_ascii_case("modified-since") => &mut c.if_modified_since,
                x if x.eq_ignore_ascii_case("unmodified-since") => &mut c.if_unmodified_since,
                x if x.eq_ignore_ascii_case("range") => &mut c.if_range,
                _ => continue,
            };
            slot.add(h.value);
        }
        c
    }
}

/// Evaluate the conditional headers of a request for a file last modified
/// at `mtime` (Unix seconds; `now` on the same clock), in the order of RFC
/// 9110 §13.2.2. Only files reach here (an existing representation: a
/// missing one is a 404 before any precondition). We send no ETag, so no
/// entity tag ever matches; Last-Modified is the only validator.
///
/// 1. If-Match (§13.1.1): `*` matches (the file exists); anything else is
///    a list of entity tags, none of which can be ours: 412.
/// 2. If-Unmodified-Since (§13.1.4), only without If-Match: 412 when the
///    file changed after the date.
/// 3. If-None-Match (§13.1.2): `*` matches, so 304 for GET/HEAD (412
///    otherwise); entity tags never match, so the request proceeds.
/// 4. If-Modified-Since (§13.1.3), only for GET/HEAD and only without
///    If-None-Match: 304 when the file has not changed since the date.
/// 5. If-Range (§13.1.5): when false, Range is ignored (a 200 with the
///    whole file), so a resumed download never splices two versions.
///
/// An invalid or repeated date is ignored (§13.1.3, §13.1.4). Where the
/// RFC leaves a choice we do what nginx 1.22 does: preconditions are
/// settled before Range (its not_modified filter runs before the range
/// filter), so 412 and 304 win over 206 and 416; HEAD is evaluated like
/// GET, Range included. Where nginx departs from a MUST we follow the RFC:
/// nginx checks If-Unmodified-Since even beside If-Match and answers 412 to
/// an unparsable one, and its default `if_modified_since exact` wants an
/// equal date where §13.1.3 accepts any date not before the file's (nginx's
/// `if_modified_since before`).
fn preconditions(method: Method, headers: &[Header<'_>], mtime: i64, now: i64) -> Verdict {
    let c = Conditions::of(headers);
    let get_or_head = matches!(method, Method::Get | Method::Head);
    if c.if_match.present() {
        if !c.if_match.is_star() {
            return Verdict::Failed;
        }
    } else if c.if_unmodified_since.date().is_some_and(|d| mtime > d) {
        return Verdict::Failed;
    }
    if c.if_none_match.present() {
        if c.if_none_match.is_star() {
            return if get_or_head {
                Verdict::NotModified
            } else {
                Verdict::Failed
            };
        }
    } else if get_or_head && c.if_modified_since.date().is_some_and(|d| mtime <= d) {
        return Verdict::NotModified;
    }
    let honour_range = match c.if_range {
        Field::Absent => true,
        Field::One(v) => if_range_matches(v, mtime, now),
        Field::Many => false,
    };
    Verdict::Proceed { honour_range }
}

/// Whether an If-Range value matches the file (RFC 9110 §13.1.5).
///
/// An entity tag (a DQUOTE among the first three characters: `"x"` or
/// `W/"x"`) never matches, as we send none. A date matches only when it
/// equals Last-Modified exactly (nginx compares for equality too; an older
/// date means the client holds an older file) and is a strong validator
/// (§8.8.2.2): a file modified during the current second may change again
/// within that second under the same Last-Modified, so until that second
/// is over its date is weak and the whole file is sent. nginx skips that
/// check; it can only turn a 206 into a 200, never the reverse.
fn if_range_matches(value: &[u8], mtime: i64, now: i64) -> bool {
    if value.iter().take(3).any(|&b| b == b'"') {
        return false;
    }
    date::parse(value) == Some(mtime) && mtime < now
}

/// Append an error response that closes the connection (the request's
/// framing, or the client's pace, can no longer be trusted). Returns `status`.
pub fn respond_error(out: &mut Outbox, status: u16, detail: &str) -> u16 {
    let mut body = Vec::with_capacity(64);
    push_u64(&mut body, u64::from(status));
    body.push(b' ');
    body.extend_from_slice(crate::http::response::reason(status).as_bytes());
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

pub(crate) fn simple(
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

/// The access-log line for `req`.
fn entry<'r>(req: &'r Request<'_>, peer: SocketAddrV4, status: u16, body_bytes: u64) -> Entry<'r> {
    Entry {
        remote: *peer.ip(),
        unix_time: crate::sys::time::unix_seconds_coarse(),
        method: req.method_str,
        target: req.target,
        protocol: protocol(req.version),
        status,
        body_bytes,
        referer: req.header("referer"),
        user_agent: req.header("user-agent"),
    }
}

pub(crate) fn protocol(v: Version) -> &'static str {
    match v {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    }
}

/// What the access log needs from a request whose response comes later.
pub(crate) struct OwnedEntry {
    peer: SocketAddrV4,
    method: String,
    target: String,
    protocol: &'static str,
    referer: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
}

impl OwnedEntry {
    pub(crate) fn new(req: &Request<'_>, peer: SocketAddrV4) -> Self {
        OwnedEntry {
            peer,
            method: req.method_str.to_owned(),
            target: req.target.to_owned(),
            protocol: protocol(req.version),
            referer: req.header("referer").map(<[u8]>::to_vec),
            user_agent: req.header("user-agent").map(<[u8]>::to_vec),
        }
    }

    pub(crate) fn entry(&self, status: u16, body_bytes: u64) -> Entry<'_> {
        Entry {
            remote: *self.peer.ip(),
            unix_time: crate::sys::time::unix_seconds_coarse(),
            method: &self.method,
            target: &self.target,
            protocol: self.protocol,
            status,
            body_bytes,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
        }
    }
}

/// `GET /sleep?ms=N`: the blocking-work demo. The sleep itself is a job.
fn sleep(req: &Request<'_>, conn: ConnHeader, head_only: bool, out: &mut Outbox) -> Reply {
    let Some(ms) = req
        .query
        .and_then(|q| query_param(q, "ms"))
        .and_then(parse_ms)
    else {
        return Reply::Done(simple(
            out,
            400,
            "text/plain",
            b"400 Bad Request: use /sleep?ms=N with N a whole number of milliseconds\n",
            conn,
            &[],
            head_only,
        ));
    };
    let d = Duration::from_millis(ms).min(MAX_SLEEP);
    Reply::Deferred(Job::new(move || {
        std::thread::sleep(d);
        let body = format!("slept {} ms\n", d.as_millis());
        Finished::text(200, body.as_bytes(), conn, &[], head_only)
    }))
}

/// The first value of `key` in a query string (not percent-decoded).
pub fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

/// Digits only (no sign, no spaces), at most 12 of them.
fn parse_ms(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The Connection header a response needs: HTTP/1.1 keeps by default, 1.0
/// only when asked (and then the response says so).
pub(crate) fn conn_header(version: Version, keep_alive: bool) -> ConnHeader {
    match (keep_alive, version) {
        (false, _) => ConnHeader::Close,
        (true, Version::Http10) => ConnHeader::KeepAlive,
        (true, Version::Http11) => ConnHeader::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2020-01-01T00:00:00Z, and its IMF-fixdate.
    const MTIME: i64 = 1_577_836_800;
    const LM: &str = "Wed, 01 Jan 2020 00:00:00 GMT";
    const BEFORE: &str = "Tue, 31 Dec 2019 23:59:59 GMT";
    const AFTER: &str = "Wed, 01 Jan 2020 00:00:01 GMT";
    const NOW: i64 = MTIME + 3600;

    fn verdict(method: Method, hs: &[(&'static str, &'static str)]) -> Verdict {
        let headers: Vec<Header<'static>> = hs
            .iter()
            .map(|&(name, v)| Header {
                name,
                value: v.as_bytes(),
            })
            .collect();
        preconditions(method, &headers, MTIME, NOW)
    }

    const GO: Verdict = Verdict::Proceed { honour_range: true };
    const WHOLE: Verdict = Verdict::Proceed {
        honour_range: false,
    };

    /// A method, its headers, and the verdict they must get.
    type Case = (Method, &'static [(&'static str, &'static str)], Verdict);

    #[test]
    fn precondition_table() {
        use Method::{Get, Head, Post};
        use Verdict::{Failed, NotModified};
        let cases: &[Case] = &[
            (Get, &[], GO),
            (Get, &[("If-Match", "*")], GO),
            (Get, &[("If-Match", "\"x\"")], Failed),
            (Get, &[("If-Match", "\"x\", *")], Failed),
            (Get, &[("if-match", "*"), ("If-Match", "*")], Failed),
            (Get, &[("If-Unmodified-Since", BEFORE)], Failed),
            (Get, &[("If-Unmodified-Since", LM)], GO),
            (Get, &[("If-Unmodified-Since", AFTER)], GO),
            (Get, &[("If-Unmodified-Since", "yesterday")], GO),
            // If-Match present: If-Unmodified-Since ignored.
            (
                Get,
                &[("If-Match", "*"), ("If-Unmodified-Since", BEFORE)],
                GO,
            ),
            (Get, &[("If-None-Match", "*")], NotModified),
            (Head, &[("If-None-Match", "*")], NotModified),
            (Post, &[("If-None-Match", "*")], Failed),
            (Get, &[("If-None-Match", "\"x\"")], GO),
            // If-None-Match present: If-Modified-Since ignored.
            (
                Get,
                &[("If-None-Match", "\"x\""), ("If-Modified-Since", LM)],
                GO,
            ),
            (Get, &[("If-Modified-Since", LM)], NotModified),
            (Head, &[("If-Modified-Since", AFTER)], NotModified),
            (Get, &[("If-Modified-Since", BEFORE)], GO),
            (Get, &[("If-Modified-Since", "not a date")], GO),
            (
                Get,
                &[("If-Modified-Since", LM), ("If-Modified-Since", LM)],
                GO,
            ),
            (Post, &[("If-Modified-Since", LM)], GO),
            // Order: 412 before 304.
            (
                Get,
                &[("If-Modified-Since", LM), ("If-Match", "\"x\"")],
                Failed,
            ),
            (
                Get,
                &[("If-None-Match", "*"), ("If-Unmodified-Since", BEFORE)],
                Failed,
            ),
            (Get, &[("If-Range", LM)], GO),
            (Get, &[("If-Range", BEFORE)], WHOLE),
            (Get, &[("If-Range", AFTER)], WHOLE),
            (Get, &[("If-Range", "\"x\"")], WHOLE),
            (Get, &[("If-Range", "W/\"x\"")], WHOLE),
            (Get, &[("If-Range", "garbage")], WHOLE),
            (Get, &[("If-Range", LM), ("If-Range", LM)], WHOLE),
            (Head, &[("If-Range", BEFORE)], WHOLE),
        ];
        for (method, hs, want) in cases {
            assert_eq!(verdict(*method, hs), *want, "{method:?} {hs:?}");
        }
    }

    #[test]
    fn if_range_date_must_be_strong() {
        let lm = date::format(MTIME);
        assert!(if_range_matches(&lm, MTIME, MTIME + 1));
        // Modified during the current second: weak, so no match.
        assert!(!if_range_matches(&lm, MTIME, MTIME));
    }
}
