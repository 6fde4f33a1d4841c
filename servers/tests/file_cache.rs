//! `--file-cache` against the real binaries: a hit is served from memory
//! (shown by deleting or rewriting the file on disk, which a cached copy
//! outlives until `--file-cache-valid` passes), the same bytes as without
//! the cache, Range / HEAD / 304 from it, least-recently-used eviction
//! within the byte bound, virtual hosts kept apart, and the traversal and
//! symlink rules of an uncached request. The cache is per process: on the
//! process models a case talks to one child or worker over one connection.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use servers::variants::{KeepAlive, Variant};

/// Long enough that nothing is revalidated during a case that relies on a
/// cached copy outliving the disk.
const LONG_VALID: &str = "60s";

fn cached_server(v: &Variant, root: &Path, size: &str, valid: &str) -> Server {
    let opts = ServerOpts {
        extra: ["--file-cache", size, "--file-cache-valid", valid]
            .map(String::from)
            .to_vec(),
        ..ServerOpts::default()
    };
    Server::start(v.name, root, &opts)
}

/// The response as it came, but for the Date header.
fn without_date(r: Response) -> (String, Vec<u8>) {
    let head = r
        .head_raw
        .split("\r\n")
        .filter(|l| !l.starts_with("Date: "))
        .collect::<Vec<_>>()
        .join("\r\n");
    (head, r.body)
}

/// Requests that reach one serving process, whose cache is what a case
/// looks at (the cache is per process): one keep-alive connection, which a
/// process model serves from one child or worker throughout; a new
/// connection each time where the model does not keep connections (and is
/// one process).
struct Client<'a> {
    server: &'a Server,
    kept: Option<Conn>,
}

impl<'a> Client<'a> {
    fn new(v: &Variant, server: &'a Server) -> Client<'a> {
        let kept = (v.keep_alive != KeepAlive::Never).then(|| server.conn());
        Client { server, kept }
    }

    fn roundtrip(&mut self, raw: &[u8], head: bool) -> Response {
        match &mut self.kept {
            Some(c) => c.roundtrip(raw, head),
            None => self.server.conn().roundtrip(raw, head),
        }
    }

    fn get(&mut self, path: &str) -> Response {
        self.roundtrip(&get_req(path), false)
    }
}

/// A hit touches no file: deleted on disk, the file is still served until
/// the validity period ends, then 404.
fn a_hit_needs_no_file(v: &'static Variant) {
    let docroot = DocRoot::build();
    fs::write(docroot.root.join("gone.txt"), b"cached copy\n").unwrap();
    let server = cached_server(v, &docroot.root, "1m", "1500ms");
    let mut c = Client::new(v, &server);
    c.get("/gone.txt")
        .expect_body(b"cached copy\n", "first GET (a miss)");
    fs::remove_file(docroot.root.join("gone.txt")).unwrap();
    c.get("/gone.txt")
        .expect_status(
            200,
            "GET after the file was deleted, within --file-cache-valid",
        )
        .expect_body(b"cached copy\n", "the cached copy");
    let gone = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        c.get("/gone.txt").status == 404
    });
    assert!(
        gone,
        "[{}] a deleted file was still served well past --file-cache-valid",
        v.name
    );
}

/// A file rewritten on disk is served fresh once the validity period passed.
fn a_changed_file_is_served_fresh_after_the_validity_period(v: &'static Variant) {
    let docroot = DocRoot::build();
    let path = docroot.root.join("news.txt");
    fs::write(&path, b"old\n").unwrap();
    let server = cached_server(v, &docroot.root, "1m", "1s");
    let mut c = Client::new(v, &server);
    c.get("/news.txt").expect_body(b"old\n", "first GET");
    fs::write(&path, b"new, and longer\n").unwrap();
    let fresh = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        c.get("/news.txt").body == b"new, and longer\n"
    });
    assert!(fresh, "[{}] the rewritten file never came through", v.name);
}

/// Range, HEAD and a conditional GET are answered from the cached copy
/// (the file is gone from disk) exactly as from the file.
fn range_head_and_304_from_the_cache(v: &'static Variant) {
    let docroot = DocRoot::build();
    let plain = Server::start(v.name, &docroot.root, &ServerOpts::default());
    let server = cached_server(v, &docroot.root, "1m", LONG_VALID);
    let requests: Vec<(&str, Vec<u8>, bool)> = vec![
        ("GET", get_req("/range.txt"), false),
        (
            "Range",
            req("GET", "/range.txt", &[("Range", "bytes=3-9")]),
            false,
        ),
        (
            "suffix Range",
            req("GET", "/range.txt", &[("Range", "bytes=-5")]),
            false,
        ),
        (
            "416",
            req("GET", "/range.txt", &[("Range", "bytes=99999-")]),
            false,
        ),
        ("HEAD", req("HEAD", "/range.txt", &[]), true),
        (
            "If-Modified-Since",
            req(
                "GET",
                "/dated.txt",
                &[("If-Modified-Since", DATED_MTIME_HTTP)],
            ),
            false,
        ),
        (
            "If-Unmodified-Since",
            req(
                "GET",
                "/dated.txt",
                &[("If-Unmodified-Since", "Tue, 31 Dec 2019 00:00:00 GMT")],
            ),
            false,
        ),
    ];
    let mut want = Vec::new();
    for (_, raw, head) in &requests {
        want.push(without_date(plain.conn().roundtrip(raw, *head)));
    }
    // Warm the cache, then take the files away: what follows can only
    // come from memory.
    let mut c = Client::new(v, &server);
    c.get("/range.txt");
    c.get("/dated.txt");
    fs::remove_file(docroot.root.join("range.txt")).unwrap();
    fs::remove_file(docroot.root.join("dated.txt")).unwrap();
    for ((what, raw, head), want) in requests.iter().zip(want) {
        let got = without_date(c.roundtrip(raw, *head));
        assert_eq!(
            got, want,
            "[{}] {what} from the cache differs from the uncached answer",
            v.name
        );
    }
}

per_variant_tests! {
    variants: [blocking, fork, threadpool, prefork, epoll, epoll_threads, uring],
    tests: [
        a_hit_needs_no_file,
        a_changed_file_is_served_fresh_after_the_validity_period,
        range_head_and_304_from_the_cache,
    ],
}

/// Which of `names` are still cached: each file was rewritten on disk after
/// it was first served, so a cached one answers with its old content.
fn still_cached(server: &Server, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| server.conn().get(&format!("/{n}")).body.starts_with(b"old"))
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn least_recently_used_is_evicted_within_the_byte_bound() {
    let docroot = DocRoot::build();
    for n in ["a", "b", "c", "d"] {
        fs::write(
            docroot.root.join(n),
            [b"old".as_slice(), &[b'.'; 997]].concat(),
        )
        .unwrap();
    }
    // Room for three 1000-byte files with their bookkeeping, not four.
    let server = cached_server(variant("epoll"), &docroot.root, "3600", LONG_VALID);
    for n in ["a", "b", "c", "a", "d"] {
        server.conn().get(&format!("/{n}"));
    }
    for n in ["a", "b", "c", "d"] {
        fs::write(docroot.root.join(n), b"new").unwrap();
    }
    // a was used after b and c; d came last; b was the least recent.
    assert_eq!(still_cached(&server, &["a", "c", "d"]), ["a", "c", "d"]);
    assert_eq!(
        server.conn().get("/b").body,
        b"new",
        "b should have been evicted"
    );
}

#[test]
fn files_over_the_size_limit_are_not_cached() {
    let docroot = DocRoot::build();
    let big = docroot.root.join("big.txt");
    fs::write(&big, vec![b'o'; 2000]).unwrap();
    let opts = ServerOpts {
        extra: [
            "--file-cache",
            "1m",
            "--file-cache-max-file",
            "1k",
            "--file-cache-valid",
            LONG_VALID,
        ]
        .map(String::from)
        .to_vec(),
        ..ServerOpts::default()
    };
    let server = Server::start("epoll", &docroot.root, &opts);
    server
        .conn()
        .get("/big.txt")
        .expect_status(200, "first GET");
    fs::remove_file(&big).unwrap();
    server.conn().get("/big.txt").expect_status(
        404,
        "a 2000-byte file with --file-cache-max-file 1k was cached",
    );
}

#[test]
fn two_hosts_with_the_same_path_are_kept_apart() {
    let docroot = DocRoot::build();
    for (host, body) in [("a.test", "site a\n"), ("b.test", "site b\n")] {
        fs::create_dir_all(docroot.root.join(host)).unwrap();
        fs::write(docroot.root.join(host).join("index.txt"), body).unwrap();
    }
    let server = cached_server(variant("epoll"), &docroot.root, "1m", LONG_VALID);
    let get = |host: &str| {
        let raw = format!("GET /index.txt HTTP/1.1\r\nHost: {host}\r\n\r\n");
        server.conn().roundtrip(raw.as_bytes(), false).body
    };
    for _ in 0..2 {
        assert_eq!(get("a.test"), b"site a\n");
        assert_eq!(get("b.test"), b"site b\n");
    }
}

#[test]
fn traversal_and_symlinks_are_refused_as_without_the_cache() {
    let docroot = DocRoot::build();
    let outside = docroot.tmp.path().join("outside.txt");
    fs::write(&outside, b"private\n").unwrap();
    std::os::unix::fs::symlink(&outside, docroot.root.join("out.txt")).unwrap();
    let server = cached_server(variant("epoll"), &docroot.root, "1m", LONG_VALID);
    for _ in 0..2 {
        server
            .conn()
            .get("/out.txt")
            .expect_status(403, "a symlink leading out of the root");
        server
            .conn()
            .get("/%2e%2e/outside.txt")
            .expect_status(400, "an encoded .. segment");
    }
    // One file under two spellings is one entry, and both are served.
    server.conn().get("/dir/").expect_status(200, "GET /dir/");
    server
        .conn()
        .get("/dir/./index.html")
        .expect_status(200, "GET /dir/./index.html");
}

#[test]
fn every_static_file_is_byte_identical_with_and_without_the_cache() {
    let docroot = DocRoot::build();
    let plain = Server::start("epoll", &docroot.root, &ServerOpts::default());
    let cached = cached_server(variant("epoll"), &docroot.root, "16m", LONG_VALID);
    for f in &docroot.files {
        let path = &f.url;
        let want = without_date(plain.conn().get(path));
        for round in ["miss", "hit"] {
            let got = without_date(cached.conn().get(path));
            assert_eq!(got, want, "GET {path} ({round}) differs with the cache");
        }
    }
}
