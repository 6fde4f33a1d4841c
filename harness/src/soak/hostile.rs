//! The hostile clients: what a server meets on the open internet, kept up
//! for the whole soak. Each is a thread that repeats one misbehaviour
//! until the clock runs out; what they get back does not matter (errors
//! are their normal outcome), only what they leave behind in the server,
//! which the end checks look for.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::format::grouped;
use crate::rig::workload::Workload;

use super::http::{self, Conn};
use super::Clock;

/// One misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GET the 1 MiB file and read 4 KB a second.
    SlowReader,
    /// POST /upload announcing 1 MB, then a byte a second.
    SlowBody,
    /// Half a request head, then a reset (SO_LINGER 0).
    ResetMidHead,
    /// A POST head and part of its body, then a reset.
    ResetMidBody,
    /// 200 GETs written back to back, nothing read, then a close.
    Pipeline,
}

impl Kind {
    /// Every kind, and how many threads of each.
    pub const ALL: [(Kind, usize); 5] = [
        (Kind::SlowReader, 2),
        (Kind::SlowBody, 2),
        (Kind::ResetMidHead, 1),
        (Kind::ResetMidBody, 1),
        (Kind::Pipeline, 1),
    ];

    /// Its name in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Kind::SlowReader => "slow readers",
            Kind::SlowBody => "slow bodies",
            Kind::ResetMidHead => "resets mid-head",
            Kind::ResetMidBody => "resets mid-body",
            Kind::Pipeline => "200 pipelined GETs unread",
        }
    }
}

/// Bytes a slow reader takes per second.
const SLOW_READ_BYTES: usize = 4096;
/// Content-Length a slow body announces.
const SLOW_BODY_BYTES: usize = 1_000_000;
/// GETs a pipelining client writes before it closes.
const PIPELINED: usize = 200;

/// Connections each kind has made.
#[derive(Default)]
pub struct Counts([AtomicU64; 5]);

impl Counts {
    fn add(&self, kind: Kind) {
        self.0[kind as usize].fetch_add(1, Ordering::SeqCst);
    }

    /// `slow readers 12, slow bodies 8, ...` (connections made).
    pub fn summary(&self) -> String {
        Kind::ALL
            .iter()
            .map(|(k, _)| {
                let n = self.0[*k as usize].load(Ordering::SeqCst);
                format!("{} {}", k.name(), grouped(n))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Start every hostile client against `addr`.
pub fn spawn(
    addr: SocketAddr,
    clock: &Arc<Clock>,
    counts: &Arc<Counts>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (kind, threads) in Kind::ALL {
        for i in 0..threads {
            let (clock, counts) = (clock.clone(), counts.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("soak-hostile-{}-{i}", kind as usize))
                    .spawn(move || {
                        while !clock.over() {
                            counts.add(kind);
                            let done = match Conn::open(addr, Duration::from_secs(10)) {
                                Ok(conn) => misbehave(kind, conn, &clock),
                                Err(_) => false,
                            };
                            if !done {
                                clock.nap(Duration::from_millis(100));
                            }
                        }
                    })?,
            );
        }
    }
    Ok(handles)
}

/// One round of `kind` on `conn`; false when it failed early (the caller
/// then pauses before the next round).
fn misbehave(kind: Kind, conn: Conn, clock: &Clock) -> bool {
    match kind {
        Kind::SlowReader => slow_reader(conn, clock).is_ok(),
        Kind::SlowBody => slow_body(conn, clock).is_ok(),
        Kind::ResetMidHead => reset_after(
            conn,
            b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ",
            clock,
        ),
        Kind::ResetMidBody => {
            let mut req = format!(
                "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
                100_000
            )
            .into_bytes();
            req.extend(std::iter::repeat(b'x').take(30_000));
            reset_after(conn, &req, clock)
        }
        Kind::Pipeline => pipeline(conn, clock).is_ok(),
    }
}

/// Read the 1 MiB file [`SLOW_READ_BYTES`] a second until it ends, the
/// server cuts the connection, or the clock runs out.
fn slow_reader(mut conn: Conn, clock: &Clock) -> io::Result<()> {
    conn.send(&http::get(Workload::Static1m.path(), true))?;
    let mut buf = vec![0u8; SLOW_READ_BYTES];
    let mut stream = conn.stream();
    while !clock.over() {
        if stream.read(&mut buf)? == 0 {
            return Ok(());
        }
        clock.nap(Duration::from_secs(1));
    }
    Ok(())
}

/// Announce [`SLOW_BODY_BYTES`] and send a byte a second until the server
/// answers or closes, or the clock runs out.
fn slow_body(mut conn: Conn, clock: &Clock) -> io::Result<()> {
    conn.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {SLOW_BODY_BYTES}\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut stream = conn.stream();
    // The read is the pause between two bytes.
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut buf = [0u8; 1024];
    while !clock.over() {
        stream.write_all(b"x")?;
        match stream.read(&mut buf) {
            // An answer (408, 413...) or a close: this round is over.
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Send `bytes`, wait a moment, reset; then pause before the next round.
fn reset_after(mut conn: Conn, bytes: &[u8], clock: &Clock) -> bool {
    let sent = conn.send(bytes).is_ok();
    clock.nap(Duration::from_millis(20));
    conn.reset();
    clock.nap(Duration::from_millis(50));
    sent
}

/// Write [`PIPELINED`] GETs of the 1 KiB file, read nothing, close (the
/// unread responses make the kernel answer with a reset).
fn pipeline(mut conn: Conn, clock: &Clock) -> io::Result<()> {
    let one = http::get(Workload::Static1k.path(), false);
    let all: Vec<u8> = one.repeat(PIPELINED);
    conn.send(&all)?;
    clock.nap(Duration::from_millis(100));
    drop(conn);
    clock.nap(Duration::from_millis(200));
    Ok(())
}
