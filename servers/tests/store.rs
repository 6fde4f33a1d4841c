//! The stores behind uploads, sessions and the access log, driven through
//! their library APIs (no server, no sockets).

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use servers::app::access_log::{AccessLog, Entry};
use servers::app::session::{set_cookie_header, Sessions};
use servers::app::uploads::{is_disk_full, Lookup, Uploads, TEMP_PREFIX};
use servers::sys::random;

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    random::fill(&mut v).unwrap();
    v
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn read_back(store: &Uploads, name: &str) -> Vec<u8> {
    let (mut file, size, _) = store.open_file(name).unwrap();
    let mut v = Vec::new();
    file.read_to_end(&mut v).unwrap();
    assert_eq!(v.len() as u64, size);
    v
}

// ---- uploads ----

#[test]
fn uploads_read_back_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = Uploads::open(&dir.path().join("created/on/open")).unwrap();
    let now = servers::sys::time::unix_seconds_coarse();
    for size in [0, 1, 4096, 3 << 20] {
        let body = random_bytes(size);
        let name = store.save(&body).unwrap();
        assert!(Uploads::valid_name(&name), "{name}");
        assert_eq!(read_back(&store, &name), body, "size {size}");
        let (_, len, mtime) = store.open_file(&name).unwrap();
        assert_eq!(len, size as u64);
        assert!((mtime - now).abs() < 60, "mtime {mtime} vs now {now}");
    }
}

#[test]
fn uploads_written_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Uploads::open(dir.path()).unwrap();
    let body = random_bytes(100_000);
    let mut up = store.begin().unwrap();
    for chunk in body.chunks(7_000) {
        up.write(chunk).unwrap();
    }
    assert_eq!(up.written(), 100_000);
    let name = up.commit().unwrap();
    assert_eq!(read_back(&store, &name), body);
    assert_eq!(listing(dir.path()), BTreeSet::from([name]));
}

#[test]
fn concurrent_uploads_are_intact_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Uploads::open(dir.path()).unwrap());
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let body = random_bytes(i * 3_001 + 17);
                (store.save(&body).unwrap(), body)
            })
        })
        .collect();
    let saved: Vec<(String, Vec<u8>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let names: HashSet<&String> = saved.iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 20);
    for (name, body) in &saved {
        assert_eq!(&read_back(&store, name), body);
    }
    assert_eq!(listing(dir.path()).len(), 20, "no temporary files remain");
}

#[test]
fn aborted_upload_leaves_the_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = Uploads::open(dir.path()).unwrap();
    store.save(b"already here").unwrap();
    let before = listing(dir.path());
    let mut up = store.begin().unwrap();
    up.write(&random_bytes(50_000)).unwrap();
    assert_eq!(
        listing(dir.path()).len(),
        before.len() + 1,
        "temporary file exists meanwhile"
    );
    drop(up);
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn deleted_uploads_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Uploads::open(dir.path()).unwrap();
    let name = store.save(b"short-lived").unwrap();
    store.delete(&name).unwrap();
    assert!(matches!(store.open_file(&name), Err(Lookup::NotFound)));
    assert!(matches!(store.delete(&name), Err(Lookup::NotFound)));
    let never = "0123456789abcdef0123456789abcdef";
    assert!(matches!(store.open_file(never), Err(Lookup::NotFound)));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn names_outside_the_issued_shape_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Uploads::open(&dir.path().join("data")).unwrap();
    // A file outside the store that traversal would reach.
    std::fs::write(dir.path().join("secret"), b"outside").unwrap();
    let good = "0123456789abcdef0123456789abcdef";
    let temp = format!("{TEMP_PREFIX}{good}");
    let bad = [
        "",
        ".",
        "..",
        "../x",
        "../secret",
        "a/b",
        "/etc/passwd",
        &temp,
        &good[..31],
        &format!("{good}0"),
        &good.to_uppercase(),
        "0123456789abcdef0123456789abcde\0",
        "0123456789abcdef0123456789abcdeg",
        "%2e%2e%2fsecret",
    ];
    for name in bad {
        assert!(!Uploads::valid_name(name), "{name:?}");
        assert!(
            matches!(store.open_file(name), Err(Lookup::BadName)),
            "{name:?}"
        );
        assert!(
            matches!(store.delete(name), Err(Lookup::BadName)),
            "{name:?}"
        );
    }
    assert!(dir.path().join("secret").exists());
}

#[test]
fn symlinks_planted_in_the_store_do_not_lead_outside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = Uploads::open(&data).unwrap();
    std::fs::write(dir.path().join("secret"), b"outside").unwrap();
    let name = "00000000000000000000000000000001";
    std::os::unix::fs::symlink(dir.path().join("secret"), data.join(name)).unwrap();
    assert!(matches!(store.open_file(name), Err(Lookup::NotFound)));
    let rel = "00000000000000000000000000000002";
    std::os::unix::fs::symlink("../secret", data.join(rel)).unwrap();
    assert!(matches!(store.open_file(rel), Err(Lookup::NotFound)));
}

#[test]
fn stale_temporary_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let kept = "0123456789abcdef0123456789abcdef";
    std::fs::write(dir.path().join(kept), b"a finished upload").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
    std::fs::write(dir.path().join(format!("{TEMP_PREFIX}deadbeef")), b"crash").unwrap();
    std::fs::write(dir.path().join(format!("{TEMP_PREFIX}x")), b"crash").unwrap();
    let store = Uploads::open(dir.path()).unwrap();
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from([kept.to_string(), "notes.txt".to_string()])
    );
    assert_eq!(read_back(&store, kept), b"a finished upload");
}

#[test]
fn a_second_store_spares_uploads_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let first = Uploads::open(dir.path()).unwrap();
    let mut up = first.begin().unwrap();
    up.write(b"in flight").unwrap();
    let _second = Uploads::open(dir.path()).unwrap();
    let name = up.commit().unwrap();
    assert_eq!(read_back(&first, &name), b"in flight");
}

#[test]
fn data_dir_must_be_a_writable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = Uploads::open(&file).unwrap_err();
    assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
}

/// A write error mid-upload leaves no file. A full disk cannot be made
/// without mounting something, so the child process provokes the nearest
/// cheap equivalent: a file size limit (`RLIMIT_FSIZE`, with `SIGXFSZ`
/// ignored) makes `write` fail with `EFBIG` on the same path an `ENOSPC`
/// takes. The limit is process-wide, hence the child.
#[test]
fn write_error_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fsize_limited_child", "--ignored", "--nocapture"])
        .env("STORE_TEST_CHILD_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "child did not run: {text}");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[test]
#[ignore = "run by write_error_leaves_no_file in a child process"]
fn fsize_limited_child() {
    let Some(dir) = std::env::var_os("STORE_TEST_CHILD_DIR") else {
        return;
    };
    let store = Uploads::open(Path::new(&dir)).unwrap();
    let limit = libc::rlimit {
        rlim_cur: 64 * 1024,
        rlim_max: 64 * 1024,
    };
    // SAFETY: `limit` is a valid rlimit; ignoring SIGXFSZ installs no
    // handler code. This process is a child that runs only this test.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let mut up = store.begin().unwrap();
    up.write(&[b'x'; 1000]).unwrap();
    let err = up.write(&random_bytes(256 * 1024)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
    assert!(!is_disk_full(&err));
    drop(up);
    assert!(listing(Path::new(&dir)).is_empty());
    let err = store.save(&random_bytes(128 * 1024)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
    assert!(listing(Path::new(&dir)).is_empty());
}

// ---- sessions ----

fn cookie(id: &str) -> Vec<u8> {
    format!("theme=dark; sid={id}; lang=en").into_bytes()
}

#[test]
fn sessions_count_visits() {
    let s = Sessions::new(16);
    let first = s.visit(None);
    assert!(first.is_new);
    assert_eq!(first.visits, 1);
    assert!(random::is_token(first.id.as_bytes()));
    for n in 2..=3 {
        let v = s.visit(Some(&cookie(&first.id)));
        assert_eq!(
            (v.id.as_str(), v.visits, v.is_new),
            (first.id.as_str(), n, false)
        );
    }
    assert_eq!(
        s.visit(Some(&cookie(&first.id))).to_json(),
        format!("{{\"session\":\"{}\",\"visits\":4}}", first.id)
    );
    assert_eq!(
        set_cookie_header(&first.id),
        format!(
            "Set-Cookie: sid={}; Path=/; HttpOnly; SameSite=Lax",
            first.id
        )
    );
}

#[test]
fn unknown_ids_are_never_adopted() {
    let s = Sessions::new(16);
    let chosen = "0123456789abcdef0123456789abcdef";
    let v = s.visit(Some(&cookie(chosen)));
    assert!(v.is_new);
    assert_ne!(v.id, chosen, "session fixation");
    let again = s.visit(Some(&cookie(chosen)));
    assert!(again.is_new);
    assert_ne!(again.id, v.id);
}

#[test]
fn hostile_cookies_never_reach_the_output() {
    let s = Sessions::new(16);
    let known = s.visit(None).id;
    let hostile = [
        format!("sid={known}\r\nSet-Cookie: admin=1"),
        format!("sid=\"{known}\""),
        format!("sid={}", known.to_uppercase()),
        format!("sid={known}0"),
        format!("sid={}", &known[..31]),
        format!("sid={known}\0"),
        "sid=\"><script>alert(1)</script>".to_string(),
        "sid=../../etc; sid=0123".to_string(),
        format!("sid=; sid={known}"),
    ];
    for h in &hostile {
        let v = s.visit(Some(h.as_bytes()));
        assert!(v.is_new, "{h:?}");
        assert_ne!(v.id, known, "{h:?}");
        let header = set_cookie_header(&v.id);
        let body = v.to_json();
        for out in [&header, &body] {
            assert!(!out.contains(['\r', '\n', '<', '\0']), "{out:?}");
            assert!(!out.contains("admin") && !out.contains("../"), "{out:?}");
        }
    }
    // A later well-formed sid does not rescue a malformed first one, and a
    // well-formed one first still works with junk after it.
    assert_eq!(
        s.visit(Some(format!("sid={known}; sid=junk").as_bytes()))
            .visits,
        2
    );
}

#[test]
fn session_capacity_is_a_bound() {
    let s = Sessions::new(100);
    let first = s.visit(None);
    let mut last = first.clone();
    for _ in 0..1_000 {
        last = s.visit(None);
        assert!(s.len() <= 100);
    }
    assert_eq!(s.len(), 100);
    assert!(s.visit(Some(&cookie(&first.id))).is_new, "oldest evicted");
    assert_eq!(s.visit(Some(&cookie(&last.id))).visits, 2, "newest kept");
}

#[test]
fn concurrent_visits_to_one_session_sum_exactly() {
    let s = Sessions::new(1_000);
    let id = s.visit(None).id;
    let c = cookie(&id);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..2_000 {
                    // Other clients come and go meanwhile.
                    s.visit(None);
                    assert!(!s.visit(Some(&c)).is_new);
                }
            });
        }
    });
    assert_eq!(s.visit(Some(&c)).visits, 1 + 8 * 2_000 + 1);
}

// ---- access log ----

fn entry<'a>(target: &'a str, ua: Option<&'a [u8]>) -> Entry<'a> {
    Entry {
        remote: Ipv4Addr::new(192, 168, 1, 20),
        unix_time: servers::sys::time::unix_seconds_coarse(),
        method: "GET",
        target,
        protocol: "HTTP/1.1",
        status: 200,
        body_bytes: 13,
        referer: None,
        user_agent: ua,
    }
}

/// The fields of one combined-format line, checked without a regex.
#[derive(Debug)]
struct Parsed {
    target: String,
    status: u16,
    bytes: Option<u64>,
    referer: String,
    user_agent: String,
}

fn malformed<T>(line: &str) -> T {
    panic!("malformed line {line:?}")
}

fn parse_line(line: &str) -> Parsed {
    let (ip, rest) = line.split_once(" - - [").unwrap_or_else(|| malformed(line));
    ip.parse::<Ipv4Addr>().unwrap_or_else(|_| malformed(line));
    let (stamp, rest) = rest.split_once("] \"").unwrap_or_else(|| malformed(line));
    let b = stamp.as_bytes();
    assert!(
        b.len() == 26 && stamp.ends_with(" +0000") && b[2] == b'/' && b[6] == b'/' && b[11] == b':',
        "{line:?}"
    );
    let (request, rest) = rest.split_once("\" ").unwrap_or_else(|| malformed(line));
    let parts: Vec<&str> = request.split(' ').collect();
    assert!(
        parts.len() == 3 && parts[0] == "GET" && parts[2] == "HTTP/1.1",
        "{line:?}"
    );
    let (status, rest) = rest.split_once(' ').unwrap_or_else(|| malformed(line));
    let (bytes, rest) = rest.split_once(' ').unwrap_or_else(|| malformed(line));
    let quoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or_else(|| malformed(line));
    let (referer, user_agent) = quoted
        .split_once("\" \"")
        .unwrap_or_else(|| malformed(line));
    assert!(
        !referer.contains('"') && !user_agent.contains('"'),
        "{line:?}"
    );
    Parsed {
        target: parts[1].to_string(),
        status: status.parse().unwrap_or_else(|_| malformed(line)),
        bytes: (bytes != "-").then(|| bytes.parse().unwrap_or_else(|_| malformed(line))),
        referer: referer.to_string(),
        user_agent: user_agent.to_string(),
    }
}

/// Every line in `path`, which must end with a whole line.
fn lines_of(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "partial last line in {}",
        path.display()
    );
    text.lines().map(str::to_string).collect()
}

#[test]
fn access_log_holds_exactly_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::open(&path, 0, 0).unwrap();
    const THREADS: usize = 8;
    const PER: usize = 1_250;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let log = &log;
            s.spawn(move || {
                for i in 0..PER {
                    log.log(&entry(&format!("/t{t}/{i}"), Some(b"loadgen/0.1")));
                }
            });
        }
    });
    log.close().unwrap();
    let lines = lines_of(&path);
    assert_eq!(lines.len(), THREADS * PER);
    let mut seen = HashSet::new();
    for line in &lines {
        let p = parse_line(line);
        assert_eq!((p.status, p.bytes), (200, Some(13)));
        assert_eq!(
            (p.referer.as_str(), p.user_agent.as_str()),
            ("-", "loadgen/0.1")
        );
        assert!(seen.insert(p.target), "duplicate {line}");
    }
    assert_eq!(log.write_errors(), 0);
}

/// Lines `/seq/N`, logged in order from one thread.
fn log_sequence(log: &AccessLog, n: usize) {
    for i in 0..n {
        log.log(&entry(&format!("/seq/{i}"), Some(b"t")));
    }
}

fn seq_of(line: &str) -> usize {
    parse_line(line)
        .target
        .strip_prefix("/seq/")
        .unwrap()
        .parse()
        .unwrap()
}

fn log_files(dir: &Path) -> BTreeSet<String> {
    listing(dir)
        .into_iter()
        .filter(|n| n.starts_with("access.log"))
        .collect()
}

/// Lines from the oldest rotated file to the current one.
fn lines_oldest_first(dir: &Path, rotated: usize) -> Vec<String> {
    let mut all = Vec::new();
    for i in (1..=rotated).rev() {
        all.extend(lines_of(&dir.join(format!("access.log.{i}"))));
    }
    all.extend(lines_of(&dir.join("access.log")));
    all
}

#[test]
fn rotation_splits_only_between_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    const MAX: u64 = 4096;
    const N: usize = 3_000;
    let log = AccessLog::open(&path, MAX, 1_000).unwrap();
    log_sequence(&log, N);
    log.close().unwrap();
    let files = log_files(dir.path());
    let rotated = files.len() - 1;
    assert!(rotated > 10, "{files:?}");
    for name in &files {
        let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(size <= MAX, "{name}: {size}");
    }
    let seqs: Vec<usize> = lines_oldest_first(dir.path(), rotated)
        .iter()
        .map(|l| seq_of(l))
        .collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>());
}

#[test]
fn rotation_deletes_the_oldest_beyond_keep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    const MAX: u64 = 2048;
    const N: usize = 1_000;
    let log = AccessLog::open(&path, MAX, 2).unwrap();
    log_sequence(&log, N);
    log.close().unwrap();
    let expected: BTreeSet<String> = ["access.log", "access.log.1", "access.log.2"]
        .map(String::from)
        .into();
    assert_eq!(log_files(dir.path()), expected);
    let seqs: Vec<usize> = lines_oldest_first(dir.path(), 2)
        .iter()
        .map(|l| seq_of(l))
        .collect();
    // The newest lines survive, in order, up to the last one.
    let first = seqs[0];
    assert!(first > 0, "the oldest lines were deleted");
    assert_eq!(seqs, (first..N).collect::<Vec<_>>());
    for name in ["access.log.1", "access.log.2"] {
        let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(
            size <= MAX && size > MAX - 200,
            "{name} should be nearly full: {size}"
        );
    }
}

#[test]
fn rotation_with_keep_zero_keeps_only_the_current_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::open(&path, 1024, 0).unwrap();
    log_sequence(&log, 200);
    drop(log); // Drop closes and flushes too.
    assert_eq!(
        log_files(dir.path()),
        BTreeSet::from(["access.log".to_string()])
    );
    let seqs: Vec<usize> = lines_of(&path).iter().map(|l| seq_of(l)).collect();
    assert_eq!(*seqs.last().unwrap(), 199);
    assert_eq!(seqs, (seqs[0]..200).collect::<Vec<_>>());
    assert!(std::fs::metadata(&path).unwrap().len() <= 1024);
}

#[test]
fn hostile_fields_cannot_split_or_forge_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::open(&path, 0, 0).unwrap();
    let mut e = entry(
        "/a\"b\\c\r\n127.0.0.1-[forged]\0",
        Some(b"ua\" \"x\n\x01\x7f\xff\xc3\xa9"),
    );
    e.referer = Some(b"\"-\"");
    e.body_bytes = 0;
    e.status = 404;
    log.log(&e);
    log.close().unwrap();
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 1);
    let p = parse_line(&lines[0]);
    assert_eq!(p.target, "/a\\x22b\\x5Cc\\x0D\\x0A127.0.0.1-[forged]\\x00");
    assert_eq!(p.user_agent, "ua\\x22 \\x22x\\x0A\\x01\\x7F\\xFF\\xC3\\xA9");
    assert_eq!(p.referer, "\\x22-\\x22");
    assert_eq!((p.status, p.bytes), (404, None));
}

#[test]
fn close_is_idempotent_and_later_lines_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::open(&path, 0, 0).unwrap();
    log_sequence(&log, 3);
    log.close().unwrap();
    log.close().unwrap();
    log.log(&entry("/late", None));
    assert_eq!(log.dropped(), 1);
    drop(log);
    assert_eq!(lines_of(&path).len(), 3);
}

#[test]
fn access_log_appends_to_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    for _ in 0..2 {
        let log = AccessLog::open(&path, 0, 0).unwrap();
        log_sequence(&log, 5);
        log.close().unwrap();
    }
    assert_eq!(lines_of(&path).len(), 10);
}

#[test]
fn access_log_in_a_missing_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/access.log");
    let err = AccessLog::open(&path, 0, 0).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("does not exist"), "{err}");
}
