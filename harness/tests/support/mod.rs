//! Helpers for the `loadgen` integration tests.
//!
//! - [`run_loadgen`] / [`run_loadgen_json`]: run the `loadgen` binary with a
//!   hard deadline (a hang guard: the child is killed and the test fails if
//!   it outlives it), capturing exit status, stdout, stderr and the
//!   `--json` result.
//! - [`Variant`]: one of the project's server binaries (`epoll`, ...) as a
//!   child process on an ephemeral port, with `/stats` access; stopped with
//!   SIGTERM (killed as a last resort) when dropped.
//! - [`TestServer`]: a small `std::net` HTTP/1.1 server whose per-connection
//!   behaviour is a closure (answer and close, never answer, answer 500,
//!   close when idle, answer after a delay, pipelining-aware...). Every
//!   thread it starts is stopped and joined when it is dropped.
//! - JSON accessors, wrk report parsing, and a base64 decoder for the
//!   serialized HdrHistograms.
#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest wait for anything that is not a loadgen run (server start-up,
/// `/stats`, a stop).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Running loadgen
// ---------------------------------------------------------------------------

/// Path of the loadgen binary under test.
pub fn loadgen_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loadgen")
}

/// The outcome of one loadgen (or other binary's) run.
pub struct Run {
    /// The program's name, for messages.
    pub program: String,
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Exit code (None when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {}\n  exit: {}\n  elapsed: {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.program,
            shell_words(&self.args),
            self.status,
            self.elapsed,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panic unless the program exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "{what}: expected exit code {code}\n{}",
            self.describe()
        );
        self
    }

    /// Non-empty stdout lines.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run loadgen with `args`; the child is killed and the test fails if it has
/// not exited within `limit` (a hang guard, not a timing assertion).
#[track_caller]
pub fn run_loadgen(args: &[&str], limit: Duration) -> Run {
    run_program(loadgen_bin(), args, &[], limit)
}

/// Run the harness with `args` and the environment variables `env` set,
/// under the same hang guard as [`run_loadgen`].
#[track_caller]
pub fn run_harness(args: &[&str], env: &[(&str, &Path)], limit: Duration) -> Run {
    run_program(env!("CARGO_BIN_EXE_harness"), args, env, limit)
}

#[track_caller]
fn run_program(program: &str, args: &[&str], env: &[(&str, &Path)], limit: Duration) -> Run {
    let name = Path::new(program)
        .file_name()
        .map_or(program.into(), |n| n.to_string_lossy().into_owned());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tempfile::tempfile().expect("temp file for stdout");
    let err = tempfile::tempfile().expect("temp file for stderr");
    let mut cmd = Command::new(program);
    die_with_parent(&mut cmd);
    let start = Instant::now();
    let mut child = cmd
        .args(&args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().expect("dup stdout file")))
        .stderr(Stdio::from(err.try_clone().expect("dup stderr file")))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(e) => panic!("waiting for {name}: {e}"),
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let stdout = read_all(out);
    let stderr = read_all(err);
    match status {
        Some(status) => {
            let run = Run {
                program: name,
                args,
                status,
                stdout,
                stderr,
                elapsed,
            };
            // LOADGEN_TEST_VERBOSE=1 cargo test ... -- --nocapture shows every run.
            if std::env::var_os("LOADGEN_TEST_VERBOSE").is_some() {
                println!("{}", run.describe());
            }
            run
        }
        None => panic!(
            "{name} {} did not exit within {limit:?} (killed; it must never hang)\n--- stdout ---\n{}\n--- stderr ---\n{}",
            shell_words(&args),
            stdout.trim_end(),
            stderr.trim_end()
        ),
    }
}

/// Run loadgen with `--json FILE` prepended to `args`, and parse the file.
/// Panics (with the run's output) if the file is missing or not JSON.
#[track_caller]
pub fn run_loadgen_json(args: &[&str], limit: Duration) -> (Run, Value) {
    let dir = tempfile::tempdir().expect("temp dir for --json");
    let path = dir.path().join("result.json");
    let path_s = path.to_str().expect("utf-8 temp path").to_string();
    let mut all: Vec<&str> = vec!["--json", &path_s];
    all.extend_from_slice(args);
    let run = run_loadgen(&all, limit);
    let json = read_json(&path, &run);
    (run, json)
}

/// Parse a `--json` output file.
#[track_caller]
pub fn read_json(path: &Path, run: &Run) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "--json file {} not readable: {e}\n{}",
            path.display(),
            run.describe()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "--json file {} is not valid JSON ({e}):\n{text}\n{}",
            path.display(),
            run.describe()
        )
    })
}

fn read_all(mut f: fs::File) -> String {
    use std::io::Seek;
    let mut buf = Vec::new();
    let _ = f.seek(io::SeekFrom::Start(0));
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Make the kernel kill the child if the test process dies, so no server or
/// loadgen outlives an aborted test run.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

/// A TCP port on 127.0.0.1 with nothing listening on it (bound, then closed).
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = l.local_addr().expect("local addr").port();
    drop(l);
    port
}

// ---------------------------------------------------------------------------
// JSON accessors
// ---------------------------------------------------------------------------

/// The value at a dotted path (`errors.status_by_code`), or None.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for key in path.split('.') {
        cur = cur.as_object()?.get(key)?;
    }
    Some(cur)
}

/// The value at a dotted path; panics (showing the JSON and the run) if absent.
#[track_caller]
pub fn field<'a>(v: &'a Value, path: &str, run: &Run) -> &'a Value {
    lookup(v, path).unwrap_or_else(|| {
        panic!(
            "--json result has no `{path}`:\n{}\n{}",
            pretty(v),
            run.describe()
        )
    })
}

/// An integer at a dotted path (accepts 12 or 12.0).
#[track_caller]
pub fn int(v: &Value, path: &str, run: &Run) -> u64 {
    let x = field(v, path, run);
    if let Some(n) = x.as_u64() {
        return n;
    }
    match x.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 => f as u64,
        _ => panic!(
            "--json `{path}` is {x}, expected a non-negative integer\n{}",
            run.describe()
        ),
    }
}

/// A number at a dotted path.
#[track_caller]
pub fn num(v: &Value, path: &str, run: &Run) -> f64 {
    let x = field(v, path, run);
    x.as_f64().unwrap_or_else(|| {
        panic!(
            "--json `{path}` is {x}, expected a number\n{}",
            run.describe()
        )
    })
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The error counters of a `--json` result, by name.
pub const ERROR_KINDS: [&str; 6] = [
    "connect",
    "read",
    "write",
    "timeout",
    "status",
    "idle_close",
];

/// Panic unless every error counter is zero except those named in `nonzero_ok`.
#[track_caller]
pub fn expect_no_errors_except(v: &Value, nonzero_ok: &[&str], run: &Run, what: &str) {
    for kind in ERROR_KINDS {
        if nonzero_ok.contains(&kind) {
            continue;
        }
        let n = int(v, &format!("errors.{kind}"), run);
        assert_eq!(
            n,
            0,
            "{what}: errors.{kind} = {n}, expected 0\nerrors: {}\n{}",
            lookup(v, "errors").map(pretty).unwrap_or_default(),
            run.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// base64 and HdrHistogram
// ---------------------------------------------------------------------------

/// Decode standard (or URL-safe) base64, padding optional, whitespace ignored.
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    }
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let body: &[u8] = {
        let mut end = clean.len();
        while end > 0 && clean[end - 1] == b'=' {
            end -= 1;
        }
        if clean.len() - end > 2 {
            return Err("more than two '=' padding characters".into());
        }
        &clean[..end]
    };
    if body.len() % 4 == 1 {
        return Err(format!("invalid base64 length {}", body.len()));
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, &c) in body.iter().enumerate() {
        let v = val(c).ok_or_else(|| format!("invalid base64 character {:?} at {i}", c as char))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Decode a `histogram` field: base64, then HdrHistogram's V2 deserializer.
pub fn decode_histogram(b64: &str) -> Result<hdrhistogram::Histogram<u64>, String> {
    let bytes = base64_decode(b64).map_err(|e| format!("base64: {e}"))?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut io::Cursor::new(bytes))
        .map_err(|e| format!("V2 deserializer: {e:?}"))
}

// ---------------------------------------------------------------------------
// wrk report parsing
// ---------------------------------------------------------------------------

/// Parse a wrk time value (`631.00us`, `5.00ms`, `1.20s`, `2.00m`) into µs:
/// the bench runner's parser, which reads wrk's report the same way.
#[allow(unused_imports)] // not every test binary that includes this module reads wrk output
pub use harness::format::wrk::parse_time_us as parse_wrk_time_us;

/// Parse a wrk count (`80.00k`, `1.50M`, `12.00`).
pub fn parse_wrk_count(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix('k') {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('M') {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix('G') {
        (n, 1e9)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// Parse a wrk byte amount (`200.00MB`, `512.00B`, `1.00KB`, `3.00GB`).
pub fn parse_wrk_bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    for (suffix, mult) in [
        ("TB", 1024f64.powi(4)),
        ("GB", 1024f64.powi(3)),
        ("MB", 1024f64.powi(2)),
        ("KB", 1024.0),
        ("B", 1.0),
    ] {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| v * mult);
        }
    }
    None
}

/// Parse `70.00%`.
pub fn parse_percent(s: &str) -> Option<f64> {
    s.trim().strip_suffix('%')?.parse().ok()
}

// ---------------------------------------------------------------------------
// The project's server variants
// ---------------------------------------------------------------------------

/// Directory holding the loadgen binary, which is also where cargo puts the
/// `servers` crate's binaries (same target dir, same profile).
fn bin_dir() -> PathBuf {
    Path::new(loadgen_bin())
        .parent()
        .expect("loadgen binary has a parent directory")
        .to_path_buf()
}

/// Path of a server variant binary, built (once per test process) with the
/// same profile and target dir as loadgen so it is present and up to date.
///
/// `cargo test --workspace` builds every workspace binary anyway; `cargo test
/// -p harness` does not build the `servers` binaries, hence the build here.
/// (cargo releases its build lock while tests run, so a nested build works.)
pub fn variant_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(build_servers);
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "server binary {} is missing (building it failed: {}). Build it with \
             `cargo build -p servers --bins` (same profile as the tests), or run \
             `cargo test --workspace`, which builds every binary.",
            path.display(),
            built
                .as_ref()
                .err()
                .map(String::as_str)
                .unwrap_or("no error reported")
        );
    }
    if let Err(e) = built {
        eprintln!(
            "note: could not (re)build the servers binaries ({e}); using the existing {}",
            path.display()
        );
    }
    path
}

fn build_servers() -> Result<(), String> {
    let dir = bin_dir();
    let profile = dir
        .file_name()
        .and_then(|s| s.to_str())
        .ok_or("unrecognised target directory layout")?
        .to_string();
    let target_dir = dir
        .parent()
        .ok_or("unrecognised target directory layout")?
        .to_path_buf();
    // A `--target TRIPLE` build puts binaries in target/TRIPLE/PROFILE: not handled.
    if !target_dir.join("CACHEDIR.TAG").exists() && !target_dir.join(".rustc_info.json").exists() {
        return Err(format!(
            "{} does not look like a cargo target dir",
            target_dir.display()
        ));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("harness crate has no parent dir")?
        .to_path_buf();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "servers",
            "--bins",
            "--target-dir",
        ])
        .arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build -p servers --bins failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// One of the project's server variants, running as a child process.
pub struct Variant {
    pub name: String,
    pub addr: SocketAddr,
    child: std::process::Child,
    stderr_file: tempfile::NamedTempFile,
}

impl Variant {
    /// Start `name` (e.g. "epoll") with `--port 0` plus `extra` arguments.
    #[track_caller]
    pub fn start(name: &str, extra: &[&str]) -> Variant {
        let bin = variant_bin(name);
        let stderr_file = tempfile::NamedTempFile::new().expect("temp file for server stderr");
        let mut cmd = Command::new(&bin);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .args(["--addr", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                stderr_file.reopen().expect("reopen stderr file"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let first = r.read_line(&mut line).map(|_| line.clone());
            let _ = tx.send(first);
            // Drain so the server never blocks on a full pipe; ends at its exit.
            let _ = io::copy(&mut r, &mut io::sink());
        });
        let mut v = Variant {
            name: name.to_string(),
            addr: "127.0.0.1:1".parse().unwrap(),
            child,
            stderr_file,
        };
        let line = match rx.recv_timeout(IO_TIMEOUT) {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => panic!(
                "{name}: reading its first stdout line: {e}\nstderr:\n{}",
                v.stderr()
            ),
            Err(_) => panic!(
                "{name}: no `listening on` line within {IO_TIMEOUT:?}\nstderr:\n{}",
                v.stderr()
            ),
        };
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| {
            panic!(
                "{name}: first stdout line is {line:?}, expected `listening on 127.0.0.1:PORT`\nstderr:\n{}",
                v.stderr()
            )
        });
        v.addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("{name}: bad address {addr:?}: {e}"));
        v
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `total_requests` from GET /stats (that request itself is not counted
    /// in the value it returns, but is in later ones).
    #[track_caller]
    pub fn total_requests(&self) -> u64 {
        let (status, body) = http_get(self.addr, "/stats").unwrap_or_else(|e| {
            panic!("{}: GET /stats: {e}\nstderr:\n{}", self.name, self.stderr())
        });
        assert_eq!(status, 200, "{}: GET /stats status\n{body}", self.name);
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{}: /stats is not JSON ({e}): {body}", self.name));
        v.get("total_requests")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| {
                panic!(
                    "{}: /stats has no integer total_requests: {body}",
                    self.name
                )
            })
    }

    pub fn stderr(&self) -> String {
        let data = fs::read(self.stderr_file.path()).unwrap_or_default();
        let start = data.len().saturating_sub(4096);
        String::from_utf8_lossy(&data[start..]).into_owned()
    }
}

impl Drop for Variant {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + IO_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One GET with `Connection: close`; reads the head and a Content-Length
/// body (or to EOF without one), bounded by IO_TIMEOUT. Returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| bad(format!("bad status line in {head:?}")))?;
            let len: Option<usize> = head.split("\r\n").find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            });
            match len {
                Some(len) if buf.len() >= end + 4 + len => {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    return Ok((status, body));
                }
                _ => {}
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                if len.is_some() {
                    return Err(bad(format!("EOF before the end of the body: {head:?}")));
                }
                let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                return Ok((status, body));
            }
            buf.extend_from_slice(&chunk[..n]);
        } else {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(bad(format!(
                    "EOF before the end of the head: {:?}",
                    String::from_utf8_lossy(&buf)
                )));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

// ---------------------------------------------------------------------------
// Small std::net test servers
// ---------------------------------------------------------------------------

/// One request as received by a [`TestServer`].
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Try to parse one request at the start of `buf`: Ok(None) if incomplete,
/// Ok(Some((request, bytes used))) or Err(description).
fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("request head over 64 KB".into());
        }
        return Ok(None);
    };
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| "non-UTF-8 request head".to_string())?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad version in {line:?}"));
    }
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| format!("header line without a colon: {l:?}"))?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let mut len = 0usize;
    for (n, v) in &headers {
        if n.eq_ignore_ascii_case("content-length") {
            len = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
        }
        if n.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("unexpected Transfer-Encoding: {v}"));
        }
    }
    let total = end + 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((
        Request {
            method: method.to_string(),
            target: target.to_string(),
            version: version.to_string(),
            headers,
            body: buf[end + 4..total].to_vec(),
        },
        total,
    )))
}

/// What a [`TestServer`] observed, shared by all its connections.
#[derive(Default)]
pub struct ServerLog {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub responses: AtomicU64,
    /// Connections the server closed on purpose while idle.
    pub idle_closes: AtomicU64,
    /// Protocol violations seen (malformed requests, unexpected bytes...).
    pub problems: Mutex<Vec<String>>,
    /// Sizes of request batches (pipelining server).
    pub batches: Mutex<Vec<usize>>,
    /// Every request received, in arrival order per connection (capture server).
    pub captured: Mutex<Vec<Request>>,
}

impl ServerLog {
    pub fn problem(&self, p: String) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(p);
    }
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub fn batches(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub fn captured(&self) -> Vec<Request> {
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub fn summary(&self) -> String {
        format!(
            "server saw: {} connections, {} requests, {} responses, {} idle closes; problems: {:?}",
            self.connections.load(Ordering::SeqCst),
            self.requests.load(Ordering::SeqCst),
            self.responses.load(Ordering::SeqCst),
            self.idle_closes.load(Ordering::SeqCst),
            self.problems()
        )
    }
}

/// How one read on a [`ServerConn`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Bytes arrived; this many more complete requests are now pending.
    Data(usize),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The client closed (or reset) the connection, or the server is stopping.
    Closed,
}

/// The server side of one accepted connection, given to the handler.
pub struct ServerConn {
    pub stream: TcpStream,
    pub id: u64,
    pub log: Arc<ServerLog>,
    stop: Arc<AtomicBool>,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<Request>,
    /// Sequence number of the next response on this connection (1-based).
    pub seq: u64,
}

/// Longest a handler blocks in one read before re-checking the stop flag.
const SLICE: Duration = Duration::from_millis(20);

impl ServerConn {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Requests received and not yet taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// One read, waiting at most `timeout` (in short slices, so a stop is
    /// noticed quickly).
    pub fn read_event(&mut self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if self.stopped() {
                return Event::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Event::Timeout;
            }
            let slice = (deadline - now).min(SLICE).max(Duration::from_millis(1));
            let _ = self.stream.set_read_timeout(Some(slice));
            match self.stream.read(&mut chunk) {
                Ok(0) => return Event::Closed,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Event::Data(self.parse_pending());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Event::Closed,
            }
        }
    }

    fn parse_pending(&mut self) -> usize {
        let mut n = 0;
        loop {
            match parse_request(&self.buf) {
                Ok(Some((req, used))) => {
                    self.buf.drain(..used);
                    self.log.requests.fetch_add(1, Ordering::SeqCst);
                    self.pending.push_back(req);
                    n += 1;
                }
                Ok(None) => return n,
                Err(e) => {
                    self.log.problem(format!("connection {}: {e}", self.id));
                    self.buf.clear();
                    return n;
                }
            }
        }
    }

    /// Wait (without limit, but stopping with the server) until at least one
    /// request is pending. False when the connection closed first.
    pub fn wait_request(&mut self) -> bool {
        while self.pending.is_empty() {
            if self.read_event(Duration::from_secs(3600)) == Event::Closed {
                return false;
            }
        }
        true
    }

    pub fn pop(&mut self) -> Option<Request> {
        self.pending.pop_front()
    }

    pub fn take_all(&mut self) -> Vec<Request> {
        self.pending.drain(..).collect()
    }

    /// Write bytes; false on error. Counts `responses` responses.
    pub fn send(&mut self, data: &[u8], responses: u64) -> bool {
        let _ = self.stream.set_write_timeout(Some(Duration::from_secs(5)));
        match self.stream.write_all(data) {
            Ok(()) => {
                self.log.responses.fetch_add(responses, Ordering::SeqCst);
                true
            }
            Err(_) => false,
        }
    }

    /// Orderly close (FIN; nothing unread, so no RST).
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Wait until the peer closes (or the server stops), discarding input.
    pub fn drain_until_closed(&mut self) {
        while self.read_event(Duration::from_secs(3600)) != Event::Closed {
            self.pending.clear();
        }
    }
}

/// A response with Content-Length (and `Connection: close` when `close`).
pub fn response(status: u16, reason: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

type Handler = dyn Fn(&mut ServerConn) + Send + Sync + 'static;

/// A small threaded HTTP/1.1 server on 127.0.0.1; `handler` runs once per
/// accepted connection in its own thread. Dropping it stops the accept loop
/// and every connection thread, and joins them all.
pub struct TestServer {
    pub addr: SocketAddr,
    pub log: Arc<ServerLog>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TestServer {
    pub fn start(handler: impl Fn(&mut ServerConn) + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let log = Arc::new(ServerLog::default());
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (log, stop, conns) = (log.clone(), stop.clone(), conns.clone());
            std::thread::spawn(move || {
                let mut next_id = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            next_id += 1;
                            log.connections.fetch_add(1, Ordering::SeqCst);
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_nodelay(true);
                            let mut conn = ServerConn {
                                stream,
                                id: next_id,
                                log: log.clone(),
                                stop: stop.clone(),
                                buf: Vec::new(),
                                pending: Default::default(),
                                seq: 1,
                            };
                            let handler = handler.clone();
                            let h = std::thread::spawn(move || handler(&mut conn));
                            let mut list = conns.lock().unwrap_or_else(|e| e.into_inner());
                            // Reap finished threads so the list stays short.
                            let (done, live): (Vec<_>, Vec<_>) =
                                list.drain(..).partition(|h| h.is_finished());
                            for d in done {
                                let _ = d.join();
                            }
                            *list = live;
                            list.push(h);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(e) => {
                            log.problem(format!("accept: {e}"));
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            })
        };
        TestServer {
            addr,
            log,
            stop,
            accept: Some(accept),
            conns,
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers each request with 200 and `Connection: close`, then closes.
    pub fn close_after_each() -> TestServer {
        TestServer::start(|c| {
            if !c.wait_request() {
                return;
            }
            let _req = c.pop();
            if c.pending() > 0 {
                c.log.problem(format!(
                    "connection {}: a second request before the close",
                    c.id
                ));
            }
            c.send(&response(200, "OK", b"bye\n", true), 1);
            c.close();
        })
    }

    /// Reads one request and closes without completing the response:
    /// odd-numbered connections get part of a response first (the head and
    /// 7 of 100 body bytes), even-numbered ones nothing at all.
    pub fn close_mid_response() -> TestServer {
        TestServer::start(|c| {
            if !c.wait_request() {
                return;
            }
            let _req = c.pop();
            if c.id % 2 == 1 {
                c.send(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\npartial",
                    0,
                );
            }
            c.close();
        })
    }

    /// Accepts and reads, never answers.
    pub fn stall() -> TestServer {
        TestServer::start(|c| c.drain_until_closed())
    }

    /// Answers every request (keep-alive) with `status`.
    pub fn fixed_status(status: u16, reason: &'static str) -> TestServer {
        TestServer::start(move |c| {
            while c.wait_request() {
                let n = c.take_all().len();
                let mut out = Vec::new();
                for _ in 0..n {
                    out.extend_from_slice(&response(status, reason, b"nope\n", false));
                }
                if !c.send(&out, n as u64) {
                    return;
                }
            }
        })
    }

    /// Answers each request (keep-alive, 200), and closes the connection when
    /// it has then been idle (no request outstanding) for `idle`.
    pub fn idle_closer(idle: Duration) -> TestServer {
        TestServer::start(move |c| {
            if !c.wait_request() {
                return;
            }
            loop {
                let n = c.take_all().len();
                let mut out = Vec::new();
                for _ in 0..n {
                    out.extend_from_slice(&response(200, "OK", b"hello\n", false));
                }
                if !c.send(&out, n as u64) {
                    return;
                }
                // Idle period: a request in it is answered; none → close.
                let deadline = Instant::now() + idle;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        c.log.idle_closes.fetch_add(1, Ordering::SeqCst);
                        c.close();
                        return;
                    }
                    match c.read_event(left) {
                        Event::Closed => return,
                        Event::Timeout => {}
                        Event::Data(_) => {
                            if c.pending() > 0 {
                                break;
                            }
                        }
                    }
                }
            }
        })
    }

    /// Answers each request with 200 after sleeping `delay` (requests on one
    /// connection in order; connections concurrently).
    pub fn delayed(delay: Duration) -> TestServer {
        TestServer::start(move |c| {
            while c.wait_request() {
                while let Some(_req) = c.pop() {
                    std::thread::sleep(delay);
                    if c.stopped() || !c.send(&response(200, "OK", b"slow\n", false), 1) {
                        return;
                    }
                }
            }
        })
    }

    /// Pipelining-aware: collects requests until none has arrived for
    /// `quiet` (loadgen sends the next batch only after all responses), logs
    /// the batch size, then answers the whole batch in order in one write,
    /// each body carrying its sequence number on the connection.
    pub fn batch_counter(quiet: Duration) -> TestServer {
        TestServer::start(move |c| {
            while c.wait_request() {
                loop {
                    match c.read_event(quiet) {
                        Event::Closed => return,
                        Event::Timeout => break,
                        Event::Data(_) => {}
                    }
                }
                let batch = c.take_all();
                c.log
                    .batches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(batch.len());
                let mut out = Vec::new();
                for _ in &batch {
                    let body = format!("response {} on connection {}\n", c.seq, c.id);
                    c.seq += 1;
                    out.extend_from_slice(&response(200, "OK", body.as_bytes(), false));
                }
                if !c.send(&out, batch.len() as u64) {
                    return;
                }
            }
        })
    }

    /// Answers 200 to everything and records every request.
    pub fn capture() -> TestServer {
        TestServer::start(|c| {
            while c.wait_request() {
                let reqs = c.take_all();
                let n = reqs.len();
                c.log
                    .captured
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(reqs);
                let mut out = Vec::new();
                for _ in 0..n {
                    out.extend_from_slice(&response(200, "OK", b"ok\n", false));
                }
                if !c.send(&out, n as u64) {
                    return;
                }
            }
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let handles: Vec<_> = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for h in handles {
            let _ = h.join();
        }
    }
}
