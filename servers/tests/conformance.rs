//! HTTP/1.1 conformance suite, run against all four server binaries as real
//! processes (ephemeral port, temporary docroot built here).
//!
//! Structure:
//! - `conformance_<variant>`: starts one server with the default flags
//!   (`--threads 2 --header-timeout 2s --keepalive-timeout 5s`), records its
//!   open-fd count, runs every case of [`cases`] against it in sequence (a
//!   failure is collected with the case name and the run goes on; after each
//!   case a fresh connection must still get `/plaintext` 200, else the
//!   remaining cases are skipped), then checks that the fd count returns to
//!   the starting value once every client socket is closed, and finally
//!   sends SIGTERM during an in-flight 4 MiB response, which must complete,
//!   and expects exit status 0. Cases that close the connection with an
//!   error status run last, so a server that breaks on them still gets the
//!   other cases checked.
//! - `body_limit_413_<variant>`: `--max-body-bytes 1000`; ends with SIGINT.
//! - `epoll[_threads]_serves_while_1000_idle_and_50_stalled_connections_are_open`:
//!   `--header-timeout 30s --keepalive-timeout 30s`, plus an fd check.
//! - `blocking_is_held_up_by_a_stalled_client` and
//!   `threadpool_two_workers_are_held_up_by_two_stalled_clients`: the honest
//!   limits of those models, shown by event order (poll(2)), not by timing.
//!
//! Every response read is checked for a Date (IMF-fixdate) and exactly one
//! Content-Length, and for the secret content placed outside the docroot.
//!
//! Run: `cargo test -p servers --test conformance` (add `-- --nocapture` to
//! see the per-case PASS list; it is also shown for a failing variant).

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Per-variant context
// ---------------------------------------------------------------------------

struct Ctx<'a> {
    variant: &'static str,
    addr: SocketAddr,
    root: &'a DocRoot,
}

impl Ctx<'_> {
    /// The `blocking` model answers every request with `Connection: close`.
    fn blocking(&self) -> bool {
        self.variant == "blocking"
    }

    fn conn(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// One request on a fresh connection. For `blocking`, also asserts the
    /// response says `Connection: close` and the connection then closes.
    #[track_caller]
    fn fetch(&self, raw: &[u8], head: bool) -> Response {
        let mut c = self.conn();
        let r = c.roundtrip(raw, head);
        if self.blocking() {
            r.expect_close("blocking answers every request with Connection: close");
            c.expect_closed("blocking closes after its one response");
        }
        r
    }

    #[track_caller]
    fn get(&self, path: &str) -> Response {
        self.fetch(&get_req(path), false)
    }
}

type CaseFn = Box<dyn Fn(&Ctx)>;

fn case(name: impl Into<String>, f: impl Fn(&Ctx) + 'static) -> (String, CaseFn) {
    (name.into(), Box::new(f))
}

/// The cases run against one default-flag server of `variant`, in order.
/// Keep-alive and pipelining cases have a `blocking_` form asserting that
/// model's one-response-then-close behaviour instead.
fn cases(variant: &str) -> Vec<(String, CaseFn)> {
    let blocking = variant == "blocking";
    let mut v: Vec<(String, CaseFn)> = vec![
        case("endpoints_get", endpoints_get),
        case("endpoints_head_same_headers_no_body", endpoints_head),
        case(
            "endpoints_other_methods_405_with_allow",
            endpoints_other_methods_405,
        ),
        case(
            "unknown_method_brew_405_with_allow",
            unknown_method_brew_405,
        ),
        case("post_with_body_to_static_path_405", post_body_to_static_405),
    ];
    if blocking {
        v.push(case(
            "blocking_keep_alive_request_gets_one_response_then_close",
            keep_alive,
        ));
        v.push(case(
            "blocking_pipelined_20_requests_get_one_response_then_close",
            pipelining,
        ));
        v.push(case(
            "blocking_request_one_byte_at_a_time_then_close",
            byte_at_a_time,
        ));
        v.push(case(
            "blocking_http10_keep_alive_still_closes",
            http10_keep_alive,
        ));
        v.push(case(
            "blocking_404_405_403_close_the_connection",
            errors_404_405_403_connection,
        ));
    } else {
        v.push(case(
            "keep_alive_several_requests_on_one_connection",
            keep_alive,
        ));
        v.push(case(
            "pipelined_20_requests_in_one_write_answered_in_order",
            pipelining,
        ));
        v.push(case("request_one_byte_at_a_time", byte_at_a_time));
        v.push(case("http10_keep_alive_stays_open", http10_keep_alive));
        v.push(case(
            "404_405_403_keep_the_connection_open",
            errors_404_405_403_connection,
        ));
    }
    v.extend([
        case(
            "http10_without_keep_alive_closes",
            http10_without_keep_alive,
        ),
        case("connection_close_header_closes", connection_close),
        case("head_static_same_headers_no_body", head_static),
        case("static_files_bodies_and_content_types", static_files),
        case("static_index_redirect_and_404", static_index_redirect_404),
        case("static_percent_decoded_path", static_percent_decoding),
        case("static_4mib_file_byte_identical", static_big_file),
        case("range_206_416_and_suffix", ranges),
        case("if_modified_since_304", not_modified),
        case("traversal_attempts_400_never_the_file", traversal),
        case(
            "bad_percent_encoding_and_encoded_nul_400",
            bad_percent_encoding,
        ),
        case("symlinks_outside_root_403_inside_root_200", symlinks),
    ]);
    v.push(case("stats_total_requests_counted_exactly", stats_exact));
    v.push(case(
        "client_reset_mid_response_server_keeps_serving",
        client_reset_mid_response,
    ));
    // Errors that close the connection come last: if one of them breaks the
    // server, the cases above have still been run.
    for &(name, raw_fn, status) in ERROR_CASES {
        v.push(case(name, move |ctx: &Ctx| {
            error_case(ctx, name, &raw_fn(), status)
        }));
    }
    v.push(case(
        "error_408_partial_head_then_silence",
        partial_head_408,
    ));
    v.push(case(
        "stats_count_error_responses_by_status",
        stats_count_error_responses,
    ));
    v
}

// ---------------------------------------------------------------------------
// The per-variant test driver
// ---------------------------------------------------------------------------

fn run_variant(variant: &'static str) {
    let root = DocRoot::build();
    let mut server = Server::start(variant, &root.root, &ServerOpts::default());
    let baseline_fds = server.stable_fd_count();
    let baseline_listing = server.fd_listing();
    let ctx = Ctx {
        variant,
        addr: server.addr,
        root: &root,
    };

    let mut passed = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let all = cases(variant);
    let total = all.len();
    for (i, (name, f)) in all.into_iter().enumerate() {
        if let Err(msg) = catch_quietly(|| f(&ctx)) {
            failures.push(format!("[{variant}] case `{name}` FAILED: {msg}"));
        } else {
            passed.push(name.clone());
        }
        // After every case the server must still serve a fresh client; if
        // it does not, the remaining cases are not run (each would only
        // wait for timeouts).
        let alive = server.is_alive();
        let still = catch_quietly(|| {
            assert!(alive, "the server process has exited");
            ctx.get("/plaintext")
                .expect_status(200, "fresh GET /plaintext")
                .expect_body(b"Hello, World!", "fresh GET /plaintext");
        });
        if let Err(msg) = still {
            failures.push(format!(
                "[{variant}] after case `{name}`: the server no longer serves a fresh /plaintext ({msg}); {} remaining case(s) not run",
                total - i - 1
            ));
            break;
        }
    }

    // File-descriptor leak check: every client socket is closed by now.
    if server.is_alive()
        && failures
            .iter()
            .all(|f| !f.contains("remaining case(s) not run"))
    {
        let end = server.wait_fd_count(baseline_fds, Duration::from_secs(15));
        if end != baseline_fds {
            failures.push(format!(
                "[{variant}] fd leak check FAILED: {baseline_fds} fds after startup, {end} after all cases with every client socket closed (waited 15 s)\nat startup:\n{baseline_listing}\nnow:\n{}",
                server.fd_listing()
            ));
        } else {
            passed.push("fd_count_back_to_startup_value".into());
        }
    }

    // SIGTERM during an in-flight response: it completes, exit status 0.
    if server.is_alive() {
        match catch_quietly(|| sigterm_finishes_in_flight(&mut server, &root)) {
            Ok(()) => passed.push("sigterm_finishes_in_flight_response_exit_0".into()),
            Err(msg) => failures.push(format!(
                "[{variant}] `sigterm_finishes_in_flight_response_exit_0` FAILED: {msg}"
            )),
        }
    } else {
        failures.push(format!(
            "[{variant}] the server process exited ({:?}) before the fd and SIGTERM checks",
            server.wait_exit(Duration::ZERO)
        ));
    }

    println!(
        "[{variant}] {} passed, {} failed",
        passed.len(),
        failures.len()
    );
    for p in &passed {
        println!("[{variant}] PASS {p}");
    }
    if !failures.is_empty() {
        panic!(
            "{} failure(s) for `{variant}`:\n\n{}\n\n--- server stderr (tail) ---\n{}",
            failures.len(),
            failures.join("\n\n"),
            server.stderr_tail()
        );
    }
}

#[test]
fn conformance_blocking() {
    run_variant("blocking");
}

#[test]
fn conformance_threadpool() {
    run_variant("threadpool");
}

#[test]
fn conformance_epoll() {
    run_variant("epoll");
}

#[test]
fn conformance_epoll_threads() {
    run_variant("epoll-threads");
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

const ENDPOINTS: [&str; 4] = ["/plaintext", "/json", "/health", "/stats"];

fn endpoints_get(ctx: &Ctx) {
    let r = ctx.get("/plaintext");
    r.expect_status(200, "GET /plaintext")
        .expect_body(b"Hello, World!", "GET /plaintext");
    assert_eq!(
        r.media_type().as_deref(),
        Some("text/plain"),
        "GET /plaintext Content-Type\n{}",
        r.summary()
    );

    let r = ctx.get("/json");
    r.expect_status(200, "GET /json")
        .expect_body(br#"{"message":"Hello, World!"}"#, "GET /json");
    assert_eq!(
        r.media_type().as_deref(),
        Some("application/json"),
        "GET /json Content-Type\n{}",
        r.summary()
    );

    let r = ctx.get("/health");
    r.expect_status(200, "GET /health")
        .expect_body(b"OK", "GET /health");

    let r = ctx.get("/stats");
    r.expect_status(200, "GET /stats");
    assert_eq!(
        r.media_type().as_deref(),
        Some("application/json"),
        "GET /stats Content-Type\n{}",
        r.summary()
    );
    let s = Stats::from_response(&r);
    assert!(!s.variant.is_empty(), "stats.variant is empty\n{}", s.raw);
}

/// Send HEAD `raw` and read the response, proving no body follows: on a
/// keep-alive connection the next response must parse cleanly; for
/// `blocking` the connection must close with no further byte.
#[track_caller]
fn head_without_body(ctx: &Ctx, raw: &[u8], what: &str) -> Response {
    let mut c = ctx.conn();
    let r = c.roundtrip(raw, true);
    if ctx.blocking() {
        r.expect_close(what);
        if let Err(e) = c.wait_closed() {
            panic!("{what}: after the HEAD response head: {e} (a HEAD response must have no body)");
        }
    } else {
        r.expect_not_close(what);
        let next = c.try_read_after(&get_req("/health"));
        match next {
            Ok(n) if n.status == 200 && n.body == b"OK" => {}
            Ok(n) => panic!(
                "{what}: the request after HEAD got a wrong response (HEAD body bytes sent?)\n{}",
                n.summary()
            ),
            Err(e) => panic!("{what}: the request after HEAD failed (HEAD body bytes sent?): {e}"),
        }
    }
    r
}

fn endpoints_head(ctx: &Ctx) {
    for path in ENDPOINTS {
        let g = ctx.get(path);
        g.expect_status(200, &format!("GET {path}"));
        let what = format!("HEAD {path}");
        let h = head_without_body(ctx, &req("HEAD", path, &[]), &what);
        h.expect_status(200, &what);
        assert_eq!(
            h.header("content-type"),
            g.header("content-type"),
            "{what}: Content-Type differs from GET\n{}",
            h.summary()
        );
        if path != "/stats" {
            assert_eq!(
                h.content_length(),
                Some(g.body.len() as u64),
                "{what}: Content-Length must be the GET body length\n{}",
                h.summary()
            );
        }
    }
}

fn endpoints_other_methods_405(ctx: &Ctx) {
    let mut shared = if ctx.blocking() {
        None
    } else {
        Some(ctx.conn())
    };
    for path in ENDPOINTS {
        for m in ["POST", "PUT", "DELETE", "PATCH"] {
            let what = format!("{m} {path}");
            let raw = req(m, path, &[("Content-Length", "0")]);
            let r = match &mut shared {
                Some(c) => {
                    let r = c.roundtrip(&raw, false);
                    r.expect_not_close(&format!("{what} (405 keeps the connection open)"));
                    r
                }
                None => ctx.fetch(&raw, false),
            };
            r.expect_status(405, &what)
                .expect_header("allow", "GET, HEAD", &what);
        }
    }
    if let Some(c) = &mut shared {
        c.get("/plaintext")
            .expect_status(200, "GET /plaintext after the 405s on the same connection");
    }
}

fn unknown_method_brew_405(ctx: &Ctx) {
    let raw = b"BREW /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    let what = "BREW /plaintext";
    if ctx.blocking() {
        ctx.fetch(raw, false)
            .expect_status(405, what)
            .expect_header("allow", "GET, HEAD", what);
    } else {
        let mut c = ctx.conn();
        let r = c.roundtrip(raw, false);
        r.expect_status(405, what)
            .expect_header("allow", "GET, HEAD", what)
            .expect_not_close("BREW -> 405 keeps the connection open");
        c.get("/plaintext")
            .expect_status(200, "GET /plaintext after BREW on the same connection");
    }
}

fn post_body_to_static_405(ctx: &Ctx) {
    let raw = b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nhello=world";
    let what = "POST /hello.txt with an 11-byte body";
    if ctx.blocking() {
        ctx.fetch(raw, false)
            .expect_status(405, what)
            .expect_header("allow", "GET, HEAD", what);
    } else {
        let mut c = ctx.conn();
        c.roundtrip(raw, false)
            .expect_status(405, what)
            .expect_header("allow", "GET, HEAD", what)
            .expect_not_close(what);
        // The body must have been consumed, not parsed as the next request.
        c.get("/hello.txt")
            .expect_status(200, "GET /hello.txt after the POST on the same connection")
            .expect_body(&ctx.root.hello, "GET /hello.txt after the POST");
    }
}

// ---------------------------------------------------------------------------
// Connection management
// ---------------------------------------------------------------------------

fn keep_alive(ctx: &Ctx) {
    let mut c = ctx.conn();
    if ctx.blocking() {
        let r = c.get("/plaintext");
        r.expect_status(200, "GET /plaintext")
            .expect_close("blocking: a keep-alive (HTTP/1.1) request still gets Connection: close");
        c.expect_closed("blocking: one response, then the connection closes");
        return;
    }
    let seq: Vec<(&str, u16, Option<&[u8]>)> = vec![
        ("/plaintext", 200, Some(b"Hello, World!".as_slice())),
        (
            "/json",
            200,
            Some(br#"{"message":"Hello, World!"}"#.as_slice()),
        ),
        ("/hello.txt", 200, Some(ctx.root.hello.as_slice())),
        ("/missing-file.txt", 404, None),
        ("/health", 200, Some(b"OK".as_slice())),
        ("/p/03.txt", 200, Some(ctx.root.pipelined[3].as_slice())),
        ("/plaintext", 200, Some(b"Hello, World!".as_slice())),
    ];
    for (i, (path, status, body)) in seq.into_iter().enumerate() {
        let what = format!("request #{} GET {path} on one keep-alive connection", i + 1);
        let r = c.get(path);
        r.expect_status(status, &what).expect_not_close(&what);
        if let Some(b) = body {
            r.expect_body(b, &what);
        }
    }
}

fn pipelining(ctx: &Ctx) {
    let mut batch = Vec::new();
    for i in 0..20 {
        let method = if i == 10 { "HEAD" } else { "GET" };
        batch.extend(req(method, &format!("/p/{i:02}.txt"), &[]));
    }
    let mut c = ctx.conn();
    c.send(&batch);
    if ctx.blocking() {
        let r = c.read_response(false);
        r.expect_status(200, "first pipelined response")
            .expect_body(&ctx.root.pipelined[0], "first pipelined response")
            .expect_close(
                "blocking answers only the first pipelined request, with Connection: close",
            );
        c.expect_closed(
            "blocking closes after the first pipelined response (19 requests unanswered)",
        );
        return;
    }
    for i in 0..20 {
        let head = i == 10;
        let what = format!(
            "pipelined response #{i} ({} /p/{i:02}.txt)",
            if head { "HEAD" } else { "GET" }
        );
        let r = match c.try_read_response(head) {
            Ok(r) => r,
            Err(e) => panic!("{what}: {e}"),
        };
        r.expect_status(200, &what).expect_not_close(&what);
        if head {
            assert_eq!(
                r.content_length(),
                Some(ctx.root.pipelined[i].len() as u64),
                "{what}: Content-Length\n{}",
                r.summary()
            );
        } else {
            r.expect_body(&ctx.root.pipelined[i], &what);
        }
    }
    c.get("/plaintext")
        .expect_status(200, "request after the 20 pipelined ones");
}

fn byte_at_a_time(ctx: &Ctx) {
    let raw = get_req("/p/05.txt");
    let mut c = ctx.conn();
    for b in &raw {
        c.send(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = c.read_response(false);
    r.expect_status(200, "request sent one byte at a time")
        .expect_body(&ctx.root.pipelined[5], "request sent one byte at a time");
    if ctx.blocking() {
        r.expect_close("blocking");
        c.expect_closed("blocking closes after the response");
    } else {
        r.expect_not_close("byte-at-a-time HTTP/1.1 request");
        c.get("/plaintext")
            .expect_status(200, "second request on the same connection");
    }
}

fn http10_without_keep_alive(ctx: &Ctx) {
    for raw in [
        &b"GET /plaintext HTTP/1.0\r\n\r\n"[..],
        &b"GET /plaintext HTTP/1.0\r\nHost: x\r\n\r\n"[..],
    ] {
        let what = format!("HTTP/1.0 request {:?}", String::from_utf8_lossy(raw));
        let mut c = ctx.conn();
        let r = c.roundtrip(raw, false);
        r.expect_status(200, &what)
            .expect_body(b"Hello, World!", &what)
            .expect_close(&what);
        c.expect_closed(&format!("{what}: the server must close after answering"));
    }
}

fn http10_keep_alive(ctx: &Ctx) {
    let mut c = ctx.conn();
    let ka =
        |path: &str| format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").into_bytes();
    if ctx.blocking() {
        let r = c.roundtrip(&ka("/plaintext"), false);
        r.expect_status(200, "HTTP/1.0 keep-alive request")
            .expect_close("blocking answers HTTP/1.0 keep-alive with Connection: close");
        c.expect_closed("blocking closes after one response even for HTTP/1.0 keep-alive");
        return;
    }
    for (i, path) in ["/plaintext", "/hello.txt"].into_iter().enumerate() {
        let what = format!("HTTP/1.0 keep-alive request #{} GET {path}", i + 1);
        let r = c.roundtrip(&ka(path), false);
        r.expect_status(200, &what).expect_not_close(&what);
        assert!(
            r.has_connection_token("keep-alive"),
            "{what}: response must say `Connection: keep-alive`\n{}",
            r.summary()
        );
    }
    let r = c.roundtrip(b"GET /health HTTP/1.0\r\n\r\n", false);
    r.expect_status(200, "third request, HTTP/1.0 without keep-alive")
        .expect_body(b"OK", "HTTP/1.0 /health")
        .expect_close("HTTP/1.0 without keep-alive");
    c.expect_closed("HTTP/1.0 without keep-alive: the server closes after answering");
}

fn connection_close(ctx: &Ctx) {
    for path in ["/plaintext", "/hello.txt"] {
        let what = format!("GET {path} with Connection: close");
        let mut c = ctx.conn();
        let r = c.roundtrip(&req("GET", path, &[("Connection", "close")]), false);
        r.expect_status(200, &what).expect_close(&what);
        c.expect_closed(&format!("{what}: the server must close after answering"));
    }
}

fn errors_404_405_403_connection(ctx: &Ctx) {
    let reqs: [(&[u8], u16); 3] = [
        (b"GET /does-not-exist.txt HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"DELETE /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET /link_out_file HTTP/1.1\r\nHost: x\r\n\r\n", 403),
    ];
    if ctx.blocking() {
        for (raw, status) in reqs {
            ctx.fetch(raw, false)
                .expect_status(status, &format!("blocking {status}"));
        }
        return;
    }
    let mut c = ctx.conn();
    for (raw, status) in reqs {
        let what = format!("{status} response on a keep-alive connection");
        c.roundtrip(raw, false)
            .expect_status(status, &what)
            .expect_not_close(&what);
    }
    c.get("/plaintext")
        .expect_status(
            200,
            "GET /plaintext on the same connection after 404, 405, 403",
        )
        .expect_body(b"Hello, World!", "after 404/405/403");
}

// ---------------------------------------------------------------------------
// Static files
// ---------------------------------------------------------------------------

fn head_static(ctx: &Ctx) {
    for path in [
        "/hello.txt",
        "/index.html",
        "/dated.txt",
        "/img.png",
        "/big.bin",
    ] {
        let g = ctx.get(path);
        g.expect_status(200, &format!("GET {path}"));
        let what = format!("HEAD {path}");
        let h = head_without_body(ctx, &req("HEAD", path, &[]), &what);
        h.expect_status(200, &what);
        for name in ["content-type", "content-length", "last-modified"] {
            assert!(
                g.header(name).is_some(),
                "GET {path}: missing {name}\n{}",
                g.summary()
            );
            assert_eq!(
                h.header(name),
                g.header(name),
                "{what}: {name} differs from GET\n{}",
                h.summary()
            );
        }
        assert_eq!(
            h.content_length(),
            Some(g.body.len() as u64),
            "{what}: Content-Length of the full body"
        );
    }
}

fn static_files(ctx: &Ctx) {
    for f in ctx.root.files.iter().filter(|f| f.url != "/big.bin") {
        let what = format!("GET {}", f.url);
        let r = ctx.get(&f.url);
        r.expect_status(200, &what).expect_body(&f.content, &what);
        assert!(
            f.ctype.matches(r.header("content-type")),
            "{what}: Content-Type {:?}, expected {:?}\n{}",
            r.header("content-type"),
            f.ctype,
            r.summary()
        );
        match r.header("last-modified") {
            Some(v) if is_imf_fixdate(v) => {}
            other => panic!(
                "{what}: Last-Modified {other:?} is missing or not an IMF-fixdate\n{}",
                r.summary()
            ),
        }
    }
    let r = ctx.get("/dated.txt");
    r.expect_status(200, "GET /dated.txt").expect_header(
        "last-modified",
        DATED_MTIME_HTTP,
        "GET /dated.txt (mtime 2020-01-01T00:00:00Z)",
    );
}

fn static_index_redirect_404(ctx: &Ctx) {
    let index = &ctx
        .root
        .files
        .iter()
        .find(|f| f.url == "/index.html")
        .unwrap()
        .content;
    let root_index = ctx.get("/");
    root_index
        .expect_status(200, "GET /")
        .expect_body(index, "GET / serves index.html");

    let dir_index = &ctx
        .root
        .files
        .iter()
        .find(|f| f.url == "/dir/index.html")
        .unwrap()
        .content;
    ctx.get("/dir/")
        .expect_status(200, "GET /dir/")
        .expect_body(dir_index, "GET /dir/ serves dir/index.html");

    for (path, loc) in [("/dir", "/dir/"), ("/p", "/p/")] {
        let what = format!("GET {path} (a directory without the trailing slash)");
        ctx.get(path)
            .expect_status(301, &what)
            .expect_header("location", loc, &what);
    }
    for path in ["/missing.txt", "/dir/missing.txt", "/missing/deeper.txt"] {
        ctx.get(path).expect_status(404, &format!("GET {path}"));
    }
    // Checked last so the assertions above run even when this fails.
    let dir_index = ctx.get("/dir/");
    let mut bad = Vec::new();
    for (what, r) in [("GET /", &root_index), ("GET /dir/", &dir_index)] {
        if !Ctype::Exact("text/html; charset=utf-8").matches(r.header("content-type")) {
            bad.push(format!(
                "{what} (serves an index.html): Content-Type must be \
                 `text/html; charset=utf-8`\n{}",
                r.summary()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn static_percent_decoding(ctx: &Ctx) {
    let spaced = &ctx
        .root
        .files
        .iter()
        .find(|f| f.url == "/hello%20world.txt")
        .unwrap()
        .content;
    ctx.get("/hello%20world.txt")
        .expect_status(200, "GET /hello%20world.txt")
        .expect_body(spaced, "GET /hello%20world.txt");
    ctx.get("/%68ello.txt")
        .expect_status(200, "GET /%68ello.txt")
        .expect_body(&ctx.root.hello, "GET /%68ello.txt (= /hello.txt)");
    let file = &ctx
        .root
        .files
        .iter()
        .find(|f| f.url == "/dir/file.txt")
        .unwrap()
        .content;
    ctx.get("/di%72/file%2Etxt")
        .expect_status(200, "GET /di%72/file%2Etxt")
        .expect_body(file, "GET /di%72/file%2Etxt (= /dir/file.txt)");
}

fn static_big_file(ctx: &Ctx) {
    let r = ctx.get("/big.bin");
    r.expect_status(200, "GET /big.bin")
        .expect_body(&ctx.root.big, "GET /big.bin (4 MiB)");
    if !ctx.blocking() {
        let mut c = ctx.conn();
        for i in 1..=2 {
            c.get("/big.bin")
                .expect_status(200, &format!("GET /big.bin #{i} on one connection"))
                .expect_body(
                    &ctx.root.big,
                    &format!("GET /big.bin #{i} on one connection"),
                );
        }
        c.get("/plaintext")
            .expect_status(200, "GET /plaintext after two 4 MiB responses");
    }
}

fn ranges(ctx: &Ctx) {
    let small = &ctx.root.range; // b"0123456789abcdefghij"
    let cases: [(&str, &str, &[u8]); 7] = [
        ("bytes=0-4", "bytes 0-4/20", &small[0..5]),
        ("bytes=15-", "bytes 15-19/20", &small[15..]),
        ("bytes=-3", "bytes 17-19/20", &small[17..]),
        ("bytes=5-5", "bytes 5-5/20", &small[5..6]),
        ("bytes=10-999", "bytes 10-19/20", &small[10..]),
        ("bytes=0-", "bytes 0-19/20", &small[..]),
        ("bytes=-50", "bytes 0-19/20", &small[..]),
    ];
    for (range, content_range, body) in cases {
        let what = format!("GET /range.txt Range: {range}");
        let r = ctx.fetch(&req("GET", "/range.txt", &[("Range", range)]), false);
        r.expect_status(206, &what)
            .expect_header("content-range", content_range, &what)
            .expect_body(body, &what);
    }
    for range in ["bytes=20-", "bytes=25-30"] {
        let what = format!("GET /range.txt Range: {range} (unsatisfiable)");
        ctx.fetch(&req("GET", "/range.txt", &[("Range", range)]), false)
            .expect_status(416, &what)
            .expect_header("content-range", "bytes */20", &what);
    }

    // Ranges of the 4 MiB file (sendfile with an offset), on one keep-alive
    // connection for the keep-alive variants.
    let big = &ctx.root.big;
    let n = big.len();
    let big_cases: Vec<(String, String, &[u8])> = vec![
        (
            "bytes=1000000-1000999".into(),
            format!("bytes 1000000-1000999/{n}"),
            &big[1_000_000..1_001_000],
        ),
        (
            "bytes=-5000".into(),
            format!("bytes {}-{}/{n}", n - 5000, n - 1),
            &big[n - 5000..],
        ),
        (
            "bytes=4000000-".into(),
            format!("bytes 4000000-{}/{n}", n - 1),
            &big[4_000_000..],
        ),
    ];
    let mut shared = if ctx.blocking() {
        None
    } else {
        Some(ctx.conn())
    };
    for (range, content_range, body) in &big_cases {
        let what = format!("GET /big.bin Range: {range}");
        let raw = req("GET", "/big.bin", &[("Range", range)]);
        let r = match &mut shared {
            Some(c) => c.roundtrip(&raw, false),
            None => ctx.fetch(&raw, false),
        };
        r.expect_status(206, &what)
            .expect_header("content-range", content_range, &what)
            .expect_body(body, &what);
    }
    if let Some(c) = &mut shared {
        c.get("/plaintext")
            .expect_status(200, "GET /plaintext after 206 responses on one connection");
    }
    let what = format!("GET /big.bin Range: bytes={n}-");
    ctx.fetch(
        &req("GET", "/big.bin", &[("Range", &format!("bytes={n}-"))]),
        false,
    )
    .expect_status(416, &what)
    .expect_header("content-range", &format!("bytes */{n}"), &what);
}

fn not_modified(ctx: &Ctx) {
    let dated_len = ctx.root.dated.len() as u64;
    let mut cl_problems: Vec<String> = Vec::new();
    let g = ctx.get("/dated.txt");
    g.expect_status(200, "GET /dated.txt").expect_header(
        "last-modified",
        DATED_MTIME_HTTP,
        "GET /dated.txt",
    );
    for ims in [DATED_MTIME_HTTP, "Thu, 02 Jan 2020 00:00:00 GMT"] {
        let what = format!("GET /dated.txt If-Modified-Since: {ims}");
        let raw = req("GET", "/dated.txt", &[("If-Modified-Since", ims)]);
        let mut c = ctx.conn();
        let r = c.roundtrip(&raw, false);
        r.expect_status(304, &what);
        // The spec: every response has Content-Length. RFC 9110 8.6: in a
        // 304 it must equal the length a 200 would have had. Checked at the
        // end so the rest of the case runs either way.
        if r.content_length() != Some(dated_len) {
            cl_problems.push(format!(
                "{what}: a 304 must carry Content-Length: {dated_len} (the spec: every response has Content-Length; RFC 9110 8.6: the length a 200 would have), got {:?}\n{}",
                r.header("content-length"),
                r.summary()
            ));
        }
        if ctx.blocking() {
            r.expect_close(&what);
            if let Err(e) = c.wait_closed() {
                panic!("{what}: after the 304 head: {e} (a 304 has no body)");
            }
        } else {
            r.expect_not_close(&what);
            match c.try_read_after(&get_req("/health")) {
                Ok(n) if n.status == 200 && n.body == b"OK" => {}
                Ok(n) => panic!(
                    "{what}: request after the 304 got a wrong response (body sent with 304?)\n{}",
                    n.summary()
                ),
                Err(e) => panic!("{what}: request after the 304 failed (body sent with 304?): {e}"),
            }
        }
    }
    for ims in ["Tue, 31 Dec 2019 23:59:59 GMT", "not a date"] {
        let what = format!("GET /dated.txt If-Modified-Since: {ims}");
        ctx.fetch(
            &req("GET", "/dated.txt", &[("If-Modified-Since", ims)]),
            false,
        )
        .expect_status(200, &what)
        .expect_body(&ctx.root.dated, &what);
    }
    // Any file: its own Last-Modified as If-Modified-Since gives 304.
    let g = ctx.get("/hello.txt");
    let lm = g
        .header("last-modified")
        .expect("Last-Modified on /hello.txt")
        .to_string();
    let what = format!("GET /hello.txt If-Modified-Since: {lm} (its own Last-Modified)");
    ctx.fetch(
        &req("GET", "/hello.txt", &[("If-Modified-Since", &lm)]),
        false,
    )
    .expect_status(304, &what);
    assert!(cl_problems.is_empty(), "{}", cl_problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Traversal and symlinks
// ---------------------------------------------------------------------------

const TRAVERSALS: [&str; 10] = [
    "/../secret.txt",
    "/a/../../secret.txt",
    "/dir/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/..%2fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/%2E%2E/secret.txt",
    "/.%2e/secret.txt",
    "/dir/%2e%2e/%2e%2e/secret.txt",
    "/../outside/secret2.txt",
];

fn traversal(ctx: &Ctx) {
    for path in TRAVERSALS {
        let what = format!("GET {path}");
        // The response reader fails on any response containing the secret.
        let r = ctx.get(path);
        r.expect_status(400, &what);
        assert!(
            !contains(&r.body, &ctx.root.secret),
            "{what}: secret served"
        );
        let h = ctx.fetch(&req("HEAD", path, &[]), true);
        h.expect_status(400, &format!("HEAD {path}"));
    }
}

fn bad_percent_encoding(ctx: &Ctx) {
    for path in [
        "/%zz",
        "/%00",
        "/%2",
        "/%g0/x",
        "/hello.txt%00.png",
        "/dir/%00",
    ] {
        ctx.get(path).expect_status(400, &format!("GET {path}"));
    }
}

fn symlinks(ctx: &Ctx) {
    let r = ctx.get("/link_in.txt");
    r.expect_status(
        200,
        "GET /link_in.txt (symlink to hello.txt inside the root)",
    )
    .expect_body(&ctx.root.hello, "GET /link_in.txt");
    for path in [
        "/link_out_file",
        "/link_out_abs.txt",
        "/link_out_dir/secret2.txt",
        "/link_out_dir/",
    ] {
        let what = format!("GET {path} (symlink pointing outside the root)");
        let r = ctx.get(path);
        r.expect_status(403, &what);
        assert!(
            !contains(&r.body, &ctx.root.secret),
            "{what}: secret served"
        );
    }
}

// ---------------------------------------------------------------------------
// Errors that close the connection
// ---------------------------------------------------------------------------

fn long_request_line() -> Vec<u8> {
    let mut s = b"GET /".to_vec();
    s.extend(std::iter::repeat(b'a').take(9000));
    s.extend(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    s
}

fn big_headers() -> Vec<u8> {
    let mut s = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..10 {
        s.extend(format!("X-Pad-{i}: ").bytes());
        s.extend(std::iter::repeat(b'b').take(2000));
        s.extend(b"\r\n");
    }
    s.extend(b"\r\n");
    s
}

type RawFn = fn() -> Vec<u8>;

/// (case name, request bytes, expected status): each is answered, the
/// response says `Connection: close`, and the connection closes.
const ERROR_CASES: &[(&str, RawFn, u16)] = &[
    (
        "error_400_request_line_without_target",
        || b"GET\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_request_line_with_extra_token",
        || b"GET /x HTTP/1.1 extra\r\nHost: x\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_header_without_colon",
        || b"GET /plaintext HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_space_before_colon_host",
        || b"GET /plaintext HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_space_before_colon_other_header",
        || b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Test : y\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_obs_fold",
        || b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Test: a\r\n folded\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_control_byte_in_header_value",
        || b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Test: a\x01b\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_http11_without_host",
        || b"GET /plaintext HTTP/1.1\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_two_host_headers",
        || b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_content_length_not_a_number",
        || b"GET /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        400,
    ),
    (
        "error_400_two_different_content_lengths",
        || {
            b"GET /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec()
        },
        400,
    ),
    (
        "error_400_chunked_with_content_length",
        || {
            b"GET /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec()
        },
        400,
    ),
    (
        "error_501_transfer_encoding_gzip",
        || b"GET /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
        501,
    ),
    (
        "error_505_http2_request_line",
        || b"GET /plaintext HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
        505,
    ),
    ("error_414_request_line_over_8kib", long_request_line, 414),
    ("error_431_headers_over_16kib", big_headers, 431),
];

fn error_case(ctx: &Ctx, name: &str, raw: &[u8], status: u16) {
    let mut c = ctx.conn();
    // The server may answer and close before reading everything we send.
    let _ = c.send_lenient(raw);
    let r = c.read_response(false);
    r.expect_status(status, name).expect_close(name);
    c.expect_closed(&format!(
        "{name}: the connection must close after the error response"
    ));
}

fn partial_head_408(ctx: &Ctx) {
    let mut c = ctx.conn();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n");
    // --header-timeout 2s; the read timeout (10 s) bounds the wait.
    let r = c.read_response(false);
    r.expect_status(408, "partial head then silence")
        .expect_close("408");
    c.expect_closed("after the 408 the connection must close");
}

// ---------------------------------------------------------------------------
// /stats
// ---------------------------------------------------------------------------

struct Stats {
    raw: String,
    variant: String,
    total_requests: u64,
    total_connections: u64,
    active_connections: u64,
    bytes_sent: u64,
    status: Vec<(String, u64)>,
}

impl Stats {
    #[track_caller]
    fn from_response(r: &Response) -> Stats {
        r.expect_status(200, "GET /stats");
        let raw = r.body_str();
        let j =
            Json::parse(&raw).unwrap_or_else(|e| panic!("/stats is not valid JSON ({e}): {raw}"));
        assert!(j.as_obj().is_some(), "/stats is not a JSON object: {raw}");
        let num = |k: &str| -> u64 {
            j.get(k).and_then(Json::as_u64).unwrap_or_else(|| {
                panic!("/stats key {k:?} missing or not a non-negative integer: {raw}")
            })
        };
        for k in ["uptime_seconds", "mean_service_us"] {
            let v = j.get(k).and_then(Json::as_f64);
            assert!(
                matches!(v, Some(x) if x >= 0.0),
                "/stats key {k:?} missing or not a non-negative number: {raw}"
            );
        }
        let threads = num("threads");
        assert!(threads >= 1, "/stats threads = {threads}: {raw}");
        let status = j
            .get("status")
            .and_then(Json::as_obj)
            .unwrap_or_else(|| panic!("/stats key \"status\" missing or not an object: {raw}"))
            .iter()
            .map(|(k, v)| {
                assert!(
                    k.len() == 3 && k.bytes().all(|b| b.is_ascii_digit()),
                    "/stats status key {k:?} is not a status code: {raw}"
                );
                (
                    k.clone(),
                    v.as_u64()
                        .unwrap_or_else(|| panic!("/stats status[{k}] not an integer: {raw}")),
                )
            })
            .collect();
        Stats {
            variant: j
                .get("variant")
                .and_then(Json::as_str)
                .unwrap_or_else(|| panic!("/stats key \"variant\" missing or not a string: {raw}"))
                .to_string(),
            total_requests: num("total_requests"),
            total_connections: num("total_connections"),
            active_connections: num("active_connections"),
            bytes_sent: num("bytes_sent"),
            status,
            raw,
        }
    }

    fn status_count(&self, code: &str) -> u64 {
        self.status
            .iter()
            .find(|(k, _)| k == code)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }
}

fn read_stats(ctx: &Ctx) -> Stats {
    Stats::from_response(&ctx.get("/stats"))
}

/// Read /stats until two successive readings differ by exactly one (the
/// earlier /stats request itself): nothing else is still being counted.
fn quiesced_stats(ctx: &Ctx) -> Stats {
    let mut a = read_stats(ctx);
    for _ in 0..10 {
        let next = read_stats(ctx);
        let settled = next.total_requests == a.total_requests + 1;
        a = next;
        if settled {
            break;
        }
    }
    a
}

/// Error responses are counted too, each under its own status code.
fn stats_count_error_responses(ctx: &Ctx) {
    let a = quiesced_stats(ctx);
    ctx.get("/no-such-file.txt")
        .expect_status(404, "GET /no-such-file.txt");
    ctx.fetch(b"BREW /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", false)
        .expect_status(405, "BREW /plaintext");
    let mut c = ctx.conn();
    let _ = c.send_lenient(b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    c.read_response(false)
        .expect_status(400, "two Host headers");
    let _ = c.wait_closed();
    drop(c);
    let b = read_stats(ctx);
    let diff = b.total_requests.wrapping_sub(a.total_requests);
    assert_eq!(
        diff, 4,
        "404 + 405 + 400 + the /stats request A must add 4 to total_requests\nA: {}\nB: {}",
        a.raw, b.raw
    );
    for (code, want) in [("404", 1), ("405", 1), ("400", 1), ("200", 1)] {
        let got = b.status_count(code).wrapping_sub(a.status_count(code));
        assert_eq!(
            got, want,
            "status[{code:?}] grew by {got}, expected {want}\nA: {}\nB: {}",
            a.raw, b.raw
        );
    }
    let sum: u64 = b.status.iter().map(|(_, v)| v).sum();
    assert_eq!(
        sum, b.total_requests,
        "sum of the status counts must equal total_requests: {}",
        b.raw
    );
}

fn stats_exact(ctx: &Ctx) {
    const CLIENTS: usize = 8;
    const K: usize = 25;
    let a = quiesced_stats(ctx);

    let addr = ctx.addr;
    let blocking = ctx.blocking();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|t| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut conn: Option<Conn> = None;
                for i in 0..K {
                    if blocking || conn.is_none() {
                        conn = Some(
                            Conn::try_connect(addr)
                                .map_err(|e| format!("client {t} connect: {e}"))?,
                        );
                    }
                    let c = conn.as_mut().unwrap();
                    c.send_lenient(&get_req("/plaintext"))
                        .map_err(|e| format!("client {t} request {i}: write: {e}"))?;
                    let r = c
                        .try_read_response(false)
                        .map_err(|e| format!("client {t} request {i}: {e}"))?;
                    if r.status != 200 || r.body != b"Hello, World!" {
                        return Err(format!(
                            "client {t} request {i}: unexpected response\n{}",
                            r.summary()
                        ));
                    }
                    if blocking {
                        conn = None;
                    }
                }
                Ok(())
            })
        })
        .collect();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(panic_message(&*e)),
        }
    }
    assert!(
        errors.is_empty(),
        "concurrent clients failed:\n{}",
        errors.join("\n")
    );

    let b = read_stats(ctx);
    let expected = (CLIENTS * K) as u64 + 1;
    let diff = b.total_requests.wrapping_sub(a.total_requests);
    if diff != expected {
        // Diagnose: does the count converge later (counted after the
        // response was sent, so a reader can overtake it)?
        let mut later = Vec::new();
        for i in 1..=3 {
            std::thread::sleep(Duration::from_millis(200));
            let c = read_stats(ctx);
            later.push(format!(
                "reading B+{i}: total_requests - A = {} (exact would be {})",
                c.total_requests.wrapping_sub(a.total_requests),
                expected + i
            ));
        }
        panic!(
            "B.total_requests - A.total_requests = {diff}, expected {CLIENTS}*{K} + 1 = {expected}\nA: {}\nB: {}\n{}",
            a.raw,
            b.raw,
            later.join("\n")
        );
    }
    let d200 = b.status_count("200").wrapping_sub(a.status_count("200"));
    assert_eq!(
        d200, expected,
        "status[\"200\"] grew by {d200}, expected {expected}\nA: {}\nB: {}",
        a.raw, b.raw
    );
    let sum: u64 = b.status.iter().map(|(_, v)| v).sum();
    assert_eq!(
        sum, b.total_requests,
        "sum of the status counts must equal total_requests: {}",
        b.raw
    );
    assert!(
        b.bytes_sent > a.bytes_sent,
        "bytes_sent did not grow\nA: {}\nB: {}",
        a.raw,
        b.raw
    );
    let new_conns = if blocking { CLIENTS * K } else { CLIENTS } as u64;
    assert!(
        b.total_connections >= a.total_connections + new_conns,
        "total_connections grew by {}, expected at least {new_conns}\nA: {}\nB: {}",
        b.total_connections.wrapping_sub(a.total_connections),
        a.raw,
        b.raw
    );
    assert!(
        b.active_connections >= 1,
        "active_connections must count the /stats connection itself: {}",
        b.raw
    );
    println!("[{}] /stats variant = {:?}", ctx.variant, b.variant);
}

// ---------------------------------------------------------------------------
// Abrupt clients
// ---------------------------------------------------------------------------

fn client_reset_mid_response(ctx: &Ctx) {
    for i in 0..3 {
        let mut c = ctx.conn();
        c.send(&get_req("/big.bin"));
        let got = c.read_exact_raw(8192);
        assert!(
            got.starts_with(b"HTTP/1."),
            "reset case #{i}: response start {}",
            excerpt(&got, 100)
        );
        c.reset();
        // The server must keep serving, including another big file.
        ctx.get("/plaintext")
            .expect_status(200, &format!("GET /plaintext after client reset #{i}"));
    }
    ctx.get("/big.bin")
        .expect_status(200, "GET /big.bin after the resets")
        .expect_body(&ctx.root.big, "GET /big.bin after the resets");
}

fn sigterm_finishes_in_flight(server: &mut Server, root: &DocRoot) {
    let mut c = server.conn();
    c.send(&get_req("/big.bin"));
    // Wait until the response has started, then signal.
    let ready = poll_readable(&[&c.stream], IO_TIMEOUT);
    assert!(ready[0], "no response byte within {IO_TIMEOUT:?}");
    server.signal(libc::SIGTERM);
    let r = c.read_response(false);
    r.expect_status(200, "in-flight GET /big.bin across SIGTERM")
        .expect_body(
            &root.big,
            "in-flight GET /big.bin across SIGTERM (must complete)",
        );
    drop(c);
    match server.wait_exit(IO_TIMEOUT) {
        Some(st) => assert!(st.success(), "exit status after SIGTERM: {st} (expected 0)"),
        None => panic!("the server did not exit within {IO_TIMEOUT:?} of SIGTERM"),
    }
}

// ---------------------------------------------------------------------------
// Body limit (--max-body-bytes 1000)
// ---------------------------------------------------------------------------

/// Run `f` against `server`; on failure, panic with the message plus the
/// server's exit state and stderr tail.
fn with_diagnostics(server: &mut Server, f: impl FnOnce(&mut Server)) {
    if let Err(msg) = catch_quietly(|| f(&mut *server)) {
        let exited = server.wait_exit(Duration::ZERO);
        panic!(
            "[{}] {msg}\nserver process: {}\n--- server stderr (tail) ---\n{}",
            server.variant,
            match exited {
                Some(st) => format!("exited with {st}"),
                None => "still running".into(),
            },
            server.stderr_tail()
        );
    }
}

fn run_body_limit(variant: &'static str) {
    let root = DocRoot::build();
    let opts = ServerOpts {
        max_body_bytes: Some(1000),
        ..ServerOpts::default()
    };
    let mut server = Server::start(variant, &root.root, &opts);
    with_diagnostics(&mut server, body_limit_cases);
}

fn body_limit_cases(server: &mut Server) {
    let blocking = server.variant == "blocking";

    // Content-Length 5000 > 1000: 413 and close, without waiting for the body.
    let mut c = server.conn();
    let _ = c.send_lenient(b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n");
    let r = c.read_response(false);
    r.expect_status(
        413,
        "POST with Content-Length 5000 over --max-body-bytes 1000",
    )
    .expect_close("413");
    c.expect_closed("after 413 the connection must close");
    drop(c);
    server
        .conn()
        .get("/plaintext")
        .expect_status(200, "fresh GET /plaintext after the 413");

    // Exactly at the limit: not 413; 405 (POST on /plaintext), body consumed.
    let mut c = server.conn();
    let mut raw = b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat(b'z').take(1000));
    let r = c.roundtrip(&raw, false);
    r.expect_status(405, "POST /plaintext with a 1000-byte body (at the limit)")
        .expect_header("allow", "GET, HEAD", "405");
    if blocking {
        r.expect_close("blocking");
        c.expect_closed("blocking closes after one response");
    } else {
        r.expect_not_close("405 keeps the connection open");
        c.get("/plaintext").expect_status(
            200,
            "GET /plaintext after a 1000-byte POST on the same connection",
        );
    }
    drop(c);

    server.stop_with(libc::SIGINT);
}

#[test]
fn body_limit_413_blocking() {
    run_body_limit("blocking");
}

#[test]
fn body_limit_413_threadpool() {
    run_body_limit("threadpool");
}

#[test]
fn body_limit_413_epoll() {
    run_body_limit("epoll");
}

#[test]
fn body_limit_413_epoll_threads() {
    run_body_limit("epoll-threads");
}

// ---------------------------------------------------------------------------
// 1,000 idle + 50 stalled connections (event-loop variants)
// ---------------------------------------------------------------------------

fn run_idle_and_stalled(variant: &'static str) {
    const IDLE: usize = 1000;
    const STALLED: usize = 50;
    raise_nofile_limit();
    let limit = nofile_limit();
    assert!(
        limit >= 2 * (IDLE + STALLED) as u64 + 200,
        "RLIMIT_NOFILE {limit} too low for this test"
    );
    let root = DocRoot::build();
    let opts = ServerOpts {
        header_timeout: "30s".into(),
        keepalive_timeout: "30s".into(),
        ..ServerOpts::default()
    };
    let mut server = Server::start(variant, &root.root, &opts);
    with_diagnostics(&mut server, idle_and_stalled_cases);
}

fn idle_and_stalled_cases(server: &mut Server) {
    const IDLE: usize = 1000;
    const STALLED: usize = 50;
    let variant = server.variant.clone();
    let baseline = server.stable_fd_count();

    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        idle.push(
            Conn::try_connect(server.addr).unwrap_or_else(|e| panic!("idle connection #{i}: {e}")),
        );
    }
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut c = Conn::try_connect(server.addr)
            .unwrap_or_else(|e| panic!("stalled connection #{i}: {e}"));
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n");
        stalled.push(c);
    }
    // Wait (bounded) until the server really holds all of them.
    let want = baseline + IDLE + STALLED;
    let mut seen = 0;
    let held = wait_until(IO_TIMEOUT, Duration::from_millis(50), || {
        seen = server.fd_count();
        seen >= want
    });
    assert!(held, "{variant}: server holds {seen} fds, expected at least {want} ({baseline} + {IDLE} idle + {STALLED} stalled)\nstderr:\n{}", server.stderr_tail());

    // A new client is served.
    let mut fresh = server.conn();
    fresh
        .get("/plaintext")
        .expect_status(200, "new connection while 1000 idle + 50 stalled are open")
        .expect_body(b"Hello, World!", "new connection");
    // Some stalled clients finish their heads and are answered.
    for (i, c) in stalled.iter_mut().enumerate().step_by(10) {
        c.send(b"\r\n");
        c.read_response(false)
            .expect_status(200, &format!("stalled client #{i} completing its head"))
            .expect_body(b"Hello, World!", "stalled client");
    }
    // Some idle clients make a request.
    for (i, c) in idle.iter_mut().enumerate().step_by(200) {
        c.get("/health")
            .expect_status(200, &format!("idle client #{i} making a request"))
            .expect_body(b"OK", "idle client");
    }
    drop(fresh);
    drop(idle);
    drop(stalled);

    let end = server.wait_fd_count(baseline, Duration::from_secs(15));
    assert_eq!(
        end,
        baseline,
        "{variant}: fd count after closing all {} clients (startup: {baseline})\n{}",
        IDLE + STALLED + 1,
        server.fd_listing()
    );
    server.stop_with(libc::SIGTERM);
}

#[test]
fn epoll_serves_while_1000_idle_and_50_stalled_connections_are_open() {
    run_idle_and_stalled("epoll");
}

#[test]
fn epoll_threads_serves_while_1000_idle_and_50_stalled_connections_are_open() {
    run_idle_and_stalled("epoll-threads");
}

// ---------------------------------------------------------------------------
// The honest limits of the blocking and thread-pool models
// ---------------------------------------------------------------------------

/// Open `stalled` connections that each send a partial head, then one that
/// sends a full request; watch all sockets with poll(2) and assert the full
/// request is answered only once at least one stalled client has received
/// its 408 (on loopback the 408 bytes are queued at the client before the
/// server could even read the waiting request, so this needs no timing).
fn held_up_by_stalled(variant: &'static str, threads: u32, stalled_n: usize) {
    let root = DocRoot::build();
    let opts = ServerOpts {
        threads,
        header_timeout: "2s".into(),
        ..ServerOpts::default()
    };
    let mut server = Server::start(variant, &root.root, &opts);
    with_diagnostics(&mut server, |server| stalled_cases(server, stalled_n));
}

fn stalled_cases(server: &mut Server, stalled_n: usize) {
    let variant = server.variant.clone();
    let mut stalled: Vec<Conn> = (0..stalled_n)
        .map(|_| {
            let mut c = server.conn();
            c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n");
            c
        })
        .collect();
    let mut waiting = server.conn();
    waiting.send(&get_req("/plaintext"));

    let mut stalled_ready = vec![false; stalled_n];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "{variant}: no response at all within 20 s"
        );
        let mut socks: Vec<&std::net::TcpStream> = stalled.iter().map(|c| &c.stream).collect();
        socks.push(&waiting.stream);
        let ready = poll_readable(&socks, Duration::from_secs(1));
        for (i, r) in ready[..stalled_n].iter().enumerate() {
            stalled_ready[i] |= *r;
        }
        if ready[stalled_n] {
            assert!(
                stalled_ready.iter().any(|r| *r),
                "{variant}: the waiting client was answered before any stalled client got its 408: \
                 the model should have been held up by the stalled client(s)"
            );
            break;
        }
    }
    let r = waiting.read_response(false);
    r.expect_status(200, "the waiting client's request")
        .expect_body(b"Hello, World!", "waiting client");
    for (i, c) in stalled.iter_mut().enumerate() {
        let r = c.read_response(false);
        r.expect_status(408, &format!("stalled client #{i}"))
            .expect_close("408");
        c.expect_closed("after the 408");
    }
}

#[test]
fn blocking_is_held_up_by_a_stalled_client() {
    held_up_by_stalled("blocking", 2, 1);
}

#[test]
fn threadpool_two_workers_are_held_up_by_two_stalled_clients() {
    held_up_by_stalled("threadpool", 2, 2);
}
