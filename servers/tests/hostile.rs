//! Hostile and broken clients against every variant of the catalog, as real
//! processes: each case provokes one misbehaviour and asserts the bounded
//! outcome — the connection is closed or answered, the descriptor is freed,
//! the other clients are served, shutdown ends.
//!
//! Timeouts in the servers are set far above the bounds the tests wait
//! (30 s), so a case can only pass through the mechanism it is about, never
//! through an idle or header timeout. The waits themselves are liveness
//! bounds (a case fails when the server never gets there), not timings.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use servers::variants::{KeepAlive, Limit, Variant};

/// How long a case waits for what must happen "promptly".
const PROMPT: Duration = Duration::from_secs(5);

fn opts(extra: &[&str]) -> ServerOpts {
    ServerOpts {
        threads: 2,
        header_timeout: "30s".into(),
        keepalive_timeout: "30s".into(),
        max_body_bytes: None,
        extra: extra.iter().map(|s| s.to_string()).collect(),
    }
}

/// `/huge.bin`: 256 MiB (sparse), far more than loopback socket buffers
/// absorb, so a send to a client that reads nothing must block.
fn add_huge_file(docroot: &DocRoot) {
    let big = std::fs::File::create(docroot.root.join("huge.bin")).unwrap();
    big.set_len(256 << 20).unwrap();
}

/// A new connection on which `GET path` has been sent (nothing read).
fn sent(server: &Server, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&get_req(path)).unwrap();
    s
}

/// Read until EOF (or the bound); what came, and whether EOF came.
fn read_to_eof(s: &mut TcpStream, bound: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(bound)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// A request sent together with the client's FIN (`shutdown(SHUT_WR)`) is
/// answered and the connection closed at once — not when an idle timer
/// finds it (the FIN came with the data, and an edge-triggered loop gets no
/// second event for it).
fn half_close_after_a_request(v: &'static Variant) {
    let docroot = DocRoot::build();
    let server = Server::start(v.name, &docroot.root, &opts(&[]));
    for path in ["/plaintext", "/json"] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(&get_req(path)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (got, eof) = read_to_eof(&mut s, PROMPT);
        assert!(
            got.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "[{}] GET {path} + FIN: {}",
            v.name,
            excerpt(&got, 200)
        );
        assert!(
            eof,
            "[{}] GET {path} + FIN: answered, but the connection was not closed within {PROMPT:?} \
             (the idle timeout is 30 s)",
            v.name
        );
    }
}

/// Clients that send part of a head and reset leave no descriptor behind:
/// the reset is noticed even when it arrives with the data.
fn partial_head_then_reset(v: &'static Variant) {
    let docroot = DocRoot::build();
    let server = Server::start(v.name, &docroot.root, &opts(&[]));
    let baseline = server.stable_fd_count();
    for i in 0..200 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        let head = format!("GET /plaintext?{i} HTTP/1.1\r\nHost: loc");
        s.write_all(head.as_bytes()).unwrap();
        set_linger_zero(&s);
        drop(s);
    }
    let end = server.wait_fd_count(baseline, Duration::from_secs(10));
    assert_eq!(
        end,
        baseline,
        "[{}] 200 clients sent a partial head and reset: {end} descriptors open, {baseline} before \
         (the header timeout is 30 s)\n{}",
        v.name,
        server.fd_listing()
    );
    let mut c = server.conn();
    c.get("/plaintext").expect_status(200, "after the resets");
}

/// A client that requests a large file and reads nothing is cut off after
/// `--send-timeout`; the others are served. On the blocking models that
/// client holds the thread until then (their honest limit); on the event
/// loops it costs nothing meanwhile.
fn a_client_that_reads_nothing(v: &'static Variant) {
    let docroot = DocRoot::build();
    add_huge_file(&docroot);
    // One worker: on the thread pool, the stalled client holds it.
    let one_thread = ServerOpts {
        threads: 1,
        ..opts(&["--send-timeout", "1s"])
    };
    let server = Server::start(v.name, &docroot.root, &one_thread);
    let mut stalled = sent(&server, "/huge.bin");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut c = Conn::connect(server.addr);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let r = c
        .try_read_after(&get_req("/plaintext"))
        .unwrap_or_else(|e| {
            panic!(
                "[{}] a client reading nothing of a 256 MiB file held the server: no answer to \
             another client within 20 s ({e}); --send-timeout is 1s",
                v.name
            )
        });
    r.expect_status(200, "GET /plaintext beside a client that reads nothing");
    println!("[{}] answered after {:?}", v.name, started.elapsed());
    // The stalled client is cut off once it has taken nothing for the send
    // timeout (the event loops notice at their next sweep; a blocking
    // `sendfile` returns what it sent before it waits its timeout): seen
    // as the server's end of the connection leaving ESTABLISHED. Reading on
    // after that, it reaches the end (or a reset) long before 256 MiB.
    let client_port = stalled.local_addr().unwrap().port();
    let cut = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        server_socket_state(server.addr.port(), client_port) != Some(1)
    });
    assert!(
        cut,
        "[{}] a client reading nothing is still connected 15 s later (--send-timeout 1s)",
        v.name
    );
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    assert!(
        total < 256 << 20,
        "[{}] the client that read nothing still got the whole file ({total} bytes)",
        v.name
    );
}

/// SIGTERM while a send is stuck on a client that reads nothing: the
/// server still exits within `--shutdown-timeout` (plus a margin), status 0.
fn sigterm_while_a_send_is_stuck(v: &'static Variant) {
    let docroot = DocRoot::build();
    add_huge_file(&docroot);
    let mut server = Server::start(
        v.name,
        &docroot.root,
        &opts(&["--send-timeout", "60s", "--shutdown-timeout", "1s"]),
    );
    let stalled = sent(&server, "/huge.bin");
    std::thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGTERM);
    let st = server.wait_exit(Duration::from_secs(15));
    assert!(
        st.is_some_and(|s| s.success()),
        "[{}] SIGTERM with a send stuck on a client that reads nothing: {st:?} within 15 s \
         (--shutdown-timeout 1s, --send-timeout 60s)\n{}",
        v.name,
        server.stderr_tail()
    );
    drop(stalled);
}

/// Blocking work queued on a single-threaded loop does not outlive
/// `--shutdown-timeout`: jobs not started by then are dropped.
fn shutdown_timeout_bounds_queued_jobs(v: &'static Variant) {
    let docroot = DocRoot::build();
    let mut server = Server::start(v.name, &docroot.root, &opts(&["--shutdown-timeout", "2s"]));
    let clients: Vec<TcpStream> = (0..20).map(|_| sent(&server, "/sleep?ms=1000")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let st = server.wait_exit(Duration::from_secs(12));
    assert!(
        st.is_some_and(|s| s.success()),
        "[{}] 20 queued /sleep?ms=1000 and SIGTERM with --shutdown-timeout 2s: {st:?} after \
         {:?} (each queued job would add 1 s)\n{}",
        v.name,
        started.elapsed(),
        server.stderr_tail()
    );
    if v.cannot(Limit::HandlersBlockTheLoop) {
        println!("[{}] exited {:?} after SIGTERM", v.name, started.elapsed());
    }
    drop(clients);
}

/// Resident memory of a process, KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether idle connections cost the model memory rather than a thread;
/// the memory cases measure those (a blocking model's idle connection holds
/// a thread, which its own limits bound).
fn holds_idle_connections_in_memory(v: &Variant, case: &str) -> bool {
    let yes = v.keep_alive == KeepAlive::Unbounded && !v.cannot(Limit::OneClientAtATime);
    if !yes {
        skip(
            v,
            case,
            "a connection holds a thread (KeepAlive not Unbounded)",
        );
    }
    yes
}

/// A large request does not leave its buffer behind on a keep-alive
/// connection: 200 connections that each sent a 1 MB body and stay open
/// cost far less than 200 MB.
fn big_requests_leave_no_buffer_behind(v: &'static Variant) {
    if !holds_idle_connections_in_memory(v, "big_requests_leave_no_buffer_behind") {
        return;
    }
    let docroot = DocRoot::build();
    let server = Server::start(v.name, &docroot.root, &opts(&[]));
    let body = vec![b'x'; 1_000_000];
    let post = |c: &mut Conn| {
        let len = body.len().to_string();
        let mut raw = req("POST", "/plaintext", &[("Content-Length", &len)]);
        raw.extend_from_slice(&body);
        c.try_read_after(&raw)
            .unwrap()
            .expect_status(405, "POST 1 MB to /plaintext");
    };
    let mut warm = server.conn();
    post(&mut warm);
    let before = rss_kib(server.pid);
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut c = server.conn();
        post(&mut c);
        conns.push(c);
    }
    let grown = rss_kib(server.pid).saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "[{}] 200 keep-alive connections after a 1 MB request each: RSS grew {grown} KiB \
         (a buffer kept per connection would be ~200 MiB)",
        v.name
    );
    println!(
        "[{}] RSS grew {grown} KiB for 200 idle connections after 1 MB each",
        v.name
    );
}

/// An idle keep-alive connection keeps no buffers: 2,000 of them, quiet
/// past one sweep, cost a few KiB each at most.
fn idle_connections_cost_little(v: &'static Variant) {
    if !holds_idle_connections_in_memory(v, "idle_connections_cost_little") {
        return;
    }
    let docroot = DocRoot::build();
    let server = Server::start(v.name, &docroot.root, &opts(&[]));
    let mut warm = server.conn();
    warm.get("/plaintext").expect_status(200, "warm-up");
    let before = rss_kib(server.pid);
    let n = 2_000u64;
    let mut conns = Vec::new();
    // In batches, each left idle past a sweep before the next: what is
    // measured is what idle connections keep, not the allocator's memory
    // of a peak when all of them were busy at once.
    for _ in 0..8 {
        for _ in 0..n / 8 {
            let mut c = server.conn();
            c.get("/plaintext")
                .expect_status(200, "GET /plaintext, then idle");
            conns.push(c);
        }
        std::thread::sleep(Duration::from_millis(600));
    }
    let per_conn = rss_kib(server.pid).saturating_sub(before) * 1024 / n;
    assert!(
        per_conn < 4096,
        "[{}] {n} idle keep-alive connections: {per_conn} bytes of RSS each (buffers kept?)",
        v.name
    );
    println!("[{}] {per_conn} bytes of RSS per idle connection", v.name);
}

/// An upload whose body trickles in a byte at a time (each read well within
/// the header timeout) is cut off at `--body-timeout` with 408, and its
/// temporary file goes.
fn a_trickled_body_meets_its_deadline(v: &'static Variant) {
    let docroot = DocRoot::build();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let server = Server::start(
        v.name,
        &docroot.root,
        &opts(&["--data-dir", &data_dir, "--body-timeout", "2s"]),
    );
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&req("POST", "/upload", &[("Content-Length", "1000")]))
        .unwrap();
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let (got, _) = read_to_eof(&mut s, Duration::from_secs(10));
    assert!(
        got.starts_with(b"HTTP/1.1 408 "),
        "[{}] a body of 1000 bytes sent a byte every 300 ms, --body-timeout 2s, header timeout \
         30s: expected 408 within 10 s, got {}",
        v.name,
        excerpt(&got, 200)
    );
    drop(s);
    trickle.join().unwrap();
    let left: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let settled = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        std::fs::read_dir(data.path()).unwrap().next().is_none()
    });
    assert!(
        settled,
        "[{}] the abandoned upload left {left:?} in the data dir",
        v.name
    );
}

/// A client pipelining thousands of requests for a small static file
/// without reading holds a bounded number of open files on the server
/// (`--max-queued-files`), and still gets every response once it reads.
fn pipelining_files_without_reading(v: &'static Variant) {
    if v.cannot(Limit::NoKeepAlive) {
        skip(v, "pipelining_files_without_reading", "Limit::NoKeepAlive");
        return;
    }
    let docroot = DocRoot::build();
    // Small enough to be a common static file, large enough that the
    // socket buffers fill and responses queue on the server.
    std::fs::write(docroot.root.join("small.txt"), vec![b's'; 64 * 1024]).unwrap();
    let server = Server::start(
        v.name,
        &docroot.root,
        &opts(&["--max-queued-files", "8", "--keepalive-requests", "0"]),
    );
    let baseline = server.stable_fd_count();
    let n = 2000;
    let one = get_req("/small.txt");
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&one.repeat(n)).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let held = server.fd_count();
    assert!(
        held <= baseline + 1 + 8 + 4,
        "[{}] {n} pipelined GETs of a static file, nothing read: {held} descriptors open \
         ({baseline} before; --max-queued-files 8)",
        v.name
    );
    let (got, _) = {
        s.shutdown(Shutdown::Write).unwrap();
        read_to_eof(&mut s, Duration::from_secs(20))
    };
    let answered = got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert_eq!(
        answered, n,
        "[{}] responses read back after the pipeline",
        v.name
    );
}

/// On a pool with a queue per kind of work, an upload's fsync does not wait
/// behind sleeping handlers: with both sleep workers busy and more sleeps
/// queued, a small upload is stored while no sleep has finished (event
/// order, not timing).
fn an_upload_does_not_queue_behind_sleeps(v: &'static Variant) {
    if !v.extra_flags.contains(&"--storage-workers") {
        skip(
            v,
            "an_upload_does_not_queue_behind_sleeps",
            "no --storage-workers (no separate queue)",
        );
        return;
    }
    let docroot = DocRoot::build();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let server = Server::start(
        v.name,
        &docroot.root,
        &opts(&["--data-dir", &data_dir, "--workers", "2"]),
    );
    let sleepers: Vec<TcpStream> = (0..6).map(|_| sent(&server, "/sleep?ms=4000")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = server.conn();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut raw = req("POST", "/upload", &[("Content-Length", "5")]);
    raw.extend_from_slice(b"hello");
    let r = c.try_read_after(&raw).unwrap();
    r.expect_status(201, "POST /upload while sleeps fill the workers");
    let refs: Vec<&TcpStream> = sleepers.iter().collect();
    let answered = poll_readable(&refs, Duration::ZERO);
    assert!(
        answered.iter().all(|r| !r),
        "[{}] the upload was stored only after a sleep finished: it queued behind them",
        v.name
    );
}

/// A CGI script that starts a daemon in a session of its own (`setsid … &`)
/// escapes its process group; the daemon still does not outlive the
/// request (the server is its subreaper and ends it).
fn a_setsid_daemon_does_not_outlive_its_script(v: &'static Variant) {
    use std::os::unix::fs::PermissionsExt;
    let docroot = DocRoot::build();
    let cgi = tempfile::tempdir().unwrap();
    let pidfile = cgi.path().join("daemon.pid");
    let script = cgi.path().join("escape");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsetsid sh -c 'echo $$ > {}; exec sleep 60' </dev/null >/dev/null 2>&1 &\n\
             sleep 0.2\nprintf 'Content-Type: text/plain\\r\\n\\r\\nstarted\\n'\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cgi_dir = cgi.path().to_str().unwrap().to_string();
    let server = Server::start(v.name, &docroot.root, &opts(&["--cgi-dir", &cgi_dir]));
    let mut c = server.conn();
    c.get("/cgi-bin/escape")
        .expect_status(200, "GET /cgi-bin/escape");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the script wrote its daemon's pid")
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
    };
    let gone = wait_until(PROMPT, Duration::from_millis(50), || !alive(pid));
    if !gone {
        // SAFETY: kill(2) on the stray daemon this test made.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        gone,
        "[{}] the daemon a CGI script started with setsid ({pid}) outlived the request",
        v.name
    );
}

/// Clients that ask for a large CGI output and read only its head cost the
/// server a temporary file each, not the output in memory: the body past
/// `--cgi-buffer-bytes` is spilled and sent from the file.
fn cgi_output_to_clients_that_read_nothing(v: &'static Variant) {
    use std::os::unix::fs::PermissionsExt;
    const OUTPUT: usize = 16 << 20;
    let docroot = DocRoot::build();
    let cgi = tempfile::tempdir().unwrap();
    let script = cgi.path().join("big");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\nexec head -c {OUTPUT} /dev/zero\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cgi_dir = cgi.path().to_str().unwrap().to_string();
    let server = Server::start(v.name, &docroot.root, &opts(&["--cgi-dir", &cgi_dir]));
    let mut warm = server.conn();
    warm.get("/plaintext").expect_status(200, "warm-up");
    let before = rss_kib(server.pid);
    drop(warm);
    // As many as the model serves at once (opts gives two threads).
    let n = if v.cannot(Limit::OneClientAtATime) {
        1
    } else {
        2 + 4 * usize::from(v.keep_alive == KeepAlive::Unbounded)
    };
    let mut clients: Vec<TcpStream> = (0..n).map(|_| sent(&server, "/cgi-bin/big")).collect();
    for c in &mut clients {
        let head = read_head(c);
        assert!(
            head.starts_with("HTTP/1.1 200") && head.contains(&format!("Content-Length: {OUTPUT}")),
            "[{}] GET /cgi-bin/big: {head}",
            v.name
        );
    }
    let grown = rss_kib(server.pid).saturating_sub(before);
    assert!(
        grown < 12 * 1024,
        "[{}] {n} clients holding a {} MiB CGI output each: RSS grew {grown} KiB (buffered in memory?)",
        v.name,
        OUTPUT >> 20
    );
    println!(
        "[{}] RSS grew {grown} KiB with {n} unread {} MiB CGI outputs",
        v.name,
        OUTPUT >> 20
    );
    let mut body = vec![1u8; OUTPUT];
    let read = clients[0].read_exact(&mut body);
    assert!(
        read.is_ok() && body.iter().all(|&b| b == 0),
        "[{}] the spilled body came back short or changed: {read:?}",
        v.name
    );
}

/// Work that waits in a queue past `--queue-timeout` (a job behind a slow
/// one on `epoll-threads`' pool, a connection waiting for a busy worker on
/// `threadpool`) is answered 503 with `Retry-After` and closed, not served
/// late. Models without a queue of their own skip.
fn work_queued_past_its_deadline_gets_503(v: &'static Variant) {
    let case = "work_queued_past_its_deadline_gets_503";
    let queued = v
        .extra_flags
        .iter()
        .any(|f| *f == "--queue" || *f == "--work-queue");
    if !queued {
        return skip(
            v,
            case,
            "no queue (no --queue or --work-queue): waiting work sits in the kernel backlog, \
             a loop, or a master that stops accepting",
        );
    }
    let mut extra = vec!["--queue-timeout", "300ms"];
    if v.extra_flags.contains(&"--workers") {
        extra.extend(["--workers", "1"]);
    }
    let docroot = DocRoot::build();
    let mut o = opts(&extra);
    o.threads = 1;
    let server = Server::start(v.name, &docroot.root, &o);
    let before = shed_count(&server);
    // Holds the only worker (or the only job thread) for a second and a half.
    let mut slow = server.conn();
    slow.send(&get_req("/sleep?ms=1500"));
    std::thread::sleep(Duration::from_millis(100));
    let mut late = server.conn();
    let started = Instant::now();
    late.send(&get_req("/sleep?ms=1"));
    // A worker of `threadpool` keeps its connection: the slow client must
    // finish before the queued one can be reached.
    slow.read_response(false)
        .expect_status(200, "the slow request itself");
    drop(slow);
    late.read_response(false)
        .expect_status(503, "a request queued past --queue-timeout")
        .expect_header("Retry-After", "1", "503 from the queue deadline")
        .expect_close("503 from the queue deadline");
    assert!(
        shed_count(&server) > before,
        "[{}] the 503 was not counted as shed in /stats",
        v.name
    );
    println!(
        "[{}] 503 after {:?} in the queue",
        v.name,
        started.elapsed()
    );
}

/// `/stats`' `shed` counter.
fn shed_count(server: &Server) -> u64 {
    let body = server.conn().get("/stats").body_str();
    let at = body.find("\"shed\":").expect("/stats has shed") + "\"shed\":".len();
    let digits: String = body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// Read a response head (through the blank line), byte by byte so nothing
/// of the body is taken.
fn read_head(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

per_variant_tests! {
    variants: [blocking, fork, threadpool, prefork, epoll, epoll_threads, uring],
    tests: [
        half_close_after_a_request,
        partial_head_then_reset,
        a_client_that_reads_nothing,
        sigterm_while_a_send_is_stuck,
        shutdown_timeout_bounds_queued_jobs,
        big_requests_leave_no_buffer_behind,
        idle_connections_cost_little,
        a_trickled_body_meets_its_deadline,
        pipelining_files_without_reading,
        an_upload_does_not_queue_behind_sleeps,
        a_setsid_daemon_does_not_outlive_its_script,
        cgi_output_to_clients_that_read_nothing,
        work_queued_past_its_deadline_gets_503,
    ],
}
