//! The process models (`fork`, `prefork`) as processes: children reaped as
//! they exit, `--max-children`, a killed worker respawned while the other
//! workers' clients go on, SIGHUP's graceful restart, SIGTERM leaving no
//! process behind, and `/stats` and the access log exact across processes.
//!
//! Every wait is bounded; "within a second" is polled for up to 5 s and the
//! time it took is printed. Traffic stays on 127.0.0.1.

mod common;

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// Bound of every "it happens promptly" wait.
const PROMPT: Duration = Duration::from_secs(5);

fn opts(extra: &[&str]) -> ServerOpts {
    ServerOpts {
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOpts::default()
    }
}

/// [`opts`] with `--threads threads`.
fn opts_threads(threads: u32, extra: &[&str]) -> ServerOpts {
    ServerOpts {
        threads,
        ..opts(extra)
    }
}

/// Closed-loop load: `clients` threads, each opening `conns` connections in
/// turn and sending `per_conn` requests on each (the last with
/// `Connection: close`). Returns the responses completed with status 200.
fn load(addr: SocketAddr, clients: usize, conns: usize, per_conn: usize) -> u64 {
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut done = 0u64;
                for _ in 0..conns {
                    let mut c = Conn::connect(addr);
                    for k in 0..per_conn {
                        let raw = if k + 1 == per_conn {
                            req("GET", "/plaintext", &[("Connection", "close")])
                        } else {
                            get_req("/plaintext")
                        };
                        if c.try_read_after(&raw).is_ok_and(|r| r.status == 200) {
                            done += 1;
                        }
                    }
                }
                done
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

/// `/stats` as JSON, on a connection of its own.
fn stats(addr: SocketAddr) -> Json {
    let r = Conn::connect(addr).get("/stats");
    r.expect_status(200, "GET /stats");
    Json::parse(&r.body_str()).expect("/stats is JSON")
}

fn stat_u64(j: &Json, key: &str) -> u64 {
    j.get(key)
        .and_then(Json::as_u64)
        .unwrap_or_else(|| panic!("/stats has no integer {key:?}: {j:?}"))
}

/// The pid of the server process holding the server's end of the
/// connection whose client end is `client` (from /proc/net/tcp's inode and
/// the processes' descriptor tables).
fn pid_serving(server: &Server, client: &Conn) -> Option<u32> {
    let client_port = client.stream.local_addr().ok()?.port();
    let text = fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |a: &str| {
        a.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    let inode = text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && port(f[1]) == Some(server.addr.port()) && port(f[2]) == Some(client_port))
            .then(|| f[9].to_string())
    })?;
    let target = format!("socket:[{inode}]");
    server_processes(server.pid).into_iter().find(|p| {
        fs::read_dir(format!("/proc/{p}/fd")).is_ok_and(|d| {
            d.flatten()
                .any(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_str() == Some(target.as_str())))
        })
    })
}

/// The server's live worker (or per-connection) processes.
fn workers(server: &Server) -> HashSet<u32> {
    server_processes(server.pid)
        .into_iter()
        .filter(|&p| p != server.pid)
        .collect()
}

/// Zombie children of `pid` now.
fn zombies(pid: u32) -> Vec<u32> {
    children_of(pid)
        .into_iter()
        .filter(|p| p.state == 'Z')
        .map(|p| p.pid)
        .collect()
}

/// Every process descended from `pid` now (any executable).
fn descendants(pid: u32) -> Vec<ProcStat> {
    let all = all_processes();
    let mut out: Vec<ProcStat> = Vec::new();
    let mut parents = vec![pid];
    while let Some(p) = parents.pop() {
        for c in all.iter().filter(|c| c.ppid == p) {
            parents.push(c.pid);
            out.push(c.clone());
        }
    }
    out
}

/// SIGTERM, exit 0, and none of `before` (descendants seen while it ran)
/// left alive.
fn stop_and_check_nothing_left(server: &mut Server, before: &[ProcStat]) {
    server.stop_with(libc::SIGTERM);
    nothing_left(server, before);
}

/// None of `before` is left alive (or unreaped).
fn nothing_left(server: &Server, before: &[ProcStat]) {
    let mut left = Vec::new();
    let gone = wait_until(PROMPT, Duration::from_millis(20), || {
        left = before
            .iter()
            .filter_map(|p| proc_stat(p.pid).filter(|s| s.state != 'Z' && s.ppid == p.ppid))
            .collect();
        left.is_empty()
    });
    assert!(
        gone,
        "[{}] processes left after SIGTERM: {left:?}",
        server.variant
    );
}

#[test]
fn fork_reaps_every_child_during_and_after_load() {
    let root = DocRoot::build();
    let mut server = Server::start("fork", &root.root, &opts(&[]));
    let addr = server.addr;
    let loader = std::thread::spawn(move || load(addr, 6, 30, 3));
    // A zombie may be seen for the instant between a child's exit and the
    // parent's next turn; none may stay.
    let mut first_seen: std::collections::HashMap<u32, Instant> = Default::default();
    let mut scans = 0;
    while !loader.is_finished() {
        for z in zombies(server.pid) {
            let since = *first_seen.entry(z).or_insert_with(Instant::now);
            assert!(
                since.elapsed() < Duration::from_secs(1)
                    || proc_stat(z).is_none_or(|p| p.state != 'Z'),
                "[fork] child {z} has been a zombie for over a second under load"
            );
        }
        scans += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = loader.join().unwrap();
    assert_eq!(done, 6 * 30 * 3, "[fork] requests answered 200");
    let mut kids = Vec::new();
    let settled = wait_until(PROMPT, Duration::from_millis(20), || {
        kids = children_of(server.pid);
        kids.is_empty()
    });
    assert!(settled, "[fork] children left after the load: {kids:?}");
    println!(
        "[fork] {scans} /proc scans under load, {} transient zombie(s) seen",
        first_seen.len()
    );
    stop_and_check_nothing_left(&mut server, &[]);
}

#[test]
fn fork_max_children_holds_clients_in_the_backlog() {
    let root = DocRoot::build();
    let server = Server::start("fork", &root.root, &opts(&["--max-children", "2"]));
    let mut held: Vec<Conn> = (0..2).map(|_| server.conn()).collect();
    for c in &mut held {
        c.get("/plaintext").expect_status(200, "a held connection");
    }
    let mut waiting = server.conn();
    waiting.send(&get_req("/plaintext"));
    // Bounded look, not a timing claim: the backlog holds it, no 503 comes.
    let answered = poll_readable(&[&waiting.stream], Duration::from_millis(500))[0];
    let kids = children_of(server.pid);
    assert!(
        !answered,
        "[fork] a third client was answered with two children held (--max-children 2)"
    );
    assert!(
        kids.len() <= 2,
        "[fork] {} children with --max-children 2: {kids:?}",
        kids.len()
    );
    drop(held.pop());
    waiting
        .read_response(false)
        .expect_status(200, "the waiting client, once a child is free");
    drop(held);
    let j = stats(server.addr);
    assert_eq!(
        stat_u64(&j, "shed"),
        0,
        "[fork] nobody is turned away: {j:?}"
    );
}

#[test]
fn prefork_respawns_a_killed_worker_and_others_go_on() {
    let root = DocRoot::build();
    let server = Server::start("prefork", &root.root, &opts_threads(4, &["--workers", "2"]));
    let mut kept = server.conn();
    kept.get("/plaintext")
        .expect_status(200, "the kept connection");
    let keeper = pid_serving(&server, &kept).expect("the kept connection's worker");
    let before = workers(&server);
    assert_eq!(before.len(), 2, "two workers: {before:?}");
    let victim = *before.iter().find(|&&p| p != keeper).unwrap();
    let counted = stat_u64(&stats(server.addr), "total_requests");
    // SAFETY: kill(2) of a worker of the server this test started.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let t0 = Instant::now();
    let mut now = HashSet::new();
    let respawned = wait_until(PROMPT, Duration::from_millis(10), || {
        now = workers(&server);
        now.len() == 2 && !now.contains(&victim)
    });
    assert!(
        respawned,
        "[prefork] no new worker within {PROMPT:?} of kill -9: {now:?}"
    );
    println!(
        "[prefork] worker {victim} killed; a new one in {:?}",
        t0.elapsed()
    );
    for i in 0..10 {
        kept.get("/plaintext").expect_status(
            200,
            &format!("request {i} on the other worker's connection"),
        );
    }
    assert_eq!(
        pid_serving(&server, &kept),
        Some(keeper),
        "the kept connection moved"
    );
    let fresh = load(server.addr, 2, 5, 2);
    let j = stats(server.addr);
    // The /stats before, 10 on the kept connection, the fresh load.
    assert_eq!(
        stat_u64(&j, "total_requests"),
        counted + 1 + 10 + fresh,
        "[prefork] /stats counts across the respawn: {j:?}"
    );
}

#[test]
fn prefork_sighup_restarts_workers_gracefully() {
    let root = DocRoot::build();
    // The old connection idles while the new workers start: no idle
    // timeout may end it meanwhile, however slow the machine.
    let slow = ServerOpts {
        keepalive_timeout: "30s".into(),
        ..opts_threads(2, &["--workers", "2"])
    };
    let mut server = Server::start("prefork", &root.root, &slow);
    let mut old_conn = server.conn();
    old_conn
        .get("/plaintext")
        .expect_status(200, "before SIGHUP");
    let old_worker = pid_serving(&server, &old_conn).expect("its worker");
    let old = workers(&server);
    server.signal(libc::SIGHUP);
    let mut now = HashSet::new();
    let started = wait_until(PROMPT, Duration::from_millis(10), || {
        now = workers(&server);
        now.difference(&old).count() == 2
    });
    assert!(
        started,
        "[prefork] no two new workers after SIGHUP: old {old:?}, now {now:?}"
    );
    for _ in 0..4 {
        let mut c = server.conn();
        c.get("/plaintext")
            .expect_status(200, "a new connection after SIGHUP");
        let pid = pid_serving(&server, &c).expect("its worker");
        assert!(
            !old.contains(&pid),
            "[prefork] a new connection went to old worker {pid}"
        );
    }
    for i in 0..3 {
        old_conn.get("/plaintext").expect_status(
            200,
            &format!("keep-alive request {i} on the old connection"),
        );
    }
    assert_eq!(pid_serving(&server, &old_conn), Some(old_worker));
    drop(old_conn);
    let mut left = Vec::new();
    let gone = wait_until(PROMPT, Duration::from_millis(20), || {
        left = old
            .iter()
            .filter(|&&p| process_lingers(p, server.pid).is_some())
            .copied()
            .collect();
        left.is_empty()
    });
    assert!(
        gone,
        "[prefork] old workers still there once their connections ended: {left:?}"
    );
    let before = descendants(server.pid);
    stop_and_check_nothing_left(&mut server, &before);
}

/// SIGTERM with a request in flight: it is answered, the server exits 0,
/// and no process it started is left.
fn sigterm_drains(variant: &str, extra: &[&str]) {
    let root = DocRoot::build();
    let mut server = Server::start(variant, &root.root, &opts(extra));
    let mut idle = server.conn();
    idle.get("/plaintext")
        .expect_status(200, "an idle keep-alive connection");
    let mut busy = server.conn();
    let sleepers = threads_in_nanosleep(server.pid);
    busy.send(&get_req("/sleep?ms=700"));
    wait_for_new_sleeper(server.pid, sleepers);
    let before = descendants(server.pid);
    assert!(!before.is_empty(), "[{variant}] no serving process seen");
    server.signal(libc::SIGTERM);
    busy.read_response(false)
        .expect_status(200, "the /sleep in flight at SIGTERM");
    idle.expect_closed("the idle connection at SIGTERM");
    let st = server.wait_exit(PROMPT);
    assert!(
        st.is_some_and(|s| s.success()),
        "[{variant}] after SIGTERM: {st:?}\n{}",
        server.stderr_tail()
    );
    nothing_left(&server, &before);
}

#[test]
fn fork_sigterm_drains_and_leaves_nothing() {
    sigterm_drains("fork", &[]);
}

#[test]
fn prefork_sigterm_drains_and_leaves_nothing() {
    sigterm_drains("prefork", &["--workers", "2"]);
}

/// After a load of known size, `/stats` says exactly what the client saw,
/// and the access log holds exactly one whole line per request.
fn exact_across_processes(variant: &str, extra: &[&str]) {
    let root = DocRoot::build();
    let log = tempfile::tempdir().unwrap();
    let path = log.path().join("access.log");
    let mut args = vec!["--access-log", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut server = Server::start(variant, &root.root, &opts(&args));
    let (clients, conns, per_conn) = (6, 20, 5);
    let done = load(server.addr, clients, conns, per_conn);
    assert_eq!(
        done,
        (clients * conns * per_conn) as u64,
        "[{variant}] answered"
    );
    let j = stats(server.addr);
    assert_eq!(
        stat_u64(&j, "total_requests"),
        done,
        "[{variant}] /stats: {j:?}"
    );
    assert_eq!(
        stat_u64(&j, "total_connections"),
        (clients * conns) as u64 + 1,
        "[{variant}] /stats connections: {j:?}"
    );
    server.stop_with(libc::SIGTERM);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'), "[{variant}] the log ends mid-line");
    let lines: Vec<&str> = text.lines().collect();
    let plain = lines
        .iter()
        .filter(|l| l.contains("\"GET /plaintext HTTP/1.1\" 200 13 "))
        .count();
    assert_eq!(
        lines.len() as u64,
        done + 1,
        "[{variant}] log lines (+1 for /stats)"
    );
    assert_eq!(plain as u64, done, "[{variant}] whole /plaintext lines");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("127.0.0.1 - - [") && l.matches('"').count() == 6),
        "[{variant}] a malformed line in:\n{}",
        excerpt(text.as_bytes(), 2000)
    );
}

#[test]
fn fork_stats_and_access_log_exact() {
    exact_across_processes("fork", &[]);
}

#[test]
fn prefork_stats_and_access_log_exact() {
    exact_across_processes("prefork", &["--workers", "2"]);
}
