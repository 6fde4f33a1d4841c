//! Shared helpers for the integration tests.
//!
//! - [`Server`]: starts one server binary as a real child process on an
//!   ephemeral port, reads its `listening on ADDR` line, counts its open file
//!   descriptors, stops it with a signal, and kills it on drop so no server
//!   outlives a failed test.
//! - [`Conn`]: a raw `std::net::TcpStream` client that writes bytes and reads
//!   exactly one HTTP/1.1 response at a time (so pipelined responses can be
//!   read one after another), with read/write timeouts so a broken server
//!   fails the test instead of hanging it.
//! - [`DocRoot`]: a temporary document root (plus a secret file *outside* it)
//!   used by the static-file, traversal and symlink cases.
//! - [`Json`]: a tiny JSON parser for `/stats`.
//!
//! Only std, `libc` and `tempfile` are used.
#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

/// Read/write timeout of every client socket, and the longest any single
/// wait in these tests may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[allow(unused_imports)]
pub use servers::variants::{self, KeepAlive, Limit, Processes, Threads, Variant};

/// The catalog entry of the variant whose binary is `name`; panics naming
/// the catalog when there is none.
#[track_caller]
pub fn variant(name: &str) -> &'static Variant {
    variants::find(name).unwrap_or_else(|| {
        panic!(
            "{name:?} is not in servers::variants::VARIANTS (known: {})",
            variants::names().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Path of the binary `name` (a catalog name), found at run time next to
/// this test executable: cargo builds every binary of the package into
/// `target/<profile>/` before it builds and runs the integration tests,
/// which live in `target/<profile>/deps/`. Panics naming the missing
/// binary.
#[track_caller]
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test executable");
    let dir = exe.parent().and_then(Path::parent).unwrap_or_else(|| {
        panic!(
            "test executable {} is not in a deps/ directory",
            exe.display()
        )
    });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "the binary of variant {name:?} is missing: expected {} (next to this test's deps/ directory). \
         Cargo builds every binary of the package before its integration tests: is there a \
         servers/src/bin/{name}.rs, and does the catalog name match it? (`cargo build -p servers --bin {name}`)",
        path.display()
    );
    path
}

/// One `#[test]` per variant and suite function, generated, plus a test that
/// the list of variants given is exactly the catalog's.
///
/// Why generated tests rather than one test looping over the catalog: cargo
/// runs separate tests in parallel (each suite function takes from seconds
/// to half a minute per variant), and a failing test is named by its
/// variant (`epoll_threads::conformance`). The price is that the list of
/// variants is written once more, in each suite's macro call, so
/// `every_catalog_variant_has_its_tests` fails loudly when the catalog has a
/// variant the call does not list (and every generated test fails when it
/// names a variant the catalog does not have).
///
/// ```ignore
/// per_variant_tests! {
///     variants: [blocking, threadpool, epoll, epoll_threads],
///     tests: [conformance, body_limit_413],
/// }
/// ```
/// generates `mod blocking { #[test] fn conformance() { super::conformance(v) } ... }`
/// where `v` is the catalog entry whose name, with `-` written `_`, is the
/// module name; each suite function takes a `&'static Variant`.
#[allow(unused_macros)]
macro_rules! per_variant_tests {
    (variants: [$($v:ident),* $(,)?], tests: $tests:tt $(,)?) => {
        $( $crate::common::per_variant_tests!(@one $v $tests); )*

        /// The variants listed in `per_variant_tests!` are exactly the catalog's.
        #[test]
        fn every_catalog_variant_has_its_tests() {
            $crate::common::check_generated(file!(), &[$(stringify!($v)),*]);
        }
    };
    (@one $v:ident [$($t:ident),* $(,)?]) => {
        mod $v {
            $(
                #[test]
                fn $t() {
                    super::$t($crate::common::variant_of_module(stringify!($v)));
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use per_variant_tests;

/// A catalog name as a Rust identifier (`epoll-threads` → `epoll_threads`).
pub fn ident_of(name: &str) -> String {
    name.replace('-', "_")
}

/// The catalog entry a `per_variant_tests!` module stands for.
#[track_caller]
pub fn variant_of_module(module: &str) -> &'static Variant {
    variants::VARIANTS
        .iter()
        .find(|v| ident_of(v.name) == module)
        .unwrap_or_else(|| {
            panic!(
                "per_variant_tests! lists `{module}`, which is no catalog variant (servers::variants::VARIANTS: {})",
                variants::names().collect::<Vec<_>>().join(", ")
            )
        })
}

/// Fails when the catalog has a variant `generated` (the module names of a
/// `per_variant_tests!` call in `file`) lacks, or lists one twice.
pub fn check_generated(file: &str, generated: &[&str]) {
    let mut problems = Vec::new();
    for v in variants::VARIANTS {
        let ident = ident_of(v.name);
        match generated.iter().filter(|g| **g == ident).count() {
            1 => {}
            0 => problems.push(format!(
                "catalog variant `{}` has no tests here: add `{ident}` to the `variants:` list of per_variant_tests! in {file}",
                v.name
            )),
            n => problems.push(format!("`{ident}` is listed {n} times")),
        }
    }
    for g in generated {
        if !variants::VARIANTS.iter().any(|v| ident_of(v.name) == *g) {
            problems.push(format!("`{g}` is listed but is no catalog variant"));
        }
    }
    assert!(
        problems.is_empty(),
        "per_variant_tests! in {file} does not match servers::variants::VARIANTS:\n{}",
        problems.join("\n")
    );
}

/// Print, in a test's output, that `case` was not run against `v` and why
/// (the catalog limit or property that rules it out).
pub fn skip(v: &Variant, case: &str, why: &str) {
    println!("[{}] SKIP {case}: {why}", v.name);
}

/// Print, in a test's output, that part of `case` (`what`) was not checked
/// against `v` and why.
pub fn skip_part(v: &Variant, case: &str, what: &str, why: &str) {
    println!("[{}] SKIP part of {case}: {what}: {why}", v.name);
}

// ---------------------------------------------------------------------------
// Secrets: content that must never appear in any response.
// ---------------------------------------------------------------------------

static SECRETS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Every response read through [`Conn`] is checked not to contain `secret`.
pub fn register_secret(secret: &[u8]) {
    SECRETS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(secret.to_vec());
}

fn leaked_secret(data: &[u8]) -> bool {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    secrets.iter().any(|s| contains(data, s))
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.len() < needle.len() {
        return false;
    }
    let first = needle[0];
    hay.windows(needle.len())
        .any(|w| w[0] == first && w == needle)
}

// ---------------------------------------------------------------------------
// Misc helpers
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A value unique enough per call (time, pid and a counter mixed).
pub fn unique_u64() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t ^ ((std::process::id() as u64) << 32) ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Poll `f` until it returns true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, step: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
}

thread_local! {
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Run `f`, catching a panic and returning its message (with the location
/// of the failed assertion) instead. The default panic hook's report is
/// suppressed for it: the caller collects and reports the message itself.
pub fn catch_quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.with(|q| q.get()) {
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|p| *p.borrow_mut() = loc);
            } else {
                default(info);
            }
        }));
    });
    let was = QUIET_PANICS.with(|q| q.replace(true));
    PANIC_LOCATION.with(|p| *p.borrow_mut() = None);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(was));
    r.map_err(|e| {
        let msg = panic_message(&*e);
        match PANIC_LOCATION.with(|p| p.borrow_mut().take()) {
            Some(loc) => format!("{msg}\n  (at {loc})"),
            None => msg,
        }
    })
}

/// Text of a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".to_string()
    }
}

/// Raise this process's soft RLIMIT_NOFILE to its hard limit (children, the
/// servers, inherit it). Tests with 1,000+ sockets need it.
pub fn raise_nofile_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
        unsafe {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                let want = libc::rlimit {
                    rlim_cur: lim.rlim_max.min(65_536).max(lim.rlim_cur),
                    rlim_max: lim.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &want);
            }
        }
    });
}

/// Current soft RLIMIT_NOFILE of this process.
pub fn nofile_limit() -> u64 {
    // SAFETY: getrlimit only writes the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur
        } else {
            0
        }
    }
}

/// Hard RLIMIT_NOFILE of this process.
pub fn nofile_hard_limit() -> u64 {
    // SAFETY: getrlimit only writes the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_max
        } else {
            libc::RLIM_INFINITY
        }
    }
}

/// `poll(2)` the given sockets for readability (data, EOF or error) for up to
/// `timeout`; returns one flag per socket (all false on timeout).
pub fn poll_readable(streams: &[&TcpStream], timeout: Duration) -> Vec<bool> {
    let mut fds: Vec<libc::pollfd> = streams
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: fds points to fds.len() initialised pollfd structs that live
    // for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n <= 0 {
        return vec![false; streams.len()];
    }
    fds.iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect()
}

/// Set SO_LINGER {on, 0} so that closing the socket sends RST instead of FIN.
pub fn set_linger_zero(stream: &TcpStream) {
    let lin = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket fd; pointer and length describe `lin`.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &lin as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------------------
// Request builders
// ---------------------------------------------------------------------------

/// `GET path HTTP/1.1` with a Host header.
pub fn get_req(path: &str) -> Vec<u8> {
    req("GET", path, &[])
}

/// `METHOD path HTTP/1.1` with a Host header plus `headers` (name, value).
pub fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Printable excerpt of raw bytes for messages.
pub fn excerpt(data: &[u8], max: usize) -> String {
    let cut = &data[..data.len().min(max)];
    let mut s = String::new();
    for &b in cut {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n\n"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if data.len() > max {
        s.push_str(&format!("... ({} bytes total)", data.len()));
    }
    s
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// One parsed HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    /// e.g. `HTTP/1.1`
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header (name, value) pairs in order, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The raw head (status line + headers), for messages.
    pub head_raw: String,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers with this name.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// Whether the Connection header carries `token` (case-insensitive).
    pub fn has_connection_token(&self, token: &str) -> bool {
        self.headers_named("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    pub fn says_close(&self) -> bool {
        self.has_connection_token("close")
    }

    /// Media type of Content-Type, lowercased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Head plus the start of the body, for assertion messages.
    pub fn summary(&self) -> String {
        format!(
            "{}\n[body] {}",
            self.head_raw.trim_end(),
            excerpt(&self.body, 300)
        )
    }

    /// Panic unless the status is `code`.
    #[track_caller]
    pub fn expect_status(&self, code: u16, what: &str) -> &Self {
        assert_eq!(
            self.status,
            code,
            "{what}: expected status {code}, got {}\n{}",
            self.status,
            self.summary()
        );
        self
    }

    /// Panic unless the body is exactly `body`.
    #[track_caller]
    pub fn expect_body(&self, body: &[u8], what: &str) -> &Self {
        assert!(
            self.body == body,
            "{what}: body mismatch: expected {} bytes [{}], got {} bytes\n{}",
            body.len(),
            excerpt(body, 100),
            self.body.len(),
            self.summary()
        );
        self
    }

    /// Panic unless header `name` is present and equal to `value` (exactly).
    #[track_caller]
    pub fn expect_header(&self, name: &str, value: &str, what: &str) -> &Self {
        assert_eq!(
            self.header(name),
            Some(value),
            "{what}: header {name}\n{}",
            self.summary()
        );
        self
    }

    /// Panic unless the response carries `Connection: close`.
    #[track_caller]
    pub fn expect_close(&self, what: &str) -> &Self {
        assert!(
            self.says_close(),
            "{what}: expected `Connection: close`\n{}",
            self.summary()
        );
        self
    }

    /// Panic if the response carries `Connection: close`.
    #[track_caller]
    pub fn expect_not_close(&self, what: &str) -> &Self {
        assert!(
            !self.says_close(),
            "{what}: unexpected `Connection: close` (the connection must stay open)\n{}",
            self.summary()
        );
        self
    }
}

/// Does `v` look like an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)?
pub fn is_imf_fixdate(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() != 29 || !v.is_ascii() || !v.ends_with(" GMT") {
        return false;
    }
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_digit());
    days.contains(&&v[0..3])
        && &v[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && months.contains(&&v[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
}

// ---------------------------------------------------------------------------
// Client connection
// ---------------------------------------------------------------------------

/// How a read-until-close ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly close (FIN).
    Eof,
    /// Reset (RST), e.g. the server closed with unread request bytes.
    Reset,
}

/// A raw client connection.
pub struct Conn {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    pub addr: SocketAddr,
}

impl Conn {
    /// Connect, with IO_TIMEOUT read/write timeouts and TCP_NODELAY.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Conn {
        Conn::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        Ok(Conn {
            stream,
            reader,
            addr,
        })
    }

    /// Write all of `data`; panics on error.
    #[track_caller]
    pub fn send(&mut self, data: &[u8]) {
        if let Err(e) = self
            .stream
            .write_all(data)
            .and_then(|_| self.stream.flush())
        {
            panic!("write of {} bytes to {}: {e}", data.len(), self.addr);
        }
    }

    /// Write all of `data`, returning errors (for cases where the server may
    /// answer and close before it has read everything).
    pub fn send_lenient(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    /// Read exactly one response; panics with a description on any error or
    /// on a violation of the rules every response must follow (Date,
    /// Content-Length, no secret content).
    #[track_caller]
    pub fn read_response(&mut self, head_request: bool) -> Response {
        match self.try_read_response(head_request) {
            Ok(r) => r,
            Err(e) => panic!("reading response: {e}"),
        }
    }

    /// Read exactly one response. `head_request`: the request was HEAD, so
    /// no body follows whatever Content-Length says.
    pub fn try_read_response(&mut self, head_request: bool) -> Result<Response, String> {
        const MAX_HEAD: usize = 64 * 1024;
        let mut head_raw = Vec::new();
        let mut lines: Vec<String> = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = (&mut self.reader)
                .take((MAX_HEAD + 1 - head_raw.len().min(MAX_HEAD)) as u64)
                .read_until(b'\n', &mut line)
                .map_err(|e| {
                    format!(
                        "read error ({:?}: {e}) after {} head bytes [{}]",
                        e.kind(),
                        head_raw.len(),
                        excerpt(&head_raw, 500)
                    )
                })?;
            head_raw.extend_from_slice(&line);
            if n == 0 {
                return Err(if head_raw.is_empty() {
                    "connection closed (EOF) before any response byte".to_string()
                } else {
                    format!(
                        "EOF in the middle of the head [{}]",
                        excerpt(&head_raw, 500)
                    )
                });
            }
            if head_raw.len() > MAX_HEAD {
                return Err(format!("response head over {MAX_HEAD} bytes"));
            }
            if !line.ends_with(b"\r\n") {
                return Err(format!(
                    "head line not terminated by CRLF: [{}]",
                    excerpt(&line, 200)
                ));
            }
            line.truncate(line.len() - 2);
            if line.is_empty() {
                break;
            }
            lines
                .push(String::from_utf8(line).map_err(|_| {
                    format!("non-UTF-8 head line in [{}]", excerpt(&head_raw, 500))
                })?);
        }
        let head_str = String::from_utf8_lossy(&head_raw).into_owned();
        let status_line = lines
            .first()
            .ok_or_else(|| "empty response head".to_string())?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let code = parts.next().unwrap_or("");
        let reason = parts.next().unwrap_or("").to_string();
        if !version.starts_with("HTTP/1.") || version.len() != 8 {
            return Err(format!("bad status line {status_line:?}"));
        }
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("bad status code in {status_line:?}"));
        }
        let status: u16 = code.parse().unwrap();
        let mut headers = Vec::new();
        for l in &lines[1..] {
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| format!("header line without colon: {l:?}\n{head_str}"))?;
            if n.is_empty() || n.contains(' ') || n.contains('\t') {
                return Err(format!("bad header name in {l:?}\n{head_str}"));
            }
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            head_raw: head_str.clone(),
        };

        // Rules every response follows.
        match resp.header("date") {
            Some(d) if is_imf_fixdate(d) => {}
            Some(d) => {
                return Err(format!(
                    "Date header {d:?} is not an IMF-fixdate\n{head_str}"
                ))
            }
            None => return Err(format!("response without Date header\n{head_str}")),
        }
        // Every response carries exactly one Content-Length, but a 204,
        // which must carry none (RFC 9110 §8.6). A 304 is exempt here only
        // so the conditional-request case can report it with its own
        // message (it checks the header itself).
        let cls = resp.headers_named("content-length");
        if status == 204 && !cls.is_empty() {
            return Err(format!("a 204 with Content-Length\n{head_str}"));
        }
        if cls.len() > 1 || (cls.is_empty() && !matches!(status, 204 | 304)) {
            return Err(format!(
                "response must carry exactly one Content-Length, has {}\n{head_str}",
                cls.len()
            ));
        }
        let cl: u64 = match cls.first() {
            Some(v) => v
                .parse()
                .map_err(|_| format!("unparsable Content-Length {v:?}\n{head_str}"))?,
            None => 0,
        };
        if resp.header("transfer-encoding").is_some() {
            return Err(format!(
                "response has Transfer-Encoding (expected Content-Length framing)\n{head_str}"
            ));
        }
        if leaked_secret(&head_raw) {
            return Err(format!(
                "SECRET CONTENT LEAKED in response head\n{head_str}"
            ));
        }

        let bodyless =
            head_request || status == 304 || status == 204 || (100..200).contains(&status);
        if !bodyless {
            let mut body = vec![0u8; cl as usize];
            let mut got = 0;
            while got < body.len() {
                match self.reader.read(&mut body[got..]) {
                    Ok(0) => {
                        return Err(format!("EOF after {got} of {cl} body bytes\n{}", head_str))
                    }
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(format!(
                            "read error ({:?}: {e}) after {got} of {cl} body bytes\n{head_str}",
                            e.kind()
                        ))
                    }
                }
            }
            resp.body = body;
            if leaked_secret(&resp.body) {
                return Err(format!(
                    "SECRET CONTENT LEAKED in response body\n{}",
                    resp.summary()
                ));
            }
        }
        Ok(resp)
    }

    /// Send raw bytes and read one (non-HEAD) response, returning errors
    /// instead of panicking.
    pub fn try_read_after(&mut self, raw: &[u8]) -> Result<Response, String> {
        self.send_lenient(raw).map_err(|e| format!("write: {e}"))?;
        self.try_read_response(false)
    }

    /// Send `GET path` and read the response.
    #[track_caller]
    pub fn get(&mut self, path: &str) -> Response {
        self.send(&get_req(path));
        self.read_response(false)
    }

    /// Send raw bytes and read one response.
    #[track_caller]
    pub fn roundtrip(&mut self, raw: &[u8], head_request: bool) -> Response {
        self.send(raw);
        self.read_response(head_request)
    }

    /// Read up to `n` raw bytes (blocking until at least one arrives).
    #[track_caller]
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        let got = self
            .reader
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("raw read: {e}"));
        buf.truncate(got);
        buf
    }

    /// Read exactly `n` raw bytes.
    #[track_caller]
    pub fn read_exact_raw(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.reader
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("raw read of {n} bytes: {e}"));
        buf
    }

    /// Wait for the peer to close: Ok(how) if the next read sees EOF or a
    /// reset with no further byte; Err(description) if bytes arrive or
    /// nothing happens within IO_TIMEOUT.
    pub fn wait_closed(&mut self) -> Result<Closed, String> {
        let mut buf = [0u8; 4096];
        match self.reader.read(&mut buf) {
            Ok(0) => Ok(Closed::Eof),
            Ok(n) => Err(format!(
                "expected the server to close the connection, but got {n} more bytes: [{}]",
                excerpt(&buf[..n], 300)
            )),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Closed::Reset),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(format!(
                    "expected the server to close the connection, but it stayed open for {IO_TIMEOUT:?}"
                ))
            }
            Err(e) => Err(format!("expected EOF, got read error {:?}: {e}", e.kind())),
        }
    }

    /// Panic unless the server closes the connection next (EOF or RST, no
    /// further bytes).
    #[track_caller]
    pub fn expect_closed(&mut self, what: &str) -> Closed {
        match self.wait_closed() {
            Ok(c) => c,
            Err(e) => panic!("{what}: {e}"),
        }
    }

    /// Close with RST instead of FIN.
    pub fn reset(self) {
        set_linger_zero(&self.stream);
        drop(self);
    }
}

// ---------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------

/// Command-line options of a server.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    pub threads: u32,
    pub header_timeout: String,
    pub keepalive_timeout: String,
    pub max_body_bytes: Option<u64>,
    /// Appended verbatim.
    pub extra: Vec<String>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            threads: 2,
            header_timeout: "2s".into(),
            keepalive_timeout: "5s".into(),
            max_body_bytes: None,
            extra: Vec::new(),
        }
    }
}

/// A running server child process; killed (SIGKILL) on drop if still alive.
pub struct Server {
    pub variant: String,
    pub addr: SocketAddr,
    pub pid: u32,
    pub args: Vec<String>,
    child: Child,
    stderr_file: tempfile::NamedTempFile,
    exited: Option<ExitStatus>,
}

impl Server {
    /// Start `variant` serving `root`; returns once it printed its address.
    #[track_caller]
    pub fn start(variant: &str, root: &Path, opts: &ServerOpts) -> Server {
        Server::start_limited(variant, root, opts, None)
    }

    /// As [`Server::start`], with the server's soft RLIMIT_NOFILE set to
    /// `nofile` (its hard limit stays this process's, so it can be raised
    /// again with `prlimit`): for the descriptor-exhaustion cases.
    #[track_caller]
    pub fn start_with_nofile(variant: &str, root: &Path, opts: &ServerOpts, nofile: u64) -> Server {
        Server::start_limited(variant, root, opts, Some(nofile))
    }

    #[track_caller]
    fn start_limited(variant: &str, root: &Path, opts: &ServerOpts, nofile: Option<u64>) -> Server {
        raise_nofile_limit();
        let hard_nofile = nofile_hard_limit();
        // A name the catalog lacks fails here, listing the catalog.
        self::variant(variant);
        let bin = bin_path(variant);
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--root".into(),
            root.to_str().expect("utf-8 temp path").into(),
            "--threads".into(),
            opts.threads.to_string(),
            "--header-timeout".into(),
            opts.header_timeout.clone(),
            "--keepalive-timeout".into(),
            opts.keepalive_timeout.clone(),
        ];
        if let Some(m) = opts.max_body_bytes {
            args.push("--max-body-bytes".into());
            args.push(m.to_string());
        }
        args.extend(opts.extra.iter().cloned());

        let stderr_file = tempfile::NamedTempFile::new().expect("temp file for stderr");
        let mut cmd = Command::new(&bin);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; it makes the
        // kernel kill the server if the test thread that spawned it dies
        // (e.g. the test binary is killed), so no server outlives the tests.
        // setrlimit is a plain syscall on a struct built before the fork.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                if let Some(n) = nofile {
                    let lim = libc::rlimit {
                        rlim_cur: n.min(hard_nofile),
                        rlim_max: hard_nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                stderr_file.reopen().expect("reopen stderr file"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let first = r.read_line(&mut line).map(|_| line.clone());
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full stdout pipe.
            let _ = io::copy(&mut r, &mut io::sink());
        });
        let mut server = Server {
            variant: variant.to_string(),
            addr: "127.0.0.1:1".parse().unwrap(),
            pid,
            args,
            child,
            stderr_file,
            exited: None,
        };
        let line = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => panic!(
                "{variant}: reading first stdout line: {e}\nstderr:\n{}",
                server.stderr_tail()
            ),
            Err(_) => panic!(
                "{variant}: no `listening on` line within {IO_TIMEOUT:?} (args {:?})\nstderr:\n{}",
                server.args,
                server.stderr_tail()
            ),
        };
        let addr_str = line.trim().strip_prefix("listening on ").unwrap_or_else(|| {
            panic!(
                "{variant}: first stdout line is {line:?}, expected `listening on 127.0.0.1:PORT` (args {:?})\nstderr:\n{}",
                server.args,
                server.stderr_tail()
            )
        });
        server.addr = addr_str
            .parse()
            .unwrap_or_else(|e| panic!("{variant}: bad address {addr_str:?}: {e}"));
        assert_ne!(server.addr.port(), 0, "{variant}: printed port 0");
        server
    }

    /// The catalog entry of the variant this server runs.
    pub fn catalog(&self) -> &'static Variant {
        variant(&self.variant)
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.exited = Some(st);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Number of entries in /proc/PID/fd.
    pub fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Listing of /proc/PID/fd with link targets, for messages.
    pub fn fd_listing(&self) -> String {
        let mut out = Vec::new();
        if let Ok(d) = fs::read_dir(format!("/proc/{}/fd", self.pid)) {
            for e in d.flatten() {
                let target = fs::read_link(e.path())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                out.push(format!("{} -> {}", e.file_name().to_string_lossy(), target));
            }
        }
        out.sort();
        out.join("\n")
    }

    /// fd count once it has stopped changing (startup threads may still be
    /// opening their epoll instances and listeners right after the line).
    pub fn stable_fd_count(&self) -> usize {
        let mut last = self.fd_count();
        let mut same = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        while same < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.fd_count();
            if now == last {
                same += 1;
            } else {
                same = 0;
                last = now;
            }
        }
        last
    }

    /// Poll (bounded by `timeout`) until the fd count equals `target`;
    /// returns the last count seen.
    pub fn wait_fd_count(&self, target: usize, timeout: Duration) -> usize {
        let mut last = self.fd_count();
        wait_until(timeout, Duration::from_millis(100), || {
            last = self.fd_count();
            last == target
        });
        last
    }

    /// Send `sig` to the server.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid,
            io::Error::last_os_error()
        );
    }

    /// Wait (bounded) for the process to exit; None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exited {
            return Some(st);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st);
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send `sig` and panic unless the server exits with status 0 in time.
    #[track_caller]
    pub fn stop_with(&mut self, sig: libc::c_int) {
        self.signal(sig);
        match self.wait_exit(IO_TIMEOUT) {
            Some(st) => assert!(
                st.success(),
                "{}: after signal {sig} the server exited with {st} (expected status 0)\nstderr:\n{}",
                self.variant,
                self.stderr_tail()
            ),
            None => panic!(
                "{}: server did not exit within {IO_TIMEOUT:?} of signal {sig}\nstderr:\n{}",
                self.variant,
                self.stderr_tail()
            ),
        }
    }

    /// Last ~4 KB of the server's stderr.
    pub fn stderr_tail(&self) -> String {
        let data = fs::read(self.stderr_file.path()).unwrap_or_default();
        let start = data.len().saturating_sub(4096);
        String::from_utf8_lossy(&data[start..]).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Document root
// ---------------------------------------------------------------------------

/// Expected Content-Type of a static file.
#[derive(Clone, Copy, Debug)]
pub enum Ctype {
    /// The full value, compared case-insensitively ignoring spaces.
    Exact(&'static str),
    /// The media type (parameters ignored) is one of these.
    MediaOneOf(&'static [&'static str]),
}

impl Ctype {
    pub fn matches(&self, value: Option<&str>) -> bool {
        let Some(v) = value else { return false };
        let norm = |s: &str| {
            s.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase()
        };
        match self {
            Ctype::Exact(e) => norm(v) == norm(e),
            Ctype::MediaOneOf(list) => {
                let media = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                list.iter().any(|m| *m == media)
            }
        }
    }
}

/// One file served from the root.
#[derive(Clone, Debug)]
pub struct StaticFile {
    /// Request path (already percent-encoded where needed).
    pub url: String,
    pub content: Vec<u8>,
    pub ctype: Ctype,
}

/// A temporary directory `tmp` with `tmp/root` (the docroot) and, outside
/// the root, `tmp/secret.txt` and `tmp/outside/secret2.txt`.
pub struct DocRoot {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    /// Content of both secret files (registered with [`register_secret`]).
    pub secret: Vec<u8>,
    /// Files with their expected content type.
    pub files: Vec<StaticFile>,
    /// Content of `/big.bin` (4 MiB).
    pub big: Vec<u8>,
    /// Content of `/range.txt`.
    pub range: Vec<u8>,
    /// Content of `/hello.txt` (also served through `/link_in.txt`).
    pub hello: Vec<u8>,
    /// Contents of `/p/00.txt` .. `/p/19.txt`.
    pub pipelined: Vec<Vec<u8>>,
    /// Content of `/dated.txt`, whose mtime is [`DATED_MTIME`].
    pub dated: Vec<u8>,
}

/// mtime of `/dated.txt`: 2020-01-01T00:00:00Z.
pub const DATED_MTIME_UNIX: u64 = 1_577_836_800;
/// The same instant as an IMF-fixdate.
pub const DATED_MTIME_HTTP: &str = "Wed, 01 Jan 2020 00:00:00 GMT";

pub const BIG_LEN: usize = 4 * 1024 * 1024;

impl DocRoot {
    pub fn build() -> DocRoot {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("dir")).unwrap();
        fs::create_dir_all(root.join("p")).unwrap();
        fs::create_dir_all(tmp.path().join("outside")).unwrap();

        let secret = format!("TOPSECRET-{:016x}-DO-NOT-SERVE", unique_u64()).into_bytes();
        register_secret(&secret);
        fs::write(tmp.path().join("secret.txt"), &secret).unwrap();
        fs::write(tmp.path().join("outside").join("secret2.txt"), &secret).unwrap();

        let mut files: Vec<StaticFile> = Vec::new();
        let mut add = |rel: &str, url: &str, content: Vec<u8>, ctype: Ctype| {
            fs::write(root.join(rel), &content).unwrap();
            files.push(StaticFile {
                url: url.to_string(),
                content,
                ctype,
            });
        };
        const HTML: Ctype = Ctype::Exact("text/html; charset=utf-8");
        const TXT: Ctype = Ctype::Exact("text/plain; charset=utf-8");
        const OCTET: Ctype = Ctype::Exact("application/octet-stream");
        let hello = b"hello from the docroot\n".to_vec();
        add(
            "index.html",
            "/index.html",
            b"<!doctype html><title>root</title>root index\n".to_vec(),
            HTML,
        );
        add("hello.txt", "/hello.txt", hello.clone(), TXT);
        add(
            "hello world.txt",
            "/hello%20world.txt",
            b"a file name with a space\n".to_vec(),
            TXT,
        );
        add(
            "style.css",
            "/style.css",
            b"body { color: red }\n".to_vec(),
            Ctype::MediaOneOf(&["text/css"]),
        );
        add(
            "app.js",
            "/app.js",
            b"console.log('hi');\n".to_vec(),
            Ctype::MediaOneOf(&["text/javascript", "application/javascript"]),
        );
        add(
            "data.json",
            "/data.json",
            b"{\"k\": [1, 2, 3]}\n".to_vec(),
            Ctype::MediaOneOf(&["application/json"]),
        );
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(pseudo_random_bytes(3000, 11));
        add(
            "img.png",
            "/img.png",
            png,
            Ctype::MediaOneOf(&["image/png"]),
        );
        let mut jpg = b"\xff\xd8\xff\xe0".to_vec();
        jpg.extend(pseudo_random_bytes(5000, 12));
        add(
            "photo.jpg",
            "/photo.jpg",
            jpg,
            Ctype::MediaOneOf(&["image/jpeg"]),
        );
        add(
            "pic.svg",
            "/pic.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>\n".to_vec(),
            Ctype::MediaOneOf(&["image/svg+xml"]),
        );
        add("blob.xyz", "/blob.xyz", pseudo_random_bytes(777, 13), OCTET);
        add("noext", "/noext", b"no extension at all\n".to_vec(), OCTET);
        add(
            "dir/index.html",
            "/dir/index.html",
            b"<p>dir index</p>\n".to_vec(),
            HTML,
        );
        add(
            "dir/file.txt",
            "/dir/file.txt",
            b"inside dir\n".to_vec(),
            TXT,
        );
        let range = b"0123456789abcdefghij".to_vec();
        add("range.txt", "/range.txt", range.clone(), TXT);
        let big = pseudo_random_bytes(BIG_LEN, 0xB16);
        add("big.bin", "/big.bin", big.clone(), OCTET);

        let mut pipelined = Vec::new();
        for i in 0..20 {
            let content = format!("pipelined file {i:02}\n")
                .repeat(i + 1)
                .into_bytes();
            fs::write(root.join("p").join(format!("{i:02}.txt")), &content).unwrap();
            pipelined.push(content);
        }

        let dated = b"dated content\n".to_vec();
        let dated_path = root.join("dated.txt");
        fs::write(&dated_path, &dated).unwrap();
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&dated_path)
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(DATED_MTIME_UNIX))
            .unwrap();
        drop(f);

        // Symlinks: one inside the root to a file inside it (served), and
        // three pointing outside (relative file, absolute file, directory).
        use std::os::unix::fs::symlink;
        symlink("hello.txt", root.join("link_in.txt")).unwrap();
        symlink("../secret.txt", root.join("link_out_file")).unwrap();
        symlink(tmp.path().join("secret.txt"), root.join("link_out_abs.txt")).unwrap();
        symlink("../outside", root.join("link_out_dir")).unwrap();

        DocRoot {
            tmp,
            root,
            secret,
            files,
            big,
            range,
            hello,
            pipelined,
            dated,
        }
    }
}

// ---------------------------------------------------------------------------
// Minimal JSON
// ---------------------------------------------------------------------------

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let b = s.as_bytes();
        let mut i = 0;
        let v = parse_value(b, &mut i)?;
        skip_ws(b, &mut i);
        if i != b.len() {
            return Err(format!("trailing data at byte {i}"));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_obj(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Obj(m) => Some(m),
            _ => None,
        }
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
        *i += 1;
    }
}

fn parse_value(b: &[u8], i: &mut usize) -> Result<Json, String> {
    skip_ws(b, i);
    match b.get(*i) {
        None => Err("unexpected end".into()),
        Some(b'{') => {
            *i += 1;
            let mut m = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Ok(Json::Obj(m));
            }
            loop {
                skip_ws(b, i);
                let k = match parse_value(b, i)? {
                    Json::Str(s) => s,
                    _ => return Err(format!("object key not a string at byte {i}")),
                };
                skip_ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return Err(format!("expected ':' at byte {i}"));
                }
                *i += 1;
                let v = parse_value(b, i)?;
                m.push((k, v));
                skip_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return Ok(Json::Obj(m));
                    }
                    _ => return Err(format!("expected ',' or '}}' at byte {i}")),
                }
            }
        }
        Some(b'[') => {
            *i += 1;
            let mut a = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Ok(Json::Arr(a));
            }
            loop {
                a.push(parse_value(b, i)?);
                skip_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return Ok(Json::Arr(a));
                    }
                    _ => return Err(format!("expected ',' or ']' at byte {i}")),
                }
            }
        }
        Some(b'"') => {
            *i += 1;
            let mut s = String::new();
            loop {
                match b.get(*i) {
                    None => return Err("unterminated string".into()),
                    Some(b'"') => {
                        *i += 1;
                        return Ok(Json::Str(s));
                    }
                    Some(b'\\') => {
                        let e = *b.get(*i + 1).ok_or("bad escape")?;
                        *i += 2;
                        match e {
                            b'"' => s.push('"'),
                            b'\\' => s.push('\\'),
                            b'/' => s.push('/'),
                            b'b' => s.push('\u{8}'),
                            b'f' => s.push('\u{c}'),
                            b'n' => s.push('\n'),
                            b'r' => s.push('\r'),
                            b't' => s.push('\t'),
                            b'u' => {
                                let hex = b.get(*i..*i + 4).ok_or("short \\u escape")?;
                                let code = u32::from_str_radix(
                                    std::str::from_utf8(hex).map_err(|_| "bad \\u")?,
                                    16,
                                )
                                .map_err(|_| "bad \\u escape")?;
                                *i += 4;
                                s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            }
                            _ => return Err(format!("bad escape at byte {i}")),
                        }
                    }
                    Some(&c) if c < 0x20 => return Err(format!("control byte in string at {i}")),
                    Some(_) => {
                        // Copy one UTF-8 sequence.
                        let start = *i;
                        *i += 1;
                        while *i < b.len() && (b[*i] & 0xC0) == 0x80 {
                            *i += 1;
                        }
                        s.push_str(std::str::from_utf8(&b[start..*i]).map_err(|_| "bad utf-8")?);
                    }
                }
            }
        }
        Some(b't') if b[*i..].starts_with(b"true") => {
            *i += 4;
            Ok(Json::Bool(true))
        }
        Some(b'f') if b[*i..].starts_with(b"false") => {
            *i += 5;
            Ok(Json::Bool(false))
        }
        Some(b'n') if b[*i..].starts_with(b"null") => {
            *i += 4;
            Ok(Json::Null)
        }
        Some(c) if *c == b'-' || c.is_ascii_digit() => {
            let start = *i;
            *i += 1;
            while *i < b.len() && matches!(b[*i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                *i += 1;
            }
            let txt = std::str::from_utf8(&b[start..*i]).unwrap();
            txt.parse::<f64>()
                .map(Json::Num)
                .map_err(|_| format!("bad number {txt:?}"))
        }
        Some(c) => Err(format!("unexpected byte {:?} at {i}", *c as char)),
    }
}

// ---------------------------------------------------------------------------
// Processes, directories and response heads (added for tests/features.rs)
// ---------------------------------------------------------------------------

/// One line of `/proc/PID/stat`, the fields the tests look at.
#[derive(Clone, Debug)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    /// `R`, `S`, `D`, `Z`, ...
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
}

/// `/proc/PID/stat` of one process, if it exists.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let mut it = s.get(close + 1..)?.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
    })
}

/// Every process visible in /proc.
pub fn all_processes() -> Vec<ProcStat> {
    let mut out = Vec::new();
    if let Ok(d) = fs::read_dir("/proc") {
        for e in d.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(st) = proc_stat(pid) {
                    out.push(st);
                }
            }
        }
    }
    out
}

/// Processes whose parent is `pid` (zombies included).
pub fn children_of(pid: u32) -> Vec<ProcStat> {
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .collect()
}

/// The server whose main process is `pid`, as processes: `pid` and every
/// live descendant running the same executable — a process model's
/// workers or per-connection children, not the CGI scripts they run (a
/// zombie has no executable left, so an unreaped child is not one of them).
pub fn server_processes(pid: u32) -> Vec<u32> {
    let exe = |p: u32| fs::read_link(format!("/proc/{p}/exe")).ok();
    let Some(own) = exe(pid) else {
        return vec![pid];
    };
    let all = all_processes();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for p in all.iter().filter(|p| p.ppid == parent) {
            if exe(p.pid).as_ref() == Some(&own) && !tree.contains(&p.pid) {
                tree.push(p.pid);
            }
        }
        i += 1;
    }
    tree
}

/// Children of the server's processes that are not themselves server
/// processes (see [`server_processes`]): CGI scripts, what they left
/// behind, zombies nobody reaped.
pub fn children_of_server(pid: u32) -> Vec<ProcStat> {
    let servers = server_processes(pid);
    all_processes()
        .into_iter()
        .filter(|p| servers.contains(&p.ppid) && !servers.contains(&p.pid))
        .collect()
}

/// Whether `pid` still runs: it exists and is not a zombie. A zombie whose
/// parent is one of the processes of the server `unreaped_by` counts as
/// running (the server has not reaped it).
pub fn process_lingers(pid: u32, unreaped_by: u32) -> Option<ProcStat> {
    let st = proc_stat(pid)?;
    if st.state != 'Z' || st.ppid == unreaped_by {
        return Some(st);
    }
    server_processes(unreaped_by)
        .contains(&st.ppid)
        .then_some(st)
}

/// How many threads of the server `pid` (every process of it, see
/// [`server_processes`]) are blocked in nanosleep/clock_nanosleep right now
/// (from /proc/PID/task/TID/syscall); None if that is not readable.
pub fn threads_in_nanosleep(pid: u32) -> Option<usize> {
    let mut readable = false;
    let mut n = 0;
    for p in server_processes(pid) {
        let Ok(d) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for e in d.flatten() {
            if let Ok(s) = fs::read_to_string(e.path().join("syscall")) {
                readable = true;
                let nr = s
                    .split_whitespace()
                    .next()
                    .and_then(|t| t.parse::<libc::c_long>().ok());
                if nr == Some(libc::SYS_nanosleep) || nr == Some(libc::SYS_clock_nanosleep) {
                    n += 1;
                }
            }
        }
    }
    readable.then_some(n)
}

/// Wait (bounded by 3 s) until more threads of `pid` sleep than `before`
/// (from [`threads_in_nanosleep`]): the event "a sleep handler started".
/// Without /proc access, waits 300 ms instead. Returns whether it was seen.
pub fn wait_for_new_sleeper(pid: u32, before: Option<usize>) -> bool {
    match before {
        Some(b) => wait_until(Duration::from_secs(3), Duration::from_millis(5), || {
            threads_in_nanosleep(pid).is_some_and(|n| n > b)
        }),
        None => {
            std::thread::sleep(Duration::from_millis(300));
            false
        }
    }
}

/// Sorted file names in `dir` (empty if unreadable).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The fds of the server `pid` (every process of it, see
/// [`server_processes`]) whose link target lies under `dir`, `dir` itself
/// excluded (e.g. open temp files, not the directory descriptor).
pub fn open_files_under(pid: u32, dir: &Path) -> Vec<String> {
    let canon = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out = Vec::new();
    for p in server_processes(pid) {
        let Ok(d) = fs::read_dir(format!("/proc/{p}/fd")) else {
            continue;
        };
        for e in d.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                if (t.starts_with(&canon) && t != canon) || (t.starts_with(dir) && t != dir) {
                    out.push(t.display().to_string());
                }
            }
        }
    }
    out
}

impl Conn {
    /// Read one response head (status line and headers) and no body, with
    /// none of [`Conn::try_read_response`]'s Content-Length rules: for 204
    /// responses, which must not carry a body (nor, per RFC 9110, a
    /// Content-Length).
    pub fn try_read_head_only(&mut self) -> Result<Response, String> {
        let mut head_raw = Vec::new();
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = (&mut self.reader)
                .take(16 * 1024)
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("read error ({:?}: {e}) in the head", e.kind()))?;
            head_raw.extend_from_slice(&line);
            if n == 0 {
                return Err(format!(
                    "EOF before the end of the head [{}]",
                    excerpt(&head_raw, 500)
                ));
            }
            if head_raw.len() > 64 * 1024 || !line.ends_with(b"\r\n") {
                return Err(format!("bad head [{}]", excerpt(&head_raw, 500)));
            }
            line.truncate(line.len() - 2);
            if line.is_empty() {
                break;
            }
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        let head_str = String::from_utf8_lossy(&head_raw).into_owned();
        let status_line = lines.first().ok_or("empty head")?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status = parts
            .next()
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let reason = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        for l in &lines[1..] {
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| format!("header line without colon: {l:?}\n{head_str}"))?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        Ok(Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            head_raw: head_str,
        })
    }
}

/// The TCP state of the server's end of the connection between server port
/// `server_port` and client port `client_port` (`st` in /proc/net/tcp: 1
/// ESTABLISHED, 4 FIN_WAIT1, 5 FIN_WAIT2, ...); None once it is gone. A
/// state other than 1 means the server has closed (or shut down) its end.
pub fn server_socket_state(server_port: u16, client_port: u16) -> Option<u8> {
    let text = fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || port_of(f[1]) != Some(server_port) || port_of(f[2]) != Some(client_port) {
            return None;
        }
        u8::from_str_radix(f[3], 16).ok()
    })
}

/// Bytes the server has not yet read on its end of the TCP connection
/// between server port `server_port` and client port `client_port`
/// (`rx_queue` of that socket in /proc/net/tcp); None if not found. Zero
/// means the server application has consumed everything the client sent.
pub fn server_unread_bytes(server_port: u16, client_port: u16) -> Option<u64> {
    let text = fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || port_of(f[1]) != Some(server_port) || port_of(f[2]) != Some(client_port) {
            return None;
        }
        let (_, rx) = f[4].split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}
