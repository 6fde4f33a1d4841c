//! `sys::shm` and `sys::unix` across real `fork`s: what the pre-forking
//! server needs from them. Counters in shared memory add up exactly over
//! several processes, and descriptors (a file, a connected TCP socket)
//! passed over a socket pair work in the process that receives them.
//!
//! Children run only async-signal-safe code (atomics, the `sys` wrappers
//! documented as such, `_exit`): the test harness runs tests on several
//! threads, and a child of a multi-threaded process must not allocate or
//! take locks. A child reports failure through its exit code, never by
//! panicking.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use servers::sys::process::{exit_immediately, fork, Child, Fork, WaitStatus};
use servers::sys::shm::SharedSlice;
use servers::sys::socket::{accept, listen_tcp, local_addr};
use servers::sys::unix::{recv_fd, send_fd, socketpair, SocketKind};
use servers::sys::{io, unix};

/// Fork a child that runs `body` and `_exit`s with its result; the parent
/// gets a guard that kills and reaps the child if the test fails first.
/// `body` must be async-signal-safe (see the module docs).
fn spawn(body: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child runs only `body`, which every caller keeps
    // async-signal-safe, and ends in `_exit` without returning.
    match unsafe { fork() }.expect("fork") {
        Fork::Child => exit_immediately(body()),
        Fork::Parent(pid) => Child::adopt(pid).expect("adopt child"),
    }
}

fn assert_exited_ok(child: Child, what: &str) {
    assert_eq!(child.reap().unwrap(), WaitStatus::Exited(0), "{what}");
}

#[test]
fn counters_in_shared_memory_add_up_over_children() {
    const CHILDREN: u64 = 4;
    const K: u64 = 200_000;
    const SLOTS: usize = 8;
    let counters = SharedSlice::<AtomicU64>::new(SLOTS).unwrap();
    let per_child = SharedSlice::<AtomicU64>::new(CHILDREN as usize).unwrap();
    let children: Vec<Child> = (0..CHILDREN)
        .map(|c| {
            let (counters, per_child) = (&counters, &per_child);
            spawn(move || {
                for k in 0..K {
                    counters[k as usize % SLOTS].fetch_add(1, Relaxed);
                }
                per_child[c as usize].store(K, Relaxed);
                0
            })
        })
        .collect();
    for child in children {
        assert_exited_ok(child, "counting child");
    }
    let total: u64 = counters.iter().map(|c| c.load(Relaxed)).sum();
    assert_eq!(total, CHILDREN * K);
    for c in counters.iter() {
        assert_eq!(c.load(Relaxed), CHILDREN * K / SLOTS as u64);
    }
    assert!(per_child.iter().all(|c| c.load(Relaxed) == K));
}

#[test]
fn a_file_descriptor_passed_to_a_child_reads_and_writes_the_same_file() {
    const CONTENT: &[u8] = b"written by the parent\n";
    const REPLY: &[u8] = b"appended by the child\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passed");
    std::fs::write(&path, CONTENT).unwrap();
    let (parent_end, child_end) = socketpair(SocketKind::SeqPacket).unwrap();
    // Forked before the file is opened: the child can only reach it through
    // the descriptor it is sent.
    let child = spawn(|| {
        let mut note = [0u8; 16];
        let Ok((n, Some(file))) = recv_fd(child_end.as_fd(), &mut note) else {
            return 1;
        };
        if &note[..n] != b"file" {
            return 2;
        }
        let mut buf = [0u8; 64];
        let Ok(got) = io::read(file.as_fd(), &mut buf) else {
            return 3;
        };
        // The open file's offset is shared: this lands after what was read.
        match io::write(file.as_fd(), REPLY) {
            Ok(n) if n == REPLY.len() => {}
            _ => return 4,
        }
        // Report what was read back over the socket pair.
        match io::send(child_end.as_fd(), &buf[..got], false) {
            Ok(_) => 0,
            Err(_) => 5,
        }
    });
    drop(child_end);
    let mut file = File::options().read(true).write(true).open(&path).unwrap();
    assert_eq!(
        send_fd(parent_end.as_fd(), file.as_fd(), b"file").unwrap(),
        4
    );
    let mut report = [0u8; 64];
    let (n, fd) = recv_fd(parent_end.as_fd(), &mut report).unwrap();
    assert!(fd.is_none());
    assert_eq!(&report[..n], CONTENT, "what the child read");
    assert_exited_ok(child, "file child");
    // Same open file description: the child's read moved our offset too.
    assert_eq!(
        file.stream_position().unwrap(),
        (CONTENT.len() + REPLY.len()) as u64
    );
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut all = Vec::new();
    file.read_to_end(&mut all).unwrap();
    assert_eq!(all, [CONTENT, REPLY].concat());
}

#[test]
fn a_connected_tcp_socket_passed_to_a_child_is_answered_by_it() {
    const ANSWER: &[u8] = b"pong from the child\n";
    let (parent_end, child_end) = socketpair(SocketKind::SeqPacket).unwrap();
    // A worker waiting for connections, as in the prefork model.
    let child = spawn(|| {
        let mut note = [0u8; 16];
        let Ok((_, Some(conn))) = recv_fd(child_end.as_fd(), &mut note) else {
            return 1;
        };
        let mut req = [0u8; 16];
        match io::read(conn.as_fd(), &mut req) {
            Ok(4) if &req[..4] == b"ping" => {}
            _ => return 2,
        }
        match io::send(conn.as_fd(), ANSWER, false) {
            Ok(n) if n == ANSWER.len() => 0,
            _ => 3,
        }
    });
    drop(child_end);
    let listener = listen_tcp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), 16, false).unwrap();
    let addr = local_addr(listener.as_fd()).unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (conn, peer) = accept(listener.as_fd(), false).unwrap();
    assert_eq!(
        peer,
        client.local_addr().unwrap().to_string().parse().unwrap()
    );
    send_fd(parent_end.as_fd(), conn.as_fd(), b"conn").unwrap();
    // The master keeps no copy: the connection is now the worker's alone,
    // so the client sees end of stream when the worker is done.
    drop(conn);
    client.write_all(b"ping").unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, ANSWER);
    assert_exited_ok(child, "worker child");
}

#[test]
fn a_socket_pair_survives_fork_for_plain_messages_too() {
    let (parent_end, child_end) = unix::socketpair(SocketKind::Stream).unwrap();
    let child = spawn(|| match io::send(child_end.as_fd(), b"ready", false) {
        Ok(5) => 0,
        _ => 1,
    });
    drop(child_end);
    let mut buf = [0u8; 8];
    let (n, fd) = recv_fd(parent_end.as_fd(), &mut buf).unwrap();
    assert_eq!((&buf[..n], fd.is_none()), (&b"ready"[..], true));
    assert_exited_ok(child, "messaging child");
    // Every copy of the child's end is closed: end of stream.
    assert_eq!(recv_fd(parent_end.as_fd(), &mut buf).unwrap().0, 0);
}
