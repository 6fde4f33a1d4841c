//! Conditional requests on static files and stored uploads (RFC 9110 §13,
//! §14.2 for If-Range), against real server binaries: `epoll` and one
//! blocking model, `threadpool`.
//!
//! Every file's mtime is set explicitly, so each date below is known. Each
//! test runs its table of cases over one keep-alive connection per variant,
//! so a 304 or 412 that sent a stray body would also break the next case.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;

/// The variants driven: the event loop and a blocking model.
const VARIANTS: &[&str] = &["epoll", "threadpool"];

/// The file's mtime: 2020-01-01T00:00:00Z, and its IMF-fixdate.
const MTIME: u64 = 1_577_836_800;
const LM: &str = "Wed, 01 Jan 2020 00:00:00 GMT";
/// One second before, one day before, one second after `LM`.
const SECOND_BEFORE: &str = "Tue, 31 Dec 2019 23:59:59 GMT";
const DAY_BEFORE: &str = "Tue, 31 Dec 2019 00:00:00 GMT";
const SECOND_AFTER: &str = "Wed, 01 Jan 2020 00:00:01 GMT";

const CONTENT: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz\n";
const FAILED_BODY: &[u8] = b"412 Precondition Failed\n";

fn set_mtime(path: &Path, secs: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// A docroot holding `/file.txt` (`CONTENT`, modified at `MTIME`) and an
/// empty upload store beside it.
struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("root")).unwrap();
        fs::create_dir(tmp.path().join("data")).unwrap();
        let site = Site { tmp };
        site.write_file(CONTENT, MTIME);
        site
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// Replace `/file.txt` (a new version, as a deploy or an editor would).
    fn write_file(&self, content: &[u8], mtime: u64) {
        let path = self.root().join("file.txt");
        fs::write(&path, content).unwrap();
        set_mtime(&path, mtime);
    }

    fn start(&self, variant: &str) -> Server {
        let opts = ServerOpts {
            extra: vec!["--data-dir".into(), self.data().to_str().unwrap().into()],
            ..ServerOpts::default()
        };
        Server::start(variant, &self.root(), &opts)
    }
}

/// What a case must get back.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// 200 with the whole file.
    Whole,
    /// 206 with the file from this offset to its end.
    From(usize),
    /// 304, no body.
    NotModified,
    /// 412 with a short text body.
    Failed,
}

use Expect::*;

/// One request: method and conditional headers, and the expected answer.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Expect,
);

/// Send each case for `path` over one connection and check the answer
/// against `content`, last modified at `lm`.
fn check(conn: &mut Conn, variant: &str, path: &str, content: &[u8], lm: &str, cases: &[Case]) {
    for &(method, headers, expect) in cases {
        let head = method == "HEAD";
        let what = format!("{variant}: {method} {path} {headers:?}");
        let r = conn.roundtrip(&req(method, path, headers), head);
        let len = content.len();
        match expect {
            Whole => {
                r.expect_status(200, &what)
                    .expect_header("last-modified", lm, &what);
                assert_eq!(r.content_length(), Some(len as u64), "{what}");
                assert_eq!(r.header("content-range"), None, "{what}");
                r.expect_body(if head { b"" } else { content }, &what);
            }
            From(start) => {
                let range = format!("bytes {start}-{}/{len}", len - 1);
                r.expect_status(206, &what)
                    .expect_header("last-modified", lm, &what)
                    .expect_header("content-range", &range, &what);
                assert_eq!(r.content_length(), Some((len - start) as u64), "{what}");
                r.expect_body(if head { b"" } else { &content[start..] }, &what);
            }
            NotModified => {
                // No body; the headers a 200 would carry: Last-Modified,
                // and the Content-Length of the whole file (RFC 9110 §8.6).
                r.expect_status(304, &what)
                    .expect_header("last-modified", lm, &what)
                    .expect_body(b"", &what);
                assert_eq!(r.content_length(), Some(len as u64), "{what}");
            }
            Failed => {
                assert_eq!(r.reason, "Precondition Failed", "{what}");
                r.expect_status(412, &what);
                assert_eq!(r.media_type().as_deref(), Some("text/plain"), "{what}");
                assert_eq!(r.content_length(), Some(FAILED_BODY.len() as u64), "{what}");
                r.expect_body(if head { b"" } else { FAILED_BODY }, &what);
            }
        }
        r.expect_not_close(&what);
    }
}

/// Run `cases` against `/file.txt` on every variant.
fn table(cases: &[Case]) {
    let site = Site::new();
    for variant in VARIANTS {
        let server = site.start(variant);
        let mut conn = server.conn();
        check(&mut conn, variant, "/file.txt", CONTENT, LM, cases);
    }
}

#[test]
fn if_range_with_an_older_date_sends_the_whole_file() {
    table(&[
        (
            "GET",
            &[("Range", "bytes=10-"), ("If-Range", SECOND_BEFORE)],
            Whole,
        ),
        (
            "GET",
            &[("Range", "bytes=10-"), ("If-Range", DAY_BEFORE)],
            Whole,
        ),
        (
            "GET",
            &[("Range", "bytes=10-"), ("If-Range", SECOND_AFTER)],
            Whole,
        ),
        // Stale If-Range on an unsatisfiable range: the whole file too.
        (
            "GET",
            &[("Range", "bytes=999-"), ("If-Range", DAY_BEFORE)],
            Whole,
        ),
        // Not an HTTP-date: the condition is false.
        (
            "GET",
            &[("Range", "bytes=10-"), ("If-Range", "yesterday")],
            Whole,
        ),
        (
            "HEAD",
            &[("Range", "bytes=10-"), ("If-Range", SECOND_BEFORE)],
            Whole,
        ),
    ]);
}

/// The corruption this guards against: a client that downloaded part of
/// version 1 resumes with `Range: bytes=N-` and `If-Range: <Last-Modified
/// of version 1>` after the file was replaced. It must get all of version
/// 2 (200), never version 2's bytes from N on (206).
#[test]
fn if_range_resuming_a_replaced_file_sends_the_whole_new_file() {
    let v1 = CONTENT;
    let v2 = b"version two: other bytes, and more of them than before\n";
    let later = MTIME + 3600;
    const LM2: &str = "Wed, 01 Jan 2020 01:00:00 GMT";
    for variant in VARIANTS {
        let site = Site::new();
        let server = site.start(variant);
        let mut conn = server.conn();
        let what = format!("{variant}: first part of version 1");
        let r = conn.roundtrip(&req("GET", "/file.txt", &[("Range", "bytes=0-9")]), false);
        r.expect_status(206, &what)
            .expect_header("last-modified", LM, &what)
            .expect_body(&v1[..10], &what);
        site.write_file(v2, later);
        let resume: &[Case] = &[
            ("GET", &[("Range", "bytes=10-"), ("If-Range", LM)], Whole),
            ("HEAD", &[("Range", "bytes=10-"), ("If-Range", LM)], Whole),
            // With the new file's own date the range is honoured again.
            (
                "GET",
                &[("Range", "bytes=10-"), ("If-Range", LM2)],
                From(10),
            ),
        ];
        check(&mut conn, variant, "/file.txt", v2, LM2, resume);
    }
}

#[test]
fn if_range_with_the_exact_date_sends_the_range() {
    table(&[
        ("GET", &[("Range", "bytes=10-"), ("If-Range", LM)], From(10)),
        ("GET", &[("If-Range", LM), ("Range", "bytes=0-")], From(0)),
        (
            "HEAD",
            &[("Range", "bytes=10-"), ("If-Range", LM)],
            From(10),
        ),
        // If-Range without Range changes nothing.
        ("GET", &[("If-Range", LM)], Whole),
        ("GET", &[("If-Range", DAY_BEFORE)], Whole),
    ]);
}

#[test]
fn if_range_with_an_entity_tag_sends_the_whole_file() {
    // We send no ETag, so no entity tag can match.
    table(&[
        (
            "GET",
            &[("Range", "bytes=10-"), ("If-Range", "\"x\"")],
            Whole,
        ),
        (
            "GET",
            &[("Range", "bytes=10-"), ("If-Range", "W/\"x\"")],
            Whole,
        ),
        (
            "HEAD",
            &[("Range", "bytes=10-"), ("If-Range", "\"x\"")],
            Whole,
        ),
    ]);
}

#[test]
fn if_unmodified_since() {
    table(&[
        // Changed after the date: 412.
        ("GET", &[("If-Unmodified-Since", SECOND_BEFORE)], Failed),
        ("GET", &[("If-Unmodified-Since", DAY_BEFORE)], Failed),
        ("HEAD", &[("If-Unmodified-Since", DAY_BEFORE)], Failed),
        (
            "GET",
            &[("If-Unmodified-Since", DAY_BEFORE), ("Range", "bytes=10-")],
            Failed,
        ),
        // Not changed since: served.
        ("GET", &[("If-Unmodified-Since", LM)], Whole),
        ("GET", &[("If-Unmodified-Since", SECOND_AFTER)], Whole),
        ("HEAD", &[("If-Unmodified-Since", SECOND_AFTER)], Whole),
        (
            "GET",
            &[("If-Unmodified-Since", LM), ("Range", "bytes=10-")],
            From(10),
        ),
        // An invalid date is ignored.
        ("GET", &[("If-Unmodified-Since", "not a date")], Whole),
        // Ignored when If-Match is present (RFC 9110 §13.1.4).
        (
            "GET",
            &[("If-Match", "*"), ("If-Unmodified-Since", DAY_BEFORE)],
            Whole,
        ),
    ]);
}

#[test]
fn if_match() {
    table(&[
        ("GET", &[("If-Match", "*")], Whole),
        ("HEAD", &[("If-Match", "*")], Whole),
        (
            "GET",
            &[("If-Match", "*"), ("Range", "bytes=10-")],
            From(10),
        ),
        ("GET", &[("If-Match", "\"x\"")], Failed),
        ("GET", &[("If-Match", "W/\"x\"")], Failed),
        ("GET", &[("If-Match", "\"x\", \"y\"")], Failed),
        ("HEAD", &[("If-Match", "\"x\"")], Failed),
        (
            "GET",
            &[("If-Match", "\"x\""), ("Range", "bytes=10-")],
            Failed,
        ),
        // If-Match fails even when If-Unmodified-Since alone would pass.
        (
            "GET",
            &[("If-Match", "\"x\""), ("If-Unmodified-Since", SECOND_AFTER)],
            Failed,
        ),
    ]);
}

#[test]
fn if_none_match_star_is_not_modified() {
    table(&[
        ("GET", &[("If-None-Match", "*")], NotModified),
        ("HEAD", &[("If-None-Match", "*")], NotModified),
        // Evaluated before Range.
        (
            "GET",
            &[("If-None-Match", "*"), ("Range", "bytes=10-")],
            NotModified,
        ),
        // If-Modified-Since is ignored beside it, even one that would
        // give 200.
        (
            "GET",
            &[("If-None-Match", "*"), ("If-Modified-Since", DAY_BEFORE)],
            NotModified,
        ),
    ]);
}

#[test]
fn if_none_match_with_a_tag_overrides_if_modified_since() {
    // The tag does not match (we send none), so the request proceeds, and
    // If-Modified-Since — which alone gives 304 — must be ignored.
    table(&[
        ("GET", &[("If-Modified-Since", LM)], NotModified),
        (
            "GET",
            &[("If-None-Match", "\"x\""), ("If-Modified-Since", LM)],
            Whole,
        ),
        (
            "GET",
            &[
                ("If-Modified-Since", SECOND_AFTER),
                ("If-None-Match", "W/\"x\""),
            ],
            Whole,
        ),
        (
            "HEAD",
            &[("If-None-Match", "\"x\""), ("If-Modified-Since", LM)],
            Whole,
        ),
        (
            "GET",
            &[
                ("If-None-Match", "\"x\""),
                ("If-Modified-Since", LM),
                ("Range", "bytes=10-"),
            ],
            From(10),
        ),
        ("GET", &[("If-None-Match", "\"x\"")], Whole),
    ]);
}

#[test]
fn if_modified_since() {
    table(&[
        ("GET", &[("If-Modified-Since", LM)], NotModified),
        ("GET", &[("If-Modified-Since", SECOND_AFTER)], NotModified),
        ("HEAD", &[("If-Modified-Since", LM)], NotModified),
        ("GET", &[("If-Modified-Since", SECOND_BEFORE)], Whole),
        ("HEAD", &[("If-Modified-Since", SECOND_BEFORE)], Whole),
        // An invalid HTTP-date is ignored, not an error.
        ("GET", &[("If-Modified-Since", "not a date")], Whole),
        ("GET", &[("If-Modified-Since", "Wed, 01 Jan 2020")], Whole),
        ("HEAD", &[("If-Modified-Since", "garbage")], Whole),
        // Two lines make a list of dates, which is not a valid one.
        (
            "GET",
            &[("If-Modified-Since", LM), ("If-Modified-Since", LM)],
            Whole,
        ),
    ]);
}

#[test]
fn preconditions_are_evaluated_in_rfc_order() {
    // RFC 9110 §13.2.2: If-Match, If-Unmodified-Since, If-None-Match,
    // If-Modified-Since, then If-Range with Range.
    table(&[
        // 412 before 304, whatever the header order.
        (
            "GET",
            &[("If-Modified-Since", LM), ("If-Match", "\"x\"")],
            Failed,
        ),
        (
            "GET",
            &[("If-None-Match", "*"), ("If-Unmodified-Since", DAY_BEFORE)],
            Failed,
        ),
        // 304 before If-Range and Range.
        (
            "GET",
            &[
                ("Range", "bytes=10-"),
                ("If-Range", DAY_BEFORE),
                ("If-Modified-Since", LM),
            ],
            NotModified,
        ),
        // Every condition true: the range.
        (
            "GET",
            &[
                ("If-Match", "*"),
                ("If-None-Match", "\"x\""),
                ("If-Range", LM),
                ("Range", "bytes=10-"),
            ],
            From(10),
        ),
    ]);
}

/// `/files/NAME` goes through the same code as static files.
#[test]
fn stored_uploads_follow_the_same_rules() {
    for variant in VARIANTS {
        let site = Site::new();
        let server = site.start(variant);
        let mut conn = server.conn();
        let mut upload = format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            CONTENT.len()
        )
        .into_bytes();
        upload.extend_from_slice(CONTENT);
        let r = conn.roundtrip(&upload, false);
        r.expect_status(201, &format!("{variant}: upload"));
        let path = r.header("location").expect("Location").to_string();
        let name = path.strip_prefix("/files/").expect("/files/NAME");
        set_mtime(&site.data().join(name), MTIME);
        let cases: &[Case] = &[
            (
                "GET",
                &[("Range", "bytes=10-"), ("If-Range", DAY_BEFORE)],
                Whole,
            ),
            ("GET", &[("Range", "bytes=10-"), ("If-Range", LM)], From(10)),
            (
                "GET",
                &[("Range", "bytes=10-"), ("If-Range", "\"x\"")],
                Whole,
            ),
            ("GET", &[("If-Unmodified-Since", DAY_BEFORE)], Failed),
            ("GET", &[("If-Match", "\"x\"")], Failed),
            ("HEAD", &[("If-None-Match", "*")], NotModified),
            (
                "GET",
                &[("If-None-Match", "\"x\""), ("If-Modified-Since", LM)],
                Whole,
            ),
            ("GET", &[("If-Modified-Since", "not a date")], Whole),
        ];
        check(&mut conn, variant, &path, CONTENT, LM, cases);
    }
}
