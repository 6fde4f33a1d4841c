//! The well-behaved clients: one thread per kind of request, each a plain
//! loop of blocking requests until the clock runs out, every response
//! counted under what was asked and what came back. A request in flight
//! when the clock runs out is finished (an upload is deleted again), so
//! the count is exact and the data dir is left as it was found.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::format::{self, grouped};
use crate::rig::workload::Workload;

use super::http::{self, Conn, Response};
use super::Clock;

/// Longest wait for a connect, a send or a read. Generous: a model that
/// serves one client at a time may hold a well-behaved one behind a
/// hostile one until its own timeouts cut the hostile one off (10 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of each upload.
const UPLOAD_BYTES: usize = 16 * 1024;

/// One line of the tally: how often a request got one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The request, e.g. `GET /plaintext (keep-alive)`.
    pub what: &'static str,
    /// `200`, `503`, `200 with 12 body bytes (expected 13)`, `error: ...`.
    pub outcome: String,
    /// Whether that is what the request should get.
    pub expected: bool,
    /// How many times.
    pub count: u64,
}

/// (request, outcome) → (expected, count).
type Outcomes = BTreeMap<(&'static str, String), (bool, u64)>;

/// Every well-behaved request and its outcome.
#[derive(Default)]
pub struct Tally {
    completed: AtomicU64,
    lines: Mutex<Outcomes>,
}

impl Tally {
    /// Requests that got a complete response (any status).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Count one request: `what` was asked, `expect` is the status it
    /// should get (and `body_len` the body length, when known).
    fn record(
        &self,
        what: &'static str,
        expect: u16,
        body_len: Option<usize>,
        got: &io::Result<Response>,
    ) {
        let (outcome, expected) = match got {
            Ok(r) => {
                self.completed.fetch_add(1, Ordering::SeqCst);
                match body_len {
                    Some(n) if r.status == expect && r.body_len != n => (
                        format!("{} with {} body bytes (expected {n})", r.status, r.body_len),
                        false,
                    ),
                    _ => (r.status.to_string(), r.status == expect),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                (
                    format!(
                        "error: no response within {}",
                        format::duration(REQUEST_TIMEOUT)
                    ),
                    false,
                )
            }
            Err(e) => (format!("error: {e}"), false),
        };
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.entry((what, outcome)).or_insert((expected, 0)).1 += 1;
    }

    /// The tally so far, by request then outcome.
    pub fn lines(&self) -> Vec<Line> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .map(|((what, outcome), (expected, count))| Line {
                what,
                outcome: outcome.clone(),
                expected: *expected,
                count: *count,
            })
            .collect()
    }
}

/// The tally in one line per request: `GET /json: 1,234 × 200, 2 × error: ...`.
pub fn describe(lines: &[Line]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last = "";
    for l in lines {
        let part = format!("{} × {}", grouped(l.count), l.outcome);
        if l.what == last {
            if let Some(s) = out.last_mut() {
                s.push_str(&format!(", {part}"));
            }
        } else {
            out.push(format!("{}: {part}", l.what));
            last = l.what;
        }
    }
    out
}

/// A keep-alive connection that reconnects after a close or an error.
struct Session {
    addr: SocketAddr,
    conn: Option<Conn>,
}

impl Session {
    fn new(addr: SocketAddr) -> Session {
        Session { addr, conn: None }
    }

    /// Send `request` on the open connection (or a new one) and read the
    /// response; the connection is dropped after a close or an error.
    fn call(&mut self, request: &[u8]) -> io::Result<Response> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(Conn::open(self.addr, REQUEST_TIMEOUT)?),
        };
        let r = conn.exchange(request, false);
        if !matches!(&r, Ok(resp) if !resp.close) {
            self.conn = None;
        }
        r
    }
}

/// One well-behaved client: its connection and where it counts.
struct Client<'a> {
    session: Session,
    tally: &'a Tally,
    clock: &'a Clock,
}

impl Client<'_> {
    /// Ask, count, and pause a little after an error (so a dead server is
    /// not hammered in a tight loop).
    fn ask(
        &mut self,
        what: &'static str,
        request: &[u8],
        expect: u16,
        body_len: Option<usize>,
    ) -> Option<Response> {
        let got = self.session.call(request);
        self.tally.record(what, expect, body_len, &got);
        if got.is_err() {
            self.clock.nap(Duration::from_millis(50));
        }
        got.ok()
    }

    /// The same request over and over.
    fn repeat(&mut self, what: &'static str, request: &[u8], body_len: Option<usize>) {
        while !self.clock.over() {
            self.ask(what, request, 200, body_len);
        }
    }

    /// GET /plaintext, each on a new connection.
    fn new_connections(&mut self) {
        let request = http::get("/plaintext", true);
        while !self.clock.over() {
            self.session.conn = None;
            self.ask(
                "GET /plaintext (Connection: close)",
                &request,
                200,
                Some(13),
            );
        }
    }

    /// POST /upload, then GET and DELETE the Location it answers with.
    fn uploads(&mut self) {
        let body: Vec<u8> = (0..UPLOAD_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
        let post = http::post("/upload", &body);
        while !self.clock.over() {
            let Some(r) = self.ask("POST /upload", &post, 201, None) else {
                continue;
            };
            let Some(location) = r.location.filter(|_| r.status == 201) else {
                continue;
            };
            self.ask(
                "GET /files/NAME",
                &http::get(&location, false),
                200,
                Some(UPLOAD_BYTES),
            );
            self.delete(&location);
        }
    }

    /// DELETE an upload; a `503` (shed: the server is overloaded) is tried
    /// again after its `Retry-After` second, a few times, so an upload is
    /// not left behind by a refusal the client should honour. Every
    /// attempt is counted.
    fn delete(&mut self, location: &str) {
        let request = http::delete(location);
        for _ in 0..DELETE_ATTEMPTS {
            match self.ask("DELETE /files/NAME", &request, 204, None) {
                Some(r) if r.status == 503 => std::thread::sleep(Duration::from_secs(1)),
                _ => return,
            }
        }
    }
}

/// How often a DELETE answered 503 is tried.
const DELETE_ATTEMPTS: usize = 5;

/// The kinds of well-behaved client, one thread each.
const KINDS: [&str; 7] = [
    "plaintext-keepalive",
    "plaintext-close",
    "static-1k",
    "static-1m",
    "upload",
    "cgi",
    "sleep",
];

/// Start every well-behaved client against `addr`.
pub fn spawn(
    addr: SocketAddr,
    clock: &Arc<Clock>,
    tally: &Arc<Tally>,
) -> io::Result<Vec<JoinHandle<()>>> {
    KINDS
        .iter()
        .map(|&kind| {
            let (clock, tally) = (clock.clone(), tally.clone());
            std::thread::Builder::new()
                .name(format!("soak-{kind}"))
                .spawn(move || run(kind, addr, &clock, &tally))
        })
        .collect()
}

/// One client of `kind` until the clock runs out.
fn run(kind: &str, addr: SocketAddr, clock: &Clock, tally: &Tally) {
    let mut c = Client {
        session: Session::new(addr),
        tally,
        clock,
    };
    let file = |w: Workload| (http::get(w.path(), false), Some(w.body_len()));
    match kind {
        "plaintext-keepalive" => c.repeat(
            "GET /plaintext (keep-alive)",
            &http::get("/plaintext", false),
            Some(13),
        ),
        "plaintext-close" => c.new_connections(),
        "static-1k" => {
            let (req, len) = file(Workload::Static1k);
            c.repeat("GET /static-1k.bin", &req, len)
        }
        "static-1m" => {
            let (req, len) = file(Workload::Static1m);
            c.repeat("GET /static-1m.bin", &req, len)
        }
        "upload" => c.uploads(),
        "cgi" => c.repeat(
            "GET /cgi-bin/time",
            &http::get("/cgi-bin/time", false),
            None,
        ),
        "sleep" => c.repeat("GET /sleep?ms=50", &http::get("/sleep?ms=50", false), None),
        other => unreachable!("no client kind {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16, body_len: usize) -> io::Result<Response> {
        Ok(Response {
            status,
            body_len,
            body: Vec::new(),
            close: false,
            location: None,
        })
    }

    #[test]
    fn tally_lines() {
        let t = Tally::default();
        t.record("GET /a", 200, Some(3), &ok(200, 3));
        t.record("GET /a", 200, Some(3), &ok(200, 3));
        t.record("GET /a", 200, Some(3), &ok(200, 2));
        t.record("GET /a", 200, Some(3), &ok(503, 20));
        t.record(
            "POST /b",
            201,
            None,
            &Err(io::Error::new(io::ErrorKind::WouldBlock, "EAGAIN")),
        );
        assert_eq!(t.completed(), 4);
        let lines = t.lines();
        let bad: Vec<&str> = lines
            .iter()
            .filter(|l| !l.expected)
            .map(|l| l.outcome.as_str())
            .collect();
        assert_eq!(
            bad,
            [
                "200 with 2 body bytes (expected 3)",
                "503",
                "error: no response within 30s"
            ]
        );
        assert_eq!(
            describe(&lines),
            [
                "GET /a: 2 × 200, 1 × 200 with 2 body bytes (expected 3), 1 × 503",
                "POST /b: 1 × error: no response within 30s"
            ]
        );
    }
}
