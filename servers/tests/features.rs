//! Feature suite for the server features beyond the benchmark endpoints
//! (/sleep, CGI, uploads, sessions, virtual hosts, access log, graceful
//! shutdown, load shedding), run against all four server binaries as real
//! processes on ephemeral ports. The contract tested is the README's "What
//! every variant serves" and its option table.
//!
//! One `#[test]` per variant (`features_<variant>`), so cargo runs the four
//! variants in parallel while each variant's cases run in sequence:
//!
//! 1. A main server (`--threads 2 --header-timeout 5s --keepalive-timeout 5s
//!    --max-body-bytes 262144 --cgi-dir TMP/cgi --cgi-timeout 1s --data-dir
//!    TMP/data`, docroot TMP/root with a `example.com/` virtual host) runs the
//!    cases of [`main_cases`] one after another: /sleep (200, 400), /stats
//!    `shed`, CGI (environment, stdin echo incl. chunked and 200 KiB bodies,
//!    Status from the script, 502 on broken output, 403/404, confinement to
//!    --cgi-dir incl. symlinks and encoded `..`, 504 on timeout with the
//!    whole process group killed and no zombie), uploads (Content-Length and
//!    chunked, on disk half-way through the body, read back, DELETE, 405 + Allow, bad names, a body of exactly
//!    --max-body-bytes stored and one byte more 413 storing nothing, 20
//!    concurrent uploads, uploads aborted mid-body by FIN or RST leaving the
//!    data dir as it was — "mid-body" observed as the server's socket
//!    receive queue drained, from /proc/net/tcp),
//!    sessions (cookie attributes, counting, forged ids never echoed) and
//!    virtual hosts (Host case/port, unknown and hostile hosts). A failure is
//!    collected with the case name and the run goes on; after every case a
//!    fresh `/plaintext` must still be 200. Then the server's fd count must
//!    return to its start-up value and SIGTERM must exit it with status 0.
//! 2. Cases that need their own server ([`own_server_cases`]), each started
//!    with the flags it names: the shipped example CGI scripts
//!    (`--cgi-dir servers/cgi-bin`, plus 503 for uploads without
//!    `--data-dir`); the access log (`--access-log FILE`: 300 mixed requests,
//!    SIGTERM, exactly 300 whole combined-format lines) and its rotation
//!    (`--access-log-max-bytes 2000 --access-log-keep 3`); SIGTERM during a
//!    slowly sent 1 MiB upload (`--max-body-bytes 2097152`), during
//!    `/sleep?ms=1500` and during a CGI script (each: complete response,
//!    exit 0, no process left); `--shutdown-timeout 1s` with a 4 s sleep in
//!    flight (exit 0; threadpool and epoll-threads drop that connection).
//! 3. Variant-specific cases: threadpool `--threads 1 --queue 1` and
//!    epoll-threads `--workers 1 --work-queue 1` shed with 503 + Retry-After
//!    and count it in /stats `shed`; epoll-threads `--threads 1` serves
//!    `/plaintext` while a `/sleep` is in flight on the same loop, and epoll
//!    (one loop) does not — the honest limit of that model. Both are checked
//!    by event order (poll(2) on the sleeping connection when the other
//!    response arrives), not by timing; "the sleep has started" is observed
//!    as a server thread entering nanosleep in /proc/PID/task/*/syscall.
//!
//! No assertion is on elapsed time except generous liveness bounds; every
//! wait is bounded. Every response read is checked for a Date header,
//! exactly one Content-Length (204 excepted) and for secret content placed
//! outside the docroot.
//!
//! Run: `cargo test -p servers --test features` (add `-- --nocapture` for
//! the per-case PASS list and per-variant runtime).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The example CGI scripts shipped in the repository.
const REPO_CGI_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cgi-bin");
/// --max-body-bytes of the main server.
const MAX_BODY: usize = 256 * 1024;

const ROOT_INDEX: &[u8] = b"<!doctype html><title>default</title>default root index\n";
const ROOT_HELLO: &[u8] = b"hello from the default root\n";
const VHOST_INDEX: &[u8] = b"<!doctype html><title>example.com</title>example.com vhost index\n";
const VHOST_ONLY: &[u8] = b"only on example.com\n";

// ---------------------------------------------------------------------------
// Fixture: docroot with a virtual host, CGI dir with test scripts, data dir
// ---------------------------------------------------------------------------

/// Layout of a temporary directory TMP:
/// - `root/` docroot: index.html, hello.txt, `example.com/` (a virtual host
///   with its own index.html and only.txt), `evil.test` -> ../outside (a
///   symlinked "virtual host" leading out of the root);
/// - `index.html`, `outside/index.html`: secret content outside the root;
/// - `cgi/`: test scripts (see [`Fixture::build`]), `sub/inner`, symlinks
///   `link` and `abslink` to `outside-target` (outside the dir);
/// - `x`, `secret-script`, `outside-target`: executable scripts outside the
///   cgi dir that create `run/marker-NAME` when executed;
/// - `data/`: --data-dir; `run/`: pid files and markers written by scripts.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    cgi: PathBuf,
    data: PathBuf,
    run: PathBuf,
}

fn write_exec(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A CGI script printing `marker` content after touching `run/marker-NAME`.
fn marker_script(run: &Path, name: &str) -> String {
    format!(
        "#!/bin/sh\ntouch '{}/marker-{name}'\nprintf 'Content-Type: text/plain\\r\\n\\r\\nOUTSIDE SCRIPT {name} RAN\\n'\n",
        run.display()
    )
}

const OUTSIDE_SCRIPTS: [&str; 3] = ["x", "secret-script", "outside-target"];

impl Fixture {
    fn build() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(tmp.path()).expect("canonical tempdir");
        let root = dir.join("root");
        let cgi = dir.join("cgi");
        let data = dir.join("data");
        let run = dir.join("run");
        for d in [
            root.join("example.com"),
            cgi.join("sub"),
            data.clone(),
            run.clone(),
            dir.join("outside"),
        ] {
            fs::create_dir_all(&d).unwrap();
        }
        let secret = format!("FEATURES-SECRET-{:016x}-NEVER-SERVED", unique_u64()).into_bytes();
        register_secret(&secret);
        fs::write(dir.join("index.html"), &secret).unwrap();
        fs::write(dir.join("outside").join("index.html"), &secret).unwrap();
        fs::write(root.join("index.html"), ROOT_INDEX).unwrap();
        fs::write(root.join("hello.txt"), ROOT_HELLO).unwrap();
        fs::write(root.join("example.com").join("index.html"), VHOST_INDEX).unwrap();
        fs::write(root.join("example.com").join("only.txt"), VHOST_ONLY).unwrap();
        symlink("../outside", root.join("evil.test")).unwrap();

        let run_s = run.display().to_string();
        write_exec(
            &cgi.join("env"),
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n",
        );
        write_exec(
            &cgi.join("echo"),
            "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\n\
             printf 'method=%s length=%s type=%s\\n' \"$REQUEST_METHOD\" \"$CONTENT_LENGTH\" \"$CONTENT_TYPE\"\n\
             head -c \"$CONTENT_LENGTH\"\n",
        );
        write_exec(
            &cgi.join("status404"),
            "#!/bin/sh\nprintf 'Status: 404 Not Found\\r\\nContent-Type: text/plain\\r\\n\\r\\nno such thing here\\n'\n",
        );
        write_exec(
            &cgi.join("nocontenttype"),
            "#!/bin/sh\nprintf 'X-Whatever: 1\\r\\n\\r\\nbody without a content type\\n'\n",
        );
        write_exec(
            &cgi.join("noseparator"),
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n'\n",
        );
        // Sleeps forever with a grandchild; records "script-pid grandchild-pid".
        write_exec(
            &cgi.join("forever"),
            &format!(
                "#!/bin/sh\nsleep 1000 &\necho \"$$ $!\" > '{run_s}/forever.pids.tmp'\n\
                 mv '{run_s}/forever.pids.tmp' '{run_s}/forever.pids'\nwait\n"
            ),
        );
        // Runs 1 s, then answers (for SIGTERM during CGI); records its pid.
        write_exec(
            &cgi.join("slow"),
            &format!(
                "#!/bin/sh\necho $$ > '{run_s}/slow.pid.tmp'\nmv '{run_s}/slow.pid.tmp' '{run_s}/slow.pid'\n\
                 sleep 1\nprintf 'Content-Type: text/plain\\r\\n\\r\\nslow done\\n'\n"
            ),
        );
        fs::write(
            cgi.join("noexec"),
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nran\\n'\n",
        )
        .unwrap();
        fs::set_permissions(cgi.join("noexec"), fs::Permissions::from_mode(0o644)).unwrap();
        write_exec(
            &cgi.join("sub").join("inner"),
            &marker_script(&run, "inner"),
        );
        for name in OUTSIDE_SCRIPTS {
            write_exec(&dir.join(name), &marker_script(&run, name));
        }
        symlink("../outside-target", cgi.join("link")).unwrap();
        symlink(dir.join("outside-target"), cgi.join("abslink")).unwrap();

        Fixture {
            _tmp: tmp,
            dir,
            root,
            cgi,
            data,
            run,
        }
    }

    fn markers(&self) -> Vec<String> {
        dir_names(&self.run)
            .into_iter()
            .filter(|n| n.starts_with("marker-"))
            .collect()
    }
}

fn main_opts(fx: &Fixture) -> ServerOpts {
    ServerOpts {
        threads: 2,
        header_timeout: "5s".into(),
        keepalive_timeout: "5s".into(),
        max_body_bytes: Some(MAX_BODY as u64),
        extra: vec![
            "--cgi-dir".into(),
            fx.cgi.display().to_string(),
            "--cgi-timeout".into(),
            "1s".into(),
            "--data-dir".into(),
            fx.data.display().to_string(),
        ],
    }
}

// ---------------------------------------------------------------------------
// Request helpers
// ---------------------------------------------------------------------------

/// `METHOD target VERSION` with `Host: host`, `headers`, and `body` (a
/// Content-Length is added when the body is non-empty or the method is POST).
fn raw_request(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    s.push_str("\r\n");
    let mut v = s.into_bytes();
    v.extend_from_slice(body);
    v
}

fn post(target: &str, body: &[u8]) -> Vec<u8> {
    raw_request(
        "POST",
        target,
        "localhost",
        &[("Content-Type", "application/octet-stream")],
        body,
    )
}

/// Chunked encoding of `body` in chunks of varying sizes.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let sizes = [1usize, 7, 100, 4096, 333, 16384, 5];
    let mut i = 0;
    let mut k = 0;
    while i < body.len() {
        let n = sizes[k % sizes.len()].min(body.len() - i);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&body[i..i + n]);
        out.extend_from_slice(b"\r\n");
        i += n;
        k += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Set of comma-separated tokens, upper-cased and sorted.
fn token_set(v: &str) -> Vec<String> {
    let mut t: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    t.sort();
    t
}

#[track_caller]
fn expect_allow(r: &Response, expected: &str, what: &str) {
    r.expect_status(405, what);
    let got = r.header("allow").unwrap_or("");
    assert_eq!(
        token_set(got),
        token_set(expected),
        "{what}: expected `Allow: {expected}`, got `Allow: {got}`\n{}",
        r.summary()
    );
}

/// One request on a fresh connection.
#[track_caller]
fn fetch(addr: SocketAddr, raw: &[u8], head: bool) -> Response {
    Conn::connect(addr).roundtrip(raw, head)
}

#[track_caller]
fn get(addr: SocketAddr, path: &str) -> Response {
    fetch(addr, &get_req(path), false)
}

/// GET /stats as JSON (fresh connection).
#[track_caller]
fn stats(addr: SocketAddr) -> Json {
    let r = get(addr, "/stats");
    r.expect_status(200, "GET /stats");
    let raw = r.body_str();
    Json::parse(&raw).unwrap_or_else(|e| panic!("/stats is not valid JSON ({e}): {raw}"))
}

#[track_caller]
fn stat_u64(j: &Json, key: &str) -> u64 {
    j.get(key).and_then(Json::as_u64).unwrap_or_else(|| {
        panic!("/stats key {key:?} missing or not a non-negative integer: {j:?}")
    })
}

/// The upload NAME from a 201's `Location: /files/NAME`.
#[track_caller]
fn upload_name(r: &Response, what: &str) -> String {
    r.expect_status(201, what);
    let loc = r
        .header("location")
        .unwrap_or_else(|| panic!("{what}: 201 without Location\n{}", r.summary()));
    let name = loc.strip_prefix("/files/").unwrap_or("");
    assert!(
        is_hex32(name),
        "{what}: expected `Location: /files/<32 lower-hex>`, got `Location: {loc}`"
    );
    name.to_string()
}

/// Data dir entries that are neither committed uploads nor expected: any
/// `.upload-` temp file.
fn temp_files(dir: &Path) -> Vec<String> {
    dir_names(dir)
        .into_iter()
        .filter(|n| n.starts_with(".upload-"))
        .collect()
}

// ---------------------------------------------------------------------------
// Per-variant driver
// ---------------------------------------------------------------------------

struct Ctx<'a> {
    variant: &'static str,
    addr: SocketAddr,
    pid: u32,
    fx: &'a Fixture,
}

impl Ctx<'_> {
    fn conn(&self) -> Conn {
        Conn::connect(self.addr)
    }

    #[track_caller]
    fn fetch(&self, raw: &[u8], head: bool) -> Response {
        fetch(self.addr, raw, head)
    }

    #[track_caller]
    fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }
}

type MainCase = fn(&Ctx);
type OwnCase = fn(&'static str);

fn main_cases() -> Vec<(&'static str, MainCase)> {
    vec![
        ("sleep_200_and_400", sleep_cases),
        ("stats_has_shed", stats_has_shed),
        ("cgi_environment", cgi_environment),
        ("cgi_post_body_on_stdin", cgi_post_body_on_stdin),
        ("cgi_post_body_larger_than_a_pipe_buffer", cgi_post_big_body),
        ("cgi_status_header_404", cgi_status_404),
        (
            "cgi_missing_content_type_or_separator_502",
            cgi_bad_output_502,
        ),
        ("cgi_not_executable_403_unknown_404", cgi_403_404),
        ("cgi_never_executes_outside_cgi_dir", cgi_confinement),
        (
            "cgi_timeout_504_kills_process_group_no_zombie",
            cgi_timeout_kills_group,
        ),
        (
            "upload_content_length_and_chunked_read_back",
            upload_roundtrip,
        ),
        (
            "upload_body_reaches_disk_before_it_completes",
            upload_streams_to_disk,
        ),
        ("upload_delete_204_then_404", upload_delete),
        ("upload_405_with_allow", upload_405),
        ("upload_bad_names_404", upload_bad_names),
        ("upload_over_max_body_413_nothing_stored", upload_413),
        ("upload_20_concurrent_byte_identical", upload_concurrent),
        ("upload_aborted_by_fin_leaves_dir_unchanged", |c| {
            upload_aborted(c, Abort::Fin)
        }),
        ("upload_aborted_by_rst_leaves_dir_unchanged", |c| {
            upload_aborted(c, Abort::Rst)
        }),
        ("upload_chunked_aborted_leaves_dir_unchanged", |c| {
            upload_aborted(c, Abort::ChunkedFin)
        }),
        ("session_new_then_counted", session_counted),
        (
            "session_50_concurrent_visits_counted_exactly",
            session_concurrent,
        ),
        (
            "session_forged_cookie_gets_new_session_never_echoed",
            session_forged,
        ),
        ("vhost_host_header_selects_root", vhost_select),
        ("vhost_hostile_hosts_never_outside_root", vhost_hostile),
        // Last: on a server that breaks on them the cases above still ran.
        ("sleep_with_a_request_pipelined_behind_it", sleep_pipelined),
        (
            "cgi_client_gone_script_still_killed_and_reaped",
            cgi_client_gone,
        ),
    ]
}

fn own_server_cases(variant: &str) -> Vec<(&'static str, OwnCase)> {
    let mut v: Vec<(&'static str, OwnCase)> = vec![
        (
            "cgi_example_scripts_time_and_params_and_upload_503_without_data_dir",
            repo_cgi_scripts,
        ),
        ("access_log_exact_lines_after_sigterm", access_log_exact),
        ("access_log_rotation_keep_3", access_log_rotation),
        ("sigterm_during_upload_completes_201", sigterm_during_upload),
        ("sigterm_during_sleep_completes_200", sigterm_during_sleep),
        ("sigterm_during_cgi_completes_and_reaps", sigterm_during_cgi),
        (
            "shutdown_timeout_ends_a_longer_sleep_exit_0",
            shutdown_timeout,
        ),
    ];
    match variant {
        "threadpool" => v.push(("shed_threadpool_queue_full_503", shed_threadpool)),
        "epoll-threads" => {
            v.push(("shed_epoll_threads_work_queue_full_503", shed_epoll_threads));
            v.push((
                "one_loop_serves_plaintext_while_sleep_in_flight",
                one_loop_not_blocked_by_sleep,
            ));
        }
        "epoll" => v.push((
            "single_loop_stalls_during_sleep_honest_limit",
            single_loop_stalls_during_sleep,
        )),
        _ => {}
    }
    v
}

fn run_variant(variant: &'static str) {
    let started = Instant::now();
    let mut passed: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();

    // 1. Main server.
    let fx = Fixture::build();
    let mut server = Server::start(variant, &fx.root, &main_opts(&fx));
    let baseline_fds = server.stable_fd_count();
    let baseline_listing = server.fd_listing();
    let ctx = Ctx {
        variant,
        addr: server.addr,
        pid: server.pid,
        fx: &fx,
    };
    let all = main_cases();
    let total = all.len();
    let mut broken = false;
    for (i, (name, f)) in all.into_iter().enumerate() {
        match catch_quietly(|| f(&ctx)) {
            Ok(()) => passed.push(name.to_string()),
            Err(msg) => failures.push(format!("[{variant}] case `{name}` FAILED: {msg}")),
        }
        let alive = server.is_alive();
        let still = catch_quietly(|| {
            assert!(alive, "the server process has exited");
            ctx.get("/plaintext")
                .expect_status(200, "fresh GET /plaintext")
                .expect_body(b"Hello, World!", "fresh GET /plaintext");
        });
        if let Err(msg) = still {
            failures.push(format!(
                "[{variant}] after case `{name}`: the server no longer serves a fresh /plaintext ({msg}); {} remaining main case(s) not run",
                total - i - 1
            ));
            broken = true;
            break;
        }
    }
    if !broken && server.is_alive() {
        let kids = children_of(server.pid);
        if kids.is_empty() {
            passed.push("no_child_process_left_after_the_cgi_cases".into());
        } else {
            failures.push(format!(
                "[{variant}] after the main cases (every CGI request answered) the server still has children: {kids:?}"
            ));
        }
        let end = server.wait_fd_count(baseline_fds, Duration::from_secs(10));
        if end != baseline_fds {
            failures.push(format!(
                "[{variant}] fd leak check FAILED: {baseline_fds} fds after startup, {end} after the main cases with every client socket closed (waited 10 s)\nat startup:\n{baseline_listing}\nnow:\n{}",
                server.fd_listing()
            ));
        } else {
            passed.push("fd_count_back_to_startup_value".into());
        }
        match catch_quietly(|| server.stop_with(libc::SIGTERM)) {
            Ok(()) => passed.push("main_server_sigterm_exit_0".into()),
            Err(msg) => failures.push(format!("[{variant}] main server SIGTERM: {msg}")),
        }
    }
    let main_stderr = server.stderr_tail();
    drop(server);
    let main_secs = started.elapsed().as_secs_f64();

    // 2./3. Cases with their own server.
    for (name, f) in own_server_cases(variant) {
        match catch_quietly(|| f(variant)) {
            Ok(()) => passed.push(name.to_string()),
            Err(msg) => failures.push(format!("[{variant}] case `{name}` FAILED: {msg}")),
        }
    }

    println!(
        "[{variant}] {} passed, {} failed in {:.1} s (main server {:.1} s)",
        passed.len(),
        failures.len(),
        started.elapsed().as_secs_f64(),
        main_secs
    );
    for p in &passed {
        println!("[{variant}] PASS {p}");
    }
    if !failures.is_empty() {
        panic!(
            "{} failure(s) for `{variant}`:\n\n{}\n\n--- main server stderr (tail) ---\n{}",
            failures.len(),
            failures.join("\n\n"),
            main_stderr
        );
    }
}

#[test]
fn features_blocking() {
    run_variant("blocking");
}

#[test]
fn features_threadpool() {
    run_variant("threadpool");
}

#[test]
fn features_epoll() {
    run_variant("epoll");
}

#[test]
fn features_epoll_threads() {
    run_variant("epoll-threads");
}

/// Start a server for an own-server case and run `f`; on failure, panic with
/// the message plus the server's exit state and stderr tail.
fn with_server(variant: &str, root: &Path, opts: &ServerOpts, f: impl FnOnce(&mut Server)) {
    let mut server = Server::start(variant, root, opts);
    if let Err(msg) = catch_quietly(|| f(&mut server)) {
        let exited = server.wait_exit(Duration::ZERO);
        panic!(
            "{msg}\nserver args: {:?}\nserver process: {}\n--- server stderr (tail) ---\n{}",
            server.args,
            match exited {
                Some(st) => format!("exited with {st}"),
                None => "still running".into(),
            },
            server.stderr_tail()
        );
    }
}

fn opts_with(extra: &[&str]) -> ServerOpts {
    ServerOpts {
        header_timeout: "5s".into(),
        keepalive_timeout: "5s".into(),
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOpts::default()
    }
}

// ---------------------------------------------------------------------------
// /sleep and /stats
// ---------------------------------------------------------------------------

fn sleep_cases(ctx: &Ctx) {
    let r = ctx.get("/sleep?ms=200");
    r.expect_status(200, "GET /sleep?ms=200")
        .expect_body(b"slept 200 ms\n", "GET /sleep?ms=200");
    assert_eq!(
        r.media_type().as_deref(),
        Some("text/plain"),
        "GET /sleep?ms=200 Content-Type\n{}",
        r.summary()
    );
    let h = ctx.fetch(&req("HEAD", "/sleep?ms=1", &[]), true);
    h.expect_status(200, "HEAD /sleep?ms=1");
    assert_eq!(
        h.content_length(),
        Some(b"slept 1 ms\n".len() as u64),
        "HEAD /sleep?ms=1: Content-Length of the GET body\n{}",
        h.summary()
    );
    for bad in [
        "/sleep",
        "/sleep?ms=",
        "/sleep?ms=abc",
        "/sleep?ms=-5",
        "/sleep?ms=1.5",
        "/sleep?other=3",
    ] {
        ctx.get(bad)
            .expect_status(400, &format!("GET {bad} (missing or non-digit ms)"));
    }
}

/// A second request arrives on the connection while its /sleep runs: both
/// are answered, in order (blocking: the first, then close).
fn sleep_pipelined(ctx: &Ctx) {
    let before = threads_in_nanosleep(ctx.pid);
    let mut c = ctx.conn();
    // A 300 ms sleep: 5 s is a generous liveness bound.
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.send(&get_req("/sleep?ms=300"));
    wait_for_new_sleeper(ctx.pid, before);
    c.send(&get_req("/plaintext"));
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("GET /sleep?ms=300 with GET /plaintext pipelined behind it while it sleeps: no response ({e})"));
    r.expect_status(200, "GET /sleep?ms=300 (a request pipelined behind it)")
        .expect_body(b"slept 300 ms\n", "GET /sleep?ms=300");
    if ctx.variant != "blocking" {
        let r = c.try_read_response(false).unwrap_or_else(|e| {
            panic!("GET /plaintext pipelined behind a /sleep: no response ({e})")
        });
        r.expect_status(200, "GET /plaintext pipelined behind a /sleep")
            .expect_body(b"Hello, World!", "GET /plaintext pipelined behind a /sleep");
    }
}

fn stats_has_shed(ctx: &Ctx) {
    let j = stats(ctx.addr);
    let shed = stat_u64(&j, "shed");
    assert_eq!(
        shed, 0,
        "/stats shed on a server that never shed: expected 0, got {shed}"
    );
}

// ---------------------------------------------------------------------------
// CGI
// ---------------------------------------------------------------------------

fn env_map(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cgi_environment(ctx: &Ctx) {
    let raw = raw_request(
        "GET",
        "/cgi-bin/env/extra/path?x=1&y=two",
        "localhost",
        &[
            ("X-Custom-Header", "hello-cgi"),
            ("User-Agent", "features-test/1.0"),
            ("Proxy", "http://evil.example:3128/"),
        ],
        b"",
    );
    let r = ctx.fetch(&raw, false);
    r.expect_status(200, "GET /cgi-bin/env/extra/path?x=1&y=two");
    assert_eq!(
        r.media_type().as_deref(),
        Some("text/plain"),
        "Content-Type must come from the script\n{}",
        r.summary()
    );
    let env = env_map(&r.body_str());
    for (k, v) in [
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", "x=1&y=two"),
        ("PATH_INFO", "/extra/path"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("SCRIPT_NAME", "/cgi-bin/env"),
        ("HTTP_X_CUSTOM_HEADER", "hello-cgi"),
        ("HTTP_USER_AGENT", "features-test/1.0"),
    ] {
        assert_eq!(
            env.get(k).map(String::as_str),
            Some(v),
            "CGI env {k}: expected {v:?}\nscript saw:\n{}",
            r.body_str()
        );
    }
    assert!(
        !env.contains_key("HTTP_PROXY"),
        "a `Proxy:` request header must not become HTTP_PROXY (httpoxy)\nscript saw:\n{}",
        r.body_str()
    );

    let h = ctx.fetch(&req("HEAD", "/cgi-bin/env", &[]), true);
    h.expect_status(200, "HEAD /cgi-bin/env");
    assert!(
        h.content_length().is_some_and(|n| n > 0),
        "HEAD /cgi-bin/env: expected the GET body's Content-Length (> 0)\n{}",
        h.summary()
    );
}

fn cgi_echo(ctx: &Ctx, body: &[u8]) {
    let raw = raw_request(
        "POST",
        "/cgi-bin/echo",
        "localhost",
        &[("Content-Type", "application/x-features-test")],
        body,
    );
    let what = format!("POST /cgi-bin/echo with a {}-byte body", body.len());
    let r = ctx.fetch(&raw, false);
    r.expect_status(200, &what);
    let mut expected = format!(
        "method=POST length={} type=application/x-features-test\n",
        body.len()
    )
    .into_bytes();
    expected.extend_from_slice(body);
    r.expect_body(&expected, &format!("{what} (script echoes its stdin)"));
}

fn cgi_post_body_on_stdin(ctx: &Ctx) {
    cgi_echo(ctx, &pseudo_random_bytes(30_000, 0xC61));

    // A chunked body reaches the script decoded, with its CONTENT_LENGTH.
    let body = pseudo_random_bytes(20_000, 0xC63);
    let mut raw = b"POST /cgi-bin/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/x-chunked\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend(chunked(&body));
    let r = ctx.fetch(&raw, false);
    let what = "POST /cgi-bin/echo with a chunked 20000-byte body";
    r.expect_status(200, what);
    let mut expected = b"method=POST length=20000 type=text/x-chunked\n".to_vec();
    expected.extend_from_slice(&body);
    r.expect_body(
        &expected,
        &format!("{what} (decoded body on stdin, CONTENT_LENGTH 20000)"),
    );
}

/// 200 KiB in and out: more than a pipe buffer (64 KiB) each way, so a
/// server that writes the whole body before reading the output deadlocks.
fn cgi_post_big_body(ctx: &Ctx) {
    cgi_echo(ctx, &pseudo_random_bytes(200 * 1024, 0xC62));
}

fn cgi_status_404(ctx: &Ctx) {
    let r = ctx.get("/cgi-bin/status404");
    r.expect_status(404, "GET /cgi-bin/status404 (script says `Status: 404`)")
        .expect_body(b"no such thing here\n", "GET /cgi-bin/status404");
    assert_eq!(
        r.media_type().as_deref(),
        Some("text/plain"),
        "Content-Type from the script\n{}",
        r.summary()
    );
}

fn cgi_bad_output_502(ctx: &Ctx) {
    ctx.get("/cgi-bin/nocontenttype").expect_status(
        502,
        "GET /cgi-bin/nocontenttype (output without Content-Type or Location)",
    );
    ctx.get("/cgi-bin/noseparator").expect_status(
        502,
        "GET /cgi-bin/noseparator (headers without the blank line)",
    );
}

fn cgi_403_404(ctx: &Ctx) {
    ctx.get("/cgi-bin/noexec")
        .expect_status(403, "GET /cgi-bin/noexec (regular file, mode 0644)");
    ctx.get("/cgi-bin/no-such-script")
        .expect_status(404, "GET /cgi-bin/no-such-script");
    let r = ctx.get("/cgi-bin/sub");
    assert!(
        matches!(r.status, 403 | 404),
        "GET /cgi-bin/sub (a directory, not an executable file): expected 403 or 404, got {}\n{}",
        r.status,
        r.summary()
    );
}

fn cgi_confinement(ctx: &Ctx) {
    let attempts = [
        "/cgi-bin/../x",
        "/cgi-bin/%2e%2e/x",
        "/cgi-bin/%2E%2E/x",
        "/cgi-bin/.%2e/x",
        "/cgi-bin/..%2fsecret-script",
        "/cgi-bin/%2e%2e%2fsecret-script",
        "/cgi-bin/sub/..",
        "/cgi-bin/sub/../../x",
        "/cgi-bin/sub/inner",
        "/cgi-bin/sub%2finner",
        "/cgi-bin/link",
        "/cgi-bin/abslink",
        "/cgi-bin/link/more/path",
        "/cgi-bin/",
        "/cgi-bin//x",
    ];
    let mut bad = Vec::new();
    for path in attempts {
        for method in ["GET", "POST"] {
            let raw = raw_request(method, path, "localhost", &[], b"");
            let r = ctx.fetch(&raw, false);
            // 400 is the request-target check shared with static files
            // (dot segments); 403/404 the CGI name checks.
            if !matches!(r.status, 400 | 403 | 404) {
                bad.push(format!(
                    "{method} {path}: expected 400/403/404, got {}\n{}",
                    r.status,
                    r.summary()
                ));
            }
            if contains(&r.body, b"OUTSIDE SCRIPT") {
                bad.push(format!(
                    "{method} {path}: the output of a script outside --cgi-dir was served\n{}",
                    r.summary()
                ));
            }
        }
    }
    let markers = ctx.fx.markers();
    assert!(
        bad.is_empty() && markers.is_empty(),
        "scripts outside --cgi-dir must never run; markers created: {markers:?}\n{}",
        bad.join("\n")
    );
    // The scripts themselves work: run directly, they create their markers
    // (so the absence above means "not executed").
    for name in OUTSIDE_SCRIPTS {
        let st = std::process::Command::new(ctx.fx.dir.join(name))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run outside script directly");
        assert!(
            st.success(),
            "outside script {name} failed when run directly"
        );
    }
    assert_eq!(
        ctx.fx.markers().len(),
        OUTSIDE_SCRIPTS.len(),
        "test setup: the outside scripts did not create their markers"
    );
    for m in ctx.fx.markers() {
        let _ = fs::remove_file(ctx.fx.run.join(m));
    }
}

/// Lingering processes of a CGI run: `pids` alive (zombies not reaped by the
/// server count), any process in the script's process group, any child of
/// the server.
fn cgi_leftovers(server_pid: u32, pids: &[u32]) -> Vec<String> {
    let mut out = Vec::new();
    for &p in pids {
        if let Some(st) = process_lingers(p, server_pid) {
            out.push(format!("pid {p} still there: {st:?}"));
        }
    }
    let script = pids[0];
    for p in all_processes() {
        if p.pgrp == script && (p.state != 'Z' || p.ppid == server_pid) {
            out.push(format!("process in the script's group {script}: {p:?}"));
        }
        if p.ppid == server_pid {
            out.push(format!("child of the server: {p:?}"));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn cgi_timeout_kills_group(ctx: &Ctx) {
    let pid_file = ctx.fx.run.join("forever.pids");
    let _ = fs::remove_file(&pid_file);
    let t0 = Instant::now();
    let r = ctx.get("/cgi-bin/forever");
    let took = t0.elapsed();
    r.expect_status(
        504,
        "GET /cgi-bin/forever with --cgi-timeout 1s (script sleeps forever)",
    );
    assert!(
        took < Duration::from_secs(10),
        "504 took {took:?} with a 1 s CGI timeout (liveness bound 10 s)"
    );
    let text = fs::read_to_string(&pid_file).unwrap_or_else(|e| {
        panic!(
            "test setup: the script never wrote {} ({e}); did it run?",
            pid_file.display()
        )
    });
    let pids: Vec<u32> = text
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        2,
        "pid file should hold `script grandchild`: {text:?}"
    );
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        left = cgi_leftovers(ctx.pid, &pids);
        left.is_empty()
    });
    assert!(
        gone,
        "5 s after the 504, the timed-out script (pid {}) and its grandchild `sleep` (pid {}) must be killed (whole process group) and reaped; still there:\n{}",
        pids[0],
        pids[1],
        left.join("\n")
    );
}

/// The client disconnects while `forever` runs: the script (and its
/// grandchild) must still be killed at the timeout and reaped.
fn cgi_client_gone(ctx: &Ctx) {
    let pid_file = ctx.fx.run.join("forever.pids");
    let _ = fs::remove_file(&pid_file);
    let mut c = ctx.conn();
    c.send(&get_req("/cgi-bin/forever"));
    let mut text = String::new();
    let started = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        text = fs::read_to_string(&pid_file).unwrap_or_default();
        !text.is_empty()
    });
    assert!(started, "the CGI script `forever` did not start within 5 s");
    c.reset();
    let pids: Vec<u32> = text
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        2,
        "pid file should hold `script grandchild`: {text:?}"
    );
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(8), Duration::from_millis(50), || {
        left = cgi_leftovers(ctx.pid, &pids);
        left.is_empty()
    });
    assert!(
        gone,
        "8 s after the client reset its connection (--cgi-timeout 1s), the script (pid {}) and its grandchild (pid {}) must be killed and reaped; still there:\n{}",
        pids[0],
        pids[1],
        left.join("\n")
    );
}

fn repo_cgi_scripts(variant: &'static str) {
    let fx = Fixture::build();
    with_server(
        variant,
        &fx.root,
        &opts_with(&["--cgi-dir", REPO_CGI_DIR]),
        |server| {
            let r = get(server.addr, "/cgi-bin/time");
            r.expect_status(200, "GET /cgi-bin/time (shipped example)");
            assert_eq!(
                r.media_type().as_deref(),
                Some("text/plain"),
                "GET /cgi-bin/time Content-Type\n{}",
                r.summary()
            );
            assert!(
                !r.body.is_empty(),
                "GET /cgi-bin/time: empty body\n{}",
                r.summary()
            );

            let q = "/cgi-bin/params?alpha=1&name=Bob&tag=a&tag=b&sp=two+words%21";
            let r = get(server.addr, q);
            r.expect_status(200, &format!("GET {q} (shipped example)"));
            assert_eq!(
                r.media_type().as_deref(),
                Some("application/json"),
                "GET /cgi-bin/params Content-Type\n{}",
                r.summary()
            );
            let raw = r.body_str();
            let j = Json::parse(raw.trim())
                .unwrap_or_else(|e| panic!("GET {q}: not JSON ({e}): {raw}"));
            for (k, v) in [("alpha", "1"), ("name", "Bob"), ("sp", "two words!")] {
                assert!(
                    json_has_pair(&j, k, v),
                    "GET {q}: expected the decoded query parameter {k}={v:?} in the JSON, got {raw}"
                );
            }
            assert!(
                json_has_pair(&j, "tag", "a") && json_has_pair(&j, "tag", "b"),
                "GET {q}: expected tag: [\"a\", \"b\"] in the JSON, got {raw}"
            );

            // No --data-dir: uploads are answered 503 naming the flag.
            let r = fetch(server.addr, &post("/upload", b"hello"), false);
            r.expect_status(503, "POST /upload on a server without --data-dir");
            assert!(
                r.body_str().contains("--data-dir"),
                "the 503 must name --data-dir\n{}",
                r.summary()
            );
            server.stop_with(libc::SIGTERM);
        },
    );
}

/// Whether `j` holds key `k` with value `v` (string, or number equal to it)
/// anywhere in its tree.
fn json_has_pair(j: &Json, k: &str, v: &str) -> bool {
    match j {
        Json::Obj(m) => m.iter().any(|(key, val)| {
            (key == k
                && match val {
                    Json::Str(s) => s == v,
                    Json::Num(n) => v.parse::<f64>().is_ok_and(|x| x == *n),
                    Json::Arr(a) => a.iter().any(|e| e.as_str() == Some(v)),
                    _ => false,
                })
                || json_has_pair(val, k, v)
        }),
        Json::Arr(a) => a.iter().any(|e| json_has_pair(e, k, v)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------

#[track_caller]
fn read_back(ctx: &Ctx, name: &str, body: &[u8], what: &str) {
    let r = ctx.get(&format!("/files/{name}"));
    r.expect_status(200, &format!("{what}: GET /files/{name}"))
        .expect_body(body, &format!("{what}: GET /files/{name}"));
    assert_eq!(
        r.media_type().as_deref(),
        Some("application/octet-stream"),
        "{what}: GET /files/NAME Content-Type\n{}",
        r.summary()
    );
    let on_disk = fs::read(ctx.fx.data.join(name))
        .unwrap_or_else(|e| panic!("{what}: data dir has no file {name}: {e}"));
    assert!(
        on_disk == body,
        "{what}: {name} on disk ({} bytes) differs from the uploaded body ({} bytes)",
        on_disk.len(),
        body.len()
    );
}

fn upload_roundtrip(ctx: &Ctx) {
    let body = pseudo_random_bytes(50_000, 0x01);
    let r = ctx.fetch(&post("/upload", &body), false);
    let name = upload_name(&r, "POST /upload (Content-Length 50000)");
    read_back(ctx, &name, &body, "Content-Length upload");
    let h = ctx.fetch(&req("HEAD", &format!("/files/{name}"), &[]), true);
    h.expect_status(200, "HEAD /files/NAME");
    assert_eq!(
        h.content_length(),
        Some(body.len() as u64),
        "HEAD /files/NAME Content-Length\n{}",
        h.summary()
    );

    let body2 = pseudo_random_bytes(70_001, 0x02);
    let mut raw =
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend(chunked(&body2));
    let r = ctx.fetch(&raw, false);
    let name2 = upload_name(&r, "POST /upload (chunked, 70001 bytes)");
    assert_ne!(name, name2, "two uploads got the same NAME");
    read_back(ctx, &name2, &body2, "chunked upload");

    // Empty body is a valid upload too.
    let r = ctx.fetch(&post("/upload", b""), false);
    let name3 = upload_name(&r, "POST /upload (Content-Length 0)");
    read_back(ctx, &name3, b"", "empty upload");
    assert!(
        temp_files(&ctx.fx.data).is_empty(),
        "temp files left in the data dir after committed uploads: {:?}",
        dir_names(&ctx.fx.data)
    );
}

fn delete(ctx: &Ctx, path: &str) -> Response {
    let mut c = ctx.conn();
    c.send(&req("DELETE", path, &[]));
    let mut r = c
        .try_read_head_only()
        .unwrap_or_else(|e| panic!("DELETE {path}: reading the response: {e}"));
    if r.status != 204 {
        // Other statuses carry a body of Content-Length bytes.
        let n = r.content_length().unwrap_or_else(|| {
            panic!(
                "DELETE {path}: {} without Content-Length\n{}",
                r.status,
                r.summary()
            )
        });
        r.body = c.read_exact_raw(n as usize);
    }
    r
}

/// The body is written to the temp file as it arrives, not held in memory
/// until it is complete: with half of it sent, the temp file already holds
/// that half. Both framings; the finished upload reads back byte-identical.
fn upload_streams_to_disk(ctx: &Ctx) {
    for chunked_framing in [false, true] {
        let body = pseudo_random_bytes(200_000, 0x5EED + u64::from(chunked_framing));
        let (head, wire): (&[u8], Vec<u8>) = if chunked_framing {
            (
                b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
                chunked(&body),
            )
        } else {
            (
                b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n",
                body.clone(),
            )
        };
        let what = if chunked_framing {
            "chunked"
        } else {
            "Content-Length"
        };
        let mut c = ctx.conn();
        let half = wire.len() / 2;
        let mut first = head.to_vec();
        first.extend_from_slice(&wire[..half]);
        c.send(&first);
        let on_disk = || {
            temp_files(&ctx.fx.data)
                .iter()
                .filter_map(|n| fs::metadata(ctx.fx.data.join(n)).ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        };
        let want = (half as u64) * 9 / 10;
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(10), || on_disk() >= want),
            "{what} upload with {half} of {} body bytes sent: expected a `.upload-` temp file of at least {want} bytes in the data dir within 5 s, the largest is {} bytes",
            wire.len(),
            on_disk()
        );
        c.send(&wire[half..]);
        let r = c.read_response(false);
        let name = upload_name(&r, what);
        drop(c);
        read_back(ctx, &name, &body, what);
    }
}

fn upload_delete(ctx: &Ctx) {
    let body = pseudo_random_bytes(1234, 0x03);
    let name = upload_name(&ctx.fetch(&post("/upload", &body), false), "POST /upload");
    let path = format!("/files/{name}");
    let r = delete(ctx, &path);
    assert_eq!(
        r.status,
        204,
        "DELETE {path}: expected 204, got {}\n{}",
        r.status,
        r.summary()
    );
    assert!(
        r.header("date").is_some(),
        "204 without a Date header\n{}",
        r.summary()
    );
    assert!(
        matches!(r.content_length(), None | Some(0)),
        "204 must not announce a body\n{}",
        r.summary()
    );
    ctx.get(&path)
        .expect_status(404, "GET /files/NAME after DELETE");
    assert!(
        !ctx.fx.data.join(&name).exists(),
        "{name} still in the data dir after DELETE 204"
    );
    let r = delete(ctx, &path);
    assert_eq!(
        r.status,
        404,
        "second DELETE {path}: expected 404, got {}\n{}",
        r.status,
        r.summary()
    );
    let r = delete(ctx, &format!("/files/{}", "0123456789abcdef".repeat(2)));
    assert_eq!(
        r.status, 404,
        "DELETE of an unknown well-formed NAME: expected 404, got {}",
        r.status
    );
}

fn upload_405(ctx: &Ctx) {
    for m in ["GET", "HEAD", "PUT", "DELETE", "PATCH"] {
        let raw = req(m, "/upload", &[("Content-Length", "0")]);
        let r = ctx.fetch(&raw, m == "HEAD");
        expect_allow(&r, "POST", &format!("{m} /upload"));
    }
    let body = b"allow test".to_vec();
    let name = upload_name(&ctx.fetch(&post("/upload", &body), false), "POST /upload");
    for m in ["POST", "PUT", "PATCH"] {
        let raw = raw_request(m, &format!("/files/{name}"), "localhost", &[], b"x");
        let r = ctx.fetch(&raw, false);
        expect_allow(&r, "GET, HEAD, DELETE", &format!("{m} /files/NAME"));
    }
    read_back(ctx, &name, &body, "after 405s on it");
}

fn upload_bad_names(ctx: &Ctx) {
    // Plant a temp-looking file: it must not be reachable either.
    let planted = ".upload-0123456789abcdef0123456789abcdef";
    fs::write(ctx.fx.data.join(planted), b"temp").unwrap();
    let upper = "0123456789ABCDEF0123456789ABCDEF";
    let strict = [
        "/files/abc".to_string(),
        format!("/files/{upper}"),
        format!("/files/{}", &"0123456789abcdef".repeat(2)[..31]),
        format!("/files/{}0", "0123456789abcdef".repeat(2)),
        format!("/files/{}", "0123456789abcdeg".repeat(2)),
        format!("/files/{}", "fedcba9876543210".repeat(2)),
        format!("/files/{planted}"),
        "/files/".to_string(),
    ];
    for p in &strict {
        ctx.get(p)
            .expect_status(404, &format!("GET {p} (unknown or malformed NAME)"));
    }
    for p in [
        "/files/..%2fhello.txt",
        "/files/%2e%2e/root/hello.txt",
        "/files/../root/index.html",
    ] {
        let r = ctx.get(p);
        assert!(
            matches!(r.status, 400 | 404),
            "GET {p}: expected 400 or 404, got {}\n{}",
            r.status,
            r.summary()
        );
    }
    fs::remove_file(ctx.fx.data.join(planted)).unwrap();
}

fn upload_413(ctx: &Ctx) {
    // Exactly at the limit is not over it: stored.
    let body = pseudo_random_bytes(MAX_BODY, 0x414);
    let r = ctx.fetch(&post("/upload", &body), false);
    let name = upload_name(
        &r,
        &format!("POST /upload of exactly --max-body-bytes {MAX_BODY} bytes"),
    );
    read_back(ctx, &name, &body, "upload at the limit");

    let before = dir_names(&ctx.fx.data);
    // Content-Length over the limit: 413 without the body being sent.
    let mut c = ctx.conn();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    let _ = c.send_lenient(head.as_bytes());
    let r = c.read_response(false);
    r.expect_status(
        413,
        &format!(
            "POST /upload, Content-Length {} over --max-body-bytes {MAX_BODY}",
            MAX_BODY + 1
        ),
    );
    drop(c);

    // Chunked over the limit: chunks are sent until the response arrives.
    let mut c = ctx.conn();
    c.send(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
    let piece = pseudo_random_bytes(8192, 0x413);
    let mut sent = 0usize;
    let mut complete = false;
    while sent <= MAX_BODY + 64 * 1024 {
        if poll_readable(&[&c.stream], Duration::ZERO)[0] {
            break;
        }
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(&piece);
        chunk.extend_from_slice(b"\r\n");
        if c.send_lenient(&chunk).is_err() {
            break;
        }
        sent += piece.len();
    }
    if sent > MAX_BODY + 64 * 1024 {
        complete = c.send_lenient(b"0\r\n\r\n").is_ok();
    }
    let r = c.try_read_response(false).unwrap_or_else(|e| {
        panic!("chunked upload over the limit ({sent} bytes sent, terminated: {complete}): expected 413, reading failed: {e}")
    });
    r.expect_status(
        413,
        &format!("chunked POST /upload of {sent}+ bytes over --max-body-bytes {MAX_BODY}"),
    );
    drop(c);

    let mut now = Vec::new();
    let same = wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
        now = dir_names(&ctx.fx.data);
        now == before
    });
    assert!(
        same,
        "after two 413s the data dir must be unchanged\nbefore: {before:?}\nafter:  {now:?}"
    );
}

fn upload_concurrent(ctx: &Ctx) {
    const N: usize = 20;
    let before = dir_names(&ctx.fx.data);
    let addr = ctx.addr;
    let handles: Vec<_> = (0..N)
        .map(|i| {
            std::thread::spawn(move || -> Result<(String, Vec<u8>), String> {
                let len = 1024 + (i * 104_729 + 7) % (199 * 1024);
                let body = pseudo_random_bytes(len, 0xC0C0 + i as u64);
                let mut c = Conn::try_connect(addr).map_err(|e| format!("#{i} connect: {e}"))?;
                let raw = if i % 2 == 0 {
                    post("/upload", &body)
                } else {
                    let mut raw = b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                    raw.extend(chunked(&body));
                    raw
                };
                let r = c
                    .try_read_after(&raw)
                    .map_err(|e| format!("#{i} ({len} bytes) upload: {e}"))?;
                if r.status != 201 {
                    return Err(format!("#{i} ({len} bytes): expected 201, got\n{}", r.summary()));
                }
                let loc = r.header("location").unwrap_or("").to_string();
                let name = loc.strip_prefix("/files/").unwrap_or("").to_string();
                if !is_hex32(&name) {
                    return Err(format!("#{i}: bad Location {loc:?}"));
                }
                // Close the upload connection first: an idle keep-alive
                // connection would hold one of threadpool's workers.
                drop(c);
                let mut c = Conn::try_connect(addr).map_err(|e| format!("#{i} connect: {e}"))?;
                let g = c
                    .try_read_after(&get_req(&loc))
                    .map_err(|e| format!("#{i} GET {loc}: {e}"))?;
                if g.status != 200 || g.body != body {
                    return Err(format!(
                        "#{i} GET {loc}: expected 200 with the {len} uploaded bytes, got status {} with {} bytes (identical: {})",
                        g.status,
                        g.body.len(),
                        g.body == body
                    ));
                }
                Ok((name, body))
            })
        })
        .collect();
    let mut errors = Vec::new();
    let mut names = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok((name, body))) => names.push((name, body)),
            Ok(Err(e)) => errors.push(e),
            Err(p) => errors.push(format!("thread panicked: {}", panic_message(&*p))),
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {N} concurrent uploads failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    let mut uniq: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), N, "concurrent uploads got duplicate NAMEs");
    let after = dir_names(&ctx.fx.data);
    let added: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
    assert_eq!(
        added.len(),
        N,
        "the data dir should hold exactly {N} new files, got {added:?}"
    );
    for (name, body) in &names {
        let on_disk = fs::read(ctx.fx.data.join(name)).unwrap_or_default();
        assert!(on_disk == *body, "{name} on disk differs from its upload");
    }
}

#[derive(Clone, Copy, Debug)]
enum Abort {
    /// Content-Length 100000, half sent, then close (FIN).
    Fin,
    /// Same, closed with RST (SO_LINGER 0).
    Rst,
    /// Chunked, some chunks sent, then close (FIN).
    ChunkedFin,
}

fn upload_aborted(ctx: &Ctx, how: Abort) {
    let before = dir_names(&ctx.fx.data);
    let stats_before = stats(ctx.addr);
    let conns_before = stat_u64(&stats_before, "total_connections");

    let mut c = ctx.conn();
    let body = pseudo_random_bytes(100_000, 0xAB);
    match how {
        Abort::Fin | Abort::Rst => {
            let mut raw =
                b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n"
                    .to_vec();
            raw.extend_from_slice(&body[..50_000]);
            c.send(&raw);
        }
        Abort::ChunkedFin => {
            let mut raw =
                b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
            let full = chunked(&body);
            raw.extend_from_slice(&full[..full.len() / 2]);
            c.send(&raw);
        }
    }
    // Wait (bounded) until the server has consumed everything sent so far
    // (its socket's receive queue is empty) or has a temp file open: the
    // abort then really happens mid-body.
    let (sport, cport) = (ctx.addr.port(), c.stream.local_addr().unwrap().port());
    let mut unread = None;
    let mid_body = wait_until(Duration::from_secs(3), Duration::from_millis(5), || {
        unread = server_unread_bytes(sport, cport);
        unread == Some(0)
            || !open_files_under(ctx.pid, &ctx.fx.data).is_empty()
            || !temp_files(&ctx.fx.data).is_empty()
    });
    println!(
        "[{}] aborted upload ({how:?}): body consumed or temp file open before the abort: {mid_body} (server's unread bytes: {unread:?})",
        ctx.variant
    );
    match how {
        Abort::Rst => c.reset(),
        _ => drop(c),
    }
    // Wait until the server noticed: it has closed that connection (only the
    // /stats connection is active, and a later connection was accepted), no
    // file under the data dir is open, and the listing is as before.
    let mut now = Vec::new();
    let mut last_stats = String::new();
    let settled = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        now = dir_names(&ctx.fx.data);
        let j = stats(ctx.addr);
        last_stats = format!("{j:?}");
        now == before
            && open_files_under(ctx.pid, &ctx.fx.data).is_empty()
            && stat_u64(&j, "active_connections") == 1
            && stat_u64(&j, "total_connections") > conns_before + 1
    });
    assert!(
        settled,
        "upload aborted mid-body ({how:?}; body consumed or temp file open before the abort: {mid_body}): within 5 s the data dir must be as before and the connection closed\nbefore: {before:?}\nafter:  {now:?}\nfiles still open under the data dir: {:?}\nlast /stats: {last_stats}",
        open_files_under(ctx.pid, &ctx.fx.data)
    );
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

/// (id, visits) from a /session response, with the cookie checks.
#[track_caller]
fn session_of(r: &Response, what: &str) -> (String, u64) {
    r.expect_status(200, what);
    assert_eq!(
        r.media_type().as_deref(),
        Some("application/json"),
        "{what}: Content-Type\n{}",
        r.summary()
    );
    let raw = r.body_str();
    let j = Json::parse(&raw).unwrap_or_else(|e| panic!("{what}: body not JSON ({e}): {raw}"));
    let id = j
        .get("session")
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("{what}: no \"session\" string in {raw}"))
        .to_string();
    assert!(
        is_hex32(&id),
        "{what}: session id {id:?} is not 32 lower-hex"
    );
    let visits = j
        .get("visits")
        .and_then(Json::as_u64)
        .unwrap_or_else(|| panic!("{what}: no integer \"visits\" in {raw}"));
    (id, visits)
}

/// Checks the Set-Cookie of a new session; returns the id it sets.
#[track_caller]
fn check_set_cookie(r: &Response, what: &str) -> String {
    let sc = r.headers_named("set-cookie");
    assert_eq!(
        sc.len(),
        1,
        "{what}: expected one Set-Cookie\n{}",
        r.summary()
    );
    let mut parts = sc[0].split(';').map(str::trim);
    let first = parts.next().unwrap_or("");
    let id = first
        .strip_prefix("sid=")
        .unwrap_or_else(|| panic!("{what}: Set-Cookie must start with `sid=`: {:?}", sc[0]));
    let attrs: Vec<String> = parts.map(|a| a.to_ascii_lowercase()).collect();
    for want in ["path=/", "httponly", "samesite=lax"] {
        assert!(
            attrs.iter().any(|a| a == want),
            "{what}: Set-Cookie lacks `{want}`: {:?} (expected `sid=<id>; Path=/; HttpOnly; SameSite=Lax`)",
            sc[0]
        );
    }
    id.to_string()
}

fn session_counted(ctx: &Ctx) {
    let r = ctx.get("/session");
    let (id, visits) = session_of(&r, "GET /session (no cookie)");
    assert_eq!(
        visits,
        1,
        "a new session starts at visits 1\n{}",
        r.summary()
    );
    let cookie_id = check_set_cookie(&r, "GET /session (no cookie)");
    assert_eq!(
        cookie_id, id,
        "Set-Cookie id differs from the body's session"
    );

    let cookie = format!("sid={id}");
    let r = ctx.fetch(&req("GET", "/session", &[("Cookie", &cookie)]), false);
    let (id2, v2) = session_of(&r, "GET /session with the cookie back");
    assert_eq!(
        (id2.as_str(), v2),
        (id.as_str(), 2),
        "second visit\n{}",
        r.summary()
    );

    // Among other cookies (as browsers send them).
    let cookies = format!("theme=dark; sid={id}; lang=en");
    let r = ctx.fetch(&req("GET", "/session", &[("Cookie", &cookies)]), false);
    let (id3, v3) = session_of(
        &r,
        "GET /session with `Cookie: theme=dark; sid=ID; lang=en`",
    );
    assert_eq!(
        (id3.as_str(), v3),
        (id.as_str(), 3),
        "third visit\n{}",
        r.summary()
    );

    // A different client gets a different session.
    let (other, ov) = session_of(&ctx.get("/session"), "GET /session (second client)");
    assert_ne!(other, id, "two new sessions got the same id");
    assert_eq!(ov, 1);
}

/// 10 clients x 5 visits with the same cookie, concurrently: every visit
/// counted once.
fn session_concurrent(ctx: &Ctx) {
    let (id, _) = session_of(&ctx.get("/session"), "GET /session (no cookie)");
    let addr = ctx.addr;
    let handles: Vec<_> = (0..10)
        .map(|t| {
            let cookie = format!("sid={id}");
            std::thread::spawn(move || -> Result<(), String> {
                for k in 0..5 {
                    let mut c = Conn::try_connect(addr).map_err(|e| format!("connect: {e}"))?;
                    let r = c.try_read_after(&req("GET", "/session", &[("Cookie", &cookie)]))?;
                    if r.status != 200 {
                        return Err(format!("client {t} visit {k}: {}", r.summary()));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let errors: Vec<String> = handles
        .into_iter()
        .filter_map(|h| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(p) => Some(panic_message(&*p)),
        })
        .collect();
    assert!(
        errors.is_empty(),
        "concurrent visits failed:\n{}",
        errors.join("\n")
    );
    let cookie = format!("sid={id}");
    let r = ctx.fetch(&req("GET", "/session", &[("Cookie", &cookie)]), false);
    let (id2, visits) = session_of(&r, "GET /session after 50 concurrent visits");
    assert_eq!(id2, id, "the session changed");
    assert_eq!(
        visits, 52,
        "1 + 50 concurrent + 1 visits must give 52, got {visits}"
    );
}

fn session_forged(ctx: &Ctx) {
    let unknown = "0123456789abcdef".repeat(2);
    for value in [
        "\"><script>alert(1)</script>",
        unknown.as_str(),
        "",
        "../../etc/passwd",
        "ABCDEF0123456789ABCDEF0123456789",
    ] {
        let cookie = format!("sid={value}");
        let what = format!("GET /session with forged `Cookie: {cookie}`");
        let r = ctx.fetch(&req("GET", "/session", &[("Cookie", &cookie)]), false);
        let (id, visits) = session_of(&r, &what);
        assert_eq!(
            visits,
            1,
            "{what}: expected a fresh session (visits 1)\n{}",
            r.summary()
        );
        assert_ne!(id, value, "{what}: the forged id was adopted");
        let set = check_set_cookie(&r, &what);
        assert_eq!(set, id, "{what}: Set-Cookie id differs from the body");
        if !value.is_empty() {
            assert!(
                !r.head_raw.contains(value) && !r.body_str().contains(value),
                "{what}: the client's value is echoed\n{}",
                r.summary()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Virtual hosts
// ---------------------------------------------------------------------------

fn get_host(ctx: &Ctx, path: &str, host: &str) -> Response {
    ctx.fetch(&raw_request("GET", path, host, &[], b""), false)
}

fn vhost_select(ctx: &Ctx) {
    let port = ctx.addr.port();
    for host in [
        "example.com".to_string(),
        format!("Example.COM:{port}"),
        "EXAMPLE.com".to_string(),
    ] {
        let what = format!("GET / with Host: {host}");
        get_host(ctx, "/", &host)
            .expect_status(200, &what)
            .expect_body(
                VHOST_INDEX,
                &format!("{what} (served from root/example.com)"),
            );
        get_host(ctx, "/only.txt", &host)
            .expect_status(200, &format!("GET /only.txt with Host: {host}"))
            .expect_body(VHOST_ONLY, "vhost file");
        get_host(ctx, "/hello.txt", &host).expect_status(
            404,
            &format!("GET /hello.txt with Host: {host} (only in the default root)"),
        );
    }
    for host in [
        "localhost".to_string(),
        format!("127.0.0.1:{port}"),
        "unknown.test".to_string(),
        "www.example.com".to_string(),
    ] {
        let what = format!("GET / with Host: {host} (no such vhost dir)");
        get_host(ctx, "/", &host)
            .expect_status(200, &what)
            .expect_body(ROOT_INDEX, &format!("{what}: default root"));
        get_host(ctx, "/only.txt", &host)
            .expect_status(404, &format!("GET /only.txt with Host: {host}"));
    }
}

fn vhost_hostile(ctx: &Ctx) {
    for host in [
        "..",
        ".",
        "..:80",
        "../",
        "%2e%2e",
        "example.com/..",
        "example.com/../..",
        "evil.test",
        "EVIL.TEST:8080",
        "root",
        "-",
    ] {
        let what = format!("GET / with Host: {host}");
        // The reader already fails on any response holding the secret that
        // sits outside the root.
        let r = get_host(ctx, "/", host);
        match r.status {
            200 => {
                r.expect_body(ROOT_INDEX, &format!("{what}: must be the default root"));
            }
            400 | 403 | 404 => {}
            s => panic!(
                "{what}: expected the default root (200) or 400/403/404, got {s}\n{}",
                r.summary()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Access log
// ---------------------------------------------------------------------------

struct LogReq {
    raw: Vec<u8>,
    head: bool,
    status: u16,
    /// Needs a connection of its own (closes after it).
    own_conn: bool,
    /// Send `Connection: close` / HTTP/1.0: the server closes after it.
    closes: bool,
    with_ua: bool,
}

const LOG_UA: &str = "features-test/1.0 (access log)";
const LOG_REFERER: &str = "http://referer.example/page?q=1";
const LOG_UA_QUOTES: &str = r#"evil "quoted" \ agent"#;

/// `n` mixed requests: /plaintext, /json, HEAD, 404s, 405, a 400, HTTP/1.0,
/// uploads, /sleep?ms=10, with and without `Connection: close`. The first
/// and last are 404s with marker paths.
fn mixed_requests(n: usize) -> Vec<LogReq> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let mut r = LogReq {
            raw: Vec::new(),
            head: false,
            status: 200,
            own_conn: false,
            closes: false,
            with_ua: false,
        };
        let close_hdr: &[(&str, &str)] = if i % 13 == 12 {
            r.closes = true;
            &[("Connection", "close")]
        } else {
            &[]
        };
        if i == 0 {
            r.raw = raw_request("GET", "/first-request-marker", "localhost", close_hdr, b"");
            r.status = 404;
        } else if i == n - 1 {
            r.raw = raw_request("GET", "/last-request-marker", "localhost", close_hdr, b"");
            r.status = 404;
        } else if i % 50 == 49 {
            r.raw = b"GET /%zz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec();
            r.status = 400;
            r.own_conn = true;
        } else if i % 100 == 37 {
            r.raw = post("/upload", &pseudo_random_bytes(300, i as u64));
            r.status = 201;
        } else if i % 100 == 71 {
            r.raw = raw_request("GET", "/sleep?ms=10", "localhost", close_hdr, b"");
        } else {
            match i % 10 {
                0 => r.raw = raw_request("GET", "/plaintext", "localhost", close_hdr, b""),
                1 => r.raw = raw_request("GET", "/json", "localhost", close_hdr, b""),
                2 => {
                    r.raw = raw_request(
                        "GET",
                        &format!("/missing-{i}.txt"),
                        "localhost",
                        close_hdr,
                        b"",
                    );
                    r.status = 404;
                }
                3 => {
                    r.raw = raw_request("HEAD", "/plaintext", "localhost", close_hdr, b"");
                    r.head = true;
                }
                4 => {
                    r.raw = raw_request("DELETE", "/json", "localhost", close_hdr, b"");
                    r.status = 405;
                }
                5 if i == 15 => {
                    // Quotes and a backslash in a logged field must not break
                    // the line's shape (escaped).
                    let mut h = vec![("User-Agent", LOG_UA_QUOTES)];
                    h.extend_from_slice(close_hdr);
                    r.raw = raw_request("GET", "/json", "localhost", &h, b"");
                }
                5 => {
                    let mut h = vec![("User-Agent", LOG_UA), ("Referer", LOG_REFERER)];
                    h.extend_from_slice(close_hdr);
                    r.raw = raw_request("GET", "/plaintext", "localhost", &h, b"");
                    r.with_ua = true;
                }
                6 => {
                    r.raw = b"GET /health HTTP/1.0\r\n\r\n".to_vec();
                    r.own_conn = true;
                }
                7 => r.raw = raw_request("GET", "/hello.txt", "localhost", close_hdr, b""),
                8 => r.raw = raw_request("GET", "/", "localhost", close_hdr, b""),
                _ => r.raw = raw_request("GET", "/plaintext", "localhost", close_hdr, b""),
            }
        }
        v.push(r);
    }
    v
}

/// Send every request and check each status; keep-alive connections are
/// reused (except on blocking, which closes after each response), and every
/// 17th request the client itself closes the connection after the response.
fn send_mixed(addr: SocketAddr, blocking: bool, reqs: &[LogReq]) {
    let mut cur: Option<Conn> = None;
    for (i, r) in reqs.iter().enumerate() {
        let mut own;
        let c = if r.own_conn || blocking {
            own = Conn::connect(addr);
            &mut own
        } else {
            cur.get_or_insert_with(|| Conn::connect(addr))
        };
        let resp = c.roundtrip(&r.raw, r.head);
        assert_eq!(
            resp.status,
            r.status,
            "mixed request #{i} [{}]: expected {}, got\n{}",
            excerpt(&r.raw, 120),
            r.status,
            resp.summary()
        );
        if !(r.own_conn || blocking) && (r.closes || resp.says_close() || i % 17 == 16) {
            cur = None;
        }
    }
}

struct LogLine {
    request: String,
    status: u16,
    bytes: Option<u64>,
    referer: String,
    ua: String,
}

/// A quoted field; returns (content, rest). Escapes: `\xHH` (nginx style)
/// and `\"`, `\\` (Apache style).
fn quoted(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('"')?;
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), &s[i + 1..])),
            b'\\' if b.get(i + 1) == Some(&b'x') => {
                let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            b'\\' => {
                out.push(*b.get(i + 1)?);
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

fn is_clf_date(d: &str) -> bool {
    // 23/Nov/2026:10:00:00 +0000
    let b = d.as_bytes();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let dig = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 26
        && d.is_ascii()
        && dig(0..2)
        && b[2] == b'/'
        && months.contains(&&d[3..6])
        && b[6] == b'/'
        && dig(7..11)
        && b[11] == b':'
        && dig(12..14)
        && b[14] == b':'
        && dig(15..17)
        && b[17] == b':'
        && dig(18..20)
        && b[20] == b' '
        && matches!(b[21], b'+' | b'-')
        && dig(22..26)
}

/// Parse one combined-format line (without its `\n`).
fn parse_log_line(line: &str) -> Result<LogLine, String> {
    let err = |why: &str| format!("{why}: {line:?}");
    let rest = line
        .strip_prefix("127.0.0.1 - - [")
        .ok_or_else(|| err("expected `127.0.0.1 - - [`"))?;
    let (date, rest) = rest.split_once("] ").ok_or_else(|| err("no `] `"))?;
    if !is_clf_date(date) {
        return Err(err("date not `dd/Mon/yyyy:HH:MM:SS +zzzz`"));
    }
    let (request, rest) = quoted(rest).ok_or_else(|| err("no quoted request"))?;
    let parts: Vec<&str> = request.split(' ').collect();
    if parts.len() != 3 || !parts[2].starts_with("HTTP/1.") {
        return Err(err("request field not `METHOD TARGET HTTP/1.x`"));
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| err("no space after request"))?;
    let (status, rest) = rest.split_once(' ').ok_or_else(|| err("no status"))?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("status not 3 digits"));
    }
    let (bytes, rest) = rest.split_once(' ').ok_or_else(|| err("no bytes field"))?;
    let bytes = match bytes {
        "-" => None,
        b => Some(
            b.parse::<u64>()
                .map_err(|_| err("bytes not a number or -"))?,
        ),
    };
    let (referer, rest) = quoted(rest).ok_or_else(|| err("no quoted referer"))?;
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| err("no space after referer"))?;
    let (ua, rest) = quoted(rest).ok_or_else(|| err("no quoted user agent"))?;
    if !rest.is_empty() {
        return Err(err("trailing data after the user agent"));
    }
    Ok(LogLine {
        request,
        status: status.parse().unwrap(),
        bytes,
        referer,
        ua,
    })
}

/// Whole lines of a log file, each parsed; panics on a partial last line or
/// a malformed line.
#[track_caller]
fn read_log(path: &Path) -> Vec<LogLine> {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text =
        String::from_utf8(data).unwrap_or_else(|_| panic!("{} is not UTF-8", path.display()));
    if text.is_empty() {
        return Vec::new();
    }
    assert!(
        text.ends_with('\n'),
        "{}: last line not terminated by \\n (partial write): {:?}",
        path.display(),
        &text[text.len().saturating_sub(200)..]
    );
    text.lines()
        .map(|l| parse_log_line(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn histogram(it: impl Iterator<Item = u16>) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for s in it {
        *m.entry(s).or_insert(0) += 1;
    }
    m
}

fn access_log_exact(variant: &'static str) {
    const N: usize = 300;
    let fx = Fixture::build();
    let log = fx.dir.join("log").join("access.log");
    fs::create_dir_all(log.parent().unwrap()).unwrap();
    let log_s = log.display().to_string();
    let data_s = fx.data.display().to_string();
    let opts = opts_with(&["--access-log", &log_s, "--data-dir", &data_s]);
    with_server(variant, &fx.root, &opts, |server| {
        let reqs = mixed_requests(N);
        send_mixed(server.addr, variant == "blocking", &reqs);
        server.stop_with(libc::SIGTERM);
        let lines = read_log(&log);
        assert_eq!(
            lines.len(),
            N,
            "after {N} requests and SIGTERM the access log must hold exactly {N} lines, has {}",
            lines.len()
        );
        let want = histogram(reqs.iter().map(|r| r.status));
        let got = histogram(lines.iter().map(|l| l.status));
        assert_eq!(got, want, "status counts in the log vs. the responses");
        let ua_lines = lines
            .iter()
            .filter(|l| l.ua == LOG_UA && l.referer == LOG_REFERER)
            .count();
        let ua_sent = reqs.iter().filter(|r| r.with_ua).count();
        assert_eq!(
            ua_lines, ua_sent,
            "lines with the sent User-Agent and Referer quoted back"
        );
        let quoted_ua = lines.iter().filter(|l| l.ua == LOG_UA_QUOTES).count();
        assert_eq!(
            quoted_ua, 1,
            "the User-Agent {LOG_UA_QUOTES:?} (quotes, backslash) must be logged once, escaped inside its quotes"
        );
        assert_eq!(
            lines[0].request, "GET /first-request-marker HTTP/1.1",
            "first log line"
        );
        assert_eq!(
            lines[N - 1].request,
            "GET /last-request-marker HTTP/1.1",
            "last log line"
        );
        for l in &lines {
            if l.request == "GET /plaintext HTTP/1.1" && l.status == 200 {
                assert_eq!(
                    l.bytes,
                    Some(13),
                    "GET /plaintext 200 must log 13 body bytes (`Hello, World!`)"
                );
            }
            if l.request.starts_with("HEAD ") {
                assert!(
                    matches!(l.bytes, None | Some(0)),
                    "a HEAD response sends no body bytes, logged {:?}",
                    l.bytes
                );
            }
        }
    });
}

fn access_log_rotation(variant: &'static str) {
    const N: usize = 300;
    const MAX: u64 = 2000;
    let fx = Fixture::build();
    let log_dir = fx.dir.join("log");
    fs::create_dir_all(&log_dir).unwrap();
    let log = log_dir.join("access.log");
    let log_s = log.display().to_string();
    let data_s = fx.data.display().to_string();
    let opts = opts_with(&[
        "--access-log",
        &log_s,
        "--access-log-max-bytes",
        "2000",
        "--access-log-keep",
        "3",
        "--data-dir",
        &data_s,
    ]);
    with_server(variant, &fx.root, &opts, |server| {
        let reqs = mixed_requests(N);
        send_mixed(server.addr, variant == "blocking", &reqs);
        server.stop_with(libc::SIGTERM);
        let names = dir_names(&log_dir);
        let allowed = ["access.log", "access.log.1", "access.log.2", "access.log.3"];
        let extra: Vec<&String> = names
            .iter()
            .filter(|n| !allowed.contains(&n.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "with --access-log-keep 3 only FILE and FILE.1..FILE.3 may exist, found {names:?}"
        );
        // ~25 KB were logged against a 2000-byte limit: rotated at least 3 times.
        for n in &allowed[1..] {
            assert!(
                names.iter().any(|x| x == n),
                "{n} missing after ~25 KB of log with --access-log-max-bytes 2000: {names:?}"
            );
        }
        let mut total = 0;
        let mut all_requests = Vec::new();
        for n in &names {
            let p = log_dir.join(n);
            let size = fs::metadata(&p).unwrap().len();
            assert!(
                size <= MAX,
                "{n} is {size} bytes, over --access-log-max-bytes {MAX}"
            );
            let lines = read_log(&p);
            if n != "access.log" {
                assert!(!lines.is_empty(), "rotated file {n} is empty");
            }
            total += lines.len();
            all_requests.extend(lines.into_iter().map(|l| (n.clone(), l.request)));
        }
        assert!(
            total <= N,
            "{total} lines survive rotation, more than the {N} requests sent"
        );
        let first = all_requests
            .iter()
            .any(|(_, r)| r == "GET /first-request-marker HTTP/1.1");
        assert!(
            !first,
            "the first request's line should have been rotated away (keep 3)"
        );
        let last = all_requests
            .iter()
            .find(|(_, r)| r == "GET /last-request-marker HTTP/1.1");
        assert!(
            matches!(last, Some((f, _)) if f == "access.log" || f == "access.log.1"),
            "the last request's line must be in access.log or access.log.1, found in {:?}",
            last.map(|(f, _)| f)
        );
    });
}

// ---------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------

fn sigterm_during_upload(variant: &'static str) {
    const LEN: usize = 1024 * 1024;
    let fx = Fixture::build();
    let data_s = fx.data.display().to_string();
    let mut opts = opts_with(&["--data-dir", &data_s]);
    opts.max_body_bytes = Some(2 * LEN as u64);
    with_server(variant, &fx.root, &opts, |server| {
        let body = pseudo_random_bytes(LEN, 0x516);
        let mut c = server.conn();
        c.send(
            format!("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {LEN}\r\n\r\n")
                .as_bytes(),
        );
        let piece = 64 * 1024;
        c.send(&body[..2 * piece]);
        // The server is receiving the body: it has consumed what was sent
        // (its socket's receive queue is empty) or has a temp file open.
        let data = fx.data.clone();
        let pid = server.pid;
        let (sport, cport) = (server.addr.port(), c.stream.local_addr().unwrap().port());
        let started = wait_until(Duration::from_secs(3), Duration::from_millis(5), || {
            server_unread_bytes(sport, cport) == Some(0)
                || !open_files_under(pid, &data).is_empty()
                || !temp_files(&data).is_empty()
        });
        println!(
            "[{variant}] SIGTERM during upload: body being consumed before the signal: {started}"
        );
        server.signal(libc::SIGTERM);
        let mut off = 2 * piece;
        while off < LEN {
            std::thread::sleep(Duration::from_millis(20));
            let end = (off + piece).min(LEN);
            c.send(&body[off..end]);
            off = end;
        }
        let r = c.read_response(false);
        let name = upload_name(&r, "1 MiB upload whose body straddles SIGTERM");
        drop(c);
        match server.wait_exit(IO_TIMEOUT) {
            Some(st) => assert!(st.success(), "exit status after SIGTERM: {st} (expected 0)"),
            None => panic!("the server did not exit within {IO_TIMEOUT:?} of SIGTERM"),
        }
        let on_disk = fs::read(fx.data.join(&name))
            .unwrap_or_else(|e| panic!("{name} not in the data dir after 201: {e}"));
        assert!(
            on_disk == body,
            "{name}: {} bytes on disk, expected the {LEN} uploaded bytes (identical: false)",
            on_disk.len()
        );
        assert!(
            temp_files(&fx.data).is_empty(),
            "temp files left after shutdown: {:?}",
            dir_names(&fx.data)
        );
    });
}

fn sigterm_during_sleep(variant: &'static str) {
    let fx = Fixture::build();
    with_server(variant, &fx.root, &opts_with(&[]), |server| {
        let before = threads_in_nanosleep(server.pid);
        let mut c = server.conn();
        c.send(&get_req("/sleep?ms=1500"));
        let seen = wait_for_new_sleeper(server.pid, before);
        println!("[{variant}] SIGTERM during /sleep: sleep seen started: {seen}");
        server.signal(libc::SIGTERM);
        c.read_response(false)
            .expect_status(200, "/sleep?ms=1500 in flight across SIGTERM")
            .expect_body(b"slept 1500 ms\n", "/sleep?ms=1500 across SIGTERM");
        drop(c);
        match server.wait_exit(IO_TIMEOUT) {
            Some(st) => assert!(st.success(), "exit status after SIGTERM: {st} (expected 0)"),
            None => panic!("the server did not exit within {IO_TIMEOUT:?} of SIGTERM"),
        }
    });
}

fn sigterm_during_cgi(variant: &'static str) {
    let fx = Fixture::build();
    let cgi_s = fx.cgi.display().to_string();
    with_server(
        variant,
        &fx.root,
        &opts_with(&["--cgi-dir", &cgi_s, "--cgi-timeout", "10s"]),
        |server| {
            let pid_file = fx.run.join("slow.pid");
            let mut c = server.conn();
            c.send(&get_req("/cgi-bin/slow"));
            let mut script = 0u32;
            let running = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
                script = fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                script != 0
            });
            assert!(running, "the CGI script `slow` did not start within 5 s");
            let st = proc_stat(script);
            assert!(
                st.as_ref().is_some_and(|p| p.ppid == server.pid),
                "test premise: the script (pid {script}) should be a child of the server, got {st:?}"
            );
            server.signal(libc::SIGTERM);
            c.read_response(false)
                .expect_status(200, "CGI request in flight across SIGTERM")
                .expect_body(b"slow done\n", "CGI request across SIGTERM");
            drop(c);
            match server.wait_exit(IO_TIMEOUT) {
                Some(st) => assert!(st.success(), "exit status after SIGTERM: {st} (expected 0)"),
                None => panic!("the server did not exit within {IO_TIMEOUT:?} of SIGTERM"),
            }
            let mut left = None;
            let gone = wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
                left = process_lingers(script, server.pid);
                left.is_none()
            });
            assert!(
                gone,
                "the CGI script process is still there after the server exited: {left:?}"
            );
        },
    );
}

/// `--shutdown-timeout 1s` with a `/sleep?ms=4000` in flight at SIGTERM:
/// exit status 0 on every variant. threadpool and epoll-threads drop the
/// connection at the timeout (the server is gone before the sleep ends, so
/// no response arrives); blocking and epoll cannot interrupt the handler on
/// their only thread, so there the response may still come.
fn shutdown_timeout(variant: &'static str) {
    let fx = Fixture::build();
    with_server(
        variant,
        &fx.root,
        &opts_with(&["--shutdown-timeout", "1s"]),
        |server| {
            let before = threads_in_nanosleep(server.pid);
            let mut c = server.conn();
            c.send(&get_req("/sleep?ms=4000"));
            wait_for_new_sleeper(server.pid, before);
            server.signal(libc::SIGTERM);
            match server.wait_exit(IO_TIMEOUT) {
                Some(st) => assert!(
                    st.success(),
                    "exit status after SIGTERM past --shutdown-timeout: {st} (expected 0)"
                ),
                None => panic!(
                    "the server did not exit within {IO_TIMEOUT:?} of SIGTERM with --shutdown-timeout 1s"
                ),
            }
            let got = c.try_read_response(false);
            if matches!(variant, "threadpool" | "epoll-threads") {
                assert!(
                    got.is_err(),
                    "{variant} can drop a connection at --shutdown-timeout: the server exited, yet the 4 s sleep was answered\n{}",
                    got.map(|r| r.summary()).unwrap_or_default()
                );
            } else if let Ok(r) = got {
                r.expect_status(
                    200,
                    "/sleep answered before exit (handler not interruptible)",
                );
            }
        },
    );
}

// ---------------------------------------------------------------------------
// Load shedding
// ---------------------------------------------------------------------------

fn shed_threadpool(variant: &'static str) {
    let fx = Fixture::build();
    let opts = ServerOpts {
        threads: 1,
        header_timeout: "10s".into(),
        keepalive_timeout: "10s".into(),
        max_body_bytes: None,
        extra: vec!["--queue".into(), "1".into()],
    };
    with_server(variant, &fx.root, &opts, |server| {
        // The only worker holds a keep-alive connection waiting for its next request.
        let mut held = server.conn();
        held.get("/plaintext")
            .expect_status(
                200,
                "GET /plaintext on the connection that holds the worker",
            )
            .expect_not_close("keep-alive");
        // The queue (capacity 1) holds the next connection.
        let mut queued = server.conn();
        // The accept thread must shed the third: 503 + Retry-After + close,
        // without a worker and without waiting for a request.
        let mut shed = server.conn();
        let r = shed.try_read_response(false).unwrap_or_else(|e| {
            panic!("third connection (worker busy, queue of 1 full): expected a 503, got: {e}")
        });
        r.expect_status(
            503,
            "third connection while the worker and the queue are full",
        );
        assert_eq!(
            r.header("retry-after"),
            Some("1"),
            "503 must carry `Retry-After: 1`\n{}",
            r.summary()
        );
        r.expect_close("the shedding 503");
        shed.expect_closed("after the shedding 503");
        // Release the worker: it takes the queued connection, which is served.
        drop(held);
        let j = {
            queued.send(&get_req("/stats"));
            let r = queued.read_response(false);
            r.expect_status(
                200,
                "GET /stats on the queued connection once the worker is free",
            );
            Json::parse(&r.body_str()).expect("stats JSON")
        };
        let n = stat_u64(&j, "shed");
        assert_eq!(n, 1, "/stats shed after one 503: expected 1, got {n}");
        drop(queued);
        get(server.addr, "/plaintext").expect_status(200, "fresh /plaintext after shedding");
        server.stop_with(libc::SIGTERM);
    });
}

fn shed_epoll_threads(variant: &'static str) {
    let fx = Fixture::build();
    let opts = opts_with(&["--workers", "1", "--work-queue", "1"]);
    with_server(variant, &fx.root, &opts, |server| {
        let mut conns: Vec<Conn> = (0..3).map(|_| server.conn()).collect();
        for c in conns.iter_mut() {
            c.send(&get_req("/sleep?ms=1500"));
        }
        let mut ok = 0;
        let mut shed = 0;
        let mut other = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            let r = c.read_response(false);
            match r.status {
                200 => {
                    r.expect_body(b"slept 1500 ms\n", "served /sleep");
                    ok += 1;
                }
                503 => {
                    let ra = r.header("retry-after").unwrap_or("");
                    assert!(
                        !ra.is_empty() && ra.bytes().all(|b| b.is_ascii_digit()),
                        "503 must carry Retry-After (seconds), got {ra:?}\n{}",
                        r.summary()
                    );
                    shed += 1;
                }
                _ => other.push(format!("#{i}: {}", r.summary())),
            }
        }
        assert!(
            other.is_empty() && shed >= 1 && ok >= 1,
            "three /sleep?ms=1500 with --workers 1 --work-queue 1: expected at least one 200 and one 503, got {ok} x 200, {shed} x 503, others: {other:?}"
        );
        println!(
            "[{variant}] three /sleep with one worker and a queue of one: {ok} x 200, {shed} x 503"
        );
        let n = stat_u64(&stats(server.addr), "shed");
        assert_eq!(n, shed, "/stats shed must count the {shed} 503(s), got {n}");
        get(server.addr, "/sleep?ms=1").expect_status(200, "/sleep after shedding");
        server.stop_with(libc::SIGTERM);
    });
}

// ---------------------------------------------------------------------------
// /sleep on one event loop: epoll-threads offloads, epoll stalls
// ---------------------------------------------------------------------------

fn one_loop_not_blocked_by_sleep(variant: &'static str) {
    let fx = Fixture::build();
    let opts = ServerOpts {
        threads: 1,
        ..opts_with(&[])
    };
    with_server(variant, &fx.root, &opts, |server| {
        let before = threads_in_nanosleep(server.pid);
        let mut sleeper = server.conn();
        sleeper.send(&get_req("/sleep?ms=2000"));
        let seen = wait_for_new_sleeper(server.pid, before);
        let mut other = server.conn();
        other
            .get("/plaintext")
            .expect_status(200, "/plaintext while a /sleep runs")
            .expect_body(b"Hello, World!", "/plaintext while a /sleep runs");
        let sleep_ready = poll_readable(&[&sleeper.stream], Duration::ZERO)[0];
        println!("[{variant}] one loop: sleep seen started: {seen}; sleep readable when /plaintext answered: {sleep_ready}");
        assert!(
            !sleep_ready,
            "with --threads 1 the /plaintext response must arrive while the /sleep?ms=2000 connection is still waiting (sleep seen started: {seen}); the sleep's connection was already readable"
        );
        sleeper
            .read_response(false)
            .expect_status(200, "/sleep?ms=2000")
            .expect_body(b"slept 2000 ms\n", "/sleep?ms=2000");
        server.stop_with(libc::SIGTERM);
    });
}

fn single_loop_stalls_during_sleep(variant: &'static str) {
    let fx = Fixture::build();
    with_server(variant, &fx.root, &opts_with(&[]), |server| {
        let before = threads_in_nanosleep(server.pid);
        let mut sleeper = server.conn();
        sleeper.send(&get_req("/sleep?ms=1500"));
        let seen = wait_for_new_sleeper(server.pid, before);
        let mut other = server.conn();
        other
            .get("/plaintext")
            .expect_status(200, "/plaintext sent during a /sleep");
        // The single loop finished the sleep (and wrote its response) before
        // it could serve /plaintext: the sleep's response is already there.
        let sleep_ready = poll_readable(&[&sleeper.stream], Duration::ZERO)[0];
        println!("[{variant}] single loop: sleep seen started: {seen}; sleep readable when /plaintext answered: {sleep_ready}");
        assert!(
            sleep_ready,
            "epoll (one loop) runs /sleep inline: when /plaintext's response arrives the /sleep response must already be readable (sleep seen started: {seen})"
        );
        sleeper
            .read_response(false)
            .expect_status(200, "/sleep?ms=1500")
            .expect_body(b"slept 1500 ms\n", "/sleep?ms=1500");
        server.stop_with(libc::SIGTERM);
    });
}
