//! `GET /dashboard` on every variant, checked in a real browser.
//!
//! Each variant's test starts the server binary, checks the page's
//! response (GET and HEAD), then loads it in headless Chromium and puts a
//! short bounded load on the server (300 requests, one after another). It
//! asserts that the numbers on the page moved (requests counted, several
//! points in the chart, the area under its line holding the 300 requests)
//! and agree with a `/stats` fetched right after reading the page, within
//! the requests made between the page's last poll and that fetch; then
//! stops the server and waits for the page to say `/stats` is unreachable.
//! A screenshot of the page after the load is written to
//! `target/tmp/dashboard/<variant>.png`.
//!
//! The browser runs in real time, driven through the DevTools protocol
//! over `--remote-debugging-pipe` (NUL-separated JSON on descriptors 3 and
//! 4, so no WebSocket client is needed). `--virtual-time-budget` with
//! `--dump-dom` would be simpler, but virtual time fires the page's
//! one-second timer at once while each fetch takes real time: the polls
//! come back to back, a few milliseconds of server time apart, so the page
//! would never be seen polling at its real pace.
//!
//! Without a `chromium` binary on PATH the browser part is skipped with a
//! message (`apt-get install chromium`; CI's `.ci/run` installs it). Every
//! wait is bounded, traffic stays on 127.0.0.1, and the browser runs in its
//! own process group, killed whole when the test ends however it ends.
//!
//! `readme_screenshot` (ignored; `cargo test -p servers --test dashboard
//! -- --ignored`) makes the README's picture: 90 s of varying light load
//! on `epoll-threads`, then `target/tmp/dashboard/readme.png`.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use servers::variants::Processes;
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

per_variant_tests! {
    variants: [blocking, fork, threadpool, prefork, epoll, epoll_threads, uring],
    tests: [dashboard],
}

/// Requests the load thread makes.
const LOAD: u64 = 300;
/// The longest any wait on the page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Where screenshots go (cargo's scratch directory under `target/`).
const SHOTS: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/dashboard");

fn dashboard(v: &'static Variant) {
    let root = tempfile::tempdir().expect("temp root");
    // Enough threads that the browser's idle keep-alive connections never
    // hold every worker of the thread-per-connection models.
    let opts = ServerOpts {
        threads: 4,
        ..ServerOpts::default()
    };
    let mut server = Server::start(v.name, root.path(), &opts);
    check_response(server.addr);
    let Some(chromium) = chromium() else {
        skip(
            v,
            "dashboard in a browser",
            "no `chromium` on PATH (install it: `apt-get install chromium`; CI's .ci/run does)",
        );
        return;
    };
    let started = Instant::now();
    let mut browser = Browser::launch(&chromium, (1280, 900));
    browser.open(&format!("http://{}/dashboard", server.addr));
    let first = browser.wait_for("a first /stats poll", |p| p.polls_ok >= 1);
    assert_eq!(first.state, "live", "{first:?}");

    load_plaintext(server.addr, LOAD, Duration::from_millis(5));
    // The line accounts for the load: the area under it (rate × interval,
    // summed) holds every request made since the first poll.
    let moved = browser.wait_for("the load on the page", |p| {
        p.total_requests >= first.total_requests + LOAD && p.points >= 3 && p.chart_requests >= LOAD
    });
    assert!(moved.chart_requests <= moved.total_requests, "{moved:?}");
    assert!(moved.rps > 0.0 && moved.max_rps >= moved.rps, "{moved:?}");
    assert!(moved.service_mean_all > 0.0, "{moved:?}");
    agrees_with_stats(v, &mut browser, server.addr);
    let shot = browser.screenshot(&format!("{}.png", v.name));
    println!("[{}] screenshot: {}", v.name, shot.display());

    server.signal(libc::SIGKILL);
    server.wait_exit(IO_TIMEOUT);
    let down = browser.wait_for("the page to notice the server is gone", |p| {
        p.state == "unreachable"
    });
    assert!(down.link.contains("unreachable"), "{down:?}");
    browser.close();
    println!("[{}] browser part took {:?}", v.name, started.elapsed());
}

/// GET and HEAD /dashboard: one self-contained HTML page, never cached.
fn check_response(addr: SocketAddr) {
    let get = Conn::connect(addr).roundtrip(&get_req("/dashboard"), false);
    get.expect_status(200, "GET /dashboard")
        .expect_header("Content-Type", "text/html; charset=utf-8", "GET /dashboard")
        .expect_header("Cache-Control", "no-store", "GET /dashboard");
    let csp = get.header("Content-Security-Policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{}", get.summary());
    let body = get.body_str();
    assert!(body.starts_with("<!DOCTYPE html>") && body.contains("/stats"));
    let head = Conn::connect(addr).roundtrip(&req("HEAD", "/dashboard", &[]), true);
    head.expect_status(200, "HEAD /dashboard");
    assert_eq!(head.content_length(), Some(get.body.len() as u64));
    assert!(head.body.is_empty());
}

/// `n` GETs of /plaintext, one connection each (so every model serves
/// them alike), `gap` apart so the load spans a few of the page's polls.
fn load_plaintext(addr: SocketAddr, n: u64, gap: Duration) {
    for _ in 0..n {
        Conn::connect(addr)
            .roundtrip(&get_req("/plaintext"), false)
            .expect_status(200, "GET /plaintext under load");
        std::thread::sleep(gap);
    }
}

/// The page's figures against a `/stats` fetched right after reading them.
/// Nothing but the page talks to the server now, so the fetch counts the
/// page's last poll (which its own body did not count), plus any polls
/// the page made or started since: `after.polls_ok - before.polls_ok`,
/// and one still in flight.
fn agrees_with_stats(v: &Variant, browser: &mut Browser, addr: SocketAddr) {
    let before = browser.page();
    let r = Conn::connect(addr).roundtrip(&get_req("/stats"), false);
    r.expect_status(200, "GET /stats");
    let after = browser.page();
    let stats: Value = serde_json::from_str(&r.body_str()).expect("/stats JSON");
    let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("/stats {k}"));
    let most = 2 + after.polls_ok - before.polls_ok;
    let ctx = format!("page {before:?}\n/stats {stats}");
    assert_eq!(stats["variant"], before.variant.as_str(), "{ctx}");
    assert_eq!(before.variant, v.name, "{ctx}");
    assert_eq!(n("threads"), before.threads, "{ctx}");
    if v.processes == Processes::PerConnection {
        // A child per connection: the fetch's own child (and the page's
        // poll, if one is in flight) come and go between the two readings.
        let (page, now) = (before.processes, n("processes"));
        assert!(page >= 1 && now.abs_diff(page) <= 2, "processes: {ctx}");
    } else {
        assert_eq!(n("processes"), before.processes, "{ctx}");
    }
    let since = n("total_requests").saturating_sub(before.total_requests);
    assert!(
        (1..=most).contains(&since),
        "{since} requests since the page's poll: {ctx}"
    );
    let ok = stats["status"]["200"].as_u64().unwrap_or(0);
    assert_eq!(before.status.len(), 1, "only 200s were served: {ctx}");
    let page_ok = before.status.get("200").copied().unwrap_or(0);
    assert_eq!(ok.saturating_sub(page_ok), since, "{ctx}");
    assert_eq!(n("shed"), before.shed, "{ctx}");
    assert!(n("total_connections") > before.total_connections, "{ctx}");
    let sent = n("bytes_sent").saturating_sub(before.bytes_sent);
    assert!(
        sent > 0,
        "the page's last poll was sent after its body: {ctx}"
    );
    assert!(
        sent <= most * 1024,
        "{sent} bytes for {most} /stats at most: {ctx}"
    );
    assert!(
        stats["uptime_seconds"].as_f64() >= Some(before.uptime),
        "{ctx}"
    );
    assert!(before.active_connections >= 1, "the poll's own: {ctx}");
}

/// What the page shows, read from its elements' `data-value`s.
#[derive(Debug, Clone)]
struct Page {
    state: String,
    link: String,
    polls_ok: u64,
    points: u64,
    max_rps: f64,
    chart_requests: u64,
    variant: String,
    threads: u64,
    processes: u64,
    uptime: f64,
    rps: f64,
    total_requests: u64,
    active_connections: u64,
    total_connections: u64,
    bytes_sent: u64,
    shed: u64,
    service_mean_all: f64,
    status: std::collections::BTreeMap<String, u64>,
}

/// Gathers the page's figures as strings (empty before the first poll;
/// only `state`, "loading", until the page has been parsed).
const READ_PAGE: &str = r##"(() => {
  if (!document.getElementById("status")) return { state: "loading" };
  const v = (id) => document.getElementById(id).dataset.value;
  const b = document.body.dataset;
  const status = {};
  for (const tr of document.querySelectorAll("#status tr")) status[tr.dataset.code] = tr.dataset.value;
  return {
    state: b.state, link: document.getElementById("link").textContent, polls_ok: b.pollsOk,
    points: b.points, max_rps: b.maxRps, chart_requests: b.chartRequests, variant: v("variant"), threads: v("threads"),
    processes: v("processes"), uptime: v("uptime"), rps: v("rps"),
    total_requests: v("total-requests"), active_connections: v("active-connections"),
    total_connections: v("total-connections"), bytes_sent: v("bytes-sent"), shed: v("shed"),
    service_mean_all: v("service-mean-all"), status,
  };
})()"##;

impl Page {
    fn from(v: &Value) -> Page {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let f = |k: &str| s(k).parse::<f64>().unwrap_or(0.0);
        let u = |k: &str| s(k).parse::<u64>().unwrap_or(0);
        let status = v["status"].as_object().into_iter().flatten();
        Page {
            state: s("state"),
            link: s("link"),
            polls_ok: u("polls_ok"),
            points: u("points"),
            max_rps: f("max_rps"),
            chart_requests: u("chart_requests"),
            variant: s("variant"),
            threads: u("threads"),
            processes: u("processes"),
            uptime: f("uptime"),
            rps: f("rps"),
            total_requests: u("total_requests"),
            active_connections: u("active_connections"),
            total_connections: u("total_connections"),
            bytes_sent: u("bytes_sent"),
            shed: u("shed"),
            service_mean_all: f("service_mean_all"),
            status: status
                .map(|(k, n)| {
                    (
                        k.clone(),
                        n.as_str().and_then(|n| n.parse().ok()).unwrap_or(0),
                    )
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// The README's picture
// ---------------------------------------------------------------------------

/// Ninety seconds of load rising and falling on `epoll-threads`, then a
/// screenshot for the README (copied to `docs/dashboard.png`).
#[test]
#[ignore = "makes the README's screenshot: 90 s of light load"]
fn readme_screenshot() {
    let chromium = chromium().expect("`chromium` on PATH: apt-get install chromium");
    let root = tempfile::tempdir().expect("temp root");
    let server = Server::start("epoll-threads", root.path(), &ServerOpts::default());
    let mut browser = Browser::launch(&chromium, (1280, 620));
    browser.open(&format!("http://{}/dashboard", server.addr));
    browser.wait_for("a first /stats poll", |p| p.polls_ok >= 1);
    // A slow wave between about 50 and 450 requests a second.
    let per_second: Vec<u64> = (0..90)
        .map(|i| (250.0 + 200.0 * (f64::from(i) / 9.0).sin()) as u64)
        .collect();
    let load = std::thread::spawn({
        let addr = server.addr;
        move || paced_load(addr, &per_second)
    });
    // Taken under load, before the last seconds: the line still moving.
    std::thread::sleep(Duration::from_secs(86));
    let shot = browser.screenshot("readme.png");
    load.join().expect("load thread");
    browser.close();
    println!("screenshot: {}", shot.display());
}

/// Up to `per_second[i]` GETs of /plaintext evenly spread over second
/// `i`; a request already 20 ms late is left out rather than sent in a
/// burst with the next ones.
fn paced_load(addr: SocketAddr, per_second: &[u64]) {
    let start = Instant::now();
    for (i, &n) in per_second.iter().enumerate() {
        let second = start + Duration::from_secs(i as u64);
        for k in 0..n {
            let at = second + Duration::from_secs(1) * k as u32 / n as u32;
            let now = Instant::now();
            if now > at + Duration::from_millis(20) {
                continue;
            }
            std::thread::sleep(at.saturating_duration_since(now));
            Conn::connect(addr)
                .roundtrip(&get_req("/plaintext"), false)
                .expect_status(200, "GET /plaintext under load");
        }
    }
}

// ---------------------------------------------------------------------------
// Headless Chromium over the DevTools protocol
// ---------------------------------------------------------------------------

/// The `chromium` binary on PATH, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// A headless Chromium in its own process group, attached to one page.
struct Browser {
    child: Child,
    /// Descriptor 3 of the browser: commands, each followed by a NUL.
    commands: File,
    /// Descriptor 4 of the browser: replies and events, NUL-separated.
    replies: File,
    /// Bytes read from `replies` past the last whole message.
    pending: Vec<u8>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start the browser with its window `size`, and attach to its page.
    fn launch(chromium: &Path, size: (u32, u32)) -> Browser {
        let profile = tempfile::tempdir().expect("browser profile dir");
        let (to_browser, commands) = pipe();
        let (replies, from_browser) = pipe();
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--hide-scrollbars",
            &format!("--window-size={},{}", size.0, size.1),
            &format!("--user-data-dir={}", profile.path().display()),
            "about:blank",
        ])
        // Its crash-report database and caches go to the profile, not $HOME.
        .env("XDG_CONFIG_HOME", profile.path())
        .env("XDG_CACHE_HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        as_fds_3_and_4(&mut cmd, &to_browser, &from_browser);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", chromium.display()));
        // The browser has its copies: with ours closed, its exit is an EOF.
        drop((to_browser, from_browser));
        let mut b = Browser {
            child,
            commands,
            replies,
            pending: Vec::new(),
            next_id: 0,
            session: None,
            _profile: profile,
        };
        b.attach();
        // The page's own size: --window-size includes the window's frame.
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": size.0, "height": size.1, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// Attach to the browser's first page (flat mode: commands for the page
    /// carry its session id).
    fn attach(&mut self) {
        let targets = self.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["type"] == "page"))
            .unwrap_or_else(|| panic!("no page target: {targets}"))["targetId"]
            .clone();
        let r = self.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        self.session = Some(r["sessionId"].as_str().expect("sessionId").to_string());
    }

    fn open(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "navigating to {url}: {r}");
    }

    /// The page's figures now.
    fn page(&mut self) -> Page {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": READ_PAGE, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "reading the page: {r}");
        Page::from(&r["result"]["value"])
    }

    /// Read the page every 100 ms until `ready` holds; panics after
    /// [`PAGE_TIMEOUT`] with the last reading.
    fn wait_for(&mut self, what: &str, ready: impl Fn(&Page) -> bool) -> Page {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let p = self.page();
            if ready(&p) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "waited {PAGE_TIMEOUT:?} for {what}; the page shows {p:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Capture the page as PNG into the screenshot directory.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        std::fs::create_dir_all(SHOTS).expect("screenshot dir");
        let path = Path::new(SHOTS).join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ask the browser to exit; [`Drop`] kills it if it does not.
    fn close(mut self) {
        let _ = self.send("Browser.close", json!({}), false);
    }

    /// Send a command (to the attached page when `to_page`); returns its id.
    fn send(&mut self, method: &str, params: Value, to_page: bool) -> std::io::Result<u64> {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if let (true, Some(s)) = (to_page, &self.session) {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("command JSON");
        bytes.push(0);
        self.commands.write_all(&bytes)?;
        Ok(self.next_id)
    }

    /// Send a command and wait (bounded by [`IO_TIMEOUT`]) for its result,
    /// passing over events. Page-level commands go to the attached page.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let to_page = !method.starts_with("Target.") && !method.starts_with("Browser.");
        let id = self
            .send(method, params, to_page)
            .unwrap_or_else(|e| panic!("{method}: writing to the browser: {e}"));
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let msg = self
                .message(deadline)
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            if msg["id"] == id {
                assert!(msg.get("error").is_none(), "{method}: {msg}");
                return msg["result"].clone();
            }
        }
    }

    /// The next message from the browser, read by `deadline`.
    fn message(&mut self, deadline: Instant) -> Result<Value, String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == 0) {
                let msg: Vec<u8> = self.pending.drain(..=end).collect();
                return serde_json::from_slice(&msg[..end]).map_err(|e| format!("bad JSON: {e}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !readable(&self.replies, left) {
                return Err("no reply from the browser in time".into());
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.replies.read(&mut chunk) {
                Ok(0) => return Err("the browser closed its pipe (it exited?)".into()),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading from the browser: {e}")),
            }
        }
    }
}

impl Drop for Browser {
    /// Give the browser 5 s to exit, then kill its whole process group
    /// (renderer, GPU and utility processes included; the crash handler
    /// starts a session of its own and exits when the browser does).
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: kill(2) on the group we created for this child (its pid).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A pipe as (read end, write end) files, close-on-exec.
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// In the child: `read` as descriptor 3 and `write` as descriptor 4 (what
/// `--remote-debugging-pipe` expects), in a new process group, killed if
/// the test thread dies. The caller keeps both open until `spawn` returns,
/// then closes them; our ends of the pipes are close-on-exec.
fn as_fds_3_and_4(cmd: &mut Command, read: &File, write: &File) {
    use std::os::unix::process::CommandExt;
    let (rfd, wfd) = (read.as_raw_fd(), write.as_raw_fd());
    cmd.process_group(0);
    // SAFETY: only async-signal-safe calls (fcntl, dup2, prctl) on
    // descriptors open across the fork. Both are first copied to 10 and
    // up, so neither can be overwritten by the other's dup2 onto 3 or 4;
    // dup2 clears close-on-exec on 3 and 4.
    unsafe {
        cmd.pre_exec(move || {
            let r2 = libc::fcntl(rfd, libc::F_DUPFD_CLOEXEC, 10);
            let w2 = libc::fcntl(wfd, libc::F_DUPFD_CLOEXEC, 10);
            if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

/// Whether `f` becomes readable (data or EOF) within `timeout`.
fn readable(f: &File, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}
