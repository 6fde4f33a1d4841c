//! A server out of file descriptors: it neither spins nor floods its log,
//! answers an existing file 503 (not 404), and recovers by itself.
//!
//! The concurrent models are filled the way a real overload fills them:
//! started with a small RLIMIT_NOFILE, one keep-alive client first, then many
//! more clients than descriptors. `blocking` holds one connection at a time,
//! so clients can never fill its table; its limit is lowered on the running
//! process instead (`prlimit`), to exactly the descriptors it holds, and
//! raised again for the recovery. The process models (`fork`, `prefork`)
//! hold each connection in another process than the one that accepts, whose
//! tables clients never fill (waiting clients sit in the backlog or in a
//! worker's socket, not in a table): every process of theirs is squeezed the
//! same way.
//!
//! What is checked, per variant: (a) on a connection the server already
//! holds, `GET` of an existing static file is 503 with `Retry-After`; (b)
//! after a second of the table staying full, stderr holds at most a handful
//! of `accept` lines (one per episode and loop, not one per attempt); (c)
//! over that second the server's CPU time stays far below a spinning core
//! (a bound on a spin, generous enough for a loaded machine, not a timing
//! measurement); (d) once descriptors are free again, a new client gets 200
//! within a few seconds.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

per_variant_tests! {
    variants: [blocking, fork, threadpool, prefork, epoll, epoll_threads, uring],
    tests: [descriptor_exhaustion],
}

/// RLIMIT_NOFILE of the filled servers: a dozen descriptors of their own,
/// the rest for connections.
const NOFILE: u64 = 48;
/// Clients opened on top of the first one: far more than [`NOFILE`].
const CLIENTS: usize = 120;
/// How long the table stays full while log lines and CPU time are counted.
const FULL_FOR: Duration = Duration::from_secs(1);
/// Most `accept` lines allowed on stderr (one per episode and event loop).
const MAX_ACCEPT_LINES: usize = 5;
/// Most CPU time, as a share of the wall time, while the table is full. A
/// spinning loop uses ~1.0 (a core); an idle one ~0.
const MAX_CPU_SHARE: f64 = 0.3;
/// Liveness bound for each wait below (pausing starts, recovery).
const LIVENESS: Duration = Duration::from_secs(5);

const FILE: &str = "/hello.txt";
const FILE_BODY: &[u8] = b"hello, descriptors\n";

fn descriptor_exhaustion(v: &'static Variant) {
    let root = tempfile::tempdir().expect("temp docroot");
    std::fs::write(root.path().join(&FILE[1..]), FILE_BODY).expect("write docroot file");
    // Nothing may time out on its own during the test: the connections the
    // server holds are what keep its table full.
    let opts = ServerOpts {
        header_timeout: "30s".into(),
        keepalive_timeout: "30s".into(),
        ..ServerOpts::default()
    };
    if v.processes != Processes::One {
        squeezed_processes(v, root.path(), &opts);
    } else if v.cannot(Limit::OneClientAtATime) {
        squeezed(v, root.path(), &opts);
    } else {
        filled(v, root.path(), &opts);
    }
}

/// A concurrent model with a small descriptor limit, filled by clients.
fn filled(v: &Variant, root: &Path, opts: &ServerOpts) {
    let mut server = Server::start_with_nofile(v.name, root, opts, NOFILE);
    let mut early = server.conn();
    early
        .get("/plaintext")
        .expect_status(200, "before the table fills")
        .expect_not_close("the early connection stays open");

    let extra = connect_many(&server, v, CLIENTS);
    wait_for_pause(&server);
    table_stays_quiet(&server);

    // (a) The server holds this connection and needs no new one to answer;
    // opening the file is what fails.
    let r = early.get(FILE);
    r.expect_status(503, "an existing file with the descriptor table full")
        .expect_header("Retry-After", "1", "503 for a descriptor shortage");
    early
        .get("/plaintext")
        .expect_status(200, "the connection survives its 503");

    drop(extra);
    recovers(&mut server);
    drop(early);
    server.stop_with(libc::SIGTERM);
}

/// `blocking`: its limit lowered to the descriptors it holds, so the file
/// open of the connection it serves fails, and so does every accept.
fn squeezed(v: &Variant, root: &Path, opts: &ServerOpts) {
    let mut server = Server::start(v.name, root, opts);
    let roomy = nofile_of(server.pid);
    let idle = server.stable_fd_count();

    let mut held = server.conn();
    let seen = server.wait_fd_count(idle + 1, LIVENESS);
    assert_eq!(
        seen,
        idle + 1,
        "[{}] the first client is not accepted",
        v.name
    );
    squeeze(&server);
    // (a)
    held.get(FILE)
        .expect_status(503, "an existing file with the descriptor table full")
        .expect_header("Retry-After", "1", "503 for a descriptor shortage");
    drop(held);
    // Closing it freed a descriptor: squeeze again. The accept the server
    // is blocked in reserved its descriptor before it began to wait (Linux
    // allocates it first), so a client arriving now would still be accepted;
    // the accept after the next timeout tick fails, queue or no queue.
    let seen = server.wait_fd_count(idle, LIVENESS);
    assert_eq!(seen, idle, "[{}] the first client is not closed", v.name);
    squeeze(&server);
    wait_for_pause(&server);
    let extra = connect_many(&server, v, 8);
    table_stays_quiet(&server);

    drop(extra);
    set_nofile(server.pid, roomy);
    recovers(&mut server);
    server.stop_with(libc::SIGTERM);
}

/// A process model: every process of the server (the one serving the held
/// connection included) squeezed to the descriptors it holds.
fn squeezed_processes(v: &Variant, root: &Path, opts: &ServerOpts) {
    let mut server = Server::start(v.name, root, opts);
    let mut held = server.conn();
    held.get("/plaintext")
        .expect_status(200, "before the squeeze")
        .expect_not_close("the held connection stays open");
    let roomy = nofile_of(server.pid);
    let procs = server_processes(server.pid);
    assert!(
        procs.len() > 1,
        "[{}] a process model with one process: {procs:?}",
        v.name
    );
    for &pid in &procs {
        squeeze_pid(pid);
    }
    // (a) The serving process opens the file: that fails.
    held.get(FILE)
        .expect_status(503, "an existing file with the descriptor table full")
        .expect_header("Retry-After", "1", "503 for a descriptor shortage");
    held.get("/plaintext")
        .expect_status(200, "the connection survives its 503");
    drop(held);
    // New clients: the accepting process cannot take them.
    let extra = connect_many(&server, v, 8);
    wait_for_pause(&server);
    table_stays_quiet(&server);
    drop(extra);
    // The serving processes first, so the accepting one hands nothing to a
    // process that cannot take it.
    for &pid in procs.iter().rev() {
        // A per-connection child has exited with its connection.
        if proc_stat(pid).is_some_and(|p| p.state != 'Z') {
            set_nofile(pid, roomy);
        }
    }
    recovers(&mut server);
    server.stop_with(libc::SIGTERM);
}

/// Wait (bounded) for the server to say it paused accepting.
fn wait_for_pause(server: &Server) {
    let paused = wait_until(LIVENESS, Duration::from_millis(20), || {
        server.stderr_tail().contains("pausing accepts")
    });
    assert!(
        paused,
        "[{}] no `pausing accepts` line within {LIVENESS:?} of the table filling\nstderr:\n{}",
        server.variant,
        server.stderr_tail()
    );
}

/// (b) and (c): for [`FULL_FOR`] with the table full, few log lines and
/// little CPU.
fn table_stays_quiet(server: &Server) {
    let (cpu0, t0) = (cpu_seconds(server.pid), Instant::now());
    std::thread::sleep(FULL_FOR);
    let (cpu1, wall) = (cpu_seconds(server.pid), t0.elapsed().as_secs_f64());
    let stderr = server.stderr_tail();
    let lines = stderr.lines().filter(|l| l.contains("accept")).count();
    assert!(
        lines <= MAX_ACCEPT_LINES,
        "[{}] {lines} `accept` lines on stderr after {FULL_FOR:?} with the table full \
         (at most {MAX_ACCEPT_LINES}: one per episode, not one per attempt)\nstderr (tail):\n{stderr}",
        server.variant
    );
    let share = (cpu1 - cpu0) / wall;
    assert!(
        share < MAX_CPU_SHARE,
        "[{}] the server used {:.0}% of a core over {wall:.2} s with its descriptor table full \
         (below {:.0}% expected: accepts must pause, not spin)\nstderr (tail):\n{stderr}",
        server.variant,
        share * 100.0,
        MAX_CPU_SHARE * 100.0
    );
}

/// (d): a new client is served within [`LIVENESS`], and the log says
/// accepting resumed.
fn recovers(server: &mut Server) {
    let deadline = Instant::now() + LIVENESS;
    let mut last = String::new();
    let served = wait_until(LIVENESS, Duration::from_millis(50), || {
        let left = deadline.saturating_duration_since(Instant::now());
        match fresh_get(server, left.max(Duration::from_millis(100))) {
            Ok(200) => true,
            Ok(status) => {
                last = format!("status {status}");
                false
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(
        served,
        "[{}] no 200 for a new client within {LIVENESS:?} of descriptors coming free (last: {last})\nstderr:\n{}",
        server.variant,
        server.stderr_tail()
    );
    assert!(
        server.stderr_tail().contains("accepting again"),
        "[{}] the end of the episode is not logged\nstderr:\n{}",
        server.variant,
        server.stderr_tail()
    );
    assert!(server.is_alive(), "[{}] server died", server.variant);
}

/// `GET /plaintext` on a new connection, waiting at most `timeout` for it.
fn fresh_get(server: &Server, timeout: Duration) -> Result<u16, String> {
    let mut c = Conn::try_connect(server.addr).map_err(|e| format!("connect: {e}"))?;
    c.stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    c.send_lenient(&get_req("/plaintext"))
        .map_err(|e| format!("write: {e}"))?;
    c.try_read_response(false).map(|r| r.status)
}

/// Lower `pid`'s soft RLIMIT_NOFILE to its lowest free descriptor number:
/// every descriptor it may still get is taken, so the next one fails.
fn squeeze(server: &Server) {
    squeeze_pid(server.pid);
}

/// [`squeeze`] for any process.
fn squeeze_pid(pid: u32) {
    let used: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|n| !used.contains(n)).expect("a free number");
    set_nofile(pid, lowest_free);
}

/// Soft RLIMIT_NOFILE of another process.
fn nofile_of(pid: u32) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a null new limit only writes `old`.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit({pid}): {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// Set another process's soft RLIMIT_NOFILE (its hard limit unchanged).
fn set_nofile(pid: u32, soft: u64) {
    let hard = nofile_hard_limit();
    let new = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: prlimit reads `new` and writes nothing (null old limit).
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(
        rc,
        0,
        "prlimit({pid}, NOFILE={soft}): {}",
        std::io::Error::last_os_error()
    );
}

/// CPU time (user + system) `pid` has used, in seconds, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after `comm` (which may hold spaces) start at field 3, state.
    let after = &stat[stat.rfind(')').expect("comm in /proc/PID/stat") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// `n` connections to the server (the kernel completes them into the
/// backlog whether the server accepts or not).
fn connect_many(server: &Server, v: &Variant, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect_timeout(&server.addr, IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("[{}] client {i}: connect: {e}", v.name))
        })
        .collect()
}
