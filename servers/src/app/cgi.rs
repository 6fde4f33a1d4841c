//! CGI/1.1 (RFC 3875): run one script from the CGI directory for one request.
//!
//! [`run`] is self-contained and blocking: it forks, feeds the request body
//! to the script's stdin while reading its stdout (one `poll` loop, so a
//! script that writes a lot before reading cannot deadlock against us),
//! enforces a deadline and an output cap, reaps the child, and parses the
//! script's header block into a [`CgiResponse`]. Which thread it blocks is
//! the caller's choice (a worker pool, in the event-loop variants).
//!
//! # Output
//!
//! The output is kept in memory up to [`OutputLimits::memory`]; a body
//! that grows past it goes to an unlinked temporary file (`O_TMPFILE` in
//! `$TMPDIR`, else `/tmp`) and is sent from there, so a client that reads
//! slowly (or not at all) holds a file, not the script's output in memory
//! — nginx does the same with `fastcgi_buffers` and `fastcgi_temp_path`.
//! The header section must fit in memory (nginx: "upstream sent too big
//! header", 502). Past [`OutputLimits::max`] in all the script is killed
//! and answered 502.
//!
//! # Confinement
//!
//! The script name must be one path segment of `[A-Za-z0-9._-]`, not
//! starting with `.` or `-` (so no `.`, `..`, hidden files, or an `argv[0]`
//! a shell would take for a login flag). It is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to the CGI
//! directory's descriptor, so a symlink leading outside fails during lookup,
//! checked (`fstat`) to be a regular file with an execute bit, and that very
//! descriptor is executed with `execveat(fd, "", .., AT_EMPTY_PATH)`: there
//! is no window in which a rename could swap what was checked for something
//! else. For a `#!` script the kernel passes `/dev/fd/3` to the interpreter,
//! so the child moves the descriptor to 3 without close-on-exec (it is
//! opened close-on-exec in the parent, where other threads fork too). The
//! script thus runs with fd 3 open on itself (`O_PATH`, harmless).
//!
//! # The child between fork and exec
//!
//! The server is multi-threaded, so the child may only make
//! async-signal-safe calls: argv, envp and every pointer are built before
//! the fork, and the child runs [`sys::process`]'s bare-syscall wrappers
//! only. In order it: changes into the CGI directory (RFC 3875 §7.2: the
//! script's directory), moves its descriptors above 10 and then onto 0
//! (body), 1 (output) and 3 (the script), keeps the server's stderr as its
//! stderr (so script diagnostics land in the server's log, as with Apache;
//! `/dev/null` if the server has none), starts its own process group (so a
//! timeout kills the script *and* whatever it started), resets every signal
//! disposition to default (ignored signals would survive exec: the server
//! ignores SIGPIPE), marks every other descriptor close-on-exec, clears its
//! signal mask (the server blocks SIGINT/SIGTERM in all threads for its
//! sigwait thread, and the fork happens with all signals blocked, see
//! below), and execs. If any step fails it writes `(step, errno)` to a
//! close-on-exec "report" pipe and `_exit(127)`s; after a successful exec
//! the pipe just closes empty, so the parent can tell "exec failed" (502)
//! from a script that exited 127 on its own.
//!
//! # Signals in the parent
//!
//! The calling thread blocks *all* signals across the fork, so no handler
//! of the server (such as the shutdown kick on SIGUSR1) can run in the child
//! before its dispositions are reset. Right after the fork the thread's mask
//! is restored, except that SIGPIPE stays blocked until `run` returns:
//! writing the body to a script that exited or closed stdin fails with
//! EPIPE *and* raises SIGPIPE, which kills the process unless it is ignored.
//! The servers ignore it, but a library must not rely on that; with it
//! blocked, the signal stays pending on this thread and is consumed with a
//! zero-timeout `sigtimedwait` right after the EPIPE. (Pipes have no
//! `MSG_NOSIGNAL`.)
//!
//! # Reaping
//!
//! The child is held by [`sys::process::Child`], whose drop SIGKILLs the
//! process group and `waitpid`s the exact pid: timeout, oversized output or
//! any early return cannot leave a zombie. The exit is awaited through a
//! pidfd in the same `poll` as the pipes. When the script exits, what it
//! wrote is drained from the pipe and the response is complete, even if a
//! background process it started still holds stdout open; the group is then
//! SIGKILLed (before the reap, while the pid cannot yet be reused) so no
//! stray process outlives the request. A script that closes stdout but keeps
//! running is waited for until the deadline, then killed: 504.
//!
//! The caller must not reap children with `waitpid(-1)` or set SIGCHLD to
//! `SIG_IGN`: either would reap this module's children behind its back.
//!
//! # Environment
//!
//! Only the meta-variables below, never the server's environment:
//! `GATEWAY_INTERFACE=CGI/1.1`, `SERVER_SOFTWARE`, `SERVER_NAME` (the Host
//! header's name when it is a plausible host name or bracketed IPv6
//! literal, else the server address's IP), `SERVER_PORT` (the local port),
//! `SERVER_PROTOCOL`, `REQUEST_METHOD`, `SCRIPT_NAME=/cgi-bin/NAME`,
//! `PATH_INFO` (only when non-empty), `QUERY_STRING` (always, maybe empty),
//! `REMOTE_ADDR`, `REMOTE_PORT`, `CONTENT_LENGTH` (the body's length, when
//! the request has a body: non-empty, or framed by Content-Length or
//! Transfer-Encoding), `CONTENT_TYPE` (when sent),
//! `PATH=/usr/local/bin:/usr/bin:/bin`, and `HTTP_*` for request headers:
//! name upper-cased with `-` → `_`; repeated headers joined with `, `
//! (Cookie with `; `). Skipped: names other than `[A-Za-z0-9-]+` (an
//! underscore would let `X_Foo` impersonate `X-Foo`), values with control
//! bytes, Content-Length and Content-Type (own variables), Proxy (httpoxy:
//! it would become `HTTP_PROXY`), Authorization and Proxy-Authorization
//! (RFC 3875 §4.1.18), and hop-by-hop headers (Connection, Keep-Alive, TE,
//! Trailer, Transfer-Encoding, Upgrade, Proxy-Connection). A variable whose
//! value cannot be represented (a NUL byte) is omitted.
//! `PATH_TRANSLATED`, `AUTH_TYPE`, `REMOTE_USER`, `REMOTE_IDENT` and
//! `REMOTE_HOST` are not set (no document-root mapping, no authentication,
//! no reverse DNS).

use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::sys;
use crate::sys::process::{self, CStrArray, Child, FdSlot, Fork, PollFd, SigSet, WaitStatus};

/// `SERVER_SOFTWARE`.
pub const SERVER_SOFTWARE: &str = concat!("servers/", env!("CARGO_PKG_VERSION"));

/// `PATH` given to scripts.
pub const SCRIPT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Most header lines accepted from a script.
const MAX_SCRIPT_HEADERS: usize = 100;

/// Where the script's own descriptor is placed in the child: the first
/// number after stdin/stdout/stderr; a `#!` interpreter opens `/dev/fd/3`.
const SCRIPT_FD: FdSlot = FdSlot::new(3);

/// The directory scripts are executed from, opened once; every lookup is
/// resolved beneath this descriptor, never by path.
#[derive(Debug)]
pub struct CgiDir {
    dir: File,
}

impl CgiDir {
    /// Open `path`, which must be a directory.
    pub fn open(path: &Path) -> io::Result<CgiDir> {
        let dir = File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--cgi-dir {} is not a directory", path.display()),
            ));
        }
        // What a script leaves behind outside its process group (a
        // `setsid` daemon) is reparented to the server, which ends it.
        if let Err(e) = process::become_child_subreaper() {
            eprintln!("warning: CGI: cannot become a child subreaper ({e}): a script's setsid descendants may outlive it");
        }
        Ok(CgiDir { dir })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

/// What a script is run for.
#[derive(Clone, Debug)]
pub struct CgiRequest {
    /// NAME, the path segment after `/cgi-bin/`, **percent-decoded by the
    /// caller** (as [`split_path`] returns it from the raw path, then
    /// decoded). Whatever arrives is validated here: one segment of
    /// `[A-Za-z0-9._-]` not starting with `.` or `-`, else [`CgiError::NotFound`].
    pub script: String,
    /// The rest of the path after NAME (`""` or `/a/b`), percent-decoded by
    /// the caller (RFC 3875 §4.1.5: PATH_INFO is decoded).
    pub path_info: String,
    /// The method token as sent (`REQUEST_METHOD`).
    pub method: String,
    /// The raw query string, without `?`, still encoded (`QUERY_STRING`).
    pub query: String,
    /// Request headers as received, in order (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded request body, written to the script's stdin.
    pub body: Vec<u8>,
    /// The client (`REMOTE_ADDR`, `REMOTE_PORT`).
    pub remote_addr: SocketAddrV4,
    /// The local address the request arrived on: `SERVER_PORT`, and
    /// `SERVER_NAME` when the request has no usable Host header.
    pub server_addr: SocketAddrV4,
    /// `"HTTP/1.1"` or `"HTTP/1.0"` (`SERVER_PROTOCOL`).
    pub protocol: &'static str,
}

/// How much of a script's output is kept in memory, and how much it may
/// write at all.
#[derive(Clone, Copy, Debug)]
pub struct OutputLimits {
    /// Output held in memory (`--cgi-buffer-bytes`); a body past it is
    /// spilled to a temporary file. The header section must fit.
    pub memory: usize,
    /// All output, headers and body (`--cgi-max-output-bytes`); past it the
    /// script is killed and answered 502.
    pub max: u64,
}

/// A script's response body.
#[derive(Debug)]
pub enum Body {
    /// Small enough to keep in memory.
    Memory(Vec<u8>),
    /// Spilled: an unlinked temporary file holding `len` bytes from offset 0.
    File {
        /// The file (no name on disk; it goes when the last descriptor does).
        file: File,
        /// Body length.
        len: u64,
    },
}

impl Body {
    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole body in memory, reading a spilled file back.
    pub fn into_vec(self) -> io::Result<Vec<u8>> {
        match self {
            Body::Memory(b) => Ok(b),
            Body::File { file, len } => {
                let mut out = vec![0; len as usize];
                std::os::unix::fs::FileExt::read_exact_at(&file, &mut out, 0)?;
                Ok(out)
            }
        }
    }
}

/// What the script answered.
#[derive(Debug)]
pub struct CgiResponse {
    /// From `Status:`; 302 for a `Location:` without one; else 200.
    pub status: u16,
    /// Content-Type first (when given), then Location (when given), then
    /// the script's other headers in order. Never Status, Content-Length,
    /// Date or hop-by-hop headers: the server writes framing itself.
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line.
    pub body: Body,
}

impl CgiResponse {
    /// The script's Content-Type, if it sent one.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no script response could be produced. Each maps to one status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgiError {
    /// No such script, or a name that is not a valid script name (404).
    NotFound,
    /// Not a regular file with an execute bit, or a symlink leading out of
    /// the CGI directory (403).
    Forbidden,
    /// The script could not be started: fork, pipes, or exec failed (e.g.
    /// its `#!` interpreter does not exist) (502).
    StartFailed(String),
    /// The script's output is not a valid CGI response (502).
    BadOutput(String),
    /// The script ran past the deadline and was killed (504).
    Timeout,
    /// The script wrote more than the output cap and was killed (502).
    TooLarge,
    /// Its output could not be stored: no temporary file (500).
    Storage(String),
}

impl CgiError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            CgiError::NotFound => 404,
            CgiError::Forbidden => 403,
            CgiError::StartFailed(_) | CgiError::BadOutput(_) | CgiError::TooLarge => 502,
            CgiError::Timeout => 504,
            CgiError::Storage(_) => 500,
        }
    }

    /// One line for an error body; [`fmt::Display`] adds the detail, for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            CgiError::NotFound => "no such CGI script",
            CgiError::Forbidden => "CGI script not executable",
            CgiError::StartFailed(_) => "CGI script failed to start",
            CgiError::BadOutput(_) => "CGI script sent an invalid response",
            CgiError::Timeout => "CGI script timed out",
            CgiError::TooLarge => "CGI script output too large",
            CgiError::Storage(_) => "could not store CGI script output",
        }
    }
}

impl fmt::Display for CgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgiError::StartFailed(d) | CgiError::BadOutput(d) | CgiError::Storage(d) => {
                write!(f, "{}: {d}", self.reason())
            }
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for CgiError {}

/// Split a request path (without the query, still percent-encoded) of the
/// form `/cgi-bin/NAME/extra` into `("NAME", "/extra")`; `None` when the
/// path is not under `/cgi-bin/` or NAME is empty. Splitting before
/// decoding keeps an encoded `%2F` inside NAME, where validation refuses it.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/cgi-bin/")?;
    let (name, info) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if name.is_empty() {
        None
    } else {
        Some((name, info))
    }
}

/// Run the script `req.script` from `dir` for `req`, to completion, on the
/// calling thread (blocking). The script gets `timeout` from the call to
/// exit; `limits` bound its stdout (headers and body together).
pub fn run(
    dir: &CgiDir,
    req: &CgiRequest,
    timeout: Duration,
    limits: OutputLimits,
) -> Result<CgiResponse, CgiError> {
    let deadline = Instant::now().checked_add(timeout);
    let name = script_name(&req.script).ok_or(CgiError::NotFound)?;
    let script = open_script(dir, &name)?;
    let argv = CStrArray::new(vec![name.clone()]);
    let envp = CStrArray::new(environment(req));
    let mut script = script;
    let mut busy_retries = EXEC_BUSY_RETRIES;
    let (output, status) = loop {
        match execute(dir, script, &argv, &envp, &req.body, deadline, limits) {
            Err(Exec::Busy) if busy_retries > 0 => {
                // ETXTBSY: some process still holds the file open for
                // writing — typically a child forked by another thread
                // while the script was being written, for the instant
                // before its own exec closes the descriptor. Transient:
                // try again shortly, as Go's os/exec does.
                busy_retries -= 1;
                std::thread::sleep(Duration::from_millis(5));
                script = open_script(dir, &name)?;
            }
            Err(Exec::Busy) => {
                return Err(CgiError::StartFailed(
                    "exec: text file busy (the script is open for writing)".into(),
                ))
            }
            Err(Exec::Failed(e)) => return Err(e),
            Ok(done) => break done,
        }
    };
    output.finish().map_err(|e| match e {
        CgiError::BadOutput(d) => CgiError::BadOutput(format!("{d} (script ended: {status})")),
        e => e,
    })
}

/// NAME as a C string, if it is an acceptable script name.
fn script_name(name: &str) -> Option<CString> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 255
        && b[0] != b'.'
        && b[0] != b'-'
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        CString::new(b).ok()
    } else {
        None
    }
}

/// Open NAME beneath the CGI directory and check it is a regular file with
/// an execute bit.
fn open_script(dir: &CgiDir, name: &CStr) -> Result<OwnedFd, CgiError> {
    let fd =
        process::open_executable_beneath(dir.fd(), name).map_err(|e| match e.raw_os_error() {
            Some(libc::EXDEV | libc::ELOOP | libc::EACCES | libc::EPERM) => CgiError::Forbidden,
            Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => CgiError::NotFound,
            _ => CgiError::StartFailed(format!("opening the script: {e}")),
        })?;
    // The metadata is read from the descriptor (statx with AT_EMPTY_PATH,
    // which works on O_PATH), not from the name.
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| CgiError::StartFailed(format!("fstat on the script: {e}")))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(CgiError::Forbidden);
    }
    Ok(OwnedFd::from(file))
}

// ------------------------------------------------------------ environment

/// Request headers never passed as `HTTP_*` (lower case).
const SKIPPED_REQUEST_HEADERS: &[&str] = &[
    "content-length",
    "content-type",
    "proxy",
    "authorization",
    "proxy-authorization",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The script's environment: CGI meta-variables only (see the module doc).
fn environment(req: &CgiRequest) -> Vec<CString> {
    let mut vars: Vec<(String, Vec<u8>)> = Vec::with_capacity(16 + req.headers.len());
    let mut put = |k: &str, v: &[u8]| vars.push((k.to_string(), v.to_vec()));
    put("GATEWAY_INTERFACE", b"CGI/1.1");
    put("PATH", SCRIPT_PATH.as_bytes());
    put("SERVER_SOFTWARE", SERVER_SOFTWARE.as_bytes());
    put("SERVER_NAME", server_name(req).as_bytes());
    put("SERVER_PORT", req.server_addr.port().to_string().as_bytes());
    put("SERVER_PROTOCOL", req.protocol.as_bytes());
    put("REQUEST_METHOD", req.method.as_bytes());
    put("SCRIPT_NAME", format!("/cgi-bin/{}", req.script).as_bytes());
    if !req.path_info.is_empty() {
        put("PATH_INFO", req.path_info.as_bytes());
    }
    put("QUERY_STRING", req.query.as_bytes());
    put("REMOTE_ADDR", req.remote_addr.ip().to_string().as_bytes());
    put("REMOTE_PORT", req.remote_addr.port().to_string().as_bytes());
    let has_header = |name: &str| {
        req.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !req.body.is_empty() || has_header("content-length") || has_header("transfer-encoding") {
        put("CONTENT_LENGTH", req.body.len().to_string().as_bytes());
    }
    if let Some((_, ct)) = req
        .headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("content-type") && valid_value(v))
    {
        put("CONTENT_TYPE", ct);
    }

    let mut http: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if name.is_empty()
            || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            || SKIPPED_REQUEST_HEADERS.contains(&lower.as_str())
            || !valid_value(value)
        {
            continue;
        }
        let var: String = "HTTP_"
            .chars()
            .chain(name.chars().map(|c| match c {
                '-' => '_',
                c => c.to_ascii_uppercase(),
            }))
            .collect();
        match http.iter_mut().find(|(k, _)| *k == var) {
            Some((_, joined)) => {
                joined.extend_from_slice(if lower == "cookie" { b"; " } else { b", " });
                joined.extend_from_slice(value);
            }
            None => http.push((var, value.clone())),
        }
    }
    vars.extend(http);

    vars.into_iter()
        .filter_map(|(k, v)| {
            let mut kv = k.into_bytes();
            kv.push(b'=');
            kv.extend_from_slice(&v);
            CString::new(kv).ok()
        })
        .collect()
}

/// A header value with no control bytes other than HTAB (obs-text allowed).
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f))
}

/// SERVER_NAME: the Host header's name part when it looks like a host name
/// (or a bracketed IPv6 literal), else the local address.
fn server_name(req: &CgiRequest) -> String {
    let host = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok());
    if let Some(host) = host {
        let name = if host.starts_with('[') {
            host.find(']').map(|i| &host[..=i])
        } else {
            host.split(':').next()
        };
        if let Some(name) = name {
            let plausible = if let Some(inner) = name.strip_prefix('[') {
                let inner = inner.trim_end_matches(']');
                !inner.is_empty()
                    && inner
                        .bytes()
                        .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            } else {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
            };
            if plausible {
                return name.to_string();
            }
        }
    }
    req.server_addr.ip().to_string()
}

// ------------------------------------------------------------ the child

/// What the child needs, all prepared before the fork. The descriptors are
/// borrowed from the parent's owners, which the child's copy of memory keeps
/// open until it execs or exits (the parent closes its own copies only).
struct ChildPlan<'a> {
    dir: BorrowedFd<'a>,
    script: BorrowedFd<'a>,
    stdin: BorrowedFd<'a>,
    stdout: BorrowedFd<'a>,
    report: BorrowedFd<'a>,
    argv: &'a CStrArray,
    envp: &'a CStrArray,
    unblocked: SigSet,
}

/// Steps of the child that can fail, as reported through the report pipe.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Step {
    Chdir = 1,
    MoveFds = 2,
    Dup2 = 3,
    Stderr = 4,
    Setpgid = 5,
    SignalMask = 6,
    Exec = 7,
}

fn step_name(step: u8) -> &'static str {
    match step {
        1 => "fchdir to the CGI directory",
        2 => "moving descriptors",
        3 => "dup2 onto stdin/stdout",
        4 => "opening /dev/null as stderr",
        5 => "setpgid",
        6 => "clearing the signal mask",
        7 => "exec",
        _ => "child setup",
    }
}

/// The child's side of the fork. Only async-signal-safe calls (the
/// child-side wrappers of `sys::process`, and `sys::io::write`); nothing
/// here allocates or can panic. Ends in exec or `_exit(127)`.
fn exec_child(p: &ChildPlan<'_>) -> ! {
    if let Err(e) = process::fchdir(p.dir) {
        fail(p.report, Step::Chdir, e);
    }
    // Move every descriptor still needed above the slots about to be
    // assigned, so no dup2 below can overwrite one (the server may have
    // closed its stdin, making a pipe end fd 0; from here on the plan's
    // descriptors are not used, as one may now be another file). The copies
    // are close-on-exec and vanish at exec; until then they live in this
    // frame, which never returns (every path ends in exec or `_exit`), so
    // none is closed while still needed.
    let report_copy =
        process::dup_above(p.report, 10).unwrap_or_else(|e| fail(p.report, Step::MoveFds, e));
    let report = report_copy.as_fd();
    let stdin = process::dup_above(p.stdin, 10).unwrap_or_else(|e| fail(report, Step::MoveFds, e));
    let stdout =
        process::dup_above(p.stdout, 10).unwrap_or_else(|e| fail(report, Step::MoveFds, e));
    let script =
        process::dup_above(p.script, 10).unwrap_or_else(|e| fail(report, Step::MoveFds, e));
    for (from, to) in [
        (stdin.as_fd(), FdSlot::STDIN),
        (stdout.as_fd(), FdSlot::STDOUT),
        (script.as_fd(), SCRIPT_FD),
    ] {
        if let Err(e) = process::dup_onto(from, to) {
            fail(report, Step::Dup2, e);
        }
    }
    if let Err(e) = process::ensure_inherited(FdSlot::STDERR) {
        fail(report, Step::Stderr, e);
    }
    if let Err(e) = process::setpgid(0, 0) {
        fail(report, Step::Setpgid, e);
    }
    process::reset_signal_dispositions();
    // Best effort (Linux 5.11+): descriptors the server opened without
    // close-on-exec must not reach the script.
    let _ = process::mark_cloexec_from(SCRIPT_FD.next());
    if let Err(e) = process::set_signal_mask(&p.unblocked) {
        fail(report, Step::SignalMask, e);
    }
    let e = process::execveat_fd(SCRIPT_FD, p.argv, p.envp);
    fail(report, Step::Exec, e)
}

/// Report `(step, errno)` to the parent and exit. Async-signal-safe.
fn fail(report: BorrowedFd<'_>, step: Step, e: io::Error) -> ! {
    let errno = e.raw_os_error().unwrap_or(0).to_ne_bytes();
    let msg = [step as u8, errno[0], errno[1], errno[2], errno[3]];
    let _ = sys::io::write(report, &msg);
    process::exit_immediately(127)
}

// ------------------------------------------------------------ the parent

/// Restores the calling thread's signal mask when dropped.
struct RestoreMask(SigSet);

impl Drop for RestoreMask {
    fn drop(&mut self) {
        let _ = process::set_signal_mask(&self.0);
    }
}

fn start_failed(what: &str, e: io::Error) -> CgiError {
    CgiError::StartFailed(format!("{what}: {e}"))
}

/// Fork and exec the script, exchange stdin/stdout with it until it exits,
/// reap it. Returns its output and how it ended.
fn execute(
    dir: &CgiDir,
    script: OwnedFd,
    argv: &CStrArray,
    envp: &CStrArray,
    body: &[u8],
    deadline: Option<Instant>,
    limits: OutputLimits,
) -> Result<(Output, WaitStatus), Exec> {
    let (stdin_r, stdin_w) = process::pipe().map_err(|e| start_failed("pipe", e))?;
    let (stdout_r, stdout_w) = process::pipe().map_err(|e| start_failed("pipe", e))?;
    let (report_r, report_w) = process::pipe().map_err(|e| start_failed("pipe", e))?;
    for fd in [&stdin_w, &stdout_r, &report_r] {
        sys::socket::set_nonblocking(fd.as_fd()).map_err(|e| start_failed("fcntl", e))?;
    }
    let plan = ChildPlan {
        dir: dir.fd(),
        script: script.as_fd(),
        stdin: stdin_r.as_fd(),
        stdout: stdout_w.as_fd(),
        report: report_w.as_fd(),
        argv,
        envp,
        unblocked: SigSet::empty(),
    };

    let old_mask =
        process::block_signals(&SigSet::full()).map_err(|e| start_failed("pthread_sigmask", e))?;
    let _restore = RestoreMask(old_mask);
    // The registry is held across the fork, so an orphan scan on another
    // thread never sees this child before it is registered. (The child
    // touches nothing but `exec_child`, never the lock.)
    let mut running = lock_running();
    // SAFETY: the child branch runs only `exec_child`, which makes
    // async-signal-safe calls only and ends in exec or `_exit`; the parent
    // branch hands the pid straight to `Child`, which reaps it.
    let pid = match unsafe { process::fork() } {
        Ok(Fork::Child) => exec_child(&plan),
        Ok(Fork::Parent(pid)) => pid,
        Err(e) => return Err(start_failed("fork", e).into()),
    };
    running.push(pid);
    drop(running);
    let _running = Running(pid);
    let child = Child::adopt(pid).map_err(|e| start_failed("pidfd_open", e))?;
    let mut parent_mask = old_mask;
    parent_mask.add(process::SIGPIPE);
    let _ = process::set_signal_mask(&parent_mask);
    // The child's ends (and the script) belong to the child now; holding
    // them would keep the pipes from ever reporting EOF.
    drop((stdin_r, stdout_w, report_w, script));

    let output = exchange(&child, stdin_w, stdout_r, body, deadline, limits)?;

    // Leader exited (a zombie: its pid is still reserved); end whatever it
    // left running in its group, then reap.
    child.kill_group();
    let status = child
        .reap()
        .map_err(|e| CgiError::BadOutput(format!("waitpid: {e}")))?;

    let mut report = [0u8; 8];
    if let Ok(5) = sys::io::read(report_r.as_fd(), &mut report) {
        let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
        if errno == libc::ETXTBSY {
            return Err(Exec::Busy);
        }
        return Err(Exec::Failed(CgiError::StartFailed(format!(
            "{}: {}",
            step_name(report[0]),
            io::Error::from_raw_os_error(errno)
        ))));
    }
    Ok((output, status))
}

/// Process groups of the scripts running now, so a server exiting with
/// handlers still busy (past its shutdown timeout) can end them instead of
/// leaving orphans: the threads that would reap them do not get to run
/// their destructors once `main` returns.
static RUNNING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn lock_running() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Membership of one script in [`RUNNING`] for as long as it lives
/// (registered under the lock held across its fork).
struct Running(i32);

impl Drop for Running {
    /// The script is reaped (its `Child` is dropped before this): what it
    /// left behind outside its group is ended too, on every path out.
    fn drop(&mut self) {
        lock_running().retain(|&p| p != self.0);
        end_orphans();
    }
}

/// Kill and reap the server's children that are not scripts it started:
/// descendants a script left behind outside its process group (`setsid …
/// &`), reparented to the server (a child subreaper) when their parent
/// exited. Their own orphans are reparented in turn, so this repeats while
/// it finds any. Returns how many it ended.
///
/// Every child a variant forks itself must be in [`RUNNING`] (today only
/// CGI scripts; a process model registers its workers before calling this).
pub fn end_orphans() -> usize {
    if !process::has_forked() {
        return 0;
    }
    let running = lock_running();
    let me = process::getpid();
    let mut ended = 0;
    for _ in 0..16 {
        let orphans: Vec<i32> = process::children_of(me)
            .into_iter()
            .filter(|p| !running.contains(p))
            .collect();
        if orphans.is_empty() {
            break;
        }
        for pid in orphans {
            // A `setsid` daemon leads a group of its own: end it whole.
            let _ = process::kill(-pid, process::SIGKILL);
            let _ = process::kill(pid, process::SIGKILL);
            let _ = process::waitpid(pid);
            ended += 1;
        }
    }
    ended
}

/// SIGKILL every script still running (their whole process groups).
/// Returns how many there were. For the last moments of a server that
/// gives up on handlers still busy at its shutdown timeout.
pub fn kill_running() -> usize {
    let count = {
        let running = lock_running();
        for &pid in running.iter() {
            let _ = process::kill(-pid, process::SIGKILL);
        }
        running.len()
    };
    end_orphans();
    count
}

/// How often an exec refused with ETXTBSY is retried.
const EXEC_BUSY_RETRIES: u32 = 20;

/// Why [`execute`] did not produce output.
enum Exec {
    /// The exec failed with ETXTBSY (transient; see [`run`]).
    Busy,
    Failed(CgiError),
}

impl From<CgiError> for Exec {
    fn from(e: CgiError) -> Exec {
        Exec::Failed(e)
    }
}

/// Write `body` to the script's stdin and collect its stdout until it has
/// exited, within the deadline and the output cap. Returning an error
/// leaves the child to the caller's guard (killed and reaped on drop).
fn exchange(
    child: &Child,
    stdin: OwnedFd,
    stdout: OwnedFd,
    body: &[u8],
    deadline: Option<Instant>,
    limits: OutputLimits,
) -> Result<Output, CgiError> {
    // An empty body is EOF right away: dropping the write end closes it.
    let mut input = (!body.is_empty()).then_some(stdin);
    let mut written = 0;
    let mut stdout = Some(stdout);
    let mut output = Output::new(limits);
    let mut buf = vec![0u8; 64 * 1024];
    let mut exited = false;
    loop {
        if exited {
            // Everything the script wrote is in the pipe by now. Stop what
            // it left running in its group (nothing of theirs is part of
            // the response), then take what the pipe holds, without waiting
            // for an EOF that a process outside the group could withhold.
            child.kill_group();
            while let Some(fd) = &stdout {
                time_left(deadline)?;
                if !read_some(fd, &mut buf, &mut output)? {
                    stdout = None;
                }
            }
            return Ok(output);
        }
        let timeout_ms = match time_left(deadline)? {
            None => -1,
            Some(left) => (left.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32,
        };
        let mut fds = [PollFd::readable(child.exit_fd()); 3];
        let mut n = 1;
        let out_at = stdout.as_ref().map(|fd| {
            fds[n] = PollFd::readable(fd.as_fd());
            n += 1;
            n - 1
        });
        let in_at = input.as_ref().map(|fd| {
            fds[n] = PollFd::writable(fd.as_fd());
            n += 1;
            n - 1
        });
        match process::poll(&mut fds[..n], timeout_ms) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CgiError::BadOutput(format!("poll: {e}"))),
        }
        if let (Some(i), Some(fd)) = (out_at, &stdout) {
            if fds[i].ready() && !read_some(fd, &mut buf, &mut output)? {
                stdout = None;
            }
        }
        if let (Some(i), Some(fd)) = (in_at, &input) {
            if fds[i].ready() {
                let end = body.len().min(written + 64 * 1024);
                match sys::io::write(fd.as_fd(), &body[written..end]) {
                    Ok(k) => {
                        written += k;
                        if written == body.len() {
                            input = None; // close: the script sees EOF
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        // EPIPE: the script is not reading stdin (any more),
                        // which it may; the blocked SIGPIPE is consumed here.
                        if e.raw_os_error() == Some(libc::EPIPE) {
                            process::take_pending_signal(process::SIGPIPE);
                        }
                        input = None;
                    }
                }
            }
        }
        if fds[0].ready() {
            exited = true;
        }
    }
}

/// Time until the deadline (`None`: no deadline); `Timeout` once it passed.
fn time_left(deadline: Option<Instant>) -> Result<Option<Duration>, CgiError> {
    match deadline {
        None => Ok(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(CgiError::Timeout)
            } else {
                Ok(Some(left))
            }
        }
    }
}

/// One non-blocking read from the script's stdout into `output`. Returns
/// whether the pipe may have more (false at end of stream or, when
/// draining, when it is empty).
fn read_some(fd: &OwnedFd, buf: &mut [u8], output: &mut Output) -> Result<bool, CgiError> {
    loop {
        match sys::io::read(fd.as_fd(), buf) {
            Ok(0) => return Ok(false),
            Ok(k) => {
                output.push(&buf[..k])?;
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(CgiError::BadOutput(format!("reading script output: {e}"))),
        }
    }
}

/// A script's stdout as it arrives, under [`OutputLimits`].
struct Output {
    limits: OutputLimits,
    /// Everything so far while in memory; once spilled, the header section.
    mem: Vec<u8>,
    /// The spilled body and its length so far.
    spilled: Option<(File, u64)>,
}

impl Output {
    fn new(limits: OutputLimits) -> Output {
        Output {
            limits,
            mem: Vec::new(),
            spilled: None,
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), CgiError> {
        let spilled = self.spilled.as_ref().map_or(0, |(_, len)| *len);
        if self.mem.len() as u64 + spilled + data.len() as u64 > self.limits.max {
            return Err(CgiError::TooLarge);
        }
        match &mut self.spilled {
            Some((file, len)) => {
                io::Write::write_all(file, data).map_err(storage)?;
                *len += data.len() as u64;
            }
            None => {
                self.mem.extend_from_slice(data);
                if self.mem.len() > self.limits.memory {
                    self.spill()?;
                }
            }
        }
        Ok(())
    }

    /// Move the body so far to a temporary file; the head stays in memory.
    fn spill(&mut self) -> Result<(), CgiError> {
        let at = head_end(&self.mem)
            .filter(|&at| at <= self.limits.memory)
            .ok_or_else(|| {
                CgiError::BadOutput(format!(
                    "header section longer than {} bytes (--cgi-buffer-bytes)",
                    self.limits.memory
                ))
            })?;
        let mut file = sys::fs::anonymous_file(&std::env::temp_dir()).map_err(storage)?;
        io::Write::write_all(&mut file, &self.mem[at..]).map_err(storage)?;
        self.spilled = Some((file, (self.mem.len() - at) as u64));
        self.mem.truncate(at);
        self.mem.shrink_to_fit();
        Ok(())
    }

    fn finish(self) -> Result<CgiResponse, CgiError> {
        match self.spilled {
            None => parse_output(self.mem),
            Some((file, len)) => {
                let (head, _) = parse_head(&self.mem)?;
                head.with_body(Body::File { file, len })
            }
        }
    }
}

fn storage(e: io::Error) -> CgiError {
    CgiError::Storage(format!(
        "temporary file in {}: {e}",
        std::env::temp_dir().display()
    ))
}

/// Where the body starts: just past the first empty line (LF or CRLF).
fn head_end(out: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let nl = pos + out[pos..].iter().position(|&c| c == b'\n')?;
        if matches!(&out[pos..nl], b"" | b"\r") {
            return Some(nl + 1);
        }
        pos = nl + 1;
    }
}

// ------------------------------------------------------------ output

/// Script response headers dropped (lower case): framing and connection
/// management are the server's, and so is Date.
const DROPPED_SCRIPT_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "date",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn bad(msg: &str) -> CgiError {
    CgiError::BadOutput(msg.to_string())
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parse a script's output (RFC 3875 §6): header lines ended by LF or
/// CRLF, a blank line, the body.
///
/// - `Status: NNN [reason]` sets the status (200..=599; the reason phrase
///   is not kept, the server writes its own); `Location:` without `Status:`
///   gives 302 (a local redirect, `Location: /path`, is not re-processed
///   inside the server: it is answered as a client redirect too).
/// - `Content-Type:` is required when there is a body and no Location.
/// - Status, Content-Type and Location at most once each.
/// - A line without a colon, an empty or non-token name, a malformed
///   Status, or no blank line: [`CgiError::BadOutput`].
/// - Other headers pass through unless they are framing, hop-by-hop or
///   Date, or their value has control bytes (CR, NUL, ...) or is not
///   UTF-8: such a header is dropped (for Content-Type or Location the
///   response is refused instead).
pub fn parse_output(out: Vec<u8>) -> Result<CgiResponse, CgiError> {
    let (head, at) = parse_head(&out)?;
    let mut body = out;
    body.drain(..at);
    head.with_body(Body::Memory(body))
}

/// The header section of a script's output, parsed.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    /// A Content-Type or a Location came: a body may follow.
    body_allowed: bool,
}

impl Head {
    /// The response, if the body may go with these headers.
    fn with_body(self, body: Body) -> Result<CgiResponse, CgiError> {
        if !self.body_allowed && !body.is_empty() {
            return Err(bad("no Content-Type header"));
        }
        Ok(CgiResponse {
            status: self.status,
            headers: self.headers,
            body,
        })
    }
}

/// The header section of `out` (as [`parse_output`] describes) and where
/// the body starts.
fn parse_head(out: &[u8]) -> Result<(Head, usize), CgiError> {
    let mut status: Option<u16> = None;
    let mut content_type: Option<String> = None;
    let mut location: Option<String> = None;
    let mut others: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    let mut lines = 0;
    loop {
        let Some(nl) = out[pos..].iter().position(|&c| c == b'\n') else {
            return Err(bad(if out.is_empty() {
                "no output"
            } else {
                "header section not ended by a blank line"
            }));
        };
        let mut line = &out[pos..pos + nl];
        pos += nl + 1;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.is_empty() {
            break;
        }
        lines += 1;
        if lines > MAX_SCRIPT_HEADERS {
            return Err(bad("too many header lines"));
        }
        let colon = line
            .iter()
            .position(|&c| c == b':')
            .ok_or_else(|| bad("header line without a colon"))?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
            return Err(bad("invalid header name"));
        }
        // Tokens are ASCII.
        let name = std::str::from_utf8(name).expect("token is ASCII");
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|v| valid_value(v.as_bytes()));
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "status" => {
                if status.is_some() {
                    return Err(bad("more than one Status header"));
                }
                status = Some(
                    value
                        .and_then(parse_status)
                        .ok_or_else(|| bad("malformed Status header"))?,
                );
            }
            "content-type" => set_once(&mut content_type, value, "Content-Type")?,
            "location" => set_once(&mut location, value, "Location")?,
            l if DROPPED_SCRIPT_HEADERS.contains(&l) => {}
            _ => {
                if let Some(v) = value {
                    others.push((name.to_string(), v.to_string()));
                }
            }
        }
    }
    let body_allowed = content_type.is_some() || location.is_some();
    let status = status.unwrap_or(if location.is_some() { 302 } else { 200 });
    let mut headers = Vec::with_capacity(others.len() + 2);
    if let Some(ct) = content_type {
        headers.push(("Content-Type".to_string(), ct));
    }
    if let Some(loc) = location {
        headers.push(("Location".to_string(), loc));
    }
    headers.extend(others);
    Ok((
        Head {
            status,
            headers,
            body_allowed,
        },
        pos,
    ))
}

/// A header the script may send once, with a non-empty valid value.
fn set_once(slot: &mut Option<String>, value: Option<&str>, name: &str) -> Result<(), CgiError> {
    if slot.is_some() {
        return Err(CgiError::BadOutput(format!("more than one {name} header")));
    }
    match value {
        Some(v) if !v.is_empty() => {
            *slot = Some(v.to_string());
            Ok(())
        }
        _ => Err(CgiError::BadOutput(format!("invalid {name} header"))),
    }
}

/// `NNN` or `NNN reason`, NNN in 200..=599.
fn parse_status(v: &str) -> Option<u16> {
    let b = v.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 3 && b[3] != b' ' && b[3] != b'\t' {
        return None;
    }
    let code: u16 = v[..3].parse().ok()?;
    (200..=599).contains(&code).then_some(code)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CgiRequest {
        CgiRequest {
            script: "env".into(),
            path_info: String::new(),
            method: "GET".into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            remote_addr: "10.0.0.2:5555".parse().unwrap(),
            server_addr: "127.0.0.1:8080".parse().unwrap(),
            protocol: "HTTP/1.1",
        }
    }

    fn env_of(r: &CgiRequest) -> Vec<String> {
        environment(r)
            .into_iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect()
    }

    fn get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
        env.iter()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn split_path_cases() {
        assert_eq!(split_path("/cgi-bin/time"), Some(("time", "")));
        assert_eq!(split_path("/cgi-bin/params/a/b"), Some(("params", "/a/b")));
        assert_eq!(split_path("/cgi-bin/x/"), Some(("x", "/")));
        assert_eq!(split_path("/cgi-bin/a%2Fb/c"), Some(("a%2Fb", "/c")));
        assert_eq!(split_path("/cgi-bin/"), None);
        assert_eq!(split_path("/cgi-bin//x"), None);
        assert_eq!(split_path("/cgi-bin"), None);
        assert_eq!(split_path("/cgi-binx/y"), None);
        assert_eq!(split_path("/static/cgi-bin/x"), None);
    }

    #[test]
    fn script_names() {
        for ok in ["time", "params", "a.sh", "A_b-9", "x.y.z"] {
            assert!(script_name(ok).is_some(), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-l",
            "a/b",
            "../x",
            "a\0b",
            "%2e%2e",
            "a b",
            "é",
            "a\\b",
            long.as_str(),
        ] {
            assert!(script_name(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn meta_variables() {
        let mut r = req();
        r.method = "POST".into();
        r.query = "a=1&b=%20".into();
        r.path_info = "/x/y".into();
        r.body = b"hello".to_vec();
        r.headers = vec![
            ("Host".into(), b"example.test:8080".to_vec()),
            ("Content-Type".into(), b"text/plain".to_vec()),
            ("Content-Length".into(), b"5".to_vec()),
            ("X-Custom".into(), b"v1".to_vec()),
            ("x-custom".into(), b"v2".to_vec()),
            ("Cookie".into(), b"a=1".to_vec()),
            ("Cookie".into(), b"b=2".to_vec()),
            ("Proxy".into(), b"http://evil:1".to_vec()),
            ("Authorization".into(), b"Basic Zm9vOmJhcg==".to_vec()),
            ("X_Under".into(), b"u".to_vec()),
            ("X-Ctl".into(), b"a\x01b".to_vec()),
            ("X-Nul".into(), b"a\0b".to_vec()),
            ("Connection".into(), b"close".to_vec()),
            ("X-Latin".into(), b"caf\xe9".to_vec()),
        ];
        let env = env_of(&r);
        assert_eq!(get(&env, "GATEWAY_INTERFACE"), Some("CGI/1.1"));
        assert_eq!(get(&env, "REQUEST_METHOD"), Some("POST"));
        assert_eq!(get(&env, "QUERY_STRING"), Some("a=1&b=%20"));
        assert_eq!(get(&env, "PATH_INFO"), Some("/x/y"));
        assert_eq!(get(&env, "SCRIPT_NAME"), Some("/cgi-bin/env"));
        assert_eq!(get(&env, "CONTENT_LENGTH"), Some("5"));
        assert_eq!(get(&env, "CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get(&env, "SERVER_NAME"), Some("example.test"));
        assert_eq!(get(&env, "SERVER_PORT"), Some("8080"));
        assert_eq!(get(&env, "SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(get(&env, "REMOTE_ADDR"), Some("10.0.0.2"));
        assert_eq!(get(&env, "REMOTE_PORT"), Some("5555"));
        assert_eq!(get(&env, "PATH"), Some(SCRIPT_PATH));
        assert_eq!(get(&env, "HTTP_HOST"), Some("example.test:8080"));
        assert_eq!(get(&env, "HTTP_X_CUSTOM"), Some("v1, v2"));
        assert_eq!(get(&env, "HTTP_COOKIE"), Some("a=1; b=2"));
        for absent in [
            "HTTP_PROXY",
            "HTTP_AUTHORIZATION",
            "HTTP_CONTENT_TYPE",
            "HTTP_CONTENT_LENGTH",
            "HTTP_X_UNDER",
            "HTTP_X_CTL",
            "HTTP_X_NUL",
            "HTTP_CONNECTION",
        ] {
            assert_eq!(get(&env, absent), None, "{absent}");
        }
        // Not UTF-8, but representable: passed as bytes.
        let raw = environment(&r);
        assert!(raw.iter().any(|c| c.as_bytes() == b"HTTP_X_LATIN=caf\xe9"));
    }

    #[test]
    fn content_length_only_with_a_body() {
        let env = env_of(&req());
        assert_eq!(get(&env, "CONTENT_LENGTH"), None);
        assert_eq!(get(&env, "PATH_INFO"), None);
        assert_eq!(get(&env, "QUERY_STRING"), Some(""));
        let mut r = req();
        r.headers = vec![("Content-Length".into(), b"0".to_vec())];
        assert_eq!(get(&env_of(&r), "CONTENT_LENGTH"), Some("0"));
    }

    #[test]
    fn server_name_from_host_or_address() {
        let mut r = req();
        assert_eq!(server_name(&r), "127.0.0.1");
        for (host, want) in [
            ("example.test", "example.test"),
            ("Example.Test:81", "Example.Test"),
            ("[::1]:8080", "[::1]"),
            ("bad host", "127.0.0.1"),
            ("a\"b", "127.0.0.1"),
            ("[zz]", "127.0.0.1"),
            (":80", "127.0.0.1"),
        ] {
            r.headers = vec![("host".into(), host.as_bytes().to_vec())];
            assert_eq!(server_name(&r), want, "{host}");
        }
    }

    fn parsed(out: &[u8]) -> Result<CgiResponse, CgiError> {
        parse_output(out.to_vec())
    }

    fn in_memory(r: &CgiResponse) -> &[u8] {
        match &r.body {
            Body::Memory(b) => b,
            Body::File { .. } => panic!("parse_output spilled"),
        }
    }

    #[test]
    fn output_document() {
        let r = parsed(b"Content-Type: text/plain\n\nhello\n").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type(), Some("text/plain"));
        assert_eq!(in_memory(&r), b"hello\n");
        let r = parsed(b"Status: 404 Not Found\r\nContent-type:text/html\r\nX-A:  b  \r\n\r\n<p>")
            .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(
            r.headers,
            vec![
                ("Content-Type".to_string(), "text/html".to_string()),
                ("X-A".to_string(), "b".to_string())
            ]
        );
        assert_eq!(in_memory(&r), b"<p>");
        // Mixed line endings; body keeps its bytes (even CRLFs) as is.
        let r = parsed(b"Content-Type: a/b\r\nStatus: 201\n\r\nx\r\ny").unwrap();
        assert_eq!((r.status, in_memory(&r)), (201, &b"x\r\ny"[..]));
    }

    #[test]
    fn output_redirects_and_empty_bodies() {
        let r = parsed(b"Location: https://example.test/x\n\n").unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location"), Some("https://example.test/x"));
        let r = parsed(b"Status: 301 Moved\nLocation: /y\n\n").unwrap();
        assert_eq!(r.status, 301);
        let r = parsed(b"Status: 204\n\n").unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
    }

    #[test]
    fn output_drops_framing_and_bad_values() {
        let r = parsed(
            b"Content-Type: t/p\nContent-Length: 999\nTransfer-Encoding: chunked\n\
              Connection: close\nDate: x\nX-Bad: a\rb\nX-Nul: a\0b\nSet-Cookie: s=1\n\nbody",
        )
        .unwrap();
        assert_eq!(
            r.headers,
            vec![
                ("Content-Type".to_string(), "t/p".to_string()),
                ("Set-Cookie".to_string(), "s=1".to_string())
            ]
        );
    }

    #[test]
    fn output_refused() {
        for out in [
            &b""[..],
            b"hello world",
            b"Content-Type: text/plain\nno blank line",
            b"<html>\n\n",
            b"Content-Type text/plain\n\nx",
            b"Bad Name: x\nContent-Type: t/p\n\n",
            b": x\nContent-Type: t/p\n\n",
            b"Status: 20\nContent-Type: t/p\n\n",
            b"Status: 2000\nContent-Type: t/p\n\n",
            b"Status: abc\nContent-Type: t/p\n\n",
            b"Status: 100 Continue\nContent-Type: t/p\n\n",
            b"Status: 200\nStatus: 404\nContent-Type: t/p\n\n",
            b"Content-Type: a/b\nContent-Type: c/d\n\n",
            b"Content-Type: a\rb\n\nx",
            b"Content-Type:\n\nx",
            b"Location: /a\nLocation: /b\n\n",
            b"Location:\n\n",
            b"X-Only: 1\n\nbody without a type",
        ] {
            let e = parsed(out).unwrap_err();
            assert!(matches!(e, CgiError::BadOutput(_)), "{out:?}: {e:?}");
            assert_eq!(e.status(), 502);
        }
        let many: Vec<u8> = std::iter::repeat(&b"X-A: 1\n"[..])
            .take(MAX_SCRIPT_HEADERS + 1)
            .flatten()
            .copied()
            .chain(b"Content-Type: t/p\n\n".iter().copied())
            .collect();
        assert!(matches!(parse_output(many), Err(CgiError::BadOutput(_))));
    }

    #[test]
    fn error_statuses() {
        assert_eq!(CgiError::NotFound.status(), 404);
        assert_eq!(CgiError::Forbidden.status(), 403);
        assert_eq!(CgiError::StartFailed(String::new()).status(), 502);
        assert_eq!(CgiError::TooLarge.status(), 502);
        assert_eq!(CgiError::Timeout.status(), 504);
        assert_eq!(
            CgiError::BadOutput("x".into()).to_string(),
            "CGI script sent an invalid response: x"
        );
    }
}
