//! The CGI executor driven through its library API: real scripts in
//! temporary directories, real fork/exec, and /proc to check that nothing
//! is left behind.
//!
//! Tests that count the test process's children take the process lock
//! exclusively, so no other test's child can be mid-flight (alive, or a
//! zombie about to be reaped) while they look.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use servers::app::cgi::{self, Body, CgiDir, CgiError, CgiRequest, CgiResponse, OutputLimits};

const LONG: Duration = Duration::from_secs(20);
const MAX: u64 = 4 << 20;
/// Output kept in memory in these tests: small, so that the larger bodies
/// below take the spill-to-file path.
const MEMORY: usize = 16 * 1024;

/// A script's answer with its body read back into memory, spilled or not.
#[derive(Debug)]
struct Resp {
    status: u16,
    body: Vec<u8>,
    head: CgiResponse,
}

impl Resp {
    fn content_type(&self) -> Option<&str> {
        self.head.content_type()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
}

fn run_cgi(dir: &CgiDir, req: &CgiRequest, timeout: Duration, max: u64) -> Result<Resp, CgiError> {
    let limits = OutputLimits {
        memory: MEMORY,
        max,
    };
    let mut head = cgi::run(dir, req, timeout, limits)?;
    let body = std::mem::replace(&mut head.body, Body::Memory(Vec::new()));
    Ok(Resp {
        status: head.status,
        body: body.into_vec().expect("read the spilled body back"),
        head,
    })
}

static PROCESSES: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    PROCESSES.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    PROCESSES.write().unwrap_or_else(|e| e.into_inner())
}

/// A temporary CGI directory.
struct Scripts {
    tmp: tempfile::TempDir,
    dir: CgiDir,
}

impl Scripts {
    fn new() -> Scripts {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("cgi")).unwrap();
        let dir = CgiDir::open(&tmp.path().join("cgi")).unwrap();
        Scripts { tmp, dir }
    }

    /// The CGI directory (scripts run with it as their working directory).
    fn path(&self) -> PathBuf {
        self.tmp.path().join("cgi")
    }

    /// A sibling of the CGI directory, for things that must stay out of reach.
    fn outside(&self) -> PathBuf {
        self.tmp.path().to_path_buf()
    }

    fn add(&self, name: &str, text: &str) -> PathBuf {
        self.add_mode(name, text, 0o755)
    }

    fn add_mode(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.path().join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn run(&self, req: &CgiRequest) -> Result<Resp, CgiError> {
        run_cgi(&self.dir, req, LONG, MAX)
    }

    fn pid_file(&self, name: &str) -> i32 {
        let p = self.path().join(name);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e} (did the script start?)", p.display()))
            .trim()
            .parse()
            .unwrap()
    }
}

fn request(script: &str) -> CgiRequest {
    CgiRequest {
        script: script.to_string(),
        path_info: String::new(),
        method: "GET".into(),
        query: String::new(),
        headers: vec![("Host".into(), b"localhost".to_vec())],
        body: Vec::new(),
        remote_addr: "127.0.0.1:40000".parse().unwrap(),
        server_addr: "127.0.0.1:8080".parse().unwrap(),
        protocol: "HTTP/1.1",
    }
}

const TEXT: &str = "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n";

// ------------------------------------------------------------ /proc

struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    state: char,
}

fn stat(pid: i32) -> Option<Proc> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        pgrp,
        state,
    })
}

fn processes() -> Vec<Proc> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(stat)
        .collect()
}

fn me() -> i32 {
    std::process::id() as i32
}

/// Children of the test process, alive or zombie (call under `exclusive`).
fn my_children() -> Vec<(i32, char)> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == me())
        .map(|p| (p.pid, p.state))
        .collect()
}

/// Whether `pid` still runs (exists and is not a zombie).
fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|p| p.state != 'Z')
}

/// Live processes in the process group `pgrp`.
fn live_members(pgrp: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.pgrp == pgrp && p.state != 'Z')
        .map(|p| p.pid)
        .collect()
}

/// Wait (up to 5 s) for `cond`; SIGKILLed orphans are reaped by init, which
/// takes a moment.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn assert_nothing_left(leader: i32, others: &[i32]) {
    // The leader was reaped by `run` itself, before it returned.
    assert!(
        stat(leader).is_none(),
        "script leader {leader} still in /proc"
    );
    for &pid in others {
        assert!(
            eventually(|| !alive(pid)),
            "process {pid} from the script's group still running"
        );
        if let Some(p) = stat(pid) {
            assert_ne!(p.ppid, me(), "zombie {pid} is our child");
        }
    }
    assert!(
        eventually(|| live_members(leader).is_empty()),
        "group {leader} still has live members: {:?}",
        live_members(leader)
    );
    assert_eq!(my_children(), vec![], "children of the test process remain");
}

// ------------------------------------------------------------ environment and I/O

#[test]
fn meta_variables_reach_the_script() {
    let _g = shared();
    let s = Scripts::new();
    s.add("env", &format!("#!/bin/sh\n{TEXT}env\n"));
    let mut req = request("env");
    req.method = "POST".into();
    req.query = "a=1&b=%22x%22".into();
    req.path_info = "/extra/path".into();
    req.body = b"k=v&z".to_vec();
    req.headers = vec![
        ("Host".into(), b"example.test:8080".to_vec()),
        (
            "Content-Type".into(),
            b"application/x-www-form-urlencoded".to_vec(),
        ),
        ("Content-Length".into(), b"5".to_vec()),
        ("X-Custom".into(), b"hello world".to_vec()),
        ("Proxy".into(), b"http://attacker:3128".to_vec()),
        ("Authorization".into(), b"Basic c2VjcmV0".to_vec()),
        ("X_Custom".into(), b"spoof".to_vec()),
    ];
    req.protocol = "HTTP/1.0";
    let resp = s.run(&req).unwrap();
    assert_eq!(resp.status, 200);
    let env = String::from_utf8(resp.body).unwrap();
    let vars: Vec<&str> = env.lines().collect();
    for want in [
        "GATEWAY_INTERFACE=CGI/1.1",
        "REQUEST_METHOD=POST",
        "QUERY_STRING=a=1&b=%22x%22",
        "CONTENT_LENGTH=5",
        "CONTENT_TYPE=application/x-www-form-urlencoded",
        "PATH_INFO=/extra/path",
        "SCRIPT_NAME=/cgi-bin/env",
        "SERVER_PROTOCOL=HTTP/1.0",
        "SERVER_NAME=example.test",
        "SERVER_PORT=8080",
        "REMOTE_ADDR=127.0.0.1",
        "REMOTE_PORT=40000",
        "HTTP_X_CUSTOM=hello world",
        "HTTP_HOST=example.test:8080",
        "PATH=/usr/local/bin:/usr/bin:/bin",
    ] {
        assert!(vars.contains(&want), "{want} missing from:\n{env}");
    }
    for key in [
        "HTTP_PROXY=",
        "HTTP_AUTHORIZATION=",
        "HTTP_CONTENT_LENGTH=",
        "HTTP_CONTENT_TYPE=",
    ] {
        assert!(!env.contains(key), "{key} present in:\n{env}");
    }
    // Only X-Custom's value, not the underscore impostor's.
    assert!(!env.contains("spoof"), "{env}");
    // Nothing from the test process's own environment, which stands in for
    // the server's: only meta-variables.
    let keys: Vec<&str> = vars
        .iter()
        .filter_map(|v| v.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for (k, _) in std::env::vars() {
        let ours = k == "PATH" || k == "PWD" || k.starts_with("HTTP_") || k.starts_with("CONTENT_");
        assert!(
            ours || !keys.contains(&k.as_str()),
            "{k} leaked into:\n{env}"
        );
    }
    for k in &keys {
        assert!(
            k.starts_with("HTTP_")
                || [
                    "GATEWAY_INTERFACE",
                    "PATH",
                    "SERVER_SOFTWARE",
                    "SERVER_NAME",
                    "SERVER_PORT",
                    "SERVER_PROTOCOL",
                    "REQUEST_METHOD",
                    "SCRIPT_NAME",
                    "PATH_INFO",
                    "QUERY_STRING",
                    "REMOTE_ADDR",
                    "REMOTE_PORT",
                    "CONTENT_LENGTH",
                    "CONTENT_TYPE",
                    // Set by the shell running `env`, not by the server.
                    "PWD",
                ]
                .contains(k),
            "unexpected variable {k} in:\n{env}"
        );
    }
}

#[test]
fn script_runs_in_the_cgi_directory() {
    let _g = shared();
    let s = Scripts::new();
    s.add("pwd", &format!("#!/bin/sh\n{TEXT}pwd -P\n"));
    let resp = s.run(&request("pwd")).unwrap();
    let want = fs::canonicalize(s.path()).unwrap();
    assert_eq!(
        String::from_utf8(resp.body).unwrap().trim_end(),
        want.to_str().unwrap()
    );
}

/// The server blocks SIGINT/SIGTERM in every thread and ignores SIGPIPE
/// (as does this test runtime); the script must start with neither.
#[test]
fn script_starts_with_no_blocked_or_ignored_signals() {
    let _g = shared();
    let s = Scripts::new();
    s.add(
        "signals",
        &format!("#!/bin/sh\n{TEXT}exec grep -E '^Sig(Blk|Ign):' /proc/self/status\n"),
    );
    // As `sys::signal::install` does, on this test's own thread only.
    // SAFETY: sigset_t is plain data, initialised by sigemptyset/sigaddset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` and `old` are valid sigset_t storage.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; pthread_sigmask only touches the calling thread.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old), 0);
    }
    let resp = s.run(&request("signals"));
    // SAFETY: restores this thread's mask from the valid `old`.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    let body = String::from_utf8(resp.unwrap().body).unwrap();
    assert_eq!(
        body,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

/// A descriptor some other code opened without close-on-exec must not
/// reach the script; fd 3 is the script itself.
#[test]
fn leaked_descriptors_do_not_reach_the_script() {
    let _x = exclusive();
    let s = Scripts::new();
    s.add(
        "fds",
        &format!(
            "#!/bin/sh\n{TEXT}for fd in 0 1 3 200; do\n\
             if [ -e /proc/$$/fd/$fd ]; then echo $fd open; else echo $fd closed; fi\ndone\n"
        ),
    );
    // SAFETY: the path is a NUL-terminated literal.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    // SAFETY: `fd` is open; dup2 onto 200 (unused in this process) leaves
    // it without close-on-exec.
    assert_eq!(unsafe { libc::dup2(fd, 200) }, 200);
    let resp = s.run(&request("fds"));
    // SAFETY: both descriptors were opened above and are not used again.
    unsafe {
        libc::close(fd);
        libc::close(200);
    }
    assert_eq!(
        String::from_utf8(resp.unwrap().body).unwrap(),
        "0 open\n1 open\n3 open\n200 closed\n"
    );
}

/// Script diagnostics go where the server's go.
#[test]
fn script_stderr_is_the_servers_stderr() {
    let _g = shared();
    let s = Scripts::new();
    s.add(
        "stderr",
        &format!(
            "#!/bin/sh\n{TEXT}readlink /proc/$$/fd/2\necho 'cgi test: expected stderr line' >&2\n"
        ),
    );
    let ours = fs::read_link("/proc/self/fd/2").unwrap();
    let resp = s.run(&request("stderr")).unwrap();
    assert_eq!(
        String::from_utf8(resp.body).unwrap().trim_end(),
        ours.to_str().unwrap()
    );
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn one_mebibyte_body_echoed_byte_for_byte() {
    let _g = shared();
    let s = Scripts::new();
    s.add("cat", &format!("#!/bin/sh\n{TEXT}exec cat\n"));
    let mut req = request("cat");
    req.method = "POST".into();
    req.body = pseudo_random(1 << 20);
    let resp = s.run(&req).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), req.body.len());
    assert!(resp.body == req.body, "echoed body differs");
}

#[test]
fn output_past_the_memory_buffer_is_spilled_to_a_file_and_kept_whole() {
    let _g = shared();
    let s = Scripts::new();
    s.add("cat", &format!("#!/bin/sh\n{TEXT}exec cat\n"));
    let mut req = request("cat");
    req.method = "POST".into();
    let limits = OutputLimits {
        memory: MEMORY,
        max: MAX,
    };
    for len in [MEMORY - 100, MEMORY * 3 + 7] {
        req.body = pseudo_random(len);
        let resp = cgi::run(&s.dir, &req, LONG, limits).unwrap();
        assert_eq!(resp.content_type(), Some("text/plain"));
        let spilled = matches!(resp.body, Body::File { .. });
        assert_eq!(spilled, len > MEMORY, "{len} bytes: spilled {spilled}");
        assert_eq!(resp.body.len(), len as u64);
        assert!(
            resp.body.into_vec().unwrap() == req.body,
            "{len} bytes differ"
        );
    }
}

#[test]
fn a_header_section_longer_than_the_memory_buffer_is_refused() {
    let _g = shared();
    let s = Scripts::new();
    s.add(
        "bighead",
        &format!(
            "#!/bin/sh\nprintf 'X-Long: '\nhead -c {} /dev/zero | tr '\\0' a\nprintf '\\n'\n{TEXT}echo x\n",
            MEMORY * 2
        ),
    );
    match s.run(&request("bighead")).unwrap_err() {
        CgiError::BadOutput(why) => assert!(why.contains("--cgi-buffer-bytes"), "{why}"),
        e => panic!("expected BadOutput, got {e:?}"),
    }
}

#[test]
fn script_that_ignores_stdin_and_writes_a_lot_does_not_deadlock() {
    let _g = shared();
    let s = Scripts::new();
    // Writes 1 MiB without ever reading its 1 MiB of stdin.
    s.add(
        "flood",
        &format!("#!/bin/sh\n{TEXT}head -c 1048576 /dev/zero\n"),
    );
    let mut req = request("flood");
    req.method = "POST".into();
    req.body = vec![b'x'; 1 << 20];
    let resp = s.run(&req).unwrap();
    assert_eq!(resp.body.len(), 1 << 20);
}

/// With SIGPIPE at its default disposition (which kills), a script that
/// closes stdin while the body is still being written must not take the
/// process down: run() keeps SIGPIPE blocked and consumes it.
#[test]
fn closed_stdin_is_survived_even_with_default_sigpipe() {
    let _x = exclusive();
    let s = Scripts::new();
    s.add("deaf", &format!("#!/bin/sh\nexec 0<&-\n{TEXT}echo done\n"));
    let mut req = request("deaf");
    req.method = "POST".into();
    req.body = vec![b'x'; 4 << 20];
    // SAFETY: changing SIGPIPE's disposition has no memory-safety
    // preconditions; no other test runs while the lock is held exclusively.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let resp = s.run(&req);
    // SAFETY: as above; restores what the test runtime had set.
    unsafe { libc::signal(libc::SIGPIPE, old) };
    assert_eq!(resp.unwrap().body, b"done\n");
    assert_eq!(my_children(), vec![]);
}

// ------------------------------------------------------------ output parsing

#[test]
fn status_and_headers_from_the_script() {
    let _g = shared();
    let s = Scripts::new();
    s.add(
        "nf",
        "#!/bin/sh\nprintf 'Status: 404 Not Found\\r\\nContent-Type: text/html\\r\\n\
         X-Extra: yes\\r\\nContent-Length: 12345\\r\\nConnection: close\\r\\n\\r\\n<p>gone</p>'\n",
    );
    let resp = s.run(&request("nf")).unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(resp.content_type(), Some("text/html"));
    assert_eq!(resp.header("x-extra"), Some("yes"));
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.header("connection"), None);
    assert_eq!(resp.body, b"<p>gone</p>");
}

#[test]
fn location_without_status_is_a_redirect() {
    let _g = shared();
    let s = Scripts::new();
    s.add(
        "go",
        "#!/bin/sh\nprintf 'Location: http://example.test/next\\n\\n'\n",
    );
    let resp = s.run(&request("go")).unwrap();
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("Location"), Some("http://example.test/next"));
}

#[test]
fn missing_content_type_is_bad_output() {
    let _g = shared();
    let s = Scripts::new();
    s.add("notype", "#!/bin/sh\nprintf 'X-A: 1\\n\\nbody'\n");
    let e = s.run(&request("notype")).unwrap_err();
    assert!(matches!(e, CgiError::BadOutput(_)), "{e:?}");
    assert_eq!(e.status(), 502);
}

#[test]
fn garbage_or_no_output_is_bad_output() {
    let _g = shared();
    let s = Scripts::new();
    s.add("garbage", "#!/bin/sh\necho '<html>hello</html>'\n");
    s.add("silent", "#!/bin/sh\nexit 3\n");
    let e = s.run(&request("garbage")).unwrap_err();
    assert!(matches!(e, CgiError::BadOutput(_)), "{e:?}");
    match s.run(&request("silent")).unwrap_err() {
        CgiError::BadOutput(d) => assert!(d.contains("exit status 3"), "{d}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn script_exiting_127_by_itself_is_not_a_start_failure() {
    let _g = shared();
    let s = Scripts::new();
    s.add("odd", &format!("#!/bin/sh\n{TEXT}echo fine\nexit 127\n"));
    assert_eq!(s.run(&request("odd")).unwrap().body, b"fine\n");
}

#[test]
fn native_executable_runs_from_its_descriptor() {
    let _g = shared();
    let s = Scripts::new();
    // /bin/echo with no arguments prints one newline: a blank line, i.e. an
    // empty header section and an empty body, which is a valid response.
    fs::copy("/bin/echo", s.path().join("echo")).unwrap();
    let resp = s.run(&request("echo")).unwrap();
    assert_eq!((resp.status, resp.body.len()), (200, 0));
}

#[test]
fn output_over_the_cap_is_too_large_and_the_script_is_killed() {
    let _x = exclusive();
    let s = Scripts::new();
    s.add(
        "yes",
        &format!("#!/bin/sh\necho $$ > leader.pid\n{TEXT}exec yes\n"),
    );
    let t0 = Instant::now();
    let e = run_cgi(&s.dir, &request("yes"), LONG, 64 * 1024).unwrap_err();
    assert_eq!(e, CgiError::TooLarge);
    assert_eq!(e.status(), 502);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_nothing_left(s.pid_file("leader.pid"), &[]);
}

// ------------------------------------------------------------ timeouts and reaping

#[test]
fn timeout_kills_the_whole_group_and_leaves_no_zombie() {
    let _x = exclusive();
    let s = Scripts::new();
    s.add(
        "forever",
        "#!/bin/sh\necho $$ > leader.pid\nsleep 1000 &\necho $! > sleeper.pid\nwait\n",
    );
    let t0 = Instant::now();
    let e = run_cgi(
        &s.dir,
        &request("forever"),
        Duration::from_millis(1000),
        MAX,
    )
    .unwrap_err();
    let took = t0.elapsed();
    assert_eq!(e, CgiError::Timeout);
    assert_eq!(e.status(), 504);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let leader = s.pid_file("leader.pid");
    let sleeper = s.pid_file("sleeper.pid");
    assert_nothing_left(leader, &[sleeper]);
}

#[test]
fn script_that_closes_stdout_but_keeps_running_times_out() {
    let _x = exclusive();
    let s = Scripts::new();
    s.add(
        "linger",
        &format!("#!/bin/sh\necho $$ > leader.pid\n{TEXT}echo hi\nexec >&-\nexec sleep 1000\n"),
    );
    let e = run_cgi(&s.dir, &request("linger"), Duration::from_millis(500), MAX).unwrap_err();
    assert_eq!(e, CgiError::Timeout);
    assert_nothing_left(s.pid_file("leader.pid"), &[]);
}

#[test]
fn background_process_left_by_a_finished_script_is_killed() {
    let _x = exclusive();
    let s = Scripts::new();
    // The background sleep inherits stdout, so the pipe never reaches EOF:
    // the response must still complete when the script itself exits.
    s.add(
        "bg",
        &format!(
            "#!/bin/sh\necho $$ > leader.pid\nsleep 1000 &\necho $! > bg.pid\n{TEXT}echo started\n"
        ),
    );
    let t0 = Instant::now();
    let resp = s.run(&request("bg")).unwrap();
    assert_eq!(resp.body, b"started\n");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_nothing_left(s.pid_file("leader.pid"), &[s.pid_file("bg.pid")]);
}

#[test]
fn twenty_concurrent_runs_succeed_and_leave_no_zombies() {
    let _x = exclusive();
    let s = Scripts::new();
    s.add(
        "echo",
        &format!("#!/bin/sh\n{TEXT}printf '%s:' \"$QUERY_STRING\"\nexec cat\n"),
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let mut req = request("echo");
                    req.method = "POST".into();
                    req.query = format!("n={i}");
                    req.body = format!("body {i}").repeat(1000).into_bytes();
                    let resp = s.run(&req).unwrap();
                    let mut want = format!("n={i}:").into_bytes();
                    want.extend_from_slice(&req.body);
                    assert_eq!(resp.body, want, "run {i}");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(my_children(), vec![]);
}

// ------------------------------------------------------------ confinement

#[test]
fn nonexistent_script_is_not_found() {
    let _g = shared();
    let s = Scripts::new();
    let e = s.run(&request("nope")).unwrap_err();
    assert_eq!(e, CgiError::NotFound);
    assert_eq!(e.status(), 404);
}

#[test]
fn not_executable_or_not_a_file_is_forbidden() {
    let _g = shared();
    let s = Scripts::new();
    s.add_mode("plain", &format!("#!/bin/sh\n{TEXT}echo ran\n"), 0o644);
    fs::create_dir(s.path().join("subdir")).unwrap();
    let fifo = std::ffi::CString::new(s.path().join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: `fifo` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o755) }, 0);
    for name in ["plain", "subdir", "fifo"] {
        let e = s.run(&request(name)).unwrap_err();
        assert_eq!(e, CgiError::Forbidden, "{name}");
        assert_eq!(e.status(), 403);
    }
}

#[test]
fn missing_interpreter_is_a_start_failure() {
    let _g = shared();
    let s = Scripts::new();
    s.add("broken", "#!/nonexistent/interpreter\nwhatever\n");
    match s.run(&request("broken")).unwrap_err() {
        e @ CgiError::StartFailed(_) => {
            assert_eq!(e.status(), 502);
            assert!(e.to_string().contains("exec"), "{e}");
        }
        e => panic!("{e:?}"),
    }
}

/// A script outside the CGI directory that leaves a marker when run.
fn plant_outside(s: &Scripts) -> (PathBuf, PathBuf) {
    let marker = s.outside().join("MARKER");
    let script = s.outside().join("evil");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {}\n{TEXT}echo escaped\n",
            marker.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    (script, marker)
}

#[test]
fn path_tricks_in_the_name_are_refused() {
    let _g = shared();
    let s = Scripts::new();
    let (_, marker) = plant_outside(&s);
    s.add("ok", &format!("#!/bin/sh\n{TEXT}echo ok\n"));
    s.add(".hidden", &format!("#!/bin/sh\n{TEXT}echo hidden\n"));
    for name in [
        "",
        ".",
        "..",
        "../evil",
        "..%2fevil",
        "%2e%2e%2fevil",
        "%2e%2e",
        "ok/",
        "/ok",
        "./ok",
        "ok/../ok",
        "sub/ok",
        "ok\0",
        "..\\evil",
        ".hidden",
        "-ok",
        " ok",
    ] {
        assert_eq!(
            s.run(&request(name)).unwrap_err(),
            CgiError::NotFound,
            "{name:?}"
        );
    }
    assert!(!marker.exists(), "a script outside the CGI directory ran");
    assert_eq!(s.run(&request("ok")).unwrap().body, b"ok\n");
}

#[test]
fn symlinks_out_of_the_directory_are_refused() {
    let _g = shared();
    let s = Scripts::new();
    let (outside_script, marker) = plant_outside(&s);
    symlink("/bin/sh", s.path().join("sh")).unwrap();
    symlink(&outside_script, s.path().join("abs")).unwrap();
    symlink("../evil", s.path().join("rel")).unwrap();
    symlink("/proc/self/exe", s.path().join("magic")).unwrap();
    for name in ["sh", "abs", "rel", "magic"] {
        let e = s.run(&request(name)).unwrap_err();
        assert!(
            matches!(e, CgiError::Forbidden | CgiError::NotFound),
            "{name}: {e:?}"
        );
    }
    assert!(!marker.exists(), "a script outside the CGI directory ran");
    // A symlink that stays inside is fine.
    s.add("real", &format!("#!/bin/sh\n{TEXT}echo real\n"));
    symlink("real", s.path().join("alias")).unwrap();
    assert_eq!(s.run(&request("alias")).unwrap().body, b"real\n");
}

#[test]
fn cgi_dir_must_be_a_directory() {
    let s = Scripts::new();
    let file = s.add("f", "x");
    assert!(CgiDir::open(&file).is_err());
    assert!(CgiDir::open(Path::new("/nonexistent/cgi")).is_err());
}

// ------------------------------------------------------------ the shipped examples

fn examples() -> CgiDir {
    CgiDir::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("cgi-bin")).unwrap()
}

#[test]
fn example_time_script() {
    let _g = shared();
    let resp = run_cgi(&examples(), &request("time"), LONG, MAX).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_type(), Some("text/plain; charset=utf-8"));
    let body = String::from_utf8(resp.body).unwrap();
    assert!(body.contains("Z (unix "), "{body}");
    assert!(body.ends_with(")\n"), "{body}");
}

#[test]
fn example_params_script_returns_escaped_json() {
    let _g = shared();
    let run = |query: &str| {
        let mut req = request("params");
        req.query = query.to_string();
        let resp = run_cgi(&examples(), &req, LONG, MAX).unwrap();
        assert_eq!(resp.content_type(), Some("application/json"));
        String::from_utf8(resp.body).unwrap()
    };
    assert_eq!(run(""), "{}\n");
    assert_eq!(
        run("name=%22Bob%22&path=a%5Cb&sp=a+b%20c&flag&empty=&u=caf%C3%A9&tag=1&tag=2"),
        "{\"name\":\"\\\"Bob\\\"\",\"path\":\"a\\\\b\",\"sp\":\"a b c\",\"flag\":\"\",\
         \"empty\":\"\",\"u\":\"café\",\"tag\":[\"1\",\"2\"]}\n"
    );
    // Raw quotes, control bytes, NUL, bad escapes and invalid UTF-8.
    assert_eq!(
        run("q=\"x\"&c=%0A%09%00&bad=%zz%4&inv=%FF%C0%AF&%3D=%26"),
        "{\"q\":\"\\\"x\\\"\",\"c\":\"\\u000a\\u0009\\u0000\",\"bad\":\"%zz%4\",\
         \"inv\":\"\\ufffd\\ufffd\\ufffd\",\"=\":\"&\"}\n"
    );
}

#[test]
fn example_scripts_are_committed_executable() {
    for name in ["time", "params"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("cgi-bin")
            .join(name);
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{} is not executable", p.display());
    }
}
