//! The io_uring pitfalls, each provoked against the real `uring` binary:
//! a buffer ring run empty, a completion queue overflowing and a
//! submission queue full (rings shrunk by hidden options), connections
//! closed with operations in flight, short sends, and io_uring refused by
//! a seccomp filter. Each case asserts the bytes clients get, and where the
//! server logs the condition once, that it was hit (rounds are repeated,
//! boundedly, until it is).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Rounds a case may repeat before the condition it provokes must have
/// been logged.
const ROUNDS: usize = 40;

fn opts(extra: &[&str]) -> ServerOpts {
    ServerOpts {
        threads: 1,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOpts::default()
    }
}

/// `clients` connections at once, each pipelining `depth` GETs of
/// `/plaintext` and a 3000-byte POST to `/json` (405: its body must be read
/// and framed, across many receive buffers); every one must get exactly
/// its `depth` + 1 responses, in order, and the connection must stay open.
fn round(server: &Server, clients: usize, depth: usize) {
    let mut raw = get_req("/plaintext").repeat(depth);
    raw.extend_from_slice(&req("POST", "/json", &[("Content-Length", "3000")]));
    raw.extend_from_slice(&[b'x'; 3000]);
    let mut conns: Vec<Conn> = (0..clients).map(|_| server.conn()).collect();
    // All sends first, so their bytes reach the server together.
    for c in &mut conns {
        c.send(&raw);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        for k in 0..depth {
            c.read_response(false)
                .expect_status(200, &format!("client {i}, request {k}"))
                .expect_body(b"Hello, World!", "plaintext");
        }
        c.read_response(false)
            .expect_status(405, &format!("client {i}, the POST"))
            .expect_not_close("405 keeps the connection");
    }
}

/// Repeat `round`s until the server's stderr has every line of `logged`.
fn provoke(server: &Server, logged: &[&str], clients: usize, depth: usize) {
    for _ in 0..ROUNDS {
        round(server, clients, depth);
        let err = server.stderr_tail();
        if logged.iter().all(|l| err.contains(l)) {
            return;
        }
    }
    panic!(
        "after {ROUNDS} rounds the server never logged {logged:?}\nstderr:\n{}",
        server.stderr_tail()
    );
}

/// One receive buffer of 64 bytes: receives end with `-ENOBUFS` all the
/// time. That is no end of input: the receive is armed again and every
/// byte arrives, on connections that stay open.
#[test]
fn an_empty_buffer_ring_is_not_an_end_of_input() {
    let docroot = DocRoot::build();
    let server = Server::start(
        "uring",
        &docroot.root,
        &opts(&["--recv-buffers", "1", "--recv-buffer-size", "64"]),
    );
    provoke(&server, &["receive buffers of 64 bytes ran out"], 16, 4);
}

/// Two submission entries and sixteen completion entries for 64 clients
/// pipelining: submissions wait in the back-log, completions overflow into
/// the kernel's list, and no response is lost or reordered.
#[test]
fn tiny_queues_lose_nothing() {
    let docroot = DocRoot::build();
    let server = Server::start("uring", &docroot.root, &opts(&["--ring-entries", "2"]));
    provoke(
        &server,
        &["submission queue full", "completion queue overflowed"],
        64,
        4,
    );
}

/// Connections reset while a send is in flight (a client pipelining far
/// more than it reads) or while a file waits for room: their slots are
/// reused by the next clients only once the kernel is done with them, so
/// the next clients get exactly their own responses, and no descriptor is
/// left behind.
#[test]
fn closing_with_operations_in_flight() {
    let docroot = DocRoot::build();
    let big = std::fs::File::create(docroot.root.join("big.bin")).unwrap();
    big.set_len(64 << 20).unwrap();
    let server = Server::start("uring", &docroot.root, &opts(&[]));
    let baseline = server.stable_fd_count();
    let flood = get_req("/json").repeat(4000);
    for i in 0..30 {
        let mut stuck = TcpStream::connect(server.addr).unwrap();
        let path = if i % 2 == 0 { "/big.bin" } else { "/json" };
        let raw = if i % 2 == 0 {
            get_req(path)
        } else {
            flood.clone()
        };
        stuck.write_all(&raw).unwrap();
        let mut some = [0u8; 1024];
        stuck.read_exact(&mut some).unwrap();
        set_linger_zero(&stuck);
        drop(stuck);
        let mut next = server.conn();
        next.get("/plaintext")
            .expect_status(200, "after a reset with a send in flight")
            .expect_body(b"Hello, World!", "its own response");
    }
    let end = server.wait_fd_count(baseline, Duration::from_secs(10));
    assert_eq!(
        end,
        baseline,
        "descriptors left behind\n{}",
        server.fd_listing()
    );
}

/// A CGI response of several MB, read slowly: the socket buffer fills, so
/// sends come back short, and the rest must follow in order. The body is
/// `seq 1 400000`, so any lost, repeated or reordered piece shows.
#[test]
fn short_sends_resume_in_order() {
    use std::os::unix::fs::PermissionsExt;
    let docroot = DocRoot::build();
    let cgi = tempfile::tempdir().unwrap();
    let script = cgi.path().join("seq");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nseq 1 400000\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cgi_dir = cgi.path().to_str().unwrap().to_string();
    let server = Server::start("uring", &docroot.root, &opts(&["--cgi-dir", &cgi_dir]));
    let mut c = server.conn();
    c.send(&get_req("/cgi-bin/seq"));
    // Let the response fill the socket buffers before reading anything.
    std::thread::sleep(Duration::from_millis(500));
    let r = c.read_response(false);
    r.expect_status(200, "GET /cgi-bin/seq");
    let expected: String = (1..=400_000).map(|i| format!("{i}\n")).collect();
    assert!(
        r.body == expected.as_bytes(),
        "the body differs from `seq 1 400000` ({} bytes, {} expected)",
        r.body.len(),
        expected.len()
    );
    c.get("/plaintext")
        .expect_status(200, "the connection goes on after it");
}

/// A seccomp filter that makes `io_uring_setup` fail with EPERM, as a
/// container runtime's default profile does: installed in the child just
/// before it executes the server.
fn refuse_io_uring() -> std::io::Result<()> {
    const NR_IO_URING_SETUP: u32 = 425; // the same on every architecture
    const RET_ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: NR_IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: RET_ERRNO_EPERM,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with plain integer arguments; then with a pointer to
    // `prog`, valid (with the filter it points to) for the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// io_uring refused: one line on stderr naming the sysctl and its value,
/// nothing on stdout (no `listening on`), and the exit status that tells
/// `harness bench` to skip the variant.
#[test]
fn refused_io_uring_is_one_line_and_its_own_exit_status() {
    let mut cmd = Command::new(bin_path("uring"));
    cmd.args(["--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure only calls prctl, which is async-signal-safe.
    unsafe { cmd.pre_exec(refuse_io_uring) };
    let out = cmd.output().expect("run uring under seccomp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(servers::variants::EXIT_UNAVAILABLE),
        "exit status under a filter refusing io_uring_setup; stderr:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "it must not announce itself");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    assert!(
        stderr.contains("io_uring is unavailable")
            && stderr.contains("kernel.io_uring_disabled = ")
            && stderr.contains("Operation not permitted"),
        "the line names the failure and the sysctl's value:\n{stderr}"
    );
}
